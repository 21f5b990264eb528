"""The REST connector's HTTP behaviour against a scripted peer on a real socket:
retries with backoff honouring Retry-After, typed errors, no secret in any log line.

The peer answers each request with the next scripted response and records what it
was sent, so the tests see exactly what went over the wire.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from crmsync.crm.rest import RestCrmConnector
from crmsync.engine.plan import Write
from crmsync.errors import (
    Conflict,
    CrmUnauthorized,
    CursorExpired,
    NotFound,
    PermanentError,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from crmsync.ports import HistoryEntry, Linked, Person, Stored

pytestmark = pytest.mark.integration

TOKEN = "secret-token-value"


@dataclass
class Scripted:
    """Responses to give, in order: (status, headers, JSON body or None)."""

    responses: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    seen: list[dict[str, Any]] = field(default_factory=list)


def _handler(script: Scripted) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": json.loads(body) if body else None,
                }
            )
            status, headers, payload = script.responses.pop(0)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def peer() -> Iterator[tuple[Scripted, str]]:
    script = Scripted()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield script, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def connector(base_url: str, waits: list[float] | None = None, **kw: Any) -> RestCrmConnector:
    sleeps = waits if waits is not None else []
    return RestCrmConnector(base_url, TOKEN, "u1", sleep=sleeps.append, **kw)


RECORD = {
    "id": "a-1",
    "kind": "activity",
    "version": "7",
    "modified": "2026-11-02T09:00:00+00:00",
    "owner": "u1",
    "in_scope": True,
    "ref": None,
    "fields": {
        "type": "meeting",
        "subject": "Kickoff",
        "start": "2026-11-03T10:00:00+00:00",
        "end": "2026-11-03T11:00:00+00:00",
    },
}
UPDATE = Write("crm", "update", "activity", "a-1", {"subject": "Kickoff v2"}, "7")


def test_contract_requests_carry_the_token_and_the_acting_user(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses.append((200, {}, RECORD))

    connector(url).get("activity", "a-1")

    sent = script.seen[0]
    assert sent["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert sent["headers"]["X-Crm-User"] == "u1"
    assert sent["path"].startswith("/v1/records/activity/a-1?")


def test_SYN4_update_sends_the_version_it_is_based_on(peer: tuple[Scripted, str]) -> None:
    script, url = peer
    script.responses.append((200, {}, {**RECORD, "version": "8"}))

    result = connector(url).update(UPDATE)

    assert script.seen[0]["method"] == "PATCH"
    assert script.seen[0]["headers"]["If-Match"] == "7"
    assert script.seen[0]["body"] == {"fields": {"subject": "Kickoff v2"}}
    assert (result.id, result.version) == ("a-1", "8")


def test_SYN4_create_sends_its_idempotency_key_on_every_attempt(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses += [(503, {"Retry-After": "0"}, {"error": "unavailable", "reason": ""})]
    script.responses += [(201, {}, RECORD)]
    write = Write("crm", "create", "activity", fields=RECORD["fields"], key="k-1", ref="link-1")

    result = connector(url).create(write)

    assert [s["headers"]["Idempotency-Key"] for s in script.seen] == ["k-1", "k-1"]
    assert script.seen[1]["body"]["ref"] == "link-1"
    assert result.id == "a-1"


def test_SYN5_transient_answers_are_retried_honouring_retry_after(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses += [
        (429, {"Retry-After": "3"}, {"error": "rate_limited", "reason": "slow down"}),
        (502, {}, None),
        (200, {}, {**RECORD, "version": "8"}),
    ]
    waits: list[float] = []

    connector(url, waits, backoff=0.5).update(UPDATE)

    assert waits == [3.0, 1.0]  # the server's Retry-After, then our own backoff
    assert len(script.seen) == 3


def test_SYN5_a_retry_after_longer_than_the_cycle_may_wait_is_raised(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses.append((429, {"Retry-After": "120"}, {"error": "rate_limited", "reason": ""}))

    with pytest.raises(RateLimited) as raised:
        connector(url, max_wait=30).update(UPDATE)

    assert raised.value.retry_after == 120
    assert len(script.seen) == 1


def test_SYN5_transient_failure_that_persists_is_a_transient_error(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses += [(503, {}, {"error": "unavailable", "reason": "maintenance"})] * 3
    waits: list[float] = []

    with pytest.raises(TransientError, match="maintenance"):
        connector(url, waits, attempts=3).update(UPDATE)

    assert len(script.seen) == 3
    assert waits == [0.5, 1.0]


def test_SYN5_unreachable_crm_is_a_transient_error() -> None:
    waits: list[float] = []
    dead = connector("http://127.0.0.1:9/v1", waits, attempts=2, timeout=1)

    with pytest.raises(TransientError, match="unreachable"):
        dead.get("activity", "a-1")

    assert waits == [0.5]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, CrmUnauthorized),
        (403, PermissionDenied),
        (412, Conflict),
        (422, PermanentError),
        (400, PermanentError),
    ],
)
def test_SYN5_refusals_become_typed_errors_without_a_retry(
    peer: tuple[Scripted, str], status: int, error: type[Exception]
) -> None:
    script, url = peer
    script.responses.append((status, {}, {"error": "x", "reason": "refused for a reason"}))

    with pytest.raises(error, match="refused for a reason"):
        connector(url).update(UPDATE)

    assert len(script.seen) == 1


def test_RUN4_gone_cursor_is_cursor_expired(peer: tuple[Scripted, str]) -> None:
    script, url = peer
    script.responses.append((410, {}, {"error": "cursor_expired", "reason": "too old"}))

    with pytest.raises(CursorExpired):
        connector(url).changes("activity", "42")

    assert "cursor=42" in script.seen[0]["path"]


def test_SYN5_record_the_crm_holds_in_a_bad_form_fails_alone(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    bad = {**RECORD, "id": "a-2", "fields": {**RECORD["fields"], "timezone": "Mars/Base"}}
    script.responses.append((200, {}, {"items": [RECORD, bad], "cursor": "9", "more": False}))

    page = connector(url).changes("activity", None)

    good, broken = page.records
    assert good.error is None and good.fields is not None
    assert good.fields["subject"] == "Kickoff"
    assert broken.id == "a-2" and broken.error is not None and "Mars/Base" in broken.error
    assert page.cursor == "9"


def test_contract_tombstones_are_gone_records(peer: tuple[Scripted, str]) -> None:
    script, url = peer
    tombstone = {"id": "a-3", "kind": "activity", "version": "12", "deleted": True}
    script.responses.append((200, {}, {"items": [tombstone], "cursor": "12", "more": True}))

    page = connector(url).changes("activity", "9")

    (gone,) = page.records
    assert (gone.id, gone.version, gone.fields, gone.gone) == ("a-3", "12", None, True)
    assert page.more is True


def test_contract_no_token_in_any_log_line(
    peer: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, url = peer
    script.responses += [(503, {}, None), (200, {}, RECORD)]
    caplog.set_level(logging.DEBUG)

    crm = connector(url)
    crm.update(UPDATE)

    assert caplog.records, "requests are logged"
    for record in caplog.records:
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert TOKEN not in text
        assert "Kickoff" not in text  # no record content either
    assert TOKEN not in repr(crm)


# -- e-mail recording (EML-2, EML-4) --------------------------------------------------------
SECRET_URL = "https://store.example/v/1?signature=secret-signature"
MAIL = HistoryEntry(
    record_kind="lead",
    record_id="l-7",
    subject="Private offer",
    body="Confidential terms inside",
    date=datetime(2026, 11, 3, 9, 30, tzinfo=UTC),
    participants=(("from", "dana@crm.example", "Dana"), ("cc", "lin@x.example", "Lin")),
    attachments=(Stored("terms.txt", "text/plain", b"net 30"),),
    links=(Linked("deck.mp4", "video/mp4", 7_000_000, SECRET_URL),),
)
ITEM = {
    "id": "h-9",
    "record": {"kind": "lead", "id": "l-7"},
    "subject": "Private offer",
    "date": "2026-11-03T09:30:00+00:00",
    "attachments": 1,
    "links": 1,
}


@pytest.mark.parametrize(
    "schema",
    [
        {"limits": {}, "capabilities": {"infinite_series": True, "recurring_todos": True}},
        {"limits": {"history": {"subject": 0, "body": "long"}}, "capabilities": {}},
    ],
)
def test_EML2_a_crm_that_declares_no_history_limits_gets_the_defaults(
    peer: tuple[Scripted, str], schema: dict[str, Any]
) -> None:
    script, url = peer
    script.responses.append((200, {}, schema))

    limits = connector(url).mail_limits()

    assert (limits.subject, limits.body, limits.attachment_bytes) == (255, 65_536, 0)
    assert [s["path"] for s in script.seen] == ["/v1/schema"]


def test_EML2_people_are_asked_by_address_and_kept_in_the_crms_order(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    items = [
        {
            "kind": "lead",
            "id": "l-7",
            "name": "Lin",
            "emails": ["lin@x.example"],
            "history_count": 4,
        },
        {
            "kind": "contact",
            "id": "c-2",
            "name": "",
            "emails": ["LIN@x.example"],
            "history_count": 9,
        },
    ]
    script.responses.append((200, {}, {"items": items}))

    found = connector(url).people("Lin+Sales@x.example")

    assert found == [
        Person("lead", "l-7", "Lin", ("lin@x.example",), 4),
        Person("contact", "c-2", "", ("lin@x.example",), 9),
    ]
    assert script.seen[0]["path"] == "/v1/people?email=Lin%2BSales%40x.example"
    assert script.seen[0]["headers"]["X-Crm-User"] == "u1"


def test_EML5_people_are_searched_by_text_and_limit_and_logged_without_the_text(
    peer: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, url = peer
    items = [
        {
            "kind": "contact",
            "id": f"c-{n}",
            "name": f"Lovelace {n}",
            "emails": [f"Ada{n}@X.example"],
            "history_count": 3 - n,
        }
        for n in range(3)
    ]
    script.responses += [(503, {"Retry-After": "0"}, None), (200, {}, {"items": items})]
    caplog.set_level(logging.DEBUG)

    found = connector(url).search_people("Love lace+", 2)

    assert found == [  # in the CRM's order, and no more than asked for
        Person("contact", "c-0", "Lovelace 0", ("ada0@x.example",), 3),
        Person("contact", "c-1", "Lovelace 1", ("ada1@x.example",), 2),
    ]
    assert [s["path"] for s in script.seen] == ["/v1/people?q=Love+lace%2B&limit=2"] * 2
    assert script.seen[0]["headers"]["X-Crm-User"] == "u1"
    logged = [r for r in caplog.records if r.name.startswith("crmsync")]
    assert [r.__dict__["path"] for r in logged] == ["/people"] * 2
    for record in logged:  # the connector's own lines
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        assert "lace" not in text.lower()


def test_EML5_a_search_the_crm_refuses_is_a_permanent_error(peer: tuple[Scripted, str]) -> None:
    script, url = peer
    refusal = {"error": "bad_request", "reason": "q must have at least 2 characters"}
    script.responses.append((400, {}, refusal))

    with pytest.raises(PermanentError, match="q must have at least 2 characters") as refused:
        connector(url).search_people("a", 20)

    assert not isinstance(refused.value, NotFound)
    assert len(script.seen) == 1  # not retried


def test_EML4_a_history_item_is_sent_with_its_key_on_every_attempt_and_logged_without_content(
    peer: tuple[Scripted, str], caplog: pytest.LogCaptureFixture
) -> None:
    script, url = peer
    script.responses += [(503, {"Retry-After": "0"}, None), (201, {}, ITEM)]
    caplog.set_level(logging.DEBUG)

    item_id, new = connector(url).record_history(MAIL, "mail-key-1")

    assert (item_id, new) == ("h-9", True)  # 201: this call recorded it
    assert [s["headers"]["Idempotency-Key"] for s in script.seen] == ["mail-key-1"] * 2
    sent = script.seen[1]["body"]
    assert sent == {
        "record": {"kind": "lead", "id": "l-7"},
        "subject": "Private offer",
        "body": "Confidential terms inside",
        "date": "2026-11-03T09:30:00+00:00",
        "participants": [
            {"role": "from", "email": "dana@crm.example", "name": "Dana"},
            {"role": "cc", "email": "lin@x.example", "name": "Lin"},
        ],
        "attachments": [
            {"filename": "terms.txt", "content_type": "text/plain", "content_base64": "bmV0IDMw"}
        ],
        "links": [
            {
                "filename": "deck.mp4",
                "content_type": "video/mp4",
                "size": 7_000_000,
                "url": SECRET_URL,
            }
        ],
    }
    assert caplog.records, "requests are logged"
    for record in caplog.records:
        text = record.getMessage() + json.dumps(record.__dict__, default=str)
        for secret in ("Confidential", "Private offer", "secret-signature", "bmV0IDMw", TOKEN):
            assert secret not in text
    assert "secret-signature" not in repr(MAIL)


def test_EML4_a_key_the_crm_recorded_before_answers_the_first_item(
    peer: tuple[Scripted, str],
) -> None:
    script, url = peer
    script.responses.append((200, {}, ITEM))

    # 200: the item recorded first, which this call did not record
    assert connector(url).record_history(MAIL, "mail-key-1") == ("h-9", False)
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, NotFound), (413, PermanentError), (400, PermanentError), (403, PermissionDenied)],
)
def test_EML2_a_history_item_the_crm_refuses_is_a_typed_error_without_a_retry(
    peer: tuple[Scripted, str], status: int, error: type[Exception]
) -> None:
    script, url = peer
    script.responses.append((status, {}, {"error": "x", "reason": "refused for a reason"}))

    with pytest.raises(error, match="refused for a reason") as raised:
        connector(url).record_history(MAIL, "mail-key-1")

    assert (status == 404) == isinstance(raised.value, NotFound)
    assert len(script.seen) == 1
