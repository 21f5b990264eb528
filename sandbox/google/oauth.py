"""Google's OAuth 2.0 web-server flow as google-auth-oauthlib and google-auth use it.

    GET  o/oauth2/auth      the consent page (validates client, redirect URI and parameters)
    POST o/oauth2/auth      the consent form: Allow redirects with a code, Deny with an error
    POST token              authorization_code and refresh_token grants (RFC 6749 JSON errors)
    POST revoke             revokes the whole grant of an access or refresh token
    GET  oauth2/v1/certs    the certificates that sign ID tokens, by key id
    GET  .well-known/openid-configuration   these endpoints under the sandbox's own root

A code redeemed for a grant with the `openid` scope also brings an ID token (RS256,
issued by accounts.google.com to the client, `sub` the account's stable id, `email`),
as Google's does. Google grants the identity scopes with any consent, so the consent
page offers no box for them.

Access tokens land in `GoogleSandbox.access_tokens` with the granted scopes, so every API
module accepts them. A bad client or redirect URI is answered with a 400 page and never
redirected, as Google does, so a code can never reach an unregistered address.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Request, Response

from sandbox.google.core import Account, Client, GoogleSandbox, Grant, Route, json_response, route

AUTH_PATH = "o/oauth2/auth"
CODE_LIFETIME = timedelta(minutes=10)
PROMPTS = frozenset({"none", "consent", "select_account"})
IDENTITY_SCOPES = frozenset(
    {"openid", "email", "profile", "https://www.googleapis.com/auth/userinfo.email"}
)
ISSUER = "https://accounts.google.com"
ID_TOKEN_SECONDS = 3600
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

Handler = Callable[[GoogleSandbox, Request], Response]


class OAuthError(Exception):
    """An RFC 6749 error answered by the token and revoke endpoints as JSON."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return json_response(body, self.status, NO_STORE)


class PageError(Exception):
    """A bad authorization request, shown to the user as a 400 page (never redirected)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass(frozen=True)
class AuthRequest:
    """The validated parameters of one authorization request."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    challenge: str | None
    challenge_method: str
    offline: bool
    prompts: frozenset[str]
    include_granted: bool
    login_hint: str
    nonce: str = ""  # OpenID Connect: echoed in the ID token, so the client can bind it


@dataclass
class IssuedCode:
    """An authorization code: single use, valid for ten minutes."""

    request: AuthRequest
    email: str
    scopes: frozenset[str]
    first_consent: bool
    expires: datetime


@dataclass
class OAuthState:
    """The flow's state: shown consent pages, issued codes, and what each account has
    granted each client so far (Google remembers it for incremental authorisation)."""

    pending: dict[str, AuthRequest] = field(default_factory=dict)
    codes: dict[str, IssuedCode] = field(default_factory=dict)
    consents: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    signing: SigningKey | None = None


@dataclass(frozen=True)
class SigningKey:
    """The RSA key ID tokens are signed with, and its self-signed certificate."""

    key_id: str
    private_pem: bytes
    certificate_pem: str


def _signing_key(sandbox: GoogleSandbox) -> SigningKey:
    state = _state(sandbox)
    with sandbox.lock:
        if state.signing is None:
            state.signing = _new_signing_key(sandbox.clock())
        return state.signing


def _new_signing_key(now: datetime) -> SigningKey:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.google.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return SigningKey(secrets.token_hex(20), private, pem)


def id_token(sandbox: GoogleSandbox, account: Account, client_id: str, nonce: str = "") -> str:
    """An ID token of `account` for `client_id`, as Google's token endpoint issues it,
    with the authorization request's `nonce` when it had one."""
    now = int(sandbox.clock().timestamp())
    claims = {
        "iss": ISSUER,
        "azp": client_id,
        "aud": client_id,
        "sub": account.id,
        "email": account.email,
        "email_verified": True,
        "iat": now,
        "exp": now + ID_TOKEN_SECONDS,
    }
    if nonce:
        claims["nonce"] = nonce
    return sign(sandbox, claims)


def sign(sandbox: GoogleSandbox, claims: dict[str, object]) -> str:
    """A JWT of `claims` signed with the key the sandbox publishes at oauth2/v1/certs."""
    from google.auth import crypt, jwt

    key = _signing_key(sandbox)
    signer = crypt.RSASigner.from_string(key.private_pem, key.key_id)
    return jwt.encode(signer, claims).decode()


_STATES: weakref.WeakKeyDictionary[GoogleSandbox, OAuthState] = weakref.WeakKeyDictionary()


def _state(sandbox: GoogleSandbox) -> OAuthState:
    with sandbox.lock:
        return _STATES.setdefault(sandbox, OAuthState())


# -- helpers for tests ---------------------------------------------------------------------------
def revoke_all(sandbox: GoogleSandbox, email: str) -> None:
    """The user removed the app's access: every token of `email` stops working, so each
    refresh gets `invalid_grant`, and the next consent counts as a first one again."""
    with sandbox.lock:
        for grant in _grants(sandbox):
            if grant.account.email == email:
                grant.revoked = True
        state = _state(sandbox)
        state.consents = {key: s for key, s in state.consents.items() if key[0] != email}
        state.codes = {c: issued for c, issued in state.codes.items() if issued.email != email}


def revoke_refresh_token(sandbox: GoogleSandbox, token: str) -> None:
    """The grant behind a refresh token ends, as when its user removes the app's access:
    every token of that account and client is revoked."""
    with sandbox.lock:
        grant = sandbox.refresh_tokens.get(token)
        if grant is not None:
            _end_grant(sandbox, grant.account.email, grant.client_id)


def _end_grant(sandbox: GoogleSandbox, email: str, client_id: str) -> None:
    """Every token of the account's grant to the client is revoked, and its consent."""
    for each in _grants(sandbox):
        if each.account.email == email and each.client_id == client_id:
            each.revoked = True
    _state(sandbox).consents.pop((email, client_id), None)


def expire_access_tokens(sandbox: GoogleSandbox, email: str) -> None:
    """Every access token of `email` is past its expiry (API calls get 401); refresh
    tokens keep working, so a client recovers by refreshing."""
    with sandbox.lock:
        now = sandbox.clock()
        for grant in sandbox.access_tokens.values():
            if grant.account.email == email:
                grant.expires = now


def issue_refresh_token(
    sandbox: GoogleSandbox, email: str, scopes: set[str] | frozenset[str], client_id: str
) -> str:
    """A refresh token of `client_id` for `email`, as if the user had consented offline
    (for tests that need refreshing without running the browser flow)."""
    with sandbox.lock:
        account = sandbox.add_account(email)
        key = (email, client_id)
        state = _state(sandbox)
        state.consents[key] = state.consents.get(key, frozenset()) | frozenset(scopes)
        return _mint_refresh(sandbox, account, client_id, frozenset(scopes))


def _grants(sandbox: GoogleSandbox) -> list[Grant]:
    return [*sandbox.access_tokens.values(), *sandbox.refresh_tokens.values()]


def _mint_access(
    sandbox: GoogleSandbox, account: Account, client_id: str, scopes: frozenset[str]
) -> str:
    token = "ya29." + secrets.token_urlsafe(32)
    expires = sandbox.clock() + timedelta(seconds=sandbox.token_seconds)
    sandbox.access_tokens[token] = Grant(account, client_id, scopes, expires)
    return token


def _mint_refresh(
    sandbox: GoogleSandbox, account: Account, client_id: str, scopes: frozenset[str]
) -> str:
    token = "1//" + secrets.token_urlsafe(48)
    sandbox.refresh_tokens[token] = Grant(account, client_id, scopes)
    return token


# -- routes --------------------------------------------------------------------------------------
def routes(sandbox: GoogleSandbox) -> list[Route]:
    """The authorization server's endpoints; none needs a bearer token."""

    def bind(handler: Handler) -> Callable[[Request, Account | None], Response]:
        return lambda request, _account: handler(sandbox, request)

    return [
        route("GET", AUTH_PATH, bind(_authorize), None),
        route("POST", AUTH_PATH, bind(_submit_consent), None),
        route("POST", "token", bind(_token), None),
        route("POST", "revoke", bind(_revoke), None),
        route("GET", ".well-known/openid-configuration", bind(_openid_configuration), None),
        route("GET", "oauth2/v1/certs", bind(_certs), None),
    ]


def _certs(sandbox: GoogleSandbox, _request: Request) -> Response:
    key = _signing_key(sandbox)
    return json_response({key.key_id: key.certificate_pem})


def _openid_configuration(_sandbox: GoogleSandbox, request: Request) -> Response:
    """Google's discovery document, pointing at this server instead of Google's hosts."""
    root = request.host_url
    return json_response(
        {
            "issuer": root.rstrip("/"),
            "authorization_endpoint": root + AUTH_PATH,
            "token_endpoint": root + "token",
            "revocation_endpoint": root + "revoke",
            "jwks_uri": root + "oauth2/v1/certs",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
        }
    )


# -- authorization endpoint ----------------------------------------------------------------------
def _authorize(sandbox: GoogleSandbox, request: Request) -> Response:
    """Validates the request and shows the consent page (or answers prompt=none at once)."""
    try:
        auth = _parse_auth_request(sandbox, request.args)
    except PageError as exc:
        return _error_page(exc)
    if "none" in auth.prompts:
        return _silent_consent(sandbox, auth)
    consent_id = secrets.token_urlsafe(16)
    _state(sandbox).pending[consent_id] = auth
    return _consent_page(consent_id, auth, request.script_root + "/" + AUTH_PATH)


def _parse_auth_request(sandbox: GoogleSandbox, args: Mapping[str, str]) -> AuthRequest:
    client = sandbox.clients.get(args.get("client_id", ""))
    if client is None:
        raise PageError("invalid_client", "The OAuth client was not found.")
    redirect_uri = args.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        raise PageError(
            "redirect_uri_mismatch", f"The redirect URI {redirect_uri!r} is not registered."
        )
    if args.get("response_type") != "code":
        raise PageError("unsupported_response_type", "response_type must be code.")
    scopes = tuple(dict.fromkeys(args.get("scope", "").split()))
    if not scopes:
        raise PageError("invalid_request", "Missing required parameter: scope")
    return AuthRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=args.get("state"),
        challenge_method=_challenge_method(args),
        challenge=args.get("code_challenge") or None,
        offline=_access_type(args.get("access_type", "online")),
        prompts=_prompts(args.get("prompt", "")),
        include_granted=_flag(args.get("include_granted_scopes", "false")),
        login_hint=args.get("login_hint", ""),
        nonce=args.get("nonce", ""),
    )


def _challenge_method(args: Mapping[str, str]) -> str:
    method = args.get("code_challenge_method", "plain")
    if method not in ("plain", "S256"):
        raise PageError("invalid_request", f"Invalid code_challenge_method: {method}")
    if "code_challenge_method" in args and not args.get("code_challenge"):
        raise PageError("invalid_request", "Missing code_challenge.")
    return method


def _access_type(value: str) -> bool:
    if value not in ("online", "offline"):
        raise PageError("invalid_request", f"Invalid access_type: {value}")
    return value == "offline"


def _prompts(value: str) -> frozenset[str]:
    prompts = frozenset(value.split())
    if not prompts <= PROMPTS or ("none" in prompts and len(prompts) > 1):
        raise PageError("invalid_request", f"Invalid prompt: {value}")
    return prompts


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise PageError("invalid_request", f"Invalid boolean value: {value}")
    return value == "true"


def _consent_page(consent_id: str, auth: AuthRequest, action: str) -> Response:
    """A plain form a browser or a test submits: e-mail prefilled from login_hint, one
    ticked checkbox per scope (unticking grants less), Allow and Deny buttons."""
    boxes = "".join(
        f'<li><label><input type="checkbox" name="scope" value="{html.escape(s)}" checked> '
        f"{html.escape(s)}</label></li>"
        for s in auth.scopes
        if s not in IDENTITY_SCOPES
    )
    page = (
        "<!doctype html><html><head><title>Sign in - Google Accounts</title></head><body>"
        f"<h1>{html.escape(auth.client_id)} wants to access your Google Account</h1>"
        f'<form method="post" action="{html.escape(action)}">'
        f'<input type="hidden" name="consent" value="{consent_id}">'
        '<label>E-mail <input type="email" name="email" '
        f'value="{html.escape(auth.login_hint)}"></label><ul>{boxes}</ul>'
        '<button type="submit" name="action" value="allow">Allow</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</form></body></html>"
    )
    return Response(page, mimetype="text/html")


def _error_page(exc: PageError) -> Response:
    page = (
        "<!doctype html><html><head><title>Error 400</title></head><body>"
        f"<h1>Error 400: {html.escape(exc.error)}</h1><p>{html.escape(exc.description)}</p>"
        "</body></html>"
    )
    return Response(page, status=400, mimetype="text/html")


def _submit_consent(sandbox: GoogleSandbox, request: Request) -> Response:
    """Allow: a code for the ticked scopes; Deny, or nothing ticked: access_denied."""
    form: MultiDict[str, str] = request.form
    auth = _state(sandbox).pending.pop(form.get("consent", ""), None)
    if auth is None:
        return _error_page(PageError("invalid_request", "This consent page is no longer valid."))
    offered = frozenset(auth.scopes) - IDENTITY_SCOPES
    ticked = frozenset(form.getlist("scope")) & offered
    if form.get("action") != "allow" or (offered and not ticked):
        return _redirect(auth, {"error": "access_denied"})  # no account needed to say no
    email = form.get("email", "").strip()
    if not email:
        return _error_page(PageError("invalid_request", "An account e-mail is required."))
    return _grant_code(sandbox, auth, email, ticked | (frozenset(auth.scopes) - offered))


def _silent_consent(sandbox: GoogleSandbox, auth: AuthRequest) -> Response:
    """prompt=none: a code only for an account that already granted every scope."""
    if auth.login_hint not in sandbox.accounts:
        return _redirect(auth, {"error": "login_required"})
    earlier = _state(sandbox).consents.get((auth.login_hint, auth.client_id), frozenset())
    if not frozenset(auth.scopes) <= earlier:
        return _redirect(auth, {"error": "consent_required"})
    return _grant_code(sandbox, auth, auth.login_hint, frozenset(auth.scopes))


def _grant_code(
    sandbox: GoogleSandbox, auth: AuthRequest, email: str, ticked: frozenset[str]
) -> Response:
    """Records the consent and redirects with a code. The account's grant to the client
    accumulates; the token carries it all only with include_granted_scopes=true."""
    sandbox.add_account(email)
    state = _state(sandbox)
    key = (email, auth.client_id)
    earlier = state.consents.get(key)
    state.consents[key] = (earlier or frozenset()) | ticked
    scopes = state.consents[key] if auth.include_granted else ticked
    code = "4/" + secrets.token_urlsafe(32)
    expires = sandbox.clock() + CODE_LIFETIME
    state.codes[code] = IssuedCode(auth, email, scopes, earlier is None, expires)
    return _redirect(auth, {"code": code, "scope": " ".join(sorted(scopes))})


def _redirect(auth: AuthRequest, params: dict[str, str]) -> Response:
    if auth.state is not None:
        params = {**params, "state": auth.state}
    parts = urlsplit(auth.redirect_uri)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    response = Response(status=302)
    response.headers["Location"] = urlunsplit(parts._replace(query=query))
    return response


# -- token endpoint ------------------------------------------------------------------------------
def _token(sandbox: GoogleSandbox, request: Request) -> Response:
    try:
        client = _authenticate_client(sandbox, request)
        grant_type = request.form.get("grant_type", "")
        if grant_type == "authorization_code":
            body = _exchange_code(sandbox, client, request.form)
        elif grant_type == "refresh_token":
            body = _refresh(sandbox, client, request.form)
        else:
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")
    except OAuthError as exc:
        return exc.response()
    return json_response(body, headers=NO_STORE)


def _authenticate_client(sandbox: GoogleSandbox, request: Request) -> Client:
    """The client by HTTP Basic or by client_id and client_secret in the body."""
    basic = request.authorization
    if basic is not None and basic.type == "basic":
        client_id, secret = basic.username or "", basic.password or ""
    else:
        client_id = request.form.get("client_id", "")
        secret = request.form.get("client_secret", "")
    client = sandbox.clients.get(client_id)
    if client is None or not secrets.compare_digest(client.secret, secret):
        raise OAuthError("invalid_client", "Unauthorized", 401)
    return client


def _exchange_code(
    sandbox: GoogleSandbox, client: Client, form: MultiDict[str, str]
) -> dict[str, object]:
    """Redeems a code once; the redirect URI and the PKCE verifier must match."""
    issued = _state(sandbox).codes.pop(form.get("code", ""), None)
    if issued is None or issued.expires <= sandbox.clock():
        raise OAuthError("invalid_grant", "Bad Request")
    auth = issued.request
    if auth.client_id != client.client_id:
        raise OAuthError("invalid_grant", "Bad Request")
    if form.get("redirect_uri") != auth.redirect_uri:
        raise OAuthError("redirect_uri_mismatch", "Bad Request")
    _check_verifier(auth, form.get("code_verifier"))
    account = sandbox.add_account(issued.email)
    body: dict[str, object] = _access_body(sandbox, account, client.client_id, issued.scopes)
    if "openid" in issued.scopes:
        body["id_token"] = id_token(sandbox, account, client.client_id, auth.nonce)
    if auth.offline and (issued.first_consent or "consent" in auth.prompts):
        body["refresh_token"] = _mint_refresh(sandbox, account, client.client_id, issued.scopes)
    elif auth.include_granted:
        _widen_refresh_tokens(sandbox, issued.email, client.client_id, issued.scopes)
    return body


def _check_verifier(auth: AuthRequest, verifier: str | None) -> None:
    if auth.challenge is None:
        return
    if not verifier:
        raise OAuthError("invalid_grant", "Missing code verifier.")
    expected = verifier
    if auth.challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    if not secrets.compare_digest(expected, auth.challenge):
        raise OAuthError("invalid_grant", "Invalid code verifier.")


def _widen_refresh_tokens(
    sandbox: GoogleSandbox, email: str, client_id: str, scopes: frozenset[str]
) -> None:
    """Incremental authorisation without a new refresh token: the existing ones of the
    account and client now stand for the whole grant."""
    for grant in sandbox.refresh_tokens.values():
        if grant.account.email == email and grant.client_id == client_id and not grant.revoked:
            grant.scopes = grant.scopes | scopes


def _refresh(
    sandbox: GoogleSandbox, client: Client, form: MultiDict[str, str]
) -> dict[str, object]:
    """A new access token; `scope` may narrow it to part of the grant."""
    grant = sandbox.refresh_tokens.get(form.get("refresh_token", ""))
    if grant is None or grant.revoked or grant.client_id != client.client_id:
        raise OAuthError("invalid_grant", "Token has been expired or revoked.")
    scopes = grant.scopes
    if form.get("scope"):
        scopes = frozenset(form["scope"].split())
        if not scopes <= grant.scopes:
            raise OAuthError("invalid_scope", "Some requested scopes were not granted.")
    return _access_body(sandbox, grant.account, client.client_id, scopes)


def _access_body(
    sandbox: GoogleSandbox, account: Account, client_id: str, scopes: frozenset[str]
) -> dict[str, object]:
    return {
        "access_token": _mint_access(sandbox, account, client_id, scopes),
        "expires_in": sandbox.token_seconds,
        "token_type": "Bearer",
        "scope": " ".join(sorted(scopes)),
    }


# -- revocation endpoint -------------------------------------------------------------------------
def _revoke(sandbox: GoogleSandbox, request: Request) -> Response:
    """Revoking an access or a refresh token ends the account's whole grant to the client:
    all its tokens, and the remembered consent."""
    token = request.form.get("token") or request.args.get("token", "")
    grant = sandbox.refresh_tokens.get(token) or sandbox.access_tokens.get(token)
    now = sandbox.clock()
    if grant is None or grant.revoked or (grant.expires is not None and grant.expires <= now):
        return OAuthError("invalid_token", "Token expired or revoked").response()
    _end_grant(sandbox, grant.account.email, grant.client_id)
    return json_response({}, headers=NO_STORE)
