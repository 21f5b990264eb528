"""crmsync's Cloud Functions served by functions-framework on a real socket, over the
memory store and an inline task queue, with the reference CRM and the Google sandbox:
onboarding through the real OAuth flow (AUTH-1, AUTH-2, AUTH-6), the worker's cycles
(RUN-3, RUN-6, AUTH-3), the fan-out (RUN-2, RUN-5), push notifications and CRM events
(RUN-3), the admin API, and a 4xx with a reason for every bad request."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from crmsync import entrypoints, service
from crmsync.logs import configure_logging
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT, DEMO_TOKEN
from sandbox.google import oauth as google_oauth
from sandbox.google.calendar import push_delivered
from sandbox.local.stack import EVENT_SECRET, LocalStack

pytestmark = pytest.mark.integration

CONNECTION = "google-u1"
DANA = "dana.rep@demo.example"
SECRET = EVENT_SECRET.encode()


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue())
    yield stack
    stack.close()


@pytest.fixture
def connected(stack: LocalStack) -> LocalStack:
    stack.admin_token = stack.create_demo_tenant()  # type: ignore[attr-defined]
    answer = stack.connect("u1")
    assert answer.status_code == 200, answer.text
    return stack


def queue(stack: LocalStack) -> InlineQueue:
    assert isinstance(stack.queue, InlineQueue)
    return stack.queue


def drain(stack: LocalStack, rounds: int = 10) -> list[dict[str, object]]:
    """Run every queued cycle through the sync_worker function, as Cloud Tasks would."""
    answers = []
    for _ in range(rounds):
        assert push_delivered(stack.google)  # Google's notifications of our own writes too
        due = queue(stack).due(datetime(9999, 1, 1, tzinfo=UTC))  # whenever each is due
        if not due:
            break
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]  # run early
            answer = requests.post(
                stack.functions_url + "/sync_worker",
                json={
                    "tenant": task.tenant,
                    "connection": task.connection,
                    "trigger": task.trigger,
                },
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            answers.append({**answer.json(), "trigger": task.trigger})
    return answers


def page_text(answer: requests.Response) -> str:
    """The words of a page crmsync showed a person: HTML, never JSON or a traceback."""
    assert answer.headers["Content-Type"].startswith("text/html"), answer.text
    assert "Traceback" not in answer.text and not answer.text.lstrip().startswith("{")
    shown = re.sub(r"<(style|title)>.*?</\1>", " ", answer.text, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", shown)))


def store(stack: LocalStack) -> object:
    return stack.services.backend.store(DEMO_TENANT)


def crm_records(stack: LocalStack, kind: str) -> list[dict[str, Any]]:
    return stack.crm.all(DEMO_TENANT, kind)


# -- onboarding ---------------------------------------------------------------------------------
def test_AUTH1_connecting_shows_the_account_and_the_first_cycle_syncs_the_crm_group(
    connected: LocalStack,
) -> None:
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert record["account"] == DANA and record["status"] == "active"
    assert record["services"] == ["sync"]
    [first] = queue(connected).waiting.values()
    assert (first.connection, first.trigger) == (CONNECTION, "connect")

    runs = drain(connected)

    assert [r["status"] for r in runs] == ["ok"] * len(runs)
    # the demo CRM's contact sync group of u1 holds Ada and Grace (sandbox/crm/seed.py)
    assert connected.google_contact_names() == ["Ada Lovelace", "Grace Hopper"]


def test_AUTH2_the_grant_is_stored_sealed_and_no_token_reaches_the_page(
    stack: LocalStack,
) -> None:
    stack.create_demo_tenant()
    page = stack.connect("u1")
    sealed = store(stack).sealed_grant(CONNECTION)  # type: ignore[attr-defined]
    issued = [t for t, g in stack.google.refresh_tokens.items() if g.account.email == DANA]
    assert issued and sealed is not None
    assert all(token not in json.dumps(sealed) for token in issued)
    assert all(token not in page.text for token in issued)
    assert DANA in page.text


def test_AUTH1_a_forged_or_expired_onboarding_link_is_refused(stack: LocalStack) -> None:
    stack.create_demo_tenant()
    link = service.onboarding_link(stack.services, DEMO_TENANT, "u1")
    forged = link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb")
    assert requests.get(forged, timeout=10).status_code == 400
    stack.services.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    answer = requests.get(link, timeout=10)
    assert answer.status_code == 410 and "expired" in page_text(answer)
    assert "admin can send you a new onboarding link" in page_text(answer)


def test_AUTH2_a_replayed_or_forged_callback_is_refused(connected: LocalStack) -> None:
    for params in ({"state": "forged.sig", "code": "x"}, {"code": "x"}, {"error": "access_denied"}):
        answer = requests.get(
            connected.functions_url + "/oauth_callback", params=params, timeout=10
        )
        assert answer.status_code == 400, params
        assert "onboarding link" in page_text(answer)
        posted = requests.post(  # the same answers as a form_post
            connected.functions_url + "/oauth_callback", data=params, timeout=10
        )
        assert posted.status_code == 400, params
        assert "onboarding link" in page_text(posted)


def test_AUTH2_a_callback_posted_as_anything_but_a_form_is_refused_with_a_page(
    stack: LocalStack,
) -> None:
    url = stack.functions_url + "/oauth_callback"
    as_json = requests.post(url, json={"state": "s", "code": "x"}, timeout=10)
    too_big = requests.post(url, data={"state": "s" * 20_000, "code": "x"}, timeout=10)
    put = requests.put(url, data={"state": "s", "code": "x"}, timeout=10)

    assert [a.status_code for a in (as_json, too_big, put)] == [415, 413, 405]
    assert all("onboarding link" in page_text(a) for a in (as_json, too_big, put))


def test_AUTH6_a_connection_past_the_tenants_seats_is_refused_and_others_go_on(
    stack: LocalStack,
) -> None:
    stack.create_demo_tenant()
    store(stack).save_tenant_record({"seats": 1})  # type: ignore[attr-defined]
    assert stack.connect("u1").status_code == 200

    refused = stack.connect("u2")

    assert refused.status_code == 403 and "seats" in page_text(refused)
    assert store(stack).connection_record("google-u2") is None  # type: ignore[attr-defined]
    assert stack.connect("u1").status_code == 200  # re-authorizing a seat holder works


def wait_for_push_then_drain(stack: LocalStack) -> list[dict[str, object]]:
    """Google posts its notification to the webhook on its own thread; once the webhook
    has queued the cycle, run it."""
    deadline = time.monotonic() + 10
    while not queue(stack).waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    return drain(stack)


# -- the worker --------------------------------------------------------------------------------
def test_RUN3_a_crm_change_event_enqueues_one_cycle_that_brings_the_change_to_google(
    connected: LocalStack,
) -> None:
    drain(connected)
    ada = next(r["id"] for r in crm_records(connected, "contact") if r["last_name"] == "Lovelace")
    connected.crm.update(DEMO_TENANT, "contact", ada, {"last_name": "King"})

    first = connected.post_event("u1", "contact", [ada])
    second = connected.post_event("u1", "contact", [ada])

    assert (first.status_code, second.status_code) == (202, 202)
    assert len(queue(connected).waiting) == 1  # the burst collapsed into one cycle
    [run] = drain(connected)
    assert run["status"] == "ok"
    assert "Ada King" in connected.google_contact_names()


def test_RUN3_a_crm_event_reads_the_users_own_connections_not_the_tenants(
    connected: LocalStack,
) -> None:
    """A CRM event of one user costs the same reads in a tenant of 200 connections as
    in a tenant of one: it looks up the user's connection per provider, it does not
    list the tenant's."""
    drain(connected)
    tenant = connected.services.backend.store(DEMO_TENANT)
    for n in range(200):
        tenant.save_connection_record(
            f"google-x{n}", {"user": f"x{n}", "provider": "google", "status": "active"}
        )
    reads = tenant.reads

    assert connected.post_event("u1", "contact", ["1"]).status_code == 202

    assert len(queue(connected).waiting) == 1
    assert tenant.reads - reads <= 4  # the tenant's record, and a connection per provider
    drain(connected)


def test_RUN3_a_change_waits_the_deployments_debounce_for_the_rest_of_its_burst(
    connected: LocalStack,
) -> None:
    drain(connected)
    ada = next(r["id"] for r in crm_records(connected, "contact") if r["last_name"] == "Lovelace")
    connected.services.debounce = timedelta(seconds=25)  # CRMSYNC_DEBOUNCE_SECONDS=25
    try:
        before = datetime.now(UTC)
        assert connected.post_event("u1", "contact", [ada]).status_code == 202
        after = datetime.now(UTC)
    finally:
        connected.services.debounce = entrypoints.debounce({})
    [task] = queue(connected).waiting.values()
    assert before + timedelta(seconds=25) <= task.not_before <= after + timedelta(seconds=25)
    drain(connected)


@pytest.mark.parametrize(("given", "seconds"), [("", 10), ("0", 0), ("2", 2), (" 300 ", 300)])
def test_RUN3_the_debounce_is_whole_seconds_from_0_to_300_ten_by_default(
    given: str, seconds: int
) -> None:
    assert entrypoints.debounce({"CRMSYNC_DEBOUNCE_SECONDS": given}) == timedelta(seconds=seconds)


@pytest.mark.parametrize("given", ["301", "-1", "2.5", "ten"])
def test_RUN3_a_debounce_out_of_range_stops_the_function_saying_so(given: str) -> None:
    with pytest.raises(ValueError, match=r"CRMSYNC_DEBOUNCE_SECONDS is .* whole seconds from 0"):
        entrypoints.debounce({"CRMSYNC_DEBOUNCE_SECONDS": given})


def test_RUN3_a_google_push_notification_enqueues_a_cycle(connected: LocalStack) -> None:
    drain(connected)
    [channel] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    assert channel.expires > datetime.now(UTC) + timedelta(days=1)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    events = connected.google_api("calendar", "v3").events()
    events.insert(
        calendarId="primary",
        body={
            "summary": "Lunch with Ada",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        },
    ).execute()

    runs = wait_for_push_then_drain(connected)

    assert [r["status"] for r in runs] == ["ok"]
    assert "Lunch with Ada" in [r["subject"] for r in crm_records(connected, "activity")]


def test_AUTH3_a_revoked_grant_marks_needs_reauth_and_stops_scheduled_cycles(
    connected: LocalStack,
) -> None:
    drain(connected)
    google_oauth.revoke_all(connected.google, DANA)
    google_oauth.expire_access_tokens(connected.google, DANA)
    service.sync_now(connected.services, DEMO_TENANT, CONNECTION)

    [run] = drain(connected)

    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert run["status"] == "needs_reauth"
    assert record["status"] == "needs_reauth" and record["next_due"] is None
    assert service.fanout(connected.services).enqueued == 0
    assert stack_links(connected) > 0  # nothing else about the connection is lost


def stack_links(stack: LocalStack) -> int:
    return sum(1 for _ in store(stack).links(CONNECTION, "contact"))  # type: ignore[attr-defined]


def test_RUN6_a_cycle_past_its_budget_re_enqueues_itself_and_the_next_resumes(
    connected: LocalStack,
) -> None:
    queue(connected).waiting.clear()  # the first cycle is run here, with no time at all
    run = service.work(connected.services, DEMO_TENANT, CONNECTION, "schedule", budget_seconds=1e-9)
    assert run["status"] == "continued" and run["pending"]
    [task] = queue(connected).waiting.values()
    assert task.trigger == "continue"
    queue(connected).waiting.clear()
    [resumed] = drain(connected) or [
        service.work(connected.services, DEMO_TENANT, CONNECTION, "continue")
    ]
    assert resumed["status"] == "ok"
    assert connected.google_contact_names() == ["Ada Lovelace", "Grace Hopper"]


def test_RUN6_a_throttled_cycle_comes_back_when_google_allows(connected: LocalStack) -> None:
    drain(connected)
    connected.google.inject(
        429, reason="rateLimitExceeded", path=r"v1/people/me/connections", times=5, retry_after=120
    )
    before = datetime.now(UTC)

    run = service.work(connected.services, DEMO_TENANT, CONNECTION, "schedule")

    assert run["status"] == "partial" and run["retry_after"] >= 120
    [task] = queue(connected).waiting.values()
    assert task.trigger == "retry"
    assert task.not_before >= before + timedelta(seconds=120)


# -- the scheduler --------------------------------------------------------------------------------
def test_RUN2_fanout_enqueues_each_due_connection_once_and_moves_its_next_due_time(
    connected: LocalStack,
) -> None:
    drain(connected)
    answer = requests.post(connected.functions_url + "/scheduler_fanout", timeout=30)

    assert answer.status_code == 200 and answer.json()["enqueued"] == 1
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    now = datetime.now(UTC)
    assert record["full_due"] > now + timedelta(minutes=14)  # the next full cycle
    # before it, a poll of what Google pushes nothing for (contacts, tasks: RUN-3)
    assert now + timedelta(minutes=1) < record["next_due"] <= now + timedelta(minutes=2)
    again = requests.post(connected.functions_url + "/scheduler_fanout", timeout=30)
    assert again.json()["enqueued"] == 0  # not due again until its poll interval has passed


def test_RUN2_fanout_pages_through_many_tenants_connections(stack: LocalStack) -> None:
    now = datetime.now(UTC)
    backend = stack.services.backend
    for t in range(3):
        tenant = f"t{t}"
        backend.store(tenant).save_tenant_record({"settings": {}})
        for c in range(7):
            backend.store(tenant).save_connection_record(
                f"c{c}",
                {"user": f"u{c}", "provider": "google", "status": "active", "next_due": now},
            )
    stack.services.clock = lambda: now + timedelta(seconds=1)

    report = service.fanout(stack.services, page_size=4)

    assert report.enqueued == 21 and report.pages == 6
    assert {(q.tenant, q.connection) for q in queue(stack).waiting.values()} == {
        (f"t{t}", f"c{c}") for t in range(3) for c in range(7)
    }


def test_RUN5_fanout_asks_for_a_renewal_of_channels_expiring_within_a_day(
    connected: LocalStack,
) -> None:
    drain(connected)
    [channel] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    later = channel.expires - timedelta(hours=2)
    connected.services.clock = lambda: later

    report = service.fanout(connected.services)
    assert report.renewals == 1
    assert "renew" in [r["trigger"] for r in drain(connected)]

    [renewed] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    assert renewed.id != channel.id and renewed.expires > channel.expires


def test_RUN5_a_failed_renewal_is_visible_and_the_connection_is_still_polled(
    connected: LocalStack,
) -> None:
    drain(connected)
    [channel] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    later = channel.expires - timedelta(hours=2)
    connected.services.clock = lambda: later
    connected.google.inject(503, path=r"events/watch", times=10)

    service.fanout(connected.services)
    drain(connected)

    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert "polling on schedule" in record["channel_problem"]
    assert [c.id for c in store(connected).channels_of(CONNECTION)] == [channel.id]  # type: ignore[attr-defined]
    assert record["next_due"] is not None and record["status"] == "active"


def test_RUN2_a_run_stuck_past_its_lease_and_stale_cursors_are_flagged(
    connected: LocalStack,
) -> None:
    drain(connected)
    s = store(connected)
    started = datetime.now(UTC)
    s.save_connection_record(  # type: ignore[attr-defined]
        CONNECTION, {"last_run": {"id": "r", "status": "running", "started": started}}
    )
    connected.services.clock = lambda: started + timedelta(hours=1)
    s.set_next_due(CONNECTION, started)  # type: ignore[attr-defined]

    assert service.fanout(connected.services).stuck == 1
    assert s.connection_record(CONNECTION)["health"] == "stuck"  # type: ignore[attr-defined]

    s.save_connection_record(CONNECTION, {"last_run": {"status": "ok"}})  # type: ignore[attr-defined]
    connected.services.clock = lambda: started + timedelta(days=2)
    s.set_next_due(CONNECTION, started)  # type: ignore[attr-defined]
    assert service.fanout(connected.services).stale == 1
    status = requests.get(
        connected.functions_url + "/admin/status",
        headers={"Authorization": f"Bearer {connected.admin_token}"},  # type: ignore[attr-defined]
        timeout=10,
    ).json()
    assert status["connections"][0]["health"] == "stale"


# -- admin ---------------------------------------------------------------------------------------
def test_admin_status_shows_the_tenants_connections_and_last_run(connected: LocalStack) -> None:
    drain(connected)
    answer = requests.get(
        connected.functions_url + "/admin/status",
        headers={"Authorization": f"Bearer {connected.admin_token}"},  # type: ignore[attr-defined]
        timeout=10,
    )
    assert answer.status_code == 200
    [conn] = answer.json()["connections"]
    assert (conn["id"], conn["account"], conn["status"]) == (CONNECTION, DANA, "active")
    assert conn["last_run"]["status"] == "ok"


def test_RUN3_sync_now_from_the_admin_api_enqueues_a_cycle(connected: LocalStack) -> None:
    drain(connected)
    answer = requests.post(
        connected.functions_url + f"/admin/sync/{CONNECTION}",
        headers={"Authorization": f"Bearer {connected.admin_token}"},  # type: ignore[attr-defined]
        timeout=10,
    )
    assert answer.status_code == 202
    assert [t.trigger for t in queue(connected).waiting.values()] == ["manual"]


def test_AUTH4_disconnect_stops_the_channel_revokes_the_grant_and_erases_the_links(
    connected: LocalStack,
) -> None:
    drain(connected)
    [channel] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    assert stack_links(connected) > 0

    answer = requests.post(
        connected.functions_url + f"/admin/disconnect/{CONNECTION}",
        headers={"Authorization": f"Bearer {connected.admin_token}"},  # type: ignore[attr-defined]
        timeout=30,
    )

    assert answer.status_code == 200 and answer.json()["problems"] == []
    record = store(connected).connection_record(CONNECTION)  # type: ignore[attr-defined]
    assert (record["status"], record["next_due"]) == ("disconnected", None)
    assert store(connected).channels_of(CONNECTION) == []  # type: ignore[attr-defined]
    assert store(connected).sealed_grant(CONNECTION) is None  # type: ignore[attr-defined]
    assert stack_links(connected) == 0
    kept = [g for g in connected.google.refresh_tokens.values() if g.account.email == DANA]
    assert kept and all(g.revoked for g in kept)
    assert connected.google_contact_names() == ["Ada Lovelace", "Grace Hopper"]  # data stays
    old = requests.post(
        connected.functions_url + "/google_webhook",
        headers={"X-Goog-Channel-Id": channel.id, "X-Goog-Resource-State": "exists"},
        timeout=10,
    )
    assert old.status_code == 404  # the channel is forgotten
    assert service.fanout(connected.services).enqueued == 0


# -- bad input: a 4xx with a reason, never a 500, no effect ----------------------------------
BAD_ADMIN = [None, "Bearer", "Basic abc", "Bearer demo.wrong", "Bearer other.x", "Bearer ../x.y"]


@pytest.mark.parametrize("authorization", BAD_ADMIN)
def test_admin_without_a_valid_token_is_401(
    connected: LocalStack, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = requests.get(connected.functions_url + "/admin/status", headers=headers, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"]


def test_admin_of_one_tenant_cannot_reach_another_tenants_connection(
    connected: LocalStack,
) -> None:
    other = service.create_tenant(
        connected.services,
        "other",
        name="Other",
        crm_base_url=connected.crm_url,
        crm_token=DEMO_TOKEN,
        event_secret="x",
    )
    answer = requests.post(
        connected.functions_url + f"/admin/sync/{CONNECTION}",
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    )
    assert answer.status_code == 404
    status = requests.get(
        connected.functions_url + "/admin/status",
        headers={"Authorization": f"Bearer {other}"},
        timeout=10,
    ).json()
    assert status == {"tenant": "other", "connections": []}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "&provider=icloud&services=sync",
        "&provider=google&services=calendar",
        "&provider=google",
    ],
)
def test_AUTH1_oauth_start_refuses_what_cannot_be_connected(
    connected: LocalStack, query: str
) -> None:
    link = service.onboarding_link(connected.services, DEMO_TENANT, "u2")
    url = link + query if query else connected.functions_url + "/oauth_start"
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "did not work" in page_text(answer)


def test_admin_unknown_path_is_404(connected: LocalStack) -> None:
    answer = requests.get(
        connected.functions_url + "/admin/nothing",
        headers={"Authorization": f"Bearer {connected.admin_token}"},  # type: ignore[attr-defined]
        timeout=10,
    )
    assert answer.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"tenant": "demo"}',
        b'{"tenant": "../x", "connection": "c", "trigger": "schedule"}',
        b'{"tenant": "demo", "connection": 7, "trigger": "schedule"}',
    ],
)
def test_sync_worker_refuses_malformed_tasks(connected: LocalStack, body: bytes) -> None:
    answer = requests.post(connected.functions_url + "/sync_worker", data=body, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]


def test_sync_worker_for_an_unknown_connection_is_404(connected: LocalStack) -> None:
    answer = requests.post(
        connected.functions_url + "/sync_worker",
        json={"tenant": DEMO_TENANT, "connection": "google-nobody", "trigger": "schedule"},
        timeout=10,
    )
    assert answer.status_code == 404


def test_an_oversized_body_is_413(connected: LocalStack) -> None:
    answer = requests.post(
        connected.functions_url + "/crm_events", data=b"x" * (65 * 1024), timeout=10
    )
    assert answer.status_code == 413


def signed_event(stack: LocalStack, user: str = "u1", tenant: str = DEMO_TENANT) -> bytes:
    return json.dumps(
        {
            "tenant": tenant,
            "user": user,
            "kind": "contact",
            "ids": ["1"],
            "sent_at": datetime.now(UTC).isoformat(),
        }
    ).encode()


def test_RUN3_crm_events_refuse_forged_stale_and_malformed_events(connected: LocalStack) -> None:
    from crmsync.crm import events

    drain(connected)
    url = connected.functions_url + "/crm_events"
    body = signed_event(connected)
    now = datetime.now(UTC)
    cases = {
        "unsigned": ({}, body),
        "wrong secret": ({"Crmsync-Signature": events.sign(b"guess", body, now)}, body),
        "stale": (
            {
                "Crmsync-Signature": events.sign(
                    EVENT_SECRET.encode(), body, now - timedelta(hours=1)
                )
            },
            body,
        ),
        "malformed": ({"Crmsync-Signature": "t=1,v1=00"}, b"{nope"),
        "other tenant's event under our secret": (
            {
                "Crmsync-Signature": events.sign(
                    EVENT_SECRET.encode(), signed_event(connected, tenant="other"), now
                )
            },
            signed_event(connected, tenant="other"),
        ),
    }
    for name, (headers, data) in cases.items():
        answer = requests.post(url, data=data, headers=headers, timeout=10)
        assert answer.status_code in (400, 401), name
        assert answer.json()["error"], name
    assert queue(connected).waiting == {}


def test_RUN3_crm_events_arrive_as_pubsub_push_envelopes_too(connected: LocalStack) -> None:
    from crmsync.crm import events

    drain(connected)
    body = signed_event(connected)
    envelope = {
        "message": {
            "data": base64.b64encode(body).decode(),
            "attributes": {
                "signature": events.sign(EVENT_SECRET.encode(), body, datetime.now(UTC))
            },
            "messageId": "1",
        },
        "subscription": "projects/p/subscriptions/crm-events",
    }
    answer = requests.post(connected.functions_url + "/crm_events", json=envelope, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"enqueued": 1}
    broken = {"message": {"data": "***", "attributes": {}}}
    assert (
        requests.post(connected.functions_url + "/crm_events", json=broken, timeout=10).status_code
        == 400
    )


def test_RUN3_google_webhook_refuses_unknown_channels_and_wrong_tokens(
    connected: LocalStack,
) -> None:
    drain(connected)
    [channel] = store(connected).channels_of(CONNECTION)  # type: ignore[attr-defined]
    url = connected.functions_url + "/google_webhook"
    unknown = requests.post(url, headers={"X-Goog-Channel-Id": "nope"}, timeout=10)
    wrong = requests.post(
        url,
        headers={
            "X-Goog-Channel-Id": channel.id,
            "X-Goog-Channel-Token": "guess",
            "X-Goog-Resource-Id": channel.resource_id,
            "X-Goog-Resource-State": "exists",
        },
        timeout=10,
    )
    fetched = requests.get(url, timeout=10)
    assert (unknown.status_code, wrong.status_code, fetched.status_code) == (404, 403, 405)
    assert queue(connected).waiting == {}


# -- logs ------------------------------------------------------------------------------------
def test_AUTH2_logs_of_a_whole_run_are_json_with_ids_and_hold_no_token_or_secret(
    stack: LocalStack,
) -> None:
    captured = io.StringIO()
    handler = configure_logging(captured)
    try:
        stack.admin_token = stack.create_demo_tenant()  # type: ignore[attr-defined]
        stack.connect("u1")
        drain(stack)
        stack.post_event("u1", "contact", ["1"])
        drain(stack)
    finally:
        logging.getLogger("crmsync").removeHandler(handler)
        logging.getLogger("crmsync").propagate = True  # other tests read crmsync's logs
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert any(e.get("tenant") == DEMO_TENANT and e.get("run") for e in lines)
    assert all("severity" in e and "message" in e for e in lines)
    text = captured.getvalue()
    secrets_seen = [
        DEMO_TOKEN,
        EVENT_SECRET,
        stack.admin_token.split(".", 1)[1],  # type: ignore[attr-defined]
        *stack.google.refresh_tokens,
        *stack.google.access_tokens,
        "Lovelace",  # record content: a contact's name
        "ada@acme.example",
    ]
    leaked = [s for s in secrets_seen if s in text]
    assert leaked == []


def test_HIS3_the_functions_build_their_services_from_the_environment(
    firestore_client: Any,
) -> None:
    from crmsync import entrypoints
    from crmsync.store.firestore import FirestoreBackend

    env = {
        "GOOGLE_CLOUD_PROJECT": firestore_client.project,
        "CRMSYNC_HISTORY_DAYS": "30",
        "CRMSYNC_TASKS_QUEUE": "projects/p/locations/l/queues/q",
        "CRMSYNC_WORKER_URL": "https://worker.example/sync_worker",
        "CRMSYNC_SECRET": "s" * 32,
        "CRMSYNC_LOCAL_KEK": base64.b64encode(b"k" * 32).decode(),
        "CRMSYNC_PUBLIC_URL": "https://functions.example",
        "CRMSYNC_GOOGLE_CLIENT_ID": "id",
        "CRMSYNC_GOOGLE_CLIENT_SECRET": "secret",
    }

    built = entrypoints.from_environment(env)

    assert isinstance(built.backend, FirestoreBackend)
    assert built.backend.retention == timedelta(days=30)
    assert set(built.providers) == {"google"}
    assert built.providers["google"].oauth.redirect_uri == (
        "https://functions.example/oauth_callback"
    )
    assert built.url("google_webhook") == "https://functions.example/google_webhook"


def test_CAL6_the_worker_knows_which_colleagues_sync_also_for_a_tenant_from_before(
    connected: LocalStack,
) -> None:
    """Connecting and disconnecting keep the tenant's syncing users; a tenant whose
    connections were made before that has them found from its connections once."""
    tenant = store(connected)
    assert tenant.tenant_record()["syncing"] == {"u1": True}  # type: ignore[attr-defined]
    assert connected.connect("u2").status_code == 200
    assert tenant.tenant_record()["syncing"] == {"u1": True, "u2": True}  # type: ignore[attr-defined]
    tenant._tenant_record.pop("syncing")  # type: ignore[attr-defined]  # as before

    drain(connected)

    assert tenant.tenant_record()["syncing"] == {"u1": True, "u2": True}  # type: ignore[attr-defined]
    service.disconnect(connected.services, DEMO_TENANT, "google-u2")
    assert tenant.tenant_record()["syncing"] == {"u1": True}  # type: ignore[attr-defined]
