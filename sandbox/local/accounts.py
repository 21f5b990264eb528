"""The demo users' own apps, as the sandbox console drives them: a user's Google
Contacts, Calendar and Tasks, or their Outlook contacts, calendar and To Do, read and
edited through the sandboxes' public APIs exactly as the user's own apps would (never
through crmsync), so that every edit reaches crmsync the way a real one does: a
Calendar push, a Graph change notification, or the next poll.

Every account speaks the same small shape to the console: a record is
`{"id", "fields": {...}, "in_scope": bool}`, with the fields of the console's forms
(contact: first_name, last_name, email; activity: subject, start; todo: subject, due).
Only the first page of each listing is shown (a demo account holds a few records)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sandbox.microsoft.server import trusting_session

KINDS = ("contact", "activity", "todo")
FIELDS = {
    "contact": ("first_name", "last_name", "email"),
    "activity": ("subject", "start"),
    "todo": ("subject", "due"),
}
GOOGLE_SCOPES = tuple(
    "https://www.googleapis.com/auth/" + name for name in ("calendar", "contacts", "tasks")
)
OUTLOOK_SCOPES = ("User.Read", "Contacts.ReadWrite", "Calendars.ReadWrite", "Tasks.ReadWrite")
MEETING = timedelta(minutes=30)


class Account(Protocol):
    """One user's provider account, as their own apps see it."""

    def records(self, kind: str) -> list[dict[str, Any]]: ...
    def create(self, kind: str, fields: dict[str, str]) -> str: ...
    def update(self, kind: str, record_id: str, fields: dict[str, str]) -> None: ...
    def delete(self, kind: str, record_id: str) -> None: ...


class _Tokens:
    """An access token per account, issued by the sandbox and renewed before it ends."""

    def __init__(self, issue: Callable[[str], str]) -> None:
        self._issue = issue
        self._held: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, email: str) -> str:
        with self._lock:
            token, until = self._held.get(email, ("", 0.0))
            if time.monotonic() > until:
                token = self._issue(email)
                self._held[email] = (token, time.monotonic() + 1800)
            return token


def when(value: str) -> datetime:
    """A time the console's form gives (`2026-12-03T14:30`, in UTC) or an ISO time."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def minute(moment: datetime) -> str:
    """A time as the console shows and its form takes it: UTC, to the minute."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


class GoogleApps:
    """A user's Google Contacts, Calendar and Tasks at the Google sandbox; contacts are
    in crmsync's scope when they carry the label (contact group) `label`."""

    def __init__(self, sandbox: Any, base_url: str, email: str, label: str = "CRM") -> None:
        self.base_url = base_url
        self.email = email
        self.label = label
        self._token = _Tokens(lambda who: sandbox.issue_token(who, GOOGLE_SCOPES, seconds=3600))

    def _api(self, api: str, version: str) -> Any:
        from google.oauth2.credentials import Credentials
        from googleapiclient.discovery import build

        endpoint = self.base_url + ("/calendar/v3/" if api == "calendar" else "/")
        return build(
            api,
            version,
            credentials=Credentials(self._token(self.email)),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
            static_discovery=True,
            cache_discovery=False,
        )

    def _group(self, people: Any) -> str | None:
        groups = people.contactGroups().list(groupFields="name,groupType", pageSize=1000)
        for group in groups.execute().get("contactGroups") or ():
            if str(group.get("name", "")).casefold() == self.label.casefold():
                return str(group["resourceName"])
        return None

    def records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contact":
            api = self._api("people", "v1")
            group = self._group(api)
            listing = (
                api.people()
                .connections()
                .list(
                    resourceName="people/me",
                    personFields="names,emailAddresses,memberships",
                    pageSize=1000,
                )
            )
            return [_person(p, group) for p in listing.execute().get("connections") or ()]
        if kind == "activity":
            events = self._api("calendar", "v3").events()
            answer = events.list(calendarId="primary", maxResults=250).execute()
            return [_google_event(e) for e in answer.get("items") or () if _live_event(e)]
        tasks = self._api("tasks", "v1").tasks()
        answer = tasks.list(tasklist="@default", showCompleted=True, maxResults=100).execute()
        return [_google_task(t) for t in answer.get("items") or () if not t.get("deleted")]

    def create(self, kind: str, fields: dict[str, str]) -> str:
        if kind == "contact":
            api = self._api("people", "v1")
            body = _person_body(fields)
            group = self._group(api)
            if group is not None:
                membership = {"contactGroupMembership": {"contactGroupResourceName": group}}
                body["memberships"] = [membership]
            return str(api.people().createContact(body=body).execute()["resourceName"])
        if kind == "activity":
            events = self._api("calendar", "v3").events()
            made = events.insert(calendarId="primary", body=_google_event_body(fields)).execute()
            return str(made["id"])
        tasks = self._api("tasks", "v1").tasks()
        made = tasks.insert(tasklist="@default", body=_google_task_body(fields)).execute()
        return str(made["id"])

    def update(self, kind: str, record_id: str, fields: dict[str, str]) -> None:
        if kind == "contact":
            people = self._api("people", "v1").people()
            held = people.get(resourceName=record_id, personFields="names").execute()
            body = {**_person_body(fields), "etag": held["etag"]}
            people.updateContact(
                resourceName=record_id, updatePersonFields="names,emailAddresses", body=body
            ).execute()
        elif kind == "activity":
            events = self._api("calendar", "v3").events()
            body = _google_event_body(fields)
            events.patch(calendarId="primary", eventId=record_id, body=body).execute()
        else:
            tasks = self._api("tasks", "v1").tasks()
            body = _google_task_body(fields)
            tasks.patch(tasklist="@default", task=record_id, body=body).execute()

    def delete(self, kind: str, record_id: str) -> None:
        if kind == "contact":
            self._api("people", "v1").people().deleteContact(resourceName=record_id).execute()
        elif kind == "activity":
            events = self._api("calendar", "v3").events()
            events.delete(calendarId="primary", eventId=record_id).execute()
        else:
            self._api("tasks", "v1").tasks().delete(tasklist="@default", task=record_id).execute()


def _person(person: dict[str, Any], group: str | None) -> dict[str, Any]:
    name = (person.get("names") or [{}])[0]
    emails = person.get("emailAddresses") or [{}]
    groups = {
        m.get("contactGroupMembership", {}).get("contactGroupResourceName")
        for m in person.get("memberships") or ()
    }
    fields = {
        "first_name": name.get("givenName", ""),
        "last_name": name.get("familyName", ""),
        "email": emails[0].get("value", ""),
    }
    return {"id": person["resourceName"], "fields": fields, "in_scope": group in groups}


def _person_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "names": [{"givenName": fields.get("first_name", ""), "familyName": fields["last_name"]}]
    }
    if fields.get("email"):
        body["emailAddresses"] = [{"value": fields["email"]}]
    return body


def _live_event(event: dict[str, Any]) -> bool:
    return event.get("status") != "cancelled" and "start" in event


def _google_event(event: dict[str, Any]) -> dict[str, Any]:
    start = event["start"].get("dateTime") or event["start"].get("date", "")
    shown = minute(when(start)) if "T" in start else start
    fields = {"subject": event.get("summary", ""), "start": shown}
    return {"id": event["id"], "fields": fields, "in_scope": True}


def _google_event_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"summary": fields["subject"]}
    if fields.get("start"):
        start = when(fields["start"])
        body["start"] = {"dateTime": start.isoformat()}
        body["end"] = {"dateTime": (start + MEETING).isoformat()}
    return body


def _google_task(task: dict[str, Any]) -> dict[str, Any]:
    fields = {"subject": task.get("title", ""), "due": str(task.get("due", ""))[:10]}
    return {"id": task["id"], "fields": fields, "in_scope": True}


def _google_task_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"title": fields["subject"]}
    if fields.get("due"):
        body["due"] = fields["due"][:10] + "T00:00:00.000Z"
    return body


class OutlookApps:
    """A user's Outlook contacts, calendar and To Do at the Microsoft sandbox's Graph;
    contacts are in crmsync's scope when they carry the category `label`."""

    def __init__(
        self, sandbox: Any, graph_root: str, ca_path: str, email: str, label: str = "CRM"
    ) -> None:
        self.graph_root = graph_root
        self.ca_path = ca_path
        self.email = email
        self.label = label
        self._token = _Tokens(lambda who: sandbox.issue_token(who, OUTLOOK_SCOPES, seconds=3600))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        with trusting_session(self.ca_path) as session:
            session.headers["Authorization"] = "Bearer " + self._token(self.email)
            answer = session.request(method, f"{self.graph_root}/{path}", json=body, timeout=30)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def _tasks(self) -> str:
        lists = self._call("GET", "me/todo/lists")["value"]
        chosen = next((x for x in lists if x.get("wellknownListName") == "defaultList"), lists[0])
        return f"me/todo/lists/{chosen['id']}/tasks"

    def records(self, kind: str) -> list[dict[str, Any]]:
        if kind == "contact":
            found = self._call("GET", "me/contacts?$top=200")["value"]
            return [_outlook_contact(c, self.label) for c in found]
        if kind == "activity":
            return [_outlook_event(e) for e in self._call("GET", "me/events?$top=200")["value"]]
        return [_outlook_task(t) for t in self._call("GET", self._tasks() + "?$top=200")["value"]]

    def create(self, kind: str, fields: dict[str, str]) -> str:
        if kind == "contact":
            body = {**_outlook_contact_body(fields), "categories": [self.label]}
            return str(self._call("POST", "me/contacts", body)["id"])
        if kind == "activity":
            return str(self._call("POST", "me/events", _outlook_event_body(fields))["id"])
        return str(self._call("POST", self._tasks(), _outlook_task_body(fields))["id"])

    def update(self, kind: str, record_id: str, fields: dict[str, str]) -> None:
        if kind == "contact":
            self._call("PATCH", f"me/contacts/{record_id}", _outlook_contact_body(fields))
        elif kind == "activity":
            self._call("PATCH", f"me/events/{record_id}", _outlook_event_body(fields))
        else:
            self._call("PATCH", f"{self._tasks()}/{record_id}", _outlook_task_body(fields))

    def delete(self, kind: str, record_id: str) -> None:
        where = {"contact": "me/contacts", "activity": "me/events"}.get(kind) or self._tasks()
        self._call("DELETE", f"{where}/{record_id}")


def _outlook_contact(contact: dict[str, Any], label: str) -> dict[str, Any]:
    emails = contact.get("emailAddresses") or [{}]
    fields = {
        "first_name": contact.get("givenName") or "",
        "last_name": contact.get("surname") or "",
        "email": emails[0].get("address", ""),
    }
    in_scope = label in (contact.get("categories") or ())
    return {"id": contact["id"], "fields": fields, "in_scope": in_scope}


def _outlook_contact_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "givenName": fields.get("first_name", ""),
        "surname": fields["last_name"],
    }
    if fields.get("email"):
        body["emailAddresses"] = [{"address": fields["email"]}]
    return body


def _outlook_time(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def _outlook_event(event: dict[str, Any]) -> dict[str, Any]:
    start = (event.get("start") or {}).get("dateTime", "")
    fields = {"subject": event.get("subject") or "", "start": minute(when(start)) if start else ""}
    return {"id": event["id"], "fields": fields, "in_scope": True}


def _outlook_event_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"subject": fields["subject"]}
    if fields.get("start"):
        start = when(fields["start"])
        body["start"] = _outlook_time(start)
        body["end"] = _outlook_time(start + MEETING)
    return body


def _outlook_task(task: dict[str, Any]) -> dict[str, Any]:
    due = (task.get("dueDateTime") or {}).get("dateTime", "")
    fields = {"subject": task.get("title") or "", "due": due[:10]}
    return {"id": task["id"], "fields": fields, "in_scope": True}


def _outlook_task_body(fields: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"title": fields["subject"]}
    if fields.get("due"):
        body["dueDateTime"] = {"dateTime": fields["due"][:10] + "T00:00:00", "timeZone": "UTC"}
    return body
