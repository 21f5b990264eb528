"""The CrmConnector port over HTTP: crmsync's side of the CRM contract.

`docs/crm-contract.yaml` is the contract. This module is the only place that knows its
paths and bodies. Requests carry the tenant's bearer token and the CRM user crmsync
acts for (AUTH-5); transient answers (429, 5xx, timeouts, broken connections) are
retried with exponential backoff that honours `Retry-After`; every other answer
becomes one of crmsync's typed errors. Nothing secret or personal is logged: a log
line holds the method, the path template, the status and the time taken.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from crmsync import model
from crmsync.crm import custom
from crmsync.engine.plan import Write
from crmsync.engine.records import CrmSchema, SideRecord
from crmsync.errors import (
    Conflict,
    CrmUnauthorized,
    CursorExpired,
    NotFound,
    PermanentError,
    PermissionDenied,
    RateLimited,
    TransientError,
)
from crmsync.model import Kind
from crmsync.ports import (
    ChangePage,
    CreatesOneByOne,
    CrmUser,
    HistoryEntry,
    MailLimits,
    Person,
    WriteResult,
)

if TYPE_CHECKING:
    import requests

    from crmsync.crm.cards import Document, PersonCard

log = logging.getLogger("crmsync.crm.rest")

_RETRIED = {429, 500, 502, 503, 504}
MAX_DOCUMENT = 25 * 1024 * 1024  # CTX-1: the largest document attached to a message
_GONE = SideRecord("", "0", None)


class RestCrmConnector(CreatesOneByOne):
    """One CRM user's view of the CRM, over the contract's HTTP API.

    `group` is the contact sync group (CON-1); None is the user's own (`default`).
    `after_write` is called once each write has been answered with success (metrics,
    and fault injection in tests). `max_wait` bounds how long one request may wait
    for a `Retry-After`; a longer wait is raised as RateLimited for the cycle to
    yield instead of sleeping through its time budget.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        user: str,
        group: str | None = None,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        page_size: int = 200,
        session: requests.Session | None = None,
        after_write: Callable[[], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user = user
        self.group = group or "default"
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.page_size = page_size
        if session is None:
            import requests  # at the first connector, not at every function's cold start

            session = requests.Session()
        self.session = session
        self.after_write = after_write
        self.sleep = sleep
        self._declared: dict[str, Any] | None = None  # the /schema answer
        self._schema: CrmSchema | None = None
        self._mail_limits: MailLimits | None = None
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if user:  # the directory alone acts for no user
            self._headers["X-Crm-User"] = user

    def __repr__(self) -> str:  # never the token
        return f"RestCrmConnector({self.base_url!r}, user={self.user!r}, group={self.group!r})"

    # -- the CrmConnector port: reading ----------------------------------------------
    def _schema_answer(self) -> dict[str, Any]:
        """The CRM's /schema answer; asked once per connector (one cycle)."""
        if self._declared is None:
            self._declared = self._call("GET", "/schema", "/schema")
        return self._declared

    def schema(self) -> CrmSchema:
        """What the CRM declares; asked once per connector (one cycle)."""
        if self._schema is None:
            body = self._schema_answer()
            caps = body.get("capabilities", {})
            limits = body.get("limits", {})
            declared = body.get("custom_fields") or {}
            self._schema = CrmSchema.with_custom(
                {kind: _declarations(declared.get(kind)) for kind in model.KINDS},
                limits={kind: dict(limits.get(kind, {})) for kind in model.KINDS},
                infinite_series=bool(caps.get("infinite_series", True)),
                recurring_todos=bool(caps.get("recurring_todos", True)),
                max_recurrence_years=caps.get("max_recurrence_years"),
            )
        return self._schema

    def mail_limits(self) -> MailLimits:
        """What the CRM keeps of a history item (EML-2), from the same /schema answer as
        `schema()`; what it does not declare takes MailLimits' defaults."""
        if self._mail_limits is None:
            body = self._schema_answer()
            history = (body.get("limits") or {}).get("history") or {}
            caps = body.get("capabilities") or {}
            defaults = MailLimits()
            self._mail_limits = MailLimits(
                subject=_count(history.get("subject"), defaults.subject, least=1),
                body=_count(history.get("body"), defaults.body, least=1),
                attachment_bytes=_count(caps.get("attachment_bytes"), defaults.attachment_bytes),
            )
        return self._mail_limits

    def users(self) -> dict[str, str]:
        """The tenant's active CRM users and their e-mail addresses: the directory that
        turns activity members into provider attendees (CAL-6)."""
        body = self._call("GET", "/users", "/users")
        return {
            str(u["id"]): str(u["email"]).lower()
            for u in body.get("items", [])
            if u.get("active", True) and u.get("email")
        }

    def directory(self) -> list[CrmUser]:
        """The tenant's active CRM users with their names and addresses, in the CRM's
        order: whom a tenant admin may onboard (AUTH-1, AUTH-5)."""
        body = self._call("GET", "/users", "/users")
        return [
            CrmUser(str(u["id"]), str(u.get("name") or ""), str(u.get("email") or "").lower())
            for u in body.get("items", [])
            if u.get("active", True) and u.get("id")
        ]

    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        params: dict[str, Any] = {"limit": self.page_size, "group": self.group}
        if cursor is not None:
            params["cursor"] = cursor
        try:
            body = self._call("GET", f"/changes/{kind}", "/changes/{kind}", params=params)
        except NotFound as exc:  # a 410 on the feed: the cursor is too old
            raise CursorExpired(str(exc)) from exc
        records = [_side_record(kind, item) for item in body["items"]]
        return ChangePage(records, str(body["cursor"]), bool(body["more"]))

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        try:
            body = self._call(
                "GET",
                f"/records/{kind}/{quote(record_id, safe='')}",
                "/records/{kind}/{id}",
                params={"group": self.group},
            )
        except NotFound:
            return SideRecord(record_id, "0", None)
        return _side_record(kind, body)

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        found: list[SideRecord] = []
        for start in range(0, len(emails), 100):  # the contract takes 100 addresses a call
            params = {"email": list(emails[start : start + 100]), "group": self.group}
            body = self._call("GET", f"/records/{kind}", "/records/{kind}", params=params)
            found.extend(_side_record(kind, item) for item in body["items"])
        return found

    # -- e-mail recording (EML-2, EML-4, EML-5) -------------------------------------------
    def people(self, address: str) -> list[Person]:
        """The contacts and leads the user may see that hold `address`, in the CRM's
        order (most history first)."""
        body = self._call("GET", "/people", "/people", params={"email": address})
        return [_person(item) for item in body.get("items", [])]

    def search_people(self, text: str, limit: int) -> list[Person]:
        """EML-5: the contacts and leads the user may see whose name or an address holds
        `text`, in the CRM's order (most history first), `limit` at most. The log shows
        the path template only, never the text. PermanentError for a text or limit the
        CRM refuses (400)."""
        params = {"q": text, "limit": limit}
        body = self._call("GET", "/people", "/people", params=params)
        return [_person(item) for item in body.get("items", [])][:limit]

    def person_card(self, person: Person, recent: int = 5) -> PersonCard:
        """CTX-1: the person's card (GET /people/{kind}/{id}). NotFound when the person
        is gone or hidden from the user."""
        from crmsync.crm.cards import card_of

        path = f"/people/{quote(person.kind, safe='')}/{quote(person.id, safe='')}"
        body = self._call("GET", path, "/people/{kind}/{id}", params={"limit": recent})
        return card_of(person, body)

    def documents(self, text: str, limit: int) -> list[Document]:
        """CTX-1: GET /documents?q= (the log shows the path, never the text)."""
        from crmsync.crm.cards import document_of

        body = self._call("GET", "/documents", "/documents", params={"q": text, "limit": limit})
        return [document_of(item) for item in body.get("items", []) if "id" in item][:limit]

    def document(self, document_id: str) -> tuple[str, str, bytes]:
        """CTX-1: a document's file name, content type and content (25 MB at most)."""
        path = f"/documents/{quote(document_id, safe='')}/content"
        response = self._raw("GET", path, "/documents/{id}/content")
        disposition = response.headers.get("Content-Disposition", "")
        name = disposition.partition('filename="')[2].partition('"')[0] or document_id
        kind = response.headers.get("Content-Type") or "application/octet-stream"
        return name, kind, response.content

    def record_history(self, entry: HistoryEntry, key: str) -> tuple[str, bool]:
        """POST /history once per `key`: the item's id, and whether this call recorded
        it (201) or the CRM had recorded the key before (200, the item recorded first).
        NotFound for a record that is gone (404); PermanentError for an item the CRM
        refuses (400, 413)."""
        headers = {"Idempotency-Key": key}
        response = self._send("POST", "/history", "/history", None, _history(entry), headers)
        answer = _answer(response)
        if self.after_write is not None:
            self.after_write()
        return str(answer["id"]), response.status_code != 200

    # -- writing --------------------------------------------------------------------------
    def _fields(self, write: Write) -> dict[str, Any]:
        """A write's fields in the contract's shape; the CRM's declarations are asked
        for only when custom fields are among them (SYN-1)."""
        assert write.fields is not None
        fields = dict(write.fields)
        if any(model.is_custom(name) for name in fields):
            declared = self.schema().custom.get(write.kind, {})
            fields = custom.to_contract(fields, declared)
        return dict(model.to_json(fields))

    def create(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.key is not None
        headers = {"Idempotency-Key": write.key}
        if write.as_lead:
            body = {"fields": self._fields(write), "ref": write.ref}
            answer = self._call("POST", "/leads", "/leads", json=body, headers=headers)
        else:
            body = {"fields": self._fields(write), "ref": write.ref}
            if write.kind == "contact":
                body["group"] = self.group if write.in_scope else None
                if write.account is not None:
                    body["account"] = _account(write)
            answer = self._call(
                "POST", f"/records/{write.kind}", "/records/{kind}", json=body, headers=headers
            )
        return self._written(answer)

    def update(self, write: Write) -> WriteResult:
        assert write.fields is not None and write.target is not None
        version = write.version or self._current_version(write.kind, write.target)
        body: dict[str, Any] = {"fields": self._fields(write)}
        if write.kind == "contact":
            body["shared_address"] = write.shared_address
        answer = self._call(
            "PATCH",
            f"/records/{write.kind}/{quote(write.target, safe='')}",
            "/records/{kind}/{id}",
            json=body,
            headers={"If-Match": version},
            params={"group": self.group},
        )
        return self._written(answer)

    def delete(self, write: Write) -> None:
        assert write.target is not None
        headers = {"If-Match": write.version} if write.version else {}
        self._call(
            "DELETE",
            f"/records/{write.kind}/{quote(write.target, safe='')}",
            "/records/{kind}/{id}",
            headers=headers,
        )
        if self.after_write is not None:
            self.after_write()

    def set_scope(self, write: Write) -> WriteResult:
        assert write.target is not None
        answer = self._call(
            "PUT" if write.in_scope else "DELETE",
            f"/groups/{quote(self.group, safe='')}/members/{quote(write.target, safe='')}",
            "/groups/{group}/members/{id}",
        )
        return self._written(answer)

    def _written(self, answer: Mapping[str, Any]) -> WriteResult:
        if self.after_write is not None:
            self.after_write()
        return WriteResult(str(answer["id"]), str(answer["version"]))

    def _current_version(self, kind: Kind, record_id: str) -> str:
        """The version to update from when the link could not vouch for one: the next
        plan compared values, so the record as it is now is what the update is based on."""
        record = self.get(kind, record_id)
        if record.fields is None:
            raise NotFound(f"{kind} {record_id} is gone")
        return record.version

    # -- HTTP ---------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        template: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request, retried while the answer is transient; the JSON body or a typed
        error. `template` is what the log shows instead of the path with its ids."""
        return _answer(self._send(method, path, template, params, json, headers))

    def _raw(self, method: str, path: str, template: str) -> requests.Response:
        """One request whose answer is not JSON (a document's content): the response,
        or a typed error; PermanentError for content over MAX_DOCUMENT bytes."""
        response = self._send(method, path, template, None, None, None)
        if response.status_code >= 400:
            raise _error(response)
        if len(response.content) > MAX_DOCUMENT:
            raise PermanentError(f"the document is larger than {MAX_DOCUMENT} bytes")
        return response

    def _send(
        self,
        method: str,
        path: str,
        template: str,
        params: Mapping[str, Any] | None,
        json: Any,
        headers: Mapping[str, str] | None,
    ) -> requests.Response:
        for attempt in range(1, self.attempts + 1):
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=json,
                    headers={**self._headers, **(headers or {})},
                    timeout=self.timeout,
                )
            except (_requests().ConnectionError, _requests().Timeout) as exc:
                self._log(method, template, None, started, attempt)
                if attempt == self.attempts:
                    raise TransientError(f"CRM unreachable: {type(exc).__name__}") from exc
                self.sleep(self._delay(attempt, None))
                continue
            self._log(method, template, response.status_code, started, attempt)
            if response.status_code not in _RETRIED:
                return response
            wait = _retry_after(response)
            if attempt == self.attempts or (wait is not None and wait > self.max_wait):
                raise _error(response)
            self.sleep(self._delay(attempt, wait))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return float(min(self.backoff * 2.0 ** (attempt - 1), self.max_wait))

    def _log(
        self, method: str, template: str, status: int | None, started: float, attempt: int
    ) -> None:
        log.info(
            "crm request",
            extra={
                "method": method,
                "path": template,
                "status": status,
                "ms": round((time.monotonic() - started) * 1000, 1),
                "attempt": attempt,
            },
        )


def _requests() -> Any:
    import requests

    return requests


def _answer(response: requests.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise _error(response)
    if response.status_code == 204 or not response.content:
        return {}
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError("the CRM answered with a body that is not JSON") from exc
    if not isinstance(body, dict):
        raise TransientError("the CRM answered with JSON that is not an object")
    return body


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        return f"{body.get('error', 'error')}: {body.get('reason', '')}".strip()
    return f"HTTP {response.status_code}"


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _error(response: requests.Response) -> Exception:
    status, reason = response.status_code, _reason(response)
    if status == 401:
        return CrmUnauthorized(f"the CRM refused the tenant's credentials ({reason})")
    if status == 403:
        return PermissionDenied(reason)
    if status in (404, 410):
        return NotFound(reason)
    if status == 412:
        return Conflict(reason)
    if status == 429:
        return RateLimited(reason, _retry_after(response))
    if status >= 500:
        return TransientError(reason, _retry_after(response))
    return PermanentError(reason)


def _count(value: Any, default: int, least: int = 0) -> int:
    """A whole number the CRM declares, else `default` (absent, or not one it may say)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        return default
    return value


def _person(item: Mapping[str, Any]) -> Person:
    """The contract's Person."""
    return Person(
        kind=str(item["kind"]),
        id=str(item["id"]),
        name=str(item.get("name") or ""),
        emails=tuple(str(e).lower() for e in item.get("emails") or ()),
        history_count=int(item.get("history_count") or 0),
    )


def _history(entry: HistoryEntry) -> dict[str, Any]:
    """The contract's NewHistoryItem: stored attachments in base64, linked ones by
    their address."""
    when = entry.date if entry.date.tzinfo is not None else entry.date.replace(tzinfo=UTC)
    body: dict[str, Any] = {
        "record": {"kind": entry.record_kind, "id": entry.record_id},
        "subject": entry.subject,
        "body": entry.body,
        "date": when.isoformat(),
        "participants": [
            {"role": role, "email": address, "name": name}
            for role, address, name in entry.participants
        ],
    }
    if entry.attachments:
        body["attachments"] = [
            {
                "filename": stored.filename,
                "content_type": stored.content_type,
                "content_base64": base64.b64encode(stored.data).decode("ascii"),
            }
            for stored in entry.attachments
        ]
    if entry.links:
        body["links"] = [
            {
                "filename": linked.filename,
                "content_type": linked.content_type,
                "size": linked.size,
                "url": linked.url,
            }
            for linked in entry.links
        ]
    return body


def _account(write: Write) -> dict[str, Any]:
    assert write.account is not None
    return asdict(write.account)


def _side_record(kind: Kind, item: Mapping[str, Any]) -> SideRecord:
    """A contract Record or Tombstone as the planner sees it; fields that do not read
    as a canonical record become a per-record error (SYN-5)."""
    record_id = str(item["id"])
    version = str(item.get("version", "0"))
    modified = model.parse_instant(item.get("modified"))
    if item.get("deleted"):
        return SideRecord(record_id, version, None, modified=modified)
    error: str | None = None
    raw = item.get("fields") or {}
    try:
        fields: dict[str, Any] = model.normalize(kind, raw)
        fields.update(custom.canonical(raw.get("custom")))
    except model.InvalidRecord as exc:
        fields, error = {}, str(exc)
    return SideRecord(
        record_id,
        version,
        fields,
        modified=modified,
        in_scope=bool(item.get("in_scope", True)),
        ref=item.get("ref"),
        error=error,
    )


def _declarations(items: Any) -> tuple[model.CustomField, ...]:
    """The contract's CustomField declarations of one kind; one this version of crmsync
    cannot read (an unknown type) is left out, so it never moves."""
    found: list[model.CustomField] = []
    for item in items if isinstance(items, list) else ():
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind in model.CUSTOM_TYPES and isinstance(item.get("name"), str):
            values = tuple(str(v) for v in item.get("values") or ())
            length = item.get("max_length")
            found.append(
                model.CustomField(
                    item["name"], kind, values, length if isinstance(length, int) else None
                )
            )
    return tuple(found)
