"""Change notifications in the Graph sandbox: subscriptions with Graph's validation
handshake, maximum lifetimes, renewal, notifications and lifecycle events.

    GET/POST             subscriptions
    GET/PATCH/DELETE     subscriptions/{id}
    POST                 subscriptions/{id}/reauthorize

Resources: `me/events` (any of the user's calendars), `me/calendars/{id}/events`,
`me/contacts` (any folder), `me/contactFolders/{id}/contacts`,
`me/todo/lists/{id}/tasks`, `me/messages` (any mail folder) and
`me/mailFolders('inbox')/messages` (or `me/mailFolders/{id}/messages`), also as
`users/{id or upn}/...`.

Creating (and validating) a subscription POSTs `{notificationUrl}?validationToken=...`
(and the same to `lifecycleNotificationUrl`) and requires the URL-decoded token back as
`text/plain` with 200 within 10 s, else 400 `InvalidRequest`. Graph requires https
notification URLs; the sandbox also accepts http on loopback, for tests' receivers.
Lifetimes are capped as Graph caps them: 10,080 minutes for Outlook messages, events and
contacts,
4,230 for To Do tasks; a longer `expirationDateTime` gets 400. A subscription whose
expiry has passed is gone (404), as Graph deletes it.

Notifications are queued when an item changes and POSTed by `flush(sandbox)`, one POST per
notification URL bundling its queued notifications, so tests decide when they arrive. A
notification not answered with 2xx stays queued for the next flush, for up to 4 hours.
`lifecycle(sandbox, id, event)` queues a `reauthorizationRequired`, `subscriptionRemoved`
(which also removes the subscription) or `missed` lifecycle notification. While the
sandbox checks its answers against Graph's schema (`MicrosoftSandbox.check_schema`), each
POST is checked as Graph's changeNotificationCollection: drift raises SchemaDrift.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from werkzeug.wrappers import Request, Response

from sandbox.microsoft import mail
from sandbox.microsoft.core import (
    NO_CONTENT,
    Changed,
    GraphError,
    MicrosoftSandbox,
    Route,
    User,
    graph_time,
    json_response,
    read_json,
    route,
)
from sandbox.microsoft.schema import SchemaDrift, graph_schema

MAX_MINUTES = {"events": 10_080, "contacts": 10_080, "messages": 10_080, "tasks": 4_230}
KIND_SCOPES = {
    "events": frozenset({"Calendars.Read", "Calendars.ReadWrite"}),
    "contacts": frozenset({"Contacts.Read", "Contacts.ReadWrite"}),
    "tasks": frozenset({"Tasks.Read", "Tasks.ReadWrite"}),
    "messages": frozenset({"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}),
}
SCOPES = frozenset().union(*KIND_SCOPES.values())
CHANGE_TYPES = {"created", "updated", "deleted"}
LIFECYCLE_EVENTS = {"reauthorizationRequired", "subscriptionRemoved", "missed"}
VALIDATION_SECONDS = 10
RETRY_FOR = timedelta(hours=4)
_RESOURCES = (
    (re.compile(r"^events$", re.I), "events", None),
    (re.compile(r"^calendars/([^/]+)/events$", re.I), "events", 1),
    (re.compile(r"^contacts$", re.I), "contacts", None),
    (re.compile(r"^contactFolders/([^/]+)/contacts$", re.I), "contacts", 1),
    (re.compile(r"^todo/lists/([^/]+)/tasks$", re.I), "tasks", 1),
    (re.compile(r"^messages$", re.I), "messages", None),
    (re.compile(r"^mailFolders\('([^/']+)'\)/messages$", re.I), "messages", 1),
    (re.compile(r"^mailFolders/([^/]+)/messages$", re.I), "messages", 1),
)
_PROBE = "Validation: Testing client application reachability for subscription"
_NO_200 = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK "
    "to validation request."
)
_TYPES = {"events": "Event", "contacts": "Contact", "tasks": "TodoTask", "messages": "Message"}


@dataclass
class Subscription:
    id: str
    user: User
    client_id: str
    resource: str
    kind: str
    container: str | None
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    expires: datetime
    client_state: str | None


@dataclass
class Delivery:
    url: str
    item: dict[str, Any]
    queued: datetime


@dataclass
class Notifications:
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    queue: list[Delivery] = field(default_factory=list)
    delivered: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)


def state_of(sandbox: MicrosoftSandbox) -> Notifications:
    found = getattr(sandbox, "notifications", None)
    if found is None:
        found = Notifications()
        sandbox.notifications = found  # type: ignore[attr-defined]
    assert isinstance(found, Notifications)
    return found


def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    state = state_of(sandbox)
    sandbox.listeners.append(lambda changed: _changed(sandbox, changed))
    one = "v1.0/subscriptions/{subscriptionId}"

    def listing(request: Request, user: User) -> Response:
        live = [_json(sandbox, s) for s in _live(sandbox) if s.user is user]
        return json_response(
            {"@odata.context": f"{sandbox.base_url}/v1.0/$metadata#subscriptions", "value": live}
        )

    def get(request: Request, user: User, subscriptionId: str) -> Response:
        return json_response(_json(sandbox, _find(sandbox, user, subscriptionId)))

    def delete(request: Request, user: User, subscriptionId: str) -> Response:
        del state.subscriptions[_find(sandbox, user, subscriptionId).id]
        return Response(status=204)

    def reauthorize(request: Request, user: User, subscriptionId: str) -> Response:
        _find(sandbox, user, subscriptionId)
        return Response(status=204)

    return [
        route("GET", "v1.0/subscriptions", listing, SCOPES, "Collection(subscription)"),
        route(
            "POST",
            "v1.0/subscriptions",
            lambda r, u: _create(sandbox, r, u),
            SCOPES,
            "subscription",
        ),
        route("GET", one, get, SCOPES, "subscription"),
        route(
            "PATCH",
            one,
            lambda r, u, subscriptionId: _renew(sandbox, r, u, subscriptionId),
            SCOPES,
            "subscription",
        ),
        route("DELETE", one, delete, SCOPES, NO_CONTENT),
        route("POST", one + "/reauthorize", reauthorize, SCOPES, NO_CONTENT),
    ]


# -- subscriptions -------------------------------------------------------------------------------
def _bad(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def _live(sandbox: MicrosoftSandbox) -> list[Subscription]:
    """The subscriptions that have not expired; expired ones are deleted, as Graph does."""
    state = state_of(sandbox)
    now = sandbox.clock()
    for gone in [s.id for s in state.subscriptions.values() if s.expires <= now]:
        del state.subscriptions[gone]
    return list(state.subscriptions.values())


def _find(sandbox: MicrosoftSandbox, user: User, subscription_id: str) -> Subscription:
    for found in _live(sandbox):
        if found.id == subscription_id and found.user is user:
            return found
    raise GraphError(
        404, "ResourceNotFound", f"The object was not found. Subscription Id: {subscription_id}"
    )


def _resource(sandbox: MicrosoftSandbox, user: User, text: str) -> tuple[str, str | None]:
    path = text.strip().strip("/")
    prefix = re.match(r"^(me|users/([^/]+))/", path, re.I)
    if prefix is None:
        raise _bad(f"Unsupported resource '{text}'.")
    owner = prefix.group(2)
    if owner is not None and owner.strip("'") not in (user.oid, user.email):
        raise GraphError(403, "ExtensionError", "Operation: Create; Exception: [Access denied]")
    rest = path[prefix.end() :]
    for pattern, kind, group in _RESOURCES:
        found = pattern.match(rest)
        if found is not None:
            container = found.group(group) if group else None
            if kind == "messages" and container is not None:
                # a well-known name (`inbox`) stands for the folder's id
                container = mail.folder_of(user, container).id
            return kind, container
    raise _bad(f"Unsupported resource '{text}'.")


def _granted(sandbox: MicrosoftSandbox, request: Request) -> tuple[str, frozenset[str]]:
    token = request.headers.get("Authorization", "")[7:]
    grant = sandbox.access_tokens[token]
    return grant.client_id, grant.scopes


def _expiry(sandbox: MicrosoftSandbox, kind: str, value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise _bad("expirationDateTime is not a valid date and time.") from exc
    now = sandbox.clock()
    if moment.tzinfo is None or moment <= now:
        raise _bad("Subscription expiration must be in the future.")
    limit = MAX_MINUTES[kind]
    if moment - now > timedelta(minutes=limit):
        raise _bad(f"Subscription expiration can only be {limit} minutes in the future.")
    return moment


def _check_url(url: Any, name: str) -> str:
    if not isinstance(url, str):
        raise _bad(f"{name} is required.")
    parts = urlsplit(url)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not loopback:
        raise _bad(f"The {name} must be https.")
    return url


def validate(url: str) -> None:
    """Graph's handshake: POST `url?validationToken=...`; a 200 `text/plain` echo of the
    token within 10 s passes, anything else is a 400 for the subscription request."""
    token = f"{_PROBE} Request-Id: {uuid.uuid4()}"
    session = requests.Session()
    session.trust_env = False
    try:
        answer = session.post(
            url,
            params={"validationToken": token},
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=VALIDATION_SECONDS,
        )
    except requests.Timeout as exc:
        raise _bad("Subscription validation request timed out.") from exc
    except requests.RequestException as exc:
        raise _bad(_NO_200) from exc
    finally:
        session.close()
    if answer.status_code != 200:
        raise _bad(_NO_200)
    if not answer.headers.get("Content-Type", "").startswith("text/plain") or answer.text != token:
        raise _bad(
            "Subscription validation request failed. Response must exactly match "
            "validationToken query parameter."
        )


def _create(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    body = read_json(request)
    kind, container = _resource(sandbox, user, str(body.get("resource") or ""))
    client_id, scopes = _granted(sandbox, request)
    if not scopes & KIND_SCOPES[kind]:
        raise GraphError(
            403,
            "ExtensionError",
            "Operation: Create; Exception: [Status Code: Forbidden; Reason: Access is denied.]",
        )
    changes = frozenset(c.strip() for c in str(body.get("changeType") or "").split(",") if c)
    if not changes or not changes <= CHANGE_TYPES:
        raise _bad("changeType must be one or more of created, updated, deleted.")
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
        raise _bad("clientState must be a string of at most 128 characters.")
    expires = _expiry(sandbox, kind, body.get("expirationDateTime"))
    notification_url = _check_url(body.get("notificationUrl"), "notificationUrl")
    lifecycle = body.get("lifecycleNotificationUrl")
    lifecycle_url = None if lifecycle is None else _check_url(lifecycle, "lifecycleNotificationUrl")
    validate(notification_url)
    if lifecycle_url is not None and lifecycle_url != notification_url:
        validate(lifecycle_url)
    found = Subscription(
        str(uuid.uuid4()),
        user,
        client_id,
        str(body["resource"]),
        kind,
        container,
        changes,
        notification_url,
        lifecycle_url,
        expires,
        client_state,
    )
    state_of(sandbox).subscriptions[found.id] = found
    return json_response(_json(sandbox, found), 201)


def _renew(
    sandbox: MicrosoftSandbox, request: Request, user: User, subscription_id: str
) -> Response:
    found = _find(sandbox, user, subscription_id)
    body = read_json(request)
    for name in body:
        if name not in ("expirationDateTime", "notificationUrl", "@odata.type"):
            raise _bad(f"The property '{name}' cannot be updated.")
    if "notificationUrl" in body:
        url = _check_url(body["notificationUrl"], "notificationUrl")
        validate(url)
        found.notification_url = url
    if "expirationDateTime" in body:
        found.expires = _expiry(sandbox, found.kind, body["expirationDateTime"])
    return json_response(_json(sandbox, found))


def _json(sandbox: MicrosoftSandbox, found: Subscription) -> dict[str, Any]:
    return {
        "@odata.context": f"{sandbox.base_url}/v1.0/$metadata#subscriptions/$entity",
        "id": found.id,
        "resource": found.resource,
        "applicationId": found.client_id,
        "changeType": ",".join(
            c for c in ("created", "updated", "deleted") if c in found.change_types
        ),
        "clientState": found.client_state,
        "notificationUrl": found.notification_url,
        "lifecycleNotificationUrl": found.lifecycle_url,
        "expirationDateTime": graph_time(found.expires),
        "creatorId": found.user.oid,
        "includeResourceData": False,
        "latestSupportedTlsVersion": "v1_2",
        "encryptionCertificate": None,
        "encryptionCertificateId": None,
        "notificationQueryOptions": None,
        "notificationUrlAppId": None,
    }


# -- notifications -------------------------------------------------------------------------------
def _resource_path(changed: Changed) -> str:
    oid = changed.user.oid
    if changed.kind == "tasks":
        return f"Users/{oid}/todo/lists/{changed.container}/tasks/{changed.item_id}"
    return f"Users/{oid}/{_TYPES[changed.kind]}s/{changed.item_id}"


def _changed(sandbox: MicrosoftSandbox, changed: Changed) -> None:
    state = state_of(sandbox)
    for found in _live(sandbox):
        if found.user is not changed.user or found.kind != changed.kind:
            continue
        if found.container is not None and found.container != changed.container:
            continue
        if changed.change not in found.change_types:
            continue
        resource = _resource_path(changed)
        item = {
            "subscriptionId": found.id,
            "subscriptionExpirationDateTime": graph_time(found.expires),
            "changeType": changed.change,
            "resource": resource,
            "resourceData": {
                "@odata.type": f"#Microsoft.Graph.{_TYPES[changed.kind]}",
                "@odata.id": resource,
                "@odata.etag": changed.etag,
                "id": changed.item_id,
            },
            "clientState": found.client_state,
            "tenantId": sandbox.tenant_id,
        }
        state.queue.append(Delivery(found.notification_url, item, sandbox.clock()))


def lifecycle(sandbox: MicrosoftSandbox, subscription_id: str, event: str) -> None:
    """Queue a lifecycle notification (`reauthorizationRequired`, `subscriptionRemoved`
    or `missed`) for the subscription's lifecycleNotificationUrl; `subscriptionRemoved`
    also removes the subscription, as Outlook does when it drops one."""
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"unknown lifecycle event {event}")
    with sandbox.lock:
        state = state_of(sandbox)
        found = state.subscriptions[subscription_id]
        if found.lifecycle_url is None:
            return
        item = {
            "subscriptionId": found.id,
            "subscriptionExpirationDateTime": graph_time(found.expires),
            "tenantId": sandbox.tenant_id,
            "clientState": found.client_state,
            "lifecycleEvent": event,
        }
        state.queue.append(Delivery(found.lifecycle_url, item, sandbox.clock()))
        if event == "subscriptionRemoved":
            del state.subscriptions[subscription_id]


def _check_notifications(sandbox: MicrosoftSandbox, queue: list[Delivery]) -> None:
    """With the sandbox's schema check on, queued notifications that Graph's
    changeNotificationCollection cannot hold raise SchemaDrift (recorded in the sandbox's
    `drift`) before any is sent; they stay queued."""
    if not sandbox.check_schema:
        return
    for url in dict.fromkeys(d.url for d in queue):
        body = {"value": [d.item for d in queue if d.url == url]}
        problems = graph_schema().check(body, "changeNotificationCollection")
        if problems:
            shown = "; ".join(problems[:8])
            message = f"notifications to {url} are no changeNotificationCollection: {shown}"
            sandbox.drift.append(message)
            raise SchemaDrift(message)


def pending(sandbox: MicrosoftSandbox) -> list[dict[str, Any]]:
    with sandbox.lock:
        return [d.item for d in state_of(sandbox).queue]


def flush(sandbox: MicrosoftSandbox, timeout: float = 3.0) -> list[int]:
    """POST every queued notification, one request per URL bundling its items in
    `value`; returns the status of each POST (0: no answer). Items not answered with 2xx
    stay queued for a later flush unless they have waited more than 4 hours."""
    with sandbox.lock:
        state = state_of(sandbox)
        _check_notifications(sandbox, state.queue)
        queued, state.queue = state.queue, []
        now = sandbox.clock()
    by_url: dict[str, list[Delivery]] = {}
    for delivery in queued:
        if now - delivery.queued <= RETRY_FOR:
            by_url.setdefault(delivery.url, []).append(delivery)
    statuses: list[int] = []
    failed: list[Delivery] = []
    session = requests.Session()
    session.trust_env = False
    try:
        for url, deliveries in by_url.items():
            body = {"value": [d.item for d in deliveries]}
            try:
                status = session.post(url, json=body, timeout=timeout).status_code
            except requests.RequestException:
                status = 0
            statuses.append(status)
            if not 200 <= status < 300:
                failed += deliveries
    finally:
        session.close()
    with sandbox.lock:
        state.queue[:0] = failed
    return statuses
