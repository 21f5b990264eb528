"""Pairing records that have no link yet: first cycle, reconnect, lost cursor.

Pairs are found by the mark crmsync left on a record it created (SYN-9), then by the
kind's identity rule: e-mail for contacts (CON-3); subject, start and duration for
activities (CAL-2); subject and date for to-dos (TSK-2). Near misses on contacts
(same name and phone, different e-mail) are reported, never merged.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crmsync.engine.records import SideRecord
from crmsync.model import Kind


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
    near = _near_duplicates(crm_alone, provider_alone) if kind == "contact" else ()
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
