"""What keeps a burst of triggers cheap (RUN-3): a function instance remembers the cycle
it enqueued for each connection until that cycle is due, and the push channels it
looked up, so 500 notifications for one connection cost one Firestore read and one
Cloud Tasks call per instance, not 500.

A trigger that arrives while the connection's cycle waits joins it when that cycle
reads everything the trigger needs and starts no later than the trigger asks: a burst
collapses into one cycle however it falls across the task names' time windows, and so
do the notifications echoing a cycle's own writes, which arrive while it still runs.

Both memories are per instance and short: correctness never rests on them. A cycle is
remembered only until it is due (after that Cloud Tasks itself decides, by the task's
name, as it would without us); a channel only for a minute, and a channel crmsync
drops is forgotten at once by the instance that dropped it. Another instance's stale
entry can at most enqueue one cycle the worker finds nothing to do for.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from crmsync.ports import Channel, ChannelDirectory, TaskQueue
from crmsync.queue import CHECK, IMPORT, MAIL, POLL, covers, scope

REMEMBERED = 20_000  # cycles or channels an instance keeps at most (a few MB)
SCOPES = ("", POLL, CHECK, IMPORT, MAIL)  # what a waiting task reads (crmsync.queue.scope)
CHANNEL_SECONDS = 60.0


@dataclass(frozen=True)
class _Waiting:
    name: str
    due: datetime
    trigger: str


class DebouncedQueue:
    """A TaskQueue that does not ask Cloud Tasks again for a connection whose cycle this
    instance enqueued and which is not due yet, when that cycle serves the new trigger:
    it reads what the trigger needs (a poll serves only polls) and starts no later."""

    def __init__(self, queue: TaskQueue, clock: Callable[[], datetime]) -> None:
        self.queue = queue
        self.clock = clock
        self.absorbed = 0
        # (tenant, connection, scope) → the task enqueued last; a poll (or a check) is
        # kept apart, so that it never hides a waiting cycle that reads everything
        self._waiting: dict[tuple[str, str, str], _Waiting] = {}
        self._lock = threading.Lock()

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        now = self.clock()
        mine = (tenant, connection, scope(trigger))
        with self._lock:
            for kept in SCOPES:
                held = self._waiting.get((tenant, connection, kept))
                if held and now < held.due <= not_before and covers(held.trigger, trigger):
                    self.absorbed += 1
                    return False
            if len(self._waiting) >= REMEMBERED:
                self._waiting.clear()  # a burst across that many connections: start over
            # Held before Cloud Tasks is asked, so triggers racing this one join it.
            reserved = self._waiting[mine] = _Waiting(name, not_before, trigger)
        try:
            return self.queue.enqueue(
                tenant, connection, name=name, not_before=not_before, trigger=trigger
            )
        except BaseException:
            with self._lock:
                if self._waiting.get(mine) is reserved:
                    del self._waiting[mine]
            raise

    def forget(self, name: str) -> None:
        """The task ran (before its time: only a test harness runs tasks early)."""
        with self._lock:
            for key in [k for k, held in self._waiting.items() if held.name == name]:
                del self._waiting[key]

    def __getattr__(self, name: str) -> object:  # the queue's other methods (tests' due())
        return getattr(self.queue, name)


class ChannelLookups:
    """Channels this instance found recently (channel id → channel), shared by the
    requests the instance serves. An id crmsync does not know is not remembered: the
    provider's first message on a new channel (Google's "sync") races the save of the
    channel by whoever opened it, and a remembered miss would turn away the channel's
    real notifications after it."""

    def __init__(
        self, seconds: float = CHANNEL_SECONDS, ticker: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self.ticker = ticker
        self._found: dict[str, tuple[float, Channel]] = {}
        self._lock = threading.Lock()

    def over(self, directory: ChannelDirectory) -> ChannelDirectory:
        return _RememberingDirectory(directory, self)

    def get(self, channel_id: str) -> Channel | None:
        with self._lock:
            kept = self._found.get(channel_id)
            if kept is None or kept[0] <= self.ticker():
                return None
            return kept[1]

    def put(self, channel_id: str, channel: Channel) -> None:
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
        channel = self.lookups.get(channel_id)
        if channel is None:
            channel = self.directory.channel(channel_id)
            if channel is not None:
                self.lookups.put(channel_id, channel)
        return channel

    def save_channel(self, channel: Channel) -> None:
        self.directory.save_channel(channel)
        self.lookups.forget(channel.id)

    def drop_channel(self, channel_id: str) -> None:
        self.directory.drop_channel(channel_id)
        self.lookups.forget(channel_id)
