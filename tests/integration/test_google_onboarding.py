"""crmsync's own Google onboarding against the Google sandbox's OAuth endpoints: signed,
single-use, expiring state and PKCE (AUTH-2), separate services (AUTH-1), grants sealed
at rest (AUTH-2), invalid_grant as a revoked grant (AUTH-3), revoking on disconnect
(AUTH-4)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.auth.state import BadState, begin, finish
from crmsync.auth.vault import LocalKek, TokenVault, VaultError
from crmsync.errors import GrantRevoked, PermanentError
from crmsync.providers.google import oauth as google_auth
from sandbox.google import oauth
from sandbox.google.core import GoogleSandbox
from sandbox.google.server import serve
from tests.integration.test_google_sandbox_oauth import (
    CLIENT_ID,
    CLIENT_SECRET,
    EMAIL,
    REDIRECT_URI,
    consent,
    query,
)

pytestmark = pytest.mark.integration

SECRET = b"state-signing-key-for-tests-0123"
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class States:
    """A StateStore in memory (Firestore `oauth_states` in production)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def put_state(self, nonce: str, record: dict[str, Any]) -> None:
        self.records[nonce] = dict(record)

    def take_state(self, nonce: str) -> dict[str, Any] | None:
        return self.records.pop(nonce, None)


@pytest.fixture
def google(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[GoogleSandbox, google_auth.GoogleOAuth]]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the local sandbox
    sandbox = GoogleSandbox()
    sandbox.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    base, stop = serve(sandbox, modules=["oauth", "people"])
    config = google_auth.GoogleOAuth(
        CLIENT_ID,
        CLIENT_SECRET,
        REDIRECT_URI,
        auth_uri=base + "o/oauth2/auth",
        token_uri=base + "token",
        revoke_uri=base + "revoke",
        certs_uri=base + "oauth2/v1/certs",
    )
    yield sandbox, config
    stop()


def sign_in(
    config: google_auth.GoogleOAuth,
    states: States,
    services: tuple[str, ...] = ("sync",),
    **kw: Any,
) -> dict[str, str]:
    """Start onboarding, consent as the user; the callback's query parameters."""
    started = begin(
        SECRET, states, tenant="t1", user="u1", provider="google", services=services, now=NOW
    )
    url = google_auth.authorization_url(config, services, started.state, started.challenge, EMAIL)
    return query(consent(url, **kw))


def granted(config: google_auth.GoogleOAuth) -> Any:
    """The grant of a whole sign-in: consent, the state checked, the code redeemed."""
    states = States()
    callback = sign_in(config, states)
    pending = finish(SECRET, states, callback["state"], NOW)
    return google_auth.exchange(config, pending.services, callback["code"], pending.verifier)


def test_AUTH2_the_whole_flow_gives_a_refreshable_grant_for_the_sync_scopes(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    states = States()
    callback = sign_in(config, states)

    pending = finish(SECRET, states, callback["state"], NOW + timedelta(minutes=1))
    grant = google_auth.exchange(config, pending.services, callback["code"], pending.verifier)

    assert (pending.tenant, pending.user, pending.services) == ("t1", "u1", ("sync",))
    assert grant.refresh_token
    assert grant.scopes == frozenset(google_auth.scopes_for(["sync"]))
    refreshed = google_auth.refresh(config, grant)
    assert refreshed.access_token != grant.access_token


def test_AUTH2_a_state_is_single_use(google: tuple[GoogleSandbox, google_auth.GoogleOAuth]) -> None:
    _, config = google
    states = States()
    callback = sign_in(config, states)
    finish(SECRET, states, callback["state"], NOW)

    with pytest.raises(BadState, match="used already"):
        finish(SECRET, states, callback["state"], NOW)


@pytest.mark.parametrize("state", [None, "", "forged", "abc.def"])
def test_AUTH2_a_state_crmsync_did_not_sign_is_refused(state: str | None) -> None:
    states = States()
    begin(SECRET, states, tenant="t1", user="u1", provider="google", services=("sync",), now=NOW)

    with pytest.raises(BadState, match="not issued"):
        finish(SECRET, states, state, NOW)

    assert len(states.records) == 1  # a forged state does not use up a real one


def test_AUTH2_a_state_signed_with_another_key_is_refused() -> None:
    states = States()
    started = begin(
        SECRET, states, tenant="t1", user="u1", provider="google", services=("sync",), now=NOW
    )

    with pytest.raises(BadState):
        finish(b"another key entirely, 32 bytes!!", states, started.state, NOW)


def test_AUTH2_a_state_expires(google: tuple[GoogleSandbox, google_auth.GoogleOAuth]) -> None:
    _, config = google
    states = States()
    callback = sign_in(config, states)

    with pytest.raises(BadState, match="too long"):
        finish(SECRET, states, callback["state"], NOW + timedelta(minutes=11))


def test_AUTH2_the_code_does_not_redeem_without_the_states_verifier(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    states = States()
    callback = sign_in(config, states)

    with pytest.raises(PermanentError, match="refused"):
        google_auth.exchange(config, ("sync",), callback["code"], "a-verifier-of-someone-else" * 2)


def test_AUTH1_mail_is_authorised_separately_and_adds_to_sync(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    states = States()
    first = sign_in(config, states)
    google_auth.exchange(
        config, ("sync",), first["code"], finish(SECRET, states, first["state"], NOW).verifier
    )

    second = sign_in(config, states, services=("mail",))
    pending = finish(SECRET, states, second["state"], NOW)
    grant = google_auth.exchange(config, pending.services, second["code"], pending.verifier)

    assert set(google_auth.scopes_for(["mail"])) <= grant.scopes
    assert set(google_auth.scopes_for(["sync"])) <= grant.scopes  # include_granted_scopes


def test_AUTH1_a_scope_the_user_unticked_is_not_assumed_granted(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    states = States()
    tasks = google_auth.SCOPE + "tasks"
    callback = sign_in(config, states, untick=(tasks,))
    pending = finish(SECRET, states, callback["state"], NOW)

    grant = google_auth.exchange(config, pending.services, callback["code"], pending.verifier)

    assert tasks not in grant.scopes
    assert google_auth.SCOPE + "contacts" in grant.scopes


def test_AUTH1_denied_consent_comes_back_without_a_code(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    states = States()

    callback = sign_in(config, states, allow=False)

    assert callback.get("error") == "access_denied"
    assert "code" not in callback
    assert finish(SECRET, states, callback["state"], NOW).user == "u1"  # state still checks


def test_AUTH3_a_revoked_grant_fails_to_refresh_as_grant_revoked(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    grant = granted(config)

    oauth.revoke_all(sandbox, EMAIL)

    with pytest.raises(GrantRevoked):
        google_auth.refresh(config, grant)


def test_AUTH4_disconnect_revokes_the_grant(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    _, config = google
    grant = granted(config)
    assert grant.refresh_token is not None

    google_auth.revoke(config, grant.refresh_token)

    with pytest.raises(GrantRevoked):
        google_auth.refresh(config, grant)


def test_AUTH2_grants_are_sealed_per_connection_and_open_only_there() -> None:
    vault = TokenVault(LocalKek(bytes(range(32))))
    secret = b'{"refresh_token": "1//refresh-token-value"}'

    sealed = vault.seal(secret, "t1/c1")

    assert b"refresh-token-value" not in repr(sealed).encode()
    assert vault.open(sealed, "t1/c1") == secret
    with pytest.raises(VaultError):
        vault.open(sealed, "t1/c2")  # copied to another connection
    with pytest.raises(VaultError):
        TokenVault(LocalKek(bytes(32))).open(sealed, "t1/c1")  # another key
    tampered = {**sealed, "data": sealed["data"][:-4] + "AAAA"}
    with pytest.raises(VaultError):
        vault.open(tampered, "t1/c1")


def test_AUTH2_the_grant_names_its_account_by_googles_signed_id_token(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google

    grant = granted(config)

    assert grant.subject == sandbox.accounts[EMAIL].id and grant.subject
    assert grant.email == EMAIL
    assert set(google_auth.IDENTITY) <= grant.scopes
    assert google_auth.refresh(config, grant).subject == grant.subject  # kept on refresh


def test_AUTH2_an_id_token_of_another_issuer_key_or_client_is_refused(
    google: tuple[GoogleSandbox, google_auth.GoogleOAuth],
) -> None:
    sandbox, config = google
    account = sandbox.add_account(EMAIL)
    assert google_auth.identity(config, oauth.id_token(sandbox, account, CLIENT_ID))["sub"]
    elsewhere = GoogleSandbox()  # signs with a key of its own, which Google never published
    forged = oauth.id_token(elsewhere, elsewhere.add_account(EMAIL), CLIENT_ID)
    for token in (
        forged,
        oauth.id_token(sandbox, account, "another-client.apps.example"),
        None,
        "",
        "not.a.jwt",
    ):
        with pytest.raises(PermanentError):
            google_auth.identity(config, token)
