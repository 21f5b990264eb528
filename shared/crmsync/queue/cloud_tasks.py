"""Cycles waiting in Cloud Tasks: one named HTTP task per connection and time window,
POSTed to the `sync_worker` function when its time comes.

How a burst collapses (RUN-3): every trigger of one connection in one time window
carries the same task name (`crmsync.queue.task_name`), and Cloud Tasks refuses a second
task of a name it knows (ALREADY_EXISTS) while the first waits and for about an hour
after it ran. `enqueue` answers False then. The queue keeps no state of its own, so the
name is all that collapses a burst. Where names are not deduplicated (the local Cloud
Tasks emulator), each trigger becomes a task; the extra cycles are harmless because the
connection's lease never lets two run at once and a cycle after another finds nothing
new to sync.

The task carries ids only (tenant, connection, trigger), never tokens or record data:
the worker reads everything else from the store under the lease.

The Google client is imported and built on the first enqueue, so that importing this
module costs nothing at a function's cold start.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud.tasks_v2 import CreateTaskRequest

QUEUE_PATH = re.compile(r"projects/[^/]+/locations/[^/]+/queues/[^/]+")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")

# RUN-6: a cycle yields after 20 minutes; Cloud Tasks cancels a request after the task's
# dispatch deadline (10 minutes unless set, at most 30) and sends the task again.
DISPATCH_DEADLINE = timedelta(minutes=30)


@runtime_checkable
class TaskCreator(Protocol):
    """The one call crmsync makes of `google.cloud.tasks_v2.CloudTasksClient`."""

    def create_task(self, request: CreateTaskRequest, *, retry: Retry, timeout: float) -> Any: ...


class CloudTasksQueue:
    """The TaskQueue port over Cloud Tasks HTTP targets.

    `client` is a CloudTasksClient or a function that builds one on first use. `queue`
    is the queue's full path, `projects/P/locations/L/queues/Q`. With `service_account`
    each task carries an OIDC token of that account for `audience` (default: the worker
    URL), which the worker's Cloud Run service checks. `timeout` bounds one enqueue in
    seconds, the retries of transient errors included.
    """

    def __init__(
        self,
        client: TaskCreator | Callable[[], TaskCreator],
        queue: str,
        worker_url: str,
        *,
        service_account: str | None = None,
        audience: str | None = None,
        timeout: float = 10.0,
        dispatch_deadline: timedelta = DISPATCH_DEADLINE,
    ) -> None:
        if not QUEUE_PATH.fullmatch(queue):
            raise ValueError(f"not a queue path (projects/P/locations/L/queues/Q): {queue!r}")
        if not worker_url.startswith(("https://", "http://")):
            raise ValueError(f"the worker URL must be http(s): {worker_url!r}")
        if not timedelta(seconds=15) <= dispatch_deadline <= timedelta(minutes=30):
            raise ValueError("Cloud Tasks allows a dispatch deadline of 15 s to 30 min")
        if isinstance(client, TaskCreator):
            self._client: TaskCreator | None = client
            self._factory: Callable[[], TaskCreator] | None = None
        else:
            self._client, self._factory = None, client
        self._lock = threading.Lock()
        self.queue = queue
        self.worker_url = worker_url
        self.service_account = service_account or None
        self.audience = audience or worker_url
        self.timeout = timeout
        self.dispatch_deadline = dispatch_deadline

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> CloudTasksQueue:
        """The queue a deployed function uses, from its environment:

        - CRMSYNC_TASKS_QUEUE: the queue's path, projects/P/locations/L/queues/Q
        - CRMSYNC_WORKER_URL: the `sync_worker` function's URL (also the token's audience)
        - CRMSYNC_TASKS_SERVICE_ACCOUNT: the account whose OIDC token the tasks carry
        - CLOUD_TASKS_EMULATOR_HOST: host:port of a local Cloud Tasks emulator to use
        """
        env = os.environ if environ is None else environ
        missing = [k for k in ("CRMSYNC_TASKS_QUEUE", "CRMSYNC_WORKER_URL") if not env.get(k)]
        if missing:
            raise ValueError(f"set {' and '.join(missing)} to enqueue sync cycles")
        emulator = env.get("CLOUD_TASKS_EMULATOR_HOST", "")
        return cls(
            (lambda: emulator_client(emulator)) if emulator else production_client,
            env["CRMSYNC_TASKS_QUEUE"],
            env["CRMSYNC_WORKER_URL"],
            service_account=env.get("CRMSYNC_TASKS_SERVICE_ACCOUNT") or None,
        )

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        """A task POSTing {tenant, connection, trigger} to the worker at `not_before`;
        False when Cloud Tasks already knows a task of this name."""
        from google.api_core.exceptions import AlreadyExists

        request = self.request(
            tenant, connection, name=name, not_before=not_before, trigger=trigger
        )
        try:
            self._tasks().create_task(request, retry=self._retry(), timeout=self.timeout)
        except AlreadyExists:
            # Also the answer when a retried create follows one whose reply was lost:
            # either way a task of this name is waiting.
            return False
        return True

    def request(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> CreateTaskRequest:
        """The CreateTask request `enqueue` sends."""
        from google.cloud import tasks_v2

        if not TASK_ID.fullmatch(name):
            raise ValueError(f"a task name is 1-500 letters, digits, '-' or '_': {name!r}")
        if not_before.tzinfo is None:
            raise ValueError("not_before must carry its time zone")
        body = {"tenant": tenant, "connection": connection, "trigger": trigger}
        http = tasks_v2.HttpRequest(
            url=self.worker_url,
            http_method=tasks_v2.HttpMethod.POST,
            # Cloud Tasks sets no Content-Type of its own.
            headers={"Content-Type": "application/json"},
            body=json.dumps(body, separators=(",", ":"), sort_keys=True).encode(),
        )
        if self.service_account:
            http.oidc_token = tasks_v2.OidcToken(
                service_account_email=self.service_account, audience=self.audience
            )
        task = tasks_v2.Task(
            name=f"{self.queue}/tasks/{name}",
            http_request=http,
            schedule_time=not_before,
            dispatch_deadline=self.dispatch_deadline,
        )
        return tasks_v2.CreateTaskRequest(parent=self.queue, task=task)

    def _tasks(self) -> TaskCreator:
        with self._lock:
            if self._client is None:
                assert self._factory is not None
                self._client = self._factory()
            return self._client

    def _retry(self) -> Retry:
        """Unavailable and timed-out calls are tried again within `timeout`. A named
        create is safe to repeat: a repeat of one that went through is ALREADY_EXISTS."""
        from google.api_core import exceptions, retry

        return retry.Retry(
            predicate=retry.if_exception_type(
                exceptions.ServiceUnavailable, exceptions.DeadlineExceeded
            ),
            initial=0.2,
            maximum=2.0,
            multiplier=2.0,
            timeout=self.timeout,
        )


def production_client() -> TaskCreator:
    """A client of Cloud Tasks with the function's own credentials."""
    from google.cloud import tasks_v2

    return tasks_v2.CloudTasksClient()


def emulator_client(host: str) -> TaskCreator:
    """A client of the Cloud Tasks emulator at host:port, over a plain gRPC channel. A
    client given a channel sends no credentials and looks none up."""
    import grpc  # type: ignore[import-untyped]
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
