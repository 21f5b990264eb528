"""Contacts (CON-1..CON-8): sync scope, first-cycle matching, creation, accounts, deletes,
shared addresses and where new provider contacts land, driven through SyncWorld."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.settings import SettingsError
from crmsync.testing import SyncWorld

PROVIDERS = ("google", "microsoft")
both_providers = pytest.mark.parametrize("provider", PROVIDERS)

ADA: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "company": "Analytical Engines Ltd",
    "title": "Analyst",
    "emails": ["ada@example.com"],
    "phones": [{"kind": "work", "number": "+44 20 7946 0018"}],
    "address": {
        "street": "12 St James's Square",
        "city": "London",
        "region": "",
        "postal_code": "SW1Y 4JH",
        "country": "GB",
    },
}
GRACE: dict[str, Any] = {
    "first_name": "Grace",
    "last_name": "Hopper",
    "emails": ["grace@example.org"],
    "phones": [{"kind": "mobile", "number": "+1 202 555 0143"}],
}
HEAD_OFFICE = {
    "street": "1 Engine Row",
    "city": "Manchester",
    "region": "",
    "postal_code": "M1 1AA",
    "country": "GB",
}
NEW_OFFICE = {
    "street": "2 Difference Lane",
    "city": "Cambridge",
    "region": "",
    "postal_code": "CB2 1TN",
    "country": "GB",
}


# -- helpers ---------------------------------------------------------------------------
def crm_member(world: SyncWorld, fields: dict[str, Any]) -> str:
    """A CRM contact in the user's contact sync group."""
    cid = world.crm.create("contact", fields)
    world.crm.add_to_sync_group(cid, user=world.user)
    return cid


def labelled(world: SyncWorld, fields: dict[str, Any]) -> str:
    """A provider contact carrying the sync label."""
    pid = world.provider.create("contact", fields)
    world.provider.label(pid)
    return pid


def pairs(world: SyncWorld) -> set[tuple[str | None, str | None]]:
    return {(link["crm_id"], link["provider_id"]) for link in world.links("contact")}


def emails(records: list[dict[str, Any]]) -> list[str]:
    return sorted(e for r in records for e in r["emails"])


def linked_pair(world: SyncWorld, fields: dict[str, Any] = ADA) -> tuple[str, str]:
    """A CRM group member synced once, so it has a labelled provider twin."""
    cid = crm_member(world, fields)
    world.sync()
    (link,) = [link for link in world.links("contact") if link["crm_id"] == cid]
    return cid, link["provider_id"]


def assert_converged(world: SyncWorld) -> None:
    """Another cycle finds nothing to do and writes nothing on either side."""
    crm_before = {r["id"]: r["version"] for r in world.crm.all("contact")}
    provider_before = {r["id"]: r["version"] for r in world.provider.all("contact")}
    run = world.sync()
    assert run["status"] == "ok"
    assert run["counts"] == {}
    assert {r["id"]: r["version"] for r in world.crm.all("contact")} == crm_before
    assert {r["id"]: r["version"] for r in world.provider.all("contact")} == provider_before


# -- CON-1: the CRM side is the user's contact sync group -------------------------------
@both_providers
def test_CON1_only_sync_group_members_reach_the_provider(provider: str) -> None:
    world = SyncWorld(provider=provider)
    crm_member(world, ADA)
    world.crm.create("contact", GRACE)

    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com"]


def test_CON1_contact_in_another_users_sync_group_is_not_synced() -> None:
    world = SyncWorld()
    cid = world.crm.create("contact", ADA)
    world.crm.add_to_sync_group(cid, user="u2")

    world.sync()

    assert world.provider.all("contact") == []
    assert world.links("contact") == []


def test_CON1_sync_group_chosen_in_settings_is_the_crm_side() -> None:
    world = SyncWorld(settings={"contact_group": "key-accounts"})
    chosen = world.crm.create("contact", ADA)
    world.crm.add_to_sync_group(chosen, group="key-accounts")
    own = world.crm.create("contact", GRACE)
    world.crm.add_to_sync_group(own, group="u1")  # the user's own group, not chosen

    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com"]
    assert world.crm.sync_group() == [chosen]


def test_CON1_sync_group_cannot_change_after_contacts_synced() -> None:
    world = SyncWorld()
    crm_member(world, ADA)
    world.sync()

    with pytest.raises(SettingsError, match=r"contact_group.*reset"):
        world.settings(contact_group="key-accounts")

    assert world.effective_settings()["contact_group"] is None
    world.sync()
    assert emails(world.provider.all("contact")) == ["ada@example.com"]


def test_CON1_sync_group_may_change_before_the_first_cycle() -> None:
    world = SyncWorld()
    world.settings(contact_group="key-accounts")
    world.settings(contact_group="partners")

    assert world.effective_settings()["contact_group"] == "partners"


def test_CON1_bad_sync_group_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="contact_group"):
        SyncWorld(settings={"contact_group": "  "})


@both_providers
def test_CON1_reset_unlinks_everything_then_the_new_group_syncs_without_duplicates(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    ada = crm_member(world, ADA)
    world.sync()
    grace = world.crm.create("contact", GRACE)
    world.crm.add_to_sync_group(ada, group="key-accounts")
    world.crm.add_to_sync_group(grace, group="key-accounts")

    assert world.reset("contact") == 1
    assert world.links("contact") == []
    world.settings(contact_group="key-accounts")
    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com", "grace@example.org"]
    assert {link["crm_id"] for link in world.links("contact")} == {ada, grace}
    assert len(world.crm.all("contact")) == 2


@both_providers
def test_CON1_contact_added_to_sync_group_later_syncs_next_cycle(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid = world.crm.create("contact", GRACE)
    world.sync()
    world.crm.update("contact", cid, {"title": "Rear Admiral"})
    world.sync()
    assert world.provider.all("contact") == []

    world.crm.add_to_sync_group(cid)
    world.sync()

    (twin,) = world.provider.all("contact")
    assert twin["emails"] == ["grace@example.org"]
    assert twin["title"] == "Rear Admiral"
    assert world.provider.labelled() == [twin["id"]]


# -- CON-2: the provider side is the sync label ----------------------------------------
@both_providers
def test_CON2_default_label_name_is_CRM(provider: str) -> None:
    assert SyncWorld(provider=provider).effective_settings()["contact_label"] == "CRM"


@both_providers
def test_CON2_unlabelled_provider_contacts_do_not_sync(provider: str) -> None:
    world = SyncWorld(provider=provider)
    world.provider.create("contact", GRACE)

    world.sync()

    assert world.crm.all("contact") == []
    assert world.crm.leads() == []
    assert world.queue() == []


@both_providers
def test_CON2_contact_put_under_label_later_syncs_to_crm(provider: str) -> None:
    world = SyncWorld(provider=provider)
    pid = world.provider.create("contact", GRACE)
    world.sync()

    world.provider.label(pid)
    world.sync()

    (created,) = world.crm.all("contact")
    assert created["emails"] == ["grace@example.org"]
    assert world.crm.sync_group() == [created["id"]]


# -- CON-3: first-cycle matching by e-mail ---------------------------------------------
@both_providers
def test_CON3_links_by_email_case_insensitive_and_trimmed(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid = crm_member(world, {**ADA, "emails": ["  Ada@Example.COM "]})
    pid = labelled(world, {**ADA, "emails": ["ada@EXAMPLE.com"]})

    run = world.sync()

    assert pairs(world) == {(cid, pid)}
    assert [r["id"] for r in world.crm.all("contact")] == [cid]
    assert [r["id"] for r in world.provider.all("contact")] == [pid]
    assert "create" not in run["counts"].get("contact", {})


@both_providers
def test_CON3_links_when_one_of_several_emails_matches(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid = crm_member(world, {**ADA, "emails": ["ada@work.example", "ada@example.com"]})
    pid = labelled(world, {**ADA, "emails": ["ADA@example.com"]})

    world.sync()

    assert pairs(world) == {(cid, pid)}
    assert len(world.crm.all("contact")) == 1
    assert len(world.provider.all("contact")) == 1


@both_providers
def test_CON3_matched_contacts_are_not_duplicated_by_a_full_relisting(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid = crm_member(world, ADA)
    pid = labelled(world, {**ADA, "emails": ["ADA@example.com "]})
    world.sync()

    world.crm.expire_cursors()
    world.provider.expire_cursors()
    world.sync()

    assert pairs(world) == {(cid, pid)}
    assert len(world.crm.all("contact")) == 1
    assert len(world.provider.all("contact")) == 1


@both_providers
def test_CON3_group_member_matching_unlabelled_provider_contact_is_not_duplicated(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    crm_member(world, ADA)
    existing = world.provider.create("contact", {**ADA, "emails": ["Ada@Example.com"]})

    world.sync()

    assert [r["id"] for r in world.provider.all("contact")] == [existing]
    assert world.provider.labelled() == [existing]


@both_providers
def test_CON3_labelled_contact_matching_crm_contact_outside_group_is_not_duplicated(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    existing = world.crm.create("contact", ADA)
    labelled(world, {**ADA, "emails": ["ADA@example.com"]})

    world.sync()

    assert [r["id"] for r in world.crm.all("contact")] == [existing]


@both_providers
def test_CON3_later_group_member_is_linked_to_its_unchanged_unlabelled_twin(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    crm_member(world, GRACE)
    world.sync()
    existing = world.provider.create("contact", {**ADA, "emails": [" ADA@example.com"]})
    ada = world.crm.create("contact", ADA)
    world.sync()  # neither is in the sync yet; the provider contact does not change again

    world.crm.add_to_sync_group(ada)
    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com", "grace@example.org"]
    assert (ada, existing) in pairs(world)
    assert existing in world.provider.labelled()
    assert_converged(world)


@both_providers
def test_CON3_later_labelled_contact_is_linked_to_its_unchanged_twin_outside_the_group(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    crm_member(world, GRACE)
    world.sync()
    existing = world.crm.create("contact", ADA)
    ada = world.provider.create("contact", {**ADA, "emails": ["Ada@Example.com"]})
    world.sync()

    world.provider.label(ada)
    world.sync()

    assert emails(world.crm.all("contact")) == ["ada@example.com", "grace@example.org"]
    assert (existing, ada) in pairs(world)
    assert existing in world.crm.sync_group()
    assert_converged(world)


@both_providers
def test_CON3_near_duplicate_is_reported_not_merged(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid = crm_member(world, {**GRACE, "emails": ["grace@navy.example"]})
    pid = labelled(world, {**GRACE, "emails": ["grace@example.org"]})

    world.sync()

    reports = [
        item for item in world.history() if item["crm_id"] == cid and item["provider_id"] == pid
    ]
    assert reports, "the candidate duplicate is reported in the history"
    assert all("duplicate" in item["reason"] for item in reports)
    assert (cid, pid) not in pairs(world)
    crm_record = world.crm.get("contact", cid)
    provider_record = world.provider.get("contact", pid)
    assert crm_record is not None and provider_record is not None
    assert crm_record["emails"] == ["grace@navy.example"]
    assert provider_record["emails"] == ["grace@example.org"]


# -- CON-4: creating the missing twin ----------------------------------------------------
@both_providers
def test_CON4_crm_member_without_twin_is_created_on_provider_and_labelled(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    cid = crm_member(world, ADA)

    world.sync()

    (twin,) = world.provider.all("contact")
    source = world.crm.get("contact", cid)
    assert source is not None
    for name in ("first_name", "last_name", "company", "title", "emails", "phones", "address"):
        assert twin[name] == source[name], name
    assert world.provider.labelled() == [twin["id"]]
    assert pairs(world) == {(cid, twin["id"])}


@both_providers
def test_CON4_labelled_contact_without_twin_is_created_in_crm_and_added_to_group(
    provider: str,
) -> None:
    world = SyncWorld(provider=provider)
    pid = labelled(world, GRACE)

    world.sync()

    (created,) = world.crm.all("contact")
    source = world.provider.get("contact", pid)
    assert source is not None
    for name in ("first_name", "last_name", "emails", "phones"):
        assert created[name] == source[name], name
    assert world.crm.sync_group() == [created["id"]]
    assert pairs(world) == {(created["id"], pid)}


@both_providers
def test_CON4_second_sync_after_convergence_writes_nothing(provider: str) -> None:
    world = SyncWorld(provider=provider)
    crm_member(world, {**GRACE, "emails": ["Grace@Example.org"]})
    labelled(world, GRACE)
    crm_member(world, ADA)
    labelled(
        world,
        {
            "first_name": "Charles",
            "last_name": "Babbage",
            "company": "Analytical Engines Ltd",
            "emails": ["charles@example.com"],
            "phones": ["+44 20 7946 0999"],
            "address": NEW_OFFICE,
        },
    )
    labelled(world, {"first_name": "Mary", "last_name": "Somerville", "emails": ["m@e.org"]})
    first = world.sync()
    assert first["status"] == "ok"

    assert_converged(world)


# -- CON-5: accounts for contacts created in the CRM -----------------------------------
@both_providers
def test_CON5_attached_to_existing_account_named_like_company(provider: str) -> None:
    world = SyncWorld(provider=provider)
    world.crm.create_account("Somebody Else plc")
    account = world.crm.create_account("Analytical Engines Ltd", HEAD_OFFICE)
    labelled(world, ADA)

    world.sync()

    (created,) = world.crm.all("contact")
    assert created["account_id"] == account
    assert len(world.crm.accounts()) == 2
    kept = world.crm.account(account)
    assert kept is not None and kept["address"] == HEAD_OFFICE


def test_CON5_first_of_several_accounts_with_the_company_name() -> None:
    world = SyncWorld()
    first = world.crm.create_account("Analytical Engines Ltd")
    world.crm.create_account("Analytical Engines Ltd")
    labelled(world, ADA)

    world.sync()

    (created,) = world.crm.all("contact")
    assert created["account_id"] == first


@both_providers
def test_CON5_new_account_named_after_company(provider: str) -> None:
    world = SyncWorld(provider=provider)
    labelled(world, ADA)

    world.sync()

    (created,) = world.crm.all("contact")
    (account,) = world.crm.accounts()
    assert created["account_id"] == account["id"]
    assert account["name"] == "Analytical Engines Ltd"


@both_providers
def test_CON5_new_account_named_last_first_without_company(provider: str) -> None:
    world = SyncWorld(provider=provider)
    labelled(world, GRACE)

    world.sync()

    (created,) = world.crm.all("contact")
    (account,) = world.crm.accounts()
    assert account["name"] == "Hopper, Grace"
    assert created["account_id"] == account["id"]


@both_providers
def test_CON5_new_account_is_active_prospect_owned_by_everyone(provider: str) -> None:
    world = SyncWorld(provider=provider)
    labelled(world, ADA)

    world.sync()

    (account,) = world.crm.accounts()
    assert account["type"] == "Prospect"
    assert account["status"] == "Active"
    assert account["owner"] == "Everyone"
    assert account["manager"] == "u1"


def test_CON5_account_manager_is_the_syncing_user() -> None:
    world = SyncWorld(user="u7")
    labelled(world, ADA)

    world.sync()

    (account,) = world.crm.accounts()
    assert account["manager"] == "u7"


def test_CON5_contacts_of_one_new_company_share_one_account() -> None:
    world = SyncWorld()
    labelled(world, ADA)
    labelled(
        world,
        {
            "first_name": "Charles",
            "last_name": "Babbage",
            "company": "Analytical Engines Ltd",
            "emails": ["charles@example.com"],
        },
    )

    world.sync()

    (account,) = world.crm.accounts()
    assert [c["account_id"] for c in world.crm.all("contact")] == [account["id"]] * 2


@both_providers
def test_CON5_phones_and_address_go_to_the_contact_not_the_account(provider: str) -> None:
    world = SyncWorld(provider=provider)
    labelled(world, ADA)

    world.sync()

    (created,) = world.crm.all("contact")
    assert [p["number"] for p in created["phones"]] == ["+442079460018"]
    assert created["address"] == ADA["address"]
    account = world.crm.account(created["account_id"])
    assert account is not None
    assert account["address"] is None


# -- CON-6: deletes, group and label removal -------------------------------------------
@both_providers
def test_CON6_provider_delete_removes_from_group_and_unlinks_by_default(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)

    world.provider.delete("contact", pid)
    world.sync()

    assert world.crm.get("contact", cid) is not None
    assert cid not in world.crm.sync_group()
    assert world.links("contact") == []
    assert_converged(world)


@both_providers
def test_CON6_crm_delete_removes_label_and_unlinks_by_default(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)

    world.crm.delete("contact", cid)
    world.sync()

    assert world.provider.get("contact", pid) is not None
    assert pid not in world.provider.labelled()
    assert world.links("contact") == []
    assert_converged(world)


@both_providers
def test_CON6_removal_from_sync_group_deletes_on_provider(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)

    world.crm.remove_from_sync_group(cid)
    world.sync()

    assert world.provider.get("contact", pid) is None
    assert world.crm.get("contact", cid) is not None
    assert world.links("contact") == []
    assert_converged(world)


@both_providers
def test_CON6_label_removal_unlinks_and_keeps_crm_contact(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)

    world.provider.unlabel(pid)
    world.sync()

    assert world.crm.get("contact", cid) is not None
    assert world.provider.get("contact", pid) is not None
    assert world.links("contact") == []
    assert cid not in world.crm.sync_group()
    assert_converged(world)
    assert [r["id"] for r in world.provider.all("contact")] == [pid]


@both_providers
def test_CON6_after_unlinking_edits_no_longer_cross(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)
    world.crm.delete("contact", cid)
    world.sync()

    world.provider.update("contact", pid, {"title": "Countess"})
    world.sync()

    assert world.crm.all("contact") == []
    assert world.links("contact") == []


@both_providers
def test_CON6_delete_setting_provider_delete_deletes_crm_contact(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"contact_delete": "delete"})
    cid, pid = linked_pair(world)

    world.provider.delete("contact", pid)
    world.sync()

    assert world.crm.get("contact", cid) is None
    assert world.links("contact") == []
    assert_converged(world)


@both_providers
def test_CON6_delete_setting_crm_delete_deletes_provider_contact(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"contact_delete": "delete"})
    cid, pid = linked_pair(world)

    world.crm.delete("contact", cid)
    world.sync()

    assert world.provider.get("contact", pid) is None
    assert world.links("contact") == []
    assert_converged(world)


@both_providers
def test_CON6_ignore_setting_provider_delete_leaves_crm_contact_alone(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"contact_delete": "ignore"})
    cid, pid = linked_pair(world)
    before = world.crm.get("contact", cid)

    world.provider.delete("contact", pid)
    world.sync()

    assert world.crm.get("contact", cid) == before
    assert cid in world.crm.sync_group()
    assert world.provider.get("contact", pid) is None
    assert_converged(world)


@both_providers
def test_CON6_ignore_setting_crm_delete_leaves_provider_contact_alone(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"contact_delete": "ignore"})
    cid, pid = linked_pair(world)
    before = world.provider.get("contact", pid)

    world.crm.delete("contact", cid)
    world.sync()

    assert world.provider.get("contact", pid) == before
    assert pid in world.provider.labelled()
    assert world.crm.get("contact", cid) is None
    assert_converged(world)


# -- CON-7: address changes from the provider ------------------------------------------
def shared_address_pair(world: SyncWorld) -> tuple[str, str, str]:
    """A synced contact that uses its account's address."""
    account = world.crm.create_account("Analytical Engines Ltd", HEAD_OFFICE)
    cid = crm_member(world, {k: v for k, v in ADA.items() if k != "address"})
    world.crm.attach_to_account(cid, account, share_address=True)
    world.sync()
    (link,) = world.links("contact")
    twin = world.provider.get("contact", link["provider_id"])
    assert twin is not None and twin["address"] == HEAD_OFFICE
    return account, cid, link["provider_id"]


@both_providers
def test_CON7_provider_address_change_updates_crm_contact(provider: str) -> None:
    world = SyncWorld(provider=provider)
    cid, pid = linked_pair(world)

    world.provider.update("contact", pid, {"address": NEW_OFFICE})
    world.sync()

    updated = world.crm.get("contact", cid)
    assert updated is not None and updated["address"] == NEW_OFFICE
    assert_converged(world)


@both_providers
def test_CON7_shared_address_is_updated_on_the_account_when_enabled(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"update_shared_address": True})
    account, cid, pid = shared_address_pair(world)

    world.provider.update("contact", pid, {"address": NEW_OFFICE})
    world.sync()

    updated = world.crm.get("contact", cid)
    assert updated is not None and updated["address"] == NEW_OFFICE
    shared = world.crm.account(account)
    assert shared is not None and shared["address"] == NEW_OFFICE
    assert_converged(world)


@both_providers
def test_CON7_shared_address_is_left_on_the_account_when_disabled(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"update_shared_address": False})
    account, cid, pid = shared_address_pair(world)

    world.provider.update("contact", pid, {"address": NEW_OFFICE})
    world.sync()

    shared = world.crm.account(account)
    assert shared is not None and shared["address"] == HEAD_OFFICE
    updated = world.crm.get("contact", cid)
    assert updated is not None and updated["address"] == NEW_OFFICE, "the change is not lost"
    assert_converged(world)


def test_CON7_other_contacts_sharing_the_updated_address_follow_on_provider() -> None:
    world = SyncWorld(settings={"update_shared_address": True})
    account, _, pid = shared_address_pair(world)
    colleague = crm_member(
        world, {"first_name": "Charles", "last_name": "Babbage", "emails": ["cb@example.com"]}
    )
    world.crm.attach_to_account(colleague, account, share_address=True)
    world.sync()

    world.provider.update("contact", pid, {"address": NEW_OFFICE})
    world.sync()
    world.sync()

    (link,) = [link for link in world.links("contact") if link["crm_id"] == colleague]
    colleague_crm = world.crm.get("contact", colleague)
    colleague_twin = world.provider.get("contact", link["provider_id"])
    assert colleague_crm is not None and colleague_crm["address"] == NEW_OFFICE
    assert colleague_twin is not None and colleague_twin["address"] == NEW_OFFICE


# -- CON-8: where new provider contacts land -------------------------------------------
@both_providers
def test_CON8_new_provider_contacts_become_crm_contacts_by_default(provider: str) -> None:
    world = SyncWorld(provider=provider)
    assert world.effective_settings()["new_contacts"] == "contact"
    labelled(world, GRACE)

    world.sync()

    assert emails(world.crm.all("contact")) == ["grace@example.org"]
    assert world.crm.leads() == []
    assert world.queue() == []


@both_providers
def test_CON8_lead_setting_creates_a_lead_not_a_contact(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "lead"})
    pid = labelled(world, GRACE)

    world.sync()

    (lead,) = world.crm.leads()
    assert lead["emails"] == ["grace@example.org"]
    assert (lead["first_name"], lead["last_name"]) == ("Grace", "Hopper")
    assert world.crm.all("contact") == []
    assert world.crm.sync_group() == []
    assert world.crm.accounts() == []
    assert world.provider.get("contact", pid) is not None
    assert_converged(world)


@both_providers
def test_CON8_lead_setting_later_provider_edit_does_not_fail(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "lead"})
    pid = labelled(world, GRACE)
    world.sync()

    world.provider.update("contact", pid, {"title": "Rear Admiral"})
    run = world.sync()

    assert run["status"] == "ok", run["errors"]
    assert run["errors"] == []
    assert world.crm.all("contact") == []
    assert len(world.crm.leads()) == 1


@both_providers
def test_CON8_lead_setting_does_not_affect_crm_members(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "lead"})
    crm_member(world, ADA)

    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com"]
    assert world.crm.leads() == []


@both_providers
def test_CON8_review_setting_puts_new_provider_contact_in_review_list(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "review"})
    pid = labelled(world, GRACE)

    world.sync()
    world.sync()

    (item,) = world.queue()
    assert item["reason"] == "review"
    assert item["provider_id"] == pid
    assert item["kind"] == "contact"
    assert world.crm.all("contact") == []
    assert world.crm.leads() == []
    assert world.crm.accounts() == []


@both_providers
def test_CON8_review_setting_does_not_hold_crm_members(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "review"})
    crm_member(world, ADA)

    world.sync()

    assert emails(world.provider.all("contact")) == ["ada@example.com"]
    assert world.queue() == []


@both_providers
def test_CON8_reviewed_contact_converted_is_created_in_crm(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "review"})
    pid = labelled(world, GRACE)
    world.sync()
    (item,) = world.queue()

    world.resolve(item["id"], "provider")
    world.sync()

    (created,) = world.crm.all("contact")
    assert created["emails"] == ["grace@example.org"]
    assert world.crm.sync_group() == [created["id"]]
    assert created["account_id"] is not None
    assert pairs(world) == {(created["id"], pid)}
    assert world.queue() == []
    assert_converged(world)


@both_providers
def test_CON8_reviewed_contact_discarded_is_not_created(provider: str) -> None:
    world = SyncWorld(provider=provider, settings={"new_contacts": "review"})
    pid = labelled(world, GRACE)
    world.sync()
    (item,) = world.queue()

    world.resolve(item["id"], "crm")
    world.sync()
    world.provider.update("contact", pid, {"title": "Rear Admiral"})
    world.sync()

    assert world.crm.all("contact") == []
    assert world.crm.leads() == []
    assert world.queue() == []
    assert world.provider.get("contact", pid) is not None
