"""Signing in to the web app with the identity a user already has at their provider
(OpenID Connect through the provider's kit: the ID token's issuer, audience, expiry and
nonce verified), matched to a user of the tenant.

The account that signed in is a tenant's user when:
1. one of the tenant's connections is bound to that very account (its stable id), or
2. its address is the one the tenant's CRM user directory has for a CRM user, and the
   address can be trusted: the provider verified it, or the account belongs to an
   organisation the tenant approved crmsync for (an organisation-wide consent).
An account the tenant's record names in `admins` (by address) may sign in as an admin
without being a CRM user. Anyone else is refused, and nothing is written.

The sign-in's state is signed, single use and expiring (as an onboarding consent's is),
and bound to the browser that began it by a short-lived cookie, so a code obtained in
another browser cannot sign this one in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crmsync import service
from crmsync.app import sessions
from crmsync.auth.state import SIGN_IN, BadState, begin, finish, keep_secret
from crmsync.connections import Identity
from crmsync.errors import PermanentError

log = logging.getLogger("crmsync.app")

_AGAIN = "Go back to the sign-in page and try again."


@dataclass(frozen=True)
class SignedIn:
    """A finished sign-in: the session cookie to set, and the page to show next."""

    cookie: str
    then: str


def is_sign_in(state: str | None) -> bool:
    """Whether a callback's state is a web-app sign-in's (not a consent's)."""
    return (state or "").startswith(SIGN_IN)


def providers(services: service.Services) -> list[dict[str, str]]:
    """The providers a person can sign in with here."""
    return [
        {"id": name, "label": services.kit(name).label}
        for name in services.provider_names()
        if services.kit(name).available(services)
    ]


def start(
    services: service.Services, tenant: str, provider: str, then: str = "", hint: str = ""
) -> tuple[str, str]:
    """Where to send the browser to sign in, and the value of its binding cookie."""
    if not service.safe_id(tenant) or services.backend.store(tenant).tenant_record() is None:
        raise service.Refused(
            404,
            f"crmsync has no company with the id {tenant!r}",
            "Check the sign-in address your admin gave you.",
        )
    if provider not in {p["id"] for p in providers(services)}:
        raise service.Refused(400, "crmsync cannot sign you in with that provider here", _AGAIN)
    cookie, binding = sessions.binding()
    started = begin(
        services.secret,
        service._states(services),
        tenant=tenant,
        user="",
        provider=provider,
        services=(),
        now=services.clock(),
        ttl=sessions.SIGN_IN_TTL,
        kind=SIGN_IN,
        binding=binding,
        then=then if _local(then) else "",
    )
    nonce = _nonce(services, started.nonce)
    consent = services.kit(provider).sign_in(services, started, nonce, hint)
    if consent.secret is not None:  # the provider's library made the flow's own secrets
        keep_secret(service._states(services), started, consent.secret)
    return consent.url, cookie


def finish_sign_in(
    services: service.Services, state: str | None, code: str | None, cookie: str
) -> SignedIn:
    """The provider's answer to a sign-in: the account verified, matched to the tenant's
    user, a session opened."""
    try:
        pending = finish(services.secret, service._states(services), state, services.clock())
    except BadState as exc:
        raise service.Refused(
            400, "this sign-in page was already used or is out of date", _AGAIN
        ) from exc
    if not sessions.bound(cookie, pending.binding):
        raise service.Refused(400, "this sign-in was started in another browser or window", _AGAIN)
    if not code:
        raise service.Refused(400, "the sign-in did not finish", _AGAIN)
    nonce = _nonce(services, (state or "").partition(".")[0])
    try:
        identity = services.kit(pending.provider).signed_in(services, code, pending.verifier, nonce)
    except PermanentError as exc:
        log.warning("sign-in not confirmed", extra={"error": type(exc).__name__})
        raise service.Refused(400, "the sign-in could not be confirmed", _AGAIN) from exc
    user = match(services, pending.tenant, pending.provider, identity)
    cookie_value = sessions.open_session(
        services, pending.tenant, user, identity.email, pending.provider
    )
    log.info("signed in", extra={"tenant": pending.tenant, "user": user or "(admin)"})
    return SignedIn(cookie_value, pending.then)


def match(services: service.Services, tenant: str, provider: str, identity: Identity) -> str:
    """The tenant's user the account is; "" for an admin who is no CRM user. Refused
    (403) for an account that is neither."""
    store = services.backend.store(tenant)
    tenant_record = store.tenant_record() or {}
    records = service.connections_of(store)
    for record in records:
        if record.provider == provider and record.subject and record.subject == identity.subject:
            return record.user
    email = identity.email.lower()
    if email and _trusted(tenant_record, provider, identity):
        user = _directory_user(services, tenant, tenant_record, email, records)
        if user:
            return user
        if sessions.is_admin(tenant_record, "", email):
            return ""
    raise service.Refused(
        403,
        f"{identity.email or 'this account'} is not a user of "
        f"{tenant_record.get('name') or tenant} in crmsync",
        "Sign in with the account your company's CRM has for you (or the one you "
        "connected), or ask your admin to add you.",
    )


def _trusted(tenant_record: Mapping[str, Any], provider: str, identity: Identity) -> bool:
    """Whether the account's address may name a CRM user: the provider verified it, or
    the account is of an organisation the tenant approved crmsync for."""
    if identity.email_verified:
        return True
    approved = (tenant_record.get("admin_consent") or {}).get(provider) or {}
    return bool(identity.directory) and identity.directory == approved.get("directory")


def _directory_user(
    services: service.Services,
    tenant: str,
    tenant_record: Mapping[str, Any],
    email: str,
    records: list[Any],
) -> str:
    """The user whose CRM user has this address in the CRM's directory."""
    try:
        directory = service.crm_directory(services, tenant, tenant_record)
    except Exception as exc:  # the CRM is down: only bound accounts sign in meanwhile
        log.warning(
            "crm directory unavailable", extra={"tenant": tenant, "error": type(exc).__name__}
        )
        raise service.Refused(
            503,
            "crmsync could not ask your company's CRM who you are",
            "Try again in a few minutes.",
        ) from exc
    crm_users = [person.id for person in directory if person.email.lower() == email]
    if not crm_users:
        return ""
    store = services.backend.store(tenant)
    for record in records:  # a user mapped to that CRM user, who connected before
        if service.crm_user_of(store, record.user) in crm_users:
            return str(record.user)
    return crm_users[0]  # a user's id is their CRM user's unless mapped otherwise


def _nonce(services: service.Services, state_nonce: str) -> str:
    """The OpenID Connect nonce of a sign-in: derived from its state, so nothing more
    is kept, and unguessable without crmsync's secret."""
    mac = hmac.new(services.secret, b"oidc-nonce:" + state_nonce.encode(), hashlib.sha256)
    return mac.hexdigest()


def _local(then: str) -> bool:
    """Only a path of the app itself is a place to go after signing in (no open
    redirect)."""
    return then.startswith("/") and not then.startswith("//") and "\\" not in then
