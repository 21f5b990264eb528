"""HTTP requests → crmsync's use cases → HTTP answers; one function per Cloud Function.

Each handler authenticates, validates, resolves the tenant from authenticated input and
calls one use case of `crmsync.service`. A client's mistake gets a 4xx, a fault on
crmsync's side (or a dependency that is down) a 5xx, which Cloud Tasks and Pub/Sub
answer by retrying; either way the answer is one shape, `{"error": "<reason>"}`, or,
for people (the onboarding pages, and a browser that asks for HTML anywhere), a page
saying what happened and what to do next. A method a route does not answer gets 405
with `Allow`; a missing or refused admin token 401 with `WWW-Authenticate`. Nothing
secret is logged or echoed.

`services()` builds the Services from the environment once per instance, with only
what its function uses (`USES`, by CRMSYNC_FUNCTION); a handler that reaches for
anything else fails at once, so Terraform can grant each function's service account
just the roles and secrets of its uses (tests/infra holds the two together):

  CRMSYNC_FUNCTION       the entry point this instance serves; unset: everything

  CRMSYNC_STORE          firestore (default; FIRESTORE_EMULATOR_HOST locally) or memory
  GOOGLE_CLOUD_PROJECT   the project of Firestore
  CRMSYNC_HISTORY_DAYS   how long run history is kept (HIS-3; default 90)
  CRMSYNC_DEBOUNCE_SECONDS  how long a change waits for the rest of its burst before
                         its cycle runs (RUN-3; default 10, 0 to 300)
  CRMSYNC_TASKS_QUEUE, CRMSYNC_WORKER_URL, CRMSYNC_TASKS_SERVICE_ACCOUNT
                         the Cloud Tasks queue of cycles (CLOUD_TASKS_EMULATOR_HOST locally)
  CRMSYNC_SECRET         signs onboarding links and OAuth states (from Secret Manager)
  CRMSYNC_KMS_KEY        the Cloud KMS key of the token vault, or
  CRMSYNC_LOCAL_KEK      a base64 32-byte key instead (development only)
  CRMSYNC_PUBLIC_URL     where the HTTP functions answer (webhook and callback addresses)
  CRMSYNC_GOOGLE_CLIENT_ID, CRMSYNC_GOOGLE_CLIENT_SECRET
                         crmsync's OAuth client at Google
  CRMSYNC_GOOGLE_ROOT    Google's APIs and OAuth at another root (the local sandbox)
  CRMSYNC_GOOGLE_ADDON_ACCOUNT, CRMSYNC_GOOGLE_ADDON_CLIENT_ID
                         the Gmail add-on's deployment: the service account that signs
                         Gmail's requests and the add-on's OAuth client (unset: none)
  CRMSYNC_MICROSOFT_CLIENT_ID, CRMSYNC_MICROSOFT_CLIENT_SECRET
                         crmsync's app registration at Microsoft (unset: no Microsoft)
  CRMSYNC_MICROSOFT_AUTHORITY, CRMSYNC_MICROSOFT_CA, CRMSYNC_MICROSOFT_GRAPH_ROOT
                         Microsoft's identity platform and Graph elsewhere (the sandbox)
  CRMSYNC_EVENTS_TOPIC   the Pub/Sub topic of the outbound event stream (BEY-7),
                         projects/P/topics/T (PUBSUB_EMULATOR_HOST locally); unset: none
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from crmsync import service, web
from crmsync.errors import TransientError, Undeclared
from crmsync.logs import configure_logging
from crmsync.outbound import NoEvents, PubSubEvents
from crmsync.ports import PushAnswer, PushRequest
from crmsync.queue import DEBOUNCE

log = logging.getLogger("crmsync.entrypoints")

MAX_BODY = 64 * 1024  # events and task payloads are small; anything bigger is refused
MAX_FORM = 16 * 1024  # a provider's form_post answer: a code, the state, a few ids
# One POST of change notifications bundles those of many subscriptions (each under 1 KB).
MAX_PUSH_BODY = 1024 * 1024
MAX_DEBOUNCE_SECONDS = 300  # a change waits at most five minutes for its burst
Answer = tuple[Any, int, dict[str, str]]
Handler = Callable[[Any], Answer]
_JSON = {"Content-Type": "application/json"}
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_TEXT = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
# Every answer forbids other sites to frame it, so that no page of crmsync (a consent,
# a disconnect, a setting) can be shown under another site's clicks; a page a mail
# client shows in its own window allows framing by https sites only (PushAnswer.framed).
UNFRAMED = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}
FRAMED = {"Content-Security-Policy": "frame-ancestors https:"}
READ = ("GET", "HEAD")
POST = ("POST",)

# What each function uses besides the store: "secret" (CRMSYNC_SECRET: onboarding links,
# OAuth states, attachment addresses), "google" (crmsync's OAuth client), "vault" (the
# KMS key: tokens and tenants' secrets), "queue" (enqueues cycles), "events" (publishes
# to sync-events), "attachments" (the bucket of mail attachments too large for the CRM).
USES: dict[str, frozenset[str]] = {
    "oauth_start": frozenset({"secret", "google"}),
    "oauth_callback": frozenset({"secret", "google", "vault", "queue", "events"}),
    "google_webhook": frozenset({"queue"}),
    "graph_webhook": frozenset({"queue"}),
    "crm_events": frozenset({"vault", "queue"}),
    "gmail_push": frozenset({"queue"}),
    "scheduler_fanout": frozenset({"queue"}),
    "sync_worker": frozenset({"secret", "google", "vault", "queue", "events", "attachments"}),
    "admin": frozenset({"google", "vault", "queue", "events"}),
    # the web app: sessions and sign-in (secret), the providers' sign-in and pickers,
    # the CRM's directory (vault), sync now (queue), disconnect (events)
    "app": frozenset({"secret", "google", "vault", "queue", "events", "attachments"}),
    # the mail client's pane (CTX-1): the providers' add-on setups, the CRM (vault),
    # filing a message (queue), the addresses of attached documents (secret)
    "addon": frozenset({"secret", "google", "vault", "queue"}),
}
EVERYTHING = frozenset({"secret", "google", "vault", "queue", "events", "attachments"})
# The Services field each use is.
_FIELDS = {"secret": "secret", "google": "providers", "vault": "vault", "queue": "queue"}
_FIELDS["events"] = "events"
_FIELDS["attachments"] = "attachments"

_services: service.Services | None = None
_serving: ContextVar[str] = ContextVar("crmsync_serving", default="")


class Denied:
    """What a function gets in place of something it does not use: any use of it fails
    with Undeclared, naming the function and the use."""

    def __init__(self, function: str, use: str) -> None:
        self._what = f"the {function or 'this'} function does not use {use!r} (USES)"

    def __getattr__(self, name: str) -> Any:
        raise Undeclared(self._what)

    def __bytes__(self) -> bytes:
        raise Undeclared(self._what)

    def __bool__(self) -> bool:
        raise Undeclared(self._what)


def services() -> service.Services:
    """The Services of this instance, as the handler being served may use them."""
    global _services
    if _services is None:
        configure_logging()
        _services = from_environment(os.environ)
    serving = _serving.get()
    return restricted(_services, serving) if serving else _services


def restricted(built: service.Services, function: str) -> service.Services:
    """`built` with everything `function` does not use replaced by Denied."""
    uses = USES.get(function, EVERYTHING)
    denied: dict[str, Any] = {
        _FIELDS[use]: Denied(function, use) for use in sorted(EVERYTHING - uses)
    }
    return dataclasses.replace(built, **denied)


def use(built: service.Services | None) -> None:
    """Run the handlers on these Services (tests, `make dev`); None: from the environment."""
    global _services
    _services = built


def from_environment(env: Mapping[str, str]) -> service.Services:
    from crmsync.auth.vault import LocalKek, TokenVault

    function = env.get("CRMSYNC_FUNCTION", "")
    if function and function not in USES:
        raise ValueError(f"CRMSYNC_FUNCTION names no entry point: {function!r}")
    uses = USES.get(function, EVERYTHING)

    if env.get("CRMSYNC_STORE", "firestore") == "memory":
        from crmsync.store.memory import MemoryBackend

        backend: Any = MemoryBackend()
    else:
        from google.cloud import firestore

        from crmsync.store.firestore import FirestoreBackend

        days = int(env.get("CRMSYNC_HISTORY_DAYS", "90"))  # HIS-3: then runs are erased
        client = firestore.Client(project=env.get("GOOGLE_CLOUD_PROJECT"))
        backend = FirestoreBackend(client, retention=timedelta(days=days))
    built: dict[str, Any] = {
        _FIELDS[use]: Denied(function, use) for use in sorted(EVERYTHING - uses)
    }
    if "queue" in uses:
        from crmsync.bursts import DebouncedQueue
        from crmsync.queue.cloud_tasks import CloudTasksQueue

        cloud_tasks = CloudTasksQueue.from_environment(env)
        built["queue"] = DebouncedQueue(cloud_tasks, lambda: datetime.now(UTC))
    if "vault" in uses:
        kek: Any
        if env.get("CRMSYNC_KMS_KEY"):
            from crmsync.auth.kms import CloudKmsKek

            kek = CloudKmsKek(env["CRMSYNC_KMS_KEY"], endpoint=env.get("CRMSYNC_KMS_ENDPOINT"))
        else:
            kek = LocalKek(base64.b64decode(env["CRMSYNC_LOCAL_KEK"]))
        built["vault"] = TokenVault(kek)
    if "google" in uses:
        built["providers"] = provider_setups(env)
    if "events" in uses:
        topic = env.get("CRMSYNC_EVENTS_TOPIC")
        built["events"] = PubSubEvents(topic) if topic else NoEvents()
    if "secret" in uses:
        built["secret"] = env["CRMSYNC_SECRET"].encode()
    if "attachments" in uses:
        built["attachments"] = attachment_store(env)
    built["debounce"] = debounce(env)
    return service.Services(backend=backend, public_url=env["CRMSYNC_PUBLIC_URL"], **built)


def debounce(env: Mapping[str, str]) -> timedelta:
    """RUN-3: CRMSYNC_DEBOUNCE_SECONDS, or the default; a value that is no whole number
    of seconds from 0 to 300 stops the function at start, saying so."""
    given = env.get("CRMSYNC_DEBOUNCE_SECONDS", "").strip()
    if not given:
        return DEBOUNCE
    if not given.isdigit() or int(given) > MAX_DEBOUNCE_SECONDS:
        raise ValueError(
            f"CRMSYNC_DEBOUNCE_SECONDS is {given!r}: give whole seconds from 0 to "
            f"{MAX_DEBOUNCE_SECONDS}"
        )
    return timedelta(seconds=int(given))


def attachment_store(env: Mapping[str, str]) -> Any:
    """EML-2: the bucket of mail attachments too large for the CRM, when one is set up:
    CRMSYNC_ATTACHMENTS_BUCKET, its store's CRMSYNC_ATTACHMENTS_ENDPOINT (Cloud Storage's
    by default) and CRMSYNC_ATTACHMENTS_REGION ("auto"), and an HMAC key of the
    account that may write it: CRMSYNC_ATTACHMENTS_ACCESS_KEY and the secret
    CRMSYNC_ATTACHMENTS_SECRET. None without a bucket."""
    if not env.get("CRMSYNC_ATTACHMENTS_BUCKET"):
        return None
    if not env.get("CRMSYNC_ATTACHMENTS_ACCESS_KEY"):
        raise ValueError("set CRMSYNC_ATTACHMENTS_ACCESS_KEY, the access id of the bucket's key")
    from crmsync.objectstore import Bucket, ObjectStore

    bucket = Bucket(
        env.get("CRMSYNC_ATTACHMENTS_ENDPOINT") or "https://storage.googleapis.com",
        env["CRMSYNC_ATTACHMENTS_BUCKET"],
        env.get("CRMSYNC_ATTACHMENTS_REGION") or "auto",
        env["CRMSYNC_ATTACHMENTS_ACCESS_KEY"],
        env["CRMSYNC_ATTACHMENTS_SECRET"],
    )
    return ObjectStore(bucket)


def provider_setups(env: Mapping[str, str]) -> dict[str, Any]:
    """Each provider kit's setup from the environment (crmsync's OAuth client there),
    for the providers this deployment has one for."""
    from crmsync import providers

    found = {name: providers.kit(name).setup(env) for name in providers.names()}
    return {name: setup for name, setup in found.items() if setup is not None}


# -- the handlers --------------------------------------------------------------------------
def _guarded(handler: Handler, *, pages: bool = False) -> Handler:
    """Refusals become their 4xx; a dependency that is down a 503 (retried by the
    caller); anything else is a defect: one JSON log line with the request's reference
    and the error's type, and a 500 (which Cloud Tasks and Pub/Sub retry). People
    (`pages`, or a browser that asks for HTML) get a page saying what happened and what
    to do next, never JSON."""
    name = handler.__name__

    def run(request: Any) -> Answer:
        started = time.monotonic()
        reference = secrets.token_hex(8)
        serving = _serving.set(name)
        person = pages or wants_page(request)
        try:
            answer = handler(request)
        except service.Refused as refused:
            answer = _refusal(refused, person, name)
        except TransientError as exc:
            log.warning(
                "dependency unavailable", extra={"handler": name, "error": type(exc).__name__}
            )
            unavailable = service.Refused(503, "temporarily unavailable; try again in a minute")
            answer = _refusal(unavailable, person, name)
        except Exception as exc:
            log.error(
                "unhandled error",
                extra={
                    "handler": name,
                    "request": reference,
                    "error": type(exc).__name__,
                    "where": _where(exc),
                },
            )
            answer = _failure(reference, person)
        finally:
            _serving.reset(serving)
        if "Content-Security-Policy" not in answer[2]:
            answer = answer[0], answer[1], {**answer[2], **UNFRAMED}
        log.info(
            "request",
            extra={
                "handler": name,
                "request": reference,
                "status": answer[1],
                "ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        return answer

    run.__name__ = name
    return run


def _page(handler: Handler) -> Handler:
    """`_guarded` for the functions people open in a browser."""
    return _guarded(handler, pages=True)


def wants_page(request: Any) -> bool:
    """Whether the request comes from a browser: it asks for HTML before JSON. Machines
    (Cloud Tasks, Pub/Sub, the providers' push, curl, API clients) ask for JSON or
    anything (`*/*`), or say nothing."""
    accept = request.accept_mimetypes
    return bool(accept) and accept.best_match(("application/json", "text/html")) == "text/html"


def _refusal(refused: service.Refused, person: bool, function: str) -> Answer:
    """The refusal as the error shape, or as a page for a person: its next step says
    what to do about the onboarding link, or, at an address meant for machines, what
    the address is for."""
    headers = refused.headers
    if not person:
        return _json({"error": refused.reason}, refused.status, headers)
    if refused.page is not None:
        template, values = refused.page
        return web.render(template, **values), refused.status, {**_HTML, **headers}
    reason = refused.reason[:1].upper() + refused.reason[1:] + "."
    next_step = refused.next_step or _FOR_BROWSERS.get(function, "")
    home = services().url("app") if function == "app" else ""  # the app's pages lead back
    page = web.problem(refused.status, reason, next_step, home=home)
    return page, refused.status, {**_HTML, **headers}


# What a person who opened a machine's address in a browser reads as the next step.
_ELSEWHERE = (
    " There is nothing to open here in a browser: users connect their accounts with the "
    "onboarding link their admin sends them."
)
_FOR_BROWSERS = {
    "google_webhook": "This address is where Google Calendar posts its push "
    "notifications to crmsync." + _ELSEWHERE,
    "graph_webhook": "This address is where Microsoft Graph posts its change "
    "notifications to crmsync." + _ELSEWHERE,
    "addon": "This address is where the mail clients' crmsync add-ons ask what to show "
    "beside the open message: open a message in Gmail, or crmsync's pane in Outlook, to "
    "see the CRM beside it." + _ELSEWHERE,
    "crm_events": "This address is where your CRM posts its signed change events to "
    "crmsync." + _ELSEWHERE,
    "gmail_push": "This address is where Pub/Sub pushes Gmail's mailbox notifications "
    "to crmsync." + _ELSEWHERE,
    "scheduler_fanout": "This address is what Cloud Scheduler calls every minute to "
    "start the connections' syncs." + _ELSEWHERE,
    "sync_worker": "This address is where Cloud Tasks runs each connection's sync." + _ELSEWHERE,
    "app": "Go to crmsync's home page and try again.",
    "admin": "This address is crmsync's admin API: call it with your tenant's admin "
    "token, e.g. curl -H 'Authorization: Bearer <admin token>' <this address>/status.",
}


def _failure(reference: str, pages: bool) -> Answer:
    if not pages:
        reason = (
            "crmsync could not finish this request; try again, and if it keeps "
            f"happening, give your operator the reference {reference}"
        )
        return _json({"error": reason, "reference": reference}, 500)
    page = web.render(
        "problem.html",
        status=500,
        happened="crmsync could not finish this request.",
        next_step="Try again in a few minutes. If it keeps happening, give your admin "
        "this reference.",
        reference=reference,
    )
    return page, 500, _HTML


def _where(exc: BaseException) -> str:
    """file:line of the innermost frame of crmsync that raised (no values, no message)."""
    found = ""
    trace = exc.__traceback__
    while trace is not None:
        code = trace.tb_frame.f_code
        if "crmsync" in code.co_filename:
            found = f"{code.co_filename.rsplit('crmsync', 1)[-1]}:{trace.tb_lineno}"
        trace = trace.tb_next
    return found


def _body(request: Any, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused past `limit` bytes as they are read, whatever the
    transfer encoding (a chunked body declares no length)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise service.Refused(413, f"the body is larger than {limit} bytes")
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise service.Refused(413, f"the body is larger than {limit} bytes")


@_page
def oauth_start(request: Any) -> Answer:
    """GET with an onboarding link: a page to pick the services (and, on a new link, to
    switch accounts); with `provider` and `services` chosen, a redirect to the
    provider's consent screen (AUTH-1)."""
    _allow(request, READ, "an onboarding link is opened in a browser (GET)")
    if request.args.get("admin") is not None:  # an organisation-wide consent link
        url = service.start_admin_consent(services(), request.args.get("admin"))
        return "", 302, {"Location": url}
    link = request.args.get("link")
    provider = request.args.get("provider")
    wanted = tuple(s for given in request.args.getlist("services") for s in given.split(",") if s)
    if not provider:
        choice = service.connect_choice(services(), link)  # a bad link: refused, no page
        return _connect_page(link or "", choice), 200, _HTML
    switch = request.args.get("switch", "") not in ("", "0")
    preview = request.args.get("preview", "") not in ("", "0")  # BEY-3
    url = service.start_oauth(services(), link, provider, wanted, switch=switch, preview=preview)
    return "", 302, {"Location": url}


@_page
def oauth_callback(request: Any) -> Answer:
    """Where the provider sends the user back: the connection is made, and the user sees
    the connected account (AUTH-1); or, after an organisation-wide consent, the admin
    sees that their organisation approved crmsync. The answer comes in the query (GET),
    or as a form the provider's page POSTs (response_mode=form_post, which keeps the
    code out of the URL, and so out of the browser's history and any Referer)."""
    from crmsync.app.signin import is_sign_in

    answer = _callback_answer(request)
    if is_sign_in(answer.get("state")):
        return _signed_in(request, answer)
    if service.is_admin_consent(answer.get("state")):
        approved = service.finish_admin_consent(services(), answer.get("state"), answer)
        page = web.render("approved.html", label=approved["label"])
        return page, 200, _HTML
    if answer.get("error"):
        raise _declined(answer["error"])
    record = service.finish_oauth(services(), answer.get("state"), answer.get("code"))
    page = web.render(
        "connected.html",
        account=str(record.get("account") or "Your account"),
        services=[_SERVICE_NAMES.get(s, s) for s in record.get("services", [])],
        switched=record.get("switched", ""),
        preview=services().url("app") + f"/me/preview/{record['id']}"
        if record.get("preview_first")
        else "",
    )
    return page, 200, _HTML


def _signed_in(request: Any, answer: Mapping[str, str]) -> Answer:
    """A web-app sign-in came back: the session cookie set, on to the app."""
    from crmsync.app import sessions, signin

    if answer.get("error"):
        raise service.Refused(
            400, "the sign-in was not finished", "Go back to the sign-in page and try again."
        )
    done = signin.finish_sign_in(
        services(),
        answer.get("state"),
        answer.get("code"),
        request.cookies.get(sessions.SIGN_IN_COOKIE, ""),
    )
    path = sessions.function_path(services(), "app")
    name, value = sessions.cookie(
        services(), sessions.COOKIE, done.cookie, path, int(sessions.TTL.total_seconds())
    )
    location = services().url("app") + (done.then or "/")
    return "", 303, {"Location": location, name: value}


def _callback_answer(request: Any) -> Mapping[str, str]:
    """The provider's answer (code and state, or error): the query, or a posted form."""
    _allow(request, (*READ, *POST), "the sign-in answer comes back as a GET or a form POST")
    if request.method in READ:
        return dict(request.args.items())
    if request.mimetype != "application/x-www-form-urlencoded":
        raise service.Refused(415, "the sign-in answer is not a form")
    return dict(parse_qsl(_body(request, MAX_FORM).decode("utf-8", "replace")))


@_guarded
def google_webhook(request: Any) -> Answer:
    """Calendar push notifications (RUN-3): the channel token authenticates the sender."""
    return _push(request, "google")


@_guarded
def graph_webhook(request: Any) -> Answer:
    """Microsoft Graph change notifications and lifecycle notifications (RUN-1, RUN-3),
    and the validation handshake of a subscription being made: each notification's
    client state authenticates it."""
    return _push(request, "microsoft")


def _push(request: Any, provider: str) -> Answer:
    """A provider's push notification, whole, to the provider's kit; its answer as
    plain text where the provider expects one, else as JSON."""
    _allow(request, POST, "notifications are POSTed to this address")
    return _kit_answer(service.provider_push(services(), provider, _whole(request)), _TEXT)


def _whole(request: Any, path: str = "") -> PushRequest:
    """A request as a provider's kit reads it: headers, query and body (and its method,
    and its path below the kit's own address)."""
    body = _body(request, MAX_PUSH_BODY) if request.method == "POST" else b""
    return PushRequest(dict(request.headers), request.args.to_dict(), body, request.method, path)


def _kit_answer(answer: PushAnswer, kind: Mapping[str, str]) -> Answer:
    """A kit's answer: its body as `kind` (or as the type it names) where it gave one,
    else its reason as JSON."""
    if answer.text is not None:
        if answer.content_type:
            kind = {"Content-Type": answer.content_type, "X-Content-Type-Options": "nosniff"}
        return answer.text, answer.status, {**kind, **(FRAMED if answer.framed else {})}
    return _json({"error" if answer.status >= 400 else "result": answer.reason}, answer.status)


@_guarded
def addon(request: Any) -> Answer:
    """The mail client's pane (CTX-1): at /<provider>, what that provider's mail-client
    add-on asks (Gmail POSTs its event objects, Outlook's task pane its actions), checked
    and answered by the provider's kit; a kit whose pane is a page of crmsync's serves
    it (and its manifest) to GET."""
    provider, _, rest = request.path.strip("/").partition("/")
    allowed = (*READ, *POST) if service.pane_has_pages(services(), provider) else POST
    _allow(request, allowed, "the mail client's add-on POSTs its events to this address")
    asked = _whole(request, "/" + rest if rest else "")
    if request.method != "POST":
        return _kit_answer(service.pane_page(services(), provider, asked), _HTML)
    return _kit_answer(service.pane_request(services(), provider, asked), _JSON)


@_guarded
def crm_events(request: Any) -> Answer:
    """CRM change events (RUN-3), signed with the tenant's event secret: POSTed directly,
    or delivered by a Pub/Sub push subscription (the event is the message data and the
    signature its `signature` attribute)."""
    _allow(request, POST, "CRM change events are POSTed to this address")
    body = _body(request)
    signature = request.headers.get("Crmsync-Signature")
    accepted = 202
    if request.headers.get("Content-Type", "").startswith("application/json") and not signature:
        accepted = 200  # Pub/Sub's emulator acknowledges a push only with 200
        envelope = _json_body(body)
        body = _pubsub_data(envelope, "expected a signed event or a Pub/Sub push envelope")
        attributes = envelope["message"].get("attributes") or {}
        if not isinstance(attributes, dict):
            raise service.Refused(400, "the Pub/Sub message's attributes are not an object")
        signature = attributes.get("signature")
        if signature is not None and not isinstance(signature, str):
            raise service.Refused(400, "the signature attribute is not a string")
    enqueued = service.crm_event(services(), signature, body)
    return _json({"enqueued": enqueued}, accepted)


@_guarded
def gmail_push(request: Any) -> Answer:
    """Gmail's mailbox notifications, delivered by the gmail-notifications Pub/Sub push
    subscription (OIDC, invoker-restricted). 200 acknowledges, also for a mailbox
    crmsync does not know; a 400 names what is wrong with a message that is not a
    notification (Pub/Sub gives up on it after its retries: dead letter)."""
    _allow(request, POST, "Gmail's notifications are POSTed to this address by Pub/Sub")
    data = _pubsub_data(_json_body(_body(request)))
    enqueued = service.mail_notification(services(), "google", data)
    return _json({"enqueued": enqueued}, 200)


@_guarded
def scheduler_fanout(request: Any) -> Answer:
    """Called by Cloud Scheduler (OIDC, invoker-restricted) every minute (RUN-2)."""
    _allow(request, POST, "the fan-out is POSTed by Cloud Scheduler")
    report = service.fanout(services())
    return _json(vars(report), 200)


@_guarded
def sync_worker(request: Any) -> Answer:
    """One cycle, as a Cloud Tasks task asks (OIDC, invoker-restricted): the payload is
    ids only. 200 ends the task whatever the cycle's outcome (it is in the run record);
    a 5xx asks Cloud Tasks to try again."""
    _allow(request, POST, "tasks are POSTed by Cloud Tasks")
    payload = _json_body(_body(request))
    if not isinstance(payload, dict):
        raise service.Refused(400, "expected a JSON object")
    tenant, connection = payload.get("tenant"), payload.get("connection")
    trigger = payload.get("trigger", "schedule")
    if not all(isinstance(v, str) and service.safe_id(v) for v in (tenant, connection, trigger)):
        raise service.Refused(400, "tenant, connection and trigger are ids")
    run = service.work(services(), str(tenant), str(connection), str(trigger))
    return _json({"status": run.get("status"), "run": run.get("id")}, 200)


@_guarded
def app(request: Any) -> Answer:
    """The web app and its JSON API (/api/...): users and tenant admins, signed in with
    the identity they have at their provider (`crmsync.app`)."""
    from crmsync import app as web_app

    return web_app.serve(services(), request)


# The admin API's routes: path (a trailing "/" takes a connection id) → the methods it
# answers, and what a 405 says.
ADMIN_ROUTES: dict[str, tuple[tuple[str, ...], str]] = {
    "/": (READ, "the admin API's root is read with GET"),
    "/health": (READ, "/health is read with GET"),
    "/status": (READ, "/status is read with GET"),
    "/sync/": (POST, "/sync/<connection> is POSTed"),
    "/disconnect/": (POST, "/disconnect/<connection> is POSTed"),
}
_ADMIN_PATHS = "GET /health, GET /status, POST /sync/<connection>, POST /disconnect/<connection>"


@_guarded
def admin(request: Any) -> Answer:
    """GET /health: alive. GET /status: the tenant's connections (admin token).
    POST /sync/<connection>: sync now (RUN-3). POST /disconnect/<connection>: AUTH-4.
    A browser at / or /health gets a page saying what the admin API is and how to call
    it. The route and its method are checked before the token: a wrong method is 405
    and an unknown path 404 whoever asks."""
    route, connection = _admin_route(request.path)
    if route is None:
        raise service.Refused(404, f"the admin API has no such path; it answers {_ADMIN_PATHS}")
    _allow(request, *ADMIN_ROUTES[route])
    if route in ("/", "/health"):
        if wants_page(request):
            return _admin_page(), 200, _HTML
        return _json({"ok": True}, 200)
    tenant = service.admin_tenant(services(), request.headers.get("Authorization"))
    if route == "/status":
        return _json(service.admin_status(services(), tenant), 200)
    if not service.safe_id(connection):
        raise service.Refused(404, "no such connection")
    if route == "/sync/":
        return _json({"enqueued": service.sync_now(services(), tenant, connection)}, 202)
    problems = service.disconnect(services(), tenant, connection)
    return _json({"disconnected": True, "problems": problems}, 200)


def _admin_route(path: str) -> tuple[str | None, str]:
    """The admin route `path` is, and the connection id it names (or "")."""
    path = path.rstrip("/") or "/"
    if path in ADMIN_ROUTES:
        return path, ""
    for route in ADMIN_ROUTES:
        if route.endswith("/") and route != "/" and path.startswith(route):
            return route, path.removeprefix(route)
    return None, ""


def _admin_page() -> str:
    root = services().url("admin")
    return web.render("admin.html", root=root)


# -- helpers ------------------------------------------------------------------------------
def _json(body: Any, status: int, headers: Mapping[str, str] | None = None) -> Answer:
    return json.dumps(body, default=str), status, {**_JSON, **(headers or {})}


def _allow(request: Any, methods: tuple[str, ...], reason: str) -> None:
    """Refuse a method the route does not answer: 405 with `Allow` naming the methods it
    does (RFC 9110, 15.5.6)."""
    if request.method not in methods:
        raise service.Refused(405, reason, headers={"Allow": ", ".join(methods)})


# What the provider's `error` says happened when the user came back without a code
# (RFC 6749, 4.1.2.1); Microsoft's identity platform sends the same codes.
_DECLINED = {
    "access_denied": (
        "consent was not given, so nothing was connected",
        "To connect, open your onboarding link again and allow access.",
    ),
    "temporarily_unavailable": (
        "the sign-in service was busy and did not finish, so nothing was connected",
        "Open your onboarding link again in a few minutes.",
    ),
    "server_error": (
        "the sign-in service failed to finish, so nothing was connected",
        "Open your onboarding link again in a few minutes.",
    ),
}


def _declined(error: str) -> service.Refused:
    """The page of a user who came back from the provider without a code."""
    reason, next_step = _DECLINED.get(
        error,
        (
            "the sign-in did not finish, so nothing was connected",
            "Open your onboarding link again. If it keeps happening, tell your admin "
            "what this page says.",
        ),
    )
    return service.Refused(400, reason, next_step)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise service.Refused(400, "the body is not valid JSON") from exc


def _pubsub_data(envelope: Any, shape: str = "expected a Pub/Sub push envelope") -> bytes:
    """The decoded data of a Pub/Sub push envelope `{"message": {"data": <base64>}}`."""
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise service.Refused(400, shape)
    try:
        return base64.b64decode(message["data"], validate=True)
    except ValueError as exc:
        raise service.Refused(400, "the Pub/Sub message data is not base64") from exc


_SERVICE_NAMES = {"sync": "your contacts, calendar and tasks", "mail": "the e-mails you tag"}
_SERVICE_CHOICES = {
    "sync": "Contacts, calendar and tasks",
    "mail": "Record the e-mails you tag in the CRM",
}


def _connect_page(link: str, choice: service.ConnectChoice) -> str:
    from crmsync import providers

    return web.render(
        "connect.html",
        link=link,
        providers=[{"id": p, "label": providers.kit(p).label} for p in choice.providers],
        services=[{"id": s, "label": _SERVICE_CHOICES[s]} for s in choice.services],
        bound=choice.bound,
        status=choice.status,
        status_text=choice.status.replace("_", " "),
        may_switch=choice.may_switch,
    )
