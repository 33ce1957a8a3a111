"""Drift (issue 17): the portal asks the broker what it holds for an instance (GET, recorded like every OSB call),
shows what differs, and settles it either way: adopt the broker's values, or send the portal's again as an
update."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, OperationCall, ServiceInstance
from instances.services.drift import drift_checks_due
from instances.services.instances import instance_provision
from instances.states import OpState, OpType
from teams.models import AuditRecord
from tests.conftest import signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]


@pytest.fixture
def small(broker: Broker) -> ServicePlan:
    return plan(broker, "postgresql", "standard-small")


def ready_instance(small: ServicePlan, alice: Any, name: str = "orders-db") -> ServiceInstance:
    instance = instance_provision(plan=small, name=name, namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders", "storage_gb": 10})
    run_operations()
    instance.refresh_from_db()
    assert instance.state == "ready"
    return instance


def drift_at_the_broker(osb_broker: SampleBroker, instance: ServiceInstance) -> None:
    """Someone changed the instance behind the portal's back (the broker's own console, say)."""
    held = osb_broker.instances[str(instance.pk)]
    held["parameters"] = {**held["parameters"], "database_name": "changed-by-hand"}
    held["dashboard_url"] = held["dashboard_url"] + "?v=2"


def test_a_check_finds_what_differs_and_records_the_call(
    alice: Any, alice_api: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready_instance(small, alice)
    # In sync first: the check answers with no difference.
    assert alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/").status_code == 202
    run_operations()
    body = alice_api.get(f"/api/v1/instances/{instance.pk}/").json()
    assert body["drift"]["differences"] == [] and body["drift"]["checked_at"] and body["drift_reason"] is None

    drift_at_the_broker(osb_broker, instance)
    osb_broker.clear_requests()
    response = alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    assert response.status_code == 202, response.content
    run_operations()
    fetches = osb_broker.requests_for("GET", rf"/v2/service_instances/{instance.pk}")
    assert len(fetches) == 1
    assert fetches[0].query == {"service_id": small.offering.catalog_id, "plan_id": small.catalog_id}
    check = Operation.objects.filter(instance=instance, type=OpType.REFRESH).order_by("-started_at").first()
    assert check.state == OpState.SUCCEEDED
    call = OperationCall.objects.get(operation=check)
    assert call.method == "GET" and call.status == 200  # recorded like every OSB call

    drift = alice_api.get(f"/api/v1/instances/{instance.pk}/").json()["drift"]
    fields = {d["field"]: d for d in drift["differences"]}
    assert set(fields) == {"parameters", "dashboard_url"}
    assert fields["parameters"]["portal"]["database_name"] == "orders"
    assert fields["parameters"]["broker"]["database_name"] == "changed-by-hand"
    assert fields["dashboard_url"]["broker"].endswith("?v=2")
    # The API's last_operation still follows the provision/update, not the check.
    assert alice_api.get(f"/api/v1/instances/{instance.pk}/").json()["last_operation"]["type"] == "provision"

    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "changed-by-hand" in page and "Adopt the broker’s values" in page and "Re-apply the portal’s values" in page


def test_adopting_stores_the_broker_values_and_is_audited(
    alice: Any, alice_api: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready_instance(small, alice)
    drift_at_the_broker(osb_broker, instance)
    alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    run_operations()
    osb_broker.clear_requests()
    response = alice_api.post(f"/api/v1/instances/{instance.pk}/drift/adopt/")
    assert response.status_code == 200, response.content
    assert response.json()["drift"]["differences"] == []
    instance.refresh_from_db()
    assert instance.parameters["database_name"] == "changed-by-hand"
    assert instance.dashboard_url.endswith("?v=2")
    assert osb_broker.requests == []  # nothing sent: the portal only takes what the broker said
    record = AuditRecord.objects.get(action="instance.drift_adopt")
    assert "parameters" in record.summary and "dashboard_url" in record.summary
    # Nothing left to settle.
    again = alice_api.post(f"/api/v1/instances/{instance.pk}/drift/adopt/")
    assert again.status_code == 400


def test_reapplying_sends_the_portal_values_as_an_update(
    alice: Any, alice_api: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready_instance(small, alice)
    held = osb_broker.instances[str(instance.pk)]
    held["parameters"] = {**held["parameters"], "storage_gb": 50}
    alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    run_operations()
    osb_broker.clear_requests()
    response = alice_api.post(f"/api/v1/instances/{instance.pk}/drift/reapply/")
    assert response.status_code == 202, response.content
    assert response.json()["last_operation"]["type"] == "update"
    run_operations()
    patches = osb_broker.requests_for("PATCH", rf"/v2/service_instances/{instance.pk}")
    assert len(patches) == 1
    assert patches[0].json["parameters"] == {"storage_gb": 10}  # what differs, not the create-only keys
    assert patches[0].json["previous_values"]["plan_id"] == small.catalog_id
    assert held["parameters"]["storage_gb"] == 10  # the broker holds the portal's values again
    # The next check finds them in sync.
    alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    run_operations()
    assert alice_api.get(f"/api/v1/instances/{instance.pk}/").json()["drift"]["differences"] == []


def test_a_broker_that_cannot_be_asked_says_so(
    alice: Any, alice_api: Any, broker: Broker, osb_broker: SampleBroker
) -> None:
    small = plan(broker, "postgresql", "standard-small")
    small.offering.instances_retrievable = False
    small.offering.save(update_fields=["instances_retrievable"])
    instance = ready_instance(small, alice)
    body = alice_api.get(f"/api/v1/instances/{instance.pk}/").json()
    assert body["drift"] is None and "cannot be asked" in body["drift_reason"]
    refused = alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    assert refused.status_code == 400 and "cannot be asked" in refused.json()["detail"]
    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "The broker cannot be asked" in page


def test_periodic_checks_are_bounded_per_broker(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instances = [ready_instance(small, alice, name=f"db-{n}") for n in range(3)]
    osb_broker.clear_requests()
    with override_settings(DRIFT_CHECKS_PER_BROKER_PER_MINUTE=2):
        assert drift_checks_due() == 2
        run_operations()
        assert len(osb_broker.requests_for("GET", r"/v2/service_instances/[^/]+")) == 2
        assert drift_checks_due() == 1  # the third, the next minute
        run_operations()
        assert drift_checks_due() == 0  # nothing due until the interval passed
    checked = ServiceInstance.objects.filter(pk__in=[i.pk for i in instances], drift__isnull=False)
    assert checked.count() == 3
    ServiceInstance.objects.update(drift_due_at=timezone.now() - timedelta(seconds=1))
    assert drift_checks_due() == 3


def test_the_drift_endpoints_are_in_the_openapi_document(alice_api: Any) -> None:
    schema = alice_api.get("/api/v1/schema/", {"format": "json"}).json()
    for path in ("/api/v1/instances/{instance_id}/refresh/", "/api/v1/instances/{instance_id}/drift/adopt/",
                 "/api/v1/instances/{instance_id}/drift/reapply/"):
        assert "post" in schema["paths"][path]
    assert "InstanceDrift" in schema["components"]["schemas"]


def test_a_binding_is_checked_too_and_its_broker_values_can_be_adopted(
    alice: Any, alice_api: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    from instances.services.bindings import binding_create

    instance = ready_instance(small, alice)
    binding = binding_create(instance=instance, name="app", requested_by=alice, parameters={"role": "readonly"})
    run_operations()
    binding.refresh_from_db()
    assert binding.state == "ready"
    osb_broker.bindings[str(binding.pk)]["parameters"] = {"role": "owner"}  # changed behind the portal's back
    osb_broker.clear_requests()

    alice_api.post(f"/api/v1/instances/{instance.pk}/refresh/")
    run_operations()
    fetched = osb_broker.requests_for("GET", rf"/v2/service_instances/{instance.pk}/service_bindings/{binding.pk}")
    assert len(fetched) == 1  # one check of the binding, recorded as its own operation
    check = Operation.objects.get(binding=binding, type=OpType.REFRESH)
    assert check.state == OpState.SUCCEEDED and check.calls.count() == 1
    drift = alice_api.get(f"/api/v1/bindings/{binding.pk}/").json()["drift"]
    assert drift["differences"] == [{"field": "parameters", "portal": {"role": "readonly"},
                                     "broker": {"role": "owner"}}]
    assert alice_api.get(f"/api/v1/instances/{instance.pk}/").json()["drift"]["differences"] == []
    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "Binding app: parameters" in page and "Re-apply the portal’s values" not in page

    assert alice_api.post(f"/api/v1/instances/{instance.pk}/drift/reapply/").status_code == 400  # a binding can't
    assert alice_api.post(f"/api/v1/instances/{instance.pk}/drift/adopt/").status_code == 200
    binding.refresh_from_db()
    assert binding.parameters == {"role": "owner"} and binding.drift == []
    assert "binding app parameters" in AuditRecord.objects.get(action="instance.drift_adopt").summary
