"""A raw message read into what a CRM history item holds (EML-2): subject, the text the
sender wrote (quoted replies trimmed, HTML-only mail as text), who took part in which
role, the date, the Message-ID that keys it (EML-4), and its attachments.

Real mail is often not what RFC 5322 and MIME say, and none of that may stop a cycle:

- a part without a charset, or with one Python does not know, is read as UTF-8 if it is
  that, else as Windows-1252 (what such mail nearly always is); headers with raw 8-bit
  bytes likewise;
- encoded words (RFC 2047) and RFC 2231 file names are decoded, broken ones kept as
  they are;
- nested multiparts are walked whole; of an alternative, the plain text is taken,
  else the HTML as text; an attached message (message/rfc822) stays one attachment;
- winmail.dat (application/ms-tnef) and inline images are attachments like
  any other (an inline image carries its Content-ID);
- a date that does not parse is None, so the caller falls back to the provider's own
  (when the mailbox received or sent it).

What a page shows of a message for its user to choose it (EML-5), its subject and
sender, is read the same way, from the raw message (`headline`) or from the header
values a mailbox service gives (`header_text`, `sender_of`, `sender_text`).

What cannot be read at all (not a message, or bigger than `MAX_MESSAGE_BYTES`) raises
`Unreadable`, whose reason holds nothing of the message: the cycle reports it as a
history item the user sees and never retries it.
"""

from __future__ import annotations

import base64
import binascii
import email
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime, unquote

from crmsync.mail import quotes
from crmsync.mail.html import to_text

MAX_MESSAGE_BYTES = 50 * 1024 * 1024  # larger than the big mailbox services let a message be
MAX_PARTS = 500  # a message of more parts than this is refused, not walked
ROLES = ("from", "to", "cc", "bcc")
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ONE_MAILBOX = re.compile(r"^([^<>]*)<\s*([^<>\s]+@[^<>\s]+)\s*>$")  # Name <address>
_FALLBACK = "windows-1252"


class Unreadable(ValueError):
    """A message that cannot be read; the reason names what is wrong, never its content."""


@dataclass(frozen=True, slots=True)
class Participant:
    role: str  # from, to, cc or bcc
    email: str  # lower-cased
    name: str = ""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str = ""  # an inline image's, without the angle brackets

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Mail:
    message_id: str  # without angle brackets; "" when the message has none
    subject: str
    text: str = field(repr=False)
    date: datetime | None
    participants: tuple[Participant, ...]
    attachments: tuple[Attachment, ...] = ()

    def addresses(self) -> list[str]:
        """Every participant's address, once each, in the message's order."""
        return list(dict.fromkeys(p.email for p in self.participants))


def read(raw: bytes) -> Mail:
    """The message in `raw` (RFC 5322 bytes, CRLF or LF line ends)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise Unreadable(f"the message is larger than {MAX_MESSAGE_BYTES // 2**20} MB")
    if not raw.strip():
        raise Unreadable("the message is empty")
    message = email.message_from_bytes(raw)  # compat32: the most forgiving parser
    if not any(message.get(name) for name in ("from", "to", "subject", "message-id", "date")):
        raise Unreadable("this is not an e-mail message: it has none of its headers")
    texts: list[str] = []
    htmls: list[str] = []
    attachments: list[Attachment] = []
    for part in _leaves(message, [0]):
        _take(part, texts, htmls, attachments)
    body = "\n\n".join(t for t in texts if t.strip())
    if not body.strip():
        body = "\n\n".join(to_text(h) for h in htmls)
    return Mail(
        message_id=_message_id(_header(message, "message-id")),
        subject=" ".join(_header(message, "subject").split()),
        text=quotes.trim(body.replace("\r\n", "\n").replace("\r", "\n")),
        date=_date(_header(message, "date")),
        participants=_participants(message),
        attachments=tuple(attachments),
    )


def headline(raw: bytes) -> tuple[str, str]:
    """The subject and sender of the message in `raw` as a page shows them (EML-5), read
    from its headers only; "" for what it lacks."""
    message = BytesHeaderParser().parsebytes(raw)  # compat32, as `read`
    subject, sender = (next(iter(_raw(message, name)), "") for name in ("subject", "from"))
    return header_text(subject), sender_of(sender)


def header_text(value: str) -> str:
    """A header value as one line of text: raw 8-bit bytes read, encoded words decoded
    (a mailbox service may hand some over undecoded), folding and runs of spaces made
    one space."""
    return " ".join(_words(_unmangled(value)).split())


def sender_of(value: str) -> str:
    """A From header's value as `sender_text` shows it (its first mailbox); the value
    as text when it holds no address. A name holding a comma once decoded is kept
    whole."""
    text = " ".join(_unmangled(value).split())
    one = _ONE_MAILBOX.match(text)
    if one is not None:
        name, address = one.group(1).strip(), one.group(2)
        if len(name) > 1 and name[0] == name[-1] == '"':
            name = unquote(name)
    else:
        found = [(n, a) for n, a in getaddresses([text]) if "@" in a]
        if not found:
            return header_text(text)
        name, address = found[0]
    return sender_text(_words(name), address)


def sender_text(name: str, address: str) -> str:
    """A sender as a page shows it: "Name <address>", or the address alone when the
    name is none or the address itself."""
    name, address = " ".join(name.split()), address.strip()
    if not address or not name or name.casefold() == address.casefold():
        return address or name
    return f"{name} <{address}>"


def _leaves(part: Message, count: list[int]) -> Iterator[Message]:
    """The message's leaf parts in order; an attached message is one leaf."""
    count[0] += 1
    if count[0] > MAX_PARTS:
        raise Unreadable(f"the message has more than {MAX_PARTS} parts")
    payload = part.get_payload()
    if part.is_multipart() and part.get_content_type() != "message/rfc822":
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                yield from _leaves(child, count)
        return
    yield part


def _take(part: Message, texts: list[str], htmls: list[str], attachments: list[Attachment]) -> None:
    kind = part.get_content_type()
    disposition = part.get_content_disposition()
    filename = _filename(part)
    if disposition != "attachment" and not filename and kind in ("text/plain", "text/html"):
        decoded = _text_of(part)
        (texts if kind == "text/plain" else htmls).append(decoded)
        return
    data = _bytes_of(part)
    if kind == "message/rfc822" and not filename:
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        subject = _header(first, "subject") if isinstance(first, Message) else ""
        filename = f"{subject or 'message'}.eml"
    if kind == "application/ms-tnef" and not filename:
        filename = "winmail.dat"
    content_id = _message_id(_header(part, "content-id")) if part.get("content-id") else ""
    attachments.append(
        Attachment(
            filename=filename or _unnamed(kind, len(attachments) + 1),
            content_type=kind,
            data=data,
            content_id=content_id,
        )
    )


def _bytes_of(part: Message) -> bytes:
    if part.get_content_type() == "message/rfc822":
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            return inner[0].as_bytes()
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _text_of(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return _decode(data, part.get_content_charset())


def _decode(data: bytes, charset: str | None) -> str:
    """`data` in its declared charset; else UTF-8 if it is that; else Windows-1252."""
    if charset:
        try:
            return data.decode(_charset(charset))
        except (LookupError, ValueError):  # unknown, malformed (a NUL), or not that charset
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(_FALLBACK, errors="replace")


def _charset(name: str) -> str:
    name = name.strip().strip('"').lower()
    # mail that says ascii or latin-1 is, in practice, Windows-1252 (WHATWG Encoding)
    return _FALLBACK if name in ("us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1") else name


def _header(part: Message, name: str) -> str:
    """A header's value as text (its first occurrence): raw 8-bit bytes read as UTF-8 or
    Windows-1252, encoded words decoded, anything broken kept as it is."""
    values = _raw(part, name)
    return _words(_unmangled(values[0])) if values else ""


def _raw(part: Message, name: str) -> list[str]:
    """A header's values as they came: compat32 would hand 8-bit ones over as opaque
    Header objects, and their raw text is what can still be read."""
    return [str(v) for k, v in part.raw_items() if k.lower() == name]


def _filename(part: Message) -> str:
    raw = {h: _raw(part, h) for h in ("content-disposition", "content-type")}
    if any(_unmangled(v) != v for values in raw.values() for v in values):
        part = Message()  # raw 8-bit bytes in a parameter: read from the headers unmangled
        for header, values in raw.items():
            for value in values[:1]:
                part[header] = _unmangled(value)
    try:
        name = part.get_filename()
    except (ValueError, LookupError, UnicodeError):
        return ""
    if not name:
        return ""
    if "=?" in name:  # an encoded word where RFC 2231 belongs (common in real mail)
        name = _words(name)
    return " ".join(name.replace("/", "_").replace("\\", "_").split())


def _unnamed(kind: str, n: int) -> str:
    extension = {"text/plain": "txt", "text/html": "html", "text/calendar": "ics"}.get(
        kind, kind.split("/")[-1] if kind.startswith("image/") else "bin"
    )
    return f"attachment-{n}.{extension}"


def _participants(message: Message) -> tuple[Participant, ...]:
    """Who took part, by role; an address only once per role. Addresses are split
    before names are decoded, so a decoded name holding a comma splits nothing."""
    seen: set[tuple[str, str]] = set()
    found: list[Participant] = []
    for role in ROLES:
        values = [_unmangled(v) for v in _raw(message, role)]
        for name, address in getaddresses(values):
            address = address.strip().lower()
            if "@" not in address or (role, address) in seen:
                continue
            seen.add((role, address))
            found.append(Participant(role, address, " ".join(_words(name).split())))
    return tuple(found)


def _unmangled(text: str) -> str:
    """A header value with raw 8-bit bytes read as UTF-8 or Windows-1252."""
    if any("\udc80" <= c <= "\udcff" for c in text):
        return _decode(text.encode("ascii", "surrogateescape"), None)
    return text


def _words(text: str) -> str:
    """Encoded words (RFC 2047) decoded, the space between two of them dropped; a
    broken one kept as it is."""
    out: list[str] = []
    last, after_word = 0, False
    for found in _ENCODED_WORD.finditer(text):
        between = text[last : found.start()]
        if not (after_word and not between.strip()):
            out.append(between)
        out.append(_encoded_word(found))
        last, after_word = found.end(), True
    out.append(text[last:])
    return "".join(out)


def _encoded_word(found: re.Match[str]) -> str:
    charset, encoding, data = found.groups()
    try:
        if encoding in "bB":
            raw = base64.b64decode(data + "=" * (-len(data) % 4))
        else:
            raw = quopri.decodestring(data.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return found.group(0)
    return _decode(raw, charset.split("*")[0])  # RFC 2231 may add a language: utf-8*de


def _message_id(value: str) -> str:
    found = _MESSAGE_ID.search(value)
    if found:
        return found.group(1)
    return value.strip().strip("<>").strip()


def _date(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
