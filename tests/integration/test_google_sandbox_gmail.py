"""The Google sandbox's Gmail v1 profile over a real socket, driven by the real
google-api-python-client built from the discovery document it ships with (every answer
held to the method's schema), and crmsync's `mailbox_address` reading it through
GoogleClient, as the OAuth callback does when the user granted the "mail" service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from crmsync.errors import PermissionDenied
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.gmail_push import mailbox_address
from crmsync.providers.google.oauth import SERVICES
from sandbox.google.core import CALENDAR_SCOPES, SCOPE, GoogleSandbox
from sandbox.google.gmail import mailbox_of
from sandbox.google.server import serve
from tests.integration.test_google_sandbox_calendar import Discovery, failure
from tests.integration.test_google_sandbox_calendar import run as run_with

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
GMAIL = Discovery("gmail.v1.json")
run = partial(run_with, discovery=GMAIL)
MODIFY = frozenset({SCOPE + "gmail.modify"})


@dataclass
class Google:
    sandbox: GoogleSandbox
    url: str

    def token(self, email: str, scopes: frozenset[str]) -> str:
        return self.sandbox.issue_token(email, scopes)

    def gmail(self, email: str = ANN, scopes: frozenset[str] = MODIFY) -> Any:
        """The real Gmail client, authorised as `email` with `scopes`."""
        return build(
            "gmail",
            "v1",
            credentials=Credentials(self.token(email, scopes)),
            client_options={"api_endpoint": self.url},
            static_discovery=True,
            cache_discovery=False,
        )

    def client(self, email: str = ANN, scopes: frozenset[str] = MODIFY) -> GoogleClient:
        """crmsync's client of the account, with Gmail at the sandbox (one attempt)."""
        return GoogleClient(Credentials(self.token(email, scopes)), {"gmail": self.url}, attempts=1)


@pytest.fixture
def google() -> Iterator[Google]:
    sandbox = GoogleSandbox()
    url, stop = serve(sandbox, modules=("gmail",))
    yield Google(sandbox, url)
    stop()


def discovery_scopes(method: str) -> frozenset[str]:
    users = GMAIL.document["resources"]["users"]["methods"]
    return frozenset(users[method]["scopes"])


# -- users.getProfile --------------------------------------------------------------------------
def test_gmail_profile_names_the_mailbox_with_its_counts_and_history_id(google: Google) -> None:
    mailbox = mailbox_of(google.sandbox.add_account(ANN))
    mailbox.messages_total, mailbox.threads_total, mailbox.history_id = 12, 7, 98765

    profile = run(google.gmail().users().getProfile(userId="me"))

    assert profile == {
        "emailAddress": ANN,
        "messagesTotal": 12,
        "threadsTotal": 7,
        "historyId": "98765",
    }


def test_gmail_profile_answers_to_the_accounts_own_address_as_to_me(google: Google) -> None:
    profile = run(google.gmail().users().getProfile(userId="Ann@Example.com"))

    assert profile["emailAddress"] == ANN


def test_gmail_profile_of_another_account_is_refused(google: Google) -> None:
    google.sandbox.add_account("bob@example.com")

    request = google.gmail().users().getProfile(userId="bob@example.com")

    assert failure(request) == (403, "forbidden")


@pytest.mark.parametrize("scope", sorted(discovery_scopes("getProfile")))
def test_gmail_profile_is_read_with_every_scope_the_discovery_document_lists(
    google: Google, scope: str
) -> None:
    profile = run(google.gmail(scopes=frozenset({scope})).users().getProfile(userId="me"))

    assert profile["emailAddress"] == ANN


@pytest.mark.parametrize(
    "scopes",
    [CALENDAR_SCOPES, frozenset({SCOPE + "gmail.labels"}), frozenset({SCOPE + "gmail.send"})],
    ids=["calendar", "gmail.labels", "gmail.send"],
)
def test_gmail_profile_without_a_profile_scope_is_refused_in_googles_error_shape(
    google: Google, scopes: frozenset[str]
) -> None:
    request = google.gmail(scopes=scopes).users().getProfile(userId="me")

    assert failure(request) == (403, "insufficientPermissions")


# -- crmsync: the address Gmail's notifications will name -------------------------------------
def test_RUN3_the_mail_service_grant_reads_the_mailbox_address(google: Google) -> None:
    granted = frozenset(SERVICES["mail"])

    assert mailbox_address(google.client("Ann.Lee@example.com", granted)) == "Ann.Lee@example.com"


def test_RUN3_without_a_gmail_grant_the_mailbox_address_is_a_permission_error(
    google: Google,
) -> None:
    with pytest.raises(PermissionDenied):
        mailbox_address(google.client(scopes=CALENDAR_SCOPES))
