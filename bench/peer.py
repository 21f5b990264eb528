"""crmsync's whole cycle beside vdirsyncer's sync, on the same records, in the same run.

vdirsyncer (0.21, installed by this script into `build/peer-venv`, apart from crmsync's
own environment) syncs two of its memory storages: N contacts from one to the other
(creates), the same N after an edit on the first side (updates), and once more with
nothing changed (idle). crmsync runs its whole cycle on the same N contacts between its
memory CRM and memory provider (the SyncWorld of the tests: planner, journal, links and
history in the memory store): the first cycle (creates), a cycle after an edit of every
contact in the CRM (updates), and an idle cycle. Both run on one core, one after the
other, three times each; each phase's best time counts. Printed: records a second
for each, and crmsync's rate as a share of vdirsyncer's (the goal: at least as fast).
Times are compared, never failed on.

    python bench/peer.py              # N = 10,000, the best of 3 runs of each
    python bench/peer.py --n 2000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

PEER_VENV = ROOT / "build" / "peer-venv"
VDIRSYNCER = "vdirsyncer==0.21.0"

# Runs inside vdirsyncer's environment: prints the seconds of each sync as JSON.
PEER = r"""
import asyncio, json, sys, time
from vdirsyncer.storage.memory import MemoryStorage
from vdirsyncer.sync import sync
from vdirsyncer.sync.status import SqliteStatus
from vdirsyncer.vobject import Item

def card(i, title=""):
    lines = ["BEGIN:VCARD", "VERSION:3.0", f"UID:contact-{i}", f"FN:F{i} L{i}",
             f"N:L{i};F{i};;;", f"EMAIL:p{i}@x.org"]
    if title:
        lines.append(f"TITLE:{title}")
    return Item("\r\n".join(lines + ["END:VCARD"]))

async def main(n):
    a, b = MemoryStorage(), MemoryStorage()
    hrefs = [(await a.upload(card(i)))[0] for i in range(n)]
    status = SqliteStatus()
    seconds = {}
    started = time.perf_counter()
    await sync(a, b, status)
    seconds["creates"] = time.perf_counter() - started
    for i, href in enumerate(hrefs):
        etag = a.items[href][0]
        await a.update(href, card(i, "Dr"), etag)
    started = time.perf_counter()
    await sync(a, b, status)
    seconds["updates"] = time.perf_counter() - started
    started = time.perf_counter()
    await sync(a, b, status)
    seconds["idle"] = time.perf_counter() - started
    assert len(b.items) == n and all("TITLE:Dr" in item.raw for _, item in b.items.values())
    print(json.dumps(seconds))

asyncio.run(main(int(sys.argv[1])))
"""


def peer_python() -> Path:
    """vdirsyncer's own virtual environment, made on first use."""
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / f".installed-{VDIRSYNCER}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", VDIRSYNCER], check=True)
        stamp.touch()
    return python


def vdirsyncer(n: int) -> dict[str, float]:
    out = subprocess.run(
        [str(peer_python()), "-c", PEER, str(n)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def crmsync(n: int) -> dict[str, float]:
    from crmsync.testing import SyncWorld

    world = SyncWorld(provider="google", crm="memory", provider_backend="memory")
    ids = []
    for i in range(n):
        contact = world.crm.create(
            "contact", {"first_name": f"F{i}", "last_name": f"L{i}", "emails": [f"p{i}@x.org"]}
        )
        world.crm.add_to_sync_group(contact)
        ids.append(contact)
    seconds = {}
    seconds["creates"] = timed(world, n)
    for contact in ids:
        world.crm.update("contact", contact, {"title": "Dr"})
    world.advance(timedelta(minutes=15))
    seconds["updates"] = timed(world, n)
    world.advance(timedelta(minutes=15))
    timed(world, 0)  # the echo of its own writes, which vdirsyncer has no need of
    world.advance(timedelta(minutes=15))
    seconds["idle"] = timed(world, 0)
    titles = [p.get("title") for p in world.provider.all("contact")]
    assert len(titles) == n and set(titles) == {"Dr"}, "not every contact arrived"
    world.close()
    return seconds


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each phase's shortest time among the runs (the others were slowed by something
    else on the machine)."""
    return {phase: min(run[phase] for run in runs) for phase in runs[0]}


def timed(world: Any, changes: int) -> float:
    started = time.perf_counter()
    run = world.sync()
    seconds = time.perf_counter() - started
    assert run["status"] in ("ok", "idle"), run
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="contacts")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best counts")
    args = parser.parse_args()
    theirs, ours = (
        best([vdirsyncer(args.n) for _ in range(args.repeats)]),
        best([crmsync(args.n) for _ in range(args.repeats)]),
    )
    print(f"{args.n:,} contacts; records a second (idle: seconds)")
    print(f"{'phase':10} {'crmsync':>10} {'vdirsyncer':>11} {'crmsync / vdirsyncer':>22}")
    for phase in ("creates", "updates"):
        mine, peer = args.n / ours[phase], args.n / theirs[phase]
        print(f"{phase:10} {mine:>10,.0f} {peer:>11,.0f} {mine / peer:>22.2f}")
    print(f"{'idle':10} {ours['idle']:>10.4f} {theirs['idle']:>11.4f}")
    print("goal: crmsync / vdirsyncer ≥ 1 (a time, compared in the same run, not failed on)")


if __name__ == "__main__":
    main()
