"""Google Calendar push notifications: channels crmsync opens, and what it does when
Google calls one.

A notification has no body; it only says "this calendar changed", so it enqueues a
cycle of the channel's connection a little later (bursts collapse into one cycle).
It is accepted only for a channel crmsync opened, with that channel's secret token
and resource id, before the channel expires; anything else is refused with a 4xx and
has no effect. The first message of every channel (state `sync`) is acknowledged and
ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from crmsync.errors import SyncError
from crmsync.ports import Channel, ChannelDirectory, TaskQueue
from crmsync.queue import DEBOUNCE, task_name

CHANNEL_TTL = timedelta(days=7)  # Google may grant less; its answer is what counts
RENEW_MARGIN = timedelta(days=1)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str


def new_token() -> tuple[str, str]:
    """A channel's secret token (sent to Google) and the digest crmsync keeps."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def on_notification(
    headers: Mapping[str, str],
    channels: ChannelDirectory,
    queue: TaskQueue,
    now: datetime,
    debounce: timedelta = DEBOUNCE,
) -> Answer:
    """What the `google_webhook` function answers to one notification."""
    lookup = {k.lower(): v for k, v in headers.items()}
    channel_id = lookup.get("x-goog-channel-id", "")
    channel = channels.channel(channel_id) if channel_id else None
    if channel is None or channel.provider != "google":
        return Answer(404, "unknown channel")
    given = lookup.get("x-goog-channel-token", "")
    if not hmac.compare_digest(digest(given), channel.token_digest):
        return Answer(403, "wrong channel token")
    if lookup.get("x-goog-resource-id") != channel.resource_id:
        return Answer(403, "wrong resource")
    if channel.expires <= now:
        return Answer(410, "channel expired")
    state = lookup.get("x-goog-resource-state", "")
    if state == "sync":
        return Answer(200, "channel confirmed")
    if state not in ("exists", "not_exists"):
        return Answer(400, "unknown resource state")
    queue.enqueue(
        channel.tenant,
        channel.connection,
        name=task_name(channel.tenant, channel.connection, now, debounce),
        not_before=now + debounce,
        trigger="push",
    )
    return Answer(202, "cycle enqueued")


def channel_record(
    channel_id: str,
    tenant: str,
    connection: str,
    resource_id: str,
    token_digest: str,
    expires: datetime,
) -> Channel:
    return Channel(channel_id, tenant, connection, "google", resource_id, token_digest, expires)


class Watcher(Protocol):
    """The calendar side of a push channel (GoogleCalendar)."""

    def watch(self, address: str, channel_id: str, token: str, ttl: timedelta) -> Any: ...
    def stop(self, channel_id: str, resource_id: str) -> None: ...


def open_channel(
    calendar: Watcher,
    channels: ChannelDirectory,
    tenant: str,
    connection: str,
    address: str,
    ttl: timedelta = CHANNEL_TTL,
) -> Channel:
    """A new push channel on the connection's calendar, with a fresh secret token
    (RUN-5: opened at connect, and again to renew)."""
    token, kept = new_token()
    channel_id = f"cs-{secrets.token_hex(16)}"
    watched = calendar.watch(address, channel_id, token, ttl)
    channel = channel_record(
        channel_id, tenant, connection, watched.resource_id, kept, watched.expires
    )
    channels.save_channel(channel)
    return channel


def renew_channels(
    calendar: Watcher,
    channels: ChannelDirectory,
    current: list[Channel],
    address: str,
    now: datetime,
    margin: timedelta = RENEW_MARGIN,
) -> list[str]:
    """RUN-5: replace channels that expire within `margin` before they do: the new one
    first, then the old one is stopped, so no change goes unnoticed in between. Returns
    what failed; the connection is then still synced on its schedule, only later."""
    problems: list[str] = []
    for channel in current:
        if channel.provider != "google" or channel.expires - now > margin:
            continue
        try:
            open_channel(calendar, channels, channel.tenant, channel.connection, address)
        except SyncError as exc:
            problems.append(f"channel not renewed ({type(exc).__name__}); polling on schedule")
            continue
        stop_channels(calendar, channels, [channel])
    return problems


def stop_channels(calendar: Watcher, channels: ChannelDirectory, replaced: list[Channel]) -> None:
    """Stop channels a new one replaces and forget them. One Google cannot stop now
    expires on its own; once forgotten, its notifications are refused."""
    for channel in replaced:
        if channel.provider != "google":
            continue
        with contextlib.suppress(SyncError):
            calendar.stop(channel.id, channel.resource_id)
        channels.drop_channel(channel.id)
