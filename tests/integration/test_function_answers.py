"""First hour: every address of crmsync's functions that a user, an admin or a newcomer
lands on answers with a page or with one error shape, `{"error": "<reason>"}` — never
raw JSON to a browser, never a traceback (RUN-1, AUTH-1). A wrong method is 405 with
`Allow` (RFC 9110); a missing or refused admin token 401 with `WWW-Authenticate:
Bearer` (RFC 6750), told apart. The functions are served by functions-framework on a
real socket, as in test_functions.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from crmsync import entrypoints, service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import TARGETS, LocalStack, consent
from tests.integration.test_functions import page_text

pytestmark = pytest.mark.integration

CONNECTION = "google-u1"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Every route of every function (below the functions' URL) and the methods it answers.
ROUTES = {
    "oauth_start": {"GET", "HEAD"},
    "oauth_callback": {"GET", "HEAD", "POST"},
    "google_webhook": {"POST"},
    "graph_webhook": {"POST"},
    "crm_events": {"POST"},
    "addon/google": {"POST"},
    "addon/microsoft": {"GET", "HEAD", "POST"},  # the Outlook task pane is a page
    "gmail_push": {"POST"},
    "scheduler_fanout": {"POST"},
    "sync_worker": {"POST"},
    "admin": {"GET", "HEAD"},
    "admin/health": {"GET", "HEAD"},
    "admin/status": {"GET", "HEAD"},
    f"admin/sync/{CONNECTION}": {"POST"},
    f"admin/disconnect/{CONNECTION}": {"POST"},
    "app": {"GET", "HEAD"},
    "app/sign-in": {"GET", "HEAD"},
    "app/sign-out": {"POST"},
    "app/me": {"GET", "HEAD"},
    "app/api/me": {"GET", "HEAD"},
    f"app/me/connections/{CONNECTION}/sync": {"POST"},
}
PAGES = ("oauth_start", "oauth_callback")  # the functions people open in a browser
WRONG = [(route, m) for route, allowed in ROUTES.items() for m in METHODS if m not in allowed]


@pytest.fixture(scope="module")
def live() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.admin_token = stack.create_demo_tenant()  # type: ignore[attr-defined]
    yield stack
    stack.close()


def url(stack: LocalStack, route: str) -> str:
    return f"{stack.functions_url}/{route}"


def admin_token(stack: LocalStack) -> str:
    return str(stack.admin_token)  # type: ignore[attr-defined]


def error_of(answer: requests.Response) -> str:
    """The reason of an error in crmsync's one error shape: `{"error": "<reason>"}`."""
    assert answer.status_code >= 400, answer.text
    assert answer.headers["Content-Type"] == "application/json", answer.text
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    return str(body["error"])


def unsigned_event() -> str:
    """A well-formed CRM event, to be sent with a signature that does not verify."""
    return json.dumps(
        {
            "tenant": DEMO_TENANT,
            "user": "u1",
            "kind": "contact",
            "ids": ["1"],
            "sent_at": datetime.now(UTC).isoformat(),
        }
    )


# -- 405 with Allow ------------------------------------------------------------------------------
def test_first_hour_the_wrong_method_test_covers_every_function() -> None:
    assert {route.split("/")[0] for route in ROUTES} == set(TARGETS)


@pytest.mark.parametrize(("route", "method"), WRONG)
def test_first_hour_a_wrong_method_on_any_route_is_405_naming_the_allowed_methods(
    live: LocalStack, route: str, method: str
) -> None:
    """RFC 9110 15.5.6: a 405 names the methods the route answers, for a machine (the
    error shape) and a browser (a page) alike; the admin token is not asked first."""
    headers = {"Authorization": f"Bearer {admin_token(live)}"} if route.startswith("admin") else {}
    for accept in ({}, BROWSER):
        answer = requests.request(
            method, url(live, route), headers={**headers, **accept}, timeout=10
        )
        assert answer.status_code == 405, (route, method, answer.text)
        assert set(answer.headers["Allow"].split(", ")) == ROUTES[route]
        if method == "HEAD":
            continue
        if accept or route in PAGES:
            assert page_text(answer)
        else:
            error_of(answer)


def test_first_hour_an_unknown_admin_path_is_404_in_the_error_shape_naming_the_paths(
    live: LocalStack,
) -> None:
    for token in (None, admin_token(live)):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = requests.get(url(live, "admin/nothing"), headers=headers, timeout=10)
        assert answer.status_code == 404
        assert "/status" in error_of(answer) and "/sync/<connection>" in error_of(answer)


# -- the one error shape -------------------------------------------------------------------------
def test_first_hour_every_refusal_of_a_json_endpoint_is_the_one_error_shape(
    live: LocalStack,
) -> None:
    """Refusals of each function machines call: the body is `{"error": <reason>}` and
    nothing else (no `result`, no other key)."""
    signed = {"Content-Type": "application/json", "Crmsync-Signature": "t=1,v1=00"}
    event = unsigned_event()
    refusals = [
        requests.post(url(live, "google_webhook"), headers={"X-Goog-Channel-Id": "no"}, timeout=10),
        requests.post(url(live, "graph_webhook"), data=b"not json", timeout=10),
        requests.post(
            url(live, "graph_webhook"), json={"value": [{"subscriptionId": "no"}]}, timeout=10
        ),
        requests.post(url(live, "crm_events"), data=b"{", timeout=10),
        requests.post(url(live, "crm_events"), data=event, headers=signed, timeout=10),
        requests.post(url(live, "crm_events"), data=b"x" * (65 * 1024), timeout=10),
        requests.post(url(live, "gmail_push"), json={"message": {}}, timeout=10),
        requests.post(url(live, "sync_worker"), json=[1, 2], timeout=10),
        requests.post(
            url(live, "sync_worker"),
            json={"tenant": DEMO_TENANT, "connection": "google-nobody", "trigger": "schedule"},
            timeout=10,
        ),
        requests.get(url(live, "admin/status"), timeout=10),
        requests.post(
            url(live, "admin/sync/google-nobody"),
            headers={"Authorization": f"Bearer {admin_token(live)}"},
            timeout=10,
        ),
    ]
    statuses = [answer.status_code for answer in refusals]
    assert statuses == [404, 400, 404, 400, 401, 413, 400, 400, 404, 401, 404]
    assert all(error_of(answer) for answer in refusals)


def test_first_hour_a_refused_crm_event_signature_names_how_to_authenticate(
    live: LocalStack,
) -> None:
    """A 401 carries WWW-Authenticate (RFC 9110 11.6.1): CRM events authenticate with
    their signature header."""
    event = unsigned_event()
    answer = requests.post(
        url(live, "crm_events"),
        data=event,
        headers={"Content-Type": "application/json", "Crmsync-Signature": "t=1,v1=00"},
        timeout=10,
    )
    assert answer.status_code == 401 and error_of(answer)
    assert answer.headers["WWW-Authenticate"].startswith("Crmsync-Signature")


def test_first_hour_a_defect_is_a_500_whose_error_gives_the_reference_and_a_page_to_people(
    live: LocalStack,
) -> None:
    """A 500 keeps the shape: its error says what to do and carries the reference the
    log line has; a browser gets the page with that reference."""
    broken = service.Services(**{**vars(live.services), "backend": _Broken()})
    entrypoints.use(broken)
    try:
        task = {"tenant": DEMO_TENANT, "connection": CONNECTION, "trigger": "x"}
        machine = requests.post(url(live, "sync_worker"), json=task, timeout=10)
        person = requests.post(url(live, "sync_worker"), json=task, headers=BROWSER, timeout=10)
    finally:
        entrypoints.use(live.services)
    assert machine.status_code == 500 and set(machine.json()) == {"error", "reference"}
    assert machine.json()["reference"] in machine.json()["error"]
    assert person.status_code == 500 and "Reference:" in page_text(person)


class _Broken:
    def store(self, tenant: str) -> Any:
        raise KeyError("a defect")


# -- the admin token (401) ----------------------------------------------------------------------
@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer  ", "Basic abc"])
def test_first_hour_admin_without_a_token_is_told_to_send_one(
    live: LocalStack, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = requests.get(url(live, "admin/status"), headers=headers, timeout=10)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="crmsync admin"'
    assert error_of(answer).startswith("no admin token was given")


@pytest.mark.parametrize(
    ("token", "named"),
    [("demo.wrong", "'demo'"), ("other.x", "'other'"), ("demo", "'demo'"), ("../x.y", "any")],
)
def test_first_hour_admin_with_a_wrong_token_is_told_it_was_not_accepted_for_that_tenant(
    live: LocalStack, token: str, named: str
) -> None:
    """RFC 6750 3.1: a token given but not valid is `error="invalid_token"`; a wrong
    secret and an unknown tenant read alike, so the answer reveals no tenant."""
    headers = {"Authorization": f"Bearer {token}"}
    answer = requests.get(url(live, "admin/status"), headers=headers, timeout=10)
    assert answer.status_code == 401
    challenge = answer.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    reason = error_of(answer)
    assert reason.startswith("the admin token was not accepted") and named in reason


def test_first_hour_admin_token_refusals_are_pages_to_a_browser(live: LocalStack) -> None:
    for token in (None, "demo.wrong"):
        headers = {**BROWSER, **({"Authorization": f"Bearer {token}"} if token else {})}
        answer = requests.get(url(live, "admin/status"), headers=headers, timeout=10)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "admin token you were given" in page_text(answer)


# -- browsers get pages --------------------------------------------------------------------------
def test_first_hour_the_admin_address_is_a_page_to_a_browser_and_json_to_a_machine(
    live: LocalStack,
) -> None:
    for route in ("admin", "admin/", "admin/health"):
        person = requests.get(url(live, route), headers=BROWSER, timeout=10)
        assert person.status_code == 200
        shown = page_text(person)
        assert f"curl -H 'Authorization: Bearer <admin token>' {url(live, 'admin')}/status" in shown
        assert f"POST {url(live, 'admin')}/sync/<connection>" in shown
        machine = requests.get(url(live, route), timeout=10)
        assert (machine.status_code, machine.json()) == (200, {"ok": True})


@pytest.mark.parametrize(
    "target", [t for t in TARGETS if t not in PAGES and t not in ("admin", "app")]
)
def test_first_hour_a_machines_address_opened_in_a_browser_says_what_it_is_for(
    live: LocalStack, target: str
) -> None:
    answer = requests.get(url(live, target), headers=BROWSER, timeout=10)
    assert answer.status_code == 405 and answer.headers["Allow"] == "POST"
    shown = page_text(answer)
    assert "This address is" in shown and "onboarding link" in shown
    assert "<h1>This address is not a page</h1>" in answer.text  # not "did not work"


@pytest.mark.parametrize("sent", ["query", "form"])
@pytest.mark.parametrize(
    ("error", "says", "next_step"),
    [
        ("access_denied", "consent was not given", "allow access"),
        ("temporarily_unavailable", "busy", "in a few minutes"),
        ("server_error", "failed to finish", "in a few minutes"),
        ("invalid_scope", "did not finish", "tell your admin"),
    ],
)
def test_AUTH1_coming_back_from_the_provider_without_consent_is_a_page_saying_what_to_do(
    live: LocalStack, sent: str, error: str, says: str, next_step: str
) -> None:
    """Google sends the answer in the query, Microsoft as a form its page POSTs
    (form_post, with an error description); either way, also to a client that asks
    for JSON, the user sees a page, and nothing is connected."""
    answer_back = {"error": error, "error_description": "AADSTS65004: declined", "state": "s"}
    before = live.services.backend.store(DEMO_TENANT).connection_records()
    accept = {"Accept": "application/json"}
    if sent == "query":
        answer = requests.get(
            url(live, "oauth_callback"), params=answer_back, headers=accept, timeout=10
        )
    else:
        answer = requests.post(
            url(live, "oauth_callback"), data=answer_back, headers=accept, timeout=10
        )
    assert answer.status_code == 400
    shown = page_text(answer).lower()
    assert says in shown and next_step in shown and "nothing was connected" in shown
    assert live.services.backend.store(DEMO_TENANT).connection_records() == before


def test_AUTH1_a_link_crmsync_did_not_issue_is_a_page_saying_to_ask_for_a_new_one(
    live: LocalStack,
) -> None:
    link = service.onboarding_link(live.services, DEMO_TENANT, "u1")
    for opened in (link[:-4], url(live, "oauth_start"), url(live, "oauth_start") + "?link=x.y"):
        answer = requests.get(opened, headers={"Accept": "application/json"}, timeout=10)
        assert answer.status_code == 400
        shown = page_text(answer)
        assert "onboarding link" in shown and "ask your admin for a new link" in shown


def test_AUTH2_coming_back_twice_through_the_same_sign_in_is_a_page_saying_to_start_again(
    live: LocalStack,
) -> None:
    """The state is single use: the second visit of the callback (the browser's back
    button, a reload) is told the sign-in page was used, not shown JSON."""
    link = service.onboarding_link(live.services, DEMO_TENANT, "u2")
    chosen = requests.get(
        f"{link}&provider=google&services=sync", allow_redirects=False, timeout=10
    )
    back = consent(chosen.headers["Location"], "max.manager@demo.example")
    assert requests.get(back, timeout=60).status_code == 200

    again = requests.get(back, timeout=60)

    assert again.status_code == 400
    shown = page_text(again)
    assert "already used" in shown and "onboarding link" in shown


# -- the local functions' root -------------------------------------------------------------------
def test_first_hour_the_functions_root_names_every_entry_point(live: LocalStack) -> None:
    root = requests.get(live.functions_url + "/", timeout=10)
    assert root.status_code == 200
    assert all(url(live, target) in page_text(root) for target in TARGETS)

    unknown = requests.get(live.functions_url + "/nope", timeout=10)
    assert unknown.status_code == 404
    assert all(f"/{target}" in error_of(unknown) for target in TARGETS)
    in_a_browser = requests.get(live.functions_url + "/nope", headers=BROWSER, timeout=10)
    assert in_a_browser.status_code == 404
    shown = page_text(in_a_browser)
    assert "No function answers /nope" in shown and url(live, "oauth_start") in shown


# -- framing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_RUN1_no_answer_of_any_route_may_be_framed_by_another_site(
    live: LocalStack, route: str
) -> None:
    """A consent, a disconnect or a setting shown in another site's frame could be
    clicked under that site's cover (clickjacking): every answer, page or error, to a
    browser or a machine, forbids framing, in CSP and in the older header alike. The
    Outlook task pane's own pages are the exception, below."""
    method = "GET" if "GET" in ROUTES[route] else "POST"
    for accept in ({}, BROWSER):
        answer = requests.request(method, url(live, route), headers=accept, timeout=10)
        if route == "addon/microsoft" and method == "GET" and answer.status_code == 200:
            continue
        assert answer.headers["Content-Security-Policy"] == "frame-ancestors 'none'", route
        assert answer.headers["X-Frame-Options"] == "DENY", route


def test_RUN1_the_outlook_task_pane_may_be_framed_by_outlook_on_the_web_only_over_https(
    live: LocalStack,
) -> None:
    """Outlook on the web shows the task pane and, at times, its sign-in window in a
    frame of its own page: those two pages allow https ancestors (no X-Frame-Options,
    which cannot name them); its script, its manifest and its actions forbid framing."""
    for page in ("addon/microsoft", "addon/microsoft/signed-in"):
        answer = requests.get(url(live, page), headers=BROWSER, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Security-Policy"] == "frame-ancestors https:"
        assert "X-Frame-Options" not in answer.headers
    for other in ("addon/microsoft/pane.js", "addon/microsoft/manifest.xml"):
        answer = requests.get(url(live, other), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    action = requests.post(url(live, "addon/microsoft") + "?do=home", json={}, timeout=10)
    assert action.status_code == 401
    assert action.headers["X-Frame-Options"] == "DENY"
