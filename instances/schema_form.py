"""A plan's JSON Schema as a form, and posted form values back as typed parameters.

Pure: no Django, no database. The flow is

    spec = build_form(schema)                       # schema -> field specs (or "use the raw JSON editor")
    data = normalize(spec, posted)                  # {path: [raw strings]}, array rows renumbered 0..n-1
    parameters, errors = parse(spec, data)          # typed values; errors for what cannot be typed
    errors = map_errors(spec, schema_errors(...))   # the service's schema messages, beside their fields
    bound = bind(spec, data, errors, prefix="p.")   # what the templates render

Paths name a value inside the parameters: ``backup.retention_days``, ``queues.0.name``. A field spec of an
array item uses ``*`` for the index (``queues.*.name``); concrete paths are computed while walking the data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from catalog_portal.jsonlimits import capped

#: keywords the form cannot express; a schema using any of them is edited as raw JSON
UNSUPPORTED_KEYWORDS = (
    "$ref", "oneOf", "anyOf", "allOf", "not", "if", "then", "else", "patternProperties", "dependencies",
    "dependentSchemas", "dependentRequired", "propertyNames", "prefixItems", "contains", "unevaluatedProperties",
    "unevaluatedItems",
)
#: property names whose values are secrets (masked in previews, typed into password inputs)
SECRET_NAME = re.compile(
    r"password|passphrase|passwd|secret|token|api[_-]?key|private[_-]?key|credential|(^|[_-])pass($|[_-])", re.I
)
MASK = "••••••••"
SCALAR_KINDS = ("string", "integer", "number", "boolean", "enum")
TRUE_VALUES = ("on", "true", "1", "yes")
ROWS = "__rows"  # data key suffix listing the rows of an array of objects, in order


class Unsupported(Exception):
    """The schema uses something the form cannot render; the message says what."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Field:
    """One input (or fieldset) generated from a schema property."""

    key: str
    path: str
    kind: str  # string integer number boolean enum object multienum list rows json
    label: str
    help: str = ""
    required: bool = False
    has_default: bool = False
    default: Any = None
    choices: list[Any] = dataclasses.field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    format: str | None = None
    secret: bool = False
    tristate: bool = False  # may also be "not set" (a boolean: select instead of checkbox; an enum: empty option)
    children: list[Field] = dataclasses.field(default_factory=list)
    item: Field | None = None
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False

    @property
    def input_type(self) -> str:
        if self.kind in ("integer", "number"):
            return "number"
        if self.secret:
            return "password"
        return {"email": "email", "uri": "url", "url": "url", "date": "date"}.get(self.format or "", "text")

    @property
    def step(self) -> str:
        if self.multiple_of is not None:
            return _number_text(self.multiple_of)
        return "1" if self.kind == "integer" else "any"

    @property
    def hint(self) -> str:
        """The constraints in words ("Between 1 and 35.", "3 to 63 characters.")."""
        return " ".join(part for part in (_range_hint(self), _length_hint(self), _items_hint(self)) if part)

    @property
    def options(self) -> list[tuple[str, str]]:
        """(posted value, label) for each choice of an enum, or of the items of a multi-choice array."""
        choices = self.item.choices if self.kind == "multienum" and self.item else self.choices
        return [(encode_choice(choice), choice_label(choice)) for choice in choices]

    @property
    def has_empty_option(self) -> bool:
        """A select offers "not set" unless a default fills it, or "" is itself one of the choices."""
        return "" not in self.choices and (self.tristate or not self.has_default)


@dataclass
class FormSpec:
    fields: list[Field]
    supported: bool = True
    reason: str = ""  # why the raw JSON editor is used instead
    mode: str = "create"  # or "update": nothing prefilled from defaults, every value optional to send

    @property
    def is_empty(self) -> bool:
        return self.supported and not self.fields


# --- schema -> field specs ---------------------------------------------------------------------------


def build_form(schema: Mapping[str, Any] | None, *, mode: str = "create") -> FormSpec:
    """Field specs for a plan's parameters schema; `supported=False` (with a reason) means use raw JSON."""
    if not schema:
        return FormSpec([], mode=mode)
    try:
        _check_keywords(schema)
        kind = _schema_type(schema)
        if kind != "object":
            raise Unsupported("the parameters are not described as an object")
        if not isinstance(schema.get("properties"), dict) or not schema["properties"]:
            if schema.get("additionalProperties") is False:
                return FormSpec([], mode=mode)
            raise Unsupported("the schema names no properties")
        fields = _object_children(schema, "", mode)
    except Unsupported as exc:
        return FormSpec([], supported=False, reason=str(exc), mode=mode)
    return FormSpec(fields, mode=mode)


def _check_keywords(schema: Any) -> None:
    if not isinstance(schema, Mapping):
        raise Unsupported("a property's schema is not an object")
    for keyword in UNSUPPORTED_KEYWORDS:
        if keyword in schema:
            raise Unsupported(f"the schema uses '{keyword}'")


def _schema_type(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise Unsupported(f"a value may have several types ({', '.join(map(str, kind))})")
        kind = kinds[0]
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return "any"
    if kind not in ("string", "integer", "number", "boolean", "object", "array", "null"):
        raise Unsupported(f"unknown type '{kind}'")
    return str(kind)


def _object_children(schema: Mapping[str, Any], path: str, mode: str) -> list[Field]:
    required = schema.get("required") or []
    fields = []
    for key, prop in schema["properties"].items():
        if not isinstance(key, str) or not key or "." in key or key.startswith("__") or key.isdigit():
            raise Unsupported(f"the property name '{key}' cannot be used in a form")
        fields.append(_field(key, prop, f"{path}.{key}" if path else key, key in required, mode))
    return fields


def _field(key: str, schema: Any, path: str, required: bool, mode: str) -> Field:
    _check_keywords(schema)
    kind = _schema_type(schema)
    spec = Field(
        key=key, path=path, kind=kind, label=str(schema.get("title") or humanize(key)),
        help=str(schema.get("description") or ""), required=required,
        has_default="default" in schema, default=schema.get("default"),
        format=schema.get("format"),
        secret=bool(schema.get("writeOnly")) or schema.get("format") == "password" or bool(SECRET_NAME.search(key)),
    )
    if "const" in schema or "enum" in schema:
        choices = [schema["const"]] if "const" in schema else list(schema["enum"] or [])
        if not choices or len({encode_choice(c) for c in choices}) != len(choices):
            raise Unsupported(f"the choices of '{path}' cannot be told apart")
        if any(isinstance(c, dict | list) for c in choices):
            return replace(spec, kind="json")
        # An update form must be able to leave a choice alone, so it always offers "keep current".
        return replace(spec, kind="enum", choices=choices, tristate=mode == "update")
    if kind in ("string", "integer", "number"):
        return _with_bounds(spec, schema)
    if kind == "boolean":
        return replace(spec, tristate=not required and (mode == "update" or not spec.has_default))
    if kind == "object":
        if not schema.get("properties"):
            return replace(spec, kind="json")  # a free-form map: typed as JSON
        return replace(spec, children=_object_children(schema, path, mode))
    if kind == "array":
        return _array(spec, schema, mode)
    return replace(spec, kind="json")  # any type, or null


def _with_bounds(spec: Field, schema: Mapping[str, Any]) -> Field:
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    exclusive_min, exclusive_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    # Draft 4 says exclusiveMinimum: true (about `minimum`); later drafts give the bound itself.
    if exclusive_min is True:
        exclusive_min, minimum = minimum, None
    if exclusive_max is True:
        exclusive_max, maximum = maximum, None
    return replace(
        spec, minimum=_num(minimum), maximum=_num(maximum), exclusive_minimum=_num(exclusive_min),
        exclusive_maximum=_num(exclusive_max), multiple_of=_num(schema.get("multipleOf")),
        min_length=schema.get("minLength"), max_length=schema.get("maxLength"), pattern=schema.get("pattern"),
    )


def _num(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _array(spec: Field, schema: Mapping[str, Any], mode: str) -> Field:
    items = schema.get("items")
    spec = replace(spec, min_items=schema.get("minItems"), max_items=schema.get("maxItems"),
                   unique_items=bool(schema.get("uniqueItems")))
    if isinstance(items, list):
        raise Unsupported(f"'{spec.path}' is a tuple (items is a list)")
    if not isinstance(items, Mapping) or not items:
        return replace(spec, kind="json")
    item = _field("*", items, f"{spec.path}.*", True, mode)
    item = replace(item, label=spec.label if item.label == "*" else item.label)
    if item.kind == "enum":
        return replace(spec, kind="multienum", item=item)
    if item.kind in ("string", "integer", "number", "boolean"):
        return replace(spec, kind="list", item=item)
    if item.kind == "object":
        return replace(spec, kind="rows", item=item)
    return replace(spec, kind="json")


def humanize(key: str) -> str:
    words = re.sub(r"[_\-]+", " ", key).strip()
    return words[:1].upper() + words[1:] if words else key


def encode_choice(value: Any) -> str:
    """The posted value of a choice: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def choice_label(value: Any) -> str:
    if value == "":
        return "(none)"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return value if isinstance(value, str) else json.dumps(value)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _range_hint(spec: Field) -> str:
    low = spec.minimum if spec.minimum is not None else spec.exclusive_minimum
    high = spec.maximum if spec.maximum is not None else spec.exclusive_maximum
    if low is None and high is None:
        return ""
    low_word = "more than" if spec.exclusive_minimum is not None else "at least"
    high_word = "less than" if spec.exclusive_maximum is not None else "at most"
    if low is not None and high is not None and spec.exclusive_minimum is None and spec.exclusive_maximum is None:
        return f"Between {_number_text(low)} and {_number_text(high)}."
    parts = [f"{low_word} {_number_text(low)}" if low is not None else "",
             f"{high_word} {_number_text(high)}" if high is not None else ""]
    text = ", ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "."


def _length_hint(spec: Field) -> str:
    low, high = spec.min_length, spec.max_length
    if low and high:
        return f"{low} to {high} characters."
    if high:
        return f"At most {high} characters."
    if low and low > 1:
        return f"At least {low} characters."
    return ""


def _items_hint(spec: Field) -> str:
    low, high = spec.min_items, spec.max_items
    noun = "items" if spec.kind == "list" else ("rows" if spec.kind == "rows" else "choices")
    if low and high:
        return f"{low} to {high} {noun}."
    if high:
        return f"At most {high} {noun}."
    if low:
        return f"At least {low} {'choice' if noun == 'choices' and low == 1 else noun}."
    return ""


# --- posted data ---------------------------------------------------------------------------------------


def getlist(data: Mapping[str, Any], key: str) -> list[str]:
    """Every value posted for `key`, from a QueryDict or a plain mapping of strings or lists."""
    if hasattr(data, "getlist"):
        return [str(v) for v in data.getlist(key)]
    value = data.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _first(data: Mapping[str, Any], key: str) -> str | None:
    values = getlist(data, key)
    return values[0] if values else None


def _row_indexes(data: Mapping[str, Any], path: str) -> list[str]:
    seen: list[str] = []
    for index in getlist(data, f"{path}.{ROWS}"):
        if index.isdigit() and index not in seen:
            seen.append(index)
    return seen


def normalize(spec: FormSpec, data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Only the form's own keys, as lists, with the rows of each array renumbered 0..n-1 in posted order.

    After this, a row's index in the data is its index in the parameters, so the service's error paths
    (``queues.1.name``) land on the right row.
    """
    out: dict[str, list[str]] = {}
    for spec_field in spec.fields:
        _normalize(spec_field, data, spec_field.path, spec_field.path, out)
    return out


def _normalize(f: Field, data: Mapping[str, Any], src: str, dst: str, out: dict[str, list[str]]) -> None:
    if f.kind == "object":
        for child in f.children:
            _normalize(child, data, f"{src}.{child.key}", f"{dst}.{child.key}", out)
    elif f.kind == "rows":
        assert f.item is not None
        indexes = _row_indexes(data, src)
        out[f"{dst}.{ROWS}"] = [str(i) for i in range(len(indexes))]
        for new, old in enumerate(indexes):
            _normalize(f.item, data, f"{src}.{old}", f"{dst}.{new}", out)
    else:
        values = getlist(data, src)
        if values:
            out[dst] = values


def add_row(spec: FormSpec, data: Mapping[str, Any], path: str) -> dict[str, list[str]]:
    """The data with one more row in the array at `path`, filled with the items' defaults."""
    out = normalize(spec, data)
    rows = out.setdefault(f"{path}.{ROWS}", [])
    index = str(len(rows))
    rows.append(index)
    rows_field, _ = find_field(spec, path)
    if rows_field is not None and rows_field.item is not None and spec.mode == "create":
        _flatten_children(rows_field.item.children, _defaults(rows_field.item.children), f"{path}.{index}", out, [])
    return out


def remove_row(spec: FormSpec, data: Mapping[str, Any], path: str, index: int) -> dict[str, list[str]]:
    """The data without row `index` of the array at `path` (later rows move up)."""
    out = {key: list(values) for key, values in data.items()}
    out[f"{path}.{ROWS}"] = [i for i in out.get(f"{path}.{ROWS}", []) if i != str(index)]
    return normalize(spec, out)


# --- posted data -> typed parameters ---------------------------------------------------------------------


def parse(spec: FormSpec, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Typed parameters from (normalized) posted data, and the values that could not be typed, by path.

    Empty inputs are left out rather than sent as "" (the broker's defaults then apply); a checkbox is
    always sent, as true or false. Schema rules (required, ranges, patterns) are not checked here: the
    service's validation does that, so there is one source of truth.
    """
    errors: dict[str, list[str]] = {}
    params = _parse_children(spec.fields, data, "", errors, spec.mode)
    return params, errors


def _parse_children(fields: list[Field], data: Mapping[str, Any], base: str, errors: dict[str, list[str]],
                    mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        path = f"{base}.{f.key}" if base else f.key
        value = _parse_value(f, data, path, errors, mode)
        if value is not MISSING:
            out[f.key] = value
    return out


def _parse_value(f: Field, data: Mapping[str, Any], path: str, errors: dict[str, list[str]], mode: str) -> Any:
    try:
        if f.kind == "object":
            value = _parse_children(f.children, data, path, errors, mode)
            return value if value or f.required else MISSING
        if f.kind == "rows":
            assert f.item is not None
            rows = [_parse_value(f.item, data, f"{path}.{i}", errors, mode) for i in _row_indexes(data, path)]
            rows = [{} if row is MISSING else row for row in rows]
            return rows if rows or f.required or (f.has_default and f.default) else MISSING
        if f.kind == "multienum":
            assert f.item is not None
            picked = {_choice(f.item, raw) for raw in getlist(data, path)}
            values = [c for c in f.item.choices if encode_choice(c) in picked]
            if values or f.required or (f.has_default and f.default) or mode == "update":
                return values
            return MISSING
        if f.kind == "list":
            return _parse_list(f, _first(data, path))
        if f.kind == "boolean" and not f.tristate:
            return (_first(data, path) or "").lower() in TRUE_VALUES
        return parse_scalar(f, _first(data, path))
    except ValueError as exc:
        errors.setdefault(path, []).append(str(exc))
        return MISSING


def parse_scalar(f: Field, raw: str | None) -> Any:
    """One input's text as its JSON type; MISSING when empty; ValueError with a message when it isn't one."""
    if raw is None:
        return MISSING
    text = raw if f.secret else raw.strip()
    if f.kind == "enum":
        return _choice(f, raw)
    if text == "":
        return MISSING
    if f.kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError("Enter a whole number.")
        return int(text)
    if f.kind == "number":
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            raise ValueError("Enter a number.") from None
        if not math.isfinite(number):
            raise ValueError("Enter a number.")
        return number
    if f.kind == "boolean":
        if text.lower() in ("true", "on", "1", "yes"):
            return True
        if text.lower() in ("false", "off", "0", "no"):
            return False
        raise ValueError("Choose yes or no.")
    if f.kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Enter valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}).") from None
    return text


def _choice(f: Field, raw: str) -> Any:
    if raw == "" and "" not in f.choices:
        return MISSING
    for choice in f.choices:
        if encode_choice(choice) == raw:
            return choice
    raise ValueError("Choose one of the options.")


def _parse_list(f: Field, raw: str | None) -> Any:
    assert f.item is not None
    text = (raw or "").strip()
    if not text:
        return [] if f.required else MISSING
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Enter a JSON array or values separated by commas ({exc.msg}).") from None
        if not isinstance(value, list):
            raise ValueError("Enter a JSON array or values separated by commas.")
        return value
    values = []
    for number, part in enumerate((p.strip() for p in text.split(",")), start=1):
        if not part:
            continue
        try:
            values.append(parse_scalar(f.item, part))
        except ValueError as exc:
            raise ValueError(f"Item {number}: {exc}") from None
    return values


# --- typed parameters -> form data -------------------------------------------------------------------------


def defaults(spec: FormSpec) -> dict[str, Any]:
    """The schema's defaults as parameters (what a new form starts with)."""
    return _defaults(spec.fields)


def _defaults(fields: list[Field]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields:
        if f.kind == "object":
            nested = _defaults(f.children)
            if f.has_default and isinstance(f.default, dict):
                nested = {**nested, **f.default}
            if nested:
                out[f.key] = nested
        elif f.has_default:
            out[f.key] = f.default
    return out


def flatten(spec: FormSpec, params: Mapping[str, Any] | None) -> tuple[dict[str, list[str]], list[str]]:
    """Form data showing `params`, and the paths of values the form cannot show (unknown keys, wrong types)."""
    data: dict[str, list[str]] = {}
    lost: list[str] = []
    _flatten_children(spec.fields, params or {}, "", data, lost)
    return data, lost


def _flatten_children(fields: list[Field], params: Mapping[str, Any], base: str, data: dict[str, list[str]],
                      lost: list[str]) -> None:
    known = {f.key for f in fields}
    lost.extend(f"{base}.{key}" if base else str(key) for key in params if key not in known)
    for f in fields:
        if f.key in params:
            _flatten_value(f, params[f.key], f"{base}.{f.key}" if base else f.key, data, lost)


def _flatten_value(f: Field, value: Any, path: str, data: dict[str, list[str]], lost: list[str]) -> None:
    if f.kind == "object":
        if isinstance(value, Mapping):
            _flatten_children(f.children, value, path, data, lost)
        else:
            lost.append(path)
    elif f.kind == "rows":
        if not isinstance(value, list) or not all(isinstance(row, Mapping) for row in value):
            lost.append(path)
            return
        assert f.item is not None
        data[f"{path}.{ROWS}"] = [str(i) for i in range(len(value))]
        for i, row in enumerate(value):
            _flatten_children(f.item.children, row, f"{path}.{i}", data, lost)
    elif f.kind == "multienum":
        assert f.item is not None
        if not isinstance(value, list) or not all(any(_same(v, c) for c in f.item.choices) for v in value):
            lost.append(path)
        else:
            data[path] = [encode_choice(v) for v in value]
    elif f.kind == "list":
        data[path] = [_list_text(value)]
        if not isinstance(value, list):
            lost.append(path)
    elif f.kind == "json":
        data[path] = [json.dumps(value, indent=2)]
    elif f.kind == "enum":
        if any(_same(value, c) for c in f.choices):
            data[path] = [encode_choice(value)]
        else:
            lost.append(path)
    elif f.kind == "boolean":
        if not isinstance(value, bool):
            lost.append(path)
        elif f.tristate:
            data[path] = ["true" if value else "false"]
        elif value:
            data[path] = ["on"]
    elif isinstance(value, dict | list | bool) or (f.kind != "string" and not isinstance(value, int | float)):
        lost.append(path)
    else:
        data[path] = [value if isinstance(value, str) else json.dumps(value)]


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _list_text(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        texts = [v if isinstance(v, str) else json.dumps(v) for v in value]
        if not any("," in t or t != t.strip() or t == "" for t in texts) and not (texts and texts[0].startswith("[")):
            return ", ".join(texts)
    return json.dumps(value)


def changes(new: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """What an update form changes: the top-level values that differ from the instance's current parameters,
    each whole (a change inside an object sends the object: see `parameters_for_update`). An empty value where
    there was none is no change.
    """
    current = current or {}
    out: dict[str, Any] = {}
    for key, value in new.items():
        old = current.get(key, MISSING)
        if old is MISSING and value in ([], {}):
            continue
        if old is MISSING or not _equal(value, old):
            out[key] = value
    return out


def _equal(a: Any, b: Any) -> bool:
    """Equal values of equal types, all the way down (10.0 is not 10: the broker would see the difference)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# --- the service's schema messages, beside their fields -----------------------------------------------------


def find_field(spec: FormSpec, path: str) -> tuple[Field | None, str]:
    """The deepest field on a concrete error path, and its concrete path ("extensions.2" -> extensions)."""
    fields, found, found_path, walked = spec.fields, None, "", []
    parts = [p for p in path.split(".") if p != ""] if path else []
    i = 0
    while i < len(parts):
        match = next((f for f in fields if f.key == parts[i]), None)
        if match is None:
            break
        walked.append(parts[i])
        found, found_path = match, ".".join(walked)
        i += 1
        if match.kind == "rows" and i < len(parts) and parts[i].isdigit() and match.item is not None:
            walked.append(parts[i])
            found_path = ".".join(walked)
            fields = match.item.children
            i += 1
        elif match.kind == "object":
            fields = match.children
        else:
            break
    return found, found_path


def map_errors(spec: FormSpec, messages: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Split "path: message" lines from the schema validation into {field path: [messages]} and the rest.

    A missing required property is put on the field itself; messages are reworded for people using the
    field's own limits (they never repeat the value, which may be a secret).
    """
    by_path: dict[str, list[str]] = {}
    rest: list[str] = []
    for message in messages:
        where, text = _split_message(spec, message)
        required = re.fullmatch(r"'([^']+)' is a required property", text)
        if required:
            candidate = f"{where}.{required.group(1)}" if where else required.group(1)
            f, found = find_field(spec, candidate)
            if f is not None and found == candidate:
                by_path.setdefault(found, []).append("This field is required.")
                continue
        f, found = find_field(spec, where)
        if f is None:
            rest.append(message)
        else:
            by_path.setdefault(found, []).append(humanize_error(f, text, exact=found == where))
    return by_path, rest


def _split_message(spec: FormSpec, message: str) -> tuple[str, str]:
    head, sep, tail = message.partition(": ")
    if sep and re.fullmatch(r"[^\s:]+", head):
        f, _ = find_field(spec, head)
        if f is not None:
            return head, tail
    return "", message


_REWORDS: list[tuple[str, str]] = [
    (r".* is less than or equal to the minimum of (.+)", "Must be greater than {0}."),
    (r".* is greater than or equal to the maximum of (.+)", "Must be less than {0}."),
    (r".* is less than the minimum of (.+)", "Must be at least {0}."),
    (r".* is greater than the maximum of (.+)", "Must be at most {0}."),
    (r".* is not a multiple of (.+)", "Must be a multiple of {0}."),
    (r".* is not one of .*", "Choose one of the options."),
    (r".* is not of type '(\w+)'", "Must be {0}."),
    (r".* has non-unique elements", "Each value may appear only once."),
    (r".* is not a '([\w-]+)'", "Must be a valid {0}."),
]
_TYPE_WORDS = {"integer": "a whole number", "number": "a number", "string": "text", "boolean": "yes or no",
               "array": "a list", "object": "an object"}


def humanize_error(f: Field, text: str, *, exact: bool = True) -> str:
    """A schema validation message in words for the person filling the form."""
    if not exact:  # about one element of the field's value (an item of a list)
        return f"An item: {humanize_error(f.item, text) if f.item else text}"
    if re.fullmatch(r".* (is too short|should be non-empty)", text, re.S):
        if f.kind in ("multienum", "list", "rows"):
            return f"Choose at least {f.min_items or 1}." if f.kind == "multienum" else f"Add at least {f.min_items or 1}."
        return f"Must be at least {f.min_length or 1} characters."
    if re.fullmatch(r".* (is too long|is expected to be empty)", text, re.S):
        if f.kind in ("multienum", "list", "rows"):
            return f"At most {f.max_items} allowed."
        return f"Must be at most {f.max_length} characters."
    if re.fullmatch(r".* does not match '.*'", text, re.S):
        return pattern_error(f)
    for pattern, words in _REWORDS:
        match = re.fullmatch(pattern, text, re.S)
        if match:
            args = [_TYPE_WORDS.get(g, g) for g in match.groups()]
            return words.format(*args)
    return text if not f.secret else "This value is not accepted."


def pattern_error(f: Field) -> str:
    """A value that does not match the field's pattern, in words: the pattern described when it is a simple
    one ("Use only lowercase letters, digits or “_”."), else the field's own description or title."""
    described = describe_pattern(f.pattern or "")
    if described:
        return f"Not in the expected format. {described}"
    if f.help:
        return f"Not in the expected format. {f.help.rstrip('.')}."
    return f"Not in the expected format: {f.label}."


_CLASS_WORDS = (("a-z", "lowercase letters"), ("A-Z", "capital letters"), ("0-9", "digits"))
_PART = re.compile(r"\[([^\]\\^]+)\]([*+?]|\{\d+(?:,\d*)?\})?")


def describe_pattern(pattern: str) -> str:
    """Words for a pattern made of character classes, e.g. ``^[a-z_][a-z0-9_]*$`` -> "Start with a lowercase
    letter or “_”, then use only lowercase letters, digits or “_”." "" for anything more complex."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        return ""
    body, parts = pattern[1:-1], []
    while body:
        match = _PART.match(body)
        if not match:
            return ""
        parts.append((_class_words(match.group(1)), match.group(2) or ""))
        body = body[match.end():]
    if not parts or any(not words for words, _ in parts):
        return ""
    if len(parts) == 1:
        return f"Use only {parts[0][0]}."
    if len(parts) == 2 and parts[0][1] == "" and parts[1][1] in ("*", "+"):
        first = parts[0][0].replace("lowercase letters", "a lowercase letter").replace(
            "capital letters", "a capital letter").replace("letters", "a letter").replace("digits", "a digit")
        return f"Start with {first}, then use only {parts[1][0]}."
    return ""


def _class_words(chars: str) -> str:
    words = []
    if "a-z" in chars and "A-Z" in chars:
        words.append("letters")
        chars = chars.replace("a-z", "").replace("A-Z", "")
    for text, word in _CLASS_WORDS:
        if text in chars:
            words.append(word)
            chars = chars.replace(text, "")
    if "-" in chars[1:-1] or "\\" in chars:
        return ""  # another range, or an escape: too complex to say in words
    words += [f"“{c}”" for c in chars]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def error_items(bound: list[BoundField], trail: str = "") -> list[tuple[str, str, str]]:
    """Every error of the bound fields as (label, input id, message), in page order, for the error summary.
    Nested fields are named with their parents ("Backups › Retention (days)", "Queues 2 › Name")."""
    items: list[tuple[str, str, str]] = []
    for bf in bound:
        label = f"{trail} › {bf.field.label}" if trail else bf.field.label
        if bf.index is not None:
            label = f"{trail} {bf.index + 1}" if trail else str(bf.index + 1)
        items += [(label, bf.id, message) for message in bf.errors]
        items += error_items(bf.children, label)
        items += error_items(bf.rows, label)
    return items


# --- secrets ---------------------------------------------------------------------------------------------


def is_secret(key: str, schema: Any) -> bool:
    if isinstance(schema, Mapping) and (schema.get("writeOnly") or schema.get("format") == "password"):
        return True
    return bool(SECRET_NAME.search(key))


def mask_secrets(schema: Mapping[str, Any] | None, value: Any) -> Any:
    """A copy of `value` with secret values replaced by a mask: properties marked writeOnly or format
    password in the schema, and properties named like password, secret, token, API key, credentials. Values nested
    deeper than PARAMETERS_MAX_DEPTH (stored before the limit) are shown as "…" (jsonlimits.capped)."""
    return _mask(schema, capped(value, settings.PARAMETERS_MAX_DEPTH))


def _mask(schema: Mapping[str, Any] | None, value: Any) -> Any:
    if isinstance(value, Mapping) and len(value) == 1 and "$sealed" in value:  # stored encrypted (instances.sealed)
        return MASK
    if isinstance(value, Mapping):
        props = schema.get("properties", {}) if isinstance(schema, Mapping) else {}
        extra = schema.get("additionalProperties") if isinstance(schema, Mapping) else None
        out = {}
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            out[key] = MASK if is_secret(str(key), sub) and item not in (None, "") else _mask(sub, item)
        return out
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema, Mapping) else None
        return [_mask(items if isinstance(items, Mapping) else None, item) for item in value]
    return value


# --- what the templates render ------------------------------------------------------------------------------


@dataclass
class BoundField:
    field: Field
    path: str
    name: str
    id: str
    value: str = ""
    values: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    children: list[BoundField] = dataclasses.field(default_factory=list)
    rows: list[BoundField] = dataclasses.field(default_factory=list)
    index: int | None = None  # a row's position

    @property
    def kind(self) -> str:
        return self.field.kind

    @property
    def checked(self) -> bool:
        return self.value.lower() in TRUE_VALUES

    @property
    def describedby(self) -> str:
        ids = []
        if self.field.help or self.field.hint:
            ids.append(f"{self.id}-help")
        if self.errors:
            ids.append(f"{self.id}-error")
        return " ".join(ids)

    @property
    def rows_name(self) -> str:
        return f"{self.name}.{ROWS}"

    @property
    def can_add_row(self) -> bool:
        return self.field.max_items is None or len(self.rows) < self.field.max_items

    @property
    def has_errors(self) -> bool:
        return bool(self.errors) or any(c.has_errors for c in self.children) or any(r.has_errors for r in self.rows)


def html_id(name: str) -> str:
    return "id_" + re.sub(r"[^A-Za-z0-9_-]", "-", name)


def bind(spec: FormSpec, data: Mapping[str, Any], errors: Mapping[str, list[str]] | None = None, *,
         prefix: str = "") -> list[BoundField]:
    """Fields with their current values and errors, ready to render (`name` = prefix + path)."""
    return [_bind(f, data, errors or {}, f.path, prefix) for f in spec.fields]


def _bind(f: Field, data: Mapping[str, Any], errors: Mapping[str, list[str]], path: str, prefix: str,
          index: int | None = None) -> BoundField:
    name = prefix + path
    bound = BoundField(field=f, path=path, name=name, id=html_id(name), errors=list(errors.get(path, [])),
                       index=index)
    if f.kind == "object":
        bound.children = [_bind(c, data, errors, f"{path}.{c.key}", prefix) for c in f.children]
    elif f.kind == "rows":
        assert f.item is not None
        bound.rows = [_bind(f.item, data, errors, f"{path}.{i}", prefix, index=int(i))
                      for i in _row_indexes(data, path)]
    elif f.kind == "multienum":
        bound.values = getlist(data, path)
    else:
        bound.value = _first(data, path) or ""
    return bound
