"""The Google Contacts adapter (crmsync.providers.google.people) against the Google
sandbox over a real socket, through the real google-api-python-client: the
ProviderAccount promises hold for contacts (CON-2, CON-3, RUN-4, SYN-1, SYN-4, SYN-5,
AUTH-5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.oauth2.credentials import Credentials

from crmsync.engine.plan import Write
from crmsync.errors import (
    Conflict,
    CursorExpired,
    NotFound,
    PermanentError,
    PermissionDenied,
    RateLimited,
)
from crmsync.model import normalize
from crmsync.providers.google.account import GoogleAccount
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.people import GoogleContacts
from crmsync.transforms import CustomMap
from sandbox.google import people as sandbox_people
from sandbox.google.core import CONTACTS_SCOPES, SCOPE, GoogleSandbox
from sandbox.google.server import serve

pytestmark = pytest.mark.integration

EMAIL = "dana@example.com"


@pytest.fixture
def sandbox() -> Iterator[tuple[GoogleSandbox, str]]:
    google = GoogleSandbox()
    base, stop = serve(google, modules=["people"])
    yield google, base
    stop()


def client_of(
    google: GoogleSandbox,
    base: str,
    scopes: frozenset[str] = CONTACTS_SCOPES,
    **kw: Any,
) -> GoogleClient:
    token = google.issue_token(EMAIL, scopes)
    kw.setdefault("sleep", lambda s: None)
    return GoogleClient(Credentials(token), {"people": base}, **kw)


def contacts_of(google: GoogleSandbox, base: str, label: str = "CRM") -> GoogleContacts:
    return GoogleContacts(client_of(google, base), label)


def contact(**fields: Any) -> dict[str, Any]:
    raw = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "company": "Analytical Engines",
        "title": "Engineer",
        "emails": ["ada@example.com", "ada.l@example.org"],
        "phones": [
            {"kind": "work", "number": "+44 20 7946 0018"},
            {"kind": "mobile", "number": "+1 650-253-0000"},
            {"kind": "home", "number": "+49 30 901820"},
            {"kind": "fax", "number": "+44 20 7946 0019"},
            {"kind": "other", "number": "+33 1 42 68 53 00"},
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
    people: GoogleContacts, key: str = "key-1", ref: str | None = "L-1", **fields: Any
) -> str:
    write = Write(
        "provider", "create", "contact", fields=contact(**fields), key=key, ref=ref, in_scope=True
    )
    return people.create(write).id


def scope(people: GoogleContacts, person_id: str, in_scope: bool) -> str:
    return people.set_scope(
        Write("provider", "scope", "contact", person_id, in_scope=in_scope)
    ).version


def added(google: GoogleSandbox, person: dict[str, Any]) -> str:
    """A contact the user made in Google Contacts; its resource name."""
    return str(sandbox_people.add_contact(google, EMAIL, person)["resourceName"])


def user_groups(google: GoogleSandbox) -> list[str]:
    book = google.accounts[EMAIL].data["people"]
    return sorted(g.name for g in book.groups.values() if not g.system)


def live_contacts(google: GoogleSandbox) -> list[str]:
    book = google.accounts[EMAIL].data["people"]
    return sorted(name for name, c in book.contacts.items() if not c.deleted)


# -- fields ----------------------------------------------------------------------------------
def test_CON2_every_canonical_field_round_trips_with_phones_in_E164(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)

    person_id = create(people)

    record = people.get(person_id)
    assert record.fields == contact()
    assert (record.ref, record.in_scope, record.error) == ("L-1", True, None)
    assert record.modified is not None
    held = sandbox_people.get_contact(google, EMAIL, person_id)
    assert held is not None
    types = [(p["canonicalForm"], p["type"]) for p in held["phoneNumbers"]]
    assert types == [
        ("+442079460018", "work"),
        ("+16502530000", "mobile"),
        ("+4930901820", "home"),
        ("+442079460019", "workFax"),
        ("+33142685300", "other"),
    ]
    assert held["addresses"][0]["postalCode"] == "SW1Y 4JH"
    assert held["biographies"][0]["value"].endswith("Follow up in spring.")


def test_CON2_contacts_the_user_made_read_with_national_numbers_in_E164(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    made = added(
        google,
        {
            "names": [{"givenName": "Grace", "familyName": "Hopper"}],
            "emailAddresses": [{"value": " Grace@Example.COM "}],
            "phoneNumbers": [{"value": "(650) 253-0001", "type": "homeFax"}],
            "addresses": [{"city": "Arlington", "countryCode": "US"}],
        },
    )

    record = contacts_of(google, base).get(made)

    assert record.fields is not None
    assert record.fields["emails"] == ("grace@example.com",)
    assert [(p.kind, p.number) for p in record.fields["phones"]] == [("fax", "+16502530001")]
    assert (record.fields["address"].city, record.fields["address"].country) == (
        "Arlington",
        "US",
    )
    assert record.in_scope is False  # not under the label


# -- the label -------------------------------------------------------------------------------
def test_CON2_the_label_is_created_once_and_membership_is_the_sync_scope(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    person_id = create(contacts_of(google, base, "Clients"))
    again = contacts_of(google, base, "Clients")  # a later run, nothing cached
    unlabelled = added(google, {"names": [{"givenName": "Linus"}]})

    assert again.get(person_id).in_scope is True
    assert again.get(unlabelled).in_scope is False
    assert user_groups(google) == ["Clients"]

    scope(again, unlabelled, True)
    assert again.get(unlabelled).in_scope is True
    before = again.get(person_id).version
    version = scope(again, person_id, False)
    taken_off = again.get(person_id)
    assert (taken_off.in_scope, taken_off.fields is not None) == (False, True)
    assert version == taken_off.version != before
    assert user_groups(google) == ["Clients"]


def test_CON2_taking_the_label_off_a_contact_with_no_other_group_keeps_it(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    label = people.group()
    only_labelled = added(
        google,
        {
            "names": [{"givenName": "Alan"}],
            "memberships": [{"contactGroupMembership": {"contactGroupResourceName": label}}],
        },
    )

    scope(people, only_labelled, False)

    record = people.get(only_labelled)
    assert (record.in_scope, record.fields is not None) == (False, True)


def test_CON2_the_label_of_a_contact_gone_meanwhile_is_not_found(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    person_id = create(people)
    people.delete(Write("provider", "delete", "contact", person_id))

    with pytest.raises(NotFound):
        scope(people, person_id, True)
    with pytest.raises(NotFound):
        people.delete(Write("provider", "delete", "contact", person_id))
    assert people.get(person_id).fields is None


# -- change feed -----------------------------------------------------------------------------
def test_RUN4_changes_come_through_the_sync_token_with_label_changes_and_deletes(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    first = people.changes(None)
    assert first.records == []

    ours = create(people)
    theirs = added(google, {"names": [{"givenName": "Linus"}]})
    page = people.changes(first.cursor)
    assert {r.id: r.in_scope for r in page.records} == {ours: True, theirs: False}

    scope(people, theirs, True)
    scope(people, ours, False)
    labels = people.changes(page.cursor)
    assert {r.id: r.in_scope for r in labels.records} == {ours: False, theirs: True}

    people.delete(Write("provider", "delete", "contact", ours))
    (gone,) = people.changes(labels.cursor).records
    assert (gone.id, gone.fields, gone.gone) == (ours, None, True)


def test_RUN4_a_full_listing_pages_through_every_contact(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    for n in range(1005):  # one more page than pageSize 1000
        added(google, {"names": [{"givenName": f"P{n}"}]})

    page = contacts_of(google, base).changes(None)

    assert len({r.id for r in page.records}) == 1005
    assert page.cursor


def test_RUN4_an_expired_sync_token_is_cursor_expired(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    cursor = people.changes(None).cursor
    sandbox_people.expire_sync_tokens(google, EMAIL)

    with pytest.raises(CursorExpired):
        people.changes(cursor)
    assert people.changes(None).records == []


# -- creates and updates ---------------------------------------------------------------------
def test_SYN4_a_create_retried_after_a_crash_makes_one_contact(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)

    first = create(people, key="same-key")
    retried = create(contacts_of(google, base), key="same-key")  # a new run after the crash
    other = create(people, key="another-key")  # the same person again, on purpose

    assert retried == first != other
    assert live_contacts(google) == sorted([first, other])


@pytest.mark.parametrize("code", [500, 503, 504])
def test_SYN4_a_create_whose_answer_was_lost_is_not_made_twice_when_resent(
    sandbox: tuple[GoogleSandbox, str], code: int
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    people.group()
    google.inject(code, path=r"v1/people:createContact", lost=True)  # made, then an error

    made = create(people, key="lost-answer")

    assert live_contacts(google) == [made]


def test_SYN4_a_batch_whose_answer_was_lost_is_not_made_twice_when_resent(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    people.group()
    google.inject(503, path=r"v1/people:batchCreateContacts", lost=True)

    results = people.create_many(fresh(5))

    assert len(live_contacts(google)) == 5  # one each, though the batch was sent twice
    assert sorted(r.id for r in results if not isinstance(r, Exception)) == live_contacts(google)


def test_SYN4_a_retried_create_without_an_email_is_found_by_name(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)

    first = create(people, key="k-noemail", emails=[])
    retried = create(people, key="k-noemail", emails=[])

    assert retried == first
    assert live_contacts(google) == [first]


def test_SYN4_an_update_from_a_stale_version_is_a_conflict(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    person_id = create(people)
    before = people.get(person_id)
    written = people.update(
        Write("provider", "update", "contact", person_id, {"title": "CTO"}, before.version)
    )
    assert written.version == people.get(person_id).version != before.version

    with pytest.raises(Conflict):
        people.update(
            Write("provider", "update", "contact", person_id, {"title": "CEO"}, before.version)
        )

    assert people.get(person_id).fields["title"] == "CTO"  # type: ignore[index]


def test_SYN4_an_update_of_a_contact_the_feed_gave_is_one_request_and_stale_is_a_conflict(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    """The person at the version the engine read is the one the feed gave: the update
    is one updateContact with its etag; a contact the user changed after the feed read
    it is refused by Google (400 failedPrecondition), a Conflict, and nothing written."""
    google, base = sandbox
    people = contacts_of(google, base)
    first, second = create(people), create(people, key="key-2", emails=["b@example.com"])
    listed = {r.id: r for r in people.changes(None).records}
    requests = dict(google.requests)

    people.update(
        Write("provider", "update", "contact", first, {"title": "CTO"}, listed[first].version)
    )

    sent = {m: n - requests.get(m, 0) for m, n in google.requests.items()}
    assert {m: n for m, n in sent.items() if n} == {"PATCH": 1}
    other = contacts_of(google, base)  # the user edits the second contact meanwhile
    other.update(Write("provider", "update", "contact", second, {"title": "Chair"}))
    with pytest.raises(Conflict):
        people.update(
            Write("provider", "update", "contact", second, {"title": "CEO"}, listed[second].version)
        )
    assert people.get(second).fields["title"] == "Chair"  # type: ignore[index]
    assert people.get(first).fields["title"] == "CTO"  # type: ignore[index]


def test_SYN4_an_update_without_a_version_writes_over_the_current_one(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    person_id = create(people)

    people.update(Write("provider", "update", "contact", person_id, {"notes": "", "company": ""}))

    fields = people.get(person_id).fields
    assert fields is not None
    assert (fields["notes"], fields["company"], fields["title"]) == ("", "", "Engineer")


def test_SYN1_an_update_leaves_what_crmsync_does_not_map_untouched(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    person_id = added(
        google,
        {
            "names": [{"givenName": "Ada", "middleName": "King", "familyName": "Byron"}],
            "nicknames": [{"value": "Enchantress of Numbers"}],
            "emailAddresses": [
                {"value": "ada@home.example", "type": "home"},
                {"value": "ada@work.example", "type": "work"},
            ],
            "phoneNumbers": [{"value": "(650) 253-0000", "type": "pager"}],
            "organizations": [
                {"name": "Engines", "department": "Research"},
                {"name": "Royal Society"},
            ],
            "addresses": [{"city": "London", "type": "home", "extendedAddress": "Flat 2"}],
            "clientData": [{"key": "otherApp", "value": "42"}],
        },
    )
    current = people.get(person_id)
    assert current.fields is not None

    people.update(
        Write(
            "provider",
            "update",
            "contact",
            person_id,
            {
                "last_name": "Lovelace",
                "company": "Analytical Engines",
                "emails": ("ada@home.example", "ada@new.example"),
                "phones": (*current.fields["phones"], *contact()["phones"][:1]),
                "address": contact()["address"],
            },
            current.version,
        )
    )

    held = sandbox_people.get_contact(google, EMAIL, person_id)
    assert held is not None
    name = held["names"][0]
    assert (name["givenName"], name["middleName"], name["familyName"]) == (
        "Ada",
        "King",
        "Lovelace",
    )
    assert held["nicknames"][0]["value"] == "Enchantress of Numbers"
    emails = [(e["value"], e.get("type")) for e in held["emailAddresses"]]
    assert emails == [("ada@home.example", "home"), ("ada@new.example", None)]
    phones = [(p["value"], p["type"]) for p in held["phoneNumbers"]]
    assert phones == [("(650) 253-0000", "pager"), ("+442079460018", "work")]
    orgs = [(o["name"], o.get("department")) for o in held["organizations"]]
    assert orgs == [("Analytical Engines", "Research"), ("Royal Society", None)]
    address = held["addresses"][0]
    assert (address["type"], address["extendedAddress"], address["city"]) == (
        "home",
        "Flat 2",
        "London",
    )
    assert "SW1Y 4JH" in address["formattedValue"]
    assert {d["key"]: d["value"] for d in held["clientData"]} == {"otherApp": "42"}
    assert people.get(person_id).fields["last_name"] == "Lovelace"  # type: ignore[index]


# -- matching --------------------------------------------------------------------------------
def test_CON3_find_by_email_finds_contacts_in_and_out_of_the_label(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    labelled = create(people, emails=["ada@example.com"])
    outside = added(google, {"emailAddresses": [{"value": "Grace@Example.com"}]})
    added(google, {"emailAddresses": [{"value": "ada@example.co"}]})
    added(google, {"emailAddresses": [{"value": "ada@example.community"}]})

    found = people.find_by_email(["ada@example.com", "GRACE@example.com", "nobody@example.com"])

    assert {r.id: r.in_scope for r in found} == {labelled: True, outside: False}


def test_CON3_the_account_dispatches_contacts_to_the_adapter(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    account = GoogleAccount({"contact": contacts_of(google, base)})
    person_id = account.create(
        Write("provider", "create", "contact", fields=contact(), key="k-acc", in_scope=False)
    ).id

    (found,) = account.find_by_email("contact", ["ada.l@example.org"])
    assert (found.id, found.in_scope) == (person_id, False)
    account.set_scope(Write("provider", "scope", "contact", person_id, in_scope=True))
    assert account.get("contact", person_id).in_scope is True


# -- failures --------------------------------------------------------------------------------
def test_SYN5_a_contact_holding_data_of_the_wrong_shape_fails_alone(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    bad = added(google, {"emailAddresses": [{"value": 42}]})
    good = added(google, {"names": [{"givenName": "Grace"}]})

    records = {r.id: r for r in contacts_of(google, base).changes(None).records}

    assert (records[bad].fields, records[good].error) == ({}, None)
    assert "wrong shape" in (records[bad].error or "")
    assert records[good].fields["first_name"] == "Grace"  # type: ignore[index]


def test_SYN5_throttling_is_retried_honouring_retry_after(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    waits: list[float] = []
    people = GoogleContacts(client_of(google, base, sleep=waits.append))
    person_id = create(people)
    google.inject(429, reason="rateLimitExceeded", retry_after=2, path="connections")

    assert [r.id for r in people.changes(None).records] == [person_id]
    assert waits == [2.0]
    google.inject(429, reason="rateLimitExceeded", retry_after=300)
    with pytest.raises(RateLimited):
        people.get(person_id)


def test_AUTH5_a_grant_without_the_contacts_scope_is_permission_denied(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    person_id = create(contacts_of(google, base))
    read_only_grant = frozenset({SCOPE + "contacts.readonly"})
    read_only = GoogleContacts(client_of(google, base, read_only_grant))

    assert read_only.get(person_id).fields == contact()
    with pytest.raises(PermissionDenied):
        read_only.update(Write("provider", "update", "contact", person_id, {"title": "CTO"}))
    assert read_only.get(person_id).fields["title"] == "Engineer"  # type: ignore[index]


# -- batch creates -----------------------------------------------------------------------
def fresh(n: int) -> list[Write]:
    return [
        Write(
            "provider",
            "create",
            "contact",
            fields=contact(first_name=f"P{i}", emails=[f"p{i}@example.com"], phones=[]),
            key=f"batch-{i}",
            ref=f"L-{i}",
            in_scope=True,
        )
        for i in range(n)
    ]


def calls(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.call for r in caplog.records if r.getMessage() == "google request"]  # type: ignore[attr-defined]


def test_CON2_creates_go_to_google_200_per_request_in_the_crm_group(
    sandbox: tuple[GoogleSandbox, str], caplog: pytest.LogCaptureFixture
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    people.group()  # the "CRM" group exists before the batch
    caplog.set_level("INFO", logger="crmsync.providers.google")

    results = people.create_many(fresh(250))

    assert calls(caplog).count("people batchCreateContacts") == 2
    assert "people createContact" not in calls(caplog)
    assert len(results) == 250 and len(set(live_contacts(google))) == 250
    for i in (0, 199, 249):  # each result is the contact made for that write
        result = results[i]
        assert not isinstance(result, Exception)
        person = people.get(result.id)
        assert person.fields is not None and person.fields["first_name"] == f"P{i}"
        assert person.in_scope


def test_SYN5_a_batch_google_refuses_is_made_one_by_one_so_only_the_bad_contact_fails(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    people.group()
    google.inject(400, reason="badRequest", path=r"v1/people:batchCreateContacts")
    google.inject(400, reason="badRequest", path=r"v1/people:createContact")  # the first

    results = people.create_many(fresh(3))

    assert isinstance(results[0], Exception)
    assert [isinstance(r, Exception) for r in results[1:]] == [False, False]
    assert len(live_contacts(google)) == 2


def test_SYN5_throttling_fails_the_whole_batch_to_be_retried(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = contacts_of(google, base)
    people.group()
    google.inject(
        429, reason="rateLimitExceeded", path=r"v1/people:batchCreateContacts", retry_after=120
    )

    with pytest.raises(RateLimited):
        people.create_many(fresh(3))
    assert live_contacts(google) == []


# -- custom fields (SYN-1) ---------------------------------------------------------------

CUSTOM = CustomMap.of(
    {
        "industry": {"provider": "Industry"},
        "stage": {"provider": "Stage", "transform": {"enum": {"lead": "Prospect"}}},
    }
)


def entries(google: GoogleSandbox, person_id: str) -> list[tuple[str, str]]:
    """The contact's userDefined entries as Google holds them."""
    person = sandbox_people.get_contact(google, EMAIL, person_id)
    assert person is not None
    return [(e["key"], e["value"]) for e in person.get("userDefined") or ()]


def edit_user_defined(
    google: GoogleSandbox, base: str, person_id: str, items: list[dict[str, str]]
) -> None:
    """The user sets the contact's userDefined entries in Google Contacts."""
    client = client_of(google, base)
    people = client.service("people", "v1").people()
    current = client.execute(people.get(resourceName=person_id, personFields="names"), "get")
    body = {"etag": current["etag"], "userDefined": items}
    request = people.updateContact(
        resourceName=person_id, updatePersonFields="userDefined", body=body
    )
    client.execute(request, "update")


def test_SYN1_mapped_custom_fields_are_user_defined_entries_and_the_users_own_stay(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = GoogleContacts(client_of(google, base), custom=CUSTOM)
    fields = {**contact(), "custom.industry": "Shipping", "custom.stage": None}
    write = Write("provider", "create", "contact", fields=fields, key="k", in_scope=True)
    person_id = people.create(write).id
    assert entries(google, person_id) == [("Industry", "Shipping")]
    mine = [{"key": "Hobby", "value": "Chess"}, {"key": "Industry", "value": "Shipping"}]
    edit_user_defined(google, base, person_id, mine)

    record = people.get(person_id)
    assert record.fields is not None
    assert (record.fields["custom.industry"], record.fields["custom.stage"]) == ("Shipping", None)
    change = {"custom.industry": "Mining", "custom.stage": "lead"}
    people.update(Write("provider", "update", "contact", person_id, change, record.version))
    assert entries(google, person_id) == [
        ("Hobby", "Chess"),
        ("Industry", "Mining"),
        ("Stage", "Prospect"),
    ]

    now = people.get(person_id)
    people.update(
        Write("provider", "update", "contact", person_id, {"custom.industry": None}, now.version)
    )
    assert entries(google, person_id) == [("Hobby", "Chess"), ("Stage", "Prospect")]
    assert people.get(person_id).fields["first_name"] == "Ada"  # type: ignore[index]


def test_SYN1_a_contact_whose_custom_value_the_transform_cannot_read_fails_alone(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    odd = added(google, {"userDefined": [{"key": "Stage", "value": "Partner"}]})
    fine = added(google, {"names": [{"givenName": "Grace"}]})

    records = {
        r.id: r
        for r in GoogleContacts(client_of(google, base), custom=CUSTOM).changes(None).records
    }

    assert records[odd].error is not None and "custom.stage" in records[odd].error
    assert "'Partner'" in records[odd].error
    assert records[fine].error is None


def test_SYN1_a_batch_create_with_a_custom_value_that_cannot_be_written_fails_it_alone(
    sandbox: tuple[GoogleSandbox, str],
) -> None:
    google, base = sandbox
    people = GoogleContacts(client_of(google, base), custom=CUSTOM)
    good = contact(emails=["ada@example.com"])
    writes = [
        Write("provider", "create", "contact", fields=good, key="k-1", in_scope=True),
        Write(
            "provider",
            "create",
            "contact",
            fields={**contact(emails=["bad@example.com"]), "custom.stage": "client"},
            key="k-2",
            in_scope=True,
        ),
    ]

    results = people.create_many(writes)

    assert not isinstance(results[0], Exception)
    assert isinstance(results[1], PermanentError) and "custom.stage" in str(results[1])
    assert live_contacts(google) == [results[0].id]
