"""An instance's page says what the catalog changed under it: its plan removed or no longer offered, a newer
maintenance version, or new parameter schemas since its parameters were set."""

from __future__ import annotations

import copy
import re
from html import unescape
from typing import Any

import pytest

from brokers import services as broker_services
from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog
from devtools.sample_broker.catalog import plan_id
from instances.models import ServiceInstance
from tests.conftest import signed_in
from tests.instances.helpers import mirrored_broker

pytestmark = pytest.mark.django_db

SMALL = plan_id("postgresql", "standard-small")


@pytest.fixture
def catalog(osb_broker: SampleBroker) -> dict[str, Any]:
    document = build_catalog(osb_broker.url)
    osb_broker.catalog = document
    return document


@pytest.fixture
def broker(osb_broker: SampleBroker, catalog: dict[str, Any]) -> Broker:
    return mirrored_broker(osb_broker.url)


def instance_on(broker: Broker, catalog_id: str = SMALL, name: str = "db") -> ServiceInstance:
    plan = ServicePlan.objects.get(broker=broker, catalog_id=catalog_id)
    return ServiceInstance.objects.create(name=name, namespace="team-a", broker=broker, plan=plan, state="ready",
                                          maintenance_info=plan.maintenance_info)


def relist(osb_broker: SampleBroker, broker: Broker, change: Any, catalog: dict[str, Any]) -> None:
    new = copy.deepcopy(catalog)
    change(new)
    osb_broker.catalog = new
    record = broker_services.catalog_sync(broker_id=broker.pk, force=True)
    assert record is not None and not record.error, record and record.error


def small(catalog: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in catalog["services"][0]["plans"] if p["id"] == SMALL)


def notes(admin_user: Any, instance: ServiceInstance) -> str:
    html = signed_in(admin_user).get(instance.get_absolute_url()).content.decode()
    section = re.search(r'<section class="catalog-notes".*?</section>', html, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", section.group(0)))) if section else ""


def test_a_removed_plan_says_so(admin_user: Any, osb_broker: SampleBroker, broker: Broker,
                                catalog: dict[str, Any]) -> None:
    instance = instance_on(broker)
    assert notes(admin_user, instance) == ""

    relist(osb_broker, broker, lambda c: c["services"][0]["plans"].remove(small(c)), catalog)

    shown = notes(admin_user, instance)
    assert "This plan was removed from the broker's catalog" in shown
    assert "The broker no longer lists the Standard Small plan" in shown and "This instance keeps working" in shown


def test_a_plan_excluded_by_the_restrictions_says_so(admin_user: Any, broker: Broker) -> None:
    instance = instance_on(broker)

    broker_services.broker_update(broker=broker, catalog_restrictions={"plans": ["free==true"]})

    shown = notes(admin_user, instance)
    assert "This plan is no longer offered" in shown and "catalog restrictions exclude the Standard Small plan" in shown


def test_a_new_maintenance_version_says_so(admin_user: Any, osb_broker: SampleBroker, broker: Broker,
                                           catalog: dict[str, Any]) -> None:
    instance = instance_on(broker)

    relist(osb_broker, broker, lambda c: small(c).update(maintenance_info={"version": "1.3.0",
                                                                            "description": "PostgreSQL 16.4."}),
           catalog)

    shown = notes(admin_user, instance)
    assert "Maintenance version 1.3.0 is available" in shown
    assert "The broker now offers version 1.3.0 of this plan (this instance has 1.2.0). PostgreSQL 16.4." in shown


def _new_create_schema(catalog: dict[str, Any]) -> None:
    create = copy.deepcopy(small(catalog)["schemas"]["service_instance"]["create"]["parameters"])
    create["properties"]["pool_size"] = {"type": "integer"}
    create["required"] = [*create["required"], "version"]
    small(catalog)["schemas"]["service_instance"]["create"]["parameters"] = create


def test_a_schema_changed_after_the_parameters_were_set_says_how(admin_user: Any, osb_broker: SampleBroker,
                                                                 broker: Broker, catalog: dict[str, Any]) -> None:
    before = instance_on(broker, name="before")

    relist(osb_broker, broker, _new_create_schema, catalog)
    after = instance_on(broker, name="after")  # its parameters were checked against the new schema

    shown = notes(admin_user, before)
    assert "The plan's parameters changed" in shown
    assert "Parameters for creating an instance: added pool_size; now required version" in shown
    assert notes(admin_user, after) == ""


def test_a_deleted_instance_has_no_notes(admin_user: Any, osb_broker: SampleBroker, broker: Broker,
                                         catalog: dict[str, Any]) -> None:
    instance = instance_on(broker)
    ServiceInstance.objects.filter(pk=instance.pk).update(state="deleted")

    relist(osb_broker, broker, lambda c: c["services"][0]["plans"].remove(small(c)), catalog)

    assert notes(admin_user, instance) == ""
