"""The Graph sandbox cannot drift from Graph's schema: its answers are checked against
Microsoft's published v1.0 metadata (`sandbox/microsoft/schema`, a subset extracted from
msgraph-metadata's CSDL).

Each test drives the sandbox over https with the requests crmsync's adapters make
(contacts, events single, all-day, recurring, with attendees and extended properties,
To Do tasks with recurrence, due dates and linkedResources, folders, calendars, lists,
subscriptions and their notifications, /me, $batch) and checks every JSON answer
against Graph's type for it, beside the sandbox's own check of every answer as it
leaves (core.Router, on for every sandbox test). Other tests show that the check fails
on what Graph cannot answer (a made-up property, a string where a boolean is declared,
...), that the sandbox refuses writes Graph refuses, and where the schema came from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sandbox.microsoft import contacts as sandbox_contacts
from sandbox.microsoft import subscriptions
from sandbox.microsoft.core import MEDIA, NO_CONTENT, MicrosoftSandbox, graph_time
from sandbox.microsoft.schema import SCHEMA_PATH, Schema, SchemaDrift, extract, graph_schema
from sandbox.microsoft.server import routes
from tests.integration.microsoft_sandbox import EMAIL, Graph, Receiver, served_graph

pytestmark = pytest.mark.integration

LINK_KEY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name crmsyncLinkKey"
WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


class Checked:
    """Requests whose JSON answers are checked against Graph's type for them here, in
    the test, whatever the sandbox's own check does; `seen` names the types checked."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.seen: set[str] = set()

    def __call__(
        self, method: str, path: str, answers: str, status: int = 200, **kwargs: Any
    ) -> Any:
        answer = self.graph.call(method, path, **kwargs)
        body = self.graph.ok(answer, status)
        self.check(body, answers)
        return body

    def check(self, body: Any, answers: str) -> None:
        problems = graph_schema().check_answer(body, answers)
        assert not problems, f"{answers}: {problems}"
        self.seen.add(answers.removeprefix("Collection(").removesuffix(")"))


def when(text: str, zone: str = "UTC") -> dict[str, str]:
    return {"dateTime": text, "timeZone": zone}


# -- the schema ----------------------------------------------------------------------------------
def test_the_schema_is_a_small_subset_of_graphs_published_v1_metadata_naming_its_source() -> None:
    """What the sandbox is held to is Graph's own v1.0 schema, traceable to the
    metadata commit it was extracted from, and closed over the types it names."""
    document = json.loads(SCHEMA_PATH.read_text())
    schema = graph_schema()

    assert SCHEMA_PATH.stat().st_size < 200_000
    assert document["source"]["repository"] == "microsoftgraph/msgraph-metadata"
    assert document["source"]["path"] == "clean_v10_metadata/cleanMetadata.xml"
    assert re.fullmatch(r"[0-9a-f]{40}", document["source"]["commit"])
    served = {"user", "contactFolder", "contact", "calendar", "event", "todoTaskList"}
    served |= {"todoTask", "linkedResource", "subscription", "changeNotificationCollection"}
    served |= {"singleValueLegacyExtendedProperty", "attachment", "fileAttachment"}
    served |= {"openTypeExtension", "message", "mailFolder", "outlookCategory"}
    assert {schema.qualified(t) for t in served} <= set(schema.roots)
    for name, described in schema.types.items():  # closed: every type it names is in it
        named = [p["type"] for p in described.get("properties", {}).values()]
        named += [described["base"]] if "base" in described else []
        named += [
            n["type"] for n in described.get("navigation", {}).values() if not n.get("outside")
        ]
        missing = [t for t in named if not t.startswith("Edm.") and t not in schema.types]
        assert not missing, f"{name} names {missing}, not in the subset"
    contact = schema.members("contact")
    assert contact["businessAddress"].type == "microsoft.graph.physicalAddress"
    assert contact["id"].owner == "microsoft.graph.entity" and not contact["id"].nullable
    assert contact["categories"].owner == "microsoft.graph.outlookItem"
    assert contact["emailAddresses"].collection
    assert "uid" not in schema.members("event")  # a beta property, not v1.0's


def test_extraction_takes_the_roots_their_bases_and_what_they_reference_from_csdl() -> None:
    """extract.py keeps the subset current: roots, base types, referenced complex and
    enum types, collection-ness and nullability, navigation targets it leaves out."""
    csdl = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">
  <edmx:DataServices>
    <Schema Namespace="microsoft.graph" Alias="graph" xmlns="http://docs.oasis-open.org/odata/ns/edm">
      <EnumType Name="importance">
        <Member Name="low" Value="0" />
        <Member Name="high" Value="2" />
      </EnumType>
      <EnumType Name="unused"><Member Name="x" Value="0" /></EnumType>
      <ComplexType Name="itemBody"><Property Name="content" Type="Edm.String" /></ComplexType>
      <EntityType Name="entity" Abstract="true">
        <Property Name="id" Type="Edm.String" Nullable="false" />
      </EntityType>
      <EntityType Name="note" BaseType="graph.entity" OpenType="true">
        <Property Name="bodies" Type="Collection(graph.itemBody)" />
        <Property Name="importance" Type="graph.importance" Nullable="false" />
        <NavigationProperty Name="photo" Type="graph.photo" ContainsTarget="true" />
      </EntityType>
      <EntityType Name="photo" BaseType="graph.entity" />
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>"""

    document = extract.extract(csdl, {"commit": "0" * 40}, roots=["microsoft.graph.note"])

    types = document["types"]
    assert set(types) == {
        "microsoft.graph.note",
        "microsoft.graph.entity",
        "microsoft.graph.itemBody",
        "microsoft.graph.importance",
    }
    note = types["microsoft.graph.note"]
    assert note["base"] == "microsoft.graph.entity" and note["open"] is True
    assert note["properties"]["bodies"] == {"type": "microsoft.graph.itemBody", "collection": True}
    assert note["properties"]["importance"] == {
        "type": "microsoft.graph.importance",
        "nullable": False,
    }
    assert note["navigation"]["photo"] == {"type": "microsoft.graph.photo", "outside": True}
    assert types["microsoft.graph.importance"] == {"kind": "enum", "members": ["low", "high"]}
    assert Schema(document).check({"id": "1", "importance": "high", "bodies": []}, "note") == []


# -- the check fails on drift --------------------------------------------------------------------
def test_the_check_fails_on_a_made_up_property_and_a_string_where_a_boolean_is_declared() -> None:
    """The sandbox cannot drift from Graph's schema unnoticed: a deliberately wrong
    answer fails the check, once per problem."""
    event = {"id": "AAMk1", "subject": "Review", "isAllDay": "false", "colour": "blue"}

    problems = graph_schema().check(event, "event")

    assert len(problems) == 2
    assert "$.isAllDay" in problems[0] and "Edm.Boolean" in problems[0]
    assert "$.colour" in problems[1] and "no property 'colour'" in problems[1]


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        ({"reminderMinutesBeforeStart": "15"}, "not an Edm.Int32"),
        ({"reminderMinutesBeforeStart": True}, "not an Edm.Int32"),
        ({"createdDateTime": "2026-03-02 09:00"}, "not an Edm.DateTimeOffset"),
        ({"createdDateTime": "2026-02-30T09:00:00Z"}, "not an Edm.DateTimeOffset"),
        ({"showAs": "away"}, "no member of freeBusyStatus"),
        ({"categories": "CRM"}, "is not a list"),
        ({"categories": None}, "not nullable"),
        ({"id": None}, "not nullable"),
        ({"start": "2026-03-03T10:00:00"}, "is not an object (dateTimeTimeZone)"),
        ({"start": {"dateTime": "2026-03-03T10:00:00", "zone": "UTC"}}, "no property 'zone'"),
        ({"attendees": [{"emailAddress": {"address": "a@b.example", "mail": "x"}}]}, "'mail'"),
        (
            {"recurrence": {"range": {"type": "noEnd", "startDate": "2026-03-03T00:00:00Z"}}},
            "$.recurrence.range.startDate",
        ),
        ({"singleValueExtendedProperties": [{"id": "x", "value": 1}]}, "value: 1 is not"),
        ({"attachments": [{"name": 7}]}, "$.attachments[0].name"),
        ({"@odata.type": "#microsoft.graph.contact"}, "is no event"),
        ({"@odata.etags": "W/1"}, "no OData annotation is named 'odata.etags'"),
        ({"@odata.removed": {"reason": "deleted"}}, "no OData annotation"),
        ({"@removed": {"reason": "gone"}}, "no @removed"),
        ({"colour@odata.type": "#String"}, "annotates 'colour'"),
    ],
)
def test_the_check_fails_on_each_kind_of_mistyped_event(value: dict[str, Any], wanted: str) -> None:
    """Each way an answer can drift from Graph's types is caught, with where and why."""
    problems = graph_schema().check({"id": "AAMk1", **value}, "event")

    assert len(problems) == 1 and wanted in problems[0], problems


def test_the_check_fails_on_a_navigation_property_outside_the_subset() -> None:
    problems = graph_schema().check({"id": "AAMk1", "photo": {}}, "contact")

    assert len(problems) == 1 and "navigation property the sandbox does not expand" in problems[0]


def test_the_check_lets_an_open_extension_hold_the_apps_own_properties() -> None:
    extension = {
        "@odata.type": "#microsoft.graph.openTypeExtension",
        "id": "Com.Example.Data",
        "extensionName": "Com.Example.Data",
        "Ticket": "T-77",
    }

    assert graph_schema().check({"id": "AAMk1", "extensions": [extension]}, "todoTask") == []
    assert graph_schema().check({"id": "AAMk1", "Ticket": "T-77"}, "todoTask")


def test_the_check_accepts_answers_as_graph_documents_them() -> None:
    """The check is Graph's, not stricter: answers shaped as Graph's documentation
    shows them (nulls, empty addresses, a delta page with @removed) pass."""
    contact = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('x')/contacts/$entity",
        "@odata.etag": 'W/"EQAAABYAAACv7At+L1eYS7ZwgGEFtZYpAAAEN8Q0"',
        "id": "AAMkAGI2THk0AAA=",
        "createdDateTime": "2017-04-24T23:17:32Z",
        "lastModifiedDateTime": "2017-04-24T23:17:33Z",
        "changeKey": "EQAAABYAAACv7At+L1eYS7ZwgGEFtZYpAAAEN8Q0",
        "categories": [],
        "parentFolderId": "AAMkAGI2AAEOAAA=",
        "birthday": None,
        "fileAs": "",
        "displayName": "Pavel Bansky",
        "givenName": "Pavel",
        "initials": None,
        "surname": "Bansky",
        "imAddresses": [],
        "homePhones": [],
        "mobilePhone": None,
        "businessPhones": ["+1 732 555 0102"],
        "children": [],
        "emailAddresses": [{"name": "Pavel Bansky", "address": "pavelb@contoso.example"}],
        "homeAddress": {},
        "businessAddress": {"street": "1 Main St", "city": "Redmond", "countryOrRegion": "US"},
        "otherAddress": {},
    }
    event = {
        "@odata.etag": 'W/"ZlnW4RIAV06KYYwlrfNZvQAAKGWwbw=="',
        "id": "AAMkAGIAAAoZDOFAAA=",
        "transactionId": None,
        "originalStartTimeZone": "Pacific Standard Time",
        "reminderMinutesBeforeStart": 15,
        "isAllDay": False,
        "seriesMasterId": None,
        "showAs": "busy",
        "type": "seriesMaster",
        "onlineMeeting": None,
        "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
        "body": {"contentType": "html", "content": "<html><body>Agenda</body></html>"},
        "start": {"dateTime": "2017-04-15T11:00:00.0000000", "timeZone": "UTC"},
        "location": {"displayName": "Cafe", "locationType": "default", "uniqueIdType": "private"},
        "recurrence": {
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "month": 0,
                "dayOfMonth": 0,
                "daysOfWeek": ["saturday"],
                "firstDayOfWeek": "sunday",
                "index": "first",
            },
            "range": {
                "type": "endDate",
                "startDate": "2017-04-15",
                "endDate": "2017-05-13",
                "recurrenceTimeZone": "Pacific Standard Time",
                "numberOfOccurrences": 0,
            },
        },
        "attendees": [
            {
                "type": "required",
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": {"name": "Samantha Booth", "address": "sb@contoso.example"},
            }
        ],
        "organizer": {"emailAddress": {"name": "Dana Swope", "address": "ds@contoso.example"}},
    }
    task = {
        "@odata.etag": 'W/"xzyPKP0BiUGgld+lMKXwbQAAgdhkVw=="',
        "importance": "low",
        "isReminderOn": False,
        "status": "notStarted",
        "title": "Shop for dinner",
        "createdDateTime": "2020-08-18T22:50:51.9528497Z",
        "bodyLastModifiedDateTime": "2020-08-18T22:50:51.9528497Z",
        "categories": [],
        "id": "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AxzyPKP0BiUGgld",
        "body": {"content": "", "contentType": "text"},
        "dueDateTime": {"dateTime": "2020-08-25T00:00:00.0000000", "timeZone": "UTC"},
        "linkedResources@odata.context": "https://graph.microsoft.com/v1.0/$metadata#x",
        "linkedResources": [
            {"applicationName": "Partner App", "displayName": "Partner", "id": "f9cddce2"}
        ],
    }
    schema = graph_schema()

    assert schema.check(contact, "contact") == []
    assert schema.check(event, "event") == []
    assert schema.check(task, "todoTask") == []
    page = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(contact)",
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/me/contacts/delta?$deltatoken=x",
        "value": [
            {"@odata.type": "#microsoft.graph.contact", **contact},
            {"id": "y", "@removed": {"reason": "deleted"}},
        ],
    }
    assert schema.check_answer(page, "Collection(contact)") == []
    assert schema.check_answer({**page, "count": 2}, "Collection(contact)") == [
        "$.count: no member of a collection answer"
    ]


def test_a_drifted_answer_is_refused_500_with_what_drifted_and_recorded(graph: Graph) -> None:
    """The sandbox's own check of its answers: state Graph could not answer (planted,
    as a bug in the sandbox would make it) turns the answer into 500 SandboxSchemaDrift
    naming the path, the type and each problem."""
    graph.sandbox.users[EMAIL].display_name = 42  # type: ignore[assignment]
    made = graph.ok(graph.post("me/contacts", {"givenName": "Ada"}), 201)
    state = sandbox_contacts.state_of(graph.sandbox.users[EMAIL])
    state.contacts[made["id"]].fields["favouriteColour"] = "blue"

    me = graph.get("me")
    contact = graph.get(f"me/contacts/{made['id']}")
    listing = graph.get("me/contacts")

    for answer in (me, contact, listing):
        assert answer.status_code == 500
        assert answer.json()["error"]["code"] == "SandboxSchemaDrift"
    assert "$.displayName: 42 is not an Edm.String" in me.json()["error"]["message"]
    assert "contact has no property 'favouriteColour'" in contact.json()["error"]["message"]
    assert "$.value[0].favouriteColour" in listing.json()["error"]["message"]
    assert len(graph.sandbox.drift) == 3 and graph.sandbox.drift[0].startswith("GET /v1.0/me ")
    graph.sandbox.drift.clear()  # seen: the fixture fails a test that leaves drift behind


def test_the_check_is_on_by_default_and_can_be_turned_off(graph: Graph) -> None:
    """Every sandbox test checks its answers unless it says otherwise."""
    assert graph.sandbox.check_schema is True and MicrosoftSandbox().check_schema is True
    graph.sandbox.users[EMAIL].display_name = 42  # type: ignore[assignment]
    graph.sandbox.check_schema = False

    assert graph.ok(graph.get("me"))["displayName"] == 42
    assert graph.sandbox.drift == []


def test_every_graph_route_names_the_graph_type_it_answers() -> None:
    """A route added without its answer's type would escape the check."""
    schema = graph_schema()
    for found in routes(MicrosoftSandbox()):
        pattern = found.pattern.pattern
        if not pattern.startswith("^v1\\.0/") or pattern == "^v1\\.0/\\$batch$":
            assert found.answers is None, pattern  # identity platform; $batch's are checked
            continue
        assert found.answers is not None, f"{found.method} {pattern} names no type"
        if found.method == "DELETE":
            assert found.answers == NO_CONTENT, pattern
        if found.answers not in (NO_CONTENT, MEDIA):
            inner = found.answers.removeprefix("Collection(").removesuffix(")")
            assert schema.qualified(inner) in schema.types, found.answers


def test_the_sandbox_refuses_writes_graph_refuses_for_their_types(graph: Graph) -> None:
    """A value of the wrong type never reaches the sandbox's store, so it cannot be
    answered: 400, as Graph answers it."""
    list_id = graph.ok(graph.get("me/todo/lists"))["value"][0]["id"]
    event = {"start": when("2026-03-03T10:00:00"), "end": when("2026-03-03T11:00:00")}
    refused = [
        graph.post("me/contacts", {"givenName": "Ada", "businessAddress": "10 Downing St"}),
        graph.post("me/contacts", {"givenName": "Ada", "emailAddresses": None}),
        graph.post("me/events", {**event, "isAllDay": "no"}),
        graph.post("me/events", {**event, "reminderMinutesBeforeStart": "15"}),
        graph.post(f"me/todo/lists/{list_id}/tasks", {"title": "T", "isReminderOn": None}),
        graph.post(
            f"me/todo/lists/{list_id}/tasks",
            {"title": "T", "linkedResources": [{"applicationName": "CRM", "webUrl": 7}]},
        ),
    ]

    assert [r.status_code for r in refused] == [400] * len(refused)
    assert all("Cannot convert the request" in r.json()["error"]["message"] for r in refused)
    assert graph.ok(graph.get("me/contacts"))["value"] == []


# -- the sandbox's answers hold Graph's schema -----------------------------------------------------
def test_contacts_folders_and_their_delta_answer_in_graphs_schema(graph: Graph) -> None:
    """The sandbox cannot drift from Graph's schema for contacts: folders, a contact
    with every field crmsync writes, $expand and $filter of extended properties,
    $select, paging, PATCH, delta with @removed."""
    check = Checked(graph)
    folder = check("POST", "me/contactFolders", "contactFolder", 201, json={"displayName": "CRM"})
    check("GET", "me/contactFolders", "Collection(contactFolder)")
    check("GET", f"me/contactFolders/{folder['id']}", "contactFolder")
    base = f"me/contactFolders/{folder['id']}/contacts"
    full = {
        "givenName": "Ada",
        "surname": "Lovelace",
        "middleName": "Augusta",
        "nickName": "Ada",
        "title": "Countess",
        "companyName": "Analytical Engines",
        "jobTitle": "Engineer",
        "department": "R&D",
        "emailAddresses": [{"address": "ada@example.com", "name": "Ada"}],
        "businessPhones": ["+44 20 7946 0018"],
        "homePhones": ["+49 30 901820"],
        "mobilePhone": "+1 650-253-0000",
        "businessAddress": {"street": "12 St James's Sq", "city": "London", "postalCode": "SW1"},
        "homeAddress": {"countryOrRegion": "GB"},
        "birthday": "1815-12-10T00:00:00Z",
        "personalNotes": "Notes",
        "categories": ["CRM"],
        "children": ["Byron"],
        "imAddresses": ["ada@im.example"],
        "singleValueExtendedProperties": [{"id": LINK_KEY, "value": "crm-1"}],
    }
    made = check("POST", base, "contact", 201, json=full)
    other = check("POST", "me/contacts", "contact", 201, json={"givenName": "Grace"})
    expand = {"$expand": f"singleValueExtendedProperties($filter=id eq '{LINK_KEY}')"}
    read = check("GET", f"{base}/{made['id']}", "contact", params=expand)
    assert read["singleValueExtendedProperties"] == [{"id": LINK_KEY, "value": "crm-1"}]
    check("GET", f"{base}/{made['id']}", "contact", params={"$select": "givenName,birthday"})
    check("GET", f"me/contacts/{other['id']}", "contact")
    check("GET", base, "Collection(contact)", params={"$top": "1", **expand})
    filtered = {
        "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{LINK_KEY}' and "
        "ep/value eq 'crm-1')"
    }
    assert check("GET", base, "Collection(contact)", params=filtered)["value"]
    first = check("GET", f"{base}/delta", "Collection(contact)", params=expand)
    patch = {"jobTitle": "Analyst", "businessAddress": None, "mobilePhone": None}
    check("PATCH", f"{base}/{made['id']}", "contact", json=patch)
    gone = check("POST", base, "contact", 201, json={"givenName": "Gone"})
    assert graph.delete(f"{base}/{gone['id']}").status_code == 204
    later = check("GET", first["@odata.deltaLink"], "Collection(contact)")
    assert {"@removed"} <= {k for item in later["value"] for k in item}

    assert check.seen == {"contactFolder", "contact"}


def test_calendars_events_views_and_their_delta_answer_in_graphs_schema(graph: Graph) -> None:
    """The sandbox cannot drift from Graph's schema for the calendar: calendars,
    events with attendees and extended properties, all-day, recurring (weekly, monthly,
    an exception, a cancelled occurrence), time zones, views, instances, delta."""
    check = Checked(graph)
    check("GET", "me/calendar", "calendar")
    made = check("POST", "me/calendars", "calendar", 201, json={"name": "CRM"})
    check("GET", "me/calendars", "Collection(calendar)")
    check("GET", f"me/calendars/{made['id']}", "calendar")
    meeting = {
        "subject": "Quarterly review",
        "body": {"contentType": "html", "content": "<p>Agenda</p>"},
        "start": when("2026-03-03T10:00:00", "Pacific Standard Time"),
        "end": when("2026-03-03T11:00:00", "Pacific Standard Time"),
        "location": {"displayName": "Room 1", "address": {"city": "London"}},
        "locations": [{"displayName": "Room 1"}],
        "attendees": [
            {"emailAddress": {"address": "grace@navy.example", "name": "Grace"}, "type": "required"}
        ],
        "importance": "high",
        "sensitivity": "private",
        "showAs": "tentative",
        "reminderMinutesBeforeStart": 30,
        "categories": ["CRM"],
        "transactionId": "tx-1",
        "singleValueExtendedProperties": [{"id": LINK_KEY, "value": "crm-9"}],
    }
    single = check("POST", "me/events", "event", 201, json=meeting)
    all_day = {
        "subject": "Off",
        "isAllDay": True,
        "start": when("2026-03-05T00:00:00"),
        "end": when("2026-03-06T00:00:00"),
    }
    check("POST", f"me/calendars/{made['id']}/events", "event", 201, json=all_day)
    series = {
        "subject": "Stand-up",
        "start": when("2026-03-02T09:00:00", "W. Europe Standard Time"),
        "end": when("2026-03-02T09:15:00", "W. Europe Standard Time"),
        "recurrence": {
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "daysOfWeek": ["monday", "wednesday"],
                "firstDayOfWeek": "monday",
            },
            "range": {"type": "numbered", "startDate": "2026-03-02", "numberOfOccurrences": 6},
        },
    }
    master = check("POST", "me/calendar/events", "event", 201, json=series)
    monthly = {
        "subject": "Board",
        "start": when("2026-03-10T15:00:00"),
        "end": when("2026-03-10T16:00:00"),
        "recurrence": {
            "pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["tuesday"]},
            "range": {"type": "noEnd", "startDate": "2026-03-10"},
        },
    }
    check("POST", "me/events", "event", 201, json=monthly)
    expand = {"$expand": f"singleValueExtendedProperties($filter=id eq '{LINK_KEY}')"}
    check("GET", f"me/events/{single['id']}", "event", params=expand)
    zone = {"Prefer": 'outlook.timezone="Pacific Standard Time"'}
    check("GET", f"me/events/{single['id']}", "event", headers=zone)
    check("GET", "me/events", "Collection(event)", params={"$top": "2"})
    check("GET", f"me/calendars/{made['id']}/events", "Collection(event)")
    check("GET", "me/calendarView", "Collection(event)", params={**WINDOW, "$top": "50"})
    check("GET", f"me/calendars/{made['id']}/calendarView", "Collection(event)", params=WINDOW)
    instances = check(
        "GET", f"me/events/{master['id']}/instances", "Collection(event)", params=WINDOW
    )["value"]
    occurrence = instances[1]["id"]
    moved = {"subject": "Stand-up (moved)", "start": when("2026-03-04T10:00:00")}
    moved["end"] = when("2026-03-04T10:15:00")
    check("PATCH", f"me/events/{occurrence}", "event", json=moved)
    assert graph.delete(f"me/events/{instances[2]['id']}").status_code == 204
    check("PATCH", f"me/events/{single['id']}", "event", json={"isReminderOn": False})
    rounds = check("GET", "me/calendarView/delta", "Collection(event)", params=WINDOW)
    while "@odata.nextLink" in rounds:
        rounds = check("GET", rounds["@odata.nextLink"], "Collection(event)")
    snooze = {"newReminderTime": when("2026-03-03T09:50:00")}
    assert graph.post(f"me/events/{single['id']}/snoozeReminder", snooze).status_code == 200
    assert graph.post(f"me/events/{master['id']}/dismissReminder", {}).status_code == 200
    assert graph.delete(f"me/events/{single['id']}").status_code == 204
    later = check("GET", rounds["@odata.deltaLink"], "Collection(event)")
    assert any("@removed" in item for item in later["value"])

    assert check.seen == {"calendar", "event"}


def test_todo_lists_tasks_and_their_delta_answer_in_graphs_schema(graph: Graph) -> None:
    """The sandbox cannot drift from Graph's schema for To Do: lists, a task with
    recurrence, due and reminder dates and linkedResources, completion, delta."""
    check = Checked(graph)
    lists = check("GET", "me/todo/lists", "Collection(todoTaskList)")["value"]
    made = check("POST", "me/todo/lists", "todoTaskList", 201, json={"displayName": "CRM"})
    check("GET", f"me/todo/lists/{made['id']}", "todoTaskList")
    base = f"me/todo/lists/{lists[0]['id']}/tasks"
    task = {
        "title": "Call Grace",
        "body": {"content": "About the engine", "contentType": "text"},
        "importance": "high",
        "dueDateTime": when("2026-03-10T00:00:00.0000000"),
        "startDateTime": when("2026-03-09T00:00:00.0000000"),
        "isReminderOn": True,
        "reminderDateTime": when("2026-03-09T09:00:00.0000000"),
        "categories": ["CRM"],
        "recurrence": {
            "pattern": {"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 10},
            "range": {"type": "noEnd", "startDate": "2026-03-10"},
        },
        "linkedResources": [
            {
                "applicationName": "crmsync",
                "displayName": "Grace Hopper",
                "externalId": "crm-7",
                "webUrl": "https://crm.example/contacts/7",
            }
        ],
    }
    made_task = check("POST", base, "todoTask", 201, json=task)
    plain = check("POST", base, "todoTask", 201, json={"title": "Plain"})
    expand = {"$expand": "linkedResources"}
    check("GET", f"{base}/{made_task['id']}", "todoTask", params=expand)
    check("GET", f"{base}/{plain['id']}", "todoTask")
    check("GET", base, "Collection(todoTask)", params={"$top": "1", **expand})
    first = check("GET", f"{base}/delta", "Collection(todoTask)", params=expand)
    check("PATCH", f"{base}/{made_task['id']}", "todoTask", json={"status": "completed"})
    clear = {"dueDateTime": None, "recurrence": None, "status": "inProgress"}
    check("PATCH", f"{base}/{made_task['id']}", "todoTask", json=clear)
    assert graph.delete(f"{base}/{plain['id']}").status_code == 204
    later = check("GET", first["@odata.deltaLink"], "Collection(todoTask)", params=expand)
    assert any("@removed" in item for item in later["value"])

    assert check.seen == {"todoTaskList", "todoTask"}


def test_subscriptions_and_their_notifications_answer_in_graphs_schema(graph: Graph) -> None:
    """The sandbox cannot drift from Graph's schema for subscriptions and the change
    and lifecycle notifications it posts."""
    check = Checked(graph)
    receiver = Receiver()
    try:
        expires = graph_time(graph.clock.now + timedelta(minutes=4000))
        body = {
            "changeType": "created,updated,deleted",
            "notificationUrl": receiver.url,
            "lifecycleNotificationUrl": receiver.lifecycle_url,
            "resource": "me/contacts",
            "expirationDateTime": expires,
            "clientState": "s3cret",
        }
        made = check("POST", "subscriptions", "subscription", 201, json=body)
        check("GET", "subscriptions", "Collection(subscription)")
        check("GET", f"subscriptions/{made['id']}", "subscription")
        renewed = graph_time(graph.clock.now + timedelta(minutes=5000))
        patch = {"expirationDateTime": renewed}
        check("PATCH", f"subscriptions/{made['id']}", "subscription", json=patch)
        graph.ok(graph.post("me/contacts", {"givenName": "Ada"}), 201)
        subscriptions.lifecycle(graph.sandbox, made["id"], "reauthorizationRequired")

        assert subscriptions.flush(graph.sandbox) == [202, 202]

        for posted in receiver.received:
            check.check(
                {k: v for k, v in posted.items() if k != "path"}, "changeNotificationCollection"
            )
    finally:
        receiver.close()
    assert check.seen == {"subscription", "changeNotificationCollection"}


def test_notifications_graph_could_not_send_raise_schema_drift(graph: Graph) -> None:
    """A notification Graph could not send fails the flush, before anything is sent."""
    receiver = Receiver()
    try:
        expires = graph_time(graph.clock.now + timedelta(minutes=60))
        body = {"changeType": "created", "notificationUrl": receiver.url}
        body |= {"resource": "me/events", "expirationDateTime": expires}
        graph.ok(graph.post("subscriptions", body), 201)
        start, end = when("2026-03-03T10:00:00"), when("2026-03-03T11:00:00")
        graph.ok(graph.post("me/events", {"start": start, "end": end}), 201)
        subscriptions.state_of(graph.sandbox).queue[0].item["changeType"] = "moved"

        with pytest.raises(SchemaDrift, match=r"\$\.value\[0\]\.changeType: \"moved\""):
            subscriptions.flush(graph.sandbox)
    finally:
        receiver.close()
    assert graph.sandbox.drift and receiver.received == []
    assert len(subscriptions.pending(graph.sandbox)) == 1  # still queued
    graph.sandbox.drift.clear()


def test_me_and_batched_answers_hold_graphs_schema(graph: Graph) -> None:
    """/me, and each answer inside a $batch, hold Graph's schema."""
    check = Checked(graph)
    check("GET", "me", "user")
    steps = [
        {"id": "1", "method": "GET", "url": "/me"},
        {
            "id": "2",
            "method": "POST",
            "url": "/me/contacts",
            "headers": JSON,
            "body": {"givenName": "G"},
        },
        {"id": "3", "method": "GET", "url": "/me/todo/lists"},
        {
            "id": "4",
            "method": "GET",
            "url": "/me/calendarView?startDateTime=2026-03-01T00:00:00Z"
            "&endDateTime=2026-03-02T00:00:00Z",
        },
    ]
    answers = graph.ok(graph.post("$batch", {"requests": steps}))["responses"]

    types = {"1": "user", "2": "contact", "3": "Collection(todoTaskList)", "4": "Collection(event)"}
    for answer in answers:
        assert 200 <= answer["status"] < 300, answer
        check.check(answer["body"], types[answer["id"]])
    assert check.seen == {"user", "contact", "todoTaskList", "event"}
