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
    in the sync scope ↔ in the contact folder named after the label (CON-2)
    the link key ↔ the extended property `crmsyncLink` (SYN-9)
    the create's idempotency key ↔ the extended property `crmsyncKey` (SYN-4)

An update patches only the contact properties its canonical fields map to, with the
version the engine read in If-Match. Graph v1.0 has no move for contacts, so a change
of scope copies the contact into the other folder (its properties and crmsync's
extended properties) and deletes the original: the contact gets a new id.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from crmsync import model
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import AlreadyExists, NotFound, PermanentError
from crmsync.ports import ChangePage, WriteResult
from crmsync.providers.microsoft.client import GraphClient

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
# What a copy into another folder carries over (what Graph lets a client write).
COPIED = (
    *(p for names in PROPERTY.values() for p in names),
    "middleName",
    "nickName",
    "displayName",
    "title",
    "initials",
    "generation",
    "imAddresses",
    "department",
    "officeLocation",
    "profession",
    "manager",
    "assistantName",
    "businessHomePage",
    "homeAddress",
    "otherAddress",
    "birthday",
    "spouseName",
    "children",
    "categories",
)


# -- reading -----------------------------------------------------------------------------------
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


def _extended(contact: Mapping[str, Any], property_id: str) -> str | None:
    wanted = property_id.casefold()
    for item in contact.get(XP) or ():
        if str(item.get("id", "")).casefold() == wanted:
            return str(item.get("value", ""))
    return None


def _expand(property_id: str) -> dict[str, str]:
    return {"$expand": f"{XP}($filter=id eq '{property_id}')"}


def _has_key(key: str) -> dict[str, str]:
    escaped = key.replace("'", "''")
    return {"$filter": f"{XP}/any(ep: ep/id eq '{KEY}' and ep/value eq '{escaped}')"}


# -- the resource ------------------------------------------------------------------------------
class GraphContacts:
    """The contact side of one Microsoft 365 mailbox; the sync scope is one contact
    folder, named after the `contact_label` setting and made on first use."""

    # A folder's delta lists that folder only: twins in other folders are looked up.
    lists_everything = False

    def __init__(self, client: GraphClient, folder_name: str = "CRM") -> None:
        self.client = client
        self.folder_name = folder_name
        self._folder: str | None = None

    # -- the folder ------------------------------------------------------------------------------
    def folder(self) -> str:
        """The sync folder's id; the folder is made on first use."""
        if self._folder is None:
            self._folder = self._find_folder() or self._create_folder()
        return self._folder

    def _folders(self) -> Iterator[dict[str, Any]]:
        return self.client.values("me/contactFolders", "graph contactFolders.list")

    def _find_folder(self) -> str | None:
        wanted = self.folder_name.casefold()  # Outlook folder names ignore case
        for found in self._folders():
            if str(found.get("displayName", "")).casefold() == wanted:
                return str(found["id"])
        return None

    def _create_folder(self) -> str:
        try:
            made = self.client.request(
                "POST",
                "me/contactFolders",
                "graph contactFolders.create",
                body={"displayName": self.folder_name},
            )
        except AlreadyExists as exc:  # made meanwhile by another run or by the user
            found = self._find_folder()
            if found is None:
                raise PermanentError(f"no contact folder {self.folder_name!r}") from exc
            return found
        return str(made["id"])

    def _base(self, folder: str) -> str:
        return "me/contacts" if folder == ROOT else f"me/contactFolders/{folder}/contacts"

    def subscription_resource(self) -> str:
        """What a change subscription on the sync folder names (the folder is made if
        need be, as the first cycle would)."""
        return f"me/contactFolders/{self.folder()}/contacts"

    def _places(self) -> tuple[str, str]:
        """The folders crmsync's contacts live in: the sync folder, the default one."""
        return self.folder(), ROOT

    # -- reading -----------------------------------------------------------------------------
    def record(self, contact: Mapping[str, Any], in_scope: bool | None = None) -> SideRecord:
        contact_id = str(contact["id"])
        version = str(contact.get("@odata.etag") or contact.get("changeKey") or "")
        if "@removed" in contact:
            return SideRecord(contact_id, version or "0", None)
        modified = model.parse_instant(contact.get("lastModifiedDateTime"))
        ref = _extended(contact, LINK)
        if in_scope is None:
            in_scope = contact.get("parentFolderId") == self.folder()
        try:
            fields = model.normalize("contact", from_contact(contact))
        except (model.InvalidRecord, TypeError, AttributeError, ValueError) as exc:
            return SideRecord(
                contact_id, version, {}, modified, in_scope=in_scope, ref=ref, error=str(exc)
            )
        return SideRecord(contact_id, version, fields, modified, in_scope=in_scope, ref=ref)

    def changes(self, cursor: str | None) -> ChangePage:
        """Every contact of the sync folder changed since the delta link (all of them
        without one), all pages; deleted ones and those moved out read as gone."""
        start = cursor or f"me/contactFolders/{self.folder()}/contacts/delta"
        params = None if cursor else _expand(LINK)
        records: list[SideRecord] = []
        for page in self.client.pages(start, "graph contacts.delta", params):
            records.extend(self.record(c, in_scope=True) for c in page.get("value") or ())
            if page.get("@odata.deltaLink"):
                return ChangePage(records, str(page["@odata.deltaLink"]))
        raise PermanentError("a contact delta round ended without a delta link")

    def _read(self, contact_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        for folder in self._places():
            try:
                return self.client.request(
                    "GET", f"{self._base(folder)}/{contact_id}", "graph contacts.get", params=params
                )
            except NotFound:
                continue
        raise NotFound(f"no contact {contact_id}")

    def get(self, record_id: str) -> SideRecord:
        try:
            return self.record(self._read(record_id, _expand(LINK)))
        except NotFound:
            return SideRecord(record_id, "0", None)

    def _everywhere(self, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Contacts of the default folder and of every folder below it."""
        yield from self.client.values("me/contacts", "graph contacts.list", params)
        for found in list(self._folders()):
            base = self._base(str(found["id"]))
            yield from self.client.values(base, "graph contacts.list", params)

    def find_by_email(self, emails: Sequence[str]) -> list[SideRecord]:
        """Contacts holding any of these addresses exactly, in the sync folder or not
        (CON-3); the folders are listed, as the sandbox filters only on extended
        properties."""
        wanted = {model.normalize_email(e) for e in emails}
        found: dict[str, SideRecord] = {}
        for contact in self._everywhere(_expand(LINK)):
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
        """The contact an earlier attempt of this create made, wherever it is (SYN-4)."""
        for folder in self._places():
            for contact in self.client.values(
                self._base(folder), "graph contacts.list", _has_key(key)
            ):
                return contact
        return None

    def create(self, write: Write) -> WriteResult:
        """Create once per key: a contact holding the key is the earlier attempt's."""
        assert write.fields is not None and write.key is not None
        earlier = self._created_before(write.key)
        if earlier is not None:
            return WriteResult(str(earlier["id"]), str(earlier["@odata.etag"]))
        body = to_contact(write.fields)
        body[XP] = [{"id": KEY, "value": write.key}]
        if write.ref:
            body[XP].append({"id": LINK, "value": write.ref})
        folder = self.folder() if write.in_scope else ROOT
        made = self.client.request("POST", self._base(folder), "graph contacts.create", body=body)
        return WriteResult(str(made["id"]), str(made["@odata.etag"]))

    def _at(self, method: str, write: Write, what: str, **kw: Any) -> dict[str, Any]:
        """`method` on the write's contact, in whichever of crmsync's folders it is."""
        assert write.target is not None
        headers = {"If-Match": write.version} if write.version else {}
        for folder in self._places():
            try:
                return self.client.request(
                    method, f"{self._base(folder)}/{write.target}", what, headers=headers, **kw
                )
            except NotFound:
                continue
        raise NotFound(f"no contact {write.target}")

    def update(self, write: Write) -> WriteResult:
        """Patch the properties the changed canonical fields live in, only if the
        contact is still at `write.version` (412 → Conflict)."""
        assert write.fields is not None and write.target is not None
        answer = self._at("PATCH", write, "graph contacts.update", body=to_contact(write.fields))
        return WriteResult(str(answer["id"]), str(answer["@odata.etag"]))

    def delete(self, write: Write) -> None:
        """Delete the contact; NotFound (from Graph's 404) when it is already gone."""
        self._at("DELETE", write, "graph contacts.delete")

    def set_scope(self, write: Write) -> WriteResult:
        """Move the contact into the sync folder or out of it to the default folder
        (CON-2, CON-6), as a copy and a delete: Graph v1.0 cannot move a contact. The
        copy keeps crmsync's keys; one whose key marks it as this move's copy is taken
        when a move is retried, so a retry makes no second copy."""
        assert write.target is not None
        target = self.folder() if write.in_scope else ROOT
        current = self._read(write.target, _expand(LINK))
        if (current.get("parentFolderId") == self.folder()) == bool(write.in_scope):
            return WriteResult(str(current["id"]), str(current["@odata.etag"]))
        key = _extended(self._read(write.target, _expand(KEY)), KEY) or f"moved:{write.target}"
        copy = self._copy_in(target, key) or self._copy(current, target, key)
        self.client.request(
            "DELETE",
            f"{self._base(self._folder_of(current))}/{write.target}",
            "graph contacts.delete",
        )
        return WriteResult(str(copy["id"]), str(copy["@odata.etag"]))

    def _folder_of(self, contact: Mapping[str, Any]) -> str:
        return self.folder() if contact.get("parentFolderId") == self.folder() else ROOT

    def _copy_in(self, folder: str, key: str) -> dict[str, Any] | None:
        for contact in self.client.values(self._base(folder), "graph contacts.list", _has_key(key)):
            return contact
        return None

    def _copy(self, contact: Mapping[str, Any], folder: str, key: str) -> dict[str, Any]:
        body: dict[str, Any] = {p: contact[p] for p in COPIED if contact.get(p) is not None}
        body[XP] = [{"id": KEY, "value": key}]
        ref = _extended(contact, LINK)
        if ref is not None:
            body[XP].append({"id": LINK, "value": ref})
        return self.client.request("POST", self._base(folder), "graph contacts.create", body=body)
