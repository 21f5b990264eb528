"""`make dev`'s queue demo does what the README's tour promises (the web-app issue: "the
demo holds a waiting conflict and a held delete to resolve"): after the demo's edits,
u1's queue holds a conflict on Grace Hopper's title and the held deletes of u1's two
to-dos, each of which the queue's use cases then settle (SYN-2, SYN-6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.usecases import queue
from sandbox.local.dev import _demo_conflict, _demo_held_delete, queue_demo_settings
from sandbox.local.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    queue_demo_settings(stack)
    service.work(stack.services, "demo", "google-u1", "connect")
    yield stack
    stack.close()


def test_SYN2_SYN6_the_dev_demo_leaves_a_conflict_and_a_held_delete_in_u1s_queue(
    stack: LocalStack,
) -> None:
    _demo_held_delete(stack)
    _demo_conflict(stack)
    service.work(stack.services, "demo", "google-u1", "crm")
    waiting = queue.waiting(stack.services, "demo", "google-u1")
    by_reason = {item["reason"] for item in waiting}
    assert by_reason == {"conflict", "mass_delete"}, waiting
    conflict = next(item for item in waiting if item["reason"] == "conflict")
    assert [(r["field"], r["crm"], r["provider"]) for r in conflict["rows"]] == [
        ("title", "Rear Admiral", "Professor")
    ]
    held = [item for item in waiting if item["reason"] == "mass_delete"]
    assert len(held) == 2 and len({item["batch"] for item in held}) == 1
    # settled as the web app settles them: the next cycle applies both
    queue.resolve(stack.services, "demo", "google-u1", conflict["id"], picks={"title": "provider"})
    queue.settle_batch(stack.services, "demo", "google-u1", held[0]["batch"], "restore")
    service.work(stack.services, "demo", "google-u1", "resolve")
    assert queue.waiting(stack.services, "demo", "google-u1") == []
    grace = next(c for c in stack.crm.all("demo", "contact") if c.get("last_name") == "Hopper")
    assert grace["title"] == "Professor"
    tasks = stack.google_api("tasks", "v1").tasks().list(tasklist="@default").execute()
    assert len(tasks.get("items", [])) == 2  # restored where they were deleted
