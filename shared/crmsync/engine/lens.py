"""Views of canonical values on each side, and the way back.

The base snapshot of a link is canonical (the CRM's vocabulary, full text). Each side
sees a projection of it: the provider sees only mapped fields, a completion marker in
the subject (CAL-8), the related-info block in the notes (CAL-5), personal activities
as private (CAL-1), to-do statuses through the status table (TSK-3); the CRM sees text
cut to its declared limits (SYN-3) and infinite series capped (CAL-9). A side changed
a field only when its value differs from the projection of the base, so markers,
truncation and lossy tables never read as edits and nothing ping-pongs.

Mapped custom fields (SYN-1, custom.<name>) are fields like the others: the provider
sees those the CRM declares, in canonical form (their provider adapter writes them
under the tenant's key, through the tenant's transform), and a mapping of a custom
field the CRM does not declare moves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from crmsync.engine.records import Context
from crmsync.model import FIELD_NAMES, RECORD_TYPES, Kind, Regarding, fields_of, is_custom

BLOCK_START = "[CRM]"
BLOCK_END = "[/CRM]"
_BLOCK = re.compile(r"\[CRM\]\n.*?\n\[/CRM\]", re.DOTALL)
_RRULE_END = re.compile(r"(?:^|;)(?:COUNT|UNTIL)=", re.IGNORECASE)
_TO_DO_STATUSES = ("open", "in_progress", "completed", "cancelled")

BLANK: dict[Kind, dict[str, Any]] = {kind: fields_of(cls()) for kind, cls in RECORD_TYPES.items()}


def related_info(fields: Mapping[str, Any], template: str) -> str:
    """The CAL-5 block for a CRM activity or to-do (TSK-4); empty when it regards
    nothing."""
    regarding: Regarding = fields.get("regarding") or Regarding()
    if regarding.is_empty():
        return ""
    values = {name: getattr(regarding, name) or "" for name in Regarding.__dataclass_fields__}
    values["leader"] = fields.get("leader") or ""
    lines = [
        line for line in template.format(**values).splitlines() if not line.rstrip().endswith(":")
    ]
    return "\n".join([BLOCK_START, *lines, BLOCK_END])


def strip_block(notes: str) -> str:
    """The user's own notes: the first related-info block removed wherever it sits."""
    before, _, after = _BLOCK.sub("\0", notes, count=1).partition("\0")
    return "\n\n".join(p for p in (before.strip(), after.strip()) if p)


def _marker_parts(template: str) -> tuple[str, str]:
    prefix, _, suffix = template.partition("{subject}")
    return prefix, suffix


def add_marker(subject: str, template: str) -> str:
    return template.replace("{subject}", subject)


def strip_marker(subject: str, template: str) -> tuple[str, bool]:
    prefix, suffix = _marker_parts(template)
    if (
        len(subject) >= len(prefix) + len(suffix)
        and subject.startswith(prefix)
        and subject.endswith(suffix)
    ):
        return subject[len(prefix) : len(subject) - len(suffix)], True
    return subject, False


def moving(kind: Kind, ctx: Context) -> tuple[str, ...]:
    """The mapped fields that move (SYN-1): the field map's, and the mapped custom
    fields the CRM declares."""
    mapped = ctx.settings.mapped(kind)
    if not ctx.settings["custom_fields"][kind]:
        return mapped
    return tuple(
        name
        for name in mapped
        if not is_custom(name) or ctx.schema.declared(kind, name) is not None
    )


def provider_view(kind: Kind, fields: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """How the provider holds a canonical record: mapped fields only, in its own terms.
    A custom field a record predating its declaration lacks has no value."""
    s = ctx.settings
    if s["custom_fields"][kind]:
        view = {name: fields.get(name) for name in moving(kind, ctx)}
    else:
        view = {name: fields[name] for name in s.mapped(kind)}
    if kind == "activity":
        _activity_view(fields, view, ctx)
    elif kind == "todo":
        if "status" in view:
            view["status"] = s["todo_status"][fields["status"]]
        if not s["provider_recurring_todos"]:
            view.pop("recurrence", None)
        if "notes" in view:  # TSK-4: the related-info block, as on activities (CAL-5)
            block = related_info(fields, s["related_info_template"])
            view["notes"] = "\n\n".join(p for p in (fields["notes"], block) if p)
    return view


def _activity_view(fields: Mapping[str, Any], view: dict[str, Any], ctx: Context) -> None:
    s = ctx.settings
    completed = fields["status"] == "completed"
    if "subject" in view and completed:
        view["subject"] = add_marker(fields["subject"], s["completed_marker"])
    if "status" in view and completed:
        view["status"] = "confirmed"
    if "notes" in view:
        block = related_info(fields, s["related_info_template"])
        view["notes"] = "\n\n".join(p for p in (fields["notes"], block) if p)
    if "private" in view:
        view["private"] = bool(fields["private"]) or fields["type"] == "personal"
    if "members" in view:
        leader = fields["leader"]
        if leader is None or leader == ctx.user or ctx.syncs(leader):
            view["members"] = tuple(m for m in fields["members"] if m != ctx.user)
        else:  # CAL-6: the leader does not sync, so each member's copy invites no one
            view["members"] = ()


def lift_provider(
    kind: Kind, view: Mapping[str, Any], base: Mapping[str, Any], ctx: Context
) -> dict[str, Any]:
    """Canonical values of the fields the provider holds, read back from its view."""
    s = ctx.settings
    out = {name: view[name] for name in moving(kind, ctx) if name in view}
    if kind == "activity":
        if "subject" in out:
            subject, marked = strip_marker(out["subject"], s["completed_marker"])
            out["subject"] = subject
            if "status" in out and marked:
                out["status"] = "completed"
        if "notes" in out:
            out["notes"] = strip_block(out["notes"])
        if "private" in out and base["type"] == "personal":
            out["private"] = base["private"]
        if "members" in out:
            if base["leader"] in (None, ctx.user):
                keep_self = {ctx.user} if ctx.user in base["members"] else set()
                out["members"] = tuple(sorted(keep_self | set(out["members"])))
            else:
                out["members"] = base["members"]
    elif kind == "todo":
        if "status" in out:
            out["status"] = _todo_status_back(out["status"], base["status"], s["todo_status"])
        if "notes" in out:
            out["notes"] = strip_block(out["notes"])
    return out


def _todo_status_back(seen: str, before: str, table: Mapping[str, str]) -> str:
    if table.get(before) == seen:
        return before  # a lossy table: "open" at the provider still means in_progress in the CRM
    for status in _TO_DO_STATUSES:
        if table[status] == seen:
            return status
    return seen if seen in _TO_DO_STATUSES else before


def crm_view(kind: Kind, fields: Mapping[str, Any], ctx: Context) -> Mapping[str, Any]:
    """How the CRM holds a canonical record: text cut to its limits, series capped, no
    repetition on to-dos where the CRM cannot hold it (SYN-3, CAL-9, TSK-3). Like cut
    text, what the CRM cannot hold stays on the provider, untouched."""
    capped = kind == "activity" and not ctx.schema.infinite_series
    single = kind == "todo" and not ctx.schema.recurring_todos
    if not capped and not single and not ctx.schema.limits.get(kind):
        return fields  # nothing to cut: the CRM holds the canonical values as they are
    view = dict(fields)
    for name, limit in ctx.schema.limits.get(kind, {}).items():
        value = view.get(name)
        if isinstance(value, str) and len(value) > limit:
            view[name] = value[:limit]
    if capped and view.get("recurrence"):
        years = ctx.settings["recurrence_years"]
        if ctx.schema.max_recurrence_years is not None:
            years = min(years, ctx.schema.max_recurrence_years)
        view["recurrence"] = cap_series(view["recurrence"], view["start"], years)
    if single:
        view["recurrence"] = None
    return view


def cap_series(recurrence: str, start: date | datetime | None, years: int) -> str:
    """An infinite RRULE gets an UNTIL `years` after its start (CAL-9)."""
    if start is None:
        return recurrence
    lines = recurrence.splitlines()
    for i, line in enumerate(lines):
        rule = line.split(":", 1)[1] if line.upper().startswith("RRULE:") else line
        if "FREQ=" in rule.upper() and not _RRULE_END.search(rule):
            day = start.date() if isinstance(start, datetime) else start
            end = day + timedelta(days=round(365.25 * years))
            # RFC 5545: UNTIL takes the value type of DTSTART (a date for all-day series)
            until = end.strftime("%Y%m%dT235959Z" if isinstance(start, datetime) else "%Y%m%d")
            lines[i] = f"{line};UNTIL={until}"
    return "\n".join(lines)


def crm_only_fields(kind: Kind, ctx: Context) -> tuple[str, ...]:
    mapped = set(ctx.settings.mapped(kind))
    return tuple(name for name in FIELD_NAMES[kind] if name not in mapped)
