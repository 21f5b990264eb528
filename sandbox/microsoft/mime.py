"""What Exchange reads out of a delivered message's MIME, for the Graph sandbox's mail:
subject, sender, recipients, Message-ID, Date, the body (HTML and text) and the file
attachments, with Python's email package. Standard library only."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime


@dataclass(frozen=True)
class Address:
    name: str
    address: str


@dataclass(frozen=True)
class Part:
    """A file attachment, inline (a picture the HTML shows by its Content-ID) or not."""

    name: str
    content_type: str
    content: bytes
    inline: bool
    content_id: str | None


@dataclass
class Parsed:
    subject: str
    sender: Address | None
    to: list[Address]
    cc: list[Address]
    message_id: str | None
    sent: datetime | None
    html: str  # the body as HTML (text bodies are wrapped), Graph's default form
    text: str  # the body as text (HTML bodies stripped), for `outlook.body-content-type`
    is_html: bool
    attachments: list[Part] = field(default_factory=list)


def _addresses(message: EmailMessage, header: str) -> list[Address]:
    values = [str(v) for v in message.get_all(header, [])]
    return [Address(name, address) for name, address in getaddresses(values) if address]


def _text_of(part: Message | None) -> str:
    if part is None:
        return ""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeDecodeError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _stripped(markup: str) -> str:
    without = re.sub(r"(?is)<(script|style|head)\b.*?</\1>", "", markup)
    without = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\r\n", without)
    return html.unescape(re.sub(r"<[^>]+>", "", without)).strip()


def parse(raw: bytes) -> Parsed:
    """The parts of `raw` (an RFC 5322 message) that Exchange shows as a message's
    properties."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    html_body, text_body = _text_of(html_part), _text_of(text_part)
    if html_part is not None:
        shown_html, shown_text = html_body, text_body or _stripped(html_body)
    else:
        escaped = html.escape(text_body).replace("\n", "<br>\n")
        shown_html = f"<html><head></head><body><div>{escaped}</div></body></html>"
        shown_text = text_body
    bodies = {id(p) for p in (html_part, text_part) if p is not None}
    parts: list[Part] = []
    for part in message.walk():
        if part.is_multipart() or id(part) in bodies:
            continue
        name = part.get_filename()
        content_id = part.get("Content-ID")
        disposition = part.get_content_disposition()
        if name is None and content_id is None and disposition != "attachment":
            continue
        payload = part.get_payload(decode=True)
        cid = str(content_id).strip().strip("<>") if content_id else None
        parts.append(
            Part(
                name=name or "attachment",
                content_type=part.get_content_type(),
                content=payload if isinstance(payload, bytes) else b"",
                inline=disposition == "inline" or (disposition is None and cid is not None),
                content_id=cid,
            )
        )
    senders = _addresses(message, "From")
    message_id = message.get("Message-ID")
    sent: datetime | None = None
    if message.get("Date"):
        try:
            sent = parsedate_to_datetime(str(message["Date"]))
        except (TypeError, ValueError):
            sent = None
    if sent is not None and sent.tzinfo is None:
        sent = None
    return Parsed(
        subject=str(message.get("Subject", "")),
        sender=senders[0] if senders else None,
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        message_id=str(message_id).strip() if message_id else None,
        sent=sent,
        html=shown_html,
        text=shown_text,
        is_html=html_part is not None,
        attachments=parts,
    )
