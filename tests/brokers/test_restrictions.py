"""Catalog restrictions: the rule language, what the mirror offers under each operator, and a change of rules
re-mirroring at once (no broker call) while existing instances keep working."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers import services
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from brokers.restrictions import RestrictionError, parse_restrictions, parse_rule
from catalog_portal.exceptions import ApplicationError
from devtools.sample_broker import SampleBroker, build_catalog
from devtools.sample_broker.catalog import POSTGRES_ID, REDIS_ID, plan_id
from instances.models import ServiceInstance
from instances.services.instances import instance_provision
from teams.models import AuditRecord
from tests.conftest import BROKER_PASSWORD, BROKER_USER

pytestmark = pytest.mark.django_db

ALL_SERVICES = ["postgresql", "redis-cache", "object-storage", "rabbitmq", "elasticsearch", "analytics-warehouse",
                "status-page"]


def register(url: str, restrictions: Any = None) -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    broker = services.broker_register(name="test-broker", url=url, auth=auth, catalog_restrictions=restrictions)
    record = services.catalog_sync(broker_id=broker.pk, force=True)
    assert record is not None and not record.error, record and record.error
    broker.refresh_from_db()
    return broker


def offered(broker: Broker) -> tuple[list[str], list[str]]:
    """Active service names (catalog order), and active plans as service/plan."""
    service_names = list(ServiceOffering.objects.filter(broker=broker, active=True).order_by("position")
                         .values_list("name", flat=True))
    plans = sorted(f"{p.offering.name}/{p.name}" for p in
                   ServicePlan.objects.filter(broker=broker, active=True).select_related("offering"))
    return service_names, plans


def all_plans(osb_broker: SampleBroker, keep: Any = lambda service, plan: True) -> list[str]:
    return sorted(f"{s['name']}/{p['name']}" for s in build_catalog(osb_broker.url)["services"] for p in s["plans"]
                  if keep(s, p))


# --- the rule language ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text", "shown", "item", "allowed"), [
    ("services", "name==postgresql", "name==postgresql", {"name": "postgresql"}, True),
    ("services", " name == postgresql ", "name==postgresql", {"name": "redis"}, False),
    ("services", "name!=postgresql", "name!=postgresql", {"name": "postgresql"}, False),
    ("services", "name in (a, b)", "name in (a, b)", {"name": "b"}, True),
    ("services", "name in(a,b)", "name in (a, b)", {"name": "c"}, False),
    ("services", "catalog_id notin (x-1, y-2)", "catalog_id notin (x-1, y-2)", {"catalog_id": "x-1"}, False),
    ("services", "catalog_id notin (x-1)", "catalog_id notin (x-1)", {"catalog_id": "z"}, True),
    ("plans", "free==true", "free==true", {"free": True}, True),
    ("plans", "free==TRUE", "free==true", {"free": False}, False),
    ("plans", "free!=false", "free!=false", {"free": True}, True),
    ("plans", "free in (false)", "free in (false)", {"free": False}, True),
    ("plans", "name notin (hobby, dev)", "name notin (hobby, dev)", {"name": "dev"}, False),
])
def test_each_operator_parses_and_matches(kind: str, text: str, shown: str, item: dict[str, Any],
                                          allowed: bool) -> None:
    rule = parse_rule(kind, text)
    assert rule.text == shown
    assert rule.allows(item) is allowed


@pytest.mark.parametrize(("value", "message"), [
    ({"plans": ["fre==true"]}, "Plan rule 1 “fre==true”: unknown property 'fre' (use name, catalog_id or free)."),
    ({"services": ["free==true"]}, "Service rule 1 “free==true”: 'free' applies to plans only"),
    ({"services": ["name=postgresql"]}, "Service rule 1 “name=postgresql”: write PROPERTY OPERATOR VALUE"),
    ({"services": ["name in a, b"]}, "Service rule 1 “name in a, b”: write PROPERTY OPERATOR VALUE"),
    ({"services": ["name in (a, , b)"]}, "Service rule 1 “name in (a, , b)”: the list has an empty value."),
    ({"services": ["name=="]}, "Service rule 1 “name==”: a value is missing."),
    ({"services": ["   "]}, "Service rule 1 “”: the rule is empty."),
    ({"plans": ["free==yes"]}, "Plan rule 1 “free==yes”: 'free' is true or false."),
    ({"plans": ["name==a", "name like b"]}, "Plan rule 2 “name like b”: write PROPERTY OPERATOR VALUE"),
    ({"plans": "free==true"}, "'plans' must be a list of rules (strings)."),
    ({"servics": []}, "Unknown key 'servics': use 'services' and 'plans'."),
    (["name==a"], "Catalog restrictions must be an object"),
])
def test_a_bad_rule_is_named_with_what_is_wrong(value: Any, message: str) -> None:
    with pytest.raises(RestrictionError) as caught:
        parse_restrictions(value)
    assert any(m.startswith(message) for m in caught.value.messages), caught.value.messages


# --- what the mirror offers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["==", "!=", "in", "notin", "free", "catalog_id", "service and plan rules"])
def test_the_mirror_offers_what_the_rules_allow(case: str, osb_url: str, osb_broker: SampleBroker) -> None:
    rules, services_expected, keep = {
        "==": ({"services": ["name==redis-cache"]}, ["redis-cache"], lambda s, p: s["name"] == "redis-cache"),
        "!=": ({"plans": ["name!=hobby"]}, ALL_SERVICES, lambda s, p: p["name"] != "hobby"),
        "in": ({"services": ["name in (postgresql, rabbitmq)"]}, ["postgresql", "rabbitmq"],
               lambda s, p: s["name"] in ("postgresql", "rabbitmq")),
        "notin": ({"plans": ["name notin (hobby, basic)"]}, ALL_SERVICES[:-1],
                  lambda s, p: p["name"] not in ("hobby", "basic")),
        "free": ({"plans": ["free==true"]}, ["postgresql", "redis-cache", "rabbitmq", "elasticsearch", "status-page"],
                 lambda s, p: p.get("free", True)),
        "catalog_id": ({"services": [f"catalog_id in ({POSTGRES_ID}, {REDIS_ID})"]}, ["postgresql", "redis-cache"],
                       lambda s, p: s["id"] in (POSTGRES_ID, REDIS_ID)),
        "service and plan rules": (
            {"services": ["name in (postgresql, redis-cache)"], "plans": ["free==false", "name!=cache-8gb-ha"]},
            ["postgresql", "redis-cache"],
            lambda s, p: s["name"] in ("postgresql", "redis-cache") and p.get("free") is False
            and p["name"] != "cache-8gb-ha"),
    }[case]
    broker = register(osb_url, rules)

    assert offered(broker) == (services_expected, all_plans(osb_broker, keep))
    # Excluded items are mirrored, inactive and marked as restricted (not removed by the broker).
    excluded = ServicePlan.objects.filter(broker=broker, active=False)
    assert excluded.exists() and all(plan.restricted for plan in excluded)
    assert ServicePlan.objects.filter(broker=broker).count() == len(all_plans(osb_broker))


def test_a_change_of_rules_remirrors_at_once_without_asking_the_broker(
    osb_url: str, osb_broker: SampleBroker, admin_user: Any
) -> None:
    broker = register(osb_url)
    hobby = ServicePlan.objects.get(broker=broker, catalog_id=plan_id("postgresql", "hobby"))
    instance = ServiceInstance.objects.create(name="db", namespace="team-a", broker=broker, plan=hobby, state="ready")
    revision = broker.catalog_revision
    osb_broker.clear_requests()

    services.broker_update(broker=broker, catalog_restrictions={"plans": ["free==false"]}, requested_by=admin_user)

    assert osb_broker.requests == []  # re-mirrored from the last catalog: no broker call
    hobby.refresh_from_db()
    assert (hobby.active, hobby.restricted) == (False, True)
    assert all(not p["free"] for p in ServicePlan.objects.filter(broker=broker, active=True).values("free"))
    broker.refresh_from_db()
    assert broker.catalog_restrictions == {"services": [], "plans": ["free==false"]}
    assert broker.catalog_revision == revision + 1  # the store's cached pages are stale now
    record = CatalogSync.objects.filter(broker=broker).first()
    assert (record.trigger, record.outcome) == (CatalogSync.Trigger.RESTRICTIONS, CatalogSync.Outcome.CHANGED)
    removed = {e["name"]: e for e in record.diff["plans"]["removed"]}
    assert removed["hobby"] == {"catalog_id": hobby.catalog_id, "name": "hobby", "service": "postgresql",
                                "affected_instances": 1, "reason": "restricted"}
    assert set(removed) == {p.split("/")[1] for p in all_plans(osb_broker, lambda s, p: p.get("free", True))}
    assert [e["name"] for e in record.diff["services"]["removed"]] == ["status-page"]  # no paid plan left
    audit = AuditRecord.objects.filter(action="broker.catalog.sync").first()
    assert audit.actor == admin_user and "re-mirrored for its new catalog restrictions" in audit.summary
    instance.refresh_from_db()
    assert instance.plan_id == hobby.pk and instance.state == "ready"  # the instance keeps its plan
    with pytest.raises(ApplicationError, match="The plan 'Hobby' is no longer offered on this platform"):
        instance_provision(plan=hobby, name="another", namespace="team-a")

    # Lifting the rules offers everything again, and the next relist keeps it that way.
    services.broker_update(broker=broker, catalog_restrictions={}, requested_by=admin_user)
    assert offered(broker)[1] == all_plans(osb_broker)
    assert [e["name"] for e in CatalogSync.objects.filter(broker=broker).first().diff["services"]["added"]] == [
        "status-page"]
    Broker.objects.filter(pk=broker.pk).update(catalog_digest="")  # a full relist of the same document
    relist = services.catalog_sync(broker_id=broker.pk, force=True)
    assert relist.outcome == CatalogSync.Outcome.UNCHANGED and offered(broker)[1] == all_plans(osb_broker)


def test_the_same_rules_written_differently_change_nothing(osb_url: str, osb_broker: SampleBroker) -> None:
    broker = register(osb_url, {"services": ["name in (postgresql,redis-cache)"]})
    syncs = CatalogSync.objects.filter(broker=broker).count()

    services.broker_update(broker=broker, catalog_restrictions={"services": ["name in ( postgresql , redis-cache )"]})

    assert CatalogSync.objects.filter(broker=broker).count() == syncs


def test_rules_set_before_the_first_sync_apply_to_it(osb_url: str, osb_broker: SampleBroker) -> None:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    broker = services.broker_register(name="later", url=osb_url, auth=auth)
    services.broker_update(broker=broker, catalog_restrictions={"services": ["name==redis-cache"]})
    assert not CatalogSync.objects.filter(broker=broker).exists()  # nothing to re-mirror yet

    services.catalog_sync(broker_id=broker.pk, force=True)

    assert offered(broker)[0] == ["redis-cache"]


# --- through the API ---------------------------------------------------------------------------------------------


def test_the_api_takes_rules_and_names_a_bad_one(admin_api: APIClient, osb_url: str, osb_broker: SampleBroker) -> None:
    body = {"name": "restricted", "url": osb_url, "auth": {"type": "basic", "username": BROKER_USER,
                                                           "password": BROKER_PASSWORD},
            "catalog_restrictions": {"services": ["name in (postgresql,rabbitmq)"], "plans": ["free==true"]}}
    created = admin_api.post("/api/v1/brokers/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["catalog_restrictions"] == {"services": ["name in (postgresql, rabbitmq)"],
                                                      "plans": ["free==true"]}
    broker_id = created.json()["id"]
    services.catalog_sync(broker_id=broker_id, force=True)
    names = {s["name"] for s in admin_api.get("/api/v1/services/").json()["results"]}
    assert names == {"postgresql", "rabbitmq"}

    bad = admin_api.patch(f"/api/v1/brokers/{broker_id}/",
                          {"catalog_restrictions": {"plans": ["free==true", "fre==false"]}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["catalog_restrictions"] == [
        "Plan rule 2 “fre==false”: unknown property 'fre' (use name, catalog_id or free)."]
    assert Broker.objects.get(pk=broker_id).catalog_restrictions["plans"] == ["free==true"]  # left intact

    # The value replaces the rules whole: a missing key means no rule of that kind.
    changed = admin_api.patch(f"/api/v1/brokers/{broker_id}/", {"catalog_restrictions": {"plans": ["free==true"]}},
                              format="json")
    assert changed.status_code == 200, changed.content
    # At once: the very next read lists every service with a free plan.
    names = {s["name"] for s in admin_api.get("/api/v1/services/?page_size=100").json()["results"]}
    assert names == {s["name"] for s in build_catalog(osb_broker.url)["services"]
                     if any(p.get("free", True) for p in s["plans"])}
