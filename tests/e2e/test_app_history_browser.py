"""Sync History in a real browser (Debian's Chromium through Playwright), over the
functions, the Google sandbox and the reference CRM: a user opens their history, sorts
it, filters it, opens the sync in which Google refused a to-do and tries the to-do
again (HIS-2, HIS-4). Both pages pass axe-core's accessibility check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from crmsync import service
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
    assert service.work(stack.services, DEMO_TENANT, "google-u1", "connect")["status"] == "ok"
    due = (date.today() + timedelta(days=2)).isoformat()
    stack.crm.create(DEMO_TENANT, "todo", {"subject": "Send the offer", "due": due}, "u1")
    stack.google.inject(400, reason="invalid", method="POST", path=r"tasks/v1/lists/[^/]+/tasks$")
    failed = service.work(stack.services, DEMO_TENANT, "google-u1", "schedule")
    assert failed["status"] == "partial"
    assert isinstance(stack.queue, InlineQueue)
    stack.queue.waiting.clear()
    yield stack
    stack.close()


def test_HIS2_HIS4_a_user_sorts_and_filters_their_history_and_tries_a_failed_record_again(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u1", "google")
    page.click('nav a:text-is("History")')
    rows = page.locator("#runs tbody tr[id^=run-]")
    expect(rows).to_have_count(2)
    looked_at(page, "history")

    page.click("#sort-duration")
    expect(page.locator("th:has(#sort-duration)")).to_have_attribute("aria-sort", "descending")
    page.select_option("#filter-status", label="Some records failed")
    page.click("#apply")
    expect(rows).to_have_count(1)
    expect(page.locator("#filter-status")).to_have_value("partial")

    rows.first.locator("a").click()
    failed = page.locator("tr.item", has_text="Send the offer")
    expect(failed).to_contain_text("refused this record")
    looked_at(page, "history-run")
    failed.get_by_role("button", name="Try again").click()

    expect(page.locator("#notice")).to_have_text(
        "It will be tried again in the next sync, which has started."
    )
    assert [(q.connection, q.trigger) for q in stack.queue.waiting.values()] == [  # type: ignore[attr-defined]
        ("google-u1", "manual")
    ]
    admin_only = page.goto(app(stack, "/admin/history"))
    assert admin_only is not None and admin_only.status == 403  # u1 is no admin
