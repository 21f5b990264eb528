"""Outlook mail in the Graph sandbox over https, as crmsync's e-mail recording uses it:
the master category list (EML-1), messages tagged with a category listed, read, fetched
as MIME and with their attachments, and re-tagged (EML-1, EML-2, EML-4), per-folder
message delta with `@removed` and expiring links (RUN-4), and change notifications when
mail arrives or its categories change (RUN-3). Every JSON answer is also checked here
against Graph's v1.0 schema."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from sandbox.microsoft.core import graph_time
from sandbox.microsoft.mail import deliver, expire_message_delta, set_categories
from sandbox.microsoft.schema import graph_schema
from sandbox.microsoft.subscriptions import flush
from tests.integration.microsoft_sandbox import ALL_SCOPES, EMAIL, Graph, Receiver, served_graph

pytestmark = pytest.mark.integration

MAIL_SCOPES = (*ALL_SCOPES, "Mail.ReadWrite", "MailboxSettings.ReadWrite")
TAG = "CRM/Logged"
PDF = b"%PDF-1.4 quarterly figures\x00\x01\x02"
PNG = b"\x89PNG\r\n\x1a\nlogo"


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph(MAIL_SCOPES) as served:
        yield served


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.close()


def checked(graph: Graph, answer: Any, answers: str, status: int = 200) -> Any:
    body = graph.ok(answer, status)
    problems = graph_schema().check_answer(body, answers)
    assert not problems, f"{answers}: {problems}"
    return body


def mime(
    subject: str = "Quarterly figures",
    sender: str = "Grace Hopper <grace@navy.example>",
    to: str = f"Ada Lovelace <{EMAIL}>",
    cc: str | None = "Charles Babbage <charles@engine.example>",
    message_id: str = "<q1-figures@navy.example>",
    text: str = "Hello Ada,\nthe figures are attached.",
    html: str | None = None,
    pdf: bool = False,
    inline_png: bool = False,
    date: str = "Mon, 02 Mar 2026 08:30:00 +0000",
) -> bytes:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Message-ID"] = message_id
    message["Date"] = date
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if inline_png:
        message.get_payload()[-1].add_related(  # type: ignore[union-attr]
            PNG, "image", "png", cid="<logo@navy.example>", disposition="inline"
        )
    if pdf:
        message.add_attachment(PDF, "application", "pdf", filename="figures.pdf")
    return message.as_bytes()


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


# -- master categories (EML-1) -------------------------------------------------------------------
def test_EML1_a_created_category_is_listed_and_read_back_with_its_colour(graph: Graph) -> None:
    made = checked(
        graph,
        graph.post("me/outlook/masterCategories", {"displayName": TAG, "color": "preset9"}),
        "outlookCategory",
        201,
    )

    listed = checked(graph, graph.get("me/outlook/masterCategories"), "Collection(outlookCategory)")
    one = checked(graph, graph.get(f"me/outlook/masterCategories/{made['id']}"), "outlookCategory")

    assert made["displayName"] == TAG and made["color"] == "preset9"
    assert [c["id"] for c in listed["value"]] == [made["id"]]
    assert one == {"id": made["id"], "displayName": TAG, "color": "preset9"}


def test_EML1_a_category_name_taken_in_any_letter_case_is_a_409(graph: Graph) -> None:
    graph.ok(graph.post("me/outlook/masterCategories", {"displayName": TAG}), 201)

    again = graph.post("me/outlook/masterCategories", {"displayName": "crm/LOGGED"})

    assert again.status_code == 409
    assert len(graph.ok(graph.get("me/outlook/masterCategories"))["value"]) == 1


def test_EML1_a_category_without_a_name_or_with_a_colour_off_the_presets_is_a_400(
    graph: Graph,
) -> None:
    nameless = graph.post("me/outlook/masterCategories", {"color": "preset1"})
    off_palette = graph.post(
        "me/outlook/masterCategories", {"displayName": TAG, "color": "preset99"}
    )

    assert nameless.status_code == 400 and off_palette.status_code == 400
    assert graph.ok(graph.get("me/outlook/masterCategories"))["value"] == []


def test_EML1_a_patch_changes_the_colour_but_never_the_name(graph: Graph) -> None:
    made = graph.ok(
        graph.post("me/outlook/masterCategories", {"displayName": TAG, "color": "preset0"}), 201
    )
    path = f"me/outlook/masterCategories/{made['id']}"

    recoloured = checked(graph, graph.patch(path, {"color": "preset15"}), "outlookCategory")
    renamed = graph.patch(path, {"displayName": "CRM/Filed"})

    assert recoloured["color"] == "preset15" and recoloured["displayName"] == TAG
    assert renamed.status_code == 400
    assert graph.ok(graph.get(path))["displayName"] == TAG


def test_EML1_a_deleted_category_is_gone_and_its_messages_keep_the_name(graph: Graph) -> None:
    made = graph.ok(graph.post("me/outlook/masterCategories", {"displayName": TAG}), 201)
    message_id = deliver(graph.sandbox, EMAIL, mime())
    set_categories(graph.sandbox, EMAIL, message_id, [TAG])
    path = f"me/outlook/masterCategories/{made['id']}"

    assert graph.delete(path).status_code == 204

    assert graph.get(path).status_code == 404
    assert graph.delete(path).status_code == 404
    assert graph.ok(graph.get(f"me/messages/{message_id}"))["categories"] == [TAG]


def test_EML1_categories_need_the_mailbox_settings_scopes(graph: Graph) -> None:
    mail_only = graph.sandbox.issue_token(EMAIL, ["Mail.ReadWrite"])
    read_only = graph.sandbox.issue_token(EMAIL, ["MailboxSettings.Read"])

    refused_read = graph.get("me/outlook/masterCategories", token=mail_only)
    allowed_read = graph.get("me/outlook/masterCategories", token=read_only)
    refused_write = graph.post("me/outlook/masterCategories", {"displayName": TAG}, token=read_only)

    assert refused_read.status_code == 403
    assert refused_read.json()["error"]["code"] == "ErrorAccessDenied"
    assert allowed_read.status_code == 200
    assert refused_write.status_code == 403


# -- messages (EML-1, EML-2, EML-4) --------------------------------------------------------------
def test_EML2_a_delivered_message_reads_back_with_what_its_mime_says(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime(pdf=True), received=at(8, 31))
    inbox = graph.ok(graph.get("me/mailFolders/inbox"))

    read = checked(graph, graph.get(f"me/messages/{message_id}"), "message")

    assert read["id"] == message_id and read["parentFolderId"] == inbox["id"]
    assert read["subject"] == "Quarterly figures"
    assert read["from"] == {
        "emailAddress": {"name": "Grace Hopper", "address": "grace@navy.example"}
    }
    assert [r["emailAddress"]["address"] for r in read["toRecipients"]] == [EMAIL]
    assert [r["emailAddress"]["name"] for r in read["ccRecipients"]] == ["Charles Babbage"]
    assert read["internetMessageId"] == "<q1-figures@navy.example>"
    assert read["receivedDateTime"] == "2026-03-02T08:31:00.0000000Z"
    assert read["sentDateTime"] == "2026-03-02T08:30:00.0000000Z"
    assert read["hasAttachments"] is True and read["categories"] == []
    assert (
        read["body"]["contentType"] == "html"
        and "the figures are attached" in (read["body"]["content"])
    )
    assert read["@odata.etag"] == f'W/"{read["changeKey"]}"'


def test_EML4_a_text_body_is_given_as_text_when_preferred(graph: Graph) -> None:
    message_id = deliver(
        graph.sandbox, EMAIL, mime(html="<html><body><p>Hello <b>Ada</b></p></body></html>")
    )

    answer = graph.get(
        f"me/messages/{message_id}", headers={"Prefer": 'outlook.body-content-type="text"'}
    )
    read = checked(graph, answer, "message")

    assert read["body"]["contentType"] == "text"
    assert "Hello Ada" in read["body"]["content"] and "<b>" not in read["body"]["content"]
    assert answer.headers["Preference-Applied"] == 'outlook.body-content-type="text"'


def test_EML2_the_mime_value_is_the_bytes_that_arrived(graph: Graph) -> None:
    raw = mime(pdf=True)
    message_id = deliver(graph.sandbox, EMAIL, raw)

    answer = graph.get(f"me/messages/{message_id}/$value")

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.content == raw


def test_EML2_attachments_are_file_attachments_with_their_bytes(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime(html="<p>Logo</p>", inline_png=True, pdf=True))

    listed = checked(
        graph, graph.get(f"me/messages/{message_id}/attachments"), "Collection(attachment)"
    )["value"]
    by_name = {a["name"]: a for a in listed}
    pdf = by_name["figures.pdf"]
    one = checked(
        graph, graph.get(f"me/messages/{message_id}/attachments/{pdf['id']}"), "attachment"
    )

    assert pdf["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert base64.b64decode(pdf["contentBytes"]) == PDF
    assert pdf["contentType"] == "application/pdf" and pdf["size"] == len(PDF)
    assert pdf["isInline"] is False and one == pdf
    logo = [a for a in listed if a["contentType"] == "image/png"]
    assert len(logo) == 1 and logo[0]["isInline"] is True
    assert logo[0]["contentId"] == "logo@navy.example"
    assert base64.b64decode(logo[0]["contentBytes"]) == PNG


def test_EML2_only_inline_pictures_leave_has_attachments_false(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime(html="<p>Logo</p>", inline_png=True))

    read = graph.ok(graph.get(f"me/messages/{message_id}"))
    attached = graph.ok(graph.get(f"me/messages/{message_id}/attachments"))["value"]

    assert read["hasAttachments"] is False and len(attached) == 1


def test_EML2_an_unknown_message_is_a_404_everywhere(graph: Graph) -> None:
    for path in (
        "me/messages/AAMkAnothere",
        "me/messages/AAMkAnothere/$value",
        "me/messages/AAMkAnothere/attachments",
        "me/mailFolders/nosuchfolder/messages",
    ):
        answer = graph.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "ErrorItemNotFound"
    assert graph.patch("me/messages/AAMkAnothere", {"categories": [TAG]}).status_code == 404


def test_EML2_a_message_is_read_only_through_its_own_folder(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime(), folder="sentitems")

    in_sent = graph.get(f"me/mailFolders/sentitems/messages/{message_id}")
    in_inbox = graph.get(f"me/mailFolders/inbox/messages/{message_id}")

    assert in_sent.status_code == 200 and in_sent.json()["isRead"] is True
    assert in_inbox.status_code == 404


def test_EML2_tagging_through_patch_changes_the_version_and_needs_no_master_category(
    graph: Graph,
) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime())
    before = graph.ok(graph.get(f"me/messages/{message_id}"))

    patched = checked(
        graph, graph.patch(f"me/messages/{message_id}", {"categories": [TAG]}), "message"
    )

    assert patched["categories"] == [TAG]
    assert patched["changeKey"] != before["changeKey"]
    assert patched["@odata.etag"] != before["@odata.etag"]
    assert graph.ok(graph.get("me/outlook/masterCategories"))["value"] == []


def test_EML2_a_patch_with_a_stale_etag_is_a_412_and_changes_nothing(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime())
    before = graph.ok(graph.get(f"me/messages/{message_id}"))
    set_categories(graph.sandbox, EMAIL, message_id, ["Red"])

    stale = graph.patch(
        f"me/messages/{message_id}",
        {"categories": [TAG]},
        headers={"If-Match": before["@odata.etag"]},
    )

    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.ok(graph.get(f"me/messages/{message_id}"))["categories"] == ["Red"]


def test_EML2_a_patch_of_what_a_received_message_cannot_change_is_a_400(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime())

    subject = graph.patch(f"me/messages/{message_id}", {"subject": "Changed"})
    made_up = graph.patch(f"me/messages/{message_id}", {"crmId": "42"})
    not_a_list = graph.patch(f"me/messages/{message_id}", {"categories": TAG})

    assert [subject.status_code, made_up.status_code, not_a_list.status_code] == [400] * 3
    assert graph.ok(graph.get(f"me/messages/{message_id}"))["subject"] == "Quarterly figures"


def test_EML2_reading_needs_a_mail_scope_and_tagging_mail_readwrite(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime())
    settings_only = graph.sandbox.issue_token(EMAIL, ["MailboxSettings.ReadWrite"])
    read_only = graph.sandbox.issue_token(EMAIL, ["Mail.Read"])

    assert graph.get("me/messages", token=settings_only).status_code == 403
    assert graph.get(f"me/messages/{message_id}/$value", token=read_only).status_code == 200
    refused = graph.patch(f"me/messages/{message_id}", {"categories": [TAG]}, token=read_only)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "ErrorAccessDenied"


def test_EML1_the_category_filter_lists_only_tagged_mail_in_any_letter_case(
    graph: Graph,
) -> None:
    tagged = deliver(graph.sandbox, EMAIL, mime(subject="Tagged"), received=at(8))
    deliver(graph.sandbox, EMAIL, mime(subject="Untagged"), received=at(9))
    other = deliver(graph.sandbox, EMAIL, mime(subject="Other tag"), received=at(10))
    set_categories(graph.sandbox, EMAIL, tagged, [TAG, "Blue"])
    set_categories(graph.sandbox, EMAIL, other, ["CRM/Logged later"])

    found = checked(
        graph,
        graph.get("me/messages", params={"$filter": "categories/any(c:c eq 'crm/logged')"}),
        "Collection(message)",
    )

    assert [m["id"] for m in found["value"]] == [tagged]


def test_EML1_a_quote_in_a_category_name_is_doubled_in_the_filter(graph: Graph) -> None:
    message_id = deliver(graph.sandbox, EMAIL, mime())
    set_categories(graph.sandbox, EMAIL, message_id, ["Ada's"])

    found = graph.ok(
        graph.get("me/messages", params={"$filter": "categories/any(x: x eq 'Ada''s')"})
    )

    assert [m["id"] for m in found["value"]] == [message_id]


def test_EML1_other_filters_and_orderings_are_a_400(graph: Graph) -> None:
    for params in (
        {"$filter": "subject eq 'Quarterly figures'"},
        {"$filter": "categories/any(c:c ne 'X')"},
        {"$orderby": "subject"},
        {"$select": "subject,nonsense"},
    ):
        answer = graph.get("me/messages", params=params)
        assert answer.status_code == 400, params


def test_EML1_ordering_by_received_time_needs_it_first_in_the_filter(graph: Graph) -> None:
    first = deliver(graph.sandbox, EMAIL, mime(subject="First"), received=at(8))
    second = deliver(graph.sandbox, EMAIL, mime(subject="Second"), received=at(9))
    late = deliver(graph.sandbox, EMAIL, mime(subject="Late"), received=at(11))
    for message_id in (first, second, late):
        set_categories(graph.sandbox, EMAIL, message_id, [TAG])
    category = f"categories/any(c:c eq '{TAG}')"

    refused = graph.get("me/messages", params={"$filter": category, "$orderby": "receivedDateTime"})
    since = f"receivedDateTime ge {graph_time(at(8, 30))} and {category}"
    found = graph.ok(
        graph.get("me/messages", params={"$filter": since, "$orderby": "receivedDateTime asc"})
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "InefficientFilter"
    assert [m["id"] for m in found["value"]] == [second, late]


def test_EML1_messages_are_newest_first_unless_asked_and_folders_keep_their_own(
    graph: Graph,
) -> None:
    old = deliver(graph.sandbox, EMAIL, mime(subject="Old"), received=at(8))
    sent = deliver(graph.sandbox, EMAIL, mime(subject="Sent"), folder="sentitems", received=at(9))
    new = deliver(graph.sandbox, EMAIL, mime(subject="New"), received=at(10))

    everything = graph.ok(graph.get("me/messages"))["value"]
    oldest_first = graph.ok(graph.get("me/messages", params={"$orderby": "receivedDateTime asc"}))
    inbox = checked(graph, graph.get("me/mailFolders/inbox/messages"), "Collection(message)")
    folders = checked(graph, graph.get("me/mailFolders"), "Collection(mailFolder)")

    assert [m["id"] for m in everything] == [new, sent, old]
    assert [m["id"] for m in oldest_first["value"]] == [old, sent, new]
    assert [m["id"] for m in inbox["value"]] == [new, old]
    counts = {f["displayName"]: f["totalItemCount"] for f in folders["value"]}
    assert counts == {"Inbox": 2, "Sent Items": 1}


def test_EML1_a_listing_pages_through_every_message_once_keeping_select(graph: Graph) -> None:
    made = {
        deliver(graph.sandbox, EMAIL, mime(subject=f"Note {i}"), received=at(8, i))
        for i in range(5)
    }
    url: str | None = "me/messages?$top=2&$select=subject"
    seen: list[str] = []
    pages = 0
    while url:
        page = checked(graph, graph.get(url), "Collection(message)")
        pages += 1
        for item in page["value"]:
            assert set(item) == {"@odata.etag", "id", "subject"}
            seen.append(item["id"])
        url = page.get("@odata.nextLink")

    assert pages == 3 and sorted(seen) == sorted(made) and len(seen) == 5


# -- message delta (RUN-4) -----------------------------------------------------------------------
def whole_round(graph: Graph, url: str, page: int = 2) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = checked(
            graph,
            graph.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}),
            "Collection(message)",
        )
        pages += 1
        items += answer["value"]
        if "@odata.deltaLink" in answer:
            return items, answer["@odata.deltaLink"], pages
        url = answer["@odata.nextLink"]


def test_RUN4_message_delta_pages_the_folder_then_reports_changes_and_removals(
    graph: Graph,
) -> None:
    ids = [
        deliver(graph.sandbox, EMAIL, mime(subject=f"M{i}"), received=at(8, i)) for i in range(3)
    ]
    deliver(graph.sandbox, EMAIL, mime(subject="Sent"), folder="sentitems")

    first, delta_link, pages = whole_round(graph, "me/mailFolders/inbox/messages/delta")
    set_categories(graph.sandbox, EMAIL, ids[0], [TAG])
    assert graph.delete(f"me/messages/{ids[1]}").status_code == 204
    arrived = deliver(graph.sandbox, EMAIL, mime(subject="New"))
    second, next_delta, _ = whole_round(graph, delta_link)
    third, _, _ = whole_round(graph, next_delta)

    assert pages == 2 and sorted(m["id"] for m in first) == sorted(ids)
    by_id = {m["id"]: m for m in second}
    assert set(by_id) == {ids[0], ids[1], arrived}
    assert by_id[ids[0]]["categories"] == [TAG]
    assert by_id[ids[1]]["@removed"] == {"reason": "deleted"}
    assert "@removed" not in by_id[arrived]
    assert third == []


def test_RUN4_an_expired_message_delta_link_is_a_410_with_a_location(graph: Graph) -> None:
    deliver(graph.sandbox, EMAIL, mime())
    _, delta_link, _ = whole_round(graph, "me/mailFolders/inbox/messages/delta")

    expire_message_delta(graph.sandbox, EMAIL)
    gone = graph.get(delta_link)

    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "syncStateNotFound"
    assert (
        gone.headers["Location"].rstrip("?").endswith("/v1.0/me/mailFolders/inbox/messages/delta")
    )
    again, _, _ = whole_round(graph, gone.headers["Location"])
    assert len(again) == 1


def test_RUN4_expiring_message_delta_leaves_other_delta_links_working(graph: Graph) -> None:
    _, contacts_link, _ = whole_round_contacts(graph)

    expire_message_delta(graph.sandbox, EMAIL)

    assert graph.get(contacts_link).status_code == 200


def whole_round_contacts(graph: Graph) -> tuple[list[Any], str, int]:
    answer = graph.ok(graph.get("me/contactFolders/contacts/contacts/delta"))
    return answer["value"], answer["@odata.deltaLink"], 1


def test_RUN4_a_delta_link_of_one_folder_is_refused_by_another(graph: Graph) -> None:
    deliver(graph.sandbox, EMAIL, mime())
    _, delta_link, _ = whole_round(graph, "me/mailFolders/inbox/messages/delta")

    other = delta_link.replace("mailFolders/inbox", "mailFolders/sentitems")

    assert graph.get(other).status_code == 400
    assert graph.get("me/mailFolders/inbox/messages/delta?$filter=isRead eq false").status_code == (
        400
    )


def test_RUN4_message_delta_filtered_by_received_time_keeps_its_filter_in_later_rounds(
    graph: Graph,
) -> None:
    deliver(graph.sandbox, EMAIL, mime(subject="Old"), received=at(7))
    recent = deliver(graph.sandbox, EMAIL, mime(subject="Recent"), received=at(9))
    since = f"receivedDateTime ge {graph_time(at(8))}"

    first, delta_link, _ = whole_round(
        graph, f"me/mailFolders/inbox/messages/delta?$filter={since}"
    )
    late = deliver(graph.sandbox, EMAIL, mime(subject="Late arrival"), received=at(6))
    fresh = deliver(graph.sandbox, EMAIL, mime(subject="Fresh"), received=at(10))
    second, _, _ = whole_round(graph, delta_link)

    assert [m["id"] for m in first] == [recent]
    assert [m["id"] for m in second] == [fresh] and late not in {m["id"] for m in second}


# -- change notifications (RUN-3) ----------------------------------------------------------------
def subscribe(graph: Graph, receiver: Receiver, resource: str, minutes: int = 4000) -> Any:
    body = {
        "changeType": "created,updated",
        "notificationUrl": receiver.url,
        "resource": resource,
        "expirationDateTime": graph_time(graph.clock.now + timedelta(minutes=minutes)),
        "clientState": "s3cret",
    }
    return graph.post("subscriptions", body)


def test_RUN3_arriving_mail_and_a_category_change_notify_the_subscriber(
    graph: Graph, receiver: Receiver
) -> None:
    made = checked(
        graph, subscribe(graph, receiver, "me/mailFolders('inbox')/messages"), "subscription", 201
    )
    message_id = deliver(graph.sandbox, EMAIL, mime())
    deliver(graph.sandbox, EMAIL, mime(subject="Sent"), folder="sentitems")
    set_categories(graph.sandbox, EMAIL, message_id, [TAG])
    patched = graph.ok(graph.patch(f"me/messages/{message_id}", {"categories": []}))

    assert flush(graph.sandbox) == [202]

    [post] = receiver.received
    assert (
        graph_schema().check(
            {k: v for k, v in post.items() if k != "path"}, "changeNotificationCollection"
        )
        == []
    )
    items = post["value"]
    assert [i["changeType"] for i in items] == ["created", "updated", "updated"]
    assert {i["resourceData"]["id"] for i in items} == {message_id}
    assert items[0]["subscriptionId"] == made["id"] and items[0]["clientState"] == "s3cret"
    assert items[0]["resource"].endswith(f"/Messages/{message_id}")
    assert items[0]["resourceData"]["@odata.type"] == "#Microsoft.Graph.Message"
    assert items[-1]["resourceData"]["@odata.etag"] == patched["@odata.etag"]


def test_RUN3_a_subscription_on_all_messages_hears_every_folder(
    graph: Graph, receiver: Receiver
) -> None:
    graph.ok(subscribe(graph, receiver, "me/messages"), 201)
    inbox = deliver(graph.sandbox, EMAIL, mime())
    sent = deliver(graph.sandbox, EMAIL, mime(subject="Sent"), folder="sentitems")

    flush(graph.sandbox)

    ids = [i["resourceData"]["id"] for p in receiver.received for i in p["value"]]
    assert ids == [inbox, sent]


def test_RUN3_message_subscriptions_need_a_mail_scope_and_last_at_most_10080_minutes(
    graph: Graph, receiver: Receiver
) -> None:
    no_mail = graph.sandbox.issue_token(EMAIL, ["Contacts.ReadWrite"])

    refused = graph.post(
        "subscriptions",
        {
            "changeType": "created",
            "notificationUrl": receiver.url,
            "resource": "me/messages",
            "expirationDateTime": graph_time(graph.clock.now + timedelta(minutes=60)),
        },
        token=no_mail,
    )
    too_long = subscribe(graph, receiver, "me/messages", minutes=10_081)
    longest = subscribe(graph, receiver, "me/messages", minutes=10_080)

    assert refused.status_code == 403
    assert too_long.status_code == 400
    assert longest.status_code == 201


# -- batching and throttling ---------------------------------------------------------------------
def test_EML2_mime_fetched_in_a_batch_comes_base64_encoded(graph: Graph) -> None:
    raws = [mime(subject=f"Batch {i}", pdf=i == 1) for i in range(2)]
    ids = [deliver(graph.sandbox, EMAIL, raw) for raw in raws]
    requests = [
        {"id": str(i), "method": "GET", "url": f"/me/messages/{message_id}/$value"}
        for i, message_id in enumerate(ids)
    ]

    answered = graph.ok(graph.post("$batch", {"requests": requests}))["responses"]

    by_id = {r["id"]: r for r in answered}
    for i, raw in enumerate(raws):
        assert by_id[str(i)]["status"] == 200
        assert base64.b64decode(by_id[str(i)]["body"]) == raw


def test_EML1_a_throttled_mail_listing_is_a_429_with_retry_after_then_answers(
    graph: Graph,
) -> None:
    deliver(graph.sandbox, EMAIL, mime())
    graph.sandbox.inject(429, path=r"^me/messages", retry_after=7)

    throttled = graph.get("me/messages")
    after = graph.get("me/messages")

    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert after.status_code == 200 and len(after.json()["value"]) == 1


def test_EML4_encoded_headers_and_an_unknown_charset_still_read(graph: Graph) -> None:
    raw = (
        b"From: =?utf-8?q?Ren=C3=A9e_Dupr=C3=A9?= <renee@example.fr>\r\n"
        b"To: ada@contoso.example, Bob <bob@contoso.example>\r\n"
        b"Subject: =?iso-8859-1?q?R=E9sum=E9?=\r\n"
        b"Message-ID: <resume@example.fr>\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"\r\n"
        b"Bonjour\r\n"
    )

    message_id = deliver(graph.sandbox, EMAIL, raw)
    read = graph.ok(graph.get(f"me/messages/{message_id}"))

    assert read["subject"] == "R\u00e9sum\u00e9"
    assert read["from"]["emailAddress"] == {
        "name": "Ren\u00e9e Dupr\u00e9",
        "address": "renee@example.fr",
    }
    assert [r["emailAddress"]["address"] for r in read["toRecipients"]] == [
        "ada@contoso.example",
        "bob@contoso.example",
    ]
    assert "Bonjour" in read["body"]["content"] and read["hasAttachments"] is False
    assert graph.get(f"me/messages/{message_id}/$value").content == raw
