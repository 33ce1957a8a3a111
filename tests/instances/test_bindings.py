"""Bindings on the operation engine against a real HTTP broker: bind, fetch, unbind, errors, cascade, secrecy.

Operations are stepped in-process (`step_once`, `run_operations`); the broker is the sample broker over HTTP
(through the OSB contract proxy for happy paths, directly when an answer is scripted).
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
from typing import Any

import pytest
from django.db import connection

from brokers.models import Broker, ServicePlan
from catalog_portal.exceptions import ApplicationError, Conflict
from devtools.sample_broker import SampleBroker
from instances import tasks
from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create, binding_credentials, binding_delete
from instances.services.instances import instance_deprovision, instance_provision
from instances.states import BindingState, InstanceState, OpState, OpType, Phase
from tests.instances.helpers import plan, run_operations, step_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

BINDING_PATH = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"
BINDING_LAST_OPERATION = BINDING_PATH + "/last_operation"


# --- fixtures and helpers ----------------------------------------------------------------------------





@pytest.fixture
def cache(broker: Broker) -> ServicePlan:
    return plan(broker, "redis-cache", "cache-free")


@pytest.fixture
def direct_cache(direct: Broker) -> ServicePlan:
    return plan(direct, "redis-cache", "cache-free")


def step(op: Operation) -> Operation:
    step_once(op)
    op.refresh_from_db()
    return op


def ready_instance(p: ServicePlan, osb_broker: SampleBroker, *, name: str = "db1", namespace: str = "team-a",
                   user: Any = None) -> ServiceInstance:
    instance = instance_provision(plan=p, name=name, namespace=namespace, requested_by=user)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    osb_broker.clear_requests()
    return instance


def bind(instance: ServiceInstance, name: str = "app-cache", **kwargs: Any) -> tuple[ServiceBinding, Operation]:
    binding = binding_create(instance=instance, name=name, **kwargs)
    return binding, Operation.objects.get(binding=binding, type=OpType.BIND)


def ready_binding(instance: ServiceInstance, osb_broker: SampleBroker, name: str = "app-cache",
                  **kwargs: Any) -> ServiceBinding:
    binding, _ = bind(instance, name, **kwargs)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    osb_broker.clear_requests()
    return binding


def binding_requests(osb_broker: SampleBroker, binding: ServiceBinding, method: str | None = None,
                     suffix: str = "") -> list[Any]:
    return osb_broker.requests_for(
        method, f"/v2/service_instances/{binding.instance_id}/service_bindings/{binding.pk}{suffix}"
    )


def seen(osb_broker: SampleBroker, instance: ServiceInstance) -> list[tuple[str, str]]:
    """(method, path below the instance) of every request the broker received for the instance."""
    prefix = f"/v2/service_instances/{instance.pk}"
    return [(r.method, r.path[len(prefix):]) for r in osb_broker.requests if r.path.startswith(prefix)]


def decode_identity(header: str) -> dict[str, Any]:
    platform, _, payload = header.partition(" ")
    assert platform == "kubernetes"
    return json.loads(base64.b64decode(payload))


def raw_binding_row(binding: ServiceBinding) -> str:
    """Every column of the binding's row as the database holds it."""
    table = connection.ops.quote_name(ServiceBinding._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [binding.pk.hex if connection.vendor == "sqlite"
                                                                  else binding.pk])
        row = cursor.fetchone()
    assert row is not None
    return " ".join(str(value) for value in row)


def no_mitigation() -> bool:
    return not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()


BIND_PARAMS = {"acl_categories": ["@read"], "key_prefix": "app:"}
COMPANIONS = {
    "syslog_drain_url": "syslog-tls://logs.example.com:6514",
    "route_service_url": "https://route.example.com/proxy",
    "volume_mounts": [{"driver": "cephdriver", "container_dir": "/data", "mode": "rw", "device_type": "shared",
                       "device": {"volume_id": "vol-1", "mount_config": {"key": "value"}}}],
    "endpoints": [{"host": "cache.example.com", "ports": ["6379", "7000-7010"], "protocol": "tcp"}],
}
METADATA = {"expires_at": "2031-12-31T23:59:59.0Z", "renew_before": "2031-12-01T00:00:00.0Z"}


# --- bind ----------------------------------------------------------------------------------------------


def test_sync_bind_sends_the_exact_request_and_keeps_the_credentials_encrypted(
    cache: ServicePlan, osb_broker: SampleBroker, alice: Any
) -> None:
    instance = ready_instance(cache, osb_broker, user=alice)
    binding, op = bind(instance, parameters=BIND_PARAMS, requested_by=alice)
    assert binding.state == BindingState.BINDING
    assert binding.namespace == "team-a" and binding.secret_name == "app-cache"
    assert op.state == OpState.PENDING and op.binding_id == binding.pk and op.instance_id == instance.pk
    assert seen(osb_broker, instance) == []  # nothing is sent before a worker steps it

    run_operations()

    binding.refresh_from_db()
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and op.finished_at is not None
    assert binding.state == BindingState.READY
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert seen(osb_broker, instance) == [("PUT", f"/service_bindings/{binding.pk}")]
    [put] = binding_requests(osb_broker, binding, "PUT")
    assert put.query == {"accepts_incomplete": "true"}
    assert put.headers["X-Broker-API-Version"] == "2.17"
    assert put.json == {
        "service_id": cache.offering.catalog_id,
        "plan_id": cache.catalog_id,
        "context": {"platform": "kubernetes", "namespace": "team-a", "clusterid": "catalog-portal",
                    "instance_name": "db1", "binding_name": "app-cache"},
        "bind_resource": {"app_guid": "team-a/app-cache"},
        "parameters": BIND_PARAMS,
    }
    identity = decode_identity(put.headers["X-Broker-API-Originating-Identity"])
    assert identity["username"] == "alice" and identity["uid"] == str(alice.pk)
    assert "system:authenticated" in identity["groups"]

    # The broker's credentials are kept, encrypted at rest, and revealed to the person who asked for them.
    issued = osb_broker.bindings[str(binding.pk)]["credentials"]
    assert osb_broker.bindings[str(binding.pk)]["parameters"] == BIND_PARAMS
    row = raw_binding_row(binding)
    assert binding.secrets_encrypted
    for secret in (issued["password"], issued["uri"]):
        assert secret not in row
        assert secret not in binding.secrets_encrypted
    revealed = binding_credentials(binding=binding, user=alice)
    assert revealed == {"credentials": issued, "syslog_drain_url": None, "route_service_url": None,
                        "volume_mounts": [], "endpoints": []}


def test_bind_with_another_namespace_and_secret_name(cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(cache, osb_broker)
    binding = ready_binding(instance, osb_broker, name="worker", namespace="team-b", secret_name="redis-creds")
    assert (binding.namespace, binding.secret_name) == ("team-b", "redis-creds")
    put = osb_broker.bindings[str(binding.pk)]
    assert put["context"]["namespace"] == "team-b"
    assert put["context"]["instance_name"] == "db1"
    assert put["bind_resource"] == {"app_guid": "team-b/worker"}


def test_everything_a_bind_returns_is_kept(direct_cache: ServicePlan, osb_broker: SampleBroker,
                                           admin_user: Any) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    credentials = {"uri": "redis://app:Wh1sper-Pw@cache.example.com:6379", "password": "Wh1sper-Pw", "port": 6379}
    osb_broker.set_response("PUT", BINDING_PATH, 201, times=1,
                            body={"credentials": credentials, "metadata": METADATA, **COMPANIONS})
    binding, op = bind(instance)
    run_operations()
    binding.refresh_from_db()
    op.refresh_from_db()
    assert op.state == OpState.SUCCEEDED and binding.state == BindingState.READY
    assert binding.metadata == METADATA
    assert binding_credentials(binding=binding, user=admin_user) == {"credentials": credentials, **COMPANIONS}
    row = raw_binding_row(binding)
    for secret in ("Wh1sper-Pw", COMPANIONS["route_service_url"], COMPANIONS["syslog_drain_url"], "vol-1"):
        assert secret not in row  # the companions are encrypted with the credentials


def test_async_bind_polls_with_the_operation_token_then_fetches_the_credentials(
    cache: ServicePlan, osb_broker: SampleBroker, alice: Any
) -> None:
    instance = ready_instance(cache, osb_broker, user=alice)
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600.0
    binding, op = bind(instance, parameters=BIND_PARAMS, requested_by=alice)

    op = step(op)  # 202
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL
    token = osb_broker.bindings[str(binding.pk)]["operation"]
    assert op.broker_operation == token and op.accepted_at is not None
    binding.refresh_from_db()
    assert binding.state == BindingState.BINDING and binding.secrets == {}
    with pytest.raises(Conflict):
        binding_credentials(binding=binding, user=alice)

    op = step(op)  # in progress
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.POLL and op.polls == 1
    osb_broker.operations[token]["duration"] = 0.0
    op = step(op)  # succeeded: fetch next
    assert op.phase == Phase.FETCH and op.state == OpState.IN_PROGRESS
    binding.refresh_from_db()
    assert binding.state == BindingState.BINDING
    op = step(op)  # GET the binding
    assert op.state == OpState.SUCCEEDED

    path = f"/service_bindings/{binding.pk}"
    assert seen(osb_broker, instance) == [("PUT", path), ("GET", path + "/last_operation"),
                                          ("GET", path + "/last_operation"), ("GET", path)]
    for poll in binding_requests(osb_broker, binding, "GET", "/last_operation"):
        assert poll.query == {"service_id": cache.offering.catalog_id, "plan_id": cache.catalog_id,
                              "operation": token}
    [fetch] = binding_requests(osb_broker, binding, "GET")
    assert fetch.query == {"service_id": cache.offering.catalog_id, "plan_id": cache.catalog_id}
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    issued = osb_broker.bindings[str(binding.pk)]["credentials"]
    assert binding_credentials(binding=binding, user=alice)["credentials"] == issued
    assert issued["password"] not in raw_binding_row(binding)


def test_credentials_in_a_202_are_never_trusted(direct_cache: ServicePlan, osb_broker: SampleBroker,
                                                admin_user: Any) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.set_response("PUT", BINDING_PATH, 202, times=1,
                            body={"operation": "bind-1", "credentials": {"password": "from-the-202"}})
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 200, times=1, body={"state": "succeeded"})
    osb_broker.set_response("GET", BINDING_PATH, 200, times=1,
                            body={"credentials": {"password": "fetched-pw"}, "metadata": METADATA})
    binding, op = bind(instance)
    op = step(op)
    assert op.phase == Phase.POLL
    binding.refresh_from_db()
    assert binding.secrets == {} and binding.state == BindingState.BINDING
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    assert binding_credentials(binding=binding, user=admin_user)["credentials"] == {"password": "fetched-pw"}
    assert binding.metadata == METADATA
    assert "from-the-202" not in json.dumps(binding.secrets)
    assert [m for m, _ in seen(osb_broker, instance)] == ["PUT", "GET", "GET"]


def test_async_bind_whose_fetch_keeps_failing_is_cleaned_up(direct_cache: ServicePlan,
                                                            osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.async_mode = "always"
    osb_broker.set_response("GET", BINDING_PATH, 404, body={"description": "no such binding"})
    binding, op = bind(instance)
    run_operations()
    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.FAILED and "credentials could not be fetched" in op.error
    assert binding.state == BindingState.FAILED
    cleanup = Operation.objects.get(type=OpType.ORPHAN_MITIGATION)
    assert cleanup.binding_id == binding.pk and cleanup.state == OpState.SUCCEEDED
    assert str(binding.pk) not in osb_broker.bindings  # the unusable binding was deleted at the broker


# --- unbind --------------------------------------------------------------------------------------------


def test_sync_unbind_removes_the_binding(cache: ServicePlan, osb_broker: SampleBroker, alice: Any,
                                         admin_api: Any) -> None:
    instance = ready_instance(cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    binding = binding_delete(binding=binding, requested_by=alice)
    assert binding.state == BindingState.UNBINDING
    op = Operation.objects.get(binding=binding, type=OpType.UNBIND)
    assert op.state == OpState.PENDING
    assert seen(osb_broker, instance) == []

    run_operations()

    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.SUCCEEDED
    assert binding.state == BindingState.DELETED and binding.deleted_at is not None
    [delete] = binding_requests(osb_broker, binding, "DELETE")
    assert delete.query == {"service_id": cache.offering.catalog_id, "plan_id": cache.catalog_id,
                            "accepts_incomplete": "true"}
    assert decode_identity(delete.headers["X-Broker-API-Originating-Identity"])["username"] == "alice"
    assert str(binding.pk) not in osb_broker.bindings
    assert admin_api.get(f"/api/v1/bindings/{binding.pk}/").status_code == 404
    assert admin_api.get("/api/v1/bindings/").json()["count"] == 0
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    # The name can be used again.
    ready_binding(instance, osb_broker)


def test_async_unbind_polls_until_the_binding_is_gone(cache: ServicePlan, osb_broker: SampleBroker,
                                                      admin_api: Any) -> None:
    instance = ready_instance(cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600.0
    binding_delete(binding=binding)
    op = Operation.objects.get(binding=binding, type=OpType.UNBIND)
    op = step(op)  # 202
    assert op.phase == Phase.POLL and op.broker_operation
    token = op.broker_operation
    op = step(op)  # in progress
    binding.refresh_from_db()
    assert op.state == OpState.IN_PROGRESS and binding.state == BindingState.UNBINDING
    assert admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()["state"] == "unbinding"
    osb_broker.operations[token]["duration"] = 0.0
    op = step(op)
    assert op.state == OpState.SUCCEEDED
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED
    [delete] = binding_requests(osb_broker, binding, "DELETE")
    assert delete.query == {"service_id": cache.offering.catalog_id, "plan_id": cache.catalog_id,
                            "accepts_incomplete": "true"}
    polls = binding_requests(osb_broker, binding, "GET", "/last_operation")
    assert len(polls) == 2 and all(p.query["operation"] == token for p in polls)
    assert admin_api.get(f"/api/v1/bindings/{binding.pk}/").status_code == 404


def test_gone_on_unbind_is_success(direct_cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    osb_broker.set_response("DELETE", BINDING_PATH, 410, body={"error": "Gone"})
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED
    assert Operation.objects.get(binding=binding, type=OpType.UNBIND).state == OpState.SUCCEEDED
    assert no_mitigation()


def test_gone_while_polling_an_unbind_is_success(direct_cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    osb_broker.set_response("DELETE", BINDING_PATH, 202, times=1, body={"operation": "unbind-1"})
    osb_broker.set_response("GET", BINDING_LAST_OPERATION, 410, body={"error": "Gone"})
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED


def test_a_binding_cannot_be_unbound_twice_at_once(cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    binding_delete(binding=binding)
    with pytest.raises(Conflict):
        binding_delete(binding=binding)
    assert Operation.objects.filter(binding=binding, type=OpType.UNBIND).count() == 1


# --- refused before anything is sent ------------------------------------------------------------------


def test_bind_refused_when_the_plan_is_not_bindable(broker: Broker, osb_broker: SampleBroker) -> None:
    instance = ready_instance(plan(broker, "status-page", "basic"), osb_broker)
    with pytest.raises(ApplicationError) as refused:
        binding_create(instance=instance, name="page")
    assert refused.value.status_code == 400
    assert "cannot be bound" in refused.value.message
    assert not ServiceBinding.objects.exists() and not Operation.objects.filter(type=OpType.BIND).exists()
    assert seen(osb_broker, instance) == []


def test_bind_refused_while_the_instance_is_not_ready(direct_cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = instance_provision(plan=direct_cache, name="db1", namespace="team-a")
    with pytest.raises(Conflict) as refused:
        binding_create(instance=instance, name="app")
    assert refused.value.status_code == 409 and "provisioning" in refused.value.message
    osb_broker.set_response("PUT", r"/v2/service_instances/[^/]+", 500, body={})
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    with pytest.raises(Conflict):
        binding_create(instance=instance, name="app")
    assert not ServiceBinding.objects.exists()
    assert osb_broker.requests_for("PUT", BINDING_PATH) == []


def test_invalid_parameters_are_refused_with_the_schema_messages(cache: ServicePlan,
                                                                 osb_broker: SampleBroker) -> None:
    instance = ready_instance(cache, osb_broker)
    with pytest.raises(ApplicationError) as refused:
        binding_create(instance=instance, name="app",
                       parameters={"acl_categories": ["@nope"], "key_prefix": "bad prefix!"})
    assert refused.value.status_code == 400
    messages = refused.value.fields["parameters"]
    assert any(m.startswith("acl_categories.0:") and "@nope" in m for m in messages), messages
    assert any(m.startswith("key_prefix:") and "does not match" in m for m in messages), messages
    with pytest.raises(ApplicationError) as not_an_object:
        binding_create(instance=instance, name="app", parameters=["x"])  # type: ignore[arg-type]
    assert not_an_object.value.fields["parameters"] == ["Parameters must be a JSON object."]
    assert not ServiceBinding.objects.exists()
    assert seen(osb_broker, instance) == []


@pytest.mark.parametrize(("field", "bad"), [("name", "App_Cache"), ("namespace", "Team A"),
                                            ("secret_name", "-creds")])
def test_names_must_be_dns_labels(cache: ServicePlan, osb_broker: SampleBroker, field: str, bad: str) -> None:
    instance = ready_instance(cache, osb_broker)
    values = {"name": "app", field: bad}
    with pytest.raises(ApplicationError) as refused:
        binding_create(instance=instance, **values)
    assert field in refused.value.fields
    assert not ServiceBinding.objects.exists()


def test_duplicate_name_or_secret_name_in_a_namespace_is_refused(cache: ServicePlan,
                                                                 osb_broker: SampleBroker) -> None:
    instance = ready_instance(cache, osb_broker)
    first = ready_binding(instance, osb_broker, name="app")
    with pytest.raises(ApplicationError) as same_name:
        binding_create(instance=instance, name="app", secret_name="other")
    assert "name" in same_name.value.fields
    with pytest.raises(ApplicationError) as same_secret:
        binding_create(instance=instance, name="other", secret_name="app")
    assert "secret_name" in same_secret.value.fields
    assert ServiceBinding.objects.count() == 1
    assert osb_broker.requests_for("PUT", BINDING_PATH) == []
    # Another namespace is fine; and so is the name once the first binding is gone.
    ready_binding(instance, osb_broker, name="app", namespace="team-b")
    binding_delete(binding=first)
    run_operations()
    ready_binding(instance, osb_broker, name="app")


# --- broker errors -------------------------------------------------------------------------------------


def test_conflict_on_bind_fails_without_cleanup(direct_cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.set_response("PUT", BINDING_PATH, 409, times=1,
                            body={"error": "Conflict", "description": "A binding with this id exists."})
    binding, op = bind(instance)
    run_operations()
    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.FAILED and "409" in op.error
    assert op.description == "A binding with this id exists."
    assert binding.state == BindingState.FAILED and binding.secrets == {}
    assert no_mitigation()
    assert [m for m, _ in seen(osb_broker, instance)] == ["PUT"]
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY


def test_requires_app_fails_with_the_brokers_description(direct_cache: ServicePlan,
                                                         osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    description = "This Service supports generation of credentials through binding an application only."
    osb_broker.set_response("PUT", BINDING_PATH, 422, times=1, body={"error": "RequiresApp",
                                                                     "description": description})
    binding, op = bind(instance)
    op = step(op)
    binding.refresh_from_db()
    assert op.state == OpState.FAILED
    assert op.description == description and "RequiresApp" in op.error and description in op.error
    assert binding.state == BindingState.FAILED
    assert no_mitigation()
    run_operations()
    assert [m for m, _ in seen(osb_broker, instance)] == ["PUT"]


@pytest.mark.parametrize("retry_after", [None, "7"])
def test_concurrency_error_on_bind_is_retried_with_the_same_request(direct_cache: ServicePlan,
                                                                    osb_broker: SampleBroker,
                                                                    retry_after: str | None) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.set_response("PUT", BINDING_PATH, 422, times=1,
                            body={"error": "ConcurrencyError", "description": "busy"},
                            headers={"Retry-After": retry_after} if retry_after else None)
    binding, op = bind(instance, parameters=BIND_PARAMS)
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and op.phase == Phase.SUBMIT and op.attempts == 1
    assert "busy" in op.next_step
    wait = (op.next_poll_at - op.updated_at).total_seconds()
    assert wait == pytest.approx(7 if retry_after else 2, abs=0.5)
    binding.refresh_from_db()
    assert binding.state == BindingState.BINDING
    assert no_mitigation()
    op = step(op)
    assert op.state == OpState.SUCCEEDED
    first, second = binding_requests(osb_broker, binding, "PUT")
    assert first.body == second.body and first.query == second.query
    binding.refresh_from_db()
    assert binding.state == BindingState.READY


def test_async_required_on_bind_fails(direct_cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.set_response("PUT", BINDING_PATH, 422, times=1,
                            body={"error": "AsyncRequired", "description": "async only"})
    binding, op = bind(instance)
    op = step(op)
    binding.refresh_from_db()
    assert op.state == OpState.FAILED and "asynchronous" in op.error
    assert binding.state == BindingState.FAILED
    assert no_mitigation()


def test_rejected_unbind_keeps_the_binding(direct_cache: ServicePlan, osb_broker: SampleBroker,
                                           admin_user: Any) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    binding = ready_binding(instance, osb_broker)
    before = binding_credentials(binding=binding, user=admin_user)
    osb_broker.set_response("DELETE", BINDING_PATH, 400, times=1, body={"description": "still in use"})
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    op = Operation.objects.get(binding=binding, type=OpType.UNBIND)
    assert op.state == OpState.FAILED and op.description == "still in use"
    assert binding.state == BindingState.READY  # the platform must keep remembering it
    assert binding_credentials(binding=binding, user=admin_user) == before
    assert no_mitigation()


def test_rejected_unbind_of_a_failed_binding_leaves_it_failed(direct_cache: ServicePlan,
                                                              osb_broker: SampleBroker, admin_user: Any) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    osb_broker.set_response("PUT", BINDING_PATH, 409, times=1, body={"description": "exists"})
    binding, _ = bind(instance)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.FAILED
    osb_broker.set_response("DELETE", BINDING_PATH, 400, times=1, body={"description": "not now"})
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.FAILED  # never bound: it must not turn "ready" without credentials
    with pytest.raises(Conflict):
        binding_credentials(binding=binding, user=admin_user)
    binding_delete(binding=binding)  # the broker has nothing: 410, and it is gone
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED


# --- deprovision with bindings --------------------------------------------------------------------------


def test_deprovision_with_bindings_is_refused(cache: ServicePlan, osb_broker: SampleBroker) -> None:
    instance = ready_instance(cache, osb_broker)
    ready_binding(instance, osb_broker, name="app-a")
    ready_binding(instance, osb_broker, name="app-b")
    with pytest.raises(Conflict) as refused:
        instance_deprovision(instance=instance)
    assert refused.value.status_code == 409
    assert "2 binding(s) (app-a, app-b)" in refused.value.message and "cascade" in refused.value.message
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    assert not Operation.objects.filter(type__in=[OpType.DEPROVISION, OpType.UNBIND]).exists()
    assert seen(osb_broker, instance) == []


def test_cascade_unbinds_every_binding_before_the_instance_is_deleted(cache: ServicePlan,
                                                                      osb_broker: SampleBroker,
                                                                      alice: Any) -> None:
    instance = ready_instance(cache, osb_broker)
    a = ready_binding(instance, osb_broker, name="app-a")
    b = ready_binding(instance, osb_broker, name="app-b")
    osb_broker.async_mode = "always"  # the unbinds take a while: the instance delete must wait for them
    osb_broker.async_seconds = 3600.0
    instance = instance_deprovision(instance=instance, cascade=True, requested_by=alice)
    assert instance.state == InstanceState.DEPROVISIONING
    deprovision = Operation.objects.get(instance=instance, type=OpType.DEPROVISION)
    assert deprovision.phase == Phase.WAIT and "Unbinding 2 binding(s) first" in deprovision.next_step
    for binding in (a, b):
        binding.refresh_from_db()
        assert binding.state == BindingState.UNBINDING

    for _ in range(3):  # the unbinds are accepted and polled; the delete is not sent meanwhile
        for op in Operation.objects.filter(state__in=[OpState.PENDING, OpState.IN_PROGRESS]):
            step_once(op)
    deprovision.refresh_from_db()
    assert deprovision.phase == Phase.WAIT and deprovision.state == OpState.IN_PROGRESS
    assert "Waiting for 2 binding(s)" in deprovision.next_step
    assert osb_broker.requests_for("DELETE", f"/v2/service_instances/{instance.pk}") == []

    for token in list(osb_broker.operations):
        osb_broker.operations[token]["duration"] = 0.0
    osb_broker.async_mode = "never"
    run_operations()

    deprovision.refresh_from_db()
    instance.refresh_from_db()
    assert deprovision.state == OpState.SUCCEEDED and instance.state == InstanceState.DELETED
    for binding in (a, b):
        binding.refresh_from_db()
        assert binding.state == BindingState.DELETED
        [unbind] = binding_requests(osb_broker, binding, "DELETE")
        assert unbind.query == {"service_id": cache.offering.catalog_id, "plan_id": cache.catalog_id,
                                "accepts_incomplete": "true"}
        assert decode_identity(unbind.headers["X-Broker-API-Originating-Identity"])["username"] == "alice"
    deletes = [path for method, path in seen(osb_broker, instance) if method == "DELETE"]
    assert sorted(deletes[:2]) == sorted([f"/service_bindings/{a.pk}", f"/service_bindings/{b.pk}"])
    assert deletes[2:] == [""]  # the instance itself, last
    assert str(instance.pk) not in osb_broker.instances


def test_cascade_where_an_unbind_fails_keeps_the_instance(direct_cache: ServicePlan,
                                                          osb_broker: SampleBroker) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    a = ready_binding(instance, osb_broker, name="app-a")
    b = ready_binding(instance, osb_broker, name="app-b")
    osb_broker.set_response("DELETE", f"/v2/service_instances/{instance.pk}/service_bindings/{b.pk}", 400,
                            body={"description": "in use by a running job"})
    instance_deprovision(instance=instance, cascade=True)
    run_operations()

    deprovision = Operation.objects.get(instance=instance, type=OpType.DEPROVISION)
    instance.refresh_from_db()
    a.refresh_from_db()
    b.refresh_from_db()
    assert deprovision.state == OpState.FAILED
    assert deprovision.error == "Could not unbind app-b, so the instance was not deleted."
    assert "Unbind the remaining bindings" in deprovision.next_step
    assert instance.state == InstanceState.READY
    assert a.state == BindingState.DELETED and b.state == BindingState.READY
    assert osb_broker.requests_for("DELETE", f"/v2/service_instances/{instance.pk}") == []
    assert str(instance.pk) in osb_broker.instances
    assert no_mitigation()
    # Once the broker lets go, deprovisioning without cascade is still refused, with cascade it works.
    osb_broker.clear_responses()
    with pytest.raises(Conflict):
        instance_deprovision(instance=instance)
    instance_deprovision(instance=instance, cascade=True)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED


# --- secrecy -------------------------------------------------------------------------------------------


SECRET = "Xq7-sEcReT-b1nd-pw"
ISSUED = {"uri": f"redis://app:{SECRET}@cache.example.com:6379", "password": SECRET, "username": "app",
          "api_token": f"tok-{SECRET}"}


def test_tasks_take_ids_only() -> None:
    for task, name in ((tasks.operation_step, "operation_id"), (tasks.binding_publish, "binding_id")):
        assert list(inspect.signature(task.run).parameters) == [name]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_credentials_never_leak(direct_cache: ServicePlan, osb_broker: SampleBroker, admin_user: Any,
                                admin_api: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                django_capture_on_commit_callbacks: Any, mode: str) -> None:
    instance = ready_instance(direct_cache, osb_broker)
    sent: list[tuple[str, Any, Any]] = []

    def recorder(task: Any) -> Any:
        def apply_async(args: Any = None, kwargs: Any = None, **options: Any) -> None:
            sent.append((task.name, args, kwargs))
        return apply_async

    for task in (tasks.operation_step, tasks.binding_publish):
        monkeypatch.setattr(task, "apply_async", recorder(task))
    if mode == "sync":
        osb_broker.set_response("PUT", BINDING_PATH, 201, times=1, body={"credentials": ISSUED, **COMPANIONS})
    else:
        osb_broker.set_response("PUT", BINDING_PATH, 202, times=1, body={"operation": "bind-1"})
        osb_broker.set_response("GET", BINDING_LAST_OPERATION, 200, times=1, body={"state": "succeeded"})
        osb_broker.set_response("GET", BINDING_PATH, 200, times=1, body={"credentials": ISSUED, **COMPANIONS})
    caplog.set_level(logging.DEBUG)

    with django_capture_on_commit_callbacks(execute=True):
        binding, _ = bind(instance, requested_by=admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        run_operations()

    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    assert binding_credentials(binding=binding, user=admin_user)["credentials"] == ISSUED  # it did arrive
    # Celery messages carry ids only.
    assert "instances.operation_step" in {name for name, _, _ in sent}
    ids = {str(binding.pk), *(str(o.pk) for o in Operation.objects.all())}
    for _, args, kwargs in sent:
        assert not kwargs
        assert len(args) == 1 and args[0] in ids
    # Not in the call records, the operation rows, the API bodies, the logs or the database row.
    calls = OperationCall.objects.filter(operation__binding=binding)
    assert calls.count() == (1 if mode == "sync" else 3)
    assert calls.filter(status=201 if mode == "sync" else 200).exists()
    places = [f"{c.path} {c.error} {c.request_excerpt} {c.response_excerpt}" for c in calls]
    places += [json.dumps([op.request, op.error, op.description, op.next_step]) for op in Operation.objects.all()]
    places.append(json.dumps(admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()))
    places.append(json.dumps(admin_api.get("/api/v1/bindings/").json()))
    places.append(json.dumps(admin_api.get("/api/v1/operations/", {"binding": str(binding.pk)}).json()))
    places += [record.getMessage() + str(record.args) for record in caplog.records]
    places.append(raw_binding_row(binding))
    for place in places:
        assert SECRET not in place, place
    response_excerpts = " ".join(c.response_excerpt for c in calls)
    assert '"credentials":"***"' in response_excerpts  # what the broker sent is recorded, masked


def test_cascade_waits_for_every_unbind_before_judging_one_that_failed(direct_cache: ServicePlan,
                                                                        osb_broker: SampleBroker) -> None:
    """overview-broker: one unbind failed at once (404) while the other was still running; the deprovision ended
    at once ("Could not unbind ...") with the other unbind still going. It waits for every unbind, then names
    only the binding that is really left; asked again once the broker is healthy, it deletes the instance."""
    instance = ready_instance(direct_cache, osb_broker)
    a = ready_binding(instance, osb_broker, name="app-a")
    b = ready_binding(instance, osb_broker, name="app-b")
    osb_broker.set_response("DELETE", f"/v2/service_instances/{instance.pk}/service_bindings/{a.pk}", 404,
                            body={"description": "not found"})
    osb_broker.async_mode = "always"  # app-b's unbind is accepted and runs a while
    osb_broker.async_seconds = 3600.0
    instance_deprovision(instance=instance, cascade=True)
    deprovision = Operation.objects.get(instance=instance, type=OpType.DEPROVISION)
    unbind_a = Operation.objects.get(binding=a, type=OpType.UNBIND)
    unbind_b = Operation.objects.get(binding=b, type=OpType.UNBIND)
    assert step(unbind_a).state == OpState.FAILED  # 404 to the DELETE itself: not an answer the spec gives
    assert step(unbind_b).phase == Phase.POLL
    deprovision = step(deprovision)
    assert deprovision.state == OpState.IN_PROGRESS and deprovision.phase == Phase.WAIT
    assert "Waiting for 2 binding(s)" in deprovision.next_step

    # app-b's unbind finishes: the broker's last_operation answers 404, "the binding does not exist" (spec).
    osb_broker.set_response("GET", r"/v2/service_instances/[^/]+/service_bindings/[^/]+/last_operation", 404,
                            body={})
    unbind_b = step(unbind_b)
    assert unbind_b.state == OpState.SUCCEEDED and unbind_b.next_step.startswith("The broker no longer knows the binding")
    deprovision = step(deprovision)
    assert deprovision.state == OpState.FAILED
    assert deprovision.error == "Could not unbind app-a, so the instance was not deleted."
    instance.refresh_from_db()
    b.refresh_from_db()
    assert instance.state == InstanceState.READY and b.state == BindingState.DELETED
    assert osb_broker.requests_for("DELETE", f"/v2/service_instances/{instance.pk}") == []

    osb_broker.clear_responses()
    osb_broker.async_mode = "never"
    instance_deprovision(instance=instance, cascade=True)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED and str(instance.pk) not in osb_broker.instances
