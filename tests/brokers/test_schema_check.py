"""Parameter schemas are checked against their draft's metaschema by a compiled validator (fastjsonschema), with
jsonschema deciding whatever it does not find valid: same verdicts and messages as jsonschema alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import exceptions, validators

from brokers import catalog

DRAFTS = ["http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-06/schema#",
          "http://json-schema.org/draft-07/schema#"]
VALID = [
    {"type": "object", "properties": {"public": {"type": "boolean"}, "size": {"type": "integer", "minimum": 1}}},
    {"type": "object", "required": ["a"], "additionalProperties": False, "properties": {"a": {"enum": [1, 2]}}},
    {"type": "object", "properties": {"p": {"type": "string", "pattern": "^[a-z]+$"}}},
    {"definitions": {"x": {"type": "string"}}, "properties": {"y": {"$ref": "#/definitions/x"}}},
]
INVALID = [
    {"type": 12},
    {"type": "object", "properties": {"a": {"type": "strung"}}},
    {"type": "object", "required": "a"},
    {"properties": {"p": {"type": "string", "pattern": "(unclosed"}}},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": "one"}}},
]


def _jsonschema_verdict(schema: dict[str, Any]) -> str | None:
    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        return exc.message
    return None


@pytest.mark.parametrize("draft", DRAFTS)
def test_the_compiled_check_agrees_with_jsonschema_and_leaves_the_schema_as_it_was(draft: str) -> None:
    for body in VALID + INVALID:
        schema = {"$schema": draft, **copy.deepcopy(body)}
        before = copy.deepcopy(schema)
        expected = _jsonschema_verdict(schema)
        catalog._VALID_SCHEMAS.clear()
        problem = catalog._schema_problem(schema)
        assert schema == before  # no default filled in (fastjsonschema does that unless told not to)
        if expected is None:
            assert problem is None, (schema, problem)
        else:
            assert problem is not None and expected in problem, (schema, problem, expected)
        assert catalog._meta_valid(validators.validator_for(schema), schema) is (expected is None), schema


def test_a_draft_it_does_not_compile_is_left_to_jsonschema() -> None:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
    assert catalog._meta_valid(validators.validator_for(schema), schema) is False
    assert catalog._schema_problem(schema) is None
    bad = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": 5}
    assert "not valid JSON Schema" in (catalog._schema_problem(bad) or "")
