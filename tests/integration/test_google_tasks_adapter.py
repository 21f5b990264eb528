"""The Google Tasks adapter (crmsync.providers.google.tasks) against the Google sandbox
over a real socket, through the real google-api-python-client: the ProviderAccount
promises hold for to-dos (TSK-1, TSK-2, SYN-4, RUN-4, SET-1)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from werkzeug.serving import make_server

from crmsync.engine.plan import Write
from crmsync.errors import Conflict, CursorExpired, NotFound
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.tasks import HELD, RECHECK_WRITES, GoogleTasks
from sandbox.google.core import TASKS_SCOPES, GoogleSandbox, Router
from sandbox.google.server import routes, serve
from sandbox.google.tasks import complete_in_google_app, stored_tasks

pytestmark = pytest.mark.integration

EMAIL = "dana@example.com"
DUE = date(2026, 11, 20)


def no_links(task_id: str) -> bool:
    """No task is linked yet (these tests keep no store)."""
    return False


class Clock:
    """The time of the sandbox and of the adapter, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    google: GoogleSandbox
    base: str
    clock: Clock

    def client(self, sleep: Callable[[float], None] = lambda s: None) -> GoogleClient:
        """A client of its own, as a new process would build it."""
        token = self.google.issue_token(EMAIL, TASKS_SCOPES, seconds=86400)
        return GoogleClient(Credentials(token), {"tasks": self.base}, sleep=sleep)

    def adapter(
        self, tasklist: str = "@default", claimed: Callable[[str], bool] = no_links
    ) -> GoogleTasks:
        """The adapter as a new process builds it; by default no task is linked yet."""
        return GoogleTasks(self.client(), tasklist, claimed=claimed, clock=self.clock)

    def stored(self, tasklist: str = "@default") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = stored_tasks(self.google, EMAIL, tasklist)
        return found


@pytest.fixture
def world() -> Iterator[World]:
    clock = Clock()
    google = GoogleSandbox(clock)
    base, stop = serve(google, modules=["tasks"])
    yield World(google, base, clock)
    stop()


def todo(**fields: Any) -> dict[str, Any]:
    held = {"subject": "Call Bob", "due": DUE, "status": "open", "notes": "about the renewal"}
    held.update(fields)
    return held


def create(tasks: GoogleTasks, key: str = "key-1", **fields: Any) -> str:
    return tasks.create(Write("provider", "create", "todo", fields=todo(**fields), key=key)).id


def update(tasks: GoogleTasks, task_id: str, version: str | None = None, **fields: Any) -> str:
    write = Write("provider", "update", "todo", task_id, fields, version)
    return tasks.update(write).version


def user_adds(world: World, title: str, tasklist: str = "@default", **fields: Any) -> str:
    """A task the user makes in Google's own apps."""
    service = world.client().service("tasks", "v1")
    body = {"title": title, **fields}
    answer = service.tasks().insert(tasklist=tasklist, body=body).execute(num_retries=0)
    return str(answer["id"])


def by_id(records: Iterable[Any]) -> dict[str, Any]:
    return {r.id: r for r in records}


# -- TSK-1: the mapping ----------------------------------------------------------------------
def test_TSK1_subject_due_status_and_notes_round_trip(world: World) -> None:
    tasks = world.adapter()

    task_id = create(tasks)

    assert tasks.get(task_id).fields == todo()
    assert by_id(tasks.changes(None).records)[task_id].fields == todo()
    (stored,) = world.stored()
    assert (stored["title"], stored["notes"], stored["status"]) == (
        "Call Bob",
        "about the renewal",
        "needsAction",
    )
    assert stored["due"] == "2026-11-20T00:00:00.000Z"


def test_TSK1_completing_stamps_the_task_and_reopening_clears_the_stamp(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)

    update(tasks, task_id, status="completed")
    (done,) = world.stored()
    assert tasks.get(task_id).fields["status"] == "completed"  # type: ignore[index]
    update(tasks, task_id, status="open")
    (reopened,) = world.stored()

    assert (done["status"], "completed" in done) == ("completed", True)
    assert (reopened["status"], "completed" in reopened) == ("needsAction", False)
    assert tasks.get(task_id).fields["status"] == "open"  # type: ignore[index]


def test_TSK1_update_patches_only_the_fields_given(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    service = world.client().service("tasks", "v1")
    service.tasks().patch(
        tasklist="@default", task=task_id, body={"notes": "edited in Google"}
    ).execute(num_retries=0)

    update(tasks, task_id, subject="Call Bob back", due=None)

    assert tasks.get(task_id).fields == todo(
        subject="Call Bob back", due=None, notes="edited in Google"
    )


def test_SYN8_an_update_of_fields_a_task_does_not_hold_writes_nothing(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    before = tasks.get(task_id).version

    after = update(tasks, task_id, before, priority="high")

    assert after == before
    assert world.stored()[0]["etag"] == before


@pytest.mark.parametrize(
    "due", [date(2026, 12, 31), date(2027, 1, 1), date(2028, 2, 29), date(2026, 3, 29)]
)
def test_TSK1_due_is_a_date_that_never_shifts(world: World, due: date) -> None:
    tasks = world.adapter()
    task_id = create(tasks, due=due)
    moved = due + timedelta(days=1)

    assert tasks.get(task_id).fields["due"] == due  # type: ignore[index]
    update(tasks, task_id, due=moved)
    assert tasks.get(task_id).fields["due"] == moved  # type: ignore[index]


def test_TSK1_a_due_another_client_wrote_with_an_offset_keeps_its_date(world: World) -> None:
    tasks = world.adapter()
    task_id = user_adds(world, "Late", due="2026-03-01T23:30:00-05:00")

    assert tasks.get(task_id).fields["due"] == date(2026, 3, 1)  # type: ignore[index]


def test_TSK1_a_task_completed_and_hidden_in_googles_app_reads_as_completed(
    world: World,
) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    cursor = tasks.changes(None).cursor

    complete_in_google_app(world.google, EMAIL, task_id)

    (record,) = tasks.changes(cursor).records
    assert world.stored()[0]["hidden"] is True
    assert (record.id, record.gone, record.fields) == (task_id, False, todo(status="completed"))
    assert tasks.get(task_id).fields == todo(status="completed")


# -- TSK-2: the first listing ------------------------------------------------------------------
def test_TSK2_the_first_listing_holds_every_task_with_subject_and_due(world: World) -> None:
    tasks = world.adapter()
    open_id = user_adds(world, "Open one", due="2026-11-05T00:00:00.000Z")
    done_id = user_adds(world, "Done one", status="completed")
    hidden_id = user_adds(world, "Hidden one")
    complete_in_google_app(world.google, EMAIL, hidden_id)
    deleted_id = user_adds(world, "Deleted one")
    tasks.delete(Write("provider", "delete", "todo", deleted_id))

    records = by_id(tasks.changes(None).records)

    assert records[open_id].fields["subject"] == "Open one"
    assert records[open_id].fields["due"] == date(2026, 11, 5)
    assert records[done_id].fields["status"] == "completed"
    assert records[hidden_id].fields["status"] == "completed"
    assert records[deleted_id].fields is None
    assert set(records[open_id].fields) == set(HELD)


# -- RUN-4: polling ----------------------------------------------------------------------------
def test_RUN4_polling_returns_changes_and_deletions_since_the_cursor_only(world: World) -> None:
    tasks = world.adapter()
    old = create(tasks, key="old", subject="Old")
    edited = create(tasks, key="edited", subject="Edited")
    deleted = create(tasks, key="deleted", subject="Deleted")
    world.clock.advance(minutes=10)
    newest = create(tasks, key="newest", subject="Newest")
    first = tasks.changes(None)
    world.clock.advance(minutes=10)

    update(tasks, edited, subject="Edited again")
    tasks.delete(Write("provider", "delete", "todo", deleted))
    page = by_id(tasks.changes(first.cursor).records)

    assert set(page) == {edited, deleted, newest}  # `newest` is inside the safety margin
    assert old not in page
    assert page[edited].fields["subject"] == "Edited again"
    assert page[deleted].fields is None
    assert page[newest].version == by_id(first.records)[newest].version


def test_RUN4_a_task_stamped_just_before_the_newest_one_seen_is_not_missed(
    world: World,
) -> None:
    tasks = world.adapter()
    create(tasks, key="seen", subject="Seen")
    cursor = tasks.changes(None).cursor
    # A write stamped a minute earlier that only became visible after the listing.
    world.clock.advance(minutes=-1)
    late = user_adds(world, "Late to the listing")
    world.clock.advance(minutes=1)

    assert late in by_id(tasks.changes(cursor).records)


def test_RUN4_a_quiet_list_is_not_listed_again_once_the_margin_has_passed(world: World) -> None:
    tasks = world.adapter()
    create(tasks, key="one", subject="One")
    first = tasks.changes(None)
    world.clock.advance(minutes=15)  # the next scheduled cycle
    second = tasks.changes(first.cursor)

    world.clock.advance(minutes=15)
    third = tasks.changes(second.cursor)

    assert [r.fields["subject"] for r in second.records] == ["One"]  # type: ignore[index]
    assert third.records == []


def test_RUN4_polling_reads_every_page(world: World) -> None:
    tasks = world.adapter()
    made = {user_adds(world, f"Task {n}") for n in range(130)}

    first = tasks.changes(None)
    world.clock.advance(minutes=10)
    later = user_adds(world, "One more")

    assert {r.id for r in first.records} == made
    assert later in by_id(tasks.changes(first.cursor).records)


def test_RUN4_an_empty_list_polls_whole_until_a_task_appears(world: World) -> None:
    tasks = world.adapter()
    first = tasks.changes(None)
    world.clock.advance(hours=3)

    task_id = user_adds(world, "First task")

    assert first.records == []
    assert [r.id for r in tasks.changes(first.cursor).records] == [task_id]


def test_RUN4_an_unreadable_cursor_is_an_expired_cursor(world: World) -> None:
    tasks = world.adapter()

    for cursor in ("not json", '{"list": "@default", "after": "yesterday"}', "[]"):
        with pytest.raises(CursorExpired):
            tasks.changes(cursor)


def test_RUN4_a_missing_task_reads_as_gone_and_deleting_it_again_is_not_found(
    world: World,
) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    tasks.delete(Write("provider", "delete", "todo", task_id))

    unknown = tasks.get("no-such-task")
    assert (unknown.version, unknown.fields) == ("0", None)
    assert tasks.get(task_id).fields is None
    with pytest.raises(NotFound):
        tasks.delete(Write("provider", "delete", "todo", task_id))
    with pytest.raises(NotFound):
        tasks.delete(Write("provider", "delete", "todo", "no-such-task"))
    with pytest.raises(NotFound):
        update(tasks, task_id, tasks.get(task_id).version, subject="Too late")
    with pytest.raises(NotFound):
        update(tasks, task_id, subject="Too late")


def test_RUN4_throttling_and_unavailability_are_retried(world: World) -> None:
    waits: list[float] = []
    tasks = GoogleTasks(world.client(sleep=waits.append), claimed=no_links, clock=world.clock)
    world.google.inject(429, reason="rateLimitExceeded", retry_after=2)
    world.google.inject(503, reason="backendError")
    world.google.inject(503, reason="backendError", method="POST")

    assert tasks.changes(None).records == []
    task_id = create(tasks)

    assert waits == [2.0, 1.0, 0.5]
    assert [t["id"] for t in world.stored()] == [task_id]


# -- SYN-4: idempotent writes ------------------------------------------------------------------
def test_SYN4_a_create_retried_with_the_same_key_after_a_crash_makes_one_task(
    world: World,
) -> None:
    first = create(world.adapter(), key="to-do-7")
    world.clock.advance(minutes=20)

    again = create(world.adapter(), key="to-do-7")  # a new process resumes the create

    assert again == first
    assert [t["id"] for t in world.stored()] == [first]


def test_SYN4_identical_todos_each_get_a_task_and_a_resumed_create_finds_its_own(
    world: World,
) -> None:
    tasks = world.adapter()
    a = create(tasks, key="to-do-a")
    b = create(tasks, key="to-do-b")
    assert a != b
    assert create(tasks, key="to-do-a") == a

    linked = {a}  # the run died after making b's task, before its link was stored
    resumed = world.adapter(claimed=linked.__contains__)
    assert create(resumed, key="to-do-b") == b
    linked.add(b)
    c = create(world.adapter(claimed=linked.__contains__), key="to-do-c")

    assert c not in (a, b)
    assert len(world.stored()) == 3


def test_SYN4_a_create_never_takes_a_task_deleted_since_it_was_listed(world: World) -> None:
    tasks = world.adapter()
    users = user_adds(world, "Call Bob", due="2026-11-20T00:00:00.000Z", notes="about the renewal")
    create(tasks, key="other", subject="Something else")  # lists the recent tasks
    tasks.delete(Write("provider", "delete", "todo", users))

    made = create(tasks, key="to-do-9")

    assert made != users
    assert tasks.get(made).fields == todo()


def test_SYN4_one_look_up_listing_serves_a_burst_of_creates(world: World) -> None:
    tasks = world.adapter()
    for n in range(5):
        create(tasks, key=f"to-do-{n}", subject=f"To-do {n}")
    calls = tasks.client.calls
    world.clock.advance(minutes=5)
    create(tasks, key="to-do-later", subject="Later")

    assert calls == 5 + 1  # five inserts, one listing
    assert tasks.client.calls == calls + 2  # a later create lists again
    assert len(world.stored()) == 6


def test_SYN4_an_insert_whose_answer_was_lost_is_not_made_twice(world: World) -> None:
    losing = LosesAnswers(Router(world.google, routes(world.google, ["tasks"])))
    with served(losing) as base:
        token = world.google.issue_token(EMAIL, TASKS_SCOPES, seconds=86400)
        client = GoogleClient(Credentials(token), {"tasks": base}, sleep=lambda s: None)
        tasks = GoogleTasks(client, claimed=no_links, clock=world.clock)
        losing.lose_next_post = True

        task_id = create(tasks)

    assert losing.lost == 1
    assert [t["id"] for t in world.stored()] == [task_id]


def test_SYN4_update_from_a_stale_version_is_a_conflict(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    before = tasks.get(task_id).version
    update(tasks, task_id, before, subject="Call Bob today")

    with pytest.raises(Conflict):
        update(tasks, task_id, before, subject="Call Bob tomorrow")
    with pytest.raises(Conflict):
        tasks.delete(Write("provider", "delete", "todo", task_id, version=before))

    assert tasks.get(task_id).fields["subject"] == "Call Bob today"  # type: ignore[index]


def user_edits(world: World, task_id: str, **body: Any) -> None:
    """The user changes a task in Google's own apps."""
    service = world.client().service("tasks", "v1")
    service.tasks().patch(tasklist="@default", task=task_id, body=body).execute(num_retries=0)


def requests_during(world: World, act: Callable[[], Any]) -> dict[str, int]:
    """The requests the sandbox answered while `act` ran, per HTTP method."""
    before = dict(world.google.requests)
    act()
    after = world.google.requests
    return {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}


def test_SYN4_updates_after_a_feed_read_cost_one_listing_and_a_patch_each(world: World) -> None:
    tasks = world.adapter()
    made = [create(tasks, f"key-{n}", subject=f"Call {n}") for n in range(5)]
    world.clock.advance(minutes=10)
    fresh = world.adapter()  # the next cycle's process
    versions = {r.id: r.version for r in fresh.changes(None).records}

    def update_all() -> None:
        for n, task_id in enumerate(made):
            update(fresh, task_id, versions[task_id], notes=f"note {n}")

    # five patches and one listing of what changed since the feed, not five reads
    assert requests_during(world, update_all) == {"GET": 1, "PATCH": 5}
    assert sorted(t["notes"] for t in world.stored()) == [f"note {n}" for n in range(5)]


def test_SYN4_a_task_the_user_changed_after_the_feed_read_is_a_conflict_not_overwritten(
    world: World,
) -> None:
    tasks = world.adapter()
    task_id, other = create(tasks, "key-1"), create(tasks, "key-2", subject="Email Ann")
    world.clock.advance(minutes=10)
    cursor = tasks.changes(None).cursor
    world.clock.advance(minutes=10)
    read = by_id(tasks.changes(cursor).records)
    versions = {t["id"]: t["etag"] for t in world.stored()}
    assert read == {}  # nothing changed since the cursor: the links' versions hold

    world.clock.advance(seconds=0.2)
    user_edits(world, task_id, title="Call Bob at noon")  # after the feed read
    with pytest.raises(Conflict):
        update(tasks, task_id, versions[task_id], subject="Call Bob today")
    assert update(tasks, other, versions[other], subject="Email Ann today")

    world.clock.advance(seconds=6)  # the listing is older than RECHECK: listed again
    user_edits(world, other, title="Email Ann and Bob")
    with pytest.raises(Conflict):
        update(tasks, other, versions[other], notes="x")
    with pytest.raises(Conflict):
        tasks.delete(Write("provider", "delete", "todo", other, version=versions[other]))

    titles = {t["id"]: t["title"] for t in world.stored()}
    assert titles == {task_id: "Call Bob at noon", other: "Email Ann and Bob"}


def test_SYN4_a_burst_of_updates_lists_the_changes_again_every_few_writes(world: World) -> None:
    tasks = world.adapter()
    made = [create(tasks, f"key-{n}", subject=f"Call {n}") for n in range(2 * RECHECK_WRITES + 1)]
    world.clock.advance(minutes=10)
    fresh = world.adapter()
    versions = {r.id: r.version for r in fresh.changes(None).records}
    *burst, last = made

    def update_the_burst() -> None:
        for task_id in burst:
            world.clock.advance(seconds=0.05)
            update(fresh, task_id, versions[task_id], notes="updated")

    # a listing before the first write and one after RECHECK_WRITES writes
    assert requests_during(world, update_the_burst) == {"GET": 2, "PATCH": len(burst)}

    user_edits(world, last, title="Call the last one at noon")
    # RECHECK_WRITES more writes made: listed again, and the user's edit is seen
    with pytest.raises(Conflict):
        update(fresh, last, versions[last], notes="updated")
    assert {t["id"]: t["title"] for t in world.stored()}[last] == "Call the last one at noon"


def test_SYN4_a_task_deleted_after_the_feed_read_is_not_found_for_an_update_or_delete(
    world: World,
) -> None:
    tasks = world.adapter()
    first, second = create(tasks, "key-1"), create(tasks, "key-2", subject="Email Ann")
    world.clock.advance(minutes=10)
    versions = {r.id: r.version for r in tasks.changes(None).records}
    service = world.client().service("tasks", "v1")
    for task_id in (first, second):
        service.tasks().delete(tasklist="@default", task=task_id).execute(num_retries=0)

    with pytest.raises(NotFound):
        update(tasks, first, versions[first], subject="Too late")
    with pytest.raises(NotFound):
        tasks.delete(Write("provider", "delete", "todo", second, version=versions[second]))


def test_SYN4_a_task_written_twice_in_a_cycle_is_not_its_own_conflict(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    world.clock.advance(minutes=10)
    version = by_id(tasks.changes(None).records)[task_id].version

    version = update(tasks, task_id, version, subject="Call Bob today")
    world.clock.advance(seconds=6)  # listed again: the task's own write shows in it
    version = update(tasks, task_id, version, notes="bring the contract")
    tasks.delete(Write("provider", "delete", "todo", task_id, version=version))

    assert tasks.get(task_id).fields is None


def test_SYN4_an_update_returns_the_version_the_next_listing_shows(world: World) -> None:
    tasks = world.adapter()
    task_id = create(tasks)
    cursor = tasks.changes(None).cursor

    version = update(tasks, task_id, tasks.get(task_id).version, notes="new notes")

    assert by_id(tasks.changes(cursor).records)[task_id].version == version


# -- SET-1: the selected task list -------------------------------------------------------------
def test_SET1_the_selected_task_list_is_used(world: World) -> None:
    service = world.client().service("tasks", "v1")
    crm_list = service.tasklists().insert(body={"title": "CRM"}).execute(num_retries=0)["id"]
    tasks = world.adapter(crm_list)
    user_adds(world, "In My Tasks")

    task_id = create(tasks)
    update(tasks, task_id, tasks.get(task_id).version, subject="Moved on")
    page = tasks.changes(None)

    assert [t["id"] for t in world.stored(crm_list)] == [task_id]
    assert [t["title"] for t in world.stored()] == ["In My Tasks"]
    assert [r.id for r in page.records] == [task_id]
    with pytest.raises(CursorExpired):  # a cursor of another list lists this one whole
        world.adapter().changes(page.cursor)


# -- helpers: a sandbox that loses one answer ----------------------------------------------------
class LosesAnswers:
    """The sandbox, except that it can lose the answer to a POST after serving it: the
    task is made, the client hears 503 (as when Google's answer never arrives)."""

    def __init__(self, app: Router) -> None:
        self.app = app
        self.lose_next_post = False
        self.lost = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not (self.lose_next_post and environ["REQUEST_METHOD"] == "POST"):
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        self.lose_next_post = False
        self.lost += 1
        b"".join(self.app(environ, lambda status, headers, exc_info=None: None))
        body = {"error": {"code": 503, "message": "lost", "errors": [{"reason": "backendError"}]}}
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """A WSGI app on a free local port for the length of a `with` block; its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/"
    finally:
        server.shutdown()
        server.server_close()
