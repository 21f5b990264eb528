"""A tenant's people, for its admin: the CRM's users beside crmsync's (who was sent an
onboarding link, who connected since), links for many users in one step, and the
dashboard of seats and of each connection's health (AUTH-1, AUTH-5, AUTH-6, SET-6,
HIS-1).

The CRM's user directory is read once per call, whatever the number of users; a CRM
that cannot be reached refuses the call (503) with the reason in plain words.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync import service
from crmsync.errors import CrmUnauthorized, TransientError
from crmsync.ports import ConnectionRecord, ConnectionState, CrmUser, RunOutcome, RunStatus
from crmsync.settings import SERVICES

log = logging.getLogger("crmsync.usecases.people")

MAX_BATCH = 2000  # users onboarded in one step (a file's rows below its header)
CSV_COLUMNS = ("user", "crm_user", "email")
# Exactly one per dashboard row, in the order a page lists them.
HEALTHS = ("ok", "needs_reconsent", "stale", "stuck", "failing", "disconnected", "off")
NONE = "none"  # a provider's service the user has not connected
KIND_WORDS = {"contact": "contacts", "activity": "calendar activities", "todo": "to-dos"}


# -- the directory ------------------------------------------------------------------------
def directory(services: service.Services, tenant: str) -> list[dict[str, Any]]:
    """AUTH-1: the tenant's CRM users beside crmsync's users, one row per pair: who they
    are in the CRM (`crm_user`, `name`, `email`; `in_crm` False for a crmsync user the
    CRM no longer lists), their crmsync `user` (None: never onboarded), when their last
    onboarding link was made and whether they connected since, and per provider the
    state of each service ("none", "active", "needs_reauth", "disconnected", "off")."""
    store, tenant_record = _opened(services, tenant)
    people = _people(services, tenant, tenant_record)
    users = store.user_records()
    raw = store.connection_records()
    by_user: dict[str, list[tuple[ConnectionRecord, bool]]] = {}
    for data in raw:
        record = ConnectionRecord.of(data)
        by_user.setdefault(record.user, []).append((record, _enabled(data)))
    mapped: dict[str, list[str]] = {}
    for user in sorted(set(users) | set(by_user)):
        crm_user = str((users.get(user) or {}).get("crm_user") or user)
        mapped.setdefault(crm_user, []).append(user)
    offered = _offered(services, tenant_record)
    rows = []
    for person in people:
        onboarded: list[str | None] = [*mapped.pop(person.id, [])] or [None]
        for user in onboarded:
            rows.append(_person(services, person, user, users, by_user, offered, True))
    for crm_user, left in sorted(mapped.items()):  # no longer in the CRM's directory
        for user in left:
            rows.append(_person(services, CrmUser(crm_user), user, users, by_user, offered, False))
    return rows


def _person(
    services: service.Services,
    person: CrmUser,
    user: str | None,
    users: Mapping[str, Mapping[str, Any]],
    by_user: Mapping[str, list[tuple[ConnectionRecord, bool]]],
    offered: Sequence[str],
    in_crm: bool,
) -> dict[str, Any]:
    """One row of the directory."""
    connections = by_user.get(user or "", [])
    link_made = _moment((users.get(user or "") or {}).get(service.LINK_MADE))
    since = None
    if link_made is not None:
        since = any(r.live and _after(r.consented or r.created, link_made) for r, _ in connections)
    return {
        "crm_user": person.id,
        "name": person.name,
        "email": person.email,
        "in_crm": in_crm,
        "user": user,
        "link_made": _iso(link_made),
        "connected_since_link": since,
        "providers": _providers(services, connections, offered),
    }


def _providers(
    services: service.Services,
    connections: Sequence[tuple[ConnectionRecord, bool]],
    offered: Sequence[str],
) -> list[dict[str, Any]]:
    """Per provider (those the tenant offers, and any the user is connected with) the
    connection and the state of each of its services."""
    found = {record.provider: (record, enabled) for record, enabled in connections}
    shown = [*offered, *sorted(p for p in found if p not in offered)]
    rows = []
    for provider in shown:
        record, enabled = found.get(provider, (None, True))
        row: dict[str, Any] = {
            "provider": provider,
            "label": _label(services, provider),
            "connection": record.id if record else None,
            "account": record.account if record else "",
        }
        for name in SERVICES:
            row[name] = _state(record, enabled) if record and name in record.services else NONE
        rows.append(row)
    return rows


def _state(record: ConnectionRecord, enabled: bool) -> str:
    if record.live and not enabled:
        return "off"
    return str(record.status)


# -- onboarding many ----------------------------------------------------------------------
@dataclass(frozen=True)
class Wanted:
    """One user to onboard: their crmsync id, the CRM user to map them to (None: the one
    they are mapped to, else their own id), their address if the admin gave one, and
    the line of the file that named them."""

    user: str
    crm_user: str | None = None
    email: str | None = None
    line: int | None = None


def onboard(
    services: service.Services,
    tenant: str,
    users: Sequence[str],
    *,
    ttl: timedelta = service.LINK_TTL,
) -> list[dict[str, Any]]:
    """AUTH-1: an onboarding link for each user, in one step; one row per user, in the
    order given: `{user, crm_user, email, link, error}`. A user who cannot get a link
    (not in the CRM's directory, a bad id, mapped to another CRM user while connected,
    listed twice) gets the reason in `error` and a None link, and nothing of theirs is
    written; the others get theirs. The CRM's directory is read once for all.

    Renewing a link is making a new one: the old one keeps working until it expires."""
    listed = [users] if isinstance(users, str) else users
    return _onboard(services, tenant, [Wanted(user) for user in listed], ttl)


def onboard_csv(
    services: service.Services,
    tenant: str,
    text: str,
    *,
    ttl: timedelta = service.LINK_TTL,
) -> list[dict[str, Any]]:
    """`onboard`, for the users of a CSV file (`parse_csv`): a row's error names its
    line. A malformed file is refused whole (400), naming the line, before any link."""
    return _onboard(services, tenant, parse_csv(text), ttl)


def parse_csv(text: str) -> list[Wanted]:
    """The users of a CSV file: a header row naming its columns, `user` (required),
    `crm_user` and `email` (optional), then one user per row, at most MAX_BATCH; blank
    lines are skipped. Refused (400) with the line when the file is malformed."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), strict=True)
    rows = _lines(reader)
    header = next(rows, None)
    if header is None:
        raise service.Refused(400, "the file is empty: " + _COLUMNS_SAID)
    columns = _columns(*header)
    wanted: list[Wanted] = []
    for line, fields in rows:
        if len(fields) != len(columns):
            said = f"{len(fields)} fields where the first line names {len(columns)} columns"
            raise service.Refused(400, f"line {line}: {said}")
        if len(wanted) == MAX_BATCH:
            raise service.Refused(
                400, f"line {line}: a file lists at most {MAX_BATCH} users; split it in two"
            )
        values = dict(zip(columns, (value.strip() for value in fields), strict=True))
        wanted.append(
            Wanted(
                values["user"], values.get("crm_user") or None, values.get("email") or None, line
            )
        )
    if not wanted:
        raise service.Refused(400, "the file lists no users below its first line")
    return wanted


_COLUMNS_SAID = "its first line names the columns: user, and optionally crm_user and email"


def _lines(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) of each row that is not blank; a row's line is its first (a quoted
    value may span lines). A row the CSV rules cannot read is refused, naming it."""
    first = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise service.Refused(400, f"line {first}: {exc}") from exc
        if any(value.strip() for value in fields):
            yield first, fields
        first = reader.line_num + 1


def _columns(line: int, header: Sequence[str]) -> tuple[str, ...]:
    """The header's column names, checked: a misspelt column would map users wrongly."""
    columns = tuple(name.strip().lower() for name in header)
    for name in columns:
        if name not in CSV_COLUMNS:
            raise service.Refused(400, f"line {line}: unknown column {name!r}; {_COLUMNS_SAID}")
        if columns.count(name) > 1:
            raise service.Refused(400, f"line {line}: the column {name!r} is named twice")
    if "user" not in columns:
        raise service.Refused(400, f"line {line}: there is no user column; {_COLUMNS_SAID}")
    return columns


def _onboard(
    services: service.Services, tenant: str, wanted: Sequence[Wanted], ttl: timedelta
) -> list[dict[str, Any]]:
    if len(wanted) > MAX_BATCH:
        raise service.Refused(400, f"at most {MAX_BATCH} users are onboarded in one step")
    _, tenant_record = _opened(services, tenant)
    people = {person.id: person for person in _people(services, tenant, tenant_record)}
    known = frozenset(people)
    seen: dict[str, int | None] = {}
    rows = []
    for one in wanted:
        row = _link(services, tenant, one, people, known, seen, ttl)
        seen.setdefault(one.user, one.line)
        rows.append(row)
    return rows


def _link(
    services: service.Services,
    tenant: str,
    one: Wanted,
    people: Mapping[str, CrmUser],
    known: frozenset[str],
    seen: Mapping[str, int | None],
    ttl: timedelta,
) -> dict[str, Any]:
    """One user's row of a batch: their link, or why they have none."""
    row: dict[str, Any] = {
        "user": one.user,
        "crm_user": one.crm_user,
        "email": one.email,
        "link": None,
        "error": None,
    }
    problem = _problem(one, seen)
    if problem is None:
        try:
            issued = service.issue_link(
                services, tenant, one.user, crm_user=one.crm_user, ttl=ttl, directory=known
            )
        except service.Refused as refused:
            problem = refused.reason
        else:
            person = people.get(issued.crm_user)
            email = one.email or (person.email if person else "") or None
            row.update(crm_user=issued.crm_user, email=email, link=issued.url)
    if problem is not None:
        row["error"] = f"line {one.line}: {problem}" if one.line else problem
    return row


def _problem(one: Wanted, seen: Mapping[str, int | None]) -> str | None:
    """What stops a link before it is asked for: a second row for the same user (the
    first has the link), or an address that is not one."""
    if one.user in seen:
        first = seen[one.user]
        where = f" (first on line {first})" if first else ""
        return f"{one.user} is listed more than once{where}"
    if one.email is not None and ("@" not in one.email or any(c.isspace() for c in one.email)):
        return f"{one.email!r} is not an e-mail address"
    return None


# -- the dashboard ------------------------------------------------------------------------
def dashboard(
    services: service.Services, tenant: str, *, health: str | None = None
) -> dict[str, Any]:
    """The tenant admin's overview (AUTH-6, SET-6, HIS-1): the seats used and allowed,
    and one row per user, provider and service (sync, mail) with exactly one health of
    HEALTHS, the last cycle, and the problems that need someone to act, in plain words.
    `counts` totals the rows per health (every health, 0 too); `health` keeps only the
    rows of that health (the counts stay the tenant's)."""
    if health is not None and health not in HEALTHS:
        raise service.Refused(400, f"health is one of {', '.join(HEALTHS)}")
    store, _ = _opened(services, tenant)
    now = services.clock()
    users = store.user_records()
    raw = store.connection_records()
    records = [ConnectionRecord.of(data) for data in raw]
    rows = [
        _row(services, record, name, _enabled(data), users, now)
        for data, record in zip(raw, records, strict=True)
        for name in SERVICES
        if name in record.services
    ]
    counts = dict.fromkeys(HEALTHS, 0)
    for row in rows:
        counts[row["health"]] += 1
    taken = service.seats_of(store, records)
    return {
        "tenant": tenant,
        "seats": {"used": taken.used, "allowed": taken.allowed},
        "counts": counts,
        "rows": [row for row in rows if health is None or row["health"] == health],
    }


def _row(
    services: service.Services,
    record: ConnectionRecord,
    name: str,
    enabled: bool,
    users: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    label = _label(services, record.provider)
    health = health_of(record, name, enabled, now)
    last = record.last_run if name == "sync" else None
    return {
        "user": record.user,
        "crm_user": str((users.get(record.user) or {}).get("crm_user") or record.user),
        "provider": record.provider,
        "label": label,
        "connection": record.id,
        "account": record.account,
        "service": name,
        "status": str(record.status),
        "health": health,
        "last_cycle": {"id": last.id, "status": str(last.status), "ended": _iso(last.ended)}
        if last is not None
        else None,
        "problems": problems(record, name, health, label),
    }


def health_of(record: ConnectionRecord, name: str, enabled: bool, now: datetime) -> str:
    """The one health of a connection's service: what the connection is first (gone,
    turned off, refused), then how its cycles stand (mail has none: its health is
    whether its mailbox is routed)."""
    if not record.live:
        return "disconnected"
    if not enabled:
        return "off"
    if record.status == ConnectionState.NEEDS_REAUTH:
        return "needs_reconsent"
    if name == "mail":
        return "failing" if record.mail_problem else "ok"
    return service.cycle_health(record, now)


def problems(record: ConnectionRecord, name: str, health: str, label: str) -> list[str]:
    """What needs someone to act, in plain words (none for a connection that is fine,
    disconnected or turned off on purpose)."""
    if health == "needs_reconsent":
        refused = [o.ended for o in record.recent if o.status == RunStatus.NEEDS_REAUTH]
        on = f" on {_day(refused[-1])}" if refused and refused[-1] else ""
        return [f"Needs to sign in again: {label} refused the grant{on}"]
    if health == "stuck" and record.last_run is not None:
        return [f"A sync started {_when(record.last_run.started)} has not finished"]
    if health == "failing" and name == "mail":
        return [f"Mail is not recorded: {record.mail_problem}"]
    if health == "failing":
        return _failing(record.recent[-service.FAILING_RUNS :])
    if health == "stale":
        since = record.last_ok or record.created
        return [f"No sync has finished since {_when(since)}"]
    return []


def _failing(window: Sequence[RunOutcome]) -> list[str]:
    """Why the last few cycles all went wrong, most telling first."""
    n, last = len(window), window[-1]
    said = []
    if any(o.status == RunStatus.CRM_UNAUTHORIZED for o in window):
        said.append(f"The CRM refused crmsync's API token in the last {n} syncs")
    unread = [k for k in KIND_WORDS if any(k in o.unread for o in window)]
    if unread:
        words = " or ".join(KIND_WORDS[k] for k in unread)
        said.append(f"Could not read {words} in the last {n} syncs")
    if last.failed:
        records = "1 record" if last.failed == 1 else f"{last.failed} records"
        said.append(f"Some records fail in every sync: {records} in the last one")
    reasons = [o.reason for o in window if o.status == RunStatus.FAILED and o.reason]
    if reasons:
        said.append(f"The last syncs failed: {reasons[-1]}")
    return said or [f"The last {n} syncs did not finish their work"]


# -- shared -------------------------------------------------------------------------------
def _opened(services: service.Services, tenant: str) -> tuple[Any, dict[str, Any]]:
    """The tenant's store and its record; 404 for a tenant crmsync does not have."""
    store = services.backend.store(tenant) if service.safe_id(tenant) else None
    tenant_record = store.tenant_record() if store is not None else None
    if tenant_record is None:
        raise service.Refused(404, f"no such tenant: {tenant}")
    return store, tenant_record


def _people(
    services: service.Services, tenant: str, tenant_record: Mapping[str, Any]
) -> list[CrmUser]:
    """The CRM's user directory, read once; refused (503) in plain words when the CRM
    cannot give it."""
    try:
        return service.crm_directory(services, tenant, tenant_record)
    except Exception as exc:  # unreachable, refused, not set up: the caller is told which
        log.warning("crm directory unread", extra={"tenant": tenant, "error": type(exc).__name__})
        raise service.Refused(503, *_unreachable(exc)) from exc


def _unreachable(exc: Exception) -> tuple[str, str]:
    """Why the CRM's users could not be listed, and what to do about it."""
    if isinstance(exc, CrmUnauthorized):
        return (
            "the tenant's CRM refused crmsync's API token, so its users cannot be listed",
            "Whoever registered the tenant can register it again with a valid CRM token.",
        )
    if isinstance(exc, TransientError):
        return (
            "the tenant's CRM did not answer, so its users cannot be listed",
            "Try again in a few minutes.",
        )
    return (
        "the tenant's CRM did not give its list of users",
        "Check that the CRM's address registered for the tenant is right.",
    )


def _offered(services: service.Services, tenant_record: Mapping[str, Any]) -> list[str]:
    """The providers the tenant lets its users connect that this deployment has set up."""
    allowed = tenant_record.get("providers") or services.provider_names()
    return [
        p for p in services.provider_names() if p in allowed and services.kit(p).available(services)
    ]


def _enabled(data: Mapping[str, Any]) -> bool:
    """SET-6: whether the integration is on for the connection's user (on unless a
    connection record says otherwise)."""
    return data.get("enabled", True) is not False


def _label(services: service.Services, provider: str) -> str:
    try:
        return str(services.kit(provider).label)
    except KeyError:  # a provider this installation no longer has
        return provider


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _after(value: datetime | None, moment: datetime) -> bool:
    found = _moment(value)
    return found is not None and found >= moment


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _day(value: datetime) -> str:
    moment = value.astimezone(UTC)
    return f"{moment.day} {moment:%b}"


def _when(value: datetime | None) -> str:
    if value is None:
        return "then"
    return f"{_day(value)} {value.astimezone(UTC):%H:%M} UTC"
