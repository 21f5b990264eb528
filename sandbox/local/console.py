"""The sandbox console: one page, served by `make dev` (never deployed), that shows the
demo CRM beside each connected user's own provider account, lets a newcomer create,
edit and delete records on either side, and shows crmsync's cycles, what each did to
each record (its Sync History), and crmsync's outbound events as they happen.

Edits go where a real user's would: into the reference CRM as a CRM user makes them,
and into the Google or Microsoft sandbox through the APIs the user's own apps call
(`sandbox.local.accounts`). crmsync then learns of them as it would in production: a
CRM change event, a Calendar push, a Graph change notification, or the next poll. The
page reads `/api/state` every two seconds; nothing in it talks to crmsync's store
except to show the runs.
"""

from __future__ import annotations

import html
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from sandbox.local.accounts import FIELDS, KINDS, Account, GoogleApps, OutlookApps, minute, when
from sandbox.local.inbox import GmailInbox
from sandbox.local.stack import DEMO_USERS

ADDON_USER = DEMO_USERS["u1"]  # whose Gmail the add-on's page shows
OUTLOOK_USER = DEMO_USERS["u2"]  # whose Outlook the add-in's page shows

TENANT = "demo"
RUNS_SHOWN = 15
EVENTS_SHOWN = 30
PAGE = Path(__file__).with_name("console.html")


class Console:
    """The console of a running local stack (`sandbox.local.stack.LocalStack`).
    `announce(user, kind, ids)` tells crmsync of a CRM edit the console made (None when
    something else watches the CRM, as `make dev` does); `events()` gives crmsync's
    outbound events seen so far, oldest first."""

    def __init__(
        self,
        local: Any,
        *,
        announce: Callable[[str, str, list[str]], None] | None = None,
        events: Callable[[], Iterable[dict[str, Any]]] | None = None,
        crm_switch: CrmSwitch | None = None,
    ) -> None:
        """`crm_switch` is the stack's `crm_wrap`, through which the console takes the
        CRM's API down and brings it back."""
        self.local = local
        self.announce = announce
        self.crm_switch = crm_switch
        self._events = events or (lambda: getattr(local.events, "events", ()))
        self._accounts: dict[str, Account] = {}
        self._items: dict[str, list[dict[str, Any]]] = {}  # a finished run's, by run id
        self._lock = threading.Lock()

    # -- what the page shows -----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        store = self.local.backend.store(TENANT)
        connections = [c for c in store.connection_records() if c.get("status") != "disconnected"]
        return {
            "crm_down": self.crm_down,
            "crm": self.crm_state(connections),
            "accounts": [self._account_state(c) for c in connections],
            "runs": self._runs(store, connections),
            "events": [_event(e) for e in list(self._events())[-EVENTS_SHOWN:]][::-1],
        }

    def crm_state(self, connections: list[dict[str, Any]]) -> dict[str, Any]:
        crm = self.local.crm
        connected = {str(c["user"]): c for c in connections}
        users = [
            {
                "id": u.id,
                "name": u.name,
                "email": u.email,
                "connection": connected.get(u.id, {}).get("id", ""),
                "status": connected.get(u.id, {}).get("status", "not connected"),
            }
            for u in crm.database.users(TENANT)
        ]
        groups = {u["id"]: crm.database.members(TENANT, u["id"]) for u in users}
        records = {
            kind: [_crm_record(kind, r, groups) for r in crm.all(TENANT, kind)] for kind in KINDS
        }
        for contact in records["contact"]:  # what e-mail recording filed on each (EML-2)
            held = crm.history(TENANT, "contact", contact["id"])
            contact["history"] = {
                "count": len(held),
                "latest": str(held[-1].get("subject") or "") if held else "",
            }
        return {"users": users, "records": records}

    def _account_state(self, connection: dict[str, Any]) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "connection": connection["id"],
            "user": connection["user"],
            "provider": connection["provider"],
            "account": connection.get("account", ""),
            "status": connection.get("status", ""),
            "records": {},
            "mail": None,  # the inbox, for a Google account that records mail
            "problem": "",
        }
        try:
            apps = self.account(str(connection["id"]))
            shown["records"] = {kind: apps.records(kind) for kind in KINDS}
            if _records_mail(connection):
                shown["mail"] = self.inbox(str(connection["id"])).messages()
        except Exception as exc:  # one account the sandbox refuses does not blank the page
            shown["problem"] = f"{type(exc).__name__}: {exc}"
        return shown

    def _runs(self, store: Any, connections: list[dict[str, Any]]) -> list[dict[str, Any]]:
        runs = [{**run, "connection": c["id"]} for c in connections for run in store.runs(c["id"])]
        runs.sort(key=lambda run: run["started"], reverse=True)
        return [self._run(store, run) for run in runs[:RUNS_SHOWN]]

    def _run(self, store: Any, run: dict[str, Any]) -> dict[str, Any]:
        finished = run.get("status") != "running"
        with self._lock:
            items = self._items.get(run["id"]) if finished else None
        if items is None:
            items = [_item(i) for i in store.items(run["connection"], run["id"])]
            if finished:
                with self._lock:
                    self._items[run["id"]] = items
        return {
            "id": run["id"],
            "connection": run["connection"],
            "started": _clock(run["started"]),
            "trigger": run.get("trigger", ""),
            "status": run.get("status", ""),
            "counts": run.get("counts") or {},
            "errors": [str(e) for e in run.get("errors") or ()],
            "items": items,
        }

    # -- breaking things ---------------------------------------------------------------------
    @property
    def crm_down(self) -> bool | None:
        """Whether the CRM's API answers 503 to crmsync (None: it cannot be taken down)."""
        faults = self.crm_switch.faults if self.crm_switch else None
        return None if faults is None else faults.chaos is not None

    def take_crm_down(self, down: bool) -> None:
        """The CRM's API answers every request of crmsync's with 503, or again as usual
        (the console itself edits the CRM as its users do, so it goes on working)."""
        from sandbox.chaos import Chaos

        faults = self.crm_switch.faults if self.crm_switch else None
        if faults is None:
            raise ValueError("this stack's CRM cannot be taken down")
        faults.chaos = Chaos(rate=1.0, kinds=frozenset({"503"})) if down else None

    def sync_now(self, connection: str) -> None:
        """A cycle of the connection at once, as its user's or admin's "Sync now"."""
        from crmsync import service

        service.sync_now(self.local.services, TENANT, connection)

    # -- the provider side -------------------------------------------------------------------
    def account(self, connection: str) -> Account:
        """The connected account's own apps (made once per connection)."""
        with self._lock:
            if connection in self._accounts:
                return self._accounts[connection]
        record = self.local.backend.store(TENANT).connection_record(connection)
        if record is None:
            raise KeyError(connection)
        email = str(record.get("account") or "")
        local = self.local
        apps: Account
        if record["provider"] == "google":
            apps = GoogleApps(local.google, local.google_url.rstrip("/"), email)
        else:
            apps = OutlookApps(local.microsoft, local.graph_root, local.microsoft_ca, email)
        with self._lock:
            self._accounts[connection] = apps
        return apps

    def inbox(self, connection: str) -> GmailInbox:
        """The Gmail inbox of a Google connection that records mail."""
        record = self.local.backend.store(TENANT).connection_record(connection)
        if record is None:
            raise LookupError(f"no connection {connection}; reload the console")
        if not _records_mail(record):
            raise ValueError(
                f"{connection} does not record mail: only a Google account connected with "
                "the mail service has a Gmail panel"
            )
        return GmailInbox(self.local.google, str(record.get("account") or ""))

    # -- the CRM side ------------------------------------------------------------------------
    def crm_create(self, kind: str, fields: dict[str, str], owner: str) -> str:
        crm = self.local.crm
        record_id = str(crm.create(TENANT, kind, _to_crm(kind, fields, create=True), owner))
        if kind == "contact":  # a new contact joins its owner's sync group (CON-1)
            crm.add_to_group(TENANT, owner, record_id)
        self._announce(kind, record_id)
        return record_id

    def crm_update(self, kind: str, record_id: str, fields: dict[str, str]) -> None:
        self.local.crm.update(TENANT, kind, record_id, _to_crm(kind, fields, create=False))
        self._announce(kind, record_id)

    def crm_delete(self, kind: str, record_id: str) -> None:
        users = self._users_of(kind, record_id)
        self.local.crm.delete(TENANT, kind, record_id)
        self._announce(kind, record_id, users)

    def _users_of(self, kind: str, record_id: str) -> set[str]:
        """The CRM users a record concerns: its owner, a meeting's members, and users
        whose sync group holds a contact."""
        crm = self.local.crm
        record = crm.get(TENANT, kind, record_id) or {}
        users = {str(record.get("owner") or "")} | set(record.get("members") or ())
        for user in crm.database.users(TENANT):
            if record_id in crm.database.members(TENANT, user.id):
                users.add(user.id)
        return users - {""}

    def _announce(self, kind: str, record_id: str, users: set[str] | None = None) -> None:
        if self.announce is None:
            return
        for user in sorted(users if users is not None else self._users_of(kind, record_id)):
            self.announce(user, kind, [record_id])

    # -- the Gmail add-on, for a look (CTX-1) ----------------------------------------------------
    def addon_page(self, message_id: str, form: Any, where: str = "message") -> Response:
        """Post the event Google posts when u1 opens `message_id` ("" for the homepage),
        the calendar event of that id (`where` "event"), or the compose action (`where`
        "compose"), or clicks a button of its card (`form`: the card's inputs and the
        button's `do`), signed as Google signs it; draw what the addon function answers."""
        import json as jsonlib

        from sandbox.google import addon_html, addons

        email = ADDON_USER
        endpoint = self.local.functions_url + "/addon/google"
        url = endpoint + ("?do=compose" if where == "compose" else "")
        parameters: dict[str, str] = {}
        inputs: dict[str, list[str]] = {}
        if form is not None:
            action = jsonlib.loads(form.get("do") or "{}")
            url = str(action.get("function") or "")
            if not url.startswith(endpoint):
                raise ValueError("the card's button calls no function of this stack")
            parameters = {p["key"]: p["value"] for p in action.get("parameters") or []}
            inputs = {name: form.getlist(name) for name in form if name != "do"}
        google = self.local.google
        clicked = {"parameters": parameters, "inputs": inputs}
        if where == "event":
            event = addons.calendar_event(google, url, email, message_id, **clicked)
        elif where == "compose":
            event = addons.compose_event(google, url, email, **clicked)
        elif message_id:
            event = addons.message_event(google, url, email, message_id, **clicked)
        else:
            event = addons.homepage_event(google, url, email)
        answer = addons.post(google, url, event)
        if answer.status_code != 200:
            raise ValueError(f"the addon function answered {answer.status_code}: {answer.text}")
        body = answer.json()
        draft = body.get("renderActions", {}).get("hostAppAction", {}).get("gmailAction")
        if draft:  # what Gmail puts into the draft, where the cursor is
            [content] = draft["updateDraftActionMarkup"]["updateBody"]["insertContents"]
            card = {
                "header": {"title": "Put into the draft", "subtitle": "where the cursor is"},
                "sections": [{"widgets": [{"textParagraph": {"text": content["content"]}}]}],
            }
            return Response(addon_html.page(card), mimetype="text/html")
        done = body.get("renderActions", body).get("action", {})
        [navigation] = done.get("navigations") or [{}]
        card = navigation.get("pushCard") or navigation.get("updateCard") or {}
        note = str((done.get("notification") or {}).get("text") or "")
        after = self._addon_list(google, email) if not message_id and where == "message" else ""
        return Response(addon_html.page(card, note, after=after), mimetype="text/html")

    @staticmethod
    def _addon_list(google: Any, email: str) -> str:
        """Under the homepage: u1's messages and calendar events to open, and the
        compose action."""
        from sandbox.google.calendar import calendar_events

        messages = "".join(
            f'<li><a href="/gmail-addon/{html.escape(m["id"])}">'
            f"{html.escape(m['subject'] or '(no subject)')}</a> "
            f"<small>{html.escape(m['from'])}</small></li>"
            for m in GmailInbox(google, email).messages()
        )
        events = "".join(
            f'<li><a href="/calendar-addon/{html.escape(e["id"])}">'
            f"{html.escape(e.get('summary') or '(no title)')}</a></li>"
            for e in calendar_events(google, email)
            if e.get("status") != "cancelled"
        )
        return (
            f"<h2>Open a message of {html.escape(email)}'s inbox</h2><ul>{messages}</ul>"
            f"<h2>Open an event of their calendar</h2><ul>{events}</ul>"
            '<h2>Write a message</h2><p><a href="/gmail-addon/compose">CRM documents</a> '
            "(the add-on's compose action)</p>"
        )

    def outlook_page(self) -> Response:
        """CTX-1: u2's Outlook inbox, calendar and a new message, each a link that opens
        crmsync's task pane (the addon function's page) as Outlook would beside it: with
        this console's stand-in for Office.js, given the item and u2's SSO token."""
        from sandbox.local.stack import MICROSOFT_CLIENT_ID
        from sandbox.microsoft import office

        email = OUTLOOK_USER
        token = office.sso_token(self.local.microsoft, email, MICROSOFT_CLIENT_ID)
        pane = self.local.functions_url + "/addon/microsoft"

        def opened(item: dict[str, Any]) -> str:
            return html.escape(pane + office.fragment(office.stub_config(token, item)))

        messages = self.local.outlook("GET", "me/mailFolders/inbox/messages?$top=25")["value"]
        events = self.local.outlook("GET", "me/events?$top=25")["value"]
        listed = "".join(
            f'<li><a href="{opened(office.message_item(m))}">'
            f"{html.escape(m.get('subject') or '(no subject)')}</a> <small>"
            f"{html.escape(((m.get('from') or {}).get('emailAddress') or {}).get('address', ''))}"
            "</small></li>"
            for m in messages
        )
        meetings = "".join(
            f'<li><a href="{opened(office.event_item(e, organizer=True))}">'
            f"{html.escape(e.get('subject') or '(no subject)')}</a></li>"
            for e in events
            if not e.get("isCancelled")
        )
        draft = opened(office.draft_item("A new message"))
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>crmsync in Outlook</title></head><body><main>"
            f"<h1>crmsync's pane in {html.escape(email)}'s Outlook</h1>"
            "<p>Each link opens crmsync's task pane as Outlook opens it beside the item "
            "(this console stands in for Office.js and hands the pane the user's SSO token). "
            "Open a message, a meeting or a new message.</p>"
            f"<h2>Inbox</h2><ul>{listed or '<li>(empty)</li>'}</ul>"
            f"<h2>Calendar</h2><ul>{meetings or '<li>(no meetings yet)</li>'}</ul>"
            f'<h2>Write a message</h2><p><a href="{draft}">A new message</a> '
            "(attach a CRM document)</p></main></body></html>"
        )
        return Response(page, mimetype="text/html")

    # -- the web app ---------------------------------------------------------------------------
    def app(self) -> Flask:
        app = Flask("crmsync-console")

        @app.get("/")
        def page() -> Response:
            return Response(PAGE.read_text(encoding="utf-8"), mimetype="text/html")

        @app.get("/api/state")
        def state() -> Any:
            return jsonify(self.state())

        @app.post("/api/crm/<kind>")
        def crm_create(kind: str) -> Any:
            body = _body(kind)
            owner = str(body.pop("owner", "") or "u1")
            return jsonify(id=self.crm_create(kind, body, owner)), 201

        @app.patch("/api/crm/<kind>/<record_id>")
        def crm_update(kind: str, record_id: str) -> Any:
            self.crm_update(kind, record_id, _body(kind))
            return jsonify(ok=True)

        @app.delete("/api/crm/<kind>/<record_id>")
        def crm_delete(kind: str, record_id: str) -> Any:
            self.crm_delete(_kind(kind), record_id)
            return jsonify(ok=True)

        @app.post("/api/accounts/<connection>/<kind>")
        def account_create(connection: str, kind: str) -> Any:
            return jsonify(id=self.account(connection).create(kind, _body(kind))), 201

        @app.patch("/api/accounts/<connection>/<kind>/<path:record_id>")
        def account_update(connection: str, kind: str, record_id: str) -> Any:
            self.account(connection).update(kind, record_id, _body(kind))
            return jsonify(ok=True)

        @app.delete("/api/accounts/<connection>/<kind>/<path:record_id>")
        def account_delete(connection: str, kind: str, record_id: str) -> Any:
            self.account(connection).delete(_kind(kind), record_id)
            return jsonify(ok=True)

        @app.post("/api/accounts/<connection>/mail")
        def mail_arrives(connection: str) -> Any:
            sent = request.get_json(silent=True)
            if not isinstance(sent, dict):
                raise ValueError("send the message's from, subject and text")
            made = self.inbox(connection).arrive(
                str(sent.get("from") or ""),
                str(sent.get("subject") or ""),
                str(sent.get("text") or ""),
            )
            return jsonify(id=made), 201

        @app.post("/api/accounts/<connection>/mail/<message_id>/send-to-crm")
        def send_to_crm(connection: str, message_id: str) -> Any:
            self.inbox(connection).send_to_crm(message_id)
            return jsonify(ok=True)

        @app.post("/api/crm/outage")
        def outage() -> Any:
            sent = request.get_json(silent=True)
            if not isinstance(sent, dict) or not isinstance(sent.get("down"), bool):
                raise ValueError('send {"down": true} or {"down": false}')
            self.take_crm_down(sent["down"])
            return jsonify(down=self.crm_down)

        @app.post("/api/sync/<connection>")
        def sync(connection: str) -> Any:
            self.sync_now(connection)
            return jsonify(ok=True)

        @app.post("/api/onboarding/<user>")
        def onboarding(user: str) -> Any:
            """A CRM user's onboarding link, as an operator's `crmsync onboarding-link`."""
            from crmsync import service

            return jsonify(link=service.onboarding_link(self.local.services, TENANT, user))

        @app.get("/gmail-addon")
        @app.get("/gmail-addon/<message_id>")
        def gmail_addon(message_id: str = "") -> Response:
            """CTX-1: the card Gmail shows beside u1's open message (or the add-on's
            homepage), as the addon function answers it, drawn as a page."""
            return self.addon_page(message_id, None)

        @app.post("/gmail-addon/<message_id>")
        def gmail_addon_action(message_id: str) -> Response:
            return self.addon_page(message_id, request.form)

        @app.route("/gmail-addon/compose", methods=["GET", "POST"])
        def gmail_addon_compose() -> Response:
            """CTX-1: the add-on's compose action, while u1 writes a message."""
            form = request.form if request.method == "POST" else None
            return self.addon_page("", form, where="compose")

        @app.route("/calendar-addon/<event_id>", methods=["GET", "POST"])
        def calendar_addon(event_id: str) -> Response:
            """CTX-1: the card Google Calendar shows beside u1's open event."""
            form = request.form if request.method == "POST" else None
            return self.addon_page(event_id, form, where="event")

        @app.get("/outlook-addin")
        def outlook_addin() -> Response:
            return self.outlook_page()

        @app.get("/office.js")
        def office_js() -> Response:
            """The stand-in for Office.js the pane loads in make dev."""
            from sandbox.microsoft import office

            return Response(office.stub_script(), mimetype="text/javascript")

        @app.errorhandler(404)
        def missing(exc: Exception) -> Any:
            if request.path.startswith("/api/"):
                return jsonify(error=f"no such console API address: {request.path}"), 404
            page = (
                "<!doctype html><title>Not here</title><h1>Not here</h1>"
                '<p>The sandbox console is one page: <a href="/">open it</a>.</p>'
            )
            return Response(page, status=404, mimetype="text/html")

        @app.errorhandler(Exception)
        def failed(exc: Exception) -> Any:
            code = getattr(exc, "code", None) or getattr(exc, "status", None)
            status = code if isinstance(code, int) else 400
            reason = getattr(exc, "description", None) or getattr(exc, "reason", None) or exc
            return jsonify(error=f"{reason}"), status

        return app


def _records_mail(connection: dict[str, Any]) -> bool:
    return connection.get("provider") == "google" and "mail" in (connection.get("services") or ())


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: contact, activity or todo")
    return kind


def _body(kind: str) -> dict[str, str]:
    """The form's fields of `kind` (and a CRM record's owner), as text."""
    sent = request.get_json(silent=True)
    if not isinstance(sent, dict):
        raise ValueError("send the fields as a JSON object")
    wanted = (*FIELDS[_kind(kind)], "owner")
    fields = {k: str(v).strip() for k, v in sent.items() if k in wanted and v is not None}
    title = "last_name" if kind == "contact" else "subject"
    if not fields.get(title):
        raise ValueError(f"{title.replace('_', ' ')} is required")
    return fields


def _to_crm(kind: str, fields: dict[str, str], *, create: bool) -> dict[str, Any]:
    if kind == "contact":
        found: dict[str, Any] = {k: fields[k] for k in ("first_name", "last_name") if k in fields}
        if "email" in fields:
            found["emails"] = [fields["email"]] if fields["email"] else []
        return found
    if kind == "activity":
        found = {"subject": fields["subject"]}
        if fields.get("start"):
            start = when(fields["start"])
            found.update(start=start, end=start + timedelta(minutes=30), timezone="UTC")
        if create:
            found.setdefault("type", "meeting")
            if "start" not in found:
                raise ValueError("a meeting needs its start")
        return found
    found = {"subject": fields["subject"]}
    if "due" in fields:
        found["due"] = date.fromisoformat(fields["due"][:10]) if fields["due"] else None
    if create:
        found["status"] = "open"
    return found


def _crm_record(kind: str, record: dict[str, Any], groups: dict[str, set[str]]) -> dict[str, Any]:
    if kind == "contact":
        fields = {
            "first_name": record.get("first_name", ""),
            "last_name": record.get("last_name", ""),
            "email": (record.get("emails") or [""])[0],
        }
        synced_by = sorted(user for user, held in groups.items() if record["id"] in held)
    elif kind == "activity":
        start = record.get("start")
        shown = minute(start) if isinstance(start, datetime) else str(start or "")
        fields = {"subject": record.get("subject", ""), "start": shown}
        synced_by = sorted({record.get("owner") or "", *(record.get("members") or ())} - {""})
    else:
        fields = {"subject": record.get("subject", ""), "due": str(record.get("due") or "")}
        synced_by = [record.get("owner") or ""]
    return {
        "id": record["id"],
        "owner": record.get("owner", ""),
        "fields": fields,
        "users": synced_by,
    }


def _item(item: dict[str, Any]) -> dict[str, Any]:
    shown = ("kind", "outcome", "direction", "crm_id", "provider_id", "label", "reason", "error")
    found: dict[str, Any] = {k: str(item[k]) for k in shown if item.get(k) not in (None, "")}
    found["fields"] = [str(f) for f in item.get("fields") or ()]
    return found


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "at": str(event.get("at", ""))[11:19],
        "type": event.get("type", ""),
        "connection": event.get("connection", ""),
        "data": event.get("data", {}),
    }


def _clock(moment: Any) -> str:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC).strftime("%H:%M:%S")
    return str(moment)[11:19]


class CrmSwitch:
    """What takes the CRM's API down for the console: give it to the stack as its
    `crm_wrap`, and to the console."""

    def __init__(self) -> None:
        self.faults: Any = None  # the ChaosMiddleware in front of the CRM, once served

    def __call__(self, app: Any) -> Any:
        from sandbox.crm.chaos import ChaosMiddleware

        self.faults = ChaosMiddleware(app)
        return self.faults


class EventLog:
    """The outbound events `make dev` receives from the `sync-events` subscription, kept
    for the console (the newest few hundred)."""

    def __init__(self, size: int = 300) -> None:
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=size)
        self._count = 0
        self._lock = threading.Lock()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._count += 1
            self._events.append((self._count, event))

    def __call__(self) -> list[dict[str, Any]]:
        with self._lock:
            return [event for _, event in self._events]

    def after(self, seen: int) -> tuple[list[dict[str, Any]], int]:
        """The events kept that arrived after the first `seen`, and how many arrived."""
        with self._lock:
            return [event for n, event in self._events if n > seen], self._count
