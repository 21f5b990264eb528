"""Bursts of triggers collapse (RUN-3). Triggers within the debounce window of a
connection share one cycle, however they fall across the task names' time windows and
however many threads of one function instance race with them: the instance asks Cloud
Tasks once. A waiting cycle takes in a trigger only when it reads what the trigger
needs and starts no later. Triggers that find a cycle running ask it for one cycle
more, after it ends; should it die first, a check once its lease ran out runs it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.bursts import DebouncedQueue
from crmsync.cycle import LEASE_SECONDS
from crmsync.errors import TransientError
from crmsync.queue import CHECK, DEBOUNCE, POLL, task_name
from crmsync.queue.inline import InlineQueue
from crmsync.testing import SyncWorld

# one second before a task name's window ends, so a burst from here spans two windows
EDGE = datetime(2026, 11, 2, 9, 0, 9, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = EDGE

    def __call__(self) -> datetime:
        return self.now


def notify(queue: DebouncedQueue, clock: Clock, trigger: str = "push", delay: Any = None) -> bool:
    """What a webhook (or, for a poll, the fan-out) does for connection c1."""
    wait = DEBOUNCE if delay is None else delay
    window = timedelta(minutes=1) if trigger == POLL else max(wait, timedelta(seconds=1))
    return queue.enqueue(
        "t1",
        "c1",
        name=task_name("t1", "c1", clock.now, window),
        not_before=clock.now + wait,
        trigger=trigger,
    )


def test_RUN3_a_burst_across_two_task_name_windows_is_one_cycle() -> None:
    inline, clock = InlineQueue(), Clock()
    queue = DebouncedQueue(inline, clock)

    for second in range(0, 9, 2):  # 09:00:09 to 09:00:17, across 09:00:10
        clock.now = EDGE + timedelta(seconds=second)
        notify(queue, clock)

    assert [task.not_before for task in inline.waiting.values()] == [EDGE + DEBOUNCE]
    assert queue.absorbed == 4


def test_RUN3_a_trigger_after_the_waiting_cycle_is_due_gets_a_cycle_of_its_own() -> None:
    inline, clock = InlineQueue(), Clock()
    queue = DebouncedQueue(inline, clock)
    notify(queue, clock)

    clock.now = EDGE + DEBOUNCE  # the first cycle is due: it may be reading already
    notify(queue, clock)

    assert len(inline.waiting) == 2


def test_RUN3_a_waiting_poll_takes_in_no_notification_but_a_waiting_cycle_takes_in_a_poll() -> None:
    inline, clock = InlineQueue(), Clock()
    queue = DebouncedQueue(inline, clock)

    notify(queue, clock, POLL, DEBOUNCE)  # a poll reads only some kinds
    notify(queue, clock, "push")
    assert [t.trigger for t in inline.waiting.values()] == [POLL, "push"]

    clock.now += timedelta(seconds=1)
    notify(queue, clock, POLL, DEBOUNCE)  # the waiting push cycle reads every kind
    notify(queue, clock, "crm")
    assert len(inline.waiting) == 2 and queue.absorbed == 2


def test_RUN3_a_trigger_wanting_its_cycle_sooner_than_the_waiting_one_is_not_held_back() -> None:
    inline, clock = InlineQueue(), Clock()
    queue = DebouncedQueue(inline, clock)
    notify(queue, clock, "retry", timedelta(minutes=5))  # throttled: back in five minutes

    notify(queue, clock, "crm")

    assert sorted(t.trigger for t in inline.waiting.values()) == ["crm", "retry"]


class SlowQueue(InlineQueue):
    """Cloud Tasks taking its time to answer, while other threads' triggers arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        time.sleep(0.05)
        return super().enqueue(*args, **kwargs)


def test_RUN3_racing_triggers_of_one_instance_ask_cloud_tasks_once() -> None:
    slow, clock = SlowQueue(), Clock()
    queue = DebouncedQueue(slow, clock)
    threads = [threading.Thread(target=notify, args=(queue, clock)) for _ in range(8)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert slow.calls == 1 and queue.absorbed == 7


class DownQueue(InlineQueue):
    def enqueue(self, *args: Any, **kwargs: Any) -> bool:
        raise TransientError("Cloud Tasks is unavailable")


def test_RUN3_a_trigger_whose_enqueue_failed_is_not_taken_for_waiting() -> None:
    clock = Clock()
    queue = DebouncedQueue(DownQueue(), clock)
    with pytest.raises(TransientError):
        notify(queue, clock)

    inline = InlineQueue()
    queue.queue = inline  # Cloud Tasks is back
    assert notify(queue, clock)
    assert len(inline.waiting) == 1


# -- triggers that find a cycle running -------------------------------------------------
def held_world() -> tuple[SyncWorld, datetime]:
    """A world whose connection another cycle holds; when that cycle's lease runs out."""
    world = SyncWorld()
    world.crm.create("todo", {"subject": "Call back", "due": "2026-11-04"})
    assert world.store.acquire_lease(world.connection.id, "other-run", world.now(), LEASE_SECONDS)
    return world, world.now() + timedelta(seconds=LEASE_SECONDS)


def test_RUN3_triggers_finding_a_cycle_running_ask_it_for_one_more_instead_of_waiting() -> None:
    world, expires = held_world()

    answers = [world.sync(trigger)["status"] for trigger in ("push", "crm", "push")]

    assert answers == ["busy"] * 3
    [check] = world.services.queue.waiting.values()  # type: ignore[attr-defined]
    assert (check.trigger, check.not_before) == (CHECK, expires + timedelta(seconds=1))
    assert world.store.release_lease(world.connection.id, "other-run") == "push"
    assert world.sync(CHECK)["status"] == "idle"  # the holder answered: no cycle here
    assert world.runs() == []


def test_RUN3_the_cycle_asked_of_a_holder_that_died_runs_once_its_lease_ran_out() -> None:
    world, expires = held_world()
    assert world.sync("push")["status"] == "busy"

    world.advance(expires - world.now() + timedelta(seconds=1))
    run = world.sync(CHECK)

    assert (run["status"], run["trigger"]) == ("ok", "push")
    assert [t["subject"] for t in world.provider.all("todo")] == ["Call back"]
