"""EML-2..4: which CRM record a read message is filed to, the key that records it once,
and the history item the CRM is sent, cut to what the CRM keeps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from crmsync.mail import filing
from crmsync.mail.reader import Mail, Participant
from crmsync.ports import MailLimits, Person

DANA = "dana.rep@demo.example"
RECEIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def mail(*participants: tuple[str, str], message_id: str = "m-1@example.com") -> Mail:
    return Mail(
        message_id=message_id,
        subject="Offer",
        text="Hello",
        date=None,
        participants=tuple(Participant(role, address) for role, address in participants),
    )


def person(pid: str, history: int, kind: str = "contact") -> Person:
    return Person(kind, pid, pid, (f"{pid}@example.com",), history)


def directory(**held: list[Person]) -> tuple[dict[str, list[Person]], list[str]]:
    """People by address (local part as keyword), and the addresses asked, in order."""
    return {f"{k}@example.com": v for k, v in held.items()}, []


def lookup(table: dict[str, list[Person]], asked: list[str]) -> Callable[[str], list[Person]]:
    def people(address: str) -> list[Person]:
        asked.append(address)
        return table.get(address, [])

    return people


def test_EML2_the_message_is_filed_to_the_participant_who_is_in_the_crm() -> None:
    table, asked = directory(ann=[person("c-ann", 0)])
    message = mail(("from", "ann@example.com"), ("to", DANA))

    assert filing.match(message, [DANA], lookup(table, asked)) == person("c-ann", 0)
    assert asked == ["ann@example.com"]  # the user's own address is never looked up


def test_EML2_of_several_matches_the_one_with_the_most_history_wins() -> None:
    table, asked = directory(
        ann=[person("c-ann", 2)], bo=[person("l-bo", 7, "lead"), person("c-bo", 3)]
    )
    message = mail(("from", DANA), ("to", "ann@example.com"), ("cc", "bo@example.com"))

    assert filing.match(message, [DANA.upper()], lookup(table, asked)) == person("l-bo", 7, "lead")


def test_EML2_of_equal_history_the_sender_comes_before_the_recipients() -> None:
    table, asked = directory(ann=[person("c-ann", 4)], bo=[person("c-bo", 4)])
    message = mail(("from", "bo@example.com"), ("to", "ann@example.com"))

    assert filing.match(message, [DANA], lookup(table, asked)) == person("c-bo", 4)


def test_EML3_no_participant_in_the_crm_files_nothing() -> None:
    table, asked = directory()
    message = mail(("from", "stranger@example.org"), ("to", DANA))

    assert filing.match(message, [DANA], lookup(table, asked)) is None


def test_EML2_a_mailing_to_hundreds_looks_up_a_bounded_number_of_addresses() -> None:
    table, asked = directory()
    message = mail(("from", DANA), *[("to", f"r{n}@example.com") for n in range(300)])

    filing.match(message, [DANA], lookup(table, asked))

    assert asked == [f"r{n}@example.com" for n in range(filing.MAX_LOOKUPS)]


def test_EML4_the_key_is_the_message_id_whatever_mailbox_or_copy_it_comes_from() -> None:
    ann = person("c-ann", 0)
    first = filing.key(mail(message_id="x@y"), ann, "google-u1", "gmail-17")
    again = filing.key(mail(message_id="x@y"), ann, "microsoft-u2", "AAMk-9")

    assert first == again
    assert filing.key(mail(message_id="x@y"), person("c-bo", 0), "google-u1", "gmail-17") != first
    assert filing.key(mail(message_id="other@y"), ann, "google-u1", "gmail-17") != first


def test_EML4_a_message_without_message_id_is_keyed_by_its_mailbox_and_id() -> None:
    ann = person("c-ann", 0)
    keyed = filing.key(mail(message_id=""), ann, "google-u1", "gmail-17")

    assert keyed == filing.key(mail(message_id=""), ann, "google-u1", "gmail-17")
    assert keyed != filing.key(mail(message_id=""), ann, "google-u1", "gmail-18")
    assert len(keyed) <= 255 and keyed.isascii()


def test_EML2_the_item_carries_the_message_and_is_cut_to_the_crm_s_limits_with_a_marker() -> None:
    message = Mail(
        message_id="m@x",
        subject="S" * 30,
        text="B" * 500,
        date=None,
        participants=(Participant("from", "ann@example.com", "Ann"),),
    )
    limits = MailLimits(subject=20, body=200)

    item = filing.entry(message, person("c-ann", 0), limits, RECEIVED)

    assert (item.record_kind, item.record_id) == ("contact", "c-ann")
    assert item.subject == "S" * 19 + "…" and len(item.subject) == 20
    assert len(item.body) == 200 and item.body.endswith(filing.CUT)
    assert item.body.startswith("B" * (200 - len(filing.CUT)))
    assert item.date == RECEIVED  # the message's own date was unreadable
    assert item.participants == (("from", "ann@example.com", "Ann"),)


def test_EML2_a_message_that_fits_is_sent_whole() -> None:
    message = Mail("m@x", "Short", "Body", RECEIVED, (Participant("to", "a@b.c"),))

    item = filing.entry(message, person("c-ann", 0), MailLimits(subject=5, body=4), RECEIVED)

    assert (item.subject, item.body) == ("Short", "Body")
