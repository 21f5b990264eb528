"""Reading one kind's changes: both change feeds, plus every record the plan must also
see (retries, settled queue items, e-mail twins, records gone from a re-listing).

The result is a `Changes` value; nothing here writes anything but the reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from crmsync.engine import SideRecord
from crmsync.engine.reconcile import Links
from crmsync.errors import CursorExpired, PermanentError
from crmsync.model import Kind
from crmsync.ports import RecordSide, Store
from crmsync.settings import Side

SIDES: tuple[Side, Side] = ("crm", "provider")
OTHER: dict[Side, Side] = {"crm": "provider", "provider": "crm"}
Sides = Mapping[Side, RecordSide]


@dataclass
class Changes:
    """What one kind's plan is made from: the records of each side by id, the cursors
    they were read from and the ones to save once they are applied (None: none to
    save), and whether a side was listed whole."""

    kind: Kind
    records: dict[Side, dict[str, SideRecord]]
    start: dict[Side, str | None]
    end: dict[Side, str | None]
    full: dict[Side, bool]

    @property
    def first_cycle(self) -> bool:
        """Neither side was read before: the first cycle's rules apply (CAL-3, CON-2)."""
        return self.start["crm"] is None and self.start["provider"] is None

    def size(self) -> int:
        return len(self.records["crm"]) + len(self.records["provider"])

    def add(self, side: Side, record: SideRecord) -> None:
        self.records[side][record.id] = record

    def has(self, side: Side, record_id: str) -> bool:
        return record_id in self.records[side]


def read_feed(
    source: RecordSide, side: Side, kind: Kind, cursor: str | None
) -> tuple[list[SideRecord], str, bool]:
    """All changes since the cursor, page by page; a whole listing when the cursor
    expired (RUN-4). Returns the records, the new cursor and whether it was a listing."""
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


def read_changes(store: Store, connection: str, sides: Sides, kind: Kind) -> Changes:
    """Both feeds of `kind` from the cursors the store holds."""
    start = {side: store.cursor(connection, side, kind) for side in SIDES}
    records: dict[Side, dict[str, SideRecord]] = {}
    end: dict[Side, str | None] = {}
    full: dict[Side, bool] = {}
    for side in SIDES:
        found, end[side], full[side] = read_feed(sides[side], side, kind, start[side])
        records[side] = {r.id: r for r in found}
    return Changes(kind, records, start, end, full)


def add_retries(changes: Changes, pending: set[tuple[Side, str]], sides: Sides) -> None:
    """Records whose write failed last time are planned again, changed or not."""
    for side, record_id in pending:
        if not changes.has(side, record_id):
            changes.add(side, sides[side].get(changes.kind, record_id))


@dataclass
class Settled:
    """What the user settled in the queue, by item id: a side for the whole record
    (`choices`), or for a manual conflict a side per conflicting field (`picks`)."""

    choices: dict[str, Side]
    picks: dict[str, dict[str, Side]]


def add_settled(changes: Changes, queue: list[dict[str, Any]], sides: Sides) -> Settled:
    """Queue items the user settled (SYN-2 manual, SET-5, SYN-6): their records are
    read again and re-planned with the side the user chose, or the sides they picked
    field by field (only once every field the item names is picked)."""
    settled = Settled({}, {})
    for item in queue:
        if item["kind"] != changes.kind:
            continue
        item_id, choice, picks = str(item["id"]), item.get("choice"), item.get("picks")
        if choice in SIDES:
            settled.choices[item_id] = choice
        elif _covers(picks, item.get("fields") or ()):
            settled.picks[item_id] = dict(picks)
        else:
            continue
        for side in SIDES:
            record_id = item.get(f"{side}_id")
            if isinstance(record_id, str) and record_id and not changes.has(side, record_id):
                changes.add(side, sides[side].get(changes.kind, record_id))
    return settled


def _covers(picks: Any, names: Iterable[str]) -> TypeGuard[Mapping[str, Side]]:
    """Picks that give each of `names` a side."""
    return (
        isinstance(picks, Mapping)
        and bool(picks)
        and all(picks.get(name) in SIDES for name in names)
        and all(side in SIDES for side in picks.values())
    )


def add_twins(changes: Changes, links: Links, store: Store, connection: str, sides: Sides) -> None:
    """CON-3: the twin by e-mail of a new record joins the plan even when it did not
    change or is outside the sync scope, so the two are linked, not duplicated.
    One lookup per side and cycle, for all new records together. A whole listing of
    the other side holds every candidate, unless that side lists only its scope (a
    contact folder): then the addresses it did not list are looked up."""
    for side in SIDES:
        other = OTHER[side]
        if changes.full[other] and sides[other].lists_everything(changes.kind):
            continue  # the listing holds every candidate
        emails = _new_emails(changes, side, links)
        if changes.full[other]:
            listed = _listed_emails(changes, other)
            emails = [email for email in emails if email not in listed]
        if not emails:
            continue
        found = [
            record
            for record in sides[other].find_by_email(changes.kind, emails)
            if not changes.has(other, record.id)
        ]
        for record in found:
            changes.add(other, record)
        ids = [record.id for record in found]
        crm_ids, provider_ids = (ids, []) if other == "crm" else ([], ids)
        for link in store.links_for(connection, changes.kind, crm_ids, provider_ids):
            if link.crm_id:
                links.crm[link.crm_id] = link
            if link.provider_id:
                links.provider[link.provider_id] = link


def _listed_emails(changes: Changes, side: Side) -> set[str]:
    return {
        email
        for record in changes.records[side].values()
        if record.fields
        for email in record.fields.get("emails") or ()
    }


def _new_emails(changes: Changes, side: Side, links: Links) -> list[str]:
    linked = links.crm if side == "crm" else links.provider
    return sorted(
        {
            email
            for record in changes.records[side].values()
            if record.fields and record.in_scope and record.id not in linked
            for email in record.fields.get("emails") or ()
        }
    )


def add_vanished(
    changes: Changes, links: Links, store: Store, connection: str, sides: Sides
) -> None:
    """After a whole re-listing (not the first cycle's), a linked record that was not
    listed is gone: it is read on its own, and its link joins the plan."""
    if changes.first_cycle:
        return
    for side in SIDES:
        if not changes.full[side]:
            continue
        for link in store.links(connection, changes.kind):
            record_id = link.side_id(side)
            if record_id and not changes.has(side, record_id):
                changes.add(side, sides[side].get(changes.kind, record_id))
                (links.crm if side == "crm" else links.provider)[record_id] = link
                other = link.side_id(OTHER[side])
                if other:
                    (links.provider if side == "crm" else links.crm)[other] = link
