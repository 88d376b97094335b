"""The people half of the config: [[contacts]] and their Apprise URLs.

Called by `agent.config.parse`; problems read `contacts[i] "name": urls[0]:
...` and never quote a URL (they hold secrets). Apprise validates each URL
at load, so a typo in a scheme is a config error, not a page lost at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.config_escalation import Named
from agent.fields import Section, expand_secret, read_secret_file, show


@dataclass(frozen=True)
class Contact:
    name: str
    #: Apprise URLs, secrets expanded. Never log these; log `notifiers.delivery.redact(url)`.
    urls: tuple[str, ...]
    #: True: the URLs are alternatives in order (stop at the first that accepts);
    #: False (`mode = "all"`): every URL gets every message.
    fallback: bool = True


def parse(items: list[Any], named: Named, replies: dict[str, Section] | None = None
          ) -> dict[str, Contact]:
    """[[contacts]] by name; problems go to the shared error list through `named`.

    Each contact's `[contacts.reply]` table is handed out in `replies` (by name),
    for agent.config_replies to read once the [replies] services are known."""
    out: dict[str, Contact] = {}
    for i, item in enumerate(items):
        found = named(item, "contacts", i)
        if found is None:
            continue
        sec, name = found
        before = len(sec.errors)
        urls: list[str] = []
        for j, value in enumerate(sec.string_list("urls", secret=True)):
            url = expand_secret(sec, f"urls[{j}]", value)
            if url is not None and _check_apprise(sec, f"urls[{j}]", url):
                urls.append(url)
        if sec.has("urls_file"):
            urls += _urls_file(sec)
        else:
            sec.value("urls_file")  # a known key, even when absent (for "did you mean")
        reply = sec.sub("reply") if sec.has("reply") else None
        if reply is not None and name and replies is not None:
            replies[name] = reply
        # A contact reached only on reply channels ([contacts.reply]) needs no URL.
        if not urls and len(sec.errors) == before and reply is None:
            sec.error("urls", "at least one Apprise URL is needed (urls or urls_file)")
        mode = sec.choice("mode", ("fallback", "all"), "fallback")
        sec.finish()
        if name in out:
            sec.error("name", f"duplicate contact name {show(name)} (names must be unique)")
        elif name:
            out[name] = Contact(name, tuple(urls), mode == "fallback")
    return out


def _urls_file(sec: Section) -> list[str]:
    """Apprise URLs from the file named by urls_file: one a line, blank lines and # comments."""
    text = read_secret_file(sec, "urls_file", sec.string("urls_file"), strip=False)
    urls: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#") and _check_apprise(sec, "urls_file", line,
                                                                 f"line {n}: "):
            urls.append(line)
    return urls


def _check_apprise(sec: Section, key: str, url: str, where: str = "") -> bool:
    # Imported here: Apprise loads its plugin table on first use (~100 ms), which
    # `onwatch validate` on a config with no contacts should not pay.
    from notifiers.delivery import apprise_url_problem

    try:
        problem = apprise_url_problem(url)
    except ValueError:  # urlsplit on e.g. "json://[::1": its message would quote the URL
        problem = "is not a valid URL"
    if problem:
        sec.error(key, where + problem)
    return problem is None
