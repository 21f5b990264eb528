"""What the serverless runtime costs, measured on Google's Firestore emulator.

1. Incremental cycles over the Firestore store: document reads and writes and provider
   calls per cycle for N linked contacts (N = 1k and 10k) and k = 0 or 100 changes.
   The goal: the cost of a cycle depends on k, not on N.
2. Fan-out: due connections enqueued per second, for 10k due connections paged out of
   Firestore (the queue is the inline one: this measures crmsync, not Cloud Tasks).
3. Cold start: the import time of functions/main.py with what its first request
   imports, against a bare functions-framework hello function, as a ratio.

    python bench/runtime.py                 # all three, N = 1k and 10k
    python bench/runtime.py --links 1000    # a quicker cycle figure
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

from crmsync import service  # noqa: E402
from crmsync.auth.vault import LocalKek, TokenVault  # noqa: E402
from crmsync.queue.inline import InlineQueue  # noqa: E402
from crmsync.testing import SyncWorld  # noqa: E402

QUIET_ENDED = "k=100 ending quiet cycles"


def cycles(client: Any, links: int) -> list[dict[str, Any]]:
    """The first cycle runs on the memory store (the Firestore emulator, unlike
    Firestore, slows down as a collection grows, and would time its own scans); its
    links and cursors are then copied into Firestore, where the measured cycles run.
    Operations are the worker's own (`SyncWorld.cost`), the test world's set apart."""
    from crmsync.store.firestore import FirestoreStore

    world = SyncWorld(provider="google", crm="memory", provider_backend="memory")
    ids = [
        world.crm.create(
            "contact", {"first_name": f"P{i}", "last_name": "Bench", "emails": [f"p{i}@x.example"]}
        )
        for i in range(links)
    ]
    for crm_id in ids:
        world.crm.add_to_sync_group(crm_id)
    first = world.sync()
    world.advance(timedelta(minutes=15))
    world.sync()  # the echo of the first cycle's writes
    store = FirestoreStore(client, f"bench-{links}")
    started = time.perf_counter()
    memory = world.store
    for kind in ("contact", "activity", "todo"):
        for link in memory.links(world.connection.id, kind):  # type: ignore[arg-type]
            store.save_link(world.connection.id, link)
        for side in ("crm", "provider"):
            cursor = memory.cursor(world.connection.id, side, kind)  # type: ignore[arg-type]
            if cursor is not None:
                store.save_cursor(world.connection.id, side, kind, cursor)  # type: ignore[arg-type]
    world.store = store  # type: ignore[assignment]
    world.onboard()  # the tenant and connection records a connected user has
    rows: list[dict[str, Any]] = [
        {
            "phase": "links copied",
            "links": links,
            "s": time.perf_counter() - started,
            "first cycle": first["status"],
        }
    ]
    world.advance(timedelta(minutes=15))
    world.sync()  # the first cycle over Firestore learns that no journal or queue waits
    for crm_id in ids[-100:]:
        world.crm.update("contact", crm_id, {"title": "warm"})
    world.advance(timedelta(minutes=15))
    world.sync()  # the first busy cycle counts the links for the mass-delete guard, once
    world.advance(timedelta(minutes=15))
    world.sync()  # the echo of its writes, quiet: the history's entry of quiet cycles
    # the second k = 100 cycle follows a single quiet cycle (the echo of the first); the
    # first ends a run of quiet cycles, and stores that run's entry with its count
    for k, phase in ((0, "k=0"), (100, QUIET_ENDED), (100, "k=100")):
        for crm_id in ids[:k]:
            world.crm.update("contact", crm_id, {"title": f"t{time.perf_counter_ns()}"})
        world.advance(timedelta(minutes=15))
        calls = sum(world._provider.log.calls.values())
        started, cpu = time.perf_counter(), time.process_time()
        run = world.sync()
        rows.append(
            {
                "phase": f"incremental {phase}",
                "links": links,
                "s": time.perf_counter() - started,
                # this process's CPU: crmsync's and its Firestore client's, not the
                # emulator's (a process of its own)
                "cpu s": time.process_time() - cpu,
                "status": run["status"],
                "reads": world.cost["reads"],
                "writes": world.cost["writes"],
                "provider calls": sum(world._provider.log.calls.values()) - calls,
            }
        )
        world.advance(timedelta(minutes=15))
        world.sync()  # settle the echo before the next phase
        if k == 0:  # between full cycles, the kinds Google pushes nothing for are polled
            world.advance(timedelta(minutes=2))
            run = world.sync(trigger="poll")
            rows.append(
                {
                    "phase": "idle poll",
                    "links": links,
                    "status": run["status"],
                    "reads": world.cost["reads"],
                    "writes": world.cost["writes"],
                }
            )
    # the same link lookup the k = 100 cycle made (its `in` queries, 30 ids each), alone:
    # how long the emulator takes to answer it, which production Firestore answers from
    # its index (the emulator reads the whole collection for each query)
    started = time.perf_counter()
    store.links_for(world.connection.id, "contact", ids[:100], [])
    rows.append(
        {"phase": "the k=100 link lookup alone", "links": links, "s": time.perf_counter() - started}
    )
    world.close()
    return rows


def fanout(client: Any, connections: int) -> dict[str, Any]:
    from crmsync.store.firestore import FirestoreBackend

    backend = FirestoreBackend(client)
    now = datetime.now(UTC)
    tenants = 10
    for t in range(tenants):
        store = backend.store(f"fan-{t}")
        store.save_tenant_record({"settings": {}})
        for c in range(connections // tenants):
            store.save_connection_record(
                f"c{c}",
                {"user": f"u{c}", "provider": "google", "status": "active", "next_due": now},
            )
    queue = InlineQueue()
    services = service.Services(
        backend=backend,
        queue=queue,
        vault=TokenVault(LocalKek(b"k" * 32)),
        secret=b"s",
        public_url="http://127.0.0.1:9",
        clock=lambda: now + timedelta(seconds=1),
    )
    stores = [backend.store(f"fan-{t}") for t in range(tenants)]
    reads = backend.reads + sum(store.reads for store in stores)
    started = time.perf_counter()
    report = service.fanout(services)
    seconds = time.perf_counter() - started
    reads = backend.reads + sum(store.reads for store in stores) - reads
    return {
        "due": connections,
        "enqueued": report.enqueued,
        "pages": report.pages,
        "s": seconds,
        "per s": report.enqueued / seconds,
        "reads": reads,
        # each due connection is read by the query that pages them; each tenant's
        # settings, and the last page's query (empty when the last full page ends the
        # due ones), once per fan-out, apart
        "reads each": (reads - tenants - 1) / connections,
    }


HELLO = """
import functions_framework

@functions_framework.http
def hello(request):
    return "hello"
"""

PROBE = """
import sys, time
started = time.perf_counter()
from functions_framework import create_app
app = create_app(sys.argv[1], sys.argv[2], "http")
client = app.test_client()
client.get("/health")
print(time.perf_counter() - started)
"""


def cold_start(repeats: int = 15) -> dict[str, Any]:
    """Seconds from a fresh interpreter to the first answer, crmsync's admin function vs
    a hello function; each the median of `repeats` fresh processes, the two taken in
    turn (hello, admin, hello, ...) so that a busy moment of the machine weighs on
    both alike."""
    with tempfile.TemporaryDirectory() as folder:
        hello = Path(folder) / "main.py"
        hello.write_text(textwrap.dedent(HELLO))
        env_path = f"{ROOT / 'shared'}:{ROOT}"

        def probe(target: str, source: Path) -> float:
            out = subprocess.run(
                [sys.executable, "-c", PROBE, target, str(source)],
                capture_output=True,
                text=True,
                check=True,
                env={"PYTHONPATH": env_path, "CRMSYNC_STORE": "memory", "PATH": "/usr/bin:/bin"},
            )
            return float(out.stdout.strip().splitlines()[-1])

        pairs = [
            (probe("hello", hello), probe("admin", ROOT / "functions" / "main.py"))
            for _ in range(repeats)
        ]
        bare = statistics.median(hello_s for hello_s, _ in pairs)
        ours = statistics.median(admin_s for _, admin_s in pairs)
    return {"hello s": bare, "crmsync admin s": ours, "ratio": ours / bare}


@dataclass
class Goal:
    """One figure of the cost table beside its goal; a counted one (operations,
    requests) that misses it makes the benchmark exit non-zero. Times are ratios of two
    measurements of the same run, printed, never failed on."""

    figure: str
    value: float
    limit: float
    counted: bool = True

    @property
    def met(self) -> bool:
        return self.value <= self.limit


def goals(
    rows: dict[int, list[dict[str, Any]]], fan: dict[str, Any] | None, cold: dict[str, Any] | None
) -> list[Goal]:
    found: list[Goal] = []
    for links, phases in rows.items():
        by = {row["phase"]: row for row in phases}
        idle, busy = by["incremental k=0"], by["incremental k=100"]
        ended = by[f"incremental {QUIET_ENDED}"]
        found += [
            Goal(f"idle cycle, Firestore reads (N={links:,})", idle["reads"], 3),
            Goal(f"idle cycle, Firestore writes (N={links:,})", idle["writes"], 2),
            Goal(
                f"k=100 changes, Firestore operations (N={links:,})",
                busy["reads"] + busy["writes"],
                2 * 100 + 5,
            ),
            # + the entry of the quiet cycles before it, stored once with their count
            Goal(
                f"  the same, ending a run of quiet cycles (N={links:,})",
                ended["reads"] + ended["writes"],
                2 * 100 + 5 + 1,
            ),
        ]
    if len(rows) > 1:
        small, large = min(rows), max(rows)
        seconds = {n: _phase(rows[n], "incremental k=100")["s"] for n in (small, large)}
        cpu = {n: _phase(rows[n], "incremental k=100")["cpu s"] for n in (small, large)}
        found += [
            Goal(
                f"k=100 changes, seconds among {large:,} vs {small:,} links",
                seconds[large] / seconds[small],
                1.2,
                counted=False,
            ),
            Goal(
                f"  of which crmsync's CPU, {large:,} vs {small:,}",
                cpu[large] / cpu[small],
                1.2,
                False,
            ),
        ]
    if fan is not None:
        found.append(Goal("fan-out, Firestore reads per due connection", fan["reads each"], 1))
    if cold is not None:
        found.append(Goal("cold start vs a bare hello function", cold["ratio"], 1.3, False))
    return found


def _phase(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(row for row in rows if row["phase"] == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    args = parser.parse_args()

    import os

    from google.cloud import firestore

    from sandbox.local.emulators import start_firestore

    measured: dict[int, list[dict[str, Any]]] = {}
    with start_firestore() as emulator:
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
        client = firestore.Client(project=emulator.project)
        print("cycles over the Firestore store (per cycle; the goal: independent of N)")
        for links in args.links:
            measured[links] = cycles(client, links)
            for row in measured[links]:
                print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)
        print("fan-out")
        fan = fanout(client, args.connections)
        print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in fan.items()), flush=True)
    cold = None
    if not args.no_cold_start:
        print("cold start (first answer of a fresh instance)")
        cold = cold_start()
        print("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in cold.items()), flush=True)
    table = goals(measured, fan, cold)
    print(f"\n{'figure':58} {'now':>9} {'goal':>7}  met")
    for goal in table:
        kind = "" if goal.counted else " (time, not failed on)"
        mark = "yes" if goal.met else "NO"
        print(f"{goal.figure:58} {_fmt(goal.value):>9} {'≤ ' + _fmt(goal.limit):>7}  {mark}{kind}")
    missed = [goal.figure for goal in table if goal.counted and not goal.met]
    if missed:
        print(f"\n{len(missed)} counted figure(s) miss their goal: {'; '.join(missed)}")
        sys.exit(1)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
