"""SQLite storage of the reference CRM, for many tenants at once.

Every change of a record takes the tenant's next sequence number. That number is the
record's new version and its place in the change feed, so the feed after a cursor is
one indexed query that shows each record once, at its last change. A record also keeps
every user who could ever see it (`seen_by`), so the feed can tell a user that a record
they saw has left their view, without telling anyone about records they never saw.

One connection serves every thread, guarded by a reentrant lock: a request runs as one
transaction, so a check (a version, an idempotency key) and the write that depends on
it cannot interleave with another request, and a refused request writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crmsync.model import CustomField, now_utc
from sandbox.crm.visibility import viewers

KINDS = ("contact", "activity", "todo", "lead")
FEED_KINDS = ("contact", "activity", "todo")
ID_PREFIX = {"contact": "c-", "activity": "a-", "todo": "t-", "lead": "l-"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    expires_at TEXT
);
CREATE TABLE IF NOT EXISTS users (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    timezone TEXT NOT NULL,
    rep_code TEXT,
    active INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS records (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version TEXT NOT NULL,
    owner TEXT,
    fields TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    modified TEXT NOT NULL,
    ref TEXT,
    account_id TEXT,
    address_shared INTEGER NOT NULL DEFAULT 0,
    seen_by TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS records_feed ON records (tenant, kind, seq);
CREATE TABLE IF NOT EXISTS group_members (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    group_id TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (tenant, group_id, contact_id)
);
CREATE TABLE IF NOT EXISTS accounts (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    manager TEXT,
    address TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS accounts_by_name ON accounts (tenant, name, number);
CREATE TABLE IF NOT EXISTS opportunities (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    number INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    stage TEXT NOT NULL,
    amount TEXT,
    close_date TEXT,
    open INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS opportunities_by_account ON opportunities (tenant, account_id, number);
CREATE TABLE IF NOT EXISTS history (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    record_kind TEXT NOT NULL,
    record_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    date TEXT NOT NULL,
    participants TEXT NOT NULL,
    author TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS history_by_record ON history (tenant, record_kind, record_id);
CREATE TABLE IF NOT EXISTS attachments (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    history_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (tenant, history_id, position)
);
CREATE TABLE IF NOT EXISTS documents (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    number INTEGER NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content BLOB NOT NULL,
    owner TEXT,
    modified TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS history_links (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    history_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (tenant, history_id, position)
);
CREATE TABLE IF NOT EXISTS history_limits (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id),
    subject INTEGER NOT NULL,
    body INTEGER NOT NULL,
    attachment_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    result_id TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (tenant, scope, key)
);
CREATE TABLE IF NOT EXISTS field_limits (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, field)
);
CREATE TABLE IF NOT EXISTS custom_fields (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    choices TEXT NOT NULL DEFAULT '[]',
    max_length INTEGER,
    position INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind, name)
);
CREATE TABLE IF NOT EXISTS capabilities (
    tenant TEXT PRIMARY KEY REFERENCES tenants (id),
    infinite_series INTEGER NOT NULL DEFAULT 1,
    recurring_todos INTEGER NOT NULL DEFAULT 1,
    max_recurrence_years INTEGER,
    leads INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS horizons (
    tenant TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, kind)
);
"""


class UnknownRecord(LookupError):
    """No live record with this id in this tenant."""


@dataclass(frozen=True)
class StoredRecord:
    """A record as the CRM holds it; `raw` are its fields as stored (JSON values)."""

    kind: str
    id: str
    seq: int
    version: str
    owner: str | None
    raw: dict[str, Any]
    deleted: bool
    modified: datetime
    ref: str | None
    account_id: str | None
    address_shared: bool
    seen_by: frozenset[str]


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    timezone: str
    rep_code: str | None
    active: bool


@dataclass(frozen=True)
class TokenGrant:
    tenant: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Capabilities:
    infinite_series: bool = True
    recurring_todos: bool = True
    max_recurrence_years: int | None = None
    leads: bool = True


@dataclass(frozen=True)
class Attachment:
    """An attachment the CRM stores itself, with a history item."""

    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class HistoryLink:
    """An attachment kept elsewhere (an object store): the CRM shows a link to it."""

    filename: str
    content_type: str
    size: int
    url: str


@dataclass(frozen=True)
class HistoryLimits:
    """What a tenant's CRM keeps of a history item (EML-2): the longest subject and body
    in characters, and the largest attachment in bytes it stores itself (0: none)."""

    subject: int = 255
    body: int = 65_536
    attachment_bytes: int = 5 * 1024 * 1024


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _hash(token: str) -> str:
    """Tokens are kept as digests: a copy of the database grants no access."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _record(row: sqlite3.Row) -> StoredRecord:
    return StoredRecord(
        kind=row["kind"],
        id=row["id"],
        seq=row["seq"],
        version=row["version"],
        owner=row["owner"],
        raw=json.loads(row["fields"]),
        deleted=bool(row["deleted"]),
        modified=datetime.fromisoformat(row["modified"]),
        ref=row["ref"],
        account_id=row["account_id"],
        address_shared=bool(row["address_shared"]),
        seen_by=frozenset(json.loads(row["seen_by"])),
    )


def _account(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "status": row["status"],
        "owner": row["owner"],
        "manager": row["manager"],
        "address": json.loads(row["address"]) if row["address"] is not None else None,
    }


class CrmDatabase:
    """Everything the reference CRM stores. `clock` returns an aware UTC datetime."""

    def __init__(self, path: str = ":memory:", clock: Callable[[], datetime] | None = None):
        self.clock = clock or _utc_now
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def now(self) -> datetime:
        return now_utc(self.clock())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction; nested uses join the outer one, which commits or rolls back."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _all(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with self.transaction():
            return self._conn.execute(sql, args).fetchall()

    def _one(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with self.transaction():
            row: sqlite3.Row | None = self._conn.execute(sql, args).fetchone()
            return row

    def _run(self, sql: str, *args: Any) -> None:
        with self.transaction():
            self._conn.execute(sql, args)

    # -- tenants, tokens, users -----------------------------------------------------------
    def add_tenant(self, tenant: str) -> None:
        with self.transaction():
            self._run("INSERT INTO tenants (id) VALUES (?)", tenant)
            self._run("INSERT INTO capabilities (tenant) VALUES (?)", tenant)

    def has_tenant(self, tenant: str) -> bool:
        return self._one("SELECT 1 FROM tenants WHERE id = ?", tenant) is not None

    def add_token(self, tenant: str, token: str, expires_at: datetime | None = None) -> None:
        expiry = now_utc(expires_at).isoformat() if expires_at is not None else None
        self._run(
            "INSERT OR REPLACE INTO tokens (token_hash, tenant, expires_at) VALUES (?, ?, ?)",
            _hash(token),
            tenant,
            expiry,
        )

    def grant(self, token: str) -> TokenGrant | None:
        row = self._one("SELECT tenant, expires_at FROM tokens WHERE token_hash = ?", _hash(token))
        if row is None:
            return None
        expiry = row["expires_at"]
        return TokenGrant(row["tenant"], datetime.fromisoformat(expiry) if expiry else None)

    def put_user(self, tenant: str, user: User) -> None:
        """Add the user, or change an existing one (a user made inactive keeps its id)."""
        self._run(
            "INSERT OR REPLACE INTO users (tenant, id, name, email, timezone, rep_code, active)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            tenant,
            user.id,
            user.name,
            user.email,
            user.timezone,
            user.rep_code,
            int(user.active),
        )

    def user(self, tenant: str, user_id: str) -> User | None:
        row = self._one("SELECT * FROM users WHERE tenant = ? AND id = ?", tenant, user_id)
        return None if row is None else self._user(row)

    def users(self, tenant: str) -> list[User]:
        rows = self._all("SELECT * FROM users WHERE tenant = ? ORDER BY rowid", tenant)
        return [self._user(row) for row in rows]

    @staticmethod
    def _user(row: sqlite3.Row) -> User:
        return User(
            row["id"],
            row["name"],
            row["email"],
            row["timezone"],
            row["rep_code"],
            bool(row["active"]),
        )

    # -- sequence and ids -----------------------------------------------------------------
    def position(self, tenant: str) -> int:
        """The tenant's last sequence number: where a feed read now is caught up."""
        row = self._one("SELECT seq FROM tenants WHERE id = ?", tenant)
        return int(row["seq"]) if row is not None else 0

    def _tick(self, tenant: str) -> int:
        self._run("UPDATE tenants SET seq = seq + 1 WHERE id = ?", tenant)
        return self.position(tenant)

    def _next_number(self, tenant: str, name: str) -> int:
        self._run(
            "INSERT INTO counters (tenant, name, value) VALUES (?, ?, 1)"
            " ON CONFLICT (tenant, name) DO UPDATE SET value = value + 1",
            tenant,
            name,
        )
        row = self._one("SELECT value FROM counters WHERE tenant = ? AND name = ?", tenant, name)
        assert row is not None
        return int(row["value"])

    # -- records --------------------------------------------------------------------------
    def create_record(
        self,
        tenant: str,
        kind: str,
        raw: Mapping[str, Any],
        *,
        owner: str | None,
        ref: str | None = None,
        account_id: str | None = None,
    ) -> StoredRecord:
        with self.transaction():
            record_id = f"{ID_PREFIX[kind]}{self._next_number(tenant, 'record')}"
            seq = self._tick(tenant)
            self._run(
                "INSERT INTO records (tenant, id, kind, seq, version, owner, fields, modified,"
                " ref, account_id, seen_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tenant,
                record_id,
                kind,
                seq,
                str(seq),
                owner,
                _dump(dict(raw)),
                self.now().isoformat(),
                ref,
                account_id,
                _dump(sorted(viewers(kind, raw, owner) or ())),
            )
            return self.stored(tenant, record_id)

    def record(self, tenant: str, record_id: str) -> StoredRecord | None:
        """The record with this id, live or deleted."""
        row = self._one("SELECT * FROM records WHERE tenant = ? AND id = ?", tenant, record_id)
        return None if row is None else _record(row)

    def live(self, tenant: str, kind: str, record_id: str) -> StoredRecord:
        record = self.record(tenant, record_id)
        if record is None or record.deleted or record.kind != kind:
            raise UnknownRecord(f"no {kind} {record_id}")
        return record

    def stored(self, tenant: str, record_id: str) -> StoredRecord:
        record = self.record(tenant, record_id)
        if record is None:
            raise UnknownRecord(f"no record {record_id}")
        return record

    def records(self, tenant: str, kind: str) -> list[StoredRecord]:
        """Live records of a kind, oldest first."""
        rows = self._all(
            "SELECT * FROM records WHERE tenant = ? AND kind = ? AND deleted = 0 ORDER BY rowid",
            tenant,
            kind,
        )
        return [_record(row) for row in rows]

    def changed_after(self, tenant: str, kind: str, after: int, limit: int) -> list[StoredRecord]:
        """Records whose last change came after `after`, in the order of that change."""
        rows = self._all(
            "SELECT * FROM records WHERE tenant = ? AND kind = ? AND seq > ? ORDER BY seq LIMIT ?",
            tenant,
            kind,
            after,
            limit,
        )
        return [_record(row) for row in rows]

    def _change(self, tenant: str, record_id: str, **columns: Any) -> StoredRecord:
        """Apply column changes to a record as one change: a new sequence number and
        version, `modified` now, and everyone who may see the new state added to
        `seen_by`."""
        with self.transaction():
            record = self.stored(tenant, record_id)
            raw = columns.get("fields", record.raw)
            seen = record.seen_by | (viewers(record.kind, raw, record.owner) or frozenset())
            seq = self._tick(tenant)
            changes = {
                **{k: (_dump(v) if k == "fields" else v) for k, v in columns.items()},
                "seq": seq,
                "version": str(seq),
                "modified": self.now().isoformat(),
                "seen_by": _dump(sorted(seen)),
            }
            # the column names come from this module, never from a request
            assignments = ", ".join(f"{name} = ?" for name in changes)
            self._run(
                f"UPDATE records SET {assignments} WHERE tenant = ? AND id = ?",
                *changes.values(),
                tenant,
                record_id,
            )
            return self.stored(tenant, record_id)

    def touch(self, tenant: str, record_id: str) -> StoredRecord:
        """A change that is not in the fields (a group, a shared address) is a change."""
        return self._change(tenant, record_id)

    def save_fields(
        self,
        tenant: str,
        record_id: str,
        raw: Mapping[str, Any],
        *,
        address_shared: bool | None = None,
    ) -> StoredRecord:
        columns: dict[str, Any] = {"fields": dict(raw)}
        if address_shared is not None:
            columns["address_shared"] = int(address_shared)
        return self._change(tenant, record_id, **columns)

    def delete_record(self, tenant: str, record_id: str) -> StoredRecord:
        """Deleted records stay as tombstones for the feed; they leave every group."""
        with self.transaction():
            self._run(
                "DELETE FROM group_members WHERE tenant = ? AND contact_id = ?", tenant, record_id
            )
            return self._change(tenant, record_id, deleted=1)

    def attach_account(
        self, tenant: str, contact_id: str, account_id: str, share_address: bool
    ) -> StoredRecord:
        return self._change(
            tenant, contact_id, account_id=account_id, address_shared=int(share_address)
        )

    # -- cursor horizon -------------------------------------------------------------------
    def horizon(self, tenant: str, kind: str) -> int:
        """Cursors below this position can no longer be resumed from."""
        row = self._one("SELECT seq FROM horizons WHERE tenant = ? AND kind = ?", tenant, kind)
        return int(row["seq"]) if row is not None else 0

    def expire_cursors(self, tenant: str, kinds: Iterable[str]) -> None:
        """Every cursor handed out so far becomes too old. The sequence moves on by one
        first, so that a cursor handed out from now on is above the horizon."""
        with self.transaction():
            seq = self._tick(tenant)
            for kind in kinds:
                self._run(
                    "INSERT OR REPLACE INTO horizons (tenant, kind, seq) VALUES (?, ?, ?)",
                    tenant,
                    kind,
                    seq,
                )

    # -- groups ---------------------------------------------------------------------------
    def set_member(
        self, tenant: str, group: str, contact_id: str, member: bool, *, touch: bool = True
    ) -> None:
        """Put a contact into a group or take it out; with `touch`, that is a change of
        the contact (its version changes and the feed reports it)."""
        with self.transaction():
            if member:
                self._run(
                    "INSERT OR IGNORE INTO group_members (tenant, group_id, contact_id)"
                    " VALUES (?, ?, ?)",
                    tenant,
                    group,
                    contact_id,
                )
            else:
                self._run(
                    "DELETE FROM group_members"
                    " WHERE tenant = ? AND group_id = ? AND contact_id = ?",
                    tenant,
                    group,
                    contact_id,
                )
            if touch:
                self.touch(tenant, contact_id)

    def members(self, tenant: str, group: str) -> set[str]:
        rows = self._all(
            "SELECT contact_id FROM group_members WHERE tenant = ? AND group_id = ?", tenant, group
        )
        return {row["contact_id"] for row in rows}

    # -- accounts -------------------------------------------------------------------------
    def create_account(
        self,
        tenant: str,
        name: str,
        *,
        type: str,
        status: str,
        owner: str,
        manager: str | None = None,
        address: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        with self.transaction():
            number = self._next_number(tenant, "account")
            account_id = f"acc-{number}"
            self._run(
                "INSERT INTO accounts (tenant, id, number, name, type, status, owner, manager,"
                " address) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tenant,
                account_id,
                number,
                name,
                type,
                status,
                owner,
                manager,
                _dump(dict(address)) if address is not None else None,
            )
            found = self.account(tenant, account_id)
            assert found is not None
            return found

    def account(self, tenant: str, account_id: str | None) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM accounts WHERE tenant = ? AND id = ?", tenant, account_id)
        return None if row is None else _account(row)

    def accounts(self, tenant: str, name: str | None = None) -> list[dict[str, Any]]:
        """Accounts oldest first; with `name`, only those whose name equals it."""
        if name is None:
            rows = self._all("SELECT * FROM accounts WHERE tenant = ? ORDER BY number", tenant)
        else:
            rows = self._all(
                "SELECT * FROM accounts WHERE tenant = ? AND name = ? ORDER BY number",
                tenant,
                name,
            )
        return [_account(row) for row in rows]

    # -- documents (CTX-1: what a user attaches to a message while writing it) ----------
    def add_document(
        self, tenant: str, name: str, content_type: str, content: bytes, owner: str | None
    ) -> str:
        with self.transaction():
            number = self._next_number(tenant, "document")
            document_id = f"doc-{number}"
            self._run(
                "INSERT INTO documents (tenant, id, number, name, content_type, content, owner,"
                " modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                tenant,
                document_id,
                number,
                name,
                content_type,
                content,
                owner,
                self.now().isoformat(),
            )
        return document_id

    def documents(self, tenant: str) -> list[dict[str, Any]]:
        """Every document of the tenant, oldest first, without its content."""
        rows = self._all(
            "SELECT id, name, content_type, length(content) AS size, owner, modified"
            " FROM documents WHERE tenant = ? ORDER BY number",
            tenant,
        )
        return [dict(row) for row in rows]

    def document(self, tenant: str, document_id: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT id, name, content_type, content, owner, modified FROM documents"
            " WHERE tenant = ? AND id = ?",
            tenant,
            document_id,
        )
        return None if row is None else dict(row)

    # -- opportunities (CTX-1: what the mail client's pane shows of an account) ---------
    def create_opportunity(
        self,
        tenant: str,
        account_id: str,
        name: str,
        *,
        stage: str,
        amount: str | None = None,
        close_date: str | None = None,
        open: bool = True,
    ) -> dict[str, Any]:
        with self.transaction():
            number = self._next_number(tenant, "opportunity")
            opportunity_id = f"opp-{number}"
            self._run(
                "INSERT INTO opportunities (tenant, id, number, account_id, name, stage, amount,"
                " close_date, open) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tenant,
                opportunity_id,
                number,
                account_id,
                name,
                stage,
                amount,
                close_date,
                int(open),
            )
        return {
            "id": opportunity_id,
            "name": name,
            "stage": stage,
            "amount": amount,
            "close_date": close_date,
        }

    def opportunity(self, tenant: str, opportunity_id: str) -> dict[str, Any] | None:
        row = self._one(
            "SELECT * FROM opportunities WHERE tenant = ? AND id = ?", tenant, opportunity_id
        )
        names = ("id", "name", "stage", "amount", "close_date")
        return None if row is None else {name: row[name] for name in names}

    def open_opportunities(self, tenant: str, account_id: str) -> list[dict[str, Any]]:
        """The account's open opportunities, oldest first."""
        rows = self._all(
            "SELECT * FROM opportunities WHERE tenant = ? AND account_id = ? AND open = 1"
            " ORDER BY number",
            tenant,
            account_id,
        )
        names = ("id", "name", "stage", "amount", "close_date")
        return [{name: row[name] for name in names} for row in rows]

    def set_account_address(
        self, tenant: str, account_id: str, address: Mapping[str, Any], *, but: str | None
    ) -> None:
        """A new account address is a change of every live contact sharing it (CON-7);
        `but` is the contact whose own update records the change."""
        with self.transaction():
            self._run(
                "UPDATE accounts SET address = ? WHERE tenant = ? AND id = ?",
                _dump(dict(address)),
                tenant,
                account_id,
            )
            rows = self._all(
                "SELECT id FROM records WHERE tenant = ? AND kind = 'contact' AND deleted = 0"
                " AND address_shared = 1 AND account_id = ? ORDER BY rowid",
                tenant,
                account_id,
            )
            for row in rows:
                if row["id"] != but:
                    self.touch(tenant, row["id"])

    # -- history --------------------------------------------------------------------------
    def add_history(
        self,
        tenant: str,
        record_kind: str,
        record_id: str,
        *,
        subject: str,
        body: str,
        date: datetime,
        participants: list[dict[str, Any]],
        attachments: Sequence[Attachment],
        author: str | None,
        links: Sequence[HistoryLink] = (),
    ) -> dict[str, Any]:
        with self.transaction():
            history_id = f"h-{self._next_number(tenant, 'history')}"
            self._run(
                "INSERT INTO history (tenant, id, record_kind, record_id, subject, body, date,"
                " participants, author) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tenant,
                history_id,
                record_kind,
                record_id,
                subject,
                body,
                now_utc(date).isoformat(),
                _dump(participants),
                author,
            )
            for position, attachment in enumerate(attachments):
                self._run(
                    "INSERT INTO attachments (tenant, history_id, position, filename,"
                    " content_type, content) VALUES (?, ?, ?, ?, ?, ?)",
                    tenant,
                    history_id,
                    position,
                    attachment.filename,
                    attachment.content_type,
                    attachment.content,
                )
            for position, link in enumerate(links):
                self._run(
                    "INSERT INTO history_links (tenant, history_id, position, filename,"
                    " content_type, size, url) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    tenant,
                    history_id,
                    position,
                    link.filename,
                    link.content_type,
                    link.size,
                    link.url,
                )
            found = self.history_item(tenant, history_id)
            assert found is not None
            return found

    def history_item(self, tenant: str, history_id: str) -> dict[str, Any] | None:
        row = self._one("SELECT * FROM history WHERE tenant = ? AND id = ?", tenant, history_id)
        if row is None:
            return None
        return {
            "id": row["id"],
            "record": {"kind": row["record_kind"], "id": row["record_id"]},
            "subject": row["subject"],
            "body": row["body"],
            "date": row["date"],
            "participants": json.loads(row["participants"]),
            "attachments": self.attachments(tenant, history_id),
            "links": self.links(tenant, history_id),
        }

    def attachments(self, tenant: str, history_id: str) -> list[Attachment]:
        rows = self._all(
            "SELECT filename, content_type, content FROM attachments"
            " WHERE tenant = ? AND history_id = ? ORDER BY position",
            tenant,
            history_id,
        )
        return [Attachment(r["filename"], r["content_type"], bytes(r["content"])) for r in rows]

    def links(self, tenant: str, history_id: str) -> list[HistoryLink]:
        rows = self._all(
            "SELECT filename, content_type, size, url FROM history_links"
            " WHERE tenant = ? AND history_id = ? ORDER BY position",
            tenant,
            history_id,
        )
        return [
            HistoryLink(r["filename"], r["content_type"], int(r["size"]), r["url"]) for r in rows
        ]

    def history_limits(self, tenant: str) -> HistoryLimits:
        """What the tenant's CRM keeps of a history item; the defaults until set."""
        row = self._one("SELECT * FROM history_limits WHERE tenant = ?", tenant)
        if row is None:
            return HistoryLimits()
        return HistoryLimits(int(row["subject"]), int(row["body"]), int(row["attachment_bytes"]))

    def set_history_limits(self, tenant: str, limits: HistoryLimits) -> None:
        self._run(
            "INSERT OR REPLACE INTO history_limits (tenant, subject, body, attachment_bytes)"
            " VALUES (?, ?, ?, ?)",
            tenant,
            limits.subject,
            limits.body,
            limits.attachment_bytes,
        )

    def history_of(self, tenant: str, record_kind: str, record_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT id FROM history WHERE tenant = ? AND record_kind = ? AND record_id = ?"
            " ORDER BY rowid",
            tenant,
            record_kind,
            record_id,
        )
        items = (self.history_item(tenant, row["id"]) for row in rows)
        return [item for item in items if item is not None]

    def history_counts(self, tenant: str) -> dict[tuple[str, str], int]:
        rows = self._all(
            "SELECT record_kind, record_id, COUNT(*) AS n FROM history WHERE tenant = ?"
            " GROUP BY record_kind, record_id",
            tenant,
        )
        return {(row["record_kind"], row["record_id"]): int(row["n"]) for row in rows}

    # -- idempotency keys -----------------------------------------------------------------
    def remembered(self, tenant: str, scope: str, key: str) -> str | None:
        row = self._one(
            "SELECT result_id FROM idempotency_keys WHERE tenant = ? AND scope = ? AND key = ?",
            tenant,
            scope,
            key,
        )
        return None if row is None else str(row["result_id"])

    def remember(self, tenant: str, scope: str, key: str, result_id: str) -> None:
        self._run(
            "INSERT INTO idempotency_keys (tenant, scope, key, result_id, created)"
            " VALUES (?, ?, ?, ?, ?)",
            tenant,
            scope,
            key,
            result_id,
            self.now().isoformat(),
        )

    # -- limits and capabilities ----------------------------------------------------------
    def set_limit(self, tenant: str, kind: str, field: str, n: int) -> None:
        self._run(
            "INSERT OR REPLACE INTO field_limits (tenant, kind, field, n) VALUES (?, ?, ?, ?)",
            tenant,
            kind,
            field,
            n,
        )

    def limits(self, tenant: str) -> dict[str, dict[str, int]]:
        found: dict[str, dict[str, int]] = {kind: {} for kind in FEED_KINDS}
        rows = self._all("SELECT kind, field, n FROM field_limits WHERE tenant = ?", tenant)
        for row in rows:
            found.setdefault(row["kind"], {})[row["field"]] = int(row["n"])
        return found

    def declare_custom_field(self, tenant: str, kind: str, field: CustomField) -> None:
        """Declare a custom field of a kind, or change its declaration (SYN-1); it keeps
        its place among the kind's fields."""
        with self.transaction():
            row = self._one(
                "SELECT position FROM custom_fields WHERE tenant = ? AND kind = ? AND name = ?",
                tenant,
                kind,
                field.name,
            )
            position = row["position"] if row is not None else self._next_number(tenant, "custom")
            self._run(
                "INSERT OR REPLACE INTO custom_fields (tenant, kind, name, type, choices,"
                " max_length, position) VALUES (?, ?, ?, ?, ?, ?, ?)",
                tenant,
                kind,
                field.name,
                field.type,
                _dump(list(field.values)),
                field.max_length,
                position,
            )

    def custom_fields(self, tenant: str) -> dict[str, dict[str, CustomField]]:
        """The declared custom fields of each kind, by name, in the order declared."""
        found: dict[str, dict[str, CustomField]] = {kind: {} for kind in FEED_KINDS}
        rows = self._all("SELECT * FROM custom_fields WHERE tenant = ? ORDER BY position", tenant)
        for row in rows:
            found.setdefault(row["kind"], {})[row["name"]] = CustomField(
                row["name"], row["type"], tuple(json.loads(row["choices"])), row["max_length"]
            )
        return found

    def capabilities(self, tenant: str) -> Capabilities:
        row = self._one("SELECT * FROM capabilities WHERE tenant = ?", tenant)
        if row is None:
            return Capabilities()
        return Capabilities(
            infinite_series=bool(row["infinite_series"]),
            recurring_todos=bool(row["recurring_todos"]),
            max_recurrence_years=row["max_recurrence_years"],
            leads=bool(row["leads"]),
        )

    def set_capabilities(self, tenant: str, capabilities: Capabilities) -> None:
        self._run(
            "UPDATE capabilities SET infinite_series = ?, recurring_todos = ?,"
            " max_recurrence_years = ?, leads = ? WHERE tenant = ?",
            int(capabilities.infinite_series),
            int(capabilities.recurring_todos),
            capabilities.max_recurrence_years,
            int(capabilities.leads),
            tenant,
        )
