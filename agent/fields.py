"""Typed readers for one TOML table, collecting errors instead of raising.

`Section` wraps a raw table and a human path (`checks[2] "pos-terminal"`).
Each reader returns a usable value (the default on error) and appends
`<path>: <key>: <what is wrong>` to the shared error list, so that one pass
over a config reports every problem at once. `finish()` reports the keys no
reader asked for: a typo must never be accepted silently.

Secrets (`secret=True` readers, `secret()`) are never quoted back in an
error: a message says what kind of value was found, not the value.

Pure: no I/O except `secret_file` reads and `${ENV}` expansion, which are
part of reading a value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS: Final = {
    None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30,
}
_ENV: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Missing:
    pass


MISSING: Final = _Missing()


def parse_duration(text: str) -> float | None:
    """'1h30m' -> 5400.0; None when the text is not a duration."""
    text = text.strip()
    pos, total = 0, 0.0
    if not text:
        return None
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def format_duration(seconds: float) -> str:
    """5400 -> '1h30m', 90 -> '1m30s', 0.25 -> '250ms': exact, and parseable back."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours:.0f}h" if hours else "", f"{minutes:.0f}m" if minutes else "",
             f"{round(secs, 3):g}s" if secs else ""]
    return "".join(parts)


def show(value: Any) -> str:
    """How a wrong value is quoted back in an error: as the user wrote it in TOML."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return repr(value)


def kind_of_value(value: Any) -> str:
    """What a value is, without showing it (for secrets): 'a string', 'a number' ..."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def expand_env(value: str) -> tuple[str, list[str]]:
    """Replace `${NAME}` from the environment; returns the text and names not set."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        got = os.environ.get(m.group(1))
        if got is None:
            missing.append(m.group(1))
            return ""
        return got

    return _ENV.sub(sub, value), missing


class Section:
    def __init__(self, raw: Mapping[str, Any], path: str, errors: list[str], base_dir: Path
                 ) -> None:
        self.raw = raw
        self.path = path
        self.errors = errors
        self.base_dir = base_dir
        self._used: set[str] = set()

    def error(self, key: str | None, message: str) -> None:
        self.errors.append(f"{self.path}: {key}: {message}" if key else f"{self.path}: {message}")

    def has(self, key: str) -> bool:
        return key in self.raw

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self.raw.get(key, MISSING)

    def value(self, key: str, default: Any = None) -> Any:
        """The raw value (marked as read), for a reader of a kind's own."""
        self._used.add(key)
        return self.raw.get(key, default)

    def sub(self, key: str) -> Section | None:
        """The table under `key` (an empty one when absent); None, and an error, if not a table."""
        value = self._get(key)
        if value is MISSING:
            return Section({}, f"{self.path}.{key}", self.errors, self.base_dir)
        if not isinstance(value, dict):
            self.error(key, f"must be a table, got {show(value)}")
            return None
        return Section(value, f"{self.path}.{key}", self.errors, self.base_dir)

    def string(self, key: str, default: str | _Missing = MISSING, *, nonempty: bool = True,
               secret: bool = False) -> str:
        value = self._get(key)
        if value is MISSING:
            if isinstance(default, _Missing):
                self.error(key, "is required")
                return ""
            return default
        if not isinstance(value, str):
            got = kind_of_value(value) if secret else show(value)
            self.error(key, f"must be a string, got {got}")
            return default if isinstance(default, str) else ""
        if nonempty and not value.strip():
            self.error(key, "must not be empty")
        return value

    def optional_string(self, key: str) -> str | None:
        if self.raw.get(key) is None:
            self._used.add(key)
            return None
        return self.string(key)

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self._get(key)
        if value is MISSING:
            return default
        if value not in choices:
            self.error(key, f"must be one of {', '.join(choices)}; got {show(value)}")
            return default
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is MISSING:
            return default
        if not isinstance(value, bool):
            self.error(key, f"must be true or false, got {show(value)}")
            return default
        return value

    def integer(self, key: str, default: int | _Missing = MISSING, *, low: int | None = None,
                high: int | None = None) -> int:
        value = self._get(key)
        fallback = default if isinstance(default, int) else (low or 0)
        if value is MISSING:
            if isinstance(default, _Missing):
                self.error(key, "is required")
            return fallback
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(key, f"must be a whole number, got {show(value)}")
            return fallback
        too_low, too_high = low is not None and value < low, high is not None and value > high
        if (too_low or too_high) and low is not None and high is not None:
            self.error(key, f"must be between {low} and {high}, got {value}")
            return fallback
        if too_low or too_high:
            self.error(key, f"must be >= {low}, got {value}" if too_low
                       else f"must be <= {high}, got {value}")
            return fallback
        return value

    def duration(self, key: str, default: float | _Missing = MISSING, *, positive: bool = True
                 ) -> float:
        value = self._get(key)
        fallback = default if isinstance(default, float | int) else 1.0
        if value is MISSING:
            if isinstance(default, _Missing):
                self.error(key, 'is required (a duration like "30s")')
            return float(fallback)
        seconds = parse_duration(value) if isinstance(value, str) else None
        if seconds is None:
            self.error(key, f'must be a duration like "10s", got {show(value)}')
            return float(fallback)
        if positive and seconds <= 0:
            self.error(key, f"must be > 0s, got {show(value)}")
            return float(fallback)
        return seconds

    def optional_duration(self, key: str) -> float | None:
        if key not in self.raw:
            self._used.add(key)
            return None
        return self.duration(key)

    def percent(self, key: str, default: float) -> float:
        """0-100, from a number or "N%"; `default` when absent."""
        value: Any = self.value(key, default)
        number: Any = value
        if isinstance(value, str) and value.strip().endswith("%"):
            with contextlib.suppress(ValueError):
                number = float(value.strip()[:-1])
        if isinstance(number, bool) or not isinstance(number, int | float) \
                or not 0 <= number <= 100:
            self.error(key, f'must be a percentage from 0 to 100, like 20 or "20%", '
                            f"got {show(value)}")
            return default
        return float(number)

    def size(self, key: str, default: int) -> int:
        value = self._get(key)
        if value is MISSING:
            return default
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        m = _SIZE.match(value) if isinstance(value, str) else None
        if m is None or float(m.group(1)) <= 0:
            self.error(key, f'must be a size like "1MiB" or a number of bytes, got {show(value)}')
            return default
        return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])

    def string_list(self, key: str, default: Sequence[str] = (), *, secret: bool = False
                    ) -> tuple[str, ...]:
        """A list of strings; one string alone is taken as a list of one."""
        value = self._get(key)
        if value is MISSING:
            return tuple(default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            got = kind_of_value(value) if secret else show(value)
            self.error(key, f"must be a list of strings, got {got}")
            return tuple(default)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                got = kind_of_value(item) if secret else show(item)
                self.error(key, f"must be a list of strings, but {key}[{i}] is {got}")
                return tuple(default)
        return tuple(value)

    def url(self, key: str, schemes: Sequence[str], default: str | _Missing = MISSING) -> str:
        value = self.string(key, default)
        problem = bad_url(value, schemes) if value else None
        if problem:
            self.error(key, f"{problem}, got {show(_hide_password(value))}")
        return value

    def table_of_strings(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if value is MISSING:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            self.error(key, f"must be a table of strings, got {show(value)}")
            return {}
        return dict(value)

    def secret(self, key: str) -> str | None:
        """A secret from `key` (with `${ENV}` expansion) or from the file named by `key_file`."""
        file_key = f"{key}_file"
        self._used.update((key, file_key))
        if key in self.raw and file_key in self.raw:
            self.error(key, f"give either {key} or {file_key}, not both")
            return None
        if file_key in self.raw:
            return read_secret_file(self, file_key, self.string(file_key))
        if key in self.raw:
            return expand_secret(self, key, self.string(key, secret=True))
        return None

    def finish(self) -> None:
        """Report every key that no reader asked for, with the nearest known key as a hint."""
        for key in self.raw:
            if key not in self._used:
                near = difflib.get_close_matches(key, sorted(self._used), n=1, cutoff=0.7)
                hint = f' (did you mean "{near[0]}"?)' if near else ""
                if key == "include" and self.path != "config":
                    # TOML puts a key written after [table] into that table.
                    hint = " (include is a top-level key: move it above the first [table])"
                self.error(None, f"unknown key {show(key)}{hint}")


def expand_secret(sec: Section, key: str, value: str) -> str | None:
    """`value` with `${ENV}` replaced; None, and an error per variable, when one is not set."""
    text, missing = expand_env(value)
    for name in missing:
        sec.error(key, f"environment variable {name} is not set")
    return None if missing else text


def read_secret_file(sec: Section, key: str, name: str, *, strip: bool = True) -> str:
    """The text of `name` (relative to the config's directory); "" and an error if unreadable."""
    if not name.strip():
        return ""  # the reader of `key` has reported it
    path = Path(name) if Path(name).is_absolute() else credential_path(sec.base_dir, name)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        sec.error(key, f"cannot read {path}: {why}")
        return ""
    return text.strip() if strip else text


def credential_path(base: Path, name: str) -> Path:
    """`base/name`; for `dir/file` missing there, `base/dir_file` when that exists.

    Under systemd the config is a credential (`base` is $CREDENTIALS_DIRECTORY) and
    `LoadCredential=secrets:/etc/onwatch/secrets` names its files `secrets_<file>`;
    root's copy of the same config finds /etc/onwatch/secrets/<file>.
    """
    path = base / name
    parts = Path(name).parts
    if len(parts) == 2 and not path.exists() and (base / "_".join(parts)).exists():
        return base / "_".join(parts)
    return path


def _hide_password(url: str) -> str:
    """`url` with the password of `user:password@` replaced, for quoting it in an error."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def bad_url(value: str, schemes: Sequence[str]) -> str | None:
    """Why `value` is not an absolute URL with one of `schemes`, or None."""
    if any(c.isspace() for c in value):
        return "must not contain spaces"
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
    if not parts.hostname:
        return "must name a host"
    if not _port_ok(parts):
        return "must have a port between 1 and 65535 after the host"
    return None


def _port_ok(parts: SplitResult) -> bool:
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        return False
    if port is None:
        return not parts.netloc.endswith(":")
    return 1 <= port <= 65535


def split_host_port(value: str) -> tuple[str, int] | None:
    """'127.0.0.1:9847' or '[::1]:9847' -> (host, port); None when malformed.

    Uses URL parsing, never `split(":")`, so IPv6 literals work. Port 0 is
    allowed: it asks the system for a free port (tests use it).
    """
    if any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit("//" + value)
        port = parts.port
    except ValueError:
        return None
    if (parts.hostname is None or port is None or parts.path or parts.query or parts.fragment
            or parts.username is not None):
        return None
    return parts.hostname, port
