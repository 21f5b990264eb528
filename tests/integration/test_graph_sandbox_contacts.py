"""Outlook contacts in the Graph sandbox over https: folders, CRUD, versions and 412,
extended properties holding a link key, categories, and per-folder delta with paging,
`@removed`, and delta links that expire (RUN-4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.microsoft.graph import expire_delta_links
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration

LINK_KEY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name crmsyncLinkKey"


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def folder_id(graph: Graph) -> str:
    return str(graph.ok(graph.get("me/contactFolders/contacts"))["id"])


def add(graph: Graph, folder: str, **fields: Any) -> dict[str, Any]:
    body = {"givenName": "Grace", "surname": "Hopper", **fields}
    created: dict[str, Any] = graph.ok(
        graph.post(f"me/contactFolders/{folder}/contacts", body), 201
    )
    return created


def whole_round(graph: Graph, url: str, page: int = 2) -> tuple[list[dict[str, Any]], str, int]:
    """Follows nextLinks to the deltaLink: the items, the deltaLink, the pages read."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = graph.ok(graph.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}))
        pages += 1
        items += answer["value"]
        if "@odata.deltaLink" in answer:
            return items, answer["@odata.deltaLink"], pages
        url = answer["@odata.nextLink"]


def test_a_created_contact_reads_back_with_graphs_shape(graph: Graph) -> None:
    folder = folder_id(graph)
    created = add(
        graph,
        folder,
        emailAddresses=[{"name": "Grace Hopper", "address": "grace@navy.example"}],
        businessPhones=["+1 555 0100"],
        categories=["CRM"],
    )

    read = graph.ok(graph.get(f"me/contactFolders/{folder}/contacts/{created['id']}"))

    assert read == created
    assert read["displayName"] == "Grace Hopper" and read["parentFolderId"] == folder
    assert read["@odata.etag"] == f'W/"{read["changeKey"]}"'
    assert read["categories"] == ["CRM"]
    assert read["createdDateTime"].endswith("Z")


def test_contact_folders_can_be_created_and_listed(graph: Graph) -> None:
    made = graph.ok(graph.post("me/contactFolders", {"displayName": "CRM"}), 201)

    listed = graph.ok(graph.get("me/contactFolders"))["value"]

    assert [f["displayName"] for f in listed] == ["CRM"]
    assert listed[0]["id"] == made["id"]
    assert listed[0]["parentFolderId"] == folder_id(graph)


def test_a_property_graph_does_not_know_is_refused(graph: Graph) -> None:
    answer = graph.post("me/contacts", {"givenName": "X", "favouriteColour": "red"})

    assert answer.status_code == 400 and answer.json()["error"]["code"] == "RequestBodyRead"


def test_every_write_gives_a_new_change_key(graph: Graph) -> None:
    created = add(graph, folder_id(graph))

    patched = graph.ok(graph.patch(f"me/contacts/{created['id']}", {"jobTitle": "Admiral"}))

    assert patched["changeKey"] != created["changeKey"]
    assert patched["jobTitle"] == "Admiral" and patched["givenName"] == "Grace"


def test_a_patch_with_a_stale_etag_gets_412_and_changes_nothing(graph: Graph) -> None:
    created = add(graph, folder_id(graph))
    graph.ok(graph.patch(f"me/contacts/{created['id']}", {"jobTitle": "Admiral"}))

    stale = graph.patch(
        f"me/contacts/{created['id']}",
        {"jobTitle": "Ensign"},
        headers={"If-Match": created["@odata.etag"]},
    )

    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert graph.ok(graph.get(f"me/contacts/{created['id']}"))["jobTitle"] == "Admiral"


def test_a_patch_with_the_current_etag_goes_through(graph: Graph) -> None:
    created = add(graph, folder_id(graph))

    answer = graph.patch(
        f"me/contacts/{created['id']}",
        {"jobTitle": "Admiral"},
        headers={"If-Match": created["@odata.etag"]},
    )

    assert answer.status_code == 200


def test_a_delete_with_a_stale_etag_gets_412(graph: Graph) -> None:
    created = add(graph, folder_id(graph))
    graph.ok(graph.patch(f"me/contacts/{created['id']}", {"jobTitle": "Admiral"}))

    answer = graph.delete(
        f"me/contacts/{created['id']}", headers={"If-Match": created["@odata.etag"]}
    )

    assert answer.status_code == 412
    assert graph.get(f"me/contacts/{created['id']}").status_code == 200


def test_a_deleted_contact_is_gone(graph: Graph) -> None:
    created = add(graph, folder_id(graph))

    assert graph.delete(f"me/contacts/{created['id']}").status_code == 204

    answer = graph.get(f"me/contacts/{created['id']}")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "ErrorItemNotFound"


def test_a_link_key_in_an_extended_property_reads_back_only_through_expand(graph: Graph) -> None:
    created = add(
        graph, folder_id(graph), singleValueExtendedProperties=[{"id": LINK_KEY, "value": "crm-42"}]
    )
    assert "singleValueExtendedProperties" not in created

    expanded = graph.ok(
        graph.get(
            f"me/contacts/{created['id']}",
            params={"$expand": f"singleValueExtendedProperties($filter=id eq '{LINK_KEY}')"},
        )
    )

    assert expanded["singleValueExtendedProperties"] == [{"id": LINK_KEY, "value": "crm-42"}]


def test_SYN1_several_extended_properties_read_back_in_one_expand(graph: Graph) -> None:
    odd = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Owner's code or name"
    held = [{"id": LINK_KEY, "value": "crm-42"}, {"id": odd, "value": "A-1"}]
    created = add(graph, folder_id(graph), singleValueExtendedProperties=held)
    quoted = odd.replace("'", "''")
    wanted = f"id eq '{LINK_KEY}' or id eq '{quoted}' or id eq 'String {{0}} Name none'"

    expanded = graph.ok(
        graph.get(
            f"me/contacts/{created['id']}",
            params={"$expand": f"singleValueExtendedProperties($filter={wanted})"},
        )
    )

    assert expanded["singleValueExtendedProperties"] == held


def test_contacts_can_be_found_by_their_link_key(graph: Graph) -> None:
    folder = folder_id(graph)
    wanted = add(graph, folder, singleValueExtendedProperties=[{"id": LINK_KEY, "value": "crm-42"}])
    add(graph, folder, singleValueExtendedProperties=[{"id": LINK_KEY, "value": "crm-43"}])
    add(graph, folder)

    found = graph.ok(
        graph.get(
            f"me/contactFolders/{folder}/contacts",
            params={
                "$filter": "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"'{LINK_KEY}' and ep/value eq 'CRM-42')"
            },
        )
    )["value"]

    assert [c["id"] for c in found] == [wanted["id"]]


def test_the_name_of_an_extended_property_is_case_sensitive(graph: Graph) -> None:
    created = add(
        graph, folder_id(graph), singleValueExtendedProperties=[{"id": LINK_KEY, "value": "crm-42"}]
    )
    other_case = LINK_KEY.replace("crmsyncLinkKey", "CRMSYNCLINKKEY")

    expanded = graph.ok(
        graph.get(
            f"me/contacts/{created['id']}",
            params={"$expand": f"singleValueExtendedProperties($filter=id eq '{other_case}')"},
        )
    )

    assert expanded["singleValueExtendedProperties"] == []


def test_listing_pages_with_next_links(graph: Graph) -> None:
    folder = folder_id(graph)
    made = {add(graph, folder, givenName=f"P{n}")["id"] for n in range(5)}

    seen: list[str] = []
    url = f"me/contactFolders/{folder}/contacts?$top=2"
    while url:
        answer = graph.ok(graph.get(url))
        seen += [c["id"] for c in answer["value"]]
        url = answer.get("@odata.nextLink", "")

    assert sorted(seen) == sorted(made)


def test_a_first_delta_round_pages_every_contact_then_gives_a_delta_link(graph: Graph) -> None:
    folder = folder_id(graph)
    made = {add(graph, folder, givenName=f"P{n}")["id"] for n in range(5)}

    items, delta_link, pages = whole_round(graph, f"me/contactFolders/{folder}/contacts/delta")

    assert {i["id"] for i in items} == made and pages == 3
    assert "$deltatoken=" in delta_link
    assert all(i["@odata.type"] == "#microsoft.graph.contact" for i in items)


def test_a_delta_link_reports_changes_since_and_deletions_as_removed(graph: Graph) -> None:
    folder = folder_id(graph)
    kept, changed, gone = (add(graph, folder, givenName=n) for n in ("Kept", "Changed", "Gone"))
    _, delta_link, _ = whole_round(graph, f"me/contactFolders/{folder}/contacts/delta")
    graph.ok(graph.patch(f"me/contacts/{changed['id']}", {"jobTitle": "Admiral"}))
    assert graph.delete(f"me/contacts/{gone['id']}").status_code == 204
    new = add(graph, folder, givenName="New")

    items, next_delta, _ = whole_round(graph, delta_link)

    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {changed["id"], gone["id"], new["id"]}
    assert by_id[changed["id"]]["jobTitle"] == "Admiral"
    assert by_id[gone["id"]]["@removed"] == {"reason": "deleted"}
    assert kept["id"] not in by_id
    assert whole_round(graph, next_delta)[0] == []


def test_RUN4_a_delta_link_of_an_empty_folder_reports_a_contact_made_and_deleted_since(
    graph: Graph,
) -> None:
    """A round resumed from a delta link is never a first round, even when the folder
    was empty when the link was issued: a contact made and deleted since is @removed (a
    client that linked it in between must hear of the delete)."""
    folder = folder_id(graph)
    _, delta_link, _ = whole_round(graph, f"me/contactFolders/{folder}/contacts/delta")
    gone = add(graph, folder, givenName="Gone")
    assert graph.delete(f"me/contacts/{gone['id']}").status_code == 204

    items, _, _ = whole_round(graph, delta_link)

    assert items == [{"id": gone["id"], "@removed": {"reason": "deleted"}}]


def test_a_change_while_a_round_is_paged_waits_for_the_next_round(graph: Graph) -> None:
    folder = folder_id(graph)
    made = [add(graph, folder, givenName=f"P{n}") for n in range(4)]
    first = graph.ok(
        graph.get(
            f"me/contactFolders/{folder}/contacts/delta",
            headers={"Prefer": "odata.maxpagesize=2"},
        )
    )
    graph.ok(graph.patch(f"me/contacts/{made[0]['id']}", {"jobTitle": "Admiral"}))

    rest, delta_link, _ = whole_round(graph, first["@odata.nextLink"])
    following, _, _ = whole_round(graph, delta_link)

    assert {i["id"] for i in first["value"] + rest} == {m["id"] for m in made}
    assert [i["id"] for i in following] == [made[0]["id"]]


def test_delta_honours_maxpagesize_and_says_so(graph: Graph) -> None:
    folder = folder_id(graph)
    for n in range(3):
        add(graph, folder, givenName=f"P{n}")

    answer = graph.get(
        f"me/contactFolders/{folder}/contacts/delta", headers={"Prefer": "odata.maxpagesize=1"}
    )

    assert len(answer.json()["value"]) == 1
    assert answer.headers["Preference-Applied"] == "odata.maxpagesize=1"


def test_delta_keeps_select_across_its_links(graph: Graph) -> None:
    folder = folder_id(graph)
    for n in range(3):
        add(graph, folder, givenName=f"P{n}", jobTitle="x")

    items, delta_link, _ = whole_round(
        graph, f"me/contactFolders/{folder}/contacts/delta?$select=givenName"
    )

    assert all("jobTitle" not in i and "givenName" in i for i in items)
    assert "select=givenName" in delta_link


def test_RUN4_an_expired_delta_link_gets_410_sync_state_not_found_with_a_fresh_start(
    graph: Graph,
) -> None:
    folder = folder_id(graph)
    add(graph, folder)
    _, delta_link, _ = whole_round(graph, f"me/contactFolders/{folder}/contacts/delta")
    expire_delta_links(graph.sandbox, EMAIL)

    answer = graph.get(delta_link)

    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "syncStateNotFound"
    restart = answer.headers["Location"]
    assert "$deltatoken" not in restart
    items, _, _ = whole_round(graph, restart)
    assert len(items) == 1


def test_RUN4_an_expired_next_link_mid_round_gets_410_too(graph: Graph) -> None:
    folder = folder_id(graph)
    for n in range(3):
        add(graph, folder, givenName=f"P{n}")
    first = graph.ok(
        graph.get(
            f"me/contactFolders/{folder}/contacts/delta",
            headers={"Prefer": "odata.maxpagesize=1"},
        )
    )
    expire_delta_links(graph.sandbox, EMAIL)

    assert graph.get(first["@odata.nextLink"]).status_code == 410


def test_a_delta_token_of_another_folder_is_refused(graph: Graph) -> None:
    other = graph.ok(graph.post("me/contactFolders", {"displayName": "CRM"}), 201)["id"]
    _, delta_link, _ = whole_round(graph, f"me/contactFolders/{folder_id(graph)}/contacts/delta")
    token = delta_link.split("$deltatoken=")[1]

    answer = graph.get(f"me/contactFolders/{other}/contacts/delta?$deltatoken={token}")

    assert answer.status_code == 400


def test_immutable_id_preference_returns_the_same_stable_ids(graph: Graph) -> None:
    created = add(graph, folder_id(graph))
    immutable = {"Prefer": 'IdType="ImmutableId"'}

    read = graph.ok(graph.get(f"me/contacts/{created['id']}", headers=immutable))
    graph.ok(graph.patch(f"me/contacts/{created['id']}", {"jobTitle": "x"}, headers=immutable))

    assert read["id"] == created["id"]
    assert graph.ok(graph.get(f"me/contacts/{created['id']}"))["id"] == created["id"]


def test_a_read_only_token_cannot_write_contacts(graph: Graph) -> None:
    token = graph.sandbox.issue_token(EMAIL, ["Contacts.Read"])

    answer = graph.post("me/contacts", {"givenName": "X"}, token=token)

    assert answer.status_code == 403
