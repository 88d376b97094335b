"""structlog set-up: JSON lines for journald and files, readable lines on a terminal.

Event names are snake_case (`incident_opened`) and context is bound as
keys (`check=`, `incident=`). Standard-library logging (aiohttp, Apprise)
goes through the same renderer so that every line has one shape.

Under systemd, when stderr is the journal stream (`$JOURNAL_STREAM` names
its device and inode), every line starts with its syslog priority (`<4>`
for a warning), which journald strips and records: `journalctl -u onwatch
-p warning` then shows warnings and errors only.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog


def _drop_client_garbage(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it could not parse as an error; it is the client's, and
    aiohttp has already answered it 400. A flood of them must not drown real errors."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    return not (record.name.startswith("aiohttp") and isinstance(exc, HttpProcessingError))


def configure(level: str = "info", *, json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    if to_journal():
        renderer = _Prioritised(renderer)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    # format_exc_info: a library's logged exception arrives as exc_info; without this
    # the JSON renderer would print "<traceback object at 0x...>" instead of the stack.
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer],
        foreign_pre_chain=shared))
    handler.addFilter(_drop_client_garbage)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


#: syslog priorities (sd-daemon(3)) of structlog's and logging's level names.
PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
            "critical": 2}


def to_journal() -> bool:
    """True when stderr is the journal stream systemd connected (not merely inherited)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


class _Prioritised:
    """Wraps a renderer: its line gets the `<N>` prefix journald reads as the priority."""

    def __init__(self, renderer: Any) -> None:
        self._renderer = renderer

    def __call__(self, logger: Any, method: str, event: Any) -> str:
        level = str(event.get("level", method)).lower()
        line = self._renderer(logger, method, event)
        return f"<{PRIORITY.get(level, 6)}>{line}"
