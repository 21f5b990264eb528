"""The Google adapters against a real Google account: opt-in, for checking that the
sandbox and the adapters still agree with Google itself.

Runs only when these are set (otherwise every test here reports itself as not run,
with this reason); use a test account, the tests create and delete records of their
own (subjects start with "crmsync live"):

    CRMSYNC_GOOGLE_CLIENT_ID, CRMSYNC_GOOGLE_CLIENT_SECRET   an OAuth web client
    CRMSYNC_GOOGLE_REFRESH_TOKEN   a refresh token of the test account with the "sync"
                                   scopes (contacts, calendar.events, tasks)
    CRMSYNC_GOOGLE_ROOT            optional: another root URL than Google's (the local
                                   sandbox), to try this module itself

    .venv/bin/pytest tests/live
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from crmsync.connections import Grant
from crmsync.engine.plan import Write
from crmsync.model import normalize
from crmsync.providers.google import oauth as google_auth
from crmsync.providers.google.calendar import HELD, GoogleCalendar
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.people import GoogleContacts
from crmsync.providers.google.tasks import GoogleTasks

NEEDED = (
    "CRMSYNC_GOOGLE_CLIENT_ID",
    "CRMSYNC_GOOGLE_CLIENT_SECRET",
    "CRMSYNC_GOOGLE_REFRESH_TOKEN",
)
pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in NEEDED),
    reason="live Google tests need " + ", ".join(NEEDED),
)


@pytest.fixture(scope="module")
def client() -> Iterator[GoogleClient]:
    root = os.environ.get("CRMSYNC_GOOGLE_ROOT", "")
    token_uri = {"token_uri": root + "token"} if root else {}
    oauth = google_auth.GoogleOAuth(
        os.environ["CRMSYNC_GOOGLE_CLIENT_ID"],
        os.environ["CRMSYNC_GOOGLE_CLIENT_SECRET"],
        "http://127.0.0.1/unused",
        **token_uri,
    )
    scopes = frozenset(google_auth.scopes_for(["sync"]))
    grant = Grant("", os.environ["CRMSYNC_GOOGLE_REFRESH_TOKEN"], None, scopes)
    endpoints = {"calendar": root + "calendar/v3/", "people": root, "tasks": root} if root else None
    yield GoogleClient(google_auth.credentials(oauth, google_auth.refresh(oauth, grant)), endpoints)


def subject(what: str) -> str:
    return f"crmsync live {what} {secrets.token_hex(3)}"


def test_RUN4_calendar_round_trip_sync_token_and_etag(client: GoogleClient) -> None:
    calendar = GoogleCalendar(client)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    fields = normalize(
        "activity",
        {
            "subject": subject("event"),
            "start": start,
            "end": start + timedelta(hours=1),
            "timezone": "Europe/Berlin",
        },
    )
    cursor = calendar.changes(None).cursor
    created = calendar.create(
        Write(
            "provider",
            "create",
            "activity",
            fields={n: fields[n] for n in HELD},
            key=secrets.token_hex(8),
        )
    )
    try:
        seen = {r.id: r for r in calendar.changes(cursor).records}
        assert seen[created.id].fields["subject"] == fields["subject"]  # type: ignore[index]
        calendar.update(
            Write(
                "provider", "update", "activity", created.id, {"location": "Hall"}, created.version
            )
        )
        assert calendar.get(created.id).fields["location"] == "Hall"  # type: ignore[index]
    finally:
        calendar.delete(Write("provider", "delete", "activity", created.id))
    assert calendar.get(created.id).fields is None


def test_CON2_contact_in_the_label_round_trip(client: GoogleClient) -> None:
    contacts = GoogleContacts(client, label="crmsync live")
    email = f"live-{secrets.token_hex(4)}@example.com"
    fields = normalize(
        "contact", {"first_name": "Live", "last_name": subject("contact"), "emails": [email]}
    )
    created = contacts.create(
        Write(
            "provider", "create", "contact", fields=fields, key=secrets.token_hex(8), in_scope=True
        )
    )
    try:
        record = contacts.get(created.id)
        assert record.in_scope and record.fields is not None
        assert record.fields["emails"] == (email,)
    finally:
        contacts.delete(Write("provider", "delete", "contact", created.id))


def test_TSK1_task_round_trip_with_a_due_date(client: GoogleClient) -> None:
    tasks = GoogleTasks(client, claimed=lambda task_id: False)
    due = date.today() + timedelta(days=3)
    fields = {"subject": subject("task"), "due": due, "status": "open", "notes": ""}
    created = tasks.create(
        Write("provider", "create", "todo", fields=fields, key=secrets.token_hex(8))
    )
    try:
        tasks.update(Write("provider", "update", "todo", created.id, {"status": "completed"}))
        record = tasks.get(created.id)
        assert record.fields is not None
        assert (record.fields["due"], record.fields["status"]) == (due, "completed")
    finally:
        tasks.delete(Write("provider", "delete", "todo", created.id))
