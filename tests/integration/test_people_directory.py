"""A tenant admin's people against the reference CRM over a real socket, with users who
connect through crmsync's own Google onboarding at the Google sandbox (AUTH-1, AUTH-5,
AUTH-6): the CRM's directory beside crmsync's users, links for many users from one
read of that directory, and the seats a new connection is refused by."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from crmsync import service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.crm.rest import RestCrmConnector
from crmsync.ports import CrmUser
from crmsync.queue.inline import InlineQueue
from crmsync.recordlog import Faults
from crmsync.settings import PROVIDER_DEFAULTS
from crmsync.store.memory import MemoryBackend
from crmsync.testing.google import GoogleSandboxSide
from crmsync.usecases import people
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.server import serve
from tests.integration.test_google_sandbox_oauth import consent, query

pytestmark = pytest.mark.integration

TENANT, CRM_TOKEN = "acme", "acme-crm-token"
DANA, MAX = "dana@acme.example", "max@acme.example"


@dataclass
class Admin:
    services: service.Services
    crm: ReferenceCrm
    crm_url: str
    requests: list[tuple[str, str, str | None]]  # what the CRM was asked, for whom

    def directory_reads(self) -> int:
        return sum(
            1 for method, path, _ in self.requests if (method, path[-6:]) == ("GET", "/users")
        )


def counted(requests: list[tuple[str, str, str | None]]) -> Callable[[Any], Any]:
    """WSGI middleware that notes every request the CRM answers: method, path and the
    CRM user it acts for."""

    def wrap(app: Any) -> Any:
        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            acting = environ.get("HTTP_X_CRM_USER")
            requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], acting))
            return app(environ, start_response)

        return counting

    return wrap


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http to the local sandbox
    crm = ReferenceCrm(CrmDatabase(":memory:"))
    crm.add_tenant(TENANT, CRM_TOKEN)
    crm.add_user(TENANT, "u1", name="Dana Scully", email="Dana@Acme.example")
    crm.add_user(TENANT, "u2", name="Max Planck", email=MAX)
    crm.add_user(TENANT, "u3", name="Ines Reis", email="ines@acme.example")
    crm.add_user(TENANT, "u4", name="Gone Away", email="gone@acme.example", active=False)
    seen: list[tuple[str, str, str | None]] = []
    url, stop = serve(crm, wrap=counted(seen))
    google = GoogleSandboxSide(lambda: datetime.now(UTC), Faults(), PROVIDER_DEFAULTS["google"])
    setup = google.setup()
    google.sandbox.add_client(
        setup.oauth.client_id, setup.oauth.client_secret, [setup.oauth.redirect_uri]
    )
    services = service.Services(
        backend=MemoryBackend(),
        queue=InlineQueue(),
        vault=TokenVault(LocalKek(os.urandom(32))),
        secret=os.urandom(32),
        public_url="http://crmsync.invalid/",
        providers={"google": setup},
    )
    service.create_tenant(
        services,
        TENANT,
        name="Acme",
        crm_base_url=url,
        crm_token=CRM_TOKEN,
        event_secret="acme-events",
        seats=1,
        allowed_providers=["google", "microsoft"],  # Microsoft is not set up here
    )
    yield Admin(services, crm, url, seen)
    google.close()
    stop()


def connect(admin: Admin, url: str, email: str) -> None:
    """The user opens their onboarding link, chooses Google sync and consents as `email`."""
    link = parse_qs(urlsplit(url).query)["link"][0]
    where = service.start_oauth(admin.services, link, "google", ("sync",))
    back = query(consent(where, email=email))
    service.finish_oauth(admin.services, back["state"], back["code"])


def by_crm_user(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["crm_user"]: row for row in rows}


def test_AUTH1_the_directory_shows_who_was_sent_a_link_and_who_connected_since(
    admin: Admin,
) -> None:
    [dana, max_] = people.onboard(admin.services, TENANT, ["u1", "u2"])
    connect(admin, dana["link"], DANA)
    reads = admin.directory_reads()

    rows = people.directory(admin.services, TENANT)

    assert admin.directory_reads() == reads + 1
    assert [row["crm_user"] for row in rows] == ["u1", "u2", "u3"]  # u4 is not active
    found = by_crm_user(rows)
    assert (found["u1"]["name"], found["u1"]["email"]) == ("Dana Scully", DANA)
    assert found["u1"]["user"] == "u1" and found["u1"]["connected_since_link"] is True
    [google] = found["u1"]["providers"]
    assert (google["label"], google["account"], google["sync"], google["mail"]) == (
        "Google",
        DANA,
        "active",
        "none",
    )
    assert found["u2"]["link_made"] is not None and found["u2"]["connected_since_link"] is False
    assert found["u2"]["providers"][0]["sync"] == "none"
    assert max_["error"] is None
    assert (found["u3"]["user"], found["u3"]["link_made"]) == (None, None)  # never onboarded
    assert found["u3"]["connected_since_link"] is None


def test_AUTH1_a_user_sent_a_new_link_has_connected_since_only_once_they_consent_again(
    admin: Admin,
) -> None:
    [first] = people.onboard(admin.services, TENANT, ["u1"])
    connect(admin, first["link"], DANA)
    [renewed] = people.onboard(admin.services, TENANT, ["u1"])  # e.g. to sign in again

    waiting = by_crm_user(people.directory(admin.services, TENANT))["u1"]
    connect(admin, renewed["link"], DANA)
    again = by_crm_user(people.directory(admin.services, TENANT))["u1"]

    assert waiting["connected_since_link"] is False
    assert again["connected_since_link"] is True
    assert again["link_made"] == waiting["link_made"]


def test_AUTH1_a_user_mapped_to_a_crm_user_the_crm_no_longer_lists_is_shown_apart(
    admin: Admin,
) -> None:
    people.onboard_csv(admin.services, TENANT, "user,crm_user\nines,u3\n")
    admin.crm.add_user(TENANT, "u3", name="Ines Reis", email="ines@acme.example", active=False)

    found = by_crm_user(people.directory(admin.services, TENANT))

    assert found["u3"]["user"] == "ines"
    assert (found["u3"]["in_crm"], found["u3"]["name"]) == (False, "")
    assert found["u1"]["in_crm"] is True and found["u1"]["user"] is None


def test_AUTH1_links_for_many_users_read_the_crm_directory_once_and_skip_a_bad_row(
    admin: Admin,
) -> None:
    before = admin.services.backend.store(TENANT).user_records()

    made = people.onboard_csv(
        admin.services,
        TENANT,
        "user,crm_user,email\ndana,u1,\nnobody,u9,nobody@acme.example\nmax,u2,\nines,u3,\n",
    )

    assert admin.directory_reads() == 1
    assert [(row["user"], row["link"] is not None) for row in made] == [
        ("dana", True),
        ("nobody", False),
        ("max", True),
        ("ines", True),
    ]
    assert made[1]["error"] == "line 3: u9 is not an active user of the tenant's CRM"
    assert [row["email"] for row in made] == [DANA, "nobody@acme.example", MAX, "ines@acme.example"]
    users = admin.services.backend.store(TENANT).user_records()
    assert before == {} and sorted(users) == ["dana", "ines", "max"]
    assert {user: record["crm_user"] for user, record in users.items()} == {
        "dana": "u1",
        "ines": "u3",
        "max": "u2",
    }


def test_AUTH6_the_dashboard_counts_the_seats_a_new_connection_is_refused_by(
    admin: Admin,
) -> None:
    [dana, max_] = people.onboard(admin.services, TENANT, ["u1", "u2"])
    connect(admin, dana["link"], DANA)

    overview = people.dashboard(admin.services, TENANT)

    assert overview["seats"] == {"used": 1, "allowed": 1}
    with pytest.raises(service.Refused) as refused:
        connect(admin, max_["link"], MAX)
    assert refused.value.status == 403 and "seats" in refused.value.reason
    [row] = people.dashboard(admin.services, TENANT)["rows"]
    assert (row["user"], row["crm_user"], row["label"], row["health"]) == (
        "u1",
        "u1",
        "Google",
        "ok",
    )


def test_AUTH1_a_crm_that_refuses_crmsyncs_token_refuses_the_directory_in_plain_words(
    admin: Admin,
) -> None:
    service.create_tenant(
        admin.services,
        TENANT,
        name="Acme",
        crm_base_url=admin.crm_url,
        crm_token="a token the CRM never issued",
        event_secret="acme-events",
    )

    with pytest.raises(service.Refused) as refused:
        people.directory(admin.services, TENANT)

    assert refused.value.status == 503
    assert refused.value.reason == (
        "the tenant's CRM refused crmsync's API token, so its users cannot be listed"
    )


def test_AUTH5_the_crm_directory_lists_active_users_with_names_and_addresses(
    admin: Admin,
) -> None:
    crm = RestCrmConnector(admin.crm_url, CRM_TOKEN, "", attempts=1)

    assert crm.directory() == [
        CrmUser("u1", "Dana Scully", DANA),
        CrmUser("u2", "Max Planck", MAX),
        CrmUser("u3", "Ines Reis", "ines@acme.example"),
    ]
    assert admin.requests == [("GET", "/api/crmsync/v1/users", None)]  # acting for no one
