"""Who may use the console, and how a request proves it: sessions, CSRF, origins.

Contract, for every path under /console:

- A page needs a session: the `onwatch_session` cookie whose secret's hash is a
  live row in the store (agent/store/auth.py), of a person the config still has
  (removed and reloaded: signed out). Without one a GET is redirected
  (303) to /console/sign-in; nothing else is answered. The sign-in pages, the
  magic-link pages and the calendar feeds (their own secret) are the exceptions
  (`OPEN_PREFIXES`).
- Every POST must come from this site: its `Origin` header (or, when a browser
  sends none, its `Referer`) must be the origin of the request itself or of
  `[agent] public_url`; a POST with neither is refused. And it must carry the
  form field `csrf` equal, in constant time, to the token derived from the
  session (HMAC of the session secret with the agent's key) or, before sign-in,
  from the `onwatch_csrf` cookie. A refused POST gets 403 and changes nothing:
  the check runs before any handler.
- The person acting is the session's, always: handlers read `person(request)`
  and never take a name from the form.

Cookies are HttpOnly, SameSite=Lax, Path=/console, with an expiry, and Secure
when the request came over TLS or the public URL is https.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from agent.webguard import FORM_ERRORS, same_secret

SESSION_COOKIE = "onwatch_session"
ANON_COOKIE = "onwatch_csrf"
SESSION_TTL = 12 * 3600.0
#: Paths reachable without a session (each guards itself with its own secret).
OPEN_PREFIXES = ("/console/sign-in", "/console/link/", "/console/calendar/")
PERSON_KEY = "console_person"
SECRET_KEY = "console_secret"
ANON_KEY = "console_anon"
#: What our cookies hold (secrets.token_urlsafe); anything else is no cookie.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: web.Request, public_url: str) -> bool:
    """The POST came from a page of this site (Origin, else Referer); neither: no."""
    given = request.headers.get("Origin")
    if given is None or given == "null":
        referer = request.headers.get("Referer")
        given = referer if referer else None
    if given is None:
        return False
    origin = _origin(given)
    own = {f"{request.scheme}://{request.host}".lower(), _origin(public_url)}
    return origin is not None and origin in own


def is_secure(request: web.Request, public_url: str) -> bool:
    return request.secure or public_url.lower().startswith("https://")


def csrf_for(key: bytes, secret: str, kind: str) -> str:
    """The form token bound to one session (kind "s") or one browser before sign-in ("a")."""
    mac = hmac.new(key, f"csrf|{kind}|{secret}".encode(), hashlib.sha256).hexdigest()
    return mac[:32]


def person(request: web.Request) -> str:
    """The signed-in person (the guard has made sure there is one)."""
    who = request.get(PERSON_KEY)
    assert isinstance(who, str)
    return who


def csrf_token(request: web.Request, key: bytes) -> str:
    secret = request.get(SECRET_KEY)
    if isinstance(secret, str):
        return csrf_for(key, secret, "s")
    anon = request.get(ANON_KEY)
    assert isinstance(anon, str)
    return csrf_for(key, anon, "a")


def set_cookie(resp: web.StreamResponse, name: str, value: str, *, max_age: float,
               secure: bool) -> None:
    resp.set_cookie(name, value, max_age=int(max_age), path="/console", httponly=True,
                    samesite="Lax", secure=secure)


def middleware(lookup: Callable[[str], str | None], key: bytes, public_url: Callable[[], str],
               refuse: Callable[[web.Request, str, int], web.StreamResponse]) -> Middleware:
    """The guard in front of /console (see the module's contract)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/console"):
            return await handler(request)
        secret = request.cookies.get(SESSION_COOKIE, "")
        who = lookup(secret) if _TOKEN.fullmatch(secret) else None
        if who is not None:
            request[PERSON_KEY], request[SECRET_KEY] = who, secret
        anon = request.cookies.get(ANON_COOKIE, "")
        # Only what we set (token_urlsafe) is kept: a cookie of undecodable bytes made
        # every console page a 500 (the CSRF token is a MAC over it).
        fresh = not _TOKEN.fullmatch(anon)
        request[ANON_KEY] = secrets.token_urlsafe(24) if fresh else anon
        is_open = request.path.startswith(OPEN_PREFIXES)
        if who is None and not is_open:
            if request.method == "POST":
                return refuse(request, "You are not signed in (or your session ended).", 403)
            raise web.HTTPSeeOther("/console/sign-in")
        if request.method == "POST" and not request.path.startswith("/console/calendar/"):
            if not same_origin(request, public_url()):
                return refuse(request, "This form was sent from another site.", 403)
            try:
                form = await request.post()
            except FORM_ERRORS:  # a form aiohttp cannot read is a bad form, not a 500
                return refuse(request, "This form could not be read (its encoding or "
                                       "format is wrong).", 400)
            given = form.get("csrf")
            if not isinstance(given, str) or not same_secret(given, csrf_token(request, key)):
                return refuse(request, "This form has expired or was not sent from the "
                                       "console. Go back, reload the page and try again.", 403)
        resp = await handler(request)
        if fresh and who is None:
            set_cookie(resp, ANON_COOKIE, request[ANON_KEY], max_age=SESSION_TTL,
                       secure=is_secure(request, public_url()))
        return resp

    return guard
