"""The queue page in a real browser (Debian's Chromium through Playwright), over the
functions, the Google sandbox and the reference CRM: Dana settles a conflict field by
field (SYN-2) and confirms a held mass delete as a batch (SYN-6). The page passes
axe-core's automated accessibility check before and after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.local.stack import LocalStack
from tests.app_helpers import app, browser_sign_in, looked_at
from tests.integration.test_app_queue import (
    APPLIED,
    CRM_SIDE,
    GOOGLE_SIDE,
    ada,
    drain,
    google_tasks,
    prepare,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    prepare(stack)
    yield stack
    stack.close()


def test_SYN2_SYN6_a_user_picks_per_field_keeps_them_and_confirms_a_held_batch(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u1", "google")
    page.click('nav a:text-is("Queue")')
    assert page.url == app(stack, "/me/queue")
    looked_at(page, "queue")
    conflict = page.locator('article[data-reason="conflict"]')
    assert conflict.locator("h4").inner_text() == "Contact: Ada Lovelace"

    conflict.get_by_label(f"{GOOGLE_SIDE['title']}, as in Google").check()
    conflict.get_by_label(f"{CRM_SIDE['company']}, as in the CRM").focus()
    page.keyboard.press("Space")  # a radio is reached and picked with the keyboard too
    conflict.get_by_role("button", name="Keep these").click()

    assert page.locator("#notice").inner_text() == APPLIED
    settled = page.locator('article[data-reason="conflict"] .settled').inner_text()
    assert settled.startswith("Your choice: Company from the CRM, Title from Google")
    page.get_by_role("button", name="Confirm all deletes").click()
    assert "2 held deletes" in page.locator("#notice").inner_text()
    assert page.get_by_role("button", name="Restore all").count() == 0
    looked_at(page, "queue-answered")

    drain(stack)
    assert (ada(stack)["title"], ada(stack)["company"]) == (
        GOOGLE_SIDE["title"],
        CRM_SIDE["company"],
    )
    assert google_tasks(stack) == []
    page.reload()
    assert page.locator("#empty").inner_text() == "Nothing waits for you."
