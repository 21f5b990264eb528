"""What the mail client's pane shows of a participant the CRM knows (CTX-1): a person's
card as the contract's `GET /people/{kind}/{id}` answers it, read into plain values.
A CRM that answers a field in another shape loses that field, never the card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from crmsync.ports import Person


@dataclass(frozen=True, slots=True)
class Related:
    """An account or an opportunity beside a person: what it is called, where to open
    it, and a line about it (an opportunity's stage, amount and close date)."""

    id: str
    name: str
    url: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Recent:
    """One of a person's latest history items."""

    id: str
    subject: str
    date: datetime | None


@dataclass(frozen=True, slots=True)
class Document:
    """A CRM document a user may attach to a message (CTX-1)."""

    id: str
    name: str
    content_type: str
    size: int
    modified: datetime | None


def document_of(item: Mapping[str, Any]) -> Document:
    return Document(
        str(item["id"]),
        _text(item.get("name")) or str(item["id"]),
        _text(item.get("content_type")) or "application/octet-stream",
        int(item.get("size") or 0),
        _instant(item.get("modified")),
    )


@dataclass(frozen=True, slots=True)
class PersonCard:
    person: Person
    title: str
    url: str
    account: Related | None
    opportunities: tuple[Related, ...]
    history: tuple[Recent, ...]
    fields: tuple[tuple[str, str], ...]  # (custom field's name, its value as text)


def card_of(person: Person, body: Mapping[str, Any]) -> PersonCard:
    """The card from the contract's PersonCard (`person` as GET /people found it)."""
    account = body.get("account")
    return PersonCard(
        person=person,
        title=_text(body.get("title")),
        url=_address(body.get("url")),
        account=_related(account) if isinstance(account, Mapping) else None,
        opportunities=tuple(
            _related(o, deal_line(o)) for o in _items(body.get("opportunities")) if "id" in o
        ),
        history=tuple(
            Recent(str(item["id"]), _text(item.get("subject")), _instant(item.get("date")))
            for item in _items(body.get("history"))
            if "id" in item
        ),
        fields=tuple(
            (_text(item.get("name")), _shown(item.get("value")))
            for item in _items(body.get("fields"))
            if item.get("name")
        ),
    )


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _related(item: Mapping[str, Any], detail: str = "") -> Related:
    return Related(
        str(item.get("id") or ""), _text(item.get("name")), _address(item.get("url")), detail
    )


def deal_line(item: Mapping[str, Any]) -> str:
    """An opportunity's line: "Proposal · 12,000 EUR · closes 2026-12-20"."""
    parts = [_text(item.get("stage")), _text(item.get("amount"))]
    if item.get("close_date"):
        parts.append(f"closes {_text(item.get('close_date'))}")
    return " · ".join(part for part in parts if part)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _shown(value: Any) -> str:
    """A custom value as text: yes/no, a list joined, else as it reads."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return _text(value)


def _address(value: Any) -> str:
    """An address a person may open: http(s) only, else none."""
    text = _text(value)
    return text if text.startswith(("https://", "http://")) else ""


def _instant(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
