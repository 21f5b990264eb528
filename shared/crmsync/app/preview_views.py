"""A user's first-sync preview and address-book import, and their JSON twins:

- `/me/preview/<connection>`: what the connection's first cycle will link (and by which
  rule), create on each side and flag as a likely duplicate, before anything is written
  (BEY-3); POST `.../start` starts a first sync that waits for the user's go.
- `/me/import/<connection>`: pick the address book or one label, preview what importing
  it does, start it (POST `.../start`), and follow its progress (CON-9); POST
  `.../resume` goes on with one that paused.

A user reaches only their own connections (the same 404 for any other).
"""

from __future__ import annotations

from crmsync import service
from crmsync.app import Context, View, route
from crmsync.app.views import _own_connection as own_connection
from crmsync.usecases import importing, preview


# -- the first sync's preview (BEY-3) ------------------------------------------------------
@route("/me/preview/<connection>")
def first_sync_preview(context: Context) -> View:
    """Per kind: pairs to link and why, records to create on each side, near misses."""
    record = own_connection(context)
    data = preview.preview(context.services, context.who.tenant, record.id)
    return View(data, "app/preview_first_sync.html")


@route("/me/preview/<connection>/start", methods=("POST",))
def start_first_sync(context: Context) -> View:
    record = own_connection(context)
    enqueued = preview.start_first_sync(context.services, context.who.tenant, record.id)
    notice = "Your first sync has started; it links and creates what the preview showed."
    return View({"started": True, "enqueued": enqueued}, redirect="/me", notice=notice)


# -- importing an address book (CON-9) ------------------------------------------------------
@route("/me/import/<connection>")
def address_book_import(context: Context) -> View:
    """The import under way with its progress; else what can be imported, and with
    `preview=1&source=<id>`, what importing that source would do."""
    record = own_connection(context)
    tenant, args = context.who.tenant, context.request.args
    job = importing.status(context.services, tenant, record.id)
    running = job is not None and job["status"] == importing.RUNNING
    data = {
        "connection": record.id,
        "provider_label": context.services.kit(record.provider).label,
        "account": record.account,
        "job": job,
        "running": running,
        "syncs": record.active and record.syncs,
        "sources": [],
        "chosen": None,
        "preview": None,
    }
    if not running and data["syncs"]:
        data["sources"] = importing.sources(context.services, tenant, record.id)
        if args.get("preview"):
            chosen = args.get("source", importing.ALL)
            data["chosen"] = chosen
            data["preview"] = importing.preview(context.services, tenant, record.id, chosen)
    return View(data, "app/import_address_book.html")


@route("/me/import/<connection>/start", methods=("POST",))
def start_import(context: Context) -> View:
    record = own_connection(context)
    if "source" not in context.form:
        raise service.Refused(400, "pick what to import", "Choose from the list and try again.")
    try:
        size = int(context.form.get("size") or importing.CHUNK)
    except (TypeError, ValueError) as exc:
        raise service.Refused(400, "size: a whole number of contacts per step") from exc
    source = str(context.form["source"])
    job = importing.start(context.services, context.who.tenant, record.id, source, size)
    notice = f"The import of {job['source_label']} has started."
    return View({"import": job}, redirect=f"/me/import/{record.id}", notice=notice)


@route("/me/import/<connection>/resume", methods=("POST",))
def resume_import(context: Context) -> View:
    record = own_connection(context)
    job = importing.resume(context.services, context.who.tenant, record.id)
    notice = "The import goes on from where it stood."
    return View({"import": job}, redirect=f"/me/import/{record.id}", notice=notice)
