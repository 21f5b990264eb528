"""The CRM's side of e-mail recording (EML-2, EML-4) through SyncWorld: who holds an
address and in which order, one history item per key, what the CRM refuses, and what it
declares it keeps. crmsync writes through its connector only; the CRM's users see the
items in `world.crm.history`. The same tests run against the memory CRM and, with
CRMSYNC_WORLD_CRM=rest, the reference CRM over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from crmsync.errors import NotFound, PermanentError, TransientError
from crmsync.mail import filing, reader
from crmsync.ports import HistoryEntry, Linked, MailLimits, Person, Stored
from crmsync.testing import Crash, SyncWorld

MiB = 1024 * 1024
DANA = "u1@example.com"  # the world's user
RECEIVED = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def world() -> Iterator[SyncWorld]:
    made = SyncWorld()
    yield made
    made.close()


def mail_to(kind: str, record_id: str, **given: Any) -> HistoryEntry:
    values: dict[str, Any] = {
        "record_kind": kind,
        "record_id": record_id,
        "subject": "Offer",
        "body": "Dear Ada,\nthe offer is attached.",
        "date": datetime(2026, 11, 3, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        "participants": (("from", DANA, "Dana"), ("to", "ada@acme.example", "")),
        **given,
    }
    return HistoryEntry(**values)


def counts(world: SyncWorld, address: str) -> list[tuple[str, str, int]]:
    return [(p.kind, p.id, p.history_count) for p in world.crm_mail().people(address)]


def test_EML2_people_holding_an_address_come_most_history_first(world: SyncWorld) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    byron = world.crm.create_lead({"last_name": "Byron", "emails": ["Ada@Acme.example"]})
    world.crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]})
    crm = world.crm_mail()

    before = counts(world, "ADA@acme.example")
    crm.record_history(mail_to("lead", byron), "mail-1")
    crm.record_history(mail_to("lead", byron, subject="Re: Offer"), "mail-2")
    crm.record_history(mail_to("contact", ada), "mail-3")

    assert before == [("contact", ada, 0), ("lead", byron, 0)]  # equals: contacts first
    assert counts(world, "ada@acme.example") == [("lead", byron, 2), ("contact", ada, 1)]
    assert [p.name for p in crm.people("ada@acme.example")] == ["Byron", "Ada"]
    assert crm.people("nobody@acme.example") == []


def test_EML5_people_are_found_by_a_part_of_their_name_or_address_whatever_its_case(
    world: SyncWorld,
) -> None:
    ada = world.crm.create(
        "contact",
        {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@engines.example"]},
    )
    byron = world.crm.create_lead({"last_name": "Byron", "emails": ["lord@Poets.example"]})
    engines = world.crm.create(
        "contact", {"company": "Analytical Engines", "emails": ["sales@x.example"]}
    )
    world.crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]})
    crm = world.crm_mail()

    assert crm.search_people("poets.EX", 20) == [
        Person("lead", byron, "Byron", ("lord@poets.example",), 0)
    ]
    assert [(p.id, p.name) for p in crm.search_people("LOVE", 20)] == [(ada, "Ada Lovelace")]
    assert [p.id for p in crm.search_people("a l", 20)] == [ada]  # first and last name
    assert [p.id for p in crm.search_people("Engines", 20)] == [ada, engines]  # by name
    assert world.crm_mail("u2").search_people("Engines", 20) == crm.search_people("engines", 20)
    assert crm.search_people("zz", 20) == []
    world.crm.delete("contact", ada)
    assert [p.id for p in crm.search_people("engines", 20)] == [engines]


def test_EML5_a_search_lists_most_history_first_then_by_name_up_to_the_limit(
    world: SyncWorld,
) -> None:
    made = {
        name: world.crm.create(
            "contact", {"first_name": name, "emails": [f"{name.lower()}@acme.example"]}
        )
        for name in ("Cleo", "abel", "Bea", "Dan")
    }
    crm = world.crm_mail()
    for key, name in enumerate(("Bea", "Bea", "Dan")):
        crm.record_history(mail_to("contact", made[name]), f"mail-{key}")

    def found(limit: int) -> list[tuple[str, int]]:
        return [(p.name, p.history_count) for p in crm.search_people("ACME.example", limit)]

    assert found(20) == [("Bea", 2), ("Dan", 1), ("abel", 0), ("Cleo", 0)]
    assert found(50) == found(20)
    assert found(3) == [("Bea", 2), ("Dan", 1), ("abel", 0)]
    assert found(1) == [("Bea", 2)]


def test_EML5_a_search_the_contract_refuses_is_a_permanent_error(world: SyncWorld) -> None:
    world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    crm = world.crm_mail()

    for text, limit in (("a", 20), ("a" * 101, 20), ("ada", 0), ("ada", 51)):
        with pytest.raises(PermanentError) as refused:
            crm.search_people(text, limit)
        assert not isinstance(refused.value, NotFound)

    assert crm.search_people("a" * 100, 50) == []
    assert [p.name for p in crm.search_people("ad", 1)] == ["Ada"]


def test_EML2_EML5_an_address_finds_as_many_people_as_the_contracts_default_limit(
    world: SyncWorld,
) -> None:
    for n in range(21):
        world.crm.create("contact", {"last_name": f"Clerk {n:02}", "emails": ["desk@acme.example"]})
    crm = world.crm_mail()

    assert [p.name for p in crm.people("desk@acme.example")] == [f"Clerk {n:02}" for n in range(20)]
    assert [p.name for p in crm.search_people("clerk", 50)] == [f"Clerk {n:02}" for n in range(21)]


def test_EML4_a_message_is_recorded_once_per_key_whichever_cycle_sends_it(
    world: SyncWorld,
) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    entry = mail_to(
        "contact",
        ada,
        attachments=(Stored("offer.pdf", "application/pdf", b"%PDF-1.7 offer"),),
        links=(Linked("deck.mp4", "video/mp4", 80 * MiB, "https://store.example/d?sig=1"),),
    )

    first, new = world.crm_mail().record_history(entry, "mail-1")
    again = world.crm_mail().record_history(entry, "mail-1")  # a later cycle, anew

    assert new and again == (first, False)  # the same item, and it says it was there
    assert world.crm.history("contact", ada) == [
        {
            "id": first,
            "subject": "Offer",
            "body": "Dear Ada,\nthe offer is attached.",
            "date": datetime(2026, 11, 3, 9, 30, tzinfo=UTC),
            "participants": [
                {"role": "from", "email": DANA, "name": "Dana"},
                {"role": "to", "email": "ada@acme.example", "name": ""},
            ],
            "attachments": [
                {"filename": "offer.pdf", "content_type": "application/pdf", "size": 14}
            ],
            "links": [
                {"filename": "deck.mp4", "url": "https://store.example/d?sig=1", "size": 80 * MiB}
            ],
        }
    ]
    other, new = world.crm_mail().record_history(mail_to("contact", ada), "mail-2")
    assert new and other != first
    assert [item["id"] for item in world.crm.history("contact", ada)] == [first, other]


def test_EML4_a_recording_that_failed_or_died_is_recorded_once_when_retried(
    world: SyncWorld,
) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    crm = world.crm_mail()
    world.fail("crm", "create", "transient")

    with pytest.raises(TransientError):
        crm.record_history(mail_to("contact", ada), "mail-1")
    assert world.crm.history("contact", ada) == []
    world.crash_after(1)
    with pytest.raises(Crash):  # the CRM recorded it; the process died before noting so
        crm.record_history(mail_to("contact", ada), "mail-1")
    resumed, new = world.crm_mail().record_history(mail_to("contact", ada), "mail-1")

    assert not new  # recorded before the process died
    assert [item["id"] for item in world.crm.history("contact", ada)] == [resumed]
    assert counts(world, "ada@acme.example") == [("contact", ada, 1)]


def test_EML2_a_message_for_a_deleted_record_is_not_found(world: SyncWorld) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    crm = world.crm_mail()
    assert counts(world, "ada@acme.example") == [("contact", ada, 0)]
    world.crm.delete("contact", ada)

    with pytest.raises(NotFound):
        crm.record_history(mail_to("contact", ada), "mail-1")

    assert world.crm.history("contact", ada) == []
    assert crm.people("ada@acme.example") == []  # a deleted contact holds no address
    with pytest.raises(NotFound):
        crm.record_history(mail_to("lead", ada), "mail-2")  # nor is it a lead


def test_EML2_limits_are_what_the_crm_declares_and_an_item_over_them_is_refused(
    world: SyncWorld,
) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    assert world.crm_mail().mail_limits() == MailLimits(255, 65_536, 5 * MiB)

    world.crm.set_history_limits(subject=20, body=60, attachment_bytes=0)
    crm = world.crm_mail()

    assert crm.mail_limits() == MailLimits(subject=20, body=60, attachment_bytes=0)
    refused = {
        "subject": mail_to("contact", ada, subject="s" * 21),
        "body": mail_to("contact", ada, body="b" * 61),
        "attachment": mail_to("contact", ada, attachments=(Stored("a.txt", "text/plain", b"a"),)),
    }
    for key, entry in refused.items():
        with pytest.raises(PermanentError) as raised:
            crm.record_history(entry, key)
        assert not isinstance(raised.value, NotFound)
    assert world.crm.history("contact", ada) == []
    crm.record_history(mail_to("contact", ada, subject="s" * 20, body="b" * 60), "fits")
    assert [len(i["body"]) for i in world.crm.history("contact", ada)] == [60]


RAW = b"""\
From: Ada Lovelace <Ada@Acme.example>
To: Dana Rep <u1@example.com>
Cc: Bob <bob@acme.example>
Subject: A rather long subject line about the engine
Date: Tue, 03 Nov 2026 10:30:00 +0100
Message-ID: <offer-7@acme.example>

Dana, the numbers are in: the engine computes the tables of Bernoulli numbers
in a fraction of the time the office needs, and the cards for the next run are
punched. They fill more than the CRM keeps of a body.
"""


def test_EML2_EML4_a_read_message_is_filed_cut_to_the_limits_and_recorded_once(
    world: SyncWorld,
) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]})
    bob = world.crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]})
    world.crm_mail().record_history(mail_to("contact", bob), "earlier")
    world.crm.set_history_limits(subject=16, body=100)
    message = reader.read(RAW)

    for _ in range(2):  # the message tagged, then notified again
        crm = world.crm_mail()
        person = filing.match(message, [DANA], crm.people)
        assert person is not None
        entry = filing.entry(message, person, crm.mail_limits(), RECEIVED)
        crm.record_history(entry, filing.key(message, person, DANA, "provider-id-1"))

    assert world.crm.history("contact", ada) == []
    (_, filed) = world.crm.history("contact", bob)  # Bob had the most history
    assert filed["subject"] == "A rather long s…"
    assert len(filed["body"]) == 100 and filed["body"].endswith("longer than the CRM keeps]")
    assert filed["date"] == datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
