"""The whole sync cycle over the Firestore store (Google's emulator): SyncWorld scenarios
whose state, links, journal, cursors, lease and history all live in Firestore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.engine.records import Link
from crmsync.errors import LeaseTaken
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


def test_an_idle_cycle_reads_two_documents_and_writes_one(world: SyncWorld) -> None:
    """What every connected user costs every few minutes: the tenant's and the
    connection's documents read once each (the lease, cursors, retries, journal, queue
    and the CRM user it acts as are in the last), and the connection's document written
    once: the lease is taken lazily (written with a cycle's first write, and an idle
    cycle makes none), and given up with the run's outcome. The history keeps the quiet
    cycles in a row as one entry, stored with the first of them."""
    ids = [crm_member(world, f"Person{n}") for n in range(5)]
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()  # the echoes of the creates, known by version: the first quiet cycle
    # the history's entry of quiet cycles stored, and the release, with the provider's
    # cursor moved past the echoes
    assert world.cost["writes"] == 2

    for _ in range(3):
        world.advance(timedelta(minutes=5))
        run = world.sync()
        assert run["status"] == "ok" and run["counts"] == {}
        assert world.cost == {"reads": 2, "writes": 1}

    world.crm.update("contact", ids[2], {"title": "CTO"})
    world.advance(timedelta(minutes=5))
    assert world.sync()["counts"] == {"contact": {"update": 1}}
    world.advance(timedelta(minutes=5))
    world.sync()  # its echo: quiet again, a new entry
    world.advance(timedelta(minutes=5))
    world.sync()  # counted in the connection's record only
    assert [(r["counts"], r.get("cycles")) for r in world.runs()] == [
        ({"contact": {"create": 5}}, None),
        ({}, 4),  # the four quiet cycles, stored with their count once a change came
        ({"contact": {"update": 1}}, None),
        ({}, 1),  # stored as it began; its count and end follow when it ends
    ]


def test_RUN3_a_poll_that_finds_nothing_reads_two_documents_and_writes_none(
    world: SyncWorld,
) -> None:
    """A poll (every two minutes for Google's contacts and to-dos) that finds no change
    reads the connection's document, whose cursors it polls from, and the tenant's;
    it writes nothing and records no run."""
    crm_member(world, "Ada")
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()  # the echo of its create
    runs = len(world.runs())

    world.advance(timedelta(minutes=2))
    run = world.sync(trigger="poll")

    assert run["status"] == "idle"
    assert world.cost == {"reads": 2, "writes": 0}
    assert len(world.runs()) == runs


def test_a_connection_kept_before_its_crm_user_was_learns_it_once(world: SyncWorld) -> None:
    """A connection's record made before it kept the CRM user its user acts as: its
    next cycle reads the user's record for it and keeps it; the cycles after read only
    the tenant's and the connection's documents."""
    world.store.save_user_record(world.user, {"crm_user": world.user})
    world.store.save_connection_record(world.connection.id, {"crm_user": ""})
    crm_member(world, "Ada")
    world.sync()
    assert world.store.connection_record(world.connection.id)["crm_user"] == world.user
    world.advance(timedelta(minutes=5))
    world.sync()  # the echo of its create
    world.advance(timedelta(minutes=5))

    world.sync()

    assert world.cost["reads"] == 2


def test_a_cycle_of_k_changes_reads_each_changed_link_once(world: SyncWorld) -> None:
    """The reads of a cycle grow with its changes, not with the connection's links: the
    two documents of an idle cycle and one link per change."""
    ids = [crm_member(world, f"Person{n}") for n in range(40)]
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()
    for cid in ids[:10]:
        world.crm.update("contact", cid, {"title": "CTO"})
    world.advance(timedelta(minutes=5))

    run = world.sync()

    assert run["counts"] == {"contact": {"update": 10}}
    assert world.cost["reads"] <= 2 + 10 + 2  # + the mass-delete guard and the journal


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


@pytest.mark.parametrize("crash_after", [1, 3, 6, 9])
def test_SYN4_a_cycle_killed_mid_batch_converges_and_leaves_no_journal(
    world: SyncWorld, crash_after: int
) -> None:
    """A cycle journals its decisions in the connection's document (with its lease, in
    one write) before writing any of them; killed after any of its writes (creates on
    one side, updates on the other), the next cycles finish each journaled write once,
    and the journal is gone."""
    ids = [crm_member(world, name) for name in ("Ada", "Bob", "Cyd", "Dee")]
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()  # the echoes of its creates
    for n, cid in enumerate(ids):
        world.crm.update("contact", cid, {"title": f"T{n}"})
    for name in ("Eve", "Fay", "Gus", "Hal", "Ivy"):
        crm_member(world, name)
    world.advance(timedelta(minutes=5))
    world.crash_after(crash_after)

    assert world.sync()["status"] == "crashed"
    store: FirestoreStore = world.store  # type: ignore[assignment]
    assert len(journal_entries(store, world.connection.id)) == 9
    for _ in range(4):
        world.advance(timedelta(minutes=5))
        run = world.sync()
        if run["status"] == "ok" and not run["counts"]:
            break

    assert (run["status"], run["counts"]) == ("ok", {})
    contacts = world.provider.all("contact")
    assert len(contacts) == 9  # none twice
    titles = sorted(c.get("title") or "" for c in contacts)
    assert titles == [""] * 5 + ["T0", "T1", "T2", "T3"]
    assert [link["state"] for link in world.links("contact")] == ["linked"] * 9
    assert list(store._journal(world.connection.id).stream()) == []
    assert journal_entries(store, world.connection.id) == []
    assert world.store.journaled_links(world.connection.id) == []


def journal_entries(store: FirestoreStore, connection: str) -> list[Any]:
    """The journal the connection's document holds, as stored."""
    data = store._connection(connection).get().to_dict() or {}
    return list((data.get("journal") or {}).get("entries") or [])


def test_SYN4_a_cycle_of_k_changes_journals_them_in_one_write(world: SyncWorld) -> None:
    """The journal of a cycle's k decisions is written in the connection's document with
    the lease, before their writes, and cleared by the lease's release."""
    for n in range(30):
        crm_member(world, f"Person{n}")
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()
    ids = [link["crm_id"] for link in world.links("contact")]
    for cid in ids:
        world.crm.update("contact", cid, {"title": "CTO"})
    world.advance(timedelta(minutes=5))

    run = world.sync()

    assert run["counts"] == {"contact": {"update": 30}}
    # a link write each; the lease taken with the journal; the run with its items; the
    # release, which clears the journal
    assert world.cost["writes"] == 30 + 1 + 1 + 1


def test_RUN3_a_lease_taken_lazily_goes_to_the_worker_that_writes_first(
    firestore_client: Any,
) -> None:
    """Two workers take a free connection's lease lazily (neither has written it): the
    first write wins it, with its journal; the other's writes all fail as taken, write
    nothing, and its release gives nothing up. A worker in the same process as a lazy
    holder finds the connection held."""
    first, second = (FirestoreStore(firestore_client, "t-race") for _ in range(2))
    first.save_connection_record("c1", {"user": "u1", "provider": "google"})
    now = datetime.now(UTC)
    link = Link("contact-crm-1", "contact", "1", None, state="creating")
    assert first.acquire_lease("c1", "run-a", now, 120, lazy=True)
    assert second.acquire_lease("c1", "run-b", now, 120, lazy=True)
    assert first.lease_holder("c1") is None  # nothing written yet
    assert not first.acquire_lease("c1", "run-c", now, 120, lazy=True)

    second.journal_links("c1", [link])

    assert first.lease_holder("c1") == "run-b"
    with pytest.raises(LeaseTaken) as taken:
        first.journal_links("c1", [replace(link, key="contact-crm-2", crm_id="2")])
    assert taken.value.first
    with pytest.raises(LeaseTaken):
        first.save_link("c1", replace(link, key="contact-crm-3", crm_id="3"))
    assert first.release_lease("c1", "run-a") is None
    assert first.lease_holder("c1") == "run-b"
    assert [link.key for link in second.links("c1", "contact")] == []
    assert [link.key for link in first.journaled_links("c1")] == ["contact-crm-1"]
    assert not first.acquire_lease("c1", "run-a", now, 120, lazy=True)
    second.release_lease("c1", "run-b")
    assert first.lease_holder("c1") is None


def test_RUN3_a_trigger_meeting_a_lease_taken_lazily_here_asks_its_holder_again(
    firestore_client: Any,
) -> None:
    """A cycle that finds the connection taken lazily by another cycle of the same
    instance (its document shows no lease yet) asks that one for one cycle more, as it
    would a lease it can read: the holder's release answers the ask, written or not."""
    store = FirestoreStore(firestore_client, "t-ask")
    store.save_connection_record("c1", {"user": "u1", "provider": "google"})
    now = datetime.now(UTC)
    assert store.acquire_lease("c1", "run-a", now, 120, lazy=True)
    assert not store.acquire_lease("c1", "run-b", now, 120, lazy=True)

    expires = store.ask_again("c1", "push", now)

    assert expires is not None and expires > now
    assert store.ask_again("c1", "crm", now) == expires  # one more cycle is all it takes
    assert store.acquire_lease("c1", "run-a", now, 120, lazy=True)  # renewed, unwritten
    assert store.release_lease("c1", "run-a") == "push"


class _RacedStore(FirestoreStore):
    """Another worker's store over the same database, whose cycle has the connection
    taken from it by a whole other cycle (`race`) just after it read its links."""

    race: Any = None

    def links_for(self, *args: Any) -> list[Link]:
        found = super().links_for(*args)
        race, self.race = self.race, None
        if race is not None:
            race()
        return found


def test_RUN3_a_cycle_that_lost_the_lease_before_writing_starts_again(
    world: SyncWorld, firestore_client: Any
) -> None:
    """A cycle that took its lease lazily and finds, at its first write, that another
    worker's cycle took the connection meanwhile has written nothing: it starts again,
    reads what that cycle left, and ends well, with nothing applied twice and no lost
    lease in its history."""
    ids = [crm_member(world, name) for name in ("Ada", "Bob")]
    world.sync()
    world.advance(timedelta(minutes=5))
    world.sync()
    world.crm.update("contact", ids[0], {"title": "CTO"})
    world.advance(timedelta(minutes=5))
    cycle = world.cycle()
    store = _RacedStore(firestore_client, "t1")  # another worker's
    raced: list[dict[str, Any]] = []
    store.race = lambda: raced.append(world.sync())
    cycle.store = store

    run = cycle.run()

    assert [r["counts"] for r in raced] == [{"contact": {"update": 1}}]
    assert (run["status"], run["counts"], run["errors"]) == ("ok", {}, [])
    [contact] = [c for c in world.provider.all("contact") if c.get("title")]
    assert contact["title"] == "CTO"
    assert store.lease_holder(world.connection.id) is None


class _Watched:
    """The provider as a cycle writes to it, noting who held the lease at each create."""

    def __init__(self, provider: Any, store: FirestoreStore, connection: str) -> None:
        self._provider, self._store, self._connection = provider, store, connection
        self.holders: list[str | None] = []

    def create(self, write: Any) -> Any:
        self.holders.append(self._store.lease_holder(self._connection))
        return self._provider.create(write)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)


def test_SYN4_a_cycle_finishing_a_journal_writes_its_lease_before_resending_a_create(
    world: SyncWorld,
) -> None:
    """A lease taken lazily is written before the cycle sends again a create a killed
    run journaled: two cycles never finish the same journaled create at once."""
    for name in ("Ada", "Bob", "Cyd"):
        crm_member(world, name)
    world.crash_after(1)
    assert world.sync()["status"] == "crashed"
    world.advance(timedelta(seconds=121))  # the dead run's lease ran out
    cycle = world.cycle()
    watched = _Watched(cycle.provider, world.store, world.connection.id)  # type: ignore[arg-type]
    cycle.provider = watched  # type: ignore[assignment]

    run = cycle.run()

    assert run["status"] == "ok"
    assert watched.holders and set(watched.holders) == {cycle.run_id}
    assert len(world.provider.all("contact")) == 3
