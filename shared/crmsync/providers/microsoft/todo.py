"""CRM to-dos as Microsoft To Do tasks through Graph: the only place Graph's todoTask
field names appear.

Mapping (canonical ← → task):
    subject ↔ title            notes ↔ body (text)
    status open ↔ notStarted, in_progress ↔ inProgress, completed ↔ completed; To Do's
        waitingOnOthers and deferred read as open, and "cancelled", which To Do has no
        place for, is written as completed (as GoogleTasks does; a status table that
        maps cancelled to completed keeps the CRM's status, TSK-3)
    priority low, normal, high ↔ importance (any other priority is written as normal)
    start, due (dates) ↔ startDateTime, dueDateTime {dateTime, timeZone}: written as
        midnight of the date in the user's time zone; read as the date written when
        the time is midnight, else (Graph shows To Do's dates as UTC instants) as the
        date whose midnight in the user's zone is nearest, so it never shifts a day
    recurrence (an RRULE) ↔ recurrence (patternedRecurrence), its range starting on the
        due date (To Do repeats a task from its due date)
    the reminder (SYN-10) ↔ isReminderOn and reminderDateTime, which snoozing changes:
        a token on SideRecord.reminder, never a field

The create's idempotency key (SYN-4) and the twin's id (SYN-9) live in one
linkedResource (applicationName "crmsync", externalId the key, displayName the twin's
id), made in the same request as the task. Graph v1.0's todoTask has no
single-value extended properties; an open extension would do, but Graph documents it
only as a second request on an existing task, so a run killed between the two would
leave a task without its key, which a retried create cannot find. A linkedResource is
documented as part of the task's create: the task and its key exist together or not
at all. Graph filters no listing on a linkedResource's externalId, so a create looks
through the list's tasks once per process (after an unanswered create, again).

Mapped custom fields (SYN-1) live in one open extension, `EXTENSION`, whose properties
are the provider keys the tenant maps them to (a cleared value is null). Graph v1.0's
todoTask has no single-value extended properties, where contacts and events keep them;
an open extension is what Graph documents for an app's own data on a task. It is made
in the task's create request (as Graph documents), so a task crmsync makes never lacks
it; a later write reads it and patches it whole, because Graph documents a PATCH that
merges only for directory objects. A task is read with
`$expand=extensions($filter=id eq '...')`; a delta round does not ask for it, as Graph
has been reported to refuse that expansion on todoTask delta, so when to-do custom
fields are mapped each task a round reports changed is read again.

An update patches only the properties its canonical fields map to, with the version
the engine read in If-Match (412 → Conflict); custom values are written after that
patch, and the version returned is the task's after both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import AlreadyExists, NotFound, PermanentError, TransientError
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.microsoft import echoes
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.echoes import RemembersWhatItMade
from crmsync.transforms import CustomMap

# The canonical to-do fields a To Do task holds (settings: field_map["todo"]).
HELD = ("subject", "start", "due", "status", "priority", "notes", "recurrence")
APP = "crmsync"
LINKED = "linkedResources"
DEFAULT_LIST = "defaultList"
EXPAND = {"$expand": LINKED}
EXTENSION = "io.crmsync.customFields"
OPEN_EXTENSION = "microsoft.graph.openTypeExtension"
STATUS_OUT = {
    "open": "notStarted",
    "in_progress": "inProgress",
    "completed": "completed",
    "cancelled": "completed",
}
STATUS_IN = {"inProgress": "in_progress", "completed": "completed"}  # the rest read as open
IMPORTANCE = ("low", "normal", "high")
DATES = {"start": "startDateTime", "due": "dueDateTime"}
# Graph's Windows time zone names for the zones its apps commonly write.
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
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
BYDAY = dict(zip(("MO", "TU", "WE", "TH", "FR", "SA", "SU"), DAYS, strict=True))
INDEX = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
_RULE_PARTS = {"FREQ", "INTERVAL", "BYDAY", "BYMONTHDAY", "BYMONTH", "COUNT", "UNTIL"}
_NTH_DAY = re.compile(r"^([+-]?\d)?([A-Z]{2})$")


# -- dates -----------------------------------------------------------------------------------
def _zone(name: str) -> ZoneInfo:
    return model.zone(WINDOWS_ZONES.get(name, name))


def _to_date_time(day: date | None, zone: str) -> dict[str, str] | None:
    return (
        None
        if day is None
        else {"dateTime": f"{day.isoformat()}T00:00:00.0000000", "timeZone": zone}
    )


def _from_date_time(value: Any, user_zone: ZoneInfo) -> date | None:
    """The date a dateTimeTimeZone stands for; InvalidRecord when unreadable."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        raise model.InvalidRecord(f"not a dateTimeTimeZone: {value!r}")
    text = str(value["dateTime"])
    try:
        wall = datetime.fromisoformat(text[:19])
    except ValueError as exc:
        raise model.InvalidRecord(f"not a date and time: {text!r}") from exc
    zone = _zone(str(value.get("timeZone") or "UTC"))
    if wall.time() == time(0):
        return wall.date()
    local = wall.replace(tzinfo=zone).astimezone(user_zone)
    return (local + timedelta(hours=12)).date()


# -- recurrence ------------------------------------------------------------------------------
def to_recurrence(rule: str, anchor: date) -> dict[str, Any]:
    """A patternedRecurrence for an RRULE; PermanentError for a rule To Do cannot hold."""
    parts = dict(p.split("=", 1) for p in rule.removeprefix("RRULE:").split(";") if "=" in p)
    if not set(parts) <= _RULE_PARTS or parts.get("FREQ") not in (
        "DAILY",
        "WEEKLY",
        "MONTHLY",
        "YEARLY",
    ):
        raise PermanentError(f"To Do cannot repeat a task as {rule!r}")
    pattern: dict[str, Any] = {"interval": int(parts.get("INTERVAL", "1"))}
    days = [_NTH_DAY.match(d) for d in parts.get("BYDAY", "").split(",") if d]
    if any(d is None or d.group(2) not in BYDAY for d in days):
        raise PermanentError(f"To Do cannot repeat a task on {parts['BYDAY']!r}")
    weekdays = [BYDAY[d.group(2)] for d in days if d is not None]
    nth = {int(d.group(1)) for d in days if d is not None and d.group(1)}
    freq = parts["FREQ"]
    if freq == "DAILY":
        pattern["type"] = "daily"
    elif freq == "WEEKLY":
        pattern.update(type="weekly", firstDayOfWeek="sunday")
        pattern["daysOfWeek"] = weekdays or [DAYS[anchor.weekday()]]
    else:
        kind = "Monthly" if freq == "MONTHLY" else "Yearly"
        if freq == "YEARLY":
            pattern["month"] = int(parts.get("BYMONTH", anchor.month))
        if weekdays:
            if len(nth) != 1 or next(iter(nth)) not in INDEX:
                raise PermanentError(f"To Do cannot repeat a task as {rule!r}")
            pattern.update(type=f"relative{kind}", daysOfWeek=weekdays, index=INDEX[nth.pop()])
        else:
            pattern.update(
                type=f"absolute{kind}", dayOfMonth=int(parts.get("BYMONTHDAY", anchor.day))
            )
    span: dict[str, Any] = {"type": "noEnd", "startDate": anchor.isoformat()}
    if "COUNT" in parts:
        span.update(type="numbered", numberOfOccurrences=int(parts["COUNT"]))
    elif "UNTIL" in parts:
        until = parts["UNTIL"]
        span.update(type="endDate", endDate=f"{until[:4]}-{until[4:6]}-{until[6:8]}")
    return {"pattern": pattern, "range": span}


def from_recurrence(value: Any) -> str | None:
    """The recurrence line of a patternedRecurrence, as crmsync's records hold one
    (`RRULE:FREQ=...`, RFC 5545); None when the task does not repeat; InvalidRecord for a
    pattern an RRULE here cannot say."""
    if not value:
        return None
    try:
        pattern, span = value["pattern"], value["range"]
        kind = str(pattern["type"])
        freq = {"daily": "DAILY", "weekly": "WEEKLY"}.get(kind) or (
            "MONTHLY" if kind.endswith("Monthly") else "YEARLY" if kind.endswith("Yearly") else ""
        )
        if not freq:
            raise model.InvalidRecord(f"unknown recurrence pattern {kind!r}")
        parts = [f"FREQ={freq}"]
        if int(pattern.get("interval") or 1) != 1:
            parts.append(f"INTERVAL={int(pattern['interval'])}")
        codes = {day: code for code, day in BYDAY.items()}
        prefix = {name: str(n) for n, name in INDEX.items()}.get(str(pattern.get("index")), "")
        if kind == "weekly" or kind.startswith("relative"):
            lead = prefix if kind.startswith("relative") else ""
            parts.append("BYDAY=" + ",".join(lead + codes[d] for d in pattern["daysOfWeek"]))
        if kind.startswith("absolute"):
            parts.append(f"BYMONTHDAY={int(pattern['dayOfMonth'])}")
        if kind.endswith("Yearly"):
            parts.append(f"BYMONTH={int(pattern['month'])}")
        if span.get("type") == "numbered":
            parts.append(f"COUNT={int(span['numberOfOccurrences'])}")
        elif span.get("type") == "endDate":
            parts.append("UNTIL=" + date.fromisoformat(str(span["endDate"])).strftime("%Y%m%d"))
    except (KeyError, TypeError, ValueError) as exc:
        raise model.InvalidRecord(f"unreadable recurrence ({exc})") from exc
    return "RRULE:" + ";".join(parts)


# -- mapping ---------------------------------------------------------------------------------
def to_task(fields: Mapping[str, Any], zone: str, anchor: date | None = None) -> dict[str, Any]:
    """Task properties for the canonical fields given (all of them, or a patch); None
    clears a property. `anchor` is the due date a recurrence starts on when the
    fields give none."""
    task: dict[str, Any] = {}
    if "subject" in fields:
        task["title"] = fields["subject"] or ""
    if "notes" in fields:
        task["body"] = {"content": fields["notes"] or "", "contentType": "text"}
    if "status" in fields:
        task["status"] = STATUS_OUT.get(fields["status"], "notStarted")
    if "priority" in fields:
        task["importance"] = fields["priority"] if fields["priority"] in IMPORTANCE else "normal"
    for name, prop in DATES.items():
        if name in fields:
            task[prop] = _to_date_time(fields[name], zone)
    if "recurrence" in fields:
        rule = fields["recurrence"]
        start = fields.get("due") or anchor
        if rule and start is None:
            raise PermanentError("To Do repeats a task from its due date: it has none")
        task["recurrence"] = to_recurrence(rule, start) if rule and start else None
    return task


def from_task(task: Mapping[str, Any], user_zone: ZoneInfo) -> dict[str, Any]:
    """Canonical fields of a task, raw (to be normalised); InvalidRecord for dates or a
    recurrence that cannot be read."""
    body = task.get("body") or {}
    return {
        "subject": task.get("title") or "",
        "notes": (body.get("content") or "") if isinstance(body, Mapping) else "",
        "status": STATUS_IN.get(str(task.get("status")), "open"),
        "priority": task.get("importance") or "normal",
        "start": _from_date_time(task.get("startDateTime"), user_zone),
        "due": _from_date_time(task.get("dueDateTime"), user_zone),
        "recurrence": from_recurrence(task.get("recurrence")),
    }


def reminder(task: Mapping[str, Any]) -> str:
    """The reminder as To Do shows it: off, or on at a moment (snoozing moves it)."""
    if not task.get("isReminderOn"):
        return "off"
    at = task.get("reminderDateTime") or {}
    return f"on {at.get('dateTime', '')} {at.get('timeZone', '')}".strip()


def extension_values(task: Mapping[str, Any]) -> dict[str, str | None]:
    """What crmsync's open extension on a task holds, by provider key (an empty dict
    when the task has none)."""
    wanted = EXTENSION.casefold()
    for item in task.get("extensions") or ():
        if not isinstance(item, Mapping):
            continue
        if wanted in (
            str(item.get("id", "")).casefold(),
            str(item.get("extensionName", "")).casefold(),
        ):
            return {
                str(k): v if isinstance(v, str) else None
                for k, v in item.items()
                if not str(k).startswith("@") and k not in ("id", "extensionName")
            }
    return {}


def _link(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for item in task.get(LINKED) or ():
        if isinstance(item, Mapping) and item.get("applicationName") == APP:
            return item
    return None


def task_lists(client: GraphClient) -> list[dict[str, str]]:
    """The mailbox's To Do lists, for the `task_list` setting (SET-1), which names a list
    by its name: each {id: the setting's value ("default" for the default list),
    label}. Lists To Do keeps itself (flagged e-mail) are not offered."""
    found = client.values("me/todo/lists", "graph todoLists.list")
    return [
        {
            "id": "default" if listed.get("wellknownListName") == DEFAULT_LIST else name,
            "label": name,
        }
        for listed in found
        if listed.get("wellknownListName") in (None, "none", DEFAULT_LIST)
        and (name := str(listed.get("displayName") or ""))
    ]


# -- the resource ----------------------------------------------------------------------------
class GraphTasks(RemembersWhatItMade):
    """The to-do side of one Microsoft 365 mailbox: one To Do list (SET-1). "default"
    is the user's default list; another name is the list of that name, made on first
    use. `claimed` says whether a task id is held by one of the connection's links, so a
    task the user copied (with crmsync's link on it) is not taken for another's create;
    `timezone` is the user's, that of the dates To Do shows."""

    def __init__(
        self,
        client: GraphClient,
        task_list: str = "default",
        claimed: Callable[[str], bool] | None = None,
        *,
        timezone: str = "UTC",
        custom: CustomMap | None = None,
    ) -> None:
        """`custom` is the tenant's mapping of to-do custom fields (SYN-1)."""
        self.client = client
        self.custom = custom or CustomMap()
        self._expand = (
            {"$expand": f"{LINKED},extensions($filter=id eq '{EXTENSION}')"}
            if self.custom
            else EXPAND
        )
        self.task_list = task_list
        self.claimed = claimed or (lambda task_id: False)
        self.timezone = timezone
        self.held = HELD
        self._list: str | None = None
        self._keys: dict[str, dict[str, Any]] | None = None  # key → task, once listed

    # -- the list --------------------------------------------------------------------------------
    def list_id(self) -> str:
        """The sync list's id; a named list is made on first use."""
        if self._list is None:
            self._list = self._find_list() or self._create_list()
        return self._list

    def _find_list(self) -> str | None:
        wanted = self.task_list.casefold()
        for found in self.client.values("me/todo/lists", "graph todoLists.list"):
            if self.task_list == "default" and found.get("wellknownListName") == DEFAULT_LIST:
                return str(found["id"])
            if str(found.get("displayName", "")).casefold() == wanted:
                return str(found["id"])
        return None

    def _create_list(self) -> str:
        if self.task_list == "default":
            raise PermanentError("the mailbox has no default To Do list")
        try:
            made = self.client.request(
                "POST",
                "me/todo/lists",
                "graph todoLists.create",
                body={"displayName": self.task_list},
            )
        except AlreadyExists as exc:
            found = self._find_list()
            if found is None:
                raise PermanentError(f"no To Do list {self.task_list!r}") from exc
            return found
        return str(made["id"])

    @property
    def _tasks(self) -> str:
        return f"me/todo/lists/{self.list_id()}/tasks"

    def subscription_resource(self) -> str:
        """What a change subscription on the sync list names (a named list is made if
        need be, as the first cycle would)."""
        return self._tasks

    # -- reading ---------------------------------------------------------------------------------
    def record(self, task: Mapping[str, Any]) -> SideRecord:
        task_id = str(task["id"])
        version = str(task.get("@odata.etag") or "")
        if "@removed" in task:
            return SideRecord(task_id, version or "0", None)
        modified = model.parse_instant(task.get("lastModifiedDateTime"))
        link = _link(task)
        ref = str(link.get("displayName") or "") or None if link else None
        token = reminder(task)
        try:
            canonical = model.normalize("todo", from_task(task, model.zone(self.timezone)))
        except (model.InvalidRecord, TypeError, AttributeError, ValueError) as exc:
            return SideRecord(
                task_id, version, {}, modified, ref=ref, error=str(exc), reminder=token
            )
        fields: dict[str, Any] = {name: canonical[name] for name in self.held}
        try:
            fields.update(self.custom.read(extension_values(task)))
        except model.InvalidRecord as exc:
            return SideRecord(
                task_id, version, {}, modified, ref=ref, error=str(exc), reminder=token
            )
        return SideRecord(task_id, version, fields, modified, ref=ref, reminder=token)

    def changes(self, cursor: str | None) -> ChangePage:
        """Every task of the list changed since the delta link (all of them without
        one), all pages; deleted ones read as gone."""
        link, made = echoes.split(cursor)
        start = link or f"{self._tasks}/delta"
        params = None if link else EXPAND
        records: list[SideRecord] = []
        for page in self.client.pages(start, "graph todoTasks.delta", params):
            records.extend(self._reported(t) for t in page.get("value") or ())
            if page.get("@odata.deltaLink"):
                records += echoes.unreported(made, records, self.get)
                return ChangePage(records, str(page["@odata.deltaLink"]))
        raise PermanentError("a task delta round ended without a delta link")

    def _reported(self, task: Mapping[str, Any]) -> SideRecord:
        """A task a delta round reports, read again for its custom values if mapped."""
        if self.custom and "@removed" not in task:
            return self.get(str(task["id"]))
        return self.record(task)

    def _read(self, task_id: str) -> dict[str, Any]:
        return self.client.request(
            "GET", f"{self._tasks}/{task_id}", "graph todoTasks.get", params=self._expand
        )

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._read(record_id))
        except NotFound:
            return SideRecord(record_id, "0", None)

    # -- writing ---------------------------------------------------------------------------------
    def _listed(self) -> dict[str, dict[str, Any]]:
        """The list's tasks by the create key they hold (one listing per process)."""
        if self._keys is None:
            self._keys = {}
            tasks: Iterator[dict[str, Any]] = self.client.values(
                self._tasks, "graph todoTasks.list", EXPAND
            )
            for task in tasks:
                link = _link(task)
                if link and link.get("externalId") and not self.claimed(str(task["id"])):
                    self._keys.setdefault(str(link["externalId"]), task)
        return self._keys

    def create(self, write: Write) -> WriteResult:
        """Create once per key: a task holding the key is an earlier attempt's."""
        assert write.fields is not None and write.key is not None
        earlier = self._listed().get(write.key)
        if earlier is not None:
            return WriteResult(str(earlier["id"]), str(earlier["@odata.etag"]), reminder(earlier))
        try:
            made = self.client.request(
                "POST", self._tasks, "graph todoTasks.create", body=self._new(write)
            )
        except TransientError:
            self._keys = None  # the task may have been made: list again next time
            raise
        result = self._result(write, made)
        assert isinstance(result, WriteResult)
        return result

    def create_many(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """Fresh creates (journaled in this run, so no earlier attempt exists to look
        for) in Graph's batches of twenty, each failing alone; one left unfinished is
        finished by `create`, which looks for it first (SYN-4)."""
        calls = [("POST", self._tasks, self._new(w)) for w in writes]
        answers = self.client.batch(calls, "graph todoTasks.create")
        return [self._result(w, made) for w, made in zip(writes, answers, strict=True)]

    def _result(self, write: Write, made: dict[str, Any] | Exception) -> WriteResult | Exception:
        if isinstance(made, TransientError):
            self._keys = None  # the task may have been made: list again next time
        if isinstance(made, Exception):
            return made
        assert write.key is not None
        if self._keys is not None:
            self._keys[write.key] = made
        self._made_now(str(made["id"]))
        return WriteResult(str(made["id"]), str(made["@odata.etag"]), reminder(made))

    def _new(self, write: Write) -> dict[str, Any]:
        """A new task's properties: its fields, the linked resource holding its key, and
        its custom values in crmsync's open extension."""
        assert write.fields is not None and write.key is not None
        body = to_task(write.fields, self.timezone)
        link = {"applicationName": APP, "externalId": write.key, "displayName": write.ref or ""}
        body[LINKED] = [link]
        values = {k: v for k, v in self.custom.write(write.fields).items() if v is not None}
        if values:
            body["extensions"] = [
                {"@odata.type": OPEN_EXTENSION, "extensionName": EXTENSION, **values}
            ]
        return body

    def update(self, write: Write) -> WriteResult:
        """Patch the properties the changed canonical fields live in, only if the
        task is still at `write.version` (412 → Conflict)."""
        assert write.fields is not None and write.target is not None
        anchor = None
        if write.fields.get("recurrence") and "due" not in write.fields:
            anchor = (self.get(write.target).fields or {}).get("due")
        body = to_task(write.fields, self.timezone, anchor)
        headers = {"If-Match": write.version} if write.version else {}
        answer = self.client.request(
            "PATCH",
            f"{self._tasks}/{write.target}",
            "graph todoTasks.update",
            body=body,
            headers=headers,
        )
        values = self.custom.write(write.fields)
        if not values:
            return WriteResult(str(answer["id"]), str(answer["@odata.etag"]), reminder(answer))
        self._write_extension(write.target, values)
        after = self.get(write.target)
        return WriteResult(after.id, after.version, after.reminder)

    def _write_extension(self, task_id: str, values: Mapping[str, str | None]) -> None:
        """Set these custom values in the task's open extension, keeping its others
        (None: null, no value); the extension is made if the task has none yet."""
        path = f"{self._tasks}/{task_id}/extensions"
        try:
            held = self.client.request(
                "GET", f"{path}/{EXTENSION}", "graph todoTasks.extensions.get"
            )
        except NotFound:
            body = {"@odata.type": OPEN_EXTENSION, "extensionName": EXTENSION, **values}
            self.client.request("POST", path, "graph todoTasks.extensions.create", body=body)
            return
        whole = {**extension_values({"extensions": [held]}), **values}
        self.client.request(
            "PATCH", f"{path}/{EXTENSION}", "graph todoTasks.extensions.update", body=whole
        )

    def delete(self, write: Write) -> None:
        """Delete the task; NotFound (from Graph's 404) when it is already gone."""
        assert write.target is not None
        headers = {"If-Match": write.version} if write.version else {}
        self.client.request(
            "DELETE", f"{self._tasks}/{write.target}", "graph todoTasks.delete", headers=headers
        )
