"""Google Workspace add-ons on the HTTP runtime, as Google runs them (CTX-1): the event
object Google POSTs to an add-on's endpoint when a user opens a message, with the ID
tokens that prove it came from Google, signed by the sandbox's own token issuer (the
certificates at oauth2/v1/certs, as for sign-in).

A request Google sends carries:
  * `Authorization: Bearer <ID token>` of the deployment's service account
    (`SERVICE_ACCOUNT`), its audience the endpoint's URL;
  * `authorizationEventObject.userIdToken`, the user's ID token, its audience the
    add-on's OAuth client (`CLIENT_ID`); `userOAuthToken`, an access token with the
    add-on's scopes; `systemIdToken`, the service account's token again;
  * `gmail.messageId` and `gmail.accessToken`: a token for that one message, which
    Gmail's messages.get asks for (`X-Goog-Gmail-Access-Token`) from a token whose
    only mail scopes are the add-on's current-message ones.

`post` sends such an event to an endpoint, as Gmail does when the user opens the
message or clicks a button of a card; the answer is the card JSON the endpoint gave.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox.google.core import SCOPE, ApiError, GoogleSandbox
from sandbox.google.gmail import ADDON_METADATA
from sandbox.google.oauth import ISSUER, id_token, sign

SERVICE_ACCOUNT = "service-100200300400@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"
CLIENT_ID = "100200300400-addon.apps.googleusercontent.com"
EXECUTE = SCOPE + "gmail.addons.execute"
CURRENT_METADATA = ADDON_METADATA  # the open message's headers
COMPOSE = SCOPE + "gmail.addons.current.action.compose"
CALENDAR_EXECUTE = SCOPE + "calendar.addons.execute"
CURRENT_EVENT = SCOPE + "calendar.addons.current.event.read"
SCOPES = (
    SCOPE + "userinfo.email",
    EXECUTE,
    CURRENT_METADATA,
    COMPOSE,
    CALENDAR_EXECUTE,
    CURRENT_EVENT,
)
TOKEN_SECONDS = 300


@dataclass
class AddonState:
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)  # token → (email, id)


_STATES: weakref.WeakKeyDictionary[GoogleSandbox, AddonState] = weakref.WeakKeyDictionary()


def state_of(sandbox: GoogleSandbox) -> AddonState:
    with sandbox.lock:
        return _STATES.setdefault(sandbox, AddonState())


def _clicked(
    common: dict[str, Any],
    parameters: Mapping[str, str] | None,
    inputs: Mapping[str, list[str]] | None,
) -> None:
    """A click of a card's button: the action's parameters and the card's inputs."""
    if parameters:
        common["parameters"] = dict(parameters)
    if inputs:
        common["formInputs"] = {
            name: {"stringInputs": {"value": list(values)}} for name, values in inputs.items()
        }


def system_token(sandbox: GoogleSandbox, audience: str, email: str = SERVICE_ACCOUNT) -> str:
    """The ID token of the deployment's service account for `audience` (the endpoint)."""
    now = int(sandbox.clock().timestamp())
    claims = {
        "iss": ISSUER,
        "aud": audience,
        "azp": "100200300400",
        "sub": "100200300400",
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + TOKEN_SECONDS,
    }
    return sign(sandbox, claims)


def message_token(sandbox: GoogleSandbox, email: str, message_id: str) -> str:
    """Gmail's token for one open message of `email`'s mailbox."""
    token = "gmat." + secrets.token_urlsafe(18)
    state_of(sandbox).messages[token] = (email.lower(), message_id)
    return token


def opens(sandbox: GoogleSandbox, token: str, email: str, message_id: str) -> bool:
    """Whether `token` is Gmail's token for that message of that mailbox."""
    return state_of(sandbox).messages.get(token) == (email.lower(), message_id)


def message_event(
    sandbox: GoogleSandbox,
    endpoint: str,
    email: str,
    message_id: str,
    *,
    parameters: Mapping[str, str] | None = None,
    inputs: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The event Gmail posts when `email` opens the message (or clicks an action of the
    card shown beside it, with its `parameters` and the form's `inputs`)."""
    event = homepage_event(sandbox, endpoint, email)
    _clicked(event["commonEventObject"], parameters, inputs)
    return {
        **event,
        "gmail": {
            "messageId": message_id,
            "threadId": sandbox_thread(sandbox, email, message_id),
            "accessToken": message_token(sandbox, email, message_id),
        },
    }


def calendar_event(
    sandbox: GoogleSandbox,
    endpoint: str,
    email: str,
    event_id: str,
    *,
    calendar_id: str = "primary",
    parameters: Mapping[str, str] | None = None,
    inputs: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The event Google Calendar posts when `email` opens the event `event_id` (an
    occurrence's id names its series in `recurringEventId`), with its organizer and
    attendees as the event holds them (`currentEventAccess: READ`)."""
    from sandbox.google.calendar import calendar_events

    series, _, _ = event_id.rpartition("_")
    stored = {e["id"]: e for e in calendar_events(sandbox, email, calendar_id)}
    found = stored.get(event_id) or stored.get(series) or {}
    shown: dict[str, Any] = {"id": event_id, "calendarId": calendar_id}
    if event_id not in stored and series in stored:
        shown["recurringEventId"] = series
    if found.get("organizer"):
        shown["organizer"] = {"email": found["organizer"].get("email", "")}
    shown["attendees"] = [
        {k: a[k] for k in ("email", "displayName", "self", "organizer", "responseStatus") if k in a}
        for a in found.get("attendees") or []
    ]
    shown["capabilities"] = {"canSeeAttendees": True, "canAddAttendees": True}
    event = homepage_event(sandbox, endpoint, email, host="CALENDAR")
    common = event["commonEventObject"]
    _clicked(common, parameters, inputs)
    return {**event, "calendar": shown}


def compose_event(
    sandbox: GoogleSandbox,
    endpoint: str,
    email: str,
    *,
    parameters: Mapping[str, str] | None = None,
    inputs: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The event Gmail posts when `email`, writing a message, picks the add-on's compose
    action (or clicks a button of its card); `draftAccess: NONE`: nothing of the draft."""
    event = homepage_event(sandbox, endpoint, email)
    common = event["commonEventObject"]
    _clicked(common, parameters, inputs)
    return {**event, "gmail": {}}


def homepage_event(
    sandbox: GoogleSandbox, endpoint: str, email: str, host: str = "GMAIL"
) -> dict[str, Any]:
    """The event of the add-on's homepage in `host` (nothing open)."""
    account = sandbox.add_account(email)
    return {
        "commonEventObject": {"hostApp": host, "platform": "WEB"},
        "authorizationEventObject": {
            "userOAuthToken": sandbox.issue_token(email, SCOPES, client_id=CLIENT_ID),
            "userIdToken": id_token(sandbox, account, CLIENT_ID),
            "systemIdToken": system_token(sandbox, endpoint),
        },
    }


def sandbox_thread(sandbox: GoogleSandbox, email: str, message_id: str) -> str:
    """The thread of the message ("" for one the mailbox does not hold)."""
    from sandbox.google.gmail_mailbox import mailbox_of

    try:
        return mailbox_of(sandbox.add_account(email)).message(message_id).thread_id
    except ApiError:
        return ""


def post(
    sandbox: GoogleSandbox,
    endpoint: str,
    event: Mapping[str, Any],
    *,
    token: str | None = None,
    timeout: float = 30,
) -> requests.Response:
    """POST the event to the endpoint as Google does: the service account's ID token for
    the endpoint (or `token`) as the bearer."""
    bearer = token if token is not None else system_token(sandbox, endpoint.partition("?")[0])
    return requests.post(
        endpoint,
        json=dict(event),
        headers={"Authorization": f"Bearer {bearer}", "User-Agent": "Google-Workspace-Add-ons"},
        timeout=timeout,
    )
