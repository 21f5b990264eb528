"""The Google sandbox's Calendar v3 over a real socket, driven by the real
google-api-python-client built from the discovery document it ships with.

Every response body is checked against the schema the discovery document names for
the method, property by property, so the sandbox cannot answer with anything the real
API would not; error answers are checked for Google's error format.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from sandbox.google.calendar import (
    add_calendar,
    calendar_events,
    cap_page_size,
    expire_sync_tokens,
    notifications,
    sent_updates,
    set_attendee_response,
)
from sandbox.google.core import CALENDAR_SCOPES, SCOPE, TASKS_SCOPES, GoogleSandbox
from sandbox.google.server import serve

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
BERLIN = "Europe/Berlin"
TEAM = "team@group.calendar.google.com"


# -- the discovery document as the judge of every answer ----------------------------------------
class Discovery:
    """A discovery document shipped with the client: the response schema of each method,
    and a check of a body against a schema (unknown properties and wrong JSON types are
    violations)."""

    def __init__(self, name: str) -> None:
        path = files("googleapiclient.discovery_cache").joinpath("documents", name)
        self.document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self.responses: dict[str, str] = {}
        self._collect(self.document["resources"])

    def _collect(self, resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for method in resource.get("methods", {}).values():
                if "response" in method:
                    self.responses[method["id"]] = method["response"]["$ref"]
            self._collect(resource.get("resources", {}))

    def violations(self, body: Any, schema_name: str) -> list[str]:
        found: list[str] = []
        self._check({"$ref": schema_name}, body, schema_name, found)
        return found

    def _check(self, schema: dict[str, Any], value: Any, where: str, found: list[str]) -> None:
        if "$ref" in schema:
            self._check(self.document["schemas"][schema["$ref"]], value, where, found)
            return
        kind = schema.get("type")
        if kind == "object":
            self._check_object(schema, value, where, found)
        elif kind == "array":
            if not isinstance(value, list):
                found.append(f"{where}: not an array")
                return
            for n, item in enumerate(value):
                self._check(schema["items"], item, f"{where}[{n}]", found)
        elif kind is not None and kind != "any" and not _is_type(kind, schema, value):
            found.append(f"{where}: {value!r} is no {kind} ({schema.get('format', '-')})")

    def _check_object(
        self, schema: dict[str, Any], value: Any, where: str, found: list[str]
    ) -> None:
        if not isinstance(value, dict):
            found.append(f"{where}: not an object")
            return
        known, extra = schema.get("properties", {}), schema.get("additionalProperties")
        for name, item in value.items():
            if name in known:
                self._check(known[name], item, f"{where}.{name}", found)
            elif extra is not None:
                self._check(extra, item, f"{where}.{name}", found)
            else:
                found.append(f"{where}.{name}: the schema has no such property")


def _is_type(kind: str, schema: dict[str, Any], value: Any) -> bool:
    """A JSON value of the discovery type (64-bit integers travel as strings)."""
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind != "string" or not isinstance(value, str):
        return False
    return _has_format(schema.get("format"), value)


def _has_format(form: str | None, value: str) -> bool:
    try:
        if form in ("int64", "uint64"):
            return value.lstrip("-").isdigit()
        if form == "date":
            return date.fromisoformat(value).isoformat() == value
        if form == "date-time":
            return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False
    return True


CALENDAR = Discovery("calendar.v3.json")


def run(request: Any, discovery: Discovery = CALENDAR) -> Any:
    """Execute a client request (no retries) and hold its answer to the method's schema."""
    answer = request.execute(num_retries=0)
    schema = discovery.responses.get(request.methodId)
    if schema is not None:
        assert discovery.violations(answer, schema) == [], request.methodId
    return answer


def failure(request: Any) -> tuple[int, str]:
    """The status and reason of a request Google's way refuses, its body in Google's
    error format."""
    with pytest.raises(HttpError) as caught:
        request.execute(num_retries=0)
    error = json.loads(caught.value.content)["error"]
    status = int(caught.value.resp.status)
    assert error["code"] == status and error["message"] and error["status"]
    return status, error["errors"][0]["reason"]


# -- the sandbox on a socket -----------------------------------------------------------------------
class Clock:
    """The sandbox's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Google:
    sandbox: GoogleSandbox
    url: str
    clock: Clock

    def calendar(self, email: str = ANN, scopes: frozenset[str] = CALENDAR_SCOPES) -> Any:
        """The real Calendar client, authorised as `email` with `scopes`."""
        return build(
            "calendar",
            "v3",
            credentials=Credentials(self.sandbox.issue_token(email, scopes)),
            client_options={"api_endpoint": self.url + "calendar/v3/"},
            static_discovery=True,
            cache_discovery=False,
        )


@pytest.fixture
def google() -> Iterator[Google]:
    clock = Clock()
    sandbox = GoogleSandbox(clock)
    url, stop = serve(sandbox, modules=("calendar", "tasks"))
    yield Google(sandbox, url, clock)
    stop()


@dataclass
class Receiver:
    """A web hook on a loopback socket that keeps every POST it gets (header names in
    lower case: HTTP does not distinguish case)."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.arrived:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.posts.append({"headers": headers, "body": body})
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        return f"http://127.0.0.1:{server.server_port}/hook", server

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.posts) >= count, timeout)
            return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    hook = Receiver()
    url, server = hook.serve()
    yield hook, url
    server.shutdown()
    server.server_close()


# -- event helpers ---------------------------------------------------------------------------------
def timed(summary: str, start: str, end: str, zone: str = BERLIN, **extra: Any) -> dict[str, Any]:
    """An event body with local start and end times in `zone`."""
    return {
        "summary": summary,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        **extra,
    }


def insert(service: Any, body: dict[str, Any], calendar: str = "primary", **params: Any) -> Any:
    return run(service.events().insert(calendarId=calendar, body=body, **params))


def meeting(service: Any, n: int, send_updates: str | None = None, **extra: Any) -> Any:
    """Meeting n: 09:00-10:00 Berlin on 10+n November, with `extra` event fields."""
    body = timed(f"Meeting {n}", f"2026-11-{10 + n}T09:00:00", f"2026-11-{10 + n}T10:00:00")
    params = {"sendUpdates": send_updates} if send_updates else {}
    return insert(service, {**body, **extra}, **params)


def pages(service: Any, **params: Any) -> list[dict[str, Any]]:
    """Every page of an events.list, followed with the client's own list_next."""
    found = []
    request = service.events().list(calendarId="primary", **params)
    while request is not None:
        page = run(request)
        found.append(page)
        request = service.events().list_next(request, page)
    return found


def listing(service: Any, **params: Any) -> dict[str, Any]:
    """All items of a listing, and the sync token its last page handed out."""
    found = pages(service, **params)
    return {
        "items": [item for page in found for item in page["items"]],
        "token": found[-1].get("nextSyncToken"),
    }


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in items}


# -- the judge itself ----------------------------------------------------------------------------
def test_google_calendar_schema_check_catches_unknown_properties_and_wrong_types() -> None:
    good = {
        "kind": "calendar#event",
        "sequence": 1,
        "start": {"date": "2026-11-05"},
        "attendees": [{"email": "bob@example.com", "self": True}],
        "extendedProperties": {"private": {"crm": "1"}},
        "updated": "2026-11-02T09:00:00.000Z",
    }
    bad = {
        "subject": "no such field",
        "sequence": "1",
        "start": {"date": "5 Nov"},
        "attendees": [{"email": "bob@example.com", "self": "yes"}],
        "extendedProperties": {"private": {"crm": 1}},
        "updated": "2026-11-02T09:00:00",
    }

    assert CALENDAR.violations(good, "Event") == []
    assert sorted(CALENDAR.violations(bad, "Event")) == [
        "Event.attendees[0].self: 'yes' is no boolean (-)",
        "Event.extendedProperties.private.crm: 1 is no string (-)",
        "Event.sequence: '1' is no integer (int32)",
        "Event.start.date: '5 Nov' is no string (date)",
        "Event.subject: the schema has no such property",
        "Event.updated: '2026-11-02T09:00:00' is no string (date-time)",
    ]


# -- calendars ----------------------------------------------------------------------------------
def test_google_calendar_lists_the_primary_calendar_and_the_ones_added(google: Google) -> None:
    add_calendar(google.sandbox, ANN, TEAM, "Team", time_zone=BERLIN)
    service = google.calendar()

    entries = run(service.calendarList().list())["items"]
    primary = run(service.calendars().get(calendarId="primary"))
    team = run(service.calendars().get(calendarId=TEAM))

    assert [(e["id"], e.get("primary", False)) for e in entries] == [(ANN, True), (TEAM, False)]
    assert primary["id"] == ANN
    assert (team["summary"], team["timeZone"]) == ("Team", BERLIN)
    assert failure(service.calendars().get(calendarId="bob@example.com")) == (404, "notFound")
    assert failure(service.events().list(calendarId="bob@example.com")) == (404, "notFound")


# -- listing and incremental sync -----------------------------------------------------------------
def test_google_calendar_pages_a_listing_and_hands_out_the_sync_token_on_its_last_page_only(
    google: Google,
) -> None:
    service = google.calendar()
    made = {meeting(service, n)["id"] for n in range(5)}

    found = pages(service, maxResults=2)

    assert [len(page["items"]) for page in found] == [2, 2, 1]
    assert [("nextPageToken" in p, "nextSyncToken" in p) for p in found] == [
        (True, False),
        (True, False),
        (False, True),
    ]
    assert {item["id"] for page in found for item in page["items"]} == made


def test_google_calendar_may_answer_short_pages_whatever_max_results_says(
    google: Google,
) -> None:
    service = google.calendar()
    made = {meeting(service, n)["id"] for n in range(5)}
    cap_page_size(google.sandbox, ANN, 2)

    found = pages(service, maxResults=250)

    assert [len(page["items"]) for page in found] == [2, 2, 1]
    assert {item["id"] for page in found for item in page["items"]} == made


def test_google_calendar_page_token_is_bound_to_the_listing_it_continues(google: Google) -> None:
    service = google.calendar()
    for n in range(3):
        meeting(service, n)
    first = run(service.events().list(calendarId="primary", maxResults=1))

    other = service.events().list(
        calendarId="primary", maxResults=1, pageToken=first["nextPageToken"], showDeleted=True
    )

    assert failure(other) == (400, "invalid")
    assert failure(service.events().list(calendarId="primary", pageToken="made-up")) == (
        400,
        "invalid",
    )


def test_google_calendar_incremental_listing_returns_changes_and_deletions_as_cancelled(
    google: Google,
) -> None:
    service = google.calendar()
    kept, changed, removed = (meeting(service, n) for n in range(3))
    token = listing(service)["token"]
    google.clock.advance(minutes=5)

    added = meeting(service, 3)
    run(service.events().patch(calendarId="primary", eventId=changed["id"], body={"summary": "x"}))
    run(service.events().delete(calendarId="primary", eventId=removed["id"]))
    delta = listing(service, syncToken=token)
    quiet = listing(service, syncToken=delta["token"])

    items = by_id(delta["items"])
    assert set(items) == {added["id"], changed["id"], removed["id"]}
    assert kept["id"] not in items
    assert items[changed["id"]]["summary"] == "x"
    assert items[removed["id"]]["status"] == "cancelled"
    assert set(items[removed["id"]]) <= {"kind", "etag", "id", "status"}
    assert quiet["items"] == [] and quiet["token"]
    assert removed["id"] not in by_id(listing(service)["items"])
    assert by_id(listing(service, showDeleted=True)["items"])[removed["id"]]["status"] == (
        "cancelled"
    )


def test_google_calendar_a_change_made_while_paging_comes_again_in_the_next_delta(
    google: Google,
) -> None:
    service = google.calendar()
    first, second = meeting(service, 1), meeting(service, 2)
    request = service.events().list(calendarId="primary", maxResults=1)
    page = run(request)

    changed = page["items"][0]["id"]
    run(service.events().patch(calendarId="primary", eventId=changed, body={"summary": "new"}))
    last = run(service.events().list_next(request, page))
    delta = listing(service, syncToken=last["nextSyncToken"])

    assert {page["items"][0]["id"], last["items"][0]["id"]} == {first["id"], second["id"]}
    assert [(e["id"], e["summary"]) for e in delta["items"]] == [(changed, "new")]


def test_google_calendar_expired_and_unknown_sync_tokens_answer_410_full_sync_required(
    google: Google,
) -> None:
    service = google.calendar()
    meeting(service, 1)
    token = listing(service)["token"]
    assert listing(service, syncToken=token)["items"] == []

    expire_sync_tokens(google.sandbox, ANN)

    assert failure(service.events().list(calendarId="primary", syncToken=token)) == (
        410,
        "fullSyncRequired",
    )
    assert failure(service.events().list(calendarId="primary", syncToken="CPDAlvWDx70=")) == (
        410,
        "fullSyncRequired",
    )
    fresh = listing(service)
    assert len(fresh["items"]) == 1 and fresh["token"] != token


@pytest.mark.parametrize(
    "params",
    [
        {"timeMin": "2026-11-01T00:00:00Z"},
        {"timeMax": "2026-12-01T00:00:00Z"},
        {"updatedMin": "2026-11-01T00:00:00Z"},
        {"q": "Meeting"},
        {"orderBy": "updated"},
        {"iCalUID": "x@google.com"},
        {"privateExtendedProperty": "crm=1"},
        {"sharedExtendedProperty": "crm=1"},
        {"showDeleted": False},
    ],
)
def test_google_calendar_refuses_filters_together_with_a_sync_token(
    google: Google, params: dict[str, Any]
) -> None:
    service = google.calendar()
    token = listing(service)["token"]

    request = service.events().list(calendarId="primary", syncToken=token, **params)

    assert failure(request) == (400, "invalid")


# -- ids, versions and deletion ------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["abcd", "ABCDE12345", "wxyz12345", "abc_de123", "a" * 1025])
def test_google_calendar_refuses_client_ids_that_are_not_base32hex_of_5_to_1024_chars(
    google: Google, bad: str
) -> None:
    service = google.calendar()
    body = timed("Call", "2026-11-05T09:00:00", "2026-11-05T10:00:00", id=bad)

    assert failure(service.events().insert(calendarId="primary", body=body)) == (400, "invalid")


def test_google_calendar_keeps_a_client_id_and_answers_409_for_it_forever(
    google: Google,
) -> None:
    service = google.calendar()
    body = timed("Call", "2026-11-05T09:00:00", "2026-11-05T10:00:00", id="crm0123456789v")

    made = insert(service, body)
    again = failure(service.events().insert(calendarId="primary", body=body))
    run(service.events().delete(calendarId="primary", eventId=made["id"]))
    after_delete = failure(service.events().insert(calendarId="primary", body=body))

    assert made["id"] == "crm0123456789v" and made["iCalUID"] == "crm0123456789v@google.com"
    assert again == after_delete == (409, "duplicate")
    gone = run(service.events().get(calendarId="primary", eventId=made["id"]))
    assert gone["status"] == "cancelled"


def test_google_calendar_writes_bump_the_etag_and_a_stale_if_match_is_412(
    google: Google,
) -> None:
    service = google.calendar()
    first = meeting(service, 1)
    google.clock.advance(minutes=1)
    request = service.events().patch(
        calendarId="primary", eventId=first["id"], body={"summary": "b"}
    )
    request.headers["If-Match"] = first["etag"]
    second = run(request)

    stale_patch = service.events().patch(calendarId="primary", eventId=first["id"], body={})
    stale_update = service.events().update(calendarId="primary", eventId=first["id"], body=first)
    stale_delete = service.events().delete(calendarId="primary", eventId=first["id"])
    for stale in (stale_patch, stale_update, stale_delete):
        stale.headers["If-Match"] = first["etag"]

    assert second["etag"] != first["etag"] and second["etag"].startswith('"')
    assert second["updated"] == "2026-11-02T09:01:00.000Z" > first["updated"]
    assert second["created"] == first["created"]
    assert [failure(r) for r in (stale_patch, stale_update, stale_delete)] == [
        (412, "conditionNotMet")
    ] * 3
    current = service.events().delete(calendarId="primary", eventId=first["id"])
    current.headers["If-Match"] = second["etag"]
    run(current)
    again = service.events().delete(calendarId="primary", eventId=first["id"])
    assert failure(again) == (410, "deleted")


def test_google_calendar_bumps_the_sequence_when_the_time_changes_not_the_title(
    google: Google,
) -> None:
    service = google.calendar()
    made = meeting(service, 1)
    events = service.events()

    renamed = run(events.patch(calendarId="primary", eventId=made["id"], body={"summary": "b"}))
    moved_body = {
        "start": {"dateTime": "2026-11-11T11:00:00", "timeZone": BERLIN},
        "end": {"dateTime": "2026-11-11T12:00:00", "timeZone": BERLIN},
    }
    moved = run(events.patch(calendarId="primary", eventId=made["id"], body=moved_body))

    assert (made["sequence"], renamed["sequence"], moved["sequence"]) == (0, 0, 1)


def test_google_calendar_patch_merges_extended_properties_and_update_replaces_fields(
    google: Google,
) -> None:
    service = google.calendar()
    private = {"crmsyncLink": "L1", "crmsyncStatus": "confirmed"}
    made = meeting(service, 1, description="notes", extendedProperties={"private": private})
    events = service.events()

    patched = run(
        events.patch(
            calendarId="primary",
            eventId=made["id"],
            body={"extendedProperties": {"private": {"crmsyncStatus": "declined"}}},
        )
    )
    whole = timed("Replaced", "2026-11-11T09:00:00", "2026-11-11T10:00:00")
    updated = run(events.update(calendarId="primary", eventId=made["id"], body=whole))

    assert patched["extendedProperties"]["private"] == {
        "crmsyncLink": "L1",
        "crmsyncStatus": "declined",
    }
    assert patched["description"] == "notes"
    assert updated["summary"] == "Replaced"
    assert "description" not in updated and "extendedProperties" not in updated


def test_google_calendar_patch_sets_shared_properties_and_null_removes_one(
    google: Google,
) -> None:
    service = google.calendar()
    made = meeting(
        service,
        1,
        extendedProperties={
            "private": {"crmsyncLink": "L1"},
            "shared": {"Stage": "Client", "Room": "B-204"},
        },
    )
    events = service.events()

    patched = run(
        events.patch(
            calendarId="primary",
            eventId=made["id"],
            body={"extendedProperties": {"shared": {"Stage": "Prospect", "Room": None}}},
        )
    )
    fetched = run(events.get(calendarId="primary", eventId=made["id"]))

    assert patched["extendedProperties"] == {
        "private": {"crmsyncLink": "L1"},
        "shared": {"Stage": "Prospect"},
    }
    assert fetched["extendedProperties"] == patched["extendedProperties"]


def test_google_calendar_refuses_fields_the_event_schema_does_not_have(google: Google) -> None:
    service = google.calendar()
    body = timed("Call", "2026-11-05T09:00:00", "2026-11-05T10:00:00", subject="typo")

    assert failure(service.events().insert(calendarId="primary", body=body)) == (400, "invalid")


# -- filters -------------------------------------------------------------------------------------
def test_google_calendar_filters_a_listing_by_extended_properties(google: Google) -> None:
    service = google.calendar()
    first = meeting(service, 1, extendedProperties={"private": {"crm": "a", "kind": "x"}})
    second = meeting(service, 2, extendedProperties={"private": {"crm": "b", "kind": "x"}})
    shared = meeting(service, 3, extendedProperties={"shared": {"crm": "a"}})
    odd = meeting(service, 4, extendedProperties={"private": {"query": "k=v"}})

    def ids(**params: Any) -> set[str]:
        return {item["id"] for item in listing(service, **params)["items"]}

    assert ids(privateExtendedProperty="kind=x") == {first["id"], second["id"]}
    assert ids(privateExtendedProperty=["kind=x", "crm=a"]) == {first["id"]}
    assert ids(privateExtendedProperty="crm=c") == set()
    assert ids(sharedExtendedProperty="crm=a") == {shared["id"]}
    assert ids(privateExtendedProperty="query=k=v") == {odd["id"]}


def test_google_calendar_filters_by_a_time_window_with_exclusive_bounds(google: Google) -> None:
    service = google.calendar()
    # 09:00-10:00 Berlin on 11, 15 and 19 November: 08:00-09:00 UTC
    early, middle, late = (meeting(service, n) for n in (1, 5, 9))

    def ids(**params: Any) -> list[str]:
        return [item["id"] for item in listing(service, **params)["items"]]

    assert ids(timeMin="2026-11-14T00:00:00Z", timeMax="2026-11-16T00:00:00Z") == [middle["id"]]
    assert ids(timeMin="2026-11-15T08:30:00Z", timeMax="2026-11-15T08:31:00Z") == [middle["id"]]
    assert ids(timeMin="2026-11-15T09:00:00Z") == [late["id"]]  # ends right at timeMin
    assert ids(timeMax="2026-11-15T08:00:00Z") == [early["id"]]  # starts right at timeMax
    naive = service.events().list(calendarId="primary", timeMin="2026-11-14T00:00:00")
    assert failure(naive) == (400, "invalidParameter")


def test_google_calendar_updated_min_lists_later_changes_and_deletions(google: Google) -> None:
    service = google.calendar()
    early, middle, late = (meeting(service, n) for n in (1, 5, 9))
    google.clock.advance(minutes=10)
    since = google.clock.now
    google.clock.advance(minutes=1)

    run(service.events().patch(calendarId="primary", eventId=late["id"], body={"summary": "l"}))
    run(service.events().delete(calendarId="primary", eventId=early["id"]))
    recent = by_id(listing(service, updatedMin=since.isoformat())["items"])

    assert set(recent) == {late["id"], early["id"]}
    assert middle["id"] not in recent
    assert recent[early["id"]]["status"] == "cancelled"


# -- times and time zones ------------------------------------------------------------------------
def test_google_calendar_all_day_events_keep_dates_and_end_exclusively(google: Google) -> None:
    service = google.calendar()
    body = {"summary": "Fair", "start": {"date": "2026-11-05"}, "end": {"date": "2026-11-07"}}

    made = insert(service, body)
    overlapping = listing(service, timeMin="2026-11-06T23:00:00Z")["items"]
    after = listing(service, timeMin="2026-11-07T00:00:00Z")["items"]
    empty = {**body, "end": {"date": "2026-11-05"}}
    mixed = {**body, "end": {"dateTime": "2026-11-06T10:00:00Z"}}

    assert (made["start"], made["end"]) == ({"date": "2026-11-05"}, {"date": "2026-11-07"})
    assert [e["id"] for e in overlapping] == [made["id"]] and after == []
    assert failure(service.events().insert(calendarId="primary", body=empty)) == (
        400,
        "timeRangeEmpty",
    )
    assert failure(service.events().insert(calendarId="primary", body=mixed)) == (400, "invalid")


def test_google_calendar_keeps_time_zones_and_writes_offsets(google: Google) -> None:
    add_calendar(google.sandbox, ANN, ANN, "Ann", time_zone="America/New_York")
    service = google.calendar()

    local = insert(service, timed("Local", "2026-11-05T09:00:00", "2026-11-05T10:00:00"))
    offset = insert(
        service,
        {
            "summary": "Offset",
            "start": {"dateTime": "2026-11-05T09:00:00+01:00"},
            "end": {"dateTime": "2026-11-05T10:00:00+01:00"},
        },
    )
    asked = run(service.events().get(calendarId="primary", eventId=local["id"], timeZone="UTC"))

    assert local["start"] == {"dateTime": "2026-11-05T09:00:00+01:00", "timeZone": BERLIN}
    assert offset["start"] == {"dateTime": "2026-11-05T03:00:00-05:00"}
    assert asked["start"] == {"dateTime": "2026-11-05T08:00:00Z", "timeZone": BERLIN}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {
                "start": {"dateTime": "2026-11-05T09:00:00"},
                "end": {"dateTime": "2026-11-05T10:00:00"},
            },
            "required",
        ),
        (timed("x", "2026-11-05T09:00:00", "2026-11-05T10:00:00", zone="Mars/Olympus"), "invalid"),
        (timed("x", "2026-11-05T10:00:00", "2026-11-05T09:00:00"), "timeRangeEmpty"),
        (
            {
                "start": {"dateTime": "2026-11-05T09:00:00Z"},
                "end": {"dateTime": "2026-11-05T10:00:00Z"},
                "recurrence": ["RRULE:FREQ=DAILY"],
            },
            "required",
        ),
        (
            timed("x", "2026-11-05T09:00:00", "2026-11-05T10:00:00", recurrence=["DTSTART:1"]),
            "invalid",
        ),
    ],
)
def test_google_calendar_refuses_times_google_refuses(
    google: Google, body: dict[str, Any], reason: str
) -> None:
    service = google.calendar()

    assert failure(service.events().insert(calendarId="primary", body=body)) == (400, reason)


# -- recurrence ----------------------------------------------------------------------------------
def test_google_calendar_series_with_a_changed_and_a_cancelled_occurrence(google: Google) -> None:
    service = google.calendar()
    events = service.events()
    weekly = timed(
        "Weekly",
        "2026-10-19T09:00:00",
        "2026-10-19T10:00:00",
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=4"],
    )
    series = insert(service, weekly)
    token = listing(service)["token"]

    occurrences = run(events.instances(calendarId="primary", eventId=series["id"]))["items"]
    second, third = occurrences[1]["id"], occurrences[2]["id"]
    moved = {
        "summary": "Moved",
        "start": {"dateTime": "2026-10-26T11:00:00", "timeZone": BERLIN},
        "end": {"dateTime": "2026-10-26T12:00:00", "timeZone": BERLIN},
    }
    changed = run(events.patch(calendarId="primary", eventId=second, body=moved))
    run(events.delete(calendarId="primary", eventId=third))
    full = by_id(listing(service)["items"])
    delta = by_id(listing(service, syncToken=token)["items"])

    # weekly at 09:00 Berlin: 07:00 UTC in summer time, 08:00 UTC after 25 October
    assert [o["id"].rpartition("_")[2] for o in occurrences] == [
        "20261019T070000Z",
        "20261026T080000Z",
        "20261102T080000Z",
        "20261109T080000Z",
    ]
    assert changed["recurringEventId"] == series["id"]
    assert changed["originalStartTime"] == {
        "dateTime": "2026-10-26T09:00:00+01:00",
        "timeZone": BERLIN,
    }
    assert set(full) == {series["id"], second, third}
    assert set(delta) == {second, third}
    assert full[second]["summary"] == "Moved"
    assert full[third]["status"] == "cancelled"
    assert full[third]["recurringEventId"] == series["id"]
    assert "originalStartTime" in full[third]
    assert failure(
        events.get(calendarId="primary", eventId=series["id"] + "_20261020T070000Z")
    ) == (
        404,
        "notFound",
    )


def test_google_calendar_private_visibility_of_one_occurrence_spreads_to_its_series(
    google: Google,
) -> None:
    service = google.calendar()
    events = service.events()
    plain = meeting(service, 1)
    secret = meeting(service, 2, visibility="private")
    weekly = timed(
        "Weekly", "2026-11-02T09:00:00", "2026-11-02T10:00:00", recurrence=["RRULE:FREQ=WEEKLY"]
    )
    series = insert(service, weekly)
    occurrence = f"{series['id']}_20261109T080000Z"

    run(events.patch(calendarId="primary", eventId=occurrence, body={"visibility": "private"}))
    master = run(events.get(calendarId="primary", eventId=series["id"]))
    looser = run(
        events.patch(calendarId="primary", eventId=occurrence, body={"visibility": "public"})
    )

    assert "visibility" not in plain  # Google leaves the default out
    assert secret["visibility"] == "private"
    assert master["visibility"] == "private"
    assert looser["visibility"] == "private"


# -- attendees and invitations -------------------------------------------------------------------
def test_google_calendar_keeps_declined_attendees_and_guest_answers_are_changes(
    google: Google,
) -> None:
    service = google.calendar()
    guests = [
        {"email": ANN, "responseStatus": "declined"},
        {"email": "bob@example.com"},
    ]
    made = meeting(service, 1, attendees=guests)
    token = listing(service)["token"]

    set_attendee_response(google.sandbox, ANN, "primary", made["id"], "bob@example.com", "declined")
    delta = listing(service, syncToken=token)["items"]

    assert made["attendees"] == [
        {"email": ANN, "responseStatus": "declined", "organizer": True, "self": True},
        {"email": "bob@example.com", "responseStatus": "needsAction"},
    ]
    assert [a["responseStatus"] for a in delta[0]["attendees"]] == ["declined", "declined"]
    assert delta[0]["etag"] != made["etag"]


def test_google_calendar_records_send_updates_and_whom_a_write_would_notify(
    google: Google,
) -> None:
    service = google.calendar()
    events = service.events()
    guests = [{"email": ANN}, {"email": "bob@example.com"}, {"email": "eve@partner.org"}]
    everyone = ["bob@example.com", "eve@partner.org"]

    quiet = meeting(service, 1, attendees=guests)
    meeting(service, 2, attendees=guests, send_updates="none")
    loud = meeting(service, 3, attendees=guests, send_updates="all")
    run(events.patch(calendarId="primary", eventId=quiet["id"], body={}, sendUpdates="none"))
    external = events.patch(
        calendarId="primary", eventId=quiet["id"], body={}, sendUpdates="externalOnly"
    )
    run(external)
    run(events.delete(calendarId="primary", eventId=quiet["id"], sendUpdates="all"))
    run(events.patch(calendarId="primary", eventId=loud["id"], body={}, sendNotifications=True))

    sent = [
        (s["method"], s["sendUpdates"], s["notified"]) for s in sent_updates(google.sandbox, ANN)
    ]
    assert sent == [
        ("insert", None, []),
        ("insert", "none", []),
        ("insert", "all", everyone),
        ("patch", "none", []),
        ("patch", "externalOnly", ["eve@partner.org"]),
        ("delete", "all", everyone),
        ("patch", "all", everyone),  # the deprecated sendNotifications=true
    ]


# -- push channels -------------------------------------------------------------------------------
def watch(service: Any, address: str, channel: str = "ch-1", **extra: Any) -> Any:
    body = {"id": channel, "type": "web_hook", "address": address, "token": "secret", **extra}
    return run(service.events().watch(calendarId="primary", body=body))


def test_google_calendar_watch_sends_a_sync_then_an_exists_message_per_change(
    google: Google, receiver: tuple[Receiver, str]
) -> None:
    hook, address = receiver
    add_calendar(google.sandbox, ANN, TEAM, "Team")
    service = google.calendar()
    month = google.clock.now + timedelta(days=30)

    channel = watch(service, address, expiration=str(int(month.timestamp() * 1000)))
    first = meeting(service, 1)
    run(service.events().patch(calendarId="primary", eventId=first["id"], body={"summary": "b"}))
    insert(service, timed("elsewhere", "2026-11-05T09:00:00", "2026-11-05T10:00:00"), TEAM)
    posts = hook.wait_for(3)

    expires = google.clock.now + timedelta(days=7)
    assert int(channel["expiration"]) == int(expires.timestamp() * 1000)
    assert channel["resourceUri"].startswith(google.url + "calendar/v3/calendars/primary/events")
    states = [
        (p["headers"]["x-goog-resource-state"], p["headers"]["x-goog-message-number"])
        for p in posts
    ]
    assert states == [("sync", "1"), ("exists", "2"), ("exists", "3")]
    headers = posts[1]["headers"]
    assert headers["x-goog-channel-id"] == "ch-1"
    assert headers["x-goog-channel-token"] == "secret"
    assert headers["x-goog-resource-id"] == channel["resourceId"]
    assert headers["x-goog-resource-uri"] == channel["resourceUri"]
    assert parsedate_to_datetime(headers["x-goog-channel-expiration"]) == expires
    assert all(p["body"] == b"" for p in posts)
    assert [n["state"] for n in notifications(google.sandbox)] == ["sync", "exists", "exists"]


def test_google_calendar_stopped_and_expired_channels_send_nothing(
    google: Google, receiver: tuple[Receiver, str]
) -> None:
    hook, address = receiver
    service = google.calendar()
    stopped = watch(service, address, "ch-stop")
    soon = google.clock.now + timedelta(minutes=1)
    watch(service, address, "ch-short", expiration=str(int(soon.timestamp() * 1000)))
    stop = {"id": "ch-stop", "resourceId": stopped["resourceId"]}

    run(service.channels().stop(body=stop))
    google.clock.advance(minutes=2)
    meeting(service, 1)

    sent = notifications(google.sandbox)
    assert [(n["channel_id"], n["state"]) for n in sent] == [
        ("ch-stop", "sync"),
        ("ch-short", "sync"),
    ]
    assert len(hook.wait_for(2)) == 2
    assert failure(service.channels().stop(body=stop)) == (404, "notFound")
    wrong = {"id": "ch-short", "resourceId": "not-its-resource"}
    assert failure(service.channels().stop(body=wrong)) == (404, "notFound")


def test_google_calendar_channel_ids_must_be_unique_while_open(
    google: Google, receiver: tuple[Receiver, str]
) -> None:
    _, address = receiver
    service = google.calendar()
    watch(service, address, "ch-1")

    body = {"id": "ch-1", "type": "web_hook", "address": address}

    assert failure(service.events().watch(calendarId="primary", body=body)) == (
        400,
        "channelIdNotUnique",
    )


# -- authentication and faults ---------------------------------------------------------------------
def test_google_calendar_answers_403_without_a_scope_that_covers_the_method(
    google: Google,
) -> None:
    tasks_only = google.calendar(scopes=TASKS_SCOPES)
    events_only = google.calendar(scopes=frozenset({SCOPE + "calendar.events"}))
    read_only = google.calendar(scopes=frozenset({SCOPE + "calendar.readonly"}))
    body = timed("x", "2026-11-05T09:00:00", "2026-11-05T10:00:00")

    assert failure(tasks_only.events().list(calendarId="primary")) == (
        403,
        "insufficientPermissions",
    )
    assert run(events_only.events().list(calendarId="primary"))["items"] == []
    assert failure(events_only.calendarList().list()) == (403, "insufficientPermissions")
    assert run(read_only.calendarList().list())["items"]
    assert failure(read_only.events().insert(calendarId="primary", body=body))[0] == 403


def test_google_calendar_answers_401_for_unknown_and_expired_tokens(google: Google) -> None:
    bare = build(
        "calendar",
        "v3",
        http=httplib2.Http(),
        client_options={"api_endpoint": google.url + "calendar/v3/"},
        static_discovery=True,
        cache_discovery=False,
    )
    expired = google.sandbox.issue_token(ANN, CALENDAR_SCOPES, seconds=60)
    google.clock.advance(minutes=2)

    unknown = bare.events().list(calendarId="primary")
    unknown.headers["authorization"] = "Bearer ya29.not-a-token"
    late = bare.events().list(calendarId="primary")
    late.headers["authorization"] = f"Bearer {expired}"

    assert failure(unknown) == (401, "authError")
    assert failure(late) == (401, "authError")


def test_google_calendar_injected_429_carries_retry_after_then_the_call_succeeds(
    google: Google,
) -> None:
    service = google.calendar()
    google.sandbox.inject(429, reason="rateLimitExceeded", path="/events$", retry_after=7)

    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary").execute(num_retries=0)

    assert caught.value.resp.status == 429
    assert caught.value.resp["retry-after"] == "7"
    assert json.loads(caught.value.content)["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    assert run(service.events().list(calendarId="primary"))["items"] == []


def test_google_calendar_injected_503_fails_only_the_matching_method(google: Google) -> None:
    service = google.calendar()
    google.sandbox.inject(503, method="POST", path="/events$")
    body = timed("x", "2026-11-05T09:00:00", "2026-11-05T10:00:00")

    listed = run(service.events().list(calendarId="primary"))
    refused = failure(service.events().insert(calendarId="primary", body=body))
    made = insert(service, body)

    assert listed["items"] == []
    assert refused == (503, "backendError")
    assert [e["id"] for e in calendar_events(google.sandbox, ANN)] == [made["id"]]
