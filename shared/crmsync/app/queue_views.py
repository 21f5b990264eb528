"""The user's queue page and its JSON twin: what their sync could not decide alone and
waits for them, across their connections (SYN-2 conflicts settled as a whole or field
by field, SET-5 confirmations, SYN-6 held mass deletes settled one by one or as a
batch, CON-8 contacts to review).

- `/me/queue`: the waiting items, grouped, each with its reason in words, both sides'
  values side by side (the differing fields marked) and what can be done about it.
- POST `/me/queue/<connection>`: settle one item (`item`, and `choice`, or picks per
  conflicting field: `pick.<field>` on a page, `picks` in JSON).
- POST `/me/queue/<connection>/batch`: settle a held mass delete (`batch`, `action`).

Item and batch ids are sent as form values, not in the path: they hold the records'
own ids, which may have any character. A user reaches only their own connections (the
same 404 for any other); a refused answer shows the queue again with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.app.views import _own as own_connections
from crmsync.app.views import _own_connection as own_connection
from crmsync.cycle.history import label as record_label
from crmsync.model import CUSTOM
from crmsync.ports import ConnectionRecord
from crmsync.usecases import queue
from crmsync.usecases.history import KIND_NAMES

PAGE = "/me/queue"
SOON = "which starts in a few seconds"
APPLIED = f"Your choice is applied in the next sync, {SOON}."
PICK = "pick."  # a page's form: pick.<field> = crm | provider
NAMING = ("first_name", "last_name", "emails", "subject")  # what names a record
NOUNS: dict[str, tuple[str, str]] = {  # a kind's record, one and several
    "contact": ("contact", "contacts"),
    "activity": ("activity", "activities"),
    "todo": ("to-do", "to-dos"),
}
CONFIRMATIONS = ("confirm_new", "confirm_modified", "confirm_deleted", "mass_delete")


@route(PAGE)
def my_queue(context: Context) -> View:
    """Every item waiting for the user, per connection and group."""
    return _page(context)


@route("/me/queue/<connection>", methods=("POST",))
def settle_item(context: Context) -> View:
    record = own_connection(context)
    try:
        item = _given(context.form, "item")
        if item is None:
            raise service.Refused(400, "item: say which item you answer")
        choice = _given(context.form, "choice")
        picks = _picks(context.form)
        answered = queue.resolve(
            context.services, context.who.tenant, record.id, item, choice, picks
        )
    except service.Refused as refused:
        return _refused(context, refused)
    return View({"item": answered}, redirect=PAGE, notice=APPLIED)


@route("/me/queue/<connection>/batch", methods=("POST",))
def settle_batch(context: Context) -> View:
    record = own_connection(context)
    try:
        batch, action = _given(context.form, "batch"), _given(context.form, "action")
        if batch is None:
            raise service.Refused(400, "batch: say which held deletes you answer")
        settled = queue.settle_batch(
            context.services, context.who.tenant, record.id, batch, action or ""
        )
    except service.Refused as refused:
        return _refused(context, refused)
    notice = f"Your choice for {settled} held deletes is applied in the next sync, {SOON}."
    return View({"settled": settled}, redirect=PAGE, notice=notice)


# -- the page ------------------------------------------------------------------------------
def _page(context: Context, problem: str = "", status: int = 200) -> View:
    connections = [
        _connection(context, record, at)
        for at, record in enumerate(r for r in own_connections(context) if r.live)
    ]
    data = {
        "connections": connections,
        "count": sum(c["count"] for c in connections),
        "problem": problem,
    }
    return View(data, "app/queue_list.html", status=status)


def _refused(context: Context, refused: service.Refused) -> View:
    """A bad answer: the API gets the refusal; a page shows the queue again with the
    reason (what no longer exists, or is not the user's, stays a 404)."""
    if context.api or refused.status != 400:
        raise refused
    return _page(context, refused.reason, 400)


def _connection(context: Context, record: ConnectionRecord, at: int) -> dict[str, Any]:
    label = str(context.services.kit(record.provider).label)
    items = queue.waiting(context.services, context.who.tenant, record.id)
    names = _names(context, record, items)
    for n, item in enumerate(items):
        _dress(item, f"q{at}-{n}", label)
        item["name"] = names.get(item["id"], "")
    batches: dict[str, dict[str, Any]] = {}
    for item in items:
        if item["batch"] is not None and item["batch"] not in batches:
            batches[item["batch"]] = _batch(item, f"q{at}-b{len(batches)}", label)
        if item["batch"] is not None:
            batches[item["batch"]]["items"].append(item)
    for held in batches.values():
        held["count"] = len(held["items"])
        held["title"] = _batch_title(held)
        held["settled"] = all(i["choice"] is not None for i in held["items"])
    return {
        "id": record.id,
        "provider_label": label,
        "account": record.account,
        "count": len(items),
        "conflicts": [i for i in items if i["reason"] == "conflict"],
        "confirmations": [i for i in items if i["reason"] in CONFIRMATIONS and i["batch"] is None],
        "batches": list(batches.values()),
        "reviews": [i for i in items if i["reason"] == "review"],
    }


def _dress(item: dict[str, Any], anchor: str, label: str) -> None:
    """What the page adds to an item: ids for its elements, field names in words, what
    was chosen in words."""
    item["anchor"] = anchor
    item["kind_name"] = KIND_NAMES.get(item["kind"], item["kind"])
    values = {}
    for row in item["rows"]:
        row["label"] = _field_name(row["field"])
        values[row["field"]] = row
    item["conflicting"] = [
        {
            "field": name,
            "label": _field_name(name),
            "slug": f"{anchor}-{n}",
            "crm": values[name]["crm"] if name in values else "",
            "provider": values[name]["provider"] if name in values else "",
        }
        for n, name in enumerate(item["fields"])
    ]
    item["settled_text"] = _settled(item, label)
    if item["deleted_in"]:
        item["kept_in"] = label if item["source"] == "crm" else "the CRM"


def _names(
    context: Context, record: ConnectionRecord, items: list[dict[str, Any]]
) -> dict[str, str]:
    """What each item's record is called (a contact's name, a subject), as its history
    names it: from the values the item shows, else from the record's link (a conflict
    shows only its conflicting fields)."""
    store = context.services.backend.store(context.who.tenant)
    names: dict[str, str] = {}
    unnamed = []
    for item in items:
        values: dict[str, Any] = {
            r["field"]: r["crm"] or r["provider"] for r in item["rows"] if r["field"] in NAMING
        }
        values["emails"] = [e for e in str(values.get("emails") or "").split(", ")[:1] if e]
        names[item["id"]] = record_label(item["kind"], values)
        if not names[item["id"]]:
            unnamed.append(item)
    for kind in {item["kind"] for item in unnamed}:
        of_kind = [item for item in unnamed if item["kind"] == kind]
        crm_ids = [str(i["crm_id"]) for i in of_kind if i["crm_id"]]
        provider_ids = [str(i["provider_id"]) for i in of_kind if i["provider_id"]]
        for link in store.links_for(record.id, kind, crm_ids, provider_ids):
            for item in of_kind:
                if link.crm_id == item["crm_id"] or link.provider_id == item["provider_id"]:
                    names[item["id"]] = record_label(kind, link.base)
    return names


def _batch(item: Mapping[str, Any], anchor: str, label: str) -> dict[str, Any]:
    gone = "the CRM" if item["source"] == "crm" else label
    kind = KIND_NAMES.get(item["kind"], item["kind"])
    return {
        "batch": item["batch"],
        "anchor": anchor,
        "kind": item["kind"],
        "kind_name": kind,
        "source": item["source"],
        "gone": gone,
        "items": [],
    }


def _batch_title(held: Mapping[str, Any]) -> str:
    """SYN-6: a held batch's heading, by how many of its deletes still wait:
    "12 to-dos deleted in <label> at once", or "1 to-do deleted in the CRM, still held"."""
    n = held["count"]
    noun = NOUNS.get(held["kind"], (held["kind"], held["kind"]))[n != 1]
    if n == 1:
        return f"1 {noun} deleted in {held['gone']}, held with a large delete"
    return f"{n} {noun} deleted in {held['gone']} at once"


def _settled(item: Mapping[str, Any], label: str) -> str:
    """The answer given, in words ("" while the item waits for one)."""
    choice = item["choice"]
    if choice is None:
        return ""
    if item["picks"]:
        sides = {"crm": "the CRM", "provider": label}
        return ", ".join(
            f"{_field_name(name)} from {sides.get(side, side)}"
            for name, side in item["picks"].items()
        )
    text = item["action_text"].get(choice)
    if text is None:
        text = f"Keep the version in {'the CRM' if choice == 'crm' else label}"
    return str(text)


def _field_name(name: str) -> str:
    """A field as a person reads it: first_name → "First name"."""
    return name.removeprefix(CUSTOM).replace("_", " ").capitalize()


# -- what a form sends -----------------------------------------------------------------------
def _given(form: Mapping[str, Any], name: str) -> str | None:
    """A form's text value (the last one, if sent twice); None if absent or not text."""
    value = form.get(name)
    if isinstance(value, list):
        value = value[-1] if value else None
    if value is None:
        return None
    if not isinstance(value, str):
        raise service.Refused(400, f"{name}: expected text")
    return value or None


def _picks(form: Mapping[str, Any]) -> dict[str, str] | None:
    """The sides picked per field: `picks` (JSON), or `pick.<field>` values (a page);
    None when the answer has none."""
    raw = form.get("picks")
    if raw is None:
        found = {k.removeprefix(PICK): form[k] for k in form if k.startswith(PICK)}
        if not found:
            return None
        raw = found
    if not isinstance(raw, Mapping):
        raise service.Refused(400, "picks name a side (crm or provider) per field")
    picks: dict[str, str] = {}
    for name, side in raw.items():
        if isinstance(side, list):
            side = side[-1] if side else None
        if not isinstance(side, str):
            raise service.Refused(400, f"pick crm or provider for {name}")
        picks[str(name)] = side
    return picks
