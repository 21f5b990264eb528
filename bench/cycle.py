"""Cost of a cycle per synced change: store operations and API calls on each side.

Runs real cycles in a SyncWorld whose CRM and provider count every call: a first cycle
that creates N records of each kind on the other side,
then a cycle after N edits on the CRM, then the cycle that reads those writes back from
the provider's feed (recognised by version, written nowhere), then an idle cycle.
Prints, per phase, the store
reads and writes (each one a Firestore document operation in production) and the
calls to each side per synced change, and the records synced per second. Against a
sandbox, provider calls are the HTTP requests crmsync sent it during `world.sync()`
(by method in the last column); the user's own edits are not among them.

    python bench/cycle.py                       # N = 200, memory provider
    python bench/cycle.py --n 1000
    python bench/cycle.py --google-sandbox      # requests to Google per synced change
    python bench/cycle.py --graph-sandbox       # requests to Graph per synced change
    python bench/cycle.py --google-sandbox --graph-sandbox   # both, side by side
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the sandbox package

from crmsync.testing import SyncWorld

NAMES = ["store reads", "store writes", "crm calls", "provider calls"]
# (the world's provider, its backend) by the name a row is printed under
SIDES = {
    "memory": ("google", "memory"),
    "Google": ("google", "google-sandbox"),
    "Graph": ("microsoft", "graph-sandbox"),
}


def sent(world: SyncWorld) -> dict[str, int]:
    """HTTP requests the world's sandbox has answered so far, per method ({} without one)."""
    side = world._google or world._graph
    return dict(side.sandbox.requests) if side is not None else {}


def counters(world: SyncWorld) -> dict[str, int]:
    crm_calls = sum(world._crm.log.calls.values())
    if world._google is not None or world._graph is not None:
        provider_calls = sum(sent(world).values())
    else:
        provider_calls = sum(world._provider.log.calls.values())
    return {"crm calls": crm_calls, "provider calls": provider_calls}


def measure(world: SyncWorld, changes: int, label: str) -> dict[str, Any]:
    before, methods = counters(world), sent(world)
    started = time.perf_counter()
    run = world.sync()
    seconds = time.perf_counter() - started
    after, methods_after = counters(world), sent(world)
    per = {k: (after[k] - before[k]) / max(changes, 1) for k in after}
    # the worker's own store operations (the test world's set apart)
    per.update({f"store {k}": v / max(changes, 1) for k, v in world.cost.items()})
    by_method = {
        m: (methods_after[m] - methods.get(m, 0)) / max(changes, 1)
        for m in sorted(methods_after)
        if methods_after[m] > methods.get(m, 0)
    }
    return {
        "phase": label,
        "changes": changes,
        "status": run["status"],
        "s": seconds,
        "methods": by_method,
        **per,
    }


def scenario(n: int, side: str) -> list[dict[str, Any]]:
    provider, backend = SIDES[side]
    world = SyncWorld(provider=provider, crm="memory", provider_backend=backend)  # type: ignore[arg-type]
    start = world.now() + timedelta(days=1)
    ids: list[tuple[str, str]] = []
    for i in range(n):
        contact = world.crm.create(
            "contact", {"first_name": f"F{i}", "last_name": f"L{i}", "emails": [f"p{i}@x.org"]}
        )
        world.crm.add_to_sync_group(contact)
        when = start + timedelta(hours=i % 200)
        activity = world.crm.create(
            "activity",
            {
                "type": "meeting",
                "subject": f"M{i}",
                "start": when,
                "end": when + timedelta(hours=1),
            },
        )
        todo = world.crm.create("todo", {"subject": f"T{i}"})
        ids += [("contact", contact), ("activity", activity), ("todo", todo)]
    rows = [measure(world, 3 * n, "first cycle (creates)")]
    edits = {"contact": {"title": "Dr"}, "activity": {"location": "Hall"}, "todo": {"notes": "x"}}
    for kind, record_id in ids:
        world.crm.update(kind, record_id, edits[kind])  # type: ignore[arg-type]
    world.advance(timedelta(minutes=15))
    rows.append(measure(world, 3 * n, "after edits (updates)"))
    world.advance(timedelta(minutes=15))  # cycles run minutes apart
    rows.append(measure(world, 3 * n, "echo of our own writes"))
    world.advance(timedelta(minutes=15))  # the next scheduled cycle
    rows.append(measure(world, 0, "idle cycle (per cycle)"))
    world.close()
    for row in rows:
        row["side"] = side
    return rows


def by_phase(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of several runs of the scenario, each phase's rows together."""
    return [row for rows in zip(*runs, strict=True) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="records of each kind")
    parser.add_argument(
        "--google-sandbox",
        action="store_true",
        help="the provider side as the Google sandbox behind the real Google adapters: "
        "provider calls are then the HTTP requests Google would be sent",
    )
    parser.add_argument(
        "--graph-sandbox",
        action="store_true",
        help="the provider side as the Microsoft sandbox behind the real Graph adapters: "
        "provider calls are then the HTTP requests Graph would be sent "
        "(with --google-sandbox too: both, side by side)",
    )
    args = parser.parse_args()
    sides = [s for s, on in (("Google", args.google_sandbox), ("Graph", args.graph_sandbox)) if on]
    sides = sides or ["memory"]
    rows = by_phase([scenario(args.n, side) for side in sides])
    where = {"memory": "memory provider", "Google": "Google sandbox", "Graph": "Graph sandbox"}
    print(
        f"{args.n} records of each kind, {' and '.join(where[s] for s in sides)}; "
        "figures per synced change"
    )
    header = " ".join(f"{n:>14}" for n in NAMES)
    print(f"{'phase':26} {'provider':8} {'changes':>8} {header} {'rec/s':>9}  by method")
    for row in rows:
        rate = row["changes"] / row["s"] if row["changes"] else 0.0
        figures = " ".join(f"{row[n]:>14.2f}" for n in NAMES)
        methods = " ".join(f"{m} {v:.2f}" for m, v in row["methods"].items())
        print(
            f"{row['phase']:26} {row['side']:8} {row['changes']:>8} {figures} {rate:>9,.0f}"
            f"  {methods}".rstrip()
        )
    missed = goals(rows)
    if missed:
        print(f"\n{len(missed)} counted figure(s) miss their goal: {'; '.join(missed)}")
        sys.exit(1)


# Requests to the provider per updated record: the update itself, a read only where the
# change feed's version cannot be trusted (a 412 or its like, or no conditional write)
UPDATE_REQUESTS = 1.05


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """Each counted figure beside its goal; returns those that miss it."""
    print(f"\n{'figure':50} {'now':>7} {'goal':>7}  met")
    missed = []
    for row in rows:
        if row["phase"] != "after edits (updates)" or row["side"] == "memory":
            continue
        figure = f"{row['side']} requests per updated record"
        value = row["provider calls"]
        met = value <= UPDATE_REQUESTS
        print(
            f"{figure:50} {value:>7.2f} {'≤ ' + str(UPDATE_REQUESTS):>7}  {'yes' if met else 'NO'}"
        )
        if not met:
            missed.append(figure)
    return missed


if __name__ == "__main__":
    main()
