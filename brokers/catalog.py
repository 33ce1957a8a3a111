"""Validation and normalisation of an OSB v2.17 catalog document (pure functions, no database).

A catalog is accepted whole or not at all: `parse_catalog` either returns every offering and plan,
normalised, or raises `CatalogInvalid` listing what is wrong in words a broker author can act on.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import orjson
from jsonschema import exceptions as jsonschema_exceptions
from jsonschema import validators

MAX_SCHEMA_BYTES = 64 * 1024  # spec: "Schemas MUST NOT be larger than 64kB"
MAX_ID_LENGTH = 255
MAX_NAME_LENGTH = 255
MAX_ERRORS_SHOWN = 10
KNOWN_REQUIRES = {"syslog_drain", "route_forwarding", "volume_mount"}
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# Schemas already found valid (by digest): checking thousands of schemas on every relist costs seconds, and
# most catalogs repeat the same few. Bounded, and shared by a worker's threads.
_VALID_SCHEMAS: set[str] = set()
_VALID_SCHEMAS_LOCK = threading.Lock()
_VALID_SCHEMAS_MAX = 50_000
SCHEMA_PATHS = (("service_instance", "create"), ("service_instance", "update"), ("service_binding", "create"))


class CatalogInvalid(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:MAX_ERRORS_SHOWN]
        more = len(problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more problem(s)" if more > 0 else "")
        super().__init__(f"The broker's catalog is invalid: {text}")


@dataclass
class PlanEntry:
    catalog_id: str
    fields: dict[str, Any]
    content_hash: str


@dataclass
class OfferingEntry:
    catalog_id: str
    fields: dict[str, Any]
    content_hash: str
    plans: list[PlanEntry] = field(default_factory=list)


def json_bytes(value: Any, *, sort_keys: bool = False) -> bytes:
    """`value` as compact JSON in UTF-8, by orjson: about ten times faster than the json module (a cold mirror of
    1,000 services encodes ~16 MB several times). An integer beyond 64 bits, which orjson refuses, falls back to the
    json module."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else None)
    except TypeError:
        return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_json(value: Any) -> bytes:
    """`value` as compact JSON with sorted keys: what the catalog's digests and hashes are taken of."""
    return json_bytes(value, sort_keys=True)


def _hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class _Checker:
    def __init__(self, schema_memo: dict[int, str | None] | None = None) -> None:
        self.problems: list[str] = []
        # id(schema object) -> its problem: valid only while the document holding the schemas is alive.
        self.schema_memo = schema_memo if schema_memo is not None else {}

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def required_str(self, obj: dict[str, Any], key: str, where: str, max_length: int | None = None) -> str:
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            self.add(where, f"'{key}' is required and must be a non-empty string")
            return ""
        if max_length and len(value) > max_length:
            self.add(where, f"'{key}' is longer than {max_length} characters")
        return value

    def optional_type(self, obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> None:
        if key in obj and obj[key] is not None and not isinstance(obj[key], kind):
            names = {bool: "true or false", dict: "an object", list: "an array", int: "an integer"}
            wanted = names.get(kind, "of another type") if isinstance(kind, type) else "of another type"
            self.add(where, f"'{key}' must be {wanted}")

    def string_list(self, obj: dict[str, Any], key: str, where: str) -> list[str]:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.add(where, f"'{key}' must be an array of strings")
            return []
        return value


def _describe(kind: str, index: int, obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("name"), str):
        return f"{kind} {index + 1} ('{obj['name']}')"
    return f"{kind} {index + 1}"


def _check_schema(checker: _Checker, schema: Any, where: str) -> None:
    # Once per schema object and document: a sync checks the same document twice (conformance, then validation).
    memo = checker.schema_memo
    if id(schema) not in memo:
        memo[id(schema)] = _schema_problem(schema)
    problem = memo[id(schema)]
    if problem:
        checker.add(where, problem)


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, dict):
        return "the parameters schema must be a JSON object"
    compact = canonical_json(schema)
    size = len(compact)
    if size > MAX_SCHEMA_BYTES:
        return f"the schema is {size // 1024} kB; schemas must not be larger than 64 kB"
    key = hashlib.sha256(compact).hexdigest()
    if key in _VALID_SCHEMAS:  # passed every check below before (they depend on the content alone)
        return None
    if "$schema" not in schema:
        return "the schema must declare its JSON Schema version with '$schema'"
    for ref in _refs(schema):
        if not ref.startswith("#"):
            return f"the schema has an external reference '{ref}'; only local '#...' references are allowed"
    validator_class = validators.validator_for(schema, default=validators.Draft4Validator)
    if not _meta_valid(validator_class, schema):
        try:
            validator_class.check_schema(schema)
        except jsonschema_exceptions.SchemaError as exc:
            location = "/".join(str(p) for p in exc.path) or "(top)"
            return f"the schema is not valid JSON Schema at {location}: {exc.message}"
    with _VALID_SCHEMAS_LOCK:
        if len(_VALID_SCHEMAS) >= _VALID_SCHEMAS_MAX:
            _VALID_SCHEMAS.clear()
        _VALID_SCHEMAS.add(key)
    return None


# The metaschema of each draft compiled once into Python code (fastjsonschema): about 15 times faster than
# jsonschema's check_schema, which walks the metaschema resolving its $refs for every schema. A schema it finds
# valid is valid; anything else (invalid, or a draft it does not compile) goes to jsonschema, which has the last
# word and the message. use_default=False: it must not fill the metaschema's defaults into the broker's schema.
_COMPILED_DRAFTS = (validators.Draft4Validator, validators.Draft6Validator, validators.Draft7Validator)
_compiled: dict[type, Any] = {}
_compiled_lock = threading.Lock()


def _meta_valid(validator_class: type, schema: dict[str, Any]) -> bool:
    if validator_class not in _COMPILED_DRAFTS:
        return False
    check = _compiled.get(validator_class)
    if check is None:
        with _compiled_lock:
            check = _compiled.get(validator_class)
            if check is None:
                check = fastjsonschema.compile(validator_class.META_SCHEMA, use_default=False)
                _compiled[validator_class] = check
    try:
        check(schema)
    except Exception:  # JsonSchemaException, or anything the generated code trips on: jsonschema decides
        return False
    return True


def _refs(node: Any) -> list[str]:
    found: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str):
                found.append(ref)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return found


def _check_schemas(checker: _Checker, schemas: Any, where: str) -> None:
    if schemas is None:
        return
    if not isinstance(schemas, dict):
        checker.add(where, "'schemas' must be an object")
        return
    for outer, inner in SCHEMA_PATHS:
        section = schemas.get(outer)
        if section is None:
            continue
        if not isinstance(section, dict):
            checker.add(where, f"'schemas.{outer}' must be an object")
            continue
        step = section.get(inner)
        if step is None:
            continue
        if not isinstance(step, dict):
            checker.add(where, f"'schemas.{outer}.{inner}' must be an object")
            continue
        if "parameters" in step:
            _check_schema(checker, step["parameters"], f"{where}, schemas.{outer}.{inner}.parameters")


def _plan_fields(checker: _Checker, plan: dict[str, Any], where: str) -> dict[str, Any]:
    for key in ("free", "bindable", "plan_updateable", "binding_rotatable"):
        checker.optional_type(plan, key, bool, where)
    checker.optional_type(plan, "metadata", dict, where)
    duration = plan.get("maximum_polling_duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int) or duration <= 0):
        checker.add(where, "'maximum_polling_duration' must be a positive whole number of seconds")
        duration = None
    maintenance = plan.get("maintenance_info")
    if maintenance is not None:
        if not isinstance(maintenance, dict):
            checker.add(where, "'maintenance_info' must be an object")
            maintenance = None
        elif not isinstance(maintenance.get("version"), str) or not _SEMVER.match(maintenance["version"]):
            checker.add(where, "'maintenance_info.version' is required and must be a semantic version (e.g. 1.2.0)")
    _check_schemas(checker, plan.get("schemas"), where)
    metadata = plan.get("metadata") if isinstance(plan.get("metadata"), dict) else {}
    bullets = metadata.get("bullets")
    costs = metadata.get("costs")
    return {
        "name": plan.get("name", ""),
        "description": plan.get("description", ""),
        "free": plan.get("free", True) if isinstance(plan.get("free"), bool) else True,
        "bindable": plan.get("bindable") if isinstance(plan.get("bindable"), bool) else None,
        "plan_updateable": plan.get("plan_updateable") if isinstance(plan.get("plan_updateable"), bool) else None,
        "binding_rotatable": plan.get("binding_rotatable") is True,
        "metadata": metadata,
        "display_name": _str_or_none(metadata.get("displayName")) or "",
        "bullets": [b for b in bullets if isinstance(b, str)] if isinstance(bullets, list) else [],
        "costs": [c for c in costs if isinstance(c, dict)] if isinstance(costs, list) else [],
        "schemas": plan.get("schemas") if isinstance(plan.get("schemas"), dict) else {},
        "maximum_polling_duration": duration,
        "maintenance_info": maintenance,
        "raw": plan,
    }


def _offering_fields(checker: _Checker, service: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(service.get("bindable"), bool):
        checker.add(where, "'bindable' is required and must be true or false")
    for key in ("instances_retrievable", "bindings_retrievable", "allow_context_updates", "plan_updateable"):
        checker.optional_type(service, key, bool, where)
    checker.optional_type(service, "metadata", dict, where)
    checker.optional_type(service, "dashboard_client", dict, where)
    tags = checker.string_list(service, "tags", where)
    requires = checker.string_list(service, "requires", where)
    metadata = service.get("metadata") if isinstance(service.get("metadata"), dict) else {}
    raw = {key: value for key, value in service.items() if key != "plans"}
    return {
        "name": service.get("name", ""),
        "description": service.get("description", ""),
        "tags": tags,
        "requires": requires,
        "bindable": service.get("bindable") is True,
        "instances_retrievable": service.get("instances_retrievable") is True,
        "bindings_retrievable": service.get("bindings_retrievable") is True,
        "allow_context_updates": service.get("allow_context_updates") is True,
        "plan_updateable": service.get("plan_updateable") is True,
        "metadata": metadata,
        "dashboard_client": service.get("dashboard_client") if isinstance(service.get("dashboard_client"), dict) else None,
        "display_name": _str_or_none(metadata.get("displayName")) or "",
        "long_description": _str_or_none(metadata.get("longDescription")) or "",
        "provider": _str_or_none(metadata.get("providerDisplayName")) or "",
        "image_url": _str_or_none(metadata.get("imageUrl")),
        "documentation_url": _str_or_none(metadata.get("documentationUrl")),
        "support_url": _str_or_none(metadata.get("supportUrl")),
        "raw": raw,
        # Denormalised for portable search and tag filters (SQLite and Postgres alike).
        "search_text": " ".join(
            [str(service.get("name", "")), _str_or_none(metadata.get("displayName")) or "",
             str(service.get("description", "")), *tags]
        ).lower(),
        "tag_index": "".join(f"|{tag.lower()}" for tag in tags) + "|" if tags else "",
    }


def parse_catalog(document: Any, *, schema_memo: dict[int, str | None] | None = None) -> list[OfferingEntry]:
    """Validate a catalog document and return its offerings and plans, or raise CatalogInvalid.
    `schema_memo`: shared with brokers.conformance.catalog.check_catalog on the same document object."""
    if not isinstance(document, dict):
        raise CatalogInvalid(["the catalog must be a JSON object with a 'services' array"])
    services = document.get("services")
    if not isinstance(services, list):
        raise CatalogInvalid(["'services' is required and must be an array"])
    checker = _Checker(schema_memo)
    offerings: list[OfferingEntry] = []
    service_ids: dict[str, str] = {}
    service_names: dict[str, str] = {}
    plan_ids: dict[str, str] = {}
    for index, service in enumerate(services):
        where = _describe("service", index, service)
        if not isinstance(service, dict):
            checker.add(where, "must be an object")
            continue
        service_id = checker.required_str(service, "id", where, MAX_ID_LENGTH)
        name = checker.required_str(service, "name", where, MAX_NAME_LENGTH)
        checker.required_str(service, "description", where)
        if service_id and service_id in service_ids:
            checker.add(where, f"id '{service_id}' is also used by {service_ids[service_id]}")
        service_ids.setdefault(service_id, where)
        if name and name in service_names:
            checker.add(where, f"name '{name}' is also used by {service_names[name]}")
        service_names.setdefault(name, where)
        fields = _offering_fields(checker, service, where)
        fields["position"] = index
        entry = OfferingEntry(catalog_id=service_id, fields=fields, content_hash=_hash(fields))
        plans = service.get("plans")
        if not isinstance(plans, list) or not plans:
            checker.add(where, "'plans' is required and must contain at least one plan")
            plans = []
        plan_names: set[str] = set()
        for plan_index, plan in enumerate(plans):
            plan_where = f"{where}, {_describe('plan', plan_index, plan)}"
            if not isinstance(plan, dict):
                checker.add(plan_where, "must be an object")
                continue
            plan_id = checker.required_str(plan, "id", plan_where, MAX_ID_LENGTH)
            plan_name = checker.required_str(plan, "name", plan_where, MAX_NAME_LENGTH)
            checker.required_str(plan, "description", plan_where)
            if plan_id and plan_id in plan_ids:
                checker.add(plan_where, f"plan id '{plan_id}' is also used by {plan_ids[plan_id]}")
            plan_ids.setdefault(plan_id, plan_where)
            if plan_name and plan_name in plan_names:
                checker.add(plan_where, f"plan name '{plan_name}' is used twice in this service")
            plan_names.add(plan_name)
            plan_fields = _plan_fields(checker, plan, plan_where)
            plan_fields["position"] = plan_index
            plan_fields["offering_catalog_id"] = service_id
            entry.plans.append(PlanEntry(catalog_id=plan_id, fields=plan_fields, content_hash=_hash(plan_fields)))
        offerings.append(entry)
    if checker.problems:
        raise CatalogInvalid(checker.problems)
    return offerings
