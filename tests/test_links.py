"""Acknowledgement tokens: bound to incident, recipient, action and expiry; pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import links
from agent.links import Claims, LinkError

KEY = b"k" * 32
CLAIMS = Claims(7, "alice", "ack", 1000)


def test_round_trip() -> None:
    assert links.verify(KEY, links.sign(KEY, CLAIMS), now=999.0) == CLAIMS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t + "x", "not valid"),
        (lambda t: t.replace(".", ".A", 1), "not valid"),
        (lambda t: links._b64(b"8|alice|ack|1000") + "." + t.split(".")[1], "not valid"),
        (lambda t: links._b64(b"7|bob|ack|1000") + "." + t.split(".")[1], "not valid"),
        (lambda t: links._b64(b"7|alice|ack|99999") + "." + t.split(".")[1], "not valid"),
        (lambda t: t.split(".")[0], "malformed"),
        (lambda t: "", "malformed"),
        (lambda t: "a.b.c", "malformed"),
        (lambda t: links.sign(b"other-key" * 4, CLAIMS), "not valid"),
    ],
)
def test_tampered_tokens_are_refused(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LinkError, match=message):
        links.verify(KEY, make(links.sign(KEY, CLAIMS)), now=999.0)


def test_expiry_is_checked_after_the_mac() -> None:
    token = links.sign(KEY, CLAIMS)
    assert links.verify(KEY, token, now=1000.0) == CLAIMS
    with pytest.raises(LinkError, match="expired"):
        links.verify(KEY, token, now=1000.5)


def test_unknown_action_cannot_be_signed() -> None:
    with pytest.raises(ValueError):
        links.sign(KEY, Claims(1, "a", "resolve", 10))


def test_key_is_created_once_and_private(tmp_path: Path) -> None:
    key = links.load_or_create_key(tmp_path)
    assert len(key) == 32 and links.load_or_create_key(tmp_path) == key
    assert (tmp_path / "link.key").stat().st_mode & 0o077 == 0
    token = links.load_or_create_token(tmp_path)
    assert len(token) >= 32 and links.load_or_create_token(tmp_path) == token
    assert (tmp_path / "api.token").stat().st_mode & 0o077 == 0
