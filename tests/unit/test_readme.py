"""The SyncWorld example in README.md runs as written (SYN-2, SYN-4): a provider edit
reaches the CRM, and a sync killed after its first write resumes cleanly. The custom
field mapping it shows is a tenant's valid settings (SYN-1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from crmsync.settings import BASE_DEFAULTS, resolve

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


def test_SET2_the_readme_settings_table_names_every_setting_and_only_real_ones() -> None:
    text = README.read_text()
    table = text[text.index("## Settings") : text.index("## The CRM side")]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert named == set(BASE_DEFAULTS)


def test_SYN1_readme_custom_field_mapping_is_valid_tenant_settings() -> None:
    [block] = re.findall(r"```json\n(.*?)```", README.read_text(), re.S)

    settings = resolve("google", json.loads(block))

    assert settings.mapped("activity")[-2:] == ("custom.stage", "custom.order")
    assert settings.custom_map("contact").write({"custom.renewal": "2026-12-31"}) == {
        "Renewal date": "31.12.2026"
    }
