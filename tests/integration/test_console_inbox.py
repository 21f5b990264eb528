"""The Gmail panel of the sandbox console (sandbox/local/inbox.py) on the Google
sandbox itself: `make dev`'s seeded inbox as the panel lists it, mail arriving from
the panel's form (refused in words when it names no sender or subject), and the
user's "Send To CRM" tag, which needs the label crmsync's first mail pass makes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sandbox.google import gmail
from sandbox.google.core import GoogleSandbox
from sandbox.local.dev import DEMO_MAIL, seed_inbox
from sandbox.local.inbox import GmailInbox
from sandbox.local.stack import DEMO_USERS

pytestmark = pytest.mark.integration

DANA = DEMO_USERS["u1"]


def test_EML1_the_seeded_inbox_lists_newest_first_with_senders_subjects_and_labels() -> None:
    google = GoogleSandbox()
    seed_inbox(SimpleNamespace(google=google))

    listed = GmailInbox(google, DANA).messages()

    assert [m["subject"] for m in listed] == [subject for _, subject, _ in DEMO_MAIL][::-1]
    assert {m["from"] for m in listed} == {sender for sender, _, _ in DEMO_MAIL}
    assert all(m["labels"] == ["Inbox", "Unread"] for m in listed)
    assert any("ada@acme.example" in m["from"] for m in listed)  # a demo CRM contact


def test_EML1_send_to_crm_tags_the_message_once_crmsync_made_its_label() -> None:
    google = GoogleSandbox()
    inbox = GmailInbox(google, DANA)
    made = inbox.arrive("Ada Lovelace <ada@acme.example>", "Engine order", "Please confirm.")

    with pytest.raises(LookupError, match="crmsync makes it at the connection's first mail"):
        inbox.send_to_crm(made)
    send = gmail.add_label(google, DANA, "CRM/Send To CRM")  # as the first mail pass does
    inbox.send_to_crm(made)

    assert send in gmail.message_labels(google, DANA, made)
    [shown] = inbox.messages()
    assert (shown["subject"], shown["labels"][-1]) == ("Engine order", "CRM/Send To CRM")
    with pytest.raises(LookupError, match="no such message in this inbox"):
        inbox.send_to_crm("not-a-message")


def test_EML1_mail_arriving_from_the_form_needs_a_sender_address_and_a_subject() -> None:
    inbox = GmailInbox(GoogleSandbox(), DANA)

    with pytest.raises(ValueError, match="from needs an e-mail address"):
        inbox.arrive("Ada Lovelace", "Engine order")
    with pytest.raises(ValueError, match="subject is required"):
        inbox.arrive("ada@acme.example", "  ")
    assert inbox.messages() == []
