"""Google's OAuth 2.0 web-server flow with the official libraries (AUTH-1..AUTH-4).

Two services are authorised separately, each with its own scopes: "sync" (contacts,
calendar events, tasks) and "mail" (Gmail labels and modify). Consent asks for offline
access (a refresh token), PKCE protects the code, and `include_granted_scopes` makes a
second consent add to the first instead of replacing it. Users may untick scopes, so
what was granted is read from the token answer, never assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import requests
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import id_token as google_id_token
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow

from crmsync.connections import Grant, Identity
from crmsync.errors import GrantRevoked, PermanentError, TransientError

SCOPE = "https://www.googleapis.com/auth/"
# Who consented: Google's ID token names the account by its stable `sub`, which a
# connection is bound to, and its address. Google grants these with any consent.
IDENTITY = ("openid", SCOPE + "userinfo.email")
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_SECONDS = 60
# The narrowest scopes that do the job; the calendar list (to pick a calendar, SET-1)
# needs its own read-only scope.
SERVICES: dict[str, tuple[str, ...]] = {
    "sync": (
        SCOPE + "contacts",
        SCOPE + "calendar.events",
        SCOPE + "calendar.calendarlist.readonly",
        SCOPE + "tasks",
    ),
    "mail": (SCOPE + "gmail.labels", SCOPE + "gmail.modify"),
}


@dataclass(frozen=True)
class GoogleOAuth:
    """The OAuth client crmsync is registered as, and Google's endpoints (the sandbox's
    in development and tests)."""

    client_id: str
    client_secret: str
    redirect_uri: str
    auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    token_uri: str = "https://oauth2.googleapis.com/token"
    revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    certs_uri: str = "https://www.googleapis.com/oauth2/v1/certs"  # signs ID tokens

    def flow(self, scopes: Iterable[str]) -> Flow:
        config = {
            "web": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "auth_uri": self.auth_uri,
                "token_uri": self.token_uri,
                "redirect_uris": [self.redirect_uri],
            }
        }
        return Flow.from_client_config(
            config,
            scopes=list(scopes),
            redirect_uri=self.redirect_uri,
            autogenerate_code_verifier=False,
        )


def scopes_for(services: Iterable[str]) -> list[str]:
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services: {sorted(unknown)}")
    return sorted({*IDENTITY, *(scope for service in services for scope in SERVICES[service])})


def authorization_url(
    oauth: GoogleOAuth, services: Iterable[str], state: str, challenge: str, login_hint: str = ""
) -> str:
    """Where to send the user to consent."""
    flow = oauth.flow(scopes_for(services))
    extra = {"login_hint": login_hint} if login_hint else {}
    url, _ = flow.authorization_url(
        state=state,
        access_type="offline",
        include_granted_scopes="true",
        prompt="consent",
        code_challenge=challenge,
        code_challenge_method="S256",
        **extra,
    )
    return str(url)


def exchange(oauth: GoogleOAuth, services: Iterable[str], code: str, verifier: str) -> Grant:
    """Redeem the callback's code with the PKCE verifier kept for its state."""
    flow = oauth.flow(scopes_for(services))
    flow.code_verifier = verifier
    try:
        token = flow.fetch_token(code=code, code_verifier=verifier)
    except Warning as changed:  # granular consent: fewer scopes than asked; take them
        token = changed.token  # type: ignore[attr-defined]
    except Exception as exc:  # oauthlib raises its own error types for RFC 6749 answers
        raise PermanentError(
            f"Google refused the authorization code: {type(exc).__name__}"
        ) from exc
    claims = identity(oauth, token.get("id_token"))
    expires = token.get("expires_at")
    return Grant(
        access_token=str(token["access_token"]),
        refresh_token=token.get("refresh_token"),
        expires=datetime.fromtimestamp(float(expires), UTC) if expires else None,
        scopes=frozenset(_scopes(token.get("scope"))),
        subject=str(claims["sub"]),
        email=str(claims.get("email", "")),
    )


def identity(oauth: GoogleOAuth, id_token: object) -> dict[str, object]:
    """The claims of the ID token that came with a grant: signed by Google (its published
    certificates), issued to crmsync's client, not expired, naming the account (`sub`)."""
    if not isinstance(id_token, str) or not id_token:
        raise PermanentError("Google did not say which account consented (no ID token)")
    try:
        claims = dict(
            google_id_token.verify_token(
                id_token,
                Request(),
                audience=oauth.client_id,
                certs_url=oauth.certs_uri,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        )
    except (ValueError, GoogleAuthError) as exc:
        raise PermanentError(f"Google's ID token does not verify: {type(exc).__name__}") from exc
    if claims.get("iss") not in ISSUERS or not claims.get("sub"):
        raise PermanentError("Google's ID token names no account of Google's")
    return claims


def sign_in_url(
    oauth: GoogleOAuth, state: str, challenge: str, nonce: str, login_hint: str = ""
) -> str:
    """Google's account chooser for signing in to the web app: OpenID Connect with the
    identity scopes only (no access to the user's data), PKCE and a nonce."""
    flow = oauth.flow(IDENTITY)
    extra = {"login_hint": login_hint} if login_hint else {}
    url, _ = flow.authorization_url(
        state=state,
        nonce=nonce,
        prompt="select_account",
        code_challenge=challenge,
        code_challenge_method="S256",
        **extra,
    )
    return str(url)


def signed_in(oauth: GoogleOAuth, code: str, verifier: str, nonce: str) -> Identity:
    """The account that signed in: the code redeemed with its PKCE verifier, the ID token
    verified (Google's signature, crmsync's client as audience, not expired, Google as
    issuer) and bound to this sign-in by its nonce."""
    flow = oauth.flow(IDENTITY)
    try:
        token = flow.fetch_token(code=code, code_verifier=verifier)
    except Exception as exc:  # oauthlib raises its own error types for RFC 6749 answers
        raise PermanentError(f"Google refused the sign-in code: {type(exc).__name__}") from exc
    claims = identity(oauth, token.get("id_token"))
    if not nonce or claims.get("nonce") != nonce:
        raise PermanentError("Google's ID token is not of this sign-in (its nonce differs)")
    return Identity(
        subject=str(claims["sub"]),
        email=str(claims.get("email", "")).lower(),
        email_verified=claims.get("email_verified") is True,
        directory=str(claims.get("hd", "")),
    )


def credentials(oauth: GoogleOAuth, grant: Grant) -> Credentials:
    return Credentials(  # type: ignore[no-untyped-call]
        token=grant.access_token,
        refresh_token=grant.refresh_token,
        token_uri=oauth.token_uri,
        client_id=oauth.client_id,
        client_secret=oauth.client_secret,
        scopes=sorted(grant.scopes),
        expiry=grant.expires.replace(tzinfo=None) if grant.expires else None,
    )


def refresh(oauth: GoogleOAuth, grant: Grant) -> Grant:
    """A fresh access token; GrantRevoked when Google says `invalid_grant` (AUTH-3), a
    TransientError when its token endpoint is down or throttling (tried again later:
    an outage at Google never asks users to reconnect)."""
    creds = credentials(oauth, grant)
    try:
        creds.refresh(Request())  # type: ignore[no-untyped-call]
    except RefreshError as exc:
        raise refresh_error(exc) from exc
    except TransportError as exc:
        raise TransientError("Google's token endpoint is unreachable") from exc
    expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry else None
    return replace(grant, access_token=str(creds.token), expires=expiry)


def refresh_error(exc: RefreshError) -> Exception:
    """A refused refresh as crmsync's error: only a final answer revokes the grant."""
    if getattr(exc, "retryable", False):
        return TransientError("Google's token endpoint failed; trying again later")
    return GrantRevoked("the Google grant no longer works; the user must reconnect")


def revoke(oauth: GoogleOAuth, token: str) -> None:
    """Revoke the grant (AUTH-4); one Google no longer knows is revoked already."""
    try:
        response = requests.post(oauth.revoke_uri, data={"token": token}, timeout=10)
    except requests.RequestException as exc:
        raise TransientError("Google's revoke endpoint is unreachable") from exc
    if response.status_code >= 500:
        raise TransientError(f"Google's revoke endpoint answered {response.status_code}")


def _scopes(value: object) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []
