"""Changing a connection's settings, and what a change does to its stored sync state.

Settings are plain values (`crmsync.settings`); some changes also need the stored state
of the connection to follow, or are not allowed once it exists:

- the contact sync group cannot change once contacts have synced, only after an
  explicit reset that unlinks every contact (CON-1);
- a change of what is in scope (calls as tasks, the calendar window, private items)
  makes the next cycle list the affected feeds whole, so records that did not change
  still enter or leave the sync (CAL-1, CAL-3, CAL-4);
- a record taken off the exclusion list is read again on both sides by the next cycle,
  so changes made while it was excluded sync (SET-4);
- how long history is kept is the tenant's to decide, not a user's (HIS-3).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from crmsync.model import KINDS, Kind
from crmsync.ports import Store
from crmsync.settings import (
    SettingName,
    Settings,
    SettingsError,
    Side,
    overlay,
    resolve,
    without,
)

# Settings only a tenant sets for everyone: a user's layer never holds them.
TENANT_ONLY: tuple[SettingName, ...] = ("history_days", "attachment_mb")

# Settings whose change alters which records of a feed are in scope: (side, kind) feeds
# to list whole on the next cycle.
_RESCOPING: dict[SettingName, tuple[tuple[Side, Kind], ...]] = {
    "calls_as": (("crm", "activity"), ("crm", "todo")),
    "window_days": (("crm", "activity"), ("provider", "activity")),
    "not_before": (("crm", "activity"), ("provider", "activity")),
    "private_items": (("crm", "activity"), ("provider", "activity"), ("crm", "todo")),
}


def change_settings(
    store: Store,
    connection: str,
    provider: str,
    tenant: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    changes: Mapping[str, Any],
    reset: Collection[str] = (),
) -> dict[str, Any]:
    """The user's new settings layer, validated; raises SettingsError for a bad value or
    a change that is not allowed now. `reset` names settings (dotted paths too) the
    user takes back, so the tenant's or provider's default applies again. Updates the
    stored state the change affects."""
    for name in TENANT_ONLY:
        if name in changes:
            raise SettingsError(f"{name}: set by the tenant for everyone, not per user")
    before = resolve(provider, tenant, current)
    layer = without(overlay(current, changes), reset, before.values)
    after = resolve(provider, tenant, layer)
    check_change(store, connection, before, after)
    apply_change(store, connection, before, after)
    return layer


def check_change(store: Store, connection: str, before: Settings, after: Settings) -> None:
    """SettingsError when the connection's effective settings may not go from `before`
    to `after` now (CON-1: the contact sync group, once contacts synced)."""
    if before["contact_group"] != after["contact_group"] and has_synced(
        store, connection, "contact"
    ):
        raise SettingsError(
            "contact_group: cannot change after contacts have synced; "
            "reset the contact sync first, which unlinks every contact (CON-1)"
        )


def apply_change(store: Store, connection: str, before: Settings, after: Settings) -> None:
    """The stored state follows a change of the connection's effective settings, made by
    its user or by their tenant's defaults: feeds whose scope changed are listed whole
    next, records taken off the exclusion list are read again."""
    for key, feeds in _RESCOPING.items():
        if before[key] != after[key]:
            for side, kind in feeds:
                store.forget_cursor(connection, side, kind)
    for kind in KINDS:
        for crm_id in _released(before, after, kind):
            recheck(store, connection, kind, crm_id)


def has_synced(store: Store, connection: str, kind: Kind) -> bool:
    return any(store.cursor(connection, side, kind) is not None for side in ("crm", "provider"))


def reset(store: Store, connection: str, kind: Kind) -> int:
    """Unlink every record of `kind` and start its sync afresh; returns how many links
    were dropped. Records stay as they are on both sides; the next cycle pairs them
    again by their matching rules (CON-3, CAL-2), so nothing is duplicated."""
    links = list(store.links(connection, kind))
    for link in links:
        store.delete_link(connection, kind, link.key)
    for side in ("crm", "provider"):
        store.forget_cursor(connection, side, kind)
    store.set_retries(connection, kind, set())
    for item in store.queue(connection):
        if item["kind"] == kind:
            store.drop_queue_item(connection, item["id"])
    return len(links)


def recheck(
    store: Store,
    connection: str,
    kind: Kind,
    crm_id: str | None = None,
    provider_id: str | None = None,
) -> None:
    """The next cycle reads this CRM record and/or provider record again, and the
    record each is linked to on the other side."""
    crm_ids = [crm_id] if crm_id else []
    provider_ids = [provider_id] if provider_id else []
    pending = store.retries(connection, kind)
    pending.update(("crm", i) for i in crm_ids)
    pending.update(("provider", i) for i in provider_ids)
    for link in store.links_for(connection, kind, crm_ids, provider_ids):
        if link.crm_id:
            pending.add(("crm", link.crm_id))
        if link.provider_id:
            pending.add(("provider", link.provider_id))
    store.set_retries(connection, kind, pending)


def _released(before: Settings, after: Settings, kind: Kind) -> set[str]:
    """CRM ids excluded before and not after, or included for a while now (SET-4)."""
    was = before["exclusions"].get(kind, {})
    now = after["exclusions"].get(kind, {})
    return {
        crm_id
        for crm_id, value in was.items()
        if not isinstance(value, Mapping) and isinstance(now.get(crm_id, {}), Mapping)
    }
