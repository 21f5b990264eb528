"""crmsync's task pane in Outlook (CTX-1), in a real browser (Debian's Chromium through
Playwright): the page the addon function serves, its script, and crmsync's answers, as
Outlook runs them. Only Office.js is a stand-in: the page's request for Microsoft's
office.js is answered with sandbox/microsoft/office_stub.js, which plays Outlook's
mailbox (the open message, meeting or draft, as Graph has them at the Microsoft
sandbox) and hands the pane the Office SSO token the sandbox's identity platform
signed. Max reads a message, files it to several records and adds a participant the
CRM does not know; organises a meeting, adds a colleague and related records to its
CRM activity; and attaches a CRM document to a draft. Each view passes axe-core's
accessibility check."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from crmsync import service
from crmsync.providers.microsoft.addin import OFFICE_JS
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, MICROSOFT_CLIENT_ID, LocalStack
from sandbox.microsoft import mail, office
from tests.app_helpers import browser_sign_in, looked_at
from tests.integration.test_app_preview_import import drain
from tests.integration.test_outlook_addin import max_connected

pytestmark = pytest.mark.integration

MAX = DEMO_USERS["u2"]
MAXS = "microsoft-u2"
ADA, GRACE = "ada@acme.example", "grace@globex.example"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    yield from max_connected()


def in_outlook(
    page: Page, stack: LocalStack, item: dict[str, Any] | None, sso: bool = True
) -> dict[str, Any]:
    """Outlook opens the pane beside `item`: Office.js is the stand-in (in the pane and
    in any window it opens), given the item and Max's SSO token (none without `sso`:
    Office SSO unavailable). Returns the stand-in's configuration."""
    token = office.sso_token(stack.microsoft, MAX, MICROSOFT_CLIENT_ID) if sso else ""
    config = office.stub_config(token, item)
    page.context.route(
        OFFICE_JS,
        lambda route: route.fulfill(body=office.stub_script(), content_type="text/javascript"),
    )
    page.add_init_script(f"window.__officeStub = {json.dumps(config)};")
    page.goto(stack.functions_url + "/addon/microsoft")
    return config


def received(stack: LocalStack, subject: str, sender: str, *others: str) -> dict[str, Any]:
    """A message in Max's inbox from `sender` to Max and `others`, as Graph has it."""
    raw = (
        f"From: {sender}\r\nTo: {', '.join([MAX, *others])}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-').lower()}@nowhere>\r\n\r\nAbout it.\r\n"
    )
    message_id = mail.deliver(stack.microsoft, MAX, raw.encode())
    return dict(stack.outlook("GET", f"me/messages/{message_id}"))


def test_CTX1_outlook_pane_shows_the_crm_behind_a_message_files_it_and_adds_a_newcomer(
    page: Page, stack: LocalStack
) -> None:
    newcomer, prospect = "lin@new-co.example", "ola@startup.example"
    message = received(
        stack, "Pilot scope", f"Ada Lovelace <{ADA}>", GRACE, newcomer, f"Ola Berg <{prospect}>"
    )

    in_outlook(page, stack, office.message_item(message))

    ada = page.locator(f'section.person[data-address="{ADA}"]')
    expect(ada.locator("h2")).to_have_text("Ada Lovelace")
    expect(ada.get_by_role("link", name="Acme GmbH")).to_be_visible()
    expect(ada.get_by_role("link", name="Acme renewal 2027")).to_be_visible()
    expect(ada).to_contain_text("Agenda for the review")  # its history
    href = ada.get_by_role("link", name="Ada Lovelace").get_attribute("href")
    assert href is not None and href.startswith(stack.crm_url.split("/api/")[0] + "/ui/")
    lin = page.locator(f'section.person[data-address="{newcomer}"]')
    expect(lin).to_contain_text("not in the CRM")
    looked_at(page, "outlook-message")

    # filed to Ada and Grace (ticked: the message's people), and Hopper found by search
    records = page.locator("#records input[name=records]")
    expect(records).to_have_count(2)
    page.fill("#search", "hopper")
    page.click("text=Find")
    expect(records).to_have_count(2)  # Grace was offered already: not twice
    page.click("#filing button:text-is('File to CRM')")
    expect(page.locator("#filing-result")).to_contain_text("Filed to 2 records")
    page.click("#filing button:text-is('File to CRM')")  # again: recorded once all the same
    expect(page.locator("#filing-result")).to_contain_text("Filed to 2 records")
    drain(stack)  # the mail pass the filing asked for
    for last_name in ("Lovelace", "Hopper"):
        [person] = [
            r for r in stack.crm.all(DEMO_TENANT, "contact") if r.get("last_name") == last_name
        ]
        subjects = [i["subject"] for i in stack.crm.history(DEMO_TENANT, "contact", person["id"])]
        assert subjects.count("Pilot scope") == 1

    # the newcomer: prefilled from the message, made a contact, then shown as one
    page.fill("#search", "zzqx")
    page.click("text=Find")
    expect(page.locator("#filing-result")).to_have_text(
        'No contact or lead has "zzqx" in its name or address.'
    )
    lin.get_by_role("button", name="Add to the CRM").click()
    lin.get_by_role("button", name="Add to the CRM").click()  # shown and hidden again
    expect(lin.locator("form.create")).to_have_count(0)
    lin.get_by_role("button", name="Add to the CRM").click()
    expect(lin.locator("form.create")).to_have_count(1)
    expect(lin.locator("input[name=company]")).to_have_value("New Co")
    lin.locator("input[name=first_name]").fill("Lin")
    lin.locator("input[name=last_name]").fill("Chen")
    looked_at(page, "outlook-new-person")
    lin.get_by_role("button", name="Create contact").click()
    expect(page.locator("#pane")).to_contain_text("The person is in the CRM.")
    expect(page.locator(f'section.person[data-address="{newcomer}"] h2')).to_have_text("Lin Chen")
    made = [p for p in stack.crm.all(DEMO_TENANT, "contact") if newcomer in p.get("emails", [])]
    assert [(p["first_name"], p["last_name"], p["company"]) for p in made] == [
        ("Lin", "Chen", "New Co")
    ]

    # another one becomes a lead, named as the message names her
    ola = page.locator(f'section.person[data-address="{prospect}"]')
    ola.get_by_role("button", name="Add to the CRM").click()
    expect(ola.locator("input[name=first_name]")).to_have_value("Ola")
    expect(ola.locator("input[name=last_name]")).to_have_value("Berg")
    ola.get_by_role("button", name="Create lead").click()
    made_lead = page.locator(f'section.person[data-address="{prospect}"]')
    expect(made_lead.get_by_role("link", name="Ola Berg")).to_be_visible()  # her CRM record
    leads = [p for p in stack.crm.all(DEMO_TENANT, "lead") if prospect in p.get("emails", [])]
    assert [(p["first_name"], p["last_name"], p["company"]) for p in leads] == [
        ("Ola", "Berg", "Startup")
    ]


def meeting_in_outlook(stack: LocalStack, subject: str, *guests: str) -> dict[str, Any]:
    """A meeting Max organises in Outlook with `guests`, synced to the CRM; Graph's JSON."""
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=2)
    made = stack.outlook(
        "POST",
        "me/events",
        json={
            "subject": subject,
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
            "end": {
                "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                "timeZone": "UTC",
            },
            "attendees": [
                {"emailAddress": {"address": guest}, "type": "required"} for guest in guests
            ],
        },
    )
    service.enqueue_cycle(stack.services, DEMO_TENANT, MAXS, "schedule")
    drain(stack)
    return dict(stack.outlook("GET", f"me/events/{made['id']}"))


def test_CTX1_outlook_pane_adds_a_colleague_and_related_records_to_a_meetings_activity(
    page: Page, stack: LocalStack
) -> None:
    stack.crm.declare_custom_field(DEMO_TENANT, "activity", "stage", "enum", ("first", "follow-up"))
    event = meeting_in_outlook(stack, "Analytics pilot review", ADA)
    [before] = [
        a for a in stack.crm.all(DEMO_TENANT, "activity") if a["subject"] == event["subject"]
    ]

    in_outlook(page, stack, office.event_item(event, organizer=True))

    expect(page.locator("#activity h2")).to_have_text("Analytics pilot review")
    expect(page.locator("#activity")).to_contain_text("Not related to a record yet.")
    looked_at(page, "outlook-meeting")
    page.click("text=Save to the CRM")
    expect(page.locator("#meeting-result")).to_contain_text("Nothing to save")
    page.get_by_label("Sam Support").check()  # a colleague, not a guest
    page.get_by_label("Acme GmbH (account)").check()
    page.get_by_label("Acme analytics pilot (opportunity)").check()
    page.locator("input[data-name=stage]").fill("follow-up")
    page.click("text=Save to the CRM")

    expect(page.locator("#meeting-result")).to_contain_text("Saved to the CRM.")
    expect(page.locator("#activity")).to_contain_text("Acme GmbH (account)")
    expect(page.locator("#activity")).to_contain_text("Sam Support")
    [after] = [a for a in stack.crm.all(DEMO_TENANT, "activity") if a["id"] == before["id"]]
    assert after["members"] == [*before["members"], "u3"]
    assert after["regarding"]["account"] and after["regarding"]["opportunity"]
    assert after["custom"] == {"stage": "follow-up"}
    service.enqueue_cycle(stack.services, DEMO_TENANT, MAXS, "schedule")
    drain(stack)  # the next cycle keeps it
    [kept] = [a for a in stack.crm.all(DEMO_TENANT, "activity") if a["id"] == before["id"]]
    assert (kept["members"], kept["regarding"], kept["custom"]) == (
        after["members"],
        after["regarding"],
        after["custom"],
    )

    # the same meeting as an attendee opens it (Outlook's read form): as saved
    in_outlook(page, stack, office.event_item(event))
    expect(page.locator("#activity")).to_contain_text("Acme analytics pilot (opportunity)")
    expect(page.locator("#activity")).to_contain_text("Sam Support")


def test_CTX1_outlook_pane_attaches_a_crm_document_to_the_draft(
    page: Page, stack: LocalStack
) -> None:
    in_outlook(page, stack, office.draft_item("Our proposal", (ADA,)))

    page.fill("#documents-search", "renewal")
    page.click("#compose button:text-is('Find')")
    looked_at(page, "outlook-compose")
    page.get_by_role("button", name="Attach Acme renewal proposal 2027.txt").click()

    expect(page.locator("#attach-result")).to_contain_text(
        "Attached Acme renewal proposal 2027.txt"
    )
    attached = page.evaluate("window.__officeStub.attached")
    assert [a["name"] for a in attached] == ["Acme renewal proposal 2027.txt"]
    database = stack.crm.database
    [listed] = [d for d in database.documents(DEMO_TENANT) if d["name"] == attached[0]["name"]]
    stored = database.document(DEMO_TENANT, listed["id"])
    assert stored is not None
    assert base64.b64decode(attached[0]["base64"]) == stored["content"]  # the file itself


def test_CTX1_a_crm_document_too_large_to_attach_goes_into_the_draft_as_a_link_that_opens_it(
    page: Page, stack: LocalStack
) -> None:
    content = b"0123456789abcdef" * (19 * 1024 * 1024 // 16)  # 19 MB: past ATTACH_MOST
    stack.crm.add_document(DEMO_TENANT, "Acme site survey.bin", content)
    in_outlook(page, stack, office.draft_item("The survey", (ADA,)))

    page.fill("#documents-search", "survey")
    page.click("#compose button:text-is('Find')")
    page.get_by_role("button", name="Attach Acme site survey.bin").click()

    expect(page.locator("#attach-result")).to_contain_text("too large to attach: a link")
    assert page.evaluate("window.__officeStub.attached") == []
    [inserted] = page.evaluate("window.__officeStub.inserted")
    link = re.fullmatch(r'<a href="([^"]+)">Acme site survey\.bin</a>', inserted)
    assert link is not None and link.group(1).startswith(stack.services.url("app") + "/documents/")
    opened = requests.get(link.group(1), timeout=60)  # as the recipient opens it
    assert opened.status_code == 200 and opened.content == content


def test_CTX1_without_office_sso_the_pane_signs_in_through_the_web_app_in_outlooks_dialog(
    page: Page, stack: LocalStack
) -> None:
    browser_sign_in(page, stack, "u2", "microsoft")  # Max's crmsync session in this browser
    message = received(stack, "No SSO here", f"Grace Hopper <{GRACE}>")

    in_outlook(page, stack, office.message_item(message), sso=False)

    expect(page.locator("#pane")).to_contain_text("could not sign you in to crmsync by itself")
    looked_at(page, "outlook-sign-in")
    with page.expect_popup() as opened:
        page.click("#sign-in")
    dialog = opened.value
    if not dialog.is_closed():
        dialog.wait_for_event("close")  # the pane closes it once it has the key
    assert dialog.url.startswith(stack.functions_url + "/addon/microsoft/signed-in")
    expect(page.locator(f'section.person[data-address="{GRACE}"] h2')).to_have_text("Grace Hopper")
    page.click("#filing button:text-is('File to CRM')")  # every later request signed in too
    expect(page.locator("#filing-result")).to_contain_text("Filed to 1 record")


def test_CTX1_outlook_pane_opened_outside_outlook_says_where_to_open_it(
    page: Page, stack: LocalStack
) -> None:
    page.route(OFFICE_JS, lambda route: route.abort())  # no Office.js: not in Outlook
    page.goto(stack.functions_url + "/addon/microsoft")

    expect(page.locator("#pane")).to_contain_text("Open a message or a meeting in Outlook")
