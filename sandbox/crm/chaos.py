"""The reference CRM failing at a set rate (sandbox/chaos.py), as a WSGI middleware in
front of it: 429 with Retry-After, 500, 503, a timeout (held, then 504) on any request,
a lost answer (carried out, then answered 504), and 410 on a change-feed cursor, each
in the contract's error format. Only a lost answer changes anything."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from sandbox.chaos import Chaos
from sandbox.crm.api import ApiError, error_response


class ChaosMiddleware:
    def __init__(self, app: Any, chaos: Chaos | None = None) -> None:
        self.app = app
        self.chaos = chaos  # None: no faults (set one while the CRM runs)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        chaos = self.chaos
        if chaos is None:
            return self.app(environ, start_response)
        request = Request(environ)
        fitting = {"429", "500", "503", "timeout", "lost"}
        if "/changes/" in request.path and request.args.get("cursor"):
            fitting.add("410")
        kind = chaos.pick(fitting)
        if kind is None:
            return self.app(environ, start_response)
        if kind == "lost":  # carried out, but the client never hears so
            Response.from_app(self.app, environ).close()
            time.sleep(chaos.stall)
            return error_response(ApiError(504, "timeout", "the CRM took too long"))(
                environ, start_response
            )
        return error_response(_error(kind, chaos))(environ, start_response)


def _error(kind: str, chaos: Chaos) -> ApiError:
    if kind == "429":
        return ApiError(429, "rate_limited", "slow down", {"Retry-After": str(chaos.retry_after)})
    if kind == "410":
        return ApiError(410, "cursor_expired", "the CRM cannot resume from this cursor")
    if kind == "timeout":
        time.sleep(chaos.stall)
        return ApiError(504, "timeout", "the CRM took too long")
    return ApiError(int(kind), "unavailable", "the CRM is unavailable; try again")


class Slow:
    """The CRM answering each request `delay` seconds late (0: at once), as a WSGI
    middleware: a cycle then runs long enough for triggers or another worker to arrive
    while it runs."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.delay = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        time.sleep(self.delay)
        return self.app(environ, start_response)
