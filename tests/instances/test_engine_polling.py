"""Polling last_operation: schedule, Retry-After, odd answers, 410 Gone, and the maximum polling duration."""

from __future__ import annotations

import email.utils
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.services.instances import instance_deprovision, instance_provision, instance_update
from instances.services.operations import _claim, operation_step, operations_due
from instances.states import InstanceState, OpState, OpType, Phase
from tests.instances.helpers import plan, run_operations, step_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

INSTANCE_PATH = r"/v2/service_instances/[^/]+"
LAST_OPERATION = INSTANCE_PATH + "/last_operation"





def step(op: Operation) -> Operation:
    step_once(op)
    op.refresh_from_db()
    return op


def seconds_until(moment: Any) -> float:
    return (moment - timezone.now()).total_seconds()


def polls_of(osb_broker: SampleBroker, instance: ServiceInstance) -> list[Any]:
    return osb_broker.requests_for("GET", f"/v2/service_instances/{instance.pk}/last_operation")


def accepted_provision(p: ServicePlan, osb_broker: SampleBroker, operation: str | None = "op-1",
                       parameters: dict[str, Any] | None = None) -> tuple[ServiceInstance, Operation]:
    """A provision the broker accepted (202) and that is now being polled."""
    if operation is not None:
        osb_broker.set_response("PUT", INSTANCE_PATH, 202, times=1, body={"operation": operation})
    instance = instance_provision(plan=p, name="db1", namespace="team-a", parameters=parameters)
    op = step(Operation.objects.get(instance=instance))
    assert op.phase == Phase.POLL and op.state == OpState.IN_PROGRESS
    return instance, op


def in_progress(description: str = "Working on it", retry_after: str | None = None) -> dict[str, Any]:
    return {"status": 200, "body": {"state": "in progress", "description": description},
            "headers": {"Retry-After": retry_after} if retry_after is not None else None}


# --- what is sent ----------------------------------------------------------------------------------


def test_poll_sends_the_operation_token_verbatim(direct: Broker, osb_broker: SampleBroker) -> None:
    token = "task 10/ü&plan_id=evil?#%41"
    basic = plan(direct, "status-page", "basic")
    instance, op = accepted_provision(basic, osb_broker, operation=token)
    assert op.broker_operation == token
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    op = step(op)
    [poll] = polls_of(osb_broker, instance)
    assert poll.query == {"operation": token, "service_id": basic.offering.catalog_id, "plan_id": basic.catalog_id}
    assert "X-Broker-API-Originating-Identity" not in poll.headers
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and instance.state == InstanceState.READY


def test_poll_without_an_operation_token_sends_none(direct: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.set_response("PUT", INSTANCE_PATH, 202, times=1, body={})
    instance = instance_provision(plan=plan(direct, "status-page", "basic"), name="a", namespace="b")
    op = step(Operation.objects.get(instance=instance))
    assert op.phase == Phase.POLL and op.broker_operation is None
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    step(op)
    [poll] = polls_of(osb_broker, instance)
    assert "operation" not in poll.query


# --- schedule and Retry-After -----------------------------------------------------------------------


def test_schedule_without_retry_after_backs_off(direct: Broker, osb_broker: SampleBroker) -> None:
    instance, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    assert seconds_until(op.next_poll_at) == pytest.approx(2, abs=1)
    assert "checking again in 2 s" in op.next_step
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress("Creating (10%)"))
    expected = [3.0, 4.5, 6.75, 10.125]
    for number, delay in enumerate(expected, start=1):
        op = step(op)
        assert op.polls == number
        assert op.state == OpState.IN_PROGRESS
        assert seconds_until(op.next_poll_at) == pytest.approx(delay, abs=1)
    assert op.description == "Creating (10%)"
    assert op.attempts == 1  # polls are not attempts
    assert len(polls_of(osb_broker, instance)) == len(expected)


def test_schedule_slows_down_after_ten_minutes(direct: Broker, osb_broker: SampleBroker) -> None:
    _, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress())
    Operation.objects.filter(pk=op.pk).update(polls=20, accepted_at=timezone.now() - timedelta(minutes=9))
    op = step(op)
    assert seconds_until(op.next_poll_at) == pytest.approx(30, abs=1)
    Operation.objects.filter(pk=op.pk).update(accepted_at=timezone.now() - timedelta(minutes=11))
    op = step(op)
    assert seconds_until(op.next_poll_at) == pytest.approx(60, abs=1)


def test_retry_after_in_seconds_is_honoured_exactly(direct: Broker, osb_broker: SampleBroker) -> None:
    _, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress(retry_after="42"))
    op = step(op)
    assert seconds_until(op.next_poll_at) == pytest.approx(42, abs=1)
    assert "asked us to wait 42 s" in op.next_step
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress(retry_after="7"))
    op = step(op)
    assert seconds_until(op.next_poll_at) == pytest.approx(7, abs=1)


def test_retry_after_as_an_http_date_is_honoured(direct: Broker, osb_broker: SampleBroker) -> None:
    _, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    when = timezone.now().replace(microsecond=0) + timedelta(seconds=95)
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress(retry_after=email.utils.format_datetime(when,
                                                                                                        usegmt=True)))
    op = step(op)
    assert abs((op.next_poll_at - when).total_seconds()) <= 1.5


def test_retry_after_never_pushes_past_the_deadline(direct: Broker, osb_broker: SampleBroker) -> None:
    _, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() + timedelta(seconds=20))
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress(retry_after="600"))
    op = step(op)
    assert seconds_until(op.next_poll_at) == pytest.approx(20, abs=1.5)


def test_poll_honours_the_real_broker_retry_after(broker: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.async_seconds = 600
    ha = plan(broker, "postgresql", "ha-cluster")
    instance = instance_provision(plan=ha, name="db1", namespace="team-a", parameters={"database_name": "app"})
    op = step(Operation.objects.get(instance=instance))
    op = step(op)  # the sample broker sends Retry-After: 1 while in progress
    assert seconds_until(op.next_poll_at) == pytest.approx(1, abs=1)
    assert op.description == "Provision in progress"


# --- odd answers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [OpType.PROVISION, OpType.UPDATE])
def test_gone_while_creating_or_updating_keeps_polling(direct: Broker, osb_broker: SampleBroker, kind: str) -> None:
    basic = plan(direct, "status-page", "basic")
    if kind == OpType.PROVISION:
        instance, op = accepted_provision(basic, osb_broker)
    else:
        instance = instance_provision(plan=basic, name="db1", namespace="team-a")
        run_operations()
        instance.refresh_from_db()
        osb_broker.set_response("PATCH", INSTANCE_PATH, 202, times=1, body={"operation": "upd-1"})
        instance_update(instance=instance, parameters={"a": 1})
        op = step(Operation.objects.get(instance=instance, type=OpType.UPDATE))
    osb_broker.set_response("GET", LAST_OPERATION, 410, times=1, body={"error": "Gone", "description": "gone"})
    op = step(op)
    assert op.state == OpState.IN_PROGRESS
    assert "410 Gone" in op.next_step
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and instance.state == InstanceState.READY
    assert len(polls_of(osb_broker, instance)) == 2


def test_gone_while_polling_a_deprovision_is_success(direct: Broker, osb_broker: SampleBroker) -> None:
    instance = instance_provision(plan=plan(direct, "status-page", "basic"), name="db1", namespace="team-a")
    run_operations()
    osb_broker.set_response("DELETE", INSTANCE_PATH, 202, times=1, body={"operation": "del-1"})
    instance.refresh_from_db()
    instance_deprovision(instance=instance)
    op = step(Operation.objects.get(instance=instance, type=OpType.DEPROVISION))
    assert op.phase == Phase.POLL
    osb_broker.set_response("GET", LAST_OPERATION, 410, body={"error": "Gone", "description": "gone"})
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.state == InstanceState.DELETED
    assert polls_of(osb_broker, instance)[0].query["operation"] == "del-1"
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()


@pytest.mark.parametrize(("status", "body"), [
    (500, {"description": "internal"}),
    (503, "Service Unavailable"),
    (404, {"description": "not yet"}),
    (400, {"description": "huh"}),
    (200, "not json"),
    (200, {"state": "done"}),
    (200, {"state": "in progress", "description": 5}),
    (204, None),
])
def test_invalid_poll_answers_keep_polling(direct: Broker, osb_broker: SampleBroker, status: int, body: Any) -> None:
    instance, op = accepted_provision(plan(direct, "status-page", "basic"), osb_broker)
    osb_broker.set_response("GET", LAST_OPERATION, status, times=1, body=body)
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    assert instance.state == InstanceState.PROVISIONING
    assert "could not be used" in op.next_step
    assert op.polls == 1
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "succeeded"})
    op = step(op)
    assert op.state == OpState.SUCCEEDED
    assert osb_broker.requests_for("DELETE") == []


# --- maximum polling duration ----------------------------------------------------------------------


def test_plan_maximum_polling_duration_caps_the_deadline(broker: Broker, osb_broker: SampleBroker,
                                                         settings: Any) -> None:
    osb_broker.async_seconds = 600
    ha = plan(broker, "postgresql", "ha-cluster")  # maximum_polling_duration 1800
    assert ha.maximum_polling_duration == 1800
    instance = instance_provision(plan=ha, name="db1", namespace="team-a", parameters={"database_name": "app"})
    op = step(Operation.objects.get(instance=instance))
    assert (op.deadline - op.accepted_at).total_seconds() == pytest.approx(1800, abs=0.01)

    settings.OSB_DEFAULT_MAX_POLL_SECONDS = 600  # the platform's limit is shorter: it wins
    other = instance_provision(plan=ha, name="db2", namespace="team-a", parameters={"database_name": "app"})
    op = step(Operation.objects.get(instance=other))
    assert (op.deadline - op.accepted_at).total_seconds() == pytest.approx(600, abs=0.01)


def test_without_a_plan_limit_the_platform_limit_applies(broker: Broker, osb_broker: SampleBroker,
                                                         settings: Any) -> None:
    settings.OSB_DEFAULT_MAX_POLL_SECONDS = 7777
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 600
    basic = plan(broker, "status-page", "basic")
    assert basic.maximum_polling_duration is None
    instance = instance_provision(plan=basic, name="db1", namespace="team-a")
    op = step(Operation.objects.get(instance=instance))
    assert op.phase == Phase.POLL
    assert (op.deadline - op.accepted_at).total_seconds() == pytest.approx(7777, abs=0.01)


def test_deadline_expiry_fails_a_provision_and_cleans_up(broker: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.async_seconds = 600
    ha = plan(broker, "postgresql", "ha-cluster")
    instance = instance_provision(plan=ha, name="db1", namespace="team-a", parameters={"database_name": "app"})
    op = step(Operation.objects.get(instance=instance))
    op = step(op)
    assert op.state == OpState.IN_PROGRESS
    accepted = timezone.now() - timedelta(seconds=1801)  # 30 min and a second ago
    Operation.objects.filter(pk=op.pk).update(accepted_at=accepted, deadline=accepted + timedelta(seconds=1800))
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED
    assert "maximum polling duration (30 min)" in op.error
    assert instance.state == InstanceState.FAILED
    cleanup = Operation.objects.get(type=OpType.ORPHAN_MITIGATION)
    assert cleanup.parent_id == op.pk and cleanup.instance_id == instance.pk
    assert cleanup.state == OpState.PENDING

    cleanup = step(cleanup)  # the broker is still busy creating it: ConcurrencyError, try again later
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.phase == Phase.SUBMIT
    osb_broker.operations[op.broker_operation]["duration"] = 0
    osb_broker.async_seconds = 0
    run_operations()
    cleanup.refresh_from_db()
    assert cleanup.state == OpState.SUCCEEDED
    assert str(instance.pk) not in osb_broker.instances
    deletes = osb_broker.requests_for("DELETE", f"/v2/service_instances/{instance.pk}")
    assert len(deletes) == 2
    assert deletes[-1].query == {"service_id": ha.offering.catalog_id, "plan_id": ha.catalog_id,
                                 "accepts_incomplete": "true"}
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED  # still listed: the person decides to delete it


@pytest.mark.parametrize("kind", [OpType.UPDATE, OpType.DEPROVISION])
def test_deadline_expiry_fails_an_update_or_deprovision_without_cleanup(direct: Broker, osb_broker: SampleBroker,
                                                                        kind: str) -> None:
    instance = instance_provision(plan=plan(direct, "status-page", "basic"), name="db1", namespace="team-a")
    run_operations()
    instance.refresh_from_db()
    osb_broker.set_response("*", INSTANCE_PATH, 202, body={"operation": "slow"})
    osb_broker.set_response("GET", LAST_OPERATION, **in_progress())
    if kind == OpType.UPDATE:
        instance_update(instance=instance, parameters={"a": 1})
    else:
        instance_deprovision(instance=instance)
    op = step(Operation.objects.get(instance=instance, type=kind))
    op = step(op)
    assert op.state == OpState.IN_PROGRESS
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED
    assert "maximum polling duration" in op.error
    assert instance.state == InstanceState.READY  # nothing says it broke: still usable, still there
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()
    assert len(osb_broker.requests_for("DELETE")) == (1 if kind == OpType.DEPROVISION else 0)


# --- claims and leases -----------------------------------------------------------------------------


def test_a_claimed_operation_is_not_stepped_twice(direct: Broker, osb_broker: SampleBroker) -> None:
    instance = instance_provision(plan=plan(direct, "status-page", "basic"), name="db1", namespace="team-a")
    op = Operation.objects.get(instance=instance)
    claimed = _claim(op.pk)
    assert claimed is not None and claimed.claimed_until is not None
    assert operation_step(operation_id=op.pk) is None  # another worker holds it
    assert osb_broker.requests_for("PUT") == []
    # The holder dies; once the lease has expired the sweeper finds it and a step resends the request.
    Operation.objects.filter(pk=op.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert str(op.pk) in operations_due()
    assert operation_step(operation_id=op.pk) is None
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert len(osb_broker.requests_for("PUT")) == 1


def test_overdue_operation_is_swept(broker: Broker, settings: Any) -> None:
    settings.SWEEP_GRACE_SECONDS = 5
    instance = instance_provision(plan=plan(broker, "status-page", "basic"), name="db1", namespace="team-a")
    op = Operation.objects.get(instance=instance)
    assert str(op.pk) not in operations_due()  # just created: its message is on its way
    Operation.objects.filter(pk=op.pk).update(next_poll_at=timezone.now() - timedelta(seconds=6))
    assert str(op.pk) in operations_due()
    run_operations()
    assert str(op.pk) not in operations_due()
