"""Sync History's use cases: the list of runs a person reads (HIS-2), one run with its
items in plain words and what can be done about a failed one (HIS-4), retry and
exclude reaching the next cycle (HIS-4, SET-4), and a tenant's shorter retention
(HIS-3). SyncWorld runs the real cycle; the runs of several connections and tenants
are kept in the memory store as the cycle keeps them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync import service
from crmsync.app.history_views import _summary
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.queue.inline import InlineQueue
from crmsync.service import Refused, Services
from crmsync.settings import SettingsError, resolve
from crmsync.store.memory import MemoryBackend
from crmsync.testing import SyncWorld
from crmsync.usecases import history
from tests.unit.test_contacts import GRACE, linked_pair

RECORD_URL = "https://crm.example/{kind}/{id}"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def todo(subject: str) -> dict[str, Any]:
    return {"subject": subject, "due": "2026-11-04"}


def side(world: SyncWorld) -> str:
    """How the world's provider is named to people: its kit's label."""
    return str(world.services.kit(world.connection.provider).label)


def with_record_url(world: SyncWorld) -> SyncWorld:
    world.store.save_tenant_record({"crm": {"base_url": "https://crm.example/api"}})
    world.store.save_tenant_record({"crm": {"record_url": RECORD_URL}})
    return world


def run_now(world: SyncWorld) -> dict[str, Any]:
    """Run the cycle the use case enqueued, as the worker would."""
    [queued] = world.services.queue.due(world.now())  # type: ignore[attr-defined]
    assert (queued.tenant, queued.connection) == ("t1", "c1")
    return world.sync(queued.trigger)


def memory_services() -> Services:
    return Services(
        backend=MemoryBackend(),
        queue=InlineQueue(),
        vault=TokenVault(LocalKek(os.urandom(32))),
        secret=os.urandom(32),
        public_url="http://crmsync.invalid/",
        clock=lambda: NOW,
    )


def saved_run(run_id: str, connection: str, started: datetime, **kw: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "connection": connection,
        "tenant": kw.pop("tenant", "t1"),
        "user": kw.pop("user", "u1"),
        "provider": kw.pop("provider", "google"),
        "trigger": "schedule",
        "started": started,
        "ended": started + timedelta(seconds=90),
        "status": kw.pop("status", "ok"),
        "counts": {},
        "errors": [],
    }


# -- HIS-2: the list --------------------------------------------------------------------------
def test_HIS2_a_run_reads_as_a_person_reads_it() -> None:
    world = SyncWorld()
    world.crm.create("todo", todo("Call back"))
    world.crm.create("todo", todo("Send offer"))
    world.fail("provider", "create", "permanent")
    run = world.sync()

    page = history.runs(world.services, "t1")

    assert page["next"] is None
    [shown] = page["runs"]
    assert shown == {
        "id": run["id"],
        "connection": "c1",
        "user": world.user,
        "provider": world.connection.provider,
        "trigger": "schedule",
        "status": "partial",
        "started": world.now().isoformat(),
        "ended": world.now().isoformat(),
        "duration": 0.0,
        "counts": {
            "todo": {
                "created": 1,
                "updated": 0,
                "deleted": 0,
                "restored": 0,
                "linked": 0,
                "unlinked": 0,
                "held": 0,
                "conflicts": 0,
                "skipped": 0,
                "failed": 1,
            }
        },
        "errors": 1,
        "cycles": 1,
        "group": "Today",
    }


def test_HIS2_a_run_that_held_or_skipped_says_so_and_is_listed_by_what_it_changed() -> None:
    """A held conflict is counted and names its kind; a run that only skipped a record
    (excluded) changed nothing: its result is nothing to do and no kind lists it."""
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = linked_pair(world, {**GRACE, "title": ""})
    todo_id = world.crm.create("todo", todo("Call back"))
    world.sync()
    world.crm.update("contact", crm_id, {"title": "Rear Admiral"})
    world.provider.update("contact", pid, {"title": "Professor"})
    held = world.sync()["id"]
    history.exclude(world.services, "t1", "c1", "todo", todo_id)
    world.crm.update("todo", todo_id, {"subject": "Call back soon"})
    skipped = world.sync()["id"]

    runs = {r["id"]: r for r in history.runs(world.services, "t1")["runs"]}

    assert (runs[held]["status"], runs[skipped]["status"]) == ("ok", "idle")
    assert runs[held]["counts"]["contact"]["conflicts"] == 1
    assert _summary(runs[held]["counts"]) == "1 conflict held for your decision"
    assert _summary(runs[skipped]["counts"], idle=True) == "No changes; 1 skipped"
    idle = {r["id"] for r in history.runs(world.services, "t1", status="idle")["runs"]}
    assert skipped in idle and held not in idle

    def of_kind(kind: str) -> set[str]:
        return {r["id"] for r in history.runs(world.services, "t1", kind=kind)["runs"]}

    assert held in of_kind("contact") and held not in of_kind("todo")
    assert skipped not in of_kind("todo")


def test_HIS1_quiet_cycles_in_a_row_are_one_entry_stored_again_each_hour() -> None:
    """Every cycle is recorded, a quiet one (nothing to do) as one more of the quiet
    cycles before it: the entry is stored as it begins, and again with its count and
    end an hour on, when the next entry begins."""
    world = SyncWorld()
    linked_pair(world, GRACE)
    world.advance(timedelta(minutes=5))
    world.sync()  # the echo of the pair's link: quiet, the first of the entry
    for _ in range(12):  # every 5 minutes; the 12th comes an hour after the first
        world.advance(timedelta(minutes=5))
        world.sync()

    first, second = history.runs(world.services, "t1", status="idle")["runs"][::-1][-2:]

    assert (first["cycles"], second["cycles"]) == (12, 1)
    assert first["ended"] < second["started"]
    assert _summary(first["counts"], idle=True, cycles=first["cycles"]) == (
        "No changes in 12 cycles"
    )
    record = world.store.connection_record("c1") or {}
    assert (record["quiet"]["id"], record["last_run"]["status"]) == (second["id"], "ok")


def test_HIS1_a_sync_someone_asked_for_is_its_own_entry_even_when_it_finds_nothing() -> None:
    world = SyncWorld()
    linked_pair(world, GRACE)
    world.advance(timedelta(minutes=5))
    world.sync()
    asked = []
    for _ in range(2):
        world.advance(timedelta(minutes=5))
        asked.append(world.sync(trigger="manual")["id"])

    listed = [r["id"] for r in history.runs(world.services, "t1")["runs"]]

    assert set(asked) <= set(listed)
    assert all(world.store.run("c1", run_id)["trigger"] == "manual" for run_id in asked)


def grouped_world() -> tuple[SyncWorld, list[str]]:
    """Four runs: 40 days, 10 days, 3 days and half an hour before now (10:00 UTC)."""
    world = SyncWorld()
    made = [world.sync()["id"]]
    for wait in (timedelta(days=30), timedelta(days=7), timedelta(days=3, minutes=30)):
        world.advance(wait)
        made.append(world.sync()["id"])
    world.advance(timedelta(minutes=30))
    return world, made[::-1]  # newest first


def test_HIS2_runs_are_grouped_by_time_frame_relative_to_now() -> None:
    world, newest_first = grouped_world()

    page = history.runs(world.services, "t1")

    assert [r["id"] for r in page["runs"]] == newest_first
    assert [r["group"] for r in page["runs"]] == ["Today", "Last 7 days", "Last 30 days", "Older"]


@pytest.mark.parametrize(("frame", "shown"), [("today", 1), ("7d", 2), ("30d", 3), (None, 4)])
def test_HIS2_a_time_frame_shows_the_runs_since_it_began(frame: str | None, shown: int) -> None:
    world, newest_first = grouped_world()

    page = history.runs(world.services, "t1", frame=frame)

    assert [r["id"] for r in page["runs"]] == newest_first[:shown]


def test_HIS2_today_is_the_viewers_own_day() -> None:
    world, _ = grouped_world()  # now: 10:00 UTC, midnight at UTC+14

    page = history.runs(world.services, "t1", timezone="Pacific/Kiritimati")
    today = history.runs(world.services, "t1", frame="today", timezone="Pacific/Kiritimati")

    assert page["runs"][0]["group"] == "Last 7 days"  # 23:30 yesterday, there
    assert today["runs"] == []


def test_HIS2_users_see_their_own_runs_and_admins_their_tenants() -> None:
    services = memory_services()
    mine, theirs = services.backend.store("t1"), services.backend.store("t2")
    mine.save_run("c1", saved_run("u1-run", "c1", NOW))
    mine.save_run("c2", saved_run("u2-run", "c2", NOW + timedelta(minutes=1), user="u2"))
    theirs.save_run("c1", saved_run("other-tenant", "c1", NOW, tenant="t2"))

    def shown(**kw: Any) -> list[str]:
        return [r["id"] for r in history.runs(services, "t1", **kw)["runs"]]

    assert shown(connections=["c1"]) == ["u1-run"]
    assert shown() == ["u2-run", "u1-run"]
    assert shown(connections=[]) == []  # a user with no connection sees nothing
    assert shown(connections=["c1", "c2"], status="idle", provider="google") == [
        "u2-run",
        "u1-run",
    ]


def test_HIS2_pages_follow_one_another_to_the_last() -> None:
    services = memory_services()
    store = services.backend.store("t1")
    for n in range(7):
        store.save_run("c1", saved_run(f"r{n}", "c1", NOW - timedelta(hours=n)))

    first = history.runs(services, "t1", limit=3)
    second = history.runs(services, "t1", limit=3, page=first["next"])
    third = history.runs(services, "t1", limit=3, page=second["next"])

    shown = [r["id"] for page in (first, second, third) for r in page["runs"]]
    assert shown == [f"r{n}" for n in range(7)]
    assert third["next"] is None
    with pytest.raises(Refused) as refused:
        history.runs(services, "t1", limit=3, sort="status", page=first["next"])
    assert refused.value.status == 400


@pytest.mark.parametrize(
    "asked",
    [
        {"status": "done"},
        {"kind": "lead"},
        {"provider": "yahoo"},
        {"trigger": "two words"},
        {"frame": "week"},
        {"sort": "user"},
        {"descending": "yes"},
        {"limit": 0},
        {"limit": 500},
        {"limit": True},
        {"page": "not-a-page"},
        {"page": ""},
        {"connections": "c1"},
        {"connections": [""]},
        {"timezone": "Mars/Olympus_Mons"},
    ],
)
def test_HIS2_a_bad_filter_value_is_refused_with_its_reason(asked: dict[str, Any]) -> None:
    with pytest.raises(Refused) as refused:
        history.runs(memory_services(), "t1", **asked)

    assert refused.value.status == 400
    assert refused.value.reason


# -- HIS-4: one run and its items ----------------------------------------------------------------
def test_HIS4_a_failed_item_says_in_plain_words_what_went_wrong_and_what_can_be_done() -> None:
    world = with_record_url(SyncWorld())
    crm_id = world.crm.create("todo", todo("Refused"))
    world.fail("provider", "create", "permanent")
    run = world.sync()

    detail = history.run_detail(world.services, "t1", "c1", run["id"])

    [item] = detail["items"]
    label = side(world)
    assert (item["kind"], item["kind_name"], item["label"]) == ("todo", "To-do", "Refused")
    assert (item["crm_id"], item["provider_id"]) == (crm_id, None)
    assert item["direction"] == f"CRM → {label}"
    assert item["action"] == "Failed"
    assert item["error"] == f"{label} refused this record."
    assert item["detail"] and "Traceback" not in item["detail"]  # the other side's reason
    if world.provider_backend == "memory":  # a sandbox gives its API's own answer
        assert "injected permanent failure" in item["detail"]
    assert item["actions"] == [
        {"name": "retry"},
        {"name": "exclude"},
        {"name": "open", "url": f"https://crm.example/todo/{crm_id}"},
    ]
    assert detail["status"] == "partial"
    assert detail["messages"] == [f"{label} refused this record."]
    assert not any("Error" in text for text in [item["error"], *detail["messages"]])


def test_HIS4_a_record_the_other_side_did_not_answer_for_is_tried_again_next_time() -> None:
    world = SyncWorld()
    world.crm.create("todo", todo("Later"))
    world.fail("provider", "create", "transient")
    run = world.sync()

    [item] = history.run_detail(world.services, "t1", "c1", run["id"])["items"]

    assert item["error"] == f"{side(world)} did not answer in time; the next sync tries again."
    assert item["detail"] is None
    assert [a["name"] for a in item["actions"]] == ["retry", "exclude"]  # no CRM address


def test_HIS4_an_unreadable_record_says_so_and_why() -> None:
    world = SyncWorld()
    world.crm.create(
        "activity",
        {
            "subject": "Broken",
            "start": datetime(2026, 11, 5, 10, 0),
            "end": datetime(2026, 11, 5, 11, 0),
            "timezone": "Mars/Olympus_Mons",
        },
    )
    run = world.sync()

    [item] = history.run_detail(world.services, "t1", "c1", run["id"])["items"]

    assert item["error"] == "crmsync could not read this record."
    assert "Mars/Olympus_Mons" in item["detail"]


def test_HIS2_an_update_item_shows_each_field_before_and_after() -> None:
    world = with_record_url(SyncWorld())
    crm_id = world.crm.create("todo", todo("Old subject"))
    world.sync()
    world.crm.update("todo", crm_id, {"subject": "New subject"})
    run = world.sync()

    [item] = history.run_detail(world.services, "t1", "c1", run["id"])["items"]

    assert item["action"] == "Updated"
    assert item["label"] == "New subject"
    assert item["changes"] == [
        {"field": "subject", "before": "Old subject", "after": "New subject"}
    ]
    assert item["error"] is None
    assert item["actions"] == [{"name": "open", "url": f"https://crm.example/todo/{crm_id}"}]


@pytest.mark.parametrize("chosen", ["provider", "crm"])
def test_HIS2_a_settled_conflict_shows_what_the_receiving_side_held_before(chosen: str) -> None:
    """Whichever side wins, the item's before is what the side written to held (not the
    base both last agreed on), and its after is what that side holds now."""
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = linked_pair(world, {**GRACE, "title": ""})
    world.advance(timedelta(minutes=1))
    world.crm.update("contact", crm_id, {"title": "Rear Admiral"})
    world.provider.update("contact", pid, {"title": "Professor"})
    world.advance(timedelta(minutes=1))
    world.sync()
    [held] = world.waiting()
    world.resolve(held["id"], chosen)
    run = world.sync()

    [item] = history.run_detail(world.services, "t1", "c1", run["id"])["items"]

    won, lost = (
        ("Professor", "Rear Admiral") if chosen == "provider" else ("Rear Admiral", "Professor")
    )
    way = f"{side(world)} → CRM" if chosen == "provider" else f"CRM → {side(world)}"
    assert (item["action"], item["direction"]) == ("Updated", way)
    assert item["changes"] == [{"field": "title", "before": lost, "after": won}]


def test_HIS2_an_unknown_run_or_another_connections_run_is_not_found() -> None:
    world = SyncWorld()
    run = world.sync()

    for connection, run_id in (("c1", "run-404"), ("c2", run["id"]), ("c1", "")):
        with pytest.raises(Refused) as refused:
            history.run_detail(world.services, "t1", connection, run_id)
        assert refused.value.status == 404


# -- HIS-4: retry ----------------------------------------------------------------------------------
def test_HIS4_retry_reads_the_record_on_both_sides_in_a_cycle_enqueued_now() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", todo("Linked"))
    world.sync()
    [link] = world.links("todo")
    assert world.store.retries("c1", "todo") == set()

    history.retry(world.services, "t1", "c1", "todo", crm_id=crm_id)

    assert world.store.retries("c1", "todo") == {("crm", crm_id), ("provider", link["provider_id"])}
    run = run_now(world)
    assert run["trigger"] == "manual"
    assert run["status"] == "ok"
    assert world.store.retries("c1", "todo") == set()


def test_HIS4_retry_by_the_provider_record_reads_its_crm_twin_too() -> None:
    world = SyncWorld()
    provider_id = world.provider.create("todo", todo("From the provider"))
    world.sync()
    [link] = world.links("todo")

    history.retry(world.services, "t1", "c1", "todo", provider_id=provider_id)

    assert world.store.retries("c1", "todo") == {("provider", provider_id), ("crm", link["crm_id"])}


def test_HIS4_a_failed_record_retried_syncs_once_the_fault_is_gone() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", todo("Refused once"))
    world.fail("provider", "create", "permanent")
    failed = world.sync()
    [item] = history.run_detail(world.services, "t1", "c1", failed["id"])["items"]
    assert {"name": "retry"} in item["actions"]

    history.retry(world.services, "t1", "c1", item["kind"], crm_id=item["crm_id"])
    run = run_now(world)

    assert run["status"] == "ok"
    assert [t["subject"] for t in world.provider.all("todo")] == ["Refused once"]
    [created] = history.run_detail(world.services, "t1", "c1", run["id"])["items"]
    assert (created["crm_id"], created["action"]) == (crm_id, "Created")


def test_HIS4_retry_is_refused_without_side_effects_when_it_cannot_run() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", todo("Waiting"))
    world.sync()

    cases = [
        ({"connection": "c9", "kind": "todo", "crm_id": crm_id}, 404),
        ({"connection": "c1", "kind": "lead", "crm_id": crm_id}, 400),
        ({"connection": "c1", "kind": "todo"}, 400),
        ({"connection": "c1", "kind": "todo", "crm_id": ""}, 400),
    ]
    for asked, status in cases:
        with pytest.raises(Refused) as refused:
            history.retry(world.services, "t1", **asked)
        assert refused.value.status == status
    world.store.set_status("c1", "needs_reauth", "the grant was revoked")
    with pytest.raises(Refused) as refused:
        history.retry(world.services, "t1", "c1", "todo", crm_id=crm_id)

    assert refused.value.status == 409
    assert world.store.retries("c1", "todo") == set()
    assert world.services.queue.due(world.now() + timedelta(days=1)) == []  # type: ignore[attr-defined]


# -- HIS-4 / SET-4: exclude ------------------------------------------------------------------------
def test_SET4_an_excluded_record_is_not_touched_by_the_next_syncs() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", todo("Refused"))
    world.fail("provider", "create", "permanent")
    world.sync()

    history.exclude(world.services, "t1", "c1", "todo", crm_id)
    world.crm.update("todo", crm_id, {"subject": "Edited while excluded"})
    world.sync()
    world.sync()

    assert world.effective_settings().excluded("todo", crm_id, world.now())
    assert world.provider.all("todo") == []
    assert [link["state"] for link in world.links("todo")] == ["creating"]  # waits, unsent
    assert world.crm.get("todo", crm_id)["subject"] == "Edited while excluded"  # type: ignore[index]

    world.include("todo", crm_id)
    world.sync()
    assert [t["subject"] for t in world.provider.all("todo")] == ["Edited while excluded"]


def test_SET4_a_record_excluded_for_a_while_syncs_once_that_has_passed() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("todo", todo("Not yet"))

    history.exclude(
        world.services, "t1", "c1", "todo", crm_id, until=world.now() + timedelta(days=1)
    )
    world.sync()
    assert world.provider.all("todo") == []

    world.advance(timedelta(days=2))
    world.sync()
    assert [t["subject"] for t in world.provider.all("todo")] == ["Not yet"]


def test_SET4_exclude_keeps_the_exclusions_the_tenant_and_user_have() -> None:
    world = SyncWorld(tenant={"exclusions": {"contact": {"crm-tenant": None}}})
    world.exclude("todo", "crm-user")

    history.exclude(world.services, "t1", "c1", "todo", "crm-new")

    excluded = world.effective_settings()["exclusions"]
    assert set(excluded["todo"]) == {"crm-user", "crm-new"}
    assert set(excluded["contact"]) == {"crm-tenant"}


def test_SET4_exclude_is_refused_for_a_bad_request() -> None:
    world = SyncWorld()
    world.sync()
    now = world.now()
    cases = [
        ({"connection": "c9", "kind": "todo", "crm_id": "x"}, 404),
        ({"connection": "c1", "kind": "lead", "crm_id": "x"}, 400),
        ({"connection": "c1", "kind": "todo", "crm_id": ""}, 400),
        (
            {"connection": "c1", "kind": "todo", "crm_id": "x", "until": now - timedelta(hours=1)},
            400,
        ),
        ({"connection": "c1", "kind": "todo", "crm_id": "x", "until": datetime(2030, 1, 1)}, 400),
    ]
    for asked, status in cases:
        with pytest.raises(Refused) as refused:
            history.exclude(world.services, "t1", **asked)
        assert refused.value.status == status
    assert world.effective_settings()["exclusions"]["todo"] == {}


# -- HIS-3: retention per tenant ----------------------------------------------------------
def test_HIS3_a_tenant_keeps_history_for_fewer_days_than_the_deployment() -> None:
    world = SyncWorld(tenant={"history_days": 7})
    world.crm.create("todo", todo("Kept a week"))
    run = world.sync()
    assert run["history_days"] == 7
    assert world.history()

    world.store.sweep(world.now() + timedelta(days=6))  # type: ignore[union-attr]
    assert [r["id"] for r in world.runs()] == [run["id"]]
    world.store.sweep(world.now() + timedelta(days=8))  # type: ignore[union-attr]
    assert world.runs() == []
    assert world.store.items("c1", run["id"]) == []


def test_HIS3_a_tenant_never_keeps_history_longer_than_the_deployment() -> None:
    default, longer = SyncWorld(), SyncWorld(tenant={"history_days": 400})
    for world in (default, longer):
        world.sync()
        world.store.sweep(world.now() + timedelta(days=89))  # type: ignore[union-attr]
        assert len(world.runs()) == 1
        world.store.sweep(world.now() + timedelta(days=91))  # type: ignore[union-attr]
        assert world.runs() == []


def test_HIS3_how_long_history_is_kept_is_the_tenants_to_set() -> None:
    world = SyncWorld()
    with pytest.raises(SettingsError):
        world.settings(history_days=3)
    for bad in (0, -1, "7", True, 2.5):
        with pytest.raises(SettingsError):
            resolve("google", {"history_days": bad})
    assert resolve("google", {"history_days": 30})["history_days"] == 30


# -- HIS-4: where a CRM record opens -------------------------------------------------------
def test_HIS4_a_tenant_registers_where_its_crm_opens_a_record() -> None:
    services = memory_services()
    register = {
        "name": "Tenant",
        "crm_base_url": "https://crm.example/api",
        "crm_token": "crm-token",
        "event_secret": "event-secret",
    }
    for bad in ("ftp://crm.example/{id}", "https://crm.example/{kind}", "https://x/{id}/{name}"):
        with pytest.raises(Refused) as refused:
            service.create_tenant(services, "t1", crm_record_url=bad, **register)
        assert refused.value.status == 400
    assert services.backend.store("t1").tenant_record() is None

    service.create_tenant(services, "t1", crm_record_url=RECORD_URL, **register)

    record = services.backend.store("t1").tenant_record()
    assert record is not None
    assert record["crm"] == {"base_url": "https://crm.example/api", "record_url": RECORD_URL}
