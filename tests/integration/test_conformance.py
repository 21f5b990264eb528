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

import pytest

from crmsync.cli import main
from crmsync.conformance import CHECKS, Kit, Target
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
