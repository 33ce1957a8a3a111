"""Fleet-scale engine behaviour against the test broker over HTTP: heartbeat-renewed leases and takeover, the
per-broker call limit (measured at the broker), the broker-wide pause on 429/503 + Retry-After and its floor, and
one slow broker never taking all of a worker's threads."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from brokers.models import Broker, CatalogSync
from brokers.services import catalog_sync
from devtools.sample_broker import SampleBroker, build_catalog
from devtools.sample_broker.server import PASS_THROUGH
from instances.models import Operation
from instances.services.instances import instance_provision
from instances.services.operations import _apply, _claim, _run, operation_step, operations_due
from instances.states import OpState, Phase
from tests.conftest import BROKER_PASSWORD, BROKER_USER, wait_for
from tests.instances.helpers import mirrored_broker, plan, run_operations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("broker_knobs")]

INSTANCE_PATH = r"/v2/service_instances/[^/]+"
LAST_OPERATION = INSTANCE_PATH + "/last_operation"


def in_thread(target: Any, *args: Any) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def provisions(broker: Broker, count: int, prefix: str = "db") -> list[Operation]:
    basic = plan(broker, "status-page", "basic")
    instances = [instance_provision(plan=basic, name=f"{prefix}{n}", namespace="team-a") for n in range(count)]
    return [Operation.objects.get(instance=instance) for instance in instances]


# --- leases: heartbeat and takeover ----------------------------------------------------------------


def test_the_heartbeat_keeps_a_long_calls_lease_alive(direct: Broker, osb_broker: SampleBroker,
                                                      settings: Any) -> None:
    settings.OPERATION_LEASE_SECONDS = 2
    settings.OPERATION_HEARTBEAT_SECONDS = 0.5
    osb_broker.set_response("PUT", INSTANCE_PATH, PASS_THROUGH, times=1, delay=5.0)  # longer than the lease
    (op,) = provisions(direct, 1)

    worker = in_thread(lambda: operation_step(operation_id=op.pk))
    wait_for(lambda: osb_broker.requests_for("PUT"), what="the provision to reach the broker")
    first_lease = Operation.objects.get(pk=op.pk).claimed_until
    assert first_lease is not None
    # Past the first lease's end the call is still running, and the lease has moved on with it.
    wait_for(lambda: timezone.now() > first_lease + timedelta(seconds=0.5), what="the first lease to pass")
    current = Operation.objects.get(pk=op.pk)
    assert current.state == OpState.IN_PROGRESS and current.claimed_until > timezone.now()
    assert str(op.pk) not in operations_due()  # the sweeper does not take it away
    assert operation_step(operation_id=op.pk) is None  # nor does another worker
    worker.join(timeout=30)

    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and op.claimed_until is None
    assert len(osb_broker.requests_for("PUT")) == 1  # sent once


def test_a_dead_workers_operation_is_taken_over_once_its_lease_expires(direct: Broker, osb_broker: SampleBroker,
                                                                         settings: Any) -> None:
    settings.OPERATION_LEASE_SECONDS = 2
    (op,) = provisions(direct, 1)
    dead = _claim(op.pk)  # a worker claims it and dies: no heartbeat renews its lease
    assert dead is not None
    decision, calls = _run(dead)  # it even got as far as the call
    assert len(osb_broker.requests_for("PUT")) == 1

    assert operation_step(operation_id=op.pk) is None  # while the lease runs, nobody else may take it
    wait_for(lambda: str(op.pk) in operations_due(), what="the sweeper to see the expired lease")
    assert operation_step(operation_id=op.pk) is None  # the new worker's step
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    puts = osb_broker.requests_for("PUT")
    assert len(puts) == 2 and puts[0].body == puts[1].body  # the same request again (allowed: idempotent PUT)
    # The dead worker's late write is refused: its lease is gone.
    assert _apply(dead, decision, calls) is None
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED


# --- the per-broker limit ------------------------------------------------------------------------------


def test_never_more_calls_in_flight_than_the_brokers_limit(direct: Broker, osb_broker: SampleBroker,
                                                           settings: Any) -> None:
    settings.OSB_CALLS_PER_BROKER_PER_PROCESS = 10
    Broker.objects.filter(pk=direct.pk).update(max_in_flight=2)
    osb_broker.set_response("PUT", INSTANCE_PATH, PASS_THROUGH, delay=1.0)
    ops = provisions(direct, 6)
    osb_broker.max_in_flight = 0
    barrier = threading.Barrier(len(ops))

    def step(op: Operation) -> None:
        barrier.wait()
        operation_step(operation_id=op.pk)

    threads = [in_thread(step, op) for op in ops]
    for thread in threads:
        thread.join(timeout=60)
    deferred = Operation.objects.filter(pk__in=[op.pk for op in ops], phase=Phase.SUBMIT, attempts=0)
    assert deferred.count() >= len(ops) - 2  # the rest waited for a slot, without an attempt
    run_operations()

    assert osb_broker.max_in_flight == 2  # measured at the broker
    assert all(op.state == OpState.SUCCEEDED for op in Operation.objects.filter(pk__in=[o.pk for o in ops]))
    assert len(osb_broker.requests_for("PUT")) == len(ops)  # each sent once


def test_one_hanging_broker_leaves_the_workers_other_threads_free(direct: Broker, osb_broker: SampleBroker,
                                                                  settings: Any) -> None:
    settings.OSB_CALLS_PER_BROKER_PER_PROCESS = 2
    with SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD) as slow_server:
        slow_server.catalog = _own_ids(build_catalog(slow_server.url))  # catalog ids are unique across brokers
        slow = mirrored_broker(slow_server.url, name="slow-broker")
        slow_server.set_response("PUT", INSTANCE_PATH, PASS_THROUGH, delay=60.0)  # hangs until stopped
        hanging = provisions(slow, 5, prefix="slow")
        barrier = threading.Barrier(len(hanging))

        def step(op: Operation) -> None:
            barrier.wait()
            operation_step(operation_id=op.pk)

        threads = [in_thread(step, op) for op in hanging]
        wait_for(lambda: sum(not t.is_alive() for t in threads) == 3, what="the steps beyond the share to return")
        wait_for(lambda: slow_server.in_flight == 2, what="the share's calls to reach the slow broker")
        assert slow_server.max_in_flight == 2  # only this process's share of threads waits on the slow broker

        (fast,) = provisions(direct, 1, prefix="fast")
        assert operation_step(operation_id=fast.pk) is None
        fast.refresh_from_db()
        assert fast.state == OpState.SUCCEEDED
    for thread in threads:
        thread.join(timeout=30)


def _own_ids(catalog: dict[str, Any]) -> dict[str, Any]:
    for service in catalog["services"]:
        service["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"slow/{service['id']}"))
        for service_plan in service["plans"]:
            service_plan["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"slow/{service_plan['id']}"))
    return catalog


# --- broker-wide pause and the Retry-After floor -----------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_a_429_or_503_with_retry_after_pauses_every_call_to_the_broker(direct: Broker, osb_broker: SampleBroker,
                                                                       admin_api: Any, status: int) -> None:
    first, second = provisions(direct, 2)
    osb_broker.set_response("PUT", INSTANCE_PATH, status, times=1, headers={"Retry-After": "30"},
                            body={"description": "slow down"})
    operation_step(operation_id=first.pk)
    direct.refresh_from_db()
    assert direct.paused_until is not None
    assert (direct.paused_until - timezone.now()).total_seconds() == pytest.approx(30, abs=3)

    Operation.objects.filter(pk=second.pk).update(next_poll_at=timezone.now())
    operation_step(operation_id=second.pk)  # another operation: no call while the broker is paused
    assert len(osb_broker.requests_for("PUT")) == 1
    second.refresh_from_db()
    assert second.attempts == 0 and second.state == OpState.IN_PROGRESS
    assert (second.next_poll_at - direct.paused_until).total_seconds() >= 0
    assert "pause" in second.next_step

    body = admin_api.get(f"/api/v1/brokers/{direct.pk}/").json()
    assert body["paused_until"] is not None
    Broker.objects.filter(pk=direct.pk).update(paused_until=timezone.now() - timedelta(seconds=1))
    run_operations()
    # A 429 is retried; a 503 to a provision fails it (spec: then cleaned up by a DELETE, also after the pause).
    assert len(osb_broker.requests_for("PUT")) == (3 if status == 429 else 2)
    assert Operation.objects.get(pk=second.pk).state == OpState.SUCCEEDED


@pytest.mark.parametrize("status", [429, 503])
def test_the_catalog_get_pauses_the_broker_and_waits_out_a_pause(direct: Broker, osb_broker: SampleBroker,
                                                                 status: int) -> None:
    # A 429/503 + Retry-After to the catalog GET pauses the broker's operations too.
    osb_broker.set_response("GET", "/v2/catalog", status, times=1, headers={"Retry-After": "30"},
                            body={"description": "slow down"})
    sync = catalog_sync(broker_id=direct.pk, force=True)
    assert sync is not None and sync.outcome == CatalogSync.Outcome.FAILED
    direct.refresh_from_db()
    assert (direct.paused_until - timezone.now()).total_seconds() == pytest.approx(30, abs=3)
    (op,) = provisions(direct, 1)
    operation_step(operation_id=op.pk)
    assert osb_broker.requests_for("PUT") == []

    # And a sync due during a pause (someone asked for one) makes no call: it is moved to the pause's end.
    Broker.objects.filter(pk=direct.pk).update(next_sync_at=timezone.now())
    syncs = CatalogSync.objects.count()
    assert catalog_sync(broker_id=direct.pk) is None
    assert len(osb_broker.requests_for("GET", "/v2/catalog")) == 1
    direct.refresh_from_db()
    assert direct.next_sync_at == direct.paused_until
    assert CatalogSync.objects.count() == syncs

    Broker.objects.filter(pk=direct.pk).update(paused_until=timezone.now() - timedelta(seconds=1),
                                               next_sync_at=timezone.now())
    sync = catalog_sync(broker_id=direct.pk)
    assert sync is not None and sync.outcome != CatalogSync.Outcome.FAILED
    assert len(osb_broker.requests_for("GET", "/v2/catalog")) == 2


def test_the_catalog_get_takes_a_call_slot(direct: Broker, osb_broker: SampleBroker) -> None:
    Broker.objects.filter(pk=direct.pk).update(max_in_flight=1)
    osb_broker.set_response("PUT", INSTANCE_PATH, PASS_THROUGH, times=1, delay=3.0)
    (op,) = provisions(direct, 1)
    worker = in_thread(lambda: operation_step(operation_id=op.pk))
    wait_for(lambda: osb_broker.requests_for("PUT"), what="the provision to hold the broker's only slot")

    status = Broker.objects.get(pk=direct.pk).status
    Broker.objects.filter(pk=direct.pk).update(next_sync_at=timezone.now())
    syncs = CatalogSync.objects.count()
    assert catalog_sync(broker_id=direct.pk) is None  # no slot: no call, no sync record, tried again shortly
    assert osb_broker.requests_for("GET", "/v2/catalog") == []
    assert osb_broker.max_in_flight == 1
    deferred = Broker.objects.get(pk=direct.pk)
    assert deferred.status == status and deferred.sync_lease_until is None
    assert 0 < (deferred.next_sync_at - timezone.now()).total_seconds() <= 2
    assert CatalogSync.objects.count() == syncs

    worker.join(timeout=30)
    Broker.objects.filter(pk=direct.pk).update(next_sync_at=timezone.now())
    assert catalog_sync(broker_id=direct.pk) is not None
    assert len(osb_broker.requests_for("GET", "/v2/catalog")) == 1


def test_retry_after_zero_is_floored_to_a_second(direct: Broker, osb_broker: SampleBroker) -> None:
    (op,) = provisions(direct, 1)
    osb_broker.set_response("PUT", INSTANCE_PATH, 202, times=1, body={"operation": "op-1"})
    operation_step(operation_id=op.pk)
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "in progress"}, headers={"Retry-After": "0"})
    Operation.objects.filter(pk=op.pk).update(next_poll_at=timezone.now())
    before = timezone.now()
    operation_step(operation_id=op.pk)
    op.refresh_from_db()
    assert (op.next_poll_at - before).total_seconds() >= 1.0

    osb_broker.set_response("PUT", INSTANCE_PATH, 429, times=1, headers={"Retry-After": "0"})
    (other,) = provisions(direct, 1, prefix="other")
    before = timezone.now()
    operation_step(operation_id=other.pk)
    direct.refresh_from_db()
    assert (direct.paused_until - before).total_seconds() >= 1.0
    other.refresh_from_db()
    assert (other.next_poll_at - before).total_seconds() >= 1.0


# --- polling that learns ---------------------------------------------------------------------------------


def test_polling_learns_from_the_plans_earlier_operations(direct: Broker, osb_broker: SampleBroker) -> None:
    from instances.services import operations

    earlier = provisions(direct, 6, prefix="old")
    for n, old in enumerate(earlier):  # each took about 5 minutes from the broker's 202 to the end
        accepted = timezone.now() - timedelta(hours=n + 1)
        Operation.objects.filter(pk=old.pk).update(state=OpState.SUCCEEDED, accepted_at=accepted,
                                                   finished_at=accepted + timedelta(seconds=290 + 4 * n),
                                                   next_poll_at=None)
    operations._history_cache.clear()
    (op,) = provisions(direct, 1)
    osb_broker.set_response("PUT", INSTANCE_PATH, 202, times=1, body={"operation": "op-1"})
    osb_broker.set_response("GET", LAST_OPERATION, 200, body={"state": "in progress"})
    operation_step(operation_id=op.pk)
    op.refresh_from_db()
    assert (op.next_poll_at - timezone.now()).total_seconds() < 3  # a quick failure is still seen at once
    Operation.objects.filter(pk=op.pk).update(next_poll_at=timezone.now(),  # that first poll is due
                                              accepted_at=timezone.now() - timedelta(seconds=2))
    operation_step(operation_id=op.pk)
    op.refresh_from_db()
    # then sparse until the expected finish (without history: 3 s)
    assert (op.next_poll_at - timezone.now()).total_seconds() > 60
    operations._history_cache.clear()
