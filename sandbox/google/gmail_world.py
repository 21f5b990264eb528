"""What happens to a Gmail mailbox outside the API, for tests: mail arrives or is sent,
the user tags a message or deletes it in Gmail, makes or renames a label, and the
mailbox forgets old history; and what tests read that no API call shows (a message's
labels, the watch). Each takes the sandbox's lock, records history as the API does
and publishes a notification when the mailbox's watch wants one. `account` is an
`Account` or an e-mail address (the account is made on first use)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sandbox.google.core import Account, GoogleSandbox
from sandbox.google.gmail_mailbox import Label, announce, mailbox_of
from sandbox.google.gmail_mime import header


def _account(sandbox: GoogleSandbox, account: Account | str) -> Account:
    return sandbox.add_account(account) if isinstance(account, str) else account


def deliver(
    sandbox: GoogleSandbox,
    account: Account | str,
    raw: bytes,
    label_ids: Iterable[str] = ("INBOX",),
    *,
    internal_date: datetime | None = None,
) -> str:
    """A message arrives in (or is sent from) the mailbox with exactly `label_ids`
    (("INBOX", "UNREAD") for unread mail, ("SENT",) for sent mail): a `messageAdded`
    record, and a notification when a watch wants it. A reply (In-Reply-To or
    References naming a message of the mailbox) joins that message's thread.
    `internal_date` defaults to the sandbox's clock. Returns the message id."""
    labels = tuple(label_ids)
    references = " ".join(filter(None, (header(raw, "In-Reply-To"), header(raw, "References"))))
    when = internal_date or sandbox.clock()
    with sandbox.lock:
        owner = _account(sandbox, account)
        mailbox = mailbox_of(owner)
        unknown = [label for label in labels if label not in mailbox.labels]
        if unknown:
            raise ValueError(f"no such labels: {unknown}")
        change = mailbox.add_message(
            sandbox.ids,
            raw,
            labels,
            int(when.timestamp() * 1000),
            header(raw, "Message-ID"),
            references.split(),
        )
        announce(sandbox, owner, mailbox, [change])
        return change.message_id


def change_labels(
    sandbox: GoogleSandbox,
    account: Account | str,
    message_id: str,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> None:
    """The user adds and removes labels of a message in Gmail (as messages.modify)."""
    with sandbox.lock:
        owner = _account(sandbox, account)
        mailbox = mailbox_of(owner)
        adding, removing = list(add), list(remove)
        mailbox.check_labels([*adding, *removing])
        changes = mailbox.relabel(sandbox.ids, mailbox.message(message_id), adding, removing)
        announce(sandbox, owner, mailbox, changes)


def delete_message(sandbox: GoogleSandbox, account: Account | str, message_id: str) -> None:
    """The user deletes a message for good: a `messageDeleted` record."""
    with sandbox.lock:
        owner = _account(sandbox, account)
        mailbox = mailbox_of(owner)
        change = mailbox.delete_message(sandbox.ids, mailbox.message(message_id))
        announce(sandbox, owner, mailbox, [change])


def add_label(sandbox: GoogleSandbox, account: Account | str, name: str) -> str:
    """The user makes a label in Gmail; returns its id."""
    with sandbox.lock:
        mailbox = mailbox_of(_account(sandbox, account))
        label = Label(mailbox.new_label_id(), mailbox.check_name(name), "user", "show", "labelShow")
        mailbox.labels[label.id] = label
        return label.id


def rename_label(sandbox: GoogleSandbox, account: Account | str, label_id: str, name: str) -> None:
    """The user renames one of their labels in Gmail: its id stays, the name is held to
    Gmail's rules (unique in any letter case)."""
    with sandbox.lock:
        mailbox = mailbox_of(_account(sandbox, account))
        label = mailbox.user_label(label_id)
        label.name = mailbox.check_name(name, renamed=label)


def expire_history(sandbox: GoogleSandbox, account: Account | str) -> None:
    """The mailbox forgets its history so far: history.list from any history id given
    out until now answers 404, as Gmail's does after about a week."""
    with sandbox.lock:
        mailbox_of(_account(sandbox, account)).expire_history()


def message_labels(sandbox: GoogleSandbox, account: Account | str, message_id: str) -> list[str]:
    """The label ids a message carries now."""
    with sandbox.lock:
        return list(mailbox_of(_account(sandbox, account)).message(message_id).label_ids)


def watch_of(sandbox: GoogleSandbox, account: Account | str) -> dict[str, Any] | None:
    """The mailbox's watch ({topicName, labelIds, labelFilterBehavior, expiration} with
    expiration in ms), or None after users.stop or before any users.watch."""
    with sandbox.lock:
        watch = mailbox_of(_account(sandbox, account)).watch
        if watch is None:
            return None
        return {
            "topicName": watch.topic,
            "labelIds": sorted(watch.label_ids),
            "labelFilterBehavior": watch.behavior,
            "expiration": watch.expiration_ms,
        }
