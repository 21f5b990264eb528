"""The memory CRM's side of e-mail recording (EML-2, EML-4): limits set on the CRM like
its field limits, history kept per record, and what it refuses, as its connector shows
them. SyncWorld's tests (test_mail_crm) hold it to the same behaviour as the reference
CRM; these pin what only the memory CRM shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from crmsync.crm.memory import MemoryCrm
from crmsync.errors import NotFound, PermanentError
from crmsync.ports import HistoryEntry, MailLimits, Stored

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def crm() -> MemoryCrm:
    return MemoryCrm(lambda: NOW)


def mail_to(kind: str, record_id: str, **given: Any) -> HistoryEntry:
    entry = HistoryEntry(kind, record_id, "Offer", "Hello", NOW, (("to", "ada@x.org", ""),))
    return replace(entry, **given)


def test_EML2_limits_set_on_the_memory_crm_are_what_its_connector_declares() -> None:
    memory = crm()
    assert memory.connector("u1").mail_limits() == MailLimits(255, 65_536, 5 * 1024 * 1024)

    memory.mail_limits = MailLimits(subject=30, body=40, attachment_bytes=3)

    assert memory.connector("u2").mail_limits() == MailLimits(30, 40, 3)
    ada = memory.log.insert("contact", {"emails": ["ada@x.org"]}, remote=False).id
    big = mail_to("contact", ada, attachments=(Stored("a.bin", "x/y", b"1234"),))
    with pytest.raises(PermanentError, match="larger than 3 bytes"):
        memory.connector("u1").record_history(big, "k1")
    assert memory.history == {}


def test_EML2_people_whose_data_does_not_read_are_not_found() -> None:
    memory = crm()
    good = memory.log.insert("contact", {"emails": ["ada@x.org"]}, remote=False).id
    memory.log.insert("contact", {"emails": ["ada@x.org"], "address": 5}, remote=False)

    found = memory.connector("u1").people("ada@x.org")

    assert [(p.kind, p.id) for p in found] == [("contact", good)]


def test_EML5_people_whose_data_does_not_read_are_not_found_by_a_search() -> None:
    memory = crm()
    good = memory.log.insert(
        "contact", {"first_name": "Ada", "emails": ["ada@x.org"]}, remote=False
    ).id
    memory.log.insert("contact", {"first_name": "Ada", "address": 5}, remote=False)
    memory.log.insert("lead", {"first_name": "Ada", "address": 5}, remote=False)

    found = memory.connector("u1").search_people("ADA", 20)

    assert [(p.kind, p.id) for p in found] == [("contact", good)]


def test_EML2_history_is_kept_on_contacts_and_leads_only() -> None:
    memory = crm()
    meeting = memory.log.insert("activity", {"subject": "Kickoff"}, owner="u1", remote=False).id
    connector = memory.connector("u1")

    with pytest.raises(NotFound):
        connector.record_history(mail_to("activity", meeting), "k1")
    with pytest.raises(NotFound):
        connector.record_history(mail_to("contact", meeting), "k2")

    assert memory.history == {} and memory.history_keys == {}


def test_EML4_a_date_is_kept_in_utc_and_one_without_an_offset_is_taken_as_utc() -> None:
    memory = crm()
    ada = memory.log.insert("contact", {"emails": ["ada@x.org"]}, remote=False).id
    connector = memory.connector("u1")

    connector.record_history(mail_to("contact", ada, date=datetime(2026, 11, 3, 8, 0)), "k1")

    (item,) = memory.history[("contact", ada)]
    assert item.entry.date == datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
