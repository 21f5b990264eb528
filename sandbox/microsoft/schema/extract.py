"""Writes `graph-v1.0.json`, the part of Microsoft Graph's v1.0 schema the sandbox
serves, from Microsoft's published metadata (https://github.com/microsoftgraph/msgraph-metadata,
its CSDL `clean_v10_metadata/cleanMetadata.xml`).

The subset is the types in ROOTS and every type they reach through their structural
properties and base types, transitively: entity, complex and enum types, each property
with its type, whether it is a collection and whether it may be null. Navigation
properties are listed with their types, but their targets are taken only when they are
roots themselves (the sandbox expands only those). The JSON records the repository,
path, commit and blob it was read from.

    python -m sandbox.microsoft.schema.extract --metadata-repo <clone of msgraph-metadata>
    python -m sandbox.microsoft.schema.extract --metadata-file cleanMetadata.xml --commit <sha>

Standard library only; run it again after Graph's metadata changes, or after the sandbox
starts to serve another type (add it to ROOTS), and commit the JSON it writes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPOSITORY = "microsoftgraph/msgraph-metadata"
METADATA_PATH = "clean_v10_metadata/cleanMetadata.xml"
OUTPUT = Path(__file__).with_name("graph-v1.0.json")
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
EDMX = "{http://docs.oasis-open.org/odata/ns/edmx}"

# What the sandbox answers with: its resources, what they expand to, and the
# notifications it posts.
ROOTS = (
    "microsoft.graph.user",
    "microsoft.graph.contactFolder",
    "microsoft.graph.contact",
    "microsoft.graph.calendar",
    "microsoft.graph.event",
    "microsoft.graph.attachment",
    "microsoft.graph.fileAttachment",
    "microsoft.graph.todoTaskList",
    "microsoft.graph.todoTask",
    "microsoft.graph.linkedResource",
    "microsoft.graph.openTypeExtension",
    "microsoft.graph.singleValueLegacyExtendedProperty",
    "microsoft.graph.multiValueLegacyExtendedProperty",
    "microsoft.graph.subscription",
    "microsoft.graph.changeNotificationCollection",
    "microsoft.graph.mailFolder",
    "microsoft.graph.message",
    "microsoft.graph.outlookCategory",
)


def _split(type_text: str) -> tuple[str, bool]:
    """'Collection(graph.x)' -> ('graph.x', True)."""
    if type_text.startswith("Collection(") and type_text.endswith(")"):
        return type_text[len("Collection(") : -1], True
    return type_text, False


class Csdl:
    """The structured and enum types of a CSDL document, by qualified name."""

    def __init__(self, xml: bytes) -> None:
        root = ET.fromstring(xml)
        self.elements: dict[str, ET.Element] = {}
        self.kinds: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        schemas = list(root.iter(f"{EDM}Schema"))
        for schema in schemas:
            namespace = schema.attrib["Namespace"]
            self.aliases[namespace] = namespace
            if "Alias" in schema.attrib:
                self.aliases[schema.attrib["Alias"]] = namespace
        for schema in schemas:
            namespace = schema.attrib["Namespace"]
            for tag, kind in (
                ("EntityType", "entity"),
                ("ComplexType", "complex"),
                ("EnumType", "enum"),
            ):
                for element in schema.findall(f"{EDM}{tag}"):
                    name = f"{namespace}.{element.attrib['Name']}"
                    self.elements[name] = element
                    self.kinds[name] = kind

    def qualified(self, name: str) -> str:
        """`graph.contact` (an alias) -> `microsoft.graph.contact`; Edm names unchanged."""
        prefix, _, short = name.rpartition(".")
        if prefix == "Edm" or not prefix:
            return name
        return f"{self.aliases.get(prefix, prefix)}.{short}"

    def describe(self, name: str) -> dict[str, Any]:
        element, kind = self.elements[name], self.kinds[name]
        if kind == "enum":
            names = [m.attrib["Name"] for m in element.findall(f"{EDM}Member")]
            found: dict[str, Any] = {"kind": "enum", "members": names}
            if element.attrib.get("IsFlags") == "true":
                found["flags"] = True
            return found
        found = {"kind": kind}
        if "BaseType" in element.attrib:
            found["base"] = self.qualified(element.attrib["BaseType"])
        for flag, key in (("Abstract", "abstract"), ("OpenType", "open")):
            if element.attrib.get(flag) == "true":
                found[key] = True
        for tag, key in (("Property", "properties"), ("NavigationProperty", "navigation")):
            members: dict[str, Any] = {}
            for prop in element.findall(f"{EDM}{tag}"):
                inner, collection = _split(prop.attrib["Type"])
                shown: dict[str, Any] = {"type": self.qualified(inner)}
                if collection:
                    shown["collection"] = True
                if prop.attrib.get("Nullable") == "false":
                    shown["nullable"] = False
                members[prop.attrib["Name"]] = shown
            if members:
                found[key] = members
        return found

    def subset(self, roots: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The roots and every type they reach through base types and structural
        properties (navigation properties only to other roots), described."""
        wanted = list(roots)
        missing = [r for r in wanted if r not in self.elements]
        if missing:
            raise KeyError(f"not in the metadata: {', '.join(missing)}")
        taken: dict[str, dict[str, Any]] = {}
        queue = list(wanted)
        while queue:
            name = queue.pop()
            if name in taken or name.startswith("Edm."):
                continue
            described = self.describe(name)
            taken[name] = described
            if "base" in described:
                queue.append(described["base"])
            queue += [p["type"] for p in described.get("properties", {}).values()]
        for described in taken.values():
            for nav in described.get("navigation", {}).values():
                if nav["type"] not in taken:
                    nav["outside"] = True  # not expanded by the sandbox: not described
        return dict(sorted(taken.items()))


def extract(xml: bytes, source: dict[str, str], roots: Iterable[str] = ROOTS) -> dict[str, Any]:
    roots = list(roots)
    return {
        "source": source,
        "roots": roots,
        "types": Csdl(xml).subset(roots),
    }


def write(document: dict[str, Any], path: Path) -> None:
    """One type a line: small, and a diff shows which types changed."""
    lines = [
        "{",
        f'"source": {json.dumps(document["source"], sort_keys=True)},',
        f'"roots": {json.dumps(document["roots"])},',
        '"types": {',
    ]
    types = document["types"]
    for index, (name, described) in enumerate(types.items()):
        comma = "," if index < len(types) - 1 else ""
        lines.append(f"{json.dumps(name)}: {json.dumps(described, separators=(',', ':'))}{comma}")
    lines += ["}", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _git(repo: str, *args: str) -> bytes:
    return subprocess.run(["git", "--git-dir", repo, *args], check=True, capture_output=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--metadata-repo", help="a clone of msgraph-metadata (its git directory)")
    given.add_argument("--metadata-file", help=f"a copy of {METADATA_PATH}")
    parser.add_argument("--rev", default="HEAD", help="with --metadata-repo: the commit to read")
    parser.add_argument("--commit", help="with --metadata-file: the commit it was taken from")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.metadata_repo:
        repo = args.metadata_repo
        git_dir = _git(repo, "rev-parse", "--absolute-git-dir").decode().strip()
        commit = _git(git_dir, "rev-parse", f"{args.rev}^{{commit}}").decode().strip()
        blob = _git(git_dir, "rev-parse", f"{commit}:{METADATA_PATH}").decode().strip()
        xml = _git(git_dir, "cat-file", "blob", blob)
    else:
        if not args.commit:
            parser.error("--metadata-file needs --commit, the metadata commit it came from")
        xml = Path(args.metadata_file).read_bytes()
        commit, blob = args.commit, ""
    source = {"repository": REPOSITORY, "path": METADATA_PATH, "commit": commit}
    if blob:
        source["blob"] = blob
    document = extract(xml, source)
    write(document, args.out)
    print(f"{len(document['types'])} types from {REPOSITORY}@{commit[:12]} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
