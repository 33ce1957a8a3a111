"""End to end: a broker registered through the API is mirrored by a real Celery worker process."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker
from devtools.sample_broker import SampleBroker, build_catalog
from tests.conftest import BROKER_PASSWORD, BROKER_USER, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _broker_body(admin_api: Any, broker_id: str) -> dict[str, Any]:
    response = admin_api.get(f"/api/v1/brokers/{broker_id}/")
    assert response.status_code == 200
    return response.json()


def test_registered_broker_is_mirrored_by_a_worker_within_seconds(
    celery_worker_process: Any, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    expected = build_catalog(osb_broker.url)
    response = admin_api.post(
        "/api/v1/brokers/",
        {"name": "sample", "url": osb_url,
         "auth": {"type": "basic", "username": BROKER_USER, "password": BROKER_PASSWORD}},
        format="json",
    )
    assert response.status_code == 201, response.content
    broker_id = response.json()["id"]

    body = wait_for(
        lambda: (b := _broker_body(admin_api, broker_id))["status"] in ("ready", "failed") and b,
        timeout=30, what="the worker to mirror the catalog",
    )
    assert body["status"] == "ready", body["status_message"]
    assert body["service_count"] == len(expected["services"])
    assert body["plan_count"] == sum(len(s["plans"]) for s in expected["services"])
    services = admin_api.get("/api/v1/services/?page_size=100").json()
    assert {s["catalog_id"] for s in services["results"]} == {s["id"] for s in expected["services"]}
    assert osb_broker.requests_for("GET", "/v2/catalog"), "the worker never called the broker"


def test_a_lost_message_is_recovered_by_the_sweeper(
    celery_worker_process: Any, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    from brokers import services
    from brokers.tasks import catalog_sync_due

    # A sync is due in the database but its Celery message never arrived (Redis flushed, crash...).
    broker = Broker(name="lost", url=osb_url, auth_type="basic", auth_username=BROKER_USER)
    broker.set_auth_secret(BROKER_PASSWORD)
    broker.next_sync_at = timezone.now()
    broker.save()

    catalog_sync_due.delay()  # what beat sends every few seconds

    wait_for(lambda: Broker.objects.get(pk=broker.pk).status == Broker.Status.READY, timeout=30,
             what="the sweeper to dispatch the sync")
    assert _broker_body(admin_api, str(broker.pk))["service_count"] > 0
    assert services.catalog_sync_due() == []
