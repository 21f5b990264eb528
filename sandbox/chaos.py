"""Faults at a set rate, for soaks: each request a sandbox serves is failed with
probability `rate`, with a fault chosen (seeded, so a run can be repeated) among the
kinds that fit that request. The sandboxes say which kinds fit and answer each as the
real service does: the Google sandbox 429 with Retry-After, 500, 503, a timeout (held,
then 504, nothing done), a lost answer (the request is carried out, then answered 504:
the client cannot tell whether its write happened), 410 on a sync token, 412 on a write
with If-Match, invalid_grant on a refresh (the grant is then revoked, as when a user
removes the app); the reference CRM 429, 500, 503, a timeout, a lost answer, and 410
on a change-feed cursor.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

KINDS = frozenset({"429", "500", "503", "timeout", "lost", "410", "412", "invalid_grant"})


@dataclass
class Chaos:
    rate: float
    kinds: frozenset[str] = KINDS
    seed: int = 0
    stall: float = 0.5  # seconds a "timeout" holds the request before its 504
    retry_after: int = 1  # seconds a 429 asks the client to wait
    counts: Counter[str] = field(default_factory=Counter)  # faults served, per kind
    requests: int = 0  # requests that could have been failed

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - KINDS
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()

    def pick(self, fitting: Iterable[str]) -> str | None:
        """The fault for one request that fits the kinds `fitting`, or None."""
        with self._lock:
            self.requests += 1
            if self._random.random() >= self.rate:
                return None
            choices = sorted(set(fitting) & self.kinds)
            if not choices:
                return None
            kind = self._random.choice(choices)
            self.counts[kind] += 1
            return kind

    def total(self) -> int:
        return sum(self.counts.values())
