"""Gmail v1 in the Google sandbox, as crmsync's e-mail recording uses it: the profile,
labels, messages (list, get in every format, attachments, modify, batchModify, delete),
the history feed, and push notifications through Cloud Pub/Sub (`users.watch`,
`users.stop`).

Each account's mailbox lives in `account.data["gmail"]` (a `Mailbox`: gmail_mailbox.py
holds its rules and history, gmail_mime.py how messages are shown, gmail_pubsub.py
where notifications go, gmail_world.py the test helpers re-exported here). As in
Gmail:

* `userId` is `me` or the account's own address; any other is a 403.
* Each method takes the scopes its discovery document lists. A token holding
  `gmail.metadata` is held to it even beside broader scopes, as Gmail holds it:
  `format=raw` and `format=full` are a 403, so is `q`.
* 64-bit numbers (`historyId`, `internalDate`, `expiration`) travel as strings, except
  in a notification's data, where `historyId` is a JSON number.
* Label names are flat ("CRM/Send To CRM" is one name) and unique in any letter case,
  system names included (409); label ids never change, a rename included.
* A watch publishes one notification per request (or test helper call) whose changes
  concern it (see `Watch.wants`), with the mailbox's history id after the request.

Only the search of `messages.list` (`q`) is not served: it answers 400.

Tests do what users and the world do through the helpers: `deliver` (mail arrives or
is sent), `change_labels` (the user tags a message in Gmail), `delete_message`,
`add_label`, `rename_label`, `expire_history`, `message_labels`, `watch_of`, and Pub/Sub's
`connect_pubsub`, `notifications_published` and `published`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.google.core import (
    SCOPE,
    Account,
    ApiError,
    GoogleSandbox,
    Route,
    json_response,
    read_json,
    route,
)
from sandbox.google.gmail_mailbox import (
    HISTORY_TYPES,
    Change,
    Label,
    Mailbox,
    StoredMessage,
    Watch,
    announce,
    label_body,
    mailbox_of,
    ms,
)
from sandbox.google.gmail_mime import b64url, metadata
from sandbox.google.gmail_pubsub import (
    EmulatorPubSub,
    MemoryPubSub,
    PubSub,
    Topic,
    connect_pubsub,
    courier,
    notifications_published,
    published,
)
from sandbox.google.gmail_world import (
    add_label,
    change_labels,
    delete_message,
    deliver,
    expire_history,
    message_labels,
    rename_label,
    watch_of,
)

__all__ = [
    "EmulatorPubSub",
    "MemoryPubSub",
    "PubSub",
    "add_label",
    "change_labels",
    "connect_pubsub",
    "delete_message",
    "deliver",
    "expire_history",
    "mailbox_of",
    "message_labels",
    "notifications_published",
    "published",
    "rename_label",
    "routes",
    "watch_of",
]

# Scopes per method as the discovery document lists them.
MAIL = "https://mail.google.com/"
METADATA = SCOPE + "gmail.metadata"
ADDON_METADATA = SCOPE + "gmail.addons.current.message.metadata"
ADDON_READ = SCOPE + "gmail.addons.current.message.readonly"
ADDON_ACTION = SCOPE + "gmail.addons.current.message.action"
MODIFY = SCOPE + "gmail.modify"
READONLY = SCOPE + "gmail.readonly"
LABELS = SCOPE + "gmail.labels"
PROFILE_SCOPES = frozenset({MAIL, SCOPE + "gmail.compose", METADATA, MODIFY, READONLY})
LABEL_WRITE_SCOPES = frozenset({MAIL, LABELS, MODIFY})
LABEL_READ_SCOPES = LABEL_WRITE_SCOPES | {METADATA, READONLY}
READ_SCOPES = frozenset({MAIL, METADATA, MODIFY, READONLY})  # list, history, watch, stop
MESSAGE_GET_SCOPES = READ_SCOPES | {ADDON_ACTION, ADDON_METADATA, ADDON_READ}
ATTACHMENT_SCOPES = frozenset({MAIL, ADDON_ACTION, ADDON_READ, MODIFY, READONLY})
MODIFY_SCOPES = frozenset({MAIL, MODIFY})
DELETE_SCOPES = frozenset({MAIL})
# Scopes that hold a token to metadata whatever else it holds.
METADATA_ONLY = frozenset({METADATA, ADDON_METADATA})

WATCH_LIFETIME = timedelta(days=7)
MAX_LABEL_CHANGES = 100  # addLabelIds, removeLabelIds of messages.modify
MAX_BATCH = 1000  # ids of messages.batchModify
MAX_PAGE = 500
DEFAULT_PAGE = 100
FORMATS = ("minimal", "full", "raw", "metadata")


# -- shared rules ------------------------------------------------------------------------------
def _own(account: Account, user_id: str) -> Mailbox:
    """`userId` names the authenticated account, or Google refuses to act for another."""
    if user_id != "me" and user_id.lower() != account.email.lower():
        raise ApiError(403, "forbidden", f"Delegation denied for {user_id}")
    return mailbox_of(account)


def _metadata_only(sandbox: GoogleSandbox, request: Request) -> bool:
    header_value = request.headers.get("Authorization", "")
    grant = sandbox.access_tokens.get(header_value.removeprefix("Bearer "))
    return grant is not None and bool(grant.scopes & METADATA_ONLY)


def _current_message_only(
    sandbox: GoogleSandbox, request: Request, account: Account, message_id: str
) -> None:
    """A token whose only mail scopes are an add-on's current-message ones reads the one
    message Gmail's `X-Goog-Gmail-Access-Token` opens (the add-on's open message)."""
    from sandbox.google.addons import opens

    header_value = request.headers.get("Authorization", "")
    grant = sandbox.access_tokens.get(header_value.removeprefix("Bearer "))
    if grant is None or grant.scopes & READ_SCOPES:
        return
    given = request.headers.get("X-Goog-Gmail-Access-Token", "")
    if not opens(sandbox, given, account.email, message_id):
        raise ApiError(403, "forbidden", "The add-on's access token does not open this message")


def _page_size(request: Request) -> int:
    value = request.args.get("maxResults")
    if value is None:
        return DEFAULT_PAGE
    try:
        size = int(value)
    except ValueError as exc:
        raise ApiError(400, "invalidArgument", f"Invalid maxResults: {value}") from exc
    if size < 0:
        raise ApiError(400, "invalidArgument", f"Invalid maxResults: {value}")
    return min(size or DEFAULT_PAGE, MAX_PAGE)


def _label_ids(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "invalidArgument", f"Invalid {key}")
    return value


# -- profile -----------------------------------------------------------------------------------
def get_profile(request: Request, account: Account, user_id: str) -> Response:
    mailbox = _own(account, user_id)
    return json_response(
        {
            "emailAddress": account.email,
            "messagesTotal": len(mailbox.messages),
            "threadsTotal": len({m.thread_id for m in mailbox.messages.values()}),
            "historyId": str(mailbox.history_id),
        }
    )


# -- labels ------------------------------------------------------------------------------------
def list_labels(request: Request, account: Account, user_id: str) -> Response:
    mailbox = _own(account, user_id)
    shown = [mailbox.label_resource(x, color=False, counts=False) for x in mailbox.labels.values()]
    return json_response({"labels": shown})


def get_label(request: Request, account: Account, user_id: str, label_id: str) -> Response:
    mailbox = _own(account, user_id)
    return json_response(mailbox.label_resource(mailbox.label(label_id), color=True, counts=True))


def create_label(request: Request, account: Account, user_id: str) -> Response:
    mailbox = _own(account, user_id)
    body = read_json(request)
    fields = label_body(body, None)
    name = mailbox.check_name(body.get("name"))
    label = Label(
        mailbox.new_label_id(),
        name,
        "user",
        fields.get("messageListVisibility", "show"),
        fields.get("labelListVisibility", "labelShow"),
        fields.get("color"),
    )
    mailbox.labels[label.id] = label
    return json_response(mailbox.label_resource(label, color=True, counts=False))


def _change_label(
    request: Request, account: Account, user_id: str, label_id: str, *, patch: bool
) -> Response:
    """labels.patch sets the fields it names; labels.update sets them all (a name is
    required, what it leaves out returns to its default). The id stays."""
    mailbox = _own(account, user_id)
    label = mailbox.label(label_id)
    body = read_json(request)
    fields = label_body(body, label)
    name = body.get("name")
    if name is not None or not patch:
        label.name = mailbox.check_name(name, renamed=label)
    if patch:
        label.message_list_visibility = fields.get(
            "messageListVisibility", label.message_list_visibility
        )
        label.label_list_visibility = fields.get("labelListVisibility", label.label_list_visibility)
        label.color = fields.get("color", label.color)
    else:
        label.message_list_visibility = fields.get("messageListVisibility", "show")
        label.label_list_visibility = fields.get("labelListVisibility", "labelShow")
        label.color = fields.get("color")
    return json_response(mailbox.label_resource(label, color=True, counts=False))


def patch_label(request: Request, account: Account, user_id: str, label_id: str) -> Response:
    return _change_label(request, account, user_id, label_id, patch=True)


def update_label(request: Request, account: Account, user_id: str, label_id: str) -> Response:
    return _change_label(request, account, user_id, label_id, patch=False)


def delete_label(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str, label_id: str
) -> Response:
    """A user label goes, and leaves every message it was on (a `labelRemoved` each)."""
    mailbox = _own(account, user_id)
    changes = mailbox.delete_label(sandbox.ids, mailbox.user_label(label_id))
    announce(sandbox, account, mailbox, changes)
    return Response(status=204)


# -- messages ----------------------------------------------------------------------------------
def _listed_key(message: StoredMessage) -> str:
    """The page token of a listing continued after `message` (newest first)."""
    return f"{message.internal_date:015d}{message.order:08d}"


def list_messages(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str
) -> Response:
    """Newest first; every label of `labelIds` must be on a message; SPAM and TRASH
    only when asked for by `includeSpamTrash` or by label."""
    mailbox = _own(account, user_id)
    if "q" in request.args and _metadata_only(sandbox, request):
        raise ApiError(403, "forbidden", "Metadata scope does not support 'q' parameter")
    if request.args.get("q"):
        raise ApiError(400, "invalidArgument", "The sandbox does not search messages (q)")
    wanted = request.args.getlist("labelIds")
    for label_id in wanted:
        if label_id not in mailbox.labels:
            raise ApiError(400, "invalidArgument", f"Invalid label: {label_id}")
    hidden = set() if request.args.get("includeSpamTrash") == "true" else {"SPAM", "TRASH"}
    hidden -= set(wanted)
    found = sorted(
        (
            m
            for m in mailbox.messages.values()
            if set(wanted) <= set(m.label_ids) and not hidden & set(m.label_ids)
        ),
        key=_listed_key,
        reverse=True,
    )
    token = request.args.get("pageToken")
    if token is not None:
        if not token.isdigit() or len(token) != 23:
            raise ApiError(400, "invalidArgument", "Invalid pageToken")
        found_after = [m for m in found if _listed_key(m) < token]
    else:
        found_after = found
    size = _page_size(request)
    page = found_after[:size]
    body: dict[str, Any] = {}
    if page:
        body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
    if len(found_after) > size:
        body["nextPageToken"] = _listed_key(page[-1])
    body["resultSizeEstimate"] = len(found)
    return json_response(body)


def _message_resource(message: StoredMessage) -> dict[str, Any]:
    shown: dict[str, Any] = {"id": message.id, "threadId": message.thread_id}
    if message.label_ids:
        shown["labelIds"] = list(message.label_ids)
    shown["snippet"] = message.rendered().snippet
    shown["sizeEstimate"] = len(message.raw)
    shown["historyId"] = str(message.history_id)
    shown["internalDate"] = str(message.internal_date)
    return shown


def get_message(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str, message_id: str
) -> Response:
    mailbox = _own(account, user_id)
    form = request.args.get("format", "full").lower()
    if form not in FORMATS:
        raise ApiError(400, "invalidArgument", f"Invalid format: {form}")
    if form in ("raw", "full") and _metadata_only(sandbox, request):
        raise ApiError(403, "forbidden", f"Metadata scope doesn't allow format {form.upper()}")
    message = mailbox.message(message_id)  # 404 for no such message, whoever asks
    _current_message_only(sandbox, request, account, message_id)
    shown = _message_resource(message)
    if form == "raw":
        shown["raw"] = b64url(message.raw)
    elif form == "full":
        shown["payload"] = message.rendered().payload
    elif form == "metadata":
        wanted = request.args.getlist("metadataHeaders")
        shown["payload"] = metadata(message.rendered().payload, wanted)
    return json_response(shown)


def get_attachment(
    sandbox: GoogleSandbox,
    request: Request,
    account: Account,
    user_id: str,
    message_id: str,
    attachment_id: str,
) -> Response:
    mailbox = _own(account, user_id)
    _current_message_only(sandbox, request, account, message_id)
    data = mailbox.message(message_id).rendered().attachments.get(attachment_id)
    if data is None:
        raise ApiError(400, "invalidArgument", "Invalid attachment token")
    return json_response({"size": len(data), "data": b64url(data)})


def _label_changes(mailbox: Mailbox, body: dict[str, Any]) -> tuple[list[str], list[str]]:
    add, remove = _label_ids(body, "addLabelIds"), _label_ids(body, "removeLabelIds")
    if len(add) > MAX_LABEL_CHANGES or len(remove) > MAX_LABEL_CHANGES:
        raise ApiError(
            400, "invalidArgument", f"At most {MAX_LABEL_CHANGES} labels may be added or removed"
        )
    both = set(add) & set(remove)
    if both:
        raise ApiError(400, "invalidArgument", f"Label {sorted(both)[0]} both added and removed")
    mailbox.check_labels([*add, *remove])
    return add, remove


def modify_message(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str, message_id: str
) -> Response:
    mailbox = _own(account, user_id)
    add, remove = _label_changes(mailbox, read_json(request))
    message = mailbox.message(message_id)
    changes = mailbox.relabel(sandbox.ids, message, add, remove)
    announce(sandbox, account, mailbox, changes)
    return json_response(
        {"id": message.id, "threadId": message.thread_id, "labelIds": list(message.label_ids)}
    )


def batch_modify(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str
) -> Response:
    """The same label changes on up to 1000 messages; ids of messages no longer there
    are passed over."""
    mailbox = _own(account, user_id)
    body = read_json(request)
    ids = _label_ids(body, "ids")
    if not ids:
        raise ApiError(400, "invalidArgument", "ids must not be empty")
    if len(ids) > MAX_BATCH:
        raise ApiError(400, "invalidArgument", f"Too many ids: at most {MAX_BATCH}")
    add, remove = _label_changes(mailbox, body)
    messages = []
    for message_id in ids:
        try:
            messages.append(mailbox.message(message_id))
        except ApiError as missing:
            if missing.code != 404:
                raise
    changes = []
    for message in messages:
        changes += mailbox.relabel(sandbox.ids, message, add, remove)
    announce(sandbox, account, mailbox, changes)
    return Response(status=204)


def delete_message_handler(
    sandbox: GoogleSandbox, request: Request, account: Account, user_id: str, message_id: str
) -> Response:
    mailbox = _own(account, user_id)
    change = mailbox.delete_message(sandbox.ids, mailbox.message(message_id))
    announce(sandbox, account, mailbox, [change])
    return Response(status=204)


# -- history -----------------------------------------------------------------------------------
def _history_record(change: Change) -> dict[str, Any]:
    brief = {"id": change.message_id, "threadId": change.thread_id}
    message = {**brief, **({"labelIds": list(change.labels_after)} if change.labels_after else {})}
    record: dict[str, Any] = {"id": str(change.id), "messages": [brief]}
    if change.kind == "messageAdded":
        record["messagesAdded"] = [{"message": message}]
    elif change.kind == "messageDeleted":
        record["messagesDeleted"] = [{"message": brief}]
    else:
        field = "labelsAdded" if change.kind == "labelAdded" else "labelsRemoved"
        record[field] = [{"message": message, "labelIds": list(change.changed)}]
    return record


def _history_id(value: str | None, what: str) -> int:
    if value is None:
        raise ApiError(400, "invalidArgument", f"{what} is required")
    if not value.isdigit() or int(value) >= 2**64:
        raise ApiError(400, "invalidArgument", f"Invalid {what}")
    return int(value)


def list_history(request: Request, account: Account, user_id: str) -> Response:
    """The records after `startHistoryId`, oldest first; 404 when the mailbox no longer
    keeps them all (the client must sync in full)."""
    mailbox = _own(account, user_id)
    start = _history_id(request.args.get("startHistoryId"), "startHistoryId")
    kinds = request.args.getlist("historyTypes")
    for kind in kinds:
        if kind not in HISTORY_TYPES:
            raise ApiError(400, "invalidArgument", f"Invalid historyTypes: {kind}")
    label_id = request.args.get("labelId")
    token = request.args.get("pageToken")
    after = max(start, _history_id(token, "pageToken")) if token is not None else start
    found = [
        change
        for change in mailbox.changes_after(start)
        if change.id > after
        and (not kinds or change.kind in kinds)
        and (label_id is None or label_id in change.touched())
    ]
    size = _page_size(request)
    body: dict[str, Any] = {}
    if found:
        body["history"] = [_history_record(change) for change in found[:size]]
    if len(found) > size:
        body["nextPageToken"] = str(found[size - 1].id)
    body["historyId"] = str(mailbox.history_id)
    return json_response(body)


# -- push notifications ------------------------------------------------------------------------
def watch(sandbox: GoogleSandbox, request: Request, account: Account, user_id: str) -> Response:
    """Start (or replace) the mailbox's watch for a week.

    The topic is checked as Gmail checks it, by sending it a test message: a missing
    `topicName` or one that is not `projects/<the client's project>/topics/<name>` is a
    400 invalidArgument ("Invalid topicName does not match projects/P/topics/*"); a
    topic that does not exist is a 404 notFound ("Error sending test message to Cloud
    PubSub ...: Resource not found"), as Gmail answers once the name is well formed; a
    topic Gmail may not publish to is a 403 forbidden. The test message itself reaches
    no subscriber here; the check is made while the request is answered, as Gmail
    makes it. Watched labels must exist (400)."""
    mailbox = _own(account, user_id)
    body = read_json(request)
    topic = body.get("topicName")
    if not isinstance(topic, str) or not topic:
        raise ApiError(400, "invalidArgument", "topicName required")
    pubsub = courier(sandbox).pubsub
    project = pubsub.project if pubsub is not None else "<project>"
    parts = topic.split("/")
    formed = len(parts) == 4 and parts[0] == "projects" and parts[2] == "topics" and parts[3]
    if not formed or (pubsub is not None and parts[1] != project):
        raise ApiError(
            400, "invalidArgument", f"Invalid topicName does not match projects/{project}/topics/*"
        )
    labels = _label_ids(body, "labelIds")
    for label_id in labels:
        if label_id not in mailbox.labels:
            raise ApiError(400, "invalidArgument", f"Invalid label: {label_id}")
    behavior = body.get("labelFilterBehavior") or body.get("labelFilterAction") or "include"
    if behavior not in ("include", "exclude"):
        raise ApiError(400, "invalidArgument", f"Invalid labelFilterBehavior: {behavior}")
    state = pubsub.topic(topic) if pubsub is not None else Topic.MISSING
    if state is Topic.MISSING:
        raise ApiError(
            404,
            "notFound",
            f"Error sending test message to Cloud PubSub {topic} : "
            f"Resource not found (resource={parts[3]}).",
        )
    if state is Topic.FORBIDDEN:
        raise ApiError(
            403,
            "forbidden",
            f"Error sending test message to Cloud PubSub {topic} : "
            "User not authorized to perform this action.",
        )
    expiration = ms(sandbox.clock() + WATCH_LIFETIME)
    mailbox.watch = Watch(topic, frozenset(labels), behavior, expiration)
    return json_response({"historyId": str(mailbox.history_id), "expiration": str(expiration)})


def stop(request: Request, account: Account, user_id: str) -> Response:
    _own(account, user_id).watch = None
    return Response(status=204)


# -- routes ------------------------------------------------------------------------------------
def routes(sandbox: GoogleSandbox) -> list[Route]:
    """Gmail v1 below the API root (`api_endpoint` is the sandbox's base URL), as the
    discovery document lays it out."""

    def bound(handler: Any) -> Any:
        return lambda request, account, **path: handler(sandbox, request, account, **path)

    user = "gmail/v1/users/{user_id}"
    labels, label = user + "/labels", user + "/labels/{label_id}"
    messages, message = user + "/messages", user + "/messages/{message_id}"
    attachment = message + "/attachments/{attachment_id}"
    return [
        route("GET", user + "/profile", get_profile, PROFILE_SCOPES),
        route("GET", labels, list_labels, LABEL_READ_SCOPES),
        route("POST", labels, create_label, LABEL_WRITE_SCOPES),
        route("GET", label, get_label, LABEL_READ_SCOPES),
        route("PATCH", label, patch_label, LABEL_WRITE_SCOPES),
        route("PUT", label, update_label, LABEL_WRITE_SCOPES),
        route("DELETE", label, bound(delete_label), LABEL_WRITE_SCOPES),
        route("GET", messages, bound(list_messages), READ_SCOPES),
        route("POST", messages + "/batchModify", bound(batch_modify), MODIFY_SCOPES),
        route("GET", message, bound(get_message), MESSAGE_GET_SCOPES),
        route("DELETE", message, bound(delete_message_handler), DELETE_SCOPES),
        route("POST", message + "/modify", bound(modify_message), MODIFY_SCOPES),
        route("GET", attachment, bound(get_attachment), ATTACHMENT_SCOPES),
        route("GET", user + "/history", list_history, READ_SCOPES),
        route("POST", user + "/watch", bound(watch), READ_SCOPES),
        route("POST", user + "/stop", stop, READ_SCOPES),
    ]
