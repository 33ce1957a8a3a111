"""Binding rotation against the real HTTP test broker and the Kubernetes API stand-in.

A rotation creates a successor binding (with `predecessor_binding_id` only when the plan is `binding_rotatable`),
writes its credentials into the same Secret in one write, and unbinds the predecessor after the grace period. The
broker's `renew_before` / `expires_at` make the sweeper rotate on its own. Operations run in-process
(run_operations) and the sweeper is called as beat calls it, so each test decides when time has passed.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker
from devtools.kube_standin import KubeStandIn
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create
from instances.services.instances import instance_provision
from instances.services.kubernetes import BINDING_LABEL, binding_publish
from instances.services.rotation import (
    binding_rotate,
    binding_rotation_sweep,
    rotate_at_for,
    rotation_status,
)
from instances.states import BindingState, OpType, PublicationState
from teams.models import AuditRecord
from tests.conftest import wait_for
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs", "no_cluster")]

SECRET_PATH = r"/api/v1/namespaces/[^/]+/secrets"
BIND_PATH = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"





def provision(broker: Broker, plan_name: str) -> ServiceInstance:
    created = instance_provision(plan=plan(broker, "redis-cache", plan_name), name=f"cache-{plan_name}",
                                 namespace="team-a")
    run_operations()
    created.refresh_from_db()
    assert created.state == "ready"
    return created


@pytest.fixture
def rotatable(broker: Broker) -> ServiceInstance:
    """An instance of a plan with binding_rotatable (the sample catalog's redis cache-1gb)."""
    instance = provision(broker, "cache-1gb")
    assert instance.plan.binding_rotatable
    return instance


@pytest.fixture
def plain(broker: Broker) -> ServiceInstance:
    """An instance of a plan without binding_rotatable."""
    instance = provision(broker, "cache-free")
    assert not instance.plan.binding_rotatable
    return instance


def bind(instance: ServiceInstance, name: str = "app-cache") -> ServiceBinding:
    binding = binding_create(instance=instance, name=name)
    run_operations()
    binding_publish(binding_id=binding.pk)
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    return binding


def writes(kube: KubeStandIn) -> list[dict[str, Any]]:
    return [r for r in kube.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
            and re.match(SECRET_PATH, r["path"])]


def bind_bodies(osb_broker: SampleBroker) -> list[dict[str, Any]]:
    return [r.json for r in osb_broker.requests_for("PUT", BIND_PATH)]


def unbinds_of(osb_broker: SampleBroker, binding: ServiceBinding) -> list[Any]:
    return osb_broker.requests_for("DELETE", rf"/v2/service_instances/[^/]+/service_bindings/{binding.pk}")


def fresh(binding: ServiceBinding) -> ServiceBinding:
    return ServiceBinding.objects.get(pk=binding.pk)


def rotate_and_bind(binding: ServiceBinding, **kwargs: Any) -> ServiceBinding:
    successor = binding_rotate(binding=binding, **kwargs)
    run_operations()
    return fresh(successor)


# --- rotation with and without binding_rotatable -----------------------------------------------------------


def test_rotation_of_a_rotatable_plan_sends_predecessor_binding_id_and_writes_the_secret_once(
    rotatable: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker, alice: Any, settings: Any
) -> None:
    settings.BINDING_ROTATION_GRACE_SECONDS = 3600
    old = bind(rotatable)
    old_password = kube.secret_data("team-a", "app-cache")["password"]
    osb_broker.clear_requests()
    kube.requests.clear()

    successor = binding_rotate(binding=old, requested_by=alice)
    assert successor.predecessor_id == old.pk and successor.rotation_linked and not successor.current
    assert (successor.name, successor.namespace, successor.secret_name) == ("app-cache", "team-a", "app-cache")
    assert rotation_status(fresh(old))["step"] == "creating_successor"
    run_operations()

    [body] = bind_bodies(osb_broker)
    assert body["predecessor_binding_id"] == str(old.pk)
    assert body["bind_resource"] == old.bind_resource and body["context"] == old.context
    successor, old = fresh(successor), fresh(old)
    assert successor.state == BindingState.READY and successor.current
    assert old.state == BindingState.READY and not old.current  # still bound during the grace period
    # The broker made a new binding of the same instance that knows its predecessor.
    assert osb_broker.bindings[str(successor.pk)]["predecessor_binding_id"] == str(old.pk)

    before = timezone.now()
    binding_publish(binding_id=successor.pk)
    secret = kube.get_secret("team-a", "app-cache")
    data = kube.secret_data("team-a", "app-cache")
    # One write, to the same Secret: it carries the successor's credentials and label now.
    assert [(r["method"], r["path"]) for r in writes(kube)] == [("PUT", "/api/v1/namespaces/team-a/secrets/app-cache")]
    assert data["password"] == successor.secrets["credentials"]["password"] != old_password
    assert secret["metadata"]["labels"][BINDING_LABEL] == str(successor.pk)
    assert {s["metadata"]["name"] for s in kube.list_secrets("team-a")} == {"app-cache"}

    old = fresh(old)
    assert old.retire_at is not None
    assert before + timedelta(seconds=3590) < old.retire_at <= timezone.now() + timedelta(seconds=3600)
    status = rotation_status(fresh(successor))
    assert status["step"] == "grace_period" and status["linked"] is True
    assert status["predecessor"] == old.pk and rotation_status(old)["successor"] == successor.pk

    # The predecessor's own publication never writes its credentials back.
    kube.requests.clear()
    binding_publish(binding_id=old.pk)
    assert fresh(old).publication_state == PublicationState.HANDED_OVER
    assert writes(kube) == []

    record = AuditRecord.objects.get(action="binding.rotate")
    assert record.actor_id == alice.pk and "linked by the broker" in record.summary


def test_rotation_of_a_plan_without_binding_rotatable_is_a_new_binding_without_predecessor_binding_id(
    plain: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker, settings: Any
) -> None:
    settings.BINDING_ROTATION_GRACE_SECONDS = 3600
    old = bind(plain)
    osb_broker.clear_requests()
    kube.requests.clear()

    successor = rotate_and_bind(old)
    [body] = bind_bodies(osb_broker)
    assert "predecessor_binding_id" not in body
    assert not successor.rotation_linked and successor.current and successor.predecessor_id == old.pk
    assert osb_broker.bindings[str(successor.pk)]["predecessor_binding_id"] is None

    binding_publish(binding_id=successor.pk)
    assert [r["method"] for r in writes(kube)] == ["PUT"]
    assert kube.secret_data("team-a", "app-cache")["password"] == successor.secrets["credentials"]["password"]
    status = rotation_status(successor)
    assert status["linked"] is False and status["step"] == "grace_period"
    assert "broker does not link" in AuditRecord.objects.get(action="binding.rotate").summary


def test_the_broker_refuses_predecessor_binding_id_for_a_plan_without_binding_rotatable(
    plain: ServiceInstance, osb_broker: SampleBroker
) -> None:
    """The test broker checks what the portal must never send (so the test above can fail)."""
    import httpx

    from tests.conftest import BROKER_PASSWORD, BROKER_USER

    old = bind(plain)
    p = plain.plan
    answer = httpx.put(f"{osb_broker.url}/v2/service_instances/{plain.pk}/service_bindings/x-1",
                       json={"service_id": p.offering.catalog_id, "plan_id": p.catalog_id,
                             "predecessor_binding_id": str(old.pk)},
                       auth=(BROKER_USER, BROKER_PASSWORD), headers={"X-Broker-API-Version": "2.17"})
    assert answer.status_code == 400 and "binding_rotatable" in answer.json()["description"]


def test_the_predecessor_is_unbound_after_the_grace_period_and_the_secret_stays(
    rotatable: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker, settings: Any
) -> None:
    settings.BINDING_ROTATION_GRACE_SECONDS = 1
    old = bind(rotatable)
    successor = rotate_and_bind(old)
    binding_publish(binding_id=successor.pk)
    assert binding_rotation_sweep() == {"retired": 0, "rotated": 0}  # the grace period is not over yet
    assert unbinds_of(osb_broker, old) == []

    # Poll the sweeper as beat would, until the grace period is over and it unbinds the predecessor.
    wait_for(lambda: binding_rotation_sweep()["retired"] == 1, timeout=10, interval=0.2,
             what="the sweeper to unbind the predecessor")
    assert fresh(old).state == BindingState.UNBINDING
    assert rotation_status(fresh(successor))["step"] == "unbinding_predecessor"
    run_operations()
    old = fresh(old)
    assert old.state == BindingState.DELETED
    assert len(unbinds_of(osb_broker, old)) == 1 and str(old.pk) not in osb_broker.bindings
    assert str(successor.pk) in osb_broker.bindings

    kube.requests.clear()
    binding_publish(binding_id=old.pk)  # the deleted predecessor's removal leaves the successor's Secret alone
    assert writes(kube) == []
    assert kube.get_secret("team-a", "app-cache")["metadata"]["labels"][BINDING_LABEL] == str(successor.pk)
    assert rotation_status(fresh(successor))["step"] == "done"
    assert binding_rotation_sweep() == {"retired": 0, "rotated": 0}  # nothing twice
    unbind = Operation.objects.get(binding=old, type=OpType.UNBIND)
    assert unbind.requested_by is None  # the portal itself


def test_without_a_cluster_the_grace_period_starts_when_the_successor_is_bound(
    rotatable: ServiceInstance, settings: Any
) -> None:
    settings.BINDING_ROTATION_GRACE_SECONDS = 0
    old = bind(rotatable)
    assert old.publication_state == PublicationState.NOT_CONFIGURED
    successor = rotate_and_bind(old)
    binding_publish(binding_id=successor.pk)
    assert fresh(old).retire_at is not None
    assert binding_rotation_sweep()["retired"] == 1
    run_operations()
    assert fresh(old).state == BindingState.DELETED


def test_a_failed_successor_leaves_the_predecessor_in_place_and_rotation_can_be_tried_again(
    rotatable: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker
) -> None:
    old = bind(rotatable)
    secret_before = kube.get_secret("team-a", "app-cache")
    osb_broker.set_response("PUT", BIND_PATH, 400, times=1, body={"description": "no more credentials today"})
    failed = rotate_and_bind(old)
    assert failed.state == BindingState.FAILED and not failed.current
    old = fresh(old)
    assert old.current and old.state == BindingState.READY and old.retire_at is None
    assert rotation_status(old)["step"] == "successor_failed"
    assert kube.get_secret("team-a", "app-cache") == secret_before

    successor = rotate_and_bind(old)
    assert successor.state == BindingState.READY and successor.current
    assert not fresh(old).current


def test_rotation_is_refused_while_one_is_in_progress_and_for_a_replaced_binding(
    rotatable: ServiceInstance
) -> None:
    from catalog_portal.exceptions import Conflict

    old = bind(rotatable)
    binding_rotate(binding=old)
    with pytest.raises(Conflict, match="already in progress"):
        binding_rotate(binding=old)
    run_operations()
    with pytest.raises(Conflict, match="being replaced"):
        binding_rotate(binding=fresh(old))
    assert ServiceBinding.objects.filter(predecessor=old).count() == 1


# --- automatic rotation ------------------------------------------------------------------------------------


def test_rotate_at_is_renew_before_else_eighty_percent_of_the_lifetime() -> None:
    now = timezone.now().replace(microsecond=0)
    expires = now + timedelta(hours=10)
    assert rotate_at_for({"expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.0Z")}, now=now) == now + timedelta(hours=8)
    renew = "2031-12-01T00:00:00.0Z"
    assert rotate_at_for({"expires_at": "2031-12-31T23:59:59.0Z", "renew_before": renew}, now=now).year == 2031
    assert rotate_at_for({"renew_before": renew}, now=now).month == 12
    assert rotate_at_for({}, now=now) is None and rotate_at_for({"expires_at": "soon"}, now=now) is None


def test_an_asynchronous_binds_times_come_from_the_fetch_after_last_operation(
    rotatable: ServiceInstance, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "always"
    osb_broker.binding_renew_seconds, osb_broker.binding_expires_seconds = 600, 900
    binding = bind(rotatable)
    fetches = osb_broker.requests_for("GET", BIND_PATH)
    assert len(fetches) == 1  # the credentials and the metadata come from the fetch (a 202 carries neither)
    assert set(binding.metadata) == {"renew_before", "expires_at"}
    assert binding.rotate_at == rotate_at_for(binding.metadata, now=timezone.now())


def test_automatic_rotation_at_renew_before(
    rotatable: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker
) -> None:
    osb_broker.binding_renew_seconds = 2
    osb_broker.binding_expires_seconds = 3600
    old = bind(rotatable)
    assert old.metadata["renew_before"] and old.metadata["expires_at"]
    renew = rotate_at_for({"renew_before": old.metadata["renew_before"]}, now=timezone.now())
    assert old.rotate_at == renew
    assert binding_rotation_sweep() == {"retired": 0, "rotated": 0}  # not yet
    osb_broker.clear_requests()

    wait_for(lambda: binding_rotation_sweep()["rotated"] == 1, timeout=10, interval=0.2,
             what="the sweeper to rotate at renew_before")
    assert timezone.now() >= renew
    successor = ServiceBinding.objects.get(predecessor=old)
    assert fresh(old).rotate_at is None
    run_operations()
    [body] = bind_bodies(osb_broker)
    assert body["predecessor_binding_id"] == str(old.pk)
    successor = fresh(successor)
    assert successor.current and successor.rotate_at is not None  # the successor is renewed in turn
    assert "Automatic rotation" in AuditRecord.objects.get(action="binding.rotate").summary
    assert AuditRecord.objects.get(action="binding.rotate").actor is None


def test_automatic_rotation_before_expires_at(
    plain: ServiceInstance, kube: KubeStandIn, osb_broker: SampleBroker
) -> None:
    osb_broker.binding_expires_seconds = 3
    old = bind(plain)
    assert "renew_before" not in old.metadata
    expires = rotation_status(old)["expires_at"]
    # 80 % of the lifetime from the bind to expires_at.
    assert old.rotate_at < expires and (expires - old.rotate_at) >= timedelta(seconds=0.4)
    osb_broker.clear_requests()

    wait_for(lambda: binding_rotation_sweep()["rotated"] == 1, timeout=10, interval=0.2,
             what="the sweeper to rotate before expires_at")
    assert timezone.now() < expires + timedelta(seconds=1)
    run_operations()
    [body] = bind_bodies(osb_broker)
    assert "predecessor_binding_id" not in body  # cache-free is not binding_rotatable
    successor = ServiceBinding.objects.get(predecessor=old)
    assert fresh(successor).current


def test_the_page_warns_when_expiry_is_near_and_rotation_is_not_possible(
    plain: ServiceInstance, osb_broker: SampleBroker, alice: Any
) -> None:
    from tests.conftest import signed_in

    osb_broker.binding_expires_seconds = 3600
    old = bind(plain)
    ServiceBinding.objects.filter(pk=old.pk).update(rotate_at=timezone.now() - timedelta(seconds=1))
    ServiceInstance.objects.filter(pk=plain.pk).update(state="updating")  # the instance is busy: cannot rotate now
    assert binding_rotation_sweep()["rotated"] == 0
    status = rotation_status(fresh(old))
    assert "cannot be rotated now" in status["warning"] and "updating" in status["warning"]
    page = signed_in(alice).get(plain.get_absolute_url())
    assert "cannot be rotated now" in page.content.decode()


# --- API and page ------------------------------------------------------------------------------------------


def test_rotate_api_answers_the_successor_and_the_chain(
    rotatable: ServiceInstance, alice_api: Any, osb_broker: SampleBroker
) -> None:
    old = bind(rotatable)
    answer = alice_api.post(f"/api/v1/bindings/{old.pk}/rotate/")
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["predecessor"] == str(old.pk) and body["successor"] is None and body["rotation"]["linked"] is True
    assert body["rotation"]["state"] == "creating_successor" and body["secret_name"] == "app-cache"

    again = alice_api.post(f"/api/v1/bindings/{old.pk}/rotate/")
    assert again.status_code == 409 and again.headers["Content-Type"].startswith("application/json")
    run_operations()
    binding_publish(binding_id=body["id"])
    detail = alice_api.get(f"/api/v1/bindings/{old.pk}/").json()
    assert detail["successor"] == body["id"] and detail["predecessor"] is None
    assert detail["rotation"]["state"] == "grace_period" and detail["rotation"]["unbind_predecessor_at"]
    assert detail["publication"]["state"] in ("not_configured", "handed_over", "pending")


def test_rotate_api_is_refused_to_a_viewer(rotatable: ServiceInstance, bob: Any) -> None:
    from rest_framework.test import APIClient

    old = bind(rotatable)
    client = APIClient()
    client.force_authenticate(bob)
    answer = client.post(f"/api/v1/bindings/{old.pk}/rotate/")
    assert answer.status_code == 403
    assert not ServiceBinding.objects.filter(predecessor=old).exists()


def test_the_page_has_a_rotate_button_and_shows_the_rotation(
    plain: ServiceInstance, alice: Any
) -> None:
    from tests.conftest import signed_in

    old = bind(plain)
    client = signed_in(alice)
    page = client.get(plain.get_absolute_url()).content.decode()
    assert f"/bindings/{old.pk}/rotate/" in page
    answer = client.post(f"/bindings/{old.pk}/rotate/")
    assert answer.status_code == 302
    run_operations()
    page = client.get(plain.get_absolute_url()).content.decode()
    assert 'data-rotation-step="grace_period"' in page or 'data-rotation-step="publishing"' in page
    assert "does not link" in page


# --- racing rotations ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_rotate_requests_start_one_rotation(
    rotatable: ServiceInstance, alice: Any, live_server: Any, osb_broker: SampleBroker
) -> None:
    """Four rotate requests released together against the live server: one successor, the others 409, and the
    broker receives one bind naming the predecessor."""
    import threading

    import httpx
    from rest_framework.authtoken.models import Token

    old = bind(rotatable)
    token = Token.objects.create(user=alice).key
    osb_broker.clear_requests()
    barrier, answers, errors = threading.Barrier(4), [], []

    def rotate() -> None:
        try:
            with httpx.Client(base_url=live_server.url, timeout=30) as client:
                barrier.wait(timeout=10)
                answer = client.post(f"/api/v1/bindings/{old.pk}/rotate/", headers={"Authorization": f"Token {token}"})
                answers.append((answer.status_code, answer.json()))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(status for status, _ in answers) == [202, 409, 409, 409], answers
    assert all("in progress" in body["detail"] for status, body in answers if status == 409)
    [successor] = ServiceBinding.objects.filter(predecessor=old)
    run_operations()
    bodies = bind_bodies(osb_broker)
    assert [body["predecessor_binding_id"] for body in bodies] == [str(old.pk)]
    assert fresh(successor).current and not fresh(old).current
