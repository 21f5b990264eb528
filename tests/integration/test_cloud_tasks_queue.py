"""CloudTasksQueue over gRPC to the Cloud Tasks emulator, which POSTs each task to a
worker served here on a real socket: what `sync_worker` receives, and when.

The emulator accepts a second task of a name it holds (Cloud Tasks refuses it), so the
collapsing of bursts (RUN-3) is proven in tests/unit/test_cloud_tasks_names.py; the last
test here keeps that assumption honest."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.api_core.exceptions import GoogleAPICallError

from crmsync.queue import task_name
from crmsync.queue.cloud_tasks import CloudTasksQueue, emulator_client
from sandbox.local.cloud_tasks import CloudTasksEmulator, EmulatorMissing, start_cloud_tasks

pytestmark = pytest.mark.integration

SYNC = "projects/crmsync-test/locations/local/queues/sync"
HELD = "projects/crmsync-test/locations/local/queues/held"  # tasks far in the future
ACCOUNT = "tasks-caller@crmsync-test.iam.gserviceaccount.com"
WAIT = 10.0  # seconds a delivery may take before a test gives up on it


@dataclass(frozen=True)
class Delivery:
    arrived: float  # time.time() when the worker got it
    method: str
    headers: Message  # looked up without regard to case, as HTTP headers are
    body: bytes

    def json(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.body)
        return loaded


class Worker:
    """Stands where `sync_worker` answers: records each request by path and answers 204."""

    def __init__(self) -> None:
        self.inboxes: defaultdict[str, queue.Queue[Delivery]] = defaultdict(queue.Queue)
        self.lock = threading.Lock()
        worker = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = Delivery(time.time(), self.command, self.headers, body)
                worker.inbox(self.path).put(delivery)
                self.send_response(204)
                self.end_headers()

            do_GET = do_PUT = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def inbox(self, path: str) -> queue.Queue[Delivery]:
        with self.lock:
            return self.inboxes[path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def next(self, path: str, wait: float = WAIT) -> Delivery:
        try:
            return self.inbox(path).get(timeout=wait)
        except queue.Empty:
            raise AssertionError(f"no task reached {path} within {wait} s") from None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[CloudTasksEmulator]:
    with start_cloud_tasks(queues=[SYNC, HELD]) as running:
        yield running


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    running = Worker()
    yield running
    running.close()


@pytest.fixture
def path(request: pytest.FixtureRequest) -> str:
    """This test's own worker path, so a late task of another test is never read here."""
    return "/sync_worker/" + request.node.name


def queue_for(emulator: CloudTasksEmulator, url: str, queue_path: str = SYNC) -> CloudTasksQueue:
    """The queue as a deployed function builds it, pointed at the emulator."""
    return CloudTasksQueue.from_environment(
        {
            "CRMSYNC_TASKS_QUEUE": queue_path,
            "CRMSYNC_WORKER_URL": url,
            "CRMSYNC_TASKS_SERVICE_ACCOUNT": ACCOUNT,
            "CLOUD_TASKS_EMULATOR_HOST": emulator.host,
        }
    )


def enqueue(
    tasks: CloudTasksQueue,
    connection: str,
    *,
    delay: timedelta = timedelta(0),
    trigger: str = "schedule",
    now: datetime | None = None,
) -> tuple[bool, str, datetime]:
    now = now or datetime.now(UTC)
    name = task_name("acme", connection, now, timedelta(seconds=10))
    not_before = now + delay
    created = tasks.enqueue("acme", connection, name=name, not_before=not_before, trigger=trigger)
    return created, name, not_before


def test_RUN2_a_cycle_reaches_the_worker_as_a_json_post_of_ids(emulator, worker, path):
    created, name, _ = enqueue(queue_for(emulator, worker.url(path)), "conn-1")
    assert created is True

    delivery = worker.next(path)
    assert delivery.method == "POST"
    assert delivery.json() == {"tenant": "acme", "connection": "conn-1", "trigger": "schedule"}
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-CloudTasks-TaskName"] == name
    # The emulator sends the queue's full path, Cloud Tasks the queue's id.
    assert delivery.headers["X-CloudTasks-QueueName"].rsplit("/", 1)[-1] == "sync"
    assert delivery.headers["X-CloudTasks-TaskRetryCount"] == "0"


def test_RUN2_each_due_connection_gets_its_own_task(emulator, worker, path):
    tasks = queue_for(emulator, worker.url(path))
    now = datetime.now(UTC)
    connections = ["conn-1", "conn-2", "conn-3"]
    assert [enqueue(tasks, c, now=now)[0] for c in connections] == [True, True, True]

    delivered = sorted(worker.next(path).json()["connection"] for _ in connections)
    assert delivered == connections
    assert worker.inbox(path).empty()


def test_RUN3_a_debounced_cycle_is_not_delivered_before_its_time(emulator, worker, path):
    tasks = queue_for(emulator, worker.url(path))
    created, _, not_before = enqueue(tasks, "conn-1", delay=timedelta(seconds=0.8), trigger="push")
    assert created is True

    delivery = worker.next(path)
    assert delivery.arrived >= not_before.timestamp()
    assert float(delivery.headers["X-CloudTasks-TaskETA"]) == pytest.approx(
        not_before.timestamp(), abs=0.001
    )
    assert delivery.json()["trigger"] == "push"


def test_the_task_holds_ids_and_the_account_to_sign_as_never_a_token(emulator, worker, path):
    tasks = queue_for(emulator, worker.url(path), HELD)
    created, name, not_before = enqueue(tasks, "conn-1", delay=timedelta(hours=1))
    assert created is True

    # Read back what the emulator stored, as Cloud Tasks would keep it.
    client = emulator_client(emulator.host)
    (stored,) = [t for t in client.list_tasks(parent=HELD) if t.name.endswith(name)]
    http = stored.http_request
    assert json.loads(http.body) == {
        "tenant": "acme",
        "connection": "conn-1",
        "trigger": "schedule",
    }
    assert dict(http.headers) == {"Content-Type": "application/json"}
    assert http.oidc_token.service_account_email == ACCOUNT
    assert http.oidc_token.audience == worker.url(path)
    assert stored.schedule_time == not_before
    assert stored.dispatch_deadline == timedelta(minutes=30)
    client.purge_queue(name=HELD)


def test_an_unknown_queue_is_an_error_not_a_collapsed_burst(emulator, worker, path):
    missing = "projects/crmsync-test/locations/local/queues/missing"
    with pytest.raises(GoogleAPICallError):
        enqueue(queue_for(emulator, worker.url(path), missing), "conn-1")


def test_the_emulator_keeps_a_duplicate_name_which_cloud_tasks_refuses(emulator, worker, path):
    tasks = queue_for(emulator, worker.url(path))
    now = datetime.now(UTC)
    assert enqueue(tasks, "conn-1", now=now)[0] is True
    # Cloud Tasks answers ALREADY_EXISTS here; the emulator takes the task and sends both.
    assert enqueue(tasks, "conn-1", now=now)[0] is True
    first, second = worker.next(path), worker.next(path)
    assert first.headers["X-CloudTasks-TaskName"] == second.headers["X-CloudTasks-TaskName"]


def test_a_stopped_emulator_leaves_no_process_and_frees_its_port():
    running = start_cloud_tasks(queues=[SYNC])
    port = int(running.host.rsplit(":", 1)[1])
    running.stop()
    assert running.process.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    running.stop()  # a second stop, as at exit, does nothing


def test_without_its_virtual_environment_the_emulator_says_to_run_make_venv(tmp_path):
    with pytest.raises(EmulatorMissing, match="make venv"):
        start_cloud_tasks(venv=tmp_path / ".venv-tasks")
