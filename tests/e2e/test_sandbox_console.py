"""The sandbox console `make dev` serves (sandbox/local/console.py), driven in a real
browser (Debian's Chromium through Playwright) over the local stack as `make dev` runs
it: Firestore's emulator, cycles through the Cloud Tasks emulator to the sync_worker
function, the reference CRM, u1 connected through Google's consent and u2 through
Microsoft's. A newcomer watches the sync and edits on both sides in the page; each edit
travels the production path (a CRM change event, a Calendar push, a Graph change
notification) and shows up on the other side of the page; u1 also records mail, and a
message tagged in u1's Gmail panel lands in the CRM's history. The edits of each test
are made at once and awaited together, so the module takes a minute or two."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.cloud import firestore
from playwright.sync_api import Locator, Page, expect

from crmsync.store.firestore import FirestoreBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.cloud_tasks import start_cloud_tasks
from sandbox.local.console import Console, CrmSwitch
from sandbox.local.dev import seed_inbox
from sandbox.local.emulators import Emulator
from sandbox.local.stack import LocalStack, serve_app, through_cloud_tasks
from tests.e2e.test_local_stack import E2E_DEBOUNCE, eventually

pytestmark = pytest.mark.integration

SYNCED = 60_000  # ms: a cycle's outcome, awaited; a busy machine is slower, never different


@pytest.fixture(scope="module")
def console(
    firestore_emulator: Emulator, pubsub_emulator: Emulator
) -> Iterator[tuple[LocalStack, str]]:
    """The local stack as `make dev` makes it, with u1 on Google (sync and mail, its
    inbox seeded) and u2 on Microsoft after both first cycles and u1's first mail pass,
    and the console's address."""
    firestore_emulator.reset()
    client = firestore.Client(project=firestore_emulator.project)
    tasks = start_cloud_tasks()
    switch = CrmSwitch()
    local = through_cloud_tasks(
        FirestoreBackend(client), tasks.host, crm_wrap=switch, debounce=E2E_DEBOUNCE
    )
    local.gmail_notifications(pubsub_emulator.project)
    local.create_demo_tenant()
    seed_inbox(local)
    assert local.connect("u1", services="sync,mail").status_code == 200
    assert local.connect("u2", provider="microsoft").status_code == 200
    store = local.services.backend.store(DEMO_TENANT)
    for connection in ("google-u1", "microsoft-u2"):
        eventually(
            lambda c=connection: [r for r in store.runs(c) if r["status"] == "ok"],
            what=f"{connection}'s first cycle",
        )
    eventually(  # the first mail pass made u1's labels and watches the inbox
        lambda: (store.connection_record("google-u1") or {}).get("mail_watch_until"),
        what="u1's first mail pass",
    )
    # The CRM tells crmsync of the console's CRM edits with a signed event, as the
    # vendor's CRM would (make dev's own watch of the CRM does the same over Pub/Sub).
    url, stop = serve_app(Console(local, announce=local.post_event, crm_switch=switch).app())
    yield local, url
    stop()
    local.close()
    tasks.stop()


@pytest.fixture
def crm_comes_back(console: tuple[LocalStack, str]) -> Iterator[None]:
    """The CRM is up again after the test, whatever happened in it: the module's other
    tests share the stack."""
    yield
    requests.post(console[1] + "/api/crm/outage", json={"down": False}, timeout=30)


def side(page: Page, column: str, kind: str) -> Locator:
    return page.locator(f'section.side[data-column="{column}"] table[data-kind="{kind}"]')


def add(page: Page, column: str, kind: str, **fields: str) -> None:
    form = page.locator(f'section.side[data-column="{column}"] form[data-kind="{kind}"]')
    for name, value in fields.items():
        form.locator(f'[name="{name}"]').fill(value)
    form.get_by_role("button", name="Add").click()


def row(page: Page, column: str, kind: str, text: str) -> Locator:
    return side(page, column, kind).locator("tr", has_text=text)


def test_console_shows_both_sides_and_an_edit_on_either_side_reaches_the_other(
    page: Page, console: tuple[LocalStack, str]
) -> None:
    """First hour: the console shows the CRM beside u1's Google and u2's Outlook after
    the first syncs (AUTH-2); a meeting added in u1's Google reaches the CRM by a push
    cycle (RUN-3, CAL-1); a CRM contact edit reaches Google by a CRM event (RUN-3,
    CON-2); a contact added in u2's Outlook with the CRM category reaches the CRM by a
    Graph notification (CON-1); a meeting deleted in the CRM leaves Google (CAL-12);
    each cycle and what it did to each record shows in the page (HIS-1); a form missing
    its required field says why, and nothing is written."""
    local, url = console
    page.goto(url + "/")
    expect(page.locator("body[data-ready]")).to_have_count(1)
    expect(side(page, "crm", "contact")).to_contain_text("Ada Lovelace")
    expect(side(page, "google-u1", "contact")).to_contain_text("Ada Lovelace")
    expect(side(page, "microsoft-u2", "contact")).to_contain_text("Alan Turing")
    expect(page.locator('[data-user="u1"]')).to_contain_text("google-u1 (active)")
    first = page.locator('#runs details[data-connection="microsoft-u2"]', has_text="connect")
    expect(first).to_contain_text("ok")

    # One edit on each side at once, then each awaited where it lands.
    start = (datetime.now(UTC) + timedelta(days=2)).replace(hour=10, minute=0)
    when = start.strftime("%Y-%m-%dT%H:%M")
    add(page, "google-u1", "activity", subject="Console coffee", start=when)
    add(page, "microsoft-u2", "contact", first_name="Katherine", last_name="Johnson")
    row(page, "crm", "contact", "Hopper").get_by_role("button", name="edit").click()
    page.locator("tr.editing input[name=first_name]").fill("Admiral")
    page.locator("tr.editing").get_by_role("button", name="save").click()

    expect(side(page, "crm", "activity")).to_contain_text("Console coffee", timeout=SYNCED)
    expect(row(page, "crm", "contact", "Katherine Johnson")).to_contain_text("u2", timeout=SYNCED)
    expect(side(page, "google-u1", "contact")).to_contain_text("Admiral Hopper", timeout=SYNCED)
    # the cycle that brought it (a push's, or the CRM event's that came first)
    brought = page.locator(
        '#runs details[data-connection="google-u1"]', has_text="activity: 1 create"
    )
    expect(brought).to_have_count(1)
    brought.locator("summary").click()
    created = page.locator("#runs details[open] .item", has_text="activity create")
    expect(created).to_contain_text("to_crm")

    row(page, "crm", "activity", "Console coffee").get_by_role("button", name="delete").click()
    expect(side(page, "google-u1", "activity")).not_to_contain_text(
        "Console coffee", timeout=SYNCED
    )

    before = len(local.crm.all(DEMO_TENANT, "contact"))
    add(page, "crm", "contact", first_name="Nameless")
    expect(page.locator("#message")).to_have_text("Not added: last name is required")
    assert len(local.crm.all(DEMO_TENANT, "contact")) == before


def test_console_takes_the_crm_down_and_nothing_edited_meanwhile_is_lost_or_doubled(
    page: Page, console: tuple[LocalStack, str], crm_comes_back: None
) -> None:
    """First hour, SYN-5/BEY-4: with the CRM's API down, a meeting added in u1's Google
    makes a cycle fail, shown with its reason in the page; once the CRM is back, "Sync
    now" brings the meeting across, once."""
    local, url = console
    page.goto(url + "/")
    page.get_by_role("button", name="take the CRM down").click()
    expect(page.locator("#message")).to_contain_text("503")
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=12, minute=0)
    add(
        page,
        "google-u1",
        "activity",
        subject="Outage lunch",
        start=start.strftime("%Y-%m-%dT%H:%M"),
    )
    failed = page.locator('#runs details[data-connection="google-u1"] .status-partial')
    expect(failed.first).to_be_visible(timeout=SYNCED)
    failed.first.click()
    expect(page.locator("#runs details[open]")).to_contain_text("unavailable")
    assert "Outage lunch" not in side(page, "crm", "activity").inner_text()

    page.get_by_role("button", name="bring the CRM back").click()
    page.locator('section.side[data-column="google-u1"]').get_by_role(
        "button", name="Sync now"
    ).click()
    expect(side(page, "crm", "activity")).to_contain_text("Outage lunch", timeout=SYNCED)
    subjects = [a["subject"] for a in local.crm.all(DEMO_TENANT, "activity")]
    assert subjects.count("Outage lunch") == 1


def test_console_onboards_u3_from_its_link_and_shows_their_account(
    page: Page, console: tuple[LocalStack, str]
) -> None:
    """First hour, AUTH-1: the console gives u3 (not connected) an onboarding link; u3
    opens it, connects a Google account at the sandbox's consent page, and u3's account
    appears in the console beside the CRM, synced."""
    _, url = console
    page.goto(url + "/")
    u3 = page.locator('[data-user="u3"]')
    expect(u3).to_contain_text("not connected")
    u3.get_by_role("button", name="onboarding link").click()
    page.wait_for_timeout(2500)  # the page redraws every 2 s: the link stays for u3
    link = u3.locator("a.onboarding").get_attribute("href")
    assert link
    tab = page.context.new_page()
    tab.goto(link)
    tab.get_by_role("button", name="Connect Google").click()
    tab.get_by_label("E-mail").fill("sam.support@demo.example")
    tab.get_by_role("button", name="Allow").click()
    expect(tab.locator("h1")).to_have_text("Connected")
    expect(u3).to_contain_text("google-u3 (active)", timeout=SYNCED)
    expect(page.locator('#runs details[data-connection="google-u3"]').first).to_contain_text(
        "ok", timeout=SYNCED
    )


def mail(page: Page, subject: str) -> Locator:
    """The row of u1's Gmail panel whose subject is `subject`, exactly."""
    rows = page.locator('section.side[data-column="google-u1"] table[data-kind="mail"] tr')
    return rows.filter(has=page.get_by_text(subject, exact=True))


def test_EML1_EML2_console_tags_u1s_gmail_and_the_messages_land_in_the_crms_history(
    page: Page, console: tuple[LocalStack, str]
) -> None:
    """First hour, EML-1/EML-2: u1's Gmail panel lists the seeded inbox; a message
    written into it from the form arrives; Ada's message tagged Send To CRM in the
    console lands once in Ada's CRM history (shown on the CRM side) and is labelled
    Recorded; the unknown sender's is labelled Missing Contact; the mail runs show
    among the cycles; a message without a sender's address is refused in words."""
    local, url = console
    page.goto(url + "/")
    ada_mail, unknown_mail = "Engine order: next steps", "Introduction"
    expect(mail(page, ada_mail)).to_contain_text("from Ada Lovelace <ada@acme.example>")
    expect(mail(page, unknown_mail)).to_contain_text("Inbox")

    form = page.locator('section.side[data-column="google-u1"] form[data-kind="mail"]')
    form.locator('[name="subject"]').fill("No sender")
    form.get_by_role("button", name="Deliver").click()
    expect(page.locator("#message")).to_have_text(
        "Not delivered: from needs an e-mail address, such as ada@acme.example"
    )
    form.locator('[name="from"]').fill("Grace Hopper <grace@navy.example>")
    form.locator('[name="subject"]').fill("Compiler demo")
    form.locator('[name="text"]').fill("Shall we show the compiler on Monday?")
    form.get_by_role("button", name="Deliver").click()
    expect(mail(page, "Compiler demo")).to_contain_text("Unread")

    mail(page, ada_mail).get_by_role("button", name="Send To CRM").click()
    expect(page.locator("#message")).to_contain_text("is tagged Send To CRM")
    mail(page, unknown_mail).get_by_role("button", name="Send To CRM").click()

    expect(mail(page, ada_mail)).to_contain_text("CRM/Recorded", timeout=SYNCED)
    expect(mail(page, unknown_mail)).to_contain_text("CRM/Missing Contact", timeout=SYNCED)
    expect(row(page, "crm", "contact", "Ada Lovelace")).to_contain_text(f"latest: {ada_mail}")
    expect(mail(page, ada_mail)).not_to_contain_text("CRM/Send To CRM")
    mail_runs = page.locator('#runs details[data-connection="google-u1"] summary b')
    expect(mail_runs.filter(has_text=re.compile("^mail$")).first).to_be_visible()
    filed = page.locator("#runs .item", has_text=f'"{ada_mail}"').first
    expect(filed).to_contain_text("mail record to_crm")
    expect(filed).to_contain_text("recorded in the CRM's history")
    [ada] = [c for c in local.crm.all(DEMO_TENANT, "contact") if c["last_name"] == "Lovelace"]
    subjects = [i["subject"] for i in local.crm.history(DEMO_TENANT, "contact", ada["id"])]
    assert subjects.count(ada_mail) == 1
    assert unknown_mail not in subjects


def test_console_page_and_its_api_answer_a_newcomer_with_reasons(
    console: tuple[LocalStack, str],
) -> None:
    """First hour: the console is a page (HTML), and a bad request to its API is told
    what is wrong in the error shape every crmsync endpoint uses (EML-1: mail written
    into an account that records none is refused, with the reason)."""
    import requests

    _, url = console
    page = requests.get(url + "/", timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "crmsync sandbox console" in page.text
    unknown = requests.post(url + "/api/crm/meeting", json={"subject": "x"}, timeout=10)
    assert (unknown.status_code, unknown.json()) == (
        400,
        {"error": "unknown kind 'meeting': contact, activity or todo"},
    )
    outlook = requests.post(
        url + "/api/accounts/microsoft-u2/mail", json={"from": "a@b.example"}, timeout=10
    )
    assert outlook.status_code == 400
    assert outlook.json()["error"].startswith("microsoft-u2 does not record mail: only a Google")
    lost = requests.get(url + "/contacts", timeout=10)
    assert lost.status_code == 404 and lost.headers["Content-Type"].startswith("text/html")
    assert "The sandbox console is one page" in lost.text
    state: dict[str, Any] = requests.get(url + "/api/state", timeout=10).json()
    assert {"google-u1", "microsoft-u2"} <= {a["connection"] for a in state["accounts"]}
