"""Microsoft Graph change notifications: the subscriptions crmsync keeps on a mailbox,
and what it does when Graph calls the graph_webhook function. The only place Graph's
subscription and notification field names appear.

A connection has one subscription per kind it syncs (the calendar's events, the sync
folder's contacts, the sync list's To Do tasks), each a `Channel` whose id is Graph's
subscription id and whose `resource_id` is the kind; one that records mail has one more
on its messages (`resource_id` "mail", EML-1), whose notifications ask for a mail pass.
Each has a secret client state of its own, of which only a digest is kept, and lives
as long as Graph allows (10,080 minutes for Outlook items, 4,230 for To Do tasks); it is
extended a day before it runs out, and made again when Graph no longer has it.

A notification names no change crmsync could trust: it wakes the connection up, and a
cycle a little later reads the change feeds (bursts collapse into one cycle). An item
counts only for a subscription crmsync made, with that subscription's client state,
before it expires; a POST with no such item is refused with a 4xx and has no effect.
Lifecycle notifications: `reauthorizationRequired` and `subscriptionRemoved` make the
subscription due for renewal and enqueue a cycle, after which the worker extends it
(which reauthorizes it) or makes it again; `missed` forgets the kind's change cursor,
so the next cycle lists that kind whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from crmsync import model
from crmsync.errors import NotFound, PermanentError, SyncError
from crmsync.model import Kind
from crmsync.ports import Channel, ChannelDirectory, PushAnswer, PushRequest, TaskQueue
from crmsync.providers.microsoft.client import GraphClient
from crmsync.queue import DEBOUNCE, scope, task_name

PROVIDER = "microsoft"
RENEW_MARGIN = timedelta(days=1)
# The longest life Graph gives a subscription without resource data, per kind.
LIFETIME: dict[str, timedelta] = {
    "contact": timedelta(minutes=10_080),
    "activity": timedelta(minutes=10_080),
    "todo": timedelta(minutes=4_230),
    "mail": timedelta(minutes=10_080),
}
MAIL = "mail"  # the messages' subscription (EML-1): a new message, a category changed
MAIL_RESOURCE = "me/messages"
# Asked for a minute short of the longest, so a clock a little ahead of Graph's is not
# refused for asking too much.
SKEW = timedelta(minutes=1)
CHANGES = "created,updated,deleted"
MAX_TOKEN = 1024  # Graph's validation tokens are about a hundred characters
MAX_ID = 128
RENEWED = frozenset({"reauthorizationRequired", "subscriptionRemoved"})
MISSED = "missed"


def new_client_state() -> tuple[str, str]:
    """A subscription's secret client state (sent to Graph) and the digest crmsync keeps."""
    state = secrets.token_urlsafe(32)
    return state, digest(state)


def digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- subscriptions at Graph --------------------------------------------------------------
class SubscriptionApi(Protocol):
    """What crmsync does with a mailbox's subscriptions at Graph (Subscriptions)."""

    def create(
        self, kind: str, address: str, client_state: str, expires: datetime
    ) -> tuple[str, datetime]: ...
    def extend(self, subscription_id: str, expires: datetime) -> datetime: ...
    def delete(self, subscription_id: str) -> None: ...


class Subscriptions:
    """Graph's subscriptions of one mailbox, through its client; `resources` gives, per
    kind, what a subscription names (asked for only when one is made)."""

    def __init__(self, client: GraphClient, resources: Mapping[str, Callable[[], str]]) -> None:
        self.client = client
        self.resources = dict(resources)

    def create(
        self, kind: str, address: str, client_state: str, expires: datetime
    ) -> tuple[str, datetime]:
        """A new subscription on the kind's resource, its notifications and lifecycle
        notifications to `address` (Graph checks it answers its handshake first).
        Returns its id and the expiry Graph granted."""
        body = {
            "changeType": "created,updated" if kind == MAIL else CHANGES,
            "notificationUrl": address,
            "lifecycleNotificationUrl": address,
            "resource": MAIL_RESOURCE if kind == MAIL else self.resources[kind](),
            "expirationDateTime": graph_time(expires),
            "clientState": client_state,
        }
        made = self.client.request("POST", "subscriptions", "graph subscriptions.create", body=body)
        return str(made["id"]), _expiry(made)

    def extend(self, subscription_id: str, expires: datetime) -> datetime:
        """A later expiry, which also reauthorizes the subscription; NotFound when Graph
        no longer has it (removed, or expired)."""
        answer = self.client.request(
            "PATCH",
            f"subscriptions/{subscription_id}",
            "graph subscriptions.update",
            body={"expirationDateTime": graph_time(expires)},
        )
        return _expiry(answer)

    def delete(self, subscription_id: str) -> None:
        """Delete the subscription; one Graph no longer has is gone already."""
        with contextlib.suppress(NotFound):
            self.client.request(
                "DELETE", f"subscriptions/{subscription_id}", "graph subscriptions.delete"
            )


def _expiry(answer: Mapping[str, Any]) -> datetime:
    expires = model.parse_instant(answer.get("expirationDateTime"))
    if expires is None:
        raise PermanentError("Graph answered a subscription without its expiry")
    return expires


# -- crmsync's channels ----------------------------------------------------------------
def open_subscription(
    subscriptions: SubscriptionApi,
    channels: ChannelDirectory,
    tenant: str,
    connection: str,
    kind: str,
    address: str,
    now: datetime,
) -> Channel:
    """A new subscription on the kind, with a fresh client state, for as long as Graph
    allows (RUN-5), recorded as the connection's channel."""
    state, kept = new_client_state()
    wanted = now + LIFETIME[kind] - SKEW
    subscription_id, expires = subscriptions.create(kind, address, state, wanted)
    channel = Channel(subscription_id, tenant, connection, PROVIDER, kind, kept, expires)
    channels.save_channel(channel)
    return channel


def open_subscriptions(
    subscriptions: SubscriptionApi,
    channels: ChannelDirectory,
    tenant: str,
    connection: str,
    kinds: Iterable[str],
    address: str,
    now: datetime,
    replaced: list[Channel],
) -> list[str]:
    """A subscription per kind, each replacing the connection's old one of its kind
    (the new one first, so no change goes unnoticed in between); old ones of kinds no
    longer synced are deleted too. Returns what failed: an old subscription of a kind
    whose new one failed is kept."""
    wanted = list(kinds)
    problems: list[str] = []
    for kind in wanted:
        try:
            open_subscription(subscriptions, channels, tenant, connection, kind, address, now)
        except SyncError as exc:
            problems.append(f"{kind} subscription not made ({type(exc).__name__})")
            continue
        stop_subscriptions(subscriptions, channels, [c for c in replaced if c.resource_id == kind])
    stale = [c for c in replaced if c.resource_id not in wanted and c.resource_id != MAIL]
    stop_subscriptions(subscriptions, channels, stale)
    return problems


def renew_subscriptions(
    subscriptions: SubscriptionApi,
    channels: ChannelDirectory,
    current: list[Channel],
    address: str,
    now: datetime,
    margin: timedelta = RENEW_MARGIN,
    wanted: Iterable[str] = (),
) -> list[str]:
    """RUN-5: extend the subscriptions that expire within `margin` to as long as Graph
    allows; one Graph no longer has is made again (a new id, a new client state); a
    `wanted` kind with none is made. Returns what failed; the connection is then still
    synced on its schedule."""
    problems: list[str] = []
    held = {c.resource_id for c in current if c.provider == PROVIDER}
    for kind in wanted:
        if kind in held or kind not in LIFETIME or not current:
            continue
        try:
            connection = current[0]
            open_subscription(
                subscriptions,
                channels,
                connection.tenant,
                connection.connection,
                kind,
                address,
                now,
            )
        except SyncError as exc:
            problems.append(f"{kind} subscription not made ({type(exc).__name__}); polling")
    for channel in current:
        kind = channel.resource_id
        if channel.provider != PROVIDER or kind not in LIFETIME or channel.expires - now > margin:
            continue
        try:
            expires = subscriptions.extend(channel.id, now + LIFETIME[kind] - SKEW)
        except NotFound:
            problems += _remake(subscriptions, channels, channel, address, now)
            continue
        except SyncError as exc:
            problems.append(f"{kind} subscription not renewed ({type(exc).__name__}); polling")
            continue
        channels.save_channel(replace(channel, expires=expires))
    return problems


def _remake(
    subscriptions: SubscriptionApi,
    channels: ChannelDirectory,
    gone: Channel,
    address: str,
    now: datetime,
) -> list[str]:
    kind = gone.resource_id
    try:
        open_subscription(subscriptions, channels, gone.tenant, gone.connection, kind, address, now)
    except SyncError as exc:
        return [f"{kind} subscription not made again ({type(exc).__name__}); polling"]
    channels.drop_channel(gone.id)
    return []


def stop_subscriptions(
    subscriptions: SubscriptionApi, channels: ChannelDirectory, replaced: list[Channel]
) -> None:
    """Delete the subscriptions at Graph and forget them. One Graph cannot delete now
    expires on its own; once forgotten, its notifications are refused."""
    for channel in replaced:
        if channel.provider != PROVIDER:
            continue
        with contextlib.suppress(SyncError):
            subscriptions.delete(channel.id)
        channels.drop_channel(channel.id)


# -- notifications ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Accepted:
    channel: Channel
    lifecycle: str  # "" for a change notification


CursorForget = Callable[[str, str, Kind], None]  # tenant, connection, kind


def on_notification(
    request: PushRequest,
    channels: ChannelDirectory,
    queue: TaskQueue,
    forget_cursor: CursorForget,
    now: datetime,
    debounce: timedelta = DEBOUNCE,
    margin: timedelta = RENEW_MARGIN,
) -> PushAnswer:
    """What the `graph_webhook` function answers to one POST from Graph (RUN-1, RUN-3):
    a subscription's validation handshake, or a bundle of notifications."""
    token = request.query.get("validationToken")
    if token is not None:
        return _handshake(token)
    items = _items(request.body)
    if isinstance(items, PushAnswer):
        return items
    accepted: list[_Accepted] = []
    refused: list[PushAnswer] = []
    for item in items:
        checked = _check(item, channels, now)
        if isinstance(checked, _Accepted):
            accepted.append(checked)
        else:
            refused.append(checked)
    if not accepted:
        return refused[0]
    woken: set[tuple[str, str, str]] = set()
    for found in accepted:
        trigger = _act(found, channels, forget_cursor, now, margin)
        key = (found.channel.tenant, found.channel.connection, trigger)
        if trigger and key not in woken:
            woken.add(key)
            _enqueue(queue, found.channel, now, debounce, trigger)
    return PushAnswer(202, f"{len(accepted)} notifications accepted")


def _handshake(token: str) -> PushAnswer:
    """Graph checks a new subscription's address: the token comes back as plain text."""
    if not token or len(token) > MAX_TOKEN:
        return PushAnswer(400, "the validation token is empty or too long")
    return PushAnswer(200, "validated", text=token)


def _items(body: bytes) -> list[Any] | PushAnswer:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return PushAnswer(400, "the body is not valid JSON")
    items = parsed.get("value") if isinstance(parsed, dict) else None
    if not isinstance(items, list):
        return PushAnswer(400, "expected notifications in a `value` list")
    if not items:
        return PushAnswer(400, "the notification list is empty")
    return items


def _check(item: Any, channels: ChannelDirectory, now: datetime) -> _Accepted | PushAnswer:
    """One notification against the channel it names: known, its client state right
    (compared in constant time), not expired."""
    if not isinstance(item, dict):
        return PushAnswer(400, "a notification is not an object")
    subscription_id = item.get("subscriptionId")
    if not isinstance(subscription_id, str) or not 0 < len(subscription_id) <= MAX_ID:
        return PushAnswer(400, "a notification names no subscription")
    channel = channels.channel(subscription_id)
    if channel is None or channel.provider != PROVIDER:
        return PushAnswer(404, "unknown subscription")
    given = item.get("clientState")
    if not isinstance(given, str) or not hmac.compare_digest(digest(given), channel.token_digest):
        return PushAnswer(403, "wrong client state")
    if channel.expires <= now:
        return PushAnswer(410, "subscription expired")
    event = item.get("lifecycleEvent")
    return _Accepted(channel, event if isinstance(event, str) else "")


def _act(
    found: _Accepted,
    channels: ChannelDirectory,
    forget_cursor: CursorForget,
    now: datetime,
    margin: timedelta,
) -> str:
    """What an accepted notification does; the trigger of the cycle it asks for ("" for
    a lifecycle event crmsync has no use for)."""
    channel = found.channel
    if channel.resource_id == MAIL:  # a pass renews or remakes what a lifecycle asks
        if found.lifecycle in RENEWED:
            channels.save_channel(replace(channel, expires=min(channel.expires, now + margin)))
        return MAIL
    if not found.lifecycle:
        return "push"
    if found.lifecycle in RENEWED:  # the worker renews it after the cycle (RUN-5)
        due = min(channel.expires, now + margin)
        channels.save_channel(replace(channel, expires=due))
        return "renew"
    if found.lifecycle == MISSED and channel.resource_id in LIFETIME:
        kind: Kind = channel.resource_id  # type: ignore[assignment]
        forget_cursor(channel.tenant, channel.connection, kind)
        return "push"
    return ""


def _enqueue(
    queue: TaskQueue, channel: Channel, now: datetime, debounce: timedelta, trigger: str
) -> None:
    apart = scope(trigger)  # a mail pass is a task of its own (crmsync.queue)
    queue.enqueue(
        channel.tenant,
        channel.connection,
        name=task_name(
            channel.tenant,
            f"{channel.connection}-{apart}" if apart else channel.connection,
            now,
            debounce,
        ),
        not_before=now + debounce,
        trigger=trigger,
    )


def watch_messages(
    subscriptions: SubscriptionApi,
    channels: ChannelDirectory,
    held: list[Channel],
    tenant: str,
    connection: str,
    address: str,
    now: datetime,
    margin: timedelta = RENEW_MARGIN,
) -> datetime:
    """EML-1: the connection's subscription on its messages, live for more than
    `margin`: kept, extended, or made (again, when Graph no longer has it). `held` are
    the connection's channels. Returns when it runs out."""
    mine = [c for c in held if c.provider == PROVIDER and c.resource_id == MAIL]
    for channel in mine[1:]:  # one is enough
        stop_subscriptions(subscriptions, channels, [channel])
    if mine:
        channel = mine[0]
        if channel.expires - now > margin:
            return channel.expires
        try:
            expires = subscriptions.extend(channel.id, now + LIFETIME[MAIL] - SKEW)
        except NotFound:
            channels.drop_channel(channel.id)
        else:
            channels.save_channel(replace(channel, expires=expires))
            return expires
    made = open_subscription(subscriptions, channels, tenant, connection, MAIL, address, now)
    return made.expires
