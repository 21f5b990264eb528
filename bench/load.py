"""`python bench/load.py`: 1,000 connected users, then a burst of 5,000 changes in a
minute, on this machine (loopback only; bounded in count and in time).

The whole product runs as in `make dev`: every function served by functions-framework,
state in Google's Firestore emulator, the reference CRM and the Google sandbox. Each
user connects through the onboarding link and Google's consent page, with two CRM
meetings and one Google event to sync first. Then, for `--seconds`, edits arrive at an
even pace, half in the CRM (each announced by a signed CRM event) and half in Google
Calendar (each announced by a push notification): the meeting's location is set to a
new value. Cycles travel as Cloud Tasks would carry them, after the 10-second debounce;
`--workers` run at once.

Printed: the setup, the burst (changes, the time they took), the notifications and
events answered, the tasks enqueued and the triggers the debounce folded into them, the
cycles run, Firestore operations per change, and the time from each record's last edit
to its arrival on the other side (p50 and p95, by the other side's own modification
time). It exits 1 when a change was lost or a meeting duplicated.

    python bench/load.py                                 # 1,000 users, 5,000 changes
    python bench/load.py --users 50 --changes 250 --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

from crmsync.queue.inline import InlineQueue  # noqa: E402
from sandbox.crm.seed import DEMO_TENANT  # noqa: E402
from sandbox.google.calendar import push_delivered  # noqa: E402
from sandbox.local.stack import LocalStack  # noqa: E402

TICK = 0.5  # seconds between two looks for due tasks
SETTLE_SECONDS = 600  # at most this long for the last cycles after the burst


@dataclass
class Meeting:
    subject: str
    crm_id: str = ""
    google_id: str = ""
    value: str = ""  # the location last written, on either side
    side: str = ""  # where it was last written
    at: datetime | None = None  # when


@dataclass
class User:
    id: str
    email: str
    meetings: list[Meeting] = field(default_factory=list)
    calendar: Any = None  # the user's own Google Calendar client


@dataclass
class Figures:
    cycles: collections.Counter[str] = field(default_factory=collections.Counter)
    tasks: int = 0
    answered: collections.Counter[str] = field(default_factory=collections.Counter)


class Load:
    def __init__(self, stack: LocalStack, workers: int) -> None:
        self.stack = stack
        self.queue: InlineQueue = stack.queue
        self.figures = Figures()
        self.pool = ThreadPoolExecutor(workers)
        self._lock = threading.Lock()

    def deliver_due(self, everything: bool = False) -> int:
        """Deliver the tasks that are due, as Cloud Tasks would; their count."""
        push_delivered(self.stack.google)
        now = datetime.now(UTC) + (timedelta(days=1) if everything else timedelta(0))
        due = self.queue.due(now)
        for task in due:
            self.stack.services.queue.forget(task.name)  # type: ignore[attr-defined]
        list(self.pool.map(self.deliver, due))
        return len(due)

    def deliver(self, task: Any) -> None:
        body = {"tenant": task.tenant, "connection": task.connection, "trigger": task.trigger}
        answer = requests.post(self.stack.functions_url + "/sync_worker", json=body, timeout=600)
        answer.raise_for_status()
        with self._lock:
            self.figures.tasks += 1
            self.figures.cycles[str(answer.json()["status"])] += 1

    def crm_edit(self, user: User, meeting: Meeting, value: str) -> None:
        self.stack.crm.update(DEMO_TENANT, "activity", meeting.crm_id, {"location": value})
        answer = self.stack.post_event(user.id, "activity", [meeting.crm_id])
        self.figures.answered[f"CRM event {answer.status_code}"] += 1

    def google_edit(self, user: User, meeting: Meeting, value: str) -> None:
        body = {"location": value}
        user.calendar.events().patch(
            calendarId="primary", eventId=meeting.google_id, body=body
        ).execute()
        self.figures.answered["Calendar edit (pushed)"] += 1


def soon(n: int) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1 + n % 5, hours=6 + n % 12)


def connect_users(stack: LocalStack, count: int, say: Any) -> list[User]:
    started = time.monotonic()
    people = []
    for n in range(count):
        user = User(f"l{n}", f"load{n}@demo.example")
        stack.crm.add_user(DEMO_TENANT, user.id, name=f"Load {user.id}", email=user.email)
        stack.google.add_account(user.email)
        for i in range(2):
            subject = f"Load meeting {i} of {user.id}"
            start = soon(n + i)
            fields = {
                "type": "meeting",
                "subject": subject,
                "start": start,
                "end": start + timedelta(minutes=30),
                "timezone": "UTC",
                "location": "first",
            }
            crm_id = stack.crm.create(DEMO_TENANT, "activity", fields, user.id)
            user.meetings.append(Meeting(subject, crm_id=crm_id, value="first"))
        user.calendar = stack.google_api("calendar", "v3", email=user.email)
        start = soon(n + 2)
        subject = f"Load meeting 2 of {user.id}"
        event = {
            "summary": subject,
            "location": "first",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
        }
        made = user.calendar.events().insert(calendarId="primary", body=event).execute()
        user.meetings.append(Meeting(subject, google_id=str(made["id"]), value="first"))
        stack.connect(user.id, email=user.email).raise_for_status()
        people.append(user)
        if (n + 1) % 100 == 0:
            say(f"  {n + 1} users connected, {time.monotonic() - started:.0f} s")
    return people


def pair(stack: LocalStack, people: list[User]) -> None:
    """Each meeting's id on the side it was not made on, by its subject."""
    crm = {r["subject"]: r["id"] for r in stack.crm.all(DEMO_TENANT, "activity")}
    for user in people:
        items = user.calendar.events().list(calendarId="primary").execute().get("items", [])
        google = {e["summary"]: e["id"] for e in items}
        for meeting in user.meetings:
            meeting.crm_id = meeting.crm_id or crm[meeting.subject]
            meeting.google_id = meeting.google_id or google[meeting.subject]


def burst(load: Load, people: list[User], changes: int, seconds: float) -> float:
    """`changes` edits, every other one in the CRM, at an even pace over `seconds`,
    while due tasks are delivered; returns the seconds they took."""
    done = threading.Event()

    def deliver_meanwhile() -> None:
        while not done.is_set():
            load.deliver_due()
            time.sleep(TICK)

    runner = threading.Thread(target=deliver_meanwhile, daemon=True)
    runner.start()
    started = time.monotonic()
    meetings = [(u, m) for u in people for m in u.meetings]
    for n in range(changes):
        user, meeting = meetings[(n * 7919) % len(meetings)]  # spread over users
        value = f"v{n}"
        side = "crm" if n % 2 == 0 else "google"
        meeting.value, meeting.side, meeting.at = value, side, datetime.now(UTC)
        if side == "crm":
            load.crm_edit(user, meeting, value)
        else:
            load.google_edit(user, meeting, value)
        pause = started + seconds * (n + 1) / changes - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    took = time.monotonic() - started
    done.set()
    runner.join()
    return took


def settle(load: Load) -> float:
    """Deliver the remaining tasks as they fall due; the seconds it took."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < SETTLE_SECONDS:
        if load.deliver_due() or load.queue.waiting:
            quiet = 0
        else:
            quiet += 1
            if quiet >= 4:
                break
        time.sleep(TICK)
    return time.monotonic() - started


def check(stack: LocalStack, people: list[User]) -> tuple[list[str], list[float]]:
    """Problems (a meeting lost, doubled, or not holding its last value on a side), and
    each edited meeting's seconds from its last edit to the other side's write."""
    problems: list[str] = []
    delays: list[float] = []
    crm = collections.defaultdict(list)
    for record in stack.crm.all(DEMO_TENANT, "activity"):
        crm[record["subject"]].append(record)
    database = stack.crm.database
    with database.transaction():  # when the CRM last wrote each record
        modified = {r.id: r.modified for r in database.records(DEMO_TENANT, "activity")}
    for user in people:
        items = user.calendar.events().list(calendarId="primary").execute().get("items", [])
        google = collections.defaultdict(list)
        for event in items:
            google[event["summary"]].append(event)
        for meeting in user.meetings:
            there = {"crm": crm[meeting.subject], "google": google[meeting.subject]}
            wrong = [
                f"{meeting.subject}: {len(f)} in {side}" for side, f in there.items() if len(f) != 1
            ]
            wrong += [
                f"{meeting.subject} in {side}: not {meeting.value!r}"
                for side, found in there.items()
                if len(found) == 1 and str(found[0].get("location", "")) != meeting.value
            ]
            problems += wrong
            if meeting.at is None or wrong:
                continue
            if meeting.side == "crm":
                updated = str(there["google"][0]["updated"]).replace("Z", "+00:00")
                arrived = datetime.fromisoformat(updated)
            else:
                arrived = modified[there["crm"][0]["id"]]
            delays.append((arrived - meeting.at).total_seconds())
    return problems, delays


def operations(stack: LocalStack) -> int:
    backend = stack.services.backend
    store = backend.store(DEMO_TENANT)
    return int(backend.reads + getattr(backend, "writes", 0) + store.reads + store.writes)


def run(users: int, changes: int, seconds: float, workers: int, say: Any) -> int:
    from google.cloud import firestore

    from crmsync.store.firestore import FirestoreBackend
    from sandbox.local.emulators import start_firestore

    logging.getLogger("crmsync").setLevel(logging.ERROR)  # the figures are the report
    emulator = start_firestore()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    client = firestore.Client(project=emulator.project)
    stack = LocalStack(FirestoreBackend(client), InlineQueue())
    load = Load(stack, workers)
    try:
        stack.create_demo_tenant()
        tenant = stack.services.backend.store(DEMO_TENANT)
        tenant.save_tenant_record({"seats": users})  # AUTH-6: the demo has ten
        say(f"load: {users:,} users, {changes:,} changes in {seconds:.0f} s, {workers} workers")
        started = time.monotonic()
        people = connect_users(stack, users, say)
        connected = time.monotonic() - started
        while load.deliver_due(everything=True):
            pass
        pair(stack, people)
        first = time.monotonic() - started - connected
        say(f"  setup: {users:,} users connected in {connected:.0f} s, synced in {first:.0f} s")
        load.figures = Figures()
        absorbed = stack.services.queue.absorbed  # type: ignore[attr-defined]
        refused = load.queue.refused
        ops = operations(stack)
        took = burst(load, people, changes, seconds)
        settled = settle(load)
        ops = operations(stack) - ops
        problems, delays = check(stack, people)
        figures = load.figures
        folded = stack.services.queue.absorbed - absorbed + load.queue.refused - refused  # type: ignore[attr-defined]
        say(f"  burst: {changes:,} changes in {took:.0f} s, the last cycles {settled:.0f} s after")
        say(f"  answered: {_counts(figures.answered)}")
        say(f"  tasks enqueued and run: {figures.tasks:,}; triggers folded into them: {folded:,}")
        say(f"  cycles: {_counts(figures.cycles)}")
        say(f"  Firestore operations per change: {ops / changes:.1f}")
        if delays:
            ordered = sorted(delays)
            p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            say(
                f"  last edit to the other side, {len(delays):,} meetings: "
                f"p50 {statistics.median(ordered):.1f} s, p95 {p95:.1f} s"
            )
        lost = sum(1 for p in problems if " 0 in " in p or "not " in p)
        doubled = sum(1 for p in problems if any(f" {n} in " in p for n in range(2, 9)))
        say(f"  lost: {lost}, duplicated: {doubled}, other: {len(problems) - lost - doubled}")
        for problem in problems[:20]:
            say(f"    {problem}")
        return 1 if problems else 0
    finally:
        load.pool.shutdown()
        stack.close()
        client.close()
        emulator.stop()


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counter.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--users", type=int, default=1000, help="connected users (1,000)")
    parser.add_argument("--changes", type=int, default=5000, help="edits in the burst (5,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the burst's length (60)")
    parser.add_argument("--workers", type=int, default=4, help="cycles at once (4)")
    args = parser.parse_args(argv)
    say = lambda line: print(line, flush=True)  # noqa: E731
    return run(args.users, args.changes, args.seconds, args.workers, say)


if __name__ == "__main__":
    sys.exit(main())
