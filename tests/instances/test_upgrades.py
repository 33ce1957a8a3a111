"""Upgrades in bulk (issue 17): what is behind its plan's maintenance version, and batches that upgrade it with at
most `max_parallel` updates in flight (measured at the test broker), pausing after a failure, resumed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.utils import timezone

from brokers import services as broker_services
from brokers.models import Broker
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance, UpgradeBatch
from instances.services.instances import instance_provision
from instances.services.operations import operation_step
from instances.services.upgrades import upgrade_batch_advance
from instances.states import ACTIVE
from teams.models import AuditRecord
from tests.conftest import _token_client, join, signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

NEW = {"version": "1.3.0", "description": "PostgreSQL 16.4 and a kernel fix."}


def bump_version(osb_broker: SampleBroker, broker: Broker) -> None:
    """The broker ships a new maintenance version of every PostgreSQL plan; the portal relists."""
    catalog = copy.deepcopy(osb_broker.catalog)
    for service in catalog["services"]:
        for p in service["plans"]:
            if p.get("maintenance_info"):
                p["maintenance_info"] = dict(NEW)
    osb_broker.catalog = catalog
    sync = broker_services.catalog_sync(broker_id=broker.pk, force=True)
    assert sync is not None and not sync.error


@pytest.fixture
def behind(broker: Broker, osb_broker: SampleBroker, alice: Any) -> list[ServiceInstance]:
    """Five instances of standard-small at 1.2.0 in team-a, one in team-b; then the broker offers 1.3.0.
    Every operation is asynchronous, so an update stays in flight until the portal's poll hears it finished."""
    osb_broker.async_mode = "always"
    small = plan(broker, "postgresql", "standard-small")
    instances = [instance_provision(plan=small, name=f"db-{n}", namespace="team-a", requested_by=alice,
                                    parameters={"database_name": "orders"}) for n in range(5)]
    instances.append(instance_provision(plan=small, name="other", namespace="team-b",
                                        parameters={"database_name": "other"}))
    run_operations()
    bump_version(osb_broker, broker)
    osb_broker.clear_requests()
    return [ServiceInstance.objects.get(pk=i.pk) for i in instances]


def drive(batch_id: Any, *, rounds: int = 100) -> UpgradeBatch:
    """What the sweeper and the workers do, in-process: advance the batch, take one step of every operation."""
    for _ in range(rounds):
        batch = upgrade_batch_advance(batch_id=batch_id)
        active = list(Operation.objects.filter(state__in=ACTIVE))
        if batch.state in ("finished", "paused", "cancelled") and not active:
            return batch
        for op in active:
            Operation.objects.filter(pk=op.pk, claimed_until__isnull=True).update(next_poll_at=timezone.now())
            operation_step(operation_id=op.pk)
    raise AssertionError("the batch did not settle")


def patches(osb_broker: SampleBroker, instance: ServiceInstance) -> list[Any]:
    return osb_broker.requests_for("PATCH", rf"/v2/service_instances/{instance.pk}")


def test_what_is_behind_is_grouped_by_plan_for_admins(
    behind: list[ServiceInstance], admin_api: Any, alice_api: Any, django_user_model: Any, team_a: Any
) -> None:
    groups = admin_api.get("/api/v1/upgrades/").json()
    assert len(groups) == 1
    group = groups[0]
    assert group["plan"]["name"] == "standard-small" and group["version"] == "1.3.0"
    assert group["description"] == NEW["description"]
    assert {i["name"] for i in group["instances"]} == {"db-0", "db-1", "db-2", "db-3", "db-4", "other"}
    assert {i["version"] for i in group["instances"]} == {"1.2.0"}

    dave = join(django_user_model.objects.create_user("dave", "d@example.com", "dave-pass-123"), team_a, "admin")
    mine = _token_client(dave).get("/api/v1/upgrades/").json()
    assert {i["namespace"] for i in mine[0]["instances"]} == {"team-a"}  # a team admin: their namespaces
    assert alice_api.get("/api/v1/upgrades/").status_code == 403  # a developer: not theirs to do in bulk


def test_a_batch_keeps_max_parallel_updates_in_flight_at_the_broker(
    behind: list[ServiceInstance], admin_api: Any, osb_broker: SampleBroker
) -> None:
    team_a = [i for i in behind if i.namespace == "team-a"]
    response = admin_api.post("/api/v1/upgrades/", {"instances": [str(i.pk) for i in team_a], "max_parallel": 2},
                              format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "running" and body["counts"]["pending"] == 5

    batch = drive(body["id"])
    assert batch.state == "finished"
    assert osb_broker.peak_in_flight["update"] == 2  # never more than max_parallel at once, and really parallel
    for instance in team_a:
        sent = patches(osb_broker, instance)
        assert len(sent) == 1
        assert sent[0].json["maintenance_info"] == {"version": "1.3.0"}
        assert sent[0].json["previous_values"]["maintenance_info"] == {"version": "1.2.0"}
        instance.refresh_from_db()
        assert instance.maintenance_info["version"] == "1.3.0"
    assert patches(osb_broker, behind[-1]) == []  # team-b's was not asked for

    report = admin_api.get(f"/api/v1/upgrades/{batch.pk}/").json()
    assert report["state"] == "finished" and report["counts"]["succeeded"] == 5
    assert all(item["operation"]["type"] == "update" and item["operation"]["state"] == "succeeded"
               for item in report["items"])
    left = admin_api.get("/api/v1/upgrades/").json()
    assert [i["name"] for group in left for i in group["instances"]] == ["other"]  # only team-b's is behind


def test_a_failure_pauses_the_batch_and_resume_goes_on(
    behind: list[ServiceInstance], admin_api: Any, osb_broker: SampleBroker, settings: Any
) -> None:
    settings.UPGRADE_BATCH_MAX_FAILURES = 1
    team_a = [i for i in behind if i.namespace == "team-a"]
    osb_broker.set_response("PATCH", rf"/v2/service_instances/{team_a[1].pk}", 500,
                            {"description": "The upgrade broke the replica"}, times=1)
    small = team_a[0].plan
    response = admin_api.post("/api/v1/upgrades/", {"plan": str(small.pk), "max_parallel": 1}, format="json")
    assert response.status_code == 202, response.content
    batch_id = response.json()["id"]

    batch = drive(batch_id)
    assert batch.state == "paused" and "1 failed" in batch.pause_reason
    report = admin_api.get(f"/api/v1/upgrades/{batch_id}/").json()
    states = {item["instance_name"]: item["state"] for item in report["items"]}
    assert states["team-a/db-0"] == "succeeded" and states["team-a/db-1"] == "failed"
    assert [s for name, s in states.items() if name not in ("team-a/db-0", "team-a/db-1")] == ["pending"] * 4
    failed = next(item for item in report["items"] if item["state"] == "failed")
    assert "replica" in failed["error"] and failed["operation"]["state"] == "failed"
    assert all(patches(osb_broker, i) == [] for i in team_a[2:])  # nothing more started while paused

    resumed = admin_api.post(f"/api/v1/upgrades/{batch_id}/resume/", {}, format="json")
    assert resumed.status_code == 200 and resumed.json()["state"] == "running"
    batch = drive(batch_id)
    assert batch.state == "finished"
    counts = admin_api.get(f"/api/v1/upgrades/{batch_id}/").json()["counts"]
    assert counts["succeeded"] == 5 and counts["failed"] == 1
    assert admin_api.post(f"/api/v1/upgrades/{batch_id}/resume/", {}, format="json").status_code == 409
    assert {r.action for r in AuditRecord.objects.filter(action__startswith="upgrade.")} == {
        "upgrade.start", "upgrade.resume"}


def test_cancel_starts_nothing_more(behind: list[ServiceInstance], admin_api: Any, osb_broker: SampleBroker) -> None:
    team_a = [i for i in behind if i.namespace == "team-a"]
    batch_id = admin_api.post("/api/v1/upgrades/", {"instances": [str(i.pk) for i in team_a], "max_parallel": 1},
                              format="json").json()["id"]
    upgrade_batch_advance(batch_id=batch_id)  # the first upgrade starts
    cancelled = admin_api.post(f"/api/v1/upgrades/{batch_id}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    batch = drive(batch_id)
    assert batch.state == "cancelled"
    counts = admin_api.get(f"/api/v1/upgrades/{batch_id}/").json()["counts"]
    assert counts == {"pending": 0, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 4}
    assert sum(len(patches(osb_broker, i)) for i in team_a) == 1


def test_the_upgrades_pages(behind: list[ServiceInstance], admin_user: Any) -> None:
    client = signed_in(admin_user)
    page = client.get("/upgrades/").content.decode()
    assert "v1.3.0" in page and NEW["description"] in page and "db-3" in page
    small = behind[0].plan
    response = client.post("/upgrades/", {"plan": str(small.pk), "max_parallel": "3"})
    assert response.status_code == 302
    batch = UpgradeBatch.objects.get()
    assert response["Location"] == batch.get_absolute_url() and batch.max_parallel == 3
    detail = client.get(batch.get_absolute_url()).content.decode()
    assert 'hx-trigger="every 2s"' in detail and "team-b/other" in detail
    drive(batch.pk)
    status = client.get(f"/upgrades/{batch.pk}/status/")
    assert status.status_code == 286 and "6 succeeded" in status.content.decode()
    admin_page = client.get(f"/admin/instances/upgradebatch/{batch.pk}/change/")
    assert admin_page.status_code == 200 and "team-a/db-0" in admin_page.content.decode()


def test_the_upgrade_endpoints_are_in_the_openapi_document(admin_api: Any) -> None:
    schema = admin_api.get("/api/v1/schema/", {"format": "json"}).json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/upgrades/"])
    assert "get" in paths["/api/v1/upgrades/{batch_id}/"]
    assert "post" in paths["/api/v1/upgrades/{batch_id}/resume/"]
    assert "post" in paths["/api/v1/upgrades/{batch_id}/cancel/"]
    components = schema["components"]["schemas"]
    assert {"UpgradeBatch", "UpgradeBatchCreateRequest", "UpgradeAvailable", "UpgradeItem"} <= set(components)


def test_a_team_admin_sees_only_batches_they_started(
    behind: list[ServiceInstance], admin_api: Any, django_user_model: Any, team_a: Any
) -> None:
    batch_id = admin_api.post("/api/v1/upgrades/", {"plan": str(behind[0].plan.pk)}, format="json").json()["id"]
    dave = join(django_user_model.objects.create_user("dave", "d@example.com", "dave-pass-123"), team_a, "admin")
    assert _token_client(dave).get(f"/api/v1/upgrades/{batch_id}/").status_code == 404
