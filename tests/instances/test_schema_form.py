"""The schema -> form generator (instances/schema_form.py): pure functions, tested on the sample catalog's real
schemas and on edge cases."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devtools.sample_broker.catalog import build_catalog
from instances import schema_form as sf
from instances.services.validation import deep_merge, schema_errors

CATALOG = build_catalog()


def schema(service: str, plan: str, *path: str) -> dict[str, Any]:
    offering = next(s for s in CATALOG["services"] if s["name"] == service)
    node: Any = next(p for p in offering["plans"] if p["name"] == plan)["schemas"]
    for key in (*path, "parameters"):
        node = node[key]
    return copy.deepcopy(node)


PG_CREATE = schema("postgresql", "standard-small", "service_instance", "create")
PG_UPDATE = schema("postgresql", "standard-small", "service_instance", "update")
S3_CREATE = schema("object-storage", "standard", "service_instance", "create")
MQ_CREATE = schema("rabbitmq", "shared-vhost", "service_instance", "create")
MQ_BIND = schema("rabbitmq", "shared-vhost", "service_binding", "create")
REDIS_BIND = schema("redis-cache", "cache-free", "service_binding", "create")
S3_BIND = schema("object-storage", "standard", "service_binding", "create")
DW_CREATE = schema("analytics-warehouse", "starter", "service_instance", "create")


def all_sample_schemas() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for offering in CATALOG["services"]:
        for plan in offering["plans"]:
            schemas = plan.get("schemas") or {}
            for kind, holder in (("create", schemas.get("service_instance", {}).get("create")),
                                 ("update", schemas.get("service_instance", {}).get("update")),
                                 ("bind", schemas.get("service_binding", {}).get("create"))):
                if holder:
                    found.append((f"{offering['name']}/{plan['name']}/{kind}", holder["parameters"]))
    return found


def by_path(spec: sf.FormSpec) -> dict[str, sf.Field]:
    out: dict[str, sf.Field] = {}

    def walk(fields: list[sf.Field]) -> None:
        for f in fields:
            out[f.path] = f
            walk(f.children)
            if f.item is not None:
                out[f.item.path] = f.item
                walk(f.item.children)

    walk(spec.fields)
    return out


def roundtrip(spec: sf.FormSpec, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    data, lost = sf.flatten(spec, params)
    assert lost == []
    return sf.parse(spec, sf.normalize(spec, data))


# --- schema -> field specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "parameters_schema"), all_sample_schemas(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_sample_schema_is_rendered_as_a_form(name: str, parameters_schema: dict[str, Any]) -> None:
    spec = sf.build_form(parameters_schema)
    assert spec.supported, spec.reason
    assert [f.key for f in spec.fields] == list(parameters_schema["properties"])
    params, errors = roundtrip(spec, sf.defaults(spec))
    # a new form submitted untouched sends the defaults (an empty default list is simply left out)
    assert errors == {} and params == {k: v for k, v in sf.defaults(spec).items() if v != []}


def test_the_defaults_a_new_form_starts_with_satisfy_the_schema_but_for_required_values() -> None:
    for name, parameters_schema in all_sample_schemas():
        if name == "postgresql/hobby/create":  # the sample catalog's own slip: default 10 GB, maximum 1 GB
            continue
        errors = schema_errors(parameters_schema, sf.defaults(sf.build_form(parameters_schema)))
        assert all("is a required property" in e for e in errors), (name, errors)


def test_postgres_create_fields() -> None:
    fields = by_path(sf.build_form(PG_CREATE))
    name = fields["database_name"]
    assert (name.kind, name.label, name.help, name.required) == ("string", "Database name", "Name of the initial database.",
                                                                True)
    assert (name.pattern, name.min_length, name.max_length) == ("^[a-z_][a-z0-9_]*$", 1, 63)
    version = fields["version"]
    assert (version.kind, version.choices, version.default, version.has_default) == ("enum", ["13", "14", "15", "16"], "16",
                                                                                     True)
    storage = fields["storage_gb"]
    assert (storage.kind, storage.minimum, storage.maximum, storage.default, storage.step) == ("integer", 1, 100, 10, "1")
    assert storage.hint == "Between 1 and 100." and storage.input_type == "number"
    extensions = fields["extensions"]
    assert extensions.kind == "multienum" and extensions.unique_items and extensions.item is not None
    assert [v for v, _ in extensions.options] == ["postgis", "pg_trgm", "uuid-ossp", "hstore", "pgcrypto"]
    backup = fields["backup"]
    assert backup.kind == "object" and backup.label == "Backups" and backup.help == "Automated daily backups."
    assert [c.path for c in backup.children] == ["backup.enabled", "backup.retention_days", "backup.window"]
    assert fields["backup.retention_days"].hint == "Between 1 and 35." and fields["backup.window"].pattern
    public = fields["public_access"]
    assert public.kind == "boolean" and not public.tristate and public.default is False


def test_arrays_become_checkboxes_rows_or_a_list() -> None:
    s3 = by_path(sf.build_form(S3_CREATE))
    rules = s3["lifecycle_rules"]
    assert rules.kind == "rows" and rules.max_items == 10 and rules.item is not None
    assert [c.path for c in rules.item.children] == ["lifecycle_rules.*.prefix", "lifecycle_rules.*.expire_after_days"]
    assert all(c.required for c in rules.item.children) and rules.hint == "At most 10 rows."
    mq = by_path(sf.build_form(MQ_CREATE))
    assert mq["queues"].kind == "rows" and mq["plugins"].kind == "multienum"
    assert mq["queues.*.type"].label == "Type" and mq["queues.*.type"].default == "quorum"  # label from the name
    redis = by_path(sf.build_form(REDIS_BIND))
    assert redis["acl_categories"].kind == "multienum" and redis["acl_categories"].hint == "At least 1 choice."
    strings = sf.build_form({"type": "object", "properties": {"hosts": {"type": "array", "items": {"type": "string"}},
                                                              "ports": {"type": "array", "items": {"type": "integer"}}}})
    assert [f.kind for f in strings.fields] == ["list", "list"]


def test_labels_come_from_the_title_or_the_name() -> None:
    spec = sf.build_form({"type": "object", "properties": {"max_connections": {"type": "integer"},
                                                           "read-only": {"type": "boolean", "title": "Read only?"}}})
    assert [f.label for f in spec.fields] == ["Max connections", "Read only?"]


def test_update_forms_prefill_nothing_and_booleans_can_stay_unset() -> None:
    spec = sf.build_form(PG_UPDATE, mode="update")
    fields = by_path(spec)
    assert fields["public_access"].tristate and fields["backup.enabled"].tristate
    assert fields["storage_gb"].help == "Storage can only grow."
    create = by_path(sf.build_form({"type": "object", "properties": {"flag": {"type": "boolean"}}}))
    assert create["flag"].tristate  # no default and not required: "not set" is a real choice


@pytest.mark.parametrize(
    ("parameters_schema", "reason"),
    [
        ({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}}, "'oneOf'"),
        ({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}, "'anyOf'"),
        ({"type": "object", "properties": {"a": {"allOf": [{"type": "string"}]}}}, "'allOf'"),
        ({"type": "object", "properties": {"a": {"$ref": "#/definitions/a"}}}, "'$ref'"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}, "properties": {"a": {}}},
         "'patternProperties'"),
        ({"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"not": {"type": "null"}}}}}},
         "'not'"),
        ({"type": "object", "properties": {"a": {"type": "array", "items": [{"type": "string"}]}}}, "tuple"),
        ({"type": "object", "properties": {"a": {"type": ["string", "integer"]}}}, "several types"),
        ({"type": "array", "items": {"type": "string"}}, "not described as an object"),
        ({"type": "object"}, "names no properties"),
        ({"type": "object", "properties": {"a.b": {"type": "string"}}}, "'a.b'"),
        ({"type": "object", "properties": {"a": {"enum": [1, "1"]}}}, "cannot be told apart"),
    ],
)
def test_constructs_the_form_cannot_render_fall_back_to_raw_json(parameters_schema: dict[str, Any], reason: str) -> None:
    spec = sf.build_form(parameters_schema)
    assert not spec.supported and spec.fields == [] and reason in spec.reason


def test_small_variations_are_still_a_form() -> None:
    spec = sf.build_form({
        "type": "object",
        "properties": {
            "nickname": {"type": ["string", "null"]},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "anything": {},
            "answer": {"const": 42},
            "size": {"type": "integer", "enum": [1, 2, 4]},
            "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
            "rate": {"type": "number", "exclusiveMaximum": 10, "multipleOf": 0.5},
        },
    })
    assert spec.supported
    fields = by_path(spec)
    assert fields["nickname"].kind == "string"
    assert fields["labels"].kind == "json" and fields["anything"].kind == "json"
    assert fields["answer"].kind == "enum" and fields["answer"].choices == [42]
    assert fields["size"].options == [("1", "1"), ("2", "2"), ("4", "4")]
    ratio = fields["ratio"]
    assert (ratio.minimum, ratio.exclusive_minimum, ratio.maximum) == (None, 0, 1)  # draft 4's boolean form
    assert ratio.hint == "More than 0, at most 1."
    assert fields["rate"].hint == "Less than 10." and fields["rate"].step == "0.5"


def test_no_schema_or_no_properties_means_no_fields() -> None:
    assert sf.build_form(None).is_empty and sf.build_form({}).is_empty
    assert sf.build_form({"type": "object", "additionalProperties": False, "properties": {}}).is_empty


def test_secret_fields_are_recognised() -> None:
    spec = sf.build_form({"type": "object", "properties": {
        "admin_password": {"type": "string"}, "pin": {"type": "string", "format": "password"},
        "hook": {"type": "string", "writeOnly": True}, "api-key": {"type": "string"}, "client_secret": {"type": "string"},
        "key_prefix": {"type": "string"}, "key_id": {"type": "string"}, "bypass_cache": {"type": "boolean"},
    }})
    secret = {f.key for f in spec.fields if f.secret}
    assert secret == {"admin_password", "pin", "hook", "api-key", "client_secret"}
    assert by_path(spec)["pin"].input_type == "password"


# --- posted data -> typed parameters ---------------------------------------------------------------------------


def test_posted_strings_become_typed_parameters() -> None:
    spec = sf.build_form(PG_CREATE)
    posted = {"database_name": " orders ", "version": "15", "storage_gb": "20", "extensions": ["pg_trgm", "postgis"],
              "backup.enabled": "on", "backup.retention_days": "14", "backup.window": "04:30"}
    params, errors = sf.parse(spec, sf.normalize(spec, posted))
    assert errors == {}
    assert params == {"database_name": "orders", "version": "15", "storage_gb": 20,
                      "extensions": ["postgis", "pg_trgm"],  # in the schema's order
                      "backup": {"enabled": True, "retention_days": 14, "window": "04:30"},
                      "public_access": False}  # an unticked checkbox is sent as false
    assert schema_errors(PG_CREATE, params) == []


def test_empty_inputs_are_left_out() -> None:
    spec = sf.build_form(PG_CREATE)
    params, errors = sf.parse(spec, {"database_name": "", "storage_gb": "  ", "backup.window": ""})
    assert errors == {}
    assert params == {"backup": {"enabled": False}, "public_access": False}  # checkboxes always say something
    # no choice is left out, unless the field is required or its default chooses something
    required = sf.build_form({"type": "object", "required": ["tags"], "properties": {
        "tags": {"type": "array", "items": {"enum": ["a"]}}, "acl": {"type": "array", "items": {"enum": ["r", "w"]},
                                                                     "default": ["r"]}}})
    assert sf.parse(required, {})[0] == {"tags": [], "acl": []}


def test_numbers_booleans_and_choices_are_typed() -> None:
    spec = sf.build_form({"type": "object", "properties": {
        "ttl": {"type": "number"}, "whole": {"type": "number"}, "count": {"type": "integer"},
        "flag": {"type": "boolean"}, "size": {"enum": [1, 2, 4]}, "mode": {"enum": [True, False, None]},
    }})
    params, errors = sf.parse(spec, {"ttl": "0.5", "whole": "720", "count": "-3", "flag": "false", "size": "4",
                                     "mode": "null"})
    assert errors == {}
    assert params == {"ttl": 0.5, "whole": 720, "count": -3, "flag": False, "size": 4, "mode": None}
    assert isinstance(params["whole"], int) and sf.parse(spec, {"flag": ""})[0] == {}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("count", "3.5", "Enter a whole number."),
        ("count", "ten", "Enter a whole number."),
        ("ttl", "fast", "Enter a number."),
        ("ttl", "nan", "Enter a number."),
        ("ttl", "inf", "Enter a number."),
        ("size", "8", "Choose one of the options."),
        ("flag", "maybe", "Choose yes or no."),
        ("extra", "{not json", "Enter valid JSON"),
        ("ports", "80, http", "Item 2: Enter a whole number."),
        ("ports", "[80,", "Enter a JSON array or values separated by commas"),
    ],
)
def test_values_that_cannot_be_typed_get_a_message(field: str, value: str, message: str) -> None:
    spec = sf.build_form({"type": "object", "properties": {
        "ttl": {"type": "number"}, "count": {"type": "integer"}, "flag": {"type": "boolean"}, "size": {"enum": [1, 2]},
        "extra": {"type": "object"}, "ports": {"type": "array", "items": {"type": "integer"}},
    }})
    params, errors = sf.parse(spec, {field: value})
    assert field not in params
    assert errors[field][0].startswith(message)


def test_scalar_arrays_take_commas_or_json() -> None:
    spec = sf.build_form({"type": "object", "properties": {"hosts": {"type": "array", "items": {"type": "string"}},
                                                           "ports": {"type": "array", "items": {"type": "integer"}}}})
    assert sf.parse(spec, {"hosts": "a.example, b.example,", "ports": "80, 443"})[0] == {
        "hosts": ["a.example", "b.example"], "ports": [80, 443]}
    assert sf.parse(spec, {"hosts": '["a,b", "c"]'})[0] == {"hosts": ["a,b", "c"]}
    data, lost = sf.flatten(spec, {"hosts": ["a,b", "c"], "ports": [80, 443]})
    assert data == {"hosts": ['["a,b", "c"]'], "ports": ["80, 443"]} and lost == []


def test_an_empty_string_can_be_a_choice() -> None:
    spec = sf.build_form(MQ_BIND)
    tags = spec.fields[0]
    assert tags.options[0] == ("", "(none)") and not tags.has_empty_option
    assert sf.parse(spec, {"tags": ""})[0] == {"tags": ""}
    assert sf.parse(spec, {"tags": "monitoring", "configure_regexp": ".*"})[0] == {"tags": "monitoring",
                                                                                   "configure_regexp": ".*"}


def test_secrets_are_taken_as_typed() -> None:
    spec = sf.build_form({"type": "object", "properties": {"password": {"type": "string"}, "name": {"type": "string"}}})
    assert sf.parse(spec, {"password": "  spaced  ", "name": "  n  "})[0] == {"password": "  spaced  ", "name": "n"}


def test_rows_are_renumbered_in_posted_order() -> None:
    spec = sf.build_form(S3_CREATE)
    posted = {"lifecycle_rules.__rows": ["3", "0"], "lifecycle_rules.0.prefix": "a/",
              "lifecycle_rules.0.expire_after_days": "1", "lifecycle_rules.3.prefix": "b/",
              "lifecycle_rules.3.expire_after_days": "2", "stray": "ignored"}
    data = sf.normalize(spec, posted)
    assert data["lifecycle_rules.__rows"] == ["0", "1"] and data["lifecycle_rules.0.prefix"] == ["b/"]
    assert "stray" not in data
    params, errors = sf.parse(spec, data)
    assert errors == {} and params["lifecycle_rules"] == [{"prefix": "b/", "expire_after_days": 2},
                                                          {"prefix": "a/", "expire_after_days": 1}]
    added = sf.add_row(spec, data, "lifecycle_rules")
    assert added["lifecycle_rules.__rows"] == ["0", "1", "2"]
    assert sf.parse(spec, added)[0]["lifecycle_rules"][2] == {}  # an empty row is sent (and flagged by the schema)
    queues = sf.build_form(MQ_CREATE)
    added = sf.add_row(queues, {}, "queues")  # a new row starts with the items' defaults
    assert sf.parse(queues, added)[0] == {"queues": [{"durable": True, "type": "quorum"}]}
    removed = sf.remove_row(spec, data, "lifecycle_rules", 0)
    assert removed["lifecycle_rules.__rows"] == ["0"] and removed["lifecycle_rules.0.prefix"] == ["a/"]


def test_nested_rows_and_objects_in_rows() -> None:
    nested = {"type": "object", "properties": {"groups": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"},
        "members": {"type": "array", "items": {"type": "object", "properties": {"user": {"type": "string"}}}},
        "limits": {"type": "object", "properties": {"cpu": {"type": "number"}}},
    }}}}}
    spec = sf.build_form(nested)
    assert spec.supported
    params = {"groups": [{"name": "a", "members": [{"user": "x"}, {"user": "y"}], "limits": {"cpu": 0.5}},
                         {"name": "b"}]}
    assert roundtrip(spec, params) == (params, {})


# --- typed parameters -> form data ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters_schema", "params"),
    [
        (PG_CREATE, {"database_name": "app", "version": "14", "storage_gb": 3, "extensions": ["hstore"],
                     "backup": {"enabled": False, "retention_days": 30, "window": "01:00"}, "public_access": True}),
        (S3_CREATE, {"bucket_name": "b-1", "region": "us-east", "versioning": True, "public_read": False,
                     "lifecycle_rules": [{"prefix": "x/", "expire_after_days": 7}]}),
        (MQ_CREATE, {"vhost": "v", "queues": [{"name": "q1", "durable": False, "max_length": 10, "type": "stream"}],
                     "plugins": ["mqtt"]}),
        (DW_CREATE, {"warehouse_name": "wh1", "compute_units": 4, "auto_suspend_minutes": 2.5,
                     "sources": [{"kind": "s3", "uri": "s3://b", "schedule": "0 * * * *"}],
                     "encryption": {"customer_managed_key": True, "key_id": "kms-12345"}}),
        (S3_BIND, {"permissions": "read-only", "key_ttl_hours": 0.5}),
    ],
)
def test_parameters_survive_a_trip_through_the_form(parameters_schema: dict[str, Any], params: dict[str, Any]) -> None:
    spec = sf.build_form(parameters_schema)
    assert roundtrip(spec, params) == (params, {})
    assert schema_errors(parameters_schema, params) == []


def test_flatten_reports_what_the_form_cannot_show() -> None:
    spec = sf.build_form(PG_CREATE)
    _, lost = sf.flatten(spec, {"database_name": "x", "surprise": 1, "backup": {"enabled": "yes", "extra": 1},
                                "storage_gb": "ten", "version": "9", "extensions": ["nope"]})
    assert sorted(lost) == ["backup.enabled", "backup.extra", "extensions", "storage_gb", "surprise", "version"]


def test_defaults_of_a_schema() -> None:
    assert sf.defaults(sf.build_form(PG_CREATE)) == {
        "version": "16", "storage_gb": 10, "extensions": [], "public_access": False,
        "backup": {"enabled": True, "retention_days": 7, "window": "03:00"}}
    assert sf.defaults(sf.build_form(PG_UPDATE, mode="update"))["backup"]["retention_days"] == 7


def test_an_update_sends_only_what_changed() -> None:
    current = {"database_name": "app", "storage_gb": 10, "backup": {"enabled": True, "retention_days": 7},
               "plugins": ["mqtt"]}
    new = {"storage_gb": 20, "backup": {"enabled": True, "retention_days": 14}, "public_access": False,
           "plugins": ["mqtt"], "extensions": []}
    # A change inside an object sends the object whole (brokers often replace top-level keys).
    assert sf.changes(new, current) == {"storage_gb": 20, "backup": {"enabled": True, "retention_days": 14},
                                        "public_access": False}
    assert sf.changes({"backup": {"enabled": True, "retention_days": 7}}, current) == {}
    assert sf.changes({"storage_gb": 10.0}, {"storage_gb": 10}) == {"storage_gb": 10.0}
    assert sf.changes({"plugins": []}, current) == {"plugins": []}  # emptied on purpose
    assert deep_merge(current, {"backup": {"window": "02:00"}})["backup"] == {"enabled": True, "retention_days": 7,
                                                                                "window": "02:00"}


# --- the service's messages, beside their fields ----------------------------------------------------------------


def test_schema_messages_are_mapped_to_fields_and_reworded() -> None:
    spec = sf.build_form(PG_CREATE)
    params = {"database_name": "Bad-Name", "storage_gb": 500, "extensions": ["postgis", "oracle"],
              "backup": {"retention_days": 0, "window": "25:00"}, "mystery": True}
    fields, rest = sf.map_errors(spec, schema_errors(PG_CREATE, params))
    assert fields == {
        "database_name": ["Not in the expected format. Start with a lowercase letter or “_”, then use only "
                          "lowercase letters, digits or “_”."],
        "storage_gb": ["Must be at most 100."],
        "extensions": ["An item: Choose one of the options."],
        "backup.retention_days": ["Must be at least 1."],
        "backup.window": ["Not in the expected format: Backup window start (UTC, HH:MM)."],
    }
    assert len(rest) == 1 and "'mystery' was unexpected" in rest[0]


def test_required_messages_land_on_the_missing_field_even_in_rows() -> None:
    spec = sf.build_form(S3_CREATE)
    params = {"lifecycle_rules": [{"prefix": "a/", "expire_after_days": 1}, {"prefix": "b/"}]}
    fields, rest = sf.map_errors(spec, schema_errors(S3_CREATE, params))
    assert fields == {"bucket_name": ["This field is required."],
                      "lifecycle_rules.1.expire_after_days": ["This field is required."]}
    assert rest == []
    fields, _ = sf.map_errors(spec, schema_errors(S3_CREATE, {"bucket_name": "ab", "lifecycle_rules": [{}] * 11}))
    assert "Must be at least 3 characters." in fields["bucket_name"]
    assert fields["lifecycle_rules"] == ["At most 10 allowed."]


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ({"type": "integer", "exclusiveMinimum": 0}, 0, "Must be greater than 0."),
        ({"type": "integer", "exclusiveMaximum": 5}, 5, "Must be less than 5."),
        ({"type": "number", "multipleOf": 0.5}, 0.3, "Must be a multiple of 0.5."),
        ({"type": "integer"}, "x", "Must be a whole number."),
        ({"type": "string", "maxLength": 3}, "abcd", "Must be at most 3 characters."),
        ({"type": "string", "format": "email"}, "nope", "Must be a valid email."),
        ({"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1}, [], "Choose at least 1."),
        ({"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True}, ["a", "a"],
         "Each value may appear only once."),
    ],
)
def test_messages_are_reworded_for_people(prop: dict[str, Any], value: Any, expected: str) -> None:
    parameters_schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                         "properties": {"v": prop}}
    fields, rest = sf.map_errors(sf.build_form(parameters_schema), schema_errors(parameters_schema, {"v": value}))
    assert fields == {"v": [expected]} and rest == []


def test_a_secret_value_is_never_repeated_in_a_message() -> None:
    parameters_schema = {"type": "object", "properties": {"password": {"type": "string", "enum": ["a"]}}}
    fields, _ = sf.map_errors(sf.build_form(parameters_schema), ["password: 'hunter2' is weird in some new way"])
    assert fields == {"password": ["This value is not accepted."]}


def test_messages_without_a_field_stay_above_the_form() -> None:
    spec = sf.build_form(PG_CREATE)
    fields, rest = sf.map_errors(spec, ["Parameters must be a JSON object.", "nowhere.deep: is odd"])
    assert fields == {} and rest == ["Parameters must be a JSON object.", "nowhere.deep: is odd"]


def test_find_field_walks_objects_and_rows() -> None:
    spec = sf.build_form(MQ_CREATE)
    assert sf.find_field(spec, "queues.2.name")[1] == "queues.2.name"
    assert sf.find_field(spec, "queues.2")[1] == "queues.2"
    assert sf.find_field(spec, "plugins.0")[1] == "plugins"
    assert sf.find_field(spec, "nothing") == (None, "")


# --- secrets ------------------------------------------------------------------------------------------------------


def test_secrets_are_masked_in_a_preview() -> None:
    parameters_schema = {"type": "object", "properties": {
        "pin": {"type": "string", "format": "password"}, "hook": {"type": "string", "writeOnly": True},
        "users": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        "tls": {"type": "object", "properties": {"private_key": {"type": "string"}}},
    }}
    params = {"pin": "1234", "hook": "https://x", "users": [{"name": "a", "password": "p"}],
              "tls": {"private_key": "-----BEGIN"}, "api_token": "t", "empty_secret": "", "plain": "ok",
              "credentials": {"user": "u"}}
    masked = sf.mask_secrets(parameters_schema, params)
    assert masked == {"pin": sf.MASK, "hook": sf.MASK, "users": [{"name": "a", "password": sf.MASK}],
                      "tls": {"private_key": sf.MASK}, "api_token": sf.MASK, "empty_secret": "", "plain": "ok",
                      "credentials": sf.MASK}
    assert params["pin"] == "1234"  # a copy
    assert sf.mask_secrets(None, {"password": "x"}) == {"password": sf.MASK}


# --- what the templates render -----------------------------------------------------------------------------------


def test_bound_fields_carry_names_values_and_errors() -> None:
    spec = sf.build_form(S3_CREATE)
    data = sf.normalize(spec, {"bucket_name": "x", "lifecycle_rules.__rows": ["0"], "lifecycle_rules.0.prefix": "p/",
                               "versioning": "on"})
    bound = {b.path: b for b in sf.bind(spec, data, {"bucket_name": ["Too short."],
                                                     "lifecycle_rules.0.expire_after_days": ["Required."]},
                                        prefix="p.")}
    bucket = bound["bucket_name"]
    assert (bucket.name, bucket.id, bucket.value, bucket.errors) == ("p.bucket_name", "id_p-bucket_name", "x",
                                                                     ["Too short."])
    assert bucket.describedby == "id_p-bucket_name-help id_p-bucket_name-error"
    assert bound["versioning"].checked and not bound["public_read"].checked
    rules = bound["lifecycle_rules"]
    assert rules.rows_name == "p.lifecycle_rules.__rows" and [r.index for r in rules.rows] == [0]
    row = rules.rows[0]
    assert [c.name for c in row.children] == ["p.lifecycle_rules.0.prefix", "p.lifecycle_rules.0.expire_after_days"]
    assert row.children[0].value == "p/" and row.children[1].errors == ["Required."] and rules.has_errors
    assert rules.can_add_row


def test_a_select_offers_not_set_only_when_nothing_fills_it() -> None:
    fields = by_path(sf.build_form({"type": "object", "required": ["b"], "properties": {
        "a": {"enum": ["x", "y"], "default": "x"}, "b": {"enum": ["x", "y"]}, "c": {"enum": ["x", "y"]}}}))
    assert not fields["a"].has_empty_option and fields["b"].has_empty_option and fields["c"].has_empty_option
    assert by_path(sf.build_form({"type": "object", "properties": {"a": {"enum": ["x"], "default": "x"}}},
                                 mode="update"))["a"].has_empty_option  # an update may leave it alone
