"""The planner's decisions, rule by rule: `reconcile()` called directly with hand-built
records, links and context (no SyncWorld, no adapters). Each test names the requirement
it proves; expected values are what the requirement says must happen.

Settings are Microsoft's defaults unless a test says otherwise: every contact and to-do
field is mapped and to-do statuses map one to one, so a provider record's fields are
the canonical ones and no lens work hides what a rule decided.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from crmsync.engine import Context, CrmSchema, Decision, Link, SideRecord
from crmsync.engine.reconcile import Links, reconcile
from crmsync.model import Kind, normalize
from crmsync.settings import resolve

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
START = NOW + timedelta(days=1)
EARLIER, LATER = NOW - timedelta(hours=2), NOW - timedelta(hours=1)


def fields(kind: Kind, **raw: Any) -> dict[str, Any]:
    defaults: dict[Kind, dict[str, Any]] = {
        "contact": {"first_name": "Ann", "last_name": "Lee", "emails": ["ann@example.com"]},
        "activity": {"subject": "Planning", "start": START, "end": START + timedelta(hours=1)},
        "todo": {"subject": "Send offer", "due": date(2026, 11, 20)},
    }
    return normalize(kind, {**defaults[kind], **raw})


def context(provider: str = "microsoft", schema: CrmSchema | None = None, **kw: Any) -> Context:
    """A cycle's context; keyword arguments that are not Context fields are settings."""
    own = {k: kw.pop(k) for k in ("first_cycle", "linked_count", "resolutions", "picks") if k in kw}
    return Context(
        now=NOW,
        user="u1",
        settings=resolve(provider, None, kw),
        schema=schema or CrmSchema(),
        syncing_users=frozenset({"u2"}),
        **own,
    )


def link(kind: Kind, base: dict[str, Any], n: int = 1, **kw: Any) -> Link:
    return Link(f"{kind}-crm-c{n}", kind, f"c{n}", f"p{n}", "1", "1", base, **kw)


def crm(values: dict[str, Any] | None, n: int = 1, **kw: Any) -> SideRecord:
    return SideRecord(f"c{n}", kw.pop("version", "2"), values, **kw)


def provider(values: dict[str, Any] | None, n: int = 1, **kw: Any) -> SideRecord:
    return SideRecord(f"p{n}", kw.pop("version", "2"), values, **kw)


def plan(
    kind: Kind,
    crm_changes: list[SideRecord],
    provider_changes: list[SideRecord],
    links: list[Link],
    ctx: Context,
) -> list[Decision]:
    return list(reconcile(kind, crm_changes, provider_changes, Links.of(links), ctx).decisions)


def one(decisions: list[Decision]) -> Decision:
    assert len(decisions) == 1, decisions
    return decisions[0]


def written(decision: Decision) -> dict[tuple[str, str], Any]:
    """(side, op) -> the fields written, in that side's view."""
    return {(w.side, w.op): dict(w.fields or {}) for w in decision.writes}


# -- linked pairs: SYN-2, SYN-3, SYN-4, SYN-5, SYN-8 -----------------------------------


def test_SYN2_edits_to_different_fields_are_merged_both_ways() -> None:
    base = fields("contact", title="Buyer", notes="met at the fair")
    d = one(
        plan(
            "contact",
            [crm({**base, "title": "Head of buying"}, modified=EARLIER)],
            [provider({**base, "notes": "call in May"}, modified=LATER)],
            [link("contact", base)],
            context(),
        )
    )
    assert (d.outcome, d.direction) == ("update", "both")
    assert written(d) == {
        ("crm", "update"): {"notes": "call in May"},
        ("provider", "update"): {"title": "Head of buying"},
    }
    assert d.link is not None
    assert (d.link.base["title"], d.link.base["notes"]) == ("Head of buying", "call in May")


@pytest.mark.parametrize(
    ("policy", "crm_modified", "provider_modified", "winner"),
    [
        ("provider_wins", LATER, EARLIER, "provider"),
        ("crm_wins", EARLIER, LATER, "crm"),
        ("latest_wins", LATER, EARLIER, "crm"),
        ("latest_wins", EARLIER, LATER, "provider"),
    ],
)
def test_SYN2_the_conflict_policy_decides_a_field_changed_on_both_sides(
    policy: str, crm_modified: datetime, provider_modified: datetime, winner: str
) -> None:
    base = fields("contact", title="Buyer")
    d = one(
        plan(
            "contact",
            [crm({**base, "title": "CRM title"}, modified=crm_modified)],
            [provider({**base, "title": "Provider title"}, modified=provider_modified)],
            [link("contact", base)],
            context(conflict_policy=policy),
        )
    )
    loser = "provider" if winner == "crm" else "crm"
    value = "CRM title" if winner == "crm" else "Provider title"
    assert written(d) == {(loser, "update"): {"title": value}}
    assert d.link is not None and d.link.base["title"] == value


def test_SYN2_a_manual_conflict_waits_and_overwrites_neither_side() -> None:
    base = fields("contact", title="Buyer")
    d = one(
        plan(
            "contact",
            [crm({**base, "title": "CRM title"})],
            [provider({**base, "title": "Provider title"})],
            [link("contact", base)],
            context(conflict_policy="manual"),
        )
    )
    assert (d.outcome, d.writes) == ("conflict", ())
    assert d.hold is not None and d.hold.fields == ("title",)
    assert (d.hold.crm_values, d.hold.provider_values) == (
        {"title": "CRM title"},
        {"title": "Provider title"},
    )


def test_SYN2_SYN3_a_conflict_settled_field_by_field_writes_each_side_only_what_it_lacks() -> None:
    base = fields("contact", title="Buyer", company="Old Co")
    d = one(
        plan(
            "contact",
            [crm({**base, "title": "CRM title", "company": "CRM Co", "last_name": "Lee-Hart"})],
            [provider({**base, "title": "Provider title", "company": "Provider Co"})],
            [link("contact", base)],
            context(
                conflict_policy="manual",
                picks={"contact-crm-c1": {"title": "provider", "company": "crm"}},
            ),
        )
    )
    assert (d.outcome, d.hold) == ("update", None)
    assert written(d) == {
        ("crm", "update"): {"title": "Provider title"},
        ("provider", "update"): {"company": "CRM Co", "last_name": "Lee-Hart"},
    }
    assert d.link is not None
    assert (d.link.base["title"], d.link.base["company"]) == ("Provider title", "CRM Co")


def test_SYN2_picks_that_leave_a_conflicting_field_open_keep_the_conflict_waiting() -> None:
    base = fields("contact", title="Buyer", company="Old Co")
    d = one(
        plan(
            "contact",
            [crm({**base, "title": "CRM title", "company": "CRM Co"})],
            [provider({**base, "title": "Provider title", "company": "Provider Co"})],
            [link("contact", base)],
            context(conflict_policy="manual", picks={"contact-crm-c1": {"title": "provider"}}),
        )
    )
    assert (d.outcome, d.writes) == ("conflict", ())
    assert d.hold is not None and set(d.hold.fields) == {"title", "company"}


def test_SYN3_a_long_provider_text_is_cut_in_the_crm_and_kept_whole_in_the_base() -> None:
    schema = CrmSchema(limits={"contact": {"notes": 10}})
    base = fields("contact", notes="short")
    long_text = "a note far longer than ten characters"
    d = one(
        plan(
            "contact",
            [],
            [provider({**base, "notes": long_text})],
            [link("contact", base)],
            context(schema=schema),
        )
    )
    assert written(d) == {("crm", "update"): {"notes": long_text[:10]}}
    assert d.link is not None and d.link.base["notes"] == long_text


def test_SYN3_the_cut_text_coming_back_from_the_crm_is_no_edit() -> None:
    schema = CrmSchema(limits={"contact": {"notes": 10}})
    base = fields("contact", notes="a note far longer than ten characters")
    d = one(
        plan(
            "contact",
            [crm({**base, "notes": base["notes"][:10]})],  # a CRM edit elsewhere bumped it
            [],
            [link("contact", base)],
            context(schema=schema),
        )
    )
    assert (d.outcome, d.writes) == ("none", ())
    assert d.link is not None and d.link.base["notes"] == base["notes"]


def test_SYN4_our_own_write_coming_back_is_no_news() -> None:
    base = fields("todo")
    echo = crm({**base, "notes": "what we wrote"}, version="1")  # the link's own version
    assert plan("todo", [echo], [], [link("todo", base)], context()) == []


def test_SYN4_a_pair_with_an_unfinished_write_waits_for_it() -> None:
    base = fields("todo")
    d = one(
        plan(
            "todo",
            [crm({**base, "notes": "edited"})],
            [],
            [link("todo", base, state="creating")],
            context(),
        )
    )
    assert (d.outcome, d.writes, d.retry) == ("skip", (), True)


def test_SYN5_an_unreadable_record_fails_alone_and_is_retried() -> None:
    base = fields("todo")
    d = one(
        plan(
            "todo",
            [crm(None, error="due: not a date")],
            [],
            [link("todo", base)],
            context(),
        )
    )
    assert (d.outcome, d.writes, d.retry, d.reason) == ("fail", (), True, "due: not a date")


def test_SYN8_a_new_version_with_no_mapped_change_writes_nothing() -> None:
    base = fields("contact", title="Buyer")
    d = one(plan("contact", [crm(dict(base))], [], [link("contact", base)], context()))
    assert (d.outcome, d.writes) == ("none", ())
    assert d.link is not None and d.link.crm_version == "2"  # the new version is recorded


# -- gone records: CAL-4, CON-6, SYN-7 -------------------------------------------------


@pytest.mark.parametrize(("gone_side", "other"), [("crm", "provider"), ("provider", "crm")])
def test_CAL4_an_activity_deleted_on_one_side_is_deleted_on_the_other(
    gone_side: str, other: str
) -> None:
    base = fields("activity", leader="u1")
    gone = [crm(None)] if gone_side == "crm" else [provider(None)]
    d = one(
        plan(
            "activity",
            gone if gone_side == "crm" else [],
            gone if gone_side == "provider" else [],
            [link("activity", base)],
            context(),
        )
    )
    assert d.outcome == "delete"
    assert [(w.side, w.op, w.target) for w in d.writes] == [
        (other, "delete", "c1" if other == "crm" else "p1")
    ]
    assert d.dropped is not None and d.link is None


GONE, OUT = None, "out of scope"


@pytest.mark.parametrize(
    ("behaviour", "gone_side", "how", "write"),
    [
        ("unlink", "provider", GONE, ("crm", "scope", False)),  # leaves the sync group
        ("unlink", "crm", GONE, ("provider", "scope", False)),  # loses the label
        ("delete", "provider", GONE, ("crm", "delete", None)),
        ("unlink", "crm", OUT, ("provider", "delete", None)),  # removed from the sync group
        ("unlink", "provider", OUT, ("crm", "scope", False)),  # the label was removed
        ("ignore", "provider", GONE, None),
    ],
)
def test_CON6_a_contact_gone_on_one_side(
    behaviour: str, gone_side: str, how: str | None, write: tuple[str, str, bool | None] | None
) -> None:
    base = fields("contact")
    record = (crm if gone_side == "crm" else provider)(
        None if how is GONE else dict(base), in_scope=how is GONE
    )
    d = one(
        plan(
            "contact",
            [record] if gone_side == "crm" else [],
            [record] if gone_side == "provider" else [],
            [link("contact", base)],
            context(contact_delete=behaviour),
        )
    )
    assert [(w.side, w.op, w.in_scope) for w in d.writes] == ([write] if write else [])
    if write is None:  # deletes ignored: the pair stays, no longer followed
        assert d.link is not None and d.link.state == "detached"


def test_SYN7_an_edit_beats_a_delete_and_restores_the_record() -> None:
    base = fields("todo", notes="draft")
    d = one(
        plan(
            "todo",
            [crm({**base, "notes": "final"})],
            [provider(None)],
            [link("todo", base)],
            context(),
        )
    )
    assert (d.outcome, d.direction) == ("restore", "to_provider")
    assert [(w.side, w.op) for w in d.writes] == [("provider", "create")]
    assert d.writes[0].fields is not None and d.writes[0].fields["notes"] == "final"
    assert d.link is not None and (d.link.crm_id, d.link.provider_id) == ("c1", None)


# -- unlinked records: CON-3, CON-4, CON-5, CON-8, CAL-2, TSK-2 ----------------------


def test_CON3_the_first_cycle_links_contacts_by_email_and_never_duplicates() -> None:
    ann = fields("contact", title="Buyer")
    d = one(
        plan(
            "contact",
            [crm(ann, n=7)],
            [provider({**ann, "title": "Head of buying"}, n=9, modified=LATER)],
            [],
            context(first_cycle=True),
        )
    )
    assert d.outcome == "link"
    assert not any(w.op == "create" for w in d.writes)
    assert d.link is not None and (d.link.crm_id, d.link.provider_id) == ("c7", "p9")


def test_CON3_a_near_duplicate_is_reported_not_merged() -> None:
    phone = [{"kind": "work", "number": "+493012345678"}]
    decisions = plan(
        "contact",
        [crm(fields("contact", emails=["ann@work.example"], phones=phone), n=1)],
        [provider(fields("contact", emails=["ann@home.example"], phones=phone), n=2)],
        [],
        context(first_cycle=True),
    )
    assert "link" not in {d.outcome for d in decisions}
    assert any(d.outcome == "skip" and "duplicate" in d.reason for d in decisions)


@pytest.mark.parametrize(
    ("kind", "twin", "outcomes"),
    [
        ("activity", {}, ["link"]),
        # another duration, the same day: both created, and reported as a near miss
        ("activity", {"end": START + timedelta(hours=2)}, ["create", "create", "skip"]),
        ("activity", {"subject": "Review"}, ["create", "create"]),
        ("todo", {}, ["link"]),
        ("todo", {"due": date(2026, 11, 21)}, ["create", "create"]),
    ],
)
def test_CAL2_TSK2_first_cycle_links_only_on_subject_and_dates(
    kind: Kind, twin: dict[str, Any], outcomes: list[str]
) -> None:
    mine = fields(kind, leader="u1") if kind == "activity" else fields(kind)
    decisions = plan(
        kind,
        [crm(mine, n=1)],
        [provider({**mine, **twin}, n=2)],
        [],
        context(first_cycle=True),
    )
    assert sorted(d.outcome for d in decisions) == outcomes
    reasons = [d.reason for d in decisions if d.outcome == "link"]
    assert all(r.startswith("matched by the same subject") for r in reasons)


@pytest.mark.parametrize(
    ("raw", "account"),
    [
        ({"company": "Acme"}, "Acme"),
        ({"company": ""}, "Lee, Ann"),
    ],
)
def test_CON4_CON5_a_provider_contact_is_created_in_the_crm_with_its_account(
    raw: dict[str, Any], account: str
) -> None:
    d = one(plan("contact", [], [provider(fields("contact", **raw))], [], context()))
    assert (d.outcome, d.direction) == ("create", "to_crm")
    (write,) = d.writes
    assert (write.side, write.op, write.in_scope, write.as_lead) == ("crm", "create", True, False)
    assert write.account is not None
    assert (write.account.name, write.account.type, write.account.manager) == (
        account,
        "Prospect",
        "u1",
    )


def test_CON8_new_provider_contacts_as_leads_are_not_followed_afterwards() -> None:
    d = one(plan("contact", [], [provider(fields("contact"))], [], context(new_contacts="lead")))
    assert [(w.side, w.op, w.as_lead) for w in d.writes] == [("crm", "create", True)]
    assert d.link is not None and d.link.state == "detached"


# -- calendar rules: CAL-6, CAL-7 ------------------------------------------------------


def test_CAL6_a_member_who_edits_the_leaders_activity_gets_an_own_copy() -> None:
    base = fields("activity", leader="u2", members=["u1", "u3"], location="Room 1")
    d = one(
        plan(
            "activity",
            [],
            [provider({**base, "members": ("u3",), "location": "Room 9"})],
            [link("activity", base)],
            context(),
        )
    )
    assert d.outcome == "create"
    create, leave = d.writes
    assert (create.side, create.op) == ("crm", "create")
    assert create.fields is not None
    assert (create.fields["leader"], create.fields["location"]) == ("u1", "Room 9")
    assert (leave.side, leave.op, leave.target, leave.fields) == (
        "crm",
        "update",
        "c1",
        {"members": ("u3",)},
    )
    assert d.link is not None and d.link.provider_id == "p1" and d.link.crm_id is None


@pytest.mark.parametrize(
    ("declined", "leader", "writes"),
    [
        ("skip_then_remove", "u1", [("provider", "delete"), ("crm", "delete")]),
        ("skip_then_remove", "u2", [("provider", "delete"), ("crm", "update")]),
        ("sync_hidden", "u1", [("crm", "update")]),
    ],
)
def test_CAL7_declined_after_the_first_sync(
    declined: str, leader: str, writes: list[tuple[str, str]]
) -> None:
    base = fields("activity", leader=leader, members=[] if leader == "u1" else ["u1"])
    seen = {**base, "members": (), "status": "declined"}  # the user is no attendee of their own
    d = one(
        plan(
            "activity",
            [],
            [provider(seen)],
            [link("activity", base)],
            context(declined=declined),
        )
    )
    assert [(w.side, w.op) for w in d.writes] == writes
    if ("crm", "update") in writes and declined == "skip_then_remove":  # leaves the members
        assert d.writes[1].fields == {"members": ()}


# -- settings: SET-1, SET-3, SET-4, SET-5; the guard: SYN-6 ----------------------------


def test_SET1_a_disabled_kind_plans_nothing() -> None:
    ctx = context(enabled={"todo": False})
    assert plan("todo", [crm(fields("todo"), n=5)], [], [], ctx) == []


@pytest.mark.parametrize(
    ("settings", "blocked"),
    [
        ({"direction": {"contact": "crm_to_provider"}}, True),  # SET-1
        ({"permissions": {"contact": {"crm": {"update": False}}}}, True),  # SET-3
        ({"permissions": {"contact": {"crm": {"delete": False}}}}, False),
    ],
)
def test_SET1_SET3_a_provider_edit_reaches_the_crm_only_if_settings_allow(
    settings: dict[str, Any], blocked: bool
) -> None:
    base = fields("contact", title="Buyer")
    d = one(
        plan(
            "contact",
            [],
            [provider({**base, "title": "Head of buying"})],
            [link("contact", base)],
            context(**settings),
        )
    )
    assert written(d) == ({} if blocked else {("crm", "update"): {"title": "Head of buying"}})
    assert d.outcome == ("skip" if blocked else "update")


def test_SET3_a_delete_the_matrix_forbids_only_detaches() -> None:
    base = fields("activity", leader="u1")
    d = one(
        plan(
            "activity",
            [crm(None)],
            [],
            [link("activity", base)],
            context(permissions={"appointment": {"provider": {"delete": False}}}),
        )
    )
    assert d.writes == ()
    assert d.link is not None and d.link.state == "detached"


def test_SET4_an_excluded_record_is_never_touched() -> None:
    base = fields("todo")
    d = one(
        plan(
            "todo",
            [crm({**base, "notes": "edited"})],
            [],
            [link("todo", base)],
            context(exclusions={"todo": {"c1": None}}),
        )
    )
    assert (d.outcome, d.writes) == ("skip", ())


@pytest.mark.parametrize(
    ("confirm", "changes", "reason"),
    [
        ("new", "new", "confirm_new"),
        ("modified", "edit", "confirm_modified"),
        ("deleted", "delete", "confirm_deleted"),
    ],
)
def test_SET5_ask_before_apply_holds_the_change_and_writes_nothing(
    confirm: str, changes: str, reason: str
) -> None:
    base = fields("todo")
    ctx = context(confirm={confirm: True})
    if changes == "new":
        decisions = plan("todo", [crm(base, n=4)], [], [], ctx)
    else:
        seen = crm({**base, "notes": "edited"}) if changes == "edit" else crm(None)
        decisions = plan("todo", [seen], [], [link("todo", base)], ctx)
    d = one(decisions)
    assert (d.outcome, d.writes) == ("hold", ())
    assert d.hold is not None and d.hold.reason == reason


@pytest.mark.parametrize(
    ("deleted", "linked", "held"),
    [
        (10, 20, True),  # 10 deletes, half of the linked records
        (9, 20, False),  # fewer than mass_delete_min
        (10, 40, False),  # not more than 25 % of the linked records
        (11, 40, True),
    ],
)
def test_SYN6_many_deletes_in_one_cycle_wait_for_confirmation(
    deleted: int, linked: int, held: bool
) -> None:
    links = [link("todo", fields("todo", subject=f"T{n}"), n=n) for n in range(deleted)]
    gone = [provider(None, n=n) for n in range(deleted)]
    decisions = plan("todo", [], gone, links, context(linked_count=linked))
    assert len(decisions) == deleted
    if held:
        assert all(d.writes == () and d.hold and d.hold.reason == "mass_delete" for d in decisions)
    else:
        assert all([w.op for w in d.writes] == ["delete"] for d in decisions)
