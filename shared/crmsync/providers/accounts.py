"""One connected provider account behind the ProviderAccount port, each record kind
served by a resource adapter of its own (a provider's contacts, calendar, tasks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from crmsync.engine.plan import Write
from crmsync.engine.records import SideRecord
from crmsync.errors import PermanentError
from crmsync.model import Kind
from crmsync.ports import ChangePage, WriteResult


class Resource(Protocol):
    def changes(self, cursor: str | None) -> ChangePage: ...
    def get(self, record_id: str) -> SideRecord: ...
    def create(self, write: Write) -> WriteResult: ...
    def update(self, write: Write) -> WriteResult: ...
    def delete(self, write: Write) -> None: ...


class KindAccount:
    """The ProviderAccount port over the resources given per kind; `label` names the
    provider in what a user may read (a kind it cannot sync)."""

    label = "this provider"

    def __init__(self, resources: Mapping[Kind, Resource]) -> None:
        self.resources = dict(resources)

    def _resource(self, kind: Kind) -> Resource:
        resource = self.resources.get(kind)
        if resource is None:
            raise PermanentError(f"{kind} sync is not available for this {self.label} account")
        return resource

    def changes(self, kind: Kind, cursor: str | None) -> ChangePage:
        return self._resource(kind).changes(cursor)

    def get(self, kind: Kind, record_id: str) -> SideRecord:
        return self._resource(kind).get(record_id)

    def find_by_email(self, kind: Kind, emails: Sequence[str]) -> list[SideRecord]:
        finder: Any = getattr(self._resource(kind), "find_by_email", None)
        return list(finder(emails)) if finder is not None else []

    def create(self, write: Write) -> WriteResult:
        return self._resource(write.kind).create(write)

    def can_create_many(self, kind: Kind) -> bool:
        """Whether the kind's API takes several creates in one request."""
        return hasattr(self.resources.get(kind), "create_many")

    def lists_everything(self, kind: Kind) -> bool:
        """Whether the kind's whole listing shows records outside the sync scope too (a
        resource that lists only its scope says so with `lists_everything = False`)."""
        return bool(getattr(self.resources.get(kind), "lists_everything", True))

    def cursor_after_writes(self, kind: Kind, cursor: str) -> str:
        """The cursor to keep once the cycle's writes are done: the feed's own, unless
        the kind's resource adds to it what it made (see providers/microsoft/echoes)."""
        keeper: Any = getattr(self.resources.get(kind), "cursor_after_writes", None)
        return str(keeper(cursor)) if keeper is not None else cursor

    def create_many(self, writes: Sequence[Write]) -> list[WriteResult | Exception]:
        """Fresh creates of one kind in as few requests as its API allows, one result
        (or the error of that record) per write, in order."""
        resource: Any = self._resource(writes[0].kind)
        return list(resource.create_many(writes))

    def update(self, write: Write) -> WriteResult:
        return self._resource(write.kind).update(write)

    def delete(self, write: Write) -> None:
        self._resource(write.kind).delete(write)

    def set_scope(self, write: Write) -> WriteResult:
        scoper: Any = getattr(self._resource(write.kind), "set_scope", None)
        if scoper is None:
            raise PermanentError(f"{write.kind} records have no sync scope at {self.label}")
        result: WriteResult = scoper(write)
        return result
