"""One sync cycle for one connection: lease, read, plan, apply with a journal, record.

Order matters for crash safety (BEY-4, SYN-4):
1. creates a previous run journaled but may not have finished are completed first,
   with the same idempotency key, so they can never happen twice;
2. before a remote create, the link is stored in state `creating` with its key;
3. after each decision, the link is stored with the versions our writes produced, so
   their echo in the next change feed is recognised;
4. cursors are saved only after every change they cover was applied or recorded as
   failed (and queued for retry).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from crmsync.calls import CallsAsTodos
from crmsync.engine import Context, Decision, Links, Plan, SideRecord, Write, reconcile
from crmsync.engine.lens import crm_view, provider_view
from crmsync.engine.plan import Intent
from crmsync.engine.records import CrmSchema, Link, LinkState
from crmsync.errors import (
    CrmUnauthorized,
    CursorExpired,
    GrantRevoked,
    NotFound,
    PermanentError,
    TransientError,
)
from crmsync.model import KINDS, Kind, to_json
from crmsync.ports import Connection, CrmConnector, ProviderAccount, RecordSide, RunStatus, Store
from crmsync.settings import Settings, Side

log = logging.getLogger("crmsync.cycle")

# A cycle holds its connection for two minutes at a time and renews that every 30
# seconds of work, so the connection of a worker that died is free again within two
# minutes (and its run is marked interrupted by the next one).
LEASE_SECONDS = 120
BATCH = 200  # plain creates the cycle hands a side in one call, when it takes several
RENEW_EVERY = 30.0  # seconds of work between renewals of the lease


class BudgetSpent(Exception):
    """The cycle's time budget ran out in the middle of a plan."""


class LeaseLost(Exception):
    """The lease expired while the cycle ran and another cycle took it: stop writing."""


_SIDES: tuple[Side, Side] = ("crm", "provider")


@dataclass
class Cycle:
    """Everything one run needs; `clock` is the only source of time."""

    connection: Connection
    store: Store
    crm: CrmConnector
    provider: ProviderAccount
    settings: Settings
    clock: Callable[[], datetime]
    syncing_users: frozenset[str] = frozenset()
    trigger: str = "schedule"
    run_id: str = ""
    budget_seconds: float | None = None
    _items: list[dict[str, Any]] = field(default_factory=list)
    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    _errors: list[str] = field(default_factory=list)
    _schema: CrmSchema | None = None
    _failed_kinds: list[Kind] = field(default_factory=list)
    _retry_after: float | None = None
    ticker: Callable[[], float] = time.monotonic  # elapsed time, for budget and lease
    began: Callable[[Mapping[str, Any]], None] | None = None  # told once the lease is held
    _queued: set[str] | None = None
    _deadline: float | None = None
    _renewed: float = 0.0

    def __post_init__(self) -> None:
        if self.settings["calls_as"] == "task":  # CAL-1: calls sync as provider tasks
            self.crm = CallsAsTodos(self.crm)

    @property
    def conn(self) -> str:
        return self.connection.id

    def side(self, side: Side) -> RecordSide:
        return self.crm if side == "crm" else self.provider

    # -- the run --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = self.clock()
        # Unique even for two runs begun at one instant (a clock that stands still)
        stamp = started.strftime("%Y%m%dT%H%M%S.%f")
        self.run_id = self.run_id or f"{self.conn}-{stamp}-{secrets.token_hex(3)}"
        run: dict[str, Any] = {
            "id": self.run_id,
            "connection": self.conn,
            "tenant": self.connection.tenant,
            "trigger": self.trigger,
            "started": started,
            "ended": None,
            "status": RunStatus.RUNNING,
            "counts": self._counts,
            "errors": self._errors,
        }
        if not self.store.acquire_lease(self.conn, self.run_id, started, LEASE_SECONDS):
            return {**run, "status": RunStatus.BUSY, "ended": started}
        self.store.save_run(self.conn, run)
        if self.began is not None:
            self.began(run)
        try:
            status, pending_kinds = self.run_kinds()
        except Exception as exc:  # a defect: record it, free the lease, let the task retry
            self._errors.append(f"{type(exc).__name__}: {exc}")
            self.finish_run(run, RunStatus.FAILED, [])
            raise
        self.finish_run(run, status, pending_kinds)
        log.info(
            "cycle finished",
            extra={
                "tenant": self.connection.tenant,
                "connection": self.conn,
                "run": self.run_id,
                "status": status,
            },
        )
        return {**run, "items": list(self._items)}  # the items are stored apart (HIS-1)

    def run_kinds(self) -> tuple[RunStatus, list[Kind]]:
        """Sync each enabled kind; returns the run's status and the kinds left over.

        A kind whose change feed cannot be read now (throttled, unavailable, refused)
        is skipped with its cursors untouched, so the next cycle reads those changes
        again; the other kinds go on (SYN-5). A grant that no longer works stops the
        cycle: nothing can succeed until the user reconnects (AUTH-3)."""
        self._renewed = self.ticker()
        deadline = self._renewed + self.budget_seconds if self.budget_seconds else None
        self._deadline = deadline
        pending_kinds: list[Kind] = []
        try:
            self.finish_journal()
            for kind in KINDS:
                if deadline is not None and self.ticker() > deadline:
                    pending_kinds.append(kind)  # RUN-6: the next run takes it from here
                    continue
                if self.settings.enabled(kind):
                    try:
                        self.sync_kind(kind)
                    except BudgetSpent:  # its cursors stay: the next run reads it again
                        pending_kinds.append(kind)  # and finds what was done linked
                    except (TransientError, PermanentError) as exc:
                        self.kind_failed(kind, exc)
        except GrantRevoked as exc:
            self._errors.append(f"{type(exc).__name__}: {exc}")
            return RunStatus.NEEDS_REAUTH, []
        except CrmUnauthorized as exc:
            self._errors.append(f"{type(exc).__name__}: {exc}")
            return RunStatus.CRM_UNAUTHORIZED, []
        except LeaseLost:
            self._errors.append("LeaseLost: another cycle took over the connection")
            return RunStatus.LEASE_LOST, []
        if pending_kinds:
            return RunStatus.CONTINUED, pending_kinds
        failed = self._failed_kinds or any(i["outcome"] == "fail" for i in self._items)
        return (RunStatus.PARTIAL if failed else RunStatus.OK), []

    def kind_failed(self, kind: Kind, exc: Exception) -> None:
        """One kind could not be read or planned this cycle; it is tried again next."""
        self._failed_kinds.append(kind)
        self.count(kind, "fail")
        self._errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        wait = getattr(exc, "retry_after", None)
        if wait is not None:
            self._retry_after = max(self._retry_after or 0.0, float(wait))
        log.warning(
            "kind skipped",
            extra={
                "tenant": self.connection.tenant,
                "connection": self.conn,
                "run": self.run_id,
                "kind": kind,
                "error": type(exc).__name__,
            },
        )

    def finish_run(self, run: dict[str, Any], status: RunStatus, pending: list[Kind]) -> None:
        self.store.add_items(self.conn, self.run_id, self._items)
        run.update(status=status, ended=self.clock(), pending=pending)
        if self._retry_after is not None:
            run["retry_after"] = self._retry_after  # throttled: when to come back (RUN-6)
        self.store.save_run(self.conn, run)
        self.store.release_lease(self.conn, self.run_id)

    def finish_journal(self) -> None:
        """Settle what a killed or failed run journaled before its remote writes."""
        for link in self.store.journaled_links(self.conn):
            try:
                if link.state == "creating":
                    self.finish_create(link)
                else:
                    self.finish_intent(link)
            except (TransientError, PermanentError) as exc:
                self.record_failure(link.kind, link.crm_id, link.provider_id, exc, "resume")

    def finish_create(self, link: Link) -> None:
        """Run the journaled create again: same key, so never a second copy."""
        write: Write = link.pending
        result = self.side(write.side).create(write)
        state: LinkState = "detached" if write.as_lead else "linked"
        done = replace(
            link.with_side(write.side, result.id, result.version), state=state, pending=None
        )
        self.store.save_link(self.conn, done)
        self.record_item(
            link.kind, "create", f"to_{write.side}", done, "finished an interrupted create"
        )

    def finish_intent(self, link: Link) -> None:
        """Find out, field by field, which journaled writes reached the other side.

        A field that still shows the value it had when the write was planned was not
        written: the link keeps the old base for it, so the change is planned again. Any other value
        was written, or edited by the user afterwards, which the next plan sees as theirs.
        """
        intent: Intent = link.pending
        before = intent.previous
        base = dict(link.base)
        undone = False
        touched: set[Side] = {"crm", "provider"}  # what was agreed is re-read by value
        for write in intent.writes:
            assert write.target is not None
            now = self.side(write.side).get(link.kind, write.target)
            if write.op == "delete":  # a record still there was not deleted
                undone = undone or now.fields is not None
                continue
            if write.op == "scope":  # still on the wrong side of the scope: not written
                undone = undone or (now.fields is not None and now.in_scope != write.in_scope)
                continue
            if now.fields is None or write.fields is None:
                continue
            prior = write.prior or self.view(write.side, link.kind, before.base)
            for name, value in write.fields.items():
                seen = now.fields.get(name)
                if seen != value and seen == prior.get(name):
                    base[name] = before.base.get(name)
        if undone:
            self.store.save_link(self.conn, _forget_versions(before, touched))
        elif intent.keeps_link:
            self.store.save_link(self.conn, _forget_versions(replace(link, base=base), touched))
        else:
            self.store.delete_link(self.conn, link.kind, link.key)

    def view(self, side: Side, kind: Kind, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        ctx = self.context(kind)
        if side == "crm":
            return crm_view(kind, fields, ctx)
        return provider_view(kind, fields, ctx)

    def context(self, kind: Kind, **kw: Any) -> Context:
        if self._schema is None:
            self._schema = self.crm.schema()
        return Context(
            now=self.clock(),
            user=self.connection.user,
            settings=self.settings,
            schema=self._schema,
            syncing_users=self.syncing_users,
            **kw,
        )

    # -- one kind -------------------------------------------------------------------
    def read(
        self, side: Side, kind: Kind, cursor: str | None
    ) -> tuple[list[SideRecord], str, bool]:
        """All changes since the cursor; a whole listing when it expired (RUN-4)."""
        source = self.side(side)
        records: list[SideRecord] = []
        full = cursor is None
        while True:
            try:
                page = source.changes(kind, cursor)
            except CursorExpired as exc:
                if cursor is None:  # a whole listing cannot expire: listing again won't help
                    raise PermanentError(f"{side} {kind}: the full listing failed") from exc
                records, cursor, full = [], None, True
                continue
            records.extend(page.records)
            cursor = page.cursor
            if not page.more:
                return records, cursor, full

    def sync_kind(self, kind: Kind) -> None:
        self.keep_lease()
        start = {side: self.store.cursor(self.conn, side, kind) for side in _SIDES}
        crm_first, prov_first = start["crm"] is None, start["provider"] is None
        crm_changes, crm_cursor, crm_full = self.read("crm", kind, start["crm"])
        prov_changes, prov_cursor, prov_full = self.read("provider", kind, start["provider"])
        changes: dict[Side, dict[str, SideRecord]] = {
            "crm": {r.id: r for r in crm_changes},
            "provider": {r.id: r for r in prov_changes},
        }
        resolutions = self.resolutions(kind, changes)
        pending = self.store.retries(self.conn, kind)
        for side, record_id in pending:
            if record_id not in changes[side]:
                changes[side][record_id] = self.side(side).get(kind, record_id)
        links = Links.of(self.store.links_for(self.conn, kind, changes["crm"], changes["provider"]))
        if kind == "contact":
            self.add_twins(kind, changes, links, {"crm": crm_full, "provider": prov_full})
        for side, full in (("crm", crm_full), ("provider", prov_full)):
            if full and not (crm_first and prov_first):
                self.add_vanished(kind, side, changes, links)
        # SYN-6 weighs deletes against the linked records only when there can be as
        # many deletes as it holds back; counting costs a read per 1,000 links.
        could_delete = len(changes["crm"]) + len(changes["provider"])
        guarded = could_delete >= int(self.settings["mass_delete_min"])
        ctx = self.context(
            kind,
            first_cycle=crm_first and prov_first,
            linked_count=self.store.linked_count(self.conn, kind) if guarded else 0,
            resolutions=resolutions,
        )
        plan = reconcile(kind, changes["crm"].values(), changes["provider"].values(), links, ctx)
        retry = self.apply(plan)
        # Written only when changed: an idle cycle, every few minutes for every user,
        # should cost as few store writes as it can.
        if retry != pending:
            self.store.set_retries(self.conn, kind, retry)
        for side, cursor in (("crm", crm_cursor), ("provider", prov_cursor)):
            if cursor != start[side]:
                self.store.save_cursor(self.conn, side, kind, cursor)

    def add_twins(
        self,
        kind: Kind,
        changes: dict[Side, dict[str, SideRecord]],
        links: Links,
        full: Mapping[Side, bool],
    ) -> None:
        """CON-3: the twin by e-mail of a new record joins the plan even when it did not
        change or is outside the sync scope, so the two are linked, not duplicated.
        One lookup per side and cycle, for all new records together."""
        sides: tuple[tuple[Side, Side], ...] = (("crm", "provider"), ("provider", "crm"))
        for side, other in sides:
            if full[other]:  # a whole listing already holds every candidate
                continue
            linked = links.crm if side == "crm" else links.provider
            emails = sorted(
                {
                    email
                    for record in changes[side].values()
                    if record.fields and record.in_scope and record.id not in linked
                    for email in record.fields.get("emails") or ()
                }
            )
            if not emails:
                continue
            found = [
                record
                for record in self.side(other).find_by_email(kind, emails)
                if record.id not in changes[other]
            ]
            for record in found:
                changes[other][record.id] = record
            ids = [record.id for record in found]
            crm_ids, provider_ids = (ids, []) if other == "crm" else ([], ids)
            for link in self.store.links_for(self.conn, kind, crm_ids, provider_ids):
                if link.crm_id:
                    links.crm[link.crm_id] = link
                if link.provider_id:
                    links.provider[link.provider_id] = link

    def add_vanished(
        self, kind: Kind, side: Side, changes: dict[Side, dict[str, SideRecord]], links: Links
    ) -> None:
        """After a whole re-listing, a linked record that was not listed is gone."""
        seen = changes[side]
        for link in self.store.links(self.conn, kind):
            record_id = link.side_id(side)
            if record_id and record_id not in seen:
                seen[record_id] = self.side(side).get(kind, record_id)
                (links.crm if side == "crm" else links.provider)[record_id] = link
                other = link.side_id("provider" if side == "crm" else "crm")
                if other:
                    (links.provider if side == "crm" else links.crm)[other] = link

    def resolutions(
        self, kind: Kind, changes: dict[Side, dict[str, SideRecord]]
    ) -> dict[str, Side]:
        """Queue items the user settled: their records are read again and re-planned."""
        chosen: dict[str, Side] = {}
        for item in self.store.queue(self.conn):
            if item["kind"] != kind or item.get("choice") is None:
                continue
            chosen[item["id"]] = item["choice"]
            for side, record_id in (
                ("crm", item.get("crm_id")),
                ("provider", item.get("provider_id")),
            ):
                if record_id and record_id not in changes[side]:  # type: ignore[index]
                    changes[side][record_id] = self.side(side).get(kind, record_id)  # type: ignore[arg-type, index]
        return chosen

    # -- applying a plan ---------------------------------------------------------------
    def within_budget(self) -> None:
        """RUN-6: past the time budget, stop applying (the cycle yields to its next run)."""
        if self._deadline is not None and self.ticker() > self._deadline:
            raise BudgetSpent()

    def keep_lease(self) -> None:
        """Renew the lease every RENEW_EVERY seconds of work (RUN-3), so a long cycle
        keeps the connection to itself; a lease lost meanwhile stops it."""
        if self.ticker() - self._renewed < RENEW_EVERY:
            return
        if not self.store.acquire_lease(self.conn, self.run_id, self.clock(), LEASE_SECONDS):
            raise LeaseLost()
        self._renewed = self.ticker()

    def apply(self, plan: Plan) -> set[tuple[Side, str]]:
        retry: set[tuple[Side, str]] = set()
        decisions = list(plan.decisions)
        at = 0
        while at < len(decisions):
            self.within_budget()
            batch = self.batch_at(decisions, at)
            if batch:
                retry |= self.apply_batch(batch)
                at += len(batch)
                continue
            decision = decisions[at]
            at += 1
            self.keep_lease()
            try:
                stored = self.apply_one(decision)
            except (TransientError, PermanentError) as exc:
                self.record_failure(
                    decision.kind,
                    decision.crm_id,
                    decision.provider_id,
                    exc,
                    decision.outcome,
                    decision,
                )
                retry.update(self.ids(decision))
                continue
            if decision.retry:
                retry.update(self.ids(decision))
            self.record(decision, stored)
        return retry

    def batch_at(self, decisions: list[Decision], at: int) -> list[Decision]:
        """The run of plain creates from `at` on that one side takes in one request
        (two at least), or nothing."""

        def plain_create(decision: Decision) -> Write | None:
            if decision.link is None or decision.dropped is not None or decision.hold:
                return None
            if len(decision.writes) != 1 or decision.writes[0].op != "create":
                return None
            return decision.writes[0]

        first = plain_create(decisions[at])
        if first is None:
            return []
        can: Any = getattr(self.side(first.side), "can_create_many", None)
        if can is None or not can(first.kind):
            return []
        batch = [decisions[at]]
        for decision in decisions[at + 1 : at + BATCH]:
            write = plain_create(decision)
            if write is None or (write.side, write.kind) != (first.side, first.kind):
                break
            batch.append(decision)
        return batch if len(batch) > 1 else []

    def apply_batch(self, batch: list[Decision]) -> set[tuple[Side, str]]:
        """Plain creates in one request: every link journaled first, so a crash anywhere
        leaves creates that finish_journal completes by their keys (SYN-4)."""
        retry: set[tuple[Side, str]] = set()
        writes = [d.writes[0] for d in batch]
        for decision, write in zip(batch, writes, strict=True):
            assert decision.link is not None
            self.keep_lease()
            self.store.save_link(self.conn, replace(decision.link, state="creating", pending=write))
        side: Any = self.side(writes[0].side)
        try:
            results: list[Any] = side.create_many(writes)
        except (TransientError, PermanentError) as exc:
            results = [exc] * len(batch)
        for decision, write, result in zip(batch, writes, results, strict=True):
            if isinstance(result, Exception):  # still journaled: the next run finishes it
                self.record_failure(
                    decision.kind, decision.crm_id, None, result, decision.outcome, decision
                )
                retry.update(self.ids(decision))
                continue
            assert decision.link is not None
            link = decision.link.with_side(write.side, result.id, result.version)
            self.store.save_link(self.conn, replace(link, pending=None))
            self.unqueue(decision.link.key)
            if decision.retry:
                retry.update(self.ids(decision))
            self.record(decision, link)
        return retry

    @staticmethod
    def ids(decision: Decision) -> set[tuple[Side, str]]:
        out: set[tuple[Side, str]] = set()
        if decision.crm_id:
            out.add(("crm", decision.crm_id))
        if decision.provider_id:
            out.add(("provider", decision.provider_id))
        return out

    def apply_one(self, decision: Decision) -> Link | None:
        """Journal, write, then store the link; returns the link as stored."""
        link, dropped, previous = decision.link, decision.dropped, decision.previous
        replaced = dropped is not None and (link is None or link.key != dropped.key)
        create = next((w for w in decision.writes if w.op == "create"), None)
        others = tuple(w for w in decision.writes if w.op != "create")
        if create is not None and link is not None:
            if replaced and dropped is not None:  # one link per record, also mid-journal
                self.store.delete_link(self.conn, dropped.kind, dropped.key)
            self.store.save_link(self.conn, replace(link, state="creating", pending=create))
        elif others and previous is not None:
            keeps = link is not None and link.key == previous.key
            journal = link if keeps and link is not None else previous
            intent = Intent(previous, others, keeps)
            self.store.save_link(self.conn, replace(journal, state="applying", pending=intent))
        for write in decision.writes:
            result = self.write(write)
            if (
                link is not None
                and result is not None
                and (write.op == "create" or write.target == link.side_id(write.side))
            ):
                link = link.with_side(write.side, result[0], result[1])
        if link is not None:
            self.store.save_link(self.conn, replace(link, pending=None))
        if replaced and dropped is not None:
            self.store.delete_link(self.conn, dropped.kind, dropped.key)
        if decision.hold is not None:
            item = self.queue_item(decision)
            self.store.put_queue_item(self.conn, item)
            self.queued().add(item["id"])
        else:
            key = (dropped or decision.link or _NO_LINK).key
            self.unqueue(key)
        return link

    def queued(self) -> set[str]:
        """Ids of the connection's waiting queue items, read once per cycle."""
        if self._queued is None:
            self._queued = {str(item["id"]) for item in self.store.queue(self.conn)}
        return self._queued

    def unqueue(self, item_id: str) -> None:
        """A decision was applied: its queue item, if one waits, is settled. Only items
        that exist are deleted, so an ordinary change costs no queue write."""
        if item_id in self.queued():
            self.store.drop_queue_item(self.conn, item_id)
            self.queued().discard(item_id)

    def write(self, write: Write) -> tuple[str, str] | None:
        side = self.side(write.side)
        if write.op == "create":
            result = side.create(write)
        elif write.op == "update":
            result = side.update(write)
        elif write.op == "scope":
            result = side.set_scope(write)
        else:
            with contextlib.suppress(NotFound):  # already gone is what we wanted
                side.delete(write)
            return None
        if write.op != "create" and write.target and result.id != write.target:
            return None
        return result.id, result.version

    def queue_item(self, decision: Decision) -> dict[str, Any]:
        hold = decision.hold
        assert hold is not None
        return {
            "id": hold.id,
            "kind": hold.kind,
            "reason": hold.reason,
            "source": hold.source,
            "crm_id": hold.crm_id,
            "provider_id": hold.provider_id,
            "fields": list(hold.fields),
            "summary": hold.summary,
            "crm_values": dict(hold.crm_values),
            "provider_values": dict(hold.provider_values),
            "created": self.clock(),
            "run": self.run_id,
        }

    # -- history (HIS-1) ---------------------------------------------------------------
    def count(self, kind: str, outcome: str) -> None:
        per_kind = self._counts.setdefault(kind, {})
        per_kind[outcome] = per_kind.get(outcome, 0) + 1

    def record(self, decision: Decision, stored: Link | None) -> None:
        if decision.outcome == "none":
            return
        ids = stored or decision.dropped
        changes = {
            name: [to_json(old), to_json(new)] for name, (old, new) in decision.summary.items()
        }
        self.record_item(
            decision.kind,
            decision.outcome,
            decision.direction,
            ids,
            decision.reason,
            fields=list(decision.changed),
            changes=changes,
            crm_id=decision.crm_id,
            provider_id=decision.provider_id,
        )

    def record_item(
        self,
        kind: Kind,
        outcome: str,
        direction: str,
        link: Link | None,
        reason: str,
        *,
        fields: list[str] | None = None,
        changes: Mapping[str, Any] | None = None,
        crm_id: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        """One record-level history item (HIS-1): what, which way, when, before/after."""
        self.count(kind, outcome)
        self._items.append(
            {
                "kind": kind,
                "outcome": outcome,
                "direction": direction,
                "crm_id": (link.crm_id if link else None) or crm_id,
                "provider_id": (link.provider_id if link else None) or provider_id,
                "reason": reason,
                "fields": fields or [],
                "changes": dict(changes or {}),
                "error": None,
                "at": self.clock(),
            }
        )

    def record_failure(
        self,
        kind: Kind,
        crm_id: str | None,
        provider_id: str | None,
        exc: Exception,
        action: str,
        decision: Decision | None = None,
    ) -> None:
        self.count(kind, "fail")
        message = f"{type(exc).__name__}: {exc}"
        self._errors.append(message)
        self._items.append(
            {
                "kind": kind,
                "outcome": "fail",
                "direction": decision.direction if decision else "none",
                "crm_id": crm_id,
                "provider_id": provider_id,
                "reason": f"{action} failed",
                "fields": list(decision.changed) if decision else [],
                "error": message,
                "at": self.clock(),
            }
        )
        log.warning(
            "record failed",
            extra={
                "tenant": self.connection.tenant,
                "connection": self.conn,
                "run": self.run_id,
                "kind": kind,
                "error": type(exc).__name__,
            },
        )


def _forget_versions(link: Link, sides: Iterable[Side]) -> Link:
    """Versions we cannot vouch for: the next plan compares values instead."""
    for side in sides:
        link = link.with_side(side, link.side_id(side), None)
    return replace(link, state="linked", pending=None)


_NO_LINK = Link(key="", kind="contact", crm_id=None, provider_id=None)


def run_cycle(
    connection: Connection,
    store: Store,
    crm: CrmConnector,
    provider: ProviderAccount,
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    trigger: str = "schedule",
    syncing_users: Iterable[str] = (),
    run_id: str = "",
    budget_seconds: float | None = None,
    began: Callable[[Mapping[str, Any]], None] | None = None,
) -> Mapping[str, Any]:
    """Run one cycle and return its run record (HIS-1), with its record-level items
    under "items" (the store keeps those apart from the run). `began` is called with
    the run record once the cycle holds the connection's lease."""
    return Cycle(
        connection,
        store,
        crm,
        provider,
        settings,
        clock,
        frozenset(syncing_users),
        trigger,
        run_id,
        budget_seconds,
        began=began,
    ).run()
