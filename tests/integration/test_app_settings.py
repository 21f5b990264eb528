"""The settings pages of the web app over HTTP, through the functions, the Google and
Microsoft sandboxes and the reference CRM: a user's settings and exception list
(SET-1, SET-4, SET-7), the company settings (SET-2, HIS-3), and the admin's page of a
named user with its on/off switch (SET-6). Every page is reached as a browser does
(posted forms with the session's CSRF token) and through its JSON twin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from crmsync import service
from crmsync.ports import ConnectionRecord
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend
from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack
from tests.app_helpers import app, csrf, sign_in

pytestmark = pytest.mark.integration

DANA, MAX = DEMO_USERS["u1"], DEMO_USERS["u2"]
MINE, THEIRS = "google-u1", "microsoft-u2"
PAGE = f"/me/settings/{MINE}"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    stack = LocalStack(MemoryBackend(), InlineQueue(), graph_flush=0)
    stack.create_demo_tenant()  # Max Manager (u2) is its admin
    assert stack.connect("u1").status_code == 200
    assert stack.connect("u2", provider="microsoft").status_code == 200
    # a second tenant, with a user of its own
    stack.crm.add_tenant("other", "other-token")
    service.create_tenant(
        stack.services,
        "other",
        name="Other Ltd.",
        crm_base_url=stack.crm_url,
        crm_token="other-token",
        event_secret="other-secret",
    )
    stack.services.backend.store("other").save_user_record("o1", {"crm_user": "o1"})
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def dana(stack: LocalStack) -> requests.Session:
    return sign_in(stack, DANA)


@pytest.fixture(scope="module")
def admin(stack: LocalStack) -> requests.Session:
    return sign_in(stack, MAX, provider="microsoft")


# -- helpers ---------------------------------------------------------------------------------
def token(session: requests.Session, stack: LocalStack) -> str:
    return csrf(session.get(app(stack, "/me")).text)


def post(
    session: requests.Session, stack: LocalStack, path: str, **fields: Any
) -> requests.Response:
    """A form posted as the page posts it, with the session's CSRF token."""
    data = {"csrf": token(session, stack), **fields}
    return session.post(app(stack, path), data=data, allow_redirects=False)


def call(
    session: requests.Session, stack: LocalStack, path: str, body: dict[str, Any]
) -> requests.Response:
    """The JSON twin of a form."""
    headers = {"X-CSRF-Token": token(session, stack)}
    return session.post(app(stack, "/api" + path), json=body, headers=headers)


def fields(form: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for s in form["sections"] for f in s["fields"]}


def my_fields(dana: requests.Session, stack: LocalStack) -> dict[str, dict[str, Any]]:
    answer = dana.get(app(stack, "/api" + PAGE))
    assert answer.status_code == 200
    return fields(answer.json()["form"])


def record(stack: LocalStack, connection: str = MINE) -> ConnectionRecord:
    found = service.connection_of(stack.services.backend.store(DEMO_TENANT), connection)
    assert found is not None
    return found


def effective(stack: LocalStack, connection: str = MINE) -> Any:
    return service.settings_for(stack.services, DEMO_TENANT, record(stack, connection))


def control(page: str, name: str) -> str:
    """The HTML of one setting on a settings page (its label, control, help, error)."""
    found = re.search(
        rf'<div class="setting" id="{MINE}-{name.replace(".", "-")}-setting">(.*?)</div>',
        page,
        re.S,
    )
    assert found, f"no {name} on the page"
    return found.group(1)


def notice(answer: requests.Response) -> str:
    assert answer.status_code == 303, answer.text
    return parse_qs(urlsplit(answer.headers["Location"]).query)["notice"][0]


def queued(stack: LocalStack) -> list[str]:
    """The connections the queue holds a cycle for; the queue is emptied."""
    return [task.connection for task in stack.queue.due(stack.clock() + timedelta(days=1))]


def reset_mine(dana: requests.Session, stack: LocalStack) -> None:
    own = [name for name, f in my_fields(dana, stack).items() if f["own"]]
    assert call(dana, stack, PAGE, {"reset": own}).status_code == 200


# -- SET-1: a user's settings --------------------------------------------------------------
def test_SET1_a_user_changes_settings_on_the_page_and_they_apply(
    stack: LocalStack, dana: requests.Session
) -> None:
    opened = dana.get(app(stack, "/me/settings"), allow_redirects=False)
    assert opened.status_code == 303  # one connection: straight to its settings
    assert opened.headers["Location"] == app(stack, PAGE)
    page = dana.get(app(stack, PAGE)).text
    assert '<select id="google-u1-conflict_policy" name="conflict_policy"' in page
    assert 'type="checkbox" id="google-u1-private_items"' in page
    assert 'type="number" step="any" id="google-u1-window_days"' in page
    assert 'type="date"' in control(page, "not_before")
    calendar = control(page, "calendar")  # a picker, filled from the user's own account
    assert "<select" in calendar and f">{DANA}</option>" in calendar
    before = my_fields(dana, stack)

    saved = post(
        dana,
        stack,
        PAGE,
        conflict_policy="crm_wins",
        private_items=["off", "on"],
        window_days="30",
        notify_attendees="off",  # as it was: not sent on
    )

    assert notice(saved) == "Settings saved"
    settings = effective(stack)
    assert (settings["conflict_policy"], settings["private_items"]) == ("crm_wins", True)
    assert settings["window_days"] == 30
    assert set(record(stack).settings) == {"conflict_policy", "private_items", "window_days"}
    after = my_fields(dana, stack)
    assert (after["conflict_policy"]["value"], after["conflict_policy"]["own"]) == (
        "crm_wins",
        True,
    )
    page = dana.get(app(stack, PAGE)).text
    assert 'value="crm_wins" selected' in control(page, "conflict_policy")
    assert "Use the default instead" in control(page, "conflict_policy")

    taken_back = post(dana, stack, PAGE, reset="conflict_policy")
    assert notice(taken_back) == "Settings saved"
    assert effective(stack)["conflict_policy"] == before["conflict_policy"]["default"]
    assert effective(stack)["window_days"] == 30  # the rest stays

    typed = call(dana, stack, PAGE, {"changes": {"window_days": 7, "timezone": "Europe/Berlin"}})
    assert typed.status_code == 200
    assert (typed.json()["settings"]["window_days"], effective(stack)["timezone"]) == (
        7,
        "Europe/Berlin",
    )
    as_text = call(dana, stack, PAGE, {"changes": {"window_days": "7"}})
    assert as_text.status_code == 400 and "window_days" in as_text.json()["error"]
    reset_mine(dana, stack)


def test_SET1_a_refused_value_is_shown_with_its_reason_and_what_was_typed_kept(
    stack: LocalStack, dana: requests.Session
) -> None:
    before = record(stack).settings

    refused = post(dana, stack, PAGE, window_days="-3", conflict_policy="manual")

    assert refused.status_code == 400
    window = control(refused.text, "window_days")
    assert 'value="-3"' in window and 'aria-invalid="true"' in window
    assert re.search(r'id="google-u1-window_days-error">.*window_days: expected', window)
    assert 'value="manual" selected' in control(refused.text, "conflict_policy")
    assert 'role="alert"' in refused.text
    assert record(stack).settings == before  # nothing written


# -- SET-2: the company's settings -------------------------------------------------------------
def test_SET2_a_setting_the_admin_locked_is_shown_locked_and_a_users_change_is_refused(
    stack: LocalStack, dana: requests.Session, admin: requests.Session
) -> None:
    locked = post(admin, stack, "/admin/settings", **{"users_may.conflict_policy": "off"})
    assert notice(locked) == "Settings saved"
    tenant = stack.services.backend.store(DEMO_TENANT).tenant_record() or {}
    assert tenant["locked"] == ["conflict_policy"]
    company = admin.get(app(stack, "/admin/settings")).text
    assert (
        'id="company-conflict_policy-users-may" name="users_may.conflict_policy" value="on">'
        in (company)
    )  # shown unticked

    page = dana.get(app(stack, PAGE)).text
    shown = control(page, "conflict_policy")
    assert "disabled" in shown and "Set by your company." in shown
    assert "disabled" not in control(page, "window_days")
    assert my_fields(dana, stack)["conflict_policy"]["editable"] is False
    before = effective(stack)["conflict_policy"]

    refused = post(dana, stack, PAGE, conflict_policy="manual")
    assert refused.status_code == 403
    assert "conflict_policy: locked" in control(refused.text, "conflict_policy")
    assert call(dana, stack, PAGE, {"changes": {"conflict_policy": "manual"}}).status_code == 403
    assert effective(stack)["conflict_policy"] == before

    # SET-6: the admin edits the named user's locked setting for them
    theirs = post(admin, stack, f"/admin/users/u1/connections/{MINE}", conflict_policy="manual")
    assert notice(theirs) == "Settings saved"
    assert effective(stack)["conflict_policy"] == "manual"

    freed = post(admin, stack, "/admin/settings", **{"users_may.conflict_policy": ["off", "on"]})
    assert notice(freed) == "Settings saved"
    assert "disabled" not in control(dana.get(app(stack, PAGE)).text, "conflict_policy")
    reset_mine(dana, stack)


def test_SET2_HIS3_a_company_default_reaches_users_without_their_own_value(
    stack: LocalStack, dana: requests.Session, admin: requests.Session
) -> None:
    assert notice(post(admin, stack, "/admin/settings", window_days="45", history_days="30"))
    store = stack.services.backend.store(DEMO_TENANT)
    assert (store.tenant_record() or {})["settings"] == {"window_days": 45, "history_days": 30}
    mine = my_fields(dana, stack)["window_days"]
    assert (mine["value"], mine["own"]) == (45, False)
    assert effective(stack)["window_days"] == 45
    assert effective(stack, THEIRS)["history_days"] == 30  # every user's cycles keep it
    company = admin.get(app(stack, "/api/admin/settings")).json()
    assert fields(company)["history_days"]["value"] == 30

    assert call(dana, stack, PAGE, {"changes": {"window_days": 10}}).status_code == 200
    post(admin, stack, "/admin/settings", window_days="60")
    assert effective(stack)["window_days"] == 10  # the user's own value stays theirs
    assert effective(stack, THEIRS)["window_days"] == 60

    refused = post(admin, stack, "/admin/settings", mass_delete_ratio="2", window_days="20")
    assert refused.status_code == 400
    assert 'id="company-mass_delete_ratio-error"' in refused.text
    assert 'value="2"' in refused.text and 'value="20"' in refused.text
    assert (store.tenant_record() or {})["settings"]["window_days"] == 60  # nothing written

    cleared = post(admin, stack, "/admin/settings", window_days="", history_days="")
    assert notice(cleared) == "Settings saved"
    assert (store.tenant_record() or {})["settings"] == {}
    reset_mine(dana, stack)


# -- SET-7: manual only ----------------------------------------------------------------------
def test_SET7_manual_only_set_on_the_page_keeps_the_connection_out_of_the_fan_out(
    stack: LocalStack, dana: requests.Session
) -> None:
    queued(stack)
    assert notice(post(dana, stack, PAGE, frequency_minutes="0")) == "Settings saved"
    assert effective(stack).manual
    assert 'id="manual-only"' in dana.get(app(stack, PAGE)).text
    store = stack.services.backend.store(DEMO_TENANT)
    store.set_next_due(MINE, stack.clock())  # as if it were due

    service.fanout(stack.services)
    assert MINE not in queued(stack)
    asked = post(dana, stack, f"/me/connections/{MINE}/sync")
    assert asked.status_code == 303 and queued(stack) == [MINE]  # Sync now still works

    assert notice(post(dana, stack, PAGE, frequency_minutes="15")) == "Settings saved"
    service.fanout(stack.services)
    assert MINE in queued(stack)
    reset_mine(dana, stack)


# -- SET-4: the exception list -------------------------------------------------------------
def test_SET4_a_record_excluded_on_the_page_is_left_alone_until_included_again(
    stack: LocalStack, dana: requests.Session
) -> None:
    assert service.work(stack.services, DEMO_TENANT, MINE, "manual")["status"] == "ok"
    assert "Ada Lovelace" in stack.google_contact_names()
    [ada] = [c for c in stack.crm.all(DEMO_TENANT, "contact") if c["last_name"] == "Lovelace"]

    left_out = post(dana, stack, f"{PAGE}/exclude", kind="contact", crm_id=ada["id"], until="")
    assert "is left out of the sync" in notice(left_out)
    page = dana.get(app(stack, PAGE)).text
    row = rf'<th scope="row">Ada Lovelace</th>\s*<td>{ada["id"]}</td>\s*<td>Left out for good</td>'
    assert re.search(row, page)  # named as its link knows it, with its CRM id
    stack.crm.update(DEMO_TENANT, "contact", ada["id"], {"first_name": "Augusta"})
    service.work(stack.services, DEMO_TENANT, MINE, "manual")
    assert "Ada Lovelace" in stack.google_contact_names()  # untouched while left out

    back = post(dana, stack, f"{PAGE}/include", kind="contact", crm_id=ada["id"])
    assert "syncs again" in notice(back)
    assert f"<td>{ada['id']}</td>" not in dana.get(app(stack, PAGE)).text
    service.work(stack.services, DEMO_TENANT, MINE, "manual")
    assert "Augusta Lovelace" in stack.google_contact_names()

    # for a while: left out from a date on, then let in until another
    day = (stack.clock() + timedelta(days=3)).date()
    post(dana, stack, f"{PAGE}/exclude", kind="contact", crm_id=ada["id"])
    a_while = post(dana, stack, f"{PAGE}/include", kind="contact", crm_id=ada["id"], until=str(day))
    assert f"until {day}" in notice(a_while)
    page = dana.get(app(stack, PAGE)).text
    assert f"Syncs until {day} 00:00, then left out again" in page
    now = stack.clock()
    assert not effective(stack).excluded("contact", ada["id"], now)
    assert effective(stack).excluded("contact", ada["id"], now + timedelta(days=4))

    refused = post(dana, stack, f"{PAGE}/exclude", kind="contact", crm_id="", until="")
    assert refused.status_code == 400
    assert re.search(r'role="alert".*crm_id: give the record', refused.text)
    reset_mine(dana, stack)


# -- SET-6: the admin's switch --------------------------------------------------------------
def test_SET6_the_admin_turns_a_user_off_and_on_again(
    stack: LocalStack, dana: requests.Session, admin: requests.Session
) -> None:
    page = admin.get(app(stack, "/admin/users/u1"))
    assert page.status_code == 200
    assert "Sync is <strong>on</strong>" in page.text and f'id="{MINE}-settings"' in page.text
    queued(stack)

    off = post(admin, stack, "/admin/users/u1/enabled", enabled="off")
    assert "Sync is off for u1" in notice(off)
    assert "Sync is <strong>off</strong>" in admin.get(app(stack, "/admin/users/u1")).text
    assert 'id="turned-off"' in dana.get(app(stack, PAGE)).text
    assert post(dana, stack, f"/me/connections/{MINE}/sync").status_code == 409
    stack.services.backend.store(DEMO_TENANT).set_next_due(MINE, stack.clock())
    service.fanout(stack.services)
    assert MINE not in queued(stack)
    assert service.work(stack.services, DEMO_TENANT, MINE, "schedule")["status"] == "skipped"

    on = call(admin, stack, "/admin/users/u1/enabled", {"enabled": True})
    assert on.json() == {"user": "u1", "enabled": True}
    service.fanout(stack.services)
    assert MINE in queued(stack)
    assert post(dana, stack, f"/me/connections/{MINE}/sync").status_code == 303
    queued(stack)


# -- who may reach what ------------------------------------------------------------------------
def test_SET6_a_user_reaches_only_their_own_settings_and_an_admin_only_their_tenants(
    stack: LocalStack, dana: requests.Session, admin: requests.Session
) -> None:
    assert dana.get(app(stack, f"/me/settings/{THEIRS}")).status_code == 404
    assert dana.get(app(stack, "/me/settings/nobody-u9")).status_code == 404
    assert post(dana, stack, f"/me/settings/{THEIRS}", window_days="9").status_code == 404
    exclude = post(dana, stack, f"/me/settings/{THEIRS}/exclude", kind="todo", crm_id="t-1")
    assert exclude.status_code == 404
    for path in ("/admin/settings", "/admin/users/u1", "/api/admin/users/u2"):
        assert dana.get(app(stack, path)).status_code == 403
    assert post(dana, stack, "/admin/settings", window_days="9").status_code == 403
    assert post(dana, stack, "/admin/users/u2/enabled", enabled="off").status_code == 403

    assert admin.get(app(stack, "/admin/users/nobody")).status_code == 404
    assert admin.get(app(stack, "/admin/users/o1")).status_code == 404  # another tenant's
    not_u1s = post(admin, stack, f"/admin/users/u1/connections/{THEIRS}", window_days="9")
    assert not_u1s.status_code == 404
    assert post(admin, stack, "/admin/users/o1/enabled", enabled="off").status_code == 404
    assert "window_days" not in record(stack, THEIRS).settings
    assert (stack.services.backend.store("other").user_record("o1") or {}).get("enabled") is None


def test_SET4_SET6_a_settings_form_without_the_session_csrf_token_changes_nothing(
    stack: LocalStack, dana: requests.Session, admin: requests.Session
) -> None:
    store = stack.services.backend.store(DEMO_TENANT)
    before = (store.connection_record(MINE), store.tenant_record(), store.user_record("u1"))
    forged: list[tuple[requests.Session, str, dict[str, str]]] = [
        (dana, PAGE, {"window_days": "9"}),
        (dana, f"{PAGE}/exclude", {"kind": "todo", "crm_id": "t-1"}),
        (dana, f"{PAGE}/include", {"kind": "todo", "crm_id": "t-1"}),
        (admin, "/admin/settings", {"window_days": "9"}),
        (admin, "/admin/users/u1/enabled", {"enabled": "off"}),
        (admin, f"/admin/users/u1/connections/{MINE}", {"window_days": "9"}),
    ]
    for session, path, data in forged:
        for csrf_field in ({}, {"csrf": "forged"}):
            answer = session.post(app(stack, path), data={**data, **csrf_field})
            assert answer.status_code == 403, path
        assert session.post(app(stack, "/api" + path), json=data).status_code == 403, path
    after = (store.connection_record(MINE), store.tenant_record(), store.user_record("u1"))
    assert after == before


def test_CON1_the_contact_sync_is_reset_from_the_settings_page_and_paired_again_without_copies(
    stack: LocalStack, dana: requests.Session
) -> None:
    store = stack.services.backend.store(DEMO_TENANT)
    service.work(stack.services, DEMO_TENANT, MINE, "manual")
    linked = {link.crm_id for link in store.links(MINE, "contact")}
    assert linked  # u1's sync group synced
    google_before = len(stack.google_contact_names("u1"))
    unconfirmed = post(dana, stack, PAGE + "/reset", kind="contact")
    assert unconfirmed.status_code == 400 and "not confirmed" in unconfirmed.text
    assert {link.crm_id for link in store.links(MINE, "contact")} == linked
    done = post(dana, stack, PAGE + "/reset", kind="contact", confirmed="yes")
    assert done.status_code == 303
    assert (
        "pairs the records again" in parse_qs(urlsplit(done.headers["Location"]).query)["notice"][0]
    )
    assert list(store.links(MINE, "contact")) == []
    service.work(stack.services, DEMO_TENANT, MINE, "manual")
    assert {link.crm_id for link in store.links(MINE, "contact")} == linked  # paired again
    assert len(stack.google_contact_names("u1")) == google_before  # no copies
    theirs = post(dana, stack, "/me/settings/microsoft-u2/reset", kind="contact", confirmed="yes")
    assert theirs.status_code == 404
