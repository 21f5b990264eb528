"""A provider account in memory that implements the ProviderAccount port.

It holds records the way the provider would (only the fields it has, extra native
fields kept and never touched by sync), labels contacts (CON-2), honours idempotency
keys on create, and records the invitations that writes send (SYN-8). Custom values
(SYN-1) it holds in a record's `custom`, by the keys the tenant's mapping names and as
its transforms write them. Besides the sync label, a contact may be under other labels
of the user's (`groups`), which an address-book import can pick from (CON-9).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import NotFound
from crmsync.mail import reader
from crmsync.model import FIELD_NAMES, Kind
from crmsync.ports import LABEL_NAMES, ChangePage, CreatesOneByOne, Headline, WriteResult
from crmsync.recordlog import Entry, Faults, RecordLog
from crmsync.transforms import CustomMap

CUSTOM = "custom"  # where a record holds its custom values, by the provider's keys

REMINDER = "reminder"  # where an entry keeps its reminder's state (a native field)


class MemoryProvider(CreatesOneByOne):
    def __init__(
        self,
        clock: Callable[[], datetime],
        held: Mapping[Kind, tuple[str, ...]],
        faults: Faults | None = None,
    ) -> None:
        self.log = RecordLog("provider", clock, faults or Faults(), prefix="prov-")
        self.held = dict(held)
        self.labelled: set[str] = set()
        self.groups: dict[str, set[str]] = {}  # the user's other labels, by name
        self.invitations: list[tuple[str, str]] = []
        self.custom: dict[Kind, CustomMap] = {}

    def map_custom(self, maps: Mapping[Kind, CustomMap]) -> None:
        """The tenant's custom-field mapping, as the account is given it for a cycle."""
        self.custom = dict(maps)

    def split(self, kind: Kind, raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Fields the provider holds for this kind (custom values by the provider's
        keys among them), and its extra native fields."""
        canonical = {*FIELD_NAMES[kind], CUSTOM}
        held = {k: v for k, v in raw.items() if k in self.held[kind] or k == CUSTOM}
        extra = {k: v for k, v in raw.items() if k not in canonical}
        return held, extra

    def read(self, kind: Kind, entry: Entry) -> dict[str, Any]:
        fields = model.normalize(kind, entry.raw)
        held = {name: fields[name] for name in self.held[kind]}
        held.update(self.custom_map(kind).read(entry.raw.get(CUSTOM) or {}))
        return held

    def custom_map(self, kind: Kind) -> CustomMap:
        return self.custom.get(kind) or CustomMap()

    def _held(self, write: Write, entry: Entry | None) -> dict[str, Any]:
        """What a write sets: the fields held, custom values as the mapping writes them,
        merged with those the record holds."""
        assert write.fields is not None
        kept = self.held[write.kind]
        held = {k: model.to_plain(v) for k, v in write.fields.items() if k in kept or k == CUSTOM}
        values = self.custom_map(write.kind).write(write.fields)
        if values:
            held[CUSTOM] = model.merge_custom(entry.raw.get(CUSTOM) if entry else None, values)
        return held

    def _in_scope(self, kind: Kind, entry: Entry | None) -> bool:
        return entry is not None and (kind != "contact" or entry.id in self.labelled)

    def _record(self, kind: Kind, entry: Entry | None, record_id: str) -> SideRecord:
        record = self.log.record(kind, entry, record_id, self.read, self._in_scope(kind, entry))
        reminder = entry.extra.get(REMINDER) if entry is not None else None
        return replace(record, reminder=reminder) if reminder is not None else record

    def snooze(self, kind: Kind, record_id: str, state: str) -> None:
        """The user snoozes or dismisses the record's reminder: only its reminder
        changes, yet its version and modification time move, as Outlook's do (SYN-10)."""
        self.log.live(kind, record_id).extra[REMINDER] = state
        self.log.touch(kind, record_id, remote=False)

    def _written(self) -> None:
        self.log.faults.after_write()

    # -- the ProviderAccount port -------------------------------------------------
    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        entries, new_cursor, more = self.log.feed(kind, cursor, lambda e: True)
        records = [self._record(kind, e, e.id) for e in entries]
        return ChangePage(records, new_cursor, more)

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        self.log._count("find")
        wanted = set(emails)
        found = []
        for entry in self.log.table(kind).values():
            if entry.deleted:
                continue
            record = self._record(kind, entry, entry.id)
            if record.fields and wanted.intersection(record.fields.get("emails") or ()):
                found.append(record)
        return found

    def address_book(self, members: Collection[str] | None = None) -> list[SideRecord]:
        """CON-9: every live contact (those of `members` only, when given)."""
        return [
            self._record("contact", entry, entry.id)
            for entry in self.log.table("contact").values()
            if not entry.deleted and (members is None or entry.id in members)
        ]

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        self.log._count("get")
        return self._record(kind, self.log.table(kind).get(record_id), record_id)

    def _invite(self, write: Write, entry: Entry) -> None:
        if write.kind == "activity" and write.notify:
            for member in entry.raw.get("members") or ():
                self.invitations.append((entry.id, member))

    def create(self, write: Write) -> WriteResult:
        self.log._count("create")
        entry = self.log.insert(write.kind, self._held(write, None), key=write.key, ref=write.ref)
        if write.kind == "contact" and write.in_scope:
            self.labelled.add(entry.id)
        self._invite(write, entry)
        self._written()
        return WriteResult(entry.id, str(entry.version))

    def update(self, write: Write) -> WriteResult:
        self.log._count("update")
        held = self._held(write, self.log.live(write.kind, write.target))
        entry = self.log.patch(write.kind, write.target, held, write.version)
        self._invite(write, entry)
        self._written()
        return WriteResult(entry.id, str(entry.version))

    def delete(self, write: Write) -> None:
        self.log._count("delete")
        self.log.remove(write.kind, write.target, write.version)
        self.labelled.discard(write.target or "")
        self._written()

    def set_scope(self, write: Write) -> WriteResult:
        self.log._count("scope")
        entry = self.log.touch(write.kind, write.target, write.version, op="scope")
        if write.in_scope:
            self.labelled.add(entry.id)
        else:
            self.labelled.discard(entry.id)
        self._written()
        return WriteResult(entry.id, str(entry.version))


class MemoryMailbox:
    """A mailbox in memory that implements the MailAccount port (EML-1..5): labels by
    id and name, messages with their raw bytes, when they arrived and their labels.
    What its user does (mail arriving, tagging, renaming a label) are its other
    methods; `calls` counts the port's calls, as a provider's quota would."""

    def __init__(self, clock: Callable[[], datetime], address: str) -> None:
        self.clock = clock
        self.address = address
        self.names: dict[str, str] = {}  # label id → name
        self.messages: dict[str, tuple[bytes, datetime]] = {}
        self.on: dict[str, set[str]] = {}  # message id → its labels' ids
        self.calls: dict[str, int] = {}
        self._next = 0

    def _count(self, call: str) -> None:
        self.calls[call] = self.calls.get(call, 0) + 1

    def _id(self, prefix: str) -> str:
        self._next += 1
        return f"{prefix}-{self._next}"

    # -- the port --------------------------------------------------------------------------
    def labels(self, known: Mapping[str, str]) -> dict[str, str]:
        self._count("labels")
        ids: dict[str, str] = {}
        by_name = {name.casefold(): label for label, name in self.names.items()}
        for role, name in LABEL_NAMES.items():
            kept = known.get(role)
            if kept in self.names:
                ids[role] = kept
            elif name.casefold() in by_name:
                ids[role] = by_name[name.casefold()]
            else:
                ids[role] = self.create_label(name)
        return ids

    def tagged(self, label: str, limit: int) -> list[str]:
        self._count("tagged")
        return [m for m in self.messages if label in self.on[m]][:limit]  # as they came

    def message(self, message_id: str) -> tuple[bytes, datetime]:
        self._count("message")
        if message_id not in self.messages:
            raise NotFound(f"no message {message_id}")
        return self.messages[message_id]

    def relabel(self, message_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        self._count("relabel")
        if message_id not in self.messages:
            raise NotFound(f"no message {message_id}")
        self.on[message_id] = (self.on[message_id] - set(remove)) | set(add)

    def headlines(self, label: str, limit: int) -> list[Headline]:
        self._count("headlines")
        delivered = {m: n for n, m in enumerate(self.messages)}  # as their ids were given
        carrying = [m for m in self.messages if label in self.on[m]]
        # newest first; of messages that arrived at the same moment, the higher id first
        carrying.sort(key=lambda m: (self.messages[m][1], delivered[m]), reverse=True)
        found = []
        for message_id in carrying[: max(limit, 0)]:
            raw, received = self.messages[message_id]
            subject, sender = reader.headline(raw)
            found.append(Headline(message_id, subject, sender, received))
        return found

    # -- what the user does ----------------------------------------------------------------
    def create_label(self, name: str) -> str:
        label = self._id("Label")
        self.names[label] = name
        return label

    def deliver(self, raw: bytes) -> str:
        """A message arrives (or is sent): its id."""
        message_id = self._id("msg")
        self.messages[message_id] = (raw, self.clock())
        self.on[message_id] = {"INBOX"}
        return message_id

    def label_named(self, name: str) -> str | None:
        return next((label for label, held in self.names.items() if held == name), None)

    def tag(self, message_id: str, name: str = "CRM/Send To CRM") -> None:
        """The user puts the label of this name on the message (made if missing)."""
        label = self.label_named(name) or self.create_label(name)
        self.on[message_id].add(label)

    def label_names(self, message_id: str) -> set[str]:
        return {self.names.get(label, label) for label in self.on[message_id]}

    def rename_label(self, old: str, new: str) -> None:
        label = self.label_named(old)
        assert label is not None, f"no label {old}"
        self.names[label] = new

    def delete_label(self, name: str) -> None:
        label = self.label_named(name)
        assert label is not None, f"no label {name}"
        del self.names[label]
        for held in self.on.values():
            held.discard(label)

    def remove(self, message_id: str) -> None:
        """The user deletes the message."""
        self.messages.pop(message_id, None)
        self.on.pop(message_id, None)
