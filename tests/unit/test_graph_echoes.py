"""The ids a Graph cursor keeps of the items a cycle made (RUN-4's deletes no delta
round reports), within the room a connection's document has for them."""

from __future__ import annotations

from crmsync.providers.microsoft import echoes

LINK = "https://graph.microsoft.com/v1.0/me/contacts/delta?$deltatoken=abc"


def test_RUN4_a_cursor_keeps_the_ids_made_after_its_round_and_each_once() -> None:
    cursor = echoes.kept(LINK, ["a1", "a2"])

    assert echoes.split(echoes.kept(cursor, ["a2", "a3"])) == (LINK, ["a1", "a2", "a3"])
    assert echoes.split(LINK) == (LINK, [])


def test_RUN4_a_first_sync_that_makes_thousands_keeps_the_latest_within_its_room() -> None:
    """8,000 Graph ids of 150 characters are 1.2 MB, more than a Firestore document
    holds with everything else of the connection: the cursor keeps the latest ids,
    in order, in at most MADE_BYTES."""
    made = [f"AAMkAGI2{n:06d}" + "x" * 136 for n in range(8000)]

    cursor = echoes.kept(LINK, made)

    link, ids = echoes.split(cursor)
    assert link == LINK
    assert len(cursor) <= len(LINK) + echoes.MADE_BYTES
    assert 0 < len(ids) < len(made)
    assert ids == made[-len(ids) :]
