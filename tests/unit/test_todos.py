"""To-dos and tasks (TSK-1..3), driven through SyncWorld."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pytest

from crmsync.testing import SyncWorld

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # SyncWorld's default `now`
DUE = date(2026, 11, 5)
GOOGLE_TASK_FIELDS = {"subject", "due", "status", "notes"}


def todos(world: SyncWorld, side: str) -> dict[str, dict[str, Any]]:
    """Records of one side by subject (subjects are unique within a test)."""
    handle = world.crm if side == "crm" else world.provider
    return {t["subject"]: t for t in handle.all("todo")}


def aged_world(
    provider: Literal["google", "microsoft"] = "google", days: int = 30, **kw: Any
) -> SyncWorld:
    """A world whose clock starts `days` before NOW, so records made now are that old."""
    return SyncWorld(provider, now=NOW - timedelta(days=days), **kw)


def linked_todo(world: SyncWorld, **fields: Any) -> tuple[str, str]:
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": DUE, **fields})
    world.sync()
    [link] = [lk for lk in world.links("todo") if lk["crm_id"] == crm_id]
    assert link["provider_id"] is not None
    return crm_id, link["provider_id"]


# -- TSK-1: CRM to-dos become provider tasks; tasks arrive as timeless to-dos ---------------


def test_TSK1_crm_todo_becomes_google_task() -> None:
    world = SyncWorld("google")
    world.crm.create(
        "todo",
        {"subject": "Send offer", "due": DUE, "priority": "high", "notes": "v2 pricing"},
    )

    world.sync()

    [task] = world.provider.all("todo")
    assert task["subject"] == "Send offer"
    assert task["due"] == DUE
    assert task["status"] == "open"
    assert task["notes"] == "v2 pricing"
    assert set(task) - {"id", "version"} == GOOGLE_TASK_FIELDS  # Google Tasks has no priority


def test_TSK1_crm_todo_becomes_microsoft_task_with_all_its_fields() -> None:
    world = SyncWorld("microsoft")
    world.crm.create(
        "todo",
        {
            "subject": "Prepare demo",
            "start": date(2026, 11, 3),
            "due": DUE,
            "status": "in_progress",
            "priority": "high",
            "notes": "use the sandbox",
        },
    )

    world.sync()

    [task] = world.provider.all("todo")
    assert task["subject"] == "Prepare demo"
    assert task["start"] == date(2026, 11, 3)
    assert task["due"] == DUE
    assert task["status"] == "in_progress"
    assert task["priority"] == "high"
    assert task["notes"] == "use the sandbox"


def test_TSK1_provider_task_arrives_as_timeless_crm_todo() -> None:
    world = SyncWorld("microsoft")
    world.provider.create(
        "todo",
        {"subject": "Renew domain", "due": datetime(2026, 11, 9, 15, 30, tzinfo=UTC)},
    )

    world.sync()

    [todo] = world.crm.all("todo")
    assert todo["subject"] == "Renew domain"
    assert todo["due"] == date(2026, 11, 9)
    assert not isinstance(todo["due"], datetime)  # a to-do carries no time of day
    assert todo["owner"] == "u1"


def test_TSK1_google_task_arrives_in_crm_with_its_status_and_notes() -> None:
    world = SyncWorld("google")
    world.provider.create(
        "todo", {"subject": "Order cards", "due": DUE, "status": "completed", "notes": "x"}
    )

    world.sync()

    [todo] = world.crm.all("todo")
    assert (todo["subject"], todo["due"], todo["status"], todo["notes"]) == (
        "Order cards",
        DUE,
        "completed",
        "x",
    )


def test_TSK1_edits_flow_both_ways_between_todo_and_task() -> None:
    world = SyncWorld("google")
    crm_id, task_id = linked_todo(world)

    world.crm.update("todo", crm_id, {"subject": "Send revised offer"})
    world.provider.update("todo", task_id, {"due": date(2026, 11, 12)})
    world.sync()

    todo, task = world.crm.get("todo", crm_id), world.provider.get("todo", task_id)
    assert todo is not None and task is not None
    assert task["subject"] == todo["subject"] == "Send revised offer"
    assert task["due"] == todo["due"] == date(2026, 11, 12)


def test_TSK1_completing_a_task_on_the_provider_completes_the_crm_todo() -> None:
    world = SyncWorld("microsoft")
    crm_id, task_id = linked_todo(world)

    world.provider.update("todo", task_id, {"status": "completed"})
    world.sync()

    todo = world.crm.get("todo", crm_id)
    assert todo is not None and todo["status"] == "completed"


# -- TSK-2: first-cycle pairing and scope --------------------------------------------------


def test_TSK2_first_cycle_links_todo_and_task_with_same_subject_and_due_date() -> None:
    world = SyncWorld("google")
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    task_id = world.provider.create("todo", {"subject": "Send offer", "due": DUE})

    world.sync()

    assert len(world.crm.all("todo")) == 1
    assert len(world.provider.all("todo")) == 1
    [link] = world.links("todo")
    assert (link["crm_id"], link["provider_id"], link["state"]) == (crm_id, task_id, "linked")


def test_TSK2_first_cycle_links_by_start_date_when_there_is_no_due_date() -> None:
    world = SyncWorld("microsoft")
    crm_id = world.crm.create("todo", {"subject": "Plan trip", "start": date(2026, 11, 4)})
    task_id = world.provider.create("todo", {"subject": "Plan trip", "start": date(2026, 11, 4)})

    world.sync()

    assert len(world.crm.all("todo")) == 1
    assert len(world.provider.all("todo")) == 1
    [link] = world.links("todo")
    assert (link["crm_id"], link["provider_id"]) == (crm_id, task_id)


def test_TSK2_first_cycle_creates_both_when_due_dates_differ() -> None:
    world = SyncWorld("google")
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.provider.create("todo", {"subject": "Send offer", "due": DUE + timedelta(days=1)})

    world.sync()

    for side in ("crm", "provider"):
        handle = world.crm if side == "crm" else world.provider
        dues = sorted(t["due"] for t in handle.all("todo"))
        assert dues == [DUE, DUE + timedelta(days=1)], side


def test_TSK2_first_cycle_creates_both_when_subjects_differ() -> None:
    world = SyncWorld("google")
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.provider.create("todo", {"subject": "Send invoice", "due": DUE})

    world.sync()

    assert set(todos(world, "crm")) == {"Send offer", "Send invoice"}
    assert set(todos(world, "provider")) == {"Send offer", "Send invoice"}
    assert len(world.links("todo")) == 2


def test_TSK2_first_cycle_skips_closed_todos_not_modified_in_the_window() -> None:
    world = aged_world("microsoft", days=30)
    world.crm.create("todo", {"subject": "Old done", "status": "completed"})
    world.crm.create("todo", {"subject": "Old cancelled", "status": "cancelled"})
    world.provider.create("todo", {"subject": "Old task done", "status": "completed"})
    world.advance(timedelta(days=30))

    world.sync()

    assert set(todos(world, "provider")) == {"Old task done"}
    assert set(todos(world, "crm")) == {"Old done", "Old cancelled"}


def test_TSK2_first_cycle_takes_open_and_in_progress_todos_of_any_age() -> None:
    world = aged_world("microsoft", days=400)
    world.crm.create("todo", {"subject": "Open", "status": "open"})
    world.crm.create("todo", {"subject": "Busy", "status": "in_progress"})
    world.provider.create("todo", {"subject": "Task open", "status": "open"})
    world.provider.create("todo", {"subject": "Task busy", "status": "in_progress"})
    world.advance(timedelta(days=400))

    world.sync()

    expected = {"Open", "Busy", "Task open", "Task busy"}
    assert set(todos(world, "crm")) == expected
    assert set(todos(world, "provider")) == expected


def test_TSK2_first_cycle_takes_closed_todos_modified_in_the_window() -> None:
    world = aged_world("google", days=30)
    edited = world.crm.create("todo", {"subject": "Done long ago", "status": "open"})
    world.advance(timedelta(days=27))  # three days before the first sync
    world.crm.update("todo", edited, {"status": "completed"})
    world.provider.create("todo", {"subject": "Task done", "status": "completed"})
    world.advance(timedelta(days=3))

    world.sync()

    assert todos(world, "provider")["Done long ago"]["status"] == "completed"
    assert todos(world, "crm")["Task done"]["status"] == "completed"


def test_TSK2_window_days_setting_sets_the_first_cycle_scope() -> None:
    world = aged_world("google", days=30, settings={"window_days": 45})
    world.crm.create("todo", {"subject": "Done a month ago", "status": "completed"})
    world.advance(timedelta(days=30))

    world.sync()

    assert set(todos(world, "provider")) == {"Done a month ago"}


def test_TSK2_after_the_first_cycle_a_closed_todo_syncs_once_modified() -> None:
    world = aged_world("google", days=30)
    old = world.crm.create("todo", {"subject": "Done long ago", "status": "completed"})
    world.advance(timedelta(days=30))
    world.sync()
    assert todos(world, "provider") == {}

    world.crm.update("todo", old, {"notes": "reopened the file"})
    world.crm.create("todo", {"subject": "Done just now", "status": "completed"})
    world.sync()

    assert set(todos(world, "provider")) == {"Done long ago", "Done just now"}


# -- TSK-3: recurring to-dos and the status table -----------------------------------------


def test_TSK3_recurring_crm_todo_is_not_sent_to_google_tasks() -> None:
    world = SyncWorld("google")
    recurring = world.crm.create(
        "todo", {"subject": "Weekly report", "due": DUE, "recurrence": "RRULE:FREQ=WEEKLY"}
    )
    world.crm.create("todo", {"subject": "One-off", "due": DUE})

    run = world.sync()

    assert set(todos(world, "provider")) == {"One-off"}
    assert run["status"] == "ok"
    [item] = [i for i in world.history() if i["crm_id"] == recurring]
    assert item["outcome"] == "skip"
    assert item["reason"]
    assert world.crm.get("todo", recurring) is not None  # the CRM keeps it as it was


def test_TSK3_recurring_crm_todo_is_sent_to_microsoft_to_do_with_its_rule() -> None:
    world = SyncWorld("microsoft")
    world.crm.create(
        "todo",
        {"subject": "Weekly report", "due": DUE, "recurrence": "RRULE:FREQ=WEEKLY;BYDAY=MO"},
    )

    world.sync()

    [task] = world.provider.all("todo")
    assert task["subject"] == "Weekly report"
    assert task["recurrence"] == "RRULE:FREQ=WEEKLY;BYDAY=MO"


def test_TSK3_repeating_task_reaches_a_crm_without_recurring_todos_as_a_single_todo() -> None:
    world = SyncWorld("microsoft")
    world.crm.set_capabilities(recurring_todos=False)
    task = world.provider.create(
        "todo", {"subject": "Weekly report", "due": DUE, "recurrence": "RRULE:FREQ=WEEKLY"}
    )
    # as the provider holds it (To Do names the weekday a weekly rule repeats on)
    held = world.provider.get("todo", task)

    first = world.sync()
    second = world.sync()

    [todo] = world.crm.all("todo")
    assert (todo["subject"], todo["recurrence"]) == ("Weekly report", None)
    assert held["recurrence"].startswith("RRULE:FREQ=WEEKLY")
    assert world.provider.get("todo", task) == held  # the task keeps its rule, untouched
    assert first["status"] == "ok"
    assert second["counts"] == {}


def test_TSK3_google_shows_in_progress_as_open_and_cancelled_as_completed() -> None:
    world = SyncWorld("google")
    world.crm.create("todo", {"subject": "Busy", "status": "in_progress"})
    world.crm.create("todo", {"subject": "Dropped", "status": "cancelled"})
    world.crm.create("todo", {"subject": "Open", "status": "open"})
    world.crm.create("todo", {"subject": "Done", "status": "completed"})

    world.sync()

    statuses = {s: t["status"] for s, t in todos(world, "provider").items()}
    assert statuses == {
        "Busy": "open",
        "Dropped": "completed",
        "Open": "open",
        "Done": "completed",
    }


def test_TSK3_google_status_table_never_flips_the_crm_status_back() -> None:
    world = SyncWorld("google")
    busy, busy_task = linked_todo(world, subject="Busy", status="in_progress")
    dropped, dropped_task = linked_todo(world, subject="Dropped", status="cancelled")

    world.sync()
    world.provider.update("todo", busy_task, {"notes": "called twice"})
    world.provider.update("todo", dropped_task, {"due": date(2026, 11, 20)})
    world.sync()
    world.sync()

    busy_todo, dropped_todo = world.crm.get("todo", busy), world.crm.get("todo", dropped)
    assert busy_todo is not None and dropped_todo is not None
    assert busy_todo["status"] == "in_progress"
    assert busy_todo["notes"] == "called twice"  # the provider's edit did arrive
    assert dropped_todo["status"] == "cancelled"
    assert dropped_todo["due"] == date(2026, 11, 20)


def test_TSK3_first_cycle_link_on_google_keeps_the_crm_in_progress_status() -> None:
    world = SyncWorld("google")
    crm_id = world.crm.create("todo", {"subject": "Busy", "due": DUE, "status": "in_progress"})
    task_id = world.provider.create("todo", {"subject": "Busy", "due": DUE, "status": "open"})

    world.sync()

    [link] = world.links("todo")
    assert (link["crm_id"], link["provider_id"]) == (crm_id, task_id)
    todo = world.crm.get("todo", crm_id)
    assert todo is not None and todo["status"] == "in_progress"


def test_TSK3_completing_an_in_progress_todo_on_google_completes_it_in_the_crm() -> None:
    world = SyncWorld("google")
    crm_id, task_id = linked_todo(world, status="in_progress")

    world.provider.update("todo", task_id, {"status": "completed"})
    world.sync()

    todo = world.crm.get("todo", crm_id)
    assert todo is not None and todo["status"] == "completed"


def test_TSK3_custom_todo_status_table_is_honoured() -> None:
    table = {
        "open": "open",
        "in_progress": "in_progress",
        "completed": "completed",
        "cancelled": "completed",
    }
    world = SyncWorld("microsoft", settings={"todo_status": table})
    dropped, _ = linked_todo(world, subject="Dropped", status="cancelled")
    busy, busy_task = linked_todo(world, subject="Busy", status="in_progress")

    assert todos(world, "provider")["Dropped"]["status"] == "completed"
    assert todos(world, "provider")["Busy"]["status"] == "in_progress"

    world.provider.update("todo", busy_task, {"status": "completed"})
    world.sync()
    world.sync()

    dropped_todo, busy_todo = world.crm.get("todo", dropped), world.crm.get("todo", busy)
    assert dropped_todo is not None and dropped_todo["status"] == "cancelled"
    assert busy_todo is not None and busy_todo["status"] == "completed"


# -- TSK-4: the related-information block on tasks; TSK-5: private to-dos opt-in ----------

REGARDING = {
    "contact": "Ada Lovelace",
    "account": "Analytical Engines Ltd",
    "opportunity": "Engine No. 2",
}
PROVIDERS: tuple[Literal["google", "microsoft"], ...] = ("google", "microsoft")


def task_notes(world: SyncWorld, task_id: str) -> str:
    task = world.provider.get("todo", task_id)
    assert task is not None
    return str(task["notes"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK4_a_todo_about_a_deal_carries_the_related_info_block_below_its_notes(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider)
    _, task_id = linked_todo(world, notes="Call before noon", regarding=REGARDING)

    notes = task_notes(world, task_id)

    own, _, block = notes.partition("[CRM]")
    assert own.strip() == "Call before noon"
    for value in REGARDING.values():
        assert value in block


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK4_the_tenants_template_shapes_the_block_on_tasks(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider, tenant={"related_info_template": "Deal {opportunity} at {account}"})
    _, task_id = linked_todo(world, regarding=REGARDING)

    assert "Deal Engine No. 2 at Analytical Engines Ltd" in task_notes(world, task_id)
    assert "Ada Lovelace" not in task_notes(world, task_id)  # the template leaves it out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK4_edits_inside_the_block_stay_out_and_the_users_own_notes_sync_back(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider)
    crm_id, task_id = linked_todo(world, notes="Call before noon", regarding=REGARDING)
    tampered = task_notes(world, task_id).replace("Engine No. 2", "Free lunch")
    world.provider.update("todo", task_id, {"notes": tampered.replace("noon", "ten")})
    world.advance(timedelta(minutes=15))

    world.sync()

    todo = world.crm.get("todo", crm_id)
    assert todo is not None
    assert todo["notes"] == "Call before ten"
    assert todo["regarding"]["opportunity"] == "Engine No. 2"
    assert "Engine No. 2" in task_notes(world, task_id)  # regenerated from the CRM
    assert "Free lunch" not in task_notes(world, task_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK4_the_block_follows_the_crm_when_the_todo_is_about_something_else(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider)
    crm_id, task_id = linked_todo(world, regarding=REGARDING)
    world.crm.update("todo", crm_id, {"regarding": {**REGARDING, "opportunity": "Engine No. 3"}})

    world.sync()

    assert "Engine No. 3" in task_notes(world, task_id)
    assert "Engine No. 2" not in task_notes(world, task_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK5_a_private_crm_todo_stays_off_the_task_list_by_default(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider)
    world.crm.create("todo", {"subject": "Dentist", "due": DUE, "private": True})
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})

    world.sync()

    assert sorted(todos(world, "provider")) == ["Send offer"]
    assert any("private to-dos" in item.get("reason", "") for item in world.history())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_TSK5_a_private_crm_todo_syncs_when_the_user_opts_in(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider, settings={"private_items": True})
    world.crm.create("todo", {"subject": "Dentist", "due": DUE, "private": True})

    world.sync()

    assert sorted(todos(world, "provider")) == ["Dentist"]


def test_TSK5_opting_in_later_brings_private_todos_made_before() -> None:
    world = SyncWorld("microsoft")
    world.crm.create("todo", {"subject": "Dentist", "due": DUE, "private": True})
    world.sync()
    assert todos(world, "provider") == {}

    world.settings(private_items=True)
    world.sync()

    assert sorted(todos(world, "provider")) == ["Dentist"]


# -- CAL-12: the delete policy applies to to-dos as to activities ----------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL12_a_task_deleted_on_the_provider_keeps_its_crm_todo_when_set_to_unlink(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider, settings={"deletes": {"todo": {"crm": "unlink"}}})
    crm_id, task_id = linked_todo(world)
    world.provider.delete("todo", task_id)

    world.sync()

    todo = world.crm.get("todo", crm_id)
    assert todo is not None and todo["subject"] == "Send offer"
    assert world.links("todo")[0]["state"] == "detached"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL12_by_default_a_task_deleted_on_the_provider_deletes_the_crm_todo(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider)
    crm_id, task_id = linked_todo(world)
    world.provider.delete("todo", task_id)

    world.sync()

    assert world.crm.get("todo", crm_id) is None
