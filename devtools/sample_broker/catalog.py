"""The realistic demo catalog served by the sample broker.

``build_catalog(base_url)`` returns a fresh, deeply-copied catalog dict every
time.  ``metadata.imageUrl`` of every offering points at the broker's own
``/icons/<name>.svg`` endpoint, so ``base_url`` must be the URL under which the
broker is reachable by the *client* (the server derives it from the request's
``Host`` header).

Plans that carry ``maximum_polling_duration`` are asynchronous: the broker
answers provision/update/deprovision for them with ``202 Accepted`` (and
``422 AsyncRequired`` without ``accepts_incomplete=true``).  All other plans are
synchronous.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

JSON_SCHEMA_DRAFT4 = "http://json-schema.org/draft-04/schema#"

_NAMESPACE = uuid.UUID("6f1c1b0e-6d0e-4a55-9a47-2f6f0d5a8b10")


def stable_id(*parts: str) -> str:
    """A deterministic GUID derived from ``parts`` (stable across runs)."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


# Offering ids, exported for tests and fixtures.
POSTGRES_ID = stable_id("postgresql")
REDIS_ID = stable_id("redis-cache")
OBJECT_STORAGE_ID = stable_id("object-storage")
RABBITMQ_ID = stable_id("rabbitmq")
SEARCH_ID = stable_id("elasticsearch")
ANALYTICS_ID = stable_id("analytics-warehouse")
STATUS_PAGE_ID = stable_id("status-page")

#: icon file name (without ``.svg``) for every offering name
ICONS: dict[str, str] = {
    "postgresql": "postgresql",
    "redis-cache": "redis",
    "object-storage": "object-storage",
    "rabbitmq": "rabbitmq",
    "elasticsearch": "search",
    "analytics-warehouse": "analytics",
    "status-page": "status-page",
}

#: (uri scheme, port) used when generating binding credentials, by offering name
CREDENTIAL_PROFILES: dict[str, tuple[str, int]] = {
    "postgresql": ("postgres", 5432),
    "redis-cache": ("rediss", 6380),
    "object-storage": ("https", 443),
    "rabbitmq": ("amqps", 5671),
    "elasticsearch": ("https", 9200),
    "analytics-warehouse": ("clickhouse", 9440),
}


def plan_id(service_name: str, plan_name: str) -> str:
    """Id of a plan in the sample catalog."""
    return stable_id(service_name, plan_name)


def _monthly(usd: float) -> list[dict[str, Any]]:
    return [{"amount": {"usd": usd}, "unit": "MONTHLY"}]


def _schema(
    properties: dict[str, Any], required: list[str] | None = None, *, title: str | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DRAFT4,
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if title:
        schema["title"] = title
    if required:
        schema["required"] = required
    return schema


def _schemas(
    create: dict[str, Any] | None,
    update: dict[str, Any] | None = None,
    bind: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    instance: dict[str, Any] = {}
    if create is not None:
        instance["create"] = {"parameters": create}
    if update is not None:
        instance["update"] = {"parameters": update}
    if instance:
        out["service_instance"] = instance
    if bind is not None:
        out["service_binding"] = {"create": {"parameters": bind}}
    return out


# --------------------------------------------------------------------------- #
# PostgreSQL
# --------------------------------------------------------------------------- #

_PG_BACKUP = {
    "type": "object",
    "title": "Backups",
    "description": "Automated daily backups.",
    "properties": {
        "enabled": {"type": "boolean", "title": "Enabled", "default": True},
        "retention_days": {
            "type": "integer",
            "title": "Retention (days)",
            "minimum": 1,
            "maximum": 35,
            "default": 7,
        },
        "window": {
            "type": "string",
            "title": "Backup window start (UTC, HH:MM)",
            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
            "default": "03:00",
        },
    },
    "additionalProperties": False,
}


def _pg_create(max_storage: int) -> dict[str, Any]:
    return _schema(
        {
            "database_name": {
                "type": "string",
                "title": "Database name",
                "description": "Name of the initial database.",
                "pattern": "^[a-z_][a-z0-9_]*$",
                "minLength": 1,
                "maxLength": 63,
            },
            "version": {
                "type": "string",
                "title": "PostgreSQL version",
                "enum": ["13", "14", "15", "16"],
                "default": "16",
            },
            "storage_gb": {
                "type": "integer",
                "title": "Storage (GB)",
                "minimum": 1,
                "maximum": max_storage,
                "default": min(10, max_storage),
            },
            "extensions": {
                "type": "array",
                "title": "Extensions",
                "description": "Extensions installed into the initial database.",
                "items": {
                    "type": "string",
                    "enum": ["postgis", "pg_trgm", "uuid-ossp", "hstore", "pgcrypto"],
                },
                "uniqueItems": True,
                "default": [],
            },
            "backup": _PG_BACKUP,
            "public_access": {
                "type": "boolean",
                "title": "Allow access from outside the platform network",
                "default": False,
            },
        },
        ["database_name"],
        title="Create a PostgreSQL database",
    )


def _pg_update(max_storage: int) -> dict[str, Any]:
    return _schema(
        {
            "storage_gb": {
                "type": "integer",
                "title": "Storage (GB)",
                "description": "Storage can only grow.",
                "minimum": 1,
                "maximum": max_storage,
            },
            "backup": _PG_BACKUP,
            "public_access": {"type": "boolean", "title": "Public access"},
        },
        title="Update a PostgreSQL database",
    )


_PG_BIND = _schema(
    {
        "role": {
            "type": "string",
            "title": "Role",
            "enum": ["readonly", "readwrite", "owner"],
            "default": "readwrite",
        },
        "connection_limit": {
            "type": "integer",
            "title": "Connection limit",
            "minimum": 1,
            "maximum": 500,
            "default": 20,
        },
    },
    title="Bind to PostgreSQL",
)


def _postgres(base_url: str) -> dict[str, Any]:
    name = "postgresql"
    maint = {"version": "1.2.0", "description": "PostgreSQL minor upgrade to 16.3 and OS security patches."}
    return {
        "id": POSTGRES_ID,
        "name": name,
        "description": "Managed PostgreSQL relational databases.",
        "tags": ["postgresql", "sql", "relational", "database"],
        "requires": [],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": True,
        "plan_updateable": True,
        "allow_context_updates": True,
        "metadata": {
            "displayName": "PostgreSQL",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "Fully managed PostgreSQL databases with automated backups, point-in-time "
                "recovery and transparent minor-version upgrades.\n\n"
                "Every instance comes with TLS-only connections, daily snapshots and a "
                "monitoring dashboard. High-availability plans run a synchronous standby "
                "in a second availability zone with automatic fail-over."
            ),
            "providerDisplayName": "Catalog Portal Sample Broker",
            "documentationUrl": "https://docs.example.com/services/postgresql",
            "supportUrl": "https://support.example.com/postgresql",
        },
        "plans": [
            {
                "id": plan_id(name, "hobby"),
                "name": "hobby",
                "description": "Shared PostgreSQL for development, 1 GB storage.",
                "free": True,
                "metadata": {
                    "displayName": "Hobby",
                    "bullets": ["Shared CPU", "1 GB storage", "20 connections", "No backups"],
                },
                "schemas": _schemas(_pg_create(1), _pg_update(1), _PG_BIND),
            },
            {
                "id": plan_id(name, "standard-small"),
                "name": "standard-small",
                "description": "Dedicated PostgreSQL, 2 vCPU, 4 GB RAM.",
                "free": False,
                "maintenance_info": maint,
                "metadata": {
                    "displayName": "Standard Small",
                    "bullets": ["2 vCPU", "4 GB RAM", "Up to 100 GB storage", "Daily backups"],
                    "costs": _monthly(15.0),
                },
                "schemas": _schemas(_pg_create(100), _pg_update(100), _PG_BIND),
            },
            {
                "id": plan_id(name, "standard-large"),
                "name": "standard-large",
                "description": "Dedicated PostgreSQL, 8 vCPU, 32 GB RAM.",
                "free": False,
                "maintenance_info": maint,
                "metadata": {
                    "displayName": "Standard Large",
                    "bullets": ["8 vCPU", "32 GB RAM", "Up to 1 TB storage", "Point-in-time recovery"],
                    "costs": _monthly(120.0),
                },
                "schemas": _schemas(_pg_create(1024), _pg_update(1024), _PG_BIND),
            },
            {
                "id": plan_id(name, "ha-cluster"),
                "name": "ha-cluster",
                "description": "Highly available PostgreSQL cluster with a synchronous standby.",
                "free": False,
                "maximum_polling_duration": 1800,
                "maintenance_info": maint,
                "metadata": {
                    "displayName": "HA Cluster",
                    "bullets": [
                        "Primary + synchronous standby",
                        "Automatic fail-over",
                        "Up to 4 TB storage",
                        "99.95% SLA",
                    ],
                    "costs": [
                        {"amount": {"usd": 450.0, "eur": 415.0}, "unit": "MONTHLY"},
                        {"amount": {"usd": 0.12}, "unit": "GB of storage over 1 TB"},
                    ],
                },
                "schemas": _schemas(_pg_create(4096), _pg_update(4096), _PG_BIND),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# Redis
# --------------------------------------------------------------------------- #


def _redis_create(ha: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "maxmemory_policy": {
            "type": "string",
            "title": "Eviction policy",
            "enum": ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl"],
            "default": "allkeys-lru",
        },
        "persistence": {
            "type": "boolean",
            "title": "Persist to disk (AOF)",
            "default": False,
        },
        "tls": {"type": "boolean", "title": "Require TLS", "default": True},
        "databases": {
            "type": "integer",
            "title": "Number of logical databases",
            "minimum": 1,
            "maximum": 16,
            "default": 16,
        },
    }
    if ha:
        props["replicas"] = {
            "type": "integer",
            "title": "Read replicas",
            "minimum": 1,
            "maximum": 5,
            "default": 1,
        }
    return _schema(props, title="Create a Redis cache")


_REDIS_UPDATE = _schema(
    {
        "maxmemory_policy": {
            "type": "string",
            "title": "Eviction policy",
            "enum": ["noeviction", "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-ttl"],
        },
        "persistence": {"type": "boolean", "title": "Persist to disk (AOF)"},
    },
    title="Update a Redis cache",
)

_REDIS_BIND = _schema(
    {
        "acl_categories": {
            "type": "array",
            "title": "ACL categories",
            "items": {"type": "string", "enum": ["@read", "@write", "@admin", "@pubsub", "@all"]},
            "minItems": 1,
            "default": ["@read", "@write"],
        },
        "key_prefix": {
            "type": "string",
            "title": "Restrict to key prefix",
            "pattern": "^[A-Za-z0-9:_-]*$",
            "maxLength": 64,
        },
    },
    title="Bind to Redis",
)


def _redis(base_url: str) -> dict[str, Any]:
    name = "redis-cache"
    return {
        "id": REDIS_ID,
        "name": name,
        "description": "In-memory Redis key-value cache.",
        "tags": ["redis", "key-value", "caching", "in-memory"],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": True,
        "plan_updateable": True,
        "allow_context_updates": True,
        "metadata": {
            "displayName": "Redis Cache",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "Low-latency Redis caches for sessions, rate limiting and queues.\n\n"
                "Choose an eviction policy per instance; HA plans add replicas with "
                "automatic promotion."
            ),
            "providerDisplayName": "Catalog Portal Sample Broker",
            "documentationUrl": "https://docs.example.com/services/redis",
            "supportUrl": "https://support.example.com/redis",
        },
        "plans": [
            {
                "id": plan_id(name, "cache-free"),
                "name": "cache-free",
                "description": "25 MB shared cache, no persistence.",
                "free": True,
                "metadata": {
                    "displayName": "Free 25 MB",
                    "bullets": ["25 MB memory", "Shared", "10 connections"],
                },
                "schemas": _schemas(_redis_create(False), _REDIS_UPDATE, _REDIS_BIND),
            },
            {
                "id": plan_id(name, "cache-1gb"),
                "name": "cache-1gb",
                "description": "1 GB dedicated cache.",
                "free": False,
                "binding_rotatable": True,
                "metadata": {
                    "displayName": "1 GB",
                    "bullets": ["1 GB memory", "Dedicated", "1,000 connections"],
                    "costs": _monthly(9.0),
                },
                "schemas": _schemas(_redis_create(False), _REDIS_UPDATE, _REDIS_BIND),
            },
            {
                "id": plan_id(name, "cache-8gb-ha"),
                "name": "cache-8gb-ha",
                "description": "8 GB highly available cache with replicas.",
                "free": False,
                "maximum_polling_duration": 900,
                "maintenance_info": {
                    "version": "1.2.0",
                    "description": "Redis 7.2.5 with TLS cipher hardening.",
                },
                "metadata": {
                    "displayName": "8 GB HA",
                    "bullets": ["8 GB memory", "1-5 replicas", "Automatic fail-over"],
                    "costs": _monthly(95.0),
                },
                "schemas": _schemas(_redis_create(True), _REDIS_UPDATE, _REDIS_BIND),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# Object storage
# --------------------------------------------------------------------------- #

_S3_CREATE = _schema(
    {
        "bucket_name": {
            "type": "string",
            "title": "Bucket name",
            "description": "Globally unique, lowercase, 3-63 characters.",
            "pattern": "^[a-z0-9][a-z0-9.-]+[a-z0-9]$",
            "minLength": 3,
            "maxLength": 63,
        },
        "region": {
            "type": "string",
            "title": "Region",
            "enum": ["eu-central", "eu-west", "us-east", "us-west", "ap-south"],
            "default": "eu-central",
        },
        "versioning": {"type": "boolean", "title": "Object versioning", "default": False},
        "public_read": {"type": "boolean", "title": "Public read access", "default": False},
        "lifecycle_rules": {
            "type": "array",
            "title": "Lifecycle rules",
            "maxItems": 10,
            "items": {
                "type": "object",
                "required": ["prefix", "expire_after_days"],
                "additionalProperties": False,
                "properties": {
                    "prefix": {"type": "string", "title": "Key prefix", "maxLength": 256},
                    "expire_after_days": {
                        "type": "integer",
                        "title": "Expire after (days)",
                        "minimum": 1,
                        "maximum": 3650,
                    },
                },
            },
        },
    },
    ["bucket_name"],
    title="Create a bucket",
)

_S3_UPDATE = _schema(
    {
        "versioning": {"type": "boolean", "title": "Object versioning"},
        "public_read": {"type": "boolean", "title": "Public read access"},
    },
    title="Update a bucket",
)

_S3_BIND = _schema(
    {
        "permissions": {
            "type": "string",
            "title": "Permissions",
            "enum": ["read-only", "read-write"],
            "default": "read-write",
        },
        "key_ttl_hours": {
            "type": "number",
            "title": "Access key lifetime (hours)",
            "minimum": 0.5,
            "maximum": 8760,
            "default": 720,
        },
    },
    title="Create access keys",
)


def _object_storage(base_url: str) -> dict[str, Any]:
    name = "object-storage"
    return {
        "id": OBJECT_STORAGE_ID,
        "name": name,
        "description": "S3-compatible object storage buckets.",
        "tags": ["s3", "object-storage", "blob", "storage"],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": True,
        "plan_updateable": False,
        "allow_context_updates": False,
        "metadata": {
            "displayName": "Object Storage",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "Durable, S3-compatible object storage with per-binding access keys.\n\n"
                "Buckets can be versioned and carry lifecycle rules that expire old "
                "objects automatically. Archive buckets trade retrieval latency for price."
            ),
            "providerDisplayName": "Catalog Portal Sample Broker",
            "documentationUrl": "https://docs.example.com/services/object-storage",
            "supportUrl": "https://support.example.com/object-storage",
        },
        "plans": [
            {
                "id": plan_id(name, "standard"),
                "name": "standard",
                "description": "Hot storage, pay per GB.",
                "free": False,
                "metadata": {
                    "displayName": "Standard",
                    "bullets": ["99.99% durability", "Low-latency reads", "Unlimited objects"],
                    "costs": [{"amount": {"usd": 0.023}, "unit": "GB-MONTH"}],
                },
                "schemas": _schemas(_S3_CREATE, _S3_UPDATE, _S3_BIND),
            },
            {
                "id": plan_id(name, "archive"),
                "name": "archive",
                "description": "Cold storage for backups and archives.",
                "free": False,
                "metadata": {
                    "displayName": "Archive",
                    "bullets": ["Retrieval within 12 hours", "Minimum 90 days retention"],
                    "costs": [{"amount": {"usd": 0.004}, "unit": "GB-MONTH"}],
                },
                "schemas": _schemas(_S3_CREATE, _S3_UPDATE, _S3_BIND),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# RabbitMQ
# --------------------------------------------------------------------------- #

_MQ_CREATE = _schema(
    {
        "vhost": {
            "type": "string",
            "title": "Virtual host",
            "pattern": "^[a-zA-Z0-9_-]+$",
            "minLength": 1,
            "maxLength": 64,
            "default": "default",
        },
        "queues": {
            "type": "array",
            "title": "Pre-declared queues",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "title": "Queue name", "minLength": 1, "maxLength": 255},
                    "durable": {"type": "boolean", "title": "Durable", "default": True},
                    "max_length": {"type": "integer", "title": "Max length", "minimum": 1},
                    "type": {"type": "string", "enum": ["classic", "quorum", "stream"], "default": "quorum"},
                },
                "additionalProperties": False,
            },
        },
        "plugins": {
            "type": "array",
            "title": "Plugins",
            "items": {"type": "string", "enum": ["shovel", "federation", "mqtt", "stomp", "web_stomp"]},
            "uniqueItems": True,
        },
    },
    title="Create a message broker",
)

_MQ_UPDATE = _schema(
    {
        "plugins": {
            "type": "array",
            "title": "Plugins",
            "items": {"type": "string", "enum": ["shovel", "federation", "mqtt", "stomp", "web_stomp"]},
            "uniqueItems": True,
        }
    },
    title="Update a message broker",
)

_MQ_BIND = _schema(
    {
        "tags": {
            "type": "string",
            "title": "User tags",
            "enum": ["", "monitoring", "management", "administrator"],
            "default": "",
        },
        "configure_regexp": {"type": "string", "title": "Configure permission regexp", "default": ".*"},
    },
    title="Create a RabbitMQ user",
)


def _rabbitmq(base_url: str) -> dict[str, Any]:
    name = "rabbitmq"
    return {
        "id": RABBITMQ_ID,
        "name": name,
        "description": "RabbitMQ message queues (AMQP 0-9-1).",
        "tags": ["amqp", "rabbitmq", "messaging", "queue"],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": True,
        "plan_updateable": False,
        "allow_context_updates": True,
        "metadata": {
            "displayName": "RabbitMQ",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "Managed RabbitMQ brokers for reliable asynchronous messaging.\n\n"
                "Shared plans give you a virtual host on a multi-tenant cluster; "
                "dedicated plans give you your own nodes with quorum queues and plugins."
            ),
            "providerDisplayName": "Catalog Portal Sample Broker",
            "documentationUrl": "https://docs.example.com/services/rabbitmq",
            "supportUrl": "https://support.example.com/rabbitmq",
        },
        "plans": [
            {
                "id": plan_id(name, "shared-vhost"),
                "name": "shared-vhost",
                "description": "A virtual host on a shared cluster.",
                "free": True,
                "metadata": {
                    "displayName": "Shared vhost",
                    "bullets": ["1 vhost", "100 queues", "20 connections"],
                },
                "schemas": _schemas(_MQ_CREATE, _MQ_UPDATE, _MQ_BIND),
            },
            {
                "id": plan_id(name, "dedicated-single"),
                "name": "dedicated-single",
                "description": "A dedicated single-node broker.",
                "free": False,
                "plan_updateable": True,
                "metadata": {
                    "displayName": "Dedicated (single node)",
                    "bullets": ["1 node", "2 vCPU / 4 GB", "Plugins"],
                    "costs": _monthly(49.0),
                },
                "schemas": _schemas(_MQ_CREATE, _MQ_UPDATE, _MQ_BIND),
            },
            {
                "id": plan_id(name, "dedicated-cluster"),
                "name": "dedicated-cluster",
                "description": "A three-node dedicated cluster.",
                "free": False,
                "maximum_polling_duration": 1200,
                "maintenance_info": {
                    "version": "1.2.0",
                    "description": "RabbitMQ 3.13 with Khepri metadata store.",
                },
                "metadata": {
                    "displayName": "Dedicated cluster",
                    "bullets": ["3 nodes", "Quorum queues", "Rolling upgrades"],
                    "costs": _monthly(299.0),
                },
                "schemas": _schemas(_MQ_CREATE, _MQ_UPDATE, _MQ_BIND),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# Elasticsearch (requires syslog_drain: bindings return a syslog_drain_url)
# --------------------------------------------------------------------------- #

_ES_CREATE = _schema(
    {
        "version": {
            "type": "string",
            "title": "Version",
            "enum": ["7.17", "8.13", "8.14"],
            "default": "8.14",
        },
        "shards": {"type": "integer", "title": "Primary shards", "minimum": 1, "maximum": 64, "default": 1},
        "replicas": {"type": "integer", "title": "Replicas", "minimum": 0, "maximum": 3, "default": 1},
        "log_retention_days": {
            "type": "integer",
            "title": "Log retention (days)",
            "description": "Application logs shipped via the syslog drain are kept this long.",
            "minimum": 1,
            "maximum": 90,
            "default": 14,
        },
        "index_prefix": {
            "type": "string",
            "title": "Index prefix",
            "pattern": "^[a-z][a-z0-9-]*$",
            "minLength": 2,
            "maxLength": 32,
            "default": "logs",
        },
    },
    title="Create a search cluster",
)

_ES_UPDATE = _schema(
    {
        "replicas": {"type": "integer", "title": "Replicas", "minimum": 0, "maximum": 3},
        "log_retention_days": {
            "type": "integer",
            "title": "Log retention (days)",
            "minimum": 1,
            "maximum": 90,
        },
    },
    title="Update a search cluster",
)


def _search(base_url: str) -> dict[str, Any]:
    name = "elasticsearch"
    return {
        "id": SEARCH_ID,
        "name": name,
        "description": "Elasticsearch full-text search and log analytics.",
        "tags": ["elasticsearch", "search", "full-text", "logging"],
        "requires": ["syslog_drain"],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": False,
        "plan_updateable": True,
        "allow_context_updates": False,
        "metadata": {
            "displayName": "Search & Logs",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "Elasticsearch clusters for full-text search and centralised logging.\n\n"
                "Binding an application also streams its logs into the cluster through "
                "a syslog drain, so you can search them from the dashboard."
            ),
            "providerDisplayName": "Catalog Portal Sample Broker",
            "documentationUrl": "https://docs.example.com/services/search",
            "supportUrl": "https://support.example.com/search",
        },
        "plans": [
            {
                "id": plan_id(name, "dev"),
                "name": "dev",
                "description": "Single node for development.",
                "free": True,
                "metadata": {
                    "displayName": "Development",
                    "bullets": ["1 node", "5 GB storage", "No replicas"],
                },
                "schemas": _schemas(_ES_CREATE, _ES_UPDATE),
            },
            {
                "id": plan_id(name, "production"),
                "name": "production",
                "description": "Three-node production cluster.",
                "free": False,
                "maximum_polling_duration": 1800,
                "maintenance_info": {
                    "version": "1.2.0",
                    "description": "Elasticsearch 8.14.1 security release.",
                },
                "metadata": {
                    "displayName": "Production",
                    "bullets": ["3 nodes", "300 GB storage", "Snapshots every 30 minutes"],
                    "costs": _monthly(349.0),
                },
                "schemas": _schemas(_ES_CREATE, _ES_UPDATE),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# Slow analytics warehouse (every plan asynchronous)
# --------------------------------------------------------------------------- #

_DW_CREATE = _schema(
    {
        "warehouse_name": {
            "type": "string",
            "title": "Warehouse name",
            "pattern": "^[A-Za-z][A-Za-z0-9_]*$",
            "minLength": 3,
            "maxLength": 40,
        },
        "compute_units": {
            "type": "integer",
            "title": "Compute units",
            "minimum": 1,
            "maximum": 64,
            "default": 2,
        },
        "auto_suspend_minutes": {
            "type": "number",
            "title": "Auto-suspend after (minutes)",
            "minimum": 0,
            "maximum": 1440,
            "default": 10,
        },
        "sources": {
            "type": "array",
            "title": "Ingestion sources",
            "items": {
                "type": "object",
                "required": ["kind", "uri"],
                "properties": {
                    "kind": {"type": "string", "enum": ["postgres", "s3", "kafka"]},
                    "uri": {"type": "string", "minLength": 1},
                    "schedule": {
                        "type": "string",
                        "title": "Cron schedule",
                        "pattern": "^[0-9*/,-]+( [0-9*/,-]+){4}$",
                        "default": "0 * * * *",
                    },
                },
                "additionalProperties": False,
            },
        },
        "encryption": {
            "type": "object",
            "title": "Encryption",
            "properties": {
                "customer_managed_key": {"type": "boolean", "default": False},
                "key_id": {"type": "string", "title": "KMS key id", "minLength": 8},
            },
            "additionalProperties": False,
        },
    },
    ["warehouse_name"],
    title="Create an analytics warehouse",
)

_DW_UPDATE = _schema(
    {
        "compute_units": {"type": "integer", "title": "Compute units", "minimum": 1, "maximum": 64},
        "auto_suspend_minutes": {
            "type": "number",
            "title": "Auto-suspend (minutes)",
            "minimum": 0,
            "maximum": 1440,
        },
    },
    title="Resize an analytics warehouse",
)

_DW_BIND = _schema(
    {
        "access": {
            "type": "string",
            "title": "Access",
            "enum": ["query", "load", "admin"],
            "default": "query",
        },
        "query_timeout_seconds": {
            "type": "integer",
            "title": "Query timeout (s)",
            "minimum": 1,
            "maximum": 3600,
            "default": 300,
        },
    },
    title="Create warehouse credentials",
)


def _analytics(base_url: str) -> dict[str, Any]:
    name = "analytics-warehouse"
    return {
        "id": ANALYTICS_ID,
        "name": name,
        "description": "A columnar analytics warehouse that takes its time to provision.",
        "tags": ["analytics", "warehouse", "sql", "olap"],
        "bindable": True,
        "instances_retrievable": True,
        "bindings_retrievable": True,
        "plan_updateable": True,
        "allow_context_updates": False,
        "metadata": {
            "displayName": "Slow Analytics Warehouse",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "longDescription": (
                "A columnar OLAP warehouse with scheduled ingestion from databases, "
                "buckets and Kafka topics.\n\n"
                "Provisioning, resizing and deletion are asynchronous: the portal polls "
                "the broker until the operation has finished."
            ),
            "providerDisplayName": "Slow Data Inc.",
            "documentationUrl": "https://docs.example.com/services/analytics",
            "supportUrl": "https://support.example.com/analytics",
        },
        "plans": [
            {
                "id": plan_id(name, "starter"),
                "name": "starter",
                "description": "Up to 8 compute units, 1 TB storage.",
                "free": False,
                "maximum_polling_duration": 3600,
                "metadata": {
                    "displayName": "Starter",
                    "bullets": ["Up to 8 compute units", "1 TB storage", "Hourly ingestion"],
                    "costs": _monthly(199.0),
                },
                "schemas": _schemas(_DW_CREATE, _DW_UPDATE, _DW_BIND),
            },
            {
                "id": plan_id(name, "enterprise"),
                "name": "enterprise",
                "description": "Up to 64 compute units, unlimited storage.",
                "free": False,
                "maximum_polling_duration": 7200,
                "maintenance_info": {
                    "version": "1.2.0",
                    "description": "Query engine 24.3 with vectorised joins.",
                },
                "metadata": {
                    "displayName": "Enterprise",
                    "bullets": ["Up to 64 compute units", "Unlimited storage", "Customer-managed keys"],
                    "costs": [
                        {"amount": {"usd": 1999.0}, "unit": "MONTHLY"},
                        {"amount": {"usd": 5.0}, "unit": "TB scanned"},
                    ],
                },
                "schemas": _schemas(_DW_CREATE, _DW_UPDATE, _DW_BIND),
            },
        ],
    }


# --------------------------------------------------------------------------- #
# Status page: minimal, non-bindable offering without schemas
# --------------------------------------------------------------------------- #


def _status_page(base_url: str) -> dict[str, Any]:
    name = "status-page"
    return {
        "id": STATUS_PAGE_ID,
        "name": name,
        "description": "A hosted public status page for your application.",
        "tags": ["monitoring", "status"],
        "bindable": False,
        "metadata": {
            "displayName": "Status Page",
            "imageUrl": f"{base_url}/icons/{ICONS[name]}.svg",
            "providerDisplayName": "Catalog Portal Sample Broker",
        },
        "plans": [
            {
                "id": plan_id(name, "basic"),
                "name": "basic",
                "description": "One status page with up to 10 components.",
                "metadata": {"displayName": "Basic"},
            }
        ],
    }


def build_catalog(base_url: str = "http://127.0.0.1:9100") -> dict[str, Any]:
    """Return a fresh copy of the sample catalog with icon URLs under ``base_url``."""
    base = base_url.rstrip("/")
    services = [
        _postgres(base),
        _redis(base),
        _object_storage(base),
        _rabbitmq(base),
        _search(base),
        _analytics(base),
        _status_page(base),
    ]
    return copy.deepcopy({"services": services})


def find_plan(
    catalog: Any, service_id: str, plan_id_: str | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Look up ``(service, plan)`` in ``catalog``; either may be ``None``.

    Tolerates malformed catalogs (returns ``(None, None)``).
    """
    if not isinstance(catalog, dict):
        return None, None
    services = catalog.get("services")
    if not isinstance(services, list):
        return None, None
    for service in services:
        if isinstance(service, dict) and service.get("id") == service_id:
            if plan_id_ is None:
                return service, None
            for plan in service.get("plans") or []:
                if isinstance(plan, dict) and plan.get("id") == plan_id_:
                    return service, plan
            return service, None
    return None, None
