"""Runs as both stores keep them and page through them (HIS-2, HIS-3): the fields a
page query needs besides the run's own, the order of a page, its opaque token, and how
long a run is kept.

A page is in the order of its sort field, then, for any sort but `started`, of when
the runs started (newest first), then of each run's place in the store: an order with
no ties, so a token that holds the last run's values in it resumes right after that
run, and no run is shown twice or skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from crmsync.ports import RUN_SORTS, RunQuery, changed_kinds, run_result

RETENTION = timedelta(days=90)  # the deployment's, unless it says otherwise (HIS-3)
MAX_LIMIT = 200  # runs a page may hold
MAX_CONNECTIONS = 30  # connections one query may name (what Firestore's `in` takes)
Order = tuple[str, bool]  # a field, and whether descending


def derived(run: Mapping[str, Any]) -> dict[str, Any]:
    """What a page query filters and sorts on beyond the run's own fields: the kinds of
    record it changed or tried to change, how long it took in seconds (None while it
    runs), and its result as the list reads it (`run_result`), which its status filters."""
    counts = run.get("counts") or {}
    started, ended = run.get("started"), run.get("ended")
    took = None
    if isinstance(started, datetime) and isinstance(ended, datetime):
        took = (ended - started).total_seconds()
    return {"kinds": changed_kinds(counts), "duration": took, "result": run_result(run)}


def check(query: RunQuery) -> None:
    """ValueError for a query no store answers."""
    if query.sort not in RUN_SORTS:
        raise ValueError(f"runs are sorted by one of {', '.join(RUN_SORTS)}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise ValueError(f"a page holds 1 to {MAX_LIMIT} runs")
    if query.connections is not None and len(query.connections) > MAX_CONNECTIONS:
        raise ValueError(f"a page shows the runs of at most {MAX_CONNECTIONS} connections")


def orders(query: RunQuery) -> list[Order]:
    """The fields a page is ordered by; the run's place in the store comes last, in
    the direction of the last of these."""
    check(query)
    if query.sort == "started":
        return [("started", query.descending)]
    return [(query.sort, query.descending), ("started", True)]


def matches(run: Mapping[str, Any], query: RunQuery) -> bool:
    """Whether a run (with its derived fields) passes the query's filters."""
    for name, field in (("status", "result"), ("trigger", "trigger"), ("provider", "provider")):
        wanted = getattr(query, name)
        if wanted is not None and run.get(field) != wanted:
            return False
    if query.kind is not None and query.kind not in run.get("kinds", ()):
        return False
    started = run.get("started")
    if query.since is not None and not (isinstance(started, datetime) and started >= query.since):
        return False
    return query.until is None or (isinstance(started, datetime) and started < query.until)


# -- the order of values: Firestore's (null, then numbers, timestamps, strings) --------------
_RANKS: tuple[tuple[type, int], ...] = ((bool, 1), (int, 2), (float, 2), (datetime, 3), (str, 4))


def _rank(value: Any) -> int:
    if value is None:
        return 0
    return next((rank for kind, rank in _RANKS if isinstance(value, kind)), 5)


def _compare_values(a: Any, b: Any) -> int:
    ranks = _rank(a), _rank(b)
    if ranks[0] != ranks[1]:
        return -1 if ranks[0] < ranks[1] else 1
    if a is None or a == b:
        return 0
    return -1 if a < b else 1


def compare(a: Sequence[Any], b: Sequence[Any], descending: Sequence[bool]) -> int:
    """Which of two keys comes first in a page's order (-1: a), field by field."""
    for left, right, down in zip(a, b, descending, strict=True):
        found = _compare_values(left, right)
        if found:
            return -found if down else found
    return 0


# -- page tokens ------------------------------------------------------------------------------
def _shape(query: RunQuery) -> str:
    """What a token belongs to: the query's order and filters (not its time window,
    which a frame moves with the clock between one page and the next)."""
    connections = sorted(query.connections) if query.connections is not None else None
    shape: list[Any] = [connections, query.status, query.trigger, query.kind, query.provider]
    shape += [query.sort, query.descending]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    return {"t": value.isoformat()} if isinstance(value, datetime) else value


def _value(plain: Any) -> Any:
    if isinstance(plain, dict):
        moment = datetime.fromisoformat(plain["t"])
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if plain is None or isinstance(plain, str | int | float):
        return plain
    raise ValueError("not a value of a run")


def token(query: RunQuery, values: Sequence[Any], connection: str, run_id: str) -> str:
    """The token of the page after the run with these values (in `orders(query)`)."""
    body = {"q": _shape(query), "v": [_plain(v) for v in values], "c": connection, "r": run_id}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def position(query: RunQuery, page: str) -> tuple[list[Any], str, str]:
    """The values, connection and run id a token of this query resumes after;
    ValueError for anything else."""
    try:
        body = json.loads(base64.urlsafe_b64decode(page + "=" * (-len(page) % 4)))
        values = [_value(v) for v in body["v"]]
        connection, run_id = body["c"], body["r"]
        fits = body["q"] == _shape(query) and len(values) == len(orders(query))
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        raise ValueError("not a page of this list") from exc
    if not fits or not isinstance(connection, str) or not isinstance(run_id, str):
        raise ValueError("not a page of this list")
    return values, connection, run_id


# -- retention (HIS-3) --------------------------------------------------------------------------
def retention(deployment: timedelta, days: Any) -> timedelta:
    """How long a run is kept: the deployment's retention, or the tenant's where that
    is shorter."""
    if isinstance(days, int) and not isinstance(days, bool) and days > 0:
        return min(deployment, timedelta(days=days))
    return deployment


def expiry(moment: Any, kept: timedelta) -> datetime:
    """When something that happened at `moment` (now when unknown) is erased."""
    start = moment if isinstance(moment, datetime) and moment.tzinfo else datetime.now(UTC)
    return start + kept
