"""Microsoft 365 as crmsync's service layer sees it: consent through msal, the grant and
the account a connection is bound to, refreshing and revoking, a cycle's adapters on
Microsoft Graph (Outlook contacts, the calendar and To Do), and Graph's change
notifications: a subscription per synced kind, made at connect, renewed after cycles,
deleted at disconnect, and the notifications the graph_webhook function receives.
Mail recording (the "mail" service): Outlook's master categories play Gmail's labels,
a subscription on the user's messages wakes a mail pass, and that subscription names
the connection itself, so no mailbox address is routed.

`services` is the service layer's `Services`; this kit reads its own setup from
`services.providers["microsoft"]` (a MicrosoftSetup).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.auth.state import Consent, Started
from crmsync.connections import REFRESH_MARGIN, Grant, Grants, Identity
from crmsync.engine.records import SideRecord
from crmsync.errors import PermanentError, SyncError
from crmsync.model import KINDS, Kind
from crmsync.ports import Channel, ConnectionRecord, ProviderAccount, PushAnswer, PushRequest
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
    office_js: str = ""  # where the Outlook pane loads Office.js from: Microsoft's CDN


def setup_from_environment(env: Mapping[str, str]) -> MicrosoftSetup | None:
    """The setup a deployed function reads: CRMSYNC_MICROSOFT_CLIENT_ID and _SECRET, and
    optionally CRMSYNC_MICROSOFT_AUTHORITY (another identity platform: the sandbox's) and
    CRMSYNC_MICROSOFT_CA (the CA bundle that signs it); CRMSYNC_MICROSOFT_OFFICE_JS
    only where no Outlook loads the pane (the sandbox's stand-in for Office.js)."""
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
        env.get("CRMSYNC_MICROSOFT_CLIENT_SECRET", ""),
        public + "/oauth_callback",
        **extra,
    )
    office_js = env.get("CRMSYNC_MICROSOFT_OFFICE_JS", "")
    if graph:
        return MicrosoftSetup(oauth, graph, office_js=office_js)
    return MicrosoftSetup(oauth, office_js=office_js)


class MicrosoftKit:
    name = NAME
    label = "Microsoft 365"
    webhook = "graph_webhook"  # the function Graph's notifications and handshakes reach
    # Graph notifies changes of every kind (a subscription each), so nothing is polled.
    pushed: frozenset[Kind] = frozenset(KINDS)

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

    def admin_consent(self, services: Any, started: Started) -> str:
        """The identity platform's admin consent page for crmsync's delegated
        permissions, with crmsync's state: a directory admin approves them for the whole
        organisation, so its users are not asked one by one."""
        from crmsync.providers.microsoft import oauth

        return oauth.admin_consent_url(_required(services).oauth, started.state)

    def admin_consented(self, services: Any, answer: Mapping[str, str]) -> str:
        """The organisation (its directory id) the admin consent answer names;
        PermanentError when it does not say consent was granted."""
        from crmsync.providers.microsoft import oauth

        return oauth.admin_consented(answer)

    def sign_in(self, services: Any, started: Started, nonce: str, login_hint: str = "") -> Consent:
        """The account chooser for signing in to the web app (identity only); msal's
        own PKCE verifier and nonce are the secret kept for the callback."""
        from crmsync.providers.microsoft import oauth

        return oauth.sign_in(_required(services).oauth, started.state, login_hint)

    def signed_in(self, services: Any, code: str, secret: str, nonce: str) -> Identity:
        from crmsync.providers.microsoft import oauth

        return oauth.signed_in(_required(services).oauth, code, secret)

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
    def client(self, services: Any, grants: Grants, connection: str, bound: str = "") -> Any:
        """A Graph client acting with the connection's grant, checked (and refreshed)
        first, so a grant Microsoft no longer honours raises GrantRevoked at once. It
        holds the access token and reads the stored grant again only when the token is
        about to run out, not for each request."""
        from crmsync.providers.microsoft.client import GraphClient
        from crmsync.providers.microsoft.oauth import https_session

        setup = _required(services)
        held = [self.fresh_grant(services, grants, connection, bound)]

        def token() -> str:
            if held[0].expires is not None and held[0].expires - services.clock() <= REFRESH_MARGIN:
                held[0] = self.fresh_grant(services, grants, connection, bound)
            return held[0].access_token

        session = https_session(setup.oauth.ca_path)
        return GraphClient(token, setup.graph_root, session, **setup.client_options)

    def mail_account(self, services: Any, grants: Grants, connection: str) -> Any:
        """The connection's Outlook mail as e-mail recording uses it (the MailAccount
        port)."""
        from crmsync.providers.microsoft.mail import OutlookMail

        return OutlookMail(self.client(services, grants, connection))

    def watch_mail(self, services: Any, grants: Grants, connection: str, label: str) -> Any:
        """EML-1: Graph notifies graph_webhook of the connection's messages (a new one, a
        category changed); returns when the subscription runs out. Graph cannot watch
        one category, so every change wakes a mail pass, which finds the tagged ones."""
        from crmsync.providers.microsoft.push import Subscriptions, watch_messages

        store = services.backend.store(grants.tenant)
        subscriptions = Subscriptions(self.client(services, grants, connection), {})
        return watch_messages(
            subscriptions,
            services.channels(),
            store.channels_of(connection),
            grants.tenant,
            connection,
            services.url(self.webhook),
            services.clock(),
        )

    def stop_mail(self, services: Any, grants: Grants, connection: str) -> None:
        """The connection records mail no more: its messages' subscription goes."""
        from crmsync.providers.microsoft.push import MAIL, Subscriptions, stop_subscriptions

        store = services.backend.store(grants.tenant)
        mine = [c for c in store.channels_of(connection) if c.resource_id == MAIL]
        subscriptions = Subscriptions(self.client(services, grants, connection), {})
        stop_subscriptions(subscriptions, services.channels(), mine)

    def account(
        self,
        services: Any,
        store: Any,
        grants: Grants,
        record: ConnectionRecord,
        settings: Settings,
        crm: Any,
        kinds: Collection[Kind] = KINDS,
        dry_run: bool = False,
    ) -> tuple[ProviderAccount, Any]:
        """The mailbox's adapters of `kinds` for one cycle (a dry run's too, BEY-3:
        reading a mailbox makes nothing in it), and what renews its
        subscriptions; the grant is checked (and refreshed) first, so a grant Microsoft
        no longer honours parks the connection (AUTH-3). `crm` is asked for its users
        for the calendar; without one (None) the account only reads."""
        from crmsync.providers.microsoft.account import MicrosoftAccount

        client = self.client(services, grants, record.id, record.subject)
        directory: Mapping[str, str] = {}
        if "activity" in kinds and crm is not None:
            try:
                directory = crm.users()  # CAL-6: CRM members become attendees
            except SyncError:
                directory = {}

        def claimed(task_id: str) -> bool:
            return bool(store.links_for(record.id, "todo", (), (task_id,)))

        now = services.clock()  # the calendar's window is on the service's clock
        resources = resources_for(client, settings, directory, claimed, now)
        synced = {k: r for k, r in resources.items() if settings.enabled(k)}
        chosen = {k: r for k, r in resources.items() if k in kinds}
        return MicrosoftAccount(chosen), _subscriptions(client, synced)

    # -- the settings pages (SET-1) -------------------------------------------------------
    def choices(
        self, services: Any, tenant: str, connection: ConnectionRecord, what: str
    ) -> list[dict[str, str]]:
        """What the connection's mailbox offers for a setting: "calendar", "task_list"
        or "contact_scope" (the contacts' category), each {id: the setting's value,
        label}. Raises SyncError when Graph cannot be asked."""
        from crmsync.providers.microsoft.calendar import calendars
        from crmsync.providers.microsoft.contacts import categories
        from crmsync.providers.microsoft.todo import task_lists

        listers: dict[str, Callable[[Any], list[dict[str, str]]]] = {
            "calendar": calendars,
            "task_list": task_lists,
            "contact_scope": categories,
        }
        if what not in listers:
            raise ValueError(f"Microsoft 365 lists no {what!r}")
        grants = Grants(services.backend.store(tenant), services.vault, tenant)
        return listers[what](self.client(services, grants, connection.id, connection.subject))

    # -- an address book to import (CON-9) ------------------------------------------------
    def address_book(
        self,
        services: Any,
        tenant: str,
        connection: ConnectionRecord,
        settings: Settings,
        label: str,
    ) -> list[SideRecord]:
        """Every contact of the mailbox's default folder ("" for `label`), or those with
        one of its categories, read as a cycle reads them. Raises SyncError when Graph
        cannot be asked."""
        from crmsync.providers.microsoft.contacts import GraphContacts

        grants = Grants(services.backend.store(tenant), services.vault, tenant)
        client = self.client(services, grants, connection.id, connection.subject)
        contacts = GraphContacts(
            client, settings["contact_label"], custom=settings.custom_map("contact")
        )
        return contacts.address_book(label)

    # -- change notifications (RUN-1, RUN-3, RUN-5) -----------------------------------------
    def open_push(
        self,
        services: Any,
        grants: Grants,
        tenant: str,
        connection: str,
        settings: Settings,
        replaced: list[Channel],
    ) -> None:
        """A subscription per kind the connection syncs, each replacing its old one;
        SyncError naming what could not be made (that kind is then polled)."""
        from crmsync.providers.microsoft.push import open_subscriptions

        client = self.client(services, grants, connection)
        subscriptions = _subscriptions(
            client, resources_for(client, settings, {}, None, services.clock())
        )
        kinds = [kind for kind in KINDS if settings.enabled(kind)]
        problems = open_subscriptions(
            subscriptions,
            services.channels(),
            tenant,
            connection,
            kinds,
            services.url(self.webhook),
            services.clock(),
            replaced,
        )
        if problems:
            raise SyncError("; ".join(problems))

    def renew_push(
        self, services: Any, handle: Any, current: list[Channel], now: datetime
    ) -> list[str]:
        """After a cycle, with its handle: subscriptions that run out within a day are
        extended, made again where Graph no longer has them, and made for a synced kind
        that has none (its making failed at connect)."""
        from crmsync.providers.microsoft.push import renew_subscriptions

        address = services.url(self.webhook)
        return renew_subscriptions(
            handle, services.channels(), current, address, now, wanted=list(handle.resources)
        )

    def stop_push(
        self, services: Any, grants: Grants, connection: str, settings: Settings, channel: Channel
    ) -> None:
        """Delete the subscription at Graph (AUTH-4)."""
        from crmsync.providers.microsoft.push import Subscriptions

        Subscriptions(self.client(services, grants, connection), {}).delete(channel.id)

    def on_push(self, services: Any, request: PushRequest) -> PushAnswer:
        """A POST from Graph to graph_webhook: a handshake or a bundle of notifications.
        It reads only the channel directory, the queue and the store (the function
        holds nothing else)."""
        from crmsync.providers.microsoft.push import on_notification

        def forget_cursor(tenant: str, connection: str, kind: Kind) -> None:
            services.backend.store(tenant).forget_cursor(connection, "provider", kind)

        return on_notification(
            request,
            services.channels(),
            services.queue,
            forget_cursor,
            services.clock(),
            services.debounce,
        )

    # -- mail ------------------------------------------------------------------------------------
    def mailbox(self, services: Any, grants: Grants, connection: str) -> str:
        """Nothing to route: Graph's notifications name their subscription, which names
        the connection (`watch_mail`)."""
        return ""

    # -- the mail client's pane (CTX-1) -----------------------------------------------------
    def on_addon(self, services: Any, request: PushRequest) -> PushAnswer:
        """A POST of the Outlook add-in's task pane: checked, then answered."""
        from crmsync.providers.microsoft.addin import on_action, setup_of

        setup = _setup(services)
        if setup is None:
            return PushAnswer(404, "this crmsync has no Outlook add-in")
        return on_action(services, setup_of(setup.oauth, setup.office_js), request)

    def addon_page(self, services: Any, request: PushRequest) -> PushAnswer:
        """The Outlook add-in's task pane page, its script and its manifest."""
        from crmsync.providers.microsoft.addin import on_page, setup_of

        setup = _setup(services)
        if setup is None:
            return PushAnswer(404, "this crmsync has no Outlook add-in")
        return on_page(services, setup_of(setup.oauth, setup.office_js), request)

    def addon_deployment(self, public_url: str, name: str = "crmsync", client_id: str = "") -> str:
        """The Outlook add-in's XML manifest: its task pane under `public_url`, its SSO
        for crmsync's app registration `client_id`."""
        from crmsync.providers.microsoft.addin import manifest

        if not client_id:
            raise ValueError("the Outlook add-in's manifest needs the app registration's client id")
        return manifest(public_url, client_id, name)

    def on_mail(self, services: Any, data: bytes, enqueue: Callable[[str, str], object]) -> int:
        return 0


def resources_for(
    client: Any,
    settings: Settings,
    directory: Mapping[str, str],
    claimed: Callable[[str], bool] | None,
    now: datetime,
) -> dict[Kind, Resource]:
    """The mailbox's adapter of each kind, as the settings choose them."""
    from crmsync.providers.microsoft.calendar import GraphCalendar, sync_window
    from crmsync.providers.microsoft.contacts import GraphContacts
    from crmsync.providers.microsoft.todo import GraphTasks

    window = sync_window(now, settings["window_days"], settings["not_before"], settings["timezone"])
    return {
        "contact": GraphContacts(
            client, settings["contact_label"], custom=settings.custom_map("contact")
        ),
        "activity": GraphCalendar(
            client,
            settings["calendar"],
            directory,
            window=window,
            custom=settings.custom_map("activity"),
        ),
        "todo": GraphTasks(
            client,
            settings["task_list"],
            claimed,
            timezone=settings["timezone"],
            custom=settings.custom_map("todo"),
        ),
    }


def _subscriptions(client: Any, resources: Mapping[Kind, Any]) -> Any:
    """The mailbox's subscriptions, each kind's on what its adapter names."""
    from crmsync.providers.microsoft.push import Subscriptions

    return Subscriptions(
        client, {kind: resource.subscription_resource for kind, resource in resources.items()}
    )


def _setup(services: Any) -> MicrosoftSetup | None:
    setup: MicrosoftSetup | None = services.providers.get(NAME)
    return setup


def _required(services: Any) -> MicrosoftSetup:
    setup = _setup(services)
    if setup is None:
        raise PermanentError("Microsoft cannot be connected here: no app registration is set up")
    return setup


KIT = MicrosoftKit()
