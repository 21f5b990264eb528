"""The settings pages' use cases (crmsync.usecases.preferences): what a user's page shows
and what a change on it does (SET-1, SET-3..SET-5), the tenant admin's defaults and locks
(SET-2), the admin's switch per user (SET-6) and "manual only" (SET-7), driven through
SyncWorld over the same service layer the functions run."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crmsync import service
from crmsync.ports import Channel
from crmsync.queue.inline import InlineQueue
from crmsync.service import Refused
from crmsync.testing import SyncWorld
from crmsync.usecases import preferences

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # SyncWorld's default `now`
DUE = date(2026, 11, 5)
START = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def fields(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for section in page["sections"] for f in section["fields"]}


def page_of(world: SyncWorld, **kw: Any) -> dict[str, dict[str, Any]]:
    return fields(preferences.form(world.services, "t1", world.connection.id, **kw))


def change(world: SyncWorld, changes: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return preferences.change(world.services, "t1", world.connection.id, changes, **kw)


def refused(call: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        call(*args, **kw)
    return caught.value


def queue(world: SyncWorld) -> InlineQueue:
    assert isinstance(world.services.queue, InlineQueue)
    return world.services.queue


def run_queued(world: SyncWorld) -> list[dict[str, Any]]:
    """The worker takes every task whose time has come."""
    return [world.sync(task.trigger) for task in queue(world).due(world.now())]


def linked_todo(world: SyncWorld) -> tuple[str, str]:
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.sync()
    [link] = world.links("todo")
    return crm_id, str(link["provider_id"])


def subjects(world: SyncWorld) -> list[str]:
    return sorted(t["subject"] for t in world.provider.all("todo"))


# -- SET-1: the user's page ----------------------------------------------------------------
def test_SET1_form_shows_the_users_values_over_the_tenants_defaults() -> None:
    world = SyncWorld("microsoft", tenant={"window_days": 30}, settings={"private_items": True})

    shown = page_of(world)

    window, private = shown["window_days"], shown["private_items"]
    assert (window["value"], window["default"], window["own"]) == (30, 30, False)
    assert (private["value"], private["default"], private["own"]) == (True, False, True)
    assert shown["conflict_policy"]["default"] == "latest_wins"  # the provider's
    assert shown["permissions.call.provider.delete"]["type"] == "bool"
    assert {"enabled.todo", "direction.todo", "confirm.deleted", "not_before"} <= set(shown)
    assert not {"field_map", "related_info_template", "custom_fields"} & set(shown)


def test_SET7_form_offers_manual_only_among_the_frequencies() -> None:
    world = SyncWorld(settings={"frequency_minutes": 20})

    frequency = page_of(world)["frequency_minutes"]

    values = [c["value"] for c in frequency["choices"]]
    assert values[0] == 0 and "Manual" in frequency["choices"][0]["label"]
    assert 20 in values and frequency["value"] == 20  # set through the API: still shown


def test_SET4_form_lists_the_exception_list_with_when_each_ends() -> None:
    world = SyncWorld()
    world.exclude("todo", "t-1")
    world.exclude("todo", "t-2", until=NOW + timedelta(days=1))
    world.include("contact", "c-9", until=NOW + timedelta(days=2))

    entries = page_of(world)["exclusions"]["value"]

    assert [(e["kind"], e["crm_id"], e["state"], e["excluded"]) for e in entries] == [
        ("contact", "c-9", "included_until", False),
        ("todo", "t-1", "excluded", True),
        ("todo", "t-2", "excluded_until", True),
    ]
    assert entries[2]["until"] == (NOW + timedelta(days=1)).isoformat()


def test_SET1_the_time_zones_offered_are_real_region_zones_sorted_keeping_the_current_one() -> None:
    world = SyncWorld(settings={"timezone": "US/Pacific"})

    zone = page_of(world)["timezone"]

    offered = [c["value"] for c in zone["choices"] if c["value"] != "US/Pacific"]
    assert offered[0] == "UTC" and offered[1:] == sorted(offered[1:])
    assert {"Europe/Berlin", "America/New_York", "Asia/Tokyo"} <= set(offered)
    assert not {"Factory", "localtime", "Etc/GMT+5", "US/Eastern", "GMT"} & set(offered)
    assert all(z == "UTC" or "/" in z for z in offered)
    assert zone["value"] == "US/Pacific"  # the current value is kept, as chosen
    assert "US/Pacific" in [c["value"] for c in zone["choices"]]


def test_SET1_manual_only_s_help_describes_the_choice() -> None:
    help_text = page_of(SyncWorld())["frequency_minutes"]["help"]

    assert help_text == "Choose Manual only to sync only when you click Sync now."


def test_SET4_the_exception_list_names_each_record_its_link_knows() -> None:
    world = SyncWorld()
    crm_id, _ = linked_todo(world)
    world.exclude("todo", crm_id)
    world.exclude("todo", "t-unknown")

    entries = page_of(world)["exclusions"]["value"]

    assert {e["crm_id"]: e["name"] for e in entries} == {crm_id: "Send offer", "t-unknown": ""}


def test_SET1_SYN6_the_page_explains_the_mass_delete_guard_that_applies() -> None:
    world = SyncWorld(settings={"mass_delete_min": 2})

    guard = preferences.form(world.services, "t1", world.connection.id)["guard"]

    assert (guard["min"], guard["ratio"]) == (2, 0.25)
    assert "at least 2 records of one kind and more than 25 % of them" in guard["text"]


def test_SET1_a_picker_of_an_account_that_cannot_be_asked_keeps_the_current_value() -> None:
    world = SyncWorld(settings={"task_list": "Sales"})
    world.store.set_status(world.connection.id, "needs_reauth")

    picker = page_of(world)["task_list"]

    assert picker["choices"] == [{"value": "Sales", "label": "Sales"}]
    assert picker["picker"]["available"] is False
    assert "reconnect" in picker["picker"]["reason"]


def test_SET1_a_picker_lists_the_accounts_choices_with_the_current_value() -> None:
    world = SyncWorld()

    picker = page_of(world)["calendar"]

    assert picker["value"] == "primary"
    assert [c["value"] for c in picker["choices"]] == ["primary"]
    assert picker["picker"] == {"available": True, "reason": ""}


def test_SET1_change_takes_dotted_names_and_leaves_the_rest_of_the_setting() -> None:
    world = SyncWorld(settings={"permissions": {"todo": {"crm": {"delete": False}}}})

    change(world, {"permissions.todo.provider.delete": False, "confirm.new": True})

    settings = world.effective_settings()
    assert not settings.allows("todo", "provider", "delete")
    assert not settings.allows("todo", "crm", "delete")
    assert settings.allows("todo", "provider", "create")
    assert settings["confirm"] == {"new": True, "modified": False, "deleted": False}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"window_days": -1}, "window_days"),
        ({"frequency_minutes": -5}, "frequency_minutes"),
        ({"permissions.todo.crm.erase": False}, "permissions.todo.crm.erase"),
        ({"direction.todo": "sideways"}, "direction.todo"),
        ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_SET1_a_bad_change_is_refused_naming_the_setting_and_nothing_changes(
    changes: dict[str, Any], named: str
) -> None:
    world = SyncWorld(settings={"window_days": 30})
    before = world.store.connection_record(world.connection.id)

    answer = refused(change, world, {"private_items": True, **changes})

    assert answer.status == 400 and named in answer.reason
    assert world.store.connection_record(world.connection.id) == before


def test_SET1_reset_takes_a_setting_back_to_the_tenants_default() -> None:
    world = SyncWorld(tenant={"window_days": 30}, settings={"window_days": 7})

    effective = change(world, {}, reset=["window_days"])

    assert effective["window_days"] == 30
    assert page_of(world)["window_days"]["own"] is False
    assert refused(change, world, {}, reset=["colour"]).status == 400


# -- SET-2: the tenant admin's page --------------------------------------------------------
def test_SET2_a_locked_setting_is_refused_for_the_user_and_allowed_for_an_admin() -> None:
    world = SyncWorld("google")
    preferences.change_tenant(world.services, "t1", {"locked": ["conflict_policy"]})

    shown = page_of(world)["conflict_policy"]
    answer = refused(change, world, {"conflict_policy": "manual"})

    assert shown["locked"] and shown["locked_reason"] and not shown["editable"]
    assert answer.status == 403 and "conflict_policy" in answer.reason
    assert world.effective_settings()["conflict_policy"] == "provider_wins"
    assert page_of(world, as_admin=True)["conflict_policy"]["editable"]
    change(world, {"conflict_policy": "manual"}, as_admin=True)
    assert world.effective_settings()["conflict_policy"] == "manual"


def test_SET2_a_lock_on_a_setting_covers_each_of_its_cells() -> None:
    world = SyncWorld()
    preferences.change_tenant(world.services, "t1", {"locked": ["permissions"]})

    answer = refused(change, world, {"permissions": {"contact": {"crm": {"delete": False}}}})

    assert answer.status == 403 and "permissions.contact.crm.delete" in answer.reason
    assert page_of(world)["permissions.todo.provider.update"]["locked"]
    assert not page_of(world)["window_days"]["locked"]


def test_SET2_what_only_the_tenant_sets_is_refused_for_a_user() -> None:
    world = SyncWorld()

    answer = refused(change, world, {"field_map": {"todo": ["subject"]}})

    assert answer.status == 403 and "field_map" in answer.reason


@pytest.mark.parametrize(
    ("changes", "status", "named"),
    [
        ({"defaults": {"window_days": -3}}, 400, "window_days"),
        ({"defaults": {"conflict_policy": "loudest_wins"}}, 400, "conflict_policy"),
        ({"providers": ["fax"]}, 400, "providers"),
        ({"providers": []}, 400, "providers"),
        ({"services": ["telepathy"]}, 400, "services"),
        ({"locked": ["field_map"]}, 400, "field_map"),
        ({"locked": "timezone"}, 400, "locked"),
        ({"seats": 99}, 403, "seats"),
        ({"colour": "blue"}, 400, "colour"),
    ],
)
def test_SET2_a_bad_tenant_change_is_refused_naming_it_and_nothing_changes(
    changes: dict[str, Any], status: int, named: str
) -> None:
    world = SyncWorld(tenant={"window_days": 30})
    before = world.store.tenant_record()

    answer = refused(preferences.change_tenant, world.services, "t1", changes)

    assert answer.status == status and named in answer.reason
    assert world.store.tenant_record() == before


def test_SET2_tenant_defaults_reach_users_who_did_not_choose_their_own() -> None:
    world = SyncWorld(settings={"notify_attendees": False})

    page = preferences.change_tenant(
        world.services,
        "t1",
        {"defaults": {"window_days": 30, "notify_attendees": True}, "providers": ["google"]},
    )

    effective = world.effective_settings()
    assert effective["window_days"] == 30
    assert effective["notify_attendees"] is False  # the user's own choice stays
    shown = fields(page)
    assert shown["window_days"]["value"] == 30
    assert shown["window_days"]["defaults"] == {"google": 14}
    assert shown["timezone"]["value"] is None  # each provider's default applies
    assert page["providers"]["value"] == ["google"]


def test_SET2_a_tenant_default_that_widens_the_scope_brings_records_on_the_next_cycle() -> None:
    world = SyncWorld()
    world.provider.create(
        "activity",
        {"subject": "Board dinner", "start": START, "end": START + HOUR, "private": True},
    )
    world.sync()
    assert world.crm.all("activity") == []

    preferences.change_tenant(world.services, "t1", {"defaults": {"private_items": True}})
    world.sync()

    assert [a["subject"] for a in world.crm.all("activity")] == ["Board dinner"]


def test_SET2_tenant_form_shows_seats_read_only_and_what_users_may_connect() -> None:
    world = SyncWorld()
    world.store.save_tenant_record({"seats": 5, "name": "Acme"})

    page = preferences.tenant_form(world.services, "t1")

    assert page["seats"] == {"total": 5, "used": 1}
    assert page["services"]["value"] == ["sync", "mail"]
    assert "contact_delete" in fields(page)  # only the tenant sets it
    assert "exclusions" not in fields(page)


# -- SET-6: the admin's switch -------------------------------------------------------------
def test_SET6_a_user_turned_off_gets_no_cycle_and_turned_on_catches_up_without_copies() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    links = world.links("todo")

    preferences.set_enabled(world.services, "t1", "u1", False)
    world.crm.update("todo", crm_id, {"subject": "Send revised offer"})
    world.store.set_next_due(world.connection.id, world.now())  # as if it were due

    assert service.fanout(world.services).enqueued == 0
    assert [world.sync(trigger)["status"] for trigger in ("schedule", "push", "crm")] == [
        "skipped"
    ] * 3
    assert refused(service.sync_now, world.services, "t1", world.connection.id).status == 409
    assert subjects(world) == ["Send offer"]
    [status] = service.admin_status(world.services, "t1")["connections"]
    assert status["enabled"] is False

    preferences.set_enabled(world.services, "t1", "u1", True)
    assert service.fanout(world.services).enqueued == 1
    [run] = run_queued(world)

    assert run["status"] == "ok"
    assert subjects(world) == ["Send revised offer"]
    assert [t["id"] for t in world.provider.all("todo")] == [task_id]
    assert world.links("todo")[0]["key"] == links[0]["key"]


def test_SET6_a_turned_off_user_lets_push_channels_go_when_they_would_be_renewed() -> None:
    world = SyncWorld()
    channel = Channel("ch-1", "t1", world.connection.id, "google", "r-1", "d", NOW)
    world.services.channels().save_channel(channel)
    preferences.set_enabled(world.services, "t1", "u1", False)

    assert world.sync("renew")["status"] == "skipped"

    assert world.store.channels_of(world.connection.id) == []
    record = service.connection_of(world.store, world.connection.id)
    assert record is not None and "paused" in record.channel_problem


def test_SET6_an_unknown_user_cannot_be_switched() -> None:
    world = SyncWorld()

    answer = refused(preferences.set_enabled, world.services, "t1", "nobody", False)

    assert answer.status == 404


# -- SET-7: manual only --------------------------------------------------------------------
def test_SET7_manual_only_is_never_scheduled_nor_pushed_and_sync_now_runs_it() -> None:
    world = SyncWorld()
    crm_id, _ = linked_todo(world)
    change(world, {"frequency_minutes": 0})
    world.crm.update("todo", crm_id, {"subject": "Send revised offer"})
    world.store.set_next_due(world.connection.id, world.now())  # as if it were due

    assert service.fanout(world.services).enqueued == 0
    record = service.connection_of(world.store, world.connection.id)
    assert record is not None and record.next_due is None
    assert [world.sync(trigger)["status"] for trigger in ("schedule", "poll", "push")] == [
        "skipped"
    ] * 3
    assert subjects(world) == ["Send offer"]

    assert service.sync_now(world.services, "t1", world.connection.id)
    [run] = run_queued(world)

    assert (run["status"], run["trigger"]) == ("ok", "manual")
    assert subjects(world) == ["Send revised offer"]


def test_SET7_a_manual_only_user_s_answer_in_the_queue_is_applied_by_the_cycle_it_asks_for() -> (
    None
):
    world = SyncWorld(settings={"conflict_policy": "manual", "frequency_minutes": 0})
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    assert service.sync_now(world.services, "t1", world.connection.id)
    run_queued(world)
    [link] = world.links("todo")
    world.advance(timedelta(minutes=1))
    world.crm.update("todo", crm_id, {"subject": "CRM subject"})
    world.provider.update("todo", str(link["provider_id"]), {"subject": "Provider subject"})
    assert service.sync_now(world.services, "t1", world.connection.id)
    run_queued(world)
    [item] = world.waiting()

    world.resolve(item["id"], "crm")
    world.advance(timedelta(seconds=10))
    [run] = run_queued(world)

    assert (run["status"], run["trigger"]) == ("ok", "resolve")
    assert subjects(world) == ["CRM subject"]
    assert world.waiting() == []


def test_SET7_leaving_manual_only_puts_the_connection_back_on_the_schedule() -> None:
    world = SyncWorld(settings={"frequency_minutes": 0})

    change(world, {"frequency_minutes": 15})

    assert service.fanout(world.services).enqueued == 1
    assert [task.trigger for task in queue(world).due(world.now())] == ["schedule"]
