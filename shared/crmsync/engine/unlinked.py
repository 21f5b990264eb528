"""Records with no link: sort them, match them across sides, and decide for each match
and each record left alone.

First cycle, reconnect or lost cursor (SYN-9): pairs are found by matching.py's
identity rules (CON-3, CAL-2, TSK-2) and linked; what has no twin gets one (creates.py).
Contacts outside the sync scope (not in the group, no label) are offered as match
targets only, so a group member whose twin exists unlabelled is linked and labelled
rather than copied (CON-2, CON-3); they never create anything themselves.
"""

from __future__ import annotations

from dataclasses import replace

from crmsync.engine.admit import new_record_reason
from crmsync.engine.creates import create_twin
from crmsync.engine.deltas import lifted, provider_now
from crmsync.engine.lens import lift_provider
from crmsync.engine.matching import NEAR, Candidate, match, rule
from crmsync.engine.pair import Pair, decision
from crmsync.engine.permissions import excluded, excluded_for_now, may
from crmsync.engine.plan import Decision, Write
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link, SideRecord
from crmsync.engine.update import update
from crmsync.settings import Side


def decide_unlinked(
    planning: Planning, crm: list[SideRecord], provider: list[SideRecord]
) -> list[Decision]:
    """Decisions for unlinked records: sorted out, then matched, created or reported."""
    decisions: list[Decision] = []
    inside: dict[Side, list[Candidate]] = {"crm": [], "provider": []}
    outside: dict[Side, list[Candidate]] = {"crm": [], "provider": []}
    sides: tuple[tuple[Side, list[SideRecord]], ...] = (("crm", crm), ("provider", provider))
    for side, records in sides:
        for record in records:
            taken = take_in(planning, side, record)
            if isinstance(taken, Candidate):
                (inside if record.in_scope else outside)[side].append(taken)
            elif taken is not None:
                decisions.append(taken)
    found = match(
        planning.kind, inside["crm"] + outside["crm"], inside["provider"] + outside["provider"]
    )
    for c, p in found.pairs:
        if c.record.in_scope or p.record.in_scope:
            decisions.append(matched(planning, c, p))
    decisions.extend(create_twin(planning, "crm", c) for c in found.crm_alone if c.record.in_scope)
    decisions.extend(
        create_twin(planning, "provider", p) for p in found.provider_alone if p.record.in_scope
    )
    for c, p in found.near_duplicates:
        if c.record.in_scope or p.record.in_scope:
            decisions.append(near_duplicate(planning, c, p))
    return decisions


def take_in(planning: Planning, side: Side, record: SideRecord) -> Decision | Candidate | None:
    """One unlinked record sorted out: unreadable ones fail alone (SYN-5), gone ones
    need nothing, contacts out of scope are match targets only, records admit.py or the
    exception list keep out are skipped; the rest are candidates, in canonical values."""
    if record.error:
        pair = Pair.lone(side, record)
        return decision(planning, pair, outcome="fail", reason=record.error, retry=True)
    if record.fields is None:
        return None
    fields = record.fields if side == "crm" else lifted(planning, record)
    cand = Candidate(record, fields)
    if not record.in_scope:
        return cand if planning.kind == "contact" else None
    skipped = admit(planning, side, cand)
    return cand if skipped is None else skipped


def admit(planning: Planning, side: Side, cand: Candidate) -> Decision | None:
    """A skip when an unlinked record stays out of sync (CAL-1, CAL-3, CAL-6, CAL-7,
    CAL-10, TSK-2, TSK-3: admit.py; SET-4: the exception list), else None."""
    record = cand.record
    reason = new_record_reason(planning.kind, side, cand.fields, record.modified, planning.ctx)
    retry = False
    if reason is None and side == "crm" and excluded(planning, record.id):
        reason = "excluded from sync by the user"
        retry = excluded_for_now(planning, record.id)
    if reason is None:
        return None
    return decision(planning, Pair.lone(side, record), outcome="skip", reason=reason, retry=retry)


def matched(planning: Planning, c: Candidate, p: Candidate) -> Decision:
    """CON-3, CAL-2, TSK-2: twins found by matching are linked, never duplicated. The
    CRM's values are the base and every field they disagree on counts as edited on both
    sides, so the conflict policy settles it (SYN-2); a twin outside the sync scope is
    brought in (labelled, or added to the sync group). The reason names the rule that
    paired them (BEY-3)."""
    kind, crm_fields = planning.kind, dict(c.fields)
    seen = lift_provider(kind, provider_now(planning, p.record), crm_fields, planning.ctx)
    differing = [n for n, value in seen.items() if crm_fields.get(n) != value]
    link = Link(
        key=f"{kind}-crm-{c.record.id}",
        kind=kind,
        crm_id=c.record.id,
        provider_id=p.record.id,
        base=crm_fields,
        reminder=p.record.reminder,  # SYN-10: its time counts, as for any linked record
    )
    pair = Pair(link, c.record, p.record)
    crm_delta = {n: crm_fields.get(n) for n in differing}
    provider_delta = {n: seen[n] for n in differing}
    linked = update(planning, pair, crm_delta, provider_delta, "link")
    if linked.hold is not None:
        return linked
    both: tuple[tuple[Side, SideRecord], ...] = (("crm", c.record), ("provider", p.record))
    scope = tuple(
        Write(side, "scope", kind, record.id, in_scope=True)
        for side, record in both
        if not record.in_scope and may(planning, crm_fields, side, "update")
    )
    reason = "; ".join(r for r in (f"matched by {rule(kind, c, p)}", linked.reason) if r)
    return replace(linked, outcome="link", writes=linked.writes + scope, reason=reason)


def near_duplicate(planning: Planning, c: Candidate, p: Candidate) -> Decision:
    """CON-3: contacts with the same name and phone but a different e-mail, and CAL-2:
    activities with the same subject on the same day at another time, are reported,
    not merged (each is created on the other side as the rules say)."""
    return decision(
        planning, Pair(None, c.record, p.record), outcome="skip", reason=NEAR[planning.kind]
    )
