"""The CRM beside the open message (CTX-1): what the mail client's pane shows and does,
whichever mail client it is in. A provider's kit turns its client's requests into these
calls and the answers into its client's cards or pages.

* `viewer`: the connection of the account the client says is signed in (the account
  directory, by the account's stable id); the states a pane cannot show records for
  (not connected, consent to renew, turned off) are `Blocked`, with what to do.
* `message_pane`: for each participant of the message but the user, the CRM's person
  holding that address (the one with the most history) and its card: account, open
  opportunities, latest history, filled custom fields. The CRM is asked for all of them
  at once and waited for `DEADLINE` at most: participants it has not answered for by
  then are `late`, so the client's own time limit is never reached.
* `file_message`: file the open message to the chosen records through e-mail
  recording (EML-5: a filing, recorded once per Message-ID, attachments included).
* `create_person`: a contact or lead made from a participant the CRM does not know,
  once per message and address.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from crmsync import model, service
from crmsync.crm.cards import PersonCard
from crmsync.engine.plan import Write
from crmsync.errors import CrmUnauthorized, NotFound, PermanentError, TransientError
from crmsync.ports import ConnectionRecord, ConnectionState, Person

log = logging.getLogger("crmsync.pane")

DEADLINE = 8.0  # seconds the CRM is waited for; a mail client gives up after about 30
MOST_PEOPLE = 10  # participants shown beside one message
RECENT = 3  # history items shown of each person
FOUND = 10  # people a search in the pane lists


@dataclass(frozen=True)
class Viewer:
    """Who opened the pane: their tenant and connection."""

    tenant: str
    record: ConnectionRecord

    @property
    def files_mail(self) -> bool:
        return self.record.records_mail


@dataclass(frozen=True)
class Blocked:
    """Why the pane shows no records, and what the user does about it (`link`: where)."""

    reason: str
    next_step: str
    link: str = ""
    label: str = ""


@dataclass(frozen=True)
class Beside:
    """One participant: their address and name as the message has them, and the CRM's
    person holding the address (None: nobody the user may see), with `more` others."""

    address: str
    name: str
    card: PersonCard | None = None
    more: int = 0


@dataclass(frozen=True)
class Pane:
    people: tuple[Beside, ...]
    late: tuple[str, ...] = ()  # addresses the CRM did not answer for in time
    failed: bool = False  # the CRM refused or could not be reached
    left_out: int = 0  # participants beyond MOST_PEOPLE
    notes: tuple[str, ...] = field(default_factory=tuple)


def sign_in_url(services: service.Services, tenant: str) -> str:
    """The user's crmsync page (the web app, signed in with their provider account)."""
    return f"{services.public_url.rstrip('/')}/app/sign-in?tenant={tenant}"


def viewer(services: service.Services, provider: str, subject: str) -> Viewer | Blocked:
    """The live connection bound to the provider account `subject`; Blocked when the
    account is connected nowhere, or its connection cannot be used now."""
    routes = services.backend.store("").account_connections(provider, subject)
    found: list[tuple[str, ConnectionRecord]] = []
    for tenant, connection in routes:
        record = service.connection_of(services.backend.store(tenant), connection)
        if record is not None and record.live and record.subject == subject:
            found.append((tenant, record))
    label = services.kit(provider).label
    if not found:
        return Blocked(
            f"This {label} account is not connected to crmsync",
            "Open the onboarding link your company's admin sent you and connect this "
            "account; then open this message again.",
        )
    tenant, record = next(((t, r) for t, r in found if r.active), found[0])
    link = sign_in_url(services, tenant)
    if record.status == ConnectionState.NEEDS_REAUTH:
        return Blocked(
            f"crmsync needs you to sign in to {label} again",
            "Open your crmsync page and reconnect; nothing was lost meanwhile.",
            link,
            "Open crmsync",
        )
    if not record.active:
        return Blocked(
            "crmsync is turned off for you",
            "Ask your company's crmsync admin to turn it on again.",
            link,
            "Open crmsync",
        )
    return Viewer(tenant, record)


def _crm(services: service.Services, who: Viewer) -> Any:
    tenant_record = services.backend.store(who.tenant).tenant_record() or {}
    settings = service.settings_for(services, who.tenant, who.record)
    return service.crm_for(services, who.tenant, tenant_record, who.record, settings, brief=True)


def message_pane(
    services: service.Services,
    who: Viewer,
    participants: Sequence[tuple[str, str]],
    deadline: float | None = None,
) -> Pane:
    """The CRM's people behind the message's participants ((name, address) pairs; the
    user's own address and repeats left out), each with its card; the CRM is waited for
    `deadline` seconds (DEADLINE) at most."""
    own = model.normalize_email(who.record.account) if who.record.account else ""
    shown: dict[str, str] = {}
    for name, address in participants:
        address = model.normalize_email(address) if "@" in address else ""
        if address and address != own and address not in shown:
            shown[address] = name
    addresses = list(shown)[:MOST_PEOPLE]
    left_out = max(0, len(shown) - MOST_PEOPLE)
    if not addresses:
        return Pane((), left_out=left_out)
    crm = _crm(services, who)
    pool = ThreadPoolExecutor(max_workers=min(len(addresses), 5))
    try:
        futures = {a: pool.submit(_beside, crm, a, shown[a]) for a in addresses}
        wait(futures.values(), timeout=DEADLINE if deadline is None else deadline)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    people: list[Beside] = []
    late: list[str] = []
    failed = False
    for address, future in futures.items():
        if not future.done():
            late.append(address)
            continue
        error = future.exception()
        if error is None:
            people.append(future.result())
            continue
        if not isinstance(error, TransientError | PermanentError | CrmUnauthorized):
            raise error
        log.warning(
            "crm not answered for the pane",
            extra={"tenant": who.tenant, "error": type(error).__name__},
        )
        failed = True
        people.append(Beside(address, shown[address]))
    return Pane(tuple(people), tuple(late), failed, left_out)


def _beside(crm: Any, address: str, name: str) -> Beside:
    found: list[Person] = crm.people(address)
    if not found:
        return Beside(address, name)
    try:
        card = crm.person_card(found[0], RECENT)
    except NotFound:  # deleted since it was found: shown as unknown
        return Beside(address, name, None, len(found) - 1)
    return Beside(address, name, card, len(found) - 1)


def search(services: service.Services, who: Viewer, text: str) -> list[Person]:
    """The contacts and leads whose name or address holds `text` (2 characters at
    least), for the user to file a message to."""
    text = text.strip()[:100]
    if len(text) < 2:
        return []
    found: list[Person] = _crm(services, who).search_people(text, FOUND)
    return found


def file_message(
    services: service.Services,
    who: Viewer,
    message: str,
    records: Sequence[str],
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """EML-5 from the pane: file the open message to `records` ("contact/<id>" or
    "lead/<id>"); it is recorded by the next mail pass, once per Message-ID."""
    from crmsync.usecases import mail

    return mail.file(services, who.tenant, who.record.id, [message], list(records), names)


def create_person(
    services: service.Services, who: Viewer, kind: str, address: str, name: str, message: str
) -> str:
    """A contact (or lead) for a participant the CRM does not know, named and addressed
    as the message has them; made once per message and address (a second click, or
    the client's resend, finds the first). Returns its id."""
    if kind not in ("contact", "lead"):
        raise service.Refused(400, f"{kind!r} is neither a contact nor a lead")
    address = model.normalize_email(address) if "@" in address else ""
    if not address:
        raise service.Refused(400, "the participant has no address to keep")
    first, _, last = name.strip().partition(" ")
    fields = model.normalize(
        "contact",
        {"first_name": first[:100], "last_name": last[:100], "emails": [address]},
    )
    key = hashlib.sha256(f"pane\0{who.record.id}\0{message}\0{address}".encode()).hexdigest()
    write = Write("crm", "create", "contact", fields=fields, key=key, as_lead=kind == "lead")
    result = _crm(services, who).create(write)
    log.info("person made from the pane", extra={"tenant": who.tenant, "kind": kind})
    return str(result.id)
