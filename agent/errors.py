"""Why a person's action cannot be done: a small typed tree, each with its HTTP status.

Raised by the engine (and its helpers), shown to the person who asked; the
API answers with `exc.status` so that no caller chooses a status by reading
the message.
"""

from __future__ import annotations

__all__ = ["ActionError", "Conflict", "Invalid", "NotFound"]


class ActionError(Exception):
    """A person's action that cannot be done; the message says why (shown to them).

    Each subclass carries the HTTP status an API answer uses for it, so that no
    caller chooses a status by reading the message.
    """

    status = 400


class NotFound(ActionError):
    """No such incident or maintenance window."""

    status = 404


class Conflict(ActionError):
    """The incident is not in a state that allows it (already acknowledged, resolved)."""

    status = 409


class Invalid(ActionError):
    """The request itself is wrong (no policy to page with, a bad value)."""

    status = 400
