"""crmsync's Graph client sends writes in Graph's JSON batches (the Microsoft 365
issue: "writes grouped in $batch (≤ 20) where each result can fail alone"), against the
Graph sandbox over https: twenty requests a batch, each answer in order, a request
Graph refuses or throttles failing alone as crmsync's error type (SYN-5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crmsync.errors import PermanentError, RateLimited
from crmsync.providers.microsoft.client import GraphClient
from sandbox.microsoft.contacts import state_of
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def client_of(graph: Graph) -> GraphClient:
    return GraphClient(graph.token, f"{graph.base}/v1.0", graph.session, sleep=lambda s: None)


def posts(count: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [("POST", "me/contacts", {"givenName": f"P{n}"}) for n in range(count)]


def test_SYN5_twenty_five_creates_go_in_two_batches_answered_in_order(graph: Graph) -> None:
    client = client_of(graph)
    before = graph.sandbox.requests.get("POST", 0)

    answers = client.batch(posts(25), "graph contacts.create")

    made = [a for a in answers if isinstance(a, dict)]
    assert [a["givenName"] for a in made] == [f"P{n}" for n in range(25)]
    assert graph.sandbox.requests.get("POST", 0) - before == 2 + 25  # two batches, their posts
    held = state_of(graph.sandbox.users[EMAIL]).contacts
    assert {a["id"] for a in made} == set(held)


def test_SYN5_a_request_graph_refuses_or_throttles_fails_alone(graph: Graph) -> None:
    client = client_of(graph)
    calls = posts(3)
    calls[1] = ("POST", "me/contacts", {"givenName": "Odd", "businessAddress": "10 Downing St"})
    graph.sandbox.inject(429, method="GET", path="^me/contacts/", retry_after=9)

    answers = client.batch([*calls, ("GET", "me/contacts/AAMkAnything", None)], "graph mixed")

    assert isinstance(answers[0], dict) and isinstance(answers[2], dict)
    assert isinstance(answers[1], PermanentError) and "HTTP 400" in str(answers[1])
    assert isinstance(answers[3], RateLimited) and answers[3].retry_after == 9.0
    assert "Downing" not in str(answers[1])  # the text names the request, never data
