"""Task queues behind the TaskQueue port, and how triggers are named so bursts collapse."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

# RUN-3: how long a notification (a provider's push, a CRM event) waits for others to
# join it: every trigger of a connection within this window shares one cycle.
DEBOUNCE = timedelta(seconds=10)

# The trigger of a cycle that reads only the kinds whose provider pushes nothing (the
# fan-out's poll, every `poll_minutes`); every other trigger reads every kind.
POLL = "poll"
# The trigger of a look, once a lease runs out, at whether its holder answered the cycle
# asked of it (RUN-3): a cycle runs only if the holder died without answering.
CHECK = "check"
# The trigger of one step of a user's address-book import (CON-9): its own task, which
# a cycle does not serve (a cycle reads the feeds, the step the address book's next
# contacts), and which serves nothing but another step.
IMPORT = "import"
# The trigger of a pass over a mailbox's tagged messages (EML-1), which a mailbox
# notification enqueues: its own task, which a sync cycle does not serve.
MAIL = "mail"
_APART = (POLL, CHECK, IMPORT, MAIL)


def covers(waiting: str, trigger: str) -> bool:
    """Whether a waiting task of trigger `waiting` serves a new one of `trigger`: a
    cycle reading every kind serves any but an import step or a mail pass; a poll only
    a poll, a check only a check, an import step only an import step, a mail pass only
    a mail pass."""
    if waiting in _APART or trigger in (IMPORT, MAIL):
        return trigger == waiting
    return True


def scope(trigger: str) -> str:
    """What a task of `trigger` reads: every kind (""), a poll's kinds, nothing yet (a
    check), or an import's contacts."""
    return trigger if trigger in _APART else ""


def task_name(tenant: str, connection: str, when: datetime, window: timedelta) -> str:
    """One name per connection and time window: triggers within a window share a task.
    The hash comes first because Cloud Tasks serves sequential names slowly."""
    bucket = int(when.timestamp() // window.total_seconds())
    digest = hashlib.sha256(f"{tenant}|{connection}|{bucket}".encode()).hexdigest()[:16]
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in connection)[
        :80
    ]
    return f"{digest}-{safe}-{bucket}"
