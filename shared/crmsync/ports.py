"""The ports: what the cycle and the use cases need from the world, as Protocols, in
one place, with the values that cross them (pages, connections, channels, run
statuses and connection states).

Production adapters (Firestore, Cloud Tasks, Cloud KMS, Pub/Sub, the providers' APIs,
the CRM over HTTP) and the memory adapters used by tests implement the same Protocols.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from crmsync.model import Kind, normalize_email

if TYPE_CHECKING:
    from crmsync.crm.cards import Document, PersonCard
    from crmsync.engine.plan import Write
    from crmsync.engine.records import CrmSchema, Link, SideRecord
    from crmsync.settings import Settings, Side


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of a change feed. `cursor` resumes after this page; `more` says whether
    another page follows before the feed is caught up."""

    records: Sequence[SideRecord]
    cursor: str
    more: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write left: the record's id and version, and where the provider's answer
    shows it, the record's reminder token (SYN-10), for the link to start from."""

    id: str
    version: str
    reminder: str | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """One user's connected provider account within a tenant."""

    tenant: str
    id: str
    user: str
    provider: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Ask:
    """A cycle asked of a connection's lease holder (RUN-3): the trigger it was asked
    with, and when the holder's lease runs out (past: the holder died unanswering)."""

    trigger: str
    lease_expires: datetime


@dataclass(frozen=True, slots=True)
class NextDue:
    """When the scheduler next takes a connection (`when`: a poll or a full cycle,
    whichever comes first) and when its next full cycle is due (`full`); None: never."""

    tenant: str
    connection: str
    when: datetime | None
    full: datetime | None = None


@dataclass(frozen=True, slots=True, order=True)
class Due:
    """A connection the scheduler should enqueue: ordered by time, then by id, the
    order the scheduler pages through them in."""

    due: datetime
    tenant: str
    connection: str
    record: Mapping[str, Any] | None = field(default=None, compare=False)  # as listed


# HIS-2: what a page of runs may be sorted by (a tie: the newest started first).
RUN_SORTS: tuple[str, ...] = ("started", "ended", "status", "duration", "trigger")


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Which of a tenant's runs a page of history shows (HIS-2): those of `connections`
    (None: every connection of the tenant), narrowed by each filter given (`kind`: the
    run touched records of that kind; `since` / `until`: when it started), in `sort`
    order, `limit` of them after the page whose token is `after`."""

    connections: tuple[str, ...] | None = None
    status: str | None = None
    trigger: str | None = None
    kind: str | None = None
    provider: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    sort: str = "started"
    descending: bool = True
    limit: int = 50
    after: str | None = None


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, and the token of the page after it (None: this is the last)."""

    runs: list[dict[str, Any]]
    next: str | None = None


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

    def can_create_many(self, kind: Kind) -> bool:
        """Whether `create_many` takes creates of `kind` in one request."""

    def lists_everything(self, kind: Kind) -> bool:
        """Whether a whole listing of `kind` shows every record, those outside the sync
        scope too (marked so); where not, twins outside the scope are looked up (CON-3)."""

    def create_many(self, writes: Sequence[Write]) -> Sequence[WriteResult | Exception]:
        """Plain creates of one kind in one request, each once per key as `create`;
        a result or the error of each, in order."""


class CreatesOneByOne:
    """For a side whose API creates one record per request, and whose whole listing
    shows every record."""

    def can_create_many(self, kind: Kind) -> bool:
        return False

    def lists_everything(self, kind: Kind) -> bool:
        return True

    def create_many(self, writes: Sequence[Write]) -> Sequence[WriteResult | Exception]:
        raise NotImplementedError("this side creates one record per request")


@dataclass(frozen=True, slots=True)
class CrmUser:
    """One active user of the tenant's CRM, as its user directory lists them."""

    id: str
    name: str = ""
    email: str = ""


class ProviderAccount(RecordSide, Protocol):
    pass


# -- e-mail recording (EML-1..5) ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Person:
    """A CRM contact or lead that holds an e-mail address (EML-2), with how many history
    items it has: of several, a message is filed to the one with the most."""

    kind: str  # "contact" or "lead"
    id: str
    name: str
    emails: tuple[str, ...]
    history_count: int


@dataclass(frozen=True, slots=True)
class Stored:
    """An attachment the CRM stores itself (up to `MailLimits.attachment_bytes`)."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Linked:
    """An attachment too large for the CRM, kept in an object store: the CRM gets its
    address."""

    filename: str
    content_type: str
    size: int
    url: str = field(repr=False)  # a signed URL is a secret while it lasts


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded message on one CRM contact or lead (EML-2). `participants` are
    (role, address, name) with role from, to, cc or bcc."""

    record_kind: str  # "contact" or "lead"
    record_id: str
    subject: str
    body: str = field(repr=False)
    date: datetime
    participants: tuple[tuple[str, str, str], ...]
    attachments: tuple[Stored, ...] = ()
    links: tuple[Linked, ...] = ()


@dataclass(frozen=True, slots=True)
class MailLimits:
    """What the CRM declares it takes of a history item: the longest subject and body in
    characters, and the largest attachment in bytes it stores itself (0: none; larger
    ones go as links). The defaults are what a CRM that declares nothing is taken to
    keep (the contract's /schema: limits.history, capabilities.attachment_bytes)."""

    subject: int = 255
    body: int = 65_536
    attachment_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Headline:
    """What a page shows of a message for its user to choose it (EML-5): the mailbox's
    id of it, its subject and sender as the message has them, and when it arrived."""

    id: str
    subject: str
    sender: str  # "Name <address>", or the address alone
    received: datetime


# EML-1: crmsync's labels (or categories, as a mailbox calls them), by the role each plays.
SEND, RECORDED, MISSING = "send", "recorded", "missing"
LABEL_NAMES = {SEND: "CRM/Send To CRM", RECORDED: "CRM/Recorded", MISSING: "CRM/Missing Contact"}


class MailAccount(Protocol):
    """A user's mailbox as e-mail recording uses it: messages tagged with labels (or
    categories), each label known by an id that a rename keeps."""

    def labels(self, known: Mapping[str, str]) -> dict[str, str]:
        """EML-1: the ids of crmsync's labels by role (SEND, RECORDED, MISSING), made
        where missing. `known` are the ids found before: a label the user renamed keeps
        its id and stays crmsync's; one the user deleted is made again."""

    def tagged(self, label: str, limit: int) -> list[str]:
        """Up to `limit` ids of messages carrying the label `label` (an id), oldest
        first."""

    def message(self, message_id: str) -> tuple[bytes, datetime]:
        """The message's RFC 5322 bytes and when the mailbox received (or sent) it.
        NotFound when it is gone."""

    def relabel(self, message_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        """Add and remove labels (ids) of a message. NotFound when it is gone."""

    def headlines(self, label: str, limit: int) -> list[Headline]:
        """EML-5: up to `limit` messages carrying the label `label` (an id), newest first,
        with what a page shows of each."""


class AttachmentStore(Protocol):
    """Where attachments too large for the CRM are kept (EML-2): crmsync.objectstore."""

    def put(self, key: str, content_type: str, data: bytes, filename: str = "") -> None: ...

    def link(self, key: str, filename: str = "", seconds: int = 3600) -> str:
        """A short-lived address that downloads the object."""


class CrmMail(Protocol):
    """The CRM's side of e-mail recording (the contract's /schema, /people, /history)."""

    def mail_limits(self) -> MailLimits: ...

    def people(self, address: str) -> list[Person]:
        """The contacts and leads the acting user may see that hold `address`, most
        history first."""

    def search_people(self, text: str, limit: int) -> list[Person]:
        """EML-5: the contacts and leads the acting user may see whose name or an address
        holds `text` (whatever its case; 2 characters at least), up to `limit`, most
        history first."""

    def person_card(self, person: Person, recent: int = 5) -> PersonCard:
        """CTX-1: what the mail client's pane shows of `person`: where to open it, its
        account and open opportunities, its `recent` latest history items and its custom
        fields that hold a value. NotFound when it is gone or hidden from the user."""

    def documents(self, text: str, limit: int) -> list[Document]:
        """CTX-1: the documents the user may see whose name holds `text` (2 characters
        at least, whatever its case), newest first, `limit` at most."""

    def document(self, document_id: str) -> tuple[str, str, bytes]:
        """CTX-1: a document's file name, content type and content. NotFound when it is
        unknown or hidden from the user."""

    def record_history(self, entry: HistoryEntry, key: str) -> tuple[str, bool]:
        """Record `entry` once per `key` (EML-4): the same key again answers the item
        recorded first. Returns the item's id, and whether this call recorded it (False:
        the key was recorded before). NotFound when the record is gone; PermanentError
        when the CRM refuses the item (too large, malformed)."""


class CrmConnector(RecordSide, CrmMail, Protocol):
    def schema(self) -> CrmSchema:
        """Field length limits and capabilities the CRM declares (SYN-3, CAL-9, TSK-3)."""

    def users(self) -> dict[str, str]:
        """The tenant's active users and their e-mail addresses: the directory that
        turns activity members into provider attendees (CAL-6)."""

    def directory(self) -> list[CrmUser]:
        """The tenant's active users with their names and addresses, in the CRM's order:
        whom a tenant admin may onboard (AUTH-1, AUTH-5)."""


INTERRUPTED = "the worker stopped before the run ended; the next run took over"


class Store(Protocol):
    """Durable state of connections: cursors, links, runs, the queue, the lease."""

    def acquire_lease(
        self,
        connection: str,
        holder: str,
        now: datetime,
        seconds: int,
        record: Mapping[str, Any] | None = None,
        *,
        lazy: bool = False,
    ) -> bool:
        """Hold the connection until `now + seconds` unless another holder's lease runs;
        the holder renewing keeps what was asked of it (`ask_again`). `record`: fields
        of the connection's record (`save_connection_record`) written with the lease,
        in the same write. While it holds the lease, the holder's cursors and retries
        are answered as it knows them (nobody else writes them).

        `lazy`: the store may write the lease with the holder's first write instead
        (on condition that nobody took it meanwhile); that write, and each after it,
        then raises LeaseTaken(first=True) if somebody did. A store may ignore it."""

    def ask_again(self, connection: str, trigger: str, now: datetime) -> datetime | None:
        """A cycle found the connection held: ask the holder for one cycle more, after it
        ends (`release_lease` answers `trigger`, the first one asked). Returns when the
        holder's lease runs out (if it dies, `asked` still shows the ask then); None
        when no lease runs at `now` any more: the asker may take the connection."""

    def asked(self, connection: str) -> Ask | None:
        """The cycle asked of the lease's holder that no release answered yet."""

    def held_record(self, connection: str) -> dict[str, Any] | None:
        """The connection's record (`connection_record`) as its lease holder here took
        the lease, with no read; None when nobody here holds it."""

    def release_lease(
        self, connection: str, holder: str, record: Mapping[str, Any] | None = None
    ) -> str | None:
        """Give the lease up (only its holder can); the trigger of the cycle asked for
        while it was held, if one was. `record`: fields of the connection's record
        written in the same write as the release."""

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

    def journal_links(self, connection: str, links: Sequence[Link]) -> None:
        """Keep these links, each in state `creating` or `applying` with what it is
        about to write, before those writes (SYN-4): `journaled_links` gives them back
        until each is saved settled or deleted. As `save_link` of each, in fewer
        writes where the store can."""
        ...

    def save_link(self, connection: str, link: Link) -> None: ...
    def delete_link(self, connection: str, kind: Kind, key: str) -> None: ...
    def linked_count(self, connection: str, kind: Kind) -> int: ...
    def retries(self, connection: str, kind: Kind) -> set[tuple[Side, str]]: ...
    def set_retries(self, connection: str, kind: Kind, pending: set[tuple[Side, str]]) -> None: ...
    def put_queue_item(self, connection: str, item: Mapping[str, Any]) -> None:
        """Store an item of the queue (SYN-2, SET-5, SYN-6); what the user settled of it
        (`choice`, `picks`) stays while its reason is the same."""

    def drop_queue_item(self, connection: str, item_id: str) -> None: ...
    def queue(self, connection: str) -> list[dict[str, Any]]:
        """The connection's queue items in the order they were first put (oldest first),
        each with `choice` and `picks` (None until the user settles it)."""

    def put_filing(self, connection: str, filing: Mapping[str, Any]) -> None:
        """EML-5: keep messages the user chose to file to records they chose (`id`,
        `asked`, `messages`, `records`) until a mail pass has filed them
        (`drop_filing`)."""

    def filings(self, connection: str, limit: int) -> list[dict[str, Any]]:
        """EML-5: up to `limit` of the filings kept, oldest `asked` first."""

    def drop_filing(self, connection: str, filing_id: str) -> None: ...
    def resolve_queue_item(
        self,
        connection: str,
        item_id: str,
        choice: Side | None = None,
        picks: Mapping[str, Side] | None = None,
    ) -> None:
        """The user's answer, for the next cycle: a side for the whole record, or a side
        per field (`picks`, field name → side); each replaces the other. KeyError for
        an item not in the queue."""

    def save_run(
        self, connection: str, run: Mapping[str, Any], items: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Keep the run, and its `items` (as `add_items` would, in the same write where
        they fit); it is erased the deployment's retention after it ended, or its own
        `history_days` (the tenant's, HIS-3) when that is shorter."""

    def add_items(
        self,
        connection: str,
        run_id: str,
        items: Sequence[Mapping[str, Any]],
        history_days: int | None = None,
    ) -> None:
        """Append the run's items; each is erased as its run is (HIS-3)."""

    def runs(self, connection: str) -> list[dict[str, Any]]: ...
    def items(self, connection: str, run_id: str) -> list[dict[str, Any]]: ...
    def interrupt_run(self, connection: str, run: Mapping[str, Any], now: datetime) -> bool:
        """Mark the run `interrupted` (its worker died: the lease it held ran out) if it
        is still `running`; whether it was."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A provider push channel (a watch, a subscription) and whose it is.
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


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A provider's push notification as it reached crmsync: its headers, its query
    parameters (URL-decoded) and its body; which of them carry the notification is the
    provider's affair."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    method: str = "POST"
    path: str = ""  # below the provider's own address ("/manifest.xml"), where it has pages


@dataclass(frozen=True, slots=True)
class PushAnswer:
    """What crmsync answers a push notification: the HTTP status and its reason, or,
    where the provider expects one (a subscription's handshake), a plain-text body."""

    status: int
    reason: str
    text: str | None = None
    content_type: str = ""  # of `text`, where it is not the caller's default
    # `text` is a page the provider's own client shows inside its window (a frame on
    # the web), so it may be framed; every other answer of crmsync forbids framing
    framed: bool = False


def mailbox_digest(address: str) -> str:
    """What the mailbox directory keeps of a mailbox address: the SHA-256 digest of the
    address lower-cased, so the lookup holds no address."""
    return hashlib.sha256(normalize_email(address).encode()).hexdigest()


def account_digest(provider: str, subject: str) -> str:
    """What the account directory keeps of a provider account: the SHA-256 digest of the
    provider's name and the account's stable id."""
    return hashlib.sha256(f"{provider}\0{subject}".encode()).hexdigest()


class AccountDirectory(Protocol):
    """A provider account (its stable id) → the connections bound to it: how a request
    that names only the account (the mail client's pane, CTX-1) finds its tenant and
    connection. One account may be connected in several tenants; a connection has one
    route, replaced when saved again and dropped when the connection is erased."""

    def account_connections(self, provider: str, subject: str) -> list[tuple[str, str]]:
        """(tenant, connection) of every route of the account, in that order."""

    def save_account(self, provider: str, subject: str, tenant: str, connection: str) -> None:
        """Route the account to the connection (its earlier account routes no more)."""

    def drop_account(self, tenant: str, connection: str) -> None:
        """Drop the connection's route (nothing happens when it has none)."""


class MailboxDirectory(Protocol):
    """Mailbox address → the connections its push notifications are for: the route a
    mail notification takes, which names only the mailbox. One address may be
    connected in several tenants; a connection has one route, replaced when it is saved
    again and dropped when the connection is erased (AUTH-4)."""

    def mailbox_connections(self, address: str) -> list[tuple[str, str]]:
        """(tenant, connection) of every route of the address, in that order."""

    def save_mailbox(self, address: str, tenant: str, connection: str) -> None:
        """Route the address to the connection (its earlier address routes no more)."""

    def drop_mailbox(self, tenant: str, connection: str) -> None:
        """Drop the connection's route (nothing happens when it has none)."""

    def watch_mailbox(self, tenant: str, connection: str, until: datetime) -> None:
        """The mailbox's notifications are watched until `until` (EML-1): the fan-out
        renews the watch before then (`expiring_mailboxes` of the backend). Nothing
        happens when the connection has no route."""


class TaskQueue(Protocol):
    """Where cycles wait to run (Cloud Tasks in production)."""

    def enqueue(
        self, tenant: str, connection: str, *, name: str, not_before: datetime, trigger: str
    ) -> bool:
        """A cycle of `connection` at `not_before`; False when a task of this name is
        already waiting, so a burst of triggers collapses into one cycle."""


class RunStatus(StrEnum):
    """How a run stands or ended (HIS-1); stored and published as its text."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"  # some records failed alone (SYN-5); the rest went through
    CONTINUED = "continued"  # out of time; the next task resumes (RUN-6)
    BUSY = "busy"  # another run holds the lease
    FAILED = "failed"
    NEEDS_REAUTH = "needs_reauth"  # the provider grant stopped working (AUTH-3)
    CRM_UNAUTHORIZED = "crm_unauthorized"  # the CRM refused the tenant's token
    LEASE_LOST = "lease_lost"
    INTERRUPTED = "interrupted"  # its worker died; a later run took over
    SKIPPED = "skipped"  # the connection was not active, or records mail only
    IDLE = "idle"  # a poll saw no change, or a check its cycle asked for: no run at all
    # (as a run's result, HIS-2: a run that ended well and changed nothing)


# The outcomes of a run's records that changed one, or tried to (HIS-2): a record
# skipped by a rule (excluded, detached, not allowed) was left as it was.
CHANGING_OUTCOMES = (
    "create",
    "update",
    "delete",
    "restore",
    "link",
    "unlink",
    "hold",
    "conflict",
    "fail",
    "record",  # a mail pass recorded a message (EML-2, EML-5)
    "missing",  # or labelled one "Missing Contact" (EML-3)
)


def changed_kinds(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    """HIS-2: the kinds of record a run changed or tried to change, from its counts."""
    return sorted(k for k, per in counts.items() if any(per.get(o) for o in CHANGING_OUTCOMES))


def run_result(run: Mapping[str, Any]) -> str:
    """HIS-2: how a run ended as its list reads it: its status, but "idle" (nothing to
    do) for a run that ended well and changed no record nor tried to."""
    status = str(run.get("status") or "")
    if status == RunStatus.OK and not changed_kinds(run.get("counts") or {}):
        return RunStatus.IDLE
    return status


def quiet_run(run: Mapping[str, Any]) -> bool:
    """HIS-1: a run that ended well having found nothing at all to do: no record
    changed, skipped or failed, no error, nothing left over. A connection's record
    folds such runs into one history entry (`folded`) instead of a document each."""
    return (
        run.get("status") == RunStatus.OK
        and not any((run.get("counts") or {}).values())
        and not run.get("errors")
        and not run.get("unread")
        and not run.get("pending")
        and not run.get("retry_after")
    )


class ConnectionState(StrEnum):
    """Whether a connection's cycles run."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"  # until the user consents again (AUTH-3)
    DISCONNECTED = "disconnected"


class TenantStore(Protocol):
    """What the use cases need of one tenant's store (MemoryStore, FirestoreStore)."""

    def tenant_record(self) -> dict[str, Any] | None: ...
    def save_tenant_record(self, record: Mapping[str, Any]) -> None: ...
    def user_record(self, user: str) -> dict[str, Any] | None: ...
    def save_user_record(self, user: str, record: Mapping[str, Any]) -> None: ...
    def user_records(self) -> dict[str, dict[str, Any]]:
        """Every user record of the tenant, by user id, in one read."""

    def connection_record(self, connection: str) -> dict[str, Any] | None: ...
    def save_connection_record(self, connection: str, record: Mapping[str, Any]) -> None: ...
    def mark_syncing(self, crm_user: str, syncing: bool) -> None: ...
    def connection_records(self) -> list[dict[str, Any]]: ...
    def live_connections(self) -> int:
        """How many of the tenant's connections are not disconnected (AUTH-6's seats
        taken): counted, not read one by one."""
        ...

    def set_next_due(self, connection: str, when: datetime | None) -> None: ...
    def set_status(self, connection: str, status: str, reason: str = "") -> None: ...
    def channels_of(self, connection: str) -> list[Channel]: ...
    def runs(self, connection: str) -> list[dict[str, Any]]: ...
    def run(self, connection: str, run_id: str) -> dict[str, Any] | None: ...
    def items(self, connection: str, run_id: str) -> list[dict[str, Any]]: ...
    def run_page(self, query: RunQuery) -> RunPage:
        """A page of the tenant's runs (HIS-2), reading only that page's documents;
        ValueError for a query no store answers (a sort it does not know, a token of
        another query)."""

    def lease_holder(self, connection: str) -> str | None: ...


class Backend(Protocol):
    """Every tenant's store, and the queries that span tenants."""

    def store(self, tenant: str) -> Any: ...
    def due(self, now: datetime, limit: int, after: Due | None = None) -> list[Due]: ...
    def expiring_channels(self, before: datetime, limit: int) -> list[Channel]: ...
    def expiring_mailboxes(self, before: datetime, limit: int) -> list[tuple[str, str]]: ...
    def sessions(self) -> SessionStore: ...
    def set_next_due_many(self, items: Sequence[NextDue]) -> None:
        """Move many connections' due times at once, with no read (the fan-out's)."""


class SessionStore(Protocol):
    """The web app's signed-in browsers, by the digest of their session id."""

    def put_session(self, key: str, record: Mapping[str, Any], expires: datetime) -> None: ...
    def session(self, key: str, now: datetime) -> dict[str, Any] | None: ...
    def drop_session(self, key: str) -> None: ...
    def drop_sessions_of(self, tenant: str, user: str) -> int: ...


class CrmFactory(Protocol):
    """How one cycle reaches the tenant's CRM as one CRM user."""

    def __call__(
        self, tenant: str, tenant_record: Mapping[str, Any], crm_user: str, settings: Settings
    ) -> CrmConnector: ...


class GrantStore(Protocol):
    """Where a connection's sealed grant, status and channels live (the connection
    document in Firestore)."""

    def acquire_lease(
        self,
        connection: str,
        holder: str,
        now: datetime,
        seconds: int,
        record: Mapping[str, Any] | None = None,
        *,
        lazy: bool = False,
    ) -> bool: ...
    def release_lease(
        self, connection: str, holder: str, record: Mapping[str, Any] | None = None
    ) -> str | None: ...
    def sealed_grant(self, connection: str) -> dict[str, str] | None: ...
    def save_sealed_grant(self, connection: str, sealed: Mapping[str, str]) -> None: ...
    def set_status(self, connection: str, status: str, reason: str = "") -> None: ...
    def status(self, connection: str) -> tuple[str, str]: ...
    def channels_of(self, connection: str) -> list[Any]: ...
    def drop_channel(self, channel_id: str) -> None: ...
    def erase_connection(self, connection: str) -> None:
        """Links, cursors, retries, the queue, runs and their items, the grant."""


class StateStore(Protocol):
    """Pending OAuth flows by their single-use nonce."""

    def put_state(self, nonce: str, record: Mapping[str, Any]) -> None: ...
    def take_state(self, nonce: str) -> dict[str, Any] | None:
        """The record, removed in the same step (a second take finds nothing)."""


class KeyEncryptionKey(Protocol):
    """The key that wraps each sealed secret's data key (Cloud KMS in production)."""

    key_id: str

    def wrap(self, data_key: bytes, context: bytes) -> bytes: ...
    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class EventStream(Protocol):
    """Where crmsync's events go (Pub/Sub in production)."""

    def publish(self, event: Mapping[str, Any]) -> None: ...


def _moment(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a connection's record keeps of its last run (HIS-1, RUN-2)."""

    id: str
    status: RunStatus
    trigger: str = ""
    started: datetime | None = None
    ended: datetime | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> RunSummary | None:
        if not data or not data.get("id"):
            return None
        return cls(
            str(data["id"]),
            RunStatus(data.get("status") or RunStatus.RUNNING),
            str(data.get("trigger") or ""),
            _moment(data.get("started")),
            _moment(data.get("ended")),
        )

    def running(self) -> bool:
        return self.status == RunStatus.RUNNING


# RunOutcome.bad: the statuses of a cycle that did not do all it should have
_BAD = frozenset({RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CRM_UNAUTHORIZED})


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one of a connection's recent cycles ended, as its record keeps it: enough to
    tell a connection that keeps failing from one that failed once, without reading its
    runs. A grant refused before a cycle began, or adapters that could not be built, are
    outcomes too (with no run)."""

    status: RunStatus
    ended: datetime | None = None
    failed: int = 0  # records that failed alone (SYN-5)
    unread: tuple[str, ...] = ()  # kinds whose changes could not be read
    reason: str = ""  # why a cycle with no run failed

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> RunOutcome:
        return cls(
            RunStatus(data.get("status") or RunStatus.FAILED),
            _moment(data.get("ended")),
            int(data.get("failed") or 0),
            tuple(data.get("unread") or ()),
            str(data.get("reason") or ""),
        )

    @classmethod
    def of_run(cls, run: Mapping[str, Any], now: datetime) -> RunOutcome:
        """The outcome of a finished run record (HIS-1)."""
        counts: Mapping[str, Mapping[str, int]] = run.get("counts") or {}
        return cls(
            RunStatus(run["status"]),
            _moment(run.get("ended")) or now,
            sum(int(per_kind.get("fail", 0)) for per_kind in counts.values()),
            tuple(run.get("unread") or ()),
        )

    def stored(self) -> dict[str, Any]:
        """The plain record the connection keeps."""
        return {
            "status": str(self.status),
            "ended": self.ended,
            "failed": self.failed,
            "unread": list(self.unread),
            "reason": self.reason,
        }

    @property
    def bad(self) -> bool:
        """It ended with records or kinds left unsynced, or not at all."""
        return self.status in _BAD or self.failed > 0 or bool(self.unread)


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One connection as the store keeps it (the plain record of a TenantStore), typed:
    the use cases read this, never the record's keys."""

    id: str
    user: str
    provider: str
    status: ConnectionState = ConnectionState.ACTIVE
    services: tuple[str, ...] = ("sync",)
    settings: Mapping[str, Any] = field(default_factory=dict)
    account: str = ""  # the bound account's address, as shown to the user
    subject: str = ""  # the bound account's stable id at the provider
    created: datetime | None = None
    bound: datetime | None = None
    last_run: RunSummary | None = None
    last_ok: datetime | None = None
    health: str = "ok"
    next_due: datetime | None = None
    full_due: datetime | None = None  # when the next full cycle is due (polls in between)
    reason: str = ""  # why it is not active
    channel_problem: str = ""  # why push is not working (polled meanwhile)
    mail_problem: str = ""  # why mail is not routed to it
    recent: tuple[RunOutcome, ...] = ()  # its last few cycles, oldest first
    consented: datetime | None = None  # when its user last consented (AUTH-1)
    enabled: bool = True  # SET-6: the tenant admin's switch for the connection's user
    # the CRM user its user acts as, as mapped when it connected (a mapping changes
    # only while its user has no live connection); "" for a record made before it was
    # kept here: the user's record says
    crm_user: str = ""
    # BEY-3: no cycle runs until the user starts the first sync from its preview
    preview_first: bool = False
    mail_labels: Mapping[str, str] = field(default_factory=dict)  # EML-1: ids by role
    mail_watch_until: datetime | None = None  # EML-1: when the mailbox's watch ends
    # HIS-1: the quiet runs since the last one recorded, as one entry: the first's id,
    # trigger and start, the last's end, and how many (`cycles`)
    quiet: Mapping[str, Any] | None = None
    # CTX-1: its account is in the account directory (records made before were routed
    # at their next cycle's end)
    routed: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> ConnectionRecord:
        return cls(
            id=str(data["id"]),
            user=str(data.get("user") or ""),
            provider=str(data.get("provider") or ""),
            status=ConnectionState(data.get("status") or ConnectionState.ACTIVE),
            services=tuple(data.get("services") or ("sync",)),
            settings=dict(data.get("settings") or {}),
            account=str(data.get("account") or ""),
            subject=str(data.get("subject") or ""),
            created=_moment(data.get("created")),
            bound=_moment(data.get("bound")),
            last_run=RunSummary.of(data.get("last_run")),
            last_ok=_moment(data.get("last_ok")),
            health=str(data.get("health") or "ok"),
            next_due=_moment(data.get("next_due")),
            full_due=_moment(data.get("full_due")),
            reason=str(data.get("reason") or ""),
            channel_problem=str(data.get("channel_problem") or ""),
            mail_problem=str(data.get("mail_problem") or ""),
            recent=tuple(RunOutcome.of(outcome) for outcome in data.get("recent") or ()),
            consented=_moment(data.get("consented")),
            enabled=data.get("enabled") is not False,
            crm_user=str(data.get("crm_user") or ""),
            preview_first=data.get("preview_first") is True,
            mail_labels={str(k): str(v) for k, v in (data.get("mail_labels") or {}).items()},
            mail_watch_until=_moment(data.get("mail_watch_until")),
            quiet=dict(data["quiet"]) if data.get("quiet") else None,
            routed=data.get("routed") is True,
        )

    @property
    def active(self) -> bool:
        """Its cycles may run: connected, authorized, and not turned off (SET-6)."""
        return self.status == ConnectionState.ACTIVE and self.enabled

    @property
    def live(self) -> bool:
        """Not disconnected: it counts as a seat and binds its user's account."""
        return self.status != ConnectionState.DISCONNECTED

    @property
    def syncs(self) -> bool:
        """Its cycles run (a connection for mail only has none)."""
        return "sync" in self.services

    @property
    def records_mail(self) -> bool:
        """Its user's tagged messages are recorded (EML-1)."""
        return "mail" in self.services
