"""Catalog checks: what a catalog document says about its broker's care for the spec and the profile.

They run on every document fetched, also one the mirror rejects (brokers.services stores the results), and
tolerate any shape: a check that cannot apply to a broken document simply finds nothing to check.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokers.catalog import _SEMVER, KNOWN_REQUIRES, MAX_SCHEMA_BYTES, SCHEMA_PATHS, _check_schema, _Checker
from brokers.conformance import PROFILE, SPEC, Check, CheckResult

CLI_FRIENDLY = re.compile(r"^[A-Za-z0-9.-]+$")
RECOMMENDED_LENGTH = 255
SERVICE_METADATA = ("displayName", "imageUrl", "longDescription", "providerDisplayName", "documentationUrl",
                    "supportUrl")
SERVICE_FLAGS = ("bindable", "instances_retrievable", "bindings_retrievable", "allow_context_updates",
                 "plan_updateable")
PLAN_FLAGS = ("free", "bindable", "plan_updateable", "binding_rotatable")


@dataclass
class Plan:
    label: str
    service: dict[str, Any]
    data: dict[str, Any]


class Catalog:
    """The document's services and plans (objects only), each with a label for messages."""

    def __init__(self, document: dict[str, Any], schema_memo: dict[int, str | None] | None = None) -> None:
        services = document.get("services")
        self.entries: list[Any] = services if isinstance(services, list) else []
        self.services: list[tuple[str, dict[str, Any]]] = []
        self.plans: list[Plan] = []
        self._plans_by_service: dict[int, list[Plan]] = {}
        self.schema_memo = schema_memo
        for index, service in enumerate(self.entries):
            if not isinstance(service, dict):
                continue
            label = _label("service", index, service)
            self.services.append((label, service))
            own = self._plans_by_service.setdefault(id(service), [])
            plans = service.get("plans")
            for plan_index, plan in enumerate(plans if isinstance(plans, list) else []):
                if isinstance(plan, dict):
                    own.append(Plan(f"{label}, " + _label("plan", plan_index, plan), service, plan))
            self.plans += own

    def plans_of(self, service: dict[str, Any]) -> list[Plan]:
        return self._plans_by_service.get(id(service), [])

    @property
    def size(self) -> str:
        return f"{len(self.services)} service(s) and {len(self.plans)} plan(s)"


def _label(kind: str, index: int, obj: dict[str, Any]) -> str:
    name = obj.get("name")
    return f"{kind} '{name}'" if isinstance(name, str) and name else f"{kind} {index + 1}"


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, dict) else {}


# --- the checks, each a function of the catalog returning its problems ---------------------------------------------


def _required_fields(catalog: Catalog) -> list[str]:
    problems = [f"service {index + 1} is not an object" for index, s in enumerate(catalog.entries)
                if not isinstance(s, dict)]
    for label, service in catalog.services:
        missing = [key for key in ("id", "name", "description") if _text(service, key) is None]
        if not isinstance(service.get("bindable"), bool):
            missing.append("bindable")
        plans = service.get("plans")
        if not isinstance(plans, list) or not plans:
            missing.append("plans (at least one)")
        elif any(not isinstance(plan, dict) for plan in plans):
            problems.append(f"{label}: a plan is not an object")
        if missing:
            problems.append(f"{label} lacks {', '.join(missing)}")
    for plan in catalog.plans:
        missing = [key for key in ("id", "name", "description") if _text(plan.data, key) is None]
        if missing:
            problems.append(f"{plan.label} lacks {', '.join(missing)}")
    return problems


def _duplicates(values: list[tuple[str, Any]], what: str) -> list[str]:
    counts = Counter(value for _, value in values if isinstance(value, str) and value)
    return [f"{what} '{value}' is used {count} times" for value, count in counts.items() if count > 1]


def _unique_service_ids(catalog: Catalog) -> list[str]:
    return _duplicates([(label, s.get("id")) for label, s in catalog.services], "service id")


def _unique_plan_ids(catalog: Catalog) -> list[str]:
    return _duplicates([(p.label, p.data.get("id")) for p in catalog.plans], "plan id")


def _unique_service_names(catalog: Catalog) -> list[str]:
    return _duplicates([(label, s.get("name")) for label, s in catalog.services], "service name")


def _unique_plan_names(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        names = [(p.label, p.data.get("name")) for p in catalog.plans_of(service)]
        problems += [f"{label}: {problem}" for problem in _duplicates(names, "plan name")]
    return problems


def _names(catalog: Catalog) -> list[tuple[str, Any]]:
    return [(label, s.get("name")) for label, s in catalog.services] + [(p.label, p.data.get("name"))
                                                                        for p in catalog.plans]


def _cli_friendly_names(catalog: Catalog) -> list[str]:
    return [f"{label}: '{name}' is not CLI-friendly" for label, name in _names(catalog)
            if isinstance(name, str) and name and not CLI_FRIENDLY.match(name)]


def _guid_ids(catalog: Catalog) -> list[str]:
    ids = [(label, s.get("id")) for label, s in catalog.services] + [(p.label, p.data.get("id"))
                                                                     for p in catalog.plans]
    problems = []
    for label, value in ids:
        if isinstance(value, str) and value:
            try:
                uuid.UUID(value)
            except ValueError:
                problems.append(f"{label}: id '{value[:60]}' is not a GUID")
    return problems


def _string_length(catalog: Catalog) -> list[str]:
    objects = [(label, s) for label, s in catalog.services] + [(p.label, p.data) for p in catalog.plans]
    return [f"{label}: its {key} has {len(obj[key])} characters" for label, obj in objects
            for key in ("name", "description") if isinstance(obj.get(key), str) and len(obj[key]) > RECOMMENDED_LENGTH]


def _field_types(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        problems += [f"{label}: '{key}' is not true or false" for key in SERVICE_FLAGS[1:]
                     if key in service and not isinstance(service[key], bool)]
        problems += [f"{label}: '{key}' is not an array of strings" for key in ("tags", "requires")
                     if key in service and not (isinstance(service[key], list)
                                                and all(isinstance(t, str) for t in service[key]))]
        problems += [f"{label}: '{key}' is not an object" for key in ("metadata", "dashboard_client")
                     if service.get(key) is not None and not isinstance(service[key], dict)]
    for plan in catalog.plans:
        problems += [f"{plan.label}: '{key}' is not true or false" for key in PLAN_FLAGS
                     if key in plan.data and not isinstance(plan.data[key], bool)]
        problems += [f"{plan.label}: '{key}' is not an object" for key in ("metadata", "schemas", "maintenance_info")
                     if plan.data.get(key) is not None and not isinstance(plan.data[key], dict)]
    return problems


def _requires(catalog: Catalog) -> list[str]:
    return [f"{label} requires '{item}'" for label, service in catalog.services
            for item in (service.get("requires") if isinstance(service.get("requires"), list) else [])
            if item not in KNOWN_REQUIRES]


def _tags(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        tags = service.get("tags")
        tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        if not tags:
            problems.append(f"{label} has no tags")
        elif any(not tag.strip() for tag in tags):
            problems.append(f"{label} has an empty tag")
        elif len({tag.lower() for tag in tags}) < len(tags):
            problems.append(f"{label} repeats a tag")
    return problems


def _service_metadata(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        missing = [f"metadata.{key}" for key in SERVICE_METADATA if _text(_metadata(service), key) is None]
        if missing:
            problems.append(f"{label} lacks {', '.join(missing)}")
    return problems


def _is_web_url(value: str) -> bool:
    return re.match(r"^https?://[^\s/?#]+[^\s]*$", value) is not None


def _metadata_urls(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        metadata = _metadata(service)
        image = _text(metadata, "imageUrl")
        if image is not None and not (_is_web_url(image) or image.startswith("data:image/")):
            problems.append(f"{label}: metadata.imageUrl '{image[:60]}' is neither an http(s) URL nor a data URL")
        for key in ("documentationUrl", "supportUrl"):
            value = _text(metadata, key)
            if value is not None and not _is_web_url(value):
                problems.append(f"{label}: metadata.{key} '{value[:60]}' is not an http(s) URL")
    return problems


def _plan_metadata(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        metadata = _metadata(plan.data)
        bullets = metadata.get("bullets")
        missing = [] if _text(metadata, "displayName") else ["metadata.displayName"]
        if not (isinstance(bullets, list) and bullets and all(isinstance(b, str) and b.strip() for b in bullets)):
            missing.append("metadata.bullets")
        if missing:
            problems.append(f"{plan.label} lacks {', '.join(missing)}")
    return problems


def _cost_problem(cost: Any) -> str | None:
    if not isinstance(cost, dict):
        return "a cost is not an object"
    amount = cost.get("amount")
    if not isinstance(amount, dict) or not amount:
        return "a cost has no 'amount' object"
    if any(not isinstance(v, int | float) or isinstance(v, bool) for v in amount.values()):
        return "a cost amount is not a number"
    if _text(cost, "unit") is None:
        return "a cost has no 'unit'"
    return None


def _cost_objects(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        costs = _metadata(plan.data).get("costs")
        if costs is None:
            continue
        if not isinstance(costs, list):
            problems.append(f"{plan.label}: metadata.costs is not an array")
            continue
        found = {problem for problem in map(_cost_problem, costs) if problem}
        problems += [f"{plan.label}: {problem}" for problem in sorted(found)]
    return problems


def _paid_plans_priced(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        costs = _metadata(plan.data).get("costs")
        priced = isinstance(costs, list) and any(
            isinstance(c, dict) and isinstance(c.get("amount"), dict)
            and any(isinstance(v, int | float) and v > 0 for v in c["amount"].values()) for c in costs)
        if plan.data.get("free") is False and not priced:
            problems.append(f"{plan.label} is not free but lists no cost")
        elif plan.data.get("free", True) is True and priced:
            problems.append(f"{plan.label} is free but lists a cost")
    return problems


def _schemas(catalog: Catalog) -> list[str]:
    checker = _Checker(catalog.schema_memo)
    for plan in catalog.plans:
        schemas = plan.data.get("schemas")
        for outer, inner in SCHEMA_PATHS:
            section = schemas.get(outer) if isinstance(schemas, dict) else None
            step = section.get(inner) if isinstance(section, dict) else None
            if isinstance(step, dict) and "parameters" in step:
                _check_schema(checker, step["parameters"], f"{plan.label}, schemas.{outer}.{inner}")
    return checker.problems


def _maintenance_info(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        info = plan.data.get("maintenance_info")
        if isinstance(info, dict):
            version = info.get("version")
            if not isinstance(version, str) or not _SEMVER.match(version):
                problems.append(f"{plan.label}: maintenance_info.version {version!r} is not a semantic version")
    return problems


def _maintenance_description(catalog: Catalog) -> list[str]:
    return [f"{plan.label}: maintenance_info has no description" for plan in catalog.plans
            if isinstance(plan.data.get("maintenance_info"), dict)
            and _text(plan.data["maintenance_info"], "description") is None]


def _effective(plan: Plan, key: str) -> bool:
    value = plan.data.get(key)
    return value if isinstance(value, bool) else plan.service.get(key) is True


def _bindable_consistency(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        if _effective(plan, "bindable"):
            continue
        schemas = plan.data.get("schemas")
        if isinstance(schemas, dict) and schemas.get("service_binding"):
            problems.append(f"{plan.label} is not bindable but has a binding schema")
        if plan.data.get("binding_rotatable") is True:
            problems.append(f"{plan.label} is not bindable but says binding_rotatable")
    for label, service in catalog.services:
        plans = catalog.plans_of(service)
        if service.get("bindings_retrievable") is True and plans and not any(_effective(p, "bindable") for p in plans):
            problems.append(f"{label} says bindings_retrievable but none of its plans is bindable")
    return problems


def _updateable_consistency(catalog: Catalog) -> list[str]:
    return [f"{plan.label} says plan_updateable but is the only plan of its service" for plan in catalog.plans
            if _effective(plan, "plan_updateable") and len(catalog.plans_of(plan.service)) == 1]


def _polling_duration(catalog: Catalog) -> list[str]:
    problems = []
    for plan in catalog.plans:
        value = plan.data.get("maximum_polling_duration")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            problems.append(f"{plan.label}: maximum_polling_duration {value!r} is not a positive whole number")
    return problems


def _dashboard_client(catalog: Catalog) -> list[str]:
    problems = []
    for label, service in catalog.services:
        client = service.get("dashboard_client")
        if isinstance(client, dict):
            missing = [key for key in ("id", "secret") if _text(client, key) is None]
            if missing:
                problems.append(f"{label}: dashboard_client lacks {', '.join(missing)}")
    return problems


# --- the registry ---------------------------------------------------------------------------------------------

DOCUMENT = Check(
    "catalog.document", "The catalog is a JSON object with a services array", "error",
    SPEC + "Catalog Management > Response",
    "200 OK MUST be returned upon successful processing of this request … services* | array of Service Offering "
    "objects",
    "Answer GET /v2/catalog with 200 and a JSON object whose 'services' is an array.",
)

CHECKS: list[tuple[Check, Callable[[Catalog], list[str]], str]] = [
    (Check("catalog.required-fields", "Services and plans have their required fields", "error",
           SPEC + "Service Offering Object, Service Plan Object",
           "name*, id*, description* … MUST be a non-empty string … bindable* … plans* … MUST contain at least one "
           "Service Plan. Fields with an asterisk are REQUIRED.",
           "Give every service an id, name, description, bindable and at least one plan, and every plan an id, "
           "name and description."),
     _required_fields, "Every service and plan has its required fields."),
    (Check("catalog.unique-service-ids", "Service ids are unique", "error", SPEC + "Service Offering Object",
           "id* … This MUST be globally unique",
           "Give each service its own id, and never change it between catalog fetches."),
     _unique_service_ids, "No two services share an id."),
    (Check("catalog.unique-plan-ids", "Plan ids are unique", "error", SPEC + "Service Plan Object",
           "id* … This MUST be globally unique such that Platforms … MUST be able to assume that seeing the same "
           "value … will always refer to this Service Plan",
           "Give each plan its own id across the whole catalog."),
     _unique_plan_ids, "No two plans share an id."),
    (Check("catalog.unique-service-names", "Service names are unique", "error", SPEC + "Service Offering Object",
           "name* … MUST be unique across all Service Offering objects returned in this response.",
           "Rename the services that share a name."),
     _unique_service_names, "No two services share a name."),
    (Check("catalog.unique-plan-names", "Plan names are unique within their service", "error",
           SPEC + "Service Plan Object", "name* … MUST be unique within the Service Offering.",
           "Rename the plans that share a name within a service."),
     _unique_plan_names, "No service has two plans of the same name."),
    (Check("catalog.cli-friendly-names", "Names are CLI-friendly", "warning", SPEC + "Catalog Management > Body",
           "a \"CLI-friendly\" string … MUST only use alphanumeric characters, periods, and hyphens, with no spaces "
           "… Using a CLI-friendly name is RECOMMENDED.",
           "Use only letters, digits, periods and hyphens in names; put the pretty name in metadata.displayName."),
     _cli_friendly_names, "Every service and plan name is CLI-friendly."),
    (Check("catalog.guid-ids", "Ids are GUIDs", "info", SPEC + "Service Offering Object, Service Plan Object",
           "Using a GUID is RECOMMENDED.", "Use GUIDs (UUIDs) as service and plan ids."),
     _guid_ids, "Every id is a GUID."),
    (Check("catalog.string-length", "Names and descriptions are at most 255 characters", "info",
           SPEC + "Catalog Management",
           "It is RECOMMENDED that strings do not exceed 255 characters to increase the likelihood of having "
           "compatibility with any Platform.",
           "Shorten them; put longer text in metadata.longDescription."),
     _string_length, "Every name and description fits in 255 characters."),
    (Check("catalog.field-types", "Optional fields have the types the spec gives them", "error",
           SPEC + "Service Offering Object, Service Plan Object",
           "tags | array of strings … instances_retrievable | boolean … metadata | object … free | boolean … "
           "schemas | Schemas",
           "Send booleans as true or false, tags and requires as arrays of strings, metadata and schemas as "
           "objects."),
     _field_types, "Every optional field has its type."),
    (Check("catalog.requires", "Services require only permissions the spec knows", "warning",
           SPEC + "Service Offering Object",
           "The only permissions currently supported are syslog_drain, route_forwarding and volume_mount.",
           "Remove the other entries from 'requires'."),
     _requires, "No service requires an unknown permission."),
    (Check("catalog.tags", "Services are tagged", "info", SPEC + "Service Offering Object",
           "Tags provide a flexible mechanism to expose a classification, attribute, or base technology of a "
           "service … E.g. mysql, relational, redis, key-value, caching",
           "Give each service a few distinct, non-empty tags (its technology and category)."),
     _tags, "Every service has distinct tags."),
    (Check("catalog.service-metadata", "Services carry the profile's display metadata", "warning",
           PROFILE + "Service Metadata",
           "it is RECOMMENDED that the following names be used … metadata.displayName, metadata.imageUrl, "
           "metadata.longDescription, metadata.providerDisplayName, metadata.documentationUrl, metadata.supportUrl",
           "Add the missing metadata: the store shows each of them."),
     _service_metadata, "Every service has displayName, imageUrl, longDescription, providerDisplayName, "
                        "documentationUrl and supportUrl."),
    (Check("catalog.metadata-urls", "Metadata links are usable URLs", "warning", PROFILE + "Service Metadata",
           "metadata.imageUrl | The URL to an image or a data URL containing an image. metadata.documentationUrl | "
           "Link to documentation page for the service. metadata.supportUrl | Link to support page for the service.",
           "Use absolute http(s) URLs (or a data:image/ URL for the image)."),
     _metadata_urls, "Every image, documentation and support link is a usable URL."),
    (Check("catalog.plan-metadata", "Plans carry a display name and bullets", "info", PROFILE + "Plan Metadata Fields",
           "metadata.bullets | Features of this plan, to be displayed in a bulleted-list. metadata.displayName | "
           "Name of the plan to be displayed to clients.",
           "Add metadata.displayName and a few metadata.bullets to each plan: the plan comparison shows them."),
     _plan_metadata, "Every plan has a display name and bullets."),
    (Check("catalog.cost-objects", "Cost objects have an amount and a unit", "warning", PROFILE + "Cost Object",
           "amount* | object | … key is currency code and value (as a float) is currency amount. unit* | string",
           "Write each cost as {\"amount\": {\"usd\": 9.0}, \"unit\": \"MONTHLY\"}."),
     _cost_objects, "Every cost has an amount per currency and a unit."),
    (Check("catalog.paid-plans-priced", "Paid plans say what they cost", "info",
           SPEC + "Service Plan Object; " + PROFILE + "Plan Metadata Fields",
           "free | boolean | When false, Service Instances of this Service Plan have a cost. … metadata.costs | "
           "array-of-objects | … describes the costs of a service",
           "List metadata.costs on each plan with free: false, and no non-zero cost on free plans."),
     _paid_plans_priced, "Paid plans list their costs and free plans none."),
    (Check("catalog.schemas", "Parameter schemas are valid, self-contained and small", "error",
           SPEC + "Input Parameters Schema Object",
           "The $schema key MUST be present in the schema declaring the version of JSON schema being used. Schemas "
           f"MUST NOT contain any external references. Schemas MUST NOT be larger than {MAX_SCHEMA_BYTES // 1024}kB.",
           "Declare $schema, fix what the JSON Schema validator reports, and inline external $refs."),
     _schemas, "Every parameter schema is valid JSON Schema."),
    (Check("catalog.maintenance-info", "maintenance_info versions are semantic versions", "error",
           SPEC + "Maintenance Info Object",
           "version* | string | This MUST be a string conforming to a semantic version 2.0.",
           "Use versions such as 1.4.2 (MAJOR.MINOR.PATCH)."),
     _maintenance_info, "Every maintenance_info has a semantic version."),
    (Check("catalog.maintenance-description", "maintenance_info says what an update changes", "warning",
           SPEC + "Maintenance Info Object",
           "description | string | This SHOULD be a string describing the impact of the maintenance update",
           "Add a description to each maintenance_info: the portal shows it before an upgrade."),
     _maintenance_description, "Every maintenance_info describes its update."),
    (Check("catalog.bindable-consistency", "Binding settings only on bindable plans", "warning",
           SPEC + "Schemas Object, Service Offering Object",
           "service_binding | … The schema definition for creating a Service Binding. Used only if the Service "
           "Plan is bindable.",
           "Remove binding schemas, binding_rotatable and bindings_retrievable where nothing can be bound, or make "
           "the plan bindable."),
     _bindable_consistency, "Binding schemas and flags appear only where plans are bindable."),
    (Check("catalog.updateable-consistency", "plan_updateable where there is another plan", "info",
           SPEC + "Service Plan Object",
           "plan_updateable | boolean | Whether the Plan supports upgrade/downgrade/sidegrade to another version.",
           "Drop plan_updateable from services that have a single plan."),
     _updateable_consistency, "plan_updateable is only set where another plan exists."),
    (Check("catalog.polling-duration", "maximum_polling_duration is a number of seconds", "error",
           SPEC + "Service Plan Object",
           "maximum_polling_duration | integer | A duration, in seconds, that the Platform SHOULD use as the "
           "Service's maximum polling duration.",
           "Send a positive whole number of seconds."),
     _polling_duration, "Every maximum_polling_duration is a positive number of seconds."),
    (Check("catalog.dashboard-client", "Dashboard clients have an id and a secret", "warning",
           PROFILE + "Dashboard Client Object",
           "id* | string | The id of the OAuth client … MUST be a non-empty string. secret* | string | A secret for "
           "the dashboard client. … MUST be a non-empty string.",
           "Give each dashboard_client an id and a secret, or leave it out."),
     _dashboard_client, "Every dashboard_client has an id and a secret."),
]
CATALOG_CHECKS = [DOCUMENT, *(check for check, _, _ in CHECKS)]


def check_catalog(document: Any, *, error: str | None = None,
                  schema_memo: dict[int, str | None] | None = None) -> list[CheckResult]:
    """Every catalog check on `document` (None when the answer was not JSON: `error` says why). `schema_memo`:
    shared with brokers.catalog.parse_catalog on the same document object, so each schema is checked once."""
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        why = error or ("the answer is not a JSON object" if not isinstance(document, dict)
                        else "'services' is missing or not an array")
        return [DOCUMENT.failed([why]), *(check.not_observed("the catalog could not be read") for check, _, _ in CHECKS)]
    catalog = Catalog(document, schema_memo)
    results = [DOCUMENT.passed(f"The catalog lists {catalog.size}.")]
    results += [check.outcome(find(catalog), passed) for check, find, passed in CHECKS]
    return results


def not_fetched() -> list[CheckResult]:
    return [check.not_observed("no catalog fetched yet") for check in CATALOG_CHECKS]
