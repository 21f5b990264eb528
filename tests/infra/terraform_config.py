"""crmsync's Terraform (infra/*.tf) read with python-hcl2, for tests that hold it to
the code. Literal values come back as Python values; expressions as "${...}" text."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
_OPTIONS = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


@dataclass
class Terraform:
    """Every block of a Terraform directory, merged across its files."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    imports: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) in self.resources, f"infra/ declares no {kind}.{name}"
        return self.resources[(kind, name)]

    def local(self, name: str) -> Any:
        assert name in self.locals, f"infra/ declares no local.{name}"
        return self.locals[name]


def load(directory: Path = INFRA) -> Terraform:
    config = Terraform()
    for path in sorted(directory.glob("*.tf")):
        with path.open() as file:
            parsed = hcl2.load(file, serialization_options=_OPTIONS)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    assert (kind, name) not in config.resources, f"{kind}.{name} twice"
                    config.resources[(kind, name)] = body
        for block in parsed.get("locals", []):
            config.locals.update(block)
        for block in parsed.get("variable", []):
            config.variables.update(block)
        for block in parsed.get("output", []):
            config.outputs.update(block)
        config.imports.extend(parsed.get("import", []))
    return config


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one nested block `name` of a resource body (hcl2 gives blocks as lists)."""
    found = body.get(name)
    assert isinstance(found, list) and len(found) == 1, f"expected one {name} block"
    value: dict[str, Any] = found[0]
    return value
