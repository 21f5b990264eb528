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
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from crmsync import model, service
from crmsync.auth import sealed
from crmsync.crm.cards import PersonCard
from crmsync.engine.plan import Write
from crmsync.errors import CrmUnauthorized, NotFound, PermanentError, TransientError
from crmsync.ports import ConnectionRecord, ConnectionState, Person

log = logging.getLogger("crmsync.pane")

DEADLINE = 8.0  # seconds the CRM is waited for; a mail client gives up after about 30
MOST_PEOPLE = 10  # participants shown beside one message
RECENT = 3  # history items shown of each person
FOUND = 10  # people a search in the pane lists
MOST_JOINABLE = 30  # colleagues the pane offers to add to a meeting


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
    failed: bool = False  # the CRM could not be asked: whether it knows them is unknown


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
    return _usable(services, tenant, record)


def _usable(services: service.Services, tenant: str, record: ConnectionRecord) -> Viewer | Blocked:
    """The viewer of a live connection, or Blocked when it cannot be used now."""
    label = services.kit(record.provider).label
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


KEY_HOURS = 8  # how long a pane key signs a mail client's pane in


def pane_key(services: service.Services, tenant: str, connection: str) -> str:
    """A key that signs a mail client's pane in as the user of `connection`, for
    KEY_HOURS: for a client whose own sign-in (its SSO) is not available, handed over by
    the web app once the user signed in there. Sealed with crmsync's secret: it cannot
    be forged or pointed at another connection; whoever holds it acts in the pane as
    that user until it ends, and it opens nothing once the connection is gone."""
    ends = services.clock() + timedelta(hours=KEY_HOURS)
    return sealed.seal(services.secret, "pane", [tenant, connection], ends)


def keyed_viewer(services: service.Services, provider: str, key: str) -> Viewer | Blocked | None:
    """The viewer a pane key signs in (as `viewer` finds one: Blocked when the
    connection cannot be used now); None when it is no key of this crmsync's, has
    ended, or names a connection of another provider."""
    try:
        tenant, connection = sealed.unseal(services.secret, "pane", key, services.clock())
    except ValueError:  # Unsealed, or sealed with other values
        return None
    record = service.connection_of(services.backend.store(str(tenant)), str(connection))
    if record is None or record.provider != provider or not record.live:
        return None
    return _usable(services, str(tenant), record)


def failure(exc: Exception, client: str) -> str:
    """What the pane says when `client` (the mail client) or the CRM failed it."""
    if isinstance(exc, TransientError):
        return f"{client} or the CRM could not be reached just now"
    if isinstance(exc, NotFound):
        return "The CRM no longer has that record"
    if isinstance(exc, PermanentError):
        return "The CRM did not take that"
    return "Something went wrong on crmsync's side"


def crm_of(services: service.Services, who: Viewer) -> Any:
    """The CRM as the viewer's CRM user, asked briefly (a person waits)."""
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
    crm = crm_of(services, who)
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
        people.append(Beside(address, shown[address], failed=True))
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
    found: list[Person] = crm_of(services, who).search_people(text, FOUND)
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


PERSON_FIELDS = ("first_name", "last_name", "company", "title")  # what the form offers


def prefilled(address: str, name: str) -> dict[str, str]:
    """A new contact's fields as the message suggests them: the display name split in
    first and last name, and the company named after the address's domain (not for the
    addresses of mail services, which name no company)."""
    first, _, last = name.strip().strip('"').partition(" ")
    domain = address.rpartition("@")[2].lower()
    label = domain.split(".")[0] if domain.count(".") >= 1 else ""
    company = "" if domain in FREE_MAIL or not label else label.replace("-", " ").title()
    return {"first_name": first, "last_name": last, "company": company, "title": ""}


# the domains of mail services, whose addresses name no company (one a line)
FREE_MAIL = frozenset(
    line.strip()
    for line in (Path(__file__).parent / "mail_services.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)


def create_person(
    services: service.Services,
    who: Viewer,
    kind: str,
    address: str,
    given: dict[str, str],
    message: str,
) -> str:
    """A contact (or lead) for a participant the CRM does not know, with the address the
    message has and the fields the user gave (`given`: PERSON_FIELDS); made once per
    message and address (a second click, or the client's resend, finds the first). A
    contact goes into the user's contact sync group, so it reaches their address book.
    Returns its id."""
    if kind not in ("contact", "lead"):
        raise service.Refused(400, f"{kind!r} is neither a contact nor a lead")
    address = model.normalize_email(address) if "@" in address else ""
    if not address:
        raise service.Refused(400, "the participant has no address to keep")
    shown = {name: str(given.get(name) or "").strip()[:100] for name in PERSON_FIELDS}
    if not (shown["first_name"] or shown["last_name"] or shown["company"]):
        raise service.Refused(400, "a new contact needs a name", "Give a first or last name.")
    fields = model.normalize("contact", {**shown, "emails": [address]})
    key = hashlib.sha256(f"pane\0{who.record.id}\0{message}\0{address}".encode()).hexdigest()
    contact = kind == "contact"  # a contact the user makes is one they sync (CON-1)
    write = Write(
        "crm", "create", "contact", fields=fields, key=key, as_lead=not contact, in_scope=contact
    )
    result = crm_of(services, who).create(write)
    log.info("person made from the pane", extra={"tenant": who.tenant, "kind": kind})
    return str(result.id)


# -- the open calendar event --------------------------------------------------------------
@dataclass(frozen=True)
class Related:
    """A record an activity may be about: its kind in `Regarding` (contact, lead,
    account, opportunity), its id and what it is called."""

    kind: str
    id: str
    name: str
    detail: str = ""


@dataclass(frozen=True)
class Meeting:
    """The CRM activity linked to the open event, as the pane shows and edits it."""

    activity: str  # its id in the CRM
    version: str
    subject: str
    leader: str  # a CRM user's name (or id)
    members: tuple[str, ...]  # CRM users' names (or ids)
    regarding: tuple[Related, ...]  # what it is about now
    custom: tuple[tuple[str, str, str], ...]  # declared custom fields: name, type, value
    joinable: tuple[tuple[str, str], ...]  # CRM users who may join it: (id, name)
    offered: tuple[Related, ...]  # records of the attendees it may be about


ABOUT = ("contact", "lead", "account", "opportunity")  # what the pane relates a meeting to


def meeting(
    services: service.Services,
    who: Viewer,
    events: Sequence[str],
    attendees: Sequence[tuple[str, str]],
    deadline: float | None = None,
) -> Meeting | Blocked:
    """The CRM activity linked to the first of `events` (the event's id, then its
    series') that has one, with the CRM users who may join it (the `attendees`, (name,
    address), who are CRM users first) and the records of the other attendees it may be
    about: their contacts or leads, accounts and open opportunities."""
    store = services.backend.store(who.tenant)
    links = [
        link
        for event in events
        if event
        for link in store.links_for(who.record.id, "activity", (), (event,))
        if link.crm_id
    ]
    if not who.record.syncs or not links:
        return Blocked(
            "This event is not in the CRM",
            "crmsync brings the events of your calendar it syncs to the CRM at its next "
            "sync; open the event again then."
            if who.record.syncs
            else "Your connection does not sync your calendar: add it on your crmsync page.",
        )
    crm = crm_of(services, who)
    record = crm.get("activity", str(links[0].crm_id))
    if record.fields is None:
        return Blocked("This event's CRM activity was deleted", "Nothing is kept in the CRM.")
    directory = {user.id: user for user in crm.directory()}
    by_address = {user.email.lower(): user for user in directory.values() if user.email}
    fields = record.fields
    members = tuple(str(m) for m in fields.get("members") or ())
    leader = str(fields.get("leader") or "")

    def named(user: str) -> str:
        found = directory.get(user)
        return (found.name or found.email or user) if found else user

    shown = message_pane(services, who, attendees, deadline)
    offered: dict[tuple[str, str], Related] = {}
    for beside in shown.people:
        if beside.card is None or beside.address in by_address:
            continue
        person = beside.card.person
        offered[(person.kind, person.id)] = Related(person.kind, person.id, person.name)
        if beside.card.account is not None:
            account = beside.card.account
            offered[("account", account.id)] = Related("account", account.id, account.name)
        for deal in beside.card.opportunities:
            offered[("opportunity", deal.id)] = Related(
                "opportunity", deal.id, deal.name, deal.detail
            )
    regarding = fields.get("regarding")
    now = tuple(
        offered.get((kind, str(value))) or Related(kind, str(value), str(value))
        for kind in ABOUT
        if (value := getattr(regarding, kind, None))
    )
    declared = crm.schema().custom.get("activity", {})
    custom = tuple(
        (name, field.type, _custom_text(fields.get(model.CUSTOM + name)))
        for name, field in declared.items()
    )
    # colleagues who may join: the guests who are CRM users first, then the directory
    guests = [u for a in dict.fromkeys(a.lower() for _, a in attendees) if (u := by_address.get(a))]
    joinable = tuple(
        (user.id, user.name or user.email)
        for user in dict.fromkeys([*guests, *directory.values()])
        if user.id not in members and user.id != leader
    )[:MOST_JOINABLE]
    return Meeting(
        activity=record.id,
        version=record.version,
        subject=str(fields.get("subject") or ""),
        leader=named(leader),
        members=tuple(named(m) for m in members),
        regarding=now,
        custom=custom,
        joinable=joinable,
        offered=tuple(r for key, r in offered.items() if r not in now),
    )


def _custom_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def save_meeting(
    services: service.Services,
    who: Viewer,
    activity: str,
    version: str,
    *,
    join: Sequence[str] = (),
    about: Sequence[str] = (),
    custom: dict[str, str] | None = None,
) -> str:
    """Write the pane's changes to the CRM activity at once, from the version the pane
    showed (Conflict when it changed meanwhile): CRM users who join it (`join`, their
    ids), what it is about (`about`, "kind/id"; one of each kind, the last given wins)
    and its custom fields (`custom`, by name; "" empties one). The cycle then syncs it
    as any CRM change: the next cycle does not undo it. Returns the new version."""
    crm = crm_of(services, who)
    record = crm.get("activity", activity)
    if record.fields is None:
        raise NotFound(f"activity {activity} is gone")
    fields: dict[str, Any] = {}
    members = list(record.fields.get("members") or ())
    added = [user for user in dict.fromkeys(join) if user and user not in members]
    if added:
        fields["members"] = tuple([*members, *added])
    if about:
        chosen: dict[str, str] = {}
        for ref in about:
            kind, _, record_id = ref.partition("/")
            if kind not in ABOUT or not record_id:
                raise service.Refused(400, f"{ref[:40]!r} is no record a meeting can be about")
            chosen[kind] = record_id
        current = record.fields.get("regarding") or model.Regarding()
        fields["regarding"] = replace(current, **chosen)
    if custom:
        declared = crm.schema().custom.get("activity", {})
        for name, text in custom.items():
            field_ = declared.get(name)
            if field_ is None:
                raise service.Refused(400, f"the CRM has no activity field {name[:40]!r}")
            value = _custom_value(field_, text)
            if value != record.fields.get(model.CUSTOM + name):  # as the form showed it: kept
                fields[model.CUSTOM + name] = value
    if not fields:
        return version
    write = Write("crm", "update", "activity", activity, fields=fields, version=version)
    result = crm.update(write)
    log.info("activity changed from the pane", extra={"tenant": who.tenant})
    return str(result.version)


def _custom_value(declared: Any, text: str) -> Any:
    """A custom field's value from what the pane's form gave; "" empties it."""
    text = text.strip()
    if not text:
        return None
    if declared.type == "number":
        try:
            return float(text) if "." in text else int(text)
        except ValueError as exc:
            raise service.Refused(400, f"{declared.name} takes a number") from exc
    if declared.type == "boolean":
        if text.lower() not in ("yes", "no", "true", "false"):
            raise service.Refused(400, f"{declared.name} takes yes or no")
        return text.lower() in ("yes", "true")
    if declared.type == "enum" and text not in declared.values:
        raise service.Refused(400, f"{declared.name} takes one of {', '.join(declared.values)}")
    return text
