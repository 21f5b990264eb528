"""Canonical records: normalisation that makes equal data compare equal (CON-3, CAL-11, SYN-5)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from crmsync import model
from crmsync.model import InvalidRecord, Phone
from crmsync.testing import SyncWorld

# -- CON-3: e-mail addresses and phone numbers ----------------------------------------------


def test_CON3_email_is_lower_cased_and_trimmed() -> None:
    fields = model.normalize("contact", {"emails": ["  Ada.Lovelace@Example.COM \t"]})

    assert fields["emails"] == ("ada.lovelace@example.com",)


def test_CON3_emails_equal_after_normalising_are_kept_once_in_order() -> None:
    raw = {"emails": ["B@x.org", " ada@example.com", "ADA@EXAMPLE.COM ", "b@x.org"]}

    fields = model.normalize("contact", raw)

    assert fields["emails"] == ("b@x.org", "ada@example.com")


def test_CON3_blank_emails_are_dropped() -> None:
    fields = model.normalize("contact", {"emails": ["", "   ", "ada@example.com"]})

    assert fields["emails"] == ("ada@example.com",)


def test_CON3_first_cycle_links_contacts_whose_emails_differ_only_in_case_and_spaces() -> None:
    world = SyncWorld()
    crm_id = world.crm.create("contact", {"first_name": "Ada", "emails": ["Ada@Example.com"]})
    world.crm.add_to_sync_group(crm_id)
    provider_id = world.provider.create(
        "contact", {"first_name": "Ada", "emails": [" ada@example.COM "]}
    )
    world.provider.label(provider_id)

    world.sync()

    assert len(world.crm.all("contact")) == 1
    assert len(world.provider.all("contact")) == 1
    [link] = world.links("contact")
    assert (link["crm_id"], link["provider_id"]) == (crm_id, provider_id)


@pytest.mark.parametrize(
    ("written", "region", "e164"),
    [
        ("+1 650-253-0000", None, "+16502530000"),
        ("+1 (650) 253 0000", None, "+16502530000"),
        ("+44 20 7946 0958", None, "+442079460958"),
        ("030 901820", "DE", "+4930901820"),
    ],
)
def test_CON3_parseable_phone_becomes_e164(written: str, region: str | None, e164: str) -> None:
    raw = {"phones": [{"kind": "work", "number": written}]}

    fields = model.normalize("contact", raw, region)

    assert fields["phones"] == (Phone("work", e164),)


@pytest.mark.parametrize("written", ["ext. 4711", "030 901820", "+1 555"])
def test_CON3_unparseable_phone_keeps_what_was_written(written: str) -> None:
    fields = model.normalize("contact", {"phones": [{"kind": "mobile", "number": written}]})

    assert fields["phones"] == (Phone("mobile", written),)


def test_CON3_same_phone_written_two_ways_is_kept_once() -> None:
    raw = {
        "phones": [
            {"kind": "work", "number": "+1 650-253-0000"},
            {"kind": "work", "number": "+16502530000"},
        ]
    }

    fields = model.normalize("contact", raw)

    assert fields["phones"] == (Phone("work", "+16502530000"),)


# -- CAL-11: time zones kept, all-day stays all-day ---------------------------------------------


def test_CAL11_naive_time_is_read_in_the_records_time_zone() -> None:
    raw = {
        "subject": "Review",
        "start": "2026-11-05T10:00:00",
        "end": "2026-11-05T11:30:00",
        "timezone": "Europe/Berlin",
    }

    fields = model.normalize("activity", raw)

    assert fields["start"] == datetime(2026, 11, 5, 9, 0, tzinfo=UTC)  # CET is UTC+1
    assert fields["end"] == datetime(2026, 11, 5, 10, 30, tzinfo=UTC)
    assert fields["timezone"] == "Europe/Berlin"
    assert fields["all_day"] is False


def test_CAL11_naive_time_follows_daylight_saving_of_its_zone() -> None:
    raw = {"start": datetime(2026, 7, 1, 10, 0), "timezone": "America/New_York"}

    fields = model.normalize("activity", raw)

    assert fields["start"] == datetime(2026, 7, 1, 14, 0, tzinfo=UTC)  # EDT is UTC-4


def test_CAL11_aware_time_keeps_its_instant_and_the_zone_name() -> None:
    tokyo = timezone(timedelta(hours=9))
    raw = {
        "start": datetime(2026, 11, 5, 18, 0, tzinfo=tokyo),
        "end": datetime(2026, 11, 5, 19, 0, tzinfo=tokyo),
        "timezone": "Asia/Tokyo",
    }

    fields = model.normalize("activity", raw)

    assert fields["start"] == datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    assert fields["start"].utcoffset() == timedelta(0)
    assert fields["end"] == datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    assert fields["timezone"] == "Asia/Tokyo"


def test_CAL11_all_day_activity_is_dates_with_exclusive_end() -> None:
    raw = {"start": date(2026, 11, 5), "end": date(2026, 11, 8), "all_day": True}

    fields = model.normalize("activity", raw)

    assert (fields["start"], fields["end"]) == (date(2026, 11, 5), date(2026, 11, 8))
    assert not isinstance(fields["start"], datetime)
    assert fields["all_day"] is True


def test_CAL11_all_day_activity_without_end_lasts_one_day() -> None:
    fields = model.normalize("activity", {"start": "2026-11-05", "all_day": True})

    assert (fields["start"], fields["end"]) == (date(2026, 11, 5), date(2026, 11, 6))


def test_CAL11_a_bare_date_is_an_all_day_activity() -> None:
    fields = model.normalize("activity", {"start": date(2026, 11, 5)})

    assert fields["all_day"] is True
    assert (fields["start"], fields["end"]) == (date(2026, 11, 5), date(2026, 11, 6))


@pytest.mark.parametrize("zone", ["Pacific/Auckland", "America/Los_Angeles", "Asia/Kolkata"])
def test_CAL11_all_day_never_shifts_by_a_day_in_any_time_zone(zone: str) -> None:
    raw = {
        "start": datetime(2026, 11, 5, 0, 0),
        "end": datetime(2026, 11, 6, 0, 0),
        "all_day": True,
        "timezone": zone,
    }

    fields = model.normalize("activity", raw)

    assert (fields["start"], fields["end"]) == (date(2026, 11, 5), date(2026, 11, 6))
    assert fields["timezone"] == zone


def test_CAL11_all_day_event_arrives_in_the_crm_on_the_same_day() -> None:
    world = SyncWorld("microsoft")
    world.provider.create(
        "activity",
        {
            "subject": "Offsite",
            "start": date(2026, 11, 5),
            "end": date(2026, 11, 7),
            "all_day": True,
            "timezone": "Pacific/Auckland",
        },
    )

    world.sync()

    [activity] = world.crm.all("activity")
    assert (activity["start"], activity["end"]) == (date(2026, 11, 5), date(2026, 11, 7))
    assert activity["all_day"] is True
    assert activity["timezone"] == "Pacific/Auckland"


def test_CAL11_timed_activity_keeps_its_zone_on_the_provider() -> None:
    world = SyncWorld("google")
    world.crm.create(
        "activity",
        {
            "subject": "Review",
            "start": datetime(2026, 11, 5, 10, 0),
            "end": datetime(2026, 11, 5, 11, 0),
            "timezone": "Europe/Berlin",
        },
    )

    world.sync()

    [event] = world.provider.all("activity")
    assert event["start"] == datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
    assert event["end"] == datetime(2026, 11, 5, 10, 0, tzinfo=UTC)
    assert event["timezone"] == "Europe/Berlin"


# -- SYN-5: records that cannot be read fail alone --------------------------------------------


def test_SYN5_unknown_time_zone_is_an_invalid_record() -> None:
    raw = {"start": "2026-11-05T10:00:00", "timezone": "Mars/Olympus_Mons"}

    with pytest.raises(InvalidRecord, match="Mars/Olympus_Mons"):
        model.normalize("activity", raw)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (datetime(2026, 11, 5, 10, 0, tzinfo=UTC), datetime(2026, 11, 5, 9, 0, tzinfo=UTC)),
        ("2026-11-05T10:00:00", "2026-11-04T10:00:00"),
        (date(2026, 11, 5), date(2026, 11, 3)),
    ],
)
def test_SYN5_end_before_start_is_an_invalid_record(
    start: datetime | date | str, end: datetime | date | str
) -> None:
    with pytest.raises(InvalidRecord):
        model.normalize("activity", {"start": start, "end": end})


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("activity", {"start": "5 November"}),
        ("activity", {"start": "2026-11-31T10:00:00"}),
        ("todo", {"subject": "Send offer", "due": "someday"}),
    ],
)
def test_SYN5_unreadable_date_is_an_invalid_record(kind: model.Kind, raw: dict[str, str]) -> None:
    with pytest.raises(InvalidRecord):
        model.normalize(kind, raw)


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("contact", {"emails": 5}),
        ("contact", {"phones": 5}),
        ("activity", {"start": "2026-11-03T10:00:00+00:00", "members": 5}),
        ("todo", {"subject": "x", "status": ["open"]}),
    ],
)
def test_SYN5_value_of_the_wrong_shape_is_an_invalid_record(
    kind: model.Kind, raw: dict[str, object]
) -> None:
    with pytest.raises(InvalidRecord):
        model.normalize(kind, raw)


def test_SYN5_record_with_unknown_time_zone_fails_alone_and_is_retried() -> None:
    world = SyncWorld("google")
    bad = world.crm.create(
        "activity",
        {
            "subject": "Broken",
            "start": datetime(2026, 11, 5, 10, 0),
            "end": datetime(2026, 11, 5, 11, 0),
            "timezone": "Mars/Olympus_Mons",
        },
    )
    world.crm.create(
        "activity",
        {
            "subject": "Fine",
            "start": datetime(2026, 11, 5, 10, 0, tzinfo=UTC),
            "end": datetime(2026, 11, 5, 11, 0, tzinfo=UTC),
        },
    )

    run = world.sync()

    assert [e["subject"] for e in world.provider.all("activity")] == ["Fine"]
    assert run["status"] == "partial"
    [failed] = [i for i in world.history() if i["outcome"] == "fail"]
    assert failed["crm_id"] == bad
    assert "Mars/Olympus_Mons" in failed["reason"]

    world.sync()  # nothing changed, yet the bad record is tried again
    assert [i["crm_id"] for i in world.history() if i["outcome"] == "fail"] == [bad]

    world.crm.update("activity", bad, {"timezone": "Europe/Berlin"})
    world.sync()

    assert sorted(e["subject"] for e in world.provider.all("activity")) == ["Broken", "Fine"]
