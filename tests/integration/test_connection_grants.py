"""A connection's Google grant over its life, against the Google sandbox's token and
revoke endpoints: sealed at rest, refreshed before expiry under a lock (AUTH-2),
needs_reauth on invalid_grant (AUTH-3), disconnect erases everything of crmsync's
and revokes (AUTH-4)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.connections import Grant, Grants, disconnect
from crmsync.engine.records import Link
from crmsync.errors import GrantRevoked, TransientError
from crmsync.providers.google import oauth as google_auth
from crmsync.providers.google.push import channel_record
from crmsync.store.memory import MemoryStore
from sandbox.google import oauth
from sandbox.google.core import GoogleSandbox
from sandbox.google.server import serve

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET = "crmsync-web.apps.example", "client-secret"
EMAIL = "dana@example.com"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def google() -> Iterator[tuple[GoogleSandbox, google_auth.GoogleOAuth]]:
    sandbox = GoogleSandbox(clock=lambda: NOW)
    sandbox.add_client(CLIENT_ID, SECRET, ["http://127.0.0.1:9/cb"])
    base, stop = serve(sandbox, modules=["oauth", "people"])
    yield (
        sandbox,
        google_auth.GoogleOAuth(
            CLIENT_ID,
            SECRET,
            "http://127.0.0.1:9/cb",
            auth_uri=base + "o/oauth2/auth",
            token_uri=base + "token",
            revoke_uri=base + "revoke",
            certs_uri=base + "oauth2/v1/certs",
        ),
    )
    stop()


def connected(
    sandbox: GoogleSandbox, config: google_auth.GoogleOAuth, expires: datetime
) -> tuple[MemoryStore, Grants]:
    store = MemoryStore()
    grants = Grants(store, TokenVault(LocalKek(bytes(range(32)))), "t1")
    scopes = frozenset(google_auth.scopes_for(["sync"]))
    refresh_token = oauth.issue_refresh_token(sandbox, EMAIL, scopes, CLIENT_ID)
    grants.save("c1", Grant("ya29.old-access", refresh_token, expires, scopes))
    return store, grants


def test_AUTH2_a_grant_is_stored_only_sealed(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    store, grants = connected(sandbox, config, NOW + timedelta(hours=1))

    sealed = store.sealed_grant("c1")

    assert sealed is not None
    assert "ya29.old-access" not in str(sealed)
    assert grants.load("c1").access_token == "ya29.old-access"


def test_AUTH2_a_grant_far_from_expiry_is_used_as_it_is(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    _, grants = connected(sandbox, config, NOW + timedelta(hours=1))

    grant = grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW)

    assert grant.access_token == "ya29.old-access"


def test_AUTH2_a_grant_about_to_expire_is_refreshed_and_stored(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    _, grants = connected(sandbox, config, NOW + timedelta(minutes=2))

    grant = grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW)

    assert grant.access_token != "ya29.old-access"
    assert grants.load("c1").access_token == grant.access_token
    assert grant.refresh_token == grants.load("c1").refresh_token


def test_AUTH2_only_one_worker_refreshes_a_grant_at_a_time(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    store, grants = connected(sandbox, config, NOW + timedelta(minutes=2))
    store.acquire_lease("c1#grant", "another worker", NOW, 60)

    with pytest.raises(TransientError, match="another worker"):
        grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW)

    assert grants.load("c1").access_token == "ya29.old-access"


def test_AUTH3_a_refused_refresh_marks_the_connection_needs_reauth_and_keeps_the_rest(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    store, grants = connected(sandbox, config, NOW + timedelta(minutes=2))
    store.save_link("c1", Link("k1", "contact", "crm-1", "people/c1"))
    oauth.revoke_all(sandbox, EMAIL)

    with pytest.raises(GrantRevoked):
        grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW)

    assert store.status("c1")[0] == "needs_reauth"
    assert store.linked_count("c1", "contact") == 1  # nothing else is lost
    assert store.lease_holder("c1#grant") is None


def test_AUTH3_a_token_endpoint_that_is_down_is_tried_again_and_asks_no_one_to_reconnect(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    store, grants = connected(sandbox, config, NOW + timedelta(minutes=2))
    sandbox.inject(503, path=r"^token$", times=20)  # more than google-auth's own retries

    with pytest.raises(TransientError):
        grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW)

    assert store.status("c1")[0] == "active"
    sandbox.faults.clear()
    assert grants.fresh("c1", functools.partial(google_auth.refresh, config), NOW).access_token


def test_AUTH4_disconnect_revokes_stops_channels_and_erases_everything_of_crmsync(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    store, grants = connected(sandbox, config, NOW + timedelta(hours=1))
    store.save_link("c1", Link("k1", "contact", "crm-1", "people/c1"))
    store.save_cursor("c1", "crm", "contact", "42")
    store.save_run("c1", {"id": "run-1", "status": "ok"})
    store.save_channel(channel_record("ch-1", "t1", "c1", "res-1", "digest", NOW))
    store.save_link("c2", Link("k9", "contact", "crm-9", "people/c9"))  # another connection
    stopped: list[str] = []
    before = grants.load("c1")

    problems = disconnect(
        store,
        grants,
        "c1",
        functools.partial(google_auth.revoke, config),
        lambda channel: stopped.append(channel.id),
    )

    assert problems == []
    assert stopped == ["ch-1"]
    assert store.sealed_grant("c1") is None
    assert store.linked_count("c1", "contact") == 0
    assert store.cursor("c1", "crm", "contact") is None
    assert store.runs("c1") == []
    assert store.channel("ch-1") is None
    assert store.status("c1")[0] == "disconnected"
    assert store.linked_count("c2", "contact") == 1
    with pytest.raises(GrantRevoked):  # Google no longer honours the refresh token
        google_auth.refresh(config, before)
