"""Structured logs: one JSON object per line on stdout, as Cloud Logging reads them
(`severity`, `message`, and crmsync's fields: tenant, connection, run, ...).

Only the fields crmsync logs on purpose reach the output; a field whose name speaks of
a token, secret, password, body or authorization is dropped whatever its value, so a
careless `extra=` cannot leak one (AUTH-2).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FORBIDDEN = ("token", "secret", "password", "body", "authorization", "code", "grant")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if any(word in key.lower() for word in _FORBIDDEN):
                continue
            entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # the type only: messages may
        return json.dumps(entry, default=str)  # quote what a provider sent back


def configure_logging(stream: TextIO | None = None, level: int = logging.INFO) -> logging.Handler:
    """JSON lines on `stream` (stdout) for every crmsync logger; idempotent."""
    root = logging.getLogger("crmsync")
    for handler in list(root.handlers):
        if getattr(handler, "crmsync_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.crmsync_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return handler
