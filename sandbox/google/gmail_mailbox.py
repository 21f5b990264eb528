"""One Gmail mailbox in the Google sandbox: its labels, its messages, its history and
its watch, with Gmail's rules for changing them.

Every change to a message is a history record with a new mailbox history id: a message
added, a message deleted, labels added to a message, labels removed from one (a
request that adds and removes gets one record of each). History ids grow with gaps, as
Gmail's do, and a message's `historyId` is its last record's. The mailbox keeps its
records after `floor`; an older `startHistoryId` answers 404. Labels are not history:
creating, renaming or deleting one records nothing, except that a deleted label is
removed from its messages first (a `labelRemoved` record per message).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.google.core import Account, ApiError, GoogleSandbox
from sandbox.google.gmail_mime import Rendered, render
from sandbox.google.gmail_pubsub import courier

# System labels as labels.list shows them: id (= name) and the visibilities it names.
SYSTEM_LABELS: dict[str, tuple[str | None, str | None]] = {
    "CHAT": ("hide", "labelHide"),
    "SENT": (None, None),
    "INBOX": (None, None),
    "IMPORTANT": ("hide", "labelHide"),
    "TRASH": ("hide", "labelHide"),
    "DRAFT": (None, None),
    "SPAM": ("hide", "labelHide"),
    "CATEGORY_FORUMS": (None, None),
    "CATEGORY_UPDATES": (None, None),
    "CATEGORY_PERSONAL": (None, None),
    "CATEGORY_PROMOTIONS": (None, None),
    "CATEGORY_SOCIAL": (None, None),
    "STARRED": (None, None),
    "UNREAD": (None, None),
}
# System labels a client can neither add to nor remove from a message.
FIXED_LABELS = frozenset({"CHAT", "SENT", "DRAFT"})
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
MESSAGE_VISIBILITY = ("show", "hide")
LABEL_VISIBILITY = ("labelShow", "labelShowIfUnread", "labelHide")
# The colours labels.create and labels.patch accept (the discovery document's list).
_PALETTE = (
    "000000 434343 666666 999999 cccccc efefef f3f3f3 ffffff fb4c2f ffad47 fad165 16a766 "
    "43d692 4a86e8 a479e2 f691b3 f6c5be ffe6c7 fef1d1 b9e4d0 c6f3de c9daf8 e4d7f5 fcdee8 "
    "efa093 ffd6a2 fce8b3 89d3b2 a0eac9 a4c2f4 d0bcf1 fbc8d9 e66550 ffbc6b fcda83 44b984 "
    "68dfa9 6d9eeb b694e8 f7a7c0 cc3a21 eaa041 f2c960 149e60 3dc789 3c78d8 8e63ce e07798 "
    "ac2b16 cf8933 d5ae49 0b804b 2a9c68 285bac 653e9b b65775 822111 a46a21 aa8831 076239 "
    "1a764d 1c4587 41236d 83334c 464646 e7e7e7 0d3472 b6cff5 0d3b44 98d7e4 3d188e e3d7ff "
    "711a36 fbd3e0 8a1c0a f2b2a8 7a2e0b ffc8af 7a4706 ffdeb5 594c05 fbe983 684e07 fdedc1 "
    "0b4f30 b3efd3 04502e a2dcc1 c2c2c2 4986e7 2da2bb b99aff 994a64 f691b2 ff7537 ffad46 "
    "662e37 ebdbde cca6ac 094228 42d692 16a765 757575 1e53b8 007286 7858c3 c2185b d93025 "
    "54240e 633e04 521d28 202124 083018"
)
COLORS = frozenset("#" + c for c in _PALETTE.split())


@dataclass
class Label:
    id: str
    name: str
    type: str  # "system" or "user"
    message_list_visibility: str | None
    label_list_visibility: str | None
    color: dict[str, str] | None = None


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    internal_date: int  # ms since the epoch
    history_id: int
    order: int  # arrival order, the tie-break of equal internal dates
    rfc822_id: str | None  # the Message-ID header, which threads replies
    _rendered: Rendered | None = field(default=None, repr=False)

    def rendered(self) -> Rendered:
        if self._rendered is None:
            self._rendered = render(self.raw, self.id)
        return self._rendered


@dataclass(frozen=True)
class Change:
    """One history record: what happened to one message."""

    id: int
    kind: str  # one of HISTORY_TYPES
    message_id: str
    thread_id: str
    labels_after: tuple[str, ...]  # the message's labels after the change
    labels_before: tuple[str, ...]
    changed: tuple[str, ...] = ()  # the labels added or removed

    def touched(self) -> frozenset[str]:
        """The labels the change concerns: those the message had before or after."""
        return frozenset(self.labels_before) | frozenset(self.labels_after)


@dataclass
class Watch:
    topic: str
    label_ids: frozenset[str]
    behavior: str  # "include" or "exclude"
    expiration_ms: int

    def wants(self, changes: Iterable[Change]) -> bool:
        """Whether the changes call for a notification: without labels every change
        does; under `include` a change of a message that had or has a watched label;
        under `exclude` a change of a message that had and has none of them."""
        for change in changes:
            if not self.label_ids:
                return True
            hit = bool(change.touched() & self.label_ids)
            if hit == (self.behavior == "include"):
                return True
        return False


def _system_labels() -> dict[str, Label]:
    return {
        name: Label(name, name, "system", message, listed)
        for name, (message, listed) in SYSTEM_LABELS.items()
    }


@dataclass
class Mailbox:
    """All Gmail data of one account."""

    history_id: int = 1000
    labels: dict[str, Label] = field(default_factory=_system_labels)
    messages: dict[str, StoredMessage] = field(default_factory=dict)
    history: list[Change] = field(default_factory=list)
    floor: int = 0  # the oldest startHistoryId history.list still answers
    watch: Watch | None = None
    next_label: int = 1
    arrivals: int = 0

    # -- history -------------------------------------------------------------------------------
    def _record(
        self,
        rng: random.Random,
        kind: str,
        message: StoredMessage,
        before: Iterable[str],
        changed: Iterable[str] = (),
    ) -> Change:
        self.history_id += rng.randint(1, 4)
        change = Change(
            self.history_id,
            kind,
            message.id,
            message.thread_id,
            tuple(message.label_ids),
            tuple(before),
            tuple(changed),
        )
        self.history.append(change)
        message.history_id = self.history_id
        return change

    def expire_history(self) -> None:
        """Forget every record so far: older start ids answer 404 from now on."""
        self.floor = self.history_id
        self.history.clear()

    def changes_after(self, start: int) -> list[Change]:
        if start < self.floor:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        return [change for change in self.history if change.id > start]

    # -- messages ------------------------------------------------------------------------------
    def add_message(
        self,
        rng: random.Random,
        raw: bytes,
        label_ids: Iterable[str],
        internal_date: int,
        rfc822_id: str | None,
        replied_to: Iterable[str],
    ) -> Change:
        """Store a new message (in the thread of a message it replies to, if any)."""
        message_id = self._new_message_id(rng)
        thread_id = message_id
        wanted = {ref for ref in replied_to if ref}
        for known in sorted(self.messages.values(), key=lambda m: m.order):
            if known.rfc822_id is not None and known.rfc822_id in wanted:
                thread_id = known.thread_id
        self.arrivals += 1
        labels = list(dict.fromkeys(label_ids))
        message = StoredMessage(
            message_id, thread_id, raw, labels, internal_date, 0, self.arrivals, rfc822_id
        )
        self.messages[message_id] = message
        return self._record(rng, "messageAdded", message, ())

    def _new_message_id(self, rng: random.Random) -> str:
        while True:
            candidate = format(rng.getrandbits(60) | (1 << 60), "x")  # 16 hex digits
            if candidate not in self.messages:
                return candidate

    def message(self, message_id: str) -> StoredMessage:
        if not message_id or any(c not in "0123456789abcdef" for c in message_id.lower()):
            raise ApiError(400, "invalidArgument", "Invalid id value")
        found = self.messages.get(message_id.lower())
        if found is None:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        return found

    def relabel(
        self,
        rng: random.Random,
        message: StoredMessage,
        add: Iterable[str],
        remove: Iterable[str],
    ) -> list[Change]:
        """Add then remove labels; each that changes anything is a history record."""
        changes = []
        before = list(message.label_ids)
        added = [label for label in dict.fromkeys(add) if label not in message.label_ids]
        if added:
            message.label_ids = [*message.label_ids, *added]
            changes.append(self._record(rng, "labelAdded", message, before, added))
        before = list(message.label_ids)
        removed = [label for label in dict.fromkeys(remove) if label in message.label_ids]
        if removed:
            message.label_ids = [label for label in message.label_ids if label not in removed]
            changes.append(self._record(rng, "labelRemoved", message, before, removed))
        return changes

    def delete_message(self, rng: random.Random, message: StoredMessage) -> Change:
        """Delete a message for good (not to the trash)."""
        del self.messages[message.id]
        before = list(message.label_ids)
        message.label_ids = []
        return self._record(rng, "messageDeleted", message, before)

    def check_labels(self, label_ids: Iterable[str]) -> None:
        """Labels a client adds or removes: known ones, and not those only Gmail sets."""
        for label_id in label_ids:
            if label_id not in self.labels or label_id in FIXED_LABELS:
                raise ApiError(400, "invalidArgument", f"Invalid label: {label_id}")

    # -- labels --------------------------------------------------------------------------------
    def label(self, label_id: str) -> Label:
        found = self.labels.get(label_id)
        if found is None:
            raise ApiError(404, "notFound", "Requested entity was not found.")
        return found

    def user_label(self, label_id: str) -> Label:
        found = self.label(label_id)
        if found.type != "user":
            raise ApiError(400, "invalidArgument", f"Invalid label: {label_id}")
        return found

    def check_name(self, name: Any, renamed: Label | None = None) -> str:
        """A label name no other label has, in any letter case (Gmail's 409)."""
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "invalidArgument", "Invalid label name")
        for label in self.labels.values():
            if label is not renamed and label.name.lower() == name.lower():
                raise ApiError(409, "duplicate", "Label name exists or conflicts")
        return name

    def new_label_id(self) -> str:
        label_id = f"Label_{self.next_label}"
        self.next_label += 1
        return label_id

    def delete_label(self, rng: random.Random, label: Label) -> list[Change]:
        changes = []
        for message in sorted(self.messages.values(), key=lambda m: m.order):
            changes += self.relabel(rng, message, (), (label.id,))
        del self.labels[label.id]
        return changes

    def label_resource(self, label: Label, *, color: bool, counts: bool) -> dict[str, Any]:
        """A label as labels.list (no colour, no counts), a write (no counts) or
        labels.get (everything) shows it."""
        shown: dict[str, Any] = {"id": label.id, "name": label.name}
        if label.message_list_visibility is not None:
            shown["messageListVisibility"] = label.message_list_visibility
        if label.label_list_visibility is not None:
            shown["labelListVisibility"] = label.label_list_visibility
        shown["type"] = label.type
        if color and label.color is not None:
            shown["color"] = dict(label.color)
        if not counts:
            return shown
        carrying = [m for m in self.messages.values() if label.id in m.label_ids]
        unread = [m for m in carrying if "UNREAD" in m.label_ids]
        shown["messagesTotal"] = len(carrying)
        shown["messagesUnread"] = len(unread)
        shown["threadsTotal"] = len({m.thread_id for m in carrying})
        shown["threadsUnread"] = len({m.thread_id for m in unread})
        return shown


def mailbox_of(account: Account) -> Mailbox:
    """The account's mailbox, made empty (system labels only) on first use."""
    mailbox = account.data.setdefault("gmail", Mailbox())
    assert isinstance(mailbox, Mailbox)
    return mailbox


def ms(moment: datetime) -> int:
    """A moment in Gmail's milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


def announce(
    sandbox: GoogleSandbox, account: Account, mailbox: Mailbox, changes: list[Change]
) -> None:
    """One notification for the changes of one request, when the mailbox's live watch
    wants them; the courier publishes it later, outside the sandbox's lock."""
    watch = mailbox.watch
    if watch is None or not changes or watch.expiration_ms <= ms(sandbox.clock()):
        return
    if watch.wants(changes):
        data = {"emailAddress": account.email, "historyId": mailbox.history_id}
        courier(sandbox).post(watch.topic, json.dumps(data).encode())


def label_body(body: dict[str, Any], current: Label | None) -> dict[str, Any]:
    """The label fields a create, patch or update sets, checked as Gmail checks them."""
    fields: dict[str, Any] = {}
    for key, allowed in (
        ("messageListVisibility", MESSAGE_VISIBILITY),
        ("labelListVisibility", LABEL_VISIBILITY),
    ):
        if key in body and body[key] is not None:
            if body[key] not in allowed:
                raise ApiError(400, "invalidArgument", f"Invalid {key}: {body[key]}")
            fields[key] = body[key]
    color = body.get("color")
    if color is not None:
        if not isinstance(color, dict) or set(color) - {"backgroundColor", "textColor"}:
            raise ApiError(400, "invalidArgument", "Invalid color")
        background, text = color.get("backgroundColor"), color.get("textColor")
        if not isinstance(background, str) or not isinstance(text, str):
            raise ApiError(400, "invalidArgument", "Invalid color")
        if background.lower() not in COLORS or text.lower() not in COLORS:
            raise ApiError(
                400, "invalidArgument", f"Label color {background} is not on the allowed palette"
            )
        fields["color"] = {"backgroundColor": background.lower(), "textColor": text.lower()}
    if current is not None and current.type == "system":
        raise ApiError(400, "invalidArgument", f"Invalid label: {current.id}")
    return fields
