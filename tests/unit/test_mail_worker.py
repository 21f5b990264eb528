"""EML-1..5 through the worker: a task of trigger "mail" runs a pass over the user's
tagged messages with the CRM the connection acts in (the same use case the
`sync_worker` function runs), keeps the labels' ids on the connection, stores a run
whose history items say what became of each message, and leaves sync cycles alone.

Each example runs in a Google and in a Microsoft world. The mailbox is the world's:
in memory in the memory pass; Gmail in the Google sandbox in the google-sandbox pass,
and Outlook in the Microsoft sandbox in the graph-sandbox pass, each reached by the
mail pass through its provider's kit and production adapter (GmailAccount over HTTP,
OutlookMail over https), as the worker reaches them (a sandbox pass keeps the other
provider's world in memory)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from crmsync import service
from crmsync.mail import recording
from crmsync.queue.inline import InlineQueue
from crmsync.settings import SettingsError, resolve
from crmsync.testing import SyncWorld
from crmsync.usecases import history, mail

ANN = "ann.buyer@example.com"


@pytest.fixture(params=["google", "microsoft"])
def world(request: pytest.FixtureRequest) -> Iterator[SyncWorld]:
    """A world of the provider, its mailbox as the pass's CRMSYNC_WORLD_PROVIDER has it."""
    made = SyncWorld(provider=request.param)
    yield made
    made.close()


def tagged(world: SyncWorld, sender: str, subject: str, message_id: str) -> str:
    """A message arrives, a minute after the one before, and the user tags it: oldest
    first is then one order in every mailbox (Outlook knows a message's arrival only by
    its receivedDateTime, and orders those of one instant as it likes)."""
    world.advance(timedelta(minutes=1))
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


def test_EML2_a_mail_task_records_the_tagged_message_on_its_contact(world: SyncWorld) -> None:
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


def test_EML1_the_labels_ids_are_kept_on_the_connection_and_reused(world: SyncWorld) -> None:
    world.record_mail()
    world.sync("mail")
    record = service.connection_of(world.store, world.connection.id)
    assert record is not None and set(record.mail_labels) == {"send", "recorded", "missing"}
    made = world.mailbox.names
    assert {made[label] for label in record.mail_labels.values()} == {
        "CRM/Send To CRM",
        "CRM/Recorded",
        "CRM/Missing Contact",
    }

    world.sync("mail")

    again = service.connection_of(world.store, world.connection.id)
    assert again is not None and again.mail_labels == record.mail_labels
    assert world.mailbox.names == made  # nothing made again


def test_EML1_a_label_the_user_renamed_keeps_its_id_and_stays_crmsyncs() -> None:
    # A Google world: Outlook lets no category be renamed (Graph keeps a category's name).
    world = SyncWorld(provider="google")
    world.record_mail()
    world.sync("mail")
    record = service.connection_of(world.store, world.connection.id)
    assert record is not None
    made = world.mailbox.names
    world.mailbox.rename_label("CRM/Send To CRM", "To the CRM")

    world.sync("mail")

    again = service.connection_of(world.store, world.connection.id)
    assert again is not None and again.mail_labels == record.mail_labels
    assert world.mailbox.names == {**made, record.mail_labels["send"]: "To the CRM"}


def test_EML4_a_mail_task_twice_records_once(world: SyncWorld) -> None:
    world.record_mail()
    crm_id = ann(world)
    sent = tagged(world, ANN, "Offer", "o-2@x")
    world.sync("mail")
    world.mailbox.tag(sent)

    world.sync("mail")

    assert len(world.crm.history("contact", crm_id)) == 1


def test_EML1_a_connection_that_records_no_mail_skips_mail_tasks_and_syncs_as_before(
    world: SyncWorld,
) -> None:
    sent = tagged(world, ANN, "Offer", "o-3@x")

    run = world.sync("mail")

    assert run["status"] == "skipped"
    assert set(world.mailbox.names.values()) == {"CRM/Send To CRM"}  # no label of crmsync's
    assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Send To CRM"}


def test_EML1_a_pass_that_leaves_tagged_messages_asks_for_the_next_at_once(
    world: SyncWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.record_mail()
    ann(world)
    for n in range(3):
        tagged(world, ANN, f"M{n}", f"m{n}@x")
    monkeypatch.setattr(recording, "BATCH", 2)

    world.sync("mail")

    queue = world.services.queue
    assert isinstance(queue, InlineQueue)
    assert [task.trigger for task in queue.due(world.now())] == ["mail"]


def test_EML2_HIS2_sync_history_shows_the_mail_pass_and_opens_the_contact_it_filed_to(
    world: SyncWorld,
) -> None:
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


def test_EML2_HIS2_a_mail_pass_that_recorded_is_no_idle_run_and_the_e_mail_filter_finds_it(
    world: SyncWorld,
) -> None:
    world.record_mail()
    ann(world)
    idle = world.sync("mail")  # nothing tagged yet
    tagged(world, ANN, "Offer", "o-6@x")
    busy = world.sync("mail")

    listed = {r["id"]: r for r in history.runs(world.services, "t1")["runs"]}
    mail_only = history.runs(world.services, "t1", kind="mail")["runs"]

    assert (listed[idle["id"]]["status"], listed[busy["id"]]["status"]) == ("idle", "ok")
    assert [r["id"] for r in mail_only] == [busy["id"]]


# -- EML-5: messages the user chose, filed to records they chose ------------------------
BOB = "bob.lead@example.com"


def missing(world: SyncWorld, subject: str, message_id: str) -> str:
    """A message from someone the CRM does not know, tagged and labelled Missing Contact."""
    sent = tagged(world, "Stranger <stranger@elsewhere.example>", subject, message_id)
    world.sync("mail")
    assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Missing Contact"}
    return sent


def bob(world: SyncWorld) -> str:
    lead_id: str = world.crm.create("lead", {"last_name": "Lead", "emails": [BOB]})
    return lead_id


def file(
    world: SyncWorld, messages: list[str], records: list[str], names: dict[str, str] | None = None
) -> dict[str, object]:
    """The user's choice, as the filing page sends it (the same use case)."""
    tenant, connection = world.connection.tenant, world.connection.id
    return mail.file(world.services, tenant, connection, messages, records, names)


def test_EML5_HIS2_sync_history_names_the_record_the_user_filed_a_message_to(
    world: SyncWorld,
) -> None:
    world.record_mail()
    sent = missing(world, "Intro", "i-6@x")
    contact, lead = ann(world), bob(world)
    names = {f"contact/{contact}": "Ann Buyer"}  # the page knew Ann's name, not the lead's

    file(world, [sent], [f"contact/{contact}", f"lead/{lead}"], names)
    run = world.sync("mail")

    reasons = {i["crm_id"]: i["reason"] for i in world.store.items(world.connection.id, run["id"])}
    assert reasons == {
        contact: "filed to Ann Buyer, as you chose",
        lead: "filed to this record, as you chose",
    }


def test_EML5_chosen_messages_are_filed_once_to_each_chosen_record_and_labelled_recorded(
    world: SyncWorld,
) -> None:
    world.record_mail()
    first, second = missing(world, "Intro", "i-1@x"), missing(world, "Terms", "t-1@x")
    contact, lead = ann(world), bob(world)

    asked = file(world, [first, second], [f"contact/{contact}", f"lead/{lead}"])
    run = world.sync("mail")

    assert (asked["messages"], asked["records"]) == (2, 2)
    assert run["status"] == "ok"
    assert run["counts"] == {"mail": {"record": 4}}
    for kind, record in (("contact", contact), ("lead", lead)):
        subjects = sorted(i["subject"] for i in world.crm.history(kind, record))
        assert subjects == ["Intro", "Terms"], kind
    for sent in (first, second):
        assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Recorded"}
    items = world.store.items(world.connection.id, run["id"])
    assert sorted((i["crm_kind"], i["crm_id"], i["label"]) for i in items) == sorted(
        (k, r, s) for k, r in (("contact", contact), ("lead", lead)) for s in ("Intro", "Terms")
    )
    assert {i["reason"] for i in items} == {"filed to this record, as you chose"}
    assert world.store.filings(world.connection.id, 10) == []

    file(world, [first], [f"contact/{contact}", f"lead/{lead}"])  # EML-4: chosen again
    world.sync("mail")

    assert len(world.crm.history("contact", contact)) == 2
    assert len(world.crm.history("lead", lead)) == 2


def test_EML5_a_recorded_message_can_be_filed_to_one_more_record(world: SyncWorld) -> None:
    world.record_mail()
    contact, lead = ann(world), bob(world)
    sent = tagged(world, ANN, "Offer", "o-9@x")
    world.sync("mail")

    file(world, [sent], [f"lead/{lead}"])
    world.sync("mail")

    assert [i["subject"] for i in world.crm.history("contact", contact)] == ["Offer"]
    assert [i["subject"] for i in world.crm.history("lead", lead)] == ["Offer"]
    assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Recorded"}


def test_EML5_a_record_gone_is_reported_for_itself_and_the_others_are_filed(
    world: SyncWorld,
) -> None:
    world.record_mail()
    sent = missing(world, "Intro", "i-2@x")
    contact = ann(world)

    file(world, [sent], [f"contact/{contact}", "lead/no-such-lead"])
    run = world.sync("mail")

    assert run["counts"] == {"mail": {"record": 1, "skip": 1}}
    [refused] = [
        i for i in world.store.items(world.connection.id, run["id"]) if i["outcome"] == "skip"
    ]
    assert (refused["crm_kind"], refused["crm_id"]) == ("lead", "no-such-lead")
    assert "the record is gone, or you may no longer see it" in refused["reason"]
    assert len(world.crm.history("contact", contact)) == 1
    assert world.mailbox.label_names(sent) == {"INBOX", "CRM/Recorded"}
    assert world.store.filings(world.connection.id, 10) == []


def test_HIS4_a_mail_pass_the_crm_did_not_answer_says_the_crm_and_the_next_records(
    world: SyncWorld,
) -> None:
    world.record_mail()
    tagged(world, ANN, "Offer", "o-1@x")
    ann(world)
    world.fail("crm", "users", "transient")  # the CRM is away as the pass begins

    failed = world.sync("mail")
    shown = history.run_detail(world.services, "t1", world.connection.id, failed["id"])
    after = world.sync("mail")

    assert failed["status"] == "failed"
    assert shown["messages"] == ["The CRM did not answer in time; the next sync tries again."]
    assert after["counts"] == {"mail": {"record": 1}}


def test_EML5_EML4_a_pass_that_dies_while_filing_keeps_the_choice_and_the_next_files_it_once(
    world: SyncWorld,
) -> None:
    world.record_mail()
    first, second = missing(world, "Intro", "i-3@x"), missing(world, "Terms", "t-3@x")
    contact, lead = ann(world), bob(world)
    file(world, [first, second], [f"contact/{contact}", f"lead/{lead}"])

    world.crash_after(2)  # the first message is in both histories, then the worker dies
    assert world.sync("mail")["status"] == "crashed"
    assert len(world.store.filings(world.connection.id, 10)) == 1
    world.fail("crm", "create", "transient")  # and the CRM is away for the next pass
    stopped = world.sync("mail")
    assert stopped["status"] == "partial"
    after = world.sync("mail")

    assert after["status"] == "ok"
    for kind, record in (("contact", contact), ("lead", lead)):
        subjects = sorted(i["subject"] for i in world.crm.history(kind, record))
        assert subjects == ["Intro", "Terms"], kind
    assert world.store.filings(world.connection.id, 10) == []


@pytest.mark.parametrize(
    ("messages", "records", "reason"),
    [
        ([], ["contact/c1"], "no message was chosen"),
        (["m1"], [], "no record was chosen"),
        ([f"m{n}" for n in range(26)], ["contact/c1"], "26 messages were chosen"),
        (["m1"], [f"contact/c{n}" for n in range(11)], "11 records were chosen"),
        (["m1"], ["account/a1"], "'account/a1' is no CRM contact or lead"),
        (["m1"], ["contact/"], "'contact/' is no CRM contact or lead"),
    ],
)
def test_EML5_a_choice_that_cannot_be_filed_is_refused_with_its_reason_and_kept_nowhere(
    world: SyncWorld, messages: list[str], records: list[str], reason: str
) -> None:
    world.record_mail()

    with pytest.raises(service.Refused) as refused:
        file(world, messages, records)

    assert (refused.value.status, refused.value.reason) == (400, reason)
    assert world.store.filings(world.connection.id, 10) == []


def test_EML5_a_connection_that_records_no_mail_has_no_filing(world: SyncWorld) -> None:
    with pytest.raises(service.Refused) as refused:
        file(world, ["m1"], ["contact/c1"])

    assert refused.value.status == 404


def test_EML5_the_page_lists_the_waiting_and_the_recorded_messages_newest_first(
    world: SyncWorld,
) -> None:
    world.record_mail()
    ann(world)
    older, newer = missing(world, "Intro", "i-5@x"), missing(world, "Terms", "t-5@x")
    recorded = tagged(world, ANN, "Offer", "o-5@x")
    world.sync("mail")
    tenant, connection = world.connection.tenant, world.connection.id

    shown = mail.choices(world.services, tenant, connection)

    assert [m["id"] for m in shown["waiting"]] == [newer, older]
    assert [(m["subject"], m["sender"]) for m in shown["waiting"]] == [
        ("Terms", "Stranger <stranger@elsewhere.example>"),
        ("Intro", "Stranger <stranger@elsewhere.example>"),
    ]
    assert [m["id"] for m in shown["recorded"]] == [recorded]
    assert (shown["found"], shown["pending"]) == ([], 0)
    file(world, [older], ["contact/c-x"])
    assert mail.choices(world.services, tenant, connection)["pending"] == 1


def test_EML2_the_largest_attachment_kept_is_the_tenants_to_set_up_to_25_mb() -> None:
    world = SyncWorld()
    with pytest.raises(SettingsError):
        world.settings(attachment_mb=5)  # a user's layer never holds it
    for bad in (-1, 26, "5", True, 2.5):
        with pytest.raises(SettingsError):
            resolve("google", {"attachment_mb": bad})
    assert resolve("google", {"attachment_mb": 0})["attachment_mb"] == 0
    assert resolve("google", {})["attachment_mb"] is None  # the deployment's 25 MB
