"""The Gmail add-on (CTX-1): a Google Workspace add-on on the HTTP runtime, served by
the `addon` function at /google. Gmail POSTs an event object when the user opens the
add-on's homepage, opens a message, or clicks a button of a card; the answer is Card v1
JSON. No Apps Script and no other server.

Every request is checked before anything is read or written:
  * the Authorization header's ID token is Google's (signature by Google's published
    certificates, issuer, expiry), for this endpoint (audience), of the deployment's
    service account (`CRMSYNC_GOOGLE_ADDON_ACCOUNT`, its address verified);
  * the event's `userIdToken` is Google's, for the add-on's OAuth client
    (`CRMSYNC_GOOGLE_ADDON_CLIENT_ID`): its subject is the Google account the pane is
    for, found in crmsync's account directory.
Anything else is 401 and nothing happens. A user who is not connected, whose consent
must be renewed, or whose CRM is slow or down gets a card saying so and what to do.

The open message's participants are read with Gmail's own tokens of the event (the
user's token for the add-on's scopes and the message's `accessToken`), its headers
only (`format=metadata`). Actions are buttons whose function is this endpoint with
`?do=<action>`; what a card must remember rides in the action's parameters.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from crmsync.errors import GrantRevoked, NotFound, PermanentError, SyncError
from crmsync.ports import PushAnswer, PushRequest

log = logging.getLogger("crmsync.google.addon")

PATH = "/addon/google"  # below the public URL: the endpoint of every trigger and action
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_SECONDS = 60
HEADERS = ("From", "To", "Cc", "Reply-To")
MOST_FILED = 10  # records a message is filed to at once (EML-5's MAX_RECORDS)
SCOPES = (
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/gmail.addons.execute",
    "https://www.googleapis.com/auth/gmail.addons.current.message.metadata",
    "https://www.googleapis.com/auth/gmail.addons.current.action.compose",
    "https://www.googleapis.com/auth/calendar.addons.execute",
    "https://www.googleapis.com/auth/calendar.addons.current.event.read",
)


@dataclass(frozen=True)
class AddonSetup:
    """What the add-on's requests are checked against: the deployment's service account
    and OAuth client, Google's certificates, and where Gmail's API answers."""

    account: str
    client_id: str
    certs_uri: str
    endpoints: Mapping[str, str]


class Unauthenticated(Exception):
    """The request is not Google's, or not for this add-on (401)."""


@dataclass(frozen=True)
class Event:
    """The parts of Google's event object crmsync uses."""

    subject: str  # the user's Google account (its stable id)
    email: str
    user_token: str  # the user's access token for the add-on's scopes
    message_id: str
    message_token: str
    parameters: Mapping[str, str]
    inputs: Mapping[str, list[str]]
    events: tuple[str, ...] = ()  # the open calendar event's id, then its series'
    attendees: tuple[tuple[str, str], ...] = ()  # (name, address) of the event's guests


def endpoint(public_url: str) -> str:
    return public_url.rstrip("/") + PATH


def deployment(public_url: str, name: str = "crmsync") -> dict[str, Any]:
    """The add-on's deployment resource (projects.deployments): its scopes, and the
    endpoint every trigger calls."""
    url = endpoint(public_url)
    logo = public_url.rstrip("/") + "/app/assets/crmsync-logo.png"
    return {
        "oauthScopes": list(SCOPES),
        "addOns": {
            "common": {
                "name": name,
                "logoUrl": logo,
                "homepageTrigger": {"runFunction": url},
                "openLinkUrlPrefixes": [public_url.rstrip("/") + "/", "https://"],
            },
            "gmail": {
                "contextualTriggers": [{"unconditional": {}, "onTriggerFunction": url}],
                "composeTrigger": {
                    "actions": [
                        {
                            "runFunction": f"{url}?do=compose",
                            "label": "CRM documents",
                            "logoUrl": logo,
                        }
                    ],
                    "draftAccess": "NONE",
                },
            },
            "calendar": {"eventOpenTrigger": {"runFunction": url}, "currentEventAccess": "READ"},
            "httpOptions": {"authorizationHeader": "SYSTEM_ID_TOKEN"},
        },
    }


# -- checking who asks -----------------------------------------------------------------------
def _verified(token: str, setup: AddonSetup, audience: str | None) -> dict[str, Any]:
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    try:
        claims = dict(
            id_token.verify_token(
                token,
                Request(),
                audience=audience,
                certs_url=setup.certs_uri,
                clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
            )
        )
    except (ValueError, GoogleAuthError) as exc:
        raise Unauthenticated(f"the token does not verify ({type(exc).__name__})") from exc
    if claims.get("iss") not in ISSUERS:
        raise Unauthenticated("the token is not Google's")
    return claims


def check_caller(headers: Mapping[str, str], setup: AddonSetup, url: str) -> None:
    """The request is Google's, for this endpoint, from the add-on's service account."""
    scheme, _, token = (headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("no bearer token")
    claims = _verified(token.strip(), setup, None)
    audience = str(claims.get("aud") or "").partition("?")[0]
    if audience != url:
        raise Unauthenticated("the token is for another endpoint")
    if claims.get("email") != setup.account or claims.get("email_verified") is not True:
        raise Unauthenticated("the token is not the add-on's service account's")


def read_event(body: bytes, setup: AddonSetup) -> Event:
    """The event object, with its user's ID token verified for the add-on's client."""
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise Unauthenticated("the body is not an event object") from exc
    if not isinstance(data, dict):
        raise Unauthenticated("the body is not an event object")
    auth = _object(data.get("authorizationEventObject"))
    user_id_token = str(auth.get("userIdToken") or "")
    if not user_id_token:
        raise Unauthenticated("the event names no user")
    claims = _verified(user_id_token, setup, setup.client_id)
    if not claims.get("sub"):
        raise Unauthenticated("the user's token names no account")
    common = _object(data.get("commonEventObject"))
    gmail = _object(data.get("gmail"))
    calendar = _object(data.get("calendar"))
    guests = [_object(a) for a in calendar.get("attendees") or [] if isinstance(a, dict)]
    parameters = {str(k): str(v) for k, v in _object(common.get("parameters")).items()}
    inputs: dict[str, list[str]] = {}
    for name, given in _object(common.get("formInputs")).items():
        values = _object(_object(given).get("stringInputs")).get("value")
        if isinstance(values, list):
            inputs[str(name)] = [str(v) for v in values]
    return Event(
        subject=str(claims["sub"]),
        email=str(claims.get("email") or ""),
        user_token=str(auth.get("userOAuthToken") or auth.get("userOauthToken") or ""),
        message_id=str(gmail.get("messageId") or parameters.get("message") or ""),
        message_token=str(gmail.get("accessToken") or ""),
        parameters=parameters,
        inputs=inputs,
        events=tuple(
            str(v)
            for v in (
                calendar.get("id") or parameters.get("event"),
                calendar.get("recurringEventId") or parameters.get("series"),
            )
            if v
        ),
        attendees=tuple(
            (str(a.get("displayName") or ""), str(a["email"]))
            for a in guests
            if a.get("email") and not a.get("resource")
        ),
    )


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# -- the open message ------------------------------------------------------------------------
def participants(event: Event, setup: AddonSetup) -> list[tuple[str, str]]:
    """(name, address) of each participant of the open message, from its headers, read
    with the event's own tokens."""
    from google.oauth2.credentials import Credentials

    from crmsync.providers.google.client import GoogleClient

    token = Credentials(event.user_token)  # type: ignore[no-untyped-call]
    client = GoogleClient(token, setup.endpoints, attempts=2)
    request = (
        client.service("gmail", "v1")
        .users()
        .messages()
        .get(userId="me", id=event.message_id, format="metadata", metadataHeaders=list(HEADERS))
    )
    request.headers["X-Goog-Gmail-Access-Token"] = event.message_token
    try:
        message = client.execute(request, "gmail messages.get (add-on)")
    except NotFound as exc:
        raise _Refusal(
            "This message is not in your mailbox any more", "Open another message."
        ) from exc
    except PermanentError as exc:  # Gmail refused the add-on's tokens for it
        raise _Refusal("Gmail did not let crmsync read this message", _REOPEN) from exc
    headers = (message.get("payload") or {}).get("headers") or []
    values = [str(h.get("value") or "") for h in headers if h.get("name") in HEADERS]
    return [(name, address) for name, address in getaddresses(values) if address]


# -- the request -----------------------------------------------------------------------------
def on_event(services: Any, setup: AddonSetup, request: PushRequest) -> PushAnswer:
    """One request of Gmail: checked, then answered with a card (or a 401)."""
    from crmsync.usecases import pane

    url = endpoint(services.public_url)
    try:
        check_caller(request.headers, setup, url)
        event = read_event(request.body, setup)
    except Unauthenticated as exc:
        log.warning("add-on request refused", extra={"reason": str(exc)})
        return PushAnswer(401, "not a request of crmsync's Gmail add-on")
    action = str(request.query.get("do") or "")
    who = pane.viewer(services, "google", event.subject)
    if isinstance(who, pane.Blocked):
        return _answer(blocked_card(who), action)
    try:
        done = _act(services, setup, url, who, event, action)
        if isinstance(done, Inserted):
            return _inserted(done)
        card, note = done
    except GrantRevoked:
        card, note = _problem("Gmail did not let crmsync read this message", _REOPEN), ""
    except SyncError as exc:
        log.warning("add-on action failed", extra={"error": type(exc).__name__})
        card, note = _problem(_failure(exc), "Try again in a minute."), ""
    except _Refusal as exc:
        card, note = _problem(exc.reason, exc.next_step), ""
        if exc.back is not None:
            action_back, given = exc.back
            back = {"buttonList": {"buttons": [_do("Back", url, action_back, **given)]}}
            card["sections"].append({"widgets": [back]})
    return _answer(card, action, note)


_REOPEN = "Open the message again; if it goes on, reload Gmail."


class _Refusal(Exception):
    """What the user asked cannot be done; `back` (an action and its parameters) is the
    card to go on from."""

    def __init__(
        self, reason: str, next_step: str, back: tuple[str, dict[str, str]] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason, self.next_step, self.back = reason, next_step, back


def _failure(exc: SyncError) -> str:
    from crmsync.usecases import pane

    return pane.failure(exc, "Gmail")


def _act(
    services: Any, setup: AddonSetup, url: str, who: Any, event: Event, action: str
) -> tuple[dict[str, Any], str] | Inserted:
    from crmsync import service
    from crmsync.usecases import pane

    if event.events:
        return _meeting_act(services, url, who, event, action)
    if action in ("compose", "docs_search", "docs_insert"):
        return _compose_act(services, url, who, event, action)
    if not event.message_id:
        return home_card(who, pane.sign_in_url(services, who.tenant)), ""
    try:
        if action == "":
            found = participants(event, setup)
            shown = pane.message_pane(services, who, found)
            return pane_card(shown, who, url, event.message_id), ""
        if action in ("file", "search"):
            text = (event.inputs.get("search") or [""])[0]
            people = pane.search(services, who, text) if action == "search" else []
            return file_card(who, url, event, people, text), ""
        if action == "file_to":
            chosen = list(dict.fromkeys(event.inputs.get("records") or []))[:MOST_FILED]
            if not chosen:
                back = ("file", {"message": event.message_id})
                raise _Refusal(
                    "No record was chosen", "Tick the records to file the message to.", back
                )
            names = {ref: _name_of(event, ref) for ref in chosen}
            pane.file_message(services, who, event.message_id, chosen, names)
            filed = len(chosen)
            note = f"Filed to {filed} record{'s' if filed > 1 else ''}: in the CRM within a minute"
            return filed_card(url, event.message_id, names), note
        if action == "new_person":
            address = event.parameters.get("address", "")
            given = pane.prefilled(address, event.parameters.get("name", ""))
            return person_form(who, url, event.message_id, address, given), ""
        if action in ("create_contact", "create_lead"):
            kind = action.removeprefix("create_")
            address = event.parameters.get("address", "")
            given = {n: (event.inputs.get(n) or [""])[0] for n in pane.PERSON_FIELDS}
            pane.create_person(services, who, kind, address, given, event.message_id)
            shown = pane.message_pane(services, who, participants(event, setup))
            return pane_card(shown, who, url, event.message_id), f"The {kind} is in the CRM"
    except service.Refused as exc:
        raise _Refusal(exc.reason, exc.next_step or "") from exc
    raise _Refusal("This button does nothing any more", _REOPEN)


def _meeting_act(
    services: Any, url: str, who: Any, event: Event, action: str
) -> tuple[dict[str, Any], str]:
    """The open calendar event: its CRM activity, and the pane's changes saved to it."""
    from crmsync import service
    from crmsync.errors import Conflict
    from crmsync.usecases import pane

    note = ""
    try:
        if action == "meeting_save":
            custom = {
                name.removeprefix("custom:"): (values or [""])[0]
                for name, values in event.inputs.items()
                if name.startswith("custom:")
            }
            try:
                pane.save_meeting(
                    services,
                    who,
                    event.parameters.get("activity", ""),
                    event.parameters.get("version", ""),
                    join=event.inputs.get("join") or [],
                    about=event.inputs.get("about") or [],
                    custom=custom,
                )
                note = "Saved to the CRM"
            except Conflict:
                note = "The activity changed in the CRM meanwhile: make your change again"
        elif action:
            raise _Refusal("This button does nothing any more", "Open the event again.")
        shown = pane.meeting(services, who, event.events, event.attendees)
    except service.Refused as exc:
        raise _Refusal(exc.reason, exc.next_step or "") from exc
    if isinstance(shown, pane.Blocked):
        return blocked_card(shown), note
    return meeting_card(shown, url, event), note


@dataclass(frozen=True)
class Inserted:
    """A link to put into the draft being written, where the cursor is."""

    url: str
    name: str


def _inserted(done: Inserted) -> PushAnswer:
    link = f'<a href="{_escaped(done.url)}">{_escaped(done.name)}</a>'
    body = {
        "renderActions": {
            "hostAppAction": {
                "gmailAction": {
                    "updateDraftActionMarkup": {
                        "updateBody": {
                            "insertContents": [{"content": link, "contentType": "MUTABLE_HTML"}],
                            "type": "IN_PLACE_INSERT",
                        }
                    }
                }
            }
        }
    }
    return PushAnswer(200, "", json.dumps(body))


def _compose_act(
    services: Any, url: str, who: Any, event: Event, action: str
) -> tuple[dict[str, Any], str] | Inserted:
    """While writing a message: find CRM documents and put one into the draft. Gmail's
    add-ons cannot attach a file to the open draft, so the document goes in as an
    address crmsync answers with the document, read from the CRM when it is opened."""
    from crmsync import service
    from crmsync.usecases import documents

    try:
        if action == "docs_insert":
            document = event.parameters.get("document", "")
            if not document:
                raise _Refusal("No document was chosen", "Find the document again.")
            link = documents.address(services, who.tenant, who.record.id, document)
            return Inserted(link, event.parameters.get("name") or document)
        text = (event.inputs.get("search") or [""])[0] if action == "docs_search" else ""
        found = documents.find(services, who, text) if text else []
        return documents_card(who, url, found, text), ""
    except service.Refused as exc:
        raise _Refusal(exc.reason, exc.next_step or "") from exc


def documents_card(who: Any, url: str, found: Sequence[Any], text: str) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = [
        {"textInput": {"name": "search", "label": "Find a CRM document", "value": text}},
        {"buttonList": {"buttons": [_do("Find", url, "docs_search")]}},
    ]
    if text and len(text.strip()) < 2:
        widgets.append(_text("Type at least 2 letters of the document's name."))
    elif text and not found:
        widgets.append(_text(f"No CRM document's name holds “{text}”."))
    results = []
    for document in found:
        size = f"{document.size / 1024:.0f} KB" if document.size >= 1024 else f"{document.size} B"
        insert = _do("Insert", url, "docs_insert", document=document.id, name=document.name)
        line = {
            "decoratedText": {
                "text": _escaped(document.name),
                "bottomLabel": size,
                "button": insert,
            }
        }
        results.append(line)
    sections: list[dict[str, Any]] = [{"widgets": widgets}]
    if results:
        sections.append({"header": "Put into the message", "widgets": results})
    return _card("CRM documents", who.record.account, sections)


def _name_of(event: Event, ref: str) -> str:
    return event.parameters.get(f"name:{ref}", "")[:200]


def _answer(card: dict[str, Any], action: str, note: str = "") -> PushAnswer:
    """A trigger's card is pushed; an action's replaces the card it was clicked on."""
    if not action:
        body: dict[str, Any] = {"action": {"navigations": [{"pushCard": card}]}}
    else:
        done: dict[str, Any] = {"navigations": [{"updateCard": card}]}
        if note:
            done["notification"] = {"text": note}
        body = {"renderActions": {"action": done}}
    return PushAnswer(200, "", json.dumps(body))


# -- cards (Card v1 JSON) --------------------------------------------------------------------
def _card(title: str, subtitle: str, sections: Sequence[dict[str, Any]]) -> dict[str, Any]:
    header = {"title": title, "subtitle": subtitle} if subtitle else {"title": title}
    return {"header": header, "sections": [s for s in sections if s.get("widgets")]}


def _text(text: str) -> dict[str, Any]:
    return {"textParagraph": {"text": _escaped(text)}}


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _open(label: str, url: str) -> dict[str, Any]:
    return {"text": label, "onClick": {"openLink": {"url": url}}}


def _do(label: str, url: str, action: str, **parameters: str) -> dict[str, Any]:
    listed = [{"key": k, "value": v} for k, v in parameters.items()]
    return {
        "text": label,
        "onClick": {"action": {"function": f"{url}?do={action}", "parameters": listed}},
    }


def _line(top: str, text: str, bottom: str = "", link: str = "") -> dict[str, Any]:
    shown: dict[str, Any] = {"topLabel": _escaped(top), "text": _escaped(text) or "—"}
    if bottom:
        shown["bottomLabel"] = _escaped(bottom)
    if link:
        shown["button"] = _open("Open", link)
    return {"decoratedText": shown}


def blocked_card(blocked: Any) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = [_text(blocked.next_step)]
    if blocked.link:
        widgets.append({"buttonList": {"buttons": [_open(blocked.label, blocked.link)]}})
    return _card("crmsync", blocked.reason, [{"widgets": widgets}])


def _problem(reason: str, next_step: str) -> dict[str, Any]:
    return _card("crmsync", reason, [{"widgets": [_text(next_step or _REOPEN)]}])


def home_card(who: Any, link: str) -> dict[str, Any]:
    account = who.record.account or "your Google account"
    return _card(
        "crmsync",
        f"Connected as {account}",
        [
            {
                "widgets": [
                    _text(
                        "Open a message to see the CRM's contacts, accounts and open "
                        "opportunities behind its participants, and to file it to the CRM."
                    ),
                    {"buttonList": {"buttons": [_open("Open crmsync", link)]}},
                ]
            }
        ],
    )


def pane_card(shown: Any, who: Any, url: str, message: str) -> dict[str, Any]:
    sections: list[dict[str, Any]] = []
    if shown.failed or shown.late:
        why = (
            "The CRM did not answer in time for some participants"
            if shown.late and not shown.failed
            else "The CRM could not be reached for some participants"
        )
        sections.append({"widgets": [_text(f"{why}. Open the message again in a minute.")]})
    for beside in shown.people:
        sections.append(_person_section(beside, url, message))
    for address in shown.late:
        sections.append(
            {"header": _escaped(address), "widgets": [_text("Still waiting for the CRM.")]}
        )
    if not shown.people and not shown.late:
        sections.append({"widgets": [_text("No one but you takes part in this message.")]})
    if shown.left_out:
        sections.append({"widgets": [_text(f"{shown.left_out} more participants are not shown.")]})
    if who.files_mail:
        buttons = [_do("File to CRM", url, "file", message=message)]
    else:
        buttons = []
        sections.append(
            {
                "widgets": [
                    _text(
                        "To file messages to the CRM, add mail to your connection on "
                        "your crmsync page."
                    )
                ]
            }
        )
    if buttons:
        sections.append({"widgets": [{"buttonList": {"buttons": buttons}}]})
    return _card("CRM", who.record.account, sections)


def _person_section(beside: Any, url: str, message: str) -> dict[str, Any]:
    card = beside.card
    header = _escaped(beside.name or beside.address)
    if beside.failed:
        return {
            "header": header,
            "widgets": [_text(f"The CRM could not be asked about {beside.address}.")],
        }
    if card is None:
        known = {"message": message, "address": beside.address, "name": beside.name}
        return {
            "header": header,
            "widgets": [
                _text(f"{beside.address} is not in the CRM."),
                {
                    "buttonList": {
                        "buttons": [
                            _do("Add to the CRM", url, "new_person", **known),
                        ]
                    }
                },
            ],
        }
    person = card.person
    widgets = [_line(person.kind.capitalize(), person.name or beside.address, card.title, card.url)]
    if card.account is not None:
        widgets.append(_line("Account", card.account.name, "", card.account.url))
    for deal in card.opportunities:
        widgets.append(_line("Open opportunity", deal.name, deal.detail, deal.url))
    for item in card.history:
        day = f"{item.date:%-d %b %Y}" if item.date is not None else ""
        widgets.append(_line(f"History {day}".strip(), item.subject or "(no subject)"))
    for name, value in card.fields:
        widgets.append(_line(name, value))
    if beside.more:
        widgets.append(_text(f"{beside.more} more CRM records hold {beside.address}."))
    return {
        "header": header,
        "collapsible": len(widgets) > 4,
        "uncollapsibleWidgetsCount": 2,
        "widgets": widgets,
    }


def file_card(who: Any, url: str, event: Event, found: Sequence[Any], text: str) -> dict[str, Any]:
    """Choose the records to file the open message to: the people of the message the
    CRM knows, or those a search found."""
    items: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for person in found:
        ref = f"{person.kind}/{person.id}"
        names[f"name:{ref}"] = person.name
        label = f"{person.name or ', '.join(person.emails)} ({person.kind})"
        items.append({"text": label, "value": ref, "selected": False})
    search = {"textInput": {"name": "search", "label": "Find a contact or lead", "value": text}}
    widgets: list[dict[str, Any]] = [
        search,
        {"buttonList": {"buttons": [_do("Find", url, "search", message=event.message_id)]}},
    ]
    if items:
        widgets.append(
            {
                "selectionInput": {
                    "name": "records",
                    "label": "File to",
                    "type": "CHECK_BOX",
                    "items": items,
                }
            }
        )
        file_button = _do("File", url, "file_to", message=event.message_id, **names)
        widgets.append({"buttonList": {"buttons": [file_button]}})
    elif text and len(text.strip()) < 2:
        widgets.append(_text("Type at least 2 letters of a name or an address."))
    elif text:
        widgets.append(_text(f"No contact or lead holds “{text}”."))
    return _card("File to CRM", who.record.account, [{"widgets": widgets}])


def filed_card(url: str, message: str, names: Mapping[str, str]) -> dict[str, Any]:
    listed = ", ".join(name or ref for ref, name in names.items())
    return _card(
        "File to CRM",
        "Filed",
        [
            {
                "widgets": [
                    _text(
                        f"This message is being filed to {listed}. It shows in the CRM's "
                        "history within a minute, once, with its attachments."
                    ),
                    {
                        "buttonList": {
                            "buttons": [_do("File elsewhere too", url, "file", message=message)]
                        }
                    },
                ]
            }
        ],
    )


def meeting_card(shown: Any, url: str, event: Event) -> dict[str, Any]:
    """The CRM activity of the open event: who takes part, what it is about, its custom
    fields; and what the user may add, saved to the CRM with one button."""
    about = [_line(r.kind.capitalize(), r.name, r.detail) for r in shown.regarding]
    people = [_line("Leader", shown.leader)] if shown.leader else []
    people += [_line("Participant", name) for name in shown.members]
    sections: list[dict[str, Any]] = [
        {"header": "In the CRM", "widgets": people or [_text("No CRM user takes part yet.")]},
        {"header": "About", "widgets": about or [_text("It is about no record yet.")]},
    ]
    adding: list[dict[str, Any]] = []
    if shown.joinable:
        items = [{"text": name, "value": user} for user, name in shown.joinable]
        adding.append(
            {
                "selectionInput": {
                    "name": "join",
                    "label": "Add colleagues",
                    "type": "CHECK_BOX",
                    "items": items,
                }
            }
        )
    if shown.offered:
        items = [
            {
                "text": f"{r.name} ({r.kind}{', ' + r.detail if r.detail else ''})",
                "value": f"{r.kind}/{r.id}",
            }
            for r in shown.offered
        ]
        adding.append(
            {
                "selectionInput": {
                    "name": "about",
                    "label": "Relate it to",
                    "type": "CHECK_BOX",
                    "items": items,
                }
            }
        )
    for name, kind, value in shown.custom:
        label = name + (" (yes or no)" if kind == "boolean" else "")
        adding.append({"textInput": {"name": f"custom:{name}", "label": label, "value": value}})
    if adding:
        parameters = {"activity": shown.activity, "version": shown.version}
        parameters.update(zip(("event", "series"), event.events, strict=False))
        save = _do("Save to CRM", url, "meeting_save", **parameters)
        adding.append({"buttonList": {"buttons": [save]}})
        sections.append({"header": "Change it", "widgets": adding})
    return _card(shown.subject or "(no subject)", "The CRM activity of this event", sections)


_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "company": "Company",
    "title": "Title",
}


def person_form(
    who: Any, url: str, message: str, address: str, given: Mapping[str, str]
) -> dict[str, Any]:
    """A new contact or lead for a participant, prefilled from the message, to correct
    before it is made."""
    widgets: list[dict[str, Any]] = [_line("Address", address)]
    widgets += [
        {"textInput": {"name": name, "label": label, "value": given.get(name, "")}}
        for name, label in _LABELS.items()
    ]
    known = {"message": message, "address": address}
    buttons = [
        _do("Create contact", url, "create_contact", **known),
        _do("Create lead", url, "create_lead", **known),
    ]
    widgets.append({"buttonList": {"buttons": buttons}})
    return _card("Add to the CRM", who.record.account, [{"widgets": widgets}])
