"""The Store port in memory: same contract as the Firestore store, for unit tests.

Links are kept under their key and found through per-side indexes, as the Firestore
layout keeps lookup keys, so a cycle reads only the links of the records it saw.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cmp_to_key
from typing import Any

from crmsync.engine.records import Link
from crmsync.model import Kind
from crmsync.ports import (
    INTERRUPTED,
    Ask,
    Channel,
    ConnectionState,
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


class MemoryStore:
    """One tenant's state (Firestore: everything under `tenants/{t}`), plus the global
    channel and mailbox directories and OAuth states, which a MemoryBackend shares
    between tenants."""

    def __init__(
        self,
        tenant: str = "",
        channels: dict[str, Channel] | None = None,
        states: dict[str, dict[str, Any]] | None = None,
        mailboxes: dict[tuple[str, str], str] | None = None,
        nonces: dict[str, datetime] | None = None,
        retention: timedelta = paging.RETENTION,
        watches: dict[tuple[str, str], datetime] | None = None,
        accounts: dict[tuple[str, str], str] | None = None,
    ) -> None:
        self.tenant = tenant
        self.retention = retention
        self._tenant_record: dict[str, Any] | None = None
        self._users: dict[str, dict[str, Any]] = {}
        self._connections: dict[str, dict[str, Any]] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self._asked: dict[str, str] = {}  # connection → the cycle asked of its holder
        self._cursors: dict[tuple[str, Side, Kind], str] = {}
        self._links: dict[tuple[str, Kind], dict[str, Link]] = {}
        self._by_side: dict[tuple[str, Kind, Side], dict[str, str]] = {}
        self._retries: dict[tuple[str, Kind], set[tuple[Side, str]]] = {}
        # cursors the lease holder moved, kept with its release
        self._moving: dict[str, dict[tuple[Side, Kind], str | None]] = {}
        self._queue: dict[str, dict[str, dict[str, Any]]] = {}
        self._filings: dict[str, dict[str, dict[str, Any]]] = {}  # EML-5, in order put
        self._runs: dict[str, dict[str, dict[str, Any]]] = {}
        self._items: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # when each run and item is erased (Firestore: their TTL field, HIS-3)
        self._run_expiry: dict[tuple[str, str], datetime] = {}
        self._item_expiry: dict[tuple[str, str], list[datetime]] = {}
        self._channels: dict[str, Channel] = channels if channels is not None else {}
        self._states: dict[str, dict[str, Any]] = states if states is not None else {}
        # (tenant, connection) → digest of its Gmail address, never the address
        self._mailboxes: dict[tuple[str, str], str] = mailboxes if mailboxes is not None else {}
        # (tenant, connection) → when the mailbox's watch ends (EML-1)
        self._watches: dict[tuple[str, str], datetime] = watches if watches is not None else {}
        # (tenant, connection) → digest of the provider account it is bound to (CTX-1)
        self._accounts: dict[tuple[str, str], str] = accounts if accounts is not None else {}
        self._nonces: dict[str, datetime] = nonces if nonces is not None else {}
        self._grants: dict[str, dict[str, str]] = {}
        self._status: dict[str, tuple[str, str]] = {}
        self.reads = 0
        self.writes = 0

    # -- lease (RUN-3) --------------------------------------------------------------
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
        """As Firestore counts it: the read of the connection document is the one its
        record was read with just before (or, renewing, the holder's own view). Taken
        at once, `lazy` or not."""
        current = self._leases.get(connection)
        if current is not None and current[0] != holder and current[1] > now:
            self.reads += 1  # looked again before saying no
            return False
        self.writes += 1
        if current is None or current[0] != holder:
            self._asked.pop(connection, None)  # asked of the holder before, not of this one
            self._moving.pop(connection, None)  # moved by a holder that died: not kept
        self._leases[connection] = (holder, now + timedelta(seconds=seconds))
        if record:
            self._merge_record(connection, record)
        return True

    def ask_again(self, connection: str, trigger: str, now: datetime) -> datetime | None:
        self.reads += 1
        current = self._leases.get(connection)
        if current is None or current[1] <= now:
            return None
        if connection not in self._asked:
            self.writes += 1
            self._asked[connection] = trigger
        return current[1]

    def asked(self, connection: str) -> Ask | None:
        self.reads += 1
        current = self._leases.get(connection)
        trigger = self._asked.get(connection)
        return Ask(trigger, current[1]) if current and trigger else None

    def release_lease(
        self, connection: str, holder: str, record: Mapping[str, Any] | None = None
    ) -> str | None:
        if self._leases.get(connection, ("",))[0] != holder:
            return None
        self.writes += 1
        del self._leases[connection]
        for (side, kind), cursor in self._moving.pop(connection, {}).items():
            self.save_cursor(connection, side, kind, cursor)
            self.writes -= 1  # in the release's write
        if record:
            self._merge_record(connection, record)
        return self._asked.pop(connection, None)

    def held_record(self, connection: str) -> dict[str, Any] | None:
        if connection not in self._leases or connection not in self._connections:
            return None
        reads = self.reads
        record = self.connection_record(connection)
        self.reads = reads  # the holder's own view: no read
        return record

    def lease_holder(self, connection: str) -> str | None:
        current = self._leases.get(connection)
        return current[0] if current else None

    # -- cursors -------------------------------------------------------------------
    def cursor(self, connection: str, side: Side, kind: Kind) -> str | None:
        moving = self._moving.get(connection, {})
        if (side, kind) in moving:
            return moving[(side, kind)]
        if connection not in self._leases:  # the holder knows its own (one document)
            self.reads += 1
        return self._cursors.get((connection, side, kind))

    def save_cursor(self, connection: str, side: Side, kind: Kind, cursor: str | None) -> None:
        """The lease holder's cursors go with its release, as in Firestore: a holder
        that dies leaves the cursors it started from."""
        if connection in self._leases:
            self._moving.setdefault(connection, {})[(side, kind)] = cursor
            return
        self.writes += 1
        if cursor is None:
            self._cursors.pop((connection, side, kind), None)
        else:
            self._cursors[(connection, side, kind)] = cursor

    def forget_cursor(self, connection: str, side: Side, kind: Kind) -> None:
        self.save_cursor(connection, side, kind, None)

    # -- links ---------------------------------------------------------------------
    def _table(self, connection: str, kind: Kind) -> dict[str, Link]:
        return self._links.setdefault((connection, kind), {})

    def _index(self, connection: str, kind: Kind, side: Side) -> dict[str, str]:
        return self._by_side.setdefault((connection, kind, side), {})

    def links_for(
        self, connection: str, kind: Kind, crm_ids: Iterable[str], provider_ids: Iterable[str]
    ) -> list[Link]:
        table = self._table(connection, kind)
        keys: dict[str, None] = {}
        for side, ids in (("crm", crm_ids), ("provider", provider_ids)):
            index = self._index(connection, kind, side)  # type: ignore[arg-type]
            for record_id in ids:
                self.reads += 1
                key = index.get(record_id)
                if key is not None:
                    keys[key] = None
        return [table[key] for key in keys]

    def links(self, connection: str, kind: Kind) -> Iterable[Link]:
        table = self._table(connection, kind)
        self.reads += len(table)
        return list(table.values())

    def journaled_links(self, connection: str) -> list[Link]:
        return [
            link
            for (conn, _), table in self._links.items()
            if conn == connection
            for link in table.values()
            if link.state in ("creating", "applying")
        ]

    def journal_links(self, connection: str, links: Sequence[Link]) -> None:
        for link in links:
            self.save_link(connection, link)

    def save_link(self, connection: str, link: Link) -> None:
        self.writes += 1
        table = self._table(connection, link.kind)
        old = table.get(link.key)
        if old is not None:
            self._unindex(connection, old)
        table[link.key] = link
        for side, record_id in (("crm", link.crm_id), ("provider", link.provider_id)):
            if record_id:
                self._index(connection, link.kind, side)[record_id] = link.key  # type: ignore[arg-type]

    def _unindex(self, connection: str, link: Link) -> None:
        for side, record_id in (("crm", link.crm_id), ("provider", link.provider_id)):
            index = self._index(connection, link.kind, side)  # type: ignore[arg-type]
            if record_id and index.get(record_id) == link.key:
                del index[record_id]

    def delete_link(self, connection: str, kind: Kind, key: str) -> None:
        self.writes += 1
        link = self._table(connection, kind).pop(key, None)
        if link is not None:
            self._unindex(connection, link)

    def linked_count(self, connection: str, kind: Kind) -> int:
        self.reads += 1
        return sum(
            1
            for link in self._table(connection, kind).values()
            if link.state in ("linked", "conflict")
        )

    # -- retries (SYN-5) -----------------------------------------------------------
    def retries(self, connection: str, kind: Kind) -> set[tuple[Side, str]]:
        if connection not in self._leases:  # the holder knows its own (one document)
            self.reads += 1
        return set(self._retries.get((connection, kind), set()))

    def set_retries(self, connection: str, kind: Kind, pending: set[tuple[Side, str]]) -> None:
        if pending or self._retries.get((connection, kind)):
            self.writes += 1
            self._retries[(connection, kind)] = set(pending)

    # -- queue (SYN-2 manual, SET-5) -----------------------------------------------
    def put_queue_item(self, connection: str, item: Mapping[str, Any]) -> None:
        self.writes += 1
        queue = self._queue.setdefault(connection, {})
        old = queue.get(item["id"], {})
        same = old.get("reason") == item.get("reason")
        queue[item["id"]] = {
            **copy.deepcopy(dict(item)),
            "choice": old.get("choice") if same else None,
            "picks": copy.deepcopy(old.get("picks")) if same else None,
        }

    def drop_queue_item(self, connection: str, item_id: str) -> None:
        if item_id in self._queue.get(connection, {}):
            self.writes += 1
            del self._queue[connection][item_id]

    def queue(self, connection: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(item) for item in self._queue.get(connection, {}).values()]

    def resolve_queue_item(
        self,
        connection: str,
        item_id: str,
        choice: Side | None = None,
        picks: Mapping[str, Side] | None = None,
    ) -> None:
        item = self._queue.get(connection, {}).get(item_id)
        if item is None:
            raise KeyError(f"no queue item {item_id!r}")
        self.writes += 1
        item["choice"] = choice
        item["picks"] = dict(picks) if picks else None

    # -- messages filed to chosen records (EML-5) --------------------------------------
    def put_filing(self, connection: str, filing: Mapping[str, Any]) -> None:
        self.writes += 1
        self._filings.setdefault(connection, {})[filing["id"]] = copy.deepcopy(dict(filing))

    def filings(self, connection: str, limit: int) -> list[dict[str, Any]]:
        self.reads += 1
        kept = self._filings.get(connection, {}).values()
        found = sorted(kept, key=lambda f: f["asked"])[:limit]
        return [copy.deepcopy(f) for f in found]

    def drop_filing(self, connection: str, filing_id: str) -> None:
        if filing_id in self._filings.get(connection, {}):
            self.writes += 1
            del self._filings[connection][filing_id]

    # -- history (HIS-1, HIS-2, HIS-3) ------------------------------------------------
    def save_run(
        self, connection: str, run: Mapping[str, Any], items: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        if items:
            self.add_items(connection, str(run["id"]), items, run.get("history_days"))
        self.writes += 1
        self._runs.setdefault(connection, {})[run["id"]] = copy.deepcopy(dict(run))
        kept = paging.retention(self.retention, run.get("history_days"))
        moment = run.get("ended") or run.get("started")
        self._run_expiry[(connection, run["id"])] = paging.expiry(moment, kept)

    def add_items(
        self,
        connection: str,
        run_id: str,
        items: Sequence[Mapping[str, Any]],
        history_days: int | None = None,
    ) -> None:
        self.writes += len(items)
        kept = paging.retention(self.retention, history_days)
        self._items.setdefault((connection, run_id), []).extend(dict(i) for i in items)
        self._item_expiry.setdefault((connection, run_id), []).extend(
            paging.expiry(i.get("at"), kept) for i in items
        )

    def runs(self, connection: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(r) for r in self._runs.get(connection, {}).values()]

    def run(self, connection: str, run_id: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self._runs.get(connection, {}).get(run_id)
        return copy.deepcopy(found) if found is not None else None

    def items(self, connection: str, run_id: str) -> list[dict[str, Any]]:
        return [dict(i) for i in self._items.get((connection, run_id), [])]

    def run_page(self, query: RunQuery) -> RunPage:
        """A page of the tenant's runs; counts a read for each run it shows and one for
        the run after the page, as Firestore does."""
        orders = paging.orders(query)
        directions = [down for _, down in orders] + [orders[-1][1]]
        rows = (
            (connection, run, {**run, **paging.derived(run)})
            for connection, table in self._runs.items()
            if query.connections is None or connection in query.connections
            for run in table.values()
        )
        keyed: list[tuple[list[Any], str, dict[str, Any]]] = [
            ([*(row.get(name) for name, _ in orders), (connection, run["id"])], connection, run)
            for connection, run, row in rows
            if paging.matches(row, query)
        ]

        def in_order(a: tuple[list[Any], str, Any], b: tuple[list[Any], str, Any]) -> int:
            return paging.compare(a[0], b[0], directions)

        keyed.sort(key=cmp_to_key(in_order))
        if query.after is not None:
            values, connection, run_id = paging.position(query, query.after)
            cursor = [*values, (connection, run_id)]
            keyed = [k for k in keyed if paging.compare(k[0], cursor, directions) > 0]
        page = keyed[: query.limit + 1]
        self.reads += max(1, len(page))
        shown = [copy.deepcopy(run) for _, _, run in page[: query.limit]]
        if len(page) <= query.limit:
            return RunPage(shown)
        key, connection, run = page[query.limit - 1]
        return RunPage(shown, paging.token(query, key[:-1], connection, run["id"]))

    def sweep(self, now: datetime) -> None:
        """Erase the runs and items whose time has passed, as Firestore's TTL policy
        does (HIS-3)."""
        for (connection, run_id), expires in list(self._run_expiry.items()):
            if expires <= now:
                self._runs.get(connection, {}).pop(run_id, None)
                del self._run_expiry[(connection, run_id)]
        for key, expiries in list(self._item_expiry.items()):
            kept = [i for i, expires in enumerate(expiries) if expires > now]
            self._items[key] = [self._items[key][i] for i in kept]
            self._item_expiry[key] = [expiries[i] for i in kept]

    def interrupt_run(self, connection: str, run: Mapping[str, Any], now: datetime) -> bool:
        self.reads += 1
        run_id = str(run["id"])
        if run_id not in self._runs.get(connection, {}):  # a run is stored when it ends
            errors = [*run.get("errors", []), INTERRUPTED]
            self.save_run(
                connection, {**run, "status": RunStatus.INTERRUPTED, "ended": now, "errors": errors}
            )
            return True
        stored = self._runs[connection][run_id]
        if stored.get("status") != RunStatus.RUNNING:
            return False
        self.writes += 1
        errors = [*stored.get("errors", []), INTERRUPTED]
        stored.update(status=RunStatus.INTERRUPTED, ended=now, errors=errors)
        kept = paging.retention(self.retention, stored.get("history_days"))
        self._run_expiry[(connection, run_id)] = paging.expiry(now, kept)
        return True

    # -- channels ------------------------------------------------------------------
    def channel(self, channel_id: str) -> Channel | None:
        self.reads += 1
        return self._channels.get(channel_id)

    def save_channel(self, channel: Channel) -> None:
        self.writes += 1
        self._channels[channel.id] = channel

    def drop_channel(self, channel_id: str) -> None:
        self.writes += 1
        self._channels.pop(channel_id, None)

    def channels_of(self, connection: str) -> list[Channel]:
        """This tenant's channels of the connection (the directory holds every tenant's;
        a store made without a tenant sees them all)."""
        self.reads += 1
        return [
            c
            for c in self._channels.values()
            if c.connection == connection and (not self.tenant or c.tenant == self.tenant)
        ]

    # -- accounts (global: the mail client's pane names only the account, CTX-1) ------
    def account_connections(self, provider: str, subject: str) -> list[tuple[str, str]]:
        self.reads += 1
        wanted = account_digest(provider, subject)
        return sorted(route for route, digest in self._accounts.items() if digest == wanted)

    def save_account(self, provider: str, subject: str, tenant: str, connection: str) -> None:
        self.writes += 1
        self._accounts[(tenant, connection)] = account_digest(provider, subject)

    def drop_account(self, tenant: str, connection: str) -> None:
        self.writes += 1
        self._accounts.pop((tenant, connection), None)

    # -- mailboxes (global: Gmail push notifications name only the address) ----------
    def mailbox_connections(self, address: str) -> list[tuple[str, str]]:
        self.reads += 1
        wanted = mailbox_digest(address)
        return sorted(route for route, digest in self._mailboxes.items() if digest == wanted)

    def save_mailbox(self, address: str, tenant: str, connection: str) -> None:
        self.writes += 1
        self._mailboxes[(tenant, connection)] = mailbox_digest(address)

    def drop_mailbox(self, tenant: str, connection: str) -> None:
        self.writes += 1
        self._mailboxes.pop((tenant, connection), None)
        self._watches.pop((tenant, connection), None)

    def watch_mailbox(self, tenant: str, connection: str, until: datetime) -> None:
        self.writes += 1
        if (tenant, connection) in self._mailboxes:
            self._watches[(tenant, connection)] = until

    # -- the grant and the connection's status (AUTH-2..AUTH-4) ------------------------
    def sealed_grant(self, connection: str) -> dict[str, str] | None:
        self.reads += 1
        found = self._grants.get(connection)
        return dict(found) if found is not None else None

    def save_sealed_grant(self, connection: str, sealed: Mapping[str, str]) -> None:
        self.writes += 1
        self._grants[connection] = dict(sealed)

    def set_status(self, connection: str, status: str, reason: str = "") -> None:
        self.writes += 1
        self._status[connection] = (status, reason)

    def status(self, connection: str) -> tuple[str, str]:
        self.reads += 1
        return self._status.get(connection, ("active", ""))

    def erase_connection(self, connection: str) -> None:
        """AUTH-4: everything crmsync keeps of a connection, but its status."""
        self.writes += 1
        self._grants.pop(connection, None)
        self._leases.pop(connection, None)
        self._asked.pop(connection, None)
        self._mailboxes.pop((self.tenant, connection), None)
        self._accounts.pop((self.tenant, connection), None)
        self._watches.pop((self.tenant, connection), None)
        tables: list[dict[Any, Any]] = [
            self._cursors,
            self._links,
            self._by_side,
            self._retries,
            self._items,
            self._run_expiry,
            self._item_expiry,
        ]
        for table in tables:
            for key in [k for k in table if k[0] == connection]:
                del table[key]
        self._queue.pop(connection, None)
        self._filings.pop(connection, None)
        self._runs.pop(connection, None)

    # -- the tenant, its users and connections (the registry) -----------------------
    def tenant_record(self) -> dict[str, Any] | None:
        self.reads += 1
        return copy.deepcopy(self._tenant_record)

    def save_tenant_record(self, record: Mapping[str, Any]) -> None:
        """Merge `record` into the tenant document (top-level keys replace)."""
        self.writes += 1
        self._tenant_record = {**(self._tenant_record or {}), **copy.deepcopy(dict(record))}

    def mark_syncing(self, crm_user: str, syncing: bool) -> None:
        """Keep in the tenant record whether the CRM user has a connection (CAL-6)."""
        self.writes += 1
        record = self._tenant_record = self._tenant_record or {}
        kept = record.setdefault("syncing", {})
        if syncing:
            kept[crm_user] = True
        else:
            kept.pop(crm_user, None)

    def user_record(self, user: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self._users.get(user)
        return copy.deepcopy(found) if found is not None else None

    def save_user_record(self, user: str, record: Mapping[str, Any]) -> None:
        self.writes += 1
        self._users[user] = {**self._users.get(user, {}), **copy.deepcopy(dict(record))}

    def user_records(self) -> dict[str, dict[str, Any]]:
        """Every user record of the tenant, by user id, in one read."""
        self.reads += 1
        return {user: copy.deepcopy(self._users[user]) for user in sorted(self._users)}

    def connection_record(self, connection: str) -> dict[str, Any] | None:
        """The connection document: id, user, provider, account, settings, status,
        next_due, health; None when there is no such connection."""
        self.reads += 1
        found = self._connections.get(connection)
        if found is None:
            return None
        status, reason = self._status.get(connection, ("active", ""))
        return {**copy.deepcopy(found), "id": connection, "status": status, "reason": reason}

    def save_connection_record(self, connection: str, record: Mapping[str, Any]) -> None:
        """Merge `record` into the connection document (top-level keys replace)."""
        self.writes += 1
        self._merge_record(connection, record)

    def _merge_record(self, connection: str, record: Mapping[str, Any]) -> None:
        merged = {**self._connections.get(connection, {}), **copy.deepcopy(dict(record))}
        if "status" in record:
            self._status[connection] = (record["status"], record.get("reason", ""))
        merged.pop("status", None)
        merged.pop("reason", None)
        self._connections[connection] = merged

    def connection_records(self) -> list[dict[str, Any]]:
        """Every connection of the tenant (admin status), in id order."""
        return [r for c in sorted(self._connections) if (r := self.connection_record(c))]

    def live_connections(self) -> int:
        self.reads += 1
        status = (self._status.get(c, ("active", ""))[0] for c in self._connections)
        return sum(1 for state in status if state != ConnectionState.DISCONNECTED)

    def set_next_due(self, connection: str, when: datetime | None) -> None:
        """When the scheduler next enqueues a cycle (None: never, e.g. needs_reauth)."""
        if connection in self._connections:
            self.writes += 1
            self._connections[connection]["next_due"] = when

    # -- OAuth states (AUTH-2; global, single use) -----------------------------------
    def put_state(self, nonce: str, record: Mapping[str, Any]) -> None:
        self.writes += 1
        self._states[nonce] = copy.deepcopy(dict(record))

    def take_state(self, nonce: str) -> dict[str, Any] | None:
        self.reads += 1
        return self._states.pop(nonce, None)

    def claim_nonce(self, nonce: str, expires: datetime) -> bool:
        self.writes += 1
        if nonce in self._nonces:
            return False
        self._nonces[nonce] = expires
        return True

    def release_nonce(self, nonce: str) -> None:
        self.writes += 1
        self._nonces.pop(nonce, None)


class MemoryBackend:
    """Every tenant's MemoryStore, and the queries that span tenants (the scheduler's)."""

    def __init__(self, retention: timedelta = paging.RETENTION) -> None:
        self.retention = retention
        self._channels: dict[str, Channel] = {}
        self._states: dict[str, dict[str, Any]] = {}
        self._mailboxes: dict[tuple[str, str], str] = {}
        self._watches: dict[tuple[str, str], datetime] = {}
        self._accounts: dict[tuple[str, str], str] = {}
        self._nonces: dict[str, datetime] = {}
        self._stores: dict[str, MemoryStore] = {}
        self._sessions = MemorySessions()

    def sessions(self) -> MemorySessions:
        return self._sessions

    def store(self, tenant: str) -> MemoryStore:
        if tenant not in self._stores:
            self._stores[tenant] = MemoryStore(
                tenant,
                self._channels,
                self._states,
                self._mailboxes,
                self._nonces,
                retention=self.retention,
                watches=self._watches,
                accounts=self._accounts,
            )
        return self._stores[tenant]

    def due(self, now: datetime, limit: int, after: Due | None = None) -> list[Due]:
        """Connections whose next_due is at or before `now`, oldest first, `limit` at a
        time; pass the last one of a page as `after` for the next page (RUN-2)."""
        found = sorted(
            Due(record["next_due"], tenant, connection, store.connection_record(connection))
            for tenant, store in self._stores.items()
            for connection, record in store._connections.items()
            if record.get("next_due") is not None and record["next_due"] <= now
        )
        if after is not None:
            found = [d for d in found if d > after]
        return found[:limit]

    def set_next_due_many(self, items: Sequence[NextDue]) -> None:
        """Move many connections' due times: the next one and the next full cycle's."""
        for item in items:
            store = self.store(item.tenant)
            if item.connection in store._connections:
                store.writes += 1
                store._connections[item.connection].update(next_due=item.when, full_due=item.full)

    def expiring_channels(self, before: datetime, limit: int) -> list[Channel]:
        """Push channels that expire before `before`, soonest first (RUN-5)."""
        return sorted(
            (c for c in self._channels.values() if c.expires < before),
            key=lambda c: (c.expires, c.id),
        )[:limit]

    def expiring_mailboxes(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant, connection) of mailbox watches that end before `before`, soonest
        first (EML-1)."""
        ending = sorted((until, route) for route, until in self._watches.items() if until < before)
        return [route for _, route in ending[:limit]]


class MemorySessions:
    """The web app's signed-in browsers, as `FirestoreSessions` keeps them."""

    def __init__(self) -> None:
        self._sessions: dict[str, tuple[dict[str, Any], datetime]] = {}

    def put_session(self, key: str, record: Mapping[str, Any], expires: datetime) -> None:
        self._sessions[key] = (copy.deepcopy(dict(record)), expires)

    def session(self, key: str, now: datetime) -> dict[str, Any] | None:
        found = self._sessions.get(key)
        if found is None or found[1] <= now:
            return None
        return copy.deepcopy(found[0])

    def drop_session(self, key: str) -> None:
        self._sessions.pop(key, None)

    def drop_sessions_of(self, tenant: str, user: str) -> int:
        ended = [
            key
            for key, (record, _) in self._sessions.items()
            if record.get("tenant") == tenant and record.get("user") == user
        ]
        for key in ended:
            del self._sessions[key]
        return len(ended)
