"""The conformance kit: behavioural checks of a CRM's implementation of the contract.

`crmsync conformance --base-url URL --token T` runs every check against a test tenant
of the CRM, then fuzzes each operation of the OpenAPI document (`fuzz.py`), prints a
pass/fail table and exits non-zero on any failure. The checks create, change and
delete to-dos of their own, with subjects starting with "conformance", and remove
them again; the e-mail and people search checks create contacts named "conformance …"
with addresses of their own, record history items on them, and delete them again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests


@dataclass(frozen=True)
class Target:
    """The implementation under test and the credentials the checks may use."""

    base_url: str
    token: str
    user: str | None = None
    other_token: str | None = None
    expired_token: str | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool
    detail: str


class CheckFailed(Exception):
    """A rule of the contract does not hold; the message says which and how."""


class Client:
    """Plain HTTP to the implementation, as one tenant acting for one user."""

    def __init__(self, target: Target, token: str | None, user: str | None) -> None:
        self.target = target
        self.session = requests.Session()
        self.headers: dict[str, str] = {"Accept": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        if user is not None:
            self.headers["X-Crm-User"] = user

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> requests.Response:
        sent = {**self.headers, **(headers or {})}
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        return self.session.request(
            method,
            self.target.base_url.rstrip("/") + path,
            json=json_body,
            data=data,
            headers=sent,
            params=params,
            timeout=self.target.timeout,
        )

    def ok(self, response: requests.Response, *statuses: int) -> dict[str, Any]:
        """The JSON body of an answer that must have one of `statuses`."""
        if response.status_code not in statuses:
            raise CheckFailed(
                f"{response.request.method} {_path(response)} answered "
                f"{response.status_code}, expected {' or '.join(map(str, statuses))}"
                f"{_reason(response)}"
            )
        if not response.content:
            return {}
        body = response.json()
        if not isinstance(body, dict):
            raise CheckFailed(f"{_path(response)} answered JSON that is not an object")
        return body

    # -- to-dos, the kind the checks write ----------------------------------------------
    def create_todo(self, subject: str, key: str | None = None) -> dict[str, Any]:
        response = self.request(
            "POST",
            "/records/todo",
            json_body={"fields": {"subject": subject}},
            headers={"Idempotency-Key": key or _key()},
        )
        return self.ok(response, 201)

    def create_todo_with(self, fields: dict[str, Any]) -> dict[str, Any]:
        response = self.request(
            "POST",
            "/records/todo",
            json_body={"fields": fields},
            headers={"Idempotency-Key": _key()},
        )
        return self.ok(response, 201)

    def delete_todo(self, record_id: str) -> None:
        self.request("DELETE", f"/records/todo/{record_id}")

    def feed(self, kind: str, cursor: str | None, limit: int = 100) -> tuple[list[Any], str]:
        """Every item after `cursor`, paging to the end; and the cursor to resume from."""
        items: list[Any] = []
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            page = self.ok(self.request("GET", f"/changes/{kind}", params=params), 200)
            items.extend(page["items"])
            cursor = str(page["cursor"])
            if not page["more"]:
                return items, cursor


def _key() -> str:
    return f"conformance-{secrets.token_hex(8)}"


def _subject(what: str) -> str:
    return f"conformance {what} {secrets.token_hex(4)}"


def _path(response: requests.Response) -> str:
    return (response.request.path_url or "").split("?")[0]


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return f" ({body.get('error')}: {body.get('reason')})" if isinstance(body, dict) else ""


# -- the checks ---------------------------------------------------------------------------
Check = Callable[["Kit"], str]


class Kit:
    """Runs the checks. Each one returns a short note when it passes and raises
    CheckFailed (or any error) when it does not; one failing check never stops the rest."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.user = target.user or self._first_user()
        self.crm = Client(target, target.token, self.user)

    def _first_user(self) -> str:
        client = Client(self.target, self.target.token, None)
        users = client.ok(client.request("GET", "/users"), 200)["items"]
        active = [u["id"] for u in users if u.get("active", True)]
        if not active:
            raise CheckFailed("GET /users lists no active user to act for")
        return str(active[0])

    def run(self, checks: list[tuple[str, Check]]) -> Iterator[Outcome]:
        for name, check in checks:
            try:
                note = check(self)
            except CheckFailed as exc:
                yield Outcome(name, False, str(exc))
            except Exception as exc:  # a crash of the implementation or of the check
                yield Outcome(name, False, f"{type(exc).__name__}: {exc}")
            else:
                yield Outcome(name, True, note)


def check_schema(kit: Kit) -> str:
    body = kit.crm.ok(kit.crm.request("GET", "/schema"), 200)
    if not isinstance(body.get("limits"), dict) or not isinstance(body.get("capabilities"), dict):
        raise CheckFailed("GET /schema lacks `limits` or `capabilities`")
    for name in ("infinite_series", "recurring_todos"):
        if not isinstance(body["capabilities"].get(name), bool):
            raise CheckFailed(f"GET /schema: capabilities.{name} is not true or false")
    return "limits and capabilities declared"


def check_tokens_rejected(kit: Kit) -> str:
    cases = {"no token": None, "unknown token": f"conformance-{secrets.token_hex(16)}"}
    if kit.target.expired_token is None:
        raise CheckFailed("not shown: give --expired-token to check expired tokens")
    cases["expired token"] = kit.target.expired_token
    before = _todo_ids(kit)
    for label, token in cases.items():
        client = Client(kit.target, token, kit.user)
        for method, path, body in (
            ("GET", "/schema", None),
            ("GET", "/changes/todo", None),
            ("POST", "/records/todo", {"fields": {"subject": _subject("unauthorised")}}),
        ):
            headers = {"Idempotency-Key": _key()} if method == "POST" else None
            answer = client.request(method, path, json_body=body, headers=headers)
            if answer.status_code != 401:
                raise CheckFailed(f"{label}: {method} {path} answered {answer.status_code}")
    if _todo_ids(kit) != before:
        raise CheckFailed("a request without a valid token wrote a record")
    return "no, unknown and expired tokens get 401 and write nothing"


def check_acting_user_required(kit: Kit) -> str:
    client = Client(kit.target, kit.target.token, None)
    answer = client.request("GET", "/changes/todo")
    if answer.status_code != 400:
        raise CheckFailed(f"GET /changes/todo without X-Crm-User answered {answer.status_code}")
    stranger = Client(kit.target, kit.target.token, f"conformance-{secrets.token_hex(6)}")
    answer = stranger.request("GET", "/changes/todo")
    if answer.status_code != 403:
        raise CheckFailed(f"an unknown X-Crm-User answered {answer.status_code}, expected 403")
    return "missing user 400, unknown user 403"


def check_idempotent_create(kit: Kit) -> str:
    key, subject = _key(), _subject("idempotent")
    first = kit.crm.create_todo(subject, key)
    try:
        again = kit.crm.ok(
            kit.crm.request(
                "POST",
                "/records/todo",
                json_body={"fields": {"subject": subject}},
                headers={"Idempotency-Key": key},
            ),
            200,
        )
        if again.get("id") != first["id"]:
            raise CheckFailed(f"the same key created a second record: {again.get('id')}")
        items, _ = kit.crm.feed("todo", None)
        copies = [i for i in items if i.get("fields", {}).get("subject") == subject]
        if len(copies) != 1:
            raise CheckFailed(f"the feed lists {len(copies)} records for one key")
    finally:
        kit.crm.delete_todo(first["id"])
    return "the same key returns the first record (200), once in the feed"


def check_stale_version(kit: Kit) -> str:
    record = kit.crm.create_todo(_subject("versions"))
    path = f"/records/todo/{record['id']}"
    try:
        first = record["version"]
        updated = kit.crm.ok(
            kit.crm.request(
                "PATCH", path, json_body={"fields": {"notes": "one"}}, headers={"If-Match": first}
            ),
            200,
        )
        if updated["version"] == first:
            raise CheckFailed("an update did not change the version")
        stale = kit.crm.request(
            "PATCH", path, json_body={"fields": {"notes": "two"}}, headers={"If-Match": first}
        )
        kit.crm.ok(stale, 412)
        kit.crm.ok(kit.crm.request("DELETE", path, headers={"If-Match": first}), 412)
        now = kit.crm.ok(kit.crm.request("GET", path), 200)
        if now["fields"].get("notes") != "one":
            raise CheckFailed("a refused stale update changed the record")
    finally:
        kit.crm.delete_todo(record["id"])
    return "updates change the version; a stale If-Match gets 412 and changes nothing"


def check_feed_complete(kit: Kit) -> str:
    changed = kit.crm.create_todo(_subject("feed changed"))
    deleted = kit.crm.create_todo(_subject("feed deleted"))
    _, cursor = kit.crm.feed("todo", None)
    created = kit.crm.create_todo(_subject("feed created"))
    try:
        kit.crm.ok(
            kit.crm.request(
                "PATCH",
                f"/records/todo/{changed['id']}",
                json_body={"fields": {"notes": "changed"}},
                headers={"If-Match": changed["version"]},
            ),
            200,
        )
        kit.crm.ok(kit.crm.request("DELETE", f"/records/todo/{deleted['id']}"), 204)
        items, _ = kit.crm.feed("todo", cursor, limit=1)
        seen = {i["id"]: i for i in items}
        for label, record in (("created", created), ("changed", changed)):
            if record["id"] not in seen or seen[record["id"]].get("deleted"):
                raise CheckFailed(f"the feed since the cursor lacks the {label} record")
        if seen[changed["id"]]["fields"].get("notes") != "changed":
            raise CheckFailed("the feed shows the changed record without its change")
        if not seen.get(deleted["id"], {}).get("deleted"):
            raise CheckFailed("the feed since the cursor has no tombstone for the deleted record")
        repeated = len(items) - len(seen)
    finally:
        kit.crm.delete_todo(created["id"])
        kit.crm.delete_todo(changed["id"])
    return f"creates, changes and a tombstone, paged one by one ({repeated} repeats)"


def check_cursor_gone(kit: Kit) -> str:
    answer = kit.crm.request("GET", "/changes/todo", params={"cursor": "conformance-no-cursor"})
    kit.crm.ok(answer, 410)
    return "a cursor it cannot resume from gets 410"


def check_field_limits(kit: Kit) -> str:
    schema = kit.crm.ok(kit.crm.request("GET", "/schema"), 200)
    limit = schema.get("limits", {}).get("todo", {}).get("subject")
    if limit is None:
        return "no limit declared for todo.subject: nothing to enforce"
    before = _todo_ids(kit)
    answer = kit.crm.request(
        "POST",
        "/records/todo",
        json_body={"fields": {"subject": "c" * (int(limit) + 1)}},
        headers={"Idempotency-Key": _key()},
    )
    kit.crm.ok(answer, 422)
    if _todo_ids(kit) != before:
        raise CheckFailed("a subject over the declared limit was written")
    return f"todo.subject over {limit} characters gets 422 and is not written"


def check_tenant_isolation(kit: Kit) -> str:
    if kit.target.other_token is None:
        raise CheckFailed("not shown: give --other-token (a second tenant) to check isolation")
    record = kit.crm.create_todo(_subject("isolation"))
    try:
        other = Client(kit.target, kit.target.other_token, kit.user)
        path = f"/records/todo/{record['id']}"
        for method, body in (("GET", None), ("PATCH", {"fields": {"notes": "stolen"}})):
            headers = {"If-Match": record["version"]} if method == "PATCH" else None
            answer = other.request(method, path, json_body=body, headers=headers)
            if answer.status_code not in (401, 403, 404):
                raise CheckFailed(f"another tenant's {method} answered {answer.status_code}")
        feed = other.request("GET", "/changes/todo")
        if feed.status_code == 200 and any(i["id"] == record["id"] for i in feed.json()["items"]):
            raise CheckFailed("another tenant's feed lists this tenant's record")
        now = kit.crm.ok(kit.crm.request("GET", path), 200)
        if now["version"] != record["version"]:
            raise CheckFailed("another tenant's request changed the record")
    finally:
        kit.crm.delete_todo(record["id"])
    return "another tenant's token neither sees nor changes the record"


def check_bad_input(kit: Kit) -> str:
    before = _todo_ids(kit)
    cases: list[tuple[str, str, str, bytes]] = [
        ("malformed JSON", "POST", "/records/todo", b'{"fields": {"subject": '),
        ("wrong types", "POST", "/records/todo", b'{"fields": {"subject": 42}}'),
        ("unknown field", "POST", "/records/todo", b'{"fields": {"subjekt": "x"}}'),
        ("invalid UTF-8", "POST", "/records/todo", b'{"fields": {"subject": "\xff\xfe"}}'),
        ("unknown kind", "POST", "/records/widget", b'{"fields": {"subject": "x"}}'),
        ("huge body", "POST", "/records/todo", _huge_body()),
        ("not an object", "POST", "/records/todo", b"[1, 2, 3]"),
    ]
    for label, method, path, data in cases:
        answer = kit.crm.request(method, path, data=data, headers={"Idempotency-Key": _key()})
        if not 400 <= answer.status_code < 500:
            raise CheckFailed(f"{label}: answered {answer.status_code}, expected a 4xx")
        try:
            body = answer.json()
        except ValueError as exc:
            raise CheckFailed(f"{label}: the 4xx answer has no JSON reason") from exc
        if not (isinstance(body, dict) and body.get("error") and "reason" in body):
            raise CheckFailed(f"{label}: the answer lacks error and reason")
    if _todo_ids(kit) != before:
        raise CheckFailed("bad input wrote a record")
    return f"{len(cases)} kinds of bad input get a 4xx with a reason; nothing written"


# A value of each custom field type, another one, and one of the wrong type.
_SAMPLES: dict[str, tuple[Any, Any, Any]] = {
    "string": ("conformance", "conformance 2", 42),
    "number": (7, 8.5, "seven"),
    "boolean": (True, False, "yes"),
    "date": ("2026-11-03", "2027-01-15", "03.11.2026"),
}


def _custom_samples(field: dict[str, Any]) -> tuple[Any, Any, Any]:
    """For a declared custom field: a value, another value, a value of the wrong type."""
    if field.get("type") == "enum":
        values = list(field.get("values") or ())
        if not values:
            raise CheckFailed(f"GET /schema: the enum {field.get('name')!r} declares no values")
        return values[0], values[-1] if len(values) > 1 else None, "conformance-no-such-value"
    if field.get("type") not in _SAMPLES:
        raise CheckFailed(f"GET /schema: {field.get('name')!r} has an unknown type")
    value, other, wrong = _SAMPLES[str(field["type"])]
    limit = field.get("max_length")
    if isinstance(value, str) and isinstance(limit, int) and field["type"] == "string":
        value, other = value[:limit], ("d" * limit)
    return value, other, wrong


def check_custom_fields(kit: Kit) -> str:
    """SYN-1: an undeclared custom field is refused with 422 naming it and nothing is
    written; a declared to-do custom field round-trips through create, read, update
    and clear, and records carry every declared one; a value of the wrong type gets 422."""
    schema = kit.crm.ok(kit.crm.request("GET", "/schema"), 200)
    declared = list((schema.get("custom_fields") or {}).get("todo") or ())
    _refuses_an_undeclared_custom_field(kit)
    if not declared:
        return "undeclared custom field gets 422; no to-do custom field declared to round-trip"
    name = str(declared[0]["name"])
    value, other, wrong = _custom_samples(declared[0])
    record = kit.crm.create_todo_with({"subject": _subject("custom"), "custom": {name: value}})
    path = f"/records/todo/{record['id']}"
    try:
        carried = record["fields"].get("custom") or {}
        missing = sorted({str(f["name"]) for f in declared} - set(carried))
        if missing:
            raise CheckFailed(f"a to-do does not carry the declared custom fields {missing}")
        _expect_custom(carried, name, value, "the create's answer")
        _expect_custom(_custom_of(kit, path), name, value, "GET after the create")
        refused = _patch_custom(kit, path, name, wrong)
        kit.crm.ok(refused, 422)
        if name not in _reason(refused):
            raise CheckFailed(f"the 422 for a wrong type does not name {name!r}{_reason(refused)}")
        for step in (other, None):
            kit.crm.ok(_patch_custom(kit, path, name, step), 200)
            _expect_custom(_custom_of(kit, path), name, step, "GET after an update")
    finally:
        kit.crm.delete_todo(record["id"])
    return f"todo.custom.{name} round-trips; undeclared and wrong-typed values get 422"


def _refuses_an_undeclared_custom_field(kit: Kit) -> None:
    before = _todo_ids(kit)
    unknown = f"conformance_{secrets.token_hex(4)}"
    answer = kit.crm.request(
        "POST",
        "/records/todo",
        json_body={"fields": {"subject": _subject("custom"), "custom": {unknown: "x"}}},
        headers={"Idempotency-Key": _key()},
    )
    kit.crm.ok(answer, 422)
    if unknown not in _reason(answer):
        raise CheckFailed(
            f"the 422 for an undeclared custom field does not name it{_reason(answer)}"
        )
    if _todo_ids(kit) != before:
        raise CheckFailed("a to-do with an undeclared custom field was written")


def _patch_custom(kit: Kit, path: str, name: str, value: Any) -> requests.Response:
    """One custom value changed, from the record's version as it is now."""
    version = kit.crm.ok(kit.crm.request("GET", path), 200)["version"]
    return kit.crm.request(
        "PATCH",
        path,
        json_body={"fields": {"custom": {name: value}}},
        headers={"If-Match": version},
    )


def _custom_of(kit: Kit, path: str) -> dict[str, Any]:
    return dict(kit.crm.ok(kit.crm.request("GET", path), 200)["fields"].get("custom") or {})


def _expect_custom(carried: dict[str, Any], name: str, value: Any, where: str) -> None:
    held = carried.get(name, ...)
    same = held == value and isinstance(held, bool) == isinstance(value, bool)
    if name not in carried or not same:
        raise CheckFailed(f"{where}: custom.{name} is {carried.get(name)!r}, expected {value!r}")


# -- e-mail recording (EML-2, EML-4) -------------------------------------------------------
def _create_contact(kit: Kit, what: str) -> tuple[str, str]:
    """A contact of the check's own with an address of its own: its id and address."""
    tag = secrets.token_hex(4)
    address = f"conformance-{tag}@example.com"
    fields = {"first_name": "conformance", "last_name": f"{what} {tag}", "emails": [address]}
    return _create_contact_with(kit, fields), address


def _create_contact_with(kit: Kit, fields: dict[str, Any]) -> str:
    answer = kit.crm.request(
        "POST",
        "/records/contact",
        json_body={"fields": fields},
        headers={"Idempotency-Key": _key()},
    )
    return str(kit.crm.ok(answer, 201)["id"])


def _delete_contact(kit: Kit, record_id: str) -> None:
    kit.crm.request("DELETE", f"/records/contact/{record_id}")


def _person(kit: Kit, address: str, record_id: str) -> dict[str, Any]:
    """The contact `record_id` as GET /people lists it for `address`."""
    items = kit.crm.ok(kit.crm.request("GET", "/people", params={"email": address}), 200)["items"]
    found = [p for p in items if isinstance(p, dict) and p.get("id") == record_id]
    if len(found) != 1:
        raise CheckFailed(f"GET /people for {address} lists the contact {len(found)} times")
    return dict(found[0])


def _history_count(kit: Kit, address: str, record_id: str) -> int:
    count = _person(kit, address, record_id).get("history_count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CheckFailed(f"GET /people: history_count is {count!r}, not a count")
    return count


def _history_item(kind: str, record_id: str, address: str, body: str = "") -> dict[str, Any]:
    return {
        "record": {"kind": kind, "id": record_id},
        "subject": _subject("mail"),
        "body": body or "conformance: a message recorded by the conformance kit",
        "date": "2026-11-03T09:00:00Z",
        "participants": [
            {"role": "from", "email": "conformance-sender@example.com"},
            {"role": "to", "email": address},
        ],
    }


def _record_history(kit: Kit, item: dict[str, Any], key: str) -> requests.Response:
    return kit.crm.request("POST", "/history", json_body=item, headers={"Idempotency-Key": key})


def check_people_found(kit: Kit) -> str:
    """EML-2: GET /people finds a contact by its address, whatever its case, with the
    contact's kind and history count."""
    record_id, address = _create_contact(kit, "people")
    try:
        person = _person(kit, address.upper(), record_id)
        if person.get("kind") != "contact":
            raise CheckFailed(f"GET /people: kind is {person.get('kind')!r}, expected 'contact'")
        emails = [str(e).lower() for e in person.get("emails") or ()]
        if address not in emails:
            raise CheckFailed("GET /people: the person's emails lack the address it was found by")
        count = _history_count(kit, address, record_id)
        if count != 0:
            raise CheckFailed(f"GET /people: a new contact has history_count {count}, expected 0")
    finally:
        _delete_contact(kit, record_id)
    return "a contact is found by its address in another case, with history_count 0"


def check_history_once_per_key(kit: Kit) -> str:
    """EML-4: the same Idempotency-Key again answers the item recorded first (201, then
    200) and the contact's history count goes up by one only."""
    record_id, address = _create_contact(kit, "history")
    try:
        before = _history_count(kit, address, record_id)
        item, key = _history_item("contact", record_id, address), _key()
        first = kit.crm.ok(_record_history(kit, item, key), 201)
        again = kit.crm.ok(_record_history(kit, item, key), 200)
        if again.get("id") != first.get("id"):
            raise CheckFailed(f"the same key recorded a second item: {again.get('id')}")
        after = _history_count(kit, address, record_id)
        if after != before + 1:
            raise CheckFailed(f"history_count went from {before} to {after} for one key")
    finally:
        _delete_contact(kit, record_id)
    return "the same key answers the first item (201, then 200); history_count up by one"


def check_history_unknown_record(kit: Kit) -> str:
    """EML-2: a history item for a record that does not exist is 404."""
    unknown = f"conformance-{secrets.token_hex(6)}"
    item = _history_item("contact", unknown, "conformance-nobody@example.com")
    answer = _record_history(kit, item, _key())
    kit.crm.ok(answer, 404)
    return "a history item for an unknown contact gets 404"


def check_history_limits(kit: Kit) -> str:
    """EML-2: a body longer than /schema declares under limits.history is 413, and
    nothing is recorded."""
    schema = kit.crm.ok(kit.crm.request("GET", "/schema"), 200)
    limit = (schema.get("limits", {}).get("history") or {}).get("body")
    if limit is None:
        return "no limit declared for history bodies: nothing to enforce"
    record_id, address = _create_contact(kit, "limits")
    try:
        before = _history_count(kit, address, record_id)
        item = _history_item("contact", record_id, address, body="b" * (int(limit) + 1))
        kit.crm.ok(_record_history(kit, item, _key()), 413)
        if _history_count(kit, address, record_id) != before:
            raise CheckFailed("a history item over the declared body limit was recorded")
    finally:
        _delete_contact(kit, record_id)
    return f"a body over {limit} characters gets 413 and is not recorded"


# -- a person's card (CTX-1) ---------------------------------------------------------------
CARD_KEYS = ("kind", "id", "name", "emails", "url", "account", "opportunities", "history", "fields")


def _card(kit: Kit, record_id: str, **params: Any) -> requests.Response:
    return kit.crm.request("GET", f"/people/contact/{record_id}", params=params or None)


def check_person_card(kit: Kit) -> str:
    """CTX-1: GET /people/{kind}/{id} answers a contact with an address to open it, its
    latest history items newest first (`limit` at most), and empty lists where it has
    nothing; an unknown contact is 404."""
    record_id, address = _create_contact(kit, "card")
    try:
        for n, day in enumerate(("2026-11-01", "2026-11-03", "2026-11-02")):
            item = {**_history_item("contact", record_id, address), "date": f"{day}T09:00:00Z"}
            kit.crm.ok(_record_history(kit, {**item, "subject": f"card {n}"}, _key()), 201)
        card = kit.crm.ok(_card(kit, record_id, limit=2), 200)
        missing = [key for key in CARD_KEYS if key not in card]
        if missing:
            raise CheckFailed(f"GET /people/contact/{{id}} lacks {', '.join(missing)}")
        if (card["kind"], card["id"]) != ("contact", record_id):
            raise CheckFailed(f"GET /people/contact/{{id}} answers {card['kind']} {card['id']}")
        if not str(card["url"]).startswith(("https://", "http://")):
            raise CheckFailed(f"the card's url {card['url']!r} is not an address to open")
        subjects = [item.get("subject") for item in card["history"]]
        if subjects != ["card 1", "card 2"]:
            raise CheckFailed(f"the card's history is {subjects}, expected the 2 newest first")
        if not isinstance(card["opportunities"], list) or not isinstance(card["fields"], list):
            raise CheckFailed("the card's opportunities and fields must be lists")
        if card["account"] is not None and not isinstance(card["account"], dict):
            raise CheckFailed("the card's account must be an object or null")
    finally:
        _delete_contact(kit, record_id)
    kit.crm.ok(_card(kit, record_id), 404)
    kit.crm.ok(_card(kit, f"conformance-{secrets.token_hex(6)}"), 404)
    return "a contact's card has its url, its 2 newest history items first; a deleted one is 404"


# -- documents (CTX-1) --------------------------------------------------------------------
def check_documents(kit: Kit) -> str:
    """CTX-1: GET /documents?q= finds the test tenant's document named "conformance…"
    whatever the case of `q`, and its content is as large as listed, with its type; an
    unknown document is 404 and a `q` of one letter 400."""
    answer = kit.crm.request("GET", "/documents", params={"q": "CONFORMANCE"})
    items = kit.crm.ok(answer, 200).get("items")
    if not isinstance(items, list):
        raise CheckFailed("GET /documents answers no items list")
    found = [
        d for d in items if isinstance(d, dict) and "conformance" in str(d.get("name")).lower()
    ]
    if not found:
        raise CheckFailed(
            "GET /documents?q=CONFORMANCE finds nothing: put a document whose name holds "
            "'conformance' in the test tenant"
        )
    document = found[0]
    content = kit.crm.request("GET", f"/documents/{document['id']}/content")
    if content.status_code != 200:
        raise CheckFailed(f"GET /documents/{{id}}/content answered {content.status_code}")
    if len(content.content) != document.get("size"):
        raise CheckFailed(
            f"the content has {len(content.content)} bytes; the listing said {document.get('size')}"
        )
    if not content.headers.get("Content-Type"):
        raise CheckFailed("the content comes without its Content-Type")
    kit.crm.ok(
        kit.crm.request("GET", f"/documents/conformance-{secrets.token_hex(6)}/content"), 404
    )
    kit.crm.ok(kit.crm.request("GET", "/documents", params={"q": "c"}), 400)
    return (
        f"found {document['name']!r} by a part of its name; its {len(content.content)} bytes read"
    )


# -- people search (EML-5) ----------------------------------------------------------------
def _word() -> str:
    """A text no record holds yet, with letters in it, so that its upper case differs."""
    return f"zq{secrets.token_hex(5)}"


def _found(kit: Kit, text: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The people GET /people?q= lists, in its order; every person listed must hold the
    text in its name or an address, whatever its case, and no more than `limit` (or the
    default 20) may be listed."""
    params: dict[str, Any] = {"q": text}
    if limit is not None:
        params["limit"] = limit
    items = kit.crm.ok(kit.crm.request("GET", "/people", params=params), 200)["items"]
    most = 20 if limit is None else limit
    if len(items) > most:
        raise CheckFailed(f"GET /people?q= lists {len(items)} people, more than limit {most}")
    needle = text.casefold()
    for item in items:
        held = [str(item.get("name") or ""), *(str(e) for e in item.get("emails") or ())]
        if not any(needle in h.casefold() for h in held):
            raise CheckFailed(
                f"GET /people?q={text} lists {item.get('id')!r}, whose name and addresses "
                "do not hold the text"
            )
    return [dict(item) for item in items]


def _search(kit: Kit, text: str, limit: int | None = None) -> list[str]:
    """The ids of the people GET /people?q= lists, in its order."""
    return [str(item.get("id")) for item in _found(kit, text, limit)]


def check_people_search_finds(kit: Kit) -> str:
    """EML-5: GET /people?q= finds a contact by a part of its name and by a part of its
    address, each in another case, as a Person with its kind, addresses and history
    count; a text that no record holds finds nobody."""
    in_name, in_address = _word(), _word()
    address = f"conformance-{in_address}@example.com"
    record_id = _create_contact_with(
        kit,
        {"first_name": "conformance", "last_name": f"search {in_name}", "emails": [address]},
    )
    try:
        for what, text in (("name", in_name), ("address", in_address)):
            found = [p for p in _found(kit, text.upper()) if p.get("id") == record_id]
            if len(found) != 1:
                raise CheckFailed(
                    f"GET /people?q= lists the contact {len(found)} times for a part of its "
                    f"{what} in another case ({text.upper()})"
                )
        (person,) = found
        if person.get("kind") != "contact":
            raise CheckFailed(f"GET /people?q=: kind is {person.get('kind')!r}, not 'contact'")
        if address not in [str(e).lower() for e in person.get("emails") or ()]:
            raise CheckFailed("GET /people?q=: the person's emails lack its address")
        count = person.get("history_count")
        if isinstance(count, bool) or count != 0:
            raise CheckFailed(f"GET /people?q=: a new contact has history_count {count!r}")
        nobody = _search(kit, _word())
        if nobody:
            raise CheckFailed(f"GET /people?q= lists {len(nobody)} people for a text none holds")
    finally:
        _delete_contact(kit, record_id)
    return "a contact is found by a part of its name and of its address in another case"


def check_people_search_order(kit: Kit) -> str:
    """EML-5: the people a search finds come most history first, and `limit` bounds
    them: of three contacts with 0, 2 and 1 items, limit 2 lists the second and third."""
    common = _word()
    made: list[tuple[str, str]] = []
    try:
        for n in range(3):
            address = f"conformance-{common}-{n}@example.com"
            fields = {"first_name": "conformance", "last_name": f"order {n}", "emails": [address]}
            made.append((_create_contact_with(kit, fields), address))
        for (record_id, address), items in zip(made, (0, 2, 1), strict=True):
            for _ in range(items):
                item = _history_item("contact", record_id, address)
                kit.crm.ok(_record_history(kit, item, _key()), 201)
        expected = [made[1][0], made[2][0], made[0][0]]
        listed = _search(kit, common)
        if listed != expected:
            raise CheckFailed(
                f"GET /people?q= lists {listed}, expected most history first: {expected}"
            )
        limited = _search(kit, common, limit=2)
        if limited != expected[:2]:
            raise CheckFailed(f"GET /people?q=&limit=2 lists {limited}, expected {expected[:2]}")
    finally:
        for record_id, _ in made:
            _delete_contact(kit, record_id)
    return "most history first; limit 2 lists the first two"


def check_people_search_sees_only_its_own(kit: Kit) -> str:
    """EML-5: a search finds only records the acting user may see: another tenant's
    token finds none of this tenant's contacts, and a deleted contact is found no more."""
    if kit.target.other_token is None:
        raise CheckFailed("not shown: give --other-token (a second tenant) to check isolation")
    text = _word()
    record_id = _create_contact_with(
        kit,
        {
            "first_name": "conformance",
            "last_name": f"visible {text}",
            "emails": [f"conformance-{text}@example.com"],
        },
    )
    try:
        if record_id not in _search(kit, text):
            raise CheckFailed("GET /people?q= does not find a contact by a part of its name")
        other = Client(kit.target, kit.target.other_token, kit.user)
        answer = other.request("GET", "/people", params={"q": text})
        if answer.status_code not in (200, 401, 403):
            raise CheckFailed(f"another tenant's search answered {answer.status_code}")
        if answer.status_code == 200 and answer.json().get("items"):
            raise CheckFailed("another tenant's search finds this tenant's contact")
    finally:
        _delete_contact(kit, record_id)
    if record_id in _search(kit, text):
        raise CheckFailed("GET /people?q= still finds a deleted contact")
    return "another tenant's token finds nothing; a deleted contact is not found"


def check_people_search_refuses_bad_queries(kit: Kit) -> str:
    """EML-5: GET /people takes exactly one of `email` and `q`; neither, both, a `q`
    shorter than 2 characters and a `limit` outside 1..50 are 400 with a reason."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("neither email nor q", {}),
        ("both email and q", {"email": "conformance@example.com", "q": "conformance"}),
        ("a q of one character", {"q": "c"}),
        ("limit 0", {"q": "conformance", "limit": 0}),
        ("limit 51", {"q": "conformance", "limit": 51}),
    ]
    for label, params in cases:
        answer = kit.crm.request("GET", "/people", params=params)
        if answer.status_code != 400:
            raise CheckFailed(f"{label}: GET /people answered {answer.status_code}, expected 400")
        try:
            body = answer.json()
        except ValueError as exc:
            raise CheckFailed(f"{label}: the 400 answer has no JSON reason") from exc
        if not (isinstance(body, dict) and body.get("error") and body.get("reason")):
            raise CheckFailed(f"{label}: the answer lacks error and reason")
    return f"{len(cases)} kinds of bad query get 400 with a reason"


def _huge_body() -> bytes:
    return json.dumps({"fields": {"subject": "x", "notes": "n" * (2 * 1024 * 1024)}}).encode()


def _todo_ids(kit: Kit) -> set[str]:
    items, _ = kit.crm.feed("todo", None, limit=1000)
    return {str(i["id"]) for i in items}


CHECKS: list[tuple[str, Check]] = [
    ("schema declared", check_schema),
    ("tokens rejected", check_tokens_rejected),
    ("acting user required", check_acting_user_required),
    ("idempotent create", check_idempotent_create),
    ("stale version refused", check_stale_version),
    ("change feed complete", check_feed_complete),
    ("old cursor gone", check_cursor_gone),
    ("field limits honoured", check_field_limits),
    ("tenant isolation", check_tenant_isolation),
    ("bad input refused", check_bad_input),
    ("custom fields declared and checked", check_custom_fields),
    ("people found by e-mail", check_people_found),
    ("history recorded once per key", check_history_once_per_key),
    ("history on an unknown record refused", check_history_unknown_record),
    ("history limits honoured", check_history_limits),
    ("people found by a text", check_people_search_finds),
    ("people search ordered and limited", check_people_search_order),
    ("people search sees only its own", check_people_search_sees_only_its_own),
    ("people search refuses bad queries", check_people_search_refuses_bad_queries),
    ("a person's card", check_person_card),
    ("documents found and read", check_documents),
]


def table(outcomes: list[Outcome]) -> str:
    width = max(len(o.check) for o in outcomes)
    lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
    for o in outcomes:
        lines.append(f"{o.check:<{width}}  {'pass' if o.passed else 'FAIL':<6}  {o.detail}")
    failed = sum(not o.passed for o in outcomes)
    lines.append(f"{len(outcomes) - failed} passed, {failed} failed")
    return "\n".join(lines)
