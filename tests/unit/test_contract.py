"""The CRM contract document (docs/crm-contract.yaml): a valid OpenAPI 3.1 document
whose record schemas carry exactly crmsync's canonical fields, and the CRM's custom
fields in `custom` (SYN-1), so the contract and the model cannot drift apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from crmsync.conformance.fuzz import CONTRACT
from crmsync.model import FIELD_NAMES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "crm-contract.yaml"


def load() -> dict[str, Any]:
    document = yaml.safe_load(DOCS.read_text())
    assert isinstance(document, dict)
    return document


def test_BEY6_contract_is_a_valid_openapi_31_document() -> None:
    document = load()

    validate(document)

    assert document["openapi"] == "3.1.0"


def test_BEY6_the_kit_fuzzes_the_published_contract() -> None:
    assert DOCS.resolve() == CONTRACT.resolve()


@pytest.mark.parametrize(
    ("kind", "schema"),
    [("contact", "ContactFields"), ("activity", "ActivityFields"), ("todo", "TodoFields")],
)
def test_SYN1_record_schemas_carry_exactly_the_canonical_fields(kind: str, schema: str) -> None:
    properties = load()["components"]["schemas"][schema]["properties"]

    assert sorted(properties) == sorted([*FIELD_NAMES[kind], "custom"])  # type: ignore[index]
    assert properties["custom"] == {"$ref": "#/components/schemas/CustomValues"}


def test_SYN1_the_schema_answer_declares_custom_fields_of_each_kind() -> None:
    schemas = load()["components"]["schemas"]
    declared = schemas["Schema"]["properties"]["custom_fields"]["properties"]
    field = schemas["CustomField"]

    assert sorted(declared) == ["activity", "contact", "todo"]
    assert field["required"] == ["name", "type"]
    assert field["properties"]["type"]["enum"] == ["string", "number", "boolean", "date", "enum"]


def test_AUTH5_every_record_operation_names_the_acting_user() -> None:
    paths = load()["paths"]
    acting = {"$ref": "#/components/parameters/ActingUser"}
    for path, item in paths.items():
        if path.startswith(("/schema", "/users")):
            continue
        shared = item.get("parameters", [])
        for method in ("get", "post", "patch", "put", "delete"):
            if method in item:
                parameters = shared + item[method].get("parameters", [])
                assert acting in parameters, f"{method.upper()} {path} lacks X-Crm-User"


def test_SYN4_every_create_takes_an_idempotency_key() -> None:
    paths = load()["paths"]
    key = {"$ref": "#/components/parameters/IdempotencyKey"}
    creates = [(p, item["post"]) for p, item in paths.items() if "post" in item]
    assert len(creates) >= 4
    for path, operation in creates:
        assert key in operation.get("parameters", []), f"POST {path} lacks Idempotency-Key"


def test_EML2_the_schema_answer_declares_what_a_history_item_keeps() -> None:
    schemas = load()["components"]["schemas"]
    declared = schemas["Schema"]["properties"]
    history = schemas["HistoryLimits"]

    assert declared["limits"]["properties"]["history"] == {
        "$ref": "#/components/schemas/HistoryLimits"
    }
    assert sorted(history["required"]) == ["body", "subject"]
    assert history["additionalProperties"] is False
    assert {history["properties"][n]["type"] for n in ("subject", "body")} == {"integer"}
    attachment_bytes = declared["capabilities"]["properties"]["attachment_bytes"]
    assert (attachment_bytes["type"], attachment_bytes["minimum"]) == ("integer", 0)


def test_EML2_history_items_carry_links_to_attachments_kept_elsewhere() -> None:
    schemas = load()["components"]["schemas"]
    link = schemas["HistoryLink"]
    sent = schemas["NewHistoryItem"]

    assert sent["properties"]["links"]["items"] == {"$ref": "#/components/schemas/HistoryLink"}
    assert "links" not in sent["required"]  # a message without large attachments has none
    assert link["additionalProperties"] is False
    assert sorted(link["required"]) == ["content_type", "filename", "size", "url"]
    assert link["properties"]["url"]["pattern"] == "^https?://"
    answered = schemas["HistoryItem"]
    assert "links" in answered["required"]
    assert answered["properties"]["links"]["type"] == "integer"
    too_large = load()["paths"]["/history"]["post"]["responses"]["413"]
    assert too_large == {"$ref": "#/components/responses/TooLarge"}


def test_EML5_people_are_found_by_an_address_or_a_text_with_a_limit() -> None:
    operation = load()["paths"]["/people"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}

    assert sorted(parameters) == ["email", "limit", "q"]
    assert not any(p["required"] for p in parameters.values())  # one of email and q: a 400
    assert parameters["q"]["schema"] == {"type": "string", "minLength": 2, "maxLength": 100}
    limit = parameters["limit"]["schema"]
    assert (limit["type"], limit["minimum"], limit["maximum"], limit["default"]) == (
        "integer",
        1,
        50,
        20,
    )
    assert operation["responses"]["400"] == {"$ref": "#/components/responses/BadRequest"}
    assert "exactly one of `email` and `q`" in operation["description"]
