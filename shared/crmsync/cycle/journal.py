"""Settling what a killed or failed run journaled before its remote writes (SYN-4).

A link in state `creating` holds the create it was about to send: it is sent again
with the same idempotency key, so it can never happen twice; while its CRM record is
on the user's exception list it waits, untouched (SET-4). A link in state `applying`
holds the writes of one decision: each is checked on its side, field by field, to find
out which reached it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from crmsync.cycle.history import History
from crmsync.cycle.reading import Sides
from crmsync.engine import Write
from crmsync.engine.plan import Intent
from crmsync.engine.records import Link, LinkState
from crmsync.errors import PermanentError, TransientError
from crmsync.model import Kind
from crmsync.ports import Store
from crmsync.settings import Side

View = Callable[[Side, Kind, Mapping[str, Any]], Mapping[str, Any]]


@dataclass
class Journal:
    """One connection's journal, settled at the start of each run."""

    store: Store
    connection: str
    sides: Sides
    view: View  # how a side holds canonical values (the lens), for unwritten fields
    history: History
    excluded: Callable[[Kind, str], bool] = lambda kind, crm_id: False  # SET-4, now
    # called before its first remote write: the cycle writes a lease it took lazily,
    # so that no other cycle finishes the same journaled writes at the same time
    ready: Callable[[], None] = lambda: None

    def settle(self, kinds: Iterable[Kind]) -> None:
        """Finish what a killed run journaled for records of `kinds`."""
        wanted = set(kinds)
        ready = False
        for link in self.store.journaled_links(self.connection):
            if link.kind not in wanted:
                continue  # a cycle of the other kinds settles it
            if link.state == "creating" and link.crm_id and self.excluded(link.kind, link.crm_id):
                continue  # sent once the user includes the record again
            if not ready:
                self.ready()
                ready = True
            try:
                if link.state == "creating":
                    self.finish_create(link)
                else:
                    self.finish_intent(link)
            except (TransientError, PermanentError) as exc:
                self.history.failure(link.kind, link.crm_id, link.provider_id, exc, "resume")

    def finish_create(self, link: Link) -> None:
        """Run the journaled create again: same key, so never a second copy."""
        write: Write = link.pending
        result = self.sides[write.side].create(write)
        state: LinkState = "detached" if write.as_lead else "linked"
        done = replace(
            link.with_side(write.side, result.id, result.version, result.reminder),
            state=state,
            pending=None,
        )
        self.store.save_link(self.connection, done)
        self.history.item(
            link.kind, "create", f"to_{write.side}", done, "finished an interrupted create"
        )

    def finish_intent(self, link: Link) -> None:
        """Find out, field by field, which journaled writes reached the other side.

        A field that still shows the value it had when the write was planned was not
        written: the link keeps the old base for it, so the change is planned again. Any
        other value was written, or edited by the user afterwards, which the next plan
        sees as theirs."""
        intent: Intent = link.pending
        before = intent.previous
        base = dict(link.base)
        undone = False
        for write in intent.writes:
            undone = self.check_write(link.kind, write, before, base) or undone
        touched: set[Side] = {"crm", "provider"}  # what was agreed is re-read by value
        if undone:
            self.store.save_link(self.connection, forget_versions(before, touched))
        elif intent.keeps_link:
            self.store.save_link(
                self.connection, forget_versions(replace(link, base=base), touched)
            )
        else:
            self.store.delete_link(self.connection, link.kind, link.key)

    def check_write(self, kind: Kind, write: Write, before: Link, base: dict[str, Any]) -> bool:
        """Whether a journaled delete or scope change did not happen; an update's fields
        that did not reach the side get their old base value back in `base`."""
        assert write.target is not None
        now = self.sides[write.side].get(kind, write.target)
        if write.op == "delete":  # a record still there was not deleted
            return now.fields is not None
        if write.op == "scope":  # still on the wrong side of the scope: not written
            return now.fields is not None and now.in_scope != write.in_scope
        if now.fields is None or write.fields is None:
            return False
        prior = write.prior or self.view(write.side, kind, before.base)
        for name, value in write.fields.items():
            seen = now.fields.get(name)
            if seen != value and seen == prior.get(name):
                base[name] = before.base.get(name)
        return False


def forget_versions(link: Link, sides: Iterable[Side]) -> Link:
    """Versions we cannot vouch for: the next plan compares values instead."""
    for side in sides:
        link = link.with_side(side, link.side_id(side), None)
    return replace(link, state="linked", pending=None)
