"""The Outlook contacts adapter (crmsync.providers.microsoft.contacts) against the
Microsoft Graph sandbox over https: the ProviderAccount promises hold for contacts
(CON-2, CON-3, RUN-4, SYN-4, SYN-5, AUTH-3) and Graph's errors read as crmsync's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crmsync.engine.plan import Write
from crmsync.errors import (
    Conflict,
    CursorExpired,
    GrantRevoked,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from crmsync.model import normalize
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.contacts import GraphContacts
from crmsync.transforms import CustomMap
from sandbox.microsoft.contacts import state_of
from sandbox.microsoft.graph import expire_delta_links
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def client_of(graph: Graph, token: str | None = None, **kw: Any) -> GraphClient:
    kw.setdefault("sleep", lambda s: None)
    return GraphClient(token or graph.token, f"{graph.base}/v1.0", graph.session, **kw)


def contacts_of(graph: Graph, category: str = "CRM", **kw: Any) -> GraphContacts:
    return GraphContacts(client_of(graph, **kw), category)


def contact(**fields: Any) -> dict[str, Any]:
    raw = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines",
        "title": "Engineer",
        "emails": ["ada@example.com", "ada.l@example.org"],
        "phones": [
            {"kind": "work", "number": "+44 20 7946 0018"},
            {"kind": "work", "number": "+44 20 7946 0020"},
            {"kind": "home", "number": "+49 30 901820"},
            {"kind": "mobile", "number": "+1 650-253-0000"},
        ],
        "address": {
            "street": "12 St James's Square",
            "city": "London",
            "region": "Greater London",
            "postal_code": "SW1Y 4JH",
            "country": "United Kingdom",
        },
        "notes": "Met at the Difference Engine demo.\nFollow up in spring.",
        **fields,
    }
    return normalize("contact", raw)


def create(
    contacts: GraphContacts,
    key: str = "key-1",
    ref: str | None = "L-1",
    in_scope: bool = True,
    **fields: Any,
) -> str:
    write = Write(
        "provider",
        "create",
        "contact",
        fields=contact(**fields),
        key=key,
        ref=ref,
        in_scope=in_scope,
    )
    return contacts.create(write).id


def held(graph: Graph) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every live contact in the sandbox: (folder name, given name, categories)."""
    state = state_of(graph.sandbox.users[EMAIL])
    names = {f.id: f.display_name for f in state.folders.values()}
    return sorted(
        (
            names[c.folder_id],
            str(c.fields.get("givenName")),
            tuple(c.fields.get("categories") or ()),
        )
        for c in state.contacts.values()
        if not c.deleted
    )


def added(graph: Graph, folder: str = "contacts", **fields: Any) -> dict[str, Any]:
    """A contact the user made in Outlook."""
    path = "me/contacts" if folder == "contacts" else f"me/contactFolders/{folder}/contacts"
    made: dict[str, Any] = graph.ok(graph.post(path, fields), 201)
    return made


# -- fields ------------------------------------------------------------------------------------
def test_CON2_every_mapped_field_round_trips(graph: Graph) -> None:
    contacts = contacts_of(graph)

    contact_id = create(contacts)

    record = contacts.get(contact_id)
    assert record.fields == contact()
    assert (record.ref, record.in_scope, record.error) == ("L-1", True, None)
    assert record.modified is not None and record.version.startswith('W/"')


def test_CON2_fields_land_in_graphs_contact_properties(graph: Graph) -> None:
    contacts = contacts_of(graph)
    contact_id = create(contacts)

    raw = graph.ok(graph.get(f"me/contacts/{contact_id}"))

    assert (raw["givenName"], raw["surname"]) == ("Ada", "Lovelace")
    assert (raw["companyName"], raw["jobTitle"]) == ("Analytical Engines", "Engineer")
    assert [e["address"] for e in raw["emailAddresses"]] == ["ada@example.com", "ada.l@example.org"]
    assert raw["businessPhones"] == ["+442079460018", "+442079460020"]
    assert (raw["homePhones"], raw["mobilePhone"]) == (["+4930901820"], "+16502530000")
    assert raw["businessAddress"] == {
        "street": "12 St James's Square",
        "city": "London",
        "state": "Greater London",
        "postalCode": "SW1Y 4JH",
        "countryOrRegion": "United Kingdom",
    }
    assert raw["personalNotes"].endswith("Follow up in spring.")


def test_CON2_a_phone_kind_graph_cannot_hold_keeps_its_number_as_a_business_phone(
    graph: Graph,
) -> None:
    contacts = contacts_of(graph)
    phones = [
        {"kind": "fax", "number": "+44 20 7946 0019"},
        {"kind": "mobile", "number": "+1 650-253-0000"},
        {"kind": "mobile", "number": "+1 650-253-0001"},
    ]

    record = contacts.get(create(contacts, phones=phones))

    assert record.error is None and record.fields is not None
    assert [(p.kind, p.number) for p in record.fields["phones"]] == [
        ("work", "+442079460019"),
        ("work", "+16502530001"),
        ("mobile", "+16502530000"),
    ]


def test_SYN5_a_contact_holding_data_of_the_wrong_shape_fails_alone(graph: Graph) -> None:
    """Graph's schema forbids the wrong shape (the sandbox refuses to write it, as Graph
    does), so the bad contact is planted in the mailbox and the sandbox's schema check
    of its answers is off: crmsync must still survive an answer Graph should not give."""
    contacts = contacts_of(graph)
    refused = graph.post("me/contacts", {"givenName": "Odd", "businessAddress": "10 Downing St"})
    assert refused.status_code == 400 and "businessAddress" in refused.json()["error"]["message"]
    bad = added(graph, categories=["CRM"], givenName="Odd")
    state_of(graph.sandbox.users[EMAIL]).contacts[bad["id"]].fields["businessAddress"] = "10 St"
    graph.sandbox.check_schema = False
    good = added(graph, categories=["CRM"], givenName="Fine")

    page = contacts.changes(None)

    by_id = {r.id: r for r in page.records}
    assert by_id[bad["id"]].error and by_id[bad["id"]].fields == {}
    assert by_id[good["id"]].error is None
    assert by_id[good["id"]].fields is not None and by_id[good["id"]].fields["first_name"] == "Fine"


# -- the category is the scope (CON-2) -----------------------------------------------------------
def test_CON2_only_contacts_carrying_the_crm_category_are_in_scope(graph: Graph) -> None:
    outside = added(graph, givenName="Outside", categories=["Suppliers"])
    tagged = added(graph, givenName="Tagged", categories=["Suppliers", "crm"])  # any case
    contacts = contacts_of(graph)

    inside = create(contacts, key="k-in")
    page = contacts.changes(None)

    scope = {r.id: r.in_scope for r in page.records}
    assert scope == {outside["id"]: False, tagged["id"]: True, inside: True}
    assert contacts.get(outside["id"]).in_scope is False
    assert contacts.get(inside).in_scope is True
    assert held(graph) == [
        ("Contacts", "Ada", ("CRM",)),
        ("Contacts", "Outside", ("Suppliers",)),
        ("Contacts", "Tagged", ("Suppliers", "crm")),
    ]
    assert graph.ok(graph.get("me/contactFolders"))["value"] == []  # no folder is made


def test_CON2_a_contact_created_out_of_scope_carries_no_category(graph: Graph) -> None:
    contacts = contacts_of(graph)

    record = contacts.get(create(contacts, in_scope=False))

    assert record.in_scope is False and record.fields == contact()
    assert held(graph) == [("Contacts", "Ada", ())]


def test_CON2_set_scope_tags_and_untags_a_contact_keeping_its_id_data_and_other_categories(
    graph: Graph,
) -> None:
    contacts = contacts_of(graph)
    first = create(contacts, in_scope=False)
    graph.ok(graph.patch(f"me/contacts/{first}", {"categories": ["Suppliers"]}))

    moved_in = contacts.set_scope(Write("provider", "scope", "contact", first, in_scope=True))
    inside = contacts.get(first)
    again = contacts.set_scope(Write("provider", "scope", "contact", first, in_scope=True))
    tagged = held(graph)
    moved_out = contacts.set_scope(Write("provider", "scope", "contact", first, in_scope=False))
    outside = contacts.get(first)

    assert moved_in.id == moved_out.id == first  # the link stays with the same id
    assert again.version == moved_in.version  # already tagged: nothing written
    assert inside.in_scope is True and inside.fields == contact() and inside.ref == "L-1"
    assert outside.in_scope is False and outside.fields == contact()
    assert tagged == [("Contacts", "Ada", ("Suppliers", "CRM"))]
    assert held(graph) == [("Contacts", "Ada", ("Suppliers",))]


# -- change feed (RUN-4) -------------------------------------------------------------------------
def test_RUN4_changes_come_through_the_delta_link_with_removed_as_gone(graph: Graph) -> None:
    contacts = contacts_of(graph)
    kept = create(contacts, key="k-1")
    dropped = create(contacts, key="k-2", first_name="Bea")
    first = contacts.changes(None)

    contacts.update(Write("provider", "update", "contact", kept, {"title": "Countess"}))
    contacts.delete(Write("provider", "delete", "contact", dropped))
    second = contacts.changes(first.cursor)

    assert sorted(r.id for r in first.records) == sorted([kept, dropped])
    by_id = {r.id: r for r in second.records}
    assert by_id[kept].fields is not None and by_id[kept].fields["title"] == "Countess"
    assert by_id[dropped].fields is None and by_id[dropped].gone
    assert contacts.changes(second.cursor).records == []


def test_RUN4_a_full_round_follows_next_links_to_the_delta_link(graph: Graph) -> None:
    contacts = contacts_of(graph)
    made = {create(contacts, key=f"k-{n}", first_name=f"N{n}") for n in range(7)}
    delta = "me/contactFolders/contacts/contacts/delta"

    pages = list(contacts.client.pages(delta, "graph contacts.delta", page_size=3))
    page = contacts.changes(None)

    assert [bool(p.get("@odata.nextLink")) for p in pages] == [True, True, False]
    assert "@odata.deltaLink" in pages[-1]
    assert {r.id for r in page.records} == made and "$deltatoken" in page.cursor


@pytest.mark.parametrize("code", ["syncStateNotFound", "resyncRequired"])
def test_RUN4_a_delta_link_refused_with_400_and_a_resync_code_is_cursor_expired(
    graph: Graph, code: str
) -> None:
    contacts = contacts_of(graph)
    cursor = contacts.changes(None).cursor
    graph.sandbox.inject(400, code=code, path=r"contacts/delta")

    with pytest.raises(CursorExpired):
        contacts.changes(cursor)


def test_RUN4_an_expired_delta_link_is_cursor_expired_and_a_full_round_follows(
    graph: Graph,
) -> None:
    contacts = contacts_of(graph)
    first_id = create(contacts)
    cursor = contacts.changes(None).cursor
    expire_delta_links(graph.sandbox, EMAIL)

    with pytest.raises(CursorExpired):
        contacts.changes(cursor)
    again = contacts.changes(None)

    assert [r.id for r in again.records] == [first_id]
    assert contacts.changes(again.cursor).records == []


# -- writes (SYN-4) ------------------------------------------------------------------------------
def test_SYN4_a_retried_create_with_the_same_key_makes_no_second_contact(graph: Graph) -> None:
    contacts = contacts_of(graph)

    first = create(contacts, key="same-key")
    retried = create(contacts_of(graph), key="same-key")  # a new run after a crash
    other = create(contacts, key="another-key")  # the same person again, on purpose

    assert retried == first != other
    assert held(graph) == [("Contacts", "Ada", ("CRM",)), ("Contacts", "Ada", ("CRM",))]


def test_SYN4_an_update_from_a_stale_version_is_a_conflict(graph: Graph) -> None:
    contacts = contacts_of(graph)
    contact_id = create(contacts)
    stale = contacts.get(contact_id).version
    contacts.update(Write("provider", "update", "contact", contact_id, {"title": "Countess"}))

    with pytest.raises(Conflict):
        contacts.update(
            Write("provider", "update", "contact", contact_id, {"title": "Lady"}, version=stale)
        )

    record = contacts.get(contact_id)
    assert record.fields is not None and record.fields["title"] == "Countess"


def test_SYN4_an_update_at_the_current_version_patches_only_the_fields_given(
    graph: Graph,
) -> None:
    contacts = contacts_of(graph)
    contact_id = create(contacts)
    graph.ok(
        graph.patch(
            f"me/contacts/{contact_id}",
            {"nickName": "Enchantress"},
        )
    )
    current = contacts.get(contact_id).version

    result = contacts.update(
        Write(
            "provider",
            "update",
            "contact",
            contact_id,
            {"company": "", "phones": ()},
            version=current,
        )
    )

    record = contacts.get(contact_id)
    assert result.version == record.version != current
    assert record.fields == contact(company="", phones=[])
    raw = graph.ok(graph.get(f"me/contacts/{contact_id}"))
    assert raw["nickName"] == "Enchantress"


def test_a_deleted_contact_reads_as_gone_and_a_second_delete_is_not_found(graph: Graph) -> None:
    contacts = contacts_of(graph)
    contact_id = create(contacts)

    contacts.delete(Write("provider", "delete", "contact", contact_id))

    assert contacts.get(contact_id).fields is None
    with pytest.raises(NotFound):
        contacts.delete(Write("provider", "delete", "contact", contact_id))


# -- twins (CON-3) -------------------------------------------------------------------------------
def test_CON3_find_by_email_finds_contacts_tagged_or_not_in_any_folder(graph: Graph) -> None:
    contacts = contacts_of(graph)
    inside = create(contacts)
    folder = graph.ok(graph.post("me/contactFolders", {"displayName": "Suppliers"}), 201)
    outside = added(
        graph,
        folder["id"],
        givenName="Ada",
        emailAddresses=[{"address": "ADA@example.com", "name": "Ada"}],
    )
    added(graph, givenName="Other", emailAddresses=[{"address": "other@example.com"}])

    found = contacts.find_by_email(["ada@example.com"])

    assert sorted(r.id for r in found) == sorted([inside, outside["id"]])
    assert {r.id: r.in_scope for r in found} == {inside: True, outside["id"]: False}
    assert contacts.find_by_email(["nobody@example.com"]) == []


# -- Graph's errors ------------------------------------------------------------------------------
def test_throttling_is_retried_honouring_retry_after(graph: Graph) -> None:
    waits: list[float] = []
    contacts = contacts_of(graph, sleep=waits.append)
    graph.sandbox.inject(429, path=r"contacts/delta", times=2, retry_after=7)

    page = contacts.changes(None)

    assert page.cursor and waits == [7.0, 7.0]


def test_throttling_past_the_last_attempt_is_rate_limited_with_retry_after(graph: Graph) -> None:
    waits: list[float] = []
    contacts = contacts_of(graph, sleep=waits.append, attempts=3)
    graph.sandbox.inject(429, path=r"contacts/delta", times=3, retry_after=5)

    with pytest.raises(RateLimited) as raised:
        contacts.changes(None)

    assert raised.value.retry_after == 5.0 and waits == [5.0, 5.0]


def test_an_outage_on_a_read_is_retried(graph: Graph) -> None:
    contacts = contacts_of(graph)
    contact_id = create(contacts)
    graph.sandbox.inject(503, method="GET", path=r"contacts/", times=2)

    assert contacts.get(contact_id).fields == contact()


def test_an_outage_on_a_create_is_transient_and_not_resent(graph: Graph) -> None:
    contacts = contacts_of(graph)
    graph.sandbox.inject(503, method="POST", path=r"/contacts$", times=1)

    with pytest.raises(TransientError):
        create(contacts)

    assert held(graph) == []
    create(contacts)  # the cycle's retry looks for the key first, then makes it once
    assert held(graph) == [("Contacts", "Ada", ("CRM",))]


def test_another_refusal_is_permanent_and_names_graphs_error_code(graph: Graph) -> None:
    contacts = contacts_of(graph)
    graph.sandbox.inject(400, code="ErrorInvalidRequest", path=r"contacts/delta")

    with pytest.raises(PermanentError, match="ErrorInvalidRequest"):
        contacts.changes(None)


def test_AUTH3_a_refused_token_is_grant_revoked(graph: Graph) -> None:
    contacts = GraphContacts(client_of(graph, token="EwB-not-a-token"))

    with pytest.raises(GrantRevoked):
        contacts.changes(None)


def test_the_token_is_read_on_every_request_and_never_logged(
    graph: Graph, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = iter(["EwB-stale", graph.token])
    caplog.set_level("DEBUG", logger="crmsync.providers.microsoft")
    client = client_of(graph, token=lambda: next(tokens))

    with pytest.raises(GrantRevoked):
        client.request("GET", "me/contactFolders", "graph contactFolders.list")
    client.request("GET", "me/contactFolders", "graph contactFolders.list")

    text = " ".join(str(r.__dict__) for r in caplog.records)
    assert "graph contactFolders.list" in text and graph.token not in text


# -- custom fields (SYN-1) ---------------------------------------------------------------------
CUSTOM = CustomMap.of(
    {
        "industry": {"provider": "Industry"},
        "code": {"provider": "Owner's code", "transform": {"prefix": "ACME-"}},
    }
)


def test_SYN1_custom_values_round_trip_as_extended_properties_and_clear(graph: Graph) -> None:
    contacts = GraphContacts(client_of(graph), "CRM", CUSTOM)
    fields = {**contact(), "custom.industry": "Software", "custom.code": "4711"}
    made = contacts.create(Write("provider", "create", "contact", fields=fields, key="k-1"))

    first = contacts.get(made.id).fields or {}
    assert (first["custom.industry"], first["custom.code"]) == ("Software", "4711")
    [stored] = state_of(graph.sandbox.users[EMAIL]).contacts.values()
    assert "ACME-4711" in stored.extended.values()

    change = {"custom.industry": None, "custom.code": "42"}
    contacts.update(Write("provider", "update", "contact", made.id, change, version=made.version))

    [round_one] = contacts.changes(None).records
    assert round_one.fields is not None
    assert (round_one.fields["custom.industry"], round_one.fields["custom.code"]) == (None, "42")
    assert round_one.fields["first_name"] == "Ada", "other fields stay"


def test_SYN1_a_value_the_transform_cannot_read_makes_that_contact_fail_alone(
    graph: Graph,
) -> None:
    contacts = GraphContacts(client_of(graph), "CRM", CUSTOM)
    plain = GraphContacts(
        client_of(graph), "CRM", CustomMap.of({"x": {"provider": "Owner's code"}})
    )
    bad = plain.create(
        Write("provider", "create", "contact", fields={**contact(), "custom.x": "Z-1"}, key="k-1")
    )

    record = contacts.get(bad.id)

    assert record.fields == {} and record.error and "custom.code" in record.error
