"""The Gmail add-on (CTX-1) through the `addon` function, as Gmail runs it: the Google
sandbox posts the event objects Gmail posts (signed by its own token issuer) when Dana
opens a message or clicks a button of a card; the answers are Card v1 JSON, each parsed
by Google's Card v1 protos with unknown fields refused. The reference CRM and the Google
sandbox over real sockets; filing goes through e-mail recording (the sync_worker's mail
pass)."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from google.apps import card_v1

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.usecases import pane
from sandbox.chaos import Chaos
from sandbox.crm.chaos import Slow
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import addons, gmail
from sandbox.local.console import CrmSwitch
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.integration.test_app_preview_import import drain

pytestmark = pytest.mark.integration

DANA = DEMO_USERS["u1"]
DANAS = "google-u1"
ADA, GRACE, SAM = "ada@acme.example", "grace@globex.example", "sam@nowhere.example"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    slowed: list[Slow] = []
    switch = CrmSwitch()

    def wrap(app: Any) -> Any:
        slowed.append(Slow(switch(app)))  # the CRM slowed down, or down (503)
        return slowed[0]

    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0, crm_wrap=wrap)
    stack.slow = slowed[0]  # type: ignore[attr-defined]
    stack.switch = switch  # type: ignore[attr-defined]
    stack.create_demo_tenant()
    assert stack.connect("u1", services="sync,mail").status_code == 200
    drain(stack)  # the first cycle and mail pass
    yield stack
    stack.close()


def endpoint(stack: LocalStack) -> str:
    return stack.functions_url + "/addon/google"


def delivered(stack: LocalStack, subject: str, sender: str, *others: str) -> str:
    """A message in Dana's mailbox from `sender`, to Dana and `others`."""
    to = ", ".join([DANA, *others])
    raw = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-').lower()}@nowhere>\r\n\r\nAbout {subject}.\r\n"
    )
    return gmail.deliver(stack.google, DANA, raw.encode())


def opened(
    stack: LocalStack, message: str, email: str = DANA, action: str = "", **event: Any
) -> requests.Response:
    """Gmail posts the event of `email` opening `message` (or clicking `action`)."""
    url = endpoint(stack) + (f"?do={action}" if action else "")
    built = addons.message_event(stack.google, url, email, message, **event)
    return addons.post(stack.google, url, built)


def card_of(answer: requests.Response) -> dict[str, Any]:
    """The card of an answer, parsed by Google's Card v1 protos (unknown fields refused)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json()
    if "renderActions" in body:
        [navigation] = body["renderActions"]["action"]["navigations"]
        card = navigation["updateCard"]
    else:
        [navigation] = body["action"]["navigations"]
        card = navigation["pushCard"]
    card_v1.Card.from_json(json.dumps(card))  # raises on a misspelt or unknown field
    return dict(card)


def notification(answer: requests.Response) -> str:
    return str(answer.json()["renderActions"]["action"].get("notification", {}).get("text", ""))


def sections(card: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {str(s.get("header", "")): s["widgets"] for s in card["sections"]}


def lines(widgets: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(top label, text, address opened) of each decorated text."""
    return [
        (
            w["decoratedText"].get("topLabel", ""),
            w["decoratedText"]["text"],
            w["decoratedText"]
            .get("button", {})
            .get("onClick", {})
            .get("openLink", {})
            .get("url", ""),
        )
        for w in widgets
        if "decoratedText" in w
    ]


def buttons(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for section in card["sections"]:
        for widget in section["widgets"]:
            for button in widget.get("buttonList", {}).get("buttons", []):
                found[button["text"]] = button["onClick"]
    return found


def texts(card: dict[str, Any]) -> str:
    return (
        " ".join(
            w["textParagraph"]["text"]
            for s in card["sections"]
            for w in s["widgets"]
            if "textParagraph" in w
        )
        + " "
        + card["header"].get("subtitle", "")
    )


def test_CTX1_opening_a_message_shows_the_crm_records_behind_its_participants(
    stack: LocalStack,
) -> None:
    message = delivered(stack, "Renewal terms", f"Ada Lovelace <{ADA}>", GRACE, SAM)

    card = card_of(opened(stack, message))

    shown = sections(card)
    assert set(shown) - {""} == {"Ada Lovelace", GRACE, SAM}  # not Dana herself
    ada = lines(shown["Ada Lovelace"])
    assert [(top, text) for top, text, _ in ada[:4]] == [
        ("Contact", "Ada Lovelace"),
        ("Account", "Acme GmbH"),
        ("Open opportunity", "Acme renewal 2027"),
        ("Open opportunity", "Acme analytics pilot"),
    ]
    assert [text for top, text, _ in ada if top.startswith("History ")] == [
        "Agenda for the review"  # the seeded message recorded on Ada
    ]
    for _, _, url in ada[:4]:  # each opens the record's page in the CRM
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    grace = lines(shown[GRACE])
    assert [(top, text) for top, text, _ in grace] == [
        ("Contact", "Grace Hopper"),
        ("Account", "Globex Ltd"),
        ("Open opportunity", "Globex onboarding"),
    ]
    assert all(url.startswith(stack.crm_url.split("/api/")[0] + "/ui/") for _, _, url in grace)
    assert f"{SAM} is not in the CRM." in texts(
        {"header": {}, "sections": [{"widgets": shown[SAM]}]}
    )
    assert {"Add to the CRM", "File to CRM"} <= set(buttons(card))


def test_CTX1_every_request_is_checked_and_a_forged_one_changes_nothing(
    stack: LocalStack,
) -> None:
    message = delivered(stack, "Forged", f"Sam <{SAM}>")
    url = endpoint(stack) + "?do=create_contact"
    event = addons.message_event(
        stack.google,
        url,
        DANA,
        message,
        parameters={"address": SAM},
        inputs={"first_name": ["Sam"], "last_name": ["Forged"]},
    )
    other_endpoint = addons.system_token(stack.google, stack.functions_url + "/app")
    other_account = addons.system_token(stack.google, url, email="someone@example.com")
    forged_user = {
        **event,
        "authorizationEventObject": {
            **event["authorizationEventObject"],
            "userIdToken": addons.sign(stack.google, {"iss": "https://accounts.google.com"}),
        },
    }
    tries = [
        requests.post(url, json=event, timeout=10),  # no token
        addons.post(stack.google, url, event, token="not-a-token"),
        addons.post(stack.google, url, event, token=other_endpoint),
        addons.post(stack.google, url, event, token=other_account),
        addons.post(stack.google, url, forged_user),
    ]

    assert [t.status_code for t in tries] == [401] * 5
    assert all("sections" not in t.text for t in tries)
    assert not [p for p in stack.crm.all(DEMO_TENANT, "contact") if SAM in p.get("emails", [])]


def test_CTX1_an_account_not_connected_gets_one_card_saying_how_to_connect(
    stack: LocalStack,
) -> None:
    stranger = "nell@elsewhere.example"
    stack.google.add_account(stranger)

    card = card_of(
        addons.post(
            stack.google,
            endpoint(stack),
            addons.homepage_event(stack.google, endpoint(stack), stranger),
        )
    )

    assert card["header"]["subtitle"] == "This Google account is not connected to crmsync"
    assert "onboarding link" in texts(card)
    assert buttons(card) == {}


def test_CTX1_a_user_who_must_sign_in_again_gets_the_link_to_do_it(stack: LocalStack) -> None:
    message = delivered(stack, "Reconsent", f"Ada <{ADA}>")
    store = stack.services.backend.store(DEMO_TENANT)
    store.set_status(DANAS, "needs_reauth", "revoked")
    try:
        card = card_of(opened(stack, message))
    finally:
        store.set_status(DANAS, "active")

    assert card["header"]["subtitle"] == "crmsync needs you to sign in to Google again"
    link = buttons(card)["Open crmsync"]["openLink"]["url"]
    assert link == pane.sign_in_url(stack.services, DEMO_TENANT)
    assert requests.get(link, timeout=10).status_code == 200  # the sign-in page


def test_CTX1_a_slow_crm_gets_an_answer_within_the_deadline_never_a_spinner(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = delivered(stack, "Slow CRM", f"Ada <{ADA}>", GRACE)
    monkeypatch.setattr(pane, "DEADLINE", 0.5)
    stack.slow.delay = 2.0  # type: ignore[attr-defined]
    try:
        started = time.monotonic()
        card = card_of(opened(stack, message))
        took = time.monotonic() - started
    finally:
        stack.slow.delay = 0.0  # type: ignore[attr-defined]

    assert took < 2.0  # the deadline, not the CRM, ended the wait
    assert "The CRM did not answer in time for some participants" in texts(card)
    assert set(sections(card)) >= {ADA, GRACE}


def test_CTX1_a_crm_that_is_down_gets_a_card_that_says_so_and_offers_no_new_contact(
    stack: LocalStack,
) -> None:
    message = delivered(stack, "CRM down", f"Ada Lovelace <{ADA}>")
    faults = stack.switch.faults  # type: ignore[attr-defined]
    faults.chaos = Chaos(rate=1.0, kinds=frozenset({"503"}))
    try:
        card = card_of(opened(stack, message))
    finally:
        faults.chaos = None

    assert "The CRM could not be reached for some participants" in texts(card)
    [said] = [w["textParagraph"]["text"] for w in sections(card)["Ada Lovelace"]]
    assert said == f"The CRM could not be asked about {ADA}."
    assert "Add to the CRM" not in buttons(card)


def test_CTX1_a_message_is_filed_to_several_records_once_through_mail_recording(
    stack: LocalStack,
) -> None:
    message = delivered(stack, "Joint proposal", f"Sam <{SAM}>")
    ada = next(
        r["id"] for r in stack.crm.all(DEMO_TENANT, "contact") if r.get("last_name") == "Lovelace"
    )
    grace = next(
        r["id"] for r in stack.crm.all(DEMO_TENANT, "contact") if r.get("last_name") == "Hopper"
    )

    chooser = card_of(opened(stack, message, action="file", parameters={"message": message}))
    assert "Find" in buttons(chooser)

    def search(text: str) -> dict[str, Any]:
        given = {"message": message}
        inputs = {"search": [text]}
        return card_of(opened(stack, message, action="search", parameters=given, inputs=inputs))

    found = search("o")
    assert "Type at least 2 letters" in texts(found) and "File" not in buttons(found)
    found = search("acme")
    [choice] = [
        w["selectionInput"]
        for s in found["sections"]
        for w in s["widgets"]
        if "selectionInput" in w
    ]
    assert f"contact/{ada}" in [item["value"] for item in choice["items"]]
    filing = buttons(found)["File"]["action"]
    given = {p["key"]: p["value"] for p in filing["parameters"]}

    answer = opened(
        stack,
        message,
        action="file_to",
        parameters=given,
        inputs={"records": [f"contact/{ada}", f"contact/{grace}"]},
    )
    again = opened(
        stack, message, action="file_to", parameters=given, inputs={"records": [f"contact/{ada}"]}
    )
    drain(stack)  # the mail pass the filings asked for

    assert "Filed to 2 records" in notification(answer)
    card_of(answer)
    card_of(again)
    for record in (ada, grace):
        subjects = [i["subject"] for i in stack.crm.history(DEMO_TENANT, "contact", record)]
        assert subjects.count("Joint proposal") == 1  # once, though filed twice to Ada


def test_CTX1_a_participant_unknown_to_the_crm_becomes_a_contact_prefilled_and_made_once(
    stack: LocalStack,
) -> None:
    newcomer = "lin@new-co.example"
    message = delivered(stack, "Hello from Newco", f"Lin Chen <{newcomer}>")
    [unknown] = [
        b["onClick"]["action"]
        for w in sections(card_of(opened(stack, message)))["Lin Chen"]
        for b in w.get("buttonList", {}).get("buttons", [])
    ]
    form = card_of(
        opened(
            stack,
            message,
            action="new_person",
            parameters={p["key"]: p["value"] for p in unknown["parameters"]},
        )
    )
    prefilled = {
        w["textInput"]["name"]: w["textInput"].get("value", "")
        for w in form["sections"][0]["widgets"]
        if "textInput" in w
    }
    assert prefilled == {"first_name": "Lin", "last_name": "Chen", "company": "New Co", "title": ""}
    create = buttons(form)["Create contact"]["action"]
    given = {p["key"]: p["value"] for p in create["parameters"]}
    corrected = {**{k: [v] for k, v in prefilled.items()}, "title": ["Buyer"]}

    first = opened(stack, message, action="create_contact", parameters=given, inputs=corrected)
    second = opened(stack, message, action="create_contact", parameters=given, inputs=corrected)

    assert notification(first) == "The contact is in the CRM"
    card = card_of(second)  # clicked twice: still one
    made = [r for r in stack.crm.all(DEMO_TENANT, "contact") if newcomer in r.get("emails", [])]
    assert [(r["first_name"], r["last_name"], r["company"], r["title"]) for r in made] == [
        ("Lin", "Chen", "New Co", "Buyer")
    ]
    assert made[0]["id"] in stack.crm.database.members(DEMO_TENANT, "u1")  # Dana syncs it
    [contact, *_] = sections(card)["Lin Chen"]
    shown = contact["decoratedText"]
    assert (shown["topLabel"], shown["text"], shown["bottomLabel"]) == (
        "Contact",
        "Lin Chen",
        "Buyer",
    )


def test_CTX1_the_homepage_says_who_is_connected_and_what_the_pane_does(stack: LocalStack) -> None:
    url = endpoint(stack)

    card = card_of(addons.post(stack.google, url, addons.homepage_event(stack.google, url, DANA)))

    assert card["header"]["subtitle"] == f"Connected as {DANA}"
    assert "Open a message" in texts(card)
    assert buttons(card)["Open crmsync"]["openLink"]["url"] == pane.sign_in_url(
        stack.services, DEMO_TENANT
    )


def test_CTX1_the_function_answers_a_browser_with_a_page_and_a_get_with_405(
    stack: LocalStack,
) -> None:
    page = requests.get(endpoint(stack), headers={"Accept": "text/html"}, timeout=10)
    machine = requests.get(endpoint(stack), timeout=10)

    assert page.status_code == 405 and "text/html" in page.headers["Content-Type"]
    assert "open a message in Gmail" in page.text
    assert machine.status_code == 405 and machine.headers["Allow"] == "POST"


def test_CTX1_filing_with_no_record_ticked_says_what_to_do_and_files_nothing(
    stack: LocalStack,
) -> None:
    message = delivered(stack, "Nothing ticked", f"Sam <{SAM}>")
    before = len(stack.services.backend.store(DEMO_TENANT).filings(DANAS, 50))

    card = card_of(opened(stack, message, action="file_to", parameters={"message": message}))

    assert card["header"]["subtitle"] == "No record was chosen"
    assert "Tick the records" in texts(card)
    back = buttons(card)["Back"]["action"]
    given = {p["key"]: p["value"] for p in back["parameters"]}
    chooser = card_of(opened(stack, message, action="file", parameters=given))
    assert "Find" in buttons(chooser)  # on from where the user was
    assert len(stack.services.backend.store(DEMO_TENANT).filings(DANAS, 50)) == before


def test_CTX1_the_logo_the_deployment_names_is_served(stack: LocalStack) -> None:
    logo = requests.get(stack.functions_url + "/app/assets/crmsync-logo.png", timeout=10)

    assert logo.status_code == 200 and logo.headers["Content-Type"] == "image/png"
    assert logo.content.startswith(b"\x89PNG")


def test_CTX1_make_devs_console_draws_the_gmail_cards_and_their_buttons_work(
    stack: LocalStack,
) -> None:
    from sandbox.local.console import Console

    message = delivered(stack, "Console look", f"Ada Lovelace <{ADA}>")
    console = Console(stack).app().test_client()

    shown = console.get(f"/gmail-addon/{message}")
    home = console.get("/gmail-addon")

    assert shown.status_code == 200 and shown.mimetype == "text/html"
    page = shown.get_data(as_text=True)
    assert "<h2>Ada Lovelace</h2>" in page and "Acme renewal 2027" in page
    assert f"Connected as {DANA}" in home.get_data(as_text=True)
    assert f'<a href="/gmail-addon/{message}">Console look</a>' in home.get_data(as_text=True)
    [do] = re.findall(r'name="do" value="([^"]*)">File to CRM</button>', page)
    do = html.unescape(do)
    chooser = console.post(f"/gmail-addon/{message}", data={"do": do})
    assert chooser.status_code == 200
    assert "Find a contact or lead" in chooser.get_data(as_text=True)
    found = console.post(
        f"/gmail-addon/{message}",
        data={"do": do.replace("do=file", "do=search"), "search": "lovelace"},
    )
    assert 'type="checkbox" name="records"' in found.get_data(as_text=True)


# -- the open calendar event ----------------------------------------------------------------
def event_opened(
    stack: LocalStack, event_id: str, action: str = "", **event: Any
) -> requests.Response:
    """Google Calendar posts the event of Dana opening the event (or clicking `action`)."""
    url = endpoint(stack) + (f"?do={action}" if action else "")
    built = addons.calendar_event(stack.google, url, DANA, event_id, **event)
    return addons.post(stack.google, url, built)


def meeting_in_google(stack: LocalStack, subject: str, *guests: str) -> str:
    """A meeting Dana makes in Google Calendar with `guests`, synced to the CRM."""
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=2)
    made = (
        stack.google_api("calendar", "v3")
        .events()
        .insert(
            calendarId="primary",
            body={
                "summary": subject,
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
                "attendees": [{"email": guest} for guest in guests],
            },
        )
        .execute()
    )
    service.enqueue_cycle(stack.services, DEMO_TENANT, DANAS, "schedule")
    drain(stack)
    return str(made["id"])


def crm_activity(stack: LocalStack, subject: str) -> dict[str, Any]:
    [found] = [a for a in stack.crm.all(DEMO_TENANT, "activity") if a["subject"] == subject]
    return dict(found)


def test_CTX1_an_open_event_shows_its_crm_activity_and_saves_participants_and_related_records(
    stack: LocalStack,
) -> None:
    stack.crm.declare_custom_field(DEMO_TENANT, "activity", "outcome", "enum", ("won", "lost"))
    max_ = DEMO_USERS["u2"]
    event_id = meeting_in_google(stack, "Renewal workshop", ADA, max_)
    before = crm_activity(stack, "Renewal workshop")

    card = card_of(event_opened(stack, event_id))

    shown = sections(card)
    assert card["header"]["title"] == "Renewal workshop"
    assert lines(shown["In the CRM"])[0][:2] == ("Leader", "Dana Rep")
    choices = {
        w["selectionInput"]["name"]: {i["value"]: i["text"] for i in w["selectionInput"]["items"]}
        for w in shown["Change it"]
        if "selectionInput" in w
    }
    acme = next(r for r in choices["about"] if r.startswith("account/"))
    renewal = next(r for r, text in choices["about"].items() if text.startswith("Acme renewal"))
    assert choices["about"][acme] == "Acme GmbH (account)"
    save = buttons(card)["Save to CRM"]["action"]
    given = {p["key"]: p["value"] for p in save["parameters"]}
    sam = "u3"  # a colleague who is not a guest of the event
    assert choices["join"][sam] == "Sam Support" and "u2" not in choices["join"]  # Max is in

    saved = event_opened(
        stack,
        event_id,
        action="meeting_save",
        parameters=given,
        inputs={"about": [acme, renewal], "join": [sam], "custom:outcome": ["won"]},
    )

    assert notification(saved) == "Saved to the CRM"
    after = crm_activity(stack, "Renewal workshop")
    assert after["regarding"]["account"] == acme.partition("/")[2]
    assert after["regarding"]["opportunity"] == renewal.partition("/")[2]
    assert after["custom"] == {"outcome": "won"}
    assert after["members"] == [*before["members"], sam]
    shown_after = sections(card_of(saved))
    assert [text for _, text, _ in lines(shown_after["About"])] == [
        "Acme GmbH",
        "Acme renewal 2027",
    ]
    service.enqueue_cycle(stack.services, DEMO_TENANT, DANAS, "schedule")
    drain(stack)  # the next cycle
    assert crm_activity(stack, "Renewal workshop")["regarding"] == after["regarding"]
    assert crm_activity(stack, "Renewal workshop")["custom"] == {"outcome": "won"}
    assert crm_activity(stack, "Renewal workshop")["members"] == after["members"]
    event = stack.google_api("calendar", "v3").events().get(calendarId="primary", eventId=event_id)
    guests = {a["email"] for a in event.execute().get("attendees", [])}
    assert DEMO_USERS["u3"] in guests  # CAL-6: the colleague added in the CRM is invited


def test_CTX1_saving_from_a_stale_card_changes_nothing_and_shows_the_activity_as_it_is(
    stack: LocalStack,
) -> None:
    event_id = meeting_in_google(stack, "Stale card", GRACE)
    card = card_of(event_opened(stack, event_id))
    save = buttons(card)["Save to CRM"]["action"]
    given = {p["key"]: p["value"] for p in save["parameters"]}
    activity = crm_activity(stack, "Stale card")
    stack.crm.update(DEMO_TENANT, "activity", activity["id"], {"location": "Room 4"})  # meanwhile

    again = event_opened(
        stack, event_id, action="meeting_save", parameters=given, inputs={"about": ["contact/x"]}
    )

    assert "changed in the CRM meanwhile" in notification(again)
    card_of(again)
    assert crm_activity(stack, "Stale card")["regarding"] == activity["regarding"]


def test_CTX1_an_event_the_crm_does_not_have_says_when_it_will(stack: LocalStack) -> None:
    card = card_of(event_opened(stack, "no-such-event"))

    assert card["header"]["subtitle"] == "This event is not in the CRM"
    assert "next sync" in texts(card)


# -- writing a message: CRM documents ---------------------------------------------------------
def composing(stack: LocalStack, action: str, **event: Any) -> requests.Response:
    """Gmail posts the event of Dana's compose action (or a button of its card)."""
    url = endpoint(stack) + f"?do={action}"
    return addons.post(stack.google, url, addons.compose_event(stack.google, url, DANA, **event))


def inserted(answer: requests.Response) -> str:
    """The HTML the answer puts into the draft, where the cursor is."""
    assert answer.status_code == 200, answer.text
    update = answer.json()["renderActions"]["hostAppAction"]["gmailAction"]
    body = update["updateDraftActionMarkup"]["updateBody"]
    assert body["type"] == "IN_PLACE_INSERT"
    [content] = body["insertContents"]
    assert content["contentType"] == "MUTABLE_HTML"
    return str(content["content"])


def test_CTX1_a_crm_document_found_while_writing_goes_into_the_draft_and_opens_for_its_reader(
    stack: LocalStack,
) -> None:
    first = card_of(composing(stack, "compose"))
    assert "Find" in buttons(first)

    found = card_of(composing(stack, "docs_search", inputs={"search": ["RENEWAL"]}))
    [widget] = sections(found)["Put into the message"]
    assert widget["decoratedText"]["text"] == "Acme renewal proposal 2027.txt"
    insert = widget["decoratedText"]["button"]["onClick"]["action"]
    given = {p["key"]: p["value"] for p in insert["parameters"]}
    html_link = inserted(composing(stack, "docs_insert", parameters=given))

    [address] = re.findall(r'<a href="([^"]+)">Acme renewal proposal 2027.txt</a>', html_link)
    opened_by_reader = requests.get(html.unescape(address), timeout=10)  # no session at all
    assert opened_by_reader.status_code == 200
    assert opened_by_reader.content.startswith(b"Renewal proposal for Acme GmbH, 2027")
    assert opened_by_reader.headers["Content-Disposition"] == (
        'attachment; filename="Acme renewal proposal 2027.txt"'
    )
    forged = html.unescape(address)[:-4] + "AAAA"
    refused = requests.get(forged, headers={"Accept": "text/html"}, timeout=10)
    assert refused.status_code == 404 and "not available any more" in refused.text


def test_CTX1_another_users_document_is_not_found_while_writing(stack: LocalStack) -> None:
    card = card_of(composing(stack, "docs_search", inputs={"search": ["forecast"]}))

    assert "No CRM document's name holds “forecast”." in texts(card)
    assert "Put into the message" not in sections(card)


def test_CTX1_a_message_no_longer_in_the_mailbox_says_so(stack: LocalStack) -> None:
    card = card_of(opened(stack, "17f00dfeed000000"))  # deleted since Gmail showed it

    assert card["header"]["subtitle"] == "This message is not in your mailbox any more"


def test_CTX1_make_devs_console_draws_the_calendar_and_compose_cards_too(
    stack: LocalStack,
) -> None:
    from sandbox.local.console import Console

    event_id = meeting_in_google(stack, "Console meeting", ADA)
    console = Console(stack).app().test_client()
    home = console.get("/gmail-addon").get_data(as_text=True)

    assert f'<a href="/calendar-addon/{event_id}">Console meeting</a>' in home
    meeting = console.get(f"/calendar-addon/{event_id}").get_data(as_text=True)
    assert "<h1>Console meeting</h1>" in meeting and "Acme GmbH (account)" in meeting
    compose = console.get("/gmail-addon/compose").get_data(as_text=True)
    [find] = re.findall(r'name="do" value="([^"]*)">Find</button>', compose)
    found = console.post(
        "/gmail-addon/compose", data={"do": html.unescape(find), "search": "price"}
    ).get_data(as_text=True)
    [insert] = re.findall(r'name="do" value="([^"]*)">Insert</button>', found)
    put = console.post("/gmail-addon/compose", data={"do": html.unescape(insert)})
    assert "Put into the draft" in put.get_data(as_text=True)
    assert "Price list 2027.csv</a>" in put.get_data(as_text=True)
