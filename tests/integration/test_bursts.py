"""Bursts cost nothing (RUN-3): a burst of push notifications or CRM events for one
connection is absorbed by the function instance before Cloud Tasks and Firestore, and
a replayed signed CRM event is accepted once. The notifications echoing crmsync's own
writes bring at most one cycle more, also those that come while the cycle still runs.
Through the functions on a real socket."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from crmsync.bursts import DebouncedQueue
from crmsync.crm import events
from crmsync.queue import DEBOUNCE
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.chaos import Slow
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import calendar as google_calendar
from sandbox.local.stack import EVENT_SECRET, LocalStack
from tests.integration.test_functions import (
    CONNECTION,
    DANA,
    connected,
    drain,
    queue,
    stack,
    store,
)

pytestmark = pytest.mark.integration

__all__ = ["connected", "stack"]  # fixtures

BURST = 500


class CountingQueue(InlineQueue):
    """The inline queue, counting the calls that reach it (each one a Cloud Tasks call
    in production)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        return super().enqueue(*args, **kwargs)


@pytest.fixture
def counted(connected: LocalStack) -> LocalStack:
    """A fresh function instance (nothing remembered yet) over a queue that counts."""
    drain(connected)
    counting = CountingQueue()
    connected.services.queue = DebouncedQueue(counting, connected.services.clock)
    connected.queue = counting
    return connected


def notification_headers(stack: LocalStack) -> dict[str, str]:
    """What Google sends on the connection's channel when the calendar changes."""
    account = stack.google.accounts[DANA]
    [channel] = [
        c
        for c in google_calendar.state_of(stack.google, account).channels.values()
        if not c.stopped
    ]
    return {
        "X-Goog-Channel-Id": channel.id,
        "X-Goog-Channel-Token": channel.token or "",
        "X-Goog-Resource-Id": channel.resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "2",
    }


def test_RUN3_a_burst_of_push_notifications_costs_a_handful_of_reads_and_enqueues(
    counted: LocalStack,
) -> None:
    headers = notification_headers(counted)
    directory = counted.services.backend.store("")
    reads_before = directory.reads
    url = counted.functions_url + "/google_webhook"

    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: requests.post(url, headers=headers, timeout=30), range(BURST))
        )

    assert [a.status_code for a in answers] == [202] * BURST
    queue: CountingQueue = counted.queue
    assert len(queue.waiting) <= 2  # one cycle per 10-second debounce the burst lasted
    assert queue.calls == len(queue.waiting)  # racing threads of the instance ask once
    assert directory.reads - reads_before <= 8  # one channel read, maybe one per thread
    assert {task.trigger for task in queue.waiting.values()} == {"push"}


def test_RUN3_a_message_that_comes_before_its_channel_is_saved_turns_away_no_later_one(
    counted: LocalStack,
) -> None:
    """Google sends a new channel's first message ("sync") as soon as the channel is
    made, which can be before the instance that opened it has saved it: that message
    finds no channel, and the channel's real notifications that follow still reach a
    cycle (none is turned away by a remembered miss)."""
    current = notification_headers(counted)
    directory = counted.services.backend.store("")
    opened = directory.channel(current["X-Goog-Channel-Id"])
    assert opened is not None
    channel = replace(opened, id="cs-opened-just-now")  # the opener has not saved it yet
    headers = {**current, "X-Goog-Channel-Id": channel.id}
    url = counted.functions_url + "/google_webhook"

    first = requests.post(url, headers={**headers, "X-Goog-Resource-State": "sync"}, timeout=30)
    directory.save_channel(channel)  # saved by the opener, another function instance
    later = requests.post(url, headers=headers, timeout=30)

    assert first.status_code == 404
    assert later.status_code == 202
    queue: CountingQueue = counted.queue
    assert {task.trigger for task in queue.waiting.values()} == {"push"}


def test_RUN3_a_burst_of_crm_events_costs_a_handful_of_enqueues(counted: LocalStack) -> None:
    signed = [signed_event(counted, [f"id-{n}"]) for n in range(200)]
    url = counted.functions_url + "/crm_events"

    answers = [requests.post(url, data=body, headers=h, timeout=30) for body, h in signed]

    assert [a.json()["enqueued"] for a in answers].count(1) >= 1
    assert all(a.status_code == 202 for a in answers)
    queue: CountingQueue = counted.queue
    assert len(queue.waiting) <= 2 and queue.calls <= 2  # ten-second windows


def test_RUN3_a_replayed_signed_event_is_accepted_once(counted: LocalStack) -> None:
    body, headers = signed_event(counted, ["1"])
    url = counted.functions_url + "/crm_events"

    first = requests.post(url, data=body, headers=headers, timeout=10)
    replays = [requests.post(url, data=body, headers=headers, timeout=10) for _ in range(3)]

    assert (first.status_code, first.json()) == (202, {"enqueued": 1})
    assert [(r.status_code, r.json()) for r in replays] == [(202, {"enqueued": 0})] * 3
    queue: CountingQueue = counted.queue
    assert queue.calls == 1


def test_RUN3_pubsub_delivering_an_event_twice_acknowledges_both_and_enqueues_once(
    counted: LocalStack,
) -> None:
    body, headers = signed_event(counted, ["7"])
    envelope = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "attributes": {"signature": headers["Crmsync-Signature"]},
            "messageId": "42",
        },
        "subscription": "projects/p/subscriptions/crm-events",
    }
    url = counted.functions_url + "/crm_events"

    answers = [requests.post(url, json=envelope, timeout=10) for _ in range(2)]

    assert [(a.status_code, a.json()) for a in answers] == [
        (200, {"enqueued": 1}),
        (200, {"enqueued": 0}),
    ]


def test_RUN3_an_event_not_acted_on_is_accepted_when_sent_again(counted: LocalStack) -> None:
    """A claimed event whose enqueue failed (Cloud Tasks down: 503, the sender retries)
    is accepted on the retry: nothing is lost to replay protection."""
    body, headers = signed_event(counted, ["9"])
    url = counted.functions_url + "/crm_events"
    working = counted.services.queue.queue  # type: ignore[attr-defined]
    counted.services.queue.queue = _Down()  # type: ignore[attr-defined]
    try:
        down = requests.post(url, data=body, headers=headers, timeout=10)
    finally:
        counted.services.queue.queue = working  # type: ignore[attr-defined]
    again = requests.post(url, data=body, headers=headers, timeout=10)

    assert down.status_code == 503
    assert (again.status_code, again.json()) == (202, {"enqueued": 1})
    assert store(counted).connection_record(CONNECTION)["status"] == "active"  # type: ignore[attr-defined]


class _Down:
    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        from crmsync.errors import TransientError

        raise TransientError("Cloud Tasks is unavailable")


def signed_event(stack: LocalStack, ids: list[str]) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "tenant": DEMO_TENANT,
            "user": "u1",
            "kind": "contact",
            "ids": ids,
            "sent_at": now.isoformat(),
        }
    ).encode()
    signature = events.sign(EVENT_SECRET.encode(), body, now)
    return body, {"Crmsync-Signature": signature, "Content-Type": "application/json"}


# -- the echoes of crmsync's own writes -----------------------------------------------------
def calendar_channel(stack: LocalStack) -> Any:
    account = stack.google.accounts[DANA]
    [channel] = [
        c
        for c in google_calendar.state_of(stack.google, account).channels.values()
        if not c.stopped
    ]
    return channel


def meetings(stack: LocalStack, k: int) -> None:
    """k meetings of u1 in the CRM, which the next cycle writes to Google Calendar."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for n in range(k):
        start = day + timedelta(days=2, hours=8 + n)
        stack.crm.create(
            DEMO_TENANT,
            "activity",
            {
                "type": "meeting",
                "subject": f"Meeting {n}",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(),
                "timezone": "UTC",
            },
            "u1",
        )


def test_RUN3_the_echoes_of_k_calendar_writes_by_crmsync_bring_at_most_one_more_cycle(
    connected: LocalStack,
) -> None:
    drain(connected)
    k = 6
    meetings(connected, k)
    assert connected.post_event("u1", "activity", []).status_code == 202
    channel = calendar_channel(connected)
    sent = channel.messages
    # Google notifies each write of the cycle; on this clock the notifications reach the
    # webhook 1.5 s apart, from 2 s before a task name's time window ends: two windows
    arrivals = Arrivals(connected.services.queue)
    connected.services.queue = arrivals  # type: ignore[assignment]
    window = DEBOUNCE.total_seconds()
    edge = datetime.fromtimestamp((time.time() // window + 1) * window, UTC)
    base = edge - timedelta(seconds=2)
    connected.services.clock = lambda: base + timedelta(seconds=1.5 * arrivals.count)

    runs = drain(connected)

    assert channel.messages - sent >= k and arrivals.count >= k  # one per write crmsync made
    assert [(r["trigger"], r["status"]) for r in runs] == [("crm", "ok"), ("push", "ok")]
    [follow_up] = [r for r in store(connected).runs(CONNECTION) if r["id"] == runs[1]["run"]]  # type: ignore[attr-defined]
    assert follow_up["counts"] == {}  # it found only the echoes: nothing to do


class Arrivals:
    """The queue as the webhooks reach it, counting the triggers that arrive."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.count = 0

    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        self.count += 1
        return bool(self.queue.enqueue(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)


@pytest.fixture
def slowed() -> Iterator[LocalStack]:
    wrapped: list[Slow] = []

    def wrap(app: Any) -> Any:
        wrapped.append(Slow(app))
        return wrapped[0]

    stack = LocalStack(MemoryBackend(), InlineQueue(), crm_wrap=wrap)
    stack.slow = wrapped[0]  # type: ignore[attr-defined]
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    drain(stack)
    yield stack
    stack.close()


def test_RUN3_triggers_that_find_a_cycle_running_bring_one_cycle_right_after_it(
    slowed: LocalStack,
) -> None:
    held = store(slowed)
    worker = slowed.functions_url + "/sync_worker"
    task = {"tenant": DEMO_TENANT, "connection": CONNECTION}
    slowed.slow.delay = 0.3  # type: ignore[attr-defined]
    running = threading.Thread(
        target=requests.post, args=(worker,), kwargs={"json": {**task, "trigger": "crm"}}
    )
    running.start()
    deadline = time.monotonic() + 30
    while held.lease_holder(CONNECTION) is None:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the cycle never took the connection"
        time.sleep(0.02)

    answers = [
        requests.post(worker, json={**task, "trigger": "push"}, timeout=30).json()["status"]
        for _ in range(3)
    ]
    running.join()
    slowed.slow.delay = 0  # type: ignore[attr-defined]
    ended = datetime.now(UTC)

    assert answers == ["busy"] * 3
    # asked for three times: one cycle, right after the echoes (not a minute later), and
    # one check, once the lease has run out, that the holder did not die unanswering
    follow_up, check = sorted(queue(slowed).waiting.values(), key=lambda t: t.not_before)
    assert follow_up.trigger == "push" and follow_up.not_before <= ended + DEBOUNCE
    assert check.trigger == "check"
    runs = [(r["trigger"], r["status"]) for r in drain(slowed)]
    assert runs == [("push", "ok"), ("check", "idle")]
