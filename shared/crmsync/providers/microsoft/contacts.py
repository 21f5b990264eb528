"""CRM contacts as Outlook contacts through Graph: the only place Graph's contact field
names appear.

Mapping (canonical ← → contact):
    first_name, last_name ↔ givenName, surname
    company, title ↔ companyName, jobTitle
    emails ↔ emailAddresses[] {address, name}
    phones ↔ work ↔ businessPhones[], home ↔ homePhones[], the first mobile ↔ mobilePhone;
             Graph v1.0 holds no other kind, so fax, other and further mobiles are kept
             as business phones (the number survives; it reads back as work)
    address ↔ businessAddress {street, city, state, postalCode, countryOrRegion}
    notes ↔ personalNotes
    mapped custom fields (SYN-1) ↔ String single-value extended properties in crmsync's
             property set, each named after the provider key the tenant maps it to and
             written through its transform; Graph v1.0 cannot remove one by PATCH, so a
             cleared value is written empty, which reads as no value
    in the sync scope ↔ the contact carries the category named after the label (CON-2)
    the link key ↔ the extended property `crmsyncLink` (SYN-9)
    the create's idempotency key ↔ the extended property `crmsyncKey` (SYN-4)

The contacts crmsync reads are those of the user's default Contacts folder; the user
puts one in the sync scope by giving it the category (Outlook's counterpart of a
Gmail label), so tagging and untagging keep the contact's id and its link. An update
patches only the contact properties its canonical fields map to, with the version the
engine read in If-Match; a change of scope patches the categories alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import NotFound, PermanentError
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.microsoft import echoes
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.echoes import RemembersWhatItMade
from crmsync.transforms import CustomMap

_GUID = "{0f6c2b1e-5a3d-4c8e-9b7a-2d4e6f8a1c35}"
LINK = f"String {_GUID} Name crmsyncLink"
KEY = f"String {_GUID} Name crmsyncKey"
XP = "singleValueExtendedProperties"
ROOT = "contacts"  # the well-known name of the default contact folder
# The contact properties each canonical field lives in.
PROPERTY = {
    "first_name": ("givenName",),
    "last_name": ("surname",),
    "company": ("companyName",),
    "title": ("jobTitle",),
    "emails": ("emailAddresses",),
    "phones": ("businessPhones", "homePhones", "mobilePhone"),
    "address": ("businessAddress",),
    "notes": ("personalNotes",),
}
TEXT = {
    "first_name": "givenName",
    "last_name": "surname",
    "company": "companyName",
    "title": "jobTitle",
    "notes": "personalNotes",
}
ADDRESS = {
    "street": "street",
    "city": "city",
    "region": "state",
    "postal_code": "postalCode",
    "country": "countryOrRegion",
}


# -- reading -----------------------------------------------------------------------------------
def categories(client: GraphClient) -> list[dict[str, str]]:
    """The categories the contacts of the default folder carry, for the `contact_label`
    setting (CON-2, SET-1): each once (Outlook ignores their case), as {id: its name,
    which the setting holds, label}. Outlook's own category list needs a permission
    crmsync's sync does not ask for, and these are the ones its contacts use."""
    found: dict[str, str] = {}
    params = {"$select": "categories"}
    for contact in client.values("me/contacts", "graph contacts.list", params):
        for name in contact.get("categories") or ():
            found.setdefault(str(name).casefold(), str(name))
    return [{"id": name, "label": name} for name in sorted(found.values(), key=str.casefold)]


def from_contact(contact: Mapping[str, Any]) -> dict[str, Any]:
    """Canonical fields of a contact, as Graph holds them (raw: to be normalised, so data
    of an odd shape surfaces as an invalid record)."""
    fields: dict[str, Any] = {name: contact.get(prop) or "" for name, prop in TEXT.items()}
    fields["emails"] = [e.get("address") or "" for e in contact.get("emailAddresses") or ()]
    mobile = contact.get("mobilePhone")
    fields["phones"] = [
        *({"kind": "work", "number": n} for n in contact.get("businessPhones") or ()),
        *({"kind": "home", "number": n} for n in contact.get("homePhones") or ()),
        *([{"kind": "mobile", "number": mobile}] if mobile else []),
    ]
    address = contact.get("businessAddress")
    fields["address"] = (
        {part: address.get(prop) or "" for part, prop in ADDRESS.items()}
        if isinstance(address, Mapping)
        else address
    )
    return fields


# -- writing -----------------------------------------------------------------------------------
def to_contact(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The contact properties the canonical fields given map to (only those: a PATCH
    changes what it names and leaves the rest)."""
    plain: dict[str, Any] = model.to_plain(dict(fields))
    body: dict[str, Any] = {TEXT[n]: plain[n] or None for n in TEXT if n in plain}
    if "emails" in plain:
        body["emailAddresses"] = [{"address": e, "name": e} for e in plain["emails"] or ()]
    if "phones" in plain:
        body.update(_phones(plain["phones"] or ()))
    if "address" in plain:
        given = plain["address"] or {}
        body["businessAddress"] = {prop: given.get(part) or "" for part, prop in ADDRESS.items()}
    return body


def _phones(phones: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    business: list[str] = []
    home: list[str] = []
    mobile: str | None = None
    for phone in phones:
        kind, number = str(phone.get("kind") or "other"), str(phone.get("number") or "")
        if kind == "home":
            home.append(number)
        elif kind == "mobile" and mobile is None:
            mobile = number
        else:  # work, and the kinds Graph v1.0 has no place for
            business.append(number)
    return {"businessPhones": business, "homePhones": home, "mobilePhone": mobile}


def custom_property(key: str) -> str:
    """The id of the extended property holding the custom value under provider `key`."""
    return f"String {_GUID} Name {key}"


def custom_values(item: Mapping[str, Any], custom: CustomMap) -> dict[str, str]:
    """The custom values an item read with `expand_ids` holds, by provider key."""
    found = {key: _extended(item, custom_property(key)) for key in custom.keys}
    return {key: value for key, value in found.items() if value is not None}


def with_custom(
    properties: list[dict[str, str]], custom: CustomMap, fields: Mapping[str, Any], new: bool
) -> list[dict[str, str]]:
    """Extended properties with the mapped custom values `fields` carries added: a new
    item gets those with a value, an update writes a cleared one empty."""
    written = custom.write(fields)
    return properties + [
        {"id": custom_property(key), "value": value or ""}
        for key, value in written.items()
        if value is not None or not new
    ]


def expand_ids(*property_ids: str) -> str:
    """An `$expand` reading these extended properties (a quote in a name doubled)."""
    wanted = " or ".join("id eq '{}'".format(p.replace("'", "''")) for p in property_ids)
    return f"{XP}($filter={wanted})"


def _extended(contact: Mapping[str, Any], property_id: str) -> str | None:
    wanted = property_id.casefold()
    for item in contact.get(XP) or ():
        if str(item.get("id", "")).casefold() == wanted:
            return str(item.get("value", ""))
    return None


def _has_key(key: str) -> dict[str, str]:
    escaped = key.replace("'", "''")
    return {"$filter": f"{XP}/any(ep: ep/id eq '{KEY}' and ep/value eq '{escaped}')"}


# -- the resource ------------------------------------------------------------------------------
class GraphContacts(RemembersWhatItMade):
    """The contact side of one Microsoft 365 mailbox: the default Contacts folder, whose
    contacts carrying the category named after the `contact_label` setting are the
    sync scope."""

    # The default folder's delta: twins in the user's other folders are looked up.
    lists_everything = False

    def __init__(
        self, client: GraphClient, category: str = "CRM", custom: CustomMap | None = None
    ) -> None:
        """`custom` is the tenant's mapping of contact custom fields (SYN-1)."""
        self.client = client
        self.category = category
        self.custom = custom or CustomMap()
        ids = (LINK, *(custom_property(key) for key in self.custom.keys))
        self._expand = {"$expand": expand_ids(*ids)}

    def in_scope(self, contact: Mapping[str, Any]) -> bool:
        wanted = self.category.casefold()  # Outlook's category names ignore case
        return any(str(c).casefold() == wanted for c in contact.get("categories") or ())

    def _scoped(self, categories: Sequence[Any], in_scope: bool) -> list[str]:
        """`categories` with the sync category added or taken away, the rest kept."""
        wanted = self.category.casefold()
        kept = [str(c) for c in categories if str(c).casefold() != wanted]
        return [*kept, self.category] if in_scope else kept

    def subscription_resource(self) -> str:
        """What a change subscription on the contacts crmsync reads names: the default
        folder's (Graph's `me/contacts`)."""
        return "me/contacts"

    # -- reading -----------------------------------------------------------------------------
    def record(self, contact: Mapping[str, Any]) -> SideRecord:
        contact_id = str(contact["id"])
        version = str(contact.get("@odata.etag") or contact.get("changeKey") or "")
        if "@removed" in contact:
            return SideRecord(contact_id, version or "0", None)
        modified = model.parse_instant(contact.get("lastModifiedDateTime"))
        ref = _extended(contact, LINK)
        in_scope = self.in_scope(contact)
        try:
            fields = model.normalize("contact", from_contact(contact))
            fields.update(self.custom.read(custom_values(contact, self.custom)))
        except (model.InvalidRecord, TypeError, AttributeError, ValueError) as exc:
            return SideRecord(
                contact_id, version, {}, modified, in_scope=in_scope, ref=ref, error=str(exc)
            )
        return SideRecord(contact_id, version, fields, modified, in_scope=in_scope, ref=ref)

    def changes(self, cursor: str | None) -> ChangePage:
        """Every contact of the default folder changed since the delta link (all of them
        without one), all pages; deleted ones and those moved away read as gone."""
        link, made = echoes.split(cursor)
        start = link or f"me/contactFolders/{ROOT}/contacts/delta"
        params = None if link else self._expand
        records: list[SideRecord] = []
        for page in self.client.pages(start, "graph contacts.delta", params):
            records.extend(self.record(c) for c in page.get("value") or ())
            if page.get("@odata.deltaLink"):
                records += echoes.unreported(made, records, self.get)
                return ChangePage(records, str(page["@odata.deltaLink"]))
        raise PermanentError("a contact delta round ended without a delta link")

    def _read(self, contact_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        return self.client.request(
            "GET", f"me/contacts/{contact_id}", "graph contacts.get", params=params
        )

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._read(record_id, self._expand))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def address_book(self, category: str = "") -> list[SideRecord]:
        """CON-9: every contact of the default folder (the one crmsync syncs), or those
        carrying the category `category` (Outlook ignores its case), tagged for sync or
        not."""
        wanted = category.casefold()
        return [
            self.record(contact)
            for contact in self.client.values("me/contacts", "graph contacts.list", self._expand)
            if not wanted
            or any(str(c).casefold() == wanted for c in contact.get("categories") or ())
        ]

    def _folders(self) -> Iterator[dict[str, Any]]:
        return self.client.values("me/contactFolders", "graph contactFolders.list")

    def _everywhere(self, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Contacts of the default folder and of every folder below it."""
        yield from self.client.values("me/contacts", "graph contacts.list", params)
        for found in list(self._folders()):
            base = f"me/contactFolders/{found['id']}/contacts"
            yield from self.client.values(base, "graph contacts.list", params)

    def find_by_email(self, emails: Sequence[str]) -> list[SideRecord]:
        """Contacts holding any of these addresses exactly, tagged or not, in any of the
        user's folders (CON-3); the folders are listed, as the sandbox filters only on
        extended properties."""
        wanted = {model.normalize_email(e) for e in emails}
        found: dict[str, SideRecord] = {}
        for contact in self._everywhere(self._expand):
            held = {
                model.normalize_email(str(e.get("address") or ""))
                for e in contact.get("emailAddresses") or ()
                if isinstance(e, Mapping)
            }
            if held & wanted:
                record = self.record(contact)
                found[record.id] = record
        return list(found.values())

    # -- writing -----------------------------------------------------------------------------
    def _created_before(self, key: str) -> dict[str, Any] | None:
        """The contact an earlier attempt of this create made (SYN-4)."""
        for contact in self.client.values("me/contacts", "graph contacts.list", _has_key(key)):
            return contact
        return None

    def create(self, write: Write) -> WriteResult:
        """Create once per key: a contact holding the key is the earlier attempt's."""
        assert write.fields is not None and write.key is not None
        earlier = self._created_before(write.key)
        if earlier is not None:
            return WriteResult(str(earlier["id"]), str(earlier["@odata.etag"]))
        made = self.client.request(
            "POST", "me/contacts", "graph contacts.create", body=self._new(write)
        )
        self._made_now(str(made["id"]))
        return WriteResult(str(made["id"]), str(made["@odata.etag"]))

    def create_many(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """Fresh creates (journaled in this run, so no earlier attempt exists to look
        for) in Graph's batches of twenty, each failing alone; one left unfinished is
        finished by `create`, which looks for it first (SYN-4)."""
        calls = [("POST", "me/contacts", self._new(w)) for w in writes]
        return [self._result(made) for made in self.client.batch(calls, "graph contacts.create")]

    def _result(self, made: dict[str, Any] | Exception) -> WriteResult | Exception:
        if isinstance(made, Exception):
            return made
        self._made_now(str(made["id"]))
        return WriteResult(str(made["id"]), str(made["@odata.etag"]))

    def _new(self, write: Write) -> dict[str, Any]:
        """A new contact's properties: its fields, scope, keys and custom values."""
        assert write.fields is not None and write.key is not None
        body = to_contact(write.fields)
        body["categories"] = self._scoped((), bool(write.in_scope))
        body[XP] = [{"id": KEY, "value": write.key}]
        if write.ref:
            body[XP].append({"id": LINK, "value": write.ref})
        body[XP] = with_custom(body[XP], self.custom, write.fields, new=True)
        return body

    def _at(self, method: str, write: Write, what: str, **kw: Any) -> dict[str, Any]:
        """`method` on the write's contact, only if it is still at `write.version`."""
        assert write.target is not None
        headers = {"If-Match": write.version} if write.version else {}
        return self.client.request(
            method, f"me/contacts/{write.target}", what, headers=headers, **kw
        )

    def update(self, write: Write) -> WriteResult:
        """Patch the properties the changed canonical fields live in, only if the
        contact is still at `write.version` (412 → Conflict)."""
        assert write.fields is not None and write.target is not None
        body = to_contact(write.fields)
        properties = with_custom([], self.custom, write.fields, new=False)
        if properties:
            body[XP] = properties
        answer = self._at("PATCH", write, "graph contacts.update", body=body)
        return WriteResult(str(answer["id"]), str(answer["@odata.etag"]))

    def delete(self, write: Write) -> None:
        """Delete the contact; NotFound (from Graph's 404) when it is already gone."""
        self._at("DELETE", write, "graph contacts.delete")

    def set_scope(self, write: Write) -> WriteResult:
        """Tag the contact with the sync category or take the category away (CON-2,
        CON-6), keeping its other categories; its id stays, and so does its link."""
        assert write.target is not None
        current = self._read(write.target, {"$select": "categories"})
        if self.in_scope(current) == bool(write.in_scope):
            return WriteResult(str(current["id"]), str(current["@odata.etag"]))
        categories = self._scoped(current.get("categories") or (), bool(write.in_scope))
        answer = self._at("PATCH", write, "graph contacts.update", body={"categories": categories})
        return WriteResult(str(answer["id"]), str(answer["@odata.etag"]))
