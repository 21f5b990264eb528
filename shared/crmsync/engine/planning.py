"""What every rule of one kind's plan reads: the kind, the cycle's context and settings,
the mapped fields, and the permission answers worked out so far.

One `Planning` is made per `reconcile` call and passed to each rule explicitly; the
answers are cached on it so a permission is worked out once per cycle, not per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crmsync.engine.records import Context
from crmsync.model import Kind
from crmsync.settings import Settings, Side


@dataclass(frozen=True, slots=True)
class Planning:
    kind: Kind
    ctx: Context
    settings: Settings
    mapped: frozenset[str]
    answers: dict[tuple[Any, Side, str], bool] = field(default_factory=dict)

    @classmethod
    def of(cls, kind: Kind, ctx: Context) -> Planning:
        return cls(kind, ctx, ctx.settings, frozenset(ctx.settings.mapped(kind)))
