"""Reading replies to e-mail pages: which page, what they ask for, from whom."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from notifiers.replies import mail

TOKEN = "MXxhbGljZXxyZXBseXwxNzk2NzcyNzMw.cQMM7prJIXICHtcSDgLQyw"


@pytest.mark.parametrize(("text", "expected"), [
    ("ack", ("ack", "")),
    ("ACK\n\n> the page", ("ack", "")),
    ("Ack, on my way", ("ack", "")),
    ("ok.", ("ack", "")),
    ("\n\n  acknowledged  ", ("ack", "")),
    ("resolve: disk was full", ("resolve", "disk was full")),
    ("Resolved - restarted the POS service", ("resolve", "restarted the POS service")),
    ("fixed", ("resolve", "")),
    ("> ack\nwhat is this?", ("unknown", "")),  # a quoted "ack" is not the answer
    ("acknowledgement pending", ("unknown", "")),
    ("", ("unknown", "")),
])
def test_verb(text: str, expected: tuple[str, str]) -> None:
    assert mail.verb(text) == expected


def _reply(body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Alice <Alice@Example.com>")
    msg["Subject"] = "Re: [DOWN] pos"
    msg["Message-ID"] = "<r1@example.com>"
    for k, v in headers.items():
        msg[k.replace("_", "-")] = v
    msg.set_content(body)
    return msg.as_bytes()


def test_token_from_the_headers_a_client_copies() -> None:
    got = mail.read(_reply("ack", References=f"<x@y> <{TOKEN}@onwatch>"))
    assert (got.sender, got.token, got.action) == ("alice@example.com", TOKEN, "ack")
    assert mail.read(_reply("ack", In_Reply_To=f"<{TOKEN}@onwatch>")).token == TOKEN


def test_token_from_the_quoted_body_when_headers_are_gone() -> None:
    got = mail.read(_reply(f"resolve: cable\n\n> onwatch-ref: {TOKEN}\n"))
    assert (got.token, got.action, got.cause) == (TOKEN, "resolve", "cable")


def test_unrelated_and_odd_mail_reads_as_nothing() -> None:
    assert mail.read(_reply("hello")).token is None
    assert mail.read(b"\xff\xfe garbage without headers").token is None
    html = EmailMessage()
    html["From"] = "a@b.c"
    html.set_content("<p>ack</p>", subtype="html")
    assert mail.read(html.as_bytes()).action == "unknown"  # only text/plain is read


def test_a_page_carries_its_token_twice_and_quotes_the_hint() -> None:
    raw = mail.page(sender="onwatch@example.com", to="alice@example.com", title="[DOWN] pos",
                    body="pos is down", token=TOKEN)
    assert f"Message-ID: <{TOKEN}@onwatch>".encode() in raw
    assert f"onwatch-ref: {TOKEN}".encode() in raw and b"Reply-To: onwatch@example.com" in raw
    notice = mail.page(sender="o@e.com", to="a@e.com", title="t", body="b", token=None)
    assert b"onwatch-ref" not in notice and b"@onwatch.notice>" in notice
