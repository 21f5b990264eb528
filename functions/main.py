"""Cloud Functions entry points of crmsync: one source archive, one function per entry
point, each a few lines over `crmsync.entrypoints`. The crmsync package is imported
lazily, so an instance pays only for what its own function uses at cold start."""

from __future__ import annotations

from typing import Any

import functions_framework


def _entrypoints() -> Any:
    from crmsync import entrypoints

    return entrypoints


@functions_framework.http
def oauth_start(request: Any) -> Any:
    """Public: a user opens their onboarding link (AUTH-1)."""
    return _entrypoints().oauth_start(request)


@functions_framework.http
def oauth_callback(request: Any) -> Any:
    """Public: the provider sends the user back after consent (AUTH-1, AUTH-2)."""
    return _entrypoints().oauth_callback(request)


@functions_framework.http
def google_webhook(request: Any) -> Any:
    """Public: Google Calendar push notifications (RUN-3)."""
    return _entrypoints().google_webhook(request)


@functions_framework.http
def graph_webhook(request: Any) -> Any:
    """Public: Microsoft Graph change and lifecycle notifications, and the validation
    handshake of a subscription (RUN-1, RUN-3)."""
    return _entrypoints().graph_webhook(request)


@functions_framework.http
def addon(request: Any) -> Any:
    """Public: the mail client's pane (CTX-1): Gmail's add-on events at /google, each
    checked against Google's ID tokens."""
    return _entrypoints().addon(request)


@functions_framework.http
def crm_events(request: Any) -> Any:
    """CRM change events, signed; direct HTTPS or Pub/Sub push (RUN-3)."""
    return _entrypoints().crm_events(request)


@functions_framework.http
def gmail_push(request: Any) -> Any:
    """Pub/Sub push: Gmail's mailbox notifications, routed to their connections."""
    return _entrypoints().gmail_push(request)


@functions_framework.http
def scheduler_fanout(request: Any) -> Any:
    """Cloud Scheduler, every minute: enqueue due connections (RUN-2)."""
    return _entrypoints().scheduler_fanout(request)


@functions_framework.http
def sync_worker(request: Any) -> Any:
    """Cloud Tasks: run one connection's cycle (RUN-3, RUN-6)."""
    return _entrypoints().sync_worker(request)


@functions_framework.http
def admin(request: Any) -> Any:
    """Tenant admins: health, connection status, sync now."""
    return _entrypoints().admin(request)


@functions_framework.http
def app(request: Any) -> Any:
    """Public: the web app and its JSON API for users and tenant admins (sign-in with
    Google or Microsoft; sessions, CSRF)."""
    return _entrypoints().app(request)
