"""Change events a CRM sends to crmsync, and their signatures (the contract's
`crmChanged` webhook).

An event only asks for a cycle of one user's connection; the cycle reads the change
feed, so a repeated or lost event repeats or loses nothing. The signature header is
`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` under the tenant's event
secret; a signature more than five minutes from our clock is refused, so a captured
event cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import datetime

from crmsync.model import KINDS, Kind

TOLERANCE_SECONDS = 300
_HEADER = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,200}$")


class BadEvent(ValueError):
    """The event is refused (HTTP 4xx); the message says why, without the secret."""


@dataclass(frozen=True)
class ChangeEvent:
    tenant: str
    user: str
    kind: Kind
    ids: tuple[str, ...]
    sent_at: datetime


def sign(secret: bytes, body: bytes, at: datetime) -> str:
    """The `Crmsync-Signature` header value for `body` sent at `at`."""
    t = int(at.timestamp())
    return f"t={t},v1={_mac(secret, t, body)}"


def verify(secret: bytes, header: str | None, body: bytes, now: datetime) -> ChangeEvent:
    """The event in `body` when `header` signs it under `secret` and is fresh."""
    match = _HEADER.match(header or "")
    if match is None:
        raise BadEvent("missing or malformed Crmsync-Signature header")
    t, given = int(match.group(1)), match.group(2)
    if abs(now.timestamp() - t) > TOLERANCE_SECONDS:
        raise BadEvent("signature timestamp is more than five minutes from now")
    if not hmac.compare_digest(_mac(secret, t, body), given):
        raise BadEvent("signature does not match")
    return parse(body)


def parse(body: bytes) -> ChangeEvent:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadEvent("body is not JSON") from exc
    if not isinstance(data, dict) or set(data) != {"tenant", "user", "kind", "ids", "sent_at"}:
        raise BadEvent("body must have exactly tenant, user, kind, ids and sent_at")
    tenant, user, kind, ids = data["tenant"], data["user"], data["kind"], data["ids"]
    if not all(isinstance(v, str) and _ID.match(v) for v in (tenant, user)):
        raise BadEvent("tenant and user must be ids")
    if kind not in KINDS:
        raise BadEvent(f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(ids, list) or len(ids) > 1000:
        raise BadEvent("ids must be a list of at most 1000 ids")
    if not all(isinstance(i, str) and _ID.match(i) for i in ids):
        raise BadEvent("ids must be ids")
    try:
        sent_at = datetime.fromisoformat(str(data["sent_at"]))
    except ValueError as exc:
        raise BadEvent("sent_at is not an ISO 8601 time") from exc
    if sent_at.tzinfo is None:
        raise BadEvent("sent_at needs a time zone offset")
    return ChangeEvent(tenant, user, kind, tuple(ids), sent_at)


def _mac(secret: bytes, t: int, body: bytes) -> str:
    return hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
