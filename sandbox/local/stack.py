"""crmsync's whole product on one machine: every Cloud Function of functions/main.py
served by functions-framework on one local port (each under /<entry point>), the
reference CRM with its demo tenant, the Google sandbox with crmsync registered as its
OAuth client, and the Microsoft sandbox (over https, with a throwaway CA made at start)
with crmsync's app registered, whose change notifications a thread of the stack
delivers every second, as Graph would. The store and the task queue are whatever the
caller passes: the memory ones in fast tests, the Firestore emulator and the Cloud
Tasks emulator in end-to-end tests and `make dev`.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from crmsync import entrypoints, service
from crmsync.auth.vault import LocalKek, TokenVault
from crmsync.bursts import DebouncedQueue
from crmsync.outbound import MemoryEvents
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.seed import DEMO_TENANT, DEMO_TOKEN, seed_demo
from sandbox.google import addons as google_addons
from sandbox.google.core import GoogleSandbox
from sandbox.google.server import serve as serve_google
from sandbox.home import Address, Section, page
from sandbox.local.emulators import free_port
from sandbox.microsoft.core import MicrosoftSandbox
from sandbox.microsoft.identity import consent as microsoft_consent
from sandbox.microsoft.server import serve as serve_microsoft
from sandbox.microsoft.server import trusting_session
from sandbox.microsoft.subscriptions import flush

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "functions" / "main.py"
# Each entry point of functions/main.py, and who calls it.
ENTRY_POINTS = {
    "oauth_start": "a user's onboarding link opens here",
    "oauth_callback": "Google and Microsoft send the user back here after consent",
    "google_webhook": "Google Calendar's push notifications (POST)",
    "graph_webhook": "Microsoft Graph's change notifications (POST)",
    "addon": "the mail client's pane: Gmail's add-on events at /addon/google (POST)",
    "crm_events": "the CRM's signed change events (POST)",
    "gmail_push": "Gmail's notifications, pushed by Pub/Sub (POST)",
    "scheduler_fanout": "Cloud Scheduler, every minute (POST)",
    "sync_worker": "Cloud Tasks, one connection's sync (POST)",
    "admin": "the admin API: /health, /status, POST /sync/<connection>, "
    "POST /disconnect/<connection> (admin token)",
    "app": "the web app: users and tenant admins sign in at /app/sign-in?tenant=<id>",
}
TARGETS = tuple(ENTRY_POINTS)
DEMO_ADMIN = "u2"  # Max Manager runs crmsync for the demo tenant
CLIENT_ID = "crmsync-local.apps.example"
CLIENT_SECRET = "local-client-secret"
EVENT_SECRET = "demo-event-secret"
SCOPE = "https://www.googleapis.com/auth/"
DEMO_USERS = {
    "u1": "dana.rep@demo.example",
    "u2": "max.manager@demo.example",
    "u3": "sam.support@demo.example",  # not connected by make dev: the one to onboard
}
# crmsync's app registration at the Microsoft sandbox, and what a user's own Outlook
# (not crmsync) may do in their mailbox.
MICROSOFT_CLIENT_ID = "6f1c2a8e-3b7d-4c1e-9f0a-5d2e8b4c7a10"
MICROSOFT_SECRET = "local-microsoft-secret"
OUTLOOK_SCOPES = (
    "User.Read",
    "Contacts.ReadWrite",
    "Calendars.ReadWrite",
    "Tasks.ReadWrite",
    "Mail.ReadWrite",
)


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def function_process(
    target: str, env: Mapping[str, str], *, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """One entry point of functions/main.py served by functions-framework in a process
    of its own, as a deployed function is (gunicorn), in a session of its own so that
    it can be killed whole; returns the process and its URL once it listens."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={target}",
            f"--source={MAIN}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        env={**env, "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            kill(process)
            raise RuntimeError(f"functions-framework did not serve {target}")
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port}"


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and everything it started (gunicorn's workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def functions_app() -> Any:
    """One WSGI app with each entry point of functions/main.py at /<entry point>, as
    functions-framework serves it (`functions-framework --target=<entry point>`)."""
    from functions_framework import create_app

    apps = {f"/{t}": _rooted(create_app(t, str(MAIN), "http")) for t in TARGETS}
    return DispatcherMiddleware(_not_found, apps)


def _rooted(app: Any) -> Any:
    """/<entry point> reaches the function at its root, as a deployed function's URL does."""

    def run(environ: Any, start_response: Any) -> Any:
        environ["PATH_INFO"] = environ.get("PATH_INFO") or "/"
        return app(environ, start_response)

    return run


def _not_found(environ: Any, start_response: Any) -> Any:
    """A path that is no entry point: the root a newcomer opens from the `make dev`
    banner gets a page naming the entry points; any other path a 404 that names them,
    as a page for a browser, else in crmsync's error shape."""
    request = Request(environ)
    at_root = request.path == "/"
    if at_root or entrypoints.wants_page(request):
        intro = ("" if at_root else f"No function answers {request.path}. ") + _FUNCTIONS_INTRO
        shown = page("crmsync's functions", intro, [_functions(request.host_url)])
        status = 200 if at_root else 404
        return Response(shown, status, mimetype="text/html")(environ, start_response)
    named = ", ".join(f"/{target}" for target in TARGETS)
    error = {"error": f"no function answers {request.path}; the entry points are {named}"}
    return Response(json.dumps(error), 404, mimetype="application/json")(environ, start_response)


_FUNCTIONS_INTRO = (
    "Every Cloud Function of crmsync, each at /<entry point> as functions-framework serves "
    "it. Users start at their onboarding link (`crmsync onboarding-link`), which opens "
    "oauth_start; admins read the admin API with their tenant's admin token."
)


def _functions(base: str) -> Section:
    root = base.rstrip("/")
    listed = tuple(Address("", f"{root}/{name}", what) for name, what in ENTRY_POINTS.items())
    return Section("Entry points", listed)


def serve_app(app: Any, port: int = 0) -> tuple[str, Callable[[], None]]:
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    stopped = threading.Event()

    def stop() -> None:
        if not stopped.is_set():
            stopped.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    return f"http://127.0.0.1:{server.port}", stop


@dataclass
class LocalStack:
    """The product on loopback sockets. `backend` and `queue` are the store and the task
    queue the functions use, `events` their outbound event stream (kept in memory unless
    given); `functions_port`/`crm_port`/`google_port`/`microsoft_port` 0 pick free
    ports. Graph's queued change notifications are POSTed every `graph_flush` seconds
    (0: only when a caller runs `flush(stack.microsoft)`)."""

    backend: Any
    queue: Any
    crm_path: str = ":memory:"
    functions_port: int = 0
    crm_port: int = 0
    google_port: int = 0
    microsoft_port: int = 0
    graph_flush: float = 1.0  # seconds between Graph's notification deliveries (0: none)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    crm_options: dict[str, Any] = field(default_factory=dict)
    crm_wrap: Callable[[Any], Any] | None = None  # WSGI middleware around the CRM
    events: Any = field(default_factory=MemoryEvents)  # the outbound stream (BEY-7)
    gmail_topic: str = ""  # where Gmail's watches publish (`gmail_notifications`)
    debounce: int = 10  # seconds a change waits for its burst (CRMSYNC_DEBOUNCE_SECONDS)
    # where the Outlook pane loads Office.js from when no Outlook opens it (make dev's
    # console serves sandbox/microsoft/office_stub.js); Microsoft's CDN when ""
    office_js: str = ""

    def __post_init__(self) -> None:
        os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the sandbox is plain http
        self._stops: list[Callable[[], None]] = []
        self.crm = ReferenceCrm(CrmDatabase(self.crm_path))
        seed_demo(self.crm)
        self.crm_url, stop = _serve_crm(self.crm, self.crm_port, self.crm_wrap)
        self._stops.append(stop)
        self.google = GoogleSandbox()
        self.google_url, stop = serve_google(self.google, port=self.google_port)
        self._stops.append(stop)
        self.microsoft = MicrosoftSandbox()
        for email in DEMO_USERS.values():
            self.microsoft.add_user(email)
        served = serve_microsoft(self.microsoft, port=self.microsoft_port)  # its CA: a temp dir
        self.microsoft_url, self.microsoft_ca = served.base_url, served.ca_path
        self._stops.append(served.stop)
        self.functions_url, stop = serve_app(functions_app(), self.functions_port)
        self._stops.append(stop)
        callback = self.functions_url + "/oauth_callback"
        self.google.add_client(CLIENT_ID, CLIENT_SECRET, [callback])
        self.microsoft.add_app(MICROSOFT_CLIENT_ID, MICROSOFT_SECRET, [callback])
        self.kek = secrets.token_bytes(32)
        self.secret = secrets.token_urlsafe(32)
        self.services = service.Services(
            backend=self.backend,
            queue=DebouncedQueue(self.queue, lambda: self.services.clock()),
            vault=TokenVault(LocalKek(self.kek)),
            secret=self.secret.encode(),
            public_url=self.functions_url,
            providers=entrypoints.provider_setups(self.environment()),
            clock=self.clock,
            crm_options=self.crm_options,
            events=self.events,
            debounce=entrypoints.debounce(self.environment()),
        )
        entrypoints.use(self.services)
        if self.graph_flush > 0:
            self._stops.append(_deliver_notifications(self.microsoft, self.graph_flush))

    def environment(self) -> dict[str, str]:
        """The environment a functions-framework process of its own needs to serve this
        stack's functions (with the store's and the queue's variables added)."""
        return {
            "CRMSYNC_PUBLIC_URL": self.functions_url,
            "CRMSYNC_GOOGLE_CLIENT_ID": CLIENT_ID,
            "CRMSYNC_GOOGLE_CLIENT_SECRET": CLIENT_SECRET,
            "CRMSYNC_GOOGLE_ROOT": self.google_url,
            "CRMSYNC_GOOGLE_ADDON_ACCOUNT": google_addons.SERVICE_ACCOUNT,
            "CRMSYNC_GOOGLE_ADDON_CLIENT_ID": google_addons.CLIENT_ID,
            "CRMSYNC_MICROSOFT_CLIENT_ID": MICROSOFT_CLIENT_ID,
            "CRMSYNC_MICROSOFT_CLIENT_SECRET": MICROSOFT_SECRET,
            "CRMSYNC_MICROSOFT_AUTHORITY": f"{self.microsoft_url}/{self.microsoft.tenant_id}",
            "CRMSYNC_MICROSOFT_CA": self.microsoft_ca,
            "CRMSYNC_MICROSOFT_GRAPH_ROOT": self.graph_root,
            "CRMSYNC_SECRET": self.secret,
            "CRMSYNC_LOCAL_KEK": base64.b64encode(self.kek).decode(),
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
            "CRMSYNC_DEBOUNCE_SECONDS": str(self.debounce),
            **({"CRMSYNC_GMAIL_TOPIC": self.gmail_topic} if self.gmail_topic else {}),
            **({"CRMSYNC_MICROSOFT_OFFICE_JS": self.office_js} if self.office_js else {}),
        }

    def gmail_notifications(self, project: str) -> str:
        """Gmail's notifications of this stack's mailboxes, wired as Terraform wires them
        (EML-1): the Google sandbox's watches publish to a topic of the Pub/Sub emulator
        (PUBSUB_EMULATOR_HOST), whose push subscription delivers them to gmail_push.
        Returns the topic."""
        from google.cloud import pubsub_v1

        from sandbox.google.gmail import EmulatorPubSub, connect_pubsub

        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        name = f"gmail-notifications-{secrets.token_hex(4)}"
        topic = publisher.topic_path(project, name)
        publisher.create_topic(request={"name": topic})
        subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(project, name),
                "topic": topic,
                "push_config": {"push_endpoint": self.functions_url + "/gmail_push"},
            }
        )
        connect_pubsub(self.google, EmulatorPubSub(project))
        self.gmail_topic = topic
        self.services.providers = entrypoints.provider_setups(self.environment())
        return topic

    @property
    def graph_root(self) -> str:
        """Where the Microsoft sandbox answers as Graph's v1.0."""
        return self.microsoft_url + "/v1.0"

    def close(self) -> None:
        entrypoints.use(None)
        for stop in reversed(self._stops):
            stop()

    # -- the demo tenant and its users --------------------------------------------------------
    def create_demo_tenant(self, **settings: Any) -> str:
        """The demo tenant, on the reference CRM's demo data; returns the admin token."""
        return service.create_tenant(
            self.services,
            DEMO_TENANT,
            name="Demo Inc.",
            crm_base_url=self.crm_url,
            crm_token=DEMO_TOKEN,
            event_secret=EVENT_SECRET,
            settings=settings,
            admins=[DEMO_ADMIN],
        )

    def connect(
        self, user: str = "u1", services: str = "sync", email: str = "", provider: str = "google"
    ) -> requests.Response:
        """The user opens their onboarding link, chooses the provider and services,
        consents at the provider's sandbox as their account there (`email`; a demo user's
        own by default), and lands on crmsync's callback page."""
        link = service.onboarding_link(self.services, DEMO_TENANT, user)
        page = requests.get(link, timeout=10)
        page.raise_for_status()
        chosen = requests.get(
            f"{link}&provider={provider}&services={services}", allow_redirects=False, timeout=10
        )
        assert chosen.status_code == 302, chosen.text
        account = email or DEMO_USERS[user]
        if provider == "microsoft":  # the answer comes back as a posted form (form_post)
            answer = microsoft_consent(
                chosen.headers["Location"], account, verify=self.microsoft_ca
            )
            return requests.post(self.services.url("oauth_callback"), data=answer, timeout=60)
        back = consent(chosen.headers["Location"], account)
        return requests.get(back, timeout=60)

    def google_api(self, api: str, version: str, user: str = "u1", email: str = "") -> Any:
        """The user's own Google apps: a client of their sandbox account (not crmsync's);
        `email` names any other account of the sandbox."""
        from google.oauth2.credentials import Credentials
        from googleapiclient.discovery import build

        scopes = [SCOPE + name for name in ("calendar", "contacts", "tasks")]
        token = self.google.issue_token(email or DEMO_USERS[user], scopes)
        endpoint = self.google_url + ("calendar/v3/" if api == "calendar" else "")
        return build(
            api,
            version,
            credentials=Credentials(token),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": endpoint},
            static_discovery=True,
            cache_discovery=False,
        )

    def outlook_token(self, user: str = "u2", seconds: int = 24 * 3600) -> str:
        """An access token of the user's own Outlook (not crmsync's) for their mailbox at
        the Microsoft sandbox."""
        return self.microsoft.issue_token(DEMO_USERS[user], OUTLOOK_SCOPES, seconds=seconds)

    def outlook(self, method: str, path: str, user: str = "u2", **kwargs: Any) -> Any:
        """A Graph request (`path` below /v1.0/) as the user's own Outlook; the answer's
        JSON (None when it has no body). A refusal raises HTTPError."""
        session = trusting_session(self.microsoft_ca)
        session.headers["Authorization"] = "Bearer " + self.outlook_token(user, 600)
        with session:
            answer = session.request(method, f"{self.graph_root}/{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def google_contact_names(self, user: str = "u1", email: str = "") -> list[str]:
        """The names of the user's Google contacts (or those of account `email`), sorted."""
        people = self.google_api("people", "v1", user, email).people()
        listing = people.connections().list(resourceName="people/me", personFields="names")
        answer = listing.execute()
        return sorted(
            name.get("displayName", "")
            for person in answer.get("connections", [])
            for name in person.get("names", [])
        )

    def post_event(self, user: str, kind: str, ids: list[str]) -> requests.Response:
        """The CRM tells crmsync that records of `user` changed (signed)."""
        from crmsync.crm import events

        body = json.dumps(
            {
                "tenant": DEMO_TENANT,
                "user": user,
                "kind": kind,
                "ids": ids,
                "sent_at": self.clock().isoformat(),
            }
        ).encode()
        signature = events.sign(EVENT_SECRET.encode(), body, self.clock())
        return requests.post(
            self.functions_url + "/crm_events",
            data=body,
            headers={"Crmsync-Signature": signature, "Content-Type": "application/json"},
            timeout=10,
        )


def through_cloud_tasks(backend: Any, tasks_host: str, **options: Any) -> LocalStack:
    """The stack whose cycles travel through the Cloud Tasks emulator at `tasks_host` to
    its own sync_worker function, as `make dev` and the end-to-end tests run it;
    `options` are LocalStack's (a `functions_port` of 0 picks a free one)."""
    from crmsync.queue.cloud_tasks import CloudTasksQueue, emulator_client
    from sandbox.local.cloud_tasks import LOCAL_QUEUE

    port = options.pop("functions_port", 0) or free_port()
    worker = f"http://127.0.0.1:{port}/sync_worker"
    queue = CloudTasksQueue(emulator_client(tasks_host), LOCAL_QUEUE, worker)
    return LocalStack(backend, queue, functions_port=port, **options)


def _deliver_notifications(sandbox: MicrosoftSandbox, every: float) -> Callable[[], None]:
    """As Graph does: queued change notifications are POSTed to their subscriptions'
    URLs every `every` seconds, by a thread; returns what stops it."""
    stopped = threading.Event()

    def deliver() -> None:
        while not stopped.wait(every):
            try:
                flush(sandbox)
            except Exception:  # drift is kept in sandbox.drift; deliver the next ones
                continue

    thread = threading.Thread(target=deliver, name="graph-notifications", daemon=True)
    thread.start()

    def stop() -> None:
        stopped.set()
        thread.join(timeout=10)

    return stop


def _serve_crm(
    crm: ReferenceCrm, port: int, wrap: Callable[[Any], Any] | None
) -> tuple[str, Callable[[], None]]:
    from sandbox.crm.server import serve

    return serve(crm, port=port, wrap=wrap)


# -- the consent page, as a browser submits it ------------------------------------------------
class _ConsentForm(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.inputs: dict[str, str] = {}
        self.scopes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action") or ""
        elif tag == "input" and found.get("type") == "checkbox" and "checked" in found:
            self.scopes.append(found.get("value") or "")
        elif tag == "input" and found.get("name"):
            self.inputs[found["name"] or ""] = found.get("value") or ""


def consent(url: str, email: str) -> str:
    """Consent to everything asked at the Google sandbox as `email`; the redirect back."""
    page = requests.get(url, timeout=10)
    page.raise_for_status()
    form = _ConsentForm()
    form.feed(page.text)
    data = [("consent", form.inputs["consent"]), ("email", email)]
    data += [("scope", scope) for scope in form.scopes] + [("action", "allow")]
    answer = requests.post(urljoin(url, form.action), data=data, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["Location"])


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
