"""What the planner is given: records seen on each side, links, and the cycle's context."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeAlias

from crmsync.model import CUSTOM, CustomField, Kind
from crmsync.settings import Settings, Side

LinkState: TypeAlias = Literal["linked", "creating", "applying", "conflict", "detached"]


@dataclass(frozen=True, slots=True)
class SideRecord:
    """One record as a change feed (or a direct read) reported it.

    `fields` is None when the record is gone. `in_scope` is False when the record
    still exists but left the sync scope (removed from the contact sync group, or the
    provider label was taken off). `ref` is the link key a record carries when crmsync
    created it (kept in the provider's extended properties or the CRM's client key).
    `error` says why the record could not be read into canonical form (SYN-5).
    `reminder` is the state of its reminder as the provider shows it (an opaque token:
    set, snoozed, dismissed), which the user changes without editing the record (SYN-10).
    """

    id: str
    version: str
    fields: Mapping[str, Any] | None
    modified: datetime | None = None
    in_scope: bool = True
    ref: str | None = None
    error: str | None = None
    reminder: str | None = None

    @property
    def gone(self) -> bool:
        return self.fields is None or not self.in_scope


@dataclass(frozen=True, slots=True)
class Link:
    """The stored pairing of one CRM record with one provider record.

    `base` holds the last field values both sides agreed on (canonical form; for a
    field truncated in the CRM it keeps the provider's full text, SYN-3). Versions are
    those our own last writes produced, so a change feed echo of them is recognised.
    `reminder` is the provider record's reminder as last seen (SYN-10).
    """

    key: str
    kind: Kind
    crm_id: str | None
    provider_id: str | None
    crm_version: str | None = None
    provider_version: str | None = None
    base: Mapping[str, Any] = field(default_factory=dict)
    state: LinkState = "linked"
    pending: Any = None  # the journaled write(s) while `creating` or `applying`
    note: str = ""
    reminder: str | None = None

    def agreed(
        self,
        base: Mapping[str, Any],
        crm_version: str | None,
        provider_version: str | None,
        reminder: str | None = None,
    ) -> Link:
        """This link, linked again on a new agreed base (built directly: the planner
        calls it once per changed record, where `dataclasses.replace` is slow)."""
        return Link(
            self.key,
            self.kind,
            self.crm_id,
            self.provider_id,
            crm_version,
            provider_version,
            base,
            "linked",
            self.pending,
            self.note,
            reminder,
        )

    def journaled(self, state: LinkState, pending: Any) -> Link:
        """This link with the write(s) a journal entry holds (None: none)."""
        return self._kept(self.base, state, pending)

    def based(self, base: Mapping[str, Any]) -> Link:
        """This link on another agreed base, all else kept."""
        return self._kept(base, self.state, self.pending)

    def _kept(self, base: Mapping[str, Any], state: LinkState, pending: Any) -> Link:
        """Built directly, as `agreed` is: once per write of a cycle."""
        return Link(
            self.key,
            self.kind,
            self.crm_id,
            self.provider_id,
            self.crm_version,
            self.provider_version,
            base,
            state,
            pending,
            self.note,
            self.reminder,
        )

    def with_side(
        self, side: Side, record_id: str | None, version: str | None, reminder: str | None = None
    ) -> Link:
        """The link after a write on `side`: the record's id and version, and the
        provider record's reminder when the write's answer showed it (SYN-10)."""
        crm = side == "crm"
        return Link(  # built directly, as `agreed` is: once per write of a cycle
            self.key,
            self.kind,
            record_id if crm else self.crm_id,
            self.provider_id if crm else record_id,
            version if crm else self.crm_version,
            self.provider_version if crm else version,
            self.base,
            self.state,
            self.pending,
            self.note,
            reminder if reminder is not None and not crm else self.reminder,
        )

    def side_id(self, side: Side) -> str | None:
        return self.crm_id if side == "crm" else self.provider_id

    def side_version(self, side: Side) -> str | None:
        return self.crm_version if side == "crm" else self.provider_version


@dataclass(frozen=True, slots=True)
class CrmSchema:
    """What the CRM declares about itself: field length limits, capabilities, and the
    custom fields of each kind (SYN-1). A custom string field's longest length is among
    the limits too, under its canonical name (custom.<name>), so it is cut like any
    other text (SYN-3)."""

    limits: Mapping[Kind, Mapping[str, int]] = field(default_factory=dict)
    infinite_series: bool = True
    recurring_todos: bool = True
    max_recurrence_years: int | None = None  # how far a capped series may run
    custom: Mapping[Kind, Mapping[str, CustomField]] = field(default_factory=dict)

    def limit(self, kind: Kind, name: str) -> int | None:
        return self.limits.get(kind, {}).get(name)

    def declared(self, kind: Kind, name: str) -> CustomField | None:
        """The custom field of canonical name `name` (custom.<name>), if declared."""
        if not name.startswith(CUSTOM):
            return None
        return self.custom.get(kind, {}).get(name[len(CUSTOM) :])

    @classmethod
    def with_custom(cls, custom: Mapping[Kind, Iterable[CustomField]], **kw: Any) -> CrmSchema:
        """A schema with these custom fields, their longest lengths among the limits."""
        limits = {kind: dict(v) for kind, v in (kw.pop("limits", None) or {}).items()}
        table: dict[Kind, dict[str, CustomField]] = {}
        for kind, fields in custom.items():
            table[kind] = {f.name: f for f in fields}
            for f in table[kind].values():
                if f.max_length is not None:
                    limits.setdefault(kind, {})[f.key] = f.max_length
        return cls(limits=limits, custom=table, **kw)


@dataclass(frozen=True, slots=True)
class Context:
    """Everything besides the records that a decision depends on. No clock inside the
    engine: `now` is given."""

    now: datetime
    user: str
    settings: Settings
    schema: CrmSchema = CrmSchema()
    syncing_users: frozenset[str] = frozenset()
    first_cycle: bool = False
    linked_count: int = 0
    resolutions: Mapping[str, Side] = field(default_factory=dict)
    # SYN-2 manual conflicts the user settled field by field: queue item → field → side
    picks: Mapping[str, Mapping[str, Side]] = field(default_factory=dict)

    def syncs(self, user: str | None) -> bool:
        return user is not None and (user == self.user or user in self.syncing_users)
