"""The settings pages and their JSON twins: a user's settings per connection with the
exception list (SET-1, SET-3..SET-5, SET-7), the company settings of a tenant admin
(SET-2, HIS-3), and a named user's page where the admin edits their settings and turns
their sync on or off (SET-6).

A page's form posts strings; each is turned into a typed value by its field's type
from the form the use case describes, and only what changed is sent. A refusal shows
the form again with the reason next to the setting and what was typed kept. The JSON
twins take typed values as they are."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.ports import ConnectionRecord
from crmsync.settings import MAX_ATTACHMENT_MB
from crmsync.usecases import attachments, preferences
from crmsync.usecases.history import KIND_NAMES

SAVED = "Settings saved"
UNCHANGED = "Nothing to save: no setting was changed."
HISTORY = "history_days"
ATTACHMENT_MB = "attachment_mb"
TENANT_ONLY = "everyone"  # the company page's section of settings users never change


@dataclass(frozen=True)
class Target:
    """The connection a settings form edits, as its user or as the tenant admin; `page`
    is the app path it is shown on, `base` the path its forms post to."""

    record: ConnectionRecord
    as_admin: bool
    page: str
    base: str


# -- a user's settings ---------------------------------------------------------------------
@route("/me/settings")
def my_settings(context: Context) -> View:
    """The user's connections to pick one from; with a single one, its settings."""
    mine = _mine(context)
    data = {"connections": [_listed(context, record) for record in mine]}
    if len(mine) == 1:
        return View(data, redirect=f"/me/settings/{mine[0].id}")
    return View(data, "app/settings_list.html")


@route("/me/settings/<connection>")
def connection_settings(context: Context) -> View:
    target = _my_target(context)
    shown = preferences.form(context.services, context.who.tenant, target.record.id)
    return _my_page(context, target, shown)


@route("/me/settings/<connection>", methods=("POST",))
def save_connection_settings(context: Context) -> View:
    return _save(context, _my_target(context))


@route("/me/settings/<connection>/exclude", methods=("POST",))
def exclude_record(context: Context) -> View:
    return _exception(context, _my_target(context), exclude=True)


@route("/me/settings/<connection>/include", methods=("POST",))
def include_record(context: Context) -> View:
    return _exception(context, _my_target(context), exclude=False)


@route("/me/settings/<connection>/reset", methods=("POST",))
def reset_sync(context: Context) -> View:
    """CON-1: unlink every record of a kind and pair them again, e.g. to change the
    contact sync group; asked to be confirmed, since it cannot be undone."""
    target = _my_target(context)
    kind = str(context.form.get("kind") or "")
    if str(context.form.get("confirmed") or "") not in ("yes", "true", "True", "on"):
        raise service.Refused(
            400,
            "the reset was not confirmed",
            "Tick the box that says you understand what a reset does, then reset again.",
        )
    dropped = preferences.reset_sync(context.services, context.who.tenant, target.record.id, kind)
    name = KIND_NAMES.get(kind, kind).lower()
    notice = (
        f"The {name} sync starts afresh: {dropped} links were dropped, and the next sync, "
        "which has started, pairs the records again without copying any."
    )
    return View({"reset": kind, "dropped": dropped}, redirect=target.page, notice=notice)


def _mine(context: Context) -> list[ConnectionRecord]:
    store = context.services.backend.store(context.who.tenant)
    found = []
    for provider in context.services.provider_names():
        record = service.connection_of(store, service.connection_id(context.who.user, provider))
        if record is not None and record.live:
            found.append(record)
    return found


def _my_target(context: Context) -> Target:
    """The connection the path names, if it is the signed-in user's; the same 404
    otherwise, so nobody learns which connections exist."""
    for record in _mine(context):
        if record.id == context.params["connection"]:
            page = f"/me/settings/{record.id}"
            return Target(record, False, page, page)
    raise service.Refused(404, "you have no such connection", "Go back to your settings page.")


def _my_page(context: Context, target: Target, shown: dict[str, Any], status: int = 200) -> View:
    listed = [_listed(context, record) for record in _mine(context)]
    data = {"form": _dressed(shown, target), "connections": listed}
    return View(data, "app/settings_connection.html", status=status)


def _listed(context: Context, record: ConnectionRecord) -> dict[str, str]:
    label = str(context.services.kit(record.provider).label)
    return {"id": record.id, "provider_label": label, "account": record.account}


# -- saving a settings form ------------------------------------------------------------------
def _save(context: Context, target: Target) -> View:
    """Change the connection's settings: typed JSON from the API, a page's strings
    typed by the form's fields; a refusal shows the form again (pages)."""
    services, tenant, record = context.services, context.who.tenant, target.record
    if context.api:
        changes, reset = _json_changes(context.form)
        after = preferences.change(
            services, tenant, record.id, changes, as_admin=target.as_admin, reset=reset
        )
        return View({"settings": after})
    shown = preferences.form(services, tenant, record.id, as_admin=target.as_admin)
    changes, reset, kept = _submitted(shown, context.form)
    if not changes and not reset:
        return View({"settings": {}}, redirect=target.page, notice=UNCHANGED)
    try:
        after = preferences.change(
            services, tenant, record.id, changes, as_admin=target.as_admin, reset=reset
        )
    except service.Refused as refused:
        if refused.status not in (400, 403):
            raise
        _refusal(shown, refused.reason, kept, reset)
        return _show(context, target, shown, refused.status)
    return View({"settings": after}, redirect=target.page, notice=SAVED)


def _json_changes(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The API's {"changes": {name: value}, "reset": [name]}."""
    unknown = sorted(set(body) - {"changes", "reset", "csrf"})
    if unknown:
        raise service.Refused(400, f'{unknown[0]}: expected {{"changes": {{}}, "reset": []}}')
    changes, reset = body.get("changes") or {}, body.get("reset") or []
    if not isinstance(changes, Mapping):
        raise service.Refused(400, "changes: expected settings by name")
    if not isinstance(reset, list) or not all(isinstance(name, str) for name in reset):
        raise service.Refused(400, "reset: expected a list of setting names")
    return dict(changes), reset


def _submitted(
    shown: Mapping[str, Any], form: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """What a posted settings form changes: the values that differ from the shown ones,
    the names taken back to their default, and every value as typed (kept on a
    refusal). A field the form did not post stays as it is."""
    reset = [name for name in _listed_values(form.get("reset")) if name]
    changes: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for field in _fields(shown):
        name = field["name"]
        if field["type"] == "list" or form.get(name) is None:
            continue
        kept[name] = _typed(field, form[name])
        if name not in reset and kept[name] != field["value"]:
            changes[name] = kept[name]
    return changes, reset, kept


def _typed(field: Mapping[str, Any], raw: Any) -> Any:
    """A posted string as its field's type; one that does not read as that type is
    passed on as it is, for the use case to refuse with its reason."""
    if field["type"] == "bool":
        return "on" in _listed_values(raw)
    text = str(_listed_values(raw)[-1]).replace("\r\n", "\n")
    if field["type"] in ("choice", "picker"):
        found = [c["value"] for c in field.get("choices", ()) if str(c["value"]) == text]
        return found[0] if found else text
    if not text.strip():
        return None
    if field["type"] == "number":
        return _number(text)
    return text


def _number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text.strip())
        except ValueError:
            continue
    return text


def _listed_values(raw: Any) -> list[Any]:
    if raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def _refusal(
    shown: dict[str, Any], reason: str, kept: Mapping[str, Any], reset: Sequence[str] = ()
) -> None:
    """The form as posted, with the reason next to the setting it names."""
    shown["problem"] = reason
    named = reason.split(":", 1)[0].strip()
    for field in _fields(shown):
        name = field["name"]
        if name in kept:
            field["value"] = kept[name]
        field["reset"] = name in reset
        if named == name or named.startswith(name + "."):
            field["error"] = reason


def _show(context: Context, target: Target, shown: dict[str, Any], status: int) -> View:
    if target.as_admin:
        return _user_page(context, target.record.user, {target.record.id: shown}, status)
    return _my_page(context, target, shown, status)


def _dressed(shown: dict[str, Any], target: Target) -> dict[str, Any]:
    """A settings form as the page shows it: ids, where it posts, each default in
    words, and no problem unless one was set."""
    shown.setdefault("problem", "")
    shown.setdefault("excluding", {"kind": "", "crm_id": "", "until": ""})
    shown["action"] = target.base
    shown["kinds"] = [{"value": k, "label": v} for k, v in KIND_NAMES.items()]
    for field in _fields(shown):
        field["id"] = shown["connection"] + "-" + field["name"].replace(".", "-")
        field["default_text"] = _text(field, field["default"])
        field.setdefault("error", "")
        field.setdefault("reset", False)
    return shown


def _fields(shown: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for section in shown["sections"]:
        yield from section["fields"]


def _text(field: Mapping[str, Any], value: Any) -> str:
    """A value in words: its choice's label, on or off, or "none"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    for choice in field.get("choices") or ():
        if choice["value"] == value:
            return str(choice["label"])
    return str(value)


# -- the exception list (SET-4) ---------------------------------------------------------------
def _exception(context: Context, target: Target, *, exclude: bool) -> View:
    """Leave a record out of the sync, or let it sync again, for good or until a date."""
    services, tenant, record = context.services, context.who.tenant, target.record
    form = context.form
    kind, crm_id = str(form.get("kind") or ""), str(form.get("crm_id") or "").strip()
    change = preferences.exclude if exclude else preferences.include
    try:
        if kind not in KIND_NAMES:
            raise service.Refused(400, f"kind: {kind!r} is not one of contact, activity, todo")
        if not service.CRM_ID.fullmatch(crm_id):
            raise service.Refused(400, "crm_id: give the record's id in the CRM")
        until = _until(services, tenant, record, form.get("until"))
        change(services, tenant, record.id, kind, crm_id, until, as_admin=target.as_admin)
    except service.Refused as refused:
        if context.api or refused.status not in (400, 403):
            raise
        shown = preferences.form(services, tenant, record.id, as_admin=target.as_admin)
        shown["problem"] = f"The exception list was not changed: {refused.reason}"
        shown["excluding"] = {k: str(form.get(k) or "") for k in ("kind", "crm_id", "until")}
        return _show(context, target, shown, refused.status)
    label = KIND_NAMES[kind].lower()
    done = "is left out of the sync" if exclude else "syncs again"
    when = f" until {form.get('until')}" if form.get("until") else ""
    data = {"kind": kind, "crm_id": crm_id, "excluded": exclude}
    return View(data, redirect=target.page, notice=f"The {label} {crm_id} {done}{when}.")


def _until(
    services: service.Services, tenant: str, record: ConnectionRecord, raw: Any
) -> datetime | str | None:
    """A date as the start of that day in the user's time zone; a time as given."""
    text = str(raw or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return text
    zone = ZoneInfo(str(service.settings_for(services, tenant, record)["timezone"]))
    return datetime.combine(day, time(), zone)


# -- a named user, as their admin sees them (SET-6) ------------------------------------------
@route("/admin/users/<user>", who="admin")
def user_settings(context: Context) -> View:
    return _user_page(context, context.params["user"])


@route("/admin/users/<user>/enabled", methods=("POST",), who="admin")
def switch_user(context: Context) -> View:
    """SET-6: the user's sync on or off, with their settings and links kept."""
    user = context.params["user"]
    enabled = _flag(context.form.get("enabled"))
    preferences.set_enabled(context.services, context.who.tenant, user, enabled)
    notice = (
        f"Sync is on again for {user}."
        if enabled
        else f"Sync is off for {user}: nothing of theirs syncs until you turn it on again."
    )
    return View({"user": user, "enabled": enabled}, redirect=f"/admin/users/{user}", notice=notice)


@route("/admin/users/<user>/sign-out", methods=("POST",), who="admin")
def sign_user_out(context: Context) -> View:
    """End every session of the user's in the app (their access revoked at once: a
    lost laptop, someone leaving); their sync goes on."""
    user = context.params["user"]
    _user_page(context, user)  # 404 for a user the tenant does not have
    ended = context.services.backend.sessions().drop_sessions_of(context.who.tenant, user)
    notice = f"{user} is signed out of crmsync's app everywhere ({ended} sessions ended)."
    return View({"user": user, "ended": ended}, redirect=f"/admin/users/{user}", notice=notice)


@route("/admin/users/<user>/connections/<connection>", methods=("POST",), who="admin")
def save_user_settings(context: Context) -> View:
    return _save(context, _their_target(context))


@route("/admin/users/<user>/connections/<connection>/exclude", methods=("POST",), who="admin")
def exclude_their_record(context: Context) -> View:
    return _exception(context, _their_target(context), exclude=True)


@route("/admin/users/<user>/connections/<connection>/include", methods=("POST",), who="admin")
def include_their_record(context: Context) -> View:
    return _exception(context, _their_target(context), exclude=False)


def _user_page(
    context: Context,
    user: str,
    reshown: Mapping[str, dict[str, Any]] | None = None,
    status: int = 200,
) -> View:
    """The user's switch and each of their connections' settings, edited as admin;
    `reshown` holds a form shown again after a refusal."""
    services, tenant = context.services, context.who.tenant
    forms = []
    for record in _theirs(context, user):
        target = _admin_target(user, record)
        shown = (reshown or {}).get(record.id) or preferences.form(
            services, tenant, record.id, as_admin=True
        )
        forms.append(_dressed(shown, target))
    known = services.backend.store(tenant).user_record(user) or {}
    data = {"user": user, "enabled": bool(known.get("enabled", True)), "connections": forms}
    return View(data, "app/settings_user.html", status=status)


def _theirs(context: Context, user: str) -> list[ConnectionRecord]:
    """The user's live connections; 404 for a user the tenant does not know."""
    store = context.services.backend.store(context.who.tenant)
    theirs = [record for record in service.connections_of(store) if record.user == user]
    if not theirs and store.user_record(user) is None:
        raise service.Refused(404, "your company has no such user", "Go back to your users.")
    return [record for record in theirs if record.live]


def _their_target(context: Context) -> Target:
    user = context.params["user"]
    for record in _theirs(context, user):
        if record.id == context.params["connection"]:
            return _admin_target(user, record)
    raise service.Refused(404, "the user has no such connection", "Go back to the user's page.")


def _admin_target(user: str, record: ConnectionRecord) -> Target:
    page = f"/admin/users/{user}"
    return Target(record, True, page, f"{page}/connections/{record.id}")


def _flag(value: Any) -> bool:
    """On or off, as a form (on/off) or JSON (true/false) says it."""
    if isinstance(value, bool):
        return value
    words = {"on": True, "true": True, "off": False, "false": False}
    if isinstance(value, str) and value.lower() in words:
        return words[value.lower()]
    raise service.Refused(400, "enabled: expected on or off")


# -- the company's settings (SET-2, HIS-3) -----------------------------------------------------
@route("/admin/settings", who="admin")
def company_settings(context: Context) -> View:
    return _company_page(context, _company(context))


@route("/admin/settings", methods=("POST",), who="admin")
def save_company_settings(context: Context) -> View:
    """The tenant's defaults, locks, providers, services and history retention: as
    `preferences.change_tenant` takes them from the API, typed from a page's form."""
    tenant = context.who.tenant
    if context.api:
        body = {k: v for k, v in context.form.items() if k != "csrf"}
        preferences.change_tenant(context.services, tenant, body)
        return View(_company(context))
    shown = _company(context)
    changes, kept = _company_changes(shown, context.form)
    if not changes:
        return View({}, redirect="/admin/settings", notice=UNCHANGED)
    try:
        preferences.change_tenant(context.services, tenant, changes)
    except service.Refused as refused:
        if refused.status not in (400, 403):
            raise
        _company_refusal(shown, refused.reason, kept)
        return _company_page(context, shown, refused.status)
    return View({"changed": sorted(changes)}, redirect="/admin/settings", notice=SAVED)


def _company(context: Context) -> dict[str, Any]:
    """The tenant form with the history retention, which only the tenant sets."""
    services, tenant = context.services, context.who.tenant
    shown = preferences.tenant_form(services, tenant)
    record = services.backend.store(tenant).tenant_record() or {}
    days = (record.get("settings") or {}).get(HISTORY)
    shown["sections"].insert(0, _history_section(days))
    size = (record.get("settings") or {}).get(ATTACHMENT_MB)
    shown["sections"].insert(1, _attachment_section(size))
    shown["attachments_bucket"] = attachments.shown(services, tenant)
    shown["deployment_keeps"] = services.attachments is not None
    shown["bucket_problem"] = ""
    shown["bucket_given"] = {}
    labels = {c["value"]: str(c["label"]) for c in shown["providers"]["choices"]}
    for section in shown["sections"]:
        for field in section["fields"]:
            field["id"] = "company-" + field["name"].replace(".", "-")
            field["lockable"] = "locked" in field
            field.setdefault("default_text", _defaults_text(field, labels))
            field.setdefault("error", "")
    shown["problem"] = ""
    return shown


def _history_section(days: Any) -> dict[str, Any]:
    field = {
        "name": HISTORY,
        "label": "Keep sync history for (days)",
        "help": "Older runs and their items are erased. A period longer than "
        "crmsync keeps history for everyone has no effect.",
        "type": "number",
        "value": days,
        "own": days is not None,
        "defaults": {},
        "default_text": "Without a value: as long as crmsync keeps history for everyone.",
    }
    return {"id": "history", "title": "Sync history", "help": "", "fields": [field]}


def _attachment_section(size: Any) -> dict[str, Any]:
    field = {
        "name": ATTACHMENT_MB,
        "label": "Largest attachment kept for the CRM (MB)",
        "help": f"An attachment too large for the CRM itself is kept in the company's "
        f"bucket (see Where attachments are kept, below) and linked from its history "
        f"item, up to this size (0 to {MAX_ATTACHMENT_MB}); larger ones are named "
        f"only. 0 keeps none.",
        "type": "number",
        "step": 1,
        "min": 0,
        "max": MAX_ATTACHMENT_MB,
        "value": size,
        "own": size is not None,
        "defaults": {},
        "default_text": f"Without a value: {MAX_ATTACHMENT_MB} MB.",
    }
    return {"id": "attachments", "title": "E-mail attachments", "help": "", "fields": [field]}


@route("/admin/settings/attachments", methods=("POST",), who="admin")
def name_attachment_bucket(context: Context) -> View:
    """EML-2: the tenant's own S3-compatible bucket for attachments, once a write there
    with its key succeeds."""
    given = {k: v for k, v in context.form.items() if k != "csrf"}
    try:
        kept = attachments.name_bucket(context.services, context.who.tenant, given)
    except service.Refused as refused:  # the page again, with why and what was typed
        if context.api or refused.status not in (400, 503):
            raise
        shown = _company(context)
        told = f"{refused.reason[:1].upper()}{refused.reason[1:]}."
        shown["bucket_problem"] = f"{told} {refused.next_step}".strip()
        shown["bucket_given"] = {k: v for k, v in given.items() if k != "secret"}
        return _company_page(context, shown, refused.status)
    notice = f"Attachments too large for the CRM are now kept in the bucket {kept['bucket']}."
    return View(kept, redirect="/admin/settings", notice=notice)


@route("/admin/settings/attachments/forget", methods=("POST",), who="admin")
def forget_attachment_bucket(context: Context) -> View:
    attachments.forget_bucket(context.services, context.who.tenant)
    notice = "Attachments too large for the CRM are kept in crmsync's own bucket again."
    return View({"forgotten": True}, redirect="/admin/settings", notice=notice)


def _defaults_text(field: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """What applies without the company's value, in words: one value, or each
    provider's."""
    given = {labels.get(p, p): _text(field, v) for p, v in field["defaults"].items()}
    if len(set(given.values())) == 1:
        return f"Without a value: {next(iter(given.values()))}."
    return "Without a value: " + "; ".join(f"{p}: {v}" for p, v in given.items()) + "."


def _company_changes(
    shown: Mapping[str, Any], form: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a posted company form changes (for `change_tenant`), and what was posted."""
    defaults: dict[str, Any] = {}
    reset: list[str] = []
    kept: dict[str, Any] = {}
    for field in _fields(shown):
        name = field["name"]
        if form.get(name) is None:
            continue
        value = kept[name] = _typed_default(field, form[name])
        if value is None and field["own"]:
            reset.append(name)
        elif value is not None and (not field["own"] or value != field["value"]):
            defaults[name] = value
    changes: dict[str, Any] = {}
    if defaults:
        changes["defaults"] = defaults
    if reset:
        changes["reset"] = reset
    locked = _locks(shown, form)
    if set(locked) != {f["name"] for f in _fields(shown) if f.get("locked")}:
        changes["locked"] = kept["locked"] = locked
    for what in ("providers", "services"):
        chosen = _allowed(shown[what], form, what)
        if set(chosen) != set(shown[what]["value"]):
            changes[what] = kept[what] = chosen
    return changes, kept


def _typed_default(field: Mapping[str, Any], raw: Any) -> Any:
    """A company default as posted: empty is none (each provider's default applies)."""
    text = str(_listed_values(raw)[-1])
    if not text.strip():
        return None
    if field["type"] == "bool":
        return {"true": True, "false": False}.get(text, text)
    return _typed(field, text)


def _locks(shown: Mapping[str, Any], form: Mapping[str, Any]) -> list[str]:
    """The settings users may not change after the post: a lockable field's "users may
    change this" box, or its lock as it was where the form did not post it."""
    locked = []
    for field in _fields(shown):
        if not field["lockable"]:
            continue
        free = _checked(form, "users_may." + field["name"])
        if field["locked"] if free is None else not free:
            locked.append(field["name"])
    return locked


def _allowed(shown: Mapping[str, Any], form: Mapping[str, Any], what: str) -> list[str]:
    chosen = []
    for choice in shown["choices"]:
        ticked = _checked(form, f"{what}.{choice['value']}")
        if (choice["value"] in shown["value"]) if ticked is None else ticked:
            chosen.append(choice["value"])
    return chosen


def _checked(form: Mapping[str, Any], name: str) -> bool | None:
    """A checkbox posted with its hidden "off" twin: ticked, not, or not on the form."""
    raw = form.get(name)
    return None if raw is None else "on" in _listed_values(raw)


def _company_refusal(shown: dict[str, Any], reason: str, kept: Mapping[str, Any]) -> None:
    _refusal(shown, reason, kept)
    for field in _fields(shown):
        if field["lockable"] and "locked" in kept:
            field["locked"] = field["name"] in kept["locked"]
    for what in ("providers", "services"):
        if what in kept:
            shown[what]["value"] = kept[what]


def _company_page(context: Context, shown: dict[str, Any], status: int = 200) -> View:
    return View(shown, "app/settings_company.html", status=status)
