"""Outlook calendars and events in the Graph sandbox, with recurrence expanded into
occurrences by calendarView and its delta.

    GET/POST             me/calendars
    GET                  me/calendars/{calendarId}                   (and me/calendar)
    GET/POST             me/calendars/{calendarId}/events      (and me/calendar/events, me/events)
    GET/PATCH/DELETE     me/calendars/{calendarId}/events/{id} (and the same below those two)
    GET                  me/events/{id}/instances?startDateTime&endDateTime
    POST                 me/events/{id}/snoozeReminder, me/events/{id}/dismissReminder
    GET/POST             me/events/{id}/attachments                  (file attachments)
    GET                  me/calendarView?startDateTime&endDateTime (me/calendars/{id}/calendarView)
    GET                  me/calendarView/delta?startDateTime&endDateTime

Each user has a default calendar "Calendar" (`isDefaultCalendar`). Event lists show single
events and series masters; calendarView and its delta show what a calendar displays in
the window: singles, and each series expanded into `occurrence`s, a modified occurrence
as an `exception` (its own changeKey), a cancelled one (DELETE of the occurrence) not at
all. Occurrence ids are stable: the master's id and the occurrence's original start.

Every write gives a new `changeKey` and `@odata.etag`; `If-Match` naming another version
gets 412 `ErrorIrresolvableConflict`. A POST carrying a `transactionId` already used by
one of the user's events returns that event instead of creating a copy. Times are
answered in UTC unless `Prefer: outlook.timezone="..."` names another zone (IANA or one
of the Windows names in WINDOWS_ZONES); an all-day event's start and end must both be
midnight, and are shown as dates at midnight whatever the zone.

Outlook's reminder state (snoozed, dismissed) is no property of Graph's event, but
changing it gives the event a new changeKey and lastModifiedDateTime (SYN-10); the
`snooze` and `dismiss` helpers do what a user clicking in Outlook does, as MS-OXORMDR
says a client must: a snooze sets PidLidReminderSignalTime (the MAPI property REMINDER,
readable as a single-value extended property) to the snooze time; a dismiss of a single
event sets PidLidReminderSet false (Graph's isReminderOn), of a series it moves the
signal time past the last occurrence (the spec's 4501-01-01) and leaves isReminderOn.
`$expand=singleValueExtendedProperties($filter=id eq 'a' or id eq 'b')` reads several
extended properties at once.

File attachments (fileAttachment: name, contentType, contentBytes in base64) are added
to an event one POST at a time and listed with their content; adding one changes the
event (a new changeKey) and makes its `hasAttachments` true.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from werkzeug.wrappers import Request, Response

from sandbox.microsoft.contacts import XP, XP_FILTER, expanded_ids, xp_key
from sandbox.microsoft.core import (
    NO_CONTENT,
    GraphError,
    MicrosoftSandbox,
    Route,
    User,
    graph_time,
    json_response,
    read_json,
    route,
)
from sandbox.microsoft.graph import (
    DeltaRound,
    applied_page_size,
    check_if_match,
    etag,
    link,
    new_change_key,
    new_id,
    page_size,
    refuse_off_schema,
    tokens_of,
)

SCOPES = frozenset({"Calendars.ReadWrite", "Calendars.Read"})
WRITE_SCOPES = frozenset({"Calendars.ReadWrite"})
WRITABLE = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "isAllDay",
        "location",
        "locations",
        "sensitivity",
        "showAs",
        "importance",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "responseRequested",
        "attendees",
        "organizer",
        "recurrence",
        "categories",
        "allowNewTimeProposals",
        "hideAttendees",
        "isOnlineMeeting",
        "onlineMeetingProvider",
        "isDraft",
        "originalStartTimeZone",
        "originalEndTimeZone",
    }
)
ENUMS = {
    "sensitivity": {"normal", "personal", "private", "confidential"},
    "showAs": {"unknown", "free", "tentative", "busy", "oof", "workingElsewhere"},
    "importance": {"low", "normal", "high"},
}
PATTERNS = {
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
}
RANGES = {"endDate", "noEnd", "numbered"}
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEK_INDEX = ("first", "second", "third", "fourth", "last")
WINDOWS_ZONES = {
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "Pacific Standard Time": "America/Los_Angeles",
    "Tokyo Standard Time": "Asia/Tokyo",
    "AUS Eastern Standard Time": "Australia/Sydney",
}
HORIZON = timedelta(days=3 * 366)  # how far a series without end is expanded past a window
_NOT_FOUND = "The specified object was not found in the store."
REMINDER = "SystemTime {00062008-0000-0000-C000-000000000046} Id 0x8560"
NO_MORE_REMINDERS = "4501-01-01T00:00:00Z"
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
_OCCURRENCE = re.compile(r"^(?P<master>.+)_OID_(?P<start>\d{8}T\d{6}Z)$")


@dataclass
class Event:
    """A single event, a series master, or an exception of a series (keyed in its
    master's `exceptions` by original start)."""

    id: str
    calendar_id: str
    fields: dict[str, Any]
    extended: dict[str, str]
    xp_ids: dict[str, str]
    created: datetime
    modified: datetime
    change_key: str
    transaction_id: str | None = None
    deleted: bool = False
    series_master_id: str | None = None
    original_start: datetime | None = None  # exceptions: the occurrence's original start
    exceptions: dict[datetime, Event] = field(default_factory=dict)
    cancelled: set[datetime] = field(default_factory=set)
    reminder: str = "pending"  # Outlook's reminder state: pending, snoozed <time>, dismissed
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Calendar:
    id: str
    name: str
    change_key: str
    default: bool = False


@dataclass
class CalendarState:
    default: Calendar
    calendars: dict[str, Calendar] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> event id


@dataclass
class ViewRound(DeltaRound):
    """A calendarView delta round: besides the shared round's fields, the versions of the
    instances its deltaLink saw, which the next round compares with."""

    seen: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)


def state_of(user: User) -> CalendarState:
    state = user.data.get("calendar")
    if state is None:
        default = Calendar(new_id(user), "Calendar", new_change_key(), default=True)
        state = CalendarState(default, {default.id: default})
        user.data["calendar"] = state
    assert isinstance(state, CalendarState)
    return state


# -- time ----------------------------------------------------------------------------------------
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(
            400,
            "TimeZoneNotSupportedException",
            f"A valid TimeZone value must be specified. "
            f"The following TimeZone value is not supported: '{name}'.",
        ) from exc


def parse_local(value: Any) -> tuple[datetime, str]:
    """A dateTimeTimeZone as (aware datetime, zone name)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", "A dateTimeTimeZone value is required.")
    name = str(value.get("timeZone") or "UTC")
    try:
        naive = datetime.fromisoformat(value["dateTime"][:26].rstrip("Z"))
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidRequest", "Invalid dateTime value.") from exc
    return naive.replace(tzinfo=None).replace(tzinfo=zone(name)), name


def parse_instant(text: str, name: str) -> datetime:
    """startDateTime/endDateTime query parameters: ISO 8601, UTC unless an offset is given."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphError(
            400, "ErrorInvalidParameter", f"The value of the parameter '{name}' is invalid."
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.0000000")


def output_zone(request: Request) -> tuple[ZoneInfo, str]:
    found = re.search(
        r'outlook\.timezone\s*=\s*"([^"]+)"', ",".join(request.headers.getlist("Prefer"))
    )
    name = found.group(1) if found else "UTC"
    return zone(name), name


# -- recurrence ----------------------------------------------------------------------------------
def check_recurrence(value: Any) -> None:
    if value is None:
        return
    pattern = value.get("pattern") if isinstance(value, dict) else None
    span = value.get("range") if isinstance(value, dict) else None
    if not isinstance(pattern, dict) or not isinstance(span, dict):
        raise GraphError(400, "ErrorInvalidRequest", "recurrence needs a pattern and a range.")
    if pattern.get("type") not in PATTERNS or span.get("type") not in RANGES:
        raise GraphError(400, "ErrorInvalidRequest", "Invalid recurrence pattern or range type.")
    if int(pattern.get("interval") or 0) < 1:
        raise GraphError(400, "ErrorInvalidRequest", "The recurrence interval must be positive.")
    if pattern["type"] in ("weekly", "relativeMonthly", "relativeYearly") and not pattern.get(
        "daysOfWeek"
    ):
        raise GraphError(400, "ErrorInvalidRequest", "daysOfWeek is required for this pattern.")
    try:
        date.fromisoformat(str(span.get("startDate")))
        if span["type"] == "endDate":
            date.fromisoformat(str(span.get("endDate")))
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidRequest", "Invalid recurrence range dates.") from exc
    if span["type"] == "numbered" and int(span.get("numberOfOccurrences") or 0) < 1:
        raise GraphError(400, "ErrorInvalidRequest", "numberOfOccurrences must be positive.")


def _nth_weekday(year: int, month: int, weekday: int, index: str) -> date | None:
    first = date(year, month, 1)
    days = [first + timedelta(d) for d in range(31)]
    matching = [d for d in days if d.month == month and d.weekday() == weekday]
    if index == "last":
        return matching[-1]
    n = WEEK_INDEX.index(index or "first")
    return matching[n] if n < len(matching) else None


def occurrence_dates(recurrence: dict[str, Any], until: date) -> Iterator[date]:
    """The dates of a series' occurrences, in order, up to `until` and the range's end."""
    pattern, span = recurrence["pattern"], recurrence["range"]
    kind, interval = pattern["type"], int(pattern.get("interval") or 1)
    start = date.fromisoformat(span["startDate"])
    end = date.fromisoformat(span["endDate"]) if span["type"] == "endDate" else until
    end = min(end, until)
    left = int(span["numberOfOccurrences"]) if span["type"] == "numbered" else None
    weekdays = sorted(DAYS.index(d.lower()) for d in pattern.get("daysOfWeek") or [])

    def candidates() -> Iterator[date]:
        if kind == "daily":
            day = start
            while True:
                yield day
                day += timedelta(days=interval)
        elif kind == "weekly":
            first_day = DAYS.index(str(pattern.get("firstDayOfWeek") or "sunday").lower())
            week = start - timedelta(days=(start.weekday() - first_day) % 7)
            while True:
                for offset in range(7):
                    day = week + timedelta(days=offset)
                    if day.weekday() in weekdays and day >= start:
                        yield day
                week += timedelta(weeks=interval)
        else:
            months = interval * (12 if kind.endswith("Yearly") else 1)
            year, month = start.year, start.month
            if kind.endswith("Yearly"):
                month = int(pattern.get("month") or start.month)
            while True:
                found: list[date] = []
                if kind.startswith("absolute"):
                    try:
                        found = [date(year, month, int(pattern.get("dayOfMonth") or start.day))]
                    except ValueError:
                        found = []
                else:
                    index = str(pattern.get("index") or "first")
                    found = [
                        d
                        for w in weekdays
                        if (d := _nth_weekday(year, month, w, index)) is not None
                    ]
                for day in sorted(found):
                    if day >= start:
                        yield day
                month += months
                year, month = year + (month - 1) // 12, (month - 1) % 12 + 1

    for day in candidates():
        if day > end or (left is not None and left <= 0):
            return
        if left is not None:
            left -= 1
        yield day


def occurrence_id(master_id: str, original_start: datetime) -> str:
    return f"{master_id}_OID_{original_start.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    calendars = "v1.0/me/calendars"
    one = calendars + "/{calendarId}"

    def by_id(segments: dict[str, str], user: User) -> Calendar:
        return _calendar(state_of(user), segments.get("calendarId"))

    def view(request: Request, user: User, **segments: str) -> Response:
        return _view(sandbox, request, user, by_id(segments, user))

    def view_delta(request: Request, user: User, **segments: str) -> Response:
        calendar = by_id(segments, user)
        path = request.path.strip("/").removeprefix("v1.0/")
        return _view_delta(sandbox, request, user, calendar, path)

    found = [
        route(
            "GET",
            calendars,
            lambda r, u: _list_calendars(sandbox, u),
            SCOPES,
            "Collection(calendar)",
        ),
        route(
            "POST",
            calendars,
            lambda r, u: _create_calendar(sandbox, r, u),
            WRITE_SCOPES,
            "calendar",
        ),
        route(
            "GET",
            "v1.0/me/calendar",
            lambda r, u: _get_calendar(sandbox, u, None),
            SCOPES,
            "calendar",
        ),
        route(
            "GET",
            one,
            lambda r, u, calendarId: _get_calendar(sandbox, u, calendarId),
            SCOPES,
            "calendar",
        ),
    ]
    for base in ("v1.0/me/calendarView", one + "/calendarView", "v1.0/me/calendar/calendarView"):
        found += [
            route("GET", base + "/delta", view_delta, SCOPES, "Collection(event)"),
            route("GET", base, view, SCOPES, "Collection(event)"),
        ]
    found += _event_routes(sandbox, "v1.0/me/events", default=True)
    found += _event_routes(sandbox, "v1.0/me/calendar/events", default=True)
    found += _event_routes(sandbox, one + "/events")
    return found


def _event_routes(sandbox: MicrosoftSandbox, base: str, default: bool = False) -> list[Route]:
    def calendar(user: User, segments: dict[str, str]) -> Calendar | None:
        """The calendar a path names; None for me/events, which reaches every calendar."""
        if "calendarId" in segments:
            return _calendar(state_of(user), segments["calendarId"])
        return None if base.endswith("me/events") else state_of(user).default

    def listing(request: Request, user: User, **segments: str) -> Response:
        chosen = calendar(user, segments) or state_of(user).default
        return _list(sandbox, request, user, chosen)

    def create(request: Request, user: User, **segments: str) -> Response:
        chosen = calendar(user, segments) or state_of(user).default
        return _create(sandbox, request, user, chosen)

    def get(request: Request, user: User, eventId: str, **segments: str) -> Response:
        shown = _instance(sandbox, user, calendar(user, segments), eventId)
        return json_response(_shown(request, shown[0], shown[1]))

    def patch(request: Request, user: User, eventId: str, **segments: str) -> Response:
        return _patch(sandbox, request, user, calendar(user, segments), eventId)

    def delete(request: Request, user: User, eventId: str, **segments: str) -> Response:
        return _delete(sandbox, request, user, calendar(user, segments), eventId)

    def instances(request: Request, user: User, eventId: str, **segments: str) -> Response:
        master = _event(state_of(user), calendar(user, segments), eventId)
        low, high = _window(request)
        shown = [
            _shown(request, e, j)
            for e, j in _expand(sandbox, user, master, low, high)
            if e.series_master_id or j.get("type") != "seriesMaster"
        ]
        return json_response({"value": shown})

    def snooze_action(request: Request, user: User, eventId: str, **segments: str) -> Response:
        body = read_json(request)
        moment, _ = parse_local(body.get("newReminderTime") or body.get("NewReminderTime"))
        event = _event(state_of(user), calendar(user, segments), eventId)
        _snoozed(sandbox, user, event, moment)
        return Response(status=200)

    def dismiss_action(request: Request, user: User, eventId: str, **segments: str) -> Response:
        event = _event(state_of(user), calendar(user, segments), eventId)
        _dismissed(sandbox, user, event)
        return Response(status=200)

    def attachments(request: Request, user: User, eventId: str, **segments: str) -> Response:
        event = _event(state_of(user), calendar(user, segments), eventId)
        return json_response({"value": copy.deepcopy(event.attachments)})

    def attach(request: Request, user: User, eventId: str, **segments: str) -> Response:
        event = _event(state_of(user), calendar(user, segments), eventId)
        return _attach(sandbox, request, user, event)

    item = base + "/{eventId}"
    return [
        route("GET", item + "/attachments", attachments, SCOPES, "Collection(attachment)"),
        route("POST", item + "/attachments", attach, WRITE_SCOPES, "attachment"),
        route("GET", base, listing, SCOPES, "Collection(event)"),
        route("POST", base, create, WRITE_SCOPES, "event"),
        route("GET", item + "/instances", instances, SCOPES, "Collection(event)"),
        route("POST", item + "/snoozeReminder", snooze_action, WRITE_SCOPES, NO_CONTENT),
        route("POST", item + "/dismissReminder", dismiss_action, WRITE_SCOPES, NO_CONTENT),
        route("GET", item, get, SCOPES, "event"),
        route("PATCH", item, patch, WRITE_SCOPES, "event"),
        route("DELETE", item, delete, WRITE_SCOPES, NO_CONTENT),
    ]


def _calendar(state: CalendarState, calendar_id: str | None) -> Calendar:
    if calendar_id is None:
        return state.default
    found = state.calendars.get(calendar_id)
    if found is None:
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def _calendar_json(user: User, calendar: Calendar) -> dict[str, Any]:
    return {
        "@odata.etag": etag(calendar.change_key),
        "id": calendar.id,
        "name": calendar.name,
        "color": "auto",
        "hexColor": "",
        "isDefaultCalendar": calendar.default,
        "changeKey": calendar.change_key,
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "isRemovable": not calendar.default,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True,
        "owner": {"name": user.display_name, "address": user.email},
    }


def _context(sandbox: MicrosoftSandbox, user: User, entity_set: str) -> str:
    return f"{sandbox.base_url}/v1.0/$metadata#users('{user.oid}')/{entity_set}"


def _list_calendars(sandbox: MicrosoftSandbox, user: User) -> Response:
    state = state_of(user)
    return json_response(
        {
            "@odata.context": _context(sandbox, user, "calendars"),
            "value": [_calendar_json(user, c) for c in state.calendars.values()],
        }
    )


def _create_calendar(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    name = read_json(request).get("name")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "name is required.")
    state = state_of(user)
    if any(c.name == name for c in state.calendars.values()):
        raise GraphError(
            409, "ErrorFolderExists", "A folder with the specified name already exists."
        )
    calendar = Calendar(new_id(user), name, new_change_key())
    state.calendars[calendar.id] = calendar
    return json_response(_calendar_json(user, calendar), 201)


def _get_calendar(sandbox: MicrosoftSandbox, user: User, calendar_id: str | None) -> Response:
    return json_response(_calendar_json(user, _calendar(state_of(user), calendar_id)))


# -- events --------------------------------------------------------------------------------------
def _event(state: CalendarState, calendar: Calendar | None, event_id: str) -> Event:
    found = state.events.get(event_id)
    if (
        found is None
        or found.deleted
        or (calendar is not None and found.calendar_id != calendar.id)
    ):
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def _instance(
    sandbox: MicrosoftSandbox, user: User, calendar: Calendar | None, event_id: str
) -> tuple[Event, dict[str, Any]]:
    """An event, or an occurrence or exception of a series, as stored and as shown."""
    state = state_of(user)
    found = _OCCURRENCE.match(event_id)
    if found is None:
        event = _event(state, calendar, event_id)
        return event, _json(sandbox, user, event)
    master = _event(state, calendar, found.group("master"))
    original = datetime.strptime(found.group("start"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if master.fields.get("recurrence") is None or original in master.cancelled:
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    if original in master.exceptions:
        exception = master.exceptions[original]
        return exception, _json(sandbox, user, exception)
    for event, shown in _expand(sandbox, user, master, original, original + timedelta(seconds=1)):
        if shown["id"] == event_id:
            return event, shown
    raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)


def _checked(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str | None]:
    fields: dict[str, Any] = {}
    extended: dict[str, str] = {}
    transaction = None
    for name, value in body.items():
        if name.startswith("@odata.") or name in ("id", "changeKey"):
            continue
        if name == XP:
            for entry in value or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
                    raise GraphError(400, "ErrorInvalidExtendedPropertyValue", "Invalid value.")
                extended[str(entry.get("id", ""))] = entry["value"]
            continue
        if name == "transactionId":
            transaction = None if value is None else str(value)
            continue
        if name not in WRITABLE:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.event'.",
            )
        if name in ENUMS and value not in ENUMS[name]:
            raise GraphError(400, "RequestBodyRead", f"Invalid value '{value}' for '{name}'.")
        if name in ("start", "end"):
            parse_local(value)
        if name == "recurrence":
            check_recurrence(value)
        if name in ("categories", "attendees") and not isinstance(value, list):
            raise GraphError(400, "RequestBodyRead", f"'{name}' must be a collection.")
        fields[name] = copy.deepcopy(value)
    refuse_off_schema(fields, "event", "RequestBodyRead")
    return fields, extended, transaction


def _check_times(fields: dict[str, Any]) -> None:
    if "start" not in fields or "end" not in fields:
        raise GraphError(400, "ErrorInvalidRequest", "An event needs a start and an end.")
    start, start_zone = parse_local(fields["start"])
    end, end_zone = parse_local(fields["end"])
    if end < start:
        raise GraphError(
            400, "ErrorInvalidRequest", "The end time must be later than the start time."
        )
    if fields.get("isAllDay"):
        midnight = time(0, 0)
        if start.time() != midnight or end.time() != midnight:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "Your request can't be completed. If the event is an all-day event, start and "
                "end must be specified as midnight.",
            )
        if start_zone != end_zone or end <= start:
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "An all-day event's start and end must be midnights in the same time zone.",
            )


def _touch(sandbox: MicrosoftSandbox, event: Event) -> None:
    event.change_key = new_change_key()
    event.modified = sandbox.clock()


def _set_extended(event: Event, extended: dict[str, str]) -> None:
    for property_id, value in extended.items():
        key = xp_key(property_id)
        event.extended[key] = value
        event.xp_ids[key] = property_id


def _attach(sandbox: MicrosoftSandbox, request: Request, user: User, event: Event) -> Response:
    """Add a file attachment to the event, as Graph's POST .../attachments does."""
    body = read_json(request)
    if body.get("@odata.type") != FILE_ATTACHMENT:
        raise GraphError(400, "ErrorInvalidRequest", f"Only {FILE_ATTACHMENT} is supported.")
    name, content = body.get("name"), body.get("contentBytes")
    if not isinstance(name, str) or not name or not isinstance(content, str):
        raise GraphError(400, "ErrorInvalidRequest", "A file attachment needs a name and bytes.")
    try:
        size = len(base64.b64decode(content, validate=True))
    except binascii.Error as exc:
        raise GraphError(400, "ErrorInvalidRequest", "contentBytes is not base64.") from exc
    attachment = {
        "@odata.type": FILE_ATTACHMENT,
        "id": new_id(user),
        "lastModifiedDateTime": graph_time(sandbox.clock()),
        "name": name,
        "contentType": str(body.get("contentType") or "application/octet-stream"),
        "size": size,
        "isInline": bool(body.get("isInline", False)),
        "contentId": None,
        "contentLocation": None,
        "contentBytes": content,
    }
    event.attachments.append(attachment)
    _touch(sandbox, event)
    _notify(sandbox, user, "updated", event)
    return json_response(copy.deepcopy(attachment), 201)


def _notify(sandbox: MicrosoftSandbox, user: User, change: str, event: Event) -> None:
    """Tells the subscriptions module (when served) that `event` was created, updated
    or deleted."""
    sandbox.publish(user, "events", change, event.id, etag(event.change_key), event.calendar_id)


def _create(
    sandbox: MicrosoftSandbox, request: Request, user: User, calendar: Calendar
) -> Response:
    fields, extended, transaction = _checked(read_json(request))
    state = state_of(user)
    if transaction is not None and transaction in state.transactions:
        existing = state.events[state.transactions[transaction]]
        if not existing.deleted:
            return json_response(_shown(request, existing, _json(sandbox, user, existing)), 201)
    _check_times(fields)
    now = sandbox.clock()
    event = Event(new_id(user), calendar.id, fields, {}, {}, now, now, "", transaction)
    _set_extended(event, extended)
    _touch(sandbox, event)
    state.events[event.id] = event
    if transaction is not None:
        state.transactions[transaction] = event.id
    _notify(sandbox, user, "created", event)
    return json_response(_shown(request, event, _json(sandbox, user, event)), 201)


def _patch(
    sandbox: MicrosoftSandbox,
    request: Request,
    user: User,
    calendar: Calendar | None,
    event_id: str,
) -> Response:
    state = state_of(user)
    event, shown = _instance(sandbox, user, calendar, event_id)
    if event.series_master_id is None and event.fields.get("recurrence") and event.id != event_id:
        # a plain occurrence: patching it makes it an exception of its series
        check_if_match(request, event.change_key)
        master = event
        original = _original_of(event_id)
        fields = {k: copy.deepcopy(v) for k, v in master.fields.items() if k != "recurrence"}
        fields["start"], fields["end"] = shown["start"], shown["end"]
        now = sandbox.clock()
        event = Event(
            event_id,
            master.calendar_id,
            fields,
            dict(master.extended),
            dict(master.xp_ids),
            now,
            now,
            "",
            series_master_id=master.id,
            original_start=original,
        )
        master.exceptions[original] = event
    else:
        check_if_match(request, event.change_key)
    fields, extended, _ = _checked(read_json(request))
    if event.series_master_id is not None and "recurrence" in fields:
        raise GraphError(400, "ErrorInvalidRequest", "An occurrence cannot have a recurrence.")
    merged = {**event.fields, **fields}
    _check_times(merged)
    event.fields = merged
    _set_extended(event, extended)
    _touch(sandbox, event)
    if ("recurrence" in fields or "start" in fields) and event.series_master_id is None:
        event.exceptions.clear()  # Outlook drops a series' exceptions when it is reshaped
        event.cancelled.clear()
    _notify(sandbox, user, "updated", _master_of(state, event))
    return json_response(_shown(request, event, _json(sandbox, user, event)))


def _original_of(event_id: str) -> datetime:
    found = _OCCURRENCE.match(event_id)
    assert found is not None
    return datetime.strptime(found.group("start"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _master_of(state: CalendarState, event: Event) -> Event:
    return state.events[event.series_master_id] if event.series_master_id else event


def _delete(
    sandbox: MicrosoftSandbox,
    request: Request,
    user: User,
    calendar: Calendar | None,
    event_id: str,
) -> Response:
    state = state_of(user)
    event, _ = _instance(sandbox, user, calendar, event_id)
    check_if_match(request, event.change_key)
    if event.id == event_id and event.series_master_id is None:
        event.deleted = True
        _touch(sandbox, event)
        _notify(sandbox, user, "deleted", event)
        return Response(status=204)
    master = _master_of(state, event)
    original = _original_of(event_id)
    master.exceptions.pop(original, None)
    master.cancelled.add(original)
    _touch(sandbox, master)
    _notify(sandbox, user, "updated", master)
    return Response(status=204)


def _set_reminder(sandbox: MicrosoftSandbox, user: User, event: Event, state: str) -> None:
    event.reminder = state
    _touch(sandbox, event)
    _notify(sandbox, user, "updated", event)


def _snoozed(sandbox: MicrosoftSandbox, user: User, event: Event, until: datetime) -> None:
    signal = until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _set_extended(event, {REMINDER: signal})
    _set_reminder(sandbox, user, event, f"snoozed {until.astimezone(UTC).isoformat()}")


def _dismissed(sandbox: MicrosoftSandbox, user: User, event: Event) -> None:
    if event.fields.get("recurrence"):
        _set_extended(event, {REMINDER: NO_MORE_REMINDERS})
    else:
        event.fields["isReminderOn"] = False
    _set_reminder(sandbox, user, event, "dismissed")


def add_calendar(sandbox: MicrosoftSandbox, email: str, name: str) -> str:
    """A calendar the user made in Outlook; returns its id."""
    with sandbox.lock:
        user = sandbox.add_user(email)
        calendar = Calendar(new_id(user), name, new_change_key())
        state_of(user).calendars[calendar.id] = calendar
        return calendar.id


def snooze(sandbox: MicrosoftSandbox, email: str, event_id: str, minutes: int = 5) -> None:
    """The user snoozes the event's reminder in Outlook: only the reminder state changes,
    yet the event gets a new changeKey and lastModifiedDateTime (SYN-10)."""
    with sandbox.lock:
        user = sandbox.add_user(email)
        event = _event(state_of(user), None, event_id)
        _snoozed(sandbox, user, event, sandbox.clock() + timedelta(minutes=minutes))


def dismiss(sandbox: MicrosoftSandbox, email: str, event_id: str) -> None:
    """The user dismisses the event's reminder in Outlook (SYN-10), as `snooze`."""
    with sandbox.lock:
        user = sandbox.add_user(email)
        _dismissed(sandbox, user, _event(state_of(user), None, event_id))


def reminder_state(sandbox: MicrosoftSandbox, email: str, event_id: str) -> str:
    with sandbox.lock:
        return _event(state_of(sandbox.add_user(email)), None, event_id).reminder


# -- rendering -----------------------------------------------------------------------------------
def _json(sandbox: MicrosoftSandbox, user: User, event: Event) -> dict[str, Any]:
    """The event as stored, times still as written (`_shown` converts them)."""
    fields = event.fields
    kind = "singleInstance"
    if event.series_master_id is not None:
        kind = "exception"
    elif fields.get("recurrence"):
        kind = "seriesMaster"
    shown: dict[str, Any] = {
        "@odata.etag": etag(event.change_key),
        "id": event.id,
        "createdDateTime": graph_time(event.created),
        "lastModifiedDateTime": graph_time(event.modified),
        "changeKey": event.change_key,
        "categories": [],
        "transactionId": event.transaction_id,
        "originalStartTimeZone": fields["start"].get("timeZone", "UTC"),
        "originalEndTimeZone": fields["end"].get("timeZone", "UTC"),
        "iCalUId": "040000008200E00074C5B7101A82E008" + event.id[-16:].encode().hex().upper(),
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": bool(event.attachments),
        "subject": "",
        "bodyPreview": "",
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": True,
        "seriesMasterId": event.series_master_id,
        "showAs": "busy",
        "type": kind,
        "webLink": f"https://outlook.office365.com/owa/?itemid={event.id}&exvsurl=1&path=/calendar/item",
        "onlineMeetingUrl": None,
        "isOnlineMeeting": False,
        "onlineMeetingProvider": "unknown",
        "allowNewTimeProposals": True,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": {"contentType": "html", "content": ""},
        "location": {
            "displayName": "",
            "locationType": "default",
            "uniqueIdType": "unknown",
            "address": {},
            "coordinates": {},
        },
        "locations": [],
        "recurrence": None,
        "attendees": [],
        "organizer": {"emailAddress": {"name": user.display_name, "address": user.email}},
    }
    if event.original_start is not None:
        shown["originalStart"] = event.original_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    shown.update(copy.deepcopy(fields))
    body = shown.get("body") or {}
    shown["bodyPreview"] = re.sub(r"<[^>]+>", "", str(body.get("content") or ""))[:255]
    return shown


def _shown(request: Request, event: Event, shown: dict[str, Any]) -> dict[str, Any]:
    """`shown` with times in the requested zone and `$select`/`$expand` applied."""
    shown = dict(shown)
    out, out_name = output_zone(request)
    for name in ("start", "end"):
        moment, _ = parse_local(shown[name])
        if shown.get("isAllDay"):
            shown[name] = {
                "dateTime": local_text(moment.replace(tzinfo=None)),
                "timeZone": out_name,
            }
        else:
            shown[name] = {"dateTime": local_text(moment.astimezone(out)), "timeZone": out_name}
    select = request.args.get("$select")
    if select:
        keep = {s.strip() for s in select.split(",")} | {"id", "@odata.etag"}
        shown = {k: v for k, v in shown.items() if k in keep}
    expand = request.args.get("$expand")
    if expand:
        keys = [xp_key(i) for i in expanded_ids(expand)]
        shown[XP] = [
            {"id": event.xp_ids[key], "value": event.extended[key]}
            for key in keys
            if key in event.extended
        ]
    return shown


def _expand(
    sandbox: MicrosoftSandbox, user: User, event: Event, low: datetime, high: datetime
) -> list[tuple[Event, dict[str, Any]]]:
    """What the calendar shows of `event` overlapping [low, high): a single event itself;
    a series' occurrences (with the master's fields), exceptions in their place, and
    nothing for cancelled occurrences."""
    base = _json(sandbox, user, event)
    start, start_zone = parse_local(event.fields["start"])
    end, _ = parse_local(event.fields["end"])
    recurrence = event.fields.get("recurrence")
    if not recurrence:
        return [(event, base)] if start < high and end > low else []
    found: list[tuple[Event, dict[str, Any]]] = []
    duration = end - start
    zone_name = recurrence["range"].get("recurrenceTimeZone") or start_zone
    series_zone = zone(zone_name)
    until = (high + timedelta(days=2)).date()
    local_start = start.astimezone(series_zone)
    for day in occurrence_dates(recurrence, until):
        begins = datetime.combine(day, local_start.time(), series_zone)
        original = begins.astimezone(UTC)
        if original in event.cancelled:
            continue
        exception = event.exceptions.get(original)
        if exception is not None:
            shown = _json(sandbox, user, exception)
            e_start, _ = parse_local(exception.fields["start"])
            e_end, _ = parse_local(exception.fields["end"])
            if e_start < high and e_end > low:
                found.append((exception, shown))
            continue
        if not (begins < high and begins + duration > low):
            continue
        shown = copy.deepcopy(base)
        shown.update(
            {
                "id": occurrence_id(event.id, original),
                "type": "occurrence",
                "seriesMasterId": event.id,
                "recurrence": None,
                "originalStart": original.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "start": {
                    "dateTime": local_text(begins.replace(tzinfo=None)),
                    "timeZone": zone_name,
                },
                "end": {
                    "dateTime": local_text(
                        (begins + duration).astimezone(series_zone).replace(tzinfo=None)
                    ),
                    "timeZone": zone_name,
                },
            }
        )
        found.append((event, shown))
    return found


# -- lists and views -----------------------------------------------------------------------------
def _matches(request: Request, event: Event) -> bool:
    wanted = request.args.get("$filter")
    if not wanted:
        return True
    found = XP_FILTER.match(wanted.strip())
    if found is None:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", f"Unsupported $filter: {wanted}")
    value = event.extended.get(xp_key(found.group(2)))
    return value is not None and value.lower() == found.group(3).lower()


def _paged(
    sandbox: MicrosoftSandbox, request: Request, context: str, items: list[dict[str, Any]]
) -> Response:
    size = page_size(request)
    try:
        skip = int(request.args.get("$skip", "0"))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $skip value.") from exc
    body: dict[str, Any] = {"@odata.context": context, "value": items[skip : skip + size]}
    if skip + size < len(items):
        params = {k: v for k, v in request.args.items() if k != "$skip"}
        path = request.path.strip("/").removeprefix("v1.0/")
        body["@odata.nextLink"] = link(sandbox, path, {**params, "$skip": str(skip + size)})
    return json_response(body, headers=applied_page_size(request))


def _list(sandbox: MicrosoftSandbox, request: Request, user: User, calendar: Calendar) -> Response:
    """Singles and series masters, as Graph lists events."""
    state = state_of(user)
    live = [
        e
        for e in state.events.values()
        if e.calendar_id == calendar.id and not e.deleted and _matches(request, e)
    ]
    live.sort(key=lambda e: e.created)
    items = [_shown(request, e, _json(sandbox, user, e)) for e in live]
    return _paged(sandbox, request, _context(sandbox, user, "events"), items)


def _window(request: Request) -> tuple[datetime, datetime]:
    missing = [p for p in ("startDateTime", "endDateTime") if not request.args.get(p)]
    if missing:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            f"This request requires a time window specified by the query string parameters "
            f"StartDateTime and EndDateTime. Missing: {', '.join(missing)}.",
        )
    low = parse_instant(request.args["startDateTime"], "startDateTime")
    high = parse_instant(request.args["endDateTime"], "endDateTime")
    return low, high


def _instances(
    sandbox: MicrosoftSandbox, user: User, calendar: Calendar, low: datetime, high: datetime
) -> list[tuple[Event, dict[str, Any]]]:
    state = state_of(user)
    found: list[tuple[Event, dict[str, Any]]] = []
    for event in state.events.values():
        if event.calendar_id == calendar.id and not event.deleted:
            found += _expand(sandbox, user, event, low, high)
    found.sort(key=lambda pair: parse_local(pair[1]["start"])[0])
    return found


def _view(sandbox: MicrosoftSandbox, request: Request, user: User, calendar: Calendar) -> Response:
    low, high = _window(request)
    items = [_shown(request, e, j) for e, j in _instances(sandbox, user, calendar, low, high)]
    return _paged(sandbox, request, _context(sandbox, user, "calendarView"), items)


def _version(event: Event, shown: dict[str, Any]) -> str:
    return f"{event.change_key}|{shown['start']['dateTime']}|{shown['end']['dateTime']}"


def _view_delta(
    sandbox: MicrosoftSandbox, request: Request, user: User, calendar: Calendar, path: str
) -> Response:
    """calendarView delta: a first round reports every instance in the window (its
    startDateTime and endDateTime are fixed for the round and the links that follow it);
    a later one those new or changed since, and those gone as `@removed`."""
    tokens = tokens_of(user)
    fresh = {k: v for k, v in request.args.items() if k not in ("$skiptoken", "$deltatoken")}
    scope = f"calendarView:{calendar.id}"
    skip, delta = request.args.get("$skiptoken"), request.args.get("$deltatoken")
    try:
        if skip is not None:
            current = tokens.take(skip, scope)
        else:
            previous = tokens.take(delta, scope) if delta is not None else None
            params = previous.params if previous is not None else fresh
            seen = previous.seen if isinstance(previous, ViewRound) else {}
            if previous is None:
                _window(request)
            low = parse_instant(params["startDateTime"], "startDateTime")
            high = parse_instant(params["endDateTime"], "endDateTime")
            now_seen: dict[str, str] = {}
            items: list[dict[str, Any]] = []
            for event, shown in _instances(sandbox, user, calendar, low, high):
                version = _version(event, shown)
                now_seen[shown["id"]] = version
                if seen.get(shown["id"]) != version:
                    rendered = {
                        "@odata.type": "#microsoft.graph.event",
                        **_shown(request, event, shown),
                    }
                    items.append(rendered)
            items += [
                {"id": i, "@removed": {"reason": "deleted"}} for i in seen if i not in now_seen
            ]
            current = ViewRound(scope, 0, params, seen=now_seen, items=items)
    except GraphError as exc:
        if exc.status == 410:
            exc.headers["Location"] = link(sandbox, path, fresh)
        raise
    assert isinstance(current, ViewRound)
    size = page_size(request)
    body: dict[str, Any] = {
        "@odata.context": f"{sandbox.base_url}/v1.0/$metadata#Collection(event)"
    }
    following = ViewRound(scope, 0, current.params, seen=current.seen, items=current.items)
    if current.offset + size < len(current.items):
        following.offset = current.offset + size
        body["@odata.nextLink"] = link(
            sandbox, path, {**current.params, "$skiptoken": tokens.mint(following)}
        )
    else:
        following.items = []
        body["@odata.deltaLink"] = link(
            sandbox, path, {**current.params, "$deltatoken": tokens.mint(following)}
        )
    body["value"] = current.items[current.offset : current.offset + size]
    return json_response(body, headers=applied_page_size(request))
