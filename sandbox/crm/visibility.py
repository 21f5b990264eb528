"""Who may see a record (AUTH-5): the same rules as crmsync's in-memory CRM.

Contacts and leads are seen by every user of the tenant; an activity by its owner, its
leader and its members; a to-do by its owner only. The rules read the fields as the
CRM holds them, so a record with bad data is still shown to the right users.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EVERYONE: frozenset[str] | None = None


def viewers(kind: str, raw: Mapping[str, Any], owner: str | None) -> frozenset[str] | None:
    """The users who may see a record in this state; None means every user."""
    if kind == "activity":
        members = raw.get("members")
        names = [m for m in members if isinstance(m, str)] if isinstance(members, list) else []
        leader = raw.get("leader")
        named = [owner, leader if isinstance(leader, str) else None, *names]
        return frozenset(n for n in named if n)
    if kind == "todo":
        return frozenset([owner] if owner else [])
    return EVERYONE


def may_see(kind: str, raw: Mapping[str, Any], owner: str | None, user: str) -> bool:
    allowed = viewers(kind, raw, owner)
    return allowed is None or user in allowed
