"""The contract's request schemas as checks.

A request that breaks them (a wrong type, an unknown field, a string too long for its
declared bounds) is refused with 400 before anything is read or written. Values of the
right type that crmsync's model refuses (a date that is not one, an unknown status) are
left to the model and answered 422, like a CRM refusing a well-formed request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Check = Callable[[Any, str], None]

ID_PATTERN = re.compile(r"[A-Za-z0-9._:@-]+")
LINK_URL = re.compile(r"https?://.*", re.DOTALL)


class Invalid(ValueError):
    """The request does not have the shape the contract gives it; says where."""


def text(
    *,
    nullable: bool = False,
    min_length: int = 0,
    max_length: int | None = None,
    pattern: re.Pattern[str] | None = None,
    choices: Sequence[str] = (),
) -> Check:
    def check(value: Any, where: str) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, str):
            raise Invalid(f"{where} must be a string{' or null' if nullable else ''}")
        if len(value) < min_length:
            raise Invalid(f"{where} must have at least {min_length} characters")
        if max_length is not None and len(value) > max_length:
            raise Invalid(f"{where} must have at most {max_length} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise Invalid(f"{where} must match {pattern.pattern}")
        if choices and value not in choices:
            raise Invalid(f"{where} must be one of {', '.join(choices)}")

    return check


def integer(*, minimum: int | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{where} must be a whole number")
        if minimum is not None and value < minimum:
            raise Invalid(f"{where} must be at least {minimum}")

    return check


def flag() -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, bool):
            raise Invalid(f"{where} must be true or false")

    return check


def array(item: Check, *, min_items: int = 0, max_items: int | None = None) -> Check:
    def check(value: Any, where: str) -> None:
        if not isinstance(value, list):
            raise Invalid(f"{where} must be an array")
        if len(value) < min_items:
            raise Invalid(f"{where} must have at least {min_items} items")
        if max_items is not None and len(value) > max_items:
            raise Invalid(f"{where} must have at most {max_items} items")
        for i, element in enumerate(value):
            item(element, f"{where}[{i}]")

    return check


def shape(
    properties: Mapping[str, Check],
    *,
    required: Sequence[str] = (),
    nullable: bool = False,
    min_properties: int = 0,
) -> Check:
    """An object with only these properties (the contract's additionalProperties: false)."""

    def check(value: Any, where: str) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, dict):
            raise Invalid(f"{where} must be an object{' or null' if nullable else ''}")
        unknown = sorted(set(value) - set(properties))
        if unknown:
            raise Invalid(f"{where} has unknown fields: {', '.join(unknown)}")
        missing = [name for name in required if name not in value]
        if missing:
            raise Invalid(f"{where} lacks {', '.join(missing)}")
        if len(value) < min_properties:
            raise Invalid(f"{where} must have at least {min_properties} field")
        for name, element in value.items():
            properties[name](element, f"{where}.{name}")

    return check


ID = text(min_length=1, max_length=200, pattern=ID_PATTERN)
REF = text(nullable=True, max_length=500)
IDEMPOTENCY_KEY = text(min_length=1, max_length=255)
VERSION = text(min_length=1, max_length=200)
CURSOR = text(min_length=1, max_length=500)
EMAIL = text(min_length=3, max_length=320)
SEARCH_TEXT = text(min_length=2, max_length=100)  # EML-5: what GET /people?q= finds
ACCOUNT_NAME = text(min_length=1, max_length=500)


def custom_values() -> Check:
    """A `custom` object: custom field names to values. Whether a name is declared and
    a value of its type is the CRM's to judge (422), not the request's shape."""

    def check(value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise Invalid(f"{where} must be an object")

    return check


ADDRESS = shape({name: text() for name in ("street", "city", "region", "postal_code", "country")})
CUSTOM = custom_values()
CONTACT_FIELDS: dict[str, Check] = {
    "first_name": text(),
    "last_name": text(),
    "company": text(),
    "title": text(),
    "emails": array(text()),
    "phones": array(shape({"kind": text(), "number": text()}, required=("number",))),
    "address": ADDRESS,
    "notes": text(),
    "custom": CUSTOM,
}
REGARDING = ("contact", "account", "lead", "company", "opportunity", "ticket")
ACTIVITY_FIELDS: dict[str, Check] = {
    "type": text(),
    "subject": text(),
    "start": text(),
    "end": text(nullable=True),
    "all_day": flag(),
    "timezone": text(),
    "location": text(),
    "notes": text(),
    "private": flag(),
    "status": text(),
    "recurrence": text(nullable=True),
    "leader": text(nullable=True),
    "members": array(text()),
    "regarding": shape({name: text(nullable=True) for name in REGARDING}),
    "invite": flag(),
    "custom": CUSTOM,
}
TO_DO_FIELDS: dict[str, Check] = {
    "subject": text(),
    "start": text(nullable=True),
    "due": text(nullable=True),
    "status": text(),
    "priority": text(),
    "notes": text(),
    "recurrence": text(nullable=True),
    "private": flag(),
    "regarding": shape({name: text(nullable=True) for name in REGARDING}),
    "custom": CUSTOM,
}
FIELDS: dict[str, dict[str, Check]] = {
    "contact": CONTACT_FIELDS,
    "activity": ACTIVITY_FIELDS,
    "todo": TO_DO_FIELDS,
}

NEW_ACCOUNT_PROPERTIES: dict[str, Check] = {
    "name": ACCOUNT_NAME,
    "type": text(),
    "status": text(),
    "owner": text(),
    "manager": text(nullable=True),
}
NEW_ACCOUNT = shape(NEW_ACCOUNT_PROPERTIES, required=("name",))


def create_record(kind: str) -> Check:
    return shape(
        {
            "fields": shape(FIELDS[kind]),
            "ref": REF,
            "group": text(nullable=True, min_length=1, max_length=200, pattern=ID_PATTERN),
            "account": shape(NEW_ACCOUNT_PROPERTIES, required=("name",), nullable=True),
        },
        required=("fields",),
    )


def update_record(kind: str) -> Check:
    return shape(
        {"fields": shape(FIELDS[kind], min_properties=1), "shared_address": flag()},
        required=("fields",),
    )


NEW_LEAD = shape({"fields": shape(CONTACT_FIELDS), "ref": REF}, required=("fields",))

PARTICIPANT = shape(
    {"role": text(choices=("from", "to", "cc", "bcc")), "email": text(), "name": text()},
    required=("role", "email"),
)
ATTACHMENT = shape(
    {"filename": text(min_length=1), "content_type": text(), "content_base64": text()},
    required=("filename", "content_type", "content_base64"),
)
LINK = shape(
    {
        "filename": text(min_length=1),
        "content_type": text(),
        "size": integer(minimum=0),
        "url": text(pattern=LINK_URL),
    },
    required=("filename", "content_type", "size", "url"),
)
NEW_HISTORY_ITEM = shape(
    {
        "record": shape(
            {"kind": text(choices=("contact", "lead")), "id": ID}, required=("kind", "id")
        ),
        "subject": text(),
        "body": text(),
        "date": text(),
        "participants": array(PARTICIPANT),
        "attachments": array(ATTACHMENT),
        "links": array(LINK),
    },
    required=("record", "subject", "body", "participants", "date"),
)
