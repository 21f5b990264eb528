"""Microsoft To Do in the Graph sandbox: task lists, tasks, and per-list task delta.

    GET/POST             me/todo/lists
    GET                  me/todo/lists/{listId}
    GET/POST             me/todo/lists/{listId}/tasks
    GET/PATCH/DELETE     me/todo/lists/{listId}/tasks/{id}
    GET                  me/todo/lists/{listId}/tasks/delta
    GET/POST             me/todo/lists/{listId}/tasks/{id}/extensions
    GET/PATCH/DELETE     me/todo/lists/{listId}/tasks/{id}/extensions/{extensionId}

Each user has a default list "Tasks" with `wellknownListName` "defaultList". Graph's
v1.0 todoTask has no singleValueExtendedProperties (its metadata lists open
`extensions` and `linkedResources` instead), so a task carrying them is refused with
400, as Graph refuses any property its type does not declare. `linkedResources`
(applicationName, displayName, externalId, webUrl; Graph gives each an id) may be
made with the task in its create, as Graph documents; they are a navigation property,
shown only with `$expand=linkedResources` (on a read, a listing and a delta round).
Open extensions (openTypeExtension: an `extensionName` and the app's own properties,
its id being that name) may be made with the task in its create, as Graph documents,
or later on the task; they are shown only with `$expand=extensions` or
`$expand=extensions($filter=id eq '...')` (on a read, a listing and a delta round), a
comma joining it to `linkedResources`. A PATCH replaces the extension's properties with
those it gives (Graph documents merging for directory objects only, so a client sends
them all); writing an extension changes its task, which reads as updated.
Tasks have no changeKey in Graph; `@odata.etag` changes on every write and a stale
`If-Match` gets 412.
"""

from __future__ import annotations

import copy
import re
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
EXTENSIONS = "extensions"
OPEN_EXTENSION = "#microsoft.graph.openTypeExtension"
_EXTENSION_FILTER = re.compile(r"^extensions\(\$filter=id eq '((?:[^']|'')+)'\)$")
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
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)  # by casefolded id


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


def add_list(sandbox: MicrosoftSandbox, email: str, name: str, wellknown: str = "none") -> str:
    """A To Do list the user has (To Do's own, such as "flaggedEmails", by `wellknown`);
    returns its id."""
    with sandbox.lock:
        user = sandbox.add_user(email)
        task_list = TaskList(new_id(user), name, wellknown, new_change_key())
        state_of(user).lists[task_list.id] = task_list
        return task_list.id


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
        return json_response(_json(task, request))

    extensions = item + "/extensions"
    one_extension = extensions + "/{extensionId}"

    def task_of(user: User, list_id: str, task_id: str) -> tuple[TodoState, Task]:
        state = state_of(user)
        return state, _task(state, _task_list(state, list_id), task_id)

    def list_extensions(request: Request, user: User, listId: str, taskId: str) -> Response:
        _, task = task_of(user, listId, taskId)
        return json_response({"value": [_extension_json(x) for x in task.extensions.values()]})

    def add_extension(request: Request, user: User, listId: str, taskId: str) -> Response:
        state, task = task_of(user, listId, taskId)
        made = _extension(read_json(request))
        if made["id"].casefold() in task.extensions:
            raise GraphError(409, "NameAlreadyExists", "The extension already exists.")
        task.extensions[made["id"].casefold()] = made
        _changed(sandbox, user, state, task)
        return json_response(_extension_json(made), 201)

    def get_extension(
        request: Request, user: User, listId: str, taskId: str, extensionId: str
    ) -> Response:
        _, task = task_of(user, listId, taskId)
        return json_response(_extension_json(_held_extension(task, extensionId)))

    def patch_extension(
        request: Request, user: User, listId: str, taskId: str, extensionId: str
    ) -> Response:
        state, task = task_of(user, listId, taskId)
        held = _held_extension(task, extensionId)
        given = read_json(request)
        data = {k: v for k, v in given.items() if not k.startswith("@") and k != "id"}
        data.pop("extensionName", None)
        _check_extension_data(data)
        task.extensions[extensionId.casefold()] = {
            "id": held["id"],
            "extensionName": held["extensionName"],
            **copy.deepcopy(data),
        }
        _changed(sandbox, user, state, task)
        return Response(status=204)

    def delete_extension(
        request: Request, user: User, listId: str, taskId: str, extensionId: str
    ) -> Response:
        state, task = task_of(user, listId, taskId)
        _held_extension(task, extensionId)
        del task.extensions[extensionId.casefold()]
        _changed(sandbox, user, state, task)
        return Response(status=204)

    return [
        route("GET", extensions, list_extensions, SCOPES, "Collection(extension)"),
        route("POST", extensions, add_extension, WRITE_SCOPES, "extension"),
        route("GET", one_extension, get_extension, SCOPES, "extension"),
        route("PATCH", one_extension, patch_extension, WRITE_SCOPES, NO_CONTENT),
        route("DELETE", one_extension, delete_extension, WRITE_SCOPES, NO_CONTENT),
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


def _expanded(request: Request | None) -> tuple[bool, str | None]:
    """What a request's `$expand` shows: (linkedResources, the extensions: "" for all,
    an id for one, None for none); 400 for anything else."""
    linked, extensions = False, None
    text = "" if request is None else request.args.get("$expand", "")
    for part in (p.strip() for p in re.split(r",(?![^(]*\))", text) if p.strip()):
        found = _EXTENSION_FILTER.match(part)
        if part == LINKED:
            linked = True
        elif part == EXTENSIONS:
            extensions = ""
        elif found:
            extensions = found.group(1).replace("''", "'")
        else:
            raise GraphError(400, "BadRequest", f"Unsupported $expand: {part}")
    return linked, extensions


def _check_extension_data(data: dict[str, Any]) -> None:
    """An open extension holds primitive values and arrays of them."""
    for name, value in data.items():
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, (dict, list)) for v in items):
            raise GraphError(400, "invalidRequest", f"'{name}' must be a primitive value.")


def _extension(body: Any) -> dict[str, Any]:
    """An open extension as given in a create, with its id (its name)."""
    if not isinstance(body, dict) or body.get("@odata.type") not in (
        OPEN_EXTENSION,
        OPEN_EXTENSION.removeprefix("#"),
    ):
        raise GraphError(400, "invalidRequest", "Only open type extensions are supported.")
    name = body.get("extensionName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "invalidRequest", "extensionName is required.")
    data = {k: v for k, v in body.items() if not k.startswith("@") and k not in ("id",)}
    data.pop("extensionName")
    _check_extension_data(data)
    return {"id": name, "extensionName": name, **copy.deepcopy(data)}


def _held_extension(task: Task, extension_id: str) -> dict[str, Any]:
    found = task.extensions.get(extension_id.casefold())
    if found is None:
        raise GraphError(404, "ErrorItemNotFound", _NOT_FOUND)
    return found


def _extension_json(extension: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": OPEN_EXTENSION, **copy.deepcopy(extension)}


def _changed(sandbox: MicrosoftSandbox, user: User, state: TodoState, task: Task) -> None:
    """A write of one of the task's extensions changes the task."""
    _touch(sandbox, state, task, body=False)
    _notify(sandbox, user, "updated", task)


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
    given = body.pop(EXTENSIONS) if EXTENSIONS in body else []
    if not isinstance(given, list):
        raise GraphError(400, "invalidRequest", "'extensions' must be a collection.")
    made = [_extension(x) for x in given]
    fields = _checked(body)
    if not isinstance(fields.get("title"), str):
        raise GraphError(400, "invalidRequest", "title is required.")
    now = sandbox.clock()
    task = Task(new_id(user), task_list.id, fields, now, now, now, "", 0, linked=linked)
    task.extensions = {x["id"].casefold(): x for x in made}
    _completion(sandbox, task)
    _touch(sandbox, state, task, body=True)
    state.tasks[task.id] = task
    _notify(sandbox, user, "created", task)
    shown = _json(task)
    if linked:
        shown[LINKED] = copy.deepcopy(task.linked)
    return json_response(shown, 201)


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


def _json(task: Task, request: Request | None = None) -> dict[str, Any]:
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
    linked, extensions = _expanded(request)
    if linked:
        shown[LINKED] = copy.deepcopy(task.linked)
    if extensions is not None:
        shown[EXTENSIONS] = [
            _extension_json(x)
            for key, x in task.extensions.items()
            if extensions in ("", None) or key == extensions.casefold()
        ]
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
        "value": [_json(t, request) for t in live[skip : skip + size]],
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
        return {"@odata.type": "#microsoft.graph.todoTask", **_json(task, request)}

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
