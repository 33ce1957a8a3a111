"""What an independent broker (cloudfoundry/overview-broker, each of its error and response modes) showed the portal
getting wrong, replayed with the scriptable test broker playing its part (issue 11)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog
from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create, binding_delete
from instances.services.instances import instance_provision, instance_update
from instances.services.operations import operation_cancel
from instances.states import BindingState, InstanceState, OpState, OpType, Phase
from teams.models import AuditRecord
from tests.conftest import free_port, signed_in
from tests.instances.helpers import mirrored_broker, plan, run_operations, step

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

PUT = r"/v2/service_instances/[^/]+"
BINDING = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"
BUSY = {"error": "ConcurrencyError", "description": "Another operation for this Service Instance is in progress."}
HTML_PAGE = ("<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
             "<body><h1>Internal Server Error</h1><p>nginx</p></body></html>")


@pytest.fixture
def small(direct: Broker) -> ServicePlan:
    return plan(direct, "postgresql", "standard-small")


# --- raw HTML is not the broker's words -------------------------------------------------------------


def test_an_html_error_page_is_summarised_and_only_the_call_record_keeps_its_excerpt(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    osb_broker.set_response("PUT", PUT, 500, HTML_PAGE, headers={"Content-Type": "text/html"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    assert provision.state == OpState.FAILED
    assert provision.error == "Broker answered 500 Internal Server Error with an HTML page"
    assert provision.description == ""
    call = OperationCall.objects.get(operation=provision, method="PUT")
    assert call.status == 500 and "<!DOCTYPE html>" in call.response_excerpt  # the record keeps the excerpt

    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "DOCTYPE" not in page and "&lt;!DOCTYPE" not in page and "nginx" not in page
    assert "with an HTML page" in page
    body = signed_in(alice).get(f"/api/v1/instances/{instance.pk}/").json()
    assert "DOCTYPE" not in str(body)


def test_a_plain_text_error_and_a_non_json_answer_are_summarised_too(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    osb_broker.set_response("PUT", PUT, 502, "upstream connect error or disconnect/reset before headers",
                            headers={"Content-Type": "text/plain"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    assert provision.error == "Broker answered 502 Bad Gateway with a body that is not JSON"
    assert "upstream" in OperationCall.objects.get(operation=provision, method="PUT").response_excerpt

    osb_broker.set_response("PUT", PUT, 201, HTML_PAGE, headers={"Content-Type": "text/html"}, times=1)
    second = instance_provision(plan=small, name="orders-db-2", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=second, type=OpType.PROVISION)
    assert provision.error.endswith("is not JSON: it is an HTML page") and "DOCTYPE" not in provision.error
    assert ServiceInstance.objects.get(pk=second.pk).state == InstanceState.FAILED


def ready(p: ServicePlan, user: Any, name: str = "orders-db") -> ServiceInstance:
    instance = instance_provision(plan=p, name=name, namespace="team-a", requested_by=user,
                                  parameters={"database_name": "orders"} if p.offering.name == "postgresql" else {})
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    return instance


def expire(op: Operation) -> None:
    """The operation's deadline has passed (as if its hour went by)."""
    Operation.objects.filter(pk=op.pk).update(deadline=timezone.now() - timedelta(seconds=1))


# --- before the broker accepts: a deadline of its own, and a way out -------------------------------------


def test_submission_has_its_own_deadline(alice: Any, small: ServicePlan, settings: Any) -> None:
    settings.OPERATION_SUBMIT_DEADLINE_SECONDS = 600
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = Operation.objects.get(instance=instance)
    assert (op.deadline - op.started_at).total_seconds() == pytest.approx(600, abs=2)


def test_a_provision_the_broker_keeps_refusing_as_busy_fails_at_the_submission_deadline_without_cleanup(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    osb_broker.set_response("PUT", PUT, 422, BUSY)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = Operation.objects.get(instance=instance)
    for attempt in (1, 2, 3):
        op = step(op)
        assert op.state == OpState.IN_PROGRESS and op.phase == Phase.SUBMIT and op.attempts == attempt
    # Meanwhile every DELETE is refused: the slot is held
    assert alice_api.delete(f"/api/v1/instances/{instance.pk}/").status_code == 409

    expire(op)
    op = step(op)
    assert op.state == OpState.FAILED
    assert op.error.startswith("The broker did not accept the request within ")
    assert "busy with another operation" in op.error
    assert op.next_step.startswith("Nothing was created at the broker: it never accepted the request.")
    assert not Operation.objects.filter(type=OpType.ORPHAN_MITIGATION).exists()  # 422 ConcurrencyError: none
    assert len(osb_broker.requests_for("PUT", PUT)) == 4 and osb_broker.requests_for("DELETE", PUT) == []
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    # The way out is open now
    assert alice_api.delete(f"/api/v1/instances/{instance.pk}/").status_code == 202


def test_an_unreachable_broker_fails_at_the_submission_deadline_without_cleanup(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, direct: Broker
) -> None:
    instance = ready(small, alice)
    Broker.objects.filter(pk=direct.pk).update(url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    instance_update(instance=instance, parameters={"storage_gb": 30}, requested_by=alice)
    op = Operation.objects.get(instance=instance, type=OpType.UPDATE)
    op = step(op)
    assert op.state == OpState.IN_PROGRESS and "Could not reach the broker" in op.next_step
    expire(op)
    op = step(op)
    assert op.state == OpState.FAILED and "did not accept the request within" in op.error
    assert op.next_step.startswith("Nothing was changed at the broker")
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY  # the update never reached it


def test_a_developer_cancels_an_operation_the_broker_has_not_accepted(
    alice: Any, bob: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    osb_broker.set_response("PUT", PUT, 422, BUSY)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = step(Operation.objects.get(instance=instance))
    assert op.state == OpState.IN_PROGRESS

    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert f'id="cancel-{op.pk}"' in page
    assert f'id="cancel-{op.pk}"' not in signed_in(bob).get(instance.get_absolute_url()).content.decode()
    viewer = signed_in(bob).post(reverse("instances:operation-cancel", args=[op.pk]))
    assert viewer.status_code == 403

    response = alice_api.post(f"/api/v1/operations/{op.pk}/cancel/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["state"] == "failed" and body["error"] == "Cancelled by alice before the broker accepted it."
    assert body["next_step"].startswith("Nothing was created at the broker")
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    assert AuditRecord.objects.filter(action="operation.cancel", target_id=str(op.pk), actor=alice).count() == 1
    # The worker's next message finds nothing to do; nothing more reaches the broker
    sent = len(osb_broker.requests)
    step(op)
    assert len(osb_broker.requests) == sent
    again = alice_api.post(f"/api/v1/operations/{op.pk}/cancel/")
    assert again.status_code == 409 and again.json()["detail"] == "This operation has already finished."
    # ... and the instance can be deleted (the broker never had it: 410 is success)
    osb_broker.clear_responses()
    assert alice_api.delete(f"/api/v1/instances/{instance.pk}/").status_code == 202


def test_cancelling_an_unbind_the_broker_has_not_accepted_keeps_the_binding(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready(small, alice)
    binding = binding_create(instance=instance, name="app", requested_by=alice)
    run_operations()
    osb_broker.set_response("DELETE", BINDING, 422, BUSY)
    binding_delete(binding=binding, requested_by=alice)
    op = step(Operation.objects.get(binding=binding, type=OpType.UNBIND))
    response = signed_in(alice).post(reverse("instances:operation-cancel", args=[op.pk]))
    assert response.status_code == 302
    op.refresh_from_db()
    binding.refresh_from_db()
    assert op.state == OpState.FAILED and binding.state == BindingState.READY
    assert op.next_step.startswith("Nothing was deleted at the broker")


def test_an_operation_the_broker_accepted_cannot_be_cancelled(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = step(Operation.objects.get(instance=instance))
    assert op.phase == Phase.POLL and op.accepted_at
    response = alice_api.post(f"/api/v1/operations/{op.pk}/cancel/")
    assert response.status_code == 409
    assert "accepted" in response.json()["detail"]
    op.refresh_from_db()
    assert op.state == OpState.IN_PROGRESS
    assert f'id="cancel-{op.pk}"' not in signed_in(alice).get(instance.get_absolute_url()).content.decode()


def test_an_operation_a_worker_is_sending_right_now_is_not_cancelled(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = Operation.objects.get(instance=instance)
    Operation.objects.filter(pk=op.pk).update(claimed_until=timezone.now() + timedelta(seconds=60))  # leased
    from catalog_portal.exceptions import Conflict

    with pytest.raises(Conflict, match="sending this request"):
        operation_cancel(operation=op, requested_by=alice)
    op.refresh_from_db()
    assert op.state == OpState.PENDING


# --- failed or timed-out updates: what the broker holds -------------------------------------------------


def test_a_failed_update_records_the_plan_and_parameters_the_broker_holds(
    alice: Any, small: ServicePlan, direct: Broker, osb_broker: SampleBroker, alice_api: Any
) -> None:
    instance = ready(small, alice)
    osb_broker.clear_requests()
    large = plan(direct, "postgresql", "standard-large")
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    osb_broker.failed_update_applies = True  # it reports failure, but applied the change (as overview-broker does)
    instance_update(instance=instance, plan=large, parameters={"storage_gb": 30}, requested_by=alice)
    run_operations()

    op = Operation.objects.get(instance=instance, type=OpType.UPDATE)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED and op.description == "Update failed"
    assert instance.state == InstanceState.READY
    assert instance.plan == large and instance.parameters["storage_gb"] == 30  # what the broker holds
    assert "keeps its previous settings" not in op.next_step
    assert op.next_step.startswith("Checked with the broker after the failure: the instance has plan ")
    [fetch] = osb_broker.requests_for("GET", PUT)
    assert fetch.query == {"service_id": large.offering.catalog_id}
    assert OperationCall.objects.filter(operation=op, method="GET", path__contains="last_operation").exists()
    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "keeps its previous settings" not in page and "Checked with the broker" in page
    assert alice_api.get(f"/api/v1/instances/{instance.pk}/").json()["plan"] == str(large.pk)


def test_a_failed_update_the_broker_did_not_apply_says_so(
    alice: Any, small: ServicePlan, direct: Broker, osb_broker: SampleBroker
) -> None:
    instance = ready(small, alice)
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    instance_update(instance=instance, parameters={"storage_gb": 30}, requested_by=alice)
    run_operations()
    op = Operation.objects.get(instance=instance, type=OpType.UPDATE)
    instance.refresh_from_db()
    assert instance.plan == small and "storage_gb" not in instance.parameters
    assert op.next_step.startswith("Checked with the broker after the failure: the instance kept its previous settings.")


def test_an_update_past_its_polling_limit_fetches_the_instance_too(
    alice: Any, small: ServicePlan, direct: Broker, osb_broker: SampleBroker
) -> None:
    instance = ready(small, alice)
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600
    instance_update(instance=instance, parameters={"storage_gb": 30}, requested_by=alice)
    op = step(Operation.objects.get(instance=instance, type=OpType.UPDATE))  # 202
    # The broker finishes, applying the change, but its last_operation still says "in progress" when the portal
    # reaches its polling limit
    for pending in osb_broker.operations.values():
        pending["duration"] = 0
    osb_broker.set_response("GET", PUT + "/last_operation", 200, {"state": "in progress"}, times=1)
    expire(op)
    op = step(op)  # the deadline: fetch what the broker holds instead of claiming anything
    assert op.phase == Phase.FETCH and op.state == OpState.IN_PROGRESS
    op = step(op)
    instance.refresh_from_db()
    assert op.state == OpState.FAILED and "maximum polling duration" in op.error
    assert instance.parameters["storage_gb"] == 30 and instance.state == InstanceState.READY
    assert "the new parameters" in op.next_step


def test_a_failed_update_of_a_service_whose_instances_cannot_be_fetched_is_an_unknown_outcome(
    alice: Any, osb_broker: SampleBroker, osb_url: str
) -> None:
    catalog = build_catalog(osb_broker.url)
    for service in catalog["services"]:
        service["instances_retrievable"] = False
    osb_broker.catalog = catalog
    broker = mirrored_broker(osb_broker.url, name="opaque")
    small = plan(broker, "postgresql", "standard-small")
    instance = ready(small, alice)
    osb_broker.async_mode = "always"
    osb_broker.async_outcome = "failed"
    osb_broker.failed_update_applies = True
    instance_update(instance=instance, parameters={"storage_gb": 30}, requested_by=alice)
    run_operations()
    op = Operation.objects.get(instance=instance, type=OpType.UPDATE)
    assert op.state == OpState.FAILED
    assert op.next_step.startswith("The outcome is unknown: the broker may have applied some or all of the change")
    assert "keeps its previous settings" not in op.next_step
    assert osb_broker.requests_for("GET", PUT) == []  # not retrievable: never fetched
    assert "The outcome is unknown" in signed_in(alice).get(instance.get_absolute_url()).content.decode()


# --- an unbind past its polling limit -------------------------------------------------------------------


def test_an_unbind_past_its_polling_limit_is_not_ready_and_its_credentials_are_not_shown(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    instance = ready(small, alice)
    binding = binding_create(instance=instance, name="app", requested_by=alice)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600
    binding_delete(binding=binding, requested_by=alice)
    op = step(Operation.objects.get(binding=binding, type=OpType.UNBIND))  # 202
    assert op.phase == Phase.POLL
    expire(op)
    op = step(op)

    binding.refresh_from_db()
    assert op.state == OpState.FAILED and "maximum polling duration" in op.error
    assert binding.state == BindingState.UNKNOWN and binding.get_state_display() == "Unbind outcome unknown"
    assert op.next_step.startswith("The outcome is unknown: the broker may have deleted this binding")
    credentials = alice_api.get(f"/api/v1/bindings/{binding.pk}/credentials/")
    assert credentials.status_code == 409 and "outcome is unknown" in credentials.json()["detail"]
    assert not AuditRecord.objects.filter(action="binding.credentials.reveal").exists()
    body = alice_api.get(f"/api/v1/bindings/{binding.pk}/").json()
    assert body["state"] == "unknown"
    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "Unbind outcome unknown" in page and "its credentials are not shown" in page

    # Unbinding again settles it: the broker had deleted it meanwhile (410 Gone is success)
    osb_broker.async_mode = "never"
    osb_broker.bindings.pop(str(binding.pk), None)
    binding_delete(binding=binding, requested_by=alice)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED
    assert ServiceBinding.objects.visible().filter(pk=binding.pk).count() == 0


# --- orphan mitigation keeps trying -------------------------------------------------------------------------


def failed_provision_with_cleanup(small: ServicePlan, alice: Any, osb_broker: SampleBroker) -> Operation:
    osb_broker.set_response("PUT", PUT, 500, {"description": "The broker's disk is full"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    step(Operation.objects.get(instance=instance, type=OpType.PROVISION))
    return Operation.objects.get(instance=instance, type=OpType.ORPHAN_MITIGATION)


def test_a_cleanup_keeps_trying_with_a_capped_backoff_until_the_broker_confirms(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    cleanup = failed_provision_with_cleanup(small, alice, osb_broker)
    osb_broker.set_response("DELETE", PUT, 503, {"description": "still broken"})
    delays = []
    for _ in range(9):
        cleanup = step(cleanup)
        assert cleanup.state == OpState.IN_PROGRESS
        delays.append(round((cleanup.next_poll_at - timezone.now()).total_seconds()))
    # 30 s doubling, capped at an hour; never given up
    assert delays == pytest.approx([30, 60, 120, 240, 480, 960, 1920, 3600, 3600], abs=2)
    assert cleanup.next_step.startswith("Cleaning up at the broker after a failed create, attempt 9; next attempt in 60 min.")
    body = alice_api.get(f"/api/v1/operations/{cleanup.pk}/").json()
    assert body["attempts"] == 9 and body["next_poll_at"] and body["state"] == "in_progress"
    page = signed_in(alice).get(cleanup.instance.get_absolute_url()).content.decode()
    assert "9 attempts so far; next at" in page

    osb_broker.clear_responses()
    cleanup = step(cleanup)
    assert cleanup.state == OpState.SUCCEEDED and len(osb_broker.requests_for("DELETE", PUT)) == 10


def test_a_cleanup_past_its_polling_limit_asks_again_instead_of_giving_up(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    cleanup = failed_provision_with_cleanup(small, alice, osb_broker)
    osb_broker.set_response("DELETE", PUT, 202, {"operation": "slow-delete"}, times=1)
    osb_broker.set_response("GET", PUT + "/last_operation", 200, {"state": "in progress"})
    cleanup = step(cleanup)
    assert cleanup.phase == Phase.POLL
    expire(cleanup)
    cleanup = step(cleanup)
    assert cleanup.state == OpState.IN_PROGRESS and cleanup.phase == Phase.SUBMIT
    assert "gave up" not in cleanup.next_step and "next attempt in" in cleanup.next_step
    osb_broker.clear_responses()
    cleanup = step(cleanup)  # the broker confirms: 410 Gone (it has nothing)
    assert cleanup.state == OpState.SUCCEEDED


def test_only_a_platform_admin_can_stop_a_cleanup(
    alice: Any, admin_user: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any, admin_api: Any
) -> None:
    cleanup = failed_provision_with_cleanup(small, alice, osb_broker)
    osb_broker.set_response("DELETE", PUT, 503, {"description": "still broken"})
    cleanup = step(cleanup)
    url = cleanup.instance.get_absolute_url()
    assert f'id="cancel-{cleanup.pk}"' not in signed_in(alice).get(url).content.decode()
    assert f'id="cancel-{cleanup.pk}"' in signed_in(admin_user).get(url).content.decode()
    refused = alice_api.post(f"/api/v1/operations/{cleanup.pk}/cancel/")
    assert refused.status_code == 403 and "platform admin" in refused.json()["detail"]

    response = admin_api.post(f"/api/v1/operations/{cleanup.pk}/cancel/")
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "failed" and body["error"] == "Cancelled by admin after 1 attempt(s)."
    assert "the broker may still hold this instance" in body["next_step"]
    assert AuditRecord.objects.filter(action="operation.cancel", target_id=str(cleanup.pk), actor=admin_user).exists()
    instance = ServiceInstance.objects.get(pk=cleanup.instance_id)
    assert instance.state == InstanceState.FAILED
    sent = len(osb_broker.requests)
    step(cleanup)
    assert len(osb_broker.requests) == sent  # stopped for good


def test_at_the_submission_deadline_an_attempt_the_broker_may_have_acted_on_is_cleaned_up(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    """Only refusals (422 ConcurrencyError, 429) and connections that never opened prove the broker did nothing;
    after an answer it may have acted on (here a 201 whose step crashed before it was saved) the spec's cleanup
    rules apply, and the operation cannot be cancelled as "not accepted"."""
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    op = Operation.objects.get(instance=instance)
    OperationCall.objects.create(operation=op, method="PUT", path=f"/v2/service_instances/{instance.pk}",
                                 status=201, request_id="r1", at=timezone.now())
    osb_broker.set_response("PUT", PUT, 422, BUSY)
    op = step(op)
    assert op.state == OpState.IN_PROGRESS
    response = alice_api.post(f"/api/v1/operations/{op.pk}/cancel/")
    assert response.status_code == 409 and "may have acted" in response.json()["detail"]
    expire(op)
    op = step(op)
    assert op.state == OpState.FAILED and "stopped retrying" in op.error
    assert Operation.objects.filter(type=OpType.ORPHAN_MITIGATION, parent=op).exists()
