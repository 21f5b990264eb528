"""Outlook mail in the Graph sandbox: the master category list, messages in the Inbox
and Sent Items, their MIME and attachments, per-folder message delta, and the changes
subscriptions are told of.

    GET/POST             me/outlook/masterCategories
    GET/PATCH/DELETE     me/outlook/masterCategories/{id}
    GET                  me/mailFolders, me/mailFolders/{folderId}
    GET                  me/messages, me/mailFolders/{folderId}/messages
    GET                  me/mailFolders/{folderId}/messages/delta   ($select, $top,
                         `$filter=receivedDateTime ge|gt <time>`, odata.maxpagesize)
    GET/PATCH/DELETE     me/messages/{id} (and me/mailFolders/{folderId}/messages/{id})
    GET                  me/messages/{id}/$value
    GET                  me/messages/{id}/attachments, .../attachments/{attachmentId}

Categories: `displayName` is unique in any case (409 on a duplicate) and cannot be
changed once the category exists (a PATCH may change `color` only, as Graph documents);
`color` is one of Graph's categoryColor presets. Deleting a category leaves the names
messages carry as they are, and a message may carry a name the list does not hold, as
in Outlook. Reads need MailboxSettings.Read or MailboxSettings.ReadWrite, writes
MailboxSettings.ReadWrite.

Messages arrive through `deliver` (what no API call does: mail received or sent); their
properties are read from the MIME. What the user does in Outlook is `set_categories`
(tagging a message) and `add_category`; tests read the master list (`categories_of`)
and a message's folder and categories (`message_place`) without a request. Lists
accept `$select`, `$top`, `$skip` (in their nextLinks), `$orderby=receivedDateTime
[asc|desc]` (by default newest first) and one `$filter`: `categories/any(c:c eq
'Name')`, optionally after `receivedDateTime ge|gt <time> and `. As Graph, a `$orderby`
property must also open the `$filter`, else 400 `InefficientFilter`. A PATCH changes
`categories` or `isRead` and gives the message a new `changeKey`; `If-Match` naming an
older one gets 412. `$value` answers the MIME as delivered, `text/plain` as Graph's
documentation shows. `hasAttachments` ignores inline attachments, as Graph's does.
Reads need Mail.Read or Mail.ReadWrite, writes Mail.ReadWrite.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.microsoft import mime
from sandbox.microsoft.core import (
    MEDIA,
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
    tokens_of,
)
from sandbox.microsoft.schema import graph_schema

SCOPES = frozenset({"Mail.Read", "Mail.ReadWrite"})
WRITE_SCOPES = frozenset({"Mail.ReadWrite"})
SETTINGS_SCOPES = frozenset({"MailboxSettings.Read", "MailboxSettings.ReadWrite"})
SETTINGS_WRITE_SCOPES = frozenset({"MailboxSettings.ReadWrite"})
WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items"}
WRITABLE = frozenset({"categories", "isRead"})
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
NOT_FOUND = "The specified object was not found in the store."
_CATEGORY_FILTER = re.compile(
    r"^categories/any\(\s*(\w+)\s*:\s*\1\s+eq\s+'((?:[^']|'')*)'\s*\)$", re.IGNORECASE
)
_RECEIVED_FILTER = re.compile(
    r"^receivedDateTime\s+(ge|gt)\s+(\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2}))\s+and\s+(.+)$",
    re.IGNORECASE,
)
_ORDER = re.compile(r"^receivedDateTime(?:\s+(asc|desc))?$", re.IGNORECASE)


@dataclass
class Category:
    id: str
    display_name: str
    color: str


@dataclass
class Folder:
    id: str
    name: str  # its well-known name: inbox, sentitems
    display_name: str


@dataclass
class Message:
    id: str
    folder_id: str
    raw: bytes
    parsed: mime.Parsed
    received: datetime
    created: datetime
    modified: datetime
    conversation_id: str
    attachments: list[dict[str, Any]]
    change_key: str = ""
    seq: int = 0
    categories: list[str] = field(default_factory=list)
    is_read: bool = False
    deleted: bool = False


@dataclass
class MailState:
    root_id: str
    folders: dict[str, Folder]
    categories: dict[str, Category] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)
    seq: int = 0


def state_of(user: User) -> MailState:
    state = user.data.get("mail")
    if state is None:
        root = new_id(user)
        folders = [Folder(new_id(user), name, shown) for name, shown in WELL_KNOWN.items()]
        state = MailState(root, {f.id: f for f in folders})
        user.data["mail"] = state
    assert isinstance(state, MailState)
    return state


def folder_of(user: User, folder_id: str) -> Folder:
    """A folder by its id or well-known name (`inbox`, `sentitems`), else 404."""
    state = state_of(user)
    for folder in state.folders.values():
        if folder.id == folder_id or folder.name == folder_id.lower():
            return folder
    raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)


# -- what no API call does -----------------------------------------------------------------------
def deliver(
    sandbox: MicrosoftSandbox,
    user_email: str,
    raw: bytes,
    folder: str = "inbox",
    received: datetime | None = None,
) -> str:
    """`raw` (an RFC 5322 message) arrives in `user_email`'s `folder` (`inbox`, or
    `sentitems` for mail the user sent), received at `received` (the sandbox's clock by
    default); subscriptions are told it was created. Returns the message's id."""
    with sandbox.lock:
        user = sandbox.add_user(user_email)
        state = state_of(user)
        target = folder_of(user, folder)
        parsed = mime.parse(raw)
        now = sandbox.clock()
        message = Message(
            id=new_id(user),
            folder_id=target.id,
            raw=bytes(raw),
            parsed=parsed,
            received=received or now,
            created=now,
            modified=now,
            conversation_id="AAQkA" + base64.urlsafe_b64encode(user.ids.randbytes(24)).decode(),
            attachments=[],
            is_read=target.name == "sentitems",
        )
        for part in parsed.attachments:
            message.attachments.append(
                {
                    "@odata.type": FILE_ATTACHMENT,
                    "@odata.mediaContentType": part.content_type,
                    "id": new_id(user),
                    "lastModifiedDateTime": graph_time(now),
                    "name": part.name,
                    "contentType": part.content_type,
                    "size": len(part.content),
                    "isInline": part.inline,
                    "contentId": part.content_id,
                    "contentLocation": None,
                    "contentBytes": base64.b64encode(part.content).decode(),
                }
            )
        _touch(sandbox, state, message)
        state.messages[message.id] = message
        _notify(sandbox, user, "created", message)
        return message.id


def set_categories(
    sandbox: MicrosoftSandbox, user_email: str, message_id: str, names: list[str]
) -> None:
    """The user tags (or untags) the message in Outlook: its categories become `names`,
    it gets a new changeKey, and subscriptions are told it was updated."""
    with sandbox.lock:
        user = sandbox.add_user(user_email)
        state = state_of(user)
        message = _message(state, message_id, None)
        message.categories = list(names)
        _touch(sandbox, state, message)
        _notify(sandbox, user, "updated", message)


def add_category(
    sandbox: MicrosoftSandbox, user_email: str, name: str, color: str = "preset0"
) -> str:
    """The user makes a category in Outlook's master list (a name no other category has,
    in any letter case, else GraphError 409); returns its id."""
    with sandbox.lock:
        return _new_category(sandbox.add_user(user_email), name, color).id


def categories_of(sandbox: MicrosoftSandbox, user_email: str) -> dict[str, str]:
    """The master category list: id → display name."""
    with sandbox.lock:
        held = state_of(sandbox.add_user(user_email)).categories
        return {c.id: c.display_name for c in held.values()}


def message_place(
    sandbox: MicrosoftSandbox, user_email: str, message_id: str
) -> tuple[str, list[str]]:
    """Where a message is (its folder's well-known name: `inbox`, `sentitems`) and the
    categories it carries now."""
    with sandbox.lock:
        user = sandbox.add_user(user_email)
        state = state_of(user)
        message = _message(state, message_id, None)
        return state.folders[message.folder_id].name, list(message.categories)


def expire_message_delta(sandbox: MicrosoftSandbox, user_email: str) -> None:
    """Every message delta and next link issued to `user_email` so far is evicted, as
    Outlook evicts sync states: following one gets 410 `syncStateNotFound` with a
    Location to start over. The user's other delta links stay valid."""
    with sandbox.lock:
        tokens_of(sandbox.add_user(user_email)).expire("messages:")


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    categories = "v1.0/me/outlook/masterCategories"
    category = categories + "/{categoryId}"
    folder = "v1.0/me/mailFolders/{folderId}"

    def list_folders(request: Request, user: User) -> Response:
        state = state_of(user)
        return json_response(
            {
                "@odata.context": _context(sandbox, user, "mailFolders"),
                "value": [_folder_json(state, f) for f in state.folders.values()],
            }
        )

    def get_folder(request: Request, user: User, folderId: str) -> Response:
        return json_response(_folder_json(state_of(user), folder_of(user, folderId)))

    def delta(request: Request, user: User, folderId: str) -> Response:
        return _delta(sandbox, request, user, folderId)

    return [
        route(
            "GET",
            categories,
            lambda r, u: _list_categories(sandbox, u),
            SETTINGS_SCOPES,
            "Collection(outlookCategory)",
        ),
        route(
            "POST",
            categories,
            lambda r, u: _create_category(sandbox, r, u),
            SETTINGS_WRITE_SCOPES,
            "outlookCategory",
        ),
        route(
            "GET",
            category,
            lambda r, u, categoryId: json_response(
                _category_json(sandbox, u, _category(u, categoryId))
            ),
            SETTINGS_SCOPES,
            "outlookCategory",
        ),
        route(
            "PATCH",
            category,
            lambda r, u, categoryId: _patch_category(sandbox, r, u, categoryId),
            SETTINGS_WRITE_SCOPES,
            "outlookCategory",
        ),
        route(
            "DELETE",
            category,
            lambda r, u, categoryId: _delete_category(u, categoryId),
            SETTINGS_WRITE_SCOPES,
            NO_CONTENT,
        ),
        route("GET", "v1.0/me/mailFolders", list_folders, SCOPES, "Collection(mailFolder)"),
        route("GET", folder, get_folder, SCOPES, "mailFolder"),
        route("GET", folder + "/messages/delta", delta, SCOPES, "Collection(message)"),
        *_message_routes(sandbox, folder + "/messages"),
        *_message_routes(sandbox, "v1.0/me/messages"),
    ]


def _message_routes(sandbox: MicrosoftSandbox, base: str) -> list[Route]:
    def scope(user: User, segments: dict[str, str]) -> Folder | None:
        return folder_of(user, segments["folderId"]) if "folderId" in segments else None

    def listing(request: Request, user: User, **segments: str) -> Response:
        return _list(sandbox, request, user, scope(user, segments))

    def get(request: Request, user: User, messageId: str, **segments: str) -> Response:
        found = _message(state_of(user), messageId, scope(user, segments))
        return _answer(sandbox, request, user, found)

    def patch(request: Request, user: User, messageId: str, **segments: str) -> Response:
        return _patch(sandbox, request, user, messageId, scope(user, segments))

    def delete(request: Request, user: User, messageId: str, **segments: str) -> Response:
        state = state_of(user)
        found = _message(state, messageId, scope(user, segments))
        check_if_match(request, found.change_key)
        found.deleted = True
        _touch(sandbox, state, found)
        _notify(sandbox, user, "deleted", found)
        return Response(status=204)

    def mime_value(request: Request, user: User, messageId: str, **segments: str) -> Response:
        found = _message(state_of(user), messageId, scope(user, segments))
        return Response(found.raw, status=200, content_type="text/plain")

    def attachments(request: Request, user: User, messageId: str, **segments: str) -> Response:
        found = _message(state_of(user), messageId, scope(user, segments))
        return json_response(
            {
                "@odata.context": _context(sandbox, user, f"messages('{found.id}')/attachments"),
                "value": [_attachment_json(request, a) for a in found.attachments],
            }
        )

    def attachment(
        request: Request, user: User, messageId: str, attachmentId: str, **segments: str
    ) -> Response:
        found = _message(state_of(user), messageId, scope(user, segments))
        for item in found.attachments:
            if item["id"] == attachmentId:
                return json_response(_attachment_json(request, item))
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)

    item = base + "/{messageId}"
    return [
        route("GET", base, listing, SCOPES, "Collection(message)"),
        route("GET", item + "/$value", mime_value, SCOPES, MEDIA),
        route("GET", item + "/attachments", attachments, SCOPES, "Collection(attachment)"),
        route("GET", item + "/attachments/{attachmentId}", attachment, SCOPES, "attachment"),
        route("GET", item, get, SCOPES, "message"),
        route("PATCH", item, patch, WRITE_SCOPES, "message"),
        route("DELETE", item, delete, WRITE_SCOPES, NO_CONTENT),
    ]


def _context(sandbox: MicrosoftSandbox, user: User, entity_set: str) -> str:
    return f"{sandbox.base_url}/v1.0/$metadata#users('{user.oid}')/{entity_set}"


# -- categories ----------------------------------------------------------------------------------
def _category(user: User, category_id: str) -> Category:
    found = state_of(user).categories.get(category_id)
    if found is None:
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
    return found


def _category_json(sandbox: MicrosoftSandbox, user: User, found: Category) -> dict[str, Any]:
    return {"id": found.id, "displayName": found.display_name, "color": found.color}


def _list_categories(sandbox: MicrosoftSandbox, user: User) -> Response:
    return json_response(
        {
            "@odata.context": _context(sandbox, user, "outlook/masterCategories"),
            "value": [_category_json(sandbox, user, c) for c in state_of(user).categories.values()],
        }
    )


def _checked_category(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    fields = {k: v for k, v in body.items() if not k.startswith("@odata.")}
    for name in fields:
        if name not in allowed:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.outlookCategory' "
                "or cannot be written.",
            )
    refuse_off_schema(fields, "outlookCategory", "RequestBodyRead")
    return fields


def _create_category(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    fields = _checked_category(read_json(request), frozenset({"displayName", "color"}))
    name = fields.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    found = _new_category(user, name, str(fields.get("color") or "none"))
    return json_response(_category_json(sandbox, user, found), 201)


def _new_category(user: User, name: str, color: str) -> Category:
    """A category added to the master list; a name it holds in any case is a 409."""
    state = state_of(user)
    if any(c.display_name.lower() == name.lower() for c in state.categories.values()):
        raise GraphError(
            409, "ErrorDuplicateCategory", f"A category named '{name}' already exists."
        )
    found = Category(str(uuid.UUID(bytes=user.ids.randbytes(16), version=4)), name, color)
    state.categories[found.id] = found
    return found


def _patch_category(
    sandbox: MicrosoftSandbox, request: Request, user: User, category_id: str
) -> Response:
    found = _category(user, category_id)
    body = read_json(request)
    if "displayName" in body and body["displayName"] != found.display_name:
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "The displayName of a category cannot be changed once the category is created.",
        )
    fields = _checked_category(
        {k: v for k, v in body.items() if k != "displayName"}, frozenset({"color"})
    )
    if "color" in fields:
        found.color = str(fields["color"] or "none")
    return json_response(_category_json(sandbox, user, found))


def _delete_category(user: User, category_id: str) -> Response:
    del state_of(user).categories[_category(user, category_id).id]
    return Response(status=204)


# -- messages ------------------------------------------------------------------------------------
def _message(state: MailState, message_id: str, folder: Folder | None) -> Message:
    found = state.messages.get(message_id)
    if found is None or found.deleted or (folder is not None and found.folder_id != folder.id):
        raise GraphError(404, "ErrorItemNotFound", NOT_FOUND)
    return found


def _touch(sandbox: MicrosoftSandbox, state: MailState, message: Message) -> None:
    state.seq += 1
    message.seq = state.seq
    message.change_key = new_change_key()
    message.modified = sandbox.clock()


def _notify(sandbox: MicrosoftSandbox, user: User, change: str, message: Message) -> None:
    sandbox.publish(
        user, "messages", change, message.id, etag(message.change_key), message.folder_id
    )


def _folder_json(state: MailState, folder: Folder) -> dict[str, Any]:
    inside = [m for m in state.messages.values() if m.folder_id == folder.id and not m.deleted]
    return {
        "id": folder.id,
        "displayName": folder.display_name,
        "parentFolderId": state.root_id,
        "childFolderCount": 0,
        "unreadItemCount": sum(1 for m in inside if not m.is_read),
        "totalItemCount": len(inside),
        "isHidden": False,
    }


def _recipient(address: mime.Address) -> dict[str, Any]:
    return {"emailAddress": {"name": address.name or address.address, "address": address.address}}


def _wants_text(request: Request) -> bool:
    prefer = ",".join(request.headers.getlist("Prefer"))
    return re.search(r'outlook\.body-content-type\s*=\s*"?text"?', prefer, re.I) is not None


def _json(request: Request, message: Message) -> dict[str, Any]:
    parsed = message.parsed
    text = _wants_text(request)
    sender = _recipient(parsed.sender) if parsed.sender else None
    preview = re.sub(r"\s+", " ", parsed.text).strip()[:255]
    return {
        "@odata.etag": etag(message.change_key),
        "id": message.id,
        "createdDateTime": graph_time(message.created),
        "lastModifiedDateTime": graph_time(message.modified),
        "changeKey": message.change_key,
        "categories": list(message.categories),
        "receivedDateTime": graph_time(message.received),
        "sentDateTime": graph_time(parsed.sent or message.received),
        "hasAttachments": any(not a["isInline"] for a in message.attachments),
        "internetMessageId": parsed.message_id,
        "subject": parsed.subject,
        "bodyPreview": preview,
        "importance": "normal",
        "parentFolderId": message.folder_id,
        "conversationId": message.conversation_id,
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": message.is_read,
        "isDraft": False,
        "inferenceClassification": "focused",
        "body": {
            "contentType": "text" if text else "html",
            "content": parsed.text if text else parsed.html,
        },
        "sender": sender,
        "from": sender,
        "toRecipients": [_recipient(a) for a in parsed.to],
        "ccRecipients": [_recipient(a) for a in parsed.cc],
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    }


def _selected(request: Request) -> set[str] | None:
    select = request.args.get("$select")
    if not select:
        return None
    names = {s.strip() for s in select.split(",") if s.strip()}
    members = graph_schema().members("message")
    for name in names:
        if name not in members:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
            )
    return names


def _shown(request: Request, message: Message) -> dict[str, Any]:
    shown = _json(request, message)
    keep = _selected(request)
    if keep is not None:
        keep |= {"id", "@odata.etag"}
        shown = {k: v for k, v in shown.items() if k in keep}
    return shown


def _body_headers(request: Request) -> dict[str, str]:
    return (
        {"Preference-Applied": 'outlook.body-content-type="text"'} if _wants_text(request) else {}
    )


def _answer(sandbox: MicrosoftSandbox, request: Request, user: User, message: Message) -> Response:
    body = {
        "@odata.context": _context(sandbox, user, "messages/$entity"),
        **_shown(request, message),
    }
    return json_response(body, headers=_body_headers(request))


def _attachment_json(request: Request, item: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(item)


def _patch(
    sandbox: MicrosoftSandbox,
    request: Request,
    user: User,
    message_id: str,
    folder: Folder | None,
) -> Response:
    state = state_of(user)
    message = _message(state, message_id, folder)
    check_if_match(request, message.change_key)
    body = {k: v for k, v in read_json(request).items() if not k.startswith("@odata.")}
    members = graph_schema().members("message")
    for name in body:
        if name not in members:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.message'.",
            )
        if name not in WRITABLE:
            raise GraphError(
                400,
                "ErrorInvalidPropertyUpdateSentMessage",
                "Update operation is invalid for property of a sent message.",
            )
    refuse_off_schema(body, "message", "RequestBodyRead")
    categories = body.get("categories")
    if "categories" in body and (
        not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)
    ):
        raise GraphError(400, "RequestBodyRead", "categories must be a collection of strings.")
    if "categories" in body:
        message.categories = list(dict.fromkeys(categories or []))
    if "isRead" in body:
        message.is_read = bool(body["isRead"])
    _touch(sandbox, state, message)
    _notify(sandbox, user, "updated", message)
    return _answer(sandbox, request, user, message)


def _matcher(request: Request) -> tuple[Any, bool]:
    """The request's `$filter` as a test of a message, and whether it opens with
    receivedDateTime (which a `$orderby` on it requires)."""
    wanted = request.args.get("$filter")
    if not wanted:
        return (lambda m: True), False
    text = wanted.strip()
    since: tuple[str, datetime] | None = None
    found = _RECEIVED_FILTER.match(text)
    if found is not None:
        try:
            moment = datetime.fromisoformat(found.group(2).replace("Z", "+00:00"))
        except ValueError as exc:
            raise GraphError(400, "BadRequest", f"Invalid date in $filter: {wanted}") from exc
        since = (found.group(1).lower(), moment)
        text = found.group(3).strip()
    found = _CATEGORY_FILTER.match(text)
    if found is None:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", f"Unsupported $filter: {wanted}")
    name = found.group(2).replace("''", "'").lower()

    def test(message: Message) -> bool:
        if since is not None:
            op, moment = since
            if not (message.received >= moment if op == "ge" else message.received > moment):
                return False
        return any(c.lower() == name for c in message.categories)

    return test, since is not None


def _list(
    sandbox: MicrosoftSandbox, request: Request, user: User, folder: Folder | None
) -> Response:
    state = state_of(user)
    _selected(request)
    test, received_first = _matcher(request)
    descending = True
    order = request.args.get("$orderby")
    if order:
        found = _ORDER.match(order.strip())
        if found is None:
            raise GraphError(400, "BadRequest", f"Unsupported $orderby: {order}")
        if request.args.get("$filter") and not received_first:
            raise GraphError(
                400,
                "InefficientFilter",
                "The restriction or sort order is too complex for this operation.",
            )
        descending = (found.group(1) or "asc").lower() == "desc"
    live = [
        m
        for m in state.messages.values()
        if not m.deleted and (folder is None or m.folder_id == folder.id) and test(m)
    ]
    live.sort(key=lambda m: (m.received, m.seq), reverse=descending)
    size = page_size(request)
    try:
        skip = max(0, int(request.args.get("$skip", "0")))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $skip value.") from exc
    body: dict[str, Any] = {
        "@odata.context": _context(sandbox, user, "messages"),
        "value": [_shown(request, m) for m in live[skip : skip + size]],
    }
    if skip + size < len(live):
        params = {k: v for k, v in request.args.items() if k != "$skip"}
        path = request.path.strip("/").removeprefix("v1.0/")
        body["@odata.nextLink"] = link(sandbox, path, {**params, "$skip": str(skip + size)})
    return json_response(body, headers=_body_headers(request))


_DELTA_FILTER = re.compile(
    r"^receivedDateTime\s+(ge|gt)\s+(\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2}))$",
    re.IGNORECASE,
)


def _delta_since(request: Request) -> Any:
    """Message delta's one `$filter`, `receivedDateTime ge|gt <time>`, as a test of a
    message; any other is a 400."""
    wanted = request.args.get("$filter")
    if not wanted:
        return lambda m: True
    found = _DELTA_FILTER.match(wanted.strip())
    if found is None:
        raise GraphError(
            400,
            "ErrorInvalidUrlQueryFilter",
            f"Delta supports only a receivedDateTime ge or gt $filter: {wanted}",
        )
    try:
        moment = datetime.fromisoformat(found.group(2).replace("Z", "+00:00"))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", f"Invalid date in $filter: {wanted}") from exc
    if found.group(1).lower() == "ge":
        return lambda m: m.received >= moment
    return lambda m: m.received > moment


def _delta(sandbox: MicrosoftSandbox, request: Request, user: User, folder_id: str) -> Response:
    state = state_of(user)
    folder = folder_of(user, folder_id)
    if "$orderby" in request.args:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", "Delta does not support $orderby.")
    since = _delta_since(request)
    _selected(request)

    def changes() -> list[Change]:
        return [
            Change(m.id, m.seq, m.deleted)
            for m in state.messages.values()
            if m.folder_id == folder.id and since(m)
        ]

    def render(message_id: str) -> dict[str, Any] | None:
        message = state.messages[message_id]
        if message.deleted:
            return None
        return {"@odata.type": "#microsoft.graph.message", **_shown(request, message)}

    return delta_page(
        sandbox,
        request,
        user,
        path=f"me/mailFolders/{folder_id}/messages/delta",
        scope=f"messages:{folder.id}",
        changes=changes,
        current_seq=state.seq,
        render=render,
    )
