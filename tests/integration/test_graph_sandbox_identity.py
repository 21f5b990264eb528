"""The Microsoft sandbox's identity platform, driven by the real msal over https: msal
reads the tenant's OpenID metadata, builds the authorize URL (PKCE and nonce), the user
signs in on the sandbox's page, and msal redeems the code and refreshes against the
token endpoint. The server's certificate comes from a throwaway CA that msal and requests
are told to trust.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import jwt
import msal
import pytest
import requests

from sandbox.microsoft import identity
from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.server import serve, trusting_session

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET = "6731de76-14a6-49ae-97bc-6eba6914391e", "sandbox-secret-value"
REDIRECT_URI = "http://127.0.0.1:9/oauth/microsoft/callback"  # read, never requested
SCOPES = ["Calendars.ReadWrite", "Contacts.ReadWrite", "Tasks.ReadWrite"]
EMAIL = "ada@contoso.example"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Entra:
    sandbox: MicrosoftSandbox
    base: str
    ca: str
    clock: Clock

    @property
    def authority(self) -> str:
        return f"{self.base}/{self.sandbox.tenant_id}"

    def app(self, secret: str = SECRET) -> msal.ConfidentialClientApplication:
        return msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=secret,
            authority=self.authority,
            instance_discovery=False,
            http_client=trusting_session(self.ca),
        )

    def sign_in(self, app: msal.ConfidentialClientApplication) -> dict[str, Any]:
        flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, login_hint=EMAIL)
        answer = identity.consent(flow["auth_uri"], EMAIL, verify=self.ca)
        result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, answer)
        return result

    def token_post(self, data: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{self.authority}/oauth2/v2.0/token", data=data, verify=self.ca, timeout=5
        )


@pytest.fixture
def entra() -> Iterator[Entra]:
    clock = Clock()
    sandbox = MicrosoftSandbox(clock=clock)
    sandbox.add_app(CLIENT_ID, SECRET, [REDIRECT_URI])
    served = serve(sandbox, modules=["identity"])
    yield Entra(sandbox, served.base_url, served.ca_path, clock)
    served.stop()


def test_AUTH1_msal_signs_in_over_https_and_gets_tokens_with_the_users_oid_and_tid(
    entra: Entra,
) -> None:
    result = entra.sign_in(entra.app())

    assert "error" not in result, result
    assert result["access_token"] and result["refresh_token"]
    claims = result["id_token_claims"]
    user = entra.sandbox.users[EMAIL]
    assert (claims["oid"], claims["tid"]) == (user.oid, entra.sandbox.tenant_id)
    assert claims["preferred_username"] == claims["email"] == EMAIL
    assert claims["aud"] == CLIENT_ID
    assert set(SCOPES) <= set(result["scope"].split())


def test_AUTH1_the_id_token_is_signed_by_the_key_at_the_metadatas_jwks_uri(entra: Entra) -> None:
    result = entra.sign_in(entra.app())
    metadata = requests.get(
        f"{entra.authority}/v2.0/.well-known/openid-configuration", verify=entra.ca, timeout=5
    ).json()
    keys = requests.get(metadata["jwks_uri"], verify=entra.ca, timeout=5).json()["keys"]
    kid = jwt.get_unverified_header(result["id_token"])["kid"]
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == kid))

    claims = jwt.decode(
        result["id_token"],
        key.key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=metadata["issuer"],
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )

    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == int(entra.clock.now.timestamp())


def test_AUTH1_the_id_token_carries_the_nonce_msal_sent(entra: Entra) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    sent_nonce = parse_qs(urlsplit(flow["auth_uri"]).query)["nonce"][0]
    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca)

    result = app.acquire_token_by_auth_code_flow(flow, answer)

    assert result["id_token_claims"]["nonce"] == sent_nonce


def test_AUTH1_the_authorize_redirect_carries_the_code_and_msals_state(entra: Entra) -> None:
    flow = entra.app().initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca)

    assert answer["state"] == flow["state"] and answer["code"]
    client_info = json.loads(base64.urlsafe_b64decode(answer["client_info"] + "=="))
    assert client_info == {
        "uid": entra.sandbox.users[EMAIL].oid,
        "utid": entra.sandbox.tenant_id,
    }


def test_AUTH1_a_user_who_cancels_is_sent_back_with_access_denied(entra: Entra) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca, accept=False)
    result = app.acquire_token_by_auth_code_flow(flow, answer)

    assert result["error"] == "access_denied"


def test_AUTH1_form_post_answers_a_page_that_posts_the_code_and_state_to_the_redirect_uri(
    entra: Entra,
) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post")
    page = requests.get(flow["auth_uri"], verify=entra.ca, timeout=5)
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
    assert request_id is not None

    answer = requests.post(
        flow["auth_uri"].split("?")[0],
        data={"request_id": request_id.group(1), "login": EMAIL, "action": "accept"},
        verify=entra.ca,
        timeout=5,
        allow_redirects=False,
    )

    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert f'<form method="POST" name="hiddenform" action="{REDIRECT_URI}">' in answer.text
    assert "document.forms[0].submit()" in answer.text
    posted = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', answer.text))
    assert posted["state"] == flow["state"] and posted["code"]
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, posted)


def test_AUTH1_a_cancel_under_form_post_posts_access_denied(entra: Entra) -> None:
    flow = entra.app().initiate_auth_code_flow(
        SCOPES, redirect_uri=REDIRECT_URI, response_mode="form_post"
    )

    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca, accept=False)

    assert answer["error"] == "access_denied" and answer["state"] == flow["state"]


def test_AUTH1_an_unknown_response_mode_is_sent_back_as_invalid_request(entra: Entra) -> None:
    flow = entra.app().initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)

    answer = requests.get(
        flow["auth_uri"] + "&response_mode=web_message",
        verify=entra.ca,
        timeout=5,
        allow_redirects=False,
    )

    assert answer.status_code == 302
    back = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))
    assert back["error"] == "invalid_request" and back["state"] == flow["state"]


def test_AUTH1_an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
    entra: Entra,
) -> None:
    flow = entra.app().initiate_auth_code_flow(SCOPES, redirect_uri="https://evil.example/cb")

    page = requests.get(flow["auth_uri"], verify=entra.ca, timeout=5, allow_redirects=False)

    assert page.status_code == 400 and "AADSTS50011" in page.text
    assert "Location" not in page.headers


def test_AUTH3_a_refresh_returns_a_new_refresh_token(entra: Entra) -> None:
    app = entra.app()
    first = entra.sign_in(app)

    refreshed = app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)

    assert "error" not in refreshed, refreshed
    assert refreshed["refresh_token"] != first["refresh_token"]
    assert refreshed["access_token"] != first["access_token"]
    assert refreshed["id_token_claims"]["oid"] == first["id_token_claims"]["oid"]


def test_AUTH3_a_spent_refresh_token_gets_invalid_grant(entra: Entra) -> None:
    app = entra.app()
    first = entra.sign_in(app)
    app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)

    again = app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)

    assert again["error"] == "invalid_grant"
    assert again["error_codes"] == [70008]


def test_AUTH3_the_newest_refresh_token_keeps_working_through_rotations(entra: Entra) -> None:
    app = entra.app()
    token = entra.sign_in(app)["refresh_token"]

    for _ in range(3):
        result = app.acquire_token_by_refresh_token(token, SCOPES)
        assert "error" not in result, result
        token = result["refresh_token"]


def test_AUTH3_refresh_tokens_of_a_user_whose_sessions_were_revoked_get_invalid_grant(
    entra: Entra,
) -> None:
    app = entra.app()
    first = entra.sign_in(app)
    identity.revoke_sessions(entra.sandbox, EMAIL)

    result = app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)

    assert result["error"] == "invalid_grant" and result["error_codes"] == [50173]


def test_AUTH3_an_unused_refresh_token_expires_after_90_days(entra: Entra) -> None:
    app = entra.app()
    first = entra.sign_in(app)
    entra.clock.now += timedelta(days=91)

    result = app.acquire_token_by_refresh_token(first["refresh_token"], SCOPES)

    assert result["error"] == "invalid_grant"


def test_AUTH1_a_code_whose_pkce_verifier_does_not_match_is_refused(entra: Entra) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca)
    flow["code_verifier"] = "a-verifier-the-authorize-request-never-saw-" + "x" * 10

    result = app.acquire_token_by_auth_code_flow(flow, answer)

    assert result["error"] == "invalid_grant" and result["error_codes"] == [501481]


def test_AUTH1_a_code_is_redeemed_once(entra: Entra) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca)
    verifier = flow["code_verifier"]
    assert "error" not in app.acquire_token_by_auth_code_flow(dict(flow), answer)

    again = entra.token_post(
        {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "code": answer["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    )

    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant" and again.json()["error_codes"] == [54005]


def test_AUTH1_a_code_older_than_ten_minutes_gets_invalid_grant(entra: Entra) -> None:
    app = entra.app()
    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT_URI)
    answer = identity.consent(flow["auth_uri"], EMAIL, verify=entra.ca)
    entra.clock.now += timedelta(minutes=11)

    result = app.acquire_token_by_auth_code_flow(flow, answer)

    assert result["error"] == "invalid_grant" and result["error_codes"] == [70008]


def test_AUTH1_an_unknown_code_gets_invalid_grant(entra: Entra) -> None:
    verifier = "v" * 43
    answer = entra.token_post(
        {
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "code": "1.Anever-issued",
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    )

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert answer.json()["error_description"].startswith("AADSTS")


def test_AUTH1_a_wrong_client_secret_gets_invalid_client(entra: Entra) -> None:
    app = entra.app(secret="not-the-secret")

    result = entra.sign_in(app)

    assert result["error"] == "invalid_client"


def test_AUTH1_the_metadata_names_this_servers_https_endpoints(entra: Entra) -> None:
    metadata = requests.get(
        f"{entra.authority}/v2.0/.well-known/openid-configuration", verify=entra.ca, timeout=5
    ).json()

    assert metadata["issuer"] == f"{entra.authority}/v2.0"
    assert metadata["authorization_endpoint"] == f"{entra.authority}/oauth2/v2.0/authorize"
    assert metadata["token_endpoint"] == f"{entra.authority}/oauth2/v2.0/token"
    assert all(
        metadata[name].startswith("https://")
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")
    )


def test_AUTH1_an_unknown_tenant_is_refused_by_msal(entra: Entra) -> None:
    with pytest.raises(ValueError):
        msal.ConfidentialClientApplication(
            CLIENT_ID,
            client_credential=SECRET,
            authority=f"{entra.base}/not-a-tenant",
            instance_discovery=False,
            http_client=trusting_session(entra.ca),
        )


def test_the_sandbox_is_trusted_only_through_its_own_ca(entra: Entra) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{entra.authority}/v2.0/.well-known/openid-configuration", timeout=5)


def test_pkce_challenge_check_matches_rfc7636_s256() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).decode().rstrip("=") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_AUTH1_msals_own_verify_works_once_no_ca_bundle_variable_overrides_it(
    entra: Entra, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=SECRET,
        authority=entra.authority,
        instance_discovery=False,
        verify=entra.ca,
    )

    result = entra.sign_in(app)

    assert "error" not in result, result
