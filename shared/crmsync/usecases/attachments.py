"""EML-2: where a tenant's mail attachments too large for its CRM are kept.

By default in the deployment's bucket (Cloud Storage, `crmsync.entrypoints`); a tenant
admin may name an S3-compatible bucket of the tenant's own instead: its endpoint, name,
region and an access key with its secret. Before it is kept, crmsync writes a small
object there with that key, so a wrong key or bucket is told at once and nothing
changes. The secret is sealed by the token vault for the tenant (never kept or shown
in the clear); the address and key id are shown back to admins.

`store_for` is the store a mail pass keeps attachments in, and the app opens the CRM's
links from: the tenant's bucket when it named one, else the deployment's.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from crmsync import service
from crmsync.auth.vault import VaultError
from crmsync.errors import PermanentError, TransientError
from crmsync.objectstore import Bucket, ObjectStore
from crmsync.ports import AttachmentStore

log = logging.getLogger("crmsync.usecases.attachments")

FIELD = "attachments_bucket"  # on the tenant record
PROBE = "crmsync/check"  # the object written to check a bucket before it is kept
LABELS = {  # the form's names of the fields, for what is said about them
    "endpoint": "the store address",
    "bucket": "the bucket",
    "region": "the region",
    "access_key": "the access key id",
    "secret": "the secret access key",
}
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789.-_")


def shown(services: service.Services, tenant: str) -> dict[str, Any] | None:
    """The tenant's own bucket as admins see it (no secret), or None."""
    kept = _kept(services, tenant)
    if kept is None:
        return None
    return {k: kept[k] for k in ("endpoint", "bucket", "region", "access_key")}


def name_bucket(
    services: service.Services, tenant: str, given: Mapping[str, Any]
) -> dict[str, Any]:
    """Keep the tenant's own bucket (`endpoint`, `bucket`, `region`, `access_key`,
    `secret`) once a write there with that key succeeds; returns it as `shown`."""
    endpoint = _text(given, "endpoint", 300).rstrip("/")
    bucket = _text(given, "bucket", 63)
    region = _text(given, "region", 40, required=False) or "us-east-1"
    access_key = _text(given, "access_key", 128)
    secret = _text(given, "secret", 256)
    _check_endpoint(endpoint)
    if len(bucket) < 3 or not set(bucket) <= _NAME_CHARS:
        raise service.Refused(
            400,
            "a bucket name is 3 to 63 lower-case letters, digits, dots, hyphens or underscores",
        )
    store = ObjectStore(Bucket(endpoint, bucket, region, access_key, secret))
    try:
        store.put(PROBE, "text/plain", b"crmsync keeps mail attachments here\n")
    except TransientError as exc:
        raise service.Refused(
            400,
            "the store could not be reached at this address",
            "Check the store address (and that the store is up), then try again.",
        ) from exc
    except PermanentError as exc:
        raise service.Refused(
            400,
            f"the bucket refused crmsync's write with this key: {exc}",
            "Check the bucket's name and region, and that the key may write objects in it.",
        ) from exc
    sealed = services.vault.seal(secret.encode(), _context(tenant))
    record = {
        "endpoint": endpoint,
        "bucket": bucket,
        "region": region,
        "access_key": access_key,
        "secret": sealed,
    }
    services.backend.store(tenant).save_tenant_record({FIELD: record})
    log.info("tenant bucket named", extra={"tenant": tenant})
    found = shown(services, tenant)
    assert found is not None
    return found


def forget_bucket(services: service.Services, tenant: str) -> None:
    """Keep the tenant's attachments in the deployment's bucket again (those kept in
    the tenant's stay there; their links open only while the tenant names it)."""
    services.backend.store(tenant).save_tenant_record({FIELD: None})
    log.info("tenant bucket forgotten", extra={"tenant": tenant})


def store_for(services: service.Services, tenant: str) -> AttachmentStore | None:
    """Where the tenant's attachments are kept: its own bucket, else the deployment's
    (None: attachments too large for the CRM are named only)."""
    kept = _kept(services, tenant)
    if kept is None:
        return services.attachments
    try:
        secret = services.vault.open(kept["secret"], _context(tenant)).decode()
    except VaultError as exc:  # sealed under a key-encryption key since retired
        log.warning("tenant bucket secret does not open", extra={"tenant": tenant})
        raise PermanentError("the key of the company's attachment bucket does not open") from exc
    bucket = Bucket(kept["endpoint"], kept["bucket"], kept["region"], kept["access_key"], secret)
    return ObjectStore(bucket)


def _kept(services: service.Services, tenant: str) -> dict[str, Any] | None:
    record = services.backend.store(tenant).tenant_record() or {}
    kept = record.get(FIELD)
    return dict(kept) if isinstance(kept, Mapping) and kept.get("secret") else None


def _context(tenant: str) -> str:
    return f"{tenant}/attachments-bucket"


def _text(given: Mapping[str, Any], name: str, longest: int, *, required: bool = True) -> str:
    value = given.get(name)
    if value is None or value == "":
        if required:
            raise service.Refused(400, f"{LABELS[name]} is missing", "Fill it in and try again.")
        return ""
    if not isinstance(value, str) or len(value.strip()) > longest:
        raise service.Refused(400, f"{LABELS[name]} is longer than {longest} characters")
    return value.strip()


def _check_endpoint(endpoint: str) -> None:
    """https, or http to this machine only (a store served beside crmsync)."""
    parts = urlsplit(endpoint)
    local = parts.hostname in ("localhost",) or _loopback(parts.hostname or "")
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and local:
        return
    raise service.Refused(
        400,
        "the store address must begin with https://",
        "Give the store's https:// address, e.g. https://s3.eu-west-1.amazonaws.com.",
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
