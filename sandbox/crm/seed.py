"""A demo tenant for the reference CRM: a sales rep and a manager with a few weeks of work,
and a colleague who is yet to connect.

Dates are placed around the CRM clock's today, so the demo always shows upcoming
meetings. Seeding a tenant that exists only adds the token.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sandbox.crm.database import Attachment

if TYPE_CHECKING:  # the CRM's root page names the demo tenant: app imports this module
    from sandbox.crm.app import ReferenceCrm

DEMO_TENANT = "demo"
DEMO_TOKEN = "demo-token"
BERLIN = ZoneInfo("Europe/Berlin")


def _next(today: date, weekday: int) -> date:
    """The next given weekday after today (Monday is 0)."""
    return today + timedelta(days=(weekday - today.weekday()) % 7 or 7)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), BERLIN)


def seed_demo(crm: ReferenceCrm, tenant: str = DEMO_TENANT, token: str = DEMO_TOKEN) -> str:
    """Add the demo tenant; returns its token."""
    if crm.database.has_tenant(tenant):
        crm.add_token(tenant, token)
        return token
    with crm.database.transaction():
        crm.add_tenant(tenant, token)
        _users(crm, tenant)
        contacts = _contacts(crm, tenant)
        today = crm.database.now().astimezone(BERLIN).date()
        _activities(crm, tenant, today, contacts)
        _todos(crm, tenant, today)
        _leads(crm, tenant, today, contacts)
        _documents(crm, tenant)
    return token


def _documents(crm: ReferenceCrm, tenant: str) -> None:
    """What a rep attaches to a message while writing it (CTX-1): two shared documents
    and one of Max's own."""
    crm.add_document(
        tenant, "Acme renewal proposal 2027.txt", PROPOSAL, "text/plain; charset=utf-8"
    )
    crm.add_document(tenant, "Price list 2027.csv", PRICES, "text/csv")
    crm.add_document(tenant, "Max's forecast notes.txt", b"Q1: steady.\n", "text/plain", "u2")


PROPOSAL = (
    b"Renewal proposal for Acme GmbH, 2027\n\n"
    b"Licences: 120 seats at 400 EUR a year. Support: premium, 24/7.\n"
)
PRICES = b"product,price_eur\nseat,400\npremium support,9000\n"


def _users(crm: ReferenceCrm, tenant: str) -> None:
    crm.add_user(
        tenant,
        "u1",
        name="Dana Rep",
        email="dana.rep@demo.example",
        timezone="Europe/Berlin",
        rep_code="DR-01",
    )
    crm.add_user(
        tenant, "u2", name="Max Manager", email="max.manager@demo.example", timezone="Europe/Berlin"
    )
    # Owns nothing and connects nothing at start: the user a newcomer onboards.
    crm.add_user(
        tenant, "u3", name="Sam Support", email="sam.support@demo.example", timezone="Europe/Berlin"
    )


def _contacts(crm: ReferenceCrm, tenant: str) -> dict[str, str]:
    """Contacts at three accounts; Ada uses Acme's address; u1 syncs two of them."""
    acme = crm.create_account(
        tenant,
        "Acme GmbH",
        {
            "street": "Friedrichstraße 100",
            "city": "Berlin",
            "postal_code": "10117",
            "country": "DE",
        },
    )
    globex = crm.create_account(
        tenant, "Globex Ltd", {"street": "1 King Street", "city": "London", "country": "GB"}
    )
    initech = crm.create_account(tenant, "Initech")
    ada = crm.create(
        tenant,
        "contact",
        {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Acme GmbH",
            "title": "Head of Engineering",
            "emails": ["ada@acme.example"],
            "phones": [{"kind": "work", "number": "+49 30 1234567"}],
        },
        "u1",
    )
    grace = crm.create(
        tenant,
        "contact",
        {
            "first_name": "Grace",
            "last_name": "Hopper",
            "company": "Globex Ltd",
            "emails": ["grace@globex.example"],
            "phones": [{"kind": "mobile", "number": "+44 7700 900123"}],
        },
        "u1",
    )
    alan = crm.create(
        tenant,
        "contact",
        {"first_name": "Alan", "last_name": "Turing", "emails": ["alan@initech.example"]},
        "u2",
    )
    crm.attach_to_account(tenant, ada, acme, share_address=True)
    crm.attach_to_account(tenant, grace, globex)
    crm.attach_to_account(tenant, alan, initech)
    # what the mail client's pane shows beside a message from Ada or Grace (CTX-1)
    crm.add_opportunity(tenant, acme, "Acme renewal 2027", "Proposal", amount="48000 EUR")
    crm.add_opportunity(tenant, acme, "Acme analytics pilot", "Negotiation", amount="9500 EUR")
    crm.add_opportunity(tenant, globex, "Globex onboarding", "Qualification")
    crm.add_to_group(tenant, "u1", ada)
    crm.add_to_group(tenant, "u1", grace)
    crm.add_to_group(tenant, "u2", alan)
    return {"ada": ada, "grace": grace, "alan": alan, "acme": acme}


def _activities(crm: ReferenceCrm, tenant: str, today: date, contacts: dict[str, str]) -> None:
    tuesday = _next(today, 1)
    crm.create(
        tenant,
        "activity",
        {
            "type": "meeting",
            "subject": "Quarterly review with Acme",
            "start": _at(tuesday, 10),
            "end": _at(tuesday, 11, 30),
            "timezone": "Europe/Berlin",
            "location": "Acme, Friedrichstraße 100",
            "members": ["u2"],
            "regarding": {"contact": contacts["ada"], "account": contacts["acme"]},
        },
        "u1",
    )
    crm.create(
        tenant,
        "activity",
        {
            "type": "call",
            "subject": "Call Grace about the renewal",
            "start": _at(today + timedelta(days=1), 15),
            "end": _at(today + timedelta(days=1), 15, 30),
            "timezone": "Europe/Berlin",
            "regarding": {"contact": contacts["grace"]},
        },
        "u1",
    )
    crm.create(
        tenant,
        "activity",
        {
            "type": "personal",
            "subject": "Dentist",
            "start": _at(today + timedelta(days=2), 8),
            "end": _at(today + timedelta(days=2), 9),
            "timezone": "Europe/Berlin",
            "private": True,
        },
        "u1",
    )
    monday = _next(today, 0)
    crm.create(
        tenant,
        "activity",
        {
            "type": "meeting",
            "subject": "Sales stand-up",
            "start": _at(monday, 9),
            "end": _at(monday, 9, 15),
            "timezone": "Europe/Berlin",
            "recurrence": "RRULE:FREQ=WEEKLY;BYDAY=MO",
            "members": ["u2"],
        },
        "u1",
    )
    fair = _next(today, 2)
    crm.create(
        tenant,
        "activity",
        {
            "type": "event",
            "subject": "Trade fair",
            "start": fair,
            "end": fair + timedelta(days=2),
            "all_day": True,
            "timezone": "Europe/Berlin",
            "location": "Messe Berlin",
        },
        "u1",
    )


def _todos(crm: ReferenceCrm, tenant: str, today: date) -> None:
    crm.create(
        tenant,
        "todo",
        {"subject": "Send Acme the proposal", "due": today + timedelta(days=3), "priority": "high"},
        "u1",
    )
    crm.create(
        tenant,
        "todo",
        {"subject": "Update the forecast", "start": today, "due": today + timedelta(days=7)},
        "u1",
    )
    crm.create(
        tenant,
        "todo",
        {"subject": "Review the pipeline", "status": "in_progress", "due": today},
        "u2",
    )


def _leads(crm: ReferenceCrm, tenant: str, today: date, contacts: dict[str, str]) -> None:
    lin = crm.create(
        tenant,
        "lead",
        {"first_name": "Lin", "last_name": "Prospect", "emails": ["lin@prospect.example"]},
        "u1",
    )
    sam = crm.create(
        tenant,
        "lead",
        {"first_name": "Sam", "last_name": "Sample", "emails": ["sam@sample.example"]},
        "u2",
    )
    yesterday = _at(today - timedelta(days=1), 16)
    mails = [
        ("lead", lin, "Your enquiry", yesterday - timedelta(days=3), []),
        (
            "lead",
            lin,
            "Re: Your enquiry",
            yesterday,
            [Attachment("brochure.txt", "text/plain", b"Our products, in short.\n")],
        ),
        ("lead", sam, "Introduction", yesterday, []),
        ("contact", contacts["ada"], "Agenda for the review", yesterday, []),
    ]
    for kind, record_id, subject, when, attachments in mails:
        crm.record_history(
            tenant,
            kind,
            record_id,
            subject=subject,
            date=when,
            body=f"{subject}\n\nBest regards,\nDana",
            participants=[{"role": "from", "email": "dana.rep@demo.example", "name": "Dana Rep"}],
            attachments=attachments,
            author="u1",
        )
