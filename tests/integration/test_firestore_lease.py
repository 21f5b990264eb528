"""Races on Firestore (Google's emulator): workers, each with its own client as separate
function instances have, contend for one connection's lease or one OAuth state. The
emulator serialises contended writes slowly, so a race has at most four workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from google.cloud import firestore

from crmsync.store.firestore import FirestoreStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WORKERS = 4
ROUNDS = 5
T = TypeVar("T")


def race(project: str, workers: int, attempt: Callable[[FirestoreStore, str], T]) -> list[T]:
    """Run `attempt` in `workers` threads at once, each on its own client and store."""
    clients = [firestore.Client(project=project) for _ in range(workers)]
    stores = [FirestoreStore(client, "t1") for client in clients]
    start = threading.Barrier(workers)

    def run(n: int) -> T:
        start.wait()
        return attempt(stores[n], f"worker-{n}")

    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(run, range(workers)))
    finally:
        for client in clients:
            client.close()


def acquire(connection: str) -> Callable[[FirestoreStore, str], bool]:
    return lambda worker, holder: worker.acquire_lease(connection, holder, NOW, 600)


def release_or_ask(connection: str) -> Callable[[FirestoreStore, str], object]:
    """The holder (worker-0) releases the lease while the others ask it for a cycle."""

    def attempt(worker: FirestoreStore, name: str) -> object:
        if name == "worker-0":
            return worker.release_lease(connection, "holder")
        return worker.ask_again(connection, "push", NOW) is not None

    return attempt


def take(nonce: str) -> Callable[[FirestoreStore, str], dict[str, Any] | None]:
    return lambda worker, _: worker.take_state(nonce)


def test_RUN3_of_workers_racing_for_a_free_lease_exactly_one_holds_it(
    firestore_client: Any,
) -> None:
    store = FirestoreStore(firestore_client, "t1")
    for round_ in range(ROUNDS):
        connection = f"c{round_}"

        won = race(firestore_client.project, WORKERS, acquire(connection))

        assert won.count(True) == 1, won
        assert store.lease_holder(connection) == f"worker-{won.index(True)}"


def test_RUN3_of_workers_racing_for_an_expired_lease_exactly_one_takes_it(
    firestore_client: Any,
) -> None:
    store = FirestoreStore(firestore_client, "t1")
    for round_ in range(ROUNDS):
        connection = f"c{round_}"
        assert store.acquire_lease(connection, "dead-run", NOW - timedelta(minutes=20), 600)

        won = race(firestore_client.project, WORKERS, acquire(connection))

        assert won.count(True) == 1, won
        assert store.lease_holder(connection) == f"worker-{won.index(True)}"


def test_RUN3_an_ask_racing_the_release_is_heard_by_the_holder_or_told_to_run_itself(
    firestore_client: Any,
) -> None:
    """Each asker either reaches the holder, whose release then answers the ask, or
    finds the lease gone (and runs the cycle itself): no ask is lost between the two."""
    store = FirestoreStore(firestore_client, "t1")
    for round_ in range(ROUNDS):
        connection = f"c{round_}"
        assert store.acquire_lease(connection, "holder", NOW, 600)

        released, *asked = race(firestore_client.project, 3, release_or_ask(connection))

        assert released == ("push" if True in asked else None), (released, asked)


def test_AUTH2_of_two_concurrent_takes_of_a_state_exactly_one_gets_it(
    firestore_client: Any,
) -> None:
    store = FirestoreStore(firestore_client, "t1")
    record = {"tenant": "t1", "user": "u1", "verifier": "v" * 96}
    for round_ in range(ROUNDS):
        nonce = f"nonce-{round_}"
        store.put_state(nonce, record)

        taken = race(firestore_client.project, 2, take(nonce))

        assert sorted(taken, key=lambda r: r is None) == [record, None]
        assert store.take_state(nonce) is None
