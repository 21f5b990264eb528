"""The conformance kit against the reference CRM: the reference passes every check and
the fuzzing, and the kit catches an implementation that breaks a rule (BEY-6)."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest

from crmsync.cli import main
from crmsync.conformance import CHECKS, Kit, Outcome, Target
from sandbox.crm.api import PREFIX
from sandbox.crm.app import ReferenceCrm
from sandbox.crm.database import CrmDatabase
from sandbox.crm.server import serve

pytestmark = pytest.mark.integration

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def reference_crm() -> ReferenceCrm:
    crm = ReferenceCrm(CrmDatabase(":memory:"))
    crm.add_tenant("vendor", "token-vendor")
    crm.add_token("vendor", "token-old", expires_at=datetime.now(UTC) - timedelta(days=1))
    crm.add_tenant("other", "token-other")
    for tenant in ("vendor", "other"):
        crm.add_user(tenant, "rep", name="Dana Rep", email="dana@crm.example")
    crm.set_field_limit("vendor", "todo", "subject", 80)
    crm.declare_custom_field("vendor", "todo", "ticket", "number")
    crm.declare_custom_field("vendor", "todo", "channel", "enum", values=("phone", "mail"))
    crm.add_document("vendor", "Conformance sample.txt", b"a document to attach\n", "text/plain")
    return crm


@pytest.fixture
def served() -> Iterator[str]:
    base_url, stop = serve(reference_crm())
    yield base_url
    stop()


def target(base_url: str) -> Target:
    return Target(
        base_url=base_url,
        token="token-vendor",
        other_token="token-other",
        expired_token="token-old",
    )


def test_BEY6_reference_crm_passes_every_behavioural_check(served: str) -> None:
    outcomes = list(Kit(target(served)).run(CHECKS))

    failed = [(o.check, o.detail) for o in outcomes if not o.passed]
    assert failed == []
    assert len(outcomes) == len(CHECKS)


def test_BEY6_reference_crm_passes_the_command_with_fuzzing(served: str) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "conformance",
                "--base-url",
                served,
                "--token",
                "token-vendor",
                "--other-token",
                "token-other",
                "--expired-token",
                "token-old",
                "--examples",
                "10",
            ]
        )

    report = out.getvalue()
    assert code == 0, report
    assert "FAIL" not in report
    assert "fuzz POST /records/{kind} (positive)" in report


def test_BEY6_checks_that_were_not_shown_fail_rather_than_pass(served: str) -> None:
    outcomes = {o.check: o for o in Kit(Target(served, "token-vendor")).run(CHECKS)}

    assert not outcomes["tenant isolation"].passed
    assert "--other-token" in outcomes["tenant isolation"].detail
    assert not outcomes["tokens rejected"].passed


def _forgetful(app: WsgiApp) -> WsgiApp:
    """An implementation that ignores Idempotency-Key: every retry creates again."""
    fresh = itertools.count()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "POST":
            environ = {**environ, "HTTP_IDEMPOTENCY_KEY": f"forgotten-{next(fresh)}"}
        return app(environ, start_response)

    return wrapped


def test_BEY6_kit_fails_an_implementation_that_ignores_idempotency_keys() -> None:
    crm = reference_crm()
    base_url, stop = serve(crm, wrap=_forgetful)
    try:
        outcomes = {o.check: o for o in Kit(target(base_url)).run(CHECKS)}
    finally:
        stop()

    assert not outcomes["idempotent create"].passed
    assert outcomes["stale version refused"].passed


def _custom_blind(app: WsgiApp) -> WsgiApp:
    """An implementation that drops every custom value a request body carries."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            body = json.loads(environ["wsgi.input"].read(length))
            if isinstance(body, dict) and isinstance(body.get("fields"), dict):
                body["fields"].pop("custom", None)
            data = json.dumps(body).encode()
            environ = {**environ, "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data))}
        return app(environ, start_response)

    return wrapped


def test_SYN1_kit_checks_that_a_declared_custom_field_round_trips(served: str) -> None:
    outcomes = {o.check: o for o in Kit(target(served)).run(CHECKS)}

    assert outcomes["custom fields declared and checked"].passed
    assert "todo.custom.ticket round-trips" in outcomes["custom fields declared and checked"].detail


def test_SYN1_kit_fails_an_implementation_that_drops_custom_values() -> None:
    base_url, stop = serve(reference_crm(), wrap=_custom_blind)
    try:
        outcomes = {o.check: o for o in Kit(target(base_url)).run(CHECKS)}
    finally:
        stop()

    custom = outcomes["custom fields declared and checked"]
    assert not custom.passed
    assert "expected 422" in custom.detail
    assert outcomes["idempotent create"].passed


def _history_forgetful(app: WsgiApp) -> WsgiApp:
    """An implementation that ignores Idempotency-Key on POST /history only: a retried
    message is recorded again, while record creates stay idempotent."""
    fresh = itertools.count()

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "POST" and environ["PATH_INFO"].endswith("/history"):
            environ = {**environ, "HTTP_IDEMPOTENCY_KEY": f"forgotten-{next(fresh)}"}
        return app(environ, start_response)

    return wrapped


def test_EML4_kit_fails_an_implementation_that_records_a_message_twice_for_one_key() -> None:
    base_url, stop = serve(reference_crm(), wrap=_history_forgetful)
    try:
        outcomes = {o.check: o for o in Kit(target(base_url)).run(CHECKS)}
    finally:
        stop()

    once = outcomes["history recorded once per key"]
    assert not once.passed
    assert "expected 200" in once.detail
    assert outcomes["idempotent create"].passed
    assert outcomes["people found by e-mail"].passed


def test_EML2_EML4_reference_crm_passes_the_email_checks(served: str) -> None:
    outcomes = {o.check: o for o in Kit(target(served)).run(CHECKS)}

    for name in (
        "people found by e-mail",
        "history recorded once per key",
        "history on an unknown record refused",
        "history limits honoured",
    ):
        assert outcomes[name].passed, outcomes[name].detail
    assert "65536" in outcomes["history limits honoured"].detail


def _declares_less(app: WsgiApp) -> WsgiApp:
    """An implementation whose /schema declares a shorter history body than it refuses:
    it keeps bodies longer than it says it does."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ["PATH_INFO"].endswith("/schema"):
            return app(environ, start_response)
        answered: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            answered.update(status=status, headers=headers)
            return lambda data: None

        schema = json.loads(b"".join(app(environ, capture)))
        schema["limits"]["history"]["body"] = 100
        data = json.dumps(schema).encode()
        headers = [(k, v) for k, v in answered["headers"] if k.lower() != "content-length"]
        start_response(answered["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]

    return wrapped


def test_EML2_kit_fails_an_implementation_that_keeps_bodies_longer_than_it_declares() -> None:
    base_url, stop = serve(reference_crm(), wrap=_declares_less)
    try:
        outcomes = {o.check: o for o in Kit(target(base_url)).run(CHECKS)}
    finally:
        stop()

    limits = outcomes["history limits honoured"]
    assert not limits.passed
    assert "expected 413" in limits.detail
    assert outcomes["history recorded once per key"].passed


# -- people search (EML-5) ---------------------------------------------------------------------
People = list[dict[str, Any]]


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))


def _searches(environ: dict[str, Any]) -> bool:
    return bool(environ["PATH_INFO"].endswith("/people") and "q" in _query(environ))


def _search_answer(change: Callable[[str, People], People]) -> Callable[[WsgiApp], WsgiApp]:
    """An implementation whose search answers list `change(q, people)` of the people the
    reference CRM lists."""

    def wrap(app: WsgiApp) -> WsgiApp:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if not _searches(environ):
                return app(environ, start_response)
            answered: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
                answered.update(status=status, headers=headers)
                return lambda data: None

            body = json.loads(b"".join(app(environ, capture)))
            if isinstance(body.get("items"), list):
                body["items"] = change(_query(environ)["q"], body["items"])
            data = json.dumps(body).encode()
            headers = [(k, v) for k, v in answered["headers"] if k.lower() != "content-length"]
            start_response(answered["status"], [*headers, ("Content-Length", str(len(data)))])
            return [data]

        return wrapped

    return wrap


def _search_query(
    change: Callable[[dict[str, str]], dict[str, str]],
) -> Callable[[WsgiApp], WsgiApp]:
    """An implementation that answers a search as the reference CRM answers the query
    `change(query)`."""

    def wrap(app: WsgiApp) -> WsgiApp:
        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if _searches(environ):
                environ = {**environ, "QUERY_STRING": urlencode(change(_query(environ)))}
            return app(environ, start_response)

        return wrapped

    return wrap


def _case_sensitive(text: str, people: People) -> People:
    return [p for p in people if any(text in held for held in (p["name"], *p["emails"]))]


def _names_only(text: str, people: People) -> People:
    return [p for p in people if text.casefold() in p["name"].casefold()]


def _addresses_only(text: str, people: People) -> People:
    return [p for p in people if any(text.casefold() in e for e in p["emails"])]


def _run(wrap: Callable[[WsgiApp], WsgiApp], *names: str) -> dict[str, Outcome]:
    """The outcomes of the named checks against the reference CRM behind `wrap`."""
    base_url, stop = serve(reference_crm(), wrap=wrap)
    try:
        chosen = [(name, check) for name, check in CHECKS if name in names]
        assert len(chosen) == len(names)
        return {o.check: o for o in Kit(target(base_url)).run(chosen)}
    finally:
        stop()


def test_EML5_reference_crm_passes_the_people_search_checks(served: str) -> None:
    outcomes = {o.check: o for o in Kit(target(served)).run(CHECKS)}

    for name in (
        "people found by a text",
        "people search ordered and limited",
        "people search sees only its own",
        "people search refuses bad queries",
    ):
        assert outcomes[name].passed, outcomes[name].detail
    assert "5 kinds of bad query" in outcomes["people search refuses bad queries"].detail


@pytest.mark.parametrize(
    ("narrower", "missed"),
    [(_case_sensitive, "name"), (_addresses_only, "name"), (_names_only, "address")],
    ids=["case-sensitive", "addresses-only", "names-only"],
)
def test_EML5_kit_fails_an_implementation_that_searches_too_narrowly(
    narrower: Callable[[str, People], People], missed: str
) -> None:
    outcomes = _run(_search_answer(narrower), "people found by a text", "people found by e-mail")

    found = outcomes["people found by a text"]
    assert not found.passed
    assert f"for a part of its {missed} in another case" in found.detail
    assert outcomes["people found by e-mail"].passed


def test_EML5_kit_fails_an_implementation_that_lists_people_who_do_not_hold_the_text() -> None:
    everyone = _search_query(lambda query: {**query, "q": "conformance"})

    outcomes = _run(everyone, "people found by a text")

    found = outcomes["people found by a text"]
    assert not found.passed
    assert "do not hold the text" in found.detail


def test_EML5_kit_fails_an_implementation_that_ignores_limit() -> None:
    unlimited = _search_query(lambda query: {k: v for k, v in query.items() if k != "limit"})

    outcomes = _run(unlimited, "people search ordered and limited", "people found by a text")

    ordered = outcomes["people search ordered and limited"]
    assert not ordered.passed
    assert "more than limit 2" in ordered.detail
    assert outcomes["people found by a text"].passed


def test_EML5_kit_fails_an_implementation_that_lists_people_by_name_not_by_history() -> None:
    by_name = _search_answer(lambda text, people: sorted(people, key=lambda p: p["name"]))

    outcomes = _run(by_name, "people search ordered and limited", "people found by a text")

    ordered = outcomes["people search ordered and limited"]
    assert not ordered.passed
    assert "expected most history first" in ordered.detail
    assert outcomes["people found by a text"].passed


def _search_across_tenants(app: WsgiApp) -> WsgiApp:
    """An implementation whose search forgets whose token asks: another tenant's search
    answers with this tenant's people."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if _searches(environ) and environ.get("HTTP_AUTHORIZATION") == "Bearer token-other":
            environ = {**environ, "HTTP_AUTHORIZATION": "Bearer token-vendor"}
        return app(environ, start_response)

    return wrapped


def test_EML5_kit_fails_an_implementation_whose_search_crosses_tenants() -> None:
    outcomes = _run(_search_across_tenants, "people search sees only its own", "tenant isolation")

    own = outcomes["people search sees only its own"]
    assert not own.passed
    assert "another tenant's search finds this tenant's contact" in own.detail
    assert outcomes["tenant isolation"].passed


def _search_cached(app: WsgiApp) -> WsgiApp:
    """An implementation that answers a search it was asked before from a cache that
    deletes do not clear."""
    cache: dict[tuple[str, str], tuple[str, list[tuple[str, str]], bytes]] = {}

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not _searches(environ):
            return app(environ, start_response)
        key = (environ.get("HTTP_AUTHORIZATION", ""), environ.get("QUERY_STRING", ""))
        if key not in cache:
            answered: dict[str, Any] = {}

            def capture(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
                answered.update(status=status, headers=headers)
                return lambda data: None

            data = b"".join(app(environ, capture))
            cache[key] = (answered["status"], answered["headers"], data)
        status, headers, data = cache[key]
        start_response(status, headers)
        return [data]

    return wrapped


def test_EML5_kit_fails_an_implementation_that_still_finds_a_deleted_contact() -> None:
    outcomes = _run(_search_cached, "people search sees only its own", "people found by a text")

    own = outcomes["people search sees only its own"]
    assert not own.passed
    assert "still finds a deleted contact" in own.detail
    assert outcomes["people found by a text"].passed


def test_EML5_search_isolation_not_shown_fails_rather_than_passes(served: str) -> None:
    outcomes = {o.check: o for o in Kit(Target(served, "token-vendor")).run(CHECKS)}

    own = outcomes["people search sees only its own"]
    assert not own.passed
    assert "--other-token" in own.detail
    assert outcomes["people found by a text"].passed


def _lenient_people(app: WsgiApp) -> WsgiApp:
    """An implementation that takes both `email` and `q` and searches by `q`."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = _query(environ)
        if environ["PATH_INFO"].endswith("/people") and {"email", "q"} <= set(query):
            query.pop("email")
            environ = {**environ, "QUERY_STRING": urlencode(query)}
        return app(environ, start_response)

    return wrapped


def _nobody_for_nothing(app: WsgiApp) -> WsgiApp:
    """An implementation that answers GET /people with neither `email` nor `q` with an
    empty list instead of 400."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"].endswith("/people") and not {"email", "q"} & set(_query(environ)):
            data = b'{"items": []}'
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            )
            return [data]
        return app(environ, start_response)

    return wrapped


@pytest.mark.parametrize(
    ("lenient", "case"),
    [(_lenient_people, "both email and q"), (_nobody_for_nothing, "neither email nor q")],
    ids=["both", "neither"],
)
def test_EML5_kit_fails_an_implementation_that_takes_other_than_one_of_email_and_q(
    lenient: Callable[[WsgiApp], WsgiApp], case: str
) -> None:
    outcomes = _run(lenient, "people search refuses bad queries", "people found by e-mail")

    refuses = outcomes["people search refuses bad queries"]
    assert not refuses.passed
    assert refuses.detail.startswith(f"{case}: GET /people answered 200")
    assert outcomes["people found by e-mail"].passed


def _cardless(app: WsgiApp) -> WsgiApp:
    """An implementation from before the person's card: GET /people/{kind}/{id} is 404."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith(PREFIX + "/people/"):
            environ = {**environ, "PATH_INFO": PREFIX + "/no-such-path"}
        return app(environ, start_response)

    return wrapped


def test_CTX1_kit_fails_an_implementation_without_the_persons_card() -> None:
    crm = reference_crm()
    base_url, stop = serve(crm, wrap=_cardless)
    try:
        outcomes = {o.check: o for o in Kit(target(base_url)).run(CHECKS)}
    finally:
        stop()

    assert not outcomes["a person's card"].passed
    assert "/people/contact/" in outcomes["a person's card"].detail
    assert outcomes["people found by e-mail"].passed


def test_CTX1_kit_fails_a_tenant_without_a_document_to_find_and_says_what_to_put_there() -> None:
    crm = ReferenceCrm(CrmDatabase(":memory:"))
    crm.add_tenant("vendor", "token-vendor")
    crm.add_user("vendor", "rep", name="Dana Rep", email="dana@crm.example")
    base_url, stop = serve(crm)
    try:
        outcomes = {o.check: o for o in Kit(Target(base_url, "token-vendor")).run(CHECKS)}
    finally:
        stop()

    assert not outcomes["documents found and read"].passed
    assert (
        "put a document whose name holds 'conformance'"
        in outcomes["documents found and read"].detail
    )
