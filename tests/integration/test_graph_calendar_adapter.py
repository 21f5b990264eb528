"""The Outlook calendar adapter (crmsync.providers.microsoft.calendar) against the
Microsoft Graph sandbox over https: the ProviderAccount promises hold for activities
(CAL-7, CAL-9, CAL-10, CAL-11, RUN-4, SYN-4, SYN-5, SYN-8, SYN-10)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crmsync.engine.plan import Write
from crmsync.errors import Conflict, CursorExpired
from crmsync.model import normalize
from crmsync.providers.microsoft.calendar import HELD, GraphCalendar
from crmsync.providers.microsoft.client import GraphClient
from crmsync.transforms import CustomMap
from sandbox.microsoft.events import dismiss, snooze, state_of
from sandbox.microsoft.graph import expire_delta_links
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
WINDOW = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
DIRECTORY = {"U-2": "grace@contoso.example"}


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def calendar_of(graph: Graph) -> GraphCalendar:
    client = GraphClient(graph.token, f"{graph.base}/v1.0", graph.session, sleep=lambda s: None)
    return GraphCalendar(client, directory=DIRECTORY, window=WINDOW)


def meeting(**fields: Any) -> dict[str, Any]:
    raw = {
        "type": "meeting",
        "subject": "Kickoff",
        "start": START,
        "end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "location": "Room 4",
        "notes": "agenda\nsecond line",
        **fields,
    }
    canonical = normalize("activity", raw)
    return {name: canonical[name] for name in HELD}


def create(cal: GraphCalendar, key: str = "key-1", notify: bool = False, **fields: Any) -> str:
    write = Write(
        "provider",
        "create",
        "activity",
        fields=meeting(**fields),
        key=key,
        ref="L-1",
        notify=notify,
    )
    return cal.create(write).id


def stored(graph: Graph) -> list[Any]:
    """The user's live events in the sandbox (singles and series masters)."""
    state = state_of(graph.sandbox.users[EMAIL])
    return [e for e in state.events.values() if not e.deleted]


def test_CAL11_time_zones_and_all_day_dates_round_trip(graph: Graph) -> None:
    cal = calendar_of(graph)
    timed = create(cal, "k-timed", timezone="America/New_York")
    all_day = create(
        cal,
        "k-day",
        start=date(2026, 3, 12),
        end=date(2026, 3, 13),
        all_day=True,
        timezone="Pacific/Auckland",
    )

    page = cal.changes(None)

    by_id = {r.id: r for r in page.records}
    assert by_id[timed].fields == meeting(timezone="America/New_York")
    assert by_id[timed].ref == "L-1" and by_id[timed].error is None
    day = by_id[all_day].fields
    assert day is not None
    assert (day["start"], day["end"], day["all_day"], day["timezone"]) == (
        date(2026, 3, 12),
        date(2026, 3, 13),
        True,
        "Pacific/Auckland",
    )
    raw = next(e for e in stored(graph) if e.id == all_day).fields
    assert raw["isAllDay"] is True
    assert raw["start"] == {"dateTime": "2026-03-12T00:00:00", "timeZone": "Pacific/Auckland"}


def test_CAL9_a_weekly_series_with_a_cancelled_and_a_moved_occurrence_round_trips(
    graph: Graph,
) -> None:
    cal = calendar_of(graph)
    recurrence = "\n".join(
        [
            "RRULE:FREQ=WEEKLY;BYDAY=TU;COUNT=5",
            "EXDATE:20260317T090000Z",
            "EXDATE:20260324T090000Z",
            "RDATE:20260325T130000Z",
        ]
    )

    series = create(cal, recurrence=recurrence)

    record = cal.get(series)
    assert record.fields is not None and record.error is None
    assert record.fields["recurrence"] == recurrence
    master = next(e for e in stored(graph) if e.id == series)
    assert master.fields["recurrence"]["pattern"] == {
        "type": "weekly",
        "interval": 1,
        "daysOfWeek": ["tuesday"],
        "firstDayOfWeek": "monday",
    }
    assert master.fields["recurrence"]["range"]["type"] == "numbered"
    assert len(master.cancelled) == 1 and len(master.exceptions) == 1


def test_CAL9_occurrences_changed_in_outlook_reach_the_series_record(graph: Graph) -> None:
    cal = calendar_of(graph)
    series = create(cal, recurrence="RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20260430")
    first = cal.changes(None)
    occurrences = graph.ok(
        graph.get(
            f"me/events/{series}/instances",
            params={"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-05-01T00:00:00Z"},
        )
    )["value"]
    graph.ok(graph.delete(f"me/events/{occurrences[1]['id']}"), 204)
    moved = {"dateTime": "2026-03-24T15:00:00", "timeZone": "UTC"}
    graph.ok(
        graph.patch(
            f"me/events/{occurrences[2]['id']}",
            {"start": moved, "end": {**moved, "dateTime": "2026-03-24T16:00:00"}},
        )
    )

    later = cal.changes(first.cursor)

    # the cancelled occurrence is also listed as removed: a gone id no link holds
    assert [r.id for r in later.records if not r.gone] == [series]
    rule = later.records[0].fields["recurrence"]  # type: ignore[index]
    assert rule.splitlines() == [
        "RRULE:FREQ=WEEKLY;INTERVAL=2;BYDAY=TU,TH;UNTIL=20260430T215959Z",
        "EXDATE:20260312T090000Z",
        "EXDATE:20260324T090000Z",
        "RDATE:20260324T150000Z",
    ]
    assert later.records[0].version != first.records[0].version


def test_CAL10_private_events_read_as_private(graph: Graph) -> None:
    cal = calendar_of(graph)
    private = create(cal, "k-private", private=True, type="personal")
    made = graph.ok(
        graph.post(
            "me/events",
            {
                "subject": "Doctor",
                "sensitivity": "confidential",
                "start": {"dateTime": "2026-03-11T08:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-03-11T09:00:00", "timeZone": "UTC"},
            },
        ),
        201,
    )

    assert cal.get(private).fields["private"] is True  # type: ignore[index]
    assert next(e for e in stored(graph) if e.id == private).fields["sensitivity"] == "private"
    assert cal.get(made["id"]).fields["private"] is True  # type: ignore[index]


def test_CAL7_an_invitation_the_user_declined_reads_as_declined(graph: Graph) -> None:
    cal = calendar_of(graph)
    invited = create(cal, "k-invite")
    event = next(e for e in stored(graph) if e.id == invited)
    event.fields["responseStatus"] = {"response": "declined", "time": "2026-03-02T09:00:00Z"}
    event.fields["isOrganizer"] = False

    assert cal.get(invited).fields["status"] == "declined"  # type: ignore[index]
    declined_here = create(cal, "k-declined", status="declined")
    assert cal.get(declined_here).fields["status"] == "declined"  # type: ignore[index]
    assert next(e for e in stored(graph) if e.id == declined_here).fields["showAs"] == "free"


def test_SYN4_a_retried_create_makes_one_event(graph: Graph) -> None:
    cal = calendar_of(graph)

    first = create(cal, "k-same")
    again = create(cal, "k-same")

    assert first == again
    assert len(stored(graph)) == 1
    assert stored(graph)[0].transaction_id is not None


def test_SYN8_attendees_are_written_only_when_the_activity_asks_to_invite(graph: Graph) -> None:
    cal = calendar_of(graph)

    quiet = create(cal, "k-quiet", members=["U-2"])
    loud = create(cal, "k-loud", notify=True, members=["U-2"])

    events = {e.id: e for e in stored(graph)}
    assert "attendees" not in events[quiet].fields
    assert [a["emailAddress"]["address"] for a in events[loud].fields["attendees"]] == [
        "grace@contoso.example"
    ]
    assert cal.get(quiet).fields["members"] == ("U-2",)  # type: ignore[index]
    assert cal.get(loud).fields["members"] == ("U-2",)  # type: ignore[index]


def test_RUN4_an_expired_delta_link_is_cursor_expired_and_a_full_round_follows(
    graph: Graph,
) -> None:
    cal = calendar_of(graph)
    made = create(cal)
    cursor = cal.changes(None).cursor
    expire_delta_links(graph.sandbox, EMAIL)

    with pytest.raises(CursorExpired):
        cal.changes(cursor)

    assert [r.id for r in cal.changes(None).records] == [made]


def test_RUN4_a_deleted_event_reads_as_gone(graph: Graph) -> None:
    cal = calendar_of(graph)
    made = create(cal)
    first = cal.changes(None)
    cal.delete(Write("provider", "delete", "activity", target=made))

    later = cal.changes(first.cursor)

    assert [(r.id, r.gone) for r in later.records] == [(made, True)]


def test_RUN4_an_event_made_after_the_round_and_deleted_before_the_next_reads_as_gone(
    graph: Graph,
) -> None:
    """Graph's delta is state-based: an event made after a round began and deleted
    before the next was in no round's state. The cursor kept after the cycle's writes
    names it, so the next round reads it and reports it gone; one the round reports at
    the version its create left is the echo of that create: not read, not reported."""
    cal = calendar_of(graph)
    first = cal.changes(None)  # the cycle reads ...
    gone = create(cal, key="k-gone")  # ... then writes
    echoed = create(cal, key="k-kept", subject="Kept")
    kept = cal.cursor_after_writes(first.cursor)
    graph.ok(graph.delete(f"me/events/{gone}"), 204)
    bare = calendar_of(graph).changes(first.cursor)  # the delta link alone
    requests = dict(graph.sandbox.requests)

    later = calendar_of(graph).changes(kept)

    assert gone not in {r.id for r in bare.records}  # what the round alone reports
    assert {(r.id, r.gone) for r in later.records} == {(gone, True)}
    assert echoed in {r.id for r in bare.records}  # the round reported it
    gets = graph.sandbox.requests.get("GET", 0) - requests.get("GET", 0)
    assert gets == 1 + 1  # the round's page, the gone one's read
    assert calendar_of(graph).cursor_after_writes(later.cursor) == later.cursor


def test_RUN4_an_event_changed_after_crmsyncs_write_is_read_and_reported(graph: Graph) -> None:
    """The echo of crmsync's own write is known by the version the write left; once the
    user changes the event after it, the round reports another version, and the event
    is read again and reported with the user's change."""
    cal = calendar_of(graph)
    first = cal.changes(None)
    made = create(cal, key="k-1")
    updated = cal.update(
        Write(
            "provider",
            "update",
            "activity",
            target=made,
            fields={"subject": "Ours"},
            version=cal.get(made).version,
        )
    )
    kept = cal.cursor_after_writes(first.cursor)
    graph.ok(graph.patch(f"me/events/{made}", {"location": {"displayName": "Room 9"}}), 200)

    later = calendar_of(graph).changes(kept)

    [record] = later.records
    assert (record.id, record.fields["location"]) == (made, "Room 9")
    assert record.version != updated.version


def test_SYN4_an_update_from_a_stale_version_is_a_conflict(graph: Graph) -> None:
    cal = calendar_of(graph)
    made = create(cal)
    old = cal.get(made).version
    updated = cal.update(
        Write("provider", "update", "activity", target=made, fields={"subject": "New"}, version=old)
    )

    with pytest.raises(Conflict):
        cal.update(
            Write(
                "provider", "update", "activity", target=made, fields={"subject": "X"}, version=old
            )
        )

    now = cal.get(made)
    assert now.version == updated.version
    assert now.fields is not None and now.fields["subject"] == "New"
    assert now.fields["location"] == "Room 4"  # only the given field was patched


def test_SYN10_snoozing_or_dismissing_changes_only_the_reminder_and_version(
    graph: Graph,
) -> None:
    cal = calendar_of(graph)
    made = create(cal)
    before = cal.get(made)

    snooze(graph.sandbox, EMAIL, made, minutes=10)
    snoozed = cal.get(made)
    dismiss(graph.sandbox, EMAIL, made)
    dismissed = cal.get(made)

    assert snoozed.fields == dismissed.fields == before.fields
    assert len({before.reminder, snoozed.reminder, dismissed.reminder}) == 3
    assert len({before.version, snoozed.version, dismissed.version}) == 3


def test_SYN5_an_unreadable_event_fails_alone(graph: Graph) -> None:
    cal = calendar_of(graph)
    good = create(cal)
    bad = graph.ok(
        graph.post(
            "me/events",
            {
                "subject": "Custom zone",
                "start": {"dateTime": "2026-03-11T08:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-03-11T09:00:00", "timeZone": "UTC"},
                "originalStartTimeZone": "tzone://Microsoft/Custom",
            },
        ),
        201,
    )

    records = {r.id: r for r in cal.changes(None).records}

    assert records[good].error is None and records[good].fields
    assert records[bad["id"]].error and "tzone://Microsoft/Custom" in records[bad["id"]].error


@pytest.mark.parametrize(
    ("rule", "graph_type", "range_type"),
    [
        ("RRULE:FREQ=DAILY;INTERVAL=3;COUNT=4", "daily", "numbered"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=10", "absoluteMonthly", "noEnd"),
        ("RRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=3", "relativeMonthly", "numbered"),
        ("RRULE:FREQ=YEARLY;BYDAY=-1FR;BYMONTH=3", "relativeYearly", "noEnd"),
        ("RRULE:FREQ=YEARLY;BYMONTHDAY=10;BYMONTH=3", "absoluteYearly", "noEnd"),
    ],
)
def test_CAL9_rules_map_to_graph_patterns_and_back(
    graph: Graph, rule: str, graph_type: str, range_type: str
) -> None:
    cal = calendar_of(graph)

    series = create(cal, recurrence=rule)

    master = next(e for e in stored(graph) if e.id == series).fields["recurrence"]
    assert (master["pattern"]["type"], master["range"]["type"]) == (graph_type, range_type)
    assert cal.get(series).fields["recurrence"] == rule  # type: ignore[index]


# -- custom fields (SYN-1) and attachments (CAL-11) ---------------------------------------------
def test_SYN1_custom_values_round_trip_as_extended_properties_of_the_event(graph: Graph) -> None:
    client = GraphClient(graph.token, f"{graph.base}/v1.0", graph.session, sleep=lambda s: None)
    stages = {"enum": {"lead": "Prospect", "customer": "Client"}}
    custom = CustomMap.of(
        {"stage": {"provider": "Stage", "transform": stages}, "room": {"provider": "crm.room"}}
    )
    cal = GraphCalendar(client, directory=DIRECTORY, window=WINDOW, custom=custom)
    fields = {**meeting(), "custom.stage": "customer", "custom.room": "B-204"}
    made = cal.create(Write("provider", "create", "activity", fields=fields, key="k-1"))

    first = cal.get(made.id).fields or {}
    assert (first["custom.stage"], first["custom.room"]) == ("customer", "B-204")
    [event] = stored(graph)
    assert "Client" in event.extended.values()

    change = {"custom.stage": "lead", "custom.room": None}
    cal.update(Write("provider", "update", "activity", made.id, change, version=made.version))

    [changed] = cal.changes(None).records
    assert changed.fields is not None
    assert (changed.fields["custom.stage"], changed.fields["custom.room"]) == ("lead", None)
    assert changed.fields["subject"] == "Kickoff"


def test_CAL11_an_event_with_attachments_reads_and_updates_without_touching_them(
    graph: Graph,
) -> None:
    cal = calendar_of(graph)
    event_id = create(cal)
    file = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "agenda.pdf",
        "contentBytes": "JVBERi0=",
    }
    graph.ok(graph.post(f"me/events/{event_id}/attachments", file), 201)
    current = cal.get(event_id)

    cal.update(
        Write(
            "provider",
            "update",
            "activity",
            event_id,
            {"subject": "Moved"},
            version=current.version,
        )
    )

    [event] = stored(graph)
    assert [a["name"] for a in event.attachments] == ["agenda.pdf"]
    assert "attachments" not in (cal.get(event_id).fields or {})


def test_CAL4_an_event_moved_out_of_the_window_is_a_change_never_a_delete(graph: Graph) -> None:
    """Graph's calendarView delta says `@removed` of an event that left the window as of
    one deleted: crmsync reads it, and only one Graph no longer has is gone."""
    cal = calendar_of(graph)
    moved, deleted = create(cal, key="k-moved"), create(cal, key="k-deleted", subject="Gone")
    first = cal.changes(None)
    later = WINDOW[1] + timedelta(days=40)
    graph.ok(
        graph.patch(
            f"me/events/{moved}",
            {
                "start": {"dateTime": later.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (later + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
            },
        )
    )
    graph.ok(graph.delete(f"me/events/{deleted}"), 204)
    raw = graph.ok(graph.get(first.cursor.split(" ", 2)[2]))
    assert {i["id"] for i in raw["value"] if "@removed" in i} == {moved, deleted}

    page = cal.changes(first.cursor)

    by_id = {r.id: r for r in page.records}
    assert by_id[deleted].gone
    assert not by_id[moved].gone and by_id[moved].fields is not None
    assert by_id[moved].fields["start"] == later


def test_RUN4_the_events_a_round_reports_are_read_twenty_to_a_batch(graph: Graph) -> None:
    """The delta leaves out crmsync's extended properties, so each changed event is read
    again: in Graph's batches, not one request each."""
    cal = calendar_of(graph)
    made = {
        create(
            cal,
            key=f"k-{n}",
            subject=f"M{n}",
            start=START + timedelta(hours=n),
            end=START + timedelta(hours=n, minutes=30),
        )
        for n in range(25)
    }
    before = dict(graph.sandbox.requests)

    page = cal.changes(None)

    assert {r.id for r in page.records} == made
    assert all(r.ref == "L-1" for r in page.records)  # the extended property was read
    posts = graph.sandbox.requests.get("POST", 0) - before.get("POST", 0)
    assert posts == 2  # two batches (20 + 5) of the reads
