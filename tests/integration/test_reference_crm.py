"""The reference CRM over a real socket, driven with plain HTTP as any client would:
each rule of the CRM contract it implements, and what the CRM's own users do between
requests (through its Python user interface)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from crmsync.recordlog import Faults
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.seed import DEMO_TENANT, DEMO_TOKEN, seed_demo
from sandbox.crm.server import serve

pytestmark = pytest.mark.integration

TOKEN_A = "token-of-tenant-a"
TOKEN_B = "token-of-tenant-b"
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    """The CRM's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Crm:
    """A reference CRM on a loopback socket: tenant "a" (users u1, u2, u3) and tenant
    "b" (user u1)."""

    reference: ReferenceCrm
    url: str
    clock: Clock
    faults: Faults
    session: requests.Session = field(default_factory=requests.Session)

    def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = "u1",
        token: str | None = TOKEN_A,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        sent: dict[str, str] = {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if user is not None:
            sent["X-Crm-User"] = user
        sent.update(headers or {})
        return self.session.request(method, self.url + path, headers=sent, timeout=10, **kw)

    def create(
        self, kind: str, fields: dict[str, Any], *, key: str, user: str = "u1", **body: Any
    ) -> dict[str, Any]:
        answer = self.call(
            "POST",
            f"/records/{kind}",
            user=user,
            json={"fields": fields, **body},
            headers={"Idempotency-Key": key},
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def patch(
        self, kind: str, record: dict[str, Any], fields: dict[str, Any], **body: Any
    ) -> requests.Response:
        return self.call(
            "PATCH",
            f"/records/{kind}/{record['id']}",
            json={"fields": fields, **body},
            headers={"If-Match": record["version"]},
        )

    def feed(self, kind: str, cursor: str | None = None, **params: Any) -> dict[str, Any]:
        if cursor is not None:
            params["cursor"] = cursor
        user = params.pop("user", "u1")
        answer = self.call("GET", f"/changes/{kind}", user=user, params=params)
        assert answer.status_code == 200, answer.text
        page: dict[str, Any] = answer.json()
        return page


@pytest.fixture
def crm() -> Iterator[Crm]:
    clock = Clock()
    faults = Faults()
    reference = ReferenceCrm(CrmDatabase(":memory:", clock=clock), faults=faults)
    reference.add_tenant("a", TOKEN_A)
    for user in ("u1", "u2", "u3"):
        reference.add_user("a", user, name=user.upper(), email=f"{user}@a.example")
    reference.add_tenant("b", TOKEN_B)
    reference.add_user("b", "u1", name="B one", email="u1@b.example")
    url, stop = serve(reference)
    yield Crm(reference, url, clock, faults)
    stop()


def present(found: dict[str, Any] | None) -> dict[str, Any]:
    assert found is not None
    return found


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


def assert_error(answer: requests.Response, status: int, error: str | None = None) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["reason"]
    if error is not None:
        assert body["error"] == error


# -- idempotent creates and versions (SYN-4) --------------------------------------------------


def test_SYN4_create_with_the_same_idempotency_key_returns_the_first_record(crm: Crm) -> None:
    first = crm.create("todo", {"subject": "Call back"}, key="k-1")

    again = crm.call(
        "POST",
        "/records/todo",
        json={"fields": {"subject": "Call back, second try"}},
        headers={"Idempotency-Key": "k-1"},
    )

    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert [t["subject"] for t in crm.reference.all("a", "todo")] == ["Call back"]
    crm.reference.update("a", "todo", first["id"], {"notes": "edited in the CRM"})
    now = crm.call("POST", "/records/todo", json={"fields": {}}, headers={"Idempotency-Key": "k-1"})
    assert now.status_code == 200
    assert now.json()["fields"]["notes"] == "edited in the CRM"  # as it is now
    crm.reference.delete("a", "todo", first["id"])
    gone = crm.call(
        "POST", "/records/todo", json={"fields": {}}, headers={"Idempotency-Key": "k-1"}
    )
    assert gone.status_code == 200
    assert gone.json() == {
        "id": first["id"],
        "kind": "todo",
        "version": gone.json()["version"],
        "deleted": True,
        "modified": crm.clock.now.isoformat(),
    }


def test_SYN4_concurrent_creates_with_one_key_make_one_record(crm: Crm) -> None:
    answers: list[requests.Response] = []

    def create() -> None:
        answers.append(
            requests.post(
                f"{crm.url}/records/contact",
                json={"fields": {"first_name": "Ada"}},
                headers={
                    "Authorization": f"Bearer {TOKEN_A}",
                    "X-Crm-User": "u1",
                    "Idempotency-Key": "same",
                },
                timeout=10,
            )
        )

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200] * 7 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(crm.reference.all("a", "contact")) == 1


def test_SYN4_update_or_delete_from_a_stale_version_is_refused_with_412(crm: Crm) -> None:
    record = crm.create("todo", {"subject": "Versions"}, key="k-v")
    updated = crm.patch("todo", record, {"notes": "one"})
    assert updated.status_code == 200
    assert updated.json()["version"] != record["version"]
    assert updated.headers["ETag"] == f'"{updated.json()["version"]}"'

    stale = crm.patch("todo", record, {"notes": "two"})
    stale_delete = crm.call(
        "DELETE", f"/records/todo/{record['id']}", headers={"If-Match": record["version"]}
    )

    assert_error(stale, 412, "precondition_failed")
    assert_error(stale_delete, 412, "precondition_failed")
    now = crm.call("GET", f"/records/todo/{record['id']}").json()
    assert now["fields"]["notes"] == "one"
    assert now["version"] == updated.json()["version"]
    unconditional = crm.call(
        "PATCH", f"/records/todo/{record['id']}", json={"fields": {"notes": "three"}}
    )
    assert_error(unconditional, 400, "bad_request")  # If-Match is required on an update
    as_etag = crm.call(
        "PATCH",
        f"/records/todo/{record['id']}",
        json={"fields": {"notes": "three"}},
        headers={"If-Match": updated.headers["ETag"]},
    )
    assert as_etag.status_code == 200
    deleted = crm.call(
        "DELETE", f"/records/todo/{record['id']}", headers={"If-Match": as_etag.json()["version"]}
    )
    assert deleted.status_code == 204
    assert_error(crm.call("GET", f"/records/todo/{record['id']}"), 404, "not_found")


# -- the change feed -------------------------------------------------------------------------


def test_contract_feed_pages_changes_after_the_cursor_in_the_order_of_their_last_change(
    crm: Crm,
) -> None:
    one, two, three = (crm.create("todo", {"subject": s}, key=s) for s in ("one", "two", "3"))
    listing = crm.feed("todo")
    assert ids(listing) == [one["id"], two["id"], three["id"]]
    assert listing["more"] is False
    four = crm.create("todo", {"subject": "four"}, key="four")
    one = crm.patch("todo", one, {"notes": "first"}).json()
    crm.patch("todo", two, {"notes": "second"})
    crm.patch("todo", one, {"notes": "first, again"})

    first = crm.feed("todo", listing["cursor"], limit=2)
    second = crm.feed("todo", first["cursor"], limit=2)
    caught_up = crm.feed("todo", second["cursor"], limit=2)

    assert (ids(first), first["more"]) == ([four["id"], two["id"]], True)
    assert (ids(second), second["more"]) == ([one["id"]], False)
    assert second["items"][0]["fields"]["notes"] == "first, again"  # its latest state, once
    assert (caught_up["items"], caught_up["more"]) == ([], False)
    assert caught_up["cursor"] == second["cursor"]


def test_contract_deleted_records_are_tombstones_in_the_feed(crm: Crm) -> None:
    over_http = crm.create("todo", {"subject": "Delete me"}, key="d-1")
    in_the_crm = crm.create("todo", {"subject": "Delete me too"}, key="d-2")
    kept = crm.create("todo", {"subject": "Keep me"}, key="d-3")
    cursor = crm.feed("todo")["cursor"]
    crm.clock.now += timedelta(minutes=5)

    assert crm.call("DELETE", f"/records/todo/{over_http['id']}").status_code == 204
    crm.reference.delete("a", "todo", in_the_crm["id"])
    page = crm.feed("todo", cursor)

    assert [(i["id"], i.get("deleted")) for i in page["items"]] == [
        (over_http["id"], True),
        (in_the_crm["id"], True),
    ]
    tombstone = page["items"][0]
    assert set(tombstone) == {"id", "kind", "version", "deleted", "modified"}
    assert tombstone["modified"] == crm.clock.now.isoformat()
    assert ids(crm.feed("todo")) == [kept["id"]]  # a listing has no tombstones


def test_AUTH5_record_the_user_no_longer_sees_is_a_tombstone_in_their_feed(crm: Crm) -> None:
    meeting = crm.create(
        "activity",
        {"subject": "Review", "start": "2026-11-03T10:00:00Z", "members": ["u2"]},
        key="m-1",
    )
    assert ids(crm.feed("activity", user="u2")) == [meeting["id"]]
    assert ids(crm.feed("activity", user="u3")) == []
    cursor_u2 = crm.feed("activity", user="u2")["cursor"]
    cursor_u3 = crm.feed("activity", user="u3")["cursor"]

    assert crm.patch("activity", meeting, {"members": []}).status_code == 200

    (gone,) = crm.feed("activity", cursor_u2, user="u2")["items"]
    assert (gone["id"], gone["deleted"]) == (meeting["id"], True)
    assert crm.feed("activity", cursor_u3, user="u3")["items"] == []  # never saw it
    assert_error(crm.call("GET", f"/records/activity/{meeting['id']}", user="u2"), 404)
    todo = crm.create("todo", {"subject": "Mine"}, key="t-1")
    assert_error(crm.call("GET", f"/records/todo/{todo['id']}", user="u2"), 404, "not_found")


def test_RUN4_expired_or_unknown_cursor_is_answered_410(crm: Crm) -> None:
    crm.create("todo", {"subject": "Before"}, key="b-1")
    cursor = crm.feed("todo")["cursor"]
    assert crm.feed("todo", cursor)["items"] == []

    crm.reference.expire_cursors("a")

    assert_error(crm.call("GET", "/changes/todo", params={"cursor": cursor}), 410, "cursor_expired")
    for garbage in ("not-a-cursor", "99999"):
        answer = crm.call("GET", "/changes/todo", params={"cursor": garbage})
        assert_error(answer, 410, "cursor_expired")
    fresh = crm.feed("todo")
    assert len(fresh["items"]) == 1
    assert crm.feed("todo", fresh["cursor"])["items"] == []


# -- limits, capabilities and bad input ---------------------------------------------------------


def test_SYN3_field_longer_than_its_declared_limit_is_refused_with_422(crm: Crm) -> None:
    crm.reference.set_field_limit("a", "todo", "subject", 10)
    assert crm.call("GET", "/schema").json()["limits"]["todo"] == {"subject": 10}

    too_long = crm.call(
        "POST",
        "/records/todo",
        json={"fields": {"subject": "x" * 11}},
        headers={"Idempotency-Key": "long"},
    )

    assert_error(too_long, 422, "field_too_long")
    assert crm.reference.all("a", "todo") == []
    fits = crm.create("todo", {"subject": "x" * 10}, key="fits")
    assert_error(crm.patch("todo", fits, {"subject": "y" * 11}), 422, "field_too_long")
    assert crm.call("GET", f"/records/todo/{fits['id']}").json()["version"] == fits["version"]


# -- custom fields (SYN-1) -------------------------------------------------------------------


def declare_deal_fields(crm: Crm) -> None:
    reference = crm.reference
    reference.declare_custom_field("a", "contact", "industry", "string", max_length=12)
    reference.declare_custom_field("a", "contact", "seats", "number")
    reference.declare_custom_field("a", "contact", "vip", "boolean")
    reference.declare_custom_field("a", "contact", "renewal", "date")
    reference.declare_custom_field("a", "contact", "stage", "enum", values=("lead", "client"))


def test_SYN1_schema_declares_each_kinds_custom_fields(crm: Crm) -> None:
    declare_deal_fields(crm)
    crm.reference.declare_custom_field("a", "todo", "ticket")

    declared = crm.call("GET", "/schema").json()["custom_fields"]

    assert declared["contact"] == [
        {"name": "industry", "type": "string", "max_length": 12},
        {"name": "seats", "type": "number"},
        {"name": "vip", "type": "boolean"},
        {"name": "renewal", "type": "date"},
        {"name": "stage", "type": "enum", "values": ["lead", "client"]},
    ]
    assert declared["todo"] == [{"name": "ticket", "type": "string"}]
    assert declared["activity"] == []
    other = crm.call("GET", "/schema", token=TOKEN_B).json()["custom_fields"]
    assert other == {"contact": [], "activity": [], "todo": []}


def test_SYN1_declared_custom_values_round_trip_and_every_declared_one_is_carried(
    crm: Crm,
) -> None:
    declare_deal_fields(crm)
    values = {"industry": "Shipping", "seats": 12, "vip": True, "renewal": "2027-03-01"}

    created = crm.create("contact", {"first_name": "Ada", "custom": values}, key="k-1")

    carried = {**values, "stage": None}
    assert created["fields"]["custom"] == carried
    got = crm.call("GET", f"/records/contact/{created['id']}").json()
    assert got["fields"]["custom"] == carried
    assert present(crm.reference.get("a", "contact", created["id"]))["custom"] == values


def test_SYN1_update_changes_only_the_custom_fields_given_and_null_clears_one(crm: Crm) -> None:
    declare_deal_fields(crm)
    created = crm.create(
        "contact", {"first_name": "Ada", "custom": {"industry": "Shipping", "seats": 3}}, key="k"
    )
    cursor = crm.feed("contact")["cursor"]

    answer = crm.patch("contact", created, {"custom": {"seats": 4.5, "industry": None}})

    assert answer.status_code == 200, answer.text
    custom = answer.json()["fields"]["custom"]
    assert (custom["industry"], custom["seats"], custom["stage"]) == (None, 4.5, None)
    [changed] = crm.feed("contact", cursor)["items"]
    assert changed["fields"]["custom"]["seats"] == 4.5
    assert answer.json()["fields"]["first_name"] == "Ada"


@pytest.mark.parametrize(
    ("custom", "error", "named"),
    [
        ({"nickname": "Ada"}, "unknown_custom_field", "contact.custom.nickname"),
        ({"seats": "twelve"}, "invalid_field", "contact.custom.seats"),
        ({"vip": "yes"}, "invalid_field", "contact.custom.vip"),
        ({"renewal": "01.03.2027"}, "invalid_field", "contact.custom.renewal"),
        ({"stage": "partner"}, "invalid_field", "contact.custom.stage"),
        ({"industry": "Heavy engineering"}, "invalid_field", "contact.custom.industry"),
    ],
)
def test_SYN1_undeclared_custom_field_or_wrong_type_is_refused_with_422_naming_it(
    crm: Crm, custom: dict[str, Any], error: str, named: str
) -> None:
    declare_deal_fields(crm)
    created = crm.create("contact", {"first_name": "Ada"}, key="k-0")

    refused_create = crm.call(
        "POST",
        "/records/contact",
        json={"fields": {"first_name": "Grace", "custom": custom}},
        headers={"Idempotency-Key": "k-1"},
    )
    refused_update = crm.patch("contact", created, {"custom": custom})

    for answer in (refused_create, refused_update):
        assert_error(answer, 422, error)
        assert answer.json()["reason"].startswith(named)
    assert [c["first_name"] for c in crm.reference.all("a", "contact")] == ["Ada"]
    assert (
        crm.call("GET", f"/records/contact/{created['id']}").json()["version"] == created["version"]
    )


def test_SYN1_custom_values_that_are_no_object_are_a_bad_request(crm: Crm) -> None:
    answer = crm.call(
        "POST",
        "/records/todo",
        json={"fields": {"subject": "x", "custom": ["ticket"]}},
        headers={"Idempotency-Key": "k-1"},
    )

    assert_error(answer, 400, "bad_request")
    assert "custom" in answer.json()["reason"]


def test_SYN1_leads_carry_the_contacts_custom_fields(crm: Crm) -> None:
    declare_deal_fields(crm)

    answer = crm.call(
        "POST",
        "/leads",
        json={"fields": {"first_name": "Grace", "custom": {"stage": "lead"}}},
        headers={"Idempotency-Key": "lead-1"},
    )

    assert answer.status_code == 201, answer.text
    assert answer.json()["fields"]["custom"]["stage"] == "lead"


def test_CAL9_TSK3_series_the_crm_cannot_hold_are_refused(crm: Crm) -> None:
    crm.reference.set_capabilities("a", infinite_series=False, recurring_todos=False)
    crm.reference.limit_series("a", 1)
    capabilities = crm.call("GET", "/schema").json()["capabilities"]
    assert capabilities == {
        "infinite_series": False,
        "recurring_todos": False,
        "max_recurrence_years": 1,
        "leads": True,
        "attachment_bytes": 5 * 1024 * 1024,
    }
    start = "2026-11-03T10:00:00Z"

    def create(kind: str, fields: dict[str, Any]) -> requests.Response:
        return crm.call(
            "POST",
            f"/records/{kind}",
            json={"fields": fields},
            headers={"Idempotency-Key": json.dumps(fields)},
        )

    endless = create("activity", {"start": start, "recurrence": "RRULE:FREQ=WEEKLY"})
    too_long = create("activity", {"start": start, "recurrence": "RRULE:FREQ=WEEKLY;COUNT=60"})
    fits = create("activity", {"start": start, "recurrence": "RRULE:FREQ=WEEKLY;COUNT=10"})
    repeating_todo = create("todo", {"subject": "Weekly", "recurrence": "RRULE:FREQ=WEEKLY"})

    assert_error(endless, 422, "invalid_field")
    assert_error(too_long, 422, "invalid_field")
    assert fits.status_code == 201
    assert_error(repeating_todo, 422, "invalid_field")


BAD_INPUT = [
    ("malformed JSON", "/records/todo", b'{"fields": {"subject": ', 400, "bad_request"),
    ("wrong type", "/records/todo", b'{"fields": {"subject": 42}}', 400, "bad_request"),
    ("unknown field", "/records/todo", b'{"fields": {"subjekt": "x"}}', 400, "bad_request"),
    ("unknown property", "/records/todo", b'{"fields": {}, "extra": 1}', 400, "bad_request"),
    ("invalid UTF-8", "/records/todo", b'{"fields": {"subject": "\xff\xfe"}}', 400, None),
    ("lone surrogate", "/records/todo", b'{"fields": {"subject": "\\ud800"}}', 400, None),
    ("not finite", "/records/todo", b'{"fields": {"subject": NaN}}', 400, "bad_request"),
    ("not an object", "/records/todo", b"[1, 2, 3]", 400, "bad_request"),
    ("unknown kind", "/records/widget", b'{"fields": {"subject": "x"}}', 400, "bad_request"),
    ("group of a to-do", "/records/todo", b'{"fields": {}, "group": "g1"}', 400, "bad_request"),
    ("unknown status", "/records/todo", b'{"fields": {"status": "bogus"}}', 422, "invalid_field"),
    ("no start", "/records/activity", b'{"fields": {"subject": "x"}}', 422, "invalid_field"),
    ("bad date", "/records/todo", b'{"fields": {"due": "soon"}}', 422, "invalid_field"),
    (
        "huge body",
        "/records/todo",
        json.dumps({"fields": {"notes": "n" * (1024 * 1024)}}).encode(),
        413,
        "too_large",
    ),
]


@pytest.mark.parametrize(
    ("path", "data", "status", "error"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_contract_bad_input_is_refused_with_a_reason_and_writes_nothing(
    crm: Crm, path: str, data: bytes, status: int, error: str | None
) -> None:
    answer = crm.call(
        "POST",
        path,
        data=data,
        headers={"Idempotency-Key": "bad", "Content-Type": "application/json"},
    )

    assert_error(answer, status, error)
    assert crm.reference.all("a", "todo") == crm.reference.all("a", "activity") == []
    assert crm.feed("todo")["cursor"] == "0"  # not one change


def test_contract_bad_update_is_refused_and_changes_nothing(crm: Crm) -> None:
    record = crm.create("todo", {"subject": "Stable"}, key="s-1")
    path = f"/records/todo/{record['id']}"
    cases = [
        ({"fields": {}}, 400),  # an update changes at least one field
        ({"fields": {"subject": None}}, 400),
        ({"fields": {"colour": "red"}}, 400),
        ({"fields": {"due": "2026-13-45"}}, 422),
    ]
    for body, status in cases:
        answer = crm.call("PATCH", path, json=body, headers={"If-Match": record["version"]})
        assert_error(answer, status)

    assert crm.call("GET", path).json() == record


def test_contract_unknown_paths_and_methods_answer_with_a_json_reason(crm: Crm) -> None:
    assert_error(crm.call("GET", "/nowhere"), 404, "not_found")
    wrong_method = crm.call("PUT", "/records/todo")
    assert_error(wrong_method, 405, "method_not_allowed")
    assert set(wrong_method.headers["Allow"].split(", ")) >= {"GET", "POST"}


# -- tenants, tokens and acting users (AUTH-5) ----------------------------------------------


def test_contract_a_token_reads_and_changes_only_its_own_tenant(crm: Crm) -> None:
    todo = crm.create("todo", {"subject": "Tenant A"}, key="a-1")
    contact = crm.create("contact", {"first_name": "Ada", "emails": ["ada@a.example"]}, key="a-2")

    def as_b(method: str, path: str, **kw: Any) -> requests.Response:
        return crm.call(method, path, token=TOKEN_B, **kw)

    assert_error(as_b("GET", f"/records/todo/{todo['id']}"), 404)
    assert_error(
        as_b(
            "PATCH",
            f"/records/todo/{todo['id']}",
            json={"fields": {"notes": "x"}},
            headers={"If-Match": todo["version"]},
        ),
        404,
    )
    assert_error(as_b("DELETE", f"/records/todo/{todo['id']}"), 404)
    assert_error(as_b("PUT", f"/groups/default/members/{contact['id']}"), 404)
    assert as_b("GET", "/changes/todo").json()["items"] == []
    assert as_b("GET", "/records/contact", params={"email": "ada@a.example"}).json() == {
        "items": []
    }
    assert as_b("GET", "/people", params={"email": "ada@a.example"}).json() == {"items": []}
    assert [u["id"] for u in as_b("GET", "/users").json()["items"]] == ["u1"]
    b_created = as_b(
        "POST",
        "/records/todo",
        json={"fields": {"subject": "B"}},
        headers={"Idempotency-Key": "a-1"},
    )
    assert b_created.status_code == 201  # B's keys are B's own, and so are its ids
    b_id = b_created.json()["id"]
    assert as_b("GET", f"/records/todo/{b_id}").json()["fields"]["subject"] == "B"
    assert crm.call("GET", f"/records/todo/{b_id}").json()["fields"]["subject"] == "Tenant A"
    now = crm.call("GET", f"/records/todo/{todo['id']}").json()
    assert now["version"] == todo["version"]


def test_contract_missing_unknown_or_expired_token_is_401_and_writes_nothing(crm: Crm) -> None:
    crm.reference.add_token("a", "short-lived", crm.clock.now + timedelta(hours=1))
    assert crm.call("GET", "/schema", token="short-lived").status_code == 200
    crm.clock.now += timedelta(hours=2)
    cases = {
        "no token": ({}, "unauthorized"),
        "unknown token": ({"Authorization": "Bearer nobody-knows-this"}, "unauthorized"),
        "not a bearer token": ({"Authorization": f"Basic {TOKEN_A}"}, "unauthorized"),
        "expired token": ({"Authorization": "Bearer short-lived"}, "token_expired"),
    }

    for headers, error in cases.values():
        for method, path in (("GET", "/schema"), ("GET", "/users"), ("POST", "/records/todo")):
            answer = crm.call(
                method,
                path,
                token=None,
                headers={**headers, "Idempotency-Key": "k"},
                json={"fields": {"subject": "sneaky"}},
            )
            assert_error(answer, 401, error)
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    assert crm.reference.all("a", "todo") == []


def test_AUTH5_acting_user_is_required_and_must_be_an_active_user_of_the_tenant(
    crm: Crm,
) -> None:
    crm.reference.add_user("a", "gone", name="Left the company", active=False)

    assert_error(crm.call("GET", "/changes/todo", user=None), 400, "bad_request")
    assert_error(crm.call("GET", "/changes/todo", user="stranger"), 403, "forbidden")
    assert_error(crm.call("GET", "/changes/todo", user="gone"), 403, "forbidden")
    assert_error(crm.call("GET", "/accounts", user=None, params={"name": "x"}), 400)
    assert crm.call("GET", "/schema", user=None).status_code == 200
    users = {u["id"]: u["active"] for u in crm.call("GET", "/users", user=None).json()["items"]}
    assert users == {"u1": True, "u2": True, "u3": True, "gone": False}


# -- contact sync groups, accounts and shared addresses (CON-1, CON-4..7) -----------------------


def test_CON4_CON6_group_membership_changes_are_changes_of_the_contact(crm: Crm) -> None:
    contact = crm.create("contact", {"first_name": "Grace"}, key="g-1")
    joined = crm.create("contact", {"first_name": "Ada"}, key="g-2", group="default")
    assert (contact["in_scope"], joined["in_scope"]) == (False, True)
    cursor = crm.feed("contact")["cursor"]
    path = f"/groups/default/members/{contact['id']}"

    added = crm.call("PUT", path)
    again = crm.call("PUT", path)

    assert added.status_code == again.status_code == 200
    assert added.json()["in_scope"] is True
    assert added.json()["version"] != contact["version"]
    (changed,) = crm.feed("contact", cursor)["items"]
    assert (changed["id"], changed["in_scope"]) == (contact["id"], True)
    assert crm.reference.group("a", "u1") == sorted([contact["id"], joined["id"]])
    members = crm.call("GET", "/groups/u1/members").json()["items"]
    assert members == crm.reference.group("a", "u1")
    other_view = crm.feed("contact", group="g-other")  # in_scope is about the given group
    assert [i["in_scope"] for i in other_view["items"]] == [False, False]
    cursor = crm.feed("contact")["cursor"]

    removed = crm.call("DELETE", path)

    assert removed.status_code == 200 and removed.json()["in_scope"] is False
    (changed,) = crm.feed("contact", cursor)["items"]
    assert (changed["id"], changed["in_scope"]) == (contact["id"], False)
    assert crm.call("DELETE", path).status_code == 200  # idempotent
    cursor = crm.feed("contact")["cursor"]
    crm.reference.add_to_group("a", "u1", contact["id"])  # the CRM's users do it too
    (changed,) = crm.feed("contact", cursor)["items"]
    assert (changed["id"], changed["in_scope"]) == (contact["id"], True)
    assert_error(crm.call("PUT", "/groups/default/members/c-404"), 404, "not_found")


def test_CON5_create_with_an_account_finds_it_by_name_or_creates_it(crm: Crm) -> None:
    oldest = crm.reference.create_account("a", "Acme")
    crm.reference.create_account("a", "Acme")

    found = crm.create("contact", {"first_name": "Ada"}, key="c-1", account={"name": "Acme"})
    made = crm.create(
        "contact", {"first_name": "Bob"}, key="c-2", account={"name": "Newco", "type": "Partner"}
    )

    assert found["account_id"] == oldest
    named = crm.call("GET", "/accounts", params={"name": "Acme"}).json()["items"]
    assert [a["id"] for a in named] == [oldest, "acc-2"]  # oldest first
    (newco,) = crm.call("GET", "/accounts", params={"name": "Newco"}).json()["items"]
    assert newco["id"] == made["account_id"]
    assert (newco["type"], newco["status"], newco["owner"]) == ("Partner", "Active", "everyone")
    first = crm.call(
        "POST", "/accounts", json={"name": "Initech"}, headers={"Idempotency-Key": "i"}
    )
    again = crm.call(
        "POST", "/accounts", json={"name": "Initech"}, headers={"Idempotency-Key": "i"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert [a["name"] for a in crm.reference.accounts("a")].count("Initech") == 1


def test_CON7_address_written_to_the_account_changes_every_contact_sharing_it(crm: Crm) -> None:
    account = crm.reference.create_account("a", "Acme", {"street": "Old Road 1", "city": "Berlin"})
    x, y, z = (crm.create("contact", {"first_name": name}, key=name) for name in ("X", "Y", "Z"))
    crm.reference.attach_to_account("a", x["id"], account, share_address=True)
    crm.reference.attach_to_account("a", y["id"], account, share_address=True)
    crm.reference.attach_to_account("a", z["id"], account)
    x = crm.call("GET", f"/records/contact/{x['id']}").json()
    assert x["fields"]["address"]["street"] == "Old Road 1"
    cursor = crm.feed("contact")["cursor"]
    moved = {"street": "New Road 2", "city": "Berlin"}

    answer = crm.patch("contact", x, {"address": moved}, shared_address=True)

    assert answer.status_code == 200
    assert present(crm.reference.account("a", account))["address"]["street"] == "New Road 2"
    changed = crm.feed("contact", cursor)["items"]
    assert sorted(i["id"] for i in changed) == sorted([x["id"], y["id"]])  # not z
    assert {i["fields"]["address"]["street"] for i in changed} == {"New Road 2"}
    y = crm.call("GET", f"/records/contact/{y['id']}").json()

    own = crm.patch("contact", y, {"address": {"street": "Own Way 3"}})  # not shared_address

    assert own.json()["fields"]["address"]["street"] == "Own Way 3"  # y stops sharing
    assert present(crm.reference.account("a", account))["address"]["street"] == "New Road 2"
    assert present(crm.reference.get("a", "contact", x["id"]))["address"]["street"] == "New Road 2"


# -- injected failures and data the CRM holds in a bad form (SYN-5) ------------------------------


def test_SYN5_injected_failures_answer_503_or_422_and_write_nothing(crm: Crm) -> None:
    contact = crm.create("contact", {"first_name": "Ada"}, key="f-0")
    crm.faults.fail("crm", "create", "transient")
    create = crm.call(
        "POST", "/records/todo", json={"fields": {"subject": "x"}}, headers={"Idempotency-Key": "f"}
    )
    assert_error(create, 503, "unavailable")
    assert create.headers["Retry-After"] == "0"
    assert crm.reference.all("a", "todo") == []
    todo = crm.create("todo", {"subject": "x"}, key="f")  # the retry with the same key
    cursor = crm.feed("contact")["cursor"]
    crm.faults.fail("crm", "update", "permanent")
    crm.faults.fail("crm", "delete", "transient")
    crm.faults.fail("crm", "scope", "transient")

    update = crm.patch("todo", todo, {"subject": "y"})
    delete = crm.call("DELETE", f"/records/todo/{todo['id']}")
    scope = crm.call("PUT", f"/groups/default/members/{contact['id']}")

    assert_error(update, 422, "injected")
    assert_error(delete, 503, "unavailable")
    assert_error(scope, 503, "unavailable")
    assert crm.call("GET", f"/records/todo/{todo['id']}").json() == todo
    assert crm.reference.group("a", "u1") == []
    assert crm.feed("contact", cursor)["items"] == []


def test_SYN5_record_the_crm_holds_in_a_bad_form_is_served_as_stored(crm: Crm) -> None:
    good = crm.reference.create("a", "activity", {"subject": "Fine", "start": "2026-11-03"}, "u1")
    bad = crm.reference.create(
        "a", "activity", {"subject": "Broken", "start": "2026-11-03", "timezone": "Mars/Base"}, "u1"
    )

    items = {i["id"]: i for i in crm.feed("activity")["items"]}

    assert items[good]["fields"]["all_day"] is True  # read through crmsync's model
    assert items[bad]["fields"] == {
        "subject": "Broken",
        "start": "2026-11-03",
        "timezone": "Mars/Base",
        "leader": "u1",
    }
    assert present(crm.reference.get("a", "activity", bad))["timezone"] == "Mars/Base"
    patch = crm.patch("activity", items[bad], {"subject": "Still broken"})
    assert_error(patch, 422, "invalid_field")
    fixed = crm.patch("activity", items[bad], {"timezone": "Europe/Berlin"})
    assert fixed.json()["fields"]["timezone"] == "Europe/Berlin"


# -- finding people, leads and e-mail history (CON-3, CON-8, EML-2, EML-4) -------------------------


def test_CON3_contacts_are_found_by_any_of_their_addresses(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["Ada@Acme.example"]}, key="1")
    crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]}, key="2")

    found = crm.call(
        "GET", "/records/contact", params={"email": ["nobody@x.example", "ADA@acme.example"]}
    )

    assert ids(found.json()) == [ada["id"]]
    assert found.json()["items"][0]["fields"]["emails"] == ["ada@acme.example"]
    assert_error(crm.call("GET", "/records/contact"), 400, "bad_request")


def test_CON8_EML2_leads_and_history_are_recorded_once_per_key(crm: Crm) -> None:
    def post(path: str, body: dict[str, Any], key: str) -> requests.Response:
        return crm.call("POST", path, json=body, headers={"Idempotency-Key": key})

    lead_body = {"fields": {"first_name": "Lin", "emails": ["lin@x.example"]}, "ref": "link-1"}
    lead = post("/leads", lead_body, "lead-1")
    again = post("/leads", lead_body, "lead-1")
    assert (lead.status_code, again.status_code) == (201, 200)
    assert again.json() == lead.json()
    assert lead.json()["ref"] == "link-1"
    assert [x["id"] for x in crm.reference.leads("a")] == [lead.json()["id"]]
    contact = crm.create("contact", {"first_name": "Lin", "emails": ["lin@x.example"]}, key="c")
    attachment = {
        "filename": "a.bin",
        "content_type": "application/octet-stream",
        "content_base64": base64.b64encode(b"\x00\x01binary").decode(),
    }
    mail: dict[str, Any] = {
        "record": {"kind": "lead", "id": lead.json()["id"]},
        "subject": "Hello",
        "body": "Hi Lin",
        "date": "2026-11-02T08:00:00Z",
        "participants": [{"role": "to", "email": "lin@x.example"}],
        "attachments": [attachment],
    }

    item = post("/history", mail, "mail-1")
    repeat = post("/history", mail, "mail-1")

    assert (item.status_code, repeat.status_code) == (201, 200)
    assert item.json() == repeat.json()
    assert item.json()["attachments"] == 1
    (stored,) = crm.reference.history("a", "lead", lead.json()["id"])
    assert stored["attachments"][0].content == b"\x00\x01binary"
    people = crm.call("GET", "/people", params={"email": "LIN@x.example"}).json()["items"]
    assert [(p["kind"], p["id"], p["history_count"]) for p in people] == [
        ("lead", lead.json()["id"], 1),
        ("contact", contact["id"], 0),
    ]
    bad = {**mail, "attachments": [{**attachment, "content_base64": "%%%"}]}
    assert_error(post("/history", bad, "mail-2"), 400, "bad_request")
    missing = {**mail, "record": {"kind": "contact", "id": "c-404"}}
    assert_error(post("/history", missing, "mail-3"), 404, "not_found")
    crm.reference.set_capabilities("a", leads=False)
    assert_error(post("/leads", lead_body, "lead-2"), 403, "forbidden")


MiB = 1024 * 1024


def history_item(record: dict[str, Any], kind: str = "contact", **given: Any) -> dict[str, Any]:
    """A NewHistoryItem on `record`; `given` replaces or adds its parts."""
    return {
        "record": {"kind": kind, "id": record["id"]},
        "subject": "Offer",
        "body": "Dear Ada",
        "date": "2026-11-02T08:00:00Z",
        "participants": [{"role": "to", "email": "ada@acme.example", "name": "Ada"}],
        **given,
    }


def stored(name: str, content: bytes) -> dict[str, str]:
    encoded = base64.b64encode(content).decode()
    return {"filename": name, "content_type": "application/pdf", "content_base64": encoded}


def record_history(crm: Crm, body: dict[str, Any], key: str) -> requests.Response:
    return crm.call("POST", "/history", json=body, headers={"Idempotency-Key": key})


def test_EML2_schema_declares_what_a_history_item_keeps_per_tenant(crm: Crm) -> None:
    schema = crm.call("GET", "/schema").json()
    assert schema["limits"]["history"] == {"subject": 255, "body": 65536}
    assert schema["capabilities"]["attachment_bytes"] == 5 * MiB

    crm.reference.set_history_limits("a", subject=20, attachment_bytes=0)

    changed = crm.call("GET", "/schema").json()
    assert changed["limits"]["history"] == {"subject": 20, "body": 65536}
    assert changed["capabilities"]["attachment_bytes"] == 0
    other = crm.call("GET", "/schema", token=TOKEN_B).json()
    assert other["limits"]["history"] == {"subject": 255, "body": 65536}
    with pytest.raises(ValueError):
        crm.reference.set_history_limits("a", body=0)


def test_EML2_a_history_item_over_the_declared_limits_is_413_and_not_recorded(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]}, key="c")
    crm.reference.set_history_limits("a", subject=10, body=20, attachment_bytes=4)
    over = {
        "subject": history_item(ada, subject="s" * 11),
        "body": history_item(ada, body="Confidential offer: " + "b"),
        "attachment": history_item(ada, attachments=[stored("a.pdf", b"12345")]),
    }

    for what, body in over.items():
        answer = record_history(crm, body, f"over-{what}")
        assert_error(answer, 413, "too_large")
        assert "Confidential" not in answer.text  # the reason quotes no content

    assert crm.reference.history("a", "contact", ada["id"]) == []
    fits = history_item(
        ada, subject="s" * 10, body="b" * 20, attachments=[stored("a.pdf", b"1234")]
    )
    assert record_history(crm, fits, "fits").status_code == 201
    assert [i["subject"] for i in crm.reference.history("a", "contact", ada["id"])] == ["s" * 10]


def test_EML2_an_attachment_up_to_the_declared_size_is_stored_past_the_plain_body_limit(
    crm: Crm,
) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]}, key="c")
    largest = bytes(range(256)) * (5 * MiB // 256)

    kept = record_history(crm, history_item(ada, attachments=[stored("deck.pdf", largest)]), "k1")
    larger = history_item(ada, attachments=[stored("deck.pdf", largest + b"!")])

    assert kept.status_code == 201, kept.text
    assert kept.json()["attachments"] == 1
    assert_error(record_history(crm, larger, "k2"), 413, "too_large")
    (item,) = crm.reference.history("a", "contact", ada["id"])
    assert item["attachments"][0].content == largest


def test_EML2_links_are_kept_beside_attachments_and_counted(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]}, key="c")
    link = {
        "filename": "video.mp4",
        "content_type": "video/mp4",
        "size": 80 * MiB,
        "url": "https://store.example/v/1?sig=abc",
    }
    body = history_item(ada, attachments=[stored("a.pdf", b"%PDF")], links=[link])

    first = record_history(crm, body, "mail-1")
    again = record_history(crm, body, "mail-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert (first.json()["attachments"], first.json()["links"]) == (1, 1)
    assert again.json() == first.json()
    (item,) = crm.reference.history("a", "contact", ada["id"])
    assert [(x.filename, x.content_type, x.size, x.url) for x in item["links"]] == [
        ("video.mp4", "video/mp4", 80 * MiB, "https://store.example/v/1?sig=abc")
    ]
    for n, bad in enumerate(
        (
            {**link, "url": "ftp://store.example/v/1"},
            {**link, "size": -1},
            {**link, "size": 1.5},
            {**link, "size": True},
            {**link, "signature": "x"},
            {k: v for k, v in link.items() if k != "url"},
        )
    ):
        answer = record_history(crm, history_item(ada, links=[bad]), f"bad-{n}")
        assert_error(answer, 400, "bad_request")
    assert len(crm.reference.history("a", "contact", ada["id"])) == 1


def test_EML2_history_on_a_deleted_unknown_or_mistyped_record_is_404(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]}, key="c")
    lin = crm.call(
        "POST",
        "/leads",
        json={"fields": {"first_name": "Lin", "emails": ["lin@x.example"]}},
        headers={"Idempotency-Key": "lead"},
    ).json()
    crm.reference.delete("a", "contact", ada["id"])

    for key, body in {
        "deleted": history_item(ada),
        "unknown": history_item({"id": "l-999"}, "lead"),
        "lead as contact": history_item(lin, "contact"),
    }.items():
        assert_error(record_history(crm, body, key), 404, "not_found")

    assert crm.reference.history("a", "contact", ada["id"]) == []
    assert record_history(crm, history_item(lin, "lead"), "lead").status_code == 201


def test_EML4_a_recorded_key_answers_its_item_even_after_the_limits_shrink(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@acme.example"]}, key="c")
    first = record_history(crm, history_item(ada, body="b" * 30), "mail-1")
    crm.reference.set_history_limits("a", body=10)

    again = record_history(crm, history_item(ada, body="b" * 30), "mail-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert len(crm.reference.history("a", "contact", ada["id"])) == 1


def test_EML2_people_are_found_in_any_case_and_ordered_by_history(crm: Crm) -> None:
    older = crm.create("contact", {"first_name": "Ada", "emails": ["Ada@Acme.example"]}, key="1")
    newer = crm.create("contact", {"last_name": "Byron", "emails": ["ada@acme.example"]}, key="2")
    crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]}, key="3")

    def found() -> list[tuple[str, str, int]]:
        answer = crm.call("GET", "/people", params={"email": "ADA@acme.EXAMPLE"})
        assert answer.status_code == 200, answer.text
        return [(p["id"], p["name"], p["history_count"]) for p in answer.json()["items"]]

    assert found() == [(older["id"], "Ada", 0), (newer["id"], "Byron", 0)]
    assert record_history(crm, history_item(newer), "mail-1").status_code == 201
    assert found() == [(newer["id"], "Byron", 1), (older["id"], "Ada", 0)]


def search(crm: Crm, text: str, user: str = "u1", **params: Any) -> list[tuple[str, str, str, int]]:
    """GET /people?q= as (kind, id, name, history count) of each person, in its order."""
    answer = crm.call("GET", "/people", user=user, params={"q": text, **params})
    assert answer.status_code == 200, answer.text
    return [(p["kind"], p["id"], p["name"], p["history_count"]) for p in answer.json()["items"]]


def test_EML5_people_are_found_by_a_part_of_their_name_or_address_in_any_case(crm: Crm) -> None:
    ada = crm.create(
        "contact",
        {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@engines.example"]},
        key="1",
    )
    byron = crm.call(
        "POST",
        "/leads",
        json={"fields": {"last_name": "Byron", "emails": ["lord@Poets.example"]}},
        headers={"Idempotency-Key": "lead"},
    ).json()
    engines = crm.create(
        "contact", {"company": "Analytical Engines", "emails": ["sales@x.example"]}, key="2"
    )
    crm.create("contact", {"first_name": "Bob", "emails": ["bob@acme.example"]}, key="3")

    assert search(crm, "LOVE") == [("contact", ada["id"], "Ada Lovelace", 0)]
    assert search(crm, "poets.EX") == [("lead", byron["id"], "Byron", 0)]
    assert search(crm, "engines") == [  # an address, a company's name; of equals, by name
        ("contact", ada["id"], "Ada Lovelace", 0),
        ("contact", engines["id"], "Analytical Engines", 0),
    ]
    assert search(crm, "a l") == [("contact", ada["id"], "Ada Lovelace", 0)]  # the whole name
    assert search(crm, "zz") == []
    (found,) = crm.call("GET", "/people", params={"q": "byr"}).json()["items"]
    assert found == {
        "kind": "lead",
        "id": byron["id"],
        "name": "Byron",
        "emails": ["lord@poets.example"],
        "history_count": 0,
    }


def test_EML5_a_search_lists_most_history_first_then_by_name_and_at_most_limit(crm: Crm) -> None:
    made = {
        name: crm.create(
            "contact", {"first_name": name, "emails": [f"{name.lower()}@acme.example"]}, key=name
        )["id"]
        for name in ("Cleo", "abel", "Bea", "Dan")
    }
    assert record_history(crm, history_item({"id": made["Dan"]}), "mail-1").status_code == 201

    def found(**params: Any) -> list[str]:
        return [name for _, _, name, _ in search(crm, "ACME", **params)]

    assert found() == ["Dan", "abel", "Bea", "Cleo"]  # of equals, by name whatever its case
    assert found(limit=50) == found()
    assert found(limit=2) == ["Dan", "abel"]


def test_EML5_a_search_lists_20_people_unless_told_otherwise_and_so_does_an_address(
    crm: Crm,
) -> None:
    for n in range(21):
        crm.reference.create(
            "a", "contact", {"last_name": f"Clerk {n:02}", "emails": ["desk@acme.example"]}, "u1"
        )

    assert len(search(crm, "clerk")) == 20
    assert search(crm, "clerk")[-1][2] == "Clerk 19"
    by_address = crm.call("GET", "/people", params={"email": "desk@acme.example"}).json()
    assert [p["name"] for p in by_address["items"]] == [f"Clerk {n:02}" for n in range(20)]
    limited = crm.call("GET", "/people", params={"email": "desk@acme.example", "limit": 3})
    assert [p["name"] for p in limited.json()["items"]] == ["Clerk 00", "Clerk 01", "Clerk 02"]


def test_EML5_a_search_finds_no_deleted_record_and_nothing_of_another_tenant(crm: Crm) -> None:
    ada = crm.create("contact", {"first_name": "Ada", "emails": ["ada@engines.example"]}, key="1")
    gone = crm.create(
        "contact", {"first_name": "Adam", "emails": ["adam@engines.example"]}, key="2"
    )
    crm.reference.delete("a", "contact", gone["id"])

    assert search(crm, "ada") == [("contact", ada["id"], "Ada", 0)]
    assert search(crm, "ada", user="u2") == search(crm, "ada")  # contacts: every user's
    elsewhere = crm.call("GET", "/people", token=TOKEN_B, params={"q": "ada"})
    assert elsewhere.status_code == 200
    assert elsewhere.json() == {"items": []}


def test_EML5_people_takes_exactly_one_of_email_and_q_and_a_limit_from_1_to_50(crm: Crm) -> None:
    crm.create("contact", {"first_name": "Ada", "emails": ["ada@engines.example"]}, key="1")

    for params in (
        {},
        {"email": "ada@engines.example", "q": "ada"},
        {"email": "ada@engines.example", "q": ""},
        {"q": "a"},
        {"q": "a" * 101},
        {"q": "ada", "limit": "0"},
        {"q": "ada", "limit": "51"},
        {"q": "ada", "limit": "two"},
        {"email": "ada@engines.example", "limit": "-1"},
    ):
        answer = crm.call("GET", "/people", params=params)
        assert_error(answer, 400, "bad_request")
    assert "exactly one of email" in crm.call("GET", "/people").json()["reason"]
    assert search(crm, "a" * 100) == []
    assert [p[2] for p in search(crm, "ad", limit="1")] == ["Ada"]


# -- storage, seeding and running it ----------------------------------------------------------


def test_contract_records_are_kept_in_the_database_file(tmp_path: Path) -> None:
    path = str(tmp_path / "crm.sqlite")
    first = ReferenceCrm(CrmDatabase(path))
    first.add_tenant("t", "tok")
    first.add_user("t", "u1")
    record_id = first.create("t", "todo", {"subject": "Kept"}, "u1")
    first.database.close()

    again = ReferenceCrm(CrmDatabase(path))
    url, stop = serve(again)
    try:
        answer = requests.get(
            f"{url}/records/todo/{record_id}",
            headers={"Authorization": "Bearer tok", "X-Crm-User": "u1"},
            timeout=10,
        )
    finally:
        stop()

    assert answer.json()["fields"]["subject"] == "Kept"


def test_contract_seed_data_loads_and_is_served(crm: Crm) -> None:
    assert seed_demo(crm.reference) == DEMO_TOKEN
    assert seed_demo(crm.reference) == DEMO_TOKEN  # seeding again changes nothing

    def get(path: str, **params: Any) -> dict[str, Any]:
        answer = crm.call("GET", path, token=DEMO_TOKEN, params=params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    (dana,) = [u for u in get("/users")["items"] if u["name"] == "Dana Rep"]
    assert (dana["id"], dana["timezone"]) == ("u1", "Europe/Berlin")
    contacts = get("/changes/contact")["items"]
    assert sum(c["in_scope"] for c in contacts) == 2
    (ada,) = [c for c in contacts if c["fields"]["first_name"] == "Ada"]
    acme = present(crm.reference.account(DEMO_TENANT, ada["account_id"]))
    assert ada["fields"]["address"]["street"] == acme["address"]["street"]
    activities = [a["fields"] for a in get("/changes/activity")["items"]]
    assert any(a["recurrence"] and "WEEKLY" in a["recurrence"] for a in activities)
    assert any(a["all_day"] for a in activities)
    assert {a["type"] for a in activities} >= {"meeting", "call", "personal"}
    assert len(get("/changes/todo")["items"]) == 2  # u1's own
    (lin,) = get("/people", email="lin@prospect.example")["items"]
    assert (lin["kind"], lin["history_count"]) == ("lead", 2)
    assert len(crm.reference.all(DEMO_TENANT, "contact")) == 3


def test_contract_runs_standalone_with_the_demo_tenant() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox.crm", "--port", "0", "--seed"],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        token_line = server.stdout.readline()
        users = requests.get(
            f"{url}/users", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10
        )
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert url.endswith("/api/crmsync/v1")
    assert DEMO_TOKEN in token_line
    assert [u["id"] for u in users.json()["items"]] == ["u1", "u2", "u3"]
