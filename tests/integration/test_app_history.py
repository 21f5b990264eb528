"""Sync History in the web app, over HTTP through the functions, the Google and Microsoft
sandboxes and the reference CRM: the list of runs a user or an admin reads, sorted,
filtered, grouped by time frame and paged (HIS-2); one run's items, and a failed record
tried again or kept out of sync from the page (HIS-4, SET-4); who may see which runs.

The runs are real cycles: two just after connecting, one of u1's twelve days ago and
one of u2's three days ago (the stack's clock set back while they ran), and one in
which Google refuses the two to-dos it is sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.queue.inline import InlineQueue
from crmsync.settings import resolve
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import OLGA, add_other_tenant, app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
RECORD_URL = "https://crm.demo.example/records/{kind}/{id}"
REFUSED = ("Send the offer", "Call the lawyer")  # the to-dos Google refuses once


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    shift = [timedelta(0)]
    stack = LocalStack(
        MemoryBackend(),
        InlineQueue(),
        graph_flush=0,
        clock=lambda: datetime.now(UTC) + shift[0],
    )
    stack.create_demo_tenant()  # u2 is its admin
    store = stack.services.backend.store(DEMO_TENANT)
    crm = store.tenant_record()["crm"]  # type: ignore[index]
    store.save_tenant_record({"crm": {**crm, "record_url": RECORD_URL}})
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    first = {(r["connection"], r["trigger"]): r["id"] for r in drain(stack)}
    runs = {
        "u1 connect": first["google-u1", "connect"],
        "u2 connect": first["microsoft-u2", "connect"],
    }
    shift[0] = -timedelta(days=12)
    runs["u1 12 days ago"] = service.work(stack.services, DEMO_TENANT, "google-u1", "schedule")[
        "id"
    ]
    shift[0] = -timedelta(days=3)
    runs["u2 3 days ago"] = service.work(stack.services, DEMO_TENANT, "microsoft-u2", "schedule")[
        "id"
    ]
    shift[0] = timedelta(0)
    drain(stack)  # Google's notices of the first cycle's writes
    due = (date.today() + timedelta(days=3)).isoformat()
    for subject in REFUSED:
        stack.crm.create(DEMO_TENANT, "todo", {"subject": subject, "due": due}, "u1")
    stack.google.inject(
        400, reason="invalid", method="POST", path=r"tasks/v1/lists/[^/]+/tasks$", times=2
    )
    failed = service.work(stack.services, DEMO_TENANT, "google-u1", "schedule")
    assert failed["status"] == "partial"
    runs["u1 failed"] = failed["id"]
    stack.runs = runs  # type: ignore[attr-defined]
    # a second tenant, whose admin must never reach the demo tenant's runs
    add_other_tenant(stack)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def dana(stack: LocalStack) -> requests.Session:
    return sign_in(stack, DANA)


@pytest.fixture(scope="module")
def max_(stack: LocalStack) -> requests.Session:
    return sign_in(stack, MAX, provider="microsoft")


def drain(stack: LocalStack) -> list[dict[str, Any]]:
    """Run every queued cycle now, as the worker would, until none is left."""
    assert isinstance(stack.queue, InlineQueue)
    ran = []
    while due := stack.queue.due(datetime(9999, 1, 1, tzinfo=UTC)):
        for task in due:
            stack.services.queue.forget(task.name)  # type: ignore[attr-defined]
            ran.append(service.work(stack.services, task.tenant, task.connection, task.trigger))
    return ran


def google_tasks(stack: LocalStack) -> list[str]:
    """The titles of u1's tasks in their own Google Tasks, every list."""
    api = stack.google_api("tasks", "v1")
    lists = api.tasklists().list().execute().get("items", [])
    return [
        task["title"]
        for listed in lists
        for task in api.tasks().list(tasklist=listed["id"]).execute().get("items", [])
    ]


def made(stack: LocalStack, name: str) -> str:
    return str(stack.runs[name])  # type: ignore[attr-defined]


def listed(session: requests.Session, stack: LocalStack, path: str, **query: Any) -> Any:
    answer = session.get(app(stack, "/api" + path), params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()


def ids(page: Any) -> list[str]:
    return [run["id"] for run in page["runs"]]


def link(html: str, element_id: str) -> str:
    found = re.search(rf'<a href="([^"]+)" id="{element_id}"', html)
    assert found, f"no link #{element_id}"
    return found.group(1).replace("&amp;", "&")


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="run-([^"]+)"', html)


# -- HIS-2: the list --------------------------------------------------------------------------
def test_HIS2_a_user_sees_their_own_runs_newest_first_under_their_time_frame(
    stack: LocalStack, dana: requests.Session
) -> None:
    page = listed(dana, stack, "/me/history")

    mine = [made(stack, n) for n in ("u1 failed", "u1 connect", "u1 12 days ago")]
    assert [i for i in ids(page) if i in mine] == mine
    assert {run["connection"] for run in page["runs"]} == {"google-u1"}
    groups = {run["id"]: run["group"] for run in page["runs"]}
    assert [groups[i] for i in mine] == ["Today", "Today", "Last 30 days"]
    html = dana.get(app(stack, "/me/history")).text
    assert rows(html) == ids(page)
    headings = re.findall(r'scope="rowgroup"[^>]*>([^<]+)<', html)
    assert headings[0] == "Today" and "Last 30 days" in headings
    today, month = (
        html.index(f'rowgroup" colspan="6" class="group-heading">{h}<')
        for h in ("Today", "Last 30 days")
    )
    assert today < html.index(mine[0]) < html.index(mine[1]) < month < html.index(mine[2])
    failed = html[html.index(f'id="run-{mine[0]}"') :].split("</tr>")[0]
    assert "2 failed" in failed and "Some records failed" in failed
    assert f'href="{app(stack, f"/me/history/google-u1/{mine[0]}")}"' in failed


def test_HIS2_a_column_header_sorts_by_it_and_sorts_the_other_way_when_clicked_again(
    stack: LocalStack, dana: requests.Session
) -> None:
    first = dana.get(app(stack, "/me/history")).text
    assert re.search(r'<th scope="col" aria-sort="descending"><a [^>]*id="sort-started"', first)

    by_duration = dana.get(link(first, "sort-duration"))
    assert re.search(r'aria-sort="descending"><a [^>]*id="sort-duration"', by_duration.text)
    again = dana.get(link(by_duration.text, "sort-duration"))
    assert re.search(r'aria-sort="ascending"><a [^>]*id="sort-duration"', again.text)

    longest = listed(dana, stack, "/me/history", sort="duration")
    shortest = listed(dana, stack, "/me/history", sort="duration", order="asc")
    took = [run["duration"] for run in longest["runs"]]
    assert took == sorted(took, reverse=True) and len(set(took)) > 1
    assert ids(shortest) == ids(longest)[::-1]
    assert rows(by_duration.text) == ids(longest) and rows(again.text) == ids(shortest)


def test_HIS2_filters_narrow_the_list_and_a_bad_one_says_why(
    stack: LocalStack, dana: requests.Session
) -> None:
    everything = ids(listed(dana, stack, "/me/history"))

    partial = listed(dana, stack, "/me/history", status="partial")
    connects = listed(dana, stack, "/me/history", trigger="connect")
    this_week = listed(dana, stack, "/me/history", frame="7d")

    assert ids(partial) == [made(stack, "u1 failed")]
    assert ids(connects) == [made(stack, "u1 connect")]
    assert made(stack, "u1 12 days ago") in everything
    assert made(stack, "u1 12 days ago") not in ids(this_week)
    assert set(ids(this_week)) == set(everything) - {made(stack, "u1 12 days ago")}
    shown = dana.get(app(stack, "/me/history"), params={"status": "partial", "kind": "todo"})
    assert rows(shown.text) == [made(stack, "u1 failed")]
    assert '<option value="partial" selected>' in shown.text

    bad = dana.get(app(stack, "/me/history"), params={"status": "sideways"})
    assert bad.status_code == 400
    assert "status is one of" in bad.text and 'id="filters"' in bad.text
    answer = dana.get(app(stack, "/api/me/history"), params={"limit": "lots"})
    assert answer.status_code == 400 and "limit" in answer.json()["error"]


def test_HIS2_nothing_to_do_lists_exactly_the_runs_that_read_no_changes(
    stack: LocalStack, dana: requests.Session
) -> None:
    page = dana.get(app(stack, "/me/history"))
    cells = re.findall(
        r'<tr id="run-([^"]+)"[^>]*>.*?<time[^>]*>([^<]*)</time>.*?<td>([^<]*)</td>\s*</tr>',
        page.text,
        re.S,
    )
    idle = dana.get(app(stack, "/me/history"), params={"status": "idle"})

    no_changes = {run for run, _, summary in cells if summary.startswith("No changes")}
    assert no_changes and set(rows(idle.text)) == no_changes
    assert all(re.search(r", \d\d:\d\d:\d\d$", started) for _, started, _ in cells)
    assert made(stack, "u1 failed") not in no_changes


def test_HIS2_paging_goes_through_every_run_once_and_back_to_the_newest(
    stack: LocalStack, max_: requests.Session
) -> None:
    whole = ids(listed(max_, stack, "/admin/history", limit=200))
    paged: list[str] = []
    token = None
    while True:
        page = listed(max_, stack, "/admin/history", limit=2, **({"page": token} if token else {}))
        assert 0 < len(page["runs"]) <= 2
        paged += ids(page)
        token = page["next"]
        if token is None:
            break
    assert paged == whole and len(set(paged)) == len(paged) > 4

    first = max_.get(app(stack, "/admin/history"), params={"limit": 2}).text
    second = max_.get(link(first, "older")).text
    assert rows(second) == paged[2:4]
    assert "limit=2" in link(second, "older")
    assert rows(max_.get(link(second, "newest")).text) == paged[:2]


# -- HIS-2, HIS-4: one run ----------------------------------------------------------------------
def test_HIS4_a_failed_record_reads_in_plain_words_with_what_can_be_done(
    stack: LocalStack, dana: requests.Session
) -> None:
    path = f"/me/history/google-u1/{made(stack, 'u1 failed')}"

    run = listed(dana, stack, path)
    page = dana.get(app(stack, path)).text

    failed = [i for i in run["items"] if i["outcome"] == "fail"]
    assert sorted(i["label"] for i in failed) == sorted(REFUSED)
    todos = {t["subject"]: t["id"] for t in stack.crm.all(DEMO_TENANT, "todo")}
    for item in failed:
        assert "refused this record" in item["error"] and "HTTP" not in item["error"]
        url = RECORD_URL.format(kind="todo", id=todos[item["label"]])
        assert f'href="{url}" target="_blank"' in page
    assert page.count(">Try again</button>") == 2
    assert page.count(">Stop syncing this record</button>") == 2
    assert page.count(">Open in the CRM") == 2
    assert "Some records failed" in page and "What went wrong" in page


def test_HIS4_stop_syncing_from_the_page_puts_the_record_on_the_exception_list(
    stack: LocalStack, dana: requests.Session
) -> None:
    path = f"/me/history/google-u1/{made(stack, 'u1 failed')}"
    [lawyer] = [t for t in stack.crm.all(DEMO_TENANT, "todo") if t["subject"] == REFUSED[1]]
    until = date.today() + timedelta(days=30)
    form = {"kind": "todo", "crm_id": lawyer["id"], "provider_id": "", "until": until.isoformat()}
    store = stack.services.backend.store(DEMO_TENANT)

    def excluded(at: datetime | None = None) -> bool:
        record = store.connection_record("google-u1")
        defaults = store.tenant_record()["settings"]  # type: ignore[index]
        settings = resolve("google", defaults, record["settings"])  # type: ignore[index]
        return settings.excluded("todo", lawyer["id"], at or datetime.now(UTC))

    forged = dana.post(app(stack, path + "/exclude"), data=form)
    assert forged.status_code == 403 and not excluded()

    token = csrf(dana.get(app(stack, path)).text)
    answer = dana.post(app(stack, path + "/exclude"), data={**form, "csrf": token})

    assert answer.status_code == 200 and answer.url.startswith(app(stack, path + "?notice="))
    assert f"Call the lawyer is no longer synced until {until.day} " in answer.text
    assert "You can include it again in Settings." in answer.text
    assert excluded()
    assert not excluded(datetime.combine(until, time(1), UTC))  # the user's zone is UTC


def test_HIS4_try_again_from_the_page_starts_a_sync_that_brings_the_record_across(
    stack: LocalStack, dana: requests.Session
) -> None:
    path = f"/me/history/google-u1/{made(stack, 'u1 failed')}"
    [offer] = [t for t in stack.crm.all(DEMO_TENANT, "todo") if t["subject"] == REFUSED[0]]
    form = {"kind": "todo", "crm_id": offer["id"], "provider_id": ""}
    drain(stack)
    assert isinstance(stack.queue, InlineQueue)

    forged = dana.post(app(stack, path + "/retry"), data=form)
    assert forged.status_code == 403 and not stack.queue.waiting

    token = csrf(dana.get(app(stack, path)).text)
    answer = dana.post(app(stack, path + "/retry"), data={**form, "csrf": token})

    assert answer.status_code == 200
    assert "It will be tried again in the next sync, which has started." in answer.text
    assert [(q.connection, q.trigger) for q in stack.queue.waiting.values()] == [
        ("google-u1", "manual")
    ]
    again = drain(stack)[0]
    assert (again["trigger"], again["status"]) == ("manual", "ok")
    detail = listed(dana, stack, f"/me/history/google-u1/{again['id']}")
    done = {(i["label"], i["outcome"]) for i in detail["items"]}
    assert (REFUSED[0], "create") in done and REFUSED[1] not in {
        i["label"] for i in detail["items"]
    }
    titles = google_tasks(stack)
    assert REFUSED[0] in titles and REFUSED[1] not in titles  # the excluded one stays out


# -- who sees which runs (HIS-2) ----------------------------------------------------------------
def test_HIS2_a_user_reaches_only_their_own_runs_and_no_admin_page(
    stack: LocalStack, dana: requests.Session
) -> None:
    theirs = made(stack, "u2 connect")
    token = csrf(dana.get(app(stack, "/me/history")).text)

    assert dana.get(app(stack, f"/me/history/microsoft-u2/{theirs}")).status_code == 404
    assert dana.get(app(stack, f"/api/me/history/google-u1/{theirs}")).status_code == 404
    assert (
        dana.get(app(stack, f"/me/history/google-u1/{made(stack, 'u1 failed')}x")).status_code
        == 404
    )
    assert dana.get(app(stack, "/admin/history")).status_code == 403
    assert dana.get(app(stack, f"/api/admin/history/google-u1/{theirs}")).status_code == 403
    retried = dana.post(
        app(stack, f"/me/history/microsoft-u2/{theirs}/retry"),
        data={"csrf": token, "kind": "todo", "crm_id": "t-1"},
    )
    assert retried.status_code == 404
    assert theirs not in ids(listed(dana, stack, "/me/history", user="u2"))


def test_HIS2_the_admin_sees_every_users_runs_filters_by_user_and_opens_any(
    stack: LocalStack, max_: requests.Session
) -> None:
    everyone = listed(max_, stack, "/admin/history")
    only_dana = listed(max_, stack, "/admin/history", user="u1")

    assert {run["user"] for run in everyone["runs"]} == {"u1", "u2"}
    assert {run["user"] for run in only_dana["runs"]} == {"u1"}
    assert set(ids(only_dana)) == {r["id"] for r in everyone["runs"] if r["user"] == "u1"}
    page = max_.get(app(stack, "/admin/history"), params={"user": "u2", "frame": "7d"}).text
    assert made(stack, "u2 3 days ago") in rows(page) and '<option value="u2" selected>' in page
    detail = max_.get(app(stack, f"/admin/history/google-u1/{made(stack, 'u1 failed')}"))
    assert detail.status_code == 200 and "Call the lawyer" in detail.text
    assert max_.get(app(stack, "/me/history")).status_code == 200  # their own too

    olga = sign_in(stack, OLGA, tenant="other")  # the other tenant's admin
    assert listed(olga, stack, "/admin/history")["runs"] == []
    path = f"/admin/history/google-u1/{made(stack, 'u1 failed')}"
    assert olga.get(app(stack, path)).status_code == 404
