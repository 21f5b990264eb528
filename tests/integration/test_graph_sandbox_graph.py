"""Graph v1.0 in the Microsoft sandbox, what every endpoint shares: bearer tokens the
identity module issued (else 401 in Graph's error shape), scopes (403), and injected
throttling (429 with Retry-After) and outages (503), over https with requests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import msal
import pytest

from sandbox.microsoft import identity
from sandbox.microsoft.server import trusting_session
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def assert_graph_error(answer: object, status: int, code: str) -> None:
    import requests

    assert isinstance(answer, requests.Response)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]
    assert set(error["innerError"]) >= {"date", "request-id", "client-request-id"}


def test_me_answers_the_signed_in_user(graph: Graph) -> None:
    me = graph.ok(graph.get("me"))

    user = graph.sandbox.users[EMAIL]
    assert (me["id"], me["userPrincipalName"], me["mail"]) == (user.oid, EMAIL, EMAIL)
    assert me["@odata.context"].endswith("$metadata#users/$entity")


def test_a_request_without_a_token_gets_401_invalid_authentication_token(graph: Graph) -> None:
    answer = graph.session.get(graph.root + "me", timeout=5)

    assert_graph_error(answer, 401, "InvalidAuthenticationToken")


def test_a_token_the_sandbox_never_issued_gets_401(graph: Graph) -> None:
    assert_graph_error(graph.get("me", token="EwBforged"), 401, "InvalidAuthenticationToken")


def test_an_expired_access_token_gets_401_until_the_client_refreshes(graph: Graph) -> None:
    graph.clock.now += timedelta(days=2)

    assert_graph_error(graph.get("me"), 401, "InvalidAuthenticationToken")


def test_a_token_without_the_endpoints_scope_gets_403(graph: Graph) -> None:
    token = graph.sandbox.issue_token(EMAIL, ["Tasks.ReadWrite"])

    assert_graph_error(graph.get("me", token=token), 403, "ErrorAccessDenied")


def test_AUTH1_an_access_token_from_msal_opens_graph(graph: Graph) -> None:
    client_id, redirect = "crmsync-web", "http://127.0.0.1:9/callback"
    graph.sandbox.add_app(client_id, "s3cret", [redirect])
    app = msal.ConfidentialClientApplication(
        client_id,
        client_credential="s3cret",
        authority=f"{graph.base}/{graph.sandbox.tenant_id}",
        instance_discovery=False,
        http_client=trusting_session(graph.ca),
    )
    flow = app.initiate_auth_code_flow(["User.Read"], redirect_uri=redirect)
    answer = identity.consent(flow["auth_uri"], EMAIL, verify=graph.ca)
    token = app.acquire_token_by_auth_code_flow(flow, answer)["access_token"]

    me = graph.ok(graph.get("me", token=token))

    assert me["id"] == graph.sandbox.users[EMAIL].oid


def test_injected_throttling_answers_429_with_retry_after_then_recovers(graph: Graph) -> None:
    graph.sandbox.inject(429, retry_after=7, times=2)

    first, second, third = graph.get("me"), graph.get("me"), graph.get("me")

    assert_graph_error(first, 429, "TooManyRequests")
    assert first.headers["Retry-After"] == "7"
    assert second.status_code == 429
    assert third.status_code == 200


def test_an_injected_outage_answers_503_service_not_available(graph: Graph) -> None:
    graph.sandbox.inject(503, retry_after=2)

    answer = graph.get("me")

    assert_graph_error(answer, 503, "serviceNotAvailable")
    assert answer.headers["Retry-After"] == "2"


def test_a_fault_aimed_at_one_path_and_method_leaves_others_alone(graph: Graph) -> None:
    graph.sandbox.inject(429, path=r"^me/todo", method="POST")

    assert graph.get("me").status_code == 200
    assert len(graph.sandbox.faults) == 1


def test_faults_never_touch_the_identity_endpoints(graph: Graph) -> None:
    graph.sandbox.inject(503)
    tenant = graph.sandbox.tenant_id

    metadata = graph.session.get(
        f"{graph.base}/{tenant}/v2.0/.well-known/openid-configuration", timeout=5
    )

    assert metadata.status_code == 200
