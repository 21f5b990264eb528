"""The ports: what the cycle needs from the world, as Protocols.

Production adapters (Firestore, Cloud Tasks, Google, Microsoft, the CRM over HTTP)
and the memory adapters used by tests implement the same Protocols.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from crmsync.engine.plan import Write
from crmsync.engine.records import CrmSchema, Link, SideRecord
from crmsync.model import Kind, normalize_email
from crmsync.settings import Side


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a change feed. `cursor` resumes after this page; `more` says whether
    another page follows before the feed is caught up."""

    records: Sequence[SideRecord]
    cursor: str
    more: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    id: str
    version: str


@dataclass(frozen=True, slots=True)
class Connection:
    """One user's connected provider account within a tenant."""

    tenant: str
    id: str
    user: str
    provider: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    status: str = "active"


@dataclass(frozen=True, slots=True, order=True)
class Due:
    """A connection the scheduler should enqueue: ordered by time, then by id, the
    order the scheduler pages through them in."""

    due: datetime
    tenant: str
    connection: str
    record: Mapping[str, Any] | None = field(default=None, compare=False)  # as listed


class RecordSide(Protocol):
    """What the cycle reads and writes on either side."""

    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        """Records changed since `cursor` (everything when None); raises CursorExpired."""

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        """The record as it is now; a gone record has `fields` None."""

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        """Live records holding any of these e-mail addresses (lower-cased), in the sync
        scope or not: the twins a new record must be linked to, not duplicated (CON-3)."""

    def create(self, write: Write) -> WriteResult:
        """Create once per `write.key`: a retried create returns the first result."""

    def update(self, write: Write) -> WriteResult:
        """Patch `write.fields`, only if the record is still at `write.version` (412)."""

    def delete(self, write: Write) -> None:
        """Delete; raises NotFound when already gone."""

    def set_scope(self, write: Write) -> WriteResult:
        """Put the record into the sync scope or take it out (group / label)."""


class CrmConnector(RecordSide, Protocol):
    def schema(self) -> CrmSchema:
        """Field length limits and capabilities the CRM declares (SYN-3, CAL-9, TSK-3)."""


class ProviderAccount(RecordSide, Protocol):
    pass


INTERRUPTED = "the worker stopped before the run ended; the next run took over"


class Store(Protocol):
    """Durable state of connections: cursors, links, runs, the queue, the lease."""

    def acquire_lease(self, connection: str, holder: str, now: datetime, seconds: int) -> bool: ...
    def release_lease(self, connection: str, holder: str) -> None: ...
    def cursor(self, connection: str, side: Side, kind: Kind) -> str | None: ...
    def save_cursor(self, connection: str, side: Side, kind: Kind, cursor: str) -> None: ...
    def forget_cursor(self, connection: str, side: Side, kind: Kind) -> None:
        """The next cycle lists this feed whole."""

    def links_for(
        self, connection: str, kind: Kind, crm_ids: Iterable[str], provider_ids: Iterable[str]
    ) -> list[Link]: ...
    def links(self, connection: str, kind: Kind) -> Iterable[Link]: ...
    def journaled_links(self, connection: str) -> list[Link]:
        """Links whose writes a run journaled but did not finish (state creating/applying)."""

    def save_link(self, connection: str, link: Link) -> None: ...
    def delete_link(self, connection: str, kind: Kind, key: str) -> None: ...
    def linked_count(self, connection: str, kind: Kind) -> int: ...
    def retries(self, connection: str, kind: Kind) -> set[tuple[Side, str]]: ...
    def set_retries(self, connection: str, kind: Kind, pending: set[tuple[Side, str]]) -> None: ...
    def put_queue_item(self, connection: str, item: Mapping[str, Any]) -> None: ...
    def drop_queue_item(self, connection: str, item_id: str) -> None: ...
    def queue(self, connection: str) -> list[dict[str, Any]]: ...
    def resolve_queue_item(self, connection: str, item_id: str, choice: Side) -> None: ...
    def save_run(self, connection: str, run: Mapping[str, Any]) -> None: ...
    def add_items(
        self, connection: str, run_id: str, items: Sequence[Mapping[str, Any]]
    ) -> None: ...
    def runs(self, connection: str) -> list[dict[str, Any]]: ...
    def items(self, connection: str, run_id: str) -> list[dict[str, Any]]: ...
    def interrupt_run(self, connection: str, run_id: str, now: datetime) -> bool:
        """Mark the run `interrupted` (its worker died: the lease it held ran out) if it
        is still `running`; whether it was."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A provider push channel (Calendar watch, Graph subscription) and whose it is.
    Only a digest of its secret token is kept."""

    id: str
    tenant: str
    connection: str
    provider: str
    resource_id: str
    token_digest: str
    expires: datetime


class ChannelDirectory(Protocol):
    """Channel id → channel, the route a push notification takes to its connection."""

    def channel(self, channel_id: str) -> Channel | None: ...
    def save_channel(self, channel: Channel) -> None: ...
    def drop_channel(self, channel_id: str) -> None: ...


def mailbox_digest(address: str) -> str:
    """What the mailbox directory keeps of a Gmail address: the SHA-256 digest of the
    address lower-cased, so the lookup holds no address."""
    return hashlib.sha256(normalize_email(address).encode()).hexdigest()


class MailboxDirectory(Protocol):
    """Gmail address → the connections its push notifications are for: the route a
    Gmail notification takes, which names only the mailbox. One address may be
    connected in several tenants; a connection has one route, replaced when it is saved
    again and dropped when the connection is erased (AUTH-4)."""

    def mailbox_connections(self, address: str) -> list[tuple[str, str]]:
        """(tenant, connection) of every route of the address, in that order."""

    def save_mailbox(self, address: str, tenant: str, connection: str) -> None:
        """Route the address to the connection (its earlier address routes no more)."""

    def drop_mailbox(self, tenant: str, connection: str) -> None:
        """Drop the connection's route (nothing happens when it has none)."""


class TaskQueue(Protocol):
    """Where cycles wait to run (Cloud Tasks in production)."""

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        """A cycle of `connection` at `not_before`; False when a task of this name is
        already waiting, so a burst of triggers collapses into one cycle."""
