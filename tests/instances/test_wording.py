"""What the portal says about an operation, found wrong with an independent broker (overview-broker): whose words are
"the broker's", which error names maintenance_info, whether "Next" is still true, and whether one answer mixes two
moments. The scriptable test broker plays the broker's part."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from brokers.models import Broker, CatalogSync, ServicePlan
from catalog_portal.db import read_snapshot
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.services.bindings import binding_create, binding_delete
from instances.services.instances import instance_deprovision, instance_provision
from instances.states import InstanceState, OpState, OpType
from teams.models import Team
from tests.conftest import signed_in
from tests.instances.helpers import plan, run_operations, step

pytestmark = [pytest.mark.usefixtures("broker_knobs")]

INSTANCE_PATH = r"/v2/service_instances/[^/]+"
BINDING_PATH = INSTANCE_PATH + r"/service_bindings/[^/]+"
MAINTENANCE_CONFLICT = {"error": "MaintenanceInfoConflict", "description": "maintenance_info.version mismatch"}


@pytest.fixture
def cache(direct: Broker) -> ServicePlan:
    return plan(direct, "redis-cache", "cache-free")


def ready(p: ServicePlan) -> ServiceInstance:
    instance = instance_provision(plan=p, name="db1", namespace="team-a")
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    return instance


def status_html(client: Client, instance: ServiceInstance) -> str:
    return client.get(reverse("instances:status", args=[instance.pk])).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [OpType.BIND, OpType.UNBIND, OpType.DEPROVISION])
def test_maintenance_info_conflict_to_a_request_without_maintenance_info_is_not_called_a_version_change(
    kind: str, cache: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready(cache)
    if kind == OpType.BIND:
        osb_broker.set_response("PUT", BINDING_PATH, 422, body=MAINTENANCE_CONFLICT)
        binding_create(instance=instance, name="app")
    elif kind == OpType.UNBIND:
        binding = binding_create(instance=instance, name="app")
        run_operations()
        osb_broker.set_response("DELETE", BINDING_PATH, 422, body=MAINTENANCE_CONFLICT)
        binding_delete(binding=binding)
    else:
        osb_broker.set_response("DELETE", INSTANCE_PATH, 422, body=MAINTENANCE_CONFLICT)
        instance_deprovision(instance=instance)
    syncs = CatalogSync.objects.count()
    op = step(Operation.objects.get(type=kind))
    assert op.state == OpState.FAILED
    assert "maintenance version changed" not in op.error and "catalog is being refreshed" not in op.error
    assert "carries no maintenance version" in op.error and "MaintenanceInfoConflict" in op.error
    assert CatalogSync.objects.count() == syncs  # no catalog refresh asked for


@pytest.mark.django_db
def test_the_portals_own_sentences_are_not_shown_as_the_brokers(cache: ServicePlan, osb_broker: SampleBroker,
                                                                  admin_user: Any) -> None:
    client = signed_in(admin_user)
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 3600.0
    instance = instance_provision(plan=cache, name="db1", namespace="team-a")
    op = step(Operation.objects.get(instance=instance))  # accepted (202)
    assert op.description == "" and op.next_step.startswith("The broker accepted the request")
    html = status_html(client, instance)
    assert "The broker says" not in html and "The broker accepted the request" in html

    # The broker's own words are: its last_operation description.
    osb_broker.async_seconds = 0.0
    for token in list(osb_broker.operations):
        osb_broker.operations[token]["duration"] = 0.0
    osb_broker.async_mode = "never"
    run_operations()
    instance.refresh_from_db()
    # A delete the broker answers 410: "no longer had it" is the portal's conclusion, not the broker's sentence.
    osb_broker.set_response("DELETE", INSTANCE_PATH, 410, body={})
    instance_deprovision(instance=instance)
    op = step(Operation.objects.get(instance=instance, type=OpType.DEPROVISION))
    assert op.state == OpState.SUCCEEDED and op.description == ""
    assert op.next_step == "The broker no longer had it. Nothing more to do."


@pytest.mark.django_db
def test_next_says_how_the_cleanup_ended_once_it_has(cache: ServicePlan, osb_broker: SampleBroker,
                                                     admin_user: Any) -> None:
    client = signed_in(admin_user)
    osb_broker.set_response("PUT", INSTANCE_PATH, 500, times=1, body={"description": "boom"})
    instance = instance_provision(plan=cache, name="db1", namespace="team-a")
    provision = step(Operation.objects.get(instance=instance, type=OpType.PROVISION))
    assert provision.state == OpState.FAILED and provision.next_step.startswith("Cleaning up at the broker")
    assert "Cleaning up at the broker after the failed create" in status_html(client, instance)

    cleanup = step(Operation.objects.get(instance=instance, type=OpType.ORPHAN_MITIGATION))
    assert cleanup.state == OpState.SUCCEEDED
    provision.refresh_from_db()
    assert provision.next_step == cleanup.next_step
    assert "Cleaned up at the broker. Delete this instance or provision a new one." in provision.next_step
    html = status_html(client, instance)
    assert "Cleaning up at the broker after the failed create" not in html
    assert "Delete this instance or provision a new one." in html


@pytest.mark.django_db(transaction=True)
def test_a_read_snapshot_does_not_see_a_commit_made_meanwhile_on_any_backend() -> None:
    """The API reads an instance and its operations inside `read_snapshot()`: a worker's commit between the two
    queries must not show (it did on SQLite: `state=provisioning` beside `last_operation.state=failed`)."""
    Team.objects.create(name="before")

    def commit_another() -> None:
        from django.db import connection

        Team.objects.create(name="meanwhile")
        connection.close()

    with read_snapshot():
        assert Team.objects.count() == 1
        writer = threading.Thread(target=commit_another)
        writer.start()
        writer.join(timeout=60)
        assert Team.objects.filter(name="meanwhile").exists() is False  # still the first query's moment
        assert Team.objects.count() == 1
    assert Team.objects.count() == 2


@pytest.mark.django_db
def test_the_instance_api_reads_its_body_in_one_snapshot(cache: ServicePlan, admin_api: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import instances.apis as apis

    instance = ready(cache)
    entered: list[bool] = []
    real = apis.read_snapshot

    def spy() -> Any:
        entered.append(True)
        return real()

    monkeypatch.setattr(apis, "read_snapshot", spy)
    assert admin_api.get(f"/api/v1/instances/{instance.pk}/").status_code == 200
    assert admin_api.get("/api/v1/instances/").status_code == 200
    assert len(entered) == 2
