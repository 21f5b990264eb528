"""The Google sandbox on a real socket: every API module's routes behind one router."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable

from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.google.core import GoogleSandbox, Route, Router

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
    app = Router(sandbox, routes(sandbox, modules))
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
