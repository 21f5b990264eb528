"""The web app in a real browser (Debian's Chromium through Playwright), over the
functions, the Google and Microsoft sandboxes and the reference CRM: a user and an
admin sign in by clicking through their provider's sandbox, use the pages, and sign
out. Every page shown passes axe-core's automated accessibility check, and a
screenshot of it is written to build/screenshots/app/ for a reviewer to look at.

Requirements: the web-app issue's sign-in and tests sections; HIS-2's "users see their
own, admins their tenant's"; AUTH-4 (disconnect from the app)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack

pytestmark = pytest.mark.integration

SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "app"
AXE = Axe()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    yield stack
    stack.close()


def looked_at(page: Page, name: str) -> None:
    """The page passes axe-core's checks, and its screenshot is kept."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    found = AXE.run(page)
    problems = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}×)" for v in found.response["violations"]
    ]
    assert problems == [], f"{name}: {problems}"


def sign_in(page: Page, stack: LocalStack, user: str, provider: str) -> None:
    """Sign in as a person does: the app's sign-in page, the provider's page, back."""
    page.goto(stack.services.url("app") + "/")
    page.fill("#tenant", DEMO_TENANT)
    page.click("text=Continue")
    looked_at(page, "sign-in")
    page.click(f"#sign-in-{provider}")
    if provider == "google":
        page.fill("input[name=email]", DEMO_USERS[user])
        page.click("button[value=allow]")
    else:
        page.fill("input[name=login]", DEMO_USERS[user])
        page.click("button[value=accept]")
    page.wait_for_url(stack.services.url("app") + "/**")


def test_a_user_signs_in_sees_their_connection_syncs_now_and_signs_out(
    page: Page, stack: LocalStack
) -> None:
    sign_in(page, stack, "u1", "google")
    assert page.url.endswith("/app/me")
    assert page.locator("#connection-google-u1").is_visible()
    assert page.locator("#connection-microsoft-u2").count() == 0  # not theirs
    assert page.locator("text=Admin").count() == 0
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
    sign_in(page, stack, "u2", "microsoft")
    page.click("text=Admin")
    rows = page.locator("#connections tbody tr")
    assert rows.count() == 2
    assert page.locator("#row-google-u1").is_visible()
    looked_at(page, "admin")
