"""Server-rendered pages: one Jinja2 environment, one base layout and stylesheet.

Every HTML page the agent serves to people extends `templates/base.html`,
which inlines `templates/base.css` (one request, no JavaScript, readable from
320 px). Autoescaping is on for every template, so text from the store or
the config can never become markup. `respond` adds the headers every page
gets: a strict Content-Security-Policy (no scripts at all, styles and images
from here only), no sniffing, no framing.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

TEMPLATES = Path(__file__).parent / "templates"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY"}


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html", "svg", "atom", "xml"),
                                            default_for_string=True, default=True),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.globals["pct"] = percent
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


def percent(value: float | None) -> str:
    """99.95 -> "99.95%", 100 -> "100%", None -> "no data"."""
    if value is None:
        return "no data"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def respond(body: str | bytes, *, status: int = 200, content_type: str = "text/html",
            cache: str = "no-store", extra: dict[str, str] | None = None) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": cache, **(extra or {})}
    data = body.encode() if isinstance(body, str) else body
    return web.Response(body=data, status=status, content_type=content_type, charset="utf-8",
                        headers=headers)
