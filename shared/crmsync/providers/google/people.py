"""CRM contacts as Google People contacts: the only place People field names appear.

Mapping (canonical ← → Person):
    first_name, last_name ↔ names[0].givenName, familyName
    company, title ↔ organizations[0].name, title
    emails ↔ emailAddresses[].value
    phones ↔ phoneNumbers[] {value, type}: kinds work, mobile, home, other ↔ the type of
             the same name, fax ↔ workFax (homeFax and otherFax read as fax; any other
             type reads as other); numbers read in their E.164 canonical form
    address ↔ addresses[0] {streetAddress, city, region, postalCode, country | countryCode}
    notes ↔ biographies[0].value
    mapped custom fields (SYN-1) ↔ userDefined[] {key, value}, under the keys the tenant
             maps them to and written through its transforms; other entries are kept
    in the sync scope ↔ member of the user contact group named after the label (CON-2)
    the link key ↔ clientData `crmsyncLink` (SYN-9)
    the create's idempotency key ↔ clientData `crmsyncKey` (SYN-4)

An update replaces only the Person fields its canonical fields map to, and rebuilds
them from the contact as it is now, so what crmsync does not map (a middle name, an
e-mail's type, further organisations and addresses, other apps' clientData) survives.
The People API has no client-chosen ids, so a create first searches for a contact that
carries its idempotency key and returns that one when an earlier attempt went through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.google.client import GoogleClient
from crmsync.transforms import CustomMap

BATCH_CREATE = 200  # contacts per batchCreateContacts request, Google's limit
LINK = "crmsyncLink"
KEY = "crmsyncKey"
MY_CONTACTS = "contactGroups/myContacts"
# One mask for every read and write: a person's etag is only comparable between
# answers that carry the same fields.
PERSON_FIELDS = ",".join(
    (
        "names",
        "organizations",
        "emailAddresses",
        "phoneNumbers",
        "addresses",
        "biographies",
        "metadata",
        "memberships",
        "clientData",
        "userDefined",
    )
)
# The Person field each canonical field lives in.
PERSON_FIELD = {
    "first_name": "names",
    "last_name": "names",
    "company": "organizations",
    "title": "organizations",
    "emails": "emailAddresses",
    "phones": "phoneNumbers",
    "address": "addresses",
    "notes": "biographies",
}
PHONE_TYPES = {"work": "work", "mobile": "mobile", "home": "home", "fax": "workFax"}
PHONE_KINDS = {
    "work": "work",
    "mobile": "mobile",
    "workMobile": "mobile",
    "home": "home",
    "workFax": "fax",
    "homeFax": "fax",
    "otherFax": "fax",
}
ADDRESS_PARTS = {
    "street": "streetAddress",
    "city": "city",
    "region": "region",
    "postal_code": "postalCode",
}
# Properties that describe an item rather than hold data of it.
_ITEM_LABELS = frozenset({"metadata", "type", "formattedType", "current"})
SEARCH_PAGE = 30  # the most results searchContacts returns


# -- reading -----------------------------------------------------------------------------------
def labels(client: GoogleClient) -> list[dict[str, str]]:
    """The account's own contact labels, for the `contact_label` setting (CON-2,
    SET-1): each {id: its name, which the setting holds, label}."""
    groups = client.service("people", "v1").contactGroups()
    found = client.listed(
        groups.list,
        "people contactGroups.list",
        items="contactGroups",
        groupFields="name,groupType",
        pageSize=1000,
    )
    return [
        {"id": str(group["name"]), "label": str(group["name"])}
        for group in found
        if group.get("groupType") == "USER_CONTACT_GROUP" and group.get("name")
    ]


def from_person(person: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields of a person, as the provider holds them (raw: to be normalised,
    so data of an odd shape surfaces as an invalid record)."""
    name, org = _first(person, "names"), _first(person, "organizations")
    address, biography = _first(person, "addresses"), _first(person, "biographies")
    return {
        "first_name": name.get("givenName", ""),
        "last_name": name.get("familyName", ""),
        "company": org.get("name", ""),
        "title": org.get("title", ""),
        "emails": [e.get("value", "") for e in person.get("emailAddresses") or ()],
        "phones": [
            {"kind": phone_kind(p.get("type")), "number": p.get("canonicalForm") or p.get("value")}
            for p in person.get("phoneNumbers") or ()
        ],
        "address": {
            **{part: address.get(key, "") for part, key in ADDRESS_PARTS.items()},
            "country": address.get("country") or address.get("countryCode", ""),
        },
        "notes": biography.get("value", ""),
    }


def phone_kind(phone_type: Any) -> str:
    """The canonical kind of a Google phone type (custom types read as other)."""
    return PHONE_KINDS.get(str(phone_type or "other"), "other")


def client_data(person: Mapping[str, Any]) -> dict[str, str]:
    """The person's clientData as key → value (crmsync's keys and other apps')."""
    return {
        str(item["key"]): str(item.get("value", ""))
        for item in person.get("clientData") or ()
        if item.get("key")
    }


def user_defined(person: Mapping[str, Any]) -> dict[str, str]:
    """The person's userDefined entries as key → value (the first of a repeated key)."""
    found: dict[str, str] = {}
    for item in person.get("userDefined") or ():
        key = item.get("key")
        if key and key not in found:
            found[str(key)] = str(item.get("value", ""))
    return found


def with_user_defined(
    items: Iterable[Mapping[str, Any]], values: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """userDefined entries with these keys set (None: the entry removed): an entry of a
    key keeps its place, a new key goes last, and every other entry stays."""
    out: list[dict[str, Any]] = []
    done: set[str] = set()
    for item in items:
        key = str(item.get("key", ""))
        if key not in values:
            out.append(dict(item))
            continue
        if key not in done and values[key] is not None:
            out.append({**item, "value": values[key]})
        done.add(key)
    out += [{"key": k, "value": v} for k, v in values.items() if k not in done and v is not None]
    return out


def groups_of(person: Mapping[str, Any]) -> set[str]:
    """Resource names of the contact groups the person belongs to."""
    groups = set()
    for membership in person.get("memberships") or ():
        group = membership.get("contactGroupMembership")
        if group:  # a domain membership names no group
            name = group.get("contactGroupResourceName")
            groups.add(str(name or "contactGroups/" + str(group.get("contactGroupId"))))
    return groups


def _first(person: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    items = person.get(name) or ()
    return items[0] if items else {}


def _updated(metadata: Mapping[str, Any]) -> datetime | None:
    """When the contact itself last changed: its CONTACT source's updateTime."""
    sources = metadata.get("sources") or ()
    source = next((s for s in sources if s.get("type") == "CONTACT"), None)
    return model.parse_instant((source or {}).get("updateTime"))


# -- writing -----------------------------------------------------------------------------------
def to_person(
    fields: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The Person fields the canonical fields given map to, each rebuilt whole from the
    contact as it is now (`current`; nothing for a new contact), because an update
    replaces the fields it names."""
    plain: dict[str, Any] = model.to_plain(dict(fields))
    held = current or {}
    touched = sorted({PERSON_FIELD[name] for name in plain if name in PERSON_FIELD})
    return {name: _BUILDERS[name](plain, list(held.get(name) or ())) for name in touched}


def _names(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The display forms are derived from the parts; a stale one sent back would win.
    drop = {"displayName", "displayNameLastFirst", "unstructuredName"}
    name = {k: v for k, v in (items[0] if items else {}).items() if k not in drop}
    _put(name, "givenName", fields, "first_name")
    _put(name, "familyName", fields, "last_name")
    return [name] if _has_data(name) else []


def _organizations(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    org = dict(items[0]) if items else {}
    _put(org, "name", fields, "company")
    _put(org, "title", fields, "title")
    return ([org] if _has_data(org) else []) + items[1:]


def _emails(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The addresses given, in their order; one the contact already holds keeps its
    type, display name and metadata."""
    held = {model.normalize_email(str(item.get("value", ""))): item for item in items}
    return [held.get(email) or {"value": email} for email in fields.get("emails") or ()]


def _phones(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The numbers given, in their order; one the contact already holds keeps how the
    user wrote it and its exact type (a pager stays a pager while its kind is other)."""
    unused = list(items)
    out: list[dict[str, Any]] = []
    for phone in fields.get("phones") or ():
        kind, number = str(phone.get("kind") or "other"), model.normalize_phone(phone["number"])
        same = [p for p in unused if _phone_number(p) == number]
        exact = next((p for p in same if phone_kind(p.get("type")) == kind), None)
        if exact is not None:
            unused.remove(exact)
            out.append(exact)
            continue
        if same:  # the number is kept as written, its kind changed
            unused.remove(same[0])
            kept = {k: v for k, v in same[0].items() if k != "formattedType"}
            out.append({**kept, "type": PHONE_TYPES.get(kind, "other")})
            continue
        out.append({"value": number, "type": PHONE_TYPES.get(kind, "other")})
    return out


def _phone_number(item: Mapping[str, Any]) -> str:
    return model.normalize_phone(str(item.get("canonicalForm") or item.get("value") or ""))


def _addresses(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """addresses[0] with the canonical parts set; its own extras (type, extended address,
    P.O. box) kept. Google rebuilds formattedValue from the parts when it is not sent."""
    given = fields.get("address") or {}
    address = {k: v for k, v in (items[0] if items else {}).items() if k != "formattedValue"}
    for part, key in ADDRESS_PARTS.items():
        _set(address, key, given.get(part))
    country = str(given.get("country") or "")
    if country != (address.get("country") or address.get("countryCode") or ""):
        _set(address, "country", country)
        # A code that no longer goes with the country would contradict it.
        code = country.upper() if len(country) == 2 and country.isalpha() else ""
        _set(address, "countryCode", code)
    return ([address] if _has_data(address) else []) + items[1:]


def _biographies(fields: Mapping[str, Any], items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    notes = str(fields.get("notes") or "")
    if not notes:
        return []
    return [{**(items[0] if items else {}), "value": notes, "contentType": "TEXT_PLAIN"}]


Builder: TypeAlias = Callable[[Mapping[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]
_BUILDERS: dict[str, Builder] = {
    "names": _names,
    "organizations": _organizations,
    "emailAddresses": _emails,
    "phoneNumbers": _phones,
    "addresses": _addresses,
    "biographies": _biographies,
}


def _put(item: dict[str, Any], key: str, fields: Mapping[str, Any], name: str) -> None:
    """Sets `key` from canonical field `name` when the write carries it."""
    if name in fields:
        _set(item, key, fields[name])


def _set(item: dict[str, Any], key: str, value: Any) -> None:
    if value:
        item[key] = value
    else:
        item.pop(key, None)


def _has_data(item: Mapping[str, Any]) -> bool:
    return any(value for key, value in item.items() if key not in _ITEM_LABELS)


def _membership(group: str) -> dict[str, Any]:
    return {"contactGroupMembership": {"contactGroupResourceName": group}}


def _search_terms(fields: Mapping[str, Any]) -> list[str]:
    """What a contact created from these fields can be found by: its first e-mail,
    else its name, else its company."""
    emails = list(fields.get("emails") or ())
    name = " ".join(str(fields.get(n) or "") for n in ("first_name", "last_name")).strip()
    for term in (emails[0] if emails else "", name, str(fields.get("company") or "")):
        if term:
            return [term]
    return []


# -- the resource ------------------------------------------------------------------------------
class GoogleContacts:
    """The contact side of one Google account; the sync scope is one contact group."""

    def __init__(
        self,
        client: GoogleClient,
        label: str = "CRM",
        custom: CustomMap | None = None,
        make_label: bool = True,
    ) -> None:
        """`custom` is the tenant's mapping of contact custom fields (SYN-1). The label's
        group is made on first use (CON-2: the first cycle makes it), unless
        `make_label` is False: then reading makes nothing (a dry run, BEY-3)."""
        self.client = client
        self.label = label
        self.make_label = make_label
        self.custom = custom or CustomMap()
        self._group: str | None = None
        self._looked = False  # the label's group was looked for (it may not exist yet)
        self._warmed = False
        # each person as last read or written (one cycle's adapter): an update starts
        # from the person at the version the engine read, with no read of its own
        self._seen: dict[str, dict[str, Any]] = {}

    @property
    def people(self) -> Any:
        return self.client.service("people", "v1").people()

    @property
    def groups(self) -> Any:
        return self.client.service("people", "v1").contactGroups()

    # -- the label ---------------------------------------------------------------------------
    def group(self) -> str:
        """The label's contact group resource name; the group is made on first use."""
        if self._group is None:
            self._group = self._find_group() or self._create_group()
        return self._group

    def _read_group(self) -> str | None:
        """The label's group for reading; where reading makes nothing, None while it
        does not exist."""
        if self.make_label:
            return self.group()
        if self._group is None and not self._looked:
            self._group = self._find_group()
            self._looked = True
        return self._group

    def _find_group(self, name: str | None = None) -> str | None:
        """The resource name of the user's contact group called `name` (the label's by
        default), if there is one."""
        wanted = (name or self.label).casefold()  # Google refuses names differing only in case
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"groupFields": "name,groupType", "pageSize": 1000}
            if page_token is not None:
                params["pageToken"] = page_token
            answer = self.client.execute(self.groups.list(**params), "people contactGroups.list")
            for group in answer.get("contactGroups") or ():
                user_group = group.get("groupType") == "USER_CONTACT_GROUP"
                if user_group and str(group.get("name", "")).casefold() == wanted:
                    return str(group["resourceName"])
            page_token = answer.get("nextPageToken")
            if page_token is None:
                return None

    def _create_group(self) -> str:
        request = self.groups.create(body={"contactGroup": {"name": self.label}})
        try:
            answer = self.client.execute(request, "people contactGroups.create")
        except AlreadyExists as exc:  # made meanwhile by another run or by the user
            found = self._find_group()
            if found is None:
                raise PermanentError(f"the label {self.label!r} names a system group") from exc
            return found
        return str(answer["resourceName"])

    # -- reading -----------------------------------------------------------------------------
    def record(self, person: Mapping[str, Any]) -> SideRecord:
        person_id = str(person["resourceName"])
        version = str(person.get("etag", ""))
        self._seen[person_id] = dict(person)
        metadata = person.get("metadata") or {}
        modified = _updated(metadata)
        if metadata.get("deleted"):
            return SideRecord(person_id, version, None, modified=modified)
        ref = client_data(person).get(LINK)
        label = self._read_group()
        in_scope = label is not None and label in groups_of(person)
        try:
            fields = model.normalize("contact", from_person(person))
            fields.update(self.custom.read(user_defined(person)))
        except model.InvalidRecord as exc:
            return SideRecord(
                person_id, version, {}, modified, in_scope=in_scope, ref=ref, error=str(exc)
            )
        return SideRecord(person_id, version, fields, modified, in_scope=in_scope, ref=ref)

    def _pages(self, **extra: Any) -> Iterator[dict[str, Any]]:
        """Every page of the account's contacts (people.connections.list)."""
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {
                "resourceName": "people/me",
                "personFields": PERSON_FIELDS,
                "pageSize": 1000,
                **extra,
            }
            if page_token is not None:
                params["pageToken"] = page_token
            request = self.people.connections().list(**params)
            answer: dict[str, Any] = self.client.execute(request, "people connections.list")
            yield answer
            page_token = answer.get("nextPageToken")
            if page_token is None:
                return

    def changes(self, cursor: str | None) -> ChangePage:
        """Every contact changed since the sync token (all of them without one), all
        pages; deleted contacts and label changes included."""
        records: list[SideRecord] = []
        extra: dict[str, Any] = {"requestSyncToken": True}
        if cursor is not None:
            extra["syncToken"] = cursor
        for answer in self._pages(**extra):
            records.extend(self.record(p) for p in answer.get("connections") or ())
            if answer.get("nextPageToken") is None:
                token = answer.get("nextSyncToken")
                if not token:
                    raise PermanentError("contact listing ended without a sync token")
                return ChangePage(records, str(token))
        raise PermanentError("contact listing ended without a last page")

    def address_book(self, label: str = "") -> list[SideRecord]:
        """CON-9: every contact of the account, or those under the user's label named
        `label` (none when there is no such label), labelled for sync or not."""
        group = self._find_group(label) if label else None
        if label and group is None:
            return []
        return [
            self.record(person)
            for answer in self._pages()
            for person in answer.get("connections") or ()
            if group is None or group in groups_of(person)
        ]

    def _person(self, person_id: str) -> dict[str, Any]:
        request = self.people.get(resourceName=person_id, personFields=PERSON_FIELDS)
        person: dict[str, Any] = self.client.execute(request, "people people.get")
        return person

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._person(record_id))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def _search(self, query: str) -> list[dict[str, Any]]:
        """Contacts matching `query` by prefix (names, e-mails, phones, organisations)."""
        if not self._warmed:  # Google asks for one empty query first to fill its cache
            warm = self.people.searchContacts(query="", readMask="names")
            self.client.execute(warm, "people searchContacts")
            self._warmed = True
        request = self.people.searchContacts(
            query=query, readMask=PERSON_FIELDS, pageSize=SEARCH_PAGE
        )
        answer = self.client.execute(request, "people searchContacts")
        return [r["person"] for r in answer.get("results") or () if r.get("person")]

    def find_by_email(self, emails: Sequence[str]) -> list[SideRecord]:
        """Contacts holding any of these addresses exactly, labelled or not (CON-3)."""
        found: dict[str, SideRecord] = {}
        for email in dict.fromkeys(model.normalize_email(e) for e in emails):
            for person in self._search(email):
                record = self.record(person)
                if record.fields and email in (record.fields.get("emails") or ()):
                    found[record.id] = record
        return list(found.values())

    # -- writing -----------------------------------------------------------------------------
    def _created_before(self, write: Write) -> dict[str, Any] | None:
        """The contact an earlier attempt of this create made, if any (SYN-4)."""
        assert write.fields is not None
        for term in _search_terms(model.to_plain(dict(write.fields))):
            for person in self._search(term):
                if client_data(person).get(KEY) == write.key:
                    return person
        return None

    def create(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.key is not None
        answer = self.client.execute(_CreateOnce(self, [write]), "people createContact")
        [person] = answer["createdPeople"]
        return WriteResult(str(person["person"]["resourceName"]), str(person["person"]["etag"]))

    def create_many(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """Fresh creates (journaled in this run, so no earlier attempt exists), up to
        BATCH_CREATE per batchCreateContacts request; one result per write, in order.
        Google refuses a batch as a whole when it cannot hold one of its contacts: the
        batch is then made one by one, so that contact fails alone (SYN-5). Throttling
        and outages fail the whole batch, to be retried from the journal."""
        results: list[WriteResult | Exception] = []
        for start in range(0, len(writes), BATCH_CREATE):
            chunk = writes[start : start + BATCH_CREATE]
            request = _CreateOnce(self, chunk, first_attempt_fresh=True)
            try:
                answer = self.client.execute(request, "people batchCreateContacts")
            except (RateLimited, TransientError):
                raise
            except PermanentError:
                results.extend(self._one_by_one(chunk))
                continue
            made = {
                client_data(person).get(KEY): person
                for item in answer.get("createdPeople", [])
                if isinstance(person := item.get("person"), dict)
            }
            for write in chunk:
                person = made.get(write.key)
                results.append(
                    WriteResult(str(person["resourceName"]), str(person["etag"]))
                    if person is not None
                    else TransientError("Google did not report the contact it made")
                )
        return results

    def _one_by_one(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        results: list[WriteResult | Exception] = []
        for write in writes:
            try:
                results.append(self.create(write))
            except (TransientError, PermanentError) as exc:
                results.append(exc)
        return results

    def _new_person(self, write: Write) -> dict[str, Any]:
        assert write.fields is not None and write.key is not None
        body: dict[str, Any] = dict(to_person(write.fields))
        custom = with_user_defined((), self.custom.write(write.fields))
        if custom:
            body["userDefined"] = custom
        body["clientData"] = [{"key": KEY, "value": write.key}]
        if write.ref:
            body["clientData"].append({"key": LINK, "value": write.ref})
        if write.in_scope:
            # My Contacts too: a contact must keep one group when the label comes off.
            body["memberships"] = [_membership(MY_CONTACTS), _membership(self.group())]
        return body

    def update(self, write: Write) -> WriteResult:
        """Replace the Person fields the changed canonical fields live in, rebuilt from
        the contact at `write.version`; only if it is still at that version. The person
        as the change feed gave it serves (Google checks the etag sent back: a contact
        changed since answers 400 failedPrecondition, a Conflict), else it is read."""
        assert write.fields is not None and write.target is not None
        current = self._seen.get(write.target)
        if not write.version or current is None or current.get("etag") != write.version:
            current = self._person(write.target)
        etag = str(current.get("etag", ""))
        if write.version and write.version != etag:
            raise Conflict(f"contact {write.target} changed since it was read")
        body: dict[str, Any] = dict(to_person(write.fields, current))
        custom = self.custom.write(write.fields)
        if custom:
            body["userDefined"] = with_user_defined(current.get("userDefined") or (), custom)
        if not body:
            return WriteResult(write.target, etag)
        mask = ",".join(sorted(body))
        sources = (current.get("metadata") or {}).get("sources") or ()
        body["etag"] = etag
        body["metadata"] = {"sources": [s for s in sources if s.get("type") == "CONTACT"]}
        request = self.people.updateContact(
            resourceName=write.target,
            updatePersonFields=mask,
            personFields=PERSON_FIELDS,
            body=body,
        )
        answer = self.client.execute(request, "people updateContact")
        self._seen[str(answer["resourceName"])] = answer
        return WriteResult(str(answer["resourceName"]), str(answer["etag"]))

    def delete(self, write: Write) -> None:
        """Delete the contact; NotFound (from Google's 404) when it is already gone."""
        assert write.target is not None
        request = self.people.deleteContact(resourceName=write.target)
        self.client.execute(request, "people deleteContact")

    def set_scope(self, write: Write) -> WriteResult:
        """Put the contact under the label or take the label off (CON-2, CON-6)."""
        assert write.target is not None
        group = self.group()
        if write.in_scope:
            self._modify(group, add=[write.target])
        else:
            stuck = self._modify(group, remove=[write.target])
            if stuck:  # the label was its only group: keep it in My Contacts instead
                self._modify(MY_CONTACTS, add=[write.target])
                self._modify(group, remove=[write.target])
        person = self._person(write.target)
        return WriteResult(str(person["resourceName"]), str(person["etag"]))

    def _modify(self, group: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Change a group's members; returns those that could not leave their last group."""
        body = {"resourceNamesToAdd": list(add), "resourceNamesToRemove": list(remove)}
        request = self.groups.members().modify(resourceName=group, body=body)
        answer = self.client.execute(request, "people contactGroups.members.modify")
        missing = answer.get("notFoundResourceNames") or ()
        if missing:
            raise NotFound(f"no contact {', '.join(missing)}")
        return [str(n) for n in answer.get("canNotRemoveLastContactGroupResourceNames") or ()]


class _CreateOnce:
    """Creates that first look for the contacts an earlier attempt made (SYN-4).

    GoogleClient.execute sends a request again after a timeout or a server error, and
    Google may have made the contacts before its answer was lost: looking (by the
    idempotency key in clientData) before every attempt but a fresh batch's first
    turns that resend, like a resumed create, into finding what was made. One write is
    a createContact, several a batchCreateContacts; either way the answer has the
    shape of batchCreateContacts' (`createdPeople`). `method` is that of the last
    request it sent (GET while it only looked), so only writes count as writes."""

    def __init__(
        self, resource: GoogleContacts, writes: Sequence[Write], first_attempt_fresh: bool = False
    ) -> None:
        self.resource = resource
        self.writes = list(writes)
        self.look = not first_attempt_fresh  # a batch journaled in this run: nothing yet
        self.method = "GET"

    def execute(self, num_retries: int = 0) -> Any:
        made: list[dict[str, Any]] = []
        left = self.writes
        if self.look:
            found = {w.key: self.resource._created_before(w) for w in self.writes}
            made = [{"person": person} for person in found.values() if person is not None]
            left = [w for w in self.writes if found[w.key] is None]
        self.look = True  # from the second attempt on, an earlier one may have made them
        if not left:
            return {"createdPeople": made}
        people = self.resource.people
        if len(self.writes) == 1:
            request = people.createContact(
                body=self.resource._new_person(left[0]), personFields=PERSON_FIELDS
            )
            self.method = str(request.method)
            return {"createdPeople": [{"person": request.execute(num_retries=num_retries)}]}
        body = {
            "contacts": [{"contactPerson": self.resource._new_person(w)} for w in left],
            "readMask": PERSON_FIELDS,
        }
        request = people.batchCreateContacts(body=body)
        self.method = str(request.method)
        answer = request.execute(num_retries=num_retries)
        return {"createdPeople": made + list(answer.get("createdPeople", []))}
