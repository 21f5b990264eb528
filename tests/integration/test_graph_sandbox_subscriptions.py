"""Change notifications in the Graph sandbox over https (RUN-3, RUN-5): the validation
handshake against a loopback receiver, maximum lifetimes per resource, renewal, deletion,
notifications for events, contacts and To Do tasks, and lifecycle events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sandbox.microsoft import subscriptions
from sandbox.microsoft.core import graph_time
from sandbox.microsoft.subscriptions import flush, lifecycle
from tests.integration.microsoft_sandbox import Graph, Receiver, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.close()


def later(graph: Graph, minutes: int) -> str:
    return graph_time(graph.clock.now + timedelta(minutes=minutes))


def subscribe(
    graph: Graph, receiver: Receiver, resource: str = "me/events", minutes: int = 4000, **more: Any
) -> Any:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url,
        "lifecycleNotificationUrl": receiver.lifecycle_url,
        "resource": resource,
        "expirationDateTime": later(graph, minutes),
        "clientState": "s3cret",
        **more,
    }
    return graph.post("subscriptions", body)


def add_event(graph: Graph) -> dict[str, Any]:
    body = {
        "subject": "Review",
        "start": {"dateTime": "2026-03-03T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-03-03T11:00:00", "timeZone": "UTC"},
    }
    created: dict[str, Any] = graph.ok(graph.post("me/events", body), 201)
    return created


def test_RUN3_creating_a_subscription_validates_both_urls_with_a_token_echo(
    graph: Graph, receiver: Receiver
) -> None:
    made = graph.ok(subscribe(graph, receiver), 201)

    assert len(receiver.validations) == 2
    assert all(t.startswith("Validation: ") for t in receiver.validations)
    assert made["resource"] == "me/events" and made["clientState"] == "s3cret"
    assert made["changeType"] == "created,updated,deleted"
    assert made["lifecycleNotificationUrl"] == receiver.lifecycle_url


def test_RUN3_an_endpoint_that_echoes_the_wrong_token_fails_the_subscription(
    graph: Graph, receiver: Receiver
) -> None:
    receiver.mode = "wrong"

    answer = subscribe(graph, receiver)

    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidRequest"
    assert graph.ok(graph.get("subscriptions"))["value"] == []


def test_RUN3_an_endpoint_that_does_not_answer_200_fails_the_subscription(
    graph: Graph, receiver: Receiver
) -> None:
    receiver.mode = "error"

    assert subscribe(graph, receiver).status_code == 400


def test_RUN3_an_endpoint_slower_than_the_validation_timeout_fails_the_subscription(
    graph: Graph, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions, "VALIDATION_SECONDS", 0.3)
    receiver.mode, receiver.delay = "slow", 1.0

    assert subscribe(graph, receiver).status_code == 400


def test_RUN3_outlook_subscriptions_last_at_most_10080_minutes(
    graph: Graph, receiver: Receiver
) -> None:
    assert subscribe(graph, receiver, "me/events", 10_080).status_code == 201
    assert subscribe(graph, receiver, "me/contacts", 10_080).status_code == 201
    assert subscribe(graph, receiver, "me/events", 10_081).status_code == 400


def test_RUN3_todo_task_subscriptions_last_at_most_4230_minutes(
    graph: Graph, receiver: Receiver
) -> None:
    lists = graph.ok(graph.get("me/todo/lists"))["value"]
    resource = f"me/todo/lists/{lists[0]['id']}/tasks"

    assert subscribe(graph, receiver, resource, 4_230).status_code == 201
    assert subscribe(graph, receiver, resource, 4_231).status_code == 400


def test_a_client_state_longer_than_128_characters_is_refused(
    graph: Graph, receiver: Receiver
) -> None:
    assert subscribe(graph, receiver, clientState="x" * 129).status_code == 400


def test_a_subscription_needs_the_resources_scope(graph: Graph, receiver: Receiver) -> None:
    token = graph.sandbox.issue_token("ada@contoso.example", ["Contacts.Read"])
    body = {
        "changeType": "created",
        "notificationUrl": receiver.url,
        "resource": "me/events",
        "expirationDateTime": later(graph, 60),
    }

    assert graph.post("subscriptions", body, token=token).status_code == 403


def test_RUN3_a_new_event_notifies_the_subscriber_with_graphs_payload(
    graph: Graph, receiver: Receiver
) -> None:
    made = graph.ok(subscribe(graph, receiver), 201)

    created = add_event(graph)
    assert flush(graph.sandbox) == [202]

    [post] = receiver.received
    [item] = post["value"]
    assert post["path"] == "/hook"
    assert item["subscriptionId"] == made["id"] and item["clientState"] == "s3cret"
    assert item["changeType"] == "created" and item["tenantId"] == graph.sandbox.tenant_id
    assert item["resourceData"]["id"] == created["id"]
    assert item["resourceData"]["@odata.etag"] == created["@odata.etag"]
    assert item["subscriptionExpirationDateTime"] == made["expirationDateTime"]


def test_RUN3_updates_and_deletes_arrive_bundled_in_one_post(
    graph: Graph, receiver: Receiver
) -> None:
    graph.ok(subscribe(graph, receiver), 201)
    created = add_event(graph)
    graph.ok(graph.patch(f"me/events/{created['id']}", {"subject": "Moved"}))
    assert graph.delete(f"me/events/{created['id']}").status_code == 204

    flush(graph.sandbox)

    [post] = receiver.received
    assert [i["changeType"] for i in post["value"]] == ["created", "updated", "deleted"]


def test_RUN3_only_the_subscribed_change_types_and_resources_notify(
    graph: Graph, receiver: Receiver
) -> None:
    graph.ok(subscribe(graph, receiver, changeType="deleted"), 201)
    created = add_event(graph)
    graph.ok(graph.post("me/contacts", {"givenName": "Grace"}), 201)

    assert flush(graph.sandbox) == []
    assert graph.delete(f"me/events/{created['id']}").status_code == 204
    flush(graph.sandbox)

    assert [i["changeType"] for p in receiver.received for i in p["value"]] == ["deleted"]


def test_RUN3_contacts_and_todo_tasks_notify_too(graph: Graph, receiver: Receiver) -> None:
    list_id = graph.ok(graph.get("me/todo/lists"))["value"][0]["id"]
    graph.ok(subscribe(graph, receiver, "me/contacts"), 201)
    graph.ok(subscribe(graph, receiver, f"me/todo/lists/{list_id}/tasks", 4_000), 201)

    contact = graph.ok(graph.post("me/contacts", {"givenName": "Grace"}), 201)
    task = graph.ok(graph.post(f"me/todo/lists/{list_id}/tasks", {"title": "Call"}), 201)
    flush(graph.sandbox)

    ids = [i["resourceData"]["id"] for p in receiver.received for i in p["value"]]
    assert ids == [contact["id"], task["id"]]


def test_RUN3_a_notification_the_endpoint_refuses_is_retried_at_the_next_flush(
    graph: Graph, receiver: Receiver
) -> None:
    graph.ok(subscribe(graph, receiver), 201)
    add_event(graph)
    receiver.status = 503

    assert flush(graph.sandbox) == [503]
    receiver.status = 202
    assert flush(graph.sandbox) == [202]
    assert flush(graph.sandbox) == []


def test_RUN5_a_subscription_is_renewed_with_patch(graph: Graph, receiver: Receiver) -> None:
    made = graph.ok(subscribe(graph, receiver, minutes=60), 201)
    renewed_until = later(graph, 10_000)

    renewed = graph.ok(
        graph.patch(f"subscriptions/{made['id']}", {"expirationDateTime": renewed_until})
    )

    assert renewed["expirationDateTime"] == renewed_until
    graph.clock.now += timedelta(minutes=120)
    assert graph.get(f"subscriptions/{made['id']}").status_code == 200


def test_RUN5_a_renewal_past_the_maximum_lifetime_is_refused(
    graph: Graph, receiver: Receiver
) -> None:
    made = graph.ok(subscribe(graph, receiver, minutes=60), 201)

    answer = graph.patch(
        f"subscriptions/{made['id']}", {"expirationDateTime": later(graph, 10_081)}
    )

    assert answer.status_code == 400


def test_RUN5_an_unrenewed_subscription_expires_and_stops_notifying(
    graph: Graph, receiver: Receiver
) -> None:
    made = graph.ok(subscribe(graph, receiver, minutes=60), 201)
    graph.clock.now += timedelta(minutes=61)

    add_event(graph)

    assert graph.get(f"subscriptions/{made['id']}").status_code == 404
    assert flush(graph.sandbox) == []


def test_a_deleted_subscription_is_gone(graph: Graph, receiver: Receiver) -> None:
    made = graph.ok(subscribe(graph, receiver), 201)

    assert graph.delete(f"subscriptions/{made['id']}").status_code == 204

    assert graph.get(f"subscriptions/{made['id']}").status_code == 404
    assert graph.ok(graph.get("subscriptions"))["value"] == []


def test_RUN5_lifecycle_events_go_to_the_lifecycle_url(graph: Graph, receiver: Receiver) -> None:
    made = graph.ok(subscribe(graph, receiver), 201)

    for event in ("reauthorizationRequired", "missed"):
        lifecycle(graph.sandbox, made["id"], event)
    flush(graph.sandbox)

    [post] = receiver.received
    assert post["path"] == "/lifecycle"
    assert [i["lifecycleEvent"] for i in post["value"]] == ["reauthorizationRequired", "missed"]
    assert all(i["subscriptionId"] == made["id"] for i in post["value"])
    assert graph.post(f"subscriptions/{made['id']}/reauthorize", {}).status_code == 204


def test_RUN5_subscription_removed_removes_the_subscription(
    graph: Graph, receiver: Receiver
) -> None:
    made = graph.ok(subscribe(graph, receiver), 201)

    lifecycle(graph.sandbox, made["id"], "subscriptionRemoved")
    flush(graph.sandbox)

    assert receiver.received[0]["value"][0]["lifecycleEvent"] == "subscriptionRemoved"
    assert graph.get(f"subscriptions/{made['id']}").status_code == 404


def test_a_plain_http_notification_url_off_loopback_is_refused(graph: Graph) -> None:
    body = {
        "changeType": "created",
        "notificationUrl": "http://hooks.example.com/graph",
        "resource": "me/events",
        "expirationDateTime": later(graph, 60),
    }

    assert graph.post("subscriptions", body).status_code == 400
