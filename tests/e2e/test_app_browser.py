"""The web app in a real browser (Debian's Chromium through Playwright), over the
functions, the Google and Microsoft sandboxes and the reference CRM: a user and an
admin sign in by clicking through their provider's sandbox, use the pages, and sign
out. Every page shown passes axe-core's automated accessibility check, and a
screenshot of it is written to build/screenshots/app/ for a reviewer to look at.

Requirements: the web-app issue's sign-in and tests sections; HIS-2's "users see their
own, admins their tenant's"; AUTH-4 (disconnect from the app)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.local.stack import LocalStack
from tests.app_helpers import browser_sign_in, looked_at

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    yield stack
    stack.close()


def test_a_user_signs_in_sees_their_connection_syncs_now_and_signs_out(
    page: Page, stack: LocalStack
) -> None:
    page.goto(stack.services.url("app") + "/sign-in?tenant=demo")
    looked_at(page, "sign-in")
    browser_sign_in(page, stack, "u1", "google")
    assert page.url.endswith("/app/me")
    assert page.locator("#connection-google-u1").is_visible()
    assert page.locator("#connection-microsoft-u2").count() == 0  # not theirs
    assert page.locator('nav a:text-is("Admin")').count() == 0
    looked_at(page, "me")
    page.click("#sync-google-u1")
    assert "A sync" in page.locator("#notice").inner_text()
    page.click("text=Sign out")
    assert "You are signed out" in page.content()
    looked_at(page, "signed-out")
    page.goto(stack.services.url("app") + "/me")
    assert "/app/sign-in" in page.url  # the session ended


def test_the_admin_signs_in_with_microsoft_and_sees_every_connection(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u2", "microsoft")
    page.click('nav a:text-is("Admin")')
    rows = page.locator("#connections tbody tr")
    assert rows.count() == 2
    assert page.locator("#row-google-u1-sync").is_visible()
    looked_at(page, "admin")
