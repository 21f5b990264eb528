"""SyncWorld's CRM as the reference CRM over HTTP (`SyncWorld(crm="rest")`).

The cycle talks to the reference CRM (`sandbox/crm`, a real HTTP server with SQLite
storage) through the production connector, `crmsync.crm.rest.RestCrmConnector`, over a
real socket. What the CRM's own users do (`world.crm.create`, group changes, limits)
goes straight to the reference CRM, as its user interface would. This mode needs the
repository's `sandbox` package on the import path; it is not part of the installed
crmsync package.
"""

from __future__ import annotations

import secrets
import weakref
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crmsync.crm.memory import PEOPLE
from crmsync.crm.rest import RestCrmConnector
from crmsync.model import CustomType, Kind
from crmsync.recordlog import Faults
from crmsync.testing import serving

if TYPE_CHECKING:
    from crmsync.testing import SyncWorld

TENANT = "t1"


class ReferenceCrmSide:
    """A reference CRM served on a loopback socket for one world; stopped with it."""

    def __init__(self, clock: Callable[[], datetime], faults: Faults) -> None:
        from sandbox.crm.app import ReferenceCrm
        from sandbox.crm.database import CrmDatabase
        from sandbox.crm.server import serve

        self.crm = ReferenceCrm(CrmDatabase(":memory:", clock=clock), faults=faults)
        self.token = secrets.token_urlsafe(24)
        self.crm.add_tenant(TENANT, self.token)
        self.users: set[str] = set()
        for n in range(1, 10):  # the world's CRM users, as the memory CRM has them
            self.ensure_user(f"u{n}")
        self.base_url, stop = serve(self.crm)
        self._stop = weakref.finalize(self, stop)
        serving.keep(self)

    def close(self) -> None:
        self._stop()

    def ensure_user(self, user: str) -> str:
        if user not in self.users:
            self.crm.add_user(TENANT, user, name=user, email=f"{user}@example.com")
            self.users.add(user)
        return user

    def connector(
        self, user: str, group: str | None, after_write: Callable[[], None]
    ) -> RestCrmConnector:
        """The production connector; one attempt per request, so an injected transient
        failure reaches the cycle as it would after the connector's own retries."""
        return RestCrmConnector(
            self.base_url,
            self.token,
            self.ensure_user(user) if user else user,  # none: the directory alone
            group,
            attempts=1,
            after_write=after_write,
        )


class RestCrmHandle:
    """The reference CRM as its users see it: the same methods as the memory CrmHandle."""

    def __init__(self, world: SyncWorld, side: ReferenceCrmSide) -> None:
        self._world = world
        self._side = side
        self._crm = side.crm

    def _group(self, user: str, group: str | None) -> str:
        if group is not None:
            return group
        if user == self._world.user:
            return self._world.effective_settings()["contact_group"] or user
        return user

    def create(self, kind: Kind, fields: Mapping[str, Any], owner: str = "u1") -> str:
        return str(self._crm.create(TENANT, kind, dict(fields), self._side.ensure_user(owner)))

    def update(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> None:
        self._crm.update(TENANT, kind, record_id, dict(fields))

    def delete(self, kind: Kind, record_id: str) -> None:
        self._crm.delete(TENANT, kind, record_id)

    def get(self, kind: Kind, record_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._crm.get(TENANT, kind, record_id)
        return found

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        return list(self._crm.all(TENANT, kind))

    def leads(self) -> list[dict[str, Any]]:
        return list(self._crm.leads(TENANT))

    def create_lead(self, fields: Mapping[str, Any], owner: str = "u1") -> str:
        return str(self._crm.create(TENANT, "lead", dict(fields), self._side.ensure_user(owner)))

    def history(self, kind: str, record_id: str) -> list[dict[str, Any]]:
        """The history items of a contact or lead, oldest first (EML-2), in the memory
        handle's shape."""
        if kind not in PEOPLE:
            raise ValueError(f"history is kept on contacts and leads, not {kind!r}")
        return [
            {
                "id": item["id"],
                "subject": item["subject"],
                "body": item["body"],
                "date": datetime.fromisoformat(item["date"]),
                "participants": [
                    {"role": p["role"], "email": p["email"], "name": p.get("name", "")}
                    for p in item["participants"]
                ],
                "attachments": [
                    {"filename": a.filename, "content_type": a.content_type, "size": len(a.content)}
                    for a in item["attachments"]
                ],
                "links": [
                    {"filename": link.filename, "url": link.url, "size": link.size}
                    for link in item["links"]
                ],
            }
            for item in self._crm.history(TENANT, kind, record_id)
        ]

    def set_history_limits(
        self,
        *,
        subject: int | None = None,
        body: int | None = None,
        attachment_bytes: int | None = None,
    ) -> None:
        """What the CRM keeps of a history item (EML-2); the limits given change."""
        self._crm.set_history_limits(
            TENANT, subject=subject, body=body, attachment_bytes=attachment_bytes
        )

    def add_to_sync_group(
        self, contact_id: str, user: str = "u1", group: str | None = None
    ) -> None:
        self._crm.add_to_group(TENANT, self._group(user, group), contact_id)

    def remove_from_sync_group(
        self, contact_id: str, user: str = "u1", group: str | None = None
    ) -> None:
        self._crm.remove_from_group(TENANT, self._group(user, group), contact_id)

    def sync_group(self, user: str = "u1", group: str | None = None) -> list[str]:
        return list(self._crm.group(TENANT, self._group(user, group)))

    def accounts(self) -> list[dict[str, Any]]:
        return list(self._crm.accounts(TENANT))

    def account(self, account_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._crm.account(TENANT, account_id)
        return found

    def create_account(self, name: str, address: Mapping[str, Any] | None = None) -> str:
        return str(self._crm.create_account(TENANT, name, dict(address) if address else None))

    def add_document(
        self,
        name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        owner: str | None = None,
    ) -> str:
        return str(self._crm.add_document(TENANT, name, content, content_type, owner))

    def add_opportunity(
        self,
        account_id: str,
        name: str,
        stage: str = "Qualification",
        *,
        amount: str | None = None,
        close_date: str | None = None,
        open: bool = True,
    ) -> str:
        return str(
            self._crm.add_opportunity(
                TENANT, account_id, name, stage, amount=amount, close_date=close_date, open=open
            )
        )

    def attach_to_account(
        self, contact_id: str, account_id: str, share_address: bool = False
    ) -> None:
        self._crm.attach_to_account(TENANT, contact_id, account_id, share_address)

    def set_field_limit(self, kind: Kind, field: str, n: int) -> None:
        self._crm.set_field_limit(TENANT, kind, field, n)

    def declare_custom_field(
        self,
        kind: Kind,
        name: str,
        type: CustomType = "string",
        values: tuple[str, ...] = (),
        max_length: int | None = None,
    ) -> None:
        self._crm.declare_custom_field(TENANT, kind, name, type, values, max_length)

    def set_capabilities(
        self, *, infinite_series: bool | None = None, recurring_todos: bool | None = None
    ) -> None:
        self._crm.set_capabilities(
            TENANT, infinite_series=infinite_series, recurring_todos=recurring_todos
        )

    def expire_cursors(self) -> None:
        self._crm.expire_cursors(TENANT)
