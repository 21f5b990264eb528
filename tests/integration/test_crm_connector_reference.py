"""The REST connector against the reference CRM over a real socket: the CrmConnector
port's promises hold end to end (no mocks on either side)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from crmsync.crm.rest import RestCrmConnector
from crmsync.engine.plan import AccountSpec, Write
from crmsync.errors import Conflict, CrmUnauthorized, CursorExpired, NotFound, PermanentError
from crmsync.model import CustomField, normalize
from crmsync.ports import HistoryEntry, Linked, MailLimits, Person, Stored
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


# -- e-mail recording (EML-2, EML-4) --------------------------------------------------------


class CountingSession(requests.Session):
    """A plain HTTP session that counts the requests it sends, by path."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.paths.append(str(url).rsplit("/v1", 1)[-1])
        return super().request(method, url, *args, **kw)


def mail_to(kind: str, record_id: str, **given: Any) -> HistoryEntry:
    values: dict[str, Any] = {
        "record_kind": kind,
        "record_id": record_id,
        "subject": "Offer",
        "body": "Dear Ada, the offer is attached.",
        "date": datetime(2026, 11, 3, 10, 30, tzinfo=timezone(timedelta(hours=1))),
        "participants": (("from", "dana@crm.example", "Dana"), ("to", "ada@x.org", "")),
        **given,
    }
    return HistoryEntry(**values)


def test_EML2_mail_limits_are_read_from_the_schema_answer_once(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    reference.set_history_limits("t1", subject=40, body=900, attachment_bytes=1024)
    reference.set_field_limit("t1", "activity", "subject", 5)
    session = CountingSession()
    crm_side = RestCrmConnector(url, "token-1", "u1", attempts=1, session=session)

    limits = crm_side.mail_limits()

    assert limits == MailLimits(subject=40, body=900, attachment_bytes=1024)
    assert crm_side.schema().limit("activity", "subject") == 5
    assert crm_side.mail_limits() == limits
    assert session.paths == ["/schema"]
    other = connector(url, token="token-2").mail_limits()
    assert other == MailLimits(subject=255, body=65_536, attachment_bytes=5 * 1024 * 1024)


def test_EML2_people_holding_an_address_come_in_the_crms_order_with_their_history(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    ada = reference.create("t1", "contact", dict(ADA), "u1")
    lead = reference.create("t1", "lead", {"last_name": "Byron", "emails": ["ADA@x.org"]}, "u1")
    reference.create("t1", "contact", {"first_name": "Bob", "emails": ["bob@x.org"]}, "u1")
    crm_side = connector(url)

    before = crm_side.people("Ada@X.org")
    crm_side.record_history(mail_to("lead", lead), "mail-1")
    after = crm_side.people("ada@x.org")

    assert before == [
        Person("contact", ada, "Ada Lovelace", ("ada@x.org",), 0),
        Person("lead", lead, "Byron", ("ada@x.org",), 0),
    ]
    assert [(p.kind, p.id, p.history_count) for p in after] == [
        ("lead", lead, 1),
        ("contact", ada, 0),
    ]
    assert crm_side.people("nobody@x.org") == []


def test_EML5_people_are_searched_by_a_part_of_a_name_or_address_in_the_crms_order(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    ada = reference.create("t1", "contact", dict(ADA), "u1")
    lead = reference.create(
        "t1", "lead", {"last_name": "Byron", "emails": ["lord@poets.org"]}, "u1"
    )
    bob = reference.create("t1", "contact", {"first_name": "Bob", "emails": ["bob@x.org"]}, "u1")
    reference.create("t2", "contact", dict(ADA), "u1")  # another tenant's Ada
    crm_side = connector(url)
    crm_side.record_history(mail_to("contact", bob), "mail-1")

    found = crm_side.search_people("X.ORG", 10)
    limited = crm_side.search_people("x.org", 1)

    assert found == [
        Person("contact", bob, "Bob", ("bob@x.org",), 1),
        Person("contact", ada, "Ada Lovelace", ("ada@x.org",), 0),
    ]
    assert limited == found[:1]
    assert crm_side.search_people("ByRon", 10) == [
        Person("lead", lead, "Byron", ("lord@poets.org",), 0)
    ]
    assert crm_side.search_people("Lovelace", 10) == found[1:]
    assert connector(url, user="u2").search_people("Lovelace", 10) == found[1:]
    reference.delete("t1", "contact", ada)
    assert crm_side.search_people("Lovelace", 10) == []
    for text, most in (("a", 10), ("a" * 101, 10), ("bob", 0), ("bob", 51)):
        with pytest.raises(PermanentError) as refused:
            crm_side.search_people(text, most)
        assert not isinstance(refused.value, NotFound)


def test_EML4_a_message_is_recorded_once_per_key_with_its_attachments_and_links(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    ada = reference.create("t1", "contact", dict(ADA), "u1")
    pdf = bytes(range(256)) * 4
    entry = mail_to(
        "contact",
        ada,
        attachments=(Stored("offer.pdf", "application/pdf", pdf),),
        links=(Linked("deck.mp4", "video/mp4", 80_000_000, "https://store.example/d?sig=1"),),
    )
    crm_side = connector(url)

    first, new = crm_side.record_history(entry, "mail-1")
    again = connector(url).record_history(entry, "mail-1")

    assert new and again == (first, False)
    (item,) = reference.history("t1", "contact", ada)
    assert item["id"] == first
    assert (item["subject"], item["body"]) == ("Offer", "Dear Ada, the offer is attached.")
    assert datetime.fromisoformat(item["date"]) == datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    assert item["participants"] == [
        {"role": "from", "email": "dana@crm.example", "name": "Dana"},
        {"role": "to", "email": "ada@x.org", "name": ""},
    ]
    assert [(a.filename, a.content_type, a.content) for a in item["attachments"]] == [
        ("offer.pdf", "application/pdf", pdf)
    ]
    assert [(x.filename, x.size, x.url) for x in item["links"]] == [
        ("deck.mp4", 80_000_000, "https://store.example/d?sig=1")
    ]
    assert crm_side.record_history(entry, "mail-2")[0] != first  # another key, another item


def test_EML2_a_message_for_a_deleted_or_unknown_record_is_not_found(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    ada = reference.create("t1", "contact", dict(ADA), "u1")
    reference.delete("t1", "contact", ada)
    crm_side = connector(url)

    with pytest.raises(NotFound):
        crm_side.record_history(mail_to("contact", ada), "mail-1")
    with pytest.raises(NotFound):
        crm_side.record_history(mail_to("lead", "l-404"), "mail-2")

    assert reference.history("t1", "contact", ada) == []


@pytest.mark.parametrize(
    "given",
    [
        {"subject": "s" * 41},
        {"body": "b" * 901},
        {"attachments": (Stored("big.bin", "application/octet-stream", b"x" * 1025),)},
        {"links": (Linked("v.mp4", "video/mp4", 1, "ftp://store.example/v"),)},
    ],
)
def test_EML2_a_message_the_crm_does_not_take_is_a_permanent_error(
    crm: tuple[ReferenceCrm, str, Clock], given: dict[str, Any]
) -> None:
    reference, url, _ = crm
    reference.set_history_limits("t1", subject=40, body=900, attachment_bytes=1024)
    ada = reference.create("t1", "contact", dict(ADA), "u1")

    with pytest.raises(PermanentError) as raised:
        connector(url).record_history(mail_to("contact", ada, **given), "mail-1")

    assert not isinstance(raised.value, NotFound)
    assert reference.history("t1", "contact", ada) == []


def test_CTX1_a_cards_addresses_open_the_records_page_and_stay_within_their_tenant(
    crm: tuple[ReferenceCrm, str, Clock],
) -> None:
    reference, url, _ = crm
    ada = reference.create("t1", "contact", {"first_name": "Ada", "emails": ["ada@x.org"]}, "u1")
    acme = reference.create_account("t1", "Acme Engines")
    reference.attach_to_account("t1", ada, acme)
    deal = reference.add_opportunity("t1", acme, "Renewal", "Proposal", close_date="2026-12-20")
    [person] = connector(url).people("ada@x.org")

    card = connector(url).person_card(person)

    assert card.account is not None and [o.id for o in card.opportunities] == [deal]
    assert card.opportunities[0].detail == "Proposal · closes 2026-12-20"
    pages = {
        card.url: "Ada",
        card.account.url: "Acme Engines",
        card.opportunities[0].url: "Renewal",
    }
    for address, name in pages.items():
        page = requests.get(address, timeout=5)
        assert (page.status_code, page.headers["Content-Type"]) == (200, "text/html; charset=utf-8")
        assert f"<h1>{name}</h1>" in page.text
    other_tenant = card.url.replace("/t1/", "/t2/")
    missing = requests.get(other_tenant, timeout=5)
    assert missing.status_code == 404 and "No such record" in missing.text
    with pytest.raises(NotFound):
        connector(url, token="token-2").person_card(person)  # another tenant's CRM
