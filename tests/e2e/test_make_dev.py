"""`make dev` (sandbox/local/dev.py) brings the whole product up on the emulators,
connects the demo user through OAuth and runs a first sync; two at once on one machine
do not get in each other's way (no fixed ports, no shared state)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_make_dev_starts_everything_connects_u1_and_syncs_and_runs_twice_at_once() -> None:
    command = [sys.executable, "-m", "sandbox.local.dev", "--check"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = []
    for run in runs:
        out, _ = run.communicate(timeout=240)
        outputs.append((run.returncode, out.decode()))

    for code, text in outputs:
        assert code == 0, text
        assert "crmsync is running locally." in text
        assert "admin status" in text and "Authorization: Bearer demo." in text
        cycle = [line for line in text.splitlines() if " cycle connect " in line]
        assert cycle and " ok " in cycle[0], text
        assert "contact: 2 create" in cycle[0], text  # Ada and Grace of u1's sync group
    first, second = (text for _, text in outputs)
    assert _functions_url(first) != _functions_url(second)


def _functions_url(text: str) -> str:
    [line] = [line for line in text.splitlines() if line.strip().startswith("functions ")]
    return line.split()[1]
