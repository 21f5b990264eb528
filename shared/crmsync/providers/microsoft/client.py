"""Calling Microsoft Graph: JSON requests with the user's bearer token, Outlook's
immutable ids asked for on every request, pages followed to the end of a listing or a
delta round, requests retried on throttling and outages with backoff that honours
Retry-After, and Graph's errors turned into crmsync's types.

`root` is Graph's (production) or the sandbox's. `after_write` is called after every
successful request that writes (any method but GET): the benchmarks count writes with
it, and test worlds end a process right after a write. Logs name the request (`what`)
and its status, never a URL (delta links hold tokens, paths hold ids), a token or a body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

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

log = logging.getLogger("crmsync.providers.microsoft")

GRAPH = "https://graph.microsoft.com/v1.0"
# Outlook ids change when an item moves between folders unless immutable ids are asked for.
IMMUTABLE_IDS = 'IdType="ImmutableId"'
PAGE_SIZE = 200
BATCH = 20  # the most requests Graph takes in one JSON batch
# What Graph answers a delta link it no longer holds with (a 410, or a 400 naming it).
_RESYNC = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
_RETRIED = frozenset({429, 500, 502, 503, 504})
TIMEOUT = 30.0


class GraphClient:
    """Graph requests as one user; `token` is the access token or a function giving the
    current one (so a refreshed token is used without a new client)."""

    def __init__(
        self,
        token: str | Callable[[], str],
        root: str = GRAPH,
        session: requests.Session | None = None,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        self._token = token
        self.root = root.rstrip("/")
        self.session = session or requests.Session()
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.after_write = after_write
        self.calls = 0  # requests sent, for the benchmarks' API calls per change

    def url(self, path_or_url: str) -> str:
        """A path below Graph's root, or a link Graph gave (kept whole: it is opaque)."""
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return f"{self.root}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        page_size: int | None = None,
    ) -> dict[str, Any]:
        """One request, its JSON answer ({} when it has none). A POST is sent again only
        after a 429, which Graph answers before acting on the request: after an outage
        the caller (which can look for what an earlier attempt made) decides."""
        answer = self._send(method, path_or_url, what, params, body, headers, page_size)
        return _json(answer)

    def content(self, path_or_url: str, what: str) -> bytes:
        """A GET whose answer is not JSON (a message's MIME, `$value`): its bytes."""
        return self._send("GET", path_or_url, what, None, None, None, None).content

    def _send(
        self,
        method: str,
        path_or_url: str,
        what: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        page_size: int | None,
    ) -> requests.Response:
        sent = {**self._headers(page_size), **(headers or {})}
        for attempt in range(1, self.attempts + 1):
            self.calls += 1
            started = time.monotonic()
            try:
                answer = self.session.request(
                    method,
                    self.url(path_or_url),
                    params=params,
                    json=body,
                    headers=sent,
                    timeout=TIMEOUT,
                )
            except requests.RequestException as exc:
                self._log(what, None, started, attempt)
                if attempt == self.attempts or method == "POST":
                    raise TransientError(f"{what}: Graph unreachable") from exc
                self.sleep(self._delay(attempt))
                continue
            self._log(what, answer.status_code, started, attempt)
            if answer.status_code < 400:
                if self.after_write is not None and method != "GET":
                    self.after_write()
                return answer
            error = classify(answer, what)
            if not self._retry(error, answer.status_code, method, attempt):
                raise error
            wait = error.retry_after if isinstance(error, TransientError) else None
            self.sleep(wait if wait is not None else self._delay(attempt))
        raise AssertionError("unreachable")  # the loop returns or raises

    def pages(
        self,
        path_or_url: str,
        what: str,
        params: Mapping[str, str] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Every page of a listing or a delta round: `@odata.nextLink` is followed until
        a page has none (a delta round's last page carries `@odata.deltaLink`)."""
        page = self.request("GET", path_or_url, what, params=params, page_size=page_size)
        yield page
        while page.get("@odata.nextLink"):
            page = self.request("GET", str(page["@odata.nextLink"]), what, page_size=page_size)
            yield page

    def values(
        self, path_or_url: str, what: str, params: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The items of every page of a listing."""
        for page in self.pages(path_or_url, what, params):
            yield from page.get("value") or ()

    def batch(
        self,
        calls: Sequence[tuple[str, str, Mapping[str, Any] | None]],
        what: str,
        *,
        prefer: str = "",
    ) -> list[dict[str, Any] | Exception]:
        """Requests (method, path below the root with its query, JSON body) sent BATCH
        at a time in Graph's JSON batches, each with `prefer` besides immutable ids: one
        answer per request, in order, each its JSON body or the error it alone got
        (crmsync's error type). A batch refused whole raises."""
        answers: list[dict[str, Any] | Exception] = []
        for start in range(0, len(calls), BATCH):
            chunk = calls[start : start + BATCH]
            requests_ = [
                {
                    "id": str(number),
                    "method": method,
                    "url": "/" + path.lstrip("/"),
                    # a batch's own headers do not reach its requests: each asks itself
                    "headers": {
                        "Prefer": ", ".join(p for p in (IMMUTABLE_IDS, prefer) if p),
                        **({"Content-Type": "application/json"} if body is not None else {}),
                    },
                    **({"body": dict(body)} if body is not None else {}),
                }
                for number, (method, path, body) in enumerate(chunk)
            ]
            answer = self.request("POST", "$batch", what, body={"requests": requests_})
            by_id = {
                str(r.get("id")): r for r in answer.get("responses") or () if isinstance(r, dict)
            }
            for number in range(len(chunk)):
                found = by_id.get(str(number))
                if found is None:
                    answers.append(TransientError(f"{what}: Graph gave no answer for a request"))
                    continue
                status = int(found.get("status") or 0)
                body = found.get("body") if isinstance(found.get("body"), dict) else {}
                if 200 <= status < 400:
                    answers.append(body or {})
                    continue
                error = body.get("error") if isinstance(body, dict) else None
                code = str(error.get("code") or "") if isinstance(error, dict) else ""
                headers = {str(k).lower(): v for k, v in (found.get("headers") or {}).items()}
                answers.append(_error(status, code, _seconds(headers.get("retry-after")), what))
        return answers

    def _headers(self, page_size: int | None) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        prefer = IMMUTABLE_IDS + (f", odata.maxpagesize={page_size}" if page_size else "")
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Prefer": prefer,
        }

    def _retry(self, error: Exception, status: int, method: str, attempt: int) -> bool:
        if attempt == self.attempts or status not in _RETRIED:
            return False
        if method == "POST" and status != 429:
            return False
        wait = error.retry_after if isinstance(error, TransientError) else None
        return wait is None or wait <= self.max_wait

    def _delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2.0 ** (attempt - 1), self.max_wait))

    def _log(self, what: str, status: int | None, started: float, attempt: int) -> None:
        log.info(
            "graph request",
            extra={
                "call": what,
                "status": status,
                "ms": round((time.monotonic() - started) * 1000, 1),
                "attempt": attempt,
            },
        )


def classify(answer: requests.Response, what: str) -> Exception:
    """Graph's error answer as one of crmsync's error types; the text names the request
    and Graph's error code, never the message (it may quote data)."""
    return _error(answer.status_code, error_code(answer), _retry_after(answer), what)


def _error(status: int, code: str, retry_after: float | None, what: str) -> Exception:
    """An error status (of a request, or of one request in a batch) as crmsync's type."""
    text = f"{what}: HTTP {status} {code}".strip()
    if status == 429:
        return RateLimited(text, retry_after)
    if status >= 500:
        return TransientError(text, retry_after)
    if status == 410 or code.lower() in _RESYNC:
        return CursorExpired(text)
    table: dict[int, type[Exception]] = {
        401: GrantRevoked,
        403: PermissionDenied,
        404: NotFound,
        409: AlreadyExists,
        412: Conflict,
    }
    return table.get(status, PermanentError)(text)


def error_code(answer: requests.Response) -> str:
    """The `error.code` of Graph's JSON error body ("" when there is none)."""
    try:
        body = answer.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def _json(answer: requests.Response) -> dict[str, Any]:
    if not answer.content:
        return {}
    try:
        body = answer.json()
    except ValueError as exc:
        raise TransientError("Graph answered something other than JSON") from exc
    return body if isinstance(body, dict) else {"value": body}


def _retry_after(answer: requests.Response) -> float | None:
    return _seconds(answer.headers.get("Retry-After"))


def _seconds(value: Any) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
