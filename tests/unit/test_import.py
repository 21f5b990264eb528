"""CON-9: a user imports their whole address book (or one label) into the CRM once,
with a preview, duplicate detection by e-mail and progress; the import runs as a chain
of queue tasks, survives being killed, and the imported contacts then sync like any
other. Driven through SyncWorld, over the use cases the web app and the worker call."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from crmsync import service
from crmsync.testing import SyncWorld
from crmsync.usecases import importing, preferences

FAR = datetime(9999, 1, 1).astimezone()


def person(n: int) -> dict[str, Any]:
    return {"first_name": f"Person{n:02d}", "last_name": "Example", "emails": [f"p{n}@example.com"]}


def address_book(world: SyncWorld, people: int = 30, in_crm: int = 5) -> list[str]:
    """`people` contacts in the user's address book, none labelled for sync; the first
    `in_crm` of them are in the CRM already (not in the user's sync group)."""
    ids = [world.provider.create("contact", person(n)) for n in range(people)]
    for n in range(in_crm):
        world.crm.create("contact", {**person(n), "emails": [f"P{n}@Example.com"]})
    return ids


def run_tasks(world: SyncWorld) -> list[str]:
    """Every queued task, through the worker's use case as Cloud Tasks runs it
    (`world.sync`: with the world's faults armed), until none is left; the triggers
    run, in order, each followed by "crashed" when the process died in it."""
    ran: list[str] = []
    for _ in range(50):
        due = world.services.queue.due(FAR)  # type: ignore[attr-defined]
        if not due:
            return ran
        for task in due:
            ran.append(task.trigger)
            if world.sync(task.trigger)["status"] == "crashed":
                ran.append("crashed")
    raise AssertionError("the tasks never ran out")


def crm_emails(world: SyncWorld) -> Counter[str]:
    return Counter(e.lower() for r in world.crm.all("contact") for e in r["emails"])


def linked(world: SyncWorld) -> set[str]:
    return {str(x["provider_id"]) for x in world.links("contact") if x["state"] == "linked"}


def job(world: SyncWorld) -> dict[str, Any]:
    shown = importing.status(world.services, "t1", world.connection.id)
    assert shown is not None
    return shown


def a_world() -> SyncWorld:
    world = SyncWorld()
    world.sync()  # connected and synced once: nothing yet
    return world


# -- preview, import, and again ---------------------------------------------------------------
def test_CON9_importing_30_contacts_of_which_5_are_in_the_crm_creates_25_and_links_30() -> None:
    world = a_world()
    ids = address_book(world)
    conn = world.connection.id

    seen = importing.preview(world.services, "t1", conn, importing.ALL)

    assert (seen["total"], seen["to_crm"]["count"], seen["link"]["count"]) == (30, 25, 5)
    assert {r["provider_id"] for r in seen["link"]["shown"]} == set(ids[:5])
    assert seen["already"] == 0 and len(world.crm.all("contact")) == 5  # nothing written yet

    importing.start(world.services, "t1", conn, importing.ALL, size=10)
    steps = run_tasks(world)

    assert steps == ["import", "import", "import"]  # three steps of ten
    assert len(world.crm.all("contact")) == 30
    assert set(crm_emails(world).values()) == {1}  # not one address twice
    assert linked(world) == set(ids)
    assert sorted(world.provider.labelled()) == sorted(ids)  # they join the contact sync
    assert len(world.crm.sync_group()) == 30
    shown = job(world)
    assert (shown["status"], shown["done"], shown["total"], shown["percent"]) == (
        "done",
        30,
        30,
        100,
    )
    assert (shown["created"], shown["linked"], shown["already"], shown["failed"]) == (25, 5, 0, 0)

    run = world.sync()  # the next cycle finds them linked: nothing to create
    assert run["status"] == "ok" and "create" not in run["counts"].get("contact", {})
    assert len(world.crm.all("contact")) == 30 and len(world.provider.all("contact")) == 30
    world.provider.update("contact", ids[7], {"last_name": "Renamed"})
    world.sync()  # and they sync like any other
    names = {r["last_name"] for r in world.crm.all("contact") if "p7@example.com" in r["emails"]}
    assert names == {"Renamed"}


def test_CON9_a_second_import_of_the_same_address_book_creates_nothing() -> None:
    world = a_world()
    address_book(world)
    conn = world.connection.id
    importing.start(world.services, "t1", conn, importing.ALL)
    run_tasks(world)
    before = crm_emails(world)

    again = importing.preview(world.services, "t1", conn, importing.ALL)
    importing.start(world.services, "t1", conn, importing.ALL)
    run_tasks(world)

    assert (again["to_crm"]["count"], again["link"]["count"], again["already"]) == (0, 0, 30)
    assert crm_emails(world) == before
    shown = job(world)
    assert (shown["created"], shown["linked"], shown["already"]) == (0, 0, 30)


@pytest.mark.parametrize("writes", [3, 14, 27])
def test_CON9_an_import_killed_midway_and_resumed_creates_no_duplicate(writes: int) -> None:
    world = a_world()
    ids = address_book(world)
    conn = world.connection.id
    importing.start(world.services, "t1", conn, importing.ALL, size=10)
    world.crash_after(writes)

    assert run_tasks(world)[-1] == "crashed"
    assert len(linked(world)) < 30
    # Cloud Tasks runs the killed task again: once the dead step's lease ran out, it
    # goes on from the contacts that step had taken
    world.sync("import")
    run_tasks(world)

    assert len(world.crm.all("contact")) == 30
    assert set(crm_emails(world).values()) == {1}
    assert linked(world) == set(ids)
    shown = job(world)
    assert (shown["status"], shown["created"], shown["linked"], shown["done"]) == (
        "done",
        25,
        5,
        30,
    )


# -- one label, and what is refused --------------------------------------------------------------
def test_CON9_importing_one_label_brings_in_only_its_contacts() -> None:
    world = a_world()
    ids = address_book(world, people=6, in_crm=0)
    for friend in ids[:2]:
        world.provider.put_under(friend, "Friends")
    conn = world.connection.id

    offered = importing.sources(world.services, "t1", conn)
    importing.start(world.services, "t1", conn, "Friends")
    run_tasks(world)

    assert {"id": "Friends", "label": "Friends"} in offered
    assert offered[0] == {"id": importing.ALL, "label": "All contacts"}
    assert linked(world) == set(ids[:2])
    assert sorted(world.crm.sync_group()) == sorted(x["crm_id"] for x in world.links("contact"))
    assert len(world.crm.all("contact")) == 2


def test_CON9_an_import_is_refused_while_one_runs_or_for_a_source_the_user_has_not() -> None:
    world = a_world()
    address_book(world, people=3, in_crm=0)
    conn = world.connection.id

    with pytest.raises(service.Refused) as unknown:
        importing.start(world.services, "t1", conn, "No such label")
    importing.start(world.services, "t1", conn, importing.ALL)
    with pytest.raises(service.Refused) as twice:
        importing.start(world.services, "t1", conn, importing.ALL)

    assert (unknown.value.status, twice.value.status) == (400, 409)
    assert run_tasks(world) == ["import"]
    assert len(world.crm.all("contact")) == 3


# -- failures and pauses ----------------------------------------------------------------------
def test_CON9_a_contact_that_cannot_be_labelled_fails_alone_and_a_new_import_brings_it_in() -> None:
    world = a_world()
    ids = address_book(world, people=4, in_crm=0)
    conn = world.connection.id
    importing.start(world.services, "t1", conn, importing.ALL)
    world.fail("provider", "scope", "permanent")

    run_tasks(world)

    shown = job(world)
    assert (shown["status"], shown["created"], shown["failed"]) == ("done", 3, 1)
    assert len(linked(world)) == 3 and len(world.crm.all("contact")) == 3
    importing.start(world.services, "t1", conn, importing.ALL)
    run_tasks(world)
    assert (job(world)["created"], job(world)["already"]) == (1, 3)
    assert linked(world) == set(ids) and set(crm_emails(world).values()) == {1}


def test_CON9_an_import_pauses_while_the_user_is_turned_off_and_goes_on_when_resumed() -> None:
    world = a_world()
    ids = address_book(world, people=4, in_crm=1)
    conn = world.connection.id
    importing.start(world.services, "t1", conn, importing.ALL, size=2)
    preferences.set_enabled(world.services, "t1", world.user, False)  # SET-6, by the admin

    run_tasks(world)

    paused = job(world)
    assert (paused["status"], paused["done"], paused["resumable"]) == ("paused", 0, True)
    assert paused["reason"] == service.TURNED_OFF
    assert world.crm.all("contact") and linked(world) == set()
    preferences.set_enabled(world.services, "t1", world.user, True)
    importing.resume(world.services, "t1", conn)
    run_tasks(world)
    shown = job(world)
    assert (shown["status"], shown["created"], shown["linked"]) == ("done", 3, 1)
    assert linked(world) == set(ids)
