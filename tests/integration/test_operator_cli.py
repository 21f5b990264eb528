"""The operator's `crmsync tenant`, `onboarding-link` and `admin-consent-link` act on a deployment
through the variables the functions read, from the environment or from a configuration
file (`--config`, CRMSYNC_CONFIG), here on the Firestore emulator (AUTH-1): on the
running local stack through the file `make dev` writes for it, with every failure said
in one line, and nothing written by a refused command."""

from __future__ import annotations

import base64
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from crmsync import entrypoints, envfile, service
from crmsync.cli import NAMING, main
from crmsync.queue.inline import InlineQueue
from crmsync.store.firestore import FirestoreBackend
from sandbox.local import operator_config
from sandbox.local.emulators import Emulator, free_port
from sandbox.local.stack import LocalStack

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
    monkeypatch.setenv("CRMSYNC_PUBLIC_URL", "https://functions.example")
    for name in ("CRMSYNC_TASKS_QUEUE", "CRMSYNC_WORKER_URL", "CRMSYNC_CONFIG"):
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


# -- the configuration file of the running local stack (`make dev`) -----------------------
@pytest.fixture
def environ() -> Iterator[None]:
    """The commands put the file's variables in their process's environment (Google's
    clients read the emulators' addresses there); each test gets its own back."""
    kept = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(kept)


@pytest.fixture
def stack(firestore_client: Any, environ: None) -> Iterator[LocalStack]:
    """The local stack on the Firestore emulator, with the demo tenant, as `make dev`
    runs it (its functions in this process, its cycles left queued)."""
    local = LocalStack(FirestoreBackend(firestore_client), InlineQueue(), graph_flush=0)
    local.create_demo_tenant()
    yield local
    local.close()


@pytest.fixture
def config(stack: LocalStack, firestore_emulator: Emulator, tmp_path: Path) -> Iterator[Path]:
    """The stack's configuration file, written as `make dev` writes it."""
    env = operator_config.stack_environment(stack, firestore_emulator)
    with operator_config.written(env, tmp_path) as path:
        yield path


def test_AUTH1_first_hour_the_file_make_dev_writes_gives_links_its_stack_accepts(
    stack: LocalStack,
    config: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file is private and current.env names it; `onboarding-link --config` prints
    a link whose page is the connect page of the running stack (same secret, same
    store); CRMSYNC_CONFIG names the file as well; `tenant` and `admin-consent-link`
    act on the stack too; a file others may read is acted on, with a warning."""
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert (config.parent / "current.env").resolve() == config.resolve()

    linked = ["onboarding-link", "--config", str(config), "--tenant", "demo", "--user", "u3"]
    assert main(linked) == 0
    page = requests.get(capsys.readouterr().out.strip(), timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Connect your account to the CRM" in page.text
    assert "Google" in page.text and "Microsoft 365" in page.text
    assert service.crm_user_of(stack.services.backend.store("demo"), "u3") == "u3"

    monkeypatch.setenv("CRMSYNC_CONFIG", str(config.parent / "current.env"))
    monkeypatch.setenv("CRMSYNC_NEW_CRM_TOKEN", "acme-crm-token")
    monkeypatch.setenv("CRMSYNC_NEW_EVENT_SECRET", "acme-event-secret")
    assert main(["admin-consent-link", "--tenant", "demo"]) == 0
    consent = requests.get(capsys.readouterr().out.strip(), allow_redirects=False, timeout=10)
    assert consent.status_code == 302
    assert consent.headers["Location"].startswith(stack.microsoft_url)
    registered = ["tenant", "--id", "acme", "--name", "ACME", "--crm-base-url", stack.crm_url]
    assert main(registered) == 0
    admin = capsys.readouterr().out.rsplit(" ", 1)[1].strip()
    assert service.admin_tenant(stack.services, f"Bearer {admin}") == "acme"

    config.chmod(0o640)
    assert main(["onboarding-link", "--tenant", "acme", "--user", "u1"]) == 0
    [warning] = capsys.readouterr().err.splitlines()
    assert "others may read it" in warning and "chmod 600" in warning


def test_first_hour_make_devs_file_goes_when_its_stack_stops_and_two_stacks_keep_apart(
    tmp_path: Path,
) -> None:
    first = {"CRMSYNC_PUBLIC_URL": "http://127.0.0.1:8001", "CRMSYNC_SECRET": "one"}
    second = {"CRMSYNC_PUBLIC_URL": "http://127.0.0.1:8002", "CRMSYNC_SECRET": "two"}
    current = tmp_path / "current.env"
    with operator_config.written(first, tmp_path) as one:
        with operator_config.written(second, tmp_path) as two:
            assert one != two and envfile.read(current)["CRMSYNC_SECRET"] == "two"
        assert envfile.read(one)["CRMSYNC_SECRET"] == "one" and not two.exists()
        # the newer stack stopped: current.env names the one still running
        assert envfile.read(current)["CRMSYNC_SECRET"] == "one"
    assert list(tmp_path.iterdir()) == []


def firestore_documents(client: Any) -> dict[str, Any]:
    """Every document in the emulator's database, by path."""
    found: dict[str, Any] = {}

    def walk(collections: Any) -> None:
        for collection in collections:
            for reference in collection.list_documents():
                snapshot = reference.get()
                if snapshot.exists:
                    found[reference.path] = snapshot.to_dict()
                walk(reference.collections())

    walk(client.collections())
    return found


def test_AUTH1_AUTH5_a_refused_command_leaves_the_store_as_it_was(
    stack: LocalStack,
    config: Path,
    firestore_client: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every check comes before the first write: an unknown tenant, a CRM user id the
    contract does not allow, mapping a connected user to another CRM user, a consent
    link for a provider the tenant does not allow, a tenant whose CRM has no address.
    A link for a user already mapped writes only when it was made (AUTH-1)."""
    assert stack.connect("u1").status_code == 200
    service.create_tenant(
        stack.services,
        "lean",
        name="Lean",
        crm_base_url=stack.crm_url,
        crm_token="t",
        event_secret="s",
        allowed_providers=["google"],
    )
    monkeypatch.setenv("CRMSYNC_CONFIG", str(config))
    monkeypatch.setenv("CRMSYNC_NEW_CRM_TOKEN", "token")
    monkeypatch.setenv("CRMSYNC_NEW_EVENT_SECRET", "secret")
    before = firestore_documents(firestore_client)
    link = ["onboarding-link", "--tenant", "demo", "--user"]
    refused = {
        "no such tenant: nobody": ["onboarding-link", "--tenant", "nobody", "--user", "u3"],
        "CRM user ids": [*link, "u3", "--crm-user", "a b"],
        "u9 is not an active user of the tenant's CRM": [*link, "u9"],
        "is connected as CRM user u1": [*link, "u1", "--crm-user", "u2"],
        "does not let its users connect Microsoft 365": ["admin-consent-link", "--tenant", "lean"],
        "not an http(s) address": [
            *("tenant", "--id", "demo", "--name", "Demo", "--crm-base-url", "crm.example"),
        ],
    }

    for reason, command in refused.items():
        assert main(command) == 2, command
        said = capsys.readouterr().err
        assert said.startswith("refused: ") and reason in said and said.count("\n") == 1
    assert firestore_documents(firestore_client) == before
    assert main([*link, "u1"]) == 0

    after = firestore_documents(firestore_client)
    user = "tenants/demo/users/u1"
    assert after[user].pop("link_made") > before[user].pop("link_made")
    assert after == before


@pytest.mark.parametrize(
    "missing, purpose",
    [
        ("CRMSYNC_SECRET", "signs onboarding links"),
        ("CRMSYNC_LOCAL_KEK", "token vault's key"),
        ("CRMSYNC_TASKS_QUEUE", "enqueue sync cycles"),
        ("CRMSYNC_PUBLIC_URL", "where the functions answer"),
        ("GOOGLE_CLOUD_PROJECT", "Firestore holds the tenants"),
    ],
)
def test_first_hour_a_file_without_a_variable_names_it_and_what_it_is_for(
    missing: str,
    purpose: str,
    firestore_emulator: Emulator,
    tmp_path: Path,
    environ: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    values = {
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.host,
        "GOOGLE_CLOUD_PROJECT": firestore_emulator.project,
        "CRMSYNC_TASKS_QUEUE": "projects/p/locations/l/queues/q",
        "CRMSYNC_WORKER_URL": "http://127.0.0.1:1/sync_worker",
        "CRMSYNC_SECRET": "s" * 32,
        "CRMSYNC_LOCAL_KEK": base64.b64encode(b"k" * 32).decode(),
        "CRMSYNC_PUBLIC_URL": "http://127.0.0.1:1",
    }
    del values[missing]
    os.environ.pop(missing, None)
    path = tmp_path / "stack.env"
    envfile.write(path, values)

    code = main(["onboarding-link", "--config", str(path), "--tenant", "demo", "--user", "u3"])

    [said] = capsys.readouterr().err.splitlines()
    assert code == 2 and missing in said and purpose in said
    assert f"add it to {path}" in said


def test_first_hour_a_command_given_no_deployment_at_all_says_how_to_name_one(
    environ: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("CRMSYNC_CONFIG", *NAMING):
        os.environ.pop(name, None)

    assert main(["onboarding-link", "--tenant", "demo", "--user", "u3"]) == 2

    [said] = capsys.readouterr().err.splitlines()
    assert "--config PATH" in said and "make dev writes build/dev/current.env" in said


def test_first_hour_a_file_naming_an_emulator_that_is_gone_is_said_at_once(
    tmp_path: Path, environ: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Google's client would retry for a minute; the command says so within seconds."""
    gone = f"127.0.0.1:{free_port()}"
    os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
    path = tmp_path / "stack.env"
    envfile.write(path, {"FIRESTORE_EMULATOR_HOST": gone, "GOOGLE_CLOUD_PROJECT": "p"})

    started = time.monotonic()
    code = main(["onboarding-link", "--config", str(path), "--tenant", "demo", "--user", "u3"])

    [said] = capsys.readouterr().err.splitlines()
    assert code == 2 and time.monotonic() - started < 5
    assert f"nothing answers at FIRESTORE_EMULATOR_HOST {gone}" in said
    assert f"is the stack that wrote {path} still running?" in said


@pytest.mark.parametrize(
    "content, said",
    [
        (None, "cannot read the configuration file"),  # no such file
        ("dir", "cannot read the configuration file"),  # not a file
        ("CRMSYNC_SECRET=s\nthis is no assignment\n", "line 2 of the configuration file"),
        ("\udcff", "is not UTF-8 text"),
    ],
)
def test_first_hour_a_configuration_file_that_cannot_be_read_is_said_in_one_line(
    content: str | None,
    said: str,
    tmp_path: Path,
    environ: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "stack.env"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content.encode("utf-8", "surrogateescape"))

    code = main(["admin-consent-link", "--config", str(path), "--tenant", "demo"])

    [line] = capsys.readouterr().err.splitlines()
    assert code == 2 and said in line and str(path) in line
