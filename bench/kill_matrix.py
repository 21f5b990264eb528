"""The kill matrix: a worker process killed (SIGKILL) at sampled write points of a large
cycle, and what it takes to recover, with nothing lost and nothing duplicated.

Each row is one fresh world: Google's Firestore emulator, the reference CRM with the
demo tenant, the Google sandbox, user u1 connected and synced. Then N new activities
are made on one side ("to Google": in the CRM, so the cycle inserts N Calendar events;
"to CRM": in Google, so the cycle creates N CRM activities), a task is handed to a
`sync_worker` process of its own (functions-framework, as deployed), and the process is
killed once the side being written has taken the sampled number of writes.

The connection is then free again when the dead run's lease expires (it renews every
30 s of work and lasts two minutes; the figure is measured from the lease kept in
Firestore), and the retried task runs the next cycle: it marks the dead run
interrupted, finishes what the journal holds, and converges. The recovering cycles run
with the clock moved past the lease's expiry instead of waiting for it. Each row then
counts the records on both sides: every one of the N exactly once.

    python bench/kill_matrix.py                          # 200 records, 4 points, both ways
    python bench/kill_matrix.py --records 40 --points 2 --directions to-google
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

from crmsync.queue.inline import InlineQueue  # noqa: E402
from sandbox.crm.seed import DEMO_TENANT  # noqa: E402
from sandbox.local.stack import LocalStack, function_process, kill  # noqa: E402

CONNECTION = "google-u1"
WRITES = ("POST", "PUT", "PATCH", "DELETE")
PREFIX = "Kill"


@dataclass
class Row:
    direction: str
    records: int
    killed_after: int  # writes the side being written had taken when the kill came
    lease_free_after: float  # seconds from the kill until the dead run's lease expired
    recovery_seconds: float  # the recovering cycles, until both sides agree
    interrupted: bool  # the dead run shows as interrupted in the history
    google: int  # the N records as found in Google (each once: N)
    crm: int  # ... and in the CRM
    duplicates: int
    lost: int


class CountingWrites:
    """WSGI middleware: counts the CRM's write requests (the worker's writes to it)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.writes = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") in WRITES:
            with self.lock:
                self.writes += 1
        return self.app(environ, start_response)


def one_row(client: Any, project: str, direction: str, records: int, kill_at: int) -> Row:
    from crmsync.store.firestore import FirestoreBackend

    counters: list[CountingWrites] = []

    def wrap(app: Any) -> Any:
        counters.append(CountingWrites(app))
        return counters[0]

    stack = LocalStack(FirestoreBackend(client), InlineQueue(), crm_wrap=wrap)
    try:
        stack.create_demo_tenant(mass_delete_min=1_000_000)
        stack.connect("u1").raise_for_status()
        drain(stack)  # the demo data, synced before the measured cycle
        make_records(stack, direction, records)
        written = (
            (lambda: google_writes(stack))
            if direction == "to-google"
            else lambda: counters[0].writes
        )
        killed_after, killed_at = kill_worker_after(stack, project, written, kill_at)
        store = stack.services.backend.store(DEMO_TENANT)
        dead = store.connection_record(CONNECTION)["last_run"]["id"]
        lease = client.document(f"tenants/{DEMO_TENANT}/connections/{CONNECTION}").get()
        expires = lease.to_dict()["lease"]["expires"]
        free_after = (expires - killed_at).total_seconds()
        stack.services.clock = lambda: datetime.now(UTC) + timedelta(seconds=free_after + 1)
        started = time.monotonic()
        deliver(stack, "retry")  # Cloud Tasks tries the killed task again
        drain(stack)
        recovery = time.monotonic() - started
        [run] = [r for r in store.runs(CONNECTION) if r["id"] == dead]
        in_google = collections.Counter(google_subjects(stack))
        in_crm = collections.Counter(crm_subjects(stack))
        wanted = {f"{PREFIX} {i}" for i in range(records)}
        duplicates = sum(n - 1 for side in (in_google, in_crm) for n in side.values())
        lost = len(wanted - set(in_google)) + len(wanted - set(in_crm))
        return Row(
            direction,
            records,
            killed_after,
            free_after,
            recovery,
            run["status"] == "interrupted",
            sum(in_google.values()),
            sum(in_crm.values()),
            duplicates,
            lost,
        )
    finally:
        stack.close()


def make_records(stack: LocalStack, direction: str, records: int) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    if direction == "to-google":
        for i in range(records):
            when = start + timedelta(minutes=30 * i)
            stack.crm.create(
                DEMO_TENANT,
                "activity",
                {
                    "type": "meeting",
                    "subject": f"{PREFIX} {i}",
                    "start": when,
                    "end": when + timedelta(minutes=30),
                    "timezone": "UTC",
                },
                "u1",
            )
        return
    events = stack.google_api("calendar", "v3").events()
    for i in range(records):
        when = start + timedelta(minutes=30 * i)
        body = {
            "summary": f"{PREFIX} {i}",
            "start": {"dateTime": when.isoformat()},
            "end": {"dateTime": (when + timedelta(minutes=30)).isoformat()},
        }
        events.insert(calendarId="primary", body=body).execute()


def kill_worker_after(
    stack: LocalStack, project: str, written: Callable[[], int], kill_at: int
) -> tuple[int, datetime]:
    """Hand a task to a worker process of its own; SIGKILL it once `written()` has
    grown by `kill_at`. Returns the writes seen at the kill, and when it was."""
    env = {
        **os.environ,
        **stack.environment(),
        "CRMSYNC_FUNCTION": "sync_worker",
        "CRMSYNC_STORE": "firestore",
        "GOOGLE_CLOUD_PROJECT": project,
        "CRMSYNC_TASKS_QUEUE": "projects/p/locations/l/queues/q",
        "CRMSYNC_WORKER_URL": "http://127.0.0.1:9/sync_worker",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",  # nothing is enqueued before the kill
    }
    worker, url = function_process("sync_worker", env)
    try:
        before = written()

        def task() -> None:
            body = {"tenant": DEMO_TENANT, "connection": CONNECTION, "trigger": "schedule"}
            with contextlib.suppress(requests.RequestException):  # killed mid-answer
                requests.post(url, json=body, timeout=600)

        threading.Thread(target=task, daemon=True).start()
        _wait(lambda: written() - before >= kill_at, 600, "the worker's writes")
        kill(worker)
        return written() - before, datetime.now(UTC)
    finally:
        kill(worker)


def deliver(stack: LocalStack, trigger: str) -> str:
    body = {"tenant": DEMO_TENANT, "connection": CONNECTION, "trigger": trigger}
    answer = requests.post(stack.functions_url + "/sync_worker", json=body, timeout=600)
    answer.raise_for_status()
    return str(answer.json()["status"])


def drain(stack: LocalStack, rounds: int = 20) -> None:
    from sandbox.google.calendar import push_delivered

    for _ in range(rounds):
        push_delivered(stack.google)
        due = stack.queue.due(datetime(9999, 1, 1, tzinfo=UTC))
        if not due:
            return
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]
            deliver(stack, task.trigger)


def google_writes(stack: LocalStack) -> int:
    return sum(stack.google.requests.get(method, 0) for method in WRITES)


def google_subjects(stack: LocalStack) -> list[str]:
    events = stack.google_api("calendar", "v3").events()
    found: list[str] = []
    token = None
    while True:
        page = events.list(calendarId="primary", maxResults=2500, pageToken=token).execute()
        found += [str(e.get("summary", "")) for e in page.get("items", [])]
        token = page.get("nextPageToken")
        if not token:
            return [name for name in found if name.startswith(PREFIX + " ")]


def crm_subjects(stack: LocalStack) -> list[str]:
    return [
        str(r.get("subject", ""))
        for r in stack.crm.all(DEMO_TENANT, "activity")
        if str(r.get("subject", "")).startswith(PREFIX + " ")
    ]


def points(records: int, count: int) -> list[int]:
    """`count` write points spread over the cycle: the first write, then even shares."""
    if count <= 1:
        return [max(1, records // 2)]
    return sorted({1, *(max(1, records * k // count) for k in range(1, count))})


def run(records: int, count: int, directions: list[str], say: Callable[[str], None]) -> int:
    from google.cloud import firestore

    from sandbox.local.emulators import start_firestore

    logging.getLogger("crmsync").setLevel(logging.ERROR)  # the table is the report
    emulator = start_firestore()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    rows: list[Row] = []
    try:
        for direction in directions:
            for kill_at in points(records, count):
                emulator.reset()
                client = firestore.Client(project=emulator.project)
                try:
                    rows.append(one_row(client, emulator.project, direction, records, kill_at))
                finally:
                    client.close()
                say(line(rows[-1]))
    finally:
        emulator.stop()
    bad = [r for r in rows if r.duplicates or r.lost or not r.interrupted]
    say(
        f"kill matrix: {len(rows)} kills, duplicates {sum(r.duplicates for r in rows)}, "
        f"lost {sum(r.lost for r in rows)}; a killed worker's lease ran out at most "
        f"{max(r.lease_free_after for r in rows):.0f} s after the kill (the clock was moved "
        "past it, not waited for)"
    )
    return 1 if bad else 0


def line(row: Row) -> str:
    return (
        f"{row.direction:>9}: {row.records} records, killed after {row.killed_after:>3} writes; "
        f"lease ran out {row.lease_free_after:5.1f} s after the kill; "
        f"recovery cycles {row.recovery_seconds:5.1f} s; "
        f"interrupted: {'yes' if row.interrupted else 'NO'}; "
        f"Google {row.google}, CRM {row.crm}; duplicates {row.duplicates}, lost {row.lost}"
    )


def _wait(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--records", type=int, default=200, help="records the cycle writes")
    parser.add_argument("--points", type=int, default=4, help="kill points per direction")
    parser.add_argument(
        "--directions",
        default="both",
        help="to-google (CRM records inserted into Google), to-crm, or both "
        "(or the two, comma-separated)",
    )
    args = parser.parse_args(argv)
    given = "to-google,to-crm" if args.directions == "both" else args.directions
    directions = [d for d in given.split(",") if d]
    if not set(directions) <= {"to-google", "to-crm"}:
        parser.error("directions are to-google, to-crm or both")
    return run(args.records, args.points, directions, lambda text: print(text, flush=True))


if __name__ == "__main__":
    sys.exit(main())
