"""Sync History's queries (HIS-2) and retention (HIS-3), on both stores: the memory
store and the Firestore store on Google's Firestore emulator answer a page of runs the
same way, filtered, sorted either way, resumed by a token with nothing repeated or
skipped, reading only the page; and a tenant's shorter retention erases its runs and
items sooner."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import pytest

from crmsync.ports import RUN_SORTS, RunQuery
from crmsync.store.firestore import FirestoreBackend, FirestoreStore
from crmsync.store.memory import MemoryBackend, MemoryStore

Backend: TypeAlias = MemoryBackend | FirestoreBackend
Store: TypeAlias = MemoryStore | FirestoreStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture(params=["memory", pytest.param("firestore", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "memory":
        return MemoryBackend()
    return FirestoreBackend(request.getfixturevalue("firestore_client"))


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store("t1")


def run(
    run_id: str,
    started: datetime,
    took: timedelta | None = MINUTE,
    *,
    connection: str = "c1",
    tenant: str = "t1",
    **kw: Any,
) -> dict[str, Any]:
    """A finished run (`took` None: still running)."""
    return {
        "id": run_id,
        "connection": connection,
        "tenant": tenant,
        "user": kw.pop("user", "u1"),
        "provider": kw.pop("provider", "google"),
        "trigger": kw.pop("trigger", "schedule"),
        "started": started,
        "ended": started + took if took is not None else None,
        "status": kw.pop("status", "ok" if took is not None else "running"),
        "counts": kw.pop("counts", {}),
        "errors": [],
        **kw,
    }


def save(store: Store, *runs: dict[str, Any]) -> None:
    for record in runs:
        store.save_run(record["connection"], record)


def every_page(store: Store, query: RunQuery) -> list[list[dict[str, Any]]]:
    """Every page of the query, the first to the last, each through its token."""
    pages: list[list[dict[str, Any]]] = []
    after: str | None = None
    while len(pages) < 100:
        page = store.run_page(replace(query, after=after))
        pages.append(page.runs)
        if page.next is None:
            return pages
        after = page.next
    raise AssertionError("the pages never end")


def ids(pages: list[list[dict[str, Any]]]) -> list[str]:
    return [r["id"] for page in pages for r in page]


# -- pages ----------------------------------------------------------------------------------------
def test_HIS2_pages_of_runs_come_newest_first_each_run_once(store: Store) -> None:
    save(store, *(run(f"r{n:02}", T0 + n * MINUTE) for n in range(23)))

    pages = every_page(store, RunQuery(connections=("c1",), limit=5))

    assert [len(page) for page in pages] == [5, 5, 5, 5, 3]
    assert ids(pages) == [f"r{n:02}" for n in reversed(range(23))]


def test_HIS2_a_last_full_page_has_no_next_page(store: Store) -> None:
    save(store, *(run(f"r{n}", T0 + n * MINUTE) for n in range(4)))

    page = store.run_page(RunQuery(limit=4))

    assert len(page.runs) == 4
    assert page.next is None


@pytest.mark.parametrize("sort", ["status", "started"])
def test_HIS2_runs_tied_on_the_sort_field_are_neither_repeated_nor_skipped(
    store: Store, sort: str
) -> None:
    save(store, *(run(f"r{n:02}", T0, connection=f"c{n % 3}") for n in range(13)))

    pages = every_page(store, RunQuery(sort=sort, descending=False, limit=4))

    assert [len(page) for page in pages] == [4, 4, 4, 1]
    assert sorted(ids(pages)) == [f"r{n:02}" for n in range(13)]


# Six runs with one value each for every sort field, none tied on (value, started).
SORTED = [
    run("a", T0, 3 * MINUTE, status="ok", trigger="schedule"),
    run("b", T0 + 1 * MINUTE, None, trigger="manual"),
    run("c", T0 + 2 * MINUTE, 10 * MINUTE, status="partial", trigger="push"),
    run("d", T0 + 3 * MINUTE, 1 * MINUTE, status="failed", trigger="crm"),
    run("e", T0 + 4 * MINUTE, 7 * MINUTE, status="ok", trigger="connect"),
    run("f", T0 + 5 * MINUTE, None, trigger="poll"),
]


def expected_order(sort: str, descending: bool) -> list[str]:
    """The order a person expects: by the field (nothing before any value), ties by
    when the runs started, newest first."""

    def value(record: dict[str, Any]) -> Any:
        if sort == "duration":
            ended = record["ended"]
            return None if ended is None else (ended - record["started"]).total_seconds()
        return record[sort]

    newest_first = sorted(SORTED, key=lambda r: r["started"], reverse=True)
    ordered = sorted(
        newest_first, key=lambda r: (value(r) is not None, value(r) or 0), reverse=descending
    )
    return [r["id"] for r in ordered]


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", RUN_SORTS)
def test_HIS2_every_sort_order_both_ways_across_pages(
    store: Store, sort: str, descending: bool
) -> None:
    save(store, *SORTED)

    pages = every_page(store, RunQuery(sort=sort, descending=descending, limit=4))

    assert ids(pages) == expected_order(sort, descending)


FILTERED = [
    run("ok-google", T0, counts={"contact": {"create": 2}}),
    run("fail-google", T0 + MINUTE, status="failed", counts={"todo": {"fail": 1}}),
    run(
        "partial-ms",
        T0 + 2 * MINUTE,
        status="partial",
        provider="microsoft",
        connection="c2",
        user="u2",
        trigger="push",
        counts={"contact": {"update": 1}, "activity": {"fail": 1}},
    ),
    run("manual-ms", T0 + 3 * MINUTE, provider="microsoft", connection="c2", trigger="manual"),
    run("idle-counts", T0 + 4 * MINUTE, counts={"todo": {}}),
]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, {"ok-google", "fail-google", "partial-ms", "manual-ms", "idle-counts"}),
        ({"connections": ("c2",)}, {"partial-ms", "manual-ms"}),
        ({"connections": ("c1", "c2")}, {r["id"] for r in FILTERED}),
        ({"connections": ()}, set()),
        ({"status": "failed"}, {"fail-google"}),
        ({"trigger": "manual"}, {"manual-ms"}),
        ({"provider": "microsoft"}, {"partial-ms", "manual-ms"}),
        ({"kind": "contact"}, {"ok-google", "partial-ms"}),
        ({"kind": "todo"}, {"fail-google"}),  # an empty count of a kind is no touch
        ({"kind": "activity", "provider": "microsoft"}, {"partial-ms"}),
        ({"since": T0 + 2 * MINUTE}, {"partial-ms", "manual-ms", "idle-counts"}),
        ({"until": T0 + 2 * MINUTE}, {"ok-google", "fail-google"}),
        ({"since": T0 + MINUTE, "until": T0 + 3 * MINUTE, "provider": "google"}, {"fail-google"}),
        (
            {"status": "ok", "connections": ("c1",), "sort": "duration"},
            {"ok-google"},  # a run that changed nothing reads as nothing to do
        ),
        ({"status": "idle"}, {"manual-ms", "idle-counts"}),
        (
            {"since": T0 + MINUTE, "sort": "status", "descending": False},
            {"fail-google", "partial-ms", "manual-ms", "idle-counts"},
        ),
    ],
)
def test_HIS2_filters_narrow_the_runs(
    store: Store, filters: dict[str, Any], expected: set[str]
) -> None:
    save(store, *FILTERED)

    pages = every_page(store, RunQuery(limit=2, **filters))

    assert sorted(ids(pages)) == sorted(expected)


def test_HIS2_a_tenants_runs_span_its_connections_and_never_another_tenants(
    backend: Backend,
) -> None:
    mine, theirs = backend.store("t1"), backend.store("t2")
    save(mine, run("t1-c1", T0), run("t1-c2", T0 + MINUTE, connection="c2"))
    save(theirs, run("t2-c1", T0 + 2 * MINUTE, tenant="t2"))  # the same connection id

    assert ids(every_page(mine, RunQuery())) == ["t1-c2", "t1-c1"]
    assert ids(every_page(mine, RunQuery(connections=("c1",)))) == ["t1-c1"]
    assert ids(every_page(theirs, RunQuery(connections=("c1", "c2")))) == ["t2-c1"]


def test_HIS2_a_run_is_read_by_its_id(store: Store) -> None:
    saved = run("r1", T0, counts={"contact": {"create": 1}})
    save(store, saved)

    assert store.run("c1", "r1") == saved
    assert store.run("c1", "r9") is None
    assert store.run("c2", "r1") is None


@pytest.mark.parametrize(
    "token",
    ["", "not-a-token", "eyJ4IjogMX0", "W10", "eyJxIjoiIiwidiI6W3sidCI6MX1dLCJjIjoxLCJyIjoyfQ"],
)
def test_HIS2_a_token_that_is_no_page_of_the_list_is_refused(store: Store, token: str) -> None:
    with pytest.raises(ValueError):
        store.run_page(RunQuery(after=token))


def test_HIS2_a_token_of_another_list_is_refused(store: Store) -> None:
    save(store, *(run(f"r{n}", T0 + n * MINUTE) for n in range(3)))
    token = store.run_page(RunQuery(limit=1)).next
    assert token is not None

    for other in (RunQuery(sort="status"), RunQuery(status="ok"), RunQuery(descending=False)):
        with pytest.raises(ValueError):
            store.run_page(replace(other, limit=1, after=token))
    assert [r["id"] for r in store.run_page(RunQuery(limit=1, after=token)).runs] == ["r1"]


@pytest.mark.parametrize(
    "query",
    [
        RunQuery(sort="user"),
        RunQuery(limit=0),
        RunQuery(limit=201),
        RunQuery(connections=tuple(f"c{n}" for n in range(31))),
    ],
)
def test_HIS2_a_query_no_store_answers_is_refused(store: Store, query: RunQuery) -> None:
    with pytest.raises(ValueError):
        store.run_page(query)


def test_HIS2_a_page_of_50_reads_the_page_and_one_run_more_not_every_run(store: Store) -> None:
    save(store, *(run(f"r{n:03}", T0 + n * MINUTE, connection=f"c{n % 2}") for n in range(260)))
    before = store.reads

    first = store.run_page(RunQuery(limit=50))
    after_first = store.reads
    second = store.run_page(RunQuery(limit=50, after=first.next))

    assert len(first.runs) == len(second.runs) == 50
    assert after_first - before == 51
    assert store.reads - after_first == 51
    assert second.runs[0]["id"] == "r209"


def test_HIS2_an_interrupted_run_sorts_by_how_long_it_ran(store: Store) -> None:
    save(
        store, run("short", T0, MINUTE), run("died", T0 + MINUTE, None), run("long", T0, 9 * MINUTE)
    )
    assert store.interrupt_run("c1", run("died", T0 + MINUTE, None), T0 + 6 * MINUTE)

    pages = every_page(store, RunQuery(sort="duration", descending=True))

    assert ids(pages) == ["long", "died", "short"]


# -- HIS-3: a tenant keeps history shorter ---------------------------------------------------------
def test_HIS3_the_memory_store_erases_runs_and_items_by_the_tenants_retention() -> None:
    backend = MemoryBackend(retention=timedelta(days=90))
    short, default = backend.store("t1"), backend.store("t2")
    item = {"kind": "contact", "outcome": "create", "at": T0}
    for store, days in ((short, 7), (default, None)):
        kept = {"history_days": days} if days else {}
        store.save_run("c1", run("r1", T0, **kept))
        store.add_items("c1", "r1", [item], days)

    for store in (short, default):
        store.sweep(T0 + timedelta(days=6))
    assert short.run("c1", "r1") is not None and short.items("c1", "r1") == [item]

    for store in (short, default):
        store.sweep(T0 + timedelta(days=8))
    assert short.run("c1", "r1") is None and short.items("c1", "r1") == []
    assert default.run("c1", "r1") is not None and default.items("c1", "r1") == [item]

    default.sweep(T0 + timedelta(days=91))
    assert default.run("c1", "r1") is None and default.items("c1", "r1") == []


@pytest.mark.integration
def test_HIS3_firestore_expires_runs_and_items_by_the_tenants_shorter_retention(
    firestore_client: Any,
) -> None:
    retention = timedelta(days=90)
    backend = FirestoreBackend(firestore_client, retention=retention)
    item = {"kind": "contact", "outcome": "create", "at": T0}
    for tenant, days in (("t1", 7), ("t2", None), ("t3", 365)):
        kept = {"history_days": days} if days else {}
        store = backend.store(tenant)
        store.save_run("c1", run(f"{tenant}-run", T0, tenant=tenant, **kept))
        store.add_items("c1", f"{tenant}-run", [item], days)

    runs = {
        s.get("id"): s.get("expire_at") for s in firestore_client.collection_group("runs").stream()
    }
    items = sorted(s.get("expire_at") for s in firestore_client.collection_group("items").stream())

    ended = T0 + MINUTE
    assert runs == {
        "t1-run": ended + timedelta(days=7),
        "t2-run": ended + retention,
        "t3-run": ended + retention,  # never longer than the deployment keeps history
    }
    assert items == sorted([T0 + timedelta(days=7), T0 + retention, T0 + retention])
