"""Tenant and user settings (SET-1..5), with per-provider defaults, validated.

Effective settings for one user are layered: provider defaults, then the tenant's
defaults (SET-2), then the user's own choices (SET-1). Every layer is a plain dict in
the same shape; nested dicts merge key by key, so a user may override one cell of
the permission matrix without restating the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmsync.model import CUSTOM, CUSTOM_NAME, FIELD_NAMES, KINDS, Kind

if TYPE_CHECKING:  # the transforms load where custom fields are mapped or checked
    from crmsync.transforms import CustomMap

Provider: TypeAlias = Literal["google", "microsoft"]
PROVIDERS: tuple[Provider, ...] = get_args(Provider)
Direction: TypeAlias = Literal["both", "crm_to_provider", "provider_to_crm"]
ConflictPolicy: TypeAlias = Literal["provider_wins", "latest_wins", "crm_wins", "manual"]
Side: TypeAlias = Literal["crm", "provider"]
SIDES: tuple[Side, ...] = get_args(Side)
Operation: TypeAlias = Literal["create", "update", "delete"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
Category: TypeAlias = Literal["contact", "appointment", "call", "todo"]
CATEGORIES: tuple[Category, ...] = get_args(Category)

MAX_ATTACHMENT_MB = 25  # the largest attachment any tenant may keep (EML-2)

DEFAULT_TEMPLATE = (
    "Contact: {contact}\nAccount: {account}\nLead: {lead}\nCompany: {company}\n"
    "Opportunity: {opportunity}\nTicket: {ticket}\nLeader: {leader}"
)

_ALL_ALLOWED = {op: True for op in OPERATIONS}
DeletePolicy: TypeAlias = Literal["delete", "unlink"]
DELETE_POLICIES: tuple[DeletePolicy, ...] = get_args(DeletePolicy)

# The names of the settings, so that type checking catches a misspelt one; a test keeps
# them equal to BASE_DEFAULTS' keys.
SettingName: TypeAlias = Literal[
    "enabled",
    "direction",
    "permissions",
    "conflict_policy",
    "confirm",
    "window_days",
    "not_before",
    "private_items",
    "declined",
    "contact_delete",
    "deletes",
    "mass_delete_ratio",
    "mass_delete_min",
    "frequency_minutes",
    "poll_minutes",
    "calendar",
    "task_list",
    "contact_label",
    "contact_group",
    "timezone",
    "notify_attendees",
    "completed_marker",
    "new_contacts",
    "calls_as",
    "update_shared_address",
    "recurrence_years",
    "related_info_template",
    "field_map",
    "todo_status",
    "provider_recurring_todos",
    "exclusions",
    "custom_fields",
    "history_days",
    "attachment_mb",
]

# The user-settings contract (SET-1, SET-3, SET-4, SET-5) with its base defaults.
BASE_DEFAULTS: dict[str, Any] = {
    "enabled": {kind: True for kind in KINDS},
    "direction": {kind: "both" for kind in KINDS},
    "permissions": {c: {s: dict(_ALL_ALLOWED) for s in SIDES} for c in CATEGORIES},
    "conflict_policy": "latest_wins",
    "confirm": {"new": False, "modified": False, "deleted": False},
    "window_days": 14,
    "not_before": None,
    "private_items": False,
    "declined": "skip_then_remove",
    "contact_delete": "unlink",
    # CAL-12: what a delete of an activity or to-do does on the other side, by the side
    # it reaches: delete it there too, or only unlink the two (the survivor stays and
    # no longer syncs).
    "deletes": {kind: {side: "delete" for side in SIDES} for kind in ("activity", "todo")},
    "mass_delete_ratio": 0.25,
    "mass_delete_min": 10,
    # Minutes between scheduled cycles; 0 is "manual only" (SET-7): no scheduled cycle,
    # and no push starts one either; the user syncs on demand ("Sync now").
    "frequency_minutes": 15,
    # How often the kinds whose provider pushes no change (its kit says which) are looked
    # at between full cycles: one list call each, and a cycle of those kinds only when
    # one shows a change.
    "poll_minutes": 2,
    "calendar": "primary",
    "task_list": "default",
    "contact_label": "CRM",
    "contact_group": None,  # the CRM contact sync group; None: the user's own (CON-1)
    "timezone": "UTC",
    "notify_attendees": False,
    "completed_marker": "Completed: {subject}",
    "new_contacts": "contact",
    "calls_as": "event",
    "update_shared_address": True,
    "recurrence_years": 2,
    "related_info_template": DEFAULT_TEMPLATE,
    "field_map": {kind: list(FIELD_NAMES[kind]) for kind in KINDS},
    "todo_status": {s: s for s in ("open", "in_progress", "completed", "cancelled")},
    "provider_recurring_todos": True,
    "exclusions": {kind: {} for kind in KINDS},
    # SYN-1: CRM custom field name -> {"provider": key there, "transform": optional}
    "custom_fields": {kind: {} for kind in KINDS},
    # HIS-3: how many days the tenant's sync history is kept; None: the deployment's
    # CRMSYNC_HISTORY_DAYS, which also bounds a longer one. A tenant setting only.
    "history_days": None,
    # EML-2: the largest mail attachment (MB) kept in the object store for the CRM; None:
    # the deployment's (25 MB), which also bounds a larger one; 0: none, they are named
    # only. A tenant setting only.
    "attachment_mb": None,
}

_ACTIVITY_PROVIDER_FIELDS = [
    f for f in FIELD_NAMES["activity"] if f not in ("type", "leader", "regarding", "invite")
]
# What the CRM relates a to-do to reaches a task as the related-info block in its notes
# (TSK-4); whether it is private decides whether it syncs at all (TSK-5).
_TASK_PROVIDER_FIELDS = [f for f in FIELD_NAMES["todo"] if f not in ("regarding", "private")]

PROVIDER_DEFAULTS: dict[Provider, dict[str, Any]] = {
    "google": {
        "conflict_policy": "provider_wins",
        "declined": "sync_hidden",
        "completed_marker": "*{subject}*",
        "field_map": {
            "contact": list(FIELD_NAMES["contact"]),
            "activity": _ACTIVITY_PROVIDER_FIELDS,
            "todo": ["subject", "due", "status", "notes"],
        },
        "todo_status": {
            "open": "open",
            "in_progress": "open",
            "completed": "completed",
            "cancelled": "completed",
        },
        "provider_recurring_todos": False,
    },
    "microsoft": {
        "conflict_policy": "latest_wins",
        "declined": "skip_then_remove",
        "completed_marker": "Completed: {subject}",
        "field_map": {
            "contact": list(FIELD_NAMES["contact"]),
            "activity": _ACTIVITY_PROVIDER_FIELDS,
            "todo": _TASK_PROVIDER_FIELDS,
        },
        # To Do has no cancelled status: a cancelled to-do is a completed task, and a
        # completed task stays cancelled in the CRM (TSK-3).
        "todo_status": {
            "open": "open",
            "in_progress": "in_progress",
            "completed": "completed",
            "cancelled": "completed",
        },
        "provider_recurring_todos": True,
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "conflict_policy": get_args(ConflictPolicy),
    "declined": ("skip_then_remove", "sync_hidden"),
    "contact_delete": ("unlink", "delete", "ignore"),
    "new_contacts": ("contact", "lead", "review"),
    "calls_as": ("event", "task"),
}

# The record kinds whose provider records can hold custom fields (SYN-1): a Google
# task has no place for them.
CUSTOM_FIELD_KINDS: dict[Provider, tuple[Kind, ...]] = {
    "google": ("contact", "activity"),
    "microsoft": KINDS,
}

# Keys whose value is a free-form mapping: a layer replaces it whole.
REPLACED = frozenset({"field_map", "todo_status", "exclusions", "custom_fields"})


class SettingsError(ValueError):
    """A setting that cannot be used, with the key that is wrong and why."""


def _merge(base: dict[str, Any], layer: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    out = dict(base)
    for key, value in layer.items():
        where = f"{path}{key}"
        if key not in base:
            raise SettingsError(f"unknown setting {where!r}")
        if isinstance(base[key], dict) and key not in REPLACED:
            if not isinstance(value, Mapping):
                raise SettingsError(f"{where}: expected a mapping, got {value!r}")
            out[key] = _merge(base[key], value, f"{where}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def overlay(layer: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A settings layer with `changes` merged in, nested dicts key by key."""
    out = copy.deepcopy(dict(layer))
    for key, value in changes.items():
        if (
            isinstance(value, Mapping)
            and isinstance(out.get(key), Mapping)
            and (key not in REPLACED)
        ):
            out[key] = overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def leaves(tree: Mapping[str, Any] = BASE_DEFAULTS, prefix: str = "") -> tuple[str, ...]:
    """Every setting's dotted name down to its single values (permissions.todo.crm.create);
    a mapping a layer replaces whole (REPLACED) is one value."""
    found: list[str] = []
    for key, value in tree.items():
        name = prefix + key
        if isinstance(value, Mapping) and (prefix or key not in REPLACED):
            found.extend(leaves(value, name + "."))
        else:
            found.append(name)
    return tuple(found)


def nested(changes: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Changes named by setting or dotted path ({"confirm.new": True}) as a layer of
    nested mappings. A path into a mapping a layer replaces whole (exclusions.todo.t-1)
    edits a copy of its `current` value, so the rest of it stays."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        key, *path = name.split(".")
        if path and key in REPLACED:
            table = out[key] if key in out else copy.deepcopy(dict(current.get(key) or {}))
            _put(table, path, value)
            out[key] = table
        else:
            out = overlay(out, _branch([key, *path], value))
    return out


def without(
    layer: Mapping[str, Any], names: Iterable[str], current: Mapping[str, Any]
) -> dict[str, Any]:
    """The layer with the dotted `names` taken out, so lower layers decide them again;
    inside a mapping a layer replaces whole, the rest of its `current` value stays."""
    out = copy.deepcopy(dict(layer))
    for name in names:
        key, *path = name.split(".")
        if path and key in REPLACED:
            table = copy.deepcopy(dict(out[key] if key in out else current.get(key) or {}))
            _drop(table, path)
            out[key] = table
        else:
            _drop(out, [key, *path])
    return out


def _branch(path: list[str], value: Any) -> dict[str, Any]:
    return {path[0]: _branch(path[1:], value) if len(path) > 1 else value}


def _put(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        below = tree.get(key)
        tree[key] = dict(below) if isinstance(below, Mapping) else {}
        tree = tree[key]
    tree[path[-1]] = value


def _drop(tree: dict[str, Any], path: list[str]) -> None:
    """Take out the value at `path`, and the mappings it leaves empty."""
    key = path[0]
    if len(path) == 1:
        tree.pop(key, None)
        return
    below = tree.get(key)
    if isinstance(below, dict):
        _drop(below, path[1:])
        if not below:
            del tree[key]


@dataclass(frozen=True)
class Settings:
    """Effective, validated settings of one user on one provider."""

    provider: Provider
    values: Mapping[str, Any]

    def __getitem__(self, key: SettingName) -> Any:
        return self.values[key]

    @property
    def manual(self) -> bool:
        """SET-7: manual only; cycles run only when someone asks for one."""
        return bool(self.values["frequency_minutes"] == 0)

    def enabled(self, kind: Kind) -> bool:
        return bool(self.values["enabled"][kind])

    def direction(self, kind: Kind) -> Direction:
        return self.values["direction"][kind]  # type: ignore[no-any-return]

    def flows_to(self, kind: Kind, side: Side) -> bool:
        """Whether changes may flow into `side` for this kind (SET-1 direction)."""
        wanted = "provider_to_crm" if side == "crm" else "crm_to_provider"
        return self.direction(kind) in ("both", wanted)

    def allows(self, category: Category, side: Side, op: Operation) -> bool:
        return bool(self.values["permissions"][category][side][op])

    def delete_policy(self, kind: Kind, side: Side) -> DeletePolicy:
        """CAL-12: what a delete on the other side does to this kind's record on `side`."""
        return self.values["deletes"][kind][side]  # type: ignore[no-any-return]

    def mapped(self, kind: Kind) -> tuple[str, ...]:
        """The canonical fields that move: the field map's, then the mapped custom
        fields as custom.<name> (SYN-1)."""
        return self._mapped[kind]

    @cached_property
    def _mapped(self) -> dict[Kind, tuple[str, ...]]:
        return {
            kind: tuple(self.values["field_map"][kind])
            + tuple(CUSTOM + name for name in self.values["custom_fields"][kind])
            for kind in KINDS
        }

    def custom_map(self, kind: Kind) -> CustomMap:
        """How the provider holds this kind's mapped custom fields (SYN-1)."""
        from crmsync.transforms import CustomMap

        return CustomMap.of(self.values["custom_fields"][kind])

    def excluded(self, kind: Kind, crm_id: str, now: datetime) -> bool:
        """SET-4: excluded for good (no end), until a time still ahead, or again once a
        temporary inclusion ({"included_until": time}) has ended."""
        table = self.values["exclusions"][kind]
        if crm_id not in table:
            return False
        value = table[crm_id]
        if isinstance(value, Mapping):
            return bool(now >= _moment(value["included_until"]))
        return value is None or bool(now < _moment(value))

    def exclusion_ends(self, kind: Kind, crm_id: str) -> bool:
        """SET-4: the record is excluded until a set time, after which it syncs again
        (so each cycle reads it again until then)."""
        value = self.values["exclusions"][kind].get(crm_id)
        return value is not None and not isinstance(value, Mapping)

    def with_changes(self, changes: Mapping[str, Any]) -> Settings:
        return Settings(self.provider, validate(self.provider, _merge(dict(self.values), changes)))


def _moment(value: datetime | str) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _check_exclusion(kind: str, crm_id: str, value: Any) -> None:
    """None (for good), a time (excluded until then) or {"included_until": time}."""
    where = f"exclusions.{kind}.{crm_id}"
    moment = value["included_until"] if isinstance(value, Mapping) else value
    if isinstance(value, Mapping) and set(value) != {"included_until"}:
        raise SettingsError(f"{where}: expected null, a time, or {{included_until: time}}")
    if moment is None and not isinstance(value, Mapping):
        return
    try:
        aware = _moment(moment)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{where}: not a time: {moment!r}") from exc
    if not isinstance(aware, datetime) or aware.tzinfo is None:
        raise SettingsError(f"{where}: a time with its offset is needed, got {moment!r}")


def _check_bool_tree(tree: Mapping[str, Any], where: str) -> None:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            _check_bool_tree(value, f"{where}.{key}")
        elif not isinstance(value, bool):
            raise SettingsError(f"{where}.{key}: expected true or false, got {value!r}")


def validate(provider: str, values: dict[str, Any]) -> dict[str, Any]:
    """Check every value; return them unchanged or raise SettingsError naming the key."""
    if provider not in PROVIDERS:
        raise SettingsError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    for key, choices in _CHOICES.items():
        if values[key] not in choices:
            raise SettingsError(f"{key}: {values[key]!r} is not one of {', '.join(choices)}")
    for kind, direction in values["direction"].items():
        if direction not in get_args(Direction):
            raise SettingsError(
                f"direction.{kind}: {direction!r} is not one of both, "
                "crm_to_provider, provider_to_crm"
            )
    for name in ("enabled", "permissions", "confirm"):
        _check_bool_tree(values[name], name)
    for name in (
        "private_items",
        "notify_attendees",
        "update_shared_address",
        "provider_recurring_todos",
    ):
        if not isinstance(values[name], bool):
            raise SettingsError(f"{name}: expected true or false, got {values[name]!r}")
    for name, low in (
        ("window_days", 0),
        ("mass_delete_min", 1),
        ("frequency_minutes", 0),
        ("poll_minutes", 1),
        ("recurrence_years", 1),
    ):
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SettingsError(f"{name}: expected a whole number of at least {low}")
    days = values["history_days"]
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise SettingsError("history_days: expected a whole number of at least 1, or null")
    size = values["attachment_mb"]
    if size is not None and (
        not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_ATTACHMENT_MB
    ):
        raise SettingsError(
            f"attachment_mb: expected a whole number from 0 to {MAX_ATTACHMENT_MB}, or null"
        )
    ratio = values["mass_delete_ratio"]
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        raise SettingsError("mass_delete_ratio: expected a fraction above 0 and at most 1")
    not_before = values["not_before"]
    if isinstance(not_before, str):
        try:
            values["not_before"] = date.fromisoformat(not_before)
        except ValueError as exc:
            raise SettingsError(f"not_before: not a date: {not_before!r}") from exc
    elif not_before is not None and not isinstance(not_before, date):
        raise SettingsError(f"not_before: not a date: {not_before!r}")
    try:
        ZoneInfo(str(values["timezone"]))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(
            f"timezone: {values['timezone']!r} is not a time zone name (e.g. Europe/Berlin)"
        ) from exc
    group = values["contact_group"]
    if group is not None and (not isinstance(group, str) or not group.strip()):
        raise SettingsError(f"contact_group: expected a group id or null, got {group!r}")
    if "{subject}" not in values["completed_marker"]:
        raise SettingsError("completed_marker: must contain {subject}")
    for kind in KINDS:
        unknown = set(values["field_map"].get(kind, ())) - set(FIELD_NAMES[kind])
        if kind not in values["field_map"] or unknown:
            raise SettingsError(f"field_map.{kind}: unknown fields {sorted(unknown)}")
    for kind, policy in values["deletes"].items():
        for side, choice in policy.items():
            if choice not in DELETE_POLICIES:
                raise SettingsError(
                    f"deletes.{kind}.{side}: {choice!r} is not one of delete, unlink"
                )
    bad_status = set(values["todo_status"].values()) - set(BASE_DEFAULTS["todo_status"])
    if set(values["todo_status"]) != set(BASE_DEFAULTS["todo_status"]) or bad_status:
        raise SettingsError(
            "todo_status: must map each of open, in_progress, completed, cancelled to one of them"
        )
    for kind, table in values["exclusions"].items():
        if kind not in KINDS or not isinstance(table, Mapping):
            raise SettingsError(f"exclusions.{kind}: expected a record kind with a mapping")
        for crm_id, value in table.items():
            _check_exclusion(kind, crm_id, value)
    values["custom_fields"] = _custom_fields(provider, values["custom_fields"])
    return values


def _custom_fields(provider: str, table: Any) -> dict[Kind, dict[str, Any]]:
    """SYN-1: per kind, CRM custom field name -> where the provider holds it and how.
    A kind left out maps none."""
    if not isinstance(table, Mapping) or set(table) - set(KINDS):
        raise SettingsError(
            f"custom_fields: expected a mapping of {', '.join(KINDS)} to their custom fields"
        )
    out: dict[Kind, dict[str, Any]] = {}
    for kind in KINDS:
        fields = table.get(kind) or {}
        where = f"custom_fields.{kind}"
        if not isinstance(fields, Mapping):
            raise SettingsError(f"{where}: expected CRM custom field names with their mapping")
        if fields and kind not in CUSTOM_FIELD_KINDS[provider]:  # type: ignore[index]
            raise SettingsError(f"{where}: a {provider} {kind} has no place for custom fields")
        keys: dict[str, str] = {}
        for name, spec in fields.items():
            _check_custom_field(f"{where}.{name}", name, spec, keys)
        out[kind] = {name: dict(spec) for name, spec in fields.items()}
    return out


def _check_custom_field(where: str, name: Any, spec: Any, keys: dict[str, str]) -> None:
    if not isinstance(name, str) or not CUSTOM_NAME.fullmatch(name):
        raise SettingsError(f"{where}: a custom field name is a letter, then letters, digits or _")
    if not isinstance(spec, Mapping) or set(spec) - {"provider", "transform"}:
        raise SettingsError(f'{where}: expected {{"provider": key, "transform": optional}}')
    key = spec.get("provider")
    if not isinstance(key, str) or not key.strip():
        raise SettingsError(f"{where}.provider: expected the key the provider holds it under")
    if key in keys:
        raise SettingsError(f"{where}.provider: {key!r} already holds {keys[key]}")
    keys[key] = name
    from crmsync.transforms import TransformError, transform

    try:
        transform(spec.get("transform"))
    except TransformError as exc:
        raise SettingsError(f"{where}.transform: {exc}") from exc


def resolve(
    provider: str,
    tenant: Mapping[str, Any] | None = None,
    user: Mapping[str, Any] | None = None,
) -> Settings:
    """Provider defaults, then tenant defaults (SET-2), then the user's choices (SET-1)."""
    if provider not in PROVIDERS:
        raise SettingsError(f"provider {provider!r} is not one of {', '.join(PROVIDERS)}")
    values = _merge(BASE_DEFAULTS, PROVIDER_DEFAULTS[provider])
    values = _merge(values, tenant or {})
    values = _merge(values, user or {})
    return Settings(provider, validate(provider, values))


SERVICES: tuple[str, ...] = ("sync", "mail")  # what a user may connect: sync and/or mail


@dataclass(frozen=True)
class TenantSettings:
    """What a tenant admin sets for everyone (SET-2)."""

    defaults: Mapping[str, Any]
    providers: tuple[Provider, ...] = PROVIDERS
    services: tuple[str, ...] = SERVICES
    seats: int = 10

    def __post_init__(self) -> None:
        unknown = set(self.providers) - set(PROVIDERS)
        if unknown:
            raise SettingsError(f"providers: unknown {sorted(unknown)}")
        if not self.services or not set(self.services) <= set(SERVICES):
            raise SettingsError("services: expected sync and/or mail")
        if not self.providers:
            raise SettingsError("providers: allow at least one")
        for provider in self.providers:
            resolve(provider, self.defaults)

    def for_user(self, provider: str, user: Mapping[str, Any] | None = None) -> Settings:
        if provider not in self.providers:
            raise SettingsError(f"provider {provider!r} is not allowed for this tenant")
        return resolve(provider, self.defaults, user)


def category(kind: Kind, activity_type: str | None) -> Category:
    """The permission-matrix row of a record (SET-3): meetings and personal are
    appointments; a call is a call also where it syncs as a task (CAL-1)."""
    if activity_type == "call":
        return "call"
    if kind == "activity":
        return "appointment"
    return kind
