"""What a run did (HIS-1): counts of records per kind and outcome, the kinds it could
not read, record-level items, errors.

Items are kept in memory while the run goes and stored with it when it ends; every
failed record is also logged, by ids and error type only (never its values).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmsync.engine import Decision
from crmsync.engine.records import Link
from crmsync.model import Kind, to_json

log = logging.getLogger("crmsync.cycle")


@dataclass
class History:
    """One run's history as it is written; `where` names the run in log lines."""

    clock: Callable[[], datetime]
    where: dict[str, str] = field(default_factory=dict)  # tenant, connection, run
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # kinds whose changes were not read

    def count(self, kind: str, outcome: str) -> None:
        per_kind = self.counts.setdefault(kind, {})
        per_kind[outcome] = per_kind.get(outcome, 0) + 1

    def error(self, message: str) -> None:
        self.errors.append(message)

    def failed(self) -> bool:
        return any(item["outcome"] == "fail" for item in self.items)

    def decision(self, decision: Decision, stored: Link | None) -> None:
        """The item of an applied decision, with each changed field before and after."""
        if decision.outcome == "none":
            return
        changes = {
            name: [to_json(old), to_json(new)] for name, (old, new) in decision.summary.items()
        }
        self.item(
            decision.kind,
            decision.outcome,
            decision.direction,
            stored or decision.dropped,
            decision.reason,
            fields=list(decision.changed),
            changes=changes,
            crm_id=decision.crm_id,
            provider_id=decision.provider_id,
        )

    def item(
        self,
        kind: Kind,
        outcome: str,
        direction: str,
        link: Link | None,
        reason: str,
        *,
        fields: list[str] | None = None,
        changes: Mapping[str, Any] | None = None,
        crm_id: str | None = None,
        provider_id: str | None = None,
    ) -> None:
        """One record-level item: what, which way, when, before/after."""
        self.count(kind, outcome)
        self.items.append(
            {
                "kind": kind,
                "label": label(kind, link.base if link else {}),
                "outcome": outcome,
                "direction": direction,
                "crm_id": (link.crm_id if link else None) or crm_id,
                "provider_id": (link.provider_id if link else None) or provider_id,
                "reason": reason,
                "fields": fields or [],
                "changes": dict(changes or {}),
                "error": None,
                "at": self.clock(),
            }
        )

    def failure(
        self,
        kind: Kind,
        crm_id: str | None,
        provider_id: str | None,
        exc: Exception,
        action: str,
        decision: Decision | None = None,
    ) -> None:
        """A record that failed alone (SYN-5): the run goes on, the item says why."""
        self.count(kind, "fail")
        message = f"{type(exc).__name__}: {exc}"
        self.errors.append(message)
        planned = decision.link or decision.dropped or decision.previous if decision else None
        self.items.append(
            {
                "kind": kind,
                "label": label(kind, planned.base if planned else {}),
                "outcome": "fail",
                "direction": decision.direction if decision else "none",
                "crm_id": crm_id,
                "provider_id": provider_id,
                "reason": f"{action} failed",
                "fields": list(decision.changed) if decision else [],
                "error": message,
                "at": self.clock(),
            }
        )
        log.warning(
            "record failed",
            extra={**self.where, "kind": kind, "error": type(exc).__name__},
        )

    def kind_failed(self, kind: Kind, exc: Exception) -> None:
        """A kind whose feed could not be read or planned this cycle: listed apart from
        the counts, which count records (it is not one record that failed)."""
        if kind not in self.unread:
            self.unread.append(kind)
        self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
        log.warning("kind skipped", extra={**self.where, "kind": kind, "error": type(exc).__name__})


LABEL_LENGTH = 80


def label(kind: Kind, fields: Mapping[str, Any]) -> str:
    """A short name of a record for people reading its history: a contact's name (else
    its first e-mail address or company), an activity's or to-do's subject; "" when
    the fields say none."""
    if kind == "contact":
        name = " ".join(str(fields.get(f) or "") for f in ("first_name", "last_name")).strip()
        emails = fields.get("emails") or ()
        found = name or (str(emails[0]) if emails else "") or str(fields.get("company") or "")
    else:
        found = str(fields.get("subject") or "")
    return found if len(found) <= LABEL_LENGTH else found[: LABEL_LENGTH - 1] + "…"
