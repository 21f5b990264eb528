"""The Google sandbox's People v1 through the real google-api-python-client over a real
socket. Every successful response body is checked against the response schema the
discovery document names for the method, so the sandbox cannot drift from the API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import googleapiclient
import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import Resource, build
from googleapiclient.errors import HttpError
from googleapiclient.http import HttpRequest
from werkzeug.serving import make_server

from sandbox.google import oauth, people
from sandbox.google.core import SCOPE, GoogleSandbox, Router
from sandbox.google.server import _QuietHandler

pytestmark = pytest.mark.integration

EMAIL = "ada@example.com"
CONTACTS, READONLY, TASKS = SCOPE + "contacts", SCOPE + "contacts.readonly", SCOPE + "tasks"
DISCOVERY = json.loads(
    (Path(googleapiclient.__file__).parent / "discovery_cache/documents/people.v1.json").read_text()
)


# -- checking responses against the discovery document -------------------------------------------
def _methods(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for resource in resources.values():
        found.update({m["id"]: m for m in resource.get("methods", {}).values()})
        found.update(_methods(resource.get("resources", {})))
    return found


METHODS = _methods(DISCOVERY["resources"])
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def conforms(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Fails unless `value` fits `schema`: `$ref`s resolved to the document's schemas,
    JSON types and enums checked, and no property the schema does not know."""
    if "$ref" in schema:
        conforms(value, DISCOVERY["schemas"][schema["$ref"]], where)
        return
    kind = schema.get("type", "any")
    if kind == "object":
        _conforms_object(value, schema, where)
    elif kind == "array":
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        for index, item in enumerate(value):
            conforms(item, schema["items"], f"{where}[{index}]")
    elif kind != "any":
        okay = isinstance(value, JSON_TYPES[kind]) and not (
            kind != "boolean" and isinstance(value, bool)
        )
        assert okay, f"{where}: {value!r} is not of type {kind}"
        assert "enum" not in schema or value in schema["enum"], f"{where}: {value!r} not in enum"


def _conforms_object(value: Any, schema: dict[str, Any], where: str) -> None:
    assert isinstance(value, dict), f"{where}: {value!r} is not an object"
    known, extra = schema.get("properties", {}), schema.get("additionalProperties")
    for key, item in value.items():
        assert key in known or extra is not None, f"{where}: unknown property {key!r}"
        conforms(item, known.get(key) or extra, f"{where}.{key}")


def run(request: HttpRequest) -> dict[str, Any]:
    """Executes a client request; its body must fit the method's response schema."""
    body: dict[str, Any] = request.execute()
    conforms(body, METHODS[request.methodId]["response"])
    return body


def error_of(raised: pytest.ExceptionInfo[HttpError]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raised.value.content)["error"]
    return body


# -- the sandbox on a socket -----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Google:
    sandbox: GoogleSandbox
    base: str
    clock: Clock

    def service(self, scopes: tuple[str, ...] = (CONTACTS,), token: str | None = None) -> Resource:
        """The real People client for EMAIL, talking to the sandbox."""
        credentials = Credentials(token or self.sandbox.issue_token(EMAIL, scopes))
        return build(
            "people",
            "v1",
            credentials=credentials,
            client_options={"api_endpoint": self.base},
            static_discovery=True,
        )

    def add(self, given: str, family: str = "", **fields: Any) -> dict[str, Any]:
        """A contact the user created in Google Contacts."""
        person = {"names": [{"givenName": given, "familyName": family}], **fields}
        return people.add_contact(self.sandbox, EMAIL, person)


@pytest.fixture
def google() -> Iterator[Google]:
    clock = Clock()
    sandbox = GoogleSandbox(clock=clock)
    app = Router(sandbox, oauth.routes(sandbox) + people.routes(sandbox))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    sandbox.base_url = f"http://127.0.0.1:{server.port}/"
    yield Google(sandbox, sandbox.base_url, clock)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def api(google: Google) -> Resource:
    return google.service()


def full_sync(api: Resource, fields: str = "names") -> tuple[list[dict[str, Any]], str]:
    """Every page of a full listing with a sync token: (persons, nextSyncToken)."""
    return sync(api, fields=fields)


def sync(api: Resource, token: str | None = None, fields: str = "names", size: int = 100) -> Any:
    """All pages of a listing (incremental with `token`): (persons, nextSyncToken)."""
    connections = api.people().connections()
    params = {"resourceName": "people/me", "personFields": fields, "requestSyncToken": True}
    request = connections.list(pageSize=size, **params, **({"syncToken": token} if token else {}))
    persons: list[dict[str, Any]] = []
    while request is not None:
        page = run(request)
        persons += page.get("connections", [])
        request = connections.list_next(request, page)
    return persons, page["nextSyncToken"]


# -- contacts ------------------------------------------------------------------------------------
def test_google_people_create_keeps_fields_as_google_holds_them(api: Resource) -> None:
    body = {
        "names": [{"givenName": "Ada", "familyName": "Lovelace"}],
        "emailAddresses": [{"value": "ada@example.com", "type": "work"}],
        "phoneNumbers": [{"value": "+1 650-253-0000", "type": "mobile"}],
        "organizations": [{"name": "Analytical Engines", "title": "Programmer"}],
        "addresses": [{"streetAddress": "1 Main St", "city": "Springfield", "country": "US"}],
        "biographies": [{"value": "First programmer"}],
        "clientData": [{"key": "crmsync", "value": "crm-contact-42"}],
    }

    created = run(api.people().createContact(body=body))

    assert created["resourceName"].startswith("people/c")
    assert created["resourceName"][len("people/c") :].isdigit()
    assert created["names"][0]["displayName"] == "Ada Lovelace"
    assert created["names"][0]["unstructuredName"] == "Ada Lovelace"
    assert created["phoneNumbers"][0]["canonicalForm"] == "+16502530000"
    assert created["phoneNumbers"][0]["formattedType"] == "Mobile"
    assert created["addresses"][0]["formattedValue"] == "1 Main St\nSpringfield\nUS"
    assert created["biographies"][0]["contentType"] == "TEXT_PLAIN"
    membership = created["memberships"][0]["contactGroupMembership"]
    assert membership["contactGroupResourceName"] == "contactGroups/myContacts"
    assert created["metadata"]["sources"][0]["etag"]


def test_google_people_client_data_round_trips(api: Resource) -> None:
    marker = [{"key": "crmsync", "value": "crm-contact-42"}]
    created = run(api.people().createContact(body={"clientData": marker}, personFields="names"))

    fetched = run(api.people().get(resourceName=created["resourceName"], personFields="clientData"))

    assert [{"key": d["key"], "value": d["value"]} for d in fetched["clientData"]] == marker
    assert set(fetched) == {"resourceName", "etag", "clientData"}


def test_google_people_user_defined_entries_round_trip_and_are_replaced_whole(
    api: Resource,
) -> None:
    entries = [{"key": "Industry", "value": "Shipping"}, {"key": "Hobby", "value": "Chess"}]
    created = run(api.people().createContact(body={"userDefined": entries}, personFields="names"))
    name = created["resourceName"]

    fetched = run(api.people().get(resourceName=name, personFields="userDefined"))
    updated = run(
        api.people().updateContact(
            resourceName=name,
            updatePersonFields="userDefined",
            personFields="userDefined,names",
            body={"etag": fetched["etag"], "userDefined": [{"key": "Hobby", "value": "Go"}]},
        )
    )

    assert [{"key": e["key"], "value": e["value"]} for e in fetched["userDefined"]] == entries
    assert fetched["userDefined"][0]["metadata"]["source"]["type"] == "CONTACT"
    assert set(fetched) == {"resourceName", "etag", "userDefined"}
    assert [(e["key"], e["value"]) for e in updated["userDefined"]] == [("Hobby", "Go")]
    names_only = run(api.people().get(resourceName=name, personFields="names"))
    assert "userDefined" not in names_only


def test_google_people_persons_carry_only_the_requested_fields(
    google: Google, api: Resource
) -> None:
    google.add("Ada", "Lovelace", emailAddresses=[{"value": "ada@example.com"}])

    plain, _token = full_sync(api, fields="emailAddresses")
    with_metadata, _token = full_sync(api, fields="emailAddresses,metadata")

    assert set(plain[0]) == {"resourceName", "etag", "emailAddresses"}
    source = with_metadata[0]["metadata"]["sources"][0]
    assert source["type"] == "CONTACT"
    assert source["updateTime"] == "2026-03-01T09:00:00.000Z"
    assert source["etag"]


def test_google_people_get_needs_person_fields(google: Google, api: Resource) -> None:
    name = google.add("Ada")["resourceName"]

    with pytest.raises(HttpError) as raised:
        api.people().get(resourceName=name).execute()

    assert raised.value.status_code == 400


def test_google_people_get_of_a_deleted_contact_is_404(api: Resource) -> None:
    name = run(api.people().createContact(body={"names": [{"givenName": "Ada"}]}))["resourceName"]
    run(api.people().deleteContact(resourceName=name))

    with pytest.raises(HttpError) as raised:
        api.people().get(resourceName=name, personFields="names").execute()

    assert raised.value.status_code == 404


def test_google_people_update_replaces_the_masked_fields_whole(
    google: Google, api: Resource
) -> None:
    person = google.add("Ada", "Lovelace", emailAddresses=[{"value": "old@example.com"}])
    body = {"etag": person["etag"], "names": [{"givenName": "Augusta", "familyName": "King"}]}

    updated = run(
        api.people().updateContact(
            resourceName=person["resourceName"],
            updatePersonFields="names,emailAddresses",
            personFields="names,emailAddresses",
            body=body,
        )
    )

    assert updated["names"][0]["displayName"] == "Augusta King"
    assert "emailAddresses" not in updated
    assert updated["etag"] != person["etag"]


def test_google_people_update_needs_update_person_fields(google: Google, api: Resource) -> None:
    person = google.add("Ada")

    with pytest.raises(HttpError) as raised:
        api.people().updateContact(
            resourceName=person["resourceName"], body={"etag": person["etag"]}
        ).execute()

    assert error_of(raised)["status"] == "INVALID_ARGUMENT"


def test_google_people_stale_etag_is_400_failed_precondition(google: Google, api: Resource) -> None:
    person = google.add("Ada")
    people_api = api.people()
    change = {"resourceName": person["resourceName"], "updatePersonFields": "names"}
    run(
        people_api.updateContact(
            **change, body={"etag": person["etag"], "names": [{"givenName": "A"}]}
        )
    )

    with pytest.raises(HttpError) as raised:
        people_api.updateContact(**change, body={"etag": person["etag"]}).execute()
    stale_source = {"metadata": {"sources": [person["metadata"]["sources"][0]]}}
    with pytest.raises(HttpError) as raised_by_source:
        people_api.updateContact(**change, body=stale_source).execute()

    error = error_of(raised)
    assert raised.value.status_code == 400
    assert error["status"] == "FAILED_PRECONDITION"
    assert error["errors"][0]["reason"] == "failedPrecondition"
    assert "person.etag is different" in error["message"]
    assert error_of(raised_by_source)["status"] == "FAILED_PRECONDITION"


def test_google_people_update_without_any_etag_is_400_invalid_argument(
    google: Google, api: Resource
) -> None:
    person = google.add("Ada")

    with pytest.raises(HttpError) as raised:
        api.people().updateContact(
            resourceName=person["resourceName"], updatePersonFields="names", body={}
        ).execute()

    assert raised.value.status_code == 400
    assert error_of(raised)["status"] == "INVALID_ARGUMENT"


def test_google_people_unknown_field_names_are_refused(api: Resource) -> None:
    body = {"names": [{"givenName": "Ada", "nickname": "Countess"}]}

    with pytest.raises(HttpError) as raised:
        api.people().createContact(body=body).execute()

    assert raised.value.status_code == 400
    assert 'Unknown name "nickname"' in error_of(raised)["message"]


def test_google_people_update_with_the_current_source_etag_succeeds(
    google: Google, api: Resource
) -> None:
    person = google.add("Ada")
    body = {"metadata": person["metadata"], "names": [{"unstructuredName": "Ada King Lovelace"}]}

    updated = run(
        api.people().updateContact(
            resourceName=person["resourceName"], updatePersonFields="names", body=body
        )
    )

    assert updated["names"][0]["givenName"] == "Ada"
    assert updated["names"][0]["familyName"] == "King Lovelace"


def test_google_people_batch_create_update_and_delete(api: Resource) -> None:
    contacts = [{"contactPerson": {"names": [{"givenName": f"P{i}"}]}} for i in range(3)]
    created = run(
        api.people().batchCreateContacts(body={"contacts": contacts, "readMask": "names"})
    )
    persons = [c["person"] for c in created["createdPeople"]]
    changes = {
        p["resourceName"]: {"etag": p["etag"], "names": [{"givenName": "Q"}]} for p in persons
    }

    updated = run(
        api.people().batchUpdateContacts(
            body={"contacts": changes, "updateMask": "names", "readMask": "names"}
        )
    )
    run(api.people().batchDeleteContacts(body={"resourceNames": list(changes)}))

    assert [c["httpStatusCode"] for c in created["createdPeople"]] == [200, 200, 200]
    names = {r["person"]["names"][0]["givenName"] for r in updated["updateResult"].values()}
    assert names == {"Q"}
    remaining, _token = full_sync(api)
    assert remaining == []


def test_google_people_batch_create_takes_at_most_200(api: Resource) -> None:
    contacts = [{"contactPerson": {"names": [{"givenName": "P"}]}}] * 201

    with pytest.raises(HttpError) as raised:
        api.people().batchCreateContacts(body={"contacts": contacts, "readMask": "names"}).execute()

    assert raised.value.status_code == 400


def test_google_people_batch_get_answers_each_name(google: Google, api: Resource) -> None:
    name = google.add("Ada")["resourceName"]

    answer = run(api.people().getBatchGet(resourceNames=[name, "people/c1"], personFields="names"))

    assert [r["httpStatusCode"] for r in answer["responses"]] == [200, 404]


def test_google_people_search_matches_prefixes_after_a_warm_up(
    google: Google, api: Resource
) -> None:
    ada = google.add(
        "Ada",
        "Lovelace",
        emailAddresses=[{"value": "countess@example.com"}],
        phoneNumbers=[{"value": "+1 650-253-0000"}],
    )["resourceName"]
    google.add("Charles", "Babbage")

    def search(text: str) -> list[str]:
        answer = run(api.people().searchContacts(query=text, readMask="names"))
        return [r["person"]["resourceName"] for r in answer.get("results", [])]

    assert search("") == []
    assert search("love") == [ada]
    assert search("countess@") == [ada]
    assert search("650253") == [ada]
    assert search("ovelace") == []


# -- listing and sync ----------------------------------------------------------------------------
def test_google_people_connections_page_in_last_modified_order(
    google: Google, api: Resource
) -> None:
    added = [google.add(f"P{i}")["resourceName"] for i in range(5)]
    connections = api.people().connections()
    request = connections.list(
        resourceName="people/me", personFields="names", pageSize=2, requestSyncToken=True
    )
    pages = []
    while request is not None:
        pages.append(run(request))
        request = connections.list_next(request, pages[-1])

    assert [len(p["connections"]) for p in pages] == [2, 2, 1]
    assert [c["resourceName"] for p in pages for c in p["connections"]] == added
    assert ["nextSyncToken" in p for p in pages] == [False, False, True]
    assert pages[0]["totalItems"] == 5


def test_google_people_connections_sort_by_first_name(google: Google, api: Resource) -> None:
    for given in ("Carl", "Ada", "Bea"):
        google.add(given)

    page = run(
        api.people()
        .connections()
        .list(resourceName="people/me", personFields="names", sortOrder="FIRST_NAME_ASCENDING")
    )

    assert [p["names"][0]["givenName"] for p in page["connections"]] == ["Ada", "Bea", "Carl"]


@pytest.mark.parametrize("params", [{"pageSize": 1001}, {"personFields": None}])
def test_google_people_connections_reject_bad_parameters(
    api: Resource, params: dict[str, Any]
) -> None:
    arguments = {"resourceName": "people/me", "personFields": "names", **params}

    with pytest.raises(HttpError) as raised:
        api.people().connections().list(**arguments).execute()

    assert raised.value.status_code == 400


def test_google_people_sync_token_returns_changes_and_deletions(
    google: Google, api: Resource
) -> None:
    kept, changed, removed = (google.add(n) for n in ("Kept", "Changed", "Removed"))
    _persons, token = full_sync(api)
    change = {"etag": changed["etag"], "names": [{"givenName": "Renamed"}]}
    run(
        api.people().updateContact(
            resourceName=changed["resourceName"], updatePersonFields="names", body=change
        )
    )
    run(api.people().deleteContact(resourceName=removed["resourceName"]))
    new = google.add("New")

    persons, next_token = sync(api, token)
    quiet, _token = sync(api, next_token)

    by_name = {p["resourceName"]: p for p in persons}
    assert set(by_name) == {changed["resourceName"], removed["resourceName"], new["resourceName"]}
    assert kept["resourceName"] not in by_name
    assert by_name[changed["resourceName"]]["names"][0]["givenName"] == "Renamed"
    tombstone = by_name[removed["resourceName"]]
    assert tombstone["metadata"]["deleted"] is True
    assert "names" not in tombstone
    assert quiet == []


def test_google_people_expired_sync_token_is_400_with_reason_expired_sync_token(
    google: Google, api: Resource
) -> None:
    google.add("Ada")
    _persons, token = full_sync(api)
    people.expire_sync_tokens(google.sandbox, EMAIL)

    with pytest.raises(HttpError) as raised:
        sync(api, token)

    error = error_of(raised)
    assert raised.value.status_code == 400
    assert error["status"] == "FAILED_PRECONDITION"
    detail = error["details"][0]
    assert detail["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert detail["reason"] == "EXPIRED_SYNC_TOKEN"
    assert raised.value.error_details[0]["reason"] == "EXPIRED_SYNC_TOKEN"
    persons, fresh = full_sync(api)
    assert len(persons) == 1
    assert sync(api, fresh)[0] == []


def test_google_people_sync_tokens_expire_after_seven_days(google: Google) -> None:
    _persons, token = full_sync(google.service())
    google.clock.now += timedelta(days=7, seconds=1)

    with pytest.raises(HttpError) as raised:
        sync(google.service(), token)

    assert error_of(raised)["details"][0]["reason"] == "EXPIRED_SYNC_TOKEN"


# -- contact groups ------------------------------------------------------------------------------
def test_google_people_contact_groups_list_create_and_reject_duplicates(api: Resource) -> None:
    created = run(api.contactGroups().create(body={"contactGroup": {"name": "Customers"}}))

    with pytest.raises(HttpError) as raised:
        api.contactGroups().create(body={"contactGroup": {"name": "Customers"}}).execute()
    listed = run(api.contactGroups().list())

    assert created["groupType"] == "USER_CONTACT_GROUP"
    assert raised.value.status_code == 409
    types = {g["resourceName"]: g["groupType"] for g in listed["contactGroups"]}
    assert types["contactGroups/myContacts"] == "SYSTEM_CONTACT_GROUP"
    assert types[created["resourceName"]] == "USER_CONTACT_GROUP"


def test_google_people_membership_changes_appear_in_the_sync(google: Google, api: Resource) -> None:
    ada, _other = google.add("Ada"), google.add("Other")
    group = run(api.contactGroups().create(body={"contactGroup": {"name": "Customers"}}))
    _persons, token = full_sync(api, fields="memberships")

    run(
        api.contactGroups()
        .members()
        .modify(
            resourceName=group["resourceName"], body={"resourceNamesToAdd": [ada["resourceName"]]}
        )
    )
    persons, token = sync(api, token, fields="memberships")
    fetched = run(api.contactGroups().get(resourceName=group["resourceName"], maxMembers=10))

    assert [p["resourceName"] for p in persons] == [ada["resourceName"]]
    groups = {
        m["contactGroupMembership"]["contactGroupResourceName"] for m in persons[0]["memberships"]
    }
    assert groups == {"contactGroups/myContacts", group["resourceName"]}
    assert persons[0]["etag"] != ada["etag"]
    assert (fetched["memberCount"], fetched["memberResourceNames"]) == (1, [ada["resourceName"]])


def test_google_people_deleting_a_group_changes_its_members(google: Google, api: Resource) -> None:
    ada = google.add("Ada")
    group = run(api.contactGroups().create(body={"contactGroup": {"name": "Customers"}}))
    members = {"resourceNamesToAdd": [ada["resourceName"]]}
    run(api.contactGroups().members().modify(resourceName=group["resourceName"], body=members))
    _persons, token = full_sync(api, fields="memberships")

    run(api.contactGroups().delete(resourceName=group["resourceName"]))
    persons, _token = sync(api, token, fields="memberships")

    groups = [m["contactGroupMembership"]["contactGroupId"] for m in persons[0]["memberships"]]
    assert groups == ["myContacts"]


def test_google_people_a_contact_keeps_its_last_group(google: Google, api: Resource) -> None:
    ada = google.add("Ada")["resourceName"]

    answer = run(
        api.contactGroups()
        .members()
        .modify(
            resourceName="contactGroups/myContacts",
            body={"resourceNamesToRemove": [ada, "people/c1"]},
        )
    )

    assert answer == {
        "notFoundResourceNames": ["people/c1"],
        "canNotRemoveLastContactGroupResourceNames": [ada],
    }


def test_google_people_group_rename_checks_its_etag(api: Resource) -> None:
    group = run(api.contactGroups().create(body={"contactGroup": {"name": "Customers"}}))
    rename = {"contactGroup": {"name": "Clients", "etag": group["etag"]}}
    renamed = run(api.contactGroups().update(resourceName=group["resourceName"], body=rename))

    with pytest.raises(HttpError) as raised:
        api.contactGroups().update(resourceName=group["resourceName"], body=rename).execute()

    assert (renamed["name"], renamed["formattedName"]) == ("Clients", "Clients")
    assert error_of(raised)["status"] == "FAILED_PRECONDITION"


# -- authorisation and faults --------------------------------------------------------------------
def test_google_people_insufficient_scope_is_403(google: Google) -> None:
    with pytest.raises(HttpError) as unrelated:
        full_sync(google.service((TASKS,)))
    with pytest.raises(HttpError) as read_only_write:
        google.service((READONLY,)).people().createContact(body={}).execute()

    assert unrelated.value.status_code == 403
    assert error_of(unrelated)["errors"][0]["reason"] == "insufficientPermissions"
    assert read_only_write.value.status_code == 403
    assert full_sync(google.service((READONLY,)))[0] == []


def test_google_people_bad_token_is_401(google: Google) -> None:
    answer = requests.get(
        google.base + "v1/people/me/connections",
        params={"personFields": "names"},
        headers={"Authorization": "Bearer ya29.not-issued"},
        timeout=5,
    )

    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == "UNAUTHENTICATED"


def test_google_people_client_refreshes_after_a_401(google: Google) -> None:
    google.sandbox.add_client("crmsync", "secret", ["http://127.0.0.1:9/callback"])
    refresh = oauth.issue_refresh_token(google.sandbox, EMAIL, {CONTACTS}, "crmsync")
    credentials = Credentials(
        "ya29.not-issued",
        refresh_token=refresh,
        token_uri=google.base + "token",
        client_id="crmsync",
        client_secret="secret",
    )
    api = build(
        "people",
        "v1",
        credentials=credentials,
        client_options={"api_endpoint": google.base},
        static_discovery=True,
    )

    persons, _token = full_sync(api)

    assert persons == []
    assert credentials.token in google.sandbox.access_tokens


@pytest.mark.parametrize(("code", "reason"), [(429, "rateLimitExceeded"), (503, "backendError")])
def test_google_people_injected_faults_reach_the_client(
    google: Google, api: Resource, code: int, reason: str
) -> None:
    google.sandbox.inject(code, reason=reason, path="connections", retry_after=7)

    with pytest.raises(HttpError) as raised:
        full_sync(api)

    assert raised.value.status_code == code
    assert raised.value.resp["retry-after"] == "7"
    assert error_of(raised)["errors"][0]["reason"] == reason
    assert full_sync(api)[0] == []
