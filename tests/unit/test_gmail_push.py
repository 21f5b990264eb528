"""Gmail push notifications: only well-formed ones are accepted, and each reaches the
connections of its mailbox that record mail as a request for a cycle (the gmail_push
handler's core), with nothing of the notification in an error or a log line."""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.connections import Grant, Grants, disconnect
from crmsync.providers.google.gmail_push import (
    BadNotification,
    Notification,
    on_gmail_notification,
    parse_notification,
)
from crmsync.queue import task_name
from crmsync.queue.inline import InlineQueue
from crmsync.store.memory import MemoryBackend

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ADA = "ada.lovelace@example.com"


def data(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# -- parsing: the shape Gmail publishes, and nothing else -----------------------------------
def test_RUN3_a_notification_names_its_mailbox_and_history_id_given_as_digits() -> None:
    notification = parse_notification(data(emailAddress=ADA, historyId="9876"))

    assert (notification.address, notification.history_id) == (ADA, 9876)


def test_RUN3_a_history_id_given_as_a_number_is_read_the_same() -> None:
    notification = parse_notification(b'{"emailAddress": "a@b.example", "historyId": 9876}')

    assert notification.history_id == 9876


def test_RUN3_fields_gmail_may_add_are_ignored() -> None:
    notification = parse_notification(data(emailAddress=ADA, historyId="18446744073709551615", x=1))

    assert notification == Notification(ADA, 2**64 - 1)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"emailAddress=ada", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b'["ada.lovelace@example.com", "1"]', "not a JSON object"),
        (data(historyId="1"), "has no emailAddress"),
        (data(emailAddress=None, historyId="1"), "emailAddress is not a string"),
        (data(emailAddress=["ada.lovelace@example.com"], historyId="1"), "not a string"),
        (data(emailAddress="ada.lovelace.example.com", historyId="1"), "not an e-mail address"),
        (data(emailAddress="ada.lovelace@", historyId="1"), "not an e-mail address"),
        (data(emailAddress="@example.com", historyId="1"), "not an e-mail address"),
        (data(emailAddress="ada lovelace@example.com", historyId="1"), "not an e-mail address"),
        (data(emailAddress=ADA), "has no historyId"),
        (data(emailAddress=ADA, historyId=""), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId="98x"), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId="-1"), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=" 1"), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId="١٢٣"), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=-1), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=98.5), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=True), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=None), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId=2**64), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId="1" * 21), "historyId is not an unsigned 64-bit number"),
        (data(emailAddress=ADA, historyId="1", pad="x" * 5000), "over 4096 bytes"),
    ],
)
def test_RUN1_what_is_not_a_gmail_notification_is_refused_saying_why_and_nothing_of_it(
    raw: bytes, reason: str
) -> None:
    with pytest.raises(BadNotification) as refused:
        parse_notification(raw)

    assert reason in str(refused.value)
    logged = "".join(traceback.format_exception(refused.value))  # as a log shows it
    assert "lovelace" not in logged and "example" not in logged


def test_RUN1_a_refused_notification_is_a_value_error_for_the_handler_to_answer_400() -> None:
    with pytest.raises(ValueError, match="no emailAddress"):
        parse_notification(b"{}")


def test_a_notification_shows_no_address_when_printed() -> None:
    notification = parse_notification(data(emailAddress=ADA, historyId="9876"))

    assert "lovelace" not in repr(notification) and "9876" in repr(notification)


# -- routing: the mailbox's connections that record mail get a cycle -------------------------
def connect(
    backend: MemoryBackend,
    tenant: str,
    connection: str,
    address: str,
    services: tuple[str, ...] = ("sync", "mail"),
    status: str = "active",
) -> None:
    """A Google connection as the OAuth callback leaves it, its mailbox routed."""
    store = backend.store(tenant)
    record = {"user": "u1", "provider": "google", "services": list(services), "status": status}
    store.save_connection_record(connection, record)
    store.save_mailbox(address, tenant, connection)


def notify(backend: MemoryBackend, address: str) -> tuple[int, list[tuple[str, str]]]:
    """What one notification for `address` asks for: the count the handler gets back,
    and the (tenant, connection) pairs given to `enqueue`."""
    asked: list[tuple[str, str]] = []

    def record_of(tenant: str, connection: str) -> dict[str, Any] | None:
        return backend.store(tenant).connection_record(connection)

    notification = Notification(address, 9876)
    count = on_gmail_notification(
        notification, backend.store(""), record_of, lambda t, c: asked.append((t, c))
    )
    return count, asked


def test_RUN3_a_notification_asks_for_a_cycle_of_the_connection_of_its_mailbox() -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", ADA)
    connect(backend, "t1", "google-u2", "bob@example.com")

    assert notify(backend, ADA) == (1, [("t1", "google-u1")])


def test_RUN3_the_mailbox_is_found_whatever_the_case_of_its_address() -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", "Ada.Lovelace@Example.com")

    assert notify(backend, "ADA.LOVELACE@example.com") == (1, [("t1", "google-u1")])


def test_tenants_are_isolated_one_mailbox_in_two_tenants_asks_for_each_tenants_cycle() -> None:
    backend = MemoryBackend()
    connect(backend, "acme", "google-u1", ADA)
    connect(backend, "globex", "google-u7", ADA)
    connect(backend, "initech", "google-u1", "bob@example.com")

    count, asked = notify(backend, ADA)

    assert count == 2
    assert sorted(asked) == [("acme", "google-u1"), ("globex", "google-u7")]


@pytest.mark.parametrize(
    ("services", "status"),
    [
        (("sync",), "active"),
        ((), "active"),
        (("sync", "mail"), "needs_reauth"),
        (("sync", "mail"), "disconnected"),
    ],
)
def test_RUN3_only_an_active_connection_that_records_mail_gets_a_cycle(
    services: tuple[str, ...], status: str
) -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", ADA, services, status)
    connect(backend, "t2", "google-u1", ADA)

    assert notify(backend, ADA) == (1, [("t2", "google-u1")])


def test_RUN3_a_notification_for_an_unknown_mailbox_asks_for_nothing() -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", ADA)

    assert notify(backend, "eve@example.com") == (0, [])


def test_RUN3_a_route_whose_connection_record_is_gone_asks_for_nothing() -> None:
    backend = MemoryBackend()
    backend.store("t1").save_mailbox(ADA, "t1", "google-u1")

    assert notify(backend, ADA) == (0, [])


def test_AUTH4_after_disconnect_the_mailbox_still_being_watched_asks_for_nothing() -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", ADA)
    connect(backend, "t2", "google-u1", ADA)
    store = backend.store("t1")
    grants = Grants(store, TokenVault(LocalKek(bytes(range(32)))), "t1")
    grants.save("google-u1", Grant("ya29.a", "1//r", NOW + timedelta(hours=1), frozenset()))

    disconnect(store, grants, "google-u1", lambda token: None, lambda channel: None)

    assert backend.store("").mailbox_connections(ADA) == [("t2", "google-u1")]
    assert notify(backend, ADA) == (1, [("t2", "google-u1")])


def test_RUN3_a_burst_of_notifications_collapses_into_one_mail_cycle() -> None:
    backend, queue = MemoryBackend(), InlineQueue()
    connect(backend, "t1", "google-u1", ADA)
    window = timedelta(seconds=10)

    def enqueue_at(moment: datetime) -> Any:
        def enqueue(tenant: str, connection: str) -> bool:
            name = task_name(tenant, connection, moment, window)
            return queue.enqueue(
                tenant, connection, name=name, not_before=moment + window, trigger="mail"
            )

        return enqueue

    for second in range(0, 10, 2):
        on_gmail_notification(
            Notification(ADA, 100 + second),
            backend.store(""),
            lambda t, c: backend.store(t).connection_record(c),
            enqueue_at(NOW + timedelta(seconds=second)),
        )

    (queued,) = queue.waiting.values()
    assert (queued.tenant, queued.connection, queued.trigger) == ("t1", "google-u1", "mail")
    assert queue.refused == 4


def test_a_routed_notification_logs_ids_and_never_the_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    connect(backend, "t1", "google-u1", ADA)

    with caplog.at_level(logging.DEBUG, logger="crmsync"):
        notify(backend, ADA)
        notify(backend, "eve@example.com")

    logged = [repr(vars(record)) for record in caplog.records]
    assert any("google-u1" in line for line in logged)
    assert not any("lovelace" in line or "eve@" in line for line in logged)
