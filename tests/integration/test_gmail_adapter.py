"""The Gmail adapter (crmsync.providers.google.gmail) against the Google sandbox's Gmail
over a real socket, through the real google-api-python-client, and a whole recording
pass over it with the reference CRM behind the production connector (EML-1..4); the
headlines of a label a page offers to choose from (EML-5)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from google.oauth2.credentials import Credentials

from crmsync.crm.rest import RestCrmConnector
from crmsync.errors import PermissionDenied
from crmsync.mail import recording
from crmsync.ports import MISSING, RECORDED, SEND, Headline
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.gmail import GmailAccount
from crmsync.providers.google.oauth import SERVICES
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.server import serve as serve_crm
from sandbox.google.core import GoogleSandbox
from sandbox.google.gmail import (
    MemoryPubSub,
    add_label,
    change_labels,
    connect_pubsub,
    deliver,
    message_labels,
    notifications_published,
    published,
    watch_of,
)
from sandbox.google.server import serve

pytestmark = pytest.mark.integration

DANA = "dana.rep@demo.example"
ANN = "ann.buyer@example.com"
START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


@dataclass
class Gmail:
    google: GoogleSandbox
    base: str
    pubsub: MemoryPubSub

    def account(self) -> GmailAccount:
        """The adapter as a new process builds it, with the "mail" service's scopes."""
        token = self.google.issue_token(DANA, frozenset(SERVICES["mail"]), seconds=86400)
        return GmailAccount(GoogleClient(Credentials(token), {"gmail": self.base}))

    def names(self, message_id: str) -> set[str]:
        ids = message_labels(self.google, DANA, message_id)
        labels = {v: k for k, v in self.account().labels({}).items()}
        return {labels.get(i, i) for i in ids}


@pytest.fixture
def gmail() -> Iterator[Gmail]:
    google = GoogleSandbox(lambda: START)
    google.add_account(DANA)
    pubsub = MemoryPubSub()
    connect_pubsub(google, pubsub)
    base, stop = serve(google, modules=["gmail"])
    yield Gmail(google, base, pubsub)
    stop()


def message(sender: str, subject: str, message_id: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {DANA}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nAbout the offer.\r\n"
    ).encode()


def test_EML1_the_labels_are_made_with_their_parent_and_kept_by_id_through_a_rename(
    gmail: Gmail,
) -> None:
    account = gmail.account()
    first = account.labels({})
    listed = gmail.account().users.labels().list(userId="me").execute()["labels"]
    names = {x["name"] for x in listed if x["type"] == "user"}
    assert names == {"CRM", "CRM/Send To CRM", "CRM/Recorded", "CRM/Missing Contact"}

    gmail.account().users.labels().patch(
        userId="me", id=first[RECORDED], body={"name": "Filed"}
    ).execute()
    again = gmail.account().labels(first)

    assert again == first
    assert gmail.account().labels({}) != first  # by name only, a new "CRM/Recorded"


def test_EML1_a_label_the_user_made_with_crmsync_s_name_is_taken_over(gmail: Gmail) -> None:
    made = add_label(gmail.google, DANA, "CRM/Send To CRM")

    assert gmail.account().labels({})[SEND] == made


def test_EML2_the_tagged_messages_come_oldest_first_across_pages_with_their_bytes_and_time(
    gmail: Gmail,
) -> None:
    labels = gmail.account().labels({})
    sent = []
    for n in range(7):
        at = START + timedelta(minutes=n)
        sent.append(deliver(gmail.google, DANA, message(ANN, f"M{n}", f"m{n}@x"), internal_date=at))
        change_labels(gmail.google, DANA, sent[-1], add=[labels[SEND]])
    deliver(gmail.google, DANA, message(ANN, "untagged", "u@x"))

    account = gmail.account()
    tagged = account.tagged(labels[SEND], 5)
    raw, received = account.message(tagged[0])

    assert tagged == sent[:5]
    assert raw == message(ANN, "M0", "m0@x")
    assert received == START


def test_EML2_relabelling_moves_a_message_from_send_to_recorded(gmail: Gmail) -> None:
    account = gmail.account()
    labels = account.labels({})
    sent = deliver(gmail.google, DANA, message(ANN, "Offer", "o@x"))
    change_labels(gmail.google, DANA, sent, add=[labels[SEND], labels[MISSING]])

    account.relabel(sent, [labels[RECORDED]], [labels[SEND], labels[MISSING]])

    assert set(message_labels(gmail.google, DANA, sent)) == {"INBOX", labels[RECORDED]}


def test_EML1_a_watch_on_send_to_crm_publishes_a_tag_to_the_topic_and_stop_ends_it(
    gmail: Gmail,
) -> None:
    topic = gmail.pubsub.create_topic("gmail-notifications")
    account = gmail.account()
    labels = account.labels({})
    sent = deliver(gmail.google, DANA, message(ANN, "Offer", "o@x"))

    until = account.watch(topic, labels[SEND])
    change_labels(gmail.google, DANA, sent, add=[labels[SEND]])
    assert notifications_published(gmail.google)
    [(to, data)] = published(gmail.google)

    assert until > START + timedelta(days=6)
    assert to == topic and data["emailAddress"] == DANA and int(data["historyId"]) > 0
    account.stop()
    assert watch_of(gmail.google, DANA) is None


def test_EML2_EML4_a_pass_over_gmail_records_each_tagged_message_once_in_the_reference_crm(
    gmail: Gmail,
) -> None:
    crm = ReferenceCrm(CrmDatabase(":memory:", clock=lambda: START))
    crm.add_tenant("t1", "token-t1")
    crm.add_user("t1", "u1", name="Dana Rep", email=DANA)
    contact = crm.create(
        "t1", "contact", {"first_name": "Ann", "last_name": "Buyer", "emails": [ANN]}, "u1"
    )
    url, stop = serve_crm(crm)
    try:
        connector = RestCrmConnector(url, "token-t1", "u1", None)
        labels = gmail.account().labels({})
        known = deliver(gmail.google, DANA, message(f"Ann <{ANN}>", "Offer", "o@x"))
        stranger = deliver(gmail.google, DANA, message("x@stranger.example", "Hi", "s@x"))
        for m in (known, stranger):
            change_labels(gmail.google, DANA, m, add=[labels[SEND]])

        done = recording.record_tagged(gmail.account(), connector, [DANA], "google-u1", labels)
        change_labels(gmail.google, DANA, known, add=[labels[SEND]])  # tagged again
        recording.record_tagged(gmail.account(), connector, [DANA], "google-u1", labels)
    finally:
        stop()

    assert [f.outcome for f in done.filed] == ["recorded", "missing"]
    [item] = crm.history("t1", "contact", contact)
    assert (item["subject"], item["body"]) == ("Offer", "About the offer.")
    assert set(message_labels(gmail.google, DANA, known)) == {"INBOX", labels[RECORDED]}
    assert set(message_labels(gmail.google, DANA, stranger)) == {"INBOX", labels[MISSING]}


def test_EML5_headlines_are_the_label_s_newest_messages_with_subject_sender_and_time(
    gmail: Gmail,
) -> None:
    labels = gmail.account().labels({})
    jg = "=?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <jg@example.de>"
    unnamed = b"From: bo@example.org\r\nTo: dana.rep@demo.example\r\n\r\nNo subject.\r\n"
    missing = {}
    for minutes, raw in (
        (20, message(jg, "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "g1@x")),
        (0, message(ANN, "Oldest", "g2@x")),
        (30, unnamed),
        (10, message('"Buyer, Ann" <ann.buyer@example.com>', "Quote", "g3@x")),
    ):  # arriving out of order
        at = START + timedelta(minutes=minutes)
        missing[minutes] = deliver(gmail.google, DANA, raw, internal_date=at)
        change_labels(gmail.google, DANA, missing[minutes], add=[labels[MISSING]])
    recorded = deliver(gmail.google, DANA, message(ANN, "Recorded", "g4@x"), internal_date=START)
    change_labels(gmail.google, DANA, recorded, add=[labels[RECORDED]])
    deliver(gmail.google, DANA, message(ANN, "Untagged", "g5@x"), internal_date=START)
    account = gmail.account()

    shown = account.headlines(labels[MISSING], 3)

    assert shown == [
        Headline(missing[30], "", "bo@example.org", START + timedelta(minutes=30)),
        Headline(
            missing[20],
            "Grüße aus Köln",
            "Jürgen Groß <jg@example.de>",
            START + timedelta(minutes=20),
        ),
        Headline(missing[10], "Quote", f"Buyer, Ann <{ANN}>", START + timedelta(minutes=10)),
    ]
    assert account.client.calls == 1 + 3  # one listing, one read of each headline
    assert [h.id for h in gmail.account().headlines(labels[RECORDED], 10)] == [recorded]


def test_EML5_a_message_deleted_since_it_was_listed_is_left_out_of_the_headlines(
    gmail: Gmail,
) -> None:
    labels = gmail.account().labels({})
    made = []
    for n in range(3):
        at = START + timedelta(minutes=n)
        made.append(deliver(gmail.google, DANA, message(ANN, f"M{n}", f"d{n}@x"), internal_date=at))
        change_labels(gmail.google, DANA, made[-1], add=[labels[MISSING]])
    # Gmail's answer to reading a message deleted for good between the listing and the read
    gmail.google.inject(404, reason="notFound", method="GET", path=f"messages/{made[1]}$")

    shown = gmail.account().headlines(labels[MISSING], 10)

    assert [h.subject for h in shown] == ["M2", "M0"]
    gmail.google.inject(403, reason="forbidden", method="GET", path=f"messages/{made[0]}$")
    with pytest.raises(PermissionDenied):  # only a message gone is left out
        gmail.account().headlines(labels[MISSING], 10)
