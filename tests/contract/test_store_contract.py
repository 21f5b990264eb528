"""The Store contract: the memory store (unit tests) and the Firestore store (production,
here on Google's Firestore emulator) keep the same state the same way.

Every test runs against both backends; a backend is a MemoryBackend or FirestoreBackend,
whose `store(tenant)` is one tenant's store and whose `due` / `expiring_channels` are the
scheduler's queries across tenants. Channels, mailbox routes and OAuth states are global:
any tenant's store reaches them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

import pytest

from crmsync.auth.state import BadState, begin, finish
from crmsync.engine.plan import AccountSpec, Intent, Write
from crmsync.engine.records import Link
from crmsync.model import normalize
from crmsync.ports import Ask, Channel, ConnectionRecord, Due, NextDue, RunOutcome, RunStatus
from crmsync.store.firestore import TTL_FIELDS, FirestoreBackend, FirestoreStore
from crmsync.store.memory import MemoryBackend, MemoryStore

Backend: TypeAlias = MemoryBackend | FirestoreBackend
Store: TypeAlias = MemoryStore | FirestoreStore

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

ADA = normalize(
    "contact",
    {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "emails": ["Ada@Example.com", "ada@work.example"],
        "phones": [{"kind": "work", "number": "+44 20 7946 0018"}],
        "address": {"street": "12 St James's Square", "city": "London", "country": "GB"},
    },
)
MEETING = normalize(
    "activity",
    {
        "subject": "Planning",
        "start": "2026-11-03T10:00:00+01:00",
        "timezone": "Europe/Berlin",
        "members": ["u2", "u3"],
        "regarding": {"account": "acc-1"},
    },
)
DAY_OFF = normalize("activity", {"subject": "Away", "start": "2026-11-05", "all_day": True})
OPEN_TASK = normalize("todo", {"subject": "Call back", "due": "2026-11-06"})


@pytest.fixture(params=["memory", pytest.param("firestore", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    return FirestoreBackend(request.getfixturevalue("firestore_client"))


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store("t1")


def link(key: str, crm_id: str | None, provider_id: str | None, **kw: Any) -> Link:
    return Link(
        key=key, kind=kw.pop("kind", "contact"), crm_id=crm_id, provider_id=provider_id, **kw
    )


def channel(channel_id: str, tenant: str, connection: str, expires: datetime) -> Channel:
    return Channel(channel_id, tenant, connection, "google", f"res-{channel_id}", "d1g3st", expires)


# -- RUN-3: one cycle per connection at a time -------------------------------------------
def test_RUN3_a_free_lease_is_taken_and_another_holder_is_refused_while_it_runs(
    store: Store,
) -> None:
    assert store.lease_holder("c1") is None
    assert store.acquire_lease("c1", "run-1", NOW, 600)

    assert not store.acquire_lease("c1", "run-2", NOW + timedelta(seconds=599), 600)
    assert store.lease_holder("c1") == "run-1"


def test_RUN3_a_lease_ends_at_its_expiry_and_the_next_holder_takes_it(store: Store) -> None:
    assert store.acquire_lease("c1", "run-1", NOW, 600)

    assert store.acquire_lease("c1", "run-2", NOW + timedelta(seconds=600), 600)
    assert store.lease_holder("c1") == "run-2"


def test_RUN3_the_holder_renews_its_lease(store: Store) -> None:
    assert store.acquire_lease("c1", "run-1", NOW, 600)
    assert store.acquire_lease("c1", "run-1", NOW + timedelta(seconds=500), 600)

    assert not store.acquire_lease("c1", "run-2", NOW + timedelta(seconds=700), 600)
    assert store.acquire_lease("c1", "run-2", NOW + timedelta(seconds=1100), 600)


def test_RUN3_only_the_holder_releases_the_lease(store: Store) -> None:
    assert store.acquire_lease("c1", "run-1", NOW, 600)

    store.release_lease("c1", "run-2")
    assert store.lease_holder("c1") == "run-1"
    assert not store.acquire_lease("c1", "run-3", NOW + MINUTE, 600)

    store.release_lease("c1", "run-1")
    assert store.lease_holder("c1") is None
    assert store.acquire_lease("c1", "run-3", NOW + MINUTE, 600)
    store.release_lease("c2", "run-1")  # nothing held: nothing happens


def test_RUN3_a_cycle_finding_the_connection_held_asks_the_holder_for_one_more(
    store: Store,
) -> None:
    assert store.acquire_lease("c1", "run-1", NOW, 600)
    expires = NOW + timedelta(seconds=600)

    assert store.ask_again("c1", "push", NOW + MINUTE) == expires
    assert store.ask_again("c1", "crm", NOW + MINUTE) == expires  # one more is all it takes
    assert store.acquire_lease("c1", "run-1", NOW + 2 * MINUTE, 600)  # renewing keeps it
    assert store.asked("c1") == Ask("push", expires + 2 * MINUTE)

    assert store.release_lease("c1", "run-1") == "push"
    assert store.asked("c1") is None  # answered
    assert store.acquire_lease("c1", "run-2", NOW + 3 * MINUTE, 600)
    assert store.release_lease("c1", "run-2") is None  # it was asked of run-1 only


def test_RUN3_an_ask_needs_a_running_lease_and_outlives_a_holder_that_died(
    store: Store,
) -> None:
    assert store.ask_again("c1", "push", NOW) is None  # nobody holds it: take it yourself
    assert store.acquire_lease("c1", "run-1", NOW, 600)
    assert store.ask_again("c1", "push", NOW + MINUTE)

    later = NOW + timedelta(seconds=600)  # run-1 died; its lease ran out unreleased
    assert store.ask_again("c1", "crm", later) is None
    assert store.asked("c1") == Ask("push", later)  # still owed
    assert store.acquire_lease("c1", "run-2", later, 600)  # starts after the ask: covers it
    assert store.asked("c1") is None
    assert store.release_lease("c1", "run-2") is None


def test_RUN3_leases_are_per_connection_and_per_tenant(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    assert t1.acquire_lease("c1", "run-1", NOW, 600)

    assert t1.acquire_lease("c2", "run-2", NOW, 600)
    assert t2.acquire_lease("c1", "run-3", NOW, 600)
    assert t1.lease_holder("c1") == "run-1"


# -- the lease holder's view of its connection: one read of it per cycle ----------------------
def another_worker(backend: Backend) -> Store:
    """The same tenant's store as another function instance holds it: for Firestore a
    store of its own over the same database (nothing it knows is shared), for memory
    the one store there is."""
    if isinstance(backend, MemoryBackend):
        return backend.store("t1")
    return FirestoreBackend(backend.client).store("t1")


def test_RUN3_each_holder_reads_the_cursors_and_retries_the_last_holder_left(
    backend: Backend,
) -> None:
    a, b = backend.store("t1"), another_worker(backend)
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    a.save_cursor("c1", "crm", "contact", "crm-1")
    a.set_retries("c1", "contact", {("provider", "p-7")})
    assert a.cursor("c1", "crm", "contact") == "crm-1"  # its own writes, as it knows them
    assert a.retries("c1", "contact") == {("provider", "p-7")}
    a.release_lease("c1", "run-1")

    assert b.acquire_lease("c1", "run-2", NOW + MINUTE, 600)
    assert b.cursor("c1", "crm", "contact") == "crm-1"
    assert b.retries("c1", "contact") == {("provider", "p-7")}
    b.save_cursor("c1", "crm", "contact", "crm-2")
    b.set_retries("c1", "contact", set())
    b.release_lease("c1", "run-2")

    assert a.acquire_lease("c1", "run-3", NOW + 2 * MINUTE, 600)  # what it knew is old
    assert a.cursor("c1", "crm", "contact") == "crm-2"
    assert a.retries("c1", "contact") == set()
    a.release_lease("c1", "run-3")
    assert b.cursor("c1", "crm", "contact") == "crm-2"  # outside a lease: read


@pytest.mark.integration
def test_SYN5_records_a_user_asked_to_sync_again_stay_when_the_holder_sets_its_retries(
    firestore_client: Any,
) -> None:
    """Firestore only: the lease holder answers its retries from what it read as it took
    the lease, and another instance (the web app's) may add some meanwhile. (The memory
    store is one store for every caller: there is no other view to fall behind.)"""
    a, app = (
        FirestoreBackend(firestore_client).store("t1"),
        another_worker(FirestoreBackend(firestore_client)),
    )
    app.set_retries("c1", "contact", {("crm", "c-1")})
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    assert a.retries("c1", "contact") == {("crm", "c-1")}

    asked = app.retries("c1", "contact") | {("provider", "p-9")}  # "sync again" meanwhile
    app.set_retries("c1", "contact", asked)
    a.set_retries("c1", "contact", {("crm", "c-2")})  # c-1 done, c-2 failed this cycle
    a.release_lease("c1", "run-1")

    assert app.retries("c1", "contact") == {("crm", "c-2"), ("provider", "p-9")}


def test_SYN4_a_holder_that_died_leaves_the_cursors_it_started_from(
    backend: Backend,
) -> None:
    """The holder's cursors go with its release, in the same write: one that dies
    first moved none, so the next cycle reads those changes again (and finds them
    applied, by version)."""
    a, b = backend.store("t1"), another_worker(backend)
    a.save_cursor("c1", "provider", "todo", "t-0")
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    a.save_cursor("c1", "provider", "todo", "t-1")  # then its worker died: no release
    assert a.cursor("c1", "provider", "todo") == "t-1"

    assert b.acquire_lease("c1", "run-2", NOW + 11 * MINUTE, 600)
    assert b.cursor("c1", "provider", "todo") == "t-0"
    b.save_cursor("c1", "provider", "todo", "t-2")
    b.release_lease("c1", "run-2")
    assert a.connection_record("c1") is None  # (the dead run's instance looks again)
    assert a.cursor("c1", "provider", "todo") == "t-2"


def test_RUN2_fields_of_the_connection_record_go_with_the_lease_taken_and_given_up(
    store: Store,
) -> None:
    store.save_connection_record("c1", {"user": "u1", "provider": "google"})
    running = {"id": "run-1", "status": "running", "trigger": "push", "started": NOW}
    assert store.acquire_lease("c1", "run-1", NOW, 600, {"last_run": running})
    assert (store.connection_record("c1") or {})["last_run"] == running

    ended = {**running, "status": "ok", "ended": NOW + MINUTE}
    store.release_lease("c1", "run-1", {"last_run": ended, "health": "ok"})
    record = store.connection_record("c1") or {}
    assert (record["last_run"], record["health"], record["user"]) == (ended, "ok", "u1")
    assert store.lease_holder("c1") is None


def test_SYN4_a_journal_left_by_a_holder_that_died_is_found_by_the_next_and_then_not(
    backend: Backend,
) -> None:
    a, b = backend.store("t1"), another_worker(backend)
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    assert a.journaled_links("c1") == []
    a.release_lease("c1", "run-1")  # a clean release: the next holder needs no look

    assert b.acquire_lease("c1", "run-2", NOW + MINUTE, 600)
    assert b.journaled_links("c1") == []
    b.save_link("c1", link("k1", "crm-1", None, state="creating"))  # died here

    assert a.acquire_lease("c1", "run-3", NOW + 12 * MINUTE, 600)
    assert [x.key for x in a.journaled_links("c1")] == ["k1"]
    a.save_link("c1", link("k2", None, "p-2", kind="todo", state="applying"))
    a.save_link("c1", link("k1", "crm-1", "p-1"))  # k1 settled; k2 left journaled
    a.release_lease("c1", "run-3")

    assert b.acquire_lease("c1", "run-4", NOW + 13 * MINUTE, 600)
    assert [x.key for x in b.journaled_links("c1")] == ["k2"]
    b.delete_link("c1", "todo", "k2")
    b.release_lease("c1", "run-4")

    assert a.acquire_lease("c1", "run-5", NOW + 14 * MINUTE, 600)
    assert a.journaled_links("c1") == []


def test_SYN4_links_journaled_at_once_are_found_until_each_is_settled(
    backend: Backend,
) -> None:
    """A cycle journals a batch of links in one write before their writes: a holder
    that dies leaves those it did not settle, and the next finds exactly those; one
    journaled again is read once; a failure left journaled is found after a release."""
    a, b = backend.store("t1"), another_worker(backend)
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    assert a.journaled_links("c1") == []
    a.save_link("c1", link("k3", "crm-3", "p-3"))
    journaled = [
        link("k1", "crm-1", None, state="creating"),
        link("k2", "crm-2", None, state="creating"),
        link("k3", "crm-3", "p-3", state="applying"),
    ]
    a.journal_links("c1", journaled)
    a.save_link("c1", link("k1", "crm-1", "p-1"))  # settled; then its worker died

    assert b.acquire_lease("c1", "run-2", NOW + 11 * MINUTE, 600)
    assert sorted(x.key for x in b.journaled_links("c1")) == ["k2", "k3"]
    b.journal_links("c1", [link("k3", "crm-3", "p-3", state="applying")])  # once more
    b.save_link("c1", link("k2", "crm-2", "p-2"))  # k3's write failed: left journaled
    b.release_lease("c1", "run-2")

    assert a.acquire_lease("c1", "run-3", NOW + 12 * MINUTE, 600)
    assert [x.key for x in a.journaled_links("c1")] == ["k3"]
    a.delete_link("c1", "contact", "k3")
    a.release_lease("c1", "run-3")

    assert b.acquire_lease("c1", "run-4", NOW + 13 * MINUTE, 600)
    assert b.journaled_links("c1") == []
    assert [x.key for x in b.links("c1", "contact")] == ["k1", "k2"]


def test_SYN2_the_holder_sees_the_queue_as_the_user_and_other_holders_left_it(
    backend: Backend,
) -> None:
    a, b = backend.store("t1"), another_worker(backend)
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    assert a.queue("c1") == []
    a.put_queue_item("c1", queue_item("k1"))
    a.put_queue_item("c1", queue_item("k2"))
    assert [i["id"] for i in a.queue("c1")] == ["k1", "k2"]
    a.release_lease("c1", "run-1")

    app = another_worker(backend)  # the user answers in the web app
    app.resolve_queue_item("c1", "k2", choice="crm")
    assert b.acquire_lease("c1", "run-2", NOW + MINUTE, 600)
    assert [(i["id"], i["choice"]) for i in b.queue("c1")] == [("k1", None), ("k2", "crm")]
    b.drop_queue_item("c1", "k2")  # applied
    b.release_lease("c1", "run-2")

    app.drop_queue_item("c1", "k1")  # a reset of the kind, outside any cycle
    assert a.acquire_lease("c1", "run-3", NOW + 2 * MINUTE, 600)
    assert a.queue("c1") == []
    a.release_lease("c1", "run-3")
    assert b.acquire_lease("c1", "run-4", NOW + 3 * MINUTE, 600)
    b.put_queue_item("c1", queue_item("k3"))
    b.release_lease("c1", "run-4")
    assert a.acquire_lease("c1", "run-5", NOW + 4 * MINUTE, 600)
    assert [i["id"] for i in a.queue("c1")] == ["k3"]


# -- cursors ------------------------------------------------------------------------------
def test_cursors_are_kept_per_side_and_kind_and_can_be_forgotten(store: Store) -> None:
    store.save_cursor("c1", "crm", "contact", "crm-cursor-1")
    store.save_cursor("c1", "provider", "contact", "sync/token==")
    store.save_cursor("c1", "crm", "contact", "crm-cursor-2")

    assert store.cursor("c1", "crm", "contact") == "crm-cursor-2"
    assert store.cursor("c1", "provider", "contact") == "sync/token=="
    assert store.cursor("c1", "crm", "activity") is None
    assert store.cursor("c2", "crm", "contact") is None

    store.forget_cursor("c1", "crm", "contact")
    store.forget_cursor("c1", "crm", "todo")  # never saved: nothing to forget
    assert store.cursor("c1", "crm", "contact") is None
    assert store.cursor("c1", "provider", "contact") == "sync/token=="


# -- links ---------------------------------------------------------------------------------
def test_SYN4_a_journaled_create_round_trips_with_every_field(store: Store) -> None:
    create = Write(
        side="provider",
        op="create",
        kind="contact",
        fields=ADA,
        key="k-ada",
        ref="crm-1",
        in_scope=True,
        account=AccountSpec("Analytical Engines", type="Customer"),
        notify=True,
        prior={"emails": ("old@example.com",), "notes": None},
    )
    saved = link(
        "k-ada",
        "crm-1",
        None,
        crm_version="7",
        base=ADA,
        state="creating",
        pending=create,
        note="first seen in the CRM",
    )

    store.save_link("c1", saved)

    assert store.links_for("c1", "contact", ["crm-1"], []) == [saved]
    assert store.journaled_links("c1") == [saved]
    [back] = store.links("c1", "contact")
    assert back.pending == create and back.base == ADA
    assert isinstance(back.base["emails"], tuple)


def test_SYN4_a_journaled_intent_round_trips(store: Store) -> None:
    before = link(
        "k-meet",
        "crm-2",
        "ev-2",
        kind="activity",
        crm_version="4",
        provider_version='"3181161784712000"',
        base=MEETING,
    )
    writes = (
        Write(
            "crm", "update", "activity", target="crm-2", fields={"subject": "Moved"}, version="4"
        ),
        Write("provider", "delete", "activity", target="ev-2", prior={"start": MEETING["start"]}),
    )
    journaled = Link(
        before.key,
        "activity",
        before.crm_id,
        before.provider_id,
        before.crm_version,
        before.provider_version,
        {**MEETING, "subject": "Moved"},
        "applying",
        Intent(before, writes, keeps_link=True),
    )

    store.save_link("c1", journaled)

    assert store.links_for("c1", "activity", [], ["ev-2"]) == [journaled]
    [back] = store.journaled_links("c1")
    assert back == journaled
    assert back.pending.previous.base["start"] == datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def test_links_keep_dates_times_and_nested_values_of_every_kind(store: Store) -> None:
    saved = [
        link("k-day", "crm-3", "ev-3", kind="activity", base=DAY_OFF),
        link("k-todo", "crm-4", "task-4", kind="todo", base=OPEN_TASK),
        link("k-odd", "crm-5", "p-5", base={"x": [[1, 2], (3, "4")], "when": date(2026, 1, 2)}),
    ]
    for one in saved:
        store.save_link("c1", one)

    assert list(store.links("c1", "activity")) == [saved[0]]
    assert list(store.links("c1", "todo")) == [saved[1]]
    [odd] = store.links("c1", "contact")
    assert odd.base == {"x": [[1, 2], (3, "4")], "when": date(2026, 1, 2)}
    assert DAY_OFF["start"] == date(2026, 11, 5)
    assert store.links_for("c1", "activity", ["crm-3"], [])[0].base["start"] == date(2026, 11, 5)


def test_links_are_found_by_either_side_once_each(store: Store) -> None:
    ada = link("k1", "crm-1", "p-1", base=ADA)
    bob = link("k2", "crm-2", "p-2")
    store.save_link("c1", ada)
    store.save_link("c1", bob)

    assert store.links_for("c1", "contact", ["crm-1"], []) == [ada]
    assert store.links_for("c1", "contact", [], ["p-2"]) == [bob]
    assert store.links_for("c1", "contact", ["crm-1", "crm-2"], ["p-1"]) == [ada, bob]
    assert store.links_for("c1", "contact", ["crm-9"], ["p-9"]) == []
    assert store.links_for("c1", "activity", ["crm-1"], ["p-1"]) == []
    assert store.links_for("c2", "contact", ["crm-1"], ["p-1"]) == []


def test_a_link_whose_ids_change_is_found_by_its_new_ids_only(store: Store) -> None:
    first = link("k1", "crm-1", "p-1")
    store.save_link("c1", first)

    moved = first.with_side("crm", "crm-2", "1").with_side("provider", None, None)
    store.save_link("c1", moved)

    assert store.links_for("c1", "contact", ["crm-1"], ["p-1"]) == []
    assert store.links_for("c1", "contact", ["crm-2"], []) == [moved]
    assert list(store.links("c1", "contact")) == [moved]


def test_an_id_several_links_hold_finds_the_link_saved_last(store: Store) -> None:
    holders = [link(f"k{n}", "crm-1", f"p-{n}") for n in range(5)]
    for one in holders:
        store.save_link("c1", one)

    for last in (holders[2], holders[0], holders[4], holders[1], holders[3]):
        store.save_link("c1", last)
        assert store.links_for("c1", "contact", ["crm-1"], []) == [last]
    assert store.links_for("c1", "contact", ["crm-1"], ["p-0"]) == [holders[3], holders[0]]


def test_a_deleted_link_is_found_no_more(store: Store) -> None:
    store.save_link("c1", link("k1", "crm-1", "p-1"))
    store.save_link("c1", link("k1", "crm-a", "p-a", kind="activity"))

    store.delete_link("c1", "contact", "k1")
    store.delete_link("c1", "contact", "k-never-saved")

    assert store.links_for("c1", "contact", ["crm-1"], ["p-1"]) == []
    assert list(store.links("c1", "contact")) == []
    assert store.linked_count("c1", "contact") == 0
    assert [x.key for x in store.links("c1", "activity")] == ["k1"]


def test_links_list_every_link_of_the_kind_in_the_order_first_saved(store: Store) -> None:
    keys = ["k3", "k7", "k1", "k6", "k2", "k8", "k5", "k4"]
    for key in keys:
        store.save_link("c1", link(key, f"crm-{key}", f"p-{key}"))
    store.save_link("c1", link("k3", "crm-k3", "p-k3", crm_version="2"))
    store.save_link("c1", link("k9", "crm-k9", None, kind="todo"))

    assert [x.key for x in store.links("c1", "contact")] == keys
    assert [x.crm_version for x in store.links("c1", "contact")][:2] == ["2", None]


def test_links_for_finds_more_ids_than_one_query_takes(store: Store) -> None:
    saved = [link(f"k{n}", f"crm-{n}", f"p-{n}") for n in range(45)]
    for one in saved:
        store.save_link("c1", one)

    wanted = [f"crm-{n}" for n in reversed(range(45))]
    assert store.links_for("c1", "contact", wanted, []) == saved[::-1]


def test_a_cycle_with_k_changes_reads_O_k_links_not_the_table(store: Store) -> None:
    for n in range(200):
        store.save_link("c1", link(f"k{n}", f"crm-{n}", f"p-{n}"))
    before = store.reads

    found = store.links_for("c1", "contact", ["crm-7"], ["p-150"])

    assert [x.key for x in found] == ["k7", "k150"]
    assert store.reads - before <= 2 * 2  # two ids: at most two reads each, of 200 links


def test_journaled_links_are_the_creating_and_applying_links_of_the_connection(
    store: Store,
) -> None:
    states = ("linked", "creating", "applying", "conflict", "detached")
    for n, state in enumerate(states):
        store.save_link("c1", link(f"k{n}", f"crm-{n}", f"p-{n}", state=state))
    store.save_link("c1", link("k-act", "crm-a", None, kind="activity", state="creating"))
    store.save_link("c2", link("k-other", "crm-o", None, state="creating"))

    assert sorted(x.key for x in store.journaled_links("c1")) == ["k-act", "k1", "k2"]


def test_SYN6_the_linked_count_follows_each_holders_links_and_is_counted_again_after_a_death(
    backend: Backend,
) -> None:
    """The lease holder keeps the count as its links change, so a cycle among many links
    counts none of them (Firestore: no read); a holder that died without giving the
    lease up leaves the count to be made again."""
    a, b = backend.store("t1"), another_worker(backend)
    assert a.acquire_lease("c1", "run-1", NOW, 600)
    for n in range(4):
        a.save_link("c1", link(f"k{n}", f"crm-{n}", f"p-{n}"))
    a.save_link("c1", link("k-new", "crm-9", None, state="creating"))
    assert a.linked_count("c1", "contact") == 4  # counted: nothing known before
    a.release_lease("c1", "run-1")

    assert b.acquire_lease("c1", "run-2", NOW + MINUTE, 600)
    [old] = b.links_for("c1", "contact", ["crm-0"], [])
    b.save_link("c1", link("k-new", "crm-9", "p-9"))  # its create finished: linked
    b.save_link("c1", link("k5", "crm-5", "p-5", state="conflict"))
    b.delete_link("c1", "contact", old.key)
    reads = b.reads
    assert b.linked_count("c1", "contact") == 5
    assert b.linked_count("c1", "activity") == 0
    if isinstance(b, FirestoreStore):
        assert b.reads - reads == 1  # the contact count known; the activity one counted
    b.release_lease("c1", "run-2")

    assert a.acquire_lease("c1", "run-3", NOW + 2 * MINUTE, 600)
    reads = a.reads
    assert (a.linked_count("c1", "contact"), a.linked_count("c1", "activity")) == (5, 0)
    if isinstance(a, FirestoreStore):
        assert a.reads == reads
    a.save_link("c1", link("k6", "crm-6", "p-6"))  # then its worker died

    assert b.acquire_lease("c1", "run-4", NOW + 13 * MINUTE, 600)
    assert b.linked_count("c1", "contact") == 6
    b.release_lease("c1", "run-4")
    app = another_worker(backend)
    app.delete_link("c1", "contact", "k6")  # a reset of the kind, outside any cycle
    assert a.acquire_lease("c1", "run-5", NOW + 14 * MINUTE, 600)
    assert a.linked_count("c1", "contact") == 5


def test_linked_count_counts_linked_and_conflict_links_of_the_kind(store: Store) -> None:
    states = ("linked", "creating", "applying", "conflict", "detached", "linked")
    for n, state in enumerate(states):
        store.save_link("c1", link(f"k{n}", f"crm-{n}", f"p-{n}", state=state))
    store.save_link("c1", link("k-act", "crm-a", "ev-a", kind="activity"))
    store.save_link("c2", link("k-other", "crm-o", "p-o"))

    assert store.linked_count("c1", "contact") == 3
    assert store.linked_count("c1", "activity") == 1
    assert store.linked_count("c1", "todo") == 0


# -- SYN-5: records to read again next cycle -----------------------------------------------
def test_SYN5_retries_are_kept_per_kind_and_cleared(store: Store) -> None:
    pending: set[tuple[Any, str]] = {("crm", "crm-1"), ("provider", "people/c9:x")}
    assert store.retries("c1", "contact") == set()

    store.set_retries("c1", "contact", pending)
    store.set_retries("c1", "todo", {("crm", "t-1")})

    assert store.retries("c1", "contact") == pending
    assert store.retries("c1", "activity") == set()
    store.set_retries("c1", "contact", set())
    assert store.retries("c1", "contact") == set()
    assert store.retries("c1", "todo") == {("crm", "t-1")}


# -- SYN-2 / SET-5: the queue --------------------------------------------------------------
def queue_item(item_id: str, reason: str = "conflict", **kw: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "kind": "contact",
        "reason": reason,
        "source": None,
        "crm_id": "crm-1",
        "provider_id": "p-1",
        "fields": ["title", "emails"],
        "summary": "Title differs",
        "crm_values": {"title": "CTO", "emails": ("ada@example.com",)},
        "provider_values": {"title": "CEO", "emails": ()},
        "created": NOW,
        "run": "run-1",
        **kw,
    }


def test_SET5_queue_items_round_trip_in_the_order_first_put(store: Store) -> None:
    store.put_queue_item("c1", queue_item("k2"))
    store.put_queue_item("c1", queue_item("k1", reason="confirm_new", source="provider"))
    store.put_queue_item("c1", queue_item("k2", summary="Title differs again"))

    assert store.queue("c1") == [
        {**queue_item("k2", summary="Title differs again"), "choice": None, "picks": None},
        {
            **queue_item("k1", reason="confirm_new", source="provider"),
            "choice": None,
            "picks": None,
        },
    ]
    assert store.queue("c2") == []

    store.drop_queue_item("c1", "k2")
    store.drop_queue_item("c1", "k-never")
    assert [i["id"] for i in store.queue("c1")] == ["k1"]


def test_SYN2_a_choice_stays_while_the_reason_is_the_same_and_goes_when_it_changes(
    store: Store,
) -> None:
    store.put_queue_item("c1", queue_item("k1"))
    store.resolve_queue_item("c1", "k1", "crm")
    assert store.queue("c1")[0]["choice"] == "crm"

    store.put_queue_item("c1", queue_item("k1", summary="Title differs, still"))
    assert store.queue("c1")[0]["choice"] == "crm"

    store.put_queue_item("c1", queue_item("k1", reason="confirm_modified", choice="crm"))
    assert store.queue("c1")[0]["choice"] is None


def test_SYN2_picks_per_field_are_kept_like_a_choice_and_each_replaces_the_other(
    store: Store,
) -> None:
    picks = {"title": "provider", "custom.industry": "crm"}  # a dot is no path here
    store.put_queue_item("c1", queue_item("k1", fields=["title", "custom.industry"]))

    store.resolve_queue_item("c1", "k1", picks=picks)
    assert (store.queue("c1")[0]["choice"], store.queue("c1")[0]["picks"]) == (None, picks)

    store.put_queue_item("c1", queue_item("k1", summary="Title differs, still"))
    assert store.queue("c1")[0]["picks"] == picks

    store.resolve_queue_item("c1", "k1", "crm")
    assert (store.queue("c1")[0]["choice"], store.queue("c1")[0]["picks"]) == ("crm", None)

    store.resolve_queue_item("c1", "k1", picks=picks)
    store.put_queue_item("c1", queue_item("k1", reason="confirm_modified"))
    assert (store.queue("c1")[0]["choice"], store.queue("c1")[0]["picks"]) == (None, None)


def test_SYN2_resolving_an_item_not_in_the_queue_is_an_error(store: Store) -> None:
    with pytest.raises(KeyError):
        store.resolve_queue_item("c1", "k-missing", "provider")


# -- EML-5: messages the user filed to records they chose ---------------------------------
def filing(filing_id: str, asked: datetime, **kw: Any) -> dict[str, Any]:
    return {
        "id": filing_id,
        "asked": asked,
        "messages": ["m-1", "m-2"],
        "records": [{"kind": "contact", "id": "c-7", "name": "Ada Lovelace"}],
        **kw,
    }


def test_EML5_filings_round_trip_oldest_first_up_to_the_limit(store: Store) -> None:
    store.put_filing("c1", filing("f2", NOW + MINUTE))
    store.put_filing("c1", filing("f1", NOW, messages=["m-3"]))
    store.put_filing("c1", filing("f3", NOW + HOUR))
    store.put_filing("c2", filing("f9", NOW))

    assert store.filings("c1", 10) == [
        filing("f1", NOW, messages=["m-3"]),
        filing("f2", NOW + MINUTE),
        filing("f3", NOW + HOUR),
    ]
    assert [f["id"] for f in store.filings("c1", 2)] == ["f1", "f2"]

    store.drop_filing("c1", "f1")
    store.drop_filing("c1", "f-never")
    assert [f["id"] for f in store.filings("c1", 10)] == ["f2", "f3"]
    assert [f["id"] for f in store.filings("c2", 10)] == ["f9"]


# -- HIS-1: runs and their items -----------------------------------------------------------
def run_record(run_id: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": run_id,
        "connection": "c1",
        "tenant": "t1",
        "trigger": "schedule",
        "started": NOW,
        "ended": None,
        "status": "running",
        "counts": {},
        "errors": [],
        **kw,
    }


def history_item(n: int) -> dict[str, Any]:
    return {
        "kind": "contact",
        "outcome": "update",
        "direction": "to_provider",
        "crm_id": f"crm-{n}",
        "provider_id": f"p-{n}",
        "reason": "changed in the CRM",
        "fields": ["emails"],
        "changes": {"emails": [["old@example.com"], [f"new{n}@example.com"]]},
        "error": None,
        "at": NOW + timedelta(seconds=n),
    }


def test_HIS1_runs_round_trip_in_the_order_first_saved(store: Store) -> None:
    finished = run_record(
        "run-1",
        ended=NOW + MINUTE,
        status="partial",
        counts={"contact": {"update": 2, "fail": 1}},
        errors=["TransientError: try later"],
        pending=["todo"],
        retry_after=30.5,
    )
    store.save_run("c1", run_record("run-1"))
    store.save_run("c1", run_record("run-2", started=NOW + MINUTE))
    store.save_run("c1", finished)

    assert store.runs("c1") == [finished, run_record("run-2", started=NOW + MINUTE)]
    assert store.runs("c2") == []


@pytest.mark.parametrize("count", [3, 450])
def test_HIS1_a_run_saved_with_its_items_keeps_both_and_lists_no_items(
    store: Store, count: int
) -> None:
    """A cycle's history is one write where its items fit one document (Firestore: in
    the run's own), and item documents where they do not; either way the run reads as
    the run, and its items, in order, as its items."""
    finished = run_record("run-1", ended=NOW + MINUTE, status="ok")
    many = [history_item(n) for n in range(count)]

    store.save_run("c1", finished, many)

    assert store.runs("c1") == [finished]
    assert store.items("c1", "run-1") == many
    assert store.items("c1", "run-2") == []


def test_RUN2_a_run_whose_worker_died_is_marked_interrupted_once_and_a_finished_one_never(
    store: Store,
) -> None:
    store.save_run("c1", run_record("run-1", errors=["kept"]))  # stored while running
    store.save_run("c1", run_record("run-2", ended=NOW + MINUTE, status="ok"))
    never_stored = run_record("run-3", started=NOW + 2 * MINUTE)  # its record shows it

    assert store.interrupt_run("c1", run_record("run-1"), NOW + 3 * MINUTE) is True
    assert store.interrupt_run("c1", run_record("run-1"), NOW + 4 * MINUTE) is False  # once
    assert store.interrupt_run("c1", run_record("run-2"), NOW + 3 * MINUTE) is False  # it ended
    assert store.interrupt_run("c1", never_stored, NOW + 5 * MINUTE) is True
    assert store.interrupt_run("c1", never_stored, NOW + 6 * MINUTE) is False  # once

    first, second, third = store.runs("c1")
    assert (first["status"], first["ended"]) == ("interrupted", NOW + 3 * MINUTE)
    assert first["errors"][0] == "kept" and "worker stopped" in first["errors"][1]
    assert (second["status"], second["ended"]) == ("ok", NOW + MINUTE)
    assert (third["id"], third["status"], third["trigger"]) == ("run-3", "interrupted", "schedule")
    assert (third["started"], third["ended"]) == (NOW + 2 * MINUTE, NOW + 5 * MINUTE)


def test_RUN3_a_nonce_is_claimed_once_across_tenants_until_released(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")

    assert t1.claim_nonce("crm-event:t=1,v1=ab", NOW + MINUTE) is True
    assert t2.claim_nonce("crm-event:t=1,v1=ab", NOW + MINUTE) is False  # global
    assert t1.claim_nonce("crm-event:t=1,v1=cd", NOW + MINUTE) is True
    t2.release_nonce("crm-event:t=1,v1=ab")
    assert t1.claim_nonce("crm-event:t=1,v1=ab", NOW + MINUTE) is True


def test_CAL6_the_tenant_record_keeps_who_syncs_one_user_at_a_time(store: Store) -> None:
    store.save_tenant_record({"name": "T1", "settings": {"window_days": 7}})

    store.mark_syncing("u1", True)
    store.mark_syncing("u2", True)
    store.mark_syncing("u3", True)
    store.mark_syncing("u2", False)
    store.mark_syncing("u9", False)  # never synced: nothing to forget

    record = store.tenant_record()
    assert record is not None
    assert record["syncing"] == {"u1": True, "u3": True}
    assert (record["name"], record["settings"]) == ("T1", {"window_days": 7})


def test_HIS1_items_are_appended_in_order(store: Store) -> None:
    store.save_run("c1", run_record("run-1"))
    store.add_items("c1", "run-1", [history_item(1), history_item(2)])
    store.add_items("c1", "run-1", [history_item(3)])
    store.add_items("c1", "run-1", [])

    assert store.items("c1", "run-1") == [history_item(1), history_item(2), history_item(3)]
    assert store.items("c1", "run-2") == []


def test_HIS1_more_items_than_one_commit_holds_are_all_kept(store: Store) -> None:
    many = [history_item(n) for n in range(501)]

    store.add_items("c1", "run-1", many)

    assert store.items("c1", "run-1") == many
    store.erase_connection("c1")
    assert store.items("c1", "run-1") == []


def test_HIS1_a_cycles_items_are_written_many_to_a_document(firestore_client: Any) -> None:
    """k history items cost k / 200 document writes, not k; items stored one to a
    document, as they were before, are read with them."""
    store = FirestoreBackend(firestore_client).store("t1")
    many = [history_item(n) for n in range(450)]
    writes = store.writes

    store.add_items("c1", "run-1", many)

    assert store.writes - writes == 3
    older = {**history_item(7), "changes": {"title": ["Mr", "Dr"]}}  # stored as it was
    store._items("c1", "run-0").document().set({**older, "seq": 0, "expire_at": NOW})
    assert store.items("c1", "run-1") == many
    assert store.items("c1", "run-0") == [older]


def test_AUTH6_live_connections_are_counted_without_reading_each(store: Store) -> None:
    """The seats taken: connections not disconnected, needs_reauth ones included,
    counted in one read per 1,000 whatever their number."""
    for n in range(5):
        store.save_connection_record(f"google-u{n}", {"user": f"u{n}", "status": "active"})
    store.set_status("google-u1", "disconnected")
    store.set_status("google-u2", "needs_reauth", "invalid_grant")
    reads = store.reads

    assert store.live_connections() == 4
    assert store.reads - reads <= 2
    assert store.live_connections() == sum(
        1 for r in store.connection_records() if r["status"] != "disconnected"
    )


# -- RUN-5: push channels ------------------------------------------------------------------
def test_RUN5_a_channel_is_found_by_its_id_from_any_tenant(backend: Backend) -> None:
    saved = channel("ch/1", "t1", "c1", NOW + timedelta(days=7))
    backend.store("t1").save_channel(saved)

    assert backend.store("t2").channel("ch/1") == saved
    assert backend.store("t1").channel("ch-unknown") is None

    backend.store("t1").drop_channel("ch/1")
    assert backend.store("t1").channel("ch/1") is None
    assert backend.store("t1").channels_of("c1") == []


def test_RUN5_channels_of_lists_this_tenants_channels_of_the_connection(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    mine = [channel(f"ch-{n}", "t1", "c1", NOW + timedelta(days=n)) for n in (1, 2)]
    for one in mine:
        t1.save_channel(one)
    t1.save_channel(channel("ch-3", "t1", "c2", NOW))
    t2.save_channel(channel("ch-4", "t2", "c1", NOW))

    assert sorted(t1.channels_of("c1"), key=lambda c: c.id) == mine
    assert [c.id for c in t2.channels_of("c1")] == ["ch-4"]


def test_RUN5_expiring_channels_come_soonest_first_up_to_the_limit(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    t1.save_channel(channel("ch-b", "t1", "c1", NOW + timedelta(hours=1)))
    t2.save_channel(channel("ch-a", "t2", "c1", NOW + timedelta(hours=1)))
    t1.save_channel(channel("ch-c", "t1", "c2", NOW + timedelta(hours=2)))
    t2.save_channel(channel("ch-d", "t2", "c2", NOW + timedelta(days=3)))
    before = NOW + timedelta(days=1)

    assert [c.id for c in backend.expiring_channels(before, 10)] == ["ch-a", "ch-b", "ch-c"]
    assert [c.id for c in backend.expiring_channels(before, 2)] == ["ch-a", "ch-b"]
    assert backend.expiring_channels(NOW + timedelta(hours=1), 10) == []
    [soonest] = backend.expiring_channels(before, 1)
    assert soonest == channel("ch-a", "t2", "c1", NOW + timedelta(hours=1))


def test_EML1_mailbox_watches_that_end_soon_come_soonest_first_and_go_with_their_route(
    backend: Backend,
) -> None:
    directory = backend.store("")
    for tenant, connection in (("t1", "c1"), ("t2", "c1"), ("t1", "c2"), ("t2", "c3")):
        directory.save_mailbox(f"{tenant}.{connection}@example.com", tenant, connection)
    directory.watch_mailbox("t1", "c1", NOW + timedelta(hours=2))
    directory.watch_mailbox("t2", "c1", NOW + timedelta(hours=1))
    directory.watch_mailbox("t1", "c2", NOW + timedelta(days=5))
    directory.watch_mailbox("t9", "c9", NOW)  # no route: nothing to watch
    before = NOW + timedelta(days=1)

    assert backend.expiring_mailboxes(before, 10) == [("t2", "c1"), ("t1", "c1")]
    assert backend.expiring_mailboxes(before, 1) == [("t2", "c1")]
    directory.drop_mailbox("t2", "c1")
    assert backend.expiring_mailboxes(before, 10) == [("t1", "c1")]
    directory.watch_mailbox("t1", "c1", NOW + timedelta(days=7))  # renewed
    assert backend.expiring_mailboxes(before, 10) == []


# -- RUN-3: Gmail notifications reach the connections of their mailbox ---------------------
def test_RUN3_a_mailbox_is_found_in_every_tenant_that_connected_it_whatever_its_case(
    backend: Backend,
) -> None:
    """Tenants are isolated: one Gmail address connected in two tenants routes to both
    connections, each under its own tenant."""
    backend.store("t1").save_mailbox("Ada@Example.com", "t1", "c1")
    backend.store("t2").save_mailbox("ada@example.com", "t2", "c7")
    backend.store("t1").save_mailbox("bob@example.com", "t1", "c2")

    assert backend.store("").mailbox_connections("ADA@example.COM") == [("t1", "c1"), ("t2", "c7")]
    assert backend.store("t2").mailbox_connections("bob@example.com") == [("t1", "c2")]
    assert backend.store("t1").mailbox_connections("eve@example.com") == []


def test_RUN3_a_connection_saved_with_another_mailbox_is_routed_by_the_new_one_only(
    store: Store,
) -> None:
    store.save_mailbox("ada@example.com", "t1", "c1")
    store.save_mailbox("ada.l@example.com", "t1", "c1")

    assert store.mailbox_connections("ada@example.com") == []
    assert store.mailbox_connections("ada.l@example.com") == [("t1", "c1")]


def test_RUN3_dropping_a_route_keeps_the_other_routes_of_the_mailbox(backend: Backend) -> None:
    directory = backend.store("")
    for tenant, connection in (("t1", "c1"), ("t1", "c2"), ("t2", "c1")):
        directory.save_mailbox("ada@example.com", tenant, connection)

    directory.drop_mailbox("t1", "c1")
    directory.drop_mailbox("t3", "c1")  # never routed: nothing happens

    assert directory.mailbox_connections("ada@example.com") == [("t1", "c2"), ("t2", "c1")]


def test_AUTH4_erasing_a_connection_drops_its_mailbox_route_and_no_other(
    backend: Backend,
) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    for store, connection in ((t1, "c1"), (t1, "c2"), (t2, "c1")):
        store.save_connection_record(connection, {"user": "u1", "provider": "google"})
        store.save_mailbox("ada@example.com", store.tenant, connection)

    t1.erase_connection("c1")

    assert t2.mailbox_connections("ada@example.com") == [("t1", "c2"), ("t2", "c1")]


# -- CTX-1: the mail client's pane finds the connections of the account it names ----------
def test_CTX1_an_account_is_found_in_every_tenant_that_connected_it_and_no_other(
    backend: Backend,
) -> None:
    backend.store("t1").save_account("google", "1001", "t1", "c1")
    backend.store("t2").save_account("google", "1001", "t2", "c7")
    backend.store("t1").save_account("microsoft", "1001", "t1", "c3")  # another provider's

    directory = backend.store("")
    assert directory.account_connections("google", "1001") == [("t1", "c1"), ("t2", "c7")]
    assert directory.account_connections("microsoft", "1001") == [("t1", "c3")]
    assert directory.account_connections("google", "1002") == []


def test_CTX1_a_connection_bound_again_routes_by_its_new_account_and_drops_alone(
    backend: Backend,
) -> None:
    directory = backend.store("")
    directory.save_account("google", "1001", "t1", "c1")
    directory.save_account("google", "1001", "t1", "c2")
    directory.save_account("google", "2002", "t1", "c1")  # switched account (SYN-9)

    assert directory.account_connections("google", "1001") == [("t1", "c2")]
    assert directory.account_connections("google", "2002") == [("t1", "c1")]
    directory.drop_account("t1", "c2")
    directory.drop_account("t9", "c9")  # never routed: nothing happens
    assert directory.account_connections("google", "1001") == []
    assert directory.account_connections("google", "2002") == [("t1", "c1")]


def test_AUTH4_erasing_a_connection_drops_its_account_route_and_no_other(
    backend: Backend,
) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    for store, connection in ((t1, "c1"), (t1, "c2"), (t2, "c1")):
        store.save_connection_record(connection, {"user": "u1", "provider": "google"})
        store.save_account("google", "1001", store.tenant, connection)

    t1.erase_connection("c1")

    assert t2.account_connections("google", "1001") == [("t1", "c2"), ("t2", "c1")]


def test_CTX1_an_account_route_keeps_a_digest_of_the_account_never_its_id(
    backend: Backend,
) -> None:
    backend.store("t1").save_account("google", "108234987123", "t1", "c1")

    stored = repr(stored_anywhere(backend, accounts=True))

    assert hashlib.sha256(b"google\x00108234987123").hexdigest() in stored
    assert "108234987123" not in stored


def stored_anywhere(backend: Backend, accounts: bool = False) -> list[tuple[str, Any]]:
    """Every document of the database, with its path (Firestore), or the mailbox (or
    account) directory as the memory backend holds it: what a reader of the storage
    sees."""
    if isinstance(backend, MemoryBackend):
        held = backend._accounts if accounts else backend._mailboxes
        return [(repr(route), digest) for route, digest in held.items()]
    found: list[tuple[str, Any]] = []
    collections = list(backend.client.collections())
    while collections:
        collection = collections.pop()
        for snap in collection.stream():
            found.append((snap.reference.path, snap.to_dict()))
            collections.extend(snap.reference.collections())
    return found


def test_RUN3_a_mailbox_route_keeps_a_digest_of_the_address_never_the_address(
    backend: Backend,
) -> None:
    backend.store("t1").save_mailbox("Ada.Lovelace@Example.com", "t1", "c1")

    stored = repr(stored_anywhere(backend)).lower()

    assert hashlib.sha256(b"ada.lovelace@example.com").hexdigest() in stored
    assert "lovelace" not in stored and "example" not in stored


# -- AUTH-2..AUTH-4: the grant, the status, erasing a connection ---------------------------
SEALED = {"ciphertext": "Y2lwaGVy", "wrapped_dek": "ZGVr", "kek_version": "3"}


def test_AUTH2_the_sealed_grant_is_kept_and_replaced_whole(store: Store) -> None:
    assert store.sealed_grant("c1") is None

    store.save_sealed_grant("c1", SEALED)
    assert store.sealed_grant("c1") == SEALED

    store.save_sealed_grant("c1", {"ciphertext": "bmV3", "wrapped_dek": "ZGVrMg"})
    assert store.sealed_grant("c1") == {"ciphertext": "bmV3", "wrapped_dek": "ZGVrMg"}
    assert store.sealed_grant("c2") is None


def test_AUTH3_status_is_active_until_set_and_keeps_its_reason(store: Store) -> None:
    assert store.status("c1") == ("active", "")

    store.set_status("c1", "needs_reauth", "the refresh token was refused")
    assert store.status("c1") == ("needs_reauth", "the refresh token was refused")

    store.set_status("c1", "active")
    assert store.status("c1") == ("active", "")


def fill(store: Store, connection: str) -> None:
    """One of everything a connection keeps."""
    store.save_connection_record(connection, {"user": "u1", "provider": "google"})
    store.save_cursor(connection, "crm", "contact", "cursor-1")
    store.save_link(connection, link("k1", "crm-1", "p-1", base=ADA))
    store.save_link(connection, link("k2", "crm-2", None, state="creating"))
    store.set_retries(connection, "contact", {("crm", "crm-3")})
    store.put_queue_item(connection, queue_item("k1"))
    store.put_filing(connection, filing("f1", NOW))
    store.save_run(connection, run_record("run-1"))
    store.add_items(connection, "run-1", [history_item(1)])
    store.save_sealed_grant(connection, SEALED)
    store.set_status(connection, "needs_reauth", "revoked")
    assert store.acquire_lease(connection, "run-1", NOW, 600)
    store.journal_links(connection, [link("k3", "crm-4", None, kind="todo", state="creating")])


def kept(store: Store, connection: str) -> dict[str, Any]:
    return {
        "cursor": store.cursor(connection, "crm", "contact"),
        "links": [x.key for x in store.links(connection, "contact")],
        "found": [x.key for x in store.links_for(connection, "contact", ["crm-1"], ["p-1"])],
        "journaled": sorted(x.key for x in store.journaled_links(connection)),
        "linked": store.linked_count(connection, "contact"),
        "retries": store.retries(connection, "contact"),
        "queue": [i["id"] for i in store.queue(connection)],
        "filings": [f["id"] for f in store.filings(connection, 10)],
        "runs": [r["id"] for r in store.runs(connection)],
        "items": len(store.items(connection, "run-1")),
        "grant": store.sealed_grant(connection),
        "lease": store.lease_holder(connection),
        "status": store.status(connection),
    }


FULL = {
    "cursor": "cursor-1",
    "links": ["k1", "k2"],
    "found": ["k1"],
    "journaled": ["k2", "k3"],
    "linked": 1,
    "retries": {("crm", "crm-3")},
    "queue": ["k1"],
    "filings": ["f1"],
    "runs": ["run-1"],
    "items": 1,
    "grant": SEALED,
    "lease": "run-1",
    "status": ("needs_reauth", "revoked"),
}


def test_AUTH4_erasing_a_connection_keeps_its_status_and_nothing_else(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    for store, connection in ((t1, "c1"), (t1, "c2"), (t2, "c1")):
        fill(store, connection)
    assert kept(t1, "c1") == FULL

    t1.erase_connection("c1")

    assert kept(t1, "c1") == {
        "cursor": None,
        "links": [],
        "found": [],
        "journaled": [],
        "linked": 0,
        "retries": set(),
        "queue": [],
        "filings": [],
        "runs": [],
        "items": 0,
        "grant": None,
        "lease": None,
        "status": ("needs_reauth", "revoked"),
    }
    assert kept(t1, "c2") == FULL
    assert kept(t2, "c1") == FULL
    record = t1.connection_record("c1")  # the admin still lists it, with its status
    assert record is not None and record["status"] == "needs_reauth"


def test_AUTH4_erasing_a_connection_never_used_does_nothing(store: Store) -> None:
    store.erase_connection("c1")

    assert store.status("c1") == ("active", "")
    assert store.connection_record("c1") is None


# -- tenants are isolated ------------------------------------------------------------------
def test_the_same_connection_id_in_two_tenants_keeps_two_states(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    fill(t1, "c1")

    assert kept(t2, "c1") == {
        "cursor": None,
        "links": [],
        "found": [],
        "journaled": [],
        "linked": 0,
        "retries": set(),
        "queue": [],
        "filings": [],
        "runs": [],
        "items": 0,
        "grant": None,
        "lease": None,
        "status": ("active", ""),
    }
    assert t2.connection_record("c1") is None
    assert t2.connection_records() == []
    assert t2.acquire_lease("c1", "run-9", NOW, 600)
    assert kept(t1, "c1") == FULL


def test_ids_with_slashes_and_of_any_length_are_kept(backend: Backend) -> None:
    store = backend.store("acme/eu")
    connection, key = "team/alpha#1", "k/" * 800
    saved = link(key, "crm/99", "people/c" + "9" * 1500)

    store.save_link(connection, saved)
    store.save_cursor(connection, "provider", "contact", "token")
    store.save_connection_record(connection, {"user": "ada@example.com"})
    store.save_user_record("ada@example.com", {"name": "Ada"})

    assert store.links_for(connection, "contact", ["crm/99"], []) == [saved]
    assert store.links_for(connection, "contact", [], [saved.provider_id or ""]) == [saved]
    assert store.cursor(connection, "provider", "contact") == "token"
    assert store.user_record("ada@example.com") == {"name": "Ada"}
    assert [r["id"] for r in store.connection_records()] == [connection]
    assert backend.store("acme").connection_records() == []


# -- the registry: tenant, users, connections ----------------------------------------------
def test_the_tenant_record_merges_top_level_keys(store: Store) -> None:
    assert store.tenant_record() is None
    exclusions = {"contact": {"crm-9": NOW + timedelta(days=3)}, "todo": {"t-1": None}}

    store.save_tenant_record({"name": "Acme", "crm": {"url": "https://crm.example", "v": 1}})
    store.save_tenant_record({"crm": {"url": "https://crm2.example"}, "exclusions": exclusions})

    assert store.tenant_record() == {
        "name": "Acme",
        "crm": {"url": "https://crm2.example"},
        "exclusions": exclusions,
    }


def test_an_empty_tenant_record_is_a_record(store: Store) -> None:
    store.save_tenant_record({})

    assert store.tenant_record() == {}


def test_user_records_merge_top_level_keys(store: Store) -> None:
    assert store.user_record("u1") is None

    store.save_user_record("u1", {"crm_user": "17", "settings": {"calls_as": "task"}})
    store.save_user_record("u1", {"settings": {"contact_group": "Sales"}})

    assert store.user_record("u1") == {"crm_user": "17", "settings": {"contact_group": "Sales"}}
    assert store.user_record("u2") is None


def test_AUTH1_every_user_record_is_listed_by_its_user_id_in_one_query(store: Store) -> None:
    assert store.user_records() == {}
    long_id = "x" * 200  # kept under a hashed document id
    store.save_user_record("u2", {"crm_user": "17"})
    store.save_user_record("_admin", {"crm_user": "4"})
    store.save_user_record(long_id, {"link_made": NOW})
    store.save_user_record("u2", {"link_made": NOW})
    reads = store.reads

    listed = store.user_records()

    assert store.reads - reads <= len(listed)  # a read per record at most, none per user id
    assert listed == {
        "_admin": {"crm_user": "4"},
        "u2": {"crm_user": "17", "link_made": NOW},
        long_id: {"link_made": NOW},
    }
    assert store.user_record(long_id) == {"link_made": NOW}


def test_HIS1_a_connection_record_keeps_the_outcomes_of_its_recent_cycles(store: Store) -> None:
    recent = (
        RunOutcome(RunStatus.PARTIAL, NOW, failed=2, unread=("activity",)),
        RunOutcome(RunStatus.FAILED, NOW + MINUTE, reason="provider 'x' cannot be synced here"),
    )

    store.save_connection_record("c1", {"user": "u1", "recent": [o.stored() for o in recent]})

    assert ConnectionRecord.of(store.connection_record("c1") or {}).recent == recent


def test_a_connection_record_merges_and_carries_its_status(store: Store) -> None:
    store.save_connection_record(
        "c1", {"user": "u1", "provider": "google", "settings": {"a": 1, "b": (2, 3)}}
    )
    store.save_connection_record("c1", {"settings": {"a": 4}, "next_due": NOW})

    assert store.connection_record("c1") == {
        "id": "c1",
        "user": "u1",
        "provider": "google",
        "settings": {"a": 4},
        "next_due": NOW,
        "status": "active",
        "reason": "",
    }

    store.save_connection_record("c1", {"status": "needs_reauth", "reason": "revoked"})
    assert store.status("c1") == ("needs_reauth", "revoked")
    store.save_connection_record("c1", {"status": "active"})
    record = store.connection_record("c1")
    assert record is not None
    assert (record["status"], record["reason"]) == ("active", "")


def test_only_registered_connections_have_records(store: Store) -> None:
    store.save_cursor("c-state", "crm", "contact", "x")
    store.set_status("c-state", "needs_reauth")
    assert store.acquire_lease("c-lease", "run-1", NOW, 600)
    store.set_next_due("c-state", NOW)

    assert store.connection_record("c-state") is None
    assert store.connection_record("c-lease") is None
    assert store.connection_records() == []


def test_connection_records_come_in_id_order(store: Store) -> None:
    for connection in ("c2", "c10", "c1"):
        store.save_connection_record(connection, {"user": "u1"})
    store.set_status("c10", "disconnected")

    records = store.connection_records()

    assert [r["id"] for r in records] == ["c1", "c10", "c2"]
    assert [r["status"] for r in records] == ["active", "disconnected", "active"]


def test_set_next_due_moves_and_clears_the_due_time(store: Store) -> None:
    store.save_connection_record("c1", {"user": "u1", "next_due": NOW})

    store.set_next_due("c1", NOW + timedelta(minutes=5))
    record = store.connection_record("c1")
    assert record is not None and record["next_due"] == NOW + timedelta(minutes=5)

    store.set_next_due("c1", None)
    record = store.connection_record("c1")
    assert record is not None and record["next_due"] is None


# -- RUN-2: the scheduler pages through due connections of every tenant --------------------
def test_RUN2_due_lists_each_connection_with_its_record(backend: Backend) -> None:
    backend.store("t1").save_connection_record(
        "c1", {"user": "u1", "provider": "google", "next_due": NOW}
    )

    [due] = backend.due(NOW, 10)

    assert due.record is not None
    assert (due.record["user"], due.record["provider"], due.record["status"]) == (
        "u1",
        "google",
        "active",
    )


def test_RUN2_next_due_times_move_many_at_once_across_tenants(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    t1.save_connection_record("c1", {"next_due": NOW})
    t1.save_connection_record("c2", {"next_due": NOW})
    t2.save_connection_record("c1", {"next_due": NOW})

    backend.set_next_due_many(
        [
            NextDue("t1", "c1", NOW + 15 * MINUTE, NOW + 15 * MINUTE),
            NextDue("t1", "c2", None),
            NextDue("t2", "c1", NOW + 2 * MINUTE, NOW + 15 * MINUTE),
        ]
    )

    assert backend.due(NOW, 10) == []
    assert backend.due(NOW + 15 * MINUTE, 10) == [
        Due(NOW + 2 * MINUTE, "t2", "c1"),
        Due(NOW + 15 * MINUTE, "t1", "c1"),
    ]
    assert t1.connection_record("c2")["next_due"] is None  # type: ignore[index]
    polled = t2.connection_record("c1")
    assert polled is not None and polled["full_due"] == NOW + 15 * MINUTE
    assert ConnectionRecord.of(polled).full_due == NOW + 15 * MINUTE


def test_RUN2_due_pages_through_every_tenant_oldest_first(backend: Backend) -> None:
    t1, t2 = backend.store("t1"), backend.store("t2")
    t1.save_connection_record("c2", {"next_due": NOW - 10 * MINUTE})
    t2.save_connection_record("c1", {"next_due": NOW - 10 * MINUTE})
    t1.save_connection_record("c1", {"next_due": NOW - 10 * MINUTE})
    t1.save_connection_record("c3", {"next_due": NOW + MINUTE})
    t1.save_connection_record("c4", {"next_due": None})
    t1.save_connection_record("c5", {"user": "u1"})
    t1.set_next_due("c5", NOW - 5 * MINUTE)
    t2.save_connection_record("c9", {"next_due": NOW})
    t2.set_next_due("c-unregistered", NOW - 60 * MINUTE)
    assert t2.acquire_lease("c1#grant", "refresh", NOW, 60)

    pages: list[list[Due]] = []
    after: Due | None = None
    while page := backend.due(NOW, 2, after):
        pages.append(page)
        after = page[-1]

    assert pages == [
        [Due(NOW - 10 * MINUTE, "t1", "c1"), Due(NOW - 10 * MINUTE, "t1", "c2")],
        [Due(NOW - 10 * MINUTE, "t2", "c1"), Due(NOW - 5 * MINUTE, "t1", "c5")],
        [Due(NOW, "t2", "c9")],
    ]
    assert backend.due(NOW - 11 * MINUTE, 10) == []


# -- AUTH-2: OAuth states are single-use ---------------------------------------------------
STATE = {
    "tenant": "t1",
    "user": "u1",
    "provider": "google",
    "services": ["contacts", "calendar"],
    "verifier": "v" * 96,
    "expires": (NOW + timedelta(minutes=10)).isoformat(),
}


def test_AUTH2_a_state_is_taken_once_from_any_tenant(backend: Backend) -> None:
    backend.store("t1").put_state("nonce-1", STATE)

    assert backend.store("t2").take_state("nonce-1") == STATE
    assert backend.store("t1").take_state("nonce-1") is None
    assert backend.store("t1").take_state("nonce-unknown") is None


def test_AUTH2_a_state_finishes_one_sign_in_only(store: Store) -> None:
    secret = b"state-signing-key"
    started = begin(
        secret,
        store,
        tenant="t1",
        user="u1",
        provider="google",
        services=("contacts",),
        now=NOW,
    )

    assert finish(secret, store, started.state, NOW + MINUTE) == started.pending
    with pytest.raises(BadState):
        finish(secret, store, started.state, NOW + MINUTE)


# -- HIS-3 / AUTH-2: Firestore deletes history and states by their TTL field ---------------
@pytest.mark.integration
def test_HIS3_runs_items_and_states_carry_their_ttl_field(firestore_client: Any) -> None:
    retention = timedelta(days=30)
    store = FirestoreBackend(firestore_client, retention=retention).store("t1")
    store.save_run("c1", run_record("run-1", ended=NOW + MINUTE, status="ok"))
    store.save_run("c1", run_record("run-2", started=NOW + 2 * MINUTE))
    store.add_items("c1", "run-1", [history_item(5)])
    store.put_state("nonce-1", STATE)
    store.claim_nonce("crm-event:t=1,v1=ab", NOW + 10 * MINUTE)
    FirestoreBackend(firestore_client).sessions().put_session("s1", {"user": "u1"}, NOW + HOUR)

    expiry = {
        group: sorted(snap.get(field) for snap in firestore_client.collection_group(group).stream())
        for group, field in TTL_FIELDS.items()
    }

    assert TTL_FIELDS == {
        "runs": "expire_at",
        "items": "expire_at",
        "oauth_states": "expires_at",
        "nonces": "expires_at",
        "sessions": "expires_at",
    }
    assert expiry == {
        "runs": [NOW + MINUTE + retention, NOW + 2 * MINUTE + retention],
        "items": [NOW + timedelta(seconds=5) + retention],
        "oauth_states": [NOW + timedelta(minutes=10)],
        "nonces": [NOW + 10 * MINUTE],
        "sessions": [NOW + HOUR],
    }
    assert store.runs("c1")[0] == run_record("run-1", ended=NOW + MINUTE, status="ok")
    assert store.take_state("nonce-1") == STATE


# -- the web app's sessions ------------------------------------------------------------------------
def test_app_a_session_is_kept_until_it_expires_or_is_dropped(backend: Backend) -> None:
    sessions = backend.sessions()
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    record = {"tenant": "t1", "user": "u1", "email": "u1@example.com", "csrf": "c" * 43}
    sessions.put_session("k1", record, now + timedelta(hours=12))
    sessions.put_session("k2", {**record, "user": "u2"}, now + timedelta(hours=12))
    sessions.put_session("k3", record, now + timedelta(hours=12))
    assert sessions.session("k1", now) == record
    assert sessions.session("k1", now + timedelta(hours=12)) is None  # expired: gone for us
    sessions.drop_session("k1")
    assert sessions.session("k1", now) is None
    assert sessions.drop_sessions_of("t1", "u1") == 1  # k3; k2 is another user's
    assert sessions.session("k3", now) is None
    assert sessions.session("k2", now) == {**record, "user": "u2"}
    assert sessions.session("unknown", now) is None
