"""Microsoft onboarding through crmsync's own use cases against the Microsoft sandbox's
identity platform, with the real msal over https (AUTH-1..4 for Microsoft): the user's
signed single-use state with msal's PKCE and nonce, the connection bound to the
account's tenant and object id, a consent as another account refused, the grant
sealed, refreshed with rotation under the connection's lock, and a spent grant as
`needs_reauth`; and the first cycle of a connected Outlook user, over Graph."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from crmsync import service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.connections import Grants
from crmsync.crm.memory import MemoryCrm
from crmsync.errors import GrantRevoked
from crmsync.providers.microsoft import oauth
from crmsync.providers.microsoft.kit import KIT, MicrosoftSetup
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.testing.microsoft import registered
from sandbox.microsoft import identity
from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.server import serve, trusting_session
from tests.integration.microsoft_sandbox import Clock, Graph

pytestmark = pytest.mark.integration

CLIENT_ID, SECRET = "0d8b0f4e-8f52-4c4e-9a55-4b7a0c2f9e11", "crmsync-app-secret"
PUBLIC = "https://crmsync.example"
ADA, MALLORY = "ada@contoso.example", "mallory@contoso.example"
TENANT, CONNECTION = "acme", "microsoft-u1"


@dataclass
class World:
    sandbox: MicrosoftSandbox
    ca: str
    services: service.Services
    base: str


@pytest.fixture
def world() -> Iterator[World]:
    sandbox = MicrosoftSandbox()
    for email in (ADA, MALLORY):
        sandbox.add_user(email)
    served = serve(sandbox)
    config = registered(
        sandbox, served.base_url, served.ca_path, PUBLIC + "/oauth_callback", CLIENT_ID, SECRET
    )
    services = service.Services(
        backend=MemoryBackend(),
        queue=InlineQueue(),
        vault=TokenVault(LocalKek(os.urandom(32))),
        secret=os.urandom(32),
        public_url=PUBLIC,
        providers={
            "microsoft": MicrosoftSetup(
                config, f"{served.base_url}/v1.0", {"attempts": 1, "sleep": lambda s: None}
            )
        },
    )
    service.create_tenant(
        services,
        TENANT,
        name="Acme",
        crm_base_url="https://crm.invalid",
        crm_token="crm-token",
        event_secret="event-secret",
    )
    yield World(sandbox, served.ca_path, services, served.base_url)
    served.stop()
    assert not sandbox.drift, sandbox.drift  # every Graph answer held Graph's schema


def link(world: World, user: str = "u1") -> str:
    url = service.onboarding_link(world.services, TENANT, user)
    return parse_qs(urlsplit(url).query)["link"][0]


def connect(world: World, email: str, wanted: tuple[str, ...] = ("sync",)) -> dict[str, object]:
    """Open the link, pick Microsoft, consent as `email`, come back to the callback."""
    url = service.start_oauth(world.services, link(world), "microsoft", wanted)
    callback = identity.consent(url, email, verify=world.ca)
    return service.finish_oauth(world.services, callback.get("state"), callback.get("code"))


def user_graph(world: World, email: str) -> Graph:
    """Graph as the user's own Outlook uses it."""
    token = world.sandbox.issue_token(email, ["Contacts.ReadWrite"])
    return Graph(world.sandbox, world.base, world.ca, Clock(), token, trusting_session(world.ca))


def grants(world: World) -> Grants:
    return Grants(world.services.backend.store(TENANT), world.services.vault, TENANT)


def test_AUTH1_microsoft_is_offered_where_its_app_registration_is_set_up(world: World) -> None:
    choice = service.connect_choice(world.services, link(world))
    assert "microsoft" in choice.providers
    bare = replace(world.services, providers={})
    assert "microsoft" not in service.connect_choice(bare, link(world)).providers


def test_AUTH2_a_user_connects_through_msal_and_is_bound_to_the_accounts_tenant_and_object_id(
    world: World,
) -> None:
    record = connect(world, ADA)

    user = world.sandbox.users[ADA]
    assert record["subject"] == f"{world.sandbox.tenant_id}/{user.oid}"
    assert (record["account"], record["status"], record["services"]) == (ADA, "active", ["sync"])
    grant = grants(world).load(CONNECTION)
    assert grant.refresh_token and grant.subject == record["subject"]
    assert {"Contacts.ReadWrite", "Calendars.ReadWrite", "Tasks.ReadWrite"} <= grant.scopes
    assert not {"Mail.ReadWrite"} & grant.scopes  # mail is authorised separately (AUTH-1)


def test_AUTH2_the_consent_screen_carries_crmsyncs_state_and_pkce_and_the_state_is_single_use(
    world: World,
) -> None:
    url = service.start_oauth(world.services, link(world), "microsoft", ("sync",))
    asked = parse_qs(urlsplit(url).query)
    assert asked["code_challenge_method"] == ["S256"] and asked["nonce"]
    callback = identity.consent(url, ADA, verify=world.ca)
    service.finish_oauth(world.services, callback["state"], callback["code"])

    with pytest.raises(service.Refused) as refused:
        service.finish_oauth(world.services, callback["state"], callback["code"])
    assert refused.value.status == 400


def test_AUTH2_consenting_as_another_account_through_the_users_link_is_refused(
    world: World,
) -> None:
    first = connect(world, ADA)

    with pytest.raises(service.Refused) as refused:
        connect(world, MALLORY)

    assert refused.value.status == 409
    kept = world.services.backend.store(TENANT).connection_record(CONNECTION)
    assert kept is not None and (kept["subject"], kept["account"]) == (first["subject"], ADA)
    assert grants(world).load(CONNECTION).email == ADA


def test_AUTH3_a_refresh_rotates_the_refresh_token_and_keeps_the_new_one(world: World) -> None:
    connect(world, ADA)
    before = grants(world).load(CONNECTION)
    later = datetime.now(UTC) + timedelta(hours=2)  # the access token has run out
    world.services.clock = lambda: later

    fresh = KIT.fresh_grant(world.services, grants(world), CONNECTION, before.subject)

    assert fresh.access_token != before.access_token
    assert fresh.refresh_token and fresh.refresh_token != before.refresh_token
    assert grants(world).load(CONNECTION).refresh_token == fresh.refresh_token  # kept
    with pytest.raises(GrantRevoked):  # the spent one is refused: rotation happened
        oauth.refresh(world.services.providers["microsoft"].oauth, before, later)


def test_AUTH3_a_grant_microsoft_no_longer_honours_parks_the_connection(world: World) -> None:
    connect(world, ADA)
    identity.revoke_sessions(world.sandbox, ADA)
    later = datetime.now(UTC) + timedelta(hours=2)
    world.services.clock = lambda: later

    run = service.work(world.services, TENANT, CONNECTION, "schedule")

    assert run["status"] == "needs_reauth"
    record = world.services.backend.store(TENANT).connection_record(CONNECTION)
    assert record is not None and record["status"] == "needs_reauth"


def test_CON2_a_connected_outlook_user_gets_the_crm_contacts_of_their_sync_group(
    world: World,
) -> None:
    crm = MemoryCrm(lambda: datetime.now(UTC))
    world.services.crm_connector = lambda tenant, record, user, settings: crm.connector(
        user, settings["contact_group"]
    )
    ada_lovelace = crm.log.insert(
        "contact",
        {"first_name": "Ada", "last_name": "Lovelace", "emails": ["ada@engines.example"]},
        owner="u1",
        remote=False,
    ).id
    crm.groups.setdefault("u1", set()).add(ada_lovelace)
    connect(world, ADA)
    contacts_only = {"enabled": {"activity": False, "todo": False}}
    world.services.backend.store(TENANT).save_connection_record(
        CONNECTION, {"settings": contacts_only}
    )

    run = service.work(world.services, TENANT, CONNECTION, "schedule")

    assert run["status"] == "ok", run
    assert run["counts"] == {"contact": {"create": 1}}
    graph = user_graph(world, ADA)
    [contact] = graph.ok(graph.get("me/contacts"))["value"]
    assert (contact["givenName"], contact["surname"]) == ("Ada", "Lovelace")
    assert [e["address"] for e in contact["emailAddresses"]] == ["ada@engines.example"]
    assert contact["categories"] == ["CRM"]  # CON-2: tagged with the sync category

    graph.ok(graph.patch(f"me/contacts/{contact['id']}", {"jobTitle": "Analyst"}))
    again = service.work(world.services, TENANT, CONNECTION, "schedule")

    assert again["counts"] == {"contact": {"update": 1}}, again
    assert crm.connector("u1").get("contact", ada_lovelace).fields["title"] == "Analyst"  # type: ignore[index]


def test_CON3_an_untagged_outlook_twin_is_linked_tagged_and_keeps_its_id(
    world: World,
) -> None:
    crm = MemoryCrm(lambda: datetime.now(UTC))
    world.services.crm_connector = lambda tenant, record, user, settings: crm.connector(
        user, settings["contact_group"]
    )
    grace = crm.log.insert(
        "contact",
        {"first_name": "Grace", "last_name": "Hopper", "emails": ["grace@navy.example"]},
        owner="u1",
        remote=False,
    ).id
    crm.groups.setdefault("u1", set()).add(grace)
    graph = user_graph(world, ADA)
    graph.ok(
        graph.post(
            "me/contacts",
            {
                "givenName": "Grace",
                "surname": "Hopper",
                "emailAddresses": [{"address": "grace@navy.example", "name": "Grace"}],
            },
        ),
        201,
    )
    connect(world, ADA)
    world.services.backend.store(TENANT).save_connection_record(
        CONNECTION, {"settings": {"enabled": {"activity": False, "todo": False}}}
    )

    first = service.work(world.services, TENANT, CONNECTION, "schedule")
    second = service.work(world.services, TENANT, CONNECTION, "schedule")

    assert first["status"] == second["status"] == "ok", (first, second)
    assert "delete" not in second["counts"].get("contact", {}), second
    assert "unlink" not in second["counts"].get("contact", {}), second
    assert crm.connector("u1").get("contact", grace).in_scope  # still in the sync group
    [contact] = graph.ok(graph.get("me/contacts"))["value"]
    assert contact["surname"] == "Hopper" and contact["categories"] == ["CRM"]  # tagged once
    [link] = world.services.backend.store(TENANT).links(CONNECTION, "contact")
    assert link.provider_id == contact["id"]  # the twin itself, its id kept


def test_CAL1_TSK1_a_connected_outlook_users_crm_meeting_and_todo_reach_the_calendar_and_to_do(
    world: World,
) -> None:
    crm = MemoryCrm(lambda: datetime.now(UTC))
    world.services.crm_connector = lambda tenant, record, user, settings: crm.connector(
        user, settings["contact_group"]
    )
    start = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    crm.log.insert(
        "activity",
        {
            "type": "meeting",
            "subject": "Board review",
            "start": start,
            "end": start + timedelta(hours=1),
            "timezone": "Europe/Berlin",
            "leader": "u1",
        },
        owner="u1",
        remote=False,
    )
    due = (datetime.now(UTC) + timedelta(days=3)).date()
    crm.log.insert("todo", {"subject": "Send the offer", "due": due}, owner="u1", remote=False)
    connect(world, ADA)

    run = service.work(world.services, TENANT, CONNECTION, "schedule")

    assert run["status"] == "ok", run
    assert run["counts"] == {"activity": {"create": 1}, "todo": {"create": 1}}, run
    graph = user_graph(world, ADA)
    graph.token = world.sandbox.issue_token(ADA, ["Calendars.ReadWrite", "Tasks.ReadWrite"])
    [event] = graph.ok(graph.get("me/events"))["value"]
    assert event["subject"] == "Board review"
    [default] = [
        t
        for t in graph.ok(graph.get("me/todo/lists"))["value"]
        if t.get("wellknownListName") == "defaultList"
    ]
    [task] = graph.ok(graph.get(f"me/todo/lists/{default['id']}/tasks"))["value"]
    assert task["title"] == "Send the offer"
    again = service.work(world.services, TENANT, CONNECTION, "schedule")
    assert again["status"] == "ok" and again["counts"] == {}, again  # its own echo is no news


# -- organisation-wide consent (AUTH-1) ----------------------------------------------------------
def admin_link(world: World) -> str:
    url = service.admin_consent_link(world.services, TENANT, "microsoft")
    return parse_qs(urlsplit(url).query)["admin"][0]


def test_AUTH1_a_directory_admin_approves_crmsync_for_the_organisation_through_the_link(
    world: World,
) -> None:
    """The operator's admin consent link leads a directory admin to Microsoft's admin
    consent page, asking for every delegated permission crmsync may use; after Accept,
    the callback keeps which organisation approved, and the page says what follows."""
    from werkzeug.test import Client

    from crmsync import entrypoints
    from sandbox.local.stack import functions_app

    entrypoints.use(world.services)
    try:
        browser = Client(functions_app())
        opened = browser.get("/oauth_start", query_string={"admin": admin_link(world)})
        assert opened.status_code == 302
        consent_url = opened.headers["Location"]
        asked = parse_qs(urlsplit(consent_url).query)
        assert urlsplit(consent_url).path.endswith("/v2.0/adminconsent")
        assert set(asked["scope"][0].split()) == {
            f"https://graph.microsoft.com/{s}" for scopes in oauth.SCOPES.values() for s in scopes
        }
        answer = identity.consent(consent_url, "it-admin@contoso.example", verify=world.ca)
        assert answer["admin_consent"] == "True"
        back = browser.get("/oauth_callback", query_string=answer)
    finally:
        entrypoints.use(None)

    assert back.status_code == 200 and back.mimetype == "text/html"
    page = back.get_data(as_text=True)
    assert "Approved for your organisation" in page and "onboarding links" in page
    record = world.services.backend.store(TENANT).tenant_record()
    assert record is not None
    assert record["admin_consent"]["microsoft"]["directory"] == world.sandbox.tenant_id
    assert identity.state_of(world.sandbox).admin_consented[CLIENT_ID] == frozenset(
        s for scopes in oauth.SCOPES.values() for s in scopes
    )


def test_AUTH1_a_declined_or_replayed_admin_consent_changes_nothing(world: World) -> None:
    declined = identity.consent(
        service.start_admin_consent(world.services, admin_link(world)),
        "it-admin@contoso.example",
        verify=world.ca,
        accept=False,
    )
    with pytest.raises(service.Refused, match="consent was not given"):
        service.finish_admin_consent(world.services, declined["state"], declined)

    accepted = identity.consent(
        service.start_admin_consent(world.services, admin_link(world)),
        "it-admin@contoso.example",
        verify=world.ca,
    )
    service.finish_admin_consent(world.services, accepted["state"], accepted)
    with pytest.raises(service.Refused, match="already used"):  # AUTH-2: single use
        service.finish_admin_consent(world.services, accepted["state"], accepted)
    record = world.services.backend.store(TENANT).tenant_record()
    assert record is not None and list(record["admin_consent"]) == ["microsoft"]


def test_AUTH2_an_answer_that_does_not_say_consent_was_granted_is_refused(world: World) -> None:
    """A callback with crmsync's state whose answer lacks `admin_consent=True` (or the
    organisation) approves nothing."""
    started = service.start_admin_consent(world.services, admin_link(world))
    state = parse_qs(urlsplit(started).query)["state"][0]

    with pytest.raises(service.Refused, match="could not be confirmed"):
        service.finish_admin_consent(world.services, state, {"state": state, "tenant": "t"})

    record = world.services.backend.store(TENANT).tenant_record()
    assert record is not None and "admin_consent" not in record


def test_AUTH1_an_admin_consent_link_is_no_onboarding_link_nor_the_other_way_round(
    world: World,
) -> None:
    with pytest.raises(service.Refused, match="not one crmsync issued"):
        service.start_admin_consent(world.services, link(world))
    with pytest.raises(service.Refused, match="not one crmsync issued"):
        service.start_oauth(world.services, admin_link(world), "microsoft", ("sync",))
    with pytest.raises(service.Refused, match="no such tenant"):
        service.admin_consent_link(world.services, "nobody", "microsoft")
    with pytest.raises(service.Refused, match="no organisation-wide consent"):
        service.admin_consent_link(world.services, TENANT, "google")


def test_AUTH1_an_expired_admin_consent_link_is_refused_with_what_to_do(world: World) -> None:
    url = service.admin_consent_link(world.services, TENANT, "microsoft", ttl=timedelta(0))
    with pytest.raises(service.Refused, match="expired") as refused:
        service.start_admin_consent(world.services, parse_qs(urlsplit(url).query)["admin"][0])
    assert refused.value.status == 410
