"""The Google sandbox's shared core: accounts, OAuth clients and grants, the clock,
injected faults, Google's error format, and the router every API module plugs into.

Each API module (`calendar.py`, `tasks.py`, `people.py`, `gmail.py`, `oauth.py`)
exposes `routes(sandbox) -> list[Route]`. Paths are those of Google's discovery
documents below the root URL, so the real google-api-python-client reaches the sandbox
through its `api_endpoint` client option, which replaces root URL and service path
together: `<base>calendar/v3/` for Calendar, `<base>` for Tasks, People and Gmail.

    calendar/v3/...   (Calendar v3)      tasks/v1/...   (Tasks v1)
    v1/people/...     (People v1)        v1/contactGroups/...
    gmail/v1/users/... (Gmail v1)
    o/oauth2/auth, token, revoke         (OAuth 2.0 web-server flow)
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.chaos import Chaos

Clock = Callable[[], datetime]

# Scope URLs as the discovery documents name them; a token's scopes must include one
# of an operation's scopes.
SCOPE = "https://www.googleapis.com/auth/"
CALENDAR_SCOPES = frozenset({SCOPE + "calendar", SCOPE + "calendar.events"})
TASKS_SCOPES = frozenset({SCOPE + "tasks"})
CONTACTS_SCOPES = frozenset({SCOPE + "contacts"})


class ApiError(Exception):
    """Answered in Google's JSON error format; raise it from any handler."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        status: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.status = status or _STATUS.get(code, "UNKNOWN")
        self.headers = headers or {}
        self.details = details or []

    def response(self) -> Response:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [{"domain": "global", "reason": self.reason, "message": self.message}],
            "status": self.status,
        }
        if self.details:  # google.rpc details such as ErrorInfo, e.g. reason EXPIRED_SYNC_TOKEN
            error["details"] = self.details
        return json_response({"error": error}, self.code, self.headers)


_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@dataclass
class Account:
    """One Google user. `data` is where each API module keeps that user's resources,
    under its own key ("calendar", "tasks", "people")."""

    email: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Client:
    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Grant:
    account: Account
    client_id: str
    scopes: frozenset[str]
    expires: datetime | None = None  # access tokens only
    revoked: bool = False


@dataclass
class Fault:
    """An injected failure: the next `times` matching requests get `code`."""

    code: int
    reason: str
    methods: frozenset[str] | None  # None: any method
    path: re.Pattern[str] | None
    times: int
    retry_after: int | None
    lost: bool = False  # the request is carried out, and then answered with the fault


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    scopes: frozenset[str] | None  # None: no bearer token needed (OAuth endpoints)


def route(
    method: str, path: str, handler: Callable[..., Response], scopes: Iterable[str] | None
) -> Route:
    """`path` with `{name}` segments, e.g. "calendar/v3/calendars/{calendarId}/events".
    The handler is called as handler(request, account, **segments) (account is None for
    routes without scopes); a segment may hold any character but "/"."""
    regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path.strip("/")))
    return Route(method, re.compile(f"^{regex}$"), handler, frozenset(scopes) if scopes else None)


class GoogleSandbox:
    """All state of the sandbox; every request is served under `lock`."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.clients: dict[str, Client] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.faults: list[Fault] = []
        self.token_seconds = 3600  # how long an access token it issues lasts
        self.chaos: Chaos | None = None  # faults at a rate (soaks); see sandbox/chaos.py
        self.chaos_client = ""  # the OAuth client whose requests chaos fails ("": any)
        self.base_url = ""  # set by serve(); push notifications and links use it
        self._ids = 0
        # Ids that look random, as Google's do, drawn from a fixed seed: the same calls
        # in the same order make the same ids (replayable tests).
        self.ids = random.Random(0)
        self.requests: dict[str, int] = {}  # per HTTP method, for the benchmarks

    # -- ids and accounts ------------------------------------------------------------------
    def next_id(self, prefix: str = "") -> str:
        with self.lock:
            self._ids += 1
            return f"{prefix}{self._ids}"

    def add_account(self, email: str) -> Account:
        with self.lock:
            if email not in self.accounts:
                self.accounts[email] = Account(email, self.next_id("1000"))
            return self.accounts[email]

    def add_client(self, client_id: str, secret: str, redirect_uris: Iterable[str]) -> Client:
        client = Client(client_id, secret, tuple(redirect_uris))
        self.clients[client_id] = client
        return client

    def issue_token(
        self, email: str, scopes: Iterable[str], *, client_id: str = "sandbox", seconds: int = 3600
    ) -> str:
        """An access token for `email`, as if the OAuth flow had run (for tests of an API)."""
        token = "ya29." + secrets.token_urlsafe(24)
        self.access_tokens[token] = Grant(
            self.add_account(email),
            client_id,
            frozenset(scopes),
            self.clock() + timedelta(seconds=seconds),
        )
        return token

    # -- faults --------------------------------------------------------------------------------
    def inject(
        self,
        code: int,
        *,
        reason: str = "backendError",
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
        lost: bool = False,
    ) -> Fault:
        """The next `times` requests matching `method` (one, or any of several) and the
        `path` regex (searched in the path below the root URL) are answered `code` with
        `reason`, e.g. 429 rateLimitExceeded, 403 rateLimitExceeded, 500 backendError,
        503. With `lost`, the request is carried out first and only its answer is the
        fault (a timeout after the work was done). Returns the fault, whose `times`
        counts down as requests take it."""
        pattern = re.compile(path) if path else None
        methods = (
            None if method is None else frozenset([method] if isinstance(method, str) else method)
        )
        fault = Fault(code, reason, methods, pattern, times, retry_after, lost)
        with self.lock:
            self.faults.append(fault)
        return fault

    def withdraw(self, faults: Iterable[Fault]) -> None:
        """Injected faults no request has taken yet are taken back."""
        gone = {id(fault) for fault in faults}
        with self.lock:
            self.faults = [f for f in self.faults if id(f) not in gone]

    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.methods is not None and method not in fault.methods:
                continue
            if fault.path is not None and not fault.path.search(path):
                continue
            fault.times -= 1
            self.faults = [f for f in self.faults if f.times > 0]
            return fault
        return None

    # -- authentication ------------------------------------------------------------------------
    def authenticate(self, request: Request, scopes: frozenset[str]) -> Account:
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        grant = self.access_tokens.get(token)
        if grant is None or grant.revoked:
            raise ApiError(401, "authError", "Invalid Credentials")
        if grant.expires is not None and grant.expires <= self.clock():
            raise ApiError(401, "authError", "Invalid Credentials")
        if not grant.scopes & scopes:
            raise ApiError(
                403, "insufficientPermissions", "Request had insufficient authentication scopes."
            )
        return grant.account


class Router:
    """The WSGI application: finds the route, applies faults and authentication."""

    def __init__(self, sandbox: GoogleSandbox, routes: Iterable[Route]) -> None:
        self.sandbox = sandbox
        self.routes = list(routes)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path.strip("/")
        chaos = self._chaos(request, path)
        if chaos is not None:
            return chaos
        return self._serve(request, path)

    def _serve(self, request: Request, path: str) -> Response:
        try:
            with self.sandbox.lock:
                counts = self.sandbox.requests
                counts[request.method] = counts.get(request.method, 0) + 1
                found = [(r, r.pattern.match(path)) for r in self.routes]
                matches = [(r, m) for r, m in found if m is not None]
                if not matches:
                    raise ApiError(404, "notFound", f"no such path: /{path}")
                allowed = [(r, m) for r, m in matches if r.method == request.method]
                if not allowed:
                    raise ApiError(405, "methodNotAllowed", f"{request.method} not allowed")
                chosen, match = allowed[0]
                fault = self.sandbox.take_fault(request.method, path)
                if fault is not None and not fault.lost:
                    raise fault_error(fault)
                account = (
                    self.sandbox.authenticate(request, chosen.scopes)
                    if chosen.scopes is not None
                    else None
                )
                answer = chosen.handler(request, account, **match.groupdict())
                if fault is not None:  # carried out; the answer is lost on the way back
                    raise fault_error(fault)
                return answer
        except ApiError as exc:
            return exc.response()

    def _chaos(self, request: Request, path: str) -> Response | None:
        """A fault at the sandbox's chaos rate, for requests of the chosen client."""
        chaos = self.sandbox.chaos
        if chaos is None:
            return None
        refresh = path == "token" and request.form.get("grant_type") == "refresh_token"
        with self.sandbox.lock:
            client = self._client_of(request, refresh)
        if self.sandbox.chaos_client and client != self.sandbox.chaos_client:
            return None
        fitting = {"429", "500", "503", "timeout"}
        if refresh:
            fitting.add("invalid_grant")
        if request.method == "GET" and "syncToken" in request.args:
            fitting.add("410")
        if request.method != "GET" and request.headers.get("If-Match"):
            fitting.add("412")
        if not refresh:
            fitting.add("lost")
        kind = chaos.pick(fitting)
        if kind is None:
            return None
        if kind == "lost":  # carried out, but the client never hears so
            self._serve(request, path)
            time.sleep(chaos.stall)
            return ApiError(504, "deadlineExceeded", "Deadline exceeded").response()
        if kind == "invalid_grant":
            from sandbox.google.oauth import OAuthError, revoke_refresh_token

            revoke_refresh_token(self.sandbox, request.form.get("refresh_token", ""))
            return OAuthError("invalid_grant", "Token has been expired or revoked.").response()
        if kind == "timeout":
            time.sleep(chaos.stall)  # outside the lock: other requests go on meanwhile
            return ApiError(504, "deadlineExceeded", "Deadline exceeded").response()
        if kind == "429":
            retry = {"Retry-After": str(chaos.retry_after)}
            return ApiError(
                429, "rateLimitExceeded", "Rate Limit Exceeded", headers=retry
            ).response()
        if kind == "410":
            return ApiError(410, "fullSyncRequired", "Sync token is no longer valid").response()
        if kind == "412":
            return ApiError(412, "conditionNotMet", "Precondition Failed").response()
        return ApiError(int(kind), "backendError", "Backend Error").response()

    def _client_of(self, request: Request, refresh: bool) -> str:
        if refresh:
            grant = self.sandbox.refresh_tokens.get(request.form.get("refresh_token", ""))
        else:
            header = request.headers.get("Authorization", "")
            grant = self.sandbox.access_tokens.get(header[7:] if header[:7] == "Bearer " else "")
        return grant.client_id if grant is not None else ""


def fault_error(fault: Fault) -> ApiError:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
    return ApiError(fault.code, fault.reason, "injected fault", headers=headers)


def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400 in Google's format."""
    try:
        body = json.loads(request.get_data(as_text=False) or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "parseError", "Parse Error") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "badRequest", "the body must be a JSON object")
    return body


def rfc3339(moment: datetime) -> str:
    """Google's timestamp form: UTC with milliseconds and a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
