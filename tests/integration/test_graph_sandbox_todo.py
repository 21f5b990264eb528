"""Microsoft To Do in the Graph sandbox over https (TSK-1): the default list, task CRUD
with Graph's todoTask shape, and per-list task delta with paging, `@removed` and delta
links that expire (RUN-4)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.microsoft.graph import expire_delta_links
from tests.integration.microsoft_sandbox import EMAIL, Graph, served_graph

pytestmark = pytest.mark.integration


@pytest.fixture
def graph() -> Iterator[Graph]:
    with served_graph() as served:
        yield served


def default_list(graph: Graph) -> str:
    lists = graph.ok(graph.get("me/todo/lists"))["value"]
    return str(next(x["id"] for x in lists if x["wellknownListName"] == "defaultList"))


def add(graph: Graph, list_id: str, **fields: Any) -> dict[str, Any]:
    created: dict[str, Any] = graph.ok(
        graph.post(f"me/todo/lists/{list_id}/tasks", {"title": "Call Grace", **fields}), 201
    )
    return created


def whole_round(graph: Graph, url: str, page: int = 2) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        answer = graph.ok(graph.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}))
        pages += 1
        items += answer["value"]
        if "@odata.deltaLink" in answer:
            return items, answer["@odata.deltaLink"], pages
        url = answer["@odata.nextLink"]


def test_TSK1_the_user_has_a_default_list(graph: Graph) -> None:
    lists = graph.ok(graph.get("me/todo/lists"))["value"]

    assert [x["wellknownListName"] for x in lists] == ["defaultList"]
    assert lists[0]["displayName"] == "Tasks"


def test_TSK1_a_created_list_is_not_the_default(graph: Graph) -> None:
    made = graph.ok(graph.post("me/todo/lists", {"displayName": "CRM"}), 201)

    assert made["wellknownListName"] == "none"
    assert len(graph.ok(graph.get("me/todo/lists"))["value"]) == 2


def test_TSK1_a_created_task_reads_back_with_graphs_shape(graph: Graph) -> None:
    tasks = default_list(graph)
    created = add(
        graph,
        tasks,
        body={"content": "About the renewal", "contentType": "text"},
        importance="high",
        status="inProgress",
        dueDateTime={"dateTime": "2026-03-05T00:00:00.0000000", "timeZone": "UTC"},
        isReminderOn=True,
        reminderDateTime={"dateTime": "2026-03-04T09:00:00.0000000", "timeZone": "UTC"},
        categories=["CRM"],
    )

    read = graph.ok(graph.get(f"me/todo/lists/{tasks}/tasks/{created['id']}"))

    assert read == created
    assert read["title"] == "Call Grace" and read["importance"] == "high"
    assert read["status"] == "inProgress" and read["categories"] == ["CRM"]
    assert read["dueDateTime"]["dateTime"].startswith("2026-03-05")
    assert read["isReminderOn"] is True
    assert read["createdDateTime"].endswith("Z") and "@odata.etag" in read


def test_TSK1_a_new_task_defaults_to_not_started_and_normal_importance(graph: Graph) -> None:
    created = add(graph, default_list(graph))

    assert created["status"] == "notStarted" and created["importance"] == "normal"


def test_TSK1_every_status_graph_knows_is_accepted_and_others_refused(graph: Graph) -> None:
    tasks = default_list(graph)
    created = add(graph, tasks)
    path = f"me/todo/lists/{tasks}/tasks/{created['id']}"

    for status in ("inProgress", "waitingOnOthers", "deferred", "completed", "notStarted"):
        assert graph.ok(graph.patch(path, {"status": status}))["status"] == status
    assert graph.patch(path, {"status": "done"}).status_code == 400


def test_TSK1_completing_a_task_stamps_completed_date_time(graph: Graph) -> None:
    tasks = default_list(graph)
    created = add(graph, tasks)

    done = graph.ok(
        graph.patch(f"me/todo/lists/{tasks}/tasks/{created['id']}", {"status": "completed"})
    )

    assert done["completedDateTime"]["dateTime"].startswith("2026-03-02T09:00:00")


def test_TSK1_every_write_gives_a_new_etag_and_a_stale_one_gets_412(graph: Graph) -> None:
    tasks = default_list(graph)
    created = add(graph, tasks)
    path = f"me/todo/lists/{tasks}/tasks/{created['id']}"
    patched = graph.ok(graph.patch(path, {"title": "Call Grace today"}))

    stale = graph.patch(path, {"title": "x"}, headers={"If-Match": created["@odata.etag"]})

    assert patched["@odata.etag"] != created["@odata.etag"]
    assert stale.status_code == 412


def test_TSK1_todo_tasks_have_no_single_value_extended_properties(graph: Graph) -> None:
    answer = graph.post(
        f"me/todo/lists/{default_list(graph)}/tasks",
        {
            "title": "x",
            "singleValueExtendedProperties": [
                {"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name k", "value": "v"}
            ],
        },
    )

    assert answer.status_code == 400


def test_TSK1_a_deleted_task_is_gone(graph: Graph) -> None:
    tasks = default_list(graph)
    created = add(graph, tasks)

    assert graph.delete(f"me/todo/lists/{tasks}/tasks/{created['id']}").status_code == 204

    assert graph.get(f"me/todo/lists/{tasks}/tasks/{created['id']}").status_code == 404


def test_TSK1_a_first_delta_round_pages_every_task_then_gives_a_delta_link(graph: Graph) -> None:
    tasks = default_list(graph)
    made = {add(graph, tasks, title=f"T{n}")["id"] for n in range(5)}

    items, delta_link, pages = whole_round(graph, f"me/todo/lists/{tasks}/tasks/delta")

    assert {i["id"] for i in items} == made and pages == 3
    assert "$deltatoken=" in delta_link


def test_TSK1_a_delta_link_reports_changes_and_deletions_as_removed(graph: Graph) -> None:
    tasks = default_list(graph)
    kept, changed, gone = (add(graph, tasks, title=t) for t in ("Kept", "Changed", "Gone"))
    _, delta_link, _ = whole_round(graph, f"me/todo/lists/{tasks}/tasks/delta")
    graph.ok(graph.patch(f"me/todo/lists/{tasks}/tasks/{changed['id']}", {"status": "completed"}))
    assert graph.delete(f"me/todo/lists/{tasks}/tasks/{gone['id']}").status_code == 204

    items, next_delta, _ = whole_round(graph, delta_link)

    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {changed["id"], gone["id"]}
    assert by_id[changed["id"]]["status"] == "completed"
    assert by_id[gone["id"]]["@removed"] == {"reason": "deleted"}
    assert kept["id"] not in by_id
    assert whole_round(graph, next_delta)[0] == []


def test_TSK1_delta_is_per_list(graph: Graph) -> None:
    other = graph.ok(graph.post("me/todo/lists", {"displayName": "CRM"}), 201)["id"]
    add(graph, other)

    items, _, _ = whole_round(graph, f"me/todo/lists/{default_list(graph)}/tasks/delta")

    assert items == []


def test_RUN4_an_expired_task_delta_link_gets_410_with_a_fresh_start(graph: Graph) -> None:
    tasks = default_list(graph)
    add(graph, tasks)
    _, delta_link, _ = whole_round(graph, f"me/todo/lists/{tasks}/tasks/delta")
    expire_delta_links(graph.sandbox, EMAIL)

    answer = graph.get(delta_link)

    assert answer.status_code == 410
    assert answer.json()["error"]["code"] == "syncStateNotFound"
    items, _, _ = whole_round(graph, answer.headers["Location"])
    assert len(items) == 1


def test_a_read_only_token_cannot_write_tasks(graph: Graph) -> None:
    token = graph.sandbox.issue_token(EMAIL, ["Tasks.Read"])

    answer = graph.post(f"me/todo/lists/{default_list(graph)}/tasks", {"title": "x"}, token=token)

    assert answer.status_code == 403


def test_TSK1_linked_resources_made_with_a_task_show_only_when_expanded(graph: Graph) -> None:
    list_id = default_list(graph)
    link = {"applicationName": "crmsync", "displayName": "T1", "externalId": "todo-crm-T1"}
    made = add(graph, list_id, linkedResources=[link])
    path = f"me/todo/lists/{list_id}/tasks"

    plain = graph.ok(graph.get(f"{path}/{made['id']}"))
    expanded = graph.ok(graph.get(f"{path}/{made['id']}", params={"$expand": "linkedResources"}))
    listed = graph.ok(graph.get(path, params={"$expand": "linkedResources"}))["value"]

    assert "linkedResources" not in plain
    assert [{k: r[k] for k in link} for r in expanded["linkedResources"]] == [link]
    assert expanded["linkedResources"][0]["id"]
    assert listed[0]["linkedResources"] == expanded["linkedResources"]


def test_TSK1_an_expanded_delta_round_keeps_linked_resources_in_its_links(graph: Graph) -> None:
    list_id = default_list(graph)
    link = {"applicationName": "crmsync", "displayName": "T1", "externalId": "todo-crm-T1"}
    made = add(graph, list_id, linkedResources=[link])
    url = f"me/todo/lists/{list_id}/tasks/delta?$expand=linkedResources"
    _, delta_link, _ = whole_round(graph, url)
    graph.ok(graph.patch(f"me/todo/lists/{list_id}/tasks/{made['id']}", {"title": "Edited"}))

    items, _, _ = whole_round(graph, delta_link)

    assert [i["linkedResources"][0]["externalId"] for i in items] == ["todo-crm-T1"]


def test_TSK1_a_linked_resource_without_an_application_is_refused(graph: Graph) -> None:
    answer = graph.post(
        f"me/todo/lists/{default_list(graph)}/tasks",
        {"title": "Call Grace", "linkedResources": [{"externalId": "x"}]},
    )

    assert answer.status_code == 400


EXTENSION = "Com.Crmsync.Test"


def test_SYN1_an_open_extension_made_with_a_task_shows_only_when_expanded(graph: Graph) -> None:
    list_id = default_list(graph)
    extension = {
        "@odata.type": "#microsoft.graph.openTypeExtension",
        "extensionName": EXTENSION,
        "Ticket": "T-77",
    }
    made = add(graph, list_id, extensions=[extension])
    path = f"me/todo/lists/{list_id}/tasks/{made['id']}"

    assert "extensions" not in graph.ok(graph.get(path))
    one = {"$expand": f"linkedResources,extensions($filter=id eq '{EXTENSION}')"}
    [shown] = graph.ok(graph.get(path, params=one))["extensions"]
    assert (shown["id"], shown["Ticket"]) == (EXTENSION, "T-77")
    other = {"$expand": "extensions($filter=id eq 'Com.Other')"}
    assert graph.ok(graph.get(path, params=other))["extensions"] == []
    round_items, _, _ = whole_round(
        graph, f"me/todo/lists/{list_id}/tasks/delta?$expand=extensions"
    )
    assert round_items[0]["extensions"][0]["Ticket"] == "T-77"


def test_SYN1_writing_an_open_extension_replaces_its_values_and_changes_the_task(
    graph: Graph,
) -> None:
    list_id = default_list(graph)
    made = add(graph, list_id)
    path = f"me/todo/lists/{list_id}/tasks/{made['id']}"
    extension = {
        "@odata.type": "#microsoft.graph.openTypeExtension",
        "extensionName": EXTENSION,
        "Ticket": "T-1",
        "Stage": "lead",
    }

    graph.ok(graph.post(f"{path}/extensions", extension), 201)
    assert graph.post(f"{path}/extensions", extension).status_code == 409
    answer = graph.patch(f"{path}/extensions/{EXTENSION}", {"Ticket": "T-2", "Stage": None})
    assert answer.status_code == 204

    held = graph.ok(graph.get(f"{path}/extensions/{EXTENSION}"))
    assert (held["Ticket"], held["Stage"]) == ("T-2", None)
    assert graph.ok(graph.get(path))["@odata.etag"] != made["@odata.etag"]
    assert graph.patch(f"{path}/extensions/Com.Other", {"Ticket": "x"}).status_code == 404
    nested = {**extension, "Ticket": {"nested": True}}
    assert graph.post(f"{path}/extensions", {**nested, "extensionName": "B"}).status_code == 400
