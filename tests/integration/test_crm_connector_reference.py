"""The REST connector against the reference CRM over a real socket: the CrmConnector
port's promises hold end to end (no mocks on either side)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crmsync.crm.rest import RestCrmConnector
from crmsync.engine.plan import AccountSpec, Write
from crmsync.errors import Conflict, CrmUnauthorized, CursorExpired, NotFound, PermanentError
from crmsync.model import CustomField, normalize
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.server import serve

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
MEETING = normalize(
    "activity",
    {
        "type": "meeting",
        "subject": "Kickoff",
        "start": datetime(2026, 11, 3, 10, 0, tzinfo=UTC),
        "end": datetime(2026, 11, 3, 11, 0, tzinfo=UTC),
        "timezone": "Europe/Berlin",
        "leader": "u1",
    },
)
ADA = normalize(
    "contact",
    {"first_name": "Ada", "last_name": "Lovelace", "company": "Engines", "emails": ["ada@x.org"]},
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def crm() -> Iterator[tuple[ReferenceCrm, str, Clock]]:
    clock = Clock()
    reference = ReferenceCrm(CrmDatabase(":memory:", clock=clock))
    reference.add_tenant("t1", "token-1")
    reference.add_tenant("t2", "token-2")
    for tenant in ("t1", "t2"):
        reference.add_user(tenant, "u1", name="Dana", email="dana@crm.example")
        reference.add_user(tenant, "u2", name="Max", email="max@crm.example")
    base_url, stop = serve(reference)
    yield reference, base_url, clock
    stop()


def connector(base_url: str, user: str = "u1", token: str = "token-1") -> RestCrmConnector:
    return RestCrmConnector(base_url, token, user, attempts=1)


def create(kind: str, fields: dict[str, Any], key: str, **kw: Any) -> Write:
    return Write("crm", "create", kind, fields=fields, key=key, **kw)  # type: ignore[arg-type]


def test_SYN4_create_is_idempotent_per_key(crm: tuple[ReferenceCrm, str, Clock]) -> None:
    reference, url, _ = crm
    crm_side = connector(url)

    first = crm_side.create(create("activity", MEETING, "key-1", ref="link-1"))
    again = crm_side.create(create("activity", MEETING, "key-1", ref="link-1"))

    assert again.id == first.id
    assert [a["subject"] for a in reference.all("t1", "activity")] == ["Kickoff"]
    record = crm_side.get("activity", first.id)
    assert record.fields == MEETING
    assert record.ref == "link-1"


def test_SYN4_update_on_a_stale_version_is_a_conflict(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    crm_side = connector(url)
    created = crm_side.create(create("activity", MEETING, "key-1"))
    reference.update("t1", "activity", created.id, {"location": "Room 4"})  # a user's edit

    with pytest.raises(Conflict):
        crm_side.update(
            Write("crm", "update", "activity", created.id, {"subject": "X"}, created.version)
        )

    assert reference.get("t1", "activity", created.id)["subject"] == "Kickoff"


def test_SYN4_update_without_a_vouched_version_applies_to_the_current_record(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    crm_side = connector(url)
    created = crm_side.create(create("activity", MEETING, "key-1"))

    result = crm_side.update(Write("crm", "update", "activity", created.id, {"subject": "X"}))

    assert result.version != created.version
    assert reference.get("t1", "activity", created.id)["subject"] == "X"


def test_RUN4_feed_reports_changes_and_deletes_after_a_cursor_and_410_when_expired(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    crm_side = connector(url)
    kept = reference.create("t1", "todo", {"subject": "Call", "due": "2026-11-05"}, "u1")
    gone = reference.create("t1", "todo", {"subject": "Mail"}, "u1")
    everything = crm_side.changes("todo", None)
    assert sorted(r.id for r in everything.records) == sorted([kept, gone])

    reference.update("t1", "todo", kept, {"status": "completed"})
    reference.delete("t1", "todo", gone)
    since = crm_side.changes("todo", everything.cursor)

    by_id = {r.id: r for r in since.records}
    assert by_id[kept].fields is not None and by_id[kept].fields["status"] == "completed"
    assert by_id[kept].fields["due"] == date(2026, 11, 5)
    assert by_id[gone].gone
    reference.expire_cursors("t1")
    with pytest.raises(CursorExpired):
        crm_side.changes("todo", since.cursor)


def test_AUTH5_a_user_sees_only_their_own_todos(crm: tuple[ReferenceCrm, str, Clock]) -> None:
    reference, url, _ = crm
    mine = reference.create("t1", "todo", {"subject": "Mine"}, "u1")
    theirs = reference.create("t1", "todo", {"subject": "Theirs"}, "u2")

    page = connector(url, "u1").changes("todo", None)

    assert [r.id for r in page.records] == [mine]
    assert connector(url, "u1").get("todo", theirs).gone


def test_AUTH5_tenants_are_isolated(crm: tuple[ReferenceCrm, str, Clock]) -> None:
    reference, url, _ = crm
    secret = reference.create("t1", "todo", {"subject": "Tenant one"}, "u1")

    other = connector(url, token="token-2")

    assert other.changes("todo", None).records == []
    assert other.get("todo", secret).gone
    with pytest.raises(NotFound):
        other.delete(Write("crm", "delete", "todo", secret))
    assert reference.get("t1", "todo", secret) is not None


def test_AUTH5_an_unknown_token_stops_the_cycle(crm: tuple[ReferenceCrm, str, Clock]) -> None:
    _, url, _ = crm

    with pytest.raises(CrmUnauthorized):
        connector(url, token="not-a-token").changes("todo", None)


def test_CON1_group_scope_and_membership_changes(crm: tuple[ReferenceCrm, str, Clock]) -> None:
    reference, url, _ = crm
    crm_side = connector(url)
    member = reference.create("t1", "contact", dict(ADA), "u1")
    start = crm_side.changes("contact", None)
    assert [(r.id, r.in_scope) for r in start.records] == [(member, False)]

    result = crm_side.set_scope(Write("crm", "scope", "contact", member, in_scope=True))

    assert reference.group("t1", "u1") == [member]
    (seen,) = crm_side.changes("contact", start.cursor).records
    assert (seen.id, seen.version, seen.in_scope) == (member, result.version, True)


def test_CON5_contact_created_from_the_provider_joins_an_account_and_the_group(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    account = AccountSpec("Engines", manager="u1")

    created = connector(url).create(
        create("contact", ADA, "key-ada", in_scope=True, account=account)
    )

    (made,) = reference.accounts("t1")
    assert (made["name"], made["type"], made["status"], made["manager"]) == (
        "Engines",
        "Prospect",
        "Active",
        "u1",
    )
    assert reference.get("t1", "contact", created.id)["account_id"] == made["id"]
    assert reference.group("t1", "u1") == [created.id]


def test_CON3_contacts_are_found_by_email_in_and_out_of_the_group(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    outside = reference.create("t1", "contact", dict(ADA), "u1")
    reference.create("t1", "contact", {"last_name": "Other", "emails": ["o@x.org"]}, "u1")

    found = connector(url).find_by_email("contact", ["ada@x.org", "nobody@x.org"])

    assert [(r.id, r.in_scope) for r in found] == [(outside, False)]


def test_SYN3_field_over_the_declared_limit_is_refused_and_declared_in_the_schema(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    reference.set_field_limit("t1", "activity", "subject", 5)
    crm_side = connector(url)

    assert crm_side.schema().limit("activity", "subject") == 5
    with pytest.raises(PermanentError):
        crm_side.create(create("activity", MEETING, "key-long"))
    assert reference.all("t1", "activity") == []


def test_SYN5_a_record_the_crm_holds_in_a_bad_form_reads_as_a_failed_record(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, clock = crm
    bad = reference.create(
        "t1",
        "activity",
        {"subject": "Odd", "start": "2026-11-03T10:00:00+00:00", "timezone": "Mars/Base"},
        "u1",
    )
    clock.now += timedelta(minutes=1)

    (record,) = connector(url).changes("activity", None).records

    assert record.id == bad
    assert record.error is not None and "Mars/Base" in record.error


def test_CAL6_the_crm_user_directory_maps_users_to_their_addresses(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    reference.add_user("t1", "u3", name="Gone", email="gone@crm.example", active=False)

    assert connector(url).users() == {"u1": "dana@crm.example", "u2": "max@crm.example"}


# -- custom fields (SYN-1) ---------------------------------------------------------------


def declare(reference: ReferenceCrm) -> None:
    reference.declare_custom_field("t1", "contact", "industry", max_length=8)
    reference.declare_custom_field("t1", "contact", "seats", "number")
    reference.declare_custom_field("t1", "contact", "vip", "boolean")
    reference.declare_custom_field("t1", "contact", "renewal", "date")


def test_SYN1_the_schema_carries_the_declared_custom_fields_and_their_lengths(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    declare(reference)

    schema = connector(url).schema()

    assert [f.name for f in schema.custom["contact"].values()] == [
        "industry",
        "seats",
        "vip",
        "renewal",
    ]
    assert schema.declared("contact", "custom.seats") == CustomField("seats", "number")
    assert schema.limit("contact", "custom.industry") == 8
    assert schema.custom["todo"] == {}


def test_SYN1_custom_values_read_as_canonical_text_and_are_written_as_their_type(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    declare(reference)
    crm_side = connector(url)
    created = crm_side.create(
        create(
            "contact",
            {**ADA, "custom.seats": "12", "custom.vip": "true", "custom.renewal": "2027-03-01"},
            "key-1",
        )
    )

    stored = reference.get("t1", "contact", created.id)
    assert stored is not None
    assert stored["custom"] == {"seats": 12, "vip": True, "renewal": "2027-03-01"}
    record = crm_side.get("contact", created.id)
    assert record.fields is not None
    assert {k: v for k, v in record.fields.items() if k.startswith("custom.")} == {
        "custom.industry": None,
        "custom.seats": "12",
        "custom.vip": "true",
        "custom.renewal": "2027-03-01",
    }

    crm_side.update(
        Write("crm", "update", "contact", created.id, {"custom.seats": "12.5"}, record.version)
    )
    stored = reference.get("t1", "contact", created.id)
    assert stored is not None
    assert stored["custom"] == {"seats": 12.5, "vip": True, "renewal": "2027-03-01"}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"custom.seats": "a dozen"}, "custom.seats"),
        ({"custom.renewal": "1.3.2027"}, "custom.renewal"),
        ({"custom.nickname": "Ada"}, "custom.nickname"),
        ({"custom.industry": "Shipbuilding"}, "custom.industry"),
    ],
)
def test_SYN1_a_custom_value_the_crm_cannot_hold_fails_that_write_alone(
    crm: tuple[ReferenceCrm, str, Clock], fields: dict[str, Any], named: str
) -> None:
    reference, url, _ = crm
    declare(reference)
    crm_side = connector(url)
    created = crm_side.create(create("contact", dict(ADA), "key-1"))

    with pytest.raises(PermanentError, match=named.replace(".", r"\.")):
        crm_side.update(Write("crm", "update", "contact", created.id, fields, created.version))

    assert crm_side.get("contact", created.id).version == created.version
