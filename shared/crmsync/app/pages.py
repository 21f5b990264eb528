"""Every view module of the app, imported once so that their routes are registered."""

from crmsync.app import (  # noqa: F401
    admin_views,
    document_views,
    files_views,
    history_views,
    mail_views,
    pane_views,
    preview_views,
    queue_views,
    settings_views,
    views,
)
