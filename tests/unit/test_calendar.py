"""Calendar activities (REQUIREMENTS.md section 3, CAL-1..CAL-11), driven through SyncWorld.

Each test builds a CRM and a provider account in memory, runs real cycles between them
and checks what each side holds afterwards, for Google and Microsoft alike wherever
their defaults differ (declined handling, completion marker) or could differ.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from dateutil.rrule import rrulestr

from crmsync.settings import Provider, SettingsError
from crmsync.testing import SyncWorld

PROVIDERS: tuple[Provider, ...] = ("google", "microsoft")
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # SyncWorld's default clock
START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # tomorrow, well inside every window
HOUR = timedelta(hours=1)
MARKED = {"google": "*Kickoff*", "microsoft": "Completed: Kickoff"}
WEEKLY = "RRULE:FREQ=WEEKLY;BYDAY=TU"


def meeting(**fields: Any) -> dict[str, Any]:
    """A CRM meeting tomorrow 10:00-11:00 UTC, with `fields` overriding."""
    return {"type": "meeting", "subject": "Kickoff", "start": START, "end": START + HOUR, **fields}


def event(**fields: Any) -> dict[str, Any]:
    """A provider calendar event tomorrow 10:00-11:00 UTC, with `fields` overriding."""
    return {"subject": "Kickoff", "start": START, "end": START + HOUR, **fields}


def only(records: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(records) == 1, records
    return records[0]


def link_of(
    world: SyncWorld, *, crm_id: str | None = None, provider_id: str | None = None
) -> dict[str, Any]:
    found = [
        link
        for link in world.links("activity")
        if (crm_id is None or link["crm_id"] == crm_id)
        and (provider_id is None or link["provider_id"] == provider_id)
    ]
    return only(found)


def crm_activity(world: SyncWorld, crm_id: str) -> dict[str, Any]:
    record = world.crm.get("activity", crm_id)
    assert record is not None, f"CRM activity {crm_id} is gone"
    return record


def provider_event(world: SyncWorld, provider_id: str) -> dict[str, Any]:
    record = world.provider.get("activity", provider_id)
    assert record is not None, f"provider event {provider_id} is gone"
    return record


def provider_twin(world: SyncWorld, crm_id: str) -> dict[str, Any]:
    """The provider event linked to a CRM activity."""
    return provider_event(world, link_of(world, crm_id=crm_id)["provider_id"])


def crm_twin(world: SyncWorld, provider_id: str) -> dict[str, Any]:
    """The CRM activity linked to a provider event."""
    return crm_activity(world, link_of(world, provider_id=provider_id)["crm_id"])


def synced_crm_activity(provider: Provider, **fields: Any) -> tuple[SyncWorld, str, str]:
    """A world where one CRM meeting has synced; returns (world, crm id, provider id)."""
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting(**fields))
    world.sync()
    return world, crm_id, provider_twin(world, crm_id)["id"]


def synced_provider_event(provider: Provider, **fields: Any) -> tuple[SyncWorld, str, str]:
    """A world where one provider event has synced; returns (world, crm id, provider id)."""
    world = SyncWorld(provider=provider)
    provider_id = world.provider.create("activity", event(**fields))
    world.sync()
    return world, crm_twin(world, provider_id)["id"], provider_id


# -- CAL-1 type mapping ------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("activity_type", ["meeting", "call", "personal"])
def test_CAL1_meetings_calls_and_personal_activities_become_provider_events(
    provider: Provider, activity_type: str
) -> None:
    world = SyncWorld(provider=provider)
    world.crm.create("activity", meeting(type=activity_type, subject="Review"))

    world.sync()

    created = only(world.provider.all("activity"))
    assert (created["subject"], created["start"], created["end"]) == (
        "Review",
        START,
        START + HOUR,
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_personal_activity_is_private_on_the_provider_and_meeting_is_not(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider)
    personal = world.crm.create("activity", meeting(type="personal", subject="Dentist"))
    business = world.crm.create("activity", meeting(subject="Review"))

    world.sync()

    assert provider_twin(world, personal)["private"] is True
    assert provider_twin(world, business)["private"] is False


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_private_marking_of_a_personal_activity_is_not_an_edit_in_the_crm(
    provider: Provider,
) -> None:
    world, crm_id, provider_id = synced_crm_activity(provider, type="personal")
    world.provider.update("activity", provider_id, {"location": "Clinic"})

    world.sync()

    activity = crm_activity(world, crm_id)
    assert (activity["type"], activity["private"], activity["location"]) == (
        "personal",
        False,
        "Clinic",
    )
    assert provider_event(world, provider_id)["private"] is True


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_crm_event_type_does_not_sync_in_any_cycle(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    fair = world.crm.create(
        "activity", {"type": "event", "subject": "Trade fair", "start": date(2026, 11, 5)}
    )

    world.sync()
    world.crm.update("activity", fair, {"subject": "Trade fair (hall 3)"})
    world.sync()

    assert world.provider.all("activity") == []
    assert world.links("activity") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_crm_event_is_never_linked_even_to_an_identical_provider_event(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider)
    fair = world.crm.create("activity", meeting(type="event", subject="Trade fair"))
    world.provider.create("activity", event(subject="Trade fair"))

    world.sync()

    assert [link for link in world.links("activity") if link["crm_id"] == fair] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_timeless_activity_becomes_an_all_day_event(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.crm.create(
        "activity", {"type": "call", "subject": "Call Bob", "start": date(2026, 11, 5)}
    )

    world.sync()

    created = only(world.provider.all("activity"))
    assert created["all_day"] is True
    assert (created["start"], created["end"]) == (date(2026, 11, 5), date(2026, 11, 6))


# -- CAL-1 calls as provider tasks (setting calls_as) ---------------------------------------

BERLIN_CALL = {
    "type": "call",
    "subject": "Call Bob",
    "start": datetime(2026, 11, 4, 23, 30, tzinfo=UTC),  # 00:30 on the 5th in Berlin
    "end": datetime(2026, 11, 4, 23, 45, tzinfo=UTC),
    "timezone": "Europe/Berlin",
    "notes": "ask about the renewal",
}


def calls_as_tasks(provider: Provider) -> tuple[SyncWorld, str, dict[str, Any]]:
    """A world syncing calls as tasks, one CRM call synced; (world, call id, its task)."""
    world = SyncWorld(provider=provider, settings={"calls_as": "task"})
    call = world.crm.create("activity", BERLIN_CALL)
    world.sync()
    return world, call, only(world.provider.all("todo"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_call_becomes_a_provider_task_due_on_its_local_day(provider: Provider) -> None:
    world, _, task = calls_as_tasks(provider)

    assert world.provider.all("activity") == []
    assert (task["subject"], task["due"], task["notes"]) == (
        "Call Bob",
        date(2026, 11, 5),
        "ask about the renewal",
    )
    assert task["status"] == "open"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_meetings_stay_events_while_calls_are_tasks(provider: Provider) -> None:
    world = SyncWorld(provider=provider, settings={"calls_as": "task"})
    world.crm.create("activity", meeting(subject="Review"))
    world.crm.create("activity", BERLIN_CALL)

    world.sync()

    assert [e["subject"] for e in world.provider.all("activity")] == ["Review"]
    assert [t["subject"] for t in world.provider.all("todo")] == ["Call Bob"]
    assert world.crm.all("todo") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_completing_the_task_completes_the_call(provider: Provider) -> None:
    world, call, task = calls_as_tasks(provider)

    world.provider.update("todo", task["id"], {"status": "completed"})
    world.sync()

    assert crm_activity(world, call)["status"] == "completed"
    assert world.crm.all("todo") == []
    second = world.sync()
    assert world.provider.get("todo", task["id"])["status"] == "completed"
    assert second["status"] == "ok"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_new_due_date_moves_the_call_keeping_its_local_time(provider: Provider) -> None:
    world, call, task = calls_as_tasks(provider)

    world.provider.update("todo", task["id"], {"due": date(2026, 11, 9), "subject": "Call Bob!"})
    world.sync()

    moved = crm_activity(world, call)
    assert moved["subject"] == "Call Bob!"
    assert moved["start"] == datetime(2026, 11, 8, 23, 30, tzinfo=UTC)  # 00:30 Berlin, 9th
    assert moved["end"] - moved["start"] == timedelta(minutes=15)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_crm_edit_of_the_call_reaches_the_task(provider: Provider) -> None:
    world, call, task = calls_as_tasks(provider)

    world.crm.update("activity", call, {"notes": "renewal signed", "status": "completed"})
    world.sync()

    updated = world.provider.get("todo", task["id"])
    assert (updated["notes"], updated["status"]) == ("renewal signed", "completed")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_deleting_the_task_deletes_the_call_and_new_tasks_are_crm_todos(
    provider: Provider,
) -> None:
    world, call, task = calls_as_tasks(provider)
    world.provider.create("todo", {"subject": "Send offer", "due": date(2026, 11, 6)})

    world.provider.delete("todo", task["id"])
    world.sync()

    assert world.crm.get("activity", call) is None
    assert [t["subject"] for t in world.crm.all("todo")] == ["Send offer"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_SET3_calls_synced_as_tasks_follow_the_matrix_call_row_not_the_todo_row(
    provider: Provider,
) -> None:
    no_calls_from_tasks = {"call": {"crm": {"update": False, "delete": False}}}
    world = SyncWorld(
        provider=provider, settings={"calls_as": "task", "permissions": no_calls_from_tasks}
    )
    call = world.crm.create("activity", BERLIN_CALL)
    todo = world.crm.create("todo", {"subject": "Send offer", "due": date(2026, 11, 6)})
    world.sync()
    tasks = {t["subject"]: t["id"] for t in world.provider.all("todo")}

    world.provider.update("todo", tasks["Call Bob"], {"status": "completed"})
    world.provider.update("todo", tasks["Send offer"], {"status": "completed"})
    world.sync()

    assert crm_activity(world, call)["status"] == "confirmed"  # the call row says no
    assert world.crm.get("todo", todo)["status"] == "completed"  # the to-do row says yes


@pytest.mark.parametrize("provider", PROVIDERS)
def test_SET3_a_call_row_that_forbids_creating_on_the_provider_keeps_calls_off_the_task_list(
    provider: Provider,
) -> None:
    no_call_tasks = {"call": {"provider": {"create": False}}}
    world = SyncWorld(
        provider=provider, settings={"calls_as": "task", "permissions": no_call_tasks}
    )
    world.crm.create("activity", BERLIN_CALL)
    world.crm.create("todo", {"subject": "Send offer", "due": date(2026, 11, 6)})

    world.sync()

    assert [t["subject"] for t in world.provider.all("todo")] == ["Send offer"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL1_switching_calls_to_tasks_moves_an_existing_call_off_the_calendar(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider)
    call = world.crm.create("activity", BERLIN_CALL)
    world.sync()
    assert len(world.provider.all("activity")) == 1

    world.settings(calls_as="task")
    world.sync()

    assert world.provider.all("activity") == []
    assert [t["subject"] for t in world.provider.all("todo")] == ["Call Bob"]
    assert crm_activity(world, call)["subject"] == "Call Bob"


# -- CAL-2 first-cycle pairing -------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL2_first_cycle_links_activity_with_same_subject_start_and_duration(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting())
    provider_id = world.provider.create("activity", event())

    world.sync()
    world.sync()

    assert link_of(world, crm_id=crm_id)["provider_id"] == provider_id
    assert len(world.crm.all("activity")) == 1
    assert len(world.provider.all("activity")) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "difference",
    [
        {"subject": "Kickoff call"},
        {"start": START + HOUR, "end": START + 2 * HOUR},  # same duration, other start
        {"end": START + 2 * HOUR},  # same start, other duration
    ],
    ids=["subject", "start", "duration"],
)
def test_CAL2_first_cycle_creates_the_missing_sides_when_pair_differs(
    provider: Provider, difference: dict[str, Any]
) -> None:
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting())
    provider_id = world.provider.create("activity", event(**difference))

    world.sync()
    world.sync()

    assert len(world.crm.all("activity")) == 2
    assert len(world.provider.all("activity")) == 2
    assert link_of(world, crm_id=crm_id)["provider_id"] != provider_id
    assert link_of(world, provider_id=provider_id)["crm_id"] != crm_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL2_first_cycle_does_not_link_another_users_activity(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    colleagues = world.crm.create("activity", meeting(), owner="u2")
    provider_id = world.provider.create("activity", event())

    world.sync()

    mine = crm_twin(world, provider_id)
    assert mine["id"] != colleagues
    assert mine["leader"] == "u1"
    assert [link for link in world.links("activity") if link["crm_id"] == colleagues] == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL2_completed_activity_links_to_its_marked_provider_twin(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting(status="completed"))
    provider_id = world.provider.create("activity", event(subject=MARKED[provider]))

    world.sync()

    assert link_of(world, crm_id=crm_id)["provider_id"] == provider_id
    assert len(world.crm.all("activity")) == 1
    assert crm_activity(world, crm_id)["subject"] == "Kickoff"


# -- CAL-3 first-cycle scope and later cycles ------------------------------------------------


def world_with_history(provider: Provider, created_days_ago: int, **settings: Any) -> SyncWorld:
    """A world whose clock starts `created_days_ago` before NOW (advance it to NOW)."""
    return SyncWorld(
        provider=provider,
        now=NOW - timedelta(days=created_days_ago),
        settings=settings,
    )


def days_ago(n: int, hour: int = 10) -> datetime:
    return datetime.combine((NOW - timedelta(days=n)).date(), time(hour), UTC)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_first_cycle_skips_activity_ended_before_window_and_not_modified_since(
    provider: Provider,
) -> None:
    world = world_with_history(provider, created_days_ago=60)
    old = world.crm.create("activity", meeting(start=days_ago(20), end=days_ago(20) + HOUR))
    world.advance(timedelta(days=60))

    world.sync()

    assert world.provider.all("activity") == []
    assert [item["crm_id"] for item in world.history() if item["outcome"] == "skip"] == [old]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_first_cycle_takes_activities_ended_within_window_or_later(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=60)
    world.crm.create(
        "activity", meeting(subject="Recent", start=days_ago(10), end=days_ago(10) + HOUR)
    )
    world.crm.create(
        "activity", meeting(subject="Upcoming", start=NOW + 3 * HOUR, end=NOW + 4 * HOUR)
    )
    world.advance(timedelta(days=60))

    world.sync()

    assert sorted(e["subject"] for e in world.provider.all("activity")) == ["Recent", "Upcoming"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_first_cycle_takes_old_activity_modified_within_window(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=90)
    old = world.crm.create("activity", meeting(start=days_ago(60), end=days_ago(60) + HOUR))
    world.advance(timedelta(days=85))
    world.crm.update("activity", old, {"notes": "minutes added"})
    world.advance(timedelta(days=5))

    world.sync()

    assert only(world.provider.all("activity"))["notes"].startswith("minutes added")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_window_days_setting_widens_the_first_cycle(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=60, window_days=30)
    world.crm.create("activity", meeting(start=days_ago(20), end=days_ago(20) + HOUR))
    world.advance(timedelta(days=60))

    world.sync()

    assert len(world.provider.all("activity")) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_widening_the_window_later_brings_in_unchanged_older_activities(
    provider: Provider,
) -> None:
    world = world_with_history(provider, created_days_ago=60)
    world.crm.create(
        "activity", meeting(subject="Old", start=days_ago(20), end=days_ago(20) + HOUR)
    )
    world.advance(timedelta(days=60))
    world.crm.create("activity", meeting(subject="Current"))
    world.sync()
    assert [e["subject"] for e in world.provider.all("activity")] == ["Current"]

    world.settings(window_days=30)
    world.sync()

    assert sorted(e["subject"] for e in world.provider.all("activity")) == ["Current", "Old"]
    assert len(world.links("activity")) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_first_cycle_takes_running_series_and_skips_ended_series(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=300)
    start = days_ago(290)
    world.crm.create(
        "activity", meeting(subject="Weekly", start=start, end=start + HOUR, recurrence=WEEKLY)
    )
    world.crm.create(
        "activity",
        meeting(
            subject="Short series",
            start=start,
            end=start + HOUR,
            recurrence="RRULE:FREQ=WEEKLY;COUNT=3",
        ),
    )
    world.advance(timedelta(days=300))

    world.sync()

    assert [e["subject"] for e in world.provider.all("activity")] == ["Weekly"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_first_cycle_window_applies_to_provider_events(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=60)
    world.provider.create(
        "activity", event(subject="Old", start=days_ago(30), end=days_ago(30) + HOUR)
    )
    world.provider.create(
        "activity", event(subject="Recent", start=days_ago(3), end=days_ago(3) + HOUR)
    )
    world.advance(timedelta(days=60))

    world.sync()

    assert [a["subject"] for a in world.crm.all("activity")] == ["Recent"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_later_cycles_take_everything_modified_since_the_last(provider: Provider) -> None:
    world = world_with_history(provider, created_days_ago=200)
    old = world.crm.create(
        "activity", meeting(subject="Old", start=days_ago(150), end=days_ago(150) + HOUR)
    )
    world.advance(timedelta(days=200))
    world.sync()
    assert world.provider.all("activity") == []

    world.crm.update("activity", old, {"location": "Room 4"})
    world.crm.create(
        "activity", meeting(subject="Logged late", start=days_ago(90), end=days_ago(90) + HOUR)
    )
    world.provider.create(
        "activity", event(subject="Backfilled", start=days_ago(80), end=days_ago(80) + HOUR)
    )
    world.advance(timedelta(minutes=15))
    world.sync()

    assert sorted(e["subject"] for e in world.provider.all("activity")) == [
        "Backfilled",
        "Logged late",
        "Old",
    ]
    assert sorted(a["subject"] for a in world.crm.all("activity")) == [
        "Backfilled",
        "Logged late",
        "Old",
    ]


NOT_BEFORE = date(2026, 10, 1)


def world_before_not_before(provider: Provider) -> SyncWorld:
    """Clock at 2026-09-20, window wide enough that only `not_before` can exclude."""
    return SyncWorld(
        provider=provider,
        now=datetime(2026, 9, 20, 9, 0, tzinfo=UTC),
        settings={"not_before": NOT_BEFORE.isoformat(), "window_days": 90},
    )


SEPT_25 = datetime(2026, 9, 25, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_activities_before_not_before_are_skipped(provider: Provider) -> None:
    world = world_before_not_before(provider)
    world.crm.create("activity", meeting(subject="CRM side", start=SEPT_25, end=SEPT_25 + HOUR))
    world.provider.create(
        "activity", event(subject="Provider side", start=SEPT_25, end=SEPT_25 + HOUR)
    )
    world.advance(NOW - world.now())

    world.sync()

    assert [a["subject"] for a in world.crm.all("activity")] == ["CRM side"]
    assert [e["subject"] for e in world.provider.all("activity")] == ["Provider side"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_activity_before_not_before_syncs_when_edited_after_it(provider: Provider) -> None:
    world = world_before_not_before(provider)
    crm_id = world.crm.create(
        "activity", meeting(subject="Edited", start=SEPT_25, end=SEPT_25 + HOUR)
    )
    world.advance(datetime(2026, 10, 15, 9, 0, tzinfo=UTC) - world.now())
    world.crm.update("activity", crm_id, {"notes": "follow-up agreed"})
    world.advance(NOW - world.now())

    world.sync()

    assert only(world.provider.all("activity"))["subject"] == "Edited"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL3_running_series_started_before_not_before_still_syncs(provider: Provider) -> None:
    world = world_before_not_before(provider)
    first = datetime(2026, 9, 8, 10, 0, tzinfo=UTC)  # a Tuesday before the cut-off
    world.crm.create(
        "activity", meeting(subject="Weekly", start=first, end=first + HOUR, recurrence=WEEKLY)
    )
    world.advance(NOW - world.now())

    world.sync()

    series = only(world.provider.all("activity"))
    assert (series["start"], series["recurrence"]) == (first, WEEKLY)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("zone", "start", "synced"),
    [
        # 2026-10-01 01:00 in Auckland (UTC+13): on the date there, though 30 September in UTC
        ("Pacific/Auckland", datetime(2026, 9, 30, 12, 0, tzinfo=UTC), True),
        ("UTC", datetime(2026, 9, 30, 12, 0, tzinfo=UTC), False),
        # 2026-09-30 20:00 in Los Angeles (UTC-7): before the date there, though 1 October in UTC
        ("America/Los_Angeles", datetime(2026, 10, 1, 3, 0, tzinfo=UTC), False),
        ("UTC", datetime(2026, 10, 1, 3, 0, tzinfo=UTC), True),
    ],
)
def test_SET1_the_do_not_sync_before_date_begins_at_the_users_own_midnight(
    provider: Provider, zone: str, start: datetime, synced: bool
) -> None:
    world = SyncWorld(
        provider=provider,
        now=datetime(2026, 9, 20, 9, 0, tzinfo=UTC),
        settings={"not_before": NOT_BEFORE.isoformat(), "window_days": 90, "timezone": zone},
    )
    world.crm.create("activity", meeting(subject="CRM side", start=start, end=start + HOUR))
    world.provider.create("activity", event(subject="Provider side", start=start, end=start + HOUR))
    world.advance(NOW - world.now())

    world.sync()

    expected = ["CRM side", "Provider side"] if synced else []
    assert sorted(e["subject"] for e in world.provider.all("activity")) == (
        expected or ["Provider side"]
    )
    assert sorted(a["subject"] for a in world.crm.all("activity")) == (expected or ["CRM side"])


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "UTC+2"])
def test_SET1_a_time_zone_that_does_not_exist_is_refused(zone: str) -> None:
    world = SyncWorld()
    with pytest.raises(SettingsError, match="timezone"):
        world.settings(timezone=zone)


# -- CAL-4 deletes ------------------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL4_deleting_in_the_crm_deletes_the_provider_event(provider: Provider) -> None:
    world, crm_id, provider_id = synced_crm_activity(provider)
    world.crm.delete("activity", crm_id)

    world.sync()

    assert world.provider.get("activity", provider_id) is None
    assert world.links("activity") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL4_deleting_on_the_provider_deletes_the_crm_activity(provider: Provider) -> None:
    world, crm_id, provider_id = synced_crm_activity(provider)
    world.provider.delete("activity", provider_id)

    world.sync()

    assert world.crm.get("activity", crm_id) is None
    assert world.links("activity") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL4_deletes_follow_the_permission_matrix(provider: Provider) -> None:
    world = SyncWorld(
        provider=provider,
        settings={
            "permissions": {
                "appointment": {"crm": {"delete": False}},
                "call": {"provider": {"delete": False}},
            }
        },
    )
    meeting_id = world.crm.create("activity", meeting(subject="Meeting"))
    call_id = world.crm.create("activity", meeting(type="call", subject="Call"))
    world.sync()
    meeting_event = provider_twin(world, meeting_id)["id"]
    call_event = provider_twin(world, call_id)["id"]

    world.provider.delete("activity", meeting_event)
    world.crm.delete("activity", call_id)
    world.sync()

    assert world.crm.get("activity", meeting_id) is not None
    assert world.provider.get("activity", call_event) is not None


# -- CAL-12 delete policy per direction -----------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL12_a_provider_delete_only_unlinks_when_the_crm_side_says_so(provider: Provider) -> None:
    world = SyncWorld(provider=provider, settings={"deletes": {"activity": {"crm": "unlink"}}})
    crm_id = world.crm.create("activity", meeting(subject="Kick-off"))
    world.sync()
    world.provider.delete("activity", provider_twin(world, crm_id)["id"])

    world.sync()

    assert crm_activity(world, crm_id)["subject"] == "Kick-off"  # kept in the CRM
    world.crm.update("activity", crm_id, {"notes": "edited after the unlink"})
    world.sync()
    assert world.provider.all("activity") == []  # unlinked: it no longer syncs
    assert any("unlinked" in item["reason"] for item in world.history(world.runs()[1]["id"]))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL12_a_crm_delete_only_unlinks_when_the_provider_side_says_so(provider: Provider) -> None:
    world = SyncWorld(provider=provider, settings={"deletes": {"activity": {"provider": "unlink"}}})
    crm_id = world.crm.create("activity", meeting(subject="Kick-off"))
    world.sync()
    provider_id = provider_twin(world, crm_id)["id"]
    world.crm.delete("activity", crm_id)

    world.sync()

    assert provider_event(world, provider_id)["subject"] == "Kick-off"
    world.provider.update("activity", provider_id, {"location": "Room 2"})
    world.advance(timedelta(minutes=15))
    world.sync()
    assert world.crm.all("activity") == []  # not brought back: the pair is unlinked


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL12_each_direction_keeps_its_own_policy(provider: Provider) -> None:
    world = SyncWorld(provider=provider, settings={"deletes": {"activity": {"crm": "unlink"}}})
    kept = world.crm.create("activity", meeting(subject="Kept in the CRM"))
    gone = world.crm.create("activity", meeting(subject="Gone from the provider"))
    world.sync()
    world.provider.delete("activity", provider_twin(world, kept)["id"])
    gone_twin = provider_twin(world, gone)["id"]
    world.crm.delete("activity", gone)

    world.sync()

    assert crm_activity(world, kept)["subject"] == "Kept in the CRM"
    assert world.provider.get("activity", gone_twin) is None  # CAL-4 still holds this way


def test_CAL12_a_delete_policy_that_is_not_one_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"deletes\.activity\.crm"):
        SyncWorld(settings={"deletes": {"activity": {"crm": "archive"}}})


# -- CAL-5 related-info block ----------------------------------------------------------------

REGARDING = {
    "contact": "Ada Lovelace",
    "account": "Analytical Engines Ltd",
    "lead": "Charles Babbage",
    "company": "Difference Works",
    "opportunity": "Engine No. 2",
    "ticket": "T-1843",
}


def regarding_activity(provider: Provider, **world_args: Any) -> tuple[SyncWorld, str, str]:
    world = SyncWorld(provider=provider, **world_args)
    crm_id = world.crm.create("activity", meeting(notes="Bring slides", regarding=REGARDING))
    world.sync()
    return world, crm_id, provider_twin(world, crm_id)["id"]


def provider_notes(world: SyncWorld, provider_id: str) -> str:
    record = provider_event(world, provider_id)
    return str(record["notes"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_provider_notes_carry_the_related_info_block(provider: Provider) -> None:
    world, _, provider_id = regarding_activity(provider)

    notes = provider_notes(world, provider_id)

    assert notes.startswith("Bring slides")
    for value in [*REGARDING.values(), "u1"]:
        assert value in notes.removeprefix("Bring slides")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_tenant_template_shapes_the_block(provider: Provider) -> None:
    tenant = {"related_info_template": "Deal {opportunity} with {account}"}
    world, _, provider_id = regarding_activity(provider, tenant=tenant)

    assert "Deal Engine No. 2 with Analytical Engines Ltd" in provider_notes(world, provider_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_block_is_regenerated_when_the_crm_changes(provider: Provider) -> None:
    world, crm_id, provider_id = regarding_activity(provider)
    world.crm.update(
        "activity", crm_id, {"regarding": {**REGARDING, "opportunity": "Engine No. 3"}}
    )

    world.sync()

    notes = provider_notes(world, provider_id)
    assert "Engine No. 3" in notes
    assert "Engine No. 2" not in notes
    assert notes.startswith("Bring slides")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_edits_inside_the_block_are_not_synced_back(provider: Provider) -> None:
    world, crm_id, provider_id = regarding_activity(provider)
    tampered = provider_notes(world, provider_id).replace("Engine No. 2", "Free lunch")
    world.provider.update("activity", provider_id, {"notes": tampered})

    world.sync()

    activity = crm_activity(world, crm_id)
    assert activity["notes"] == "Bring slides"
    assert activity["regarding"]["opportunity"] == "Engine No. 2"
    notes = provider_notes(world, provider_id)
    assert "Engine No. 2" in notes
    assert "Free lunch" not in notes


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_users_own_notes_sync_from_provider_to_crm(provider: Provider) -> None:
    world, crm_id, provider_id = regarding_activity(provider)
    edited = provider_notes(world, provider_id).replace("Bring slides", "Bring slides and demo")
    world.provider.update("activity", provider_id, {"notes": edited})

    world.sync()

    assert crm_activity(world, crm_id)["notes"] == "Bring slides and demo"
    assert "Engine No. 2" in provider_notes(world, provider_id)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_users_own_notes_sync_from_crm_to_provider(provider: Provider) -> None:
    world, crm_id, provider_id = regarding_activity(provider)
    world.crm.update("activity", crm_id, {"notes": "Agenda sent"})

    world.sync()

    notes = provider_notes(world, provider_id)
    assert notes.startswith("Agenda sent")
    assert "Bring slides" not in notes
    assert "Engine No. 2" in notes


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL5_note_added_below_the_block_syncs_without_the_block(provider: Provider) -> None:
    world, crm_id, provider_id = regarding_activity(provider)
    appended = provider_notes(world, provider_id) + "\n\nCall back on Friday"
    world.provider.update("activity", provider_id, {"notes": appended})

    world.sync()

    crm_notes = crm_activity(world, crm_id)["notes"]
    assert "Call back on Friday" in crm_notes
    assert "Bring slides" in crm_notes
    for value in REGARDING.values():
        assert value not in crm_notes


# -- CAL-6 leader and members --------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_members_become_attendees_when_the_leader_syncs(provider: Provider) -> None:
    world = SyncWorld(provider=provider, syncing_users=("u2",))
    world.crm.create("activity", meeting(members=["u2", "u3"]))

    world.sync()

    assert sorted(only(world.provider.all("activity"))["members"]) == ["u2", "u3"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_a_syncing_leaders_activity_is_not_copied_into_a_members_calendar(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider, syncing_users=("u2",))
    world.crm.create("activity", meeting(members=["u1", "u3"]), owner="u2")

    world.sync()

    assert world.provider.all("activity") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_member_of_non_syncing_leader_gets_own_event_without_invitations(
    provider: Provider,
) -> None:
    world = SyncWorld(
        provider=provider,
        settings={"notify_attendees": True},
        syncing_users=("u3",),
    )
    world.crm.create("activity", meeting(members=["u1", "u3"]), owner="u2")

    world.sync()

    assert only(world.provider.all("activity"))["members"] == []
    assert world.provider.invitations() == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_provider_event_with_attendees_becomes_activity_led_by_the_user(
    provider: Provider,
) -> None:
    world = SyncWorld(provider=provider, syncing_users=("u2",))
    world.provider.create("activity", event(members=["u2", "grace@example.com"]))

    world.sync()

    activity = only(world.crm.all("activity"))
    assert activity["leader"] == "u1"
    assert "u2" in activity["members"]


def members_event(provider: Provider) -> tuple[SyncWorld, str, str]:
    """u2 (not syncing) leads a meeting with u1; u1's own copy is on the provider."""
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting(members=["u1", "u3"]), owner="u2")
    world.sync()
    return world, crm_id, provider_twin(world, crm_id)["id"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_leaders_changes_reach_the_members_event(provider: Provider) -> None:
    world, crm_id, provider_id = members_event(provider)
    world.crm.update("activity", crm_id, {"subject": "Kickoff (room changed)", "location": "B2"})

    world.sync()

    mine = provider_event(world, provider_id)
    assert (mine["subject"], mine["location"]) == ("Kickoff (room changed)", "B2")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_member_who_edits_gets_own_copy_that_no_longer_follows_the_leader(
    provider: Provider,
) -> None:
    world, crm_id, provider_id = members_event(provider)
    world.provider.update("activity", provider_id, {"subject": "Kickoff (my prep)"})
    world.advance(timedelta(minutes=15))

    world.sync()

    leaders = crm_activity(world, crm_id)
    assert leaders["subject"] == "Kickoff"
    assert "u1" not in leaders["members"]
    copy = crm_twin(world, provider_id)
    assert copy["id"] != crm_id
    assert (copy["subject"], copy["leader"]) == ("Kickoff (my prep)", "u1")

    world.crm.update("activity", crm_id, {"subject": "Kickoff (postponed)"})
    world.advance(timedelta(minutes=15))
    world.sync()

    assert provider_event(world, provider_id)["subject"] == "Kickoff (my prep)"
    assert len(world.provider.all("activity")) == 1  # the copy is not sent out again


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL6_leaders_change_wins_over_members_change_of_the_same_field(provider: Provider) -> None:
    world, crm_id, provider_id = members_event(provider)
    world.provider.update("activity", provider_id, {"subject": "Kickoff (member)"})
    world.advance(timedelta(minutes=5))
    world.crm.update("activity", crm_id, {"subject": "Kickoff (leader)"})
    world.advance(timedelta(minutes=5))

    world.sync()

    assert crm_activity(world, crm_id)["subject"] == "Kickoff (leader)"


# -- CAL-7 confirmed, unconfirmed, declined -------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("status", ["confirmed", "unconfirmed"])
def test_CAL7_confirmed_and_unconfirmed_activities_sync_both_ways(
    provider: Provider, status: str
) -> None:
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting(subject="From CRM", status=status))
    provider_id = world.provider.create("activity", event(subject="From provider", status=status))

    world.sync()

    assert provider_twin(world, crm_id)["status"] == status
    assert crm_twin(world, provider_id)["status"] == status


def test_CAL7_microsoft_skips_activities_declined_before_the_first_sync() -> None:
    world = SyncWorld(provider="microsoft")
    world.crm.create("activity", meeting(subject="From CRM", status="declined"))
    world.provider.create("activity", event(subject="From provider", status="declined"))

    world.sync()

    assert [a["subject"] for a in world.crm.all("activity")] == ["From CRM"]
    assert [e["subject"] for e in world.provider.all("activity")] == ["From provider"]
    assert world.links("activity") == []


def test_CAL7_microsoft_removes_an_activity_declined_later_from_both_sides() -> None:
    world, crm_id, provider_id = synced_provider_event("microsoft")
    world.provider.update("activity", provider_id, {"status": "declined"})

    world.sync()

    assert world.provider.get("activity", provider_id) is None
    assert world.crm.get("activity", crm_id) is None


def test_CAL7_microsoft_member_declining_the_leaders_activity_leaves_their_calendar() -> None:
    world, crm_id, provider_id = members_event("microsoft")
    world.provider.update("activity", provider_id, {"status": "declined"})

    world.sync()

    assert world.provider.get("activity", provider_id) is None
    leaders = crm_activity(world, crm_id)
    assert leaders["status"] != "declined"
    assert "u1" not in leaders["members"]
    assert [a["id"] for a in world.crm.all("activity")] == [crm_id]


def test_CAL7_google_syncs_declined_activities_both_ways() -> None:
    world = SyncWorld(provider="google")
    crm_id = world.crm.create("activity", meeting(subject="From CRM", status="declined"))
    provider_id = world.provider.create(
        "activity", event(subject="From provider", status="declined")
    )

    world.sync()

    assert provider_twin(world, crm_id)["status"] == "declined"
    assert crm_twin(world, provider_id)["status"] == "declined"


def test_CAL7_google_keeps_an_activity_declined_later_on_both_sides() -> None:
    world, crm_id, provider_id = synced_provider_event("google")
    world.provider.update("activity", provider_id, {"status": "declined"})

    world.sync()

    assert world.provider.get("activity", provider_id) is not None
    activity = crm_activity(world, crm_id)
    assert activity["status"] == "declined"


def test_CAL7_declined_setting_overrides_the_provider_default() -> None:
    world = SyncWorld(provider="google", settings={"declined": "skip_then_remove"})
    world.provider.create("activity", event(status="declined"))

    world.sync()

    assert world.crm.all("activity") == []


# -- CAL-8 completion marker -----------------------------------------------------------------


def completed(provider: Provider, **settings: Any) -> tuple[SyncWorld, str, str]:
    world = SyncWorld(provider=provider, settings=settings)
    crm_id = world.crm.create("activity", meeting())
    world.sync()
    provider_id = provider_twin(world, crm_id)["id"]
    world.crm.update("activity", crm_id, {"status": "completed"})
    world.sync()
    return world, crm_id, provider_id


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_completed_activity_stays_on_calendar_with_provider_default_marker(
    provider: Provider,
) -> None:
    world, _, provider_id = completed(provider)

    record = provider_event(world, provider_id)
    assert record["subject"] == MARKED[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_activity_created_completed_gets_the_marker(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.crm.create("activity", meeting(status="completed"))

    world.sync()

    assert only(world.provider.all("activity"))["subject"] == MARKED[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_marker_is_never_synced_back_into_the_crm_subject(provider: Provider) -> None:
    world, crm_id, provider_id = completed(provider)
    world.provider.update("activity", provider_id, {"location": "Room 4"})

    world.sync()

    activity = crm_activity(world, crm_id)
    assert (activity["subject"], activity["status"], activity["location"]) == (
        "Kickoff",
        "completed",
        "Room 4",
    )
    assert provider_event(world, provider_id)["subject"] == MARKED[provider]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_renaming_a_marked_event_syncs_the_name_without_the_marker(provider: Provider) -> None:
    world, crm_id, provider_id = completed(provider)
    renamed = MARKED[provider].replace("Kickoff", "Kickoff review")
    world.provider.update("activity", provider_id, {"subject": renamed})

    world.sync()

    activity = crm_activity(world, crm_id)
    assert (activity["subject"], activity["status"]) == ("Kickoff review", "completed")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_removing_the_marker_on_the_provider_reopens_the_activity(provider: Provider) -> None:
    world, crm_id, provider_id = completed(provider)
    world.provider.update("activity", provider_id, {"subject": "Kickoff"})

    world.sync()

    activity = crm_activity(world, crm_id)
    assert activity["subject"] == "Kickoff"
    assert activity["status"] != "completed"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_crm_rename_of_completed_activity_keeps_the_marker(provider: Provider) -> None:
    world, crm_id, provider_id = completed(provider)
    world.crm.update("activity", crm_id, {"subject": "Retro"})

    world.sync()

    expected = MARKED[provider].replace("Kickoff", "Retro")
    assert provider_event(world, provider_id)["subject"] == expected


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL8_marker_template_is_a_setting(provider: Provider) -> None:
    world, _, provider_id = completed(provider, completed_marker="[done] {subject}")

    assert provider_event(world, provider_id)["subject"] == "[done] Kickoff"


# -- CAL-9 recurrence -----------------------------------------------------------------------

CANCELLED = "EXDATE:20261110T100000Z"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("rule", [WEEKLY, f"{WEEKLY}\n{CANCELLED}"], ids=["series", "cancelled"])
def test_CAL9_crm_series_reaches_the_provider(provider: Provider, rule: str) -> None:
    world, _, provider_id = synced_crm_activity(provider, recurrence=rule)

    assert provider_event(world, provider_id)["recurrence"] == rule


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("rule", [WEEKLY, f"{WEEKLY}\n{CANCELLED}"], ids=["series", "cancelled"])
def test_CAL9_provider_series_reaches_the_crm(provider: Provider, rule: str) -> None:
    world, crm_id, _ = synced_provider_event(provider, recurrence=rule)

    assert crm_activity(world, crm_id)["recurrence"] == rule


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL9_cancelling_an_occurrence_on_the_provider_reaches_the_crm(provider: Provider) -> None:
    world, crm_id, provider_id = synced_crm_activity(provider, recurrence=WEEKLY)
    world.provider.update("activity", provider_id, {"recurrence": f"{WEEKLY}\n{CANCELLED}"})

    world.sync()

    assert crm_activity(world, crm_id)["recurrence"] == f"{WEEKLY}\n{CANCELLED}"


def occurrences(rule: str, start: datetime) -> list[datetime]:
    series = rrulestr(rule, dtstart=start, forceset=True)
    return list(series.between(start, start + timedelta(days=366 * 50), inc=True))


def years_later(start: datetime, years: int) -> datetime:
    return start.replace(year=start.year + years)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("years", [2, 3])
def test_CAL9_infinite_series_is_capped_for_a_crm_that_cannot_hold_it(
    provider: Provider, years: int
) -> None:
    settings = {} if years == 2 else {"recurrence_years": years}
    world = SyncWorld(provider=provider, settings=settings)
    world.crm.set_capabilities(infinite_series=False)
    provider_id = world.provider.create("activity", event(recurrence=WEEKLY))

    world.sync()

    held = occurrences(crm_twin(world, provider_id)["recurrence"], START)
    assert years_later(START, years) - timedelta(days=7) < held[-1] <= years_later(START, years)
    assert held[0] == START


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL9_capping_is_not_synced_back_to_the_provider(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.crm.set_capabilities(infinite_series=False)
    provider_id = world.provider.create("activity", event(recurrence=WEEKLY))
    world.sync()
    world.provider.update("activity", provider_id, {"location": "Room 4"})
    world.advance(timedelta(minutes=15))

    world.sync()
    world.sync()

    assert provider_event(world, provider_id)["recurrence"] == WEEKLY
    capped = crm_twin(world, provider_id)
    assert capped["location"] == "Room 4"
    assert len(occurrences(capped["recurrence"], START)) < 200


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL9_capped_all_day_series_stays_a_valid_rrule(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.crm.set_capabilities(infinite_series=False)
    first = date(2026, 11, 3)
    provider_id = world.provider.create(
        "activity",
        {"subject": "Gym", "start": first, "end": first + timedelta(days=1), "recurrence": WEEKLY},
    )

    world.sync()

    rule = crm_twin(world, provider_id)["recurrence"]
    # RFC 5545: with a DATE start the UNTIL part must be a DATE too
    held = occurrences(rule, datetime.combine(first, time()))
    assert held[-1] <= datetime.combine(first, time()).replace(year=2028)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("capable", [True, False])
def test_CAL9_series_that_fits_the_crm_is_not_capped(provider: Provider, capable: bool) -> None:
    world = SyncWorld(provider=provider)
    world.crm.set_capabilities(infinite_series=capable)
    rule = WEEKLY if capable else "RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=10"
    provider_id = world.provider.create("activity", event(recurrence=rule))

    world.sync()

    assert crm_twin(world, provider_id)["recurrence"] == rule


# -- CAL-10 private provider events ------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL10_private_provider_event_is_not_synced_by_default(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.provider.create("activity", event(subject="Therapy", private=True))
    world.provider.create("activity", event(subject="Review"))

    world.sync()

    assert [a["subject"] for a in world.crm.all("activity")] == ["Review"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL10_private_provider_event_syncs_when_the_user_opts_in(provider: Provider) -> None:
    world = SyncWorld(provider=provider, settings={"private_items": True})
    world.provider.create("activity", event(subject="Therapy", private=True))

    world.sync()

    activity = only(world.crm.all("activity"))
    assert (activity["subject"], activity["private"]) == ("Therapy", True)


# -- CAL-11 time zones, all-day events, attachments -------------------------------------------

ZONES = [
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Pacific/Pago_Pago",
]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL11_crm_time_zone_is_kept_on_the_provider(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    world.crm.create(
        "activity",
        meeting(start="2026-11-05T10:00:00", end="2026-11-05T11:30:00", timezone="Europe/Berlin"),
    )

    world.sync()

    created = only(world.provider.all("activity"))
    assert created["timezone"] == "Europe/Berlin"
    assert created["start"] == datetime(2026, 11, 5, 9, 0, tzinfo=UTC)  # 10:00 CET
    assert created["end"] == datetime(2026, 11, 5, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL11_provider_time_zone_is_kept_in_the_crm_when_times_move(provider: Provider) -> None:
    world, crm_id, provider_id = synced_provider_event(
        provider,
        start="2026-11-05T09:00:00",
        end="2026-11-05T10:00:00",
        timezone="America/New_York",
    )
    assert crm_activity(world, crm_id)["start"] == datetime(2026, 11, 5, 14, 0, tzinfo=UTC)
    world.provider.update(
        "activity", provider_id, {"start": "2026-11-05T11:00:00", "end": "2026-11-05T12:00:00"}
    )

    world.sync()

    activity = crm_activity(world, crm_id)
    assert activity["timezone"] == "America/New_York"
    assert activity["start"] == datetime(2026, 11, 5, 16, 0, tzinfo=UTC)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("zone", ZONES)
def test_CAL11_crm_all_day_activity_keeps_its_days_on_the_provider(
    provider: Provider, zone: str
) -> None:
    world = SyncWorld(provider=provider, settings={"timezone": zone})
    crm_id = world.crm.create(
        "activity",
        {
            "type": "meeting",
            "subject": "Offsite",
            "start": date(2026, 11, 5),
            "end": date(2026, 11, 7),
            "timezone": zone,
        },
    )

    world.sync()
    world.crm.update("activity", crm_id, {"notes": "bring boots"})
    world.sync()

    created = provider_twin(world, crm_id)
    assert created["all_day"] is True
    assert (created["start"], created["end"]) == (date(2026, 11, 5), date(2026, 11, 7))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("zone", ZONES)
def test_CAL11_provider_all_day_event_keeps_its_days_in_the_crm(
    provider: Provider, zone: str
) -> None:
    world = SyncWorld(provider=provider, settings={"timezone": zone})
    provider_id = world.provider.create(
        "activity",
        {
            "subject": "Holiday",
            "start": date(2026, 11, 5),
            "end": date(2026, 11, 6),
            "timezone": zone,
        },
    )

    world.sync()
    world.provider.update("activity", provider_id, {"location": "Home"})
    world.advance(timedelta(minutes=15))
    world.sync()

    activity = crm_twin(world, provider_id)
    assert activity["all_day"] is True
    assert (activity["start"], activity["end"]) == (date(2026, 11, 5), date(2026, 11, 6))
    assert activity["location"] == "Home"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_CAL11_attachments_are_not_synced(provider: Provider) -> None:
    world = SyncWorld(provider=provider)
    crm_id = world.crm.create("activity", meeting(subject="From CRM", attachments=["deck.pdf"]))
    provider_id = world.provider.create(
        "activity", event(subject="From provider", attachments=["agenda.pdf"])
    )

    world.sync()

    assert "attachments" not in provider_twin(world, crm_id)
    assert "attachments" not in crm_twin(world, provider_id)
