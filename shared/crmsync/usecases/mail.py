"""A mail cycle (EML-1..5): what the worker runs for a task of trigger "mail", which a
mailbox notification (pushed by the provider, through the provider's kit) or a pass
that left tagged messages over enqueues.

It holds the connection's lease like a sync cycle (a cycle asked for meanwhile follows
it), runs one pass of `crmsync.mail.recording` over the user's mailbox with the CRM
acting as the user, keeps the ids of crmsync's labels on the connection, and stores a
run with one history item per message, which Sync History shows beside the sync
cycles (HIS-1).

EML-5: the user's page (`choices`) lists the messages waiting for a record ("Missing
Contact") and those recorded lately, and finds CRM records by name or address; filing
some of those messages to some records (`file`) keeps the choice as a filing and asks
for a pass, which files them (`crmsync.mail.recording`) and lets the filing go.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from crmsync import service
from crmsync.connections import Grants
from crmsync.cycle import LEASE_SECONDS
from crmsync.errors import GrantRevoked, PermanentError, TransientError
from crmsync.mail import files, recording
from crmsync.outbound import needs_reauth, publish_all
from crmsync.ports import (
    MISSING,
    RECORDED,
    SEND,
    ConnectionRecord,
    ConnectionState,
    Headline,
    Person,
    RunStatus,
)
from crmsync.usecases import attachments

log = logging.getLogger("crmsync.mail")

# EML-5: what one filing may ask for, and what a page shows
MAX_MESSAGES = 25  # messages filed at once
MAX_RECORDS = 10  # records each of them is filed to
FILINGS_PER_PASS = 5  # filings a pass settles before the tagged messages
SHOWN = 25  # messages a page lists of each label
FOUND = 20  # records a search shows
KINDS = ("contact", "lead")

MAIL = "mail"  # the trigger, and the kind of its history items
ITEM_OUTCOME = {  # a message's fate → its history item's outcome
    "recorded": "record",
    "filed": "record",
    "missing": "missing",
    "unreadable": "skip",
    "refused": "skip",
    "gone": "skip",
}
REASONS = {
    "recorded": "recorded in the CRM's history of this record",
    "filed": "filed to this record, as you chose",
    "missing": "no CRM contact or lead has a participant's address: labelled \"Missing "
    'Contact"; tag it again once the contact is in the CRM',
    "unreadable": "the message could not be read",
    "refused": "the CRM did not take the message",
    "gone": "the message was deleted before it could be recorded",
}
BEFORE = {
    "recorded": "already in the CRM's history of this record: it is kept there once",
    "filed": "already filed to {name}: the CRM keeps it there once",
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
        store.save_run(connection, run, items)
        asked = store.release_lease(connection, run_id)
    if run["status"] == RunStatus.NEEDS_REAUTH:
        store.set_status(connection, ConnectionState.NEEDS_REAUTH, "; ".join(run["errors"]))
        # BEY-7: the CRM hears of it as of a sync cycle's refused grant
        publish_all(services.events, [needs_reauth(tenant, connection, record.user, now, run_id)])
    elif more:  # tagged messages are left, or the pass stopped: the next pass goes on
        delay = timedelta(0) if run["status"] == RunStatus.OK else services.debounce
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
        crm = _CrmSide(service.crm_for(services, tenant, tenant_record, record, settings))
        own = [a for a in (record.account, crm.users().get(record.user, "")) if a]
        keep = None
        kept_in = attachments.store_for(services, tenant)
        if kept_in is not None:  # EML-2: large attachments kept, linked
            keep = files.keeper(kept_in, services.secret, services.public_url, tenant)
        most = settings["attachment_mb"]  # the tenant's limit, within the deployment's
        kept_bytes = recording.MAX_KEPT_BYTES if most is None else most * 2**20
        asked = store.filings(record.id, FILINGS_PER_PASS + 1)
        chosen = [_chosen(f) for f in asked[:FILINGS_PER_PASS]]
        done = recording.record_tagged(
            account,
            crm,
            own,
            record.id,
            record.mail_labels,
            keep=keep,
            chosen=chosen,
            kept_bytes=kept_bytes,
        )
    except GrantRevoked as exc:
        run.update(status=RunStatus.NEEDS_REAUTH, errors=[f"{type(exc).__name__}: {exc}"])
        return False
    except (TransientError, PermanentError) as exc:
        side = CRM_SIDE if getattr(exc, CRM_SIDE, False) else ""
        run.update(status=RunStatus.FAILED, errors=[f"{side}{type(exc).__name__}: {exc}"])
        return isinstance(exc, TransientError)
    for filing in done.settled:
        store.drop_filing(record.id, filing)
    if len(asked) > FILINGS_PER_PASS:
        done.more = True
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


# A pass's error that came from the CRM says so ("crm: TransientError: ..."): the
# history tells the user which side did not answer (HIS-4).
CRM_SIDE = "crm: "


class _CrmSide:
    """The CRM as a mail pass uses it: a failure it raises is marked as the CRM's."""

    def __init__(self, crm: Any) -> None:
        self._crm = crm

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._crm, name)
        if not callable(found):
            return found

        def call(*args: Any, **kw: Any) -> Any:
            try:
                return found(*args, **kw)
            except (TransientError, PermanentError) as exc:
                setattr(exc, CRM_SIDE, True)
                raise

        return call


def _chosen(filing: dict[str, Any]) -> recording.Chosen:
    people = tuple(
        Person(str(r["kind"]), str(r["id"]), str(r.get("name") or ""), (), 0)
        for r in filing.get("records") or ()
    )
    messages = tuple(str(m) for m in filing.get("messages") or ())
    return recording.Chosen(str(filing["id"]), messages, people)


def _item(filed: recording.Filed, outcome: str, at: datetime) -> dict[str, Any]:
    kind, _, record_id = filed.record.partition("/")
    reason = REASONS[filed.outcome]
    if filed.outcome == "filed" and filed.name:
        reason = f"filed to {filed.name}, as you chose"
    if filed.before:  # EML-4: the CRM keeps a message once per record
        reason = BEFORE[filed.outcome].format(name=filed.name or "this record")
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


# -- EML-5: the user's choice of messages and records ---------------------------------------
def choices(
    services: service.Services, tenant: str, connection: str, text: str = ""
) -> dict[str, Any]:
    """What the filing page shows: the messages waiting for a record and those recorded
    lately (newest first), the filings not settled yet, and with `text` the CRM's
    contacts and leads whose name or address holds it."""
    store = services.backend.store(tenant)
    record = _recording(services, tenant, connection)
    kit = services.kit(record.provider)
    text = text.strip()
    data: dict[str, Any] = {
        "connection": record.id,
        "provider_label": kit.label,
        "account": record.account,
        "active": record.active,
        "waiting": [],
        "recorded": [],
        "search": text,
        "found": [],
        "pending": len(store.filings(record.id, MAX_MESSAGES)),
        "max_messages": MAX_MESSAGES,
        "max_records": MAX_RECORDS,
    }
    if not record.active:
        return data
    grants = Grants(store, services.vault, tenant)
    try:
        account = kit.mail_account(services, grants, record.id)
        labels = account.labels(record.mail_labels)
        if labels != dict(record.mail_labels):
            store.save_connection_record(record.id, {"mail_labels": labels})
        data["waiting"] = [_shown(h) for h in account.headlines(labels[MISSING], SHOWN)]
        data["recorded"] = [_shown(h) for h in account.headlines(labels[RECORDED], SHOWN)]
        if len(text) >= 2:
            tenant_record = store.tenant_record() or {}
            settings = service.settings_for(services, tenant, record)
            crm = service.crm_for(services, tenant, tenant_record, record, settings)
            data["found"] = [_person(p) for p in crm.search_people(text[:100], FOUND)]
    except GrantRevoked as exc:
        raise service.Refused(
            409,
            f"{kit.label} no longer lets crmsync read your mail",
            "Sign in there again from your sync page; nothing was lost.",
        ) from exc
    except (TransientError, PermanentError) as exc:
        log.warning(
            "mail choices unavailable", extra={"tenant": tenant, "error": type(exc).__name__}
        )
        raise service.Refused(
            503, f"{kit.label} or the CRM could not be reached just now", "Try again in a minute."
        ) from exc
    return data


def file(
    services: service.Services,
    tenant: str,
    connection: str,
    messages: list[str],
    records: list[str],
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """EML-5: file `messages` (the mailbox's ids) to each of `records` ("contact/<id>"
    or "lead/<id>", named by `names` where the page knew them): kept as a filing, which
    the mail pass it asks for files."""
    record = _recording(services, tenant, connection)
    if not record.active:
        raise service.Refused(409, f"this connection is {record.status}", "See your sync page.")
    wanted = list(dict.fromkeys(m.strip() for m in messages if m.strip()))
    chosen = list(dict.fromkeys(r.strip() for r in records if r.strip()))
    if not wanted:
        raise service.Refused(400, "no message was chosen", "Tick the messages to file.")
    if len(wanted) > MAX_MESSAGES:
        raise service.Refused(
            400, f"{len(wanted)} messages were chosen", f"File at most {MAX_MESSAGES} at once."
        )
    if not chosen:
        raise service.Refused(
            400, "no record was chosen", "Find the records in the CRM and tick them."
        )
    if len(chosen) > MAX_RECORDS:
        raise service.Refused(
            400, f"{len(chosen)} records were chosen", f"Choose at most {MAX_RECORDS}."
        )
    people: list[dict[str, str]] = []
    for ref in chosen:
        kind, _, record_id = ref.partition("/")
        if kind not in KINDS or not record_id or len(ref) > 300:
            raise service.Refused(400, f"{ref[:40]!r} is no CRM contact or lead")
        name = str((names or {}).get(ref) or "")[:200]
        people.append({"kind": kind, "id": record_id, "name": name})
    if any(len(m) > 512 for m in wanted):
        raise service.Refused(400, "a chosen message is not one of your mailbox's")
    now = services.clock()
    filing = {
        "id": f"{now.strftime('%Y%m%dT%H%M%S.%f')}-{secrets.token_hex(4)}",
        "asked": now,
        "messages": wanted,
        "records": people,
    }
    store = services.backend.store(tenant)
    store.put_filing(record.id, filing)
    enqueued = service.enqueue_cycle(services, tenant, record.id, MAIL, delay=timedelta(0))
    return {
        "filing": filing["id"],
        "messages": len(wanted),
        "records": len(people),
        "enqueued": enqueued,
    }


def _recording(services: service.Services, tenant: str, connection: str) -> ConnectionRecord:
    record = service.connection_of(services.backend.store(tenant), connection)
    if record is None or not record.live:
        raise service.Refused(404, "no such connection")
    if not record.records_mail:
        raise service.Refused(
            404,
            "this connection does not record mail",
            "Add the mail service to it from your sync page.",
        )
    return record


def _shown(headline: Headline) -> dict[str, Any]:
    return {
        "id": headline.id,
        "subject": headline.subject or "(no subject)",
        "sender": headline.sender,
        "received": headline.received.isoformat(),
        "received_text": f"{headline.received:%-d %b %Y, %H:%M} UTC",
    }


def _person(person: Person) -> dict[str, Any]:
    return {
        "ref": f"{person.kind}/{person.id}",
        "kind": person.kind,
        "id": person.id,
        "name": person.name,
        "emails": list(person.emails),
        "history": person.history_count,
    }
