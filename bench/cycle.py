"""Cost of a cycle per synced change: store operations and API calls on each side.

Runs real cycles in a SyncWorld whose CRM and provider count every call: a first cycle
that creates N records of each kind on the other side,
then a cycle after N edits on the CRM, then the cycle that reads those writes back from
the provider's feed (recognised by version, written nowhere), then an idle cycle.
Prints, per phase, the store
reads and writes (each one a Firestore document operation in production) and the
calls to each side per synced change, and the records synced per second.

    python bench/cycle.py                       # N = 200, memory provider
    python bench/cycle.py --n 1000
    python bench/cycle.py --google-sandbox      # requests to Google per synced change
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


def counters(world: SyncWorld) -> dict[str, int]:
    store = world.store
    crm_calls = sum(world._crm.log.calls.values())
    if world._google is not None:  # HTTP requests the Google sandbox answered
        provider_calls = sum(world._google.sandbox.requests.values())
    else:
        provider_calls = sum(world._provider.log.calls.values())
    return {
        "store reads": store.reads,
        "store writes": store.writes,
        "crm calls": crm_calls,
        "provider calls": provider_calls,
    }


def measure(world: SyncWorld, changes: int, label: str) -> dict[str, Any]:
    before = counters(world)
    started = time.perf_counter()
    run = world.sync()
    seconds = time.perf_counter() - started
    after = counters(world)
    per = {k: (after[k] - before[k]) / max(changes, 1) for k in after}
    return {"phase": label, "changes": changes, "status": run["status"], "s": seconds, **per}


def scenario(n: int, backend: str) -> list[dict[str, Any]]:
    world = SyncWorld(provider="google", crm="memory", provider_backend=backend)  # type: ignore[arg-type]
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
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="records of each kind")
    parser.add_argument(
        "--google-sandbox",
        action="store_true",
        help="the provider side as the Google sandbox behind the real Google adapters: "
        "provider calls are then the HTTP requests Google would be sent",
    )
    args = parser.parse_args()
    rows = scenario(args.n, "google-sandbox" if args.google_sandbox else "memory")
    names = ["store reads", "store writes", "crm calls", "provider calls"]
    where = "Google sandbox" if args.google_sandbox else "memory provider"
    print(f"{args.n} records of each kind, {where}; figures per synced change")
    print(f"{'phase':26} {'changes':>8} " + " ".join(f"{n:>14}" for n in names) + f" {'rec/s':>9}")
    for row in rows:
        rate = row["changes"] / row["s"] if row["changes"] else 0.0
        figures = " ".join(f"{row[n]:>14.2f}" for n in names)
        print(f"{row['phase']:26} {row['changes']:>8} {figures} {rate:>9,.0f}")


if __name__ == "__main__":
    main()
