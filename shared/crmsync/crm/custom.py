"""Custom field values between canonical records and the CRM contract (SYN-1).

A record of the contract carries its custom values in `fields.custom`, by the names the
CRM declares (`GET /schema`), each of its declared type. Canonical records carry each
as a field of its own, `custom.<name>`, holding its canonical text
(`crmsync.model.custom_text`), so that values compare equal whichever side holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crmsync.errors import PermanentError
from crmsync.model import CUSTOM, CustomField, InvalidRecord, custom_text, custom_value, is_custom


def canonical(
    held: Mapping[str, Any] | None, declared: Iterable[CustomField] | None = None
) -> dict[str, str | None]:
    """Canonical custom fields from a record's `custom` object: every declared one
    (None where the record holds no value) when the declarations are given, else those
    the record carries."""
    values = held if isinstance(held, Mapping) else {}
    if declared is None:
        return {CUSTOM + str(name): custom_text(value) for name, value in values.items()}
    return {f.key: custom_text(values.get(f.name)) for f in declared}


def to_contract(fields: Mapping[str, Any], declared: Mapping[str, CustomField]) -> dict[str, Any]:
    """Fields of a write in the contract's shape: the built-in ones as they are, the
    custom ones under `custom`, each as the value of its declared type. PermanentError
    for this record alone when a value has no place in the CRM."""
    out = {name: value for name, value in fields.items() if not is_custom(name)}
    custom: dict[str, Any] = {}
    for name, text in fields.items():
        if not is_custom(name):
            continue
        field = declared.get(name[len(CUSTOM) :])
        if field is None:
            raise PermanentError(f"{name}: the CRM declares no such custom field")
        try:
            custom[field.name] = custom_value(field, text)
        except InvalidRecord as exc:
            raise PermanentError(str(exc)) from exc
    if custom:
        out["custom"] = custom
    return out
