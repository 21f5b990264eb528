"""What the user lets the sync do: the kind enabled and its direction (SET-1), the
permission matrix (SET-3), and the exception list (SET-4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.engine.planning import Planning
from crmsync.settings import Operation, Side, category


def enabled(planning: Planning) -> bool:
    """SET-1: the user syncs this kind at all; a kind turned off plans nothing."""
    return planning.settings.enabled(planning.kind)


def may(planning: Planning, fields: Mapping[str, Any], side: Side, op: Operation) -> bool:
    """SET-1 and SET-3: the kind's direction lets changes flow toward `side`, and the
    permission matrix lets `op` happen there for this record's category. Every write
    the planner makes is checked here, and only here."""
    key = (fields.get("type"), side, op)
    allowed = planning.answers.get(key)
    if allowed is None:
        s, kind = planning.settings, planning.kind
        allowed = s.flows_to(kind, side) and s.allows(category(kind, fields.get("type")), side, op)
        planning.answers[key] = allowed
    return allowed


def invites(planning: Planning, fields: Mapping[str, Any]) -> bool:
    """SYN-8: a provider write sends invitations and updates to attendees only when
    the user's setting asks for it (notify_attendees) or the CRM activity does."""
    return bool(planning.settings["notify_attendees"] or fields.get("invite"))


def excluded(planning: Planning, crm_id: str | None) -> bool:
    """SET-4: the user excluded this CRM record, for good, until a time still ahead,
    or again after a temporary inclusion ended."""
    if crm_id is None:
        return False
    return planning.settings.excluded(planning.kind, crm_id, planning.ctx.now)


def excluded_for_now(planning: Planning, crm_id: str | None) -> bool:
    """SET-4: a temporary exclusion, so the record is read again each cycle until it ends."""
    return crm_id is not None and planning.settings.exclusion_ends(planning.kind, crm_id)
