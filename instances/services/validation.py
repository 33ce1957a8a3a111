"""Checks made before anything reaches a broker: names and parameters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import validators

from catalog_portal.exceptions import ApplicationError
from catalog_portal.jsonlimits import check_parameters_size

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_dns_label(value: Any, *, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ApplicationError(f"A {field} is required.", fields={field: ["This field is required."]})
    if len(value) > 63 or not DNS_LABEL.match(value):
        raise ApplicationError(
            f"'{value}' is not a valid {field}.",
            fields={field: ["Use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit."]},
        )
    return value


def schema_errors(schema: dict[str, Any] | None, parameters: Any) -> list[str]:
    """Human messages for each way `parameters` breaks the plan's JSON Schema (empty when valid)."""
    if not isinstance(parameters, dict):
        return ["Parameters must be a JSON object."]
    try:
        check_parameters_size(parameters)
    except ApplicationError as exc:
        return [exc.message]
    if not schema:
        return []
    validator_class = validators.validator_for(schema, default=validators.Draft4Validator)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    messages = []
    for error in sorted(validator.iter_errors(parameters), key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in error.absolute_path)
        messages.append(f"{where}: {error.message}" if where else error.message)
    return messages


def check_parameters(schema: dict[str, Any] | None, parameters: Any) -> dict[str, Any]:
    """`parameters` if they are a JSON object within PARAMETERS_MAX_DEPTH and PARAMETERS_MAX_BYTES that matches
    the plan's schema; else a 400 naming the problems. The one check of parameters (API, pages, admin, retry)."""
    if isinstance(parameters, dict):
        check_parameters_size(parameters)  # before the schema's validator recurses into them
    errors = schema_errors(schema, parameters)
    if errors:
        raise ApplicationError("The parameters do not match the plan's schema.", fields={"parameters": errors})
    return parameters


def parameters_for_update(*, current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The parameters an update sends for `changes`: each top-level key given, whole.

    Many brokers replace a top-level parameter rather than merge into it, so a change inside an object (say
    `backup.retention_days`) is sent as the whole object: the instance's current value with the change applied
    (keys the caller did not mention keep their values). When the update succeeds the instance's parameters become
    `{**current, **sent}`: exactly what the broker now holds.
    """
    return {key: deep_merge(current[key], value) if isinstance(value, dict) and isinstance(current.get(key), dict)
            else value for key, value in changes.items()}


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` applied: objects merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
