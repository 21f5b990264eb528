"""The settings page's pickers (SET-1) list what the user's account holds, read through
each provider's kit from the Google and Microsoft sandboxes; an account that cannot be
reached leaves the current value as the one choice, and says so."""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.testing import SyncWorld
from crmsync.usecases.preferences import form
from sandbox.google.calendar import add_calendar as add_google_calendar
from sandbox.google.people import add_group
from sandbox.google.tasks import add_tasklist
from sandbox.microsoft.events import add_calendar as add_outlook_calendar
from sandbox.microsoft.todo import add_list

pytestmark = pytest.mark.integration

PICKERS = ("calendar", "task_list", "contact_label")


def pickers(world: SyncWorld) -> dict[str, dict[str, Any]]:
    page = form(world.services, "t1", world.connection.id)
    shown = {f["name"]: f for section in page["sections"] for f in section["fields"]}
    return {name: shown[name] for name in PICKERS}


def offered(found: dict[str, dict[str, Any]]) -> dict[str, list[tuple[Any, str]]]:
    return {name: [(c["value"], c["label"]) for c in f["choices"]] for name, f in found.items()}


def test_SET1_google_pickers_list_the_accounts_calendars_task_lists_and_labels() -> None:
    world = SyncWorld("google", provider_backend="google-sandbox")
    try:
        handle: Any = world.provider  # the sandbox's own handle
        sandbox, email = handle.sandbox, handle.email
        add_google_calendar(sandbox, email, "team@group.calendar.google.com", "Team")
        sales = add_tasklist(sandbox, email, "Sales")
        add_group(sandbox, email, "Golf club")

        found = pickers(world)
        world.close()
        unreachable = pickers(world)
    finally:
        world.close()

    assert offered(found) == {
        "calendar": [("primary", email), ("team@group.calendar.google.com", "Team")],
        "task_list": [("default", "My Tasks"), (sales, "Sales")],
        "contact_label": [("CRM", "CRM"), ("Golf club", "Golf club")],  # CRM: made later
    }
    assert all(f["picker"]["available"] for f in found.values())
    assert offered(unreachable)["calendar"] == [("primary", "primary")]
    assert "could not be reached" in unreachable["calendar"]["picker"]["reason"]


def test_SET1_microsoft_pickers_list_the_mailboxs_calendars_lists_and_categories() -> None:
    world = SyncWorld("microsoft", provider_backend="graph-sandbox")
    try:
        handle: Any = world.provider  # the sandbox's own handle
        sandbox, email = handle.sandbox, handle.email
        add_outlook_calendar(sandbox, email, "Team")
        add_list(sandbox, email, "Sales")
        add_list(sandbox, email, "Flagged email", wellknown="flaggedEmails")
        for first, label in (("Ada", "Key accounts"), ("Bob", "CRM")):
            world.settings(contact_label=label)
            contact = world.provider.create(
                "contact", {"first_name": first, "emails": [f"{first}@example.com"]}
            )
            world.provider.label(contact)

        found = pickers(world)
    finally:
        world.close()

    shown = offered(found)
    assert shown["calendar"][0] == ("primary", "Calendar")
    assert [label for _, label in shown["calendar"]] == ["Calendar", "Team"]
    assert shown["task_list"] == [("default", "Tasks"), ("Sales", "Sales")]
    assert shown["contact_label"] == [("CRM", "CRM"), ("Key accounts", "Key accounts")]
    assert all(f["picker"]["available"] for f in found.values())
