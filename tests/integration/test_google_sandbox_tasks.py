"""The Google sandbox's Tasks v1 over a real socket, driven by the real
google-api-python-client built from the discovery document it ships with; every
response body is held to the schema the document names for the method."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from sandbox.google.core import CALENDAR_SCOPES, SCOPE, TASKS_SCOPES, GoogleSandbox
from sandbox.google.server import serve
from sandbox.google.tasks import complete_in_google_app, stored_tasks
from tests.integration.test_google_sandbox_calendar import Clock, Discovery, failure
from tests.integration.test_google_sandbox_calendar import run as run_with

pytestmark = pytest.mark.integration

ANN = "ann@example.com"
TASKS = Discovery("tasks.v1.json")
run = partial(run_with, discovery=TASKS)


@dataclass
class Google:
    sandbox: GoogleSandbox
    url: str
    clock: Clock

    def tasks(self, email: str = ANN, scopes: frozenset[str] = TASKS_SCOPES) -> Any:
        """The real Tasks client, authorised as `email` with `scopes`."""
        return build(
            "tasks",
            "v1",
            credentials=Credentials(self.sandbox.issue_token(email, scopes)),
            client_options={"api_endpoint": self.url},
            static_discovery=True,
            cache_discovery=False,
        )


@pytest.fixture
def google() -> Iterator[Google]:
    clock = Clock()
    sandbox = GoogleSandbox(clock)
    url, stop = serve(sandbox, modules=("calendar", "tasks"))
    yield Google(sandbox, url, clock)
    stop()


def add(service: Any, title: str, tasklist: str = "@default", **fields: Any) -> Any:
    return run(service.tasks().insert(tasklist=tasklist, body={"title": title, **fields}))


def titles(service: Any, **params: Any) -> list[str]:
    """The titles of every task a listing returns, over all its pages."""
    found: list[str] = []
    request = service.tasks().list(tasklist="@default", **params)
    while request is not None:
        page = run(request)
        found.extend(task["title"] for task in page.get("items", []))
        request = service.tasks().list_next(request, page)
    return found


# -- lists ---------------------------------------------------------------------------------------
def test_google_tasks_default_list_answers_to_at_default_and_new_lists_are_listed(
    google: Google,
) -> None:
    service = google.tasks()

    default = run(service.tasklists().get(tasklist="@default"))
    crm = run(service.tasklists().insert(body={"title": "CRM"}))
    listed = run(service.tasklists().list())["items"]

    assert default["title"] == "My Tasks" and default["id"] != "@default"
    assert [(t["id"], t["title"]) for t in listed] == [
        (default["id"], "My Tasks"),
        (crm["id"], "CRM"),
    ]
    assert run(service.tasklists().get(tasklist=crm["id"]))["title"] == "CRM"
    assert failure(service.tasklists().get(tasklist="no-such-list")) == (404, "notFound")


# -- tasks ---------------------------------------------------------------------------------------
def test_google_tasks_round_trip_with_patch_and_update(google: Google) -> None:
    service = google.tasks()
    made = add(service, "Call Ada", notes="about the offer")
    google.clock.advance(minutes=1)

    patched = run(
        service.tasks().patch(tasklist="@default", task=made["id"], body={"title": "Call Ada!"})
    )
    updated = run(
        service.tasks().update(tasklist="@default", task=made["id"], body={"title": "Only title"})
    )

    assert (made["kind"], made["status"], made["notes"]) == (
        "tasks#task",
        "needsAction",
        "about the offer",
    )
    assert made["selfLink"].endswith(f"/tasks/{made['id']}")
    assert patched["notes"] == "about the offer" and patched["title"] == "Call Ada!"
    assert patched["etag"] != made["etag"]
    assert patched["updated"] == "2026-11-02T09:01:00.000Z"
    assert "notes" not in updated and updated["title"] == "Only title"
    assert run(service.tasks().get(tasklist="@default", task=made["id"]))["title"] == "Only title"
    assert failure(service.tasks().get(tasklist="@default", task="nope")) == (404, "notFound")


def test_google_tasks_keep_only_the_date_of_due(google: Google) -> None:
    service = google.tasks()

    made = add(service, "Send quote", due="2026-11-20T15:30:00.000Z")
    moved = run(
        service.tasks().patch(
            tasklist="@default", task=made["id"], body={"due": "2026-11-21T23:45:00-05:00"}
        )
    )

    assert made["due"] == "2026-11-20T00:00:00.000Z"
    assert moved["due"] == "2026-11-21T00:00:00.000Z"


def test_google_tasks_completing_stamps_completed_and_reopening_clears_it(
    google: Google,
) -> None:
    service = google.tasks()
    made = add(service, "Sign contract")
    add(service, "Open task")
    google.clock.advance(minutes=3)

    done = run(
        service.tasks().patch(tasklist="@default", task=made["id"], body={"status": "completed"})
    )
    without_completed = titles(service, showCompleted=False)
    reopened = run(
        service.tasks().patch(tasklist="@default", task=made["id"], body={"status": "needsAction"})
    )

    assert done["completed"] == "2026-11-02T09:03:00.000Z"
    assert without_completed == ["Open task"]
    assert "completed" not in reopened and reopened["status"] == "needsAction"


def test_google_tasks_updated_min_polling_sees_later_changes_and_deletions(
    google: Google,
) -> None:
    service = google.tasks()
    old = add(service, "Old")
    changed = add(service, "Changed")
    removed = add(service, "Removed")
    google.clock.advance(minutes=5)
    since = google.clock.now.isoformat()
    google.clock.advance(seconds=1)

    run(service.tasks().patch(tasklist="@default", task=changed["id"], body={"notes": "n"}))
    run(service.tasks().delete(tasklist="@default", task=removed["id"]))
    new = add(service, "New")
    polled = run(service.tasks().list(tasklist="@default", updatedMin=since, showDeleted=True))

    found = {task["id"]: task for task in polled["items"]}
    assert set(found) == {changed["id"], removed["id"], new["id"]}
    assert old["id"] not in found
    assert found[removed["id"]]["deleted"] is True
    assert titles(service, updatedMin=since) == ["New", "Changed"]


def test_google_tasks_deleted_ones_come_back_only_with_show_deleted(google: Google) -> None:
    service = google.tasks()
    parent = add(service, "Parent")
    run(service.tasks().insert(tasklist="@default", parent=parent["id"], body={"title": "Child"}))
    add(service, "Other")

    run(service.tasks().delete(tasklist="@default", task=parent["id"]))

    assert titles(service) == ["Other"]
    assert titles(service, showDeleted=True) == ["Other", "Parent", "Child"]
    assert [t["deleted"] for t in stored_tasks(google.sandbox, ANN) if t.get("deleted")] == [
        True,
        True,
    ]


def test_google_tasks_cleared_and_app_completed_ones_are_hidden_unless_show_hidden(
    google: Google,
) -> None:
    service = google.tasks()
    cleared = add(service, "Cleared", status="completed")
    in_app = add(service, "Ticked in the app")
    add(service, "Open")

    run(service.tasks().clear(tasklist="@default"))
    complete_in_google_app(google.sandbox, ANN, in_app["id"])

    assert titles(service) == ["Open"]
    assert titles(service, showHidden=True) == ["Open", "Ticked in the app", "Cleared"]
    hidden = run(service.tasks().get(tasklist="@default", task=cleared["id"]))
    assert hidden["hidden"] is True and hidden["status"] == "completed"


def test_google_tasks_pages_twenty_by_default_and_at_most_a_hundred(google: Google) -> None:
    service = google.tasks()
    for n in range(105):
        add(service, f"Task {n:03d}")

    first = run(service.tasks().list(tasklist="@default"))
    big = run(service.tasks().list(tasklist="@default", maxResults=500))
    everything = titles(service, maxResults=100)

    assert len(first["items"]) == 20 and "nextPageToken" in first
    assert len(big["items"]) == 100
    assert everything == [f"Task {n:03d}" for n in reversed(range(105))]


def test_google_tasks_move_sets_parent_and_position(google: Google) -> None:
    service = google.tasks()
    first = add(service, "First")
    second = add(service, "Second")
    child = add(service, "Child")

    under = run(service.tasks().move(tasklist="@default", task=child["id"], parent=first["id"]))
    after = run(service.tasks().move(tasklist="@default", task=second["id"], previous=first["id"]))
    top = run(service.tasks().get(tasklist="@default", task=first["id"]))

    assert under["parent"] == first["id"]
    assert "parent" not in after
    assert top["position"] < after["position"]
    assert titles(service) == ["First", "Child", "Second"]
    assert failure(
        service.tasks().move(tasklist="@default", task=first["id"], parent=child["id"])
    ) == (400, "invalid")


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x" * 1025},
        {"title": "x", "notes": "n" * 8193},
        {"title": "x", "status": "done"},
        {"title": "x", "due": "next week"},
        {"title": "x", "priority": "high"},
    ],
)
def test_google_tasks_refuse_what_google_refuses(google: Google, body: dict[str, Any]) -> None:
    service = google.tasks()

    assert failure(service.tasks().insert(tasklist="@default", body=body)) == (400, "invalid")


# -- authentication and faults -------------------------------------------------------------------
def test_google_tasks_need_the_tasks_scope(google: Google) -> None:
    calendar_only = google.tasks(scopes=CALENDAR_SCOPES)
    read_only = google.tasks(scopes=frozenset({SCOPE + "tasks.readonly"}))

    assert failure(calendar_only.tasks().list(tasklist="@default")) == (
        403,
        "insufficientPermissions",
    )
    assert run(read_only.tasks().list(tasklist="@default")).get("items", []) == []
    assert failure(read_only.tasks().insert(tasklist="@default", body={"title": "x"}))[0] == 403


def test_google_tasks_injected_503_then_the_call_succeeds(google: Google) -> None:
    service = google.tasks()
    google.sandbox.inject(503, path="^tasks/v1/lists/")

    refused = failure(service.tasks().list(tasklist="@default"))
    listed = run(service.tasks().list(tasklist="@default"))

    assert refused == (503, "backendError")
    assert listed["kind"] == "tasks#tasks"
