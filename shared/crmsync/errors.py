"""Errors are types: adapters raise them, the cycle handles them in one place."""

from __future__ import annotations


class SyncError(Exception):
    """Base of every error an adapter raises on purpose."""


class TransientError(SyncError):
    """Worth trying again later: timeouts, 5xx, throttling."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """HTTP 429 or a quota error; `retry_after` in seconds when the server said."""


class PermanentError(SyncError):
    """The other side refused this record; retrying unchanged will not help."""


class Conflict(PermanentError):
    """A precondition failed (HTTP 412): the record changed since it was read."""


class NotFound(PermanentError):
    """The record does not exist (HTTP 404/410 on a record)."""


class CursorExpired(SyncError):
    """A sync token or change cursor is too old (HTTP 410): list everything again."""


class GrantRevoked(SyncError):
    """The user's grant is gone (`invalid_grant`): the connection needs re-authorization."""


class AccountChanged(GrantRevoked):
    """The grant is another provider account's than the one the connection is bound to:
    nothing is read or written under it until the user reconnects the bound account or
    switches accounts on purpose (a change of account never deletes anything)."""


class PermissionDenied(PermanentError):
    """The acting user may not see or change this record (HTTP 403; AUTH-5)."""


class CrmUnauthorized(SyncError):
    """The CRM refused the tenant's credentials (HTTP 401): no request of this tenant
    can succeed until an operator replaces them, so the cycle stops."""


class AlreadyExists(PermanentError):
    """A create with an id that is taken (HTTP 409): for a client-chosen id derived from
    the idempotency key, the sign of an earlier attempt that went through."""


class Undeclared(Exception):
    """A function used something it does not declare in `crmsync.entrypoints.USES`, so
    its deployment grants it no access: a defect, never caught as a provider's error."""


class LeaseTaken(Exception):
    """A connection's lease this holder meant to take (taken lazily: written with its
    first write) or held is another holder's now. `first`: raised by that first write,
    so the holder wrote nothing under it and may start again."""

    def __init__(self, message: str, *, first: bool) -> None:
        super().__init__(message)
        self.first = first
