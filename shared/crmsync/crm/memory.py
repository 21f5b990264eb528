"""A CRM in memory that implements the CrmConnector port like a real CRM would.

It keeps contacts, activities, to-dos, leads and accounts; one contact sync group per
user (CON-1); declared field length limits that it enforces by refusing longer
values (SYN-3); declared custom fields, whose values it keeps in a record's `custom`
and refuses when undeclared or of the wrong type (SYN-1); visibility per user
(AUTH-5); addresses a contact may share with its account (CON-7); and e-mail history
on contacts and leads, recorded once per key and refused beyond the limits it declares
(EML-2, EML-4), whose contacts and leads are found by an address or by a part of a name
or address (EML-5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from crmsync import model
from crmsync.crm import custom
from crmsync.crm.cards import Document, PersonCard, Recent, Related, deal_line
from crmsync.engine.plan import AccountSpec, Write
from crmsync.engine.records import CrmSchema, SideRecord
from crmsync.errors import NotFound, PermanentError
from crmsync.model import Kind
from crmsync.ports import (
    ChangePage,
    CreatesOneByOne,
    CrmUser,
    HistoryEntry,
    MailLimits,
    Person,
    WriteResult,
)
from crmsync.recordlog import Entry, Faults, RecordLog

PEOPLE = ("contact", "lead")  # the kinds a history item may be recorded on
# GET /people's bounds in the contract: the default and largest limit, the search text's
# shortest and longest length (EML-5).
PEOPLE_PAGE, PEOPLE_MOST = 20, 50
SEARCH_SHORTEST, SEARCH_LONGEST = 2, 100


@dataclass(frozen=True)
class HistoryItem:
    """A message recorded on a contact or lead, as the CRM keeps it."""

    id: str
    record_kind: str
    record_id: str
    entry: HistoryEntry


class MemoryCrm:
    """The whole CRM of one tenant."""

    def __init__(self, clock: Callable[[], datetime], faults: Faults | None = None) -> None:
        self.log = RecordLog("crm", clock, faults or Faults(), prefix="crm-")
        self.groups: dict[str, set[str]] = {}
        self.accounts: list[dict[str, Any]] = []
        self.opportunities: list[dict[str, Any]] = []  # CTX-1: each with its account_id
        # CTX-1: documents to attach: id, name, content_type, content, owner (None: all)
        self.documents: list[dict[str, Any]] = []
        self.limits: dict[Kind, dict[str, int]] = {}
        self.custom: dict[Kind, dict[str, model.CustomField]] = {}
        self.infinite_series = True
        self.recurring_todos = True
        # The tenant's users and their addresses (CAL-6: members become attendees).
        self.directory = {f"u{n}": f"u{n}@example.com" for n in range(1, 10)}
        self.names: dict[str, str] = {}  # a user's name, where the CRM knows one
        # What it keeps of a history item (EML-2): as the reference CRM declares.
        self.mail_limits = MailLimits(attachment_bytes=5 * 1024 * 1024)
        self.history: dict[tuple[str, str], list[HistoryItem]] = {}  # per record
        self.history_keys: dict[str, HistoryItem] = {}  # EML-4: the item of each key

    def connector(self, user: str, group: str | None = None) -> MemoryCrmConnector:
        return MemoryCrmConnector(self, user, group)

    # -- the CRM's own behaviour --------------------------------------------------
    def schema(self) -> CrmSchema:
        return CrmSchema.with_custom(
            {kind: tuple(fields.values()) for kind, fields in self.custom.items()},
            limits={k: dict(v) for k, v in self.limits.items()},
            infinite_series=self.infinite_series,
            recurring_todos=self.recurring_todos,
        )

    def validate(self, kind: Kind, raw: Mapping[str, Any]) -> None:
        for name, limit in self.limits.get(kind, {}).items():
            value = raw.get(name)
            if isinstance(value, str) and len(value) > limit:
                raise PermanentError(f"{kind}.{name} is longer than {limit} characters")
        declared = self.custom.get(kind, {})
        for name, value in (raw.get("custom") or {}).items():
            problem = model.custom_problem(declared.get(name), name, value)
            if problem is not None:
                raise PermanentError(f"{kind}.{problem}")

    def custom_of(self, kind: Kind) -> dict[str, model.CustomField]:
        return self.custom.get(kind, {})

    def ensure_account(self, spec: AccountSpec) -> dict[str, Any]:
        """First account whose name equals the spec's, else a new one (CON-5)."""
        for account in self.accounts:
            if account["name"] == spec.name:
                return account
        account = {
            "id": f"acc-{len(self.accounts) + 1}",
            "name": spec.name,
            "type": spec.type,
            "status": spec.status,
            "owner": spec.owner,
            "manager": spec.manager,
            "address": None,
        }
        self.accounts.append(account)
        return account

    def touch_sharers(self, account_id: str, but: str) -> None:
        """Contacts using an account's address changed too: their feed reports them."""
        for entry in self.log.table("contact").values():
            shares = entry.extra.get("address_shared") and entry.extra.get("account_id")
            if shares == account_id and entry.id != but and not entry.deleted:
                self.log.touch("contact", entry.id, remote=False)

    def account(self, account_id: str | None) -> dict[str, Any] | None:
        return next((a for a in self.accounts if a["id"] == account_id), None)

    def read(self, kind: Kind, entry: Entry) -> dict[str, Any]:
        raw = entry.raw
        if kind == "contact" and entry.extra.get("address_shared"):
            account = self.account(entry.extra.get("account_id"))
            if account is not None and account["address"] is not None:
                raw = {**raw, "address": account["address"]}
        fields = model.normalize(kind, raw)
        fields.update(custom.canonical(raw.get("custom"), self.custom_of(kind).values()))
        return fields

    def person(self, kind: str, entry: Entry) -> Person | None:
        """A contact or lead as /people shows it; None when its data does not read."""
        try:
            fields = model.normalize("contact", entry.raw)
        except (model.InvalidRecord, ValueError, TypeError, AttributeError):
            return None
        name = " ".join(part for part in (fields["first_name"], fields["last_name"]) if part)
        count = len(self.history.get((kind, entry.id), ()))
        return Person(kind, entry.id, name or fields["company"], tuple(fields["emails"]), count)

    def check_history(self, entry: HistoryEntry) -> None:
        """PermanentError for an item longer or larger than the CRM keeps (its 413)."""
        limits = self.mail_limits
        for name, text, most in (
            ("subject", entry.subject, limits.subject),
            ("body", entry.body, limits.body),
        ):
            if len(text) > most:
                raise PermanentError(f"the {name} is longer than {most} characters")
        if any(len(stored.data) > limits.attachment_bytes for stored in entry.attachments):
            raise PermanentError(f"an attachment is larger than {limits.attachment_bytes} bytes")

    def visible(self, kind: str, entry: Entry, user: str) -> bool:
        if kind == "activity":
            fields = entry.raw
            return user in (entry.owner, fields.get("leader")) or user in (
                fields.get("members") or ()
            )
        if kind == "todo":
            return entry.owner == user
        return True


class MemoryCrmConnector(CreatesOneByOne):
    """The CrmConnector port for one CRM user: sees only what that user may see."""

    def __init__(self, crm: MemoryCrm, user: str, group: str | None = None) -> None:
        self.crm = crm
        self.user = user
        self.group = group or user  # the contact sync group (CON-1): the user's own by default

    def _written(self) -> None:
        self.crm.log.faults.after_write()

    def schema(self) -> CrmSchema:
        self.crm.log._count("schema")
        return self.crm.schema()

    def users(self) -> dict[str, str]:
        self.crm.log.faults.before_read("crm", "users")
        return dict(self.crm.directory)

    def directory(self) -> list[CrmUser]:
        names = self.crm.names
        return [CrmUser(u, names.get(u, ""), email) for u, email in self.crm.directory.items()]

    # -- e-mail recording (EML-2, EML-4) --------------------------------------------
    def mail_limits(self) -> MailLimits:
        self.crm.log._count("schema")
        return self.crm.mail_limits

    def people(self, address: str) -> list[Person]:
        """Contacts, then leads, oldest first, that hold `address`; then most history
        first (a stable sort, as the reference CRM orders them), as many as the
        contract's default limit."""
        self.crm.log._count("people")
        wanted = model.normalize_email(address)
        found = [person for person in self._people() if wanted in person.emails]
        return sorted(found, key=lambda person: -person.history_count)[:PEOPLE_PAGE]

    def search_people(self, text: str, limit: int) -> list[Person]:
        """EML-5: contacts and leads whose name or an address holds `text`, whatever its
        case: most history first, then by name and id, as the reference CRM orders them.
        PermanentError for a text or limit the contract refuses (the CRM's 400)."""
        self.crm.log._count("people")
        if not SEARCH_SHORTEST <= len(text) <= SEARCH_LONGEST:
            raise PermanentError(f"q must have {SEARCH_SHORTEST} to {SEARCH_LONGEST} characters")
        if not 1 <= limit <= PEOPLE_MOST:
            raise PermanentError(f"limit must be a whole number from 1 to {PEOPLE_MOST}")
        needle = text.casefold()
        found = [
            person
            for person in self._people()
            if any(needle in held.casefold() for held in (person.name, *person.emails))
        ]
        found.sort(key=lambda person: (-person.history_count, person.name.casefold(), person.id))
        return found[:limit]

    def _people(self) -> list[Person]:
        """Every live contact, then lead, oldest first, that the user may see and whose
        data reads."""
        found: list[Person] = []
        for kind in PEOPLE:
            for entry in self.crm.log.table(kind).values():
                if entry.deleted or not self.crm.visible(kind, entry, self.user):
                    continue
                person = self.crm.person(kind, entry)
                if person is not None:
                    found.append(person)
        return found

    def person_card(self, person: Person, recent: int = 5) -> PersonCard:
        """CTX-1: the person's card as the reference CRM answers it, but for addresses: a
        memory CRM has no pages to open. NotFound when the person is gone or hidden from
        the user."""
        self.crm.log._count("people")
        entry = self.crm.log.table(person.kind).get(person.id) if person.kind in PEOPLE else None
        if entry is None or entry.deleted or not self.crm.visible(person.kind, entry, self.user):
            raise NotFound(f"no {person.kind} {person.id} for this user")
        found = self.crm.person(person.kind, entry)
        if found is None:
            raise NotFound(f"the {person.kind} {person.id} does not read as one")
        items = self.crm.history.get((person.kind, person.id), [])
        newest = sorted(reversed(items), key=lambda item: item.entry.date, reverse=True)
        account = self.crm.account(entry.extra.get("account_id"))
        stored = entry.raw.get("custom")
        held: dict[str, Any] = stored if isinstance(stored, dict) else {}
        return PersonCard(
            person=found,
            title=str(entry.raw.get("title") or ""),
            url="",
            account=None if account is None else Related(account["id"], account["name"], ""),
            opportunities=tuple(
                Related(o["id"], o["name"], "", deal_line(o))
                for o in self.crm.opportunities
                if account is not None and o["account_id"] == account["id"] and o["open"]
            ),
            history=tuple(Recent(i.id, i.entry.subject, i.entry.date) for i in newest[:recent]),
            fields=tuple(
                (name, str(held[name]))
                for name in self.crm.custom_of("contact")  # a lead has a contact's fields
                if held.get(name) not in (None, "")
            ),
        )

    def documents(self, text: str, limit: int) -> list[Document]:
        """CTX-1: as the reference CRM finds them: the user's and everyone's documents
        whose name holds `text`, newest first, then by name."""
        self.crm.log._count("documents")
        if not SEARCH_SHORTEST <= len(text) <= SEARCH_LONGEST:
            raise PermanentError(f"q must have {SEARCH_SHORTEST} to {SEARCH_LONGEST} characters")
        needle = text.casefold()
        found = [
            d
            for d in self.crm.documents
            if needle in d["name"].casefold() and d["owner"] in (None, self.user)
        ]
        found.sort(key=lambda d: d["name"].casefold())
        found.sort(key=lambda d: d["modified"], reverse=True)
        return [
            Document(d["id"], d["name"], d["content_type"], len(d["content"]), d["modified"])
            for d in found[:limit]
        ]

    def document(self, document_id: str) -> tuple[str, str, bytes]:
        self.crm.log._count("documents")
        for d in self.crm.documents:
            if d["id"] == document_id and d["owner"] in (None, self.user):
                return d["name"], d["content_type"], bytes(d["content"])
        raise NotFound(f"no document {document_id} for this user")

    def record_history(self, entry: HistoryEntry, key: str) -> tuple[str, bool]:
        self.crm.log._count("history")
        earlier = self.crm.history_keys.get(key)
        if earlier is not None:
            self._written()
            return earlier.id, False
        kind = entry.record_kind
        record = self.crm.log.table(kind).get(entry.record_id) if kind in PEOPLE else None
        if record is None or record.deleted or not self.crm.visible(kind, record, self.user):
            raise NotFound(f"no {kind} {entry.record_id} for this user")
        self.crm.check_history(entry)
        self.crm.log.faults.before_write("crm", "create")
        kept = replace(entry, date=_utc(entry.date))
        item = HistoryItem(f"h-{len(self.crm.history_keys) + 1}", kind, entry.record_id, kept)
        self.crm.history.setdefault((entry.record_kind, entry.record_id), []).append(item)
        self.crm.history_keys[key] = item
        self._written()
        return item.id, True

    def _in_scope(self, kind: Kind, entry: Entry) -> bool:
        return kind != "contact" or entry.id in self.crm.groups.get(self.group, set())

    def _record(self, kind: Kind, entry: Entry | None, record_id: str) -> SideRecord:
        in_scope = entry is not None and self._in_scope(kind, entry)
        return self.crm.log.record(kind, entry, record_id, self.crm.read, in_scope)

    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        entries, new_cursor, more = self.crm.log.feed(
            kind, cursor, lambda e: self.crm.visible(kind, e, self.user)
        )
        records = [self._record(kind, e, e.id) for e in entries]
        return ChangePage(records, new_cursor, more)

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        self.crm.log._count("get")
        entry = self.crm.log.table(kind).get(record_id)
        if entry is not None and not self.crm.visible(kind, entry, self.user):
            entry = None
        return self._record(kind, entry, record_id)

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        self.crm.log._count("find")
        wanted = set(emails)
        found = []
        for entry in self.crm.log.table(kind).values():
            if entry.deleted or not self.crm.visible(kind, entry, self.user):
                continue
            record = self._record(kind, entry, entry.id)
            if record.fields and wanted.intersection(record.fields.get("emails") or ()):
                found.append(record)
        return found

    def _contract(self, kind: Kind, fields: Mapping[str, Any]) -> dict[str, Any]:
        """A write's fields as the CRM takes them: custom values under `custom`."""
        return custom.to_contract(model.to_plain(dict(fields)), self.crm.custom_of(kind))

    def create(self, write: Write) -> WriteResult:
        self.crm.log._count("create")
        assert write.fields is not None
        fields = self._contract(write.kind, write.fields)
        self.crm.validate(write.kind, fields)
        extra: dict[str, Any] = {}
        table = "lead" if write.as_lead else write.kind
        if write.account is not None and not write.as_lead:
            extra["account_id"] = self.crm.ensure_account(write.account)["id"]
        entry = self.crm.log.insert(
            table, fields, key=write.key, ref=write.ref, owner=self.user, extra=extra
        )
        if write.kind == "contact" and write.in_scope and not write.as_lead:
            self.crm.groups.setdefault(self.group, set()).add(entry.id)
        self._written()
        return WriteResult(entry.id, str(entry.version))

    def update(self, write: Write) -> WriteResult:
        self.crm.log._count("update")
        assert write.fields is not None
        fields = self._contract(write.kind, write.fields)
        self.crm.validate(write.kind, fields)
        entry = self.crm.log.live(write.kind, write.target)
        if "custom" in fields:  # the custom fields given change, the others stay
            fields["custom"] = model.merge_custom(entry.raw.get("custom"), fields["custom"])
        if write.kind == "contact" and "address" in fields and entry.extra.get("address_shared"):
            account = self.crm.account(entry.extra.get("account_id"))
            if write.shared_address and account is not None:  # CON-7
                account["address"] = fields.pop("address")
                self.crm.touch_sharers(account["id"], but=entry.id)
            else:
                entry.extra["address_shared"] = False
        entry = self.crm.log.patch(write.kind, write.target, fields, write.version)
        self._written()
        return WriteResult(entry.id, str(entry.version))

    def delete(self, write: Write) -> None:
        self.crm.log._count("delete")
        self.crm.log.remove(write.kind, write.target, write.version)
        self.crm.groups.get(self.group, set()).discard(write.target or "")
        self._written()

    def set_scope(self, write: Write) -> WriteResult:
        self.crm.log._count("scope")
        group = self.crm.groups.setdefault(self.group, set())
        entry = self.crm.log.touch(write.kind, write.target, write.version, op="scope")
        if write.in_scope:
            group.add(entry.id)
        else:
            group.discard(entry.id)
        self._written()
        return WriteResult(entry.id, str(entry.version))


def _utc(when: datetime) -> datetime:
    """The date as the CRM keeps it: in UTC (one without an offset taken as UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
