"""A served Microsoft sandbox for the Graph tests: a clock they move, a user with a
token, and requests that carry it and trust only the sandbox's CA."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.server import serve, trusting_session

EMAIL = "ada@contoso.example"
ALL_SCOPES = (
    "User.Read",
    "Contacts.ReadWrite",
    "Calendars.ReadWrite",
    "Tasks.ReadWrite",
)


class Clock:
    """A clock the tests move forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Graph:
    sandbox: MicrosoftSandbox
    base: str
    ca: str
    clock: Clock
    token: str
    session: requests.Session

    @property
    def root(self) -> str:
        return f"{self.base}/v1.0/"

    def call(
        self, method: str, path_or_url: str, *, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """A Graph request as the user (`path_or_url` below /v1.0/, or a full link)."""
        url = path_or_url if path_or_url.startswith("https://") else self.root + path_or_url
        headers = dict(kwargs.pop("headers", {}))
        headers.setdefault("Authorization", f"Bearer {token or self.token}")
        return self.session.request(method, url, headers=headers, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.call("PATCH", path, json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def ok(self, answer: requests.Response, status: int = 200) -> Any:
        assert answer.status_code == status, (answer.status_code, answer.text)
        return answer.json() if answer.content else None


@contextmanager
def served_graph(scopes: Iterable[str] = ALL_SCOPES) -> Iterator[Graph]:
    clock = Clock()
    sandbox = MicrosoftSandbox(clock=clock)
    token = sandbox.issue_token(EMAIL, scopes, seconds=24 * 3600)
    served = serve(sandbox)
    session = trusting_session(served.ca_path)
    try:
        yield Graph(sandbox, served.base_url, served.ca_path, clock, token, session)
    finally:
        session.close()
        served.stop()
    # Every answer was checked against Graph's schema as it left (answered 500 on drift);
    # a test that took such a 500 in its stride still fails here.
    assert not sandbox.drift, "the sandbox answered what Graph's schema cannot hold:\n" + (
        "\n".join(sandbox.drift)
    )


class Receiver:
    """A notification endpoint on a loopback port, as a crmsync webhook would be: it
    answers Graph's validation handshake (`mode` "echo"; "wrong" echoes something else,
    "error" answers 500, "slow" waits `delay` seconds first) and records every
    notification it gets, answering `status` (202 by default)."""

    def __init__(self) -> None:
        self.mode = "echo"
        self.delay = 0.0
        self.status = 202
        self.validations: list[str] = []
        self.received: list[dict[str, Any]] = []
        self.server = make_server(
            "127.0.0.1", 0, self._app, threaded=True, request_handler=_QuietReceiver
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.port}/hook"

    @property
    def lifecycle_url(self) -> str:
        return self.url.replace("/hook", "/lifecycle")

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        token = request.args.get("validationToken")
        if token is not None:
            self.validations.append(token)
            if self.mode == "slow":
                time.sleep(self.delay)
            if self.mode == "error":
                response = Response("no", status=500)
            else:
                answer = token if self.mode != "wrong" else "something else"
                response = Response(answer, status=200, mimetype="text/plain")
            return response(environ, start_response)
        self.received.append({"path": request.path, **json.loads(request.get_data() or b"{}")})
        return Response(status=self.status)(environ, start_response)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietReceiver(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None
