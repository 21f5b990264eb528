"""SyncWorld with its provider side as the Google sandbox behind crmsync's Google
adapters: whole sync cycles between a CRM and Google Calendar, Contacts and Tasks over
real sockets, with failures answered over HTTP and crashes after real write requests
(CAL-1, CON-2, TSK-1, SYN-4, SYN-5, AUTH-3, BEY-5), and push notifications that
trigger cycles (RUN-3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from werkzeug.serving import make_server

from crmsync.connections import Grants
from crmsync.providers.google.account import GoogleAccount
from crmsync.providers.google.calendar import GoogleCalendar
from crmsync.providers.google.push import on_notification, open_channel
from crmsync.queue.inline import InlineQueue
from crmsync.testing import SyncWorld
from crmsync.testing.google import GoogleProviderHandle
from sandbox.google.calendar import calendar_events
from sandbox.google.people import get_contact
from sandbox.google.tasks import stored_tasks

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
MEETING = {
    "type": "meeting",
    "subject": "Kickoff",
    "start": START,
    "end": START + timedelta(hours=1),
    "timezone": "Europe/Berlin",
    "location": "Room 4",
}
ADA = {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@example.com"]}
A_TO_DO = {"subject": "Call Bob", "due": date(2026, 11, 5), "notes": "about the renewal"}


@pytest.fixture
def world() -> Iterator[SyncWorld]:
    world = SyncWorld(provider="google", provider_backend="google-sandbox")
    yield world
    world.close()


def google(world: SyncWorld) -> GoogleProviderHandle:
    assert isinstance(world.provider, GoogleProviderHandle)
    return world.provider


def twin(world: SyncWorld, kind: str, crm_id: str) -> str:
    [provider_id] = [ln["provider_id"] for ln in world.links(kind) if ln["crm_id"] == crm_id]  # type: ignore[arg-type]
    return str(provider_id)


def sync_until_quiet(world: SyncWorld, limit: int = 5) -> None:
    for _ in range(limit):
        run = world.sync()
        if run["status"] == "ok" and not run["counts"]:
            return
    raise AssertionError(f"still not quiet after {limit} cycles: {run}")


def only(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, records
    return records[0]


# -- BEY-5: the scenarios run against Google's real API clients ---------------------------
def test_BEY5_the_provider_side_is_the_google_sandbox_behind_the_production_adapters(
    world: SyncWorld,
) -> None:
    world.crm.create("activity", MEETING)

    assert isinstance(world.provider_account(), GoogleAccount)
    assert world.sync()["status"] == "ok"

    [stored] = calendar_events(google(world).sandbox, google(world).email)
    assert (stored["summary"], stored["location"]) == ("Kickoff", "Room 4")
    assert world.faults.writes == 1  # the one insert, counted by the client's hook


def test_BEY5_a_microsoft_world_cannot_ask_for_the_google_sandbox() -> None:
    with pytest.raises(ValueError, match="Google worlds only"):
        SyncWorld(provider="microsoft", provider_backend="google-sandbox")


# -- CAL-1, CON-2, TSK-1: CRM records reach Google and come back edited ----------------------
def test_CAL1_crm_meeting_reaches_google_calendar_and_comes_back_edited(
    world: SyncWorld,
) -> None:
    crm_id = world.crm.create("activity", MEETING)
    world.sync()
    event_id = twin(world, "activity", crm_id)
    event = world.provider.get("activity", event_id)
    assert event is not None
    assert (event["subject"], event["start"], event["timezone"]) == (
        "Kickoff",
        START,
        "Europe/Berlin",
    )

    world.advance(timedelta(minutes=15))
    world.provider.update("activity", event_id, {"location": "Room 9", "notes": "agenda"})
    world.sync()

    back = world.crm.get("activity", crm_id)
    assert back is not None
    assert (back["location"], back["notes"]) == ("Room 9", "agenda")
    sync_until_quiet(world)


def test_CON2_contact_in_the_sync_group_reaches_google_under_the_label_and_comes_back_edited(
    world: SyncWorld,
) -> None:
    crm_id = world.crm.create("contact", ADA)
    world.crm.add_to_sync_group(crm_id)
    world.sync()
    person = twin(world, "contact", crm_id)
    assert world.provider.labelled() == [person]
    stored = get_contact(google(world).sandbox, google(world).email, person)
    assert stored is not None
    assert stored["emailAddresses"][0]["value"] == "ada@example.com"

    world.advance(timedelta(minutes=15))
    world.provider.update("contact", person, {"title": "Countess", "company": "Engines"})
    world.sync()

    back = world.crm.get("contact", crm_id)
    assert back is not None
    assert (back["title"], back["company"]) == ("Countess", "Engines")
    sync_until_quiet(world)


def test_TSK1_crm_todo_reaches_google_tasks_and_comes_back_edited(world: SyncWorld) -> None:
    crm_id = world.crm.create("todo", A_TO_DO)
    world.sync()
    task_id = twin(world, "todo", crm_id)
    [stored] = stored_tasks(google(world).sandbox, google(world).email)
    assert (stored["id"], stored["title"], stored["due"]) == (
        task_id,
        "Call Bob",
        "2026-11-05T00:00:00.000Z",
    )

    world.advance(timedelta(minutes=15))
    world.provider.update("todo", task_id, {"subject": "Call Bob today", "status": "completed"})
    world.sync()

    back = world.crm.get("todo", crm_id)
    assert back is not None
    assert (back["subject"], back["status"]) == ("Call Bob today", "completed")
    sync_until_quiet(world)


# -- SYN-4: a process killed after any write converges without duplicates -------------------
def scenario() -> SyncWorld:
    world = SyncWorld(provider="google", provider_backend="google-sandbox")
    contact = world.crm.create("contact", ADA)
    world.crm.add_to_sync_group(contact)
    world.crm.create("activity", MEETING)
    world.crm.create("todo", A_TO_DO)
    world.provider.create("activity", {**MEETING, "subject": "From Google"})
    return world


def holdings(world: SyncWorld) -> dict[str, list[str]]:
    """What each side holds, by kind: contact e-mails and subjects, sorted."""
    out: dict[str, list[str]] = {}
    for side, handle in (("crm", world.crm), ("provider", world.provider)):
        out[f"{side} contact"] = sorted(c["emails"][0] for c in handle.all("contact"))
        for kind in ("activity", "todo"):
            out[f"{side} {kind}"] = sorted(r["subject"] for r in handle.all(kind))  # type: ignore[arg-type]
    return out


EXPECTED = {
    "crm contact": ["ada@example.com"],
    "crm activity": ["From Google", "Kickoff"],
    "crm todo": ["Call Bob"],
    "provider contact": ["ada@example.com"],
    "provider activity": ["From Google", "Kickoff"],
    "provider todo": ["Call Bob"],
}


def test_SYN4_a_run_killed_after_any_google_write_converges_without_duplicates() -> None:
    clean = scenario()
    clean.sync()
    writes = clean.faults.writes
    clean.close()
    assert writes >= 4  # the label group, the contact, the event, the task

    for n in range(1, writes + 1):
        world = scenario()
        try:
            world.crash_after(n)
            assert world.sync()["status"] == "crashed", f"no crash after write {n}"
            sync_until_quiet(world)
            assert holdings(world) == EXPECTED, f"after a crash at write {n}"
            links = [ln for kind in ("contact", "activity", "todo") for ln in world.links(kind)]  # type: ignore[arg-type]
            assert len(links) == 4 and {ln["state"] for ln in links} == {"linked"}
            [contact] = world.links("contact")
            assert world.provider.labelled() == [contact["provider_id"]]
        finally:
            world.close()


# -- SYN-5: a failure answered by Google fails the run partly; the next run completes -------
def test_SYN5_a_503_from_google_makes_the_run_partial_and_the_next_run_completes(
    world: SyncWorld,
) -> None:
    world.crm.create("activity", MEETING)
    world.crm.create("todo", A_TO_DO)
    world.fail("provider", "create", "transient")

    run = world.sync()

    assert run["status"] == "partial"
    [failed] = [i for i in world.history() if i["outcome"] == "fail"]
    assert "HTTP 503" in f"{failed.get('reason')} {failed.get('error')}"
    assert len(world.provider.all("activity")) + len(world.provider.all("todo")) == 1

    assert world.sync()["status"] == "ok"
    assert only(world.provider.all("activity"))["subject"] == "Kickoff"
    assert only(world.provider.all("todo"))["subject"] == "Call Bob"
    sync_until_quiet(world)


def test_SYN5_a_failure_no_request_took_waits_for_the_next_run(world: SyncWorld) -> None:
    world.fail("provider", "delete", "transient")
    assert world.sync()["status"] == "ok"  # nothing to delete: the failure is kept

    crm_id = world.crm.create("activity", MEETING)
    world.sync()
    world.crm.delete("activity", crm_id)

    assert world.sync()["status"] == "partial"
    assert len(world.provider.all("activity")) == 1
    world.sync()
    assert world.provider.all("activity") == []


# -- AUTH-3: a grant Google no longer honours ---------------------------------------------------
def test_AUTH3_a_revoked_google_grant_makes_the_run_need_reauthorisation(
    world: SyncWorld,
) -> None:
    world.crm.create("activity", MEETING)
    world.fail("provider", "changes", "revoked")

    run = world.sync()

    assert run["status"] == "needs_reauth"
    assert any("GrantRevoked" in error for error in run["errors"])
    assert world.provider.all("activity") == []
    assert world.sync()["status"] == "skipped"  # parked until the user reconnects
    world.reconnect()
    assert world.sync()["status"] == "ok"  # reconnected: the run goes through
    assert len(world.provider.all("activity")) == 1


def test_RUN3_a_change_in_google_pushes_a_notification_that_runs_a_cycle(
    world: SyncWorld,
) -> None:
    """The whole push path: a channel on the user's calendar, Google's notification to
    crmsync's webhook, one debounced cycle enqueued, and that cycle syncing the change."""
    side = world._google
    assert side is not None
    queue = InlineQueue()
    notified = threading.Event()

    def webhook(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = {
            key[5:].replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        answer = on_notification(headers, world.store, queue, world.now())
        if answer.status == 202:
            notified.set()
        start_response(f"{answer.status} {answer.reason}", [("Content-Length", "0")])
        return [b""]

    server = make_server("127.0.0.1", 0, webhook, threaded=True)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        calendar = GoogleCalendar(side.client(side.token))
        open_channel(
            calendar,
            world.store,
            "t1",
            world.connection.id,
            f"http://127.0.0.1:{server.port}/google",
        )
        world.sync()  # the first cycle: nothing yet
        world.provider.create("activity", {k: v for k, v in MEETING.items() if k != "type"})
        assert notified.wait(5), "no notification reached the webhook"
    finally:
        server.shutdown()
        server.server_close()

    world.advance(timedelta(seconds=30))
    (due,) = queue.due(world.now())
    assert (due.connection, due.trigger) == (world.connection.id, "push")
    run = world.sync(trigger=due.trigger)
    assert run["trigger"] == "push"
    assert [a["subject"] for a in world.crm.all("activity")] == ["Kickoff"]


def test_CON2_new_crm_contacts_reach_google_in_one_batch_request(
    world: SyncWorld, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(5):
        contact = world.crm.create(
            "contact", {"first_name": f"P{n}", "last_name": "Batch", "emails": [f"p{n}@x.org"]}
        )
        world.crm.add_to_sync_group(contact)
    caplog.set_level("INFO", logger="crmsync.providers.google")

    assert world.sync()["status"] == "ok"

    sent = [r.call for r in caplog.records if r.getMessage() == "google request"]  # type: ignore[attr-defined]
    assert sent.count("people batchCreateContacts") == 1
    assert "people createContact" not in sent and "people searchContacts" not in sent
    names = sorted(c["first_name"] for c in world.provider.all("contact"))
    assert names == [f"P{n}" for n in range(5)]
    assert len(world.links("contact")) == 5


def test_CAL9_an_occurrence_moved_in_google_reaches_the_crm_and_stays_moved_once(
    world: SyncWorld,
) -> None:
    series_start = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)  # a Tuesday
    crm_id = world.crm.create(
        "activity",
        {
            **MEETING,
            "subject": "Weekly",
            "start": series_start,
            "end": series_start + timedelta(hours=1),
            "timezone": "UTC",
            "recurrence": "RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=4",
        },
    )
    sync_until_quiet(world)
    series = twin(world, "activity", crm_id)
    events = google(world)._service("calendar").events()
    moved = {
        "start": {"dateTime": "2026-11-11T14:00:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-11T15:00:00Z", "timeZone": "UTC"},
    }
    events.patch(calendarId="primary", eventId=f"{series}_20261110T090000Z", body=moved).execute()
    sync_until_quiet(world)

    rule = world.crm.get("activity", crm_id)["recurrence"]  # type: ignore[index]
    assert rule.splitlines()[1:] == ["EXDATE:20261110T090000Z", "RDATE:20261111T140000Z"]

    world.crm.update("activity", crm_id, {"subject": "Weekly sync"})
    sync_until_quiet(world)

    listed = events.instances(calendarId="primary", eventId=series).execute()["items"]
    starts = [i["start"]["dateTime"] for i in listed if i["status"] != "cancelled"]
    assert starts.count("2026-11-11T14:00:00Z") == 1
    assert "2026-11-10T09:00:00Z" not in starts and len(starts) == 4
    # the moved occurrence is an event of its own in Google: it keeps what it had
    kept = {i["summary"] for i in listed if i["start"]["dateTime"] != "2026-11-11T14:00:00Z"}
    assert kept == {"Weekly sync"}


def test_AUTH3_a_google_world_syncs_with_the_grant_the_vault_keeps_as_the_worker_does(
    world: SyncWorld,
) -> None:
    crm_id = world.crm.create("activity", {"subject": "Planning", "start": START})
    assert world.sync()["status"] == "ok"
    assert twin(world, "activity", crm_id)
    grants = Grants(world.store, world.services.vault, world.connection.tenant)
    kept = grants.load(world.connection.id)

    grants.save(world.connection.id, replace(kept, access_token="a-token-google-never-issued"))
    world.crm.update("activity", crm_id, {"subject": "Planning, moved"})
    run = world.sync()

    assert run["status"] == "needs_reauth"  # the cycle used the vault's grant, not its own
    assert world.store.connection_record(world.connection.id)["status"] == "needs_reauth"


def test_SYN1_custom_fields_sync_as_user_defined_entries_and_shared_event_properties() -> None:
    stages = {"lead": "Prospect", "customer": "Client"}
    mapping = {
        "contact": {"industry": {"provider": "Industry"}},
        "activity": {"stage": {"provider": "Stage", "transform": {"enum": stages}}},
    }
    world = SyncWorld(
        provider="google", provider_backend="google-sandbox", tenant={"custom_fields": mapping}
    )
    try:
        world.crm.declare_custom_field("contact", "industry")
        world.crm.declare_custom_field("activity", "stage", "enum", values=("lead", "customer"))
        contact_id = world.crm.create("contact", {**ADA, "custom": {"industry": "Shipping"}})
        world.crm.add_to_sync_group(contact_id)
        meeting_id = world.crm.create("activity", {**MEETING, "custom": {"stage": "customer"}})
        world.sync()

        person = get_contact(
            google(world).sandbox, google(world).email, twin(world, "contact", contact_id)
        )
        assert person is not None
        assert [(e["key"], e["value"]) for e in person["userDefined"]] == [("Industry", "Shipping")]
        event_id = twin(world, "activity", meeting_id)
        [event] = [
            e
            for e in calendar_events(google(world).sandbox, google(world).email)
            if e["id"] == event_id
        ]
        assert event["extendedProperties"]["shared"] == {"Stage": "Client"}

        world.provider.update("activity", event_id, {"custom": {"Stage": "Prospect"}})
        world.sync()
        record = world.crm.get("activity", meeting_id)
        assert record is not None and record["custom"] == {"stage": "lead"}
    finally:
        world.close()
