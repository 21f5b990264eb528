"""The Outlook mail adapter (crmsync.providers.microsoft.mail) against the Microsoft
sandbox's Graph over TLS, and a whole recording pass over it into the reference CRM
behind the production connector (EML-1..4); the headlines of a category a page offers
to choose from (EML-5)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.crm.rest import RestCrmConnector
from crmsync.mail import recording
from crmsync.ports import MISSING, RECORDED, SEND, Headline
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.mail import OutlookMail
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.server import serve as serve_crm
from sandbox.microsoft.mail import deliver, set_categories
from tests.integration.microsoft_sandbox import ALL_SCOPES, EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration

MAIL_SCOPES = (*ALL_SCOPES, "Mail.ReadWrite", "MailboxSettings.ReadWrite")
START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
ANN = "ann.buyer@example.com"


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph(MAIL_SCOPES) as served:
        yield served


def mail_of(graph: Graph) -> OutlookMail:
    """The adapter as a new process builds it."""
    return OutlookMail(GraphClient(graph.token, f"{graph.base}/v1.0", graph.session))


def message(sender: str, subject: str, message_id: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {EMAIL}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nAbout the offer.\r\n"
    ).encode()


def categories(graph: Graph, message_id: str) -> set[str]:
    answer = graph.ok(graph.get(f"me/messages/{message_id}?$select=categories"))
    return set(answer["categories"])


def test_EML1_the_categories_are_made_once_and_found_again_by_id(graph: Graph) -> None:
    first = mail_of(graph).labels({})
    listed = graph.ok(graph.get("me/outlook/masterCategories"))["value"]

    assert {c["displayName"] for c in listed} == {
        "CRM/Send To CRM",
        "CRM/Recorded",
        "CRM/Missing Contact",
    }
    assert mail_of(graph).labels(first) == first
    assert mail_of(graph).labels({}) == first  # by name, from a process that knew nothing


def test_EML2_the_tagged_messages_come_oldest_first_with_their_mime_and_time(
    graph: Graph,
) -> None:
    sent = []
    for n in (2, 0, 1):  # delivered out of order
        at = START + timedelta(minutes=n)
        made = deliver(graph.sandbox, EMAIL, message(ANN, f"M{n}", f"m{n}@x"), received=at)
        set_categories(graph.sandbox, EMAIL, made, ["CRM/Send To CRM"])
        sent.append((n, made))
    deliver(graph.sandbox, EMAIL, message(ANN, "untagged", "u@x"))
    mail = mail_of(graph)
    labels = mail.labels({})

    before = mail.client.calls
    tagged = mail.tagged(labels[SEND], 2)
    listed = mail.client.calls - before
    raw, received = mail.message(tagged[0])

    assert tagged == [dict(sent)[0], dict(sent)[1]]
    assert listed == 1  # one listing a pass, ordered by Graph
    assert b"Subject: M0" in raw and b"About the offer." in raw
    assert received == START


def test_EML2_relabelling_keeps_the_user_s_own_categories(graph: Graph) -> None:
    made = deliver(graph.sandbox, EMAIL, message(ANN, "Offer", "o@x"))
    set_categories(graph.sandbox, EMAIL, made, ["Red category", "CRM/Send To CRM"])
    mail = mail_of(graph)
    labels = mail.labels({})
    mail.tagged(labels[SEND], 10)

    mail.relabel(made, [labels[RECORDED]], [labels[SEND], labels[MISSING]])

    assert categories(graph, made) == {"Red category", "CRM/Recorded"}


def test_EML2_a_category_the_user_adds_meanwhile_is_not_lost(graph: Graph) -> None:
    made = deliver(graph.sandbox, EMAIL, message(ANN, "Offer", "o2@x"))
    set_categories(graph.sandbox, EMAIL, made, ["CRM/Send To CRM"])
    mail = mail_of(graph)
    labels = mail.labels({})
    mail.tagged(labels[SEND], 10)  # read before the user's change
    set_categories(graph.sandbox, EMAIL, made, ["CRM/Send To CRM", "Follow up"])

    mail.relabel(made, [labels[RECORDED]], [labels[SEND]])

    assert categories(graph, made) == {"Follow up", "CRM/Recorded"}


def test_EML2_EML4_a_pass_over_outlook_records_each_tagged_message_once_in_the_reference_crm(
    graph: Graph,
) -> None:
    crm = ReferenceCrm(CrmDatabase(":memory:", clock=lambda: START))
    crm.add_tenant("t1", "token-t1")
    crm.add_user("t1", "u2", name="Ada", email=EMAIL)
    contact = crm.create(
        "t1", "contact", {"first_name": "Ann", "last_name": "Buyer", "emails": [ANN]}, "u2"
    )
    url, stop = serve_crm(crm)
    try:
        connector = RestCrmConnector(url, "token-t1", "u2", None)
        known = deliver(graph.sandbox, EMAIL, message(f"Ann <{ANN}>", "Offer", "o3@x"))
        stranger = deliver(graph.sandbox, EMAIL, message("x@stranger.example", "Hi", "s3@x"))
        for made in (known, stranger):
            set_categories(graph.sandbox, EMAIL, made, ["CRM/Send To CRM"])

        done = recording.record_tagged(mail_of(graph), connector, [EMAIL], "microsoft-u2", {})
        set_categories(graph.sandbox, EMAIL, known, ["CRM/Send To CRM"])  # tagged again
        recording.record_tagged(mail_of(graph), connector, [EMAIL], "microsoft-u2", done.labels)
    finally:
        stop()

    assert sorted(f.outcome for f in done.filed) == ["missing", "recorded"]
    [item] = crm.history("t1", "contact", contact)
    assert (item["subject"], item["body"]) == ("Offer", "About the offer.")
    assert categories(graph, known) == {"CRM/Recorded"}
    assert categories(graph, stranger) == {"CRM/Missing Contact"}


def test_EML5_headlines_are_the_category_s_newest_messages_with_subject_sender_and_time(
    graph: Graph,
) -> None:
    jg = "=?utf-8?q?J=C3=BCrgen_Gro=C3=9F?= <jg@example.de>"
    unnamed = f"From: bo@example.org\r\nTo: {EMAIL}\r\n\r\nNo subject.\r\n".encode()
    missing = {}
    for minutes, raw in (
        (20, message(jg, "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "h1@x")),
        (0, message(ANN, "Oldest", "h2@x")),
        (30, unnamed),
        (10, message(f"Ann Buyer <{ANN}>", "Quote", "h3@x")),
    ):  # arriving out of order
        at = START + timedelta(minutes=minutes)
        missing[minutes] = deliver(graph.sandbox, EMAIL, raw, received=at)
        set_categories(graph.sandbox, EMAIL, missing[minutes], ["Blue", "CRM/Missing Contact"])
    recorded = deliver(graph.sandbox, EMAIL, message(ANN, "Recorded", "h4@x"), received=START)
    set_categories(graph.sandbox, EMAIL, recorded, ["CRM/Recorded"])
    other = deliver(graph.sandbox, EMAIL, message(ANN, "Other", "h5@x"), received=START)
    set_categories(graph.sandbox, EMAIL, other, ["CRM/Missing Contact later"])
    mail = mail_of(graph)
    labels = mail.labels({})
    before = mail.client.calls

    shown = mail.headlines(labels[MISSING], 3)

    assert shown == [
        Headline(missing[30], "", "bo@example.org", START + timedelta(minutes=30)),
        Headline(
            missing[20],
            "Grüße aus Köln",
            "Jürgen Groß <jg@example.de>",
            START + timedelta(minutes=20),
        ),
        Headline(missing[10], "Quote", f"Ann Buyer <{ANN}>", START + timedelta(minutes=10)),
    ]
    assert mail.client.calls == before + 1  # one listing, ordered by Graph
    assert [h.id for h in mail_of(graph).headlines(labels[RECORDED], 10)] == [recorded]
    assert mail_of(graph).headlines(labels[SEND], 10) == []


def test_EML5_a_category_name_with_a_quote_is_found_and_a_headline_then_relabels(
    graph: Graph,
) -> None:
    made = deliver(graph.sandbox, EMAIL, message(ANN, "Offer", "h6@x"), received=START)
    set_categories(graph.sandbox, EMAIL, made, ["Ann's deals"])
    created = graph.ok(
        graph.post("me/outlook/masterCategories", {"displayName": "Ann's deals"}), 201
    )
    mail = mail_of(graph)
    labels = mail.labels({})

    [shown] = mail.headlines(created["id"], 5)
    mail.relabel(shown.id, [labels[RECORDED]], [created["id"]])

    assert (shown.id, shown.subject) == (made, "Offer")
    assert categories(graph, made) == {"CRM/Recorded"}
