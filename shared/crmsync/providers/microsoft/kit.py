"""Microsoft 365 as crmsync's service layer sees it: consent through msal, the grant and
the account a connection is bound to, refreshing and revoking, and a cycle's adapters
on Microsoft Graph (Outlook contacts, the calendar and To Do). Change notifications and
mail recording are not built yet: push is left to the scheduled cycle, and mail is not
routed.

`services` is the service layer's `Services`; this kit reads its own setup from
`services.providers["microsoft"]` (a MicrosoftSetup).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.auth.state import Consent, Started
from crmsync.connections import REFRESH_MARGIN, Grant, Grants
from crmsync.errors import PermanentError, SyncError
from crmsync.model import Kind
from crmsync.ports import Channel, ConnectionRecord, ProviderAccount
from crmsync.providers.accounts import Resource
from crmsync.settings import Settings

NAME = "microsoft"


@dataclass(frozen=True)
class MicrosoftSetup:
    """crmsync's app registration at Microsoft (crmsync.providers.microsoft.oauth's
    MicrosoftOAuth), where Graph answers (the sandbox's in development and tests), and
    how its client retries (GraphClient's keywords)."""

    oauth: Any
    graph_root: str = "https://graph.microsoft.com/v1.0"
    client_options: Mapping[str, Any] = field(default_factory=dict)


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
    graph = env.get("CRMSYNC_MICROSOFT_GRAPH_ROOT", "").rstrip("/")
    oauth = MicrosoftOAuth(
        env["CRMSYNC_MICROSOFT_CLIENT_ID"],
        env["CRMSYNC_MICROSOFT_CLIENT_SECRET"],
        public + "/oauth_callback",
        **extra,
    )
    return MicrosoftSetup(oauth, graph) if graph else MicrosoftSetup(oauth)


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
        """The mailbox's adapters for one cycle; the grant is checked (and refreshed)
        first, so a grant Microsoft no longer honours parks the connection (AUTH-3)."""
        from crmsync.providers.microsoft.account import MicrosoftAccount
        from crmsync.providers.microsoft.calendar import GraphCalendar, sync_window
        from crmsync.providers.microsoft.client import GraphClient
        from crmsync.providers.microsoft.contacts import GraphContacts
        from crmsync.providers.microsoft.oauth import https_session
        from crmsync.providers.microsoft.todo import GraphTasks

        setup = _required(services)
        held = [self.fresh_grant(services, grants, record.id, record.subject)]

        def token() -> str:
            """The access token held for the cycle; the stored grant is read (and
            refreshed) again only when it is about to run out, not for each request."""
            if held[0].expires is not None and held[0].expires - services.clock() <= REFRESH_MARGIN:
                held[0] = self.fresh_grant(services, grants, record.id, record.subject)
            return held[0].access_token

        session = https_session(setup.oauth.ca_path)
        client = GraphClient(token, setup.graph_root, session, **setup.client_options)
        try:
            directory = crm.users()  # CAL-6: CRM members become attendees
        except SyncError:
            directory = {}

        def claimed(task_id: str) -> bool:
            return bool(store.links_for(record.id, "todo", (), (task_id,)))

        now = services.clock()  # the calendar's window is on the service's clock
        resources: dict[Kind, Resource] = {
            "contact": GraphContacts(client, settings["contact_label"]),
            "activity": GraphCalendar(
                client,
                settings["calendar"],
                directory,
                window=sync_window(
                    now, settings["window_days"], settings["not_before"], settings["timezone"]
                ),
            ),
            "todo": GraphTasks(
                client, settings["task_list"], claimed, timezone=settings["timezone"]
            ),
        }
        return MicrosoftAccount(resources), None

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
