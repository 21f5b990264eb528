"""The planner: records seen on both sides, links and settings in; decisions out.

`reconcile` is a pure function. It reads only what it is given (no clock, no I/O), and
its work is proportional to the records that changed: links are looked up by id.

It builds no reference cycles, so the cyclic garbage collector is paused while it runs:
with a hundred thousand changes in memory, collector passes over the growing heap cost
more than the planning itself. Reference counting still frees everything as usual.

Where each rule is decided (each in one small function named after it or carrying its
requirement ID in its docstring):
- linked.py: the decision table of a linked pair with news (SYN-4 echoes and unfinished
  writes, SYN-5, detached links, SET-4, deleted on both sides);
- update.py: edits on one side or both (SYN-2 merge and policy, SYN-3, SYN-8, SET-5);
- activities.py: CAL-6 leader and members, CAL-7 declined;
- deletes.py: one side gone (SYN-7 edit beats delete, SET-5, CON-6, CAL-4);
- unlinked.py: records with no link, admitted (admit.py) and matched (matching.py:
  CON-3, CAL-2, TSK-2); creates.py: their twins created (CON-4, CON-5, CON-8, SET-5);
- mass_delete.py: the mass-delete guard (SYN-6);
- permissions.py: whether a kind syncs, its direction and the permission matrix
  (SET-1, SET-3), the exception list (SET-4).
What they share: pair.py (one pair of records, and the builders of its decisions),
planning.py (the kind, context and settings every rule reads), deltas.py (each side's
edits against its view of the base).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from crmsync.engine.linked import decide_linked, news
from crmsync.engine.mass_delete import guard_mass_delete
from crmsync.engine.pair import OTHER
from crmsync.engine.permissions import enabled
from crmsync.engine.plan import Decision, Plan
from crmsync.engine.planning import Planning
from crmsync.engine.records import Context, Link, SideRecord
from crmsync.engine.unlinked import decide_unlinked
from crmsync.model import Kind

__all__ = ["OTHER", "LinkIndex", "Links", "reconcile"]


class LinkIndex(Protocol):
    def by_crm(self, crm_id: str) -> Link | None: ...
    def by_provider(self, provider_id: str) -> Link | None: ...


@dataclass
class Links:
    """A LinkIndex over links already in memory."""

    crm: dict[str, Link] = field(default_factory=dict)
    provider: dict[str, Link] = field(default_factory=dict)

    @classmethod
    def of(cls, links: Iterable[Link]) -> Links:
        index = cls()
        for link in links:
            if link.crm_id:
                index.crm[link.crm_id] = link
            if link.provider_id:
                index.provider[link.provider_id] = link
        return index

    def by_crm(self, crm_id: str) -> Link | None:
        return self.crm.get(crm_id)

    def by_provider(self, provider_id: str) -> Link | None:
        return self.provider.get(provider_id)


@contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_collector_paused()
def reconcile(
    kind: Kind,
    crm_changes: Iterable[SideRecord],
    provider_changes: Iterable[SideRecord],
    links: LinkIndex,
    ctx: Context,
) -> Plan:
    """Decide, for every record that changed on either side, what must happen."""
    planning = Planning.of(kind, ctx)
    if not enabled(planning):
        return Plan(kind, ())
    pairs: dict[str, list[Any]] = {}  # link key -> [link, CRM record, provider record]
    lone_crm: list[SideRecord] = []
    lone_provider: list[SideRecord] = []
    for record in crm_changes:
        link = links.by_crm(record.id)
        if link is None:
            lone_crm.append(record)
        else:
            pairs.setdefault(link.key, [link, None, None])[1] = record
    for record in provider_changes:
        link = links.by_provider(record.id)
        if link is None:
            lone_provider.append(record)
        else:
            pairs.setdefault(link.key, [link, None, None])[2] = record
    decisions: list[Decision] = []
    for link, crm, provider in pairs.values():
        pair = news(link, crm, provider)
        if pair is not None:
            decisions.append(decide_linked(planning, pair))
    decisions.extend(decide_unlinked(planning, lone_crm, lone_provider))
    return Plan(kind, tuple(guard_mass_delete(planning, decisions)))
