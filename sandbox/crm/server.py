"""The reference CRM on a real socket: a threaded HTTP server in a background thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server

from sandbox.crm.api import PREFIX
from sandbox.crm.app import ReferenceCrm

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


class _QuietHandler(WSGIRequestHandler):
    """The application logs each request itself; the server's own request line would
    carry query strings, which may hold e-mail addresses."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def serve(
    crm: ReferenceCrm,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    wrap: Callable[[WsgiApp], WsgiApp] | None = None,
) -> tuple[str, Callable[[], None]]:
    """Serve `crm` on host:port (0: any free port). Returns the base URL of the contract
    (with its `/api/crmsync/v1` prefix) and a function that stops the server.

    `wrap` puts WSGI middleware around the CRM, e.g. one that breaks a rule on purpose
    to show that a conformance check catches it."""
    app: WsgiApp = wrap(crm) if wrap is not None else crm
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    # a short poll interval: stopping waits for the serving loop to notice
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{server.port}{PREFIX}", stop
