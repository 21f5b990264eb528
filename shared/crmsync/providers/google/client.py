"""Calling Google APIs: services built from the discovery documents shipped with
google-api-python-client, requests retried on throttling and server errors with
backoff that honours Retry-After, and Google's errors turned into crmsync's types.

`endpoints` maps an API name to the endpoint to use instead of Google's (the local
sandbox in development and tests); production passes none. `after_write` is called
after every successful request that writes (any HTTP method but GET): the benchmarks
count writes with it, and test worlds end a process right after a write.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from crmsync.errors import (
    AlreadyExists,
    Conflict,
    CursorExpired,
    GrantRevoked,
    NotFound,
    PermanentError,
    PermissionDenied,
    RateLimited,
    TransientError,
)

log = logging.getLogger("crmsync.providers.google")

_THROTTLED = {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"}


class GoogleClient:
    """Authorised services for one Google account."""

    def __init__(
        self,
        credentials: Credentials,
        endpoints: Mapping[str, str] | None = None,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        self.credentials = credentials
        self.endpoints = dict(endpoints or {})
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.after_write = after_write
        self._services: dict[str, Any] = {}
        self.calls = 0  # requests sent, for the benchmarks' API calls per change

    def service(self, api: str, version: str) -> Any:
        if api not in self._services:
            options = {"api_endpoint": self.endpoints[api]} if api in self.endpoints else None
            self._services[api] = build(
                api,
                version,
                credentials=self.credentials,
                client_options=options,
                static_discovery=True,
                cache_discovery=False,
            )
        return self._services[api]

    def execute(self, request: Any, what: str) -> Any:
        """Run one API request; `what` names it in logs and errors (no ids, no data)."""
        for attempt in range(1, self.attempts + 1):
            self.calls += 1
            started = time.monotonic()
            try:
                answer = request.execute(num_retries=0)
            except HttpError as exc:
                status = int(exc.resp.status)
                self._log(what, status, started, attempt)
                error = classify(exc, what)
                if not isinstance(error, TransientError) or attempt == self.attempts:
                    raise error from exc
                wait = error.retry_after
                if wait is not None and wait > self.max_wait:
                    raise error from exc
                self.sleep(wait if wait is not None else self._delay(attempt))
                continue
            except RefreshError as exc:  # invalid_grant: revoked, expired or restricted
                self._log(what, None, started, attempt)
                if getattr(exc, "retryable", False):  # the token endpoint failed for now
                    raise TransientError(f"{what}: Google's token endpoint failed") from exc
                raise GrantRevoked(f"{what}: the Google grant no longer works") from exc
            except (OSError, TimeoutError, TransportError) as exc:
                self._log(what, None, started, attempt)
                if attempt == self.attempts:
                    raise TransientError(f"{what}: Google unreachable") from exc
                self.sleep(self._delay(attempt))
                continue
            self._log(what, 200, started, attempt)
            if self.after_write is not None and getattr(request, "method", "GET") != "GET":
                self.after_write()
            return answer
        raise AssertionError("unreachable")  # the loop returns or raises

    def listed(
        self, method: Callable[..., Any], what: str, items: str = "items", **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Every item of a listing, page after page (`method` is a resource's list)."""
        page_token: str | None = None
        while True:
            extra = {"pageToken": page_token} if page_token is not None else {}
            answer = self.execute(method(**params, **extra), what)
            yield from answer.get(items) or ()
            page_token = answer.get("nextPageToken")
            if page_token is None:
                return

    def _delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2.0 ** (attempt - 1), self.max_wait))

    def _log(self, what: str, status: int | None, started: float, attempt: int) -> None:
        log.info(
            "google request",
            extra={
                "call": what,
                "status": status,
                "ms": round((time.monotonic() - started) * 1000, 1),
                "attempt": attempt,
            },
        )


def classify(exc: HttpError, what: str) -> Exception:
    """Google's answer as one of crmsync's error types."""
    status = int(exc.resp.status)
    reasons, message = _details(exc)
    text = f"{what}: HTTP {status} {', '.join(sorted(reasons)) or message}".strip()
    retry_after = _retry_after(exc)
    if status == 429 or (status == 403 and reasons & _THROTTLED):
        return RateLimited(text, retry_after)
    if status >= 500:
        return TransientError(text, retry_after)
    if status == 401:
        return GrantRevoked(text)
    if status == 403:
        return PermissionDenied(text)
    if status == 404:
        return NotFound(text)
    if status == 409:
        return AlreadyExists(text)
    if status == 410 or "EXPIRED_SYNC_TOKEN" in reasons:
        return CursorExpired(text)
    if status == 412 or "failedPrecondition" in reasons:
        return Conflict(text)
    return PermanentError(text)


def _details(exc: HttpError) -> tuple[set[str], str]:
    """The error reasons Google gave (errors[].reason and ErrorInfo reasons), and its
    message."""
    try:
        body = json.loads(exc.content.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return set(), ""
    error = body.get("error", {}) if isinstance(body, dict) else {}
    if not isinstance(error, dict):
        return {str(error)}, str(body.get("error_description", ""))
    reasons = {str(e.get("reason")) for e in error.get("errors", []) if e.get("reason")}
    reasons |= {str(d.get("reason")) for d in error.get("details", []) if d.get("reason")}
    return reasons, str(error.get("message", ""))


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
