"""The servers test worlds run (the reference CRM, the Google and Microsoft sandboxes),
stopped with each test (`stop_served`, called by the test suite after every test). A
world kept alive elsewhere would otherwise keep its server's thread, which wakes
twenty times a second; a thousand of those starve everything else."""

from __future__ import annotations

import weakref
from typing import Protocol


class Served(Protocol):
    def close(self) -> None: ...


_SERVED: weakref.WeakSet[Served] = weakref.WeakSet()


def keep(side: Served) -> None:
    """Stop this world's server with the test."""
    _SERVED.add(side)


def stop_served() -> None:
    """Stop every server a world still runs."""
    for side in list(_SERVED):
        side.close()
