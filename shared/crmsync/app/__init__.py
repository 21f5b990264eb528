"""The web app: tenant admins onboard and oversee their users; users connect, tune and
resolve their sync; both read Sync History. Served by the `app` function.

Every page has its JSON twin under `/api` (documented in docs/app-api.yaml): a route's
view returns data, shown through its template for a browser and as JSON for the API,
so the two never disagree. Pages and the API ride on the same session (a signed-in
browser); the API also takes a tenant admin's bearer token for the admin routes.

Who may do what is decided here, once per request, before any use case runs: a user
reaches only their own connections and history, an admin only their tenant's. A form
that changes anything carries the session's CSRF token; a page answers a POST with a
redirect to a page (so reloading does not repeat it) that says what was done.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from crmsync import service, web
from crmsync.app import sessions
from crmsync.app.sessions import Principal

Answer = tuple[Any, int, dict[str, str]]
_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_HTML = {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
STATIC = Path(web.__file__).parent / "static"
MAX_FORM = 256 * 1024  # an onboarding CSV of a few thousand rows


@dataclass
class Context:
    """One request as a view sees it."""

    services: service.Services
    request: Any
    principal: Principal | None
    params: dict[str, str]
    api: bool  # answered as JSON (under /api)
    form: Mapping[str, Any] = field(default_factory=dict)

    @property
    def who(self) -> Principal:
        assert self.principal is not None  # routes that need one are checked first
        return self.principal

    def url(self, path: str, **query: str) -> str:
        """An address of the app (absolute, as the function's public address has it)."""
        found = {k: v for k, v in query.items() if v}
        tail = ("?" + urlencode(found)) if found else ""
        return self.services.url("app") + path + tail


@dataclass
class View:
    """What a view answers: data (the JSON answer, and the template's values), or, for
    an action, where a browser goes next with a notice, or a file to download (`body`)."""

    data: Mapping[str, Any]
    template: str = ""
    status: int = 200
    redirect: str = ""  # an action done: the page (app path) to show next
    notice: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: str | bytes | None = None  # answered as is, with `headers`, to pages and API alike


ViewFunction = Callable[[Context], View]


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]
    pattern: re.Pattern[str]
    view: ViewFunction
    who: str  # "anyone", "user" (signed in), "admin"


ROUTES: list[Route] = []


def route(
    path: str, methods: tuple[str, ...] = ("GET",), who: str = "user"
) -> Callable[[ViewFunction], ViewFunction]:
    """Register a view at `path`; `<name>` takes one path segment of letters, digits,
    '-', '_' or '.'."""
    parts = re.split(r"<(\w+)>", path)  # literal, name, literal, name, ...
    regex = (
        "^"
        + "".join(
            f"(?P<{part}>[A-Za-z0-9._-]{{1,200}})" if odd else re.escape(part)
            for odd, part in ((i % 2 == 1, p) for i, p in enumerate(parts))
        )
        + "$"
    )

    def register(view: ViewFunction) -> ViewFunction:
        ROUTES.append(Route(methods, re.compile(regex), view, who))
        return view

    return register


def serve(services: service.Services, request: Any) -> Answer:
    """The app's answer to one request."""
    from crmsync.app import pages  # noqa: F401  (registers the routes)

    path = request.path.rstrip("/") or "/"
    if path.startswith("/assets/"):  # not /static/: Flask keeps that for itself
        return _static(request, path.removeprefix("/assets/"))
    api = path == "/api" or path.startswith("/api/")
    if api:
        path = path.removeprefix("/api") or "/"
    found, allowed = _find(path, request.method)
    if found is None:
        if allowed:
            raise service.Refused(
                405,
                f"{path} does not answer {request.method}",
                headers={"Allow": ", ".join(allowed)},
            )
        raise service.Refused(404, "the app has no such page", "Go to the app's home page.")
    chosen, params = found
    principal = _principal(services, request, api)
    context = Context(services, request, principal, params, api)
    if chosen.who != "anyone" and principal is None:
        if api:
            raise service.Refused(
                401,
                "sign in first: this API rides on a signed-in session, or a tenant admin's "
                "bearer token",
                headers={"WWW-Authenticate": f'Bearer realm="{service.ADMIN_REALM}"'},
            )
        # A browser whose session ended (signed out, expired, revoked) is told so, and
        # that what it posted was not saved; the company it used is remembered.
        ended = "post" if request.method == "POST" else "1"
        ended = ended if request.cookies.get(sessions.COOKIE) else ""
        return "", 303, {"Location": context.url("/sign-in", then=path, ended=ended)}
    if chosen.who == "admin" and not context.who.admin:
        raise service.Refused(
            403,
            "this page is for your company's crmsync admins",
            "Ask your admin if you need something changed here.",
        )
    if chosen.who == "user" and context.who.by_token:
        raise service.Refused(403, "an admin token does not act as a user; sign in instead")
    if request.method == "POST":
        context.form = _form(request, api)
        if principal is not None:
            given = context.form.get("csrf") or request.headers.get("X-CSRF-Token")
            sessions.check_csrf(principal, str(given) if given else None)
    shown = chosen.view(context)
    return _answer(context, shown)


def _find(path: str, method: str) -> tuple[tuple[Route, dict[str, str]] | None, list[str]]:
    allowed: list[str] = []
    for candidate in ROUTES:
        matched = candidate.pattern.match(path)
        if matched is None:
            continue
        if method in candidate.methods or (method == "HEAD" and "GET" in candidate.methods):
            return (candidate, matched.groupdict()), []
        allowed.extend(candidate.methods)
        if "GET" in candidate.methods:
            allowed.append("HEAD")
    return None, sorted(set(allowed))


def _principal(services: service.Services, request: Any, api: bool) -> Principal | None:
    authorization = request.headers.get("Authorization")
    if api and authorization:
        tenant = service.admin_tenant(services, authorization)
        return Principal(tenant, "", "", admin=True)
    return sessions.current(services, request)


def _form(request: Any, api: bool) -> Mapping[str, Any]:
    """A POST's values: a form (pages), or a JSON object (the API)."""
    declared = request.content_length
    if declared is not None and declared > MAX_FORM:
        raise service.Refused(413, f"the form is larger than {MAX_FORM} bytes")
    if request.mimetype == "application/json":
        try:
            body = json.loads(request.get_data(cache=True) or b"{}")
        except ValueError as exc:
            raise service.Refused(400, "the body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise service.Refused(400, "expected a JSON object")
        return body
    if request.mimetype in ("", "application/x-www-form-urlencoded", "multipart/form-data"):
        values: dict[str, Any] = {k: request.form.get(k) for k in request.form}
        for name, listed in request.form.lists():
            if len(listed) > 1:
                values[name] = listed
        for name, upload in request.files.items():
            values[name] = upload.read(MAX_FORM + 1).decode("utf-8", "replace")
        return values
    raise service.Refused(415, "send a form or a JSON object")


def _answer(context: Context, shown: View) -> Answer:
    if shown.body is not None:  # a download (a CSV file)
        return shown.body, shown.status, {"Cache-Control": "no-store", **shown.headers}
    if context.api:
        body = json.dumps(shown.data, default=str)
        return body, shown.status, {**_JSON, **shown.headers}
    if "Location" in shown.headers:  # off to another site (a provider, a link)
        return "", shown.status, shown.headers
    if shown.redirect:
        location = context.url(shown.redirect, notice=shown.notice)
        return "", 303, {"Location": location, **shown.headers}
    page = web.render(
        shown.template,
        **shown.data,
        app=_chrome(context),
    )
    return page, shown.status, {**_HTML, **shown.headers}


def _chrome(context: Context) -> dict[str, Any]:
    """What every page's frame shows: who is signed in, the navigation, the notice."""
    who = context.principal
    return {
        "root": context.services.url("app"),
        "who": who,
        "csrf": who.csrf if who else "",
        "notice": context.request.args.get("notice", "")[:300],
        "path": context.request.path,
    }


def _static(request: Any, name: str) -> Answer:
    """The app's stylesheet and scripts (a fixed list of files, no path walking)."""
    found = {p.name: p for p in STATIC.iterdir() if p.is_file() and not p.name.endswith("LICENSE")}
    if name not in found or request.method not in ("GET", "HEAD"):
        raise service.Refused(404, "no such file")
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    headers = {"Content-Type": kind, "Cache-Control": "public, max-age=3600"}
    return found[name].read_bytes(), 200, headers
