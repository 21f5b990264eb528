"""A mail cycle (EML-1..4): what the worker runs for a task of trigger "mail", which a
mailbox notification (pushed by the provider, through the provider's kit) or a pass
that left tagged messages over enqueues.

It holds the connection's lease like a sync cycle (a cycle asked for meanwhile follows
it), runs one pass of `crmsync.mail.recording` over the user's mailbox with the CRM
acting as the user, keeps the ids of crmsync's labels on the connection, and stores a
run with one history item per message, which Sync History shows beside the sync
cycles (HIS-1).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from crmsync import service
from crmsync.connections import Grants
from crmsync.cycle import LEASE_SECONDS
from crmsync.errors import GrantRevoked, PermanentError, TransientError
from crmsync.mail import files, recording
from crmsync.ports import SEND, ConnectionRecord, ConnectionState, RunStatus
from crmsync.queue import DEBOUNCE

log = logging.getLogger("crmsync.mail")

MAIL = "mail"  # the trigger, and the kind of its history items
ITEM_OUTCOME = {  # a message's fate → its history item's outcome
    "recorded": "record",
    "missing": "missing",
    "unreadable": "skip",
    "refused": "skip",
    "gone": "skip",
}
REASONS = {
    "recorded": "recorded in the CRM's history of this record",
    "missing": "no CRM contact or lead has a participant's address: labelled \"Missing "
    'Contact"; tag it again once the contact is in the CRM',
    "unreadable": "the message could not be read",
    "refused": "the CRM did not take the message",
    "gone": "the message was deleted before it could be recorded",
}


def run_pass(services: service.Services, tenant: str, connection: str) -> dict[str, Any]:
    """One mail pass of the connection; returns its run (status `skipped` when the
    connection records no mail or is not active, `busy` when a cycle holds it)."""
    store = services.backend.store(tenant)
    record = service.connection_of(store, connection)
    tenant_record = store.tenant_record()
    if record is None or tenant_record is None:
        raise service.Refused(404, "no such connection")
    now = services.clock()
    if not record.records_mail:
        return {"status": RunStatus.SKIPPED, "reason": "the connection records no mail"}
    if not record.active:  # its watch is not renewed: the fan-out looks again in a day
        services.backend.store("").watch_mailbox(tenant, connection, now + service.RENEW_WITHIN)
        return {"status": RunStatus.SKIPPED, "reason": f"connection is {record.status}"}
    run_id = f"{connection}-{now.strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(3)}"
    if not store.acquire_lease(connection, run_id, now, LEASE_SECONDS):
        expires = store.ask_again(connection, MAIL, now)
        if expires is not None:
            service.enqueue_check(services, tenant, connection, expires)
        return {"status": RunStatus.BUSY}
    run: dict[str, Any] = {
        "id": run_id,
        "connection": connection,
        "tenant": tenant,
        "user": record.user,
        "provider": record.provider,
        "trigger": MAIL,
        "started": now,
        "ended": None,
        "status": RunStatus.RUNNING,
        "counts": {},
        "unread": [],
        "errors": [],
    }
    store.save_run(connection, run)
    items: list[dict[str, Any]] = []
    more = False
    try:
        more = _pass(services, store, tenant, tenant_record, record, run, items)
    finally:
        run["ended"] = services.clock()
        store.add_items(connection, run_id, items, None)
        store.save_run(connection, run)
        asked = store.release_lease(connection, run_id)
    if run["status"] == RunStatus.NEEDS_REAUTH:
        store.set_status(connection, ConnectionState.NEEDS_REAUTH, "; ".join(run["errors"]))
    elif more:  # tagged messages are left, or the pass stopped: the next pass goes on
        delay = timedelta(0) if run["status"] == RunStatus.OK else DEBOUNCE
        service.enqueue_cycle(services, tenant, connection, MAIL, delay=delay)
    elif asked:
        service.enqueue_cycle(services, tenant, connection, asked)
    log.info(
        "mail pass finished",
        extra={"tenant": tenant, "connection": connection, "status": run["status"]},
    )
    return run


def _pass(
    services: service.Services,
    store: Any,
    tenant: str,
    tenant_record: Any,
    record: ConnectionRecord,
    run: dict[str, Any],
    items: list[dict[str, Any]],
) -> bool:
    """Run the pass into `run` and `items`; whether tagged messages are left."""
    settings = service.settings_for(services, tenant, record)
    grants = Grants(store, services.vault, tenant)
    try:
        account = services.kit(record.provider).mail_account(services, grants, record.id)
        crm = service.crm_for(services, tenant, tenant_record, record, settings)
        own = [a for a in (record.account, crm.users().get(record.user, "")) if a]
        keep = None
        if services.attachments is not None:  # EML-2: large attachments kept, linked
            keep = files.keeper(services.attachments, services.secret, services.public_url, tenant)
        done = recording.record_tagged(account, crm, own, record.id, record.mail_labels, keep=keep)
    except GrantRevoked as exc:
        run.update(status=RunStatus.NEEDS_REAUTH, errors=[f"{type(exc).__name__}: {exc}"])
        return False
    except (TransientError, PermanentError) as exc:
        run.update(status=RunStatus.FAILED, errors=[f"{type(exc).__name__}: {exc}"])
        return isinstance(exc, TransientError)
    if done.labels != dict(record.mail_labels):
        store.save_connection_record(record.id, {"mail_labels": done.labels})
    _watch(services, store, tenant, record, grants, done.labels)
    counts: dict[str, int] = {}
    for filed in done.filed:
        if filed.outcome == "stopped":
            run["errors"].append(f"stopped: {filed.reason}")
            continue
        outcome = ITEM_OUTCOME[filed.outcome]
        counts[outcome] = counts.get(outcome, 0) + 1
        items.append(_item(filed, outcome, services.clock()))
    run["counts"] = {MAIL: counts} if counts else {}
    stopped = any(f.outcome == "stopped" for f in done.filed)
    run["status"] = RunStatus.PARTIAL if stopped else RunStatus.OK
    return done.more


def _item(filed: recording.Filed, outcome: str, at: datetime) -> dict[str, Any]:
    kind, _, record_id = filed.record.partition("/")
    reason = REASONS[filed.outcome]
    return {
        "kind": MAIL,
        "label": filed.subject or "(no subject)",
        "outcome": outcome,
        "direction": "to_crm",
        "crm_id": record_id or None,
        "crm_kind": kind or None,
        "provider_id": filed.message,
        "reason": f"{reason}: {filed.reason}" if filed.reason else reason,
        "fields": [],
        "changes": {},
        "error": None,
        "at": at,
    }


def _watch(
    services: service.Services,
    store: Any,
    tenant: str,
    record: ConnectionRecord,
    grants: Grants,
    labels: dict[str, str],
) -> None:
    """EML-1: the mailbox's notifications of "Send To CRM" are watched; a watch that
    ends within a day is renewed (the fan-out asks for a pass then)."""
    now = services.clock()
    until = record.mail_watch_until
    if until is not None and until > now + service.RENEW_WITHIN:
        return
    watch = getattr(services.kit(record.provider), "watch_mail", None)
    try:
        ends = watch(services, grants, record.id, labels[SEND]) if watch else None
    except (TransientError, PermanentError) as exc:  # recorded on Sync now meanwhile
        problem = f"mail notifications not set up ({type(exc).__name__}); tagged mail waits"
        store.save_connection_record(record.id, {"mail_problem": problem})
        return
    if ends is None:  # this provider, or this deployment, has no mailbox notifications
        return
    services.backend.store("").watch_mailbox(tenant, record.id, ends)
    store.save_connection_record(record.id, {"mail_watch_until": ends, "mail_problem": ""})
