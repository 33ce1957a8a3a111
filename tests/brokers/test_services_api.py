"""The services and plans REST API (API.md "Services", "Plans") over a catalog mirrored from a real broker."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from brokers import services
from brokers.models import Broker, ServiceOffering, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog, generate_catalog, plan_id
from devtools.sample_broker.catalog import (
    ANALYTICS_ID,
    OBJECT_STORAGE_ID,
    POSTGRES_ID,
    RABBITMQ_ID,
    REDIS_ID,
    SEARCH_ID,
    STATUS_PAGE_ID,
)
from tests.conftest import BROKER_PASSWORD, BROKER_USER, alias_url, with_catalog_ids_prefixed

pytestmark = pytest.mark.django_db

SERVICES = "/api/v1/services/"
PLANS = "/api/v1/plans/"
SERVICE_FIELDS = {
    "id", "broker", "broker_name", "catalog_id", "name", "display_name", "description", "long_description",
    "provider", "image_url", "documentation_url", "support_url", "tags", "requires", "bindable",
    "instances_retrievable", "bindings_retrievable", "plan_updateable", "active", "plans",
}
PLAN_FIELDS = {
    "id", "service", "catalog_id", "name", "display_name", "description", "free", "costs", "bullets", "bindable",
    "plan_updateable", "maximum_polling_duration", "maintenance_info", "schemas", "active",
}


def register(url: str, name: str = "sample") -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    return services.broker_register(name=name, url=url, auth=auth)


def sync(broker: Broker) -> None:
    record = services.catalog_sync(broker_id=broker.pk, force=True)
    assert record is not None and record.outcome != "failed", record and record.error
    broker.refresh_from_db()


def by_catalog_id(services_or_plans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["catalog_id"]: item for item in services_or_plans}


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["catalog_id"] for item in response.json()["results"]}


def service_doc(catalog: dict[str, Any], catalog_id: str) -> dict[str, Any]:
    return next(s for s in catalog["services"] if s["id"] == catalog_id)


def plan_doc(catalog: dict[str, Any], catalog_id: str) -> dict[str, Any]:
    return next(p for s in catalog["services"] for p in s["plans"] if p["id"] == catalog_id)


def marked_catalog(base_url: str) -> dict[str, Any]:
    """The sample catalog with a few edits, so each filter and fallback has a single, known answer."""
    catalog = build_catalog(base_url)
    service_doc(catalog, POSTGRES_ID)["description"] += " Ships quokka extensions."  # description only
    service_doc(catalog, REDIS_ID)["metadata"]["displayName"] = "Redis Cache Narwhal"  # display name only
    service_doc(catalog, OBJECT_STORAGE_ID)["tags"].append("pangolin")  # tag only
    service_doc(catalog, RABBITMQ_ID)["name"] = "rabbitmq-axolotl"  # name only
    status = service_doc(catalog, STATUS_PAGE_ID)
    del status["metadata"]["displayName"]  # display_name falls back to the name
    del status["metadata"]["imageUrl"]  # image_url is null
    del status["plans"][0]["metadata"]["displayName"]
    # A plan overriding the offering's bindable; a plan overriding plan_updateable (rabbitmq's dedicated-single).
    plan_doc(catalog, plan_id("postgresql", "hobby"))["bindable"] = False
    return catalog


@pytest.fixture
def catalog(osb_broker: SampleBroker) -> dict[str, Any]:
    document = marked_catalog(osb_broker.url)
    osb_broker.catalog = document
    return document


@pytest.fixture
def broker(catalog: dict[str, Any], osb_url: str) -> Broker:
    broker = register(osb_url)
    sync(broker)
    assert broker.status == Broker.Status.READY, broker.status_message
    return broker


# --- services list and detail ----------------------------------------------------------------------


def test_services_require_authentication() -> None:
    for url in (SERVICES, PLANS, f"{SERVICES}{uuid.uuid4()}/", f"{PLANS}{uuid.uuid4()}/"):
        response = APIClient().get(url)
        assert response.status_code == 401
        assert response.json()["detail"]


def test_service_list_shape_and_fields(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    body = alice_api.get(SERVICES, {"page_size": 100}).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == len(catalog["services"])
    listed = by_catalog_id(body["results"])
    assert set(listed) == {s["id"] for s in catalog["services"]}
    for item in body["results"]:
        assert set(item) >= SERVICE_FIELDS

    pg = listed[POSTGRES_ID]
    doc = service_doc(catalog, POSTGRES_ID)
    meta = doc["metadata"]
    offering = ServiceOffering.objects.get(broker=broker, catalog_id=POSTGRES_ID)
    assert pg["id"] == str(offering.pk)
    assert pg["broker"] == str(broker.pk) and pg["broker_name"] == "sample"
    assert pg["name"] == "postgresql"
    assert pg["display_name"] == "PostgreSQL"
    assert pg["description"] == doc["description"]
    assert pg["long_description"] == meta["longDescription"]
    assert pg["provider"] == "Catalog Portal Sample Broker"
    assert pg["image_url"] == meta["imageUrl"]
    assert pg["documentation_url"] == meta["documentationUrl"]
    assert pg["support_url"] == meta["supportUrl"]
    assert pg["tags"] == ["postgresql", "sql", "relational", "database"]
    assert pg["requires"] == []
    assert (pg["bindable"], pg["instances_retrievable"], pg["bindings_retrievable"], pg["plan_updateable"]) == (
        True, True, True, True,
    )
    assert pg["active"] is True
    plans = {p.catalog_id: p for p in ServicePlan.objects.filter(offering=offering)}
    assert pg["plans"] == [
        {"id": str(plans[p["id"]].pk), "name": p["name"], "display_name": p["metadata"]["displayName"],
         "free": p["free"]}
        for p in doc["plans"]
    ]

    assert listed[SEARCH_ID]["requires"] == ["syslog_drain"]
    assert listed[SEARCH_ID]["display_name"] == "Search & Logs"
    assert listed[ANALYTICS_ID]["provider"] == "Slow Data Inc."


def test_display_name_falls_back_to_name_and_missing_urls_are_null(alice_api: APIClient, broker: Broker) -> None:
    listed = by_catalog_id(alice_api.get(SERVICES, {"page_size": 100}).json()["results"])
    status = listed[STATUS_PAGE_ID]

    assert status["display_name"] == "status-page"
    assert status["image_url"] is None
    assert status["documentation_url"] is None and status["support_url"] is None
    assert status["long_description"] == ""
    assert status["bindable"] is False and status["plan_updateable"] is False
    # A plan without displayName or free: name, and free by default.
    assert [(p["name"], p["display_name"], p["free"]) for p in status["plans"]] == [("basic", "basic", True)]


def test_services_are_ordered_by_the_name_people_see(alice_api: APIClient, broker: Broker) -> None:
    results = alice_api.get(SERVICES, {"page_size": 100}).json()["results"]
    shown = [s["display_name"] for s in results]
    assert shown == [
        "Object Storage", "PostgreSQL", "RabbitMQ", "Redis Cache Narwhal", "Search & Logs",
        "Slow Analytics Warehouse", "status-page",
    ]


def test_services_pagination(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    first = alice_api.get(SERVICES, {"page_size": 3}).json()
    second = alice_api.get(SERVICES, {"page_size": 3, "page": 2}).json()
    third = alice_api.get(SERVICES, {"page_size": 3, "page": 3}).json()
    assert first["count"] == len(catalog["services"])
    assert len(first["results"]) == 3 and first["previous"] is None and first["next"]
    assert third["next"] is None
    seen = [s["id"] for page in (first, second, third) for s in page["results"]]
    assert len(seen) == len(set(seen)) == len(catalog["services"])


def test_service_detail(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    offering = ServiceOffering.objects.get(broker=broker, catalog_id=RABBITMQ_ID)
    response = alice_api.get(f"{SERVICES}{offering.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= SERVICE_FIELDS
    assert body["id"] == str(offering.pk) and body["catalog_id"] == RABBITMQ_ID
    assert body["name"] == "rabbitmq-axolotl" and body["display_name"] == "RabbitMQ"
    assert body["plan_updateable"] is False
    assert [p["name"] for p in body["plans"]] == [p["name"] for p in service_doc(catalog, RABBITMQ_ID)["plans"]]
    listed = by_catalog_id(alice_api.get(SERVICES).json()["results"])[RABBITMQ_ID]
    assert body == listed


def test_unknown_service_and_plan_are_json_404(alice_api: APIClient, broker: Broker) -> None:
    for url in (f"{SERVICES}{uuid.uuid4()}/", f"{PLANS}{uuid.uuid4()}/"):
        response = alice_api.get(url)
        assert response.status_code == 404
        assert response.json()["detail"]


def test_services_and_plans_are_read_only(admin_api: APIClient, broker: Broker) -> None:
    offering = ServiceOffering.objects.filter(broker=broker).first()
    plan = ServicePlan.objects.filter(broker=broker).first()
    assert admin_api.post(SERVICES, {"name": "x"}, format="json").status_code == 405
    assert admin_api.patch(f"{SERVICES}{offering.pk}/", {"name": "x"}, format="json").status_code == 405
    assert admin_api.delete(f"{SERVICES}{offering.pk}/").status_code == 405
    assert admin_api.post(PLANS, {"name": "x"}, format="json").status_code == 405
    assert admin_api.delete(f"{PLANS}{plan.pk}/").status_code == 405
    offering.refresh_from_db()
    assert offering.name != "x"


# --- filters ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("axolotl", {RABBITMQ_ID}),  # name
        ("narwhal", {REDIS_ID}),  # display name
        ("NARWHAL", {REDIS_ID}),  # case-insensitive
        ("quokka", {POSTGRES_ID}),  # description
        ("pangolin", {OBJECT_STORAGE_ID}),  # tag
        ("olap", {ANALYTICS_ID}),  # tag
        ("sql", {POSTGRES_ID, ANALYTICS_ID}),
        ("sql warehouse", {ANALYTICS_ID}),  # every word must match
        ("status-page", {STATUS_PAGE_ID}),
        ("slow data", {ANALYTICS_ID}),  # the provider's name
        ("sql slow", {ANALYTICS_ID}),  # words may match different fields
        ("nothing-matches-this", set()),
        ("", {POSTGRES_ID, REDIS_ID, OBJECT_STORAGE_ID, RABBITMQ_ID, SEARCH_ID, ANALYTICS_ID, STATUS_PAGE_ID}),
    ],
)
def test_search(alice_api: APIClient, broker: Broker, search: str, expected: set[str]) -> None:
    assert ids(alice_api.get(SERVICES, {"search": search})) == expected


def test_search_does_not_match_long_description_only_words(alice_api: APIClient, broker: Broker) -> None:
    # "fail-over" is only in PostgreSQL's long description: search covers name, display name, description, tags.
    assert ids(alice_api.get(SERVICES, {"search": "fail-over"})) == set()


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["sql"], {POSTGRES_ID, ANALYTICS_ID}),
        (["SQL"], {POSTGRES_ID, ANALYTICS_ID}),
        (["sql", "olap"], {ANALYTICS_ID}),  # every tag must be present
        (["full-text"], {SEARCH_ID}),
        (["sq"], set()),  # whole tags only
        (["postgresql"], {POSTGRES_ID}),
    ],
)
def test_tag_filter(alice_api: APIClient, broker: Broker, tags: list[str], expected: set[str]) -> None:
    assert ids(alice_api.get(SERVICES, {"tag": tags})) == expected


def test_broker_filter(alice_api: APIClient, broker: Broker, osb_broker: SampleBroker, osb_url: str) -> None:
    osb_broker.catalog = generate_catalog(services=2, plans_per_service=2, seed=7)
    other = register(alias_url(osb_url), name="generated")
    sync(other)
    other_ids = {s["id"] for s in osb_broker.catalog["services"]}

    assert ids(alice_api.get(SERVICES, {"broker": str(other.pk)})) == other_ids
    assert len(ids(alice_api.get(SERVICES, {"broker": str(broker.pk)}))) == 7
    assert len(ids(alice_api.get(SERVICES, {"broker": [str(broker.pk), str(other.pk)]}))) == 9
    assert ids(alice_api.get(SERVICES, {"broker": str(uuid.uuid4())})) == set()
    assert alice_api.get(SERVICES).json()["count"] == 9
    for item in alice_api.get(SERVICES, {"broker": str(other.pk)}).json()["results"]:
        assert item["broker"] == str(other.pk) and item["broker_name"] == "generated"


def test_provider_filter(alice_api: APIClient, broker: Broker) -> None:
    assert ids(alice_api.get(SERVICES, {"provider": "Slow Data Inc."})) == {ANALYTICS_ID}
    assert len(ids(alice_api.get(SERVICES, {"provider": "Catalog Portal Sample Broker"}))) == 6
    assert ids(alice_api.get(SERVICES, {"provider": "Nobody"})) == set()


def test_free_filter(alice_api: APIClient, broker: Broker) -> None:
    free = ids(alice_api.get(SERVICES, {"free": "true"}))
    paid_only = ids(alice_api.get(SERVICES, {"free": "false"}))

    assert free == {POSTGRES_ID, REDIS_ID, RABBITMQ_ID, SEARCH_ID, STATUS_PAGE_ID}
    assert paid_only == {OBJECT_STORAGE_ID, ANALYTICS_ID}


def test_free_filter_ignores_inactive_plans(
    alice_api: APIClient, broker: Broker, osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    trimmed = copy.deepcopy(catalog)
    service_doc(trimmed, POSTGRES_ID)["plans"].pop(0)  # the free "hobby" plan goes away
    osb_broker.catalog = trimmed
    sync(broker)

    assert POSTGRES_ID not in ids(alice_api.get(SERVICES, {"free": "true"}))
    assert POSTGRES_ID in ids(alice_api.get(SERVICES, {"free": "false"}))


@pytest.mark.parametrize("param", ["free", "active"])
def test_bad_boolean_filter_is_400(alice_api: APIClient, broker: Broker, param: str) -> None:
    response = alice_api.get(SERVICES, {param: "maybe"})
    assert response.status_code == 400
    assert response.json()[param]


def test_combined_filters(alice_api: APIClient, broker: Broker) -> None:
    response = alice_api.get(SERVICES, {"tag": "sql", "free": "true", "search": "managed"})
    assert ids(response) == {POSTGRES_ID}


def test_inactive_services_and_plans_are_hidden_unless_asked_for(
    alice_api: APIClient, broker: Broker, osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    trimmed = copy.deepcopy(catalog)
    trimmed["services"] = [s for s in trimmed["services"] if s["id"] != STATUS_PAGE_ID]
    gone_plan = service_doc(trimmed, POSTGRES_ID)["plans"].pop()
    osb_broker.catalog = trimmed
    sync(broker)

    active = alice_api.get(SERVICES, {"page_size": 100}).json()
    assert STATUS_PAGE_ID not in by_catalog_id(active["results"])
    assert active["count"] == len(trimmed["services"])
    assert ids(alice_api.get(SERVICES, {"active": "true"})) == ids(alice_api.get(SERVICES))
    pg = by_catalog_id(active["results"])[POSTGRES_ID]
    assert gone_plan["name"] not in [p["name"] for p in pg["plans"]]
    assert len(pg["plans"]) == 3

    inactive = alice_api.get(SERVICES, {"active": "false"}).json()["results"]
    assert [s["catalog_id"] for s in inactive] == [STATUS_PAGE_ID]
    assert inactive[0]["active"] is False

    # The detail of a removed service still answers, marked inactive.
    offering = ServiceOffering.objects.get(broker=broker, catalog_id=STATUS_PAGE_ID)
    detail = alice_api.get(f"{SERVICES}{offering.pk}/").json()
    assert detail["active"] is False

    # Plans: the removed plan is hidden from the list but its detail says inactive.
    pg_offering = ServiceOffering.objects.get(broker=broker, catalog_id=POSTGRES_ID)
    listed = alice_api.get(PLANS, {"service": str(pg_offering.pk)}).json()["results"]
    assert gone_plan["id"] not in by_catalog_id(listed)
    plan = ServicePlan.objects.get(broker=broker, catalog_id=gone_plan["id"])
    assert alice_api.get(f"{PLANS}{plan.pk}/").json()["active"] is False
    inactive_plans = alice_api.get(PLANS, {"active": "false"}).json()["results"]
    assert set(by_catalog_id(inactive_plans)) == {gone_plan["id"], plan_id("status-page", "basic")}


# --- plans -----------------------------------------------------------------------------------------


def test_plan_list_filtered_by_service(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    offering = ServiceOffering.objects.get(broker=broker, catalog_id=POSTGRES_ID)
    body = alice_api.get(PLANS, {"service": str(offering.pk)}).json()

    assert set(body) == {"count", "next", "previous", "results"}
    assert [p["catalog_id"] for p in body["results"]] == [p["id"] for p in service_doc(catalog, POSTGRES_ID)["plans"]]
    assert all(p["service"] == str(offering.pk) for p in body["results"])
    for item in body["results"]:
        assert set(item) >= PLAN_FIELDS

    everything = alice_api.get(PLANS, {"page_size": 100}).json()
    assert everything["count"] == sum(len(s["plans"]) for s in catalog["services"])
    assert alice_api.get(PLANS, {"service": str(uuid.uuid4())}).json()["count"] == 0


def test_plans_page_through_once_grouped_by_service(
    alice_api: APIClient, broker: Broker, catalog: dict[str, Any], osb_url: str, osb_broker: SampleBroker
) -> None:
    # The same services again under other ids (ids are unique across brokers): same offering names on two brokers
    osb_broker.catalog = with_catalog_ids_prefixed(catalog, "twin-")
    twin = register(alias_url(osb_url), name="twin")
    sync(twin)
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        body = alice_api.get(PLANS, {"page_size": 4, "page": page}).json()
        seen.extend(body["results"])
        if body["next"] is None:
            break
        page += 1

    total = 2 * sum(len(s["plans"]) for s in catalog["services"])
    assert len(seen) == len({p["id"] for p in seen}) == total
    # Each service's plans come together, in catalog order.
    services_in_order = [p["service"] for p in seen]
    runs = [s for i, s in enumerate(services_in_order) if i == 0 or services_in_order[i - 1] != s]
    assert len(runs) == len(set(runs)) == 2 * len(catalog["services"])
    for service in set(services_in_order):
        offering = ServiceOffering.objects.get(pk=service)
        expected = [p["id"] for p in service_doc(catalog, offering.catalog_id.removeprefix("twin-"))["plans"]]
        assert [p["catalog_id"].removeprefix("twin-") for p in seen if p["service"] == service] == expected


def test_plan_list_with_a_bad_service_id_is_400(alice_api: APIClient, broker: Broker) -> None:
    response = alice_api.get(PLANS, {"service": "postgresql"})
    assert response.status_code == 400
    assert response.json()["service"]


def test_plan_detail_fields(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    doc = plan_doc(catalog, plan_id("postgresql", "ha-cluster"))
    plan = ServicePlan.objects.get(broker=broker, catalog_id=doc["id"])

    response = alice_api.get(f"{PLANS}{plan.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= PLAN_FIELDS
    assert body["id"] == str(plan.pk)
    assert body["service"] == str(plan.offering_id)
    assert body["catalog_id"] == doc["id"]
    assert body["name"] == "ha-cluster" and body["display_name"] == "HA Cluster"
    assert body["description"] == doc["description"]
    assert body["free"] is False
    assert body["costs"] == doc["metadata"]["costs"]
    assert body["bullets"] == doc["metadata"]["bullets"]
    assert body["maximum_polling_duration"] == 1800
    assert body["maintenance_info"] == doc["maintenance_info"]
    assert body["bindable"] is True and body["plan_updateable"] is True  # inherited from the offering
    assert body["schemas"] == {
        "instance_create": doc["schemas"]["service_instance"]["create"]["parameters"],
        "instance_update": doc["schemas"]["service_instance"]["update"]["parameters"],
        "binding_create": doc["schemas"]["service_binding"]["create"]["parameters"],
    }
    assert body["active"] is True


def plan_body(api: APIClient, broker: Broker, catalog_id: str) -> dict[str, Any]:
    plan = ServicePlan.objects.get(broker=broker, catalog_id=catalog_id)
    response = api.get(f"{PLANS}{plan.pk}/")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    ("service", "plan", "bindable", "plan_updateable"),
    [
        ("postgresql", "hobby", False, True),  # overrides bindable, inherits plan_updateable
        ("postgresql", "standard-small", True, True),  # inherits both
        ("rabbitmq", "shared-vhost", True, False),  # inherits the offering's plan_updateable=false
        ("rabbitmq", "dedicated-single", True, True),  # overrides plan_updateable
        ("status-page", "basic", False, False),  # a non-bindable offering's plan is not bindable
    ],
)
def test_plan_bindable_and_updateable_are_effective_values(
    alice_api: APIClient, broker: Broker, service: str, plan: str, bindable: bool, plan_updateable: bool
) -> None:
    body = plan_body(alice_api, broker, plan_id(service, plan))
    assert (body["bindable"], body["plan_updateable"]) == (bindable, plan_updateable)


def test_schemas_always_have_three_keys(alice_api: APIClient, broker: Broker, catalog: dict[str, Any]) -> None:
    bare = plan_body(alice_api, broker, plan_id("status-page", "basic"))
    assert bare["schemas"] == {"instance_create": None, "instance_update": None, "binding_create": None}
    assert bare["display_name"] == "basic"
    assert bare["free"] is True
    assert bare["costs"] == [] and bare["bullets"] == []
    assert bare["maximum_polling_duration"] is None and bare["maintenance_info"] is None

    no_binding = plan_body(alice_api, broker, plan_id("elasticsearch", "dev"))
    doc = plan_doc(catalog, plan_id("elasticsearch", "dev"))
    assert no_binding["schemas"] == {
        "instance_create": doc["schemas"]["service_instance"]["create"]["parameters"],
        "instance_update": doc["schemas"]["service_instance"]["update"]["parameters"],
        "binding_create": None,
    }


def test_schemas_with_only_some_sections(
    alice_api: APIClient, broker: Broker, osb_broker: SampleBroker, catalog: dict[str, Any]
) -> None:
    edited = copy.deepcopy(catalog)
    hobby = plan_doc(edited, plan_id("postgresql", "hobby"))
    del hobby["schemas"]["service_instance"]["create"]
    hobby["schemas"]["service_binding"]["create"] = {}  # a step without parameters
    osb_broker.catalog = edited
    sync(broker)

    body = plan_body(alice_api, broker, hobby["id"])
    assert body["schemas"] == {
        "instance_create": None,
        "instance_update": hobby["schemas"]["service_instance"]["update"]["parameters"],
        "binding_create": None,
    }


# --- query counts ----------------------------------------------------------------------------------


def _count_queries(api: APIClient, osb_broker: SampleBroker, osb_url: str, services_count: int, name: str) -> int:
    osb_broker.catalog = generate_catalog(services=services_count, plans_per_service=3, seed=services_count)
    broker = register(osb_url if name == "small" else alias_url(osb_url), name=name)
    sync(broker)
    with CaptureQueriesContext(connection) as queries:
        response = api.get(SERVICES, {"page_size": 100, "broker": str(broker.pk)})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == services_count
    assert all(len(s["plans"]) == 3 for s in results)
    return len(queries.captured_queries)


def test_service_list_query_count_does_not_grow_with_the_catalog(
    alice_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    alice_api.get(SERVICES)  # the token's last use is noted at most once a minute: before counting, not during
    small = _count_queries(alice_api, osb_broker, osb_url, 3, "small")
    large = _count_queries(alice_api, osb_broker, osb_url, 60, "large")

    assert large == small
    assert large <= 7  # auth, count, page, plans (+ the read snapshot's SAVEPOINT / RELEASE)


def test_plan_list_query_count_does_not_grow_with_the_catalog(
    alice_api: APIClient, osb_broker: SampleBroker, osb_url: str, django_assert_max_num_queries: Any
) -> None:
    osb_broker.catalog = generate_catalog(services=40, plans_per_service=3, seed=1)
    broker = register(osb_url)
    sync(broker)
    alice_api.get(PLANS)  # the token's last use is noted at most once a minute: before counting, not during
    with django_assert_max_num_queries(6):  # 4 + the read snapshot's SAVEPOINT / RELEASE
        response = alice_api.get(PLANS, {"page_size": 100})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 100
