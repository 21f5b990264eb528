"""The queue page of the web app over HTTP, through the functions, the Google sandbox and
the reference CRM: a contact changed on both sides waits as a manual conflict (SYN-2)
and is settled field by field from the page; a held mass delete (SYN-6) is confirmed
as one batch; nobody else reaches a user's queue, and a form without the session's
CSRF token settles nothing.

The conflict and the held deletes are real: Dana (u1, Google) edits Ada Lovelace's
title and company in the CRM and, differently, in her Google contacts; and deletes
both her to-dos in the CRM, with holding set from two deletes on."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from crmsync.usecases import preferences
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
MINE = "google-u1"
CRM_SIDE = {"title": "CTO", "company": "Engines plc"}
GOOGLE_SIDE = {"title": "Chief Analyst", "company": "Babbage & Co"}
APPLIED = "Your choice is applied in the next sync, which starts in a few seconds."


def drain(stack: LocalStack) -> list[dict[str, Any]]:
    """Run every queued cycle now, as the worker would, until none is left."""
    assert isinstance(stack.queue, InlineQueue)
    ran = []
    while due := stack.queue.due(datetime(9999, 1, 1, tzinfo=UTC)):
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]
            ran.append(service.work(stack.services, task.tenant, task.connection, task.trigger))
    return ran


def ada(stack: LocalStack) -> dict[str, Any]:
    [found] = [c for c in stack.crm.all(DEMO_TENANT, "contact") if c["first_name"] == "Ada"]
    return found


def google_ada(stack: LocalStack) -> dict[str, Any]:
    people = stack.google_api("people", "v1").people()
    listed = people.connections().list(resourceName="people/me", personFields="names,organizations")
    [found] = [
        p
        for p in listed.execute().get("connections", [])
        if p.get("names", [{}])[0].get("givenName") == "Ada"
    ]
    return dict(found)


def google_tasks(stack: LocalStack) -> list[str]:
    api = stack.google_api("tasks", "v1")
    lists = api.tasklists().list().execute().get("items", [])
    return sorted(
        task["title"]
        for listed in lists
        for task in api.tasks().list(tasklist=listed["id"]).execute().get("items", [])
    )


def dana_todos(stack: LocalStack) -> list[dict[str, Any]]:
    return [t for t in stack.crm.all(DEMO_TENANT, "todo") if t["owner"] == "u1"]


def prepare(stack: LocalStack) -> list[str]:
    """Dana's sync, connected, with conflicts settled by hand and deletes held from two
    on; then Ada changed on both sides and Dana's to-dos deleted in the CRM, and a
    cycle run. Returns the subjects of the deleted to-dos."""
    stack.create_demo_tenant()
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    drain(stack)
    changes = {"conflict_policy": "manual", "mass_delete_min": 2}
    preferences.change(stack.services, DEMO_TENANT, MINE, changes, as_admin=True)
    drain(stack)
    todos = dana_todos(stack)
    assert len(todos) == 2 and sorted(t["subject"] for t in todos) == google_tasks(stack)

    stack.crm.update(DEMO_TENANT, "contact", ada(stack)["id"], CRM_SIDE)
    person = google_ada(stack)
    organization = {"name": GOOGLE_SIDE["company"], "title": GOOGLE_SIDE["title"]}
    stack.google_api("people", "v1").people().updateContact(
        resourceName=person["resourceName"],
        updatePersonFields="organizations",
        body={"etag": person["etag"], "organizations": [organization]},
    ).execute()
    for todo in todos:
        stack.crm.delete(DEMO_TENANT, "todo", todo["id"])
    service.work(stack.services, DEMO_TENANT, MINE, "schedule")
    drain(stack)
    return sorted(t["subject"] for t in todos)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.deleted = prepare(stack)  # type: ignore[attr-defined]
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def dana(stack: LocalStack) -> requests.Session:
    return sign_in(stack, DANA)


def queue_of(session: requests.Session, stack: LocalStack) -> dict[str, Any]:
    answer = session.get(app(stack, "/api/me/queue"))
    assert answer.status_code == 200, answer.text
    [mine] = [c for c in answer.json()["connections"] if c["id"] == MINE]
    return dict(mine)


def article(page: str, anchor: str) -> str:
    start = page.index(f'<article class="item" id="{anchor}"')
    return page[start : page.index("</article>", start)]


def text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: its text, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


# -- what the queue shows ---------------------------------------------------------------------
def test_SYN2_the_queue_shows_the_conflict_with_both_versions_and_the_fields_that_differ(
    stack: LocalStack, dana: requests.Session
) -> None:
    [conflict] = queue_of(dana, stack)["conflicts"]
    page = dana.get(app(stack, "/me/queue"))

    assert page.status_code == 200
    assert sorted(conflict["fields"]) == ["company", "title"]
    shown = article(page.text, conflict["anchor"])
    assert "Changed on both sides" in shown and "Ada Lovelace" in text(shown)
    assert re.search(r'<th scope="col">In the CRM</th><th scope="col">In Google</th>', shown)
    for field in ("title", "company"):
        row = re.search(rf'<tr class="differs" data-field="{field}">(.*?)</tr>', shown, re.S)
        assert row, f"{field} is not marked as differing"
        cells = text(row.group(1))
        assert cells == f"{field.capitalize()} (differs) {CRM_SIDE[field]} {GOOGLE_SIDE[field]}"
    assert sorted(re.findall(r'data-field="([^"]+)"', shown)) == ["company", "title"]
    for field in ("title", "company"):  # a labelled radio pair per conflicting field
        for side in ("crm", "provider"):
            assert re.search(rf'<input type="radio" name="pick\.{field}" value="{side}"', shown)
    assert "Keep the values in the CRM" in shown and "Keep these" in shown


def test_SYN6_the_held_deletes_show_as_one_batch_with_each_record_under_it(
    stack: LocalStack, dana: requests.Session
) -> None:
    [batch] = queue_of(dana, stack)["batches"]
    page = dana.get(app(stack, "/me/queue")).text

    assert batch["count"] == 2 and batch["settled"] is False
    assert batch["title"] == "2 to-dos deleted in the CRM at once"
    assert sorted(i["name"] for i in batch["items"]) == stack.deleted  # type: ignore[attr-defined]
    assert {i["reason_text"] for i in batch["items"]} == {
        "Deleted in the CRM with many others at once: held until you say what to do"
    }
    section = page[page.index(f'id="{batch["anchor"]}"') :]
    assert "Confirm all deletes" in section and "Restore all" in section
    assert "2 to-dos deleted in the CRM at once</h4>" in section
    for subject in stack.deleted:  # type: ignore[attr-defined]
        assert subject in section
    assert google_tasks(stack) == stack.deleted  # type: ignore[attr-defined]


def test_SYN6_SET5_a_held_delete_says_where_it_went_shows_its_values_once_and_what_confirm_does(
    stack: LocalStack, dana: requests.Session
) -> None:
    [batch] = queue_of(dana, stack)["batches"]
    page = dana.get(app(stack, "/me/queue")).text

    for item in batch["items"]:
        assert item["deleted_in"] == "the CRM"
        assert item["action_text"]["confirm"] == "Delete it in Google too"  # `deletes` says so
        assert all(row["differs"] is False for row in item["rows"])
        shown = article(page, item["anchor"])
        assert "(differs)" not in shown and 'class="differs"' not in shown
        assert "To-do deleted in the CRM: its values as Google still holds them" in text(shown)
        assert f"Subject {item['name']}" in text(shown)
        assert "Delete it in Google too" in shown


def test_SET1_SYN6_the_settings_page_explains_why_two_deletes_were_held(
    stack: LocalStack, dana: requests.Session
) -> None:
    page = dana.get(app(stack, f"/me/settings/{MINE}")).text

    start = page.index(f'id="{MINE}-permissions"')
    section = page[start : page.index("</fieldset>", start)]
    assert "What the sync may change" in section
    assert "delete at least 2 records of one kind and more than 25 % of them" in text(section)


# -- who may answer ---------------------------------------------------------------------------
def test_SYN2_SYN6_nobody_else_sees_or_settles_the_items_and_no_csrf_settles_nothing(
    stack: LocalStack, dana: requests.Session
) -> None:
    mine = queue_of(dana, stack)
    [conflict], [batch] = mine["conflicts"], mine["batches"]
    token = csrf(dana.get(app(stack, "/me/queue")).text)
    max_ = sign_in(stack, MAX, provider="microsoft")
    theirs = max_.get(app(stack, "/api/me/queue")).json()
    max_token = csrf(max_.get(app(stack, "/me/queue")).text)

    assert [c["id"] for c in theirs["connections"]] == ["microsoft-u2"]
    assert theirs["count"] == 0
    assert "Nothing waits for you." in max_.get(app(stack, "/me/queue")).text
    answers = [
        max_.post(
            app(stack, f"/me/queue/{MINE}"),
            data={"csrf": max_token, "item": conflict["id"], "choice": "crm"},
        ),
        max_.post(
            app(stack, f"/me/queue/{MINE}/batch"),
            data={"csrf": max_token, "batch": batch["batch"], "action": "confirm"},
        ),
        dana.post(app(stack, f"/me/queue/{MINE}"), data={"item": conflict["id"], "choice": "crm"}),
        dana.post(
            app(stack, f"/me/queue/{MINE}/batch"),
            data={"batch": batch["batch"], "action": "confirm"},
        ),
    ]
    assert [a.status_code for a in answers] == [404, 404, 403, 403]
    missing = dana.post(  # one field left unpicked: the page again, with the reason
        app(stack, f"/me/queue/{MINE}"),
        data={"csrf": token, "item": conflict["id"], "choice": "fields", "pick.title": "crm"},
    )
    assert missing.status_code == 400
    assert "pick a side for every conflicting field: company" in missing.text
    assert 'id="problem"' in missing.text and conflict["anchor"] in missing.text
    after = queue_of(dana, stack)
    assert after["conflicts"][0]["choice"] is None
    assert after["batches"][0]["settled"] is False


# -- answering ---------------------------------------------------------------------------------
def test_SYN2_a_conflict_settled_field_by_field_takes_each_field_from_the_side_picked(
    stack: LocalStack, dana: requests.Session
) -> None:
    [conflict] = queue_of(dana, stack)["conflicts"]
    token = csrf(dana.get(app(stack, "/me/queue")).text)

    answer = dana.post(
        app(stack, f"/me/queue/{MINE}"),
        data={
            "csrf": token,
            "item": conflict["id"],
            "choice": "fields",
            "pick.title": "provider",
            "pick.company": "crm",
        },
        allow_redirects=False,
    )

    assert answer.status_code == 303
    shown = dana.get(answer.headers["Location"]).text
    assert APPLIED in shown
    settled = text(article(shown, conflict["anchor"]))
    assert "Your choice: Company from the CRM, Title from Google — it is applied" in settled
    assert "Keep these" not in settled
    ran = drain(stack)
    assert [r["trigger"] for r in ran][:1] == ["resolve"]
    crm = ada(stack)
    assert (crm["title"], crm["company"]) == (GOOGLE_SIDE["title"], CRM_SIDE["company"])
    [organization] = google_ada(stack)["organizations"]
    assert (organization["title"], organization["name"]) == (
        GOOGLE_SIDE["title"],
        CRM_SIDE["company"],
    )
    assert queue_of(dana, stack)["conflicts"] == []


def test_SYN6_a_held_batch_confirmed_from_the_page_is_deleted_on_the_other_side(
    stack: LocalStack, dana: requests.Session
) -> None:
    [batch] = queue_of(dana, stack)["batches"]
    token = csrf(dana.get(app(stack, "/me/queue")).text)

    answer = dana.post(
        app(stack, f"/me/queue/{MINE}/batch"),
        data={"csrf": token, "batch": batch["batch"], "action": "confirm"},
    )

    assert answer.status_code == 200
    assert "Your choice for 2 held deletes is applied in the next sync" in answer.text
    assert "Confirm all deletes" not in answer.text
    drain(stack)
    assert google_tasks(stack) == []
    assert dana_todos(stack) == []
    assert queue_of(dana, stack)["batches"] == []
    assert "Nothing waits for you." in dana.get(app(stack, "/me/queue")).text
