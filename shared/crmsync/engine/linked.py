"""A linked pair with news from either side: a decision table whose first row that
applies decides. Gone records go on to deletes.py, edits to update.py."""

from __future__ import annotations

from crmsync.engine.deletes import one_side_gone
from crmsync.engine.deltas import crm_delta, provider_delta
from crmsync.engine.pair import Pair, decision
from crmsync.engine.permissions import excluded, excluded_for_now
from crmsync.engine.plan import Decision
from crmsync.engine.planning import Planning
from crmsync.engine.records import Link, SideRecord
from crmsync.engine.update import update


def news(link: Link, crm: SideRecord | None, provider: SideRecord | None) -> Pair | None:
    """Our own writes are recognised when they come back (SYN-4): a record still at the
    version the link holds is no news. None when neither side has any."""
    if crm is not None and crm.version == link.crm_version and not crm.gone:
        crm = None
    if provider is not None and provider.version == link.provider_version and not provider.gone:
        provider = None
    if crm is None and provider is None:
        return None
    return Pair(link, crm, provider)


def decide_linked(planning: Planning, pair: Pair) -> Decision:
    """The decision table for a linked pair with news: the first row that applies."""
    link = pair.linked
    if link.state in ("creating", "applying"):
        return unfinished(planning, pair)
    broken = next((r for r in (pair.crm, pair.provider) if r is not None and r.error), None)
    if broken is not None:
        return unreadable(planning, pair, broken.error or "")
    crm_gone, provider_gone = pair.gone("crm"), pair.gone("provider")
    if link.state == "detached":
        return detached_link(planning, pair, crm_gone or provider_gone)
    if excluded(planning, link.crm_id):
        return excluded_record(planning, pair)
    if crm_gone and provider_gone:
        return gone_on_both(planning, pair)
    if crm_gone or provider_gone:
        return one_side_gone(planning, pair, "crm" if crm_gone else "provider")
    return edited(planning, pair)


def unfinished(planning: Planning, pair: Pair) -> Decision:
    """SYN-4: a write journaled on the link is unfinished: retry once it is done. The
    link stays as the journal keeps it, with the write it holds."""
    reason = "an earlier write to this record is still unfinished"
    return decision(planning, pair, outcome="skip", retry=True, reason=reason)


def unreadable(planning: Planning, pair: Pair, error: str) -> Decision:
    """SYN-5: a record that could not be read fails alone and is retried next cycle."""
    return decision(planning, pair, outcome="fail", link=pair.link, retry=True, reason=error)


def detached_link(planning: Planning, pair: Pair, gone: bool) -> Decision:
    """A detached pair (the user said no, a CON-8 lead, a delete settings refused) is
    left alone; the link goes once either record is gone."""
    link = pair.linked
    if gone:
        reason = "a detached record is gone"
        return decision(planning, pair, outcome="unlink", dropped=link, reason=reason)
    return decision(planning, pair, outcome="skip", link=link, reason=link.note)


def excluded_record(planning: Planning, pair: Pair) -> Decision:
    """SET-4: a record on the user's exception list is never touched; a temporary
    exclusion is looked at again next cycle."""
    return decision(
        planning,
        pair,
        outcome="skip",
        link=pair.link,
        retry=excluded_for_now(planning, pair.crm_id),
        reason="excluded from sync by the user",
    )


def gone_on_both(planning: Planning, pair: Pair) -> Decision:
    """Deleted on both sides: nothing to write, the link goes."""
    reason = "deleted on both sides"
    return decision(planning, pair, outcome="unlink", dropped=pair.link, reason=reason)


def edited(planning: Planning, pair: Pair) -> Decision:
    """Edits on one side or both, each read against the link's base (update.py)."""
    base = pair.linked.base
    c_delta = crm_delta(planning, base, pair.crm) if pair.crm else {}
    p_delta = provider_delta(planning, base, pair.provider) if pair.provider else {}
    return update(planning, pair, c_delta, p_delta, "update")
