"""First hour: the local servers a newcomer opens from the `make dev` banner (BEY-5) —
the Google sandbox, the Microsoft sandbox (https) and the reference CRM — answer `GET /`
with a page saying what the server is and the addresses to use; every address the page
names is one the server serves, and every other path still answers as the real API does
(JSON errors in that API's own shape). Each is served on a real socket."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
import requests

from sandbox.crm.api import PREFIX, ROUTES
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.seed import DEMO_TOKEN, seed_demo
from sandbox.crm.server import serve as serve_crm
from sandbox.google import server as google_server
from sandbox.google.core import GoogleSandbox
from sandbox.home import addresses
from sandbox.microsoft import server as microsoft_server
from sandbox.microsoft.core import MicrosoftSandbox

pytestmark = pytest.mark.integration


def page_text(answer: requests.Response) -> str:
    """The words of a root page: HTML, never JSON."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/html"), answer.text
    shown = re.sub(r"<(style|title)>.*?</\1>", " ", answer.text, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", shown)))


@pytest.fixture
def google() -> Iterator[tuple[GoogleSandbox, str]]:
    sandbox = GoogleSandbox()
    sandbox.add_account("dana.rep@demo.example")
    base, stop = google_server.serve(sandbox)
    yield sandbox, base
    stop()


def test_first_hour_the_google_sandbox_root_names_its_api_roots_and_accounts(
    google: tuple[GoogleSandbox, str],
) -> None:
    _, base = google
    shown = page_text(requests.get(base, timeout=10))

    assert "Google sandbox" in shown and "dana.rep@demo.example" in shown
    for root in ("o/oauth2/auth", "token", "calendar/v3/", "tasks/v1/", "v1/people", "gmail/v1/"):
        assert base + root in shown
    for address in addresses(google_server.sections(base)):
        assert f"{address.method} {address.url}" in shown
        answer = requests.request(address.method, address.url, timeout=10)
        assert answer.status_code not in (404, 405), (address, answer.text)


def test_first_hour_the_google_sandbox_answers_other_paths_as_google_does(
    google: tuple[GoogleSandbox, str],
) -> None:
    _, base = google
    unknown = requests.get(base + "nothing", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["errors"][0]["reason"] == "notFound"
    unauthorised = requests.get(base + "calendar/v3/users/me/calendarList", timeout=10)
    assert unauthorised.status_code == 401 and unauthorised.json()["error"]["code"] == 401


@pytest.fixture
def microsoft() -> Iterator[tuple[MicrosoftSandbox, requests.Session]]:
    sandbox = MicrosoftSandbox()
    sandbox.add_user("max.manager@demo.example")
    served = microsoft_server.serve(sandbox)
    with microsoft_server.trusting_session(served.ca_path) as session:
        yield sandbox, session
    served.stop()


def test_first_hour_the_microsoft_sandbox_root_names_graph_and_the_identity_platform(
    microsoft: tuple[MicrosoftSandbox, requests.Session],
) -> None:
    sandbox, session = microsoft
    base = sandbox.base_url
    shown = page_text(session.get(base + "/", timeout=10))

    assert "Microsoft sandbox" in shown and "max.manager@demo.example" in shown
    assert f"Graph's root is {base}/v1.0" in shown
    assert f"msal's authority is {base}/{sandbox.tenant_id}" in shown
    assert "--cacert" in shown  # it is https with a throwaway CA
    for address in addresses(microsoft_server.sections(base, sandbox.tenant_id)):
        assert f"{address.method} {address.url}" in shown
        answer = session.request(address.method, address.url, timeout=10)
        assert answer.status_code != 405, (address, answer.text)
        assert "Resource not found for the segment" not in answer.text, address


def test_first_hour_the_microsoft_sandbox_answers_other_paths_as_graph_does(
    microsoft: tuple[MicrosoftSandbox, requests.Session],
) -> None:
    sandbox, session = microsoft
    unknown = session.get(sandbox.base_url + "/nothing", timeout=10)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "BadRequest"
    unauthorised = session.get(sandbox.base_url + "/v1.0/me", timeout=10)
    assert unauthorised.status_code == 401
    assert unauthorised.json()["error"]["code"] == "InvalidAuthenticationToken"


@pytest.fixture
def crm() -> Iterator[str]:
    reference = ReferenceCrm(CrmDatabase(":memory:"))
    seed_demo(reference)
    base_url, stop = serve_crm(reference)
    yield base_url
    stop()


def test_first_hour_the_crms_root_and_base_url_name_the_demo_tenant_and_how_to_call_it(
    crm: str,
) -> None:
    """The banner prints the contract's base URL; the server's root says the same. The
    example the page gives works as written."""
    root = crm.removesuffix(PREFIX) + "/"
    for opened in (root, crm, crm + "/"):
        shown = page_text(requests.get(opened, timeout=10))
        assert "Reference CRM" in shown and f"token {DEMO_TOKEN}" in shown
        example = (
            f"curl -H 'Authorization: Bearer {DEMO_TOKEN}' -H 'X-Crm-User: u1' "
            f"{crm}/changes/contact"
        )
        assert example in shown
        assert all(f"{method} {crm}{path}" in shown for path, method, _, _ in ROUTES)

    answer = requests.get(
        f"{crm}/changes/contact",
        headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Crm-User": "u1"},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["items"]


def test_first_hour_the_crm_answers_other_paths_as_the_contract_does(crm: str) -> None:
    unauthenticated = requests.get(crm + "/nowhere", timeout=10)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "unauthorized"
    unknown = requests.get(
        crm + "/nowhere", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=10
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    posted = requests.post(crm + "/", timeout=10)  # only GET makes the root a page
    assert posted.status_code == 401 and posted.json()["error"] == "unauthorized"
