"""EML-1..4 through the worker: a task of trigger "mail" runs a pass over the user's
tagged messages with the CRM the connection acts in (the same use case the
`sync_worker` function runs), keeps the labels' ids on the connection, stores a run
whose history items say what became of each message, and leaves sync cycles alone.
These worlds keep their mailbox in memory in every pass; Gmail's and Outlook's
adapters are run against their sandboxes by test_gmail_adapter and
test_outlook_mail_adapter, and end to end by the local-stack tests."""

from __future__ import annotations

import pytest

from crmsync import service
from crmsync.mail import recording
from crmsync.queue.inline import InlineQueue
from crmsync.testing import SyncWorld
from crmsync.usecases import history

ANN = "ann.buyer@example.com"


def tagged(world: SyncWorld, sender: str, subject: str, message_id: str) -> str:
    raw = (
        f"From: {sender}\r\nTo: u1@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nAbout the offer.\r\n"
    ).encode()
    sent = world.mailbox.deliver(raw)
    world.mailbox.tag(sent)
    return sent


def ann(world: SyncWorld) -> str:
    crm_id = world.crm.create(
        "contact", {"first_name": "Ann", "last_name": "Buyer", "emails": [ANN]}
    )
    return crm_id


def test_EML2_a_mail_task_records_the_tagged_message_on_its_contact() -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    world.record_mail()
    crm_id = ann(world)
    sent = tagged(world, f"Ann <{ANN}>", "Offer", "o-1@x")

    run = world.sync("mail")

    assert (run["status"], run["trigger"]) == ("ok", "mail")
    assert run["counts"] == {"mail": {"record": 1}}
    [item] = world.crm.history("contact", crm_id)
    assert (item["subject"], item["body"]) == ("Offer", "About the offer.")
    assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Recorded"}
    [shown] = world.store.items(world.connection.id, run["id"])
    assert (shown["kind"], shown["label"], shown["outcome"]) == ("mail", "Offer", "record")
    assert shown["crm_id"] == crm_id


def test_EML1_the_labels_ids_are_kept_on_the_connection_and_reused() -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    world.record_mail()
    world.sync("mail")
    record = service.connection_of(world.store, world.connection.id)
    assert record is not None and set(record.mail_labels) == {"send", "recorded", "missing"}
    world.mailbox.rename_label("CRM/Send To CRM", "To the CRM")

    world.sync("mail")

    again = service.connection_of(world.store, world.connection.id)
    assert again is not None and again.mail_labels == record.mail_labels
    assert sorted(world.mailbox.names.values()) == [
        "CRM/Missing Contact",
        "CRM/Recorded",
        "To the CRM",
    ]


def test_EML4_a_mail_task_twice_records_once() -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    world.record_mail()
    crm_id = ann(world)
    sent = tagged(world, ANN, "Offer", "o-2@x")
    world.sync("mail")
    world.mailbox.tag(sent)

    world.sync("mail")

    assert len(world.crm.history("contact", crm_id)) == 1


def test_EML1_a_connection_that_records_no_mail_skips_mail_tasks_and_syncs_as_before() -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    tagged(world, ANN, "Offer", "o-3@x")

    run = world.sync("mail")

    assert run["status"] == "skipped"
    assert world.mailbox.calls == {}


def test_EML1_a_pass_that_leaves_tagged_messages_asks_for_the_next_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    world.record_mail()
    ann(world)
    for n in range(3):
        tagged(world, ANN, f"M{n}", f"m{n}@x")
    monkeypatch.setattr(recording, "BATCH", 2)

    world.sync("mail")

    queue = world.services.queue
    assert isinstance(queue, InlineQueue)
    assert [task.trigger for task in queue.due(world.now())] == ["mail"]


def test_EML2_HIS2_sync_history_shows_the_mail_pass_and_opens_the_contact_it_filed_to() -> None:
    world = SyncWorld(provider_backend="memory")  # the memory mailbox (see the module)
    world.record_mail()
    crm_id = ann(world)
    tagged(world, ANN, "Offer", "o-4@x")
    tagged(world, "stranger@example.org", "Hello", "o-5@x")
    world.store.save_tenant_record({"crm": {"record_url": "https://crm.example/{kind}/{id}"}})
    run = world.sync("mail")

    [listed] = [r for r in history.runs(world.services, "t1")["runs"] if r["id"] == run["id"]]
    shown = history.run_detail(world.services, "t1", world.connection.id, run["id"])

    assert listed["counts"] == {"mail": {"recorded": 1, "no contact": 1, "skipped": 0}}
    assert [(i["kind_name"], i["label"], i["action"]) for i in shown["items"]] == [
        ("E-mail", "Offer", "Recorded in the CRM"),
        ("E-mail", "Hello", "No CRM contact"),
    ]
    assert shown["items"][0]["actions"] == [
        {"name": "open", "url": f"https://crm.example/contact/{crm_id}"}
    ]
