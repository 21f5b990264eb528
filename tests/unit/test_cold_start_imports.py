"""A function's cold start loads what its first answer needs and no more (issue "cost
at scale": imports a function does not use stay unimported). Each probe is a fresh
interpreter that starts one function as functions-framework does and answers one
request, then lists the crmsync modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from functions_framework import create_app
app = create_app(sys.argv[1], sys.argv[2], "http")
answer = app.test_client().get(sys.argv[3])
print(json.dumps([answer.status_code, sorted(m for m in sys.modules if m.startswith("crmsync"))]))
"""
# the planner, the cycle, the CRM's HTTP client and the custom-field transforms: a
# worker's or a settings change's, not every function's
HEAVY = ("crmsync.engine", "crmsync.cycle", "crmsync.crm.rest", "crmsync.transforms")


def loaded(function: str, path: str) -> tuple[int, list[str]]:
    env = {"PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}", "CRMSYNC_STORE": "memory"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, function, str(ROOT / "functions" / "main.py"), path],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "PATH": "/usr/bin:/bin"},
    )
    status, modules = json.loads(out.stdout.strip().splitlines()[-1])
    return int(status), list(modules)


def test_RUN1_the_admin_functions_first_answer_loads_no_planner_crm_client_or_transforms():
    status, modules = loaded("admin", "/health")
    assert status == 200
    assert "crmsync.service" in modules  # the probe did reach crmsync
    heavy = [m for m in modules if m.startswith(HEAVY)]
    assert heavy == []
