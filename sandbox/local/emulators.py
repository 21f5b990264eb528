"""Google's official Firestore and Pub/Sub emulators, started straight from the Google
Cloud CLI's installation with java (no gcloud wrapper, no update checks), each on a
free 127.0.0.1 port.

    emulator = start_firestore()
    os.environ["FIRESTORE_EMULATOR_HOST"] = emulator.host
    ...
    emulator.reset()  # every document gone, the emulator still running
    emulator.stop()

An emulator runs in its own process group, which `stop()` ends whole; it is also
stopped when Python exits, and on Linux the kernel ends it if the thread that started
it dies without stopping it (so start emulators from a thread that outlives their use,
such as the main thread).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Self

DEFAULT_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
DEFAULT_PROJECT = "crmsync-local"
FIRESTORE_JAR = Path("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar")
FIRESTORE_MAIN = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
PUBSUB_LIB = Path("platform/pubsub-emulator/lib")

INSTALL_HINT = (
    "Install Google's emulators with the Google Cloud CLI:\n"
    "    gcloud components install cloud-firestore-emulator pubsub-emulator\n"
    "or, where the CLI came from apt, the packages\n"
    "    google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator\n"
    "and a Java 17 runtime (e.g. openjdk-17-jre-headless)."
)


class EmulatorUnavailable(RuntimeError):
    """The emulator, or the java runtime it needs, is not installed."""


class Emulator:
    """A running emulator: `host` ("127.0.0.1:PORT") is what FIRESTORE_EMULATOR_HOST or
    PUBSUB_EMULATOR_HOST take; `project` the project id its clients use."""

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        host: str,
        project: str,
        log: IO[bytes],
    ) -> None:
        self.name = name
        self.process = process
        self.host = host
        self.project = project
        self._log = log

    def output(self) -> str:
        """What the emulator has printed so far."""
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def reset(self) -> None:
        """Forget every document (Firestore) or every topic and subscription (Pub/Sub)."""
        if self.name == "firestore":
            path = f"/emulator/v1/projects/{self.project}/databases/(default)/documents"
            _request("DELETE", f"http://{self.host}{path}")
            return
        if self.name != "pubsub":
            raise NotImplementedError(f"the {self.name} emulator has no reset")
        for collection in ("subscriptions", "topics"):
            listing = _request("GET", f"http://{self.host}/v1/projects/{self.project}/{collection}")
            for name in _names(listing, collection):
                _request("DELETE", f"http://{self.host}/v1/{name}")

    def stop(self) -> None:
        """End the emulator and anything it started; calling it again does nothing."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def sdk_root() -> Path:
    """Where the Google Cloud CLI is installed (`gcloud info`), else its apt location."""
    gcloud = shutil.which("gcloud")
    if gcloud is not None:
        env = {
            **os.environ,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
        }
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=30,
                env=env,
                check=True,
            ).stdout.strip()
            if found:
                return Path(found)
    return DEFAULT_SDK_ROOT


def start_firestore(
    port: int | None = None, *, project: str = DEFAULT_PROJECT, timeout: float = 60.0
) -> Emulator:
    """Start the Firestore emulator (Native mode); returns once it answers."""
    jar = sdk_root() / FIRESTORE_JAR
    if not jar.is_file():
        raise EmulatorUnavailable(f"the Firestore emulator is not installed.\n{INSTALL_HINT}")
    port = port or free_port()
    command = [
        _java(),
        "-Duser.language=en",  # the emulator only speaks English
        "-cp",
        str(jar),
        FIRESTORE_MAIN,
        "start",
        "--host=127.0.0.1",
        f"--port={port}",
        "--database-mode=firestore-native",
    ]
    return _start("firestore", command, port, project, timeout)


def start_pubsub(
    port: int | None = None, *, project: str = DEFAULT_PROJECT, timeout: float = 60.0
) -> Emulator:
    """Start the Pub/Sub emulator; returns once it answers."""
    jars = sorted((sdk_root() / PUBSUB_LIB).glob("cloud-pubsub-emulator-*.jar"))
    if not jars:
        raise EmulatorUnavailable(f"the Pub/Sub emulator is not installed.\n{INSTALL_HINT}")
    port = port or free_port()
    command = [_java(), "-jar", str(jars[-1]), "--host=127.0.0.1", f"--port={port}"]
    return _start("pubsub", command, port, project, timeout)


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise EmulatorUnavailable(f"no java runtime is installed.\n{INSTALL_HINT}")
    return found


def _start(name: str, command: list[str], port: int, project: str, timeout: float) -> Emulator:
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the emulator's stop() closes it
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, ended whole by stop()
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
    )
    emulator = Emulator(name, process, f"127.0.0.1:{port}", project, log)
    atexit.register(emulator.stop)
    try:
        _wait_until_ready(emulator, timeout)
    except BaseException:
        emulator.stop()
        raise
    return emulator


def die_with_parent() -> None:
    """In the child before exec: the kernel kills it when the thread that started it
    ends, so even a test run killed with SIGKILL leaves no emulator behind."""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _wait_until_ready(emulator: Emulator, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if emulator.process.poll() is not None:
            raise RuntimeError(f"the {emulator.name} emulator exited:\n{emulator.output()}")
        try:
            with urllib.request.urlopen(f"http://{emulator.host}/", timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the {emulator.name} emulator did not answer within {timeout} s:\n"
                f"{emulator.output()}"
            )
        time.sleep(0.05)


def _request(method: str, url: str) -> bytes:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:
        body: bytes = answer.read()
        return body


def _names(listing: bytes, collection: str) -> list[str]:
    found = json.loads(listing or b"{}").get(collection, [])
    return [item["name"] for item in found]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
