"""Subscribing by e-mail from the page: the form, the confirmation and unsubscribe links.

GET on a link never changes anything: mail scanners and chat apps open links
to preview them, and a subscription they confirmed would not be an opt-in.
The page a link opens has one button (a POST) that does it. The unsubscribe
URL also takes RFC 8058's one-click POST (`List-Unsubscribe=One-Click`, sent
by mail clients from the `List-Unsubscribe` header) directly.

The answer to the form is the same whether the address is new, pending or
already subscribed, so the form tells nobody who subscribes; the address is
never echoed, logged or put in a link.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent import pages, webguard
from agent.links import LinkError
from agent.pages.status_routes import SITE_KEY
from agent.status.subscriptions import SubscribeError

TOKEN_HEADERS = {"Referrer-Policy": "no-referrer"}
Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(app: web.Application) -> None:
    app.router.add_post("/subscribe", subscribe)
    for path, action in (("/subscribe/confirm/{token}", "confirm"),
                         ("/unsubscribe/{token}", "unsubscribe")):
        page, post = _link(action)
        app.router.add_get(path, page)
        app.router.add_post(path, post)


def _message(request: web.Request, heading: str, *paragraphs: str, button: str = "",
             status: int = 200) -> web.Response:
    site = request.app[SITE_KEY]
    context: dict[str, Any] = {"site_title": site.status.title,
                               "has_logo": site.logo is not None}
    body = pages.render("message.html", heading=heading, paragraphs=paragraphs, button=button,
                        **context)
    return pages.respond(body, status=status, extra=TOKEN_HEADERS)


async def subscribe(request: web.Request) -> web.Response:
    site = request.app[SITE_KEY]
    try:
        form = await request.post()
    except webguard.FORM_ERRORS:
        return _message(request, "Subscription not taken", "The form could not be read (its "
                        "encoding or format is wrong).", status=400)
    address = form.get("email")
    try:
        site.subscriptions.subscribe(address if isinstance(address, str) else "",
                                     site.clock())
    except SubscribeError as exc:
        return _message(request, "Subscription not taken", str(exc), status=exc.status)
    site.publisher.mail_wakeup.set()
    return _message(request, "Check your inbox",
                    "If this address is not subscribed yet, we have sent it a message with a "
                    "confirmation link. Your subscription starts when you open it and press "
                    "the button.", "No message? Look in the spam folder, or try again in a "
                    "few minutes.")


def _refused(request: web.Request, exc: LinkError) -> web.Response:
    status = 410 if "expired" in str(exc) or "no longer" in str(exc) else 403
    return _message(request, "Link refused", f"{str(exc).capitalize()}.", status=status)


def _link(action: str) -> tuple[Handler, Handler]:
    """The GET (a page with the button, changes nothing) and POST (does it) of a link."""

    async def page(request: web.Request) -> web.Response:
        site = request.app[SITE_KEY]
        try:
            site.subscriptions.check(request.match_info["token"], action, site.clock())
        except LinkError as exc:
            return _refused(request, exc)
        heading, text, button = ASK[action]
        return _message(request, heading, text.format(title=site.status.title), button=button)

    async def post(request: web.Request) -> web.Response:
        site = request.app[SITE_KEY]
        act = (site.subscriptions.confirm if action == "confirm"
               else site.subscriptions.unsubscribe)
        try:
            done = act(request.match_info["token"], site.clock())
        except LinkError as exc:
            return _refused(request, exc)
        first, again, text = DONE[action]
        return _message(request, first if done else again, text)

    return page, post


ASK = {
    "confirm": ("Confirm your subscription", "Press the button to receive {title} status "
                "updates by e-mail.", "Confirm subscription"),
    "unsubscribe": ("Unsubscribe?", "Press the button and you will get no more {title} "
                    "status e-mails.", "Unsubscribe"),
}
DONE = {
    "confirm": ("Subscribed", "Already subscribed", "You will get an e-mail when we post a "
                "status update. Every message has a one-click unsubscribe link."),
    # The POST is the button's, or a mail client's RFC 8058 one-click POST.
    "unsubscribe": ("Unsubscribed", "Already unsubscribed", "You will get no more status "
                    "e-mails from us. You can subscribe again on the status page at any "
                    "time."),
}
