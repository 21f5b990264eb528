"""Microsoft 365 as crmsync's service layer sees it: consent through msal, the grant and
the account a connection is bound to, refreshing and revoking. Graph's adapters (the
cycle's contacts, calendar and To Do, change notifications, mail) are not built yet: a
connection's cycle fails with that reason, push is left to the scheduled cycle, and mail
is not routed.

`services` is the service layer's `Services`; this kit reads its own setup from
`services.providers["microsoft"]` (a MicrosoftSetup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.auth.state import Consent, Started
from crmsync.connections import Grant, Grants
from crmsync.errors import PermanentError, SyncError
from crmsync.ports import Channel, ConnectionRecord, ProviderAccount
from crmsync.settings import Settings

NAME = "microsoft"
NOT_YET = "Microsoft 365's contacts, calendar and To Do cannot be synced yet"


@dataclass(frozen=True)
class MicrosoftSetup:
    """crmsync's app registration at Microsoft (crmsync.providers.microsoft.oauth's
    MicrosoftOAuth)."""

    oauth: Any


def setup_from_environment(env: Mapping[str, str]) -> MicrosoftSetup | None:
    """The setup a deployed function reads: CRMSYNC_MICROSOFT_CLIENT_ID and _SECRET, and
    optionally CRMSYNC_MICROSOFT_AUTHORITY (another identity platform: the sandbox's) and
    CRMSYNC_MICROSOFT_CA (the CA bundle that signs it)."""
    if not env.get("CRMSYNC_MICROSOFT_CLIENT_ID"):
        return None
    from crmsync.providers.microsoft.oauth import MicrosoftOAuth

    public = env["CRMSYNC_PUBLIC_URL"].rstrip("/")
    extra: dict[str, str] = {}
    if env.get("CRMSYNC_MICROSOFT_AUTHORITY"):
        extra["authority"] = env["CRMSYNC_MICROSOFT_AUTHORITY"].rstrip("/")
    if env.get("CRMSYNC_MICROSOFT_CA"):
        extra["ca_path"] = env["CRMSYNC_MICROSOFT_CA"]
    oauth = MicrosoftOAuth(
        env["CRMSYNC_MICROSOFT_CLIENT_ID"],
        env["CRMSYNC_MICROSOFT_CLIENT_SECRET"],
        public + "/oauth_callback",
        **extra,
    )
    return MicrosoftSetup(oauth)


class MicrosoftKit:
    name = NAME
    label = "Microsoft 365"

    def setup(self, env: Mapping[str, str]) -> MicrosoftSetup | None:
        return setup_from_environment(env)

    # -- onboarding (AUTH-1, AUTH-2) -----------------------------------------------------
    def available(self, services: Any) -> bool:
        return _setup(services) is not None

    def consent(
        self, services: Any, wanted: Sequence[str], started: Started, login_hint: str = ""
    ) -> Consent:
        """Microsoft's consent screen, with crmsync's state; msal's PKCE verifier and
        nonce are the secret kept for the callback."""
        from crmsync.providers.microsoft import oauth

        return oauth.consent(_required(services).oauth, wanted, started.state, login_hint)

    def exchange(self, services: Any, wanted: Sequence[str], code: str, secret: str) -> Grant:
        from crmsync.providers.microsoft import oauth

        return oauth.exchange(_required(services).oauth, code, secret, services.clock())

    def revoke(self, services: Any, token: str) -> None:
        """Microsoft revokes no single refresh token (only all of a user's sessions): at
        disconnect the grant is erased, which is all crmsync holds of it (AUTH-4)."""

    def fresh_grant(self, services: Any, grants: Grants, connection: str, bound: str = "") -> Grant:
        """The connection's grant with a live access token, refreshed (and its rotated
        refresh token saved) under the connection's lock."""
        from crmsync.providers.microsoft import oauth

        setup = _required(services)
        return grants.fresh(
            connection,
            lambda g: oauth.refresh(setup.oauth, g, services.clock()),
            services.clock(),
            bound,
        )

    # -- a connection's adapters ----------------------------------------------------------
    def account(
        self,
        services: Any,
        store: Any,
        grants: Grants,
        record: ConnectionRecord,
        settings: Settings,
        crm: Any,
    ) -> tuple[ProviderAccount, Any]:
        self.fresh_grant(services, grants, record.id, record.subject)  # AUTH-3 still holds
        raise PermanentError(NOT_YET)

    # -- push and mail, with Graph's adapters -------------------------------------------------
    def open_push(
        self,
        services: Any,
        grants: Grants,
        tenant: str,
        connection: str,
        settings: Settings,
        replaced: list[Channel],
    ) -> None:
        raise SyncError("Microsoft change notifications are not built yet")

    def renew_push(
        self, services: Any, handle: Any, current: list[Channel], now: datetime
    ) -> list[str]:
        return []

    def stop_push(
        self, services: Any, grants: Grants, connection: str, settings: Settings, channel: Channel
    ) -> None:
        return None

    def on_push(self, services: Any, headers: Mapping[str, str]) -> tuple[int, str]:
        return 404, "no Microsoft notifications are expected"

    def mailbox(self, services: Any, grants: Grants, connection: str) -> str:
        raise SyncError("recording Outlook mail is not built yet")

    def on_mail(self, services: Any, data: bytes, enqueue: Callable[[str, str], object]) -> int:
        return 0


def _setup(services: Any) -> MicrosoftSetup | None:
    setup: MicrosoftSetup | None = services.providers.get(NAME)
    return setup


def _required(services: Any) -> MicrosoftSetup:
    setup = _setup(services)
    if setup is None:
        raise PermanentError("Microsoft cannot be connected here: no app registration is set up")
    return setup


KIT = MicrosoftKit()
