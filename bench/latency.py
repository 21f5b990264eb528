"""How long an edit takes to reach the other side (RUN-3), over the local stack: the
Firestore emulator, the Cloud Tasks emulator delivering cycles to the sync_worker
function (functions-framework), the reference CRM, the Google and Microsoft sandboxes.

For each demo user (u1 on Google, u2 on Microsoft 365) it edits one record of each
kind, a group at a time, and waits until the other side shows the edit:

- CRM edits of a contact, a meeting and a to-do, announced by one signed CRM event;
- a Google Calendar edit (Calendar's push notification);
- Google contact and task edits (Google pushes neither: the poll brings them);
- Outlook edits of each kind (Graph's change notifications, delivered every second).

A group starts once its connection is quiet (no cycle running or waiting), so each
edit takes its own path; u1 and u2 run side by side. CRM events are POSTed to the
crm_events function as the CRM would send them (not through Pub/Sub). It prints
p50/p95 seconds per kind and direction next to the goals (Calendar and CRM edits within
15 s, contacts and to-dos within 2 minutes), then what an idle poll costs in Firestore
operations and requests, right after a to-do edit and two minutes later (Google Tasks
lists again what changed within two minutes; the bench waits that out).

The fan-out (crmsync's own, called in this process) runs every `--tick` seconds and
each run stands for one minute of the schedule (its clock runs 60/tick times as fast):
the 2-minute poll comes every second tick, the 15-minute full cycle every 15th.
Everything else (debounces, notifications, cycles) runs in real time.

    python bench/latency.py                          # --tick 5 --samples 5: ~7 minutes
    python bench/latency.py --tick 60 --samples 3    # the real schedule: ~15 minutes
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

from crmsync import service  # noqa: E402
from crmsync.queue import POLL  # noqa: E402

DEMO = "demo"
CONNECTIONS = {"u1": "google-u1", "u2": "microsoft-u2"}
FIELD = {"contact": "title", "activity": "subject", "todo": "subject"}
GOAL = {"calendar": 15.0, "crm": 15.0, "contacts and to-dos": 120.0}


@dataclasses.dataclass
class Probe:
    """One kind edited on one side: how to edit it and how to read it on the other."""

    kind: str
    direction: str  # "CRM → Google", ...
    path: str  # how the change travels
    goal: float  # seconds
    edit: Callable[[str], None]
    seen: Callable[[], str]
    seconds: list[float] = dataclasses.field(default_factory=list)
    edited: float = 0.0  # when it was last edited (monotonic seconds)


class CountingCrm:
    """WSGI middleware counting the requests that reach the reference CRM."""

    def __init__(self) -> None:
        self.requests = 0
        self.app: Any = None

    def wrap(self, app: Any) -> Any:
        self.app = app
        return self

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.requests += 1
        return self.app(environ, start_response)


class RealTime:
    """The stack's queue as the scaled fan-out reaches it: a cycle due on the scaled
    clock is due now."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        now = datetime.now(UTC)
        return bool(
            self.queue.enqueue(
                tenant, connection, name=name, not_before=min(not_before, now), trigger=trigger
            )
        )


def scheduler(local: Any, tick: float, stop: threading.Event) -> None:
    """Cloud Scheduler: the fan-out every `tick` seconds, each run a minute further on
    the schedule's clock."""
    began = datetime.now(UTC)
    speed = 60.0 / tick

    def scaled() -> datetime:
        return began + (datetime.now(UTC) - began) * speed

    services = dataclasses.replace(
        local.services, clock=scaled, queue=RealTime(local.services.queue)
    )
    while not stop.wait(tick):
        service.fanout(services)


# -- the bench's records ---------------------------------------------------------------------
def seed(local: Any) -> dict[str, dict[str, str]]:
    """A contact (in the user's sync group), a meeting and a to-do of each demo user,
    in the CRM before they connect; their CRM ids by user and kind."""
    tomorrow = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    tomorrow += timedelta(days=1)
    ids: dict[str, dict[str, str]] = {}
    for user in CONNECTIONS:
        contact = local.crm.create(
            DEMO,
            "contact",
            {"first_name": "Bench", "last_name": user, "emails": [f"bench-{user}@example.com"]},
            user,
        )
        local.crm.add_to_group(DEMO, user, contact)
        meeting = local.crm.create(
            DEMO,
            "activity",
            {
                "type": "meeting",
                "subject": f"Bench meeting {user}",
                "start": tomorrow.isoformat(),
                "end": (tomorrow + timedelta(minutes=30)).isoformat(),
                "timezone": "UTC",
            },
            user,
        )
        todo = local.crm.create(
            DEMO, "todo", {"subject": f"Bench to-do {user}", "due": date.today()}, user
        )
        ids[user] = {"contact": contact, "activity": meeting, "todo": todo}
    return ids


def twins(local: Any, user: str, crm_ids: dict[str, str]) -> dict[str, str]:
    """The provider ids the first cycle linked the user's records to."""
    store = local.services.backend.store(DEMO)
    found = {}
    for kind, crm_id in crm_ids.items():
        [link] = [k for k in store.links(CONNECTIONS[user], kind) if k.crm_id == crm_id]
        found[kind] = str(link.provider_id)
    return found


def crm_probe(local: Any, kind: str, crm_id: str, direction: str, seen: Callable[[], str]) -> Probe:
    def edit(value: str) -> None:
        local.crm.update(DEMO, kind, crm_id, {FIELD[kind]: value})

    return Probe(kind, direction, "CRM event", GOAL["crm"], edit, seen)


def crm_reader(local: Any, kind: str, crm_id: str) -> Callable[[], str]:
    return lambda: str((local.crm.get(DEMO, kind, crm_id) or {}).get(FIELD[kind], ""))


def google_groups(local: Any, crm: dict[str, str], ids: dict[str, str]) -> list[list[Probe]]:
    people = local.google_api("people", "v1").people()
    events = local.google_api("calendar", "v3").events()
    tasks = local.google_api("tasks", "v1").tasks()

    def person() -> dict[str, Any]:
        fields = "organizations,metadata"
        answer: dict[str, Any] = people.get(
            resourceName=ids["contact"], personFields=fields
        ).execute()
        return answer

    def read_contact() -> str:
        return str(((person().get("organizations") or [{}])[0]).get("title", ""))

    def edit_contact(value: str) -> None:
        body = {"etag": person()["etag"], "organizations": [{"title": value}]}
        people.updateContact(
            resourceName=ids["contact"], updatePersonFields="organizations", body=body
        ).execute()

    def read_event() -> str:
        return str(events.get(calendarId="primary", eventId=ids["activity"]).execute()["summary"])

    def edit_event(value: str) -> None:
        events.patch(
            calendarId="primary", eventId=ids["activity"], body={"summary": value}
        ).execute()

    def read_task() -> str:
        return str(tasks.get(tasklist="@default", task=ids["todo"]).execute()["title"])

    def edit_task(value: str) -> None:
        tasks.patch(tasklist="@default", task=ids["todo"], body={"title": value}).execute()

    to_google = "CRM → Google"
    from_google = "Google → CRM"
    polled = "contacts and to-dos"
    return [
        [
            crm_probe(local, "contact", crm["contact"], to_google, read_contact),
            crm_probe(local, "activity", crm["activity"], to_google, read_event),
            crm_probe(local, "todo", crm["todo"], to_google, read_task),
        ],
        [
            Probe(
                "activity",
                from_google,
                "Calendar push",
                GOAL["calendar"],
                edit_event,
                crm_reader(local, "activity", crm["activity"]),
            )
        ],
        [
            Probe(
                "contact",
                from_google,
                "poll",
                GOAL[polled],
                edit_contact,
                crm_reader(local, "contact", crm["contact"]),
            ),
            Probe(
                "todo",
                from_google,
                "poll",
                GOAL[polled],
                edit_task,
                crm_reader(local, "todo", crm["todo"]),
            ),
        ],
    ]


def outlook_groups(local: Any, crm: dict[str, str], ids: dict[str, str]) -> list[list[Probe]]:
    lists = local.outlook("GET", "me/todo/lists")["value"]
    [default] = [item["id"] for item in lists if item.get("wellknownListName") == "defaultList"]
    paths = {
        "contact": f"me/contacts/{ids['contact']}",
        "activity": f"me/events/{ids['activity']}",
        "todo": f"me/todo/lists/{default}/tasks/{ids['todo']}",
    }
    names = {"contact": "jobTitle", "activity": "subject", "todo": "title"}

    def reader(kind: str) -> Callable[[], str]:
        return lambda: str(local.outlook("GET", paths[kind]).get(names[kind]) or "")

    def editor(kind: str) -> Callable[[str], None]:
        return lambda value: local.outlook("PATCH", paths[kind], json={names[kind]: value})

    goals = {"contact": GOAL["contacts and to-dos"], "activity": GOAL["calendar"]}
    return [
        [crm_probe(local, k, crm[k], "CRM → Outlook", reader(k)) for k in FIELD],
        [
            Probe(
                k,
                "Outlook → CRM",
                "Graph notification",
                goals.get(k, GOAL["contacts and to-dos"]),
                editor(k),
                crm_reader(local, k, crm[k]),
            )
            for k in FIELD
        ],
    ]


# -- measuring ---------------------------------------------------------------------------------
def waiting_tasks(client: Any, queue: str) -> set[str]:
    """The connections with a task in the Cloud Tasks emulator."""
    found = set()
    for task in client.list_tasks(request={"parent": queue}):
        body = json.loads(task.http_request.body or b"{}")
        found.add(str(body.get("connection")))
    return found


def quiet(local: Any, tasks: Any, queue: str, connection: str, seconds: float = 1.5) -> None:
    """Wait until the connection has had no cycle running or waiting, and no push or
    notification on its way, for `seconds`."""
    from sandbox.google.calendar import push_delivered
    from sandbox.microsoft.subscriptions import pending

    store = local.services.backend.store(DEMO)
    calm = time.monotonic()
    deadline = calm + 300
    while time.monotonic() - calm < seconds:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{connection} never became quiet")
        busy = (
            store.lease_holder(connection) is not None
            or connection in waiting_tasks(tasks, queue)
            or not push_delivered(local.google, 0.05)
            or bool(pending(local.microsoft))
        )
        if busy:
            calm = time.monotonic()
        time.sleep(0.1)


def measure(
    local: Any,
    tasks: Any,
    queue: str,
    user: str,
    groups: list[list[Probe]],
    samples: int,
    tick: float,
) -> None:
    """Each group `samples` times: edit its records (those a poll brings at a random
    moment of the poll interval), announce CRM edits with a CRM event, then wait until
    each edit shows on the other side."""
    chance = random.Random(user)
    for n in range(samples):
        for group in groups:
            quiet(local, tasks, queue, CONNECTIONS[user])
            if any(probe.path == "poll" for probe in group):  # users edit out of step
                time.sleep(chance.uniform(0, 2 * tick))  # with the polls
            edited: dict[int, float] = {}
            value = f"{user}-{n}-{time.monotonic_ns()}"
            for i, probe in enumerate(group):
                probe.edit(f"{value} {probe.kind}")
                edited[i] = probe.edited = time.monotonic()
            if any(probe.path == "CRM event" for probe in group):
                answer = local.post_event(user, group[0].kind, [])
                assert answer.status_code == 202, answer.text
            waiting = dict(edited)
            deadline = time.monotonic() + 300
            while waiting and time.monotonic() < deadline:
                for i in list(waiting):
                    if group[i].seen() == f"{value} {group[i].kind}":
                        group[i].seconds.append(time.monotonic() - waiting.pop(i))
                time.sleep(0.1)
            for i in waiting:
                print(f"  missed: {group[i].kind} {group[i].direction}", flush=True)


def idle_poll_cost(
    local: Any,
    counting: CountingCrm,
    triggers: tuple[str, ...] = (POLL, "schedule"),
    label: str = "",
) -> dict[str, Any]:
    """An idle poll of u1's Google connection, run as the worker runs it: its
    Firestore operations, requests to Google and the CRM, and seconds; and an idle
    full cycle's, to compare (each the last of three)."""
    backend = local.services.backend
    stores = [backend.store(DEMO), backend.store("")]
    rows: dict[str, Any] = {}
    for trigger in triggers:
        for _ in range(3):
            reads = sum(s.reads for s in stores)
            writes = sum(s.writes for s in stores)
            google = sum(local.google.requests.values())
            crm = counting.requests
            started = time.perf_counter()
            run = service.work(local.services, DEMO, CONNECTIONS["u1"], trigger)
            rows[trigger + label] = {
                "status": str(run["status"]),
                "reads": sum(s.reads for s in stores) - reads,
                "writes": sum(s.writes for s in stores) - writes,
                "Google requests": sum(local.google.requests.values()) - google,
                "CRM requests": counting.requests - crm,
                "s": round(time.perf_counter() - started, 3),
            }
    return rows


def last_task_edit(groups: list[list[Probe]]) -> float:
    """When the bench last edited a task in Google (monotonic seconds)."""
    edits = [p.edited for group in groups for p in group if p.kind == "todo" and p.edited]
    return max(edits, default=0.0)


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(probes: list[Probe], tick: float, counts: dict[str, int], idle: dict[str, Any]) -> None:
    speed = 60.0 / tick
    poll_seconds = 2 * tick
    print()
    print("seconds from an edit to its arrival on the other side")
    header = f"  {'kind':<9}{'direction':<16}{'path':<20}{'n':>3}{'p50':>8}{'p95':>8}  goal"
    print(header)
    for probe in probes:
        values = probe.seconds
        if not values:
            print(f"  {probe.kind:<9}{probe.direction:<16}{probe.path:<20}  0  (none arrived)")
            continue
        p50, p95 = percentile(values, 50), percentile(values, 95)
        verdict = "met" if p95 <= probe.goal else "MISSED"
        print(
            f"  {probe.kind:<9}{probe.direction:<16}{probe.path:<20}{len(values):>3}"
            f"{p50:>8.1f}{p95:>8.1f}  ≤ {probe.goal:.0f} s: {verdict}"
        )
    print()
    if speed != 1:
        print(
            f"scaled: the fan-out ran every {tick:g} s, each run standing for a minute of the "
            f"schedule (its clock ×{speed:g}): polls came every {poll_seconds:g} s instead of "
            f"every 2 minutes, full cycles every {15 * tick:g} s instead of 15 minutes."
        )
        print(
            "At the real schedule a polled edit waits up to 2 minutes for the poll "
            f"(on average 1), instead of up to {poll_seconds:g} s: add about "
            f"{(120 - poll_seconds) / 2:.0f} s to the polled rows' p50 and "
            f"{0.95 * (120 - poll_seconds):.0f} s to their p95."
        )
        print("Notifications, debounces (10 s) and cycles ran in real time.")
    print()
    shown = ", ".join(f"{trigger} {n}" for trigger, n in sorted(counts.items()))
    print(f"cycles recorded meanwhile, by trigger: {shown} (an idle poll records none)")
    print()
    print(
        "an idle poll of the Google connection, right after the last to-do edit and two "
        "minutes later, and an idle full cycle (Firestore emulator; worker only)"
    )
    for trigger, row in idle.items():
        shown = "  ".join(f"{k}={v}" for k, v in row.items())
        print(f"  {trigger:<15} {shown}")


def runs_by_trigger(local: Any, since: datetime) -> dict[str, int]:
    store = local.services.backend.store(DEMO)
    counts: dict[str, int] = {}
    for connection in CONNECTIONS.values():
        for run in store.runs(connection):
            if run["started"] >= since:
                counts[run["trigger"]] = counts.get(run["trigger"], 0) + 1
    return counts


@dataclasses.dataclass
class Stack:
    local: Any
    tasks: Any  # a client of the Cloud Tasks emulator
    queue: str
    counting: CountingCrm


def start(resources: ExitStack) -> Stack:
    """The local stack on the emulators, the demo tenant, the bench's records; u1 and
    u2 connected and through their first cycles."""
    from google.cloud import firestore

    from crmsync.logs import configure_logging
    from crmsync.queue.cloud_tasks import CloudTasksQueue, emulator_client
    from crmsync.store.firestore import FirestoreBackend
    from sandbox.local.cloud_tasks import LOCAL_QUEUE, start_cloud_tasks
    from sandbox.local.emulators import free_port, start_firestore
    from sandbox.local.stack import LocalStack

    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    configure_logging(open(os.devnull, "w"))  # noqa: SIM115 - the product's own logs
    firestore_emulator = resources.enter_context(start_firestore())
    tasks_emulator = resources.enter_context(start_cloud_tasks())
    os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator.host
    port = free_port()
    client = emulator_client(tasks_emulator.host)
    queue = CloudTasksQueue(client, LOCAL_QUEUE, f"http://127.0.0.1:{port}/sync_worker")
    backend = FirestoreBackend(firestore.Client(project=firestore_emulator.project))
    counting = CountingCrm()
    local = LocalStack(backend, queue, functions_port=port, crm_wrap=counting.wrap)
    resources.callback(local.close)
    local.create_demo_tenant()
    return Stack(local, client, LOCAL_QUEUE, counting)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between fan-outs")
    parser.add_argument("--samples", type=int, default=5, help="edits per kind and direction")
    args = parser.parse_args(argv)
    with ExitStack() as resources:
        bench = start(resources)
        local = bench.local
        crm_ids = seed(local)
        for user, provider in (("u1", "google"), ("u2", "microsoft")):
            answer = local.connect(user, provider=provider)
            assert answer.status_code == 200, answer.text
        for user, connection in CONNECTIONS.items():
            quiet(local, bench.tasks, bench.queue, connection)
            runs = local.services.backend.store(DEMO).runs(connection)
            assert any(r["status"] == "ok" for r in runs), (user, runs)
        groups = {
            "u1": google_groups(local, crm_ids["u1"], twins(local, "u1", crm_ids["u1"])),
            "u2": outlook_groups(local, crm_ids["u2"], twins(local, "u2", crm_ids["u2"])),
        }
        stop = threading.Event()
        fanout = threading.Thread(target=scheduler, args=(local, args.tick, stop), daemon=True)
        fanout.start()
        time.sleep(args.tick)  # the first fan-out: each connection's first scheduled cycle
        for connection in CONNECTIONS.values():
            quiet(local, bench.tasks, bench.queue, connection)
        print(f"measuring: {args.samples} samples, fan-out every {args.tick:g} s", flush=True)
        since = datetime.now(UTC)
        users = [
            threading.Thread(
                target=measure,
                args=(local, bench.tasks, bench.queue, user, groups[user], args.samples, args.tick),
            )
            for user in CONNECTIONS
        ]
        for thread in users:
            thread.start()
        for thread in users:
            thread.join()
        stop.set()
        fanout.join()
        counts = runs_by_trigger(local, since)
        quiet(local, bench.tasks, bench.queue, CONNECTIONS["u1"])
        idle = idle_poll_cost(local, bench.counting)
        # Google Tasks has no change feed: a listing shows again what changed within its
        # last two minutes, and the poll then looks up those links. Idle proper is later.
        time.sleep(max(0.0, 135 - (time.monotonic() - last_task_edit(groups["u1"]))))
        later = idle_poll_cost(local, bench.counting, (POLL,), " later")
        idle = {POLL: idle[POLL], **later, "schedule": idle["schedule"]}
        probes = [probe for user in CONNECTIONS for group in groups[user] for probe in group]
        report(probes, args.tick, counts, idle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
