"""Sealed values: a few plain values with an end, packed into a URL-safe token signed
with crmsync's secret (HMAC-SHA256) for one purpose. A token can be neither forged, nor
altered, nor used for another purpose; it hides nothing (its values are readable), so it
carries ids, never secrets. Used for the addresses of attached documents and the keys
that sign a mail client's pane in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

LONGEST = 2000  # characters of a token taken at all


class Unsealed(ValueError):
    """Not a token of this purpose (`ended` False), or one that has ended (True)."""

    def __init__(self, reason: str, ended: bool = False) -> None:
        super().__init__(reason)
        self.ended = ended


def seal(secret: bytes, purpose: str, values: Sequence[Any], ends: datetime) -> str:
    """`values` (JSON-able) until `ends`, for `purpose`."""
    payload = json.dumps([*values, int(ends.timestamp())], separators=(",", ":"))
    packed = _b64(payload.encode())
    return f"{packed}.{_signature(secret, purpose, packed)}"


def unseal(secret: bytes, purpose: str, token: str, now: datetime) -> list[Any]:
    """The values `seal` packed into `token` for `purpose`; Unsealed otherwise, or once
    it has ended."""
    packed, _, signature = token.partition(".")
    if not packed or len(token) > LONGEST:
        raise Unsealed("not a token of crmsync's")
    if not hmac.compare_digest(signature, _signature(secret, purpose, packed)):
        raise Unsealed("not a token of crmsync's")
    try:
        decoded: list[Any] = list(json.loads(base64.urlsafe_b64decode(packed + "==")))
        *values, ends = decoded
        ended = int(ends) < now.timestamp()
    except (ValueError, TypeError) as exc:
        raise Unsealed("not a token of crmsync's") from exc
    if ended:
        raise Unsealed("the token has ended", ended=True)
    return values


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _signature(secret: bytes, purpose: str, packed: str) -> str:
    return _b64(hmac.new(secret, f"crmsync-{purpose}|{packed}".encode(), hashlib.sha256).digest())
