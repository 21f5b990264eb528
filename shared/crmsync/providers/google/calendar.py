"""CRM activities as Google Calendar events: the only place Calendar field names appear.

Mapping (canonical ← → event):
    subject ↔ summary            notes ↔ description        location ↔ location
    start/end/all_day/timezone ↔ start/end {date | dateTime, + timeZone}
    private ↔ visibility "private"         recurrence ↔ recurrence[] lines
    status: "declined" when the user's own attendee entry declined, or crmsync marked
            it declined (shown as free time); "unconfirmed" ↔ status "tentative"
    members ↔ a private extended property (CRM user ids are no Google attendees,
            and crmsync never invites anyone on its own, SYN-8)
    mapped custom fields (SYN-1) ↔ shared extended properties, under the keys the tenant
            maps them to and written through its transforms (shared, so attendees'
            copies of the event carry them too); others are kept
    the link key ↔ private extended property `crmsyncLink` (SYN-9)

Events crmsync creates get an id derived from the create's idempotency key, so a
retried insert answers 409 and the event already made is used instead (SYN-4).
Exceptions of a recurring series (events with `recurringEventId`) are not synced as
records of their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import AlreadyExists, Conflict, CursorExpired, NotFound, PermanentError
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.google.client import GoogleClient
from crmsync.transforms import CustomMap

LINK = "crmsyncLink"
MEMBERS = "crmsyncMembers"
STATUS = "crmsyncStatus"
_BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
# The canonical activity fields a Google event holds (type, leader and regarding stay
# in the CRM; regarding reaches the event as the related-info block, CAL-5).
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


def calendars(client: GoogleClient) -> list[dict[str, str]]:
    """The calendars of the account crmsync may write to, for the `calendar` setting
    (SET-1): each {id: the setting's value ("primary" for the primary one), label}."""
    entries = client.service("calendar", "v3").calendarList()
    return [
        {
            "id": "primary" if entry.get("primary") else str(entry["id"]),
            "label": str(entry.get("summaryOverride") or entry.get("summary") or entry["id"]),
        }
        for entry in client.listed(entries.list, "calendar calendarList.list", maxResults=250)
        if entry.get("accessRole") in ("owner", "writer")
    ]


def reminder_of(event: Mapping[str, Any]) -> str | None:
    """The event's reminders as one token (SYN-10): changing them moves `updated` and
    the etag, yet edits nothing crmsync syncs."""
    reminders = event.get("reminders")
    return json.dumps(reminders, sort_keys=True) if reminders is not None else None


def event_id(key: str) -> str:
    """A valid client-chosen event id (base32hex, 26 characters) for an idempotency key."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:17], "big")
    chars = []
    for _ in range(26):
        digest, rest = divmod(digest, 32)
        chars.append(_BASE32HEX[rest])
    return "cs" + "".join(chars)


# -- mapping ---------------------------------------------------------------------------------
def to_event(
    fields: Mapping[str, Any], directory: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Event fields for the canonical fields given (all of them, or a patch).
    `directory` (CRM user id → e-mail) turns members into attendees (CAL-6)."""
    event: dict[str, Any] = {}
    private: dict[str, str] = {}
    if "subject" in fields:
        event["summary"] = fields["subject"]
    if "notes" in fields:
        event["description"] = fields["notes"]
    if "location" in fields:
        event["location"] = fields["location"]
    if {"start", "end", "all_day", "timezone"} & set(fields):
        event.update(_times(fields))
    if "private" in fields:
        event["visibility"] = "private" if fields["private"] else "default"
    if "recurrence" in fields:
        rule = fields["recurrence"]
        event["recurrence"] = [line for line in (rule or "").splitlines() if line.strip()]
    if "status" in fields:
        status = fields["status"]
        event["status"] = "tentative" if status == "unconfirmed" else "confirmed"
        event["transparency"] = "transparent" if status == "declined" else "opaque"
        private[STATUS] = status
    if "members" in fields:
        private[MEMBERS] = ",".join(fields["members"])
        if directory is not None:
            event["attendees"] = [
                {"email": directory[m]} for m in fields["members"] if m in directory
            ]
    if private:
        event["extendedProperties"] = {"private": private}
    return event


def _times(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Start and end with their time zone, all-day ones too: Google requires the zone
    of a recurring event, the one its occurrences are expanded in."""
    start, end = fields["start"], fields["end"]
    tz = fields.get("timezone") or "UTC"
    if fields.get("all_day") or (isinstance(start, date) and not isinstance(start, datetime)):
        return {
            "start": {"date": start.isoformat(), "timeZone": tz},
            "end": {"date": end.isoformat(), "timeZone": tz},
        }
    return {
        "start": {"dateTime": start.isoformat(), "timeZone": tz},
        "end": {"dateTime": end.isoformat(), "timeZone": tz},
    }


def from_event(event: Mapping[str, Any], users: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Canonical fields of an event, as the provider side holds them (raw: to be
    normalised, so bad data surfaces as an invalid record). `users` (e-mail → CRM user
    id) reads the members of an event crmsync did not write from its attendees."""
    start, end = event.get("start") or {}, event.get("end") or {}
    private = (event.get("extendedProperties") or {}).get("private") or {}
    all_day = "date" in start
    members = private.get(MEMBERS)
    if members is None:
        members = ",".join(_attending_users(event, users or {}))
    return {
        "subject": event.get("summary", ""),
        "notes": event.get("description", ""),
        "location": event.get("location", ""),
        "all_day": all_day,
        "start": start.get("date") if all_day else start.get("dateTime"),
        "end": end.get("date") if all_day else end.get("dateTime"),
        "timezone": start.get("timeZone") or "UTC",
        "private": event.get("visibility") in ("private", "confidential"),
        "recurrence": "\n".join(event.get("recurrence") or ()) or None,
        "status": _status(event, private),
        "members": [m for m in members.split(",") if m],
    }


def shared_properties(event: Mapping[str, Any]) -> dict[str, str]:
    """The event's shared extended properties (where mapped custom fields live)."""
    shared = (event.get("extendedProperties") or {}).get("shared") or {}
    return {str(k): str(v) for k, v in shared.items()}


def _exdate(original: Mapping[str, Any]) -> str:
    if "date" in original:
        return "EXDATE;VALUE=DATE:" + str(original["date"]).replace("-", "")
    moment = model.parse_instant(original.get("dateTime"))
    return "EXDATE:" + moment.strftime("%Y%m%dT%H%M%SZ") if moment else ""


EXCEPTIONS = "~"  # joins a series' etag and a digest of its exceptions into its version


def _rdate(start: Mapping[str, Any]) -> str:
    if "date" in start:
        return "RDATE;VALUE=DATE:" + str(start["date"]).replace("-", "")
    moment = model.parse_instant(start.get("dateTime"))
    return "RDATE:" + moment.strftime("%Y%m%dT%H%M%SZ") if moment else ""


def _moment(time: Mapping[str, Any]) -> Any:
    """An event time as one comparable value: its date, or its instant."""
    if "date" in time:
        return str(time["date"])
    return model.parse_instant(time.get("dateTime"))


def _with_exdates(recurrence: str, exdates: list[str]) -> str:
    lines = [line for line in recurrence.splitlines() if line.strip()]
    lines += [line for line in exdates if line not in lines]
    return "\n".join(lines)


def _attending_users(event: Mapping[str, Any], users: Mapping[str, str]) -> list[str]:
    found = (users.get(str(a.get("email", "")).lower()) for a in event.get("attendees") or ())
    return [user for user in found if user]


def _status(event: Mapping[str, Any], private: Mapping[str, str]) -> str:
    if any(
        a.get("self") and a.get("responseStatus") == "declined"
        for a in event.get("attendees") or ()
    ):
        return "declined"
    if private.get(STATUS) == "declined":
        return "declined"
    return "unconfirmed" if event.get("status") == "tentative" else "confirmed"


# -- the resource ------------------------------------------------------------------------------
@dataclass(frozen=True)
class WatchResult:
    channel_id: str
    resource_id: str
    expires: datetime


class GoogleCalendar:
    """The activity side of one Google account: one calendar (SET-1, default primary)."""

    def __init__(
        self,
        client: GoogleClient,
        calendar: str = "primary",
        directory: Mapping[str, str] | None = None,
        custom: CustomMap | None = None,
    ) -> None:
        """`directory` maps CRM user ids to their e-mail addresses: members then become
        attendees (CAL-6), told of changes only when the CRM activity asks (SYN-8).
        Without one, members stay crmsync's own note on the event. `custom` is the
        tenant's mapping of activity custom fields (SYN-1)."""
        self.client = client
        self.custom = custom or CustomMap()
        self.calendar = calendar
        self.directory = dict(directory) if directory is not None else None
        self.users = {e.lower(): u for u, e in (directory or {}).items()}
        self.held = HELD

    @property
    def events(self) -> Any:
        return self.client.service("calendar", "v3").events()

    def record(self, event: Mapping[str, Any]) -> SideRecord:
        event_id_ = str(event["id"])
        version = str(event.get("etag", ""))
        modified = model.parse_instant(event.get("updated"))
        if event.get("status") == "cancelled":
            return SideRecord(event_id_, version, None, modified=modified)
        ref = ((event.get("extendedProperties") or {}).get("private") or {}).get(LINK)
        raw = from_event(event, self.users)
        if raw["recurrence"]:
            exceptions = self._exceptions(event_id_)
            raw["recurrence"] = _with_exdates(raw["recurrence"], exceptions)
            if exceptions:  # changing an occurrence leaves the series' etag as it was
                version += (
                    EXCEPTIONS + hashlib.sha256("\n".join(exceptions).encode()).hexdigest()[:12]
                )
        try:
            canonical = model.normalize("activity", raw)
            fields = {name: canonical[name] for name in self.held}
            fields.update(self.custom.read(shared_properties(event)))
        except model.InvalidRecord as exc:
            return SideRecord(event_id_, version, {}, modified=modified, ref=ref, error=str(exc))
        return SideRecord(
            event_id_, version, fields, modified=modified, ref=ref, reminder=reminder_of(event)
        )

    def changes(self, cursor: str | None) -> ChangePage:
        """Every event changed since the sync token (all of them without one), all pages.
        An occurrence cancelled in Google arrives as an event of its own; it is read as a
        change of its series, whose recurrence then lists it as an EXDATE (CAL-9)."""
        records: list[SideRecord] = []
        touched_series: set[str] = set()
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"calendarId": self.calendar, "maxResults": 250}
            params["singleEvents"] = False
            if cursor is not None:
                params["syncToken"] = cursor
            if page_token is not None:
                params["pageToken"] = page_token
            answer = self.client.execute(self.events.list(**params), "calendar events.list")
            for event in answer.get("items", []):
                if event.get("recurringEventId"):
                    touched_series.add(str(event["recurringEventId"]))
                else:
                    records.append(self.record(event))
            page_token = answer.get("nextPageToken")
            if page_token is None:
                token = answer.get("nextSyncToken")
                if not token:  # not a stale token: listing again would end the same way
                    raise PermanentError("calendar listing ended without a sync token")
                listed = {r.id for r in records}
                records.extend(self.get(m) for m in sorted(touched_series - listed))
                return ChangePage(records, str(token))

    def _exceptions(self, series: str) -> list[str]:
        """The series' occurrences changed in Google, as recurrence lines (CAL-9): an
        EXDATE for each cancelled one; an EXDATE of its original start and an RDATE of
        its new one for each moved one (what else an occurrence changed, its own
        subject say, has no place in a recurrence and stays Google's)."""
        lines: list[str] = []
        for occurrence in self._instances(series):
            original = occurrence.get("originalStartTime") or {}
            if occurrence.get("status") == "cancelled":
                lines.append(_exdate(original))
            elif _moment(occurrence.get("start") or {}) != _moment(original):
                lines += [_exdate(original), _rdate(occurrence.get("start") or {})]
        return [line for line in lines if line]

    def _moved_lines(self, series: str) -> set[str]:
        """The EXDATE and RDATE lines that Google holds as moved occurrences of the
        series: written back into its recurrence, they would add each one again."""
        lines: set[str] = set()
        for occurrence in self._instances(series):
            original = occurrence.get("originalStartTime") or {}
            start = occurrence.get("start") or {}
            if occurrence.get("status") != "cancelled" and _moment(start) != _moment(original):
                lines |= {_exdate(original), _rdate(start)}
        return lines

    def _instances(self, series: str) -> list[dict[str, Any]]:
        """The changed occurrences (exceptions) of a series, cancelled ones included."""
        found: list[dict[str, Any]] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"calendarId": self.calendar, "eventId": series}
            params["showDeleted"] = True
            if page_token is not None:
                params["pageToken"] = page_token
            answer = self.client.execute(self.events.instances(**params), "calendar instances")
            for occurrence in answer.get("items", []):
                original = occurrence.get("originalStartTime") or {}
                moved = _moment(occurrence.get("start") or {}) != _moment(original)
                if occurrence.get("status") == "cancelled" or moved:
                    found.append(occurrence)
            page_token = answer.get("nextPageToken")
            if page_token is None:
                return found

    def get(self, record_id: str) -> SideRecord:
        request = self.events.get(calendarId=self.calendar, eventId=record_id)
        try:
            return self.record(self.client.execute(request, "calendar events.get"))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def create(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.key is not None
        body = to_event(write.fields, self.directory)
        body["id"] = event_id(write.key)
        private = body.setdefault("extendedProperties", {}).setdefault("private", {})
        if write.ref:
            private[LINK] = write.ref
        shared = {k: v for k, v in self.custom.write(write.fields).items() if v is not None}
        if shared:
            body["extendedProperties"]["shared"] = shared
        request = self.events.insert(
            calendarId=self.calendar, body=body, sendUpdates=_updates(write)
        )
        try:
            answer = self.client.execute(request, "calendar events.insert")
        except AlreadyExists:
            existing = self.get(body["id"])  # a retried create: the first one happened
            if existing.fields is None:
                raise
            return WriteResult(existing.id, existing.version, existing.reminder)
        return WriteResult(str(answer["id"]), str(answer["etag"]), reminder_of(answer))

    def update(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.target is not None
        body = to_event(_whole_times(write, self.get), self.directory)
        if body.get("recurrence"):  # moves Google holds as exceptions stay exceptions
            held = self._moved_lines(write.target)
            body["recurrence"] = [line for line in body["recurrence"] if line not in held]
        if "attendees" in body:
            body["attendees"] = self._guests_kept(write.target) + body["attendees"]
        shared = self.custom.write(write.fields)
        if shared:  # a patch sets the keys it names; null removes one
            body.setdefault("extendedProperties", {})["shared"] = shared
        request = self.events.patch(
            calendarId=self.calendar, eventId=write.target, body=body, sendUpdates=_updates(write)
        )
        if write.version:
            request.headers["If-Match"] = write.version.partition(EXCEPTIONS)[0]
        answer = self.client.execute(request, "calendar events.patch")
        return WriteResult(str(answer["id"]), str(answer["etag"]), reminder_of(answer))

    def _guests_kept(self, event: str) -> list[dict[str, Any]]:
        """Attendees that are no CRM users (guests the user invited in Google): a change
        of members must not drop them, and Google replaces the attendee list whole."""
        request = self.events.get(calendarId=self.calendar, eventId=event)
        current = self.client.execute(request, "calendar events.get")
        return [
            a
            for a in current.get("attendees") or ()
            if a.get("email", "").lower() not in self.users
        ]

    def delete(self, write: Write) -> None:
        assert write.target is not None
        request = self.events.delete(
            calendarId=self.calendar, eventId=write.target, sendUpdates=_updates(write)
        )
        if write.version:
            request.headers["If-Match"] = write.version.partition(EXCEPTIONS)[0]
        try:
            self.client.execute(request, "calendar events.delete")
        except CursorExpired as exc:  # 410 on an event: already deleted
            raise NotFound(f"event {write.target} is already deleted") from exc

    def watch(self, address: str, channel_id: str, token: str, ttl: timedelta) -> WatchResult:
        """Open a push channel on the calendar; Google may grant a shorter life than asked."""
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        body = {
            "id": channel_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "expiration": str(now_ms + int(ttl.total_seconds() * 1000)),
        }
        request = self.events.watch(calendarId=self.calendar, body=body)
        answer = self.client.execute(request, "calendar events.watch")
        expires = datetime.fromtimestamp(int(answer["expiration"]) / 1000, UTC)
        return WatchResult(str(answer["id"]), str(answer["resourceId"]), expires)

    def stop(self, channel_id: str, resource_id: str) -> None:
        """Close a push channel; one Google no longer knows is closed already."""
        channels = self.client.service("calendar", "v3").channels()
        request = channels.stop(body={"id": channel_id, "resourceId": resource_id})
        try:
            self.client.execute(request, "calendar channels.stop")
        except NotFound:
            return


def _whole_times(write: Write, get: Any) -> Mapping[str, Any]:
    """A patch touching any time field carries all of them: Google replaces start and
    end as a whole, with their time zone."""
    fields = dict(write.fields or {})
    times = {"start", "end", "all_day", "timezone"}
    if times & set(fields) and not times <= set(fields):
        assert write.target is not None
        current = get(write.target)
        if current.fields is None:
            raise Conflict("the event is gone")
        for name in times - set(fields):
            fields[name] = current.fields[name]
    return fields


def _updates(write: Write) -> str:
    """SYN-8: attendees hear of a change only when the CRM activity asked for it."""
    return "all" if write.notify else "none"
