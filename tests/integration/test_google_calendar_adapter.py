"""The Google Calendar adapter (crmsync.providers.google.calendar) against the Google
sandbox over a real socket, through the real google-api-python-client: the
ProviderAccount promises hold for activities (RUN-4, SYN-4, SYN-8, SYN-9, CAL-7,
CAL-10, CAL-11)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from werkzeug.serving import make_server

from crmsync.engine.plan import Write
from crmsync.errors import Conflict, CursorExpired, GrantRevoked, PermanentError, RateLimited
from crmsync.model import normalize
from crmsync.providers.google.calendar import HELD, GoogleCalendar
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.push import (
    channel_record,
    new_token,
    on_notification,
    open_channel,
    renew_channels,
)
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryStore
from crmsync.transforms import CustomMap
from sandbox.google import calendar as sandbox_calendar
from sandbox.google.core import CALENDAR_SCOPES, GoogleSandbox, Router

pytestmark = pytest.mark.integration

EMAIL = "dana@example.com"
START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def sandbox() -> Iterator[tuple[GoogleSandbox, str]]:
    google = GoogleSandbox()
    server = make_server(
        "127.0.0.1", 0, Router(google, sandbox_calendar.routes(google)), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    base = f"http://127.0.0.1:{server.port}/"
    google.base_url = base
    yield google, base
    server.shutdown()
    server.server_close()


def calendar_of(google: GoogleSandbox, base: str, **kw: Any) -> GoogleCalendar:
    token = google.issue_token(EMAIL, CALENDAR_SCOPES)
    client = GoogleClient(
        Credentials(token), {"calendar": base + "calendar/v3/"}, sleep=lambda s: None, **kw
    )
    return GoogleCalendar(client)


def meeting(**fields: Any) -> dict[str, Any]:
    raw = {
        "type": "meeting",
        "subject": "Kickoff",
        "start": START,
        "end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "location": "Room 4",
        "notes": "agenda",
        **fields,
    }
    canonical = normalize("activity", raw)
    return {name: canonical[name] for name in HELD}


def create(cal: GoogleCalendar, key: str = "key-1", **fields: Any) -> str:
    write = Write("provider", "create", "activity", fields=meeting(**fields), key=key, ref="L-1")
    return cal.create(write).id


def test_RUN4_events_round_trip_and_later_changes_come_through_the_sync_token(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    first = cal.changes(None)
    assert first.records == []

    event_id = create(cal)
    page = cal.changes(first.cursor)

    (record,) = page.records
    assert record.id == event_id
    assert record.fields == meeting()
    assert record.ref == "L-1"
    assert cal.changes(page.cursor).records == []


def test_SYN4_a_retried_create_returns_the_event_made_the_first_time(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)

    first = create(cal, key="same-key")
    again = create(cal, key="same-key")

    assert again == first
    assert [r.id for r in cal.changes(None).records] == [first]


def test_SYN4_update_from_a_stale_version_is_a_conflict(sandbox: tuple[GoogleSandbox, str]) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal)
    before = cal.get(event_id)
    cal.update(
        Write("provider", "update", "activity", event_id, {"location": "Hall"}, before.version)
    )

    with pytest.raises(Conflict):
        cal.update(
            Write("provider", "update", "activity", event_id, {"location": "Attic"}, before.version)
        )

    assert cal.get(event_id).fields["location"] == "Hall"  # type: ignore[index]


def test_CAL11_time_zones_and_all_day_dates_survive_a_round_trip(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    timed = create(cal, key="timed", timezone="America/New_York")
    all_day = create(cal, key="all-day", start=date(2026, 11, 5), end=date(2026, 11, 6))

    records = {r.id: r for r in cal.changes(None).records}

    assert records[timed].fields["timezone"] == "America/New_York"  # type: ignore[index]
    assert records[timed].fields["start"] == START  # type: ignore[index]
    held = records[all_day].fields
    assert held is not None
    assert (held["all_day"], held["start"], held["end"]) == (
        True,
        date(2026, 11, 5),
        date(2026, 11, 6),
    )


def test_CAL11_moving_the_start_keeps_the_time_zone(sandbox: tuple[GoogleSandbox, str]) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal)
    moved = START + timedelta(days=1)

    cal.update(
        Write(
            "provider",
            "update",
            "activity",
            event_id,
            {"start": moved, "end": moved + timedelta(hours=2)},
        )
    )

    held = cal.get(event_id).fields
    assert held is not None
    assert (held["start"], held["end"], held["timezone"]) == (
        moved,
        moved + timedelta(hours=2),
        "Europe/Berlin",
    )


def test_CAL10_private_and_recurring_events_keep_visibility_and_rule(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal, private=True, recurrence="RRULE:FREQ=WEEKLY;BYDAY=TU")

    held = cal.get(event_id).fields

    assert held is not None
    assert held["private"] is True
    assert held["recurrence"] == "RRULE:FREQ=WEEKLY;BYDAY=TU"


def test_CAL7_declined_status_round_trips(sandbox: tuple[GoogleSandbox, str]) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal, status="declined")

    assert cal.get(event_id).fields["status"] == "declined"  # type: ignore[index]
    cal.update(Write("provider", "update", "activity", event_id, {"status": "confirmed"}))
    assert cal.get(event_id).fields["status"] == "confirmed"  # type: ignore[index]


def test_SYN8_writes_send_no_invitations_unless_asked(sandbox: tuple[GoogleSandbox, str]) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal)
    cal.update(Write("provider", "update", "activity", event_id, {"subject": "Kickoff v2"}))
    cal.update(
        Write("provider", "update", "activity", event_id, {"subject": "Kickoff v3"}, notify=True)
    )

    sent = [u["sendUpdates"] for u in sandbox_calendar.sent_updates(google, EMAIL)]

    assert sent == ["none", "none", "all"]


def test_RUN4_deletes_come_through_and_an_expired_token_is_cursor_expired(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    event_id = create(cal)
    cursor = cal.changes(None).cursor
    cal.delete(Write("provider", "delete", "activity", event_id))

    (gone,) = cal.changes(cursor).records
    assert (gone.id, gone.fields) == (event_id, None)
    sandbox_calendar.expire_sync_tokens(google, EMAIL)
    with pytest.raises(CursorExpired):
        cal.changes(cursor)


def test_SYN5_throttling_is_retried_honouring_retry_after(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    waits: list[float] = []
    token = google.issue_token(EMAIL, CALENDAR_SCOPES)
    client = GoogleClient(
        Credentials(token), {"calendar": base + "calendar/v3/"}, sleep=waits.append
    )
    cal = GoogleCalendar(client)
    google.inject(429, reason="rateLimitExceeded", retry_after=2)
    google.inject(403, reason="rateLimitExceeded")

    assert cal.changes(None).records == []
    assert waits == [2.0, 1.0]
    google.inject(429, reason="rateLimitExceeded", retry_after=300)
    with pytest.raises(RateLimited):
        cal.changes(None)


def test_AUTH3_a_token_that_no_longer_works_is_a_revoked_grant(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    _, base = sandbox
    client = GoogleClient(Credentials("ya29.unknown"), {"calendar": base + "calendar/v3/"})

    with pytest.raises(GrantRevoked):
        GoogleCalendar(client).changes(None)


def test_RUN5_a_watched_calendar_pushes_changes_that_enqueue_one_cycle(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    store, queue = MemoryStore(), InlineQueue()
    received = threading.Event()

    def receiver(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = {
            key[5:].replace("_", "-"): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        answer = on_notification(headers, store, queue, datetime.now(UTC))
        if answer.status == 202:
            received.set()
        start_response(f"{answer.status} {answer.reason}", [("Content-Length", "0")])
        return [b""]

    hook = make_server("127.0.0.1", 0, receiver, threaded=True)
    threading.Thread(target=hook.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    token, kept = new_token()
    try:
        watched = cal.watch(
            f"http://127.0.0.1:{hook.port}/google", "ch-1", token, timedelta(days=1)
        )
        store.save_channel(
            channel_record("ch-1", "t1", "c1", watched.resource_id, kept, watched.expires)
        )
        create(cal)
        assert received.wait(5), "no change notification arrived"
        cal.stop("ch-1", watched.resource_id)
        create(cal, key="after-stop")
    finally:
        hook.shutdown()
        hook.server_close()

    (queued,) = queue.waiting.values()
    assert (queued.connection, queued.trigger) == ("c1", "push")
    states = [n["state"] for n in sandbox_calendar.notifications(google)]
    assert states == ["sync", "exists"]


def test_RUN5_channels_are_renewed_before_they_expire_and_the_old_one_stopped(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    store = MemoryStore()
    first = open_channel(cal, store, "t1", "c1", "http://127.0.0.1:9/google")

    early = renew_channels(
        cal, store, store.channels_of("c1"), "http://127.0.0.1:9/google", datetime.now(UTC)
    )
    assert early == [] and [c.id for c in store.channels_of("c1")] == [first.id]

    later = first.expires - timedelta(hours=2)
    problems = renew_channels(
        cal, store, store.channels_of("c1"), "http://127.0.0.1:9/google", later
    )

    (renewed,) = store.channels_of("c1")
    assert problems == []
    assert renewed.id != first.id and renewed.token_digest != first.token_digest
    assert store.channel(first.id) is None


def test_RUN5_a_failed_renewal_keeps_the_old_channel_and_says_so(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    store = MemoryStore()
    first = open_channel(cal, store, "t1", "c1", "http://127.0.0.1:9/google")
    google.inject(403, reason="forbidden", method="POST", path="watch")

    problems = renew_channels(
        cal,
        store,
        store.channels_of("c1"),
        "http://127.0.0.1:9/google",
        first.expires - timedelta(hours=1),
    )

    assert problems and "polling on schedule" in problems[0]
    assert [c.id for c in store.channels_of("c1")] == [first.id]


def test_CAL6_members_become_attendees_and_guests_invited_in_google_stay(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    token = google.issue_token(EMAIL, CALENDAR_SCOPES)
    client = GoogleClient(Credentials(token), {"calendar": base + "calendar/v3/"})
    directory = {"u2": "max@example.com", "u3": "ida@example.com"}
    cal = GoogleCalendar(client, directory=directory)
    event_id = create(cal, members=["u2"])
    events = cal.events
    guest = {"email": "client@customer.example"}
    current = cal.client.execute(events.get(calendarId="primary", eventId=event_id), "get")
    cal.client.execute(
        events.patch(
            calendarId="primary",
            eventId=event_id,
            body={"attendees": [*current["attendees"], guest]},
        ),
        "the user invites a guest in Google",
    )

    cal.update(Write("provider", "update", "activity", event_id, {"members": ["u2", "u3"]}))

    event = cal.client.execute(events.get(calendarId="primary", eventId=event_id), "get")
    emails = sorted(a["email"] for a in event["attendees"])
    assert emails == ["client@customer.example", "ida@example.com", "max@example.com"]
    assert cal.get(event_id).fields["members"] == ("u2", "u3")  # type: ignore[index]


def test_CAL6_an_event_made_in_google_reads_crm_users_among_its_attendees_as_members(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    token = google.issue_token(EMAIL, CALENDAR_SCOPES)
    client = GoogleClient(Credentials(token), {"calendar": base + "calendar/v3/"})
    cal = GoogleCalendar(client, directory={"u2": "Max@Example.com"})
    body = {
        "summary": "Lunch",
        "start": {"dateTime": START.isoformat(), "timeZone": "UTC"},
        "end": {"dateTime": (START + timedelta(hours=1)).isoformat(), "timeZone": "UTC"},
        "attendees": [{"email": "max@example.com"}, {"email": "someone@else.example"}],
    }
    made = client.execute(cal.events.insert(calendarId="primary", body=body), "insert")

    assert cal.get(made["id"]).fields["members"] == ("u2",)  # type: ignore[index]


def test_CAL9_an_occurrence_cancelled_in_google_reaches_the_series_as_an_exdate(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    series = create(cal, recurrence="RRULE:FREQ=WEEKLY;BYDAY=TU", timezone="UTC")
    cursor = cal.changes(None).cursor
    occurrence = f"{series}_20261110T090000Z"  # the second Tuesday, as Google names it
    cal.client.execute(
        cal.events.delete(calendarId="primary", eventId=occurrence), "the user cancels one"
    )

    (changed,) = cal.changes(cursor).records

    assert changed.id == series
    assert changed.fields is not None
    assert changed.fields["recurrence"] == "RRULE:FREQ=WEEKLY;BYDAY=TU\nEXDATE:20261110T090000Z"
    assert cal.get(series).fields == changed.fields  # read alone, the same


def occurrences(cal: GoogleCalendar, series: str) -> list[str]:
    """Start instants of the series' live occurrences, as Google lists them."""
    request = cal.events.instances(calendarId="primary", eventId=series, maxResults=6)
    items = cal.client.execute(request, "instances")["items"]
    return [str(i["start"]["dateTime"]) for i in items if i["status"] != "cancelled"]


def test_CAL9_an_occurrence_moved_in_google_reaches_the_series_as_exdate_and_rdate(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    series = create(cal, recurrence="RRULE:FREQ=WEEKLY;BYDAY=TU", timezone="UTC")
    cursor = cal.changes(None).cursor
    moved = {  # the second Tuesday moves to Wednesday 14:00
        "start": {"dateTime": "2026-11-11T14:00:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-11T15:00:00Z", "timeZone": "UTC"},
    }
    cal.client.execute(
        cal.events.patch(calendarId="primary", eventId=f"{series}_20261110T090000Z", body=moved),
        "the user moves one",
    )

    (changed,) = cal.changes(cursor).records

    assert changed.id == series and changed.fields is not None
    assert changed.fields["recurrence"] == (
        "RRULE:FREQ=WEEKLY;BYDAY=TU\nEXDATE:20261110T090000Z\nRDATE:20261111T140000Z"
    )


def test_CAL9_a_crm_change_of_a_series_keeps_the_occurrence_moved_in_google_once(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    series = create(cal, recurrence="RRULE:FREQ=WEEKLY;BYDAY=TU", timezone="UTC")
    moved = {
        "start": {"dateTime": "2026-11-11T14:00:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2026-11-11T15:00:00Z", "timeZone": "UTC"},
    }
    cal.client.execute(
        cal.events.patch(calendarId="primary", eventId=f"{series}_20261110T090000Z", body=moved),
        "the user moves one",
    )
    read = cal.get(series)
    assert read.fields is not None
    fields = {**read.fields, "subject": "Weekly (renamed in the CRM)"}

    cal.update(Write("provider", "update", "activity", series, fields=fields, version=read.version))

    after = cal.get(series)
    assert after.fields is not None and after.fields["subject"] == "Weekly (renamed in the CRM)"
    assert after.fields["recurrence"] == read.fields["recurrence"]
    starts = occurrences(cal, series)
    assert starts.count("2026-11-11T14:00:00Z") == 1  # moved once, not added again
    assert "2026-11-10T09:00:00Z" not in starts


def test_CAL9_a_move_made_in_the_crm_reaches_google(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = calendar_of(google, base)
    series = create(cal, recurrence="RRULE:FREQ=WEEKLY;BYDAY=TU", timezone="UTC")
    read = cal.get(series)
    assert read.fields is not None
    rule = "RRULE:FREQ=WEEKLY;BYDAY=TU\nEXDATE:20261117T090000Z\nRDATE:20261118T100000Z"

    cal.update(
        Write(
            "provider",
            "update",
            "activity",
            series,
            fields={**read.fields, "recurrence": rule},
            version=read.version,
        )
    )

    starts = occurrences(cal, series)
    assert "2026-11-17T09:00:00Z" not in starts and "2026-11-18T10:00:00Z" in starts
    assert cal.get(series).fields["recurrence"] == rule  # type: ignore[index]


# -- custom fields (SYN-1) ---------------------------------------------------------------

STAGES = CustomMap.of(
    {
        "stage": {
            "provider": "Stage",
            "transform": {"enum": {"lead": "Prospect", "client": "Client"}},
        },
        "room": {"provider": "crm.room"},
    }
)


def stored_event(google: GoogleSandbox, event_id: str) -> dict[str, Any]:
    """The event as Google holds it."""
    [event] = [e for e in sandbox_calendar.calendar_events(google, EMAIL) if e["id"] == event_id]
    return event


def test_SYN1_mapped_custom_fields_live_in_shared_extended_properties(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = GoogleCalendar(calendar_of(google, base).client, custom=STAGES)
    fields = {**meeting(), "custom.stage": "client", "custom.room": None}
    write = Write("provider", "create", "activity", fields=fields, key="k", ref="L")
    event_id = cal.create(write).id
    stored = stored_event(google, event_id)
    assert stored["extendedProperties"]["shared"] == {"Stage": "Client"}
    assert stored["extendedProperties"]["private"]["crmsyncLink"] == "L"

    record = cal.get(event_id)
    assert record.fields is not None
    assert (record.fields["custom.stage"], record.fields["custom.room"]) == ("client", None)

    change = {"custom.stage": "lead", "custom.room": "B-204"}
    cal.update(Write("provider", "update", "activity", event_id, change, record.version))
    cleared = cal.get(event_id)
    cal.update(
        Write("provider", "update", "activity", event_id, {"custom.room": None}, cleared.version)
    )

    stored = stored_event(google, event_id)
    assert stored["extendedProperties"]["shared"] == {"Stage": "Prospect"}
    assert stored["extendedProperties"]["private"]["crmsyncLink"] == "L"
    assert stored["summary"] == "Kickoff"


def test_SYN1_an_event_whose_custom_value_the_transform_cannot_read_fails_alone(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = GoogleCalendar(calendar_of(google, base).client, custom=STAGES)
    odd = create(cal, key="k-odd")
    fine = create(cal, key="k-fine")
    plain = calendar_of(google, base)  # the user, in Google's own apps
    events = plain.client.service("calendar", "v3").events()
    body = {"extendedProperties": {"shared": {"Stage": "Partner"}}}
    plain.client.execute(events.patch(calendarId="primary", eventId=odd, body=body), "patch")

    records = {r.id: r for r in cal.changes(None).records}

    assert records[odd].error is not None and "custom.stage" in records[odd].error
    assert "'Partner'" in records[odd].error
    assert records[fine].error is None


def test_SYN1_a_custom_value_that_cannot_be_written_fails_that_write(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    cal = GoogleCalendar(calendar_of(google, base).client, custom=STAGES)
    fields = {**meeting(), "custom.stage": "partner"}

    with pytest.raises(PermanentError, match=r"custom\.stage"):
        cal.create(Write("provider", "create", "activity", fields=fields, key="k"))

    assert cal.changes(None).records == []
