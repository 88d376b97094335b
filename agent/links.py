"""One-click acknowledgement links: HMAC-signed, bound, expiring. Pure.

A token carries (incident id, recipient, action, expiry, episode) and an
HMAC-SHA256 over exactly those fields with the agent's secret key. `verify`
recomputes the MAC and compares in constant time before it trusts any field,
then checks the expiry. A token for one incident, recipient or action is
useless for another: they are all under the MAC. The episode is the
incident's `opened_at` in milliseconds (`episode_of`): a reopened incident
has a new one, so a link from an earlier page cannot acknowledge the new
episode (the caller compares, see agent/api.py).

Only the spelling `sign` produces is accepted: unpadded base64url, canonical
(`verify` re-signs the claims and compares the whole token). Padding, other
alphabets or different trailing bits decode to the same bytes, and a link
that can be spelled two ways is a link whose refusal a filter cannot rely on.

The key lives in the state directory (`link.key`, created 0600 on first
start), so links keep working across restarts and are void when the state
is wiped. Nothing here reads the clock: `now` is an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ACTIONS = ("ack", "resolve", "reply")
DEFAULT_TTL = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Claims:
    incident_id: int
    recipient: str
    action: str
    expires: int
    #: `episode_of(incident.opened_at)` when the link was made.
    episode: int


class LinkError(Exception):
    """Why a token is refused; the text is safe to show (it echoes nothing of the token)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def episode_of(opened_at: float) -> int:
    return round(opened_at * 1000)


def sign(key: bytes, claims: Claims) -> str:
    if claims.action not in ACTIONS:
        raise ValueError(f"unknown action {claims.action!r}")
    body = (f"{claims.incident_id}|{claims.recipient}|{claims.action}|{claims.expires}"
            f"|{claims.episode}").encode()
    return seal(key, body)


def seal(key: bytes, body: bytes) -> str:
    """`body` and its MAC as one URL-safe token (other link kinds build on this)."""
    return f"{_b64(body)}.{_b64(_mac(key, body))}"


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_NOT_VALID = "this link is not valid (it was altered or not issued by this agent)"


def unseal(key: bytes, token: str) -> bytes:
    """The body of a token whose MAC is right (checked in constant time), else LinkError."""
    try:
        body_b64, mac_b64 = token.split(".")
        if not set(body_b64 + mac_b64) <= _ALPHABET:
            raise ValueError("not unpadded base64url")
        body, mac = _unb64(body_b64), _unb64(mac_b64)
    except (ValueError, UnicodeEncodeError):
        raise LinkError("this link is malformed") from None
    # The one spelling seal() writes, nothing else: padding or other trailing bits
    # decode to the same bytes, and a token must not have two spellings.
    if not hmac.compare_digest(mac, _mac(key, body)) or seal(key, body) != token:
        raise LinkError(_NOT_VALID)
    return body


def _mac(key: bytes, body: bytes) -> bytes:
    # HMAC-SHA256 truncated to 128 bits (as RFC 2104 allows): forging one still
    # takes 2^128 guesses, and the link stays short enough for an SMS.
    return hmac.new(key, body, hashlib.sha256).digest()[:16]


def ack_url(base: str, key: bytes, incident_id: int, recipient: str, now: float,
            opened_at: float) -> str:
    """The acknowledgement link for one recipient of one episode, valid DEFAULT_TTL."""
    claims = Claims(incident_id, recipient, "ack", int(now + DEFAULT_TTL), episode_of(opened_at))
    return f"{base}/ack/{sign(key, claims)}"


def verify(key: bytes, token: str, now: float) -> Claims:
    body = unseal(key, token)
    try:
        inc, recipient, action, expires, episode = body.decode().split("|")
        claims = Claims(int(inc), recipient, action, int(expires), int(episode))
    except ValueError:
        raise LinkError("this link is malformed") from None
    if action not in ACTIONS or not hmac.compare_digest(sign(key, claims), token):
        raise LinkError(_NOT_VALID)  # the same claims spelled another way
    if now > claims.expires:
        raise LinkError("this link has expired; acknowledge with `onwatch ack` or the API")
    return claims


def short(token: str) -> str:
    """`token` without its recipient: "<incident>.<action>.<expires>.<episode>.<mac>"."""
    body_b64, mac_b64 = token.split(".")
    inc, _recipient, action, expires, episode = _unb64(body_b64).decode().split("|")
    return f"{inc}.{action}.{expires}.{episode}.{mac_b64}"


def expand(text: str, recipient: str) -> str:
    """The full token from `short(token)` and the recipient the answer came from; a
    wrong recipient gives a token whose MAC fails, so `verify` refuses it."""
    try:
        inc, action, expires, episode, mac_b64 = text.split(".")
    except ValueError:
        raise LinkError("this answer is malformed") from None
    return f"{_b64(f'{inc}|{recipient}|{action}|{expires}|{episode}'.encode())}.{mac_b64}"


def load_or_create_key(state_dir: Path) -> bytes:
    """The agent's link key, created (0600, 32 random bytes) on first use."""
    path = state_dir / "link.key"
    try:
        return _unb64(path.read_text().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_b64(key) + "\n")
    return key


def load_or_create_token(state_dir: Path) -> str:
    """The API bearer token when the config gives none: `api.token` in the state dir (0600)."""
    path = state_dir / "api.token"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
