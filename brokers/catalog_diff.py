"""What changed between two versions of a catalog object (pure functions, no database).

The catalog mirror (brokers.mirror) asks these for each service or plan whose content changed, so that a sync can
say which fields changed and, for parameter schemas, which properties.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from brokers.catalog import SCHEMA_PATHS

_MISSING = object()


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two versions of a service (without its plans) or plan, as the broker sent them:
    top-level fields (`description`, `free`, `costs`...), `metadata.<key>` within the metadata and
    `schemas.<resource>.<action>` within the schemas (`schemas.service_instance.create`)."""
    names: list[str] = []
    for key in sorted(set(old) | set(new)):
        if key == "plans":
            continue
        before, after = old.get(key, _MISSING), new.get(key, _MISSING)
        if before == after:
            continue
        if key in ("metadata", "schemas") and _dict_or_missing(before) and _dict_or_missing(after):
            names += _nested_fields(key, _as_dict(before), _as_dict(after))
        else:
            names.append(key)
    return names


def _dict_or_missing(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, dict)


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _nested_fields(key: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    if key == "metadata":
        return [f"metadata.{name}" for name in sorted(set(before) | set(after))
                if before.get(name, _MISSING) != after.get(name, _MISSING)]
    names = []
    for outer, inner in SCHEMA_PATHS:
        if _schema_step(before, outer, inner) != _schema_step(after, outer, inner):
            names.append(f"schemas.{outer}.{inner}")
    known = {outer for outer, _ in SCHEMA_PATHS}
    names += [f"schemas.{name}" for name in sorted(set(before) | set(after))
              if name not in known and before.get(name, _MISSING) != after.get(name, _MISSING)]
    return names


def _schema_step(schemas: dict[str, Any], outer: str, inner: str) -> Any:
    section = schemas.get(outer)
    return section.get(inner) if isinstance(section, dict) else None


def schema_changes(old_schemas: Any, new_schemas: Any) -> dict[str, dict[str, list[str]]]:
    """For each parameter schema that changed (`"service_instance.create"`...): its properties added, removed,
    made required, made optional and otherwise changed (`"changed"`), as dotted paths for nested objects'
    properties. A schema that changed in another way (its title, say) maps to {}."""
    before, after = _as_dict(old_schemas), _as_dict(new_schemas)
    result: dict[str, dict[str, list[str]]] = {}
    for outer, inner in SCHEMA_PATHS:
        old_step, new_step = _schema_step(before, outer, inner), _schema_step(after, outer, inner)
        if old_step == new_step:
            continue
        result[f"{outer}.{inner}"] = schema_change(_parameters(old_step), _parameters(new_step))
    return result


def _parameters(step: Any) -> dict[str, Any]:
    parameters = step.get("parameters") if isinstance(step, dict) else None
    return parameters if isinstance(parameters, dict) else {}


def schema_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[str]]:
    """Properties of one JSON Schema added, removed, made required, made optional or changed (empty lists left out)."""
    before, after = _properties(old), _properties(new)
    common = sorted(set(before) & set(after))
    change = {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "required": [path for path in common if after[path][1] and not before[path][1]],
        "optional": [path for path in common if before[path][1] and not after[path][1]],
        "changed": [path for path in common if before[path][0] != after[path][0]],
    }
    return {key: paths for key, paths in change.items() if paths}


def _properties(schema: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, tuple[Any, bool]]:
    """{dotted path: (the property's own definition, required?)}, nested objects' properties included."""
    found: dict[str, tuple[Any, bool]] = {}
    properties = schema.get("properties")
    if not isinstance(properties, dict) or depth > 10:
        return found
    required = schema.get("required") if isinstance(schema.get("required"), list) else []
    for name, definition in properties.items():
        path = f"{prefix}{name}"
        own = ({k: v for k, v in definition.items() if k not in ("properties", "required")}
               if isinstance(definition, dict) else definition)
        found[path] = (own, name in required)
        if isinstance(definition, dict):
            found.update(_properties(definition, f"{path}.", depth + 1))
    return found


SCHEMA_NAMES = {"service_instance.create": "creating an instance", "service_instance.update": "updating an instance",
                "service_binding.create": "creating a binding"}
_SCHEMA_WORDS = (("added", "added"), ("removed", "removed"), ("required", "now required"),
                 ("optional", "now optional"), ("changed", "changed"))


def describe_schema_changes(schemas: Mapping[str, Mapping[str, list[str]]] | None) -> list[str]:
    """One line per changed schema, for people: 'Parameters for creating an instance: added pool_size; removed
    public_access; now required version'."""
    lines = []
    for name, change in (schemas or {}).items():
        parts = [f"{word} {', '.join(change[key])}" for key, word in _SCHEMA_WORDS if change.get(key)]
        lines.append(f"Parameters for {SCHEMA_NAMES.get(name, name)}: {'; '.join(parts) or 'changed'}")
    return lines
