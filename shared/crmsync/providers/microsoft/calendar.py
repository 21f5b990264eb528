"""CRM activities as Outlook events through Graph: the only place Graph's event field
names appear.

Mapping (canonical ← → event):
    subject ↔ subject              notes ↔ body (plain text)      location ↔ location.displayName
    start/end/timezone ↔ start/end {dateTime, timeZone}; the zone read back is
            originalStartTimeZone (Graph answers times in UTC); Windows zone names read
            as their IANA zone
    all_day ↔ isAllDay, start and end at midnight of their dates in the event's zone (CAL-11)
    private ↔ sensitivity "private" (read: private or confidential, CAL-10)
    recurrence ↔ recurrence (patternedRecurrence) as an RRULE; occurrences cancelled in
            Outlook as EXDATE, moved ones as EXDATE of the original start and RDATE of
            the new one (CAL-9); written back the same way
    status: "declined" when the user's response declined, or crmsync wrote it declined
            (shown as free time); "unconfirmed" ↔ showAs "tentative"; a completed
            activity's marker is the subject's (the lens adds and strips it)
    members ↔ the extended property `crmsyncMembers`, and attendees through the
            directory only when the write asks for invitations (SYN-8: Graph invites
            whenever an organiser's event gains attendees)
    mapped custom fields (SYN-1) ↔ String extended properties named after their provider
            keys, as contacts hold them (a cleared value written empty)
    the link key ↔ the extended property `crmsyncLink` (SYN-9), as contacts
    attachments are the user's: crmsync neither reads nor writes them (CAL-11)
    the create's idempotency key ↔ transactionId and the extended property `crmsyncKey`
    reminder (SYN-10) ↔ isReminderOn, reminderMinutesBeforeStart and Outlook's snooze
            time, the MAPI property PidLidReminderSignalTime

The calendarView delta over the sync window lists occurrences, not series: a changed
occurrence is read as a change of its series, whose master is read whole.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import Conflict, NotFound, PermanentError, TransientError
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.microsoft import echoes
from crmsync.providers.microsoft.client import IMMUTABLE_IDS, GraphClient
from crmsync.providers.microsoft.contacts import (
    KEY,
    LINK,
    XP,
    custom_property,
    custom_values,
    expand_ids,
    with_custom,
)
from crmsync.providers.microsoft.echoes import RemembersWhatItMade
from crmsync.transforms import CustomMap

_GUID = "{0f6c2b1e-5a3d-4c8e-9b7a-2d4e6f8a1c35}"
MEMBERS = f"String {_GUID} Name crmsyncMembers"
STATUS = f"String {_GUID} Name crmsyncStatus"
# PidLidReminderSignalTime (PSETID_Common 0x8560): where Outlook keeps a snooze.
REMINDER = "SystemTime {00062008-0000-0000-C000-000000000046} Id 0x8560"
READ = (LINK, STATUS, MEMBERS, REMINDER)
PLAIN_BODY = 'outlook.body-content-type="text"'
TEXT_BODY = f"{IMMUTABLE_IDS}, {PLAIN_BODY}"
EXCEPTIONS = "~"  # joins a series' etag and a digest of its exceptions into its version
HELD = (
    "subject",
    "start",
    "end",
    "all_day",
    "timezone",
    "location",
    "notes",
    "private",
    "status",
    "recurrence",
    "members",
)
TIMES = frozenset({"start", "end", "all_day", "timezone"})
# Windows zone names Outlook writes into originalStartTimeZone, as IANA zones.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Central Standard Time (Mexico)": "America/Mexico_City",
}
DAYS = {
    "MO": "monday",
    "TU": "tuesday",
    "WE": "wednesday",
    "TH": "thursday",
    "FR": "friday",
    "SA": "saturday",
    "SU": "sunday",
}
WEEKDAYS = {name: code for code, name in DAYS.items()}
INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
ORDINAL = {name: n for n, name in INDEX.items()}
_BYDAY = re.compile(r"^([+-]?\d)?(MO|TU|WE|TH|FR|SA|SU)$")


def calendars(client: GraphClient) -> list[dict[str, str]]:
    """The mailbox's calendars crmsync may write to, for the `calendar` setting (SET-1):
    each {id: the setting's value ("primary" for the default calendar), label}."""
    params = {"$select": "id,name,isDefaultCalendar,canEdit"}
    return [
        {
            "id": "primary" if found.get("isDefaultCalendar") else str(found["id"]),
            "label": str(found.get("name") or found["id"]),
        }
        for found in client.values("me/calendars", "graph calendars.list", params)
        if found.get("canEdit") is not False
    ]


def transaction_id(key: str) -> str:
    """Graph's transactionId for a create's idempotency key (SYN-4)."""
    return "crmsync-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def iana(name: str) -> str:
    return WINDOWS_ZONES.get(name, name)


def reminder_of(event: Mapping[str, Any]) -> str:
    """The event's reminder as one token (SYN-10): a snooze or a dismiss moves the
    changeKey, yet edits nothing crmsync syncs."""
    return json.dumps(
        {
            "on": event.get("isReminderOn"),
            "minutes": event.get("reminderMinutesBeforeStart"),
            "signal": _extended(event, REMINDER),
        },
        sort_keys=True,
    )


# -- reading -----------------------------------------------------------------------------------
def from_event(event: Mapping[str, Any], users: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Canonical fields of an event, as Graph holds them (raw: to be normalised, so bad
    data surfaces as an invalid record). `users` (e-mail → CRM user id) reads the
    members of an event crmsync did not write from its attendees."""
    start, end = event.get("start") or {}, event.get("end") or {}
    zone_name = iana(str(event.get("originalStartTimeZone") or start.get("timeZone") or "UTC"))
    all_day = bool(event.get("isAllDay"))
    members = _extended(event, MEMBERS)
    if members is None:
        members = ",".join(_attending_users(event, users or {}))
    recurrence = event.get("recurrence")
    return {
        "subject": event.get("subject") or "",
        "notes": _text(event.get("body") or {}),
        "location": (event.get("location") or {}).get("displayName") or "",
        "all_day": all_day,
        "start": _read_time(start, all_day),
        "end": _read_time(end, all_day),
        "timezone": zone_name,
        "private": event.get("sensitivity") in ("private", "confidential"),
        "recurrence": rrule_of(recurrence, zone_name, all_day) if recurrence else None,
        "status": _status(event),
        "members": [m for m in members.split(",") if m],
    }


def _read_time(value: Mapping[str, Any], all_day: bool) -> date | datetime | None:
    text = value.get("dateTime")
    if not text:
        return None
    if all_day:  # midnight of a date whatever the zone: the date is what counts
        return date.fromisoformat(str(text)[:10])
    naive = datetime.fromisoformat(str(text)[:26])
    return naive.replace(tzinfo=model.zone(iana(str(value.get("timeZone") or "UTC"))))


def _text(body: Mapping[str, Any]) -> str:
    content = str(body.get("content") or "")
    if body.get("contentType") == "html":
        content = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", content)))
    return content.strip()


def _status(event: Mapping[str, Any]) -> str:
    response = (event.get("responseStatus") or {}).get("response")
    if response == "declined" or _extended(event, STATUS) == "declined":
        return "declined"
    return "unconfirmed" if event.get("showAs") == "tentative" else "confirmed"


def _attending_users(event: Mapping[str, Any], users: Mapping[str, str]) -> list[str]:
    found = (
        users.get(str((a.get("emailAddress") or {}).get("address", "")).lower())
        for a in event.get("attendees") or ()
    )
    return [user for user in found if user]


def _extended(event: Mapping[str, Any], property_id: str) -> str | None:
    wanted = property_id.casefold()
    for item in event.get(XP) or ():
        if str(item.get("id", "")).casefold() == wanted:
            return str(item.get("value", ""))
    return None


def rrule_of(recurrence: Mapping[str, Any], zone_name: str, all_day: bool) -> str:
    """A patternedRecurrence as an RRULE line."""
    pattern, span = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = str(pattern.get("type"))
    freq = {"daily": "DAILY", "weekly": "WEEKLY"}.get(kind) or (
        "MONTHLY" if kind.endswith("Monthly") else "YEARLY"
    )
    parts = [f"FREQ={freq}"]
    interval = int(pattern.get("interval") or 1)
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    days = [WEEKDAYS[str(d).lower()] for d in pattern.get("daysOfWeek") or ()]
    if kind == "weekly":
        parts.append("BYDAY=" + ",".join(days))
    elif kind.startswith("relative"):
        ordinal = ORDINAL[str(pattern.get("index") or "first")]
        parts.append("BYDAY=" + ",".join(f"{ordinal}{d}" for d in days))
    else:
        if kind.endswith("Monthly") or kind.endswith("Yearly"):
            parts.append(f"BYMONTHDAY={int(pattern['dayOfMonth'])}")
    if kind.endswith("Yearly"):
        parts.append(f"BYMONTH={int(pattern['month'])}")
    if span.get("type") == "numbered":
        parts.append(f"COUNT={int(span['numberOfOccurrences'])}")
    elif span.get("type") == "endDate":
        parts.append(
            "UNTIL=" + _until(date.fromisoformat(str(span["endDate"])), zone_name, all_day)
        )
    first = str(pattern.get("firstDayOfWeek") or "sunday").lower()
    if kind == "weekly" and interval > 1 and first != "monday":
        parts.append(f"WKST={WEEKDAYS[first]}")
    return "RRULE:" + ";".join(parts)


def _until(last: date, zone_name: str, all_day: bool) -> str:
    if all_day:
        return last.strftime("%Y%m%d")
    end_of_day = datetime.combine(last, time(23, 59, 59), model.zone(zone_name))
    return end_of_day.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


# -- writing -----------------------------------------------------------------------------------
def to_event(
    fields: Mapping[str, Any], directory: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Event properties for the canonical fields given (all of them, or a patch with its
    time fields whole). `directory` (CRM user id → address), given only when the write
    may invite, turns members into attendees (CAL-6, SYN-8)."""
    event: dict[str, Any] = {}
    properties: list[dict[str, str]] = []
    if "subject" in fields:
        event["subject"] = fields["subject"]
    if "notes" in fields:
        event["body"] = {"contentType": "text", "content": fields["notes"] or ""}
    if "location" in fields:
        event["location"] = {"displayName": fields["location"] or ""}
    if TIMES & set(fields):
        event.update(_times(fields))
    if "private" in fields:
        event["sensitivity"] = "private" if fields["private"] else "normal"
    if "recurrence" in fields:
        event["recurrence"] = pattern_of(fields) if fields["recurrence"] else None
    if "status" in fields:
        status = fields["status"]
        event["showAs"] = {"unconfirmed": "tentative", "declined": "free"}.get(status, "busy")
        properties.append({"id": STATUS, "value": str(status)})
    if "members" in fields:
        properties.append({"id": MEMBERS, "value": ",".join(fields["members"])})
        if directory is not None:
            event["attendees"] = [
                _attendee(directory[m]) for m in fields["members"] if m in directory
            ]
    if properties:
        event[XP] = properties
    return event


def _attendee(address: str) -> dict[str, Any]:
    return {"emailAddress": {"address": address}, "type": "required"}


def _times(fields: Mapping[str, Any]) -> dict[str, Any]:
    start, end = fields["start"], fields["end"]
    tz = fields.get("timezone") or "UTC"
    if fields.get("all_day") or not isinstance(start, datetime):
        return {
            "isAllDay": True,
            "start": {"dateTime": f"{_day(start).isoformat()}T00:00:00", "timeZone": tz},
            "end": {"dateTime": f"{_day(end).isoformat()}T00:00:00", "timeZone": tz},
        }
    zone = model.zone(tz)
    return {
        "isAllDay": False,
        "start": {"dateTime": _local(start, zone), "timeZone": tz},
        "end": {"dateTime": _local(end, zone), "timeZone": tz},
    }


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).replace(tzinfo=None).isoformat()


def _rule(recurrence: str) -> dict[str, str]:
    for line in recurrence.splitlines():
        if line.strip().upper().startswith("RRULE:"):
            pairs = (part.split("=", 1) for part in line.strip()[6:].split(";") if "=" in part)
            return {k.upper(): v for k, v in pairs}
    raise PermanentError("a recurrence without an RRULE cannot be a Graph series")


def pattern_of(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The RRULE of the fields' recurrence as a patternedRecurrence (CAL-9)."""
    rule = _rule(str(fields["recurrence"]))
    tz = str(fields.get("timezone") or "UTC")
    start = fields["start"]
    local = start.astimezone(model.zone(tz)).date() if isinstance(start, datetime) else start
    freq, interval = rule.get("FREQ", ""), int(rule.get("INTERVAL", "1"))
    byday = [_BYDAY.match(d.strip()) for d in rule.get("BYDAY", "").split(",") if d.strip()]
    if any(d is None for d in byday):
        raise PermanentError(f"BYDAY {rule['BYDAY']!r} has no Graph pattern")
    days = [DAYS[d.group(2)] for d in byday if d]
    ordinal = next((int(d.group(1)) for d in byday if d and d.group(1)), None)
    if ordinal is None and "BYSETPOS" in rule:
        ordinal = int(rule["BYSETPOS"])
    pattern: dict[str, Any] = {"interval": interval}
    if freq == "DAILY":
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        wkst = DAYS.get(rule.get("WKST", "MO"), "monday")
        pattern.update(
            type="weekly",
            daysOfWeek=days or [WEEKDAYS_OF[local.weekday()]],
            firstDayOfWeek=wkst,
        )
    elif freq in ("MONTHLY", "YEARLY"):
        prefix = "relative" if days else "absolute"
        pattern["type"] = prefix + ("Monthly" if freq == "MONTHLY" else "Yearly")
        if days:
            if ordinal not in INDEX:
                raise PermanentError(f"a {freq} rule's ordinal {ordinal} has no Graph index")
            pattern.update(daysOfWeek=days, index=INDEX[ordinal])
        else:
            pattern["dayOfMonth"] = int(rule.get("BYMONTHDAY", str(local.day)))
        if freq == "YEARLY":
            pattern["month"] = int(rule.get("BYMONTH", str(local.month)))
    else:
        raise PermanentError(f"FREQ={freq} has no Graph pattern")
    return {"pattern": pattern, "range": _range(rule, local, tz)}


WEEKDAYS_OF = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _range(rule: Mapping[str, str], first: date, tz: str) -> dict[str, Any]:
    span: dict[str, Any] = {"startDate": first.isoformat(), "recurrenceTimeZone": tz}
    if "COUNT" in rule:
        return {**span, "type": "numbered", "numberOfOccurrences": int(rule["COUNT"])}
    if "UNTIL" in rule:
        until = rule["UNTIL"]
        if "T" in until:
            moment = datetime.strptime(until.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
            last = moment.astimezone(model.zone(tz)).date()
        else:
            last = datetime.strptime(until, "%Y%m%d").date()
        return {**span, "type": "endDate", "endDate": last.isoformat()}
    return {**span, "type": "noEnd"}


# -- exceptions of a series (CAL-9) ------------------------------------------------------------
def _line_moments(recurrence: str, name: str) -> list[date | datetime]:
    """The values of the recurrence's EXDATE or RDATE lines: dates, or UTC instants."""
    found: list[date | datetime] = []
    for line in recurrence.splitlines():
        head, _, values = line.strip().partition(":")
        params = head.split(";")
        if params[0].upper() != name:
            continue
        zone_name = next((p[5:] for p in params[1:] if p.upper().startswith("TZID=")), "UTC")
        for value in values.split(","):
            value = value.strip()
            if "T" not in value:
                found.append(datetime.strptime(value, "%Y%m%d").date())
                continue
            naive = datetime.strptime(value.rstrip("Z"), "%Y%m%dT%H%M%S")
            zone = UTC if value.endswith("Z") else model.zone(zone_name)
            found.append(naive.replace(tzinfo=zone).astimezone(UTC))
    return found


def _line(name: str, moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        return f"{name}:{moment.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    return f"{name};VALUE=DATE:{moment.strftime('%Y%m%d')}"


def _pairs(
    exdates: Sequence[date | datetime], rdates: Sequence[date | datetime]
) -> tuple[list[date | datetime], list[tuple[date | datetime, date | datetime]]]:
    """The cancelled occurrences, and the moved ones as (original, new start): each RDATE
    takes the nearest EXDATE left (Graph can move an occurrence, not add one)."""
    left = list(exdates)
    moved = []
    for new in rdates:
        if not left:
            raise PermanentError("an RDATE without an EXDATE: Graph cannot add an occurrence")
        nearest = min(left, key=lambda old: abs(_seconds(old) - _seconds(new)))
        left.remove(nearest)
        moved.append((nearest, new))
    return left, moved


def _seconds(moment: date | datetime) -> float:
    if isinstance(moment, datetime):
        return moment.timestamp()
    return datetime.combine(moment, time(), UTC).timestamp()


# -- the resource ------------------------------------------------------------------------------
# Graph v1.0 reads a calendar's changes only over a fixed window (calendarView delta).
# It reaches back at least this far, so that an event edited in Outlook weeks after it
# took place still reaches the CRM (CAL-3), and ahead a year; a round's window is kept
# in the cursor and begun again (a fresh listing, re-matched by the links) once it has
# rolled by ROLL, so the window follows the calendar. An event that leaves the window
# is not removed: Graph simply stops reporting it.
REACH_BACK = timedelta(days=90)
REACH_AHEAD = timedelta(days=365)
ROLL = timedelta(days=14)
FARTHEST_BACK = timedelta(days=5 * 366)  # a do-not-sync-before date further back


def sync_window(
    now: datetime, window_days: int, not_before: date | None, zone: str
) -> tuple[datetime, datetime]:
    """The calendarView window of a cycle at `now`: back the sync window or REACH_BACK,
    whichever is longer, and to the user's do-not-sync-before date when that is earlier
    (its edits after the date sync, SET-1); ahead REACH_AHEAD."""
    low = now - max(timedelta(days=window_days), REACH_BACK)
    if not_before is not None:
        edge = datetime.combine(not_before, time(), model.zone(zone)).astimezone(UTC)
        low = min(low, max(edge - timedelta(days=1), now - FARTHEST_BACK))
    return low, now + REACH_AHEAD


def _echo(item: Mapping[str, Any], wrote: Mapping[str, str]) -> bool:
    """A single event a round reports at the version crmsync's own write left: its echo,
    which needs no read (a series' version also depends on its occurrences)."""
    if item.get("seriesMasterId") or item.get("type") not in (None, "singleInstance"):
        return False
    version = item.get("@odata.etag")
    return version is not None and wrote.get(str(item["id"])) == str(version)


def _window_cursor(cursor: str | None) -> tuple[tuple[datetime, datetime] | None, str | None]:
    """The window and delta link a calendar cursor holds (`<low> <high> <link>`)."""
    if not cursor:
        return None, None
    low, high, link = cursor.split(" ", 2)
    return (model.parse_instant(low), model.parse_instant(high)), link  # type: ignore[return-value]


class GraphCalendar(RemembersWhatItMade):
    """The activity side of one Microsoft 365 mailbox: one calendar (SET-1, default the
    user's default calendar), its changes read over a fixed window."""

    def __init__(
        self,
        client: GraphClient,
        calendar: str = "primary",
        directory: Mapping[str, str] | None = None,
        window: tuple[datetime, datetime] | None = None,
        custom: CustomMap | None = None,
    ) -> None:
        """`directory` maps CRM user ids to addresses: members become attendees of a
        write that may invite (CAL-6, SYN-8). `window` bounds the calendarView the delta
        reads (Graph requires one; default 30 days back to a year ahead). `custom` is
        the tenant's mapping of activity custom fields (SYN-1)."""
        self.client = client
        self.custom = custom or CustomMap()
        self._expand = expand_ids(*READ, *(custom_property(k) for k in self.custom.keys))
        self.calendar = calendar
        self.directory = dict(directory or {})
        self.users = {e.lower(): u for u, e in self.directory.items()}
        now = datetime.now(UTC)
        self.window = window or (now - timedelta(days=30), now + timedelta(days=365))
        self.held = HELD

    @property
    def base(self) -> str:
        return "me/calendar" if self.calendar == "primary" else f"me/calendars/{self.calendar}"

    def subscription_resource(self) -> str:
        """What a change subscription on the calendar names: Graph subscribes to a
        calendar by its id, so the default calendar's is looked up."""
        calendar = self.calendar
        if calendar == "primary":
            calendar = str(self.client.request("GET", "me/calendar", "graph calendars.get")["id"])
        return f"me/calendars/{calendar}/events"

    # -- reading -----------------------------------------------------------------------------
    def _read(self, event_id: str) -> dict[str, Any]:
        return self.client.request(
            "GET",
            f"me/events/{event_id}",
            "graph events.get",
            params={"$expand": self._expand},
            headers={"Prefer": TEXT_BODY},
        )

    def record(self, event: Mapping[str, Any]) -> SideRecord:
        event_id = str(event["id"])
        version = str(event.get("@odata.etag") or event.get("changeKey") or "")
        modified = model.parse_instant(event.get("lastModifiedDateTime"))
        ref = _extended(event, LINK)
        try:
            raw = from_event(event, self.users)
            if raw["recurrence"]:
                lines = self._exception_lines(event, raw)
                if lines:  # changing an occurrence leaves the series' etag as it was
                    raw["recurrence"] = "\n".join([raw["recurrence"], *lines])
                    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]
                    version += EXCEPTIONS + digest
            canonical = model.normalize("activity", raw)
            fields = {name: canonical[name] for name in self.held}
            fields.update(self.custom.read(custom_values(event, self.custom)))
        except (model.InvalidRecord, TypeError, AttributeError, ValueError, KeyError) as exc:
            return SideRecord(event_id, version, {}, modified=modified, ref=ref, error=str(exc))
        return SideRecord(
            event_id, version, fields, modified=modified, ref=ref, reminder=reminder_of(event)
        )

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._read(record_id))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def changes(self, cursor: str | None) -> ChangePage:
        """Every event of the window changed since the delta link (all of them without
        one), all pages. A changed occurrence or exception is read as a change of its
        series (CAL-9). The delta leaves out the extended properties crmsync keeps, so
        the changed events are read again, twenty to a batch. An `@removed` entry is
        read too: an event deleted is gone, one moved out of the window or the calendar
        is a change, never a delete."""
        kept, made = echoes.split(cursor)
        wrote = echoes.written(cursor)
        window, link = _window_cursor(kept)
        if window is not None and self._rolled(window):
            window, link = None, None  # a fresh round over today's window
        low, high = window or self.window
        start = link or f"{self.base}/calendarView/delta"
        params = None if link else {"startDateTime": _iso(low), "endDateTime": _iso(high)}
        changed: dict[str, None] = {}
        removed: dict[str, None] = {}
        echoed: set[str] = set()
        for page in self.client.pages(start, "graph events.delta", params):
            for item in page.get("value") or ():
                if "@removed" in item:
                    removed[str(item["id"])] = None
                elif _echo(item, wrote):
                    echoed.add(str(item["id"]))  # as crmsync's own write left it
                else:
                    changed[str(item.get("seriesMasterId") or item["id"])] = None
            if page.get("@odata.deltaLink"):
                echoed -= changed.keys()  # changed after all (another instance of it)
                reported = [*changed, *(i for i in removed if i not in changed)]
                records = self._read_many(reported)
                records += echoes.unreported(made, records, self.get, echoed)
                cursor = f"{_iso(low)} {_iso(high)} {page['@odata.deltaLink']}"
                return ChangePage(records, cursor)
        raise PermanentError("an event delta round ended without a delta link")

    def _read_many(self, event_ids: Sequence[str]) -> list[SideRecord]:
        """The events, read in batches; one Graph no longer has reads as gone."""
        query = urlencode({"$expand": self._expand})
        calls = [("GET", f"me/events/{i}?{query}", None) for i in event_ids]
        read = self.client.batch(calls, "graph events.get", prefer=PLAIN_BODY)
        records: list[SideRecord] = []
        for event_id, event in zip(event_ids, read, strict=True):
            if isinstance(event, NotFound):
                records.append(SideRecord(event_id, "0", None))
            elif isinstance(event, Exception):
                raise event
            else:
                records.append(self.record(event))
        return records

    def _rolled(self, window: tuple[datetime, datetime]) -> bool:
        """Whether a round's window lags today's by ROLL or more, at either end."""
        low, high = self.window
        return low - window[0] >= ROLL or high - window[1] >= ROLL or window[0] > low

    def _instances(self, series: str) -> list[dict[str, Any]]:
        low, high = self.window
        params = {"startDateTime": _iso(low), "endDateTime": _iso(high)}
        return list(self.client.values(f"me/events/{series}/instances", "graph instances", params))

    def _exception_lines(self, master: Mapping[str, Any], raw: Mapping[str, Any]) -> list[str]:
        """The series' occurrences changed in Outlook within the window, as recurrence
        lines: an EXDATE for a cancelled one (expected by the rule, not listed), an
        EXDATE of its original start and an RDATE of its new one for a moved one."""
        all_day, zone = bool(raw["all_day"]), model.zone(str(raw["timezone"]))
        changes: list[tuple[float, list[str]]] = []
        listed: set[date | datetime] = set()
        for occurrence in self._instances(str(master["id"])):
            original = _original(occurrence, zone, all_day)
            if original is None:
                continue
            listed.add(original)
            moved_to = _read_time(occurrence.get("start") or {}, all_day)
            if isinstance(moved_to, datetime):
                moved_to = moved_to.astimezone(UTC)
            moved = occurrence.get("type") == "exception" and moved_to not in (None, original)
            if moved and moved_to is not None:
                lines = [_line("EXDATE", original), _line("RDATE", moved_to)]
                changes.append((_seconds(original), lines))
        for expected in self._expected(raw):
            if expected not in listed:
                changes.append((_seconds(expected), [_line("EXDATE", expected)]))
        return [line for _, lines in sorted(changes) for line in lines]

    def _expected(self, raw: Mapping[str, Any]) -> Iterable[date | datetime]:
        """The original starts the series' rule gives within the window."""
        low, high = self.window
        start = raw["start"]
        if raw["all_day"]:
            first = datetime.combine(start, time())
            rule = rrulestr(str(raw["recurrence"]).splitlines()[0], dtstart=first)
            naive_low, naive_high = low.replace(tzinfo=None), high.replace(tzinfo=None)
            return [d.date() for d in rule.between(naive_low, naive_high, inc=True)]
        zone = model.zone(str(raw["timezone"]))
        first = start.astimezone(zone)
        rule = rrulestr(str(raw["recurrence"]).splitlines()[0], dtstart=first)
        return [d.astimezone(UTC) for d in rule.between(low, high, inc=True)]

    # -- writing -----------------------------------------------------------------------------
    def create(self, write: Write) -> WriteResult:
        """Create once per key: Graph answers a repeated transactionId with the event
        the first attempt made (SYN-4)."""
        assert write.fields is not None and write.key is not None
        made = self.client.request(
            "POST", f"{self.base}/events", "graph events.create", body=self._new(write)
        )
        self._made_now(str(made["id"]))
        if not write.fields.get("recurrence"):
            self._wrote_now(str(made["id"]), str(made["@odata.etag"]))
            return WriteResult(str(made["id"]), str(made["@odata.etag"]), reminder_of(made))
        self._apply_exceptions(str(made["id"]), write.fields)
        return self._result(str(made["id"]))

    def create_many(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """Creates in Graph's batches of twenty, each failing alone (a repeated
        `transactionId` makes a retry harmless); a series goes on its own, as its
        cancelled and moved occurrences follow its create."""
        results: dict[int, WriteResult | Exception] = {}
        single = [n for n, w in enumerate(writes) if not (w.fields or {}).get("recurrence")]
        calls = [("POST", f"{self.base}/events", self._new(writes[n])) for n in single]
        for n, made in zip(single, self.client.batch(calls, "graph events.create"), strict=True):
            if isinstance(made, Exception):
                results[n] = made
                continue
            self._made_now(str(made["id"]))
            self._wrote_now(str(made["id"]), str(made["@odata.etag"]))
            results[n] = WriteResult(str(made["id"]), str(made["@odata.etag"]), reminder_of(made))
        for n, write in enumerate(writes):
            if n not in results:
                try:
                    results[n] = self.create(write)
                except (TransientError, PermanentError) as exc:
                    results[n] = exc
        return [results[n] for n in range(len(writes))]

    def _new(self, write: Write) -> dict[str, Any]:
        """A new event's properties: its fields, once-only transaction id, keys and
        custom values."""
        assert write.fields is not None and write.key is not None
        body = to_event(write.fields, self.directory if write.notify else None)
        body["transactionId"] = transaction_id(write.key)
        body.setdefault(XP, []).append({"id": KEY, "value": write.key})
        if write.ref:
            body[XP].append({"id": LINK, "value": write.ref})
        body[XP] = with_custom(body[XP], self.custom, write.fields, new=True)
        return body

    def update(self, write: Write) -> WriteResult:
        """Patch the properties the changed fields live in, only if the event is still at
        `write.version` (412 → Conflict)."""
        assert write.fields is not None and write.target is not None
        fields = self._whole_times(write)
        body = to_event(fields, self.directory if write.notify else None)
        if "attendees" in body:
            body["attendees"] = self._guests_kept(write.target) + body["attendees"]
        properties = with_custom(body.get(XP) or [], self.custom, fields, new=False)
        if properties:
            body[XP] = properties
        answer = self.client.request(
            "PATCH",
            f"me/events/{write.target}",
            "graph events.update",
            body=body,
            headers=_if_match(write),
        )
        if fields.get("recurrence"):
            self._apply_exceptions(write.target, fields)
        if answer.get("recurrence"):
            return self._result(write.target)
        self._wrote_now(str(answer["id"]), str(answer["@odata.etag"]))
        return WriteResult(str(answer["id"]), str(answer["@odata.etag"]), reminder_of(answer))

    def delete(self, write: Write) -> None:
        """Delete the event; NotFound (from Graph's 404) when it is already gone."""
        assert write.target is not None
        self.client.request(
            "DELETE", f"me/events/{write.target}", "graph events.delete", headers=_if_match(write)
        )

    def _result(self, event_id: str) -> WriteResult:
        """The series' version as `changes` reports it (its exceptions included)."""
        record = self.get(event_id)
        return WriteResult(record.id, record.version, record.reminder)

    def _whole_times(self, write: Write) -> dict[str, Any]:
        """A patch touching a time field or the recurrence carries all time fields:
        Graph's start and end hold their zone, and a series starts on its start's date."""
        fields = dict(write.fields or {})
        if (TIMES & set(fields) or "recurrence" in fields) and not set(fields) >= TIMES:
            assert write.target is not None
            current = self.get(write.target)
            if current.fields is None:
                raise Conflict("the event is gone")
            for name in TIMES - set(fields):
                fields[name] = current.fields[name]
        return fields

    def _guests_kept(self, event_id: str) -> list[dict[str, Any]]:
        """Attendees who are no CRM users: a change of members must not drop them, and
        Graph replaces the attendee list whole."""
        current = self.client.request("GET", f"me/events/{event_id}", "graph events.get")
        return [
            a
            for a in current.get("attendees") or ()
            if str((a.get("emailAddress") or {}).get("address", "")).lower() not in self.users
        ]

    def _apply_exceptions(self, series: str, fields: Mapping[str, Any]) -> None:
        """Cancel the occurrences the recurrence's EXDATEs name and move those an RDATE
        pairs with (CAL-9); an occurrence already cancelled or moved is left as it is."""
        recurrence = str(fields["recurrence"])
        cancelled, moved = _pairs(
            _line_moments(recurrence, "EXDATE"), _line_moments(recurrence, "RDATE")
        )
        if not cancelled and not moved:
            return
        all_day = bool(fields.get("all_day"))
        zone = model.zone(str(fields.get("timezone") or "UTC"))
        by_original = {
            _original(o, zone, all_day): o
            for o in self._instances(series)
            if o.get("type") != "exception"
        }
        for original in cancelled:
            occurrence = by_original.get(original)
            if occurrence is not None:
                self.client.request(
                    "DELETE", f"me/events/{occurrence['id']}", "graph events.cancel"
                )
        length = fields["end"] - fields["start"]
        for original, new in moved:
            occurrence = by_original.get(original)
            if occurrence is not None:
                times = {**fields, "start": new, "end": new + length}
                self.client.request(
                    "PATCH",
                    f"me/events/{occurrence['id']}",
                    "graph events.move",
                    body=_times(times),
                )


def _original(
    occurrence: Mapping[str, Any], zone: ZoneInfo, all_day: bool
) -> date | datetime | None:
    """An occurrence's original start: its UTC instant, or for an all-day series the
    date it fell on in the series' zone."""
    moment = model.parse_instant(occurrence.get("originalStart"))
    if moment is None:
        return None
    return moment.astimezone(zone).date() if all_day else moment.astimezone(UTC)


def _if_match(write: Write) -> dict[str, str]:
    return {"If-Match": write.version.partition(EXCEPTIONS)[0]} if write.version else {}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
