"""How a CRM custom field is held at the provider, and read back (SYN-1).

A tenant maps a custom field the CRM declares to a key at the provider (SET-2:
`custom_fields`), optionally through a transform:

    {"enum": {"software": "Software", "retail": "Retail & Trade"}}   a reversible table
    {"prefix": "CRM-"}                                              text before the value
    {"format": "date", "pattern": "%d.%m.%Y"}                       a date, written so
    {"hook": "acme-codes"}                                          a vendor's own Python

A hook is an object with `to_provider(value)` and `to_crm(value)`, both taking and
returning text. A vendor registers it as an entry point of the group
`crmsync.transforms` (the entry point's name is the hook's), or, in self-hosted code
and tests, with `register_transform(name, hook)`.

Values cross a transform as canonical text (`crmsync.model.custom_text`). Every
transform must read back what it writes: a written value that does not is refused for
that record alone, so a transform can never make a value drift or ping-pong. A value
the provider holds that the transform cannot read makes that record fail alone with the
reason (SYN-5) until someone corrects it on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from crmsync.errors import PermanentError
from crmsync.model import CUSTOM, InvalidRecord

ENTRY_POINTS = "crmsync.transforms"
KINDS_OF_TRANSFORM = ("enum", "prefix", "format", "hook")
# Dates a date pattern must write and read back unchanged to be usable.
_PROBES = (date(2026, 1, 2), date(1999, 12, 31), date(2031, 7, 15))


class Transform(Protocol):
    def to_provider(self, value: str) -> str: ...
    def to_crm(self, value: str) -> str: ...


class TransformError(ValueError):
    """A value a transform cannot take, or a transform that cannot be used; says why."""


@dataclass(frozen=True)
class Identity:
    def to_provider(self, value: str) -> str:
        return value

    def to_crm(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class EnumTable:
    """CRM value → provider value, one to one."""

    table: Mapping[str, str]
    back: Mapping[str, str] = field(init=False)

    def __post_init__(self) -> None:
        back: dict[str, str] = {}
        for crm_value, provider_value in self.table.items():
            if provider_value in back:
                raise TransformError(
                    f"not reversible: {back[provider_value]!r} and {crm_value!r} "
                    f"both become {provider_value!r}"
                )
            back[provider_value] = crm_value
        object.__setattr__(self, "back", back)

    def to_provider(self, value: str) -> str:
        if value not in self.table:
            raise TransformError(f"{value!r} has no entry in the enum table")
        return self.table[value]

    def to_crm(self, value: str) -> str:
        if value not in self.back:
            raise TransformError(f"{value!r} is none of {', '.join(map(repr, self.back))}")
        return self.back[value]


@dataclass(frozen=True)
class Prefix:
    prefix: str

    def to_provider(self, value: str) -> str:
        return self.prefix + value

    def to_crm(self, value: str) -> str:
        if not value.startswith(self.prefix):
            raise TransformError(f"{value!r} does not start with {self.prefix!r}")
        return value[len(self.prefix) :]


@dataclass(frozen=True)
class DateFormat:
    """An ISO date in the CRM, written at the provider with a strftime pattern."""

    pattern: str

    def to_provider(self, value: str) -> str:
        try:
            return date.fromisoformat(value).strftime(self.pattern)
        except ValueError as exc:
            raise TransformError(f"{value!r} is not a date (YYYY-MM-DD)") from exc

    def to_crm(self, value: str) -> str:
        try:
            return datetime.strptime(value, self.pattern).date().isoformat()
        except ValueError as exc:
            raise TransformError(f"{value!r} is not a date like {self.pattern!r}") from exc


@dataclass(frozen=True)
class Hook:
    """A vendor's transform; whatever it raises or returns that is not text, fails."""

    name: str
    hook: Any

    def _call(self, method: str, value: str) -> str:
        try:
            out = getattr(self.hook, method)(value)
        except Exception as exc:
            raise TransformError(f"hook {self.name!r} failed on {value!r}: {exc}") from exc
        if not isinstance(out, str):
            raise TransformError(f"hook {self.name!r} gave {out!r} for {value!r}, not text")
        return out

    def to_provider(self, value: str) -> str:
        return self._call("to_provider", value)

    def to_crm(self, value: str) -> str:
        return self._call("to_crm", value)


# -- hooks -----------------------------------------------------------------------------------
_REGISTERED: dict[str, Any] = {}


def register_transform(name: str, hook: Any) -> None:
    """Make a hook known by name (self-hosted code and tests; packages use the entry
    point group `crmsync.transforms`)."""
    if not name or not _is_hook(hook):
        raise TypeError("a transform hook needs a name, to_provider(value) and to_crm(value)")
    _REGISTERED[name] = hook


def unregister_transform(name: str) -> None:
    _REGISTERED.pop(name, None)


def _is_hook(hook: Any) -> bool:
    return callable(getattr(hook, "to_provider", None)) and callable(getattr(hook, "to_crm", None))


@cache
def _entry_point_hooks() -> dict[str, Callable[[], Any]]:
    """The installed packages' hooks by name, loaded when first used."""
    return {point.name: point.load for point in entry_points(group=ENTRY_POINTS)}


def hook(name: str) -> Any:
    """The hook registered under `name`; TransformError when there is none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    loader = _entry_point_hooks().get(name)
    if loader is None:
        raise TransformError(f"no transform hook {name!r} is registered")
    found = loader()
    found = found() if isinstance(found, type) else found
    if not _is_hook(found):
        raise TransformError(f"the hook {name!r} has no to_provider(value) and to_crm(value)")
    return found


# -- from settings ---------------------------------------------------------------------------
def transform(spec: Mapping[str, Any] | None) -> Transform:
    """The transform a setting describes (None: the value as it is); TransformError
    saying what is wrong with it."""
    if spec is None:
        return Identity()
    if not isinstance(spec, Mapping):
        raise TransformError(f"expected one of {', '.join(KINDS_OF_TRANSFORM)}, got {spec!r}")
    kinds = [k for k in KINDS_OF_TRANSFORM if k in spec]
    if len(kinds) != 1:
        raise TransformError(
            f"expected exactly one of {', '.join(KINDS_OF_TRANSFORM)}, got {sorted(spec)}"
        )
    [kind] = kinds
    allowed = {"format", "pattern"} if kind == "format" else {kind}
    if set(spec) - allowed:
        raise TransformError(f"unknown keys {sorted(set(spec) - allowed)}")
    return _BUILDERS[kind](spec)


def _enum(spec: Mapping[str, Any]) -> Transform:
    table = spec["enum"]
    if not isinstance(table, Mapping) or not table:
        raise TransformError("enum: expected a table of CRM value to provider value")
    if not all(isinstance(v, str) and v for v in (*table.keys(), *table.values())):
        raise TransformError("enum: the table's values must be text")
    return EnumTable(dict(table))


def _prefix(spec: Mapping[str, Any]) -> Transform:
    if not isinstance(spec["prefix"], str) or not spec["prefix"]:
        raise TransformError("prefix: expected text")
    return Prefix(spec["prefix"])


def _format(spec: Mapping[str, Any]) -> Transform:
    if spec["format"] != "date":
        raise TransformError(f"format: {spec['format']!r} is not one of date")
    pattern = spec.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise TransformError("format: a date needs a pattern, e.g. %d.%m.%Y")
    chosen = DateFormat(pattern)
    for probe in _PROBES:
        try:
            back = chosen.to_crm(chosen.to_provider(probe.isoformat()))
        except TransformError:
            back = None
        if back != probe.isoformat():
            raise TransformError(f"format: the pattern {pattern!r} does not read back {probe}")
    return chosen


def _hook(spec: Mapping[str, Any]) -> Transform:
    name = spec["hook"]
    if not isinstance(name, str):
        raise TransformError("hook: expected the name a hook is registered under")
    return Hook(name, hook(name))


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Transform]] = {
    "enum": _enum,
    "prefix": _prefix,
    "format": _format,
    "hook": _hook,
}


# -- what a provider adapter uses ----------------------------------------------------------
@dataclass(frozen=True)
class Mapped:
    """One custom field at the provider: its canonical name, its key there, and how the
    value is written there."""

    name: str
    provider: str
    transform: Transform


@dataclass(frozen=True)
class CustomMap:
    """One kind's custom-field mapping, as a provider adapter applies it: it reads the
    values the provider holds (by the provider's keys) into canonical values, and
    writes canonical values as the provider's. Adapters call only these two."""

    fields: tuple[Mapped, ...] = ()

    @classmethod
    def of(cls, table: Mapping[str, Mapping[str, Any]] | None) -> CustomMap:
        """From the `custom_fields` setting of one kind (already validated)."""
        return cls(
            tuple(
                Mapped(CUSTOM + name, str(spec["provider"]), transform(spec.get("transform")))
                for name, spec in (table or {}).items()
            )
        )

    def __bool__(self) -> bool:
        return bool(self.fields)

    @property
    def keys(self) -> tuple[str, ...]:
        """The provider keys the mapping holds values under."""
        return tuple(m.provider for m in self.fields)

    def read(self, held: Mapping[str, Any]) -> dict[str, str | None]:
        """Every mapped field's canonical value from what the provider holds by its keys
        (None where it holds none); InvalidRecord naming the field whose value the
        transform cannot read, so the record fails alone (SYN-5)."""
        out: dict[str, str | None] = {}
        for m in self.fields:
            value = held.get(m.provider)
            text = value.strip() if isinstance(value, str) else None
            try:
                out[m.name] = m.transform.to_crm(text) if text else None
            except TransformError as exc:
                raise InvalidRecord(f"{m.name} (at the provider {m.provider!r}): {exc}") from exc
        return out

    def write(self, fields: Mapping[str, Any]) -> dict[str, str | None]:
        """The provider's values, by its keys, of the mapped fields `fields` carries
        (None: no value). PermanentError, for this record alone, when a value cannot be
        written or would not read back as itself."""
        out: dict[str, str | None] = {}
        for m in self.fields:
            if m.name not in fields:
                continue
            value = fields[m.name]
            if value is None or value == "":
                out[m.provider] = None
                continue
            try:
                written = m.transform.to_provider(str(value))
                back = m.transform.to_crm(written)
            except TransformError as exc:
                raise PermanentError(f"{m.name}: {exc}") from exc
            if back != value:
                raise PermanentError(
                    f"{m.name}: the transform writes {value!r} as {written!r}, "
                    f"which reads back as {back!r}"
                )
            out[m.provider] = written
        return out
