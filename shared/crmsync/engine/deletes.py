"""A linked pair whose record is gone on one side: deleted there, or out of the sync
scope (out of the contact sync group, or the provider label taken off).

In order: an edit on the other side beats the delete (SYN-7); the user may want to
confirm deletes first (SET-5); otherwise the delete propagates as the kind's rule says
(CON-6 for contacts, CAL-4 for activities and to-dos), if settings allow it (SET-3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from crmsync.engine.creates import create_write
from crmsync.engine.deltas import diff, provider_now, side_delta, view
from crmsync.engine.pair import DIRECTION, OTHER, Pair, decision, detach, hold
from crmsync.engine.permissions import may
from crmsync.engine.plan import Decision, Write
from crmsync.engine.planning import Planning
from crmsync.engine.records import SideRecord
from crmsync.settings import Side


def one_side_gone(planning: Planning, pair: Pair, gone_side: Side) -> Decision:
    """The decision for a pair gone on `gone_side` and still there on the other: SYN-7,
    then SET-5, then the kind's delete rule where the permission matrix allows (SET-3)."""
    target = edit_beats_delete(planning, pair, gone_side)
    if target is not None:
        return restore(planning, pair, gone_side, target)
    asked = confirm_deleted(planning, pair, gone_side)
    if asked is not None:
        return asked
    other = OTHER[gone_side]
    write, reason = propagate_delete(planning, pair, gone_side)
    if write is None:
        return detach(planning, pair, reason)
    if write.op == "delete" and not may(planning, pair.linked.base, other, "delete"):
        return detach(planning, pair, f"settings do not allow deleting on the {other}")
    if write.op != "delete" and not may(planning, pair.linked.base, other, "update"):
        return detach(
            planning, pair, f"settings do not allow taking it out of the sync on the {other}"
        )
    return decision(
        planning,
        pair,
        outcome="delete" if write.op == "delete" else "unlink",
        direction=DIRECTION[other],
        writes=(write,),
        dropped=pair.linked,
        reason=reason,
    )


def edit_beats_delete(planning: Planning, pair: Pair, gone_side: Side) -> dict[str, Any] | None:
    """SYN-7: a record edited on one side and deleted on the other is restored on the
    deleting side, as edited; so it is when the user picked the surviving side. Returns
    the values to restore, or None when the delete stands."""
    base, other = pair.linked.base, OTHER[gone_side]
    survivor = pair.record(other)
    delta = side_delta(planning, other, base, survivor) if survivor is not None else {}
    if delta or planning.ctx.resolutions.get(pair.key) == other:
        return {**base, **delta}
    return None


def confirm_deleted(planning: Planning, pair: Pair, gone_side: Side) -> Decision | None:
    """SET-5: with confirmation of deletes on, a delete waits until the user settles it."""
    if not planning.settings["confirm"]["deleted"]:
        return None
    if planning.ctx.resolutions.get(pair.key) is not None:
        return None
    summary = f"deleted on the {gone_side}: waiting for confirmation"
    return hold(planning, pair, pair.key, "confirm_deleted", gone_side, summary=summary)


def propagate_delete(planning: Planning, pair: Pair, gone_side: Side) -> tuple[Write | None, str]:
    """The write a delete on `gone_side` makes on the other side (None: only detach),
    and the reason: CON-6 for contacts, CAL-4 and CAL-12 for activities and to-dos."""
    if planning.kind == "contact":
        return contact_gone(planning, pair, gone_side)
    return item_gone(planning, pair, gone_side)


def item_gone(planning: Planning, pair: Pair, gone_side: Side) -> tuple[Write | None, str]:
    """CAL-4: an activity or to-do deleted on one side is deleted on the other; CAL-12:
    unless the delete policy of the side it would reach says to only unlink them (the
    survivor stays, and no longer syncs)."""
    other = OTHER[gone_side]
    if planning.settings.delete_policy(planning.kind, other) == "unlink":
        return None, f"deleted on the {gone_side}; kept on the {other}, unlinked, as settings say"
    target, version = pair.side_id(other), pair.version(other)
    return Write(other, "delete", planning.kind, target, version=version), (
        f"deleted on the {gone_side}"
    )


def contact_gone(planning: Planning, pair: Pair, gone_side: Side) -> tuple[Write | None, str]:
    """CON-6: a contact that left the CRM sync group is deleted on the provider; one
    whose label was removed leaves the CRM group; a contact deleted on either side is
    unlinked (the other side's copy leaves the sync scope) or deleted or ignored, as the
    `contact_delete` setting says."""
    other = OTHER[gone_side]
    target, version, kind = pair.side_id(other), pair.version(other), planning.kind
    delete = Write(other, "delete", kind, target, version=version)
    behaviour = planning.settings["contact_delete"]
    if behaviour == "ignore":
        return None, f"gone on the {gone_side}; deletes are ignored by settings"
    unscope = Write(other, "scope", kind, target, version=version, in_scope=False)
    gone = pair.record(gone_side)
    assert gone is not None
    if gone.fields is not None:  # left the sync scope rather than deleted
        if gone_side == "crm":
            return delete, "removed from the contact sync group"
        return unscope, "the sync label was removed"
    if behaviour == "delete":
        return delete, f"deleted on the {gone_side}"
    return unscope, f"deleted on the {gone_side}: unlinked"


def restore(planning: Planning, pair: Pair, gone_side: Side, target: dict[str, Any]) -> Decision:
    """SYN-7: the record is created again on the side that deleted it, with the edited
    values, if settings allow creating there (SET-3); else the pair is detached. A
    record that only left the sync scope there (out of the contact sync group, its label
    taken off) still exists: it is brought back into the scope instead of copied."""
    gone = pair.record(gone_side)
    if gone is not None and gone.fields is not None:
        return bring_back(planning, pair, gone_side, gone, target)
    if not may(planning, target, gone_side, "create"):
        return detach(
            planning,
            pair,
            f"edited on one side, deleted on the {gone_side}; "
            f"settings do not allow re-creating it there",
        )
    link, other = pair.linked, OTHER[gone_side]
    version = pair.version(other)
    key = f"{link.key}:restore:{version}"
    write = create_write(planning, gone_side, target, key, pair.side_id(other))
    new_link = replace(link.with_side(gone_side, None, None), base=target, state="linked")
    new_link = new_link.with_side(other, pair.side_id(other), version)
    return decision(
        planning,
        pair,
        outcome="restore",
        direction=DIRECTION[gone_side],
        writes=(write,),
        link=new_link,
        reason=restored_because(planning, pair, gone_side),
    )


def bring_back(
    planning: Planning, pair: Pair, gone_side: Side, gone: SideRecord, target: dict[str, Any]
) -> Decision:
    """SYN-7 for a record that left the sync scope: the fields it lacks are written and
    it is put back in the scope, under the same link, if settings allow updating there."""
    if not may(planning, target, gone_side, "update"):
        return detach(
            planning,
            pair,
            f"edited on one side, taken out of the sync on the {gone_side}; "
            f"settings do not allow bringing it back there",
        )
    now = side_now(planning, gone_side, gone)
    patch = diff(view(planning, gone_side, target), now)
    update = Write(
        gone_side,
        "update",
        planning.kind,
        gone.id,
        patch,
        gone.version,
        prior={n: now.get(n) for n in patch},
    )
    scope = Write(gone_side, "scope", planning.kind, gone.id, in_scope=True)
    link = pair.linked.agreed(
        target,
        pair.version("crm"),
        pair.version("provider"),
        pair.provider.reminder if pair.provider is not None else pair.linked.reminder,
    )
    return decision(
        planning,
        pair,
        outcome="restore",
        direction=DIRECTION[gone_side],
        writes=(update, scope) if patch else (scope,),
        link=link,
        reason=restored_because(planning, pair, gone_side),
        changed=tuple(sorted(patch)),
    )


def restored_because(planning: Planning, pair: Pair, gone_side: Side) -> str:
    other = OTHER[gone_side]
    if planning.ctx.resolutions.get(pair.key) == other:
        return f"gone on the {gone_side}: restored there, as the user chose"
    return f"edited on the {other}, deleted on the {gone_side}: the edit wins"


def side_now(planning: Planning, side: Side, record: SideRecord) -> Mapping[str, Any]:
    """What a record holds, in its side's own view (mapped fields only, at the provider)."""
    assert record.fields is not None
    return record.fields if side == "crm" else provider_now(planning, record)
