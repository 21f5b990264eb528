"""Gmail v1 in the Google sandbox: the mailbox profile (`users.getProfile`), which names
the address Gmail's push notifications for the mailbox carry.

Each account's mailbox lives in `account.data["gmail"]` (a `Mailbox`). As in Google:
`userId` is `me` or the account's own address (any other is a 403, delegation being
denied); any Gmail scope that the discovery document lists for the method reaches the
profile, and other scopes, `gmail.labels` among them, are a 403; 64-bit numbers such as
`historyId` travel as strings.

Tests set what no API call here changes (message counts, the history id) through
`mailbox_of`.
"""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.wrappers import Request, Response

from sandbox.google.core import SCOPE, Account, ApiError, GoogleSandbox, Route, json_response, route

# users.getProfile's scopes as the discovery document lists them.
PROFILE_SCOPES = frozenset(
    {
        "https://mail.google.com/",
        SCOPE + "gmail.compose",
        SCOPE + "gmail.metadata",
        SCOPE + "gmail.modify",
        SCOPE + "gmail.readonly",
    }
)


@dataclass
class Mailbox:
    """What the profile tells of one account's mailbox."""

    history_id: int = 1
    messages_total: int = 0
    threads_total: int = 0


def mailbox_of(account: Account) -> Mailbox:
    """The account's mailbox, made empty on first use."""
    mailbox = account.data.setdefault("gmail", Mailbox())
    assert isinstance(mailbox, Mailbox)
    return mailbox


def _own(account: Account, user_id: str) -> None:
    """`userId` names the authenticated account, or Google refuses to act for another."""
    if user_id != "me" and user_id.lower() != account.email.lower():
        raise ApiError(403, "forbidden", f"Delegation denied for {user_id}")


def get_profile(request: Request, account: Account, user_id: str) -> Response:
    _own(account, user_id)
    mailbox = mailbox_of(account)
    return json_response(
        {
            "emailAddress": account.email,
            "messagesTotal": mailbox.messages_total,
            "threadsTotal": mailbox.threads_total,
            "historyId": str(mailbox.history_id),
        }
    )


def routes(sandbox: GoogleSandbox) -> list[Route]:
    """Gmail v1 below the API root (`api_endpoint` is the sandbox's base URL), as the
    discovery document lays it out."""
    return [route("GET", "gmail/v1/users/{user_id}/profile", get_profile, PROFILE_SCOPES)]
