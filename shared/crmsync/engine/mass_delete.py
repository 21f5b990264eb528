"""The mass-delete guard (SYN-6): a cycle that would delete too many of one kind's
linked records (because one side suddenly lists nothing, say) holds those deletes for
the user to confirm instead of applying them."""

from __future__ import annotations

from dataclasses import replace

from crmsync.engine.deltas import view
from crmsync.engine.pair import OTHER, shown_fields
from crmsync.engine.plan import Decision, Hold, Write
from crmsync.engine.planning import Planning
from crmsync.settings import Settings


def too_many_deletes(settings: Settings, deletes: int, linked: int) -> bool:
    """SYN-6: at least `mass_delete_min` deletes and more than `mass_delete_ratio` of
    the kind's linked records."""
    return bool(
        deletes >= settings["mass_delete_min"] and deletes > settings["mass_delete_ratio"] * linked
    )


def could_hold(settings: Settings, changes: int) -> bool:
    """Whether a cycle with this many changed records could reach the threshold at all
    (were each a delete, against no links); only then is it worth counting the kind's
    linked records, a read per 1,000."""
    return too_many_deletes(settings, changes, 0)


def guard_mass_delete(planning: Planning, decisions: list[Decision]) -> list[Decision]:
    """SYN-6: past the threshold, every delete the user has not already settled waits."""
    resolutions = planning.ctx.resolutions
    deleting = [
        i
        for i, d in enumerate(decisions)
        if d.hold is None
        and any(takes_away(w) for w in d.writes)
        and resolutions.get(hold_key(d)) is None
    ]
    linked = planning.ctx.linked_count
    if not too_many_deletes(planning.settings, len(deleting), linked):
        return decisions
    note = (
        f"{len(deleting)} deletes of {linked} linked {planning.kind} "
        "records in one cycle: waiting for confirmation"
    )
    out = list(decisions)
    for i in deleting:
        out[i] = _held(planning, decisions[i], note)
    return out


def takes_away(write: Write) -> bool:
    """A write that removes a record from what the user sees synced: a delete, or taking
    a contact out of the sync scope (unlinked from its CRM sync group or label, CON-6)."""
    return write.op == "delete" or (write.op == "scope" and not write.in_scope)


def _held(planning: Planning, decision: Decision, note: str) -> Decision:
    """The delete undone into a hold: no writes, the link kept and marked in conflict.
    The item names the side the records went from (`source`: the user confirms that
    side's state, or restores the other's) and shows what the other side still holds."""
    link = decision.dropped or decision.link
    survivor = next(w.side for w in decision.writes if takes_away(w))
    values = view(planning, survivor, link.base) if link is not None else {}
    shown = {n: values[n] for n in shown_fields(planning, values)}
    item = Hold(
        id=hold_key(decision),
        kind=decision.kind,
        reason="mass_delete",
        source=OTHER[survivor],
        crm_id=decision.crm_id,
        provider_id=decision.provider_id,
        crm_values=shown if survivor == "crm" else {},
        provider_values=shown if survivor == "provider" else {},
        summary=note,
    )
    return replace(
        decision,
        outcome="hold",
        writes=(),
        hold=item,
        dropped=None,
        link=replace(link, state="conflict") if link else None,
        direction="none",
        reason=note,
    )


def hold_key(decision: Decision) -> str:
    """The queue id of a decision's hold: its link's key, else the pair's ids."""
    link = decision.dropped or decision.link
    return link.key if link else f"{decision.kind}-{decision.crm_id}-{decision.provider_id}"
