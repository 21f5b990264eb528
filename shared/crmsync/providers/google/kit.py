"""Google as crmsync's service layer sees it: one kit that starts and finishes consent,
builds a connection's adapters from its grant, opens, renews and stops Calendar push
channels, routes Gmail notifications, and revokes. `crmsync.service` reaches Google
only through `crmsync.providers.kit("google")`, so it names no Google module, field or
endpoint itself.

`services` is the service layer's `Services`; this kit reads its own setup from
`services.providers["google"]` (a GoogleSetup: crmsync's OAuth client and, in
development and tests, the sandbox's endpoints).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.auth.state import Consent, Started
from crmsync.connections import Grant, Grants, Identity
from crmsync.engine.records import SideRecord
from crmsync.errors import PermanentError, SyncError
from crmsync.model import KINDS, Kind
from crmsync.ports import Channel, ConnectionRecord, ProviderAccount, PushAnswer, PushRequest
from crmsync.settings import Settings

NAME = "google"


@dataclass
class GoogleSetup:
    """crmsync's OAuth client at Google, and where Google's APIs answer (the sandbox's
    addresses in development and tests, Google's own otherwise)."""

    oauth: Any  # crmsync.providers.google.oauth.GoogleOAuth
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # How the API client retries and waits (GoogleClient's keywords); its defaults in
    # production, one attempt and no waiting where a test's clock is its own.
    client_options: Mapping[str, Any] = field(default_factory=dict)
    # The Pub/Sub topic Gmail publishes mailbox notifications to (EML-1),
    # projects/P/topics/gmail-notifications; none: mail is recorded on Sync now only.
    gmail_topic: str = ""
    # CTX-1: the Gmail add-on's deployment (its service account and OAuth client), and
    # where Google publishes the certificates that sign ID tokens; None: no add-on
    addon: Any = None  # crmsync.providers.google.addon.AddonSetup


def setup_from_environment(env: Mapping[str, str]) -> GoogleSetup | None:
    """The setup a deployed function reads: CRMSYNC_GOOGLE_CLIENT_ID and _SECRET,
    CRMSYNC_GOOGLE_ROOT for Google's APIs and OAuth at another root (the sandbox), and
    CRMSYNC_GMAIL_TOPIC for Gmail's notifications, and CRMSYNC_GOOGLE_ADDON_ACCOUNT and
    _CLIENT_ID for the Gmail add-on (CTX-1)."""
    if not env.get("CRMSYNC_GOOGLE_CLIENT_ID"):
        return None
    from crmsync.providers.google.oauth import GoogleOAuth

    public = env["CRMSYNC_PUBLIC_URL"].rstrip("/")
    root = env.get("CRMSYNC_GOOGLE_ROOT", "").rstrip("/")
    oauth_urls: dict[str, str] = {}
    endpoints: dict[str, str] = {}
    if root:
        oauth_urls = {
            "auth_uri": root + "/o/oauth2/auth",
            "token_uri": root + "/token",
            "revoke_uri": root + "/revoke",
            "certs_uri": root + "/oauth2/v1/certs",
        }
        endpoints = {
            "calendar": root + "/calendar/v3/",
            "people": root + "/",
            "tasks": root + "/",
            "gmail": root + "/",
        }
    oauth = GoogleOAuth(
        env["CRMSYNC_GOOGLE_CLIENT_ID"],
        env["CRMSYNC_GOOGLE_CLIENT_SECRET"],
        public + "/oauth_callback",
        **oauth_urls,
    )
    addon = None
    if env.get("CRMSYNC_GOOGLE_ADDON_ACCOUNT"):
        from crmsync.providers.google.addon import AddonSetup

        addon = AddonSetup(
            account=env["CRMSYNC_GOOGLE_ADDON_ACCOUNT"],
            client_id=env["CRMSYNC_GOOGLE_ADDON_CLIENT_ID"],
            certs_uri=oauth.certs_uri,
            endpoints=endpoints,
        )
    return GoogleSetup(
        oauth, endpoints, gmail_topic=env.get("CRMSYNC_GMAIL_TOPIC", ""), addon=addon
    )


class GoogleKit:
    name = NAME
    label = "Google"
    webhook = "google_webhook"  # the function Calendar's push notifications reach
    # The kinds whose changes Google pushes: Calendar's. People and Tasks have no push,
    # so the scheduler polls those between full cycles (poll_minutes).
    pushed: frozenset[Kind] = frozenset({"activity"})

    def setup(self, env: Mapping[str, str]) -> GoogleSetup | None:
        return setup_from_environment(env)

    # -- onboarding (AUTH-1, AUTH-2) -----------------------------------------------------
    def available(self, services: Any) -> bool:
        return _setup(services) is not None

    def consent(
        self, services: Any, wanted: Sequence[str], started: Started, login_hint: str = ""
    ) -> Consent:
        """Google's consent screen, with crmsync's state and PKCE challenge."""
        from crmsync.providers.google import oauth as google_auth

        oauth = _required(services).oauth
        url = google_auth.authorization_url(
            oauth, wanted, started.state, started.challenge, login_hint
        )
        return Consent(url)

    def sign_in(self, services: Any, started: Started, nonce: str, login_hint: str = "") -> Consent:
        """Google's account chooser for signing in to the web app (identity only)."""
        from crmsync.providers.google import oauth as google_auth

        oauth = _required(services).oauth
        url = google_auth.sign_in_url(oauth, started.state, started.challenge, nonce, login_hint)
        return Consent(url)

    def signed_in(self, services: Any, code: str, verifier: str, nonce: str) -> Identity:
        from crmsync.providers.google import oauth as google_auth

        return google_auth.signed_in(_required(services).oauth, code, verifier, nonce)

    def exchange(self, services: Any, wanted: Sequence[str], code: str, verifier: str) -> Grant:
        from crmsync.providers.google import oauth as google_auth

        return google_auth.exchange(_required(services).oauth, wanted, code, verifier)

    def revoke(self, services: Any, token: str) -> None:
        from crmsync.providers.google import oauth as google_auth

        google_auth.revoke(_required(services).oauth, token)

    # -- a connection's adapters ----------------------------------------------------------
    def client(self, services: Any, grants: Grants, connection: str, bound: str = "") -> Any:
        """A client acting with the connection's grant; with `bound`, only if the grant
        is of that account (AccountChanged otherwise)."""
        from crmsync.providers.google import oauth as google_auth
        from crmsync.providers.google.client import GoogleClient

        setup = _required(services)
        grant = grants.fresh(
            connection, lambda g: google_auth.refresh(setup.oauth, g), services.clock(), bound
        )
        return GoogleClient(
            google_auth.credentials(setup.oauth, grant), setup.endpoints, **setup.client_options
        )

    def calendar(
        self,
        services: Any,
        grants: Grants,
        connection: str,
        settings: Settings,
        directory: Mapping[str, str] | None = None,
        bound: str = "",
    ) -> Any:
        from crmsync.providers.google.calendar import GoogleCalendar

        client = self.client(services, grants, connection, bound)
        return GoogleCalendar(client, settings["calendar"], dict(directory or {}))

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
        """The provider account of one cycle with the adapters of `kinds`, and what
        renews its push (its calendar; None without one). `crm` is asked for its users
        for the calendar; without one (None) the account only reads. A dry run's
        account (BEY-3) makes nothing as it reads (the contact label)."""
        from crmsync.providers.google.account import GoogleAccount
        from crmsync.providers.google.calendar import GoogleCalendar
        from crmsync.providers.google.people import GoogleContacts
        from crmsync.providers.google.tasks import GoogleTasks

        connection = record.id
        if _setup(services) is None:
            raise PermanentError("Google cannot be synced here: no OAuth client is set up")
        client = self.client(services, grants, connection, record.subject)
        resources: dict[Kind, Any] = {}
        if "activity" in kinds:
            try:
                directory = crm.users() if crm is not None else {}  # CAL-6: attendees
            except SyncError:
                directory = {}
            resources["activity"] = GoogleCalendar(
                client, settings["calendar"], directory, custom=settings.custom_map("activity")
            )
        if "contact" in kinds:
            resources["contact"] = GoogleContacts(
                client,
                label=settings["contact_label"],
                custom=settings.custom_map("contact"),
                make_label=not dry_run,
            )
        if "todo" in kinds:

            def claimed(task_id: str) -> bool:
                return bool(store.links_for(connection, "todo", (), (task_id,)))

            chosen = str(settings["task_list"])
            resources["todo"] = GoogleTasks(
                client,
                "@default" if chosen == "default" else chosen,
                claimed=claimed,
                clock=services.clock,
            )
        return GoogleAccount(resources), resources.get("activity")

    # -- the settings pages (SET-1) -------------------------------------------------------
    def choices(
        self, services: Any, tenant: str, connection: ConnectionRecord, what: str
    ) -> list[dict[str, str]]:
        """What the connection's account offers for a setting: "calendar", "task_list"
        or "contact_scope" (the contact label), each {id: the setting's value, label}.
        Raises SyncError when Google cannot be asked."""
        from crmsync.providers.google.calendar import calendars
        from crmsync.providers.google.people import labels
        from crmsync.providers.google.tasks import task_lists

        listers: dict[str, Callable[[Any], list[dict[str, str]]]] = {
            "calendar": calendars,
            "task_list": task_lists,
            "contact_scope": labels,
        }
        if what not in listers:
            raise ValueError(f"Google lists no {what!r}")
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
        """Every contact of the account ("" for `label`), or those under one of its
        labels, read as a cycle reads them. Raises SyncError when Google cannot be asked."""
        from crmsync.providers.google.people import GoogleContacts

        grants = Grants(services.backend.store(tenant), services.vault, tenant)
        client = self.client(services, grants, connection.id, connection.subject)
        contacts = GoogleContacts(
            client,
            label=settings["contact_label"],
            custom=settings.custom_map("contact"),
            make_label=False,
        )
        return contacts.address_book(label)

    # -- push (RUN-3, RUN-5) ----------------------------------------------------------------
    def open_push(
        self,
        services: Any,
        grants: Grants,
        tenant: str,
        connection: str,
        settings: Settings,
        replaced: list[Channel],
    ) -> None:
        """A new Calendar channel, then the ones it replaces stopped and forgotten."""
        from crmsync.providers.google.push import open_channel, stop_channels

        calendar = self.calendar(services, grants, connection, settings)
        address = services.url(self.webhook)
        open_channel(calendar, services.channels(), tenant, connection, address)
        stop_channels(calendar, services.channels(), replaced)

    def renew_push(
        self, services: Any, handle: Any, current: list[Channel], now: datetime
    ) -> list[str]:
        from crmsync.providers.google.push import renew_channels

        address = services.url(self.webhook)
        return renew_channels(handle, services.channels(), current, address, now)

    def stop_push(
        self, services: Any, grants: Grants, connection: str, settings: Settings, channel: Channel
    ) -> None:
        self.calendar(services, grants, connection, settings).stop(channel.id, channel.resource_id)

    def on_push(self, services: Any, request: PushRequest) -> PushAnswer:
        """A Calendar notification: all it says is in its headers."""
        from crmsync.providers.google.push import on_notification

        answer = on_notification(
            request.headers,
            services.channels(),
            services.queue,
            services.clock(),
            services.debounce,
        )
        return PushAnswer(answer.status, answer.reason)

    # -- mail (the "mail" service) -----------------------------------------------------------
    # -- the mail client's pane (CTX-1) -----------------------------------------------------
    def on_addon(self, services: Any, request: PushRequest) -> PushAnswer:
        """A request of the Gmail add-on: checked, then answered with a card."""
        setup = _setup(services)
        if setup is None or setup.addon is None:
            return PushAnswer(404, "this crmsync has no Gmail add-on")
        from crmsync.providers.google.addon import on_event

        return on_event(services, setup.addon, request)

    def addon_deployment(
        self, public_url: str, name: str = "crmsync", client_id: str = ""
    ) -> dict[str, Any]:
        """The Gmail add-on's deployment resource (its triggers call `public_url`; Google
        names the add-on's OAuth client when it is deployed, so `client_id` is unused)."""
        from crmsync.providers.google.addon import deployment

        return deployment(public_url, name)

    def mail_account(self, services: Any, grants: Grants, connection: str) -> Any:
        """The connection's Gmail as e-mail recording uses it (the MailAccount port)."""
        from crmsync.providers.google.gmail import GmailAccount

        return GmailAccount(self.client(services, grants, connection))

    def watch_mail(self, services: Any, grants: Grants, connection: str, label: str) -> Any:
        """EML-1: Gmail notifies crmsync's topic of changes to messages tagged `label`;
        returns when the watch ends, or None when no topic is set up."""
        from crmsync.providers.google.gmail import GmailAccount

        topic = _required(services).gmail_topic
        if not topic:
            return None
        return GmailAccount(self.client(services, grants, connection)).watch(topic, label)

    def stop_mail(self, services: Any, grants: Grants, connection: str) -> None:
        """The connection records mail no more: Gmail's notifications of it stop."""
        from crmsync.providers.google.gmail import GmailAccount

        if _required(services).gmail_topic:
            GmailAccount(self.client(services, grants, connection)).stop()

    def mailbox(self, services: Any, grants: Grants, connection: str) -> str:
        """The address Gmail's notifications name this connection's mailbox by."""
        from crmsync.providers.google.gmail_push import mailbox_address

        return mailbox_address(self.client(services, grants, connection))

    def on_mail(self, services: Any, data: bytes, enqueue: Callable[[str, str], object]) -> int:
        """A Gmail notification (the data of a Pub/Sub push): `enqueue(tenant,
        connection)` for each active connection of that mailbox that records mail.
        Returns how many; ValueError (with the reason) for data that is not one."""
        from crmsync.providers.google.gmail_push import (
            BadNotification,
            on_gmail_notification,
            parse_notification,
        )

        try:
            notification = parse_notification(data)
        except BadNotification as exc:
            raise ValueError(str(exc)) from exc
        return on_gmail_notification(
            notification,
            services.backend.store(""),  # the mailbox directory is global
            lambda tenant, connection: services.backend.store(tenant).connection_record(connection),
            enqueue,
        )


def _setup(services: Any) -> GoogleSetup | None:
    setup: GoogleSetup | None = services.providers.get(NAME)
    return setup


def _required(services: Any) -> GoogleSetup:
    setup = _setup(services)
    if setup is None:
        raise PermanentError("Google cannot be connected here: no OAuth client is set up")
    return setup


KIT = GoogleKit()
