"""Outlook contacts in the Graph sandbox: contact folders, contacts, and per-folder delta.

    GET/POST             me/contactFolders
    GET                  me/contactFolders/{folderId}
    GET/POST             me/contactFolders/{folderId}/contacts      (and me/contacts)
    GET/PATCH/DELETE     me/contactFolders/{folderId}/contacts/{id} (and me/contacts/{id})
    GET                  me/contactFolders/{folderId}/contacts/delta

Each user has a default folder "Contacts", also reachable by the well-known name
`contacts`; `me/contactFolders` lists the folders created below it, as Graph does. Every
write gives the contact a new `changeKey` (and `@odata.etag`); a PATCH or DELETE with an
`If-Match` naming an older version gets 412 `ErrorIrresolvableConflict`. Single-value
extended properties are written with the contact and read only through
`$expand=singleValueExtendedProperties($filter=id eq '...' or id eq '...')` (a quote in a
name doubled, as OData writes it); list requests filter on
them with `singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')`.
Property names unknown to Graph's contact type are refused (400), as Graph does.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.microsoft.core import (
    NO_CONTENT,
    GraphError,
    MicrosoftSandbox,
    Route,
    User,
    graph_time,
    json_response,
    read_json,
    route,
)
from sandbox.microsoft.graph import (
    Change,
    check_if_match,
    delta_page,
    etag,
    link,
    new_change_key,
    new_id,
    page_size,
    refuse_off_schema,
)

SCOPES = frozenset({"Contacts.ReadWrite", "Contacts.Read"})
WRITE_SCOPES = frozenset({"Contacts.ReadWrite"})
WRITABLE = frozenset(
    {
        "givenName",
        "middleName",
        "surname",
        "displayName",
        "nickName",
        "title",
        "initials",
        "fileAs",
        "generation",
        "emailAddresses",
        "imAddresses",
        "businessPhones",
        "homePhones",
        "mobilePhone",
        "companyName",
        "department",
        "jobTitle",
        "officeLocation",
        "profession",
        "manager",
        "assistantName",
        "businessHomePage",
        "businessAddress",
        "homeAddress",
        "otherAddress",
        "birthday",
        "spouseName",
        "children",
        "personalNotes",
        "categories",
        "yomiGivenName",
        "yomiSurname",
        "yomiCompanyName",
    }
)
LISTS = ("emailAddresses", "imAddresses", "businessPhones", "homePhones", "categories", "children")
XP = "singleValueExtendedProperties"
XP_EXPAND = re.compile(r"^singleValueExtendedProperties\(\$filter=(.+)\)$")
_XP_TERM = re.compile(r"\s*id eq '((?:[^']|'')+)'\s*(?:or\b|$)")
XP_FILTER = re.compile(
    r"^singleValueExtendedProperties/any\((\w+):\s*\1/id eq '([^']+)' and \1/value eq '([^']*)'\)$",
    re.IGNORECASE,
)


@dataclass
class Contact:
    id: str
    folder_id: str
    fields: dict[str, Any]
    extended: dict[str, str]  # extended property id (normalised) -> value
    xp_ids: dict[str, str]  # normalised id -> the id as written
    created: datetime
    modified: datetime
    change_key: str
    seq: int
    deleted: bool = False


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str


@dataclass
class ContactsState:
    root: Folder
    folders: dict[str, Folder] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    seq: int = 0


def state_of(user: User) -> ContactsState:
    state = user.data.get("contacts")
    if state is None:
        root = Folder(new_id(user), "Contacts", new_id(user))
        state = ContactsState(root, {root.id: root})
        user.data["contacts"] = state
    assert isinstance(state, ContactsState)
    return state


def xp_key(property_id: str) -> str:
    """Extended property ids compare with their type and GUID in any case and their
    name exactly, as Exchange matches them."""
    found = re.match(r"^(\w+)\s+(\{[0-9A-Fa-f-]+\})\s+(Name|Id)\s+(.+)$", property_id.strip())
    if found is None:
        raise GraphError(400, "ErrorInvalidExtendedPropertyValue", "Invalid property id.")
    kind, guid, form, name = found.groups()
    return f"{kind.lower()} {guid.lower()} {form.lower()} {name}"


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    folders = "v1.0/me/contactFolders"
    one = folders + "/{folderId}"
    return [
        route(
            "GET",
            folders,
            lambda r, u: _list_folders(sandbox, r, u),
            SCOPES,
            "Collection(contactFolder)",
        ),
        route(
            "POST",
            folders,
            lambda r, u: _create_folder(sandbox, r, u),
            WRITE_SCOPES,
            "contactFolder",
        ),
        route(
            "GET",
            one,
            lambda r, u, folderId: _get_folder(sandbox, u, folderId),
            SCOPES,
            "contactFolder",
        ),
        route(
            "GET",
            one + "/contacts/delta",
            lambda r, u, folderId: _delta(sandbox, r, u, folderId),
            SCOPES,
            "Collection(contact)",
        ),
        *_contact_routes(sandbox, one + "/contacts"),
        *_contact_routes(sandbox, "v1.0/me/contacts", default=True),
    ]


def _contact_routes(sandbox: MicrosoftSandbox, base: str, default: bool = False) -> list[Route]:
    def folder(user: User, segments: dict[str, str]) -> Folder:
        return _folder(state_of(user), "contacts" if default else segments["folderId"])

    def listing(request: Request, user: User, **segments: str) -> Response:
        return _list(sandbox, request, user, folder(user, segments))

    def create(request: Request, user: User, **segments: str) -> Response:
        return _create(sandbox, request, user, folder(user, segments))

    def get(request: Request, user: User, contactId: str, **segments: str) -> Response:
        found = _contact(state_of(user), folder(user, segments), contactId)
        return json_response(_shown(sandbox, request, found))

    def patch(request: Request, user: User, contactId: str, **segments: str) -> Response:
        return _patch(sandbox, request, user, folder(user, segments), contactId)

    def delete(request: Request, user: User, contactId: str, **segments: str) -> Response:
        return _delete(sandbox, request, user, folder(user, segments), contactId)

    item = base + "/{contactId}"
    return [
        route("GET", base, listing, SCOPES, "Collection(contact)"),
        route("POST", base, create, WRITE_SCOPES, "contact"),
        route("GET", item, get, SCOPES, "contact"),
        route("PATCH", item, patch, WRITE_SCOPES, "contact"),
        route("DELETE", item, delete, WRITE_SCOPES, NO_CONTENT),
    ]


def _folder(state: ContactsState, folder_id: str) -> Folder:
    if folder_id.lower() == "contacts":
        return state.root
    found = state.folders.get(folder_id)
    if found is None:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return found


def _contact(state: ContactsState, folder: Folder, contact_id: str) -> Contact:
    found = state.contacts.get(contact_id)
    if found is None or found.deleted or found.folder_id != folder.id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return found


def _folder_json(sandbox: MicrosoftSandbox, folder: Folder) -> dict[str, Any]:
    return {"id": folder.id, "displayName": folder.display_name, "parentFolderId": folder.parent_id}


def _context(sandbox: MicrosoftSandbox, user: User, entity_set: str) -> str:
    return f"{sandbox.base_url}/v1.0/$metadata#users('{user.oid}')/{entity_set}"


def _list_folders(sandbox: MicrosoftSandbox, _request: Request, user: User) -> Response:
    state = state_of(user)
    below = [f for f in state.folders.values() if f.parent_id == state.root.id]
    return json_response(
        {
            "@odata.context": _context(sandbox, user, "contactFolders"),
            "value": [_folder_json(sandbox, f) for f in below],
        }
    )


def _create_folder(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    body = read_json(request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    state = state_of(user)
    if any(f.display_name == name and f.parent_id == state.root.id for f in state.folders.values()):
        raise GraphError(
            409, "ErrorFolderExists", "A folder with the specified name already exists."
        )
    folder = Folder(new_id(user), name, state.root.id)
    state.folders[folder.id] = folder
    return json_response(_folder_json(sandbox, folder), 201)


def _get_folder(sandbox: MicrosoftSandbox, user: User, folder_id: str) -> Response:
    return json_response(_folder_json(sandbox, _folder(state_of(user), folder_id)))


# -- contacts ------------------------------------------------------------------------------------
def _checked(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The body's contact fields and extended properties, or a 400 as Graph gives it."""
    fields: dict[str, Any] = {}
    extended: dict[str, str] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or name in ("id", "changeKey"):
            continue
        if name == XP:
            for entry in value or []:
                if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
                    raise GraphError(400, "ErrorInvalidExtendedPropertyValue", "Invalid value.")
                extended[str(entry.get("id", ""))] = entry["value"]
            continue
        if name not in WRITABLE:
            raise GraphError(
                400,
                "RequestBodyRead",
                f"The property '{name}' does not exist on type 'microsoft.graph.contact'.",
            )
        if name in LISTS and value is not None and not isinstance(value, list):
            raise GraphError(400, "RequestBodyRead", f"'{name}' must be a collection.")
        fields[name] = copy.deepcopy(value)
    refuse_off_schema(fields, "contact", "RequestBodyRead")
    return fields, extended


def _touch(sandbox: MicrosoftSandbox, state: ContactsState, contact: Contact) -> None:
    state.seq += 1
    contact.seq = state.seq
    contact.change_key = new_change_key()
    contact.modified = sandbox.clock()


def _set_extended(contact: Contact, extended: dict[str, str]) -> None:
    for property_id, value in extended.items():
        key = xp_key(property_id)
        contact.extended[key] = value
        contact.xp_ids[key] = property_id


def _create(sandbox: MicrosoftSandbox, request: Request, user: User, folder: Folder) -> Response:
    fields, extended = _checked(read_json(request))
    state = state_of(user)
    now = sandbox.clock()
    contact = Contact(new_id(user), folder.id, fields, {}, {}, now, now, "", 0)
    _set_extended(contact, extended)
    _touch(sandbox, state, contact)
    state.contacts[contact.id] = contact
    _notify(sandbox, user, "created", contact)
    return json_response(_shown(sandbox, request, contact), 201)


def _patch(
    sandbox: MicrosoftSandbox, request: Request, user: User, folder: Folder, contact_id: str
) -> Response:
    state = state_of(user)
    contact = _contact(state, folder, contact_id)
    check_if_match(request, contact.change_key)
    fields, extended = _checked(read_json(request))
    contact.fields.update(fields)
    _set_extended(contact, extended)
    _touch(sandbox, state, contact)
    _notify(sandbox, user, "updated", contact)
    return json_response(_shown(sandbox, request, contact))


def _delete(
    sandbox: MicrosoftSandbox, request: Request, user: User, folder: Folder, contact_id: str
) -> Response:
    state = state_of(user)
    contact = _contact(state, folder, contact_id)
    check_if_match(request, contact.change_key)
    contact.deleted = True
    _touch(sandbox, state, contact)
    _notify(sandbox, user, "deleted", contact)
    return Response(status=204)


def _notify(sandbox: MicrosoftSandbox, user: User, change: str, contact: Contact) -> None:
    sandbox.publish(
        user, "contacts", change, contact.id, etag(contact.change_key), contact.folder_id
    )


def _json(sandbox: MicrosoftSandbox, contact: Contact) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "@odata.etag": etag(contact.change_key),
        "id": contact.id,
        "createdDateTime": graph_time(contact.created),
        "lastModifiedDateTime": graph_time(contact.modified),
        "changeKey": contact.change_key,
        "parentFolderId": contact.folder_id,
        "categories": [],
        "emailAddresses": [],
        "businessPhones": [],
        "homePhones": [],
        "imAddresses": [],
        "children": [],
    }
    shown.update(copy.deepcopy(contact.fields))
    if "displayName" not in contact.fields:
        parts = [contact.fields.get("givenName"), contact.fields.get("surname")]
        shown["displayName"] = " ".join(p for p in parts if p)
    return shown


def _shown(sandbox: MicrosoftSandbox, request: Request, contact: Contact) -> dict[str, Any]:
    """The contact with the request's `$select` and `$expand` applied."""
    shown = _json(sandbox, contact)
    select = request.args.get("$select")
    if select:
        keep = {s.strip() for s in select.split(",")} | {"id", "@odata.etag"}
        shown = {k: v for k, v in shown.items() if k in keep}
    expand = request.args.get("$expand")
    if expand:
        keys = [xp_key(i) for i in expanded_ids(expand)]
        shown[XP] = [
            {"id": contact.xp_ids[key], "value": contact.extended[key]}
            for key in keys
            if key in contact.extended
        ]
    return shown


def expanded_ids(expand: str) -> list[str]:
    """The extended property ids an `$expand` names: `id eq '…'`, joined by `or`."""
    found = XP_EXPAND.match(expand.strip())
    text = found.group(1).strip() if found else ""
    ids: list[str] = []
    at = 0
    while at < len(text):
        term = _XP_TERM.match(text, at)
        if term is None:
            raise GraphError(400, "BadRequest", f"Unsupported $expand: {expand}")
        ids.append(term.group(1).replace("''", "'"))
        at = term.end()
    if not ids:
        raise GraphError(400, "BadRequest", f"Unsupported $expand: {expand}")
    return ids


def _matches(request: Request, contact: Contact) -> bool:
    wanted = request.args.get("$filter")
    if not wanted:
        return True
    found = XP_FILTER.match(wanted.strip())
    if found is None:
        raise GraphError(400, "ErrorInvalidUrlQueryFilter", f"Unsupported $filter: {wanted}")
    value = contact.extended.get(xp_key(found.group(2)))
    return value is not None and value.lower() == found.group(3).lower()


def _list(sandbox: MicrosoftSandbox, request: Request, user: User, folder: Folder) -> Response:
    state = state_of(user)
    live = [
        c
        for c in state.contacts.values()
        if c.folder_id == folder.id and not c.deleted and _matches(request, c)
    ]
    live.sort(key=lambda c: c.created)
    size = page_size(request)
    try:
        skip = int(request.args.get("$skip", "0"))
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Invalid $skip value.") from exc
    body: dict[str, Any] = {
        "@odata.context": _context(sandbox, user, "contacts"),
        "value": [_shown(sandbox, request, c) for c in live[skip : skip + size]],
    }
    if skip + size < len(live):
        params = {k: v for k, v in request.args.items() if k != "$skip"}
        path = request.path.strip("/").removeprefix("v1.0/")
        body["@odata.nextLink"] = link(sandbox, path, {**params, "$skip": str(skip + size)})
    return json_response(body)


def _delta(sandbox: MicrosoftSandbox, request: Request, user: User, folder_id: str) -> Response:
    state = state_of(user)
    folder = _folder(state, folder_id)

    def changes() -> list[Change]:
        return [
            Change(c.id, c.seq, c.deleted)
            for c in state.contacts.values()
            if c.folder_id == folder.id
        ]

    def render(contact_id: str) -> dict[str, Any] | None:
        contact = state.contacts[contact_id]
        if contact.deleted:
            return None
        return {"@odata.type": "#microsoft.graph.contact", **_shown(sandbox, request, contact)}

    return delta_page(
        sandbox,
        request,
        user,
        path=f"me/contactFolders/{folder_id}/contacts/delta",
        scope=f"contacts:{folder.id}",
        changes=changes,
        current_seq=state.seq,
        render=render,
    )
