"""Calendar rules that replace an ordinary update of a linked activity: a declined
activity leaves the calendar (CAL-7), and a member's edit of the leader's activity
becomes the member's own copy (CAL-6). Which unlinked activities sync at all (CAL-1,
CAL-3, CAL-10, and CAL-7 before the first sync) is admit.py's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.engine.deltas import view
from crmsync.engine.merge import Merge
from crmsync.engine.pair import Pair, decision
from crmsync.engine.plan import Decision, Write
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link


def calendar_rule(planning: Planning, pair: Pair, m: Merge) -> Decision | None:
    """The decision CAL-7 or CAL-6 makes about a merged activity, else None."""
    base = pair.linked.base
    if declined_now(planning, base, m.merged):
        return remove_declined(planning, pair, m.merged)
    if member_edited(planning, base, m):
        return own_copy(planning, pair, m.merged)
    return None


def declined_now(planning: Planning, base: Mapping[str, Any], merged: Mapping[str, Any]) -> bool:
    """CAL-7 with `declined` set to `skip_then_remove`: declined after the first sync."""
    return bool(
        planning.settings["declined"] == "skip_then_remove"
        and merged["status"] == "declined"
        and base["status"] != "declined"
    )


def remove_declined(planning: Planning, pair: Pair, merged: Mapping[str, Any]) -> Decision:
    """CAL-7: declined after the first sync leaves the user's calendar on both sides: the
    provider event is deleted; the CRM activity too if the user leads it, else the user
    only leaves its members."""
    user, kind = planning.ctx.user, planning.kind
    on_provider = Write(
        "provider", "delete", kind, pair.provider_id, version=pair.version("provider")
    )
    if merged["leader"] in (None, user):
        on_crm = Write("crm", "delete", kind, pair.crm_id, version=pair.version("crm"))
    else:
        members = tuple(m for m in merged["members"] if m != user)
        on_crm = Write(
            "crm", "update", kind, pair.crm_id, {"members": members}, version=pair.version("crm")
        )
    return decision(
        planning,
        pair,
        outcome="delete",
        direction="both",
        writes=(on_provider, on_crm),
        dropped=pair.linked,
        reason="declined: removed from the user's calendar",
    )


def member_edited(planning: Planning, base: Mapping[str, Any], m: Merge) -> bool:
    """CAL-6: the provider changed an activity someone else leads."""
    return bool(m.from_provider) and base["leader"] not in (None, planning.ctx.user)


def own_copy(planning: Planning, pair: Pair, merged: Mapping[str, Any]) -> Decision:
    """CAL-6: the leader's changes win over a member's, so a member who edits the
    leader's activity gets a CRM copy of their own, led by them, that the provider event
    now follows; the member leaves the leader's activity."""
    link, p, user = pair.linked, pair.provider, planning.ctx.user
    assert p is not None
    copy = {**merged, "leader": user, "members": ()}
    key = f"{link.key}:copy:{p.version}"
    members = tuple(m for m in link.base["members"] if m != user)
    kind = planning.kind
    writes = (
        Write("crm", "create", kind, fields=view(planning, "crm", copy), key=key, ref=p.id),
        Write("crm", "update", kind, link.crm_id, {"members": members}, pair.version("crm")),
    )
    new_link = Link(
        key=key,
        kind=kind,
        crm_id=None,
        provider_id=link.provider_id,
        provider_version=p.version,
        base=copy,
        reminder=p.reminder,
    )
    return decision(
        planning,
        pair,
        outcome="create",
        direction="to_crm",
        writes=writes,
        link=new_link,
        dropped=link,
        reason="a member edited the leader's activity: own copy",
    )
