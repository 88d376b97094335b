"""Just enough X.509 (RFC 5280) for a monitor: dates, names, issuer, public key.

A small DER reader, used by the tls probe (which must see a certificate's dates and
names even with `verify = false`, when `getpeercert()` returns nothing) and by the http
probe (days left, per request: `cert_not_after` reads only the validity, ~8 µs).

The bytes come from a handshake that OpenSSL parsed already; still, every read is
bounds-checked and a malformed certificate is a ValueError, never an IndexError.

Fingerprints (`fingerprint52`) are SHA-256 cut to the first 52 bits, as an
integer-valued float: observations are floats, and a float holds a 52-bit integer
exactly, so equal inputs give equal observations and detection can see a change.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Final


def fingerprint52(data: bytes) -> float:
    """The first 52 bits of SHA-256(data), as an integer-valued float (exact)."""
    return float(int.from_bytes(hashlib.sha256(data).digest()[:7], "big") >> 4)


_CN, _OU, _O = b"\x55\x04\x03", b"\x55\x04\x0b", b"\x55\x04\x0a"
_SAN = b"\x55\x1d\x11"
_STRINGS: Final = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
                   0x1E: "utf-16-be", 0x1C: "utf-32-be"}


@dataclass(frozen=True, slots=True)
class Cert:
    not_before: float  # unix time
    not_after: float
    issuer: str  # "CN (O)", what a person recognises
    names: tuple[str, ...]  # subjectAltName DNS names and addresses; else the subject's CN
    public_key: bytes  # the DER SubjectPublicKeyInfo


def _tlv(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """The element at `pos`: (tag, start of its content, end of its content)."""
    if pos + 2 > end:
        raise ValueError("truncated element")
    tag, size = der[pos], der[pos + 1]
    pos += 2
    if size & 0x80:
        n = size & 0x7F
        if not 1 <= n <= 4 or pos + n > end:
            raise ValueError("bad length")
        size, pos = int.from_bytes(der[pos:pos + n], "big"), pos + n
    if pos + size > end:
        raise ValueError("truncated element")
    return tag, pos, pos + size


def _items(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside a constructed one: (tag, content start, content end, start)."""
    out = []
    pos = start
    while pos < end:  # bounded: every element is at least 2 bytes long
        tag, s, e = _tlv(der, pos, end)
        out.append((tag, s, e, pos))
        pos = e
    return out


def _tbs(der: bytes) -> list[tuple[int, int, int, int]]:
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, s, e = _tlv(der, s, e)
    fields = _items(der, s, e)
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 6:  # serial, signature, issuer, validity, subject, public key
        raise ValueError("incomplete certificate")
    return fields


def _time(der: bytes, tag: int, s: int, e: int) -> float:
    text = der[s:e].decode("ascii")
    if tag == 0x17 and len(text) == 13:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{year + (1900 if year >= 50 else 2000)}{text[2:]}"
    if tag not in (0x17, 0x18) or len(text) != 15 or text[-1] != "Z":
        raise ValueError(f"unsupported time {text!r}")
    y, mo, d, h, mi, sec = (int(text[i:j]) for i, j in
                            ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14)))
    return float(calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)))


def cert_not_after(der: bytes) -> float:
    """The unix time a DER certificate expires (cheap: reads only the validity)."""
    validity = _tbs(der)[3]
    times = _items(der, validity[1], validity[2])
    if len(times) != 2:
        raise ValueError("bad validity")
    return _time(der, *times[1][:3])


def _name(der: bytes, s: int, e: int) -> dict[bytes, str]:
    attrs: dict[bytes, str] = {}
    for _, rs, re_, _ in _items(der, s, e):  # RDN sets
        for _, as_, ae, _ in _items(der, rs, re_):  # attribute sequences
            parts = _items(der, as_, ae)
            if len(parts) == 2 and parts[0][0] == 0x06:
                tag, vs, ve, _ = parts[1]
                attrs.setdefault(der[parts[0][1]:parts[0][2]],
                                 der[vs:ve].decode(_STRINGS.get(tag, "latin-1"), "replace"))
    return attrs


def _alt_names(der: bytes, fields: list[tuple[int, int, int, int]]) -> list[str]:
    names: list[str] = []
    for tag, s, e, _ in fields[6:]:
        if tag != 0xA3:  # [3] extensions
            continue
        _, es, ee = _tlv(der, s, e)
        for _, xs, xe, _ in _items(der, es, ee):
            ext = _items(der, xs, xe)
            if ext and der[ext[0][1]:ext[0][2]] == _SAN:
                _, ss, se = _tlv(der, ext[-1][1], ext[-1][2])  # OCTET STRING -> SEQUENCE
                for gtag, gs, ge, _ in _items(der, ss, se):
                    if gtag == 0x82:  # dNSName
                        names.append(der[gs:ge].decode("ascii", "replace"))
                    elif gtag == 0x87 and ge - gs in (4, 16):  # iPAddress
                        names.append(str(ipaddress.ip_address(der[gs:ge])))
    return names


def parse_cert(der: bytes) -> Cert:
    """Dates, issuer, names and public key of a DER certificate; ValueError if malformed."""
    fields = _tbs(der)
    times = _items(der, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise ValueError("bad validity")
    issuer = _name(der, fields[2][1], fields[2][2])
    who = issuer.get(_CN) or issuer.get(_OU) or ""
    org = issuer.get(_O, "")
    label = f"{who} ({org})" if who and org and org != who else (who or org or "unknown")
    names = _alt_names(der, fields) or [
        n for n in [_name(der, fields[4][1], fields[4][2]).get(_CN)] if n]
    key = fields[5]
    return Cert(_time(der, *times[0][:3]), _time(der, *times[1][:3]), label,
                tuple(names), der[key[3]:key[2]])
