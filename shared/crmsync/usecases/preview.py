"""BEY-3: the first sync's preview, and the user's go.

What the first cycle would do is asked of the cycle itself (`service.dry_run`): the
same reading and planning it runs, with nothing applied and nothing stored. The
preview lists, per kind, the pairs it would link and by which rule (e-mail for
contacts, CON-3; subject, start, duration and user for activities, CAL-2; subject and
date for to-dos, TSK-2), the records it would create on each side, and the near misses
it reports as likely duplicates rather than linking.

How a user gets there: on the connect page they tick "show me what the first sync will
do before it starts"; the connection then waits (`preview_first` on its record: the
fan-out does not schedule it and the worker skips it) until they press "Start the first
sync" on its preview page, which clears the wait and enqueues the first cycle. The page
also answers for a connection that syncs already: then it shows what the next cycle
would do, and there is nothing to start.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from crmsync import service
from crmsync.cycle import Planned
from crmsync.cycle.history import label
from crmsync.engine import Decision, SideRecord
from crmsync.engine.matching import NEAR
from crmsync.errors import CrmUnauthorized, GrantRevoked, PermanentError, TransientError
from crmsync.model import Kind
from crmsync.ports import ConnectionRecord
from crmsync.settings import Side

log = logging.getLogger("crmsync.usecases.preview")

SHOWN = 200  # records a list of the preview shows at most; its count is of them all
KIND_NAMES: dict[Kind, str] = {"contact": "Contacts", "activity": "Calendar", "todo": "To-dos"}
_NEAR = frozenset(NEAR.values())


def preview(services: service.Services, tenant: str, connection: str) -> dict[str, Any]:
    """What the connection's next cycle (its first, when it has not run) would do, per
    kind: `link` (pairs and the rule that pairs them), `to_crm` and `to_provider` (the
    records created on that side), `duplicates` (near misses reported, not linked),
    `other` (records it would skip, hold or fail, with why), each with its `count`;
    `error` for a kind that could not be read. Refused when the account or the CRM
    cannot be asked just now."""
    record = syncing(services, tenant, connection)
    mailbox = services.kit(record.provider).label
    try:
        planned = service.dry_run(services, tenant, connection)
    except GrantRevoked as exc:
        raise service.Refused(
            409,
            f"your {mailbox} account no longer lets crmsync in",
            f"Sign in to {mailbox} again from your sync page; nothing was lost.",
        ) from exc
    except CrmUnauthorized as exc:
        raise service.Refused(
            503, "the CRM refused crmsync's access just now", "Ask your admin to look into it."
        ) from exc
    except (TransientError, PermanentError) as exc:
        log.warning("preview unavailable", extra={"tenant": tenant, "error": type(exc).__name__})
        raise service.Refused(
            503, f"{mailbox} or the CRM could not be reached just now", "Try again in a minute."
        ) from exc
    return {
        "connection": record.id,
        "provider": record.provider,
        "provider_label": mailbox,
        "account": record.account,
        "first": record.last_run is None,
        "waiting": record.preview_first,
        "kinds": [kind_report(p) for p in planned],
    }


def start_first_sync(services: service.Services, tenant: str, connection: str) -> bool:
    """BEY-3: the user's go: the connection no longer waits, is due now, and its first
    cycle is enqueued. Returns whether a new task was enqueued (False: one waits
    already). Refused (409) when nothing waits."""
    record = syncing(services, tenant, connection)
    if not record.preview_first:
        raise service.Refused(
            409, "the sync of this account has started already", "Go back to your sync page."
        )
    store = services.backend.store(tenant)
    store.save_connection_record(connection, {"preview_first": False})
    store.set_next_due(connection, services.clock())
    log.info("first sync started", extra={"tenant": tenant, "connection": connection})
    return service.enqueue_cycle(services, tenant, connection, "connect", delay=timedelta(0))


def kind_report(planned: Planned, only: Collection[str] | None = None) -> dict[str, Any]:
    """One kind of the preview: its lists (SHOWN records each at most) and counts; of
    the decisions about the provider records `only`, when given."""
    kind = planned.kind
    shown: dict[str, Any] = {"kind": kind, "name": KIND_NAMES[kind], "error": planned.error}
    if planned.changes is None or planned.plan is None:
        return shown
    records = planned.changes.records
    lists: dict[str, list[dict[str, Any]]] = {
        "link": [],
        "to_crm": [],
        "to_provider": [],
        "duplicates": [],
        "other": [],
    }
    for decision in planned.plan.decisions:
        if only is not None and decision.provider_id not in only:
            continue
        place = _place(decision)
        if place:
            lists[place].append(_row(kind, decision, records))
    for name, rows in lists.items():
        shown[name] = {"count": len(rows), "shown": rows[:SHOWN]}
    return shown


def _place(decision: Decision) -> str:
    """Which list of the preview a decision belongs in ("" for none: nothing to do)."""
    if decision.outcome == "link":
        return "link"
    if decision.outcome == "create":
        return "to_crm" if decision.direction == "to_crm" else "to_provider"
    if decision.outcome == "skip" and decision.reason in _NEAR:
        return "duplicates"
    return "" if decision.outcome == "none" else "other"


def _row(
    kind: Kind, decision: Decision, records: Mapping[Side, Mapping[str, SideRecord]]
) -> dict[str, Any]:
    """One record (or pair) as the preview lists it: ids, a name, a detail, why."""
    crm = records["crm"].get(decision.crm_id or "")
    provider = records["provider"].get(decision.provider_id or "")
    return {
        "crm_id": decision.crm_id,
        "provider_id": decision.provider_id,
        "outcome": decision.outcome,
        "crm": _shown(kind, crm),
        "provider": _shown(kind, provider),
        "reason": decision.reason,
    }


def _shown(kind: Kind, record: SideRecord | None) -> dict[str, str] | None:
    """A record's name and what tells it apart (an e-mail address, a time, a date)."""
    if record is None or not record.fields:
        return None
    fields = record.fields
    if kind == "contact":
        emails: Sequence[str] = fields.get("emails") or ()
        detail = emails[0] if emails else ""
    elif kind == "activity":
        detail = _when(fields.get("start"))
    else:
        detail = _when(fields.get("due") or fields.get("start"))
    return {"name": label(kind, fields) or "(no name)", "detail": detail}


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return ""


def syncing(services: service.Services, tenant: str, connection: str) -> ConnectionRecord:
    """The connection, if it syncs records: live, active, with the sync service."""
    record = service.connection_of(services.backend.store(tenant), connection)
    if record is None or not record.live:
        raise service.Refused(404, "no such connection")
    if not record.syncs:
        raise service.Refused(
            409, "this connection records e-mail only", "Add the sync from your sync page."
        )
    if not record.enabled:
        raise service.Refused(409, service.TURNED_OFF, "Ask your admin to turn it on again.")
    if not record.active:
        raise service.Refused(
            409, f"the connection is {str(record.status).replace('_', ' ')}", "See your sync page."
        )
    return record
