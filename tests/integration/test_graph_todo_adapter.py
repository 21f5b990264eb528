"""The Microsoft To Do adapter (crmsync.providers.microsoft.todo) against the Microsoft
Graph sandbox over https: the ProviderAccount promises hold for to-dos (TSK-1, TSK-3,
SYN-4, SYN-5, SYN-10, RUN-4, SET-1) and Graph's errors read as crmsync's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import requests

from crmsync.engine.plan import Write
from crmsync.errors import Conflict, CursorExpired, NotFound, TransientError
from crmsync.model import normalize
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.todo import EXTENSION, HELD, GraphTasks
from crmsync.transforms import CustomMap
from sandbox.microsoft.graph import expire_delta_links
from sandbox.microsoft.todo import state_of
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def client_of(graph: Graph, **kw: Any) -> GraphClient:
    kw.setdefault("sleep", lambda s: None)
    return GraphClient(graph.token, f"{graph.base}/v1.0", graph.session, **kw)


def tasks_of(graph: Graph, task_list: str = "default", **kw: Any) -> GraphTasks:
    """The adapter as a new process builds it."""
    timezone = kw.pop("timezone", "UTC")
    return GraphTasks(client_of(graph, **kw), task_list, timezone=timezone)


def todo(**fields: Any) -> dict[str, Any]:
    raw = {
        "subject": "Send Grace the contract",
        "start": date(2026, 11, 16),
        "due": date(2026, 11, 20),
        "status": "in_progress",
        "priority": "high",
        "notes": "Second draft.\nCheck clause 4.",
        "recurrence": "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR;COUNT=6",
        **fields,
    }
    normalized = normalize("todo", raw)
    return {name: normalized[name] for name in HELD}


def create(tasks: GraphTasks, key: str = "todo-crm-T1", ref: str = "T1", **fields: Any) -> str:
    write = Write("provider", "create", "todo", fields=todo(**fields), key=key, ref=ref)
    return tasks.create(write).id


def update(tasks: GraphTasks, task_id: str, version: str | None, **fields: Any) -> str:
    write = Write("provider", "update", "todo", target=task_id, fields=fields, version=version)
    return tasks.update(write).version


def list_path(graph: Graph, name: str | None = None) -> str:
    lists = graph.ok(graph.get("me/todo/lists"))["value"]
    wanted = next(
        x
        for x in lists
        if (x["displayName"] == name if name else x["wellknownListName"] == "defaultList")
    )
    return f"me/todo/lists/{wanted['id']}/tasks"


def live_titles(graph: Graph) -> list[str]:
    state = state_of(graph.sandbox.users[EMAIL])
    return sorted(str(t.fields.get("title")) for t in state.tasks.values() if not t.deleted)


# -- fields ------------------------------------------------------------------------------------
def test_TSK1_every_mapped_field_round_trips(graph: Graph) -> None:
    tasks = tasks_of(graph)

    task_id = create(tasks)

    record = tasks.get(task_id)
    assert record.fields == todo()
    assert (record.ref, record.error, record.reminder) == ("T1", None, "off")
    assert record.modified is not None and record.version.startswith('W/"')


def test_TSK1_the_task_holds_graphs_todo_task_shape(graph: Graph) -> None:
    task_id = create(tasks_of(graph, timezone="Europe/Berlin"))

    task = graph.ok(graph.get(f"{list_path(graph)}/{task_id}"))
    assert (task["title"], task["status"], task["importance"]) == (
        "Send Grace the contract",
        "inProgress",
        "high",
    )
    assert task["body"] == {"content": "Second draft.\nCheck clause 4.", "contentType": "text"}
    assert task["dueDateTime"] == {
        "dateTime": "2026-11-20T00:00:00.0000000",
        "timeZone": "Europe/Berlin",
    }
    assert task["recurrence"] == {
        "pattern": {
            "type": "weekly",
            "interval": 2,
            "daysOfWeek": ["monday", "friday"],
            "firstDayOfWeek": "sunday",
        },
        "range": {"type": "numbered", "startDate": "2026-11-20", "numberOfOccurrences": 6},
    }


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "UTC", "America/Los_Angeles"])
def test_TSK1_dates_written_in_any_zone_read_back_unshifted(graph: Graph, zone: str) -> None:
    tasks = tasks_of(graph, timezone=zone)

    record = tasks.get(create(tasks, due=date(2026, 12, 31), start=date(2026, 1, 1)))

    assert record.fields is not None
    assert (record.fields["start"], record.fields["due"]) == (date(2026, 1, 1), date(2026, 12, 31))


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("Europe/Berlin", "2026-11-19T23:00:00.0000000"),  # midnight in Berlin, as UTC
        ("America/Los_Angeles", "2026-11-20T08:00:00.0000000"),
        ("Asia/Tokyo", "2026-11-19T15:00:00.0000000"),
    ],
)
def test_TSK1_a_due_date_graph_shows_as_a_utc_instant_keeps_its_day(
    graph: Graph, zone: str, shown: str
) -> None:
    made = graph.ok(
        graph.post(
            list_path(graph),
            {"title": "Call Grace", "dueDateTime": {"dateTime": shown, "timeZone": "UTC"}},
        ),
        201,
    )

    record = tasks_of(graph, timezone=zone).get(made["id"])

    assert record.fields is not None and record.fields["due"] == date(2026, 11, 20)


@pytest.mark.parametrize(
    "rule",
    [
        "RRULE:FREQ=DAILY",
        "RRULE:FREQ=DAILY;INTERVAL=3;UNTIL=20270131",
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=20",
        "RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=12",
        "RRULE:FREQ=YEARLY;BYMONTHDAY=20;BYMONTH=11",
        "RRULE:FREQ=YEARLY;BYDAY=2TU;BYMONTH=3",
    ],
)
def test_TSK1_recurrence_round_trips(graph: Graph, rule: str) -> None:
    tasks = tasks_of(graph)

    record = tasks.get(create(tasks, recurrence=rule))

    assert record.fields is not None and record.fields["recurrence"] == rule


def test_TSK1_update_patches_only_the_fields_given(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)
    before = tasks.get(task_id)

    update(tasks, task_id, before.version, subject="Send Grace the signed contract")

    after = tasks.get(task_id)
    assert after.fields == {**todo(), "subject": "Send Grace the signed contract"}


# -- statuses ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "written", "read"),
    [
        ("open", "notStarted", "open"),
        ("in_progress", "inProgress", "in_progress"),
        ("completed", "completed", "completed"),
        ("cancelled", "completed", "completed"),
    ],
)
def test_TSK3_statuses_are_written_as_to_dos(
    graph: Graph, status: str, written: str, read: str
) -> None:
    tasks = tasks_of(graph)

    task_id = create(tasks, status=status)

    assert graph.ok(graph.get(f"{list_path(graph)}/{task_id}"))["status"] == written
    record = tasks.get(task_id)
    assert record.fields is not None and record.fields["status"] == read


@pytest.mark.parametrize(
    ("status", "read"),
    [
        ("notStarted", "open"),
        ("inProgress", "in_progress"),
        ("completed", "completed"),
        ("waitingOnOthers", "open"),
        ("deferred", "open"),
    ],
)
def test_TSK3_statuses_set_in_to_do_read_as_crm_statuses(
    graph: Graph, status: str, read: str
) -> None:
    made = graph.ok(graph.post(list_path(graph), {"title": "Call Grace", "status": status}), 201)

    record = tasks_of(graph).get(made["id"])

    assert record.fields is not None and record.fields["status"] == read


def test_TSK3_reopening_a_completed_task_clears_its_completion(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks, status="completed")

    update(tasks, task_id, tasks.get(task_id).version, status="open")

    task = graph.ok(graph.get(f"{list_path(graph)}/{task_id}"))
    assert task["status"] == "notStarted" and "completedDateTime" not in task


# -- creates -----------------------------------------------------------------------------------
def test_SYN4_a_create_retried_with_the_same_key_makes_one_task(graph: Graph) -> None:
    first = create(tasks_of(graph))

    again = create(tasks_of(graph))  # a resumed cycle, in a new process

    assert again == first
    assert live_titles(graph) == ["Send Grace the contract"]


class LosesAnswers(requests.Session):
    """A session whose next `losses` POSTs reach Graph but whose answers are lost."""

    def __init__(self, ca: str, losses: int) -> None:
        super().__init__()
        self.trust_env, self.verify, self.losses = False, ca, losses

    def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> Any:
        answer = super().request(method, url, *a, **kw)
        if method == "POST" and self.losses > 0:
            self.losses -= 1
            raise requests.ConnectionError("the answer was lost")
        return answer


def test_SYN4_a_create_whose_answer_was_lost_is_not_made_twice(graph: Graph) -> None:
    session = LosesAnswers(graph.ca, losses=0)
    tasks = GraphTasks(
        GraphClient(graph.token, f"{graph.base}/v1.0", session, sleep=lambda s: None)
    )
    create(tasks, key="todo-crm-T0", ref="T0", subject="Earlier")  # the listing is held
    session.losses = 1

    with pytest.raises(TransientError):
        create(tasks)
    again = create(tasks)

    assert live_titles(graph) == ["Earlier", "Send Grace the contract"]
    assert tasks.get(again).ref == "T1"


def test_SYN4_different_keys_make_different_tasks(graph: Graph) -> None:
    tasks = tasks_of(graph)

    first = create(tasks, key="todo-crm-T1", ref="T1")
    second = create(tasks, key="todo-crm-T2", ref="T2")

    assert first != second
    assert [tasks.get(first).ref, tasks.get(second).ref] == ["T1", "T2"]


def test_SYN4_a_stale_version_is_a_conflict(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)
    stale = tasks.get(task_id).version
    graph.ok(graph.patch(f"{list_path(graph)}/{task_id}", {"title": "Edited in To Do"}))

    with pytest.raises(Conflict):
        update(tasks, task_id, stale, subject="From the CRM")

    assert live_titles(graph) == ["Edited in To Do"]


def test_SYN4_an_update_returns_the_version_the_next_read_shows(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)

    version = update(tasks, task_id, tasks.get(task_id).version, priority="low")

    assert tasks.get(task_id).version == version


def test_a_deleted_task_reads_as_gone_and_deleting_it_again_is_not_found(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)

    tasks.delete(Write("provider", "delete", "todo", target=task_id))

    assert tasks.get(task_id).gone
    with pytest.raises(NotFound):
        tasks.delete(Write("provider", "delete", "todo", target=task_id))


# -- change feed -------------------------------------------------------------------------------
def test_RUN4_delta_reports_changes_and_removals_since_the_cursor(graph: Graph) -> None:
    tasks = tasks_of(graph)
    kept = create(tasks, key="todo-crm-T1", ref="T1")
    dropped = create(tasks, key="todo-crm-T2", ref="T2", subject="Book the venue")
    first = tasks.changes(None)
    assert {r.id: r.ref for r in first.records} == {kept: "T1", dropped: "T2"}

    graph.ok(graph.patch(f"{list_path(graph)}/{kept}", {"title": "Edited in To Do"}))
    graph.ok(graph.delete(f"{list_path(graph)}/{dropped}"), 204)
    later = tasks.changes(first.cursor)

    seen = {r.id: r for r in later.records}
    assert set(seen) == {kept, dropped}
    assert seen[kept].fields is not None and seen[kept].fields["subject"] == "Edited in To Do"
    assert seen[kept].ref == "T1"
    assert seen[dropped].gone
    assert tasks.changes(later.cursor).records == []


def test_RUN4_delta_reads_every_page(graph: Graph) -> None:
    tasks = tasks_of(graph)
    made = {create(tasks, key=f"todo-crm-{n}", ref=str(n), subject=f"To-do {n}") for n in range(7)}

    with_small_pages = GraphTasks(client_of(graph), "default")
    with_small_pages.client.pages = _small_pages(with_small_pages.client)  # type: ignore[method-assign]

    assert {r.id for r in with_small_pages.changes(None).records} == made


def _small_pages(client: GraphClient) -> Any:
    original = client.pages

    def pages(path: str, what: str, params: Any = None, page_size: int = 3) -> Any:
        return original(path, what, params, page_size=3)

    return pages


def test_RUN4_an_expired_delta_link_is_cursor_expired_then_a_full_round(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)
    cursor = tasks.changes(None).cursor
    expire_delta_links(graph.sandbox, EMAIL)

    with pytest.raises(CursorExpired):
        tasks.changes(cursor)
    full = tasks.changes(None)

    assert [(r.id, r.ref) for r in full.records] == [(task_id, "T1")]


# -- bad records and reminders -----------------------------------------------------------------
def test_SYN5_an_unreadable_task_fails_alone(graph: Graph) -> None:
    tasks = tasks_of(graph)
    good = create(tasks, key="todo-crm-T1", ref="T1")
    bad = create(tasks, key="todo-crm-T2", ref="T2", subject="Book the venue")
    state = state_of(graph.sandbox.users[EMAIL])
    state.tasks[bad].fields["dueDateTime"] = {
        "dateTime": "2026-11-20T10:00:00.0000000",
        "timeZone": "Mars Standard Time",
    }

    seen = {r.id: r for r in tasks.changes(None).records}

    assert seen[good].error is None and seen[good].fields == todo()
    assert seen[bad].error is not None and "Mars Standard Time" in seen[bad].error
    assert seen[bad].ref == "T2" and not seen[bad].gone


def test_SYN10_a_snoozed_reminder_changes_only_the_reminder_and_the_version(
    graph: Graph,
) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)
    path = f"{list_path(graph)}/{task_id}"
    reminder = {"dateTime": "2026-11-20T09:00:00.0000000", "timeZone": "UTC"}
    graph.ok(graph.patch(path, {"isReminderOn": True, "reminderDateTime": reminder}))
    before = tasks.get(task_id)

    snoozed = {"dateTime": "2026-11-20T09:15:00.0000000", "timeZone": "UTC"}
    graph.ok(graph.patch(path, {"reminderDateTime": snoozed}))
    after = tasks.get(task_id)

    assert after.fields == before.fields == todo()
    assert after.reminder != before.reminder and after.reminder is not None
    assert after.version != before.version


def test_SYN10_a_dismissed_reminder_reads_as_off(graph: Graph) -> None:
    tasks = tasks_of(graph)
    task_id = create(tasks)
    path = f"{list_path(graph)}/{task_id}"
    at = {"dateTime": "2026-11-20T09:00:00.0000000", "timeZone": "UTC"}
    graph.ok(graph.patch(path, {"isReminderOn": True, "reminderDateTime": at}))

    graph.ok(graph.patch(path, {"isReminderOn": False}))

    assert tasks.get(task_id).reminder == "off"


# -- the task list -----------------------------------------------------------------------------
def test_SET1_the_default_setting_uses_the_default_list(graph: Graph) -> None:
    task_id = create(tasks_of(graph))

    assert graph.ok(graph.get(f"{list_path(graph)}/{task_id}"))["id"] == task_id


def test_SET1_a_named_list_is_found_by_its_name(graph: Graph) -> None:
    graph.ok(graph.post("me/todo/lists", {"displayName": "CRM"}), 201)

    task_id = create(tasks_of(graph, "CRM"))

    assert graph.ok(graph.get(f"{list_path(graph, 'CRM')}/{task_id}"))["id"] == task_id
    assert len(graph.ok(graph.get("me/todo/lists"))["value"]) == 2


def test_SET1_a_named_list_is_made_once_when_missing(graph: Graph) -> None:
    task_id = create(tasks_of(graph, "CRM to-dos"))
    create(tasks_of(graph, "CRM to-dos"), key="todo-crm-T2", ref="T2")

    names = [x["displayName"] for x in graph.ok(graph.get("me/todo/lists"))["value"]]
    assert sorted(names) == ["CRM to-dos", "Tasks"]
    assert graph.ok(graph.get(f"{list_path(graph, 'CRM to-dos')}/{task_id}"))["id"] == task_id


# -- custom fields (SYN-1) ---------------------------------------------------------------------
TICKET = CustomMap.of({"ticket": {"provider": "Ticket"}, "stage": {"provider": "Stage"}})


def test_SYN1_custom_values_live_in_an_open_extension_made_with_the_task(graph: Graph) -> None:
    tasks = GraphTasks(client_of(graph), custom=TICKET)
    fields = {**todo(), "custom.ticket": "T-77", "custom.stage": None}
    write = Write("provider", "create", "todo", fields=fields, key="k-1", ref="T1")

    made = tasks.create(write)

    [task] = [t for t in state_of(graph.sandbox.users[EMAIL]).tasks.values() if not t.deleted]
    [extension] = task.extensions.values()
    assert extension == {"id": EXTENSION, "extensionName": EXTENSION, "Ticket": "T-77"}
    record = tasks.get(made.id)
    assert record.fields is not None and record.version == made.version
    assert (record.fields["custom.ticket"], record.fields["custom.stage"]) == ("T-77", None)


def test_SYN1_custom_values_change_and_clear_and_a_delta_round_reads_them(graph: Graph) -> None:
    tasks = GraphTasks(client_of(graph), custom=TICKET)
    fields = {**todo(), "custom.ticket": "T-77", "custom.stage": "open"}
    made = tasks.create(Write("provider", "create", "todo", fields=fields, key="k-1"))
    first = tasks.changes(None)

    version = update(
        tasks, made.id, made.version, **{"custom.ticket": "T-78", "custom.stage": None}
    )

    [changed] = tasks.changes(first.cursor).records
    assert changed.fields is not None and changed.version == version
    assert (changed.fields["custom.ticket"], changed.fields["custom.stage"]) == ("T-78", None)
    assert changed.fields["subject"] == "Send Grace the contract"


def test_SYN1_a_task_made_without_custom_values_gets_its_extension_on_update(
    graph: Graph,
) -> None:
    task_id = create(tasks_of(graph))
    tasks = GraphTasks(client_of(graph), custom=TICKET)
    current = tasks.get(task_id)
    assert current.fields is not None and current.fields["custom.ticket"] is None

    update(tasks, task_id, current.version, **{"custom.ticket": "T-1", "subject": "Call"})

    after = tasks.get(task_id).fields or {}
    assert (after["custom.ticket"], after["subject"]) == ("T-1", "Call")


def test_SYN1_a_task_update_with_a_stale_version_writes_no_custom_value(graph: Graph) -> None:
    tasks = GraphTasks(client_of(graph), custom=TICKET)
    fields = {**todo(), "custom.ticket": "T-77"}
    made = tasks.create(Write("provider", "create", "todo", fields=fields, key="k-1"))
    update(tasks, made.id, made.version, subject="Changed meanwhile")

    with pytest.raises(Conflict):
        update(tasks, made.id, made.version, **{"custom.ticket": "T-99"})

    assert (tasks.get(made.id).fields or {})["custom.ticket"] == "T-77"
