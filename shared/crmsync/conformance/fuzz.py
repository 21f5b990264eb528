"""Schema-driven fuzzing of an implementation with schemathesis: for every operation
of the contract, generated valid requests must be answered as the contract documents
(status, content type, body schema) and never with a server error, and generated
invalid requests must be refused with a 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crmsync.conformance import Outcome, Target

CONTRACT = Path(__file__).with_name("crm-contract.yaml")


def fuzz(
    target: Target, user: str, examples: int = 20, contract: Path = CONTRACT
) -> Iterator[Outcome]:
    """One outcome per operation and generation mode."""
    try:
        import schemathesis
        from schemathesis import GenerationMode
        from schemathesis.checks import (
            content_type_conformance,
            negative_data_rejection,
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
        )
    except ImportError:
        yield Outcome(
            "fuzz", False, "schemathesis is not installed: pip install 'crmsync[conformance]'"
        )
        return
    schema = schemathesis.openapi.from_path(contract)
    headers = {"Authorization": f"Bearer {target.token}", "X-Crm-User": user}
    modes = {
        GenerationMode.POSITIVE: [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        GenerationMode.NEGATIVE: [not_a_server_error, negative_data_rejection],
    }
    from schemathesis.core.result import Err

    for result in schema.get_all_operations():
        if isinstance(result, Err):
            yield Outcome("fuzz", False, f"the contract does not load: {result.err()}")
            continue
        operation = result.ok()
        for mode, checks in modes.items():
            name = f"fuzz {operation.label} ({mode.value})"
            try:
                sent = _exercise(operation, mode, checks, target, headers, examples)
            except Exception as exc:
                detail = " ".join(str(exc).split())[:300]
                yield Outcome(name, False, detail or type(exc).__name__)
            else:
                note = f"{examples} generated requests" if sent else "nothing to make invalid"
                yield Outcome(name, True, note)


def _exercise(
    operation: Any,
    mode: Any,
    checks: list[Any],
    target: Target,
    headers: dict[str, str],
    examples: int,
) -> bool:
    """Send `examples` generated requests for one operation; raises on the first one
    whose answer breaks a check. False when no request of this mode can be made."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode, headers=dict(headers)))
    def run(case: Any) -> None:
        case.call_and_validate(
            base_url=target.base_url, headers=dict(headers), checks=checks, timeout=target.timeout
        )

    try:
        run()
    except Unsatisfiable:
        return False
    return True
