"""The settings pages in a real browser (Debian's Chromium through Playwright), over the
functions, the Google and Microsoft sandboxes and the reference CRM: a user changes
their settings (SET-1), the admin their company's (SET-2) and a user's (SET-6). Every
page shown passes axe-core's automated accessibility check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google.calendar import add_calendar
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import app, browser_sign_in, looked_at

pytestmark = pytest.mark.integration

SALES = "Sales calls"  # a calendar of Dana's own, made in her Google account


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    add_calendar(stack.google, DEMO_USERS["u1"], "sales@group.calendar.example", SALES)
    yield stack
    stack.close()


def test_SET1_a_user_picks_a_calendar_and_ticks_a_box_saves_and_sees_them_kept(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u1", "google")
    page.click('nav a:text-is("Settings")')
    assert page.url == app(stack, "/me/settings/google-u1")
    looked_at(page, "settings")
    calendar, private = (
        page.get_by_label("Calendar", exact=True),
        page.get_by_label("Sync private items"),
    )
    assert not private.is_checked()

    calendar.select_option(label=SALES)
    private.check()
    page.click("#google-u1-save")

    assert page.locator("#notice").inner_text() == "Settings saved"
    assert calendar.locator("option:checked").inner_text() == SALES
    assert private.is_checked()
    record = service.connection_of(stack.services.backend.store(DEMO_TENANT), "google-u1")
    assert record is not None
    settings = service.settings_for(stack.services, DEMO_TENANT, record)
    assert settings["private_items"] is True
    assert settings["calendar"] == "sales@group.calendar.example"
    looked_at(page, "settings-saved")


def test_SET2_SET6_the_admin_sets_a_company_default_and_opens_a_users_page(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u2", "microsoft")
    page.click('nav a:text-is("Company settings")')
    looked_at(page, "company-settings")

    page.fill("#company-window_days", "21")
    page.uncheck("#company-conflict_policy-users-may")
    page.click("#company-save")

    assert page.locator("#notice").inner_text() == "Settings saved"
    assert page.input_value("#company-window_days") == "21"
    assert not page.is_checked("#company-conflict_policy-users-may")
    tenant = stack.services.backend.store(DEMO_TENANT).tenant_record() or {}
    assert tenant["settings"]["window_days"] == 21 and tenant["locked"] == ["conflict_policy"]

    page.goto(app(stack, "/admin/users/u1"))
    assert page.locator("#google-u1-conflict_policy").is_enabled()  # the admin may
    looked_at(page, "admin-user")
    page.click("#switch-button")
    assert "Sync is off" in page.locator("#state").inner_text()
