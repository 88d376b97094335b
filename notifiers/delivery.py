"""Delivery through Apprise: one call per message, one result per channel. The only
module that imports Apprise.

Apprise already does the hard parts (per-service results, retries,
privacy-safe URLs); this module only adapts it: it validates URLs at config
load, redacts them for logs, and turns an `AppriseResult` into
`ChannelResult`s that the outbox writes into the incident timeline.
Secrets: a full URL never leaves this module except to Apprise itself.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import apprise

from notifiers.channels import ChannelResult, Message, channel_class, kind_of

# Apprise logs at INFO/DEBUG about what it sends; keep it to warnings so its
# lines cannot carry message bodies or endpoints into our JSON logs.
logging.getLogger("apprise").setLevel(logging.WARNING)

#: Apprise reports an HTTP error as "error=NNN." in its log lines.
_HTTP_ERROR = re.compile(r"error=(\d{3})")


def _instantiate(url: str) -> apprise.NotifyBase | None:
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, or None. Never echoes the URL (it may hold a token)."""
    try:
        scheme = urlsplit(url).scheme if "://" in url else ""
    except ValueError:
        return "is not a valid URL"
    if not scheme:
        return 'is not an Apprise URL (expected "scheme://...", e.g. "json://host/path")'
    if _instantiate(url) is None:
        return (f'Apprise cannot use this "{scheme}://" URL (unknown service or missing part); '
                "see https://github.com/caronc/apprise/wiki")
    return None


def redact(url: str) -> str:
    """The URL with secrets hidden, as Apprise itself shows it."""
    plugin = _instantiate(url)
    if plugin is None:
        return (urlsplit(url).scheme or "invalid") + "://***"
    return str(plugin.url(privacy=True))  # type: ignore[no-untyped-call]


async def deliver(urls: Sequence[str], msg: Message, *, fallback: bool = True,
                  timeout: float = 30.0, skip: frozenset[str] = frozenset()
                  ) -> list[ChannelResult]:
    """Send `msg` through a contact's channels, in their order.

    With `fallback`, the channels are alternatives: the first that accepts the
    message ends the delivery (push first, SMS if push fails, e-mail last).
    Without it every channel is used. Channels whose redacted name is in `skip`
    (they failed permanently before) are not tried again.
    """
    out: list[ChannelResult] = []
    for url in urls:
        kind = kind_of(url)
        if redact_short(url) in skip:
            continue
        sms = channel_class(kind) == "sms"
        res = await _deliver_one(url, msg.title if not sms else "",
                                 msg.short if sms else msg.body, timeout)
        out.append(res)
        if res.ok and fallback:
            break
    return out


def redact_short(url: str) -> str:
    return redact(url).split("?", 1)[0]


async def _deliver_one(url: str, title: str, body: str, timeout: float) -> ChannelResult:
    kind, shown = kind_of(url), redact_short(url)
    plugin = _instantiate(url)
    ap = apprise.Apprise()
    if plugin is None or not ap.add(plugin):
        return ChannelResult(shown, kind, False, "invalid URL", 0.0, permanent=True)
    _honour_timeout(plugin, timeout)
    result = await ap.async_notify(body=body, title=title, timeout=timeout)
    services = list(getattr(result, "results", ()))
    if not services:
        return ChannelResult(shown, kind, bool(result), "nothing attempted", 0.0)
    svc = services[0]
    status = getattr(svc.status, "name", str(svc.status)).lower()
    detail = {"success": "delivered"}.get(status, status)
    permanent = network = False
    if not svc:
        code = _http_status(svc)
        network = code is None
        if code is not None:
            detail = f"HTTP {code}"
            # A 4xx is the service refusing this message or these credentials:
            # sending it again cannot help. 408 and 429 are the exceptions.
            permanent = 400 <= code < 500 and code not in (408, 429)
        elif status == "failure":
            detail = "failed (no answer or connection error)"
    # Apprise's privacy URL carries every default as a query parameter; the
    # part before "?" is what a person needs to recognise the channel.
    channel = (svc.url or shown).split("?", 1)[0]
    return ChannelResult(channel, kind, bool(svc), detail, float(svc.elapsed), permanent,
                         network)


def _honour_timeout(plugin: object, timeout: float) -> None:
    """Make `send_timeout` the socket timeouts too: Apprise's own are 4 s each
    (what a URL's `cto`/`rto` arguments set), which cut a slower service off at 4 s
    whatever the configured timeout, failed it, and invited a duplicate.
    A URL that sets `cto` or `rto` itself keeps its choice."""
    for attr in ("socket_connect_timeout", "socket_read_timeout"):
        default = getattr(type(plugin), attr, None)
        if isinstance(default, float) and getattr(plugin, attr, None) == default:
            setattr(plugin, attr, float(timeout))


def _http_status(svc: object) -> int | None:
    for attempt in getattr(svc, "attempts", ()):
        for entry in getattr(attempt, "logs", ()):
            m = _HTTP_ERROR.search(str(getattr(entry, "message", "")))
            if m:
                return int(m.group(1))
    return None
