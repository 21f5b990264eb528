"""An in-memory record system that behaves like a real one, for the memory adapters.

Every write produces a new version; a change log serves cursors that page and can
expire (HTTP 410 in real systems); creates honour idempotency keys; records are kept
as the system holds them and read into canonical form on the way out, so bad data
surfaces as a per-record error (SYN-5). Faults can be injected: a write that raises a
transient or permanent error, or a crash of the whole process after the n-th write.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from crmsync import model
from crmsync.engine.records import SideRecord
from crmsync.errors import Conflict as StaleVersion
from crmsync.errors import (
    CrmUnauthorized,
    CursorExpired,
    GrantRevoked,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from crmsync.model import Kind
from crmsync.settings import Side


class Crash(BaseException):
    """The process died (a killed instance): nothing after this point runs."""


FaultKind = Literal[
    "transient", "permanent", "rate_limited", "revoked", "unauthorized", "cursor_expired"
]
READS = frozenset({"changes"})


@dataclass
class Failure:
    """One injected failure: the next `times` calls matching side and op fail."""

    side: Side | None
    op: str | None
    error: FaultKind
    times: int


class Faults:
    """Injected failures shared by both sides of one test world."""

    def __init__(self) -> None:
        self.writes = 0
        self._crash_in: int | None = None
        self._failures: list[Failure] = []

    def crash_after(self, n: int) -> None:
        """The process dies right after the n-th remote write from now."""
        if n < 1:
            raise ValueError("crash_after needs n >= 1")
        self._crash_in = n

    def fail(
        self,
        side: Side | None = None,
        op: str | None = None,
        error: FaultKind = "transient",
        times: int = 1,
    ) -> None:
        """The next matching calls fail. `op` is a write (create, update, delete, scope;
        None: any write) or a read named explicitly ("changes": reading a change feed)."""
        self._failures.append(Failure(side, op, error, times))

    def take(self, keep: Callable[[Failure], bool]) -> list[Failure]:
        """Hand over the armed failures `keep` accepts, e.g. for a system that answers
        them itself over HTTP; what it did not use can be armed again with `fail`."""
        taken = [f for f in self._failures if keep(f)]
        self._failures = [f for f in self._failures if f not in taken]
        return taken

    @property
    def crash_pending(self) -> bool:
        return self._crash_in is not None

    def before_write(self, side: Side, op: str) -> None:
        self._trip(side, op, (None, op))

    def before_read(self, side: Side, op: str) -> None:
        self._trip(side, op, (op,))

    def _trip(self, side: Side, op: str, ops: tuple[str | None, ...]) -> None:
        for failure in self._failures:
            if failure.times > 0 and failure.side in (None, side) and failure.op in ops:
                failure.times -= 1
                self._failures = [f for f in self._failures if f.times > 0]
                raise _error(failure.error, f"injected {failure.error} failure on {side} {op}")

    def after_write(self) -> None:
        """Called by an adapter once a remote write has fully taken effect."""
        self.writes += 1
        if self._crash_in is not None:
            self._crash_in -= 1
            if self._crash_in == 0:
                self._crash_in = None
                raise Crash("the process died after a remote write")


def _error(kind: FaultKind, message: str) -> Exception:
    if kind == "transient":
        return TransientError(message)
    if kind == "rate_limited":
        return RateLimited(message, retry_after=120.0)
    if kind == "revoked":
        return GrantRevoked(message)
    if kind == "unauthorized":
        return CrmUnauthorized(message)
    if kind == "cursor_expired":
        return CursorExpired(message)
    return PermanentError(message)


@dataclass
class Entry:
    id: str
    raw: dict[str, Any]
    version: int
    modified: datetime
    ref: str | None = None
    owner: str | None = None
    deleted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class RecordLog:
    """Records of one system, per kind, with a versioned change log."""

    def __init__(
        self,
        side: Side,
        clock: Callable[[], datetime],
        faults: Faults,
        prefix: str,
        page_size: int = 50,
    ) -> None:
        self.side: Side = side
        self.clock = clock
        self.faults = faults
        self.prefix = prefix
        self.page_size = page_size
        self.tables: dict[str, dict[str, Entry]] = {}
        self._log: dict[str, list[tuple[int, str]]] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._seq = 0
        self._ids = 0
        self._oldest: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def _count(self, call: str) -> None:
        self.calls[call] = self.calls.get(call, 0) + 1

    def table(self, kind: str) -> dict[str, Entry]:
        return self.tables.setdefault(kind, {})

    def _touch(self, kind: str, entry: Entry) -> None:
        self._seq += 1
        entry.version = self._seq
        entry.modified = self.clock()
        self._log.setdefault(kind, []).append((self._seq, entry.id))

    # -- writes ------------------------------------------------------------------
    def insert(
        self,
        kind: str,
        raw: Mapping[str, Any],
        *,
        key: str | None = None,
        ref: str | None = None,
        owner: str | None = None,
        extra: Mapping[str, Any] | None = None,
        remote: bool = True,
    ) -> Entry:
        if key is not None and key in self._keys:
            _, existing = self._keys[key]
            return self.table(kind)[existing]
        if remote:
            self.faults.before_write(self.side, "create")
        self._ids += 1
        entry = Entry(
            id=f"{self.prefix}{self._ids}",
            raw=_copied(dict(raw)),
            version=0,
            modified=self.clock(),
            ref=ref,
            owner=owner,
            extra=dict(extra or {}),
        )
        self.table(kind)[entry.id] = entry
        if key is not None:
            self._keys[key] = (kind, entry.id)
        self._touch(kind, entry)
        return entry

    def live(self, kind: str, record_id: str | None) -> Entry:
        entry = self.table(kind).get(record_id or "")
        if entry is None or entry.deleted:
            raise NotFound(f"{kind} {record_id} not found")
        return entry

    def _check(self, entry: Entry, version: str | None) -> None:
        if version is not None and str(entry.version) != version:
            raise StaleVersion(f"version {version} is stale; the record is at {entry.version}")

    def patch(
        self,
        kind: str,
        record_id: str | None,
        fields: Mapping[str, Any],
        version: str | None = None,
        *,
        remote: bool = True,
    ) -> Entry:
        entry = self.live(kind, record_id)
        if remote:
            self.faults.before_write(self.side, "update")
            self._check(entry, version)
        entry.raw.update(_copied(dict(fields)))
        self._touch(kind, entry)
        return entry

    def touch(
        self,
        kind: str,
        record_id: str | None,
        version: str | None = None,
        *,
        remote: bool = True,
        op: str = "update",
    ) -> Entry:
        entry = self.live(kind, record_id)
        if remote:
            self.faults.before_write(self.side, op)
            self._check(entry, version)
        self._touch(kind, entry)
        return entry

    def remove(
        self, kind: str, record_id: str | None, version: str | None = None, *, remote: bool = True
    ) -> None:
        entry = self.live(kind, record_id)
        if remote:
            self.faults.before_write(self.side, "delete")
            self._check(entry, version)
        entry.deleted = True
        self._touch(kind, entry)

    # -- reads -------------------------------------------------------------------
    def expire_cursors(self, kind: str | None = None) -> None:
        """Cursors handed out so far become too old (as after a sync token's lifetime)."""
        for name in [kind] if kind else list(self._log) or []:
            self._oldest[name] = self._seq

    def feed(
        self, kind: str, cursor: str | None, visible: Callable[[Entry], bool]
    ) -> tuple[list[Entry], str, bool]:
        self._count("changes")
        self.faults.before_read(self.side, "changes")
        table = self.table(kind)
        if cursor is None:
            ids = [i for i, e in table.items() if not e.deleted and visible(e)]
            return [table[i] for i in ids], str(self._seq), False
        try:
            after = int(cursor)
        except ValueError as exc:
            raise CursorExpired(f"cursor {cursor!r} is not valid") from exc
        if after < self._oldest.get(kind, 0):
            raise CursorExpired(f"cursor {cursor} has expired")
        # Each record once, at its latest change after the cursor, in the order of those
        # changes: a change is a record's latest when the record's version is its seq.
        log = self._log.get(kind, [])
        page: list[tuple[str, int]] = []
        more = False
        for index in range(bisect.bisect_right(log, after, key=lambda item: item[0]), len(log)):
            seq, record_id = log[index]
            if table[record_id].version != seq:
                continue  # changed again later: it comes at that change
            if len(page) == self.page_size:
                more = True
                break
            page.append((record_id, seq))
        entries = [table[i] for i, _ in page if visible(table[i])]
        end = page[-1][1] if page else max(after, 0)
        return entries, str(end if more else max(end, self._seq)), more

    def record(
        self,
        kind: Kind,
        entry: Entry | None,
        record_id: str,
        reader: Callable[[Kind, Entry], dict[str, Any]],
        in_scope: bool = True,
    ) -> SideRecord:
        if entry is None or entry.deleted:
            version = str(entry.version) if entry else "0"
            return SideRecord(record_id, version, None, modified=entry.modified if entry else None)
        try:
            fields: dict[str, Any] | None = reader(kind, entry)
            error = None
        except model.InvalidRecord as exc:
            fields, error = {}, str(exc)
        return SideRecord(
            entry.id,
            str(entry.version),
            fields,
            modified=entry.modified,
            in_scope=in_scope,
            ref=entry.ref,
            error=error,
        )


_ATOMS = (str, int, float, bool, type(None), datetime, date)


def _copied(value: Any) -> Any:
    """A deep copy of plain data (dicts, lists and atoms) without `copy.deepcopy`'s
    bookkeeping; anything else is deep-copied."""
    if isinstance(value, _ATOMS):
        return value
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    if type(value) is list:
        return [_copied(v) for v in value]
    return copy.deepcopy(value)
