"""The operator's `crmsync tenant`, `onboarding-link` and `admin-consent-link` act on a deployment
through the environment the functions read, here on the Firestore emulator (AUTH-1)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from crmsync import entrypoints, service
from crmsync.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def deployment(firestore_client: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "GOOGLE_CLOUD_PROJECT": firestore_client.project,
        "CRMSYNC_TASKS_QUEUE": "projects/p/locations/l/queues/q",
        "CRMSYNC_WORKER_URL": "https://functions.example/sync_worker",
        "CRMSYNC_SECRET": "operator-test-secret-0123456789",
        "CRMSYNC_LOCAL_KEK": base64.b64encode(b"k" * 32).decode(),
        "CRMSYNC_PUBLIC_URL": "https://functions.example",
        "CRMSYNC_NEW_CRM_TOKEN": "the-crm-api-token",
        "CRMSYNC_NEW_EVENT_SECRET": "the-event-secret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_AUTH1_an_operator_registers_a_tenant_and_makes_onboarding_links(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["tenant", "--id", "acme", "--name", "ACME", "--crm-base-url", "https://crm.example"]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "admin token" in printed
    admin = printed.rsplit(" ", 1)[1].strip()
    assert "the-crm-api-token" not in printed

    assert main(["onboarding-link", "--tenant", "acme", "--user", "u7"]) == 0
    link = capsys.readouterr().out.strip()

    services = entrypoints.from_environment(deployment)
    assert service.admin_tenant(services, f"Bearer {admin}") == "acme"
    assert link.startswith("https://functions.example/oauth_start?link=")
    opened = service.read_link(services, link.split("link=", 1)[1])
    assert (opened.tenant, opened.user) == ("acme", "u7")
    record = services.backend.store("acme").tenant_record()
    assert record["crm"]["base_url"] == "https://crm.example"
    assert "the-crm-api-token" not in str(record)  # sealed


def test_AUTH1_a_link_for_an_unknown_tenant_is_refused(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["onboarding-link", "--tenant", "nobody", "--user", "u1"]) == 2
    assert "no such tenant" in capsys.readouterr().err


def test_SET2_an_operator_limits_what_a_tenants_users_may_connect(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from crmsync import entrypoints

    code = main(
        [
            "tenant",
            "--id",
            "lean",
            "--name",
            "Lean",
            "--crm-base-url",
            "https://crm.example",
            "--providers",
            "google",
            "--services",
            "sync",
        ]
    )
    refused = main(
        [
            "tenant",
            "--id",
            "odd",
            "--name",
            "Odd",
            "--crm-base-url",
            "https://x",
            "--services",
            "fax",
        ]
    )

    assert code == 0 and refused == 2
    assert "services" in capsys.readouterr().err
    record = entrypoints.from_environment(deployment).backend.store("lean").tenant_record()
    assert (record["providers"], record["services"]) == (["google"], ["sync"])


def test_AUTH1_an_operator_makes_a_directory_admins_consent_link(
    deployment: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`crmsync admin-consent-link` prints the link a tenant's directory admin opens to
    approve crmsync for the organisation; refused where Microsoft is not set up."""
    main(["tenant", "--id", "acme", "--name", "ACME", "--crm-base-url", "https://crm.example"])
    capsys.readouterr()
    assert main(["admin-consent-link", "--tenant", "acme"]) == 2
    assert "Microsoft 365 is not set up" in capsys.readouterr().err

    monkeypatch.setenv("CRMSYNC_MICROSOFT_CLIENT_ID", "app-id")
    monkeypatch.setenv("CRMSYNC_MICROSOFT_CLIENT_SECRET", "app-secret")
    assert main(["admin-consent-link", "--tenant", "acme"]) == 0

    link = capsys.readouterr().out.strip()
    assert link.startswith("https://functions.example/oauth_start?admin=")
    assert main(["admin-consent-link", "--tenant", "acme", "--provider", "google"]) == 2
    assert "no organisation-wide consent" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["onboarding-link", "admin-consent-link", "tenant"])
def test_AUTH1_a_command_run_without_the_deployments_environment_says_what_to_do(
    verb: str,
    firestore_client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without the environment docs/deploy.md section 3 sets (here: no task queue), an
    operator's command answers one line naming what is missing and where to look, not
    a traceback."""
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", firestore_client.project)
    for name in ("CRMSYNC_TASKS_QUEUE", "CRMSYNC_WORKER_URL"):
        monkeypatch.delenv(name, raising=False)
    args = {
        "onboarding-link": ["--tenant", "acme", "--user", "u1"],
        "admin-consent-link": ["--tenant", "acme"],
        "tenant": ["--id", "acme", "--name", "ACME", "--crm-base-url", "https://crm.example"],
    }[verb]

    assert main([verb, *args]) == 2

    said = capsys.readouterr().err
    assert "CRMSYNC_TASKS_QUEUE" in said and "docs/deploy.md section 3" in said
    assert "Traceback" not in said and len(said.strip().splitlines()) == 1
