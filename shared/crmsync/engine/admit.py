"""Which records a user's sync takes in: type rules, windows, privacy, declined.

Each check returns the reason a record stays out, or None. Reasons are shown to users
in the history, so they are sentences, not codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from crmsync.engine.records import Context
from crmsync.model import Kind
from crmsync.settings import Side


def _instant(value: date | datetime | None, tz: tzinfo = UTC) -> datetime | None:
    """A moment; a bare date is the start of that day in `tz`, the user's time zone
    (SET-1): a do-not-sync-before date or an all-day event begins at their midnight."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tz)


def _user_zone(ctx: Context) -> tzinfo:
    return ZoneInfo(ctx.settings["timezone"])


def series_running(fields: Mapping[str, Any], now: datetime, tz: tzinfo = UTC) -> bool:
    """A recurring series with an occurrence at or after `now` (CAL-3)."""
    rule, start = fields.get("recurrence"), _instant(fields.get("start"), tz)
    if not rule or start is None:
        return False
    try:
        series = rrulestr(rule, dtstart=start, forceset=True)
    except (ValueError, TypeError):
        return True  # unreadable rule text: keep the series rather than drop it silently
    return series.after(now, inc=True) is not None


def new_record_reason(
    kind: Kind, side: Side, fields: Mapping[str, Any], modified: datetime | None, ctx: Context
) -> str | None:
    """Why an unlinked record does not sync; None when it does."""
    if kind == "activity":
        return _activity_reason(side, fields, modified, ctx)
    if kind == "todo":
        return _todo_reason(side, fields, modified, ctx)
    return None


def _activity_reason(
    side: Side, fields: Mapping[str, Any], modified: datetime | None, ctx: Context
) -> str | None:
    s = ctx.settings
    if side == "crm":
        if fields["type"] == "event":
            return "CRM events (multi-day happenings) do not sync"
        leader = fields["leader"]
        if leader not in (None, ctx.user):
            if ctx.syncs(leader):
                return "the leader's own sync brings this activity to the calendar"
            if ctx.user not in fields["members"]:
                return "the user neither leads nor takes part in this activity"
    elif fields["private"] and not s["private_items"]:
        return "private calendar items are not synced unless the user opts in"
    if fields["status"] == "declined":
        reason = _declined_reason(s["declined"])
        if reason:
            return reason
    return _window_reason(fields, modified, ctx)


def _declined_reason(policy: str) -> str | None:
    """CAL-7: `skip_then_remove` leaves out what was declined before the first sync;
    `sync_hidden` takes it in with status declined, which the CRM's calendar hides and
    the provider shows as free time. Each provider's defaults choose one."""
    if policy == "skip_then_remove":
        return "declined before the first sync"
    if policy == "sync_hidden":
        return None
    raise ValueError(f"declined: unknown policy {policy!r}")


def _window_reason(
    fields: Mapping[str, Any], modified: datetime | None, ctx: Context
) -> str | None:
    s = ctx.settings
    tz = _user_zone(ctx)
    running = series_running(fields, ctx.now, tz)
    not_before = s["not_before"]
    start = _instant(fields["start"], tz)
    if not_before is not None and start is not None and not running:
        edge = _instant(not_before, tz)
        assert edge is not None
        if start < edge and (modified is None or modified < edge):
            return f"starts before the do-not-sync-before date {not_before.isoformat()}"
    if not ctx.first_cycle:
        return None
    since = ctx.now - timedelta(days=s["window_days"])
    end = _instant(fields["end"], tz) or start
    if running or (end is not None and end >= since) or (modified and modified >= since):
        return None
    return f"ended more than {s['window_days']} days before the first sync"


def _todo_reason(
    side: Side, fields: Mapping[str, Any], modified: datetime | None, ctx: Context
) -> str | None:
    s = ctx.settings
    if side == "crm" and fields["recurrence"] and not s["provider_recurring_todos"]:
        return "the provider cannot hold recurring tasks"
    if side == "crm" and fields["private"] and not s["private_items"]:  # TSK-5
        return "private to-dos are not synced unless the user opts in"
    if not ctx.first_cycle:
        return None
    since = ctx.now - timedelta(days=s["window_days"])
    if fields["status"] in ("open", "in_progress") or (modified and modified >= since):
        return None
    return f"closed and not modified in the {s['window_days']} days before the first sync"
