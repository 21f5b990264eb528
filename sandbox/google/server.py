"""The Google sandbox on a real socket: every API module's routes behind one router, and
at its root a page saying what it is and which API roots it serves."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.google.core import GoogleSandbox, Route, Router, route
from sandbox.home import Address, Section, page

MODULES = ("oauth", "calendar", "tasks", "people", "gmail", "kms")


class _QuietHandler(WSGIRequestHandler):
    """No request lines in the log: query strings carry tokens and codes."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def routes(sandbox: GoogleSandbox, modules: Iterable[str] = MODULES) -> list[Route]:
    """The routes of the named API modules (all of them by default)."""
    found: list[Route] = []
    for name in modules:
        module = importlib.import_module(f"sandbox.google.{name}")
        found.extend(module.routes(sandbox))
    return found


def serve(
    sandbox: GoogleSandbox,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    modules: Iterable[str] = MODULES,
) -> tuple[str, Callable[[], None]]:
    """Serve the sandbox on host:port (0: any free port), with the routes of `modules`
    (all API modules by default; a test of one API may serve only that one). Returns its
    base URL (the `api_endpoint` for google-api-python-client) and a function that stops
    it."""
    app = Router(sandbox, [*routes(sandbox, modules), *home(sandbox, modules)])
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    sandbox.base_url = f"http://{host}:{server.port}/"
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    return sandbox.base_url, stop


def home(sandbox: GoogleSandbox, modules: Iterable[str] = MODULES) -> list[Route]:
    """`GET /`: what the sandbox is, the API roots of `modules` and its accounts."""
    served = tuple(modules)

    def answer(request: Request, account: None) -> Response:
        with sandbox.lock:
            accounts = sorted(sandbox.accounts)
        shown = page(
            "Google sandbox",
            "A local stand-in for the Google APIs crmsync uses, for its tests and `make dev`. "
            "Google's own client libraries talk to it unchanged: give them this address as "
            "their API endpoint. Nothing here reaches Google.",
            [
                *sections(sandbox.base_url, served),
                Section(
                    "Calling it",
                    notes=(
                        "The APIs take `Authorization: Bearer <access token>`, from the OAuth "
                        "flow of a client registered with the sandbox (crmsync is, in "
                        "`make dev`). Every other path answers in Google's error format.",
                        "Accounts: " + (", ".join(accounts) or "none yet") + ".",
                    ),
                ),
            ],
        )
        return Response(shown, mimetype="text/html")

    return [route("GET", "", answer, None)]


def sections(base: str, modules: Iterable[str] = MODULES) -> list[Section]:
    """The API roots of the served `modules` below `base`, each with an address to try."""
    found = {
        "oauth": Section(
            "OAuth 2.0 and OpenID Connect",
            (
                Address(
                    "GET", base + "o/oauth2/auth", "the consent page a client sends its user to"
                ),
                Address("POST", base + "token", "codes and refresh tokens for access tokens"),
                Address("POST", base + "revoke"),
                Address("GET", base + ".well-known/openid-configuration"),
                Address("GET", base + "oauth2/v1/certs", "the keys that sign ID tokens"),
            ),
        ),
        "calendar": Section(
            "Calendar v3",
            (Address("GET", base + "calendar/v3/users/me/calendarList"),),
        ),
        "tasks": Section("Tasks v1", (Address("GET", base + "tasks/v1/users/@me/lists"),)),
        "people": Section(
            "People v1 (contacts)",
            (
                Address("GET", base + "v1/people/me/connections?personFields=names"),
                Address("GET", base + "v1/contactGroups"),
            ),
        ),
        "gmail": Section(
            "Gmail v1",
            (
                Address("GET", base + "gmail/v1/users/me/profile"),
                Address(
                    "GET",
                    base + "gmail/v1/users/me/labels",
                    "and `POST` to create one; `GET`, `PATCH`, `PUT`, `DELETE` `labels/{id}`",
                ),
                Address(
                    "GET",
                    base + "gmail/v1/users/me/messages?labelIds=INBOX",
                    "then `messages/{id}?format=minimal|metadata|raw|full`, "
                    "`messages/{id}/attachments/{attachmentId}`",
                ),
                Address(
                    "POST",
                    base + "gmail/v1/users/me/messages/batchModify",
                    "and `messages/{id}/modify`",
                ),
                Address(
                    "GET",
                    base + "gmail/v1/users/me/history?startHistoryId=1",
                    "the mailbox's changes after a history id",
                ),
                Address(
                    "POST",
                    base + "gmail/v1/users/me/watch",
                    "notifications to a Pub/Sub topic; `POST` `stop` ends them",
                ),
            ),
        ),
        "kms": Section(
            "Cloud KMS v1",
            (
                Address(
                    "POST",
                    base + "v1/projects/p/locations/l/keyRings/r/cryptoKeys/k:encrypt",
                    "and `:decrypt`",
                ),
            ),
        ),
    }
    return [found[name] for name in modules if name in found]
