"""A connection is bound to the provider account that first consented (AUTH-1, AUTH-2,
SYN-9): a consent as another account through the user's onboarding link is refused
and changes nothing; switching accounts takes a link made after the binding and is a
disconnect of the old account (grant revoked, channels stopped, links forgotten,
nothing deleted on either side) followed by a fresh connect; a cycle never runs under
another account's grant; push channels are replaced, never piled up.

Through the functions over real sockets, with the reference CRM and the Google sandbox
(the same flow a browser goes through)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.connections import Grants
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import calendar as google_calendar
from sandbox.google import oauth as google_oauth
from sandbox.local.stack import DEMO_USERS, LocalStack, consent, query
from tests.integration.test_functions import (
    CONNECTION,
    DANA,
    connected,
    crm_records,
    drain,
    page_text,
    queue,
    stack,
    store,
)

pytestmark = pytest.mark.integration

__all__ = ["connected", "stack"]  # fixtures

MALLORY = "mallory@elsewhere.example"
MAX = DEMO_USERS["u2"]


def consent_as(
    stack: LocalStack, link: str, email: str, *, switch: bool = False, services: str = "sync"
) -> requests.Response:
    """Open `link`, choose the services (and maybe to switch), consent as `email`."""
    chosen = requests.get(
        link + f"&provider=google&services={services}" + ("&switch=1" if switch else ""),
        allow_redirects=False,
        timeout=10,
    )
    if chosen.status_code != 302:
        return chosen
    return requests.get(consent(chosen.headers["Location"], email), timeout=60)


def live_channels(stack: LocalStack, email: str) -> list[Any]:
    account = stack.google.accounts[email]
    state = google_calendar.state_of(stack.google, account)
    return [c for c in state.channels.values() if not c.stopped]


def give_google_data(stack: LocalStack, email: str) -> None:
    """An account of its own, with a meeting that must never reach the CRM of a user
    whose connection is bound to another account."""
    stack.google.add_account(email)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    stack.google_api("calendar", "v3", email=email).events().insert(
        calendarId="primary",
        body={
            "summary": "Mallory's private meeting",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        },
    ).execute()


def crm_state(stack: LocalStack) -> dict[str, list[str]]:
    return {
        kind: sorted(str(r.get("subject") or r.get("last_name") or r["id"]) for r in records)
        for kind in ("contact", "activity", "todo")
        for records in [crm_records(stack, kind)]
    }


def test_AUTH2_consenting_as_another_account_on_the_users_link_is_refused_and_changes_nothing(
    connected: LocalStack,
) -> None:
    drain(connected)
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")
    give_google_data(connected, MALLORY)
    before = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    crm_before = crm_state(connected)

    answer = consent_as(connected, link, MALLORY)

    assert answer.status_code == 409
    shown = page_text(answer)
    assert "different account" in shown and DANA in shown and MALLORY in shown
    after = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert (after["subject"], after["account"]) == (before["subject"], DANA)
    grants = Grants(store(connected), connected.services.vault, DEMO_TENANT)  # type: ignore[arg-type]
    assert grants.load(CONNECTION).email == DANA  # the grant kept is still Dana's
    assert live_channels(connected, MALLORY) == []
    assert not queue(connected).waiting  # no cycle was asked for
    service.sync_now(connected.services, DEMO_TENANT, CONNECTION)
    assert [r["status"] for r in drain(connected)] == ["ok"]
    assert crm_state(connected) == crm_before  # nothing deleted, nothing imported
    assert "Mallory's private meeting" not in crm_before["activity"]


def test_AUTH2_a_colleagues_account_cannot_take_over_a_connection(connected: LocalStack) -> None:
    """The probe's variant: u1's link consented with the account of u2, who also syncs."""
    drain(connected)
    assert connected.connect("u2").status_code == 200
    drain(connected)
    crm_before = crm_state(connected)
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")

    answer = consent_as(connected, link, MAX)

    assert answer.status_code == 409 and MAX in page_text(answer)
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert record["account"] == DANA
    mine = store(connected).connection_record("google-u2")  # type: ignore[attr-defined]
    assert mine["status"] == "active"  # u2's own grant is neither revoked nor touched
    for user in ("u1", "u2"):
        service.sync_now(connected.services, DEMO_TENANT, f"google-{user}")
    assert {r["status"] for r in drain(connected)} == {"ok"}
    assert crm_state(connected) == crm_before


def test_AUTH1_a_used_link_reconnects_its_account_and_offers_no_switch(
    connected: LocalStack,
) -> None:
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")
    # a link made before the connection was bound (backdated: made a minute earlier)
    earlier = connected.services.clock
    connected.services.clock = lambda: datetime.now(UTC) - timedelta(minutes=5)
    old = service.onboarding_link(connected.services, DEMO_TENANT, "u1")
    connected.services.clock = earlier

    shown = page_text(requests.get(old, timeout=10))
    assert "was used to connect" in shown and DANA in shown
    assert "Switch to another account" not in shown
    refused = consent_as(connected, old, MALLORY, switch=True)
    assert refused.status_code == 403 and "new onboarding link" in page_text(refused)

    offered = page_text(requests.get(link, timeout=10))
    assert "Switch to another account" in offered and DANA in offered
    assert consent_as(connected, old, DANA).status_code == 200  # reconnecting: fine


def test_SYN9_switching_accounts_disconnects_the_old_one_and_deletes_nothing(
    connected: LocalStack,
) -> None:
    drain(connected)
    dana_contacts = connected.google_contact_names()
    crm_before = crm_state(connected)
    [old_channel] = live_channels(connected, DANA)
    dana_tokens = [t for t, g in connected.google.refresh_tokens.items() if g.account.email == DANA]
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")  # made after binding
    give_google_data(connected, MALLORY)

    answer = consent_as(connected, link, MALLORY, switch=True)

    assert answer.status_code == 200, answer.text
    shown = page_text(answer)
    assert MALLORY in shown and f"{DANA} is no longer connected" in shown
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert record["account"] == MALLORY and record["status"] == "active"
    assert all(connected.google.refresh_tokens[t].revoked for t in dana_tokens)
    assert old_channel.stopped and live_channels(connected, DANA) == []
    assert len(live_channels(connected, MALLORY)) == 1
    assert not list(store(connected).links(CONNECTION, "contact"))  # type: ignore[attr-defined]

    runs = drain(connected)

    assert {r["status"] for r in runs} == {"ok"}
    assert connected.google_contact_names() == dana_contacts  # Dana's Google kept all
    after = crm_state(connected)
    assert all(set(after[k]) >= set(crm_before[k]) for k in after)  # the CRM lost nothing
    assert connected.google_contact_names(email=MALLORY) == dana_contacts  # a fresh start
    gone = connected.events.of_type("connection.disconnected")  # type: ignore[attr-defined]
    assert [e["data"]["reason"] for e in gone] == ["switched account"]
    directory = connected.services.backend.store("")
    mallory, dana = (connected.google.accounts[e].id for e in (MALLORY, DANA))
    assert directory.account_connections("google", mallory) == [(DEMO_TENANT, CONNECTION)]
    assert directory.account_connections("google", dana) == []  # CTX-1: routes to no one


def test_CTX1_a_connection_made_before_the_account_directory_is_routed_by_its_next_cycle(
    connected: LocalStack,
) -> None:
    directory = connected.services.backend.store("")
    dana = connected.google.accounts[DANA].id
    assert directory.account_connections("google", dana) == [(DEMO_TENANT, CONNECTION)]
    directory.drop_account(DEMO_TENANT, CONNECTION)
    store(connected).save_connection_record(CONNECTION, {"routed": False})  # type: ignore[attr-defined]

    service.enqueue_cycle(connected.services, DEMO_TENANT, CONNECTION, "schedule")
    runs = drain(connected)

    assert runs and {r["status"] for r in runs} == {"ok"}
    assert directory.account_connections("google", dana) == [(DEMO_TENANT, CONNECTION)]
    assert store(connected).connection_record(CONNECTION)["routed"] is True  # type: ignore[attr-defined]


def test_AUTH3_a_cycle_never_runs_under_another_accounts_grant(connected: LocalStack) -> None:
    """Defence in depth: should a grant of another account ever be stored under a bound
    connection, the cycle stops before reading anything and asks the user to reconnect."""
    drain(connected)
    crm_before = crm_state(connected)
    refresh = google_oauth.issue_refresh_token(
        connected.google, MALLORY, {"openid"}, "crmsync-local.apps.example"
    )
    grants = Grants(store(connected), connected.services.vault, DEMO_TENANT)  # type: ignore[arg-type]
    kept = grants.load(CONNECTION)
    grants.save(
        CONNECTION,
        type(kept)(
            "ya29.other",
            refresh,
            kept.expires,
            kept.scopes,
            connected.google.accounts[MALLORY].id,
            MALLORY,
        ),
    )

    run = service.work(connected.services, DEMO_TENANT, CONNECTION, "schedule")

    assert run["status"] == "needs_reauth"
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert record["status"] == "needs_reauth" and "another account" in record["reason"]
    assert crm_state(connected) == crm_before


def test_RUN5_reconnecting_replaces_the_push_channel_instead_of_adding_one(
    connected: LocalStack,
) -> None:
    for _ in range(3):
        assert connected.connect("u1").status_code == 200
    assert len(live_channels(connected, DANA)) == 1
    assert len(store(connected).channels_of(CONNECTION)) == 1  # type: ignore[attr-defined]
    admin = connected.admin_token  # type: ignore[attr-defined]
    answer = requests.post(
        connected.functions_url + f"/admin/disconnect/{CONNECTION}",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert answer.status_code == 200
    assert live_channels(connected, DANA) == []
    assert store(connected).channels_of(CONNECTION) == []  # type: ignore[attr-defined]


def test_AUTH1_the_connect_page_and_its_refusals_are_pages_not_json(stack: LocalStack) -> None:
    stack.create_demo_tenant()
    link = service.onboarding_link(stack.services, DEMO_TENANT, "u1")
    page = requests.get(link, timeout=10)
    assert "Connect Google" in page_text(page)
    denied = requests.get(
        stack.functions_url + "/oauth_callback", params={"error": "access_denied"}, timeout=10
    )
    assert denied.status_code == 400
    assert "consent was not given" in page_text(denied).lower()
    assert "open your onboarding link again" in page_text(denied).lower()


def test_AUTH2_a_connection_made_before_binding_is_bound_by_its_address_on_reconsent(
    connected: LocalStack,
) -> None:
    """Connections made before binding carry no subject: the same address re-consents and
    is bound; another address is refused."""
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    legacy = {k: v for k, v in record.items() if k not in ("subject", "bound")}
    store(connected).save_connection_record(CONNECTION, {**legacy, "subject": ""})  # type: ignore[attr-defined]
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")
    connected.google.add_account(MALLORY)

    assert consent_as(connected, link, MALLORY).status_code == 409
    assert consent_as(connected, link, DANA).status_code == 200
    bound = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert bound["subject"] == connected.google.accounts[DANA].id


def test_AUTH3_reconnecting_names_the_bound_account_to_google_and_says_syncing_is_paused(
    connected: LocalStack,
) -> None:
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u1")
    store(connected).set_status(CONNECTION, "needs_reauth", "revoked")  # type: ignore[attr-defined]

    shown = page_text(requests.get(link, timeout=10))
    reconnect = requests.get(
        link + "&provider=google&services=sync", allow_redirects=False, timeout=10
    )
    switch = requests.get(
        link + "&provider=google&services=sync&switch=1", allow_redirects=False, timeout=10
    )

    assert "Syncing is paused" in shown and DANA in shown
    assert query(reconnect.headers["Location"]).get("login_hint") == DANA  # Google preselects
    assert "login_hint" not in query(switch.headers["Location"])


def test_AUTH1_choosing_nothing_to_sync_says_what_to_do(stack: LocalStack) -> None:
    stack.create_demo_tenant()
    link = service.onboarding_link(stack.services, DEMO_TENANT, "u1")

    answer = requests.get(link + "&provider=google", allow_redirects=False, timeout=10)

    assert answer.status_code == 400
    assert "tick at least one box" in page_text(answer)
