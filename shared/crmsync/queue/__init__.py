"""Task queues behind the TaskQueue port, and how triggers are named so bursts collapse."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta


def task_name(tenant: str, connection: str, when: datetime, window: timedelta) -> str:
    """One name per connection and time window: triggers within a window share a task.
    The hash comes first because Cloud Tasks serves sequential names slowly."""
    bucket = int(when.timestamp() // window.total_seconds())
    digest = hashlib.sha256(f"{tenant}|{connection}|{bucket}".encode()).hexdigest()[:16]
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in connection)[
        :80
    ]
    return f"{digest}-{safe}-{bucket}"
