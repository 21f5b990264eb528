"""One run: take the lease, settle the journal, then each kind: read, plan, apply,
save the cursors; record the run.

Reading and planning are one step (`plan_kind`) that writes nothing, so a dry run
(`preview`, BEY-3) says what a run would do with the very code the run uses. A run of
an address-book import (CON-9) reads the contacts it is given instead of the feeds,
puts each in the sync scope, and plans and applies them as any cycle would.

A run that finds the connection held asks the holder for one cycle more instead of
waiting: however many triggers find it held, one cycle follows the holder's (RUN-3).

Cursors are saved only after every change they cover was applied or recorded as
failed (and kept for a retry), so a crash anywhere loses nothing (SYN-4).
"""

from __future__ import annotations

import gc
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from crmsync.calls import CallsAsTodos
from crmsync.cycle.applying import Applier, Retry
from crmsync.cycle.history import History
from crmsync.cycle.journal import Journal
from crmsync.cycle.reading import (
    SIDES,
    Changes,
    Sides,
    add_retries,
    add_settled,
    add_twins,
    add_vanished,
    read_changes,
)
from crmsync.engine import Context, Plan, SideRecord, Write
from crmsync.engine.lens import crm_view, provider_view
from crmsync.engine.mass_delete import could_hold
from crmsync.engine.reconcile import Links, reconcile
from crmsync.engine.records import CrmSchema
from crmsync.errors import (
    CrmUnauthorized,
    GrantRevoked,
    LeaseTaken,
    PermanentError,
    TransientError,
)
from crmsync.model import KINDS, Kind
from crmsync.ports import (
    Connection,
    CrmConnector,
    ProviderAccount,
    RecordSide,
    RunStatus,
    Store,
    quiet_run,
)
from crmsync.queue import IMPORT, POLL
from crmsync.settings import Settings, Side

log = logging.getLogger("crmsync.cycle")

# A cycle holds its connection for two minutes at a time and renews that every 30
# seconds of work, so the connection of a worker that died is free again within two
# minutes (and its run is marked interrupted by the next one).
LEASE_SECONDS = 120
RENEW_EVERY = 30.0  # seconds of work between renewals of the lease
# A cycle takes its lease lazily: the lease is written with the cycle's first write (its
# journal, as a rule), so a cycle costs one write of the connection's document less. A
# cycle that finds another took it first (before it wrote anything) starts again, up to
# TAKES times, the last time taking the lease at once.
TAKES = 3


class BudgetSpent(Exception):
    """The cycle's time budget ran out in the middle of a plan."""


class LeaseLost(Exception):
    """The lease expired while the cycle ran and another cycle took it: stop writing."""


@dataclass(frozen=True)
class Planned:
    """One kind as a dry run planned it (BEY-3): the records read, and the plan; or,
    when the kind could not be read, why (`error`, with no changes and no plan)."""

    kind: Kind
    changes: Changes | None
    plan: Plan | None
    error: str = ""


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
    ticker: Callable[[], float] = time.monotonic  # elapsed time, for budget and lease
    began: Callable[[Mapping[str, Any]], None] | None = None  # told once the lease is held
    # fields of the connection's record written with the lease as it is taken, and as it
    # is given up (from the run record then): one write each (an idle cycle makes two)
    on_hold: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    on_release: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    # HIS-1: a quiet run is not stored on its own; `on_release` keeps it in the record
    fold_quiet: bool = False
    kinds: tuple[Kind, ...] = KINDS  # the kinds it syncs (a poll: the unpushed ones)
    # CON-9: the provider contacts an import step brings in, read instead of the feeds
    imported: tuple[SideRecord, ...] | None = None
    history: History = field(init=False)
    _schema: CrmSchema | None = None
    _retry_after: float | None = None
    _deadline: float | None = None
    _renewed: float = 0.0

    def __post_init__(self) -> None:
        if self.settings["calls_as"] == "task":  # CAL-1: calls sync as provider tasks
            self.crm = CallsAsTodos(self.crm)
        self.history = History(self.clock)

    @property
    def conn(self) -> str:
        return self.connection.id

    @property
    def sides(self) -> Sides:
        return {"crm": self.crm, "provider": self.provider}

    # -- the run --------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = self.clock()
        # Unique even for two runs begun at one instant (a clock that stands still)
        stamp = started.strftime("%Y%m%dT%H%M%S.%f")
        self.run_id = self.run_id or f"{self.conn}-{stamp}-{secrets.token_hex(3)}"
        self.history.where = {
            "tenant": self.connection.tenant,
            "connection": self.conn,
            "run": self.run_id,
        }
        run: dict[str, Any] = {
            "id": self.run_id,
            "connection": self.conn,
            "tenant": self.connection.tenant,
            "user": self.connection.user,
            "provider": self.connection.provider,
            "trigger": self.trigger,
            "started": started,
            "ended": None,
            "status": RunStatus.RUNNING,
            "counts": self.history.counts,
            "unread": self.history.unread,
            "errors": self.history.errors,
        }
        if self.settings["history_days"] is not None:  # the tenant keeps history shorter
            run["history_days"] = self.settings["history_days"]
        for take in range(TAKES):
            record = self.on_hold(run) if self.on_hold is not None else None
            held = self.hold(started, record, lazy=take < TAKES - 1 and self.imported is None)
            if held is not True:  # asked of the holder (when its lease runs out), or not
                return {**run, "status": RunStatus.BUSY, "ended": started, "asked": held or None}
            # the connection's record shows it running (`on_hold`, written with the lease);
            # its run record is stored once it ends, or by the run that finds it dead (RUN-2)
            if self.began is not None:
                self.began(run)
            try:
                status, pending_kinds = self.run_kinds()
            except LeaseTaken:  # another cycle took it before this one wrote anything
                self.store.release_lease(self.conn, self.run_id)  # it never held it
                self.history = History(self.clock, where=self.history.where)
                run.update(
                    counts=self.history.counts,
                    unread=self.history.unread,
                    errors=self.history.errors,
                )
                self._retry_after = None
                continue
            except Exception as exc:  # a defect: record it, free the lease, let the task retry
                self.history.error(f"{type(exc).__name__}: {exc}")
                self.finish_run(run, RunStatus.FAILED, [])
                raise
            break
        else:
            return {**run, "status": RunStatus.BUSY, "ended": started, "asked": None}
        self.finish_run(run, status, pending_kinds)
        log.info("cycle finished", extra={**self.history.where, "status": status})
        return {**run, "items": list(self.history.items)}  # the items are stored apart (HIS-1)

    def hold(
        self, now: datetime, record: Mapping[str, Any] | None = None, *, lazy: bool = False
    ) -> bool | datetime:
        """Take the connection's lease (True; `lazy`: written with the first write); or,
        while another cycle holds it, ask that one for one cycle more after it ends, and
        return when its lease runs out. A poll asks for nothing (False): the next poll
        comes soon, and the holder reads every kind a poll would. False also when the
        lease changed hands too fast to settle."""
        for _ in range(3):
            if self.store.acquire_lease(
                self.conn, self.run_id, now, LEASE_SECONDS, record, lazy=lazy
            ):
                return True
            if self.trigger in (POLL, IMPORT):  # an import step comes back on its own
                return False
            expires = self.store.ask_again(self.conn, self.trigger, now)
            if expires is not None:
                return expires
        return False

    def run_kinds(self) -> tuple[RunStatus, list[Kind]]:
        """Sync each enabled kind; returns the run's status and the kinds left over.

        A kind whose change feed cannot be read now (throttled, unavailable, refused)
        is skipped with its cursors untouched, so the next cycle reads those changes
        again; the other kinds go on (SYN-5). A grant that no longer works stops the
        cycle: nothing can succeed until the user reconnects (AUTH-3)."""
        self._renewed = self.ticker()
        self._deadline = self._renewed + self.budget_seconds if self.budget_seconds else None
        try:
            self.journal().settle(self.kinds)
            pending_kinds = [kind for kind in self.kinds if not self.run_kind(kind)]
        except GrantRevoked as exc:
            self.history.error(f"{type(exc).__name__}: {exc}")
            return RunStatus.NEEDS_REAUTH, []
        except CrmUnauthorized as exc:
            self.history.error(f"{type(exc).__name__}: {exc}")
            return RunStatus.CRM_UNAUTHORIZED, []
        except LeaseTaken as exc:
            if exc.first:
                raise  # nothing written: `run` starts again
            self.history.error("LeaseLost: another cycle took over the connection")
            return RunStatus.LEASE_LOST, []
        except LeaseLost:
            self.history.error("LeaseLost: another cycle took over the connection")
            return RunStatus.LEASE_LOST, []
        if pending_kinds:
            return RunStatus.CONTINUED, pending_kinds
        failed = self.history.unread or self.history.failed()
        return (RunStatus.PARTIAL if failed else RunStatus.OK), []

    def run_kind(self, kind: Kind) -> bool:
        """One kind, unless the budget is spent; False when it is left for the next run."""
        if self._deadline is not None and self.ticker() > self._deadline:
            return False  # RUN-6: the next run takes it from here
        if not self.settings.enabled(kind):
            return True
        try:
            self.sync_kind(kind)
        except BudgetSpent:  # its cursors stay: the next run reads it again
            return False  # and finds what was done linked
        except (TransientError, PermanentError) as exc:
            self.kind_failed(kind, exc)
        return True

    def kind_failed(self, kind: Kind, exc: Exception) -> None:
        """One kind could not be read or planned this cycle; it is tried again next."""
        self.history.kind_failed(kind, exc)
        wait = getattr(exc, "retry_after", None)
        if wait is not None:
            self._retry_after = max(self._retry_after or 0.0, float(wait))

    def finish_run(self, run: dict[str, Any], status: RunStatus, pending: list[Kind]) -> None:
        run.update(status=status, ended=self.clock(), pending=pending)
        if self._retry_after is not None:
            run["retry_after"] = self._retry_after  # throttled: when to come back (RUN-6)
        if self.fold_quiet and not self.history.items and quiet_run(run):
            run["folded"] = True  # kept with the quiet runs around it (HIS-1, `on_release`)
        else:
            self.store.save_run(self.conn, run, self.history.items)
        record = self.on_release(run) if self.on_release is not None else None
        asked = self.store.release_lease(self.conn, self.run_id, record)
        if asked:
            run["again"] = asked  # a trigger came while it ran: one cycle follows

    # -- one kind -------------------------------------------------------------------
    def sync_kind(self, kind: Kind) -> None:
        """Read, plan, apply; then the retries and cursors, each written only when it
        changed (an idle cycle, every few minutes for every user, should cost as few
        store writes as it can). An import step moves no cursor: it read no feed."""
        self.keep_lease()
        changes, plan, pending = self.plan_kind(kind)
        retry = self.applier().apply(plan)
        if retry != pending:
            self.store.set_retries(self.conn, kind, retry)
        if self.imported is not None:
            return
        for side in SIDES:
            end = _after_writes(self.sides[side], kind, changes.end[side])
            if end is not None and end != changes.start[side]:
                self.store.save_cursor(self.conn, side, kind, end)

    def plan_kind(self, kind: Kind, dry: bool = False) -> tuple[Changes, Plan, Retry]:
        """Read one kind (with every record the plan must also see) and plan it; returns
        the changes, the plan and the records that were waiting for a retry. Nothing is
        written here, but an import's scope writes (`bring_in`), which a dry run skips."""
        changes = self.read(kind, dry)
        settled = add_settled(changes, self.store.queue(self.conn), self.sides)
        pending = self.store.retries(self.conn, kind)
        add_retries(changes, pending, self.sides)
        links = Links.of(
            self.store.links_for(
                self.conn, kind, changes.records["crm"], changes.records["provider"]
            )
        )
        if kind == "contact":
            add_twins(changes, links, self.store, self.conn, self.sides)
        add_vanished(changes, links, self.store, self.conn, self.sides)
        ctx = self.context(
            kind,
            first_cycle=changes.first_cycle,
            linked_count=self.linked_count(changes),
            resolutions=settled.choices,
            picks=settled.picks,
        )
        records = changes.records
        plan = reconcile(kind, records["crm"].values(), records["provider"].values(), links, ctx)
        return changes, plan, pending

    def read(self, kind: Kind, dry: bool = False) -> Changes:
        """Both feeds of `kind`; for an import step, the contacts it brings in."""
        if self.imported is None:
            return read_changes(self.store, self.conn, self.sides, kind)
        return self.bring_in(kind, dry)

    def bring_in(self, kind: Kind, dry: bool) -> Changes:
        """CON-9: the contacts an import step was given, each put in the sync scope
        first (labelled), so that once linked or created it syncs like any other; a dry
        run plans them as if they were. A contact whose label cannot be set fails alone
        (SYN-5) and is left out of the plan."""
        start = {side: self.store.cursor(self.conn, side, kind) for side in SIDES}
        listed_whole: dict[Side, bool] = {"crm": False, "provider": False}
        changes = Changes(kind, {"crm": {}, "provider": {}}, start, dict(start), listed_whole)
        for record in self.imported or ():
            if record.fields is None or record.error:
                continue  # the import step counts these; there is nothing to bring in
            brought = record if record.in_scope else self.label(record, dry)
            if brought is not None:
                changes.add("provider", brought)
        return changes

    def label(self, record: SideRecord, dry: bool) -> SideRecord | None:
        """The provider contact put in the sync scope, as it is afterwards; None when
        that failed (the failure is in the history)."""
        if dry:
            return replace(record, in_scope=True)
        write = Write("provider", "scope", "contact", record.id, in_scope=True)
        self.checkpoint()
        try:
            result = self.applier().write(write)
        except (TransientError, PermanentError) as exc:
            self.history.failure("contact", None, record.id, exc, "labelling")
            return None
        assert result is not None
        return replace(record, id=result.id, version=result.version, in_scope=True)

    # -- a dry run (BEY-3) -------------------------------------------------------------
    def preview(self) -> list[Planned]:
        """What a run would do now, kind by kind: read and planned as `run` reads and
        plans, with nothing applied and nothing stored (no lease, no journal, no
        cursor, no history). A kind that cannot be read says why; a grant that no
        longer works, or a CRM that refuses the tenant, raises as in a run."""
        planned: list[Planned] = []
        for kind in self.kinds:
            if not self.settings.enabled(kind):
                continue
            try:
                changes, plan, _ = self.plan_kind(kind, dry=True)
            except (TransientError, PermanentError) as exc:
                planned.append(Planned(kind, None, None, f"{type(exc).__name__}: {exc}"))
                continue
            planned.append(Planned(kind, changes, plan))
        return planned

    def linked_count(self, changes: Changes) -> int:
        """SYN-6 weighs deletes against the linked records only when there can be as
        many deletes as it holds back; counting costs a read per 1,000 links."""
        if not could_hold(self.settings, changes.size()):
            return 0
        return self.store.linked_count(self.conn, changes.kind)

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

    def view(self, side: Side, kind: Kind, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        ctx = self.context(kind)
        return crm_view(kind, fields, ctx) if side == "crm" else provider_view(kind, fields, ctx)

    def journal(self) -> Journal:
        return Journal(
            self.store,
            self.conn,
            self.sides,
            self.view,
            self.history,
            lambda kind, crm_id: self.settings.excluded(kind, crm_id, self.clock()),
            self.take_lease,
        )

    def applier(self) -> Applier:
        return Applier(
            self.store,
            self.conn,
            self.sides,
            self.history,
            self.clock,
            self.run_id,
            self.checkpoint,
        )

    # -- time and the lease ------------------------------------------------------------
    def checkpoint(self) -> None:
        """Before each write: within the time budget (RUN-6), holding the lease (RUN-3)."""
        if self._deadline is not None and self.ticker() > self._deadline:
            raise BudgetSpent()
        self.keep_lease()

    def take_lease(self) -> None:
        """Write the lease now if it was taken lazily (before remote writes no journal
        write of this cycle precedes); a lease another took meanwhile stops the cycle."""
        if not self.store.acquire_lease(self.conn, self.run_id, self.clock(), LEASE_SECONDS):
            raise LeaseLost()
        self._renewed = self.ticker()

    def keep_lease(self) -> None:
        """Renew the lease every RENEW_EVERY seconds of work (RUN-3), so a long cycle
        keeps the connection to itself; a lease lost meanwhile stops it."""
        if self.ticker() - self._renewed < RENEW_EVERY:
            return
        if not self.store.acquire_lease(self.conn, self.run_id, self.clock(), LEASE_SECONDS):
            raise LeaseLost()
        self._renewed = self.ticker()


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
    kinds: tuple[Kind, ...] = KINDS,
    imported: tuple[SideRecord, ...] | None = None,
    on_hold: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    on_release: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    fold_quiet: bool = False,
) -> Mapping[str, Any]:
    """Run one cycle of `kinds` and return its run record (HIS-1), with its record-level
    items under "items" (the store keeps those apart from the run). `began` is called
    with the run record once the cycle holds the connection's lease; `imported` makes
    it an import step over those provider contacts (CON-9). `on_hold` and `on_release`
    give the connection record's fields written with the lease as it is taken and given
    up, from the run record as it is then."""
    cycle = Cycle(
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
        kinds=kinds,
        imported=imported,
        on_hold=on_hold,
        on_release=on_release,
        fold_quiet=fold_quiet,
    )
    with collector_waits():
        return cycle.run()


@contextmanager
def collector_waits() -> Iterator[None]:
    """Python's cyclic garbage collector waits for the cycle to end. A cycle's records,
    links and plans live until it ends, and the collector would walk them again and
    again as they grow: a third of a 10k-record cycle's time (bench/peer.py). Reference
    counting still frees what the cycle drops; what it leaves in reference cycles is
    collected after it. Cycles running at once in one instance share the setting: the
    first to end turns the collector back on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _after_writes(source: RecordSide, kind: Kind, cursor: str | None) -> str | None:
    """The cursor a side keeps after the cycle's writes: its feed's, or more where the
    side says so (an optional `cursor_after_writes(kind, cursor)`)."""
    keeper: Any = getattr(source, "cursor_after_writes", None)
    if cursor is None or keeper is None:
        return cursor
    return str(keeper(kind, cursor))
