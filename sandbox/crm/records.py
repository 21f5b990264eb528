"""How the reference CRM shows a record: its stored fields read through crmsync's model.

A contact that shares its account's address (CON-7) shows the account's address. Data
the model cannot read (the CRM's own users may hold bad data) is shown as stored, so
that the reader, not the CRM, reports that one record as failed (SYN-5). Custom values
(SYN-1) are kept in the stored fields' `custom`, and shown for every custom field the
kind declares, null where the record holds none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from crmsync import model
from crmsync.model import Kind
from sandbox.crm.database import CrmDatabase, StoredRecord


def model_kind(kind: str) -> Kind:
    """The canonical kind a record's fields follow: a lead holds a contact's fields."""
    return cast(Kind, "contact" if kind == "lead" else kind)


def held(database: CrmDatabase, tenant: str, record: StoredRecord) -> dict[str, Any]:
    """The fields as the CRM's users see them: a shared address is the account's."""
    raw = record.raw
    if record.kind == "contact" and record.address_shared:
        account = database.account(tenant, record.account_id)
        if account is not None and account["address"] is not None:
            raw = {**raw, "address": account["address"]}
    return raw


def canonical(kind: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    """The canonical fields, or None when the data does not read as a record.

    Stored data may hold any JSON value where the model expects another shape, which
    the model reports as a type error rather than InvalidRecord; both mean unreadable.
    """
    try:
        return model.normalize(model_kind(kind), raw)
    except (ValueError, TypeError, AttributeError):
        return None


def wire_fields(kind: str, raw: dict[str, Any], custom: Iterable[str] = ()) -> dict[str, Any]:
    """The contract's fields of a record; `custom` names the kind's declared custom
    fields."""
    fields = canonical(kind, raw)
    if fields is None:
        return raw
    held = raw.get("custom") if isinstance(raw.get("custom"), dict) else {}
    return {**model.to_json(fields), "custom": {name: held.get(name) for name in custom}}


def as_record(
    record: StoredRecord, raw: dict[str, Any], in_scope: bool, custom: Iterable[str] = ()
) -> dict[str, Any]:
    """The contract's Record."""
    out: dict[str, Any] = {
        "id": record.id,
        "kind": record.kind,
        "version": record.version,
        "modified": record.modified.isoformat(),
        "owner": record.owner,
        "in_scope": in_scope,
        "ref": record.ref,
        "fields": wire_fields(record.kind, raw, custom),
    }
    if record.kind == "contact":
        out["account_id"] = record.account_id
    return out


def as_tombstone(record: StoredRecord) -> dict[str, Any]:
    """The contract's Tombstone: a deleted record, or one the user no longer sees."""
    return {
        "id": record.id,
        "kind": record.kind,
        "version": record.version,
        "deleted": True,
        "modified": record.modified.isoformat(),
    }


def as_lead(record: StoredRecord, custom: Iterable[str] = ()) -> dict[str, Any]:
    """The contract's Lead; a deleted one says so."""
    out: dict[str, Any] = {
        "id": record.id,
        "version": record.version,
        "ref": record.ref,
        "fields": wire_fields("lead", record.raw, custom),
    }
    if record.deleted:
        out["deleted"] = True
    return out


def as_plain(record: StoredRecord, raw: dict[str, Any]) -> dict[str, Any]:
    """The record as the CRM's own user interface shows it: canonical plain values
    (dates and times as objects) with id, version and owner; raw when unreadable."""
    fields = canonical(record.kind, raw)
    shown = record.raw if fields is None else model.to_plain(fields)
    out: dict[str, Any] = {"id": record.id, "version": record.version, **shown}
    if fields is not None and raw.get("custom"):
        out["custom"] = dict(raw["custom"])
    out["owner"] = record.owner
    if record.kind == "contact":
        out["account_id"] = record.account_id
    return out
