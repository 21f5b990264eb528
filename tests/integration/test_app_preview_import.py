"""The first-sync preview (BEY-3) and the address-book import (CON-9) over HTTP: a user
who asked on the connect page to see the first sync first gets a connection that
waits, its preview page and JSON twin, and the first cycle (run by the sync_worker
function) does what the preview said; an import is previewed, started and run as
sync_worker tasks, its progress shown. A user reaches only their own connections; a
POST without the session's CSRF token is refused. Through the functions, the reference
CRM and the Google and Microsoft sandboxes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
DANAS, MAXS = "google-u1", "microsoft-u2"
ADA = "ada@acme.example"  # a contact of the demo CRM in Dana's sync group


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    people = stack.google_api("people", "v1", "u1").people()
    body = {"names": [{"givenName": "Ada"}], "emailAddresses": [{"value": ADA}]}
    stack.ada = people.createContact(body=body).execute()["resourceName"]  # type: ignore[attr-defined]
    # Dana asks to see her first sync before it starts; Max connects as usual
    assert "/me/preview/google-u1" in stack.connect("u1", services="sync&preview=1").text
    assert stack.connect("u2", provider="microsoft").status_code == 200
    yield stack
    stack.close()


def store(stack: LocalStack) -> Any:
    return stack.services.backend.store(DEMO_TENANT)


def waiting(stack: LocalStack) -> list[tuple[str, str]]:
    queue = stack.queue
    assert isinstance(queue, InlineQueue)
    return sorted((t.connection, t.trigger) for t in queue.waiting.values())


def drain(stack: LocalStack) -> list[str]:
    """Every queued task through the sync_worker function, as Cloud Tasks runs them."""
    queue = stack.queue
    assert isinstance(queue, InlineQueue)
    ran: list[str] = []
    for _ in range(30):
        due = queue.due(datetime(9999, 1, 1, tzinfo=UTC))
        if not due:
            return ran
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]  # run early
            task_body = {"tenant": task.tenant, "connection": task.connection}
            answer = requests.post(
                stack.functions_url + "/sync_worker",
                json={**task_body, "trigger": task.trigger},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            ran.append(f"{task.connection}:{task.trigger}")
    raise AssertionError("the tasks never ran out")


def both_sides(stack: LocalStack) -> dict[str, Any]:
    """Every CRM record and every Google contact of Dana's, with its version."""
    listing = stack.google_api("people", "v1", "u1").people().connections()
    answer = listing.list(resourceName="people/me", personFields="names").execute()
    return {
        "google": sorted((p["resourceName"], p["etag"]) for p in answer.get("connections", [])),
        **{
            kind: sorted((r["id"], r["version"]) for r in stack.crm.all(DEMO_TENANT, kind))
            for kind in ("contact", "activity", "todo")
        },
    }


def pairs(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r["crm_id"], r["provider_id"]) for r in rows}


# -- BEY-3 --------------------------------------------------------------------------------
def test_BEY3_a_first_sync_waits_for_its_preview_and_then_does_what_it_showed(
    stack: LocalStack,
) -> None:
    assert (DANAS, "connect") not in waiting(stack)  # nothing will sync before her go
    assert store(stack).connection_record(DANAS)["preview_first"] is True
    dana = sign_in(stack, DANA)
    assert "waiting-google-u1" in dana.get(app(stack, "/me")).text
    before = both_sides(stack)

    page = dana.get(app(stack, f"/me/preview/{DANAS}"))
    shown = dana.get(app(stack, f"/api/me/preview/{DANAS}")).json()

    assert page.status_code == 200 and "Start the first sync" in page.text
    assert both_sides(stack) == before  # the preview wrote nothing, on either side
    assert store(stack).links(DANAS, "contact") == []
    contacts = next(k for k in shown["kinds"] if k["kind"] == "contact")
    [ada_crm] = [r["id"] for r in stack.crm.all(DEMO_TENANT, "contact") if ADA in r["emails"]]
    assert pairs(contacts["link"]["shown"]) == {(ada_crm, stack.ada)}  # type: ignore[attr-defined]
    assert "e-mail" in contacts["link"]["shown"][0]["reason"]
    assert len(contacts["to_provider"]["shown"]) == 1  # Grace, the other one of her group

    token = csrf(page.text)
    assert dana.post(app(stack, f"/me/preview/{DANAS}/start")).status_code == 403
    started = dana.post(
        app(stack, f"/me/preview/{DANAS}/start"), data={"csrf": token}, allow_redirects=False
    )
    assert started.status_code == 303 and "/me?notice=" in started.headers["Location"]
    assert (DANAS, "connect") in waiting(stack)
    drain(stack)

    for kind in shown["kinds"]:  # what the first cycle linked is what the preview said
        links = {(x.crm_id, x.provider_id) for x in store(stack).links(DANAS, kind["kind"])}
        assert pairs(kind["link"]["shown"]) <= links
        created_crm = {x.crm_id for x in store(stack).links(DANAS, kind["kind"])}
        said = {r["crm_id"] for r in kind["to_provider"]["shown"]}
        assert said <= created_crm
        assert len(links) == sum(kind[n]["count"] for n in ("link", "to_crm", "to_provider"))
    again = dana.post(app(stack, f"/me/preview/{DANAS}/start"), data={"csrf": token})
    assert again.status_code == 409


def test_BEY3_CON9_a_user_reaches_only_their_own_connections(stack: LocalStack) -> None:
    max_ = sign_in(stack, MAX, provider="microsoft")
    token = csrf(max_.get(app(stack, "/me")).text)
    for path in (f"/me/preview/{DANAS}", f"/me/import/{DANAS}", "/me/preview/nobody-u9"):
        assert max_.get(app(stack, path)).status_code == 404, path
        assert max_.get(app(stack, "/api" + path)).status_code == 404, path
    for action in ("preview/google-u1/start", "import/google-u1/start"):
        answer = max_.post(app(stack, f"/me/{action}"), data={"csrf": token, "source": ""})
        assert answer.status_code == 404, action
    assert store(stack).connection_record(DANAS).get("import") is None


# -- CON-9 --------------------------------------------------------------------------------
def test_CON9_an_import_is_previewed_started_and_run_as_worker_tasks_with_its_progress(
    stack: LocalStack,
) -> None:
    drain(stack)  # Max's first sync (his sync group's contact reached Outlook)
    synced = len(stack.outlook("GET", "me/contacts")["value"])
    mine = [f"colleague{n}@example.com" for n in range(8)]
    for n, email in enumerate(mine):
        contact = {"givenName": f"Colleague{n}", "emailAddresses": [{"address": email}]}
        stack.outlook("POST", "me/contacts", json=contact)
    for email in mine[:3]:  # three of them are in the CRM already
        stack.crm.create(DEMO_TENANT, "contact", {"last_name": "Known", "emails": [email]}, "u2")
    max_ = sign_in(stack, MAX, provider="microsoft")

    offered = max_.get(app(stack, f"/api/me/import/{MAXS}")).json()
    seen = max_.get(app(stack, f"/api/me/import/{MAXS}"), params={"preview": 1, "source": ""})

    assert offered["job"] is None and offered["sources"][0]["label"] == "All contacts"
    plan = seen.json()["preview"]
    assert (plan["total"], plan["to_crm"]["count"], plan["link"]["count"]) == (8 + synced, 5, 3)
    assert plan["already"] == synced
    page = max_.get(app(stack, f"/me/import/{MAXS}"), params={"preview": 1, "source": ""})
    assert "Import 8 contacts" in page.text
    assert max_.post(app(stack, f"/me/import/{MAXS}/start"), data={"source": ""}).status_code == 403

    started = max_.post(
        app(stack, f"/me/import/{MAXS}/start"),
        data={"csrf": csrf(page.text), "source": "", "size": "3"},
        allow_redirects=False,
    )
    assert started.status_code == 303
    under_way = max_.get(app(stack, f"/me/import/{MAXS}"))
    assert (
        '<progress id="import-progress"' in under_way.text and "refreshes itself" in under_way.text
    )
    steps = drain(stack)

    assert steps.count(f"{MAXS}:import") == -(-(8 + synced) // 3)  # three contacts a step
    job = max_.get(app(stack, f"/api/me/import/{MAXS}")).json()["job"]
    assert (job["status"], job["done"], job["total"]) == ("done", 8 + synced, 8 + synced)
    assert (job["created"], job["linked"], job["already"], job["failed"]) == (5, 3, synced, 0)
    emails = Counter(e for r in stack.crm.all(DEMO_TENANT, "contact") for e in r["emails"])
    assert [emails[e] for e in mine] == [1] * 8  # each in the CRM once
    done = max_.get(app(stack, f"/me/import/{MAXS}")).text
    assert f'value="{8 + synced}"' in done and "refreshes itself" not in done
