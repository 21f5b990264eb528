"""No request makes a public function answer 5xx, and a refused request has no side
effect (the architecture's invariant; AUTH-1, AUTH-2, RUN-3): every function of
functions/main.py is served by functions-framework on a real socket and sent
Hypothesis-made requests (methods, paths, query strings with non-ASCII and broken
percent-encodings, headers, a browser's Accept among them, bodies of any bytes or of
near-valid JSON shapes, chunked transfer), next to the four requests a probe found
answered with a 500.

The state compared before and after a refused request is everything crmsync keeps:
the memory store of every tenant, the global channel / state / mailbox directories,
the task queue and the outbound events."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmsync import entrypoints, service
from crmsync.crm import events
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import EVENT_SECRET, TARGETS, LocalStack, function_process, kill

pytestmark = pytest.mark.integration


EXAMPLES = 150  # per function; each is one request over a socket
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def live() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    stack.admin_token = stack.create_demo_tenant()  # type: ignore[attr-defined]
    assert stack.connect("u1").status_code == 200
    link = service.onboarding_link(stack.services, DEMO_TENANT, "u2")
    stack.fuzz_link = link.split("link=", 1)[1]  # type: ignore[attr-defined]
    yield stack
    stack.close()


def state(stack: LocalStack) -> Any:
    """Everything crmsync keeps, as plain values (read and write counters left out)."""
    backend = stack.services.backend
    stores = {
        tenant: {k: v for k, v in vars(store).items() if k not in ("reads", "writes")}
        for tenant, store in backend._stores.items()
        if store.tenant_record() is not None or store.connection_records()
    }
    kept = (stores, backend._channels, backend._states, backend._mailboxes)
    queue = sorted(stack.queue.waiting)
    return copy.deepcopy(kept), queue, len(stack.events.events)


def send(
    base_url: str,
    method: str,
    target: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    chunked: bool,
) -> int:
    """One raw request; the status it got."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        path = f"/{target}{query}" if target else f"/{query}"
        if chunked:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for at in range(0, len(body), 997):
                piece = body[at : at + 997]
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            connection.request(method, path, body=body or None, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


# -- strategies ---------------------------------------------------------------------------------
TEXT = st.text(max_size=40) | st.sampled_from(["", "abc.%C3%A9", "é", "\x00", "a" * 300])
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
PARAMS = st.sampled_from(
    ["link", "provider", "services", "switch", "state", "code", "error", "scope", "x"]
)


@st.composite
def queries(draw: st.DrawFn, stack: LocalStack) -> str:
    pairs = draw(st.lists(st.tuples(PARAMS, TEXT), max_size=5))
    raw = [f"{quote(k)}={quote(v, safe='')}" for k, v in pairs]
    if draw(st.booleans()):  # near-valid: a real onboarding link, maybe broken
        link = stack.fuzz_link  # type: ignore[attr-defined]
        cut = draw(st.integers(0, len(link)))
        mangled = draw(st.sampled_from([link, link[:cut], link[:cut] + "%C3%A9" + link[cut:]]))
        raw.append(f"link={mangled}")
    if draw(st.booleans()):
        raw.append(draw(st.sampled_from(["%", "%zz", "%C3", "=&=", "a=%FF%FE"])))
    return ("?" + "&".join(raw)) if raw else ""


def envelope(data: Any, attributes: Any) -> Any:
    message: dict[str, Any] = {"data": data}
    if attributes is not ...:
        message["attributes"] = attributes
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


@st.composite
def bodies(draw: st.DrawFn, stack: LocalStack) -> tuple[bytes, dict[str, str]]:
    """A body and the headers that go with it: any bytes, any JSON, Pub/Sub envelopes
    with wrong shapes, CRM events signed right or nearly, task payloads."""
    now = datetime.now(UTC).replace(microsecond=0)
    event = json.dumps(
        {
            "tenant": draw(st.sampled_from([DEMO_TENANT, "other", "é", "../x"])),
            "user": draw(st.sampled_from(["u1", "u2", "", "é"])),
            "kind": draw(st.sampled_from(["contact", "activity", "nothing"])),
            "ids": draw(st.lists(st.sampled_from(["1", "x", "é"]), max_size=3)),
            "sent_at": now.isoformat(),
        }
    ).encode()
    signature = events.sign(EVENT_SECRET.encode(), event, now)
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return draw(st.binary(max_size=300)), {}
    if kind == 1:
        return json.dumps(draw(ANY_JSON)).encode(), {"Content-Type": "application/json"}
    if kind == 2:  # a Pub/Sub push whose attributes or signature have the wrong type
        data = draw(st.sampled_from([base64.b64encode(event).decode(), "***", 5, None, "e30="]))
        attributes = draw(
            st.sampled_from([..., None, "signature", ["a"], 7, {"signature": signature}])
            | st.builds(lambda v: {"signature": v}, ANY_JSON)
        )
        body = json.dumps(envelope(data, attributes)).encode()
        return body, {"Content-Type": "application/json"}
    if kind == 3:  # a signed event, its signature right, stale or mangled
        header = draw(st.sampled_from([signature, signature[:-1] + "0", "t=1,v1=" + "0" * 64, "é"]))
        return event, {"Content-Type": "application/json", "Crmsync-Signature": header}
    if kind == 4:  # a task payload
        payload = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "tenant": st.sampled_from([DEMO_TENANT, "nobody", "é", ""]) | ANY_JSON,
                    "connection": st.sampled_from(["google-u9", "x/y", "é"]) | ANY_JSON,
                    "trigger": st.sampled_from(["schedule", "é", ""]) | ANY_JSON,
                },
            )
        )
        return json.dumps(payload).encode(), {"Content-Type": "application/json"}
    if kind == 5:  # not UTF-8 at all
        return b"\xff\xfe" + draw(st.binary(max_size=50)), {"Content-Type": "application/json"}
    return b"", {}


HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "Authorization",
            "X-Goog-Channel-Id",
            "X-Goog-Channel-Token",
            "X-Goog-Resource-Id",
            "X-Goog-Resource-State",
            "Content-Type",
            "Accept",
            "X-Other",
        ]
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=60,
    )
    | st.sampled_from(["Bearer demo.x", "Bearer é", "Bearer", "sync", "exists", "text/html"]),
    max_size=4,
)


@st.composite
def requests_for(draw: st.DrawFn, stack: LocalStack, target: str) -> dict[str, Any]:
    body, body_headers = draw(bodies(stack))
    headers = {**draw(HEADERS), **body_headers}
    if target == "admin" and draw(st.booleans()):
        token = draw(st.sampled_from([stack.admin_token, "demo.wrong", "é.é"]))  # type: ignore[attr-defined]
        headers["Authorization"] = f"Bearer {token}"
    suffix = ""
    if target == "admin":
        suffix = draw(
            st.sampled_from(["", "/", "/status", "/health", "/sync/", "/disconnect/"])
        ) + draw(st.sampled_from(["", "google-u9", "a/b", "%C3%A9", "..", "google-u2"]))
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])),
        "target": target + suffix,
        "query": draw(queries(stack)),
        "headers": headers,
        "body": body,
        "chunked": draw(st.booleans()),
    }


# -- the property -------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_no_request_makes_a_public_function_answer_5xx_nor_leaves_a_trace_when_refused(
    live: LocalStack, target: str
) -> None:
    @FUZZ
    @given(request=requests_for(live, target))
    def check(request: dict[str, Any]) -> None:
        if request["method"] == "POST" and request["target"].startswith("admin/disconnect"):
            request["target"] = "admin/status"  # a disconnect that works is a side effect
        before = state(live)
        status = send(live.functions_url, **request)
        assert status < 500, request
        if status >= 400:
            assert state(live) == before, (status, request)

    check()


# -- what the probe found ----------------------------------------------------------------------
def test_the_probes_requests_are_refused_with_a_4xx(live: LocalStack) -> None:
    url = live.functions_url
    before = state(live)
    answers = [
        requests.get(url + "/oauth_start?link=abc.%C3%A9", timeout=10),
        requests.get(url + "/oauth_callback?state=abc.%C3%A9&code=x", timeout=10),
    ]
    for attributes in ("a string", ["a", "list"]):
        answers.append(
            requests.post(url + "/crm_events", json=envelope("e30=", attributes), timeout=10)
        )
    for signature in (5, ["a"]):
        answers.append(
            requests.post(
                url + "/crm_events",
                json=envelope("e30=", {"signature": signature}),
                timeout=10,
            )
        )
    assert [a.status_code for a in answers] == [400] * 6
    assert all(a.headers["Content-Type"].startswith("text/html") for a in answers[:2])
    assert all("error" in a.json() for a in answers[2:])
    assert state(live) == before


@pytest.mark.parametrize("target", ["crm_events", "sync_worker", "gmail_push"])
def test_a_body_past_the_limit_is_refused_as_it_is_read_whatever_its_encoding(
    live: LocalStack, target: str
) -> None:
    before = state(live)
    started = time.monotonic()
    status = send(
        live.functions_url,
        "POST",
        target,
        "",
        {"Content-Type": "application/json"},
        b"[" + b"0," * (5 * 1024 * 1024) + b"0]",  # about 10 MB, sent chunked: no length
        chunked=True,
    )
    assert status == 413
    assert time.monotonic() - started < 30
    assert state(live) == before


def test_an_unhandled_error_is_one_log_line_with_a_reference_and_no_content(
    live: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    """A defect (here: a store that fails in a way crmsync does not expect) still gets
    one JSON-able log line naming the handler, a reference and the error's type."""
    broken = service.Services(**{**vars(live.services), "backend": _Broken()})
    entrypoints.use(broken)
    try:
        with caplog.at_level("ERROR", logger="crmsync.entrypoints"):
            answer = requests.post(
                live.functions_url + "/sync_worker",
                json={"tenant": DEMO_TENANT, "connection": "google-u1", "trigger": "x"},
                timeout=10,
            )
    finally:
        entrypoints.use(live.services)
    assert answer.status_code == 500 and answer.json()["reference"]
    [line] = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert line.request == answer.json()["reference"]  # type: ignore[attr-defined]
    assert line.error == "KeyError" and line.handler == "sync_worker"  # type: ignore[attr-defined]


class _Broken:
    def store(self, tenant: str) -> Any:
        raise KeyError("a defect")


@pytest.mark.parametrize("target", ["crm_events", "sync_worker"])
def test_the_body_limit_holds_under_gunicorn_as_functions_framework_serves_in_production(
    live: LocalStack, target: str
) -> None:
    """functions-framework serves a deployed function with gunicorn, which passes a
    chunked body on undeclared: the limit is kept on the bytes read there too."""
    env = {
        **os.environ,
        **live.environment(),
        "CRMSYNC_STORE": "memory",
        "CRMSYNC_FUNCTION": target,
        "CRMSYNC_TASKS_QUEUE": "projects/p/locations/l/queues/q",
        "CRMSYNC_WORKER_URL": "http://127.0.0.1:9/sync_worker",
        "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:9",
    }
    server, served = function_process(target, env)
    try:
        assert "gunicorn" in requests.get(served, timeout=10).headers.get("Server", "")
        status = send(
            served,
            "POST",
            "",
            "",
            {"Content-Type": "application/json"},
            b"[" + b"0," * (5 * 1024 * 1024) + b"0]",
            chunked=True,
        )
        assert status == 413
    finally:
        kill(server)
