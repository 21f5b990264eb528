"""Calendar v3 in the Google sandbox: calendars, events with incremental sync, recurring
series with their exceptions, optimistic concurrency, invitations and push channels.

Each account's calendars live in `account.data["calendar"]` (a `CalendarState`); the
account's primary calendar has the account's e-mail address as its id and answers to
`primary`. Behaviour follows the discovery document and Google's guides: sync tokens
are handed out on the last page of a listing only and answer 410 once expired,
deletions come back as `status: "cancelled"` carrying little more than the id,
client-chosen ids are base32hex and unique forever (a deleted event's id answers 409
too), writes with a stale `If-Match` answer 412, and every write bumps `etag` and
`updated` (and `sequence` when the time, recurrence or status changes).

Tests reach what no API shows through the helpers: `add_calendar`, `sent_updates`
(which writes would have e-mailed guests), `notifications` (push messages sent),
`expire_sync_tokens`, `set_attendee_response` (a guest answers), `cap_page_size`
(short pages) and `calendar_events` (the stored events).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import random
import re
import secrets
import threading
import time as clock_time
import urllib.error
import urllib.request
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule, rruleset, rrulestr
from werkzeug.wrappers import Request, Response

from sandbox.google.core import (
    CALENDAR_SCOPES,
    SCOPE,
    Account,
    ApiError,
    GoogleSandbox,
    Route,
    json_response,
    read_json,
    rfc3339,
    route,
)

# Per-method scopes as the discovery document lists them (the ones a client may hold):
# `calendar.events` reaches events and channels but not the calendar list.
EVENT_WRITE_SCOPES = CALENDAR_SCOPES | {
    SCOPE + "calendar.events.owned",
    SCOPE + "calendar.app.created",
}
EVENT_READ_SCOPES = EVENT_WRITE_SCOPES | {
    SCOPE + "calendar.readonly",
    SCOPE + "calendar.events.readonly",
    SCOPE + "calendar.events.owned.readonly",
}
CALENDAR_LIST_SCOPES = frozenset(
    {
        SCOPE + "calendar",
        SCOPE + "calendar.readonly",
        SCOPE + "calendar.calendarlist",
        SCOPE + "calendar.calendarlist.readonly",
    }
)
CALENDAR_GET_SCOPES = frozenset(
    {
        SCOPE + "calendar",
        SCOPE + "calendar.readonly",
        SCOPE + "calendar.app.created",
        SCOPE + "calendar.calendars",
        SCOPE + "calendar.calendars.readonly",
    }
)

DEFAULT_PAGE = 250
MAX_PAGE = 2500
CHANNEL_LIFETIME = timedelta(days=7)
INSTANCE_LIMIT = 730  # instances one series expands to at most (events.instances, ids)
PUSH_TIMEOUT = 2.0

_BASE32HEX = re.compile(r"^[a-v0-9]{5,1024}$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$", re.I)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ICAL_STAMP = re.compile(r"^(\d{8})(T(\d{6})(Z?))?$")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_SYNC_FORBIDDEN = _words(
    "iCalUID orderBy privateExtendedProperty q sharedExtendedProperty timeMin timeMax updatedMin"
)
# Event fields a client writes; read-only ones it sends are ignored; any other is refused.
_WRITABLE = frozenset(
    _words(
        "summary description location start end recurrence visibility transparency status "
        "attendees extendedProperties reminders colorId guestsCanModify guestsCanInviteOthers "
        "guestsCanSeeOtherGuests anyoneCanAddSelf source sequence endTimeUnspecified eventType "
        "gadget focusTimeProperties outOfOfficeProperties workingLocationProperties "
        "birthdayProperties attachments conferenceData"
    )
)
_READ_ONLY = frozenset(
    _words(
        "kind etag id htmlLink created updated creator organizer iCalUID recurringEventId "
        "originalStartTime hangoutLink privateCopy locked attendeesOmitted eventLabelId"
    )
)
_ATTENDEE_FIELDS = frozenset(
    _words(
        "additionalGuests comment displayName email id optional organizer resource "
        "responseStatus self"
    )
)
_STRINGS = ("summary", "description", "location", "colorId")
_RESPONSES = ("needsAction", "declined", "tentative", "accepted")
_VISIBILITY_RANK = {"public": 0, "default": 1, "private": 2, "confidential": 2}
_TRANSPARENCY = ("opaque", "transparent")
_STATUSES = ("confirmed", "tentative", "cancelled")
_EVENT_TYPES = _words("default outOfOffice focusTime workingLocation fromGmail birthday")
_SEND_UPDATES = ("all", "externalOnly", "none")


# -- state ---------------------------------------------------------------------------------------
@dataclass
class Stored:
    """One event as Google holds it, and the account-wide change number of its last write
    (what sync tokens count)."""

    resource: dict[str, Any]
    changed: int


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str
    primary: bool
    resource_id: str
    etag: str
    events: dict[str, Stored] = field(default_factory=dict)


@dataclass(frozen=True)
class SyncPoint:
    """What a sync token stands for: the changes of one calendar after `changed`."""

    calendar_id: str
    changed: int


@dataclass
class Page:
    """The rest of a listing a page token continues: the ids still to return, and the
    sync point the last page hands out."""

    key: str
    ids: list[str]
    sync: SyncPoint | None


@dataclass
class Channel:
    id: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration: datetime
    messages: int = 0
    stopped: bool = False


@dataclass
class CalendarState:
    """All Calendar data of one account."""

    calendars: dict[str, Calendar] = field(default_factory=dict)
    sync_tokens: dict[str, SyncPoint] = field(default_factory=dict)
    pages: dict[str, Page] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    changes: int = 0
    last_etag: int = 0
    page_cap: int | None = None


def state_of(sandbox: GoogleSandbox, account: Account) -> CalendarState:
    """The account's Calendar data, made with its primary calendar on first use."""
    state = account.data.get("calendar")
    if state is None:
        state = CalendarState()
        account.data["calendar"] = state
        _add(sandbox, state, account.email, account.email, "UTC", primary=True)
    assert isinstance(state, CalendarState)
    return state


def _add(
    sandbox: GoogleSandbox,
    state: CalendarState,
    calendar_id: str,
    summary: str,
    time_zone: str,
    *,
    primary: bool,
) -> Calendar:
    calendar = state.calendars.get(calendar_id)
    if calendar is None:
        resource_id = base64.urlsafe_b64encode(secrets.token_bytes(18)).decode()
        calendar = Calendar(calendar_id, summary, time_zone, primary, resource_id, "")
        state.calendars[calendar_id] = calendar
    calendar.summary, calendar.time_zone = summary, time_zone
    calendar.etag = _next_etag(state, sandbox.clock())
    return calendar


def _next_etag(state: CalendarState, now: datetime) -> str:
    """A new quoted etag, larger than every earlier one even when the clock stands still."""
    state.last_etag = max(state.last_etag + 1, int(now.timestamp() * 1_000_000))
    return f'"{state.last_etag}"'


# -- helpers for tests ---------------------------------------------------------------------------
def add_calendar(
    sandbox: GoogleSandbox, email: str, calendar_id: str, summary: str, *, time_zone: str = "UTC"
) -> None:
    """Give `email` another calendar (or, with its own address as `calendar_id`, rename
    and re-zone the primary one)."""
    _zone(time_zone, "calendar")
    with sandbox.lock:
        state = state_of(sandbox, sandbox.add_account(email))
        _add(sandbox, state, calendar_id, summary, time_zone, primary=calendar_id == email)


def sent_updates(sandbox: GoogleSandbox, email: str) -> list[dict[str, Any]]:
    """Every event write of `email`, in order: {method (insert, patch, update, delete),
    calendarId, eventId, sendUpdates, notified}. `sendUpdates` is the value the request
    carried (None when absent; "all"/"none" for the deprecated sendNotifications);
    `notified` lists the guests Google would have e-mailed."""
    with sandbox.lock:
        return copy.deepcopy(state_of(sandbox, sandbox.add_account(email)).sent)


def expire_sync_tokens(sandbox: GoogleSandbox, email: str) -> None:
    """Every sync token issued to `email` so far now answers 410 fullSyncRequired."""
    with sandbox.lock:
        state_of(sandbox, sandbox.add_account(email)).sync_tokens.clear()


def cap_page_size(sandbox: GoogleSandbox, email: str, size: int | None) -> None:
    """Listings for `email` return at most `size` items a page whatever maxResults says
    (Google may return short pages); None lifts the cap."""
    with sandbox.lock:
        state_of(sandbox, sandbox.add_account(email)).page_cap = size


def calendar_events(
    sandbox: GoogleSandbox, email: str, calendar_id: str = "primary"
) -> list[dict[str, Any]]:
    """The stored events of a calendar, cancelled ones included, as Google holds them."""
    with sandbox.lock:
        account = sandbox.add_account(email)
        calendar = _calendar(state_of(sandbox, account), account, calendar_id)
        return [copy.deepcopy(stored.resource) for stored in calendar.events.values()]


def set_attendee_response(
    sandbox: GoogleSandbox,
    email: str,
    calendar_id: str,
    event_id: str,
    attendee: str,
    response: str,
) -> None:
    """The guest `attendee` answers `response` to an event in `email`'s calendar (as a
    guest does from their own calendar): a change like any other."""
    if response not in _RESPONSES:
        raise ValueError(f"unknown response {response!r}")
    with sandbox.lock:
        account = sandbox.add_account(email)
        state = state_of(sandbox, account)
        calendar = _calendar(state, account, calendar_id)
        stored = calendar.events.get(event_id)
        if stored is None:
            raise KeyError(event_id)
        resource = copy.deepcopy(stored.resource)
        guests = [a for a in resource.get("attendees", []) if a.get("email") == attendee]
        if not guests:
            raise KeyError(attendee)
        for guest in guests:
            guest["responseStatus"] = response
        _commit(sandbox, state, calendar, resource, stored.resource)


def notifications(sandbox: GoogleSandbox) -> list[dict[str, Any]]:
    """Every push message the sandbox sent, in order: {channel_id, address, state,
    message_number, headers}."""
    with sandbox.lock:
        return copy.deepcopy(_push(sandbox).sent)


# -- lookups -------------------------------------------------------------------------------------
def _calendar(state: CalendarState, account: Account, calendar_id: str) -> Calendar:
    calendar = state.calendars.get(account.email if calendar_id == "primary" else calendar_id)
    if calendar is None:
        raise ApiError(404, "notFound", "Not Found")
    return calendar


def _context(
    sandbox: GoogleSandbox, account: Account, calendar_id: str
) -> tuple[CalendarState, Calendar]:
    state = state_of(sandbox, account)
    return state, _calendar(state, account, calendar_id)


# -- times ---------------------------------------------------------------------------------------
def _zone(name: Any, what: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ApiError(400, "invalid", f"Invalid time zone definition for {what} time.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ApiError(400, "invalid", f"Invalid time zone definition for {what} time.") from exc


def _parse_instant(value: Any, what: str) -> datetime:
    """An RFC 3339 date-time; naive when it carries no offset."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ApiError(400, "invalid", f"Invalid value for {what}: {value}")
    return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))


def _render(moment: datetime, zone: ZoneInfo) -> str:
    """A date-time as Google writes it: in `zone`, with its offset (Z for UTC)."""
    text = moment.astimezone(zone).isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _event_time(value: Any, what: str, calendar_zone: ZoneInfo) -> dict[str, Any]:
    """A start or end as Google keeps it: `date`, or `dateTime` with its offset, each
    with the `timeZone` the client gave."""
    if not isinstance(value, dict) or set(value) - {"date", "dateTime", "timeZone"}:
        raise ApiError(400, "invalid", f"Invalid {what} time.")
    has_date, has_time = value.get("date") is not None, value.get("dateTime") is not None
    if has_date == has_time:
        raise ApiError(400, "required", f"Missing {what} time.")
    kept: dict[str, Any] = {}
    zone = None
    if value.get("timeZone") is not None:
        zone = _zone(value["timeZone"], what)
        kept["timeZone"] = value["timeZone"]
    if has_date:
        if not isinstance(value["date"], str) or not _DATE.match(value["date"]):
            raise ApiError(400, "invalid", f"Invalid {what} date.")
        return {"date": date.fromisoformat(value["date"]).isoformat(), **kept}
    moment = _parse_instant(value["dateTime"], f"{what}.dateTime")
    if moment.tzinfo is None:
        if zone is None:
            raise ApiError(400, "required", f"Missing time zone definition for {what} time.")
        moment = moment.replace(tzinfo=zone)
    return {"dateTime": _render(moment, zone or calendar_zone), **kept}


def _instant(value: dict[str, Any], calendar_zone: ZoneInfo) -> datetime:
    """When a stored start or end happens (an all-day one at midnight of the calendar)."""
    if "date" in value:
        return datetime.combine(date.fromisoformat(value["date"]), time(), calendar_zone)
    return datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00"))


def _check_times(resource: dict[str, Any], calendar_zone: ZoneInfo) -> None:
    """Google's rules: both ends of one kind, the end after the start, a time zone for
    recurring events."""
    start, end = resource.get("start"), resource.get("end")
    if start is None or end is None:
        raise ApiError(400, "required", "Missing end time." if start else "Missing start time.")
    if ("date" in start) != ("date" in end):
        raise ApiError(400, "invalid", "Start and end times must either both be date or dateTime.")
    if _instant(end, calendar_zone) <= _instant(start, calendar_zone):
        raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
    if resource.get("recurrence"):
        if "timeZone" not in start:
            raise ApiError(400, "required", "Missing time zone definition for start time.")
        _series(resource)


# -- recurrence ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """A recurring event's occurrences: aware starts in the series' zone for timed events,
    naive midnights for all-day ones."""

    start: datetime
    duration: timedelta
    all_day: bool
    zone: ZoneInfo
    rules: rruleset

    def starts(self) -> Iterator[datetime]:
        return itertools.islice(iter(self.rules), INSTANCE_LIMIT)

    def occurs(self, moment: datetime) -> bool:
        found = self.rules.after(moment, inc=True)
        return found is not None and found == moment

    def first_ending_after(self, moment: datetime) -> datetime | None:
        return self.rules.after(self._local(moment) - self.duration)

    def _local(self, moment: datetime) -> datetime:
        local = moment.astimezone(self.zone)
        return local.replace(tzinfo=None) if self.all_day else local


def _series(resource: dict[str, Any]) -> Series:
    """The series a recurring event's start, end and recurrence lines describe; 400 for
    lines Google would refuse."""
    start, end = resource["start"], resource["end"]
    zone = ZoneInfo(start["timeZone"])
    all_day = "date" in start
    if all_day:
        first = datetime.combine(date.fromisoformat(start["date"]), time())
        duration = datetime.combine(date.fromisoformat(end["date"]), time()) - first
    else:
        first = _instant(start, zone).astimezone(zone)
        duration = _instant(end, zone) - first
    rules = rruleset()
    rules.rdate(first)
    try:
        for line in resource["recurrence"]:
            _add_line(rules, line, first, all_day, zone)
    except (ValueError, TypeError, KeyError, ZoneInfoNotFoundError) as exc:
        raise ApiError(400, "invalid", "Invalid recurrence rule.") from exc
    return Series(first, duration, all_day, zone, rules)


def _add_line(rules: rruleset, line: Any, first: datetime, all_day: bool, zone: ZoneInfo) -> None:
    if not isinstance(line, str) or ":" not in line:
        raise ValueError(line)
    head, value = line.split(":", 1)
    name, *params = head.upper().split(";")
    if name in ("RRULE", "EXRULE"):
        text = re.sub(r"UNTIL=([0-9TZ]+)", lambda m: _until(m.group(1), all_day, zone), value)
        rule = rrulestr(text, dtstart=first)
        if not isinstance(rule, rrule):
            raise ValueError(line)
        (rules.rrule if name == "RRULE" else rules.exrule)(rule)
        return
    if name not in ("RDATE", "EXDATE"):
        raise ValueError(line)
    tzid = next((p[5:] for p in params if p.startswith("TZID=")), None)
    for stamp in value.split(","):
        moment = _stamp(stamp, first, all_day, ZoneInfo(tzid) if tzid else zone, zone)
        (rules.rdate if name == "RDATE" else rules.exdate)(moment)


def _until(value: str, all_day: bool, zone: ZoneInfo) -> str:
    """An UNTIL in the form dateutil needs: a date for all-day series, UTC otherwise."""
    found = _ICAL_STAMP.match(value.upper())
    if found is None:
        raise ValueError(value)
    day = datetime.strptime(found.group(1), "%Y%m%d")
    if all_day:
        return "UNTIL=" + found.group(1)
    if found.group(3) is None:
        moment = datetime.combine(day.date(), time(23, 59, 59), zone)
    else:
        moment = datetime.combine(day.date(), datetime.strptime(found.group(3), "%H%M%S").time())
        moment = moment.replace(tzinfo=UTC if found.group(4) else zone)
    return "UNTIL=" + moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _stamp(value: str, first: datetime, all_day: bool, given: ZoneInfo, zone: ZoneInfo) -> datetime:
    """An RDATE or EXDATE value as a start of the series."""
    found = _ICAL_STAMP.match(value.strip().upper())
    if found is None:
        raise ValueError(value)
    day = datetime.strptime(found.group(1), "%Y%m%d").date()
    if all_day:
        return datetime.combine(day, time())
    if found.group(3) is None:
        return datetime.combine(day, first.timetz())
    clock = datetime.strptime(found.group(3), "%H%M%S").time()
    moment = datetime.combine(day, clock, UTC if found.group(4) else given)
    return moment.astimezone(zone)


def _instance_id(master_id: str, series: Series, start: datetime) -> str:
    if series.all_day:
        return f"{master_id}_{start:%Y%m%d}"
    return f"{master_id}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def _instance_start(series: Series, suffix: str) -> datetime | None:
    """The occurrence an instance id's suffix names, if the series has it."""
    found = _ICAL_STAMP.match(suffix)
    if found is None or (found.group(3) is None) != series.all_day:
        return None
    day = datetime.strptime(found.group(1), "%Y%m%d")
    if series.all_day:
        moment = day
    else:
        if not found.group(4):
            return None
        clock = datetime.strptime(found.group(3), "%H%M%S").time()
        moment = datetime.combine(day.date(), clock, UTC).astimezone(series.zone)
    return moment if series.occurs(moment) else None


def _occurrence_time(series: Series, start: datetime) -> dict[str, Any]:
    if series.all_day:
        return {"date": start.date().isoformat(), "timeZone": series.zone.key}
    return {"dateTime": _render(start, series.zone), "timeZone": series.zone.key}


def _instance(master: dict[str, Any], series: Series, start: datetime) -> dict[str, Any]:
    """One occurrence of a series as Google shows it before it has been changed."""
    instance = {k: copy.deepcopy(v) for k, v in master.items() if k != "recurrence"}
    instance["id"] = _instance_id(master["id"], series, start)
    instance["recurringEventId"] = master["id"]
    instance["originalStartTime"] = _occurrence_time(series, start)
    instance["start"] = _occurrence_time(series, start)
    instance["end"] = _occurrence_time(series, start + series.duration)
    return instance


def _find_instance(calendar: Calendar, event_id: str) -> dict[str, Any] | None:
    """An unchanged occurrence named by its instance id (`<series id>_<start>`)."""
    master_id, _, suffix = event_id.rpartition("_")
    stored = calendar.events.get(master_id)
    if stored is None or not stored.resource.get("recurrence"):
        return None
    series = _series(stored.resource)
    start = _instance_start(series, suffix.upper())
    return None if start is None else _instance(stored.resource, series, start)


# -- writing events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WriteOptions:
    send_updates: str | None
    attachments: bool
    conference: bool

    @classmethod
    def of(cls, request: Request) -> WriteOptions:
        send = request.args.get("sendUpdates")
        if send is not None and send not in _SEND_UPDATES:
            raise ApiError(400, "invalidParameter", f"Invalid value for sendUpdates: {send}")
        legacy = request.args.get("sendNotifications")
        if send is None and legacy is not None:
            send = "all" if _flag(legacy, "sendNotifications") else "none"
        version = _integer(request, "conferenceDataVersion", 0, 0, 1)
        attachments = _boolean(request, "supportsAttachments", False)
        return cls(send, attachments, version == 1)


def _accepted(body: dict[str, Any], options: WriteOptions) -> dict[str, Any]:
    """The writable fields of a request body; 400 for a field the Event schema lacks."""
    unknown = set(body) - _WRITABLE - _READ_ONLY
    if unknown:
        raise ApiError(400, "invalid", f"Unknown field name: {sorted(unknown)[0]}")
    skipped = {"attachments"} if not options.attachments else set()
    skipped |= {"conferenceData"} if not options.conference else set()
    return {k: v for k, v in body.items() if k in _WRITABLE and k not in skipped}


def _merge(current: dict[str, Any], fields: dict[str, Any], *, patch: bool) -> dict[str, Any]:
    """`current` with `fields` applied: a patch replaces the fields it names (null clears
    one; extended properties merge key by key), an update replaces every writable field."""
    merged = copy.deepcopy(current)
    if not patch:
        for name in _WRITABLE - {"eventType", "attachments", "conferenceData"}:
            merged.pop(name, None)
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        elif name == "extendedProperties" and patch and isinstance(value, dict):
            merged[name] = _merge_properties(merged.get(name) or {}, value)
        else:
            merged[name] = copy.deepcopy(value)
    return merged


def _merge_properties(current: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(current)
    for scope, values in given.items():
        if values is None or not isinstance(values, dict):
            merged[scope] = values
            continue
        kept = dict(merged.get(scope) or {})
        for key, value in values.items():
            if value is None:
                kept.pop(key, None)
            else:
                kept[key] = value
        merged[scope] = kept
    return merged


def _normalize(resource: dict[str, Any], calendar: Calendar, account: Account) -> dict[str, Any]:
    """Validate an event's client fields and bring them to the form Google returns."""
    zone = _zone(calendar.time_zone, "calendar")
    for name in _STRINGS:
        if name in resource and not isinstance(resource[name], str):
            raise ApiError(400, "invalid", f"Invalid value for {name}.")
    for name in ("start", "end"):
        if name in resource:
            resource[name] = _event_time(resource[name], name, zone)
    _enum(resource, "visibility", tuple(_VISIBILITY_RANK))
    _enum(resource, "transparency", _TRANSPARENCY)
    _enum(resource, "status", _STATUSES)
    _enum(resource, "eventType", _EVENT_TYPES)
    recurrence = resource.get("recurrence")
    if recurrence is not None and not isinstance(recurrence, list):
        raise ApiError(400, "invalid", "Invalid recurrence rule.")
    if not recurrence:
        resource.pop("recurrence", None)
    if "attendees" in resource:
        resource["attendees"] = _attendees(resource["attendees"], calendar, account)
        if not resource["attendees"]:
            del resource["attendees"]
    if "extendedProperties" in resource:
        resource["extendedProperties"] = _properties(resource["extendedProperties"])
    _check_times(resource, zone)
    return resource


def _enum(resource: dict[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    if name in resource and resource[name] not in allowed:
        raise ApiError(400, "invalid", f"Invalid value for {name}: {resource[name]}")


def _attendees(value: Any, calendar: Calendar, account: Account) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ApiError(400, "invalid", "Invalid attendees.")
    kept = []
    for given in value:
        if not isinstance(given, dict) or set(given) - _ATTENDEE_FIELDS:
            raise ApiError(400, "invalid", "Invalid attendee.")
        if not isinstance(given.get("email"), str) or "@" not in given["email"]:
            raise ApiError(400, "required", "Missing attendee email.")
        attendee = dict(given)
        attendee.setdefault("responseStatus", "needsAction")
        if attendee["responseStatus"] not in _RESPONSES:
            raise ApiError(400, "invalid", "Invalid attendee responseStatus.")
        attendee.pop("organizer", None)
        attendee.pop("self", None)
        if attendee["email"].lower() == calendar.id.lower():
            attendee["organizer"] = True
        if attendee["email"].lower() == account.email.lower():
            attendee["self"] = True
        kept.append(attendee)
    return kept


def _properties(value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict) or set(value) - {"private", "shared"}:
        raise ApiError(400, "invalid", "Invalid extendedProperties.")
    kept = {}
    for scope, values in value.items():
        if values is None:
            continue
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise ApiError(400, "invalid", f"Invalid extendedProperties.{scope}.")
        if values:
            kept[scope] = dict(values)
    return kept


def _new_event(
    body: dict[str, Any],
    fields: dict[str, Any],
    calendar: Calendar,
    account: Account,
    ids: random.Random,
) -> dict[str, Any]:
    """The event an insert makes: the client's fields and what Google fills in."""
    event_id = body.get("id")
    if event_id is None:
        event_id = "".join(ids.choice("abcdefghijklmnopqrstuv0123456789") for _ in range(26))
    if not isinstance(event_id, str) or not _BASE32HEX.match(event_id):
        raise ApiError(400, "invalid", "Invalid resource id value.")
    if event_id in calendar.events:
        raise ApiError(409, "duplicate", "The requested identifier already exists.")
    ical = body.get("iCalUID")
    eid = base64.urlsafe_b64encode(f"{event_id} {calendar.id}".encode()).decode().rstrip("=")
    resource: dict[str, Any] = {
        "kind": "calendar#event",
        "id": event_id,
        "status": "confirmed",
        "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
        "iCalUID": ical if isinstance(ical, str) and ical else f"{event_id}@google.com",
        "creator": {"email": account.email, "self": True},
        "organizer": _organizer(calendar, account),
        "reminders": {"useDefault": True},
        "eventType": "default",
        "sequence": 0,
    }
    resource.update(copy.deepcopy(fields))
    return resource


def _organizer(calendar: Calendar, account: Account) -> dict[str, Any]:
    organizer: dict[str, Any] = {"email": calendar.id, "self": True}
    if calendar.id != account.email:
        organizer["displayName"] = calendar.summary
    return organizer


def _commit(
    sandbox: GoogleSandbox,
    state: CalendarState,
    calendar: Calendar,
    resource: dict[str, Any],
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    """Store a written event with a new etag, `updated` and change number, and tell the
    calendar's push channels."""
    now = sandbox.clock()
    state.changes += 1
    resource["etag"] = _next_etag(state, now)
    resource["updated"] = rfc3339(now)
    if previous is None:
        resource["created"] = resource["updated"]
    else:
        resource["created"] = previous.get("created", resource["updated"])
        resource["sequence"] = _sequence(resource, previous)
    calendar.events[resource["id"]] = Stored(resource, state.changes)
    _announce(sandbox, state, calendar)
    return resource


def _sequence(resource: dict[str, Any], previous: dict[str, Any]) -> int:
    """iCalendar's SEQUENCE: up by one when the time, recurrence or status changes; a
    client may raise it but not lower it."""
    current = int(previous.get("sequence", 0))
    given = resource.get("sequence", current)
    if not isinstance(given, int) or given < current:
        raise ApiError(
            400,
            "invalidSequenceValue",
            "Invalid sequence value. The specified sequence number is below the current "
            "sequence number of the resource.",
        )
    significant = ("start", "end", "recurrence", "status")
    if any(resource.get(k) != previous.get(k) for k in significant):
        return max(given, current + 1)
    return given


def _record_send(
    state: CalendarState,
    method: str,
    calendar: Calendar,
    event_id: str,
    options: WriteOptions,
    guests: Iterable[dict[str, Any]],
) -> None:
    """SYN-8's evidence: what a write asked for, and whom Google would have e-mailed."""
    notify = options.send_updates in ("all", "externalOnly")
    domain = calendar.id.rpartition("@")[2].lower()
    notified = []
    for guest in guests:
        email = str(guest.get("email", ""))
        if guest.get("self") or guest.get("organizer") or email in notified or not notify:
            continue
        if options.send_updates == "externalOnly" and email.rpartition("@")[2].lower() == domain:
            continue
        notified.append(email)
    state.sent.append(
        {
            "method": method,
            "calendarId": calendar.id,
            "eventId": event_id,
            "sendUpdates": options.send_updates,
            "notified": notified,
        }
    )


def _check_version(request: Request, resource: dict[str, Any]) -> None:
    """If-Match: the write applies only to the version the client last saw."""
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    tags = [tag.strip() for tag in wanted.split(",")]
    if "*" not in tags and resource.get("etag") not in tags:
        raise ApiError(412, "conditionNotMet", "Precondition Failed")


def _current(calendar: Calendar, event_id: str) -> tuple[dict[str, Any], bool]:
    """The event an id names (stored, or an unchanged occurrence of a series) and
    whether it is stored yet; 404 otherwise."""
    stored = calendar.events.get(event_id)
    if stored is not None:
        return stored.resource, True
    instance = _find_instance(calendar, event_id)
    if instance is None:
        raise ApiError(404, "notFound", "Not Found")
    return instance, False


def _spread_visibility(
    sandbox: GoogleSandbox, state: CalendarState, calendar: Calendar, event: dict[str, Any]
) -> None:
    """A stricter visibility on one occurrence applies to its whole series; a looser one
    is ignored."""
    master_id = event.get("recurringEventId")
    stored = calendar.events.get(master_id) if master_id else None
    if stored is None:
        return
    mine = _VISIBILITY_RANK[event.get("visibility", "default")]
    theirs = _VISIBILITY_RANK[stored.resource.get("visibility", "default")]
    if mine > theirs:
        master = copy.deepcopy(stored.resource)
        master["visibility"] = event["visibility"]
        _commit(sandbox, state, calendar, master, stored.resource)
    elif mine < theirs:
        event["visibility"] = stored.resource.get("visibility", "default")


# -- rendering -----------------------------------------------------------------------------------
def _shown(resource: dict[str, Any], zone: ZoneInfo | None) -> dict[str, Any]:
    """An event as the API returns it: default visibility and transparency left out, and
    date-times in the time zone the request asked for."""
    shown = copy.deepcopy(resource)
    if shown.get("visibility") == "default":
        del shown["visibility"]
    if shown.get("transparency") == "opaque":
        del shown["transparency"]
    if zone is not None:
        for name in ("start", "end", "originalStartTime"):
            moment = shown.get(name)
            if moment and "dateTime" in moment:
                moment["dateTime"] = _render(_instant(moment, zone), zone)
    return shown


def _deletion(resource: dict[str, Any]) -> dict[str, Any]:
    """A cancelled event in a listing: only what Google guarantees for a deletion."""
    kept = {k: resource[k] for k in ("kind", "etag", "id", "status")}
    for name in ("recurringEventId", "originalStartTime"):
        if name in resource:
            kept[name] = copy.deepcopy(resource[name])
    return kept


def _request_zone(request: Request) -> ZoneInfo | None:
    name = request.args.get("timeZone")
    return None if name is None else _zone(name, "request")


# -- query parameters ----------------------------------------------------------------------------
def _flag(value: str, name: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ApiError(400, "invalidParameter", f"Invalid value for {name}: {value}")
    return value.lower() == "true"


def _boolean(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    return default if value is None else _flag(value, name)


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise ApiError(400, "invalidParameter", f"Invalid value for {name}: {value}") from exc
    if number < low:
        raise ApiError(400, "invalidParameter", f"Invalid value for {name}: {value}")
    return min(number, high)


def _moment(request: Request, name: str) -> datetime | None:
    value = request.args.get(name)
    if value is None:
        return None
    moment = _parse_instant(value, name)
    if moment.tzinfo is None:
        raise ApiError(400, "invalidParameter", f"{name} must carry a time zone offset")
    return moment


def _pairs(request: Request, name: str) -> list[tuple[str, str]]:
    pairs = []
    for value in request.args.getlist(name):
        key, sep, wanted = value.partition("=")
        if not sep or not key:
            raise ApiError(400, "invalidParameter", f"Invalid value for {name}: {value}")
        pairs.append((key, wanted))
    return pairs


@dataclass(frozen=True)
class Query:
    """The filters of a full events.list."""

    show_deleted: bool
    time_min: datetime | None
    time_max: datetime | None
    updated_min: datetime | None
    private: list[tuple[str, str]]
    shared: list[tuple[str, str]]
    text: str | None
    ical_uid: str | None
    event_types: frozenset[str]
    by_updated: bool

    @classmethod
    def of(cls, request: Request) -> Query:
        if _boolean(request, "singleEvents", False):
            raise ApiError(400, "invalidParameter", "singleEvents=true is not served here")
        order = request.args.get("orderBy")
        if order not in (None, "updated"):
            raise ApiError(400, "invalidParameter", "orderBy startTime needs singleEvents")
        time_min, time_max = _moment(request, "timeMin"), _moment(request, "timeMax")
        if time_min and time_max and time_min >= time_max:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        return cls(
            _boolean(request, "showDeleted", False),
            time_min,
            time_max,
            _moment(request, "updatedMin"),
            _pairs(request, "privateExtendedProperty"),
            _pairs(request, "sharedExtendedProperty"),
            request.args.get("q"),
            request.args.get("iCalUID"),
            frozenset(request.args.getlist("eventTypes")),
            order == "updated",
        )

    def matches(self, resource: dict[str, Any], calendar: Calendar) -> bool:
        updated = datetime.fromisoformat(resource["updated"].replace("Z", "+00:00"))
        if self.updated_min is not None and updated < self.updated_min:
            return False
        if resource["status"] == "cancelled" and not self._shows_cancelled(resource):
            return False
        if self.ical_uid is not None and resource.get("iCalUID") != self.ical_uid:
            return False
        if self.event_types and resource.get("eventType", "default") not in self.event_types:
            return False
        return (
            self._has_properties(resource)
            and self._has_text(resource)
            and self._in_window(resource, calendar)
        )

    def _shows_cancelled(self, resource: dict[str, Any]) -> bool:
        return self.show_deleted or self.updated_min is not None or "recurringEventId" in resource

    def _has_properties(self, resource: dict[str, Any]) -> bool:
        held = resource.get("extendedProperties") or {}
        private, shared = held.get("private") or {}, held.get("shared") or {}
        return all(private.get(k) == v for k, v in self.private) and all(
            shared.get(k) == v for k, v in self.shared
        )

    def _has_text(self, resource: dict[str, Any]) -> bool:
        if not self.text:
            return True
        people = [*resource.get("attendees", []), resource.get("organizer") or {}]
        texts = [resource.get(k, "") for k in ("summary", "description", "location")]
        texts += [str(p.get(k, "")) for p in people for k in ("email", "displayName")]
        return all(
            any(word.lower() in text.lower() for text in texts) for word in self.text.split()
        )

    def _in_window(self, resource: dict[str, Any], calendar: Calendar) -> bool:
        if self.time_min is None and self.time_max is None:
            return True
        zone = ZoneInfo(calendar.time_zone)
        start, end = _instant(resource["start"], zone), _instant(resource["end"], zone)
        if resource.get("recurrence"):
            series = _series(resource)
            low = self.time_min or start
            found = series.first_ending_after(low)
            if found is None:
                return False
            start = found.replace(tzinfo=series.zone) if series.all_day else found
            end = start + series.duration
        after_min = self.time_min is None or end > self.time_min
        return after_min and (self.time_max is None or start < self.time_max)


def _listing_key(request: Request, calendar: Calendar) -> str:
    """What a page token is bound to: the calendar and every parameter but the paging."""
    params = sorted(
        (k, v) for k, v in request.args.items(multi=True) if k not in ("pageToken", "maxResults")
    )
    return json.dumps([calendar.id, params])


# -- listing events ------------------------------------------------------------------------------
def _sync_point(request: Request, state: CalendarState, calendar: Calendar) -> SyncPoint:
    """The sync token's point; 400 for parameters Google refuses with one, 410 for a
    token that expired or never existed."""
    for name in _SYNC_FORBIDDEN:
        if name in request.args:
            raise ApiError(400, "invalid", f"{name} is not allowed together with syncToken")
    if not _boolean(request, "showDeleted", True):
        raise ApiError(400, "invalid", "showDeleted=false is not allowed with syncToken")
    if _boolean(request, "singleEvents", False):
        raise ApiError(400, "invalidParameter", "singleEvents=true is not served here")
    point = state.sync_tokens.get(request.args["syncToken"])
    if point is None or point.calendar_id != calendar.id:
        raise ApiError(
            410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required."
        )
    return point


def _first_page(request: Request, state: CalendarState, calendar: Calendar) -> list[str]:
    """The ids of the whole listing a request without a page token starts."""
    if "syncToken" in request.args:
        since = _sync_point(request, state, calendar)
        changed = [s for s in calendar.events.values() if s.changed > since.changed]
        changed.sort(key=lambda s: s.changed)
        return [s.resource["id"] for s in changed]
    query = Query.of(request)
    found = [s for s in calendar.events.values() if query.matches(s.resource, calendar)]
    if query.by_updated:
        found.sort(key=lambda s: s.changed)
    return [s.resource["id"] for s in found]


def _page(request: Request, state: CalendarState, calendar: Calendar) -> Page:
    """The listing this request continues (its page token) or starts; the sync point its
    last page hands out is taken when the listing starts."""
    key = _listing_key(request, calendar)
    token = request.args.get("pageToken")
    if token is None:
        point = SyncPoint(calendar.id, state.changes)
        return Page(key, _first_page(request, state, calendar), point)
    page = state.pages.get(token)
    if page is None or page.key != key:
        raise ApiError(400, "invalid", "Invalid page token value.")
    return page


def _page_size(request: Request, state: CalendarState) -> int:
    size = _integer(request, "maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
    return min(size, state.page_cap) if state.page_cap else size


def _listed(resource: dict[str, Any], zone: ZoneInfo | None) -> dict[str, Any]:
    return _deletion(resource) if resource["status"] == "cancelled" else _shown(resource, zone)


def _collection(
    state: CalendarState, calendar: Calendar, items: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    stamps = [s.resource["updated"] for s in calendar.events.values()]
    return {
        "kind": "calendar#events",
        "etag": f'"{state.last_etag}"',
        "summary": calendar.summary,
        "updated": max(stamps) if stamps else rfc3339(now),
        "timeZone": calendar.time_zone,
        "accessRole": "owner",
        "defaultReminders": [],
        "items": items,
    }


def list_events(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str
) -> Response:
    state, calendar = _context(sandbox, account, calendarId)
    zone = _request_zone(request)
    page = _page(request, state, calendar)
    size = _page_size(request, state)
    shown = page.ids[:size]
    items = [_listed(calendar.events[i].resource, zone) for i in shown]
    body = _collection(state, calendar, items, sandbox.clock())
    rest = page.ids[size:]
    if rest:
        token = "P" + secrets.token_urlsafe(18)
        state.pages[token] = Page(page.key, rest, page.sync)
        body["nextPageToken"] = token
    elif page.sync is not None:
        token = "C" + secrets.token_urlsafe(24)
        state.sync_tokens[token] = page.sync
        body["nextSyncToken"] = token
    return json_response(body)


def list_instances(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str, eventId: str
) -> Response:
    """The occurrences of a series (at most INSTANCE_LIMIT), changed ones as changed."""
    state, calendar = _context(sandbox, account, calendarId)
    stored = calendar.events.get(eventId)
    if stored is None:
        raise ApiError(404, "notFound", "Not Found")
    if not stored.resource.get("recurrence"):
        raise ApiError(400, "invalid", "The event is not a recurring event.")
    query = _instance_query(request)
    found = [
        e
        for e in _occurrences(calendar, stored.resource)
        if (e["status"] != "cancelled" or query.show_deleted) and query.matches(e, calendar)
    ]
    offset = _offset(request.args.get("pageToken"))
    size = _integer(request, "maxResults", DEFAULT_PAGE, 1, MAX_PAGE)
    zone = _request_zone(request)
    items = [_listed(e, zone) for e in found[offset : offset + size]]
    body = _collection(state, calendar, items, sandbox.clock())
    if offset + size < len(found):
        body["nextPageToken"] = f"I{offset + size}"
    return json_response(body)


def _instance_query(request: Request) -> Query:
    return Query(
        _boolean(request, "showDeleted", False),
        _moment(request, "timeMin"),
        _moment(request, "timeMax"),
        None,
        [],
        [],
        None,
        None,
        frozenset(),
        False,
    )


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    if not re.fullmatch(r"I\d+", token):
        raise ApiError(400, "invalid", "Invalid page token value.")
    return int(token[1:])


def _occurrences(calendar: Calendar, master: dict[str, Any]) -> list[dict[str, Any]]:
    series = _series(master)
    found = []
    for start in series.starts():
        instance = _instance(master, series, start)
        stored = calendar.events.get(instance["id"])
        found.append(stored.resource if stored is not None else instance)
    return found


# -- event handlers ------------------------------------------------------------------------------
def get_event(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str, eventId: str
) -> Response:
    _, calendar = _context(sandbox, account, calendarId)
    resource, _ = _current(calendar, eventId)
    return json_response(_shown(resource, _request_zone(request)))


def insert_event(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str
) -> Response:
    state, calendar = _context(sandbox, account, calendarId)
    options = WriteOptions.of(request)
    body = read_json(request)
    fields = _accepted(body, options)
    made = _new_event(body, fields, calendar, account, sandbox.ids)
    resource = _normalize(made, calendar, account)
    _commit(sandbox, state, calendar, resource, None)
    _record_send(state, "insert", calendar, resource["id"], options, resource.get("attendees", []))
    return json_response(_shown(resource, None))


def _change_event(
    sandbox: GoogleSandbox,
    request: Request,
    account: Account,
    calendarId: str,
    eventId: str,
    *,
    patch: bool,
) -> Response:
    state, calendar = _context(sandbox, account, calendarId)
    options = WriteOptions.of(request)
    current, _ = _current(calendar, eventId)
    _check_version(request, current)
    fields = _accepted(read_json(request), options)
    if "eventType" in fields and fields["eventType"] != current.get("eventType", "default"):
        raise ApiError(400, "invalid", "The event type cannot be changed.")
    resource = _normalize(_merge(current, fields, patch=patch), calendar, account)
    _spread_visibility(sandbox, state, calendar, resource)
    _commit(sandbox, state, calendar, resource, current)
    guests = [*current.get("attendees", []), *resource.get("attendees", [])]
    _record_send(state, "patch" if patch else "update", calendar, eventId, options, guests)
    return json_response(_shown(resource, None))


def patch_event(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str, eventId: str
) -> Response:
    return _change_event(sandbox, request, account, calendarId, eventId, patch=True)


def update_event(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str, eventId: str
) -> Response:
    return _change_event(sandbox, request, account, calendarId, eventId, patch=False)


def delete_event(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str, eventId: str
) -> Response:
    """Cancel an event (an occurrence becomes a cancelled exception; a series takes its
    exceptions along); a second delete answers 410 deleted."""
    state, calendar = _context(sandbox, account, calendarId)
    options = WriteOptions.of(request)
    current, _ = _current(calendar, eventId)
    if current["status"] == "cancelled":
        raise ApiError(410, "deleted", "Resource has been deleted")
    _check_version(request, current)
    _cancel(sandbox, state, calendar, current)
    if current.get("recurrence"):
        for stored in list(calendar.events.values()):
            exception = stored.resource
            if exception.get("recurringEventId") == eventId and exception["status"] != "cancelled":
                _cancel(sandbox, state, calendar, exception)
    _record_send(state, "delete", calendar, eventId, options, current.get("attendees", []))
    return Response(status=204)


def _cancel(
    sandbox: GoogleSandbox, state: CalendarState, calendar: Calendar, current: dict[str, Any]
) -> None:
    resource = copy.deepcopy(current)
    resource["status"] = "cancelled"
    _commit(sandbox, state, calendar, resource, current)


# -- calendars -----------------------------------------------------------------------------------
def _entry(calendar: Calendar) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": "calendar#calendarListEntry",
        "etag": calendar.etag,
        "id": calendar.id,
        "summary": calendar.summary,
        "timeZone": calendar.time_zone,
        "colorId": "14",
        "backgroundColor": "#9fe1e7",
        "foregroundColor": "#000000",
        "selected": True,
        "accessRole": "owner",
        "defaultReminders": [],
    }
    if calendar.primary:
        entry["primary"] = True
    return entry


def list_calendars(sandbox: GoogleSandbox, request: Request, account: Account) -> Response:
    state = state_of(sandbox, account)
    entries = [_entry(c) for c in state.calendars.values()]
    offset = _offset(request.args.get("pageToken"))
    size = _integer(request, "maxResults", 100, 1, 250)
    body: dict[str, Any] = {
        "kind": "calendar#calendarList",
        "etag": f'"{state.last_etag}"',
        "items": entries[offset : offset + size],
    }
    if offset + size < len(entries):
        body["nextPageToken"] = f"I{offset + size}"
    return json_response(body)


def get_calendar(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str
) -> Response:
    _, calendar = _context(sandbox, account, calendarId)
    body = {
        "kind": "calendar#calendar",
        "etag": calendar.etag,
        "id": calendar.id,
        "summary": calendar.summary,
        "timeZone": calendar.time_zone,
    }
    return json_response(body)


# -- push channels -------------------------------------------------------------------------------
class Postman:
    """Delivers push messages in order from a background thread that runs only while
    there is mail, outside the sandbox lock; failures are dropped, as Google's
    best-effort delivery drops them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self._queue: deque[tuple[str, dict[str, str]]] = deque()
        self._guard = threading.Lock()
        self._running = False

    def post(self, address: str, headers: dict[str, str]) -> None:
        with self._guard:
            self._queue.append((address, headers))
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._drain, name="calendar-push", daemon=True).start()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every message posted so far was delivered (or dropped)."""
        deadline = clock_time.monotonic() + timeout
        while clock_time.monotonic() < deadline:
            with self._guard:
                if not self._queue and not self._running:
                    return True
            clock_time.sleep(0.02)
        return False

    def _drain(self) -> None:
        while True:
            with self._guard:
                if not self._queue:
                    self._running = False
                    return
                address, headers = self._queue.popleft()
            _deliver(address, headers)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _deliver(address: str, headers: dict[str, str]) -> None:
    request = urllib.request.Request(address, data=b"", headers=headers, method="POST")
    try:
        with _DIRECT.open(request, timeout=PUSH_TIMEOUT) as answer:
            answer.read()
    except (OSError, ValueError, urllib.error.URLError):
        return


_POSTMEN: weakref.WeakKeyDictionary[GoogleSandbox, Postman] = weakref.WeakKeyDictionary()
_POSTMEN_GUARD = threading.Lock()


def push_delivered(sandbox: GoogleSandbox, timeout: float = 10.0) -> bool:
    """Wait until the push messages the sandbox sent so far reached their addresses."""
    return _push(sandbox).wait_idle(timeout)


def _push(sandbox: GoogleSandbox) -> Postman:
    with _POSTMEN_GUARD:
        postman = _POSTMEN.get(sandbox)
        if postman is None:
            postman = _POSTMEN[sandbox] = Postman()
        return postman


def _notify(sandbox: GoogleSandbox, channel: Channel, resource_state: str) -> None:
    """Send one message on a live channel (and keep it for `notifications`)."""
    if channel.stopped or channel.expiration <= sandbox.clock():
        return
    channel.messages += 1
    headers = {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-URI": channel.resource_uri,
        "X-Goog-Resource-State": resource_state,
        "X-Goog-Message-Number": str(channel.messages),
    }
    if channel.token is not None:
        headers["X-Goog-Channel-Token"] = channel.token
    postman = _push(sandbox)
    postman.sent.append(
        {
            "channel_id": channel.id,
            "address": channel.address,
            "state": resource_state,
            "message_number": channel.messages,
            "headers": dict(headers),
        }
    )
    postman.post(channel.address, headers)


def _announce(sandbox: GoogleSandbox, state: CalendarState, calendar: Calendar) -> None:
    for channel in state.channels.values():
        if channel.calendar_id == calendar.id:
            _notify(sandbox, channel, "exists")


def _channel_body(body: dict[str, Any]) -> tuple[str, str, str | None]:
    channel_id, address, token = body.get("id"), body.get("address"), body.get("token")
    if not isinstance(channel_id, str) or not channel_id or len(channel_id) > 64:
        raise ApiError(400, "required", "Missing or invalid channel id.")
    if body.get("type") not in ("web_hook", "webhook"):
        raise ApiError(400, "invalid", "Invalid channel type.")
    if not isinstance(address, str) or not re.match(r"^https?://", address):
        raise ApiError(400, "invalid", "Invalid channel address.")
    if token is not None and not isinstance(token, str):
        raise ApiError(400, "invalid", "Invalid channel token.")
    return channel_id, address, token


def _expiration(body: dict[str, Any], now: datetime) -> datetime:
    """The requested expiration (ms since the epoch), no later than a week from now."""
    latest = now + CHANNEL_LIFETIME
    value = body.get("expiration")
    if value is None:
        return latest
    try:
        wanted = datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid", "Invalid channel expiration.") from exc
    if wanted <= now:
        raise ApiError(400, "invalid", "The channel expiration is in the past.")
    return min(wanted, latest)


def watch_events(
    sandbox: GoogleSandbox, request: Request, account: Account, calendarId: str
) -> Response:
    """Open a push channel on a calendar's events; its first message is a `sync`."""
    state, calendar = _context(sandbox, account, calendarId)
    body = read_json(request)
    channel_id, address, token = _channel_body(body)
    known = state.channels.get(channel_id)
    if known is not None and not known.stopped:
        raise ApiError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
    uri = f"{sandbox.base_url}calendar/v3/calendars/{quote(calendarId, safe='')}/events?alt=json"
    channel = Channel(
        channel_id,
        calendar.id,
        calendar.resource_id,
        uri,
        address,
        token,
        _expiration(body, sandbox.clock()),
    )
    state.channels[channel_id] = channel
    _notify(sandbox, channel, "sync")
    answer = {
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
        "expiration": str(int(channel.expiration.timestamp() * 1000)),
    }
    if token is not None:
        answer["token"] = token
    return json_response(answer)


def stop_channel(sandbox: GoogleSandbox, request: Request, account: Account) -> Response:
    """Stop a channel named by id and resource id; 404 for one the account never opened."""
    state = state_of(sandbox, account)
    body = read_json(request)
    channel = state.channels.get(str(body.get("id")))
    if channel is None or channel.stopped or channel.resource_id != body.get("resourceId"):
        raise ApiError(404, "notFound", f"Channel '{body.get('id')}' not found")
    channel.stopped = True
    return Response(status=204)


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: GoogleSandbox) -> list[Route]:
    """Calendar v3 below `calendar/v3/`, as the discovery document lays it out."""

    def bound(handler: Any) -> Any:
        return lambda request, account, **path: handler(sandbox, request, account, **path)

    events = "calendar/v3/calendars/{calendarId}/events"
    event = events + "/{eventId}"
    return [
        route(
            "GET", "calendar/v3/users/me/calendarList", bound(list_calendars), CALENDAR_LIST_SCOPES
        ),
        route(
            "GET", "calendar/v3/calendars/{calendarId}", bound(get_calendar), CALENDAR_GET_SCOPES
        ),
        route("GET", events, bound(list_events), EVENT_READ_SCOPES),
        route("POST", events, bound(insert_event), EVENT_WRITE_SCOPES),
        route("POST", events + "/watch", bound(watch_events), EVENT_READ_SCOPES),
        route("GET", event, bound(get_event), EVENT_READ_SCOPES),
        route("PATCH", event, bound(patch_event), EVENT_WRITE_SCOPES),
        route("PUT", event, bound(update_event), EVENT_WRITE_SCOPES),
        route("DELETE", event, bound(delete_event), EVENT_WRITE_SCOPES),
        route("GET", event + "/instances", bound(list_instances), EVENT_READ_SCOPES),
        route("POST", "calendar/v3/channels/stop", bound(stop_channel), EVENT_READ_SCOPES),
    ]
