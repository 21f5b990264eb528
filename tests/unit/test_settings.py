"""User and tenant settings (SET-1..5) and their validation, driven through SyncWorld."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

import pytest

from crmsync.settings import (
    BASE_DEFAULTS,
    SettingName,
    SettingsError,
    Side,
    TenantSettings,
    resolve,
)
from crmsync.testing import SyncWorld

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # SyncWorld's default `now`
DUE = date(2026, 11, 5)
START = datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
ProviderName = Literal["google", "microsoft"]


def meeting(subject: str = "Review", start: datetime = START, **fields: Any) -> dict[str, Any]:
    return {
        "type": "meeting",
        "subject": subject,
        "start": start,
        "end": start + timedelta(hours=1),
        **fields,
    }


def linked_todo(world: SyncWorld, subject: str = "Send offer", **fields: Any) -> tuple[str, str]:
    crm_id = world.crm.create("todo", {"subject": subject, "due": DUE, **fields})
    world.sync()
    [link] = [lk for lk in world.links("todo") if lk["crm_id"] == crm_id]
    assert link["provider_id"] is not None
    return crm_id, link["provider_id"]


def subjects(world: SyncWorld, side: str, kind: Literal["activity", "todo"]) -> set[str]:
    handle = world.crm if side == "crm" else world.provider
    return {r["subject"] for r in handle.all(kind)}


# -- SET-1: per-user choices --------------------------------------------------------------


def test_SET1_disabled_kind_does_not_sync_while_other_kinds_do() -> None:
    world = SyncWorld(settings={"enabled": {"todo": False}})
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.provider.create("todo", {"subject": "Order cards", "due": DUE})
    world.crm.create("activity", meeting("Review"))

    world.sync()

    assert subjects(world, "provider", "todo") == {"Order cards"}
    assert subjects(world, "crm", "todo") == {"Send offer"}
    assert subjects(world, "provider", "activity") == {"Review"}


def test_SET1_re_enabled_kind_picks_up_its_records() -> None:
    world = SyncWorld(settings={"enabled": {"todo": False}})
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.sync()

    world.settings(enabled={"todo": True})
    world.sync()

    assert subjects(world, "provider", "todo") == {"Send offer"}


def test_SET1_crm_to_provider_never_writes_to_the_crm() -> None:
    world = SyncWorld(settings={"direction": {"todo": "crm_to_provider"}})
    edited = world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    deleted = world.crm.create("todo", {"subject": "Call back", "due": DUE})
    crm_before = world.crm.all("todo")
    world.provider.create("todo", {"subject": "Order cards", "due": DUE})

    world.sync()
    links = {lk["crm_id"]: lk["provider_id"] for lk in world.links("todo")}
    world.provider.update("todo", links[edited], {"subject": "Send offer today"})
    world.provider.delete("todo", links[deleted])
    world.sync()
    world.sync()

    assert world.crm.all("todo") == crm_before
    assert "Send offer today" in subjects(world, "provider", "todo")  # the cycle did run


def test_SET1_provider_to_crm_never_writes_to_the_provider() -> None:
    world = SyncWorld(settings={"direction": {"todo": "provider_to_crm"}})
    world.provider.create("todo", {"subject": "Send offer", "due": DUE})
    world.provider.create("todo", {"subject": "Call back", "due": DUE})
    provider_before = world.provider.all("todo")
    world.crm.create("todo", {"subject": "Order cards", "due": DUE})

    world.sync()
    by_subject = {t["subject"]: t["id"] for t in world.crm.all("todo")}
    assert set(by_subject) == {"Send offer", "Call back", "Order cards"}
    world.crm.update("todo", by_subject["Send offer"], {"subject": "Send offer today"})
    world.crm.delete("todo", by_subject["Call back"])
    world.sync()
    world.sync()

    assert world.provider.all("todo") == provider_before


def test_SET1_direction_is_set_per_kind() -> None:
    world = SyncWorld(settings={"direction": {"todo": "crm_to_provider"}})
    world.provider.create("todo", {"subject": "Order cards", "due": DUE})
    world.provider.create("activity", meeting("Kick-off"))

    world.sync()

    assert subjects(world, "crm", "todo") == set()
    assert subjects(world, "crm", "activity") == {"Kick-off"}


@pytest.mark.parametrize(("window_days", "synced"), [(14, False), (30, True)])
def test_SET1_window_days_sets_how_far_back_the_first_cycle_reaches(
    window_days: int, synced: bool
) -> None:
    world = SyncWorld(now=NOW - timedelta(days=20), settings={"window_days": window_days})
    world.crm.create("activity", meeting("Old review", start=NOW - timedelta(days=20)))
    world.provider.create("activity", meeting("Old call", start=NOW - timedelta(days=20)))
    world.advance(timedelta(days=20))

    world.sync()

    both = {"Old review", "Old call"}
    assert subjects(world, "provider", "activity") == (both if synced else {"Old call"})
    assert subjects(world, "crm", "activity") == (both if synced else {"Old review"})


def test_SET1_not_before_date_skips_older_activities() -> None:
    early = NOW - timedelta(days=60)
    world = SyncWorld(now=early, settings={"window_days": 365, "not_before": "2026-10-01"})
    world.crm.create("activity", meeting("Before the date", start=early))
    world.crm.create("activity", meeting("After the date", start=NOW - timedelta(days=10)))
    world.advance(timedelta(days=60))

    world.sync()

    assert subjects(world, "provider", "activity") == {"After the date"}


@pytest.mark.parametrize(("opt_in", "synced"), [(False, False), (True, True)])
def test_SET1_private_provider_events_sync_only_with_opt_in(opt_in: bool, synced: bool) -> None:
    world = SyncWorld(settings={"private_items": opt_in})
    world.provider.create("activity", meeting("Therapy", private=True))
    world.provider.create("activity", meeting("Team lunch"))

    world.sync()

    expected = {"Therapy", "Team lunch"} if synced else {"Team lunch"}
    assert subjects(world, "crm", "activity") == expected


@pytest.mark.parametrize("notify", [False, True])
def test_SET1_notify_attendees_decides_whether_invitations_go_out(notify: bool) -> None:
    world = SyncWorld(settings={"notify_attendees": notify})
    world.crm.create("activity", meeting("Review", members=["u2"]))

    world.sync()

    [event] = world.provider.all("activity")
    expected = [(event["id"], "u2")] if notify else []
    assert world.provider.invitations() == expected


# -- SET-2: tenant defaults and per-provider defaults ---------------------------------------


@pytest.mark.parametrize(
    ("provider", "policy", "declined", "marker"),
    [
        ("google", "provider_wins", "sync_hidden", "*{subject}*"),
        ("microsoft", "latest_wins", "skip_then_remove", "Completed: {subject}"),
    ],
)
def test_SET2_each_provider_has_its_own_defaults(
    provider: ProviderName, policy: str, declined: str, marker: str
) -> None:
    settings = resolve(provider)

    assert settings["conflict_policy"] == policy
    assert settings["declined"] == declined
    assert settings["completed_marker"] == marker


def test_SET2_tenant_defaults_override_provider_defaults_and_user_overrides_tenant() -> None:
    tenant = {"conflict_policy": "crm_wins", "window_days": 30, "completed_marker": "✓ {subject}"}

    settings = resolve("google", tenant, {"window_days": 7})

    assert settings["conflict_policy"] == "crm_wins"
    assert settings["completed_marker"] == "✓ {subject}"
    assert settings["window_days"] == 7


def test_SET2_tenant_and_user_layers_merge_nested_settings_key_by_key() -> None:
    tenant = {"permissions": {"todo": {"provider": {"delete": False}}}}
    user = {"permissions": {"todo": {"provider": {"create": False}}}}

    settings = resolve("microsoft", tenant, user)

    assert not settings.allows("todo", "provider", "delete")
    assert not settings.allows("todo", "provider", "create")
    assert settings.allows("todo", "provider", "update")
    assert settings.allows("todo", "crm", "delete")


def test_SET2_world_takes_tenant_defaults_under_user_settings() -> None:
    world = SyncWorld(
        tenant={"window_days": 30, "conflict_policy": "manual"}, settings={"window_days": 7}
    )

    effective = world.effective_settings()

    assert effective["window_days"] == 7
    assert effective["conflict_policy"] == "manual"


def test_SET2_tenant_window_reaches_the_first_cycle() -> None:
    world = SyncWorld(now=NOW - timedelta(days=20), tenant={"window_days": 30})
    world.crm.create("activity", meeting("Old review", start=NOW - timedelta(days=20)))
    world.advance(timedelta(days=20))

    world.sync()

    assert subjects(world, "provider", "activity") == {"Old review"}


def both_edit_subject(world: SyncWorld, crm_first: bool) -> tuple[str, str]:
    crm_id, task_id = linked_todo(world)
    edits: list[Callable[[], None]] = [
        lambda: world.crm.update("todo", crm_id, {"subject": "CRM subject"}),
        lambda: world.provider.update("todo", task_id, {"subject": "Provider subject"}),
    ]
    for edit in edits if crm_first else edits[::-1]:
        edit()
        world.advance(timedelta(minutes=5))
    world.sync()
    return crm_id, task_id


def assert_both_have(world: SyncWorld, ids: tuple[str, str], subject: str) -> None:
    todo, task = world.crm.get("todo", ids[0]), world.provider.get("todo", ids[1])
    assert todo is not None and task is not None
    assert (todo["subject"], task["subject"]) == (subject, subject)


@pytest.mark.parametrize("crm_first", [True, False])
def test_SET2_google_default_conflict_policy_is_provider_wins(crm_first: bool) -> None:
    world = SyncWorld("google")
    ids = both_edit_subject(world, crm_first)
    assert_both_have(world, ids, "Provider subject")


@pytest.mark.parametrize(
    ("crm_first", "winner"), [(True, "Provider subject"), (False, "CRM subject")]
)
def test_SET2_microsoft_default_conflict_policy_is_latest_wins(
    crm_first: bool, winner: str
) -> None:
    world = SyncWorld("microsoft")
    ids = both_edit_subject(world, crm_first)
    assert_both_have(world, ids, winner)


def test_SET2_tenant_conflict_policy_replaces_the_provider_default() -> None:
    world = SyncWorld("google", tenant={"conflict_policy": "crm_wins"})
    ids = both_edit_subject(world, crm_first=True)
    assert_both_have(world, ids, "CRM subject")


@pytest.mark.parametrize(
    ("provider", "tenant", "shown"),
    [
        ("google", {}, "*Call Ada*"),
        ("microsoft", {}, "Completed: Call Ada"),
        ("google", {"completed_marker": "[done] {subject}"}, "[done] Call Ada"),
    ],
)
def test_SET2_completed_marker_comes_from_provider_default_or_tenant(
    provider: ProviderName, tenant: dict[str, Any], shown: str
) -> None:
    world = SyncWorld(provider, tenant=tenant)
    crm_id = world.crm.create(
        "activity", meeting("Call Ada", type="call", start=NOW - timedelta(days=1))
    )
    world.sync()
    world.crm.update("activity", crm_id, {"status": "completed"})

    world.sync()
    world.sync()

    [event] = world.provider.all("activity")
    assert event["subject"] == shown
    activity = world.crm.get("activity", crm_id)
    assert activity is not None and activity["subject"] == "Call Ada"


@pytest.mark.parametrize(("provider", "synced"), [("google", True), ("microsoft", False)])
def test_SET2_declined_default_differs_per_provider(provider: ProviderName, synced: bool) -> None:
    world = SyncWorld(provider)
    world.provider.create("activity", meeting("Vendor pitch", status="declined"))

    world.sync()

    assert subjects(world, "crm", "activity") == ({"Vendor pitch"} if synced else set())


def test_SET2_tenant_status_table_applies_to_its_users() -> None:
    table = {"open": "open", "in_progress": "open", "completed": "completed", "cancelled": "open"}
    world = SyncWorld("microsoft", tenant={"todo_status": table})
    world.crm.create("todo", {"subject": "Dropped", "due": DUE, "status": "cancelled"})
    world.crm.create("todo", {"subject": "Busy", "due": DUE, "status": "in_progress"})

    world.sync()

    assert {t["subject"]: t["status"] for t in world.provider.all("todo")} == {
        "Dropped": "open",
        "Busy": "open",
    }


def test_SET2_tenant_settings_refuse_a_provider_the_tenant_does_not_allow() -> None:
    tenant = TenantSettings(defaults={"window_days": 30}, providers=("google",))

    with pytest.raises(SettingsError, match="microsoft"):
        tenant.for_user("microsoft")
    assert tenant.for_user("google", {"conflict_policy": "manual"})["window_days"] == 30


def test_SET2_tenant_settings_layer_user_choices_over_tenant_defaults() -> None:
    tenant = TenantSettings(defaults={"window_days": 30, "conflict_policy": "crm_wins"})

    settings = tenant.for_user("microsoft", {"window_days": 3})

    assert settings["window_days"] == 3
    assert settings["conflict_policy"] == "crm_wins"
    assert settings["completed_marker"] == "Completed: {subject}"


def test_SET2_tenant_settings_with_a_bad_default_are_refused() -> None:
    with pytest.raises(SettingsError, match="window_days"):
        TenantSettings(defaults={"window_days": -3})


# -- SET-3: the permission matrix ------------------------------------------------------------

Category = Literal["contact", "appointment", "call", "todo"]
CATEGORIES: tuple[Category, ...] = ("contact", "appointment", "call", "todo")
SAMPLE: dict[Category, tuple[Literal["contact", "activity", "todo"], dict[str, Any]]] = {
    "contact": (
        "contact",
        {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@example.com"]},
    ),
    "appointment": ("activity", meeting("Review")),
    "call": ("activity", meeting("Call Ada", type="call")),
    "todo": ("todo", {"subject": "Send offer", "due": DUE}),
}
EDITED = {"contact": "first_name", "activity": "subject", "todo": "subject"}


class Scenario:
    """One record of a category in a world, and the writes each test needs."""

    def __init__(self, category: Category, allowed: bool, target: str, op: str) -> None:
        self.kind, self.fields = SAMPLE[category]
        self.field = EDITED[self.kind]
        perms = {category: {target: {op: allowed}}}
        extra = {"contact_delete": "delete"} if self.kind == "contact" else {}
        self.world = SyncWorld(settings={"permissions": perms, **extra})

    def create(self, side: str) -> str:
        w = self.world
        if side == "crm":
            record_id = w.crm.create(self.kind, self.fields)
            if self.kind == "contact":
                w.crm.add_to_sync_group(record_id)
        else:
            record_id = w.provider.create(self.kind, self.fields)
            if self.kind == "contact":
                w.provider.label(record_id)
        return record_id

    def linked(self) -> tuple[str, str]:
        crm_id = self.create("crm")
        self.world.sync()
        [link] = self.world.links(self.kind)
        assert link["provider_id"] is not None
        return crm_id, link["provider_id"]

    def handle(self, side: str) -> Any:
        return self.world.crm if side == "crm" else self.world.provider

    def run(self, target: str, op: str) -> bool:
        """Make the other side ask for `op` on `target`; return whether it happened."""
        w, source = self.world, "provider" if target == "crm" else "crm"
        if op == "create" and (target, self.fields.get("type")) == ("crm", "call"):
            # a provider event carries no CRM type; a call is re-created in the CRM when
            # it was deleted there and edited on the provider (SYN-7)
            crm_id, provider_id = self.linked()
            w.crm.delete(self.kind, crm_id)
            w.provider.update(self.kind, provider_id, {self.field: "Edited"})
            w.sync()
            w.sync()
            return len(w.crm.all(self.kind)) == 1
        if op == "create":
            self.create(source)
            w.sync()
            w.sync()
            return len(self.handle(target).all(self.kind)) == 1
        ids = dict(zip(("crm", "provider"), self.linked(), strict=True))
        if op == "update":
            self.handle(source).update(self.kind, ids[source], {self.field: "Edited"})
            w.sync()
            w.sync()
            record = self.handle(target).get(self.kind, ids[target])
            return record is not None and record[self.field] == "Edited"
        self.handle(source).delete(self.kind, ids[source])
        w.sync()
        w.sync()
        return self.handle(target).get(self.kind, ids[target]) is None


@pytest.mark.parametrize("op", ["create", "update", "delete"])
@pytest.mark.parametrize("target", ["crm", "provider"])
@pytest.mark.parametrize("category", CATEGORIES)
def test_SET3_forbidden_operation_is_never_performed(
    category: Category, target: str, op: str
) -> None:
    assert Scenario(category, True, target, op).run(target, op), "allowed: it happens"
    assert not Scenario(category, False, target, op).run(target, op), "forbidden: it does not"


def test_SET3_calls_and_appointments_have_separate_permissions() -> None:
    world = SyncWorld(settings={"permissions": {"call": {"provider": {"create": False}}}})
    world.crm.create("activity", meeting("Call Ada", type="call"))
    world.crm.create("activity", meeting("Review"))

    world.sync()

    assert subjects(world, "provider", "activity") == {"Review"}


# -- SET-4: exclusions -------------------------------------------------------------------------


def test_SET4_excluded_record_is_untouched_on_both_sides() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    other_id, other_task = linked_todo(world, "Call back")
    world.exclude("todo", crm_id)

    world.crm.update("todo", crm_id, {"notes": "CRM note"})
    world.provider.update("todo", task_id, {"subject": "Provider subject"})
    world.crm.update("todo", other_id, {"notes": "CRM note"})
    world.sync()
    world.sync()

    todo, task = world.crm.get("todo", crm_id), world.provider.get("todo", task_id)
    assert todo is not None and task is not None
    assert (todo["subject"], todo["notes"]) == ("Send offer", "CRM note")
    assert (task["subject"], task["notes"]) == ("Provider subject", "")
    other = world.provider.get("todo", other_task)
    assert other is not None and other["notes"] == "CRM note"  # the rest still syncs


def test_SET4_excluded_record_on_a_deleting_side_is_not_deleted() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    world.exclude("todo", crm_id)

    world.provider.delete("todo", task_id)
    world.sync()

    assert world.crm.get("todo", crm_id) is not None


def test_SET4_new_excluded_record_is_not_sent() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", {"subject": "Private errand", "due": DUE})
    world.crm.create("todo", {"subject": "Send offer", "due": DUE})
    world.exclude("todo", crm_id)

    world.sync()

    assert subjects(world, "provider", "todo") == {"Send offer"}


def test_SET4_included_again_the_record_resyncs_with_changes_made_meanwhile() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    world.exclude("todo", crm_id)
    world.crm.update("todo", crm_id, {"notes": "CRM note"})
    world.provider.update("todo", task_id, {"subject": "Provider subject"})
    world.sync()

    world.include("todo", crm_id)
    world.sync()

    todo, task = world.crm.get("todo", crm_id), world.provider.get("todo", task_id)
    assert todo is not None and task is not None
    assert (todo["subject"], todo["notes"]) == ("Provider subject", "CRM note")
    assert (task["subject"], task["notes"]) == ("Provider subject", "CRM note")


def test_SET4_new_record_included_again_is_sent() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", {"subject": "Private errand", "due": DUE})
    world.exclude("todo", crm_id)
    world.sync()

    world.include("todo", crm_id)
    world.sync()

    assert subjects(world, "provider", "todo") == {"Private errand"}


def test_SET4_temporary_exclusion_holds_until_its_end() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    world.exclude("todo", crm_id, until=NOW + timedelta(days=1))

    world.crm.update("todo", crm_id, {"subject": "During the exclusion"})
    world.sync()
    task = world.provider.get("todo", task_id)
    assert task is not None and task["subject"] == "Send offer"

    world.advance(timedelta(days=2))
    world.crm.update("todo", crm_id, {"notes": "after it ended"})
    world.sync()

    task = world.provider.get("todo", task_id)
    assert task is not None and task["notes"] == "after it ended"


def test_SET4_changes_made_during_a_temporary_exclusion_sync_once_it_ends() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    world.exclude("todo", crm_id, until=NOW + timedelta(days=1))
    world.crm.update("todo", crm_id, {"subject": "During the exclusion"})
    world.sync()

    world.advance(timedelta(days=2))
    world.sync()

    task = world.provider.get("todo", task_id)
    assert task is not None and task["subject"] == "During the exclusion"


def test_SET4_new_record_excluded_for_a_while_is_sent_once_the_exclusion_ends() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", {"subject": "Private errand", "due": DUE})
    world.exclude("todo", crm_id, until=NOW + timedelta(days=1))
    world.sync()
    assert world.provider.all("todo") == []

    world.advance(timedelta(days=2))
    world.sync()

    assert subjects(world, "provider", "todo") == {"Private errand"}


def test_SET4_a_record_included_for_a_while_syncs_until_then_and_is_excluded_again() -> None:
    world = SyncWorld()
    crm_id, task_id = linked_todo(world)
    world.exclude("todo", crm_id)
    world.crm.update("todo", crm_id, {"subject": "Made while excluded"})
    world.sync()

    world.include("todo", crm_id, until=NOW + timedelta(days=1))
    world.sync()
    task = world.provider.get("todo", task_id)
    assert task is not None and task["subject"] == "Made while excluded"

    world.advance(timedelta(days=2))
    world.crm.update("todo", crm_id, {"subject": "Made once excluded again"})
    world.provider.update("todo", task_id, {"notes": "kept on the provider"})
    world.sync()

    task = world.provider.get("todo", task_id)
    todo = world.crm.get("todo", crm_id)
    assert task is not None and task["subject"] == "Made while excluded"
    assert todo is not None and todo["notes"] != "kept on the provider"


def test_SET4_once_an_inclusion_ends_the_record_is_left_alone_and_not_read_each_cycle() -> None:
    world = SyncWorld()
    crm_id, _ = linked_todo(world)
    world.include("todo", crm_id, until=NOW + timedelta(days=1))
    world.advance(timedelta(days=2))
    world.crm.update("todo", crm_id, {"subject": "Made once excluded again"})

    world.sync()

    assert world.store.retries(world.connection.id, "todo") == set()


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 12, 1, 9, 0),  # no offset: whose 9 o'clock?
        "next week",
        {"included_until": "soon"},
        {"included_until": NOW, "forever": True},
    ],
)
def test_SET4_an_exclusion_that_is_no_time_is_refused(value: object) -> None:
    world = SyncWorld()
    with pytest.raises(SettingsError, match=re.escape("exclusions.todo.t-1")):
        world.settings(exclusions={"todo": {"t-1": value}})


# -- SET-5: ask before applying ----------------------------------------------------------------


def the_item(world: SyncWorld, reason: str) -> dict[str, Any]:
    [item] = world.queue()
    assert item["reason"] == reason
    return item


@pytest.mark.parametrize(("choice", "applied"), [("crm", True), ("provider", False)])
def test_SET5_new_crm_record_waits_for_confirmation(choice: Side, applied: bool) -> None:
    world = SyncWorld(settings={"confirm": {"new": True}})
    crm_id = world.crm.create("todo", {"subject": "Send offer", "due": DUE})

    world.sync()
    world.sync()
    item = the_item(world, "confirm_new")
    assert (item["source"], item["crm_id"]) == ("crm", crm_id)
    assert world.provider.all("todo") == []

    world.resolve(item["id"], choice)
    world.sync()

    assert subjects(world, "provider", "todo") == ({"Send offer"} if applied else set())
    assert world.queue() == []
    assert world.crm.get("todo", crm_id) is not None


@pytest.mark.parametrize(("choice", "applied"), [("provider", True), ("crm", False)])
def test_SET5_new_provider_record_waits_for_confirmation(choice: Side, applied: bool) -> None:
    world = SyncWorld(settings={"confirm": {"new": True}})
    task_id = world.provider.create("todo", {"subject": "Order cards", "due": DUE})

    world.sync()
    item = the_item(world, "confirm_new")
    assert (item["source"], item["provider_id"]) == ("provider", task_id)
    assert world.crm.all("todo") == []

    world.resolve(item["id"], choice)
    world.sync()

    assert subjects(world, "crm", "todo") == ({"Order cards"} if applied else set())
    assert world.queue() == []


@pytest.mark.parametrize(("choice", "applied"), [("crm", True), ("provider", False)])
def test_SET5_modified_record_waits_for_confirmation(choice: Side, applied: bool) -> None:
    world = SyncWorld(settings={"confirm": {"modified": True}})
    crm_id, task_id = linked_todo(world)
    world.crm.update("todo", crm_id, {"subject": "Send revised offer"})
    task_before = world.provider.get("todo", task_id)

    world.sync()
    world.sync()
    item = the_item(world, "confirm_modified")
    assert (item["source"], item["crm_id"]) == ("crm", crm_id)
    assert world.provider.get("todo", task_id) == task_before

    world.resolve(item["id"], choice)
    world.sync()

    task = world.provider.get("todo", task_id)
    assert task is not None
    assert task["subject"] == ("Send revised offer" if applied else "Send offer")
    assert world.queue() == []


@pytest.mark.parametrize(("choice", "applied"), [("provider", True), ("crm", False)])
def test_SET5_deleted_record_waits_for_confirmation(choice: Side, applied: bool) -> None:
    world = SyncWorld(settings={"confirm": {"deleted": True}})
    crm_id, task_id = linked_todo(world)
    world.provider.delete("todo", task_id)

    world.sync()
    world.sync()
    item = the_item(world, "confirm_deleted")
    assert (item["source"], item["provider_id"]) == ("provider", task_id)
    assert world.crm.get("todo", crm_id) is not None

    world.resolve(item["id"], choice)
    world.sync()

    assert (world.crm.get("todo", crm_id) is None) is applied
    assert world.queue() == []


# -- validation ------------------------------------------------------------------------------

BAD_SETTINGS = [
    ({"colour": "blue"}, "colour"),
    ({"conflict_policy": "loudest_wins"}, "conflict_policy"),
    ({"declined": "maybe"}, "declined"),
    ({"contact_delete": "shred"}, "contact_delete"),
    ({"direction": {"todo": "sideways"}}, "direction.todo"),
    ({"permissions": {"todo": {"crm": {"erase": False}}}}, "erase"),
    ({"window_days": -1}, "window_days"),
    ({"window_days": "14"}, "window_days"),
    ({"mass_delete_ratio": 1.5}, "mass_delete_ratio"),
    ({"mass_delete_ratio": 0}, "mass_delete_ratio"),
    ({"not_before": "2026-02-30"}, "not_before"),
    ({"not_before": "soon"}, "not_before"),
    ({"completed_marker": "Done!"}, "completed_marker"),
    ({"poll_minutes": 0}, "poll_minutes"),
    ({"poll_minutes": 1.5}, "poll_minutes"),
]


@pytest.mark.parametrize(("changes", "key"), BAD_SETTINGS)
def test_SET1_bad_user_setting_is_refused_naming_its_key(changes: dict[str, Any], key: str) -> None:
    world = SyncWorld()

    with pytest.raises(SettingsError, match=re.escape(key)):
        world.settings(**changes)


@pytest.mark.parametrize(("changes", "key"), BAD_SETTINGS)
def test_SET2_bad_tenant_default_is_refused_naming_its_key(
    changes: dict[str, Any], key: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(key)):
        resolve("google", changes)


def test_SET1_bad_setting_at_connect_time_is_refused() -> None:
    with pytest.raises(SettingsError, match="window_days"):
        SyncWorld(settings={"window_days": -5})


def test_SET1_a_refused_change_leaves_the_previous_settings_in_force() -> None:
    world = SyncWorld(settings={"window_days": 30})

    with pytest.raises(SettingsError):
        world.settings(window_days=45, conflict_policy="loudest_wins")

    assert world.effective_settings()["window_days"] == 30
    assert world.effective_settings()["conflict_policy"] == "provider_wins"


def test_SET1_every_setting_has_a_name_type_checking_knows() -> None:
    # Settings are read by name (settings["timezone"]); the names are a Literal type so
    # that a misspelt one fails type checking. This keeps that type and the contract one.
    assert sorted(get_args(SettingName)) == sorted(BASE_DEFAULTS)


def test_TSK3_microsoft_writes_a_cancelled_to_do_as_completed_by_default() -> None:
    table = resolve("microsoft")["todo_status"]

    assert table == {
        "open": "open",
        "in_progress": "in_progress",
        "completed": "completed",
        "cancelled": "completed",
    }
