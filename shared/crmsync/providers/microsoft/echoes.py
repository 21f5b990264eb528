"""Deletes no delta round reports: Graph's delta rounds are state-based, so an item a
cycle made after its round began, and the user deleted before the next round, was
never in any round's state, and no round says it is gone. Its link would then wait
for a CRM edit to find out.

A Graph resource therefore keeps, in the cursor saved after a cycle's writes, the ids
it made in that cycle; the next round reads those it does not report on their own
(one request each, and only then: an item the round reports costs nothing), and
those that are gone read as gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from crmsync.engine.records import SideRecord

SEPARATOR = "\n"  # never in a delta link, which is a URL


def split(cursor: str | None) -> tuple[str | None, list[str]]:
    """The delta link of a kept cursor, and the ids made after its round began."""
    if cursor is None:
        return None, []
    link, *made = cursor.split(SEPARATOR)
    return link, [m for m in made if m]


def kept(cursor: str, made: Sequence[str]) -> str:
    """The cursor to save after a cycle that made `made`."""
    link, earlier = split(cursor)
    assert link is not None
    ids = list(dict.fromkeys([*earlier, *made]))
    return SEPARATOR.join([link, *ids])


def unreported(
    made: Iterable[str], reported: Iterable[SideRecord], get: Callable[[str], SideRecord]
) -> list[SideRecord]:
    """The made items the round did not report that are gone, as gone records."""
    seen = {r.id for r in reported}
    found = [get(item_id) for item_id in made if item_id not in seen]
    return [r for r in found if r.fields is None]


class RemembersWhatItMade:
    """A Graph resource's part: `_made_now(id)` at each create; the cycle asks for the
    cursor to keep after its writes (`cursor_after_writes`)."""

    def _made_now(self, item_id: str) -> None:
        self.__dict__.setdefault("_made", []).append(item_id)

    def cursor_after_writes(self, cursor: str) -> str:
        made: list[str] = self.__dict__.get("_made", [])
        return kept(cursor, made) if made else cursor
