"""SyncWorld's provider as the Google sandbox behind crmsync's Google adapters
(`SyncWorld(provider="google", provider_backend="google-sandbox")`).

The cycle talks to the Google sandbox (`sandbox/google`: Calendar, People and Tasks on
a loopback socket) through the production adapters (`GoogleCalendar`, `GoogleContacts`,
`GoogleTasks` in one `GoogleAccount`) and google-api-python-client. What the user does
in Google's own apps (`world.provider.create`, `label`, ...) goes to the same account
through a client of its own: no injected failure hits it and no crash counts it.

A mail pass (`world.sync("mail")`) reads the same account's Gmail through Google's kit
and `GmailAccount`, as the worker does, and its label writes count for a crash as the
CRM's do; `world.mailbox` (a `GmailMailbox`) is that Gmail as its user sees it. No
Gmail topic is set up, so no mailbox is watched.

Injected provider failures (`world.fail("provider", ...)`) are answered by the sandbox
over HTTP, in Google's error format, for the requests of the next sync that match
them; what that sync leaves untaken is injected again into the one after. Google
answers transient (503), permanent (400), rate_limited (429, Retry-After 120), revoked
(401) and cursor_expired (410); a failure named for either side is left to the CRM. A
crash (`world.crash_after(n)`) follows the n-th successful write request crmsync sends.

Where Google differs from the memory provider by nature:
  * an event holds no native fields but Google's own (its colour, as `color` with the
    names Google's apps show); a contact or task holds none the handle can set;
  * custom values (`custom`, by key) are a contact's userDefined entries and an event's
    shared extended properties; a task has no place for them;
  * Google refuses data it cannot hold (an unknown time zone, an end before the start):
    the handle raises the sandbox's 400 instead of storing the record;
  * Tasks has no sync tokens: `expire_cursors` expires Calendar's and People's only;
  * crmsync never makes CRM members attendees (they have no Google address), so no
    invitation reaches anyone;
  * a task keeps only the date of `due` and reads as open or completed.

This mode needs the repository's `sandbox` package on the import path; it is not part
of the installed crmsync package.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.oauth2.credentials import Credentials

from crmsync import model
from crmsync.connections import Grant
from crmsync.engine.plan import Write
from crmsync.errors import NotFound
from crmsync.model import FIELD_NAMES, Kind
from crmsync.ports import Connection, Store
from crmsync.providers.google.account import GoogleAccount
from crmsync.providers.google.calendar import (
    GoogleCalendar,
    from_event,
    shared_properties,
    to_event,
)
from crmsync.providers.google.client import GoogleClient
from crmsync.providers.google.kit import GoogleSetup
from crmsync.providers.google.oauth import SERVICES, GoogleOAuth
from crmsync.providers.google.people import (
    PERSON_FIELDS,
    GoogleContacts,
    from_person,
    to_person,
    user_defined,
    with_user_defined,
)
from crmsync.providers.google.tasks import GoogleTasks, from_task, to_task
from crmsync.recordlog import Failure, FaultKind, Faults
from crmsync.settings import Settings
from crmsync.testing import serving

if TYPE_CHECKING:
    from crmsync.testing import SyncWorld

# The grant covers both services, so connecting mail (`record_mail`) asks for no new
# consent: Calendar, People and Tasks for the sync, Gmail's labels and messages for mail.
SCOPES = (
    *("https://www.googleapis.com/auth/" + name for name in ("calendar", "contacts", "tasks")),
    *SERVICES["mail"],
)
TOKEN_SECONDS = 20 * 365 * 24 * 3600  # the world's clock may move years; grants outlive it
TIMES = ("start", "end", "all_day", "timezone")
# Event colours by the names Google's apps show (colorId 1..11).
COLORS = (
    "lavender",
    "sage",
    "grape",
    "flamingo",
    "banana",
    "tangerine",
    "peacock",
    "graphite",
    "blueberry",
    "basil",
    "tomato",
)
DRIVE = "https://drive.google.com/file/d/"  # where an attachment the user adds lives

# What crmsync's requests look like per faulted operation: HTTP methods and the paths
# below the sandbox's root URL (Calendar events, People contacts, Tasks tasks).
_EVENTS = r"calendar/v3/calendars/[^/]+/events"
_TASKS = r"tasks/v1/lists/[^/]+/tasks"
_REQUESTS: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {
    "create": (
        frozenset({"POST"}),
        (_EVENTS, r"v1/people:(createContact|batchCreateContacts)", _TASKS),
    ),
    "update": (
        frozenset({"PATCH"}),
        (_EVENTS + "/[^/]+", r"v1/people/[^/]+:updateContact", _TASKS + "/[^/]+"),
    ),
    "delete": (
        frozenset({"DELETE"}),
        (_EVENTS + "/[^/]+", r"v1/people/[^/]+:deleteContact", _TASKS + "/[^/]+"),
    ),
    "scope": (frozenset({"POST"}), (r"v1/contactGroups/[^/]+/members:modify",)),
    "changes": (frozenset({"GET"}), (_EVENTS, r"v1/people/me/connections", _TASKS)),
}
_WRITES = ("create", "update", "delete", "scope")
# How Google answers each injected failure: status, reason, Retry-After.
_ANSWERS: dict[FaultKind, tuple[int, str, int | None]] = {
    "transient": (503, "backendError", None),
    "permanent": (400, "badRequest", None),
    "rate_limited": (429, "rateLimitExceeded", 120),
    "revoked": (401, "authError", None),
    "cursor_expired": (410, "fullSyncRequired", None),
}


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
    """The failures injected for the provider that Google can answer, taken out of
    `faults` (failures for either side stay with the CRM)."""
    return faults.take(
        lambda f: (
            f.side == "provider" and f.error in _ANSWERS and (f.op is None or f.op in _REQUESTS)
        )
    )


# The CRM users of a world and their Google addresses: members of CRM activities become
# attendees of the events (CAL-6); the world's own user is u1@example.com.
DIRECTORY = {f"u{n}": f"u{n}@example.com" for n in range(1, 10)}


def tasklist_of(settings: Settings) -> str:
    """The Tasks list id of the `task_list` setting ("default": the user's default)."""
    chosen = str(settings["task_list"])
    return "@default" if chosen == "default" else chosen


class GoogleSandboxSide:
    """A Google sandbox served on a loopback socket for one world, with one account for
    the world's user; stopped with the world. `provider_defaults` are Google's settings
    defaults, whose field map says which canonical fields the account holds."""

    def __init__(
        self,
        clock: Callable[[], datetime],
        faults: Faults,
        provider_defaults: Mapping[str, Any],
        email: str = "u1@example.com",
    ) -> None:
        from sandbox.google.core import GoogleSandbox
        from sandbox.google.server import serve

        self.clock = clock
        self.faults = faults
        self.email = email
        self.held: dict[str, tuple[str, ...]] = {
            kind: tuple(names) for kind, names in provider_defaults["field_map"].items()
        }
        self.sandbox = GoogleSandbox(clock)
        self.base_url, stop = serve(self.sandbox)
        self._stop = weakref.finalize(self, stop)
        serving.keep(self)
        self.endpoints = {
            "calendar": self.base_url + "calendar/v3/",
            "people": self.base_url,
            "tasks": self.base_url,
            "gmail": self.base_url,
        }
        self.token = self.sandbox.issue_token(email, SCOPES, seconds=TOKEN_SECONDS)
        self.user_token = self.sandbox.issue_token(email, SCOPES, seconds=TOKEN_SECONDS)

    def close(self) -> None:
        """Stop the server (it also stops when the side is garbage collected)."""
        self._stop()

    def setup(self) -> GoogleSetup:
        """Google's setup as a deployed function has it, pointed at this sandbox; the
        client makes one attempt per request, waits on no clock and tells the world of
        each write (for its crashes). No Gmail topic is set up: no one receives
        notifications in a world, whose mail passes run when the test says (the kit
        then watches no mailbox, as a deployment without CRMSYNC_GMAIL_TOPIC)."""
        root = self.base_url.rstrip("/")
        oauth = GoogleOAuth(
            client_id="crmsync-world",
            client_secret="world-secret",
            redirect_uri="http://crmsync.invalid/oauth_callback",
            auth_uri=root + "/o/oauth2/auth",
            token_uri=root + "/token",
            revoke_uri=root + "/revoke",
            certs_uri=root + "/oauth2/v1/certs",
        )
        options = {"attempts": 1, "sleep": _no_sleep, "after_write": self.faults.after_write}
        return GoogleSetup(oauth, self.endpoints, options)

    def grant(self) -> Grant:
        """The grant consent left for the world's user, good for as long as the world
        runs (its clock may move years)."""
        expires = self.clock() + timedelta(seconds=TOKEN_SECONDS)
        return Grant(self.token, None, expires, frozenset(SCOPES), email=self.email)

    def client(self, token: str, after_write: Callable[[], None] | None = None) -> GoogleClient:
        """A client of the account; one attempt per request, so an injected transient
        failure reaches the cycle as it would after the client's own retries."""
        credentials = Credentials(token)  # type: ignore[no-untyped-call]
        return GoogleClient(
            credentials, self.endpoints, attempts=1, sleep=_no_sleep, after_write=after_write
        )

    def account(self, settings: Settings, store: Store, connection: Connection) -> GoogleAccount:
        """The production GoogleAccount, as a new process builds it for one cycle; every
        write request it sends is followed by the world's `after_write`."""
        client = self.client(self.token, after_write=self.faults.after_write)

        def claimed(task_id: str) -> bool:
            return any(link.provider_id == task_id for link in store.links(connection.id, "todo"))

        return GoogleAccount(
            {
                "activity": GoogleCalendar(
                    client, settings["calendar"], DIRECTORY, settings.custom_map("activity")
                ),
                "contact": GoogleContacts(
                    client, settings["contact_label"], settings.custom_map("contact")
                ),
                "todo": GoogleTasks(
                    client, tasklist_of(settings), claimed=claimed, clock=self.clock
                ),
            }
        )

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
            self.sandbox.withdraw(fault for _, fault in taken)
            for failure, fault in taken:
                if fault.times > 0:
                    self.faults.fail(failure.side, failure.op, failure.error, fault.times)

    def _inject(self, failure: Failure) -> Any:
        """Google's answer to one injected failure, armed for crmsync's next requests of
        its operation."""
        code, reason, retry_after = _ANSWERS[failure.error]
        methods, path = _request_match(failure.op)
        return self.sandbox.inject(
            code,
            reason=reason,
            method=methods,
            path=path,
            times=failure.times,
            retry_after=retry_after,
        )


def _nothing_claimed(task_id: str) -> bool:
    """The user's own apps never take a task for a create."""
    return False


class GmailMailbox:
    """The world's user's Gmail as they see it in Gmail's own app, with the user's side
    of the memory mailbox (EML-1..5): mail arrives, the user tags a message and renames
    a label, and reads the labels a message carries. What the user does goes straight
    into the sandbox's mailbox (as Gmail's app, not crmsync, does it); crmsync's mail
    passes reach the same mailbox over HTTP, through the Google kit's GmailAccount and
    the grant consent left in the vault, as the worker does.

    Labels show by name; Gmail's system labels by their ids, which are their names
    ("INBOX"). `names` holds the user's own labels only, as the memory mailbox (which
    has no system labels) does; a label crmsync makes in Gmail alone ("CRM", which
    nests its labels) is one of them."""

    def __init__(self, side: GoogleSandboxSide) -> None:
        self._sandbox = side.sandbox
        self.address = side.email

    @property
    def names(self) -> dict[str, str]:
        """Label id → name of the user's labels."""
        from sandbox.google.gmail import mailbox_of

        with self._sandbox.lock:
            held = mailbox_of(self._sandbox.add_account(self.address)).labels
            return {label.id: label.name for label in held.values() if label.type == "user"}

    def deliver(self, raw: bytes) -> str:
        """A message arrives in the inbox (read, as in the memory mailbox): its id."""
        from sandbox.google.gmail import deliver

        return str(deliver(self._sandbox, self.address, raw))

    def label_named(self, name: str) -> str | None:
        return next((label for label, held in self.names.items() if held == name), None)

    def tag(self, message_id: str, name: str = "CRM/Send To CRM") -> None:
        """The user puts the label of this name on the message (made if missing)."""
        from sandbox.google.gmail import add_label, change_labels

        label = self.label_named(name) or str(add_label(self._sandbox, self.address, name))
        change_labels(self._sandbox, self.address, message_id, add=[label])

    def label_names(self, message_id: str) -> set[str]:
        from sandbox.google.gmail import message_labels

        names = self.names
        held = message_labels(self._sandbox, self.address, message_id)
        return {names.get(label, label) for label in held}

    def rename_label(self, old: str, new: str) -> None:
        """The user renames a label in Gmail; its id stays."""
        from sandbox.google.gmail import rename_label

        label = self.label_named(old)
        assert label is not None, f"no label {old}"
        rename_label(self._sandbox, self.address, label, new)


class GoogleProviderHandle:
    """The Google account as its user sees it in Google's own apps: the same methods as
    the memory ProviderHandle, records read back in canonical provider terms
    (`{"id", "version", **held fields}`, the version being Google's etag)."""

    def __init__(self, world: SyncWorld, side: GoogleSandboxSide) -> None:
        self._world = world
        self._side = side
        self._client = side.client(side.user_token)

    # -- the user's view of each API --------------------------------------------------
    def _settings(self) -> Settings:
        return self._world.effective_settings()

    def _calendar_id(self) -> str:
        return str(self._settings()["calendar"])

    def _contacts(self) -> GoogleContacts:
        return GoogleContacts(self._client, label=self._settings()["contact_label"])

    def _tasks(self) -> GoogleTasks:
        return GoogleTasks(
            self._client,
            tasklist_of(self._settings()),
            claimed=_nothing_claimed,
            clock=self._side.clock,
        )

    def _service(self, api: str) -> Any:
        return self._client.service(api, "v3" if api == "calendar" else "v1")

    def _run(self, request: Any, what: str) -> Any:
        return self._client.execute(request, what)

    def _pages(self, list_call: Callable[..., Any], items: str, **params: Any) -> Iterator[Any]:
        """Every item of a paged listing."""
        token: str | None = None
        while True:
            extra = {"pageToken": token} if token else {}
            answer = self._run(list_call(**params, **extra), "listing")
            yield from answer.get(items) or ()
            token = answer.get("nextPageToken")
            if not token:
                return

    # -- reading ------------------------------------------------------------------------
    def _native(self, kind: Kind, record_id: str) -> dict[str, Any] | None:
        """The record as Google holds it, or None when it is gone."""
        try:
            if kind == "activity":
                events = self._service("calendar").events()
                found = self._run(
                    events.get(calendarId=self._calendar_id(), eventId=record_id), "event"
                )
                return None if found.get("status") == "cancelled" else dict(found)
            if kind == "contact":
                people = self._service("people").people()
                request = people.get(resourceName=record_id, personFields=PERSON_FIELDS)
                return dict(self._run(request, "person"))
            tasks = self._service("tasks").tasks()
            found = self._run(
                tasks.get(tasklist=tasklist_of(self._settings()), task=record_id), "task"
            )
            return None if found.get("deleted") else dict(found)
        except NotFound:
            return None

    def _natives(self, kind: Kind) -> Iterator[dict[str, Any]]:
        """Every live record of the kind as Google holds it."""
        if kind == "activity":
            events = self._service("calendar").events()
            listed = self._pages(
                events.list, "items", calendarId=self._calendar_id(), maxResults=2500
            )
            return (e for e in listed if not e.get("recurringEventId"))
        if kind == "contact":
            connections = self._service("people").people().connections()
            return self._pages(
                connections.list,
                "connections",
                resourceName="people/me",
                personFields=PERSON_FIELDS,
                pageSize=1000,
            )
        tasks = self._service("tasks").tasks()
        return self._pages(
            tasks.list,
            "items",
            tasklist=tasklist_of(self._settings()),
            maxResults=100,
            showCompleted=True,
            showHidden=True,
        )

    def _plain(self, kind: Kind, native: Mapping[str, Any]) -> dict[str, Any]:
        """A record in canonical provider terms; one crmsync cannot read, as Google
        holds it."""
        record_id = native["resourceName"] if kind == "contact" else native["id"]
        out: dict[str, Any] = {"id": str(record_id), "version": str(native.get("etag", ""))}
        raw = _from_native(kind, native)
        try:
            fields = model.normalize(kind, raw)
        except model.InvalidRecord:
            return {**out, **raw}
        held = {name: fields[name] for name in self._side.held[kind]}
        return {**_native_extra(kind, native), **out, **model.to_plain(held)}

    def get(self, kind: Kind, record_id: str) -> dict[str, Any] | None:
        native = self._native(kind, record_id)
        return None if native is None else self._plain(kind, native)

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        return [self._plain(kind, native) for native in self._natives(kind)]

    # -- the user's edits -------------------------------------------------------------------
    def _fields(
        self, kind: Kind, given: Mapping[str, Any], current: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The held fields an edit sets, normalised against the record as it is (an
        event's times go whole); as typed when they do not normalise, for Google to
        judge."""
        held = self._side.held[kind]
        wanted = [name for name in given if name in held]
        if kind == "activity" and set(TIMES) & set(wanted):
            wanted += [name for name in TIMES if name not in wanted]
        merged = {**current, **{k: v for k, v in given.items() if k in held}}
        try:
            values: Mapping[str, Any] = model.normalize(kind, merged)
        except model.InvalidRecord:
            values = merged
        return {name: values.get(name) for name in wanted}

    def _current(self, kind: Kind, record_id: str) -> dict[str, Any]:
        native = self._native(kind, record_id)
        if native is None:
            raise NotFound(f"{kind} {record_id} not found")
        raw = _from_native(kind, native)
        try:
            return model.normalize(kind, raw)
        except model.InvalidRecord:
            return raw

    def create(self, kind: Kind, fields: Mapping[str, Any]) -> str:
        """The user makes a record in Google's apps; returns its id."""
        extra = _native_fields(kind, fields)
        values = self._fields(kind, fields, {})
        if kind == "activity":
            events = self._service("calendar").events()
            body = _with_native(to_event(values), extra, creating=True)
            request = events.insert(
                calendarId=self._calendar_id(), body=body, supportsAttachments=True
            )
            return str(self._run(request, "insert event")["id"])
        if kind == "contact":
            people = self._service("people").people()
            body = _with_native(dict(to_person(values)), extra, creating=True)
            request = people.createContact(body=body, personFields="metadata")
            return str(self._run(request, "create contact")["resourceName"])
        body = {k: v for k, v in to_task(values).items() if v is not None}
        tasks = self._service("tasks").tasks()
        request = tasks.insert(tasklist=tasklist_of(self._settings()), body=body)
        return str(self._run(request, "insert task")["id"])

    def update(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> None:
        """The user edits these fields of a record in Google's apps."""
        extra = _native_fields(kind, fields)
        values = self._fields(kind, fields, self._current(kind, record_id))
        if kind == "activity":
            events = self._service("calendar").events()
            body = _with_native(to_event(values), extra, creating=False)
            request = events.patch(
                calendarId=self._calendar_id(),
                eventId=record_id,
                body=body,
                supportsAttachments=True,
            )
            self._run(request, "patch event")
            return
        if kind == "contact" and extra:
            self._edit_user_defined(record_id, extra["userDefined"])
        write = Write("provider", "update", kind, record_id, values)
        if kind == "contact":
            self._contacts().update(write)
        else:
            self._tasks().update(write)

    def _edit_user_defined(self, person_id: str, entries: list[dict[str, Any]]) -> None:
        """The user edits a contact's custom entries: those given change, the others
        stay (entries with no value are removed)."""
        people = self._service("people").people()
        current = self._run(
            people.get(resourceName=person_id, personFields=PERSON_FIELDS), "person"
        )
        values = {str(e["key"]): e.get("value") for e in entries}
        body = {
            "etag": current["etag"],
            "userDefined": with_user_defined(current.get("userDefined") or (), values),
        }
        request = people.updateContact(
            resourceName=person_id, updatePersonFields="userDefined", body=body
        )
        self._run(request, "update contact")

    def delete(self, kind: Kind, record_id: str) -> None:
        if kind == "activity":
            events = self._service("calendar").events()
            self._run(events.delete(calendarId=self._calendar_id(), eventId=record_id), "delete")
        elif kind == "contact":
            people = self._service("people").people()
            self._run(people.deleteContact(resourceName=record_id), "delete contact")
        else:
            tasks = self._service("tasks").tasks()
            request = tasks.delete(tasklist=tasklist_of(self._settings()), task=record_id)
            self._run(request, "delete task")

    # -- the contact label ------------------------------------------------------------------
    def snooze(self, kind: Kind, record_id: str, state: str = "snoozed") -> None:
        """SYN-10: the user changes the event's reminders in Google Calendar (Google has
        no snooze of its own; changing a reminder moves the event's etag and `updated`
        as a snooze does elsewhere). Only events have reminders at Google."""
        if kind != "activity":
            raise ValueError("Google keeps reminders on events only")
        minutes = 5 + len(state) % 20
        body = {
            "reminders": {
                "useDefault": False,
                "overrides": [{"method": "popup", "minutes": minutes}],
            }
        }
        events = self._service("calendar").events()
        request = events.patch(calendarId=self._calendar_id(), eventId=record_id, body=body)
        self._run(request, "reminder")

    def label(self, contact_id: str) -> None:
        """The user puts the contact under the label (its group is made if needed)."""
        self._contacts().set_scope(Write("provider", "scope", "contact", contact_id, in_scope=True))

    def unlabel(self, contact_id: str) -> None:
        """The user takes the label off (the contact stays in My Contacts)."""
        self._contacts().set_scope(
            Write("provider", "scope", "contact", contact_id, in_scope=False)
        )

    def put_under(self, contact_id: str, label: str) -> None:
        """The user puts the contact under one of their own labels (its group is made
        if needed): a label an address-book import can pick (CON-9)."""
        contacts = GoogleContacts(self._client, label=label)
        contacts.set_scope(Write("provider", "scope", "contact", contact_id, in_scope=True))

    def _label_group(self) -> str | None:
        wanted = str(self._settings()["contact_label"]).casefold()
        groups = self._service("people").contactGroups()
        for group in self._pages(groups.list, "contactGroups", groupFields="name,groupType"):
            user_group = group.get("groupType") == "USER_CONTACT_GROUP"
            if user_group and str(group.get("name", "")).casefold() == wanted:
                return str(group["resourceName"])
        return None

    def labelled(self) -> list[str]:
        """The live contacts under the label."""
        group = self._label_group()
        if group is None:
            return []
        groups = self._service("people").contactGroups()
        found = self._run(groups.get(resourceName=group, maxMembers=100000), "label group")
        return sorted(str(name) for name in found.get("memberResourceNames") or ())

    # -- what only Google sees ----------------------------------------------------------------
    @property
    def sandbox(self) -> Any:
        """The Google sandbox itself, for its test helpers (stored events, sent mail)."""
        return self._side.sandbox

    @property
    def email(self) -> str:
        """The Google account's address."""
        return self._side.email

    def invitations(self) -> list[tuple[str, str]]:
        """(event id, guest) for every guest a write made Google e-mail."""
        from sandbox.google.calendar import sent_updates

        sent = sent_updates(self._side.sandbox, self._side.email)
        users = {email: user for user, email in DIRECTORY.items()}
        return [
            (str(s["eventId"]), users.get(str(guest), str(guest)))
            for s in sent
            for guest in s["notified"]
        ]

    def expire_cursors(self) -> None:
        """Calendar's and People's sync tokens expire; Tasks has none (its cursor is
        crmsync's own `updatedMin`), so nothing of it can."""
        from sandbox.google import calendar, people

        calendar.expire_sync_tokens(self._side.sandbox, self._side.email)
        people.expire_sync_tokens(self._side.sandbox, self._side.email)


def _from_native(kind: Kind, native: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical fields of a record as Google holds it, not yet normalised."""
    if kind == "activity":
        return from_event(native)
    if kind == "contact":
        return from_person(native)
    return from_task(native)


def _native_fields(kind: Kind, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The native Google fields an edit sets besides canonical ones: an event's colour
    (by name) and attachments (by file name, as Drive files); custom values by key, as
    a contact's userDefined entries and an event's shared extended properties (a
    patch sets those it names; None removes one). Anything else has no place on
    Google."""
    extra = {k: v for k, v in fields.items() if k not in FIELD_NAMES[kind]}
    allowed = {"activity": {"color", "attachments", "custom"}, "contact": {"custom"}}
    unknown = sorted(set(extra) - allowed.get(kind, set()))
    if unknown:
        raise ValueError(f"a Google {kind} has no field {unknown[0]!r}")
    native: dict[str, Any] = {}
    custom = dict(extra.get("custom") or {})
    if custom and kind == "contact":
        native["userDefined"] = [{"key": k, "value": v} for k, v in custom.items()]
    elif custom:
        native["extendedProperties"] = {"shared": custom}
    if "color" in extra:
        color = extra["color"]
        native["colorId"] = None if color is None else str(COLORS.index(color) + 1)
    if "attachments" in extra:
        native["attachments"] = [
            {"fileUrl": DRIVE + name, "title": name} for name in extra["attachments"] or ()
        ]
    return native


def _with_native(
    body: dict[str, Any], native: Mapping[str, Any], *, creating: bool
) -> dict[str, Any]:
    """A request body with the native fields added; extended properties merge with
    those the canonical fields set. A new record gets no custom entry without a value."""
    out = {**body, **native}
    if "extendedProperties" in native:
        shared = dict(native["extendedProperties"]["shared"])
        if creating:
            shared = {k: v for k, v in shared.items() if v is not None}
        out["extendedProperties"] = {**(body.get("extendedProperties") or {}), "shared": shared}
    if "userDefined" in native and creating:
        out["userDefined"] = [e for e in native["userDefined"] if e["value"] is not None]
    return out


def _native_extra(kind: Kind, native: Mapping[str, Any]) -> dict[str, Any]:
    """The native fields besides canonical ones: custom values by key, and the ones the
    user set that crmsync leaves alone (an event's colour and attachments)."""
    extra: dict[str, Any] = {}
    custom: dict[str, str] = {}
    if kind == "contact":
        custom = user_defined(native)
    elif kind == "activity":
        custom = shared_properties(native)
    if custom:
        extra["custom"] = custom
    if kind != "activity":
        return extra
    if native.get("colorId"):
        extra["color"] = COLORS[int(native["colorId"]) - 1]
    if native.get("attachments"):
        extra["attachments"] = [str(a.get("title", "")) for a in native["attachments"]]
    return extra
