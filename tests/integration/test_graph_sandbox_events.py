"""Outlook calendars and events in the Graph sandbox over https: CRUD with Graph's event
shape, versions and 412, transactionId (SYN-4), recurring series expanded by calendarView
with cancelled and modified occurrences (CAL-9), calendarView delta with paging,
`@removed` and expiring links (RUN-4), and reminder changes that bump the version
(SYN-10)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from sandbox.microsoft.events import dismiss, reminder_state, snooze
from sandbox.microsoft.graph import expire_delta_links
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration

LINK_KEY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name crmsyncLinkKey"
WINDOW = "startDateTime=2026-03-01T00:00:00Z&endDateTime=2026-04-01T00:00:00Z"


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def when(text: str, zone: str = "UTC") -> dict[str, str]:
    return {"dateTime": text, "timeZone": zone}


def add(graph: Graph, path: str = "me/events", **fields: Any) -> dict[str, Any]:
    body = {
        "subject": "Quarterly review",
        "start": when("2026-03-03T10:00:00"),
        "end": when("2026-03-03T11:00:00"),
        **fields,
    }
    created: dict[str, Any] = graph.ok(graph.post(path, body), 201)
    return created


def weekly(**pattern: Any) -> dict[str, Any]:
    return {
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"], **pattern},
        "range": {"type": "endDate", "startDate": "2026-03-03", "endDate": "2026-03-31"},
    }


def view(graph: Graph, window: str = WINDOW) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = graph.ok(graph.get(f"me/calendarView?{window}&$top=100"))["value"]
    return items


def whole_round(graph: Graph, url: str, page: int = 2) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = graph.ok(graph.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}))
        pages += 1
        items += answer["value"]
        if "@odata.deltaLink" in answer:
            return items, answer["@odata.deltaLink"], pages
        url = answer["@odata.nextLink"]


def test_the_user_has_a_default_calendar_and_can_add_another(graph: Graph) -> None:
    default = graph.ok(graph.get("me/calendar"))
    made = graph.ok(graph.post("me/calendars", {"name": "CRM"}), 201)

    listed = graph.ok(graph.get("me/calendars"))["value"]

    assert default["isDefaultCalendar"] is True and default["name"] == "Calendar"
    assert {c["id"] for c in listed} == {default["id"], made["id"]}
    assert made["isDefaultCalendar"] is False


def test_a_created_event_reads_back_with_graphs_shape(graph: Graph) -> None:
    created = add(
        graph,
        body={"contentType": "text", "content": "Agenda"},
        location={"displayName": "Room 1"},
        sensitivity="private",
        showAs="tentative",
        reminderMinutesBeforeStart=30,
        categories=["CRM"],
        attendees=[
            {"emailAddress": {"address": "grace@navy.example", "name": "Grace"}, "type": "required"}
        ],
    )

    read = graph.ok(graph.get(f"me/events/{created['id']}"))

    assert read == created
    assert read["type"] == "singleInstance" and read["seriesMasterId"] is None
    assert read["start"] == {"dateTime": "2026-03-03T10:00:00.0000000", "timeZone": "UTC"}
    assert read["location"]["displayName"] == "Room 1"
    assert read["sensitivity"] == "private" and read["showAs"] == "tentative"
    assert read["isReminderOn"] is True and read["reminderMinutesBeforeStart"] == 30
    assert read["responseStatus"]["response"] == "organizer"
    assert read["organizer"]["emailAddress"]["address"] == EMAIL
    assert read["attendees"][0]["emailAddress"]["address"] == "grace@navy.example"
    assert read["@odata.etag"] == f'W/"{read["changeKey"]}"'
    assert read["lastModifiedDateTime"].endswith("Z")


def test_times_are_answered_in_utc_unless_outlook_timezone_is_preferred(graph: Graph) -> None:
    created = add(
        graph,
        start=when("2026-03-03T10:00:00", "Pacific Standard Time"),
        end=when("2026-03-03T11:00:00", "Pacific Standard Time"),
    )

    in_utc = graph.ok(graph.get(f"me/events/{created['id']}"))
    in_berlin = graph.ok(
        graph.get(
            f"me/events/{created['id']}", headers={"Prefer": 'outlook.timezone="Europe/Berlin"'}
        )
    )

    assert in_utc["start"] == {"dateTime": "2026-03-03T18:00:00.0000000", "timeZone": "UTC"}
    assert in_berlin["start"]["dateTime"] == "2026-03-03T19:00:00.0000000"
    assert in_utc["originalStartTimeZone"] == "Pacific Standard Time"


def test_an_all_day_event_must_start_and_end_at_midnight(graph: Graph) -> None:
    refused = graph.post(
        "me/events",
        {
            "subject": "Off",
            "isAllDay": True,
            "start": when("2026-03-03T09:00:00"),
            "end": when("2026-03-04T00:00:00"),
        },
    )
    accepted = add(
        graph, isAllDay=True, start=when("2026-03-03T00:00:00"), end=when("2026-03-04T00:00:00")
    )

    assert refused.status_code == 400
    assert accepted["isAllDay"] is True


def test_events_can_be_created_in_another_calendar(graph: Graph) -> None:
    other = graph.ok(graph.post("me/calendars", {"name": "CRM"}), 201)["id"]
    created = add(graph, f"me/calendars/{other}/events")

    in_other = graph.ok(graph.get(f"me/calendars/{other}/events"))["value"]
    in_default = graph.ok(graph.get("me/calendar/events"))["value"]

    assert [e["id"] for e in in_other] == [created["id"]] and in_default == []


def test_a_property_graph_does_not_know_is_refused(graph: Graph) -> None:
    answer = graph.post("me/events", {"subject": "x", "mood": "sunny"})

    assert answer.status_code == 400 and answer.json()["error"]["code"] == "RequestBodyRead"


def test_every_write_gives_a_new_change_key(graph: Graph) -> None:
    created = add(graph)
    graph.clock.now += timedelta(minutes=1)

    patched = graph.ok(graph.patch(f"me/events/{created['id']}", {"subject": "Moved"}))

    assert patched["changeKey"] != created["changeKey"]
    assert patched["lastModifiedDateTime"] > created["lastModifiedDateTime"]
    assert patched["subject"] == "Moved" and patched["start"] == created["start"]


def test_CAL11_a_file_attached_to_an_event_is_listed_and_changes_the_event(graph: Graph) -> None:
    created = add(graph)
    assert created["hasAttachments"] is False
    graph.clock.now += timedelta(minutes=1)
    file = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "agenda.pdf",
        "contentType": "application/pdf",
        "contentBytes": base64.b64encode(b"%PDF-1.7 agenda").decode(),
    }

    made = graph.ok(graph.post(f"me/events/{created['id']}/attachments", file), 201)

    assert (made["name"], made["size"], made["isInline"]) == ("agenda.pdf", 15, False)
    [listed] = graph.ok(graph.get(f"me/events/{created['id']}/attachments"))["value"]
    assert listed["id"] == made["id"] and listed["contentBytes"] == file["contentBytes"]
    event = graph.ok(graph.get(f"me/events/{created['id']}"))
    assert event["hasAttachments"] is True
    assert event["changeKey"] != created["changeKey"]


def test_an_attachment_that_is_no_file_or_not_base64_is_refused(graph: Graph) -> None:
    created = add(graph)
    path = f"me/events/{created['id']}/attachments"
    item = {"@odata.type": "#microsoft.graph.itemAttachment", "name": "mail"}
    file = {"@odata.type": "#microsoft.graph.fileAttachment", "name": "a", "contentBytes": "%%"}

    for body in (item, file):
        assert graph.post(path, body).status_code == 400
    assert graph.ok(graph.get(f"me/events/{created['id']}"))["hasAttachments"] is False


def test_a_patch_with_a_stale_etag_gets_412_and_changes_nothing(graph: Graph) -> None:
    created = add(graph)
    graph.ok(graph.patch(f"me/events/{created['id']}", {"subject": "Moved"}))

    stale = graph.patch(
        f"me/events/{created['id']}",
        {"subject": "Stale"},
        headers={"If-Match": created["@odata.etag"]},
    )

    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.ok(graph.get(f"me/events/{created['id']}"))["subject"] == "Moved"


def test_a_deleted_event_is_gone(graph: Graph) -> None:
    created = add(graph)

    assert graph.delete(f"me/events/{created['id']}").status_code == 204

    answer = graph.get(f"me/events/{created['id']}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ErrorItemNotFound"


def test_SYN4_a_retried_create_with_the_same_transaction_id_returns_the_first_event(
    graph: Graph,
) -> None:
    first = add(graph, transactionId="crm-42-create")

    second = add(graph, transactionId="crm-42-create")

    assert second["id"] == first["id"] and second["transactionId"] == "crm-42-create"
    assert len(graph.ok(graph.get("me/events"))["value"]) == 1


def test_SYN4_different_transaction_ids_create_different_events(graph: Graph) -> None:
    first = add(graph, transactionId="a")
    second = add(graph, transactionId="b")

    assert first["id"] != second["id"]


def test_a_link_key_in_an_extended_property_is_read_through_expand_and_filter(
    graph: Graph,
) -> None:
    created = add(graph, singleValueExtendedProperties=[{"id": LINK_KEY, "value": "crm-42"}])
    add(graph, subject="Other")

    expanded = graph.ok(
        graph.get(
            f"me/events/{created['id']}",
            params={"$expand": f"singleValueExtendedProperties($filter=id eq '{LINK_KEY}')"},
        )
    )
    found = graph.ok(
        graph.get(
            "me/events",
            params={
                "$filter": "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"'{LINK_KEY}' and ep/value eq 'CRM-42')"
            },
        )
    )["value"]

    assert "singleValueExtendedProperties" not in created
    assert expanded["singleValueExtendedProperties"] == [{"id": LINK_KEY, "value": "crm-42"}]
    assert [e["id"] for e in found] == [created["id"]]


def test_CAL9_a_weekly_series_is_listed_once_and_expanded_by_calendar_view(graph: Graph) -> None:
    master = add(graph, recurrence=weekly())

    listed = graph.ok(graph.get("me/events"))["value"]
    shown = view(graph)

    assert [e["id"] for e in listed] == [master["id"]] and listed[0]["type"] == "seriesMaster"
    assert master["recurrence"]["pattern"]["daysOfWeek"] == ["tuesday"]
    assert [e["start"]["dateTime"][:10] for e in shown] == [
        "2026-03-03",
        "2026-03-10",
        "2026-03-17",
        "2026-03-24",
        "2026-03-31",
    ]
    assert all(e["type"] == "occurrence" and e["seriesMasterId"] == master["id"] for e in shown)
    assert len({e["id"] for e in shown}) == 5


def test_CAL9_a_daily_series_with_a_count_stops_after_that_many(graph: Graph) -> None:
    add(
        graph,
        recurrence={
            "pattern": {"type": "daily", "interval": 2},
            "range": {"type": "numbered", "startDate": "2026-03-03", "numberOfOccurrences": 3},
        },
    )

    shown = view(graph)

    assert [e["start"]["dateTime"][:10] for e in shown] == [
        "2026-03-03",
        "2026-03-05",
        "2026-03-07",
    ]


def test_CAL9_a_series_without_end_fills_any_window(graph: Graph) -> None:
    add(
        graph,
        recurrence={
            "pattern": {"type": "weekly", "interval": 2, "daysOfWeek": ["tuesday", "thursday"]},
            "range": {"type": "noEnd", "startDate": "2026-03-03"},
        },
    )

    shown = view(graph, "startDateTime=2027-01-01T00:00:00Z&endDateTime=2027-01-31T00:00:00Z")

    days = [e["start"]["dateTime"][:10] for e in shown]
    assert days and len(days) in (4, 5)


def test_CAL9_a_cancelled_occurrence_is_missing_from_calendar_view(graph: Graph) -> None:
    add(graph, recurrence=weekly())
    second = view(graph)[1]

    assert graph.delete(f"me/events/{second['id']}").status_code == 204

    shown = view(graph)
    assert second["id"] not in {e["id"] for e in shown} and len(shown) == 4
    assert graph.get(f"me/events/{second['id']}").status_code == 404


def test_CAL9_a_modified_occurrence_shows_as_an_exception_of_its_series(graph: Graph) -> None:
    master = add(graph, recurrence=weekly())
    third = view(graph)[2]

    changed = graph.ok(
        graph.patch(
            f"me/events/{third['id']}",
            {
                "subject": "Moved review",
                "start": when("2026-03-18T15:00:00"),
                "end": when("2026-03-18T16:00:00"),
            },
        )
    )

    shown = {e["id"]: e for e in view(graph)}
    assert changed["type"] == "exception" and changed["seriesMasterId"] == master["id"]
    assert shown[third["id"]]["type"] == "exception"
    assert shown[third["id"]]["subject"] == "Moved review"
    assert shown[third["id"]]["start"]["dateTime"] == "2026-03-18T15:00:00.0000000"
    assert shown[third["id"]]["originalStart"] == "2026-03-17T10:00:00Z"
    assert sum(e["type"] == "occurrence" for e in shown.values()) == 4


def test_calendar_view_needs_its_window(graph: Graph) -> None:
    answer = graph.get("me/calendarView")

    assert answer.status_code == 400


def test_a_first_view_delta_round_pages_every_instance_then_gives_a_delta_link(
    graph: Graph,
) -> None:
    add(graph, recurrence=weekly())
    add(graph, subject="Single")

    items, delta_link, pages = whole_round(graph, f"me/calendarView/delta?{WINDOW}")

    assert len(items) == 6 and pages == 3
    assert "$deltatoken=" in delta_link and "startDateTime=" in delta_link
    assert all(i["@odata.type"] == "#microsoft.graph.event" for i in items)
    assert {i["type"] for i in items} == {"occurrence", "singleInstance"}


def test_a_view_delta_link_reports_changes_and_deletions_as_removed(graph: Graph) -> None:
    kept = add(graph, subject="Kept")
    changed = add(graph, subject="Changed")
    gone = add(graph, subject="Gone")
    _, delta_link, _ = whole_round(graph, f"me/calendarView/delta?{WINDOW}")
    graph.ok(graph.patch(f"me/events/{changed['id']}", {"subject": "Changed again"}))
    assert graph.delete(f"me/events/{gone['id']}").status_code == 204
    new = add(graph, subject="New")

    items, next_delta, _ = whole_round(graph, delta_link)

    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {changed["id"], gone["id"], new["id"]}
    assert by_id[changed["id"]]["subject"] == "Changed again"
    assert by_id[gone["id"]]["@removed"] == {"reason": "deleted"}
    assert kept["id"] not in by_id
    assert whole_round(graph, next_delta)[0] == []


def test_a_cancelled_occurrence_arrives_as_removed_in_view_delta(graph: Graph) -> None:
    add(graph, recurrence=weekly())
    items, delta_link, _ = whole_round(graph, f"me/calendarView/delta?{WINDOW}")
    second = sorted(items, key=lambda e: e["start"]["dateTime"])[1]

    assert graph.delete(f"me/events/{second['id']}").status_code == 204
    following, _, _ = whole_round(graph, delta_link)

    removed = [i for i in following if "@removed" in i]
    assert removed == [{"id": second["id"], "@removed": {"reason": "deleted"}}]


def test_view_delta_honours_maxpagesize_and_says_so(graph: Graph) -> None:
    add(graph, recurrence=weekly())

    answer = graph.get(f"me/calendarView/delta?{WINDOW}", headers={"Prefer": "odata.maxpagesize=1"})

    assert len(answer.json()["value"]) == 1 and "@odata.nextLink" in answer.json()
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=1"


def test_view_delta_needs_its_window(graph: Graph) -> None:
    assert graph.get("me/calendarView/delta").status_code == 400


def test_RUN4_an_expired_view_delta_link_gets_410_sync_state_not_found_with_a_fresh_start(
    graph: Graph,
) -> None:
    add(graph)
    _, delta_link, _ = whole_round(graph, f"me/calendarView/delta?{WINDOW}")
    expire_delta_links(graph.sandbox, EMAIL)

    answer = graph.get(delta_link)

    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "syncStateNotFound"
    restart = answer.headers["Location"]
    assert "$deltatoken" not in restart and "startDateTime=" in restart
    items, _, _ = whole_round(graph, restart)
    assert len(items) == 1


def test_SYN10_snoozing_a_reminder_changes_only_the_version(graph: Graph) -> None:
    created = add(graph)
    graph.clock.now += timedelta(minutes=1)

    snooze(graph.sandbox, EMAIL, created["id"])

    read = graph.ok(graph.get(f"me/events/{created['id']}"))
    assert read["changeKey"] != created["changeKey"]
    assert read["lastModifiedDateTime"] > created["lastModifiedDateTime"]
    same = ("changeKey", "lastModifiedDateTime", "@odata.etag")
    assert {k: v for k, v in read.items() if k not in same} == {
        k: v for k, v in created.items() if k not in same
    }
    assert reminder_state(graph.sandbox, EMAIL, created["id"]).startswith("snoozed")


def test_SYN10_dismissing_a_reminder_changes_only_the_version_and_shows_in_delta(
    graph: Graph,
) -> None:
    created = add(graph)
    _, delta_link, _ = whole_round(graph, f"me/calendarView/delta?{WINDOW}")

    dismiss(graph.sandbox, EMAIL, created["id"])

    items, _, _ = whole_round(graph, delta_link)
    assert [i["id"] for i in items] == [created["id"]]
    assert items[0]["subject"] == created["subject"]
    assert items[0]["changeKey"] != created["changeKey"]
    assert reminder_state(graph.sandbox, EMAIL, created["id"]) == "dismissed"


def test_the_snooze_reminder_action_changes_the_version(graph: Graph) -> None:
    created = add(graph)

    answer = graph.post(
        f"me/events/{created['id']}/snoozeReminder",
        {"newReminderTime": when("2026-03-03T09:55:00")},
    )

    assert answer.status_code == 200
    assert graph.ok(graph.get(f"me/events/{created['id']}"))["changeKey"] != created["changeKey"]


def test_a_read_only_token_cannot_write_events(graph: Graph) -> None:
    token = graph.sandbox.issue_token(EMAIL, ["Calendars.Read"])

    answer = graph.post("me/events", {"subject": "X"}, token=token)

    assert answer.status_code == 403


REMINDER_SIGNAL = "SystemTime {00062008-0000-0000-C000-000000000046} Id 0x8560"


def reminder_properties(graph: Graph, event_id: str) -> tuple[bool, list[dict[str, str]]]:
    expand = (
        f"singleValueExtendedProperties($filter=id eq '{REMINDER_SIGNAL}' or id eq '{LINK_KEY}')"
    )
    read = graph.ok(graph.get(f"me/events/{event_id}", params={"$expand": expand}))
    return read["isReminderOn"], read["singleValueExtendedProperties"]


def test_SYN10_a_snooze_sets_the_reminder_signal_time_and_a_dismiss_turns_the_reminder_off(
    graph: Graph,
) -> None:
    created = add(graph, singleValueExtendedProperties=[{"id": LINK_KEY, "value": "L-1"}])

    graph.ok(
        graph.post(
            f"me/events/{created['id']}/snoozeReminder",
            {"newReminderTime": when("2026-03-03T09:55:00")},
        )
    )
    snoozed = reminder_properties(graph, created["id"])
    dismiss(graph.sandbox, EMAIL, created["id"])
    dismissed = reminder_properties(graph, created["id"])

    signal = {"id": REMINDER_SIGNAL, "value": "2026-03-03T09:55:00Z"}
    assert snoozed == (True, [signal, {"id": LINK_KEY, "value": "L-1"}])
    assert dismissed[0] is False


def test_SYN10_dismissing_a_series_moves_its_signal_time_past_the_last_occurrence(
    graph: Graph,
) -> None:
    created = add(graph, recurrence=weekly())

    dismiss(graph.sandbox, EMAIL, created["id"])

    on, properties = reminder_properties(graph, created["id"])
    assert on is True
    assert properties == [{"id": REMINDER_SIGNAL, "value": "4501-01-01T00:00:00Z"}]
