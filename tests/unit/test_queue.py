"""The user's queue (SYN-2 manual conflicts, SET-5 confirmations, SYN-6 held mass deletes,
CON-8 review list) through the use cases the web app calls (`crmsync.usecases.queue`),
driven by SyncWorld: what waits, in words a person reads, and each answer applied by the
next cycle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import pytest

from crmsync.app.queue_views import _batch_title
from crmsync.service import Refused
from crmsync.testing import DEFAULT_NOW, SyncWorld
from crmsync.usecases import queue
from tests.unit.test_contacts import ADA, GRACE, labelled, linked_pair

MINUTE = timedelta(minutes=1)


def two_field_conflict(world: SyncWorld) -> tuple[str, str]:
    """A linked contact whose title and company both sides changed, differently."""
    crm_id, pid = linked_pair(world, ADA)
    world.advance(MINUTE)
    world.crm.update("contact", crm_id, {"title": "CTO", "company": "Engines plc"})
    world.provider.update("contact", pid, {"title": "Chief Analyst", "company": "Babbage & Co"})
    world.advance(MINUTE)
    world.sync()
    return crm_id, pid


def versions(world: SyncWorld, kind: str = "contact") -> dict[tuple[str, str], str]:
    return {
        **{("crm", r["id"]): r["version"] for r in world.crm.all(kind)},  # type: ignore[arg-type]
        **{("provider", r["id"]): r["version"] for r in world.provider.all(kind)},  # type: ignore[arg-type]
    }


def meetings(world: SyncWorld, n: int) -> list[tuple[str, str]]:
    start = DEFAULT_NOW + timedelta(days=1)
    crm_ids = [
        world.crm.create(
            "activity", {"subject": f"Meeting {i:02}", "start": start, "end": start + MINUTE * 30}
        )
        for i in range(n)
    ]
    world.sync()
    twins = {link["crm_id"]: link["provider_id"] for link in world.links("activity")}
    return [(crm_id, twins[crm_id]) for crm_id in crm_ids]


def subjects(world: SyncWorld, side: str) -> list[str]:
    handle = world.crm if side == "crm" else world.provider
    return sorted(r["subject"] for r in handle.all("activity"))


def subjects_of(world: SyncWorld, kind: str) -> set[str]:
    return {r["subject"] for handle in (world.crm, world.provider) for r in handle.all(kind)}  # type: ignore[attr-defined]


def refused(call: Any, *args: Any, **kw: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        call(*args, **kw)
    return caught.value


# -- SYN-2: a conflict settled field by field ----------------------------------------------------
def test_SYN2_a_conflict_waits_with_each_side_s_value_of_the_conflicting_fields() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = two_field_conflict(world)

    [item] = world.waiting()

    assert (item["reason"], item["reason_text"]) == ("conflict", "Changed on both sides")
    assert (item["kind"], item["crm_id"], item["provider_id"]) == ("contact", crm_id, pid)
    assert item["rows"] == [
        {"field": "company", "crm": "Engines plc", "provider": "Babbage & Co", "differs": True},
        {"field": "title", "crm": "CTO", "provider": "Chief Analyst", "differs": True},
    ]
    assert item["actions"] == ["crm", "provider", "fields"]
    assert set(item["action_text"]) == set(item["actions"])
    assert (item["choice"], item["picks"], item["batch"]) == (None, None, None)
    assert item["created"] == (DEFAULT_NOW + 2 * MINUTE).isoformat()


def test_SYN2_a_conflict_settled_field_by_field_takes_each_field_from_the_side_picked() -> None:
    # that each side is sent only the fields it lacks (SYN-3) the planner's own test
    # shows: test_decisions, test_SYN2_SYN3_a_conflict_settled_field_by_field_...
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = two_field_conflict(world)
    [item] = world.waiting()

    world.resolve(item["id"], picks={"title": "provider", "company": "crm"})
    world.sync()

    crm, contact = world.crm.get("contact", crm_id), world.provider.get("contact", pid)
    assert crm is not None and contact is not None
    assert (crm["title"], crm["company"]) == ("Chief Analyst", "Engines plc")
    assert (contact["title"], contact["company"]) == ("Chief Analyst", "Engines plc")
    [applied] = world.history()
    assert (applied["outcome"], applied["direction"]) == ("update", "both")
    assert world.waiting() == []
    before = versions(world)
    assert world.sync()["counts"] == {}  # settled for good: no write comes back
    assert versions(world) == before


def test_SYN2_a_side_picked_for_every_field_writes_only_the_other_side() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, pid = two_field_conflict(world)
    [item] = world.waiting()
    crm_version = world.crm.get("contact", crm_id)["version"]  # type: ignore[index]

    world.resolve(item["id"], "fields", {"title": "crm", "company": "crm"})
    world.sync()

    assert world.crm.get("contact", crm_id)["version"] == crm_version  # type: ignore[index]
    contact = world.provider.get("contact", pid)
    assert contact is not None and (contact["title"], contact["company"]) == (
        "CTO",
        "Engines plc",
    )


def test_SYN2_a_whole_side_choice_still_settles_every_conflicting_field() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    crm_id, _ = two_field_conflict(world)
    [item] = world.waiting()

    world.resolve(item["id"], "provider")
    world.sync()

    crm = world.crm.get("contact", crm_id)
    assert crm is not None and (crm["title"], crm["company"]) == ("Chief Analyst", "Babbage & Co")
    assert world.waiting() == []


@pytest.mark.parametrize(
    ("choice", "picks", "reason"),
    [
        (None, {"title": "provider"}, "pick a side for every conflicting field: company"),
        (
            None,
            {"title": "crm", "company": "crm", "phones": "crm"},
            "not a conflicting field of this record: phones (those are company, title)",
        ),
        (None, {"title": "both", "company": "crm"}, "pick crm or provider for title"),
        ("crm", {"title": "crm", "company": "crm"}, "give either a choice or picks"),
        ("fields", None, "pick a side for every conflicting field: company, title"),
        ("confirm", None, "choose one of crm, provider, not 'confirm'"),
        (None, None, "choose one of crm, provider, not None"),
    ],
)
def test_SYN2_bad_answers_are_refused_with_the_reason_and_settle_nothing(
    choice: str | None, picks: dict[str, str] | None, reason: str
) -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    two_field_conflict(world)
    [item] = world.waiting()

    problem = refused(world.resolve, item["id"], choice, picks)

    assert problem.status == 400
    assert reason in problem.reason
    assert [(i["choice"], i["picks"]) for i in world.waiting()] == [(None, None)]
    assert world.services.queue.waiting == {}  # type: ignore[attr-defined]


def test_SET5_picks_are_only_for_a_conflict() -> None:
    world = SyncWorld(settings={"confirm": {"new": True}})
    world.provider.create("todo", {"subject": "Order cards"})
    world.sync()
    [item] = world.waiting()

    problem = refused(world.resolve, item["id"], picks={"subject": "crm"})

    assert (problem.status, problem.reason) == (400, "only a conflict is settled field by field")


def test_an_item_or_connection_that_does_not_exist_is_refused_404() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    two_field_conflict(world)

    assert refused(world.resolve, "contact-crm-nope", "crm").status == 404
    for call, args in (
        (queue.waiting, ()),
        (queue.resolve, ("contact-crm-crm-1", "crm")),
        (queue.settle_batch, ("run:contact", "confirm")),
    ):
        assert refused(call, world.services, "t1", "c-nope", *args).status == 404


# -- what the queue shows ------------------------------------------------------------------
def test_waiting_marks_exactly_the_fields_whose_values_differ() -> None:
    world = SyncWorld()
    world.sync()
    world.store.put_queue_item(
        world.connection.id,
        {
            "id": "contact-crm-c9",
            "kind": "contact",
            "reason": "confirm_modified",
            "source": "crm",
            "crm_id": "c9",
            "provider_id": "p9",
            "fields": ["title"],
            "summary": "waiting for confirmation of a modification",
            "crm_values": {"title": "CTO", "company": "Acme", "emails": ("a@x.org", "b@x.org")},
            "provider_values": {"title": None, "company": "Acme", "phones": ()},
            "created": DEFAULT_NOW,
            "run": "run-1",
        },
    )

    [item] = world.waiting()

    assert item["rows"] == [
        {"field": "company", "crm": "Acme", "provider": "Acme", "differs": False},
        {"field": "title", "crm": "CTO", "provider": "", "differs": True},
        {"field": "emails", "crm": "a@x.org, b@x.org", "provider": "", "differs": True},
        {"field": "phones", "crm": "", "provider": "", "differs": False},
    ]
    assert item["reason_text"] == (
        "Changed in the CRM: waiting for your OK before changing it in Google"
    )
    assert item["actions"] == ["confirm", "undo"]


def test_waiting_lists_the_oldest_first() -> None:
    world = SyncWorld(settings={"confirm": {"new": True}})
    world.provider.create("todo", {"subject": "First"})
    world.sync()
    world.advance(MINUTE)
    world.crm.create("todo", {"subject": "Second"})
    world.sync()

    assert [i["source"] for i in world.waiting()] == ["provider", "crm"]
    assert [i["reason_text"] for i in world.waiting()] == [
        "New in Google: waiting for your OK before creating it in the CRM",
        "New in the CRM: waiting for your OK before creating it in Google",
    ]


def test_a_settled_item_shows_the_answer_until_the_next_cycle_applies_it() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    two_field_conflict(world)
    [item] = world.waiting()

    answered = world.resolve(item["id"], picks={"title": "provider", "company": "crm"})

    picks = {"company": "crm", "title": "provider"}
    assert (answered["choice"], answered["picks"]) == ("fields", picks)
    [shown] = world.waiting()
    assert shown == answered
    world.sync()
    assert world.waiting() == []


def test_an_answer_enqueues_the_cycle_that_applies_it() -> None:
    world = SyncWorld(settings={"conflict_policy": "manual"})
    two_field_conflict(world)
    [item] = world.waiting()

    world.resolve(item["id"], "crm")

    [task] = world.services.queue.waiting.values()  # type: ignore[attr-defined]
    assert (task.connection, task.trigger) == (world.connection.id, "resolve")
    assert task.not_before - world.now() <= timedelta(seconds=10)
    world.sync(trigger=task.trigger)
    assert world.waiting() == []


# -- SET-5: confirmations in the user's terms ------------------------------------------------
@pytest.mark.parametrize(("action", "created"), [("confirm", True), ("skip", False)])
def test_SET5_a_new_record_is_created_or_never_synced_as_the_user_says(
    action: str, created: bool
) -> None:
    world = SyncWorld(settings={"confirm": {"new": True}})
    world.provider.create("todo", {"subject": "Order cards"})
    world.sync()
    [item] = world.waiting()
    assert item["actions"] == ["confirm", "skip"]

    assert world.resolve(item["id"], action)["choice"] == action
    world.sync()

    assert [t["subject"] for t in world.crm.all("todo")] == (["Order cards"] if created else [])
    assert world.waiting() == []


@pytest.mark.parametrize(
    ("action", "subject"), [("confirm", "Send revised offer"), ("undo", "Send offer")]
)
def test_SET5_a_modification_is_applied_or_undone_as_the_user_says(
    action: str, subject: str
) -> None:
    world = SyncWorld(settings={"confirm": {"modified": True}})
    crm_id = world.crm.create("todo", {"subject": "Send offer"})
    world.sync()
    world.crm.update("todo", crm_id, {"subject": "Send revised offer"})
    world.sync()
    [item] = world.waiting()
    assert item["rows"] == [
        {
            "field": "subject",
            "crm": "Send revised offer",
            "provider": "Send offer",
            "differs": True,
        }
    ]

    world.resolve(item["id"], action)
    world.sync()

    assert subjects_of(world, "todo") == {subject}
    assert world.waiting() == []


@pytest.mark.parametrize(("action", "kept"), [("confirm", False), ("restore", True)])
def test_SET5_a_delete_is_confirmed_or_restored_as_the_user_says(action: str, kept: bool) -> None:
    world = SyncWorld(settings={"confirm": {"deleted": True}})
    crm_id = world.crm.create("todo", {"subject": "Send offer"})
    world.sync()
    [link] = world.links("todo")
    world.provider.delete("todo", link["provider_id"])
    world.sync()
    [item] = world.waiting()
    assert item["reason_text"] == ("Deleted in Google: waiting for your OK before the CRM follows")
    assert item["actions"] == ["confirm", "restore"]
    assert item["rows"] == [
        {
            "field": "subject",
            "crm": "Send offer",
            "provider": "",
            "differs": False,
            "value": "Send offer",
        }
    ]
    assert item["deleted_in"] == "Google"

    world.resolve(item["id"], action)
    world.sync()

    assert (world.crm.get("todo", crm_id) is not None) is kept
    assert [t["subject"] for t in world.provider.all("todo")] == (["Send offer"] if kept else [])
    assert len(world.links("todo")) == (1 if kept else 0)
    assert world.waiting() == []


@pytest.mark.parametrize(
    ("kind", "settings", "said"),
    [
        ("todo", {}, "Delete it in the CRM too"),
        ("todo", {"deletes": {"todo": {"crm": "unlink"}}}, "Keep it in the CRM, no longer synced"),
        ("contact", {"contact_delete": "delete"}, "Delete it in the CRM too"),
        ("contact", {}, "Keep it in the CRM, no longer synced"),
    ],
)
def test_SET5_confirming_a_held_delete_says_what_the_settings_will_do(
    kind: str, settings: dict[str, Any], said: str
) -> None:
    world = SyncWorld(settings={"confirm": {"deleted": True}, **settings})
    if kind == "todo":
        world.crm.create("todo", {"subject": "Send offer"})
        world.sync()
    else:
        linked_pair(world, ADA)
    [link] = world.links(kind)  # type: ignore[arg-type]
    world.provider.delete(kind, link["provider_id"])  # type: ignore[arg-type]
    world.sync()

    [item] = world.waiting()

    assert item["action_text"]["confirm"] == said
    assert {row["differs"] for row in item["rows"]} == {False}


def test_SYN6_a_held_batch_s_heading_counts_its_records_in_words() -> None:
    held = {"kind": "todo", "gone": "the CRM"}
    assert _batch_title({**held, "count": 2}) == "2 to-dos deleted in the CRM at once"
    assert _batch_title({**held, "count": 1}) == (
        "1 to-do deleted in the CRM, held with a large delete"
    )
    assert _batch_title({"kind": "activity", "gone": "Google", "count": 3}) == (
        "3 activities deleted in Google at once"
    )


# -- CON-8: the review list ----------------------------------------------------------------------
def review_item(world: SyncWorld) -> tuple[str, dict[str, Any]]:
    pid = labelled(world, GRACE)
    world.sync()
    [item] = world.waiting()
    return pid, item


def test_CON8_a_new_provider_contact_waits_in_the_review_list_showing_who_it_is() -> None:
    world = SyncWorld(settings={"new_contacts": "review"})
    pid, item = review_item(world)

    assert (item["reason"], item["provider_id"]) == ("review", pid)
    assert item["reason_text"] == "New contact in Google: add it to the CRM or leave it out"
    assert item["actions"] == ["convert", "discard"]
    assert {row["field"]: row["provider"] for row in item["rows"]} == {
        "first_name": "Grace",
        "last_name": "Hopper",
        "emails": "grace@example.org",
        "phones": "+12025550143 (mobile)",
    }


@pytest.mark.parametrize(("action", "converted"), [("convert", True), ("discard", False)])
def test_CON8_a_reviewed_contact_is_converted_or_discarded(action: str, converted: bool) -> None:
    world = SyncWorld(settings={"new_contacts": "review"})
    _, item = review_item(world)

    world.resolve(item["id"], action)
    world.sync()

    assert [c["emails"] for c in world.crm.all("contact")] == (
        [["grace@example.org"]] if converted else []
    )
    assert world.waiting() == []


# -- SYN-6: a held mass delete, settled as one batch ---------------------------------------------
OTHER = {"crm": "provider", "provider": "crm"}


def held_mass_delete(world: SyncWorld, side: str) -> tuple[list[tuple[str, str]], str]:
    pairs = meetings(world, 12)
    for crm_id, pid in pairs[:10]:  # >= 10 and > 25 % of 12: held
        if side == "crm":
            world.crm.delete("activity", crm_id)
        else:
            world.provider.delete("activity", pid)
    world.sync()
    items = world.waiting()
    assert len(items) == 10
    assert {i["batch"] for i in items} == {items[0]["batch"]}
    gone = "the CRM" if side == "crm" else "Google"
    assert {i["reason_text"] for i in items} == {
        f"Deleted in {gone} with many others at once: held until you say what to do"
    }
    assert {tuple(i["actions"]) for i in items} == {("confirm", "restore")}
    return pairs, items[0]["batch"]


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN6_a_held_mass_delete_confirmed_as_a_batch_is_applied(side: str) -> None:
    world = SyncWorld()
    _, batch = held_mass_delete(world, side)

    assert world.settle_batch(batch, "confirm") == 10
    assert {i["choice"] for i in world.waiting()} == {"confirm"}
    world.sync()

    assert len(subjects(world, OTHER[side])) == 2
    assert len(world.links("activity")) == 2
    assert world.waiting() == []


@pytest.mark.parametrize("side", ["crm", "provider"])
def test_SYN6_a_held_mass_delete_restored_as_a_batch_comes_back_where_it_was_deleted(
    side: str,
) -> None:
    world = SyncWorld()
    pairs, batch = held_mass_delete(world, side)

    assert world.settle_batch(batch, "restore") == 10
    world.sync()

    assert (
        subjects(world, side)
        == subjects(world, OTHER[side])
        == [f"Meeting {i:02}" for i in range(12)]
    )
    links = world.links("activity")
    assert len(links) == 12 and {link["state"] for link in links} == {"linked"}
    kept = {link["crm_id"] if side == "provider" else link["provider_id"] for link in links}
    assert kept == {crm_id if side == "provider" else pid for crm_id, pid in pairs}
    assert world.waiting() == []
    before = versions(world, "activity")
    assert world.sync()["counts"] == {}
    assert versions(world, "activity") == before


def synced_contacts(world: SyncWorld, n: int) -> list[tuple[str, str]]:
    crm_ids = []
    for i in range(n):
        crm_id = world.crm.create("contact", {"first_name": f"C{i:02}", "emails": [f"c{i}@x.org"]})
        world.crm.add_to_sync_group(crm_id)
        crm_ids.append(crm_id)
    world.sync()
    twins = {link["crm_id"]: link["provider_id"] for link in world.links("contact")}
    return [(crm_id, twins[crm_id]) for crm_id in crm_ids]


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_SYN6_contacts_that_lost_their_label_are_labelled_again_when_restored_not_copied(
    provider: Literal["google", "microsoft"],
) -> None:
    world = SyncWorld(provider=provider)
    pairs = synced_contacts(world, 12)
    for _, pid in pairs[:10]:
        world.provider.unlabel(pid)
    world.sync()
    [batch] = {item["batch"] for item in world.waiting()}

    world.settle_batch(batch, "restore")
    world.sync()

    assert sorted(c["id"] for c in world.provider.all("contact")) == sorted(p for _, p in pairs)
    assert sorted(world.provider.labelled()) == sorted(p for _, p in pairs)
    assert {(link["crm_id"], link["provider_id"]) for link in world.links("contact")} == set(pairs)
    assert world.crm.sync_group() == sorted(c for c, _ in pairs)
    assert world.sync()["counts"] == {}


def test_SYN6_contacts_taken_out_of_the_sync_group_rejoin_it_when_restored_not_copied() -> None:
    world = SyncWorld()
    pairs = synced_contacts(world, 12)
    for crm_id, _ in pairs[:10]:
        world.crm.remove_from_sync_group(crm_id)
    world.sync()
    [batch] = {item["batch"] for item in world.waiting()}
    assert len(world.provider.all("contact")) == 12  # held: nothing deleted at the provider

    world.settle_batch(batch, "restore")
    world.sync()

    assert sorted(c["id"] for c in world.crm.all("contact")) == sorted(c for c, _ in pairs)
    assert world.crm.sync_group() == sorted(c for c, _ in pairs)
    assert {(link["crm_id"], link["provider_id"]) for link in world.links("contact")} == set(pairs)
    assert len(world.provider.all("contact")) == 12
    assert world.sync()["counts"] == {}


@pytest.mark.parametrize(
    ("batch", "action", "status"),
    [(None, "delete", 400), ("run-0:activity", "confirm", 404)],
)
def test_SYN6_a_bad_batch_answer_is_refused(batch: str | None, action: str, status: int) -> None:
    world = SyncWorld()
    _, held = held_mass_delete(world, "provider")

    problem = refused(world.settle_batch, batch or held, action)

    assert problem.status == status
    assert {i["choice"] for i in world.waiting()} == {None}
