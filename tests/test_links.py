"""Acknowledgement tokens: bound to incident, recipient, action, expiry and episode; pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import links
from agent.links import Claims, LinkError

KEY = b"k" * 32
CLAIMS = Claims(7, "alice", "ack", 1000, 5)


def test_round_trip() -> None:
    assert links.verify(KEY, links.sign(KEY, CLAIMS), now=999.0) == CLAIMS


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: t + "x", "not valid"),
        (lambda t: t.replace(".", ".A", 1), "not valid"),
        (lambda t: links._b64(b"8|alice|ack|1000|5") + "." + t.split(".")[1], "not valid"),
        (lambda t: links._b64(b"7|bob|ack|1000|5") + "." + t.split(".")[1], "not valid"),
        (lambda t: links._b64(b"7|alice|ack|99999|5") + "." + t.split(".")[1], "not valid"),
        (lambda t: t.split(".")[0], "malformed"),
        (lambda t: "", "malformed"),
        (lambda t: "a.b.c", "malformed"),
        (lambda t: links.sign(b"other-key" * 4, CLAIMS), "not valid"),
        (lambda t: links._b64(b"7|alice|ack|1000|6") + "." + t.split(".")[1], "not valid"),
        (lambda t: links._b64(b"7|alice|ack|1000") + "." + t.split(".")[1], "not valid"),
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
        links.sign(KEY, Claims(1, "a", "delete", 10, 0))


def test_key_is_created_once_and_private(tmp_path: Path) -> None:
    key = links.load_or_create_key(tmp_path)
    assert len(key) == 32 and links.load_or_create_key(tmp_path) == key
    assert (tmp_path / "link.key").stat().st_mode & 0o077 == 0
    token = links.load_or_create_token(tmp_path)
    assert len(token) >= 32 and links.load_or_create_token(tmp_path) == token
    assert (tmp_path / "api.token").stat().st_mode & 0o077 == 0


def _respellings(part: str) -> list[str]:
    """Other spellings of the same bytes: padding, the standard alphabet, other
    trailing bits in the last character, surrounding whitespace."""
    raw = links._unb64(part)
    out = [part + "=" * n for n in (1, 2, 3)] + [" " + part, part + "\n", part + "%3D"]
    std = part.replace("-", "+").replace("_", "/")
    if std != part:
        out.append(std)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for c in alphabet:
        other = part[:-1] + c
        if other != part and links._unb64(other) == raw:
            out.append(other)
    return out


@pytest.mark.parametrize("half", [0, 1])
def test_only_the_canonical_spelling_is_accepted(half: int) -> None:
    token = links.sign(KEY, Claims(7, "alice+bob?", "ack", 1000, 5))
    parts = token.split(".")
    variants = _respellings(parts[half])
    assert any(links._unb64(v.strip().rstrip("=")) == links._unb64(parts[half])
               for v in variants if "%" not in v and "+" not in v and "/" not in v)
    for variant in variants:
        respelled = ".".join(variant if i == half else p for i, p in enumerate(parts))
        with pytest.raises(LinkError):
            links.verify(KEY, respelled, now=999.0)
    both = ".".join(p + "==" for p in parts)  # what the attack test did
    with pytest.raises(LinkError):
        links.verify(KEY, both, now=999.0)


def test_the_episode_is_under_the_mac() -> None:
    first = links.sign(KEY, Claims(7, "alice", "ack", 1000, links.episode_of(100.0)))
    assert links.verify(KEY, first, now=999.0).episode == 100_000
    assert links.episode_of(100.0) != links.episode_of(100.001)


def test_short_form_needs_the_right_recipient() -> None:
    token = links.sign(KEY, Claims(42, "alice", "ack", 2000, 7))
    text = links.short(token)
    assert len(text) <= 64 and "alice" not in text
    assert links.verify(KEY, links.expand(text, "alice"), now=1000) == Claims(42, "alice",
                                                                               "ack", 2000, 7)
    with pytest.raises(links.LinkError, match="not valid"):
        links.verify(KEY, links.expand(text, "mallory"), now=1000)
    with pytest.raises(links.LinkError, match="malformed"):
        links.expand("42.ack", "alice")
