"""CRM phone calls as provider tasks (CAL-1, setting `calls_as: task`).

Some sales teams keep calls on their to-do list rather than in the calendar. With the
setting on, the CRM side of the to-do sync also carries the user's CRM calls, each seen
as a to-do: the subject and notes as they are, the due date the call's day in its own
time zone, done when the call is completed. Their ids carry the prefix `call:` so every
write finds its way back to the call. The calendar sync no longer sees calls: they are
out of its scope, so a call that had an event loses it to the task.

A to-do written back to a call changes the call: a new due date moves the call to that
day at the same time of day, completing the task completes the call, and cancelling it
declines the call. A call has no "in progress": such a task reads back as open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from crmsync.engine.plan import Write
from crmsync.engine.records import CrmSchema, SideRecord
from crmsync.errors import PermanentError
from crmsync.model import Kind
from crmsync.ports import (
    ChangePage,
    CrmConnector,
    CrmUser,
    HistoryEntry,
    MailLimits,
    Person,
    WriteResult,
)

PREFIX = "call:"

_CALL_STATUS_AS_TASK = {"completed": "completed", "declined": "cancelled"}
_TASK_STATUS_AS_CALL = {"completed": "completed", "cancelled": "declined"}

if TYPE_CHECKING:
    from crmsync.crm.cards import Document, PersonCard


def is_call(fields: Mapping[str, Any] | None) -> bool:
    return fields is not None and fields.get("type") == "call"


def call_as_todo(call: Mapping[str, Any]) -> dict[str, Any]:
    """The to-do a call reads as, in canonical to-do fields."""
    return {
        "type": "call",  # the permission matrix's "call" row governs it (SET-3)
        "subject": call["subject"],
        "start": None,
        "due": _day(call["start"], call.get("timezone") or "UTC"),
        "status": _CALL_STATUS_AS_TASK.get(call["status"], "open"),
        "priority": None,
        "notes": call["notes"],
        "recurrence": call["recurrence"],
        "private": call.get("private", False),
        "regarding": call.get("regarding"),
    }


def todo_patch_to_call(patch: Mapping[str, Any], call: Mapping[str, Any]) -> dict[str, Any]:
    """The call fields that carry a to-do patch; fields a call cannot hold are ignored."""
    out: dict[str, Any] = {}
    for name in ("subject", "notes", "recurrence"):
        if name in patch:
            out[name] = patch[name]
    if "status" in patch:
        status = _TASK_STATUS_AS_CALL.get(patch["status"])
        if status is None:  # open again
            status = (
                "confirmed" if call["status"] in _TASK_STATUS_AS_CALL.values() else call["status"]
            )
        out["status"] = status
    due = patch.get("due")
    if isinstance(due, date) and not isinstance(due, datetime):
        out.update(_moved_to(call, due))
    return out


def _day(start: date | datetime, tz: str) -> date:
    if isinstance(start, datetime):
        return start.astimezone(ZoneInfo(tz)).date()
    return start


def _moved_to(call: Mapping[str, Any], day: date) -> dict[str, Any]:
    start, end = call["start"], call["end"]
    if not isinstance(start, datetime):
        return {"start": day, "end": day + (end - start)}
    tz = ZoneInfo(call.get("timezone") or "UTC")
    local = start.astimezone(tz)
    moved = datetime.combine(day, local.timetz()).replace(tzinfo=tz)
    return {"start": moved, "end": moved + (end - start)}


class CallsAsTodos:
    """A CrmConnector whose to-dos include the user's calls and whose activities do not.

    The to-do change feed merges two CRM feeds, to-dos and activities, under one cursor
    that keeps both positions; a cursor from before the setting was on starts the call
    feed from the beginning, so existing calls become tasks.
    """

    def __init__(self, crm: CrmConnector) -> None:
        self.crm = crm

    def schema(self) -> CrmSchema:
        return self.crm.schema()

    def users(self) -> dict[str, str]:
        return self.crm.users()

    def directory(self) -> list[CrmUser]:
        return self.crm.directory()

    # -- e-mail recording: the CRM's own ----------------------------------------------
    def mail_limits(self) -> MailLimits:
        return self.crm.mail_limits()

    def people(self, address: str) -> list[Person]:
        return self.crm.people(address)

    def search_people(self, text: str, limit: int) -> list[Person]:
        return self.crm.search_people(text, limit)

    def person_card(self, person: Person, recent: int = 5) -> PersonCard:
        return self.crm.person_card(person, recent)

    def documents(self, text: str, limit: int) -> list[Document]:
        return self.crm.documents(text, limit)

    def document(self, document_id: str) -> tuple[str, str, bytes]:
        return self.crm.document(document_id)

    def record_history(self, entry: HistoryEntry, key: str) -> tuple[str, bool]:
        return self.crm.record_history(entry, key)

    # -- reading ----------------------------------------------------------------------
    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        if kind == "activity":
            page = self.crm.changes(kind, cursor)
            return replace(page, records=[_without_call(r) for r in page.records])
        if kind != "todo":
            return self.crm.changes(kind, cursor)
        todo_cursor, call_cursor = _split(cursor)
        todos = self.crm.changes("todo", todo_cursor)
        calls = self.crm.changes("activity", call_cursor)
        records = [*todos.records, *(_as_todo(r) for r in calls.records)]
        joined = json.dumps({"todo": todos.cursor, "call": calls.cursor})
        return ChangePage(records, joined, todos.more or calls.more)

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        if kind == "todo" and record_id.startswith(PREFIX):
            return _as_todo(self.crm.get("activity", record_id[len(PREFIX) :]))
        record = self.crm.get(kind, record_id)
        return _without_call(record) if kind == "activity" else record

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        return self.crm.find_by_email(kind, emails)

    # -- writing ----------------------------------------------------------------------
    def create(self, write: Write) -> WriteResult:
        return self.crm.create(write)  # a task made on the provider becomes a CRM to-do

    def update(self, write: Write) -> WriteResult:
        call_id = _call_id(write)
        if call_id is None:
            return self.crm.update(write)
        current = self.crm.get("activity", call_id)
        if not is_call(current.fields):
            raise PermanentError("the call this task stood for is no longer a call")
        assert current.fields is not None and write.fields is not None
        fields = todo_patch_to_call(write.fields, current.fields)
        result = self.crm.update(
            replace(
                write,
                kind="activity",
                target=call_id,
                fields=fields,
                prior={n: current.fields.get(n) for n in fields},
            )
        )
        return WriteResult(PREFIX + result.id, result.version)

    def delete(self, write: Write) -> None:
        call_id = _call_id(write)
        if call_id is None:
            self.crm.delete(write)
        else:
            self.crm.delete(replace(write, kind="activity", target=call_id))

    def set_scope(self, write: Write) -> WriteResult:
        return self.crm.set_scope(write)

    def can_create_many(self, kind: Kind) -> bool:
        return self.crm.can_create_many(kind)

    def lists_everything(self, kind: Kind) -> bool:
        return self.crm.lists_everything(kind)

    def create_many(self, writes: Sequence[Write]) -> Sequence[WriteResult | Exception]:
        return self.crm.create_many(writes)


def _call_id(write: Write) -> str | None:
    if write.kind == "todo" and write.target and write.target.startswith(PREFIX):
        return write.target[len(PREFIX) :]
    return None


def _as_todo(record: SideRecord) -> SideRecord:
    """An activity read on the CRM as a record of the to-do sync: a call as its to-do,
    anything else as gone from the to-do scope."""
    fields = record.fields
    return replace(
        record,
        id=PREFIX + record.id,
        fields=call_as_todo(fields) if fields is not None and is_call(fields) else None,
        in_scope=record.in_scope and is_call(fields),
    )


def _without_call(record: SideRecord) -> SideRecord:
    """A call is out of the calendar sync's scope while calls sync as tasks."""
    return replace(record, in_scope=False) if is_call(record.fields) else record


def _split(cursor: str | None) -> tuple[str | None, str | None]:
    """(to-do cursor, call cursor) from a joined cursor, or from a plain to-do cursor
    saved before calls synced as tasks."""
    if cursor is None:
        return None, None
    try:
        parts = json.loads(cursor)
    except ValueError:
        return cursor, None
    if not isinstance(parts, dict):
        return cursor, None
    return parts.get("todo"), parts.get("call")
