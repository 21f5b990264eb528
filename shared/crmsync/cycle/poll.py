"""What a poll looks at before it costs anything: the provider's change feed of each
kind the provider pushes nothing for, from its cursor. Only a kind whose feed shows a
change the links do not already hold needs a cycle; when none does, the poll ends
there, having written nothing and taken no lease.

A record the feed shows again that its link already holds at that version (the echo of
crmsync's own write, or a feed that lists recent records again) is no change, as the
planner sees it (`engine.linked.news`); neither is a record that is gone or outside the
sync scope and was never linked. When a kind's feed shows nothing else, its cursor moves
past what it showed, so the next poll does not read it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from crmsync.engine import SideRecord
from crmsync.engine.linked import news
from crmsync.engine.reconcile import Links
from crmsync.errors import CursorExpired, PermanentError, TransientError
from crmsync.model import Kind
from crmsync.ports import ProviderAccount, Store

log = logging.getLogger("crmsync.cycle")


def changed_kinds(
    store: Store, connection: str, provider: ProviderAccount, kinds: Iterable[Kind]
) -> list[Kind]:
    """The kinds among `kinds` whose provider feed shows a change since its cursor (or
    that were never read): those a cycle must sync."""
    return [kind for kind in kinds if _changed(store, connection, provider, kind)]


def _changed(store: Store, connection: str, provider: ProviderAccount, kind: Kind) -> bool:
    cursor = store.cursor(connection, "provider", kind)
    if cursor is None:
        return True  # never read: its first cycle lists it whole
    try:
        page = provider.changes(kind, cursor)
    except CursorExpired:
        return True  # the cycle lists it whole (RUN-4)
    except (TransientError, PermanentError) as exc:  # the next poll, or cycle, reads it
        log.info(
            "poll could not read a feed",
            extra={"connection": connection, "kind": kind, "error": type(exc).__name__},
        )
        return False
    if page.more:
        return True
    if not page.records:
        return False
    ids = [record.id for record in page.records]
    links = Links.of(store.links_for(connection, kind, (), ids))
    if any(_news(record, links) for record in page.records):
        return True
    if page.cursor != cursor:
        store.save_cursor(connection, "provider", kind, page.cursor)
    return False


def _news(record: SideRecord, links: Links) -> bool:
    link = links.by_provider(record.id)
    if link is None:
        return record.error is not None or (record.fields is not None and record.in_scope)
    return news(link, None, record) is not None
