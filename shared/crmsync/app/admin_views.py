"""The tenant admin's pages: the dashboard of seats and of each connection's health
(AUTH-6, SET-6, HIS-1), and onboarding at scale: the CRM's directory beside crmsync's
users, and onboarding links for many users in one step (AUTH-1).

A link is answered once, on the page that a POST answers or in the CSV file a POST
downloads: never in an address, never logged, never stored."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.usecases import people

HEALTH_WORDS = {
    "ok": "OK",
    "needs_reconsent": "Needs to sign in again",
    "stale": "Stale: no recent sync",
    "stuck": "Stuck in a sync",
    "failing": "Failing",
    "disconnected": "Disconnected",
    "off": "Turned off",
}
SERVICE_WORDS = {"sync": "Contacts, calendar and tasks", "mail": "Tagged e-mails"}
STATE_WORDS = {
    "active": "connected",
    "needs_reauth": "needs to sign in again",
    "disconnected": "disconnected",
    "off": "turned off",
}
RUN_WORDS = {
    "running": "Running",
    "ok": "Synced",
    "partial": "Partly synced",
    "continued": "Continued in the next task",
    "busy": "Skipped: another sync was running",
    "failed": "Failed",
    "needs_reauth": "Refused: needs sign-in",
    "crm_unauthorized": "Refused by the CRM",
    "lease_lost": "Interrupted",
    "interrupted": "Interrupted",
    "skipped": "Skipped",
    "idle": "Nothing to do",
}
LINK_COLUMNS = (*people.CSV_COLUMNS, "link", "error")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet runs as a formula


# -- the dashboard -------------------------------------------------------------------------
@route("/admin", who="admin")
def dashboard(context: Context) -> View:
    """AUTH-6, SET-6, HIS-1: the seats, a count per health (each a link to its rows),
    the rows, and what needs someone to act; `?health=` keeps that health's rows."""
    health = context.request.args.get("health") or None
    found = people.dashboard(context.services, context.who.tenant, health=health)
    rows = [_health_row(row) for row in found["rows"]]
    seats = found["seats"]
    data = {
        **found,
        "tenant_name": _tenant_name(context),
        "health": health,
        "health_text": HEALTH_WORDS.get(health or "", ""),
        "healths": [
            {"health": name, "label": HEALTH_WORDS[name], "count": found["counts"][name]}
            for name in people.HEALTHS
        ],
        "seats_full": seats["used"] >= seats["allowed"],
        "rows": rows,
        "needs_action": [
            {**_who(row), "problem": problem} for row in rows for problem in row["problems"]
        ],
    }
    return View(data, "app/admin_dashboard.html")


def _health_row(row: Mapping[str, Any]) -> dict[str, Any]:
    last = row["last_cycle"]
    if last is not None:
        last = {**last, "text": _run_text(last)}
    return {
        **row,
        "service_label": SERVICE_WORDS.get(row["service"], row["service"]),
        "health_text": HEALTH_WORDS[row["health"]],
        "last_cycle": last,
    }


def _who(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in ("user", "label", "connection", "service_label")}


def _run_text(run: Mapping[str, Any]) -> str:
    words = RUN_WORDS.get(run["status"], run["status"].replace("_", " "))
    ended = _moment_text(run["ended"])
    return f"{words}, {ended}" if ended else words


# -- the directory -------------------------------------------------------------------------
@route("/admin/users", who="admin")
def users(context: Context) -> View:
    """AUTH-1: the CRM's users, who is connected with what, when their last link was
    made and whether they connected since; ticked ones get links."""
    rows = [_person(row) for row in people.directory(context.services, context.who.tenant)]
    data = {
        "tenant_name": _tenant_name(context),
        "rows": rows,
        "columns": list(people.CSV_COLUMNS),
        "max_batch": people.MAX_BATCH,
    }
    return View(data, "app/admin_users.html")


def _person(row: Mapping[str, Any]) -> dict[str, Any]:
    since = row["connected_since_link"]
    return {
        **row,
        "pick": row["user"] or row["crm_user"],  # a CRM user's own id, until onboarded
        "shown_name": row["name"] or row["crm_user"],
        "connected": [_connected(entry) for entry in row["providers"] if _any(entry)],
        "link_made_text": _moment_text(row["link_made"]) or "No link yet",
        "since_text": "" if since is None else ("Yes" if since else "Not yet"),
    }


def _any(entry: Mapping[str, Any]) -> bool:
    return any(entry[name] != people.NONE for name in SERVICE_WORDS if name in entry)


def _connected(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One provider of a directory row: its account and each connected service's state."""
    return {
        "label": entry["label"],
        "account": entry["account"],
        "services": [
            {"label": words, "state": STATE_WORDS.get(entry[name], entry[name])}
            for name, words in SERVICE_WORDS.items()
            if entry.get(name, people.NONE) != people.NONE
        ],
    }


# -- onboarding links ----------------------------------------------------------------------
@route("/admin/links", methods=("POST",), who="admin")
def links(context: Context) -> View:
    """AUTH-1: links for the ticked `users`, or for the users of an uploaded CSV `file`,
    shown once."""
    selection = _selection(context.form)
    return _links_page(selection, _onboarded(context, selection))


@route("/admin/links.csv", methods=("POST",), who="admin")
def links_csv(context: Context) -> View:
    """AUTH-1: `links` as a CSV file to download (the links are new ones: each made
    earlier works on until it expires)."""
    rows = _onboarded(context, _selection(context.form))
    name = f"onboarding-links-{context.who.tenant}.csv"
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    return View({"rows": rows}, body=_csv(rows), headers=headers)


@route("/admin/users/<user>/link", methods=("POST",), who="admin")
def new_link(context: Context) -> View:
    """AUTH-1: a new link for one user (their earlier ones work on until they expire)."""
    selection = {"users": [context.params["user"]], "file": ""}
    return _links_page(selection, _onboarded(context, selection))


def _selection(form: Mapping[str, Any]) -> dict[str, Any]:
    """Who a form asks links for: the ticked users, or an uploaded file's text."""
    ticked = form.get("users") or []
    listed = [ticked] if isinstance(ticked, str) else ticked
    text = form.get("file") or ""
    if not isinstance(listed, list) or not isinstance(text, str):
        raise service.Refused(400, "users is a list of user ids and file the text of a CSV file")
    return {"users": [str(user) for user in listed if str(user).strip()], "file": text}


def _onboarded(context: Context, selection: Mapping[str, Any]) -> list[dict[str, Any]]:
    tenant = context.who.tenant
    if selection["users"] and selection["file"].strip():
        raise service.Refused(400, "name the users or send a file of them, not both")
    if selection["users"]:
        return people.onboard(context.services, tenant, selection["users"])
    if not selection["file"].strip():
        raise service.Refused(
            400,
            "no users were chosen",
            "Go back to the Users page, tick the users to onboard or choose a file, and try again.",
        )
    try:
        return people.onboard_csv(context.services, tenant, selection["file"])
    except service.Refused as refused:
        if refused.status != 400:
            raise
        raise service.Refused(
            400, f"the file was not read: {refused.reason}", "Correct the file and upload it again."
        ) from refused


def _links_page(selection: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> View:
    data = {
        "rows": rows,
        "made": [row for row in rows if row["link"]],
        "refused": [row for row in rows if row["error"]],
        "days": service.LINK_TTL.days,
        "selection": selection,
    }
    return View(data, "app/admin_links.html")


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(LINK_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in LINK_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet shows as text, never runs."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


# -- shared --------------------------------------------------------------------------------
def _tenant_name(context: Context) -> str:
    tenant_record = context.services.backend.store(context.who.tenant).tenant_record() or {}
    return str(tenant_record.get("name") or context.who.tenant)


def _moment_text(value: str | None) -> str:
    """An ISO moment as people read it: 3 Dec 2026, 16:04 UTC."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value)
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"
