"""Where the Gmail sandbox publishes its push notifications: a Cloud Pub/Sub it is given.

`connect_pubsub(sandbox, pubsub)` gives a sandbox its Pub/Sub: `EmulatorPubSub`, which
is Google's Pub/Sub emulator (or any Pub/Sub) through the real
`google.cloud.pubsub_v1.PublisherClient` (it follows PUBSUB_EMULATOR_HOST, as every
Google client does), or `MemoryPubSub`, which keeps what it is given in a list. A
sandbox without one knows no topic, so `users.watch` answers that the topic does not
exist.

Notifications are published in order by a background thread that runs only while there
is something to publish, never under the sandbox's lock, so no API answer waits for
Pub/Sub; one that fails is dropped, as Gmail's best-effort delivery drops it.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from sandbox.google.core import GoogleSandbox

PUBLISH_TIMEOUT = 10.0


class Topic(Enum):
    """What Gmail finds when it sends its test message to a topic at `users.watch`."""

    OK = "ok"
    MISSING = "missing"
    FORBIDDEN = "forbidden"  # gmail-api-push@system.gserviceaccount.com may not publish


class PubSub(Protocol):
    """A Cloud Pub/Sub of one Google Cloud project, as the Gmail sandbox uses it."""

    @property
    def project(self) -> str:
        """The project id: the only project whose topics `users.watch` accepts (the
        project of the OAuth client that calls it)."""
        ...

    def topic(self, name: str) -> Topic:
        """Whether Gmail could publish to the topic `projects/P/topics/T`."""
        ...

    def publish(self, topic: str, data: bytes) -> None:
        """Publish one message; returns once Pub/Sub has it, raises if it failed."""
        ...


@dataclass
class MemoryPubSub:
    """Topics and published messages in memory (tests that need no emulator)."""

    project: str = "crmsync-local"
    topics: dict[str, Topic] = field(default_factory=dict)
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    gate: threading.Event | None = None  # set: publishing waits until the gate opens

    def create_topic(self, name: str, *, gmail_may_publish: bool = True) -> str:
        """Make the topic `projects/<project>/topics/<name>`; returns its path."""
        path = f"projects/{self.project}/topics/{name}"
        self.topics[path] = Topic.OK if gmail_may_publish else Topic.FORBIDDEN
        return path

    def topic(self, name: str) -> Topic:
        return self.topics.get(name, Topic.MISSING)

    def publish(self, topic: str, data: bytes) -> None:
        if self.gate is not None:
            self.gate.wait(PUBLISH_TIMEOUT)
        if self.topic(topic) is not Topic.OK:
            raise LookupError(f"no topic {topic}")
        self.published.append((topic, json.loads(data)))


class EmulatorPubSub:
    """The real Pub/Sub client (Google's emulator when PUBSUB_EMULATOR_HOST is set),
    built on first use. The emulator grants every publisher, so a topic is either there
    or missing."""

    def __init__(self, project: str, publisher: Any | None = None) -> None:
        self.project = project
        self._publisher = publisher
        self._guard = threading.Lock()

    def _client(self) -> Any:
        with self._guard:
            if self._publisher is None:
                from google.cloud.pubsub_v1 import PublisherClient

                self._publisher = PublisherClient()
            return self._publisher

    def topic(self, name: str) -> Topic:
        from google.api_core.exceptions import NotFound

        try:
            self._client().get_topic(request={"topic": name}, timeout=PUBLISH_TIMEOUT)
        except NotFound:
            return Topic.MISSING
        return Topic.OK

    def publish(self, topic: str, data: bytes) -> None:
        self._client().publish(topic, data).result(timeout=PUBLISH_TIMEOUT)


class Courier:
    """Publishes notifications in order from a thread of its own, outside the sandbox's
    lock; `published` keeps those Pub/Sub took, `dropped` counts those it did not."""

    def __init__(self) -> None:
        self.pubsub: PubSub | None = None
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.dropped = 0
        self._queue: deque[tuple[PubSub, str, bytes]] = deque()
        self._guard = threading.Lock()
        self._running = False

    def post(self, topic: str, data: bytes) -> None:
        pubsub = self.pubsub
        if pubsub is None:
            return
        with self._guard:
            self._queue.append((pubsub, topic, data))
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._drain, name="gmail-push", daemon=True).start()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until everything posted so far was published (or dropped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._guard:
                if not self._queue and not self._running:
                    return True
            time.sleep(0.02)
        return False

    def _drain(self) -> None:
        while True:
            with self._guard:
                if not self._queue:
                    self._running = False
                    return
                pubsub, topic, data = self._queue.popleft()
            try:
                pubsub.publish(topic, data)
            except Exception:  # Pub/Sub down or the topic gone: Gmail drops it too
                with self._guard:
                    self.dropped += 1
                continue
            with self._guard:
                self.published.append((topic, json.loads(data)))

    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        with self._guard:
            return list(self.published)


_COURIERS: weakref.WeakKeyDictionary[GoogleSandbox, Courier] = weakref.WeakKeyDictionary()
_COURIERS_GUARD = threading.Lock()


def courier(sandbox: GoogleSandbox) -> Courier:
    """The sandbox's courier, made on first use."""
    with _COURIERS_GUARD:
        found = _COURIERS.get(sandbox)
        if found is None:
            found = _COURIERS[sandbox] = Courier()
        return found


def connect_pubsub(sandbox: GoogleSandbox, pubsub: PubSub | None) -> None:
    """Give the sandbox the Pub/Sub its Gmail watches publish to (None: none)."""
    courier(sandbox).pubsub = pubsub


def notifications_published(sandbox: GoogleSandbox, timeout: float = 10.0) -> bool:
    """Wait until every Gmail notification the sandbox sent so far reached Pub/Sub (or
    was dropped); False when that took longer than `timeout` seconds."""
    return courier(sandbox).wait_idle(timeout)


def published(sandbox: GoogleSandbox) -> list[tuple[str, dict[str, Any]]]:
    """Every notification Pub/Sub took, in order: (topic, decoded data)."""
    return courier(sandbox).sent()
