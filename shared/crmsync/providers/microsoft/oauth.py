"""Microsoft's identity platform through msal (a confidential client): the consent
screen, redeeming the callback's code, the account that consented, refreshing.

msal makes each flow's PKCE verifier and nonce itself; crmsync keeps them with its own
signed, single-use state (`Consent.secret`) and gives them back to msal at the callback,
where msal checks the ID token's nonce and audience. The ID token comes straight from
the token endpoint over TLS to an authenticated client, which is how OpenID Connect
lets such a client trust it without checking its signature (Core 1.0, 3.1.3.7).

The connection is bound to the account's stable id, `tid/oid` (the tenant and the
object id of the user), as Google connections are to `sub`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import msal
import requests

from crmsync.auth.state import Consent
from crmsync.connections import Grant, Identity
from crmsync.errors import GrantRevoked, PermanentError, TransientError

# What each service a user connects may do in their mailbox (AUTH-1); msal adds
# openid, profile and offline_access itself.
SCOPES: dict[str, tuple[str, ...]] = {
    "sync": ("Contacts.ReadWrite", "Calendars.ReadWrite", "Tasks.ReadWrite"),
    "mail": ("Mail.ReadWrite", "MailboxSettings.ReadWrite"),
}
# Answers that only the user can mend by consenting again (AUTH-3).
REAUTH = frozenset({"invalid_grant", "interaction_required", "consent_required"})
FLOW_STATE = "checked"  # crmsync checks the state itself before msal sees the callback


@dataclass(frozen=True)
class MicrosoftOAuth:
    """crmsync's app registration at Microsoft (multi-tenant), and where its identity
    platform answers: Microsoft's own, or the sandbox's with the CA that signs it."""

    client_id: str
    client_secret: str
    redirect_uri: str
    authority: str = "https://login.microsoftonline.com/organizations"
    ca_path: str = ""  # a CA bundle to trust instead of the system's (the sandbox's)


def scopes_for(services: Iterable[str]) -> list[str]:
    return sorted({scope for service in services for scope in SCOPES.get(service, ())})


def https_session(ca_path: str = "") -> requests.Session:
    """A session for Microsoft's endpoints; with a CA of its own it trusts only that CA,
    whatever the environment says (REQUESTS_CA_BUNDLE would override `verify`)."""
    session = requests.Session()
    if ca_path:
        session.trust_env = False
        session.verify = ca_path
    return session


@cache
def _app(oauth: MicrosoftOAuth) -> msal.ConfidentialClientApplication:
    """One msal client per registration and process (it reads the authority's metadata
    once)."""
    session = https_session(oauth.ca_path)
    try:
        return msal.ConfidentialClientApplication(
            oauth.client_id,
            client_credential=oauth.client_secret,
            authority=oauth.authority,
            instance_discovery=not oauth.ca_path,
            http_client=session,
        )
    except (requests.RequestException, ValueError) as exc:
        raise TransientError("Microsoft's identity platform cannot be reached") from exc


def consent(
    oauth: MicrosoftOAuth, services: Iterable[str], state: str, login_hint: str = ""
) -> Consent:
    """Where to send the user to consent, and the flow's secrets to keep for the callback."""
    flow = _app(oauth).initiate_auth_code_flow(
        scopes_for(services),
        redirect_uri=oauth.redirect_uri,
        state=state,
        login_hint=login_hint or None,
        prompt="select_account",
        # the code comes back in a POSTed form, never in a URL (oauth_callback takes both)
        response_mode="form_post",
    )
    kept = {"verifier": flow["code_verifier"], "nonce": flow["nonce"], "scope": flow["scope"]}
    return Consent(str(flow["auth_uri"]), json.dumps(kept))


def exchange(oauth: MicrosoftOAuth, code: str, secret: str, now: datetime) -> Grant:
    """Redeem the callback's code with the flow's kept secrets (PKCE, nonce)."""
    return _grant(_redeem(oauth, code, secret, "authorization"), now)


def _redeem(oauth: MicrosoftOAuth, code: str, secret: str, what: str) -> dict[str, Any]:
    """msal's answer to the callback's code, redeemed with the flow's kept secrets;
    msal checks the ID token's nonce and audience."""
    try:
        kept = json.loads(secret)
        flow = {
            "state": FLOW_STATE,
            "redirect_uri": oauth.redirect_uri,
            "scope": kept["scope"],
            "code_verifier": kept["verifier"],
            "nonce": kept["nonce"],
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError("the sign-in's kept secrets are unreadable") from exc
    try:
        result: dict[str, Any] = _app(oauth).acquire_token_by_auth_code_flow(
            flow, {"state": FLOW_STATE, "code": code}
        )
    except (ValueError, RuntimeError) as exc:  # msal's own checks (the nonce, the state)
        raise PermanentError(f"Microsoft's answer did not check out: {type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise TransientError("Microsoft's token endpoint is unreachable") from exc
    if "error" in result:
        raise PermanentError(f"Microsoft refused the {what} code: {result['error']}")
    return result


def sign_in(oauth: MicrosoftOAuth, state: str, login_hint: str = "") -> Consent:
    """The account chooser for signing in to the web app: OpenID Connect with no
    resource scope (msal asks for openid and profile), its PKCE verifier and nonce kept
    for the callback. The answer comes back in the query: the code is single use and
    bound to the verifier, and the browser then still carries its sign-in cookie
    (SameSite=Lax), which a cross-site form POST would not."""
    with warnings.catch_warnings():  # msal recommends form_post; the query is chosen
        warnings.simplefilter("ignore", UserWarning)
        flow = _app(oauth).initiate_auth_code_flow(
            [],
            redirect_uri=oauth.redirect_uri,
            state=state,
            login_hint=login_hint or None,
            prompt="select_account",
        )
    kept = {"verifier": flow["code_verifier"], "nonce": flow["nonce"], "scope": flow["scope"]}
    return Consent(str(flow["auth_uri"]), json.dumps(kept))


def signed_in(oauth: MicrosoftOAuth, code: str, secret: str) -> Identity:
    """The account that signed in, from the ID token msal checked (nonce, audience,
    issuer): its tenant and object id, its sign-in name. Microsoft does not verify that
    the address is the user's mailbox, so it is not marked verified."""
    result = _redeem(oauth, code, secret, "sign-in")
    claims = result.get("id_token_claims") or {}
    tenant, user = claims.get("tid"), claims.get("oid")
    if not tenant or not user:
        raise PermanentError("Microsoft did not say which account signed in (no tid / oid)")
    address = claims.get("preferred_username") or claims.get("email") or ""
    return Identity(f"{tenant}/{user}", str(address).lower(), False, str(tenant))


def refresh(oauth: MicrosoftOAuth, grant: Grant, now: datetime) -> Grant:
    """A fresh access token; Microsoft rotates the refresh token on each use, so the
    new one replaces the old (the caller saves it under the connection's lock).
    GrantRevoked when only the user can mend it (AUTH-3); TransientError otherwise."""
    if not grant.refresh_token:
        raise GrantRevoked("the Microsoft grant cannot be refreshed; the user must reconnect")
    resource = sorted(s for s in grant.scopes if "." in s)
    try:
        result = _app(oauth).acquire_token_by_refresh_token(grant.refresh_token, resource)
    except requests.RequestException as exc:
        raise TransientError("Microsoft's token endpoint is unreachable") from exc
    error = result.get("error")
    if error in REAUTH:
        raise GrantRevoked("the Microsoft grant no longer works; the user must reconnect")
    if error:
        raise TransientError(f"Microsoft's token endpoint answered {error}")
    return replace(
        grant,
        access_token=str(result["access_token"]),
        refresh_token=str(result.get("refresh_token") or grant.refresh_token),
        expires=_expires(result, now),
    )


def _grant(result: dict[str, Any], now: datetime) -> Grant:
    claims = result.get("id_token_claims") or {}
    tenant, user = claims.get("tid"), claims.get("oid")
    if not tenant or not user:
        raise PermanentError("Microsoft did not say which account consented (no tid / oid)")
    return Grant(
        access_token=str(result["access_token"]),
        refresh_token=result.get("refresh_token"),
        expires=_expires(result, now),
        scopes=frozenset(str(result.get("scope", "")).split()),
        subject=f"{tenant}/{user}",
        email=str(claims.get("preferred_username") or claims.get("email") or ""),
    )


def _expires(result: dict[str, Any], now: datetime) -> datetime:
    seconds = float(result.get("expires_in") or 3600)
    return now.astimezone(UTC) + timedelta(seconds=seconds)


# -- organisation-wide consent -------------------------------------------------------------------
def admin_consent_url(oauth: MicrosoftOAuth, state: str) -> str:
    """The v2.0 admin consent endpoint of the authority's tenant (`organizations` for a
    multi-tenant app: the admin's own organisation), asking for every delegated
    permission crmsync may use, sync and mail."""
    from urllib.parse import urlencode

    every = sorted({scope for scopes in SCOPES.values() for scope in scopes})
    query = {
        "client_id": oauth.client_id,
        "scope": " ".join(f"https://graph.microsoft.com/{s}" for s in every),
        "redirect_uri": oauth.redirect_uri,
        "state": state,
    }
    return f"{oauth.authority.rstrip('/')}/v2.0/adminconsent?{urlencode(query)}"


def admin_consented(answer: Mapping[str, str]) -> str:
    """The directory id of the organisation whose admin granted consent: the answer says
    `admin_consent=True` and names the tenant."""
    directory = str(answer.get("tenant") or "")
    if str(answer.get("admin_consent", "")).lower() != "true" or not directory:
        raise PermanentError("the admin consent answer does not say consent was granted")
    return directory
