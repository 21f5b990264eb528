"""SyncWorld's provider as the Microsoft sandbox behind crmsync's Graph adapters
(`SyncWorld(provider="microsoft", provider_backend="graph-sandbox")`).

The cycle reaches the Microsoft sandbox (`sandbox/microsoft`: Outlook contacts, the
calendar and To Do over https on a loopback socket) through Microsoft's own kit, as the
worker does: the kit's GraphContacts, GraphCalendar and GraphTasks on a GraphClient,
with the grant consent left sealed in the store. What the user does in Outlook
(`world.provider.create`, `label`, ...) goes to the same mailbox with a token of the
user's own: no injected failure hits it and no crash counts it.

A mail pass (`world.sync("mail")`) reads the same mailbox's Outlook mail through the
kit's `OutlookMail`, as the worker does, and its category writes count for a crash as
the CRM's do; `world.mailbox` (an `OutlookMailbox`) is that mail as its user sees it.
The world makes no Graph subscription, on records or on messages.

Injected provider failures (`world.fail("provider", ...)`) are answered by the sandbox
over HTTP, in Graph's error format, for the requests of the next sync that match them;
what that sync leaves untaken is injected again into the one after. Graph answers
transient (503), permanent (400), rate_limited (429, Retry-After 120), revoked (401)
and cursor_expired (410 syncStateNotFound); a failure named for either side is left to
the CRM. A crash (`world.crash_after(n)`) follows the n-th successful write request
crmsync sends.

Where Graph differs from the memory provider by nature:
  * the sync scope of contacts is the category named after the label, on contacts of
    the default folder; `label` and `unlabel` give and take the category (the id stays);
  * custom values (`custom`, by provider key) are String extended properties in
    crmsync's property set on contacts and events, and properties of crmsync's open
    extension on tasks; Graph reads extended properties only by name, so the handle
    shows those under the keys the tenant maps and those it set itself;
  * an event's attachments (`attachments`, by file name) are file attachments, added
    after the event is made; no other native field can be set;
  * `invitations` are the attendees the calendar's events hold who are CRM users (the
    sandbox sends no mail);
  * a task keeps only the date of `start` and `due`.

This mode needs the repository's `sandbox` package on the import path; it is not part
of the installed crmsync package.
"""

from __future__ import annotations

import base64
import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crmsync import model
from crmsync.connections import Grant
from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import NotFound
from crmsync.model import Kind
from crmsync.ports import Connection, ProviderAccount, Store
from crmsync.providers.microsoft.account import MicrosoftAccount
from crmsync.providers.microsoft.calendar import GraphCalendar, to_event
from crmsync.providers.microsoft.client import GraphClient
from crmsync.providers.microsoft.contacts import XP, GraphContacts, custom_property, to_contact
from crmsync.providers.microsoft.kit import MicrosoftKit, MicrosoftSetup, resources_for
from crmsync.providers.microsoft.oauth import SCOPES as SERVICES
from crmsync.providers.microsoft.oauth import MicrosoftOAuth
from crmsync.providers.microsoft.todo import EXTENSION, OPEN_EXTENSION, GraphTasks, to_task
from crmsync.recordlog import Failure, FaultKind, Faults
from crmsync.settings import Settings
from crmsync.testing import serving
from crmsync.transforms import CustomMap

if TYPE_CHECKING:
    from crmsync.testing import SyncWorld

# The grant covers both services, so connecting mail (`record_mail`) asks for no new
# consent: contacts, calendar and To Do for the sync, messages and categories for mail.
SCOPES = ("User.Read", *SERVICES["sync"], *SERVICES["mail"])
TOKEN_SECONDS = 20 * 365 * 24 * 3600  # the world's clock may move years; grants outlive it
CLIENT_ID, SECRET = "crmsync-world", "world-secret"
REDIRECT = "http://crmsync.invalid/oauth_callback"
TIMES = ("start", "end", "all_day", "timezone")

# What crmsync's requests look like per faulted operation: HTTP methods and the paths
# below Graph's root (contacts, events, To Do tasks).
_CONTACTS = r"me/(?:contactFolders/[^/]+/)?contacts"
_EVENTS = r"me/(?:calendar|calendars/[^/]+)/events"
_TASKS = r"me/todo/lists/[^/]+/tasks"
_REQUESTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "create": (frozenset({"POST"}), (_CONTACTS, _EVENTS, _TASKS)),
    "update": (
        frozenset({"PATCH"}),
        (_CONTACTS + "/[^/]+", r"me/events/[^/]+", _TASKS + "/[^/]+"),
    ),
    "delete": (
        frozenset({"DELETE"}),
        (_CONTACTS + "/[^/]+", r"me/events/[^/]+", _TASKS + "/[^/]+"),
    ),
    "scope": (frozenset({"POST"}), (_CONTACTS,)),
    "changes": (frozenset({"GET"}), (r".*/delta",)),
}
_WRITES = ("create", "update", "delete", "scope")
# How Graph answers each injected failure: status, error code, Retry-After.
_ANSWERS: dict[FaultKind, tuple[int, str, int | None]] = {
    "transient": (503, "serviceNotAvailable", None),
    "permanent": (400, "ErrorInvalidRequest", None),
    "rate_limited": (429, "TooManyRequests", 120),
    "revoked": (401, "InvalidAuthenticationToken", None),
    "cursor_expired": (410, "syncStateNotFound", None),
}
# The CRM users of a world and their addresses (the memory CRM's directory).
DIRECTORY = {f"u{n}": f"u{n}@example.com" for n in range(1, 10)}


def _no_sleep(seconds: float) -> None:
    """Retry waits pass at once: the world's time is its own clock."""


def _request_match(op: str | None) -> tuple[frozenset[str], str]:
    """The HTTP methods and path regex of crmsync's requests for a faulted operation
    (None: any write)."""
    ops = _WRITES if op is None else (op,)
    methods = frozenset().union(*(_REQUESTS[o][0] for o in ops))
    paths = [path for o in ops for path in _REQUESTS[o][1]]
    return methods, "^(?:" + "|".join(paths) + ")$"


def _take_provider_failures(faults: Faults) -> list[Failure]:
    """The failures injected for the provider that Graph can answer, taken out of
    `faults` (failures for either side stay with the CRM)."""
    return faults.take(
        lambda f: (
            f.side == "provider" and f.error in _ANSWERS and (f.op is None or f.op in _REQUESTS)
        )
    )


def registered(
    sandbox: Any,
    base_url: str,
    ca_path: str,
    redirect_uri: str,
    client_id: str = "",
    secret: str = "",
) -> MicrosoftOAuth:
    """crmsync's app registered with a served Microsoft sandbox, and that registration
    as Microsoft's kit reads it (the sandbox's identity platform, trusted by its CA)."""
    client_id, secret = client_id or CLIENT_ID, secret or SECRET
    sandbox.add_app(client_id, secret, [redirect_uri])
    return MicrosoftOAuth(
        client_id,
        secret,
        redirect_uri,
        authority=f"{base_url}/{sandbox.tenant_id}",
        ca_path=ca_path,
    )


class GraphSandboxSide:
    """A Microsoft sandbox served over https on a loopback socket for one world, on the
    world's clock, with one user and crmsync's app registration; stopped with the
    world. `provider_defaults` are Microsoft's settings defaults, whose field map says
    which canonical fields the mailbox holds."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        faults: Faults,
        provider_defaults: Mapping[str, Any],
        email: str = "u1@example.com",
    ) -> None:
        from sandbox.microsoft.core import MicrosoftSandbox
        from sandbox.microsoft.server import serve

        self.clock = clock
        self.faults = faults
        self.email = email
        self.held: dict[str, tuple[str, ...]] = {
            kind: tuple(names) for kind, names in provider_defaults["field_map"].items()
        }
        self.sandbox = MicrosoftSandbox(clock=clock)
        self.user = self.sandbox.add_user(email)
        served = serve(self.sandbox)
        self.base_url, self.ca_path = served.base_url, served.ca_path
        self.oauth = registered(self.sandbox, self.base_url, self.ca_path, REDIRECT)
        self._stop = weakref.finalize(self, served.stop)
        serving.keep(self)
        self.graph_root = f"{self.base_url}/v1.0"
        self.token = self.sandbox.issue_token(
            email, SCOPES, client_id=CLIENT_ID, seconds=TOKEN_SECONDS
        )
        self.user_token = self.sandbox.issue_token(email, SCOPES, seconds=TOKEN_SECONDS)

    def close(self) -> None:
        """Stop the server (it also stops when the side is garbage collected)."""
        self._stop()

    def setup(self) -> MicrosoftSetup:
        """Microsoft's setup as a deployed function has it, pointed at this sandbox; the
        client makes one attempt per request, waits on no clock and tells the world of
        each write (for its crashes)."""
        options = {"attempts": 1, "sleep": _no_sleep, "after_write": self.faults.after_write}
        return MicrosoftSetup(self.oauth, self.graph_root, options)

    def kit(self) -> MicrosoftKit:
        """Microsoft's kit as the world's worker reaches Graph with it."""
        return GraphWorldKit()

    def grant(self) -> Grant:
        """The grant consent left for the world's user, good for as long as the world
        runs (its clock may move years), bound to the account's tenant and object id."""
        expires = self.clock() + timedelta(seconds=TOKEN_SECONDS)
        return Grant(
            self.token,
            None,
            expires,
            frozenset(SCOPES),
            subject=f"{self.sandbox.tenant_id}/{self.user.oid}",
            email=self.email,
        )

    def client(self, token: str) -> GraphClient:
        """A Graph client of the mailbox that trusts the sandbox's CA only."""
        from sandbox.microsoft.server import trusting_session

        return GraphClient(
            token, self.graph_root, trusting_session(self.ca_path), attempts=1, sleep=_no_sleep
        )

    def account(
        self, settings: Settings, store: Store, connection: Connection, crm: Any
    ) -> ProviderAccount:
        """The mailbox's adapters as Microsoft's kit builds them for one cycle, with
        crmsync's token; every write request is followed by the world's `after_write`."""
        from sandbox.microsoft.server import trusting_session

        client = GraphClient(
            self.token,
            self.graph_root,
            trusting_session(self.ca_path),
            attempts=1,
            sleep=_no_sleep,
            after_write=self.faults.after_write,
        )

        def claimed(task_id: str) -> bool:
            return any(link.provider_id == task_id for link in store.links(connection.id, "todo"))

        resources = resources_for(client, settings, crm.users(), claimed, self.clock())
        return MicrosoftAccount(resources)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """While one sync runs, the provider failures injected into the world are the
        sandbox's: each answers the next matching request; the untaken are given back."""
        taken = [
            (failure, self._inject(failure)) for failure in _take_provider_failures(self.faults)
        ]
        try:
            yield
        finally:
            with self.sandbox.lock:
                gone = {id(fault) for _, fault in taken}
                self.sandbox.faults = [f for f in self.sandbox.faults if id(f) not in gone]
            for failure, fault in taken:
                if fault.times > 0:
                    self.faults.fail(failure.side, failure.op, failure.error, fault.times)

    def _inject(self, failure: Failure) -> Any:
        """Graph's answer to one injected failure, armed for crmsync's next requests of
        its operation."""
        code, reason, retry_after = _ANSWERS[failure.error]
        methods, path = _request_match(failure.op)
        return self.sandbox.inject(
            code,
            code=reason,
            method=methods,
            path=path,
            times=failure.times,
            retry_after=retry_after,
        )


def _nothing_claimed(task_id: str) -> bool:
    """The user's own apps never take a task for a create."""
    return False


class GraphWorldKit(MicrosoftKit):
    """Microsoft's own kit, but a world's mail pass makes no Graph subscription on the
    user's messages, as a world's sync makes none on its records: no one receives
    notifications in a world, whose passes run when the test says."""

    def watch_mail(self, services: Any, grants: Any, connection: str, label: str) -> Any:
        """No subscription: the mailbox has no notifications here (None)."""
        return None


class OutlookMailbox:
    """The world's user's Outlook mail as they see it in Outlook, with the user's side
    of the memory mailbox (EML-1..5): mail arrives, the user tags a message with a
    category, and reads what a message carries. What the user does goes straight into
    the sandbox's mailbox (as Outlook, not crmsync, does it); crmsync's mail passes
    reach the same mailbox over https, through Microsoft's kit's OutlookMail and the
    grant consent left in the vault, as the worker does.

    Categories play the labels: `names` is the master category list (id → name), and a
    message's `label_names` are its categories. Outlook has no label for the inbox but
    a folder: a message in the Inbox shows "INBOX" too, as a message the memory mailbox
    (and Gmail) delivers carries the label INBOX. Graph lets no category be renamed, so
    `rename_label` refuses."""

    def __init__(self, side: GraphSandboxSide) -> None:
        self._sandbox = side.sandbox
        self.address = side.email

    @property
    def names(self) -> dict[str, str]:
        """Category id → name of the master category list."""
        from sandbox.microsoft.mail import categories_of

        return dict(categories_of(self._sandbox, self.address))

    def deliver(self, raw: bytes) -> str:
        """A message arrives in the Inbox: its id."""
        from sandbox.microsoft.mail import deliver

        return str(deliver(self._sandbox, self.address, raw))

    def label_named(self, name: str) -> str | None:
        return next((label for label, held in self.names.items() if held == name), None)

    def tag(self, message_id: str, name: str = "CRM/Send To CRM") -> None:
        """The user gives the message the category of this name (made in the master
        list if missing)."""
        from sandbox.microsoft.mail import add_category, message_place, set_categories

        if self.label_named(name) is None:
            add_category(self._sandbox, self.address, name)
        _, held = message_place(self._sandbox, self.address, message_id)
        if name not in held:
            set_categories(self._sandbox, self.address, message_id, [*held, name])

    def label_names(self, message_id: str) -> set[str]:
        from sandbox.microsoft.mail import message_place

        folder, held = message_place(self._sandbox, self.address, message_id)
        return {*held, *(("INBOX",) if folder == "inbox" else ())}

    def rename_label(self, old: str, new: str) -> None:
        raise ValueError("Outlook keeps a category's name for good: Graph renames none")


class GraphProviderHandle:
    """The mailbox as its user sees it in Outlook and To Do: the same methods as the
    memory ProviderHandle, records read back in canonical provider terms
    (`{"id", "version", **held fields}`, the version being Graph's etag)."""

    def __init__(self, world: SyncWorld, side: GraphSandboxSide) -> None:
        self._world = world
        self._side = side
        self._client = side.client(side.user_token)
        self._keys: dict[Kind, set[str]] = {kind: set() for kind in model.KINDS}

    # -- the user's view of each resource ---------------------------------------------------
    def _settings(self) -> Settings:
        return self._world.effective_settings()

    def _custom(self, kind: Kind) -> CustomMap:
        """Every custom value as held, by provider key: the keys the tenant maps and
        those the user set here."""
        keys = {*self._settings().custom_map(kind).keys, *self._keys[kind]}
        return CustomMap.of({key: {"provider": key} for key in sorted(keys)})

    def _contacts(self) -> GraphContacts:
        settings = self._settings()
        return GraphContacts(self._client, settings["contact_label"], self._custom("contact"))

    def _calendar(self) -> GraphCalendar:
        settings = self._settings()
        now = self._side.clock()
        window = (now - timedelta(days=3650), now + timedelta(days=3650))
        return GraphCalendar(
            self._client, settings["calendar"], DIRECTORY, window, self._custom("activity")
        )

    def _tasks(self) -> GraphTasks:
        settings = self._settings()
        return GraphTasks(
            self._client,
            settings["task_list"],
            _nothing_claimed,
            timezone=settings["timezone"],
            custom=self._custom("todo"),
        )

    def _resource(self, kind: Kind) -> Any:
        if kind == "contact":
            return self._contacts()
        if kind == "activity":
            return self._calendar()
        return self._tasks()

    def _plain(self, kind: Kind, record: SideRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"id": record.id, "version": record.version}
        fields = record.fields or {}
        held = {name: fields[name] for name in self._side.held[kind] if name in fields}
        custom = {
            name.removeprefix(model.CUSTOM): value
            for name, value in fields.items()
            if model.is_custom(name) and value is not None
        }
        extra: dict[str, Any] = {"custom": custom} if custom else {}
        if kind == "activity":
            attachments = self._attachments(record.id)
            if attachments:
                extra["attachments"] = attachments
        return {**extra, **out, **model.to_plain(held)}

    def _attachments(self, event_id: str) -> list[str]:
        listed = self._client.values(f"me/events/{event_id}/attachments", "attachments.list")
        return [str(a.get("name", "")) for a in listed]

    # -- reading -----------------------------------------------------------------------------
    def get(self, kind: Kind, record_id: str) -> dict[str, Any] | None:
        record = self._resource(kind).get(record_id)
        return None if record.fields is None else self._plain(kind, record)

    def _natives(self, kind: Kind) -> Iterator[dict[str, Any]]:
        if kind == "contact":
            return self._contacts()._everywhere()
        if kind == "activity":
            calendar = self._calendar()
            return self._client.values(f"{calendar.base}/events", "events.list")
        tasks = self._tasks()
        return self._client.values(f"me/todo/lists/{tasks.list_id()}/tasks", "tasks.list")

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        found = (self.get(kind, str(native["id"])) for native in list(self._natives(kind)))
        return [r for r in found if r is not None]

    # -- the user's edits -------------------------------------------------------------------
    def _fields(
        self, kind: Kind, given: Mapping[str, Any], current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The held fields an edit sets, normalised against the record as it is (an
        event's times go whole); as typed when they do not normalise."""
        held = self._side.held[kind]
        unknown = sorted(set(given) - set(model.FIELD_NAMES[kind]))
        if unknown:
            raise ValueError(f"a Microsoft {kind} has no field {unknown[0]!r}")
        wanted = [name for name in given if name in held]
        if kind == "activity" and set(TIMES) & set(wanted):
            wanted += [name for name in TIMES if name not in wanted]
        merged = {**current, **{k: v for k, v in given.items() if k in held}}
        try:
            values: Mapping[str, Any] = model.normalize(kind, merged)
        except model.InvalidRecord:
            values = merged
        return {name: values.get(name) for name in wanted}

    def _native(self, kind: Kind, fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """An edit's custom values (as `custom.<key>` fields) and attachments, which only
        an event holds; the keys given are remembered, to be shown."""
        allowed = {"custom", "attachments"} if kind == "activity" else {"custom"}
        extra = {k: v for k, v in fields.items() if k not in model.FIELD_NAMES[kind]}
        unknown = sorted(set(extra) - allowed)
        if unknown:
            raise ValueError(f"a Microsoft {kind} has no field {unknown[0]!r}")
        custom = dict(extra.get("custom") or {})
        self._keys[kind].update(custom)
        values = {model.CUSTOM + key: value for key, value in custom.items()}
        return values, [str(name) for name in extra.get("attachments") or ()]

    def _attach(self, event_id: str, names: list[str]) -> None:
        """The user attaches these files to the event in Outlook."""
        for name in names:
            body = {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": name,
                "contentType": "application/octet-stream",
                "contentBytes": base64.b64encode(name.encode()).decode(),
            }
            self._client.request("POST", f"me/events/{event_id}/attachments", "attach", body=body)

    def create(self, kind: Kind, fields: Mapping[str, Any]) -> str:
        """The user makes a record in Outlook or To Do; returns its id."""
        custom, attachments = self._native(kind, fields)
        given = {k: v for k, v in fields.items() if k in model.FIELD_NAMES[kind]}
        values = self._fields(kind, given, {})
        written = {k: v for k, v in CustomMap.write(self._custom(kind), custom).items() if v}
        properties = [{"id": custom_property(k), "value": v} for k, v in written.items()]
        if kind == "contact":
            body = to_contact(values)
            if properties:
                body[XP] = properties
            made = self._client.request("POST", "me/contacts", "create", body=body)
        elif kind == "activity":
            calendar = self._calendar()
            body = to_event(values, DIRECTORY)
            if properties:
                body[XP] = [*(body.get(XP) or ()), *properties]
            made = self._client.request("POST", f"{calendar.base}/events", "create", body=body)
            if values.get("recurrence"):  # the occurrences the user cancelled or moved
                calendar._apply_exceptions(str(made["id"]), values)
            self._attach(str(made["id"]), attachments)
        else:
            tasks = self._tasks()
            body = to_task(values, tasks.timezone)
            if written:
                extension = {"@odata.type": OPEN_EXTENSION, "extensionName": EXTENSION}
                body["extensions"] = [{**extension, **written}]
            made = self._client.request(
                "POST", f"me/todo/lists/{tasks.list_id()}/tasks", "create", body=body
            )
        return str(made["id"])

    def update(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> None:
        """The user edits these fields of a record (custom values: None clears one)."""
        custom, attachments = self._native(kind, fields)
        resource = self._resource(kind)
        current = resource.get(record_id)
        if current.fields is None:
            raise NotFound(f"{kind} {record_id} not found")
        given = {k: v for k, v in fields.items() if k in model.FIELD_NAMES[kind]}
        values = self._fields(kind, given, current.fields)
        if values or custom:
            write = Write("provider", "update", kind, record_id, {**values, **custom})
            resource.update(write)
        self._attach(record_id, attachments)

    def delete(self, kind: Kind, record_id: str) -> None:
        self._resource(kind).delete(Write("provider", "delete", kind, record_id))

    # -- the contact category -----------------------------------------------------------------
    def label(self, contact_id: str) -> None:
        """The user gives the contact the CRM category (its id stays)."""
        self._contacts().set_scope(Write("provider", "scope", "contact", contact_id, in_scope=True))

    def unlabel(self, contact_id: str) -> None:
        """The user takes the CRM category away (its id stays)."""
        write = Write("provider", "scope", "contact", contact_id, in_scope=False)
        self._contacts().set_scope(write)

    def put_under(self, contact_id: str, label: str) -> None:
        """The user gives the contact one of their own categories: a label an
        address-book import can pick (CON-9)."""
        contacts = GraphContacts(self._client, label, self._custom("contact"))
        contacts.set_scope(Write("provider", "scope", "contact", contact_id, in_scope=True))

    def labelled(self) -> list[str]:
        """The live contacts that carry the CRM category."""
        contacts = self._contacts()
        listed = self._client.values("me/contacts", "contacts.list")
        return sorted(str(c["id"]) for c in listed if contacts.in_scope(c))

    # -- reminders, invitations, cursors ------------------------------------------------------
    def snooze(self, kind: Kind, record_id: str, state: str = "snoozed") -> None:
        """SYN-10: the user snoozes (or with `state="dismissed"`, dismisses) the
        record's reminder in Outlook or To Do."""
        from sandbox.microsoft import events

        if kind == "activity":
            if state == "dismissed":
                events.dismiss(self._side.sandbox, self._side.email, record_id)
            else:
                events.snooze(self._side.sandbox, self._side.email, record_id)
            return
        if kind != "todo":
            raise ValueError("Outlook keeps reminders on events and tasks only")
        tasks = self._tasks()
        if state == "dismissed":
            body: dict[str, Any] = {"isReminderOn": False}
        else:
            at = self._side.clock() + timedelta(minutes=5)
            body = {
                "isReminderOn": True,
                "reminderDateTime": {
                    "dateTime": at.strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
            }
        self._client.request(
            "PATCH", f"me/todo/lists/{tasks.list_id()}/tasks/{record_id}", "reminder", body=body
        )

    @property
    def sandbox(self) -> Any:
        """The Microsoft sandbox itself, for its test helpers."""
        return self._side.sandbox

    @property
    def email(self) -> str:
        """The mailbox's address."""
        return self._side.email

    def invitations(self) -> list[tuple[str, str]]:
        """(event id, CRM user) for every attendee an event of the calendar holds who is
        a CRM user (the sandbox sends no mail, so what the events hold is all it tells)."""
        users = {email: user for user, email in DIRECTORY.items()}
        calendar = self._calendar()
        out: list[tuple[str, str]] = []
        for event in self._client.values(f"{calendar.base}/events", "events.list"):
            for attendee in event.get("attendees") or ():
                address = str((attendee.get("emailAddress") or {}).get("address", "")).lower()
                if address in users:
                    out.append((str(event["id"]), users[address]))
        return out

    def expire_cursors(self) -> None:
        """Every delta link Graph issued for the mailbox expires."""
        from sandbox.microsoft.graph import expire_delta_links

        expire_delta_links(self._side.sandbox, self._side.email)
