"""A record with no twin gets one created on the other side (CON-4; CAL-2 and TSK-2
when nothing matched), unless direction or permissions forbid it (SET-1, SET-3), the
user wants to confirm or review it first (SET-5, CON-8), or already said no."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from crmsync.engine.deltas import view
from crmsync.engine.matching import Candidate
from crmsync.engine.pair import DIRECTION, OTHER, Pair, decision, hold
from crmsync.engine.permissions import invites, may
from crmsync.engine.plan import AccountSpec, Decision, Write
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link
from crmsync.model import Kind
from crmsync.settings import Side


def create_twin(planning: Planning, side: Side, cand: Candidate) -> Decision:
    """CON-4: an in-scope record seen only on `side` is created on the other side and
    linked; CON-8: a provider contact imported as a lead is not followed afterwards."""
    record, fields, other = cand.record, cand.fields, OTHER[side]
    pair = Pair.lone(side, record)
    refused = refused_create(planning, other, fields)
    if refused is not None:
        return decision(planning, pair, outcome="skip", reason=refused)
    key = twin_key(planning.kind, side, record.id)
    asked = confirm_new(planning, pair, side, key)
    if asked is not None:
        return asked
    seen = Link(key=key, kind=planning.kind, crm_id=None, provider_id=None).with_side(
        side,
        record.id,
        record.version,
        record.reminder,  # SYN-10: as the provider shows it
    )
    choice = planning.ctx.resolutions.get(key)
    if choice is not None and choice != side:
        note = "the user chose not to sync this record"
        link = replace(seen, state="detached", note=note)
        return decision(planning, pair, outcome="skip", reason=note, link=link)
    write = create_write(planning, other, fields, key, record.id)
    link = seen.based(dict(fields))
    if write.as_lead:  # CON-8: a lead is the CRM's to work on; it does not sync back
        link = replace(link, state="detached", note="imported into the CRM as a lead")
    return decision(
        planning,
        pair,
        outcome="create",
        direction=DIRECTION[other],
        writes=(write,),
        link=link,
        reason=f"new on the {side}",
    )


def twin_key(kind: Kind, side: Side, record_id: str) -> str:
    """The key of the link (and of the create) that gives a record of `side` its twin:
    one per record, so a create retried, resumed or planned twice makes one twin."""
    return f"{kind}-{side}-{record_id}"


def refused_create(planning: Planning, side: Side, fields: Mapping[str, Any]) -> str | None:
    """SET-1, SET-3: why nothing may be created on `side`, or None when it may."""
    if may(planning, fields, side, "create"):
        return None
    if not planning.settings.flows_to(planning.kind, side):
        return f"the sync direction does not create records on the {side}"
    return f"settings do not allow creating on the {side}"


def confirm_new(planning: Planning, pair: Pair, side: Side, key: str) -> Decision | None:
    """SET-5: with confirmation of new items on, a new record waits in the queue;
    CON-8: so does a new provider contact when new contacts go to a review list."""
    s = planning.settings
    if planning.ctx.resolutions.get(key) is not None:
        return None
    review = planning.kind == "contact" and side == "provider" and s["new_contacts"] == "review"
    if not (review or s["confirm"]["new"]):
        return None
    summary = f"new on the {side}: waiting for {'review' if review else 'confirmation'}"
    return hold(planning, pair, key, "review" if review else "confirm_new", side, summary=summary)


def create_write(
    planning: Planning, side: Side, fields: Mapping[str, Any], key: str, ref: str | None
) -> Write:
    """The create on `side`, keyed for idempotency (SYN-4) and carrying its twin's id
    (SYN-9). CON-5: a contact created in the CRM comes with the account it joins, named
    after its company or else "Last, First"; CON-8: it may be created as a lead. SYN-8:
    a provider event invites attendees only if the user asked for it."""
    account = None
    kind, s = planning.kind, planning.settings
    if side == "crm" and kind == "contact":
        name = fields["company"] or ", ".join(
            part for part in (fields["last_name"], fields["first_name"]) if part
        )
        account = AccountSpec(name=name or "(no name)", manager=planning.ctx.user)
    return Write(
        side,
        "create",
        kind,
        fields=view(planning, side, fields),
        key=key,
        ref=ref,
        in_scope=True,
        account=account,
        as_lead=side == "crm" and kind == "contact" and s["new_contacts"] == "lead",
        notify=side == "provider" and invites(planning, fields),
    )
