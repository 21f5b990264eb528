"""Deletes no delta round reports: Graph's delta rounds are state-based, so an item a
cycle made after its round began, and the user deleted before the next round, was
never in any round's state, and no round says it is gone. Its link would then wait
for a CRM edit to find out.

A Graph resource therefore keeps, in the cursor saved after a cycle's writes, the ids
it made in that cycle; the next round reads those it does not report on their own
(one request each, and only then: an item the round reports costs nothing), and
those that are gone read as gone.

A resource whose rounds leave out what crmsync keeps on an item (a calendar's: its
extended properties), so that each item a round reports is read again, also keeps the
version each of its writes left (`~id version`): an item the next round reports at
that version is the echo of crmsync's own write, and is not read again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from crmsync.engine.records import SideRecord

SEPARATOR = "\n"  # never in a delta link, which is a URL
# The ids a cursor keeps, at most (as text): a connection's cursors share its document
# with the rest of its state, under Firestore's 1 MiB a document, and a Graph id is
# about 150 characters. A first sync that makes thousands keeps the latest of them;
# one of the others deleted before the next round is found by the next CRM edit of it.
MADE_BYTES = 64 * 1024


WROTE = "~"  # an entry `~id version`: the version a write of this cycle left


def split(cursor: str | None) -> tuple[str | None, list[str]]:
    """The delta link of a kept cursor, and the ids made after its round began."""
    if cursor is None:
        return None, []
    link, *made = cursor.split(SEPARATOR)
    return link, [m for m in made if m and not m.startswith(WROTE)]


def written(cursor: str | None) -> dict[str, str]:
    """The versions the writes of the cycle that kept `cursor` left, by item id."""
    if cursor is None:
        return {}
    entries = cursor.split(SEPARATOR)[1:]
    pairs = (e[len(WROTE) :].partition(" ") for e in entries if e.startswith(WROTE))
    return {item_id: version for item_id, _, version in pairs if item_id and version}


def kept(cursor: str, made: Sequence[str], wrote: Mapping[str, str] | None = None) -> str:
    """The cursor to save after a cycle that made `made` and left the versions `wrote`,
    within MADE_BYTES: the ids made first, the latest of them when not all fit."""
    link, earlier = split(cursor)
    assert link is not None
    ids = list(dict.fromkeys([*earlier, *made]))
    entries = [f"{WROTE}{i} {v}" for i, v in (wrote or {}).items()]
    kept_ids = _latest(ids, MADE_BYTES)
    room = MADE_BYTES - sum(len(i) + len(SEPARATOR) for i in kept_ids)
    return SEPARATOR.join([link, *kept_ids, *_latest(entries, room)])


def _latest(entries: Sequence[str], room: int) -> list[str]:
    """The last of `entries` that fit in `room` characters, in order."""
    found: list[str] = []
    size = 0
    for entry in reversed(entries):
        size += len(entry) + len(SEPARATOR)
        if size > room:
            break
        found.append(entry)
    return found[::-1]


def unreported(
    made: Iterable[str],
    reported: Iterable[SideRecord],
    get: Callable[[str], SideRecord],
    echoed: Iterable[str] = (),
) -> list[SideRecord]:
    """The made items the round did not report (or reported as an `echoed` write's)
    that are gone, as gone records."""
    seen = {r.id for r in reported} | set(echoed)
    found = [get(item_id) for item_id in made if item_id not in seen]
    return [r for r in found if r.fields is None]


class RemembersWhatItMade:
    """A Graph resource's part: `_made_now(id)` at each create, `_wrote_now(id, version)`
    at each write whose echo it knows by version; the cycle asks for the cursor to keep
    after its writes (`cursor_after_writes`)."""

    def _made_now(self, item_id: str) -> None:
        self.__dict__.setdefault("_made", []).append(item_id)

    def _wrote_now(self, item_id: str, version: str) -> None:
        if version and SEPARATOR not in version:
            self.__dict__.setdefault("_wrote", {})[item_id] = version

    def cursor_after_writes(self, cursor: str) -> str:
        made: list[str] = self.__dict__.get("_made", [])
        wrote: dict[str, str] = self.__dict__.get("_wrote", {})
        return kept(cursor, made, wrote) if made or wrote else cursor
