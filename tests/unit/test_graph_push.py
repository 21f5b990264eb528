"""Microsoft Graph change notifications reach the right connection as one debounced
cycle; the validation handshake is answered; lifecycle notifications make the
subscription due for renewal or forget the kind's cursor; forged, stale, unknown or
malformed ones have no effect (the graph_webhook handler's core, through the service
layer and Microsoft's kit)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync import service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.errors import NotFound
from crmsync.ports import Channel, PushAnswer, PushRequest
from crmsync.providers.microsoft.push import (
    LIFETIME,
    RENEW_MARGIN,
    digest,
    new_client_state,
    renew_subscriptions,
)
from crmsync.queue import DEBOUNCE, task_name
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TENANT = "t1"


class World:
    """Services over the memory store with two Microsoft connections: c1 with a
    subscription per kind, c2 with one on its calendar; each subscription's client state
    is known here, as Graph knows it."""

    def __init__(self) -> None:
        self.queue = InlineQueue()
        self.backend = MemoryBackend()
        self.services = service.Services(
            backend=self.backend,
            queue=self.queue,
            vault=TokenVault(LocalKek(os.urandom(32))),
            secret=os.urandom(32),
            public_url="https://crmsync.example",
            clock=lambda: NOW,
        )
        self.states: dict[str, str] = {}
        for connection, kinds in (("c1", ("contact", "activity", "todo")), ("c2", ("activity",))):
            for kind in kinds:
                self.subscribe(f"sub-{connection}-{kind}", connection, kind)
        store = self.store
        for kind in ("contact", "activity", "todo"):
            store.save_cursor("c1", "provider", kind, f"delta-{kind}")
            store.save_cursor("c1", "crm", kind, f"crm-{kind}")
        store.save_cursor("c2", "provider", "contact", "delta-contact")

    @property
    def store(self) -> Any:
        return self.backend.store(TENANT)

    def subscribe(self, subscription: str, connection: str, kind: str, provider: str = "") -> None:
        state, kept = new_client_state()
        self.states[subscription] = state
        expires = NOW + LIFETIME[kind]
        channel = Channel(
            subscription, TENANT, connection, provider or "microsoft", kind, kept, expires
        )
        self.backend.store("").save_channel(channel)

    def item(self, subscription: str, **more: Any) -> dict[str, Any]:
        """A change notification of the subscription as Graph sends it."""
        return {
            "subscriptionId": subscription,
            "subscriptionExpirationDateTime": "2026-11-09T09:00:00.0000000Z",
            "changeType": "updated",
            "resource": "Users/oid/Contacts/AAMk",
            "resourceData": {"@odata.type": "#Microsoft.Graph.Contact", "id": "AAMk"},
            "clientState": self.states.get(subscription, "unknown"),
            "tenantId": "0f0e0d0c-0000-4000-8000-000000000000",
            **more,
        }

    def lifecycle(self, subscription: str, event: str, **more: Any) -> dict[str, Any]:
        return {
            "subscriptionId": subscription,
            "subscriptionExpirationDateTime": "2026-11-09T09:00:00.0000000Z",
            "tenantId": "0f0e0d0c-0000-4000-8000-000000000000",
            "clientState": self.states.get(subscription, "unknown"),
            "lifecycleEvent": event,
            **more,
        }

    def post(self, *items: Any, body: bytes | None = None) -> PushAnswer:
        sent = json.dumps({"value": list(items)}).encode() if body is None else body
        return service.provider_push(
            self.services,
            "microsoft",
            PushRequest({"Content-Type": "application/json"}, {}, sent),
        )

    def channel(self, subscription: str) -> Channel:
        found = self.backend.store("").channel(subscription)
        assert found is not None
        return found


@pytest.fixture
def world() -> World:
    return World()


# -- the handshake ---------------------------------------------------------------------------
def test_RUN1_the_validation_handshake_is_answered_200_with_the_token_as_plain_text(
    world: World,
) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"

    answer = service.provider_push(
        world.services, "microsoft", PushRequest({}, {"validationToken": token}, b"")
    )

    assert (answer.status, answer.text) == (200, token)
    assert world.queue.waiting == {}


@pytest.mark.parametrize("token", ["", "x" * 1025])
def test_RUN1_an_empty_or_oversized_validation_token_is_refused(world: World, token: str) -> None:
    answer = service.provider_push(
        world.services, "microsoft", PushRequest({}, {"validationToken": token}, b"")
    )

    assert answer.status == 400 and answer.text is None


# -- change notifications --------------------------------------------------------------------
def test_RUN3_a_change_notification_enqueues_one_cycle_of_its_connection_a_little_later(
    world: World,
) -> None:
    answer = world.post(
        world.item("sub-c1-contact"),
        world.item("sub-c1-activity", changeType="created"),
        world.item("sub-c1-contact", changeType="deleted"),
    )

    assert answer.status == 202
    (queued,) = world.queue.waiting.values()
    assert (queued.tenant, queued.connection, queued.trigger) == (TENANT, "c1", "push")
    assert queued.not_before == NOW + DEBOUNCE
    assert queued.name == task_name(TENANT, "c1", NOW, DEBOUNCE)


def test_RUN3_one_post_for_two_connections_enqueues_a_cycle_of_each(world: World) -> None:
    answer = world.post(world.item("sub-c1-todo"), world.item("sub-c2-activity"))

    assert answer.status == 202
    assert sorted(q.connection for q in world.queue.waiting.values()) == ["c1", "c2"]


def test_RUN3_a_burst_of_notifications_collapses_into_one_cycle(world: World) -> None:
    for _ in range(5):
        world.post(world.item("sub-c1-contact"))

    assert len(world.queue.waiting) == 1
    assert world.queue.refused == 4


def test_RUN1_a_forged_client_state_is_refused_403_and_has_no_effect(world: World) -> None:
    answer = world.post(world.item("sub-c1-contact", clientState="guessed"))

    assert (answer.status, answer.reason) == (403, "wrong client state")
    assert world.queue.waiting == {}


@pytest.mark.parametrize("given", [None, 42, ""])
def test_RUN1_a_missing_client_state_is_refused_403(world: World, given: Any) -> None:
    answer = world.post(world.item("sub-c1-contact", clientState=given))

    assert answer.status == 403
    assert world.queue.waiting == {}


def test_RUN1_an_unknown_subscription_is_refused_404(world: World) -> None:
    world.subscribe("google-channel", "c1", "activity", provider="google")

    unknown = world.post(world.item("sub-nobody"))
    google = world.post(world.item("google-channel"))

    assert (unknown.status, google.status) == (404, 404)
    assert world.queue.waiting == {}


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"value": "x"}',
        b'{"value": []}',
        b'{"value": [1]}',
        b'{"value": [{"clientState": "x"}]}',
        b'{"value": [{"subscriptionId": 7}]}',
    ],
)
def test_RUN1_a_malformed_body_is_refused_400_and_has_no_effect(world: World, body: bytes) -> None:
    answer = world.post(body=body)

    assert answer.status == 400
    assert world.queue.waiting == {}


def test_RUN5_a_notification_of_an_expired_subscription_has_no_effect(world: World) -> None:
    expired = world.channel("sub-c1-contact")
    world.backend.store("").save_channel(replace(expired, expires=NOW - timedelta(seconds=1)))

    answer = world.post(world.item("sub-c1-contact"))

    assert answer.status == 410
    assert world.queue.waiting == {}


def test_RUN1_forged_items_beside_a_valid_one_have_no_effect(world: World) -> None:
    answer = world.post(
        world.lifecycle("sub-c2-activity", "missed", clientState="guessed"),
        world.item("sub-c1-todo"),
    )

    assert answer.status == 202
    assert [q.connection for q in world.queue.waiting.values()] == ["c1"]
    assert world.store.cursor("c2", "provider", "contact") == "delta-contact"


def test_RUN1_only_a_digest_of_the_client_state_is_kept(world: World) -> None:
    kept = world.channel("sub-c1-contact")

    assert world.states["sub-c1-contact"] not in kept.token_digest
    assert kept.token_digest == digest(world.states["sub-c1-contact"])


# -- lifecycle notifications -----------------------------------------------------------------
@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved"])
def test_RUN5_a_lifecycle_notification_makes_the_subscription_due_for_renewal_and_wakes_the_worker(
    world: World, event: str
) -> None:
    before = world.channel("sub-c1-todo")

    answer = world.post(world.lifecycle("sub-c1-todo", event))

    assert answer.status == 202
    assert before.expires - NOW > RENEW_MARGIN
    assert world.channel("sub-c1-todo").expires == NOW + RENEW_MARGIN  # renewed after a cycle
    assert world.channel("sub-c1-contact").expires == NOW + LIFETIME["contact"]  # the others not
    (queued,) = world.queue.waiting.values()
    assert (queued.connection, queued.trigger) == ("c1", "renew")


def test_RUN4_a_missed_notification_forgets_that_kinds_cursor_and_wakes_the_worker(
    world: World,
) -> None:
    answer = world.post(world.lifecycle("sub-c1-activity", "missed"))

    assert answer.status == 202
    assert world.store.cursor("c1", "provider", "activity") is None  # listed whole next
    assert world.store.cursor("c1", "provider", "contact") == "delta-contact"
    assert world.store.cursor("c1", "crm", "activity") == "crm-activity"
    (queued,) = world.queue.waiting.values()
    assert (queued.connection, queued.trigger) == ("c1", "push")


@pytest.mark.parametrize("event", ["reauthorizationRequired", "subscriptionRemoved", "missed"])
def test_RUN1_a_forged_lifecycle_notification_has_no_effect(world: World, event: str) -> None:
    before = world.channel("sub-c1-activity")

    forged = world.post(world.lifecycle("sub-c1-activity", event, clientState="guessed"))
    unknown = world.post(world.lifecycle("sub-nobody", event))

    assert (forged.status, unknown.status) == (403, 404)
    assert world.channel("sub-c1-activity") == before
    assert world.store.cursor("c1", "provider", "activity") == "delta-activity"
    assert world.queue.waiting == {}


def test_RUN1_a_lifecycle_event_crmsync_has_no_use_for_is_acknowledged_without_effect(
    world: World,
) -> None:
    before = world.channel("sub-c1-activity")

    answer = world.post(world.lifecycle("sub-c1-activity", "somethingNew"))

    assert answer.status == 202
    assert world.channel("sub-c1-activity") == before
    assert world.queue.waiting == {}


# -- renewal -----------------------------------------------------------------------------------
class GraphSubscriptions:
    """Graph's subscriptions of a mailbox as renewal sees them (SubscriptionApi): what
    it is asked is recorded; `gone` are the ids Graph no longer has."""

    def __init__(self, gone: tuple[str, ...] = ()) -> None:
        self.gone = set(gone)
        self.extended: list[tuple[str, datetime]] = []
        self.created: list[tuple[str, str]] = []

    def extend(self, subscription_id: str, expires: datetime) -> datetime:
        if subscription_id in self.gone:
            raise NotFound("gone")
        self.extended.append((subscription_id, expires))
        return expires

    def create(
        self, kind: str, address: str, client_state: str, expires: datetime
    ) -> tuple[str, datetime]:
        self.created.append((kind, address))
        return f"new-{kind}", expires

    def delete(self, subscription_id: str) -> None:
        self.gone.add(subscription_id)


def test_RUN5_only_subscriptions_within_a_day_of_their_end_are_extended_as_far_as_graph_allows(
    world: World,
) -> None:
    later = NOW + LIFETIME["todo"] - timedelta(hours=23)  # To Do's ends within a day
    graph = GraphSubscriptions()
    current = world.store.channels_of("c1")

    problems = renew_subscriptions(graph, world.store, current, "https://h/graph_webhook", later)

    assert problems == []
    assert graph.extended == [("sub-c1-todo", later + LIFETIME["todo"] - timedelta(minutes=1))]
    assert world.channel("sub-c1-todo").expires == graph.extended[0][1]


def test_RUN5_a_subscription_graph_no_longer_has_is_made_again(world: World) -> None:
    later = NOW + LIFETIME["contact"] - timedelta(hours=1)
    graph = GraphSubscriptions(gone=("sub-c1-contact",))
    current = [world.channel("sub-c1-contact")]

    problems = renew_subscriptions(graph, world.store, current, "https://h/graph_webhook", later)

    assert problems == []
    assert graph.created == [("contact", "https://h/graph_webhook")]
    assert world.backend.store("").channel("sub-c1-contact") is None
    remade = world.channel("new-contact")
    assert (remade.connection, remade.resource_id) == ("c1", "contact")
    assert remade.token_digest != world.channel("sub-c1-todo").token_digest
