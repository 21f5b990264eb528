"""The SyncWorld example in README.md runs as written (SYN-2, SYN-4): a provider edit
reaches the CRM, and a sync killed after its first write resumes cleanly. The custom
field mapping it shows is a tenant's valid settings (SYN-1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from crmsync.settings import resolve

README = Path(__file__).resolve().parents[2] / "README.md"


def test_SYN4_readme_syncworld_example_runs_as_written() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    scope: dict[str, Any] = {}
    exec(compile(blocks[0], str(README), "exec"), scope)  # its asserts must hold
    world = scope["world"]
    (activity,) = world.crm.all("activity")
    assert activity["subject"] == "Kickoff v2"
    (event,) = world.provider.all("activity")
    assert (event["subject"], event["location"]) == ("Kickoff v2", "Room 4")


def test_SYN1_readme_custom_field_mapping_is_valid_tenant_settings() -> None:
    [block] = re.findall(r"```json\n(.*?)```", README.read_text(), re.S)

    settings = resolve("google", json.loads(block))

    assert settings.mapped("activity")[-2:] == ("custom.stage", "custom.order")
    assert settings.custom_map("contact").write({"custom.renewal": "2026-12-31"}) == {
        "Renewal date": "31.12.2026"
    }
