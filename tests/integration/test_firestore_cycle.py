"""The whole sync cycle over the Firestore store (Google's emulator): SyncWorld scenarios
whose state, links, journal, cursors, lease and history all live in Firestore."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from crmsync.store.firestore import FirestoreStore
from crmsync.testing import SyncWorld

pytestmark = pytest.mark.integration


@pytest.fixture
def world(firestore_client: Any) -> Iterator[SyncWorld]:
    world = SyncWorld(store=FirestoreStore(firestore_client, "t1"))
    yield world
    world.close()


def crm_member(world: SyncWorld, first_name: str) -> str:
    cid = world.crm.create(
        "contact", {"first_name": first_name, "emails": [f"{first_name.lower()}@example.com"]}
    )
    world.crm.add_to_sync_group(cid)
    return cid


def emails(records: list[dict[str, Any]]) -> list[str]:
    return sorted(e for r in records for e in r["emails"])


def test_a_contact_created_in_the_crm_reaches_the_provider(world: SyncWorld) -> None:
    cid = crm_member(world, "Ada")

    run = world.sync()

    assert run["status"] == "ok"
    assert emails(world.provider.all("contact")) == ["ada@example.com"]
    [link] = world.links("contact")
    assert (link["crm_id"], link["state"]) == (cid, "linked")
    assert [r["status"] for r in world.runs()] == ["ok"]
    assert [i["outcome"] for i in world.history()] == ["create"]


def test_an_edit_in_the_provider_reaches_the_crm(world: SyncWorld) -> None:
    cid = crm_member(world, "Ada")
    world.sync()
    [link] = world.links("contact")
    world.advance(timedelta(minutes=5))

    world.provider.update("contact", link["provider_id"], {"title": "Chief Analyst"})
    run = world.sync()

    assert run["counts"] == {"contact": {"update": 1}}
    crm = world.crm.get("contact", cid)
    assert crm is not None and crm["title"] == "Chief Analyst"


def test_SYN4_a_cycle_killed_after_a_remote_write_converges_with_no_duplicate(
    world: SyncWorld,
) -> None:
    for name in ("Ada", "Bob", "Cyd"):
        crm_member(world, name)
    world.crash_after(2)

    assert world.sync()["status"] == "crashed"
    assert world.store.journaled_links(world.connection.id) != []
    for _ in range(3):
        world.advance(timedelta(minutes=5))
        run = world.sync()
        if run["status"] == "ok" and not run["counts"]:
            break

    assert (run["status"], run["counts"]) == ("ok", {})
    assert emails(world.provider.all("contact")) == [
        "ada@example.com",
        "bob@example.com",
        "cyd@example.com",
    ]
    assert [link["state"] for link in world.links("contact")] == ["linked"] * 3
    assert world.store.journaled_links(world.connection.id) == []


def test_a_cycle_with_one_change_reads_fewer_documents_than_the_connection_has_links(
    world: SyncWorld,
) -> None:
    ids = [crm_member(world, f"Person{n}") for n in range(60)]
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()  # reads the echoes of the 60 creates, once
    assert len(world.links("contact")) == 60
    world.advance(timedelta(minutes=5))
    world.crm.update("contact", ids[7], {"title": "CTO"})
    reads = world.store.reads

    run = world.sync()

    assert run["counts"] == {"contact": {"update": 1}}
    assert world.store.reads - reads < 60


def test_SYN2_a_conflict_settled_field_by_field_is_applied_from_the_firestore_store(
    world: SyncWorld,
) -> None:
    world.settings(conflict_policy="manual")
    cid = crm_member(world, "Ada")
    world.sync()
    [link] = world.links("contact")
    pid = link["provider_id"]
    world.advance(timedelta(minutes=5))
    world.crm.update("contact", cid, {"title": "CTO", "company": "Engines plc"})
    world.provider.update("contact", pid, {"title": "Chief Analyst", "company": "Babbage & Co"})
    world.sync()
    [item] = world.waiting()

    world.resolve(item["id"], picks={"title": "provider", "company": "crm"})
    assert world.waiting()[0]["picks"] == {"company": "crm", "title": "provider"}
    world.sync()

    crm, contact = world.crm.get("contact", cid), world.provider.get("contact", pid)
    assert crm is not None and contact is not None
    assert (crm["title"], crm["company"]) == (contact["title"], contact["company"])
    assert (crm["title"], crm["company"]) == ("Chief Analyst", "Engines plc")
    assert world.waiting() == []
