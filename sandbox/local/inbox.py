"""A demo user's Gmail inbox, as the sandbox console shows and drives it: the messages
with their sender, subject and labels; mail arriving "from" any address; and the user
tagging a message "CRM/Send To CRM" in Gmail, as they would to have it recorded in the
CRM's history. Mail arriving and the user's tagging are the Google sandbox's own
helpers (what the world and the user do outside the API), so the mailbox's watch
notifies crmsync exactly as Gmail's would."""

from __future__ import annotations

import secrets
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from crmsync.ports import LABEL_NAMES, SEND
from sandbox.google.gmail import change_labels, deliver
from sandbox.google.gmail_mailbox import mailbox_of
from sandbox.google.gmail_mime import header

SHOWN = 20  # the newest messages shown
SYSTEM_SHOWN = {"INBOX": "Inbox", "UNREAD": "Unread", "SENT": "Sent"}


class GmailInbox:
    """The Gmail mailbox of `email` at the Google sandbox `sandbox`."""

    def __init__(self, sandbox: Any, email: str) -> None:
        self.sandbox = sandbox
        self.email = email

    def messages(self) -> list[dict[str, Any]]:
        """The newest messages first: {id, from, subject, labels (their names)}."""
        with self.sandbox.lock:
            mailbox = mailbox_of(self.sandbox.add_account(self.email))
            held = sorted(mailbox.messages.values(), key=lambda m: m.order, reverse=True)
            shown = []
            for message in held[:SHOWN]:
                names = [
                    SYSTEM_SHOWN.get(label, mailbox.labels[label].name)
                    for label in message.label_ids
                    if label in SYSTEM_SHOWN
                    or (label in mailbox.labels and mailbox.labels[label].type == "user")
                ]
                shown.append(
                    {
                        "id": message.id,
                        "from": header(message.raw, "From") or "",
                        "subject": header(message.raw, "Subject") or "(no subject)",
                        "labels": names,
                    }
                )
            return shown

    def arrive(self, sender: str, subject: str, text: str = "") -> str:
        """A message from `sender` ("Name <address>" or an address) reaches the inbox,
        unread; returns its id."""
        _, address = parseaddr(sender)
        if "@" not in address:
            raise ValueError("from needs an e-mail address, such as ada@acme.example")
        if not subject.strip():
            raise ValueError("subject is required")
        message = EmailMessage()
        message["From"] = sender.strip()
        message["To"] = self.email
        message["Subject"] = subject.strip()
        message["Date"] = format_datetime(self.sandbox.clock())
        message["Message-ID"] = f"<{secrets.token_hex(8)}@{address.rsplit('@', 1)[1]}>"
        message.set_content(text.strip() or subject.strip())
        return deliver(self.sandbox, self.email, message.as_bytes(), ("INBOX", "UNREAD"))

    def send_to_crm(self, message_id: str) -> None:
        """The user tags the message "CRM/Send To CRM" in Gmail."""
        with self.sandbox.lock:
            mailbox = mailbox_of(self.sandbox.add_account(self.email))
            if message_id not in mailbox.messages:
                raise LookupError("no such message in this inbox; reload the console")
            wanted = LABEL_NAMES[SEND].casefold()
            found = [x.id for x in mailbox.labels.values() if x.name.casefold() == wanted]
        if not found:
            raise LookupError(
                f'this inbox has no label "{LABEL_NAMES[SEND]}" yet: crmsync makes it at the '
                "connection's first mail pass; wait a few seconds and try again"
            )
        change_labels(self.sandbox, self.email, message_id, add=found)
