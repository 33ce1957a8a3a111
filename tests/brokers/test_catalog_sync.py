"""The catalog mirror against a real HTTP broker: rules, relists, failures and what the broker saw."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from brokers import services
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog, generate_catalog
from tests.conftest import BROKER_PASSWORD, BROKER_USER

pytestmark = pytest.mark.django_db


def register(url: str, **kwargs: Any) -> Broker:
    kwargs.setdefault("auth", services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD))
    return services.broker_register(name=kwargs.pop("name", "test-broker"), url=url, **kwargs)


def sync(broker: Broker) -> CatalogSync:
    result = services.catalog_sync(broker_id=broker.pk, force=True)
    assert result is not None
    broker.refresh_from_db()
    return result


def mirror_snapshot(broker: Broker) -> dict[str, Any]:
    offerings = {o.catalog_id: (o.content_hash, o.active, o.updated_at) for o in ServiceOffering.objects.filter(broker=broker)}
    plans = {p.catalog_id: (p.content_hash, p.active, p.updated_at) for p in ServicePlan.objects.filter(broker=broker)}
    return {"offerings": offerings, "plans": plans}


@pytest.fixture
def catalog(osb_broker: SampleBroker) -> dict[str, Any]:
    """The sample catalog as a plain dict the test may edit and serve again."""
    document = build_catalog(osb_broker.url)
    osb_broker.catalog = document
    return document


def test_cold_mirror_keeps_every_catalog_field(osb_url: str, catalog: dict[str, Any]) -> None:
    broker = register(osb_url)
    record = sync(broker)

    assert broker.status == Broker.Status.READY, broker.status_message
    assert broker.last_synced_at is not None
    plan_total = sum(len(s["plans"]) for s in catalog["services"])
    assert ServiceOffering.objects.filter(broker=broker, active=True).count() == len(catalog["services"])
    assert ServicePlan.objects.filter(broker=broker, active=True).count() == plan_total
    assert record.outcome == CatalogSync.Outcome.CHANGED
    assert record.added == len(catalog["services"]) + plan_total
    assert record.finished_at is not None and record.duration_ms is not None
    assert record.calls[0]["status"] == 200 and record.calls[0]["path"].endswith("/v2/catalog")

    for service in catalog["services"]:
        offering = ServiceOffering.objects.get(broker=broker, catalog_id=service["id"])
        meta = service.get("metadata", {})
        assert offering.name == service["name"]
        assert offering.description == service["description"]
        assert offering.tags == service.get("tags", [])
        assert offering.requires == service.get("requires", [])
        assert offering.bindable == service["bindable"]
        assert offering.instances_retrievable == service.get("instances_retrievable", False)
        assert offering.bindings_retrievable == service.get("bindings_retrievable", False)
        assert offering.allow_context_updates == service.get("allow_context_updates", False)
        assert offering.plan_updateable == service.get("plan_updateable", False)
        assert offering.metadata == meta
        assert offering.display_name == meta.get("displayName", "")
        assert offering.image_url == meta.get("imageUrl")
        assert offering.long_description == meta.get("longDescription", "")
        assert offering.provider == meta.get("providerDisplayName", "")
        assert offering.documentation_url == meta.get("documentationUrl")
        assert offering.support_url == meta.get("supportUrl")
        for plan_doc in service["plans"]:
            plan = ServicePlan.objects.get(broker=broker, catalog_id=plan_doc["id"])
            pmeta = plan_doc.get("metadata", {})
            assert plan.offering_id == offering.pk
            assert plan.name == plan_doc["name"] and plan.description == plan_doc["description"]
            assert plan.free == plan_doc.get("free", True)
            assert plan.bindable == plan_doc.get("bindable")
            assert plan.plan_updateable == plan_doc.get("plan_updateable")
            assert plan.schemas == plan_doc.get("schemas", {})
            assert plan.maximum_polling_duration == plan_doc.get("maximum_polling_duration")
            assert plan.maintenance_info == plan_doc.get("maintenance_info")
            assert plan.bullets == pmeta.get("bullets", [])
            assert plan.costs == pmeta.get("costs", [])
            assert plan.display_name == pmeta.get("displayName", "")
            assert plan.raw == plan_doc


def test_unchanged_relist_writes_no_catalog_rows(osb_url: str, catalog: dict[str, Any]) -> None:
    broker = register(osb_url)
    sync(broker)
    first_synced = broker.last_synced_at
    before = mirror_snapshot(broker)

    with CaptureQueriesContext(connection) as queries:
        record = sync(broker)

    writes = [
        q["sql"] for q in queries.captured_queries
        if q["sql"].split()[0].upper() in ("INSERT", "UPDATE", "DELETE")
        and ("serviceoffering" in q["sql"] or "serviceplan" in q["sql"])
    ]
    assert writes == []
    assert mirror_snapshot(broker) == before
    assert record.outcome == CatalogSync.Outcome.UNCHANGED
    assert (record.added, record.changed, record.deactivated) == (0, 0, 0)
    assert broker.last_synced_at > first_synced


def test_only_a_mirror_that_wrote_rows_changes_the_catalog_revision(
    osb_url: str, osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    broker = register(osb_url)
    sync(broker)
    first = broker.catalog_revision
    assert first > 0
    sync(broker)
    assert broker.catalog_revision == first  # unchanged relist: the store's cached pages stay valid

    catalog["services"][0]["description"] = "Changed."
    osb_broker.catalog = catalog
    sync(broker)
    assert broker.catalog_revision == first + 1


def plan_table_rows_estimate() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [ServicePlan._meta.db_table])
        return float(cursor.fetchone()[0])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="planner statistics are Postgres's")
def test_a_large_mirror_refreshes_the_planner_statistics(osb_url: str, osb_broker: SampleBroker) -> None:
    assert plan_table_rows_estimate() <= 0  # never analyzed (-1) or empty
    osb_broker.catalog = generate_catalog(services=120, plans_per_service=4)
    sync(register(osb_url))

    assert ServicePlan.objects.count() == 480
    assert plan_table_rows_estimate() == 480  # ANALYZE ran: the planner knows the table is no longer empty


def test_a_changed_plan_rewrites_only_that_row(osb_url: str, osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    broker = register(osb_url)
    sync(broker)
    before = mirror_snapshot(broker)
    changed = copy.deepcopy(catalog)
    target = changed["services"][0]["plans"][0]
    target["description"] = "A brand new description"
    osb_broker.catalog = changed

    record = sync(broker)

    after = mirror_snapshot(broker)
    assert record.changed == 1 and record.added == 0 and record.deactivated == 0
    assert ServicePlan.objects.get(catalog_id=target["id"]).description == "A brand new description"
    differing = [cid for cid in after["plans"] if after["plans"][cid] != before["plans"][cid]]
    assert differing == [target["id"]]
    assert after["offerings"] == before["offerings"]


def test_removed_offerings_and_plans_become_inactive_and_come_back(
    osb_url: str, osb_broker: SampleBroker, catalog: dict[str, Any], admin_api: Any
) -> None:
    broker = register(osb_url)
    sync(broker)
    trimmed = copy.deepcopy(catalog)
    gone_service = trimmed["services"].pop()  # the last one, so no position shifts
    gone_plan = trimmed["services"][0]["plans"].pop()
    osb_broker.catalog = trimmed

    record = sync(broker)

    assert record.deactivated == 1 + len(gone_service["plans"]) + 1
    offering = ServiceOffering.objects.get(catalog_id=gone_service["id"])
    assert offering.active is False
    assert ServicePlan.objects.filter(catalog_id=gone_plan["id"], active=False).exists()
    assert ServicePlan.objects.filter(offering=offering, active=True).count() == 0
    listed = admin_api.get("/api/v1/services/?page_size=100").json()
    assert str(offering.pk) not in [s["id"] for s in listed["results"]]
    inactive = admin_api.get("/api/v1/services/?active=false").json()
    assert [s["id"] for s in inactive["results"]] == [str(offering.pk)]

    osb_broker.catalog = catalog
    record = sync(broker)
    offering.refresh_from_db()
    assert offering.active is True
    assert ServicePlan.objects.get(catalog_id=gone_plan["id"]).active is True
    assert record.changed == 1 + len(gone_service["plans"]) + 1


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    obj.pop(key)
    return obj


BIG_SCHEMA = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "properties": {f"field_{i}": {"type": "string", "description": "x" * 200} for i in range(400)},
}

INVALID_CATALOGS = {
    "duplicate service id": (lambda c: c["services"][1].update(id=c["services"][0]["id"]), "also used by"),
    "duplicate service name": (lambda c: c["services"][1].update(name=c["services"][0]["name"]), "also used by"),
    "duplicate plan id": (
        lambda c: c["services"][1]["plans"][0].update(id=c["services"][0]["plans"][0]["id"]), "plan id"),
    "duplicate plan name in a service": (
        lambda c: c["services"][0]["plans"][1].update(name=c["services"][0]["plans"][0]["name"]), "used twice"),
    "service without id": (lambda c: _without(c["services"][0], "id"), "'id' is required"),
    "service without name": (lambda c: _without(c["services"][0], "name"), "'name' is required"),
    "service without description": (lambda c: _without(c["services"][0], "description"), "'description' is required"),
    "service without bindable": (lambda c: _without(c["services"][0], "bindable"), "'bindable' is required"),
    "service with no plans": (lambda c: c["services"][0].update(plans=[]), "at least one plan"),
    "plan without id": (lambda c: _without(c["services"][0]["plans"][0], "id"), "'id' is required"),
    "plan without name": (lambda c: _without(c["services"][0]["plans"][0], "name"), "'name' is required"),
    "plan without description": (
        lambda c: _without(c["services"][0]["plans"][0], "description"), "'description' is required"),
    "tags not strings": (lambda c: c["services"][0].update(tags=[1, 2]), "array of strings"),
    "bindable not a boolean": (lambda c: c["services"][0].update(bindable="yes"), "'bindable'"),
    "schema without $schema": (
        lambda c: c["services"][0]["plans"][0].update(
            schemas={"service_instance": {"create": {"parameters": {"type": "object"}}}}), "'$schema'"),
    "schema with an external reference": (
        lambda c: c["services"][0]["plans"][0].update(schemas={"service_instance": {"create": {"parameters": {
            "$schema": "http://json-schema.org/draft-04/schema#", "$ref": "http://example.com/x.json"}}}}),
        "external reference"),
    "invalid schema": (
        lambda c: c["services"][0]["plans"][0].update(schemas={"service_binding": {"create": {"parameters": {
            "$schema": "http://json-schema.org/draft-04/schema#", "type": 12}}}}), "not valid JSON Schema"),
    "oversized schema": (
        lambda c: c["services"][0]["plans"][0].update(
            schemas={"service_instance": {"update": {"parameters": BIG_SCHEMA}}}), "64 kB"),
    "maintenance version not semver": (
        lambda c: c["services"][0]["plans"][0].update(maintenance_info={"version": "latest"}), "semantic version"),
    "negative polling duration": (
        lambda c: c["services"][0]["plans"][0].update(maximum_polling_duration=-5), "maximum_polling_duration"),
    "services missing": (lambda c: c.pop("services"), "services"),
}


@pytest.mark.parametrize("case", list(INVALID_CATALOGS))
def test_an_invalid_catalog_fails_the_sync_and_keeps_the_mirror(
    case: str, osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    broker = register(osb_broker.url)
    sync(broker)
    before = mirror_snapshot(broker)
    broken = copy.deepcopy(catalog)
    mutate, expected = INVALID_CATALOGS[case]
    mutate(broken)
    osb_broker.catalog = broken

    record = sync(broker)

    assert broker.status == Broker.Status.FAILED
    assert expected in broker.status_message
    assert broker.status_message.startswith("The broker's catalog")
    assert record.outcome == CatalogSync.Outcome.FAILED and expected in record.error
    assert mirror_snapshot(broker) == before


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"description": "bad credentials"}, "401"),
        (500, {"description": "database exploded"}, "database exploded"),
        (200, "<html>this is not json</html>", "not valid JSON"),
        (200, "[1, 2, 3]", "catalog"),
        (502, "Bad gateway", "502"),
    ],
)
def test_a_failing_broker_fails_the_sync_and_keeps_the_mirror(
    osb_broker: SampleBroker, catalog: dict[str, Any], status: int, body: Any, expected: str
) -> None:
    broker = register(osb_broker.url)
    sync(broker)
    before = mirror_snapshot(broker)
    osb_broker.set_response("GET", "/v2/catalog", status, body=body)

    record = sync(broker)

    assert broker.status == Broker.Status.FAILED
    assert expected in broker.status_message, broker.status_message
    assert record.outcome == CatalogSync.Outcome.FAILED
    assert mirror_snapshot(broker) == before
    assert broker.last_synced_at is not None


def test_wrong_broker_password_is_a_clear_401(osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    broker = register(osb_broker.url, auth=services.BrokerAuth(type="basic", username=BROKER_USER, secret="nope"))
    sync(broker)
    assert broker.status == Broker.Status.FAILED
    assert "401" in broker.status_message
    assert "nope" not in broker.status_message
    assert "nope" not in json.dumps(CatalogSync.objects.get(broker=broker).calls)


def test_a_broker_that_times_out_fails_the_sync(
    osb_broker: SampleBroker, catalog: dict[str, Any], settings: Any
) -> None:
    broker = register(osb_broker.url)
    sync(broker)
    before = mirror_snapshot(broker)
    settings.OSB_CATALOG_TIMEOUT = 0.3
    osb_broker.set_response("GET", "/v2/catalog", 200, body=catalog, delay=2.0)

    record = sync(broker)

    assert broker.status == Broker.Status.FAILED
    assert "did not answer" in broker.status_message
    assert record.calls[0]["status"] is None
    assert mirror_snapshot(broker) == before


def test_an_unreachable_broker_fails_the_sync(db: Any) -> None:
    from tests.conftest import free_port

    broker = register(f"http://127.0.0.1:{free_port()}")
    sync(broker)
    assert broker.status == Broker.Status.FAILED
    assert "connect" in broker.status_message.lower()


def test_headers_the_broker_saw(osb_url: str, osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    broker = register(osb_url)
    sync(broker)
    sync(broker)

    seen = osb_broker.requests_for("GET", "/v2/catalog")
    assert len(seen) == 2
    identities = set()
    for request in seen:
        assert request.headers.get("X-Broker-API-Version") == "2.17"
        identity = request.headers.get("X-Broker-API-Request-Identity")
        uuid.UUID(identity)
        identities.add(identity)
        expected = base64.b64encode(f"{BROKER_USER}:{BROKER_PASSWORD}".encode()).decode()
        assert request.headers.get("Authorization") == f"Basic {expected}"
        # Relists are the platform's own calls: no person's identity.
        assert request.headers.get("X-Broker-API-Originating-Identity") is None
    assert len(identities) == 2
    assert identities == {call["request_id"] for s in CatalogSync.objects.filter(broker=broker) for call in s.calls}


def test_bearer_auth_is_sent(osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    broker = register(osb_broker.url, auth=services.BrokerAuth(type="bearer", secret="tok-123"))
    osb_broker.username = None  # the broker itself does not check bearer tokens
    try:
        sync(broker)
    finally:
        osb_broker.username = BROKER_USER
    assert osb_broker.requests_for("GET", "/v2/catalog")[-1].headers.get("Authorization") == "Bearer tok-123"
    assert "tok-123" not in Broker.objects.get(pk=broker.pk).auth_secret_encrypted


def test_etag_makes_a_relist_conditional(osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    osb_broker.etag_support = True
    broker = register(osb_broker.url)
    sync(broker)
    assert broker.catalog_etag

    record = sync(broker)

    last = osb_broker.requests_for("GET", "/v2/catalog")[-1]
    assert last.headers.get("If-None-Match") == broker.catalog_etag
    assert record.outcome == CatalogSync.Outcome.UNCHANGED
    assert record.summary == {"not_modified": True}
    assert broker.status == Broker.Status.READY


def test_validators_sent_for_an_already_mirrored_catalog_are_kept(
    osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    # The broker starts sending ETag / Last-Modified after the first mirror: the catalog is the same, nothing is
    # written, but the validators are stored, so the next relist is conditional and answered with a 304.
    broker = register(osb_broker.url)
    sync(broker)
    assert broker.catalog_etag == ""
    osb_broker.etag_support = True

    record = sync(broker)
    assert record.summary == {"identical": True}
    assert broker.catalog_etag and broker.catalog_last_modified

    record = sync(broker)
    assert osb_broker.requests_for("GET", "/v2/catalog")[-1].headers.get("If-None-Match") == broker.catalog_etag
    assert record.summary == {"not_modified": True}


def test_a_sync_runs_with_the_cyclic_collector_paused(
    osb_broker: SampleBroker, catalog: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    seen: list[bool] = []
    parse = services.parse_catalog

    def spy(document: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return parse(document, **kwargs)

    monkeypatch.setattr(services, "parse_catalog", spy)
    gc.enable()
    sync(register(osb_broker.url))
    assert seen == [False]  # while the catalog's objects are built and checked (brokers/osb/memory.py)
    assert gc.isenabled()


def test_a_second_worker_does_not_sync_a_leased_broker(osb_broker: SampleBroker, catalog: dict[str, Any]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    broker = register(osb_broker.url)
    Broker.objects.filter(pk=broker.pk).update(sync_lease_until=timezone.now() + timedelta(minutes=1))
    assert services.catalog_sync(broker_id=broker.pk) is None
    assert services.catalog_sync_due() == []
    Broker.objects.filter(pk=broker.pk).update(sync_lease_until=timezone.now() - timedelta(seconds=1))
    assert services.catalog_sync_due() == [str(broker.pk)]
    assert services.catalog_sync(broker_id=broker.pk) is not None
    broker.refresh_from_db()
    assert broker.sync_lease_until is None
    assert broker.next_sync_at > timezone.now()
    assert services.catalog_sync_due() == []


def test_broker_secret_is_encrypted_at_rest(osb_broker: SampleBroker) -> None:
    broker = register(osb_broker.url)
    stored = Broker.objects.values_list("auth_secret_encrypted", flat=True).get(pk=broker.pk)
    assert BROKER_PASSWORD not in stored
    assert Broker.objects.get(pk=broker.pk).auth_secret == BROKER_PASSWORD
