"""One connected Microsoft 365 mailbox behind the ProviderAccount port: Outlook
contacts (and, as they are built, the calendar and To Do), each a resource adapter of
its own."""

from __future__ import annotations

from crmsync.providers.accounts import KindAccount


class MicrosoftAccount(KindAccount):
    label = "Microsoft 365"
