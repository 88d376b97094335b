"""Delivery through Apprise: one call per message, one result per channel.

Apprise already does the hard parts (per-service results, retries,
privacy-safe URLs); this module only adapts it: it validates URLs at config
load, redacts them for logs, and turns an `AppriseResult` into
`ChannelResult`s that the runner writes into the incident timeline.
Secrets: a full URL never leaves this module except to Apprise itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import apprise

# Apprise logs at INFO/DEBUG about what it sends; keep it to warnings so its
# lines cannot carry message bodies or endpoints into our JSON logs.
logging.getLogger("apprise").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class ChannelResult:
    #: Redacted URL (`url(privacy=True)`): safe for logs, the store and metrics' neighbours.
    channel: str
    #: The URL's scheme (json, mailto, twilio ...): a bounded metric label.
    kind: str
    ok: bool
    #: "delivered", "failed", "timeout" or why nothing was attempted.
    detail: str
    elapsed_s: float


def _instantiate(url: str) -> object | None:
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
    return str(plugin.url(privacy=True))  # type: ignore[attr-defined]


def kind_of(url: str) -> str:
    return urlsplit(url).scheme.lower() or "unknown"


async def deliver(urls: Sequence[str], title: str, body: str, *, timeout: float = 30.0
                  ) -> list[ChannelResult]:
    """Send one message to every URL; one `ChannelResult` per URL, in order."""
    out: list[ChannelResult] = []
    for url in urls:
        out.append(await _deliver_one(url, title, body, timeout))
    return out


async def _deliver_one(url: str, title: str, body: str, timeout: float) -> ChannelResult:
    kind, shown = kind_of(url), redact(url)
    ap = apprise.Apprise()
    if not ap.add(url):
        return ChannelResult(shown, kind, False, "invalid URL", 0.0)
    result = await ap.async_notify(body=body, title=title, timeout=timeout)
    services = list(getattr(result, "results", ()))
    if not services:
        return ChannelResult(shown, kind, bool(result), "nothing attempted", 0.0)
    svc = services[0]
    status = getattr(svc.status, "name", str(svc.status)).lower()
    detail = {"success": "delivered"}.get(status, status)
    # Apprise's privacy URL carries every default as a query parameter; the
    # part before "?" is what a person needs to recognise the channel.
    channel = (svc.url or shown).split("?", 1)[0]
    return ChannelResult(channel, kind, bool(svc), detail, float(svc.elapsed))
