"""Applying a plan: journal, write, then store the link, decision by decision.

Order matters for crash safety (BEY-4, SYN-4): before a remote create the link is
stored in state `creating` with its key; before other writes, in state `applying`
with what they will change; after them, with the versions they produced, so their
echo in the next change feed is recognised. A record that fails fails alone (SYN-5)
and is retried next cycle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.cycle.history import History
from crmsync.cycle.reading import Sides
from crmsync.engine import Decision, Plan, Write
from crmsync.engine.plan import Intent
from crmsync.engine.records import Link
from crmsync.errors import NotFound, PermanentError, TransientError
from crmsync.ports import Store, WriteResult
from crmsync.settings import Side

BATCH = 200  # plain creates the cycle hands a side in one call, when it takes several
JOURNALED = 100  # decisions journaled in one store write before their writes

Retry = set[tuple[Side, str]]


@dataclass
class Applier:
    """Applies one run's plans; `checkpoint` is called before each write (it keeps the
    lease and stops the run when its time budget is spent)."""

    store: Store
    connection: str
    sides: Sides
    history: History
    clock: Callable[[], datetime]
    run_id: str
    checkpoint: Callable[[], None]
    _queued: set[str] | None = None

    def apply(self, plan: Plan) -> Retry:
        """Apply every decision, JOURNALED at a time: all of them journaled first, in
        one store write, then written one by one; returns the records to plan again
        next cycle."""
        retry: Retry = set()
        every = list(plan.decisions)
        for start in range(0, len(every), JOURNALED):
            decisions = every[start : start + JOURNALED]
            self.journal_all(decisions)
            at = 0
            while at < len(decisions):
                batch = batch_at(decisions, at, self.sides)
                if batch:
                    retry |= self.apply_batch(batch)
                    at += len(batch)
                    continue
                retry |= self.apply_guarded(decisions[at])
                at += 1
        return retry

    def journal_all(self, decisions: list[Decision]) -> None:
        """What the decisions are about to write, kept before any of it is written (a
        link replaced by a decision's own is deleted first: one link per record, also
        mid-journal)."""
        self.checkpoint()
        journaled = [j for d in decisions if (j := self.journaled(d)) is not None]
        if journaled:
            self.store.journal_links(self.connection, journaled)

    def apply_guarded(self, decision: Decision) -> Retry:
        self.checkpoint()
        try:
            stored = self.apply_one(decision)
        except (TransientError, PermanentError) as exc:
            self.history.failure(
                decision.kind,
                decision.crm_id,
                decision.provider_id,
                exc,
                decision.outcome,
                decision,
            )
            return ids(decision)
        self.history.decision(decision, stored)
        return ids(decision) if decision.retry else set()

    def apply_batch(self, batch: list[Decision]) -> Retry:
        """Plain creates in one request, their links journaled (`journal_all`), so a
        crash anywhere leaves creates that the journal completes by their keys (SYN-4)."""
        retry: Retry = set()
        writes = [d.writes[0] for d in batch]
        self.checkpoint()
        try:
            results = self.sides[writes[0].side].create_many(writes)
        except (TransientError, PermanentError) as exc:
            results = [exc] * len(batch)
        for decision, write, result in zip(batch, writes, results, strict=True):
            if isinstance(result, Exception):  # still journaled: the next run finishes it
                self.history.failure(
                    decision.kind, decision.crm_id, None, result, decision.outcome, decision
                )
                retry |= ids(decision)
                continue
            assert decision.link is not None
            link = decision.link.with_side(write.side, result.id, result.version, result.reminder)
            self.store.save_link(self.connection, link.journaled(link.state, None))
            self.unqueue(decision.link.key)
            retry |= ids(decision) if decision.retry else set()
            self.history.decision(decision, link)
        return retry

    def apply_one(self, decision: Decision) -> Link | None:
        """Journal, write, then store the link; returns the link as stored."""
        link, dropped = decision.link, decision.dropped
        replaced = dropped is not None and (link is None or link.key != dropped.key)
        for write in decision.writes:  # journaled already (`journal_all`)
            result = self.write(write)
            if (
                link is not None
                and result is not None
                and (write.op == "create" or write.target == link.side_id(write.side))
            ):
                link = link.with_side(write.side, result.id, result.version, result.reminder)
        if link is not None:
            self.store.save_link(self.connection, link.journaled(link.state, None))
        if replaced and dropped is not None:
            self.store.delete_link(self.connection, dropped.kind, dropped.key)
        self.settle_queue(decision)
        return link

    def journaled(self, decision: Decision) -> Link | None:
        """The decision's link as journaled before its writes: `creating` with the
        create, or `applying` with an intent of its other writes; None when it writes
        nothing."""
        link, dropped, previous = decision.link, decision.dropped, decision.previous
        replaced = dropped is not None and (link is None or link.key != dropped.key)
        create = next((w for w in decision.writes if w.op == "create"), None)
        if create is not None and link is not None:
            if replaced and dropped is not None:  # one link per record, also mid-journal
                self.store.delete_link(self.connection, dropped.kind, dropped.key)
            return link.journaled("creating", create)
        others = tuple(w for w in decision.writes if w.op != "create")
        if others and previous is not None:
            keeps = link is not None and link.key == previous.key
            journal = link if keeps and link is not None else previous
            return journal.journaled("applying", Intent(previous, others, keeps))
        return None

    def write(self, write: Write) -> WriteResult | None:
        """One write on its side; None for a delete, or for an update that answered with
        another record (it is not the link's). A record moved into or out of the sync
        scope may come back under a new id (a contact moved between folders is a new
        contact): the link follows it."""
        side = self.sides[write.side]
        if write.op == "create":
            return side.create(write)
        if write.op == "delete":
            with contextlib.suppress(NotFound):  # already gone is what we wanted
                side.delete(write)
            return None
        if write.op == "scope":
            return side.set_scope(write)
        result = side.update(write)
        return result if not write.target or result.id == write.target else None

    # -- the queue of held changes (SYN-2 manual, SET-5, SYN-6) ------------------------
    def settle_queue(self, decision: Decision) -> None:
        if decision.hold is not None:
            item = self.queue_item(decision)
            self.store.put_queue_item(self.connection, item)
            self.queued().add(item["id"])
        else:
            self.unqueue((decision.dropped or decision.link or _NO_LINK).key)

    def queued(self) -> set[str]:
        """Ids of the connection's waiting queue items, read once per cycle."""
        if self._queued is None:
            self._queued = {str(item["id"]) for item in self.store.queue(self.connection)}
        return self._queued

    def unqueue(self, item_id: str) -> None:
        """A decision was applied: its queue item, if one waits, is settled. Only items
        that exist are deleted, so an ordinary change costs no queue write."""
        if item_id in self.queued():
            self.store.drop_queue_item(self.connection, item_id)
            self.queued().discard(item_id)

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


def batch_at(decisions: list[Decision], at: int, sides: Sides) -> list[Decision]:
    """The run of plain creates from `at` on that one side takes in one request (two
    at least), or nothing."""
    first = _plain_create(decisions[at])
    if first is None or not sides[first.side].can_create_many(first.kind):
        return []
    batch = [decisions[at]]
    for decision in decisions[at + 1 : at + BATCH]:
        write = _plain_create(decision)
        if write is None or (write.side, write.kind) != (first.side, first.kind):
            break
        batch.append(decision)
    return batch if len(batch) > 1 else []


def _plain_create(decision: Decision) -> Write | None:
    if decision.link is None or decision.dropped is not None or decision.hold:
        return None
    if len(decision.writes) != 1 or decision.writes[0].op != "create":
        return None
    return decision.writes[0]


def ids(decision: Decision) -> Retry:
    out: Retry = set()
    if decision.crm_id:
        out.add(("crm", decision.crm_id))
    if decision.provider_id:
        out.add(("provider", decision.provider_id))
    return out


_NO_LINK = Link(key="", kind="contact", crm_id=None, provider_id=None)
