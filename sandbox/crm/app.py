"""The reference CRM: a CRM that implements the contract for real, for tests and demos.

`ReferenceCrm` is two things over one database. As a WSGI application it serves the
contract over HTTP, the way crmsync reaches any CRM. Its methods are the CRM's own user
interface: what the CRM's users do by hand (create and edit records, move contacts
between groups, declare field limits), with the same names and meaning as the memory
CRM's handle in `crmsync.testing`, plus `tenant` first. Those edits are not checked
against injected faults and may hold data crmsync cannot read, as real users' data can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from werkzeug.wrappers import Request

from crmsync import model
from crmsync.errors import NotFound
from crmsync.model import CUSTOM_NAME, CUSTOM_TYPES, CustomField, CustomType
from crmsync.recordlog import Faults
from sandbox.crm import home
from sandbox.crm.api import Api
from sandbox.crm.database import (
    FEED_KINDS,
    KINDS,
    Attachment,
    CrmDatabase,
    HistoryLimits,
    HistoryLink,
    StoredRecord,
    UnknownRecord,
    User,
)
from sandbox.crm.records import as_plain, held


def _kind(kind: str, allowed: Iterable[str] = KINDS) -> str:
    if kind not in allowed:
        raise ValueError(f"unknown kind {kind!r}")
    return kind


class ReferenceCrm:
    """The contract over HTTP (`wsgi_app`) and the CRM's own user interface."""

    def __init__(self, database: CrmDatabase, faults: Faults | None = None) -> None:
        self.database = database
        self.faults = faults
        self.wsgi_app = Api(database, faults)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if home.is_home(request):  # a page for people; the contract's paths stay JSON
            return home.answer(self.database, request)(environ, start_response)
        return self.wsgi_app(environ, start_response)

    # -- administration -------------------------------------------------------------------
    def add_tenant(self, tenant: str, token: str, *, expires_at: datetime | None = None) -> None:
        """A new tenant and its integration token."""
        with self.database.transaction():
            self.database.add_tenant(tenant)
            self.database.add_token(tenant, token, expires_at)

    def add_token(self, tenant: str, token: str, expires_at: datetime | None = None) -> None:
        """Another token of the tenant (a rotated one, or one that expires)."""
        self.database.add_token(tenant, token, expires_at)

    def add_user(
        self,
        tenant: str,
        user_id: str,
        *,
        name: str = "",
        email: str = "",
        timezone: str = "UTC",
        rep_code: str | None = None,
        active: bool = True,
    ) -> None:
        """Add a CRM user, or change one (`active=False` locks the user out)."""
        user = User(user_id, name, email, timezone, rep_code, active)
        self.database.put_user(tenant, user)

    # -- records, as the CRM's users edit them ----------------------------------------------
    def create(self, tenant: str, kind: str, fields: Mapping[str, Any], owner: str) -> str:
        """Store the fields as given (dates and times as ISO text); an activity's leader
        is its owner unless the fields name one."""
        raw = dict(model.to_json(dict(fields)))
        if _kind(kind) == "activity":
            raw.setdefault("leader", owner)
        return self.database.create_record(tenant, kind, raw, owner=owner).id

    def update(self, tenant: str, kind: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Merge the fields into the record as given; custom values (`custom`: name ->
        value, null for none) one by one."""
        with self.database.transaction():
            record = self._live(tenant, kind, record_id)
            changes = dict(model.to_json(dict(fields)))
            if isinstance(changes.get("custom"), dict):
                held = record.raw.get("custom")
                held = held if isinstance(held, dict) else {}
                changes["custom"] = model.merge_custom(held, changes["custom"])
            self.database.save_fields(tenant, record.id, {**record.raw, **changes})

    def delete(self, tenant: str, kind: str, record_id: str) -> None:
        with self.database.transaction():
            self.database.delete_record(tenant, self._live(tenant, kind, record_id).id)

    def get(self, tenant: str, kind: str, record_id: str) -> dict[str, Any] | None:
        """The live record in canonical plain values, with id, version and owner (and
        account_id for a contact); its stored fields when they do not read as a record."""
        with self.database.transaction():
            record = self.database.record(tenant, record_id)
            if record is None or record.deleted or record.kind != _kind(kind):
                return None
            return as_plain(record, held(self.database, tenant, record))

    def all(self, tenant: str, kind: str) -> list[dict[str, Any]]:
        with self.database.transaction():
            return [
                as_plain(record, held(self.database, tenant, record))
                for record in self.database.records(tenant, _kind(kind))
            ]

    def leads(self, tenant: str) -> list[dict[str, Any]]:
        """Live leads as stored, with their ids."""
        return [{"id": r.id, **r.raw} for r in self.database.records(tenant, "lead")]

    def _live(self, tenant: str, kind: str, record_id: str) -> StoredRecord:
        try:
            return self.database.live(tenant, _kind(kind), record_id)
        except UnknownRecord as exc:
            raise NotFound(f"{kind} {record_id} not found") from exc

    # -- contact sync groups (CON-1) -----------------------------------------------------------
    def add_to_group(self, tenant: str, group: str, contact_id: str) -> None:
        """Put a contact into a group: a change of the contact."""
        with self.database.transaction():
            self._live(tenant, "contact", contact_id)
            self.database.set_member(tenant, group, contact_id, True)

    def remove_from_group(self, tenant: str, group: str, contact_id: str) -> None:
        """Take a contact out of a group: a change of the contact."""
        with self.database.transaction():
            self._live(tenant, "contact", contact_id)
            self.database.set_member(tenant, group, contact_id, False)

    def group(self, tenant: str, group: str) -> list[str]:
        """Ids of the group's live contacts, sorted."""
        with self.database.transaction():
            live = {record.id for record in self.database.records(tenant, "contact")}
            return sorted(self.database.members(tenant, group) & live)

    # -- accounts (CON-5, CON-7) ----------------------------------------------------------------
    def accounts(self, tenant: str) -> list[dict[str, Any]]:
        names = ("id", "name", "type", "status", "owner", "manager")
        return [{k: a[k] for k in names} for a in self.database.accounts(tenant)]

    def account(self, tenant: str, account_id: str) -> dict[str, Any] | None:
        """The account with its address."""
        return self.database.account(tenant, account_id)

    def create_account(
        self, tenant: str, name: str, address: Mapping[str, Any] | None = None
    ) -> str:
        account = self.database.create_account(
            tenant,
            name,
            type="Customer",
            status="Active",
            owner="Everyone",
            address=dict(address) if address else None,
        )
        return str(account["id"])

    def attach_to_account(
        self, tenant: str, contact_id: str, account_id: str, share_address: bool = False
    ) -> None:
        """The contact belongs to the account; with `share_address` it uses its address."""
        with self.database.transaction():
            self._live(tenant, "contact", contact_id)
            self.database.attach_account(tenant, contact_id, account_id, share_address)

    def add_document(
        self,
        tenant: str,
        name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        owner: str | None = None,
    ) -> str:
        """A document of the CRM (CTX-1), seen by everyone or by its `owner` only."""
        return self.database.add_document(tenant, name, content_type, content, owner)

    def add_opportunity(
        self,
        tenant: str,
        account_id: str,
        name: str,
        stage: str = "Qualification",
        *,
        amount: str | None = None,
        close_date: str | None = None,
        open: bool = True,
    ) -> str:
        """An opportunity of the account (CTX-1); a closed one is not `open`."""
        if self.database.account(tenant, account_id) is None:
            raise NotFound(f"no account {account_id}")
        found = self.database.create_opportunity(
            tenant, account_id, name, stage=stage, amount=amount, close_date=close_date, open=open
        )
        return str(found["id"])

    # -- what the CRM declares (SYN-3, CAL-9, TSK-3, CON-8) ---------------------------------------
    def set_field_limit(self, tenant: str, kind: str, field: str, n: int) -> None:
        if n < 1:
            raise ValueError("a field limit is at least 1")
        self.database.set_limit(tenant, _kind(kind, FEED_KINDS), field, n)

    def declare_custom_field(
        self,
        tenant: str,
        kind: str,
        name: str,
        type: CustomType = "string",
        values: Iterable[str] = (),
        max_length: int | None = None,
    ) -> None:
        """Give a kind a custom field (SYN-1), or change its declaration."""
        if type not in CUSTOM_TYPES or not CUSTOM_NAME.fullmatch(name):
            raise ValueError(f"no custom field {name!r} of type {type!r}")
        if (type == "enum") != bool(tuple(values)):
            raise ValueError("an enum, and only an enum, has values")
        field = CustomField(name, type, tuple(values), max_length)
        self.database.declare_custom_field(tenant, _kind(kind, FEED_KINDS), field)

    def set_capabilities(
        self,
        tenant: str,
        *,
        infinite_series: bool | None = None,
        recurring_todos: bool | None = None,
        leads: bool | None = None,
    ) -> None:
        """Change the capabilities given; the others stay."""
        with self.database.transaction():
            caps = self.database.capabilities(tenant)
            if infinite_series is not None:
                caps = replace(caps, infinite_series=infinite_series)
            if recurring_todos is not None:
                caps = replace(caps, recurring_todos=recurring_todos)
            if leads is not None:
                caps = replace(caps, leads=leads)
            self.database.set_capabilities(tenant, caps)

    def limit_series(self, tenant: str, years: int | None) -> None:
        """The longest series this CRM holds, in years from its start (None: no limit)."""
        if years is not None and years < 1:
            raise ValueError("a series limit is at least 1 year")
        with self.database.transaction():
            caps = self.database.capabilities(tenant)
            self.database.set_capabilities(tenant, replace(caps, max_recurrence_years=years))

    def expire_cursors(self, tenant: str, kind: str | None = None) -> None:
        """Cursors handed out so far can no longer be resumed from (410)."""
        kinds = [_kind(kind, FEED_KINDS)] if kind is not None else list(FEED_KINDS)
        self.database.expire_cursors(tenant, kinds)

    # -- e-mail history (EML-2) ----------------------------------------------------------------
    def set_history_limits(
        self,
        tenant: str,
        *,
        subject: int | None = None,
        body: int | None = None,
        attachment_bytes: int | None = None,
    ) -> None:
        """What the tenant's CRM keeps of a history item: the longest subject and body in
        characters, the largest attachment in bytes it stores itself (0: none). The
        limits given change, the others stay."""
        if (subject is not None and subject < 1) or (body is not None and body < 1):
            raise ValueError("a subject or body limit is at least 1")
        if attachment_bytes is not None and attachment_bytes < 0:
            raise ValueError("an attachment limit is at least 0")
        with self.database.transaction():
            limits = self.database.history_limits(tenant)
            if subject is not None:
                limits = replace(limits, subject=subject)
            if body is not None:
                limits = replace(limits, body=body)
            if attachment_bytes is not None:
                limits = replace(limits, attachment_bytes=attachment_bytes)
            self.database.set_history_limits(tenant, limits)

    def history_limits(self, tenant: str) -> HistoryLimits:
        return self.database.history_limits(tenant)

    def record_history(
        self,
        tenant: str,
        kind: str,
        record_id: str,
        *,
        subject: str,
        date: datetime,
        body: str = "",
        participants: Iterable[Mapping[str, str]] = (),
        attachments: Iterable[Attachment] = (),
        links: Iterable[HistoryLink] = (),
        author: str | None = None,
    ) -> str:
        """A history item on a contact or lead, as a user of the CRM records one."""
        with self.database.transaction():
            self._live(tenant, _kind(kind, ("contact", "lead")), record_id)
            item = self.database.add_history(
                tenant,
                kind,
                record_id,
                subject=subject,
                body=body,
                date=date,
                participants=[dict(p) for p in participants],
                attachments=list(attachments),
                author=author,
                links=list(links),
            )
            return str(item["id"])

    def history(self, tenant: str, kind: str, record_id: str) -> list[dict[str, Any]]:
        """History items of a contact or lead, oldest first: attachments with their
        content, links with their address."""
        return self.database.history_of(tenant, _kind(kind, ("contact", "lead")), record_id)
