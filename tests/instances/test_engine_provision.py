"""The operation engine against a real HTTP broker: provision, update, deprovision and broker errors.

Operations are stepped in-process (`step_once`, `run_operations`); the broker is the sample broker over HTTP.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from brokers import services as broker_services
from brokers.models import Broker, ServicePlan
from catalog_portal.exceptions import ApplicationError, Conflict
from devtools.sample_broker import SampleBroker
from devtools.sample_broker.catalog import build_catalog
from instances.models import Operation, OperationCall, ServiceInstance
from instances.services.instances import (
    instance_deprovision,
    instance_provision,
    instance_update,
    start_operation,
)
from instances.states import InstanceState, OpState, OpType, Phase
from teams.models import TeamNamespace
from tests.conftest import BROKER_PASSWORD, free_port
from tests.instances.helpers import plan, run_operations, step_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

INSTANCE_PATH = r"/v2/service_instances/[^/]+"


# --- fixtures and helpers ----------------------------------------------------------------------------





def instance_requests(osb_broker: SampleBroker, instance: ServiceInstance, method: str | None = None,
                      suffix: str | None = "") -> list[Any]:
    """Requests the broker received for this instance (`suffix=None`: also its sub-resources)."""
    return osb_broker.requests_for(method, f"/v2/service_instances/{instance.pk}{suffix if suffix is not None else '(/.*)?'}")


def methods_seen(osb_broker: SampleBroker, instance: ServiceInstance) -> list[tuple[str, str]]:
    prefix = f"/v2/service_instances/{instance.pk}"
    return [(r.method, r.path[len(prefix):]) for r in osb_broker.requests if r.path.startswith(prefix)]


def the_op(instance: ServiceInstance, type: str = OpType.PROVISION) -> Operation:
    return Operation.objects.filter(instance=instance, type=type).latest("started_at")


def step(op: Operation) -> Operation:
    step_once(op)
    op.refresh_from_db()
    return op


def provision(p: ServicePlan, name: str = "db1", namespace: str = "team-a", parameters: dict[str, Any] | None = None,
              user: Any = None) -> tuple[ServiceInstance, Operation]:
    instance = instance_provision(plan=p, name=name, namespace=namespace, parameters=parameters, requested_by=user)
    return instance, the_op(instance)


def ready_instance(p: ServicePlan, parameters: dict[str, Any] | None = None, name: str = "db1",
                   namespace: str = "team-a") -> ServiceInstance:
    instance, _ = provision(p, name=name, namespace=namespace, parameters=parameters)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    return instance


def decode_identity(header: str) -> dict[str, Any]:
    platform, _, payload = header.partition(" ")
    assert platform == "kubernetes"
    return json.loads(base64.b64decode(payload))


def seconds_until(moment: Any) -> float:
    return (moment - timezone.now()).total_seconds()


PG_PARAMS = {"database_name": "app", "storage_gb": 5}


# --- provision -----------------------------------------------------------------------------------


def test_sync_provision_sends_the_exact_body_and_becomes_ready(broker: Broker, osb_broker: SampleBroker,
                                                               alice: Any, team_a: Any) -> None:
    TeamNamespace.objects.create(team=team_a, namespace="shop")  # alice is a developer in team A
    small = plan(broker, "postgresql", "standard-small")
    instance, op = provision(small, name="orders", namespace="shop", parameters=PG_PARAMS, user=alice)
    assert instance.state == InstanceState.PROVISIONING
    assert op.state == OpState.PENDING and op.next_poll_at is not None
    assert instance_requests(osb_broker, instance) == []  # nothing is sent before a worker steps it

    run_operations()

    instance.refresh_from_db()
    op.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert op.state == OpState.SUCCEEDED and op.finished_at is not None and op.next_poll_at is None
    [put] = instance_requests(osb_broker, instance, "PUT")
    assert put.query == {"accepts_incomplete": "true"}
    body = put.json
    org, space = body.pop("organization_guid"), body.pop("space_guid")
    assert body == {
        "service_id": small.offering.catalog_id,
        "plan_id": small.catalog_id,
        "context": {"platform": "kubernetes", "namespace": "shop", "clusterid": "catalog-portal",
                    "instance_name": "orders"},
        "parameters": PG_PARAMS,
        "maintenance_info": {"version": "1.2.0"},
    }
    uuid.UUID(org), uuid.UUID(space)
    assert org != space
    assert put.headers["X-Broker-API-Version"] == "2.17"
    identity = decode_identity(put.headers["X-Broker-API-Originating-Identity"])
    assert identity["username"] == "alice"
    assert identity["uid"] == str(alice.pk)
    assert identity["groups"] == ["team-a", "system:authenticated"]  # her teams, as Kubernetes groups
    # The broker has it exactly as asked.
    assert osb_broker.instances[str(instance.pk)]["parameters"] == PG_PARAMS


def test_legacy_guids_are_stable_per_namespace(broker: Broker, osb_broker: SampleBroker) -> None:
    basic = plan(broker, "status-page", "basic")
    first, _ = provision(basic, name="a", namespace="team-a")
    second, _ = provision(basic, name="b", namespace="team-a")
    other, _ = provision(basic, name="c", namespace="team-b")
    run_operations()
    bodies = {i.name: instance_requests(osb_broker, i, "PUT")[0].json for i in (first, second, other)}
    assert bodies["a"]["space_guid"] == bodies["b"]["space_guid"]
    assert bodies["a"]["space_guid"] != bodies["c"]["space_guid"]
    assert bodies["a"]["organization_guid"] == bodies["b"]["organization_guid"] == bodies["c"]["organization_guid"]
    # A plan without maintenance_info sends none; an empty parameter set is still an object.
    assert "maintenance_info" not in bodies["a"]
    assert bodies["a"]["parameters"] == {}


def test_provision_without_a_person_sends_no_identity(broker: Broker, osb_broker: SampleBroker) -> None:
    instance, _ = provision(plan(broker, "status-page", "basic"))
    run_operations()
    [put] = instance_requests(osb_broker, instance, "PUT")
    assert "X-Broker-API-Originating-Identity" not in put.headers


def test_async_provision_polls_then_fetches_and_is_ready(broker: Broker, osb_broker: SampleBroker,
                                                         alice: Any) -> None:
    osb_broker.async_seconds = 600
    ha = plan(broker, "postgresql", "ha-cluster")
    instance, op = provision(ha, parameters={"database_name": "app"}, user=alice)

    op = step(op)  # PUT -> 202
    instance.refresh_from_db()
    token = osb_broker.instances[str(instance.pk)]["operation"]
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    assert op.broker_operation == token
    assert op.accepted_at is not None and op.attempts == 1 and op.polls == 0
    assert instance.state == InstanceState.PROVISIONING
    assert instance.dashboard_url == f"{osb_broker.url}/dashboard/{instance.pk}"  # from the 202 answer

    op = step(op)  # last_operation: in progress
    [poll] = instance_requests(osb_broker, instance, "GET", "/last_operation")
    assert poll.query == {"operation": token, "service_id": ha.offering.catalog_id, "plan_id": ha.catalog_id}
    assert "X-Broker-API-Originating-Identity" not in poll.headers
    assert op.state == OpState.IN_PROGRESS and op.polls == 1
    assert op.description == "Provision in progress"

    osb_broker.operations[token]["duration"] = 0  # the broker finishes
    op = step(op)  # last_operation: succeeded -> fetch next
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.FETCH
    op = step(op)  # GET the instance
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.state == InstanceState.READY
    assert instance.metadata == {"labels": {"service": "postgresql", "plan": "ha-cluster"},
                                 "attributes": {"sample-broker/instance-id": str(instance.pk)}}
    assert methods_seen(osb_broker, instance) == [("PUT", ""), ("GET", "/last_operation"),
                                                  ("GET", "/last_operation"), ("GET", "")]
    for request in instance_requests(osb_broker, instance, "GET"):
        assert "X-Broker-API-Originating-Identity" not in request.headers


def test_retrievable_instance_is_fetched_and_the_fetched_details_are_kept(direct: Broker,
                                                                          osb_broker: SampleBroker) -> None:
    hobby = plan(direct, "postgresql", "hobby")
    instance, op = provision(hobby, parameters={"database_name": "app"})
    op = step(op)
    assert op.phase == Phase.FETCH
    instance.refresh_from_db()
    assert instance.state == InstanceState.PROVISIONING  # not ready before the fetch
    osb_broker.set_response("GET", INSTANCE_PATH, 200, body={"dashboard_url": "https://dash.example/fetched",
                                                             "metadata": {"labels": {"tier": "gold"}}})
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.state == InstanceState.READY
    assert instance.dashboard_url == "https://dash.example/fetched"
    assert instance.metadata == {"labels": {"tier": "gold"}}
    [fetch] = instance_requests(osb_broker, instance, "GET")
    assert fetch.query == {"service_id": hobby.offering.catalog_id, "plan_id": hobby.catalog_id}


def test_failed_fetch_still_leaves_the_instance_ready(direct: Broker, osb_broker: SampleBroker) -> None:
    instance, op = provision(plan(direct, "postgresql", "hobby"), parameters={"database_name": "app"})
    osb_broker.set_response("GET", INSTANCE_PATH, 500, body={"description": "fetch broke"})
    run_operations()
    instance.refresh_from_db()
    op.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert op.state == OpState.SUCCEEDED
    assert "could not be fetched" in op.next_step and op.description == ""
    assert instance.dashboard_url == f"{osb_broker.url}/dashboard/{instance.pk}"  # from the PUT answer


def test_not_retrievable_instance_is_not_fetched(broker: Broker, osb_broker: SampleBroker) -> None:
    instance, _ = provision(plan(broker, "status-page", "basic"))
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert instance.dashboard_url == f"{osb_broker.url}/dashboard/{instance.pk}"
    assert methods_seen(osb_broker, instance) == [("PUT", "")]


# --- checks before anything is sent -----------------------------------------------------------------


def test_invalid_parameters_are_refused_before_anything_is_sent(broker: Broker, osb_broker: SampleBroker) -> None:
    ha = plan(broker, "postgresql", "ha-cluster")
    with pytest.raises(ApplicationError) as caught:
        instance_provision(plan=ha, name="db1", namespace="team-a",
                           parameters={"storage_gb": "lots", "version": "9", "colour": "red"})
    messages = caught.value.fields["parameters"]
    assert "'database_name' is a required property" in messages
    assert "storage_gb: 'lots' is not of type 'integer'" in messages
    assert any(m.startswith("version: '9' is not one of") for m in messages)
    assert any("Additional properties are not allowed ('colour' was unexpected)" in m for m in messages)
    assert caught.value.status_code == 400
    assert not ServiceInstance.objects.exists() and not Operation.objects.exists()
    assert osb_broker.requests_for("PUT") == []


def test_parameters_must_be_an_object(broker: Broker) -> None:
    with pytest.raises(ApplicationError) as caught:
        instance_provision(plan=plan(broker, "status-page", "basic"), name="x", namespace="y",
                           parameters=["not", "an", "object"])  # type: ignore[arg-type]
    assert caught.value.fields == {"parameters": ["Parameters must be a JSON object."]}


def test_update_parameters_are_checked_against_the_update_schema(broker: Broker, osb_broker: SampleBroker) -> None:
    instance = ready_instance(plan(broker, "postgresql", "hobby"), {"database_name": "app"})
    osb_broker.clear_requests()
    with pytest.raises(ApplicationError) as caught:
        instance_update(instance=instance, parameters={"database_name": "renamed"})  # create-only field
    assert any("'database_name' was unexpected" in m for m in caught.value.fields["parameters"])
    assert osb_broker.requests_for("PATCH") == []
    assert not Operation.objects.filter(type=OpType.UPDATE).exists()


@pytest.mark.parametrize("bad", ["", "Upper", "-lead", "trail-", "under_score", "dot.ted", "a" * 64, "sp ace", 7])
@pytest.mark.parametrize("field", ["name", "namespace"])
def test_names_must_be_dns_labels(broker: Broker, osb_broker: SampleBroker, field: str, bad: Any) -> None:
    values = {"name": "ok-name", "namespace": "ok-ns", field: bad}
    with pytest.raises(ApplicationError) as caught:
        instance_provision(plan=plan(broker, "status-page", "basic"), parameters={}, **values)
    assert list(caught.value.fields) == [field]
    assert not ServiceInstance.objects.exists()
    assert osb_broker.requests_for("PUT") == []


@pytest.mark.parametrize("good", ["a", "0", "a-1", "x" * 63, "1abc-def2"])
def test_valid_dns_labels_are_accepted(broker: Broker, good: str) -> None:
    instance = instance_provision(plan=plan(broker, "status-page", "basic"), name=good, namespace=good)
    assert instance.name == good


def test_duplicate_name_in_a_namespace_is_refused(broker: Broker, osb_broker: SampleBroker) -> None:
    basic = plan(broker, "status-page", "basic")
    first, _ = provision(basic, name="web", namespace="team-a")
    with pytest.raises(ApplicationError) as caught:
        instance_provision(plan=basic, name="web", namespace="team-a")
    assert "name" in caught.value.fields
    assert ServiceInstance.objects.count() == 1
    provision(basic, name="web", namespace="team-b")  # another namespace is fine
    # Once deprovisioned, the name is free again.
    run_operations()
    first.refresh_from_db()
    instance_deprovision(instance=first)
    run_operations()
    again, _ = provision(basic, name="web", namespace="team-a")
    assert again.pk != first.pk


def test_inactive_plan_or_offering_is_refused(broker: Broker, osb_broker: SampleBroker) -> None:
    basic = plan(broker, "status-page", "basic")
    ServicePlan.objects.filter(pk=basic.pk).update(active=False)
    with pytest.raises(ApplicationError) as caught:
        instance_provision(plan=plan(broker, "status-page", "basic"), name="a", namespace="b")
    assert caught.value.fields == {"plan": ["This plan is no longer offered."]}
    ServicePlan.objects.filter(pk=basic.pk).update(active=True)
    basic.offering.__class__.objects.filter(pk=basic.offering_id).update(active=False)
    with pytest.raises(ApplicationError):
        instance_provision(plan=plan(broker, "status-page", "basic"), name="a", namespace="b")
    assert not ServiceInstance.objects.exists()
    assert osb_broker.requests_for("PUT") == []


# --- update --------------------------------------------------------------------------------------


def test_update_sends_only_what_changed_with_previous_values(broker: Broker, osb_broker: SampleBroker,
                                                             alice: Any) -> None:
    small = plan(broker, "postgresql", "standard-small")
    instance = ready_instance(small, PG_PARAMS)
    osb_broker.clear_requests()

    instance = instance_update(instance=instance, parameters={"storage_gb": 20}, requested_by=alice)
    assert instance.state == InstanceState.UPDATING
    run_operations()

    [patch] = instance_requests(osb_broker, instance, "PATCH")
    assert patch.query == {"accepts_incomplete": "true"}
    assert patch.json == {
        "service_id": small.offering.catalog_id,
        "context": instance.context,
        "parameters": {"storage_gb": 20},
        "previous_values": {"service_id": small.offering.catalog_id, "plan_id": small.catalog_id,
                            "maintenance_info": {"version": "1.2.0"}},
    }
    assert decode_identity(patch.headers["X-Broker-API-Originating-Identity"])["username"] == "alice"
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert instance.plan_id == small.pk
    assert instance.parameters["storage_gb"] == 20
    assert the_op(instance, OpType.UPDATE).state == OpState.SUCCEEDED
    assert osb_broker.instances[str(instance.pk)]["parameters"] == {"database_name": "app", "storage_gb": 20}


def test_nothing_to_change_is_refused(broker: Broker) -> None:
    instance = ready_instance(plan(broker, "status-page", "basic"))
    with pytest.raises(ApplicationError):
        instance_update(instance=instance)
    with pytest.raises(ApplicationError):
        instance_update(instance=instance, plan=instance.plan)


def test_plan_change_refused_when_the_plan_is_not_updateable(broker: Broker, osb_broker: SampleBroker) -> None:
    shared = plan(broker, "rabbitmq", "shared-vhost")  # offering: plan_updateable false
    single = plan(broker, "rabbitmq", "dedicated-single")  # plan overrides: plan_updateable true
    instance = ready_instance(shared)
    osb_broker.clear_requests()
    with pytest.raises(ApplicationError) as caught:
        instance_update(instance=instance, plan=single)
    assert "plan" in caught.value.fields
    assert osb_broker.requests_for("PATCH") == []
    with pytest.raises(ApplicationError):  # another service's plan
        instance_update(instance=instance, plan=plan(broker, "status-page", "basic"))

    movable = ready_instance(single, name="mq2")
    osb_broker.clear_requests()
    instance_update(instance=movable, plan=shared)
    run_operations()
    [patch] = instance_requests(osb_broker, movable, "PATCH")
    assert patch.json["plan_id"] == shared.catalog_id
    assert patch.json["previous_values"]["plan_id"] == single.catalog_id
    movable.refresh_from_db()
    assert movable.plan_id == shared.pk and movable.state == InstanceState.READY


def test_plan_change_polls_with_the_old_plan_and_switches_only_after_success(broker: Broker,
                                                                             osb_broker: SampleBroker) -> None:
    osb_broker.async_seconds = 600
    small = plan(broker, "postgresql", "standard-small")
    ha = plan(broker, "postgresql", "ha-cluster")
    instance = ready_instance(small, PG_PARAMS)
    osb_broker.clear_requests()

    instance_update(instance=instance, plan=ha)
    op = the_op(instance, OpType.UPDATE)
    op = step(op)  # PATCH -> 202 (the new plan is asynchronous)
    [patch] = instance_requests(osb_broker, instance, "PATCH")
    assert patch.json == {
        "service_id": small.offering.catalog_id, "plan_id": ha.catalog_id, "context": instance.context,
        "maintenance_info": {"version": "1.2.0"},
        "previous_values": {"service_id": small.offering.catalog_id, "plan_id": small.catalog_id,
                            "maintenance_info": {"version": "1.2.0"}},
    }
    assert op.phase == Phase.POLL
    op = step(op)  # in progress
    instance.refresh_from_db()
    assert instance.plan_id == small.pk and instance.state == InstanceState.UPDATING
    [poll] = instance_requests(osb_broker, instance, "GET", "/last_operation")
    assert poll.query["plan_id"] == small.catalog_id  # the plan before the update (spec)
    assert poll.query["service_id"] == small.offering.catalog_id
    assert poll.query["operation"] == op.broker_operation

    osb_broker.operations[op.broker_operation]["duration"] = 0
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.plan_id == ha.pk and instance.state == InstanceState.READY
    assert instance.maintenance_info == {"version": "1.2.0"}
    assert osb_broker.instances[str(instance.pk)]["plan_id"] == ha.catalog_id


@pytest.mark.parametrize(("body", "state"), [
    ({"error": "QuotaExceeded", "description": "Over quota for this plan."}, InstanceState.READY),
    ({"error": "QuotaExceeded", "description": "Over quota for this plan.", "instance_usable": True},
     InstanceState.READY),
    ({"error": "Broken", "description": "Over quota for this plan.", "instance_usable": False,
      "update_repeatable": False}, InstanceState.FAILED),
])
def test_sync_update_failure_keeps_the_instance_usable_unless_the_broker_says_otherwise(
    direct: Broker, osb_broker: SampleBroker, body: dict[str, Any], state: str
) -> None:
    basic = plan(direct, "status-page", "basic")
    instance = ready_instance(basic)
    osb_broker.set_response("PATCH", INSTANCE_PATH, 422, body=body)
    instance_update(instance=instance, parameters={"size": 2})
    run_operations()
    op = the_op(instance, OpType.UPDATE)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED
    assert op.description == "Over quota for this plan."
    assert "Over quota for this plan." in op.error
    assert instance.state == state
    assert op.instance_usable is body.get("instance_usable")
    assert op.update_repeatable is body.get("update_repeatable")
    assert instance.parameters == {}  # nothing applied
    assert instance_requests(osb_broker, instance, "DELETE") == []


@pytest.mark.parametrize(("answer", "state"), [
    ({"state": "failed", "description": "Resize failed"}, InstanceState.READY),
    ({"state": "failed", "description": "Resize failed", "instance_usable": False, "update_repeatable": False},
     InstanceState.FAILED),
])
def test_async_update_failure_follows_instance_usable(direct: Broker, osb_broker: SampleBroker,
                                                      answer: dict[str, Any], state: str) -> None:
    instance = ready_instance(plan(direct, "status-page", "basic"))
    osb_broker.async_mode = "always"
    osb_broker.set_response("GET", INSTANCE_PATH + "/last_operation", 200, body=answer)
    instance_update(instance=instance, parameters={"size": 2})
    run_operations()
    op = the_op(instance, OpType.UPDATE)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED
    assert op.description == "Resize failed"
    assert instance.state == state
    assert op.update_repeatable is answer.get("update_repeatable")
    assert instance_requests(osb_broker, instance, "DELETE") == []  # never orphan mitigation for an update


def _catalog_with_postgres_version(osb_broker: SampleBroker, version: str) -> dict[str, Any]:
    catalog = build_catalog(osb_broker.url)
    for service in catalog["services"]:
        for p in service["plans"]:
            if p.get("maintenance_info") and service["name"] == "postgresql":
                p["maintenance_info"]["version"] = version
    return catalog


def test_upgrade_to_a_newer_maintenance_version(broker: Broker, osb_broker: SampleBroker) -> None:
    small = plan(broker, "postgresql", "standard-small")
    instance = ready_instance(small, PG_PARAMS)
    with pytest.raises(ApplicationError):  # nothing newer yet
        instance_update(instance=instance, upgrade=True)

    osb_broker.catalog = _catalog_with_postgres_version(osb_broker, "1.3.0")
    broker_services.catalog_sync(broker_id=broker.pk, force=True)
    osb_broker.clear_requests()
    instance.refresh_from_db()
    instance_update(instance=instance, upgrade=True)
    run_operations()

    [patch] = instance_requests(osb_broker, instance, "PATCH")
    assert patch.json["maintenance_info"] == {"version": "1.3.0"}
    assert patch.json["previous_values"]["maintenance_info"] == {"version": "1.2.0"}
    assert "plan_id" not in patch.json and "parameters" not in patch.json
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert instance.maintenance_info == {"version": "1.3.0"}


def test_update_requires_a_ready_instance(broker: Broker) -> None:
    instance, _ = provision(plan(broker, "status-page", "basic"))
    with pytest.raises(Conflict):
        instance_update(instance=instance, parameters={"a": 1})


# --- deprovision ---------------------------------------------------------------------------------


def test_sync_deprovision_deletes_the_instance(broker: Broker, osb_broker: SampleBroker, admin_api: Any,
                                               admin_user: Any) -> None:
    basic = plan(broker, "status-page", "basic")
    instance = ready_instance(basic)
    osb_broker.clear_requests()
    instance = instance_deprovision(instance=instance, requested_by=admin_user)
    assert instance.state == InstanceState.DEPROVISIONING
    assert admin_api.get(f"/api/v1/instances/{instance.pk}/").status_code == 200
    run_operations()

    [delete] = instance_requests(osb_broker, instance, "DELETE")
    assert delete.query == {"service_id": basic.offering.catalog_id, "plan_id": basic.catalog_id,
                            "accepts_incomplete": "true"}
    assert decode_identity(delete.headers["X-Broker-API-Originating-Identity"])["username"] == "admin"
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED and instance.deleted_at is not None
    assert str(instance.pk) not in osb_broker.instances
    assert admin_api.get(f"/api/v1/instances/{instance.pk}/").status_code == 404
    assert not ServiceInstance.objects.visible().filter(pk=instance.pk).exists()
    with pytest.raises(ApplicationError):
        instance_deprovision(instance=instance)


def test_async_deprovision_polls_until_gone(broker: Broker, osb_broker: SampleBroker, admin_api: Any) -> None:
    ha = plan(broker, "postgresql", "ha-cluster")
    instance = ready_instance(ha, {"database_name": "app"})
    osb_broker.clear_requests()
    osb_broker.async_seconds = 600
    instance_deprovision(instance=instance)
    op = step(the_op(instance, OpType.DEPROVISION))
    assert op.phase == Phase.POLL and op.broker_operation
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.IN_PROGRESS and instance.state == InstanceState.DEPROVISIONING
    osb_broker.operations[op.broker_operation]["duration"] = 0
    op = step(op)  # the sample broker answers 410 Gone once the instance is deleted... or succeeded
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert instance.state == InstanceState.DELETED
    polls = instance_requests(osb_broker, instance, "GET", "/last_operation")
    assert polls and all(p.query["operation"] == op.broker_operation for p in polls)
    assert admin_api.get(f"/api/v1/instances/{instance.pk}/").status_code == 404


def test_gone_on_deprovision_is_success(direct: Broker, osb_broker: SampleBroker) -> None:
    instance = ready_instance(plan(direct, "status-page", "basic"))
    osb_broker.set_response("DELETE", INSTANCE_PATH, 410, body={"error": "Gone", "description": "No such instance"})
    instance_deprovision(instance=instance)
    run_operations()
    instance.refresh_from_db()
    op = the_op(instance, OpType.DEPROVISION)
    assert op.state == OpState.SUCCEEDED
    assert instance.state == InstanceState.DELETED
    assert len(instance_requests(osb_broker, instance, "DELETE")) == 1


def test_a_failed_instance_can_be_deprovisioned(direct: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.set_response("PUT", INSTANCE_PATH, 400, body={"description": "no"})
    instance, _op = provision(plan(direct, "status-page", "basic"))
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    instance_deprovision(instance=instance)  # the broker answers 410: it never had it
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED


# --- broker errors on submit -----------------------------------------------------------------------


def test_conflict_on_provision_fails_without_cleanup(direct: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.set_response("PUT", INSTANCE_PATH, 409, body={"error": "Conflict", "description": "Exists already"})
    instance, op = provision(plan(direct, "status-page", "basic"))
    run_operations()
    op.refresh_from_db()
    instance.refresh_from_db()
    assert op.state == OpState.FAILED and instance.state == InstanceState.FAILED
    assert op.description == "Exists already"
    assert methods_seen(osb_broker, instance) == [("PUT", "")]
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()


@pytest.mark.parametrize("retry_after", [None, "17"])
def test_concurrency_error_is_retried_later(direct: Broker, osb_broker: SampleBroker, retry_after: str | None) -> None:
    headers = {"Retry-After": retry_after} if retry_after else None
    osb_broker.set_response("PUT", INSTANCE_PATH, 422, times=2, headers=headers,
                            body={"error": "ConcurrencyError", "description": "Another operation is running."})
    instance, op = provision(plan(direct, "status-page", "basic"))
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.SUBMIT
    assert op.attempts == 1
    expected = 17 if retry_after else 2  # retry_delay(attempts=1)
    assert seconds_until(op.next_poll_at) == pytest.approx(expected, abs=1.5)
    assert "busy" in op.next_step
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.attempts == 2
    if not retry_after:
        assert seconds_until(op.next_poll_at) == pytest.approx(4, abs=1.5)  # backing off
    op = step(op)  # the broker is free now
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and instance.state == InstanceState.READY
    puts = instance_requests(osb_broker, instance, "PUT")
    assert len(puts) == 3 and puts[0].json == puts[2].json  # the very same request, resent
    assert instance_requests(osb_broker, instance, "DELETE") == []


def test_async_required_fails_with_a_clear_message(direct: Broker, osb_broker: SampleBroker) -> None:
    osb_broker.set_response("PUT", INSTANCE_PATH, 422, body={
        "error": "AsyncRequired", "description": "This Service Plan requires client support for asynchronous "
                                                 "service operations."})
    instance, op = provision(plan(direct, "status-page", "basic"))
    run_operations()
    op.refresh_from_db()
    assert op.state == OpState.FAILED
    assert "asynchronous" in op.error and "AsyncRequired" in op.error
    assert methods_seen(osb_broker, instance) == [("PUT", "")]


def test_maintenance_info_conflict_fails_and_requests_a_catalog_sync(broker: Broker,
                                                                     osb_broker: SampleBroker) -> None:
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=None)
    small = plan(broker, "postgresql", "standard-small")
    osb_broker.catalog = _catalog_with_postgres_version(osb_broker, "2.0.0")  # the portal still knows 1.2.0
    before = timezone.now()
    instance, op = provision(small, parameters=PG_PARAMS)
    run_operations()
    op.refresh_from_db()
    instance.refresh_from_db()
    assert op.state == OpState.FAILED and instance.state == InstanceState.FAILED
    assert "maintenance" in op.error
    assert "The maintenance information for the requested Service Plan has changed." in op.error
    broker.refresh_from_db()
    assert broker.next_sync_at is not None and before <= broker.next_sync_at <= timezone.now()
    assert methods_seen(osb_broker, instance) == [("PUT", "")]  # a 4xx: no cleanup


def test_bad_request_fails_with_the_brokers_description_verbatim(direct: Broker, osb_broker: SampleBroker) -> None:
    text = "Invalid parameters: region 'mars-1' is not offered — pick eu-west."
    osb_broker.set_response("PUT", INSTANCE_PATH, 400, body={"error": "ValidationFailed", "description": text})
    instance, op = provision(plan(direct, "status-page", "basic"))
    run_operations()
    op.refresh_from_db()
    instance.refresh_from_db()
    assert op.state == OpState.FAILED and instance.state == InstanceState.FAILED
    assert op.description == text
    assert text in op.error
    assert op.next_step and op.finished_at is not None
    assert methods_seen(osb_broker, instance) == [("PUT", "")]


def test_unreachable_broker_is_retried(broker: Broker, osb_broker: SampleBroker) -> None:
    instance, op = provision(plan(broker, "status-page", "basic"))
    real_url = broker.url
    Broker.objects.filter(pk=broker.pk).update(url=f"http://127.0.0.1:{free_port()}")
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.attempts == 1
    assert "Could not reach the broker" in op.next_step and "trying again" in op.next_step
    assert seconds_until(op.next_poll_at) == pytest.approx(2, abs=1.5)
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.attempts == 2
    assert "attempt 3" in op.next_step
    [call, _] = list(op.calls.all())
    assert call.status is None and call.error and call.method == "PUT"
    instance.refresh_from_db()
    assert instance.state == InstanceState.PROVISIONING

    Broker.objects.filter(pk=broker.pk).update(url=real_url)
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and op.attempts == 3
    assert instance.state == InstanceState.READY
    assert len(instance_requests(osb_broker, instance, "PUT")) == 1
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()


# --- one operation at a time -----------------------------------------------------------------------


def test_concurrent_updates_make_one_operation_and_a_conflict(broker: Broker, osb_broker: SampleBroker) -> None:
    instance = ready_instance(plan(broker, "status-page", "basic"))
    stale = ServiceInstance.objects.get(pk=instance.pk)  # a second request that also read "ready"
    instance_update(instance=instance, parameters={"a": 1})
    with pytest.raises(Conflict) as caught:
        instance_update(instance=stale, parameters={"a": 2})
    assert caught.value.status_code == 409
    assert Operation.objects.filter(instance=instance, type=OpType.UPDATE).count() == 1
    with pytest.raises(Conflict):
        instance_deprovision(instance=stale)
    assert Operation.objects.filter(instance=instance, state__in=[OpState.PENDING, OpState.IN_PROGRESS]).count() == 1
    instance.refresh_from_db()
    assert instance.state == InstanceState.UPDATING
    run_operations()
    [patch] = instance_requests(osb_broker, instance, "PATCH")
    assert patch.json["parameters"] == {"a": 1}


def test_second_provision_operation_on_one_instance_is_a_conflict(broker: Broker) -> None:
    instance, op = provision(plan(broker, "status-page", "basic"))
    with pytest.raises(Conflict):
        start_operation(Operation(type=OpType.PROVISION, instance=instance, request=op.request))
    assert Operation.objects.filter(instance=instance).count() == 1


# --- call records ----------------------------------------------------------------------------------


def test_every_call_is_recorded_and_served(broker: Broker, osb_broker: SampleBroker, admin_api: Any) -> None:
    osb_broker.async_seconds = 600
    ha = plan(broker, "postgresql", "ha-cluster")
    instance, op = provision(ha, parameters={"database_name": "app"})
    op = step(op)
    op = step(op)
    osb_broker.operations[op.broker_operation]["duration"] = 0
    run_operations()

    calls = list(OperationCall.objects.filter(operation=op).order_by("at", "id"))
    received = instance_requests(osb_broker, instance, suffix=None)
    assert [(c.method, c.path.split("?")[0]) for c in calls] == [(r.method, r.path) for r in received]
    assert [c.request_id for c in calls] == [r.headers["X-Broker-API-Request-Identity"] for r in received]
    assert [c.status for c in calls] == [202, 200, 200, 200]
    assert all(c.duration_ms >= 0 and c.at is not None and c.error is None for c in calls)
    assert "accepts_incomplete=true" in calls[0].path
    assert '"database_name":"app"' in calls[0].request_excerpt

    listed = admin_api.get("/api/v1/operations/", {"instance": str(instance.pk)})
    assert listed.status_code == 200
    [served] = listed.json()["results"]
    assert served["id"] == str(op.pk) and served["type"] == "provision" and served["state"] == "succeeded"
    assert served["attempts"] == 1 and served["polls"] == 2
    assert [c["request_id"] for c in served["calls"]] == [c.request_id for c in calls]
    assert set(served["calls"][0]) >= {"method", "path", "status", "duration_ms", "request_id", "at", "error"}
    per_instance = admin_api.get(f"/api/v1/instances/{instance.pk}/operations/")
    assert per_instance.status_code == 200
    assert [o["id"] for o in per_instance.json()["results"]] == [str(op.pk)]
    detail = admin_api.get(f"/api/v1/operations/{op.pk}/")
    assert detail.status_code == 200 and len(detail.json()["calls"]) == 4


def test_call_records_hold_no_secrets(broker: Broker, osb_broker: SampleBroker, admin_api: Any) -> None:
    osb_broker.set_response("PUT", INSTANCE_PATH, 400, times=1, body={
        "description": "bad admin_password", "password": "echoed-hunter2"})
    _instance, _op = provision(plan(broker, "status-page", "basic"),
                             parameters={"admin_password": "hunter2", "api_token": "tok-123", "size": 1})
    run_operations()
    assert osb_broker.requests_for("PUT")[0].json["parameters"]["admin_password"] == "hunter2"  # sent, of course
    rows = list(OperationCall.objects.values())
    assert rows
    dumped = json.dumps(rows, default=str)
    for secret in (BROKER_PASSWORD, "hunter2", "tok-123", "echoed-hunter2"):
        assert secret not in dumped
    assert '"size":1' in rows[0]["request_excerpt"]
    api = json.dumps(admin_api.get("/api/v1/operations/").json())
    assert BROKER_PASSWORD not in api and "hunter2" not in api
    basic_header = base64.b64encode(f"portal:{BROKER_PASSWORD}".encode()).decode()
    assert basic_header not in dumped


def test_step_is_a_no_op_when_not_due_or_finished(broker: Broker, osb_broker: SampleBroker) -> None:
    _instance, op = provision(plan(broker, "status-page", "basic"))
    Operation.objects.filter(pk=op.pk).update(next_poll_at=timezone.now() + timedelta(seconds=50))
    from instances.services.operations import operation_step

    # An early message does nothing (its own chain reschedules it; the sweeper covers a lost one).
    assert operation_step(operation_id=op.pk) is None
    assert osb_broker.requests_for("PUT") == []
    run_operations()
    assert operation_step(operation_id=op.pk) is None
    assert len(osb_broker.requests_for("PUT")) == 1


def test_the_engine_writes_only_changes_the_state_machine_allows(direct: Broker) -> None:
    from instances.services.operations import CLAIMABLE, _transition
    from instances.states import ACTIVE, InvalidTransition

    assert CLAIMABLE == ACTIVE
    _, op = provision(plan(direct, "postgresql", "standard-small"), parameters={"database_name": "orders"})
    run_operations()
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    with pytest.raises(InvalidTransition):
        _transition(op, OpState.IN_PROGRESS, next_step="again")
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and op.next_step == "Nothing more to do."
