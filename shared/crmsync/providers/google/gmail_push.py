"""Gmail push notifications: the address crmsync routes them by, and what it does when
one arrives.

Gmail's `users.watch` publishes a Pub/Sub message per mailbox change, whose data is
`{"emailAddress": ..., "historyId": ...}` and nothing else: no tenant, no connection.
The mailbox directory routes the address, kept only as a digest, to every connection
of that mailbox (one address may be connected in several tenants); each active
connection that records mail gets a cycle a little later, so a burst of changes
collapses into one cycle. A notification for an address no connection has any more (a
watch outlives a disconnect by up to a week) is acknowledged and does nothing.

Neither the address nor anything else of a notification appears in an error or a log
line: only tenant and connection ids do.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crmsync.errors import PermanentError
from crmsync.ports import MailboxDirectory
from crmsync.providers.google.client import GoogleClient

log = logging.getLogger("crmsync.providers.google.gmail_push")

MAX_NOTIFICATION_BYTES = 4096  # a real one is a few hundred bytes at most
MAX_HISTORY_ID = 2**64 - 1  # a uint64 in the Gmail API
MAIL_SERVICE = "mail"  # the connection service that records mail (EML-1)

_DIGITS = re.compile(r"[0-9]{1,20}")


class BadNotification(ValueError):
    """The data of a Pub/Sub message is not a Gmail notification; the message says
    what is wrong with it and holds nothing of the data itself."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One Gmail notification: this mailbox has changes up to `history_id`."""

    address: str = field(repr=False)  # personal data: kept out of reprs and logs
    history_id: int


ConnectionRecordOf = Callable[[str, str], Mapping[str, Any] | None]
Enqueue = Callable[[str, str], object]


def mailbox_address(client: GoogleClient) -> str:
    """The connected account's Gmail address (users.getProfile), the one its
    notifications name; raises crmsync's errors, PermissionDenied without a Gmail
    scope."""
    request = client.service("gmail", "v1").users().getProfile(userId="me")
    address = client.execute(request, "gmail users.getProfile").get("emailAddress")
    if not isinstance(address, str) or "@" not in address:
        raise PermanentError("gmail users.getProfile: the profile has no e-mail address")
    return address


def parse_notification(data: bytes) -> Notification:
    """The notification in a Pub/Sub message's data (already base64-decoded); raises
    BadNotification when it is not one. Fields other than the two it reads are
    ignored, as Gmail may add some."""
    if len(data) > MAX_NOTIFICATION_BYTES:
        raise BadNotification(f"the notification is over {MAX_NOTIFICATION_BYTES} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadNotification("the notification is not JSON") from None
    if not isinstance(body, dict):
        raise BadNotification("the notification is not a JSON object")
    return Notification(_address(body), _history_id(body))


def _address(body: Mapping[str, Any]) -> str:
    if "emailAddress" not in body:
        raise BadNotification("the notification has no emailAddress")
    address = body["emailAddress"]
    if not isinstance(address, str):
        raise BadNotification("the notification's emailAddress is not a string")
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or any(c.isspace() for c in address):
        raise BadNotification("the notification's emailAddress is not an e-mail address")
    return address


def _history_id(body: Mapping[str, Any]) -> int:
    if "historyId" not in body:
        raise BadNotification("the notification has no historyId")
    value = body["historyId"]
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_HISTORY_ID:
        raise BadNotification("the notification's historyId is not an unsigned 64-bit number")
    return value


def on_gmail_notification(
    notification: Notification,
    mailboxes: MailboxDirectory,
    connection_record_of: ConnectionRecordOf,
    enqueue: Enqueue,
) -> int:
    """RUN-3: ask for a cycle of every active connection of the mailbox that records
    mail. `connection_record_of(tenant, connection)` is the connection's record (None
    when it is gone); `enqueue(tenant, connection)` asks for its debounced cycle.
    Returns how many connections were asked for one: 0 for an unknown mailbox."""
    asked = 0
    for tenant, connection in mailboxes.mailbox_connections(notification.address):
        record = connection_record_of(tenant, connection)
        if record is None or not _records_mail(record):
            continue
        enqueue(tenant, connection)
        log.info(
            "gmail notification: cycle asked", extra={"tenant": tenant, "connection": connection}
        )
        asked += 1
    if not asked:
        log.info("gmail notification for no connection that records mail")
    return asked


def _records_mail(record: Mapping[str, Any]) -> bool:
    return record.get("status") == "active" and MAIL_SERVICE in (record.get("services") or ())
