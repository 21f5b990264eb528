"""`make package` builds the archive every Cloud Function is built from: reproducible,
with main.py, the crmsync package and requirements.txt at its root, importable as Cloud
Functions imports it, and uploaded by Terraform under its own hash."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from infra import package
from tests.infra.terraform_config import INFRA, Terraform
from tests.infra.test_infra_consistency import entry_points


def test_two_builds_of_the_source_archive_are_byte_identical(tmp_path: Path) -> None:
    first = package.build(tmp_path / "first" / "functions.zip")
    second = package.build(tmp_path / "second" / "functions.zip")
    assert first.read_bytes() == second.read_bytes()


def test_the_archive_holds_main_crmsync_and_requirements_at_its_root(tmp_path: Path) -> None:
    with zipfile.ZipFile(package.build(tmp_path / "functions.zip")) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted(names)
    assert {"main.py", "requirements.txt", "crmsync/__init__.py"} <= set(names)
    assert "crmsync/web/templates/base.html" in names, "package data goes along"
    assert not [n for n in names if n.startswith(("crmsync/testing/", "crmsync/conformance/"))]
    assert all(name.startswith("crmsync/") for name in set(names) - {"main.py", "requirements.txt"})
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert {info.date_time for info in infos} == {package.FIXED_TIME}


def test_crmsync_and_every_entry_point_import_from_the_unpacked_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(package.build(tmp_path / "functions.zip")) as archive:
        archive.extractall(tmp_path / "source")
    # As Cloud Functions runs it: the archive's root first on sys.path, main imported.
    probe = (
        "import sys, main, crmsync.entrypoints\n"
        "assert crmsync.__file__.startswith(sys.argv[1]), crmsync.__file__\n"
        "print(' '.join(sorted(n for n in sys.argv[2:] if callable(getattr(main, n, None)))))\n"
    )
    source = str(tmp_path / "source")
    result = subprocess.run(
        [sys.executable, "-c", probe, source, *sorted(entry_points())],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == sorted(entry_points())


def test_terraform_uploads_the_archive_make_package_builds_under_its_hash(
    terraform: Terraform,
) -> None:
    default = terraform.variables["source_archive"]["default"]
    assert (INFRA / default).resolve() == package.ARCHIVE
    upload = terraform.resource("google_storage_bucket_object", "source")
    assert "${filemd5(var.source_archive)}" in upload["name"]
    assert upload["source"] == "${var.source_archive}"
