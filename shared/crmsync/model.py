"""Canonical records: the one shape every adapter maps to and the engine compares.

A record is an immutable value with normalised fields, so that two sides holding the
same data compare equal: e-mail addresses lower-cased and trimmed, phone numbers in
E.164 where they parse, timed activities as aware UTC datetimes with their IANA zone
kept beside them, all-day activities as dates with an exclusive end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeAlias, TypeVar, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Kind: TypeAlias = Literal["contact", "activity", "todo"]
KINDS: tuple[Kind, ...] = get_args(Kind)
ActivityType: TypeAlias = Literal["meeting", "call", "personal", "event"]
ActivityStatus: TypeAlias = Literal["confirmed", "unconfirmed", "declined", "completed"]
TodoStatus: TypeAlias = Literal["open", "in_progress", "completed", "cancelled"]
Fields: TypeAlias = Mapping[str, Any]
CustomType: TypeAlias = Literal["string", "number", "boolean", "date", "enum"]
CUSTOM_TYPES: tuple[CustomType, ...] = get_args(CustomType)
CUSTOM = "custom."  # canonical custom fields are named custom.<name> (SYN-1)
CUSTOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
_T = TypeVar("_T")


class InvalidRecord(ValueError):
    """A record whose data cannot be normalised; it fails alone (SYN-5)."""


@dataclass(frozen=True)
class Phone:
    kind: str
    number: str


@dataclass(frozen=True)
class Address:
    street: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country: str = ""


@dataclass(frozen=True)
class Regarding:
    contact: str | None = None
    account: str | None = None
    lead: str | None = None
    company: str | None = None
    opportunity: str | None = None
    ticket: str | None = None

    def is_empty(self) -> bool:
        return not (
            self.contact
            or self.account
            or self.lead
            or self.company
            or self.opportunity
            or self.ticket
        )


@dataclass(frozen=True)
class Contact:
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    title: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[Phone, ...] = ()
    address: Address = field(default_factory=Address)
    notes: str = ""


@dataclass(frozen=True)
class Activity:
    type: ActivityType = "meeting"
    subject: str = ""
    start: datetime | date | None = None
    end: datetime | date | None = None
    all_day: bool = False
    timezone: str = "UTC"
    location: str = ""
    notes: str = ""
    private: bool = False
    status: ActivityStatus = "confirmed"
    recurrence: str | None = None
    leader: str | None = None
    members: tuple[str, ...] = ()
    regarding: Regarding = field(default_factory=Regarding)
    invite: bool = False  # SYN-8: the CRM user asked that the provider invite its attendees


@dataclass(frozen=True)
class Todo:
    subject: str = ""
    start: date | None = None
    due: date | None = None
    status: TodoStatus = "open"
    priority: str = "normal"
    notes: str = ""
    recurrence: str | None = None
    private: bool = False
    regarding: Regarding = field(default_factory=Regarding)


Record: TypeAlias = Contact | Activity | Todo
RECORD_TYPES: dict[Kind, type[Record]] = {"contact": Contact, "activity": Activity, "todo": Todo}
FIELD_NAMES: dict[Kind, tuple[str, ...]] = {
    kind: tuple(f.name for f in dataclasses.fields(cls)) for kind, cls in RECORD_TYPES.items()
}


@dataclass(frozen=True)
class CustomField:
    """A custom field the CRM declares for one kind of record (SYN-1): its name, its
    type, an enum's values, and a string's longest length."""

    name: str
    type: CustomType = "string"
    values: tuple[str, ...] = ()
    max_length: int | None = None

    @property
    def key(self) -> str:
        """The field's name in canonical records."""
        return CUSTOM + self.name


def is_custom(name: str) -> bool:
    return name.startswith(CUSTOM)


def custom_text(value: Any) -> str | None:
    """A custom value in canonical form: its text, whatever the CRM's type (a number
    without a needless fraction, true or false, a date as ISO 8601), so that values
    compare equal whichever side holds them; None when there is none."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return value.strip() or None
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def custom_value(declared: CustomField, text: str | None) -> Any:
    """Canonical text as the value the CRM contract carries for the field's type (a
    number, true or false, an ISO date, an enum's value); InvalidRecord naming the
    field when the text is no value of that type."""
    if text is None:
        return None
    where = f"{declared.key}: {text!r}"
    if declared.type == "number":
        return _number(text, where)
    if declared.type == "boolean":
        if text.lower() not in _TRUE + _FALSE:
            raise InvalidRecord(f"{where} is not true or false")
        return text.lower() in _TRUE
    if declared.type == "date":
        try:
            day = date.fromisoformat(text) if len(text) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise InvalidRecord(f"{where} is not a date (YYYY-MM-DD)")
        return day.isoformat()
    if declared.type == "enum" and text not in declared.values:
        raise InvalidRecord(f"{where} is not one of {', '.join(declared.values)}")
    return text


def merge_custom(held: Mapping[str, Any] | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """Custom values held, with those given set (None: no value any more): an edit
    changes only the custom values it gives."""
    merged = {**(held or {}), **given}
    return {name: value for name, value in merged.items() if value is not None}


def custom_problem(declared: CustomField | None, name: str, value: Any) -> str | None:
    """Why a CRM cannot hold `value` in its custom field `name`: the field is not
    declared, or the value is not of its type (null, no value, always fits); None when
    it can. What the reference and memory CRMs answer a write with."""
    where = CUSTOM + name
    if declared is None:
        return f"{where} is not a declared custom field"
    if value is None:
        return None
    kind = declared.type
    if kind == "number":
        fits = isinstance(value, int | float) and not isinstance(value, bool)
        return None if fits and math.isfinite(value) else f"{where} must be a number"
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{where} must be true or false"
    if not isinstance(value, str):
        return f"{where} must be text"
    if kind == "date":
        return None if _is_day(value) else f"{where} must be a date (YYYY-MM-DD)"
    if kind == "enum" and value not in declared.values:
        return f"{where} must be one of {', '.join(declared.values)}"
    if declared.max_length is not None and len(value) > declared.max_length:
        return f"{where} is longer than {declared.max_length} characters"
    return None


def _is_day(text: str) -> bool:
    try:
        return len(text) == 10 and bool(date.fromisoformat(text))
    except ValueError:
        return False


def _number(text: str, where: str) -> int | float:
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidRecord(f"{where} is not a number")
    return number


def normalize_email(value: str) -> str:
    return value.strip().lower()


def normalize_phone(number: str, region: str | None = None) -> str:
    """E.164 when the number parses and is valid, otherwise the trimmed original."""
    import phonenumbers  # its metadata loads at the first phone, not at cold start

    text = number.strip()
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return text
    if not phonenumbers.is_valid_number(parsed):
        return text
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRecord(f"unknown time zone {name!r}") from exc


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _dedup(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _as_date(value: Any, name: str) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise InvalidRecord(f"{name}: not a date: {value!r}") from exc


def _as_instant(value: Any, tz: ZoneInfo, name: str) -> datetime | date | None:
    """An aware UTC datetime; a bare date stays a date (a timeless activity)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidRecord(f"{name}: not a date or time: {value!r}") from exc
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=tz)
        return aware.astimezone(UTC)
    if isinstance(value, date):
        return value
    raise InvalidRecord(f"{name}: not a date or time: {value!r}")


def _phones(raw: Any, region: str | None) -> tuple[Phone, ...]:
    phones: list[Phone] = []
    for item in raw or ():
        if isinstance(item, Phone):
            kind, number = item.kind, item.number
        elif isinstance(item, Mapping):
            kind, number = _text(item.get("kind")) or "other", _text(item.get("number"))
        else:
            kind, number = "other", _text(item)
        if number:
            phones.append(Phone(kind, normalize_phone(number, region)))
    return tuple(dict.fromkeys(phones))


def _nested(cls: type[_T], raw: Any) -> _T:
    if isinstance(raw, cls):
        return raw
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise InvalidRecord(f"{cls.__name__.lower()}: expected a mapping")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - names
    if unknown:
        raise InvalidRecord(f"{cls.__name__.lower()}: unknown fields {sorted(unknown)}")
    return cls(**{k: (_text(v) or None) if cls is Regarding else _text(v) for k, v in raw.items()})


def _check_choice(value: Any, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise InvalidRecord(f"{name}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def make_contact(raw: Fields, region: str | None = None) -> Contact:
    return Contact(
        first_name=_text(raw.get("first_name")),
        last_name=_text(raw.get("last_name")),
        company=_text(raw.get("company")),
        title=_text(raw.get("title")),
        emails=_dedup(normalize_email(e) for e in raw.get("emails") or ()),
        phones=_phones(raw.get("phones"), region),
        address=_nested(Address, raw.get("address")),
        notes=_text(raw.get("notes")),
    )


def make_activity(raw: Fields) -> Activity:
    tz_name = _text(raw.get("timezone")) or "UTC"
    tz = zone(tz_name)
    start = _as_instant(raw.get("start"), tz, "start")
    end = _as_instant(raw.get("end"), tz, "end")
    all_day = bool(raw.get("all_day")) or (type(start) is date)
    if start is None:
        raise InvalidRecord("start: an activity needs a start")
    if all_day:
        start_day = _as_date(start.astimezone(tz) if isinstance(start, datetime) else start, "")
        end_day = _as_date(end.astimezone(tz) if isinstance(end, datetime) else end, "")
        assert start_day is not None
        start, end = start_day, end_day or start_day + timedelta(days=1)
    elif type(end) is date or end is None:
        end = start + timedelta(hours=1) if isinstance(start, datetime) else None
    if end is not None and end <= start:
        raise InvalidRecord(f"end {end} is not after start {start}")
    return Activity(
        type=_check_choice(raw.get("type") or "meeting", get_args(ActivityType), "type"),  # type: ignore[arg-type]
        subject=_text(raw.get("subject")),
        start=start,
        end=end,
        all_day=all_day,
        timezone=tz_name,
        location=_text(raw.get("location")),
        notes=_text(raw.get("notes")),
        private=bool(raw.get("private")),
        status=_check_choice(  # type: ignore[arg-type]
            raw.get("status") or "confirmed", get_args(ActivityStatus), "status"
        ),
        recurrence=_text(raw.get("recurrence")) or None,
        leader=_text(raw.get("leader")) or None,
        members=tuple(sorted(set(_dedup(_text(m) for m in raw.get("members") or ())))),
        regarding=_nested(Regarding, raw.get("regarding")),
        invite=bool(raw.get("invite")),
    )


def make_todo(raw: Fields) -> Todo:
    return Todo(
        subject=_text(raw.get("subject")),
        start=_as_date(raw.get("start"), "start"),
        due=_as_date(raw.get("due"), "due"),
        status=_check_choice(raw.get("status") or "open", get_args(TodoStatus), "status"),  # type: ignore[arg-type]
        priority=_text(raw.get("priority")) or "normal",
        notes=_text(raw.get("notes")),
        recurrence=_text(raw.get("recurrence")) or None,
        private=bool(raw.get("private")),
        regarding=_nested(Regarding, raw.get("regarding")),
    )


def make(kind: Kind, raw: Fields, region: str | None = None) -> Record:
    """Build and normalise a canonical record; raises InvalidRecord for bad data, also
    for values of the wrong shape (a number where a list belongs), so a record some
    system holds in an odd form fails alone (SYN-5)."""
    try:
        if kind == "contact":
            return make_contact(raw, region)
        if kind == "activity":
            return make_activity(raw)
        return make_todo(raw)
    except (TypeError, AttributeError) as exc:
        raise InvalidRecord(f"{kind}: a value has the wrong shape ({exc})") from exc


_PLAIN_ATOMS = (str, int, float, bool, type(None), date, datetime)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a dataclass's fields, by its type


def fields_of(record: Record) -> dict[str, Any]:
    """The record's fields as a flat mapping of immutable values (the engine's view)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


def normalize(kind: Kind, raw: Fields, region: str | None = None) -> dict[str, Any]:
    """Normalised canonical fields; keys outside the canonical set are not kept."""
    return fields_of(make(kind, raw, region))


def to_plain(value: Any) -> Any:
    """Canonical value → plain data (dicts, lists, dates kept) for callers and tests."""
    if isinstance(value, _PLAIN_ATOMS):
        return value
    names = _FIELD_NAMES.get(type(value))
    if names is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    if names is not None:
        return {name: to_plain(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def to_json(value: Any) -> Any:
    """Canonical value → JSON-safe data, the form the stores persist."""
    plain = to_plain(value)
    if isinstance(plain, dict):
        return {k: to_json(v) for k, v in plain.items()}
    if isinstance(plain, list):
        return [to_json(v) for v in plain]
    if isinstance(plain, datetime | date):
        return plain.isoformat()
    return plain


def now_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return value.astimezone(UTC)


def parse_instant(value: Any) -> datetime | None:
    """A timestamp another system sent (ISO 8601 / RFC 3339, "Z" allowed) as an aware
    UTC datetime; None when absent or unreadable (it only orders changes)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else None
