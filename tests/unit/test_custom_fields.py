"""Custom fields (SYN-1): a tenant maps CRM custom fields the CRM declares to provider
fields, through declarative transforms or a vendor's hook, and they merge field by
field like built-in ones (SYN-2), driven end to end through SyncWorld.

A provider record shows its custom values in `custom`, by the provider's keys, as the
provider holds them; a CRM record in `custom`, by the CRM's names.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync import transforms
from crmsync.settings import SettingsError, TenantSettings, resolve
from crmsync.testing import SyncWorld
from crmsync.transforms import register_transform, unregister_transform

START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
INDUSTRY = {"contact": {"industry": {"provider": "Industry"}}}


def ada(**custom: Any) -> dict[str, Any]:
    return {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "title": "Engineer",
        "emails": ["ada@example.com"],
        "custom": custom,
    }


def meeting(subject: str, **custom: Any) -> dict[str, Any]:
    return {
        "type": "meeting",
        "subject": subject,
        "start": START,
        "end": START + timedelta(hours=1),
        "timezone": "Europe/Berlin",
        "custom": custom,
    }


def world_with(mapping: dict[str, Any], provider: str = "google", **settings: Any) -> SyncWorld:
    """A world whose tenant maps `mapping` (SET-2), its CRM declaring nothing yet."""
    return SyncWorld(
        provider=provider,  # type: ignore[arg-type]
        tenant={"custom_fields": mapping},
        settings=settings or None,
    )


@pytest.fixture
def worlds() -> Iterator[list[SyncWorld]]:
    """Worlds a test makes, closed after it (the reference CRM and the Google sandbox
    run servers)."""
    made: list[SyncWorld] = []
    yield made
    for world in made:
        world.close()


def synced_contact(world: SyncWorld, **custom: Any) -> tuple[str, str]:
    """Ada, created in the CRM's sync group and synced: (crm id, provider id)."""
    crm_id = world.crm.create("contact", ada(**custom))
    world.crm.add_to_sync_group(crm_id)
    world.sync()
    [link] = [ln for ln in world.links("contact") if ln["crm_id"] == crm_id]
    assert link["provider_id"], "the contact reached the provider"
    return crm_id, str(link["provider_id"])


def synced_meeting(world: SyncWorld, subject: str, **custom: Any) -> tuple[str, str]:
    crm_id = world.crm.create("activity", meeting(subject, **custom))
    world.sync()
    [link] = [ln for ln in world.links("activity") if ln["crm_id"] == crm_id]
    assert link["provider_id"], "the meeting reached the provider"
    return crm_id, str(link["provider_id"])


def custom_at_provider(world: SyncWorld, kind: str, provider_id: str) -> dict[str, Any]:
    record = world.provider.get(kind, provider_id)  # type: ignore[arg-type]
    assert record is not None
    return dict(record.get("custom") or {})


def custom_in_crm(world: SyncWorld, kind: str, crm_id: str) -> dict[str, Any]:
    record = world.crm.get(kind, crm_id)  # type: ignore[arg-type]
    assert record is not None
    return dict(record.get("custom") or {})


def why(item: dict[str, Any]) -> str:
    """What a history item says went wrong: a write's error, or the reason a record
    could not be read."""
    return str(item["error"] or item["reason"])


def versions(world: SyncWorld) -> dict[tuple[str, str, str], str]:
    """Every record's version on both sides: equal before and after means no write."""
    out: dict[tuple[str, str, str], str] = {}
    for kind in ("contact", "activity"):
        for side, handle in (("crm", world.crm), ("provider", world.provider)):
            for record in handle.all(kind):  # type: ignore[arg-type]
                out[(side, kind, record["id"])] = record["version"]
    return out


# -- a mapped custom field moves both ways ------------------------------------------------


def test_SYN1_custom_field_syncs_crm_to_provider_and_back(worlds: list[SyncWorld]) -> None:
    world = world_with(INDUSTRY)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    crm_id, provider_id = synced_contact(world, industry="Software")

    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Software"}

    world.provider.update("contact", provider_id, {"custom": {"Industry": "Shipbuilding"}})
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Shipbuilding"}


def test_SYN1_custom_field_of_an_activity_lives_with_the_event(worlds: list[SyncWorld]) -> None:
    world = world_with({"activity": {"room_code": {"provider": "crm.room"}}})
    worlds.append(world)
    world.crm.declare_custom_field("activity", "room_code")
    crm_id, provider_id = synced_meeting(world, "Review", room_code="B-204")

    assert custom_at_provider(world, "activity", provider_id) == {"crm.room": "B-204"}

    world.crm.update("activity", crm_id, {"custom": {"room_code": "C-001"}})
    world.sync()

    assert custom_at_provider(world, "activity", provider_id) == {"crm.room": "C-001"}


def test_SYN1_provider_contact_brings_its_custom_value_into_the_new_crm_contact(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(INDUSTRY)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    provider_id = world.provider.create(
        "contact",
        {"first_name": "Grace", "emails": ["grace@example.com"], "custom": {"Industry": "Navy"}},
    )
    world.provider.label(provider_id)

    world.sync()

    [link] = [ln for ln in world.links("contact") if ln["provider_id"] == provider_id]
    assert custom_in_crm(world, "contact", str(link["crm_id"])) == {"industry": "Navy"}


def test_SYN1_typed_custom_values_reach_the_crm_as_their_declared_type(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(
        {
            "contact": {
                "seats": {"provider": "Seats"},
                "active": {"provider": "Active"},
                "renewal": {"provider": "Renewal"},
            }
        }
    )
    worlds.append(world)
    world.crm.declare_custom_field("contact", "seats", "number")
    world.crm.declare_custom_field("contact", "active", "boolean")
    world.crm.declare_custom_field("contact", "renewal", "date")
    crm_id, provider_id = synced_contact(world, seats=12, active=True, renewal="2027-03-01")

    assert custom_at_provider(world, "contact", provider_id) == {
        "Seats": "12",
        "Active": "true",
        "Renewal": "2027-03-01",
    }

    world.provider.update(
        "contact",
        provider_id,
        {"custom": {"Seats": "15", "Active": "false", "Renewal": "2028-03-01"}},
    )
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {
        "seats": 15,
        "active": False,
        "renewal": "2028-03-01",
    }


# -- declarative transforms ---------------------------------------------------------------

STAGES = {"lead": "Prospect", "customer": "Client"}


def test_SYN1_enum_table_maps_values_both_ways(worlds: list[SyncWorld]) -> None:
    world = world_with(
        {"activity": {"stage": {"provider": "Stage", "transform": {"enum": STAGES}}}}
    )
    worlds.append(world)
    world.crm.declare_custom_field("activity", "stage", "enum", values=("lead", "customer"))
    crm_id, provider_id = synced_meeting(world, "Pitch", stage="customer")

    assert custom_at_provider(world, "activity", provider_id) == {"Stage": "Client"}

    world.provider.update("activity", provider_id, {"custom": {"Stage": "Prospect"}})
    world.sync()

    assert custom_in_crm(world, "activity", crm_id) == {"stage": "lead"}


def test_SYN1_prefix_and_date_format_round_trip_with_no_ping_pong(
    worlds: list[SyncWorld],
) -> None:
    mapping = {
        "contact": {
            "code": {"provider": "Customer code", "transform": {"prefix": "ACME-"}},
            "renewal": {
                "provider": "Renewal",
                "transform": {"format": "date", "pattern": "%d.%m.%Y"},
            },
        }
    }
    world = world_with(mapping)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "code")
    world.crm.declare_custom_field("contact", "renewal", "date")
    crm_id, provider_id = synced_contact(world, code="4711", renewal="2026-12-31")

    assert custom_at_provider(world, "contact", provider_id) == {
        "Customer code": "ACME-4711",
        "Renewal": "31.12.2026",
    }
    settled = versions(world)
    world.sync()
    world.sync()
    assert versions(world) == settled, "values that round-trip read as unchanged"

    world.provider.update("contact", provider_id, {"custom": {"Renewal": "15.01.2027"}})
    world.sync()
    assert custom_in_crm(world, "contact", crm_id) == {"code": "4711", "renewal": "2027-01-15"}
    settled = versions(world)
    world.sync()
    assert versions(world) == settled


class Shouting:
    """A vendor's hook: the provider shows the value in capitals, with its CRM case
    kept after a bar, so that it reads back exactly."""

    def to_provider(self, value: str) -> str:
        return f"{value.upper()}|{value}"

    def to_crm(self, value: str) -> str:
        shown, _, kept = value.partition("|")
        if kept.upper() != shown:
            raise ValueError(f"{value!r} was not written by this hook")
        return kept


@pytest.fixture
def shouting() -> Iterator[str]:
    register_transform("shouting", Shouting())
    yield "shouting"
    unregister_transform("shouting")


def test_SYN1_vendor_hook_transforms_both_ways(worlds: list[SyncWorld], shouting: str) -> None:
    world = world_with(
        {"contact": {"motto": {"provider": "Motto", "transform": {"hook": shouting}}}}
    )
    worlds.append(world)
    world.crm.declare_custom_field("contact", "motto")
    crm_id, provider_id = synced_contact(world, motto="Keep calm")

    assert custom_at_provider(world, "contact", provider_id) == {"Motto": "KEEP CALM|Keep calm"}

    world.provider.update("contact", provider_id, {"custom": {"Motto": "CARRY ON|Carry on"}})
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"motto": "Carry on"}
    settled = versions(world)
    world.sync()
    assert versions(world) == settled


class Lowering:
    """A hook that loses the case: what it writes does not read back as the value."""

    def to_provider(self, value: str) -> str:
        return value.lower()

    def to_crm(self, value: str) -> str:
        return value


def test_SYN1_a_transform_that_does_not_read_back_its_value_fails_that_write_alone(
    worlds: list[SyncWorld],
) -> None:
    register_transform("lowering", Lowering())
    try:
        world = world_with(
            {"contact": {"motto": {"provider": "Motto", "transform": {"hook": "lowering"}}}}
        )
        worlds.append(world)
        world.crm.declare_custom_field("contact", "motto")
        lossy = world.crm.create("contact", ada(motto="Keep Calm"))
        fine = world.crm.create(
            "contact", {"first_name": "Grace", "emails": ["g@example.com"], "custom": {}}
        )
        for crm_id in (lossy, fine):
            world.crm.add_to_sync_group(crm_id)

        run = world.sync()
    finally:
        unregister_transform("lowering")

    assert run["status"] == "partial"
    [failed] = [i for i in world.history() if i["crm_id"] == lossy]
    assert "custom.motto" in why(failed) and "'keep calm'" in why(failed)
    assert [r["first_name"] for r in world.provider.all("contact")] == ["Grace"]


def test_SYN1_a_hook_installed_as_an_entry_point_is_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_hooks.py").write_text(
        "class Codes:\n"
        "    def to_provider(self, value):\n        return 'ACME/' + value\n"
        "    def to_crm(self, value):\n        return value.removeprefix('ACME/')\n"
    )
    info = tmp_path / "acme_hooks-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-hooks\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[crmsync.transforms]\nacme-codes = acme_hooks:Codes\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    transforms._entry_point_hooks.cache_clear()
    try:
        spec = {"provider": "Code", "transform": {"hook": "acme-codes"}}
        settings = resolve("google", {"custom_fields": {"contact": {"code": spec}}})
        custom = settings.custom_map("contact")
    finally:
        transforms._entry_point_hooks.cache_clear()

    assert custom.write({"custom.code": "42"}) == {"Code": "ACME/42"}
    assert custom.read({"Code": "ACME/42"}) == {"custom.code": "42"}


# -- merge (SYN-2) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "industry"), [("provider_wins", "Mining"), ("crm_wins", "Energy")]
)
def test_SYN1_custom_field_changed_on_both_sides_follows_the_conflict_policy(
    worlds: list[SyncWorld], policy: str, industry: str
) -> None:
    world = world_with(INDUSTRY, conflict_policy=policy)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    crm_id, provider_id = synced_contact(world, industry="Software")

    world.crm.update("contact", crm_id, {"custom": {"industry": "Energy"}})
    world.provider.update(
        "contact", provider_id, {"title": "Countess", "custom": {"Industry": "Mining"}}
    )
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"industry": industry}
    assert custom_at_provider(world, "contact", provider_id) == {"Industry": industry}
    for handle, record_id in ((world.crm, crm_id), (world.provider, provider_id)):
        record = handle.get("contact", record_id)
        assert record is not None and record["title"] == "Countess", "merged field by field"


def test_SYN1_custom_and_built_in_fields_changed_on_different_sides_both_move(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(INDUSTRY, conflict_policy="crm_wins")
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    crm_id, provider_id = synced_contact(world, industry="Software")

    world.crm.update("contact", crm_id, {"title": "Analyst"})
    world.provider.update("contact", provider_id, {"custom": {"Industry": "Mining"}})
    world.sync()

    crm, provider = world.crm.get("contact", crm_id), world.provider.get("contact", provider_id)
    assert crm is not None and provider is not None
    assert (crm["title"], crm["custom"]) == ("Analyst", {"industry": "Mining"})
    assert (provider["title"], provider["custom"]) == ("Analyst", {"Industry": "Mining"})


def test_SYN1_custom_field_conflict_under_manual_policy_waits_in_the_queue(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(INDUSTRY, conflict_policy="manual")
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    crm_id, provider_id = synced_contact(world, industry="Software")

    world.crm.update("contact", crm_id, {"custom": {"industry": "Energy"}})
    world.provider.update("contact", provider_id, {"custom": {"Industry": "Mining"}})
    world.sync()

    [item] = world.queue()
    assert item["fields"] == ["custom.industry"]
    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Energy"}
    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Mining"}

    world.resolve(item["id"], "provider")
    world.sync()
    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Mining"}


def test_SYN1_custom_field_declared_after_the_link_joins_its_base(
    worlds: list[SyncWorld],
) -> None:
    """The link predates the field: once a value moved, a change on one side is that
    side's alone, so no policy decides it (here the CRM would win a conflict)."""
    world = SyncWorld(settings={"conflict_policy": "crm_wins"})
    worlds.append(world)
    crm_id, provider_id = synced_contact(world)
    world.crm.declare_custom_field("contact", "industry")
    world.settings(custom_fields=INDUSTRY)
    world.crm.update("contact", crm_id, {"custom": {"industry": "Software"}})
    world.sync()
    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Software"}

    world.provider.update("contact", provider_id, {"custom": {"Industry": "Mining"}})
    world.crm.update("contact", crm_id, {"title": "Analyst"})
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Mining"}


# -- only mapped fields move --------------------------------------------------------------


def test_SYN1_unmapped_custom_fields_do_not_move(worlds: list[SyncWorld]) -> None:
    world = world_with(INDUSTRY)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry")
    world.crm.declare_custom_field("contact", "credit_limit", "number")
    crm_id, provider_id = synced_contact(world, industry="Software", credit_limit=5000)

    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Software"}

    world.provider.update("contact", provider_id, {"custom": {"Hobby": "Chess"}})
    world.crm.update("contact", crm_id, {"custom": {"credit_limit": 9000}})
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Software", "credit_limit": 9000}
    assert custom_at_provider(world, "contact", provider_id) == {
        "Industry": "Software",
        "Hobby": "Chess",
    }


def test_SYN1_mapping_of_a_field_the_crm_does_not_declare_moves_nothing(
    worlds: list[SyncWorld],
) -> None:
    world = world_with({"contact": {"industry": {"provider": "Industry"}}})
    worlds.append(world)
    crm_id, provider_id = synced_contact(world)
    world.provider.update("contact", provider_id, {"custom": {"Industry": "Mining"}})
    world.crm.update("contact", crm_id, {"title": "Analyst"})

    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {}
    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Mining"}
    record = world.crm.get("contact", crm_id)
    assert record is not None and record["title"] == "Analyst"


# -- bad values fail alone (SYN-5) --------------------------------------------------------


def test_SYN1_value_the_transform_cannot_read_fails_alone_with_a_history_item(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(
        {"activity": {"stage": {"provider": "Stage", "transform": {"enum": STAGES}}}}
    )
    worlds.append(world)
    world.crm.declare_custom_field("activity", "stage", "enum", values=("lead", "customer"))
    bad_crm, bad_provider = synced_meeting(world, "Pitch", stage="customer")
    good_crm, good_provider = synced_meeting(world, "Demo", stage="lead")

    world.provider.update("activity", bad_provider, {"custom": {"Stage": "Partner"}})
    world.provider.update("activity", good_provider, {"subject": "Demo (final)"})
    run = world.sync()

    assert run["status"] == "partial"
    [failed] = [i for i in world.history() if i["provider_id"] == bad_provider]
    assert failed["outcome"] == "fail"
    assert "custom.stage" in why(failed) and "'Partner'" in why(failed)
    assert custom_in_crm(world, "activity", bad_crm) == {"stage": "customer"}
    good = world.crm.get("activity", good_crm)
    assert good is not None and good["subject"] == "Demo (final)"

    world.provider.update("activity", bad_provider, {"custom": {"Stage": "Prospect"}})
    world.sync()
    assert custom_in_crm(world, "activity", bad_crm) == {"stage": "lead"}


def test_SYN1_value_the_crm_refuses_fails_alone_and_is_retried(worlds: list[SyncWorld]) -> None:
    world = world_with({"contact": {"seats": {"provider": "Seats"}}})
    worlds.append(world)
    world.crm.declare_custom_field("contact", "seats", "number")
    crm_id, provider_id = synced_contact(world, seats=3)
    other = world.provider.create(
        "contact", {"first_name": "Grace", "emails": ["grace@example.com"]}
    )
    world.provider.label(other)

    world.provider.update("contact", provider_id, {"custom": {"Seats": "a dozen"}})
    run = world.sync()

    assert run["status"] == "partial"
    [failed] = [i for i in world.history() if i["provider_id"] == provider_id]
    assert failed["outcome"] == "fail" and "custom.seats" in why(failed)
    assert custom_in_crm(world, "contact", crm_id) == {"seats": 3}
    [grace] = [ln for ln in world.links("contact") if ln["provider_id"] == other]
    assert grace["crm_id"], "another record synced in the same run"

    world.provider.update("contact", provider_id, {"custom": {"Seats": "12"}})
    world.sync()
    assert custom_in_crm(world, "contact", crm_id) == {"seats": 12}


def test_SYN1_text_longer_than_the_crm_declares_is_cut_there_and_kept_whole_at_the_provider(
    worlds: list[SyncWorld],
) -> None:
    world = world_with(INDUSTRY)
    worlds.append(world)
    world.crm.declare_custom_field("contact", "industry", max_length=8)
    crm_id, provider_id = synced_contact(world, industry="Software")

    world.provider.update("contact", provider_id, {"custom": {"Industry": "Shipbuilding"}})
    world.sync()
    world.sync()

    assert custom_in_crm(world, "contact", crm_id) == {"industry": "Shipbuil"}
    assert custom_at_provider(world, "contact", provider_id) == {"Industry": "Shipbuilding"}


# -- Microsoft: to-dos too ----------------------------------------------------------------


def test_SYN1_microsoft_to_do_carries_its_custom_field(worlds: list[SyncWorld]) -> None:
    world = world_with({"todo": {"ticket": {"provider": "Ticket"}}}, provider="microsoft")
    worlds.append(world)
    world.crm.declare_custom_field("todo", "ticket")
    crm_id = world.crm.create("todo", {"subject": "Call back", "custom": {"ticket": "T-77"}})

    world.sync()

    [link] = [ln for ln in world.links("todo") if ln["crm_id"] == crm_id]
    assert custom_at_provider(world, "todo", str(link["provider_id"])) == {"Ticket": "T-77"}


# -- settings (SET-2) ---------------------------------------------------------------------


def refusal(provider: str, mapping: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as caught:
        resolve(provider, {"custom_fields": mapping})
    return str(caught.value)


def test_SYN1_settings_refuse_an_unknown_transform() -> None:
    reason = refusal("google", {"contact": {"industry": {"provider": "I", "transform": {"x": 1}}}})
    assert reason.startswith("custom_fields.contact.industry.transform:")


def test_SYN1_settings_refuse_an_enum_table_that_is_not_reversible() -> None:
    table = {"lead": "Open", "prospect": "Open"}
    reason = refusal(
        "google", {"contact": {"stage": {"provider": "Stage", "transform": {"enum": table}}}}
    )
    assert reason.startswith("custom_fields.contact.stage.transform:")
    assert "not reversible" in reason and "'lead'" in reason and "'prospect'" in reason


def test_SYN1_settings_refuse_a_hook_nobody_registered() -> None:
    spec = {"provider": "Motto", "transform": {"hook": "no-such-hook"}}
    reason = refusal("microsoft", {"contact": {"motto": spec}})
    assert reason.startswith("custom_fields.contact.motto.transform:")
    assert "'no-such-hook'" in reason


def test_SYN1_settings_refuse_a_date_pattern_that_does_not_read_back() -> None:
    spec = {"provider": "Renewal", "transform": {"format": "date", "pattern": "%m/%Y"}}
    reason = refusal("google", {"contact": {"renewal": spec}})
    assert reason.startswith("custom_fields.contact.renewal.transform:")


def test_SYN1_settings_refuse_to_do_custom_fields_on_google_but_not_on_microsoft() -> None:
    mapping = {"todo": {"ticket": {"provider": "Ticket"}}}

    assert refusal("google", mapping).startswith("custom_fields.todo:")
    assert resolve("microsoft", {"custom_fields": mapping}).mapped("todo")[-1] == "custom.ticket"


def test_SYN1_settings_refuse_two_fields_at_one_provider_key() -> None:
    mapping = {"contact": {"a": {"provider": "Same"}, "b": {"provider": "Same"}}}
    assert refusal("google", mapping).startswith("custom_fields.contact.b.provider:")


def test_SYN1_settings_refuse_a_name_that_is_no_custom_field_name() -> None:
    assert refusal("google", {"contact": {"first name": {"provider": "F"}}}).startswith(
        "custom_fields.contact.first name:"
    )


def test_SYN1_tenant_that_allows_google_cannot_map_to_do_custom_fields() -> None:
    with pytest.raises(SettingsError, match=r"^custom_fields\.todo:"):
        TenantSettings({"custom_fields": {"todo": {"ticket": {"provider": "Ticket"}}}})


def test_SYN1_a_user_layer_replaces_the_tenant_mapping_whole() -> None:
    tenant = {"custom_fields": {"contact": {"industry": {"provider": "Industry"}}}}
    user = {"custom_fields": {"activity": {"stage": {"provider": "Stage"}}}}

    settings = resolve("google", tenant, user)

    assert "custom.industry" not in settings.mapped("contact")
    assert settings.mapped("activity")[-1] == "custom.stage"
