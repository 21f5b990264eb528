"""CRM documents attached to a message being written (CTX-1): found in the CRM as the
user, and handed to the mail client as an address crmsync answers,
`<public URL>/app/documents/<token>`, which serves the document from the CRM when the
recipient opens it. (A mail client whose add-ons cannot attach a file to the open
draft inserts that address; one that can attaches the bytes themselves.)

The token names the tenant, the connection whose user attached the document, the
document and when the address ends (`DAYS` after it was made); it is signed with
crmsync's secret (HMAC-SHA256), so it can be neither forged nor pointed at another
document, and holds nothing of the document. The document is read from the CRM as the
connection's CRM user each time it is opened: a document deleted in the CRM, or a
connection gone, opens nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

from crmsync import service
from crmsync.auth import sealed
from crmsync.crm.cards import Document
from crmsync.errors import NotFound
from crmsync.usecases.pane import Viewer, crm_of

log = logging.getLogger("crmsync.documents")

PATH = "/app/documents/"
DAYS = 30  # how long an attached document's address opens it
FOUND = 10  # documents a search lists


class BadToken(ValueError):
    """An address of no document crmsync hands out, or one that has ended."""


def find(services: service.Services, who: Viewer, text: str) -> list[Document]:
    """The documents the user may see whose name holds `text` (2 characters at least)."""
    text = text.strip()[:100]
    if len(text) < 2:
        return []
    found: list[Document] = crm_of(services, who).documents(text, FOUND)
    return found


def address(services: service.Services, tenant: str, connection: str, document: str) -> str:
    """The address that opens `document` for whoever holds it, for DAYS."""
    ends = services.clock() + timedelta(days=DAYS)
    token = sealed.seal(services.secret, "document", [tenant, connection, document], ends)
    return services.public_url.rstrip("/") + PATH + token


def opened(services: service.Services, token: str) -> tuple[str, str, str]:
    """(tenant, connection, document) of a token crmsync made and that has not ended."""
    try:
        tenant, connection, document = sealed.unseal(
            services.secret, "document", token, services.clock()
        )
    except sealed.Unsealed as exc:
        reason = "this document's address has ended" if exc.ended else "not a document address"
        raise BadToken(reason) from exc
    except ValueError as exc:  # sealed, but not with these three values
        raise BadToken("not a document address") from exc
    return str(tenant), str(connection), str(document)


def content(services: service.Services, token: str) -> tuple[str, str, bytes]:
    """The document an address names, read from the CRM as its connection's user:
    (file name, content type, bytes). NotFound (or Refused) when it opens nothing."""
    tenant, connection, document = opened(services, token)
    record = service.connection_of(services.backend.store(tenant), connection)
    if record is None or not record.live:
        raise NotFound("the connection that attached the document is gone")
    name, kind, data = crm_of(services, Viewer(tenant, record)).document(document)
    log.info("document opened", extra={"tenant": tenant, "connection": connection})
    return name, kind, data
