"""The CRM contract over HTTP, as a WSGI application: every path it describes.

A request is authenticated by its bearer token, which names the tenant; paths about
records act for the CRM user in `X-Crm-User` and answer as that user sees the CRM
(AUTH-5). Each request runs as one database transaction, so a refused request (a 4xx,
an injected failure) writes nothing. The log holds the method, the path template, the
status and the time taken: never a token, a query string or a body.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as day_time
from typing import Any

from dateutil.rrule import rrulestr
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from crmsync import model
from crmsync.errors import (
    CrmUnauthorized,
    CursorExpired,
    GrantRevoked,
    PermanentError,
    RateLimited,
    TransientError,
)
from crmsync.recordlog import Faults
from sandbox.crm import validation
from sandbox.crm.database import (
    Attachment,
    CrmDatabase,
    HistoryLimits,
    HistoryLink,
    StoredRecord,
    User,
)
from sandbox.crm.links import record_url
from sandbox.crm.records import as_lead, as_record, as_tombstone, canonical, held, model_kind
from sandbox.crm.validation import Check, Invalid
from sandbox.crm.visibility import may_see

PREFIX = "/api/crmsync/v1"
MAX_BODY = 1024 * 1024
# A history item carries its stored attachments in base64: room for a whole message of
# 25 MiB (what mail providers send at most) and its text.
MAX_HISTORY_BODY = 40 * 1024 * 1024
DEFAULT_PAGE = 100
PEOPLE_PAGE, PEOPLE_MOST = 20, 50  # GET /people's default and largest limit (EML-5)
RECENT_PAGE, RECENT_MOST = 5, 20  # GET /people/{kind}/{id}: the history items it shows
DOCUMENTS_PAGE, DOCUMENTS_MOST = 20, 50  # GET /documents' default and largest limit
RECORD_KINDS = ("contact", "activity", "todo")
DEFAULT_GROUP = "default"

_DIGITS = re.compile(r"[0-9]+")
_RRULE_END = re.compile(r"(?:^|;)(?:COUNT|UNTIL)=", re.IGNORECASE)

log = logging.getLogger("sandbox.crm")

# path, method, handler, whether the path acts for a user (X-Crm-User)
ROUTES: tuple[tuple[str, str, str, bool], ...] = (
    ("/schema", "GET", "get_schema", False),
    ("/users", "GET", "list_users", False),
    ("/users/<user_id>", "GET", "get_user", False),
    ("/records/<kind>", "GET", "find_records", True),
    ("/records/<kind>", "POST", "create_record", True),
    ("/records/<kind>/<record_id>", "GET", "get_record", True),
    ("/records/<kind>/<record_id>", "PATCH", "update_record", True),
    ("/records/<kind>/<record_id>", "DELETE", "delete_record", True),
    ("/changes/<kind>", "GET", "list_changes", True),
    ("/groups/<group>/members", "GET", "list_members", True),
    ("/groups/<group>/members/<contact_id>", "PUT", "add_member", True),
    ("/groups/<group>/members/<contact_id>", "DELETE", "remove_member", True),
    ("/accounts", "GET", "find_accounts", True),
    ("/accounts", "POST", "create_account", True),
    ("/leads", "POST", "create_lead", True),
    ("/people", "GET", "find_people", True),
    ("/people/<kind>/<record_id>", "GET", "get_person", True),
    ("/documents", "GET", "find_documents", True),
    ("/documents/<document_id>/content", "GET", "get_document", True),
    ("/history", "POST", "record_history", True),
)
ACTS_FOR_USER = {handler: acts for _, _, handler, acts in ROUTES}


class ApiError(Exception):
    """An answer other than success: status, stable code, and a reason for a human."""

    def __init__(
        self, status: int, error: str, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = dict(headers or {})


def bad_request(reason: str) -> ApiError:
    return ApiError(400, "bad_request", reason)


@dataclass(frozen=True)
class Call:
    """One authenticated request: the tenant its token names and the acting user."""

    request: Request
    tenant: str
    user: str


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps(payload, ensure_ascii=False)
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def error_response(error: ApiError) -> Response:
    payload = {"error": error.error, "reason": error.reason}
    return json_response(payload, error.status, error.headers)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _read_limited(request: Request, limit: int) -> bytes:
    """The body, reading one byte past the limit at most (a chunked body has no length)."""
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = request.stream.read(min(64 * 1024, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return b"".join(chunks)


def read_json(request: Request, check: Check, limit: int = MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object of the shape `check` wants; 400 or 413 otherwise."""
    data = _read_limited(request, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("the body is not valid UTF-8") from exc
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise bad_request("the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise bad_request("the body must be a JSON object")
    try:  # an escaped lone surrogate parses as JSON but is no text that can be stored
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad_request("the body holds an escape that is not a character") from exc
    try:
        check(value, "body")
    except Invalid as exc:
        raise bad_request(str(exc)) from exc
    return value


def _checked(value: Any, check: Check, where: str) -> None:
    try:
        check(value, where)
    except Invalid as exc:
        raise bad_request(str(exc)) from exc


def _strip_etag(value: str) -> str:
    """If-Match as the contract sends it (the bare version) or as an HTTP entity tag."""
    tag = value.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    return tag


def endless(recurrence: str) -> bool:
    """Whether an RRULE text repeats without a COUNT or an UNTIL (CAL-9)."""
    for line in recurrence.splitlines():
        rule = line.split(":", 1)[1] if line.upper().startswith("RRULE:") else line
        if "FREQ=" in rule.upper() and not _RRULE_END.search(rule):
            return True
    return False


def runs_past(recurrence: str, start: date | datetime, years: int) -> bool:
    """Whether a series has an occurrence more than `years` after its start."""
    first = start if isinstance(start, datetime) else datetime.combine(start, day_time())
    limit = first + timedelta(days=round(365.25 * years) + 1)
    try:
        rule = rrulestr(recurrence, dtstart=first, forceset=True)
        return rule.after(limit) is not None
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_field", "recurrence is not a valid RRULE") from exc


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "email": user.email,
        "timezone": user.timezone,
        "rep_code": user.rep_code,
        "active": user.active,
    }


def _declaration(field: model.CustomField) -> dict[str, Any]:
    """The contract's CustomField."""
    out: dict[str, Any] = {"name": field.name, "type": field.type}
    if field.values:
        out["values"] = list(field.values)
    if field.max_length is not None:
        out["max_length"] = field.max_length
    return out


def _history_json(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "record": item["record"],
        "subject": item["subject"],
        "date": item["date"],
        "attachments": len(item["attachments"]),
        "links": len(item["links"]),
    }


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _person_name(fields: Mapping[str, Any]) -> str:
    name = " ".join(part for part in (fields["first_name"], fields["last_name"]) if part)
    return name or str(fields["company"])


def _holds(person: Mapping[str, Any], needle: str) -> bool:
    """EML-5: whether a Person's name or one of its addresses holds `needle` (casefolded)."""
    texts = (person["name"], *person["emails"])
    return any(needle in str(text).casefold() for text in texts)


class Api:
    """The WSGI application of the contract over one database."""

    def __init__(self, database: CrmDatabase, faults: Faults | None = None) -> None:
        self.db = database
        self.faults = faults
        rules = [Rule(PREFIX + path, methods=[m], endpoint=h) for path, m, h, _ in ROUTES]
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        started = time.monotonic()
        response, template = self._respond(request)
        elapsed = (time.monotonic() - started) * 1000
        log.info("%s %s %s %.1fms", request.method, template, response.status_code, elapsed)
        return response(environ, start_response)

    def _respond(self, request: Request) -> tuple[Response, str]:
        template = "-"
        try:
            tenant = self._tenant(request)
            adapter = self.url_map.bind_to_environ(request.environ)
            rule, args = adapter.match(return_rule=True)
            template = rule.rule.removeprefix(PREFIX)
            handler = str(rule.endpoint)
            user = self._acting_user(request, tenant) if ACTS_FOR_USER[handler] else ""
            response: Response = getattr(self, handler)(Call(request, tenant, user), **args)
            return response, template
        except ApiError as exc:
            return error_response(exc), template
        except MethodNotAllowed as exc:
            allowed = {"Allow": ", ".join(sorted(exc.valid_methods or ()))}
            error = ApiError(405, "method_not_allowed", "this path has no such method", allowed)
            return error_response(error), template
        except HTTPException:  # routing found no path of the contract
            error = ApiError(404, "not_found", "the contract has no such path")
            return error_response(error), template
        except Exception as exc:
            # where it failed, not the message: messages may quote a request's data
            frames = traceback.extract_tb(exc.__traceback__)
            where = " < ".join(f"{f.name}:{f.lineno}" for f in reversed(frames[-4:]))
            log.error("internal error %s at %s", type(exc).__name__, where)
            failure = ApiError(500, "internal", "the CRM failed to answer")
            return error_response(failure), template

    # -- who is asking --------------------------------------------------------------------
    def _tenant(self, request: Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "a bearer token is required", challenge)
        grant = self.db.grant(token.strip())
        if grant is None:
            raise ApiError(401, "unauthorized", "the token is not known", challenge)
        if grant.expires_at is not None and grant.expires_at <= self.db.now():
            expired = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            raise ApiError(401, "token_expired", "the token has expired", expired)
        return grant.tenant

    def _acting_user(self, request: Request, tenant: str) -> str:
        user_id = request.headers.get("X-Crm-User")
        if user_id is None:
            raise bad_request("X-Crm-User is required: the CRM user to act for")
        _checked(user_id, validation.ID, "X-Crm-User")
        user = self.db.user(tenant, user_id)
        if user is None or not user.active:
            raise ApiError(403, "forbidden", "X-Crm-User is not an active user of this tenant")
        return user_id

    # -- parameters -----------------------------------------------------------------------
    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in RECORD_KINDS:
            raise bad_request(f"kind must be one of {', '.join(RECORD_KINDS)}")
        return kind

    @staticmethod
    def _group(call: Call, group: str | None) -> str:
        """A group id; `default` (or none) is the acting user's own group (CON-1)."""
        if group is None or group == DEFAULT_GROUP:
            return call.user
        _checked(group, validation.ID, "group")
        return group

    def _scope_group(self, call: Call) -> str:
        return self._group(call, call.request.args.get("group"))

    @staticmethod
    def _idempotency_key(request: Request) -> str:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            raise bad_request("Idempotency-Key is required on a create")
        _checked(key, validation.IDEMPOTENCY_KEY, "Idempotency-Key")
        return key

    @staticmethod
    def _if_match(request: Request, *, required: bool) -> str | None:
        value = request.headers.get("If-Match")
        if value is None:
            if required:
                raise bad_request("If-Match is required: the version the change is based on")
            return None
        _checked(value, validation.VERSION, "If-Match")
        return _strip_etag(value)

    @staticmethod
    def _limit(request: Request, default: int = DEFAULT_PAGE, most: int = 1000) -> int:
        value = request.args.get("limit")
        if value is None:
            return default
        if not _DIGITS.fullmatch(value) or not 1 <= int(value) <= most:
            raise bad_request(f"limit must be a whole number from 1 to {most}")
        return int(value)

    # -- records as the user sees them ----------------------------------------------------
    def _visible(self, call: Call, kind: str, record_id: str) -> StoredRecord:
        """The live record if the acting user may see it; 404 alike for every other case,
        so that nobody learns of records they may not see."""
        record = self.db.record(call.tenant, record_id)
        if (
            record is None
            or record.deleted
            or record.kind != kind
            or not may_see(kind, record.raw, record.owner, call.user)
        ):
            raise ApiError(404, "not_found", f"no {kind} {record_id} for this user")
        return record

    def _present(
        self,
        call: Call,
        record: StoredRecord,
        members: set[str],
        custom: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """The Record as the user sees it; `custom`, the kind's declared custom field
        names, when the caller already has them."""
        in_scope = record.kind != "contact" or record.id in members
        if custom is None:
            custom = self._custom_names(call.tenant, record.kind)
        return as_record(record, held(self.db, call.tenant, record), in_scope, custom)

    def _custom_names(self, tenant: str, kind: str) -> list[str]:
        return list(self.db.custom_fields(tenant).get(model_kind(kind), {}))

    def _answer(self, call: Call, record: StoredRecord, group: str, status: int = 200) -> Response:
        payload = self._present(call, record, self.db.members(call.tenant, group))
        return json_response(payload, status, {"ETag": f'"{record.version}"'})

    @staticmethod
    def _check_version(record: StoredRecord, expected: str | None) -> None:
        if expected is not None and expected not in ("*", record.version):
            raise ApiError(
                412, "precondition_failed", "the record changed since the version in If-Match"
            )

    def _before_write(self, op: str) -> None:
        """The injected failure for this write, if any, as a CRM would answer it."""
        faults = self.faults
        if faults is not None:
            _answer_fault(lambda: faults.before_write("crm", op), "write")

    def _before_read(self, op: str) -> None:
        """The injected failure for this read (a change feed, the users), if any."""
        faults = self.faults
        if faults is not None:
            _answer_fault(lambda: faults.before_read("crm", op), "read")

    def _accept(
        self, tenant: str, kind: str, raw: Mapping[str, Any], changed: Iterable[str]
    ) -> dict[str, Any]:
        """The canonical fields the CRM will store, or 422: values the model refuses, text
        over a declared limit (SYN-3), series and to-dos the CRM cannot hold."""
        try:
            fields = model.normalize(model_kind(kind), raw)
        except (ValueError, TypeError, AttributeError) as exc:
            # InvalidRecord, or stored data of a shape the model does not expect at all
            raise ApiError(422, "invalid_field", str(exc)) from exc
        names = list(changed)
        limits = self.db.limits(tenant).get(model_kind(kind), {})
        for name in names:
            limit, value = limits.get(name), fields.get(name)
            if limit is not None and isinstance(value, str) and len(value) > limit:
                raise ApiError(
                    422, "field_too_long", f"{kind}.{name} is longer than {limit} characters"
                )
        self._check_series(tenant, kind, fields, names)
        return fields

    def _custom(
        self, tenant: str, kind: str, stored: Any, given: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """A record's custom values with those given set (null: none any more), or 422
        naming a custom field that is not declared or a value not of its type (SYN-1)."""
        held = dict(stored) if isinstance(stored, dict) else {}
        if not given:
            return held
        declared = self.db.custom_fields(tenant).get(model_kind(kind), {})
        for name, value in given.items():
            problem = model.custom_problem(declared.get(name), name, value)
            if problem is not None:
                error = "invalid_field" if name in declared else "unknown_custom_field"
                raise ApiError(422, error, f"{model_kind(kind)}.{problem}")
        return model.merge_custom(held, given)

    def _check_series(
        self, tenant: str, kind: str, fields: Mapping[str, Any], changed: list[str]
    ) -> None:
        """What the tenant declares in its capabilities it holds to (CAL-9, TSK-3)."""
        recurrence = fields.get("recurrence")
        if not recurrence or not {"recurrence", "start"} & set(changed):
            return
        caps = self.db.capabilities(tenant)
        if kind == "todo" and not caps.recurring_todos:
            raise ApiError(422, "invalid_field", "to-dos of this CRM do not repeat")
        if kind != "activity":
            return
        if not caps.infinite_series and endless(recurrence):
            raise ApiError(422, "invalid_field", "this CRM holds no series without an end")
        years = caps.max_recurrence_years
        if years is not None and runs_past(recurrence, fields["start"], years):
            raise ApiError(422, "invalid_field", f"this CRM holds series of {years} years at most")

    # -- schema and users -----------------------------------------------------------------
    def get_schema(self, call: Call) -> Response:
        caps = self.db.capabilities(call.tenant)
        history = self.db.history_limits(call.tenant)
        return json_response(
            {
                "limits": {
                    **self.db.limits(call.tenant),
                    "history": {"subject": history.subject, "body": history.body},
                },
                "capabilities": {
                    "infinite_series": caps.infinite_series,
                    "recurring_todos": caps.recurring_todos,
                    "max_recurrence_years": caps.max_recurrence_years,
                    "leads": caps.leads,
                    "attachment_bytes": history.attachment_bytes,
                },
                "custom_fields": {
                    kind: [_declaration(f) for f in fields.values()]
                    for kind, fields in self.db.custom_fields(call.tenant).items()
                },
            }
        )

    def list_users(self, call: Call) -> Response:
        self._before_read("users")
        return json_response({"items": [_user_json(u) for u in self.db.users(call.tenant)]})

    def get_user(self, call: Call, user_id: str) -> Response:
        user = self.db.user(call.tenant, user_id)
        if user is None:
            raise ApiError(404, "not_found", "no such user")
        return json_response(_user_json(user))

    # -- records --------------------------------------------------------------------------
    def find_records(self, call: Call, kind: str) -> Response:
        kind = self._kind(kind)
        emails = call.request.args.getlist("email")
        _checked(emails, validation.array(validation.EMAIL, min_items=1, max_items=100), "email")
        wanted = {model.normalize_email(e) for e in emails}
        group = self._scope_group(call)
        items = []
        with self.db.transaction():
            members = self.db.members(call.tenant, group)
            custom = self._custom_names(call.tenant, kind)
            for record in self.db.records(call.tenant, kind):
                if not may_see(kind, record.raw, record.owner, call.user):
                    continue
                fields = canonical(kind, held(self.db, call.tenant, record))
                if fields is not None and wanted.intersection(fields.get("emails") or ()):
                    items.append(self._present(call, record, members, custom))
        return json_response({"items": items})

    def create_record(self, call: Call, kind: str) -> Response:
        kind = self._kind(kind)
        key = self._idempotency_key(call.request)
        body = read_json(call.request, validation.create_record(kind))
        if kind != "contact" and (body.get("group") or body.get("account")):
            raise bad_request("group and account are given for contacts only")
        into = self._group(call, body["group"]) if body.get("group") else None
        scope = into or self._scope_group(call)
        scope_key = f"record:{kind}"
        with self.db.transaction():
            earlier = self.db.remembered(call.tenant, scope_key, key)
            if earlier is not None:
                return self._replayed(call, earlier, scope)
            fields = self._accept(
                call.tenant, kind, body["fields"], model.FIELD_NAMES[model_kind(kind)]
            )
            custom = self._custom(call.tenant, kind, None, body["fields"].get("custom"))
            self._before_write("create")
            account = (
                self._account_for(call.tenant, body["account"]) if body.get("account") else None
            )
            record = self.db.create_record(
                call.tenant,
                kind,
                {**model.to_json(fields), "custom": custom},
                owner=call.user,
                ref=body.get("ref"),
                account_id=account["id"] if account else None,
            )
            if into is not None:  # joining with the create is part of that one change
                self.db.set_member(call.tenant, into, record.id, True, touch=False)
            self.db.remember(call.tenant, scope_key, key, record.id)
            return self._answer(call, record, scope, 201)

    def _replayed(self, call: Call, record_id: str, group: str) -> Response:
        """A create with a key seen before: the record it made, as it is now (SYN-4)."""
        record = self.db.stored(call.tenant, record_id)
        if record.deleted or not may_see(record.kind, record.raw, record.owner, call.user):
            return json_response(as_tombstone(record))
        return self._answer(call, record, group)

    def _account_for(self, tenant: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The oldest account with the spec's name, else a new one (CON-5)."""
        found = self.db.accounts(tenant, spec["name"])
        if found:
            return found[0]
        return self.db.create_account(
            tenant,
            spec["name"],
            type=spec.get("type", "Prospect"),
            status=spec.get("status", "Active"),
            owner=spec.get("owner", "everyone"),
            manager=spec.get("manager"),
        )

    def get_record(self, call: Call, kind: str, record_id: str) -> Response:
        kind = self._kind(kind)
        group = self._scope_group(call)
        with self.db.transaction():
            return self._answer(call, self._visible(call, kind, record_id), group)

    def update_record(self, call: Call, kind: str, record_id: str) -> Response:
        kind = self._kind(kind)
        expected = self._if_match(call.request, required=True)
        body = read_json(call.request, validation.update_record(kind))
        group = self._scope_group(call)
        with self.db.transaction():
            record = self._visible(call, kind, record_id)
            self._check_version(record, expected)
            patch = dict(body["fields"])
            custom = self._custom(
                call.tenant, kind, record.raw.get("custom"), patch.pop("custom", None)
            )
            account = self._shared_account(call.tenant, record, patch)
            address = None
            if account is not None and body.get("shared_address", False):
                # CON-7: the address is the account's, for every contact sharing it
                given = {"address": patch.pop("address")}
                address = model.to_json(self._accept(call.tenant, kind, given, ())["address"])
            fields = self._accept(call.tenant, kind, {**record.raw, **patch}, patch)
            self._before_write("update")
            if account is not None and address is not None:
                self.db.set_account_address(call.tenant, account["id"], address, but=record.id)
            # an address written to the contact itself ends its sharing the account's
            stops_sharing = "address" in patch and record.address_shared
            record = self.db.save_fields(
                call.tenant,
                record.id,
                {**model.to_json(fields), "custom": custom},
                address_shared=False if stops_sharing else None,
            )
            return self._answer(call, record, group)

    def _shared_account(
        self, tenant: str, record: StoredRecord, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The account whose address the contact shows, when the update sets an address."""
        if record.kind != "contact" or "address" not in patch or not record.address_shared:
            return None
        return self.db.account(tenant, record.account_id)

    def delete_record(self, call: Call, kind: str, record_id: str) -> Response:
        kind = self._kind(kind)
        expected = self._if_match(call.request, required=False)
        with self.db.transaction():
            record = self._visible(call, kind, record_id)
            self._check_version(record, expected)
            self._before_write("delete")
            self.db.delete_record(call.tenant, record.id)
        return Response(status=204)

    # -- the change feed ------------------------------------------------------------------
    def list_changes(self, call: Call, kind: str) -> Response:
        kind = self._kind(kind)
        limit = self._limit(call.request)
        cursor = call.request.args.get("cursor")
        group = self._scope_group(call)
        self._before_read("changes")
        with self.db.transaction():
            members = self.db.members(call.tenant, group)
            custom = self._custom_names(call.tenant, kind)
            if cursor is None:  # everything live the user sees, and where that leaves off
                items = [
                    self._present(call, record, members, custom)
                    for record in self.db.records(call.tenant, kind)
                    if may_see(kind, record.raw, record.owner, call.user)
                ]
                page = {"items": items, "cursor": str(self.db.position(call.tenant))}
                return json_response({**page, "more": False})
            after = self._resume_from(call.tenant, kind, cursor)
            rows = self.db.changed_after(call.tenant, kind, after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            listed = (self._change(call, record, members, custom) for record in rows)
            end = rows[-1].seq if more else self.db.position(call.tenant)
            page = {"items": [item for item in listed if item is not None], "cursor": str(end)}
            return json_response({**page, "more": more})

    def _resume_from(self, tenant: str, kind: str, cursor: str) -> int:
        """The position a cursor stands for; 410 for one this CRM cannot resume from."""
        _checked(cursor, validation.CURSOR, "cursor")
        gone = ApiError(410, "cursor_expired", "the cursor is too old; list again without one")
        if not _DIGITS.fullmatch(cursor):
            raise gone
        after = int(cursor)
        if after > self.db.position(tenant) or after < self.db.horizon(tenant, kind):
            raise gone
        return after

    def _change(
        self, call: Call, record: StoredRecord, members: set[str], custom: Sequence[str]
    ) -> dict[str, Any] | None:
        """A changed record as the user sees it: itself, a tombstone when it was deleted or
        left the user's view, or nothing when the user never saw it."""
        sees = may_see(record.kind, record.raw, record.owner, call.user)
        if sees and not record.deleted:
            return self._present(call, record, members, custom)
        if sees or call.user in record.seen_by:
            return as_tombstone(record)
        return None

    # -- groups ---------------------------------------------------------------------------
    def list_members(self, call: Call, group: str) -> Response:
        group = self._group(call, group)
        with self.db.transaction():
            live = {record.id for record in self.db.records(call.tenant, "contact")}
            members = self.db.members(call.tenant, group) & live
        return json_response({"items": sorted(members)})

    def add_member(self, call: Call, group: str, contact_id: str) -> Response:
        return self._set_member(call, group, contact_id, True)

    def remove_member(self, call: Call, group: str, contact_id: str) -> Response:
        return self._set_member(call, group, contact_id, False)

    def _set_member(self, call: Call, group: str, contact_id: str, member: bool) -> Response:
        """Idempotent either way; always a change of the contact (CON-4, CON-6)."""
        group = self._group(call, group)
        with self.db.transaction():
            record = self._visible(call, "contact", contact_id)
            self._before_write("scope")
            self.db.set_member(call.tenant, group, record.id, member)
            return self._answer(call, self.db.stored(call.tenant, record.id), group)

    # -- accounts and leads ---------------------------------------------------------------
    def find_accounts(self, call: Call) -> Response:
        name = call.request.args.get("name")
        _checked(name, validation.ACCOUNT_NAME, "name")
        assert name is not None
        return json_response({"items": self.db.accounts(call.tenant, name)})

    def create_account(self, call: Call) -> Response:
        key = self._idempotency_key(call.request)
        body = read_json(call.request, validation.NEW_ACCOUNT)
        with self.db.transaction():
            earlier = self.db.remembered(call.tenant, "account", key)
            if earlier is not None:
                return json_response(self.db.account(call.tenant, earlier))
            self._before_write("create")
            account = self.db.create_account(
                call.tenant,
                body["name"],
                type=body.get("type", "Prospect"),
                status=body.get("status", "Active"),
                owner=body.get("owner", "everyone"),
                manager=body.get("manager"),
            )
            self.db.remember(call.tenant, "account", key, account["id"])
        return json_response(account, 201)

    def create_lead(self, call: Call) -> Response:
        if not self.db.capabilities(call.tenant).leads:
            raise ApiError(403, "forbidden", "this CRM takes no leads")
        key = self._idempotency_key(call.request)
        body = read_json(call.request, validation.NEW_LEAD)
        with self.db.transaction():
            earlier = self.db.remembered(call.tenant, "lead", key)
            if earlier is not None:
                stored = self.db.stored(call.tenant, earlier)
                return json_response(as_lead(stored, self._custom_names(call.tenant, "lead")))
            fields = self._accept(call.tenant, "lead", body["fields"], model.FIELD_NAMES["contact"])
            custom = self._custom(call.tenant, "lead", None, body["fields"].get("custom"))
            self._before_write("create")
            record = self.db.create_record(
                call.tenant,
                "lead",
                {**model.to_json(fields), "custom": custom},
                owner=call.user,
                ref=body.get("ref"),
            )
            self.db.remember(call.tenant, "lead", key, record.id)
        return json_response(as_lead(record, self._custom_names(call.tenant, "lead")), 201)

    # -- e-mail recording -----------------------------------------------------------------
    def find_people(self, call: Call) -> Response:
        """EML-2: the people holding `email`; EML-5: those whose name or an address holds
        `q`, whatever its case. Exactly one of the two; most history first either way."""
        email, text = call.request.args.get("email"), call.request.args.get("q")
        if (email is None) == (text is None):
            raise bad_request("exactly one of email (an address) and q (a text) is required")
        limit = self._limit(call.request, PEOPLE_PAGE, PEOPLE_MOST)
        if email is not None:
            _checked(email, validation.EMAIL, "email")
            wanted = model.normalize_email(email)
            people = self._people(call, lambda person: wanted in person["emails"])
        else:
            _checked(text, validation.SEARCH_TEXT, "q")
            assert text is not None
            needle = text.casefold()
            people = self._people(call, lambda person: _holds(person, needle))
            people.sort(key=lambda person: (person["name"].casefold(), person["id"]))
        people.sort(key=lambda person: -person["history_count"])  # stable: equals as above
        return json_response({"items": people[:limit]})

    def _people(self, call: Call, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The contract's Person of each contact, then lead, oldest first, that the user
        may see and that `match`es; records whose data does not read are left out."""
        people: list[dict[str, Any]] = []
        with self.db.transaction():
            counts = self.db.history_counts(call.tenant)
            for kind in ("contact", "lead"):
                for record in self.db.records(call.tenant, kind):
                    if not may_see(kind, record.raw, record.owner, call.user):
                        continue
                    fields = canonical(kind, held(self.db, call.tenant, record))
                    if fields is None:
                        continue
                    person = {
                        "kind": kind,
                        "id": record.id,
                        "name": _person_name(fields),
                        "emails": list(fields["emails"]),
                        "history_count": counts.get((kind, record.id), 0),
                    }
                    if match(person):
                        people.append(person)
        return people

    def get_person(self, call: Call, kind: str, record_id: str) -> Response:
        """CTX-1: a contact or lead as the mail client's pane shows it: who, where to
        open it in the CRM, its account and that account's open opportunities, its
        latest history items and the custom fields that hold a value."""
        if kind not in ("contact", "lead"):
            raise bad_request("kind must be contact or lead")
        limit = self._limit(call.request, RECENT_PAGE, RECENT_MOST)
        site = call.request.host_url.rstrip("/")

        def url(some_id: str) -> str:
            return record_url(site, call.tenant, some_id)

        with self.db.transaction():
            record = self._visible_person(call, kind, record_id)
            if not may_see(kind, record.raw, record.owner, call.user):
                raise ApiError(404, "not_found", f"no {kind} {record_id} for this user")
            raw = held(self.db, call.tenant, record)
            fields = canonical(kind, raw)
            if fields is None:
                raise ApiError(404, "not_found", f"the {kind} {record_id} does not read as one")
            history = self.db.history_of(call.tenant, kind, record.id)
            account = self.db.account(call.tenant, record.account_id) if record.account_id else None
            opportunities = (
                self.db.open_opportunities(call.tenant, account["id"]) if account else []
            )
            declared = self._custom_names(call.tenant, kind)
        custom = raw.get("custom") if isinstance(raw.get("custom"), dict) else {}
        # newest first; of items dated alike, the one recorded later
        recent = sorted(reversed(history), key=lambda item: _moment(item["date"]), reverse=True)
        return json_response(
            {
                "kind": kind,
                "id": record.id,
                "name": _person_name(fields),
                "title": fields["title"],
                "emails": list(fields["emails"]),
                "history_count": len(history),
                "url": url(record.id),
                "account": None
                if account is None
                else {
                    "id": account["id"],
                    "name": account["name"],
                    "url": url(account["id"]),
                },
                "opportunities": [{**o, "url": url(o["id"])} for o in opportunities],
                "history": [
                    {"id": item["id"], "subject": item["subject"], "date": item["date"]}
                    for item in recent[:limit]
                ],
                "fields": [
                    {"name": name, "value": custom[name]}
                    for name in declared
                    if custom.get(name) not in (None, "", [])
                ],
            }
        )

    def find_documents(self, call: Call) -> Response:
        """CTX-1: the documents the user may see whose name holds `q`, whatever its case,
        newest first (then by name), `limit` at most."""
        text = call.request.args.get("q")
        _checked(text, validation.SEARCH_TEXT, "q")
        assert text is not None
        limit = self._limit(call.request, DOCUMENTS_PAGE, DOCUMENTS_MOST)
        needle = text.casefold()
        found = [
            d
            for d in self.db.documents(call.tenant)
            if needle in d["name"].casefold() and d["owner"] in (None, call.user)
        ]
        found.sort(key=lambda d: d["name"].casefold())
        found.sort(key=lambda d: d["modified"], reverse=True)
        shown = [
            {k: d[k] for k in ("id", "name", "content_type", "size", "modified")}
            for d in found[:limit]
        ]
        return json_response({"items": shown})

    def get_document(self, call: Call, document_id: str) -> Response:
        """CTX-1: a document's content, as it was stored, named by its file name."""
        found = self.db.document(call.tenant, document_id)
        if found is None or found["owner"] not in (None, call.user):
            raise ApiError(404, "not_found", f"no document {document_id} for this user")
        name = str(found["name"]).replace('"', "")
        return Response(
            bytes(found["content"]),
            status=200,
            mimetype=None,
            headers={
                "Content-Type": found["content_type"],
                "Content-Disposition": f'attachment; filename="{name}"',
            },
        )

    def record_history(self, call: Call) -> Response:
        """EML-2, EML-4: one item per key; the record must be one the user sees (404)
        and the item within what the tenant declares it keeps (413)."""
        key = self._idempotency_key(call.request)
        body = read_json(call.request, validation.NEW_HISTORY_ITEM, MAX_HISTORY_BODY)
        when = self._instant(body["date"])
        attachments = [self._attachment(a) for a in body.get("attachments", [])]
        links = [
            HistoryLink(link["filename"], link["content_type"], link["size"], link["url"])
            for link in body.get("links", [])
        ]
        target = body["record"]
        with self.db.transaction():
            earlier = self.db.remembered(call.tenant, "history", key)
            if earlier is not None:
                item = self.db.history_item(call.tenant, earlier)
                assert item is not None  # history items are never removed
                return json_response(_history_json(item))
            record = self._visible_person(call, target["kind"], target["id"])
            _within(self.db.history_limits(call.tenant), body, attachments)
            self._before_write("create")
            item = self.db.add_history(
                call.tenant,
                record.kind,
                record.id,
                subject=body["subject"],
                body=body["body"],
                date=when,
                participants=body["participants"],
                attachments=attachments,
                author=call.user,
                links=links,
            )
            self.db.remember(call.tenant, "history", key, item["id"])
        return json_response(_history_json(item), 201)

    def _visible_person(self, call: Call, kind: str, record_id: str) -> StoredRecord:
        if kind == "contact":
            return self._visible(call, "contact", record_id)
        record = self.db.record(call.tenant, record_id)
        if record is None or record.deleted or record.kind != "lead":
            raise ApiError(404, "not_found", f"no lead {record_id}")
        return record

    @staticmethod
    def _instant(value: str) -> datetime:
        try:
            when = datetime.fromisoformat(value)
        except ValueError as exc:
            raise bad_request("body.date must be a date-time") from exc
        if when.tzinfo is None:
            raise bad_request("body.date must have an offset")
        return when

    @staticmethod
    def _attachment(item: Mapping[str, Any]) -> Attachment:
        try:
            content = base64.b64decode("".join(item["content_base64"].split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise bad_request("an attachment's content_base64 is not base64") from exc
        return Attachment(item["filename"], item["content_type"], content)


def _within(
    limits: HistoryLimits, body: Mapping[str, Any], attachments: Sequence[Attachment]
) -> None:
    """413 for a history item the tenant's CRM does not keep whole: a subject or body
    longer, or an attachment larger, than it declares. The reason names no content."""
    for name, most in (("subject", limits.subject), ("body", limits.body)):
        if len(body[name]) > most:
            raise ApiError(413, "too_large", f"the {name} is longer than {most} characters")
    if any(len(a.content) > limits.attachment_bytes for a in attachments):
        most = limits.attachment_bytes
        raise ApiError(413, "too_large", f"an attachment is larger than {most} bytes")


def _answer_fault(trip: Callable[[], None], what: str) -> None:
    """Run an injected-fault check and answer its failure as a CRM would over HTTP."""
    try:
        trip()
    except CursorExpired as exc:
        raise ApiError(410, "cursor_expired", "the CRM cannot resume from this cursor") from exc
    except RateLimited as exc:
        wait = str(int(exc.retry_after or 1))
        raise ApiError(429, "rate_limited", "slow down", {"Retry-After": wait}) from exc
    except TransientError as exc:
        raise ApiError(
            503, "unavailable", "the CRM is unavailable; try again", {"Retry-After": "0"}
        ) from exc
    except (CrmUnauthorized, GrantRevoked) as exc:
        raise ApiError(401, "unauthorized", "the token is no longer valid") from exc
    except PermanentError as exc:
        raise ApiError(
            422 if what == "write" else 403, "injected", f"the CRM refused this {what}"
        ) from exc
