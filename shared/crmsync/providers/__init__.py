"""Provider accounts: one package per provider (Google, later Microsoft), and the
memory provider for tests.

A provider package is a plug-in: its `kit` module holds `KIT`, which starts and
finishes consent, builds a connection's adapters from its grant, opens, renews and
stops push, routes mail notifications and revokes. The service layer finds a kit by
the provider's name (`kit(name)`) and knows no provider otherwise; a new provider is a
new package here, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import Any

from crmsync.settings import PROVIDERS


def names() -> tuple[str, ...]:
    """The providers this installation has a kit for, in the settings' order."""
    packages = {m.name for m in pkgutil.iter_modules(__path__) if m.ispkg}
    return tuple(name for name in PROVIDERS if name in packages)


@cache
def kit(name: str) -> Any:
    """The kit of provider `name` (imported on first use, so an instance pays only for
    the providers its connections use); KeyError for a provider with none."""
    if name not in names():
        raise KeyError(f"no provider kit {name!r}")
    return importlib.import_module(f"{__name__}.{name}.kit").KIT
