"""What the test suite relies on from its emulator launcher (sandbox/local/emulators.py):
Google's Firestore and Pub/Sub emulators that answer, reset, stop with everything they
started, and a missing emulator or java runtime that says how to install it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from sandbox.local import emulators
from sandbox.local.emulators import Emulator, EmulatorUnavailable, start_firestore

pytestmark = pytest.mark.integration


def test_the_firestore_emulator_forgets_every_document_on_reset(
    firestore_emulator: Emulator, firestore_client: Any
) -> None:
    firestore_client.document("tenants/t1/connections/c1").set({"status": "active"})
    firestore_client.document("channels/ch-1").set({"tenant": "t1"})

    firestore_emulator.reset()

    assert not firestore_client.document("tenants/t1/connections/c1").get().exists
    assert list(firestore_client.collection("channels").stream()) == []


def test_the_pubsub_emulator_delivers_a_message_and_forgets_topics_on_reset(
    pubsub_emulator: Emulator,
) -> None:
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(pubsub_emulator.project, "gmail-push")
    subscription = subscriber.subscription_path(pubsub_emulator.project, "gmail-push-sub")
    publisher.create_topic(name=topic)
    subscriber.create_subscription(name=subscription, topic=topic)
    publisher.publish(topic, b'{"historyId": "42"}', connection="c1").result(timeout=10)

    received = []
    for _ in range(5):  # a pull may come back empty before the message is ready
        received = list(
            subscriber.pull(subscription=subscription, max_messages=1).received_messages
        )
        if received:
            break
    pubsub_emulator.reset()

    [received_message] = received
    assert received_message.message.data == b'{"historyId": "42"}'
    assert received_message.message.attributes["connection"] == "c1"
    project = f"projects/{pubsub_emulator.project}"
    assert list(publisher.list_topics(project=project)) == []
    assert list(subscriber.list_subscriptions(project=project)) == []
    subscriber.close()


def test_a_stopped_emulator_leaves_no_process_and_frees_its_port() -> None:
    emulator = start_firestore()
    port = int(emulator.host.rpartition(":")[2])

    emulator.stop()
    emulator.stop()  # a second stop does nothing

    assert emulator.process.poll() is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def test_a_missing_emulator_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(emulators, "sdk_root", lambda: tmp_path)

    for start in (emulators.start_firestore, emulators.start_pubsub):
        with pytest.raises(EmulatorUnavailable) as missing:
            start()
        message = str(missing.value)
        assert "gcloud components install cloud-firestore-emulator pubsub-emulator" in message
        assert "google-cloud-cli-firestore-emulator" in message
        assert "google-cloud-cli-pubsub-emulator" in message
        assert "Java 17" in message


def test_a_missing_java_runtime_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jar = tmp_path / emulators.FIRESTORE_JAR
    jar.parent.mkdir(parents=True)
    jar.touch()
    monkeypatch.setattr(emulators, "sdk_root", lambda: tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))

    with pytest.raises(EmulatorUnavailable, match="no java runtime") as missing:
        start_firestore()

    assert "Java 17" in str(missing.value)


def test_the_cloud_tasks_emulator_dies_with_a_stack_killed_hard() -> None:
    """First hour: a `make dev` killed with SIGKILL (no chance to stop anything) leaves
    no Cloud Tasks emulator behind, though the emulator runs in a session of its own."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[2]
    starter = (
        "from sandbox.local.cloud_tasks import start_cloud_tasks\n"
        "emulator = start_cloud_tasks()\n"
        "print(emulator.process.pid, flush=True)\n"
        "import time; time.sleep(600)\n"
    )
    stack = subprocess.Popen(
        [sys.executable, "-c", starter],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{root / 'shared'}:{root}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stack.stdout is not None
    emulator = int(stack.stdout.readline())
    os.kill(emulator, 0)  # running

    stack.send_signal(signal.SIGKILL)
    stack.wait()

    deadline = time.monotonic() + 10
    while _alive(emulator):
        assert time.monotonic() < deadline, "the Cloud Tasks emulator outlived its stack"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its new parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
