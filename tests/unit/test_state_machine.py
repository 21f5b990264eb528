"""Random histories of edits, syncs, crashes and failures (SYN-2, SYN-4, SET-3, BEY-4).

In the style of vdirsyncer's SyncMachine: Hypothesis drives creates, updates and
deletes on both sides, settings changes, crashes after a random write and failing
writes, and after every quiescent sync checks that
- both sides agree on every mapped field (seen through the provider's view, so the
  completion marker and the related-info block are accounted for),
- no record exists twice and every in-scope record is linked,
- no edit the conflict policy says must survive was lost,
- in restricted runs, nothing forbidden by direction or the permission matrix, and no
  excluded record, was ever touched.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crmsync.engine.lens import provider_view
from crmsync.engine.records import Context
from crmsync.model import KINDS, normalize
from crmsync.testing import SyncWorld

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NAMES = ["Ann", "Bo", "Cy", "Di"]
WORDS = ["alpha", "beta", "gamma", "delta"]
STARTS = [NOW + timedelta(days=d, hours=h) for d in (1, 3) for h in (0, 5)]
QUIET = {"none", "skip"}

kinds = st.sampled_from(KINDS)
DIRECTIONS = st.fixed_dictionaries(
    {k: st.sampled_from(["both", "crm_to_provider", "provider_to_crm"]) for k in KINDS}
)
FORBIDDEN = st.sets(
    st.tuples(
        st.sampled_from(["contact", "appointment", "call", "todo"]),
        st.sampled_from(["crm", "provider"]),
        st.sampled_from(["create", "update", "delete"]),
    ),
    max_size=6,
)
policies = st.sampled_from(["provider_wins", "crm_wins", "latest_wins"])


def new_fields(kind: str, n: int, draw_word: str, start: datetime) -> dict[str, Any]:
    if kind == "contact":
        return {
            "first_name": NAMES[n % 4],
            "last_name": f"N{n}",
            "emails": [f"p{n}@example.com"],
            "title": draw_word,
        }
    if kind == "activity":
        return {
            "subject": f"{draw_word} {n}",
            "start": start,
            "end": start + timedelta(hours=1),
            "type": "call" if n % 2 else "meeting",
            "notes": draw_word,
        }
    return {"subject": f"{draw_word} {n}", "due": (start.date()), "notes": draw_word}


EDITABLE = {
    "contact": {"title": WORDS, "notes": WORDS, "company": WORDS},
    "activity": {"location": WORDS, "notes": WORDS, "subject": WORDS},
    "todo": {"notes": WORDS, "due": [date(2026, 11, d) for d in (5, 6, 7)], "subject": WORDS},
}


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: SyncWorld | None = None
        self.restricted = False
        self.n = 0
        # edits since the last quiescent sync: (side, kind, id) -> {field: (value, when)}
        self.edits: dict[tuple[str, str, str], dict[str, tuple[Any, datetime]]] = {}
        self.deleted: set[tuple[str, str, str]] = set()
        self.snapshot: dict[tuple[str, str, str], str] = {}  # versions before a sync
        self.excluded: set[str] = set()
        self.touched: dict[tuple[str, str, str], datetime] = {}  # last edit per record

    # -- set-up --------------------------------------------------------------------
    @initialize(
        provider=st.sampled_from(["google", "microsoft"]),
        policy=policies,
        restricted=st.booleans(),
        data=st.data(),
    )
    def start(self, provider: str, policy: str, restricted: bool, data: st.DataObject) -> None:
        if restricted:
            self.restricted_world(provider, data.draw(DIRECTIONS), data.draw(FORBIDDEN))
        else:
            self.free_world(provider, policy)

    def free_world(self, provider: str, policy: str) -> None:
        settings = {"conflict_policy": policy, "mass_delete_min": 1000}
        self.world = SyncWorld(
            provider=provider,
            settings=settings,  # type: ignore[arg-type]
            now=NOW,
        )

    def restricted_world(
        self, provider: str, direction: dict[str, str], forbidden: set[tuple[str, str, str]]
    ) -> None:
        permissions: dict[str, Any] = {}
        for category, side, op in forbidden:
            permissions.setdefault(category, {}).setdefault(side, {})[op] = False
        self.world = SyncWorld(
            provider=provider,
            now=NOW,  # type: ignore[arg-type]
            settings={"direction": direction, "permissions": permissions},
        )
        self.restricted = True
        self.direction = direction
        self.forbidden = forbidden

    # -- edits on either side ----------------------------------------------------------
    def _tick(self) -> datetime:
        assert self.world is not None
        self.world.advance(timedelta(minutes=1))
        return self.world.now()

    @precondition(lambda self: self.world is not None)
    @rule(
        kind=kinds,
        side=st.sampled_from(["crm", "provider"]),
        word=st.sampled_from(WORDS),
        start=st.sampled_from(STARTS),
    )
    def create(self, kind: str, side: str, word: str, start: datetime) -> None:
        assert self.world is not None
        self._tick()
        self.n += 1
        fields = new_fields(kind, self.n, word, start)
        if side == "crm":
            rid = self.world.crm.create(kind, fields)  # type: ignore[arg-type]
            if kind == "contact":
                self.world.crm.add_to_sync_group(rid)
        else:
            rid = self.world.provider.create(kind, fields)  # type: ignore[arg-type]
            if kind == "contact":
                self.world.provider.label(rid)

    def _note_edit(
        self, side: str, kind: str, rid: str, name: str, value: Any, when: datetime
    ) -> None:
        """Remember an edit that changes the agreed value; an edit back to it is none."""
        assert self.world is not None
        self.touched[(side, kind, rid)] = when
        key = "crm_id" if side == "crm" else "provider_id"
        base = next((ln["base"] for ln in self.world.links(kind) if ln[key] == rid), None)
        if (
            base is not None
            and normalize(kind, {**base, name: value})[name]
            == normalize(  # type: ignore[arg-type]
                kind,
                base,  # type: ignore[arg-type]
            )[name]
        ):
            self.edits.get((side, kind, rid), {}).pop(name, None)
            return
        self.edits.setdefault((side, kind, rid), {})[name] = (value, when)

    def _live(self, side: str, kind: str) -> list[dict[str, Any]]:
        assert self.world is not None
        if side == "crm":
            records = self.world.crm.all(kind)  # type: ignore[arg-type]
            if kind == "contact":
                group = set(self.world.crm.sync_group())
                records = [r for r in records if r["id"] in group]
        else:
            records = self.world.provider.all(kind)  # type: ignore[arg-type]
            if kind == "contact":
                labelled = set(self.world.provider.labelled())
                records = [r for r in records if r["id"] in labelled]
        return sorted(records, key=lambda r: r["id"])

    @precondition(lambda self: self.world is not None)
    @rule(
        kind=kinds,
        side=st.sampled_from(["crm", "provider"]),
        pick=st.integers(0, 50),
        data=st.data(),
    )
    def update(self, kind: str, side: str, pick: int, data: st.DataObject) -> None:
        assert self.world is not None
        records = self._live(side, kind)
        if not records:
            return
        record = records[pick % len(records)]
        name = data.draw(st.sampled_from(sorted(EDITABLE[kind])))
        value = data.draw(st.sampled_from(EDITABLE[kind][name]))
        if name == "subject":
            value = f"{value} {record['subject'].split(' ')[-1]}"  # stay unique
        when = self._tick()
        target = self.world.crm if side == "crm" else self.world.provider
        target.update(kind, record["id"], {name: value})  # type: ignore[arg-type]
        self._note_edit(side, kind, record["id"], name, value, when)

    @precondition(lambda self: self.world is not None)
    @rule(kind=kinds, pick=st.integers(0, 50), crm_first=st.booleans(), data=st.data())
    def edit_both_sides(self, kind: str, pick: int, crm_first: bool, data: st.DataObject) -> None:
        """The same field edited on both sides of a linked pair: a conflict (SYN-2)."""
        assert self.world is not None
        crm = {r["id"] for r in self._live("crm", kind)}
        prov = {r["id"] for r in self._live("provider", kind)}
        pairs = [
            ln for ln in self.world.links(kind) if ln["crm_id"] in crm and ln["provider_id"] in prov
        ]
        if not pairs:
            return
        link = pairs[pick % len(pairs)]
        name = data.draw(st.sampled_from(["notes", "subject" if kind != "contact" else "title"]))
        values = data.draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=2, unique=True))
        order = [("crm", link["crm_id"]), ("provider", link["provider_id"])]
        if not crm_first:
            order.reverse()
        for (side, rid), value in zip(order, values, strict=True):
            if name == "subject":
                value = f"{value} {rid}"
            when = self._tick()
            target = self.world.crm if side == "crm" else self.world.provider
            target.update(kind, rid, {name: value})  # type: ignore[arg-type]
            self._note_edit(side, kind, rid, name, value, when)

    @precondition(lambda self: self.world is not None)
    @rule(kind=kinds, side=st.sampled_from(["crm", "provider"]), pick=st.integers(0, 50))
    def delete(self, kind: str, side: str, pick: int) -> None:
        assert self.world is not None
        records = self._live(side, kind)
        if not records:
            return
        record = records[pick % len(records)]
        self._tick()
        target = self.world.crm if side == "crm" else self.world.provider
        target.delete(kind, record["id"])  # type: ignore[arg-type]
        self.deleted.add((side, kind, record["id"]))

    @precondition(lambda self: self.world is not None and self.restricted)
    @rule(pick=st.integers(0, 50), kind=kinds)
    def exclude(self, pick: int, kind: str) -> None:
        assert self.world is not None
        records = self._live("crm", kind)
        if records:
            record = records[pick % len(records)]
            self.world.exclude(kind, record["id"])  # type: ignore[arg-type]
            self.excluded.add(record["id"])

    @precondition(lambda self: self.world is not None and not self.restricted)
    @rule(policy=policies)
    def change_policy(self, policy: str) -> None:
        assert self.world is not None
        self.world.settings(conflict_policy=policy)

    # -- syncing, crashing, failing ---------------------------------------------------------
    @precondition(lambda self: self.world is not None)
    @rule(
        crash_at=st.one_of(st.none(), st.integers(1, 6)),
        failing=st.one_of(
            st.none(),
            st.tuples(
                st.sampled_from(["crm", "provider"]),
                st.sampled_from(["create", "update", "delete", "scope"]),
                st.sampled_from(["transient", "permanent"]),
            ),
        ),
    )
    def sync(self, crash_at: int | None, failing: tuple[str, str, str] | None) -> None:
        assert self.world is not None
        self._tick()
        self.snapshot = self._versions()
        before = {k: {r["id"] for s in ("crm", "provider") for r in self._all(s, k)} for k in KINDS}
        if failing:
            self.world.fail(*failing)  # type: ignore[arg-type]
        if crash_at:
            self.world.crash_after(crash_at)
        self.world.sync()
        self.quiesce()
        if self.restricted:
            self.check_forbidden(before)
        else:
            self.check_agreement()
            self.check_edits_survive()
        self.check_no_duplicates()
        self.edits.clear()
        self.deleted.clear()

    def quiesce(self) -> None:
        assert self.world is not None
        for _ in range(8):
            run = self.world.sync()
            outcomes = {o for per_kind in run["counts"].values() for o in per_kind}
            if run["status"] == "ok" and outcomes <= QUIET:
                return
        raise AssertionError(f"SYN-4: the sync never settles: {run}")

    # -- invariants -----------------------------------------------------------------------
    def _all(self, side: str, kind: str) -> list[dict[str, Any]]:
        assert self.world is not None
        handle = self.world.crm if side == "crm" else self.world.provider
        return handle.all(kind)  # type: ignore[arg-type]

    def _versions(self) -> dict[tuple[str, str, str], str]:
        return {
            (s, k, r["id"]): r["version"]
            for s in ("crm", "provider")
            for k in KINDS
            for r in self._all(s, k)
        }

    def _ctx(self) -> Context:
        assert self.world is not None
        return Context(now=self.world.now(), user="u1", settings=self.world.effective_settings())

    def check_agreement(self) -> None:
        assert self.world is not None
        ctx = self._ctx()
        for kind in KINDS:
            crm = {r["id"]: r for r in self._live("crm", kind)}
            prov = {r["id"]: r for r in self._live("provider", kind)}
            linked = [ln for ln in self.world.links(kind) if ln["state"] == "linked"]
            assert {ln["crm_id"] for ln in linked} >= set(crm), f"unlinked CRM {kind}"
            assert {ln["provider_id"] for ln in linked} >= set(prov), f"unlinked {kind}"
            for ln in linked:
                c, p = crm.get(ln["crm_id"]), prov.get(ln["provider_id"])
                assert c is not None and p is not None, f"a linked {kind} is gone: {ln}"
                expected = provider_view(kind, normalize(kind, c), ctx)  # type: ignore[arg-type]
                held = normalize(kind, p)  # type: ignore[arg-type]
                actual = {k: held[k] for k in expected}
                assert actual == expected, f"{kind} {ln['crm_id']}≠{ln['provider_id']}"

    def check_no_duplicates(self) -> None:
        assert self.world is not None
        for kind in KINDS:
            links = self.world.links(kind)
            crm_ids = [ln["crm_id"] for ln in links if ln["crm_id"]]
            prov_ids = [ln["provider_id"] for ln in links if ln["provider_id"]]
            assert len(crm_ids) == len(set(crm_ids)), f"a CRM {kind} is linked twice"
            assert len(prov_ids) == len(set(prov_ids)), f"a provider {kind} is linked twice"
            if not self.restricted:
                assert len(self._live("crm", kind)) == len(self._live("provider", kind))

    def check_edits_survive(self) -> None:
        """An edit survives unless the same field was also edited on the other side and
        the policy picks that side; latest_wins compares when each record was last
        modified, as providers report it per record, not per field."""
        assert self.world is not None
        policy = self.world.effective_settings()["conflict_policy"]
        for kind in KINDS:
            links = self.world.links(kind)
            twin = {("crm", ln["crm_id"]): ("provider", ln["provider_id"]) for ln in links}
            twin.update({("provider", ln["provider_id"]): ("crm", ln["crm_id"]) for ln in links})
            for (side, k, rid), fields in self.edits.items():
                if k != kind or (side, kind, rid) in self.deleted:
                    continue
                other = twin.get((side, rid))
                if other is None:
                    continue  # unlinked: left the sync scope or was deleted on the other side
                current = self._get(side, kind, rid)
                if current is None:
                    continue
                rivals = self.edits.get((other[0], kind, other[1]), {})
                for name, (value, _when) in fields.items():
                    if name in rivals and rivals[name][0] != value:
                        winner = {"crm_wins": "crm", "provider_wins": "provider"}.get(policy)
                        if winner is None:  # latest_wins: the record edited last
                            ours = self.touched[(side, kind, rid)]
                            theirs = self.touched[(other[0], kind, other[1])]
                            winner = side if ours > theirs else other[0]
                        if winner != side:
                            continue
                    got = normalize(kind, current)[name]  # type: ignore[arg-type]
                    want = normalize(kind, {**current, name: value})[name]  # type: ignore[arg-type]
                    if side == "provider" and kind == "activity" and name == "notes":
                        continue  # the provider's notes also carry the related-info block
                    assert got == want, f"SYN-4: lost edit {side} {kind} {rid}.{name}"

    def _get(self, side: str, kind: str, rid: str) -> dict[str, Any] | None:
        assert self.world is not None
        handle = self.world.crm if side == "crm" else self.world.provider
        return handle.get(kind, rid)  # type: ignore[arg-type]

    def check_forbidden(self, before: dict[str, set[str]]) -> None:
        """SET-1 direction, SET-3 matrix and SET-4 exclusions were never overstepped."""
        assert self.world is not None
        after = self._versions()
        for (side, kind, rid), version in self.snapshot.items():
            moved = after.get((side, kind, rid))
            if kind == "contact":
                categories = ["contact"]
            elif kind == "todo":
                categories = ["todo"]
            else:
                categories = ["appointment", "call"]
            flows = self.direction[kind] in (
                "both",
                "provider_to_crm" if side == "crm" else "crm_to_provider",
            )
            if moved is None:
                if kind == "contact" and side == "provider":
                    continue  # CON-6 default: unlinking takes off the label, never deletes
                allowed = flows and any(
                    (c, side, "delete") not in self.forbidden for c in categories
                )
                assert allowed, f"{side} {kind} {rid} was deleted against the settings"
                assert rid not in self.excluded, f"SET-4: excluded {rid} was deleted"
            elif moved != version:
                allowed = flows and any(
                    (c, side, "update") not in self.forbidden for c in categories
                )
                assert allowed, f"{side} {kind} {rid} was updated against the settings"
                assert rid not in self.excluded, f"SET-4: excluded {rid} was changed"
        for kind in KINDS:
            for side in ("crm", "provider"):
                flows = self.direction[kind] in (
                    "both",
                    "provider_to_crm" if side == "crm" else "crm_to_provider",
                )
                new = {r["id"] for r in self._all(side, kind)} - before[kind]
                if new:
                    categories = {"contact": ["contact"], "todo": ["todo"]}.get(
                        kind, ["appointment", "call"]
                    )
                    assert flows and any(
                        (c, side, "create") not in self.forbidden for c in categories
                    ), f"{side} {kind} created against the settings"

    @invariant()
    def queue_is_empty_without_confirmations(self) -> None:
        if self.world is not None and not self.restricted:
            assert self.world.queue() == [] or any(
                item["reason"] == "mass_delete" for item in self.world.queue()
            )


TestSyncMachine = SyncMachine.TestCase
TestSyncMachine.__doc__ = "SYN-2, SYN-4, SET-3, BEY-4: random histories converge"
