"""CloudTasksQueue against a stand-in of Google's Cloud Tasks client that keeps task names
as Cloud Tasks does: a second task of a known name is ALREADY_EXISTS. The local emulator
accepts duplicates, so this is where collapsing a burst (RUN-3) is proven."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from crmsync.queue import cloud_tasks, task_name
from crmsync.queue.cloud_tasks import CloudTasksQueue

QUEUE = "projects/acme-prod/locations/europe-west1/queues/sync"
WORKER = "https://europe-west1-acme-prod.cloudfunctions.net/sync_worker"
WINDOW = timedelta(seconds=10)
NOW = datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC)


class NamedTasks:
    """Cloud Tasks' CreateTask as far as names go; applies the retry it is given the way
    the real client does, and fails the first calls with `failures` when told to."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.tasks: dict[str, tasks_v2.Task] = {}
        self.calls = 0
        self.failures = failures or []

    def create_task(self, request, *, retry, timeout):
        assert timeout > 0
        return retry(self._create)(request)

    def _create(self, request):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if request.task.name in self.tasks:
            raise exceptions.AlreadyExists(f"task {request.task.name} exists")
        self.tasks[request.task.name] = request.task
        return request.task


def enqueue(queue, connection="conn-1", when=NOW, trigger="push", tenant="acme"):
    return queue.enqueue(
        tenant,
        connection,
        name=task_name(tenant, connection, when, WINDOW),
        not_before=when + WINDOW,
        trigger=trigger,
    )


def test_RUN3_a_burst_of_triggers_within_the_window_collapses_into_one_task():
    client = NamedTasks()
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    answers = [enqueue(queue, when=NOW + timedelta(seconds=s)) for s in (0, 2, 5, 8)]
    assert answers == [True, False, False, False]
    assert len(client.tasks) == 1
    assert enqueue(queue, when=NOW + WINDOW) is True  # the next window has its own task
    assert len(client.tasks) == 2


def test_RUN2_each_connection_gets_its_own_task_in_the_same_window():
    client = NamedTasks()
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    assert all(enqueue(queue, connection=c) for c in ("conn-1", "conn-2", "conn-3"))
    bodies = [json.loads(task.http_request.body) for task in client.tasks.values()]
    assert sorted(b["connection"] for b in bodies) == ["conn-1", "conn-2", "conn-3"]


def test_RUN2_the_task_posts_the_ids_as_json_to_the_worker_at_not_before():
    client = NamedTasks()
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    name = task_name("acme", "conn-1", NOW, WINDOW)
    assert queue.enqueue("acme", "conn-1", name=name, not_before=NOW + WINDOW, trigger="push")
    (task,) = client.tasks.values()
    assert task.name == f"{QUEUE}/tasks/{name}"
    assert task.http_request.url == WORKER
    assert task.http_request.http_method == tasks_v2.HttpMethod.POST
    assert dict(task.http_request.headers) == {"Content-Type": "application/json"}
    body = json.loads(task.http_request.body)
    assert body == {"tenant": "acme", "connection": "conn-1", "trigger": "push"}
    assert task.schedule_time == NOW + WINDOW
    # RUN-6: a 20-minute cycle must not be cut off by the 10-minute default deadline.
    assert task.dispatch_deadline == timedelta(minutes=30)
    assert "oidc_token" not in task.http_request


def test_tasks_carry_an_oidc_token_of_the_service_account_for_the_worker():
    client = NamedTasks()
    account = "tasks-caller@acme-prod.iam.gserviceaccount.com"
    queue = CloudTasksQueue(client, QUEUE, WORKER, service_account=account)
    enqueue(queue)
    (task,) = client.tasks.values()
    assert task.http_request.oidc_token.service_account_email == account
    assert task.http_request.oidc_token.audience == WORKER

    other = CloudTasksQueue(
        NamedTasks(), QUEUE, WORKER, service_account=account, audience="https://run.example"
    )
    request = other.request("acme", "conn-1", name="n", not_before=NOW, trigger="push")
    assert request.task.http_request.oidc_token.audience == "https://run.example"


def test_a_transient_error_is_retried_and_the_task_created_once():
    client = NamedTasks(failures=[exceptions.ServiceUnavailable("try again")])
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    assert enqueue(queue) is True
    assert client.calls == 2
    assert len(client.tasks) == 1


@pytest.mark.parametrize(
    "error",
    [
        exceptions.PermissionDenied("no actAs on the service account"),
        exceptions.NotFound("queue not found"),
        exceptions.InvalidArgument("schedule_time too far ahead"),
    ],
)
def test_other_api_errors_are_raised_not_retried(error):
    client = NamedTasks(failures=[error])
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    with pytest.raises(type(error)):
        enqueue(queue)
    assert client.calls == 1


@pytest.mark.parametrize(
    ("name", "not_before"),
    [
        ("has/slash", NOW),
        ("", NOW),
        ("x" * 501, NOW),
        ("ok-name", NOW.replace(tzinfo=None)),
    ],
)
def test_a_name_cloud_tasks_would_refuse_or_a_naive_time_is_a_value_error(name, not_before):
    client = NamedTasks()
    queue = CloudTasksQueue(client, QUEUE, WORKER)
    with pytest.raises(ValueError):
        queue.enqueue("acme", "conn-1", name=name, not_before=not_before, trigger="push")
    assert client.calls == 0


def test_a_queue_path_or_worker_url_of_the_wrong_shape_is_refused_at_once():
    with pytest.raises(ValueError):
        CloudTasksQueue(NamedTasks(), "sync", WORKER)
    with pytest.raises(ValueError):
        CloudTasksQueue(NamedTasks(), QUEUE, "europe-west1/sync_worker")


def test_from_environment_builds_the_client_on_the_first_enqueue_only(monkeypatch):
    client = NamedTasks()
    built = []
    monkeypatch.setattr(cloud_tasks, "production_client", lambda: built.append(1) or client)
    account = "tasks-caller@acme-prod.iam.gserviceaccount.com"
    queue = CloudTasksQueue.from_environment(
        {
            "CRMSYNC_TASKS_QUEUE": QUEUE,
            "CRMSYNC_WORKER_URL": WORKER,
            "CRMSYNC_TASKS_SERVICE_ACCOUNT": account,
        }
    )
    assert (queue.queue, queue.worker_url, queue.service_account) == (QUEUE, WORKER, account)
    assert queue.audience == WORKER
    assert built == []
    enqueue(queue)
    enqueue(queue, connection="conn-2")
    assert built == [1]
    assert len(client.tasks) == 2


def test_from_environment_names_what_is_missing():
    with pytest.raises(ValueError, match="CRMSYNC_WORKER_URL"):
        CloudTasksQueue.from_environment({"CRMSYNC_TASKS_QUEUE": QUEUE})


def test_importing_the_adapter_loads_no_google_client_at_cold_start():
    probe = (
        "import sys, crmsync.queue.cloud_tasks; "
        "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.tasks', 'grpc'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
