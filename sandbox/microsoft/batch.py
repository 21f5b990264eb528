"""JSON batching in the Graph sandbox: `POST /$batch`.

Up to 20 requests (`id`, `method`, `url` relative to /v1.0, optional `headers`, `body`
and `dependsOn`), each answered alone in `responses` with its own `status`, `headers`
and `body`; the batch itself is answered 200 even when some of its requests fail. More
than 20 requests, a repeated id, or a request without id, method or url fails the whole
batch with 400. A request with a body must say its Content-Type, else it alone gets 400.
A request whose `dependsOn` names a failed request gets 424 without running. Requests
run in order, with the batch's Authorization, and injected faults apply to each as to a
request of its own (an inner 429 with Retry-After, ...). An answer that is not JSON (a
message's MIME from `$value`) is given base64-encoded in its `body`, as Graph does.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from sandbox.microsoft.core import (
    GraphError,
    MicrosoftSandbox,
    Route,
    User,
    json_response,
    read_json,
    route,
)

MAX_REQUESTS = 20
SCOPES = frozenset(
    {
        "User.Read",
        "Calendars.Read",
        "Calendars.ReadWrite",
        "Contacts.Read",
        "Contacts.ReadWrite",
        "Tasks.Read",
        "Tasks.ReadWrite",
    }
)
_KEEP_HEADERS = ("Content-Type", "Location", "Retry-After", "ETag", "Preference-Applied")


def routes(sandbox: MicrosoftSandbox) -> list[Route]:
    return [route("POST", "v1.0/$batch", lambda r, u: _batch(sandbox, r, u), SCOPES)]


def _check(body: dict[str, Any]) -> list[dict[str, Any]]:
    found = body.get("requests")
    if not isinstance(found, list) or not found:
        raise GraphError(400, "BadRequest", "The batch request must contain requests.")
    if len(found) > MAX_REQUESTS:
        raise GraphError(
            400,
            "BadRequest",
            f"Number of batch request steps exceeds the maximum value of {MAX_REQUESTS}.",
        )
    ids: set[str] = set()
    for step in found:
        if not isinstance(step, dict) or not all(step.get(k) for k in ("id", "method", "url")):
            raise GraphError(400, "BadRequest", "Each request needs an id, a method and a url.")
        if str(step["id"]) in ids:
            raise GraphError(400, "BadRequest", "Batch request ids must be unique.")
        ids.add(str(step["id"]))
    return found


def _batch(sandbox: MicrosoftSandbox, request: Request, user: User) -> Response:
    steps = _check(read_json(request))
    dispatch = sandbox.dispatch
    assert dispatch is not None
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for step in steps:
        step_id = str(step["id"])
        failed = [d for d in step.get("dependsOn") or [] if statuses.get(str(d), 0) >= 400]
        if failed:
            error = GraphError(424, "FailedDependency", "A request this one depends on failed.")
            answer = {"id": step_id, "status": 424, "body": error.body(sandbox.clock())}
        else:
            answer = _run(sandbox, dispatch, request, step)
        status = answer["status"]
        statuses[step_id] = status if isinstance(status, int) else 500
        responses.append(answer)
    return json_response({"responses": responses})


def _run(
    sandbox: MicrosoftSandbox, dispatch: Any, outer: Request, step: dict[str, Any]
) -> dict[str, Any]:
    step_id, url = str(step["id"]), str(step["url"])
    headers = {str(k): str(v) for k, v in (step.get("headers") or {}).items()}
    body = step.get("body")
    if url.startswith(("http://", "https://")):
        error = GraphError(400, "BadRequest", "Batch request urls must be relative.")
        return {"id": step_id, "status": 400, "body": error.body(sandbox.clock())}
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        error = GraphError(400, "BadRequest", "Content-Type header is required with a body.")
        return {"id": step_id, "status": 400, "body": error.body(sandbox.clock())}
    headers.setdefault("Authorization", outer.headers.get("Authorization", ""))
    path, _, query = url.lstrip("/").partition("?")
    data = json.dumps(body) if isinstance(body, dict | list) else body
    builder = EnvironBuilder(
        path="/v1.0/" + path,
        query_string=query,
        method=str(step["method"]).upper(),
        headers=list(headers.items()),
        data=data,
    )
    try:
        response: Response = dispatch(Request(builder.get_environ()))
    finally:
        builder.close()
    shown_headers = {k: v for k, v in response.headers.items() if k in _KEEP_HEADERS}
    answer: dict[str, Any] = {
        "id": step_id,
        "status": response.status_code,
        "headers": shown_headers,
    }
    raw = response.get_data()
    if raw:
        is_json = response.mimetype == "application/json"
        # Graph gives a body that is not JSON (a message's MIME) base64-encoded
        answer["body"] = json.loads(raw) if is_json else base64.b64encode(raw).decode()
    return answer
