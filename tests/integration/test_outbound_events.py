"""BEY-7: the outbound event stream tells the CRM what was synced, which changes wait
for the user, and which connections need re-authorization. The functions run on a real
socket over the memory store (events kept in memory); the Pub/Sub adapter is tested
against Google's Pub/Sub emulator, with the subscription filters a tenant's system
uses."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.logs import configure_logging
from crmsync.outbound import MemoryEvents, PubSubEvents, cycle_events, encode
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import oauth as google_oauth
from sandbox.google.calendar import push_delivered
from sandbox.local.stack import DEMO_USERS, LocalStack

pytestmark = pytest.mark.integration

CONNECTION = "google-u1"
NOTHING_NEW = {"new": False, "modified": False, "deleted": False}


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    yield stack
    stack.close()


def events_of(stack: LocalStack) -> MemoryEvents:
    assert isinstance(stack.events, MemoryEvents)
    return stack.events


def drain(stack: LocalStack) -> list[dict[str, Any]]:
    """Every queued cycle through the sync_worker function, as Cloud Tasks would."""
    assert isinstance(stack.queue, InlineQueue)
    answers = []
    for _ in range(10):
        assert push_delivered(stack.google)
        due = stack.queue.due(datetime(9999, 1, 1, tzinfo=UTC))
        if not due:
            break
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]  # ran early
            body = {"tenant": task.tenant, "connection": task.connection, "trigger": task.trigger}
            answer = requests.post(stack.functions_url + "/sync_worker", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
    return answers


def connect(stack: LocalStack, **settings: Any) -> None:
    stack.create_demo_tenant(**settings)
    answer = stack.connect("u1")
    assert answer.status_code == 200, answer.text


def test_BEY7_connecting_and_a_cycle_tell_the_crm_what_was_synced(stack: LocalStack) -> None:
    connect(stack)
    run = drain(stack)[0]  # the first cycle (our own writes may push a no-op one after it)
    ada = next(r for r in stack.crm.all(DEMO_TENANT, "contact") if r["last_name"] == "Lovelace")
    assert "Ada Lovelace" in stack.google_contact_names()  # the CRM's contact reached Google

    events = events_of(stack)
    [connected] = events.of_type("connection.connected")
    assert (connected["tenant"], connected["connection"], connected["user"]) == (
        DEMO_TENANT,
        CONNECTION,
        "u1",
    )
    assert connected["data"]["services"] == ["sync"] and not connected["data"]["reconnected"]
    [finished] = [e for e in events.of_type("cycle.finished") if e["data"]["run"] == run["run"]]
    assert finished["data"]["status"] == "ok" and finished["data"]["trigger"] == "connect"
    created = [i for i in finished["data"]["items"] if i["crm_id"] == str(ada["id"])]
    assert [(i["kind"], i["outcome"]) for i in created] == [("contact", "create")]
    assert created[0]["provider_id"]  # and the Google contact it became
    stored = stack.services.backend.store(DEMO_TENANT)
    [kept] = [r for r in stored.runs(CONNECTION) if r["id"] == run["run"]]
    assert finished["data"]["counts"] == kept["counts"]  # the stream agrees with HIS-1
    assert events.of_type("conflict.waiting") == []


def test_BEY7_events_carry_ids_and_field_names_never_values_or_tokens(stack: LocalStack) -> None:
    connect(stack)
    drain(stack)
    text = json.dumps(events_of(stack).events)
    never = ["Sales stand-up", "Lovelace", "ada@acme.example", *stack.google.access_tokens]
    assert [word for word in never if word in text] == []
    assert DEMO_USERS["u1"] not in text  # nor the Google account's address


def test_BEY7_changes_waiting_for_the_user_are_announced_once_each(stack: LocalStack) -> None:
    connect(stack, confirm={**NOTHING_NEW, "new": True})  # SET-5: ask before new items
    drain(stack)
    waiting = events_of(stack).of_type("conflict.waiting")
    queued = stack.services.backend.store(DEMO_TENANT).queue(CONNECTION)
    assert queued, "the tenant asks before new items, so the first cycle holds them"
    assert sorted(e["data"]["kind"] for e in waiting) == sorted(i["kind"] for i in queued)
    assert len({e["id"] for e in waiting}) == len(waiting)

    service.sync_now(stack.services, DEMO_TENANT, CONNECTION)
    drain(stack)  # the same changes still wait: nothing announced again
    assert len(events_of(stack).of_type("conflict.waiting")) == len(waiting)


def test_BEY7_a_revoked_grant_is_announced_as_needs_reauth(stack: LocalStack) -> None:
    connect(stack)
    drain(stack)
    google_oauth.revoke_all(stack.google, DEMO_USERS["u1"])
    google_oauth.expire_access_tokens(stack.google, DEMO_USERS["u1"])
    service.sync_now(stack.services, DEMO_TENANT, CONNECTION)
    drain(stack)

    [reauth] = events_of(stack).of_type("connection.needs_reauth")
    assert (reauth["tenant"], reauth["connection"], reauth["user"]) == (
        DEMO_TENANT,
        CONNECTION,
        "u1",
    )


def test_BEY7_a_disconnect_is_announced(stack: LocalStack) -> None:
    connect(stack)
    drain(stack)
    service.disconnect(stack.services, DEMO_TENANT, CONNECTION)
    [gone] = events_of(stack).of_type("connection.disconnected")
    assert gone["connection"] == CONNECTION and gone["data"]["provider"] == "google"


class Down:
    """An event stream whose every publish fails (Pub/Sub unreachable)."""

    def __init__(self) -> None:
        self.tried = 0

    def publish(self, event: Mapping[str, Any]) -> None:
        self.tried += 1
        raise TimeoutError("publish timed out")


def test_BEY7_a_stream_that_is_down_never_fails_a_cycle_and_is_logged_without_content() -> None:
    down = Down()
    stack = LocalStack(MemoryBackend(), InlineQueue(), events=down)
    captured = io.StringIO()
    handler = configure_logging(captured)
    try:
        connect(stack)
        run = drain(stack)[0]
        names = stack.google_contact_names()
    finally:
        logging.getLogger("crmsync").removeHandler(handler)
        logging.getLogger("crmsync").propagate = True
        stack.close()
    assert run["status"] == "ok" and down.tried >= 2  # connected, and the cycle's
    assert "Ada Lovelace" in names  # the cycle did its work
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    dropped = [e for e in lines if e["message"] == "event not published"]
    assert {e["event_type"] for e in dropped} == {"connection.connected", "cycle.finished"}
    assert all(e["error"] == "TimeoutError" for e in dropped)


# -- the Pub/Sub adapter, on Google's emulator ----------------------------------------------
def subscription(project: str, topic: str, name: str) -> str:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(project, name)
    subscriber.create_subscription(request={"name": path, "topic": topic})
    return path


def pull(path: str, wanted: int) -> list[Any]:
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < wanted and time.monotonic() < deadline:
        answer = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=5)
        got += [m.message for m in answer.received_messages]
        if answer.received_messages:
            ids = [m.ack_id for m in answer.received_messages]
            subscriber.acknowledge(request={"subscription": path, "ack_ids": ids})
    return got


def sample_run(tenant: str, run_id: str) -> list[dict[str, Any]]:
    now = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    run = {"id": run_id, "status": "ok", "trigger": "crm", "started": now, "ended": now}
    run["counts"] = {"contact": {"update": 1}}
    item = {"kind": "contact", "outcome": "update", "direction": "crm_to_provider"}
    return cycle_events(tenant, "google-u1", "u1", run, [{**item, "crm_id": "7", "fields": []}])


def test_BEY7_events_reach_pubsub_with_the_attributes_subscriptions_filter_on(
    pubsub_emulator: Any,
) -> None:
    """Each message carries its tenant, type, connection and event id as attributes, so a
    tenant's push subscription filters on `attributes.tenant` (Terraform's
    event_subscriptions); the emulator does not apply filters, so the attributes are
    what is checked here."""
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(pubsub_emulator.project, f"sync-events-{time.monotonic_ns()}")
    publisher.create_topic(request={"name": topic})
    everything = subscription(pubsub_emulator.project, topic, f"all-{time.monotonic_ns()}")
    stream = PubSubEvents(topic)  # the real client, built on first publish

    for event in sample_run("acme", "run-1") + sample_run("globex", "run-2"):
        stream.publish(event)

    messages = sorted(pull(everything, 2), key=lambda m: m.attributes["tenant"])
    assert [dict(m.attributes) for m in messages] == [
        {
            "tenant": tenant,
            "type": "cycle.finished",
            "connection": "google-u1",
            "event_id": f"{run}/finished",
        }
        for tenant, run in (("acme", "run-1"), ("globex", "run-2"))
    ]
    body = json.loads(messages[0].data)
    assert body["data"]["items"][0]["crm_id"] == "7" and body["version"] == 1
    assert body["tenant"] == "acme" and body["data"]["counts"] == {"contact": {"update": 1}}


def test_BEY7_the_topic_must_be_a_topic_path() -> None:
    with pytest.raises(ValueError, match="topic path"):
        PubSubEvents("sync-events")
    stamped = encode({"at": datetime(2026, 1, 1, tzinfo=UTC)})
    assert stamped == b'{"at": "2026-01-01T00:00:00+00:00"}'


def test_BEY7_a_grant_revoked_under_a_mail_pass_is_announced_as_needs_reauth(
    stack: LocalStack,
) -> None:
    """A connection that records mail only finds out in a mail pass that its user took
    the grant back: the CRM hears of it as it would of a sync cycle's, once."""
    stack.create_demo_tenant()
    assert stack.connect("u1", services="mail").status_code == 200
    drain(stack)
    connection = service.connection_of(stack.services.backend.store(DEMO_TENANT), CONNECTION)
    assert connection is not None and connection.records_mail
    google_oauth.revoke_all(stack.google, DEMO_USERS["u1"])
    google_oauth.expire_access_tokens(stack.google, DEMO_USERS["u1"])
    service.enqueue_cycle(stack.services, DEMO_TENANT, CONNECTION, "mail")
    [run] = drain(stack)
    assert run["status"] == "needs_reauth"

    [reauth] = events_of(stack).of_type("connection.needs_reauth")
    assert (reauth["tenant"], reauth["connection"], reauth["user"]) == (
        DEMO_TENANT,
        CONNECTION,
        "u1",
    )
    assert reauth["data"]["run"] == run["run"]
    assert events_of(stack).of_type("cycle.finished") == []  # no sync cycle ran
