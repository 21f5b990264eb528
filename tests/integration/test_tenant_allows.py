"""What a tenant allows its users to connect (SET-2), enforced: the connect page offers
exactly the providers and services the tenant allows, a request for anything else is
refused, and a connection authorised for mail only runs no contacts, calendar or tasks
cycle. Through the functions on a real socket."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from crmsync import service
from sandbox.crm.seed import DEMO_TENANT, DEMO_TOKEN
from sandbox.local.stack import EVENT_SECRET, LocalStack
from tests.integration.test_functions import drain, page_text, queue, stack, store

pytestmark = pytest.mark.integration

__all__ = ["stack"]  # fixtures


def tenant(stack: LocalStack, **allowed: Any) -> str:
    service.create_tenant(
        stack.services,
        DEMO_TENANT,
        name="Demo Inc.",
        crm_base_url=stack.crm_url,
        crm_token=DEMO_TOKEN,
        event_secret=EVENT_SECRET,
        **allowed,
    )
    return service.onboarding_link(stack.services, DEMO_TENANT, "u1")


def test_SET2_the_connect_page_offers_only_what_the_tenant_allows(stack: LocalStack) -> None:
    link = tenant(stack, allowed_services=["sync"])

    shown = page_text(requests.get(link, timeout=10))
    mail = requests.get(link + "&provider=google&services=mail", allow_redirects=False, timeout=10)

    assert "Contacts, calendar and tasks" in shown and "e-mails" not in shown
    assert mail.status_code == 403 and "does not use crmsync for that" in page_text(mail)
    assert store(stack).connection_record("google-u1") is None  # type: ignore[attr-defined]


def test_SET2_a_provider_the_tenant_does_not_allow_is_not_offered(stack: LocalStack) -> None:
    link = tenant(stack, allowed_providers=["microsoft"])

    shown = page_text(requests.get(link, timeout=10))
    google = requests.get(
        link + "&provider=google&services=sync", allow_redirects=False, timeout=10
    )

    assert "Connect Google" not in shown and "Connect Microsoft 365" in shown
    assert google.status_code == 400


def test_SET2_what_a_tenant_allows_must_be_known(stack: LocalStack) -> None:
    for allowed in ({"allowed_services": ["fax"]}, {"allowed_providers": ["nothing"]}):
        with pytest.raises(service.Refused) as refused:
            tenant(stack, **allowed)
        assert refused.value.status == 400


def test_SET2_a_mail_only_connection_runs_no_sync_cycle(stack: LocalStack) -> None:
    tenant(stack)
    answer = stack.connect("u1", services="mail")
    assert answer.status_code == 200, answer.text
    record = store(stack).connection_record("google-u1")  # type: ignore[attr-defined]
    assert record["services"] == ["mail"] and record["next_due"] is None  # never polled
    google_before = stack.google_contact_names()

    runs = drain(stack)

    # the first mail pass (EML-1) ran; the sync cycle connecting asks for was skipped
    assert sorted(r["status"] for r in runs) == ["ok", "skipped"]
    assert stack.google_contact_names() == google_before == []  # nothing was synced
    recorded = store(stack).runs("google-u1")  # type: ignore[attr-defined]
    assert [r["trigger"] for r in recorded] == ["mail"]
    assert service.fanout(stack.services).enqueued == 0
    assert not queue(stack).waiting
