"""Helpers for engine tests: mirror the test broker's catalog, run operations to the end in-process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db.models import Model
from django.utils import timezone

from brokers import services as broker_services
from brokers.models import Broker, CatalogSync, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation
from instances.services.operations import operation_step
from instances.states import ACTIVE, OpState, Phase
from tests.conftest import BROKER_PASSWORD, BROKER_USER, wait_for


def mirrored_broker(url: str, name: str = "test-broker") -> Broker:
    broker = broker_services.broker_register(
        name=name, url=url,
        auth=broker_services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD),
    )
    sync = broker_services.catalog_sync(broker_id=broker.pk, force=True)
    if sync is None:  # a running worker took the registration's sync first (end-to-end tests): wait for it
        sync = wait_for(
            lambda: CatalogSync.objects.filter(broker=broker, finished_at__isnull=False).order_by("-pk").first(),
            what="the worker's catalog sync",
        )
    assert not sync.error, sync.error
    broker.refresh_from_db()
    return broker


def plan(broker: Broker, service_name: str, plan_name: str) -> ServicePlan:
    return ServicePlan.objects.select_related("offering").get(broker=broker, offering__name=service_name,
                                                              name=plan_name)


def run_operations(*, max_steps: int = 200, fast: bool = True) -> list[Operation]:
    """Step every active operation until none is left, skipping waits (time is not what these tests check)."""
    for _ in range(max_steps):
        active = list(Operation.objects.filter(state__in=ACTIVE))
        if not active:
            return list(Operation.objects.order_by("started_at"))
        for op in active:
            if fast:
                Operation.objects.filter(pk=op.pk, claimed_until__isnull=True).update(next_poll_at=timezone.now())
            operation_step(operation_id=op.pk)
    raise AssertionError("operations did not finish")


def step_once(op: Operation) -> float | None:
    Operation.objects.filter(pk=op.pk).update(next_poll_at=timezone.now())
    return operation_step(operation_id=op.pk)


def broker_calls(broker: SampleBroker, method: str, path: str = r"/v2/service_instances/[^/]+") -> list[Any]:
    return broker.requests_for(method, path)


def step(op: Operation) -> Operation:
    """One engine step of `op`, now; `op` reloaded."""
    step_once(op)
    op.refresh_from_db()
    return op


def assert_cleanup_retries_until_confirmed(osb_broker: SampleBroker, cleanup: Operation, *, resource: Model,
                                           delete_path: str, what: str, sent: Callable[[], list[Any]],
                                           p: ServicePlan) -> Operation:
    """An orphan-mitigation operation whose first DELETE the broker answers 500 and whose second it confirms: it
    retries after ORPHAN_MITIGATION_RETRY_FIRST_SECONDS (the start of its capped backoff), `resource` (instance or binding) stays failed meanwhile, and each DELETE carries the
    service and plan ids. `sent()`: the DELETEs the broker received for `resource`."""
    before = len(sent())
    osb_broker.set_response("DELETE", delete_path, 200, times=1, body={})
    osb_broker.set_response("DELETE", delete_path, 500, times=1, body={"description": "try later"})
    cleanup = step(cleanup)
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.phase == Phase.SUBMIT
    assert cleanup.attempts == 1
    assert cleanup.next_step.startswith(f"Cleaning up at the broker after a failed {what}, attempt 1")
    first = settings.ORPHAN_MITIGATION_RETRY_FIRST_SECONDS
    assert (cleanup.next_poll_at - timezone.now()).total_seconds() == pytest.approx(first, abs=1.5)
    resource.refresh_from_db()
    assert resource.state == "failed"  # type: ignore[attr-defined]

    cleanup = step(cleanup)
    assert cleanup.state == OpState.SUCCEEDED and cleanup.attempts == 2
    requests = sent()[before:]
    assert len(requests) == 2
    for request in requests:
        assert request.query == {"service_id": p.offering.catalog_id, "plan_id": p.catalog_id,
                                 "accepts_incomplete": "true"}
    return cleanup


def record_polls(op: Operation, count: int, *, minutes_ago: float = 5) -> str:
    """`count` last_operation polls answered "in progress", one a second, recorded on `op` as the engine records
    them (a long asynchronous operation, without waiting for one). Returns the polled path."""
    from datetime import timedelta

    from instances.models import OperationCall

    start = timezone.now() - timedelta(minutes=minutes_ago)
    path = f"/v2/service_instances/{op.instance_id}/last_operation?operation=task-1"
    OperationCall.objects.bulk_create([
        OperationCall(operation=op, method="GET", path=path, status=200, duration_ms=3 + i % 4, request_id=f"r{i}",
                      at=start + timedelta(seconds=i), response_excerpt='{"state":"in progress"}')
        for i in range(count)
    ])
    return path
