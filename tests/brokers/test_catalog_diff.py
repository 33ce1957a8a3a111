"""What a sync says it changed: two syncs against the HTTP test broker with a scripted catalog change in between."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from brokers.catalog_diff import changed_fields, schema_change
from brokers.models import Broker, CatalogSync, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog
from devtools.sample_broker.catalog import REDIS_ID, STATUS_PAGE_ID, plan_id, stable_id
from instances.models import ServiceInstance
from teams.models import AuditRecord
from tests.brokers.test_catalog_sync import register
from tests.brokers.test_catalog_sync import sync as synced

pytestmark = pytest.mark.django_db

MEMCACHED_ID = stable_id("memcached")


def sync(broker: Broker) -> CatalogSync:
    record = synced(broker)
    assert not record.error, record.error
    return record


def instances_on(broker: Broker, plan_catalog_id: str, count: int, *, deleted: int = 0) -> None:
    plan = ServicePlan.objects.get(broker=broker, catalog_id=plan_catalog_id)
    for index in range(count + deleted):
        ServiceInstance.objects.create(name=f"{plan.name}-{index}", namespace="team-a", broker=broker, plan=plan,
                                       state="deleted" if index >= count else "ready")


def service(catalog: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in catalog["services"] if s["name"] == name)


def plan_of(catalog: dict[str, Any], service_name: str, plan_name: str) -> dict[str, Any]:
    return next(p for p in service(catalog, service_name)["plans"] if p["name"] == plan_name)


def changed_catalog(catalog: dict[str, Any]) -> dict[str, Any]:
    """Services: memcached added, status-page removed, redis-cache described anew. Plans: postgresql's
    standard-large removed and standard-xl added, standard-small with a new maintenance version and create schema,
    cache-1gb with a new price."""
    changed = copy.deepcopy(catalog)
    changed["services"].remove(service(changed, "status-page"))
    changed["services"].append({
        "id": MEMCACHED_ID, "name": "memcached", "description": "Memcached.", "bindable": True,
        "plans": [{"id": plan_id("memcached", "mc-small"), "name": "mc-small", "description": "Small."}],
    })
    redis = service(changed, "redis-cache")
    redis["description"] = "Redis, now faster."
    redis["metadata"]["displayName"] = "Redis"
    postgres = service(changed, "postgresql")
    postgres["plans"].remove(plan_of(changed, "postgresql", "standard-large"))
    xl = copy.deepcopy(plan_of(changed, "postgresql", "ha-cluster"))
    xl.update(id=plan_id("postgresql", "standard-xl"), name="standard-xl")
    postgres["plans"].append(xl)
    small = plan_of(changed, "postgresql", "standard-small")
    small["maintenance_info"] = {"version": "1.3.0", "description": "PostgreSQL 16.4."}
    # A copy: the sample catalog's plans share their schema objects.
    create = small["schemas"]["service_instance"]["create"]["parameters"] = copy.deepcopy(
        small["schemas"]["service_instance"]["create"]["parameters"])
    create["properties"]["pool_size"] = {"type": "integer", "minimum": 1}
    del create["properties"]["public_access"]
    create["required"] = [*create["required"], "version"]
    create["properties"]["backup"]["properties"]["retention_days"]["maximum"] = 90
    plan_of(changed, "redis-cache", "cache-1gb")["metadata"]["costs"] = [{"amount": {"usd": 12.0}, "unit": "MONTHLY"}]
    return changed


def test_a_sync_says_exactly_what_changed_and_how_many_instances_it_affects(
    osb_url: str, osb_broker: SampleBroker
) -> None:
    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    broker = register(osb_url)
    sync(broker)
    instances_on(broker, plan_id("postgresql", "standard-large"), 2, deleted=1)
    instances_on(broker, plan_id("postgresql", "standard-small"), 1)
    instances_on(broker, plan_id("redis-cache", "cache-1gb"), 3)
    instances_on(broker, plan_id("status-page", "basic"), 1)
    osb_broker.catalog = changed_catalog(catalog)

    record = sync(broker)

    pg = {"service": "postgresql"}
    assert record.outcome == CatalogSync.Outcome.CHANGED
    assert record.diff == {
        "services": {
            "added": [{"catalog_id": MEMCACHED_ID, "name": "memcached", "affected_instances": 0}],
            "removed": [{"catalog_id": STATUS_PAGE_ID, "name": "status-page", "affected_instances": 1,
                         "reason": "removed"}],
            "changed": [{"catalog_id": REDIS_ID, "name": "redis-cache", "affected_instances": 3,
                         "fields": ["description", "metadata.displayName"]}],
        },
        "plans": {
            "added": [
                {"catalog_id": plan_id("postgresql", "standard-xl"), "name": "standard-xl", **pg,
                 "affected_instances": 0},
                {"catalog_id": plan_id("memcached", "mc-small"), "name": "mc-small", "service": "memcached",
                 "affected_instances": 0},
            ],
            "removed": [
                {"catalog_id": plan_id("postgresql", "standard-large"), "name": "standard-large", **pg,
                 "affected_instances": 2, "reason": "removed"},
                {"catalog_id": plan_id("status-page", "basic"), "name": "basic", "service": "status-page",
                 "affected_instances": 1, "reason": "removed"},
            ],
            "changed": [
                {"catalog_id": plan_id("postgresql", "standard-small"), "name": "standard-small", **pg,
                 "affected_instances": 1, "fields": ["maintenance_info", "schemas.service_instance.create"],
                 "schemas": {"service_instance.create": {
                     "added": ["pool_size"], "removed": ["public_access"], "required": ["version"],
                     "changed": ["backup.retention_days"]}}},
                {"catalog_id": plan_id("redis-cache", "cache-1gb"), "name": "cache-1gb", "service": "redis-cache",
                 "affected_instances": 3, "fields": ["metadata.costs"]},
            ],
        },
    }
    small = ServicePlan.objects.get(broker=broker, catalog_id=plan_id("postgresql", "standard-small"))
    assert small.schemas_changed["sync"] == str(record.pk)
    assert small.schemas_changed["schemas"] == record.diff["plans"]["changed"][0]["schemas"]
    audit = AuditRecord.objects.filter(action="broker.catalog.sync").first()
    assert audit.summary == (
        f"Catalog of broker 'test-broker' synced: 1 service added; 2 plans added; 1 service removed (1 instance "
        f"affected); 2 plans removed (3 instances affected); 1 service changed (3 instances affected); 2 plans "
        f"changed (4 instances affected) (sync {record.pk})")


def test_an_unchanged_relist_has_an_empty_diff_and_no_audit_record(osb_url: str, osb_broker: SampleBroker) -> None:
    broker = register(osb_url)
    sync(broker)
    audits = AuditRecord.objects.filter(action="broker.catalog.sync").count()

    record = sync(broker)

    assert record.outcome == CatalogSync.Outcome.UNCHANGED
    assert record.diff == {}
    assert AuditRecord.objects.filter(action="broker.catalog.sync").count() == audits


def test_a_reordered_catalog_reports_moves_but_not_shifts(osb_url: str, osb_broker: SampleBroker) -> None:
    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    broker = register(osb_url)
    sync(broker)
    reordered = copy.deepcopy(catalog)
    reordered["services"].insert(0, reordered["services"].pop(1))  # redis-cache first: postgresql moves too
    reordered["services"].pop(3)  # rabbitmq removed: the services after it shift, they do not move
    osb_broker.catalog = reordered

    diff = sync(broker).diff

    assert [(e["name"], e["fields"]) for e in diff["services"]["changed"]] == [
        ("redis-cache", ["position"]), ("postgresql", ["position"])]
    assert [e["name"] for e in diff["services"]["removed"]] == ["rabbitmq"]
    assert diff["plans"]["changed"] == []


def test_a_plan_moved_to_another_service_says_so(osb_url: str, osb_broker: SampleBroker) -> None:
    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    broker = register(osb_url)
    sync(broker)
    moved = copy.deepcopy(catalog)
    plan = service(moved, "redis-cache")["plans"].pop()
    service(moved, "postgresql")["plans"].append(plan)
    osb_broker.catalog = moved

    diff = sync(broker).diff

    assert diff["plans"]["changed"] == [{"catalog_id": plan["id"], "name": plan["name"], "service": "postgresql",
                                         "affected_instances": 0, "fields": ["service"]}]


def test_changed_fields_name_metadata_keys_and_schema_sections() -> None:
    schema = {"$schema": "x", "properties": {"a": {"type": "string"}}}
    old = {"name": "p", "free": True, "metadata": {"displayName": "P", "bullets": ["x"]},
           "schemas": {"service_instance": {"create": {"parameters": schema}}}}
    new = {"name": "p", "free": False, "metadata": {"displayName": "P"},
           "schemas": {"service_instance": {"create": {"parameters": schema}, "update": {"parameters": schema}},
                       "service_binding": {"create": {"parameters": schema}}},
           "maintenance_info": {"version": "1.0.0"}}

    assert changed_fields(old, new) == [
        "free", "maintenance_info", "metadata.bullets", "schemas.service_instance.update",
        "schemas.service_binding.create"]
    assert changed_fields(new, new) == []


def test_schema_change_follows_nested_objects_and_requirements() -> None:
    old = {"required": ["a"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer"},
        "nested": {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}, "y": {}}}}}
    new = {"required": ["b"], "properties": {
        "a": {"type": "string"}, "b": {"type": "integer", "maximum": 5}, "c": {"type": "boolean"},
        "nested": {"type": "object", "required": ["x", "y"], "properties": {"x": {"type": "string"}, "y": {}}}}}

    assert schema_change(old, new) == {"added": ["c"], "required": ["b", "nested.y"], "optional": ["a"],
                                       "changed": ["b"]}
    assert schema_change(new, new) == {}
