"""The operator's configuration file of a running local stack: the variables with which
`crmsync tenant|onboarding-link|admin-consent-link --config FILE` acts on the stack as
its functions do (the same store, task queue, event topic, link secret and token vault
key), in the format of `crmsync.envfile`.

`make dev` writes build/dev/stack-<functions port>.env (mode 0600, so two stacks at once
write two files) and points build/dev/current.env at the latest; both go when the stack
stops. A stack killed outright leaves its file behind, and the commands then say that
nothing answers at its emulator.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crmsync import envfile
from sandbox.local.cloud_tasks import LOCAL_QUEUE

DEV_DIR = Path(__file__).resolve().parents[2] / "build" / "dev"
CURRENT = "current.env"


def stack_environment(
    local: Any, firestore: Any, *, tasks: Any = None, pubsub: Any = None, events: str = ""
) -> dict[str, str]:
    """What `crmsync.entrypoints.from_environment` needs to build the Services of the
    LocalStack `local` as they are: its store on the `firestore` emulator, its queue
    LOCAL_QUEUE (on the `tasks` emulator, when given), its outbound events on the topic
    `events` of the `pubsub` emulator (when given), and `local.environment()`."""
    env = {
        "CRMSYNC_STORE": "firestore",
        "GOOGLE_CLOUD_PROJECT": firestore.project,
        "FIRESTORE_EMULATOR_HOST": firestore.host,
        "CRMSYNC_TASKS_QUEUE": LOCAL_QUEUE,
        "CRMSYNC_WORKER_URL": local.functions_url + "/sync_worker",
    }
    if tasks is not None:
        env["CLOUD_TASKS_EMULATOR_HOST"] = tasks.host
    if pubsub is not None and events:
        env.update(PUBSUB_EMULATOR_HOST=pubsub.host, CRMSYNC_EVENTS_TOPIC=events)
    return {**env, **local.environment()}


@contextmanager
def written(env: Mapping[str, str], directory: Path = DEV_DIR) -> Iterator[Path]:
    """`env` as the stack's configuration file, current.env pointing at it, while the
    block runs; the file's path."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = urlsplit(env["CRMSYNC_PUBLIC_URL"]).port
    path = directory / f"stack-{port}.env"
    header = (
        f"The local crmsync stack of process {os.getpid()}, its functions at "
        f"{env['CRMSYNC_PUBLIC_URL']}.\nIt holds the stack's secrets: keep it private "
        "(mode 0600). It is removed when the stack stops.\n"
        "Use: crmsync onboarding-link --config THIS_FILE --tenant demo --user u3"
    )
    envfile.write(path, env, header)
    current = directory / CURRENT
    _point(current, path.name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if current.is_symlink() and os.readlink(current) == path.name:
            current.unlink(missing_ok=True)
            others = sorted(directory.glob("stack-*.env"), key=lambda p: p.stat().st_mtime)
            if others:  # another stack still runs: current.env is now the latest of those
                _point(current, others[-1].name)


def _point(link: Path, target: str) -> None:
    """Make `link` a symbolic link to `target`, replacing what was there at once."""
    made = link.with_name(f".{link.name}.{os.getpid()}")
    made.unlink(missing_ok=True)
    os.symlink(target, made)
    os.replace(made, link)


def onboarding_command(config: Path, user: str) -> str:
    """The shell command that prints the onboarding link of the demo tenant's `user`
    with the stack's configuration file, by the crmsync this Python runs."""
    script = Path(sys.executable).with_name("crmsync")
    crmsync = shown(script) if script.exists() else f"{shown(Path(sys.executable))} -m crmsync.cli"
    return f"{crmsync} onboarding-link --config {shown(config)} --tenant demo --user {user}"


def shown(path: Path) -> str:
    """`path` as a command line takes it: relative to the working directory when it is
    below it, quoted for a shell."""
    absolute = path.absolute()
    try:
        return shlex.quote(str(absolute.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(absolute))
