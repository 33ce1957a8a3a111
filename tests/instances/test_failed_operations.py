"""Failed operations as people meet them: a plain summary, Retry where the OSB spec allows it (one service for the
page and the API), Delete, no dashboard for an instance that is not ready, and an Activity that stays short
however long an operation polled."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, OperationCall, ServiceInstance
from instances.services.instances import instance_provision, instance_retry, instance_update, retry_refusal
from instances.states import InstanceState, OpState, OpType, Phase
from instances.timeline import group_calls
from teams.models import AuditRecord
from tests.conftest import signed_in
from tests.instances.helpers import plan, record_polls, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

PUT = r"/v2/service_instances/[^/]+"


@pytest.fixture
def small(broker: Broker) -> ServicePlan:
    return plan(broker, "postgresql", "standard-small")


def failed_provision(small: ServicePlan, alice: Any, osb_broker: SampleBroker, status: int = 500,
                     body: Any = None) -> ServiceInstance:
    osb_broker.set_response("PUT", PUT, status, body or {"description": "The broker's disk is full"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.FAILED
    return instance


def test_a_failed_provision_is_retried_under_a_new_id_once_the_cleanup_confirmed(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    failed = failed_provision(small, alice, osb_broker)  # 500: orphan mitigation ran (DELETE) and succeeded
    cleanup = Operation.objects.get(instance=failed, type=OpType.ORPHAN_MITIGATION)
    assert cleanup.state == OpState.SUCCEEDED and retry_refusal(failed) is None
    retried = instance_retry(instance=failed, requested_by=alice)
    run_operations()
    retried.refresh_from_db()
    failed.refresh_from_db()
    # A new instance id (the spec asks platforms not to reuse ids); the same name, plan and parameters
    assert retried.pk != failed.pk and retried.state == InstanceState.READY
    assert (retried.name, retried.namespace, retried.plan_id) == (failed.name, failed.namespace, failed.plan_id)
    assert failed.state == InstanceState.DELETED and failed.deleted_at
    puts = osb_broker.requests_for("PUT", PUT)
    assert [p.path.rsplit("/", 1)[1] for p in puts] == [str(failed.pk), str(retried.pk)]
    assert puts[1].json["parameters"] == puts[0].json["parameters"] == {"database_name": "orders"}
    assert AuditRecord.objects.filter(action="instance.retry", target_id=str(failed.pk)).exists()


def test_a_provision_whose_cleanup_did_not_finish_cannot_be_retried(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    failed = failed_provision(small, alice, osb_broker, status=400, body={"description": "Quota exceeded"})
    assert retry_refusal(failed) is None  # a 400: the broker created nothing, no cleanup needed
    Operation.objects.create(type=OpType.ORPHAN_MITIGATION, instance=failed, state=OpState.FAILED,
                             parent=Operation.objects.get(instance=failed, type=OpType.PROVISION),
                             phase=Phase.SUBMIT, error="gave up")
    assert "Delete this instance first" in retry_refusal(failed)
    with pytest.raises(Exception, match="Delete this instance first"):
        instance_retry(instance=failed, requested_by=alice)
    assert ServiceInstance.objects.count() == 1


def test_a_failed_update_is_sent_again_unless_the_broker_said_it_is_not_repeatable(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, broker: Broker
) -> None:
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    instance.refresh_from_db()
    osb_broker.set_response("PATCH", PUT, 503, {"description": "Try later"}, times=1)
    instance_update(instance=instance, parameters={"storage_gb": 30}, requested_by=alice)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY and retry_refusal(instance) is None
    again = instance_retry(instance=instance, requested_by=alice)
    assert again.pk == instance.pk and again.state == InstanceState.UPDATING
    run_operations()
    patches = osb_broker.requests_for("PATCH", PUT)
    assert len(patches) == 2 and patches[0].json == patches[1].json  # exactly the same request
    instance.refresh_from_db()
    assert instance.parameters["storage_gb"] == 30

    Operation.objects.filter(instance=instance, type=OpType.UPDATE).update(state=OpState.FAILED,
                                                                           update_repeatable=False)
    assert "would fail again" in retry_refusal(instance)


def test_retry_through_the_api_answers_the_new_instance_and_is_documented(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, alice_api: Any
) -> None:
    failed = failed_provision(small, alice, osb_broker)
    response = alice_api.post(f"/api/v1/instances/{failed.pk}/retry/")
    assert response.status_code == 202, response.content
    assert response.json()["id"] != str(failed.pk) and response.json()["name"] == "orders-db"
    again = alice_api.post(f"/api/v1/instances/{failed.pk}/retry/")  # the old one is deleted now
    assert again.status_code == 404
    new = response.json()["id"]
    busy = alice_api.post(f"/api/v1/instances/{new}/retry/")
    assert busy.status_code == 409 and "Wait until" in busy.json()["detail"]
    run_operations()
    nothing = alice_api.post(f"/api/v1/instances/{new}/retry/")
    assert nothing.status_code == 400 and "nothing to retry" in nothing.json()["detail"]

    schema = alice_api.get("/api/v1/schema/", {"format": "json"}).json()
    post = schema["paths"]["/api/v1/instances/{instance_id}/retry/"]["post"]
    assert set(post["responses"]) >= {"202", "400", "403", "404", "409"}
    assert "new instance id" in post["description"]


def test_the_page_of_a_failed_instance_says_it_plainly_and_offers_retry_and_delete(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    failed = failed_provision(small, alice, osb_broker, status=400, body={"description": "Quota exceeded"})
    ServiceInstance.objects.filter(pk=failed.pk).update(dashboard_url="https://dash.example.com/x")
    client = signed_in(alice)
    html = client.get(failed.get_absolute_url()).content.decode()
    happening = html.split('id="happening-title"')[1].split("</section>")[0]
    assert "Provisioning failed" in happening and happening.count("Quota exceeded") == 1  # said once
    assert "Error:" not in happening and "Orphan mitigation" not in html
    assert "Open dashboard" not in html  # only for a ready instance
    assert f'action="{reverse("instances:retry", args=[failed.pk])}"' in happening
    assert "Delete this instance" in happening
    response = client.post(reverse("instances:retry", args=[failed.pk]))
    new = ServiceInstance.objects.visible().get(name="orders-db")
    assert response.status_code == 302 and response["Location"] == new.get_absolute_url()
    old_page = client.get(failed.get_absolute_url()).content.decode()
    assert new.get_absolute_url() in old_page  # the deleted one points to its successor


def test_cleanup_is_called_what_it_is(alice: Any, small: ServicePlan, osb_broker: SampleBroker) -> None:
    failed = failed_provision(small, alice, osb_broker)
    html = signed_in(alice).get(failed.get_absolute_url()).content.decode()
    assert "Cleaning up at the broker" in html and "Orphan mitigation" not in html


def test_a_long_poll_is_one_row_and_finished_operations_are_folded(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = instance_provision(plan=small, name="slow-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    op = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    path = record_polls(op, 88)
    OperationCall.objects.create(operation=op, method="GET", path=path, status=503, duration_ms=9, request_id="x",
                                 at=timezone.now(), error="Service Unavailable")
    groups = group_calls(list(op.calls.order_by("at", "id")))
    counts = [(g.first.method, g.count, g.state) for g in groups]
    assert ("GET", 88, "in progress") in counts and counts[-1] == ("GET", 1, "")  # the failure stands alone
    html = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert '<span class="repeat-count">88 ×</span>' in html and "88 identical calls" in html
    assert re.search(rf'<details id="op-{op.pk}">', html)  # finished: folded


# --- refusals in the portal's frame -------------------------------------------------------------------------


def test_a_refused_action_renders_in_the_frame_with_the_role_and_who_grants_it(
    alice: Any, bob: Any, small: ServicePlan, osb_broker: SampleBroker, team_a: Any, django_user_model: Any
) -> None:
    from instances.services.bindings import binding_create
    from tests.conftest import join

    join(django_user_model.objects.create_user("dana", "d@example.com", "pw-dana-123"), team_a, "admin")
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    instance.refresh_from_db()
    binding = binding_create(instance=instance, name="app", requested_by=alice)
    run_operations()
    response = signed_in(bob).post(reverse("instances:binding-delete", args=[binding.pk]))
    html = response.content.decode()
    assert response.status_code == 403
    assert '<nav class="mainnav" aria-label="Main">' in html and "<main" in html  # the portal's frame
    assert "developer" in html and "<code>team-a</code>" in html
    assert "team admins of <strong>team-a</strong>" in html and "<strong>dana</strong>" in html


def test_a_form_without_a_valid_csrf_token_gets_a_page_in_the_frame(alice: Any) -> None:
    client = signed_in(alice, enforce_csrf_checks=True)
    response = client.post(reverse("account"))
    html = response.content.decode()
    assert response.status_code == 403 and "This form has expired" in html and "Nothing was changed" in html
    assert '<nav class="mainnav" aria-label="Main">' in html
    api = client.post("/api/v1/teams/", {"name": "x"}, content_type="application/json")
    assert api.status_code == 403 and api["Content-Type"].startswith("application/json")


def test_header_and_timeline_come_from_one_reading(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker finishing the deprovision between the page's reads (made to happen exactly there): the header
    does not say "Deprovisioning" above a finished timeline."""
    from instances import views
    from instances.services.instances import instance_deprovision

    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    instance.refresh_from_db()
    instance_deprovision(instance=instance, requested_by=alice)
    real = views.selectors.operation_list
    calls = []

    def worker_commits_meanwhile(**kwargs: Any) -> Any:
        if not calls:
            run_operations()  # the deprovision finishes: instance deleted, operation succeeded
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(views.selectors, "operation_list", worker_commits_meanwhile)
    html = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    header = html.split('class="inst-head"')[1].split("</header>")[0]
    assert "status-pill is-deleted" in header, header
    assert "Deprovisioning succeeded" in html and "Waiting for a worker" not in html
    assert len(calls) == 2  # read again once the instance was seen to change
