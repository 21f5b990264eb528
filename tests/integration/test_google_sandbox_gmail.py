"""The Google sandbox's Gmail v1 over a real socket, driven by the real
google-api-python-client built from the discovery document it ships with (every answer
held to the method's schema, every refusal to Google's error format): the profile,
labels, messages in each format with their attachments, label changes, the history
feed, and watches publishing to Google's Pub/Sub emulator through the real Pub/Sub
client. Also crmsync's `mailbox_address` reading the profile through GoogleClient, as
the OAuth callback does when the user granted the "mail" service."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from functools import partial
from typing import Any

import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from crmsync.errors import PermissionDenied
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.gmail_push import mailbox_address
from crmsync.providers.google.oauth import SERVICES
from sandbox.google import addons
from sandbox.google.core import CALENDAR_SCOPES, SCOPE, GoogleSandbox
from sandbox.google.gmail import (
    EmulatorPubSub,
    MemoryPubSub,
    add_label,
    change_labels,
    connect_pubsub,
    delete_message,
    deliver,
    expire_history,
    message_labels,
    notifications_published,
    published,
    watch_of,
)
from sandbox.google.server import serve
from sandbox.local.emulators import Emulator
from tests.integration.test_google_sandbox_calendar import Clock, Discovery, failure
from tests.integration.test_google_sandbox_calendar import run as run_with

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
BOB = "bob@partner.example"
GMAIL = Discovery("gmail.v1.json")
run = partial(run_with, discovery=GMAIL)
MODIFY = frozenset({SCOPE + "gmail.modify"})
LABELS = frozenset({SCOPE + "gmail.labels"})
READONLY = frozenset({SCOPE + "gmail.readonly"})
METADATA = frozenset({SCOPE + "gmail.metadata"})
SYSTEM = ("INBOX", "SENT", "UNREAD", "STARRED", "IMPORTANT", "TRASH", "SPAM", "DRAFT")
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the Clock's start
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8  # binary, 2 KiB and a little


_message_ids = itertools.count(1)


def mail(
    subject: str = "Quote for the autumn order",
    *,
    sender: str = BOB,
    to: str = ANN,
    text: str = "Dear Ann,\nplease find our quote attached.\nBob",
    message_id: str | None = None,
    in_reply_to: str | None = None,
) -> bytes:
    """A plain text message as it travels (RFC 5322 bytes)."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = "Mon, 02 Nov 2026 08:55:00 +0000"
    message["Message-ID"] = message_id or f"<{next(_message_ids)}@partner.example>"
    if in_reply_to:
        message["In-Reply-To"] = message["References"] = in_reply_to
    message.set_content(text)
    return bytes(message)


def rich_mail() -> bytes:
    """A message with a text and an HTML version and a PDF attached, its subject and
    sender name outside ASCII."""
    message = EmailMessage()
    message["From"] = "Jürgen Groß <juergen@partner.example>"
    message["To"] = ANN
    message["Subject"] = "Angebot für Größe 42 – bitte prüfen"
    message["Message-ID"] = "<angebot-42@partner.example>"
    message.set_content("Grüße aus Köln,\nanbei das Angebot.")
    message.add_alternative("<p>Grüße aus <b>Köln</b>, anbei das Angebot.</p>", subtype="html")
    message.add_attachment(PDF, maintype="application", subtype="pdf", filename="angebot.pdf")
    return bytes(message)


def decoded(data: str) -> bytes:
    return base64.urlsafe_b64decode(data)


@dataclass
class Google:
    sandbox: GoogleSandbox
    url: str
    clock: Clock

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

    def deliver(self, raw: bytes | None = None, labels: tuple[str, ...] = ("INBOX",)) -> str:
        self.clock.advance(minutes=1)  # each message a minute after the one before
        return deliver(self.sandbox, ANN, raw or mail(f"message {self.clock.now}"), labels)

    def history_id(self) -> int:
        return int(run(self.gmail().users().getProfile(userId="me"))["historyId"])


@pytest.fixture
def google() -> Iterator[Google]:
    clock = Clock()
    sandbox = GoogleSandbox(clock)
    url, stop = serve(sandbox, modules=("gmail",))
    yield Google(sandbox, url, clock)
    stop()
    notifications_published(sandbox)


def discovery_scopes(method_id: str) -> frozenset[str]:
    """The scopes the discovery document lists for `gmail.users.…` method."""
    found: dict[str, Any] = GMAIL.document["resources"]["users"]
    *resources, method = method_id.split(".")
    for name in resources:
        found = found["resources"][name]
    return frozenset(found["methods"][method]["scopes"])


def every_gmail_scope() -> frozenset[str]:
    found: set[str] = set()

    def walk(resource: dict[str, Any]) -> None:
        for method in resource.get("methods", {}).values():
            found.update(method.get("scopes", ()))
        for inner in resource.get("resources", {}).values():
            walk(inner)

    walk(GMAIL.document["resources"]["users"])
    return frozenset(found)


# -- users.getProfile --------------------------------------------------------------------------
def test_BEY5_gmail_profile_counts_the_mailboxs_messages_and_threads(google: Google) -> None:
    first = google.deliver(mail("Quote", message_id="<quote@partner.example>"))
    google.deliver(mail("Re: Quote", in_reply_to="<quote@partner.example>"))
    google.deliver(mail("Something else"))

    profile = run(google.gmail().users().getProfile(userId="me"))

    assert profile["emailAddress"] == ANN
    assert (profile["messagesTotal"], profile["threadsTotal"]) == (3, 2)
    assert int(profile["historyId"]) >= int(message_of(google, first)["historyId"])


def test_BEY5_gmail_profile_answers_to_the_accounts_own_address_as_to_me(google: Google) -> None:
    profile = run(google.gmail().users().getProfile(userId="Ann@Example.com"))

    assert profile["emailAddress"] == ANN


def test_BEY5_gmail_profile_of_another_account_is_refused(google: Google) -> None:
    google.sandbox.add_account("bob@example.com")

    request = google.gmail().users().getProfile(userId="bob@example.com")

    assert failure(request) == (403, "forbidden")


@pytest.mark.parametrize("scope", sorted(discovery_scopes("getProfile")))
def test_BEY5_gmail_profile_is_read_with_every_scope_the_discovery_document_lists(
    google: Google, scope: str
) -> None:
    profile = run(google.gmail(scopes=frozenset({scope})).users().getProfile(userId="me"))

    assert profile["emailAddress"] == ANN


@pytest.mark.parametrize(
    "scopes",
    [CALENDAR_SCOPES, LABELS, frozenset({SCOPE + "gmail.send"})],
    ids=["calendar", "gmail.labels", "gmail.send"],
)
def test_BEY5_gmail_profile_without_a_profile_scope_is_refused_in_googles_error_shape(
    google: Google, scopes: frozenset[str]
) -> None:
    request = google.gmail(scopes=scopes).users().getProfile(userId="me")

    assert failure(request) == (403, "insufficientPermissions")


# -- labels --------------------------------------------------------------------------------------
def test_EML1_the_system_labels_are_listed_as_system_labels(google: Google) -> None:
    listed = run(google.gmail(scopes=LABELS).users().labels().list(userId="me"))["labels"]

    by_id = {label["id"]: label for label in listed}
    for name in SYSTEM:
        assert by_id[name]["name"] == name and by_id[name]["type"] == "system"
    assert all(label["type"] == "system" for label in listed)


def test_EML1_crm_labels_are_flat_names_with_ids_of_their_own(google: Google) -> None:
    labels = google.gmail(scopes=LABELS).users().labels()

    made = [
        run(labels.create(userId="me", body={"name": name}))
        for name in ("CRM", "CRM/Send To CRM", "CRM/Recorded", "CRM/Missing Contact")
    ]

    assert [label["name"] for label in made] == [
        "CRM",
        "CRM/Send To CRM",
        "CRM/Recorded",
        "CRM/Missing Contact",
    ]
    ids = [label["id"] for label in made]
    assert len(set(ids)) == 4 and all(i.startswith("Label_") for i in ids)
    assert all(label["type"] == "user" for label in made)
    listed = run(labels.list(userId="me"))["labels"]
    assert {(x["id"], x["name"]) for x in listed if x["type"] == "user"} == {
        (label["id"], label["name"]) for label in made
    }


def test_EML1_a_new_label_counts_no_messages_and_keeps_its_colour(google: Google) -> None:
    labels = google.gmail(scopes=LABELS).users().labels()
    colour = {"backgroundColor": "#16a766", "textColor": "#ffffff"}
    made = run(labels.create(userId="me", body={"name": "CRM/Recorded", "color": colour}))

    shown = run(labels.get(userId="me", id=made["id"]))

    assert shown["color"] == colour and shown["name"] == "CRM/Recorded"
    assert (shown["messagesTotal"], shown["messagesUnread"], shown["threadsTotal"]) == (0, 0, 0)


def test_EML1_a_label_counts_its_messages_unread_ones_and_threads(google: Google) -> None:
    recorded = add_label(google.sandbox, ANN, "CRM/Recorded")
    google.deliver(mail("Quote", message_id="<q@partner.example>"), ("INBOX", recorded))
    google.deliver(mail("Re: Quote", in_reply_to="<q@partner.example>"), (recorded, "UNREAD"))
    google.deliver(mail("Other"), ("INBOX",))

    shown = run(google.gmail().users().labels().get(userId="me", id=recorded))

    assert (shown["messagesTotal"], shown["messagesUnread"]) == (2, 1)
    assert (shown["threadsTotal"], shown["threadsUnread"]) == (1, 1)


def test_EML1_a_colour_off_gmails_palette_is_refused(google: Google) -> None:
    request = (
        google.gmail()
        .users()
        .labels()
        .create(
            userId="me",
            body={"name": "CRM", "color": {"backgroundColor": "#123456", "textColor": "#000000"}},
        )
    )

    assert failure(request) == (400, "invalidArgument")


@pytest.mark.parametrize("name", ["crm/send to crm", "CRM/SEND TO CRM", "Inbox", "unread"])
def test_EML1_a_name_taken_in_any_letter_case_is_a_409(google: Google, name: str) -> None:
    labels = google.gmail().users().labels()
    run(labels.create(userId="me", body={"name": "CRM/Send To CRM"}))

    assert failure(labels.create(userId="me", body={"name": name})) == (409, "duplicate")


def test_EML1_a_label_without_a_name_is_refused(google: Google) -> None:
    request = google.gmail().users().labels().create(userId="me", body={"name": "  "})

    assert failure(request) == (400, "invalidArgument")


def test_EML1_a_renamed_label_keeps_its_id_and_its_messages(google: Google) -> None:
    labels = google.gmail().users().labels()
    made = run(labels.create(userId="me", body={"name": "CRM/Send To CRM"}))
    tagged = google.deliver(labels=("INBOX", made["id"]))

    patched = run(labels.patch(userId="me", id=made["id"], body={"name": "CRM/To CRM"}))
    updated = run(labels.update(userId="me", id=made["id"], body={"name": "CRM/File In CRM"}))

    assert patched["id"] == updated["id"] == made["id"]
    assert run(labels.get(userId="me", id=made["id"]))["name"] == "CRM/File In CRM"
    assert made["id"] in message_labels(google.sandbox, ANN, tagged)
    assert "CRM/To CRM" not in {x["name"] for x in run(labels.list(userId="me"))["labels"]}


def test_EML1_a_patch_changes_only_what_it_names_an_update_resets_the_rest(
    google: Google,
) -> None:
    labels = google.gmail().users().labels()
    colour = {"backgroundColor": "#fb4c2f", "textColor": "#000000"}
    body = {"name": "CRM", "labelListVisibility": "labelHide", "color": colour}
    made = run(labels.create(userId="me", body=body))

    patched = run(labels.patch(userId="me", id=made["id"], body={"messageListVisibility": "hide"}))
    updated = run(labels.update(userId="me", id=made["id"], body={"name": "CRM"}))

    assert (patched["name"], patched["labelListVisibility"], patched["color"]) == (
        "CRM",
        "labelHide",
        colour,
    )
    assert patched["messageListVisibility"] == "hide"
    assert (updated["labelListVisibility"], updated["messageListVisibility"]) == (
        "labelShow",
        "show",
    )
    assert "color" not in updated


def test_EML1_renaming_onto_another_labels_name_is_a_409(google: Google) -> None:
    labels = google.gmail().users().labels()
    run(labels.create(userId="me", body={"name": "CRM/Recorded"}))
    other = run(labels.create(userId="me", body={"name": "CRM/Send To CRM"}))

    request = labels.patch(userId="me", id=other["id"], body={"name": "crm/recorded"})

    assert failure(request) == (409, "duplicate")
    same = labels.patch(userId="me", id=other["id"], body={"name": "CRM/SEND TO CRM"})
    assert run(same)["name"] == "CRM/SEND TO CRM"  # a label may change its own letter case


def test_EML1_system_labels_are_neither_renamed_nor_deleted(google: Google) -> None:
    labels = google.gmail().users().labels()

    assert failure(labels.patch(userId="me", id="INBOX", body={"name": "Post"})) == (
        400,
        "invalidArgument",
    )
    assert failure(labels.delete(userId="me", id="STARRED")) == (400, "invalidArgument")


def test_EML1_a_deleted_label_leaves_its_messages_and_is_gone(google: Google) -> None:
    labels = google.gmail().users().labels()
    made = run(labels.create(userId="me", body={"name": "CRM/Missing Contact"}))
    tagged = google.deliver(labels=("INBOX", made["id"]))
    start = google.history_id()

    run(labels.delete(userId="me", id=made["id"]))

    assert failure(labels.get(userId="me", id=made["id"])) == (404, "notFound")
    assert message_labels(google.sandbox, ANN, tagged) == ["INBOX"]
    history = run(google.gmail().users().history().list(userId="me", startHistoryId=start))
    [record] = history["history"]
    assert record["labelsRemoved"][0]["labelIds"] == [made["id"]]
    assert record["labelsRemoved"][0]["message"]["id"] == tagged


def test_EML1_an_unknown_label_is_a_404(google: Google) -> None:
    labels = google.gmail().users().labels()

    assert failure(labels.get(userId="me", id="Label_404")) == (404, "notFound")
    assert failure(labels.delete(userId="me", id="Label_404")) == (404, "notFound")


# -- messages: list ------------------------------------------------------------------------------
def test_EML1_messages_are_listed_newest_first_by_all_the_labels_asked_for(
    google: Google,
) -> None:
    tag = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    old = google.deliver(labels=("INBOX", tag))
    google.deliver(labels=("INBOX",))
    sent = google.deliver(labels=("SENT", tag))
    new = google.deliver(labels=("INBOX", tag, "UNREAD"))
    messages = google.gmail().users().messages()

    tagged = run(messages.list(userId="me", labelIds=[tag]))
    both = run(messages.list(userId="me", labelIds=[tag, "INBOX"]))

    assert [m["id"] for m in tagged["messages"]] == [new, sent, old]
    assert tagged["resultSizeEstimate"] == 3
    assert [m["id"] for m in both["messages"]] == [new, old]
    assert all(m["threadId"] == m["id"] for m in tagged["messages"])  # no replies here


def test_EML1_a_listing_with_no_match_names_no_messages(google: Google) -> None:
    tag = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    google.deliver()

    listed = run(google.gmail().users().messages().list(userId="me", labelIds=[tag]))

    assert listed == {"resultSizeEstimate": 0}


def test_EML1_spam_and_trash_are_listed_only_when_asked_for(google: Google) -> None:
    google.deliver(labels=("INBOX",))
    spam = google.deliver(labels=("SPAM",))
    trash = google.deliver(labels=("TRASH",))
    messages = google.gmail().users().messages()

    assert run(messages.list(userId="me"))["resultSizeEstimate"] == 1
    everything = run(messages.list(userId="me", includeSpamTrash=True))
    assert {spam, trash} < {m["id"] for m in everything["messages"]}
    assert [m["id"] for m in run(messages.list(userId="me", labelIds=["TRASH"]))["messages"]] == [
        trash
    ]


def test_EML1_a_listing_pages_through_every_message_once(google: Google) -> None:
    delivered = [google.deliver() for _ in range(7)]
    messages = google.gmail().users().messages()

    seen: list[str] = []
    pages = 0
    request = messages.list(userId="me", maxResults=3)
    while request is not None:
        page = run(request)
        pages += 1
        assert page["resultSizeEstimate"] == 7 and len(page["messages"]) <= 3
        seen += [m["id"] for m in page["messages"]]
        request = messages.list_next(request, page)

    assert pages == 3 and seen == delivered[::-1]


def test_EML1_a_page_token_goes_on_after_its_page_when_new_mail_arrived(google: Google) -> None:
    first = [google.deliver() for _ in range(4)]
    messages = google.gmail().users().messages()
    page = run(messages.list(userId="me", maxResults=2))

    google.deliver()  # newer than all: not in the rest of this listing
    rest = run(messages.list(userId="me", maxResults=2, pageToken=page["nextPageToken"]))

    assert [m["id"] for m in page["messages"] + rest["messages"]] == first[::-1]
    assert "nextPageToken" not in rest


def test_EML1_listing_by_an_unknown_label_or_a_broken_page_token_is_a_400(
    google: Google,
) -> None:
    messages = google.gmail().users().messages()

    assert failure(messages.list(userId="me", labelIds=["CRM/Send To CRM"])) == (
        400,
        "invalidArgument",
    )
    assert failure(messages.list(userId="me", pageToken="nonsense")) == (400, "invalidArgument")


# -- messages: get ------------------------------------------------------------------------------
def message_of(google: Google, message_id: str, **options: Any) -> dict[str, Any]:
    request = google.gmail().users().messages().get(userId="me", id=message_id, **options)
    answer: dict[str, Any] = run(request)
    return answer


def test_EML2_a_minimal_message_has_its_ids_labels_snippet_date_and_size(google: Google) -> None:
    raw = mail(text='Dear Ann, <see> the quote & "terms" attached.')
    message_id = google.deliver(raw, ("INBOX", "UNREAD"))

    shown = message_of(google, message_id, format="minimal")

    arrived = NOW + timedelta(minutes=1)
    assert shown == {
        "id": message_id,
        "threadId": message_id,
        "labelIds": ["INBOX", "UNREAD"],
        "snippet": "Dear Ann, &lt;see&gt; the quote &amp; &quot;terms&quot; attached.",
        "sizeEstimate": len(raw),
        "historyId": shown["historyId"],
        "internalDate": str(int(arrived.timestamp()) * 1000),
    }
    assert int(shown["historyId"]) == google.history_id()


def test_EML2_a_raw_message_is_the_bytes_that_arrived(google: Google) -> None:
    raw = rich_mail()
    message_id = google.deliver(raw)

    shown = message_of(google, message_id, format="raw")

    assert decoded(shown["raw"]) == raw
    assert "payload" not in shown and shown["id"] == message_id


def test_EML2_a_full_message_is_its_part_tree_with_attachments_fetched_apart(
    google: Google,
) -> None:
    message_id = google.deliver(rich_mail())

    payload = message_of(google, message_id, format="full")["payload"]

    headers = {h["name"]: h["value"] for h in payload["headers"]}
    assert headers["Subject"] == "Angebot für Größe 42 – bitte prüfen"
    assert headers["From"] == "Jürgen Groß <juergen@partner.example>"
    assert (payload["partId"], payload["mimeType"], payload["body"]) == (
        "",
        "multipart/mixed",
        {"size": 0},
    )
    alternative, attached = payload["parts"]
    text, markup = alternative["parts"]
    assert (alternative["partId"], text["partId"], markup["partId"], attached["partId"]) == (
        "0",
        "0.0",
        "0.1",
        "1",
    )
    assert decoded(text["body"]["data"]).decode() == "Grüße aus Köln,\nanbei das Angebot.\n"
    assert text["body"]["size"] == len("Grüße aus Köln,\nanbei das Angebot.\n".encode())
    assert b"<b>K\xc3\xb6ln</b>" in decoded(markup["body"]["data"])
    assert (attached["mimeType"], attached["filename"]) == ("application/pdf", "angebot.pdf")
    assert set(attached["body"]) == {"attachmentId", "size"} and attached["body"]["size"] == len(
        PDF
    )
    request = (
        google.gmail()
        .users()
        .messages()
        .attachments()
        .get(userId="me", messageId=message_id, id=attached["body"]["attachmentId"])
    )
    body = run(request)
    assert decoded(body["data"]) == PDF and body["size"] == len(PDF)


def test_EML2_a_large_text_body_is_fetched_as_an_attachment(google: Google) -> None:
    text = "Line of a long thread.\n" * 15_000  # 345,000 bytes
    message_id = google.deliver(mail(text=text))

    body = message_of(google, message_id, format="full")["payload"]["body"]

    assert "data" not in body and body["size"] >= len(text)
    attachment = (
        google.gmail()
        .users()
        .messages()
        .attachments()
        .get(userId="me", messageId=message_id, id=body["attachmentId"])
    )
    assert decoded(run(attachment)["data"]).decode().replace("\r\n", "\n") == text


def test_EML2_the_snippet_is_the_start_of_the_text(google: Google) -> None:
    message_id = google.deliver(rich_mail())

    assert message_of(google, message_id)["snippet"] == "Grüße aus Köln, anbei das Angebot."


def test_EML4_metadata_gives_the_headers_asked_for_in_any_letter_case_and_no_body(
    google: Google,
) -> None:
    message_id = google.deliver(rich_mail())

    shown = message_of(
        google, message_id, format="metadata", metadataHeaders=["message-id", "SUBJECT"]
    )

    assert shown["payload"]["headers"] == [
        {"name": "Subject", "value": "Angebot für Größe 42 – bitte prüfen"},
        {"name": "Message-ID", "value": "<angebot-42@partner.example>"},
    ]
    assert "parts" not in shown["payload"] and "raw" not in shown


def test_EML5_metadata_of_subject_and_from_carries_the_internal_date_and_the_labels(
    google: Google,
) -> None:
    message_id = google.deliver(rich_mail(), ("INBOX", "UNREAD"))

    shown = message_of(google, message_id, format="metadata", metadataHeaders=["Subject", "From"])

    assert shown["payload"]["headers"] == [
        {"name": "From", "value": "Jürgen Groß <juergen@partner.example>"},
        {"name": "Subject", "value": "Angebot für Größe 42 – bitte prüfen"},
    ]
    assert shown["internalDate"] == str(int((NOW + timedelta(minutes=1)).timestamp()) * 1000)
    assert (shown["id"], shown["labelIds"]) == (message_id, ["INBOX", "UNREAD"])


def test_EML4_a_reply_joins_the_thread_of_the_message_it_answers(google: Google) -> None:
    first = google.deliver(mail("Quote", message_id="<quote-7@partner.example>"))
    reply = google.deliver(
        mail("Re: Quote", sender=ANN, to=BOB, in_reply_to="<quote-7@partner.example>"), ("SENT",)
    )
    other = google.deliver(mail("Unrelated"))

    assert message_of(google, reply)["threadId"] == first
    assert message_of(google, other)["threadId"] == other


@pytest.mark.parametrize("form", ["raw", "full"])
@pytest.mark.parametrize(
    "scopes", [METADATA, METADATA | READONLY], ids=["metadata", "metadata+readonly"]
)
def test_BEY5_a_metadata_token_reads_no_body_even_beside_broader_scopes(
    google: Google, form: str, scopes: frozenset[str]
) -> None:
    message_id = google.deliver()
    messages = google.gmail(scopes=scopes).users().messages()

    assert failure(messages.get(userId="me", id=message_id, format=form)) == (403, "forbidden")
    shown = run(messages.get(userId="me", id=message_id, format="metadata"))
    assert shown["id"] == message_id
    assert failure(messages.list(userId="me", q="rfc822msgid:x")) == (403, "forbidden")


def test_EML2_an_unknown_message_is_a_404_a_malformed_id_a_400(google: Google) -> None:
    messages = google.gmail().users().messages()

    assert failure(messages.get(userId="me", id="18c0ffee00000000")) == (404, "notFound")
    assert failure(messages.get(userId="me", id="not-an-id")) == (400, "invalidArgument")
    message_id = google.deliver()
    attachments = messages.attachments()
    assert failure(attachments.get(userId="me", messageId=message_id, id="ANGjdJnothing")) == (
        400,
        "invalidArgument",
    )


# -- messages: label changes -------------------------------------------------------------------
def test_EML2_a_recorded_message_gets_recorded_and_loses_send_to_crm(google: Google) -> None:
    send, recorded = (
        add_label(google.sandbox, ANN, name) for name in ("CRM/Send To CRM", "CRM/Recorded")
    )
    message_id = google.deliver(labels=("INBOX", "UNREAD", send))

    answer = run(
        google.gmail()
        .users()
        .messages()
        .modify(
            userId="me", id=message_id, body={"addLabelIds": [recorded], "removeLabelIds": [send]}
        )
    )

    assert answer == {
        "id": message_id,
        "threadId": message_id,
        "labelIds": ["INBOX", "UNREAD", recorded],
    }
    assert message_labels(google.sandbox, ANN, message_id) == ["INBOX", "UNREAD", recorded]


@pytest.mark.parametrize(
    "body",
    [
        {"addLabelIds": ["Label_404"]},
        {"removeLabelIds": ["CRM/Send To CRM"]},
        {"addLabelIds": ["SENT"]},
        {"addLabelIds": [f"Label_{n}" for n in range(101)]},
        {"removeLabelIds": ["UNREAD"] * 101},
    ],
    ids=["unknown", "a name", "sent", "101 added", "101 removed"],
)
def test_EML2_a_label_change_gmail_refuses_is_a_400_and_changes_nothing(
    google: Google, body: dict[str, Any]
) -> None:
    message_id = google.deliver(labels=("INBOX", "UNREAD"))
    start = google.history_id()

    request = google.gmail().users().messages().modify(userId="me", id=message_id, body=body)

    assert failure(request) == (400, "invalidArgument")
    assert message_labels(google.sandbox, ANN, message_id) == ["INBOX", "UNREAD"]
    assert google.history_id() == start


def test_EML2_a_label_change_of_an_unknown_message_is_a_404(google: Google) -> None:
    request = (
        google.gmail()
        .users()
        .messages()
        .modify(userId="me", id="18c0ffee00000000", body={"addLabelIds": ["STARRED"]})
    )

    assert failure(request) == (404, "notFound")


def test_EML5_several_messages_are_filed_at_once(google: Google) -> None:
    send, recorded = (
        add_label(google.sandbox, ANN, name) for name in ("CRM/Send To CRM", "CRM/Recorded")
    )
    chosen = [google.deliver(labels=("INBOX", send)) for _ in range(3)]
    untouched = google.deliver(labels=("INBOX", send))

    run(
        google.gmail()
        .users()
        .messages()
        .batchModify(
            userId="me",
            body={"ids": chosen, "addLabelIds": [recorded], "removeLabelIds": [send]},
        )
    )

    assert [message_labels(google.sandbox, ANN, m) for m in chosen] == [["INBOX", recorded]] * 3
    assert message_labels(google.sandbox, ANN, untouched) == ["INBOX", send]


def test_EML5_a_batch_takes_at_most_1000_messages(google: Google) -> None:
    message_id = google.deliver()
    messages = google.gmail().users().messages()

    too_many = messages.batchModify(
        userId="me", body={"ids": [message_id] * 1001, "addLabelIds": ["STARRED"]}
    )
    most = messages.batchModify(
        userId="me", body={"ids": [message_id] * 1000, "addLabelIds": ["STARRED"]}
    )

    assert failure(too_many) == (400, "invalidArgument")
    run(most)
    assert message_labels(google.sandbox, ANN, message_id) == ["INBOX", "STARRED"]


def test_EML2_a_message_deleted_for_good_is_gone(google: Google) -> None:
    message_id = google.deliver()
    messages = google.gmail(scopes=frozenset({"https://mail.google.com/"})).users().messages()

    run(messages.delete(userId="me", id=message_id))

    assert failure(messages.get(userId="me", id=message_id)) == (404, "notFound")
    assert failure(google.gmail().users().messages().delete(userId="me", id=message_id)) == (
        403,
        "insufficientPermissions",
    )


# -- history -----------------------------------------------------------------------------------
def history(google: Google, start: int, **options: Any) -> dict[str, Any]:
    request = google.gmail().users().history().list(userId="me", startHistoryId=start, **options)
    answer: dict[str, Any] = run(request)
    return answer


def test_RUN4_every_change_is_a_history_record_in_order(google: Google) -> None:
    send = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    start = google.history_id()
    arrived = google.deliver(labels=("INBOX", "UNREAD"))
    change_labels(google.sandbox, ANN, arrived, add=[send], remove=["UNREAD"])
    doomed = google.deliver(labels=("SPAM",))
    delete_message(google.sandbox, ANN, doomed)

    answer = history(google, start)

    records = answer["history"]
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids) and len(set(ids)) == 5 and ids[0] > start
    assert answer["historyId"] == str(ids[-1]) == str(google.history_id())
    added, tagged, read, spam, deleted = records
    assert added["messagesAdded"] == [
        {"message": {"id": arrived, "threadId": arrived, "labelIds": ["INBOX", "UNREAD"]}}
    ]
    assert tagged["labelsAdded"] == [
        {
            "message": {"id": arrived, "threadId": arrived, "labelIds": ["INBOX", "UNREAD", send]},
            "labelIds": [send],
        }
    ]
    assert read["labelsRemoved"] == [
        {
            "message": {"id": arrived, "threadId": arrived, "labelIds": ["INBOX", send]},
            "labelIds": ["UNREAD"],
        }
    ]
    assert spam["messagesAdded"][0]["message"]["id"] == doomed
    assert deleted["messagesDeleted"] == [{"message": {"id": doomed, "threadId": doomed}}]
    assert all(r["messages"] == [{"id": arrived, "threadId": arrived}] for r in records[:3])
    assert message_of(google, arrived)["historyId"] == read["id"]


def test_RUN4_a_change_that_changes_nothing_records_nothing(google: Google) -> None:
    message_id = google.deliver(labels=("INBOX",))
    start = google.history_id()

    change_labels(google.sandbox, ANN, message_id, add=["INBOX"], remove=["UNREAD"])

    assert history(google, start) == {"historyId": str(start)}


def test_RUN4_history_is_filtered_by_label(google: Google) -> None:
    send = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    start = google.history_id()
    google.deliver(labels=("INBOX",))
    tagged = google.deliver(labels=("INBOX",))
    change_labels(google.sandbox, ANN, tagged, add=[send])
    change_labels(google.sandbox, ANN, tagged, add=["STARRED"])  # the message still has `send`
    change_labels(google.sandbox, ANN, tagged, remove=[send])

    records = history(google, start, labelId=send)["history"]

    kinds = [next(k for k in r if k not in ("id", "messages")) for r in records]
    assert kinds == ["labelsAdded", "labelsAdded", "labelsRemoved"]
    assert records[1]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert all(r["messages"][0]["id"] == tagged for r in records)


def test_RUN4_history_is_filtered_by_type(google: Google) -> None:
    send = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    start = google.history_id()
    first = google.deliver()
    change_labels(google.sandbox, ANN, first, add=[send])
    second = google.deliver()
    change_labels(google.sandbox, ANN, first, remove=[send])
    delete_message(google.sandbox, ANN, second)

    added = history(google, start, historyTypes="labelAdded")["history"]
    arrivals_and_removals = history(google, start, historyTypes=["messageAdded", "labelRemoved"])

    assert [(r["labelsAdded"][0]["message"]["id"]) for r in added] == [first]
    assert [sorted(set(r) - {"id", "messages"}) for r in arrivals_and_removals["history"]] == [
        ["messagesAdded"],
        ["messagesAdded"],
        ["labelsRemoved"],
    ]
    unknown = requests.get(  # the client refuses to send a type its document does not list
        google.url + "gmail/v1/users/me/history",
        params={"startHistoryId": start, "historyTypes": "labelChanged"},
        headers={"Authorization": "Bearer " + google.token(ANN, MODIFY)},
        timeout=10,
    )
    assert (unknown.status_code, unknown.json()["error"]["errors"][0]["reason"]) == (
        400,
        "invalidArgument",
    )


def test_RUN4_history_pages_through_every_record_once(google: Google) -> None:
    start = google.history_id()
    delivered = [google.deliver() for _ in range(5)]
    histories = google.gmail().users().history()

    seen: list[str] = []
    request = histories.list(userId="me", startHistoryId=start, maxResults=2)
    pages = 0
    while request is not None:
        page = run(request)
        pages += 1
        seen += [r["messagesAdded"][0]["message"]["id"] for r in page["history"]]
        assert page["historyId"] == str(google.history_id())
        request = histories.list_next(request, page)

    assert pages == 3 and seen == delivered


def test_RUN4_history_from_now_is_empty_and_names_the_current_history_id(
    google: Google,
) -> None:
    google.deliver()
    now = google.history_id()

    assert history(google, now) == {"historyId": str(now)}


def test_RUN4_an_expired_history_id_is_a_404_and_a_fresh_one_works(google: Google) -> None:
    old = google.history_id()
    google.deliver()

    expire_history(google.sandbox, ANN)

    histories = google.gmail().users().history()
    assert failure(histories.list(userId="me", startHistoryId=old)) == (404, "notFound")
    fresh = google.history_id()
    arrived = google.deliver()
    assert history(google, fresh)["history"][0]["messagesAdded"][0]["message"]["id"] == arrived


def test_RUN4_history_without_a_valid_start_is_a_400(google: Google) -> None:
    histories = google.gmail().users().history()

    assert failure(histories.list(userId="me")) == (400, "invalidArgument")
    assert failure(histories.list(userId="me", startHistoryId="-3")) == (400, "invalidArgument")


# -- scopes of every method ----------------------------------------------------------------------
_names = itertools.count(1)


def _call(google: Google, method_id: str, service: Any) -> Any:
    """One request of `method_id` that succeeds with a sufficient scope."""
    users = service.users()
    labels, messages = users.labels(), users.messages()
    if method_id.startswith("labels.") and method_id not in ("labels.list", "labels.get"):
        label = add_label(google.sandbox, ANN, f"Label {next(_names)}")
        if method_id == "labels.create":
            return labels.create(userId="me", body={"name": f"New {next(_names)}"})
        if method_id == "labels.delete":
            return labels.delete(userId="me", id=label)
        method = labels.patch if method_id == "labels.patch" else labels.update
        return method(userId="me", id=label, body={"name": f"Renamed {next(_names)}"})
    message_id = google.deliver(rich_mail())
    opened = addons.message_token(google.sandbox, ANN, message_id)  # an add-on's open message

    def for_addon(request: Any) -> Any:
        request.headers["X-Goog-Gmail-Access-Token"] = opened
        return request

    requests: dict[str, Callable[[], Any]] = {
        "getProfile": lambda: users.getProfile(userId="me"),
        "labels.list": lambda: labels.list(userId="me"),
        "labels.get": lambda: labels.get(userId="me", id="INBOX"),
        "messages.list": lambda: messages.list(userId="me"),
        "messages.get": lambda: for_addon(
            messages.get(userId="me", id=message_id, format="minimal")
        ),
        "messages.modify": lambda: messages.modify(
            userId="me", id=message_id, body={"addLabelIds": ["STARRED"]}
        ),
        "messages.batchModify": lambda: messages.batchModify(
            userId="me", body={"ids": [message_id], "addLabelIds": ["STARRED"]}
        ),
        "messages.delete": lambda: messages.delete(userId="me", id=message_id),
        "messages.attachments.get": lambda: for_addon(
            messages.attachments().get(
                userId="me", messageId=message_id, id=_attachment_id(google, message_id)
            )
        ),
        "history.list": lambda: users.history().list(userId="me", startHistoryId=1000),
        "watch": lambda: users.watch(userId="me", body={"topicName": TOPIC}),
        "stop": lambda: users.stop(userId="me"),
    }
    return requests[method_id]()


def _attachment_id(google: Google, message_id: str) -> str:
    payload = message_of(google, message_id, format="full")["payload"]
    return str(payload["parts"][1]["body"]["attachmentId"])


TOPIC = "projects/crmsync-local/topics/gmail-notifications"
METHODS = [
    "getProfile",
    "labels.list",
    "labels.get",
    "labels.create",
    "labels.patch",
    "labels.update",
    "labels.delete",
    "messages.list",
    "messages.get",
    "messages.modify",
    "messages.batchModify",
    "messages.delete",
    "messages.attachments.get",
    "history.list",
    "watch",
    "stop",
]


@pytest.mark.parametrize("method_id", METHODS)
def test_BEY5_each_method_takes_exactly_the_scopes_its_discovery_document_lists(
    google: Google, method_id: str
) -> None:
    pubsub = MemoryPubSub()
    pubsub.create_topic("gmail-notifications")
    connect_pubsub(google.sandbox, pubsub)
    listed = discovery_scopes(method_id)

    for scope in sorted(every_gmail_scope()):
        request = _call(google, method_id, google.gmail(scopes=frozenset({scope})))
        if scope in listed:
            run(request)
        else:
            assert failure(request) == (403, "insufficientPermissions"), scope


# -- watch and Pub/Sub ---------------------------------------------------------------------------
@pytest.fixture
def memory(google: Google) -> MemoryPubSub:
    pubsub = MemoryPubSub()
    connect_pubsub(google.sandbox, pubsub)
    return pubsub


def start_watch(google: Google, topic: str, **body: Any) -> dict[str, Any]:
    request = google.gmail().users().watch(userId="me", body={"topicName": topic, **body})
    answer: dict[str, Any] = run(request)
    return answer


def test_RUN5_a_watch_lasts_a_week_from_the_current_history_id(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")
    google.deliver()

    answer = start_watch(google, topic, labelIds=["INBOX"])

    assert answer["historyId"] == str(google.history_id())
    week = NOW + timedelta(minutes=1, days=7)
    assert answer["expiration"] == str(int(week.timestamp()) * 1000)
    assert watch_of(google.sandbox, ANN) == {
        "topicName": topic,
        "labelIds": ["INBOX"],
        "labelFilterBehavior": "include",
        "expiration": int(week.timestamp()) * 1000,
    }


@pytest.mark.parametrize(
    "topic",
    ["gmail-notifications", "projects/another-project/topics/gmail", "projects/crmsync-local"],
)
def test_RUN5_a_topic_not_of_the_clients_project_is_a_400(
    google: Google, memory: MemoryPubSub, topic: str
) -> None:
    memory.create_topic("gmail")

    request = google.gmail().users().watch(userId="me", body={"topicName": topic})

    assert failure(request) == (400, "invalidArgument")
    assert watch_of(google.sandbox, ANN) is None


def test_RUN5_a_watch_without_a_topic_is_a_400(google: Google, memory: MemoryPubSub) -> None:
    request = google.gmail().users().watch(userId="me", body={"labelIds": ["INBOX"]})

    assert failure(request) == (400, "invalidArgument")


def test_RUN5_a_topic_that_does_not_exist_is_a_404(google: Google, memory: MemoryPubSub) -> None:
    request = (
        google.gmail()
        .users()
        .watch(userId="me", body={"topicName": "projects/crmsync-local/topics/never-made"})
    )

    assert failure(request) == (404, "notFound")
    assert watch_of(google.sandbox, ANN) is None


def test_RUN5_a_topic_gmail_may_not_publish_to_is_a_403(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("locked", gmail_may_publish=False)

    request = google.gmail().users().watch(userId="me", body={"topicName": topic})

    assert failure(request) == (403, "forbidden")


def test_RUN5_watching_a_label_that_does_not_exist_is_a_400(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")

    request = (
        google.gmail()
        .users()
        .watch(userId="me", body={"topicName": topic, "labelIds": ["CRM/Send To CRM"]})
    )

    assert failure(request) == (400, "invalidArgument")


def test_RUN3_under_exclude_a_change_of_an_excluded_label_publishes_nothing(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")
    start_watch(google, topic, labelIds=["SPAM"], labelFilterBehavior="exclude")

    google.deliver(labels=("SPAM",))
    wanted = google.deliver(labels=("INBOX",))
    assert notifications_published(google.sandbox)

    assert memory.published == [(topic, {"emailAddress": ANN, "historyId": google.history_id()})]
    assert int(message_of(google, wanted)["historyId"]) == google.history_id()


def test_RUN3_a_watch_without_labels_publishes_every_change(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")
    start_watch(google, topic)

    message_id = google.deliver(labels=())
    after_delivery = google.history_id()
    change_labels(google.sandbox, ANN, message_id, add=["STARRED"])
    assert notifications_published(google.sandbox)

    assert [data["historyId"] for _, data in memory.published] == [
        after_delivery,
        google.history_id(),
    ]


def test_RUN3_a_batch_of_changes_publishes_one_notification(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")
    chosen = [google.deliver() for _ in range(4)]
    start_watch(google, topic, labelIds=["INBOX"])

    run(
        google.gmail()
        .users()
        .messages()
        .batchModify(userId="me", body={"ids": chosen, "removeLabelIds": ["INBOX"]})
    )
    assert notifications_published(google.sandbox)

    assert memory.published == [(topic, {"emailAddress": ANN, "historyId": google.history_id()})]


def test_RUN5_after_stop_or_past_its_expiration_a_watch_publishes_nothing(
    google: Google, memory: MemoryPubSub
) -> None:
    topic = memory.create_topic("gmail-notifications")
    start_watch(google, topic)
    run(google.gmail().users().stop(userId="me"))
    google.deliver()
    assert watch_of(google.sandbox, ANN) is None

    start_watch(google, topic)
    google.clock.advance(days=7)
    google.deliver()
    assert notifications_published(google.sandbox)

    assert memory.published == []


def test_RUN3_a_slow_pubsub_never_holds_up_an_answer(google: Google, memory: MemoryPubSub) -> None:
    topic = memory.create_topic("gmail-notifications")
    message_id = google.deliver()
    start_watch(google, topic)
    memory.gate = threading.Event()  # Pub/Sub takes nothing until the gate opens

    answer = run(
        google.gmail()
        .users()
        .messages()
        .modify(userId="me", id=message_id, body={"addLabelIds": ["STARRED"]})
    )
    also = run(google.gmail().users().labels().list(userId="me"))

    assert "STARRED" in answer["labelIds"] and also["labels"]
    assert memory.published == [] and not notifications_published(google.sandbox, timeout=0.2)
    memory.gate.set()
    assert notifications_published(google.sandbox)
    assert memory.published == [(topic, {"emailAddress": ANN, "historyId": google.history_id()})]


# -- on Google's Pub/Sub emulator, through the real Pub/Sub client ------------------------------
@dataclass
class Subscribed:
    topic: str
    subscription: str
    subscriber: Any

    def pull(self, wanted: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """At least `wanted` messages' data (acknowledged), or what came in `timeout`."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < wanted and time.monotonic() < deadline:
            answer = self.subscriber.pull(
                request={"subscription": self.subscription, "max_messages": 10}, timeout=5
            )
            got += [json.loads(m.message.data) for m in answer.received_messages]
            if answer.received_messages:
                ack_ids = [m.ack_id for m in answer.received_messages]
                self.subscriber.acknowledge(
                    request={"subscription": self.subscription, "ack_ids": ack_ids}
                )
        return got


@pytest.fixture
def emulated(google: Google, pubsub_emulator: Emulator) -> Iterator[Subscribed]:
    """A topic with a pull subscription on the emulator; the sandbox publishes there."""
    from google.cloud import pubsub_v1

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    suffix = time.monotonic_ns()
    topic = publisher.topic_path(pubsub_emulator.project, f"gmail-{suffix}")
    subscription = subscriber.subscription_path(pubsub_emulator.project, f"gmail-sub-{suffix}")
    publisher.create_topic(request={"name": topic})
    subscriber.create_subscription(request={"name": subscription, "topic": topic})
    connect_pubsub(google.sandbox, EmulatorPubSub(pubsub_emulator.project))
    yield Subscribed(topic, subscription, subscriber)
    notifications_published(google.sandbox)
    subscriber.delete_subscription(request={"subscription": subscription})
    publisher.delete_topic(request={"topic": topic})
    subscriber.close()


def test_RUN3_mail_arriving_in_a_watched_label_reaches_the_pubsub_topic(
    google: Google, emulated: Subscribed
) -> None:
    start_watch(google, emulated.topic, labelIds=["INBOX"], labelFilterBehavior="include")

    google.deliver(labels=("INBOX", "UNREAD"))

    [data] = emulated.pull(1)
    assert data == {"emailAddress": ANN, "historyId": google.history_id()}
    assert isinstance(data["historyId"], int)


def test_RUN3_under_include_only_changes_of_a_watched_label_are_published(
    google: Google, emulated: Subscribed
) -> None:
    send = add_label(google.sandbox, ANN, "CRM/Send To CRM")
    message_id = google.deliver(labels=("INBOX",))
    start_watch(google, emulated.topic, labelIds=[send], labelFilterBehavior="include")

    change_labels(google.sandbox, ANN, message_id, add=["STARRED"])  # not watched
    google.deliver(labels=("INBOX",))  # not watched either
    run(
        google.gmail()
        .users()
        .messages()
        .modify(userId="me", id=message_id, body={"addLabelIds": [send]})
    )
    tagged = google.history_id()
    change_labels(google.sandbox, ANN, message_id, remove=["STARRED"])  # a tagged message's
    assert notifications_published(google.sandbox)

    expected = [
        {"emailAddress": ANN, "historyId": tagged},
        {"emailAddress": ANN, "historyId": google.history_id()},
    ]
    assert [data for _, data in published(google.sandbox)] == expected
    assert sorted(emulated.pull(2), key=lambda d: d["historyId"]) == expected


def test_RUN3_a_watch_on_a_topic_missing_from_the_emulator_is_a_404(
    google: Google, emulated: Subscribed
) -> None:
    topic = emulated.topic + "-never-made"

    request = google.gmail().users().watch(userId="me", body={"topicName": topic})

    assert failure(request) == (404, "notFound")


# -- crmsync: the address Gmail's notifications will name -------------------------------------
def test_RUN3_the_mail_service_grant_reads_the_mailbox_address(google: Google) -> None:
    granted = frozenset(SERVICES["mail"])

    assert mailbox_address(google.client("Ann.Lee@example.com", granted)) == "Ann.Lee@example.com"


def test_RUN3_without_a_gmail_grant_the_mailbox_address_is_a_permission_error(
    google: Google,
) -> None:
    with pytest.raises(PermissionDenied):
        mailbox_address(google.client(scopes=CALENDAR_SCOPES))


def test_CTX1_an_add_on_token_reads_only_the_message_gmail_opened_for_it(google: Google) -> None:
    opened, other = google.deliver(rich_mail()), google.deliver(rich_mail())
    token = addons.message_token(google.sandbox, ANN, opened)
    service = google.gmail(scopes=frozenset({addons.CURRENT_METADATA}))

    def get(message_id: str, given: str | None) -> Any:
        request = service.users().messages().get(userId="me", id=message_id, format="metadata")
        if given is not None:
            request.headers["X-Goog-Gmail-Access-Token"] = given
        return request

    assert run(get(opened, token))["id"] == opened
    assert failure(get(opened, None)) == (403, "forbidden")
    assert failure(get(other, token)) == (403, "forbidden")  # another message of the mailbox
    full = google.gmail(scopes=READONLY)
    assert run(full.users().messages().get(userId="me", id=other))["id"] == other
