"""CON-9: importing a user's address book (all of it, or one of their labels) into the
CRM, once, with a preview, duplicate detection and progress.

An imported contact joins the user's contact sync: it is put under the sync label and
then linked to its CRM twin by e-mail address (CON-3) or created in the CRM (CON-4,
CON-5), by a cycle of contacts over it (`service.work` with `bring_in`), journaled and
keyed as every cycle's writes are, and under the user's settings (CON-8: new contacts
may go to a review list or become leads). The next cycle finds it linked, so it is
never created twice. The preview is the same plan, made by a dry run.

The import runs as a chain of queue tasks (trigger "import"), one step each: a step
takes the next CHUNK contacts of the source in id order (after the last one done),
stores which those are before it writes anything, runs the cycle over them, and keeps
the counts (done / total / created / linked / already / skipped / failed) on the
connection's record, where the page reads them; then it enqueues the next step. A step
killed anywhere is run again over the same contacts: labels set stay set, creates are
finished by their keys, and the counts come out as if it had run once. A step that
finds the connection busy comes back a little later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from crmsync import service
from crmsync.engine import SideRecord
from crmsync.engine.creates import twin_key
from crmsync.errors import CrmUnauthorized, GrantRevoked, PermanentError, SyncError
from crmsync.ports import ConnectionRecord, RunStatus
from crmsync.queue import IMPORT, task_name
from crmsync.usecases.preview import kind_report, syncing

log = logging.getLogger("crmsync.usecases.importing")

CHUNK = 100  # contacts one step brings in, unless the import says otherwise
MAX_CHUNK = 500  # a step's contacts are read, labelled and planned within its time budget
RETRY = timedelta(seconds=30)  # when a step that found the connection busy comes back
STALLED = timedelta(minutes=10)  # a running import this long unmoved lost its next step
TRIES = 20  # steps in a row that cannot go on (ten minutes of RETRY) pause the import
ALL = ""  # the source "every contact of the account"
RUNNING, DONE, PAUSED = "running", "done", "paused"
_APPLIED = frozenset({RunStatus.OK, RunStatus.PARTIAL})
_STOPPED = frozenset({RunStatus.SKIPPED, RunStatus.NEEDS_REAUTH, RunStatus.CRM_UNAUTHORIZED})


@dataclass
class Job:
    """One import as the connection's record keeps it (under "import")."""

    id: str
    source: str
    source_label: str
    status: str = RUNNING
    size: int = CHUNK  # contacts per step
    total: int = 0
    done: int = 0
    created: int = 0  # created in the CRM and linked
    linked: int = 0  # already in the CRM (same e-mail): linked, not duplicated
    already: int = 0  # synced before the import
    skipped: int = 0  # kept out by the user's settings, waiting for review, or gone
    failed: int = 0  # could not be labelled, read or created (importing again retries them)
    after: str = ""  # the last contact id done
    chunk: list[str] = field(default_factory=list)  # the contacts of the step under way
    before: list[str] = field(default_factory=list)  # those of them synced before it
    steps: int = 0  # tasks enqueued so far (each task's name is its own)
    tries: int = 0  # steps in a row that could not go on
    started: datetime | None = None
    updated: datetime | None = None
    ended: datetime | None = None
    reason: str = ""  # why it is paused

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Job | None:
        if not data:
            return None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def shown(self) -> dict[str, Any]:
        """What the page and the API show (the step's ids stay inside)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("chunk", "before", "after")}
        out["percent"] = 100 if self.status == DONE else int(100 * self.done / max(self.total, 1))
        return out

    def shown_at(self, now: datetime) -> dict[str, Any]:
        return {**self.shown(), "resumable": resumable(self, now)}


# -- what the user sees -------------------------------------------------------------------
def sources(services: service.Services, tenant: str, connection: str) -> list[dict[str, str]]:
    """What can be imported: every contact of the account, or one of its labels (the
    provider's kit lists them, as for the contact-label setting)."""
    record = syncing(services, tenant, connection)
    kit = services.kit(record.provider)
    try:
        labels = list(kit.choices(services, tenant, record, "contact_scope"))
    except SyncError as exc:
        raise _unreachable(kit.label, tenant, exc) from exc
    return [{"id": ALL, "label": "All contacts"}, *labels]


def status(services: service.Services, tenant: str, connection: str) -> dict[str, Any] | None:
    """The connection's latest import, as the page shows it (also while the connection
    does not sync: the import waits, paused); None when there was none."""
    record = service.connection_of(services.backend.store(tenant), connection)
    if record is None or not record.live:
        raise service.Refused(404, "no such connection")
    job = _job(services, tenant, record.id)
    return job.shown_at(services.clock()) if job is not None else None


def preview(
    services: service.Services, tenant: str, connection: str, source: str
) -> dict[str, Any]:
    """What importing `source` would do, planned by a dry run of the cycle over its
    contacts as if each were labelled: `to_crm` (created in the CRM), `link` (already in
    the CRM by e-mail: linked, not duplicated), `already` (synced already), `other`
    (kept out, with why), `unreadable`, and `total`."""
    record = syncing(services, tenant, connection)
    label = _source_label(services, tenant, record, source)
    listed = _listed(services, tenant, record, source)
    readable = tuple(r for r in listed if r.fields is not None and not r.error)
    try:
        planned = service.dry_run(services, tenant, connection, imported=readable)
    except (GrantRevoked, CrmUnauthorized, PermanentError, SyncError) as exc:
        raise _unreachable(services.kit(record.provider).label, tenant, exc) from exc
    [contacts] = planned
    if contacts.error:
        raise service.Refused(503, "the contacts could not be read just now", "Try again later.")
    report = kind_report(contacts, only={r.id for r in readable})  # this source's
    already = _linked_before(services, tenant, record.id, [r.id for r in readable])
    return {
        "source": source,
        "source_label": label,
        "total": len(listed),
        "to_crm": report["to_crm"],
        "link": report["link"],
        "other": report["other"],
        "already": len(already),
        "unreadable": len(listed) - len(readable),
    }


def start(
    services: service.Services, tenant: str, connection: str, source: str, size: int = CHUNK
) -> dict[str, Any]:
    """Start importing `source`, `size` contacts a step: the job is kept on the
    connection's record and its first step enqueued. Refused while another import of
    the connection runs, or while its first sync waits for the user (BEY-3)."""
    if not 1 <= size <= MAX_CHUNK:
        raise service.Refused(400, f"a step takes 1 to {MAX_CHUNK} contacts")
    record = syncing(services, tenant, connection)
    if record.preview_first:
        raise service.Refused(
            409, "the first sync has not started yet", "Start it from its preview page first."
        )
    current = _job(services, tenant, record.id)
    if current is not None and current.status == RUNNING:
        raise service.Refused(
            409, "an import of this account is under way", "Wait for it to finish."
        )
    label = _source_label(services, tenant, record, source)
    listed = _listed(services, tenant, record, source)
    now = services.clock()
    job = Job(
        id=f"import-{now:%Y%m%dT%H%M%S}",
        source=source,
        source_label=label,
        size=size,
        total=len(listed),
        started=now,
        updated=now,
    )
    job = _enqueue(services, tenant, record.id, job)
    log.info("import started", extra={"tenant": tenant, "connection": record.id})
    return job.shown()


def resume(services: service.Services, tenant: str, connection: str) -> dict[str, Any]:
    """Go on with a paused import, or one whose next step was lost (nothing moved for
    STALLED): its next step is enqueued, from where it stood."""
    record = syncing(services, tenant, connection)
    job = _job(services, tenant, record.id)
    if job is None or not resumable(job, services.clock()):
        raise service.Refused(409, "no import waits to go on", "Reload the page.")
    return _enqueue(
        services, tenant, record.id, replace(job, status=RUNNING, reason="", tries=0)
    ).shown()


def resumable(job: Job, now: datetime) -> bool:
    """Whether the user may resume the import: paused, or stalled."""
    if job.status == PAUSED:
        return True
    return job.status == RUNNING and job.updated is not None and job.updated < now - STALLED


# -- the worker's step --------------------------------------------------------------------
def step(services: service.Services, tenant: str, connection: str) -> dict[str, Any]:
    """One step of the connection's import: the next contacts brought in by a cycle of
    contacts, the counts kept, the next step enqueued. What the `sync_worker` task of
    trigger "import" runs (through `service.work`)."""
    store = services.backend.store(tenant)
    record = service.connection_of(store, connection)
    if record is None:
        raise service.Refused(404, "no such connection")
    job = _job_of(store, connection)
    if job is None or job.status != RUNNING:
        return {"status": RunStatus.IDLE, "reason": "no import is under way"}
    try:
        listed = _listed(services, tenant, record, job.source)
    except service.Refused as exc:  # the account cannot be read now: come back later
        return _pause_or_retry(services, tenant, connection, job, exc.reason, exc.status == 409)
    remaining = sorted((r for r in listed if r.id > job.after), key=lambda r: r.id)
    if not job.chunk:
        chunk = [r.id for r in remaining[: job.size]]
        if not chunk:
            return _finish(services, tenant, connection, job)
        before = sorted(_linked_before(services, tenant, connection, chunk))
        job = replace(job, chunk=chunk, before=before, updated=services.clock())
        _save(services, tenant, connection, job)  # before anything is written
    wanted = set(job.chunk)
    records = tuple(r for r in remaining if r.id in wanted)
    run = service.work(services, tenant, connection, IMPORT, bring_in=records)
    outcome = RunStatus(run["status"])
    if outcome in _STOPPED:
        return _pause_or_retry(services, tenant, connection, job, str(run.get("reason")), True)
    if outcome not in _APPLIED:  # busy, out of time, lease lost, failed: the same again
        reason = f"the sync could not go on ({outcome}); it tries again shortly"
        return _pause_or_retry(services, tenant, connection, job, reason, False)
    job = _counted(services, tenant, connection, job, records, str(run["id"]))
    left = sum(1 for r in remaining if r.id > job.chunk[-1])
    now = services.clock()
    job = replace(
        job, after=job.chunk[-1], chunk=[], before=[], total=job.done + left, tries=0, updated=now
    )
    if left == 0:
        return {**run, "import": _finish(services, tenant, connection, job)["import"]}
    return {**run, "import": _enqueue(services, tenant, connection, job).shown()}


def _counted(
    services: service.Services,
    tenant: str,
    connection: str,
    job: Job,
    records: Sequence[SideRecord],
    run_id: str,
) -> Job:
    """The job's counts with the step's contacts added: each by what its link says now
    (made by creating it in the CRM, or by matching a CRM contact), else by the run's
    items (failed), else skipped (kept out, waiting for review, or gone)."""
    store = services.backend.store(tenant)
    links = {
        link.provider_id: link for link in store.links_for(connection, "contact", (), job.chunk)
    }
    failed = {
        item["provider_id"]
        for item in store.items(connection, run_id)
        if item["kind"] == "contact" and item["outcome"] == "fail"
    }
    failed |= {r.id for r in records if r.error}
    counts = {"created": 0, "linked": 0, "already": 0, "skipped": 0, "failed": 0}
    for contact in job.chunk:
        link = links.get(contact)
        if contact in job.before:
            counts["already"] += 1
        elif link is not None and link.state != "creating":
            made = link.key == twin_key("contact", "provider", contact)
            counts["created" if made else "linked"] += 1
        elif contact in failed or link is not None:  # a create left to finish: failed now
            counts["failed"] += 1
        else:
            counts["skipped"] += 1
    return replace(
        job,
        done=job.done + len(job.chunk),
        **{name: getattr(job, name) + n for name, n in counts.items()},
    )


def _finish(services: service.Services, tenant: str, connection: str, job: Job) -> dict[str, Any]:
    now = services.clock()
    done = replace(job, status=DONE, total=job.done, ended=now, updated=now)
    _save(services, tenant, connection, done)
    log.info("import finished", extra={"tenant": tenant, "connection": connection})
    return {"status": RunStatus.OK, "import": done.shown()}


def _pause_or_retry(
    services: service.Services,
    tenant: str,
    connection: str,
    job: Job,
    reason: str,
    pause: bool,
) -> dict[str, Any]:
    """A step that could not go on: paused until the user resumes it (the connection
    does not sync now, the account or the CRM refuses crmsync, or TRIES steps in a row
    could not go on), or tried again after RETRY."""
    if pause or job.tries + 1 >= TRIES:
        paused = replace(job, status=PAUSED, reason=reason, updated=services.clock())
        _save(services, tenant, connection, paused)
        return {"status": RunStatus.SKIPPED, "reason": reason, "import": paused.shown()}
    again = _enqueue(services, tenant, connection, replace(job, tries=job.tries + 1), RETRY)
    return {"status": RunStatus.BUSY, "reason": reason, "import": again.shown()}


# -- the store and the queue ------------------------------------------------------------------
def _enqueue(
    services: service.Services,
    tenant: str,
    connection: str,
    job: Job,
    delay: timedelta = timedelta(0),
) -> Job:
    """The job saved with its next step counted, then that step enqueued under a name
    of its own (the job's and the step's number). Returns the job as saved."""
    now = services.clock()
    job = replace(job, steps=job.steps + 1, updated=now)
    _save(services, tenant, connection, job)
    services.queue.enqueue(
        tenant,
        connection,
        name=task_name(tenant, f"{connection}-{job.id}-{job.steps}", now, timedelta(days=1)),
        not_before=now + delay,
        trigger=IMPORT,
    )
    return job


def _save(services: service.Services, tenant: str, connection: str, job: Job) -> None:
    services.backend.store(tenant).save_connection_record(connection, {"import": asdict(job)})


def _job(services: service.Services, tenant: str, connection: str) -> Job | None:
    return _job_of(services.backend.store(tenant), connection)


def _job_of(store: Any, connection: str) -> Job | None:
    return Job.of((store.connection_record(connection) or {}).get("import"))


# -- the account's contacts ------------------------------------------------------------------
def _listed(
    services: service.Services, tenant: str, record: ConnectionRecord, source: str
) -> list[SideRecord]:
    """The contacts of the source, read by the provider's kit as a cycle reads them."""
    kit = services.kit(record.provider)
    settings = service.settings_for(services, tenant, record)
    try:
        return list(kit.address_book(services, tenant, record, settings, source))
    except GrantRevoked as exc:
        raise service.Refused(
            409,
            f"your {kit.label} account no longer lets crmsync in",
            f"Sign in to {kit.label} again from your sync page.",
        ) from exc
    except SyncError as exc:
        raise _unreachable(kit.label, tenant, exc) from exc


def _source_label(
    services: service.Services, tenant: str, record: ConnectionRecord, source: str
) -> str:
    """The source's name as the user picked it; refused when it is none of theirs."""
    for offered in sources(services, tenant, record.id):
        if offered["id"] == source:
            return offered["label"]
    raise service.Refused(400, "pick all contacts or one of your labels", "Choose from the list.")


def _linked_before(
    services: service.Services, tenant: str, connection: str, contacts: Sequence[str]
) -> set[str]:
    """Those of the contacts that sync already (linked, or on their way to be)."""
    store = services.backend.store(tenant)
    found = store.links_for(connection, "contact", (), contacts)
    return {link.provider_id for link in found if link.provider_id}


def _unreachable(mailbox: str, tenant: str, exc: Exception) -> service.Refused:
    log.warning("address book unavailable", extra={"tenant": tenant, "error": type(exc).__name__})
    return service.Refused(
        503, f"{mailbox} or the CRM could not be reached just now", "Try again in a minute."
    )
