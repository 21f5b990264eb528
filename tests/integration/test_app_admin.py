"""The tenant admin's pages of the web app, over HTTP through the functions, the Google
and Microsoft sandboxes and the reference CRM: the dashboard of seats and health
(AUTH-6, SET-6, HIS-1), and onboarding at scale from the CRM's directory or a CSV file
(AUTH-1). Links are shown once: never in an address, never in a log line. Only the
tenant's admins reach any of it, each only their own tenant, and only with the
session's CSRF token."""

from __future__ import annotations

import copy
import csv
import html
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from crmsync import service
from crmsync.logs import JsonFormatter
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.google import oauth as google_oauth
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import OLGA, add_other_tenant, app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
NORA = "nora.new@demo.example"
FILE = "user,crm_user,email\nu3,,\nghost,,\nu4,,nora@demo.example\n"  # ghost: not in the CRM
ACTIONS = ("/admin/links", "/admin/links.csv", "/admin/users/u3/link")


class Admin:
    """The stack, its admin token, and the people signed in to its app."""

    def __init__(self, stack: LocalStack, token: str) -> None:
        self.stack = stack
        self.token = token
        self.max = sign_in(stack, MAX, provider="microsoft")  # the demo tenant's admin
        self.dana = sign_in(stack, DANA)  # a user, no admin
        self.olga = sign_in(stack, OLGA, tenant="other")  # the other tenant's admin

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def admin() -> Iterator[Admin]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    token = stack.create_demo_tenant()  # Max Manager (u2) is its admin
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    add_other_tenant(stack)
    yield Admin(stack, token)
    stack.close()


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """Every line crmsync logs meanwhile, as the product writes it."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crmsync")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def users_of(admin: Admin, tenant: str = DEMO_TENANT) -> dict[str, Any]:
    return copy.deepcopy(admin.stack.services.backend.store(tenant).user_records())


def token_of(session: requests.Session, admin: Admin, page: str = "/me") -> str:
    return csrf(session.get(app(admin.stack, page)).text)


def shown_links(page: str) -> list[str]:
    return [html.unescape(v) for v in re.findall(r'class="link"[^>]*value="([^"]+)"', page)]


def test_AUTH6_HIS1_the_admin_sees_the_seats_and_how_many_connections_have_each_health(
    admin: Admin,
) -> None:
    page = admin.max.get(app(admin.stack, "/admin"))
    assert page.status_code == 200
    assert "2 of 10 seats used." in page.text
    for health in ("ok", "needs_reconsent", "stale", "stuck", "failing", "disconnected", "off"):
        assert f'href="{app(admin.stack, "/admin")}?health={health}"' in page.text
    assert 'id="row-google-u1-sync"' in page.text and 'id="row-microsoft-u2-sync"' in page.text
    assert f'href="{app(admin.stack, "/admin/users/u1")}"' in page.text

    seen = admin.max.get(app(admin.stack, "/api/admin")).json()
    by_token = requests.get(app(admin.stack, "/api/admin"), headers=admin.bearer()).json()
    for answer in (seen, by_token):
        assert answer["seats"] == {"used": 2, "allowed": 10}
        assert answer["counts"]["ok"] == 2 and sum(answer["counts"].values()) == 2
        assert {(r["connection"], r["service"]) for r in answer["rows"]} == {
            ("google-u1", "sync"),
            ("microsoft-u2", "sync"),
        }


def test_SET6_a_revoked_grant_shows_as_needing_to_sign_in_again_with_a_plain_problem(
    admin: Admin,
) -> None:
    stack = admin.stack
    google_oauth.revoke_all(stack.google, DANA)
    google_oauth.expire_access_tokens(stack.google, DANA)
    cycle = {"tenant": DEMO_TENANT, "connection": "google-u1", "trigger": "manual"}
    ran = requests.post(stack.functions_url + "/sync_worker", json=cycle, timeout=60).json()
    assert ran["status"] == "needs_reauth"

    found = admin.max.get(app(stack, "/api/admin?health=needs_reconsent")).json()
    [row] = found["rows"]
    assert (row["connection"], row["health"]) == ("google-u1", "needs_reconsent")
    assert row["problems"][0].startswith("Needs to sign in again: Google refused the grant")
    assert found["counts"]["needs_reconsent"] == 1 and found["counts"]["ok"] == 1

    page = admin.max.get(app(stack, "/admin?health=needs_reconsent")).text
    assert 'id="row-google-u1-sync"' in page and 'id="row-microsoft-u2-sync"' not in page
    assert "Needs to sign in again: Google refused the grant" in page  # the problem, in words
    history = app(stack, "/admin/history/google-u1/" + ran["run"])
    assert f'href="{history}"' in page
    fine = admin.max.get(app(stack, "/api/admin?health=ok")).json()
    assert [r["connection"] for r in fine["rows"]] == ["microsoft-u2"]
    assert admin.max.get(app(stack, "/api/admin?health=grumpy")).status_code == 400


def test_AUTH1_a_crm_user_and_one_just_added_to_the_crm_get_links_in_one_step(
    admin: Admin, logged: io.StringIO
) -> None:
    stack = admin.stack
    stack.crm.add_user(DEMO_TENANT, "u4", name="Nora New", email=NORA)
    listed = admin.max.get(app(stack, "/admin/users")).text
    for name in ("Sam Support", "Nora New"):  # a checkbox each, labelled with the name
        assert re.search(rf'<label for="pick-\d+">{name}</label>', listed)

    answer = admin.max.post(
        app(stack, "/admin/links"), data={"csrf": csrf(listed), "users": ["u3", "u4"]}
    )
    assert answer.status_code == 200 and not answer.history  # a page, not a redirect
    links = shown_links(answer.text)
    assert len(links) == 2
    for link in links:
        opened = requests.get(link, timeout=10)
        assert opened.status_code == 200 and "Connect your account" in opened.text
    assert [link for link in links if link in logged.getvalue()] == []

    rows = admin.max.get(app(stack, "/api/admin/users")).json()["rows"]
    new = {r["crm_user"]: r for r in rows if r["crm_user"] in ("u3", "u4")}
    assert new["u4"]["name"] == "Nora New" and new["u4"]["email"] == NORA
    assert all(r["link_made"] and r["connected_since_link"] is False for r in new.values())


def test_AUTH1_a_file_with_a_bad_row_reports_its_line_while_the_others_get_links(
    admin: Admin,
) -> None:
    stack = admin.stack
    answer = admin.max.post(
        app(stack, "/admin/links"),
        data={"csrf": token_of(admin.max, admin, "/admin/users")},
        files={"file": ("people.csv", FILE, "text/csv")},
    )
    assert answer.status_code == 200
    assert len(shown_links(answer.text)) == 2  # u3 and u4
    refused = re.search(r'<ul id="refused".*?</ul>', answer.text, re.S)
    assert refused is not None
    assert "line 3: ghost is not an active user of the tenant&#39;s CRM" in refused.group(0)
    assert "u3" not in refused.group(0) and "u4" not in refused.group(0)

    before = users_of(admin)
    malformed = admin.max.post(
        app(stack, "/admin/links"),
        data={"csrf": token_of(admin.max, admin, "/admin/users")},
        files={"file": ("people.csv", "name\nu3\n", "text/csv")},
        headers={"Accept": "text/html"},  # as a browser asks: the refusal is a page
    )
    assert malformed.status_code == 400  # refused whole, naming the line, before any link
    assert "line 1: unknown column &#39;name&#39;" in malformed.text
    assert "Correct the file and upload it again." in malformed.text
    assert users_of(admin) == before


def test_AUTH1_the_links_download_as_a_csv_file_with_a_row_per_user(admin: Admin) -> None:
    stack = admin.stack
    answer = admin.max.post(
        app(stack, "/admin/links.csv"),
        data={"csrf": token_of(admin.max, admin, "/admin/users"), "file": FILE},
    )
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    read = csv.DictReader(io.StringIO(answer.text))
    assert read.fieldnames == ["user", "crm_user", "email", "link", "error"]
    rows = {row["user"]: row for row in read}
    assert sorted(rows) == ["ghost", "u3", "u4"]
    assert rows["u4"]["email"] == "nora@demo.example" and rows["u4"]["crm_user"] == "u4"
    for user in ("u3", "u4"):
        assert rows[user]["link"].startswith(stack.services.url("oauth_start") + "?link=")
        assert rows[user]["error"] == ""
    assert rows["ghost"]["link"] == "" and rows["ghost"]["error"].startswith("line 3: ")
    opened = requests.get(rows["u3"]["link"], timeout=10)
    assert opened.status_code == 200


def test_AUTH1_a_new_link_for_one_user_renews_theirs_and_the_api_takes_the_admin_token(
    admin: Admin,
) -> None:
    stack = admin.stack
    before = users_of(admin)["u3"][service.LINK_MADE]
    answer = admin.max.post(
        app(stack, "/admin/users/u3/link"),
        data={"csrf": token_of(admin.max, admin, "/admin/users")},
    )
    assert answer.status_code == 200 and len(shown_links(answer.text)) == 1
    renewed = users_of(admin)["u3"][service.LINK_MADE]
    assert renewed > before

    by_token = requests.post(
        app(stack, "/api/admin/links"), json={"users": ["u3", "nobody"]}, headers=admin.bearer()
    )
    assert by_token.status_code == 200
    [u3, nobody] = by_token.json()["rows"]
    assert u3["link"] and u3["error"] is None
    assert nobody["link"] is None and "nobody" in nobody["error"]


def test_AUTH1_every_directory_row_has_a_button_that_makes_that_users_link(admin: Admin) -> None:
    stack = admin.stack
    stack.crm.add_user(DEMO_TENANT, "u5", name="Olive Onboard", email="olive@demo.example")
    listed = admin.max.get(app(stack, "/admin/users")).text

    buttons = re.findall(
        r'formaction="[^"]*/admin/users/([^"/]+)/link"[^>]*>([^<]+)</button>', listed
    )
    rows = re.findall(r'<tr id="person-\d+">', listed)
    assert len(buttons) == len(rows) and ("u5", "Make a link") in buttons
    assert "u5" not in users_of(admin)

    answer = admin.max.post(app(stack, "/admin/users/u5/link"), data={"csrf": csrf(listed)})

    assert answer.status_code == 200 and len(shown_links(answer.text)) == 1
    assert users_of(admin)["u5"][service.LINK_MADE]
    again = admin.max.get(app(stack, "/admin/users")).text
    assert ("u5", "New link") in re.findall(
        r'formaction="[^"]*/admin/users/([^"/]+)/link"[^>]*>([^<]+)</button>', again
    )


def test_AUTH1_SET6_a_user_who_is_no_admin_is_refused_every_admin_page_and_action(
    admin: Admin,
) -> None:
    stack, dana = admin.stack, admin.dana
    for path in ("/admin", "/admin?health=ok", "/admin/users"):
        assert dana.get(app(stack, path)).status_code == 403
        assert dana.get(app(stack, "/api" + path)).status_code == 403
    before = users_of(admin)
    token = token_of(dana, admin)  # her own, valid CSRF token
    for path in ACTIONS:
        answer = dana.post(app(stack, path), data={"csrf": token, "users": "u3"})
        assert answer.status_code == 403
        assert dana.post(app(stack, "/api" + path), json={"users": ["u3"]}).status_code == 403
    assert users_of(admin) == before


def test_AUTH1_another_tenants_admin_sees_nothing_of_this_tenant(admin: Admin) -> None:
    stack, olga = admin.stack, admin.olga
    theirs = olga.get(app(stack, "/api/admin")).json()
    assert theirs["tenant"] == "other" and theirs["rows"] == []
    assert theirs["seats"]["used"] == 0
    directory = olga.get(app(stack, "/api/admin/users")).json()["rows"]
    assert [r["crm_user"] for r in directory] == ["o1"]
    page = olga.get(app(stack, "/admin/users")).text
    assert "Sam Support" not in page and DANA not in page

    before = users_of(admin)
    token = token_of(olga, admin, "/admin/users")
    answer = olga.post(
        app(stack, "/api/admin/users/u3/link"), json={}, headers={"X-CSRF-Token": token}
    )
    [row] = answer.json()["rows"]
    assert row["link"] is None  # u3 is no user of the other tenant's CRM
    assert users_of(admin) == before


def test_AUTH1_a_post_without_the_session_csrf_token_is_refused_and_makes_no_link(
    admin: Admin,
) -> None:
    stack = admin.stack
    before = users_of(admin)
    for path in ACTIONS:
        for forged in ({"users": "u3"}, {"users": "u3", "csrf": "forged"}):
            assert admin.max.post(app(stack, path), data=forged).status_code == 403
        assert admin.max.post(app(stack, "/api" + path), json={"users": ["u3"]}).status_code == 403
    assert users_of(admin) == before
