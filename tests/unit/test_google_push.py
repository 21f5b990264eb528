"""Google Calendar push notifications reach the right connection as one debounced cycle,
and forged, stale or unknown ones have no effect (the google_webhook handler's core)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmsync.providers.google.push import channel_record, new_token, on_notification
from crmsync.queue import DEBOUNCE, task_name
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryStore

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def setup() -> tuple[MemoryStore, InlineQueue, dict[str, str]]:
    store, queue = MemoryStore(), InlineQueue()
    token, kept = new_token()
    store.save_channel(channel_record("ch-1", "t1", "c1", "res-1", kept, NOW + timedelta(days=7)))
    headers = {
        "X-Goog-Channel-ID": "ch-1",
        "X-Goog-Channel-Token": token,
        "X-Goog-Resource-ID": "res-1",
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "2",
    }
    return store, queue, headers


def test_RUN3_a_change_notification_enqueues_one_cycle_a_little_later() -> None:
    store, queue, headers = setup()

    answer = on_notification(headers, store, queue, NOW)

    assert answer.status == 202
    (queued,) = queue.waiting.values()
    assert (queued.tenant, queued.connection, queued.trigger) == ("t1", "c1", "push")
    assert queued.not_before == NOW + DEBOUNCE


def test_RUN3_a_burst_of_notifications_collapses_into_one_cycle() -> None:
    store, queue, headers = setup()

    for second in range(0, int(DEBOUNCE.total_seconds()), 2):
        on_notification(headers, store, queue, NOW + timedelta(seconds=second))

    assert len(queue.waiting) == 1
    assert queue.refused == 4


def test_RUN3_notifications_a_window_apart_make_two_cycles() -> None:
    store, queue, headers = setup()

    on_notification(headers, store, queue, NOW)
    on_notification(headers, store, queue, NOW + timedelta(seconds=40))

    assert len(queue.waiting) == 2


def test_RUN1_the_first_sync_message_is_acknowledged_and_ignored() -> None:
    store, queue, headers = setup()

    answer = on_notification({**headers, "X-Goog-Resource-State": "sync"}, store, queue, NOW)

    assert answer.status == 200
    assert queue.waiting == {}


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"X-Goog-Channel-ID": "ch-unknown"}, 404),
        ({"X-Goog-Channel-ID": ""}, 404),
        ({"X-Goog-Channel-Token": "forged"}, 403),
        ({"X-Goog-Channel-Token": ""}, 403),
        ({"X-Goog-Resource-ID": "res-other"}, 403),
        ({"X-Goog-Resource-State": "bogus"}, 400),
    ],
)
def test_RUN1_forged_or_unknown_notifications_have_no_effect(
    change: dict[str, str], status: int
) -> None:
    store, queue, headers = setup()

    answer = on_notification({**headers, **change}, store, queue, NOW)

    assert answer.status == status
    assert queue.waiting == {}


def test_RUN5_a_notification_on_an_expired_channel_has_no_effect() -> None:
    store, queue, headers = setup()

    answer = on_notification(headers, store, queue, NOW + timedelta(days=8))

    assert answer.status == 410
    assert queue.waiting == {}


def test_RUN1_only_a_digest_of_the_channel_token_is_kept() -> None:
    store, _, headers = setup()

    kept = store.channel("ch-1")

    assert kept is not None
    assert headers["X-Goog-Channel-Token"] not in kept.token_digest


def test_RUN3_task_names_are_safe_for_cloud_tasks_and_hash_prefixed() -> None:
    name = task_name("t1", "conn/with:odd chars", NOW, timedelta(seconds=30))

    assert all(c.isalnum() or c in "-_" for c in name)
    assert len(name) <= 500
    other = task_name(
        "t1", "conn/with:odd chars", NOW + timedelta(seconds=31), timedelta(seconds=30)
    )
    assert name != other and name[:16] != other[:16]
