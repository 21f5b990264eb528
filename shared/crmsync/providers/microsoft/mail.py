"""A user's Outlook mail as e-mail recording uses it (the MailAccount port, EML-1..5).

- Categories (EML-1): crmsync's three are master categories of the mailbox, kept by id.
  Graph lets no category be renamed (its display name is fixed once made), and a
  message carries its categories by name, so an id found again resolves to the name
  the messages carry; a category the user deleted is made again.
- The worklist is the messages carrying "CRM/Send To CRM" (`categories/any`), oldest
  first by Graph, one request a pass: Graph orders a filtered listing only by a property
  that opens the filter (else 400 InefficientFilter), so the filter opens with a
  `receivedDateTime` bound every message meets.
- A message is read whole as MIME (`$value`); its time is Graph's `receivedDateTime`,
  remembered from the listing.
- Relabelling is one PATCH of the message's categories, conditional on its etag, so a
  category the user adds at the same moment is not lost (a 412 reads it again once).
- Headlines (EML-5) are one listing of the category the same way, newest first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from crmsync.errors import AlreadyExists, Conflict
from crmsync.mail import reader
from crmsync.ports import LABEL_NAMES, Headline
from crmsync.providers.microsoft.client import GraphClient

CATEGORIES = "me/outlook/masterCategories"
MAX_TOP = 1000  # the largest $top Graph takes for messages
EVER = "1900-01-01T00:00:00Z"  # a receivedDateTime every message is received after
COLORS = {"send": "preset4", "recorded": "preset7", "missing": "preset0"}  # blue, green, red


class OutlookMail:
    """The MailAccount port over Microsoft Graph for the connected user (`me`)."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self._names: dict[str, str] = {}  # category id → its display name
        self._received: dict[str, datetime] = {}  # message id → receivedDateTime
        self._held: dict[str, tuple[list[str], str]] = {}  # message id → categories, etag

    def labels(self, known: Mapping[str, str]) -> dict[str, str]:
        listed = self._categories()
        by_name = {name.casefold(): cid for cid, name in listed.items()}
        found: dict[str, str] = {}
        for role, name in LABEL_NAMES.items():
            kept = known.get(role)
            if kept in listed:
                found[role] = str(kept)
            elif name.casefold() in by_name:
                found[role] = by_name[name.casefold()]
            else:
                found[role] = self._create(name, COLORS.get(role, "preset0"))
        return found

    def _categories(self) -> dict[str, str]:
        listed = {
            str(c["id"]): str(c["displayName"])
            for c in self.client.values(CATEGORIES, "graph masterCategories.list")
        }
        self._names.update(listed)
        return listed

    def _create(self, name: str, color: str) -> str:
        body = {"displayName": name, "color": color}
        try:
            made = self.client.request(
                "POST", CATEGORIES, "graph masterCategories.create", body=body
            )
        except AlreadyExists:  # made meanwhile (another pass, the user): take that one
            again = {n.casefold(): cid for cid, n in self._categories().items()}
            if name.casefold() not in again:
                raise
            return again[name.casefold()]
        self._names[str(made["id"])] = name
        return str(made["id"])

    def _name(self, label: str) -> str:
        if label not in self._names:
            self._categories()
        return self._names.get(label, label)

    def tagged(self, label: str, limit: int) -> list[str]:
        listed = self._listed(label, limit, "id,receivedDateTime,categories", "asc")
        return [str(message["id"]) for message in listed]

    def headlines(self, label: str, limit: int) -> list[Headline]:
        found = []
        for message in self._listed(label, limit, "id,subject,from,receivedDateTime,categories"):
            sender = (message.get("from") or {}).get("emailAddress") or {}
            found.append(
                Headline(
                    id=str(message["id"]),
                    subject=reader.header_text(str(message.get("subject") or "")),
                    sender=reader.sender_text(
                        reader.header_text(str(sender.get("name") or "")),
                        str(sender.get("address") or ""),
                    ),
                    received=self._remember(message),
                )
            )
        return found

    def _listed(
        self, label: str, limit: int, select: str, order: str = "desc"
    ) -> list[dict[str, Any]]:
        """Up to `limit` messages carrying the category `label` (an id), in one request
        ordered by Graph by receivedDateTime, each remembered (`_remember`)."""
        if limit <= 0:
            return []
        name = self._name(label).replace("'", "''")  # OData string literal
        params = {
            "$filter": f"receivedDateTime ge {EVER} and categories/any(c:c eq '{name}')",
            "$select": select,
            "$orderby": f"receivedDateTime {order}",
            "$top": str(min(limit, MAX_TOP)),
        }
        page = self.client.request("GET", "me/messages", "graph messages.list", params=params)
        listed: list[dict[str, Any]] = (page.get("value") or [])[:limit]
        for message in listed:
            self._remember(message)
        return listed

    def _remember(self, message: dict[str, Any]) -> datetime:
        """A listed message's receivedDateTime, and its categories and etag, kept for
        reading and relabelling it without another request."""
        message_id = str(message["id"])
        received = _moment(message.get("receivedDateTime"))
        self._received[message_id] = received
        etag = str(message.get("@odata.etag") or "")
        self._held[message_id] = (list(message.get("categories") or []), etag)
        return received

    def message(self, message_id: str) -> tuple[bytes, datetime]:
        path = f"me/messages/{quote(message_id, safe='')}"
        raw = self.client.content(f"{path}/$value", "graph messages.value")
        received = self._received.get(message_id)
        if received is None:
            found = self.client.request(
                "GET", path, "graph messages.get", params={"$select": "receivedDateTime"}
            )
            received = _moment(found.get("receivedDateTime"))
        return raw, received

    def relabel(self, message_id: str, add: Sequence[str], remove: Sequence[str]) -> None:
        adding = [self._name(label) for label in add]
        removing = {self._name(label).casefold() for label in remove}
        for attempt in (1, 2):
            listed = self._held.pop(message_id, None)
            held, etag = listed if listed is not None else self._read(message_id)
            kept = [c for c in held if c.casefold() not in removing]
            wanted = kept + [n for n in adding if n.casefold() not in {c.casefold() for c in kept}]
            headers = {"If-Match": etag} if etag else {}
            try:
                self.client.request(
                    "PATCH",
                    f"me/messages/{quote(message_id, safe='')}",
                    "graph messages.update",
                    body={"categories": wanted},
                    headers=headers,
                )
                return
            except Conflict:  # the message changed since it was read: read it again once
                if attempt == 2:
                    raise

    def _read(self, message_id: str) -> tuple[list[str], str]:
        found = self.client.request(
            "GET",
            f"me/messages/{quote(message_id, safe='')}",
            "graph messages.get",
            params={"$select": "categories"},
        )
        return list(found.get("categories") or []), str(found.get("@odata.etag") or "")


def _moment(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return when if when.tzinfo else when.replace(tzinfo=UTC)
