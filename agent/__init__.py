"""onwatch: the agent (config, scheduler, detection, incidents, escalation, store, web, CLI)."""

from __future__ import annotations


def version() -> str:
    """The installed onwatch's version ("unknown" when run from a never-installed checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("onwatch")
    except PackageNotFoundError:
        return "unknown"
