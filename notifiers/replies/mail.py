"""E-mail pages and replies, as messages: composing and reading them. Pure (no I/O).

A page by mail carries its signed token twice: as its Message-ID
(`<TOKEN@onwatch>`), which every mail client copies into the reply's
In-Reply-To and References headers, and as an `onwatch-ref: TOKEN` line at
the end of the body, for clients that drop those headers but quote the text.
Only the person the page was sent to ever saw the token, which is what makes a
reply with a forged From: useless: the token is made for one recipient, and
its recipient must be the contact the From: address belongs to.

Reading a reply: the first line of the reply that is not quoted (`>`) and not
empty says what to do: "ack" (also "ok", "acknowledge", "ack 42") or
"resolve: <cause>" (also "resolved", "fixed"); anything else is not
understood and changes nothing. The text/plain part is read, up to
`MAX_TEXT` characters.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import uuid
from dataclasses import dataclass
from email.message import EmailMessage, Message

TOKEN = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
_REF_ID = re.compile(rf"<({TOKEN})@onwatch>")
_REF_LINE = re.compile(rf"onwatch-ref:\s*({TOKEN})")
_FIRST_WORD = re.compile(r"([a-z]+)")
MAX_TEXT = 16 * 1024
ACK_WORDS = ("ack", "acknowledge", "acknowledged", "ok", "on it", "mine")
RESOLVE_WORDS = ("resolve", "resolved", "fixed")
HINT = ('Reply to this e-mail with "ack" to acknowledge, or "resolve: <cause>" '
        "to resolve it.")


@dataclass(frozen=True, slots=True)
class Reply:
    sender: str
    message_id: str
    subject: str
    #: The token the reply refers to; None: not a reply to a page of ours.
    token: str | None
    #: "ack", "resolve" or "unknown".
    action: str
    cause: str = ""


def page(*, sender: str, to: str, title: str, body: str, token: str | None) -> bytes:
    """A page (with `token`: answerable by reply) or a notice, as SMTP DATA."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr(("onwatch", sender))
    msg["To"] = to
    msg["Subject"] = title
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = f"<{token}@onwatch>" if token else f"<{uuid.uuid4()}@onwatch.notice>"
    msg["Reply-To"] = sender
    msg["Auto-Submitted"] = "auto-generated"
    text = body if token is None else f"{body}\n\n-- \n{HINT}\nonwatch-ref: {token}\n"
    msg.set_content(text)
    return msg.as_bytes()


def confirmation(*, sender: str, to: str, reply: Reply, text: str) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = email.utils.formataddr(("onwatch", sender))
    msg["To"] = to
    subject = reply.subject or "onwatch"
    msg["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = f"<{uuid.uuid4()}@onwatch.notice>"
    if reply.message_id:
        msg["In-Reply-To"] = reply.message_id
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content(text + "\n")
    return msg.as_bytes()


def read(raw: bytes) -> Reply:
    """What a message in the agent's mailbox says (never raises for odd mail)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    sender = email.utils.parseaddr(str(msg.get("From", "")))[1].lower()
    text = _text(msg)
    token = None
    for header in ("In-Reply-To", "References"):
        m = _REF_ID.search(str(msg.get(header, "")))
        if m:
            token = m.group(1)
            break
    if token is None:
        m = _REF_LINE.search(text)
        token = m.group(1) if m else None
    action, cause = verb(text)
    return Reply(sender, str(msg.get("Message-ID", "")).strip(),
                 str(msg.get("Subject", "")).strip(), token, action, cause)


def verb(text: str) -> tuple[str, str]:
    """("ack" | "resolve" | "unknown", cause) from the first unquoted line."""
    for line in text.splitlines()[:200]:
        line = line.strip()
        if not line or line.startswith(">"):
            continue
        m = _FIRST_WORD.match(line.lower())
        first = m.group(1) if m else ""
        if first in RESOLVE_WORDS:
            cause = line[len(first):].lstrip(" :,.-\t")
            return "resolve", cause[:500]
        if first in ACK_WORDS or line.lower().rstrip(".!") in ACK_WORDS:
            return "ack", ""
        return "unknown", ""
    return "unknown", ""


def _text(msg: Message) -> str:
    part = msg.get_body(preferencelist=("plain",)) if isinstance(msg, EmailMessage) else None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken encoding
        return ""
    return str(content)[:MAX_TEXT]
