"""The planner: records seen on both sides, links and settings in; decisions out.

`reconcile` is a pure function. It reads only what it is given (no clock, no I/O), and
its work is proportional to the records that changed: links are looked up by id.

It builds no reference cycles, so the cyclic garbage collector is paused while it runs:
with a hundred thousand changes in memory, collector passes over the growing heap cost
more than the planning itself. Reference counting still frees everything as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from crmsync.engine.admit import new_record_reason
from crmsync.engine.lens import BLANK, crm_view, lift_provider, provider_view
from crmsync.engine.matching import Candidate, match
from crmsync.engine.merge import merge
from crmsync.engine.plan import AccountSpec, Decision, Hold, HoldReason, Plan, Write
from crmsync.engine.records import Context, Link, SideRecord
from crmsync.model import FIELD_NAMES, Kind
from crmsync.settings import Side, category

OTHER: dict[Side, Side] = {"crm": "provider", "provider": "crm"}
_DIRECTION = {"crm": "to_crm", "provider": "to_provider"}


class LinkIndex(Protocol):
    def by_crm(self, crm_id: str) -> Link | None: ...
    def by_provider(self, provider_id: str) -> Link | None: ...


@dataclass
class Links:
    """A LinkIndex over links already in memory."""

    crm: dict[str, Link] = field(default_factory=dict)
    provider: dict[str, Link] = field(default_factory=dict)

    @classmethod
    def of(cls, links: Iterable[Link]) -> Links:
        index = cls()
        for link in links:
            if link.crm_id:
                index.crm[link.crm_id] = link
            if link.provider_id:
                index.provider[link.provider_id] = link
        return index

    def by_crm(self, crm_id: str) -> Link | None:
        return self.crm.get(crm_id)

    def by_provider(self, provider_id: str) -> Link | None:
        return self.provider.get(provider_id)


@contextmanager
def _collector_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@_collector_paused()
def reconcile(
    kind: Kind,
    crm_changes: Iterable[SideRecord],
    provider_changes: Iterable[SideRecord],
    links: LinkIndex,
    ctx: Context,
) -> Plan:
    """Decide, for every record that changed on either side, what must happen."""
    if not ctx.settings.enabled(kind):
        return Plan(kind, ())
    pairs: dict[str, list[Any]] = {}
    lone_crm: list[SideRecord] = []
    lone_provider: list[SideRecord] = []
    for record in crm_changes:
        link = links.by_crm(record.id)
        if link is None:
            lone_crm.append(record)
        else:
            pairs.setdefault(link.key, [link, None, None])[1] = record
    for record in provider_changes:
        link = links.by_provider(record.id)
        if link is None:
            lone_provider.append(record)
        else:
            pairs.setdefault(link.key, [link, None, None])[2] = record
    planner = _Planner(kind, ctx)
    decisions = [d for link, c, p in pairs.values() if (d := planner.pair(link, c, p))]
    decisions.extend(planner.unlinked(lone_crm, lone_provider))
    return Plan(kind, tuple(planner.guard_mass_delete(decisions)))


def _diff(target: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in target.items() if current.get(name) != value}


class _Planner:
    """The decision table for one kind within one cycle."""

    def __init__(self, kind: Kind, ctx: Context) -> None:
        self.kind = kind
        self.ctx = ctx
        self.s = ctx.settings
        self.mapped = frozenset(self.s.mapped(kind))
        self.fields = FIELD_NAMES[kind]
        self._may: dict[tuple[Any, Side, str], bool] = {}

    # -- views ------------------------------------------------------------------
    def view(self, side: Side, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        if side == "crm":
            return crm_view(self.kind, fields, self.ctx)
        return provider_view(self.kind, fields, self.ctx)

    def provider_now(self, record: SideRecord) -> dict[str, Any]:
        assert record.fields is not None
        return {n: record.fields[n] for n in self.mapped if n in record.fields}

    def crm_delta(self, base: Mapping[str, Any], record: SideRecord) -> dict[str, Any]:
        assert record.fields is not None
        return _diff(record.fields, self.view("crm", base))

    def provider_delta(self, base: Mapping[str, Any], record: SideRecord) -> dict[str, Any]:
        now = self.provider_now(record)
        if now == self.view("provider", base):
            return {}
        return _diff(lift_provider(self.kind, now, base, self.ctx), base)

    def new_defaults(self) -> dict[str, Any]:
        defaults = dict(BLANK[self.kind])
        if self.kind == "activity":
            defaults["leader"] = self.ctx.user
        return defaults

    def lifted(self, record: SideRecord) -> dict[str, Any]:
        base = self.new_defaults()
        base.update(lift_provider(self.kind, self.provider_now(record), base, self.ctx))
        return base

    # -- policy helpers ------------------------------------------------------------
    def category(self, fields: Mapping[str, Any]) -> Any:
        return category(self.kind, fields.get("type"))

    def may(self, fields: Mapping[str, Any], side: Side, op: str) -> bool:
        """Direction (SET-1) and permission matrix (SET-3) allow `op` on `side`."""
        key = (fields.get("type"), side, op)
        allowed = self._may.get(key)
        if allowed is None:
            allowed = self.s.flows_to(self.kind, side) and self.s.allows(
                self.category(fields),
                side,
                op,  # type: ignore[arg-type]
            )
            self._may[key] = allowed
        return allowed

    def excluded_for_now(self, crm_id: str | None) -> bool:
        """A temporary exclusion: the record is read again each cycle until it ends."""
        return crm_id is not None and self.s["exclusions"][self.kind].get(crm_id) is not None

    def excluded(self, crm_id: str | None) -> bool:
        if crm_id is None:
            return False
        return self.s.excluded(self.kind, crm_id, self.ctx.now)

    def decision(
        self, pair: Link | None, c: SideRecord | None, p: SideRecord | None, **kw: Any
    ) -> Decision:
        crm_id = pair.crm_id if pair else (c.id if c else None)
        provider_id = pair.provider_id if pair else (p.id if p else None)
        kw.setdefault("direction", "none")
        return Decision(kind=self.kind, crm_id=crm_id, provider_id=provider_id, previous=pair, **kw)

    def hold(
        self,
        hold_id: str,
        reason: HoldReason,
        source: Side | None,
        link: Link | None,
        c: SideRecord | None,
        p: SideRecord | None,
        names: Iterable[str] = (),
        summary: str = "",
    ) -> Decision:
        names = tuple(names)
        item = Hold(
            id=hold_id,
            kind=self.kind,
            reason=reason,
            source=source,
            crm_id=link.crm_id if link else (c.id if c else None),
            provider_id=link.provider_id if link else (p.id if p else None),
            fields=names,
            crm_values={n: c.fields[n] for n in names if c and c.fields and n in c.fields},
            provider_values={n: p.fields[n] for n in names if p and p.fields and n in p.fields},
            summary=summary,
        )
        held = replace(link, state="conflict") if link else None
        outcome = "conflict" if reason == "conflict" else "hold"
        return self.decision(
            link, c, p, outcome=outcome, hold=item, link=held, reason=summary, changed=names
        )

    # -- linked pairs ---------------------------------------------------------------
    def pair(self, link: Link, c: SideRecord | None, p: SideRecord | None) -> Decision | None:
        if c is not None and c.version == link.crm_version and not c.gone:
            c = None  # our own write coming back, or a record we already saw
        if p is not None and p.version == link.provider_version and not p.gone:
            p = None
        if c is None and p is None:
            return None
        if link.state in ("creating", "applying"):
            return self.decision(
                link,
                c,
                p,
                outcome="skip",
                link=link,
                retry=True,
                reason="an earlier write to this record is still unfinished",
            )
        broken = next((r for r in (c, p) if r is not None and r.error), None)
        if broken is not None:
            return self.decision(
                link, c, p, outcome="fail", link=link, retry=True, reason=broken.error or ""
            )
        c_gone = c is not None and c.gone
        p_gone = p is not None and p.gone
        if link.state == "detached":
            if c_gone or p_gone:
                return self.decision(
                    link, c, p, outcome="unlink", dropped=link, reason="a detached record is gone"
                )
            return self.decision(link, c, p, outcome="skip", link=link, reason=link.note)
        if self.excluded(link.crm_id):
            return self.decision(
                link,
                c,
                p,
                outcome="skip",
                link=link,
                retry=self.excluded_for_now(link.crm_id),
                reason="excluded from sync by the user",
            )
        if c_gone and p_gone:
            return self.decision(
                link, c, p, outcome="unlink", dropped=link, reason="deleted on both sides"
            )
        if c_gone or p_gone:
            return self.gone(link, c, p, "crm" if c_gone else "provider")
        c_delta = self.crm_delta(link.base, c) if c else {}
        p_delta = self.provider_delta(link.base, p) if p else {}
        return self.update(link, c, p, c_delta, p_delta, "update")

    def update(
        self,
        link: Link,
        c: SideRecord | None,
        p: SideRecord | None,
        c_delta: dict[str, Any],
        p_delta: dict[str, Any],
        outcome: str,
        confirmed: bool = False,
    ) -> Decision:
        base = link.base
        choice = self.ctx.resolutions.get(link.key)
        policy = {"crm": "crm_wins", "provider": "provider_wins"}.get(
            choice or "", self.s["conflict_policy"]
        )
        m = merge(
            base, c_delta, p_delta, policy, c.modified if c else None, p.modified if p else None
        )
        if m.held:
            return self.hold(
                link.key,
                "conflict",
                None,
                link,
                c,
                p,
                m.conflicts,
                f"changed on both sides: {', '.join(m.conflicts)}",
            )
        if self.kind == "activity" and self.declined_now(base, m.merged):
            return self.remove_declined(link, c, p, m.merged)
        if (
            self.kind == "activity"
            and m.from_provider
            and base["leader"] not in (None, self.ctx.user)
        ):
            return self.fork(link, c, p, m.merged)
        crm_target = {**base, **c_delta, **{n: m.merged[n] for n in m.from_provider}}
        prov_target = {**base, **p_delta, **{n: m.merged[n] for n in m.from_crm}}
        crm_now = c.fields if c and c.fields else self.view("crm", base)
        prov_now = self.provider_now(p) if p else self.view("provider", base)
        crm_patch = _diff(self.view("crm", crm_target), crm_now)
        prov_patch = _diff(self.view("provider", prov_target), prov_now)
        crm_ok = not crm_patch or self.may(m.merged, "crm", "update")
        prov_ok = not prov_patch or self.may(m.merged, "provider", "update")
        if (
            self.s["confirm"]["modified"]
            and not confirmed
            and ((crm_patch and crm_ok) or (prov_patch and prov_ok))
        ):
            source: Side | None = (
                "provider"
                if crm_patch and not prov_patch
                else ("crm" if prov_patch and not crm_patch else None)
            )
            if choice is None:
                return self.hold(
                    link.key,
                    "confirm_modified",
                    source,
                    link,
                    c,
                    p,
                    sorted(set(crm_patch) | set(prov_patch)),
                    "waiting for confirmation of a modification",
                )
            if source is not None and choice != source:  # rejected: the other side's state wins
                deltas = {"crm": c_delta, "provider": p_delta}
                deltas[source] = {}
                return self.update(link, c, p, deltas["crm"], deltas["provider"], outcome, True)
        writes: list[Write] = []
        if crm_patch and crm_ok:
            writes.append(
                Write(
                    "crm",
                    "update",
                    self.kind,
                    link.crm_id,
                    crm_patch,
                    c.version if c else link.crm_version,
                    shared_address=self.s["update_shared_address"],
                    prior={n: crm_now.get(n) for n in crm_patch},
                )
            )
        if prov_patch and prov_ok:
            writes.append(
                Write(
                    "provider",
                    "update",
                    self.kind,
                    link.provider_id,
                    prov_patch,
                    p.version if p else link.provider_version,
                    notify=self.s["notify_attendees"],
                    prior={n: prov_now.get(n) for n in prov_patch},
                )
            )
        crm_end = crm_target if crm_ok else {**base, **c_delta}
        prov_end = prov_target if prov_ok else {**base, **p_delta}
        new_base = {  # a custom field new to this link's base joins it (SYN-1)
            n: crm_end[n] if n not in self.mapped or crm_end[n] == prov_end.get(n) else base.get(n)
            for n in crm_end
        }
        new_link = link.agreed(
            new_base,
            c.version if c else link.crm_version,
            p.version if p else link.provider_version,
        )
        blocked = [
            side
            for side, patch, ok in (("CRM", crm_patch, crm_ok), ("provider", prov_patch, prov_ok))
            if patch and not ok
        ]
        reason = f"settings do not allow updating on the {' and '.join(blocked)}" if blocked else ""
        changed = tuple(sorted(set(crm_patch) | set(prov_patch)))
        summary = {
            n: (base.get(n), m.merged[n])
            for n in sorted(set(c_delta) | set(p_delta))
            if base.get(n) != m.merged[n]
        }
        if not writes:
            return self.decision(
                link,
                c,
                p,
                outcome="skip" if blocked else "none",
                link=new_link,
                reason=reason,
                changed=changed,
            )
        sides = {w.side for w in writes}
        direction = "both" if len(sides) == 2 else _DIRECTION[next(iter(sides))]
        return self.decision(
            link,
            c,
            p,
            outcome=outcome,
            direction=direction,
            writes=tuple(writes),
            link=new_link,
            reason=reason,
            changed=changed,
            summary=summary,
        )

    def declined_now(self, base: Mapping[str, Any], merged: Mapping[str, Any]) -> bool:
        return bool(
            self.s["declined"] == "skip_then_remove"
            and merged["status"] == "declined"
            and base["status"] != "declined"
        )

    def remove_declined(
        self, link: Link, c: SideRecord | None, p: SideRecord | None, merged: Mapping[str, Any]
    ) -> Decision:
        """CAL-7: declined after the first sync leaves the user's calendar on both sides."""
        writes = [
            Write(
                "provider",
                "delete",
                self.kind,
                link.provider_id,
                version=p.version if p else link.provider_version,
            )
        ]
        if merged["leader"] in (None, self.ctx.user):
            writes.append(
                Write(
                    "crm",
                    "delete",
                    self.kind,
                    link.crm_id,
                    version=c.version if c else link.crm_version,
                )
            )
        else:
            members = tuple(m for m in merged["members"] if m != self.ctx.user)
            writes.append(
                Write(
                    "crm",
                    "update",
                    self.kind,
                    link.crm_id,
                    {"members": members},
                    version=c.version if c else link.crm_version,
                )
            )
        return self.decision(
            link,
            c,
            p,
            outcome="delete",
            direction="both",
            writes=tuple(writes),
            dropped=link,
            reason="declined: removed from the user's calendar",
        )

    def fork(
        self, link: Link, c: SideRecord | None, p: SideRecord | None, merged: Mapping[str, Any]
    ) -> Decision:
        """CAL-6: a member who edits the leader's activity gets a copy of their own."""
        assert p is not None
        copy = {**merged, "leader": self.ctx.user, "members": ()}
        key = f"{link.key}:copy:{p.version}"
        members = tuple(m for m in link.base["members"] if m != self.ctx.user)
        writes = (
            Write("crm", "create", self.kind, fields=self.view("crm", copy), key=key, ref=p.id),
            Write(
                "crm",
                "update",
                self.kind,
                link.crm_id,
                {"members": members},
                version=c.version if c else link.crm_version,
            ),
        )
        new_link = Link(
            key=key,
            kind=self.kind,
            crm_id=None,
            provider_id=link.provider_id,
            provider_version=p.version,
            base=copy,
        )
        return self.decision(
            link,
            c,
            p,
            outcome="create",
            direction="to_crm",
            writes=writes,
            link=new_link,
            dropped=link,
            reason="a member edited the leader's activity: own copy",
        )

    # -- one side gone ----------------------------------------------------------------
    def gone(
        self, link: Link, c: SideRecord | None, p: SideRecord | None, gone_side: Side
    ) -> Decision:
        other = OTHER[gone_side]
        survivor = p if gone_side == "crm" else c
        delta: dict[str, Any] = {}
        if survivor is not None:
            delta = (
                self.crm_delta(link.base, survivor)
                if other == "crm"
                else self.provider_delta(link.base, survivor)
            )
        choice = self.ctx.resolutions.get(link.key)
        if delta or choice == other:  # SYN-7: an edit beats a delete
            return self.restore(link, c, p, gone_side, {**link.base, **delta})
        if self.s["confirm"]["deleted"] and choice is None:
            return self.hold(
                link.key,
                "confirm_deleted",
                gone_side,
                link,
                c,
                p,
                summary=f"deleted on the {gone_side}: waiting for confirmation",
            )
        gone = c if gone_side == "crm" else p
        assert gone is not None
        write, reason = self.propagate_gone(link, gone, survivor, gone_side)
        if write is None:
            return self.detach(link, c, p, reason)
        if not self.may(link.base, other, "delete" if write.op == "delete" else "update"):
            return self.detach(link, c, p, f"settings do not allow deleting on the {other}")
        outcome = "delete" if write.op == "delete" else "unlink"
        return self.decision(
            link,
            c,
            p,
            outcome=outcome,
            direction=_DIRECTION[other],
            writes=(write,),
            dropped=link,
            reason=reason,
        )

    def propagate_gone(
        self, link: Link, gone: SideRecord, survivor: SideRecord | None, gone_side: Side
    ) -> tuple[Write | None, str]:
        other = OTHER[gone_side]
        target = link.side_id(other)
        version = survivor.version if survivor else link.side_version(other)
        delete = Write(other, "delete", self.kind, target, version=version)
        if self.kind != "contact":
            return delete, f"deleted on the {gone_side}"
        behaviour = self.s["contact_delete"]
        if behaviour == "ignore":
            return None, f"gone on the {gone_side}; deletes are ignored by settings"
        unscope = Write(other, "scope", self.kind, target, version=version, in_scope=False)
        if gone.fields is not None:  # left the sync scope rather than deleted
            if gone_side == "crm":  # CON-6: removed from the sync group
                return delete, "removed from the contact sync group"
            return unscope, "the sync label was removed"
        if behaviour == "delete":
            return delete, f"deleted on the {gone_side}"
        return unscope, f"deleted on the {gone_side}: unlinked"

    def detach(
        self, link: Link, c: SideRecord | None, p: SideRecord | None, reason: str
    ) -> Decision:
        return self.decision(
            link,
            c,
            p,
            outcome="unlink",
            reason=reason,
            link=replace(link, state="detached", note=reason),
        )

    def restore(
        self,
        link: Link,
        c: SideRecord | None,
        p: SideRecord | None,
        gone_side: Side,
        target: dict[str, Any],
    ) -> Decision:
        survivor = p if gone_side == "crm" else c
        if not self.may(target, gone_side, "create"):
            return self.detach(
                link,
                c,
                p,
                f"edited on one side, deleted on the {gone_side}; "
                f"settings do not allow re-creating it there",
            )
        version = survivor.version if survivor else link.side_version(OTHER[gone_side])
        key = f"{link.key}:restore:{version}"
        write = self.create_write(gone_side, target, key, link.side_id(OTHER[gone_side]))
        new_link = replace(link.with_side(gone_side, None, None), base=target, state="linked")
        new_link = new_link.with_side(OTHER[gone_side], link.side_id(OTHER[gone_side]), version)
        return self.decision(
            link,
            c,
            p,
            outcome="restore",
            direction=_DIRECTION[gone_side],
            writes=(write,),
            link=new_link,
            reason=f"edited on the {OTHER[gone_side]}, deleted on the {gone_side}: the edit wins",
        )

    def create_write(
        self, side: Side, fields: Mapping[str, Any], key: str, ref: str | None
    ) -> Write:
        account = None
        if side == "crm" and self.kind == "contact":
            name = fields["company"] or ", ".join(
                part for part in (fields["last_name"], fields["first_name"]) if part
            )
            account = AccountSpec(name=name or "(no name)", manager=self.ctx.user)
        return Write(
            side,
            "create",
            self.kind,
            fields=self.view(side, fields),
            key=key,
            ref=ref,
            in_scope=True,
            account=account,
            as_lead=side == "crm" and self.kind == "contact" and self.s["new_contacts"] == "lead",
            notify=side == "provider" and self.s["notify_attendees"],
        )

    # -- records with no link --------------------------------------------------------
    def unlinked(self, crm: list[SideRecord], provider: list[SideRecord]) -> list[Decision]:
        """Records with no link: match them across sides, else create their twins.

        Contacts outside the sync scope (not in the group, no label) are offered as
        match targets only, so a group member whose twin exists unlabelled is linked and
        labelled rather than copied (CON-3); they never create anything themselves.
        """
        decisions: list[Decision] = []
        cands: dict[Side, list[Candidate]] = {"crm": [], "provider": []}
        outside: dict[Side, list[Candidate]] = {"crm": [], "provider": []}
        sides: tuple[tuple[Side, list[SideRecord]], ...] = (("crm", crm), ("provider", provider))
        for side, records in sides:
            for record in records:
                if record.error:
                    pair = (record, None) if side == "crm" else (None, record)
                    decisions.append(
                        self.decision(None, *pair, outcome="fail", reason=record.error, retry=True)
                    )
                    continue
                if record.fields is None:
                    continue
                fields = record.fields if side == "crm" else self.lifted(record)
                cand = Candidate(record, fields)
                if not record.in_scope:
                    if self.kind == "contact":
                        outside[side].append(cand)
                    continue
                skipped = self.admit(side, cand)
                if skipped is not None:
                    decisions.append(skipped)
                else:
                    cands[side].append(cand)
        found = match(
            self.kind, cands["crm"] + outside["crm"], cands["provider"] + outside["provider"]
        )
        decisions.extend(
            self.matched(c, p) for c, p in found.pairs if c.record.in_scope or p.record.in_scope
        )
        decisions.extend(self.new("crm", c) for c in found.crm_alone if c.record.in_scope)
        decisions.extend(self.new("provider", p) for p in found.provider_alone if p.record.in_scope)
        for c, p in found.near_duplicates:
            if c.record.in_scope or p.record.in_scope:
                decisions.append(
                    self.decision(
                        None,
                        c.record,
                        p.record,
                        outcome="skip",
                        reason="possible duplicate: same name and phone, different e-mail; "
                        "not merged",
                    )
                )
        return decisions

    def admit(self, side: Side, cand: Candidate) -> Decision | None:
        """A skip decision when an unlinked record stays out of sync, else None."""
        record = cand.record
        reason = new_record_reason(self.kind, side, cand.fields, record.modified, self.ctx)
        retry = False
        if reason is None and side == "crm" and self.excluded(record.id):
            reason = "excluded from sync by the user"
            retry = self.excluded_for_now(record.id)
        if reason is None:
            return None
        c, p = (record, None) if side == "crm" else (None, record)
        return self.decision(None, c, p, outcome="skip", reason=reason, retry=retry)

    def matched(self, c: Candidate, p: Candidate) -> Decision:
        crm_fields = dict(c.fields)
        seen = lift_provider(self.kind, self.provider_now(p.record), crm_fields, self.ctx)
        differing = [n for n, value in seen.items() if crm_fields.get(n) != value]
        link = Link(
            key=f"{self.kind}-crm-{c.record.id}",
            kind=self.kind,
            crm_id=c.record.id,
            provider_id=p.record.id,
            base=crm_fields,
        )
        decision = self.update(
            link,
            c.record,
            p.record,
            {n: crm_fields.get(n) for n in differing},
            {n: seen[n] for n in differing},
            "link",
        )
        if decision.hold is not None:
            return decision
        both: tuple[tuple[Side, SideRecord], ...] = (("crm", c.record), ("provider", p.record))
        scope = tuple(
            Write(side, "scope", self.kind, record.id, in_scope=True)
            for side, record in both
            if not record.in_scope and self.may(crm_fields, side, "update")
        )
        return replace(decision, outcome="link", writes=decision.writes + scope)

    def new(self, side: Side, cand: Candidate) -> Decision:
        record, fields = cand.record, cand.fields
        other = OTHER[side]
        c, p = (record, None) if side == "crm" else (None, record)
        key = f"{self.kind}-{side}-{record.id}"
        reason = None
        if not self.s.flows_to(self.kind, other):
            reason = f"the sync direction does not create records on the {other}"
        elif not self.s.allows(self.category(fields), other, "create"):
            reason = f"settings do not allow creating on the {other}"
        if reason is not None:
            return self.decision(None, c, p, outcome="skip", reason=reason)
        choice = self.ctx.resolutions.get(key)
        review = (
            self.kind == "contact" and side == "provider" and self.s["new_contacts"] == "review"
        )
        if choice is None and (review or self.s["confirm"]["new"]):
            return self.hold(
                key,
                "review" if review else "confirm_new",
                side,
                None,
                c,
                p,
                summary=f"new on the {side}: waiting for {'review' if review else 'confirmation'}",
            )
        seen = Link(key=key, kind=self.kind, crm_id=None, provider_id=None).with_side(
            side, record.id, record.version
        )
        if choice is not None and choice != side:
            note = "the user chose not to sync this record"
            return self.decision(
                None,
                c,
                p,
                outcome="skip",
                reason=note,
                link=replace(seen, state="detached", note=note),
            )
        write = self.create_write(other, fields, key, record.id)
        link = replace(seen, base=dict(fields))
        if write.as_lead:  # CON-8: a lead is the CRM's to work on; it does not sync back
            link = replace(link, state="detached", note="imported into the CRM as a lead")
        return self.decision(
            None,
            c,
            p,
            outcome="create",
            direction=_DIRECTION[other],
            writes=(write,),
            link=link,
            reason=f"new on the {side}",
        )

    # -- SYN-6 ---------------------------------------------------------------------
    def guard_mass_delete(self, decisions: list[Decision]) -> list[Decision]:
        deleting = [
            i
            for i, d in enumerate(decisions)
            if any(w.op == "delete" for w in d.writes)
            and d.hold is None
            and self.ctx.resolutions.get(_key(d)) is None
        ]
        s = self.s
        if len(deleting) < s["mass_delete_min"] or (
            len(deleting) <= s["mass_delete_ratio"] * self.ctx.linked_count
        ):
            return decisions
        out = list(decisions)
        note = (
            f"{len(deleting)} deletes of {self.ctx.linked_count} linked {self.kind} "
            "records in one cycle: waiting for confirmation"
        )
        for i in deleting:
            d = decisions[i]
            link = d.dropped or d.link
            item = Hold(
                id=_key(d),
                kind=self.kind,
                reason="mass_delete",
                source=None,
                crm_id=d.crm_id,
                provider_id=d.provider_id,
                summary=note,
            )
            out[i] = replace(
                d,
                outcome="hold",
                writes=(),
                hold=item,
                dropped=None,
                link=replace(link, state="conflict") if link else None,
                direction="none",
                reason=note,
            )
        return out


def _key(decision: Decision) -> str:
    link = decision.dropped or decision.link
    return link.key if link else f"{decision.kind}-{decision.crm_id}-{decision.provider_id}"
