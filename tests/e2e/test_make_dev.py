"""`make dev` (sandbox/local/dev.py) brings the whole product up on the emulators,
connects the demo user u1 through Google and u2 through Microsoft (OAuth, the real
flows) and runs a first sync of each; two at once on one machine do not get in each
other's way (no fixed ports, no shared state). Every command its banner prints works as
printed: among them the one that makes a change in u2's Outlook, which a push-driven
cycle then brings to the CRM, and the operator's command that prints u3's onboarding
link with the configuration file make dev wrote for its stack (private, gone when the
stack stops), a link the stack accepts. u1 records mail from the start: a message of
u1's seeded inbox tagged in the console lands in the CRM's history."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "sandbox.local.dev"]
CONNECTIONS = ("google-u1", "microsoft-u2")


def test_make_dev_connects_u1_and_u2_syncs_both_runs_twice_at_once_and_its_commands_work() -> None:
    """AUTH-2 (u1 through Google, u2 through Microsoft), RUN-3 (u2's Outlook change
    reaches the CRM by a push cycle, no fan-out awaited), AUTH-1 (first hour: the
    operator's command the banner prints, with the stack's configuration file, makes u3
    a link the stack opens), EML-1/EML-2 (u1's Ada message tagged in the console is
    recorded through Gmail's watch, a mail cycle in the log); `--check` exits 0 once
    both first cycles synced, while a second `make dev` runs beside it."""
    checked = subprocess.Popen(
        [*COMMAND, "--check"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    running = Running(subprocess.Popen([*COMMAND, "--tick", "3600"], cwd=ROOT, **PIPES))
    try:
        out, _ = checked.communicate(timeout=240)
        text = out.decode()
        assert checked.returncode == 0, text
        assert "check passed: both first cycles synced" in text
        first_cycles(text)

        running.wait_for(lambda lines: len(cycle_lines(lines, " connect ")) >= 2, "first cycles")
        banner = running.text()
        assert _functions_url(text) != _functions_url(banner)  # two at once, apart
        first_cycles(banner)
        answers = {command: run(command) for command in commands(banner)}
        assert_console(banner)
        assert_gmail_addon(banner)
        assert_outlook_addin(banner)
        tag_adas_message(banner)
        assert_readme_tour_commands(_shown(banner, "reference CRM"))
        running.wait_for(
            lambda lines: all(finished_events(lines, c) for c in CONNECTIONS), "events"
        )
        assert_events_follow_their_cycles(running.lines)

        [admin] = [a for c, a in answers.items() if "/admin/status" in c]
        assert sorted(c["id"] for c in admin["connections"]) == ["google-u1", "microsoft-u2"]
        [outlook] = [
            a for c, a in answers.items() if c.endswith("/me/contacts") and " -d " not in c
        ]
        assert [c["surname"] for c in outlook["value"]] == ["Turing"]  # u2's synced contact
        [added] = [a for c, a in answers.items() if " -d " in c]
        assert added["surname"] == "Johnson"
        [crm_u1] = [a for c, a in answers.items() if "X-Crm-User: u1" in c]
        assert {"Lovelace", "Hopper"} <= {c["fields"].get("last_name") for c in crm_u1["items"]}
        [link] = [a for c, a in answers.items() if " onboarding-link " in c]
        page = requests.get(link, timeout=30)  # first hour: u3's link, as the operator made it
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "Connect your account to the CRM" in page.text
        config = ROOT / _shown(banner, "operator config")
        assert os.stat(config).st_mode & 0o077 == 0, "the file with the stack's secrets is private"
        [crm_u2] = [c for c in answers if "X-Crm-User: u2" in c]

        def in_crm() -> bool:
            return "Johnson" in [c["fields"].get("last_name") for c in run(crm_u2)["items"]]

        eventually(in_crm, "the contact added in u2's Outlook in u2's CRM contacts")
        # the push's cycle; a notification that lands while a cycle of u2's is already
        # waiting (a CRM event's) is folded into it (the debounce): no fan-out either way
        running.wait_for(
            lambda lines: any(
                "contact: 1 create" in line
                for trigger in (" push ", " crm ", " mail ")
                for line in cycle_lines(lines, trigger, "u2")
            ),
            "u2's push cycle in the log",
        )
        # u2's own CRM edit is announced for u2 (first hour: not always for u1)
        crm = _shown(banner, "reference CRM")
        as_u2 = {"Authorization": "Bearer demo-token", "X-Crm-User": "u2"}
        [alan] = [c for c in run(crm_u2)["items"] if c["fields"].get("last_name") == "Turing"]
        changed = requests.patch(
            f"{crm}/records/contact/{alan['id']}",
            json={"fields": {"title": "Mathematician"}},
            headers={**as_u2, "If-Match": alan["version"]},
            timeout=30,
        )
        assert changed.status_code == 200, changed.text
        before = len(running.lines)
        running.wait_for(
            lambda lines: cycle_lines(lines[before:], " crm ", "u2"), "u2's CRM event cycle"
        )
        [outlook_list] = [c for c in answers if c.endswith("/me/contacts") and " -d " not in c]

        def in_outlook() -> bool:
            titles = {c["surname"]: c.get("jobTitle") for c in run(outlook_list)["value"]}
            return titles.get("Turing") == "Mathematician"

        eventually(in_outlook, "u2's CRM edit of Alan in u2's Outlook")
        assert_ada_recorded(banner)
        running.wait_for(
            lambda lines: any("mail: 1 record" in line for line in cycle_lines(lines, " mail ")),
            "u1's mail cycle in the log",
        )
    finally:
        if checked.poll() is None:
            checked.kill()
        running.stop()
    assert running.process.returncode == 0, running.text()
    assert running.lines[-1] == "stopped: every process make dev started has ended"
    assert not config.exists(), "the stack's configuration file outlived it"


PIPES: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}


class Running:
    """A `make dev` left running; its output lines as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new.put(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, holds: Any, what: str, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while not holds(self.lines):
            if time.monotonic() > deadline or self.process.poll() is not None:
                time.sleep(0.5)  # what it printed last, before it ended, is part of the story
                while not self._new.empty():
                    self.lines.append(self._new.get())
                if holds(self.lines):
                    return
                ended = self.process.poll()
                raise AssertionError(f"make dev (exit status {ended}): no {what}:\n{self.text()}")
            with contextlib.suppress(queue.Empty):
                self.lines.append(self._new.get(timeout=0.5))

    def stop(self) -> None:
        """Ctrl-C's cousin: SIGTERM, which make dev answers by stopping what it started."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        while not self._new.empty():
            self.lines.append(self._new.get())


def first_cycles(text: str) -> None:
    lines = text.splitlines()
    [u1] = [line for line in cycle_lines(lines, " connect ", "u1")]
    assert " ok " in u1 and "contact: 2 create" in u1, text  # Ada and Grace of u1's group
    [u2] = [line for line in cycle_lines(lines, " connect ", "u2")]
    assert " ok " in u2 and "contact: 1 create" in u2, text  # Alan, of u2's group
    assert "cycle google-u1 " in u1 and "cycle microsoft-u2 " in u2  # named by connection


def cycle_lines(lines: list[str], trigger: str, user: str = "") -> list[str]:
    return [
        line
        for line in lines
        if " cycle " in line and trigger in line and (not user or f"-{user} " in line)
    ]


def commands(banner: str) -> list[str]:
    """Every command the banner prints: each curl, from `curl` to the line's end, and
    the operator's onboarding-link command, the whole line."""
    lines = banner.splitlines()
    found = [line[line.index("curl ") :] for line in lines if "curl " in line]
    found += [line.strip() for line in lines if " onboarding-link --config " in line]
    assert len(found) == 6, banner  # admin, the CRM of u1 and u2, u2's Outlook: look, add; u3
    return found


def run(command: str) -> Any:
    """Run one command as printed (no shell: shell quoting, as a user's shell reads it)
    in the checkout make dev runs in; its answer's JSON, or the line it printed (a link)."""
    done = subprocess.run(
        shlex.split(command), capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, (command, done.stderr)
    if command.startswith("curl "):
        return json.loads(done.stdout)
    [line] = done.stdout.splitlines()
    return line


def eventually(holds: Any, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.5)


def assert_console(banner: str) -> None:
    """First hour: the console is the first address printed, and it is a page that
    shows the CRM beside u1's Google and u2's Outlook."""
    import requests

    addresses = [line.split() for line in banner.splitlines() if line.startswith("  ")]
    assert addresses[0][0] == "console", banner
    page = requests.get(addresses[0][1], timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "crmsync sandbox console" in page.text
    state = requests.get(addresses[0][1] + "api/state", timeout=30).json()
    shown = {a["connection"]: a["records"]["contact"] for a in state["accounts"]}
    assert "Turing" in [c["fields"]["last_name"] for c in shown["microsoft-u2"]]


def assert_gmail_addon(banner: str) -> None:
    """CTX-1, first hour: the banner's Gmail add-on address lists u1's inbox beside the
    add-on's homepage card; a message of Ada's opens the card of the CRM behind her."""
    import re

    home = requests.get(_shown(banner, "Gmail add-on"), timeout=30)
    assert home.status_code == 200 and home.headers["Content-Type"].startswith("text/html")
    [ada] = re.findall(rf'<a href="(/gmail-addon/[^"]+)">{re.escape(ADA_MAIL)}</a>', home.text)
    console = _shown(banner, "console").rstrip("/")
    card = requests.get(console + ada, timeout=30)
    assert card.status_code == 200 and "Acme GmbH" in card.text, card.text


ADA_MAIL = "Engine order: next steps"  # one of the messages make dev seeds


def assert_outlook_addin(banner: str) -> None:
    """CTX-1, first hour: the banner's Outlook add-in address lists u2's inbox; Grace's
    message opens crmsync's task pane (the addon function's page, with the console's
    stand-in for Office.js), and the pane's first request, with the SSO token the link
    hands it, finds Grace in the CRM."""
    import base64
    import html
    import re

    listing = requests.get(_shown(banner, "Outlook add-in"), timeout=30)
    assert listing.status_code == 200 and listing.headers["Content-Type"].startswith("text/html")
    [link] = re.findall(r'<a href="([^"]+)">Onboarding plan</a>', listing.text)
    pane_url, _, fragment = html.unescape(link).partition("#office=")
    assert pane_url.endswith("/addon/microsoft")
    page = requests.get(pane_url, timeout=30)
    console = _shown(banner, "console").rstrip("/")
    assert f'<script src="{console}/office.js"></script>' in page.text
    assert "window.Office" in requests.get(console + "/office.js", timeout=30).text
    config = json.loads(base64.urlsafe_b64decode(fragment + "=" * (-len(fragment) % 4)))
    sender = config["item"]["from"]
    shown = requests.post(
        pane_url + "?do=message",
        json={"participants": [[sender["displayName"], sender["emailAddress"]]]},
        headers={"Authorization": f"Bearer {config['token']}"},
        timeout=30,
    ).json()
    [grace] = shown["people"]
    assert grace["card"]["name"] == "Grace Hopper", shown
    assert shown["files_mail"] is True  # u2 records mail: the pane files to the CRM
    # the product's log the banner names holds those requests, as JSON lines
    logged = [json.loads(line) for line in (ROOT / _shown(banner, "product log")).open()]
    assert any(
        line.get("message") == "request" and line.get("handler") == "addon" for line in logged
    ), logged[-5:]


def _console_state(banner: str) -> dict[str, Any]:
    console = _shown(banner, "console").rstrip("/")
    answer: dict[str, Any] = requests.get(console + "/api/state", timeout=30).json()
    return answer


def tag_adas_message(banner: str) -> None:
    """First hour, as the banner's mail step says: Ada's message in u1's Gmail panel,
    tagged Send To CRM once u1's first mail pass made the labels."""
    console = _shown(banner, "console").rstrip("/")

    def tagged() -> bool:
        [u1] = [a for a in _console_state(banner)["accounts"] if a["connection"] == "google-u1"]
        [ada] = [m for m in u1["mail"] or () if m["subject"] == ADA_MAIL]
        url = f"{console}/api/accounts/google-u1/mail/{ada['id']}/send-to-crm"
        return requests.post(url, timeout=30).status_code == 200

    eventually(tagged, "Ada's message tagged in u1's Gmail panel")
    assert "tag Ada Lovelace's message Send To CRM" in banner


def assert_ada_recorded(banner: str) -> None:
    def recorded() -> bool:
        state = _console_state(banner)
        [ada] = [
            c for c in state["crm"]["records"]["contact"] if c["fields"]["last_name"] == "Lovelace"
        ]
        [u1] = [a for a in state["accounts"] if a["connection"] == "google-u1"]
        [message] = [m for m in u1["mail"] if m["subject"] == ADA_MAIL]
        return ada["history"]["latest"] == ADA_MAIL and "CRM/Recorded" in message["labels"]

    eventually(recorded, "Ada's message in her CRM history, labelled CRM/Recorded")


def assert_readme_tour_commands(crm: str) -> None:
    """First hour: the README tour's terminal commands run as written against the
    running stack (bash, with CRM set as the tour says): u1's contacts listed, then one
    changed with the version it read, its fields under "fields"."""
    readme = (ROOT / "README.md").read_text()
    tour = readme[readme.index("## A five-minute tour") :]
    [block] = re.findall(r"```sh\n(.*?)```", tour[: tour.index("\n## ")], re.S)
    script = "set -euo pipefail\n" + textwrap.dedent(block)
    done = subprocess.run(
        ["bash", "-c", script], env={**os.environ, "CRM": crm}, capture_output=True, text=True
    )
    assert done.returncode == 0, (script, done.stderr)
    listed, changed = _documents(done.stdout)
    assert "Lovelace" in [c["fields"].get("last_name") for c in listed["items"]]
    assert (changed["id"], changed["fields"]["title"]) == ("c-1", "CTO")


def _documents(text: str) -> list[Any]:
    """The JSON documents curl printed one after another (no newline between them)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def assert_events_follow_their_cycles(lines: list[str]) -> None:
    """First hour: a cycle's outbound event is printed after the cycle's own line."""
    for connection in CONNECTIONS:
        [cycle] = [i for i, line in enumerate(lines) if f" cycle {connection} " in line][:1]
        assert finished_events(lines, connection)[0] > cycle, "\n".join(lines)


def finished_events(lines: list[str], connection: str) -> list[int]:
    """Where the log printed the connection's `cycle.finished` events."""
    return [
        i for i, line in enumerate(lines) if "cycle.finished" in line and f" {connection}:" in line
    ]


def _shown(text: str, label: str) -> str:
    """The first word after `label` on the banner line that begins with it."""
    [line] = [line for line in text.splitlines() if line.strip().startswith(label + " ")]
    return line.split(label, 1)[1].split()[0]


def _functions_url(text: str) -> str:
    [line] = [line for line in text.splitlines() if line.strip().startswith("functions ")]
    return line.split()[1]
