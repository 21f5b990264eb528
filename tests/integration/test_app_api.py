"""The web app's JSON API as docs/app-api.yaml describes it (the web-app issue, "How it
is built"): every route of the app is in the document and every path of the document
is a route; and schemathesis, sending requests made from the document through the
functions to a signed-in user's and an admin's session, finds no server error and, for
the reads, no answer outside the document (status, content type, body schema)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from crmsync import app
from crmsync.app import pages  # noqa: F401  (registers the routes)
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import csrf, sign_in

pytestmark = pytest.mark.integration

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "app-api.yaml"
EXAMPLES = 5  # per operation, mode and session
# Operations that end what the fuzzing rides on: the session, or the connection.
SPARED = {"signOut", "disconnect"}


def documented() -> set[tuple[str, str]]:
    paths = yaml.safe_load(DOCUMENT.read_text())["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def routed() -> set[tuple[str, str]]:
    found = set()
    for route in app.ROUTES:
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route.pattern.pattern)
        path = path.strip("^$").replace("\\", "")
        found |= {(method, path) for method in route.methods}
    return found


def test_every_route_of_the_app_is_documented_and_every_documented_path_is_a_route() -> None:
    assert documented() == routed()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    yield stack
    stack.close()


def sessions(stack: LocalStack) -> dict[str, dict[str, str]]:
    """The headers of u1's and the admin u2's sessions: the cookie and the CSRF token."""
    found = {}
    for user, provider in (("u1", "google"), ("u2", "microsoft")):
        browser = sign_in(stack, DEMO_USERS[user], provider)
        token = csrf(browser.get(stack.services.url("app") + "/me").text)
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        found[user] = {"Cookie": cookie, "X-CSRF-Token": token}
    return found


def exercise(
    operation: Any, mode: Any, checks: list[Any], base: str, headers: dict[str, str]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode, headers=dict(headers)))
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base, headers=dict(headers), checks=checks, timeout=30)

    with contextlib.suppress(Unsatisfiable):  # nothing of this mode can be made for it
        run()


def test_the_api_answers_every_generated_request_as_documented_and_never_with_a_500(
    stack: LocalStack,
) -> None:
    schema = schemathesis.openapi.from_path(DOCUMENT)
    base = stack.services.url("app") + "/api"
    reads = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    tried = 0
    for headers in sessions(stack).values():
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.definition.raw.get("operationId") in SPARED:
                continue
            if operation.method.upper() == "GET":
                exercise(operation, GenerationMode.POSITIVE, reads, base, headers)
            exercise(operation, GenerationMode.NEGATIVE, [not_a_server_error], base, headers)
            tried += 1
    assert tried >= 2 * (len(documented()) - len(SPARED))
