"""`make dev`: crmsync running whole on this machine, on Google's own emulators.

Starts the Firestore and Pub/Sub emulators and the Cloud Tasks emulator; serves every
Cloud Function with functions-framework, the reference CRM (demo tenant), the Google
sandbox and the Microsoft sandbox (https, with a throwaway CA); registers the demo
tenant; seeds u1's Gmail inbox with a few messages and connects the demo user u1
through Google's OAuth flow (both services: sync, and recording tagged mail) and u2
through Microsoft's (msal, the sandbox's consent page); then keeps running like
production does:

* Cloud Scheduler: the fan-out function is called every minute;
* Cloud Tasks: cycles reach the worker function through the Cloud Tasks emulator;
* CRM change events: a change in the reference CRM is published, signed, to the
  `crm-events` topic, whose push subscription delivers it to the crm_events function;
* Google push: the sandbox posts Calendar notifications to the google_webhook function;
  Gmail's watches publish to a `gmail-notifications-…` topic, pushed to the gmail_push
  function (a message tagged "CRM/Send To CRM" is recorded by a mail run);
* Graph change notifications: u2's subscriptions (made at connect) are delivered to the
  graph_webhook function every second, as Graph delivers them;
* the outbound event stream: crmsync publishes its events to `sync-events`, which a
  subscription here prints, as a CRM's system would receive them (BEY-7).

It serves the sandbox console (sandbox/local/console.py: the CRM beside each user's
own account, editable on both sides, with the cycles and events as they happen) and
prints its address first, then the other addresses and commands to try, one line per
cycle (naming its connection) and one per outbound event after it. Ctrl-C (or SIGTERM)
stops everything it started.
`--check` stops after the first cycles of u1 and u2 instead, with exit status 0 when
both synced.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import requests

CONNECTIONS = {"u1": "google-u1", "u2": "microsoft-u2"}  # each demo user's, by user
TOPIC = "crm-events"
EVENTS_TOPIC = "sync-events"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make dev", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit after the first cycles of u1 and u2"
    )
    parser.add_argument("--port", type=int, default=0, help="port of the functions (0: any)")
    parser.add_argument("--tick", type=float, default=60.0, help="seconds between fan-outs")
    args = parser.parse_args(argv)
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the sandbox is plain http
    # msal recommends form_post to web apps; crmsync's callback takes the query (a GET)
    warnings.filterwarnings("ignore", message="response_mode='form_post'")

    from sandbox.local.cloud_tasks import start_cloud_tasks
    from sandbox.local.emulators import (
        EmulatorUnavailable,
        free_port,
        start_firestore,
        start_pubsub,
    )

    with ExitStack() as stack:
        try:
            say("starting the Firestore, Pub/Sub and Cloud Tasks emulators ...")
            firestore_emulator = stack.enter_context(start_firestore())
            pubsub_emulator = stack.enter_context(start_pubsub())
            tasks_emulator = stack.enter_context(start_cloud_tasks())
        except (EmulatorUnavailable, RuntimeError) as exc:
            print(f"make dev: {exc}", file=sys.stderr)
            return 2
        os.environ["FIRESTORE_EMULATOR_HOST"] = firestore_emulator.host
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_emulator.host
        os.environ["GOOGLE_CLOUD_PROJECT"] = firestore_emulator.project

        from google.cloud import firestore

        from crmsync.logs import configure_logging
        from crmsync.outbound import PubSubEvents
        from crmsync.store.firestore import FirestoreBackend
        from sandbox.local import operator_config
        from sandbox.local.console import Console, CrmSwitch, EventLog
        from sandbox.local.stack import DEMO_USERS, serve_app, through_cloud_tasks

        port = args.port or free_port()
        # the product's own logs (JSON lines, as Cloud Logging gets them): a page's error
        # reference is found there; kept after the stack stops, for a look afterwards
        operator_config.DEV_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        product_log = operator_config.DEV_DIR / f"stack-{port}.log"
        configure_logging(_private(product_log))  # open until the process ends
        console_port = free_port()  # the console stands in for Office.js (the Outlook pane)
        while console_port == port:
            console_port = free_port()
        backend = FirestoreBackend(firestore.Client(project=firestore_emulator.project))
        project = pubsub_emulator.project
        events = _topic(project, EVENTS_TOPIC)
        received = EventLog()
        stack.callback(_receive_events(project, events, received))
        switch = CrmSwitch()  # the console takes the CRM's API down with it
        local = through_cloud_tasks(
            backend,
            tasks_emulator.host,
            functions_port=port,
            events=PubSubEvents(events),
            crm_wrap=switch,
            office_js=f"http://127.0.0.1:{console_port}/office.js",
        )
        stack.callback(local.close)
        local.gmail_notifications(project)  # before the operator's config, which names it
        operator = operator_config.stack_environment(
            local, firestore_emulator, tasks=tasks_emulator, pubsub=pubsub_emulator, events=events
        )
        config = stack.enter_context(operator_config.written(operator))
        # The CRM's changes reach crmsync through this process's watch of the CRM below.
        console_url, stop_console = serve_app(
            Console(local, events=received, crm_switch=switch).app(), console_port
        )
        stack.callback(stop_console)
        admin_token = local.create_demo_tenant()
        _topic(project, TOPIC, push_to=local.functions_url + "/crm_events")
        seed_inbox(local)
        seed_outlook(local)
        for user, provider, services, where in (
            ("u1", "google", "sync,mail", "the Google sandbox's OAuth consent"),
            ("u2", "microsoft", "sync,mail", "the Microsoft sandbox's sign-in and consent (msal)"),
        ):
            say(f"connecting the demo user {user} through {where} ...")
            page = local.connect(user, services=services, provider=provider)
            if page.status_code != 200:
                print(f"make dev: connecting {user} failed ({page.status_code})", file=sys.stderr)
                return 1
        queue_demo_settings(local)
        status_url = local.functions_url + "/admin/status"
        app_url = local.functions_url + "/app"
        outlook = _outlook_curl(local)
        new_contact = {"givenName": "Katherine", "surname": "Johnson", "categories": ["CRM"]}
        say(
            "",
            "crmsync is running locally.",
            f"  console            {console_url}/  (open it in a browser: the CRM beside u1's "
            "Google and Gmail and u2's Outlook, editable on both sides, with each cycle and "
            "event)",
            f"  Gmail add-on       {console_url}/gmail-addon  (the CRM beside u1's open "
            "message or event, drawn from the cards the addon function answers Google: open "
            "one)",
            f"  Outlook add-in     {console_url}/outlook-addin  (crmsync's task pane beside "
            "u2's open message, meeting or new message, as Outlook opens it: open one)",
            f"  web app            {app_url}/sign-in?tenant=demo  (users and admins sign in "
            "with their provider account, in a browser):",
            f"    as u1              {_sign_in(app_url, 'google', DEMO_USERS['u1'])}",
            f"    as u2, the admin   {_sign_in(app_url, 'microsoft', DEMO_USERS['u2'])}",
            f"  functions          {local.functions_url}/<entry point>",
            f"  admin status       curl -s -H 'Authorization: Bearer {admin_token}' {status_url}",
            f"  reference CRM      {local.crm_url}  (tenant demo, token demo-token, "
            "users u1 u2 u3)",
            f"  Google sandbox     {local.google_url}  (u1 is {DEMO_USERS['u1']})",
            f"  Microsoft sandbox  {local.microsoft_url}  (u2 is {DEMO_USERS['u2']}, "
            f"Graph at {local.graph_root}, CA {local.microsoft_ca})",
            f"  emulators          Firestore {firestore_emulator.host}, Pub/Sub "
            f"{pubsub_emulator.host}, Cloud Tasks {tasks_emulator.host}",
            f"  event stream       topic {events} (printed below as 'event')",
            f"  operator config    {operator_config.shown(config)}  (private: the stack's "
            "secrets; build/dev/current.env is the latest's)",
            f"  product log        {operator_config.shown(product_log)}  (crmsync's own log "
            "lines; an error page's reference is in it)",
            "Record mail: in the console's Gmail panel of u1, tag Ada Lovelace's message Send "
            "To CRM;",
            "  within seconds it is in Ada's CRM history and labelled CRM/Recorded; the "
            "unknown sender's",
            "  message gets CRM/Missing Contact (each is a 'mail' cycle below).",
            "Onboard u3, who is not connected yet (open the link it prints):",
            f"  {operator_config.onboarding_command(config, 'u3')}",
            "The CRM contacts u1 and u2 see (in_scope: in their sync group):",
            *(
                f"  curl -s -H 'Authorization: Bearer demo-token' -H 'X-Crm-User: {user}' "
                f"{local.crm_url}/changes/contact"
                for user in CONNECTIONS
            ),
            "u2's Outlook contacts, as u2's own Outlook reads them from Graph:",
            f"  {outlook} {local.graph_root}/me/contacts",
            "Add a contact to u2's Outlook with the CRM category (Graph notifies crmsync, a",
            "push cycle brings it to u2's CRM contacts):",
            f"  {outlook} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(json.dumps(new_contact))} {local.graph_root}/me/contacts",
            "After the first cycles, a demo event in Outlook, a demo edit in the CRM and a",
            "demo event in Google show each path; every cycle prints a line below naming",
            "its connection. Ctrl-C stops everything (from another terminal: kill "
            f"{os.getpid()}, or a SIGTERM to make itself; make passes SIGTERM on, not SIGINT).",
            "",
        )
        status = _run(local, backend, pubsub_emulator.project, args.tick, args.check, received)
    if args.check:
        say("check " + ("passed: both first cycles synced" if status == 0 else "failed"))
    say("stopped: every process make dev started has ended")
    return status


def _private(path: Any) -> Any:
    """`path` opened for writing, readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(descriptor, "w", buffering=1)


def _sign_in(app_url: str, provider: str, email: str) -> str:
    """The app's sign-in for a demo user: the provider's sandbox opens with the account
    filled in; one click signs in."""
    query = urlencode({"tenant": "demo", "provider": provider, "hint": email})
    return f"{app_url}/sign-in?{query}"


def _run(local: Any, backend: Any, project: str, tick: float, check: bool, received: Any) -> int:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(project, TOPIC)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    seen: set[str] = set()
    first: dict[str, str] = {}  # each connection's first finished cycle's status
    shown = 0  # outbound events printed
    position = local.crm.database.position("demo")
    # Ten seconds apart, so that each path shows before the first fan-out (a minute
    # in) would pick the change up instead of the CRM event or the notification.
    demos = [
        _demo_outlook_event,
        _demo_crm_edit,
        _demo_google_event,
        _demo_held_delete,
        _demo_conflict,
    ]
    next_demo: float | None = None
    next_fanout = time.monotonic() + tick
    deadline = time.monotonic() + 180
    try:
        while not stop.is_set():
            # Events taken before the runs are read, printed after them: an event's
            # cycle (finished before it was published) is always printed first.
            arrived, count = received.after(shown)
            store = backend.store("demo")
            connected = [str(c["id"]) for c in store.connection_records()]  # u3's too
            runs = [
                {**run, "connection": connection}
                for connection in connected
                for run in store.runs(connection)
            ]
            for run in sorted(runs, key=lambda r: r["started"]):
                if run["id"] in seen or run.get("status") == "running":
                    continue
                seen.add(run["id"])
                say(_run_line(run))
                if run.get("trigger") != "mail":  # the first sync cycle, not a mail run
                    first.setdefault(run["connection"], run["status"])
            for event in arrived:
                say(_event_line(event))
            shown = count
            if check and len(first) == len(CONNECTIONS):
                return 0 if set(first.values()) == {"ok"} else 1
            if next_demo is None and len(first) == len(CONNECTIONS):
                next_demo = time.monotonic() + 5
            if demos and next_demo is not None and time.monotonic() >= next_demo:
                say(demos.pop(0)(local))
                next_demo = time.monotonic() + 10
            moved = local.crm.database.position("demo")
            if moved != position:  # the CRM tells crmsync, as a vendor's CRM would
                for (user, kind), ids in _changes(local, position).items():
                    _publish_change(publisher, topic, user, kind, ids)
                position = moved
            if time.monotonic() >= next_fanout:
                requests.post(local.functions_url + "/scheduler_fanout", timeout=60)
                next_fanout = time.monotonic() + tick
            if check and time.monotonic() > deadline:
                waiting = sorted(set(CONNECTIONS.values()) - set(first))
                print(f"make dev: no cycle of {', '.join(waiting)} finished", file=sys.stderr)
                return 1
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    say("stopping ...")
    return 0


def _demo_crm_edit(local: Any) -> str:
    """A rep changes a contact in the CRM."""
    contacts = local.crm.all("demo", "contact")
    ada = next(c for c in contacts if c.get("last_name") == "Lovelace")
    local.crm.update("demo", "contact", ada["id"], {"title": "Chief Technology Officer"})
    return "demo: the CRM changed Ada Lovelace's title (CRM event → Pub/Sub → task → worker)"


def _demo_google_event(local: Any) -> str:
    """The rep adds a meeting in Google Calendar."""
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    body = {
        "summary": "Coffee with Grace",
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
    }
    local.google_api("calendar", "v3").events().insert(calendarId="primary", body=body).execute()
    return "demo: u1 added 'Coffee with Grace' in Google Calendar (push → task → worker)"


def _demo_outlook_event(local: Any) -> str:
    """The manager adds a meeting in Outlook."""
    local.outlook("POST", "me/events", json=outlook_meeting("Lunch with Alan", days=2))
    return "demo: u2 added 'Lunch with Alan' in Outlook (Graph notification → task → worker)"


DEMO_MAIL = (
    (
        "Ada Lovelace <ada@acme.example>",
        "Engine order: next steps",
        "Hello Dana,\n\nThank you for the call. Please send the quote for the analytical "
        "engine by Friday.\n\nAda",
    ),
    (
        "Charles Babbage <charles@difference.example>",
        "Introduction",
        "Dana,\n\nAda told me about crmsync. Could we talk next week?\n\nCharles",
    ),
    (
        "Ada Lovelace <ada@acme.example>",
        "Re: Engine order: next steps",
        "One more thing: the invoice goes to accounts@acme.example.\n\nAda",
    ),
)


def seed_inbox(local: Any) -> None:
    """u1's Gmail inbox holds a few messages: two from Ada Lovelace, a contact of the
    demo CRM, and one from an address the CRM does not know (none tagged yet)."""
    from sandbox.local.inbox import GmailInbox
    from sandbox.local.stack import DEMO_USERS

    inbox = GmailInbox(local.google, DEMO_USERS["u1"])
    for sender, subject, text in DEMO_MAIL:
        inbox.arrive(sender, subject, text)


def seed_outlook(local: Any) -> None:
    """u2's Outlook inbox holds two messages, from Grace Hopper (a contact of the demo
    CRM) and from a stranger; u2's calendar a meeting with Grace tomorrow, for the
    Outlook pane to relate to her records once the first sync brought it to the CRM."""
    from sandbox.local.stack import DEMO_USERS
    from sandbox.microsoft import mail

    max_ = DEMO_USERS["u2"]
    for number, (sender, subject, text) in enumerate(OUTLOOK_MAIL):
        raw = (
            f"From: {sender}\r\nTo: {max_}\r\nSubject: {subject}\r\n"
            f"Message-ID: <demo-outlook-{number}@crmsync.example>\r\n\r\n{text}\r\n"
        )
        mail.deliver(local.microsoft, max_, raw.encode())
    body = outlook_meeting("Globex onboarding kickoff", days=1, guests=("grace@globex.example",))
    local.outlook("POST", "me/events", user="u2", json=body)


def outlook_meeting(subject: str, days: int, guests: tuple[str, ...] = ()) -> dict[str, Any]:
    """A meeting of an hour, `days` from now on the hour, as Outlook's Graph takes it."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=days)
    body: dict[str, Any] = {
        "subject": subject,
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
        "end": {
            "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
            "timeZone": "UTC",
        },
    }
    if guests:
        body["attendees"] = [
            {"emailAddress": {"address": guest}, "type": "required"} for guest in guests
        ]
    return body


# u2's Outlook inbox (the Outlook add-in's demo): a contact of the CRM and a stranger
OUTLOOK_MAIL = (
    (
        "Grace Hopper <grace@globex.example>",
        "Onboarding plan",
        "Max,\n\nHere is the plan for the Globex onboarding.\n\nGrace",
    ),
    (
        "Lin Chen <lin@new-co.example>",
        "A question about crmsync",
        "Hello Max,\n\nCould you show us how the CRM works with Outlook?\n\nLin",
    ),
)


def queue_demo_settings(local: Any) -> None:
    """u1 decides conflicts (`manual`) and confirms deletes of two records or more, so
    that the demo's conflict and held delete wait in u1's queue for the web app."""
    from crmsync.usecases import preferences

    changes = {"conflict_policy": "manual", "mass_delete_min": 2}
    preferences.change(local.services, "demo", "google-u1", changes, as_admin=True)


def _demo_held_delete(local: Any) -> str:
    """Both of u1's to-dos go from Google at once: more than u1's mass-delete guard lets
    through (the demo lowers it to 2), so the deletes wait in u1's queue (SYN-6)."""
    tasks = local.google_api("tasks", "v1")
    for task in tasks.tasks().list(tasklist="@default").execute().get("items", []):
        tasks.tasks().delete(tasklist="@default", task=task["id"]).execute()
    return "demo: u1's to-dos were deleted in Google; the deletes wait in u1's queue"


def _demo_conflict(local: Any) -> str:
    """Grace Hopper's title changes in the CRM and in Google before a cycle runs: with
    u1's conflict policy `manual` (the demo's), the conflict waits in u1's queue (SYN-2)."""
    contacts = local.crm.all("demo", "contact")
    grace = next(c for c in contacts if c.get("last_name") == "Hopper")
    local.crm.update("demo", "contact", grace["id"], {"title": "Rear Admiral"})
    people = local.google_api("people", "v1").people()
    listed = (
        people.connections()
        .list(resourceName="people/me", personFields="names,organizations")
        .execute()
    )
    for person in listed.get("connections", []):
        if any(n.get("familyName") == "Hopper" for n in person.get("names", [])):
            person["organizations"] = [
                {**(person.get("organizations") or [{}])[0], "title": "Professor"}
            ]
            people.updateContact(
                resourceName=person["resourceName"],
                updatePersonFields="organizations",
                body=person,
            ).execute()
    return (
        "demo: Grace Hopper's title changed in the CRM and in Google at once; the conflict "
        "waits in u1's queue (sign in as u1, open Queue)"
    )


def _outlook_curl(local: Any) -> str:
    """curl as u2's own Outlook: trusting the Microsoft sandbox's CA, with a token of
    u2's for their mailbox (a day long)."""
    token = local.outlook_token("u2", seconds=24 * 3600)
    return f"curl -s --cacert {shlex.quote(local.microsoft_ca)} -H 'Authorization: Bearer {token}'"


def _run_line(run: dict[str, Any]) -> str:
    counts = ", ".join(
        f"{kind}: " + " ".join(f"{n} {what}" for what, n in sorted(by.items()))
        for kind, by in sorted((run.get("counts") or {}).items())
    )
    return (
        f"{run['started']:%H:%M:%S} cycle {run['connection']:<12} {run['trigger']:<8} "
        f"{run['status']:<9} {counts or 'nothing to do'}"
    )


def _topic(project: str, name: str, *, push_to: str = "") -> str:
    """The topic `name` on the emulator, with a push subscription to `push_to`, or a
    pull subscription of the same name; returns the topic's path."""
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic = publisher.topic_path(project, name)
    request: dict[str, Any] = {"topic": topic, "ack_deadline_seconds": 60}
    if push_to:
        request.update(name=subscriber.subscription_path(project, name + "-push"))
        request.update(push_config={"push_endpoint": push_to})
    else:
        request.update(name=subscriber.subscription_path(project, name))
    with suppress(AlreadyExists):
        publisher.create_topic(request={"name": topic})
    with suppress(AlreadyExists):
        subscriber.create_subscription(request=request)
    return topic


def _receive_events(project: str, topic: str, log: Any) -> Any:
    """Keep each outbound event in `log` as it arrives (printed by the main loop, and
    shown by the console); returns what stops the receiving."""
    from google.cloud import pubsub_v1

    subscriber = pubsub_v1.SubscriberClient()

    def received(message: Any) -> None:
        log.add(json.loads(message.data))
        message.ack()

    path = subscriber.subscription_path(project, topic.rsplit("/", 1)[-1])
    return subscriber.subscribe(path, received).cancel


def _event_line(event: dict[str, Any]) -> str:
    data = event.get("data", {})
    if event["type"] == "cycle.finished":
        detail = f"run {data['run']} {data['status']}, {len(data['items'])} record actions"
    elif event["type"] == "conflict.waiting":
        detail = f"{data['kind']} crm {data['crm_id']} waits ({data['outcome']})"
    else:
        detail = ", ".join(f"{k} {v}" for k, v in sorted(data.items()))
    return f"{event['at'][11:19]} event {event['type']:<22} {event['connection']}: {detail}"


def _changes(local: Any, after: int) -> dict[tuple[str, str], list[str]]:
    """The CRM's changes since sequence number `after`, by the user they concern and
    their kind: a record's owner, a meeting's members, and each user whose sync group
    holds a changed contact (any CRM user: crmsync ignores those not connected)."""
    from sandbox.crm.database import FEED_KINDS

    database = local.crm.database
    users = [user.id for user in database.users("demo")]
    groups = {user: database.members("demo", user) for user in users}
    changes: dict[tuple[str, str], list[str]] = {}
    for kind in FEED_KINDS:
        for record in database.changed_after("demo", kind, after, 1000):
            concerned = {record.owner or "", *(record.raw.get("members") or ())}
            concerned.update(user for user, held in groups.items() if record.id in held)
            for user in sorted(concerned & set(users)):
                changes.setdefault((user, kind), []).append(record.id)
    return changes


def _publish_change(publisher: Any, topic: str, user: str, kind: str, ids: list[str]) -> None:
    """The CRM's signed change event for one user and kind, as a vendor's CRM sends it."""
    from datetime import UTC, datetime

    from crmsync.crm import events
    from sandbox.local.stack import EVENT_SECRET

    now = datetime.now(UTC)
    body = json.dumps(
        {"tenant": "demo", "user": user, "kind": kind, "ids": ids[:100], "sent_at": now.isoformat()}
    ).encode()
    signature = events.sign(EVENT_SECRET.encode(), body, now)
    publisher.publish(topic, body, signature=signature).result(timeout=30)


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
