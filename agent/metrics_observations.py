"""What probes observe, exported with one unit per metric; fingerprints are not exported.

A probe's `CheckResult.observations` maps a key to a float: phase timings
(`connect_s`), days to certificate expiry, ratios, percentages, byte counts,
an HTTP status, and content fingerprints (digests stored as floats, which only
the change detector compares). `place(key)` says where one
key goes (the caller caches it; `metrics_checks` renders the lines):

| key                                     | metric                                              |
|-----------------------------------------|-----------------------------------------------------|
| `*_s` (dns_s, connect_s, rtt_avg_s ...)  | `onwatch_check_observation_seconds{observation}`    |
| `ttl_min`                               | `..._seconds{observation="dns_ttl_min"}`            |
| `tls_cert_days_left`, `cert_days_left`  | `..._seconds{observation="certificate_remaining"}`  |
| `*_ratio`, `*_percent` (/100), load     | `onwatch_check_observation_ratio{observation}`      |
| `*_bytes_read`, `own_rss_mb` (x 2^20)   | `onwatch_check_observation_bytes{observation}`      |
| `status_code`                           | `onwatch_check_http_status_code`                    |
| `disk_free_ratio:<path>` and the like   | `onwatch_check_disk_free_ratio{path}`, `..._bytes`, |
|                                         | `onwatch_check_disk_fill_rate_bytes_per_second`     |
| `*_fingerprint`                         | not exported (a hash is no measurement)             |
| anything else (answers, messages ...)   | `onwatch_check_observation_value{observation}`      |

Every metric also has the `check` label. Units are Prometheus's base units
(seconds, bytes, ratios), as `promtool check metrics` asks.
"""

from __future__ import annotations

from collections.abc import Mapping

_CHECK_OBS = ("check", "observation")
FAMILIES: Mapping[str, tuple[str, str, tuple[str, ...]]] = {
    "seconds": ("onwatch_check_observation_seconds",
                "Times a probe observed on its last run: phases, round trips, heartbeat age, "
                "time left before the certificate expires", _CHECK_OBS),
    "ratio": ("onwatch_check_observation_ratio",
              "Ratios a probe observed on its last run (0-1): memory and swap used, packet "
              "loss, CPU, load per core", _CHECK_OBS),
    "bytes": ("onwatch_check_observation_bytes",
              "Sizes a probe observed on its last run: body read, the agent's own memory",
              _CHECK_OBS),
    "value": ("onwatch_check_observation_value",
              "Counts a probe observed on its last run (DNS answers, ping replies, messages "
              "in a mailbox)", _CHECK_OBS),
    "http_status": ("onwatch_check_http_status_code",
                    "HTTP status code of the last response", ("check",)),
    "disk_free_ratio": ("onwatch_check_disk_free_ratio", "Free share of a filesystem (0-1)",
                        ("check", "path")),
    "disk_free_bytes": ("onwatch_check_disk_free_bytes", "Free bytes of a filesystem",
                        ("check", "path")),
    "disk_fill_rate_bytes_per_s": ("onwatch_check_disk_fill_rate_bytes_per_second",
                                   "How fast a filesystem fills (negative: it frees up)",
                                   ("check", "path")),
}
_EXACT: Mapping[str, tuple[str, str, float]] = {
    "ttl_min": ("seconds", "dns_ttl_min", 1.0),
    "tls_cert_days_left": ("seconds", "certificate_remaining", 86400.0),
    "cert_days_left": ("seconds", "certificate_remaining", 86400.0),
    "load5_per_core": ("ratio", "load5_per_core", 1.0),
    "own_rss_mb": ("bytes", "own_rss", float(2**20)),
    "body_bytes_read": ("bytes", "body_read", 1.0),
}
_SUFFIXES: tuple[tuple[str, str, float], ...] = (
    ("_s", "seconds", 1.0), ("_ratio", "ratio", 1.0), ("_percent", "ratio", 0.01),
    ("_bytes", "bytes", 1.0),
)


def place(key: str) -> tuple[str, tuple[str, ...], float] | None:
    """(family, label values after `check`, scale) for one observation key; None: not exported."""
    if key.endswith("_fingerprint"):
        return None
    what, sep, path = key.partition(":")
    if sep:
        return (what, (path,), 1.0) if what in FAMILIES else ("value", (key,), 1.0)
    if key == "status_code":
        return "http_status", (), 1.0
    if key in _EXACT:
        family, name, scale = _EXACT[key]
        return family, (name,), scale
    for suffix, family, scale in _SUFFIXES:
        if key.endswith(suffix):
            return family, (key[:-len(suffix)],), scale
    return "value", (key,), 1.0
