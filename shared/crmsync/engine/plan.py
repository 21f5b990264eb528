"""What the planner returns: per pair of records, a decision of remote writes, the
link to keep afterwards, and what to record in the history.

These are plain (unfrozen) slotted classes: the planner builds one or two per changed
record, and frozen dataclasses cost several times more to construct. Nothing mutates
them after the planner returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from crmsync.engine.records import Link
from crmsync.model import Kind
from crmsync.settings import Side

WriteOp: TypeAlias = Literal["create", "update", "delete", "scope"]
Outcome: TypeAlias = Literal[
    "create",
    "update",
    "delete",
    "link",
    "unlink",
    "restore",
    "hold",
    "conflict",
    "skip",
    "fail",
    "none",
]
HoldReason: TypeAlias = Literal[
    "conflict",
    "confirm_new",
    "confirm_modified",
    "confirm_deleted",
    "mass_delete",
    "review",
]


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """The account a contact created in the CRM is attached to (CON-5)."""

    name: str
    type: str = "Prospect"
    status: str = "Active"
    owner: str = "Everyone"
    manager: str | None = None


@dataclass(slots=True)
class Write:
    """One remote write. `fields` are in the receiving side's own view; for an update
    only the fields that change. `version` is the If-Match precondition."""

    side: Side
    op: WriteOp
    kind: Kind
    target: str | None = None
    fields: Mapping[str, Any] | None = None
    version: str | None = None
    key: str | None = None
    ref: str | None = None  # the twin's id, kept on the created record (SYN-9)
    in_scope: bool | None = None
    account: AccountSpec | None = None
    as_lead: bool = False
    notify: bool = False
    shared_address: bool = False
    prior: Mapping[str, Any] | None = None  # what the target held for these fields


@dataclass(slots=True)
class Hold:
    """An item waiting in the user's queue: a manual conflict or a confirmation (SET-5)."""

    id: str
    kind: Kind
    reason: HoldReason
    source: Side | None  # the side whose change waits; None for a two-sided conflict
    crm_id: str | None
    provider_id: str | None
    fields: tuple[str, ...] = ()
    crm_values: Mapping[str, Any] = field(default_factory=dict)
    provider_values: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""


@dataclass(slots=True)
class Intent:
    """Journal of a decision's updates, deletes and scope changes, stored on the link
    before they run, so a killed run can tell which of them happened (SYN-4)."""

    previous: Link
    writes: tuple[Write, ...]
    keeps_link: bool


@dataclass(slots=True)
class Decision:
    """What happens to one pair. The cycle runs `writes` in order, then stores `link`
    (or drops `dropped` when `link` is None), then records the history item."""

    kind: Kind
    outcome: Outcome
    direction: Literal["to_crm", "to_provider", "both", "none"]
    crm_id: str | None
    provider_id: str | None
    writes: tuple[Write, ...] = ()
    link: Link | None = None
    dropped: Link | None = None
    hold: Hold | None = None
    reason: str = ""
    changed: tuple[str, ...] = ()
    retry: bool = False
    previous: Link | None = None
    summary: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    kind: Kind
    decisions: tuple[Decision, ...]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for decision in self.decisions:
            out[decision.outcome] = out.get(decision.outcome, 0) + 1
        return out
