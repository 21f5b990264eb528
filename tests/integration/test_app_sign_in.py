"""Signing in to the web app with the identity a user already has, over HTTP through
the functions, the Google and Microsoft sandboxes' OpenID Connect and the reference
CRM's user directory; what a session may reach; CSRF (the web-app issue: "Who signs in,
and how"; AUTH-2 for the state; HIS-2's "users see their own, admins their tenant's")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack, consent
from sandbox.microsoft.identity import consent as microsoft_consent
from tests.app_helpers import OLGA, add_other_tenant, app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX, SAM = DEMO_USERS["u1"], DEMO_USERS["u2"], DEMO_USERS["u3"]


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()
    store = stack.services.backend.store(DEMO_TENANT)
    store.save_tenant_record({"admins": ["u2"]})  # Max Manager runs crmsync for Demo Inc.
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    # a second tenant, with a CRM (tenant) of its own and a user of its own
    add_other_tenant(stack)
    yield stack
    stack.close()


def test_a_user_signs_in_with_google_and_sees_their_own_connection(stack: LocalStack) -> None:
    browser = sign_in(stack, DANA)
    answer = browser.last  # type: ignore[attr-defined]
    assert answer.status_code == 303
    assert answer.headers["Location"] == app(stack, "/")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert f"Path={urlsplit(app(stack)).path}" in cookie
    page = browser.get(app(stack, "/me"))
    assert page.status_code == 200
    assert DANA in page.text and "Connected" in page.text
    assert "connection-google-u1" in page.text
    mine = browser.get(app(stack, "/api/me")).json()
    assert [c["id"] for c in mine["connections"]] == ["google-u1"]


def test_a_user_signs_in_with_microsoft_by_the_account_they_connected(stack: LocalStack) -> None:
    browser = sign_in(stack, MAX, provider="microsoft")
    assert browser.last.status_code == 303, browser.last.text  # type: ignore[attr-defined]
    mine = browser.get(app(stack, "/api/me")).json()
    assert [c["id"] for c in mine["connections"]] == ["microsoft-u2"]
    assert browser.get(app(stack, "/api/")).json()["admin"] is True  # u2 is named admin


def test_a_crm_user_not_yet_connected_signs_in_by_their_verified_address(
    stack: LocalStack,
) -> None:
    browser = sign_in(stack, SAM)
    assert browser.last.status_code == 303  # type: ignore[attr-defined]
    assert browser.get(app(stack, "/api/me")).json()["connections"] == []


def test_an_account_that_is_no_user_of_the_tenant_is_refused_and_gets_no_session(
    stack: LocalStack,
) -> None:
    browser = sign_in(stack, "stranger@elsewhere.example")
    answer = browser.last  # type: ignore[attr-defined]
    assert answer.status_code == 403
    assert "is not a user of Demo Inc. in crmsync" in answer.text  # a page, for a person
    assert "Set-Cookie" not in answer.headers
    assert browser.get(app(stack, "/api/me")).status_code == 401


def test_a_user_of_one_tenant_is_no_user_of_another(stack: LocalStack) -> None:
    assert sign_in(stack, DANA, tenant="other").last.status_code == 403  # type: ignore[attr-defined]
    assert sign_in(stack, OLGA).last.status_code == 403  # type: ignore[attr-defined]
    olga = sign_in(stack, OLGA, tenant="other")  # the admin of the other tenant
    who = olga.get(app(stack, "/api/")).json()
    assert (who["tenant"], who["user"], who["admin"]) == ("other", "o1", True)
    assert olga.get(app(stack, "/api/me")).json()["connections"] == []
    seen = olga.get(app(stack, "/api/admin")).json()
    assert seen["tenant"] == "other" and seen["rows"] == []
    token = csrf(olga.get(app(stack, "/me")).text)
    theirs = olga.post(app(stack, "/me/connections/google-u1/sync"), data={"csrf": token})
    assert theirs.status_code == 404


def test_a_sign_in_code_taken_to_another_browser_is_refused(stack: LocalStack) -> None:
    started = requests.get(
        app(stack, f"/sign-in?tenant={DEMO_TENANT}&provider=google"), allow_redirects=False
    )
    back = consent(started.headers["Location"], DANA)
    elsewhere = requests.get(back, allow_redirects=False)  # no sign-in cookie
    assert elsewhere.status_code == 400
    assert "started in another browser" in elsewhere.text


def test_a_user_reaches_only_their_own_connections(stack: LocalStack) -> None:
    dana = sign_in(stack, DANA)
    token = csrf(dana.get(app(stack, "/me")).text)
    theirs = dana.post(app(stack, "/me/connections/microsoft-u2/sync"), data={"csrf": token})
    assert theirs.status_code == 404
    assert dana.get(app(stack, "/api/admin")).status_code == 403  # no admin
    mine = dana.post(
        app(stack, "/me/connections/google-u1/sync"), data={"csrf": token}, allow_redirects=False
    )
    assert mine.status_code == 303 and "notice=" in mine.headers["Location"]


def test_a_form_without_the_session_csrf_token_changes_nothing(stack: LocalStack) -> None:
    dana = sign_in(stack, DANA)
    before = stack.services.backend.store(DEMO_TENANT).connection_record("google-u1")
    for forged in ({}, {"csrf": "forged"}):
        answer = dana.post(app(stack, "/me/connections/google-u1/disconnect"), data=forged)
        assert answer.status_code == 403
    after = stack.services.backend.store(DEMO_TENANT).connection_record("google-u1")
    assert after == before


def test_sign_out_ends_the_session_on_the_server(stack: LocalStack) -> None:
    dana = sign_in(stack, DANA)
    kept = dict(dana.cookies)
    token = csrf(dana.get(app(stack, "/me")).text)
    out = dana.post(app(stack, "/sign-out"), data={"csrf": token}, allow_redirects=False)
    assert out.status_code == 303
    replayed = requests.get(app(stack, "/api/me"), cookies=kept)  # the old cookie, kept
    assert replayed.status_code == 401


def test_without_a_session_a_page_goes_to_sign_in_and_the_api_answers_401(
    stack: LocalStack,
) -> None:
    page = requests.get(app(stack, "/me"), headers={"Accept": "text/html"}, allow_redirects=False)
    assert page.status_code == 303
    assert page.headers["Location"].startswith(app(stack, "/sign-in"))
    assert requests.get(app(stack, "/api/me")).status_code == 401


def test_an_admin_token_reads_the_admin_api_of_its_tenant_only(stack: LocalStack) -> None:
    token = stack.create_demo_tenant()  # re-registered: a fresh admin token
    ok = requests.get(app(stack, "/api/admin"), headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert {r["connection"] for r in ok.json()["rows"]} == {"google-u1", "microsoft-u2"}
    other = token.replace(f"{DEMO_TENANT}.", "other.", 1)
    refused = requests.get(app(stack, "/api/admin"), headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 401
    as_user = requests.get(app(stack, "/api/me"), headers={"Authorization": f"Bearer {token}"})
    assert as_user.status_code == 403


def test_the_make_dev_banner_sign_in_addresses_sign_the_demo_users_in(stack: LocalStack) -> None:
    from sandbox.local.dev import _sign_in

    for provider, email, admin in (("google", DANA, False), ("microsoft", MAX, True)):
        browser = requests.Session()
        url = _sign_in(stack.services.url("app"), provider, email)
        started = browser.get(url, allow_redirects=False)
        assert started.status_code == 303
        assert f"login_hint={email.replace('@', '%40')}" in started.headers["Location"]
        if provider == "google":
            browser.get(consent(started.headers["Location"], email), allow_redirects=False)
        else:
            found = microsoft_consent(started.headers["Location"], email, verify=stack.microsoft_ca)
            browser.get(stack.services.url("oauth_callback"), params=found, allow_redirects=False)
        assert browser.get(app(stack, "/api/")).json()["admin"] is admin


def test_every_page_links_a_stylesheet_the_app_serves(stack: LocalStack) -> None:
    page = requests.get(app(stack, "/sign-in?tenant=demo")).text
    linked = re.search(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert linked is not None
    sheet = requests.get(linked.group(1))
    assert sheet.status_code == 200 and sheet.headers["Content-Type"].startswith("text/css")
    assert requests.get(app(stack, "/assets/../sessions.py")).status_code == 404


def test_an_admin_signs_a_user_out_everywhere_and_their_sessions_end_at_once(
    stack: LocalStack,
) -> None:
    dana_here, dana_there = sign_in(stack, DANA), sign_in(stack, DANA)
    max_ = sign_in(stack, MAX, provider="microsoft")
    token = csrf(max_.get(app(stack, "/admin")).text)
    refused = dana_here.post(
        app(stack, "/admin/users/u1/sign-out"),
        data={"csrf": csrf(dana_here.get(app(stack, "/me")).text)},
    )
    assert refused.status_code == 403  # no admin
    done = max_.post(
        app(stack, "/admin/users/u1/sign-out"), data={"csrf": token}, allow_redirects=False
    )
    assert done.status_code == 303
    assert dana_here.get(app(stack, "/api/me")).status_code == 401
    assert dana_there.get(app(stack, "/api/me")).status_code == 401
    assert max_.get(app(stack, "/api/me")).status_code == 200  # only u1's ended
    assert (
        max_.post(app(stack, "/admin/users/nobody/sign-out"), data={"csrf": token}).status_code
        == 404
    )


def test_a_session_ended_elsewhere_is_said_so_and_the_company_is_remembered(
    stack: LocalStack,
) -> None:
    dana = sign_in(stack, DANA)
    home = dana.get(app(stack, "/"), allow_redirects=False)  # where a sign-in lands
    assert "crmsync_company=demo" in home.headers["Set-Cookie"]
    token = csrf(dana.get(app(stack, "/me")).text)
    stack.services.backend.sessions().drop_sessions_of(DEMO_TENANT, "u1")  # revoked
    browser = {"Accept": "text/html"}
    back = dana.get(app(stack, "/me"), headers=browser, allow_redirects=False)
    assert back.status_code == 303 and "ended=1" in back.headers["Location"]
    page = dana.get(back.headers["Location"], headers=browser).text
    assert "Your session has ended" in page
    assert 'id="sign-in-google"' in page  # the company is remembered: straight to providers
    stale = dana.post(app(stack, "/me/settings/google-u1"), data={"csrf": token}, headers=browser)
    assert "what you sent was not saved" in stale.text
    asked = dana.get(app(stack, "/sign-in?tenant="), headers=browser).text
    assert 'id="tenant"' in asked  # "Another company?" asks again
    signed_out = sign_in(stack, DANA)
    signed_out.get(app(stack, "/"))
    token = csrf(signed_out.get(app(stack, "/me")).text)
    signed_out.post(app(stack, "/sign-out"), data={"csrf": token})
    again = signed_out.get(app(stack, "/me"), headers=browser).text
    assert 'id="sign-in-google"' in again and "Your session has ended" not in again


def test_the_api_gives_a_session_its_csrf_token_for_json_calls(stack: LocalStack) -> None:
    dana = sign_in(stack, DANA)
    who = dana.get(app(stack, "/api/")).json()
    assert who["user"] == "u1" and who["csrf"]
    synced = dana.post(
        app(stack, "/api/me/connections/google-u1/sync"), headers={"X-CSRF-Token": who["csrf"]}
    )
    assert synced.status_code == 200 and "enqueued" in synced.json()


def test_a_refusal_in_the_app_is_a_page_that_leads_back_home(stack: LocalStack) -> None:
    dana = sign_in(stack, DANA)
    page = dana.get(app(stack, "/admin"), headers={"Accept": "text/html"})
    assert page.status_code == 403
    assert f'href="{app(stack)}"' in page.text and "Back to crmsync" in page.text
