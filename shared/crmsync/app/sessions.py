"""Who is signed in to the web app: sessions and CSRF tokens.

A session is a random id in a cookie, signed with crmsync's secret (a forged or
altered cookie is refused before any read), HttpOnly (no script reads it), SameSite=Lax
(another site's forms and scripts do not carry it) and Secure on https. The browser
holds only the id; the server keeps the record (Firestore `sessions/{digest}`, erased
by TTL) under the id's SHA-256 digest, so signing out, or an admin turning a user off,
ends the session at once, and a leaked copy of the store opens no session.

Every form and every JSON call that rides on the cookie carries the session's CSRF
token (a hidden `csrf` field, or the `X-CSRF-Token` header), compared in constant time.
A call with a tenant admin's bearer token carries no cookie, so it needs none.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from crmsync import service

COOKIE = "crmsync_session"
TENANT_COOKIE = "crmsync_company"  # the company last signed in to (not secret)
TENANT_MAX_AGE = 400 * 24 * 3600
SIGN_IN_COOKIE = "crmsync_sign_in"  # binds a sign-in's state to the browser that began it
TTL = timedelta(hours=12)
SIGN_IN_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user of a tenant, a tenant admin, or both. `csrf` is
    empty for a bearer token's call (nothing ambient to forge)."""

    tenant: str
    user: str  # crmsync's user id ("" for an admin token)
    email: str
    admin: bool
    csrf: str = ""
    key: str = ""  # the session's digest ("" for an admin token)

    @property
    def by_token(self) -> bool:
        return not self.key


def open_session(
    services: service.Services, tenant: str, user: str, email: str, provider: str
) -> str:
    """A new session; returns the cookie value that names it."""
    session_id = secrets.token_urlsafe(32)
    now = services.clock()
    record = {
        "tenant": tenant,
        "user": user,
        "email": email,
        "provider": provider,
        "csrf": secrets.token_urlsafe(32),
        "created": now,
    }
    services.backend.sessions().put_session(_digest(session_id), record, now + TTL)
    return f"{session_id}.{_mac(services.secret, session_id)}"


def current(services: service.Services, request: Any) -> Principal | None:
    """The signed-in principal of the request's session cookie, or None. Whether the
    user is an admin is read from the tenant's record on each request, so a change there
    holds at once."""
    session_id = _verified(services.secret, request.cookies.get(COOKIE, ""))
    if session_id is None:
        return None
    key = _digest(session_id)
    record = services.backend.sessions().session(key, services.clock())
    if record is None:
        return None
    tenant, user, email = record["tenant"], record["user"], record.get("email", "")
    tenant_record = services.backend.store(tenant).tenant_record()
    if tenant_record is None:
        return None
    admin = is_admin(tenant_record, user, email)
    return Principal(tenant, user, email, admin, str(record["csrf"]), key)


def close_session(services: service.Services, principal: Principal) -> None:
    if principal.key:
        services.backend.sessions().drop_session(principal.key)


def is_admin(tenant_record: dict[str, Any], user: str, email: str) -> bool:
    """An admin is who the tenant's record names in `admins`: a crmsync user id, or an
    e-mail address."""
    named = {str(a).lower() for a in tenant_record.get("admins") or ()}
    return bool(user and user.lower() in named) or bool(email and email.lower() in named)


def check_csrf(principal: Principal, given: str | None) -> None:
    """A state-changing request rides on the session only with its CSRF token."""
    if principal.by_token:
        return
    if not given or not hmac.compare_digest(given.encode(), principal.csrf.encode()):
        raise service.Refused(
            403,
            "this form is out of date or did not come from crmsync's own page",
            "Go back, reload the page and try again.",
        )


def cookie(
    services: service.Services, name: str, value: str, path: str, max_age: int
) -> tuple[str, str]:
    """A Set-Cookie header: HttpOnly, SameSite=Lax, Secure on https; max_age 0 ends it."""
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly"]
    parts.append("SameSite=Lax")
    if urlsplit(services.public_url).scheme == "https":
        parts.append("Secure")
    return "Set-Cookie", "; ".join(parts)


def function_path(services: service.Services, function: str) -> str:
    """The path part of a function's address (cookies are scoped to it)."""
    return urlsplit(services.url(function)).path or "/"


def binding() -> tuple[str, str]:
    """A new sign-in's browser binding: the cookie's value, and its digest to keep in
    the sign-in's state (login CSRF: a code obtained in another browser is refused)."""
    value = secrets.token_urlsafe(24)
    return value, _digest(value)


def bound(value: str, digest: str) -> bool:
    return bool(value and digest) and hmac.compare_digest(_digest(value), digest)


def _verified(secret: bytes, value: str) -> str | None:
    session_id, _, signature = value.partition(".")
    if not session_id or not signature:
        return None
    if not hmac.compare_digest(_mac(secret, session_id).encode(), signature.encode()):
        return None
    return session_id


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _mac(secret: bytes, session_id: str) -> str:
    mac = hmac.new(secret, b"session:" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
