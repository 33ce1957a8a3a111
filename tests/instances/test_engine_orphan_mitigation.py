"""Orphan mitigation: one test per row of the OSB spec's table (rows for service instances).

| Request                          | Broker answer              | Interpretation | Mitigation (instances) |
| All                              | 200                        | Success        | No                     |
| All                              | 200 malformed              | Failure        | No                     |
| Poll for provision/deprovision   | 200 "state": "failed"      | Failure        | Yes                    |
| All                              | 201                        | Success        | No                     |
| Provisioning                     | 201 malformed              | Failure        | Yes                    |
| All                              | 202                        | Success        | No                     |
| Provisioning                     | 202 malformed              | Failure        | Yes                    |
| Provisioning/Deprovisioning      | All other 2xx              | Failure        | Yes                    |
| Updating                         | All other 2xx              | Failure        | No                     |
| All                              | 408                        | Client timeout | No                     |
| All                              | All other 4xx              | Rejected       | No                     |
| Provisioning/Deprovisioning      | 5xx                        | Broker error   | Yes                    |
| Updating                         | 5xx                        | Broker error   | No                     |
| Provisioning                     | Timeout                    | Failure        | Yes                    |
| All except provisioning          | Timeout                    | Failure        | No                     |

Mitigation is a DELETE with service_id, plan_id and accepts_incomplete=true, retried until the broker confirms,
run as its own operation (type orphan_mitigation, parent = the failed operation).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.services.instances import instance_deprovision, instance_provision, instance_update
from instances.states import InstanceState, OpState, OpType, Phase
from tests.instances.helpers import (
    assert_cleanup_retries_until_confirmed,
    plan,
    run_operations,
    step,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

INSTANCE_PATH = r"/v2/service_instances/[^/]+"
LAST_OPERATION = INSTANCE_PATH + "/last_operation"
METHOD = {OpType.PROVISION: "PUT", OpType.UPDATE: "PATCH", OpType.DEPROVISION: "DELETE"}
WHAT = {OpType.PROVISION: "create", OpType.DEPROVISION: "delete"}




@pytest.fixture
def basic(direct: Broker) -> ServicePlan:
    return plan(direct, "status-page", "basic")


def ready(p: ServicePlan, osb_broker: SampleBroker) -> ServiceInstance:
    instance = instance_provision(plan=p, name="db1", namespace="team-a")
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    osb_broker.clear_requests()
    return instance


def start(kind: str, p: ServicePlan, osb_broker: SampleBroker) -> tuple[ServiceInstance, Operation]:
    """Create the instance (ready, for update/deprovision) and start an operation of `kind`; not yet stepped."""
    if kind == OpType.PROVISION:
        instance = instance_provision(plan=p, name="db1", namespace="team-a")
    else:
        instance = ready(p, osb_broker)
        if kind == OpType.UPDATE:
            instance_update(instance=instance, parameters={"size": 2})
        else:
            instance_deprovision(instance=instance)
    return instance, Operation.objects.get(instance=instance, type=kind)


def received(osb_broker: SampleBroker, instance: ServiceInstance) -> list[tuple[str, str]]:
    prefix = f"/v2/service_instances/{instance.pk}"
    return [(r.method, r.path[len(prefix):]) for r in osb_broker.requests if r.path.startswith(prefix)]


def deletes(osb_broker: SampleBroker, instance: ServiceInstance) -> list[Any]:
    return osb_broker.requests_for("DELETE", f"/v2/service_instances/{instance.pk}")


def assert_failed(op: Operation, instance: ServiceInstance, kind: str) -> None:
    op.refresh_from_db()
    instance.refresh_from_db()
    assert op.state == OpState.FAILED, (op.state, op.next_step)
    assert op.error
    if kind == OpType.PROVISION:
        assert instance.state == InstanceState.FAILED
    elif kind == OpType.UPDATE:
        assert instance.state == InstanceState.READY  # the broker did not say it broke: still usable


def assert_no_mitigation(osb_broker: SampleBroker, instance: ServiceInstance, kind: str, *,
                         failed: bool = True) -> None:
    """No cleanup operation, and the broker receives nothing more, not now and not later."""
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    before = received(osb_broker, instance)
    run_operations()
    assert received(osb_broker, instance) == before
    assert len(deletes(osb_broker, instance)) == (1 if kind == OpType.DEPROVISION else 0)
    instance.refresh_from_db()
    if kind == OpType.DEPROVISION and failed:
        assert instance.state != InstanceState.DELETED  # the platform must remember it


def assert_mitigated(osb_broker: SampleBroker, instance: ServiceInstance, failed: Operation, kind: str,
                     p: ServicePlan) -> Operation:
    """A cleanup operation deletes the instance at the broker, retrying until the broker confirms."""
    failed.refresh_from_db()
    instance.refresh_from_db()
    assert failed.state == OpState.FAILED
    assert "see the cleanup operation" in failed.next_step
    assert instance.state == InstanceState.FAILED
    cleanup = Operation.objects.get(type=OpType.ORPHAN_MITIGATION)
    assert cleanup.parent_id == failed.pk and cleanup.instance_id == instance.pk
    assert cleanup.state == OpState.PENDING
    cleanup = assert_cleanup_retries_until_confirmed(
        osb_broker, cleanup, resource=instance, delete_path=INSTANCE_PATH, what=WHAT[kind],
        sent=lambda: deletes(osb_broker, instance), p=p,
    )
    # Nothing more happens afterwards.
    after = received(osb_broker, instance)
    run_operations()
    assert received(osb_broker, instance) == after
    instance.refresh_from_db()
    if kind == OpType.DEPROVISION:
        assert instance.state == InstanceState.DELETED  # the delete was completed by the cleanup
    else:
        assert instance.state == InstanceState.FAILED
        assert cleanup.next_step.startswith("Cleaned up at the broker")
    return cleanup


def fail_submit(kind: str, p: ServicePlan, osb_broker: SampleBroker, status: int, body: Any = None,
                headers: dict[str, str] | None = None, delay: float = 0) -> tuple[ServiceInstance, Operation]:
    instance, op = start(kind, p, osb_broker)
    osb_broker.set_response(METHOD[kind], INSTANCE_PATH, status, times=1, body=body, headers=headers, delay=delay)
    op = step(op)
    return instance, op


ALL = [OpType.PROVISION, OpType.UPDATE, OpType.DEPROVISION]


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_row_200_is_success_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, 200, body={})
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.state == (InstanceState.DELETED if kind == OpType.DEPROVISION else InstanceState.READY)
    assert_no_mitigation(osb_broker, instance, kind, failed=False)
    assert [m for m, _ in received(osb_broker, instance)] == [METHOD[kind]]


@pytest.mark.parametrize("body", ["this is not json", "[1, 2]", {"dashboard_url": 42, "operation": ["x"]}])
@pytest.mark.parametrize("kind", ALL)
def test_row_200_malformed_is_failure_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str,
                                                         body: Any) -> None:
    if kind == OpType.DEPROVISION and isinstance(body, dict):
        body = "garbage"  # a deprovision answer has no typed fields to get wrong
    instance, op = fail_submit(kind, basic, osb_broker, 200, body=body)
    assert_failed(op, instance, kind)
    assert "malformed" in op.error or "not JSON" in op.error or "not a JSON object" in op.error
    assert_no_mitigation(osb_broker, instance, kind)


@pytest.mark.parametrize("kind", [OpType.PROVISION, OpType.DEPROVISION])
def test_row_poll_state_failed_is_failure_with_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                          kind: str) -> None:
    instance, op = start(kind, basic, osb_broker)
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    op = step(op)  # 202
    assert op.phase == Phase.POLL
    op = step(op)  # last_operation: failed
    assert op.description == f"{kind.capitalize()} failed"
    if kind == OpType.DEPROVISION:
        assert op.instance_usable is True  # the sample broker says so; mitigation is still due (table)
    osb_broker.async_mode = "never"
    osb_broker.async_outcome = "succeeded"
    assert_mitigated(osb_broker, instance, op, kind, basic)


def test_poll_state_failed_for_an_update_has_no_mitigation(basic: ServicePlan, osb_broker: SampleBroker) -> None:
    instance, op = start(OpType.UPDATE, basic, osb_broker)
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    op = step(step(op))
    assert_failed(op, instance, OpType.UPDATE)
    assert_no_mitigation(osb_broker, instance, OpType.UPDATE)


def test_row_201_is_success_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker) -> None:
    instance, op = start(OpType.PROVISION, basic, osb_broker)
    op = step(op)  # the sample broker creates it synchronously: 201
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and instance.state == InstanceState.READY
    assert op.calls.get().status == 201
    assert_no_mitigation(osb_broker, instance, OpType.PROVISION)


@pytest.mark.parametrize("body", ["<html>oops</html>", {"dashboard_url": 42}, {"metadata": "labels"}])
def test_row_201_malformed_provision_is_failure_with_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                                body: Any) -> None:
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 201, body=body)
    assert "malformed" in op.error or "not JSON" in op.error
    assert_mitigated(osb_broker, instance, op, OpType.PROVISION, basic)


@pytest.mark.parametrize("kind", ALL)
def test_row_202_is_success_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, 202, body={"operation": "task-1"})
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    assert op.broker_operation == "task-1" and op.accepted_at is not None
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    run_operations()
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    assert len(deletes(osb_broker, instance)) == (1 if kind == OpType.DEPROVISION else 0)


@pytest.mark.parametrize("body", ["accepted!", {"operation": 42}, {"operation": "x", "dashboard_url": ["no"]}])
def test_row_202_malformed_provision_is_failure_with_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                                body: Any) -> None:
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 202, body=body)
    assert op.phase == Phase.SUBMIT  # never polled
    assert_mitigated(osb_broker, instance, op, OpType.PROVISION, basic)
    assert osb_broker.requests_for("GET", LAST_OPERATION) == []


@pytest.mark.parametrize(("kind", "status"), [(OpType.PROVISION, 204), (OpType.PROVISION, 206),
                                              (OpType.DEPROVISION, 204), (OpType.DEPROVISION, 206)])
def test_row_other_2xx_for_provision_or_deprovision_is_failure_with_mitigation(
    basic: ServicePlan, osb_broker: SampleBroker, kind: str, status: int
) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, status, body={} if status != 204 else None)
    assert f"Broker answered {status}" in op.error
    assert_mitigated(osb_broker, instance, op, kind, basic)


@pytest.mark.parametrize("status", [204, 206])
def test_row_other_2xx_for_update_is_failure_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                                status: int) -> None:
    instance, op = fail_submit(OpType.UPDATE, basic, osb_broker, status, body={} if status != 204 else None)
    assert_failed(op, instance, OpType.UPDATE)
    assert_no_mitigation(osb_broker, instance, OpType.UPDATE)


@pytest.mark.parametrize("kind", ALL)
def test_row_408_is_failure_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, 408, body={"description": "Request Timeout"})
    assert_failed(op, instance, kind)
    assert "408" in op.error
    assert_no_mitigation(osb_broker, instance, kind)


@pytest.mark.parametrize(("kind", "status", "body"), [
    (OpType.PROVISION, 400, {"error": "BadRequest", "description": "bad"}),
    (OpType.PROVISION, 401, {"description": "who are you"}),
    (OpType.PROVISION, 403, {"description": "no"}),
    (OpType.PROVISION, 404, {"description": "no such plan"}),
    (OpType.PROVISION, 409, {"error": "Conflict", "description": "exists"}),
    (OpType.PROVISION, 422, {"error": "InstanceLimit", "description": "quota"}),
    (OpType.PROVISION, 422, {"error": "AsyncRequired", "description": "async only"}),
    (OpType.PROVISION, 422, {"error": "MaintenanceInfoConflict", "description": "new version"}),
    (OpType.UPDATE, 400, {"description": "bad"}),
    (OpType.UPDATE, 404, {"description": "no such instance"}),
    (OpType.UPDATE, 422, {"error": "PlanChangeNotSupported", "description": "no", "update_repeatable": False}),
    (OpType.DEPROVISION, 400, {"description": "bad"}),
    (OpType.DEPROVISION, 404, {"description": "not found"}),
    (OpType.DEPROVISION, 422, {"error": "AsyncRequired", "description": "async only"}),
])
def test_row_other_4xx_is_rejected_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str,
                                                      status: int, body: Any) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, status, body=body)
    assert_failed(op, instance, kind)
    assert op.description == body["description"]
    assert_no_mitigation(osb_broker, instance, kind)


@pytest.mark.parametrize(("kind", "status"), [(OpType.PROVISION, 500), (OpType.PROVISION, 503),
                                              (OpType.DEPROVISION, 500), (OpType.DEPROVISION, 502)])
def test_row_5xx_for_provision_or_deprovision_is_failure_with_mitigation(
    basic: ServicePlan, osb_broker: SampleBroker, kind: str, status: int
) -> None:
    instance, op = fail_submit(kind, basic, osb_broker, status, body={"description": "kaputt"})
    assert op.description == "kaputt"
    assert_mitigated(osb_broker, instance, op, kind, basic)


@pytest.mark.parametrize("status", [500, 503])
def test_row_5xx_for_update_is_failure_without_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                          status: int) -> None:
    instance, op = fail_submit(OpType.UPDATE, basic, osb_broker, status, body={"description": "kaputt"})
    assert_failed(op, instance, OpType.UPDATE)
    assert_no_mitigation(osb_broker, instance, OpType.UPDATE)


def test_row_timeout_on_provision_is_failure_with_mitigation(basic: ServicePlan, osb_broker: SampleBroker,
                                                             settings: Any) -> None:
    settings.OSB_REQUEST_TIMEOUT = 0.3
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 201, body={}, delay=3)
    assert "did not answer within 0.3 s" in op.error
    assert op.calls.get().status is None
    assert_mitigated(osb_broker, instance, op, OpType.PROVISION, basic)


@pytest.mark.parametrize("kind", [OpType.UPDATE, OpType.DEPROVISION])
def test_row_timeout_on_update_or_deprovision_is_failure_without_mitigation(
    basic: ServicePlan, osb_broker: SampleBroker, settings: Any, kind: str
) -> None:
    settings.OSB_REQUEST_TIMEOUT = 0.3
    instance, op = fail_submit(kind, basic, osb_broker, 200, body={}, delay=3)
    assert "did not answer" in op.error
    assert_failed(op, instance, kind)
    assert_no_mitigation(osb_broker, instance, kind)


# --- around the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL)
def test_concurrency_error_never_triggers_mitigation(basic: ServicePlan, osb_broker: SampleBroker, kind: str) -> None:
    busy = {"error": "ConcurrencyError", "description": "Another operation for this instance is in progress."}
    instance, op = fail_submit(kind, basic, osb_broker, 422, body=busy)
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.SUBMIT
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    # Still busy when the portal gives up: failed, and still no cleanup.
    osb_broker.set_response(METHOD[kind], INSTANCE_PATH, 422, body=busy)
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    op = step(op)
    assert op.state == OpState.FAILED
    assert "stopped retrying" in op.error
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    assert len([m for m, _ in received(osb_broker, instance) if m == METHOD[kind]]) == 2
    assert len(deletes(osb_broker, instance)) == (2 if kind == OpType.DEPROVISION else 0)


def test_concurrency_error_while_polling_keeps_polling(basic: ServicePlan, osb_broker: SampleBroker) -> None:
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 202, body={"operation": "t"})
    osb_broker.set_response("GET", LAST_OPERATION, 422, times=1, body={"error": "ConcurrencyError"})
    op = step(op)
    assert op.state == OpState.IN_PROGRESS
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    op = step(op)
    assert op.state == OpState.SUCCEEDED
    assert deletes(osb_broker, instance) == []


def test_connection_broken_after_sending_a_provision_is_like_a_timeout(basic: ServicePlan,
                                                                       osb_broker: SampleBroker) -> None:
    # A chunked answer with a broken chunk header: unreadable, though the request did arrive.
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 201, body="zz\r\nxx\r\n\r\n",
                               headers={"Transfer-Encoding": "chunked"})
    assert op.state == OpState.FAILED
    assert "broke before an answer arrived" in op.error
    assert_mitigated(osb_broker, instance, op, OpType.PROVISION, basic)


def test_mitigation_keeps_trying_until_the_broker_confirms(basic: ServicePlan, osb_broker: SampleBroker,
                                                           admin_api: Any) -> None:
    instance, op = fail_submit(OpType.PROVISION, basic, osb_broker, 500, body={"description": "kaputt"})
    cleanup = Operation.objects.get(type=OpType.ORPHAN_MITIGATION)
    # Scripts are used newest first: 500, 400, ConcurrencyError, then an accepted async delete that fails,
    # then 410 Gone (the broker confirms it has nothing left).
    osb_broker.set_response("DELETE", INSTANCE_PATH, 410, body={"error": "Gone"})
    osb_broker.set_response("DELETE", INSTANCE_PATH, 202, times=1, body={"operation": "del-1"})
    osb_broker.set_response("DELETE", INSTANCE_PATH, 422, times=1, body={"error": "ConcurrencyError"})
    osb_broker.set_response("DELETE", INSTANCE_PATH, 400, times=1, body={"description": "not now"})
    osb_broker.set_response("DELETE", INSTANCE_PATH, 500, times=1, body={"description": "down"})
    osb_broker.set_response("GET", LAST_OPERATION, 200, times=1, body={"state": "failed", "description": "stuck"})
    for attempt in (1, 2, 3):
        cleanup = step(cleanup)
        assert cleanup.state == OpState.IN_PROGRESS and cleanup.attempts == attempt
        assert f"after a failed create, attempt {attempt};" in cleanup.next_step
        body = admin_api.get(f"/api/v1/instances/{instance.pk}/").json()
        assert body["state"] == "failed"
        assert body["last_operation"]["id"] == str(op.pk)
        assert body["cleanup"]["id"] == str(cleanup.pk) and body["cleanup"]["type"] == "orphan_mitigation"
    cleanup = step(cleanup)  # 202: the broker is deleting it
    assert cleanup.phase == Phase.POLL and cleanup.broker_operation == "del-1"
    cleanup = step(cleanup)  # ... and reports that it failed: send the delete again
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.phase == Phase.SUBMIT
    assert "could not delete" in cleanup.error
    assert "attempt 5" in cleanup.next_step
    cleanup = step(cleanup)  # 410: gone
    assert cleanup.state == OpState.SUCCEEDED
    assert [m for m, _ in received(osb_broker, instance)] == ["PUT", "DELETE", "DELETE", "DELETE", "DELETE",
                                                              "GET", "DELETE"]
    served = admin_api.get(f"/api/v1/instances/{instance.pk}/operations/").json()["results"]
    assert {o["type"] for o in served} == {"provision", "orphan_mitigation"}
    listed = admin_api.get("/api/v1/operations/", {"instance": str(instance.pk), "state": "succeeded"}).json()
    assert [o["id"] for o in listed["results"]] == [str(cleanup.pk)]
    assert len(listed["results"][0]["calls"]) == 6


def test_mitigation_keeps_trying_past_its_deadline(basic: ServicePlan, osb_broker: SampleBroker) -> None:
    instance, _ = fail_submit(OpType.PROVISION, basic, osb_broker, 500, body={})
    cleanup = Operation.objects.get(type=OpType.ORPHAN_MITIGATION)
    osb_broker.set_response("DELETE", INSTANCE_PATH, 500, body={"description": "down"})
    cleanup = step(cleanup)
    assert cleanup.state == OpState.IN_PROGRESS
    Operation.objects.filter(pk=cleanup.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    cleanup = step(cleanup)
    # The spec: keep trying until the broker confirms (a capped backoff; a platform admin may stop it)
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.attempts == 2
    assert "attempt 2; next attempt in" in cleanup.next_step
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    assert Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).count() == 1  # no cleanup of the cleanup


def test_a_failed_instance_under_cleanup_cannot_start_another_operation(basic: ServicePlan,
                                                                        osb_broker: SampleBroker) -> None:
    from catalog_portal.exceptions import Conflict

    instance, _ = fail_submit(OpType.PROVISION, basic, osb_broker, 500, body={})
    instance.refresh_from_db()
    with pytest.raises(Conflict):
        instance_deprovision(instance=instance)
    run_operations()  # the cleanup finishes
    instance.refresh_from_db()
    instance_deprovision(instance=instance)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED
