"""Microsoft's identity platform (v2.0 endpoints) as msal's confidential client uses it.

    GET  {tenant}/v2.0/.well-known/openid-configuration   the tenant's OpenID metadata
    GET  {tenant}/discovery/v2.0/keys                      the keys that sign ID tokens
    GET  {tenant}/oauth2/v2.0/authorize                    the sign-in and consent page
    POST {tenant}/oauth2/v2.0/authorize                    that page's form: accept or cancel
    POST {tenant}/oauth2/v2.0/token                        authorization_code, refresh_token

`{tenant}` is the tenant's id, `common`, `organizations`, or a domain of one of its
users; anything else is an unknown tenant (400 `invalid_tenant`). A code is single use,
lives ten minutes, and must come back with its redirect URI and, when the request
carried a PKCE challenge, the matching verifier. A refresh token is issued only for
`offline_access`; each refresh returns a new one, and the one spent is dead
(`invalid_grant` on reuse) while `IdentityState.rotation_kills_spent` holds. That is
stricter than Entra, which replaces refresh tokens on use without revoking the old one,
so a client that keeps the newest token behaves right under both. ID tokens are RS256
JWTs signed by the key published at the jwks_uri, with `oid`, `tid`,
`preferred_username`, `email`, the authorize request's `nonce`, `aud` the client id and
`iss` the metadata's issuer.

Errors at the token endpoint use Entra's JSON (`error`, `error_description` starting
with its AADSTS number, `error_codes`, `timestamp`, `trace_id`, `correlation_id`). A bad
client or redirect URI at the authorize endpoint is a 400 page, never a redirect.

Tests act as the user with `consent(authorize_url, email, verify=ca_path)`, which loads
the page and submits its form as a browser would.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from sandbox.microsoft.core import App, Grant, MicrosoftSandbox, Route, User, json_response, route

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH_RESOURCE = "https://graph.microsoft.com/"
CODE_LIFETIME = timedelta(minutes=10)
REFRESH_LIFETIME = timedelta(days=90)
ID_TOKEN_SECONDS = 3600
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Handler = Callable[[MicrosoftSandbox, Request, str], Response]


class TokenError(Exception):
    """An error of the token endpoint, in Entra's JSON form."""

    def __init__(self, error: str, aadsts: int, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.aadsts, self.description, self.status = error, aadsts, description, status

    def response(self, now: datetime) -> Response:
        trace = str(uuid.uuid4())
        body = {
            "error": self.error,
            "error_description": f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace}",
            "error_codes": [self.aadsts],
            "timestamp": now.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": str(uuid.uuid4()),
        }
        return json_response(body, self.status, NO_STORE)


class PageError(Exception):
    """A bad authorization request, shown as a 400 page (never redirected)."""

    def __init__(self, aadsts: int, description: str) -> None:
        super().__init__(description)
        self.aadsts, self.description = aadsts, description


@dataclass(frozen=True)
class AuthRequest:
    """The validated parameters of one authorization request."""

    tenant: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    nonce: str | None
    challenge: str | None
    challenge_method: str
    login_hint: str
    client_info: bool


@dataclass
class IssuedCode:
    request: AuthRequest
    user: User
    expires: datetime


@dataclass
class RefreshGrant:
    user: User
    client_id: str
    scopes: frozenset[str]
    expires: datetime
    spent: bool = False
    revoked: bool = False


@dataclass
class IdentityState:
    pending: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshGrant] = field(default_factory=dict)
    redeemed: set[str] = field(default_factory=set)
    key: Any = None  # the RSA private key ID tokens are signed with
    key_id: str = field(default_factory=lambda: secrets.token_urlsafe(20))
    token_seconds: int = 3600  # how long an access token lasts
    rotation_kills_spent: bool = True  # a refresh token works once (see the module's doc)


_STATES: weakref.WeakKeyDictionary[MicrosoftSandbox, IdentityState] = weakref.WeakKeyDictionary()


def state_of(sandbox: MicrosoftSandbox) -> IdentityState:
    with sandbox.lock:
        return _STATES.setdefault(sandbox, IdentityState())


def _signing_key(sandbox: MicrosoftSandbox) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    state = state_of(sandbox)
    with sandbox.lock:
        if state.key is None:
            state.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return state.key


# -- helpers for tests ---------------------------------------------------------------------------
def consent(authorize_url: str, email: str, *, verify: str, accept: bool = True) -> dict[str, str]:
    """Act as the user at the authorize page: load it, sign in as `email` and accept (or
    cancel). Returns the query parameters the browser is redirected with (`code`,
    `state`, ... or `error`), which is what msal's `acquire_token_by_auth_code_flow`
    takes as its auth response."""
    back = consent_redirect(authorize_url, email, verify=verify, accept=accept)
    return dict(parse_qsl(urlsplit(back).query))


def consent_redirect(authorize_url: str, email: str, *, verify: str, accept: bool = True) -> str:
    """As `consent`, but the whole address the browser is sent back to (the app's
    redirect URI with the answer in its query)."""
    import requests

    page = requests.get(authorize_url, verify=verify, timeout=5, allow_redirects=False)
    if page.status_code != 200:
        raise ValueError(f"the authorize page answered {page.status_code}: {page.text[:300]}")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    request_id = re.search(r'name="request_id" value="([^"]+)"', page.text)
    if action is None or request_id is None:
        raise ValueError("the authorize page has no sign-in form")
    form = {
        "request_id": html.unescape(request_id.group(1)),
        "login": email,
        "action": "accept" if accept else "cancel",
    }
    answer = requests.post(
        urljoin(authorize_url, html.unescape(action.group(1))),
        data=form,
        verify=verify,
        timeout=5,
        allow_redirects=False,
    )
    if answer.status_code != 302:
        raise ValueError(f"the consent form answered {answer.status_code}: {answer.text[:300]}")
    return str(answer.headers["Location"])


def revoke_sessions(sandbox: MicrosoftSandbox, email: str) -> None:
    """An admin revoked the user's sessions: every refresh token of `email` gets
    `invalid_grant`; access tokens already issued keep working until they expire."""
    with sandbox.lock:
        for grant in state_of(sandbox).refresh_tokens.values():
            if grant.user.email == email:
                grant.revoked = True


def expire_access_tokens(sandbox: MicrosoftSandbox, email: str) -> None:
    """Every access token of `email` is past its expiry (Graph answers 401)."""
    with sandbox.lock:
        now = sandbox.clock()
        for grant in sandbox.access_tokens.values():
            if grant.user.email == email:
                grant.expires = now


def issue_refresh_token(
    sandbox: MicrosoftSandbox, email: str, scopes: set[str] | frozenset[str], client_id: str
) -> str:
    """A refresh token of `client_id` for `email`, as if the user had signed in with
    offline_access (for tests that refresh without running the browser flow)."""
    with sandbox.lock:
        user = sandbox.add_user(email)
        return _mint_refresh(sandbox, user, client_id, _resource_scopes(scopes))


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    """The identity platform's endpoints; none needs a bearer token."""

    def bind(handler: Handler) -> Callable[..., Response]:
        def serve(request: Request, _user: User | None, tenant: str) -> Response:
            if not _known_tenant(sandbox, tenant):
                return TokenError(
                    "invalid_tenant", 90002, f"Tenant '{tenant}' not found."
                ).response(sandbox.clock())
            return handler(sandbox, request, tenant)

        return serve

    return [
        route("GET", "{tenant}/v2.0/.well-known/openid-configuration", bind(_metadata), None),
        route("GET", "{tenant}/discovery/v2.0/keys", bind(_keys), None),
        route("GET", "{tenant}/oauth2/v2.0/authorize", bind(_authorize), None),
        route("POST", "{tenant}/oauth2/v2.0/authorize", bind(_submit), None),
        route("POST", "{tenant}/oauth2/v2.0/token", bind(_token), None),
    ]


def _known_tenant(sandbox: MicrosoftSandbox, tenant: str) -> bool:
    if tenant in (sandbox.tenant_id, "common", "organizations"):
        return True
    return any(user.email.split("@")[-1] == tenant for user in sandbox.users.values())


def issuer(sandbox: MicrosoftSandbox) -> str:
    return f"{sandbox.base_url}/{sandbox.tenant_id}/v2.0"


def _metadata(sandbox: MicrosoftSandbox, _request: Request, tenant: str) -> Response:
    root = f"{sandbox.base_url}/{tenant}"
    shown_issuer = (
        f"{sandbox.base_url}/{{tenantid}}/v2.0"
        if tenant in ("common", "organizations")
        else issuer(sandbox)
    )
    return json_response(
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": shown_issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{sandbox.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "email",
                "oid",
            ],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }
    )


def _keys(sandbox: MicrosoftSandbox, _request: Request, _tenant: str) -> Response:
    from jwt.algorithms import RSAAlgorithm

    public = _signing_key(sandbox).public_key()
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    jwk.update({"kid": state_of(sandbox).key_id, "use": "sig", "issuer": issuer(sandbox)})
    return json_response({"keys": [jwk]})


# -- authorization endpoint ----------------------------------------------------------------------
def _authorize(sandbox: MicrosoftSandbox, request: Request, tenant: str) -> Response:
    try:
        app, redirect_uri = _app_and_redirect(sandbox, request.args)
    except PageError as exc:
        return _error_page(exc)
    try:
        auth = _parse_auth_request(tenant, app, redirect_uri, request.args)
    except TokenError as exc:
        params = {"error": exc.error, "error_description": f"AADSTS{exc.aadsts}: {exc}"}
        state = request.args.get("state")
        return _redirect(redirect_uri, {**params, **({"state": state} if state else {})})
    request_id = secrets.token_urlsafe(16)
    state_of(sandbox).pending[request_id] = auth
    return _sign_in_page(request_id, auth, request.path)


def _app_and_redirect(sandbox: MicrosoftSandbox, args: Mapping[str, str]) -> tuple[App, str]:
    app = sandbox.apps.get(args.get("client_id", ""))
    if app is None:
        raise PageError(
            700016, f"Application with identifier '{args.get('client_id', '')}' was not found."
        )
    redirect_uri = args.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:
        raise PageError(
            50011,
            f"The redirect URI '{redirect_uri}' specified in the request does not match "
            "the redirect URIs configured for the application.",
        )
    return app, redirect_uri


def _parse_auth_request(
    tenant: str, app: App, redirect_uri: str, args: Mapping[str, str]
) -> AuthRequest:
    if args.get("response_type") != "code":
        raise TokenError("unsupported_response_type", 700054, "response_type must be 'code'.")
    scopes = frozenset(args.get("scope", "").split())
    if not scopes:
        raise TokenError("invalid_request", 900144, "The request body must contain 'scope'.")
    method = args.get("code_challenge_method", "plain")
    if method not in ("plain", "S256"):
        raise TokenError("invalid_request", 501491, "Invalid code_challenge_method.")
    return AuthRequest(
        tenant=tenant,
        client_id=app.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=args.get("state"),
        nonce=args.get("nonce"),
        challenge=args.get("code_challenge") or None,
        challenge_method=method,
        login_hint=args.get("login_hint", ""),
        client_info=args.get("client_info") == "1",
    )


def _sign_in_page(request_id: str, auth: AuthRequest, action: str) -> Response:
    """A plain form a browser or `consent` submits: the account, then Accept or Cancel."""
    asked = "".join(
        f"<li>{html.escape(s)}</li>" for s in sorted(auth.scopes) if s not in OIDC_SCOPES
    )
    page = (
        "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
        f"<h1>{html.escape(auth.client_id)} needs your permission</h1><ul>{asked}</ul>"
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="request_id" value="{html.escape(request_id)}">'
        '<label>Email <input type="email" name="login" '
        f'value="{html.escape(auth.login_hint)}"></label>'
        '<button type="submit" name="action" value="accept">Accept</button>'
        '<button type="submit" name="action" value="cancel">Cancel</button>'
        "</form></body></html>"
    )
    return Response(page, mimetype="text/html")


def _error_page(exc: PageError) -> Response:
    page = (
        "<!doctype html><html><head><title>Sign in to your account</title></head><body>"
        f"<h1>AADSTS{exc.aadsts}</h1><p>{html.escape(exc.description)}</p></body></html>"
    )
    return Response(page, status=400, mimetype="text/html")


def _submit(sandbox: MicrosoftSandbox, request: Request, _tenant: str) -> Response:
    """Accept: a code for the user (added to the tenant if new); Cancel: access_denied."""
    form: MultiDict[str, str] = request.form
    auth = state_of(sandbox).pending.pop(form.get("request_id", ""), None)
    if auth is None:
        return _error_page(PageError(90014, "This sign-in request is no longer valid."))
    email = form.get("login", "").strip()
    if not email:
        return _error_page(PageError(900144, "An account is required."))
    params: dict[str, str]
    if form.get("action") != "accept":
        params = {
            "error": "access_denied",
            "error_description": "AADSTS65004: User declined to consent to access the app.",
        }
    else:
        user = sandbox.add_user(email)
        code = "1.A" + secrets.token_urlsafe(48)
        state_of(sandbox).codes[code] = IssuedCode(auth, user, sandbox.clock() + CODE_LIFETIME)
        params = {"code": code}
        if auth.client_info:
            params["client_info"] = _client_info(sandbox, user)
    if auth.state is not None:
        params["state"] = auth.state
    if "code" in params:
        params["session_state"] = str(uuid.uuid4())
    return _redirect(auth.redirect_uri, params)


def _redirect(redirect_uri: str, params: dict[str, str]) -> Response:
    parts = urlsplit(redirect_uri)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    response = Response(status=302)
    response.headers["Location"] = urlunsplit(parts._replace(query=query))
    return response


def _client_info(sandbox: MicrosoftSandbox, user: User) -> str:
    raw = json.dumps({"uid": user.oid, "utid": sandbox.tenant_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# -- token endpoint ------------------------------------------------------------------------------
def _token(sandbox: MicrosoftSandbox, request: Request, _tenant: str) -> Response:
    try:
        app = _authenticate_app(sandbox, request)
        grant_type = request.form.get("grant_type", "")
        if grant_type == "authorization_code":
            body = _redeem_code(sandbox, app, request.form)
        elif grant_type == "refresh_token":
            body = _refresh(sandbox, app, request.form)
        else:
            raise TokenError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
    except TokenError as exc:
        return exc.response(sandbox.clock())
    return json_response(body, headers=NO_STORE)


def _authenticate_app(sandbox: MicrosoftSandbox, request: Request) -> App:
    """The app by client_id and client_secret in the body, or by HTTP Basic."""
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        client_id, secret = basic.username or "", basic.password or ""
    else:
        client_id = request.form.get("client_id", "")
        secret = request.form.get("client_secret", "")
    app = sandbox.apps.get(client_id)
    if app is None:
        raise TokenError(
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found.",
        )
    if not secrets.compare_digest(app.secret, secret):
        raise TokenError("invalid_client", 7000215, "Invalid client secret provided.", status=401)
    return app


def _redeem_code(sandbox: MicrosoftSandbox, app: App, form: MultiDict[str, str]) -> dict[str, Any]:
    """Redeems a code once; its app, redirect URI and PKCE verifier must match."""
    state = state_of(sandbox)
    code = form.get("code", "")
    issued = state.codes.pop(code, None)
    if issued is None:
        if code in state.redeemed:
            raise TokenError(
                "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed."
            )
        raise TokenError(
            "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid."
        )
    state.redeemed.add(code)
    if issued.expires <= sandbox.clock():
        raise TokenError("invalid_grant", 70008, "The provided authorization code has expired.")
    auth = issued.request
    if auth.client_id != app.client_id:
        raise TokenError("invalid_grant", 70000, "The code was issued to another application.")
    if form.get("redirect_uri") != auth.redirect_uri:
        raise TokenError(
            "invalid_grant",
            50148,
            "The redirect_uri does not match the one of the authorization request.",
        )
    _check_verifier(auth, form.get("code_verifier"))
    return _token_body(sandbox, issued.user, app.client_id, auth.scopes, auth.nonce)


def _check_verifier(auth: AuthRequest, verifier: str | None) -> None:
    if auth.challenge is None:
        return
    if not verifier:
        raise TokenError("invalid_request", 50148, "The code_verifier is missing.")
    expected = verifier
    if auth.challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    if not secrets.compare_digest(expected, auth.challenge):
        raise TokenError(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the "
            "authorization request.",
        )


def _refresh(sandbox: MicrosoftSandbox, app: App, form: MultiDict[str, str]) -> dict[str, Any]:
    """New tokens for a live refresh token, which is then spent (rotation); `scope` may
    name any part of the consented scopes."""
    state = state_of(sandbox)
    grant = state.refresh_tokens.get(form.get("refresh_token", ""))
    if grant is None or grant.client_id != app.client_id:
        raise TokenError(
            "invalid_grant", 9002313, "Invalid request. Malformed or invalid refresh token."
        )
    if grant.revoked:
        raise TokenError(
            "invalid_grant", 50173, "The provided grant has expired due to it being revoked."
        )
    if grant.spent and state.rotation_kills_spent:
        raise TokenError(
            "invalid_grant", 70008, "The refresh token has already been used to get new tokens."
        )
    if grant.expires <= sandbox.clock():
        raise TokenError(
            "invalid_grant", 700082, "The refresh token has expired due to inactivity."
        )
    asked = frozenset(form.get("scope", "").split()) or grant.scopes | {"openid", "offline_access"}
    if not _resource_scopes(asked) <= grant.scopes:
        raise TokenError(
            "invalid_grant",
            65001,
            "The user has not consented to use the application for these scopes.",
        )
    grant.spent = True
    return _token_body(sandbox, grant.user, app.client_id, asked, None)


def _resource_scopes(scopes: set[str] | frozenset[str]) -> frozenset[str]:
    """Graph's scopes among `scopes`, by short name (`Contacts.ReadWrite`)."""
    return frozenset(s.removeprefix(GRAPH_RESOURCE) for s in scopes if s not in OIDC_SCOPES)


def _token_body(
    sandbox: MicrosoftSandbox,
    user: User,
    client_id: str,
    scopes: frozenset[str],
    nonce: str | None,
) -> dict[str, Any]:
    state = state_of(sandbox)
    resource = _resource_scopes(scopes)
    token = "EwB" + secrets.token_urlsafe(48)
    expires = sandbox.clock() + timedelta(seconds=state.token_seconds)
    sandbox.access_tokens[token] = Grant(user, client_id, resource, expires)
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": " ".join(sorted(resource | (scopes & OIDC_SCOPES))),
        "expires_in": state.token_seconds,
        "ext_expires_in": state.token_seconds,
        "access_token": token,
        "client_info": _client_info(sandbox, user),
    }
    if "offline_access" in scopes:
        body["refresh_token"] = _mint_refresh(sandbox, user, client_id, resource)
    if "openid" in scopes:
        body["id_token"] = id_token(sandbox, user, client_id, nonce)
    return body


def _mint_refresh(
    sandbox: MicrosoftSandbox, user: User, client_id: str, scopes: frozenset[str]
) -> str:
    token = "1.A" + secrets.token_urlsafe(64)
    expires = sandbox.clock() + REFRESH_LIFETIME
    state_of(sandbox).refresh_tokens[token] = RefreshGrant(user, client_id, scopes, expires)
    return token


def id_token(sandbox: MicrosoftSandbox, user: User, client_id: str, nonce: str | None) -> str:
    """An ID token of `user` for `client_id`, as the token endpoint issues it."""
    import jwt

    now = int(sandbox.clock().timestamp())
    pairwise = hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest()
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": issuer(sandbox),
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_SECONDS,
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.email,
        "email": user.email,
        "sub": base64.urlsafe_b64encode(pairwise).decode().rstrip("="),
        "tid": sandbox.tenant_id,
        "ver": "2.0",
    }
    if nonce is not None:
        claims["nonce"] = nonce
    headers = {"kid": state_of(sandbox).key_id}
    return jwt.encode(claims, _signing_key(sandbox), algorithm="RS256", headers=headers)
