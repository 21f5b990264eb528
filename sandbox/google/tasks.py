"""Tasks v1 in the Google sandbox: task lists and tasks, polled with `updatedMin`.

Each account's lists live in `account.data["tasks"]` (a `TasksState`); the default list
("My Tasks") answers to `@default`. As in Google: there is no sync token and no push,
so clients poll `tasks.list` with `updatedMin`; deleting a task keeps it, with
`deleted: true`, for `showDeleted`; clearing a list (or completing a task in Google's
own apps) hides completed tasks, shown only with `showHidden`; `due` keeps the date
alone; `parent` and `position` change only through `tasks.move`.

Tests reach what no API shows through `stored_tasks` and `complete_in_google_app`.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.google.core import (
    SCOPE,
    TASKS_SCOPES,
    Account,
    ApiError,
    GoogleSandbox,
    Route,
    json_response,
    read_json,
    rfc3339,
    route,
)

READ_SCOPES = TASKS_SCOPES | {SCOPE + "tasks.readonly"}
DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_TITLE = 1024
MAX_NOTES = 8192
_WRITABLE = frozenset({"title", "notes", "status", "due", "completed", "deleted"})
_READ_ONLY = frozenset(
    {
        "kind",
        "id",
        "etag",
        "selfLink",
        "parent",
        "position",
        "updated",
        "hidden",
        "links",
        "webViewLink",
        "assignmentInfo",
    }
)
_STATUSES = ("needsAction", "completed")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$", re.I)


# -- state ---------------------------------------------------------------------------------------
@dataclass
class TaskList:
    """One list: its tasks by id, and each parent's children in order (None: top level)."""

    id: str
    title: str
    updated: str
    etag: str
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[str | None, list[str]] = field(default_factory=dict)


@dataclass
class Page:
    key: str
    ids: list[str]


@dataclass
class TasksState:
    lists: dict[str, TaskList] = field(default_factory=dict)
    default_id: str = ""
    pages: dict[str, Page] = field(default_factory=dict)
    versions: int = 0


def state_of(sandbox: GoogleSandbox, account: Account) -> TasksState:
    """The account's Tasks data, made with its default list on first use."""
    state = account.data.get("tasks")
    if state is None:
        state = TasksState()
        account.data["tasks"] = state
        state.default_id = _new_list(sandbox, state, "My Tasks").id
    assert isinstance(state, TasksState)
    return state


def _opaque_id(sandbox: GoogleSandbox, kind: str) -> str:
    """An id shaped like Google's: url-safe base64 of an internal number."""
    raw = f"{kind}:{sandbox.next_id()}:{sandbox.ids.randbytes(4).hex()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _etag(state: TasksState) -> str:
    state.versions += 1
    return '"' + base64.urlsafe_b64encode(f"v{state.versions}".encode()).decode() + '"'


def _new_list(sandbox: GoogleSandbox, state: TasksState, title: str) -> TaskList:
    tasklist = TaskList(_opaque_id(sandbox, "list"), title, rfc3339(sandbox.clock()), _etag(state))
    state.lists[tasklist.id] = tasklist
    return tasklist


def _list(state: TasksState, tasklist_id: str) -> TaskList:
    found = state.lists.get(state.default_id if tasklist_id == "@default" else tasklist_id)
    if found is None:
        raise ApiError(404, "notFound", "Task list not found.")
    return found


def _task(tasklist: TaskList, task_id: str) -> dict[str, Any]:
    found = tasklist.tasks.get(task_id)
    if found is None:
        raise ApiError(404, "notFound", "Task not found.")
    return found


# -- helpers for tests ---------------------------------------------------------------------------
def stored_tasks(
    sandbox: GoogleSandbox, email: str, tasklist: str = "@default"
) -> list[dict[str, Any]]:
    """Every task of a list as Google holds it, deleted and hidden ones included."""
    with sandbox.lock:
        found = _list(state_of(sandbox, sandbox.add_account(email)), tasklist)
        return [_shown(sandbox, found, task) for task in _in_order(found)]


def add_tasklist(sandbox: GoogleSandbox, email: str, title: str) -> str:
    """A task list the user made in Google's apps; returns its id."""
    with sandbox.lock:
        return _new_list(sandbox, state_of(sandbox, sandbox.add_account(email)), title).id


def complete_in_google_app(
    sandbox: GoogleSandbox, email: str, task_id: str, tasklist: str = "@default"
) -> None:
    """The user ticks a task off in Google's own apps: completed and, as those apps do,
    hidden (listed only with showHidden)."""
    with sandbox.lock:
        state = state_of(sandbox, sandbox.add_account(email))
        found = _list(state, tasklist)
        task = _task(found, task_id)
        task["status"] = "completed"
        task["completed"] = rfc3339(sandbox.clock())
        task["hidden"] = True
        _touch(sandbox, state, found, task)


# -- tasks ---------------------------------------------------------------------------------------
def _timestamp(value: Any, name: str) -> datetime:
    """An RFC 3339 timestamp (UTC when it carries no offset); 400 for anything else."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ApiError(400, "invalid", f"Invalid value for {name}: {value}")
    moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _due(value: Any) -> str:
    """Google keeps only the date of `due` (the date as written), at midnight UTC."""
    _timestamp(value, "due")
    return str(value)[:10] + "T00:00:00.000Z"


def _accepted(body: dict[str, Any]) -> dict[str, Any]:
    unknown = set(body) - _WRITABLE - _READ_ONLY
    if unknown:
        raise ApiError(400, "invalid", f"Unknown field name: {sorted(unknown)[0]}")
    return {k: v for k, v in body.items() if k in _WRITABLE}


def _apply(sandbox: GoogleSandbox, task: dict[str, Any], fields: dict[str, Any]) -> None:
    """Validate client fields onto a task; completing stamps `completed`, reopening
    clears it."""
    for name, value in fields.items():
        if value is None:
            task.pop(name, None)
        else:
            task[name] = value
    _check_text(task, "title", MAX_TITLE)
    _check_text(task, "notes", MAX_NOTES)
    if task.get("status", "needsAction") not in _STATUSES:
        raise ApiError(400, "invalid", f"Invalid value for status: {task['status']}")
    if "due" in task:
        task["due"] = _due(task["due"])
    if not isinstance(task.get("deleted", False), bool):
        raise ApiError(400, "invalid", "Invalid value for deleted.")
    task.setdefault("status", "needsAction")
    _settle_completion(sandbox, task)


def _check_text(task: dict[str, Any], name: str, limit: int) -> None:
    value = task.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise ApiError(400, "invalid", f"Invalid value for {name}.")


def _settle_completion(sandbox: GoogleSandbox, task: dict[str, Any]) -> None:
    if task["status"] == "completed":
        given = task.get("completed")
        moment = _timestamp(given, "completed") if given else sandbox.clock()
        task["completed"] = rfc3339(moment)
    else:
        task.pop("completed", None)
        task.pop("hidden", None)


def _touch(
    sandbox: GoogleSandbox, state: TasksState, tasklist: TaskList, task: dict[str, Any]
) -> None:
    """A task changed: new etag and `updated` for it and its list."""
    now = rfc3339(sandbox.clock())
    task["etag"], task["updated"] = _etag(state), now
    tasklist.etag, tasklist.updated = _etag(state), now


def _check_place(
    tasklist: TaskList, task_id: str, parent: str | None, previous: str | None
) -> None:
    """400 unless `parent` is a live task of the list (not the task itself) and
    `previous` one of its children."""
    if parent is not None:
        holder = tasklist.tasks.get(parent)
        if holder is None or holder.get("deleted") or holder.get("hidden") or parent == task_id:
            raise ApiError(400, "invalid", "Invalid parent.")
    if previous is not None and (
        previous == task_id or previous not in tasklist.children.get(parent, [])
    ):
        raise ApiError(400, "invalid", "Invalid previous task.")


def _place(tasklist: TaskList, task_id: str, parent: str | None, previous: str | None) -> None:
    """Put a task under `parent` right after `previous` (first without one)."""
    siblings = tasklist.children.setdefault(parent, [])
    siblings.insert(siblings.index(previous) + 1 if previous is not None else 0, task_id)


def _unplace(tasklist: TaskList, task_id: str) -> None:
    for siblings in tasklist.children.values():
        if task_id in siblings:
            siblings.remove(task_id)


def _in_order(tasklist: TaskList, parent: str | None = None) -> list[dict[str, Any]]:
    """Tasks depth first, each parent before its children, siblings by position."""
    found = []
    for task_id in tasklist.children.get(parent, []):
        found.append(tasklist.tasks[task_id])
        found.extend(_in_order(tasklist, task_id))
    return found


def _shown(sandbox: GoogleSandbox, tasklist: TaskList, task: dict[str, Any]) -> dict[str, Any]:
    """A task as the API returns it, with its link and its position among its siblings."""
    shown = copy.deepcopy(task)
    parent = task.get("parent")
    shown["position"] = f"{tasklist.children[parent].index(task['id']):020d}"
    shown["selfLink"] = f"{sandbox.base_url}tasks/v1/lists/{tasklist.id}/tasks/{task['id']}"
    shown["webViewLink"] = f"https://tasks.google.com/task/{task['id']}"
    return shown


def _descendants(tasklist: TaskList, task_id: str) -> list[str]:
    found = []
    for child in tasklist.children.get(task_id, []):
        found.append(child)
        found.extend(_descendants(tasklist, child))
    return found


# -- listing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """The filters of tasks.list."""

    completed: bool
    deleted: bool
    hidden: bool
    bounds: dict[str, tuple[datetime | None, datetime | None]]

    @classmethod
    def of(cls, request: Request) -> Query:
        def moment(name: str) -> datetime | None:
            value = request.args.get(name)
            return None if value is None else _timestamp(value, name)

        bounds = {
            "updated": (moment("updatedMin"), None),
            "completed": (moment("completedMin"), moment("completedMax")),
            "due": (moment("dueMin"), moment("dueMax")),
        }
        return cls(
            _flag(request, "showCompleted", True),
            _flag(request, "showDeleted", False),
            _flag(request, "showHidden", False),
            bounds,
        )

    def matches(self, task: dict[str, Any]) -> bool:
        if task.get("deleted") and not self.deleted:
            return False
        if task.get("hidden") and not self.hidden:
            return False
        if task["status"] == "completed" and not self.completed:
            return False
        return all(self._within(task, name, low, high) for name, (low, high) in self.bounds.items())

    @staticmethod
    def _within(
        task: dict[str, Any], name: str, low: datetime | None, high: datetime | None
    ) -> bool:
        if low is None and high is None:
            return True
        if name not in task:
            return False
        value = _timestamp(task[name], name)
        return (low is None or value >= low) and (high is None or value < high)


def _flag(request: Request, name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ApiError(400, "invalid", f"Invalid value for {name}: {value}")
    return value.lower() == "true"


def _page_size(request: Request, default: int, high: int) -> int:
    value = request.args.get("maxResults")
    try:
        size = default if value is None else int(value)
    except ValueError as exc:
        raise ApiError(400, "invalid", f"Invalid value for maxResults: {value}") from exc
    if size < 1:
        raise ApiError(400, "invalid", f"Invalid value for maxResults: {value}")
    return min(size, high)


def _paged(
    request: Request, state: TasksState, ids: list[str], key: str, size: int
) -> tuple[list[str], str | None]:
    """One page of a listing (the whole list is fixed when it starts) and the token of
    the next page."""
    token = request.args.get("pageToken")
    if token is not None:
        page = state.pages.get(token)
        if page is None or page.key != key:
            raise ApiError(400, "invalid", "Invalid page token.")
        ids = page.ids
    rest = ids[size:]
    if not rest:
        return ids[:size], None
    following = "T" + secrets.token_urlsafe(18)
    state.pages[following] = Page(key, rest)
    return ids[:size], following


def _key(request: Request, tasklist_id: str) -> str:
    params = sorted(
        (k, v) for k, v in request.args.items(multi=True) if k not in ("pageToken", "maxResults")
    )
    return json.dumps([tasklist_id, params])


# -- task handlers -------------------------------------------------------------------------------
def list_tasks(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str
) -> Response:
    state = state_of(sandbox, account)
    found = _list(state, tasklist)
    query = Query.of(request)
    ids = [t["id"] for t in _in_order(found) if query.matches(t)]
    size = _page_size(request, DEFAULT_PAGE, MAX_PAGE)
    shown, following = _paged(request, state, ids, _key(request, found.id), size)
    body: dict[str, Any] = {
        "kind": "tasks#tasks",
        "etag": found.etag,
        "items": [_shown(sandbox, found, found.tasks[i]) for i in shown],
    }
    if following:
        body["nextPageToken"] = following
    return json_response(body)


def get_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str, task: str
) -> Response:
    found = _list(state_of(sandbox, account), tasklist)
    return json_response(_shown(sandbox, found, _task(found, task)))


def insert_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str
) -> Response:
    state = state_of(sandbox, account)
    found = _list(state, tasklist)
    task: dict[str, Any] = {"kind": "tasks#task", "id": _opaque_id(sandbox, "task")}
    _apply(sandbox, task, _accepted(read_json(request)))
    parent, previous = request.args.get("parent"), request.args.get("previous")
    _check_place(found, task["id"], parent, previous)
    _place(found, task["id"], parent, previous)
    if parent is not None:
        task["parent"] = parent
    found.tasks[task["id"]] = task
    _touch(sandbox, state, found, task)
    return json_response(_shown(sandbox, found, task))


def _change_task(
    sandbox: GoogleSandbox,
    request: Request,
    account: Account,
    tasklist: str,
    task: str,
    *,
    patch: bool,
) -> Response:
    state = state_of(sandbox, account)
    found = _list(state, tasklist)
    current = _task(found, task)
    changed = copy.deepcopy(current)
    if not patch:
        for name in _WRITABLE:
            changed.pop(name, None)
    _apply(sandbox, changed, _accepted(read_json(request)))
    found.tasks[task] = changed
    _touch(sandbox, state, found, changed)
    return json_response(_shown(sandbox, found, changed))


def patch_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str, task: str
) -> Response:
    return _change_task(sandbox, request, account, tasklist, task, patch=True)


def update_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str, task: str
) -> Response:
    return _change_task(sandbox, request, account, tasklist, task, patch=False)


def delete_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str, task: str
) -> Response:
    """Mark a task and its subtasks deleted (kept for showDeleted)."""
    state = state_of(sandbox, account)
    found = _list(state, tasklist)
    for task_id in [task, *_descendants(found, task)]:
        target = _task(found, task_id)
        if not target.get("deleted"):
            target["deleted"] = True
            _touch(sandbox, state, found, target)
    return Response(status=204)


def move_task(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str, task: str
) -> Response:
    """Move a task (with its subtasks) under another parent, after another sibling, or to
    another list."""
    state = state_of(sandbox, account)
    source = _list(state, tasklist)
    moved = _task(source, task)
    destination_id = request.args.get("destinationTasklist")
    target = _list(state, destination_id) if destination_id else source
    parent, previous = request.args.get("parent"), request.args.get("previous")
    if parent is not None and parent in _descendants(source, task):
        raise ApiError(400, "invalid", "A task cannot move below its own subtask.")
    _check_place(target, task, parent, previous)
    _unplace(source, task)
    if target is not source:
        _carry(source, target, task)
    _place(target, task, parent, previous)
    moved.pop("parent", None)
    if parent is not None:
        moved["parent"] = parent
    _touch(sandbox, state, target, moved)
    return json_response(_shown(sandbox, target, moved))


def _carry(source: TaskList, target: TaskList, task_id: str) -> None:
    """Hand a task and its subtasks over to another list (their order kept)."""
    for moved in [task_id, *_descendants(source, task_id)]:
        target.tasks[moved] = source.tasks.pop(moved)
        if moved in source.children:
            target.children[moved] = source.children.pop(moved)


def clear_tasks(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str
) -> Response:
    """Hide every completed task of a list, as clearing it in Google's apps does."""
    state = state_of(sandbox, account)
    found = _list(state, tasklist)
    for task in found.tasks.values():
        if task["status"] == "completed" and not task.get("hidden"):
            task["hidden"] = True
            _touch(sandbox, state, found, task)
    return Response(status=204)


# -- task lists ----------------------------------------------------------------------------------
def _list_resource(sandbox: GoogleSandbox, tasklist: TaskList) -> dict[str, Any]:
    return {
        "kind": "tasks#taskList",
        "id": tasklist.id,
        "etag": tasklist.etag,
        "title": tasklist.title,
        "updated": tasklist.updated,
        "selfLink": f"{sandbox.base_url}tasks/v1/users/@me/lists/{tasklist.id}",
    }


def list_tasklists(sandbox: GoogleSandbox, request: Request, account: Account) -> Response:
    state = state_of(sandbox, account)
    ids = list(state.lists)
    size = _page_size(request, 1000, 1000)
    shown, following = _paged(request, state, ids, _key(request, "@lists"), size)
    body: dict[str, Any] = {
        "kind": "tasks#taskLists",
        "etag": f'"{state.versions}"',
        "items": [_list_resource(sandbox, state.lists[i]) for i in shown],
    }
    if following:
        body["nextPageToken"] = following
    return json_response(body)


def get_tasklist(
    sandbox: GoogleSandbox, request: Request, account: Account, tasklist: str
) -> Response:
    return json_response(_list_resource(sandbox, _list(state_of(sandbox, account), tasklist)))


def insert_tasklist(sandbox: GoogleSandbox, request: Request, account: Account) -> Response:
    state = state_of(sandbox, account)
    title = read_json(request).get("title", "")
    if not isinstance(title, str) or len(title) > MAX_TITLE:
        raise ApiError(400, "invalid", "Invalid value for title.")
    return json_response(_list_resource(sandbox, _new_list(sandbox, state, title)))


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: GoogleSandbox) -> list[Route]:
    """Tasks v1 below `tasks/v1/`, as the discovery document lays it out."""

    def bound(handler: Any) -> Any:
        return lambda request, account, **path: handler(sandbox, request, account, **path)

    lists = "tasks/v1/users/@me/lists"
    tasks = "tasks/v1/lists/{tasklist}/tasks"
    task = tasks + "/{task}"
    return [
        route("GET", lists, bound(list_tasklists), READ_SCOPES),
        route("POST", lists, bound(insert_tasklist), TASKS_SCOPES),
        route("GET", lists + "/{tasklist}", bound(get_tasklist), READ_SCOPES),
        route("GET", tasks, bound(list_tasks), READ_SCOPES),
        route("POST", tasks, bound(insert_task), TASKS_SCOPES),
        route("GET", task, bound(get_task), READ_SCOPES),
        route("PATCH", task, bound(patch_task), TASKS_SCOPES),
        route("PUT", task, bound(update_task), TASKS_SCOPES),
        route("DELETE", task, bound(delete_task), TASKS_SCOPES),
        route("POST", task + "/move", bound(move_task), TASKS_SCOPES),
        route("POST", "tasks/v1/lists/{tasklist}/clear", bound(clear_tasks), TASKS_SCOPES),
    ]
