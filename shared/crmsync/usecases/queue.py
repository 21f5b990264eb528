"""The user's queue: the changes a cycle could not decide alone, waiting for a person.

What waits, by its `reason` (the engine's own code, stable), and what a person can do
about it (`actions`; each is stored as the side whose state wins, and the next cycle
plans the record again with it):

- `conflict`: both sides changed the same fields and the conflict policy is `manual`
  (SYN-2). `crm`: every conflicting field takes the CRM's value; `provider`: the
  provider's; `fields`: a side per conflicting field (`picks`), each side then written
  only what it lacks (SYN-3).
- `confirm_new`: a new record waits for the user's OK before it is created on the other
  side (SET-5). `confirm`: create it there; `skip`: never sync it.
- `review`: a new provider contact waits in the review list (CON-8, `new_contacts`
  `review`). `convert`: add it to the CRM as a contact; `discard`: leave it out.
- `confirm_modified`: a change waits for the user's OK before it is applied on the
  other side (SET-5). `confirm`: apply it; `undo`: put the other side's version back
  where it changed. Changes of both sides, to different fields, can only be confirmed.
- `confirm_deleted`: a delete waits for the user's OK (SET-5). `confirm`: the other
  side follows it (deletes the record, or takes it out of the sync, as the settings
  say); `restore`: the record is created again, linked, on the side it went from.
- `mass_delete`: one cycle would have taken away too many records at once (SYN-6). As
  `confirm_deleted`, and also for its whole `batch` at once (`settle_batch`).

`crm` and `provider` are accepted for every item too: that side's state wins, whatever
the reason. The next cycle applies the answer and the item leaves the queue; until then
it shows what was chosen. Each answer enqueues a cycle of the connection (trigger
`resolve`) after the usual short debounce, so a few answers in a row share one cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from crmsync import service
from crmsync.engine.pair import OTHER
from crmsync.model import FIELD_NAMES, Address, Kind, Phone
from crmsync.ports import ConnectionRecord, Store, TenantStore
from crmsync.settings import SIDES, SettingsError, Side
from crmsync.settings import resolve as effective

SIDE: dict[str, Side] = {side: side for side in SIDES}  # an answer's text → its side
TRIGGER = "resolve"  # the trigger of the cycle that applies an answer
FIELDS = "fields"  # the action of a conflict settled field by field
BATCH_ACTIONS = ("confirm", "restore")
DELETES = ("confirm_deleted", "mass_delete")  # a record deleted on one side, held


def waiting(services: service.Services, tenant: str, connection: str) -> list[dict[str, Any]]:
    """The connection's queue items for a person to judge, oldest first (as the store
    keeps them), each with what it is about in plain words, both sides' values and what
    can be done about it."""
    store, record = _opened(services, tenant, connection)
    label, follows = _label(services, record), _follows(services.backend.store(tenant), record)
    return [shown(item, label, follows) for item in store.queue(connection)]


def resolve(
    services: service.Services,
    tenant: str,
    connection: str,
    item_id: str,
    choice: str | None = None,
    picks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Settle one item with one of its `actions` (or a side), or a conflict field by
    field (`picks`: conflicting field → "crm" | "provider"; every one of them). The next
    cycle, enqueued now, applies it. Returns the item as `waiting` shows it now."""
    store, record = _opened(services, tenant, connection)
    item = next((i for i in store.queue(connection) if i["id"] == item_id), None)
    if item is None:
        raise service.Refused(404, "nothing with this id waits in the queue any more")
    label, follows = _label(services, record), _follows(services.backend.store(tenant), record)
    side, picked = _answer(item, choice, picks, label, follows)
    store.resolve_queue_item(connection, item_id, side, picked)
    service.enqueue_cycle(services, tenant, connection, TRIGGER, delay=services.debounce)
    return shown({**item, "choice": side, "picks": picked}, label, follows)


def settle_batch(
    services: service.Services, tenant: str, connection: str, batch: str, action: str
) -> int:
    """SYN-6: `confirm` or `restore` every delete one mass-delete batch holds, at once.
    Returns how many items it settled; the next cycle, enqueued now, applies them."""
    store, _ = _opened(services, tenant, connection)
    if action not in BATCH_ACTIONS:
        raise service.Refused(400, f"a batch is settled with confirm or restore, not {action!r}")
    held = [item for item in store.queue(connection) if batch_of(item) == batch]
    if not held:
        raise service.Refused(404, "no held deletes wait in this batch any more")
    for item in held:
        gone = SIDE[item["source"]]
        wins = gone if action == "confirm" else OTHER[gone]
        store.resolve_queue_item(connection, item["id"], wins)
    service.enqueue_cycle(services, tenant, connection, TRIGGER, delay=services.debounce)
    return len(held)


# -- one item as a person sees it ------------------------------------------------------------
def shown(item: Mapping[str, Any], label: str, follows: Follows | None = None) -> dict[str, Any]:
    """An item of the store's queue as `waiting` lists it: `choice` is the action the
    user took (None while it waits for one), `picks` their sides per field. A held
    delete names the side the record was deleted in (`deleted_in`) and shows the values
    the other side still holds, once, none of them differing."""
    offer = offered(item, label, follows)
    gone = _gone(item)
    picks = item.get("picks") or None
    created = item.get("created")
    return {
        "id": item["id"],
        "kind": item["kind"],
        "reason": item["reason"],
        "reason_text": reason_text(item, label),
        "summary": item.get("summary") or "",
        "source": item.get("source"),
        "crm_id": item.get("crm_id"),
        "provider_id": item.get("provider_id"),
        "created": created.isoformat() if isinstance(created, datetime) else None,
        "choice": FIELDS if picks else _action_of(offer, item.get("choice")),
        "picks": dict(picks) if picks else None,
        "batch": batch_of(item),
        "fields": list(item.get("fields") or ()),
        "rows": rows(item),
        "deleted_in": _name(gone, label) if gone else None,
        "actions": list(offer),
        "action_text": {action: text for action, (_, text) in offer.items()},
    }


def reason_text(item: Mapping[str, Any], label: str) -> str:
    """Why the item waits, in words a sales rep reads at a glance."""
    reason, source = item["reason"], SIDE.get(item.get("source") or "")
    if reason == "conflict":
        return "Changed on both sides"
    if reason == "mass_delete":
        if source is None:
            return "Part of a large delete held for your confirmation"
        return (
            f"Deleted in {_name(source, label)} with many others at once: "
            "held until you say what to do"
        )
    if reason == "review":
        return f"New contact in {_name('provider', label)}: add it to the CRM or leave it out"
    if source is None:  # a modification of both sides, to different fields
        return "Changed on both sides, in different fields: waiting for your OK to apply it"
    here, there = _name(source, label), _name(OTHER[source], label)
    if reason == "confirm_new":
        return f"New in {here}: waiting for your OK before creating it in {there}"
    if reason == "confirm_modified":
        return f"Changed in {here}: waiting for your OK before changing it in {there}"
    return f"Deleted in {here}: waiting for your OK before {there} follows"


def offered(
    item: Mapping[str, Any], label: str, follows: Follows | None = None
) -> dict[str, tuple[Side | None, str]]:
    """What can be done about the item: action → (the side it makes win, or None for
    picks per field; what it does, in plain words). A delete's confirmation says what
    the other side does, as the connection's settings say (`follows`)."""
    reason, source = item["reason"], SIDE.get(item.get("source") or "")
    crm, provider = _name("crm", label), _name("provider", label)
    if reason == "conflict":
        return {
            "crm": ("crm", f"Keep the values in {crm}"),
            "provider": ("provider", f"Keep the values in {provider}"),
            FIELDS: (None, "Choose for each field which value to keep"),
        }
    if source is None:
        if reason == "confirm_modified":  # changes of both sides: nothing to undo
            return {"confirm": ("crm", "Apply both changes")}
        return {  # a hold older than the side it came from (SYN-6 before it was kept)
            "crm": ("crm", f"Make both sides as in {crm}"),
            "provider": ("provider", f"Make both sides as in {provider}"),
        }
    other = OTHER[source]
    here, there = _name(source, label), _name(other, label)
    if reason == "review":
        return {
            "convert": (source, "Add it to the CRM as a contact"),
            "discard": (other, "Leave it out of the CRM"),
        }
    if reason == "confirm_new":
        return {"confirm": (source, f"Create it in {there}"), "skip": (other, "Don't sync it")}
    if reason == "confirm_modified":
        return {
            "confirm": (source, f"Change it in {there} too"),
            "undo": (other, f"Put back in {here} the version {there} has"),
        }
    return {  # a delete: confirm_deleted, mass_delete
        "confirm": (source, _following(item["kind"], other, there, follows)),
        "restore": (other, f"Restore it in {here}, synced as before"),
    }


def rows(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per field shown: both sides' values as text, and whether they differ. A
    held delete's record is on one side only: its `value` there, nothing differing."""
    crm, provider = item.get("crm_values") or {}, item.get("provider_values") or {}
    names = {*crm, *provider, *(item.get("fields") or ())}
    gone = _gone(item)
    out = []
    for name in _in_order(item["kind"], names):
        left, right = display(crm.get(name)), display(provider.get(name))
        row = {"field": name, "crm": left, "provider": right, "differs": left != right}
        if gone is not None:
            row.update(differs=False, value=right if gone == "crm" else left)
        out.append(row)
    return out


def batch_of(item: Mapping[str, Any]) -> str | None:
    """SYN-6: the deletes one cycle held of one kind are one batch (its run and kind)."""
    if item["reason"] != "mass_delete" or item.get("source") not in SIDE:
        return None
    return f"{item.get('run')}:{item['kind']}"


def display(value: Any) -> str:
    """A field's value as text: blank for nothing, lists joined, times to the minute."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Phone):
        return f"{value.number} ({value.kind})" if value.kind else value.number
    if isinstance(value, Address):
        return display(dataclasses.astuple(value))
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(text for text in map(display, value) if text)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {text}" for k, v in value.items() if (text := display(v)))
    return str(value)


# -- answers ---------------------------------------------------------------------------------
def _answer(
    item: Mapping[str, Any],
    choice: str | None,
    picks: Mapping[str, str] | None,
    label: str,
    follows: Follows | None = None,
) -> tuple[Side | None, dict[str, Side] | None]:
    """What the answer stores: a side, or picks per field; Refused(400) with the reason."""
    offer = offered(item, label, follows)
    if picks is not None or choice == FIELDS:
        if choice not in (None, FIELDS):
            raise service.Refused(400, "give either a choice or picks per field, not both")
        return None, _picked(item, picks or {})
    side = SIDE.get(choice or "") or (offer[choice][0] if choice in offer else None)
    if side is None:
        allowed = ", ".join(dict.fromkeys([*(a for a in offer if a != FIELDS), *SIDES]))
        raise service.Refused(400, f"choose one of {allowed}, not {choice!r}")
    return side, None


def _picked(item: Mapping[str, Any], picks: Mapping[str, str]) -> dict[str, Side]:
    """SYN-2: a side for each conflicting field, and only for those."""
    if item["reason"] != "conflict":
        raise service.Refused(400, "only a conflict is settled field by field")
    if not isinstance(picks, Mapping):
        raise service.Refused(400, "picks name a side (crm or provider) per field")
    conflicting = [str(name) for name in item.get("fields") or ()]
    unknown = sorted(str(name) for name in picks if name not in conflicting)
    if unknown:
        raise service.Refused(
            400,
            f"not a conflicting field of this record: {', '.join(unknown)} "
            f"(those are {', '.join(conflicting)})",
        )
    bad = sorted(name for name, side in picks.items() if side not in SIDE)
    if bad:
        raise service.Refused(400, f"pick crm or provider for {', '.join(bad)}")
    missing = [name for name in conflicting if name not in picks]
    if missing:
        raise service.Refused(400, f"pick a side for every conflicting field: {', '.join(missing)}")
    return {name: SIDE[picks[name]] for name in conflicting}


# -- shared ----------------------------------------------------------------------------------
def _opened(
    services: service.Services, tenant: str, connection: str
) -> tuple[Store, ConnectionRecord]:
    store = services.backend.store(tenant)
    record = service.connection_of(store, connection)
    if record is None:
        raise service.Refused(404, "no such connection")
    return store, record


def _label(services: service.Services, record: ConnectionRecord) -> str:
    """How the user's provider is named to them (its kit's label)."""
    try:
        return str(services.kit(record.provider).label)
    except KeyError:
        return "your account"


# What a delete does to the other side's record, by kind and the side it reaches (the
# `deletes` setting of activities and to-dos, CAL-12; `contact_delete` of contacts, CON-6).
Follows = Mapping[str, Mapping[str, str]]
FOLLOWING: dict[str, str] = {
    "delete": "Delete it in {there} too",
    "unlink": "Keep it in {there}, no longer synced",
    "ignore": "Keep it in {there}, as your settings ignore deletes",
}
FOLLOWING_UNKNOWN = "Let {there} follow, as your settings say: delete it or stop syncing it"


def _follows(store: TenantStore, record: ConnectionRecord) -> Follows | None:
    """The connection's effective delete settings: per kind, per side a delete reaches."""
    defaults = (store.tenant_record() or {}).get("settings") or {}
    try:
        settings = effective(record.provider, defaults, record.settings)
    except SettingsError:
        return None
    contact = str(settings["contact_delete"])
    return {
        "contact": {side: contact for side in SIDES},
        **{kind: dict(settings["deletes"][kind]) for kind in ("activity", "todo")},
    }


def _following(kind: str, other: Side, there: str, follows: Follows | None) -> str:
    """What confirming a held delete does to the record in `there`, in words."""
    policy = (follows or {}).get(kind, {}).get(other, "")
    return FOLLOWING.get(policy, FOLLOWING_UNKNOWN).format(there=there)


def _gone(item: Mapping[str, Any]) -> Side | None:
    """The side a held delete's record went from (None for any other item)."""
    return SIDE.get(item.get("source") or "") if item["reason"] in DELETES else None


def _name(side: Side, label: str) -> str:
    return "the CRM" if side == "crm" else label


def _action_of(offer: Mapping[str, tuple[Side | None, str]], side: Any) -> str | None:
    """The action a stored side stands for, as the item offers it (else the side)."""
    if side not in SIDE:
        return None
    return next((action for action, (wins, _) in offer.items() if wins == side), str(side))


def _in_order(kind: Kind, names: Iterable[str]) -> list[str]:
    order = {name: at for at, name in enumerate(FIELD_NAMES[kind])}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))
