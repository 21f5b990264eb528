"""Providers are plug-ins: the service layer, the cycle, the engine, the grants and the
pages name no provider and import no provider's package; they reach a provider only
through `crmsync.providers.kit(name)`, and a new provider is a new package under
`crmsync/providers/` (ARCHITECTURE, "Rule of the house")."""

from __future__ import annotations

import re
from pathlib import Path

from crmsync import providers
from crmsync.settings import PROVIDERS

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "crmsync"
NEUTRAL = [
    PACKAGE / "service.py",
    *sorted((PACKAGE / "cycle").glob("*.py")),
    PACKAGE / "connections.py",
    PACKAGE / "ports.py",
    *sorted((PACKAGE / "engine").glob("*.py")),
    *sorted((PACKAGE / "usecases").glob("*.py")),
    *sorted((PACKAGE / "web").rglob("*.py")),
    *sorted((PACKAGE / "web").rglob("*.html")),
    *sorted((PACKAGE / "app").glob("*.py")),
    *sorted((PACKAGE / "usecases").glob("*.py")),
    *sorted((PACKAGE / "mail").glob("*.py")),
]
NAMES = re.compile(r"google|microsoft|gmail|outlook|graph\.microsoft", re.IGNORECASE)


def test_the_provider_neutral_modules_name_no_provider() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in NEUTRAL
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if NAMES.search(line)
    ]
    assert found == []


def test_a_provider_is_found_by_its_package_and_offers_a_kit() -> None:
    assert set(providers.names()) <= set(PROVIDERS)
    for name in providers.names():
        kit = providers.kit(name)
        assert kit.name == name and kit.label
        for method in ("available", "consent", "exchange", "account", "revoke", "choices"):
            assert callable(getattr(kit, method)), (name, method)
