"""The tenant admin in a real browser (Debian's Chromium through Playwright), over the
functions, the Microsoft sandbox and the reference CRM: the dashboard, then onboarding
three people from the CRM's directory by ticking them, and copying a link (AUTH-1,
AUTH-6). Every page shown passes axe-core's accessibility check."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import LocalStack
from tests.app_helpers import app, browser_sign_in, looked_at

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    stack.crm.add_user(DEMO_TENANT, "u4", name="Nora New", email="nora.new@demo.example")
    stack.crm.add_user(DEMO_TENANT, "u5", name="Pat Price", email="pat.price@demo.example")
    yield stack
    stack.close()


def test_AUTH1_AUTH6_the_admin_ticks_three_people_gets_their_links_and_copies_one(
    page: Page, stack: LocalStack
) -> None:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(app(stack)))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
    browser_sign_in(page, stack, "u2", "microsoft")
    page.click('nav a:text-is("Admin")')
    assert "2 of 10 seats used." in page.locator("#seats").inner_text()
    looked_at(page, "admin-dashboard")

    page.click('nav a:text-is("Users")')
    for name in ("Sam Support", "Nora New", "Pat Price"):
        page.get_by_label(name, exact=True).check()
    looked_at(page, "admin-users")
    page.click("#get-links")

    links = page.locator("#links input.link")
    assert links.count() == 3
    first = links.nth(0).input_value()
    assert first.startswith(stack.services.url("oauth_start") + "?link=")
    page.locator("#links button.copy").nth(0).click()
    expect(page.locator("#copied")).to_contain_text("is copied")  # the clipboard answers later
    assert page.evaluate("navigator.clipboard.readText()") == first
    looked_at(page, "admin-links")
