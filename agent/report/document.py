"""A document made of sections, rendered as Markdown or HTML. Pure.

Reports and reviews are built as a `Document` (title, a subtitle, sections
with paragraphs, a key/value table, a table and a list), then rendered: to
Markdown here, to printable HTML by a Jinja2 template (`render_html`), so the
two forms always say the same thing. Text is data: Markdown special
characters in it are escaped, HTML is autoescaped by the template engine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from zoneinfo import ZoneInfo

import jinja2


@dataclass(slots=True)
class Section:
    heading: str
    paragraphs: list[str] = field(default_factory=list)
    #: Two columns: a label and its value.
    facts: list[tuple[str, str]] = field(default_factory=list)
    header: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = field(default_factory=list)
    #: (done, text): a checklist when any item has done set to a bool, else bullets.
    items: list[tuple[bool | None, str]] = field(default_factory=list)


@dataclass(slots=True)
class Document:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)


def when(ts: float | None, tz: ZoneInfo) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, tz).strftime("%a %d %b %Y %H:%M:%S %Z")


def span(seconds: float | None) -> str:
    """3725 -> "1h 02m 05s"; None -> "-"."""
    if seconds is None:
        return "-"
    s = round(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s" if m else f"{s}s"


def _md(text: str) -> str:
    out = text.replace("\\", "\\\\")
    for ch in "|*_`[]<>":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def render_markdown(doc: Document) -> str:
    lines = [f"# {_md(doc.title)}", "", f"*{_md(doc.subtitle)}*", ""]
    for sec in doc.sections:
        lines += [f"## {_md(sec.heading)}", ""]
        for p in sec.paragraphs:
            lines += [_md(p), ""]
        if sec.facts:
            lines += ["| | |", "|---|---|"]
            lines += [f"| **{_md(k)}** | {_md(v)} |" for k, v in sec.facts]
            lines.append("")
        if sec.header:
            lines.append("| " + " | ".join(_md(h) for h in sec.header) + " |")
            lines.append("|" + "---|" * len(sec.header))
            lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in sec.rows]
            lines.append("")
        for done, text in sec.items:
            box = "" if done is None else ("[x] " if done else "[ ] ")
            lines.append(f"- {box}{_md(text)}")
        if sec.items:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(
        lambda name: resources.files("agent.report").joinpath("templates", name).read_text()),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_html(doc: Document) -> str:
    return _ENV.get_template("document.html.j2").render(doc=doc)


def render_pdf(doc: Document) -> bytes | None:
    """A PDF where WeasyPrint is installed (it is optional), else None."""
    try:
        import weasyprint  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    pdf = weasyprint.HTML(string=render_html(doc)).write_pdf()
    return bytes(pdf) if pdf is not None else None
