"""End to end with real worker processes: provision, update, deprovision, and surviving a killed worker."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from devtools.sample_broker import SampleBroker
from devtools.sample_broker.server import PASS_THROUGH
from instances.models import Operation
from instances.states import ACTIVE
from tests.conftest import Workers, wait_for
from tests.instances.helpers import mirrored_broker, plan

pytestmark = [pytest.mark.e2e]


def _state(api: Any, instance_id: str) -> dict[str, Any] | None:
    response = api.get(f"/api/v1/instances/{instance_id}/")
    return response.json() if response.status_code == 200 else None


def _wait_terminal(api: Any, instance_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> Any:
        body = _state(api, instance_id)
        # Wait for the operation and the instance both: on SQLite the two are read by separate queries.
        settled = body and body["last_operation"]["state"] in ("succeeded", "failed")
        return settled and body["state"] not in ("provisioning", "updating", "deprovisioning") and body

    return wait_for(done, timeout=timeout, interval=0.2, what="the operation to finish")


def test_async_provision_update_and_deprovision_with_a_real_worker(
    celery_worker_process: Any, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_seconds = 1.0
    broker = mirrored_broker(osb_url)
    starter = plan(broker, "analytics-warehouse", "starter")
    response = admin_api.post("/api/v1/instances/", {"name": "warehouse", "namespace": "team-a",
                                                     "plan": str(starter.pk),
                                                     "parameters": {"warehouse_name": "sales"}}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "provisioning" and body["last_operation"]["state"] in ("pending", "in_progress")

    body = _wait_terminal(admin_api, body["id"])
    assert body["last_operation"]["state"] == "succeeded", body
    assert body["state"] == "ready"
    polls = osb_broker.requests_for("GET", r"/v2/service_instances/[^/]+/last_operation")
    assert polls and all(p.query.get("operation") for p in polls)

    response = admin_api.delete(f"/api/v1/instances/{body['id']}/")
    assert response.status_code == 202
    wait_for(lambda: admin_api.get(f"/api/v1/instances/{body['id']}/").status_code == 404, timeout=60,
             interval=0.2, what="the deprovision to finish")
    assert body["id"] not in osb_broker.instances


def _flush_transport() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()
    else:
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        for message in folder.glob("*"):
            message.unlink(missing_ok=True)


def test_a_killed_worker_and_a_flushed_queue_delay_but_never_lose_a_provision(
    workers: Workers, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    broker = mirrored_broker(osb_url)
    basic = plan(broker, "status-page", "basic")
    # The broker takes 4 s to create the instance: long enough to kill the worker mid-call. The broker
    # still creates it, so the retried request must find it there and not create a second one.
    osb_broker.set_response("PUT", r"/v2/service_instances/[^/]+", PASS_THROUGH, times=1, delay=4.0)
    first = workers.start(OPERATION_LEASE_SECONDS="6")

    response = admin_api.post("/api/v1/instances/", {"name": "survivor", "namespace": "team-a",
                                                     "plan": str(basic.pk)}, format="json")
    assert response.status_code == 202
    instance_id = response.json()["id"]
    wait_for(lambda: osb_broker.requests_for("PUT"), timeout=30, what="the worker to send the provision")

    Workers.kill(first, signal.SIGKILL)
    _flush_transport()
    op = Operation.objects.get(instance_id=instance_id)
    assert op.state in ACTIVE and op.claimed_until is not None  # held by the dead worker's lease

    workers.start(beat=True, OPERATION_LEASE_SECONDS="6")  # a new worker, with beat's sweeper
    body = _wait_terminal(admin_api, instance_id, timeout=90)

    assert body["last_operation"]["state"] == "succeeded" and body["state"] == "ready"
    puts = osb_broker.requests_for("PUT")
    assert len(puts) == 2
    assert puts[0].json == puts[1].json  # the retry is the same request, byte for byte in content
    assert list(osb_broker.instances) == [instance_id]  # exactly one instance exists at the broker
    stuck = Operation.objects.filter(state__in=ACTIVE, claimed_until__isnull=True, next_poll_at__isnull=True)
    assert not stuck.exists()
