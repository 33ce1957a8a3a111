"""Found with an independent broker (issue 11): a broker that recovers becomes ready without anyone pressing
"Sync now", and the same broker (or its catalog ids) registered twice is refused. The test broker plays the part."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from brokers import services
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog
from teams.models import AuditRecord
from tests.conftest import (
    BROKER_PASSWORD,
    BROKER_USER,
    alias_url,
    signed_in,
    wait_for,
    with_catalog_ids_prefixed,
)

CATALOG = "/v2/catalog"


def register(url: str, name: str = "test-broker") -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    return services.broker_register(name=name, url=url, auth=auth)


def sync(broker: Broker) -> CatalogSync:
    result = services.catalog_sync(broker_id=broker.pk, force=True)
    assert result is not None
    broker.refresh_from_db()
    return result


def seconds_until_next_sync(broker: Broker) -> float:
    broker.refresh_from_db()
    return (broker.next_sync_at - timezone.now()).total_seconds()


# --- a failed broker is retried with backoff ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_sync_is_retried_with_a_growing_backoff_capped_and_never_later_than_the_relist(
    osb_broker: SampleBroker, osb_url: str
) -> None:
    osb_broker.set_response("GET", CATALOG, 503, {"description": "down for maintenance"})
    broker = register(osb_url)
    waits = []
    for _ in range(7):
        assert sync(broker).outcome == CatalogSync.Outcome.FAILED
        waits.append(round(seconds_until_next_sync(broker)))
        assert broker.status == Broker.Status.FAILED and broker.sync_trigger == CatalogSync.Trigger.RETRY
    # 30 s, 1 min, 2 min, 4 min, 8 min, then the 15 min cap (the default relist interval)
    assert waits == pytest.approx([30, 60, 120, 240, 480, 900, 900], abs=2)
    assert broker.sync_failures == 7
    # The first failure of the run is on record; the automatic retries do not flood the audit log
    assert AuditRecord.objects.filter(action="broker.catalog.sync", target_id=str(broker.pk)).count() == 1

    osb_broker.clear_responses()
    recovered = sync(broker)
    assert recovered.outcome == CatalogSync.Outcome.CHANGED and recovered.trigger == CatalogSync.Trigger.RETRY
    assert broker.status == Broker.Status.READY and broker.sync_failures == 0 and broker.status_message == ""
    assert round(seconds_until_next_sync(broker)) == pytest.approx(broker.relist_interval_seconds, abs=2)


@pytest.mark.django_db
def test_the_broker_page_says_when_the_portal_tries_again(
    osb_broker: SampleBroker, osb_url: str, admin_user: Any
) -> None:
    osb_broker.set_response("GET", CATALOG, 503, {"description": "down for maintenance"})
    broker = register(osb_url)
    sync(broker)
    sync(broker)
    page = signed_in(admin_user).get(f"/brokers/{broker.pk}/").content.decode()
    assert "2 failed syncs in a row; the portal tries again by itself" in page
    assert "down for maintenance" in page


@pytest.mark.django_db
def test_the_backoff_never_waits_longer_than_the_brokers_own_relist_interval(
    osb_broker: SampleBroker, osb_url: str
) -> None:
    osb_broker.set_response("GET", CATALOG, 500, {"description": "boom"})
    broker = register(osb_url)
    services.broker_update(broker=broker, relist_interval_seconds=45)
    waits = []
    for _ in range(3):
        sync(broker)
        waits.append(round(seconds_until_next_sync(broker)))
    assert waits == pytest.approx([30, 45, 45], abs=2)


def test_a_recovered_broker_becomes_ready_without_a_manual_sync(
    workers: Any, osb_broker: SampleBroker, osb_url: str, admin_user: Any, settings: Any
) -> None:
    """The beat retries the failed broker by itself (a real worker with its beat); the marketplace's failure banner
    goes once it is ready."""
    settings.CATALOG_RETRY_FIRST_SECONDS = 1
    osb_broker.set_response("GET", CATALOG, 502, "<html>bad gateway</html>", headers={"Content-Type": "text/html"})
    broker = register(osb_url)
    failed = sync(broker)
    assert failed.outcome == CatalogSync.Outcome.FAILED and broker.status == Broker.Status.FAILED
    assert "<html>" not in broker.status_message  # summarised: "... with an HTML page"
    assert "failed to sync" in signed_in(admin_user).get("/").content.decode()

    osb_broker.clear_responses()  # the broker is back; nobody presses "Sync now"
    workers.start(beat=True, CATALOG_RETRY_FIRST_SECONDS="1")
    wait_for(lambda: Broker.objects.get(pk=broker.pk).status == Broker.Status.READY, timeout=60,
             what="the failed broker to be synced again by the beat",
             explain=lambda: list(CatalogSync.objects.filter(broker=broker).values("trigger", "outcome", "error")))
    recovered = CatalogSync.objects.filter(broker=broker, outcome=CatalogSync.Outcome.CHANGED).get()
    assert recovered.trigger == CatalogSync.Trigger.RETRY
    assert not CatalogSync.objects.filter(broker=broker, trigger=CatalogSync.Trigger.MANUAL).exists()
    assert ServiceOffering.objects.filter(broker=broker).count() == 7
    assert "failed to sync" not in signed_in(admin_user).get("/").content.decode()


# --- the same broker registered twice -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_broker_url_registered_twice_is_refused_naming_the_first(
    admin_api: Any, osb_broker: SampleBroker, osb_url: str
) -> None:
    first = register(osb_url, name="first")
    sync(first)
    osb_broker.clear_requests()

    response = admin_api.post("/api/v1/brokers/", {
        "name": "again", "url": osb_url + "/", "auth": {"type": "basic", "username": BROKER_USER,
                                                        "password": BROKER_PASSWORD}}, format="json")

    assert response.status_code == 400
    assert "'first'" in response.json()["url"][0]
    assert not Broker.objects.filter(name="again").exists()
    assert osb_broker.requests == []  # decided without asking the broker

    other = register("http://10.0.0.1:8080", name="other")
    moved = admin_api.patch(f"/api/v1/brokers/{other.pk}/", {"url": osb_url}, format="json")
    assert moved.status_code == 400 and "'first'" in moved.json()["url"][0]


@pytest.mark.django_db
def test_a_catalog_reusing_another_brokers_ids_fails_its_sync_naming_them(
    osb_broker: SampleBroker, osb_url: str, admin_user: Any
) -> None:
    first = register(osb_url, name="first")
    sync(first)
    before = (ServiceOffering.objects.count(), ServicePlan.objects.count())

    twin = register(alias_url(osb_url), name="twin")  # the same broker under another host name
    result = sync(twin)

    assert result.outcome == CatalogSync.Outcome.FAILED
    assert twin.status == Broker.Status.FAILED
    catalog = build_catalog(osb_broker.url)
    service_id = catalog["services"][0]["id"]
    assert f"service id '{service_id}' (already offered by broker 'first')" in twin.status_message
    assert "unique across every broker" in result.error
    assert (ServiceOffering.objects.count(), ServicePlan.objects.count()) == before  # nothing of the twin mirrored
    assert not ServiceOffering.objects.filter(broker=twin).exists()
    assert "failed to sync" in signed_in(admin_user).get("/").content.decode()


@pytest.mark.django_db
def test_a_later_catalog_that_collides_fails_and_the_mirror_stays_intact(
    osb_broker: SampleBroker, osb_url: str
) -> None:
    first = register(osb_url, name="first")
    sync(first)
    catalog = build_catalog(osb_broker.url)
    own = with_catalog_ids_prefixed(catalog, "own-")
    osb_broker.catalog = own
    second = register(alias_url(osb_url), name="second")
    assert sync(second).outcome == CatalogSync.Outcome.CHANGED
    mirrored = sorted(ServiceOffering.objects.filter(broker=second, active=True).values_list("catalog_id", flat=True))

    colliding = with_catalog_ids_prefixed(catalog, "own-")
    colliding["services"][1]["plans"][0]["id"] = catalog["services"][1]["plans"][0]["id"]  # one of first's plans
    osb_broker.catalog = colliding
    result = sync(second)

    assert result.outcome == CatalogSync.Outcome.FAILED
    assert f"plan id '{catalog['services'][1]['plans'][0]['id']}' (already offered by broker 'first')" in result.error
    assert second.status == Broker.Status.FAILED
    assert sorted(ServiceOffering.objects.filter(broker=second, active=True).values_list("catalog_id", flat=True)) \
        == mirrored
    assert ServicePlan.objects.filter(broker=second, active=True).count() == sum(len(s["plans"]) for s in own["services"])
    assert ServicePlan.objects.filter(broker=first, active=True).count() == sum(len(s["plans"]) for s in catalog["services"])
    first.refresh_from_db()
    assert first.status == Broker.Status.READY
    # relisting later with ids of its own again is fine
    osb_broker.catalog = own
    assert sync(second).outcome in (CatalogSync.Outcome.UNCHANGED, CatalogSync.Outcome.CHANGED)
    assert second.status == Broker.Status.READY
