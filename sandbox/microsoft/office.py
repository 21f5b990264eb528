"""Outlook's side of crmsync's task pane, for running the pane outside Outlook: the
Office SSO token Outlook hands an add-in (`sso_token`, signed by the sandbox's identity
platform as Microsoft's v2.0 endpoint signs one), and the open item as Office.js shows
it (`message_item`, `event_item`, `draft_item`) from Graph's JSON of it. `office_stub.js`
beside this module plays Office.js with them (`stub_config`, `fragment`).

Outlook's item ids are EWS ids; Graph's are the same id with `/` and `+` written `-`
and `_` (`convertToRestId`). The items carry the EWS form, so a pane that skips the
conversion sends ids Graph does not know."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.identity import _signing_key, issuer, state_of

STUB = Path(__file__).with_name("office_stub.js")
OFFICE_CLIENT = "ea5a67f6-b6f3-4338-b240-c655ddc3cc8e"  # Office's own app, the token's azp
SCOPE = "access_as_user"


def stub_script() -> str:
    return STUB.read_text()


def sso_token(
    sandbox: MicrosoftSandbox,
    email: str,
    client_id: str,
    *,
    seconds: int = 3600,
    scope: str = SCOPE,
    audience: str | None = None,
    key: Any = None,
) -> str:
    """The access token `Office.auth.getAccessToken` gives the pane of `email`: for the
    add-in's app registration `client_id` (its audience), scope `access_as_user`.
    `audience`, `scope`, `seconds` < 0 and another `key` make the tokens crmsync must
    refuse."""
    import jwt

    user = sandbox.users[email]
    now = int(sandbox.clock().timestamp())
    pairwise = hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest()
    claims = {
        "aud": audience if audience is not None else client_id,
        "iss": issuer(sandbox),
        "iat": now,
        "nbf": now,
        "exp": now + seconds,
        "azp": OFFICE_CLIENT,
        "name": user.display_name,
        "oid": user.oid,
        "preferred_username": user.email,
        "scp": scope,
        "sub": base64.urlsafe_b64encode(pairwise).decode().rstrip("="),
        "tid": sandbox.tenant_id,
        "ver": "2.0",
    }
    headers = {"kid": state_of(sandbox).key_id}
    return jwt.encode(claims, key or _signing_key(sandbox), algorithm="RS256", headers=headers)


def ews_id(graph_id: str) -> str:
    """The id Outlook's item has for Graph's `graph_id`."""
    return graph_id.replace("-", "/").replace("_", "+")


def _address(value: Any) -> dict[str, str]:
    found = (value or {}).get("emailAddress") or {}
    return {"displayName": found.get("name") or "", "emailAddress": found.get("address") or ""}


def message_item(message: dict[str, Any]) -> dict[str, Any]:
    """A received message, open in the reading pane (Graph's JSON of it)."""
    return {
        "itemType": "message",
        "mode": "read",
        "itemId": ews_id(message["id"]),
        "subject": message.get("subject") or "",
        "internetMessageId": message.get("internetMessageId") or "",
        "from": _address(message.get("from")),
        "to": [_address(r) for r in message.get("toRecipients") or []],
        "cc": [_address(r) for r in message.get("ccRecipients") or []],
    }


def event_item(event: dict[str, Any], *, organizer: bool = False) -> dict[str, Any]:
    """A meeting open as an attendee sees it, or (`organizer`) in its organiser's form."""
    attendees = event.get("attendees") or []

    def of(kind: str) -> list[dict[str, str]]:
        return [_address(a) for a in attendees if a.get("type") == kind]

    item = {
        "itemType": "appointment",
        "mode": "compose" if organizer else "read",
        "itemId": ews_id(event["id"]),
        "subject": event.get("subject") or "",
        "organizer": _address(event.get("organizer")),
        "requiredAttendees": of("required"),
        "optionalAttendees": of("optional"),
    }
    if event.get("seriesMasterId"):
        item["seriesId"] = ews_id(event["seriesMasterId"])
    return item


def draft_item(subject: str = "", to: tuple[str, ...] = ()) -> dict[str, Any]:
    """A new message being written."""
    return {
        "itemType": "message",
        "mode": "compose",
        "subject": subject,
        "to": [{"displayName": "", "emailAddress": address} for address in to],
    }


def stub_config(token: str, item: dict[str, Any] | None) -> dict[str, Any]:
    return {"token": token, "item": item}


def fragment(config: dict[str, Any]) -> str:
    """The page address's `#office=…` that hands `config` to office_stub.js."""
    packed = base64.urlsafe_b64encode(json.dumps(config).encode()).decode().rstrip("=")
    return f"#office={packed}"
