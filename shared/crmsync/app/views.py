"""The app's pages and their JSON twins: signing in and out, a user's connections (the
admin's pages are admin_views'). Each view checks that what it is asked about is the
principal's (a user's own connection, an admin's own tenant) before calling a use case."""

from __future__ import annotations

from typing import Any

from crmsync import service
from crmsync.app import Context, View, route, sessions, signin
from crmsync.ports import ConnectionRecord, ConnectionState
from crmsync.settings import PROVIDERS

_SERVICE_NAMES = {"sync": "Contacts, calendar and tasks", "mail": "E-mails you tag"}
_STATES = {
    ConnectionState.ACTIVE: "Connected",
    ConnectionState.NEEDS_REAUTH: "Needs you to sign in again",
    ConnectionState.DISCONNECTED: "Disconnected",
}


# -- signing in and out --------------------------------------------------------------------
@route("/", who="anyone")
def home(context: Context) -> View:
    """The app's root: a signed-in user's own page, an admin's overview, else sign-in."""
    who = context.principal
    if who is None:
        return View({}, redirect="/sign-in")
    if context.api:
        data = {"tenant": who.tenant, "user": who.user, "admin": who.admin}
        return View({**data, "csrf": who.csrf} if who.csrf else data)
    remembered = sessions.cookie(
        context.services,
        sessions.TENANT_COOKIE,
        who.tenant,
        sessions.function_path(context.services, "app"),
        sessions.TENANT_MAX_AGE,
    )
    return View({}, redirect="/me" if who.user else "/admin", headers=dict([remembered]))


@route("/sign-in", who="anyone")
def sign_in(context: Context) -> View:
    """Pick the company (its id) and the provider to sign in with; with both chosen,
    off to the provider's account chooser."""
    args = context.request.args
    remembered = context.request.cookies.get(sessions.TENANT_COOKIE, "")
    tenant = args.get("tenant", remembered)  # "?tenant=" asks for the company again
    provider, then = args.get("provider", ""), args.get("then", "")
    if tenant and provider:
        hint = args.get("hint", "")[:320]  # the account to preselect at the provider
        url, cookie = signin.start(context.services, tenant, provider, then, hint)
        header = sessions.cookie(
            context.services,
            sessions.SIGN_IN_COOKIE,
            cookie,
            sessions.function_path(context.services, "oauth_callback"),
            int(sessions.SIGN_IN_TTL.total_seconds()),
        )
        if context.api:
            return View({"location": url}, headers=dict([header]))
        return View({}, status=303, headers={"Location": url, header[0]: header[1]})
    data = {
        "tenant": tenant if service.safe_id(tenant) else "",
        "then": then,
        "providers": signin.providers(context.services),
        "ended": _ENDED.get(args.get("ended", ""), ""),
    }
    return View(data, "app/sign_in.html")


_ENDED = {
    "1": "Your session has ended (you signed out, or it expired). Sign in again to go on.",
    "post": "Your session had ended, so what you sent was not saved. Sign in again, then "
    "make the change once more.",
}


@route("/sign-out", methods=("POST",))
def sign_out(context: Context) -> View:
    sessions.close_session(context.services, context.who)
    path = sessions.function_path(context.services, "app")
    header = sessions.cookie(context.services, sessions.COOKIE, "", path, 0)
    tenant = context.who.tenant
    return View(
        {"signed_out": True},
        redirect="/signed-out?" + f"tenant={tenant}",
        headers=dict([header]),
    )


@route("/signed-out", who="anyone")
def signed_out(context: Context) -> View:
    tenant = context.request.args.get("tenant", "")
    return View({"tenant": tenant if service.safe_id(tenant) else ""}, "app/signed_out.html")


# -- a user's connections ----------------------------------------------------------------
@route("/me")
def me(context: Context) -> View:
    """The user's connections, one per provider, with what each syncs and its state."""
    who = context.who
    store = context.services.backend.store(who.tenant)
    tenant_record = store.tenant_record() or {}
    connections = [_connection(context, record) for record in _own(context) if record.live]
    allowed = [p for p in tenant_record.get("providers") or PROVIDERS]
    data = {
        "user": who.user,
        "email": who.email,
        "tenant_name": tenant_record.get("name") or who.tenant,
        "connections": connections,
        "can_connect": bool(allowed),
    }
    return View(data, "app/me.html")


@route("/me/connect")
def connect(context: Context) -> View:
    """Connect an account, add a service, or sign in again at the provider: the user's
    own onboarding link, made now."""
    who = context.who
    link = service.onboarding_link(context.services, who.tenant, who.user)
    if context.api:
        return View({"link": link})
    return View({}, status=303, headers={"Location": link})


@route("/me/connections/<connection>/sync", methods=("POST",))
def sync_now(context: Context) -> View:
    record = _own_connection(context)
    enqueued = service.sync_now(context.services, context.who.tenant, record.id)
    notice = "A sync has started." if enqueued else "A sync is already on its way."
    return View({"enqueued": enqueued}, redirect="/me", notice=notice)


@route("/me/connections/<connection>/disconnect", methods=("POST",))
def disconnect(context: Context) -> View:
    record = _own_connection(context)
    problems = service.disconnect(context.services, context.who.tenant, record.id)
    label = context.services.kit(record.provider).label
    notice = f"Your {label} account is disconnected. Nothing was deleted in it or in the CRM."
    return View({"disconnected": True, "problems": problems}, redirect="/me", notice=notice)


def _own(context: Context) -> list[ConnectionRecord]:
    store = context.services.backend.store(context.who.tenant)
    found = []
    for provider in context.services.provider_names():
        record = service.connection_of(store, service.connection_id(context.who.user, provider))
        if record is not None:
            found.append(record)
    return found


def _own_connection(context: Context) -> ConnectionRecord:
    """The connection the path names, if it is the signed-in user's; the same 404
    otherwise, so nobody learns which connections exist."""
    wanted = context.params["connection"]
    for record in _own(context):
        if record.id == wanted and record.live:
            return record
    raise service.Refused(404, "you have no such connection", "Go back to your sync page.")


def _connection(context: Context, record: ConnectionRecord) -> dict[str, Any]:
    last = record.last_run
    waiting = len(context.services.backend.store(context.who.tenant).queue(record.id))
    return {
        "id": record.id,
        "provider": record.provider,
        "provider_label": context.services.kit(record.provider).label,
        "account": record.account,
        "services": [{"id": s, "label": _SERVICE_NAMES.get(s, s)} for s in record.services],
        "status": str(record.status),
        "status_text": _STATES.get(record.status, str(record.status)),
        "reason": record.reason,
        "health": record.health,
        "needs_reauth": record.status == ConnectionState.NEEDS_REAUTH,
        "can_sync": record.active and record.syncs and not record.preview_first,
        "preview_first": record.preview_first,  # BEY-3: the first sync waits for the user
        "files_mail": record.active and record.records_mail,  # EML-5: its filing page
        "problems": [p for p in (record.channel_problem, record.mail_problem) if p],
        "last_run": {
            "id": last.id,
            "status": str(last.status),
            "trigger": last.trigger,
            "started": _iso(last.started),
            "ended": _iso(last.ended),
        }
        if last is not None
        else None,
        "next_due": _iso(record.next_due),
        "waiting": waiting,  # queue items that wait for the user's decision
        "last_text": _shown(last.ended or last.started) if last is not None else "",
    }


def _shown(moment: Any) -> str:
    """A time as a person reads it (UTC, to the minute)."""
    return f"{moment:%-d %b %Y, %H:%M} UTC" if moment is not None else ""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
