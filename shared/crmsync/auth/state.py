"""OAuth `state`: signed, single-use and expiring (AUTH-2).

The state a provider sends back is `<nonce>.<signature>`; the nonce keys a record kept
server-side (Firestore `oauth_states/{nonce}` in production) that holds who started
the flow and the PKCE verifier, which therefore never travels through the browser.
Finishing takes the record away, so a replayed state finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from crmsync.ports import StateStore

TTL = timedelta(minutes=10)
# The mark of an organisation-wide consent's state (never in url-safe base64's alphabet,
# so no user's state starts with it).
ADMIN_CONSENT = "~admin~"
# The mark of a web-app sign-in's state (identity only, no grant kept).
SIGN_IN = "~signin~"


class BadState(ValueError):
    """The callback's state is not one crmsync issued, was used already, or expired."""


@dataclass(frozen=True)
class PendingAuth:
    """Who started an OAuth flow, and the PKCE verifier to redeem its code with."""

    tenant: str
    user: str
    provider: str
    services: tuple[str, ...]
    verifier: str
    expires: datetime
    switch: bool = False  # the user chose to replace the connection's account
    link_issued: float = 0.0  # when the onboarding link the flow started from was made
    binding: str = ""  # a sign-in's: the digest of the browser's sign-in cookie
    then: str = ""  # a sign-in's: the app's page to show once signed in
    preview: bool = False  # BEY-3: the first sync waits until the user starts it


@dataclass(frozen=True)
class Started:
    state: str
    challenge: str  # PKCE S256 code challenge, for the authorization URL
    pending: PendingAuth

    @property
    def nonce(self) -> str:
        return self.state.partition(".")[0]


@dataclass(frozen=True)
class Consent:
    """Where a provider's kit sends the user to consent, and, when the provider's own
    library made the flow's secrets (its PKCE verifier and nonce), what to keep of them
    for the callback instead of crmsync's verifier."""

    url: str
    secret: str | None = None


def keep_secret(states: StateStore, started: Started, secret: str) -> None:
    """The flow's secret for the callback is `secret`, not the verifier `begin` made."""
    states.put_state(started.nonce, _record(replace(started.pending, verifier=secret)))


def begin(
    secret: bytes,
    states: StateStore,
    *,
    tenant: str,
    user: str,
    provider: str,
    services: tuple[str, ...],
    now: datetime,
    ttl: timedelta = TTL,
    switch: bool = False,
    link_issued: float = 0.0,
    kind: str = "",
    binding: str = "",
    then: str = "",
    preview: bool = False,
) -> Started:
    """A new flow's state. `kind` marks the state of a flow other than a user's consent
    (e.g. ADMIN_CONSENT): the callback tells them apart before taking the state."""
    nonce = kind + secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(64)[:96]
    pending = PendingAuth(
        tenant,
        user,
        provider,
        tuple(services),
        verifier,
        now + ttl,
        switch,
        link_issued,
        binding,
        then,
        preview,
    )
    states.put_state(nonce, _record(pending))
    return Started(f"{nonce}.{_sign(secret, nonce)}", challenge(verifier), pending)


def _record(pending: PendingAuth) -> dict[str, Any]:
    return {
        "tenant": pending.tenant,
        "user": pending.user,
        "provider": pending.provider,
        "services": list(pending.services),
        "verifier": pending.verifier,
        "expires": pending.expires.isoformat(),
        "switch": pending.switch,
        "link_issued": pending.link_issued,
        "binding": pending.binding,
        "then": pending.then,
        "preview": pending.preview,
    }


def finish(secret: bytes, states: StateStore, state: str | None, now: datetime) -> PendingAuth:
    """The pending flow this state belongs to; raises BadState otherwise."""
    nonce, _, signature = (state or "").partition(".")
    if not nonce or not hmac.compare_digest(_sign(secret, nonce).encode(), signature.encode()):
        raise BadState("the state was not issued by crmsync")
    record = states.take_state(nonce)
    if record is None:
        raise BadState("the state was used already or is unknown")
    expires = datetime.fromisoformat(record["expires"])
    if expires <= now:
        raise BadState("the sign-in took too long; start again")
    return PendingAuth(
        record["tenant"],
        record["user"],
        record["provider"],
        tuple(record["services"]),
        record["verifier"],
        expires,
        bool(record.get("switch", False)),
        float(record.get("link_issued", 0.0)),
        str(record.get("binding", "")),
        str(record.get("then", "")),
        bool(record.get("preview", False)),
    )


def challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _sign(secret: bytes, nonce: str) -> str:
    mac = hmac.new(secret, b"oauth-state:" + nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
