"""People API v1 (contacts and contact groups) as the sandbox serves it.

Each account's address book lives in `account.data["people"]`. Every change to a contact
(its fields, its group memberships, its deletion) takes the next number of the book's
change sequence; a sync token remembers the number it was issued at, so an incremental
listing returns exactly the contacts changed since, deleted ones as tombstones with
`metadata.deleted: true`.

Responses follow the real API's JSON: fields outside the requested mask are absent,
empty lists and zero counts are omitted (proto3 JSON), a stale etag is a 400
FAILED_PRECONDITION (reason failedPrecondition), an expired sync token a 400
FAILED_PRECONDITION carrying a google.rpc.ErrorInfo with reason EXPIRED_SYNC_TOKEN.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import phonenumbers
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from sandbox.google.core import (
    CONTACTS_SCOPES,
    SCOPE,
    Account,
    ApiError,
    GoogleSandbox,
    Route,
    json_response,
    read_json,
    rfc3339,
    route,
)

READ_SCOPES = CONTACTS_SCOPES | {SCOPE + "contacts.readonly"}


def _person_schema() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """Person's property names and those of its list fields' items, read from the People
    discovery document that google-api-python-client ships."""
    document = resources.files("googleapiclient") / "discovery_cache/documents/people.v1.json"
    schemas = json.loads(document.read_text(encoding="utf-8"))["schemas"]
    person = schemas["Person"]["properties"]
    items = {
        name: frozenset(schemas[spec["items"]["$ref"]]["properties"])
        for name, spec in person.items()
        if "$ref" in spec.get("items", {})
    }
    return frozenset(person), items


PERSON_PROPERTIES, ITEM_PROPERTIES = _person_schema()

# The paths a personFields / readMask may name, and those a contact write may set.
PERSON_FIELDS = frozenset(
    [
        "addresses",
        "ageRanges",
        "biographies",
        "birthdays",
        "calendarUrls",
        "clientData",
        "coverPhotos",
        "emailAddresses",
        "events",
        "externalIds",
        "genders",
        "imClients",
        "interests",
        "locales",
        "locations",
        "memberships",
        "metadata",
        "miscKeywords",
        "names",
        "nicknames",
        "occupations",
        "organizations",
        "phoneNumbers",
        "photos",
        "relations",
        "sipAddresses",
        "skills",
        "urls",
        "userDefined",
    ]
)
WRITABLE_FIELDS = PERSON_FIELDS - {"ageRanges", "coverPhotos", "metadata", "photos", "skills"}
SINGLETON_FIELDS = frozenset({"names", "biographies", "birthdays", "genders"})
SORT_ORDERS = (
    "LAST_MODIFIED_ASCENDING",
    "LAST_MODIFIED_DESCENDING",
    "FIRST_NAME_ASCENDING",
    "LAST_NAME_ASCENDING",
)
GROUP_FIELDS = frozenset({"clientData", "groupType", "memberCount", "metadata", "name"})
DEFAULT_GROUP_FIELDS = frozenset({"metadata", "groupType", "memberCount", "name"})
SYSTEM_GROUPS = {"myContacts": "My Contacts", "starred": "Starred"}
SYNC_TOKEN_LIFETIME = timedelta(days=7)
MAX_BATCH_WRITE, MAX_BATCH_DELETE, MAX_BATCH_GET, MAX_MEMBER_CHANGES = 200, 500, 200, 1000
PHONE_REGION = "US"  # the region numbers without a country code are read in

STALE_ETAG = (
    "Request person.etag is different than the current person.etag. "
    "Clear local cache and get the latest person."
)
EXPIRED_SYNC_TOKEN = (
    "Sync token is expired. Clear local cache and retry call without the sync token."
)
FORMATTED_TYPES = {
    "home": "Home",
    "work": "Work",
    "other": "Other",
    "mobile": "Mobile",
    "main": "Main",
    "homeFax": "Home Fax",
    "workFax": "Work Fax",
    "otherFax": "Other Fax",
    "pager": "Pager",
    "workMobile": "Work Mobile",
    "workPager": "Work Pager",
    "googleVoice": "Google Voice",
    "school": "School",
}
# Properties the server computes; whatever a client sends for them is replaced.
DERIVED_KEYS = frozenset(
    {"metadata", "displayName", "displayNameLastFirst", "formattedType", "canonicalForm"}
)


# -- state ---------------------------------------------------------------------------------------
@dataclass
class Contact:
    """One contact: its stored fields, the ids of its groups, and its change record."""

    number: int
    fields: dict[str, list[dict[str, Any]]]
    groups: list[str]
    updated: datetime
    version: int = 0
    seq: int = 0
    deleted: bool = False

    @property
    def resource_name(self) -> str:
        return f"people/c{self.number}"

    @property
    def source_id(self) -> str:
        return f"{self.number:x}"


@dataclass
class Group:
    group_id: str
    name: str
    updated: datetime
    system: bool = False
    client_data: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0

    @property
    def resource_name(self) -> str:
        return f"contactGroups/{self.group_id}"


@dataclass(frozen=True)
class SyncMark:
    """What a sync token stands for: the change number and expiry epoch it was issued at."""

    seq: int
    epoch: int
    issued: datetime


@dataclass(frozen=True)
class Listing:
    """A connections listing in progress: the resource names it covers, taken when its
    first page was served, and the request parameters later pages must repeat."""

    key: tuple[str, ...]
    names: tuple[str, ...]
    offset: int
    high: int
    incremental: bool


@dataclass
class AddressBook:
    contacts: dict[str, Contact]
    groups: dict[str, Group]
    seq: int = 0
    epoch: int = 0
    sync_tokens: dict[str, SyncMark] = field(default_factory=dict)
    page_tokens: dict[str, Listing] = field(default_factory=dict)


def _book(sandbox: GoogleSandbox, account: Account) -> AddressBook:
    book: AddressBook | None = account.data.get("people")
    if book is None:
        now = sandbox.clock()
        groups = {gid: Group(gid, gid, now, system=True) for gid in SYSTEM_GROUPS}
        book = account.data["people"] = AddressBook({}, groups)
    return book


def _touch(sandbox: GoogleSandbox, book: AddressBook, contact: Contact) -> None:
    """Records a change: a new etag, updateTime, and the next change number."""
    book.seq += 1
    contact.seq = book.seq
    contact.version += 1
    contact.updated = sandbox.clock()


def _etag(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:18]
    return prefix + base64.b64encode(digest).decode()


def _person_etag(contact: Contact) -> str:
    return _etag("%", contact.number, contact.version)


def _source_etag(contact: Contact) -> str:
    return _etag("#", contact.number, contact.version)


# -- helpers for tests ---------------------------------------------------------------------------
def expire_sync_tokens(sandbox: GoogleSandbox, email: str) -> None:
    """Every connections sync token issued so far to `email` is expired: using one
    answers 400 with reason EXPIRED_SYNC_TOKEN. Tokens issued afterwards work."""
    with sandbox.lock:
        _book(sandbox, sandbox.add_account(email)).epoch += 1


def add_contact(sandbox: GoogleSandbox, email: str, person: dict[str, Any]) -> dict[str, Any]:
    """A contact the user added in Google Contacts (not through the API); returns it
    with every field, as people.get would."""
    with sandbox.lock:
        book = _book(sandbox, sandbox.add_account(email))
        contact = _create(sandbox, book, _new_contact_parts(book, person))
        return _render(book, contact, PERSON_FIELDS)


def add_group(sandbox: GoogleSandbox, email: str, name: str) -> str:
    """A label the user made in Google Contacts; returns its resource name."""
    with sandbox.lock:
        book = _book(sandbox, sandbox.add_account(email))
        group = Group(
            sandbox.ids.randbytes(8).hex(), _group_name(book, {"name": name}), sandbox.clock()
        )
        book.groups[group.group_id] = group
        return group.resource_name


def get_contact(sandbox: GoogleSandbox, email: str, resource_name: str) -> dict[str, Any] | None:
    """The contact as people.get returns it with every field, or None when there is no
    such live contact."""
    with sandbox.lock:
        book = _book(sandbox, sandbox.add_account(email))
        contact = book.contacts.get(resource_name)
        if contact is None or contact.deleted:
            return None
        return _render(book, contact, PERSON_FIELDS)


# -- routes --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One request to a People handler, with the caller's address book."""

    sandbox: GoogleSandbox
    request: Request
    book: AddressBook

    @property
    def args(self) -> MultiDict[str, str]:
        return self.request.args


def routes(sandbox: GoogleSandbox) -> list[Route]:
    """People v1 below the API root (`api_endpoint` is the sandbox's base URL)."""

    def bind(handler: Callable[..., Response]) -> Callable[..., Response]:
        def serve(request: Request, account: Account, **segments: str) -> Response:
            return handler(Call(sandbox, request, _book(sandbox, account)), **segments)

        return serve

    people, groups = "v1/people", "v1/contactGroups"
    return [
        route("GET", f"{people}/{{person_id}}/connections", bind(_list_connections), READ_SCOPES),
        route("GET", f"{people}:batchGet", bind(_batch_get), READ_SCOPES),
        route("GET", f"{people}:searchContacts", bind(_search), READ_SCOPES),
        route("POST", f"{people}:createContact", bind(_create_contact), CONTACTS_SCOPES),
        route("POST", f"{people}:batchCreateContacts", bind(_batch_create), CONTACTS_SCOPES),
        route("POST", f"{people}:batchUpdateContacts", bind(_batch_update), CONTACTS_SCOPES),
        route("POST", f"{people}:batchDeleteContacts", bind(_batch_delete), CONTACTS_SCOPES),
        route("GET", f"{people}/{{person_id}}", bind(_get_person), READ_SCOPES),
        route("PATCH", f"{people}/{{person_id}}:updateContact", bind(_update), CONTACTS_SCOPES),
        route("DELETE", f"{people}/{{person_id}}:deleteContact", bind(_delete), CONTACTS_SCOPES),
        route("GET", groups, bind(_list_groups), READ_SCOPES),
        route("POST", groups, bind(_create_group), CONTACTS_SCOPES),
        route("GET", f"{groups}/{{group_id}}", bind(_get_group), READ_SCOPES),
        route("PUT", f"{groups}/{{group_id}}", bind(_update_group), CONTACTS_SCOPES),
        route("DELETE", f"{groups}/{{group_id}}", bind(_delete_group), CONTACTS_SCOPES),
        route("POST", f"{groups}/{{group_id}}/members:modify", bind(_modify), CONTACTS_SCOPES),
    ]


# -- errors --------------------------------------------------------------------------------------
def _bad(message: str) -> ApiError:
    return ApiError(400, "badRequest", message)


def _not_found() -> ApiError:
    return ApiError(404, "notFound", "Requested entity was not found.")


def _stale(message: str = STALE_ETAG) -> ApiError:
    return ApiError(400, "failedPrecondition", message, status="FAILED_PRECONDITION")


def _expired_sync_token() -> ApiError:
    """As the real API answers: 400 FAILED_PRECONDITION with an ErrorInfo detail."""
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "EXPIRED_SYNC_TOKEN",
        "domain": "people.googleapis.com",
    }
    return ApiError(
        400,
        "failedPrecondition",
        EXPIRED_SYNC_TOKEN,
        status="FAILED_PRECONDITION",
        details=[info],
    )


# -- request parameters --------------------------------------------------------------------------
def _mask(value: str | None, name: str, valid: frozenset[str]) -> frozenset[str]:
    paths = frozenset(p.strip() for p in (value or "").split(",") if p.strip())
    invalid = sorted(paths - valid)
    if invalid:
        raise _bad(f'Invalid {name} mask path: "{invalid[0]}".')
    return paths


def _required_mask(value: str | None, name: str, valid: frozenset[str]) -> frozenset[str]:
    paths = _mask(value, name, valid)
    if not paths:
        raise _bad(f"{name} mask is required. Please specify one or more valid paths.")
    return paths


def _read_mask(value: str | None) -> frozenset[str]:
    """personFields of a write: every field when absent."""
    return _mask(value, "personFields", PERSON_FIELDS) or PERSON_FIELDS


def _count(value: str | None, name: str) -> int:
    """A non-negative integer parameter; 0 when absent."""
    try:
        count = int(value or 0)
    except ValueError as exc:
        raise _bad(f"Invalid value for {name}: {value}") from exc
    if count < 0:
        raise _bad(f"Invalid value for {name}: {value}")
    return count


def _page_size(value: str | None, default: int, maximum: int, cap: bool = False) -> int:
    """pageSize: 0 or absent means `default`; above `maximum` is an error, or capped."""
    size = _count(value, "pageSize")
    if size > maximum and not cap:
        raise _bad(f"pageSize must be between 1 and {maximum}.")
    return min(size, maximum) or default


def _person_name(person_id: str) -> str:
    if ":" in person_id:
        raise _not_found()
    return f"people/{person_id}"


def _live(book: AddressBook, resource_name: str) -> Contact:
    contact = book.contacts.get(resource_name)
    if contact is None or contact.deleted:
        raise _not_found()
    return contact


# -- rendering -----------------------------------------------------------------------------------
def _render(book: AddressBook, contact: Contact, mask: frozenset[str]) -> dict[str, Any]:
    """The person as the API returns it: resourceName, etag and the masked fields; a
    deleted contact only as a tombstone with its metadata."""
    person: dict[str, Any] = {"resourceName": contact.resource_name, "etag": _person_etag(contact)}
    if contact.deleted or "metadata" in mask:
        person["metadata"] = _person_metadata(contact)
    if contact.deleted:
        return person
    for name in sorted(mask & WRITABLE_FIELDS):
        items = _memberships(book, contact) if name == "memberships" else contact.fields.get(name)
        if items:
            person[name] = [
                _with_field_metadata(item, contact, i == 0) for i, item in enumerate(items)
            ]
    return person


def _person_metadata(contact: Contact) -> dict[str, Any]:
    source = {
        "type": "CONTACT",
        "id": contact.source_id,
        "etag": _source_etag(contact),
        "updateTime": rfc3339(contact.updated),
    }
    metadata: dict[str, Any] = {"sources": [source], "objectType": "PERSON"}
    if contact.deleted:
        metadata["deleted"] = True
    return metadata


def _with_field_metadata(item: dict[str, Any], contact: Contact, primary: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"source": {"type": "CONTACT", "id": contact.source_id}}
    if primary:
        metadata = {"primary": True, "sourcePrimary": True, **metadata}
    return {"metadata": metadata, **item}


def _memberships(book: AddressBook, contact: Contact) -> list[dict[str, Any]]:
    return [
        {
            "contactGroupMembership": {
                "contactGroupId": gid,
                "contactGroupResourceName": book.groups[gid].resource_name,
            }
        }
        for gid in contact.groups
    ]


# -- writing person fields -----------------------------------------------------------------------
def _clean_fields(body: dict[str, Any], names: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """The named fields of a request's Person as stored: server-computed properties
    replaced, e.g. displayName, formattedType, canonicalForm, formattedValue."""
    fields: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(set(names) - {"memberships"}):
        items = body.get(name) or []
        if name in SINGLETON_FIELDS and len(items) > 1:
            raise _bad(f"Only one {name} field is allowed per contact.")
        cleaned = [
            _derive(name, {k: v for k, v in i.items() if k not in DERIVED_KEYS}) for i in items
        ]
        fields[name] = [item for item in cleaned if item]
    return fields


def _derive(name: str, item: dict[str, Any]) -> dict[str, Any]:
    if not item:
        return item
    if name == "names":
        return _derive_name(item)
    if name == "phoneNumbers":
        canonical = _canonical_phone(str(item.get("value", "")))
        item = {**item, "canonicalForm": canonical} if canonical else item
    if name == "addresses" and not item.get("formattedValue"):
        item = {**item, "formattedValue": _format_address(item)}
    if name == "biographies":
        item = {"contentType": "TEXT_PLAIN", **item}
    if "type" in item and name != "biographies":
        item = {**item, "formattedType": FORMATTED_TYPES.get(item["type"], item["type"])}
    return item


def _derive_name(item: dict[str, Any]) -> dict[str, Any]:
    """displayName, displayNameLastFirst and unstructuredName from the structured parts;
    a name sent only unstructured is split into given and family name."""
    if not any(item.get(k) for k in ("givenName", "middleName", "familyName")):
        words = str(item.get("unstructuredName", "")).split()
        if words:
            item = {**item, "givenName": words[0]}
            if len(words) > 1:
                item["familyName"] = " ".join(words[1:])
    given_middle = _join(item.get("givenName"), item.get("middleName"))
    display = _join(item.get("honorificPrefix"), given_middle, item.get("familyName"))
    display = _join(display, item.get("honorificSuffix"), sep=", ")
    last_first = _join(item.get("familyName"), given_middle, sep=", ")
    return {
        **item,
        "displayName": display,
        "displayNameLastFirst": _join(last_first, item.get("honorificSuffix"), sep=", "),
        "unstructuredName": display,
    }


def _join(*parts: Any, sep: str = " ") -> str:
    return sep.join(str(p) for p in parts if p)


def _canonical_phone(value: str) -> str | None:
    """E.164, as Google adds it to numbers it can parse."""
    try:
        parsed = phonenumbers.parse(value, None if value.strip().startswith("+") else PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _format_address(item: dict[str, Any]) -> str:
    locality = _join(_join(item.get("city"), item.get("region"), sep=", "), item.get("postalCode"))
    lines = (item.get("streetAddress"), item.get("extendedAddress"), item.get("poBox"), locality)
    return "\n".join(str(line) for line in (*lines, item.get("country")) if line)


def _membership_groups(book: AddressBook, body: dict[str, Any]) -> list[str]:
    """The group ids a Person's memberships name; at least one, all existing."""
    groups: list[str] = []
    for membership in body.get("memberships") or []:
        group = membership.get("contactGroupMembership")
        name = group.get("contactGroupResourceName") if isinstance(group, dict) else None
        gid = str(name or "").removeprefix("contactGroups/")
        if gid not in book.groups or not str(name).startswith("contactGroups/"):
            raise _bad(f"Invalid contact group resource name: {name}")
        if gid not in groups:
            groups.append(gid)
    if not groups:
        raise _bad("memberships are being updated but no contact group membership is set.")
    return groups


@dataclass(frozen=True)
class NewContact:
    fields: dict[str, list[dict[str, Any]]]
    groups: list[str]


def _person_body(body: Any) -> dict[str, Any]:
    """A request's Person: an object of property names the API knows (like Google, the
    sandbox refuses unknown names) whose list fields hold objects."""
    if not isinstance(body, dict):
        raise _bad("A contact must be a Person object.")
    for key, value in body.items():
        if key not in PERSON_PROPERTIES:
            raise _unknown_name(key, "person")
        known = ITEM_PROPERTIES.get(key)
        if known is None:
            continue
        if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
            raise _bad(f"Invalid value at 'person.{key}': a list of objects is expected.")
        for index, item in enumerate(value):
            unknown = sorted(item.keys() - known)
            if unknown:
                raise _unknown_name(unknown[0], f"person.{key}[{index}]")
    return body


def _unknown_name(name: str, where: str) -> ApiError:
    return _bad(f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}'.")


def _new_contact_parts(book: AddressBook, body: Any) -> NewContact:
    body = _person_body(body)
    fields = _clean_fields(body, WRITABLE_FIELDS & body.keys())
    groups = _membership_groups(book, body) if body.get("memberships") else ["myContacts"]
    return NewContact(fields, groups)


def _create(sandbox: GoogleSandbox, book: AddressBook, parts: NewContact) -> Contact:
    number = sandbox.ids.randrange(10**18, 10**19)
    contact = Contact(number, parts.fields, parts.groups, sandbox.clock())
    book.contacts[contact.resource_name] = contact
    _touch(sandbox, book, contact)
    return contact


def _check_etag(contact: Contact, body: dict[str, Any]) -> None:
    """The update must carry the person's etag or its contact source's etag, and it must
    be the current one (anything else: the contact changed since it was read)."""
    person_etag = body.get("etag")
    sources = [s for s in (body.get("metadata") or {}).get("sources") or [] if isinstance(s, dict)]
    contact_sources = [s for s in sources if s.get("type", "CONTACT") == "CONTACT"]
    source_etag = next((s["etag"] for s in contact_sources if s.get("etag")), None)
    if not person_etag and not source_etag:
        raise _bad(
            "Request must set person.etag or person.metadata.sources.etag for the source "
            "that is being updated."
        )
    if person_etag and person_etag != _person_etag(contact):
        raise _stale()
    if source_etag and source_etag != _source_etag(contact):
        raise _stale()


@dataclass(frozen=True)
class Update:
    contact: Contact
    fields: dict[str, list[dict[str, Any]]]
    groups: list[str] | None


def _prepare_update(
    book: AddressBook, resource_name: str, body: Any, mask: frozenset[str]
) -> Update:
    contact = _live(book, resource_name)
    body = _person_body(body)
    _check_etag(contact, body)
    groups = _membership_groups(book, body) if "memberships" in mask else None
    return Update(contact, _clean_fields(body, mask), groups)


def _apply(sandbox: GoogleSandbox, book: AddressBook, update: Update) -> None:
    """Replaces the masked fields whole (a field absent from the body is cleared)."""
    for name, items in update.fields.items():
        update.contact.fields[name] = items
    if update.groups is not None:
        update.contact.groups = update.groups
    _touch(sandbox, book, update.contact)


def _update_mask(value: str | None, name: str) -> frozenset[str]:
    return _required_mask(value, name, WRITABLE_FIELDS)


# -- people handlers -----------------------------------------------------------------------------
def _get_person(call: Call, person_id: str) -> Response:
    mask = _required_mask(call.args.get("personFields"), "personFields", PERSON_FIELDS)
    contact = _live(call.book, _person_name(person_id))
    return json_response(_render(call.book, contact, mask))


def _batch_get(call: Call) -> Response:
    mask = _required_mask(call.args.get("personFields"), "personFields", PERSON_FIELDS)
    names = call.args.getlist("resourceNames")
    if not 1 <= len(names) <= MAX_BATCH_GET:
        raise _bad(f"resourceNames must hold between 1 and {MAX_BATCH_GET} names.")
    return json_response({"responses": [_person_response(call.book, n, mask) for n in names]})


def _person_response(book: AddressBook, name: str, mask: frozenset[str]) -> dict[str, Any]:
    contact = book.contacts.get(name)
    if contact is None or contact.deleted:
        status = {"code": 5, "message": "Requested entity was not found."}
        return {"httpStatusCode": 404, "requestedResourceName": name, "status": status}
    person = _render(book, contact, mask)
    return {"httpStatusCode": 200, "requestedResourceName": name, "person": person}


def _create_contact(call: Call) -> Response:
    mask = _read_mask(call.args.get("personFields"))
    contact = _create(
        call.sandbox, call.book, _new_contact_parts(call.book, read_json(call.request))
    )
    return json_response(_render(call.book, contact, mask))


def _update(call: Call, person_id: str) -> Response:
    fields = _update_mask(call.args.get("updatePersonFields"), "updatePersonFields")
    mask = _read_mask(call.args.get("personFields"))
    body = read_json(call.request)
    update = _prepare_update(call.book, _person_name(person_id), body, fields)
    _apply(call.sandbox, call.book, update)
    return json_response(_render(call.book, update.contact, mask))


def _delete(call: Call, person_id: str) -> Response:
    _remove(call.sandbox, call.book, _live(call.book, _person_name(person_id)))
    return json_response({})


def _remove(sandbox: GoogleSandbox, book: AddressBook, contact: Contact) -> None:
    contact.deleted = True
    _touch(sandbox, book, contact)


def _batch_list(body: dict[str, Any], key: str, maximum: int) -> list[Any]:
    items = body.get(key) or []
    if not isinstance(items, list | dict) or not 1 <= len(items) <= maximum:
        raise _bad(f"{key} must hold between 1 and {maximum} entries.")
    return list(items.items()) if isinstance(items, dict) else items


def _batch_create(call: Call) -> Response:
    """All or nothing: every contact is checked before any is created."""
    body = read_json(call.request)
    items = _batch_list(body, "contacts", MAX_BATCH_WRITE)
    mask = _mask(body.get("readMask"), "readMask", PERSON_FIELDS)
    persons = [i.get("contactPerson") if isinstance(i, dict) else None for i in items]
    parts = [_new_contact_parts(call.book, p) for p in persons]
    created = [_create(call.sandbox, call.book, p) for p in parts]
    if not mask:  # no read mask: the post-mutate read is skipped
        return json_response({})
    people = [{"httpStatusCode": 200, "person": _render(call.book, c, mask)} for c in created]
    return json_response({"createdPeople": people})


def _batch_update(call: Call) -> Response:
    """All or nothing: every etag and field is checked before any contact changes."""
    body = read_json(call.request)
    items = _batch_list(body, "contacts", MAX_BATCH_WRITE)
    fields = _update_mask(body.get("updateMask"), "updateMask")
    mask = _mask(body.get("readMask"), "readMask", PERSON_FIELDS)
    updates = [_prepare_update(call.book, str(n), p, fields) for n, p in items]
    for update in updates:
        _apply(call.sandbox, call.book, update)
    if not mask:
        return json_response({})
    result = {
        u.contact.resource_name: _person_response(call.book, u.contact.resource_name, mask)
        for u in updates
    }
    return json_response({"updateResult": result})


def _batch_delete(call: Call) -> Response:
    names = _batch_list(read_json(call.request), "resourceNames", MAX_BATCH_DELETE)
    contacts = [_live(call.book, str(name)) for name in names]
    for contact in contacts:
        if not contact.deleted:
            _remove(call.sandbox, call.book, contact)
    return json_response({})


def _search(call: Call) -> Response:
    """Prefix-phrase matching over names, nicknames, e-mails, phones and organisations.
    The empty warm-up query answers at once with no results."""
    mask = _required_mask(call.args.get("readMask"), "readMask", PERSON_FIELDS)
    size = _page_size(call.args.get("pageSize"), 10, 30, cap=True)
    query = call.args.get("query", "").strip().casefold()
    if not query:
        return json_response({})
    found = [c for c in _ordered(call.book, _live_contacts(call.book)) if _matches(c, query)]
    results = [{"person": _render(call.book, c, mask)} for c in found[:size]]
    return json_response({"results": results} if results else {})


def _matches(contact: Contact, query: str) -> bool:
    digits = "".join(ch for ch in query if ch.isdigit())
    for value in _searchable(contact):
        text = value.casefold()
        starts = [0] + [i for i in range(1, len(text)) if not text[i - 1].isalnum()]
        if any(text.startswith(query, i) for i in starts):
            return True
    numbers = [n for p in contact.fields.get("phoneNumbers", []) for n in _phone_digits(p)]
    return len(digits) >= 3 and any(n.startswith(digits) for n in numbers)


def _phone_digits(phone: dict[str, Any]) -> list[str]:
    """A number's digits as written, in E.164, and without the country code."""
    written = "".join(ch for ch in str(phone.get("value", "")) if ch.isdigit())
    canonical = str(phone.get("canonicalForm", ""))
    if not canonical:
        return [written]
    national = phonenumbers.national_significant_number(phonenumbers.parse(canonical))
    return [written, canonical.lstrip("+"), str(national)]


def _searchable(contact: Contact) -> list[str]:
    keys = {
        "names": ("displayName", "givenName", "familyName", "middleName"),
        "nicknames": ("value",),
        "emailAddresses": ("value",),
        "phoneNumbers": ("value",),
        "organizations": ("name", "title"),
    }
    return [
        str(item[key])
        for name, props in keys.items()
        for item in contact.fields.get(name, [])
        for key in props
        if item.get(key)
    ]


# -- connections listing and sync ----------------------------------------------------------------
def _list_connections(call: Call, person_id: str) -> Response:
    """people.connections.list: paged full listings and incremental ones by sync token."""
    if person_id != "me":
        raise _bad("Only people/me is valid.")
    args = call.args
    mask = _required_mask(args.get("personFields"), "personFields", PERSON_FIELDS)
    size = _page_size(args.get("pageSize"), 100, 1000)
    sort_order = args.get("sortOrder") or SORT_ORDERS[0]
    if sort_order not in SORT_ORDERS:
        raise _bad(f"Invalid value for sortOrder: {sort_order}")
    params = ("personFields", "sortOrder", "requestSyncToken", "syncToken")
    key = (*(args.get(p, "") for p in params), *args.getlist("sources"))
    if args.get("pageToken"):
        listing = _resume(call.book, args["pageToken"], key)
    else:
        listing = _start_listing(call, key, sort_order)
    wants_sync_token = args.get("requestSyncToken") == "true"
    return json_response(_page(call, listing, size, mask, wants_sync_token))


def _resume(book: AddressBook, token: str, key: tuple[str, ...]) -> Listing:
    listing = book.page_tokens.get(token)
    if listing is None:
        raise _bad("The page token is invalid.")
    if listing.key != key:
        raise _bad(
            "Parameters provided to people.connections.list must match the call that "
            "provided the page token."
        )
    return listing


def _start_listing(call: Call, key: tuple[str, ...], sort_order: str) -> Listing:
    """A full listing covers the live contacts; an incremental one every contact changed
    since its sync token, deletions included."""
    token = call.args.get("syncToken")
    if token:
        since = _sync_mark(call, token).seq
        chosen = [c for c in call.book.contacts.values() if c.seq > since]
    else:
        chosen = _live_contacts(call.book)
    names = tuple(c.resource_name for c in _ordered(call.book, chosen, sort_order))
    return Listing(key, names, 0, call.book.seq, incremental=bool(token))


def _sync_mark(call: Call, token: str) -> SyncMark:
    mark = call.book.sync_tokens.get(token)
    if mark is None:
        raise _bad("Request contains an invalid argument.")
    too_old = call.sandbox.clock() - mark.issued > SYNC_TOKEN_LIFETIME
    if mark.epoch != call.book.epoch or too_old:
        raise _expired_sync_token()
    return mark


def _live_contacts(book: AddressBook) -> list[Contact]:
    return [c for c in book.contacts.values() if not c.deleted]


def _ordered(
    book: AddressBook, contacts: list[Contact], sort_order: str = SORT_ORDERS[0]
) -> list[Contact]:
    def name_part(contact: Contact, part: str) -> tuple[str, int]:
        names = contact.fields.get("names") or [{}]
        return (str(names[0].get(part, "")).casefold(), contact.seq)

    orders: dict[str, Callable[[Contact], Any]] = {
        "LAST_MODIFIED_ASCENDING": lambda c: c.seq,
        "LAST_MODIFIED_DESCENDING": lambda c: -c.seq,
        "FIRST_NAME_ASCENDING": lambda c: name_part(c, "givenName"),
        "LAST_NAME_ASCENDING": lambda c: name_part(c, "familyName"),
    }
    return sorted(contacts, key=orders[sort_order])


def _page(
    call: Call, listing: Listing, size: int, mask: frozenset[str], wants_sync_token: bool
) -> dict[str, Any]:
    """One page; nextPageToken while more remain, nextSyncToken (when asked for) only on
    the last. A contact deleted mid-listing drops out of a full listing."""
    book = call.book
    names = listing.names[listing.offset : listing.offset + size]
    contacts = [book.contacts[n] for n in names]
    if not listing.incremental:
        contacts = [c for c in contacts if not c.deleted]
    body: dict[str, Any] = {}
    if contacts:
        body["connections"] = [_render(book, c, mask) for c in contacts]
    if listing.names:
        body["totalItems"] = body["totalPeople"] = len(listing.names)
    if listing.offset + size < len(listing.names):
        token = secrets.token_urlsafe(24)
        book.page_tokens[token] = replace(listing, offset=listing.offset + size)
        body["nextPageToken"] = token
    elif wants_sync_token:
        token = secrets.token_urlsafe(24)
        book.sync_tokens[token] = SyncMark(listing.high, book.epoch, call.sandbox.clock())
        body["nextSyncToken"] = token
    return body


# -- contact groups ------------------------------------------------------------------------------
def _group(book: AddressBook, group_id: str) -> Group:
    group = book.groups.get(group_id)
    if group is None:
        raise _not_found()
    return group


def _user_group(book: AddressBook, group_id: str) -> Group:
    group = _group(book, group_id)
    if group.system:
        raise _bad("System contact groups cannot be changed.")
    return group


def _members(book: AddressBook, group_id: str) -> list[str]:
    return sorted(c.resource_name for c in _live_contacts(book) if group_id in c.groups)


def _render_group(
    book: AddressBook, group: Group, fields: frozenset[str], max_members: int = 0
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceName": group.resource_name,
        "etag": _etag("#", group.group_id, group.version),
    }
    if "metadata" in fields:
        out["metadata"] = {"updateTime": rfc3339(group.updated)}
    if "groupType" in fields:
        out["groupType"] = "SYSTEM_CONTACT_GROUP" if group.system else "USER_CONTACT_GROUP"
    if "name" in fields:
        out["name"] = group.name
        out["formattedName"] = SYSTEM_GROUPS.get(group.group_id, group.name)
    if "clientData" in fields and group.client_data:
        out["clientData"] = group.client_data
    members = _members(book, group.group_id)
    if "memberCount" in fields and members:
        out["memberCount"] = len(members)
    if max_members and members:
        out["memberResourceNames"] = members[:max_members]
    return out


def _group_fields(value: str | None) -> frozenset[str]:
    return _mask(value, "groupFields", GROUP_FIELDS) or DEFAULT_GROUP_FIELDS


def _list_groups(call: Call) -> Response:
    if call.args.get("syncToken"):
        raise _bad("syncToken is not supported for contact groups.")
    fields = _group_fields(call.args.get("groupFields"))
    size = _page_size(call.args.get("pageSize"), 30, 1000)
    offset = _group_offset(call.args.get("pageToken"))
    groups = sorted(call.book.groups.values(), key=lambda g: (not g.system, g.updated, g.name))
    body: dict[str, Any] = {
        "contactGroups": [
            _render_group(call.book, g, fields) for g in groups[offset : offset + size]
        ],
        "totalItems": len(groups),
    }
    if offset + size < len(groups):
        body["nextPageToken"] = base64.urlsafe_b64encode(f"g{offset + size}".encode()).decode()
    return json_response(body)


def _group_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("g"))
    except ValueError as exc:
        raise _bad("The page token is invalid.") from exc


def _get_group(call: Call, group_id: str) -> Response:
    group = _group(call.book, group_id)
    max_members = _count(call.args.get("maxMembers"), "maxMembers")
    fields = _group_fields(call.args.get("groupFields"))
    return json_response(_render_group(call.book, group, fields, max_members))


def _group_name(book: AddressBook, body: dict[str, Any], renamed: Group | None = None) -> str:
    """A new group name: not empty, not taken by another group (409 as in the API)."""
    name = str(body.get("name") or "").strip()
    if not name:
        raise _bad("Contact group name must not be empty.")
    for group in book.groups.values():
        taken = {group.name.casefold(), SYSTEM_GROUPS.get(group.group_id, group.name).casefold()}
        if group is not renamed and name.casefold() in taken:
            raise ApiError(409, "duplicate", "Contact group name already exists.")
    return name


def _group_body(body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("contactGroup") or {}
    if not isinstance(wanted, dict):
        raise _bad("contactGroup must be a ContactGroup object.")
    return wanted


def _create_group(call: Call) -> Response:
    body = read_json(call.request)
    wanted = _group_body(body)
    fields = _group_fields(body.get("readGroupFields"))
    name = _group_name(call.book, wanted)
    group = Group(call.sandbox.ids.randbytes(8).hex(), name, call.sandbox.clock())
    group.client_data = list(wanted.get("clientData") or [])
    call.book.groups[group.group_id] = group
    return json_response(_render_group(call.book, group, fields))


def _update_group(call: Call, group_id: str) -> Response:
    """Changes name and/or clientData; a sent etag must be the current one."""
    group = _user_group(call.book, group_id)
    body = read_json(call.request)
    wanted = _group_body(body)
    current = _etag("#", group.group_id, group.version)
    if wanted.get("etag") and wanted["etag"] != current:
        raise _stale("Request contact group etag is different than the current etag.")
    changes = _mask(body.get("updateGroupFields"), "updateGroupFields", GROUP_FIELDS)
    if not changes <= {"name", "clientData"}:
        raise _bad("updateGroupFields may only name name and clientData.")
    if "name" in (changes or {"name"}):
        group.name = _group_name(call.book, wanted, renamed=group)
    if "clientData" in changes:
        group.client_data = list(wanted.get("clientData") or [])
    group.version += 1
    group.updated = call.sandbox.clock()
    fields = _group_fields(body.get("readGroupFields"))
    return json_response(_render_group(call.book, group, fields))


def _delete_group(call: Call, group_id: str) -> Response:
    """Removes the group from its members (a change each), or deletes them with
    deleteContacts=true."""
    group = _user_group(call.book, group_id)
    delete_members = call.args.get("deleteContacts") == "true"
    for contact in _live_contacts(call.book):
        if group_id not in contact.groups:
            continue
        contact.groups = [g for g in contact.groups if g != group_id]
        if delete_members:
            contact.deleted = True
        _touch(call.sandbox, call.book, contact)
    del call.book.groups[group.group_id]
    return json_response({})


def _modify(call: Call, group_id: str) -> Response:
    """members:modify. Each membership change is a change of the contact; a contact keeps
    its last group (reported in canNotRemoveLastContactGroupResourceNames)."""
    group = _group(call.book, group_id)
    body = read_json(call.request)
    add = [str(n) for n in body.get("resourceNamesToAdd") or []]
    remove = [str(n) for n in body.get("resourceNamesToRemove") or []]
    if not add and not remove:
        raise _bad("resourceNamesToAdd or resourceNamesToRemove must be set.")
    if len(add) + len(remove) > MAX_MEMBER_CHANGES:
        raise _bad(f"At most {MAX_MEMBER_CHANGES} members may change in one request.")
    live = {n: c for n, c in call.book.contacts.items() if not c.deleted}
    not_found = [n for n in add + remove if n not in live]
    for name in add:
        if name in live and group.group_id not in live[name].groups:
            live[name].groups = [*live[name].groups, group.group_id]
            _touch(call.sandbox, call.book, live[name])
    last_group = [n for n in remove if n in live and live[n].groups == [group.group_id]]
    for name in remove:
        if name in live and name not in last_group and group.group_id in live[name].groups:
            live[name].groups = [g for g in live[name].groups if g != group.group_id]
            _touch(call.sandbox, call.book, live[name])
    answer: dict[str, Any] = {}
    if not_found:
        answer["notFoundResourceNames"] = not_found
    if last_group:
        answer["canNotRemoveLastContactGroupResourceNames"] = last_group
    return json_response(answer)
