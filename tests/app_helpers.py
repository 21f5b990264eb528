"""What the web app's tests share: signing in as a person does (over HTTP, or in a
real browser), the session's CSRF token, and the accessibility check with a screenshot
of every page a browser test shows (build/screenshots/app/, kept out of git)."""

from __future__ import annotations

import re
from pathlib import Path

import requests
from playwright.sync_api import Page

from sandbox.crm.seed import DEMO_TENANT
from sandbox.local.stack import DEMO_USERS, LocalStack, consent
from sandbox.microsoft.identity import consent as microsoft_consent

SHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots" / "app"


def app(stack: LocalStack, path: str = "") -> str:
    """An address of the stack's web app."""
    return stack.services.url("app") + path


def sign_in(
    stack: LocalStack, email: str, provider: str = "google", tenant: str = DEMO_TENANT
) -> requests.Session:
    """A browser-like session that signs in to the app as `email` through the provider's
    sandbox; `session.last` is the app's answer to the sign-in."""
    browser = requests.Session()
    started = browser.get(
        app(stack, f"/sign-in?tenant={tenant}&provider={provider}"), allow_redirects=False
    )
    assert started.status_code == 303, started.text
    if provider == "google":
        back = consent(started.headers["Location"], email)
        answer = browser.get(back, allow_redirects=False)
    else:
        found = microsoft_consent(started.headers["Location"], email, verify=stack.microsoft_ca)
        answer = browser.get(
            stack.services.url("oauth_callback"), params=found, allow_redirects=False
        )
    browser.last = answer  # type: ignore[attr-defined]
    return browser


def csrf(page: str) -> str:
    """The session's CSRF token, from a page's form."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def browser_sign_in(page: Page, stack: LocalStack, user: str, provider: str) -> None:
    """Sign in in a real browser: the app's sign-in page, the provider's page, back."""
    page.goto(app(stack, "/"))
    page.fill("#tenant", DEMO_TENANT)
    page.click("text=Continue")
    page.click(f"#sign-in-{provider}")
    if provider == "google":
        page.fill("input[name=email]", DEMO_USERS[user])
        page.click("button[value=allow]")
    else:
        page.fill("input[name=login]", DEMO_USERS[user])
        page.click("button[value=accept]")
    page.wait_for_url(app(stack, "/**"))


def looked_at(page: Page, name: str) -> None:
    """The page passes axe-core's automated accessibility checks (every form control
    labelled, contrast, landmarks, ...), and its screenshot is kept for a reviewer."""
    from axe_playwright_python.sync_playwright import Axe

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    found = Axe().run(page)
    problems = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])}×)" for v in found.response["violations"]
    ]
    assert problems == [], f"{name}: {problems}"


OTHER, OLGA = "other", "olga@other.example"


def add_other_tenant(stack: LocalStack) -> None:
    """A second tenant with a CRM (tenant) of its own and its admin o1, Olga: whatever
    she reaches of the demo tenant is a leak."""
    from crmsync import service

    stack.crm.add_tenant(OTHER, "other-token")
    stack.crm.add_user(OTHER, "o1", name="Olga Other", email=OLGA)
    service.create_tenant(
        stack.services,
        OTHER,
        name="Other Ltd.",
        crm_base_url=stack.crm_url,
        crm_token="other-token",
        event_secret="other-secret",
        admins=["o1"],
    )
