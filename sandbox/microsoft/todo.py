"""Microsoft To Do in the Graph sandbox: task lists, tasks, and per-list task delta.

    GET/POST             me/todo/lists
    GET                  me/todo/lists/{listId}
    GET/POST             me/todo/lists/{listId}/tasks
    GET/PATCH/DELETE     me/todo/lists/{listId}/tasks/{id}
    GET                  me/todo/lists/{listId}/tasks/delta

Each user has a default list "Tasks" with `wellknownListName` "defaultList". Graph's
v1.0 todoTask has no singleValueExtendedProperties (its metadata lists open
`extensions` and `linkedResources` instead), so a task carrying them is refused with
400, as Graph refuses any property its type does not declare. `linkedResources`
(applicationName, displayName, externalId, webUrl; Graph gives each an id) may be
made with the task in its create, as Graph documents; they are a navigation property,
shown only with `$expand=linkedResources` (on a read, a listing and a delta round).
Tasks have no changeKey in Graph; `@odata.etag` changes on every write and a stale
`If-Match` gets 412.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

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
    Change,
    check_if_match,
    delta_page,
    etag,
    link,
    new_change_key,
    new_id,
    page_size,
    refuse_off_schema,
)

SCOPES = frozenset({"Tasks.ReadWrite", "Tasks.Read"})
WRITE_SCOPES = frozenset({"Tasks.ReadWrite"})
WRITABLE = frozenset(
    {
        "title",
        "body",
        "status",
        "importance",
        "dueDateTime",
        "startDateTime",
        "completedDateTime",
        "isReminderOn",
        "reminderDateTime",
        "categories",
        "recurrence",
    }
)
LINKED = "linkedResources"
LINKED_PROPERTIES = frozenset({"applicationName", "displayName", "externalId", "webUrl"})
STATUSES = {"notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"}
IMPORTANCES = {"low", "normal", "high"}
DATE_TIMES = ("dueDateTime", "startDateTime", "completedDateTime", "reminderDateTime")
_NOT_FOUND = "The requested resource was not found."


@dataclass
class Task:
    id: str
    list_id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime
    body_modified: datetime
    change_key: str
    seq: int
    deleted: bool = False
    linked: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TaskList:
    id: str
    display_name: str
    wellknown: str
    change_key: str


@dataclass
class TodoState:
    default: TaskList
    lists: dict[str, TaskList] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    seq: int = 0


def state_of(user: User) -> TodoState:
    state = user.data.get("todo")
    if state is None:
        default = TaskList(new_id(user), "Tasks", "defaultList", new_change_key())
        state = TodoState(default, {default.id: default})
        user.data["todo"] = state
    assert isinstance(state, TodoState)
    return state


def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    lists = "v1.0/me/todo/lists"
    one = lists + "/{listId}"
    tasks = one + "/tasks"
    item = tasks + "/{taskId}"

    def get_list(request: Request, user: User, listId: str) -> Response:
        return json_response(_list_json(_task_list(state_of(user), listId)))

    def get_task(request: Request, user: User, listId: str, taskId: str) -> Response:
        state = state_of(user)
        task = _task(state, _task_list(state, listId), taskId)
        return json_response(_json(task, _expanded(request)))

    return [
        route("GET", lists, lambda r, u: _lists(sandbox, u), SCOPES, "Collection(todoTaskList)"),
        route(
            "POST", lists, lambda r, u: _create_list(sandbox, r, u), WRITE_SCOPES, "todoTaskList"
        ),
        route("GET", one, get_list, SCOPES, "todoTaskList"),
        route(
            "GET",
            tasks + "/delta",
            lambda r, u, listId: _delta(sandbox, r, u, listId),
            SCOPES,
            "Collection(todoTask)",
        ),
        route(
            "GET",
            tasks,
            lambda r, u, listId: _list(sandbox, r, u, listId),
            SCOPES,
            "Collection(todoTask)",
        ),
        route(
            "POST",
            tasks,
            lambda r, u, listId: _create(sandbox, r, u, listId),
            WRITE_SCOPES,
            "todoTask",
        ),
        route("GET", item, get_task, SCOPES, "todoTask"),
        route(
            "PATCH",
            item,
            lambda r, u, listId, taskId: _patch(sandbox, r, u, listId, taskId),
            WRITE_SCOPES,
            "todoTask",
        ),
        route(
            "DELETE",
            item,
            lambda r, u, listId, taskId: _delete(sandbox, r, u, listId, taskId),
            WRITE_SCOPES,
            NO_CONTENT,
        ),
    ]


def _task_list(state: TodoState, list_id: str) -> TaskList:
    found = state.lists.get(list_id)
    if found is None:
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def _task(state: TodoState, task_list: TaskList, task_id: str) -> Task:
    found = state.tasks.get(task_id)
    if found is None or found.deleted or found.list_id != task_list.id:
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def _list_json(task_list: TaskList) -> dict[str, Any]:
    return {
        "@odata.etag": etag(task_list.change_key),
        "id": task_list.id,
        "displayName": task_list.display_name,
        "isOwner": True,
        "isShared": False,
        "wellknownListName": task_list.wellknown,
    }


def _lists(sandbox: MicrosoftSandbox, user: User) -> Response:
    state = state_of(user)
    return json_response(
        {
            "@odata.context": f"{sandbox.base_url}/v1.0/$metadata#users('{user.oid}')/todo/lists",
            "value": [_list_json(x) for x in state.lists.values()],
        }
    )


def _create_list(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    name = read_json(request).get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "invalidRequest", "displayName is required.")
    state = state_of(user)
    task_list = TaskList(new_id(user), name, "none", new_change_key())
    state.lists[task_list.id] = task_list
    return json_response(_list_json(task_list), 201)


def _checked(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or name == "id":
            continue
        if name not in WRITABLE:
            raise GraphError(
                400,
                "invalidRequest",
                f"The property '{name}' does not exist on type 'microsoft.graph.todoTask'.",
            )
        if name == "status" and value not in STATUSES:
            raise GraphError(400, "invalidRequest", f"Invalid value '{value}' for 'status'.")
        if name == "importance" and value not in IMPORTANCES:
            raise GraphError(400, "invalidRequest", f"Invalid value '{value}' for 'importance'.")
        bad_time = not isinstance(value, dict) or not isinstance(value.get("dateTime"), str)
        if name in DATE_TIMES and value is not None and bad_time:
            raise GraphError(400, "invalidRequest", f"'{name}' must be a dateTimeTimeZone.")
        if name == "categories" and not isinstance(value, list):
            raise GraphError(400, "invalidRequest", "'categories' must be a collection.")
        fields[name] = copy.deepcopy(value)
    refuse_off_schema(fields, "todoTask", "invalidRequest")
    return fields


def _linked(user: User, value: Any) -> list[dict[str, Any]]:
    """linkedResources given in a create, each with the id Graph assigns it."""
    if not isinstance(value, list):
        raise GraphError(400, "invalidRequest", "'linkedResources' must be a collection.")
    made = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("applicationName"), str):
            raise GraphError(400, "invalidRequest", "A linkedResource needs an applicationName.")
        unknown = set(item) - LINKED_PROPERTIES - {"@odata.type"}
        if unknown:
            name = sorted(unknown)[0]
            raise GraphError(
                400,
                "invalidRequest",
                f"The property '{name}' does not exist on type 'microsoft.graph.linkedResource'.",
            )
        kept = {k: v for k, v in item.items() if k in LINKED_PROPERTIES}
        refuse_off_schema(kept, "linkedResource", "invalidRequest")
        made.append({"id": new_id(user), **kept})
    return made


def _expanded(request: Request) -> bool:
    return LINKED in {part.strip() for part in request.args.get("$expand", "").split(",")}


def _touch(sandbox: MicrosoftSandbox, state: TodoState, task: Task, body: bool) -> None:
    state.seq += 1
    task.seq = state.seq
    task.change_key = new_change_key()
    task.modified = sandbox.clock()
    if body:
        task.body_modified = task.modified


def _notify(sandbox: MicrosoftSandbox, user: User, change: str, task: Task) -> None:
    sandbox.publish(user, "tasks", change, task.id, etag(task.change_key), task.list_id)


def _create(sandbox: MicrosoftSandbox, request: Request, user: User, list_id: str) -> Response:
    state = state_of(user)
    task_list = _task_list(state, list_id)
    body = read_json(request)
    linked = _linked(user, body.pop(LINKED)) if LINKED in body else []
    fields = _checked(body)
    if not isinstance(fields.get("title"), str):
        raise GraphError(400, "invalidRequest", "title is required.")
    now = sandbox.clock()
    task = Task(new_id(user), task_list.id, fields, now, now, now, "", 0, linked=linked)
    _completion(sandbox, task)
    _touch(sandbox, state, task, body=True)
    state.tasks[task.id] = task
    _notify(sandbox, user, "created", task)
    return json_response(_json(task, bool(linked)), 201)


def _completion(sandbox: MicrosoftSandbox, task: Task) -> None:
    """Completing a task stamps completedDateTime; reopening it clears the stamp."""
    if task.fields.get("status") == "completed":
        if not task.fields.get("completedDateTime"):
            moment = sandbox.clock().strftime("%Y-%m-%dT%H:%M:%S.0000000")
            task.fields["completedDateTime"] = {"dateTime": moment, "timeZone": "UTC"}
    else:
        task.fields.pop("completedDateTime", None)


def _patch(
    sandbox: MicrosoftSandbox, request: Request, user: User, list_id: str, task_id: str
) -> Response:
    state = state_of(user)
    task = _task(state, _task_list(state, list_id), task_id)
    check_if_match(request, task.change_key)
    fields = _checked(read_json(request))
    task.fields.update(fields)
    _completion(sandbox, task)
    _touch(sandbox, state, task, body="body" in fields)
    _notify(sandbox, user, "updated", task)
    return json_response(_json(task))


def _delete(
    sandbox: MicrosoftSandbox, request: Request, user: User, list_id: str, task_id: str
) -> Response:
    state = state_of(user)
    task = _task(state, _task_list(state, list_id), task_id)
    check_if_match(request, task.change_key)
    task.deleted = True
    _touch(sandbox, state, task, body=False)
    _notify(sandbox, user, "deleted", task)
    return Response(status=204)


def _json(task: Task, expand: bool = False) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "@odata.etag": etag(task.change_key),
        "id": task.id,
        "importance": "normal",
        "isReminderOn": False,
        "status": "notStarted",
        "title": "",
        "createdDateTime": graph_time(task.created),
        "lastModifiedDateTime": graph_time(task.modified),
        "bodyLastModifiedDateTime": graph_time(task.body_modified),
        "hasAttachments": False,
        "categories": [],
        "body": {"content": "", "contentType": "text"},
    }
    shown.update(copy.deepcopy(task.fields))
    if expand:
        shown[LINKED] = copy.deepcopy(task.linked)
    return shown


def _list(sandbox: MicrosoftSandbox, request: Request, user: User, list_id: str) -> Response:
    state = state_of(user)
    task_list = _task_list(state, list_id)
    live = [t for t in state.tasks.values() if t.list_id == task_list.id and not t.deleted]
    live.sort(key=lambda t: t.created)
    size = page_size(request)
    try:
        skip = int(request.args.get("$skip", "0"))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $skip value.") from exc
    body: dict[str, Any] = {
        "@odata.context": f"{sandbox.base_url}/v1.0/$metadata#users('{user.oid}')/todo/lists"
        f"('{task_list.id}')/tasks",
        "value": [_json(t, _expanded(request)) for t in live[skip : skip + size]],
    }
    if skip + size < len(live):
        params = {k: v for k, v in request.args.items() if k != "$skip"}
        path = f"me/todo/lists/{list_id}/tasks"
        body["@odata.nextLink"] = link(sandbox, path, {**params, "$skip": str(skip + size)})
    return json_response(body)


def _delta(sandbox: MicrosoftSandbox, request: Request, user: User, list_id: str) -> Response:
    state = state_of(user)
    task_list = _task_list(state, list_id)

    def changes() -> list[Change]:
        return [
            Change(t.id, t.seq, t.deleted)
            for t in state.tasks.values()
            if t.list_id == task_list.id
        ]

    def render(task_id: str) -> dict[str, Any] | None:
        task = state.tasks[task_id]
        if task.deleted:
            return None
        return {"@odata.type": "#microsoft.graph.todoTask", **_json(task, _expanded(request))}

    return delta_page(
        sandbox,
        request,
        user,
        path=f"me/todo/lists/{list_id}/tasks/delta",
        scope=f"todo:{task_list.id}",
        changes=changes,
        current_seq=state.seq,
        render=render,
    )
