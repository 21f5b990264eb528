"""Microsoft Graph's v1.0 schema, the part the sandbox serves, and a check of JSON
answers against it, so the sandbox cannot drift from what Graph answers.

`graph-v1.0.json` is extracted from Microsoft's published CSDL by `extract.py` (it
records the metadata commit). `graph_schema().check(value, "contact")` lists what in
`value` Graph's type could not hold, empty when nothing:

  * a property the type (or one of its base types) does not declare; open types
    (contact, event, user) are checked as closed, since Graph answers them with declared
    properties only; an open type declaring no property at all (`resourceData`) holds
    any;
  * a value of another type than declared: Edm.String, Edm.Boolean, Edm.Int32 (not a
    bool, in range), Edm.DateTimeOffset (ISO 8601 text with an offset or Z), Edm.Date,
    Edm.Guid, ..., enum members (flags: comma-separated), complex and entity values
    checked recursively (as the type their `@odata.type` names, which must derive from
    the declared one), collections as lists;
  * null where the property is not nullable (a collection is never null; its items
    only where nullable);
  * an expanded navigation property (`$expand=singleValueExtendedProperties`), checked
    as its target type;
  * annotations other than OData's (`@odata.context`, `@odata.etag`, `@odata.type`,
    `@odata.nextLink`, `@odata.deltaLink`, ...), Graph's delta `@removed`, property
    annotations (`name@odata.type`) of declared properties, and namespaced custom
    ones (`@microsoft.graph.downloadUrl`).

`check_answer(body, "Collection(contact)")` checks a collection answer: `value`, a list
of the type, beside `@odata.context`, `@odata.nextLink`, `@odata.deltaLink` and
`@odata.count`; `check_answer(body, "contact")` a single entity. Standard library only.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("graph-v1.0.json")
NAMESPACE = "microsoft.graph"
EXTENSION = f"{NAMESPACE}.extension"  # open extensions hold what an app puts in them

# Control information OData's JSON format defines (OData JSON Format 4.01, section 4.5).
ODATA_ANNOTATIONS = frozenset(
    {
        "context",
        "metadataEtag",
        "type",
        "count",
        "nextLink",
        "deltaLink",
        "id",
        "editLink",
        "readLink",
        "etag",
        "navigationLink",
        "associationLink",
        "mediaEditLink",
        "mediaReadLink",
        "mediaContentType",
        "mediaEtag",
    }
)
# Annotations of a collection answer's top level (besides its `value`).
COLLECTION_ANNOTATIONS = frozenset({"context", "count", "nextLink", "deltaLink"})
REMOVED_REASONS = frozenset({"changed", "deleted"})

_DATE_TIME_OFFSET = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,12})?)?(Z|[+-]\d{2}:\d{2})$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,12})?)?$")
_DURATION = re.compile(r"^-?P(?=\d|T\d)(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_BINARY = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
_INT_RANGES = {
    "Edm.Byte": (0, 255),
    "Edm.SByte": (-128, 127),
    "Edm.Int16": (-(2**15), 2**15 - 1),
    "Edm.Int32": (-(2**31), 2**31 - 1),
    "Edm.Int64": (-(2**63), 2**63 - 1),
}


class SchemaDrift(AssertionError):
    """An answer of the sandbox that Graph's schema cannot hold."""


@dataclass(frozen=True)
class Declared:
    """A property as its type declares it."""

    owner: str  # the type declaring it
    name: str
    type: str
    collection: bool
    nullable: bool
    navigation: bool
    outside: bool  # a navigation target not in the subset (the sandbox never expands it)

    @property
    def shown(self) -> str:
        inner = f"Collection({self.type})" if self.collection else self.type
        return f"{_short(self.owner)}.{self.name}: {inner}"


def _short(name: str) -> str:
    return name.removeprefix(NAMESPACE + ".")


def _text(value: Any) -> str:
    shown = json.dumps(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


class Schema:
    """The types of `graph-v1.0.json`; names may omit `microsoft.graph.`."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.source: dict[str, str] = document["source"]
        self.roots: list[str] = document["roots"]
        self.types: dict[str, dict[str, Any]] = document["types"]
        self._members: dict[str, dict[str, Declared]] = {}

    @classmethod
    def load(cls, path: Path = SCHEMA_PATH) -> Schema:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    # -- types ------------------------------------------------------------------------------
    def qualified(self, name: str) -> str:
        name = name.removeprefix("#")
        if name.startswith("Edm.") or name in self.types:
            return name
        return f"{NAMESPACE}.{name}"

    def bases(self, name: str) -> list[str]:
        """`name` and its base types, the most derived first."""
        chain = [self.qualified(name)]
        while "base" in self.types[chain[-1]]:
            chain.append(self.types[chain[-1]]["base"])
        return chain

    def members(self, name: str) -> dict[str, Declared]:
        """Every property and navigation property of `name` and its base types."""
        name = self.qualified(name)
        found = self._members.get(name)
        if found is None:
            found = {}
            for owner in reversed(self.bases(name)):
                described = self.types[owner]
                for key, navigation in (("properties", False), ("navigation", True)):
                    for prop, facts in described.get(key, {}).items():
                        found[prop] = Declared(
                            owner,
                            prop,
                            facts["type"],
                            bool(facts.get("collection")),
                            bool(facts.get("nullable", True)),
                            navigation,
                            bool(facts.get("outside")),
                        )
            self._members[name] = found
        return found

    def dynamic(self, name: str) -> bool:
        """Whether `name` holds properties it does not declare: an open type declaring
        none (Graph's `resourceData`), or an extension, whose own properties are the
        app's data."""
        name = self.qualified(name)
        if not self.types[name].get("open"):
            return False
        return not self.members(name) or EXTENSION in self.bases(name)

    # -- checks -----------------------------------------------------------------------------
    def check(self, value: Any, type_name: str) -> list[str]:
        """What in `value` (one value of `type_name`) Graph's schema cannot hold."""
        problems: list[str] = []
        name = self.qualified(type_name)
        if not name.startswith("Edm.") and name not in self.types:
            raise KeyError(f"{type_name} is not in the schema subset (see extract.py's ROOTS)")
        self._value(value, name, "$", problems)
        return problems

    def check_answer(self, body: Any, answers: str) -> list[str]:
        """What in an answer of `answers` ("contact", "Collection(contact)") Graph's
        schema cannot hold."""
        inner = answers.removeprefix("Collection(").removesuffix(")")
        if inner == answers:
            return self.check(body, answers)
        problems: list[str] = []
        if not isinstance(body, dict):
            return [f"$: a collection answer must be an object, not {_text(body)}"]
        for key, value in body.items():
            if key == "value":
                continue
            term = key.removeprefix("@odata.")
            if not key.startswith("@odata.") or term not in COLLECTION_ANNOTATIONS:
                problems.append(f"$.{key}: no member of a collection answer")
            elif term == "count":
                self._value(value, "Edm.Int64", f"$.{key}", problems)
            else:
                self._value(value, "Edm.String", f"$.{key}", problems)
        items = body.get("value")
        if not isinstance(items, list):
            problems.append(
                f"$.value: a collection answer's value must be a list, not {_text(items)}"
            )
            return problems
        name = self.qualified(inner)
        for index, item in enumerate(items):
            path = f"$.value[{index}]"
            if item is None:
                problems.append(f"{path}: null in a collection of {_short(name)}")
            else:
                self._value(item, name, path, problems)
        return problems

    def _value(self, value: Any, name: str, path: str, problems: list[str]) -> None:
        if name.startswith("Edm."):
            problem = _primitive(value, name)
            if problem:
                problems.append(f"{path}: {problem}")
            return
        described = self.types[name]
        if described["kind"] == "enum":
            self._enum(value, name, path, problems)
        else:
            self._structured(value, name, path, problems)

    def _enum(self, value: Any, name: str, path: str, problems: list[str]) -> None:
        described = self.types[name]
        members = described["members"]
        given = value.split(",") if isinstance(value, str) and described.get("flags") else [value]
        for member in given:
            if not isinstance(member, str) or member.strip() not in members:
                problems.append(
                    f"{path}: {_text(value)} is no member of {_short(name)} ({', '.join(members)})"
                )
                return

    def _structured(self, value: Any, name: str, path: str, problems: list[str]) -> None:
        if not isinstance(value, dict):
            problems.append(f"{path}: {_text(value)} is not an object ({_short(name)})")
            return
        actual = name
        named = value.get("@odata.type")
        if isinstance(named, str) and not self.dynamic(name):
            # Graph names the changed item's type in a notification's open resourceData.
            candidate = self.qualified(named)
            if candidate not in self.types:
                problems.append(f"{path}.@odata.type: {named} is not in the schema subset")
                return
            if name not in self.bases(candidate):
                problems.append(f"{path}.@odata.type: {named} is no {_short(name)}")
                return
            actual = candidate
        members = self.members(actual)
        dynamic = self.dynamic(actual)
        for key, item in value.items():
            where = f"{path}.{key}"
            if "@" in key:
                self._annotation(key, item, members, dynamic, where, problems)
                continue
            declared = members.get(key)
            if declared is None:
                if not dynamic:
                    problems.append(f"{where}: {_short(actual)} has no property {key!r}")
                continue
            self._property(item, declared, where, problems)

    def _property(self, value: Any, declared: Declared, path: str, problems: list[str]) -> None:
        if declared.outside:
            problems.append(
                f"{path}: {declared.shown} is a navigation property the sandbox does not "
                "expand (its type is not in the schema subset)"
            )
            return
        if value is None:
            if declared.collection or not declared.nullable:
                problems.append(f"{path}: null, but {declared.shown} is not nullable")
            return
        if not declared.collection:
            self._value(value, declared.type, path, problems)
            return
        if not isinstance(value, list):
            problems.append(f"{path}: {_text(value)} is not a list ({declared.shown})")
            return
        for index, item in enumerate(value):
            if item is None:
                if not declared.nullable:
                    problems.append(f"{path}[{index}]: null in {declared.shown}")
                continue
            self._value(item, declared.type, f"{path}[{index}]", problems)

    def _annotation(
        self,
        key: str,
        value: Any,
        members: dict[str, Declared],
        dynamic: bool,
        path: str,
        problems: list[str],
    ) -> None:
        target, _, term = key.partition("@")
        if target and target not in members and not dynamic:
            problems.append(f"{path}: annotates {target!r}, which is no property of the type")
            return
        if term == "removed":  # Graph's delta: an item gone since the last round
            if target or not isinstance(value, dict) or value.get("reason") not in REMOVED_REASONS:
                problems.append(f"{path}: {_text(value)} is no @removed of a delta answer")
            return
        if term.startswith("odata."):
            odata = term.removeprefix("odata.")
            if odata not in ODATA_ANNOTATIONS:
                problems.append(f"{path}: no OData annotation is named {term!r}")
                return
            wanted = "Edm.Int64" if odata == "count" else "Edm.String"
            problem = _primitive(value, wanted)
            if problem:
                problems.append(f"{path}: {problem}")
            elif odata == "type" and not value.startswith("#"):
                problems.append(f"{path}: {_text(value)} must start with '#'")
            return
        if "." not in term:
            problems.append(f"{path}: {term!r} is no annotation (neither OData's nor namespaced)")


def _primitive(value: Any, name: str) -> str | None:
    """Why `value` is not a JSON value of the primitive type `name`, or None."""
    bad = f"{_text(value)} is not an {name}"
    if name in ("Edm.Untyped", "Edm.PrimitiveType"):
        return None
    if name == "Edm.Boolean":
        return None if isinstance(value, bool) else bad
    if name in _INT_RANGES:
        low, high = _INT_RANGES[name]
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else bad
    if name in ("Edm.Double", "Edm.Single", "Edm.Decimal"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return None
        special = name != "Edm.Decimal" and value in ("NaN", "INF", "-INF")
        return None if special else bad
    if not isinstance(value, str):
        return bad
    if name in ("Edm.String", "Edm.Stream"):
        return None
    if name == "Edm.DateTimeOffset":
        found = _DATE_TIME_OFFSET.match(value)
        return None if found and _real_moment(found.groups()) else bad
    if name == "Edm.Date":
        found = _DATE.match(value)
        return None if found and _real_moment((*found.groups(), "0", "0", "0")) else bad
    if name == "Edm.TimeOfDay":
        return None if _TIME_OF_DAY.match(value) else bad
    if name == "Edm.Duration":
        return None if _DURATION.match(value) else bad
    if name == "Edm.Guid":
        return None if _GUID.match(value) else bad
    if name == "Edm.Binary":
        return None if _BINARY.match(value) else bad
    return f"{name} is a primitive type the check does not know"


def _real_moment(parts: tuple[str | None, ...]) -> bool:
    year, month, day, hour, minute, second = (int(p or 0) for p in parts[:6])
    try:
        if hour == 24 and minute == 0 and second == 0:
            date(year, month, day)
        else:
            datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


@functools.cache
def graph_schema() -> Schema:
    """The checked-in subset of Graph's v1.0 schema, loaded once."""
    return Schema.load()
