"""BEY-3: the first sync's preview says what the first cycle will link (and by which
rule), create on each side and report as a likely duplicate, before anything is
written; the first cycle then does exactly that. A connection can wait for the user's
go, and neither the scheduler nor the worker starts it before. Driven through
SyncWorld, over the use cases the web app calls."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pytest

from crmsync import service
from crmsync.model import KINDS
from crmsync.testing import SyncWorld
from crmsync.usecases import preview

START = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # tomorrow, inside the first-cycle window
HOUR = timedelta(hours=1)
Provider = Literal["google", "microsoft"]
PHONE = [{"kind": "mobile", "number": "+1 202 555 0143"}]


def crm_member(world: SyncWorld, fields: dict[str, Any]) -> str:
    cid = world.crm.create("contact", fields)
    world.crm.add_to_sync_group(cid, user=world.user)
    return cid


def labelled(world: SyncWorld, fields: dict[str, Any]) -> str:
    pid = world.provider.create("contact", fields)
    world.provider.label(pid)
    return pid


def contact(first: str, last: str, email: str, **more: Any) -> dict[str, Any]:
    return {"first_name": first, "last_name": last, "emails": [email], **more}


def meeting(subject: str, start: datetime, hours: int = 1) -> dict[str, Any]:
    return {"type": "meeting", "subject": subject, "start": start, "end": start + hours * HOUR}


def event(subject: str, start: datetime, hours: int = 1) -> dict[str, Any]:
    return {"subject": subject, "start": start, "end": start + hours * HOUR}


def both_sides(world: SyncWorld) -> dict[str, Any]:
    """Every record of both sides, with its version: what a write would change."""
    return {
        f"{side}.{kind}": sorted((r["id"], r["version"]) for r in handle.all(kind))
        for side, handle in (("crm", world.crm), ("provider", world.provider))
        for kind in KINDS
    }


def stored(world: SyncWorld) -> dict[str, Any]:
    """What the store keeps of the connection's sync: links, cursors, runs, the queue."""
    conn = world.connection.id
    return {
        "links": {kind: world.links(kind) for kind in KINDS},
        "cursors": {
            (side, kind): world.store.cursor(conn, side, kind)
            for side in ("crm", "provider")
            for kind in KINDS
        },
        "runs": world.runs(),
        "queue": world.queue(),
        "lease": world.store.lease_holder(conn),
    }


def planned(report: dict[str, Any], kind: str, name: str) -> list[dict[str, Any]]:
    [shown] = [k for k in report["kinds"] if k["kind"] == kind]
    assert shown["error"] == ""
    assert shown[name]["count"] == len(shown[name]["shown"])
    rows: list[dict[str, Any]] = shown[name]["shown"]
    return rows


def done(items: list[dict[str, Any]], kind: str, outcome: str, direction: str = "") -> set[Any]:
    """What the run did to `kind`: pairs it linked, or the ids it created twins for."""
    found = [
        i
        for i in items
        if i["kind"] == kind
        and i["outcome"] == outcome
        and (not direction or i["direction"] == direction)
    ]
    if outcome in ("link", "skip"):
        return {(i["crm_id"], i["provider_id"]) for i in found}
    return {i["provider_id"] if direction == "to_crm" else i["crm_id"] for i in found}


def a_first_sync_to_preview(world: SyncWorld) -> dict[str, Any]:
    """Both sides before the first cycle: twins, loners and near misses of each kind."""
    ids: dict[str, Any] = {}
    ids["ada"] = (
        crm_member(world, contact("Ada", "Lovelace", "ada@example.com")),
        labelled(world, contact("Ada", "Lovelace", "ADA@example.com ")),  # CON-3: trimmed, any case
    )
    ids["grace_crm"] = crm_member(world, contact("Grace", "Hopper", "grace@navy.example"))
    ids["linus"] = labelled(world, contact("Linus", "Pauling", "linus@example.org"))
    ids["alan"] = (  # same name and phone, another e-mail: a likely duplicate
        crm_member(world, contact("Alan", "Turing", "alan@bletchley.example", phones=PHONE)),
        labelled(world, contact("Alan", "Turing", "alan@home.example", phones=PHONE)),
    )
    world.crm.create("contact", contact("Not", "Synced", "nobody@example.com"))  # no group
    world.provider.create("contact", contact("No", "Label", "nolabel@example.com"))
    ids["review"] = (
        world.crm.create("activity", meeting("Review", START)),
        world.provider.create("activity", event("Review", START)),
    )
    ids["standup"] = world.crm.create("activity", meeting("Standup", START + 3 * HOUR))
    ids["lunch"] = world.provider.create("activity", event("Lunch", START + 2 * HOUR))
    ids["planning"] = (  # same subject, same day, another time: a likely duplicate
        world.crm.create("activity", meeting("Planning", START + 4 * HOUR)),
        world.provider.create("activity", event("Planning", START + 6 * HOUR)),
    )
    due = {"subject": "Send offer", "due": date(2026, 11, 5)}
    ids["offer"] = (world.crm.create("todo", due), world.provider.create("todo", due))
    return ids


# -- the preview and the first cycle ----------------------------------------------------------
@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_BEY3_the_preview_writes_nothing_and_the_first_cycle_then_does_what_it_said(
    provider: Provider,
) -> None:
    # Over a provider's sandbox (make test's sandbox passes) "nothing" includes the
    # label: reading makes no contact group.
    world = SyncWorld(provider=provider)
    world.onboard()
    ids = a_first_sync_to_preview(world)
    sides, kept, writes = both_sides(world), stored(world), world.faults.writes

    report = preview.preview(world.services, "t1", world.connection.id)

    assert (both_sides(world), stored(world)) == (sides, kept)
    if world.provider_backend != "graph-sandbox":  # where batched reads count as writes
        assert world.faults.writes == writes  # not one write request, to either side
    assert report["first"] is True
    # what it says, record by record
    contact_links = {(r["crm_id"], r["provider_id"]) for r in planned(report, "contact", "link")}
    assert contact_links == {ids["ada"]}
    assert "e-mail" in planned(report, "contact", "link")[0]["reason"]
    assert {r["provider_id"] for r in planned(report, "contact", "to_crm")} == {
        ids["linus"],
        ids["alan"][1],
    }
    assert {r["crm_id"] for r in planned(report, "contact", "to_provider")} == {
        ids["grace_crm"],
        ids["alan"][0],
    }
    [alan] = planned(report, "contact", "duplicates")
    assert (alan["crm_id"], alan["provider_id"]) == ids["alan"]
    assert (alan["crm"]["detail"], alan["provider"]["detail"]) == (
        "alan@bletchley.example",
        "alan@home.example",
    )
    [review] = planned(report, "activity", "link")
    assert (review["crm_id"], review["provider_id"]) == ids["review"]
    assert "subject, start, duration and user" in review["reason"]
    assert {r["crm_id"] for r in planned(report, "activity", "to_provider")} == {
        ids["standup"],
        ids["planning"][0],
    }
    assert {r["provider_id"] for r in planned(report, "activity", "to_crm")} == {
        ids["lunch"],
        ids["planning"][1],
    }
    [planning] = planned(report, "activity", "duplicates")
    assert (planning["crm_id"], planning["provider_id"]) == ids["planning"]
    [offer] = planned(report, "todo", "link")
    assert (offer["crm_id"], offer["provider_id"]) == ids["offer"]

    run = world.sync()  # the first cycle
    items = world.history(run["id"])

    for kind in KINDS:  # it did what the preview said, no more and no less
        said_links = {(r["crm_id"], r["provider_id"]) for r in planned(report, kind, "link")}
        assert done(items, kind, "link") == said_links
        said_crm = {r["provider_id"] for r in planned(report, kind, "to_crm")}
        assert done(items, kind, "create", "to_crm") == said_crm
        said_provider = {r["crm_id"] for r in planned(report, kind, "to_provider")}
        assert done(items, kind, "create", "to_provider") == said_provider
        said_near = {(r["crm_id"], r["provider_id"]) for r in planned(report, kind, "duplicates")}
        assert done(items, kind, "skip") == said_near
        linked = {(link["crm_id"], link["provider_id"]) for link in world.links(kind)}
        assert said_links <= linked
        assert len(linked) == len(said_links) + len(said_crm) + len(said_provider)


def test_BEY3_a_preview_before_the_label_exists_does_not_make_it() -> None:
    # Google's label is a contact group the first write makes; a read must not
    world = SyncWorld()
    world.onboard()
    ada = crm_member(world, contact("Ada", "Lovelace", "ada@example.com"))
    twin = world.provider.create("contact", contact("Ada", "L", "ada@example.com"))
    writes = world.faults.writes

    report = preview.preview(world.services, "t1", world.connection.id)

    assert world.faults.writes == writes
    [link] = planned(report, "contact", "link")
    assert (link["crm_id"], link["provider_id"]) == (ada, twin)
    world.sync()
    assert world.provider.labelled() == [twin]  # the cycle labels it, making the label


def test_BEY3_after_the_first_cycle_the_preview_shows_what_the_next_one_would_do() -> None:
    world = SyncWorld()
    crm_member(world, contact("Ada", "Lovelace", "ada@example.com"))
    world.sync()
    grace = crm_member(world, contact("Grace", "Hopper", "grace@navy.example"))

    report = preview.preview(world.services, "t1", world.connection.id)

    assert report["first"] is False
    assert planned(report, "contact", "link") == []
    assert [r["crm_id"] for r in planned(report, "contact", "to_provider")] == [grace]


# -- waiting for the user's go ----------------------------------------------------------------
def test_BEY3_a_connection_waiting_for_the_go_is_neither_scheduled_nor_synced_until_started() -> (
    None
):
    world = SyncWorld()
    world.onboard()
    conn = world.connection.id
    # as onboarding leaves a connection whose user asked to preview the first sync
    world.store.save_connection_record(conn, {"preview_first": True, "next_due": world.now()})
    cid = crm_member(world, contact("Ada", "Lovelace", "ada@example.com"))

    assert service.fanout(world.services).enqueued == 0
    assert world.sync("connect")["reason"] == service.WAITS_FOR_GO
    assert world.provider.all("contact") == [] and world.runs() == []
    assert preview.preview(world.services, "t1", conn)["waiting"] is True

    assert preview.start_first_sync(world.services, "t1", conn) is True

    [task] = world.services.queue.due(world.now())  # type: ignore[attr-defined]
    assert (task.connection, task.trigger) == (conn, "connect")
    run = service.work(world.services, "t1", conn, task.trigger)
    assert run["status"] == "ok"
    assert [link["crm_id"] for link in world.links("contact")] == [cid]
    with pytest.raises(service.Refused) as refused:
        preview.start_first_sync(world.services, "t1", conn)
    assert refused.value.status == 409
