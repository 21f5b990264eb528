"""crmsync's outbound event stream (BEY-7): what the CRM may want to know, published to
a Pub/Sub topic its systems subscribe to.

Events (each a JSON object, `type` also a message attribute, so a subscription can
filter on `attributes.type` and on `attributes.tenant`):

  cycle.finished           a cycle ended: its status, trigger, counts per kind and
                           outcome, and its record-level actions as ids and field names
  conflict.waiting         a change waits for the user (a conflict, or ask-before-apply)
  connection.connected     a user connected, or reconnected, an account
  connection.needs_reauth  a grant stopped working: the user has to reconnect
  connection.disconnected  a user's connection was disconnected and erased

An event names records by their ids and changed fields by name; it never carries field
values, tokens or message content. Its `id` is the same each time the same fact is
published again, so a subscriber that sees an event twice (Pub/Sub delivers at least
once) can tell. The stream tells; the run history in the store stays the record of what
happened: an event that cannot be published is logged and the cycle goes on.

The Pub/Sub client is built on the first publish, so that importing this module costs
nothing at a function's cold start.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from crmsync.errors import Undeclared
from crmsync.ports import EventStream, RunStatus

log = logging.getLogger("crmsync.outbound")

VERSION = 1
TYPES = (
    "cycle.finished",
    "conflict.waiting",
    "connection.connected",
    "connection.needs_reauth",
    "connection.disconnected",
)
TOPIC_PATH = re.compile(r"projects/[^/]+/topics/[^/]+")
MAX_ITEMS = 500  # record-level actions per cycle.finished; the rest are counted
WAITING = ("conflict", "hold")  # item outcomes that leave a change waiting for the user


class NoEvents:
    """No outbound stream configured: events are dropped."""

    def publish(self, event: Mapping[str, Any]) -> None:
        return None


class MemoryEvents:
    """Events kept in a list (tests)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: Mapping[str, Any]) -> None:
        self.events.append(json.loads(encode(event)))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


class PubSubEvents:
    """The EventStream over a Pub/Sub topic (`projects/P/topics/T`). `publisher` is a
    `pubsub_v1.PublisherClient` or a function that builds one on first use. Each publish
    waits for Pub/Sub's acknowledgement (at most `timeout` seconds), because a Cloud
    Function's work after its answer is not guaranteed to run."""

    def __init__(self, topic: str, publisher: Any | None = None, *, timeout: float = 10.0) -> None:
        if not TOPIC_PATH.fullmatch(topic):
            raise ValueError(f"not a topic path (projects/P/topics/T): {topic!r}")
        self.topic = topic
        self.timeout = timeout
        self._publisher = publisher
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._publisher is None:
                from google.cloud.pubsub_v1 import PublisherClient

                self._publisher = PublisherClient()
            elif callable(self._publisher) and not hasattr(self._publisher, "publish"):
                self._publisher = self._publisher()
            return self._publisher

    def publish(self, event: Mapping[str, Any]) -> None:
        attributes = {
            "type": str(event["type"]),
            "tenant": str(event["tenant"]),
            "connection": str(event.get("connection") or ""),
            "event_id": str(event["id"]),
        }
        future = self._client().publish(self.topic, encode(event), **attributes)
        future.result(timeout=self.timeout)


def publish_all(stream: EventStream, events: Iterable[Mapping[str, Any]]) -> int:
    """Publish each event; one that fails is logged (its type and id, never its content)
    and the rest still go. Returns how many were published."""
    published = 0
    for event in events:
        try:
            stream.publish(event)
            published += 1
        except Undeclared:  # a function that may not publish: a defect, not an outage
            raise
        except Exception as exc:  # a stream that is down never fails a cycle
            log.warning(
                "event not published",
                extra={
                    "tenant": event.get("tenant"),
                    "connection": event.get("connection"),
                    "event_type": event.get("type"),
                    "event_id": event.get("id"),
                    "error": type(exc).__name__,
                },
            )
    return published


# -- the events ---------------------------------------------------------------------------
def event(
    kind: str,
    event_id: str,
    tenant: str,
    connection: str,
    user: str,
    at: datetime,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    if kind not in TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    return {
        "type": kind,
        "version": VERSION,
        "id": event_id,
        "tenant": tenant,
        "connection": connection,
        "user": user,
        "at": at,
        "data": dict(data),
    }


def cycle_events(
    tenant: str,
    connection: str,
    user: str,
    run: Mapping[str, Any],
    items: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """What one finished cycle tells the CRM: cycle.finished, a conflict.waiting for each
    change it left waiting, and connection.needs_reauth when the grant stopped working."""
    run_id = str(run["id"])
    at = run.get("ended") or run["started"]
    actions = [_action(item) for item in items if item.get("outcome") not in ("none", None)]
    finished = {
        "run": run_id,
        "status": run["status"],
        "trigger": run.get("trigger"),
        "started": run.get("started"),
        "ended": run.get("ended"),
        "counts": run.get("counts", {}),
        "unread": list(run.get("unread", [])),
        "errors": len(run.get("errors", [])),
        "pending": list(run.get("pending", [])),
        "items": actions[:MAX_ITEMS],
        "items_left_out": max(0, len(actions) - MAX_ITEMS),
    }
    out = [event("cycle.finished", f"{run_id}/finished", tenant, connection, user, at, finished)]
    waiting = [a for a in actions if a["outcome"] in WAITING]
    for number, action in enumerate(waiting):
        out.append(
            event(
                "conflict.waiting",
                f"{run_id}/waiting/{number}",
                tenant,
                connection,
                user,
                at,
                {"run": run_id, **action},
            )
        )
    if run["status"] == RunStatus.NEEDS_REAUTH:
        out.append(needs_reauth(tenant, connection, user, at, run_id))
    return out


def needs_reauth(
    tenant: str, connection: str, user: str, at: datetime, run_id: str = ""
) -> dict[str, Any]:
    event_id = f"{run_id}/needs_reauth" if run_id else f"{connection}/needs_reauth/{_stamp(at)}"
    return event(
        "connection.needs_reauth",
        event_id,
        tenant,
        connection,
        user,
        at,
        {"run": run_id or None},
    )


def connection_event(
    kind: str,
    tenant: str,
    connection: str,
    user: str,
    at: datetime,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """connection.connected / connection.disconnected, once per moment it happened."""
    name = kind.removeprefix("connection.")
    return event(kind, f"{connection}/{name}/{_stamp(at)}", tenant, connection, user, at, data)


def _action(item: Mapping[str, Any]) -> dict[str, Any]:
    """A record-level action as ids and field names: no values leave crmsync this way."""
    return {
        "kind": item.get("kind"),
        "outcome": item.get("outcome"),
        "direction": item.get("direction"),
        "crm_id": item.get("crm_id"),
        "provider_id": item.get("provider_id"),
        "fields": list(item.get("fields") or []),
        "failed": item.get("outcome") == "fail",
    }


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%M%S.%f")


def encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, default=_json_default, sort_keys=True).encode()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not an event value")
