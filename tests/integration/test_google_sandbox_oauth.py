"""The Google sandbox's OAuth 2.0 web-server flow, driven by the real client libraries
over a real socket: google-auth-oauthlib builds the authorization URL (with PKCE) and
redeems the code, the consent form is submitted as a browser would, and google-auth
refreshes the credentials against the sandbox's token endpoint.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request as AuthRequest
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import InvalidGrantError
from werkzeug.serving import make_server

from sandbox.google import oauth, people
from sandbox.google.core import SCOPE, GoogleSandbox, Router
from sandbox.google.server import _QuietHandler

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "crmsync-web.apps.example", "client-secret-value"
REDIRECT_URI = "http://127.0.0.1:9/oauth/google/callback"  # read, never requested
CONTACTS, TASKS, EVENTS = SCOPE + "contacts", SCOPE + "tasks", SCOPE + "calendar.events"
EMAIL = "ada@example.com"


class Clock:
    """A clock the tests move forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Google:
    sandbox: GoogleSandbox
    base: str
    clock: Clock

    def flow(self, scopes: list[str], **kwargs: Any) -> Flow:
        """A web-client Flow of google-auth-oauthlib pointed at the sandbox."""
        config = {
            "web": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "auth_uri": self.base + "o/oauth2/auth",
                "token_uri": self.base + "token",
                "redirect_uris": [REDIRECT_URI],
            }
        }
        return Flow.from_client_config(config, scopes=scopes, redirect_uri=REDIRECT_URI, **kwargs)

    def token_post(self, data: dict[str, str], **kwargs: Any) -> requests.Response:
        return requests.post(self.base + "token", data=data, timeout=5, **kwargs)

    def api_status(self, access_token: str) -> int:
        """The status People answers this token with when listing connections."""
        response = requests.get(
            self.base + "v1/people/me/connections",
            params={"personFields": "names"},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=5,
        )
        return response.status_code


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[Google]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the local sandbox
    clock = Clock()
    sandbox = GoogleSandbox(clock=clock)
    sandbox.add_client(CLIENT_ID, CLIENT_SECRET, [REDIRECT_URI])
    app = Router(sandbox, oauth.routes(sandbox) + people.routes(sandbox))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    sandbox.base_url = f"http://127.0.0.1:{server.port}/"
    yield Google(sandbox, sandbox.base_url, clock)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


# -- the consent page as a browser sees it ---------------------------------------------------------
class ConsentForm(HTMLParser):
    """The consent page's form: its action, hidden and text inputs, scope checkboxes
    (value, ticked) and submit buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.inputs: dict[str, str] = {}
        self.boxes: list[tuple[str, bool]] = []
        self.buttons: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action") or ""
        elif tag == "input" and found.get("type") == "checkbox":
            self.boxes.append((found.get("value") or "", "checked" in found))
        elif tag == "input":
            self.inputs[found.get("name") or ""] = found.get("value") or ""
        elif tag == "button":
            self.buttons.append(found.get("value") or "")


def open_consent(url: str) -> ConsentForm:
    page = requests.get(url, timeout=5)
    assert page.status_code == 200, page.text
    form = ConsentForm()
    form.feed(page.text)
    return form


def consent(
    url: str, *, email: str = EMAIL, allow: bool = True, untick: tuple[str, ...] = ()
) -> str:
    """Submits the consent form for `url` as the user would; returns the redirect."""
    form = open_consent(url)
    data = [("consent", form.inputs["consent"]), ("email", email)]
    data += [("scope", scope) for scope, ticked in form.boxes if ticked and scope not in untick]
    data.append(("action", "allow" if allow else "deny"))
    answer = requests.post(urljoin(url, form.action), data=data, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def connect(google: Google, scopes: list[str], **params: str) -> tuple[Flow, dict[str, Any]]:
    """The whole flow for EMAIL: authorization URL with PKCE, consent, code exchange."""
    flow = google.flow(scopes)
    url, _state = flow.authorization_url(**params)
    token = flow.fetch_token(authorization_response=consent(url))
    return flow, dict(token)


def refresh_request() -> AuthRequest:
    """google-auth's transport for token refreshes."""
    return AuthRequest()


# -- the flow end to end ---------------------------------------------------------------------------
def test_google_oauth_consent_page_ticks_every_scope_and_prefills_login_hint(
    google: Google,
) -> None:
    url, _state = google.flow([CONTACTS, TASKS]).authorization_url(login_hint=EMAIL)

    form = open_consent(url)

    assert form.inputs["email"] == EMAIL
    assert form.boxes == [(CONTACTS, True), (TASKS, True)]
    assert form.buttons == ["allow", "deny"]


def test_google_oauth_flow_gives_tokens_the_api_accepts_and_refreshes_them(
    google: Google,
) -> None:
    flow, token = connect(google, [CONTACTS, TASKS], prompt="consent")

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert set(token["scope"]) == {CONTACTS, TASKS}
    assert token["refresh_token"]
    grant = google.sandbox.access_tokens[token["access_token"]]
    assert (grant.account.email, grant.scopes) == (EMAIL, frozenset({CONTACTS, TASKS}))
    assert google.api_status(token["access_token"]) == 200

    credentials = flow.credentials
    credentials.refresh(refresh_request())

    assert credentials.token != token["access_token"]
    assert google.api_status(credentials.token) == 200


def test_google_oauth_online_access_gives_no_refresh_token(google: Google) -> None:
    _flow, token = connect(google, [CONTACTS], access_type="online")

    assert "refresh_token" not in token
    assert google.api_status(token["access_token"]) == 200


def test_google_oauth_refresh_token_only_on_first_consent_or_with_prompt_consent(
    google: Google,
) -> None:
    _flow, first = connect(google, [CONTACTS])
    _flow, again = connect(google, [CONTACTS])
    _flow, forced = connect(google, [CONTACTS], prompt="consent")

    assert "refresh_token" in first
    assert "refresh_token" not in again
    assert forced["refresh_token"] != first["refresh_token"]


def test_google_oauth_openid_configuration_names_the_sandbox_endpoints(google: Google) -> None:
    document = requests.get(google.base + ".well-known/openid-configuration", timeout=5).json()

    assert document["authorization_endpoint"] == google.base + "o/oauth2/auth"
    assert document["token_endpoint"] == google.base + "token"
    assert document["revocation_endpoint"] == google.base + "revoke"
    assert "S256" in document["code_challenge_methods_supported"]


# -- state and PKCE --------------------------------------------------------------------------------
def test_AUTH2_state_comes_back_unchanged_and_the_library_accepts_it(google: Google) -> None:
    state = "csrf/ä+ = &odd"
    flow = google.flow([CONTACTS])
    url, returned_state = flow.authorization_url(state=state)

    location = consent(url)

    assert returned_state == state
    assert query(location)["state"] == state
    assert flow.fetch_token(authorization_response=location)["access_token"]


def test_AUTH2_the_authorization_url_carries_an_s256_challenge(google: Google) -> None:
    url, _state = google.flow([CONTACTS]).authorization_url()

    params = query(url)

    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43


def test_AUTH2_code_exchange_without_verifier_is_invalid_grant(google: Google) -> None:
    url, _state = google.flow([CONTACTS]).authorization_url()
    code = query(consent(url))["code"]

    answer = google.token_post(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "Missing code verifier.",
    }


def test_AUTH2_code_exchange_with_wrong_verifier_is_invalid_grant(google: Google) -> None:
    flow = google.flow([CONTACTS])
    url, _state = flow.authorization_url()
    location = consent(url)
    flow.code_verifier = "x" * 64

    with pytest.raises(InvalidGrantError, match="Invalid code verifier"):
        flow.fetch_token(authorization_response=location)


def test_AUTH2_a_code_is_redeemed_only_once(google: Google) -> None:
    flow = google.flow([CONTACTS])
    url, _state = flow.authorization_url()
    code = query(consent(url))["code"]
    flow.fetch_token(code=code)

    with pytest.raises(InvalidGrantError):
        flow.fetch_token(code=code)


def test_AUTH2_a_code_expires_after_ten_minutes(google: Google) -> None:
    flow = google.flow([CONTACTS])
    url, _state = flow.authorization_url()
    code = query(consent(url))["code"]
    google.clock.now += timedelta(minutes=10, seconds=1)

    with pytest.raises(InvalidGrantError):
        flow.fetch_token(code=code)


def test_AUTH2_code_exchange_with_another_redirect_uri_is_refused(google: Google) -> None:
    flow = google.flow([CONTACTS])
    url, _state = flow.authorization_url()
    code = query(consent(url))["code"]

    answer = google.token_post(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/elsewhere",
            "code_verifier": flow.code_verifier,
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "redirect_uri_mismatch"


def test_google_oauth_wrong_client_secret_is_invalid_client(google: Google) -> None:
    answer = google.token_post(
        {"grant_type": "refresh_token", "refresh_token": "1//whatever"},
        auth=(CLIENT_ID, "not-the-secret"),
    )

    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [("unknown-client", REDIRECT_URI), (CLIENT_ID, "https://attacker.example/callback")],
)
def test_google_oauth_bad_client_or_redirect_is_an_error_page_never_a_redirect(
    google: Google, client_id: str, redirect_uri: str
) -> None:
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": CONTACTS,
        "state": "s",
    }

    answer = requests.get(
        google.base + "o/oauth2/auth?" + urlencode(params), allow_redirects=False, timeout=5
    )

    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "Location" not in answer.headers


# -- what the user grants --------------------------------------------------------------------------
def test_google_oauth_denied_consent_redirects_with_access_denied(google: Google) -> None:
    url, state = google.flow([CONTACTS]).authorization_url()

    location = consent(url, allow=False)

    assert location.startswith(REDIRECT_URI + "?")
    assert query(location) == {"error": "access_denied", "state": state}


def test_google_oauth_deny_needs_no_account_email(google: Google) -> None:
    """First hour: a user who presses Deny without naming an account is sent back to
    the app (which explains), not stopped on the provider's error page."""
    url, state = google.flow([CONTACTS]).authorization_url()

    location = consent(url, email="", allow=False)

    assert query(location) == {"error": "access_denied", "state": state}


def test_google_oauth_unticked_scope_is_not_granted(
    google: Google, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")  # Google may grant fewer scopes
    flow = google.flow([CONTACTS, TASKS])
    url, _state = flow.authorization_url()

    location = consent(url, untick=(CONTACTS,))
    token = flow.fetch_token(authorization_response=location)

    assert query(location)["scope"] == TASKS
    assert token["scope"] == [TASKS]
    assert google.api_status(token["access_token"]) == 403


def test_google_oauth_incremental_authorisation_grants_the_union(
    google: Google, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    _flow, first = connect(google, [CONTACTS])

    _flow, second = connect(google, [TASKS], include_granted_scopes="true")
    _flow, alone = connect(google, [EVENTS])

    assert set(second["scope"]) == {CONTACTS, TASKS}
    assert "refresh_token" not in second
    assert set(alone["scope"]) == {EVENTS}
    credentials = Credentials(
        None,
        refresh_token=first["refresh_token"],
        token_uri=google.base + "token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )
    credentials.refresh(refresh_request())
    assert google.sandbox.access_tokens[credentials.token].scopes == {CONTACTS, TASKS}


# -- revocation and invalid_grant ------------------------------------------------------------------
def test_google_oauth_revoking_the_access_token_revokes_the_refresh_token(
    google: Google,
) -> None:
    flow, token = connect(google, [CONTACTS])

    revoked = requests.post(
        google.base + "revoke", data={"token": token["access_token"]}, timeout=5
    )

    assert revoked.status_code == 200
    assert google.api_status(token["access_token"]) == 401
    with pytest.raises(RefreshError, match="invalid_grant"):
        flow.credentials.refresh(refresh_request())
    again = requests.post(google.base + "revoke", data={"token": token["refresh_token"]}, timeout=5)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_token")


def test_google_oauth_revoking_an_unknown_token_is_invalid_token(google: Google) -> None:
    answer = requests.post(google.base + "revoke", data={"token": "ya29.unknown"}, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_token"


def test_AUTH3_refresh_after_the_user_removed_access_is_invalid_grant(google: Google) -> None:
    flow, token = connect(google, [CONTACTS])
    oauth.revoke_all(google.sandbox, EMAIL)

    answer = google.token_post(
        {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    with pytest.raises(RefreshError, match="invalid_grant"):
        flow.credentials.refresh(refresh_request())
    assert google.api_status(token["access_token"]) == 401


def test_AUTH3_an_unknown_refresh_token_is_invalid_grant(google: Google) -> None:
    credentials = Credentials(
        None,
        refresh_token="1//never-issued",
        token_uri=google.base + "token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )

    with pytest.raises(RefreshError, match="invalid_grant"):
        credentials.refresh(refresh_request())


def test_google_oauth_expired_access_tokens_fail_until_refreshed(google: Google) -> None:
    flow, token = connect(google, [CONTACTS])
    oauth.expire_access_tokens(google.sandbox, EMAIL)

    credentials = flow.credentials
    credentials.refresh(refresh_request())

    assert google.api_status(token["access_token"]) == 401
    assert google.api_status(credentials.token) == 200
