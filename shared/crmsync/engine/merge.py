"""Field-level three-way merge against the base snapshot (SYN-2, BEY-2)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.settings import Side


@dataclass(frozen=True, slots=True)
class Merge:
    merged: dict[str, Any]
    from_crm: frozenset[str]
    from_provider: frozenset[str]
    conflicts: tuple[str, ...]
    held: bool  # a manual conflict: nothing may be written


def winner(
    policy: str, crm_modified: datetime | None, provider_modified: datetime | None
) -> Side | None:
    """Which side wins a field both changed; None means the user decides (manual)."""
    if policy == "crm_wins":
        return "crm"
    if policy == "provider_wins":
        return "provider"
    if policy == "latest_wins":
        if crm_modified is None or provider_modified is None:
            return "provider" if crm_modified is None else "crm"
        return "crm" if crm_modified > provider_modified else "provider"
    return None


def merge(
    base: Mapping[str, Any],
    crm: Mapping[str, Any],
    provider: Mapping[str, Any],
    policy: str,
    crm_modified: datetime | None = None,
    provider_modified: datetime | None = None,
    picks: Mapping[str, Side] | None = None,
) -> Merge:
    """Apply both sides' changed fields onto the base; same-field clashes go to the side
    the user picked for that field in the queue (`picks`), else to the policy."""
    merged = dict(base)
    merged.update(crm)
    from_crm = set(crm)
    from_provider: set[str] = set()
    conflicts: list[str] = []
    for name, value in provider.items():
        if name in crm and crm[name] != value:
            conflicts.append(name)
            continue
        merged[name] = value
        from_crm.discard(name)
        from_provider.add(name)
    side = winner(policy, crm_modified, provider_modified) if conflicts else "crm"
    held = False
    for name in conflicts:
        chosen = picks.get(name, side) if picks else side
        if chosen is None:
            held = True
        elif chosen == "provider":
            merged[name] = provider[name]
            from_crm.discard(name)
            from_provider.add(name)
    return Merge(merged, frozenset(from_crm), frozenset(from_provider), tuple(conflicts), held)
