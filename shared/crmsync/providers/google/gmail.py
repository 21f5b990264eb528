"""A user's Gmail as e-mail recording uses it (the MailAccount port, EML-1..5).

- Labels (EML-1): crmsync's three labels are kept by id. A label the user renamed keeps
  its id, so it stays crmsync's; one missing is looked up by name first (the user may
  have made it, or an earlier attempt did: Gmail answers a duplicate name with 409),
  then made. Gmail shows "CRM/Send To CRM" nested under "CRM" only when a label "CRM"
  exists, so that one is made too.
- The worklist is `messages.list` of the "Send To CRM" label; Gmail lists newest first,
  so the pass pages to the end (bounded) and takes the oldest.
- A message is read whole in `raw` format (base64url RFC 5322), its time is Gmail's
  `internalDate` (when Gmail received or sent it), which Google advises over the Date
  header.
- Relabelling is one `messages.modify`.
- Headlines (EML-5) are one `messages.list` page of the label (newest first, as Gmail
  lists) and a `messages.get` in `metadata` format of each, for its Subject and From
  and its `internalDate`; one deleted in between is left out. Gmail gives the headers
  decoded; an encoded word it left as it was is decoded here.

Quota (per user, 15,000 units a minute): list 5, get 5, modify 5, labels.list 1,
labels.create 5: recording a message costs 15 units and a list; a page of headlines
5 units a message and a list.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from crmsync.errors import AlreadyExists, NotFound, PermanentError
from crmsync.mail import reader
from crmsync.ports import LABEL_NAMES, Headline
from crmsync.providers.google.client import GoogleClient

PARENT = "CRM"  # what makes Gmail show crmsync's labels nested
PAGE = 500  # messages.list's largest page
MAX_LISTED = 5_000  # tagged messages a pass pages through at most to find the oldest


class GmailAccount:
    """The MailAccount port over the Gmail API for the connected account (`me`)."""

    def __init__(self, client: GoogleClient) -> None:
        self.client = client
        self._users: Any = None

    @property
    def users(self) -> Any:
        if self._users is None:
            self._users = self.client.service("gmail", "v1").users()
        return self._users

    def labels(self, known: Mapping[str, str]) -> dict[str, str]:
        listed = self._listed()
        ids = {label["id"] for label in listed}
        by_name = {str(label["name"]).casefold(): str(label["id"]) for label in listed}
        if PARENT.casefold() not in by_name:
            self._create(PARENT, by_name)
        found: dict[str, str] = {}
        for role, name in LABEL_NAMES.items():
            kept = known.get(role)
            if kept in ids:
                found[role] = str(kept)
            elif name.casefold() in by_name:
                found[role] = by_name[name.casefold()]
            else:
                found[role] = self._create(name, by_name)
        return found

    def _listed(self) -> list[dict[str, Any]]:
        answer = self.client.execute(self.users.labels().list(userId="me"), "gmail labels.list")
        return list(answer.get("labels", []))

    def _create(self, name: str, by_name: dict[str, str]) -> str:
        body = {"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"}
        request = self.users.labels().create(userId="me", body=body)
        try:
            made = self.client.execute(request, "gmail labels.create")
        except AlreadyExists:  # made meanwhile (another pass, the user): take that one
            again = {str(x["name"]).casefold(): str(x["id"]) for x in self._listed()}
            if name.casefold() not in again:
                raise
            by_name.update(again)
            return again[name.casefold()]
        by_name[name.casefold()] = str(made["id"])
        return str(made["id"])

    def tagged(self, label: str, limit: int) -> list[str]:
        ids: list[str] = []
        token: str | None = None
        while len(ids) < MAX_LISTED:
            request = self.users.messages().list(
                userId="me", labelIds=[label], maxResults=PAGE, pageToken=token
            )
            answer = self.client.execute(request, "gmail messages.list")
            ids.extend(str(m["id"]) for m in answer.get("messages", []))
            token = answer.get("nextPageToken")
            if not token:
                break
        return list(reversed(ids))[:limit]  # Gmail lists newest first

    def message(self, message_id: str) -> tuple[bytes, datetime]:
        request = self.users.messages().get(userId="me", id=message_id, format="raw")
        answer = self.client.execute(request, "gmail messages.get")
        try:
            raw = base64.urlsafe_b64decode(_padded(str(answer.get("raw", ""))))
        except (binascii.Error, ValueError) as exc:
            raise PermanentError("Gmail gave a message that is not base64url") from exc
        return raw, _received(answer.get("internalDate"))

    def headlines(self, label: str, limit: int) -> list[Headline]:
        if limit <= 0:
            return []
        request = self.users.messages().list(
            userId="me", labelIds=[label], maxResults=min(limit, PAGE)
        )
        listed = self.client.execute(request, "gmail messages.list").get("messages", [])
        found = []
        for message in listed[:limit]:
            request = self.users.messages().get(
                userId="me",
                id=str(message["id"]),
                format="metadata",
                metadataHeaders=["Subject", "From"],
            )
            try:
                answer = self.client.execute(request, "gmail messages.get")
            except NotFound:  # deleted since it was listed
                continue
            found.append(_headline(answer))
        return found

    def watch(self, topic: str, label: str) -> datetime:
        """Gmail's notifications of changes to messages carrying `label` (an id) go to
        the Pub/Sub topic `topic` (projects/P/topics/T) until the returned moment (a
        week; crmsync renews daily, as Google advises). Calling it again replaces the
        watch."""
        body = {"topicName": topic, "labelIds": [label], "labelFilterBehavior": "include"}
        answer = self.client.execute(self.users.watch(userId="me", body=body), "gmail watch")
        return _received(answer.get("expiration"))

    def stop(self) -> None:
        """No more notifications of this mailbox."""
        self.client.execute(self.users.stop(userId="me"), "gmail stop")

    def relabel(self, message_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
        request = self.users.messages().modify(userId="me", id=message_id, body=body)
        self.client.execute(request, "gmail messages.modify")


def _headline(answer: dict[str, Any]) -> Headline:
    """A message in `metadata` format as a page shows it."""
    headers: dict[str, str] = {}
    for header in (answer.get("payload") or {}).get("headers") or []:
        headers.setdefault(str(header.get("name", "")).lower(), str(header.get("value", "")))
    return Headline(
        id=str(answer["id"]),
        subject=reader.header_text(headers.get("subject", "")),
        sender=reader.sender_of(headers.get("from", "")),
        received=_received(answer.get("internalDate")),
    )


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _received(internal: Any) -> datetime:
    """Gmail's internalDate (milliseconds since the epoch, as a string)."""
    try:
        return datetime.fromtimestamp(int(str(internal)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.now(UTC)
