"""The service half of [agent]: how long the store keeps things, and who watches the watcher.

Called by `agent.config` for the [agent] table; problems read
`agent: retention: ...`. `heartbeat_url` usually holds a secret (a
Healthchecks check's UUID, an Uptime Kuma push token), so it may come from
`${ENV}` or `heartbeat_url_file`, like every secret, and is never quoted.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.fields import Section, bad_url

#: Long enough for a yearly review of last year's incidents, with a month to spare.
DEFAULT_RETENTION = 400 * 86400.0


@dataclass(frozen=True)
class ServiceSettings:
    #: Resolved incidents (with their timelines) and finished messages older than
    #: this are deleted; open incidents never are.
    retention: float = DEFAULT_RETENTION
    #: An outside dead-man service pinged while the agent is healthy; None: none.
    heartbeat_url: str | None = None
    heartbeat_interval: float = 60.0


def parse(sec: Section) -> ServiceSettings:
    retention = sec.duration("retention", DEFAULT_RETENTION)
    if retention < 86400.0:
        sec.error("retention", "must be at least 1d (incidents must outlive their review)")
    url = sec.secret("heartbeat_url")
    key = "heartbeat_url_file" if sec.has("heartbeat_url_file") else "heartbeat_url"
    problem = bad_url(url, ("http", "https")) if url else None
    if problem:
        sec.error(key, problem)  # not quoted: the URL is the secret
        url = None
    interval = sec.duration("heartbeat_interval", 60.0)
    if interval < 10.0:
        sec.error("heartbeat_interval", "must be at least 10s (dead-man services count "
                                        "minutes, not seconds)")
    return ServiceSettings(retention, url or None, interval)
