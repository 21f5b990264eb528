"""Cloud Tasks, locally: the `gcloud-tasks-emulator` from PyPI, which crmsync's
CloudTasksQueue reaches with Google's own client (CLOUD_TASKS_EMULATOR_HOST).

The emulator runs from its own virtual environment, `.venv-tasks` (made by `make venv`),
because it needs an older protobuf than crmsync's libraries. What it does with an HTTP
task, and where that differs from Cloud Tasks:

- Once the task's schedule_time has passed (it looks ten times a second) it POSTs the
  task's body with the task's own headers to the task's URL, adding
  X-CloudTasks-QueueName (the queue's full path), X-CloudTasks-TaskName (the task's id),
  X-CloudTasks-TaskRetryCount, X-CloudTasks-TaskExecutionCount and X-CloudTasks-TaskETA
  (seconds since the epoch).
- It sends no OIDC token: the worker sees no Authorization header.
- It does not deduplicate names: a second task of a name it holds is accepted and both
  are delivered. crmsync's answer to ALREADY_EXISTS is therefore proven against a
  stand-in of the client, and a duplicate cycle is made harmless by the lease.
- A task answered with a 4xx or 5xx, or not at all, is sent again at once, with no
  backoff and no limit; one queue's tasks are sent one at a time.
- It listens on every interface at its port; it has no option for the address.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from sandbox.local.emulators import Emulator, die_with_parent, free_port

TASKS_VENV = Path(__file__).resolve().parents[2] / ".venv-tasks"
LOCAL_QUEUE = "projects/crmsync-local/locations/local/queues/sync"


class EmulatorMissing(RuntimeError):
    """The emulator's virtual environment is not there."""


class CloudTasksEmulator(Emulator):
    """A running emulator: `host` is its host:port, for CLOUD_TASKS_EMULATOR_HOST."""

    def __init__(
        self, process: subprocess.Popen[bytes], host: str, queues: Sequence[str], log: IO[bytes]
    ) -> None:
        project = queues[0].split("/")[1] if queues else ""
        super().__init__("cloud-tasks", process, host, project, log)
        self.queues = tuple(queues)


def start_cloud_tasks(
    port: int | None = None,
    queues: Sequence[str] = (LOCAL_QUEUE,),
    *,
    venv: Path = TASKS_VENV,
    timeout: float = 30.0,
) -> CloudTasksEmulator:
    """Start the emulator on `port` (a free one when None) with `queues` (full paths,
    projects/P/locations/L/queues/Q) already created; returns once it accepts calls."""
    python, script = venv / "bin" / "python", venv / "bin" / "gcloud-tasks-emulator"
    if not (python.exists() and script.exists()):
        raise EmulatorMissing(
            f"the Cloud Tasks emulator is not installed in {venv.name}: run `make venv`"
        )
    port = port or free_port()
    command = [str(python), "-m", "gcloud_tasks_emulator", "start", "--port", str(port), "-q"]
    for queue in queues:
        command += ["--default-queue", queue]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the emulator's stop() closes it
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its libraries warn about the Python version on every start.
        env={**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"},
        start_new_session=True,  # its own process group, ended whole by stop()
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # never an orphan
    )
    emulator = CloudTasksEmulator(process, f"127.0.0.1:{port}", queues, log)
    atexit.register(emulator.stop)
    try:
        _wait_until_listening(emulator, port, timeout)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def _wait_until_listening(emulator: CloudTasksEmulator, port: int, timeout: float) -> None:
    # The queues are created before the server opens its port: listening means ready.
    deadline = time.monotonic() + timeout
    while True:
        if emulator.process.poll() is not None:
            raise RuntimeError(f"the Cloud Tasks emulator exited:\n{emulator.output()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the Cloud Tasks emulator did not listen on {port} within {timeout} s:\n"
                    f"{emulator.output()}"
                ) from None
            time.sleep(0.02)
