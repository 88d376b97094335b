"""Heartbeat (push) check: passes while something pings the agent often enough.

For backups, cron jobs and the POS nightly export: the job calls, when it has done its
work, `GET` or `POST /heartbeat/<check name>?token=<token>` (or sends the token as
`Authorization: Bearer <token>`), e.g. from cron:

    0 3 * * *  backup.sh && curl -fsS -m 10 "http://127.0.0.1:9847/heartbeat/backup?token=..."

Config keys:
  period      how often the job pings (required), e.g. "24h"
  grace       how late a ping may be before it counts as missed (default "5m")
  token       the secret the job presents, at least 16 characters; `${ENV}` works, or
              token_file = "path" (one of the two is required)

Contract: the web handler (agent/web.py) compares the token in constant time, answers 403
(and records nothing) when it is wrong or missing, 404 for a name that is not a
heartbeat check, and otherwise writes the time into `ctx.heartbeats[<check name>]`. The
probe only reads that time and judges it with `verdict`, a pure function of the time.

- A missed heartbeat is an outage: an `assertion` failure, "no heartbeat since 03:12
  (expected every 24h, grace 5m)".
- Before the first ping the agent knows nothing of earlier ones: pings are kept in
  memory only (the ProbeContext), not in the store, so not across restarts. So a check
  fails only once `period + grace` has passed, without a ping, since onwatch began
  watching it — the first run of the probe, right after the agent starts. A restart
  thus gives every heartbeat a fresh period; an outage already open stays open in the
  store until the check recovers.
- The probe needs its own check name, which the config reader reads before `parse`;
  `parse` takes it from the section's raw table.

Observations: heartbeat_age_s (seconds since the last ping), once there was one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Final

from agent.fields import Section, format_duration
from agent.webguard import same_secret
from checks.base import ProbeContext
from checks.result import CheckResult, ErrorKind

MIN_TOKEN: Final = 16


@dataclass(frozen=True, slots=True)
class HeartbeatSpec:
    name: str
    period: float
    grace: float = 300.0
    token: str = field(default="", repr=False)  # never in a log line or a reason


def parse(sec: Section) -> HeartbeatSpec:
    name = sec.raw.get("name")
    period = sec.duration("period")
    grace = sec.duration("grace", 300.0, positive=False)
    before = len(sec.errors)
    token = sec.secret("token")
    key = "token_file" if sec.has("token_file") else "token"
    if len(sec.errors) == before:
        if token is None:
            sec.error("token", "is required (or token_file): the job presents it with its ping")
        elif len(token) < MIN_TOKEN:
            sec.error(key, f"must be at least {MIN_TOKEN} characters (it guards the "
                           f"heartbeat URL)")
    return HeartbeatSpec(name if isinstance(name, str) else "", period, grace, token or "")


def target(spec: HeartbeatSpec) -> str:
    return f"/heartbeat/{spec.name}"


def presented(query_token: str | None, authorization: str | None) -> str | None:
    """The token a ping carries: `?token=` first, else `Authorization: Bearer`."""
    if query_token:
        return query_token
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def authorized(spec: HeartbeatSpec, token: str | None) -> bool:
    """Constant time in the token's content: a wrong guess learns nothing from timing."""
    if not token or not spec.token:
        return False
    # Undecodable bytes in a query or header are a wrong token, not a crash.
    return same_secret(token, spec.token)


async def probe(spec: HeartbeatSpec, ctx: ProbeContext) -> CheckResult:
    """Judges the last ping the web handler recorded; no I/O. The first run notes in
    `ctx.heartbeat_watch_since` when onwatch began watching (see the module docstring)."""
    now = ctx.clock()
    since = ctx.heartbeat_watch_since.setdefault(spec.name, now)
    ok, reason, observations = verdict(ctx.heartbeats.get(spec.name), since, now,
                                       spec.period, spec.grace)
    if ok:
        return CheckResult.success(0.0, reason, observations)
    return CheckResult.failure(ErrorKind.ASSERTION, reason, 0.0, observations)


def verdict(last: float | None, since: float, now: float, period: float, grace: float,
            tz: dt.tzinfo | None = None) -> tuple[bool, str, dict[str, float]]:
    """(ok, reason, observations) for a heartbeat last seen at `last` (None: never since
    `since`) at time `now`. Pure; `tz` is for the times in the reason (None: local)."""
    allowed = period + grace
    expected = f"expected every {_span(period)}, grace {_span(grace)}"
    if last is None:
        if now - since <= allowed:
            return True, (f"waiting for the first heartbeat, due by "
                          f"{_clock(since + allowed, now, tz)} ({expected})"), {}
        return False, (f"no heartbeat since onwatch began watching at "
                       f"{_clock(since, now, tz)} ({expected})"), {}
    age = max(0.0, now - last)
    observations = {"heartbeat_age_s": age}
    if age <= allowed:
        return True, f"last heartbeat {_span(age)} ago ({expected})", observations
    return False, f"no heartbeat since {_clock(last, now, tz)} ({expected})", observations


def _span(seconds: float) -> str:
    """A whole-second duration; "0s" below one second."""
    return format_duration(round(seconds)) if seconds >= 1 else "0s"


def _clock(at: float, now: float, tz: dt.tzinfo | None) -> str:
    """"03:12" today, "2024-05-01 03:12" on another day."""
    when, today = dt.datetime.fromtimestamp(at, tz), dt.datetime.fromtimestamp(now, tz)
    return when.strftime("%H:%M" if when.date() == today.date() else "%Y-%m-%d %H:%M")
