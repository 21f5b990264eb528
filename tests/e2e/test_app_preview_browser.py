"""The first-sync preview (BEY-3) and the address-book import (CON-9) in a real browser
(Debian's Chromium through Playwright), over the functions, the Google sandbox and the
reference CRM: a user asks on the connect page to see the first sync first, looks at
its preview and starts it, then previews and starts an import and watches its progress
bar fill as the page refreshes itself. Every page shown passes axe-core's automated
accessibility check (tests.app_helpers.looked_at)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from playwright.sync_api import Page

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import app, browser_sign_in, looked_at

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    yield stack
    stack.close()


def drain(stack: LocalStack) -> None:
    """Every queued task through the sync_worker function, as Cloud Tasks runs them."""
    queue = stack.queue
    assert isinstance(queue, InlineQueue)
    while due := queue.due(datetime(9999, 1, 1, tzinfo=UTC)):
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]  # run early
            body = {"tenant": task.tenant, "connection": task.connection, "trigger": task.trigger}
            answer = requests.post(stack.functions_url + "/sync_worker", json=body, timeout=60)
            assert answer.status_code == 200, answer.text


def test_BEY3_CON9_a_user_previews_and_starts_the_first_sync_then_imports_an_address_book(
    page: Page, stack: LocalStack
) -> None:
    people = stack.google_api("people", "v1", "u1").people()
    for n, email in enumerate(["ada@acme.example", "one@example.com", "two@example.com"]):
        person = {"names": [{"givenName": f"Person{n}"}], "emailAddresses": [{"value": email}]}
        people.createContact(body=person).execute()

    page.goto(service.onboarding_link(stack.services, DEMO_TENANT, "u1"))
    looked_at(page, "connect-with-preview")
    page.check("input[name=preview]")
    page.click("button[value=google]")
    page.fill("input[name=email]", DEMO_USERS["u1"])
    page.click("button[value=allow]")
    assert "Nothing is synced yet" in page.locator("#preview").inner_text()
    looked_at(page, "connected-waiting")

    browser_sign_in(page, stack, "u1", "google")
    page.click("#waiting-google-u1 a")
    looked_at(page, "preview-first-sync")
    assert page.locator("#count-contact-link").inner_text() == "1"  # Ada, by e-mail
    assert page.locator("#count-contact-to_provider").inner_text() == "1"  # Grace
    page.click("#start-first-sync")
    assert "first sync has started" in page.locator("#notice").inner_text()
    drain(stack)

    page.click("#import-google-u1")
    page.select_option("#source", label="All contacts")
    page.click("#preview-import")
    looked_at(page, "import-preview")
    assert page.locator("#preview-to_crm").inner_text() == "2"  # one@, two@
    assert page.locator("#preview-already").inner_text() == "2"  # Ada, and Grace created
    page.click("#start-import")
    assert page.locator("#import-progress").get_attribute("value") == "0"
    looked_at(page, "import-progress")
    drain(stack)

    page.wait_for_selector("text=Imported All contacts")  # the page reloaded itself
    assert page.locator("#import-progress").get_attribute("value") == "4"
    assert page.locator("#import-created").inner_text() == "2"
    looked_at(page, "import-done")
    emails = [e for r in stack.crm.all(DEMO_TENANT, "contact") for e in r["emails"]]
    assert sorted(e for e in emails if e.endswith("@example.com")) == [
        "one@example.com",
        "two@example.com",
    ]
    assert app(stack, "/me/import/google-u1") in page.url
