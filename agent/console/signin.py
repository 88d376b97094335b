"""Signing in to the console with a magic link sent through a contact's own channels.

- GET /console/sign-in: a form asking for a contact's name (or an e-mail
  address found in one of its Apprise URLs).
- POST /console/sign-in: when it names a contact, and that contact has had
  fewer than `RATE_MAX` links in the last `RATE_WINDOW`, a single-use link
  valid `LINK_TTL` is sent through the contact's configured channels (Apprise,
  as a page would go, but straight from memory: the link's secret is never
  written anywhere but the recipient's inbox; the store keeps its hash). The
  answer is the same whether or not the name exists or the limit was hit, so
  the form tells nobody who can sign in.
- GET /console/link/<secret>: a page with one button. Opening the link signs
  nobody in: mail and chat apps fetch links to preview them.
- POST /console/link/<secret>: uses the link (once: the store marks it used in
  the statement that checks it) and starts a session (a new secret: nothing
  from before sign-in is reused), then redirects to the console.
- POST /console/sign-out: the session's row is deleted; the cookie cleared.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qsl, unquote, urlsplit

import structlog
from aiohttp import web

from agent.config_contacts import Contact
from agent.console import guard
from agent.console.context import CONSOLE_KEY, Console, page, redirect, refuse
from notifiers.channels import Message
from notifiers.delivery import deliver

log = structlog.get_logger(__name__)

LINK_TTL = 600.0
RATE_MAX = 3
RATE_WINDOW = 900.0
_ADDRESS = re.compile(r"[^@\s/?&=:]+@[^@\s/?&=:]+\.[^@\s/?&=:]+")
SENT = ("If that name belongs to somebody who can sign in, a sign-in link is on its way "
        "to them through their usual channels (the ones their pages come by). The link "
        "works once, for 10 minutes.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/sign-in", sign_in_page)
    app.router.add_post("/console/sign-in", sign_in_post)
    app.router.add_get("/console/link/{secret}", link_page)
    app.router.add_post("/console/link/{secret}", link_post)
    app.router.add_post("/console/sign-out", sign_out)


def addresses(contact: Contact) -> set[str]:
    """E-mail addresses a contact's URLs send to: `to=` arguments, `mailto://user@host`."""
    found: set[str] = set()
    for url in contact.urls:
        try:
            parts = urlsplit(url)
        except ValueError:
            continue
        for key, value in parse_qsl(parts.query):
            if key.lower() == "to":
                found.update(a.lower() for a in _ADDRESS.findall(unquote(value)))
        if parts.scheme.startswith("mailto") and parts.username and not parts.password:
            found.add(f"{unquote(parts.username)}@{parts.hostname}".lower())
    return found


def find_contact(console: Console, given: str) -> Contact | None:
    wanted = given.strip().casefold()
    if not wanted or len(wanted) > 200:
        return None
    contacts = console.engine.config.contacts
    for c in contacts.values():
        if c.name.casefold() == wanted:
            return c
    return next((c for c in contacts.values() if wanted in addresses(c)), None)


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    if request.get(guard.PERSON_KEY):
        return redirect("/console")
    return page(request, "console/sign_in.html", title="Sign in", sent=False,
                message="")


async def sign_in_post(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    form = await request.post()
    name = form.get("name")
    contact = find_contact(console, name if isinstance(name, str) else "")
    if contact is not None:
        _send_link(console, contact)
    return page(request, "console/sign_in.html", title="Check your messages", sent=True,
                message=SENT)


def _send_link(console: Console, contact: Contact) -> None:
    now = console.engine.clock()
    try:
        with console.engine.store.tx():
            console.auth.prune(now)  # expired sessions and old links: now and then is enough
            if console.auth.recent_links(contact.name, now - RATE_WINDOW) >= RATE_MAX:
                log.warning("signin_rate_limited", person=contact.name)
                return
            secret = console.auth.add_link(contact.name, now, LINK_TTL)
    except console.engine.store.errors as exc:
        log.error("signin_link_not_stored", person=contact.name, error=str(exc))
        return
    url = f"{console.public_url()}/console/link/{secret}"
    msg = Message("onwatch console sign-in",
                  f"Open this link to sign in to the onwatch console as {contact.name}:\n\n"
                  f"{url}\n\nIt works once, for 10 minutes. If you did not ask to sign in, "
                  "ignore this message.", f"onwatch sign-in for {contact.name}: {url}")
    task = asyncio.create_task(_deliver(console, contact, msg), name="signin-link")
    console.tasks.add(task)
    task.add_done_callback(console.tasks.discard)


async def _deliver(console: Console, contact: Contact, msg: Message) -> None:
    results = await deliver(contact.urls, msg, fallback=contact.fallback,
                            timeout=console.engine.config.delivery.send_timeout)
    log.info("signin_link_sent", person=contact.name,
             delivered=any(r.ok for r in results), channels=len(results))


def _link_refused(request: web.Request, state: str | None) -> web.StreamResponse:
    if state == "used":
        return refuse(request, "This sign-in link was used already. Ask for a new one.", 410)
    if state == "expired":
        return refuse(request, "This sign-in link has expired. Ask for a new one.", 410)
    return refuse(request, "This sign-in link is not valid. Ask for a new one.", 403)


async def link_page(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    found = console.auth.link_state(request.match_info["secret"], console.engine.clock())
    if found is None or found[1] != "ok":
        return _link_refused(request, None if found is None else found[1])
    # The layout's Referrer-Policy (same-origin) stays: with no-referrer a browser sends
    # "Origin: null" on the button's POST, which the guard refuses as from elsewhere.
    return page(request, "console/confirm.html", title="Sign in", who=found[0])


async def link_post(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    secret, now = request.match_info["secret"], console.engine.clock()
    with console.engine.store.tx():
        who = console.auth.consume(secret, now)
        session = console.auth.add_session(who, now, guard.SESSION_TTL) if who else None
    if who is None or session is None:
        found = console.auth.link_state(secret, now)
        return _link_refused(request, None if found is None else found[1])
    log.warning("console_signed_in", person=who)
    resp = redirect("/console")
    guard.set_cookie(resp, guard.SESSION_COOKIE, session, max_age=guard.SESSION_TTL,
                     secure=guard.is_secure(request, console.public_url()))
    resp.del_cookie(guard.ANON_COOKIE, path="/console")
    return resp


async def sign_out(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE_KEY]
    secret = request.get(guard.SECRET_KEY)
    if isinstance(secret, str):
        with console.engine.store.tx():
            console.auth.end_session(secret)
        log.info("console_signed_out", person=guard.person(request))
    resp = redirect("/console/sign-in")
    resp.del_cookie(guard.SESSION_COOKIE, path="/console")
    return resp
