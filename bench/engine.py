"""Planner throughput: changed records per second, and work per change.

Builds N linked contacts, activities and to-dos, changes k of them on one side, and
times `reconcile` over those k changes (the cycle hands the planner only the links
of records that changed). Prints records/second for 10k and 100k changes, remote
writes and link lookups per change, and shows that the work follows k, not N: the
same k among ten times more links costs the same.

    python bench/engine.py            # all figures
    python bench/engine.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crmsync.engine import Context, Link, SideRecord
from crmsync.engine.reconcile import Links, reconcile
from crmsync.model import Kind, normalize
from crmsync.settings import resolve

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def base_fields(kind: Kind, i: int) -> dict[str, Any]:
    if kind == "contact":
        raw: dict[str, Any] = {
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "company": f"Company {i % 97}",
            "emails": [f"person{i}@example.com"],
            "phones": [{"kind": "work", "number": f"+4930{1000000 + i}"}],
            "notes": "met at the fair",
        }
    elif kind == "activity":
        start = NOW + timedelta(hours=i % 500)
        raw = {
            "subject": f"Meeting {i}",
            "start": start,
            "end": start + timedelta(hours=1),
            "location": "Room 1",
            "notes": "agenda",
        }
    else:
        raw = {"subject": f"Task {i}", "due": date(2026, 12, 1) + timedelta(days=i % 30)}
    return normalize(kind, raw)


class CountingLinks(Links):
    """A LinkIndex that counts lookups, to show the planner reads O(k) links."""

    lookups = 0

    def by_crm(self, crm_id: str) -> Link | None:
        self.lookups += 1
        return super().by_crm(crm_id)

    def by_provider(self, provider_id: str) -> Link | None:
        self.lookups += 1
        return super().by_provider(provider_id)


@dataclass
class Figures:
    kind: Kind
    total_links: int
    changed: int
    seconds: float
    writes: int
    lookups: int

    @property
    def per_second(self) -> float:
        return self.changed / self.seconds


def scenario(kind: Kind, total: int, changed: int) -> Iterator[Figures]:
    settings = resolve("google", None, {"conflict_policy": "latest_wins"})
    ctx = Context(now=NOW, user="u1", settings=settings, linked_count=total)
    links = [
        Link(
            key=f"{kind}-crm-c{i}",
            kind=kind,
            crm_id=f"c{i}",
            provider_id=f"p{i}",
            crm_version="1",
            provider_version="1",
            base=base_fields(kind, i),
        )
        for i in range(total)
    ]
    step = max(total // changed, 1)
    chosen = links[::step][:changed]
    edit = {"contact": "title", "activity": "location", "todo": "subject"}[kind]
    changes = [
        SideRecord(link.crm_id or "", "2", {**link.base, edit: f"edited {n}"}, modified=NOW)
        for n, link in enumerate(chosen)
    ]
    seconds = float("inf")
    for _ in range(3):  # best of three: the least disturbed run
        index = CountingLinks.of(chosen)  # the cycle loads only the links of changed records
        gc.collect()
        started = time.perf_counter()
        plan = reconcile(kind, changes, [], index, ctx)
        seconds = min(seconds, time.perf_counter() - started)
    writes = sum(len(d.writes) for d in plan.decisions)
    yield Figures(kind, total, changed, seconds, writes, index.lookups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    sizes = (
        [(2_000, 2_000), (20_000, 2_000)]
        if args.quick
        else [(10_000, 10_000), (100_000, 100_000), (100_000, 10_000)]
    )
    print(
        f"{'kind':9} {'links':>8} {'changed':>8} {'records/s':>11} "
        f"{'writes/change':>14} {'lookups/change':>15}"
    )
    for kind in ("contact", "activity", "todo"):
        for total, changed in sizes:
            for f in scenario(kind, total, changed):  # type: ignore[arg-type]
                print(
                    f"{f.kind:9} {f.total_links:>8} {f.changed:>8} {f.per_second:>11,.0f} "
                    f"{f.writes / f.changed:>14.2f} {f.lookups / f.changed:>15.2f}"
                )
    print(
        "goal: >= 50,000 changed records/s on one core; the same k among 10x more "
        "links costs the same (work follows changes, not links)"
    )


if __name__ == "__main__":
    main()
