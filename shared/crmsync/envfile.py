"""A deployment's configuration as a file of `KEY=value` lines, whose keys are the
environment variables the functions read (`crmsync.entrypoints`): what the operator's
commands take with `--config` instead of exports, and what `make dev` writes for its
stack.

One `KEY=value` a line; blank lines and lines starting with `#` are skipped; `export `
before a key is allowed (so a shell can source the file); a value may be in single or
double quotes, and is otherwise taken as it stands (no escapes, no expansion). The
file holds secrets, so it is written readable by its owner only.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLAIN = re.compile(r"[A-Za-z0-9_./:@%+=,-]*")  # needs no quotes, in this file or a shell


class EnvFileError(Exception):
    """The file cannot be read as a configuration; the message says why, in one line."""


def read(path: Path) -> dict[str, str]:
    """The file's keys and values, in file order."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EnvFileError(f"cannot read the configuration file {path} ({reason})") from exc
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"the configuration file {path} is not UTF-8 text") from exc
    return parse(text, str(path))


def parse(text: str, source: str) -> dict[str, str]:
    """The keys and values of the lines `text`, read from `source` (named in errors)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line.removeprefix("export ").lstrip()
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not KEY.fullmatch(key):
            raise EnvFileError(f"line {number} of the configuration file {source} is not KEY=value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def render(values: Mapping[str, str]) -> str:
    """The lines `read` gives `values` back from."""
    lines = []
    for key, value in values.items():
        if not KEY.fullmatch(key) or len(f".{value}.".splitlines()) > 1:
            raise ValueError(f"cannot write {key!r} as one KEY=value line")
        if not PLAIN.fullmatch(value):
            value = f"'{value}'" if "'" not in value else f'"{value}"'
        lines.append(f"{key}={value}\n")
    return "".join(lines)


def write(path: Path, values: Mapping[str, str], header: str = "") -> None:
    """`values` as a new file readable and writable by its owner only (mode 0600),
    replacing any file of that name; `header` becomes comment lines at its top."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    path.unlink(missing_ok=True)  # a file left behind keeps its mode: make a new one
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(comments + render(values))


def exposed(path: Path) -> bool:
    """Whether users other than the file's owner may read it."""
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
