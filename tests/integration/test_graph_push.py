"""Microsoft Graph change notifications end to end (RUN-1, RUN-3, RUN-5, RUN-4, AUTH-4):
a user connects Outlook through crmsync's own use cases against the Microsoft sandbox,
whose subscriptions call the graph_webhook function, served by functions-framework on
a loopback socket over the same Services. Connecting subscribes each synced kind for
as long as Graph allows; a change in the mailbox reaches the webhook and enqueues a
cycle; the worker's renewal after a cycle answers lifecycle notifications; disconnect
deletes the subscriptions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from crmsync import entrypoints, service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.crm.memory import MemoryCrm
from crmsync.ports import Channel
from crmsync.providers.microsoft.kit import MicrosoftSetup
from crmsync.providers.microsoft.push import LIFETIME, RENEW_MARGIN, digest
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.testing.microsoft import registered
from sandbox.local.stack import functions_app, serve_app
from sandbox.microsoft import identity
from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.server import serve, trusting_session
from sandbox.microsoft.subscriptions import flush, lifecycle
from tests.integration.microsoft_sandbox import Clock, Graph

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET = "0d8b0f4e-8f52-4c4e-9a55-4b7a0c2f9e11", "crmsync-app-secret"
ADA = "ada@contoso.example"
TENANT, CONNECTION = "acme", "microsoft-u1"
KIND_OF = {"events": "activity", "contacts": "contact", "tasks": "todo"}


@dataclass
class World:
    sandbox: MicrosoftSandbox
    services: service.Services
    queue: InlineQueue
    clock: Clock
    graph: Graph  # the mailbox as its user's own apps see it
    webhook: str

    @property
    def store(self) -> Any:
        return self.services.backend.store(TENANT)

    def subscriptions(self) -> dict[str, dict[str, Any]]:
        """The mailbox's subscriptions at Graph, by the kind each is on."""
        listed = self.graph.ok(self.graph.get("subscriptions"))["value"]
        found: dict[str, dict[str, Any]] = {}
        for subscription in listed:
            kind = KIND_OF[subscription["resource"].rsplit("/", 1)[-1]]
            assert kind not in found, listed
            found[kind] = subscription
        return found

    def channels(self) -> dict[str, Channel]:
        return {c.resource_id: c for c in self.store.channels_of(CONNECTION)}

    def waiting(self) -> list[tuple[str, str]]:
        return sorted((q.connection, q.trigger) for q in self.queue.waiting.values())

    def work(self) -> dict[str, Any]:
        """One cycle of the connection, as the sync_worker function runs it."""
        self.queue.waiting.clear()
        run = service.work(self.services, TENANT, CONNECTION, "push")
        assert run["status"] == "ok", run
        return run


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()  # moved by the tests, from now (msal checks ID tokens on real time)
    clock.now = datetime.now(UTC).replace(microsecond=0)
    sandbox = MicrosoftSandbox(clock=clock)
    sandbox.add_user(ADA)
    identity.state_of(sandbox).token_seconds = 30 * 24 * 3600  # no refresh as time moves
    served = serve(sandbox)
    functions_url, stop_functions = serve_app(functions_app())
    config = registered(
        sandbox,
        served.base_url,
        served.ca_path,
        functions_url + "/oauth_callback",
        CLIENT_ID,
        SECRET,
    )
    queue = InlineQueue()
    crm = MemoryCrm(lambda: datetime.now(UTC))
    services = service.Services(
        backend=MemoryBackend(),
        queue=queue,
        vault=TokenVault(LocalKek(os.urandom(32))),
        secret=os.urandom(32),
        public_url=functions_url,
        providers={
            "microsoft": MicrosoftSetup(
                config, f"{served.base_url}/v1.0", {"attempts": 1, "sleep": lambda s: None}
            )
        },
        clock=clock,
        crm_connector=lambda tenant, record, user, settings: crm.connector(
            user, settings["contact_group"]
        ),
    )
    service.create_tenant(
        services,
        TENANT,
        name="Acme",
        crm_base_url="https://crm.invalid",
        crm_token="crm-token",
        event_secret="event-secret",
    )
    entrypoints.use(services)  # the served functions run on these Services
    token = sandbox.issue_token(
        ADA, ["Contacts.ReadWrite", "Calendars.ReadWrite", "Tasks.ReadWrite"], seconds=30 * 86400
    )
    session = trusting_session(served.ca_path)
    graph = Graph(sandbox, served.base_url, served.ca_path, clock, token, session)
    try:
        yield World(sandbox, services, queue, clock, graph, functions_url + "/graph_webhook")
    finally:
        entrypoints.use(None)
        session.close()
        stop_functions()
        served.stop()


def connect(world: World) -> dict[str, Any]:
    """Open an onboarding link, pick Microsoft, consent as Ada, come back."""
    url = service.onboarding_link(world.services, TENANT, "u1")
    link = parse_qs(urlsplit(url).query)["link"][0]
    consent = service.start_oauth(world.services, link, "microsoft", ("sync",))
    callback = identity.consent(consent, ADA, verify=world.graph.ca)
    record = service.finish_oauth(world.services, callback.get("state"), callback.get("code"))
    world.queue.waiting.clear()  # the first cycle, enqueued at connect
    return record


def expiry(subscription: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(subscription["expirationDateTime"].replace("Z", "+00:00"))


def test_RUN5_connecting_subscribes_each_synced_kind_for_as_long_as_graph_allows(
    world: World,
) -> None:
    record = connect(world)

    assert not record.get("channel_problem"), record
    subscriptions = world.subscriptions()
    assert set(subscriptions) == {"contact", "activity", "todo"}
    channels = world.channels()
    for kind, subscription in subscriptions.items():
        left = expiry(subscription) - world.clock.now
        assert LIFETIME[kind] - timedelta(minutes=2) < left <= LIFETIME[kind], (kind, left)
        assert subscription["changeType"] == "created,updated,deleted"
        assert subscription["notificationUrl"] == world.webhook
        assert subscription["lifecycleNotificationUrl"] == world.webhook
        channel = channels[kind]
        assert (channel.id, channel.provider, channel.expires) == (
            subscription["id"],
            "microsoft",
            expiry(subscription),
        )
        assert channel.token_digest == digest(subscription["clientState"])
        assert subscription["clientState"] not in channel.token_digest  # only its digest kept
    assert LIFETIME["todo"] == timedelta(minutes=4_230)
    assert LIFETIME["activity"] == LIFETIME["contact"] == timedelta(minutes=10_080)
    assert subscriptions["contact"]["resource"] == "me/contacts"  # the default folder's
    default = world.graph.ok(world.graph.get("me/calendar"))["id"]
    assert subscriptions["activity"]["resource"] == f"me/calendars/{default}/events"


def test_RUN3_a_change_in_the_mailbox_reaches_the_webhook_and_enqueues_one_cycle(
    world: World,
) -> None:
    connect(world)
    grace = {"givenName": "Grace", "categories": ["CRM"]}
    world.graph.ok(world.graph.post(world.subscriptions()["contact"]["resource"], grace), 201)
    event = {
        "subject": "Review",
        "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-10T11:00:00", "timeZone": "UTC"},
    }
    world.graph.ok(world.graph.post("me/events", event), 201)

    statuses = flush(world.sandbox)

    assert statuses == [202]  # both changes in one POST, accepted
    assert world.waiting() == [(CONNECTION, "push")]


def test_RUN1_the_webhook_answers_the_handshake_and_refuses_forged_notifications(
    world: World,
) -> None:
    connect(world)
    subscription = world.subscriptions()["todo"]
    forged = {"value": [{"subscriptionId": subscription["id"], "clientState": "guess"}]}

    handshake = requests.post(world.webhook + "?validationToken=a%20b%2Bc%3Fd", timeout=10)
    refused = requests.post(world.webhook, json=forged, timeout=10)
    fetched = requests.get(world.webhook, timeout=10)

    assert (handshake.status_code, handshake.text) == (200, "a b+c?d")
    assert handshake.headers["Content-Type"].startswith("text/plain")
    assert (refused.status_code, refused.json()) == (403, {"error": "wrong client state"})
    assert fetched.status_code == 405
    assert world.waiting() == []


def test_RUN5_reauthorization_required_is_answered_by_the_workers_renewal(
    world: World,
) -> None:
    connect(world)
    before = world.subscriptions()["todo"]
    lifecycle(world.sandbox, before["id"], "reauthorizationRequired")

    assert flush(world.sandbox) == [202]
    assert world.waiting() == [(CONNECTION, "renew")]
    assert world.channels()["todo"].expires == world.clock.now + RENEW_MARGIN
    world.clock.now += timedelta(hours=3)
    world.work()

    after = world.subscriptions()["todo"]
    assert after["id"] == before["id"]
    assert expiry(after) == expiry(before) + timedelta(hours=3)  # extended, reauthorized
    assert world.channels()["todo"].expires == expiry(after)
    assert expiry(world.subscriptions()["contact"]) == world.channels()["contact"].expires


def test_RUN5_a_removed_subscription_is_made_again_by_the_workers_renewal(world: World) -> None:
    connect(world)
    removed = world.subscriptions()["activity"]
    lifecycle(world.sandbox, removed["id"], "subscriptionRemoved")

    assert flush(world.sandbox) == [202]
    assert "activity" not in world.subscriptions()
    world.work()

    again = world.subscriptions()["activity"]
    assert again["id"] != removed["id"] and again["resource"] == removed["resource"]
    channels = world.channels()
    assert set(channels) == {"contact", "activity", "todo"}
    assert channels["activity"].id == again["id"]
    assert world.store.channel(removed["id"]) is None  # its notifications are refused


def test_RUN4_a_missed_notification_forgets_the_kinds_cursor(world: World) -> None:
    connect(world)
    world.work()
    assert world.store.cursor(CONNECTION, "provider", "contact") is not None
    lifecycle(world.sandbox, world.subscriptions()["contact"]["id"], "missed")

    assert flush(world.sandbox) == [202]

    assert world.store.cursor(CONNECTION, "provider", "contact") is None
    assert world.store.cursor(CONNECTION, "provider", "activity") is not None
    assert world.waiting() == [(CONNECTION, "push")]
    again = world.work()  # the next cycle lists contacts whole, and duplicates nothing
    assert "create" not in again["counts"].get("contact", {}), again


def test_AUTH4_disconnect_deletes_the_subscriptions_at_graph(world: World) -> None:
    connect(world)
    assert len(world.subscriptions()) == 3

    problems = service.disconnect(world.services, TENANT, CONNECTION)

    assert problems == []
    assert world.subscriptions() == {}
    assert world.channels() == {}


def test_RUN5_subscriptions_graph_refused_at_connect_are_made_after_the_next_cycle(
    world: World,
) -> None:
    """Push that could not be set up at connect leaves the connection polled on its
    schedule and saying why; after its next cycle the worker tries again, and once the
    subscriptions exist the problem it showed is gone."""
    world.sandbox.inject(503, method="POST", path="^subscriptions$", times=3)

    connect(world)
    record = world.store.connection_record(CONNECTION)
    assert record is not None and "polling on schedule" in record["channel_problem"]
    assert world.channels() == {} and world.subscriptions() == {}

    world.work()

    record = world.store.connection_record(CONNECTION)
    assert record is not None and record["channel_problem"] == ""
    assert set(world.subscriptions()) == set(world.channels()) == {"contact", "activity", "todo"}


def test_RUN5_a_kind_whose_subscription_failed_at_connect_gets_one_after_the_next_cycle(
    world: World,
) -> None:
    """One kind's subscription refused at connect, the others made: that kind is polled
    meanwhile, and the worker's renewal after the next cycle makes it."""
    world.sandbox.inject(503, method="POST", path="^subscriptions$", times=1)

    connect(world)
    made = set(world.channels())
    record = world.store.connection_record(CONNECTION)
    assert record is not None and "polling on schedule" in record["channel_problem"]
    assert len(made) == 2

    world.work()

    record = world.store.connection_record(CONNECTION)
    assert record is not None and record["channel_problem"] == ""
    assert set(world.subscriptions()) == set(world.channels()) == {"contact", "activity", "todo"}
