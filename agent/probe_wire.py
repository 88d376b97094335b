"""What a remote probe and the central say to each other, and how it is signed.

A probe (`onwatch probe`, agent/probe_agent.py) talks to the central onwatch
over HTTP(S), outbound only, with two requests:

- `GET /probe/v1/checks`: the check tables assigned to its location;
- `POST /probe/v1/results`: one batch of results, oldest first.

Every request is signed with the probe's own key (HMAC-SHA256, made by the
central: `onwatch probe add NAME`) over the method, the path, a timestamp and
the body. The central refuses a request whose timestamp is more than
`MAX_SKEW_S` away from its clock (an old request replayed later), and a batch
whose sequence number it already accepted (a request replayed at once, or a
retry after a lost answer, changes nothing and is answered as a duplicate, so
the probe moves on). A revoked key's signature matches nothing.

Keys are derived, not stored: key = HMAC(central secret, "probe:" name ":" key id),
so the store holds only names, key ids and revocations (agent/store/probes.py).
Pure apart from `hmac`/`json`: both sides import it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from checks.result import CheckResult, ErrorKind

HEADER_PROBE = "X-Onwatch-Probe"
HEADER_TIME = "X-Onwatch-Time"
HEADER_SIGNATURE = "X-Onwatch-Signature"
#: A signed request older or newer than this (seconds) is refused as a replay.
MAX_SKEW_S = 300.0
#: Bounds on what the central reads from a probe.
MAX_BODY = 2 * 1024 * 1024
MAX_RESULTS = 2000
MAX_REASON = 500
MAX_OBSERVATIONS = 32
KEY_PREFIX = "onwprobe"
#: A key id or a Unix time in a header: 1 to 18 ASCII digits (fits a 64-bit integer).
_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
#: A probe's name as `onwatch probe add` takes it (agent/config_guard.py's NAME): bytes that
#: are not UTF-8 in the header reached the store's query and were a 500.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: SQLite integers are signed 64-bit: a larger sequence number cannot be stored.
MAX_SEQ = 2**63 - 1


class WireError(ValueError):
    """A request or batch that is malformed; the message names what."""


def derive_key(secret: bytes, name: str, key_id: int) -> bytes:
    return hmac.new(secret, f"probe:{name}:{key_id}".encode(), hashlib.sha256).digest()


def format_key(key_id: int, key: bytes) -> str:
    """What `onwatch probe add` prints and the probe's config holds."""
    return f"{KEY_PREFIX}.{key_id}.{base64.urlsafe_b64encode(key).decode().rstrip('=')}"


def parse_key(text: str) -> tuple[int, bytes]:
    """(key id, key) from `format_key`'s text; WireError when it is not one."""
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1].isdigit():
        raise WireError(f"not a probe key (expected {KEY_PREFIX}.<id>.<key>, as printed by "
                        "`onwatch probe add NAME`)")
    try:
        key = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except ValueError:
        raise WireError("the probe key's last part is not base64") from None
    if len(key) != 32:
        raise WireError("the probe key has the wrong length (copy it whole)")
    return int(parts[1]), key


def signature(key: bytes, method: str, path: str, at: int, body: bytes) -> str:
    msg = b"\n".join([method.upper().encode(), path.encode(), str(at).encode(), body])
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def sign_headers(name: str, key_id: int, key: bytes, method: str, path: str, at: int,
                 body: bytes) -> dict[str, str]:
    return {HEADER_PROBE: f"{name}.{key_id}", HEADER_TIME: str(at),
            HEADER_SIGNATURE: signature(key, method, path, at, body)}


def signed_by(headers: Mapping[str, str]) -> tuple[str, int, int, str]:
    """(probe name, key id, time, signature) from a request's headers; WireError if absent."""
    who, at, sig = (headers.get(HEADER_PROBE, ""), headers.get(HEADER_TIME, ""),
                    headers.get(HEADER_SIGNATURE, ""))
    name, _, key_id = who.rpartition(".")
    # ASCII digits of a bounded length and lowercase hex only: str.isdigit() also takes
    # "²" (which int() refuses), a 5000-digit header is past int()'s limit, and
    # compare_digest raises on a non-ASCII str: each was a 500 for anyone, unsigned.
    if not _NAME.fullmatch(name) or not _DIGITS.fullmatch(key_id) or not _DIGITS.fullmatch(at) \
            or not _HEX64.fullmatch(sig):
        raise WireError(f"unsigned request: {HEADER_PROBE}, {HEADER_TIME} and "
                        f"{HEADER_SIGNATURE} are required")
    return name, int(key_id), int(at), sig


def verify(key: bytes, method: str, path: str, at: int, body: bytes, sig: str) -> bool:
    return hmac.compare_digest(signature(key, method, path, at, body), sig)


@dataclass(frozen=True, slots=True)
class Batch:
    probe: str
    #: Strictly increasing per probe (kept across the probe's restarts).
    seq: int
    results: tuple[tuple[str, CheckResult], ...]


def result_to_json(check: str, r: CheckResult) -> dict[str, Any]:
    return {"check": check, "checked_at": r.checked_at, "ok": r.ok, "latency_s": r.latency_s,
            "reason": r.reason, "error_kind": r.error_kind and str(r.error_kind),
            "observations": dict(r.observations), "degraded": r.degraded}


def encode_batch(probe: str, seq: int, results: list[dict[str, Any]]) -> bytes:
    return json.dumps({"probe": probe, "seq": seq, "results": results},
                      separators=(",", ":")).encode()


def decode_batch(body: bytes) -> Batch:
    """A batch from a request body; WireError naming the first thing wrong."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not a batch
        raise WireError("the body is not JSON") from None
    if not isinstance(doc, dict):
        raise WireError("the body must be a JSON object")
    probe, seq, items = doc.get("probe"), doc.get("seq"), doc.get("results")
    if not isinstance(probe, str) or not isinstance(seq, int) or isinstance(seq, bool) \
            or not 1 <= seq <= MAX_SEQ:
        raise WireError(f"probe (a name) and seq (an integer from 1 to {MAX_SEQ}) are required")
    if not isinstance(items, list) or len(items) > MAX_RESULTS:
        raise WireError(f"results must be a list of at most {MAX_RESULTS}")
    return Batch(probe, seq, tuple(_result(i, item) for i, item in enumerate(items)))


def _result(i: int, item: Any) -> tuple[str, CheckResult]:
    where = f"results[{i}]"
    if not isinstance(item, dict):
        raise WireError(f"{where}: must be an object")
    check, ok, reason = item.get("check"), item.get("ok"), item.get("reason", "")
    at: Any = item.get("checked_at")
    latency: Any = item.get("latency_s", 0.0)
    if not isinstance(check, str) or not check or not isinstance(ok, bool):
        raise WireError(f"{where}: check (a name) and ok (true/false) are required")
    if not _number(at) or at <= 0 or not _number(latency) or latency < 0:
        raise WireError(f"{where}: checked_at and latency_s must be positive numbers")
    if not isinstance(reason, str) or not _storable(reason):
        raise WireError(f"{where}: reason must be text (no NUL, valid Unicode)")
    kind_text = item.get("error_kind")
    try:
        kind = None if kind_text is None else ErrorKind(kind_text)
    except ValueError:
        raise WireError(f"{where}: unknown error_kind {kind_text!r}") from None
    obs = item.get("observations") or {}
    if not isinstance(obs, dict) or len(obs) > MAX_OBSERVATIONS or not all(
            isinstance(k, str) and len(k) <= 64 and _storable(k) and _number(v)
            for k, v in obs.items()):
        raise WireError(f"{where}: observations must map at most {MAX_OBSERVATIONS} names "
                        "to numbers")
    if ok and kind is not None:
        raise WireError(f"{where}: a passing result has no error_kind")
    if not ok and kind is None:
        kind = ErrorKind.INTERNAL
    degraded = item.get("degraded", False) is True
    return check, CheckResult(ok, float(latency), reason[:MAX_REASON], kind, float(at),
                              {k: float(v) for k, v in obs.items()}, degraded)


def _storable(text: str) -> bool:
    """No NUL, no lone surrogate: PostgreSQL refuses both (and the reason is stored)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\0" not in text


def _number(v: Any) -> bool:
    if not isinstance(v, int | float) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float (10**400): not a measurement
        return False
