"""The Outlook add-in (CTX-1) through the `addon` function, as Outlook's task pane calls
it: the pane's page, script and manifest to GET, and its JSON actions to POST, each with
the Office SSO token Outlook hands the pane (signed by the Microsoft sandbox's identity
platform as Microsoft's v2.0 endpoint signs it). The reference CRM and the Microsoft
sandbox over real sockets. What the pane draws and does in a browser is
tests/e2e/test_outlook_addin_browser.py."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from crmsync.providers.microsoft.addin import OFFICE_JS
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.usecases import pane
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, MICROSOFT_CLIENT_ID, LocalStack
from sandbox.microsoft import office
from tests.app_helpers import app, sign_in
from tests.integration.test_app_preview_import import drain
from tests.outlook_manifest import schema_errors

pytestmark = pytest.mark.integration

MAX = DEMO_USERS["u2"]
MAXS = "microsoft-u2"
SAM = "sam@nowhere.example"


def max_connected() -> Iterator[LocalStack]:
    """A local stack whose demo tenant has Max connected to Microsoft 365, with mail."""
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u2", services="sync,mail", provider="microsoft").status_code == 200
    drain(stack)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    yield from max_connected()


def endpoint(stack: LocalStack) -> str:
    return stack.functions_url + "/addon/microsoft"


def asked(
    stack: LocalStack, action: str, body: dict[str, Any], token: str | None = None
) -> requests.Response:
    """The pane's POST of `action`, with Max's SSO token unless another is given."""
    token = office.sso_token(stack.microsoft, MAX, MICROSOFT_CLIENT_ID) if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{endpoint(stack)}?do={action}", json=body, headers=headers, timeout=30)


def test_CTX1_every_outlook_pane_request_is_checked_and_a_forged_one_changes_nothing(
    stack: LocalStack,
) -> None:
    body = {"kind": "contact", "address": SAM, "fields": {"last_name": "Forged"}, "item": "x"}
    sandbox = stack.microsoft
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tokens = {
        "none": "",
        "garbage": "not-a-token",
        "expired": office.sso_token(sandbox, MAX, MICROSOFT_CLIENT_ID, seconds=-600),
        "another app's": office.sso_token(sandbox, MAX, "another-app"),
        "another scope": office.sso_token(sandbox, MAX, MICROSOFT_CLIENT_ID, scope="Mail.Read"),
        "another key": office.sso_token(sandbox, MAX, MICROSOFT_CLIENT_ID, key=other_key),
    }

    tries = {name: asked(stack, "create", body, token) for name, token in tokens.items()}

    assert {name: t.status_code for name, t in tries.items()} == dict.fromkeys(tokens, 401)
    assert all(
        t.json()["problem"]["reason"] == "Outlook did not say who you are" for t in tries.values()
    )
    assert not [p for p in stack.crm.all(DEMO_TENANT, "contact") if SAM in p.get("emails", [])]
    made = asked(stack, "create", {**body, "fields": {"last_name": "Real"}})  # and Max's own
    assert made.status_code == 200, made.text
    [sam] = [p for p in stack.crm.all(DEMO_TENANT, "contact") if SAM in p.get("emails", [])]
    assert sam["last_name"] == "Real"


def test_CTX1_an_outlook_account_not_connected_gets_the_way_to_connect(stack: LocalStack) -> None:
    stranger = "nell@elsewhere.example"
    stack.microsoft.add_user(stranger)
    token = office.sso_token(stack.microsoft, stranger, MICROSOFT_CLIENT_ID)

    answer = asked(stack, "message", {"participants": [["", "ada@acme.example"]]}, token)

    assert answer.status_code == 200
    shown = answer.json()
    assert shown["view"] == "blocked"
    assert shown["reason"] == "This Microsoft 365 account is not connected to crmsync"
    assert "onboarding link" in shown["next_step"]


def test_CTX1_an_outlook_user_who_must_sign_in_again_gets_the_link_to_do_it(
    stack: LocalStack,
) -> None:
    store = stack.services.backend.store(DEMO_TENANT)
    store.set_status(MAXS, "needs_reauth", "revoked")
    try:
        shown = asked(stack, "home", {}).json()
    finally:
        store.set_status(MAXS, "active")

    assert shown["view"] == "blocked"
    assert shown["reason"] == "crmsync needs you to sign in to Microsoft 365 again"
    assert shown["link"] == pane.sign_in_url(stack.services, DEMO_TENANT)


def test_CTX1_the_pane_is_a_page_loading_office_js_from_microsoft_and_its_manifest_is_served(
    stack: LocalStack,
) -> None:
    page = requests.get(endpoint(stack), timeout=10)
    script = requests.get(endpoint(stack) + "/pane.js", timeout=10)
    manifest = requests.get(endpoint(stack) + "/manifest.xml", timeout=10)
    missing = requests.get(
        endpoint(stack) + "/nothing", headers={"Accept": "text/html"}, timeout=10
    )

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert f'<script src="{OFFICE_JS}"></script>' in page.text  # as Microsoft requires
    assert f'<script src="{endpoint(stack)}/pane.js"></script>' in page.text
    assert script.headers["Content-Type"].startswith("text/javascript")
    assert "Office.onReady" in script.text
    assert schema_errors(manifest.content) == []
    assert f"<Id>{MICROSOFT_CLIENT_ID}</Id>" in manifest.text
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    assert "Outlook&#39;s toolbar" in missing.text


def test_CTX1_a_request_that_is_not_the_panes_is_refused_with_a_reason(stack: LocalStack) -> None:
    token = office.sso_token(stack.microsoft, MAX, MICROSOFT_CLIENT_ID)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    not_json = requests.post(endpoint(stack) + "?do=home", data=b"[", headers=headers, timeout=10)
    unknown = asked(stack, "teleport", {})
    nobody = asked(stack, "file", {"item": "AAMk", "records": []})

    assert not_json.status_code == 400 and "no request" in not_json.json()["problem"]["reason"]
    assert "does not do" in unknown.json()["problem"]["reason"]
    assert (
        nobody.status_code == 400 and nobody.json()["problem"]["reason"] == "No record was chosen"
    )


def test_CTX1_the_web_apps_sign_in_hands_the_pane_a_key_that_only_opens_that_users_pane(
    stack: LocalStack,
) -> None:
    browser = sign_in(stack, MAX, "microsoft")
    handed = browser.get(app(stack, "/me/pane/microsoft"), allow_redirects=False)
    assert handed.status_code == 303
    page, _, key = handed.headers["Location"].partition("#key=")
    assert page == endpoint(stack) + "/signed-in" and key
    signed_in = requests.get(page, timeout=10)
    assert signed_in.status_code == 200 and f'<script src="{OFFICE_JS}"></script>' in signed_in.text

    def with_key(given: str) -> requests.Response:
        headers = {"Authorization": f"Crmsync {given}"}
        return requests.post(f"{endpoint(stack)}?do=home", json={}, headers=headers, timeout=10)

    home = with_key(key)
    assert home.status_code == 200 and home.json()["account"] == MAX
    packed, _, signature = key.partition(".")
    forged = pane.pane_key(stack.services, DEMO_TENANT, "google-u1")  # signed, but not Max
    assert with_key(packed + "." + signature[::-1]).status_code == 401
    assert with_key(forged).status_code == 401  # a key of a connection not of this pane
    stranger = requests.Session().get(app(stack, "/me/pane/microsoft"), allow_redirects=False)
    assert stranger.status_code == 303 and "/sign-in" in stranger.headers["Location"]
    assert browser.get(app(stack, "/me/pane/google"), allow_redirects=False).status_code == 404


def test_CTX1_every_icon_the_manifest_names_is_served_at_the_size_outlook_asks_for(
    stack: LocalStack,
) -> None:
    from lxml import etree

    root = etree.fromstring(requests.get(endpoint(stack) + "/manifest.xml", timeout=10).content)
    ns = {
        "o": "http://schemas.microsoft.com/office/appforoffice/1.1",
        "bt": "http://schemas.microsoft.com/office/officeappbasictypes/1.0",
        "v": "http://schemas.microsoft.com/office/mailappversionoverrides/1.1",
    }
    images = {
        i.get("id"): i.get("DefaultValue") for i in root.iterfind(".//bt:Images/bt:Image", ns)
    }
    wanted = {
        (images[i.get("resid")], int(i.get("size")))
        for i in root.iterfind(".//v:Icon/bt:Image", ns)
    }
    wanted.add((root.find("o:IconUrl", ns).get("DefaultValue"), 64))  # Office's sizes for them
    wanted.add((root.find("o:HighResolutionIconUrl", ns).get("DefaultValue"), 128))

    assert {size for _, size in wanted} == {16, 32, 64, 80, 128}
    for url, size in wanted:
        icon = requests.get(url, timeout=10)
        assert icon.status_code == 200 and icon.headers["Content-Type"] == "image/png", url
        assert icon.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", icon.content[16:24]) == (size, size), url
