"""One connected Google account behind the ProviderAccount port: People for contacts,
Calendar for activities, Tasks for to-dos, each a resource adapter of its own."""

from __future__ import annotations

from crmsync.providers.accounts import KindAccount, Resource

__all__ = ["GoogleAccount", "Resource"]


class GoogleAccount(KindAccount):
    label = "Google"
