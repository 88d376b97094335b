"""The service half of [agent]: how long the store keeps things, who watches the watcher,
and what each check costs in /metrics.

Called by `agent.config` for the [agent] table; problems read
`agent: retention: ...`. `heartbeat_url` usually holds a secret (a
Healthchecks check's UUID, an Uptime Kuma push token), so it may come from
`${ENV}` or `heartbeat_url_file`, like every secret, and is never quoted.

Per-check metrics are kept few by default (see README, "What each metric
costs"): `check_duration_buckets` turns the per-check latency histogram's
buckets on; each bucket adds a series to every check.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.fields import Section, bad_url, parse_duration, show

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
    #: Upper bounds of onwatch_check_duration_seconds' buckets; (): sum and count only.
    check_duration_buckets: tuple[float, ...] = ()


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
    return ServiceSettings(retention, url or None, interval, _buckets(sec))


def _buckets(sec: Section) -> tuple[float, ...]:
    key = "check_duration_buckets"
    bounds = [_seconds(sec, key, i, item) for i, item in enumerate(sec.string_list(key))]
    if any(b is None for b in bounds):
        return ()
    out = tuple(b for b in bounds if b is not None)
    if list(out) != sorted(set(out)):
        sec.error(key, "must be in increasing order, each once (like [\"100ms\", \"1s\"])")
        return ()
    if len(out) > 30:
        sec.error(key, f"at most 30 buckets (each adds a series to every check), got {len(out)}")
        return ()
    return out


def _seconds(sec: Section, key: str, i: int, item: str) -> float | None:
    seconds = parse_duration(item)
    if seconds is not None and seconds <= 0:
        sec.error(key, f"bucket bounds must be above 0s, but {key}[{i}] is {show(item)}")
        return None
    if seconds is None:
        sec.error(key, f'must be durations like "250ms", but {key}[{i}] is {show(item)}')
        return None
    return seconds
