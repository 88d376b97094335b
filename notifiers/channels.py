"""What a notification is and where it goes, without sending anything: `Message`, the
`ChannelResult` of one attempt, and the form a channel gets (`channel_class`: sms,
email or push, by the Apprise URL's scheme). Pure and light: no Apprise here, so the
pure core (storm bundling, message rendering) can use these types; sending is
notifiers/delivery.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    #: One line, with the link, for SMS-like channels (under 160 characters when it can be).
    short: str


@dataclass(frozen=True, slots=True)
class ChannelResult:
    #: Redacted URL (`url(privacy=True)`): safe for logs, the store and metrics' neighbours.
    channel: str
    #: The URL's scheme (json, mailto, twilio ...): a bounded metric label.
    kind: str
    ok: bool
    #: "delivered", "HTTP 503", "timeout" or why nothing was attempted.
    detail: str
    elapsed_s: float
    #: Failed in a way that retrying cannot fix (a 4xx, an invalid URL).
    permanent: bool = False
    #: Failed without any answer from the service (connection error, timeout):
    #: what every channel shows when the agent's own uplink is down.
    network: bool = False


def kind_of(url: str) -> str:
    return urlsplit(url).scheme.lower() or "unknown"


#: Apprise schemes of SMS gateways: they get the one-line short form of a message.
SMS_KINDS = frozenset({
    "twilio", "sns", "clicksend", "msg91", "nexmo", "vonage", "bulksms", "bulkvs", "d7sms",
    "sinch", "plivo", "smseagle", "smseagles", "smsmgr", "smsmanager", "kavenegar", "seven",
    "burstsms", "freemobile", "httpsms", "serwersms", "smsc", "smstunnel", "signal", "voipms",
})
EMAIL_KINDS = frozenset({"mailto", "mailtos", "ses", "sendgrid", "mailgun", "sparkpost",
                         "resend", "smtp2go", "brevo", "o365"})
def channel_class(kind: str) -> str:
    """sms, email or push (push and chat): what form of a message the channel gets."""
    if kind in SMS_KINDS:
        return "sms"
    return "email" if kind in EMAIL_KINDS else "push"
