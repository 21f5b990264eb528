"""What recording tagged mail costs (EML-1..4): messages recorded per second, and Gmail
quota units per recorded message, through the production path of a mail pass: the Gmail
adapter (google-api-python-client) against the Google sandbox's Gmail over a socket, the
reader and the filing rules, and the reference CRM behind the production connector over
HTTP.

It delivers N messages to one mailbox (half from a CRM contact, a quarter from a lead,
a quarter from strangers; a third carry a small attachment), tags them all "Send To CRM"
and runs passes until none is left, then prints:

- messages per second, end to end;
- Gmail requests and quota units per message, by method, beside Gmail's budget of
  15,000 units per user per minute (units as Google's quota table gives them:
  messages.list, get and modify 5 each, labels.list 1, labels.create 5);
- how many passes it took (a pass takes a batch of tagged messages);
- CRM requests per message.

    python bench/mail.py                 # 300 messages
    python bench/mail.py --messages 2000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the sandbox package

import requests  # noqa: E402
from google.oauth2.credentials import Credentials  # noqa: E402

from crmsync.crm.rest import RestCrmConnector  # noqa: E402
from crmsync.mail import recording  # noqa: E402
from crmsync.ports import SEND  # noqa: E402
from crmsync.providers.google.client import GoogleClient  # noqa: E402
from crmsync.providers.google.gmail import GmailAccount  # noqa: E402
from crmsync.providers.google.oauth import SERVICES  # noqa: E402
from sandbox.crm.app import ReferenceCrm  # noqa: E402
from sandbox.crm.database import CrmDatabase  # noqa: E402
from sandbox.crm.server import serve as serve_crm  # noqa: E402
from sandbox.google.core import GoogleSandbox  # noqa: E402
from sandbox.google.gmail import change_labels, deliver  # noqa: E402
from sandbox.google.server import serve as serve_google  # noqa: E402

DANA = "dana.rep@demo.example"
UNITS = {  # Gmail's quota units per request, by what crmsync names it
    "gmail labels.list": 1,
    "gmail labels.create": 5,
    "gmail messages.list": 5,
    "gmail messages.get": 5,
    "gmail messages.modify": 5,
}
BUDGET = 15_000  # Gmail's quota units per user per minute
START = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


class CountingClient(GoogleClient):
    """The production client, counting its requests by what they are."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.by_what: Counter[str] = Counter()

    def execute(self, request: Any, what: str) -> Any:
        self.by_what[what] += 1
        return super().execute(request, what)


class CountingSession(requests.Session):
    """The connector's HTTP session, counting its requests."""

    count = 0

    def request(self, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.count += 1
        return super().request(*args, **kw)


def message(n: int, sender: str) -> bytes:
    attachment = ""
    if n % 3 == 0:
        attachment = (
            "--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
            f"filename=quote-{n}.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK\r\n"
        )
    return (
        f"From: {sender}\r\nTo: Dana Rep <{DANA}>\r\nSubject: Order {n}\r\n"
        f"Message-ID: <order-{n}@bench.example>\r\nDate: Tue, 3 Nov 2026 08:00:00 +0000\r\n"
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Please confirm order {n}.\r\n\r\nOn Mon, 2 Nov 2026, Dana wrote:\r\n> Offer {n}\r\n"
        f"{attachment}--b--\r\n"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()

    crm = ReferenceCrm(CrmDatabase(":memory:", clock=lambda: START))
    crm.add_tenant("t1", "token-t1")
    crm.add_user("t1", "u1", name="Dana Rep", email=DANA)
    contact = {"first_name": "Ann", "last_name": "Buyer", "emails": ["ann@example.com"]}
    crm.create("t1", "contact", contact, "u1")
    crm.create(
        "t1", "lead", {"first_name": "Lee", "last_name": "Lead", "emails": ["lee@x.com"]}, "u1"
    )
    google = GoogleSandbox(lambda: START)
    google.add_account(DANA)
    crm_url, stop_crm = serve_crm(crm)
    google_url, stop_google = serve_google(google, modules=["gmail"])
    try:
        token = google.issue_token(DANA, frozenset(SERVICES["mail"]), seconds=86400)
        client = CountingClient(Credentials(token), {"gmail": google_url})
        account = GmailAccount(client)
        session = CountingSession()
        connector = RestCrmConnector(crm_url, "token-t1", "u1", None, session=session)
        labels = account.labels({})
        senders = ["Ann <ann@example.com>", "ann@example.com", "lee@x.com", "who@nowhere.example"]
        for n in range(args.messages):
            sent = deliver(
                google, DANA, message(n, senders[n % 4]), internal_date=START + timedelta(seconds=n)
            )
            change_labels(google, DANA, sent, add=[labels[SEND]])
        client.by_what.clear()
        session.count = 0
        passes, outcomes = 0, Counter[str]()
        started = time.perf_counter()
        more = True
        while more:
            done = recording.record_tagged(account, connector, [DANA], "google-u1", labels)
            passes += 1
            outcomes.update(f.outcome for f in done.filed)
            more = done.more
        took = time.perf_counter() - started
        crm_calls = session.count
    finally:
        stop_google()
        stop_crm()

    n = sum(outcomes.values())
    units = sum(UNITS.get(what, 0) * count for what, count in client.by_what.items())
    print(
        f"mail recording, {args.messages} tagged messages, {passes} passes of up to "
        f"{recording.BATCH}"
    )
    print(f"  outcomes: {dict(outcomes)}")
    print(f"  messages per second:        {n / took:8.1f}   ({took:.2f} s in all)")
    print(f"  Gmail requests per message: {sum(client.by_what.values()) / n:8.2f}")
    for what, count in sorted(client.by_what.items()):
        print(f"    {what:24s} {count:6d}  ({UNITS.get(what, 0)} units each)")
    print(
        f"  Gmail units per message:    {units / n:8.2f}   "
        f"(budget {BUDGET} a minute: {BUDGET / (units / n):,.0f} messages a minute)"
    )
    print(f"  CRM requests per message:   {crm_calls / n:8.2f}")


if __name__ == "__main__":
    main()
