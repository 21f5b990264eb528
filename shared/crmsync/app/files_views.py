"""Attachments kept for the CRM (EML-2): the durable address a CRM history item links
to. Anyone holding the address may open it (a colleague reading the CRM's history has
no crmsync session): the signed token is the permission, and it names one object of one
tenant. It answers with a presigned link of a few minutes to the object."""

from __future__ import annotations

from crmsync.app import Context, View, route
from crmsync.mail import files
from crmsync.service import Refused

GONE = "This attachment is not kept any more, or the address is not complete."
NEXT = "Open the e-mail it came with in your mailbox to see the attachment."


@route("/files/<token>", who="anyone")
def attachment(context: Context) -> View:
    store = context.services.attachments
    try:
        _, key = files.opened(context.services.secret, context.params["token"])
    except files.BadToken:
        raise Refused(404, GONE, NEXT) from None
    if store is None:
        raise Refused(404, GONE, NEXT)
    link = store.link(key, seconds=files.LINK_SECONDS)
    return View({"link": link}, status=303, headers={"Location": link})
