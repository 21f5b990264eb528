"""What keeps a burst of triggers cheap (RUN-3): a function instance remembers the task
names it enqueued and the push channels it looked up, so 500 notifications for one
connection cost one Firestore read and one Cloud Tasks call per instance, not 500.

Both memories are per instance and short: correctness never rests on them. A task
name is remembered only until the task is due (after that Cloud Tasks itself decides,
as it would without us); a channel only for a minute, and a channel crmsync drops is
forgotten at once by the instance that dropped it. Another instance's stale entry can
at most enqueue one cycle the worker finds nothing to do for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from crmsync.ports import Channel, ChannelDirectory, TaskQueue

REMEMBERED = 20_000  # names or channels an instance keeps at most (a few MB)
CHANNEL_SECONDS = 60.0


class DebouncedQueue:
    """A TaskQueue that does not ask Cloud Tasks again for a task name this instance
    enqueued and whose task is not due yet: that task is waiting, so the answer would
    be "already exists"."""

    def __init__(self, queue: TaskQueue, clock: Callable[[], datetime]) -> None:
        self.queue = queue
        self.clock = clock
        self.absorbed = 0
        self._waiting: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        with self._lock:
            due = self._waiting.get(name)
            if due is not None and due > self.clock():
                self.absorbed += 1
                return False
        enqueued = self.queue.enqueue(
            tenant, connection, name=name, not_before=not_before, trigger=trigger
        )
        with self._lock:
            if len(self._waiting) >= REMEMBERED:
                self._waiting.clear()  # a burst across that many connections: start over
            self._waiting[name] = not_before
        return enqueued

    def forget(self, name: str) -> None:
        """The task ran (before its time: only a test harness runs tasks early)."""
        with self._lock:
            self._waiting.pop(name, None)

    def __getattr__(self, name: str) -> object:  # the queue's other methods (tests' due())
        return getattr(self.queue, name)


class ChannelLookups:
    """Channels this instance looked up recently (channel id → channel, or None for an
    id crmsync does not know), shared by the requests the instance serves."""

    def __init__(
        self, seconds: float = CHANNEL_SECONDS, ticker: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.ticker = ticker
        self._found: dict[str, tuple[float, Channel | None]] = {}
        self._lock = threading.Lock()

    def over(self, directory: ChannelDirectory) -> ChannelDirectory:
        return _RememberingDirectory(directory, self)

    def get(self, channel_id: str) -> tuple[bool, Channel | None]:
        with self._lock:
            kept = self._found.get(channel_id)
            if kept is None or kept[0] <= self.ticker():
                return False, None
            return True, kept[1]

    def put(self, channel_id: str, channel: Channel | None) -> None:
        with self._lock:
            if len(self._found) >= REMEMBERED:
                self._found.clear()
            self._found[channel_id] = (self.ticker() + self.seconds, channel)

    def forget(self, channel_id: str) -> None:
        with self._lock:
            self._found.pop(channel_id, None)


class _RememberingDirectory:
    def __init__(self, directory: ChannelDirectory, lookups: ChannelLookups) -> None:
        self.directory = directory
        self.lookups = lookups

    def channel(self, channel_id: str) -> Channel | None:
        known, channel = self.lookups.get(channel_id)
        if not known:
            channel = self.directory.channel(channel_id)
            self.lookups.put(channel_id, channel)
        return channel

    def save_channel(self, channel: Channel) -> None:
        self.directory.save_channel(channel)
        self.lookups.forget(channel.id)

    def drop_channel(self, channel_id: str) -> None:
        self.directory.drop_channel(channel_id)
        self.lookups.forget(channel_id)
