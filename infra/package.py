"""`make package`: the source archive every crmsync Cloud Function is built from.

Cloud Functions unpacks the archive, installs its requirements.txt and imports main.py
with the archive's root on sys.path, so the archive holds, at its root:

    main.py            functions/main.py, the entry points
    crmsync/           the package (from shared/crmsync), with its data files, less
                       what no function runs (SyncWorld, the conformance kit)
    requirements.txt   the runtime dependencies

The archive is reproducible: entries in sorted order, one fixed timestamp and mode,
no caches, so the same sources always give the same bytes (and the same MD5, which
names the object Terraform uploads: unchanged code is never rebuilt).

    python infra/package.py build/crmsync-functions.zip
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / "build" / "crmsync-functions.zip"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry
SKIPPED_DIRS = {"__pycache__"}
# Parts of the package no function runs: SyncWorld and the CRM vendors' conformance kit,
# which import the sandboxes and test tools (installed with the package, not deployed).
NOT_DEPLOYED = ("crmsync/testing/", "crmsync/conformance/")
SKIPPED_SUFFIXES = (".pyc", ".pyo")


def entries(root: Path = ROOT) -> dict[str, Path]:
    """Archive name → source file, for everything the functions need."""
    found = {
        "main.py": root / "functions" / "main.py",
        "requirements.txt": root / "requirements.txt",
    }
    package = root / "shared" / "crmsync"
    for path in _files(package):
        name = path.relative_to(package.parent).as_posix()
        if not name.startswith(NOT_DEPLOYED):
            found[name] = path
    return found


def _files(directory: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and not name.endswith(SKIPPED_SUFFIXES):
                yield Path(current) / name


def build(out: Path = ARCHIVE, root: Path = ROOT) -> Path:
    """Write the archive to `out` (replacing it whole, never half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".zip", delete=False) as tmp:
        staged = Path(tmp.name)
    try:
        with zipfile.ZipFile(staged, "w") as archive:
            for name, path in sorted(entries(root).items()):
                info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3  # Unix, so that the mode below is read
                info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
                archive.writestr(info, path.read_bytes(), compresslevel=9)
        staged.replace(out)
    finally:
        staged.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ARCHIVE, help="the zip to write")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"{os.path.relpath(out)}: {len(entries())} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
