"""The gmail_push function on a real socket: Gmail's mailbox notifications, as the
gmail-notifications Pub/Sub push subscription delivers them, reach the connection of
that mailbox as a debounced cycle (RUN-3); the mailbox is routed when the user grants
the mail service and forgotten on disconnect (AUTH-4); anything that is not a
notification is a 400 with the reason, and nothing leaks into the logs."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.logs import configure_logging
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack

pytestmark = pytest.mark.integration

CONNECTION = "google-u1"
DANA = DEMO_USERS["u1"]


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    stack.create_demo_tenant()
    yield stack
    stack.close()


def waiting(stack: LocalStack) -> list[tuple[str, str]]:
    assert isinstance(stack.queue, InlineQueue)
    return sorted((t.connection, t.trigger) for t in stack.queue.waiting.values())


def clear(stack: LocalStack) -> None:
    assert isinstance(stack.queue, InlineQueue)
    stack.queue.waiting.clear()


def envelope(data: bytes) -> dict[str, Any]:
    """Pub/Sub's push envelope around one message."""
    return {
        "message": {"data": base64.b64encode(data).decode(), "messageId": "1", "attributes": {}},
        "subscription": "projects/p/subscriptions/gmail-notifications-push",
    }


def notify(stack: LocalStack, address: str, history_id: Any = "4321") -> requests.Response:
    data = json.dumps({"emailAddress": address, "historyId": history_id}).encode()
    return requests.post(stack.functions_url + "/gmail_push", json=envelope(data), timeout=10)


def test_RUN3_a_gmail_notification_enqueues_a_cycle_of_the_mailboxs_connection(
    stack: LocalStack,
) -> None:
    assert stack.connect("u1", services="sync,mail").status_code == 200
    record = stack.services.backend.store(DEMO_TENANT).connection_record(CONNECTION)
    assert record["services"] == ["mail", "sync"] and record["mail_problem"] == ""
    clear(stack)

    answer = notify(stack, DANA)

    assert (answer.status_code, answer.json()) == (200, {"enqueued": 1})
    assert waiting(stack) == [(CONNECTION, "mail")]
    status = service.admin_status(stack.services, DEMO_TENANT)["connections"][0]
    assert status["mail_problem"] == ""


def test_RUN3_gmail_names_the_mailbox_in_any_letter_case(stack: LocalStack) -> None:
    stack.connect("u1", services="sync,mail")
    clear(stack)
    assert notify(stack, DANA.upper(), 99).json() == {"enqueued": 1}


def test_RUN3_a_mailbox_crmsync_does_not_know_is_acknowledged_and_does_nothing(
    stack: LocalStack,
) -> None:
    stack.connect("u1", services="sync,mail")
    clear(stack)
    answer = notify(stack, "someone.else@demo.example")
    assert (answer.status_code, answer.json()) == (200, {"enqueued": 0})
    assert waiting(stack) == []


def test_RUN3_a_connection_without_the_mail_service_gets_no_mail_cycles(
    stack: LocalStack,
) -> None:
    stack.connect("u1", services="sync")
    clear(stack)
    assert notify(stack, DANA).json() == {"enqueued": 0}
    assert waiting(stack) == []


def test_AUTH4_after_a_disconnect_the_mailbox_routes_nowhere(stack: LocalStack) -> None:
    stack.connect("u1", services="sync,mail")
    service.disconnect(stack.services, DEMO_TENANT, CONNECTION)
    clear(stack)
    assert notify(stack, DANA).json() == {"enqueued": 0}
    assert waiting(stack) == []


def test_AUTH2_adding_mail_later_routes_the_mailbox(stack: LocalStack) -> None:
    stack.connect("u1", services="sync")
    stack.connect("u1", services="mail")  # incremental consent: mail added to sync
    record = stack.services.backend.store(DEMO_TENANT).connection_record(CONNECTION)
    assert record["services"] == ["mail", "sync"]
    clear(stack)
    assert notify(stack, DANA).json() == {"enqueued": 1}


NOT_NOTIFICATIONS = [
    (b"not json", "not valid JSON"),
    (json.dumps({"subscription": "s"}).encode(), "Pub/Sub push envelope"),
    (json.dumps({"message": {"data": "%%%"}}).encode(), "not base64"),
    (json.dumps(envelope(b"{broken")).encode(), ""),
    (json.dumps(envelope(json.dumps({"historyId": "1"}).encode())).encode(), "emailAddress"),
    (json.dumps(envelope(b'{"emailAddress": "dana", "historyId": "1"}')).encode(), ""),
    (json.dumps(envelope(b'{"emailAddress": "a@b.example", "historyId": "x"}')).encode(), ""),
]


@pytest.mark.parametrize(("body", "reason"), NOT_NOTIFICATIONS)
def test_what_is_not_a_gmail_notification_is_a_400_with_the_reason(
    stack: LocalStack, body: bytes, reason: str
) -> None:
    stack.connect("u1", services="sync,mail")
    clear(stack)
    answer = requests.post(
        stack.functions_url + "/gmail_push",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert reason in answer.json()["error"] and answer.json()["error"]
    assert waiting(stack) == []


def test_gmail_push_takes_only_posts(stack: LocalStack) -> None:
    assert requests.get(stack.functions_url + "/gmail_push", timeout=10).status_code == 405


def test_AUTH2_no_mailbox_address_reaches_the_logs(stack: LocalStack) -> None:
    captured = io.StringIO()
    handler = configure_logging(captured)
    try:
        stack.connect("u1", services="sync,mail")
        notify(stack, DANA)
        notify(stack, "stranger@elsewhere.example")
        requests.post(
            stack.functions_url + "/gmail_push",
            json=envelope(b'{"emailAddress": "leak@elsewhere.example", "historyId": "z"}'),
            timeout=10,
        )
    finally:
        logging.getLogger("crmsync").removeHandler(handler)
        logging.getLogger("crmsync").propagate = True
    text = captured.getvalue()
    assert "gmail_push" in text, "the requests were logged"
    assert [a for a in (DANA, "stranger@", "leak@") if a in text] == []


def test_EML1_the_fanout_renews_the_gmail_watch_within_its_last_day_and_disconnect_stops_it(
    pubsub_emulator: Any,
) -> None:
    """A week of a mail connection on a clock that moves: the first pass sets Gmail's
    watch for seven days; the fan-out leaves it alone while more than a day is left,
    asks for a mail pass within its last day, and that pass watches again for seven
    days from then; disconnecting stops the watch."""
    from sandbox.google.gmail import watch_of
    from tests.integration.test_app_preview_import import drain

    now = [datetime.now(UTC)]
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0, clock=lambda: now[0])
    stack.google.clock = lambda: now[0]  # Gmail's watches end by the same clock
    try:
        stack.gmail_notifications(pubsub_emulator.project)
        stack.create_demo_tenant()
        assert stack.connect("u1", services="mail").status_code == 200
        drain(stack)
        store = stack.services.backend.store(DEMO_TENANT)

        def watched_until() -> tuple[datetime | None, int]:
            record = service.connection_of(store, CONNECTION)
            watch = watch_of(stack.google, DANA)
            assert record is not None and watch is not None
            return record.mail_watch_until, int(watch["expiration"])

        first, expiration = watched_until()
        assert first is not None and first - now[0] > timedelta(days=6, hours=23)
        assert abs(expiration / 1000 - first.timestamp()) < 1

        now[0] += timedelta(days=5, hours=12)  # a day and a half left
        assert service.fanout(stack.services).renewals == 0
        now[0] += timedelta(days=1)  # half a day left
        assert service.fanout(stack.services).renewals == 1
        drain(stack)

        renewed, expiration = watched_until()
        assert renewed is not None and renewed - now[0] > timedelta(days=6, hours=23)
        assert abs(expiration / 1000 - renewed.timestamp()) < 1
        assert service.fanout(stack.services).renewals == 0

        service.disconnect(stack.services, DEMO_TENANT, CONNECTION)
        assert watch_of(stack.google, DANA) is None
    finally:
        stack.close()
