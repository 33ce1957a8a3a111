"""Orphan mitigation for service bindings: one test per row of the OSB spec's table (the bindings column).

| Request                               | Broker answer              | Interpretation | Mitigation (bindings) |
| All                                   | 200                        | Success        | No                    |
| All                                   | 200 malformed              | Failure        | No                    |
| Poll for binding/unbinding            | 200 "state": "failed"      | Failure        | Yes                   |
| All                                   | 201                        | Success        | No                    |
| Binding                               | 201 malformed              | Failure        | Yes                   |
| All                                   | 202                        | Success        | No                    |
| Binding                               | 202 malformed              | Failure        | Yes                   |
| Binding/Unbinding                     | All other 2xx              | Failure        | Yes                   |
| All                                   | 408                        | Client timeout | No                    |
| All                                   | All other 4xx              | Rejected       | No                    |
| Binding/Unbinding                     | 5xx                        | Broker error   | Yes                   |
| Binding                               | Timeout                    | Failure        | Yes                   |
| All except provisioning and binding   | Timeout                    | Failure        | No                    |

Mitigation is a DELETE of the binding with service_id, plan_id and accepts_incomplete=true, retried until the
broker confirms, run as its own operation (type orphan_mitigation, binding set, parent = the failed operation).
A binding whose bind failed stays failed (cleaned up at the broker); one whose unbind failed is deleted once the
cleanup succeeds. The instance is never affected.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create, binding_delete
from instances.services.instances import instance_deprovision, instance_provision
from instances.states import BindingState, InstanceState, OpState, OpType, Phase
from tests.instances.helpers import (
    assert_cleanup_retries_until_confirmed,
    plan,
    run_operations,
    step,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

BINDING_PATH = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"
BINDING_LAST_OPERATION = BINDING_PATH + "/last_operation"
METHOD = {OpType.BIND: "PUT", OpType.UNBIND: "DELETE"}
WHAT = {OpType.BIND: "binding create", OpType.UNBIND: "binding delete"}
BOTH = [OpType.BIND, OpType.UNBIND]




@pytest.fixture
def cache(direct: Broker) -> ServicePlan:
    return plan(direct, "redis-cache", "cache-free")


@pytest.fixture
def instance(cache: ServicePlan, osb_broker: SampleBroker) -> ServiceInstance:
    created = instance_provision(plan=cache, name="db1", namespace="team-a")
    run_operations()
    created.refresh_from_db()
    assert created.state == InstanceState.READY
    osb_broker.clear_requests()
    return created


def ready_binding(instance: ServiceInstance, osb_broker: SampleBroker) -> ServiceBinding:
    binding = binding_create(instance=instance, name="app-cache")
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    osb_broker.clear_requests()
    return binding


def start(kind: str, instance: ServiceInstance, osb_broker: SampleBroker) -> tuple[ServiceBinding, Operation]:
    """Start an operation of `kind` (for unbind, on a ready binding); not yet stepped."""
    if kind == OpType.UNBIND:
        binding = binding_delete(binding=ready_binding(instance, osb_broker))
    else:
        binding = binding_create(instance=instance, name="app-cache")
    return binding, Operation.objects.get(binding=binding, type=kind)


def fail_submit(kind: str, instance: ServiceInstance, osb_broker: SampleBroker, status: int, body: Any = None,
                headers: dict[str, str] | None = None, delay: float = 0) -> tuple[ServiceBinding, Operation]:
    binding, op = start(kind, instance, osb_broker)
    osb_broker.set_response(METHOD[kind], BINDING_PATH, status, times=1, body=body, headers=headers, delay=delay)
    return binding, step(op)


def received(osb_broker: SampleBroker, binding: ServiceBinding) -> list[tuple[str, str]]:
    """(method, path below the binding) of every request the broker received for it."""
    prefix = f"/v2/service_instances/{binding.instance_id}/service_bindings/{binding.pk}"
    return [(r.method, r.path[len(prefix):]) for r in osb_broker.requests if r.path.startswith(prefix)]


def deletes(osb_broker: SampleBroker, binding: ServiceBinding) -> list[Any]:
    return osb_broker.requests_for("DELETE", f"/v2/service_instances/{binding.instance_id}/service_bindings/"
                                             f"{binding.pk}")


def cleanups() -> list[Operation]:
    return list(Operation.objects.filter(type=OpType.ORPHAN_MITIGATION))


def assert_instance_untouched(instance: ServiceInstance, osb_broker: SampleBroker) -> None:
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    instance_paths = {f"/v2/service_instances/{instance.pk}", f"/v2/service_instances/{instance.pk}/last_operation"}
    assert [r for r in osb_broker.requests if r.path in instance_paths] == []


def assert_failed(op: Operation, binding: ServiceBinding, kind: str) -> None:
    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.FAILED, (op.state, op.next_step)
    assert op.error
    assert "instance" not in op.next_step  # what to do next is about the binding
    # A failed bind leaves a failed binding; a rejected unbind leaves the binding as it was (still usable).
    assert binding.state == (BindingState.FAILED if kind == OpType.BIND else BindingState.READY)


def assert_no_mitigation(osb_broker: SampleBroker, binding: ServiceBinding, instance: ServiceInstance,
                         kind: str) -> None:
    """No cleanup operation, and the broker receives nothing more, not now and not later."""
    assert cleanups() == []
    before = received(osb_broker, binding)
    run_operations()
    assert cleanups() == []
    assert received(osb_broker, binding) == before
    assert len(deletes(osb_broker, binding)) == (1 if kind == OpType.UNBIND else 0)
    assert_instance_untouched(instance, osb_broker)


def assert_mitigated(osb_broker: SampleBroker, binding: ServiceBinding, instance: ServiceInstance,
                     failed: Operation, kind: str, p: ServicePlan) -> Operation:
    """A cleanup operation deletes the binding at the broker, retrying until the broker confirms."""
    failed.refresh_from_db()
    binding.refresh_from_db()
    assert failed.state == OpState.FAILED
    assert "see the cleanup operation" in failed.next_step
    assert binding.state == BindingState.FAILED
    [cleanup] = cleanups()
    assert cleanup.parent_id == failed.pk
    assert cleanup.binding_id == binding.pk and cleanup.instance_id == instance.pk
    assert cleanup.state == OpState.PENDING and cleanup.next_step
    cleanup = assert_cleanup_retries_until_confirmed(
        osb_broker, cleanup, resource=binding, delete_path=BINDING_PATH, what=WHAT[kind],
        sent=lambda: deletes(osb_broker, binding), p=p,
    )
    # Nothing more happens afterwards.
    after = received(osb_broker, binding)
    run_operations()
    assert received(osb_broker, binding) == after
    assert len(cleanups()) == 1
    binding.refresh_from_db()
    if kind == OpType.UNBIND:
        assert binding.state == BindingState.DELETED  # the delete was completed by the cleanup
    else:
        assert binding.state == BindingState.FAILED
        assert cleanup.next_step.startswith("Cleaned up at the broker")
    assert_instance_untouched(instance, osb_broker)
    return cleanup


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BOTH)
def test_row_200_is_success_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                               kind: str) -> None:
    body = {"credentials": {"password": "pw"}} if kind == OpType.BIND else {}
    binding, op = fail_submit(kind, instance, osb_broker, 200, body=body)
    binding.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert binding.state == (BindingState.READY if kind == OpType.BIND else BindingState.DELETED)
    assert_no_mitigation(osb_broker, binding, instance, kind)
    assert [m for m, _ in received(osb_broker, binding)] == [METHOD[kind]]


@pytest.mark.parametrize("body", ["this is not json", "[1, 2]", {"credentials": "user:pw"}])
@pytest.mark.parametrize("kind", BOTH)
def test_row_200_malformed_is_failure_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                         kind: str, body: Any) -> None:
    if kind == OpType.UNBIND and isinstance(body, dict):
        body = {"operation": 42}  # an unbind answer has only this typed field to get wrong
    binding, op = fail_submit(kind, instance, osb_broker, 200, body=body)
    assert_failed(op, binding, kind)
    assert "malformed" in op.error or "not JSON" in op.error or "not a JSON object" in op.error
    assert "user:pw" not in op.error
    assert_no_mitigation(osb_broker, binding, instance, kind)


@pytest.mark.parametrize("kind", BOTH)
def test_row_poll_state_failed_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                          cache: ServicePlan, kind: str) -> None:
    binding, op = start(kind, instance, osb_broker)
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    op = step(op)  # 202
    assert op.phase == Phase.POLL
    op = step(op)  # last_operation: failed
    assert op.description == f"{'Bind' if kind == OpType.BIND else 'Unbind'} failed"
    [poll] = osb_broker.requests_for("GET", BINDING_LAST_OPERATION)
    assert poll.query["operation"] == op.broker_operation
    osb_broker.async_mode = "never"
    osb_broker.async_outcome = "succeeded"
    assert_mitigated(osb_broker, binding, instance, op, kind, cache)
    assert osb_broker.requests_for("GET", BINDING_PATH) == []  # a failed bind is never fetched


def test_row_201_is_success_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker) -> None:
    binding, op = start(OpType.BIND, instance, osb_broker)
    op = step(op)  # the sample broker binds synchronously: 201
    binding.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and binding.state == BindingState.READY
    assert op.calls.get().status == 201
    assert_no_mitigation(osb_broker, binding, instance, OpType.BIND)


@pytest.mark.parametrize("body", ["<html>oops</html>", {"credentials": "user:pw"}, {"metadata": "soon"},
                                  {"volume_mounts": {"driver": "x"}}, {"endpoints": "cache:6379"}])
def test_row_201_malformed_bind_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                           cache: ServicePlan, body: Any) -> None:
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 201, body=body)
    assert "malformed" in op.error or "not JSON" in op.error
    assert binding.secrets == {}
    assert_mitigated(osb_broker, binding, instance, op, OpType.BIND, cache)


@pytest.mark.parametrize("kind", BOTH)
def test_row_202_is_success_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                               kind: str) -> None:
    binding, op = fail_submit(kind, instance, osb_broker, 202, body={"operation": "task-1"})
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    assert op.broker_operation == "task-1" and op.accepted_at is not None
    assert cleanups() == []
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 200, body={"state": "succeeded"})
    osb_broker.set_response("GET", BINDING_PATH, 200, body={"credentials": {"password": "pw"}})
    run_operations()
    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert binding.state == (BindingState.READY if kind == OpType.BIND else BindingState.DELETED)
    assert cleanups() == []
    assert len(deletes(osb_broker, binding)) == (1 if kind == OpType.UNBIND else 0)


@pytest.mark.parametrize("body", ["accepted!", {"operation": 42}, {"operation": "x", "metadata": "labels"}])
def test_row_202_malformed_bind_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                           cache: ServicePlan, body: Any) -> None:
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 202, body=body)
    assert op.phase == Phase.SUBMIT  # never polled
    assert_mitigated(osb_broker, binding, instance, op, OpType.BIND, cache)
    assert osb_broker.requests_for("GET", BINDING_LAST_OPERATION) == []


@pytest.mark.parametrize(("kind", "status"), [(OpType.BIND, 204), (OpType.BIND, 206),
                                              (OpType.UNBIND, 201), (OpType.UNBIND, 204), (OpType.UNBIND, 206)])
def test_row_other_2xx_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                  cache: ServicePlan, kind: str, status: int) -> None:
    binding, op = fail_submit(kind, instance, osb_broker, status, body={} if status != 204 else None)
    assert f"Broker answered {status}" in op.error
    assert_mitigated(osb_broker, binding, instance, op, kind, cache)


@pytest.mark.parametrize("kind", BOTH)
def test_row_408_is_failure_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                               kind: str) -> None:
    binding, op = fail_submit(kind, instance, osb_broker, 408, body={"description": "Request Timeout"})
    assert_failed(op, binding, kind)
    assert "408" in op.error
    assert_no_mitigation(osb_broker, binding, instance, kind)


@pytest.mark.parametrize(("kind", "status", "body"), [
    (OpType.BIND, 400, {"error": "BadRequest", "description": "bad"}),
    (OpType.BIND, 401, {"description": "who are you"}),
    (OpType.BIND, 403, {"description": "no"}),
    (OpType.BIND, 404, {"description": "no such instance"}),
    (OpType.BIND, 409, {"error": "Conflict", "description": "exists with other parameters"}),
    (OpType.BIND, 410, {"error": "Gone", "description": "gone"}),
    (OpType.BIND, 422, {"error": "RequiresApp", "description": "needs an app"}),
    (OpType.BIND, 422, {"error": "AsyncRequired", "description": "async only"}),
    (OpType.BIND, 422, {"error": "BindingLimit", "description": "too many"}),
    (OpType.UNBIND, 400, {"description": "bad"}),
    (OpType.UNBIND, 404, {"description": "not found"}),
    (OpType.UNBIND, 409, {"description": "conflict"}),
    (OpType.UNBIND, 422, {"error": "AsyncRequired", "description": "async only"}),
])
def test_row_other_4xx_is_rejected_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                      kind: str, status: int, body: Any) -> None:
    binding, op = fail_submit(kind, instance, osb_broker, status, body=body)
    assert_failed(op, binding, kind)
    if status != 410:
        assert op.description == body["description"]
    assert_no_mitigation(osb_broker, binding, instance, kind)


@pytest.mark.parametrize(("kind", "status"), [(OpType.BIND, 500), (OpType.BIND, 503),
                                              (OpType.UNBIND, 500), (OpType.UNBIND, 502)])
def test_row_5xx_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                            cache: ServicePlan, kind: str, status: int) -> None:
    binding, op = fail_submit(kind, instance, osb_broker, status, body={"description": "kaputt"})
    assert op.description == "kaputt"
    assert_mitigated(osb_broker, binding, instance, op, kind, cache)


def test_row_timeout_on_bind_is_failure_with_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                        cache: ServicePlan, settings: Any) -> None:
    settings.OSB_REQUEST_TIMEOUT = 0.3
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 201, body={"credentials": {}}, delay=3)
    assert "did not answer within 0.3 s" in op.error
    assert op.calls.get().status is None
    assert_mitigated(osb_broker, binding, instance, op, OpType.BIND, cache)


def test_row_timeout_on_unbind_is_failure_without_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                             settings: Any) -> None:
    settings.OSB_REQUEST_TIMEOUT = 0.3
    binding, op = fail_submit(OpType.UNBIND, instance, osb_broker, 200, body={}, delay=3)
    assert "did not answer" in op.error
    assert op.calls.get().status is None
    assert_failed(op, binding, OpType.UNBIND)
    assert_no_mitigation(osb_broker, binding, instance, OpType.UNBIND)


# --- around the table ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BOTH)
def test_concurrency_error_never_triggers_mitigation(instance: ServiceInstance, osb_broker: SampleBroker,
                                                     kind: str) -> None:
    busy = {"error": "ConcurrencyError", "description": "Another operation for this binding is in progress."}
    binding, op = fail_submit(kind, instance, osb_broker, 422, body=busy)
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.SUBMIT
    assert cleanups() == []
    # Still busy when the portal gives up: failed, and still no cleanup.
    osb_broker.set_response(METHOD[kind], BINDING_PATH, 422, body=busy)
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    op = step(op)
    assert op.state == OpState.FAILED and "stopped retrying" in op.error
    assert cleanups() == []
    assert len([m for m, _ in received(osb_broker, binding) if m == METHOD[kind]]) == 2
    assert len(deletes(osb_broker, binding)) == (2 if kind == OpType.UNBIND else 0)


def test_concurrency_error_while_polling_a_bind_keeps_polling(instance: ServiceInstance,
                                                              osb_broker: SampleBroker) -> None:
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 202, body={"operation": "t"})
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 422, times=1, body={"error": "ConcurrencyError"})
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 200, body={"state": "succeeded"})
    osb_broker.set_response("GET", BINDING_PATH, 200, body={"credentials": {"password": "pw"}})
    run_operations()
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert cleanups() == [] and deletes(osb_broker, binding) == []


def test_gone_while_polling_a_bind_is_not_success(instance: ServiceInstance, osb_broker: SampleBroker) -> None:
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 202, body={"operation": "t"})
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 410, times=1, body={"error": "Gone"})
    op = step(op)
    binding.refresh_from_db()
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL  # invalid for a create: keep polling
    assert binding.state == BindingState.BINDING
    assert cleanups() == []


def test_mitigation_keeps_trying_until_the_broker_confirms(instance: ServiceInstance, osb_broker: SampleBroker,
                                                           admin_api: Any) -> None:
    binding, op = fail_submit(OpType.BIND, instance, osb_broker, 500, body={"description": "kaputt"})
    [cleanup] = cleanups()
    # Scripts are used newest first: 500, 400, ConcurrencyError, then an accepted async delete that fails,
    # then 410 Gone (the broker confirms it has nothing left).
    osb_broker.set_response("DELETE", BINDING_PATH, 410, body={"error": "Gone"})
    osb_broker.set_response("DELETE", BINDING_PATH, 202, times=1, body={"operation": "del-1"})
    osb_broker.set_response("DELETE", BINDING_PATH, 422, times=1, body={"error": "ConcurrencyError"})
    osb_broker.set_response("DELETE", BINDING_PATH, 400, times=1, body={"description": "not now"})
    osb_broker.set_response("DELETE", BINDING_PATH, 500, times=1, body={"description": "down"})
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 200, times=1, body={"state": "failed",
                                                                              "description": "stuck"})
    for attempt in (1, 2, 3):
        cleanup = step(cleanup)
        assert cleanup.state == OpState.IN_PROGRESS and cleanup.attempts == attempt
        assert f"after a failed binding create, attempt {attempt};" in cleanup.next_step
        body = admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()
        assert body["state"] == "failed"
        assert body["last_operation"]["id"] == str(op.pk)
        assert body["cleanup"]["id"] == str(cleanup.pk) and body["cleanup"]["type"] == "orphan_mitigation"
        assert body["cleanup"]["next_step"] == cleanup.next_step
    cleanup = step(cleanup)  # 202: the broker is deleting it
    assert cleanup.phase == Phase.POLL and cleanup.broker_operation == "del-1"
    cleanup = step(cleanup)  # ... and reports that it failed: send the delete again
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.phase == Phase.SUBMIT
    assert "could not delete" in cleanup.error
    assert "attempt 5" in cleanup.next_step
    cleanup = step(cleanup)  # 410: gone
    assert cleanup.state == OpState.SUCCEEDED
    assert [m for m, _ in received(osb_broker, binding)] == ["PUT", "DELETE", "DELETE", "DELETE", "DELETE",
                                                             "GET", "DELETE"]
    [poll] = osb_broker.requests_for("GET", BINDING_LAST_OPERATION)
    assert poll.query["operation"] == "del-1"
    listed = admin_api.get("/api/v1/operations/", {"binding": str(binding.pk)}).json()["results"]
    assert {o["type"] for o in listed} == {"bind", "orphan_mitigation"}
    [served] = [o for o in listed if o["type"] == "orphan_mitigation"]
    assert served["binding"] == str(binding.pk) and served["instance"] == str(instance.pk)
    assert served["state"] == "succeeded" and len(served["calls"]) == 6
    finished = admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()["cleanup"]
    assert finished["id"] == str(cleanup.pk) and finished["state"] == "succeeded"
    assert finished["description"] == "The broker confirmed the binding is gone."
    assert finished["next_step"].startswith("Cleaned up at the broker. Delete this binding")
    assert_instance_untouched(instance, osb_broker)


def test_mitigation_keeps_trying_past_its_deadline(instance: ServiceInstance, osb_broker: SampleBroker) -> None:
    binding, _ = fail_submit(OpType.BIND, instance, osb_broker, 500, body={})
    [cleanup] = cleanups()
    osb_broker.set_response("DELETE", BINDING_PATH, 500, body={"description": "down"})
    cleanup = step(cleanup)
    assert cleanup.state == OpState.IN_PROGRESS
    Operation.objects.filter(pk=cleanup.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    cleanup = step(cleanup)
    # The spec: keep trying until the broker confirms (a capped backoff; a platform admin may stop it)
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.attempts == 2
    assert "attempt 2; next attempt in" in cleanup.next_step
    binding.refresh_from_db()
    assert binding.state == BindingState.FAILED
    assert len(cleanups()) == 1  # no cleanup of the cleanup


def test_a_binding_under_cleanup_cannot_be_deleted_until_it_is_done(instance: ServiceInstance,
                                                                    osb_broker: SampleBroker) -> None:
    from catalog_portal.exceptions import Conflict

    binding, _ = fail_submit(OpType.BIND, instance, osb_broker, 500, body={})
    binding.refresh_from_db()
    with pytest.raises(Conflict):
        binding_delete(binding=binding)
    run_operations()  # the cleanup finishes (the sample broker answers 410: it never had the binding)
    binding.refresh_from_db()
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED
    assert_instance_untouched(instance, osb_broker)


def test_failed_unbind_in_a_cascade_is_cleaned_up_and_the_instance_deleted_after(
    instance: ServiceInstance, osb_broker: SampleBroker, cache: ServicePlan
) -> None:
    binding = ready_binding(instance, osb_broker)
    osb_broker.set_response("DELETE", BINDING_PATH, 500, times=1, body={"description": "kaputt"})
    instance_deprovision(instance=instance, cascade=True)
    run_operations()
    binding.refresh_from_db()
    instance.refresh_from_db()
    assert binding.state == BindingState.DELETED
    assert instance.state == InstanceState.DELETED
    [cleanup] = cleanups()
    assert cleanup.binding_id == binding.pk and cleanup.state == OpState.SUCCEEDED
    prefix = f"/v2/service_instances/{instance.pk}"
    assert [(r.method, r.path[len(prefix):]) for r in osb_broker.requests if r.method == "DELETE"] == [
        ("DELETE", f"/service_bindings/{binding.pk}"), ("DELETE", f"/service_bindings/{binding.pk}"),
        ("DELETE", ""),
    ]
