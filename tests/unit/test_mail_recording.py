"""EML-1..4: a pass over the messages a user tagged "Send To CRM", over the memory mailbox
and a CRM that keeps history items by key as the contract says: labels made once and
kept by id, each message recorded once on the right record and relabelled, a message
with no known participant marked "Missing Contact" and recorded once retagged after its
contact appears, unreadable and refused messages reported and let go, and a pass
interrupted anywhere recording nothing twice. EML-5: the memory mailbox's headlines of a
label, for a page to choose messages from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.errors import NotFound, PermanentError, TransientError
from crmsync.mail import recording
from crmsync.mail.reader import Attachment
from crmsync.ports import Headline, HistoryEntry, Linked, MailLimits, Person
from crmsync.providers.memory import MemoryMailbox

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
DANA = "dana.rep@demo.example"


@dataclass
class Crm:
    """A CRM as the contract describes it: people by address, items kept per key."""

    people_by_address: dict[str, list[Person]] = field(default_factory=dict)
    items: dict[str, HistoryEntry] = field(default_factory=dict)
    limits: MailLimits = field(default_factory=lambda: MailLimits(attachment_bytes=1000))
    fail: list[Exception] = field(default_factory=list)  # raised by the next records

    def mail_limits(self) -> MailLimits:
        return self.limits

    def people(self, address: str) -> list[Person]:
        return list(self.people_by_address.get(address, []))

    def record_history(self, entry: HistoryEntry, key: str) -> tuple[str, bool]:
        if self.fail:
            raise self.fail.pop(0)
        new = key not in self.items
        self.items.setdefault(key, entry)
        return key, new

    def add(self, address: str, pid: str, history: int = 0) -> None:
        self.people_by_address.setdefault(address, []).append(
            Person("contact", pid, pid, (address,), history)
        )


def message(sender: str, subject: str, message_id: str, extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: {DANA}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
        f"Date: Tue, 3 Nov 2026 08:00:00 +0000\r\n{extra}\r\nHello from {sender}\r\n"
    ).encode()


def run(box: MemoryMailbox, crm: Crm, labels: dict[str, str] | None = None) -> recording.Pass:
    return recording.record_tagged(box, crm, [DANA], "google-u1", labels or {})


@pytest.fixture
def box() -> MemoryMailbox:
    return MemoryMailbox(lambda: NOW, DANA)


def test_EML1_the_three_labels_are_made_once_and_kept_by_id_through_a_rename(
    box: MemoryMailbox,
) -> None:
    first = run(box, Crm()).labels
    box.rename_label("CRM/Recorded", "Filed in CRM")
    again = run(box, Crm(), first).labels

    assert sorted(box.names.values()) == [
        "CRM/Missing Contact",
        "CRM/Send To CRM",
        "Filed in CRM",
    ]
    assert again == first


def test_EML2_a_tagged_message_is_recorded_on_its_contact_and_relabelled(
    box: MemoryMailbox,
) -> None:
    crm = Crm()
    crm.add("ann@example.com", "c-ann")
    sent = box.deliver(message("Ann <ann@example.com>", "Offer", "m1@x"))
    box.tag(sent)

    done = run(box, crm)

    assert [(f.outcome, f.record) for f in done.filed] == [("recorded", "contact/c-ann")]
    [item] = crm.items.values()
    assert (item.record_id, item.subject, item.body) == (
        "c-ann",
        "Offer",
        "Hello from Ann <ann@example.com>",
    )
    assert box.label_names(sent) == {"INBOX", "CRM/Recorded"}


def test_EML4_a_message_tagged_again_or_in_another_mailbox_is_one_item(
    box: MemoryMailbox,
) -> None:
    crm = Crm()
    crm.add("ann@example.com", "c-ann")
    raw = message("ann@example.com", "Offer", "same@x")
    mine = box.deliver(raw)
    box.tag(mine)
    first = run(box, crm)
    box.tag(mine)  # tagged again
    again = run(box, crm, first.labels)
    colleague = MemoryMailbox(lambda: NOW, "max.manager@demo.example")
    theirs = colleague.deliver(raw)
    colleague.tag(theirs)
    other = recording.record_tagged(colleague, crm, ["max.manager@demo.example"], "google-u2", {})

    assert len(crm.items) == 1
    # each pass says whether it put the message into the CRM or found it there already
    assert [(f.outcome, f.before) for p in (first, again, other) for f in p.filed] == [
        ("recorded", False),
        ("recorded", True),
        ("recorded", True),
    ]


def test_EML3_no_match_labels_missing_contact_and_a_retag_after_the_contact_appears_records_it(
    box: MemoryMailbox,
) -> None:
    crm = Crm()
    sent = box.deliver(message("new@prospect.example", "Hello", "m2@x"))
    box.tag(sent)

    labels = run(box, crm).labels
    assert box.label_names(sent) == {"INBOX", "CRM/Missing Contact"}
    assert crm.items == {}

    crm.add("new@prospect.example", "c-new")
    box.tag(sent)
    run(box, crm, labels)

    assert [i.record_id for i in crm.items.values()] == ["c-new"]
    assert box.label_names(sent) == {"INBOX", "CRM/Recorded"}


def test_EML2_an_unreadable_or_refused_message_is_reported_and_not_read_again(
    box: MemoryMailbox,
) -> None:
    crm = Crm()
    crm.add("ann@example.com", "c-ann")
    broken = box.deliver(b"\x00\x01 not a message")
    refused = box.deliver(message("ann@example.com", "Too big", "m3@x"))
    for m in (broken, refused):
        box.tag(m)
    crm.fail.append(PermanentError("the CRM refuses items this large"))

    done = run(box, crm)
    again = run(box, crm, done.labels)

    assert [(f.outcome, bool(f.reason)) for f in done.filed] == [
        ("unreadable", True),
        ("refused", True),
    ]
    assert "not a message" not in done.filed[0].reason  # nothing of the message itself
    assert again.filed == []
    assert box.label_names(broken) == box.label_names(refused) == {"INBOX"}


@pytest.mark.parametrize("failing", ["record", "relabel"])
def test_EML4_a_pass_stopped_by_a_failing_side_records_nothing_twice_when_it_goes_on(
    box: MemoryMailbox, failing: str
) -> None:
    crm = Crm()
    crm.add("ann@example.com", "c-ann")
    sent = [box.deliver(message("ann@example.com", f"M{n}", f"m{n}@x")) for n in range(3)]
    for m in sent:
        box.tag(m)
    if failing == "record":
        crm.fail.append(TransientError("the CRM is unavailable"))
        first = run(box, crm)
    else:  # recorded, then the mailbox fails before the relabel
        original = box.relabel
        box.relabel = lambda *a, **k: (_ for _ in ()).throw(TransientError("Gmail 503"))  # type: ignore[method-assign]
        first = run(box, crm)
        box.relabel = original  # type: ignore[method-assign]

    assert [f.outcome for f in first.filed] == ["stopped"] and first.more
    run(box, crm, first.labels)

    assert sorted(i.subject for i in crm.items.values()) == ["M0", "M1", "M2"]
    assert all(box.label_names(m) == {"INBOX", "CRM/Recorded"} for m in sent)


def test_EML2_a_message_deleted_before_its_pass_is_skipped(box: MemoryMailbox) -> None:
    sent = box.deliver(message("ann@example.com", "Gone", "m9@x"))
    box.tag(sent)
    real = box.message

    def gone(message_id: str) -> tuple[bytes, datetime]:
        raise NotFound("deleted")

    box.message = gone  # type: ignore[method-assign]
    done = run(box, Crm())
    box.message = real  # type: ignore[method-assign]

    assert [f.outcome for f in done.filed] == ["gone"]


def test_EML2_attachments_the_crm_stores_go_with_the_item_and_the_others_are_named(
    box: MemoryMailbox,
) -> None:
    crm = Crm(limits=MailLimits(attachment_bytes=10))
    crm.add("ann@example.com", "c-ann")
    raw = (
        b"From: ann@example.com\r\nTo: dana.rep@demo.example\r\nSubject: Files\r\n"
        b"Message-ID: <f@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=small.txt"
        b"\r\n\r\nsmall\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQKJVBERi0xLjQKJVBERi0xLjQK\r\n--b--\r\n"
    )
    sent = box.deliver(raw)
    box.tag(sent)

    run(box, crm)

    [item] = crm.items.values()
    assert [(a.filename, a.data) for a in item.attachments] == [("small.txt", b"small")]
    assert item.body == "See attached.\n\nAttachments not stored in the CRM:\n- big.pdf (27 bytes)"


@pytest.mark.parametrize(("kept_bytes", "kept"), [(27, ["big.pdf"]), (26, []), (0, [])])
def test_EML2_an_attachment_is_kept_up_to_the_size_the_tenant_keeps_and_named_above_it(
    box: MemoryMailbox, kept_bytes: int, kept: list[str]
) -> None:
    crm = Crm(limits=MailLimits(attachment_bytes=0))  # the CRM stores none itself
    crm.add("ann@example.com", "c-ann")
    raw = (
        b"From: ann@example.com\r\nTo: dana.rep@demo.example\r\nSubject: Files\r\n"
        b"Message-ID: <g@x>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        b"filename=big.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQKJVBERi0xLjQKJVBERi0xLjQK\r\n--b--\r\n"
    )
    box.tag(box.deliver(raw))
    stored: list[str] = []

    def keep(key: str, attachment: Attachment) -> Linked:  # the object store's part
        stored.append(attachment.filename)
        return Linked(attachment.filename, attachment.content_type, attachment.size, "https://x/")

    recording.record_tagged(box, crm, [DANA], "google-u1", {}, keep=keep, kept_bytes=kept_bytes)

    [item] = crm.items.values()
    assert stored == kept and [link.filename for link in item.links] == kept
    named = "Attachments not stored in the CRM:\n- big.pdf (27 bytes)"
    assert (named in item.body) == (not kept)


def test_EML2_a_pass_takes_a_batch_oldest_first_and_says_more_are_left(
    box: MemoryMailbox,
) -> None:
    crm = Crm()
    crm.add("ann@example.com", "c-ann")
    sent = [box.deliver(message("ann@example.com", f"M{n}", f"b{n}@x")) for n in range(5)]
    for m in sent:
        box.tag(m)

    done = recording.record_tagged(box, crm, [DANA], "google-u1", {}, batch=3)

    assert [f.subject for f in done.filed] == ["M0", "M1", "M2"] and done.more
    assert recording.outcomes(done) == {"recorded": 3}


# -- EML-5: headlines of a label -------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_EML5_headlines_are_the_label_s_newest_messages_with_subject_sender_and_arrival() -> None:
    clock = Clock()
    box = MemoryMailbox(clock, DANA)
    missing: list[str] = []
    for minutes, raw in (
        (20, message("=?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <jg@example.de>", "Re: Offer", "h1@x")),
        (
            0,
            message(
                "ann@example.com", "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus?= =?utf-8?q?_K=C3=B6ln?=", "h2@x"
            ),
        ),
        (30, b"From: Bo <bo@example.org>\r\nTo: dana.rep@demo.example\r\n\r\nNo subject.\r\n"),
        (10, message('"Doe, Jo" <jo@example.net>', "Quote", "h3@x")),
    ):  # arriving out of order
        clock.now = NOW + timedelta(minutes=minutes)
        missing.append(box.deliver(raw))
        box.tag(missing[-1], "CRM/Missing Contact")
    clock.now = NOW + timedelta(hours=1)
    recorded = box.deliver(message("ann@example.com", "Recorded already", "h4@x"))
    box.tag(recorded, "CRM/Recorded")
    box.deliver(message("ann@example.com", "Untagged", "h5@x"))
    label = box.label_named("CRM/Missing Contact")
    assert label is not None

    shown = box.headlines(label, 3)

    assert shown == [
        Headline(missing[2], "", "Bo <bo@example.org>", NOW + timedelta(minutes=30)),
        Headline(
            missing[0], "Re: Offer", "Jürgen Groß <jg@example.de>", NOW + timedelta(minutes=20)
        ),
        Headline(missing[3], "Quote", "Doe, Jo <jo@example.net>", NOW + timedelta(minutes=10)),
    ]
    assert [h.subject for h in box.headlines(label, 10)][-1] == "Grüße aus Köln"
    assert box.headlines(label, 0) == []
    assert box.calls["headlines"] == 3


def test_EML5_headlines_of_messages_that_arrived_together_come_the_later_delivered_first(
    box: MemoryMailbox,
) -> None:
    sent = [box.deliver(message("ann@example.com", f"M{n}", f"t{n}@x")) for n in range(12)]
    for m in sent:
        box.tag(m, "CRM/Recorded")
    label = box.label_named("CRM/Recorded")
    assert label is not None

    shown = box.headlines(label, 12)

    assert [h.id for h in shown] == list(reversed(sent))
    assert {h.received for h in shown} == {NOW} and shown[0].sender == "ann@example.com"
