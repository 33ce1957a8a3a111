"""/metrics: the families exist, and a real provision and bind through a real worker move them as they should."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from brokers.metrics import osb_call_rows
from devtools.kube_standin import KubeStandIn
from devtools.sample_broker import SampleBroker
from instances.metrics import PUBLICATION_LAG
from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from telemetry.models import MetricSample
from tests.conftest import Workers, _worker_database_url
from tests.instances.helpers import mirrored_broker, plan
from tests.instances.test_e2e_bindings import bind, provision, wait_published
from tests.telemetry.conftest import WebServer

FAMILIES = {
    "portal_osb_requests": "counter", "portal_osb_request_duration_seconds": "histogram",
    "portal_operations": "gauge", "portal_operations_finished": "counter", "portal_broker_up": "gauge",
    "portal_catalog_sync_duration_seconds": "histogram", "portal_catalog_syncs": "counter",
    "portal_secret_publication_lag_seconds": "histogram", "portal_http_requests": "counter",
    "portal_http_request_duration_seconds": "histogram",
}


def scrape(client: Client | None = None, **headers: str) -> dict[str, Any]:
    response = (client or Client()).get("/metrics", HTTP_HOST="10.1.2.3:8000", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The value of one sample (0 when absent: a counter not counted yet)."""
    family_name = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    for family in families.values():
        if family.name != family_name:
            continue
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


@pytest.mark.django_db
def test_every_family_is_exported_with_its_type() -> None:
    families = scrape()
    for name, kind in FAMILIES.items():
        assert name in families, f"{name} missing"
        assert families[name].type == kind, name


@pytest.mark.parametrize(("method", "path", "endpoint"), [
    ("GET", "/v2/catalog", "catalog"),
    ("PUT", "/broker/v2/service_instances/abc?accepts_incomplete=true", "provision"),
    ("PATCH", "/v2/service_instances/abc", "update"),
    ("DELETE", "/v2/service_instances/abc?plan_id=p&service_id=s", "deprovision"),
    ("GET", "/v2/service_instances/abc", "fetch_instance"),
    ("GET", "/v2/service_instances/abc/last_operation?operation=x", "last_operation"),
    ("PUT", "/v2/service_instances/abc/service_bindings/def", "bind"),
    ("DELETE", "/v2/service_instances/abc/service_bindings/def", "unbind"),
    ("GET", "/v2/service_instances/abc/service_bindings/def", "fetch_binding"),
    ("GET", "/v2/service_instances/abc/service_bindings/def/last_operation", "binding_last_operation"),
    ("POST", "/v2/service_instances/abc", "other"),
    ("GET", "/healthz", "other"),
])
def test_osb_endpoint_labels_are_the_spec_names_never_ids(method: str, path: str, endpoint: str) -> None:
    rows = osb_call_rows(broker="b", calls=[{"method": method, "path": path, "status": 200, "duration_ms": 5}])
    assert f'"endpoint":"{endpoint}"' in rows[0][1]


@pytest.mark.e2e
def test_a_provision_and_a_bind_through_a_real_worker_move_the_metrics(
    kube: KubeStandIn, workers: Workers, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "never"
    workers.start(beat=True)
    client = Client()
    before = scrape(client)
    assert value(before, "portal_operations", type="provision", state="succeeded") == 0

    instance = provision(admin_api, osb_url)
    body = wait_published(admin_api, bind(admin_api, instance["id"], "app-cache")["id"])
    assert body["publication"]["state"] == "published"

    after = scrape(client)
    broker = "test-broker"
    # The catalog sync (in this process) and the provision and bind (in the worker) were counted.
    assert value(after, "portal_osb_requests_total", broker=broker, endpoint="catalog", status="200") >= 1
    assert value(after, "portal_osb_requests_total", broker=broker, endpoint="provision", status="201") == 1
    assert value(after, "portal_osb_requests_total", broker=broker, endpoint="bind", status="201") == 1
    assert value(after, "portal_osb_request_duration_seconds_count", broker=broker, endpoint="bind") == 1
    assert value(after, "portal_osb_request_duration_seconds_bucket", broker=broker, endpoint="bind", le="+Inf") == 1
    assert value(after, "portal_osb_request_duration_seconds_sum", broker=broker, endpoint="bind") > 0
    # The recorded calls and the counters agree.
    assert OperationCall.objects.filter(path__contains="/service_bindings/", method="PUT").count() == 1
    assert value(after, "portal_operations", type="provision", state="succeeded") == 1
    assert value(after, "portal_operations", type="bind", state="succeeded") == 1
    assert value(after, "portal_operations_finished_total", type="bind", state="succeeded") == 1
    assert value(after, "portal_operations", type="provision", state="pending") == 0
    assert value(after, "portal_broker_up", broker=broker) == 1
    assert value(after, "portal_catalog_sync_duration_seconds_count", broker=broker) >= 1
    assert value(after, "portal_catalog_syncs_total", broker=broker, outcome="changed") == 1
    assert value(after, "portal_secret_publication_lag_seconds_count") == 1
    assert value(after, "portal_secret_publication_lag_seconds_bucket", le="+Inf") == 1
    # The web counted its own API requests (this process's counters live as long as the test session: deltas).
    for view in ("instance-list", "binding-list"):
        labels = {"method": "POST", "view": view, "status": "202"}
        assert value(after, "portal_http_requests_total", **labels) - value(
            before, "portal_http_requests_total", **labels) == 1


@pytest.mark.django_db
def test_operations_gauge_counts_active_and_overdue_operations_apart(osb_url: str, osb_broker: SampleBroker) -> None:
    broker = mirrored_broker(osb_url)
    p = plan(broker, "redis-cache", "cache-free")
    now = timezone.now()

    def operation(name: str, **fields: Any) -> Operation:
        instance = ServiceInstance.objects.create(name=name, namespace="team-a", broker=broker, plan=p)
        return Operation.objects.create(type="provision", instance=instance, **fields)

    operation("on-time", next_poll_at=now + timedelta(seconds=30))
    operation("lost-message", next_poll_at=now - timedelta(minutes=5))
    operation("dead-worker", state="in_progress", next_poll_at=now - timedelta(minutes=5),
              claimed_until=now - timedelta(minutes=1))
    operation("working", state="in_progress", next_poll_at=now, claimed_until=now + timedelta(minutes=1))
    families = scrape()
    assert value(families, "portal_operations", type="provision", state="pending") == 1
    assert value(families, "portal_operations", type="provision", state="in_progress") == 1
    assert value(families, "portal_operations", type="provision", state="overdue") == 2
    assert value(families, "portal_operations", type="bind", state="overdue") == 0


@pytest.mark.django_db
def test_a_broker_whose_catalog_fetch_failed_is_down(osb_url: str, osb_broker: SampleBroker) -> None:
    from brokers import services

    broker = mirrored_broker(osb_url)
    assert value(scrape(), "portal_broker_up", broker=broker.name) == 1
    osb_broker.set_response("GET", "/v2/catalog", 500, body={"description": "down"}, times=10)
    services.catalog_sync(broker_id=broker.pk, force=True)
    families = scrape()
    assert value(families, "portal_broker_up", broker=broker.name) == 0
    assert value(families, "portal_catalog_syncs_total", broker=broker.name, outcome="failed") == 1
    assert value(families, "portal_osb_requests_total", broker=broker.name, endpoint="catalog", status="500") == 1


@pytest.mark.django_db
def test_a_scrape_reads_a_bounded_number_of_rows_never_the_call_records(osb_url: str,
                                                                        osb_broker: SampleBroker) -> None:
    broker = mirrored_broker(osb_url)
    instance = ServiceInstance.objects.create(name="x", namespace="team-a", broker=broker,
                                              plan=plan(broker, "redis-cache", "cache-free"))
    op = Operation.objects.create(type="provision", instance=instance, state="succeeded")

    def queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            scrape()
        return [q["sql"] for q in captured.captured_queries]

    first = queries()
    OperationCall.objects.bulk_create([OperationCall(operation=op, method="GET", path="/v2/x", request_id="r",
                                                     at=timezone.now()) for _ in range(200)])
    second = queries()
    assert len(first) == len(second)
    assert not any(OperationCall._meta.db_table in sql for sql in second)


@pytest.mark.django_db
def test_metrics_token_requires_the_bearer(settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Token s3cret-scrape-token").status_code == 401
    assert "portal_operations" in scrape(client, HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_http_metrics_count_every_request_whichever_gunicorn_worker_answers(
    transactional_db: Any, web_server: Callable[..., WebServer]
) -> None:
    server = web_server(workers=2, DATABASE_URL=_worker_database_url(), METRICS_TOKEN="t0ken")
    with httpx.Client(base_url=server.url, headers={"Host": "localhost"}, timeout=10) as client:
        for _ in range(12):
            assert client.get("/login/").status_code == 200
        text = client.get("/metrics", headers={"Authorization": "Bearer t0ken"}).text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert value(families, "portal_http_requests_total", method="GET", view="login", status="200") == 12
    assert value(families, "portal_http_request_duration_seconds_count", method="GET", view="login") == 12
    assert "portal_operations" in families  # the portal-wide families too


@pytest.mark.django_db(transaction=True)
def test_the_publication_lag_is_observed_once_when_two_runs_publish_at_once(
    kube: KubeStandIn, osb_url: str, osb_broker: SampleBroker
) -> None:
    """The bind's own message and the reconcile may publish the same new binding at the same moment: one lag."""
    import threading

    from django.db import connection as db_connection

    from instances.services.bindings import binding_create
    from instances.services.instances import instance_provision
    from instances.services.kubernetes import binding_publish
    from tests.instances.helpers import run_operations

    osb_broker.async_mode = "never"
    instance = instance_provision(plan=plan(mirrored_broker(osb_url), "redis-cache", "cache-free"), name="cache",
                                  namespace="team-a")
    ops = run_operations()
    instance.refresh_from_db()
    assert instance.state == "ready", [(op.type, op.state, op.error) for op in ops]
    binding = binding_create(instance=instance, name="app-cache")
    run_operations()  # binds, and publishes at once (the bind's own run): undo that publication to race two runs
    ServiceBinding.objects.filter(pk=binding.pk).update(published_at=None, publication_state="pending",
                                                        publication_hash="")
    MetricSample.objects.filter(name__startswith=PUBLICATION_LAG.name).delete()
    kube.delete_secret("team-a", "app-cache")
    barrier, errors = threading.Barrier(2), []

    def publish() -> None:
        try:
            barrier.wait(timeout=10)
            binding_publish(binding_id=binding.pk)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert kube.get_secret("team-a", "app-cache") is not None
    families = scrape()
    assert value(families, "portal_secret_publication_lag_seconds_count") == 1
