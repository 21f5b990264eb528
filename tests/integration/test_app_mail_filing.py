"""EML-5 over HTTP: a user who records mail opens the filing page, sees the messages
waiting for a CRM record ("Missing Contact") and those recorded lately, finds CRM
records by name or address, and files several messages to several records at once; the
mail pass that the filing asks for (run by the sync_worker function) puts each message
once into each record's history and labels it "Recorded". For Gmail and for Outlook,
through the functions, the reference CRM and the Google and Microsoft sandboxes. A user
reaches only their own connection; a POST without the session's CSRF token is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from playwright.sync_api import Page

from crmsync import service
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import gmail
from sandbox.local.stack import DEMO_USERS, LocalStack
from sandbox.microsoft import mail as outlook_mail
from tests.app_helpers import app, browser_sign_in, csrf, looked_at, sign_in
from tests.integration.test_app_preview_import import drain

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
DANAS, MAXS = "google-u1", "microsoft-u2"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    from crmsync.queue.inline import InlineQueue
    from crmsync.store.memory import MemoryBackend

    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    assert stack.connect("u1", services="sync,mail").status_code == 200
    assert stack.connect("u2", provider="microsoft", services="mail").status_code == 200
    drain(stack)  # the first mail passes make the labels and categories
    yield stack
    stack.close()


def message(sender: str, to: str, subject: str, message_id: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\n\r\nAbout {subject.lower()}.\r\n"
    ).encode()


def person(stack: LocalStack, kind: str, last_name: str) -> str:
    found: str = next(
        r["id"] for r in stack.crm.all(DEMO_TENANT, kind) if r.get("last_name") == last_name
    )
    return found


def labels_of(stack: LocalStack, connection: str) -> dict[str, str]:
    record = service.connection_of(stack.services.backend.store(DEMO_TENANT), connection)
    assert record is not None
    return dict(record.mail_labels)


def mail_pass(stack: LocalStack, connection: str) -> None:
    """A mail pass of the connection run through the sync_worker function, as the
    mailbox's notification of a tagged message asks for one."""
    service.enqueue_cycle(stack.services, DEMO_TENANT, connection, "mail", delay=timedelta(0))
    drain(stack)


def filed_reasons(stack: LocalStack, connection: str, message_id: str, record: str) -> list[str]:
    """What Sync History says of the message and the record, newest first: the reasons
    of the items of the connection's runs that filed it there."""
    store = stack.services.backend.store(DEMO_TENANT)
    runs = sorted(store.runs(connection), key=lambda r: r["started"], reverse=True)
    return [
        str(item["reason"])
        for run in runs
        for item in store.items(connection, run["id"])
        if item["provider_id"] == message_id and item["crm_id"] == record
    ]


def history(stack: LocalStack, kind: str, record: str) -> list[str]:
    return sorted(i["subject"] for i in stack.crm.history(DEMO_TENANT, kind, record))


def test_EML5_dana_files_two_gmail_messages_to_a_contact_and_a_lead_she_found(
    stack: LocalStack,
) -> None:
    ids = labels_of(stack, DANAS)
    stranger = "Sam Stranger <sam@nowhere.example>"
    sent = [
        gmail.deliver(stack.google, DANA, message(stranger, DANA, subject, f"{n}@nowhere"))
        for n, subject in enumerate(("Engine parts", "Delivery dates"))
    ]
    for one in sent:
        gmail.change_labels(stack.google, DANA, one, add=[ids["send"]])
    mail_pass(stack, DANAS)
    assert all(ids["missing"] in gmail.message_labels(stack.google, DANA, m) for m in sent)
    dana = sign_in(stack, DANA)

    assert f"/me/mail/{DANAS}" in dana.get(app(stack, "/me")).text
    shown = dana.get(app(stack, f"/api/me/mail/{DANAS}")).json()
    assert [m["subject"] for m in shown["waiting"]] == ["Delivery dates", "Engine parts"]
    assert {m["sender"] for m in shown["waiting"]} == {stranger}
    found = dana.get(app(stack, f"/api/me/mail/{DANAS}"), params={"q": "LOVELACE"}).json()
    ada = person(stack, "contact", "Lovelace")
    assert [p["ref"] for p in found["found"]] == [f"contact/{ada}"]
    lead = stack.crm.create(DEMO_TENANT, "lead", {"last_name": "Babbage"}, "u1")
    leads = dana.get(app(stack, f"/api/me/mail/{DANAS}"), params={"q": "babb"}).json()
    assert [p["ref"] for p in leads["found"]] == [f"lead/{lead}"]

    page = dana.get(app(stack, f"/me/mail/{DANAS}"), params={"q": "lovelace"})
    assert 'name="messages"' in page.text and f'value="contact/{ada}"' in page.text
    chosen = {"messages": sent, "records": [f"contact/{ada}", f"lead/{lead}"]}
    refused = dana.post(app(stack, f"/me/mail/{DANAS}/file"), data=chosen)
    assert refused.status_code == 403
    answer = dana.post(
        app(stack, f"/me/mail/{DANAS}/file"),
        data={**chosen, "csrf": csrf(page.text)},
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert "Filing 2 messages to 2 records" in dana.get(answer.headers["Location"]).text
    drain(stack)

    held = history(stack, "contact", ada)  # Ada's own history, and each message once
    assert (held.count("Delivery dates"), held.count("Engine parts")) == (1, 1)
    assert history(stack, "lead", lead) == ["Delivery dates", "Engine parts"]
    for one in sent:
        now = gmail.message_labels(stack.google, DANA, one)
        assert ids["recorded"] in now and ids["missing"] not in now
    after = dana.get(app(stack, f"/api/me/mail/{DANAS}")).json()
    assert after["waiting"] == [] and after["pending"] == 0
    assert {"Delivery dates", "Engine parts"} <= {m["subject"] for m in after["recorded"]}


def test_EML5_max_files_an_outlook_message_to_a_record_he_found(stack: LocalStack) -> None:
    raw = message("Nell <nell@nowhere.example>", MAX, "Service visit", "visit@nowhere")
    sent = outlook_mail.deliver(stack.microsoft, MAX, raw)
    outlook_mail.set_categories(stack.microsoft, MAX, sent, ["CRM/Send To CRM"])
    mail_pass(stack, MAXS)
    max_ = sign_in(stack, MAX, provider="microsoft")
    shown = max_.get(app(stack, f"/api/me/mail/{MAXS}"), params={"q": "lovelace"}).json()
    assert [m["id"] for m in shown["waiting"]] == [sent]
    ada = person(stack, "contact", "Lovelace")

    def file_to_ada() -> None:
        page = max_.get(app(stack, f"/me/mail/{MAXS}"))
        answer = max_.post(
            app(stack, f"/me/mail/{MAXS}/file"),
            data={"messages": sent, "records": f"contact/{ada}", "csrf": csrf(page.text)},
        )
        assert answer.status_code == 200
        drain(stack)
        assert history(stack, "contact", ada).count("Service visit") == 1

    file_to_ada()
    held = stack.outlook("GET", f"me/messages/{sent}", user="u2")["categories"]
    assert held == ["CRM/Recorded"]
    assert filed_reasons(stack, MAXS, sent, ada) == ["filed to this record, as you chose"]

    file_to_ada()  # again: the CRM keeps it once, and Sync History says it was there
    assert filed_reasons(stack, MAXS, sent, ada) == [
        "already filed to this record: the CRM keeps it there once",
        "filed to this record, as you chose",
    ]


def test_EML5_nobody_reaches_another_users_filing_page_or_files_from_it(
    stack: LocalStack,
) -> None:
    max_ = sign_in(stack, MAX, provider="microsoft")
    token = csrf(max_.get(app(stack, f"/me/mail/{MAXS}")).text)
    for path in (f"/me/mail/{DANAS}", f"/api/me/mail/{DANAS}"):
        assert max_.get(app(stack, path)).status_code == 404, path
    answer = max_.post(
        app(stack, f"/me/mail/{DANAS}/file"),
        data={"messages": "m1", "records": "contact/c1", "csrf": token},
    )
    assert answer.status_code == 404
    assert "you have no such connection" in answer.text.lower()
    assert stack.services.backend.store(DEMO_TENANT).filings(DANAS, 10) == []


def test_EML5_a_search_of_one_letter_asks_for_two(stack: LocalStack) -> None:
    max_ = sign_in(stack, MAX, provider="microsoft")

    page = max_.get(app(stack, f"/me/mail/{MAXS}"), params={"q": "l"})

    assert page.status_code == 200
    assert "Type at least two letters" in page.text
    assert "No CRM contact or lead you may see holds" not in page.text


def test_EML5_a_choice_without_records_is_a_page_that_says_what_to_do(stack: LocalStack) -> None:
    max_ = sign_in(stack, MAX, provider="microsoft")
    token = csrf(max_.get(app(stack, f"/me/mail/{MAXS}")).text)

    answer = max_.post(
        app(stack, f"/me/mail/{MAXS}/file"),
        data={"messages": "m1", "csrf": token},
        headers={"Accept": "text/html"},  # as a browser asks: the refusal is a page
    )

    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("text/html")
    assert "no record was chosen" in answer.text.lower()
    assert "Find the records in the CRM and tick them." in answer.text
    api = max_.post(
        app(stack, f"/api/me/mail/{MAXS}/file"),
        json={"messages": ["m1"], "records": []},
        headers={"X-CSRF-Token": token},
    )
    assert (api.status_code, api.json()["error"]) == (400, "no record was chosen")


def test_EML5_in_a_browser_dana_finds_a_record_ticks_a_message_and_files_it(
    page: Page, stack: LocalStack
) -> None:
    ids = labels_of(stack, DANAS)
    raw = message("Tom <tom@nowhere.example>", DANA, "Spare gears", "gears@nowhere")
    sent = gmail.deliver(stack.google, DANA, raw)
    gmail.change_labels(stack.google, DANA, sent, add=[ids["send"]])
    mail_pass(stack, DANAS)
    ada = person(stack, "contact", "Lovelace")
    browser_sign_in(page, stack, "u1", "google")

    page.click(f"#mail-{DANAS}")
    page.fill("#q", "lovelace")
    page.click("#find")
    page.get_by_label("File to Ada Lovelace").check()
    page.get_by_label("File Spare gears").check()
    looked_at(page, "mail-file")
    page.click("#file-messages")

    assert "Filing 1 message to 1 record" in page.locator("#notice").inner_text()
    drain(stack)
    assert history(stack, "contact", ada).count("Spare gears") == 1
    page.goto(app(stack, "/me/history"))
    page.locator("#runs tbody a").first.click()  # the newest run: the filing's
    assert "filed to Ada Lovelace, as you chose" in page.content()
    assert ids["recorded"] in gmail.message_labels(stack.google, DANA, sent)


def test_EML1_connecting_outlook_mail_routes_no_mailbox_and_shows_no_problem(
    stack: LocalStack,
) -> None:
    """Graph's notifications name their subscription, so an Outlook connection that
    records mail needs no mailbox route, and its user sees no problem before its first
    mail pass has run."""
    assert stack.connect("u3", provider="microsoft", services="mail").status_code == 200

    record = service.connection_of(stack.services.backend.store(DEMO_TENANT), "microsoft-u3")
    assert record is not None and record.records_mail
    assert record.mail_problem == ""
    drain(stack)
