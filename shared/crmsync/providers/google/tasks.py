"""CRM to-dos as Google Tasks in one task list: the only place Tasks field names appear.

Mapping (canonical ← → task):
    subject ↔ title            notes ↔ notes
    due (a date) ↔ due, written as that date at midnight UTC and read back as the
        date written there (Google keeps the date alone, so it never shifts a day)
    status open ↔ needsAction, completed ↔ completed (the status table has already
        mapped the CRM's statuses to these two; "in_progress" is written as
        needsAction and "cancelled" as completed); Google stamps `completed` itself
        and reopening clears it
A task Google's own apps hid after it was ticked off is still a task: it reads as
completed, never as deleted. A deleted task (`deleted: true`) reads as gone.

Change feed: the Tasks API has no sync token and no push, so `changes` polls the list
with `updatedMin`. The cursor is crmsync's own: the list it belongs to and the highest
`updated` seen, less a safety margin, because a task's `updated` stamp and its
appearance in listings are not atomic. Tasks inside the margin are reported again;
the planner recognises them by version and value. A cursor of another list (the user
chose another list, SET-1) is refused as expired, so the new list is listed whole. A
task moved to another list in Google's apps leaves no deleted remains in this one:
the feed does not report it; a read of it finds it gone.

Creates are made once per idempotency key (SYN-4) without any marker on the task:
Tasks have no client-chosen ids and no extended properties, and anything added to
the title or notes would show in the user's list. Before every insert attempt, the
tasks of the list updated within the last `RETRY_WINDOW` are searched for one with
the same title, notes and due date that no link claims (the `claimed` predicate the
connection gives) and that this adapter did not make for another key; such a task,
re-read to be sure it is still there and still the same, is the one an earlier
attempt made (a run killed after the insert, or an answer lost on the way back) and
is returned instead of making a second one. One listing serves the creates of up to
`LOOKUP_REUSE`; an insert left without an answer drops it, so the next attempt
lists again.
Residual risk, precisely:
  * a user task identical in title, notes and due date, made or edited in Google
    within the window and not yet linked, is adopted by a create instead of a new
    task being made beside it (the same pairing the matcher makes by subject and
    date, TSK-2); the CRM to-do and that task are then linked;
  * two identical to-dos whose creates both went unanswered may each end up with the
    task the other's attempt made: harmless, as the tasks are the same;
  * an attempt retried more than `RETRY_WINDOW` after the lost one, or after the user
    changed the task's title, notes or due date or deleted it, makes a new task;
  * SideRecord.ref is always None: nothing on a task says crmsync made it, so a
    reconnect re-links tasks by subject and due date (TSK-2), not by a mark (SYN-9).

Concurrency: Tasks' patch and delete take no If-Match precondition. A write with a
version raises Conflict when the task's etag differs from it, and NotFound when the
task was deleted, from what the list says changed since the cycle read its feed: the
tasks updated since then are listed before the first write, and again after
`RECHECK_WRITES` writes or `RECHECK` (one request for a burst of writes, not a read
before each). A task absent from those listings is as the feed (or its link) left it.
Each listing after the first starts where Google's own stamps say the one before was
made, less `RELIST_MARGIN`, so it holds the tasks of the last seconds, not minutes.
A user edit landing between a listing and the write is overwritten: a window of at
most `RECHECK_WRITES` writes or `RECHECK`, where a read before each write left one
round trip; the price of one request per update instead of two. A write with a
version and no feed read in this process reads the task first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import Conflict, CursorExpired, NotFound
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.google.client import GoogleClient

# The canonical to-do fields a Google task holds (settings: field_map["todo"]).
HELD = ("subject", "due", "status", "notes")
PAGE_SIZE = 100  # the most tasks.list returns per page
SAFETY_MARGIN = timedelta(minutes=2)
RETRY_WINDOW = timedelta(hours=1)
LOOKUP_REUSE = timedelta(minutes=2)
# A listing of what changed since the feed vouches for the versions for this many
# writes, or this long; the next starts this long before Google's newest stamp seen.
RECHECK_WRITES = 25
RECHECK = timedelta(seconds=5)
RELIST_MARGIN = timedelta(seconds=10)
_DONE = ("completed", "cancelled")


# -- mapping ---------------------------------------------------------------------------------
def task_lists(client: GoogleClient) -> list[dict[str, str]]:
    """The account's task lists, for the `task_list` setting (SET-1): each {id: the
    setting's value ("default" for the user's default list), label}."""
    lists = client.service("tasks", "v1").tasklists()
    default = client.execute(lists.get(tasklist="@default"), "tasks tasklists.get")
    return [
        {
            "id": "default" if found["id"] == default.get("id") else str(found["id"]),
            "label": str(found.get("title") or found["id"]),
        }
        for found in client.listed(lists.list, "tasks tasklists.list", maxResults=100)
    ]


def to_task(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Task fields for the canonical fields given (all of them, or a patch); None
    clears a field, as in a Google patch."""
    task: dict[str, Any] = {}
    if "subject" in fields:
        task["title"] = fields["subject"] or ""
    if "notes" in fields:
        task["notes"] = fields["notes"] or None
    if "due" in fields:
        due = fields["due"]
        task["due"] = None if due is None else f"{due.isoformat()}T00:00:00.000Z"
    if "status" in fields:
        done = fields["status"] in _DONE
        task["status"] = "completed" if done else "needsAction"
        if not done:
            task["completed"] = None  # reopening takes the completion stamp away
    return task


def from_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields of a task, raw (to be normalised, so bad data surfaces as an
    invalid record)."""
    due = task.get("due")
    return {
        "subject": task.get("title", ""),
        "notes": task.get("notes", ""),
        "due": str(due)[:10] if due else None,  # the date as written, never converted
        "status": "completed" if task.get("status") == "completed" else "open",
    }


def _same_content(task: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    """Whether a task holds exactly what an insert of `body` would write."""
    return (
        task.get("title", "") == body.get("title", "")
        and (task.get("notes") or "") == (body.get("notes") or "")
        and str(task.get("due") or "")[:10] == str(body.get("due") or "")[:10]
    )


# -- the cursor ------------------------------------------------------------------------------
def _cursor(tasklist: str, after: datetime | None) -> str:
    return json.dumps({"list": tasklist, "after": None if after is None else _rfc3339(after)})


def _read_cursor(tasklist: str, cursor: str) -> datetime | None:
    """The `updatedMin` a cursor stands for; CursorExpired when it cannot be read or
    belongs to another list (a whole listing of this list is then needed)."""
    try:
        held = json.loads(cursor)
        after = held["after"]
        moment = None if after is None else model.parse_instant(after)
        readable = held["list"] == tasklist and (after is None or moment is not None)
    except (ValueError, TypeError, KeyError) as exc:
        raise CursorExpired("the task list cursor is unreadable") from exc
    if not readable:
        raise CursorExpired("the task list cursor belongs to another list or is unreadable")
    return moment


# -- the resource ----------------------------------------------------------------------------
class GoogleTasks:
    """The to-do side of one Google account: one task list (SET-1, default @default).

    `claimed` says whether a task id is held by one of the connection's stored links,
    so a create never takes the task of another to-do; `clock` is the source of time
    for the create look-up window."""

    def __init__(
        self,
        client: GoogleClient,
        tasklist: str = "@default",
        *,
        claimed: Callable[[str], bool],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.tasklist = tasklist
        self.claimed = claimed
        self.clock = clock
        self.held = HELD
        self._made: dict[str, str] = {}  # idempotency key → task made in this process
        self.recent: Recent | None = None  # the create look-up's listing, while usable
        self.checked: Checked | None = None  # what changed since the feed was read

    @property
    def tasks(self) -> Any:
        return self.client.service("tasks", "v1").tasks()

    def record(self, task: Mapping[str, Any]) -> SideRecord:
        task_id = str(task["id"])
        version = str(task.get("etag", ""))
        modified = model.parse_instant(task.get("updated"))
        if task.get("deleted"):
            return SideRecord(task_id, version, None, modified=modified)
        try:
            canonical = model.normalize("todo", from_task(task))
        except model.InvalidRecord as exc:
            return SideRecord(task_id, version, {}, modified=modified, error=str(exc))
        fields = {name: canonical[name] for name in self.held}
        return SideRecord(task_id, version, fields, modified=modified)

    def _list_tasks(
        self, updated_min: datetime | None, *, deleted: bool
    ) -> Iterator[dict[str, Any]]:
        """Every task of the list (updated since `updated_min`), all pages; completed and
        hidden ones always, deleted ones when asked."""
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "tasklist": self.tasklist,
                "maxResults": PAGE_SIZE,
                "showCompleted": True,
                "showHidden": True,
                "showDeleted": deleted,
            }
            if updated_min is not None:
                params["updatedMin"] = _rfc3339(updated_min)
            if page_token is not None:
                params["pageToken"] = page_token
            answer = self.client.execute(self.tasks.list(**params), "tasks tasks.list")
            yield from answer.get("items", [])
            page_token = answer.get("nextPageToken")
            if page_token is None:
                return

    def changes(self, cursor: str | None) -> ChangePage:
        """Every task updated since the cursor (all of them without one), deletions
        included. The new cursor trails the later of the newest `updated` seen and the
        time the listing started by the safety margin: a task updated while the listing
        ran is listed again next time, and a quiet list is not listed again and again."""
        started = self.clock()
        after = None if cursor is None else _read_cursor(self.tasklist, cursor)
        tasks = list(self._list_tasks(after, deleted=True))
        stamps = [
            moment for t in tasks if (moment := model.parse_instant(t.get("updated"))) is not None
        ]
        bound = max([*stamps, started]) - SAFETY_MARGIN
        if after is not None:
            bound = max(bound, after)
        seen = {str(t["id"]): (str(t.get("etag")), bool(t.get("deleted"))) for t in tasks}
        newest = max(stamps, default=None)
        self.checked = Checked(max([*stamps, started]) - SAFETY_MARGIN, seen, newest)
        return ChangePage([self.record(t) for t in tasks], _cursor(self.tasklist, bound))

    def _task(self, task_id: str) -> dict[str, Any]:
        request = self.tasks.get(tasklist=self.tasklist, task=task_id)
        answer: dict[str, Any] = self.client.execute(request, "tasks tasks.get")
        return answer

    def _live(self, task_id: str, version: str | None) -> dict[str, Any]:
        """The task as it is now; NotFound when gone, Conflict when not at `version`."""
        task = self._task(task_id)
        if task.get("deleted"):
            raise NotFound(f"task {task_id} is deleted")
        if version is not None and str(task.get("etag")) != version:
            raise Conflict(f"task {task_id} changed since version {version}")
        return task

    def _check(self, task_id: str, version: str | None) -> None:
        """Raise NotFound when the task is deleted and Conflict when it is not at
        `version`: from the changes listed since the feed was read (listed again after
        RECHECK_WRITES writes or RECHECK), or from a read of the task when this process
        read no feed."""
        if version is None:
            return
        checked = self.checked
        if checked is None:
            self._live(task_id, version)
            return
        now = self.clock()
        if checked.at is None or checked.writes >= RECHECK_WRITES or now - checked.at > RECHECK:
            for task in self._list_tasks(checked.since, deleted=True):
                checked.saw(task)
            if checked.newest is not None:  # nothing made after this listing is older
                checked.since = max(checked.since, checked.newest - RELIST_MARGIN)
            checked.at, checked.writes = now, 0
        etag, deleted = checked.tasks.get(task_id, (version, False))
        if deleted:
            raise NotFound(f"task {task_id} is deleted")
        if etag != version:
            raise Conflict(f"task {task_id} changed since version {version}")

    def _wrote(self, task_id: str, answer: Mapping[str, Any] | None) -> None:
        """A write of this process (answer None: a delete): the listing of changes knows
        the task's new etag, so a later write from that version is not a conflict."""
        if self.checked is not None:
            self.checked.writes += 1
            self.checked.saw({"id": task_id, "deleted": True} if answer is None else answer)

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._task(record_id))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def create(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.key is not None
        known = self._made.get(write.key)
        if known is not None:  # made in this process already: the same task again
            return WriteResult(known, self.get(known).version)
        body = {k: v for k, v in to_task(write.fields).items() if v is not None}
        answer = self.client.execute(_InsertOnce(self, body), "tasks tasks.insert")
        self._made[write.key] = str(answer["id"])
        return WriteResult(str(answer["id"]), str(answer["etag"]))

    def earlier(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The task an earlier attempt of this insert made, if there is one: recent,
        identical, and neither linked nor made here for another key (re-read, so a
        task deleted or edited since the listing is never taken)."""
        mine = set(self._made.values())
        for task in self._recent_tasks():
            task_id = str(task["id"])
            if task_id in mine or self.claimed(task_id) or not _same_content(task, body):
                continue
            try:
                current = self._task(task_id)
            except NotFound:  # moved to another list since
                continue
            if not current.get("deleted") and _same_content(current, body):
                return current
        return None

    def _recent_tasks(self) -> tuple[dict[str, Any], ...]:
        """Tasks updated within the retry window. One listing serves a burst of creates:
        the tasks this process makes meanwhile are known by id, and an insert left
        without an answer drops the listing (see _InsertOnce)."""
        now = self.clock()
        if self.recent is None or now - self.recent.at > LOOKUP_REUSE:
            listed = self._list_tasks(now - RETRY_WINDOW, deleted=False)
            self.recent = Recent(now, tuple(listed))
        return self.recent.tasks

    def update(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.target is not None
        body = to_task(write.fields)
        if not body:  # nothing a task holds changes: no write
            current = self._live(write.target, write.version or None)
            return WriteResult(write.target, str(current["etag"]))
        self._check(write.target, write.version or None)
        request = self.tasks.patch(tasklist=self.tasklist, task=write.target, body=body)
        answer = self.client.execute(request, "tasks tasks.patch")
        if answer.get("deleted"):  # the write landed on a deleted task's remains
            raise NotFound(f"task {write.target} is deleted")
        self._wrote(write.target, answer)
        return WriteResult(str(answer["id"]), str(answer["etag"]))

    def delete(self, write: Write) -> None:
        """Delete the task. Google keeps a deleted task's remains and deletes them again
        without a word, so a task already deleted is told apart by the changes listed
        since the feed was read, or by reading it when no version is known."""
        assert write.target is not None
        if write.version:
            self._check(write.target, write.version)
        else:
            self._live(write.target, None)
        request = self.tasks.delete(tasklist=self.tasklist, task=write.target)
        self.client.execute(request, "tasks tasks.delete")
        self._wrote(write.target, None)


@dataclass
class Checked:
    """What the list says changed since the feed was read: each task listed or written
    (id → etag, deleted); where the next listing starts (`since`); Google's newest
    `updated` stamp seen; when the last listing was made (None: not yet) and the writes
    made since."""

    since: datetime
    tasks: dict[str, tuple[str, bool]]
    newest: datetime | None
    at: datetime | None = None
    writes: int = 0

    def saw(self, task: Mapping[str, Any]) -> None:
        self.tasks[str(task["id"])] = (str(task.get("etag")), bool(task.get("deleted")))
        stamp = model.parse_instant(task.get("updated"))
        if stamp is not None and (self.newest is None or stamp > self.newest):
            self.newest = stamp


@dataclass(frozen=True)
class Recent:
    """Tasks listed for the create look-up, and when."""

    at: datetime
    tasks: tuple[dict[str, Any], ...]


class _InsertOnce:
    """One tasks.insert attempt that first looks for the task an earlier attempt made.

    GoogleClient.execute sends a request again after a timeout or a server error, and
    Google may have made the task before its answer was lost; looking before every
    attempt turns that resend, like a resumed create, into finding the first task.
    `method` is that of the last request it sent itself: POST once it inserted, GET
    while it only looked (so GoogleClient counts a write only when one was made)."""

    def __init__(self, resource: GoogleTasks, body: Mapping[str, Any]) -> None:
        self.resource = resource
        self.body = dict(body)
        self.method = "GET"

    def execute(self, num_retries: int = 0) -> Any:
        found = self.resource.earlier(self.body)
        if found is not None:
            return found
        resource = self.resource
        listed, resource.recent = resource.recent, None  # no listing holds what this makes
        request = resource.tasks.insert(tasklist=resource.tasklist, body=self.body)
        self.method = str(request.method)
        answer = request.execute(num_retries=num_retries)
        resource.recent = listed  # answered: the new task is known by id from here on
        return answer


def _rfc3339(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
