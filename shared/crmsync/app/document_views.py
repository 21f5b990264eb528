"""CRM documents attached to messages (CTX-1): the address a message's recipient opens,
`/documents/<token>`. Anyone holding the address may open it until it ends (the signed
token is the permission, for one document); the document is read from the CRM each
time, as the user who attached it."""

from __future__ import annotations

from crmsync.app import Context, View, route
from crmsync.errors import NotFound, PermanentError, TransientError
from crmsync.service import Refused
from crmsync.usecases import documents

GONE = "This document is not available any more"
NEXT = "Ask the person who sent it to you for it again."


@route("/documents/<token>", who="anyone")
def document(context: Context) -> View:
    try:
        name, kind, data = documents.content(context.services, context.params["token"])
    except documents.BadToken:
        raise Refused(404, GONE, NEXT) from None
    except (NotFound, PermanentError):
        raise Refused(404, GONE, NEXT) from None
    except TransientError:
        raise Refused(
            503, "The CRM could not be reached just now", "Try again in a minute."
        ) from None
    safe = "".join(c for c in name if c.isprintable() and c not in '"\\\r\n') or "document"
    headers = {
        "Content-Type": kind,
        "Content-Disposition": f'attachment; filename="{safe}"',
        "X-Content-Type-Options": "nosniff",
    }
    return View({}, body=data, headers=headers)
