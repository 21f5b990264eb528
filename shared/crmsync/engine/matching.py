"""Pairing records that have no link yet: first cycle, reconnect, lost cursor.

Pairs are found by the mark crmsync left on a record it created (SYN-9), then by the
kind's identity rule: e-mail for contacts (CON-3); subject, start and duration for
activities (CAL-2); subject and date for to-dos (TSK-2). Near misses are reported,
never merged: contacts with the same name and phone but another e-mail (CON-3), and
activities with the same subject on the same day at another time or length (CAL-2).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from crmsync.engine.records import SideRecord
from crmsync.model import Kind, zone

# What a pair found by matching was linked by, as a person reads it (BEY-3, HIS-1).
RULES: dict[Kind, str] = {
    "contact": "the same e-mail address (CON-3)",
    "activity": "the same subject, start, duration and user (CAL-2)",
    "todo": "the same subject and date (TSK-2)",
}
MARK = "the mark crmsync left on the record it created (SYN-9)"
NEAR: dict[Kind, str] = {
    "contact": "possible duplicate: same name and phone, different e-mail; not merged",
    "activity": "possible duplicate: same subject on the same day at another time; not merged",
}


@dataclass(frozen=True, slots=True)
class Candidate:
    record: SideRecord
    fields: Mapping[str, Any]  # canonical (the provider's lifted from its view)


@dataclass(frozen=True, slots=True)
class Matching:
    pairs: tuple[tuple[Candidate, Candidate], ...]
    crm_alone: tuple[Candidate, ...]
    provider_alone: tuple[Candidate, ...]
    near_duplicates: tuple[tuple[Candidate, Candidate], ...]


def _keys(kind: Kind, fields: Mapping[str, Any]) -> tuple[Hashable, ...]:
    if kind == "contact":
        return tuple(fields["emails"])
    subject = fields["subject"].strip().casefold()
    if kind == "activity":
        start, end = fields["start"], fields["end"]
        if start is None:
            return ()
        return ((subject, start, None if end is None else end - start),)
    day = fields["due"] or fields["start"]
    return ((subject, day),)


def rule(kind: Kind, c: Candidate, p: Candidate) -> str:
    """Which rule paired `c` with `p`: crmsync's own mark, else the kind's identity."""
    if p.record.ref == c.record.id or (c.record.ref and c.record.ref == p.record.id):
        return MARK
    return RULES[kind]


def _near_key(fields: Mapping[str, Any]) -> tuple[str, str, frozenset[str]] | None:
    phones = frozenset(p.number for p in fields["phones"])
    if not phones or not (fields["first_name"] or fields["last_name"]):
        return None
    return fields["first_name"].casefold(), fields["last_name"].casefold(), phones


def match(kind: Kind, crm: Sequence[Candidate], provider: Sequence[Candidate]) -> Matching:
    pairs: list[tuple[Candidate, Candidate]] = []
    taken_crm: set[str] = set()
    taken_provider: set[str] = set()
    by_crm_id = {c.record.id: c for c in crm}
    by_ref = {c.record.ref: c for c in crm if c.record.ref}
    for p in provider:  # our own mark first: a record crmsync created for its twin
        twin = by_crm_id.get(p.record.ref or "") or by_ref.get(p.record.id)
        if twin is not None and twin.record.id not in taken_crm:
            pairs.append((twin, p))
            taken_crm.add(twin.record.id)
            taken_provider.add(p.record.id)
    index: dict[Hashable, Candidate] = {}
    for p in provider:
        if p.record.id not in taken_provider:
            for key in _keys(kind, p.fields):
                index.setdefault(key, p)
    for c in crm:
        if c.record.id in taken_crm:
            continue
        for key in _keys(kind, c.fields):
            twin = index.get(key)
            if twin is not None and twin.record.id not in taken_provider:
                pairs.append((c, twin))
                taken_crm.add(c.record.id)
                taken_provider.add(twin.record.id)
                break
    crm_alone = tuple(c for c in crm if c.record.id not in taken_crm)
    provider_alone = tuple(p for p in provider if p.record.id not in taken_provider)
    near: tuple[tuple[Candidate, Candidate], ...] = ()
    if kind == "contact":
        near = _near_duplicates(crm_alone, provider_alone)
    elif kind == "activity":
        near = _same_day(crm_alone, provider_alone)
    return Matching(tuple(pairs), crm_alone, provider_alone, near)


def _near_duplicates(
    crm: Sequence[Candidate], provider: Sequence[Candidate]
) -> tuple[tuple[Candidate, Candidate], ...]:
    found: list[tuple[Candidate, Candidate]] = []
    by_name: dict[tuple[str, str], list[Candidate]] = {}
    for p in provider:
        key = _near_key(p.fields)
        if key is not None:
            by_name.setdefault(key[:2], []).append(p)
    for c in crm:
        key = _near_key(c.fields)
        if key is None:
            continue
        for p in by_name.get(key[:2], ()):
            p_key = _near_key(p.fields)
            if p_key is not None and key[2] & p_key[2]:
                found.append((c, p))
    return tuple(found)


def _day_key(fields: Mapping[str, Any]) -> tuple[str, date] | None:
    """An activity's subject and the day it starts on, in its own time zone."""
    start, subject = fields["start"], fields["subject"].strip().casefold()
    if start is None or not subject:
        return None
    if isinstance(start, datetime):
        start = start.astimezone(zone(fields.get("timezone") or "UTC")).date()
    return subject, start


def _same_day(
    crm: Sequence[Candidate], provider: Sequence[Candidate]
) -> tuple[tuple[Candidate, Candidate], ...]:
    """CAL-2's near misses: unmatched activities with the same subject on the same day
    (their start or length differ, or they would have matched)."""
    by_day: dict[tuple[str, date], list[Candidate]] = {}
    for p in provider:
        key = _day_key(p.fields)
        if key is not None:
            by_day.setdefault(key, []).append(p)
    found: list[tuple[Candidate, Candidate]] = []
    for c in crm:
        key = _day_key(c.fields)
        if key is not None:
            found.extend((c, p) for p in by_day.get(key, ()))
    return tuple(found)
