"""The settings pages: a user's preferences (SET-1, SET-3..SET-5, SET-7), their tenant
admin's defaults and locks (SET-2), and the admin's switch per user (SET-6).

`form` is what a user's settings page shows, in sections; each field is a dict:

    name           the setting, or a dotted path into it ("permissions.todo.crm.delete"),
                   which is also the name `change` takes it back by
    label, help    what a sales rep reads
    type           "bool", "choice", "number", "date", "text", "picker" or "list"
    choices        [{value, label}] of a choice or picker (the current value among them)
    value          the user's effective value (dates and times as ISO text)
    default        what applies without the user's own choice: the tenant's or provider's
    own            whether the user chose the value themselves
    locked         the tenant lets no user change it (SET-2); locked_reason says so
    editable       whether the one asking may change it (an admin may, SET-6)
    picker         for a picker: {available, reason}; the choices come from the user's
                   account, and an account that cannot be reached leaves the current
                   value as the one choice, with the reason

The exception list (SET-4) is a "list" field: its value holds one entry per record
({kind, crm_id, name, state: excluded | excluded_until | included_until, until, excluded},
`name` as the record's link last saw it, else "");
`exclude` and `include` change it.

Frequency 0 is "manual only" (SET-7): the scheduler never runs the connection and no
push does either; "Sync now" (`service.sync_now`) does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from crmsync.configure import apply_change, change_settings, check_change
from crmsync.cycle.history import label as record_label
from crmsync.errors import GrantRevoked, PermissionDenied, SyncError
from crmsync.model import KINDS, Kind
from crmsync.ports import ConnectionRecord, ConnectionState
from crmsync.service import (
    Refused,
    Services,
    connection_of,
    connections_of,
    polled_kinds,
    tenant_allows,
)
from crmsync.settings import (
    BASE_DEFAULTS,
    CATEGORIES,
    OPERATIONS,
    PROVIDERS,
    SIDES,
    Settings,
    SettingsError,
    TenantSettings,
    leaves,
    nested,
    overlay,
    resolve,
    without,
)

log = logging.getLogger("crmsync.usecases.preferences")

KIND_LABELS: dict[str, str] = {
    "contact": "Contacts",
    "activity": "Calendar activities",
    "todo": "To-dos",
}
CATEGORY_LABELS = {
    "contact": "contacts",
    "appointment": "appointments",
    "call": "calls",
    "todo": "to-dos",
}
FREQUENCIES = (0, 5, 15, 30, 60, 240, 1440)  # minutes; 0: manual only (SET-7)
LOCKED_REASON = "Your company's admin sets this for everyone."


@dataclass(frozen=True)
class Field:
    """One setting as a page shows it; `picker` names the list a provider's kit gives."""

    name: str
    label: str
    help: str
    type: str
    choices: tuple[tuple[Any, str], ...] = ()
    picker: str = ""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    help: str
    fields: tuple[Field, ...]


# -- what the pages hold ------------------------------------------------------------------
def user_sections(mailbox: str, polled: Collection[Kind] | None = None) -> tuple[Section, ...]:
    """The sections of a user's settings page; `mailbox` names the provider as users
    know it, `polled` the kinds it is asked about between cycles (poll_minutes; none:
    no such field; None: any provider's, as on the tenant's page)."""
    return (
        Section(
            "sync", "What syncs", "Each kind of record, and which way it goes.", _what(mailbox)
        ),
        Section(
            "permissions",
            "What the sync may change",
            "Off: the sync never does it there, and the record stays as it is.",
            _permissions(mailbox),
        ),
        Section("window", "Calendar window", "How far back activities sync.", _window()),
        Section("schedule", "How often", "When the sync runs on its own.", _schedule(polled)),
        Section("items", "Which items", "", _items()),
        Section("places", f"Where they go in {mailbox}", "", _places()),
        Section("calendar", "Invitations and time", "", _calendar()),
        Section(
            "exceptions",
            "Records left out",
            "Records you took out of the sync, for good or for a while.",
            (
                Field(
                    "exclusions",
                    "Exception list",
                    "An excluded record is never touched on either side.",
                    "list",
                ),
            ),
        ),
        Section(
            "confirm",
            "Ask before applying",
            "Changes you confirm wait in your queue, with conflicts.",
            tuple(
                Field(f"confirm.{what}", f"Ask me before applying {label} records", "", "bool")
                for what, label in (("new", "new"), ("modified", "changed"), ("deleted", "deleted"))
            ),
        ),
        Section(
            "conflicts",
            "When both sides changed",
            "Changes to different fields are merged; this decides the same field.",
            (
                Field(
                    "conflict_policy",
                    "Which change wins",
                    "Ask me: the record waits in your queue until you pick a side.",
                    "choice",
                    (
                        ("provider_wins", f"The change in {mailbox}"),
                        ("crm_wins", "The change in the CRM"),
                        ("latest_wins", "The latest change"),
                        ("manual", "Ask me"),
                    ),
                ),
            ),
        ),
    )


def _what(mailbox: str) -> tuple[Field, ...]:
    directions = (
        ("both", "Both ways"),
        ("crm_to_provider", f"From the CRM to {mailbox} only"),
        ("provider_to_crm", f"From {mailbox} to the CRM only"),
    )
    fields: list[Field] = []
    for kind in KINDS:
        label = KIND_LABELS[kind]
        fields.append(Field(f"enabled.{kind}", f"Sync {label.lower()}", "", "bool"))
        fields.append(Field(f"direction.{kind}", f"{label}: which way", "", "choice", directions))
    return tuple(fields)


def _permissions(mailbox: str) -> tuple[Field, ...]:
    places = {"crm": "the CRM", "provider": mailbox}
    return tuple(
        Field(
            f"permissions.{category}.{side}.{op}",
            f"{op.capitalize()} {CATEGORY_LABELS[category]} in {places[side]}",
            "",
            "bool",
        )
        for category in CATEGORIES
        for side in SIDES
        for op in OPERATIONS
    )


def _window() -> tuple[Field, ...]:
    return (
        Field(
            "window_days",
            "Days back",
            "The first sync takes activities that ended this many days ago or later.",
            "number",
        ),
        Field(
            "not_before",
            "Do not sync before",
            "Activities before this date are left out, unless edited after it.",
            "date",
        ),
    )


def _schedule(polled: Collection[Kind] | None) -> tuple[Field, ...]:
    fields = [
        Field(
            "frequency_minutes",
            "Sync",
            "Choose Manual only to sync only when you click Sync now.",
            "choice",
            tuple((minutes, _every(minutes)) for minutes in FREQUENCIES),
        )
    ]
    if polled is None or polled:
        kinds = " and ".join(KIND_LABELS[kind].lower() for kind in polled or ())
        fields.append(
            Field(
                "poll_minutes",
                f"Look for changed {kinds or 'records'} every (minutes)",
                "Between syncs, one quick look each time; a sync follows a change.",
                "number",
            )
        )
    return tuple(fields)


def _items() -> tuple[Field, ...]:
    return (
        Field(
            "private_items",
            "Sync private items",
            "Off: private events and to-dos stay where they are.",
            "bool",
        ),
        Field(
            "calls_as",
            "Calls appear as",
            "",
            "choice",
            (("event", "Calendar events"), ("task", "Tasks")),
        ),
    )


def _places() -> tuple[Field, ...]:
    return (
        Field(
            "calendar", "Calendar", "The calendar activities sync with.", "picker", (), "calendar"
        ),
        Field("task_list", "Task list", "The list to-dos sync with.", "picker", (), "task_list"),
        Field(
            "contact_label",
            "Contacts under",
            "Contacts you put under this label or category sync; the first sync makes "
            "it when it does not exist yet.",
            "picker",
            (),
            "contact_scope",
        ),
        Field(
            "contact_group",
            "CRM contact group",
            "The CRM group whose contacts sync; empty: your own. It cannot change once "
            "contacts synced, unless the contact sync is reset.",
            "text",
        ),
    )


def _calendar() -> tuple[Field, ...]:
    return (
        Field(
            "notify_attendees",
            "Tell attendees of changes",
            "Off: changes the sync makes send no invitations or updates.",
            "bool",
        ),
        Field(
            "timezone",
            "Time zone",
            "",
            "choice",
            tuple((zone, zone) for zone in _zones()),
        ),
    )


def tenant_sections() -> tuple[Section, ...]:
    """What only the tenant admin sets, for everyone."""
    deletes = tuple(
        Field(
            f"deletes.{kind}.{side}",
            f"A deleted {KIND_LABELS[kind].lower()} record, in {place}",
            "",
            "choice",
            (("delete", "is deleted too"), ("unlink", "stays, no longer synced")),
        )
        for kind in ("activity", "todo")
        for side, place in (("crm", "the CRM"), ("provider", "the mailbox"))
    )
    return (
        Section(
            "everyone",
            "For everyone",
            "Your users cannot change these.",
            (
                Field(
                    "contact_delete",
                    "A contact deleted on one side",
                    "",
                    "choice",
                    (
                        ("unlink", "is unlinked"),
                        ("delete", "is deleted on the other"),
                        ("ignore", "is left alone"),
                    ),
                ),
                *deletes,
                Field(
                    "new_contacts",
                    "New mailbox contacts become",
                    "",
                    "choice",
                    (("contact", "CRM contacts"), ("lead", "Leads"), ("review", "A review list")),
                ),
                Field(
                    "declined",
                    "Declined invitations",
                    "",
                    "choice",
                    (
                        ("skip_then_remove", "are not synced, and removed once declined"),
                        ("sync_hidden", "sync, hidden from the CRM calendar"),
                    ),
                ),
                Field("completed_marker", "Completed activities read", "", "text"),
                Field("related_info_template", "Related information block", "", "text"),
                Field(
                    "update_shared_address",
                    "Address changes reach the account's address",
                    "",
                    "bool",
                ),
                Field("recurrence_years", "Endless series are capped at (years)", "", "number"),
                Field("mass_delete_min", "Hold mass deletes of at least (records)", "", "number"),
                Field("mass_delete_ratio", "and more than (fraction of a kind)", "", "number"),
            ),
        ),
    )


def _every(minutes: int) -> str:
    if minutes == 0:
        return "Manual only: when I click Sync now"
    if minutes % 1440 == 0:
        return "Once a day" if minutes == 1440 else f"Every {minutes // 1440} days"
    if minutes % 60 == 0:
        return "Every hour" if minutes == 60 else f"Every {minutes // 60} hours"
    return f"Every {minutes} minutes"


# The IANA regions whose zones are places people live in (not Etc/, posix/, legacy
# aliases such as US/… or SystemV/…, nor names like "Factory" or "localtime").
REGIONS = frozenset(
    {
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    }
)


@cache
def _zones() -> tuple[str, ...]:
    """SET-1: the time zones a person picks from, sorted: each region's, and UTC (a
    current value not among them is still shown as chosen)."""
    found = {zone for zone in available_timezones() if zone.split("/", 1)[0] in REGIONS}
    return ("UTC", *sorted(z for z in found if "/" in z))


USER_SETTINGS = frozenset(f.name for s in user_sections("") for f in s.fields)
LEAVES = leaves()


# -- a user's page ------------------------------------------------------------------------
def form(
    services: Services, tenant: str, connection: str, *, as_admin: bool = False
) -> dict[str, Any]:
    """What the connection's settings page shows (see the module's docstring); with
    `as_admin`, a tenant admin edits it for the user (SET-6)."""
    tenant_record, record = _load(services, tenant, connection)
    defaults = tenant_record.get("settings") or {}
    effective = resolve(record.provider, defaults, record.settings)
    default = resolve(record.provider, defaults)
    locks = _locks(tenant_record)
    mailbox = _label(services, record.provider)
    polled = polled_kinds(services, record.provider, effective)

    def field(spec: Field) -> dict[str, Any]:
        shown = _shown_field(spec, effective.values, default.values, record.settings, locks)
        shown["editable"] = as_admin or not shown["locked"]
        if spec.type == "list":
            shown["value"] = _exceptions(effective, services.clock())
            _name_exceptions(services, tenant, record.id, shown["value"])
        if spec.picker:
            shown.update(_picker(services, tenant, record, spec.picker, shown["value"]))
        return shown

    return {
        "tenant": tenant,
        "connection": record.id,
        "user": record.user,
        "provider": record.provider,
        "provider_label": mailbox,
        "account": record.account,
        "status": str(record.status),
        "enabled": record.enabled,
        "manual": effective.manual,
        "as_admin": as_admin,
        "guard": _guard(effective),
        "sections": [
            {"id": s.id, "title": s.title, "help": s.help, "fields": [field(f) for f in s.fields]}
            for s in user_sections(mailbox, polled)
        ],
    }


def change(
    services: Services,
    tenant: str,
    connection: str,
    changes: Mapping[str, Any],
    *,
    as_admin: bool = False,
    reset: Sequence[str] = (),
) -> dict[str, Any]:
    """Change the user's settings: `changes` by name as the form gives them (dotted
    paths, or whole settings), `reset` names taken back to the tenant's or provider's
    default. Checked before anything is written: a setting the user may not change is
    refused with 403 (an admin may change any, SET-6), a bad value with 400, each
    naming the setting. Returns the effective settings that now apply."""
    tenant_record, record = _load(services, tenant, connection)
    for name in reset:
        if not any(_overlap(leaf, name) for leaf in LEAVES):
            raise Refused(400, f"unknown setting {name!r}")
    _check_may_change([*_flat(changes), *reset], _locks(tenant_record), as_admin)
    defaults = tenant_record.get("settings") or {}
    store = services.backend.store(tenant)
    try:
        before = resolve(record.provider, defaults, record.settings)
        layer = change_settings(
            store,
            record.id,
            record.provider,
            defaults,
            record.settings,
            nested(changes, before.values),
            reset,
        )
        after = resolve(record.provider, defaults, layer)
    except SettingsError as exc:
        raise Refused(400, str(exc)) from exc
    store.save_connection_record(record.id, {"settings": layer})
    _reschedule(services, store, record, before, after)
    changed = sorted({name.split(".")[0] for name in [*changes, *reset]})
    log.info(
        "settings changed",
        extra={"tenant": tenant, "connection": record.id, "settings": changed, "admin": as_admin},
    )
    return dict(_plain(after.values))


def exclude(
    services: Services,
    tenant: str,
    connection: str,
    kind: str,
    crm_id: str,
    until: datetime | str | None = None,
    *,
    as_admin: bool = False,
) -> dict[str, Any]:
    """SET-4: the record is never touched on either side (until `until`, when given)."""
    table = _exclusions(services, tenant, connection, kind)
    table[kind] = {**table.get(kind, {}), crm_id: until}
    return change(services, tenant, connection, {"exclusions": table}, as_admin=as_admin)


def include(
    services: Services,
    tenant: str,
    connection: str,
    kind: str,
    crm_id: str,
    until: datetime | str | None = None,
    *,
    as_admin: bool = False,
) -> dict[str, Any]:
    """SET-4: the record syncs again (until `until`, when given: then it is excluded
    again); the next cycle reads it again on both sides."""
    table = _exclusions(services, tenant, connection, kind)
    table[kind] = {k: v for k, v in table.get(kind, {}).items() if k != crm_id}
    if until is not None:
        table[kind][crm_id] = {"included_until": until}
    return change(services, tenant, connection, {"exclusions": table}, as_admin=as_admin)


def _exclusions(
    services: Services, tenant: str, connection: str, kind: str
) -> dict[str, dict[str, Any]]:
    if kind not in KINDS:
        raise Refused(400, f"exclusions: {kind!r} is not one of {', '.join(KINDS)}")
    tenant_record, record = _load(services, tenant, connection)
    current = resolve(record.provider, tenant_record.get("settings") or {}, record.settings)
    return {k: dict(v) for k, v in current["exclusions"].items()}


# -- the tenant admin's page --------------------------------------------------------------
def tenant_form(services: Services, tenant: str) -> dict[str, Any]:
    """What the tenant admin's settings page shows (SET-2): the defaults of the user
    settings (`value` the tenant's, None where each provider's own `defaults` apply),
    which of them users may not change (`locked`), the settings only the tenant sets,
    the providers and services its users may connect, and its seats (read only)."""
    store = services.backend.store(tenant)
    record = _tenant_record(services, tenant)
    defaults = record.get("settings") or {}
    providers, allowed = tenant_allows(record)
    locks = _locks(record)
    provider_defaults = {p: resolve(p).values for p in providers}

    def field(spec: Field, lockable: bool) -> dict[str, Any]:
        shown = _tenant_field(spec, defaults, provider_defaults)
        if lockable:
            shown["locked"] = any(_overlap(spec.name, lock) for lock in locks)
        return shown

    sections = [
        {
            "id": s.id,
            "title": s.title,
            "help": s.help,
            "fields": [field(f, lockable) for f in s.fields if f.type != "list"],
        }
        for s, lockable in [
            *((s, True) for s in user_sections("the mailbox")),
            *((s, False) for s in tenant_sections()),
        ]
    ]
    return {
        "tenant": tenant,
        "name": record.get("name", ""),
        "seats": {"total": int(record.get("seats", 0)), "used": _seats_used(store)},
        "providers": {
            "value": list(providers),
            "choices": [{"value": p, "label": _label(services, p)} for p in PROVIDERS],
        },
        "services": {
            "value": list(allowed),
            "choices": [
                {"value": "sync", "label": "Sync contacts, calendar and to-dos"},
                {"value": "mail", "label": "Record e-mails in the CRM"},
            ],
        },
        "locked": sorted(locks),
        "sections": sections,
    }


TENANT_CHANGES = ("defaults", "reset", "locked", "providers", "services")


def change_tenant(services: Services, tenant: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Change what the tenant admin sets (SET-2): `defaults` ({name: value}, names as the
    page gives them), `reset` (defaults taken back to each provider's), `locked` (the
    user settings users may not change, the whole list), `providers` and `services`
    (what its users may connect). Everything is checked before anything is written, as
    at registration, and against each connected user's own settings; then the stored
    sync state of the connections whose effective settings changed follows. Returns
    the new tenant form."""
    record = _tenant_record(services, tenant)
    unknown = sorted(set(changes) - set(TENANT_CHANGES))
    if "seats" in unknown:
        raise Refused(403, "seats: your plan sets them; ask whoever runs crmsync for you")
    if unknown:
        raise Refused(400, f"{unknown[0]}: not a tenant setting ({', '.join(TENANT_CHANGES)})")
    update = _tenant_update(record, changes)
    store = services.backend.store(tenant)
    affected = _affected(store, record.get("settings") or {}, update.get("settings"))
    store.save_tenant_record(update)
    for connection, before, after in affected:
        apply_change(store, connection.id, before, after)
        _reschedule(services, store, connection, before, after)
    log.info("tenant settings changed", extra={"tenant": tenant, "changed": sorted(update)})
    return tenant_form(services, tenant)


def _tenant_update(record: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The tenant record's new values, validated as `create_tenant` does."""
    current = dict(record.get("settings") or {})
    providers, allowed = tenant_allows(record)
    try:
        defaults = _new_defaults(current, changes.get("defaults") or {}, changes.get("reset") or ())
        providers = _names("providers", changes.get("providers", providers))
        allowed = _names("services", changes.get("services", allowed))
        TenantSettings(defaults, providers, allowed)  # type: ignore[arg-type]
        locks = _names("locked", changes.get("locked", _locks(record)))
        _check_locks(locks)
    except SettingsError as exc:
        raise Refused(400, str(exc)) from exc
    update: dict[str, Any] = {}
    if "defaults" in changes or "reset" in changes:
        update["settings"] = defaults
    if "providers" in changes:
        update["providers"] = list(providers)
    if "services" in changes:
        update["services"] = list(allowed)
    if "locked" in changes:
        update["locked"] = sorted(set(locks))
    return update


def _new_defaults(current: Mapping[str, Any], changes: Any, reset: Any) -> dict[str, Any]:
    if not isinstance(changes, Mapping):
        raise SettingsError("defaults: expected settings by name")
    if isinstance(reset, str) or not isinstance(reset, Sequence):
        raise SettingsError("reset: expected a list of setting names")
    base = overlay(BASE_DEFAULTS, current)
    return without(overlay(current, nested(changes, base)), [str(n) for n in reset], base)


def _names(what: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise SettingsError(f"{what}: expected a list of names")
    if not all(isinstance(name, str) for name in value):
        raise SettingsError(f"{what}: expected a list of names")
    return tuple(value)


def _check_locks(locks: Sequence[str]) -> None:
    for lock in locks:
        covered = [leaf for leaf in LEAVES if _overlap(leaf, lock)]
        if not covered or any(leaf not in USER_SETTINGS for leaf in covered):
            raise SettingsError(f"locked: {lock!r} is not a setting users change")


def _affected(
    store: Any, old: Mapping[str, Any], new: Mapping[str, Any] | None
) -> list[tuple[ConnectionRecord, Settings, Settings]]:
    """The connections whose effective settings new tenant defaults change, each with
    its settings before and after; SettingsError (as 400) when a user's own settings do
    not go with the new defaults, or when the change is not allowed now (CON-1)."""
    if new is None:
        return []
    found = []
    for record in connections_of(store):
        if not record.live or record.provider not in PROVIDERS:
            continue
        try:
            before = resolve(record.provider, old, record.settings)
            after = resolve(record.provider, new, record.settings)
            check_change(store, record.id, before, after)
        except SettingsError as exc:
            raise Refused(400, f"{exc} (for {record.user}'s connection)") from exc
        if before.values != after.values:
            found.append((record, before, after))
    return found


# -- the admin's switch (SET-6) -----------------------------------------------------------
def reset_sync(services: Services, tenant: str, connection: str, kind: str) -> int:
    """CON-1: start the sync of one kind afresh: every link of it is dropped (records
    stay as they are on both sides), so the contact sync group may change; the next
    cycle, enqueued now, pairs the records again by their matching rules, duplicating
    nothing. Returns how many links were dropped."""
    from crmsync.configure import reset
    from crmsync.service import enqueue_cycle

    _load(services, tenant, connection)
    if kind not in KINDS:
        raise Refused(400, f"kind: one of {', '.join(KINDS)}, not {kind!r}")
    dropped = reset(services.backend.store(tenant), connection, kind)
    enqueue_cycle(services, tenant, connection, "manual")
    log.info("sync reset", extra={"tenant": tenant, "connection": connection, "kind": kind})
    return dropped


def set_enabled(services: Services, tenant: str, user: str, enabled: bool) -> None:
    """SET-6: turn the integration off for a user (none of their connections syncs: no
    scheduled, pushed or asked-for cycle runs; links, cursors and data stay), or on
    again (the next cycle takes up from the cursors: only what changed meanwhile). A
    connection the user makes while off starts off."""
    store = services.backend.store(tenant)
    _tenant_record(services, tenant)
    theirs = [record for record in connections_of(store) if record.user == user]
    if not theirs and store.user_record(user) is None:
        raise Refused(404, f"no such user: {user}")
    store.save_user_record(user, {"enabled": enabled})
    for record in theirs:
        store.save_connection_record(record.id, {"enabled": enabled})
        if record.status == ConnectionState.ACTIVE and record.syncs:
            manual = _manual(services, tenant, record)
            due = services.clock() if enabled and not manual else None
            store.set_next_due(record.id, due)
    log.info("integration switched", extra={"tenant": tenant, "user": user, "enabled": enabled})


def _manual(services: Services, tenant: str, record: ConnectionRecord) -> bool:
    defaults = _tenant_record(services, tenant).get("settings") or {}
    try:
        return resolve(record.provider, defaults, record.settings).manual
    except SettingsError:
        return False


# -- helpers ------------------------------------------------------------------------------
def _load(
    services: Services, tenant: str, connection: str
) -> tuple[dict[str, Any], ConnectionRecord]:
    tenant_record = _tenant_record(services, tenant)
    record = connection_of(services.backend.store(tenant), connection)
    if record is None or not record.live:
        raise Refused(404, "no such connection")
    return tenant_record, record


def _tenant_record(services: Services, tenant: str) -> dict[str, Any]:
    record: dict[str, Any] | None = services.backend.store(tenant).tenant_record()
    if record is None:
        raise Refused(404, f"no such tenant: {tenant}")
    return record


def _locks(tenant_record: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(name) for name in tenant_record.get("locked") or ())


def _label(services: Services, provider: str) -> str:
    try:
        return str(services.kit(provider).label)
    except KeyError:
        return provider


def _seats_used(store: Any) -> int:
    return sum(1 for record in connections_of(store) if record.live)


def _overlap(name: str, other: str) -> bool:
    """Whether one dotted name is the other, or inside it."""
    return name == other or name.startswith(other + ".") or other.startswith(name + ".")


def _flat(changes: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the single values `changes` sets."""
    names: list[str] = []
    for key, value in changes.items():
        name = prefix + str(key)
        inner = any(leaf.startswith(name + ".") for leaf in LEAVES)
        if isinstance(value, Mapping) and inner:
            names.extend(_flat(value, name + "."))
        else:
            names.append(name)
    return names


def _check_may_change(names: Sequence[str], locks: Sequence[str], as_admin: bool) -> None:
    """403 for a setting the user may not change: one only the tenant sets, or one the
    tenant locked (SET-2); an admin may change any (SET-6). Names no setting has are
    left to validation, which refuses them with 400."""
    if as_admin:
        return
    for name in names:
        covered = [leaf for leaf in LEAVES if _overlap(leaf, name)]
        if any(leaf not in USER_SETTINGS for leaf in covered):
            raise Refused(403, f"{name}: your company's admin sets this for everyone")
        if covered and any(_overlap(name, lock) for lock in locks):
            raise Refused(403, f"{name}: locked; {LOCKED_REASON.lower()}")


def _reschedule(
    services: Services, store: Any, record: ConnectionRecord, before: Settings, after: Settings
) -> None:
    """A new frequency takes effect at once: a connection that now syncs only when asked
    leaves the scheduler (SET-7); one that syncs on its own again is due now."""
    if before["frequency_minutes"] == after["frequency_minutes"]:
        return
    if record.active and record.syncs:
        store.set_next_due(record.id, None if after.manual else services.clock())


def _picker(
    services: Services, tenant: str, record: ConnectionRecord, what: str, current: Any
) -> dict[str, Any]:
    """A picker's choices from the user's account, with the current value among them;
    an account that cannot be asked leaves the current value, and says why."""
    mailbox = _label(services, record.provider)
    reason = ""
    found: list[dict[str, str]] = []
    if record.status != ConnectionState.ACTIVE:
        reason = f"reconnect your {mailbox} account to choose from a list"
    else:
        try:
            found = list(services.kit(record.provider).choices(services, tenant, record, what))
        except GrantRevoked:
            reason = f"reconnect your {mailbox} account to choose from a list"
        except PermissionDenied:
            reason = f"your {mailbox} account does not let crmsync list these"
        except (SyncError, KeyError, AttributeError, ValueError) as exc:
            log.warning("picker unavailable", extra={"tenant": tenant, "error": type(exc).__name__})
            reason = f"{mailbox} could not be reached just now; try again later"
    choices = [{"value": c["id"], "label": c["label"]} for c in found]
    if current not in [c["value"] for c in choices]:
        choices.insert(0, {"value": current, "label": str(current)})
    return {"choices": choices, "picker": {"available": not reason, "reason": reason}}


def _shown_field(
    spec: Field,
    effective: Mapping[str, Any],
    default: Mapping[str, Any],
    own: Mapping[str, Any],
    locks: Sequence[str],
) -> dict[str, Any]:
    value, fallback = _at(effective, spec.name), _at(default, spec.name)
    locked = any(_overlap(spec.name, lock) for lock in locks)
    shown: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "help": spec.help,
        "type": spec.type,
        "value": _plain(value),
        "default": _plain(fallback),
        "own": _has(own, spec.name),
        "locked": locked,
        "locked_reason": LOCKED_REASON if locked else "",
    }
    if spec.type == "choice":
        shown["choices"] = _choices(spec, value, fallback)
    return shown


def _tenant_field(
    spec: Field, defaults: Mapping[str, Any], provider_defaults: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    own = _has(defaults, spec.name)
    shown: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "help": spec.help,
        "type": "text" if spec.type == "picker" else spec.type,
        "value": _plain(_at(defaults, spec.name)) if own else None,
        "own": own,
        "defaults": {p: _plain(_at(values, spec.name)) for p, values in provider_defaults.items()},
    }
    if spec.type == "choice":
        shown["choices"] = _choices(spec, *(_at(v, spec.name) for v in provider_defaults.values()))
    return shown


def _choices(spec: Field, *values: Any) -> list[dict[str, Any]]:
    """The field's choices, with any value given that is not among them (a frequency set
    through the API, say)."""
    choices = [{"value": value, "label": label} for value, label in spec.choices]
    known = {c["value"] for c in choices}
    for value in values:
        if value is not None and value not in known:
            label = _every(value) if spec.name == "frequency_minutes" else str(value)
            choices.append({"value": value, "label": label})
            known.add(value)
    return choices


def _guard(settings: Settings) -> dict[str, Any]:
    """SYN-6: the mass-delete guard as it applies to the connection, in words: the
    tenant's admin sets it (for everyone, or for this user)."""
    least, ratio = settings["mass_delete_min"], settings["mass_delete_ratio"]
    share = f"{ratio * 100:g} %"
    return {
        "min": least,
        "ratio": ratio,
        "text": (
            f"When one sync would delete at least {least} records of one kind and more "
            f"than {share} of them, the deletes wait in your queue for your OK instead of "
            "being applied. Your company's admin sets this."
        ),
    }


def _name_exceptions(
    services: Services, tenant: str, connection: str, entries: list[dict[str, Any]]
) -> None:
    """SET-4: each excluded record's name, as its link last saw it ("" when no link
    knows the record)."""
    store = services.backend.store(tenant)
    for kind in {e["kind"] for e in entries}:
        of_kind = [e for e in entries if e["kind"] == kind]
        ids = [str(e["crm_id"]) for e in of_kind]
        names = {
            link.crm_id: record_label(kind, link.base)
            for link in store.links_for(connection, kind, ids, [])
        }
        for entry in of_kind:
            entry["name"] = names.get(entry["crm_id"], "")
    for entry in entries:
        entry.setdefault("name", "")


def _exceptions(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """The exception list (SET-4), one entry per record, by kind and id."""
    entries = []
    for kind, table in settings["exclusions"].items():
        for crm_id, value in sorted(table.items()):
            if isinstance(value, Mapping):
                state, until = "included_until", value["included_until"]
            else:
                state, until = ("excluded_until" if value is not None else "excluded"), value
            entries.append(
                {
                    "kind": kind,
                    "crm_id": crm_id,
                    "state": state,
                    "until": _plain(until),
                    "excluded": settings.excluded(kind, crm_id, now),
                }
            )
    return entries


def _at(values: Mapping[str, Any], name: str) -> Any:
    found: Any = values
    for key in name.split("."):
        if not isinstance(found, Mapping) or key not in found:
            return None
        found = found[key]
    return found


def _has(values: Mapping[str, Any], name: str) -> bool:
    found: Any = values
    for key in name.split("."):
        if not isinstance(found, Mapping) or key not in found:
            return False
        found = found[key]
    return True


def _plain(value: Any) -> Any:
    """A value as JSON carries it: dates and times as ISO text."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
