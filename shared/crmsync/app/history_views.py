"""Sync History's pages and their JSON twins (HIS-2, HIS-4): a user's own runs and an
admin's whole tenant's, filtered, sorted, grouped by when they ran and paged; one run
with its record-level items; and, for a record that failed, trying it again or no
longer syncing it. A user reaches only their own connections' runs, an admin only their
tenant's; anything else is the same 404, so nobody learns which runs exist."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.ports import ConnectionRecord, RunStatus
from crmsync.service import Refused
from crmsync.settings import SettingsError, resolve
from crmsync.usecases import history

LIMIT = 50  # runs a page shows unless asked for another number
ASKED_LENGTH = 2000  # characters kept of a query value (a page token is the longest)
COLUMNS: dict[str, str] = {  # the sortable columns, in the order shown
    "started": "Started",
    "trigger": "Why it ran",
    "status": "Result",
    "duration": "Took",
}
ASCENDING_FIRST = frozenset({"status", "trigger"})  # text sorts first A to Z
STATUS_NAMES: dict[str, str] = {
    RunStatus.RUNNING: "Running",
    RunStatus.OK: "Done",
    RunStatus.PARTIAL: "Some records failed",
    RunStatus.CONTINUED: "Continued in the next sync",
    RunStatus.BUSY: "Waited for another sync",
    RunStatus.FAILED: "Failed",
    RunStatus.NEEDS_REAUTH: "Needs you to sign in again",
    RunStatus.CRM_UNAUTHORIZED: "The CRM refused access",
    RunStatus.LEASE_LOST: "Taken over by another sync",
    RunStatus.INTERRUPTED: "Stopped before it ended",
    RunStatus.SKIPPED: "Skipped",
    RunStatus.IDLE: "Nothing to do",
}
TRIGGER_NAMES: dict[str, str] = {
    "schedule": "On schedule",
    "poll": "Looking for changes",
    "check": "Checking after a sync",
    "manual": "Sync now",
    "connect": "Account connected",
    "push": "A change in the account",
    "crm": "A change in the CRM",
    "again": "Changes made while syncing",
    "continue": "Going on where the last stopped",
    "retry": "Trying again",
    "busy": "After another sync ended",
    "renew": "Renewing change notices",
    "mail": "E-mail",
    "resolve": "Applying your choices",
    "import": "Importing an address book",
}
# A run's counts in words, in the order a summary names them (HIS-2): each as one
# record and as several.
SHOWN_COUNTS: dict[str, tuple[str, str]] = {
    "created": ("created", "created"),
    "updated": ("updated", "updated"),
    "deleted": ("deleted", "deleted"),
    "restored": ("restored", "restored"),
    "linked": ("linked to its twin", "linked to their twins"),
    "unlinked": ("no longer synced", "no longer synced"),
    "conflicts": ("conflict held for your decision", "conflicts held for your decision"),
    "held": ("waiting for your decision", "waiting for your decision"),
    "failed": ("failed", "failed"),
    "recorded": ("message recorded", "messages recorded"),
    "no contact": ("message with no CRM contact", "messages with no CRM contact"),
}
SKIPPED = ("skipped", "skipped")  # left as they were by a rule: said after the rest
NO_CHANGES = "No changes"
RETRIED = "It will be tried again in the next sync, which has started."
EXCLUDED = "{label} is no longer synced{until}. You can include it again in Settings."


@dataclass(frozen=True)
class Scope:
    """Whose history a page shows: a user's own connections, or an admin's tenant."""

    base: str  # the app path of its list
    admin: bool
    records: tuple[ConnectionRecord, ...]

    def connection(self, wanted: str) -> ConnectionRecord:
        """The connection the path names, if the scope holds it; 404 otherwise."""
        for record in self.records:
            if record.id == wanted:
                return record
        raise _no_such_run(self)

    def page(self, connection: str, run: str, action: str = "") -> str:
        return "/".join(p for p in (self.base, connection, run, action) if p)


@dataclass(frozen=True)
class Asked:
    """What a list was asked for, as given in its query: filters, order, page."""

    status: str = ""
    kind: str = ""
    provider: str = ""
    trigger: str = ""
    frame: str = ""
    user: str = ""  # an admin's filter only
    sort: str = "started"
    order: str = ""  # "asc" or "desc"; empty: the column's first order
    page: str = ""
    limit: str = ""

    @classmethod
    def of(cls, args: Mapping[str, Any], admin: bool) -> Asked:
        given = {
            f.name: str(args.get(f.name) or "")[:ASKED_LENGTH]
            for f in fields(cls)
            if args.get(f.name) and (admin or f.name != "user")
        }
        return cls(**given)

    @property
    def descending(self) -> bool:
        """Newest (or longest, or Z) first: as asked, else the column's first order."""
        if self.order:
            return self.order != "asc"
        return self.sort not in ASCENDING_FIRST

    @property
    def size(self) -> int:
        if not self.limit:
            return LIMIT
        if not (self.limit.isascii() and self.limit.isdigit()):
            raise Refused(400, f"limit is a number of runs from 1 to {history.MAX_PAGE}")
        return int(self.limit)

    def query(self, **changed: str) -> dict[str, str]:
        """The query of this list with `changed`, without empty values."""
        values = {**asdict(replace(self, **changed))}
        return {name: value for name, value in values.items() if value}


# -- the lists (HIS-2) ------------------------------------------------------------------------
@route("/me/history")
def my_history(context: Context) -> View:
    """The signed-in user's own runs."""
    return _list(context, _mine(context))


@route("/admin/history", who="admin")
def tenant_history(context: Context) -> View:
    """Every run of the admin's tenant, with a filter by user."""
    return _list(context, _tenant(context))


def _list(context: Context, scope: Scope) -> View:
    asked = Asked.of(context.request.args, scope.admin)
    zone = _zone(context, scope)
    try:
        found = _runs(context, scope, asked, zone)
    except Refused as refused:
        if context.api or refused.status != 400:
            raise
        data = _list_page(context, scope, asked, zone, {"runs": [], "next": None})
        return View({**data, "problem": refused.reason}, "app/history_list.html", status=400)
    return View(_list_page(context, scope, asked, zone, found), "app/history_list.html")


def _runs(context: Context, scope: Scope, asked: Asked, zone: ZoneInfo) -> dict[str, Any]:
    if asked.order not in ("", "asc", "desc"):
        raise Refused(400, "order is asc or desc")
    connections = _connections(context, scope, asked.user)
    if connections is not None and not connections:  # nothing connected: no history
        return {"runs": [], "next": None}
    return history.runs(
        context.services,
        context.who.tenant,
        connections=connections,
        status=asked.status or None,
        trigger=asked.trigger or None,
        kind=asked.kind or None,
        provider=asked.provider or None,
        frame=asked.frame or None,
        sort=asked.sort,
        descending=asked.descending,
        page=asked.page or None,
        limit=asked.size,
        timezone=zone.key,
    )


def _connections(context: Context, scope: Scope, user: str) -> list[str] | None:
    """Whose runs the list holds: the user's own connections, a user the admin chose
    (also one whose connection is gone), or the whole tenant (None)."""
    if not scope.admin:
        return [record.id for record in scope.records]
    if not user:
        return None
    if not service.safe_id(user):
        raise Refused(400, "user is a user id of letters, digits, '-' or '_'")
    return [service.connection_id(user, p) for p in context.services.provider_names()]


def _list_page(
    context: Context, scope: Scope, asked: Asked, zone: ZoneInfo, found: Mapping[str, Any]
) -> dict[str, Any]:
    token = found["next"]
    return {
        "admin": scope.admin,
        "base": scope.base,
        "timezone": zone.key,
        "runs": [_row(context, scope, run, zone) for run in found["runs"]],
        "next": token,
        "asked": asdict(asked),
        "problem": "",
        "choices": _choices(context, scope),
        "columns": _columns(context, scope, asked),
        "newest_first": asked.sort == "started" and asked.descending,
        "older": context.url(scope.base, **asked.query(page=token)) if token else None,
        "newest": context.url(scope.base, **asked.query(page="")) if asked.page else None,
    }


def _row(context: Context, scope: Scope, run: Mapping[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    return {
        **run,
        "status_text": STATUS_NAMES.get(run["status"], run["status"]),
        "trigger_text": TRIGGER_NAMES.get(run["trigger"], run["trigger"]),
        "provider_label": _label(context, run["provider"]),
        "started_text": _when(run["started"], zone),
        "duration_text": _took(run["duration"]),
        "summary": _summary(
            run["counts"], idle=run["status"] == RunStatus.IDLE, cycles=run.get("cycles", 1)
        ),
        "link": context.url(scope.page(run["connection"], run["id"])),
    }


def _columns(context: Context, scope: Scope, asked: Asked) -> list[dict[str, Any]]:
    """Each sortable column's header: a link that sorts by it, or flips the order when
    the list is sorted by it already."""
    shown = []
    for name, title in COLUMNS.items():
        sorted_here = asked.sort == name
        down = asked.descending if sorted_here else name not in ASCENDING_FIRST
        order = ("asc" if down else "desc") if sorted_here else ("desc" if down else "asc")
        shown.append(
            {
                "name": name,
                "title": title,
                "sort": ("descending" if down else "ascending") if sorted_here else "",
                "link": context.url(scope.base, **asked.query(sort=name, order=order, page="")),
            }
        )
    return shown


def _choices(context: Context, scope: Scope) -> dict[str, list[dict[str, str]]]:
    """What each filter offers: its value and what a person reads."""
    providers = sorted({record.provider for record in scope.records})
    users = sorted({record.user for record in scope.records}) if scope.admin else []
    return {
        "status": _options(STATUS_NAMES),
        "kind": _options(history.KIND_NAMES),
        "provider": [{"value": p, "label": _label(context, p)} for p in providers],
        "trigger": _options(TRIGGER_NAMES),
        "frame": _options(history.FRAMES),
        "user": [{"value": u, "label": u} for u in users],
    }


def _options(names: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"value": str(value), "label": label} for value, label in names.items()]


# -- one run (HIS-2, HIS-4) ---------------------------------------------------------------------
@route("/me/history/<connection>/<run>")
def my_run(context: Context) -> View:
    return _detail(context, _mine(context))


@route("/admin/history/<connection>/<run>", who="admin")
def tenant_run(context: Context) -> View:
    return _detail(context, _tenant(context))


def _detail(context: Context, scope: Scope) -> View:
    zone = _zone(context, scope)
    record, run = _run(context, scope, zone)
    data = {
        **_row(context, scope, run, zone),
        "ended_text": _when(run["ended"], zone),
        "timezone": zone.key,
        "admin": scope.admin,
        "back": context.url(scope.base),
        "per_kind": [
            {"kind": history.KIND_NAMES.get(kind, kind), "summary": _summary({kind: counts})}
            for kind, counts in run["counts"].items()
        ],
        "items": [_item(context, scope, record.id, run["id"], i) for i in run["items"]],
    }
    return View(data, "app/history_run.html")


def _run(context: Context, scope: Scope, zone: ZoneInfo) -> tuple[ConnectionRecord, dict[str, Any]]:
    """The run the path names, of a connection the scope holds; 404 otherwise."""
    record = scope.connection(context.params["connection"])
    try:
        run = history.run_detail(
            context.services,
            context.who.tenant,
            record.id,
            context.params["run"],
            timezone=zone.key,
        )
    except Refused as refused:
        if refused.status == 404:
            raise _no_such_run(scope) from None
        raise
    return record, run


def _item(
    context: Context, scope: Scope, connection: str, run: str, item: Mapping[str, Any]
) -> dict[str, Any]:
    """An item with where each of its actions goes (a form's address, or a link)."""
    actions = {
        a["name"]: a.get("url") or context.url(scope.page(connection, run, a["name"]))
        for a in item["actions"]
    }
    return {**item, "act": actions}


# -- what a person does about a failed record (HIS-4) ------------------------------------------
@route("/me/history/<connection>/<run>/retry", methods=("POST",))
def my_retry(context: Context) -> View:
    return _retry(context, _mine(context))


@route("/admin/history/<connection>/<run>/retry", methods=("POST",), who="admin")
def tenant_retry(context: Context) -> View:
    return _retry(context, _tenant(context))


@route("/me/history/<connection>/<run>/exclude", methods=("POST",))
def my_exclude(context: Context) -> View:
    return _exclude(context, _mine(context))


@route("/admin/history/<connection>/<run>/exclude", methods=("POST",), who="admin")
def tenant_exclude(context: Context) -> View:
    return _exclude(context, _tenant(context))


def _retry(context: Context, scope: Scope) -> View:
    """Sync the failed record again in a cycle that starts now."""
    record, run, item = _failed(context, scope, "retry")
    history.retry(
        context.services,
        context.who.tenant,
        record.id,
        item["kind"],
        item["crm_id"],
        item["provider_id"],
    )
    shown = scope.page(record.id, run["id"])
    return View({"retried": True, "kind": item["kind"]}, redirect=shown, notice=RETRIED)


def _exclude(context: Context, scope: Scope) -> View:
    """Put the failed record on the connection's exception list (SET-4), for good or
    until the day asked for (in the viewer's time zone)."""
    zone = _zone(context, scope)
    record, run, item = _failed(context, scope, "exclude")
    until = _until(context.form.get("until"), zone)
    try:
        history.exclude(
            context.services, context.who.tenant, record.id, item["kind"], item["crm_id"], until
        )
    except Refused as refused:
        raise Refused(refused.status, refused.reason, "Go back and choose a later day.") from None
    shown = scope.page(record.id, run["id"])
    after = f" until {until.day} {until:%b %Y}" if until else ""
    notice = EXCLUDED.format(label=item["label"], until=after)
    data = {"excluded": True, "kind": item["kind"], "crm_id": item["crm_id"]}
    return View(
        {**data, "until": until.isoformat() if until else None}, redirect=shown, notice=notice
    )


def _failed(
    context: Context, scope: Scope, action: str
) -> tuple[ConnectionRecord, dict[str, Any], dict[str, Any]]:
    """The run's item the form names (its kind and ids), if it offers `action`."""
    record, run = _run(context, scope, _zone(context, scope))
    form = context.form
    wanted = (_given(form.get("kind")), _given(form.get("crm_id")), _given(form.get("provider_id")))
    for item in run["items"]:
        offered = {a["name"] for a in item["actions"]}
        if (item["kind"], item["crm_id"], item["provider_id"]) == wanted and action in offered:
            return record, run, item
    raise Refused(
        404,
        "this sync has no failed record like that",
        "Go back to the sync's page and use the buttons there.",
    )


def _given(value: Any) -> str | None:
    return str(value) if value else None


def _until(value: Any, zone: ZoneInfo) -> datetime | None:
    """The day a record is synced again from (its start, in the viewer's zone)."""
    if not value:
        return None
    try:
        day = date.fromisoformat(str(value))
    except ValueError as exc:
        raise Refused(400, "until is a day such as 2030-01-31", "Go back and pick a day.") from exc
    return datetime(day.year, day.month, day.day, tzinfo=zone)


# -- whose history ----------------------------------------------------------------------------
def _mine(context: Context) -> Scope:
    """The signed-in user's connections (also one disconnected: its runs stay theirs)."""
    store = context.services.backend.store(context.who.tenant)
    found = []
    for provider in context.services.provider_names():
        wanted = service.connection_id(context.who.user, provider)
        record = service.connection_of(store, wanted)
        if record is not None:
            found.append(record)
    return Scope("/me/history", False, tuple(found))


def _tenant(context: Context) -> Scope:
    store = context.services.backend.store(context.who.tenant)
    return Scope("/admin/history", True, tuple(service.connections_of(store)))


def _no_such_run(scope: Scope) -> Refused:
    where = "your company's history" if scope.admin else "your history"
    return Refused(404, f"there is no such sync in {where}", "Go back to the history page.")


# -- how things read ----------------------------------------------------------------------------
def _zone(context: Context, scope: Scope) -> ZoneInfo:
    """The viewer's time zone: the user's setting (their first connection's), or the
    tenant's default for an admin; UTC when neither names one that exists."""
    store = context.services.backend.store(context.who.tenant)
    defaults = (store.tenant_record() or {}).get("settings") or {}
    name: Any = defaults.get("timezone")
    if not scope.admin and scope.records:
        record = scope.records[0]
        try:
            name = resolve(record.provider, defaults, record.settings)["timezone"]
        except SettingsError:
            name = None
    try:
        return ZoneInfo(str(name or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _label(context: Context, provider: str) -> str:
    try:
        return str(context.services.kit(provider).label)
    except KeyError:
        return provider


def _when(value: Any, zone: ZoneInfo) -> str:
    """An instant as a person reads it, in their zone: "3 Dec 2026, 16:08:05"."""
    if not isinstance(value, str):
        return ""
    try:
        moment = datetime.fromisoformat(value).astimezone(zone)
    except ValueError:
        return value
    return f"{moment.day} {moment:%b %Y, %H:%M:%S}"


def _took(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _summary(counts: Mapping[str, Mapping[str, int]], idle: bool = False, cycles: int = 1) -> str:
    """A run's counts in a few words: "3 created, 1 restored, 1 conflict held for your
    decision, 1 failed"; records skipped by a rule come last. "No changes" is said of a
    run whose result is nothing to do and only of it, so the two always agree; of the
    quiet cycles kept as one entry, "No changes in 12 cycles"."""

    def said(name: str, words: tuple[str, str]) -> str:
        n = sum(per.get(name, 0) for per in counts.values())
        return f"{n} {words[n != 1]}" if n else ""

    changes = [s for s in (said(n, w) for n, w in SHOWN_COUNTS.items()) if s]
    skipped = said("skipped", SKIPPED)
    if idle:
        quiet = f"{NO_CHANGES} in {cycles} cycles" if cycles > 1 else NO_CHANGES
        return f"{quiet}; {skipped}" if skipped else quiet
    return ", ".join([*changes, skipped] if skipped else changes)
