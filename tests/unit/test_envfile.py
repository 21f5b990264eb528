"""The configuration file an operator's command reads (`--config`, CRMSYNC_CONFIG) gives
back exactly the variables written to it, and reads the hand-written forms a person
uses: comments, blank lines, `export`, quotes (first hour: one place for the
deployment's configuration)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync import envfile

KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
ONE_LINE = st.text().filter(lambda value: len(f".{value}.".splitlines()) == 1)


@given(st.dictionaries(KEYS, ONE_LINE, max_size=8))
def test_first_hour_what_is_written_is_read_back_whatever_the_values(
    values: dict[str, str],
) -> None:
    lines = envfile.render(values)

    assert envfile.parse(lines, "stack.env") == values


def test_first_hour_a_hand_written_file_reads_as_a_person_means_it() -> None:
    text = """
# the deployment's variables
export GOOGLE_CLOUD_PROJECT=acme-prod
CRMSYNC_PUBLIC_URL = https://europe-west1-acme.cloudfunctions.net
CRMSYNC_SECRET='a secret # with a hash'
CRMSYNC_EVENTS_TOPIC="projects/acme/topics/sync-events"
CRMSYNC_HISTORY_DAYS=
"""
    assert envfile.parse(text, "stack.env") == {
        "GOOGLE_CLOUD_PROJECT": "acme-prod",
        "CRMSYNC_PUBLIC_URL": "https://europe-west1-acme.cloudfunctions.net",
        "CRMSYNC_SECRET": "a secret # with a hash",
        "CRMSYNC_EVENTS_TOPIC": "projects/acme/topics/sync-events",
        "CRMSYNC_HISTORY_DAYS": "",
    }
    with pytest.raises(envfile.EnvFileError, match=r"line 2 of the configuration file x\.env"):
        envfile.parse("A=1\n2B=2\n", "x.env")


def test_first_hour_the_file_is_written_private_even_over_an_open_one(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    path.write_text("OLD=1\n")
    path.chmod(0o644)
    assert envfile.exposed(path)

    envfile.write(path, {"CRMSYNC_SECRET": "s"}, header="local stack\nkeep it private")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and not envfile.exposed(path)
    assert path.read_text().startswith("# local stack\n# keep it private\n")
    assert envfile.read(path) == {"CRMSYNC_SECRET": "s"}
    with pytest.raises(ValueError, match="one KEY=value line"):
        envfile.render({"CRMSYNC_SECRET": "two\nlines"})
