"""One pair as a cycle sees it (the link, if any, and what each side reported), and how
a Decision or a Hold about a pair is built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal, NamedTuple

from crmsync.engine.deltas import view
from crmsync.engine.lens import BLANK
from crmsync.engine.plan import Decision, Hold, HoldReason
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link, SideRecord
from crmsync.settings import Side

OTHER: dict[Side, Side] = {"crm": "provider", "provider": "crm"}
DIRECTION: dict[Side, Literal["to_crm", "to_provider"]] = {
    "crm": "to_crm",
    "provider": "to_provider",
}


class Pair(NamedTuple):
    """A CRM record and its provider twin. `link` is None while they are not linked;
    `crm` or `provider` is None when that side reported nothing new this cycle.

    Immutable. A named tuple rather than a frozen dataclass: one is built for every
    changed record, and a frozen dataclass costs twice as much to build."""

    link: Link | None
    crm: SideRecord | None = None
    provider: SideRecord | None = None

    @classmethod
    def lone(cls, side: Side, record: SideRecord) -> Pair:
        """A record with no link and no twin (yet)."""
        return cls(None, record, None) if side == "crm" else cls(None, None, record)

    @property
    def linked(self) -> Link:
        """The stored link; only rules for linked pairs ask for it."""
        assert self.link is not None
        return self.link

    @property
    def key(self) -> str:
        return self.linked.key

    @property
    def crm_id(self) -> str | None:
        if self.link is not None:
            return self.link.crm_id
        return self.crm.id if self.crm is not None else None

    @property
    def provider_id(self) -> str | None:
        if self.link is not None:
            return self.link.provider_id
        return self.provider.id if self.provider is not None else None

    def side_id(self, side: Side) -> str | None:
        return self.crm_id if side == "crm" else self.provider_id

    def record(self, side: Side) -> SideRecord | None:
        return self.crm if side == "crm" else self.provider

    def version(self, side: Side) -> str | None:
        """The version a write to `side` must match: the one just seen, else the link's."""
        record = self.crm if side == "crm" else self.provider
        if record is not None:
            return record.version
        assert self.link is not None
        return self.link.crm_version if side == "crm" else self.link.provider_version

    def gone(self, side: Side) -> bool:
        record = self.crm if side == "crm" else self.provider
        return record is not None and record.gone


def decision(planning: Planning, pair: Pair, **kw: Any) -> Decision:
    """A decision about `pair`; `direction` is "none" unless given."""
    kw.setdefault("direction", "none")
    return Decision(
        kind=planning.kind,
        crm_id=pair.crm_id,
        provider_id=pair.provider_id,
        previous=pair.link,
        **kw,
    )


def hold(
    planning: Planning,
    pair: Pair,
    hold_id: str,
    reason: HoldReason,
    source: Side | None,
    names: Iterable[str] = (),
    summary: str = "",
) -> Decision:
    """SYN-2 manual conflicts and SET-5 confirmations: the pair waits in the user's
    queue with both sides' values of `names` (of the whole record when no fields are
    named: a new or deleted record, so a person can tell which it is); the link is
    marked in conflict."""
    names = tuple(names)
    crm_now, provider_now = holds(planning, pair, "crm"), holds(planning, pair, "provider")
    shown = names or shown_fields(planning, crm_now, provider_now)
    item = Hold(
        id=hold_id,
        kind=planning.kind,
        reason=reason,
        source=source,
        crm_id=pair.crm_id,
        provider_id=pair.provider_id,
        fields=names,
        crm_values={n: crm_now[n] for n in shown if n in crm_now},
        provider_values={n: provider_now[n] for n in shown if n in provider_now},
        summary=summary,
    )
    held = replace(pair.link, state="conflict") if pair.link else None
    outcome = "conflict" if reason == "conflict" else "hold"
    return decision(
        planning, pair, outcome=outcome, hold=item, link=held, reason=summary, changed=names
    )


def detach(planning: Planning, pair: Pair, reason: str) -> Decision:
    """The link stays, detached: neither side follows the other any more."""
    link = replace(pair.linked, state="detached", note=reason)
    return decision(planning, pair, outcome="unlink", reason=reason, link=link)


def holds(planning: Planning, pair: Pair, side: Side) -> Mapping[str, Any]:
    """What `side` holds of the pair, as it holds it: the record it reported, or when it
    reported nothing new its view of the agreed base; nothing when it is deleted."""
    record = pair.record(side)
    if record is None:
        return view(planning, side, pair.link.base) if pair.link is not None else {}
    return record.fields or {}


def shown_fields(planning: Planning, *sides: Mapping[str, Any]) -> tuple[str, ...]:
    """The mapped fields that hold a value on either side (not a blank default): what
    tells a person which record it is."""
    blank = BLANK[planning.kind]
    return tuple(
        sorted(
            {
                name
                for values in sides
                for name, value in values.items()
                if name in planning.mapped
                and value not in (None, "", (), [])
                and value != blank.get(name)
            }
        )
    )
