"""Shared sync rules (SYN-1..9), driven end to end through SyncWorld."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.settings import PROVIDER_DEFAULTS
from crmsync.store.memory import MemoryStore
from crmsync.testing import SyncWorld

START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
LATER = timedelta(minutes=5)


def meeting(subject: str, **extra: Any) -> dict[str, Any]:
    """A one-hour meeting tomorrow, well inside every sync window."""
    return {
        "subject": subject,
        "start": START,
        "end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        **extra,
    }


def twin_of(world: SyncWorld, kind: str, crm_id: str) -> str:
    """The provider id linked to a CRM record (fails when there is none)."""
    found = [link["provider_id"] for link in world.links(kind) if link["crm_id"] == crm_id]
    assert len(found) == 1 and found[0], f"{kind} {crm_id} has no provider twin: {found}"
    return str(found[0])


def crm_twin_of(world: SyncWorld, kind: str, provider_id: str) -> str:
    found = [link["crm_id"] for link in world.links(kind) if link["provider_id"] == provider_id]
    assert len(found) == 1 and found[0], f"{kind} {provider_id} has no CRM twin: {found}"
    return str(found[0])


def linked_meeting(world: SyncWorld, subject: str = "Planning", **extra: Any) -> tuple[str, str]:
    """A meeting created in the CRM and synced once: (crm_id, provider_id)."""
    crm_id = world.crm.create("activity", meeting(subject, **extra))
    world.sync()
    return crm_id, twin_of(world, "activity", crm_id)


def versions(world: SyncWorld) -> dict[tuple[str, str, str], str]:
    """Every record's version on both sides, to prove that nothing was written."""
    out: dict[tuple[str, str, str], str] = {}
    for kind in ("contact", "activity", "todo"):
        for side, handle in (("crm", world.crm), ("provider", world.provider)):
            for record in handle.all(kind):  # type: ignore[arg-type]
                out[(side, kind, record["id"])] = record["version"]
    return out


def subjects(records: list[dict[str, Any]]) -> list[str]:
    return sorted(r["subject"] for r in records)


def field_map_without(kind: str, name: str, provider: str = "google") -> dict[str, list[str]]:
    """The provider's default field map with one field of one kind left out."""
    defaults = PROVIDER_DEFAULTS[provider]["field_map"]  # type: ignore[index]
    out = {k: list(v) for k, v in defaults.items()}
    out[kind] = [f for f in out[kind] if f != name]
    return out


# -- SYN-1 only mapped fields move --------------------------------------------------------


def test_SYN1_provider_native_field_is_never_touched() -> None:
    world = SyncWorld()
    pid = world.provider.create("activity", {**meeting("Review"), "color": "tomato"})
    world.sync()
    crm_id = crm_twin_of(world, "activity", pid)

    world.crm.update("activity", crm_id, {"subject": "Review (moved)", "location": "Room 4"})
    world.sync()

    event = world.provider.get("activity", pid)
    assert event is not None
    assert event["subject"] == "Review (moved)"
    assert event["location"] == "Room 4"
    assert event["color"] == "tomato"


def test_SYN1_native_field_added_by_the_user_survives_a_crm_update() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world)
    world.provider.update("activity", pid, {"color": "banana"})
    world.sync()

    world.crm.update("activity", crm_id, {"notes": "bring the numbers"})
    world.sync()

    event = world.provider.get("activity", pid)
    assert event is not None
    assert event["notes"] == "bring the numbers"
    assert event["color"] == "banana"


def test_SYN1_unmapped_field_does_not_move_from_crm() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world, location="Room 1")
    world.settings(field_map=field_map_without("activity", "location"))
    before = world.provider.get("activity", pid)
    assert before is not None

    world.crm.update("activity", crm_id, {"location": "Room 9"})
    world.sync()

    after = world.provider.get("activity", pid)
    assert after is not None
    assert after["location"] == "Room 1"
    assert after["version"] == before["version"]


def test_SYN1_unmapped_field_does_not_move_from_provider() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world, location="Room 1")
    world.settings(field_map=field_map_without("activity", "location"))

    world.provider.update("activity", pid, {"location": "Room 9", "subject": "Planning v2"})
    world.sync()

    activity = world.crm.get("activity", crm_id)
    assert activity is not None
    assert activity["subject"] == "Planning v2"  # mapped: moves
    assert activity["location"] == "Room 1"  # unmapped: stays


def test_SYN1_unmapped_field_is_not_sent_with_new_records() -> None:
    world = SyncWorld(settings={"field_map": field_map_without("activity", "location")})
    crm_id = world.crm.create("activity", meeting("From CRM", location="CRM room"))
    pid = world.provider.create("activity", meeting("From provider", location="Provider room"))
    world.sync()

    event = world.provider.get("activity", twin_of(world, "activity", crm_id))
    activity = world.crm.get("activity", crm_twin_of(world, "activity", pid))
    assert event is not None and activity is not None
    assert event["location"] == ""
    assert activity["location"] == ""


def test_SYN1_crm_field_outside_the_google_task_mapping_is_kept() -> None:
    world = SyncWorld(provider="google")
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": "2026-11-05"})
    world.crm.update("todo", crm_id, {"priority": "high"})
    world.sync()
    pid = twin_of(world, "todo", crm_id)
    task = world.provider.get("todo", pid)
    assert task is not None
    assert "priority" not in task  # Google tasks hold subject, due, status, notes only

    world.provider.update("todo", pid, {"subject": "Send the offer"})
    world.sync()

    todo = world.crm.get("todo", crm_id)
    assert todo is not None
    assert todo["subject"] == "Send the offer"
    assert todo["priority"] == "high"


# -- SYN-2 three-way merge and conflict policies -------------------------------------------


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_SYN2_different_fields_changed_on_both_sides_merge(provider: str) -> None:
    world = SyncWorld(provider=provider)  # type: ignore[arg-type]
    crm_id, pid = linked_meeting(world)

    world.crm.update("activity", crm_id, {"subject": "Planning (CRM)"})
    world.advance(LATER)
    world.provider.update("activity", pid, {"location": "Room 7"})
    world.sync()

    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    for record in (activity, event):
        assert record["subject"] == "Planning (CRM)"
        assert record["location"] == "Room 7"
    assert world.queue() == []


def both_edit_subject(world: SyncWorld, first: str) -> tuple[str, str]:
    """A linked meeting whose subject both sides change, `first` side earlier."""
    crm_id, pid = linked_meeting(world)
    edits = {
        "crm": lambda: world.crm.update("activity", crm_id, {"subject": "CRM subject"}),
        "provider": lambda: world.provider.update("activity", pid, {"subject": "Provider subject"}),
    }
    second = "provider" if first == "crm" else "crm"
    world.advance(LATER)
    edits[first]()
    world.advance(LATER)
    edits[second]()
    world.advance(LATER)
    return crm_id, pid


def both_subjects(world: SyncWorld, crm_id: str, pid: str) -> tuple[str, str]:
    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    return activity["subject"], event["subject"]


@pytest.mark.parametrize("first", ["crm", "provider"])
def test_SYN2_provider_wins_is_the_google_default(first: str) -> None:
    world = SyncWorld(provider="google")
    crm_id, pid = both_edit_subject(world, first)
    world.sync()
    assert both_subjects(world, crm_id, pid) == ("Provider subject", "Provider subject")


@pytest.mark.parametrize(
    ("first", "latest"),
    [("crm", "Provider subject"), ("provider", "CRM subject")],
)
def test_SYN2_latest_wins_is_the_microsoft_default(first: str, latest: str) -> None:
    world = SyncWorld(provider="microsoft")
    crm_id, pid = both_edit_subject(world, first)
    world.sync()
    assert both_subjects(world, crm_id, pid) == (latest, latest)


@pytest.mark.parametrize("first", ["crm", "provider"])
def test_SYN2_crm_wins_when_set(first: str) -> None:
    world = SyncWorld(provider="google", settings={"conflict_policy": "crm_wins"})
    crm_id, pid = both_edit_subject(world, first)
    world.sync()
    assert both_subjects(world, crm_id, pid) == ("CRM subject", "CRM subject")


def test_SYN2_manual_conflict_waits_in_the_queue_and_overwrites_nothing() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = both_edit_subject(world, "crm")

    world.sync()
    world.sync()  # waiting, also over several cycles

    assert both_subjects(world, crm_id, pid) == ("CRM subject", "Provider subject")
    [item] = world.queue()
    assert item["reason"] == "conflict"
    assert item["kind"] == "activity"
    assert item["crm_id"] == crm_id
    assert item["provider_id"] == pid
    assert "subject" in item["fields"]


@pytest.mark.parametrize(
    ("choice", "expected"), [("crm", "CRM subject"), ("provider", "Provider subject")]
)
def test_SYN2_manual_conflict_resolved_by_the_user_picks_a_side(choice: str, expected: str) -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = both_edit_subject(world, "crm")
    world.sync()
    [item] = world.queue()

    world.resolve(item["id"], choice)  # type: ignore[arg-type]
    world.sync()

    assert both_subjects(world, crm_id, pid) == (expected, expected)
    assert world.queue() == []


def test_SYN2_manual_conflict_on_one_field_holds_no_write_of_the_others() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = linked_meeting(world)
    world.crm.update("activity", crm_id, {"subject": "CRM subject", "notes": "agenda"})
    world.provider.update("activity", pid, {"subject": "Provider subject"})

    world.sync()

    event = world.provider.get("activity", pid)
    assert event is not None
    assert event["subject"] == "Provider subject"
    assert event["notes"] == ""  # meanwhile neither side is overwritten


# -- SYN-3 truncation never loses the provider's text ------------------------------------

LONG = "Quarterly planning with the whole sales team"


def test_SYN3_crm_gets_truncated_text_provider_keeps_full_text() -> None:
    world = SyncWorld()
    world.crm.set_field_limit("activity", "subject", 12)
    pid = world.provider.create("activity", meeting(LONG))

    world.sync()

    crm_id = crm_twin_of(world, "activity", pid)
    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    assert activity["subject"] == LONG[:12]
    assert event["subject"] == LONG


def test_SYN3_full_text_survives_later_syncs_while_the_crm_value_is_not_edited() -> None:
    world = SyncWorld()
    world.crm.set_field_limit("activity", "subject", 12)
    pid = world.provider.create("activity", meeting(LONG))
    world.sync()
    crm_id = crm_twin_of(world, "activity", pid)

    world.crm.update("activity", crm_id, {"notes": "edited in the CRM"})
    world.sync()
    world.provider.update("activity", pid, {"location": "Room 3"})
    world.sync()
    world.sync()

    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    assert event["subject"] == LONG
    assert event["notes"] == "edited in the CRM"
    assert activity["subject"] == LONG[:12]
    assert activity["location"] == "Room 3"


def test_SYN3_a_new_long_provider_value_is_truncated_again_and_kept_in_full() -> None:
    world = SyncWorld()
    world.crm.set_field_limit("activity", "subject", 12)
    pid = world.provider.create("activity", meeting(LONG))
    world.sync()
    crm_id = crm_twin_of(world, "activity", pid)
    newer = "Yearly planning with all account managers"

    world.provider.update("activity", pid, {"subject": newer})
    world.sync()
    world.sync()

    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    assert activity["subject"] == newer[:12]
    assert event["subject"] == newer


def test_SYN3_editing_the_truncated_value_in_the_crm_wins() -> None:
    world = SyncWorld()
    world.crm.set_field_limit("activity", "subject", 12)
    pid = world.provider.create("activity", meeting(LONG))
    world.sync()
    crm_id = crm_twin_of(world, "activity", pid)

    world.crm.update("activity", crm_id, {"subject": "Q4 plan"})
    world.sync()

    assert both_subjects(world, crm_id, pid) == ("Q4 plan", "Q4 plan")


# -- SYN-4 idempotent: retried or resumed cycles ------------------------------------------


@pytest.mark.parametrize("crash_after", [1, 2])
def test_SYN4_resumed_cycle_never_creates_a_second_copy(crash_after: int) -> None:
    world = SyncWorld()
    world.crm.create("activity", meeting("From CRM"))
    world.provider.create("activity", meeting("From provider", location="Room 2"))
    world.crash_after(crash_after)
    assert world.sync()["status"] == "crashed"

    world.sync()
    world.sync()

    expected = ["From CRM", "From provider"]
    assert subjects(world.crm.all("activity")) == expected
    assert subjects(world.provider.all("activity")) == expected
    assert len(world.links("activity")) == 2


def test_SYN4_retried_write_after_a_transient_failure_creates_one_copy() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", {"subject": "Call back", "due": "2026-11-04"})
    world.fail("provider", "create", "transient")
    world.sync()

    world.sync()
    world.sync()

    assert subjects(world.provider.all("todo")) == ["Call back"]
    twin_of(world, "todo", crm_id)


@pytest.mark.parametrize("policy", ["provider_wins", "latest_wins", "crm_wins"])
def test_SYN4_resume_never_reapplies_an_old_crm_value_over_a_newer_provider_edit(
    policy: str,
) -> None:
    world = SyncWorld(settings={"conflict_policy": policy})
    crm_id, pid = linked_meeting(world, subject="v1")
    world.advance(LATER)
    world.crm.update("activity", crm_id, {"subject": "v2"})
    world.crash_after(1)  # v2 reached the provider, then the process died
    assert world.sync()["status"] == "crashed"
    event = world.provider.get("activity", pid)
    assert event is not None and event["subject"] == "v2"

    world.advance(LATER)
    world.provider.update("activity", pid, {"subject": "v3"})  # the user's newer edit
    world.advance(LATER)
    world.sync()
    world.sync()

    assert both_subjects(world, crm_id, pid) == ("v3", "v3")


@pytest.mark.parametrize("policy", ["provider_wins", "latest_wins", "crm_wins"])
def test_SYN4_resume_never_reapplies_an_old_provider_value_over_a_newer_crm_edit(
    policy: str,
) -> None:
    world = SyncWorld(settings={"conflict_policy": policy})
    crm_id, pid = linked_meeting(world, subject="v1")
    world.advance(LATER)
    world.provider.update("activity", pid, {"subject": "v2"})
    world.crash_after(1)  # v2 reached the CRM, then the process died
    assert world.sync()["status"] == "crashed"
    activity = world.crm.get("activity", crm_id)
    assert activity is not None and activity["subject"] == "v2"

    world.advance(LATER)
    world.crm.update("activity", crm_id, {"subject": "v3"})  # the user's newer edit
    world.advance(LATER)
    world.sync()
    world.sync()

    assert both_subjects(world, crm_id, pid) == ("v3", "v3")


def test_SYN4_change_made_between_a_crashed_and_a_resumed_cycle_is_not_lost() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("activity", meeting("First draft"))
    world.crash_after(1)  # the provider event exists, the link is not finished
    assert world.sync()["status"] == "crashed"

    world.crm.update("activity", crm_id, {"subject": "Final", "location": "Room 5"})
    world.sync()
    world.sync()

    [event] = world.provider.all("activity")
    assert event["subject"] == "Final"
    assert event["location"] == "Room 5"
    assert event["id"] == twin_of(world, "activity", crm_id)


def test_SYN4_change_made_between_two_cycles_on_the_written_side_is_not_lost() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world)
    world.crm.update("activity", crm_id, {"subject": "Planning (CRM)"})
    world.crash_after(1)
    assert world.sync()["status"] == "crashed"

    world.provider.update("activity", pid, {"location": "Room 8"})
    world.sync()
    world.sync()

    activity = world.crm.get("activity", crm_id)
    event = world.provider.get("activity", pid)
    assert activity is not None and event is not None
    for record in (activity, event):
        assert record["subject"] == "Planning (CRM)"
        assert record["location"] == "Room 8"


# -- SYN-5 bad records fail alone -----------------------------------------------------------


def fail_items(world: SyncWorld) -> list[dict[str, Any]]:
    return [item for item in world.history() if item["outcome"] == "fail"]


def mentions(item: dict[str, Any], text: str) -> bool:
    return text in f"{item.get('reason')} {item.get('error')}"


@pytest.mark.provider_stores_anything
def test_SYN5_unknown_time_zone_fails_alone_with_its_reason() -> None:
    world = SyncWorld()
    bad = world.provider.create("activity", meeting("On Mars", timezone="Mars/Olympus"))
    world.provider.create("activity", meeting("On Earth"))

    run = world.sync()

    assert subjects(world.crm.all("activity")) == ["On Earth"]
    assert run["status"] == "partial"
    [item] = fail_items(world)
    assert item["kind"] == "activity"
    assert item["provider_id"] == bad
    assert mentions(item, "Mars/Olympus")


@pytest.mark.provider_stores_anything
def test_SYN5_bad_record_is_retried_next_cycle_and_syncs_once_fixed() -> None:
    world = SyncWorld()
    bad = world.provider.create("activity", meeting("On Mars", timezone="Mars/Olympus"))
    world.sync()

    world.sync()  # nothing changed: still failing, still reported
    [item] = fail_items(world)
    assert item["provider_id"] == bad

    world.provider.update("activity", bad, {"timezone": "Europe/Paris"})
    run = world.sync()

    assert run["status"] == "ok"
    assert subjects(world.crm.all("activity")) == ["On Mars"]
    crm_twin_of(world, "activity", bad)


def test_SYN5_end_before_start_in_the_crm_fails_alone() -> None:
    world = SyncWorld()
    bad = world.crm.create(
        "activity", meeting("Backwards", start=START, end=START - timedelta(hours=1))
    )
    world.crm.create("activity", meeting("Forwards"))

    run = world.sync()

    assert run["status"] == "partial"
    assert subjects(world.provider.all("activity")) == ["Forwards"]
    [item] = fail_items(world)
    assert item["crm_id"] == bad
    assert mentions(item, "end")


@pytest.mark.provider_stores_anything
def test_SYN5_linked_record_turned_bad_fails_alone_and_the_other_side_is_kept() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world, subject="Kept")
    other_crm, other_pid = linked_meeting(world, subject="Other")
    world.provider.update("activity", pid, {"timezone": "Mars/Olympus", "subject": "Broken"})
    world.provider.update("activity", other_pid, {"location": "Room 1"})

    world.sync()

    kept = world.crm.get("activity", crm_id)
    other = world.crm.get("activity", other_crm)
    assert kept is not None and other is not None
    assert kept["subject"] == "Kept"
    assert other["location"] == "Room 1"
    [item] = fail_items(world)
    assert item["provider_id"] == pid
    assert mentions(item, "Mars/Olympus")


def test_SYN5_permanently_refused_write_fails_alone_and_is_retried() -> None:
    world = SyncWorld()
    first = world.crm.create("activity", meeting("Alpha"))
    second = world.crm.create("activity", meeting("Beta", location="Room 2"))
    world.fail("provider", "create", "permanent")

    run = world.sync()

    assert run["status"] == "partial"
    assert len(world.provider.all("activity")) == 1
    [item] = fail_items(world)
    assert item["crm_id"] in (first, second)
    assert item["error"]

    run = world.sync()  # the refusal is not repeated: the retry goes through

    assert run["status"] == "ok"
    assert subjects(world.provider.all("activity")) == ["Alpha", "Beta"]
    twin_of(world, "activity", first)
    twin_of(world, "activity", second)


# -- SYN-6 mass-delete guard --------------------------------------------------------------


def linked_meetings(world: SyncWorld, n: int) -> list[tuple[str, str]]:
    crm_ids = [world.crm.create("activity", meeting(f"Meeting {i:02}")) for i in range(n)]
    world.sync()
    return [(c, twin_of(world, "activity", c)) for c in crm_ids]


def delete_on(world: SyncWorld, side: str, pairs: list[tuple[str, str]]) -> None:
    for crm_id, pid in pairs:
        if side == "crm":
            world.crm.delete("activity", crm_id)
        else:
            world.provider.delete("activity", pid)


OTHER = {"crm": "provider", "provider": "crm"}


def count_on(world: SyncWorld, side: str) -> int:
    handle = world.crm if side == "crm" else world.provider
    return len(handle.all("activity"))


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN6_mass_delete_is_held_for_confirmation(side: str) -> None:
    world = SyncWorld()
    pairs = linked_meetings(world, 12)

    delete_on(world, side, pairs[:10])  # >= 10 and > 25 % of 12
    world.sync()

    assert count_on(world, OTHER[side]) == 12
    items = world.queue()
    assert len(items) == 10
    assert {i["reason"] for i in items} == {"mass_delete"}


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN6_resolving_held_mass_deletes_applies_them(side: str) -> None:
    world = SyncWorld()
    pairs = linked_meetings(world, 12)
    delete_on(world, side, pairs[:10])
    world.sync()

    for item in world.queue():
        world.resolve(item["id"], side)  # type: ignore[arg-type]
    world.sync()

    assert count_on(world, OTHER[side]) == 2
    assert world.queue() == []


def test_SYN6_deletes_below_the_minimum_go_through() -> None:
    world = SyncWorld()
    pairs = linked_meetings(world, 12)

    delete_on(world, "provider", pairs[:9])  # 75 % of the links, but fewer than 10
    world.sync()

    assert count_on(world, "crm") == 3
    assert world.queue() == []


@pytest.mark.parametrize(("deleted", "held"), [(3, False), (4, True)])
def test_SYN6_deletes_must_exceed_the_ratio_to_be_held(deleted: int, held: bool) -> None:
    world = SyncWorld(settings={"mass_delete_min": 2, "mass_delete_ratio": 0.25})
    pairs = linked_meetings(world, 12)

    delete_on(world, "provider", pairs[:deleted])  # 3 of 12 is exactly 25 %: not more
    world.sync()

    assert count_on(world, "crm") == (12 if held else 12 - deleted)
    assert len(world.queue()) == (deleted if held else 0)


def test_SYN6_unlinking_many_contacts_at_once_waits_for_confirmation_too() -> None:
    # A provider that suddenly lists no contacts would, with the default delete
    # behaviour (unlink), take every contact out of the CRM sync group.
    world = SyncWorld()
    crm_ids = []
    for n in range(12):
        crm_id = world.crm.create(
            "contact", {"first_name": f"C{n:02}", "emails": [f"c{n}@example.com"]}
        )
        world.crm.add_to_sync_group(crm_id)
        crm_ids.append(crm_id)
    world.sync()
    for link in world.links("contact")[:10]:
        world.provider.delete("contact", link["provider_id"])

    world.sync()

    assert world.crm.sync_group() == sorted(crm_ids)  # nobody left the group
    items = world.queue()
    assert len(items) == 10 and {i["reason"] for i in items} == {"mass_delete"}


# -- SYN-7 an edit beats a delete -----------------------------------------------------------


def test_SYN7_edited_in_crm_deleted_on_provider_is_restored_on_provider() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world)
    world.crm.update("activity", crm_id, {"subject": "Planning (edited)"})
    world.provider.delete("activity", pid)

    world.sync()
    world.sync()

    [event] = world.provider.all("activity")
    assert event["subject"] == "Planning (edited)"
    assert event["id"] == twin_of(world, "activity", crm_id)
    assert subjects(world.crm.all("activity")) == ["Planning (edited)"]


def test_SYN7_edited_on_provider_deleted_in_crm_is_restored_in_crm() -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world)
    world.provider.update("activity", pid, {"location": "Room 12"})
    world.crm.delete("activity", crm_id)

    world.sync()
    world.sync()

    [activity] = world.crm.all("activity")
    assert activity["subject"] == "Planning"
    assert activity["location"] == "Room 12"
    assert activity["id"] == crm_twin_of(world, "activity", pid)
    assert len(world.provider.all("activity")) == 1


# -- SYN-8 no spam ------------------------------------------------------------------------


def world_with_everything() -> SyncWorld:
    world = SyncWorld()
    contact = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@example.com"]})
    world.crm.add_to_sync_group(contact)
    labelled = world.provider.create("contact", {"first_name": "Bob", "emails": ["bob@x.org"]})
    world.provider.label(labelled)
    world.crm.create("activity", meeting("From CRM", members=["u2"]))
    world.provider.create("activity", meeting("From provider"))
    world.crm.create("todo", {"subject": "CRM todo", "due": "2026-11-04"})
    world.provider.create("todo", {"subject": "Provider task", "due": "2026-11-05"})
    world.sync()
    return world


def test_SYN8_a_cycle_with_nothing_changed_writes_nothing() -> None:
    world = world_with_everything()
    before = versions(world)

    run = world.sync()

    assert run["counts"] == {}
    assert versions(world) == before


def test_SYN8_own_writes_coming_back_are_not_written_again() -> None:
    world = world_with_everything()
    crm_id = world.crm.all("activity")[0]["id"]
    world.crm.update("activity", crm_id, {"subject": "Edited"})
    world.sync()  # writes to the provider; its echo comes back in the next feed
    before = versions(world)

    run = world.sync()

    assert run["counts"] == {}
    assert versions(world) == before


def test_SYN8_touch_without_a_mapped_change_is_not_written() -> None:
    world = SyncWorld(provider="google")
    todo = world.crm.create("todo", {"subject": "Send offer", "due": "2026-11-05"})
    crm_id, _ = linked_meeting(world)
    before = versions(world)

    world.crm.update("activity", crm_id, {"subject": "Planning"})  # same value, new version
    world.crm.update("todo", todo, {"priority": "high"})  # not held by Google tasks
    run = world.sync()

    after = versions(world)
    assert run["counts"] == {}
    provider_side = {k: v for k, v in after.items() if k[0] == "provider"}
    assert provider_side == {k: v for k, v in before.items() if k[0] == "provider"}


def test_SYN8_provider_writes_send_no_invitations_by_default() -> None:
    world = SyncWorld()
    crm_id, _ = linked_meeting(world, members=["u2", "u3"])
    world.crm.update("activity", crm_id, {"subject": "Moved", "members": ["u2", "u3", "u4"]})
    world.sync()

    assert world.provider.invitations() == []


def test_SYN8_invitations_are_sent_when_the_user_asks_for_them() -> None:
    world = SyncWorld(settings={"notify_attendees": True})
    crm_id = world.crm.create("activity", meeting("Kick-off", members=["u2", "u3"]))
    world.sync()

    pid = twin_of(world, "activity", crm_id)
    invited = {member for event, member in world.provider.invitations() if event == pid}
    assert invited == {"u2", "u3"}


def test_SYN8_an_activity_that_asks_for_invitations_sends_them_though_the_user_does_not() -> None:
    world = SyncWorld()  # notify_attendees is off
    asked = world.crm.create("activity", meeting("Board meeting", members=["u2"], invite=True))
    quiet = world.crm.create("activity", meeting("Stand-up", members=["u3"]))
    world.sync()
    world.crm.update("activity", asked, {"subject": "Board meeting (moved)"})
    world.crm.update("activity", quiet, {"subject": "Stand-up (moved)"})
    world.sync()

    asked_id, quiet_id = twin_of(world, "activity", asked), twin_of(world, "activity", quiet)
    invitations = world.provider.invitations()
    assert invitations.count((asked_id, "u2")) == 2  # the invitation, then the update
    assert all(event != quiet_id for event, _ in invitations)


# -- SYN-9 a lost cursor re-matches, never re-imports --------------------------------------


def expire(world: SyncWorld, side: str) -> None:
    if side in ("crm", "both"):
        world.crm.expire_cursors()
    if side in ("provider", "both"):
        world.provider.expire_cursors()


def record_ids(world: SyncWorld) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for kind in ("contact", "activity", "todo"):
        out[("crm", kind)] = sorted(r["id"] for r in world.crm.all(kind))  # type: ignore[arg-type]
        out[("provider", kind)] = sorted(r["id"] for r in world.provider.all(kind))  # type: ignore[arg-type]
    return out


def link_pairs(world: SyncWorld) -> set[tuple[str, str | None, str | None]]:
    return {
        (kind, link["crm_id"], link["provider_id"])
        for kind in ("contact", "activity", "todo")
        for link in world.links(kind)  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("side", ["crm", "provider", "both"])
def test_SYN9_lost_cursor_rematches_without_duplicates(side: str) -> None:
    world = world_with_everything()
    ids, pairs, before = record_ids(world), link_pairs(world), versions(world)

    expire(world, side)
    run = world.sync()
    world.sync()

    assert run["status"] == "ok"
    assert record_ids(world) == ids
    assert link_pairs(world) == pairs
    assert versions(world) == before


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN9_deletion_while_the_cursor_was_lost_is_propagated(side: str) -> None:
    world = SyncWorld()
    keep = linked_meeting(world, subject="Keep")
    gone = linked_meeting(world, subject="Gone")
    delete_on(world, side, [gone])

    expire(world, side)
    world.sync()

    for handle in (world.crm, world.provider):
        assert subjects(handle.all("activity")) == ["Keep"]
    assert [(link["crm_id"], link["provider_id"]) for link in world.links("activity")] == [keep]


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN9_edit_while_the_cursor_was_lost_is_propagated(side: str) -> None:
    world = SyncWorld()
    crm_id, pid = linked_meeting(world)
    if side == "crm":
        world.crm.update("activity", crm_id, {"subject": "Edited"})
    else:
        world.provider.update("activity", pid, {"subject": "Edited"})

    expire(world, side)
    world.sync()

    assert both_subjects(world, crm_id, pid) == ("Edited", "Edited")
    assert len(world.crm.all("activity")) == len(world.provider.all("activity")) == 1


def test_SYN9_reconnecting_rematches_existing_records() -> None:
    world = world_with_everything()
    ids = record_ids(world)
    pairs = link_pairs(world)

    world.store = MemoryStore()  # a new connection: no links, no cursors
    world.sync()
    world.sync()

    assert record_ids(world) == ids
    assert link_pairs(world) == pairs


# -- SYN-10 a snoozed or dismissed reminder is no edit -----------------------------------------

LATEST_WINS = {"conflict_policy": "latest_wins"}


@pytest.mark.parametrize("provider", ["google", "microsoft"])
@pytest.mark.parametrize("state", ["snoozed", "dismissed"])
def test_SYN10_a_snoozed_or_dismissed_reminder_writes_nothing_and_copies_nothing(
    provider: str, state: str
) -> None:
    world = SyncWorld(provider=provider)  # type: ignore[arg-type]
    crm_id, pid = linked_meeting(world)
    crm_version = world.crm.get("activity", crm_id)["version"]  # type: ignore[index]
    world.advance(LATER)

    world.provider.snooze("activity", pid, state)
    run = world.sync()

    assert run["counts"] == {}
    assert world.crm.get("activity", crm_id)["version"] == crm_version  # type: ignore[index]
    assert len(world.crm.all("activity")) == len(world.provider.all("activity")) == 1


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_SYN10_a_reminder_snoozed_after_both_edits_does_not_win_the_conflict_for_the_provider(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider, settings=LATEST_WINS)  # type: ignore[arg-type]
    crm_id, pid = both_edit_subject(world, first="provider")  # the CRM's edit is the later
    world.provider.snooze("activity", pid)  # moves the provider's time past the CRM's edit

    world.sync()

    assert both_subjects(world, crm_id, pid) == ("CRM subject", "CRM subject")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_SYN10_a_reminder_snoozed_before_a_real_later_edit_leaves_latest_wins_as_it_was(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider, settings=LATEST_WINS)  # type: ignore[arg-type]
    crm_id, pid = linked_meeting(world)
    world.provider.snooze("activity", pid)
    world.advance(LATER)
    world.sync()  # the reminder is seen; it changed nothing
    world.advance(LATER)
    world.crm.update("activity", crm_id, {"subject": "CRM subject"})
    world.advance(LATER)
    world.provider.update("activity", pid, {"subject": "Provider subject"})
    world.advance(LATER)

    world.sync()

    assert both_subjects(world, crm_id, pid) == ("Provider subject", "Provider subject")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
@pytest.mark.parametrize("kind", ["activity", "todo"])
@pytest.mark.parametrize(
    ("made_in", "crashed"),
    [("crm", False), ("crm", True), ("provider", False), ("provider", True)],
    ids=["crm_one_go", "crm_after_a_crash", "provider_one_go", "provider_after_a_crash"],
)
def test_SYN10_latest_wins_counts_the_provider_time_of_every_linked_record(
    provider: str, kind: str, made_in: str, crashed: bool
) -> None:
    """A record linked when crmsync copied it, either way, in one go or finished after
    the worker died mid-create, is linked with the reminder the provider shows, so its
    first later edit there is an edit and wins under latest_wins."""
    world = SyncWorld(provider=provider, settings=LATEST_WINS)  # type: ignore[arg-type]
    fields = meeting("Planning") if kind == "activity" else {"subject": "Send offer"}
    side = world.crm if made_in == "crm" else world.provider
    made = side.create(kind, fields)  # type: ignore[arg-type]
    if crashed:
        world.crash_after(1)  # dies right after the create on the other side
        world.sync()
    world.sync()
    if made_in == "crm":
        crm_id, pid = made, twin_of(world, kind, made)
    else:
        crm_id, pid = crm_twin_of(world, kind, made), made
    world.advance(LATER)
    world.crm.update(kind, crm_id, {"subject": "CRM subject"})  # type: ignore[arg-type]
    world.advance(LATER)
    world.provider.update(kind, pid, {"subject": "Provider subject"})  # type: ignore[arg-type]
    world.advance(LATER)

    world.sync()

    crm, made = world.crm.get(kind, crm_id), world.provider.get(kind, pid)  # type: ignore[arg-type]
    assert crm is not None and made is not None
    assert (crm["subject"], made["subject"]) == ("Provider subject", "Provider subject")


def test_SYN10_a_snoozed_task_reminder_is_no_edit_and_wins_no_conflict() -> None:
    world = SyncWorld(provider="microsoft")  # latest_wins by default; To Do has reminders
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": START.date()})
    world.sync()
    task = twin_of(world, "todo", crm_id)
    world.advance(LATER)
    world.provider.update("todo", task, {"subject": "Send the offer"})
    world.advance(LATER)
    world.crm.update("todo", crm_id, {"subject": "Send offer v2"})
    world.advance(LATER)
    world.provider.snooze("todo", task)

    world.sync()

    assert world.crm.get("todo", crm_id)["subject"] == "Send offer v2"  # type: ignore[index]
    assert world.provider.get("todo", task)["subject"] == "Send offer v2"  # type: ignore[index]
