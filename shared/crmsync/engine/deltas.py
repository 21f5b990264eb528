"""What each side changed since the agreed base, read through that side's view of it.

Only mapped fields move (SYN-1). A side changed a field only where its value differs
from its own projection of the base (lens.py), so a CRM value cut to its limit (SYN-3),
the completion marker (CAL-8) or the related-info block (CAL-5) never reads as an edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync.engine.lens import BLANK, crm_view, lift_provider, provider_view
from crmsync.engine.planning import Planning
from crmsync.engine.records import SideRecord
from crmsync.settings import Side


def diff(target: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `target` whose values `current` does not hold."""
    return {name: value for name, value in target.items() if current.get(name) != value}


def view(planning: Planning, side: Side, fields: Mapping[str, Any]) -> Mapping[str, Any]:
    """How `side` holds these canonical values."""
    if side == "crm":
        return crm_view(planning.kind, fields, planning.ctx)
    return provider_view(planning.kind, fields, planning.ctx)


def provider_now(planning: Planning, record: SideRecord) -> dict[str, Any]:
    """SYN-1: the mapped fields of a provider record, as the provider holds them."""
    assert record.fields is not None
    return {n: record.fields[n] for n in planning.mapped if n in record.fields}


def crm_delta(planning: Planning, base: Mapping[str, Any], record: SideRecord) -> dict[str, Any]:
    """SYN-3: the CRM's edits, against its own view of the base (text cut to its limits)."""
    assert record.fields is not None
    return diff(record.fields, view(planning, "crm", base))


def provider_delta(
    planning: Planning, base: Mapping[str, Any], record: SideRecord
) -> dict[str, Any]:
    """The provider's edits in canonical values; nothing when its view is the base's."""
    now = provider_now(planning, record)
    if now == view(planning, "provider", base):
        return {}
    return diff(lift_provider(planning.kind, now, base, planning.ctx), base)


def side_delta(
    planning: Planning, side: Side, base: Mapping[str, Any], record: SideRecord
) -> dict[str, Any]:
    if side == "crm":
        return crm_delta(planning, base, record)
    return provider_delta(planning, base, record)


def new_defaults(planning: Planning) -> dict[str, Any]:
    """The canonical values of a record nobody has filled in; the user leads it."""
    defaults = dict(BLANK[planning.kind])
    if planning.kind == "activity":
        defaults["leader"] = planning.ctx.user
    return defaults


def lifted(planning: Planning, record: SideRecord) -> dict[str, Any]:
    """Canonical values of a provider record that has no link (so no base) yet."""
    base = new_defaults(planning)
    base.update(lift_provider(planning.kind, provider_now(planning, record), base, planning.ctx))
    return base
