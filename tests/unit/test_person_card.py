"""A person's card (CTX-1): what the mail client's pane shows of a participant the CRM
knows, as crmsync reads it through its connector. The same tests run against the memory
CRM and, with CRMSYNC_WORLD_CRM=rest, the reference CRM over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.errors import NotFound, PermanentError
from crmsync.ports import HistoryEntry
from crmsync.testing import SyncWorld

ADA = "ada@acme.example"


@pytest.fixture
def world() -> Iterator[SyncWorld]:
    made = SyncWorld()
    yield made
    made.close()


def recorded(world: SyncWorld, kind: str, record_id: str, subject: str, day: int) -> None:
    entry = HistoryEntry(
        record_kind=kind,
        record_id=record_id,
        subject=subject,
        body="A message.",
        date=datetime(2026, 11, day, 9, 0, tzinfo=UTC),
        participants=(("from", ADA, "Ada"),),
    )
    world.crm_mail().record_history(entry, f"{kind}-{record_id}-{subject}")


def test_CTX1_a_card_holds_the_account_its_open_deals_the_newest_history_and_filled_fields(
    world: SyncWorld,
) -> None:
    world.crm.declare_custom_field("contact", "tier", "enum", ("gold", "silver"))
    world.crm.declare_custom_field("contact", "region")
    ada = world.crm.create(
        "contact",
        {"first_name": "Ada", "last_name": "Lovelace", "title": "CTO", "emails": [ADA]},
    )
    world.crm.update("contact", ada, {"custom": {"tier": "gold"}})
    acme = world.crm.create_account("Acme")
    world.crm.attach_to_account(ada, acme)
    world.crm.add_opportunity(acme, "Renewal 2027", "Proposal", amount="12000 EUR")
    world.crm.add_opportunity(acme, "Pilot", "Won", open=False)
    for day, subject in ((1, "Intro"), (3, "Offer"), (2, "Agenda"), (4, "Signed")):
        recorded(world, "contact", ada, subject, day)
    crm = world.crm_mail()
    [person] = crm.people(ADA)

    card = crm.person_card(person, recent=3)

    assert (card.person.id, card.person.name, card.title) == (ada, "Ada Lovelace", "CTO")
    assert card.person.history_count == 4
    assert card.account is not None and card.account.name == "Acme"
    assert [(o.name, o.detail) for o in card.opportunities] == [
        ("Renewal 2027", "Proposal · 12000 EUR")
    ]
    assert [item.subject for item in card.history] == ["Signed", "Offer", "Agenda"]
    assert card.history[0].date == datetime(2026, 11, 4, 9, 0, tzinfo=UTC)
    assert card.fields == (("tier", "gold"),)  # the region holds no value


def test_CTX1_a_leads_card_has_no_account_and_a_new_persons_card_is_empty(
    world: SyncWorld,
) -> None:
    lead = world.crm.create_lead({"first_name": "Byron", "emails": ["byron@acme.example"]})
    crm = world.crm_mail()
    [person] = crm.people("byron@acme.example")

    card = crm.person_card(person)

    assert (card.person.kind, card.person.id, card.person.name) == ("lead", lead, "Byron")
    assert (card.account, card.opportunities, card.history, card.fields) == (None, (), (), ())


def test_CTX1_the_card_of_a_person_deleted_since_it_was_found_is_not_found(
    world: SyncWorld,
) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": [ADA]})
    crm = world.crm_mail()
    [person] = crm.people(ADA)
    world.crm.delete("contact", ada)

    with pytest.raises(NotFound):
        crm.person_card(person)


def test_CTX1_history_dated_alike_lists_the_later_recorded_first(world: SyncWorld) -> None:
    ada = world.crm.create("contact", {"first_name": "Ada", "emails": [ADA]})
    for subject in ("First", "Second"):
        recorded(world, "contact", ada, subject, 5)
    crm = world.crm_mail()
    [person] = crm.people(ADA)

    assert [h.subject for h in crm.person_card(person).history] == ["Second", "First"]


# -- documents to attach (CTX-1) ------------------------------------------------------------
def test_CTX1_documents_are_found_by_a_part_of_their_name_and_read_whole(
    world: SyncWorld,
) -> None:
    first = world.crm.add_document("Renewal proposal.txt", b"Dear Acme,\n", "text/plain")
    world.advance(timedelta(minutes=1))
    second = world.crm.add_document("Acme renewal prices.csv", b"seat,400\n", "text/csv")
    world.crm.add_document("Max's acme notes.txt", b"private\n", "text/plain", owner="u2")
    crm = world.crm_mail()

    found = crm.documents("ACME", 10)

    assert [(d.id, d.name, d.size) for d in found] == [(second, "Acme renewal prices.csv", 9)]
    assert [d.id for d in crm.documents("re", 10)] == [second, first]  # newest first
    assert [d.id for d in crm.documents("re", 1)] == [second]
    assert crm.document(first) == ("Renewal proposal.txt", "text/plain", b"Dear Acme,\n")


def test_CTX1_a_document_hidden_from_the_user_or_unknown_is_not_found(world: SyncWorld) -> None:
    private = world.crm.add_document("Max's forecast.txt", b"Q1\n", "text/plain", owner="u2")
    crm = world.crm_mail()

    assert crm.documents("forecast", 10) == []
    with pytest.raises(NotFound):
        crm.document(private)
    with pytest.raises(NotFound):
        crm.document("doc-404")
    with pytest.raises(PermanentError):
        crm.documents("f", 10)  # the contract's 400: two letters at least
    assert [d.name for d in world.crm_mail("u2").documents("forecast", 10)] == [
        "Max's forecast.txt"
    ]
