"""A store's address: is it PostgreSQL, and how it may be shown (its password never).

Light on purpose (only `re`): the config reads it while it validates
`[agent] store`, without importing the store itself.
"""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(?P<head>^[a-z][a-z0-9+.-]*://[^/?#@:]*:)[^/?#@]*@", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(dsn: str) -> str:
    """`dsn` with its password replaced by `***`, in URL and in key=value form."""
    out = _URL_PASSWORD.sub(lambda m: m.group("head") + "***@", dsn)
    return _KV_PASSWORD.sub(lambda m: m.group("head") + "***", out)


def is_postgresql(dsn: str | None) -> bool:
    return dsn is not None and dsn.split("://", 1)[0].lower() in ("postgresql", "postgres")
