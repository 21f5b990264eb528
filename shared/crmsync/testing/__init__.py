"""SyncWorld: one CRM user, one provider account, and the real cycle between them.

Our own tests drive the product through it, and CRM vendors can use it to try their
mappings and settings. Both sides are memory systems that behave like real ones
(versions, change feeds with expiring cursors, idempotent creates, field limits,
injectable failures and crashes); the cycle, planner and store are the production code.
Either side can instead be a real system over HTTP: the reference CRM (`crm="rest"`,
see `crmsync.testing.rest`) and, for Google, the Google sandbox behind crmsync's Google
adapters (`provider_backend="google-sandbox"`, see `crmsync.testing.google`) and, for
Microsoft, the Microsoft sandbox behind crmsync's Graph adapters
(`provider_backend="graph-sandbox"`, see `crmsync.testing.microsoft`).

    world = SyncWorld(provider="google")
    cid = world.crm.create("contact", {"first_name": "Ada", "emails": ["ada@example.com"]})
    world.crm.add_to_sync_group(cid)
    world.sync()
    assert world.provider.labelled()
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from crmsync import model, providers, service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.connections import Grants
from crmsync.crm.memory import PEOPLE, HistoryItem, MemoryCrm
from crmsync.cycle import LEASE_SECONDS, Cycle
from crmsync.engine.records import SideRecord
from crmsync.model import Kind
from crmsync.outbound import MemoryEvents
from crmsync.ports import (
    Connection,
    ConnectionRecord,
    CrmConnector,
    CrmMail,
    Due,
    ProviderAccount,
)
from crmsync.providers.memory import MemoryMailbox, MemoryProvider
from crmsync.queue.inline import InlineQueue
from crmsync.recordlog import Crash, Entry, FaultKind, Faults, RecordLog
from crmsync.service import CycleInputs, Services, connection_of, cycle_inputs
from crmsync.settings import PROVIDER_DEFAULTS, Settings, SettingsError, Side
from crmsync.store.memory import MemoryStore
from crmsync.testing.rest import ReferenceCrmSide, RestCrmHandle
from crmsync.usecases import preferences
from crmsync.usecases import queue as queue_cases

if TYPE_CHECKING:
    from crmsync.store.firestore import FirestoreStore
    from crmsync.testing.google import GmailMailbox, GoogleProviderHandle, GoogleSandboxSide
    from crmsync.testing.microsoft import GraphProviderHandle, GraphSandboxSide, OutlookMailbox

__all__ = ["Crash", "SyncWorld"]

DEFAULT_NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _plain(kind: Kind, entry: Entry, fields: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record as a user sees it; custom values as the system holds them, in `custom`
    (by the CRM's names, or by the provider's keys)."""
    if fields is None:  # a record the system holds but crmsync cannot read
        return {"id": entry.id, "version": str(entry.version), **entry.raw}
    shown = {k: v for k, v in fields.items() if not model.is_custom(k)}
    out = {"id": entry.id, "version": str(entry.version), **model.to_plain(shown)}
    if entry.raw.get("custom"):
        out["custom"] = dict(entry.raw["custom"])
    return out


def _with_custom(entry: Entry, fields: Mapping[str, Any]) -> dict[str, Any]:
    """An edit as a user makes it: the custom values given change, the others stay."""
    changes = dict(fields)
    if "custom" in changes:
        changes["custom"] = model.merge_custom(entry.raw.get("custom"), changes["custom"] or {})
    return changes


class _Side:
    def __init__(self, world: SyncWorld, log: RecordLog) -> None:
        self._world = world
        self._log = log

    def _read(self, kind: Kind, entry: Entry) -> dict[str, Any] | None:
        raise NotImplementedError

    def get(self, kind: Kind, record_id: str) -> dict[str, Any] | None:
        entry = self._log.table(kind).get(record_id)
        if entry is None or entry.deleted:
            return None
        return self._read(kind, entry)

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        found = (self.get(kind, i) for i in list(self._log.table(kind)))
        return [r for r in found if r is not None]

    def delete(self, kind: Kind, record_id: str) -> None:
        self._log.remove(kind, record_id, remote=False)


class CrmHandle(_Side):
    """The CRM as its users see it (records carry `id`, `version`, `owner`)."""

    def __init__(self, world: SyncWorld, crm: MemoryCrm) -> None:
        super().__init__(world, crm.log)
        self._crm = crm

    def _read(self, kind: Kind, entry: Entry) -> dict[str, Any] | None:
        try:
            fields: dict[str, Any] | None = self._crm.read(kind, entry)
        except model.InvalidRecord:
            fields = None
        out = _plain(kind, entry, fields)
        out["owner"] = entry.owner
        if kind == "contact":
            out["account_id"] = entry.extra.get("account_id")
        return out

    def create(self, kind: Kind, fields: Mapping[str, Any], owner: str = "u1") -> str:
        raw = dict(fields)
        if kind == "activity":
            raw.setdefault("leader", owner)
        return self._log.insert(kind, raw, owner=owner, remote=False).id

    def update(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> None:
        """Edit a record; the custom values given (`custom`: name -> value, null for
        none) change, the others stay."""
        changes = _with_custom(self._log.live(kind, record_id), fields)
        self._log.patch(kind, record_id, changes, remote=False)

    def leads(self) -> list[dict[str, Any]]:
        return [{"id": e.id, **e.raw} for e in self._log.table("lead").values() if not e.deleted]

    def create_lead(self, fields: Mapping[str, Any], owner: str = "u1") -> str:
        """A lead, as a user of the CRM enters one (a contact's fields)."""
        return self._log.insert("lead", dict(fields), owner=owner, remote=False).id

    def history(self, kind: str, record_id: str) -> list[dict[str, Any]]:
        """The history items of a contact or lead, oldest first (EML-2)."""
        if kind not in PEOPLE:
            raise ValueError(f"history is kept on contacts and leads, not {kind!r}")
        return [_history_item(item) for item in self._crm.history.get((kind, record_id), [])]

    def set_history_limits(
        self,
        *,
        subject: int | None = None,
        body: int | None = None,
        attachment_bytes: int | None = None,
    ) -> None:
        """What the CRM keeps of a history item (EML-2): the longest subject and body in
        characters, the largest attachment in bytes it stores itself (0: none). The
        limits given change, the others stay."""
        if (subject is not None and subject < 1) or (body is not None and body < 1):
            raise ValueError("a subject or body limit is at least 1")
        if attachment_bytes is not None and attachment_bytes < 0:
            raise ValueError("an attachment limit is at least 0")
        given = {"subject": subject, "body": body, "attachment_bytes": attachment_bytes}
        changes = {name: n for name, n in given.items() if n is not None}
        self._crm.mail_limits = dataclasses.replace(self._crm.mail_limits, **changes)

    def _group(self, user: str, group: str | None) -> str:
        """A named group, else the group `user` syncs: the one chosen in the world's
        settings for the world's user, each user's own group otherwise."""
        if group is not None:
            return group
        if user == self._world.user:
            return self._world.effective_settings()["contact_group"] or user
        return user

    def add_to_sync_group(
        self, contact_id: str, user: str = "u1", group: str | None = None
    ) -> None:
        self._log.touch("contact", contact_id, remote=False)
        self._crm.groups.setdefault(self._group(user, group), set()).add(contact_id)

    def remove_from_sync_group(
        self, contact_id: str, user: str = "u1", group: str | None = None
    ) -> None:
        self._log.touch("contact", contact_id, remote=False)
        self._crm.groups.setdefault(self._group(user, group), set()).discard(contact_id)

    def sync_group(self, user: str = "u1", group: str | None = None) -> list[str]:
        return sorted(
            i
            for i in self._crm.groups.get(self._group(user, group), set())
            if not self._log.table("contact")[i].deleted
        )

    def accounts(self) -> list[dict[str, Any]]:
        return [
            {k: a[k] for k in ("id", "name", "type", "status", "owner", "manager")}
            for a in self._crm.accounts
        ]

    def account(self, account_id: str) -> dict[str, Any] | None:
        return self._crm.account(account_id)

    def create_account(self, name: str, address: Mapping[str, Any] | None = None) -> str:
        account = {
            "id": f"acc-{len(self._crm.accounts) + 1}",
            "name": name,
            "type": "Customer",
            "status": "Active",
            "owner": "Everyone",
            "manager": None,
            "address": dict(address) if address else None,
        }
        self._crm.accounts.append(account)
        return str(account["id"])

    def add_document(
        self,
        name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        owner: str | None = None,
    ) -> str:
        """A document of the CRM (CTX-1), seen by everyone or by its `owner` only."""
        found = {
            "id": f"doc-{len(self._crm.documents) + 1}",
            "name": name,
            "content_type": content_type,
            "content": bytes(content),
            "owner": owner,
            "modified": self._crm.log.clock(),
        }
        self._crm.documents.append(found)
        return str(found["id"])

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
        """An opportunity of the account (CTX-1); a closed one is not `open`."""
        found = {
            "id": f"opp-{len(self._crm.opportunities) + 1}",
            "account_id": account_id,
            "name": name,
            "stage": stage,
            "amount": amount,
            "close_date": close_date,
            "open": open,
        }
        self._crm.opportunities.append(found)
        return str(found["id"])

    def attach_to_account(
        self, contact_id: str, account_id: str, share_address: bool = False
    ) -> None:
        """The contact belongs to the account; with `share_address` it uses its address."""
        entry = self._log.live("contact", contact_id)
        entry.extra.update(account_id=account_id, address_shared=share_address)
        self._log.touch("contact", contact_id, remote=False)

    def set_field_limit(self, kind: Kind, field: str, n: int) -> None:
        self._crm.limits.setdefault(kind, {})[field] = n

    def declare_custom_field(
        self,
        kind: Kind,
        name: str,
        type: model.CustomType = "string",
        values: tuple[str, ...] = (),
        max_length: int | None = None,
    ) -> None:
        """The CRM gets a custom field (SYN-1); its values go in a record's `custom`."""
        field = model.CustomField(name, type, tuple(values), max_length)
        self._crm.custom.setdefault(kind, {})[name] = field

    def set_capabilities(
        self, *, infinite_series: bool | None = None, recurring_todos: bool | None = None
    ) -> None:
        if infinite_series is not None:
            self._crm.infinite_series = infinite_series
        if recurring_todos is not None:
            self._crm.recurring_todos = recurring_todos

    def expire_cursors(self) -> None:
        self._log.expire_cursors()


def _history_item(item: HistoryItem) -> dict[str, Any]:
    """A history item as the CRM's users see it: the same shape from either CRM."""
    entry = item.entry
    return {
        "id": item.id,
        "subject": entry.subject,
        "body": entry.body,
        "date": entry.date,
        "participants": [
            {"role": role, "email": address, "name": name}
            for role, address, name in entry.participants
        ],
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": len(a.data)}
            for a in entry.attachments
        ],
        "links": [{"filename": x.filename, "url": x.url, "size": x.size} for x in entry.links],
    }


class ProviderHandle(_Side):
    """The provider account as the user sees it, values as the provider holds them."""

    def __init__(self, world: SyncWorld, provider: MemoryProvider) -> None:
        super().__init__(world, provider.log)
        self._provider = provider

    def _read(self, kind: Kind, entry: Entry) -> dict[str, Any] | None:
        try:
            fields: dict[str, Any] | None = self._provider.read(kind, entry)
        except model.InvalidRecord:
            fields = None
        return {**entry.extra, **_plain(kind, entry, fields)}

    def create(self, kind: Kind, fields: Mapping[str, Any]) -> str:
        held, extra = self._provider.split(kind, fields)
        return self._log.insert(kind, held, extra=extra, remote=False).id

    def update(self, kind: Kind, record_id: str, fields: Mapping[str, Any]) -> None:
        """Edit a record; custom values (`custom`: provider key -> value, None for
        none) change one by one."""
        entry = self._log.live(kind, record_id)
        held, extra = self._provider.split(kind, _with_custom(entry, fields))
        entry.extra.update(extra)
        self._log.patch(kind, record_id, held, remote=False)

    def label(self, contact_id: str) -> None:
        self._log.touch("contact", contact_id, remote=False)
        self._provider.labelled.add(contact_id)

    def unlabel(self, contact_id: str) -> None:
        self._log.touch("contact", contact_id, remote=False)
        self._provider.labelled.discard(contact_id)

    def labelled(self) -> list[str]:
        return sorted(
            i for i in self._provider.labelled if not self._log.table("contact")[i].deleted
        )

    def put_under(self, contact_id: str, label: str) -> None:
        """The user puts the contact under one of their own labels (not the sync label):
        a label an address-book import can pick (CON-9)."""
        self._provider.groups.setdefault(label, set()).add(contact_id)

    def invitations(self) -> list[tuple[str, str]]:
        return list(self._provider.invitations)

    def snooze(self, kind: Kind, record_id: str, state: str = "snoozed") -> None:
        """SYN-10: snooze (or with `state="dismissed"`, dismiss) the record's reminder."""
        self._provider.snooze(kind, record_id, state)

    def expire_cursors(self) -> None:
        self._log.expire_cursors()


ProviderBackend = Literal["memory", "google-sandbox", "graph-sandbox"]
# The provider each sandbox backend serves.
_SANDBOXES: dict[str, str] = {"google-sandbox": "google", "graph-sandbox": "microsoft"}


class SyncWorld:
    """A CRM user ("u1") connected to a Google or Microsoft account, in memory.

    `crm` ("memory" or "rest"; env CRMSYNC_WORLD_CRM) chooses the CRM side;
    `provider_backend` ("memory", "google-sandbox" for a Google world or "graph-sandbox"
    for a Microsoft one; env CRMSYNC_WORLD_PROVIDER) the provider side.
    `store` keeps the connection's state (a fresh MemoryStore by default; a
    FirestoreStore runs the same world over Firestore)."""

    def __init__(
        self,
        provider: Literal["google", "microsoft"] = "google",
        settings: Mapping[str, Any] | None = None,
        now: datetime = DEFAULT_NOW,
        tenant: Mapping[str, Any] | None = None,
        user: str = "u1",
        syncing_users: tuple[str, ...] = (),
        crm: Literal["memory", "rest"] | None = None,
        provider_backend: ProviderBackend | None = None,
        store: MemoryStore | FirestoreStore | None = None,
    ) -> None:
        self._now = model.now_utc(now)
        self.user = user
        self.faults = Faults()
        self.store: MemoryStore | FirestoreStore = store if store is not None else MemoryStore()
        self._crm = MemoryCrm(self.now, self.faults)
        held = {k: tuple(v) for k, v in PROVIDER_DEFAULTS[provider]["field_map"].items()}
        self._provider = MemoryProvider(self.now, held, self.faults)
        self.crm_mode = crm or os.environ.get("CRMSYNC_WORLD_CRM", "memory")
        self._reference: ReferenceCrmSide | None = None
        self.crm: CrmHandle | RestCrmHandle
        if self.crm_mode == "rest":
            self._reference = ReferenceCrmSide(self.now, self.faults)
            self.crm = RestCrmHandle(self, self._reference)
        elif self.crm_mode == "memory":
            self.crm = CrmHandle(self, self._crm)
        else:
            raise ValueError(f"crm is 'memory' or 'rest', not {self.crm_mode!r}")
        self.provider_backend = _provider_backend(provider, provider_backend)
        self._google: GoogleSandboxSide | None = None
        self._graph: GraphSandboxSide | None = None
        self.provider: ProviderHandle | GoogleProviderHandle | GraphProviderHandle
        # the user's mailbox (EML-1..5): what `record_mail` connects and mail tasks read;
        # the provider's own in a sandbox world (Gmail, Outlook), else one in memory
        self.mailbox: MemoryMailbox | GmailMailbox | OutlookMailbox
        if self.provider_backend == "graph-sandbox":
            from crmsync.testing.microsoft import (
                GraphProviderHandle,
                GraphSandboxSide,
                OutlookMailbox,
            )

            self._graph = GraphSandboxSide(
                self.now, self.faults, PROVIDER_DEFAULTS["microsoft"], email=f"{user}@example.com"
            )
            self.provider = GraphProviderHandle(self, self._graph)
            self.mailbox = OutlookMailbox(self._graph)
        elif self.provider_backend == "google-sandbox":
            from crmsync.testing.google import (
                GmailMailbox,
                GoogleProviderHandle,
                GoogleSandboxSide,
            )

            self._google = GoogleSandboxSide(
                self.now, self.faults, PROVIDER_DEFAULTS["google"], email=f"{user}@example.com"
            )
            self.provider = GoogleProviderHandle(self, self._google)
            self.mailbox = GmailMailbox(self._google)
        else:
            self.provider = ProviderHandle(self, self._provider)
            self.mailbox = MemoryMailbox(self.now, f"{user}@example.com")
        self.tenant = dict(tenant or {})
        self.syncing_users = frozenset(syncing_users)
        self._user_settings: dict[str, Any] = {}
        self.connection = Connection("t1", "c1", user, provider)
        self._dead_runs: set[str] = set()
        self._runs = 0
        self.cost: dict[str, int] = {}  # store operations of the last cycle (`sync`)
        self.events = MemoryEvents()  # what the cycles told the CRM (BEY-7)
        # A sandbox world reaches its provider through the provider's own kit, with the
        # grant consent left in the vault, as the worker does; a memory provider through
        # a kit of the world's.
        real: dict[str, Any] = {}
        kits: dict[str, Any] = {}
        if self._google is not None:
            real["google"] = self._google.setup()
        if self._graph is not None:
            real["microsoft"] = self._graph.setup()
            kits["microsoft"] = self._graph.kit()  # no mail subscription (see its kit)
        self.services = Services(
            backend=_OneTenant(self),
            queue=InlineQueue(),
            vault=TokenVault(LocalKek(os.urandom(32))),
            secret=os.urandom(32),
            public_url="http://crmsync.invalid/",
            clock=self.now,
            events=self.events,
            providers=real,
            kits=kits if real else {provider: _WorldKit(self)},
            crm_connector=self._crm_for,
        )
        self.settings(**(settings or {}))

    # -- time and settings ------------------------------------------------------------
    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def effective_settings(self) -> Settings:
        return self.inputs().settings

    def inputs(self) -> CycleInputs:
        """What the next cycle runs with, derived from the store as the worker does."""
        record = connection_of(self.store, self.connection.id)
        tenant = self.store.tenant_record()
        if record is None or tenant is None:  # a new store: connected afresh (SYN-9)
            self.onboard()
            return self.inputs()
        return cycle_inputs(tenant, record)

    def onboard(self) -> None:
        """The tenant and the connection as onboarding leaves them in the store; each
        cycle derives its inputs from these, as the worker does (service.cycle_inputs).
        Tenant defaults already stored stay (a tenant admin may have changed them)."""
        if "settings" not in (self.store.tenant_record() or {}):
            self.store.save_tenant_record({"settings": self.tenant})
        for crm_user in sorted({self.user, *self.syncing_users}):
            self.store.mark_syncing(crm_user, True)
        record: dict[str, Any] = {"settings": self._user_settings}
        if self.store.connection_record(self.connection.id) is None:
            record.update(
                id=self.connection.id,
                user=self.user,
                crm_user=self.user,
                provider=self.connection.provider,
                services=["sync"],
                status="active",
            )
        self.store.save_connection_record(self.connection.id, record)
        side = self._google or self._graph
        if side is not None and self.store.sealed_grant(self.connection.id) is None:
            grants = Grants(self.store, self.services.vault, self.connection.tenant)
            grants.save(self.connection.id, side.grant())

    def reconnect(self) -> None:
        """The user consents again after a grant stopped working (AUTH-3)."""
        self.store.set_status(self.connection.id, "active")

    def settings(self, **changes: Any) -> Settings:
        """Change the user's settings (SET-1..5) as their tenant admin would on the
        settings page (SET-6: any setting, locked or not); a bad value, or a change not
        allowed now (the contact sync group after contacts synced, CON-1), raises
        SettingsError."""
        self._preferences(preferences.change, changes, as_admin=True)
        return self.effective_settings()

    def reset(self, kind: Kind) -> int:
        """Unlink every record of `kind`; the next cycle pairs them again (CON-1), as
        the user does from their settings page."""
        return preferences.reset_sync(
            self.services, self.connection.tenant, self.connection.id, kind
        )

    def exclude(self, kind: Kind, crm_id: str, until: datetime | None = None) -> None:
        """SET-4: never touch this record (until `until`, when given), as the user does
        on their settings page."""
        self._preferences(preferences.exclude, kind, crm_id, until)

    def include(self, kind: Kind, crm_id: str, until: datetime | None = None) -> None:
        """SET-4: sync the record again (until `until`, when given: then it is excluded
        again); the next cycle re-reads it on both sides."""
        self._preferences(preferences.include, kind, crm_id, until)

    def _preferences(self, use_case: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a settings page's use case on the world's connection; what it refuses as a
        bad value raises SettingsError, as the settings layer does."""
        if self.store.connection_record(self.connection.id) is None:
            self.onboard()
        try:
            use_case(self.services, self.connection.tenant, self.connection.id, *args, **kwargs)
        except service.Refused as exc:
            if exc.status != 400:
                raise
            raise SettingsError(exc.reason) from exc
        record = connection_of(self.store, self.connection.id)
        self._user_settings = dict(record.settings) if record is not None else {}

    # -- faults -----------------------------------------------------------------------
    def crash_after(self, n: int) -> None:
        """The next sync dies right after its n-th remote write."""
        self.faults.crash_after(n)

    def fail(
        self,
        side: Side | None = None,
        op: str | None = None,
        error: FaultKind = "transient",
        times: int = 1,
    ) -> None:
        """The next matching remote write(s) fail: transient, permanent, rate_limited,
        revoked (the provider grant) or unauthorized (the CRM token). With
        `op="changes"` it is the reading of a change feed that fails. In a sandbox
        world the provider's failures are the sandbox's HTTP answers."""
        self.faults.fail(side, op, error, times)

    # -- running ----------------------------------------------------------------------
    def cycle(self, trigger: str = "schedule") -> Cycle:
        self._runs += 1
        inputs = self.inputs()  # read once a cycle, as the worker reads them
        return Cycle(
            self.connection,
            self.store,
            self.crm_connector(inputs.settings),
            self.provider_account(inputs.settings),
            inputs.settings,
            self.now,
            inputs.syncing_users,
            trigger,
            run_id=f"run-{self._runs}",
        )

    def crm_connector(self, settings: Settings | None = None) -> CrmConnector:
        chosen = settings or self.effective_settings()
        return self._crm_for(self.connection.tenant, {}, self.user, chosen)

    def record_mail(self) -> None:
        """The user connects the "mail" service too (EML-1): a task of trigger "mail"
        (`sync("mail")`) runs a pass over `mailbox`'s tagged messages."""
        self.store.save_connection_record(
            self.connection.id, {"services": ["sync", "mail"], "account": self.mailbox.address}
        )

    def crm_mail(self, user: str | None = None) -> CrmMail:
        """The CRM's side of e-mail recording (EML-2, EML-4) as crmsync reaches it,
        acting for `user` (the world's user by default)."""
        crm_user = user or self.user
        if self._reference is not None:
            return self._reference.connector(crm_user, None, self.faults.after_write)
        return self._crm.connector(crm_user)

    def provider_account(self, settings: Settings | None = None) -> ProviderAccount:
        """The provider side of one cycle: built anew per cycle, like a new process."""
        if self._google is not None:
            chosen = settings or self.effective_settings()
            return self._google.account(chosen, self.store, self.connection)
        if self._graph is not None:
            chosen = settings or self.effective_settings()
            crm = self.crm_connector(chosen)
            return self._graph.account(chosen, self.store, self.connection, crm)
        chosen = settings or self.effective_settings()
        self._provider.map_custom({kind: chosen.custom_map(kind) for kind in model.KINDS})
        return self._provider

    def close(self) -> None:
        """Stop the reference CRM's and the Google sandbox's servers, when there are
        any (they also stop when the world is garbage collected)."""
        if self._reference is not None:
            self._reference.close()
        if self._google is not None:
            self._google.close()
        if self._graph is not None:
            self._graph.close()

    def sync(self, trigger: str = "schedule") -> dict[str, Any]:
        """Run one cycle through the use case the `sync_worker` function calls
        (`service.work`): the same inputs, read the same way, and the same bookkeeping
        after it. Returns the run record; a crashed run returns status "crashed"."""
        holder = self.store.lease_holder(self.connection.id)
        if holder in self._dead_runs:  # the retry comes once the dead run's lease expired
            self.advance(timedelta(seconds=LEASE_SECONDS + 1))
        self._runs += 1
        if self.store.connection_record(self.connection.id) is None:
            self.onboard()  # a new store: connected afresh (SYN-9)
        side = self._google or self._graph
        armed = side.armed() if side is not None else contextlib.nullcontext()
        reads, writes = self.store.reads, self.store.writes
        try:
            with armed:
                run = service.work(
                    self.services, self.connection.tenant, self.connection.id, trigger
                )
        except Crash:
            self._worked(reads, writes)
            dead = str(self.store.lease_holder(self.connection.id))
            self._dead_runs.add(dead)
            counts: dict[str, Any] = next((r["counts"] for r in self.runs() if r["id"] == dead), {})
            return {"id": dead, "status": "crashed", "counts": counts, "errors": []}
        self._worked(reads, writes)
        return run

    def _worked(self, reads: int, writes: int) -> None:
        """`cost`: the store operations of the worker's last cycle, the world's own apart
        (each one a Firestore document operation over the Firestore store)."""
        self.cost = {"reads": self.store.reads - reads, "writes": self.store.writes - writes}

    def _crm_for(
        self, tenant: str, tenant_record: Mapping[str, Any], crm_user: str, settings: Settings
    ) -> CrmConnector:
        """The world's CRM as the worker reaches it: as `crm_user`, in their sync group."""
        group = settings["contact_group"]
        if self._reference is not None:
            return self._reference.connector(crm_user, group, self.faults.after_write)
        return self._crm.connector(crm_user, group)

    # -- what happened ------------------------------------------------------------------
    def queue(self) -> list[dict[str, Any]]:
        return self.store.queue(self.connection.id)

    def waiting(self) -> list[dict[str, Any]]:
        """The queue as the user sees it (`crmsync.usecases.queue.waiting`)."""
        return queue_cases.waiting(self.services, self.connection.tenant, self.connection.id)

    def resolve(
        self, item_id: str, choice: str | None = None, picks: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The user settles a queue item: a side ("crm", "provider"), an action the item
        offers ("confirm", "restore", ...), or a side per conflicting field (`picks`); the
        next `sync()` applies it. A bad answer raises `service.Refused`."""
        return queue_cases.resolve(
            self.services, self.connection.tenant, self.connection.id, item_id, choice, picks
        )

    def settle_batch(self, batch: str, action: str) -> int:
        """SYN-6: confirm or restore every delete of one held mass-delete batch."""
        return queue_cases.settle_batch(
            self.services, self.connection.tenant, self.connection.id, batch, action
        )

    def links(self, kind: Kind) -> list[dict[str, Any]]:
        return [
            {
                "key": link.key,
                "crm_id": link.crm_id,
                "provider_id": link.provider_id,
                "state": link.state,
                "crm_version": link.crm_version,
                "provider_version": link.provider_version,
                "base": model.to_plain(dict(link.base)),
            }
            for link in self.store.links(self.connection.id, kind)
        ]

    def runs(self) -> list[dict[str, Any]]:
        return self.store.runs(self.connection.id)

    def history(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Record-level items of one run (the last one by default)."""
        runs = self.runs()
        if not runs:
            return []
        return self.store.items(self.connection.id, run_id or runs[-1]["id"])


class _OneTenant:
    """The world's store as the worker's backend finds it (one tenant)."""

    def __init__(self, world: SyncWorld) -> None:
        self._world = world

    def store(self, tenant: str) -> Any:
        return self._world.store

    def due(self, now: datetime, limit: int, after: Any = None) -> list[Any]:
        """The world's connection, when it is due (it is the one page there is)."""
        connection = self._world.connection
        record = self._world.store.connection_record(connection.id)
        when = (record or {}).get("next_due")
        if after is not None or limit < 1 or when is None or when > now:
            return []
        return [Due(when, connection.tenant, connection.id, record)]

    def sessions(self) -> Any:
        from crmsync.store.memory import MemorySessions

        return MemorySessions()

    def expiring_channels(self, before: datetime, limit: int) -> list[Any]:
        return []

    def expiring_mailboxes(self, before: datetime, limit: int) -> list[tuple[str, str]]:
        return []

    def set_next_due_many(self, items: Any) -> None:
        for item in items:
            self._world.store.save_connection_record(
                item.connection, {"next_due": item.when, "full_due": item.full}
            )


class _WorldKit:
    """The world's provider side as a provider kit gives the worker its adapters; it
    pushes the kinds the world's provider pushes (the scheduler polls the others)."""

    def __init__(self, world: SyncWorld) -> None:
        self._world = world
        kit = providers.kit(world.connection.provider)
        self.label = kit.label
        self.pushed = kit.pushed

    def available(self, services: Any) -> bool:
        return True

    def mail_account(self, services: Any, grants: Any, connection: str) -> MemoryMailbox:
        mailbox = self._world.mailbox
        assert isinstance(mailbox, MemoryMailbox)  # a memory world's
        return mailbox

    def stop_push(
        self, services: Any, grants: Any, connection: str, settings: Settings, channel: Any
    ) -> None:
        """The world's provider holds no channels: one a test keeps in the directory
        ends when crmsync forgets it."""

    def choices(
        self, services: Any, tenant: str, connection: ConnectionRecord, what: str
    ) -> list[dict[str, str]]:
        """The memory account has one calendar and one task list, and its contacts are
        under the label the settings name."""
        label = str(self._world.effective_settings()["contact_label"])
        labels = [label, *sorted(set(self._world._provider.groups) - {label})]
        lists = {
            "calendar": [{"id": "primary", "label": "Calendar"}],
            "task_list": [{"id": "default", "label": "Tasks"}],
            "contact_scope": [{"id": name, "label": name} for name in labels],
        }
        if what not in lists:
            raise ValueError(f"the memory account lists no {what!r}")
        return lists[what]

    def account(
        self,
        services: Any,
        store: Any,
        grants: Any,
        record: ConnectionRecord,
        settings: Settings,
        crm: Any,
        kinds: Any = model.KINDS,
        dry_run: bool = False,
    ) -> tuple[ProviderAccount, None]:
        return self._world.provider_account(settings), None  # no push channels here

    def address_book(
        self,
        services: Any,
        tenant: str,
        connection: ConnectionRecord,
        settings: Settings,
        label: str,
    ) -> list[SideRecord]:
        """Every contact of the memory account ("" for `label`), or those under one of
        its labels (the sync label, or one of the user's own)."""
        self._world.provider_account(settings)  # the custom mapping, as a cycle's
        provider = self._world._provider
        members: set[str] | None = None
        if label.casefold() == str(settings["contact_label"]).casefold():
            members = provider.labelled
        elif label:
            members = provider.groups.get(label, set())
        return provider.address_book(members)


def _provider_backend(provider: str, chosen: ProviderBackend | None) -> ProviderBackend:
    """The provider backend asked for, else the environment's (CRMSYNC_WORLD_PROVIDER),
    else memory. Each sandbox serves its own provider's worlds only: a world of the other
    provider named through the environment stays in memory, one asked for explicitly is
    refused."""
    backend = chosen or os.environ.get("CRMSYNC_WORLD_PROVIDER", "memory")
    if backend == "memory":
        return "memory"
    if backend not in _SANDBOXES:
        raise ValueError(
            f"provider_backend is 'memory', 'google-sandbox' or 'graph-sandbox', not {backend!r}"
        )
    if _SANDBOXES[backend] != provider:
        if chosen is not None:
            served = "Google" if _SANDBOXES[backend] == "google" else "Microsoft"
            raise ValueError(f"the {backend} provider backend serves {served} worlds only")
        return "memory"
    return "google-sandbox" if backend == "google-sandbox" else "graph-sandbox"
