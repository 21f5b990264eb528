"""The Store port on Firestore (Native mode), the production store: same contract as
the memory store.

    tenants/{t}                           the tenant record
    tenants/{t}/users/{u}                 user records
    tenants/{t}/connections/{c}           id, tenant, registered, record{..}, next_due,
                                          status, reason, grant{..}, lease{holder, expires},
                                          cursors{side_kind: cursor}, retries{kind: [side:id]}
    .../connections/{c}/links/{l}         one link, with crm_lookup, provider_lookup, saved
    .../connections/{c}/runs/{r}          one run, with tenant, connection, kinds and
                                          duration for the history's queries, and
                                          expire_at (TTL)
    .../connections/{c}/runs/{r}/items/{i}  one history item, with seq and expire_at (TTL)
    .../connections/{c}/queue/{q}         one queue item, with what the user settled:
                                          choice (a side), picks{field: side}
    .../connections/{c}/filings/{f}       messages a user chose to file to records they
                                          chose (EML-5), ordered by asked, until filed
    channels/{id}                         push channel → tenant and connection
    mailboxes/{id}                        address_digest, tenant, connection: a Gmail
                                          address's route (one per connection)
    accounts/{id}                         account_digest, tenant, connection: a provider
                                          account's route (one per connection, CTX-1)
    oauth_states/{s}                      one pending sign-in, with expires_at (TTL)
    sessions/{s}                          one signed-in browser of the web app, with
                                          expires_at (TTL); named by the id's digest
    nonces/{n}                            one signed event already accepted, with
                                          expires_at (TTL): a replay is accepted once

Tenant, user and connection ids name their documents as they are when they are short
and plain; any other id, and every link, run, queue item, channel, mailbox route and
state, is named by a hash, so ids with "/" or of any length are safe and no collection
is written in key order (Firestore's hotspot rule). Run items get Firestore's random ids.

A mailbox route is named by a hash of its tenant and connection, so saving replaces
the connection's route and erasing the connection deletes it without a query; it keeps
only a digest of the address, which notifications are routed by (an equality filter,
served by the single-field index).

A link is found through its lookup fields, hashes of (kind, CRM id) and (kind, provider
id), queried with `in`: a cycle with k changes reads about k links, never the table.
Leases and single-use states rest on server-side preconditions (create, or update and
delete at the last update time read) rather than on transactions: a contended lease
costs a read and a write, and never waits on another worker's lock.
Values the engine keeps (tuples, dates, canonical dataclasses) are stored tagged and
come back equal; times come back as aware UTC datetimes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeAlias

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from crmsync.auth.state import TTL as STATE_TTL
from crmsync.engine.plan import AccountSpec, Hold, Intent, Write
from crmsync.engine.records import Link
from crmsync.errors import LeaseTaken
from crmsync.model import Activity, Address, Contact, Kind, Phone, Regarding, Todo
from crmsync.ports import (
    INTERRUPTED,
    RUN_SORTS,
    Ask,
    Channel,
    Due,
    NextDue,
    RunPage,
    RunQuery,
    RunStatus,
    account_digest,
    mailbox_digest,
)
from crmsync.settings import Side
from crmsync.store import runs as paging
from crmsync.store.runs import RETENTION

Snapshot: TypeAlias = "firestore.DocumentSnapshot[firestore.DocumentReference]"

BATCH_LIMIT = 500  # writes per commit
IN_LIMIT = 30  # values per `in` filter
LEASE_ATTEMPTS = 8
RECENT_SECONDS = 5.0  # a read this recent is what a lease's conditional write goes by
# The next full cycle's due time lives in the connection's record (not indexed: no
# query needs it); the scheduler moves it with next_due, in the same write.
FULL_DUE = FieldPath("record", "full_due").to_api_repr()
# The fields of a connection document the scheduler's query of due ones returns.
DUE_FIELDS = ["id", "tenant", "registered", "record", "status", "reason", "next_due"]

# Firestore deletes a document once this timestamp field has passed (HIS-3, AUTH-2).
TTL_FIELDS: dict[str, str] = {
    "oauth_states": "expires_at",
    "sessions": "expires_at",
    "nonces": "expires_at",
    "runs": "expire_at",
    "items": "expire_at",
}

# Fields no query filters or orders on: exempt from single-field indexing, so large
# maps cost no index entries (the TTL fields too, as Firestore advises).
UNINDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "links": ("base", "pending", "saved"),
    "journal": ("entries", "at"),
    "runs": ("counts", "errors", "expire_at", "entries"),
    "items": ("entries", "changes", "label", "expire_at"),
    "queue": ("crm_values", "provider_values", "picks"),
    "connections": ("record", "grant", "cursors", "retries", "journal"),
    "oauth_states": ("expires_at",),
    "nonces": ("expires_at",),
    "sessions": ("expires_at", "csrf"),
}


@dataclasses.dataclass(frozen=True)
class Index:
    """A composite index a query of this module needs (`fields`: path and order, or
    CONTAINS for the values of an array)."""

    collection_group: str
    fields: tuple[tuple[str, str], ...]
    query_scope: str = "COLLECTION"


# FirestoreStore.run_page (HIS-2): every tenant's runs in one collection group, queried
# with `tenant ==`, any of the filters below, and one sort. Firestore merges one index per
# filter field that ends in the page's order, so each filter needs one index per order,
# not one per combination of filters; a sort other than `started` is followed by
# `started` (newest first), which also serves a time window with that sort.
_RUN_FILTERS: tuple[tuple[str, str], ...] = (
    ("tenant", "ASCENDING"),
    ("connection", "ASCENDING"),
    ("result", "ASCENDING"),  # what the status filter reads (HIS-2)
    ("trigger", "ASCENDING"),
    ("provider", "ASCENDING"),
    ("kinds", "CONTAINS"),
)


def _run_orders() -> list[tuple[tuple[str, str], ...]]:
    out: list[tuple[tuple[str, str], ...]] = []
    for sort in RUN_SORTS:
        for direction in ("ASCENDING", "DESCENDING"):
            then = () if sort == "started" else (("started", "DESCENDING"),)
            out.append(((sort, direction), *then))
    return out


_RUN_INDEXES = tuple(
    Index("runs", (field, *order), "COLLECTION_GROUP")
    for field in _RUN_FILTERS
    for order in _run_orders()
)

INDEXES: tuple[Index, ...] = (
    # FirestoreBackend.due: next_due <= now, ordered by (next_due, tenant, id).
    Index(
        "connections",
        (("next_due", "ASCENDING"), ("tenant", "ASCENDING"), ("id", "ASCENDING")),
        "COLLECTION_GROUP",
    ),
    # FirestoreBackend.expiring_channels: expires < before, ordered by (expires, id).
    Index("channels", (("expires", "ASCENDING"), ("id", "ASCENDING"))),
    # FirestoreStore.channels_of: tenant == t and connection == c.
    Index("channels", (("tenant", "ASCENDING"), ("connection", "ASCENDING"))),
    # FirestoreStore.linked_count: kind == k and state in (linked, conflict).
    Index("links", (("kind", "ASCENDING"), ("state", "ASCENDING"))),
    # FirestoreStore.live_connections: registered and disconnected, counted.
    Index("connections", (("registered", "ASCENDING"), ("status", "ASCENDING"))),
    *_RUN_INDEXES,
)

_JOURNALED = ["creating", "applying"]
_USER_ID = "~user"  # a user document's own field for the user's id
# kept for queries, not part of a run (and the run's items, where they fit: `save_run`)
_RUN_INTERNAL = ("expire_at", "kinds", "duration", "result", "entries")
_COUNTED = ["linked", "conflict"]
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+#:=-]{0,127}")
_PLAIN_ID_RESERVED = re.compile(r"__.*__")


# -- document ids ------------------------------------------------------------------------
def _hashed_id(*parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return f"~{digest[:40]}"


def _name_id(value: str) -> str:
    """The id itself when it is short and plain, else its hash (never plain: "~")."""
    if _PLAIN_ID.fullmatch(value) and not _PLAIN_ID_RESERVED.fullmatch(value):
        return value
    return _hashed_id("name", value)


def _mailbox_id(tenant: str, connection: str) -> str:
    return _hashed_id("mailbox", tenant, connection)


def _account_id(tenant: str, connection: str) -> str:
    return _hashed_id("account", tenant, connection)


def _lookup(kind: str, record_id: str | None) -> str | None:
    return _hashed_id(kind, record_id)[1:] if record_id else None


# -- values ------------------------------------------------------------------------------
_STORED_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        Link,
        Write,
        Intent,
        Hold,
        AccountSpec,
        Contact,
        Activity,
        Todo,
        Phone,
        Address,
        Regarding,
    )
}


ITEM_ENTRIES = "entries"  # the items of an item document
JOURNAL_ENTRIES = "entries"  # the journaled links of a journal document
# The lease holder's journal is kept in the connection's document while it fits
# (JOURNAL_BYTES of entries, as JSON), written with the lease when the lease is taken
# lazily, and cleared by the release: a cycle's journal costs no write of its own.
JOURNAL = "journal"  # the connection document's field: {entries, at}
IN_CONNECTION = "~connection"  # the journal "document" id of those entries
JOURNAL_BYTES = 256 * 1024
ITEMS_PER_DOCUMENT = 200
ITEM_BYTES = 512 * 1024  # an item document's items, as JSON, at most (Firestore: 1 MiB)


def _item_chunks(
    items: Sequence[Mapping[str, Any]],
) -> Iterator[tuple[int, list[Mapping[str, Any]]]]:
    """The items in documents' worth, each with the place of its first item: at most
    ITEMS_PER_DOCUMENT items, and at most ITEM_BYTES of them (measured as JSON)."""
    chunk: list[Mapping[str, Any]] = []
    size, first = 0, 0
    for seq, item in enumerate(items):
        weight = len(json.dumps(item, default=str))
        if chunk and (len(chunk) == ITEMS_PER_DOCUMENT or size + weight > ITEM_BYTES):
            yield first, chunk
            chunk, size, first = [], 0, seq
        chunk.append(item)
        size += weight
    if chunk:
        yield first, chunk


def _encode(value: Any) -> Any:
    """A value as Firestore stores it: plain values as they are, aware datetimes as
    timestamps, the rest as single-key maps tagged "~..." (arrays never nest)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else {"~naive": value.isoformat()}
    if isinstance(value, date):
        return {"~date": value.isoformat()}
    if isinstance(value, list):
        return [_encode_item(v) for v in value]
    if isinstance(value, tuple):
        return {"~tuple": [_encode_item(v) for v in value]}
    if isinstance(value, frozenset | set):
        tag = "~frozenset" if isinstance(value, frozenset) else "~set"
        return {tag: [_encode_item(v) for v in value]}
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and _plain_key(k) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"~map": [{"k": _encode_item(k), "v": _encode_item(v)} for k, v in value.items()]}
    name = type(value).__name__
    if dataclasses.is_dataclass(value) and _STORED_TYPES.get(name) is type(value):
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"~dataclass": name, **fields}
    raise TypeError(f"crmsync does not store values of type {name}")


def _encode_item(value: Any) -> Any:
    encoded = _encode(value)
    return {"~list": encoded} if isinstance(encoded, list) else encoded


def _plain_key(key: str) -> bool:
    return (
        bool(key)
        and not key.startswith("~")
        and not _PLAIN_ID_RESERVED.fullmatch(key)
        and len(key.encode()) <= 1500
    )


_TAGS: dict[str, Callable[[Any], Any]] = {
    "~naive": datetime.fromisoformat,
    "~date": date.fromisoformat,
    "~list": lambda items: [_decode(v) for v in items],
    "~tuple": lambda items: tuple(_decode(v) for v in items),
    "~set": lambda items: {_decode(v) for v in items},
    "~frozenset": lambda items: frozenset(_decode(v) for v in items),
    "~map": lambda pairs: {_decode(p["k"]): _decode(p["v"]) for p in pairs},
}


def _decode(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if "~dataclass" in value:
            cls = _STORED_TYPES[value["~dataclass"]]
            return cls(**{k: _decode(v) for k, v in value.items() if k != "~dataclass"})
        if len(value) == 1:
            [(tag, inner)] = value.items()
            if tag in _TAGS:
                return _TAGS[tag](inner)
        return {k: _decode(v) for k, v in value.items()}
    return value


def _utc(moment: datetime) -> datetime:
    """A plain aware UTC datetime (not the client's DatetimeWithNanoseconds)."""
    moment = moment.astimezone(UTC)
    return datetime(
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond,
        tzinfo=UTC,
    )


def _fields(record: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _encode(value) for key, value in record.items()}


def _record(data: Mapping[str, Any] | None, internal: Iterable[str] = ()) -> dict[str, Any]:
    hidden = set(internal)
    return {k: _decode(v) for k, v in (data or {}).items() if k not in hidden}


def _merge_paths(prefix: tuple[str, ...], keys: Iterable[str]) -> list[str]:
    return [FieldPath(*prefix, key).to_api_repr() for key in keys]


def _record_update(record: Mapping[str, Any]) -> dict[str, Any]:
    """`save_connection_record`'s fields as an update of the connection document."""
    fields = dict(record)
    data: dict[str, Any] = {}
    if "status" in fields:
        data.update(status=fields.pop("status"), reason=fields.pop("reason", ""))
    fields.pop("reason", None)
    if "next_due" in fields:
        data["next_due"] = _encode(fields.pop("next_due"))
    for key, value in fields.items():
        data[FieldPath("record", key).to_api_repr()] = _encode(value)
    return data


@dataclasses.dataclass
class _Doc:
    """A document as read or last written by this store: its fields, and the update
    time a conditional write goes by (None once written unconditionally)."""

    data: dict[str, Any]
    update_time: Any
    exists: bool


@dataclasses.dataclass
class _Held:
    """What the lease holder knows of its connection besides the document: the journal
    entries it knows are open (found at the start, or written since and not yet
    settled), whether those are all there are (`journal_known`), and the queue as read
    once while it holds the lease, with what the document's summary of it should say."""

    holder: str
    doc: _Doc
    # a lease taken lazily and not written yet: the fields its first write carries
    # (`doc` is the document as read, with the lease as it will be)
    pending: dict[str, Any] | None = None
    lost: bool = False  # that first write found another holder: it writes nothing more
    open: set[str] = dataclasses.field(default_factory=set)
    journal_known: bool = False
    # the journal documents it wrote or found (id → their links), and for each open
    # link the document that journaled it last ("" when its own link document did)
    journals: dict[str, list[Link]] = dataclasses.field(default_factory=dict)
    journal_of: dict[str, str] = dataclasses.field(default_factory=dict)
    queue: dict[str, dict[str, Any]] | None = None
    waiting: dict[str, bool] | None = None  # the summary to write with the release
    # SYN-6's count of linked records per kind: the document's counts are right when
    # the last holder gave the lease up (`counted`); this holder's links change them by
    # `linked_delta` (from the states it read them in: `states`), or it counted a kind
    # itself (`linked_base`); a link it deleted unread makes a kind's count unknown
    counted: bool = False
    # cursors moved while it holds the lease, written with the release (None: forgotten)
    cursors: dict[str, str | None] = dataclasses.field(default_factory=dict)
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    linked_delta: dict[str, int] = dataclasses.field(default_factory=dict)
    linked_base: dict[str, int] = dataclasses.field(default_factory=dict)
    unsure: set[str] = dataclasses.field(default_factory=set)

    def saw(self, links: Iterable[Link]) -> None:
        for link in links:
            self.states[_hashed_id(link.kind, link.key)] = link.state

    def changed(self, kind: str, key: str, state: str) -> None:
        """A link saved in `state` ("" when deleted)."""
        ref_id = _hashed_id(kind, key)
        if ref_id not in self.states and not state:
            self.unsure.add(kind)  # deleted, in a state it never read
        before = self.states.get(ref_id, "")  # unread: a link it made
        counted = (state in _COUNTED) - (before in _COUNTED)
        self.linked_delta[kind] = self.linked_delta.get(kind, 0) + counted
        self.states[ref_id] = state

    def linked(self, kind: str) -> int | None:
        """The kind's linked count as the holder knows it, or None."""
        if kind in self.unsure:
            return None
        if kind in self.linked_base:
            return self.linked_base[kind] + self.linked_delta.get(kind, 0)
        counts = self.doc.data.get(LINKED)
        if self.counted and isinstance(counts, dict) and kind in counts:
            return int(counts[kind]) + self.linked_delta.get(kind, 0)
        return None

    def counts_written(self) -> dict[str, Any]:
        """The counts the release writes: each kind's as now known, or none."""
        counts = self.doc.data.get(LINKED)
        stored = counts if isinstance(counts, dict) else {}
        fields: dict[str, Any] = {}
        for kind in sorted({*stored, *self.linked_base, *self.linked_delta}):
            path = FieldPath(LINKED, kind).to_api_repr()
            known = self.linked(kind)
            if known is not None:
                fields[path] = known
            elif kind in stored:
                fields[path] = firestore.DELETE_FIELD  # counted again when it is needed
        return fields


# Connection document fields that spare an idle cycle its queries: whether no link is
# journaled (set by a release that knows so, cleared by every lease taken), and the ids
# of the queue's items.
JOURNAL_CLEAN = "journal_clean"
WAITING = "waiting"
LINKED = "linked"  # the count of linked records per kind (SYN-6)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _moment_of(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.min.replace(tzinfo=UTC)


def _created(snap: Snapshot) -> datetime:
    created = snap.create_time
    return created if isinstance(created, datetime) else datetime.min.replace(tzinfo=UTC)


def _link_fields(link: Link) -> dict[str, Any]:
    return {
        "key": link.key,
        "kind": link.kind,
        "crm_id": link.crm_id,
        "provider_id": link.provider_id,
        "crm_version": link.crm_version,
        "provider_version": link.provider_version,
        "base": _encode(dict(link.base)),
        "state": link.state,
        "pending": _encode(link.pending),
        "note": link.note,
        "reminder": link.reminder,
        "crm_lookup": _lookup(link.kind, link.crm_id),
        "provider_lookup": _lookup(link.kind, link.provider_id),
        "saved": firestore.SERVER_TIMESTAMP,  # changes on every save, also an unchanged link
    }


def _journal_entry(link: Link) -> dict[str, Any]:
    """A link as a journal document holds it: its fields, less the save time (a server
    timestamp, which Firestore refuses inside an array; the document has its own)."""
    return {k: v for k, v in _link_fields(link).items() if k != "saved"}


def _link_of(data: Mapping[str, Any]) -> Link:
    return Link(
        key=data["key"],
        kind=data["kind"],
        crm_id=data.get("crm_id"),
        provider_id=data.get("provider_id"),
        crm_version=data.get("crm_version"),
        provider_version=data.get("provider_version"),
        base=_decode(data.get("base") or {}),
        state=data.get("state", "linked"),
        pending=_decode(data.get("pending")),
        note=data.get("note", ""),
        reminder=data.get("reminder"),
    )


def _channel_of(data: Mapping[str, Any]) -> Channel:
    return Channel(
        id=data["id"],
        tenant=data["tenant"],
        connection=data["connection"],
        provider=data["provider"],
        resource_id=data["resource_id"],
        token_digest=data["token_digest"],
        expires=_utc(data["expires"]),
    )


def _pause(attempt: int) -> None:
    """A jittered wait before trying a contended write again."""
    time.sleep(random.uniform(0, 0.02 * (attempt + 1)))


class FirestoreStore:
    """One tenant's state under `tenants/{tenant}`, plus the global channel and mailbox
    directories and OAuth states. `reads` and `writes` count Firestore document
    operations."""

    def __init__(
        self, client: firestore.Client, tenant: str, retention: timedelta = RETENTION
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.retention = retention
        self.reads = 0
        self.writes = 0
        self._tenant_ref = client.collection("tenants").document(_name_id(tenant))
        self._channels = client.collection("channels")
        self._mailboxes = client.collection("mailboxes")
        self._accounts = client.collection("accounts")
        self._states = client.collection("oauth_states")
        self._held: dict[str, _Held] = {}  # connection → its lease holder's view
        self._seen: dict[str, tuple[float, _Doc]] = {}  # document id → last read

    # -- references and counted operations -------------------------------------------
    def _connection(self, connection: str) -> firestore.DocumentReference:
        ref: firestore.DocumentReference = self._tenant_ref.collection("connections").document(
            _name_id(connection)
        )
        return ref

    def _under(self, connection: str, name: str) -> firestore.CollectionReference:
        collection: firestore.CollectionReference = self._connection(connection).collection(name)
        return collection

    def _links(self, connection: str) -> firestore.CollectionReference:
        return self._under(connection, "links")

    def _journal(self, connection: str) -> firestore.CollectionReference:
        return self._under(connection, "journal")

    def _link(self, connection: str, kind: str, key: str) -> firestore.DocumentReference:
        return self._links(connection).document(_hashed_id(kind, key))

    def _runs(self, connection: str) -> firestore.CollectionReference:
        return self._under(connection, "runs")

    def _items(self, connection: str, run_id: str) -> firestore.CollectionReference:
        run = self._runs(connection).document(_hashed_id("run", run_id))
        collection: firestore.CollectionReference = run.collection("items")
        return collection

    def _queue(self, connection: str) -> firestore.CollectionReference:
        return self._under(connection, "queue")

    def _get(self, ref: firestore.DocumentReference) -> Snapshot:
        self.reads += 1
        return ref.get()

    def _query(self, query: Any) -> list[Snapshot]:
        found: list[Snapshot] = list(query.stream())
        self.reads += max(1, len(found))  # a query costs a read even when empty
        return found

    def _merge(
        self, ref: firestore.DocumentReference, data: Mapping[str, Any], paths: list[str]
    ) -> None:
        self.writes += 1
        if paths:
            fields: Any = paths  # the client takes field paths as well as True
            ref.set(dict(data), merge=fields)
        else:
            ref.set({}, merge=True)

    def _field(self, connection: str, name: str) -> Any:
        snap = self._get(self._connection(connection))
        return (snap.to_dict() or {}).get(name) if snap.exists else None

    # -- lease (RUN-3) ----------------------------------------------------------------
    # An idle cycle, every few minutes for every connected user, reads the connection
    # document once: the worker's read of the record is what the lease's conditional
    # write goes by, and while the lease is held the holder answers its own cursors and
    # retries (no one else writes them) from the document as it took the lease.
    def _snapshot(self, ref: firestore.DocumentReference) -> _Doc:
        snap = self._get(ref)
        data = (snap.to_dict() or {}) if snap.exists else {}
        doc = _Doc(data, snap.update_time if snap.exists else None, snap.exists)
        self._seen[ref.id] = (time.monotonic(), doc)
        return doc

    def _glimpse(self, connection: str) -> _Doc | None:
        """The connection's document as this store read it moments ago, kept for the
        conditional write that may follow (`_recent`)."""
        seen = self._seen.get(self._connection(connection).id)
        if seen is None or time.monotonic() - seen[0] > RECENT_SECONDS:
            return None
        return seen[1]

    def _recent(self, ref: firestore.DocumentReference) -> _Doc | None:
        """The document as this store read it moments ago: good enough to write on
        condition that it has not changed since (if it has, the write says so)."""
        seen = self._seen.pop(ref.id, None)
        if seen is None or time.monotonic() - seen[0] > RECENT_SECONDS:
            return None
        return seen[1]

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
        """Hold the connection until `now + seconds`, unless another holder's lease is
        still running. Written only if the document is as it was read, so of two
        workers racing for a free lease exactly one gets it. The holder renewing keeps
        what was asked of it (`ask_again`). `record`: fields of the connection's record
        written with the lease, in the same write.

        `lazy`: the lease is written with the holder's first write for the connection
        (its journal, as a rule), on condition that the document is still as read here;
        that write raises LeaseTaken(first=True) when another holder came first. A
        cycle that writes nothing gives such a lease up in its release's one write. Its
        holder renewing it without `lazy` has it written then."""
        ref = self._connection(connection)
        held = self._held.get(connection)
        mine = held is not None and held.holder == holder
        if (
            held is not None
            and not mine
            and held.pending is not None
            and not held.lost
            and _utc(held.pending["lease"]["expires"]) > now
        ):
            return False  # a holder here took it lazily: its document shows nothing yet
        if mine and held is not None and held.lost:
            return False
        if mine and held is not None and held.pending is not None:  # renewed unwritten
            lease = {"holder": holder, "expires": now + timedelta(seconds=seconds)}
            if held.pending["lease"].get("asked"):  # asked of it here meanwhile
                lease["asked"] = held.pending["lease"]["asked"]
            held.pending["lease"] = lease
            held.pending.update(_record_update(record or {}))
            held.doc.data["lease"] = lease
            if not lazy:  # written now (LeaseTaken if another took it meanwhile)
                self._take(connection)
            return True
        doc = held.doc if mine and held is not None else self._recent(ref)
        for attempt in range(LEASE_ATTEMPTS):
            fresh = doc is None or (doc.update_time is None and doc.exists)
            if doc is None or fresh:
                doc = self._snapshot(ref)
            current = doc.data.get("lease")
            if current and current["holder"] != holder and _utc(current["expires"]) > now:
                if not fresh:  # as read a while ago: look again before saying no
                    doc = None
                    continue
                return False
            lease = {"holder": holder, "expires": now + timedelta(seconds=seconds)}
            if current and current["holder"] == holder and current.get("asked"):
                lease["asked"] = current["asked"]
            fields = {"lease": lease, JOURNAL_CLEAN: False, **_record_update(record or {})}
            data = {**doc.data, "lease": lease, JOURNAL_CLEAN: False}
            clean = doc.data.get(JOURNAL_CLEAN) is True
            released = not current  # its last holder gave it up: its counts hold
            self._seen.pop(ref.id, None)  # the holder's view serves from here on
            if lazy and not mine and doc.exists and doc.update_time is not None:
                self._held[connection] = _Held(
                    holder,
                    _Doc(data, doc.update_time, True),
                    pending=fields,
                    journal_known=clean,
                    counted=released,
                )
                return True
            try:
                self.writes += 1
                if doc.exists:
                    option = self.client.write_option(last_update_time=doc.update_time)
                    result = ref.update(fields, option=option)
                else:
                    result = ref.create({"lease": lease})
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound):
                _pause(attempt)  # the document changed meanwhile: look again
                doc = None
                continue
            taken = _Doc(data, result.update_time, True)
            if mine and held is not None:  # renewed: what it knew holds
                moved = {k: v for k, v in held.cursors.items() if v is not None}
                stored = {**(taken.data.get("cursors") or {}), **moved}
                taken.data["cursors"] = {
                    k: v for k, v in stored.items() if held.cursors.get(k, v) is not None
                }
                held.doc = taken
            else:
                self._held[connection] = _Held(holder, taken, journal_known=clean, counted=released)
            return True
        return False

    def _take(self, connection: str, extra: Mapping[str, Any] | None = None) -> bool:
        """Write a lease taken lazily, with `extra` fields of the connection's document
        in the same write, on condition that the document is as read when the lease
        was taken; False when there is no such lease (nothing written)."""
        held = self._held.get(connection)
        if held is None or held.pending is None:
            return False
        if held.doc.update_time is None:  # its document written since it was read
            held.lost = True
        if held.lost:
            raise LeaseTaken("another cycle took the connection first", first=True)
        fields = {**held.pending, **(extra or {})}
        try:
            self.writes += 1
            result = self._connection(connection).update(
                fields, option=self.client.write_option(last_update_time=held.doc.update_time)
            )
        except (gexc.FailedPrecondition, gexc.NotFound) as exc:
            held.lost = True  # every write it tries from here on says so again
            self._seen.pop(self._connection(connection).id, None)  # read it again next
            raise LeaseTaken("another cycle took the connection first", first=True) from exc
        held.pending = None
        held.doc.update_time = result.update_time
        return True

    def _holder_writes(self, connection: str, fields: Mapping[str, Any]) -> None:
        """The lease holder's own conditional write of its connection's document (a
        lease not written yet goes with it); raises LeaseTaken when the lease is
        another's now."""
        if self._take(connection, fields):
            return
        held = self._held[connection]
        ref = self._connection(connection)
        for attempt in range(LEASE_ATTEMPTS):
            if held.doc.update_time is None:  # written unconditionally since: look
                doc = self._snapshot(ref)
                current = doc.data.get("lease") or {}
                if current.get("holder") != held.holder:
                    raise LeaseTaken("the connection's lease is another's", first=False)
                held.doc.update_time = doc.update_time
                held.doc.data["lease"] = current  # with what was asked of it meanwhile
            try:
                self.writes += 1
                result = ref.update(
                    dict(fields),
                    option=self.client.write_option(last_update_time=held.doc.update_time),
                )
            except (gexc.FailedPrecondition, gexc.NotFound):
                _pause(attempt)
                held.doc.update_time = None
                continue
            held.doc.update_time = result.update_time
            return
        raise LeaseTaken("the connection's document kept changing", first=False)

    def ask_again(self, connection: str, trigger: str, now: datetime) -> datetime | None:
        """Ask the lease's holder for one cycle more after it ends: written only if the
        document is as read, so an ask either reaches the holder before it releases the
        lease, or finds the lease gone and says so (None)."""
        ref = self._connection(connection)
        held = self._held.get(connection)
        if held is not None and held.pending is not None and not held.lost:
            lease = held.pending["lease"]  # taken lazily here: asked here, written with it
            if _utc(lease["expires"]) > now:
                lease.setdefault("asked", trigger)
                held.doc.data["lease"] = lease
                return _utc(lease["expires"])
        for attempt in range(LEASE_ATTEMPTS):
            snap = self._get(ref)
            current = (snap.to_dict() or {}).get("lease") if snap.exists else None
            if not current or _utc(current["expires"]) <= now:
                return None
            if current.get("asked"):
                return _utc(current["expires"])  # one more cycle is all it takes
            try:
                self.writes += 1
                ref.update(
                    {"lease.asked": trigger},
                    option=self.client.write_option(last_update_time=snap.update_time),
                )
            except (gexc.FailedPrecondition, gexc.NotFound):
                _pause(attempt)  # renewed, released or asked meanwhile: look again
                continue
            return _utc(current["expires"])
        return None

    def asked(self, connection: str) -> Ask | None:
        current = self._field(connection, "lease")
        if not current or not current.get("asked"):
            return None
        return Ask(str(current["asked"]), _utc(current["expires"]))

    def release_lease(
        self, connection: str, holder: str, record: Mapping[str, Any] | None = None
    ) -> str | None:
        """Give the lease up; only its holder can. Returns the trigger of the cycle asked
        for meanwhile, read in the same step as the release (the holder's own view of
        the document serves, written on condition that nobody asked meanwhile).
        `record`: fields of the connection's record written in the same write."""
        try:
            return self._release(connection, holder, record)
        finally:
            self._seen.pop(self._connection(connection).id, None)  # as it was: no more

    def _release(
        self, connection: str, holder: str, record: Mapping[str, Any] | None
    ) -> str | None:
        ref = self._connection(connection)
        held = self._held.pop(connection, None)
        if held is not None and held.holder != holder:
            held = None
        if held is not None and held.lost:
            return None  # it never held the connection
        doc = held.doc if held is not None else None
        fields: dict[str, Any] = {"lease": firestore.DELETE_FIELD, **_record_update(record or {})}
        if held is not None:
            fields.update(self._settle_journals(connection, held))
            fields[JOURNAL_CLEAN] = held.journal_known and not held.open
            if held.waiting is not None:
                fields[WAITING] = held.waiting
            fields.update(held.counts_written())
            for key, cursor in held.cursors.items():
                gone = firestore.DELETE_FIELD
                fields[FieldPath("cursors", key).to_api_repr()] = gone if cursor is None else cursor
        for attempt in range(LEASE_ATTEMPTS):
            if doc is None or doc.update_time is None:
                doc = self._snapshot(ref)
            current = doc.data.get("lease")
            if not current or current["holder"] != holder:
                return None
            try:
                self.writes += 1
                ref.update(
                    fields, option=self.client.write_option(last_update_time=doc.update_time)
                )
                asked = current.get("asked")
                return str(asked) if asked else None
            except (gexc.FailedPrecondition, gexc.NotFound):
                _pause(attempt)
                doc = None
        return None

    def lease_holder(self, connection: str) -> str | None:
        current = self._field(connection, "lease")
        return str(current["holder"]) if current else None

    def held_record(self, connection: str) -> dict[str, Any] | None:
        doc = self._holding(connection)
        return self._connection_record(doc.data) if doc is not None else None

    def _holding(self, connection: str) -> _Doc | None:
        """The connection document as the lease holder in this store knows it."""
        held = self._held.get(connection)
        return held.doc if held is not None else None

    def _wrote(self, connection: str, name: str, key: str, value: Any) -> None:
        """The holder's own write of `name.key` (None: removed), kept in its view; its
        next conditional write reads the document first."""
        doc = self._holding(connection)
        if doc is None:
            return
        inner = dict(doc.data.get(name) or {})
        if value is None:
            inner.pop(key, None)
        else:
            inner[key] = value
        doc.data[name] = inner
        doc.update_time = None

    # -- cursors ----------------------------------------------------------------------
    def cursor(self, connection: str, side: Side, kind: Kind) -> str | None:
        """The lease holder's view; else the document as read moments ago (a poll reads
        it to find the connection), else a read. A cursor a moment old at worst has the
        feed shown again from a little earlier, which the links already hold."""
        doc = self._holding(connection) or self._glimpse(connection)
        cursors = (doc.data if doc else {"cursors": self._field(connection, "cursors")}).get(
            "cursors"
        ) or {}
        found = cursors.get(f"{side}_{kind}")
        return str(found) if found is not None else None

    def save_cursor(self, connection: str, side: Side, kind: Kind, cursor: str) -> None:
        """Outside a lease, written now; the lease holder's go with its release (a
        holder that dies first leaves the cursors it started from: the next cycle
        reads those changes again and finds them applied, SYN-4)."""
        held = self._held.get(connection)
        if held is not None:
            held.cursors[f"{side}_{kind}"] = cursor
            cursors = dict(held.doc.data.get("cursors") or {})
            held.doc.data["cursors"] = {**cursors, f"{side}_{kind}": cursor}
            return
        self.writes += 1
        self._connection(connection).set({"cursors": {f"{side}_{kind}": cursor}}, merge=True)
        self._seen.pop(self._connection(connection).id, None)  # not as seen any more

    def forget_cursor(self, connection: str, side: Side, kind: Kind) -> None:
        held = self._held.get(connection)
        if held is not None:
            held.cursors[f"{side}_{kind}"] = None
            cursors = dict(held.doc.data.get("cursors") or {})
            cursors.pop(f"{side}_{kind}", None)
            held.doc.data["cursors"] = cursors
            return
        self.writes += 1
        self._connection(connection).set(
            {"cursors": {f"{side}_{kind}": firestore.DELETE_FIELD}}, merge=True
        )
        self._seen.pop(self._connection(connection).id, None)  # not as seen any more
        self._wrote(connection, "cursors", f"{side}_{kind}", None)

    # -- links ------------------------------------------------------------------------
    def links_for(
        self, connection: str, kind: Kind, crm_ids: Iterable[str], provider_ids: Iterable[str]
    ) -> list[Link]:
        """The links of these records: per id, the link saved last that holds it."""
        links = self._links(connection)
        chosen: dict[str, Link] = {}
        for side, ids in (("crm", crm_ids), ("provider", provider_ids)):
            lookups = list(dict.fromkeys(filter(None, (_lookup(kind, i) for i in ids))))
            newest: dict[str, tuple[datetime, Link]] = {}
            for chunk in _chunks(lookups, IN_LIMIT):
                query = links.where(filter=firestore.FieldFilter(f"{side}_lookup", "in", chunk))
                for snap in self._query(query):
                    data = snap.to_dict() or {}
                    lookup, saved = data[f"{side}_lookup"], data["saved"]
                    if lookup not in newest or saved > newest[lookup][0]:
                        newest[lookup] = (saved, _link_of(data))
            for lookup in lookups:
                if lookup in newest:
                    link = newest[lookup][1]
                    chosen.setdefault(link.key, link)
        self._saw(connection, chosen.values())
        return list(chosen.values())

    def links(self, connection: str, kind: Kind) -> Iterable[Link]:
        query = self._links(connection).where(filter=firestore.FieldFilter("kind", "==", kind))
        found = [_link_of(s.to_dict() or {}) for s in sorted(self._query(query), key=_created)]
        self._saw(connection, found)
        return found

    def _saw(self, connection: str, links: Iterable[Link]) -> None:
        held = self._held.get(connection)
        if held is not None:
            held.saw(links)

    def journaled_links(self, connection: str) -> list[Link]:
        """The links a run journaled and did not settle: in their own documents (a
        journal written outside a cycle) and in journal documents, less the entries
        whose link was saved after them; none without a query when the lease holder's
        document says a release left none."""
        held = self._held.get(connection)
        if held is not None and held.journal_known and not held.open:
            return []
        query = self._links(connection).where(
            filter=firestore.FieldFilter("state", "in", _JOURNALED)
        )
        found = [_link_of(s.to_dict() or {}) for s in sorted(self._query(query), key=_created)]
        own = {_hashed_id(link.kind, link.key) for link in found}
        kept = held.doc.data.get(JOURNAL) if held is not None else self._field(connection, JOURNAL)
        journals, entries = self._open_journal_entries(connection, own, kept)
        found += [link for _, link in entries]
        if held is not None:
            held.open = own | {_hashed_id(link.kind, link.key) for _, link in entries}
            held.journal_of = {ref_id: "" for ref_id in own}
            held.journal_of.update({_hashed_id(j.kind, j.key): d for d, j in entries})
            held.journals = journals
            held.journal_known = True
            held.saw(link for link in found if _hashed_id(link.kind, link.key) in own)
        return found

    def _open_journal_entries(
        self, connection: str, own: set[str], kept: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, list[Link]], list[tuple[str, Link]]]:
        """The journals (id → links: the journal documents, and `kept`, the one in the
        connection's document), and their entries still open: the link was not saved
        since (a create's link not at all; an intent's link not deleted)."""
        journals: dict[str, list[Link]] = {}
        entries: list[tuple[str, Any, Link]] = []
        found = [
            (snap.id, snap.to_dict() or {})
            for snap in sorted(self._query(self._journal(connection)), key=_created)
        ]
        if kept:  # journaled last, but for a journal document written after it
            found.append((IN_CONNECTION, dict(kept)))
            found.sort(key=lambda pair: _moment_of(pair[1].get("at")))
        for doc_id, data in found:
            links = [_link_of(entry) for entry in data.get(JOURNAL_ENTRIES) or []]
            journals[doc_id] = links
            entries += [(doc_id, data.get("at"), link) for link in links]
        if not entries:
            return journals, []
        refs = [self._link(connection, link.kind, link.key) for _, _, link in entries]
        unique = list({ref.id: ref for ref in refs}.values())  # journaled twice: read once
        current = {snap.id: snap for snap in self.client.get_all(unique)}
        self.reads += len(unique)
        open_entries: list[tuple[str, Link]] = []
        for (doc_id, at, link), ref in zip(entries, refs, strict=True):
            ref_id = ref.id
            if ref_id in own:
                continue  # its own document journals it, later
            stored = current.get(ref_id)
            if stored is not None and stored.exists:
                saved = (stored.to_dict() or {}).get("saved")
                if saved is not None and at is not None and saved > at:
                    continue  # settled after it was journaled
            elif link.state == "applying":
                continue  # the link it meant to change is gone since
            open_entries.append((doc_id, link))
        latest = {_hashed_id(link.kind, link.key): (doc_id, link) for doc_id, link in open_entries}
        return journals, list(latest.values())

    def journal_links(self, connection: str, links: Sequence[Link]) -> None:
        """Journal these links, each with what it is about to write, before their writes
        (SYN-4): in the connection's document while the holder's open entries fit there
        (with a lease taken lazily, in the lease's own write), else in a journal
        document; a cycle of k changes journals them in k / 100 writes, not k. Their
        own documents are written once, when settled. A journal kept outside a lease
        goes into each link's own document."""
        held = self._held.get(connection)
        if held is None:
            for link in links:
                self.save_link(connection, link)
            return
        new = {_hashed_id(link.kind, link.key) for link in links}
        kept = [
            link
            for link in self._still_open(held, IN_CONNECTION)
            if _hashed_id(link.kind, link.key) not in new
        ]
        merged = [*kept, *links]
        entries = [_journal_entry(link) for link in merged]
        if len(json.dumps(entries, default=str)) <= JOURNAL_BYTES:
            self._holder_writes(
                connection, {JOURNAL: {JOURNAL_ENTRIES: entries, "at": firestore.SERVER_TIMESTAMP}}
            )
            held.doc.data[JOURNAL] = {JOURNAL_ENTRIES: entries}
            self._journaled(held, IN_CONNECTION, merged)
            return
        self._take(connection)
        ref = self._journal(connection).document()
        self.writes += 1
        ref.set(
            {
                JOURNAL_ENTRIES: [_journal_entry(link) for link in links],
                "at": firestore.SERVER_TIMESTAMP,
            }
        )
        self._journaled(held, ref.id, list(links))

    @staticmethod
    def _journaled(held: _Held, journal_id: str, links: list[Link]) -> None:
        held.journals[journal_id] = links
        for link in links:
            ref_id = _hashed_id(link.kind, link.key)
            held.open.add(ref_id)
            held.journal_of[ref_id] = journal_id

    @staticmethod
    def _still_open(held: _Held, journal_id: str) -> list[Link]:
        """The links of a journal the holder knows are still open and journaled there
        last."""
        return [
            link
            for link in held.journals.get(journal_id, [])
            if held.journal_of.get(_hashed_id(link.kind, link.key)) == journal_id
            and _hashed_id(link.kind, link.key) in held.open
        ]

    def _settle_journals(self, connection: str, held: _Held) -> dict[str, Any]:
        """At the release: journal documents all of whose links were settled are
        deleted; one with links still open keeps only those. Returns the release's
        fields for the journal in the connection's document (cleared, or its open
        entries)."""
        batch = self.client.batch()
        for doc_id, links in held.journals.items():
            if doc_id == IN_CONNECTION:
                continue
            still = self._still_open(held, doc_id)
            ref = self._journal(connection).document(doc_id)
            if not still:
                batch.delete(ref)
            elif len(still) < len(links):
                entries = [_journal_entry(link) for link in still]
                batch.set(ref, {JOURNAL_ENTRIES: entries, "at": firestore.SERVER_TIMESTAMP})
        if len(batch):
            self.writes += len(batch)
            batch.commit()
        if JOURNAL not in held.doc.data and IN_CONNECTION not in held.journals:
            return {}
        still = self._still_open(held, IN_CONNECTION)
        if not still:
            return {JOURNAL: firestore.DELETE_FIELD}
        if len(still) == len(held.journals.get(IN_CONNECTION, [])):
            return {}  # as written
        entries = [_journal_entry(link) for link in still]
        return {JOURNAL: {JOURNAL_ENTRIES: entries, "at": firestore.SERVER_TIMESTAMP}}

    def save_link(self, connection: str, link: Link) -> None:
        self._take(connection)  # a lease taken lazily is written first
        self.writes += 1
        self._link(connection, link.kind, link.key).set(_link_fields(link))
        held = self._held.get(connection)
        if held is not None:
            ref_id = _hashed_id(link.kind, link.key)
            if link.state in _JOURNALED:
                held.open.add(ref_id)
                held.journal_of[ref_id] = ""
            else:
                held.open.discard(ref_id)
                held.journal_of.pop(ref_id, None)
            held.changed(link.kind, link.key, link.state)

    def delete_link(self, connection: str, kind: Kind, key: str) -> None:
        self._take(connection)  # a lease taken lazily is written first
        held = self._held.get(connection)
        if held is not None:
            self.writes += 1
            self._link(connection, kind, key).delete()
            held.open.discard(_hashed_id(kind, key))
            held.journal_of.pop(_hashed_id(kind, key), None)
            held.changed(kind, key, "")
            return
        batch = self.client.batch()  # outside a cycle: the kind is counted again (SYN-6)
        batch.delete(self._link(connection, kind, key))
        batch.set(
            self._connection(connection), {LINKED: {kind: firestore.DELETE_FIELD}}, merge=True
        )
        self.writes += 2
        batch.commit()

    def linked_count(self, connection: str, kind: Kind) -> int:
        """SYN-6: the kind's links in a linked state (linked, conflict). The lease holder
        knows it from the connection's document, kept as links change, with no read;
        else it is counted, a read per 1,000 links."""
        held = self._held.get(connection)
        known = held.linked(kind) if held is not None else None
        if known is not None:
            return known
        query = (
            self._links(connection)
            .where(filter=firestore.FieldFilter("kind", "==", kind))
            .where(filter=firestore.FieldFilter("state", "in", _COUNTED))
        )
        aggregation: Any = query.count()
        [[result]] = aggregation.get()
        count = int(result.value)
        self.reads += max(1, math.ceil(count / 1000))  # one read per 1000 index entries
        if held is not None:  # the count from here on, written with the release
            held.linked_base[kind] = count
            held.linked_delta[kind] = 0
            held.unsure.discard(kind)
        return count

    # -- retries (SYN-5) --------------------------------------------------------------
    def retries(self, connection: str, kind: Kind) -> set[tuple[Side, str]]:
        doc = self._holding(connection)
        kept = doc.data.get("retries") if doc else self._field(connection, "retries")
        stored = (kept or {}).get(kind) or []
        out: set[tuple[Side, str]] = set()
        for entry in stored:
            side, _, record_id = str(entry).partition(":")
            out.add((side, record_id))  # type: ignore[arg-type]
        return out

    def set_retries(self, connection: str, kind: Kind, pending: set[tuple[Side, str]]) -> None:
        """The records of `kind` the next cycle reads again. The lease holder's set
        keeps what someone else added since it read them (a user's "sync again")."""
        self._take(connection)  # a lease taken lazily is written first
        wanted = {f"{side}:{i}" for side, i in pending}
        doc = self._holding(connection)
        if doc is not None:
            known = {str(e) for e in (doc.data.get("retries") or {}).get(kind) or []}
            stored = (self._field(connection, "retries") or {}).get(kind) or []
            wanted |= {str(e) for e in stored} - known
        kept = sorted(wanted)
        value: Any = kept or firestore.DELETE_FIELD
        self.writes += 1
        self._connection(connection).set({"retries": {kind: value}}, merge=True)
        self._wrote(connection, "retries", kind, kept or None)

    # -- queue (SYN-2 manual, SET-5) ----------------------------------------------------
    def put_queue_item(self, connection: str, item: Mapping[str, Any]) -> None:
        """Store the item; a choice the user made stays only while the reason is the
        same (read and written in one transaction, as the user may be choosing)."""
        ref = self._queue(connection).document(_hashed_id("queue", str(item["id"])))
        fields = _fields(item)

        summary = self._connection(connection)
        listed = ref.id in self._waiting(connection)

        @firestore.transactional
        def put(transaction: firestore.Transaction) -> dict[str, Any]:
            snap = ref.get(transaction=transaction)
            old = (snap.to_dict() or {}) if snap.exists else {}
            same = _decode(old.get("reason")) == item.get("reason")
            kept = {key: old.get(key) if same else None for key in ("choice", "picks")}
            transaction.set(ref, {**fields, **kept})
            if not listed:  # the connection's summary names every item
                transaction.set(summary, {WAITING: {ref.id: True}}, merge=True)
            return {**fields, **kept}

        self.reads += 1
        self.writes += 1 if listed else 2
        stored = put(self.client.transaction())
        self._queued(connection, ref.id, _record(stored))

    def drop_queue_item(self, connection: str, item_id: str) -> None:
        ref = self._queue(connection).document(_hashed_id("queue", item_id))
        batch = self.client.batch()
        batch.delete(ref)
        gone = {WAITING: {ref.id: firestore.DELETE_FIELD}}
        batch.set(self._connection(connection), gone, merge=True)
        self.writes += 2
        batch.commit()
        self._queued(connection, ref.id, None)

    def _waiting(self, connection: str) -> dict[str, bool]:
        """The queue's item ids as the lease holder knows them ({} for anyone else)."""
        held = self._held.get(connection)
        if held is None:
            return {}
        if held.waiting is not None:
            return held.waiting
        return dict(held.doc.data.get(WAITING) or {})

    def _queued(self, connection: str, ref_id: str, item: dict[str, Any] | None) -> None:
        """The holder's own change to the queue, kept in what it knows of it."""
        held = self._held.get(connection)
        if held is None:
            return
        waiting = self._waiting(connection)
        if item is None:
            waiting.pop(ref_id, None)
            if held.queue is not None:
                held.queue.pop(ref_id, None)
        else:
            waiting[ref_id] = True
            if held.queue is not None:
                held.queue[ref_id] = item
        held.waiting = waiting
        held.doc.update_time = None  # the document changed: a conditional write reads it

    def queue(self, connection: str) -> list[dict[str, Any]]:
        """The connection's queue items, oldest first. The lease holder reads them once
        while it holds the lease, and not at all when the document's summary says the
        queue is empty (and puts the summary right with its release if it is not)."""
        held = self._held.get(connection)
        if held is None:
            found = sorted(self._query(self._queue(connection)), key=_created)
            return [_record(snap.to_dict()) for snap in found]
        if held.queue is None:
            if held.waiting is None and held.doc.data.get(WAITING) == {}:
                held.queue = {}  # the summary says none waits
            else:
                found = sorted(self._query(self._queue(connection)), key=_created)
                held.queue = {snap.id: _record(snap.to_dict()) for snap in found}
                if held.doc.data.get(WAITING) != dict.fromkeys(held.queue, True):
                    held.waiting = dict.fromkeys(held.queue, True)
        return [copy.deepcopy(item) for item in held.queue.values()]

    def resolve_queue_item(
        self,
        connection: str,
        item_id: str,
        choice: Side | None = None,
        picks: Mapping[str, Side] | None = None,
    ) -> None:
        ref = self._queue(connection).document(_hashed_id("queue", item_id))
        self.writes += 1
        try:
            ref.update({"choice": choice, "picks": _encode(dict(picks)) if picks else None})
        except gexc.NotFound:
            raise KeyError(f"no queue item {item_id!r}") from None

    # -- messages filed to chosen records (EML-5) -----------------------------------------
    def _filings(self, connection: str) -> firestore.CollectionReference:
        return self._under(connection, "filings")

    def put_filing(self, connection: str, filing: Mapping[str, Any]) -> None:
        self.writes += 1
        ref = self._filings(connection).document(_hashed_id("filing", str(filing["id"])))
        ref.set(_fields(filing))

    def filings(self, connection: str, limit: int) -> list[dict[str, Any]]:
        query = self._filings(connection).order_by("asked").limit(limit)
        found = self._query(query)
        return [_record(s.to_dict()) for s in found]

    def drop_filing(self, connection: str, filing_id: str) -> None:
        self.writes += 1
        self._filings(connection).document(_hashed_id("filing", filing_id)).delete()

    # -- history (HIS-1, HIS-2, HIS-3) ---------------------------------------------------
    def _run(self, connection: str, run_id: str) -> firestore.DocumentReference:
        return self._runs(connection).document(_hashed_id("run", run_id))

    def _kept(self, days: Any) -> timedelta:
        return paging.retention(self.retention, days)

    def save_run(
        self, connection: str, run: Mapping[str, Any], items: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        """Store the run with what a page query needs of it (its tenant, connection, the
        kinds it touched, its duration); it expires `retention` (or the tenant's shorter
        `history_days`) after it ended, or started. Its items go in the same document
        when they fit one item document's worth (a cycle's history is one write), else
        in item documents (`add_items`)."""
        document = self._run_document(connection, run)
        chunks = list(_item_chunks(items))
        if len(chunks) == 1:
            document[ITEM_ENTRIES] = [_fields(item) for item in chunks[0][1]]
        elif chunks:
            self.add_items(connection, str(run["id"]), items, run.get("history_days"))
        self.writes += 1
        self._run(connection, str(run["id"])).set(document)

    def _run_document(self, connection: str, run: Mapping[str, Any]) -> dict[str, Any]:
        moment = run.get("ended") or run.get("started")
        expire_at = paging.expiry(moment, self._kept(run.get("history_days")))
        where = {"tenant": self.tenant, "connection": connection}
        return {**_fields({**run, **where, **paging.derived(run)}), "expire_at": expire_at}

    def add_items(
        self,
        connection: str,
        run_id: str,
        items: Sequence[Mapping[str, Any]],
        history_days: int | None = None,
    ) -> None:
        """Append the run's items, many to a document (`ITEMS_PER_DOCUMENT`, and less
        than Firestore's 1 MiB): a cycle of k changes writes k / 200 documents, not k.
        The document expires as long after its last item as its run is kept."""
        collection = self._items(connection, run_id)
        kept = self._kept(history_days)
        batch = self.client.batch()
        for seq, chunk in _item_chunks(items):
            moments = [item["at"] for item in chunk if isinstance(item.get("at"), datetime)]
            batch.set(
                collection.document(),
                {
                    ITEM_ENTRIES: [_fields(item) for item in chunk],
                    "seq": seq,
                    "expire_at": paging.expiry(max(moments) if moments else None, kept),
                },
            )
            if len(batch) == BATCH_LIMIT:
                self.writes += len(batch)
                batch.commit()
                batch = self.client.batch()
        if len(batch):
            self.writes += len(batch)
            batch.commit()

    def runs(self, connection: str) -> list[dict[str, Any]]:
        found = sorted(self._query(self._runs(connection)), key=_created)
        return [_record(s.to_dict(), _RUN_INTERNAL) for s in found]

    def run(self, connection: str, run_id: str) -> dict[str, Any] | None:
        snap = self._get(self._run(connection, run_id))
        return _record(snap.to_dict(), _RUN_INTERNAL) if snap.exists else None

    def run_page(self, query: RunQuery) -> RunPage:
        """A page of the tenant's runs: one collection-group query that reads the page
        and one run more (to tell whether another page follows), from where the token
        left off."""
        orders = paging.orders(query)
        if query.connections is not None and not query.connections:
            return RunPage([])
        found = self._query(self._page_query(query, orders))
        rows = [s.to_dict() or {} for s in found]
        runs = [_record(row, _RUN_INTERNAL) for row in rows[: query.limit]]
        if len(rows) <= query.limit:
            return RunPage(runs)
        last = _record(rows[query.limit - 1])
        values = [last.get(name) for name, _ in orders]
        return RunPage(runs, paging.token(query, values, str(last["connection"]), last["id"]))

    def _page_query(self, query: RunQuery, orders: list[paging.Order]) -> Any:
        page: Any = self.client.collection_group("runs").where(
            filter=firestore.FieldFilter("tenant", "==", self.tenant)
        )
        if query.connections is not None:
            page = page.where(
                filter=firestore.FieldFilter("connection", "in", list(query.connections))
            )
        for name, field in (("status", "result"), ("trigger", "trigger"), ("provider", "provider")):
            if getattr(query, name) is not None:
                page = page.where(filter=firestore.FieldFilter(field, "==", getattr(query, name)))
        if query.kind is not None:
            page = page.where(filter=firestore.FieldFilter("kinds", "array_contains", query.kind))
        if query.since is not None:
            page = page.where(filter=firestore.FieldFilter("started", ">=", query.since))
        if query.until is not None:
            page = page.where(filter=firestore.FieldFilter("started", "<", query.until))
        for name, down in [*orders, (FieldPath.document_id(), orders[-1][1])]:
            page = page.order_by(name, direction="DESCENDING" if down else "ASCENDING")
        if query.after is not None:
            values, connection, run_id = paging.position(query, query.after)
            page = page.start_after([*values, self._run(connection, run_id)])
        return page.limit(query.limit + 1)

    def interrupt_run(self, connection: str, run: Mapping[str, Any], now: datetime) -> bool:
        """RUN-2: a run whose worker died is stored as interrupted, once. A run is stored
        when it ends, so one never stored is created so (`create`: a run that ended
        meanwhile keeps its own ending); a run stored as `running` is changed only if
        still as read (a precondition on its update time)."""
        ref = self._run(connection, str(run["id"]))
        snap = self._get(ref)
        if not snap.exists:
            errors = [*run.get("errors", []), INTERRUPTED]
            ended = {**run, "status": RunStatus.INTERRUPTED, "ended": now, "errors": errors}
            try:
                self.writes += 1
                ref.create(self._run_document(connection, ended))
            except gexc.AlreadyExists:
                return False
            return True
        data = snap.to_dict() or {}
        if data.get("status") != RunStatus.RUNNING:
            return False
        errors = [*_decode(data.get("errors") or []), INTERRUPTED]
        ended = {"status": RunStatus.INTERRUPTED, "ended": now, "errors": errors}
        took = paging.derived({"started": _decode(data.get("started")), "ended": now})
        try:
            self.writes += 1
            ref.update(
                {
                    **_fields({**ended, "duration": took["duration"], "result": ended["status"]}),
                    "expire_at": paging.expiry(now, self._kept(data.get("history_days"))),
                },
                option=self.client.write_option(last_update_time=snap.update_time),
            )
        except (gexc.FailedPrecondition, gexc.NotFound):
            return False
        return True

    def items(self, connection: str, run_id: str) -> list[dict[str, Any]]:
        """The run's items in order: in its own document (`save_run`), in documents of
        many (`add_items`), and in documents of one, as items were stored before."""
        snap = self._get(self._run(connection, run_id))
        kept = (snap.to_dict() or {}).get(ITEM_ENTRIES) if snap.exists else None
        items: list[dict[str, Any]] = [_record(entry) for entry in kept or []]
        found = self._query(self._items(connection, run_id))
        found.sort(key=lambda s: (_created(s), (s.to_dict() or {}).get("seq", 0)))
        for snap in found:
            data = snap.to_dict() or {}
            if ITEM_ENTRIES in data:
                items += [_record(entry) for entry in data[ITEM_ENTRIES]]
            else:
                items.append(_record(data, ("expire_at", "seq")))
        return items

    # -- channels (global) -------------------------------------------------------------
    def channel(self, channel_id: str) -> Channel | None:
        snap = self._get(self._channels.document(_hashed_id("channel", channel_id)))
        return _channel_of(snap.to_dict() or {}) if snap.exists else None

    def save_channel(self, channel: Channel) -> None:
        self.writes += 1
        self._channels.document(_hashed_id("channel", channel.id)).set(
            {f.name: getattr(channel, f.name) for f in dataclasses.fields(channel)}
        )

    def drop_channel(self, channel_id: str) -> None:
        self.writes += 1
        self._channels.document(_hashed_id("channel", channel_id)).delete()

    def channels_of(self, connection: str) -> list[Channel]:
        query = self._channels.where(
            filter=firestore.FieldFilter("tenant", "==", self.tenant)
        ).where(filter=firestore.FieldFilter("connection", "==", connection))
        return [_channel_of(s.to_dict() or {}) for s in self._query(query)]

    # -- accounts (global: the mail client's pane names only the account, CTX-1) --------
    def account_connections(self, provider: str, subject: str) -> list[tuple[str, str]]:
        query = self._accounts.where(
            filter=firestore.FieldFilter("account_digest", "==", account_digest(provider, subject))
        )
        routes = (s.to_dict() or {} for s in self._query(query))
        return sorted((str(data["tenant"]), str(data["connection"])) for data in routes)

    def save_account(self, provider: str, subject: str, tenant: str, connection: str) -> None:
        self.writes += 1
        self._accounts.document(_account_id(tenant, connection)).set(
            {
                "account_digest": account_digest(provider, subject),
                "tenant": tenant,
                "connection": connection,
            }
        )

    def drop_account(self, tenant: str, connection: str) -> None:
        self.writes += 1
        self._accounts.document(_account_id(tenant, connection)).delete()

    # -- mailboxes (global: Gmail push notifications name only the address) ------------
    def mailbox_connections(self, address: str) -> list[tuple[str, str]]:
        query = self._mailboxes.where(
            filter=firestore.FieldFilter("address_digest", "==", mailbox_digest(address))
        )
        routes = (s.to_dict() or {} for s in self._query(query))
        return sorted((str(data["tenant"]), str(data["connection"])) for data in routes)

    def save_mailbox(self, address: str, tenant: str, connection: str) -> None:
        self.writes += 1
        self._mailboxes.document(_mailbox_id(tenant, connection)).set(
            {"address_digest": mailbox_digest(address), "tenant": tenant, "connection": connection}
        )

    def drop_mailbox(self, tenant: str, connection: str) -> None:
        self.writes += 1
        self._mailboxes.document(_mailbox_id(tenant, connection)).delete()

    def watch_mailbox(self, tenant: str, connection: str, until: datetime) -> None:
        self.writes += 1
        with contextlib.suppress(gexc.NotFound):  # no route (dropped meanwhile)
            self._mailboxes.document(_mailbox_id(tenant, connection)).update(
                {"watch_expires": until}
            )

    # -- the grant and the connection's status (AUTH-2..AUTH-4) ---------------------------
    def sealed_grant(self, connection: str) -> dict[str, str] | None:
        """The sealed grant; as the connection document was read moments ago (a worker
        reads it with the connection's record) or as the lease holder knows it."""
        ref = self._connection(connection)
        held = self._held.get(connection)
        seen = self._seen.get(ref.id)
        if held is not None:
            found = held.doc.data.get("grant")
        elif seen is not None and time.monotonic() - seen[0] <= RECENT_SECONDS:
            found = seen[1].data.get("grant")
        else:
            found = self._field(connection, "grant")
        return dict(found) if found is not None else None

    def save_sealed_grant(self, connection: str, sealed: Mapping[str, str]) -> None:
        self._merge(self._connection(connection), {"grant": dict(sealed)}, ["grant"])
        self._seen.pop(self._connection(connection).id, None)
        held = self._held.get(connection)
        if held is not None:
            held.doc.data["grant"] = dict(sealed)
            held.doc.update_time = None  # written: a conditional write reads it first

    def set_status(self, connection: str, status: str, reason: str = "") -> None:
        data = {"status": status, "reason": reason}
        self._merge(self._connection(connection), data, ["status", "reason"])

    def status(self, connection: str) -> tuple[str, str]:
        snap = self._get(self._connection(connection))
        data = (snap.to_dict() or {}) if snap.exists else {}
        return data.get("status") or "active", data.get("reason") or ""

    def erase_connection(self, connection: str) -> None:
        """AUTH-4: everything crmsync keeps of a connection, but its status (and the
        registry record the status belongs to)."""
        self._delete_all(self._links(connection))
        self._delete_all(self._journal(connection))
        self._delete_all(self._queue(connection))
        self._delete_all(self._filings(connection))
        runs = list(self._runs(connection).list_documents(page_size=BATCH_LIMIT))
        self.reads += max(1, len(runs))
        for run in runs:  # also runs whose document already expired, items left
            self._delete_all(run.collection("items"))
        self._delete_refs(runs)
        self.drop_mailbox(self.tenant, connection)
        self.drop_account(self.tenant, connection)
        self._held.pop(connection, None)
        self._seen.pop(self._connection(connection).id, None)
        gone = firestore.DELETE_FIELD
        self.writes += 1
        with contextlib.suppress(gexc.NotFound):  # nothing was ever kept
            self._connection(connection).update(
                {
                    "grant": gone,
                    "lease": gone,
                    "cursors": gone,
                    "retries": gone,
                    WAITING: gone,
                    JOURNAL: gone,
                    JOURNAL_CLEAN: gone,
                    LINKED: gone,
                }
            )

    def _delete_all(self, collection: firestore.CollectionReference) -> None:
        while True:
            page = self._query(collection.select([FieldPath.document_id()]).limit(BATCH_LIMIT))
            if not page:
                return
            self._delete_refs([snap.reference for snap in page])

    def _delete_refs(self, refs: Sequence[firestore.DocumentReference]) -> None:
        for start in range(0, len(refs), BATCH_LIMIT):
            batch = self.client.batch()
            for ref in refs[start : start + BATCH_LIMIT]:
                batch.delete(ref)
            self.writes += len(batch)
            batch.commit()

    # -- the tenant, its users and connections (the registry) -----------------------------
    def tenant_record(self) -> dict[str, Any] | None:
        snap = self._get(self._tenant_ref)
        return _record(snap.to_dict()) if snap.exists else None

    def save_tenant_record(self, record: Mapping[str, Any]) -> None:
        """Merge `record` into the tenant document (top-level keys replace)."""
        self._merge(self._tenant_ref, _fields(record), _merge_paths((), record))

    def mark_syncing(self, crm_user: str, syncing: bool) -> None:
        """Keep in the tenant document whether the CRM user has a connection (CAL-6): one
        key of the `syncing` map, so two users connecting at once both stay in it."""
        value = True if syncing else firestore.DELETE_FIELD
        self._merge(
            self._tenant_ref, {"syncing": {crm_user: value}}, _merge_paths(("syncing",), [crm_user])
        )

    def user_record(self, user: str) -> dict[str, Any] | None:
        snap = self._get(self._tenant_ref.collection("users").document(_name_id(user)))
        return _record(snap.to_dict(), (_USER_ID,)) if snap.exists else None

    def save_user_record(self, user: str, record: Mapping[str, Any]) -> None:
        """Merge `record` into the user document, which also keeps the user's id (its
        document id may be a hash of it)."""
        ref = self._tenant_ref.collection("users").document(_name_id(user))
        data = {**_fields(record), _USER_ID: user}
        self._merge(ref, data, _merge_paths((), [*record, _USER_ID]))

    def user_records(self) -> dict[str, dict[str, Any]]:
        """Every user record of the tenant, by user id, in one query."""
        found: dict[str, dict[str, Any]] = {}
        for snap in self._query(self._tenant_ref.collection("users")):
            data = snap.to_dict() or {}
            user = str(data.get(_USER_ID) or snap.id)
            if user.startswith("~"):  # a hashed id saved before the id was kept with it
                continue
            found[user] = _record(data, (_USER_ID,))
        return dict(sorted(found.items()))

    def connection_record(self, connection: str) -> dict[str, Any] | None:
        """The connection document: id, user, provider, account, settings, status,
        next_due, health; None when there is no such connection."""
        doc = self._snapshot(self._connection(connection))
        held = self._held.get(connection)
        if held is not None and (doc.data.get("lease") or {}).get("holder") != held.holder:
            del self._held[connection]  # its holder is gone (or never released here)
        return self._connection_record(doc.data) if doc.exists else None

    @staticmethod
    def _connection_record(data: Mapping[str, Any]) -> dict[str, Any] | None:
        if not data.get("registered"):
            return None
        record = _record(data.get("record"))
        if "next_due" in data:
            record["next_due"] = _decode(data["next_due"])
        status, reason = data.get("status") or "active", data.get("reason") or ""
        return {**record, "id": data["id"], "status": status, "reason": reason}

    def save_connection_record(self, connection: str, record: Mapping[str, Any]) -> None:
        """Merge `record` into the connection document (top-level keys replace)."""
        fields = dict(record)
        data: dict[str, Any] = {"id": connection, "tenant": self.tenant, "registered": True}
        if "status" in fields:
            data.update(status=fields["status"], reason=fields.get("reason", ""))
        fields.pop("status", None)
        fields.pop("reason", None)
        if "next_due" in fields:
            data["next_due"] = _encode(fields.pop("next_due"))
        paths = list(data)
        if fields:
            data["record"] = _fields(fields)
            paths += _merge_paths(("record",), fields)
        self._merge(self._connection(connection), data, paths)

    def connection_records(self) -> list[dict[str, Any]]:
        """Every connection of the tenant (admin status), in id order."""
        query = self._tenant_ref.collection("connections").where(
            filter=firestore.FieldFilter("registered", "==", True)
        )
        found = [self._connection_record(s.to_dict() or {}) for s in self._query(query)]
        return sorted((r for r in found if r is not None), key=lambda r: str(r["id"]))

    def live_connections(self) -> int:
        """AUTH-6: the tenant's connections less those disconnected, by two count
        queries (a read per 1,000 connections counted), not a read of each."""
        registered = self._tenant_ref.collection("connections").where(
            filter=firestore.FieldFilter("registered", "==", True)
        )
        gone = registered.where(filter=firestore.FieldFilter("status", "==", "disconnected"))
        counts = []
        for query in (registered, gone):
            aggregation: Any = query.count()
            [[result]] = aggregation.get()
            counts.append(int(result.value))
            self.reads += max(1, math.ceil(counts[-1] / 1000))
        return counts[0] - counts[1]

    def set_next_due(self, connection: str, when: datetime | None) -> None:
        """When the scheduler next enqueues a cycle (None: never, e.g. needs_reauth)."""
        self._set_due(connection, {"next_due": when})

    def set_due(self, connection: str, when: datetime | None, full: datetime | None) -> None:
        """When the scheduler next takes the connection, and its next full cycle."""
        self._set_due(connection, {"next_due": when, FULL_DUE: full})

    def _set_due(self, connection: str, fields: Mapping[str, Any]) -> None:
        ref = self._connection(connection)
        snap = self._get(ref)
        if snap.exists and (snap.to_dict() or {}).get("registered"):
            self.writes += 1
            ref.update(dict(fields))

    # -- OAuth states (AUTH-2; global, single use) -------------------------------------
    def put_state(self, nonce: str, record: Mapping[str, Any]) -> None:
        """Keep the record until its `expires` (an ISO time or datetime) has passed."""
        expires = record.get("expires")
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        if not isinstance(expires, datetime) or expires.tzinfo is None:
            expires = datetime.now(UTC) + STATE_TTL
        self.writes += 1
        self._states.document(_hashed_id("state", nonce)).set(
            {**_fields(record), "expires_at": expires}
        )

    def take_state(self, nonce: str) -> dict[str, Any] | None:
        """The record, deleted in the same step: the delete holds only if the document
        is still as read, so of two concurrent takes exactly one gets it."""
        ref = self._states.document(_hashed_id("state", nonce))
        snap = self._get(ref)
        if not snap.exists:
            return None
        try:
            self.writes += 1
            ref.delete(option=self.client.write_option(last_update_time=snap.update_time))
        except (gexc.FailedPrecondition, gexc.NotFound):
            return None
        return _record(snap.to_dict(), ("expires_at",))

    def claim_nonce(self, nonce: str, expires: datetime) -> bool:
        """True the first time `nonce` is claimed: one create, which fails for the
        second claimant whoever it is (kept until `expires`, then erased by TTL)."""
        try:
            self.writes += 1
            self._nonce(nonce).create({"expires_at": expires})
        except gexc.AlreadyExists:
            return False
        return True

    def release_nonce(self, nonce: str) -> None:
        """Claimed, but not acted on: the next claim of `nonce` succeeds."""
        self.writes += 1
        self._nonce(nonce).delete()

    def _nonce(self, nonce: str) -> Any:
        return self.client.collection("nonces").document(_hashed_id("nonce", nonce))


class FirestoreBackend:
    """Every tenant's FirestoreStore, and the queries that span tenants (the scheduler's)."""

    def __init__(self, client: firestore.Client, retention: timedelta = RETENTION) -> None:
        self.client = client
        self.retention = retention
        self._stores: dict[str, FirestoreStore] = {}
        self.reads = 0  # document reads of the queries across tenants

    def store(self, tenant: str) -> FirestoreStore:
        if tenant not in self._stores:
            self._stores[tenant] = FirestoreStore(self.client, tenant, self.retention)
        return self._stores[tenant]

    def due(self, now: datetime, limit: int, after: Due | None = None) -> list[Due]:
        """Connections whose next_due is at or before `now`, oldest first, `limit` at a
        time; pass the last one of a page as `after` for the next page (RUN-2)."""
        if limit <= 0:
            return []
        query = (
            self.client.collection_group("connections")
            .where(filter=firestore.FieldFilter("next_due", "<=", now))
            .order_by("next_due")
            .order_by("tenant")
            .order_by("id")
            .limit(limit)
            # what the scheduler decides by: not the grant, the cursors or the lease
            # holder's state, which a cycle reads
            .select(DUE_FIELDS)
        )
        if after is not None:
            query = query.start_after(
                {"next_due": after.due, "tenant": after.tenant, "id": after.connection}
            )
        found = [snap.to_dict() or {} for snap in query.stream()]
        self.reads += max(1, len(found))
        return [
            Due(_utc(data["next_due"]), data["tenant"], data["id"], self._listed(data))
            for data in found
        ]

    @staticmethod
    def _listed(data: Mapping[str, Any]) -> dict[str, Any] | None:
        return FirestoreStore._connection_record(data)

    def set_next_due_many(self, items: Sequence[NextDue]) -> None:
        """Move many connections' due times (the next one, and the next full cycle's) in
        batched writes, with no read: the scheduler's one write per due connection."""
        for start in range(0, len(items), BATCH_LIMIT):
            batch = self.client.batch()
            chunk = items[start : start + BATCH_LIMIT]
            for item in chunk:
                ref = self.store(item.tenant)._connection(item.connection)
                batch.update(ref, {"next_due": item.when, FULL_DUE: item.full})
            try:
                batch.commit()
            except gexc.NotFound:  # a connection went away meanwhile: one at a time
                for item in chunk:
                    self.store(item.tenant).set_due(item.connection, item.when, item.full)
                continue
            for item in chunk:
                self.store(item.tenant).writes += 1

    def sessions(self) -> FirestoreSessions:
        return FirestoreSessions(self.client)

    def expiring_mailboxes(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant, connection) of mailbox watches that end before `before`, soonest
        first (EML-1)."""
        if limit <= 0:
            return []
        query = (
            self.client.collection("mailboxes")
            .where(filter=firestore.FieldFilter("watch_expires", "<", before))
            .order_by("watch_expires")
            .limit(limit)
        )
        routes = (snap.to_dict() or {} for snap in query.stream())
        return [(str(r["tenant"]), str(r["connection"])) for r in routes]

    def expiring_channels(self, before: datetime, limit: int) -> list[Channel]:
        """Push channels that expire before `before`, soonest first (RUN-5)."""
        if limit <= 0:
            return []
        query = (
            self.client.collection("channels")
            .where(filter=firestore.FieldFilter("expires", "<", before))
            .order_by("expires")
            .order_by("id")
            .limit(limit)
        )
        return [_channel_of(snap.to_dict() or {}) for snap in query.stream()]


class FirestoreSessions:
    """The web app's signed-in browsers: `sessions/{key}`, erased by TTL once
    `expires_at` has passed; a session read after it is gone already."""

    def __init__(self, client: firestore.Client) -> None:
        self._sessions = client.collection("sessions")

    def put_session(self, key: str, record: Mapping[str, Any], expires: datetime) -> None:
        self._sessions.document(key).set({**_fields(record), "expires_at": expires})

    def session(self, key: str, now: datetime) -> dict[str, Any] | None:
        snap = self._sessions.document(key).get()
        data = snap.to_dict() if snap.exists else None
        if data is None or _utc(data["expires_at"]) <= now:
            return None
        return _record(data, ("expires_at",))

    def drop_session(self, key: str) -> None:
        self._sessions.document(key).delete()

    def drop_sessions_of(self, tenant: str, user: str) -> int:
        """Sign a user out everywhere (their integration turned off, their access
        revoked); returns how many sessions ended."""
        query = self._sessions.where(filter=firestore.FieldFilter("tenant", "==", tenant)).where(
            filter=firestore.FieldFilter("user", "==", user)
        )
        found = list(query.stream())
        for snap in found:
            snap.reference.delete()
        return len(found)
