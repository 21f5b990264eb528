"""Sync History (HIS-2, HIS-4): a tenant's runs a page at a time, filtered, sorted and
grouped by when they ran; one run with its record-level items as a person reads them;
and what a person does about a record that failed: sync it again now, keep it out of
sync (SET-4), or open it in the CRM.

Errors are told in plain words from what the cycle recorded (the error's type and the
side it came from), never as the exception's text alone; the other side's own reason
goes with a refusal as its `detail`. How long history is kept (HIS-3) is the tenant's
`history_days` setting, bounded by the deployment's; the cycle and the stores apply it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmsync.configure import change_settings, recheck
from crmsync.model import KINDS, Kind
from crmsync.ports import (
    INTERRUPTED,
    RUN_SORTS,
    ConnectionRecord,
    RunQuery,
    RunStatus,
    run_result,
)
from crmsync.service import Refused, Services, connection_of, enqueue_cycle, safe_id
from crmsync.settings import PROVIDERS, SettingsError, resolve

MAX_PAGE = 200  # runs one page may hold
MAX_TOKEN = 2000  # characters of a page token
ID_LENGTH = 300  # characters of a record id or run id
DETAIL_LENGTH = 300  # characters of the other side's own reason shown with an error
VALUE_LENGTH = 120  # characters of a value shown before or after a change

FRAMES: dict[str, str] = {"today": "Today", "7d": "Last 7 days", "30d": "Last 30 days"}
OLDER = "Older"
KIND_NAMES: dict[str, str] = {
    "contact": "Contact",
    "activity": "Activity",
    "todo": "To-do",
    "mail": "E-mail",  # a tagged message (EML-2), recorded by a mail pass
}
OUTCOMES: dict[str, str] = {
    "create": "Created",
    "update": "Updated",
    "delete": "Deleted",
    "link": "Linked",
    "unlink": "Unlinked",
    "restore": "Restored",
    "hold": "Waiting for you",
    "conflict": "Conflict",
    "skip": "Skipped",
    "fail": "Failed",
    "record": "Recorded in the CRM",
    "missing": "No CRM contact",
}
COUNTED: dict[str, str] = {  # the counts a run shows per kind, by outcome
    "created": "create",
    "updated": "update",
    "deleted": "delete",
    "restored": "restore",
    "linked": "link",
    "unlinked": "unlink",
    "held": "hold",
    "conflicts": "conflict",
    "skipped": "skip",
    "failed": "fail",
}
MAIL_COUNTED: dict[str, str] = {  # a mail pass's counts (EML-2, EML-3)
    "recorded": "record",
    "no contact": "missing",
    "skipped": "skip",
}

# What a recorded error means, by its type; `{side}` is where it happened.
ERRORS: dict[str, str] = {
    "TransientError": "{Side} did not answer in time; the next sync tries again.",
    "RateLimited": "{Side} asked crmsync to slow down; the next sync tries again.",
    "Conflict": "The record changed in {side} while crmsync saved it; the next sync tries again.",
    "NotFound": "The record is no longer in {side}.",
    "PermissionDenied": "You may not change this record in {side}.",
    "AlreadyExists": "{Side} already holds this record.",
    "PermanentError": "{Side} refused this record.",
    "CursorExpired": "{Side} asked crmsync to read everything again; the next sync does.",
    "GrantRevoked": "Your account stopped letting crmsync in; connect it again.",
    "AccountChanged": "Another account than the connected one signed in; connect the "
    "connected account again.",
    "CrmUnauthorized": "The CRM refused crmsync's access; ask your admin to renew it.",
    "LeaseLost": "Another sync of this account took over.",
}
UNKNOWN = "Something went wrong with this record; the next sync tries again."
UNKNOWN_RUN = "Something went wrong in this sync; the next one tries again."
UNREADABLE = "crmsync could not read this record."
STOPPED = "The sync stopped before it ended; the next one took over."
WITH_DETAIL = {"PermanentError", "PermissionDenied"}  # the other side's reason helps here


# -- the list (HIS-2) ---------------------------------------------------------------------------
def runs(
    services: Services,
    tenant: str,
    *,
    connections: Sequence[str] | None = None,
    status: str | None = None,
    trigger: str | None = None,
    kind: str | None = None,
    provider: str | None = None,
    frame: str | None = None,
    sort: str = "started",
    descending: bool = True,
    page: str | None = None,
    limit: int = 50,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """A page of the tenant's runs, newest first unless sorted otherwise: those of
    `connections` (a user's; None: every connection of the tenant), of one status,
    trigger, kind of record, provider and time frame when given. Each run says its
    time-frame group ("Today", "Last 7 days", "Last 30 days", "Older") in `timezone`.
    `next` is the token of the following page (None: this is the last)."""
    now = services.clock()
    zone = _zone(timezone)
    query = RunQuery(
        connections=_connections(connections),
        status=_one_of("status", status, tuple(RunStatus)),
        trigger=_trigger(trigger),
        kind=_one_of("kind", kind, (*KINDS, "mail")),  # a mail pass's kind is "mail"
        provider=_one_of("provider", provider, PROVIDERS),
        since=_since(frame, now, zone),
        sort=_one_of("sort", sort, RUN_SORTS) or "started",
        descending=_flag("descending", descending),
        limit=_limit(limit),
        after=_token(page),
    )
    try:
        found = services.backend.store(tenant).run_page(query)
    except ValueError as exc:  # a token of another list, or none at all
        raise Refused(400, str(exc)) from exc
    edges = _Edges.at(now, zone)
    return {"runs": [_run_view(run, edges) for run in found.runs], "next": found.next}


@dataclass(frozen=True)
class _Edges:
    """Where each time-frame group starts."""

    today: datetime
    week: datetime
    month: datetime

    @classmethod
    def at(cls, now: datetime, zone: ZoneInfo) -> _Edges:
        local = now.astimezone(zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(midnight, now - timedelta(days=7), now - timedelta(days=30))

    def group(self, started: Any) -> str:
        if not isinstance(started, datetime):
            return OLDER
        for edge, name in ((self.today, "today"), (self.week, "7d"), (self.month, "30d")):
            if started >= edge:
                return FRAMES[name]
        return OLDER


def _since(frame: str | None, now: datetime, zone: ZoneInfo) -> datetime | None:
    if frame is None:
        return None
    edges = _Edges.at(now, zone)
    starts = {"today": edges.today, "7d": edges.week, "30d": edges.month}
    if frame not in starts:
        raise Refused(400, f"frame is one of {', '.join(FRAMES)}")
    return starts[frame]


def _run_view(run: Mapping[str, Any], edges: _Edges) -> dict[str, Any]:
    started, ended = run.get("started"), run.get("ended")
    took = None
    if isinstance(started, datetime) and isinstance(ended, datetime):
        took = round((ended - started).total_seconds(), 3)
    return {
        "id": run["id"],
        "connection": run.get("connection", ""),
        "user": run.get("user", ""),
        "provider": run.get("provider", ""),
        "trigger": run.get("trigger", ""),
        "status": run_result(run),  # "idle" for a run that changed nothing (HIS-2)
        "started": _iso(started),
        "ended": _iso(ended),
        "duration": took,
        "counts": _counts(run.get("counts") or {}),
        "errors": len(run.get("errors") or []),
        "cycles": int(run.get("cycles") or 1),  # quiet runs kept as one (HIS-1)
        "group": edges.group(started),
    }


def _counts(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {
        kind: {
            shown: int(per.get(outcome, 0))
            for shown, outcome in (MAIL_COUNTED if kind == "mail" else COUNTED).items()
        }
        for kind, per in sorted(counts.items())
        if per
    }


# -- one run (HIS-2, HIS-4) ---------------------------------------------------------------------
def run_detail(
    services: Services, tenant: str, connection: str, run_id: str, *, timezone: str = "UTC"
) -> dict[str, Any]:
    """One run of the connection with its record-level items, each with what happened
    in words and, for a record that failed, what the user can do about it; its errors
    in words as `messages`. 404 for a run the connection does not have."""
    zone = _zone(timezone)
    store = services.backend.store(tenant)
    run = store.run(connection, run_id) if _fits(run_id) else None
    if run is None:
        raise Refused(404, "no such run")
    provider = str(run.get("provider") or _provider_of(store, connection))
    side = _label(services, provider)
    record_url = ((store.tenant_record() or {}).get("crm") or {}).get("record_url")
    edges = _Edges.at(services.clock(), zone)
    return {
        **_run_view(run, edges),
        "messages": [_run_error(str(e), side) for e in run.get("errors") or []],
        "items": [_item_view(item, side, record_url) for item in store.items(connection, run_id)],
    }


def _provider_of(store: Any, connection: str) -> str:
    """A run recorded before runs named their provider: its connection's."""
    record = connection_of(store, connection)
    return record.provider if record is not None else ""


def _label(services: Services, provider: str) -> str:
    """The provider's name as people know it (its kit's label)."""
    try:
        return str(services.kit(provider).label)
    except KeyError:
        return provider or "the provider"


def _item_view(item: Mapping[str, Any], side: str, record_url: Any) -> dict[str, Any]:
    kind, outcome = str(item.get("kind", "")), str(item.get("outcome", ""))
    crm_id, provider_id = item.get("crm_id"), item.get("provider_id")
    failed = outcome == "fail"
    error, detail = _item_error(item, side) if failed else (None, None)
    return {
        "kind": kind,
        "kind_name": KIND_NAMES.get(kind, kind),
        "label": item.get("label") or f"{KIND_NAMES.get(kind, kind)} {crm_id or provider_id}",
        "crm_id": crm_id,
        "provider_id": provider_id,
        "direction": _direction(str(item.get("direction", "none")), side),
        "action": OUTCOMES.get(outcome, outcome),
        "outcome": outcome,
        "at": _iso(item.get("at")),
        "note": "" if failed else str(item.get("reason") or ""),
        "changes": [
            {"field": name, "before": _shown(values[0]), "after": _shown(values[1])}
            for name, values in (item.get("changes") or {}).items()
        ],
        "error": error,
        "detail": detail,
        # a recorded message opens the contact or lead it was filed to (EML-2)
        "actions": _actions(
            str(item.get("crm_kind") or kind), crm_id, provider_id, failed, record_url
        ),
    }


def _direction(direction: str, side: str) -> str:
    return {
        "to_provider": f"CRM → {side}",
        "to_crm": f"{side} → CRM",
        "both": f"CRM ↔ {side}",
    }.get(direction, "")


def _actions(
    kind: str, crm_id: Any, provider_id: Any, failed: bool, record_url: Any
) -> list[dict[str, str]]:
    """What a person can do about the item's record: retry and exclude a record that
    failed (only a CRM record can be excluded, SET-4), open any CRM record where the
    tenant says where its records open."""
    out: list[dict[str, str]] = []
    if failed and (crm_id or provider_id):
        out.append({"name": "retry"})
    if failed and crm_id:
        out.append({"name": "exclude"})
    if crm_id and isinstance(record_url, str) and record_url:
        url = record_url.replace("{kind}", quote(kind, safe="")).replace(
            "{id}", quote(str(crm_id), safe="")
        )
        out.append({"name": "open", "url": url})
    return out


def _item_error(item: Mapping[str, Any], side: str) -> tuple[str, str | None]:
    """A failed item's error in words, and the other side's own reason where it helps.
    An item without an error is a record that could not be read (SYN-5)."""
    error = item.get("error")
    if not error:
        return UNREADABLE, _short(str(item.get("reason") or "")) or None
    where = {"to_provider": side, "to_crm": "the CRM"}.get(str(item.get("direction")))
    name, _, detail = str(error).partition(": ")
    return _words(name, where or "the other side"), _short(detail) if name in WITH_DETAIL else None


def _run_error(error: str, side: str) -> str:
    """A run's error in words: a kind that could not be read ("contact: RateLimited:
    ..."), a stop of the whole run, or a defect."""
    if error == INTERRUPTED:
        return STOPPED
    first, _, rest = error.partition(": ")
    if first == "crm":  # a mail pass says when the CRM was the side that failed
        return _words(rest.partition(": ")[0], "the CRM", UNKNOWN_RUN)
    if first in KIND_NAMES:  # either side's feed: which one, the error does not say
        name = rest.partition(": ")[0]
        told = _words(name, "one side", UNKNOWN_RUN)
        return f"{KIND_NAMES[first]} records were not synced this time. {told}"
    return _words(first, side, UNKNOWN_RUN)


def _words(name: str, where: str, unknown: str = UNKNOWN) -> str:
    template = ERRORS.get(name, unknown)
    return template.replace("{side}", where).replace("{Side}", where[:1].upper() + where[1:])


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return _short(", ".join(_shown(v) for v in value))
    if isinstance(value, dict):
        return _short(", ".join(f"{k}: {_shown(v)}" for k, v in value.items() if v))
    return _short(str(value), VALUE_LENGTH)


def _short(text: str, length: int = DETAIL_LENGTH) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


# -- what a person does about a record (HIS-4) ---------------------------------------------------
def retry(
    services: Services,
    tenant: str,
    connection: str,
    kind: str,
    crm_id: str | None = None,
    provider_id: str | None = None,
) -> None:
    """Sync the record again now: the next cycle reads it on both sides (the CRM
    record and/or the provider record, and whatever each is linked to), and that cycle
    is enqueued to run at once."""
    chosen = _kind(kind)
    ids = [i for i in (crm_id, provider_id) if i is not None]
    if not ids or not all(_fits(i) for i in ids):
        raise Refused(400, "name the record by its CRM id or its provider id")
    store = services.backend.store(tenant)
    _active(store, connection)
    recheck(store, connection, chosen, crm_id, provider_id)
    enqueue_cycle(services, tenant, connection, "manual", delay=timedelta(0))


def exclude(
    services: Services,
    tenant: str,
    connection: str,
    kind: str,
    crm_id: str,
    until: datetime | None = None,
) -> None:
    """Put the CRM record on the connection's exception list (SET-4): no cycle touches
    it again, for good or until `until` (a time with its offset, still ahead)."""
    chosen = _kind(kind)
    if not _fits(crm_id):
        raise Refused(400, "name the record by its CRM id")
    if until is not None and not (
        isinstance(until, datetime) and until.tzinfo and until > services.clock()
    ):
        raise Refused(400, "until is a time still ahead, with its offset")
    store = services.backend.store(tenant)
    record = _existing(store, connection)
    defaults = (store.tenant_record() or {}).get("settings") or {}
    try:
        table = dict(resolve(record.provider, defaults, record.settings)["exclusions"])
        table[chosen] = {**table.get(chosen, {}), crm_id: until}
        layer = change_settings(
            store, connection, record.provider, defaults, record.settings, {"exclusions": table}
        )
    except SettingsError as exc:
        raise Refused(400, str(exc)) from exc
    store.save_connection_record(connection, {"settings": layer})


def _existing(store: Any, connection: str) -> ConnectionRecord:
    record = connection_of(store, connection)
    if record is None:
        raise Refused(404, "no such connection")
    return record


def _active(store: Any, connection: str) -> None:
    record = _existing(store, connection)
    if not record.active:
        raise Refused(409, f"the connection is {record.status}")


# -- checking what a request asks for -----------------------------------------------------------
def _one_of(name: str, value: Any, choices: Sequence[str]) -> Any:
    if value is None or (isinstance(value, str) and value in choices):
        return value
    raise Refused(400, f"{name} is one of {', '.join(choices)}")


def _kind(kind: Any) -> Kind:
    chosen: Kind | None = _one_of("kind", kind, KINDS)
    if chosen is None:
        raise Refused(400, f"kind is one of {', '.join(KINDS)}")
    return chosen


def _trigger(trigger: Any) -> str | None:
    if trigger is None or (isinstance(trigger, str) and safe_id(trigger)):
        return trigger
    raise Refused(400, "a trigger is a name of letters, digits, '-' or '_'")


def _connections(connections: Any) -> tuple[str, ...] | None:
    if connections is None:
        return None
    if isinstance(connections, str) or not isinstance(connections, Sequence):
        raise Refused(400, "connections is a list of connection ids")
    if not all(isinstance(c, str) and c for c in connections):
        raise Refused(400, "connections is a list of connection ids")
    return tuple(dict.fromkeys(connections))


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Refused(400, f"{name} is true or false")


def _limit(limit: Any) -> int:
    if isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= MAX_PAGE:
        return limit
    raise Refused(400, f"a page holds 1 to {MAX_PAGE} runs")


def _token(page: Any) -> str | None:
    if page is None or (isinstance(page, str) and 0 < len(page) <= MAX_TOKEN):
        return page
    raise Refused(400, "not a page of this list")


def _zone(name: Any) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Refused(400, f"{name!r} is not a time zone name (e.g. Europe/Berlin)") from exc


def _fits(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= ID_LENGTH


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
