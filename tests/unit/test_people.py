"""A tenant admin's people: the dashboard's health of each connection, built through
real cycles in SyncWorld (HIS-1, RUN-2, AUTH-3, AUTH-4, AUTH-6, SET-6), onboarding many
users at once (AUTH-1) and the CSV file they come in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync import service
from crmsync.crm.memory import MemoryCrm
from crmsync.ports import CrmConnector
from crmsync.settings import Settings
from crmsync.testing import SyncWorld
from crmsync.usecases import people

TENANT = "t1"  # SyncWorld's tenant
START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)
NO_CONTACTS = {"enabled": {"contact": False}}  # activities are then the first kind read


def meeting(subject: str) -> dict[str, Any]:
    return {"subject": subject, "start": START, "end": START + timedelta(hours=1)}


def rows(world: SyncWorld, **kw: Any) -> list[dict[str, Any]]:
    return list(people.dashboard(world.services, TENANT, **kw)["rows"])


def sync_row(world: SyncWorld) -> dict[str, Any]:
    [row] = [r for r in rows(world) if r["service"] == "sync"]
    return row


# -- health, from real cycles -------------------------------------------------------------------
def test_HIS1_a_connection_whose_every_cycle_ends_partial_is_failing_not_ok() -> None:
    world = SyncWorld()
    world.crm.create("activity", meeting("Refused every time"))
    world.fail("provider", "create", "permanent", times=3)  # three cycles long

    statuses = [world.sync()["status"] for _ in range(2)]
    two = sync_row(world)
    statuses.append(world.sync()["status"])
    three = sync_row(world)

    assert statuses == ["partial", "partial", "partial"]
    assert two["health"] == "ok"  # two partial cycles may be a record retried once
    assert three["health"] == "failing"
    assert three["problems"] == ["Some records fail in every sync: 1 record in the last one"]
    assert three["last_cycle"]["status"] == "partial"
    [status] = service.admin_status(world.services, TENANT)["connections"]
    assert status["health"] == "failing"  # the admin status no longer says "ok"


def test_HIS1_a_cycle_that_goes_through_again_ends_failing() -> None:
    world = SyncWorld()
    world.crm.create("activity", meeting("Refused three times"))
    world.fail("provider", "create", "permanent", times=3)
    for _ in range(3):
        world.sync()
    assert sync_row(world)["health"] == "failing"

    assert world.sync()["status"] == "ok"

    assert sync_row(world)["health"] == "ok"
    assert sync_row(world)["problems"] == []


def test_HIS1_a_kind_never_read_is_failing_and_named_in_plain_words() -> None:
    world = SyncWorld(settings={"enabled": {"contact": False, "todo": False}})
    world.crm.create("activity", meeting("Planning"))
    world.fail("provider", "changes", "transient", times=3)

    runs = [world.sync() for _ in range(3)]

    assert [run["unread"] for run in runs] == [["activity"]] * 3
    row = sync_row(world)
    assert row["health"] == "failing"
    assert row["problems"] == ["Could not read calendar activities in the last 3 syncs"]


def test_HIS1_a_kind_that_cannot_be_read_is_listed_apart_not_counted_as_a_failed_record() -> None:
    world = SyncWorld(settings=NO_CONTACTS)
    world.crm.create("activity", meeting("Planning"))
    world.crm.create("todo", {"subject": "Refused"})
    world.fail("provider", "changes", "transient")  # the activities' feed
    world.fail("provider", "create", "permanent")  # the to-do

    run = world.sync()

    assert run["status"] == "partial"
    assert run["counts"] == {"todo": {"fail": 1}}  # one record failed, not two
    assert run["unread"] == ["activity"]
    assert world.runs()[-1]["unread"] == ["activity"]


def test_AUTH3_a_revoked_grant_needs_reconsent_and_says_since_when() -> None:
    world = SyncWorld()
    world.sync()
    world.advance(timedelta(days=1))
    world.fail("provider", "changes", "revoked")

    assert world.sync()["status"] == "needs_reauth"

    row = sync_row(world)
    assert (row["health"], row["status"]) == ("needs_reconsent", "needs_reauth")
    assert row["problems"] == [
        "Needs to sign in again: Google refused the grant on 3 Nov"
    ]  # the world's provider


def test_RUN2_a_connection_with_no_good_cycle_for_a_day_is_stale() -> None:
    world = SyncWorld()
    world.sync()
    world.advance(service.STALE_AFTER - timedelta(minutes=1))
    before = sync_row(world)["health"]

    world.advance(timedelta(minutes=2))

    assert before == "ok"
    row = sync_row(world)
    assert row["health"] == "stale"
    assert row["problems"] == ["No sync has finished since 2 Nov 09:00 UTC"]


def test_RUN2_a_cycle_whose_worker_died_holding_the_connection_is_stuck() -> None:
    world = SyncWorld()
    world.crm.create("activity", meeting("Half done"))
    world.crash_after(1)
    assert world.sync()["status"] == "crashed"

    world.advance(service.STUCK_AFTER + timedelta(minutes=1))

    row = sync_row(world)
    assert row["health"] == "stuck"
    assert row["last_cycle"]["status"] == "running"
    assert row["problems"] == ["A sync started 2 Nov 09:00 UTC has not finished"]


def test_SET6_a_connection_turned_off_for_its_user_is_off_whatever_its_cycles() -> None:
    world = SyncWorld()
    world.crm.create("activity", meeting("Refused"))
    world.fail("provider", "create", "permanent", times=3)
    for _ in range(3):
        world.sync()

    world.store.save_connection_record(world.connection.id, {"enabled": False})

    row = sync_row(world)
    assert (row["health"], row["problems"]) == ("off", [])


def test_AUTH4_a_disconnected_connection_is_disconnected_and_frees_its_seat() -> None:
    world = SyncWorld()
    world.store.save_tenant_record({"seats": 2})
    world.sync()
    before = people.dashboard(world.services, TENANT)["seats"]

    service.disconnect(world.services, TENANT, world.connection.id)

    after = people.dashboard(world.services, TENANT)
    assert before == {"used": 1, "allowed": 2}
    assert after["seats"] == {"used": 0, "allowed": 2}
    assert [(r["health"], r["problems"]) for r in after["rows"]] == [("disconnected", [])]


def test_AUTH6_seats_used_are_the_live_connections_that_new_ones_are_refused_by() -> None:
    world = SyncWorld()
    world.store.save_tenant_record({"seats": 1})
    world.sync()
    world.store.save_connection_record(world.connection.id, {"enabled": False})  # still a seat

    seats = people.dashboard(world.services, TENANT)["seats"]

    assert seats == {"used": 1, "allowed": 1}
    with pytest.raises(service.Refused) as refused:
        service._check_seats(world.store)  # what a new connection is refused by (AUTH-6)
    assert refused.value.status == 403


def test_HIS1_counts_total_every_health_and_a_health_keeps_only_its_rows() -> None:
    world = SyncWorld()
    world.sync()
    world.store.save_connection_record(
        world.connection.id,
        {"services": ["sync", "mail"], "mail_problem": "mailbox not routed; reconnect"},
    )

    overview = people.dashboard(world.services, TENANT)
    failing = people.dashboard(world.services, TENANT, health="failing")

    assert overview["counts"] == {
        "ok": 1,
        "needs_reconsent": 0,
        "stale": 0,
        "stuck": 0,
        "failing": 1,
        "disconnected": 0,
        "off": 0,
    }
    assert [(r["service"], r["health"]) for r in overview["rows"]] == [
        ("sync", "ok"),
        ("mail", "failing"),
    ]
    assert [r["service"] for r in failing["rows"]] == ["mail"]
    assert failing["rows"][0]["problems"] == ["Mail is not recorded: mailbox not routed; reconnect"]
    assert failing["counts"] == overview["counts"]


def test_HIS1_a_health_that_does_not_exist_is_refused() -> None:
    world = SyncWorld()

    with pytest.raises(service.Refused) as refused:
        people.dashboard(world.services, TENANT, health="great")

    assert refused.value.status == 400 and "needs_reconsent" in refused.value.reason


# -- onboarding many ----------------------------------------------------------------------------
class CountingCrm:
    """A CRM connector factory over a memory CRM that counts directory reads."""

    def __init__(self, crm: MemoryCrm) -> None:
        self.crm = crm
        self.directory_reads = 0

    def __call__(
        self, tenant: str, tenant_record: Any, crm_user: str, settings: Settings
    ) -> CrmConnector:
        return CountedConnector(self, self.crm.connector(crm_user))  # type: ignore[return-value]


class CountedConnector:
    def __init__(self, counter: CountingCrm, inner: Any) -> None:
        self.counter = counter
        self.inner = inner

    def directory(self) -> Any:
        self.counter.directory_reads += 1
        return self.inner.directory()

    def users(self) -> Any:
        return self.inner.users()


def onboarding_world() -> tuple[SyncWorld, CountingCrm]:
    world = SyncWorld()
    world.onboard()
    crm = MemoryCrm(world.now)
    crm.names.update(u2="Max Planck", u3="Ines Reis")
    counting = CountingCrm(crm)
    world.services.crm_connector = counting
    return world, counting


def test_AUTH1_many_users_get_links_in_one_step_and_one_bad_row_stops_none() -> None:
    world, counting = onboarding_world()
    before = world.store.user_records()

    made = people.onboard(world.services, TENANT, ["u2", "u42", "u3", "not an id"])

    assert [(r["user"], r["link"] is not None) for r in made] == [
        ("u2", True),
        ("u42", False),
        ("u3", True),
        ("not an id", False),
    ]
    assert made[1]["error"] == "u42 is not an active user of the tenant's CRM"
    assert "user ids are" in made[3]["error"]
    assert (made[0]["crm_user"], made[0]["email"], made[0]["error"]) == (
        "u2",
        "u2@example.com",
        None,
    )
    assert counting.directory_reads == 1  # once for the batch, not once per user
    users = world.store.user_records()
    assert "u42" not in users and "not an id" not in users and before == {}
    assert users["u2"]["crm_user"] == "u2"
    assert users["u2"][service.LINK_MADE] == world.now()
    opened = service.read_link(world.services, made[0]["link"].split("link=")[1])
    assert (opened.tenant, opened.user) == (TENANT, "u2")


def test_AUTH1_a_connected_user_mapped_to_another_crm_user_gets_no_link_and_is_unchanged() -> None:
    world, _ = onboarding_world()
    world.store.save_user_record("u1", {"crm_user": "u1"})
    world.store.save_connection_record(
        service.connection_id("u1", "google"), {"user": "u1", "provider": "google"}
    )
    kept = world.store.user_record("u1")

    [row] = people.onboard_csv(world.services, TENANT, "user,crm_user\nu1,u5\n")

    assert row["link"] is None
    assert row["error"] == (
        "line 2: u1 is connected as CRM user u1; disconnect them before mapping them to u5"
    )
    assert world.store.user_record("u1") == kept


def test_AUTH1_renewing_a_link_makes_a_new_one_and_the_old_one_still_opens() -> None:
    world, _ = onboarding_world()
    [first] = people.onboard(world.services, TENANT, ["u2"])
    world.advance(timedelta(days=1))

    [again] = people.onboard(world.services, TENANT, ["u2"])

    assert again["link"] != first["link"]
    old = service.read_link(world.services, first["link"].split("link=")[1])
    assert old.user == "u2"
    assert world.store.user_record("u2")[service.LINK_MADE] == world.now()  # type: ignore[index]


def test_AUTH1_a_csv_maps_users_to_crm_users_and_carries_addresses() -> None:
    world, counting = onboarding_world()
    text = (
        "\ufeffUser, CRM_User ,email\r\n"
        "ada,u2,ada@acme.example\r\n"
        "\r\n"
        '"bob","u3",\r\n'
        "ada,u4,\r\n"
        "cy,u5,not-an-address\r\n"
    )

    made = people.onboard_csv(world.services, TENANT, text)

    assert [(r["user"], r["crm_user"], r["email"]) for r in made] == [
        ("ada", "u2", "ada@acme.example"),
        ("bob", "u3", "u3@example.com"),  # the CRM's address, none being given
        ("ada", "u4", None),
        ("cy", "u5", "not-an-address"),
    ]
    assert [r["error"] for r in made] == [
        None,
        None,
        "line 5: ada is listed more than once (first on line 2)",
        "line 6: 'not-an-address' is not an e-mail address",
    ]
    assert world.store.user_record("bob") == {"crm_user": "u3", service.LINK_MADE: world.now()}
    assert world.store.user_record("cy") is None
    assert counting.directory_reads == 1


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "the file is empty"),
        ("crm_user,email\nu2,a@b.example\n", "line 1: there is no user column"),
        ("user,crm-user\nada,u2\n", "line 1: unknown column 'crm-user'"),
        ("user,User\nada,bob\n", "line 1: the column 'user' is named twice"),
        ("user\n", "the file lists no users below its first line"),
        ("user,crm_user\nada,u2\nbob\n", "line 3: 1 fields where the first line names 2 columns"),
        ("user,crm_user\nada,u2\n\nbob,u3,x\n", "line 4: 3 fields where the first line names 2"),
        ('user,email\n"ada\nlovelace",x@y.example\nbob,"b"c\n', "line 4: "),
    ],
)
def test_AUTH1_a_malformed_csv_is_refused_whole_naming_its_line(text: str, reason: str) -> None:
    world, counting = onboarding_world()

    with pytest.raises(service.Refused) as refused:
        people.onboard_csv(world.services, TENANT, text)

    assert refused.value.status == 400
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert world.store.user_records() == {}
    assert counting.directory_reads == 0  # refused before the CRM is asked


def test_AUTH1_a_csv_of_more_users_than_one_step_takes_is_refused_at_the_line_past_it() -> None:
    text = "user\n" + "".join(f"u{n}\n" for n in range(people.MAX_BATCH + 1))

    with pytest.raises(service.Refused) as refused:
        people.parse_csv(text)

    line = people.MAX_BATCH + 2  # the header, then MAX_BATCH users
    assert refused.value.reason.startswith(f"line {line}: a file lists at most")
    assert len(people.parse_csv(text.rsplit("u", 1)[0])) == people.MAX_BATCH


def test_AUTH1_a_crm_that_cannot_be_reached_refuses_the_batch_in_plain_words() -> None:
    world, _ = onboarding_world()
    world.store.save_tenant_record(
        {
            "crm": {"base_url": "http://127.0.0.1:9/api"},  # nothing listens there
            "crm_token": world.services.vault.seal(b"token", f"{TENANT}/crm-token"),
        }
    )
    world.services.crm_connector = None

    with pytest.raises(service.Refused) as refused:
        people.onboard(world.services, TENANT, ["u2"])

    assert refused.value.status == 503
    assert refused.value.reason == "the tenant's CRM did not answer, so its users cannot be listed"
    assert world.store.user_records() == {}
