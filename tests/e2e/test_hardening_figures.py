"""`make soak`, `make kill-matrix` and `make load` as README.md prints them (the short
examples it gives beside the defaults): users syncing under injected faults end with
both sides agreeing, nothing lost or duplicated (SYN-4, SYN-5, RUN-6); a worker killed
at sampled write points recovers with its run marked interrupted and every record once
on each side (RUN-2, RUN-6); a burst of changes on both sides is folded into fewer
cycles and every change arrives once (RUN-3)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def readme_command(target: str) -> list[str]:
    """The README's example of `make <target>` with arguments, as a command line."""
    found = re.findall(
        rf"^\s*(make {target} \w+_ARGS=\"[^\"]*\")", (ROOT / "README.md").read_text(), re.M
    )
    assert found, f"README.md shows no `make {target} …_ARGS=…` example"
    return shlex.split(found[0])


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command[0], "--no-print-directory", *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_SYN5_the_readmes_soak_under_injected_faults_ends_with_both_sides_agreeing() -> None:
    done = run(readme_command("soak"))

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


def test_RUN6_the_readmes_kill_matrix_recovers_with_nothing_lost_or_twice() -> None:
    command = readme_command("kill-matrix")
    records = int(re.search(r"--records (\d+)", " ".join(command))[1])  # type: ignore[index]

    done = run(command)

    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if "killed after" in line]
    assert len(rows) == 2
    assert all("interrupted: yes" in row and "duplicates 0, lost 0" in row for row in rows)
    assert all(f"Google {records}, CRM {records}" in row for row in rows)
    assert "kill matrix: 2 kills, duplicates 0, lost 0;" in done.stdout


def test_RUN3_the_readmes_load_test_folds_a_burst_into_fewer_cycles_and_loses_nothing() -> None:
    done = run(readme_command("load"))

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "lost: 0, duplicated: 0, other: 0" in out
    changes = re.search(r"burst: (\d+) changes", out)
    tasks = re.search(r"tasks enqueued and run: (\d+)", out)
    assert changes and tasks and 0 < int(tasks[1]) < int(changes[1])  # the debounce folds
    assert re.search(r"last edit to the other side, \d+ meetings: p50 [\d.]+ s", out)
