"""A connection's grant over its life: stored sealed, refreshed before it expires under
a per-connection lock, marked "needs re-authorization" when the provider refuses it,
and erased on disconnect (AUTH-2, AUTH-3, AUTH-4).

The provider's OAuth calls come in as a `Refresher` / `Revoker`, so this module knows
no provider; each provider's kit supplies its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crmsync.auth.vault import TokenVault
from crmsync.errors import AccountChanged, GrantRevoked, SyncError, TransientError
from crmsync.ports import ConnectionState, GrantStore

log = logging.getLogger("crmsync.connections")

REFRESH_MARGIN = timedelta(minutes=5)
LOCK_SECONDS = 60


@dataclass(frozen=True)
class Grant:
    """A provider grant as crmsync uses it (never logged, stored only sealed)."""

    access_token: str
    refresh_token: str | None
    expires: datetime | None
    scopes: frozenset[str]
    subject: str = ""  # the provider account's stable id, which a connection is bound to
    email: str = ""  # the account's address, as the provider reported it at consent


@dataclass(frozen=True)
class Identity:
    """Who signed in to the web app, as the provider's verified ID token says: the
    account's stable id, its address, whether the provider verified that address, and
    the organisation (directory) the account belongs to, where the provider has one."""

    subject: str
    email: str
    email_verified: bool
    directory: str = ""


Refresher = Callable[[Grant], Grant]
Revoker = Callable[[str], None]


class Grants:
    """Keeps one tenant's connection grants: sealing, opening, refreshing."""

    def __init__(self, store: GrantStore, vault: TokenVault, tenant: str) -> None:
        self.store = store
        self.vault = vault
        self.tenant = tenant

    def _context(self, connection: str) -> str:
        return f"{self.tenant}/{connection}"

    def save(self, connection: str, grant: Grant) -> None:
        secret = json.dumps(
            {
                "access_token": grant.access_token,
                "refresh_token": grant.refresh_token,
                "expires": grant.expires.isoformat() if grant.expires else None,
                "scopes": sorted(grant.scopes),
                "subject": grant.subject,
                "email": grant.email,
            }
        ).encode()
        self.store.save_sealed_grant(connection, self.vault.seal(secret, self._context(connection)))

    def load(self, connection: str, bound: str = "") -> Grant:
        """The connection's grant. With `bound` (the account the connection is bound to),
        a grant of any other account raises AccountChanged instead of being used."""
        sealed = self.store.sealed_grant(connection)
        if sealed is None:
            raise GrantRevoked("the connection has no grant; the user must connect again")
        data = json.loads(self.vault.open(sealed, self._context(connection)))
        expires = data["expires"]
        grant = Grant(
            data["access_token"],
            data["refresh_token"],
            datetime.fromisoformat(expires) if expires else None,
            frozenset(data["scopes"]),
            data.get("subject", ""),
            data.get("email", ""),
        )
        if bound and grant.subject != bound:
            raise AccountChanged(
                "the connection's grant is another account's than the one it is bound to; "
                "the user must reconnect"
            )
        return grant

    def fresh(self, connection: str, refresher: Refresher, now: datetime, bound: str = "") -> Grant:
        """A grant whose access token lasts a while yet; refreshed at most once at a time
        per connection, so two workers never spend one refresh token twice. A refused
        refresh marks the connection `needs_reauth` (AUTH-3). With `bound`, only a grant
        of that account is ever returned (see `load`)."""
        grant = self.load(connection, bound)
        if not _expiring(grant, now):
            return grant
        holder = f"refresh-{now.timestamp()}"
        lock = f"{connection}#grant"
        if not self.store.acquire_lease(lock, holder, now, LOCK_SECONDS):
            raise TransientError("another worker is refreshing this grant")
        try:
            grant = self.load(connection, bound)  # someone may have refreshed it meanwhile
            if not _expiring(grant, now):
                return grant
            try:
                refreshed = refresher(grant)
            except GrantRevoked as exc:
                self.store.set_status(connection, ConnectionState.NEEDS_REAUTH, str(exc))
                log.warning(
                    "grant refused", extra={"tenant": self.tenant, "connection": connection}
                )
                raise
            self.save(connection, refreshed)
            return refreshed
        finally:
            self.store.release_lease(lock, holder)


def _expiring(grant: Grant, now: datetime) -> bool:
    return grant.expires is not None and grant.expires - now <= REFRESH_MARGIN


def disconnect(
    store: GrantStore,
    grants: Grants,
    connection: str,
    revoker: Revoker,
    stop_channel: Callable[[Any], None],
) -> list[str]:
    """AUTH-4: revoke the grant, stop push channels, erase tokens, links and history.
    CRM and provider records stay as they are. Returns what could not be done (a
    provider that was unreachable), after erasing everything of crmsync's anyway."""
    problems: list[str] = []
    for channel in store.channels_of(connection):  # while the grant still works
        try:
            stop_channel(channel)
        except SyncError as exc:
            problems.append(f"channel {channel.id} not stopped: {type(exc).__name__}")
        store.drop_channel(channel.id)
    try:
        grant = grants.load(connection)
        token = grant.refresh_token or grant.access_token
        revoker(token)
    except (SyncError, ValueError) as exc:
        problems.append(f"grant not revoked: {type(exc).__name__}")
    store.erase_connection(connection)
    store.set_status(connection, ConnectionState.DISCONNECTED)
    return problems
