"""Deterministic generator of large, valid OSB catalogs (benchmarks, query-count tests).

>>> catalog = generate_catalog(1000, 5, seed=0)
>>> len(catalog["services"]), len(catalog["services"][0]["plans"])
(1000, 5)

The same arguments always produce the same catalog.  Ids are unique GUIDs,
offering names are unique (``gen-<word>-<n>``), plan names are unique within an
offering.  About a fifth of the plans are asynchronous (they carry
``maximum_polling_duration``), about half have ``metadata.costs`` (``free`` is
``False`` exactly for those).
"""

from __future__ import annotations

import copy
import random
import uuid
from typing import Any

from .catalog import JSON_SCHEMA_DRAFT4

TAG_POOL: tuple[str, ...] = (
    "sql",
    "relational",
    "nosql",
    "document",
    "key-value",
    "caching",
    "in-memory",
    "messaging",
    "queue",
    "streaming",
    "search",
    "analytics",
    "warehouse",
    "storage",
    "object-storage",
    "backup",
    "monitoring",
    "logging",
    "tracing",
    "security",
    "identity",
    "secrets",
    "networking",
    "dns",
    "cdn",
    "ml",
    "ai",
    "graph",
    "time-series",
    "email",
)

_WORDS = (
    "alpha",
    "beacon",
    "cobalt",
    "delta",
    "ember",
    "falcon",
    "granite",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
    "meridian",
    "nimbus",
    "onyx",
    "pulsar",
    "quartz",
    "raven",
    "sierra",
    "tundra",
)

_PLAN_TIERS = (
    "nano",
    "micro",
    "small",
    "medium",
    "large",
    "xlarge",
    "2xlarge",
    "4xlarge",
    "8xlarge",
    "metal",
)

_COST_UNITS = ("MONTHLY", "HOURLY", "GB-MONTH", "1M requests")

# (name, schema) templates used to assemble modest parameter schemas
_PROPERTY_POOL: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        "name",
        {"type": "string", "title": "Name", "pattern": "^[a-z][a-z0-9-]*$", "minLength": 3, "maxLength": 40},
    ),
    ("size_gb", {"type": "integer", "title": "Size (GB)", "minimum": 1, "maximum": 2048, "default": 10}),
    ("replicas", {"type": "integer", "title": "Replicas", "minimum": 0, "maximum": 5, "default": 1}),
    ("ratio", {"type": "number", "title": "Ratio", "minimum": 0, "maximum": 1, "default": 0.5}),
    ("tls", {"type": "boolean", "title": "Require TLS", "default": True}),
    ("public", {"type": "boolean", "title": "Public endpoint", "default": False}),
    (
        "region",
        {
            "type": "string",
            "title": "Region",
            "enum": ["eu-1", "eu-2", "us-1", "us-2", "ap-1"],
            "default": "eu-1",
        },
    ),
    ("tier", {"type": "string", "title": "Performance tier", "enum": ["standard", "premium"]}),
    (
        "labels",
        {
            "type": "array",
            "title": "Labels",
            "items": {"type": "string", "maxLength": 32},
            "maxItems": 10,
            "uniqueItems": True,
        },
    ),
    (
        "maintenance_window",
        {
            "type": "object",
            "title": "Maintenance window",
            "properties": {
                "day": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
                "hour": {"type": "integer", "minimum": 0, "maximum": 23},
            },
            "required": ["day"],
        },
    ),
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _params_schema(rng: random.Random, title: str, count: int, *, require_first: bool) -> dict[str, Any]:
    picked = rng.sample(_PROPERTY_POOL, k=count)
    properties = {name: copy.deepcopy(schema) for name, schema in picked}
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DRAFT4,
        "title": title,
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if require_first and picked[0][1].get("type") == "string" and "enum" not in picked[0][1]:
        schema["required"] = [picked[0][0]]
    return schema


def _plan(
    rng: random.Random, service_name: str, index: int, with_schemas: bool, bindable: bool
) -> dict[str, Any]:
    tier = _PLAN_TIERS[index % len(_PLAN_TIERS)]
    name = tier if index < len(_PLAN_TIERS) else f"{tier}-{index}"
    paid = rng.random() < 0.5
    metadata: dict[str, Any] = {
        "displayName": name.replace("-", " ").title(),
        "bullets": [f"{2 ** (index % 8)} vCPU", f"{4 * (index + 1)} GB RAM", f"{rng.choice(_WORDS)} support"],
    }
    if paid:
        unit = rng.choice(_COST_UNITS)
        metadata["costs"] = [{"amount": {"usd": round(rng.uniform(1, 500), 2)}, "unit": unit}]
        if rng.random() < 0.2:
            metadata["costs"][0]["amount"]["eur"] = round(metadata["costs"][0]["amount"]["usd"] * 0.92, 2)
    plan: dict[str, Any] = {
        "id": _uuid(rng),
        "name": name,
        "description": f"The {name} plan of {service_name}.",
        "free": not paid,
        "metadata": metadata,
    }
    if rng.random() < 0.2:
        plan["maximum_polling_duration"] = rng.choice((300, 600, 1800, 3600))
    if rng.random() < 0.3:
        plan["maintenance_info"] = {"version": f"1.{rng.randint(0, 9)}.{rng.randint(0, 20)}"}
        if rng.random() < 0.5:
            plan["maintenance_info"]["description"] = "OS and engine security patches."
    if rng.random() < 0.1:
        plan["plan_updateable"] = False
    if with_schemas:
        schemas: dict[str, Any] = {
            "service_instance": {
                "create": {
                    "parameters": _params_schema(rng, f"Create {name}", rng.randint(3, 6), require_first=True)
                },
                "update": {
                    "parameters": _params_schema(
                        rng, f"Update {name}", rng.randint(1, 3), require_first=False
                    )
                },
            }
        }
        if bindable:
            schemas["service_binding"] = {
                "create": {"parameters": _params_schema(rng, "Bind", rng.randint(1, 3), require_first=False)}
            }
        plan["schemas"] = schemas
    return plan


def generate_catalog(
    services: int = 1000, plans_per_service: int = 5, *, seed: int = 0, with_schemas: bool = True
) -> dict[str, Any]:
    """Return a large, valid, deterministic OSB catalog."""
    if services < 0 or plans_per_service < 1:
        raise ValueError("services must be >= 0 and plans_per_service >= 1")
    rng = random.Random(seed)
    offerings: list[dict[str, Any]] = []
    for i in range(services):
        word = _WORDS[i % len(_WORDS)]
        name = f"gen-{word}-{i:05d}"
        bindable = rng.random() < 0.85
        tags = sorted(rng.sample(TAG_POOL, k=rng.randint(1, 5)))
        offering: dict[str, Any] = {
            "id": _uuid(rng),
            "name": name,
            "description": f"Generated {word} service number {i}.",
            "tags": tags,
            "bindable": bindable,
            "instances_retrievable": rng.random() < 0.7,
            "bindings_retrievable": bindable and rng.random() < 0.7,
            "plan_updateable": rng.random() < 0.6,
            "allow_context_updates": rng.random() < 0.3,
            "metadata": {
                "displayName": f"{word.title()} {i}",
                "imageUrl": f"https://icons.example.com/generated/{word}.svg",
                "longDescription": (
                    f"{word.title()} {i} is a generated service offering.\n\n"
                    f"It exists to exercise catalogs with {services} offerings."
                ),
                "providerDisplayName": f"{rng.choice(_WORDS).title()} Cloud",
                "documentationUrl": f"https://docs.example.com/generated/{name}",
                "supportUrl": f"https://support.example.com/generated/{name}",
            },
            "plans": [_plan(rng, name, p, with_schemas, bindable) for p in range(plans_per_service)],
        }
        if rng.random() < 0.05:
            offering["requires"] = ["syslog_drain"]
        offerings.append(offering)
    return {"services": offerings}
