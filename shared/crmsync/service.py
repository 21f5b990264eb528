"""The use cases behind crmsync's Cloud Functions, over the ports: onboarding, the
scheduler's fan-out, the worker's cycle, push notifications, CRM change events and the
admin status. `crmsync.entrypoints` turns HTTP requests into calls of these; tests call
them with the memory backend and the same adapters production uses.

Every use case resolves the tenant from authenticated input (a signed link, a signed
state, a channel token, an event signature, an admin token), never from an id a client
merely names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from crmsync import providers
from crmsync.auth.state import ADMIN_CONSENT, Consent, begin, finish, keep_secret
from crmsync.auth.vault import TokenVault
from crmsync.bursts import ChannelLookups
from crmsync.connections import Grants
from crmsync.crm import events
from crmsync.errors import GrantRevoked, PermanentError, SyncError
from crmsync.model import KINDS, Kind
from crmsync.outbound import NoEvents, connection_event, cycle_events, publish_all
from crmsync.outbound import needs_reauth as needs_reauth_event
from crmsync.ports import (
    AttachmentStore,
    Backend,
    ChannelDirectory,
    Connection,
    ConnectionRecord,
    ConnectionState,
    CrmConnector,
    CrmFactory,
    CrmUser,
    Due,
    EventStream,
    NextDue,
    PushAnswer,
    PushRequest,
    RunOutcome,
    RunStatus,
    RunSummary,
    StateStore,
    TaskQueue,
    TenantStore,
)
from crmsync.queue import CHECK, DEBOUNCE, IMPORT, MAIL, POLL, scope, task_name
from crmsync.settings import PROVIDERS, SERVICES, Settings, SettingsError, TenantSettings, resolve

log = logging.getLogger("crmsync.service")

if TYPE_CHECKING:  # the cycle, its planner and the CRM client load at their first use
    from crmsync.cycle import Planned
    from crmsync.engine import SideRecord

LINK_TTL = timedelta(days=7)  # how long an onboarding link may be opened
LINK_MADE = "link_made"  # the user record's time of the user's last onboarding link
STUCK_AFTER = timedelta(minutes=45)  # a run this long past its lease is stuck (RUN-2)
STALE_AFTER = timedelta(hours=24)  # no good cycle for this long: cursors are stale
RECENT_RUNS = 5  # the outcomes of a connection's last cycles its record keeps
FAILING_RUNS = 3  # this many bad cycles in a row: failing, not a record retried once
RENEW_WITHIN = timedelta(days=1)  # RUN-5: channels renewed a day before they expire
BUDGET_SECONDS = 20 * 60.0  # RUN-6: a cycle yields before the 30-minute task deadline
# Due connections a query: fewer, larger pages cost less (bench/fanout.py: 136 s for
# 100k in pages of 2,000, 82-94 s in pages of 10,000). At most three pages are held.
FANOUT_PAGE = 10_000
# Cloud Tasks calls in flight while a page is enqueued: a create takes tens of
# milliseconds in production, so at 16 the fan-out waited on the network, not its CPU.
FANOUT_THREADS = 32
DUE_NAMES = timedelta(milliseconds=1)  # a scheduled task's name: its connection's due time
CRM_ID = re.compile(r"[A-Za-z0-9._:@-]{1,200}")  # the CRM contract's Id (X-Crm-User)


class Refused(Exception):
    """A request crmsync turns down: `status` is the HTTP status, the message the reason
    the caller reads (never a secret); `next_step` tells a person what to do about it,
    and `page` names a page of its own (template, values) for people to see instead.
    `headers` go with the answer where HTTP asks for them (a 401's WWW-Authenticate)."""

    def __init__(
        self,
        status: int,
        reason: str,
        next_step: str = "",
        page: tuple[str, Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.next_step = next_step
        self.page = page
        self.headers = dict(headers or {})


@dataclass
class Services:
    """What the use cases run on; built once per function instance."""

    backend: Backend
    queue: TaskQueue
    vault: TokenVault
    secret: bytes  # signs onboarding links and OAuth states
    public_url: str  # where crmsync's HTTP functions answer, e.g. https://.../
    providers: Mapping[str, Any] = field(default_factory=dict)  # each kit's setup, by name
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    crm_options: Mapping[str, Any] = field(default_factory=dict)
    events: EventStream = field(default_factory=NoEvents)  # BEY-7: the outbound stream
    lookups: ChannelLookups = field(default_factory=ChannelLookups)  # this instance's
    # Adapters other than the installed ones, for the same use cases: a kit per provider
    # name, and how a cycle reaches the CRM (SyncWorld's memory systems); by default the
    # providers' own kits and the CRM's REST API.
    kits: Mapping[str, Any] = field(default_factory=dict)
    crm_connector: CrmFactory | None = None
    # EML-2: where attachments too large for the CRM are kept (none: they are named only)
    attachments: AttachmentStore | None = None
    # RUN-3: how long a change waits for the others of its burst before its cycle runs
    debounce: timedelta = DEBOUNCE

    def url(self, function: str) -> str:
        return self.public_url.rstrip("/") + "/" + function

    def kit(self, provider: str) -> Any:
        """The kit of `provider`; KeyError for a provider this installation has none of."""
        return self.kits[provider] if provider in self.kits else providers.kit(provider)

    def provider_names(self) -> tuple[str, ...]:
        installed = providers.names()
        return tuple(p for p in PROVIDERS if p in self.kits or p in installed)

    def channels(self) -> ChannelDirectory:
        directory: ChannelDirectory = self.backend.store("")  # channels are global
        return self.lookups.over(directory)


# -- tenants (set up by the vendor's operator, or `make dev`'s seed) ---------------------
def create_tenant(
    services: Services,
    tenant: str,
    *,
    name: str,
    crm_base_url: str,
    crm_token: str,
    event_secret: str,
    settings: Mapping[str, Any] | None = None,
    seats: int = 10,
    allowed_providers: Sequence[str] | None = None,
    allowed_services: Sequence[str] | None = None,
    admins: Sequence[str] | None = None,
    crm_record_url: str | None = None,
) -> str:
    """Register a tenant with its CRM; returns the tenant admin's token (shown once).
    `allowed_providers` and `allowed_services` ("sync", "mail") are what its users may
    connect (SET-2; all when not given); `admins` the users (ids or e-mail addresses)
    who sign in to the web app as its admins. `crm_record_url`, a template such as
    `https://crm.example/{kind}/{id}`, is where a person opens a record in the CRM
    (HIS-4). Everything is checked before anything is written: a refused registration
    leaves the store as it was."""
    _check_tenant(tenant, name, crm_base_url, seats, (crm_token, event_secret))
    if crm_record_url is not None:
        _check_record_url(crm_record_url)
    try:  # SET-2: tenant defaults and what the tenant allows must be valid
        TenantSettings(
            settings or {},
            tuple(allowed_providers or PROVIDERS),  # type: ignore[arg-type]
            tuple(allowed_services or SERVICES),
        )
    except SettingsError as exc:
        raise Refused(400, str(exc)) from exc
    admin_secret = secrets.token_urlsafe(32)
    store = services.backend.store(tenant)
    record: dict[str, Any] = {
        "name": name,
        "crm": {"base_url": crm_base_url}
        | ({"record_url": crm_record_url} if crm_record_url else {}),
        "crm_token": services.vault.seal(crm_token.encode(), f"{tenant}/crm-token"),
        "event_secret": services.vault.seal(event_secret.encode(), f"{tenant}/event-secret"),
        "admin_token_digest": _digest(admin_secret),
        "seats": seats,
    }
    new = store.tenant_record() is None
    if settings is not None or new:  # a re-registration (to rotate secrets) keeps the
        record["settings"] = dict(settings or {})  # settings and what the tenant allows
    if allowed_providers is not None or new:
        record["providers"] = list(allowed_providers or PROVIDERS)
    if allowed_services is not None or new:
        record["services"] = list(allowed_services or SERVICES)
    if admins is not None or new:
        record["admins"] = [str(a).strip() for a in admins or () if str(a).strip()]
    store.save_tenant_record(record)
    return f"{tenant}.{admin_secret}"


def _check_tenant(
    tenant: str, name: str, crm_base_url: str, seats: int, crm_secrets: tuple[str, str]
) -> None:
    """A tenant's registration names what crmsync needs to reach its CRM."""
    if not safe_id(tenant):
        raise Refused(400, "tenant ids are 1-64 letters, digits, '-' or '_'")
    if not name.strip():
        raise Refused(400, "a tenant needs a name")
    address = urlsplit(crm_base_url)
    if address.scheme not in ("https", "http") or not address.hostname:
        raise Refused(400, "the CRM's base URL is not an http(s) address")
    if seats < 0:
        raise Refused(400, "seats cannot be fewer than 0")
    if not all(crm_secrets):
        raise Refused(400, "the CRM's API token and its event secret cannot be empty")


def _check_record_url(template: str) -> None:
    """A CRM record's address: http(s), with the record's {id} (and maybe its {kind})."""
    filled = template.replace("{kind}", "k").replace("{id}", "i")
    address = urlsplit(filled)
    if address.scheme not in ("https", "http") or not address.hostname:
        raise Refused(400, "the CRM's record URL is not an http(s) address")
    if "{" in filled or "}" in filled:
        raise Refused(400, "the CRM's record URL may name only {kind} and {id}")
    if "{id}" not in template:
        raise Refused(400, "the CRM's record URL must name the record's {id}")


ADMIN_REALM = "crmsync admin"
_ADMIN_TOKEN_STEP = (
    "Use the admin token you were given when your tenant was registered. Whoever "
    "registered it (crmsync tenant) can register it again for a new token."
)


def admin_tenant(services: Services, authorization: str | None) -> str:
    """The tenant whose admin token `Authorization: Bearer <token>` carries. A request
    with no token is told to send one; one whose token is not the tenant's is told that
    token was not accepted (RFC 6750: `error="invalid_token"`), whether the tenant is
    unknown or the secret wrong, so the answer tells no one which tenants exist."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(
            401,
            "no admin token was given: send the tenant's admin token as "
            "'Authorization: Bearer <admin token>'",
            _ADMIN_TOKEN_STEP,
            headers={"WWW-Authenticate": f'Bearer realm="{ADMIN_REALM}"'},
        )
    tenant, _, admin_secret = token.strip().partition(".")
    record = services.backend.store(tenant).tenant_record() if safe_id(tenant) else None
    kept = (record or {}).get("admin_token_digest", "")
    if not admin_secret or not kept or not hmac.compare_digest(kept, _digest(admin_secret)):
        named = f"tenant {tenant!r}" if safe_id(tenant) else "any tenant"
        raise Refused(
            401,
            f"the admin token was not accepted: it is not valid for {named} "
            "(an admin token reads <tenant>.<secret>)",
            _ADMIN_TOKEN_STEP,
            headers={"WWW-Authenticate": f'Bearer realm="{ADMIN_REALM}", error="invalid_token"'},
        )
    return tenant


# -- onboarding (AUTH-1, AUTH-2, AUTH-6) --------------------------------------------------
@dataclass(frozen=True)
class IssuedLink:
    """An onboarding link, and the CRM user it maps its user to."""

    url: str
    user: str
    crm_user: str


def onboarding_link(
    services: Services,
    tenant: str,
    user: str,
    *,
    crm_user: str | None = None,
    ttl: timedelta = LINK_TTL,
    directory: Collection[str] | None = None,
) -> str:
    """AUTH-1: the link a tenant admin sends a user: it names the tenant and the CRM user,
    signed, and expires. The user picks the provider and services on opening it.
    `crm_user` maps the user to their CRM user (AUTH-5; by default the one they are
    mapped to, else their own id); a connected user keeps theirs. `directory` is the
    CRM's user ids when the caller read them already (a batch reads them once).
    Everything is checked before the user record is written: a refused link leaves the
    store as it was."""
    return issue_link(services, tenant, user, crm_user=crm_user, ttl=ttl, directory=directory).url


def issue_link(
    services: Services,
    tenant: str,
    user: str,
    *,
    crm_user: str | None = None,
    ttl: timedelta = LINK_TTL,
    directory: Collection[str] | None = None,
) -> IssuedLink:
    """`onboarding_link`, with the CRM user the link maps its user to. A new link for a
    user does not revoke their earlier ones: each works until it expires. The user
    record keeps when the last link was made (never the link)."""
    if not safe_id(tenant):
        raise Refused(400, "tenant ids are 1-64 letters, digits, '-' or '_'")
    if not safe_id(user):
        raise Refused(400, "user ids are 1-64 letters, digits, '-' or '_'")
    if crm_user is not None and not CRM_ID.fullmatch(crm_user):
        raise Refused(400, "CRM user ids are 1-200 letters, digits, '.', '_', ':', '@' or '-'")
    store = services.backend.store(tenant)
    tenant_record = store.tenant_record()
    if tenant_record is None:
        raise Refused(404, f"no such tenant: {tenant}")
    mapped = (store.user_record(user) or {}).get("crm_user")
    wanted = crm_user or mapped or user
    if mapped and wanted != mapped and _connected(store, user):
        raise Refused(
            409,
            f"{user} is connected as CRM user {mapped}; disconnect them before mapping "
            f"them to {wanted}",
        )
    if directory is None:
        directory = _crm_user_ids(services, tenant, tenant_record)
    if directory is not None and wanted not in directory:
        raise Refused(
            404,
            f"{wanted} is not an active user of the tenant's CRM",
            "Name the CRM user they are: --crm-user on the command line, the crm_user "
            "column in a file.",
        )
    now = services.clock()
    expires = int((now + ttl).timestamp())
    payload = _b64(
        json.dumps({"t": tenant, "u": user, "e": expires, "i": now.timestamp()}).encode()
    )
    link = f"{payload}.{_mac(services.secret, payload)}"
    url = services.url("oauth_start") + "?" + urlencode({"link": link})
    store.save_user_record(user, {"crm_user": wanted, LINK_MADE: now})
    return IssuedLink(url, user, wanted)


def crm_directory(
    services: Services, tenant: str, tenant_record: Mapping[str, Any]
) -> list[CrmUser]:
    """The tenant's active CRM users (its user directory, `GET /users`), asked once,
    briefly: raises what reaching the CRM raised."""
    if services.crm_connector is not None:
        # only the directory is asked: any provider's settings build the connector
        crm = services.crm_connector(tenant, tenant_record, "", resolve(PROVIDERS[0]))
    else:
        from crmsync.crm.rest import RestCrmConnector

        token = services.vault.open(tenant_record["crm_token"], f"{tenant}/crm-token")
        crm = RestCrmConnector(
            tenant_record["crm"]["base_url"],
            token.decode(),
            "",
            None,
            **{**dict(services.crm_options), "attempts": 1, "timeout": 5.0},
        )
    return crm.directory()


def _crm_user_ids(
    services: Services, tenant: str, tenant_record: Mapping[str, Any]
) -> frozenset[str] | None:
    """AUTH-1, AUTH-5: the CRM users a link may be made for (no link for a user the
    tenant's CRM says it does not have: that account could connect but never sync).
    None when the CRM cannot be asked now: that does not stop the link (the first cycle
    says so then)."""
    try:
        return frozenset(person.id for person in crm_directory(services, tenant, tenant_record))
    except Exception as exc:  # unreachable, refused, not set up: the link is still made
        log.warning(
            "crm directory not checked", extra={"tenant": tenant, "error": type(exc).__name__}
        )
        return None


def _connected(store: TenantStore, user: str) -> bool:
    """Whether the user has a live connection with any provider."""
    return any(record.live for record in _connections_of_user(store, user))


def _connections_of_user(store: TenantStore, user: str) -> list[ConnectionRecord]:
    """The user's connections, one per provider: a read each, however many users the
    tenant has (a CRM event of one user must not read the tenant's every connection)."""
    if not safe_id(user):
        return []
    found = (connection_of(store, connection_id(user, p)) for p in PROVIDERS)
    return [record for record in found if record is not None]


@dataclass(frozen=True)
class OnboardingLink:
    """Who an onboarding link was made for, and when."""

    tenant: str
    user: str
    issued: float  # unix seconds; 0 for links made before links carried it


def read_link(services: Services, link: str | None) -> OnboardingLink:
    """The tenant and user an onboarding link was made for, if crmsync made it and it
    has not expired."""
    payload, _, signature = (link or "").partition(".")
    if not payload or not hmac.compare_digest(
        _mac(services.secret, payload).encode(), signature.encode(errors="replace")
    ):
        raise Refused(400, "the onboarding link is not one crmsync issued")
    try:
        data = json.loads(_unb64(payload))
        tenant, user, expires = str(data["t"]), str(data["u"]), float(data["e"])
        issued = float(data.get("i", 0.0))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # signed, yet unreadable
        raise Refused(400, "the onboarding link is not one crmsync issued") from exc
    if expires <= services.clock().timestamp():
        raise Refused(410, "the onboarding link expired")
    return OnboardingLink(tenant, user, issued)


@dataclass(frozen=True)
class ConnectChoice:
    """What the page behind an onboarding link offers: the providers, the account the
    user's connection is bound to (if any), and whether this link may switch it."""

    link: OnboardingLink
    providers: tuple[str, ...]
    services: tuple[str, ...]  # what the tenant allows its users to connect (SET-2)
    bound: str = ""  # the bound account's address
    status: str = ""  # the bound connection's status
    may_switch: bool = False


def connect_choice(services: Services, link: str | None) -> ConnectChoice:
    """AUTH-1: what the user who opened `link` may do. A link made before the user's
    connection was bound to its account may only reconnect that account; switching to
    another account takes a link made after (so nobody who merely holds an old link can
    attach their own account to the user's CRM data)."""
    opened = read_link(services, link)
    store = services.backend.store(opened.tenant)
    allowed_providers, allowed_services = tenant_allows(store.tenant_record() or {})
    offered = tuple(
        p for p in services.provider_names() if p in allowed_providers and _connectable(services, p)
    )
    for provider in offered:
        record = connection_of(store, connection_id(opened.user, provider))
        if record is not None and record.live:
            return ConnectChoice(
                opened,
                offered,
                allowed_services,
                record.account or "your account",
                record.status,
                _may_switch(opened.issued, record),
            )
    return ConnectChoice(opened, offered, allowed_services)


def tenant_allows(tenant_record: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The providers and services (SERVICES) the tenant lets its users connect (SET-2);
    a tenant registered before it could say allows all."""
    return (
        tuple(tenant_record.get("providers") or PROVIDERS),
        tuple(s for s in SERVICES if s in (tenant_record.get("services") or SERVICES)),
    )


def connections_of(store: TenantStore) -> list[ConnectionRecord]:
    """Every connection of the tenant, typed, in id order."""
    return [ConnectionRecord.of(data) for data in store.connection_records()]


def connection_of(store: TenantStore, connection: str) -> ConnectionRecord | None:
    """The connection's record, typed; None when there is no such connection."""
    data = store.connection_record(connection)
    return ConnectionRecord.of(data) if data is not None else None


def _may_switch(link_issued: float, record: ConnectionRecord) -> bool:
    bound = record.bound or record.created
    return bound is not None and link_issued > _aware(bound).timestamp()


def _connectable(services: Services, provider: str) -> bool:
    return provider in services.provider_names() and bool(
        services.kit(provider).available(services)
    )


def start_oauth(
    services: Services,
    link: str | None,
    provider: str,
    wanted: tuple[str, ...],
    *,
    switch: bool = False,
    preview: bool = False,
) -> str:
    """AUTH-1/AUTH-2: where to send the user to consent, for the services they chose;
    `switch`: to replace the account the user's connection is bound to; `preview`: the
    first sync waits until the user starts it from its preview (BEY-3)."""
    choice = connect_choice(services, link)
    if provider not in choice.providers:
        raise Refused(400, "that provider cannot be connected here")
    if not wanted or not set(wanted) <= set(SERVICES):
        raise Refused(
            400,
            "nothing was chosen to sync",
            "Go back, tick at least one box, and click Connect again.",
        )
    if not set(wanted) <= set(choice.services):
        raise Refused(
            403,
            "your company does not use crmsync for that",
            "Go back and choose only what the page offers.",
        )
    if switch and not choice.may_switch:
        raise Refused(
            403,
            "this link can only reconnect the account your CRM user is connected to",
            "To connect a different account, ask your admin for a new onboarding link.",
        )
    started = begin(
        services.secret,
        _states(services),
        tenant=choice.link.tenant,
        user=choice.link.user,
        provider=provider,
        services=wanted,
        now=services.clock(),
        switch=switch,
        link_issued=choice.link.issued,
        preview=preview,
    )
    hint = choice.bound if choice.bound and not switch and "@" in choice.bound else ""
    consent: Consent = services.kit(provider).consent(services, wanted, started, hint)
    if consent.secret is not None:  # the provider's library made the flow's own secrets
        keep_secret(_states(services), started, consent.secret)
    return consent.url


def finish_oauth(services: Services, state: str | None, code: str | None) -> dict[str, Any]:
    """The OAuth callback: the grant sealed, the connection made (or re-authorized), its
    push channel opened (replacing the ones it had) and its first cycle enqueued.
    Returns the connection record, with `switched` naming the account it replaced.
    BEY-3: a user who asked to see the first sync's preview first gets no cycle until
    they start it there (the connection waits, `preview_first`).

    A connection is bound to the account that first consented (its stable subject id):
    a consent as another account is refused and changes nothing, unless the user chose
    to switch on a link made after the binding; then the old account is disconnected
    first (its grant revoked, channels stopped, links and cursors forgotten, nothing
    deleted on either side) and the new one connects from scratch (SYN-9)."""
    from crmsync.auth.state import BadState

    again = "Open your onboarding link again and sign in once more."
    try:
        pending = finish(services.secret, _states(services), state, services.clock())
    except BadState as exc:
        log.info("sign-in state refused", extra={"error": str(exc)})
        raise Refused(400, "this sign-in page was already used or is out of date", again) from exc
    if not code:
        raise Refused(400, "the sign-in did not finish, so nothing was connected", again)
    if not _connectable(services, pending.provider):
        raise Refused(400, "that provider cannot be connected here")
    kit = services.kit(pending.provider)
    tenant, user = pending.tenant, pending.user
    store = services.backend.store(tenant)
    allowed_providers, allowed_services = tenant_allows(store.tenant_record() or {})
    if pending.provider not in allowed_providers or not set(pending.services) <= set(
        allowed_services
    ):  # the tenant changed what it allows while the user was at the consent screen
        raise Refused(403, "your company does not use crmsync for that", again)
    connection = connection_id(user, pending.provider)
    existing = connection_of(store, connection)
    if existing is not None and not existing.live:
        existing = None
    try:
        grant = kit.exchange(services, pending.services, code, pending.verifier)
    except PermanentError as exc:
        log.warning("grant not confirmed", extra={"error": type(exc).__name__})
        refused = "the sign-in could not be confirmed, so nothing was connected"
        raise Refused(400, refused, again) from exc
    switched = ""
    if existing is not None and not _same_account(existing, grant):
        _refuse_other_account(existing, grant, pending, services.kit(pending.provider).label)
        switched = existing.account
        disconnect(services, tenant, connection, reason="switched account")
        existing = None
    if existing is None:
        _check_seats(store)  # AUTH-6: existing connections go on; a new one may not
    Grants(store, services.vault, tenant).save(connection, grant)
    now = services.clock()
    kept = existing.services if existing is not None else ()
    merged = sorted(set(pending.services) | set(kept))
    waits = "sync" in merged and _waits_for_go(existing, pending.preview)
    user_record = store.user_record(user) or {}
    crm_user = str(user_record.get("crm_user") or user)
    store.save_connection_record(
        connection,
        {
            "user": user,
            "provider": pending.provider,
            "account": grant.email,
            "subject": grant.subject,
            "bound": (existing.bound if existing else None) or now,
            "services": merged,
            "settings": dict(existing.settings) if existing else {},
            "created": (existing.created if existing else None) or now,
            "consented": now,
            "status": ConnectionState.ACTIVE,
            "reason": "",
            # mail is pushed, never polled; a first sync waiting for the user is not due
            "next_due": now if "sync" in merged and not waits else None,
            "enabled": user_record.get("enabled") is not False,  # SET-6
            "crm_user": crm_user,  # a cycle needs no read of the user's record for it
            "preview_first": waits,
            "routed": bool(grant.subject),
        },
    )
    if grant.subject:  # CTX-1: the mail client's pane finds the connection by its account
        store.save_account(pending.provider, grant.subject, tenant, connection)
    store.mark_syncing(crm_user, True)  # CAL-6: colleagues' cycles know
    if "sync" in pending.services:
        problem = _open_channel(services, tenant, connection)
        store.save_connection_record(connection, {"channel_problem": problem})
    if "mail" in pending.services:
        problem = _route_mailbox(services, store, tenant, connection)
        store.save_connection_record(connection, {"mail_problem": problem})
        # EML-1: the first pass makes the labels, watches the mailbox and records what
        # the user tagged already
        enqueue_cycle(services, tenant, connection, MAIL, delay=timedelta(0))
    if not waits:
        enqueue_cycle(services, tenant, connection, "connect", delay=timedelta(0))
    log.info("connected", extra={"tenant": tenant, "connection": connection})
    connected = {
        "provider": pending.provider,
        "services": sorted(pending.services),
        "reconnected": existing is not None,
    }
    publish_all(
        services.events,
        [connection_event("connection.connected", tenant, connection, user, now, connected)],
    )
    record: dict[str, Any] | None = store.connection_record(connection)
    assert record is not None
    return {**record, "switched": switched}


def _waits_for_go(existing: ConnectionRecord | None, asked: bool) -> bool:
    """BEY-3: the connection's first sync waits for the user: they asked to preview it
    and it has not run yet, or it was waiting already (a reconnect does not start it)."""
    if existing is not None and existing.preview_first:
        return True
    return asked and (existing is None or existing.last_run is None)


# -- organisation-wide consent ------------------------------------------------------------
def admin_consent_link(
    services: Services, tenant: str, provider: str, *, ttl: timedelta = LINK_TTL
) -> str:
    """AUTH-1: the link an operator sends a tenant's directory admin, who approves
    crmsync for the whole organisation at the provider, so its users are not each asked
    (where the provider has such a consent). Signed apart from onboarding links, so
    neither can stand for the other; it expires. Nothing is written."""
    if not safe_id(tenant):
        raise Refused(400, "tenant ids are 1-64 letters, digits, '-' or '_'")
    record = services.backend.store(tenant).tenant_record()
    if record is None:
        raise Refused(404, f"no such tenant: {tenant}")
    if provider not in services.provider_names() or not callable(
        getattr(services.kit(provider), "admin_consent", None)
    ):
        raise Refused(400, f"{provider} has no organisation-wide consent")
    label = services.kit(provider).label
    if not _connectable(services, provider):
        raise Refused(400, f"{label} is not set up in this deployment")
    if provider not in tenant_allows(record)[0]:
        raise Refused(400, f"tenant {tenant} does not let its users connect {label}")
    expires = int((services.clock() + ttl).timestamp())
    payload = _b64(json.dumps({"t": tenant, "p": provider, "e": expires}).encode())
    signed = f"{payload}.{_mac(services.secret, ADMIN_CONSENT + payload)}"
    return services.url("oauth_start") + "?" + urlencode({"admin": signed})


def start_admin_consent(services: Services, link: str | None) -> str:
    """Where the admin who opened an organisation-wide consent link approves crmsync."""
    payload, _, signature = (link or "").partition(".")
    expected = _mac(services.secret, ADMIN_CONSENT + payload)
    if not payload or not hmac.compare_digest(expected.encode(), signature.encode("utf-8")):
        raise Refused(400, "the consent link is not one crmsync issued")
    try:
        data = json.loads(_unb64(payload))
        tenant, provider, expires = str(data["t"]), str(data["p"]), float(data["e"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise Refused(400, "the consent link is not one crmsync issued") from exc
    if expires <= services.clock().timestamp():
        raise Refused(410, "the consent link expired", "Ask for a new one.")
    if not _connectable(services, provider):
        raise Refused(400, "that provider cannot be connected here")
    started = begin(
        services.secret,
        _states(services),
        tenant=tenant,
        user="",
        provider=provider,
        services=(),
        now=services.clock(),
        kind=ADMIN_CONSENT,
    )
    return str(services.kit(provider).admin_consent(services, started))


def is_admin_consent(state: str | None) -> bool:
    """Whether a callback's state is an organisation-wide consent's (not a user's)."""
    return (state or "").startswith(ADMIN_CONSENT)


def finish_admin_consent(
    services: Services, state: str | None, answer: Mapping[str, str]
) -> dict[str, Any]:
    """The callback of an organisation-wide consent: the provider's answer checked by
    its kit, and the organisation that approved kept in the tenant record."""
    from crmsync.auth.state import BadState

    again = "Open the consent link again, or ask for a new one."
    try:
        pending = finish(services.secret, _states(services), state, services.clock())
    except BadState as exc:
        raise Refused(400, "this consent page was already used or is out of date", again) from exc
    if answer.get("error"):
        raise Refused(400, "your organisation's consent was not given", again)
    if not _connectable(services, pending.provider):
        raise Refused(400, "that provider cannot be connected here")
    kit = services.kit(pending.provider)
    try:
        directory = str(kit.admin_consented(services, answer))
    except PermanentError as exc:
        raise Refused(400, "the consent could not be confirmed", again) from exc
    store = services.backend.store(pending.tenant)
    record = store.tenant_record() or {}
    approved = dict(record.get("admin_consent") or {})
    approved[pending.provider] = {"directory": directory, "at": services.clock()}
    store.save_tenant_record({"admin_consent": approved})
    log.info("organisation consented", extra={"tenant": pending.tenant})
    return {"provider": pending.provider, "label": kit.label, "directory": directory}


def _same_account(record: ConnectionRecord, grant: Any) -> bool:
    """Whether `grant` is of the account the connection is bound to. A connection made
    before connections were bound knows at most its account's address (or the name of
    its calendar, when its user had renamed it: then nothing is known)."""
    if record.subject:
        return bool(grant.subject == record.subject)
    known = record.account.casefold()
    return "@" not in known or known == str(grant.email).casefold()


def _refuse_other_account(record: ConnectionRecord, grant: Any, pending: Any, label: str) -> None:
    """A consent as another account than the bound one changes nothing, unless the user
    chose to switch on a link made after the binding. The new grant is dropped, not
    revoked: revoking it would end that account's grant to crmsync everywhere, also a
    connection of its own."""
    if pending.switch and _may_switch(pending.link_issued, record):
        return
    log.warning(
        "consent as another account refused",
        extra={"tenant": pending.tenant, "user": pending.user},
    )
    bound = record.account if "@" in record.account else "another account"
    given = grant.email or "an account whose address the provider did not give"
    raise Refused(
        409,
        f"your CRM user is connected to {bound}; you signed in as {given}",
        page=(
            "account_mismatch.html",
            {"bound": bound, "given": given, "provider": label},
        ),
    )


def connection_id(user: str, provider: str) -> str:
    """One connection per CRM user and provider; readable and safe as a document id."""
    return f"{provider}-{user}"


@dataclass(frozen=True)
class Seats:
    """AUTH-6: how many connections the tenant's plan allows, and how many are live."""

    used: int
    allowed: int


def seats_of(store: TenantStore, connections: Sequence[ConnectionRecord] | None = None) -> Seats:
    """AUTH-6: every connection not disconnected takes a seat (one per user and
    provider), turned off or not; `connections` when the caller listed them already."""
    listed = connections_of(store) if connections is None else connections
    allowed = int((store.tenant_record() or {}).get("seats", 0))
    return Seats(sum(1 for record in listed if record.live), allowed)


def _check_seats(store: Any) -> None:
    """A new connection needs a free seat: the live ones counted (not read one by one:
    a tenant of 50,000 users onboards its next at the cost of one)."""
    allowed = int((store.tenant_record() or {}).get("seats", 0))
    taken = Seats(store.live_connections(), allowed)
    if taken.used >= taken.allowed:
        raise Refused(
            403,
            f"all {taken.allowed} of your company's seats for this sync are taken",
            "Ask your admin to free a seat or add one, then open your link again.",
        )


# -- triggers (RUN-2, RUN-3) ------------------------------------------------------------
def enqueue_cycle(
    services: Services,
    tenant: str,
    connection: str,
    trigger: str,
    *,
    delay: timedelta | None = None,
) -> bool:
    """One cycle of the connection after `delay` (the deployment's debounce by default);
    triggers in the same window collapse, those of a task apart (a mail pass, an import
    step …) only with their own kind."""
    delay = services.debounce if delay is None else delay
    now = services.clock()
    window = max(delay, timedelta(seconds=1))
    apart = scope(trigger)
    return services.queue.enqueue(
        tenant,
        connection,
        name=task_name(tenant, f"{connection}-{apart}" if apart else connection, now, window),
        not_before=now + delay,
        trigger=trigger,
    )


@dataclass
class FanoutReport:
    enqueued: int = 0
    collapsed: int = 0
    renewals: int = 0
    stuck: int = 0
    stale: int = 0
    pages: int = 0


def fanout(
    services: Services, page_size: int = FANOUT_PAGE, threads: int = FANOUT_THREADS
) -> FanoutReport:
    """RUN-2: page through due connections (never all of them at once), enqueue a cycle
    for each, and move its next due time; flag stuck runs and stale cursors. A
    connection is due for a full cycle every `frequency_minutes`, and in between, when
    it syncs kinds its provider pushes nothing for, for a poll of those every
    `poll_minutes` (RUN-3); one that syncs manually only (SET-7), or whose user the
    tenant admin turned off (SET-6), is never due. RUN-5: connections whose push
    channels expire within a day get a cycle that renews them."""
    now = services.clock()
    report = FanoutReport()
    tenants: dict[str, Mapping[str, Any]] = {}  # each tenant's settings read once
    intervals: dict[tuple[str, str, str], Intervals] = {}  # resolved once per settings
    # Pages overlap: while a page's tasks are created, the next page is read and the
    # last one's moves are written. A page's moves are written only once all of its
    # tasks are created (none is skipped), and one failure stops the fan-out with the
    # connections after it still due (the next tick takes them).
    with (
        ThreadPoolExecutor(max_workers=threads) as enqueuing,
        ThreadPoolExecutor(max_workers=2) as storing,
    ):
        page = services.backend.due(now, page_size, None)
        report.pages += 1
        moved: Future[None] | None = None
        while True:
            moves, ready = _page_due(services, page, tenants, intervals, now, report)
            created = [enqueuing.submit(_enqueue_due, services, item, now) for item in ready]
            following = (
                storing.submit(services.backend.due, now, page_size, page[-1])
                if page and len(page) >= page_size
                else None
            )
            for enqueued in created:
                if enqueued.result():
                    report.enqueued += 1
                else:
                    report.collapsed += 1
            if moved is not None:
                moved.result()
            moved = storing.submit(services.backend.set_next_due_many, moves)
            if following is None:
                break
            page = following.result()
            report.pages += 1
        moved.result()
    for channel in services.backend.expiring_channels(now + RENEW_WITHIN, page_size):
        if enqueue_cycle(services, channel.tenant, channel.connection, "renew"):
            report.renewals += 1
    for tenant, connection in services.backend.expiring_mailboxes(now + RENEW_WITHIN, page_size):
        if enqueue_cycle(services, tenant, connection, MAIL):  # the pass renews the watch
            report.renewals += 1
    log.info("fan-out", extra={"enqueued": report.enqueued, "renewals": report.renewals})
    return report


def _page_due(
    services: Services,
    page: Sequence[Due],
    tenants: dict[str, Mapping[str, Any]],
    intervals: dict[tuple[str, str, str], Intervals],
    now: datetime,
    report: FanoutReport,
) -> tuple[list[NextDue], list[tuple[Due, str]]]:
    """A page of due connections: where each moves next, and those a cycle is
    enqueued for with its trigger."""
    moves: list[NextDue] = []
    ready: list[tuple[Due, str]] = []
    for due in page:
        store = services.backend.store(due.tenant)
        record = (
            ConnectionRecord.of(due.record)
            if due.record is not None
            else connection_of(store, due.connection)
        )
        if record is None or not record.active or record.preview_first:  # BEY-3: waits
            moves.append(NextDue(due.tenant, due.connection, None))
            continue
        _check_health(store, due.connection, record, now, report)
        if due.tenant not in tenants:
            tenants[due.tenant] = (store.tenant_record() or {}).get("settings", {})
        mine = (
            due.tenant,
            record.provider,
            json.dumps(record.settings, sort_keys=True, default=str),
        )
        if mine not in intervals:
            intervals[mine] = _intervals(services, tenants[due.tenant], record)
        move, trigger = _next_due(intervals[mine], record, due, now)
        moves.append(move)
        if trigger:
            ready.append((due, trigger))
    return moves, ready


def _enqueue_due(services: Services, ready: tuple[Due, str], now: datetime) -> bool:
    """The task is named by the due time it serves, not by the tick: a tick that finds
    a connection still due whose task an earlier tick made (that tick overlapped this
    one, or stopped before it moved the connection) names the same task, which Cloud
    Tasks makes once."""
    due, trigger = ready
    return services.queue.enqueue(
        due.tenant,
        due.connection,
        name=task_name(due.tenant, due.connection, due.due, DUE_NAMES),
        not_before=now,
        trigger=trigger,
    )


def _next_due(
    intervals: Intervals, record: ConnectionRecord, due: Due, now: datetime
) -> tuple[NextDue, str]:
    """What a due connection gets now, a full cycle ("schedule") or a poll, and when it
    is due next: for its next full cycle, or sooner for a poll of the kinds its
    provider pushes nothing for (SET-1: the user's frequency and poll interval). A
    connection that syncs manually only gets nothing and is never due (SET-7)."""
    frequency, poll = intervals
    if frequency is None:
        return NextDue(due.tenant, due.connection, None), ""
    full = record.full_due
    trigger = POLL
    if full is None or full <= now:
        trigger, full = "schedule", now + frequency
    when = min(full, now + poll) if poll is not None else full
    return NextDue(due.tenant, due.connection, when, full), trigger


# A connection's time between full cycles (None: manual only) and between polls.
Intervals = tuple[timedelta | None, timedelta | None]


def _intervals(
    services: Services, tenant_settings: Mapping[str, Any], record: ConnectionRecord
) -> Intervals:
    """The time between full cycles (None: manual only, SET-7), and between polls
    (None: nothing to poll)."""
    try:
        settings = resolve(record.provider, tenant_settings, record.settings)
    except (SettingsError, KeyError):
        return timedelta(minutes=15), None
    if settings.manual:
        return None, None
    frequency = timedelta(minutes=int(settings["frequency_minutes"]))
    if not polled_kinds(services, record.provider, settings):
        return frequency, None
    return frequency, timedelta(minutes=int(settings["poll_minutes"]))


def polled_kinds(services: Services, provider: str, settings: Settings) -> tuple[Kind, ...]:
    """The synced kinds whose changes the provider pushes nothing for (its kit says which
    it pushes): a poll reads these between full cycles."""
    try:
        pushed = services.kit(provider).pushed
    except KeyError:
        return ()
    return tuple(kind for kind in KINDS if settings.enabled(kind) and kind not in pushed)


def _check_health(
    store: Any, connection: str, record: ConnectionRecord, now: datetime, report: FanoutReport
) -> None:
    """A run that holds the lease long past its expiry is stuck; a connection with no good
    cycle for a day has stale cursors. Both show in the admin status (RUN-2, RUN-5)."""
    health = cycle_health(record, now)
    if health == "stuck":
        report.stuck += 1
    elif health == "stale":
        report.stale += 1
    if record.health != health:
        store.save_connection_record(connection, {"health": health})
        log.warning("connection health", extra={"connection": connection, "health": health})


def cycle_health(record: ConnectionRecord, now: datetime) -> str:
    """How a connection's cycles stand, from its record alone: "stuck" (a run going long
    past its lease, RUN-2), "failing" (its last cycles all left records or kinds
    unsynced, or failed: SYN-5), "stale" (no good cycle for a day), else "ok"."""
    last = record.last_run
    if last is not None and last.running() and _aware(last.started) < now - STUCK_AFTER:
        return "stuck"
    if failing(record.recent):
        return "failing"
    if _aware(record.last_ok or record.created) < now - STALE_AFTER:
        return "stale"
    return "ok"


def failing(recent: Sequence[RunOutcome]) -> bool:
    """Whether the last FAILING_RUNS cycles all ended bad: one partial cycle is a record
    retried next time; every cycle partial is a record that never goes through."""
    last = recent[-FAILING_RUNS:]
    return len(last) == FAILING_RUNS and all(outcome.bad for outcome in last)


def _remember(record: ConnectionRecord, outcome: RunOutcome, now: datetime) -> dict[str, Any]:
    """What the connection's record keeps of a cycle's outcome: its last RECENT_RUNS
    outcomes (one write with the rest of the cycle's bookkeeping, never a read of runs),
    and the health they give (logged when it changes)."""
    recent = (*record.recent, outcome)[-RECENT_RUNS:]
    health = cycle_health(replace(record, recent=recent), now)
    if health != record.health:
        log.warning("connection health", extra={"connection": record.id, "health": health})
    return {"recent": [o.stored() for o in recent], "health": health}


def _aware(value: Any) -> datetime:
    if not isinstance(value, datetime):
        return datetime.max.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- the worker (RUN-3, RUN-6, AUTH-3) --------------------------------------------------
# SET-7: the triggers a connection that syncs manually only runs a cycle for: someone
# asked for it ("Sync now", connecting, an answer in the queue, an import), or the
# cycle they asked for goes on (its continuation, a retry once throttling ends, a wait
# for a cycle that held the lease).
ON_DEMAND = frozenset({"manual", "connect", "resolve", "continue", "retry", "busy", IMPORT})
TURNED_OFF = "the tenant admin turned the integration off for this user"  # SET-6
WAITS_FOR_GO = "the first sync waits until the user starts it from its preview"  # BEY-3


@dataclass(frozen=True)
class CycleInputs:
    """What a connection's cycle runs with besides its records."""

    settings: Settings
    syncing_users: frozenset[str]  # CRM users of the tenant with a connection (CAL-6)


def cycle_inputs(tenant_record: Mapping[str, Any], record: ConnectionRecord) -> CycleInputs:
    """The one derivation of a cycle's inputs, which the worker and SyncWorld share: the
    settings layered (provider defaults, the tenant's, the user's: SET-2), and the
    tenant's CRM users who sync (CAL-6: a meeting such a leader syncs reaches its
    members as the provider's invitation, not as copies of their own)."""
    settings = resolve(record.provider, tenant_record.get("settings", {}), record.settings)
    return CycleInputs(settings, frozenset(tenant_record.get("syncing") or ()))


def crm_user_of(store: Any, user: str) -> str:
    """The CRM user a crmsync user acts as (the onboarding link names it)."""
    return str((store.user_record(user) or {}).get("crm_user") or user)


def _syncing_known(
    store: Any, tenant_record: Mapping[str, Any], keep: bool = True
) -> Mapping[str, Any]:
    """A tenant whose connections were made before crmsync kept who syncs: found once
    from its connections, and kept from then on (unless `keep` is False: a dry run)."""
    if "syncing" in tenant_record:
        return tenant_record
    live = {r.user for r in connections_of(store) if r.live}
    syncing = {crm_user_of(store, user): True for user in sorted(live)}
    if keep:
        store.save_tenant_record({"syncing": syncing})
    return {**tenant_record, "syncing": syncing}


def settings_for(services: Services, tenant: str, record: ConnectionRecord) -> Settings:
    tenant_record = services.backend.store(tenant).tenant_record() or {}
    return resolve(record.provider, tenant_record.get("settings", {}), record.settings)


def work(
    services: Services,
    tenant: str,
    connection: str,
    trigger: str,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    bring_in: tuple[SideRecord, ...] | None = None,
) -> dict[str, Any]:
    """Run one cycle of a connection; what the `sync_worker` task asks for. Returns the run
    record (status `skipped` when the connection is not active, its user is turned off
    (SET-6), it syncs manually only and nobody asked for this cycle (SET-7), or its
    first sync waits for the user (BEY-3)). A poll (RUN-3) runs a cycle only of the
    polled kinds that changed, and a check only when the cycle it looks after is owed;
    otherwise they return status `idle` and record nothing.

    An import task (CON-9) is handed to the import's use case, which picks the next
    contacts of the address book and runs this with them (`bring_in`): a cycle of
    contacts that reads those instead of the feeds."""
    if trigger == IMPORT and bring_in is None:
        from crmsync.usecases import importing  # the use case that steps an import

        return importing.step(services, tenant, connection)
    if trigger == MAIL:
        from crmsync.usecases import mail  # the use case that records tagged messages

        return mail.run_pass(services, tenant, connection)
    store = services.backend.store(tenant)
    record = connection_of(store, connection)
    tenant_record = store.tenant_record()
    if record is None or tenant_record is None:
        raise Refused(404, "no such connection")
    if not record.enabled:
        _pause_push(services, store, tenant, record, trigger)
        return {"status": RunStatus.SKIPPED, "reason": TURNED_OFF}
    if not record.active:
        return {"status": RunStatus.SKIPPED, "reason": f"connection is {record.status}"}
    if not record.syncs:
        if trigger == "renew" and record.records_mail:  # its only channel: the mail's
            from crmsync.usecases import mail

            return mail.run_pass(services, tenant, connection)
        return {"status": RunStatus.SKIPPED, "reason": "the connection records mail only"}
    if record.preview_first:
        return {"status": RunStatus.SKIPPED, "reason": WAITS_FOR_GO}
    if trigger == CHECK:
        return _check(services, store, tenant, connection)
    inputs = cycle_inputs(_syncing_known(store, tenant_record), record)
    settings = inputs.settings
    if settings.manual and trigger not in ON_DEMAND:
        _pause_push(services, store, tenant, record, trigger)
        return {"status": RunStatus.SKIPPED, "reason": "the connection syncs when asked only"}
    now = services.clock()
    started = time.monotonic()
    try:
        adapters = _adapters(services, store, tenant, tenant_record, record, settings, trigger)
    except GrantRevoked as exc:  # AUTH-3: stop cycling until the user reconnects
        refused = RunOutcome(RunStatus.NEEDS_REAUTH, now)
        store.save_connection_record(connection, _remember(record, refused, now))
        store.set_status(connection, ConnectionState.NEEDS_REAUTH, str(exc))
        store.set_next_due(connection, None)
        publish_all(services.events, [needs_reauth_event(tenant, connection, record.user, now)])
        return {"status": RunStatus.NEEDS_REAUTH}
    except PermanentError as exc:  # nothing a retry of this task could change
        failed = RunOutcome(RunStatus.FAILED, now, reason=str(exc))
        store.save_connection_record(
            connection, {"last_error": str(exc), **_remember(record, failed, now)}
        )
        return {"status": RunStatus.FAILED, "reason": str(exc)}
    if adapters is None:  # a poll that found nothing to do: nothing written, no run
        return {"status": RunStatus.IDLE, "reason": "the polled kinds did not change"}
    crm, provider, push, kinds = adapters
    if bring_in is not None:
        kinds = ("contact",)
    conn = Connection(tenant, connection, record.user, record.provider, settings.values)
    from crmsync.cycle import run_cycle

    run = dict(
        run_cycle(
            conn,
            store,
            crm,
            provider,
            settings,
            services.clock,
            trigger=trigger,
            syncing_users=inputs.syncing_users,
            budget_seconds=budget_seconds,
            began=lambda run: _began(store, connection, record, run),
            kinds=kinds,
            imported=bring_in,
            on_hold=_running,
            on_release=lambda run: _ended(
                services, store, _as_held(store, record), run, now, whole=kinds == KINDS
            ),
            fold_quiet=trigger not in ON_DEMAND,  # a run someone asked for shows on its own
        )
    )
    items = run.pop("items", [])
    _after_cycle(services, store, tenant, record, run, now, whole=kinds == KINDS)
    if run["status"] != RunStatus.BUSY:  # BEY-7: tell the CRM what the cycle did
        publish_all(services.events, cycle_events(tenant, connection, record.user, run, items))
    if push is not None and run["status"] not in (RunStatus.BUSY, RunStatus.NEEDS_REAUTH):
        _renew(services, store, tenant, record, push, now)
    log.info(
        "worker finished",
        extra={
            "tenant": tenant,
            "connection": connection,
            "run": run.get("id"),
            "status": run["status"],
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return run


def dry_run(
    services: Services,
    tenant: str,
    connection: str,
    *,
    imported: tuple[SideRecord, ...] | None = None,
) -> list[Planned]:
    """BEY-3: what a cycle of the connection would do now, kind by kind: read and
    planned by the cycle itself, with the inputs and adapters the worker gives it, and
    nothing applied or stored. With `imported`, what an import step over those provider
    contacts would do (CON-9). Raises GrantRevoked or CrmUnauthorized as a cycle would
    stop on them; PermanentError when the adapters cannot be built."""
    store = services.backend.store(tenant)
    record = connection_of(store, connection)
    tenant_record = store.tenant_record()
    if record is None or tenant_record is None:
        raise Refused(404, "no such connection")
    inputs = cycle_inputs(_syncing_known(store, tenant_record, keep=False), record)
    settings = inputs.settings
    crm = crm_for(services, tenant, tenant_record, record, settings)
    grants = Grants(store, services.vault, tenant)
    provider, _ = _provider(services, store, grants, record, settings, crm, dry_run=True)
    from crmsync.cycle import Cycle

    conn = Connection(tenant, connection, record.user, record.provider, settings.values)
    cycle = Cycle(
        conn,
        store,
        crm,
        provider,
        settings,
        services.clock,
        inputs.syncing_users,
        "preview",
        kinds=("contact",) if imported is not None else KINDS,
        imported=imported,
    )
    return cycle.preview()


def _pause_push(
    services: Services, store: Any, tenant: str, record: ConnectionRecord, trigger: str
) -> None:
    """A connection that does not sync on its own (SET-6, SET-7) lets its push channels
    go when they would be renewed: they are stopped and forgotten, and the problem it
    shows has its next cycle open new ones (RUN-5), as for a channel never opened."""
    channels = store.channels_of(record.id)
    if trigger != "renew" or not channels:
        return
    grants = Grants(store, services.vault, tenant)
    for channel in channels:
        try:
            if _connectable(services, record.provider):
                kit = services.kit(record.provider)
                settings = settings_for(services, tenant, record)
                kit.stop_push(services, grants, record.id, settings, channel)
        except (SyncError, SettingsError) as exc:  # it expires at the provider on its own
            log.info("channel left to expire", extra={"error": type(exc).__name__})
        store.drop_channel(channel.id)
        services.lookups.forget(channel.id)
    problem = "push paused: the connection syncs only when asked, or is turned off"
    store.save_connection_record(record.id, {"channel_problem": problem})


def _adapters(
    services: Services,
    store: Any,
    tenant: str,
    tenant_record: Mapping[str, Any],
    record: ConnectionRecord,
    settings: Settings,
    trigger: str,
) -> tuple[CrmConnector, Any, Any, tuple[Kind, ...]] | None:
    """What a cycle runs with: the CRM connector, the provider account and its push
    handle, and the kinds it syncs. A poll (RUN-3) first reads the feeds of the kinds
    the provider pushes nothing for, and goes on (to the CRM too) only with those that
    show a change; None when none does."""
    grants = Grants(store, services.vault, tenant)
    if trigger != POLL:
        crm = crm_for(services, tenant, tenant_record, record, settings)
        provider, push = _provider(services, store, grants, record, settings, crm)
        return crm, provider, push, KINDS
    kinds = polled_kinds(services, record.provider, settings)
    if not kinds:
        return None
    feeds, _ = _provider(services, store, grants, record, settings, None, kinds)
    from crmsync.cycle.poll import changed_kinds

    changed = tuple(changed_kinds(store, record.id, feeds, kinds))
    if not changed:
        return None
    crm = crm_for(services, tenant, tenant_record, record, settings)
    provider, push = _provider(services, store, grants, record, settings, crm, changed)
    return crm, provider, push, changed


def _began(store: Any, connection: str, record: ConnectionRecord, run: Mapping[str, Any]) -> None:
    """The cycle holds the lease: a run the connection still showed as running lost its
    worker (its lease ran out unreleased) and is marked interrupted (RUN-2)."""
    previous = record.last_run
    died = previous is not None and previous.running() and previous.id != run["id"]
    if died and previous and store.interrupt_run(connection, _left(run, previous), run["started"]):
        log.warning(
            "run interrupted",
            extra={"connection": connection, "run": previous.id, "by": run["id"]},
        )


def _as_held(store: Any, record: ConnectionRecord) -> ConnectionRecord:
    """The connection's record as the cycle found it when it took the lease (a run
    that ended meanwhile may have changed it since the worker read it first)."""
    held = store.held_record(record.id)
    return ConnectionRecord.of(held) if held is not None else record


def _left(run: Mapping[str, Any], previous: RunSummary) -> dict[str, Any]:
    """The run record of a run that died, as far as its connection's record tells it."""
    kept = {
        k: run[k] for k in ("connection", "tenant", "user", "provider", "history_days") if k in run
    }
    started = {"trigger": previous.trigger, "started": previous.started, "ended": None}
    return {
        "id": previous.id,
        **kept,
        **started,
        "status": RunStatus.RUNNING,
        "counts": {},
        "errors": [],
    }


def _running(run: Mapping[str, Any]) -> dict[str, Any]:
    """What the connection's record shows of a run while it holds the lease (written
    with the lease): it shows as running, so one that never ends turns stuck (RUN-2)."""
    running = {"id": run["id"], "status": RunStatus.RUNNING, "trigger": run["trigger"]}
    return {"last_run": {**running, "started": run["started"]}}


def _ended(
    services: Services,
    store: Any,
    record: ConnectionRecord,
    run: Mapping[str, Any],
    now: datetime,
    *,
    whole: bool = True,
) -> dict[str, Any]:
    """What the connection's record keeps of a run that ended (written with the lease's
    release): the run's summary, when the connection last synced well (`whole`: it
    synced every kind, so it counts as a good cycle), its recent outcomes, and the quiet
    runs not yet stored (HIS-1, `_quiet`)."""
    status = run["status"]
    summary = {k: run.get(k) for k in ("id", "status", "trigger", "started", "ended")}
    update: dict[str, Any] = {"last_run": summary}
    if whole and status in (RunStatus.OK, RunStatus.PARTIAL, RunStatus.CONTINUED):
        update["last_ok"] = run.get("ended") or now
    last_ok = update.get("last_ok", record.last_ok)
    after = replace(record, last_run=RunSummary.of(summary), last_ok=last_ok)
    update.update(_remember(after, RunOutcome.of_run(run, now), services.clock()))
    if not record.crm_user:  # a record made before it kept its CRM user: kept from now
        update["crm_user"] = crm_user_of(store, record.user)
    if not record.routed and record.subject:  # made before the account directory (CTX-1)
        store.save_account(record.provider, record.subject, store.tenant, record.id)
        update["routed"] = True
    return {**update, "quiet": _quiet(store, record, run)}


# HIS-1: quiet runs (nothing to do) in a row are one entry of the history: the first is
# stored as a run, and the ones after it only counted in the connection's record (so an
# idle cycle writes the connection's document only); the entry is stored again with its
# count and end once a run that did something ends, or once it is QUIET_SPAN old.
QUIET_SPAN = timedelta(hours=1)


def _quiet(store: Any, record: ConnectionRecord, run: Mapping[str, Any]) -> dict[str, Any] | None:
    """The entry of quiet runs the record keeps after `run` (None: none)."""
    kept = record.quiet
    folded = bool(run.get("folded"))
    began = run.get("started")
    first = _aware(kept.get("started")) if kept is not None else None
    # an hour old, or begun before it (a clock set back): the entry ends
    stale = (
        first is not None
        and isinstance(began, datetime)
        and not first <= began < first + QUIET_SPAN
    )
    if kept is not None and (stale or not folded):
        if int(kept.get("cycles") or 1) > 1:  # its count and end, as they ended
            store.save_run(record.id, _quiet_run(run, kept))
        kept = None
    if not folded:
        return None
    if kept is not None:
        return {**kept, "ended": run["ended"], "cycles": int(kept.get("cycles") or 1) + 1}
    fields = ("id", "trigger", "started", "history_days")
    entry = {**{k: run[k] for k in fields if k in run}, "ended": run["ended"], "cycles": 1}
    store.save_run(record.id, _quiet_run(run, entry))  # in the history at once
    return entry


def _quiet_run(run: Mapping[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    """The run record of an entry of quiet runs: one run that ended well and changed
    nothing, `cycles` of them."""
    where = {k: run[k] for k in ("connection", "tenant", "user", "provider") if k in run}
    return {
        **where,
        **{k: kept[k] for k in ("id", "trigger", "started", "ended", "history_days") if k in kept},
        "status": RunStatus.OK,
        "counts": {},
        "errors": [],
        "unread": [],
        "pending": [],
        "cycles": int(kept.get("cycles") or 1),
    }


def _after_cycle(
    services: Services,
    store: Any,
    tenant: str,
    record: ConnectionRecord,
    run: Mapping[str, Any],
    now: datetime,
    *,
    whole: bool = True,
) -> None:
    """What follows a run (the connection's record of it went with the lease's release,
    `_ended`; `whole`: it synced every kind): the cycle that comes next, its
    continuation (RUN-6), a retry once the provider allows, or one asked for while it
    held the lease (RUN-3)."""
    connection = record.id
    status = run["status"]
    if status == RunStatus.BUSY:
        if run.get("asked"):  # the holder follows up; should it die first, a check will see
            enqueue_check(services, tenant, connection, run["asked"])
        elif run.get("trigger") != POLL:  # the holder could not be asked: come back later
            enqueue_cycle(services, tenant, connection, "busy", delay=timedelta(seconds=60))
        return
    if status == RunStatus.LEASE_LOST:  # not written with a release: it had none to give
        ended = _ended(services, store, record, run, now, whole=whole)
        store.save_connection_record(connection, ended)
    if status == RunStatus.NEEDS_REAUTH:  # AUTH-3: no more cycles until the user reconnects
        store.set_status(connection, ConnectionState.NEEDS_REAUTH, "; ".join(run.get("errors", [])))
        store.set_next_due(connection, None)
    elif status == RunStatus.CRM_UNAUTHORIZED:
        log.warning("crm refused the token", extra={"tenant": tenant, "connection": connection})
    elif status == RunStatus.CONTINUED:  # RUN-6: the budget ran out; the next task resumes
        enqueue_cycle(services, tenant, connection, "continue", delay=timedelta(0))
    elif run.get("retry_after"):  # throttled: come back when the provider allows
        wait = timedelta(seconds=float(run["retry_after"]))
        enqueue_cycle(services, tenant, connection, "retry", delay=wait)
    elif run.get("again"):  # triggered while it ran: one cycle, once the echoes are in
        enqueue_cycle(services, tenant, connection, str(run["again"]))


def enqueue_check(services: Services, tenant: str, connection: str, expires: datetime) -> None:
    """A look at the connection once the lease a cycle was asked of runs out; every ask
    of one lease shares it (its name is the lease's expiry)."""
    services.queue.enqueue(
        tenant,
        connection,
        name=task_name(tenant, connection, expires, timedelta(seconds=1)),
        not_before=expires + timedelta(seconds=1),
        trigger=CHECK,
    )


def _check(services: Services, store: Any, tenant: str, connection: str) -> dict[str, Any]:
    """RUN-3: the cycle asked of a lease holder is owed only if the holder died without
    answering it (its lease ran out unreleased): then it runs now. While the holder
    lives (it renewed its lease), look again when the lease runs out."""
    ask = store.asked(connection)
    now = services.clock()
    if ask is None:
        return {"status": RunStatus.IDLE, "reason": "the cycle asked for was enqueued"}
    if ask.lease_expires > now:
        enqueue_check(services, tenant, connection, ask.lease_expires)
        return {"status": RunStatus.IDLE, "reason": "the cycle asked of is still running"}
    log.warning("asked cycle owed", extra={"tenant": tenant, "connection": connection})
    return work(services, tenant, connection, ask.trigger)


def _renew(
    services: Services,
    store: Any,
    tenant: str,
    record: ConnectionRecord,
    push: Any,
    now: datetime,
) -> None:
    """RUN-5: push channels that expire soon are replaced before they do; a connection
    whose channels could not be opened (it is polled meanwhile) tries again after each
    cycle, and the problem it showed goes once push works."""
    connection = record.id
    current = store.channels_of(connection)
    if not current:
        if record.channel_problem:
            problem = _open_channel(services, tenant, connection)
            if problem != record.channel_problem:
                store.save_connection_record(connection, {"channel_problem": problem})
        return
    problems = services.kit(record.provider).renew_push(services, push, current, now)
    if problems or record.channel_problem:  # RUN-5: polled on its schedule meanwhile
        problem = problems[0] if problems else ""
        if problem != record.channel_problem:
            store.save_connection_record(connection, {"channel_problem": problem})


def _open_channel(services: Services, tenant: str, connection: str) -> str:
    """A push channel for the connection, replacing the ones it had (a reconnect opens a
    new one; the old ones are stopped, never left to pile up). Returns what went wrong."""
    store = services.backend.store(tenant)
    record = connection_of(store, connection)
    assert record is not None
    settings = settings_for(services, tenant, record)
    grants = Grants(store, services.vault, tenant)
    kit = services.kit(record.provider)
    try:
        kit.open_push(services, grants, tenant, connection, settings, store.channels_of(connection))
    except SyncError as exc:
        return f"push channel not opened ({type(exc).__name__}); polling on schedule"
    return ""


def _stop_mail(services: Services, grants: Grants, record: ConnectionRecord) -> list[str]:
    """EML-1: the mailbox's notifications stop with the connection (else they end on
    their own within a week, and crmsync acknowledges and ignores them meanwhile)."""
    if not record.records_mail or not _connectable(services, record.provider):
        return []
    stop = getattr(services.kit(record.provider), "stop_mail", None)
    if stop is None:
        return []
    try:
        stop(services, grants, record.id)
    except SyncError as exc:
        return [f"mail notifications not stopped ({type(exc).__name__})"]
    return []


def _route_mailbox(services: Services, store: Any, tenant: str, connection: str) -> str:
    """Mail notifications may name only the mailbox: route its address to the connection
    (a digest of it, in the mailbox directory). Returns what went wrong, or ""."""
    record = connection_of(store, connection)
    assert record is not None
    grants = Grants(store, services.vault, tenant)
    try:
        address = services.kit(record.provider).mailbox(services, grants, connection)
    except SyncError as exc:
        return f"mailbox not routed ({type(exc).__name__}); reconnect to record mail"
    if address:  # a provider whose notifications name the connection routes nothing
        store.save_mailbox(address, tenant, connection)
    return ""


def crm_for(
    services: Services,
    tenant: str,
    tenant_record: Mapping[str, Any],
    record: ConnectionRecord,
    settings: Settings,
    *,
    brief: bool = False,
) -> CrmConnector:
    """The CRM acting as the connection's CRM user; `brief`: asked once, 5 s at most (a
    person waits for the answer)."""
    crm_user = record.crm_user or crm_user_of(services.backend.store(tenant), record.user)
    if services.crm_connector is not None:
        return services.crm_connector(tenant, tenant_record, crm_user, settings)
    from crmsync.crm.rest import RestCrmConnector

    token = services.vault.open(tenant_record["crm_token"], f"{tenant}/crm-token").decode()
    options = {**dict(services.crm_options), **({"attempts": 1, "timeout": 5.0} if brief else {})}
    return RestCrmConnector(
        tenant_record["crm"]["base_url"], token, crm_user, settings["contact_group"], **options
    )


def _provider(
    services: Services,
    store: Any,
    grants: Grants,
    record: ConnectionRecord,
    settings: Settings,
    crm: CrmConnector | None,
    kinds: tuple[Kind, ...] = KINDS,
    dry_run: bool = False,
) -> tuple[Any, Any]:
    """The provider account of one cycle (with the adapters of `kinds`), and the handle
    its push channels renew with; without a CRM (`crm` None), one to read feeds with;
    for a dry run (BEY-3), one whose reading makes nothing."""
    if not _connectable(services, record.provider):
        raise PermanentError(f"provider {record.provider!r} cannot be synced here")
    kit = services.kit(record.provider)
    account, push = kit.account(
        services, store, grants, record, settings, crm, kinds=kinds, dry_run=dry_run
    )
    return account, push


# -- push notifications and CRM events (RUN-3) -------------------------------------------
def provider_push(services: Services, provider: str, request: PushRequest) -> PushAnswer:
    """A provider's push notification, whole (RUN-1, RUN-3): the kit checks it against
    the channels it names and enqueues those connections' debounced cycles, or answers
    the provider's handshake; what it answers goes back to the provider as it is."""
    answer: PushAnswer = services.kit(provider).on_push(services, request)
    return answer


def pane_request(services: Services, provider: str, request: PushRequest) -> PushAnswer:
    """A request of the mail client's pane (CTX-1) in `provider`'s mail client, whole,
    to the provider's kit, which checks it and answers with its client's card."""
    if provider not in services.provider_names() or not hasattr(services.kit(provider), "on_addon"):
        raise Refused(404, f"crmsync has no mail-client pane for {provider[:40]!r}")
    answer: PushAnswer = services.kit(provider).on_addon(services, request)
    return answer


def pane_has_pages(services: Services, provider: str) -> bool:
    """Whether `provider`'s mail-client pane is a page crmsync serves (a task pane and its
    manifest), not cards its mail client draws."""
    return provider in services.provider_names() and hasattr(services.kit(provider), "addon_page")


def pane_page(services: Services, provider: str, request: PushRequest) -> PushAnswer:
    """A page of the mail client's pane (CTX-1) that crmsync serves itself (pane_has_pages)."""
    answer: PushAnswer = services.kit(provider).addon_page(services, request)
    return answer


def mail_notification(services: Services, provider: str, data: bytes) -> int:
    """A mailbox notification (the data of a Pub/Sub push): a debounced cycle of each
    active connection that records mail of that mailbox. Returns how many were
    enqueued; a mailbox crmsync does not know is 0 (and acknowledged)."""
    try:
        return int(
            services.kit(provider).on_mail(
                services,
                data,
                lambda tenant, connection: enqueue_cycle(services, tenant, connection, MAIL),
            )
        )
    except ValueError as exc:
        raise Refused(400, str(exc)) from exc


# A 401 names how to authenticate (RFC 9110): CRM events carry a signature header.
_SIGNED = {"WWW-Authenticate": 'Crmsync-Signature realm="crm events"'}


def crm_event(services: Services, signature: str | None, body: bytes) -> int:
    """A CRM change event, signed with its tenant's event secret: a debounced cycle of
    each active connection of the user it names. Returns how many were enqueued."""
    try:
        claimed = events.parse(body)  # which tenant's secret to check the signature with
    except events.BadEvent as exc:
        raise Refused(400, str(exc)) from exc
    if not safe_id(claimed.tenant):
        raise Refused(400, "unknown tenant")
    store = services.backend.store(claimed.tenant)
    record = store.tenant_record()
    if record is None or "event_secret" not in record:
        raise Refused(401, "the event's signature does not verify", headers=_SIGNED)
    secret = services.vault.open(record["event_secret"], f"{claimed.tenant}/event-secret")
    now = services.clock()
    try:
        event = events.verify(secret, signature, body, now)
    except events.BadEvent as exc:
        raise Refused(401, str(exc), headers=_SIGNED) from exc
    # A signed event is accepted once: a replay within its five minutes (or Pub/Sub
    # delivering it twice) is acknowledged and enqueues nothing.
    nonces = services.backend.store("")
    nonce = f"crm-event:{signature}"
    if not nonces.claim_nonce(nonce, now + timedelta(seconds=2 * events.TOLERANCE_SECONDS)):
        return 0
    enqueued = 0
    try:
        for connection in _connections_of_user(store, event.user):
            if connection.active:
                enqueue_cycle(services, event.tenant, connection.id, "crm")
                enqueued += 1
    except Exception:
        nonces.release_nonce(nonce)  # not acted on: the sender's retry must be accepted
        raise
    return enqueued


# -- admin -------------------------------------------------------------------------------
def admin_status(services: Services, tenant: str) -> dict[str, Any]:
    """What a tenant admin sees of their connections: status, health, the last run."""
    store = services.backend.store(tenant)
    connections = []
    for record in connections_of(store):
        last = record.last_run
        connections.append(
            {
                "id": record.id,
                "user": record.user,
                "provider": record.provider,
                "account": record.account,
                "services": list(record.services),
                "status": str(record.status),
                "reason": record.reason,
                "health": record.health,
                "channel_problem": record.channel_problem,
                "mail_problem": record.mail_problem,
                "enabled": record.enabled,
                "next_due": _iso(record.next_due),
                "last_run": {
                    "id": last.id,
                    "status": str(last.status),
                    "trigger": last.trigger,
                    "started": _iso(last.started),
                    "ended": _iso(last.ended),
                }
                if last is not None
                else {},
            }
        )
    return {"tenant": tenant, "connections": connections}


def sync_now(services: Services, tenant: str, connection: str) -> bool:
    """RUN-3: "sync now" from the admin API or CLI."""
    record = connection_of(services.backend.store(tenant), connection)
    if record is None:
        raise Refused(404, "no such connection")
    if not record.enabled:
        raise Refused(409, TURNED_OFF)
    if not record.active:
        raise Refused(409, f"the connection is {record.status}")
    if record.records_mail:  # what the user tagged is recorded now too (EML-1)
        enqueue_cycle(services, tenant, connection, MAIL, delay=timedelta(0))
    return enqueue_cycle(services, tenant, connection, "manual", delay=timedelta(0))


def disconnect(
    services: Services, tenant: str, connection: str, *, reason: str = "disconnected"
) -> list[str]:
    """AUTH-4: revoke the grant, stop the push channels, erase tokens, links, cursors and
    history; the connection stays listed as `disconnected` and is never due again.
    Returns what could not be done at the provider (everything is erased anyway)."""
    from crmsync.connections import disconnect as erase

    store = services.backend.store(tenant)
    record = connection_of(store, connection)
    if record is None:
        raise Refused(404, "no such connection")
    grants = Grants(store, services.vault, tenant)
    revoke: Callable[[str], None] = lambda token: None  # noqa: E731
    stop: Callable[[Any], None] = lambda channel: None  # noqa: E731
    if _connectable(services, record.provider):
        kit = services.kit(record.provider)
        settings = settings_for(services, tenant, record)

        def revoke(token: str) -> None:
            kit.revoke(services, token)

        def stop(channel: Any) -> None:
            kit.stop_push(services, grants, connection, settings, channel)

    dropped = [channel.id for channel in store.channels_of(connection)]
    stopped_mail = _stop_mail(services, grants, record)
    problems = erase(store, grants, connection, revoke, stop)
    problems = [*stopped_mail, *problems]
    user = record.user
    others = [r for r in connections_of(store) if r.user == user and r.id != connection and r.live]
    if not others:  # CAL-6: their meetings now reach colleagues as copies of their own
        store.mark_syncing(crm_user_of(store, user), False)
    for channel_id in dropped:  # this instance refuses their notifications at once
        services.lookups.forget(channel_id)
    store.set_next_due(connection, None)
    log.info("disconnected", extra={"tenant": tenant, "connection": connection})
    gone = connection_event(
        "connection.disconnected",
        tenant,
        connection,
        record.user,
        services.clock(),
        {"provider": record.provider, "problems": len(problems), "reason": reason},
    )
    publish_all(services.events, [gone])
    return problems


# -- helpers -----------------------------------------------------------------------------
def _states(services: Services) -> StateStore:
    states: StateStore = services.backend.store("")
    return states


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def safe_id(value: str) -> bool:
    """Ids crmsync accepts from a request: 1-64 ASCII letters, digits, '-' or '_'."""
    return 0 < len(value) <= 64 and all((c.isascii() and c.isalnum()) or c in "-_" for c in value)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _mac(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
