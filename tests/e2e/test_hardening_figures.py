"""`make soak` and `make kill-matrix`, as the README prints them, in short versions:
users syncing under injected faults end with both sides agreeing, nothing lost or
duplicated (SYN-4, SYN-5, RUN-6); a worker killed at sampled write points recovers
with its run marked interrupted and every record once on each side (RUN-2, RUN-6)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def make(target: str, arguments: str) -> subprocess.CompletedProcess[str]:
    variable = {"soak": "SOAK_ARGS", "kill-matrix": "KILL_ARGS"}[target]
    return subprocess.run(
        ["make", "--no-print-directory", target, f"{variable}={arguments}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_SYN5_a_soak_under_injected_faults_ends_with_both_sides_agreeing() -> None:
    done = make("soak", "--minutes 0.3 --users 2 --rate 0.25 --seed 5")

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "lost: 0, duplicated: 0, other differences: 0" in out
    assert "the two sides agree" in out
    faults = re.search(r"Google faults: (\d+) of (\d+)", out)
    assert faults and int(faults[1]) > 0  # faults were really served
    crm_faults = re.search(r"CRM faults: (\d+) of (\d+)", out)
    assert crm_faults and int(crm_faults[1]) > 0
    made = re.search(r"records made: (\d+)", out)
    assert made and int(made[1]) > 0


def test_RUN6_a_worker_killed_at_sampled_writes_recovers_with_nothing_lost_or_twice() -> None:
    done = make("kill-matrix", "--records 12 --points 2 --directions to-google,to-crm")

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if "killed after" in line]
    assert len(rows) == 4
    assert all("interrupted: yes" in row and "duplicates 0, lost 0" in row for row in rows)
    assert all("Google 12, CRM 12" in row for row in rows)
    assert "kill matrix: 4 kills, duplicates 0, lost 0" in done.stdout
