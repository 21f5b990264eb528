"""One pass over the messages a user tagged "Send To CRM" (EML-1..4).

The worklist is the label itself: a message that still carries "Send To CRM" is not
settled yet. A pass takes up to `BATCH` of them, oldest first, and for each:

1. reads it (`reader.read`) and finds its record (`filing.match`);
2. records it on that record, with the key of its Message-ID (`filing.key`);
3. relabels it: "Recorded" (EML-2) or "Missing Contact" (EML-3), and never again
   "Send To CRM".

The CRM keeps one item per key, so a pass that dies between 2 and 3 leaves the label
on, and the next pass records the same item again (the CRM answers the first one) and
relabels: nothing lost, nothing doubled, no journal of crmsync's own needed (EML-4). A
message tagged again later, or in another user's mailbox, is one item too.

EML-5: messages the user chose on crmsync's page, each to be filed to records they
chose (`Chosen`), are settled first, in the same way: each message is read once and
recorded on every chosen record under that record's key, then relabelled "Recorded". A
pass that dies on the way files them again the same, and the CRM answers the items it
has; a record the user may no longer see is reported for that record alone.

What a pass cannot settle it reports and leaves alone or lets go:

- a message that cannot be read (`Unreadable`): reported in the user's history with the
  reason, and its "Send To CRM" taken off, so it is not read again every pass;
- a message the CRM refuses (PermanentError): the same;
- a message gone from the mailbox: skipped;
- the CRM or the mailbox failing for a while (TransientError): the pass stops there,
  keeping every label as it is, and the next pass goes on.

Attachments up to what the CRM stores itself go with the item; larger ones, up to
`kept_bytes` (the tenant's choice, at most `MAX_KEPT_BYTES`), are kept in the object
store when one is set up (`keep`), and the
item carries their links; all this as long as the pass has not moved `MAX_PASS_BYTES`.
The others are named at the end of the item's text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from crmsync.errors import NotFound, PermanentError, TransientError
from crmsync.mail import filing
from crmsync.mail.reader import Attachment, Mail, Unreadable, read
from crmsync.ports import (
    MISSING,
    RECORDED,
    SEND,
    CrmMail,
    Linked,
    MailAccount,
    MailLimits,
    Person,
    Stored,
)

BATCH = 50  # messages per pass; a pass that finds more asks for another
MAX_PASS_BYTES = 50 * 2**20  # attachment bytes one pass moves at most
MAX_KEPT_BYTES = 25 * 2**20  # the largest attachment kept in the object store

# Keeps an attachment of the message keyed (its first argument) in the object store.
Keep = Callable[[str, Attachment], Linked]

Outcome = Literal["recorded", "filed", "missing", "unreadable", "refused", "gone", "stopped"]


@dataclass(frozen=True, slots=True)
class Chosen:
    """EML-5: messages (the mailbox's ids) the user chose to file to `people`."""

    id: str
    messages: tuple[str, ...]
    people: tuple[Person, ...]


@dataclass(frozen=True, slots=True)
class Filed:
    """What became of one tagged message; `record` is "kind/id" when it was recorded."""

    message: str  # the mailbox's id of it
    outcome: Outcome
    subject: str = ""
    record: str = ""
    reason: str = ""
    name: str = ""  # the record's name, when the user chose it by name (EML-5)
    before: bool = False  # the CRM held it already (the same message on the same record)


@dataclass
class Pass:
    """A pass's outcome: one `Filed` per message it looked at, the labels' ids it used
    (to keep for the next pass), and whether tagged messages are left for another."""

    labels: dict[str, str]
    filed: list[Filed] = field(default_factory=list)
    more: bool = False
    settled: list[str] = field(default_factory=list)  # the ids of the `Chosen` filed

    def count(self, outcome: Outcome) -> int:
        return sum(1 for f in self.filed if f.outcome == outcome)


def record_tagged(
    account: MailAccount,
    crm: CrmMail,
    own: Iterable[str],
    mailbox: str,
    known_labels: Mapping[str, str],
    batch: int | None = None,
    keep: Keep | None = None,
    chosen: Iterable[Chosen] = (),
    kept_bytes: int = MAX_KEPT_BYTES,
) -> Pass:
    """Settle the messages the user chose (`chosen`), then those tagged "Send To CRM" in
    `account` (see the module's rules). `own` are the user's addresses (never matched),
    `mailbox` names the mailbox in the keys of messages without a Message-ID; `keep`
    stores attachments too large for the CRM (none: they are named only)."""
    batch = batch or BATCH
    labels = account.labels(known_labels)
    done = Pass(labels)
    limits = crm.mail_limits()
    budget = [MAX_PASS_BYTES]
    if keep is not None and kept_bytes < MAX_KEPT_BYTES:  # the tenant keeps less
        keep = _up_to(keep, kept_bytes)
    for asked in chosen:
        for message_id in asked.messages:
            each = _file(account, crm, mailbox, labels, limits, budget, message_id, asked, keep)
            done.filed.extend(each)
            if any(f.outcome == "stopped" for f in each):
                done.more = True
                return done
        done.settled.append(asked.id)
    ids = account.tagged(labels[SEND], batch + 1)
    done.more = len(ids) > batch
    mine = list(own)
    for message_id in ids[:batch]:
        filed = _settle(account, crm, mine, mailbox, labels, limits, budget, message_id, keep)
        done.filed.append(filed)
        if filed.outcome == "stopped":
            done.more = True
            break
    return done


def _settle(
    account: MailAccount,
    crm: CrmMail,
    own: list[str],
    mailbox: str,
    labels: Mapping[str, str],
    limits: MailLimits,
    budget: list[int],
    message_id: str,
    keep: Keep | None,
) -> Filed:
    def relabel(add: str | None) -> None:
        remove = [labels[SEND]] + ([labels[MISSING]] if add == labels[RECORDED] else [])
        account.relabel(message_id, [add] if add else [], remove)

    try:
        raw, received = account.message(message_id)
        try:
            mail = read(raw)
        except Unreadable as exc:
            relabel(None)
            return Filed(message_id, "unreadable", reason=str(exc))
        person = filing.match(mail, own, crm.people)
        if person is None:
            relabel(labels[MISSING])
            return Filed(message_id, "missing", mail.subject)
        key = filing.key(mail, person, mailbox, message_id)
        stored, linked, left_out = _attachments(mail, limits, budget, key, keep)
        item = filing.entry(_noting(mail, left_out), person, limits, received, stored, linked)
        try:
            _, new = crm.record_history(item, key)
        except PermanentError as exc:
            relabel(None)
            return Filed(message_id, "refused", mail.subject, reason=str(exc))
        relabel(labels[RECORDED])
        record = f"{person.kind}/{person.id}"
        return Filed(message_id, "recorded", mail.subject, record, before=not new)
    except NotFound:
        return Filed(message_id, "gone")
    except TransientError as exc:
        return Filed(message_id, "stopped", reason=str(exc))


def _file(
    account: MailAccount,
    crm: CrmMail,
    mailbox: str,
    labels: Mapping[str, str],
    limits: MailLimits,
    budget: list[int],
    message_id: str,
    asked: Chosen,
    keep: Keep | None,
) -> list[Filed]:
    """EML-5: one chosen message recorded on each chosen record, then labelled
    "Recorded"; a message that cannot be read, or is gone, keeps its labels."""
    try:
        raw, received = account.message(message_id)
        try:
            mail = read(raw)
        except Unreadable as exc:
            return [Filed(message_id, "unreadable", reason=str(exc))]
        keys = [filing.key(mail, person, mailbox, message_id) for person in asked.people]
        stored, linked, left_out = _attachments(mail, limits, budget, keys[0], keep)
        noted = _noting(mail, left_out)
        filed: list[Filed] = []
        for person, key in zip(asked.people, keys, strict=True):
            record = f"{person.kind}/{person.id}"
            item = filing.entry(noted, person, limits, received, stored, linked)
            try:
                _, new = crm.record_history(item, key)
            except NotFound:
                reason = "the record is gone, or you may no longer see it"
                filed.append(Filed(message_id, "refused", mail.subject, record, reason))
                continue
            except PermanentError as exc:
                filed.append(Filed(message_id, "refused", mail.subject, record, str(exc)))
                continue
            filed.append(
                Filed(message_id, "filed", mail.subject, record, name=person.name, before=not new)
            )
        if any(f.outcome == "filed" for f in filed):
            remove = [labels[SEND], labels[MISSING]]
            account.relabel(message_id, [labels[RECORDED]], remove)
        return filed
    except NotFound:
        return [Filed(message_id, "gone")]
    except TransientError as exc:
        return [Filed(message_id, "stopped", reason=str(exc))]


def _up_to(keep: Keep, kept_bytes: int) -> Keep:
    """`keep` for attachments up to `kept_bytes`; a larger one is refused (named)."""

    def kept(key: str, attachment: Attachment) -> Linked:
        if attachment.size > kept_bytes:
            raise PermanentError(f"larger than the {_size(kept_bytes)} the tenant keeps")
        return keep(key, attachment)

    return kept


def _attachments(
    mail: Mail, limits: MailLimits, budget: list[int], key: str, keep: Keep | None
) -> tuple[list[Stored], list[Linked], list[Attachment]]:
    """The attachments the CRM stores itself, those kept in the object store (within
    their sizes and the pass's budget), and those left out."""
    stored: list[Stored] = []
    linked: list[Linked] = []
    left: list[Attachment] = []
    for attachment in mail.attachments:
        size = attachment.size
        if size > budget[0]:
            left.append(attachment)
        elif size <= limits.attachment_bytes:
            budget[0] -= size
            stored.append(Stored(attachment.filename, attachment.content_type, attachment.data))
        elif keep is not None and size <= MAX_KEPT_BYTES:
            try:  # a store down for a while stops the pass (TransientError goes up)
                linked.append(keep(key, attachment))
            except PermanentError:  # one it refuses is named instead
                left.append(attachment)
                continue
            budget[0] -= size
        else:
            left.append(attachment)
    return stored, linked, left


def _noting(mail: Mail, left_out: list[Attachment]) -> Mail:
    """The message with the attachments not sent named below its text."""
    if not left_out:
        return mail
    names = "\n".join(f"- {a.filename} ({_size(a.size)})" for a in left_out)
    note = f"Attachments not stored in the CRM:\n{names}"
    text = f"{mail.text}\n\n{note}" if mail.text else note
    return Mail(mail.message_id, mail.subject, text, mail.date, mail.participants, ())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.1f} MB"


def outcomes(done: Pass) -> dict[str, int]:
    """The pass's counts by outcome, for its run record."""
    counts: dict[str, int] = {}
    for filed in done.filed:
        counts[filed.outcome] = counts.get(filed.outcome, 0) + 1
    return counts
