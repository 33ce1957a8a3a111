"""End to end with a real worker and beat: an upgrade batch advances by itself (the sweeper and the nudges of
finished updates), never with more than `max_parallel` updates in flight at the broker; a drift check runs in
the worker like any operation."""

from __future__ import annotations

from typing import Any

import pytest

from devtools.sample_broker import SampleBroker
from instances.models import ServiceInstance
from instances.services.instances import instance_provision
from tests.conftest import wait_for
from tests.instances.helpers import mirrored_broker, plan
from tests.instances.test_upgrades import bump_version

pytestmark = [pytest.mark.e2e]


def test_a_batch_advances_by_itself_with_a_real_worker(
    celery_worker_process: Any, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode, osb_broker.async_seconds = "always", 0.5
    broker = mirrored_broker(osb_url)
    small = plan(broker, "postgresql", "standard-small")
    instances = [instance_provision(plan=small, name=f"db-{n}", namespace="team-a",
                                    parameters={"database_name": "orders"}) for n in range(4)]
    wait_for(lambda: ServiceInstance.objects.filter(state="ready").count() == 4, timeout=90, interval=0.2,
             what="the provisions")
    bump_version(osb_broker, broker)

    response = admin_api.post("/api/v1/upgrades/", {"plan": str(small.pk), "max_parallel": 2}, format="json")
    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]

    def finished() -> Any:
        body = admin_api.get(f"/api/v1/upgrades/{batch_id}/").json()
        return body if body["state"] == "finished" else None

    body = wait_for(finished, timeout=120, interval=0.3, what="the batch to finish",
                    explain=lambda: admin_api.get(f"/api/v1/upgrades/{batch_id}/").json())
    assert body["counts"]["succeeded"] == 4
    assert osb_broker.peak_in_flight["update"] == 2
    for instance in instances:
        instance.refresh_from_db()
        assert instance.maintenance_info["version"] == "1.3.0"

    # A drift check, run by the worker: the broker's instance was changed behind the portal's back.
    target = instances[0]
    osb_broker.instances[str(target.pk)]["parameters"]["database_name"] = "by-hand"
    assert admin_api.post(f"/api/v1/instances/{target.pk}/refresh/").status_code == 202

    def checked() -> Any:
        drift = admin_api.get(f"/api/v1/instances/{target.pk}/").json()["drift"]
        return drift if drift and drift["differences"] else None

    drift = wait_for(checked, timeout=60, interval=0.2, what="the drift check")
    assert [d["field"] for d in drift["differences"]] == ["parameters"]
