"""The Microsoft sandbox's shared core: the tenant, its users and app registrations,
issued tokens, the clock, injected faults, Graph's error format, and the router every
module plugs into.

Each module (`identity.py`, `graph.py`, ...) exposes `routes(sandbox) -> list[Route]`.
Paths are those below the identity platform's and Graph's roots, both served from one
https origin, so msal takes `<base>/<tenant>` as its authority and Graph clients take
`<base>/v1.0` as Graph's root:

    {tenant}/v2.0/.well-known/openid-configuration   {tenant}/discovery/v2.0/keys
    {tenant}/oauth2/v2.0/authorize                   {tenant}/oauth2/v2.0/token
    v1.0/me/...                                      v1.0/subscriptions, v1.0/$batch
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.microsoft.schema import graph_schema

Clock = Callable[[], datetime]

GRAPH_PREFIX = "v1.0/"


class GraphError(Exception):
    """Answered in Graph's JSON error format; raise it from any Graph handler."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self, now: datetime) -> dict[str, Any]:
        inner = {
            "date": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": str(uuid.uuid4()),
            "client-request-id": str(uuid.uuid4()),
        }
        return {"error": {"code": self.code, "message": self.message, "innerError": inner}}

    def response(self, now: datetime) -> Response:
        return json_response(self.body(now), self.status, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(json.dumps(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@dataclass
class User:
    """One user of the tenant. `data` is where each Graph module keeps that user's
    mailbox resources, under its own key ("contacts", "calendar", "todo")."""

    email: str
    oid: str
    display_name: str
    data: dict[str, Any] = field(default_factory=dict)
    # Item ids and change keys are drawn from here: they look random, as Outlook's do,
    # and the same calls in the same order make the same ids (replayable tests).
    ids: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ids = random.Random(hashlib.sha256(self.email.encode()).digest())


@dataclass
class App:
    """An app registration: a confidential web client."""

    client_id: str
    secret: str
    redirect_uris: tuple[str, ...]


@dataclass
class Grant:
    """What one token stands for: a user's consent to an app for some scopes."""

    user: User
    client_id: str
    scopes: frozenset[str]
    expires: datetime
    revoked: bool = False


@dataclass(frozen=True)
class Changed:
    """One change to a user's item, as `MicrosoftSandbox.publish` reports it."""

    user: User
    kind: str
    change: str
    item_id: str
    etag: str
    container: str


@dataclass
class Fault:
    """An injected failure: the next `times` matching requests get `status`."""

    status: int
    code: str
    methods: frozenset[str] | None  # None: any method
    path: re.Pattern[str] | None
    times: int
    retry_after: int | None


# What a route answers when its answer has no body (a DELETE, an action): see `route`.
NO_CONTENT = ""
# What a route answers when its answer is an item's raw content (a message's MIME from
# `.../$value`), OData's stream type: any bytes but Graph's JSON.
MEDIA = "Edm.Stream"


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., Response]
    scopes: frozenset[str] | None  # None: no bearer token (identity endpoints)
    answers: str | None = None  # the Graph type of its answers; see `route`


def route(
    method: str,
    path: str,
    handler: Callable[..., Response],
    scopes: Iterable[str] | None,
    answers: str | None = None,
) -> Route:
    """`path` with `{name}` segments, e.g. "v1.0/me/contactFolders/{folderId}/contacts".
    The handler is called as handler(request, user, **segments) (user is None for routes
    without scopes); a segment may hold any character but "/".

    `answers` is the Graph type of the route's successful answers, checked against
    Graph's schema (`sandbox/microsoft/schema`): "contact" for one, "Collection(contact)"
    for a collection answer (a list, a view or a delta page), MEDIA for raw content
    (`$value`), NO_CONTENT for an answer without a body; None only for routes that
    answer no Graph resource (the identity platform, `$batch`, whose requests are each
    checked by their own route)."""
    regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path.strip("/")))
    pattern = re.compile(f"^{regex}$")
    return Route(method, pattern, handler, frozenset(scopes) if scopes else None, answers)


# The reasons Graph gives with each injected status, as its error `code`.
FAULT_CODES = {
    429: "TooManyRequests",
    500: "generalException",
    502: "badGateway",
    503: "serviceNotAvailable",
    504: "gatewayTimeout",
}


class MicrosoftSandbox:
    """All state of the sandbox; every request is served under `lock`.

    With `check_schema` (the default) every successful Graph answer is checked against
    Graph's v1.0 schema before it leaves (`sandbox/microsoft/schema`, see `Router`): one
    Graph could not give is answered 500 `SandboxSchemaDrift`, saying what drifted, and
    recorded in `drift`, so the sandbox cannot drift from Graph's schema unnoticed."""

    def __init__(
        self, clock: Clock | None = None, tenant_id: str | None = None, check_schema: bool = True
    ) -> None:
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.lock = threading.RLock()
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.users: dict[str, User] = {}
        self.apps: dict[str, App] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.faults: list[Fault] = []
        self.base_url = ""  # https://127.0.0.1:<port>, set by serve()
        self.requests: dict[str, int] = {}  # per HTTP method, for the benchmarks
        self.listeners: list[Callable[[Changed], None]] = []  # see publish()
        self.dispatch: Callable[[Request], Response] | None = None  # the served Router's
        self.check_schema = check_schema
        self.drift: list[str] = []  # each answer the schema check refused, described

    # -- changes ---------------------------------------------------------------------------------
    def publish(
        self, user: User, kind: str, change: str, item_id: str, item_etag: str, container: str
    ) -> None:
        """A Graph module tells the listeners (the subscriptions module) that one of
        `user`'s items changed: `kind` "events", "contacts", "tasks" or "messages"; `change`
        "created", "updated" or "deleted"; `container` its calendar, folder or list."""
        changed = Changed(user, kind, change, item_id, item_etag, container)
        for listener in list(self.listeners):
            listener(changed)

    # -- users and apps ----------------------------------------------------------------------
    def add_user(self, email: str, display_name: str = "") -> User:
        with self.lock:
            if email not in self.users:
                name = display_name or email.split("@")[0].title()
                self.users[email] = User(email, str(uuid.uuid4()), name)
            return self.users[email]

    def add_app(self, client_id: str, secret: str, redirect_uris: Iterable[str]) -> App:
        with self.lock:
            app = App(client_id, secret, tuple(redirect_uris))
            self.apps[client_id] = app
            return app

    def issue_token(
        self, email: str, scopes: Iterable[str], *, client_id: str = "sandbox", seconds: int = 3600
    ) -> str:
        """An access token for `email`, as if the sign-in had run (for tests of Graph)."""
        with self.lock:
            token = "EwB" + secrets.token_urlsafe(32)
            self.access_tokens[token] = Grant(
                self.add_user(email),
                client_id,
                frozenset(scopes),
                self.clock() + timedelta(seconds=seconds),
            )
            return token

    # -- faults --------------------------------------------------------------------------------
    def inject(
        self,
        status: int,
        *,
        code: str | None = None,
        method: str | Iterable[str] | None = None,
        path: str | None = None,
        times: int = 1,
        retry_after: int | None = None,
    ) -> Fault:
        """The next `times` Graph requests matching `method` and the `path` regex
        (searched in the path below Graph's root, e.g. "me/contactFolders") are answered
        `status` with Graph's error `code` (by default the one Graph uses for that
        status: 429 TooManyRequests, 503 serviceNotAvailable, ...) and, if given, a
        Retry-After header."""
        methods = (
            None if method is None else frozenset([method] if isinstance(method, str) else method)
        )
        fault = Fault(
            status,
            code or FAULT_CODES.get(status, "generalException"),
            methods,
            re.compile(path) if path else None,
            times,
            retry_after,
        )
        with self.lock:
            self.faults.append(fault)
        return fault

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
    def authenticate(self, request: Request, scopes: frozenset[str]) -> User:
        """The user whose bearer token the request carries; 401 without a live token,
        403 when the token's scopes hold none of `scopes`."""
        header = request.headers.get("Authorization", "")
        token = header[7:] if header[:7].lower() == "bearer " else ""
        grant = self.access_tokens.get(token)
        if not token:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token is empty.", headers=_CHALLENGE
            )
        if grant is None or grant.revoked:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed.",
                headers=_CHALLENGE,
            )
        if grant.expires <= self.clock():
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
                headers=_CHALLENGE,
            )
        if not grant.scopes & scopes:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials.")
        return grant.user


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}


class Router:
    """The WSGI application: finds the route, applies faults (Graph paths only) and
    authentication."""

    def __init__(self, sandbox: MicrosoftSandbox, routes: Iterable[Route]) -> None:
        self.sandbox = sandbox
        self.routes = list(routes)
        sandbox.dispatch = self.dispatch  # $batch answers its requests through it

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path.strip("/")
        with self.sandbox.lock:
            counts = self.sandbox.requests
            counts[request.method] = counts.get(request.method, 0) + 1
            try:
                return self._serve(request, path)
            except GraphError as exc:
                return exc.response(self.sandbox.clock())

    def _serve(self, request: Request, path: str) -> Response:
        found = [(r, r.pattern.match(path)) for r in self.routes]
        matches = [(r, m) for r, m in found if m is not None]
        if not matches:
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        allowed = [(r, m) for r, m in matches if r.method == request.method]
        if not allowed:
            raise GraphError(405, "Request_BadRequest", f"{request.method} is not allowed.")
        chosen, match = allowed[0]
        if path.startswith(GRAPH_PREFIX):
            fault = self.sandbox.take_fault(request.method, path[len(GRAPH_PREFIX) :])
            if fault is not None:
                raise fault_error(fault)
        user = (
            self.sandbox.authenticate(request, chosen.scopes) if chosen.scopes is not None else None
        )
        response: Response = chosen.handler(request, user, **match.groupdict())
        if self.sandbox.check_schema and chosen.answers is not None:
            self._check(request, chosen.answers, response)
        return response

    def _check(self, request: Request, answers: str, response: Response) -> None:
        """Raise 500 `SandboxSchemaDrift` when a successful answer is not what Graph's
        schema says the route's type holds (errors are Graph's error format, made in one
        place, `GraphError.body`)."""
        if not 200 <= response.status_code < 300:
            return
        raw = response.get_data()
        if answers == NO_CONTENT:
            problems = [f"$: Graph answers no content, yet the body is {raw[:60]!r}"] if raw else []
        elif answers == MEDIA:
            problems = (
                ["$: raw content answered as JSON"]
                if response.mimetype == "application/json"
                else []
            )
        elif response.mimetype != "application/json":
            problems = [f"$: a {response.mimetype} answer, not Graph's JSON"]
        else:
            problems = graph_schema().check_answer(json.loads(raw), answers)
        if problems:
            shown = "; ".join(problems[:8]) + ("; ..." if len(problems) > 8 else "")
            message = (
                f"{request.method} {request.path} answered what Graph's "
                f"{answers or 'no-content answer'} cannot hold: {shown}"
            )
            self.sandbox.drift.append(message)
            raise GraphError(500, "SandboxSchemaDrift", message)


def fault_error(fault: Fault) -> GraphError:
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
    messages = {429: "Application is over its MailboxConcurrency limit."}
    message = messages.get(fault.status, "The service is temporarily unavailable.")
    return GraphError(fault.status, fault.code, message, headers=headers)


def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400 in Graph's format."""
    try:
        body = json.loads(request.get_data(as_text=False) or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


def graph_time(moment: datetime) -> str:
    """Graph's timestamp form for *DateTime properties: UTC, seven fractional digits, Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"
