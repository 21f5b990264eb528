"""Attachments kept for the CRM (EML-2): the durable address a CRM history item links
to. Anyone holding the address may open it (a colleague reading the CRM's history has
no crmsync session): the signed token is the permission, and it names one object of one
tenant. It answers with a presigned link of a few minutes to the object."""

from __future__ import annotations

from crmsync.app import Context, View, route
from crmsync.errors import PermanentError
from crmsync.mail import files
from crmsync.service import Refused
from crmsync.usecases import attachments

UNOPENED = "The store this attachment is kept in cannot be opened just now."
ASK = "Ask your company's crmsync admin to name its attachment bucket again."
GONE = "This attachment is not kept any more, or the address is not complete."
NEXT = "Open the e-mail it came with in your mailbox to see the attachment."


@route("/files/<token>", who="anyone")
def attachment(context: Context) -> View:
    try:
        tenant, key = files.opened(context.services.secret, context.params["token"])
    except files.BadToken:
        raise Refused(404, GONE, NEXT) from None
    try:
        store = attachments.store_for(context.services, tenant)  # its own bucket, or ours
    except PermanentError:
        raise Refused(503, UNOPENED, ASK) from None
    if store is None:
        raise Refused(404, GONE, NEXT)
    link = store.link(key, seconds=files.LINK_SECONDS)
    return View({"link": link}, status=303, headers={"Location": link})
