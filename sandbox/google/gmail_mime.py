"""How Gmail shows a stored RFC 5322 message: the `payload` tree of `format=full` and
`format=metadata`, the `snippet`, and the attachment bodies `messages.attachments.get`
returns.

As Gmail does: header values come unfolded with their encoded words decoded; the top
part's `partId` is "" and its children are "0", "1", … (theirs "1.0", "1.1", …);
container parts carry `body: {"size": 0}`; a part with a file name, or one larger than
`INLINE_LIMIT`, carries only `attachmentId` and `size`, its bytes being fetched by
`messages.attachments.get`; every other body is in `data`, base64url with padding, and
`size` counts the decoded bytes. A forwarded message (`message/rfc822`) is one part
whose body is the whole forwarded message. The snippet is the start of the message's
text, its whitespace collapsed and HTML's special characters escaped as Gmail escapes
them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from typing import Any

INLINE_LIMIT = 256 * 1024  # bytes of a part kept in `data`; larger ones are attachments
SNIPPET_LENGTH = 200

_SPACE = re.compile(r"\s+")
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]+>", re.S | re.I)


def b64url(data: bytes) -> str:
    """Gmail's encoding of bytes in JSON: base64url, padded."""
    return base64.urlsafe_b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Rendered:
    """One message as Gmail shows it: the full payload tree, the attachments by id, and
    the snippet."""

    payload: dict[str, Any]
    attachments: dict[str, bytes]
    snippet: str


def render(raw: bytes, message_id: str) -> Rendered:
    """Parse `raw` once into everything `messages.get` and `attachments.get` show."""
    parsed = message_from_bytes(raw, policy=compat32)
    attachments: dict[str, bytes] = {}
    payload = _part(parsed, "", message_id, attachments)
    return Rendered(payload, attachments, _snippet(parsed))


def metadata(payload: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    """The payload of `format=metadata`: the top part's type and headers, only those
    named in `wanted` (any letter case) when some are named."""
    names = {name.lower() for name in wanted}
    headers = [h for h in payload["headers"] if not names or h["name"].lower() in names]
    return {
        "partId": "",
        "mimeType": payload["mimeType"],
        "filename": "",
        "headers": headers,
        "body": {"size": 0},
    }


def header(raw: bytes, name: str) -> str | None:
    """One header of a raw message, decoded, or None."""
    parsed = message_from_bytes(raw, policy=compat32)
    value = parsed.get(name)
    return None if value is None else _decoded(str(value))


def _part(
    part: Message, part_id: str, message_id: str, attachments: dict[str, bytes]
) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": _filename(part),
        "headers": [{"name": k, "value": _decoded(str(v))} for k, v in part.items()],
    }
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        children = part.get_payload()
        assert isinstance(children, list)
        prefix = f"{part_id}." if part_id else ""
        shown["body"] = {"size": 0}
        shown["parts"] = [
            _part(child, f"{prefix}{n}", message_id, attachments)
            for n, child in enumerate(children)
        ]
        return shown
    data = _bytes(part)
    if shown["filename"] or len(data) > INLINE_LIMIT:
        attachment_id = _attachment_id(message_id, part_id)
        attachments[attachment_id] = data
        shown["body"] = {"attachmentId": attachment_id, "size": len(data)}
    else:
        shown["body"] = {"size": len(data), **({"data": b64url(data)} if data else {})}
    return shown


def _bytes(part: Message) -> bytes:
    """A leaf part's decoded body (a forwarded message: the message itself)."""
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return bytes(inner[0].as_bytes())
    body = part.get_payload(decode=True)
    return body if isinstance(body, bytes) else b""


def _filename(part: Message) -> str:
    name = part.get_filename()
    return _decoded(name) if name else ""


def _attachment_id(message_id: str, part_id: str) -> str:
    """Opaque, long and URL-safe as Gmail's are; stable for one part of one message."""
    digest = hashlib.sha256(f"{message_id}/{part_id}".encode()).digest()
    return "ANGjdJ" + base64.urlsafe_b64encode(digest * 2).decode("ascii").rstrip("=")


def _decoded(value: str) -> str:
    """A header value unfolded, its RFC 2047 encoded words decoded."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", value).strip()
    try:
        return str(make_header(decode_header(unfolded)))
    except (LookupError, UnicodeDecodeError, ValueError):
        return unfolded


def _snippet(parsed: Message) -> str:
    text = _first_text(parsed, "text/plain")
    if text is None:
        markup = _first_text(parsed, "text/html")
        text = html.unescape(_TAGS.sub(" ", markup)) if markup is not None else ""
    short = _SPACE.sub(" ", text).strip()[:SNIPPET_LENGTH]
    return (
        short.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _first_text(parsed: Message, kind: str) -> str | None:
    for part in parsed.walk():
        if part.get_content_type() != kind or part.get_filename():
            continue
        if part.get("Content-Disposition", "").lower().startswith("attachment"):
            continue
        data = _bytes(part)
        charset = part.get_content_charset() or "utf-8"
        try:
            return data.decode(charset, errors="replace")
        except LookupError:
            return data.decode("utf-8", errors="replace")
    return None
