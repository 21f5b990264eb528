"""Attachments too large for the CRM (EML-2): kept in the object store, and shown in the
CRM's history as a durable crmsync address, `<public URL>/app/files/<token>`, which
answers with a presigned link of a few minutes to the object. The CRM's link therefore
works for as long as the object is kept (the bucket's lifecycle), not only for the
week a presigned link can last.

The token names the tenant and the object and is signed with crmsync's secret
(HMAC-SHA256), so it can be neither forged nor pointed at another tenant's object; it
holds nothing of the message. An object's key is a digest of the message's key and the
attachment's bytes: storing it again (a retried pass) replaces it with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

from crmsync.mail.reader import Attachment
from crmsync.ports import AttachmentStore, Linked

PATH = "/app/files/"
_TOKEN = re.compile(r"([A-Za-z0-9_-]{1,80})\.([0-9a-f]{40})\.([A-Za-z0-9_-]{43})")
LINK_SECONDS = 300  # a presigned link lives this long after the durable address is opened


class BadToken(ValueError):
    """An address of no attachment crmsync keeps."""


def object_key(tenant: str, digest: str) -> str:
    return f"mail/{tenant}/{digest}"


def token(secret: bytes, tenant: str, digest: str) -> str:
    return f"{tenant}.{digest}.{_signature(secret, tenant, digest)}"


def opened(secret: bytes, text: str) -> tuple[str, str]:
    """The (tenant, object key) a token names; BadToken when it is not crmsync's."""
    found = _TOKEN.fullmatch(text)
    if found is None:
        raise BadToken("not an attachment address")
    tenant, digest, signature = found.groups()
    if not hmac.compare_digest(signature, _signature(secret, tenant, digest)):
        raise BadToken("not an attachment address")
    return tenant, object_key(tenant, digest)


def keeper(
    store: AttachmentStore, secret: bytes, public_url: str, tenant: str
) -> Callable[[str, Attachment], Linked]:
    """Keep an attachment of the message keyed `message_key` in `store`; its Linked,
    with the durable address the CRM shows."""

    def keep(message_key: str, attachment: Attachment) -> Linked:
        seed = hashlib.sha256(attachment.data).hexdigest() + message_key + attachment.filename
        digest = hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:40]
        store.put(
            object_key(tenant, digest),
            attachment.content_type,
            attachment.data,
            attachment.filename,
        )
        url = public_url.rstrip("/") + PATH + token(secret, tenant, digest)
        return Linked(attachment.filename, attachment.content_type, attachment.size, url)

    return keep


def _signature(secret: bytes, tenant: str, digest: str) -> str:
    mac = hmac.new(secret, f"crmsync-file|{tenant}|{digest}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")
