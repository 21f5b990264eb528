"""A linked pair edited on one side or both: merge the edits, write each side only what
it lacks, and agree on a new base.

The steps, each its own rule: the field-level merge and its conflict policy (SYN-2);
the calendar rules that replace an update (CAL-6, CAL-7, activities.py); what each side
is sent (SYN-3, SYN-8) and whether settings allow it (SET-3); confirmation before a
modification is applied (SET-5); and the new base the link keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.engine.activities import calendar_rule
from crmsync.engine.deltas import diff, provider_now, view
from crmsync.engine.merge import Merge, merge
from crmsync.engine.pair import DIRECTION, Pair, decision, hold
from crmsync.engine.permissions import invites, may
from crmsync.engine.plan import Decision, Outcome, Write
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link, SideRecord
from crmsync.settings import Side

_CHOSEN_POLICY = {"crm": "crm_wins", "provider": "provider_wins"}


@dataclass(slots=True)
class Update:
    """One update worked out: each side's edits, their merge, what each side should end
    up holding (`*_target`, canonical), what it holds now and the patch between them
    (in its own view), and whether settings allow writing that patch."""

    crm_delta: dict[str, Any]
    provider_delta: dict[str, Any]
    merged: Merge
    crm_target: dict[str, Any]
    provider_target: dict[str, Any]
    crm_now: Mapping[str, Any]
    provider_now: Mapping[str, Any]
    crm_patch: dict[str, Any]
    provider_patch: dict[str, Any]
    crm_ok: bool
    provider_ok: bool


def update(
    planning: Planning,
    pair: Pair,
    crm_delta: dict[str, Any],
    provider_delta: dict[str, Any],
    outcome: Outcome,
    confirmed: bool = False,
) -> Decision:
    """Both sides' edits merged into one decision for a linked (or just matched) pair."""
    link = pair.linked
    choice = planning.ctx.resolutions.get(link.key)
    picks = planning.ctx.picks.get(link.key)
    c, p = pair.crm, pair.provider
    m = merge(  # SYN-2: edits to different fields merge; for the same field the policy decides
        link.base,
        crm_delta,
        provider_delta,
        conflict_policy(planning, choice),
        c.modified if c else None,
        provider_edited(link, p),
        picks,
    )
    if m.held:
        return manual_conflict(planning, pair, m)
    if planning.kind == "activity":
        replaced = calendar_rule(planning, pair, m)
        if replaced is not None:
            return replaced
    u = patches(planning, pair, crm_delta, provider_delta, m)
    if not confirmed and picks is None:  # a user who picked field by field has confirmed
        asked = confirm_modified(planning, pair, u, choice, outcome)
        if asked is not None:
            return asked
    return applied(planning, pair, u, outcome)


def conflict_policy(planning: Planning, choice: Side | None) -> str:
    """SYN-2: the tenant's or user's conflict policy, unless the user already picked a
    side for this record in the queue (a pick per field goes to `merge` instead)."""
    policy: str = _CHOSEN_POLICY.get(choice or "", planning.settings["conflict_policy"])
    return policy


def manual_conflict(planning: Planning, pair: Pair, m: Merge) -> Decision:
    """SYN-2 `manual`: the conflict waits in the queue; neither side is overwritten."""
    summary = f"changed on both sides: {', '.join(m.conflicts)}"
    return hold(planning, pair, pair.key, "conflict", None, m.conflicts, summary)


def patches(
    planning: Planning,
    pair: Pair,
    crm_delta: dict[str, Any],
    provider_delta: dict[str, Any],
    m: Merge,
) -> Update:
    """SYN-3, SYN-8: each side is sent only the fields whose view of the merged record
    differs from what it holds: the CRM sees text cut to its limits, so a cut value it
    still holds is not rewritten, and the provider keeps the full text."""
    base, merged = pair.linked.base, m.merged
    crm_target = {**base, **crm_delta, **{n: merged[n] for n in m.from_provider}}
    provider_target = {**base, **provider_delta, **{n: merged[n] for n in m.from_crm}}
    c, p = pair.crm, pair.provider
    crm_now = c.fields if c and c.fields else view(planning, "crm", base)
    prov_now = provider_now(planning, p) if p else view(planning, "provider", base)
    crm_patch = diff(view(planning, "crm", crm_target), crm_now)
    prov_patch = diff(view(planning, "provider", provider_target), prov_now)
    return Update(
        crm_delta,
        provider_delta,
        m,
        crm_target,
        provider_target,
        crm_now,
        prov_now,
        crm_patch,
        prov_patch,
        crm_ok=not crm_patch or may(planning, merged, "crm", "update"),
        provider_ok=not prov_patch or may(planning, merged, "provider", "update"),
    )


def confirm_modified(
    planning: Planning, pair: Pair, u: Update, choice: Side | None, outcome: Outcome
) -> Decision | None:
    """SET-5: with confirmation of modifications on, a modification waits in the queue
    until the user accepts it; a rejected one gives way to the other side's state."""
    if not planning.settings["confirm"]["modified"]:
        return None
    if not ((u.crm_patch and u.crm_ok) or (u.provider_patch and u.provider_ok)):
        return None
    source: Side | None = None  # the side whose change waits; None when both changed
    if u.crm_patch and not u.provider_patch:
        source = "provider"
    elif u.provider_patch and not u.crm_patch:
        source = "crm"
    if choice is None:
        changed = sorted(set(u.crm_patch) | set(u.provider_patch))
        summary = "waiting for confirmation of a modification"
        return hold(planning, pair, pair.key, "confirm_modified", source, changed, summary)
    if source is not None and choice != source:
        crm_delta = {} if source == "crm" else u.crm_delta
        provider_delta = {} if source == "provider" else u.provider_delta
        return update(planning, pair, crm_delta, provider_delta, outcome, confirmed=True)
    return None


def writes(planning: Planning, pair: Pair, u: Update) -> tuple[Write, ...]:
    """The updates settings allow, each with the version it must match (SYN-4) and the
    values it replaces; the provider's notifies attendees only if the user asked (SYN-8)."""
    out: list[Write] = []
    s = planning.settings
    if u.crm_patch and u.crm_ok:
        out.append(
            Write(
                "crm",
                "update",
                planning.kind,
                pair.crm_id,
                u.crm_patch,
                pair.version("crm"),
                shared_address=s["update_shared_address"],
                prior={n: u.crm_now.get(n) for n in u.crm_patch},
            )
        )
    if u.provider_patch and u.provider_ok:
        out.append(
            Write(
                "provider",
                "update",
                planning.kind,
                pair.provider_id,
                u.provider_patch,
                pair.version("provider"),
                notify=invites(planning, u.merged.merged),
                prior={n: u.provider_now.get(n) for n in u.provider_patch},
            )
        )
    return tuple(out)


def agreed_base(planning: Planning, base: Mapping[str, Any], u: Update) -> dict[str, Any]:
    """The link's new base: what both sides now hold. A mapped field one side was not
    allowed to take (SET-3) keeps its old base value, so it still reads as a change;
    fields only the CRM holds follow the CRM."""
    crm_end = u.crm_target if u.crm_ok else {**base, **u.crm_delta}
    prov_end = u.provider_target if u.provider_ok else {**base, **u.provider_delta}
    mapped = planning.mapped
    return {  # a custom field new to this link's base joins it (SYN-1)
        n: crm_end[n] if n not in mapped or crm_end[n] == prov_end.get(n) else base.get(n)
        for n in crm_end
    }


def provider_edited(link: Link, provider: SideRecord | None) -> datetime | None:
    """SYN-10: when the provider's record was last edited, as far as its modification
    time tells. A provider may move that time when the user only snoozes or dismisses a
    reminder (some providers do); when the reminder changed since the link last saw it, the
    time is no evidence of a later edit, and under `latest_wins` it wins nothing."""
    if provider is None or provider.reminder != link.reminder:
        return None
    return provider.modified


def applied(planning: Planning, pair: Pair, u: Update, outcome: Outcome) -> Decision:
    """The update's decision: its writes, the link on its new base, and what changed."""
    link = pair.linked
    base = link.base
    seen = pair.provider.reminder if pair.provider is not None else link.reminder
    new_link = link.agreed(
        agreed_base(planning, base, u), pair.version("crm"), pair.version("provider"), seen
    )
    blocked = [
        side
        for side, patch, ok in (
            ("CRM", u.crm_patch, u.crm_ok),
            ("provider", u.provider_patch, u.provider_ok),
        )
        if patch and not ok
    ]
    reason = f"settings do not allow updating on the {' and '.join(blocked)}" if blocked else ""
    changed = tuple(sorted(set(u.crm_patch) | set(u.provider_patch)))
    todo = writes(planning, pair, u)
    if not todo:
        outcome = "skip" if blocked else "none"
        return decision(
            planning, pair, outcome=outcome, link=new_link, reason=reason, changed=changed
        )
    sides = {w.side for w in todo}
    direction = "both" if len(sides) == 2 else DIRECTION[next(iter(sides))]
    return decision(
        planning,
        pair,
        outcome=outcome,
        direction=direction,
        writes=todo,
        link=new_link,
        reason=reason,
        changed=changed,
        summary=before_after(base, u),
    )


def before_after(base: Mapping[str, Any], u: Update) -> dict[str, tuple[Any, Any]]:
    """HIS-1: each written field as the side it was written to held it before the write
    and holds it after; the side that kept its value is not what changed. A field both
    sides took (each from its own old value) reads from the base they last agreed on."""
    crm_held = {**base, **u.crm_delta}
    provider_held = {**base, **u.provider_delta}
    to_crm = set(u.crm_patch) if u.crm_ok else set()
    to_provider = set(u.provider_patch) if u.provider_ok else set()
    out: dict[str, tuple[Any, Any]] = {}
    for name in sorted(to_crm | to_provider):
        if name in to_crm and name in to_provider:
            out[name] = (base.get(name), u.crm_target.get(name))
        elif name in to_crm:
            out[name] = (crm_held.get(name), u.crm_target.get(name))
        else:
            out[name] = (provider_held.get(name), u.provider_target.get(name))
    return {name: values for name, values in out.items() if values[0] != values[1]}
