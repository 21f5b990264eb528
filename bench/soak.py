"""`make soak`: several users sync for a few minutes while Google and the CRM fail.

The whole product runs as in `make dev`: every function served by functions-framework,
state in Google's Firestore emulator, the reference CRM and the Google sandbox. Cycles
travel as Cloud Tasks would carry them (a 5xx answer is retried with backoff), the
scheduler's fan-out runs every few seconds (each user syncs every minute), CRM edits
send signed events and Calendar edits push notifications. Meanwhile each user edits
records on both sides, and the Google sandbox and the reference CRM fail crmsync's
requests at a set rate: 429 with Retry-After, 500, 503, timeouts, 410 on sync tokens
and cursors, 412 on writes, and invalid_grant on refreshes (access tokens last five
minutes here, so every cycle refreshes; a refused grant is revoked, and the user
reconnects as they would, through their onboarding link).

Then the faults stop, the connections settle, and both sides are compared with what
the users did: every record that should exist exists once on each side, none that was
deleted came back, and each edited field holds the last value written. It prints the
figures and exits 1 when anything was lost, duplicated or left different.

    python bench/soak.py                             # 3 minutes, 4 users, 10 % faults
    python bench/soak.py --minutes 10 --users 8 --rate 0.2 --seed 7
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

from crmsync.queue.inline import InlineQueue  # noqa: E402
from sandbox.chaos import Chaos  # noqa: E402
from sandbox.crm.chaos import ChaosMiddleware  # noqa: E402
from sandbox.crm.seed import DEMO_TENANT  # noqa: E402
from sandbox.google.calendar import push_delivered  # noqa: E402
from sandbox.local.stack import CLIENT_ID, LocalStack  # noqa: E402

KINDS = ("contact", "activity", "todo")
FANOUT_EVERY = 5.0  # seconds between calls of the scheduler's fan-out
TASK_BACKOFF = 2.0  # seconds before a task answered 5xx is tried again (Cloud Tasks)
EDIT_PAUSE = 0.5  # seconds between two rounds of edits (one edit per user each)


@dataclass
class Record:
    """What the soak's users believe of one record: its key on both sides, its id on
    the side it was made, and the last value written to its edited field."""

    kind: str
    key: str
    origin: str  # "crm" or "google"
    origin_id: str
    value: str
    deleted: bool = False


@dataclass
class User:
    id: str
    email: str
    records: list[Record] = field(default_factory=list)


@dataclass
class Figures:
    cycles: collections.Counter[str] = field(default_factory=collections.Counter)
    task_retries: int = 0
    reconnects: int = 0
    edits: collections.Counter[str] = field(default_factory=collections.Counter)
    settle_rounds: int = 0


class Soak:
    def __init__(self, stack: LocalStack, users: list[User], rng: random.Random) -> None:
        self.stack = stack
        self.users = users
        self.rng = rng
        self.figures = Figures()
        self.queue: InlineQueue = stack.queue
        self.serial = 0
        self.retrying: list[tuple[float, Any]] = []

    # -- what the users do ----------------------------------------------------------------
    def edit(self, user: User) -> None:
        """One edit, on one side, of one kind: a create, an update or a delete."""
        origin = self.rng.choice(("crm", "crm", "google"))
        kinds = KINDS if origin == "crm" else ("activity", "todo")
        kind = self.rng.choice(kinds)
        mine = [r for r in user.records if r.kind == kind and r.origin == origin and not r.deleted]
        action = self.rng.choice(("create", "create", "update", "update", "delete"))
        if not mine:
            action = "create"
        self.figures.edits[f"{origin} {action}"] += 1
        if action == "create":
            self.create(user, origin, kind)
            return
        record = self.rng.choice(mine)
        if action == "update":
            record.value = f"v{self.next()}"
        else:
            record.deleted = True
        if origin == "crm":
            self.crm_edit(user, record, action)
        else:
            self.google_edit(user, record, action)

    def next(self) -> int:
        self.serial += 1
        return self.serial

    def create(self, user: User, origin: str, kind: str) -> None:
        n = self.next()
        key = f"Soak {kind} {n} of {user.id}"
        value = f"v{n}"
        if origin == "google":
            made = self.google_create(user, kind, key, value, n)
        else:
            made = self.crm_create(user, kind, key, value, n)
        user.records.append(Record(kind, key, origin, made, value))

    def crm_create(self, user: User, kind: str, key: str, value: str, n: int) -> str:
        crm = self.stack.crm
        if kind == "contact":
            first, last = key.split(" of ")
            fields: dict[str, Any] = {"first_name": first, "last_name": last, "title": value}
        elif kind == "activity":
            start = _soon(n)
            fields = {
                "type": "meeting",
                "subject": key,
                "start": start,
                "end": start + timedelta(minutes=30),
                "timezone": "UTC",
                "location": value,
            }
        else:
            fields = {"subject": key, "due": _soon(n).date(), "notes": value}
        record_id = crm.create(DEMO_TENANT, kind, fields, user.id)
        if kind == "contact":
            crm.add_to_group(DEMO_TENANT, user.id, record_id)
        self.stack.post_event(user.id, kind, [record_id])
        return record_id

    def crm_edit(self, user: User, record: Record, action: str) -> None:
        crm = self.stack.crm
        if action == "delete":
            crm.delete(DEMO_TENANT, record.kind, record.origin_id)
        else:
            edited = {"contact": "title", "activity": "location", "todo": "notes"}[record.kind]
            crm.update(DEMO_TENANT, record.kind, record.origin_id, {edited: record.value})
        self.stack.post_event(user.id, record.kind, [record.origin_id])

    def google_create(self, user: User, kind: str, key: str, value: str, n: int) -> str:
        if kind == "activity":
            start = _soon(n)
            body = {
                "summary": key,
                "location": value,
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
            }
            events = self.google(user, "calendar", "v3").events()
            return str(events.insert(calendarId="primary", body=body).execute()["id"])
        tasks = self.google(user, "tasks", "v1").tasks()
        due = _soon(n).date().isoformat() + "T00:00:00.000Z"
        body = {"title": key, "notes": value, "due": due}
        return str(tasks.insert(tasklist="@default", body=body).execute()["id"])

    def google_edit(self, user: User, record: Record, action: str) -> None:
        if record.kind == "activity":
            events = self.google(user, "calendar", "v3").events()
            if action == "delete":
                events.delete(calendarId="primary", eventId=record.origin_id).execute()
            else:
                body = {"location": record.value}
                events.patch(calendarId="primary", eventId=record.origin_id, body=body).execute()
            return
        tasks = self.google(user, "tasks", "v1").tasks()
        if action == "delete":
            tasks.delete(tasklist="@default", task=record.origin_id).execute()
        else:
            body = {"notes": record.value}
            tasks.patch(tasklist="@default", task=record.origin_id, body=body).execute()

    def google(self, user: User, api: str, version: str) -> Any:
        return self.stack.google_api(api, version, email=user.email)

    # -- what the platform does -----------------------------------------------------------
    def fanout(self) -> None:
        answer = requests.post(self.stack.functions_url + "/scheduler_fanout", timeout=60)
        answer.raise_for_status()

    def run_tasks(self, pool: ThreadPoolExecutor, *, everything: bool = False) -> int:
        """Deliver the tasks that are due (all of them when settling), as Cloud Tasks
        would: a 5xx answer is delivered again after a backoff."""
        push_delivered(self.stack.google)
        now = datetime.now(UTC) + (timedelta(days=1) if everything else timedelta(0))
        due = self.queue.due(now)
        again = [task for at, task in self.retrying if at <= time.monotonic() or everything]
        self.retrying = [(at, t) for at, t in self.retrying if t not in again]
        for task in due:
            self.stack.services.queue.forget(task.name)  # type: ignore[attr-defined]
        answers = list(pool.map(self.deliver, [*due, *again]))
        return len(answers)

    def deliver(self, task: Any) -> None:
        body = {"tenant": task.tenant, "connection": task.connection, "trigger": task.trigger}
        answer = requests.post(self.stack.functions_url + "/sync_worker", json=body, timeout=600)
        if answer.status_code >= 500:
            self.figures.task_retries += 1
            self.retrying.append((time.monotonic() + TASK_BACKOFF, task))
            return
        answer.raise_for_status()
        self.figures.cycles[str(answer.json()["status"])] += 1

    def reconnect(self) -> None:
        """Users whose grant was refused open their onboarding link again."""
        store = self.stack.services.backend.store(DEMO_TENANT)
        for user in self.users:
            record = store.connection_record(f"google-{user.id}")
            if record is not None and record["status"] == "needs_reauth":
                answer = self.stack.connect(user.id, email=user.email)
                if answer.status_code == 200:
                    self.figures.reconnects += 1

    def settle(self, pool: ThreadPoolExecutor, rounds: int = 12) -> None:
        """Cycles until every connection has a cycle with nothing to do, twice."""
        quiet = 0
        admin = {"Authorization": f"Bearer {self.stack.admin_token}"}  # type: ignore[attr-defined]
        for _ in range(rounds):
            self.figures.settle_rounds += 1
            self.reconnect()
            for user in self.users:
                url = self.stack.functions_url + f"/admin/sync/google-{user.id}"
                requests.post(url, headers=admin, timeout=60)
            before = self.stack.services.backend.store(DEMO_TENANT).connection_records()
            while self.run_tasks(pool, everything=True):
                pass
            if _all_idle(self.stack, before):
                quiet += 1
                if quiet == 2:
                    return
            else:
                quiet = 0

    # -- are the two sides what the users made them? -------------------------------------
    def problems(self) -> list[str]:
        found: list[str] = []
        for user in self.users:
            for kind in KINDS:
                crm = crm_side(self.stack, user, kind)
                google = google_side(self.stack, user, kind)
                wanted = {r.key: r.value for r in user.records if r.kind == kind and not r.deleted}
                gone = {r.key for r in user.records if r.kind == kind and r.deleted}
                for side, seen in (("CRM", crm), ("Google", google)):
                    counts = collections.Counter(key for key, _ in seen)
                    values = dict(seen)
                    for key, value in wanted.items():
                        if counts[key] == 0:
                            found.append(f"lost in {side}: {key}")
                        elif values[key] != value:
                            found.append(f"{side} {key}: {values[key]!r}, wanted {value!r}")
                    found += [f"twice in {side}: {k}" for k, n in counts.items() if n > 1]
                    found += [f"back in {side}: {k}" for k in gone if counts[k]]
        return found


def crm_side(stack: LocalStack, user: User, kind: str) -> list[tuple[str, str]]:
    """(key, edited value) of the user's soak records in the CRM."""
    records = stack.crm.all(DEMO_TENANT, kind)
    if kind == "contact":
        grouped = set(stack.crm.group(DEMO_TENANT, user.id))
        return [
            (f"{r['first_name']} of {r['last_name']}", str(r.get("title", "")))
            for r in records
            if r["id"] in grouped and str(r.get("first_name", "")).startswith("Soak")
        ]
    edited = "location" if kind == "activity" else "notes"
    return [
        (str(r["subject"]), str(r.get(edited, "")))
        for r in records
        if r.get("owner") == user.id and str(r.get("subject", "")).startswith("Soak")
    ]


def google_side(stack: LocalStack, user: User, kind: str) -> list[tuple[str, str]]:
    """(key, edited value) of the soak records in the user's Google account."""
    if kind == "contact":  # those under the "CRM" label (CON-6: a delete removes it)
        api = stack.google_api("people", "v1", email=user.email)
        groups = api.contactGroups().list(pageSize=1000).execute().get("contactGroups", [])
        labels = {g["resourceName"] for g in groups if g.get("name") == "CRM"}
        listed = (
            api.people()
            .connections()
            .list(
                resourceName="people/me",
                personFields="names,organizations,memberships",
                pageSize=1000,
            )
        )
        found = []
        for person in listed.execute().get("connections", []):
            name = (person.get("names") or [{}])[0]
            title = (person.get("organizations") or [{}])[0].get("title", "")
            member = {
                m.get("contactGroupMembership", {}).get("contactGroupResourceName")
                for m in person.get("memberships", [])
            }
            if str(name.get("givenName", "")).startswith("Soak") and member & labels:
                found.append((f"{name['givenName']} of {name.get('familyName', '')}", title))
        return found
    if kind == "activity":
        events = stack.google_api("calendar", "v3", email=user.email).events()
        items = events.list(calendarId="primary", maxResults=2500).execute().get("items", [])
        return [
            (str(e["summary"]), str(e.get("location", "")))
            for e in items
            if str(e.get("summary", "")).startswith("Soak")
        ]
    tasks = stack.google_api("tasks", "v1", email=user.email).tasks()
    items = tasks.list(tasklist="@default", maxResults=100, showHidden=True).execute()
    return [
        (str(t["title"]), str(t.get("notes", "")))
        for t in items.get("items", [])
        if str(t.get("title", "")).startswith("Soak") and not t.get("deleted")
    ]


def _all_idle(stack: LocalStack, before: list[dict[str, Any]]) -> bool:
    """Every connection active, and its last run ok and a new one since `before`."""
    earlier = {r["id"]: (r.get("last_run") or {}).get("id") for r in before}
    store = stack.services.backend.store(DEMO_TENANT)
    for record in store.connection_records():
        last = record.get("last_run") or {}
        if record["status"] != "active" or last.get("status") != "ok":
            return False
        if last.get("id") == earlier.get(record["id"]):
            return False
        quiet = record.get("quiet") or {}
        if quiet.get("ended") == last.get("ended"):
            continue  # folded into the record's entry of quiet runs (HIS-1): it changed nothing
        [run] = [r for r in store.runs(record["id"]) if r["id"] == last["id"]]
        if any(n for counts in run.get("counts", {}).values() for n in counts.values()):
            return False
    return True


def _soon(n: int) -> datetime:
    """A start within the next days, on the hour, different for each record."""
    today = datetime.combine(date.today(), datetime.min.time(), UTC)
    return today + timedelta(days=1 + n % 5, hours=6 + n % 12)


def run(minutes: float, users: int, rate: float, seed: int, say: Callable[[str], None]) -> int:
    from google.cloud import firestore

    from crmsync.store.firestore import FirestoreBackend
    from sandbox.local.emulators import start_firestore

    logging.getLogger("crmsync").setLevel(logging.ERROR)  # the figures are the report
    emulator = start_firestore()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    client = firestore.Client(project=emulator.project)
    google_chaos = Chaos(rate, seed=seed)
    crm_chaos = Chaos(rate, seed=seed + 1)
    middleware: list[ChaosMiddleware] = []

    def wrap(app: Any) -> Any:
        middleware.append(ChaosMiddleware(app))
        return middleware[0]

    stack = LocalStack(FirestoreBackend(client), InlineQueue(), crm_wrap=wrap)
    try:
        stack.google.token_seconds = 300  # every cycle refreshes: invalid_grant can strike
        # every minute; the mass-delete guard (SYN-6) is not what this soak is about
        stack.admin_token = stack.create_demo_tenant(  # type: ignore[attr-defined]
            frequency_minutes=1, mass_delete_min=1_000_000
        )
        people = [User(f"s{n}", f"soak{n}@demo.example") for n in range(1, users + 1)]
        for user in people:
            stack.crm.add_user(DEMO_TENANT, user.id, name=f"Soak {user.id}", email=user.email)
            stack.google.add_account(user.email)
            answer = stack.connect(user.id, email=user.email)
            answer.raise_for_status()
        rng = random.Random(seed)
        soak = Soak(stack, people, rng)
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            soak.run_tasks(pool, everything=True)  # the first cycles, before any fault
            stack.google.chaos, stack.google.chaos_client = google_chaos, CLIENT_ID
            middleware[0].chaos = crm_chaos
            fanned = 0.0
            while time.monotonic() - started < minutes * 60:
                for user in people:
                    soak.edit(user)
                if time.monotonic() - fanned > FANOUT_EVERY:
                    soak.fanout()
                    fanned = time.monotonic()
                soak.run_tasks(pool)
                soak.reconnect()
                time.sleep(EDIT_PAUSE)
            stack.google.chaos = None
            middleware[0].chaos = None
            soaked = time.monotonic() - started
            soak.settle(pool)
        problems = soak.problems()
        report(say, soak, people, google_chaos, crm_chaos, soaked, rate, problems)
        return 1 if problems else 0
    finally:
        stack.close()
        client.close()
        emulator.stop()


def report(
    say: Callable[[str], None],
    soak: Soak,
    people: list[User],
    google: Chaos,
    crm: Chaos,
    seconds: float,
    rate: float,
    problems: list[str],
) -> None:
    figures = soak.figures
    records = sum(len(u.records) for u in people)
    kept = sum(1 for u in people for r in u.records if not r.deleted)
    say(f"soak: {len(people)} users, {seconds:.0f} s under faults at {rate:.0%}")
    say(f"  edits by the users: {sum(figures.edits.values())} ({_counts(figures.edits)})")
    say(f"  cycles: {sum(figures.cycles.values())} ({_counts(figures.cycles)})")
    say(f"  Google faults: {google.total()} of {google.requests} ({_counts(google.counts)})")
    say(f"  CRM faults: {crm.total()} of {crm.requests} ({_counts(crm.counts)})")
    say(f"  tasks retried after a 5xx: {figures.task_retries}")
    say(f"  users who reconnected after invalid_grant: {figures.reconnects}")
    say(f"  settled in {figures.settle_rounds} rounds without faults")
    say(f"  records made: {records}, kept: {kept}, deleted: {records - kept}")
    lost = sum(1 for p in problems if p.startswith("lost"))
    twice = sum(1 for p in problems if p.startswith("twice"))
    say(f"  lost: {lost}, duplicated: {twice}, other differences: {len(problems) - lost - twice}")
    for problem in problems[:20]:
        say(f"    {problem}")
    say("  the two sides agree" if not problems else "  THE TWO SIDES DO NOT AGREE")


def _counts(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items())) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--minutes", type=float, default=3.0, help="time under faults (3)")
    parser.add_argument("--users", type=int, default=4, help="users syncing at once (4)")
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests failed (0.1)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed, the same faults (1)")
    args = parser.parse_args(argv)
    return run(args.minutes, args.users, args.rate, args.seed, lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(main())
