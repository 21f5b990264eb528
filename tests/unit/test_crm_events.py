"""Change events from the CRM (the contract's crmChanged webhook): signed, fresh and
well-formed, or refused with a reason (RUN-1 and RUN-3: an event only
triggers a cycle)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.crm.events import BadEvent, parse, sign, verify

SECRET = b"tenant-event-secret"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
EVENT = {
    "tenant": "t1",
    "user": "u1",
    "kind": "activity",
    "ids": ["a-1", "a-2"],
    "sent_at": "2026-11-02T08:59:58+00:00",
}


def body(**changes: object) -> bytes:
    return json.dumps({**EVENT, **changes}).encode()


def test_RUN1_signed_fresh_event_is_accepted() -> None:
    event = verify(SECRET, sign(SECRET, body(), NOW - timedelta(seconds=2)), body(), NOW)

    assert (event.tenant, event.user, event.kind, event.ids) == (
        "t1",
        "u1",
        "activity",
        ("a-1", "a-2"),
    )


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("v1=abc", "malformed"),
        (sign(b"another secret", body(), NOW), "does not match"),
        (sign(SECRET, body(), NOW - timedelta(minutes=6)), "five minutes"),
        (sign(SECRET, body(), NOW + timedelta(minutes=6)), "five minutes"),
    ],
)
def test_RUN1_unsigned_forged_or_stale_event_is_refused(header: str | None, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        verify(SECRET, header, body(), NOW)


def test_RUN1_a_signature_covers_the_whole_body() -> None:
    header = sign(SECRET, body(), NOW)

    with pytest.raises(BadEvent, match="does not match"):
        verify(SECRET, header, body(ids=["a-1", "a-9"]), NOW)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "exactly"),
        (body(kind="widget"), "kind"),
        (body(ids="a-1"), "list"),
        (body(ids=["a 1"]), "ids must be ids"),
        (body(tenant="../t2"), "tenant and user"),
        (body(sent_at="yesterday"), "ISO 8601"),
        (body(sent_at="2026-11-02T08:59:58"), "time zone"),
        (json.dumps({**EVENT, "extra": 1}).encode(), "exactly"),
    ],
)
def test_SYN5_malformed_event_is_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadEvent, match=reason):
        parse(raw)
