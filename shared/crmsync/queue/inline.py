"""A TaskQueue in memory: for tests and for running cycles in the same process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class QueuedCycle:
    tenant: str
    connection: str
    name: str
    not_before: datetime
    trigger: str


class InlineQueue:
    """Keeps what was enqueued; a name is refused while a task of that name waits."""

    def __init__(self) -> None:
        self.waiting: dict[str, QueuedCycle] = {}
        self.refused = 0

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        if name in self.waiting:
            self.refused += 1
            return False
        self.waiting[name] = QueuedCycle(tenant, connection, name, not_before, trigger)
        return True

    def due(self, now: datetime) -> list[QueuedCycle]:
        """Take the cycles whose time has come, oldest first."""
        ready = sorted(
            (q for q in self.waiting.values() if q.not_before <= now), key=lambda q: q.not_before
        )
        for queued in ready:
            del self.waiting[queued.name]
        return ready
