"""JSON batching in the Graph sandbox over https: each request answered alone, a failing
one leaving the others alone, dependsOn, inner throttling, and the 20-request limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.microsoft_sandbox import Graph, served_graph

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def batch(graph: Graph, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    answer = graph.ok(graph.post("$batch", {"requests": requests}))
    return {r["id"]: r for r in answer["responses"]}


def test_each_request_of_a_batch_is_answered_alone(graph: Graph) -> None:
    answers = batch(
        graph,
        [
            {"id": "1", "method": "GET", "url": "/me"},
            {
                "id": "2",
                "method": "POST",
                "url": "/me/contacts",
                "headers": JSON,
                "body": {"givenName": "Grace"},
            },
            {"id": "3", "method": "GET", "url": "/me/todo/lists"},
        ],
    )

    assert answers["1"]["status"] == 200 and answers["1"]["body"]["mail"]
    assert answers["2"]["status"] == 201 and answers["2"]["body"]["givenName"] == "Grace"
    assert answers["3"]["body"]["value"][0]["wellknownListName"] == "defaultList"
    contacts = graph.ok(graph.get("me/contacts"))["value"]
    assert [c["id"] for c in contacts] == [answers["2"]["body"]["id"]]


def test_a_failing_request_does_not_fail_the_others_or_the_batch(graph: Graph) -> None:
    answer = graph.post(
        "$batch",
        {
            "requests": [
                {"id": "a", "method": "GET", "url": "/me/contacts/missing"},
                {"id": "b", "method": "GET", "url": "/me/contacts"},
            ]
        },
    )

    assert answer.status_code == 200
    answers = {r["id"]: r for r in answer.json()["responses"]}
    assert answers["a"]["status"] == 404
    assert answers["a"]["body"]["error"]["code"] == "ErrorItemNotFound"
    assert answers["b"]["status"] == 200


def test_a_request_depending_on_a_failed_one_gets_424(graph: Graph) -> None:
    answers = batch(
        graph,
        [
            {"id": "1", "method": "GET", "url": "/me/contacts/missing"},
            {"id": "2", "method": "GET", "url": "/me", "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": "/me"},
        ],
    )

    assert answers["2"]["status"] == 424 and answers["3"]["status"] == 200


def test_a_request_with_a_body_but_no_content_type_gets_400_alone(graph: Graph) -> None:
    answers = batch(
        graph,
        [
            {"id": "1", "method": "POST", "url": "/me/contacts", "body": {"givenName": "X"}},
            {"id": "2", "method": "GET", "url": "/me"},
        ],
    )

    assert answers["1"]["status"] == 400 and answers["2"]["status"] == 200


def test_more_than_20_requests_fail_the_whole_batch_with_400(graph: Graph) -> None:
    requests = [{"id": str(n), "method": "GET", "url": "/me"} for n in range(21)]

    answer = graph.post("$batch", {"requests": requests})

    assert answer.status_code == 400
    assert len(batch(graph, requests[:20])) == 20


def test_repeated_request_ids_fail_the_batch(graph: Graph) -> None:
    requests = [{"id": "1", "method": "GET", "url": "/me"}] * 2

    assert graph.post("$batch", {"requests": requests}).status_code == 400


def test_an_inner_request_can_be_throttled_with_retry_after(graph: Graph) -> None:
    graph.sandbox.inject(429, path="^me/contacts", retry_after=7)

    answers = batch(
        graph,
        [
            {"id": "1", "method": "GET", "url": "/me/contacts"},
            {"id": "2", "method": "GET", "url": "/me"},
        ],
    )

    assert answers["1"]["status"] == 429 and answers["1"]["headers"]["Retry-After"] == "7"
    assert answers["2"]["status"] == 200


def test_inner_requests_use_the_batchs_token_and_its_scopes(graph: Graph) -> None:
    token = graph.sandbox.issue_token("ada@contoso.example", ["User.Read"])

    answer = graph.post(
        "$batch",
        {"requests": [{"id": "1", "method": "GET", "url": "/me/contacts"}]},
        token=token,
    )

    assert answer.json()["responses"][0]["status"] == 403
