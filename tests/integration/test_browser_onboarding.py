"""Onboarding as a user goes through it, in a real browser (headless Chromium through
Playwright): the onboarding link crmsync issues is opened, the provider's consent page
(the Microsoft or Google sandbox's) is answered by clicking its buttons, and the browser
follows every redirect to the page crmsync shows at the end (AUTH-1, AUTH-2). crmsync's
functions are served in-process with the reference CRM behind them (LocalStack); the
Microsoft sandbox answers over TLS under a throwaway CA, which the browser is told to
accept."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, Response

from crmsync import service
from crmsync.providers.microsoft.kit import MicrosoftSetup
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.testing.microsoft import registered
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.server import serve, trusting_session
from tests.integration.microsoft_sandbox import Clock, Graph

pytestmark = pytest.mark.integration

CLIENT_ID, CLIENT_SECRET = "0d8b0f4e-8f52-4c4e-9a55-4b7a0c2f9e11", "crmsync-app-secret"
ADA = "ada@contoso.example"
DANA = DEMO_USERS["u1"]
SYNC_GROUP = ["Ada Lovelace", "Grace Hopper"]  # u1's contact sync group (sandbox/crm/seed.py)


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    stack.create_demo_tenant()
    yield stack
    stack.close()


@dataclass
class Microsoft:
    sandbox: MicrosoftSandbox
    base: str
    ca: str


@pytest.fixture
def microsoft(stack: LocalStack) -> Iterator[Microsoft]:
    """The Microsoft sandbox with crmsync's app registered, set up in the stack's
    functions as a deployment's environment would set it up."""
    sandbox = MicrosoftSandbox()
    served = serve(sandbox)
    config = registered(
        sandbox,
        served.base_url,
        served.ca_path,
        stack.functions_url + "/oauth_callback",
        CLIENT_ID,
        CLIENT_SECRET,
    )
    stack.services.providers["microsoft"] = MicrosoftSetup(config, f"{served.base_url}/v1.0")
    yield Microsoft(sandbox, served.base_url, served.ca_path)
    served.stop()
    assert not sandbox.drift, sandbox.drift  # every Graph answer held Graph's schema


def open_link(page: Page, stack: LocalStack, provider_label: str, user: str = "u1") -> None:
    """The user opens the link their admin sent and picks the provider."""
    page.goto(service.onboarding_link(stack.services, DEMO_TENANT, user))
    page.get_by_role("button", name=f"Connect {provider_label}").click()


def answer(page: Page, back_to: str, button: str) -> Response:
    """Click `button` on the provider's page; crmsync's page the browser lands on."""
    with page.expect_response(lambda r: r.url.startswith(back_to)) as landed:
        page.get_by_role("button", name=button).click()
    page.wait_for_load_state()
    return landed.value


def shown(page: Page, response: Response) -> str:
    """What the page says to the person: an HTML page, never JSON or a traceback."""
    assert response.headers["content-type"].startswith("text/html")
    text = page.inner_text("main")
    assert "Traceback" not in page.content() and not text.lstrip().startswith("{")
    return " ".join(text.split())


def test_AUTH1_AUTH2_a_user_consents_to_microsoft_in_the_browser_and_the_first_cycle_syncs(
    page: Page, stack: LocalStack, microsoft: Microsoft
) -> None:
    open_link(page, stack, "Microsoft 365")
    page.wait_for_url(f"{microsoft.base}/{microsoft.sandbox.tenant_id}/oauth2/v2.0/authorize?*")
    assert "needs your permission" in page.inner_text("h1")
    page.get_by_label("Email").fill(ADA)

    landed = answer(page, stack.functions_url + "/oauth_callback", "Accept")

    assert landed.status == 200
    # response_mode=form_post: the code came in a POSTed form, and is in no URL
    assert landed.request.method == "POST" and "code=" not in page.url
    text = shown(page, landed)
    assert page.inner_text("h1") == "Connected"
    assert f"{ADA} now syncs with your CRM" in text
    assert "The first sync has started" in text and "You can close this page" in text
    store = stack.services.backend.store(DEMO_TENANT)
    record = store.connection_record("microsoft-u1")
    user = microsoft.sandbox.users[ADA]
    assert record is not None and record["status"] == "active"
    assert record["subject"] == f"{microsoft.sandbox.tenant_id}/{user.oid}"  # AUTH-2: tid/oid

    run = service.work(stack.services, DEMO_TENANT, "microsoft-u1", "connect")

    assert run["status"] == "ok", run
    token = microsoft.sandbox.issue_token(ADA, ["Contacts.ReadWrite"])
    session = trusting_session(microsoft.ca)
    graph = Graph(microsoft.sandbox, microsoft.base, microsoft.ca, Clock(), token, session)
    contacts = graph.ok(graph.get("me/contacts"))["value"]
    assert sorted(f"{c['givenName']} {c['surname']}" for c in contacts) == SYNC_GROUP


def test_AUTH1_cancelling_microsofts_consent_lands_on_a_page_that_says_how_to_try_again(
    page: Page, stack: LocalStack, microsoft: Microsoft
) -> None:
    open_link(page, stack, "Microsoft 365")
    page.get_by_label("Email").fill(ADA)

    landed = answer(page, stack.functions_url + "/oauth_callback", "Cancel")

    assert (landed.status, landed.request.method) == (400, "POST")
    text = shown(page, landed)
    assert "Consent was not given, so nothing was connected." in text
    assert "open your onboarding link again and allow access" in text
    assert stack.services.backend.store(DEMO_TENANT).connection_record("microsoft-u1") is None
    assert not stack.queue.waiting  # no cycle was started


def test_AUTH1_a_user_consents_to_google_in_the_browser_and_the_first_cycle_syncs(
    page: Page, stack: LocalStack
) -> None:
    open_link(page, stack, "Google")
    page.wait_for_url(f"{stack.google_url}**")
    page.get_by_label("E-mail").fill(DANA)

    landed = answer(page, stack.functions_url + "/oauth_callback", "Allow")

    assert landed.status == 200
    assert f"{DANA} now syncs with your CRM" in shown(page, landed)
    run = service.work(stack.services, DEMO_TENANT, "google-u1", "connect")
    assert run["status"] == "ok", run
    assert stack.google_contact_names() == SYNC_GROUP


def test_AUTH1_denying_google_consent_lands_on_a_page_that_says_how_to_try_again(
    page: Page, stack: LocalStack
) -> None:
    open_link(page, stack, "Google")
    page.get_by_label("E-mail").fill(DANA)

    landed = answer(page, stack.functions_url + "/oauth_callback", "Deny")

    assert landed.status == 400
    assert "Consent was not given" in shown(page, landed)
    assert stack.services.backend.store(DEMO_TENANT).connection_record("google-u1") is None
    assert not stack.queue.waiting
