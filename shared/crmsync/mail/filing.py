"""Where a message is filed and what the CRM is sent (EML-2..4); pure, the CRM asked
through the `people` lookup it is given.

- EML-2: the contact or lead whose address matches a participant other than the user;
  of several, the one with the most history (of equals, the one matched first: the
  sender before the recipients, then the CRM's order).
- EML-3: no match → nothing recorded; the message is labelled "Missing Contact".
- EML-4: one history item per message and record, keyed by the Message-ID, so a
  message tagged, notified, retried or resumed again is recorded once; a message
  without one is keyed by the mailbox's own id of it.
- A subject or body longer than the CRM keeps is cut, with a marker saying so; a
  message is never refused for its length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from crmsync.mail.reader import Mail
from crmsync.model import normalize_email
from crmsync.ports import HistoryEntry, Linked, MailLimits, Person, Stored

MAX_LOOKUPS = 25  # addresses looked up per message: a mailing to hundreds asks 25
CUT = "\n\n[cut by crmsync: the rest of this message is longer than the CRM keeps]"
ELLIPSIS = "…"


def match(
    mail: Mail, own: Iterable[str], people: Callable[[str], Sequence[Person]]
) -> Person | None:
    """EML-2: the record a message is filed to, or None (EML-3)."""
    mine = {normalize_email(a) for a in own}
    others = [a for a in mail.addresses() if normalize_email(a) not in mine][:MAX_LOOKUPS]
    best: Person | None = None
    for address in others:
        for person in people(address):
            if best is None or person.history_count > best.history_count:
                best = person
    return best


def key(mail: Mail, person: Person, mailbox: str, message: str) -> str:
    """EML-4: the idempotency key of this message's item on `person`: its Message-ID,
    or without one the mailbox's id of the message (`mailbox` names the mailbox,
    `message` is the provider's id)."""
    origin = f"id:{mail.message_id}" if mail.message_id else f"box:{mailbox}:{message}"
    digest = hashlib.sha256(origin.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return f"mail-{digest}-{person.kind}-{person.id}"[:255]


def entry(
    mail: Mail,
    person: Person,
    limits: MailLimits,
    received: datetime,
    stored: Sequence[Stored] = (),
    linked: Sequence[Linked] = (),
) -> HistoryEntry:
    """The history item for `person`: the message's date (else `received`, the
    mailbox's own time of it), subject and body cut to the CRM's limits."""
    return HistoryEntry(
        record_kind=person.kind,
        record_id=person.id,
        subject=_cut_subject(mail.subject, limits.subject),
        body=_cut_body(mail.text, limits.body),
        date=mail.date or received,
        participants=tuple((p.role, p.email, p.name) for p in mail.participants),
        attachments=tuple(stored),
        links=tuple(linked),
    )


def _cut_subject(subject: str, limit: int) -> str:
    if len(subject) <= limit:
        return subject
    return subject[: max(limit - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS


def _cut_body(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    if limit <= len(CUT):  # a CRM that keeps almost nothing gets only the marker's start
        return CUT.strip()[:limit]
    return body[: limit - len(CUT)].rstrip() + CUT
