"""brokers.mirror.insert_rows (a COPY on Postgres, with values written as they are or as orjson text) stores every
column exactly as Django's own INSERT does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.forms.models import model_to_dict

from brokers import services
from brokers.mirror import insert_rows
from brokers.models import ServiceOffering, ServicePlan

pytestmark = pytest.mark.django_db

AWKWARD_JSON = {
    "text": "é — ünïcode \u2028 \"quoted\" \\ back\tslash\nnew line",
    "big": 2**70,  # beyond 64 bits: orjson refuses it, the json module takes over
    "small": 1e-07, "nested": [{"a": None, "b": [True, False, 0, -1.5]}], "empty": {},
}


def offering(broker: Any, catalog_id: str) -> ServiceOffering:
    return ServiceOffering(
        id=uuid.uuid4(), broker=broker, catalog_id=catalog_id, name="name\twith tab", description="line\nbreak \\N",
        tags=["a", "é"], requires=[], bindable=True, metadata=AWKWARD_JSON, dashboard_client=None,
        display_name="", long_description="", image_url=None, raw={"k": AWKWARD_JSON}, search_text="x",
        tag_index="|a|", content_hash="0" * 64, position=3, created_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )


def plan(broker: Any, offering: ServiceOffering, catalog_id: str) -> ServicePlan:
    return ServicePlan(
        id=uuid.uuid4(), broker=broker, offering=offering, catalog_id=catalog_id, name="p", description="",
        free=False, bindable=None, plan_updateable=True, metadata={}, bullets=["x"], costs=[], schemas=AWKWARD_JSON,
        maximum_polling_duration=None, maintenance_info=None, raw=AWKWARD_JSON, content_hash="f" * 64, position=0,
        schemas_changed=None, created_at=datetime(2026, 1, 2, tzinfo=UTC), updated_at=datetime(2026, 1, 3, tzinfo=UTC),
    )


def stored(model: Any, pk: Any) -> dict[str, Any]:
    row = model.objects.get(pk=pk)
    values = model_to_dict(row, exclude=["id", "catalog_id", "offering", "teams"])
    values["pk_type"] = type(row.pk)
    return values


def test_insert_rows_stores_what_django_stores() -> None:
    broker = services.broker_register(name="b", url="http://127.0.0.1:9", auth=services.BrokerAuth(type="none"))
    by_django, by_us = offering(broker, "one"), offering(broker, "two")
    ServiceOffering.objects.bulk_create([by_django])
    insert_rows(ServiceOffering, [by_us])
    assert stored(ServiceOffering, by_us.pk) == stored(ServiceOffering, by_django.pk)
    assert ServiceOffering.objects.get(pk=by_us.pk).metadata["big"] == 2**70

    plan_by_django, plan_by_us = plan(broker, by_django, "p1"), plan(broker, by_us, "p2")
    ServicePlan.objects.bulk_create([plan_by_django])
    insert_rows(ServicePlan, [plan_by_us])
    assert stored(ServicePlan, plan_by_us.pk) == stored(ServicePlan, plan_by_django.pk)
    assert not by_us._state.adding


def test_the_accepted_catalog_document_is_stored_as_json_not_as_a_string() -> None:
    from brokers.mirror import json_value
    from brokers.models import CatalogDocument

    broker = services.broker_register(name="b", url="http://127.0.0.1:9", auth=services.BrokerAuth(type="none"))
    document = {"services": [{"name": "é", "plans": []}], "extra": AWKWARD_JSON}
    CatalogDocument.objects.create(broker=broker, document=json_value({"old": True}))
    assert CatalogDocument.objects.get(broker=broker).document == {"old": True}
    CatalogDocument.objects.filter(broker=broker).update(document=json_value(document))
    assert CatalogDocument.objects.get(broker=broker).document == document
    assert CatalogDocument.objects.filter(broker=broker, document__services__0__name="é").exists()
