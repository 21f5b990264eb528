"""Kinds a provider pushes nothing for are polled between full cycles (RUN-2, RUN-3,
SET-1): Google pushes only Calendar's changes, so a Google connection's contacts and
to-dos are polled every `poll_minutes` (full cycles keep `frequency_minutes`). A poll
reads only those kinds' provider feeds and writes nothing when they show no change; a
cycle any notification triggers reads every kind."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crmsync import service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.errors import TransientError
from crmsync.queue import POLL
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.testing import SyncWorld

START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)


def meeting(subject: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": START,
        "end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
    }


def linked_world() -> tuple[SyncWorld, dict[str, str]]:
    """A Google world with one contact, meeting and to-do linked; the provider ids."""
    world = SyncWorld(provider="google")
    contact = world.crm.create(
        "contact", {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@example.com"]}
    )
    world.crm.add_to_sync_group(contact)
    world.crm.create("activity", meeting("Review"))
    world.crm.create("todo", {"subject": "Send offer", "due": date(2026, 11, 5)})
    world.sync()
    world.sync()  # reads the first cycle's echoes
    ids = {
        kind: str(world.links(kind)[0]["provider_id"]) for kind in ("contact", "activity", "todo")
    }
    return world, ids


def edit_at_google(world: SyncWorld, ids: dict[str, str]) -> None:
    world.provider.update("contact", ids["contact"], {"first_name": "Augusta"})
    world.provider.update("activity", ids["activity"], {"subject": "Review moved"})
    world.provider.update("todo", ids["todo"], {"subject": "Send the offer"})


def crm_values(world: SyncWorld) -> tuple[str, str, str]:
    [contact], [activity], [todo] = (world.crm.all(k) for k in ("contact", "activity", "todo"))
    return contact["first_name"], activity["subject"], todo["subject"]


def test_RUN3_a_poll_brings_google_contact_and_todo_edits_and_leaves_the_calendar_to_push() -> None:
    world, ids = linked_world()
    edit_at_google(world, ids)

    run = world.sync(POLL)

    assert (run["status"], run["trigger"]) == ("ok", POLL)
    assert run["counts"] == {"contact": {"update": 1}, "todo": {"update": 1}}
    assert crm_values(world) == ("Augusta", "Review", "Send the offer")
    world.sync("push")  # Calendar's push notification
    assert crm_values(world)[1] == "Review moved"


@pytest.mark.parametrize("trigger", ["push", "crm", "schedule"])
def test_RUN3_a_cycle_any_notification_triggers_reads_the_polled_kinds_too(trigger: str) -> None:
    world, ids = linked_world()
    edit_at_google(world, ids)

    world.sync(trigger)

    assert crm_values(world) == ("Augusta", "Review moved", "Send the offer")


def test_RUN3_an_idle_poll_reads_two_feeds_writes_nothing_and_records_no_run() -> None:
    world, _ = linked_world()
    world.advance(timedelta(minutes=3))  # past the margin a task listing trails by
    world.sync(POLL)  # moves that listing's cursor past the to-do it showed again
    runs, reads, writes = len(world.runs()), world.store.reads, world.store.writes

    answer = world.sync(POLL)

    assert answer["status"] == "idle"
    assert len(world.runs()) == runs
    assert world.store.writes == writes
    # the connection record (read by the world, then by the worker), the tenant record,
    # the grant where the world has one, and the cursors of the two polled kinds
    assert world.store.reads - reads <= 6


def test_RUN3_a_poll_that_sees_only_crmsyncs_own_writes_runs_no_cycle() -> None:
    world, _ = linked_world()
    [contact] = world.crm.all("contact")
    [todo] = world.crm.all("todo")
    world.crm.update("contact", contact["id"], {"title": "Countess"})
    world.crm.update("todo", todo["id"], {"subject": "Send offer today"})
    assert world.sync("crm")["counts"] == {"contact": {"update": 1}, "todo": {"update": 1}}
    runs = len(world.runs())

    polls = [world.sync(POLL)["status"] for _ in range(2)]

    assert polls == ["idle", "idle"]
    assert len(world.runs()) == runs


def test_RUN3_a_poll_finding_a_cycle_running_neither_waits_nor_asks_for_another() -> None:
    world, ids = linked_world()
    edit_at_google(world, ids)
    assert world.store.acquire_lease(world.connection.id, "other-run", world.now(), 120)

    run = world.sync(POLL)

    assert run["status"] == "busy"
    assert world.services.queue.waiting == {}  # type: ignore[attr-defined]
    assert world.store.release_lease(world.connection.id, "other-run") is None


def test_RUN3_a_connection_whose_provider_pushes_every_kind_is_never_polled() -> None:
    world = SyncWorld(provider="microsoft")
    world.sync()

    assert world.sync(POLL)["status"] == "idle"
    assert len(world.runs()) == 1


# -- the fan-out ------------------------------------------------------------------------
def fanout_services(backend: MemoryBackend, queue: InlineQueue, clock: Any) -> service.Services:
    return service.Services(
        backend=backend,
        queue=queue,
        vault=TokenVault(LocalKek(b"k" * 32)),
        secret=b"s",
        public_url="http://crmsync.invalid/",
        clock=clock,
    )


def test_RUN2_the_fanout_polls_between_full_cycles_at_one_read_per_due_connection() -> None:
    backend = MemoryBackend()
    store = backend.store("t1")
    store.save_tenant_record({"settings": {}})
    connections: dict[str, tuple[str, dict[str, Any]]] = {
        "google": ("google", {}),
        "google-5": ("google", {"poll_minutes": 5}),
        "google-calendar": ("google", {"enabled": {"contact": False, "todo": False}}),
        "microsoft": ("microsoft", {}),
    }
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for connection, (provider, settings) in connections.items():
        store.save_connection_record(
            connection,
            {"user": connection, "provider": provider, "settings": settings, "next_due": start},
        )
    queue = InlineQueue()
    now = [start]
    services = fanout_services(backend, queue, lambda: now[0])
    taken: dict[str, list[tuple[int, str]]] = {c: [] for c in connections}

    for minute in range(16):
        now[0] = start + timedelta(minutes=minute)
        reads = store.reads
        report = service.fanout(services)
        assert store.reads - reads <= report.enqueued + 1  # + the tenant's settings
        for task in queue.due(now[0]):
            taken[task.connection].append((minute, task.trigger))

    polls = [(m, POLL) for m in range(2, 15, 2)]
    assert taken["google"] == [(0, "schedule"), *polls, (15, "schedule")]
    assert taken["google-5"] == [(0, "schedule"), (5, POLL), (10, POLL), (15, "schedule")]
    assert taken["google-calendar"] == [(0, "schedule"), (15, "schedule")]
    assert taken["microsoft"] == [(0, "schedule"), (15, "schedule")]


class _Unreachable(InlineQueue):
    """Cloud Tasks that stops answering after `answered` tasks, until told to come back."""

    def __init__(self, answered: int) -> None:
        super().__init__()
        self.answered = answered
        self._lock = threading.Lock()  # the fan-out creates tasks from several threads

    def enqueue(self, tenant: str, connection: str, **task: Any) -> bool:
        with self._lock:
            if self.answered <= 0:
                raise TransientError("Cloud Tasks did not answer")
            self.answered -= 1
            return super().enqueue(tenant, connection, **task)


def test_RUN2_a_fanout_cut_short_by_the_queue_leaves_the_rest_due_and_skips_none() -> None:
    """Pages overlap (the next is read while one's tasks are created), yet a page's
    connections move only once all its tasks exist: the connections of the page that
    failed, and of every page after it, are still due and enqueued by the next tick,
    each once: a task is named by the due time it serves, not by the tick, so the next
    tick, a minute later, names the task it finds already made as the first did."""
    backend = MemoryBackend()
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    for t in range(2):
        store = backend.store(f"t{t}")
        store.save_tenant_record({"settings": {}})
        for c in range(10):
            store.save_connection_record(
                f"c{c}", {"user": f"u{c}", "provider": "microsoft", "next_due": start}
            )
    queue = _Unreachable(answered=9)  # the third page of 4 fails at its second task
    now = [start]
    services = fanout_services(backend, queue, lambda: now[0])

    with pytest.raises(TransientError):
        service.fanout(services, page_size=4, threads=3)

    still_due = {(d.tenant, d.connection) for d in backend.due(start, 100)}
    assert len(still_due) == 20 - 8  # the first two pages moved, nothing after them
    queue.answered = 100
    now[0] = start + timedelta(minutes=1)  # the next tick
    report = service.fanout(services, page_size=4, threads=3)

    assert report.enqueued == 20 - 9 and report.collapsed == 1  # its task already waits
    assert {(q.tenant, q.connection) for q in queue.waiting.values()} == {
        (f"t{t}", f"c{c}") for t in range(2) for c in range(10)
    }
    assert backend.due(now[0], 100) == []
