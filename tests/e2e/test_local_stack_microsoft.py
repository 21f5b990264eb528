"""End to end over the local stack with the demo user u2 on Microsoft 365: Firestore is
Google's emulator, cycles travel through the Cloud Tasks emulator to the sync_worker
function, the CRM is the reference CRM and Microsoft the sandbox over https (its CA
made at start), whose change notifications the stack delivers every second as Graph
does. One stack serves the module: u2 connects once, through msal and the sandbox's
consent page (AUTH-2), and the tests after it use that connection.

Outlook → Graph notification → graph_webhook → task → worker → the CRM (RUN-3, with no
fan-out ever called); the CRM → signed event → crm_events → task → worker → Outlook."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from crmsync import service
from crmsync.store.firestore import FirestoreBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.cloud_tasks import start_cloud_tasks
from sandbox.local.emulators import Emulator
from sandbox.local.stack import LocalStack, through_cloud_tasks
from sandbox.microsoft import mail as outlook_mail
from tests.e2e.test_local_stack import E2E_DEBOUNCE, eventually

pytestmark = pytest.mark.integration

CONNECTION = "microsoft-u2"
MAX = "max.manager@demo.example"


@pytest.fixture(scope="module")
def stack(firestore_emulator: Emulator) -> Iterator[LocalStack]:
    """The local stack on the emulators with u2 connected through Microsoft, once for
    the module; every Graph answer the sandbox gave held Graph's schema."""
    firestore_emulator.reset()
    client = firestore.Client(project=firestore_emulator.project)
    tasks = start_cloud_tasks()
    local = through_cloud_tasks(FirestoreBackend(client), tasks.host, debounce=E2E_DEBOUNCE)
    try:
        local.create_demo_tenant()
        page = local.connect("u2", provider="microsoft")
        assert page.status_code == 200, page.text
        eventually(lambda: finished(local), what="u2's first cycle")
        yield local
    finally:
        local.close()
        tasks.stop()
        client.close()
    assert not local.microsoft.drift, local.microsoft.drift


def finished(stack: LocalStack) -> list[dict[str, Any]]:
    runs = stack.services.backend.store(DEMO_TENANT).runs(CONNECTION)
    return [r for r in runs if r["status"] != "running"]


def outlook_contacts(stack: LocalStack) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = stack.outlook("GET", "me/contacts")["value"]
    return listed


def the_run(stack: LocalStack, holds: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((r for r in finished(stack) if holds(r)), None)


def test_AUTH2_RUN5_u2_connects_through_microsoft_and_graph_notifies_the_local_webhook(
    stack: LocalStack,
) -> None:
    record = stack.services.backend.store(DEMO_TENANT).connection_record(CONNECTION)
    assert record is not None
    user = stack.microsoft.users[MAX]
    assert (record["provider"], record["account"]) == ("microsoft", MAX)
    assert record["subject"] == f"{stack.microsoft.tenant_id}/{user.oid}"  # bound: tid/oid
    subscriptions = stack.outlook("GET", "subscriptions")["value"]
    assert len(subscriptions) == 3  # contacts, the calendar, To Do (RUN-5)
    webhook = stack.functions_url + "/graph_webhook"
    assert {s["notificationUrl"] for s in subscriptions} == {webhook}
    [first] = finished(stack)
    assert (first["trigger"], first["status"]) == ("connect", "ok"), first
    # CON-2: the contact of u2's sync group is in Outlook, with the CRM category
    [alan] = [c for c in outlook_contacts(stack) if c.get("surname") == "Turing"]
    assert alan["categories"] == ["CRM"]


def test_RUN3_a_contact_and_an_event_made_in_u2s_outlook_reach_the_crm_by_a_push_cycle(
    stack: LocalStack,
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    stack.outlook(
        "POST",
        "me/contacts",
        json={"givenName": "Katherine", "surname": "Johnson", "categories": ["CRM"]},
    )
    stack.outlook(
        "POST",
        "me/events",
        json={
            "subject": "Lunch with Alan",
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {
                "dateTime": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}",
                "timeZone": "UTC",
            },
        },
    )

    def in_crm() -> bool:
        contacts = [c["last_name"] for c in stack.crm.all(DEMO_TENANT, "contact")]
        activities = [a["subject"] for a in stack.crm.all(DEMO_TENANT, "activity")]
        return "Johnson" in contacts and "Lunch with Alan" in activities

    eventually(in_crm, what="Outlook's new contact and event in the CRM")

    def brought(run: dict[str, Any]) -> bool:
        counts = run.get("counts") or {}
        return "create" in counts.get("contact", {}) and "create" in counts.get("activity", {})

    made = eventually(  # the records are in before the cycle has finished
        lambda: the_run(stack, lambda r: r["trigger"] != "connect" and brought(r)),
        what="the cycle that brought them",
    )
    assert made["trigger"] == "push", finished(stack)  # Graph's notification, not a fan-out
    assert {r["trigger"] for r in finished(stack)} == {"connect", "push"}  # no fan-out ran


def test_RUN3_a_crm_change_for_u2_reaches_u2s_outlook_through_crm_events_and_the_worker(
    stack: LocalStack,
) -> None:
    [alan] = [c for c in stack.crm.all(DEMO_TENANT, "contact") if c["last_name"] == "Turing"]
    stack.crm.update(DEMO_TENANT, "contact", alan["id"], {"title": "Chief Scientist"})

    assert stack.post_event("u2", "contact", [alan["id"]]).status_code == 202

    def titled() -> bool:
        found = [c for c in outlook_contacts(stack) if c.get("surname") == "Turing"]
        return [c.get("jobTitle") for c in found] == ["Chief Scientist"]

    eventually(titled, what="Alan's new title in u2's Outlook")
    eventually(
        lambda: the_run(stack, lambda r: r["trigger"] == "crm" and r["status"] == "ok"),
        what="the crm cycle's end",
    )


def test_EML1_EML2_a_message_tagged_in_outlook_is_recorded_in_the_crm_through_graph(
    stack: LocalStack,
) -> None:
    """u2 adds the mail service: crmsync makes its three categories and subscribes to
    u2's messages; a message from Ada categorised "CRM/Send To CRM" in Outlook wakes a
    mail pass through Graph's notification, graph_webhook, Cloud Tasks and the worker,
    and lands once in Ada's CRM history, the message then categorised "CRM/Recorded"."""
    assert stack.connect("u2", provider="microsoft", services="mail").status_code == 200
    store = stack.services.backend.store(DEMO_TENANT)

    def watched() -> bool:
        record = service.connection_of(store, CONNECTION)
        return record is not None and record.mail_watch_until is not None

    eventually(watched, what="the first mail pass's categories and subscription")
    raw = (
        b"From: Ada Lovelace <ada@acme.example>\r\nTo: Max Manager <max.manager@demo.example>\r\n"
        b"Subject: Analytical engine\r\nMessage-ID: <engine-2@acme.example>\r\n\r\n"
        b"The order for the engine.\r\n"
    )
    sent = outlook_mail.deliver(stack.microsoft, MAX, raw)

    outlook_mail.set_categories(stack.microsoft, MAX, sent, ["CRM/Send To CRM"])

    ada = next(
        c["id"] for c in stack.crm.all(DEMO_TENANT, "contact") if c["last_name"] == "Lovelace"
    )

    def recorded() -> list[dict[str, Any]]:
        held = stack.crm.history(DEMO_TENANT, "contact", ada)
        return [i for i in held if i["subject"] == "Analytical engine"]

    [item] = eventually(recorded, what="the message in Ada's history")
    assert item["body"] == "The order for the engine."

    def categories() -> list[str]:
        found: list[str] = stack.outlook("GET", f"me/messages/{sent}", user="u2")["categories"]
        return found

    eventually(lambda: categories() == ["CRM/Recorded"], what="the message categorised Recorded")
