"""Upgrades keep existing data: a database at an older migration, with rows in it, migrated forward.

Each test migrates the test database back to the state before a change, writes rows through the historical models
(as a deployment of that version would have them), migrates to the latest state and reads them through today's
models. The database is left at the latest state whatever happens.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(*targets: tuple[str, str | None]) -> Apps:
    """Migrate the test database to `targets` (the latest state if none) and return the models of every app as
    they are then (the applied migrations' state)."""
    executor = MigrationExecutor(connection)
    executor.migrate(list(targets) or executor.loader.graph.leaf_nodes())
    executor.loader.build_graph()
    return executor.loader.project_state(list(executor.loader.applied_migrations)).apps


@pytest.fixture
def back_to_latest() -> Iterator[None]:
    yield
    migrate()


# (app, None): none of the app's migrations applied, as before the app existed.
BEFORE_TEAMS_MOVED = (("teams", None), ("catalog_portal", "0002_teams"),
                      ("brokers", "0004_store_cache_revision_and_plan_index"))


def _old_plan(apps: Apps, broker: Any = None, **fields: Any) -> Any:
    """A plan in the database of an older version (`apps`), of `broker` or a new one."""
    broker = broker or apps.get_model("brokers", "Broker").objects.create(name="b", url="http://127.0.0.1:1")
    offering = apps.get_model("brokers", "ServiceOffering").objects.create(
        broker=broker, catalog_id="svc", name="svc", description="d", content_hash="x")
    return apps.get_model("brokers", "ServicePlan").objects.create(
        broker=broker, offering=offering, catalog_id="plan", name="plan", description="d", content_hash="x",
        **fields)


def test_teams_and_the_audit_log_move_to_the_teams_app_with_their_rows(back_to_latest: None) -> None:
    old = migrate(*BEFORE_TEAMS_MOVED)
    user = old.get_model("auth", "User").objects.create(username="alice")
    team = old.get_model("catalog_portal", "Team").objects.create(name="team-a")
    old.get_model("catalog_portal", "TeamNamespace").objects.create(team=team, namespace="team-a")
    old.get_model("catalog_portal", "Membership").objects.create(team=team, user=user, role="developer")
    record = old.get_model("catalog_portal", "AuditRecord").objects.create(
        actor=user, actor_name="alice", action="team.create", target_type="team", target_id=str(team.pk))
    plan = _old_plan(old, visibility="teams")
    plan.teams.add(team)
    # A permission given to a group before the move stays given (its content type moves with the model).
    content_type = old.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label="catalog_portal", model="team")[0]
    permission = old.get_model("auth", "Permission").objects.get_or_create(
        content_type=content_type, codename="change_team", defaults={"name": "Can change team"})[0]
    old.get_model("auth", "Group").objects.create(name="operators").permissions.add(permission)

    migrate()

    from django.contrib.auth.models import Group, User

    from brokers.models import ServicePlan
    from teams import access
    from teams.models import AuditRecord, Membership, Team, TeamNamespace

    assert Team._meta.db_table == "teams_team" and AuditRecord._meta.db_table == "teams_auditrecord"
    moved = Team.objects.get(pk=team.pk)
    assert moved.name == "team-a"
    assert list(TeamNamespace.objects.filter(team=moved).values_list("namespace", flat=True)) == ["team-a"]
    alice = User.objects.get(pk=user.pk)
    assert Membership.objects.get(team=moved, user=alice).role == "developer"
    assert access.namespaces_for(alice, "developer") == {"team-a"}
    assert AuditRecord.objects.get(pk=record.pk).actor == alice
    assert list(ServicePlan.objects.get(pk=plan.pk).teams.all()) == [moved]
    operators = Group.objects.get(name="operators")
    assert [(p.content_type.app_label, p.codename) for p in operators.permissions.all()] == [("teams", "change_team")]
    # New rows go to the renamed tables, and the plan's teams still point at them.
    other = Team.objects.create(name=f"team-{uuid.uuid4().hex[:6]}")
    ServicePlan.objects.get(pk=plan.pk).teams.add(other)
    assert set(ServicePlan.objects.get(pk=plan.pk).teams.all()) == {moved, other}


def test_stored_operation_requests_become_typed_requests_and_are_still_sent(
    back_to_latest: None, osb_broker: Any
) -> None:
    from django.utils import timezone

    from brokers.osb import BindRequest, DeprovisionRequest, ProvisionRequest, UnbindRequest, UpdateRequest
    from instances.models import Operation
    from tests.instances.helpers import mirrored_broker, plan, run_operations

    osb_broker.async_seconds = 0.0
    broker = mirrored_broker(osb_broker.url)
    p = plan(broker, "postgresql", "standard-small")
    ids = {"service_id": p.offering.catalog_id, "plan_id": p.catalog_id}
    context = {"platform": "kubernetes", "namespace": "team-a", "clusterid": "c", "instance_name": "db"}
    old = migrate(("instances", "0001_initial"))
    instance = old.get_model("instances", "ServiceInstance").objects.create(
        name="db", namespace="team-a", broker_id=broker.pk, plan_id=p.pk, context=context, state="provisioning")
    binding = old.get_model("instances", "ServiceBinding").objects.create(
        instance=instance, name="app", namespace="team-a", secret_name="app", context=context)
    operation = old.get_model("instances", "Operation")
    done = {"state": "succeeded", "instance": instance}
    # Exactly what the services and the engine stored before (the client's keyword arguments, then_delete inside).
    rows = {
        "update": operation.objects.create(type="update", **done, request={
            "service_id": ids["service_id"], "context": context, "parameters": {"storage_gb": 20},
            "plan_id": "other-plan", "maintenance_info": {"version": "2.0.0"},
            "previous_values": {**ids, "maintenance_info": {"version": "1.0.0"}}}),
        "deprovision": operation.objects.create(type="deprovision", **done, request=dict(ids)),
        "bind": operation.objects.create(type="bind", **done, binding=binding, request={
            **ids, "context": context, "bind_resource": {"app_guid": "team-a/app"}, "parameters": {},
            "accepts_incomplete": False}),
        "unbind": operation.objects.create(type="unbind", **done, binding=binding, request=dict(ids)),
        "cleanup": operation.objects.create(type="orphan_mitigation", **done, request={**ids, "then_delete": True}),
        "binding cleanup": operation.objects.create(type="orphan_mitigation", **done, binding=binding,
                                                    request=dict(ids)),
        # still to be sent: the engine must send it as it was meant
        "provision": operation.objects.create(
            type="provision", state="pending", instance=instance, next_poll_at=timezone.now(), request={
                **ids, "context": context, "organization_guid": "org", "space_guid": "space",
                "parameters": {"database_name": "orders"}}),
    }

    migrate()

    iid, bid = str(instance.pk), str(binding.pk)
    typed = {name: Operation.objects.get(pk=row.pk) for name, row in rows.items()}
    assert typed["update"].osb_request == UpdateRequest(
        instance_id=iid, service_id=ids["service_id"], plan_id="other-plan", context=context,
        parameters={"storage_gb": 20}, maintenance_version="2.0.0", previous_plan_id=p.catalog_id,
        previous_maintenance_version="1.0.0")
    assert typed["deprovision"].osb_request == DeprovisionRequest(instance_id=iid, **ids)
    assert typed["bind"].osb_request == BindRequest(
        instance_id=iid, binding_id=bid, **ids, context=context, bind_resource={"app_guid": "team-a/app"},
        parameters={}, accepts_incomplete=False)
    assert typed["unbind"].osb_request == UnbindRequest(instance_id=iid, binding_id=bid, **ids)
    assert typed["cleanup"].osb_request == DeprovisionRequest(instance_id=iid, **ids)
    assert typed["binding cleanup"].osb_request == UnbindRequest(instance_id=iid, binding_id=bid, **ids)
    assert [name for name, op in typed.items() if op.delete_on_success] == ["cleanup"]
    assert "then_delete" not in typed["cleanup"].request
    assert typed["provision"].osb_request == ProvisionRequest(
        instance_id=iid, **ids, context=context, organization_guid="org", space_guid="space",
        parameters={"database_name": "orders"})

    osb_broker.clear_requests()
    run_operations()
    [put] = osb_broker.requests_for("PUT", rf"/v2/service_instances/{iid}")
    assert put.json == {**ids, "context": context, "organization_guid": "org", "space_guid": "space",
                        "parameters": {"database_name": "orders"}}
    assert Operation.objects.get(pk=rows["provision"].pk).state == "succeeded"


def test_the_request_conversion_is_reversible(back_to_latest: None) -> None:
    old = migrate(("instances", "0001_initial"))
    broker = old.get_model("brokers", "Broker").objects.create(name="b", url="http://127.0.0.1:1")
    p = _old_plan(old, broker)
    instance = old.get_model("instances", "ServiceInstance").objects.create(
        name="db", namespace="team-a", broker=broker, plan=p, state="ready")
    before = {"service_id": "svc", "context": {"namespace": "team-a"}, "parameters": {"a": 1},
              "previous_values": {"service_id": "svc", "plan_id": "plan"}}
    cleanup_before = {"service_id": "svc", "plan_id": "plan", "then_delete": True}
    update = old.get_model("instances", "Operation").objects.create(
        type="update", state="failed", instance=instance, request=before)
    cleanup = old.get_model("instances", "Operation").objects.create(
        type="orphan_mitigation", state="failed", instance=instance, request=cleanup_before)

    migrate(("instances", "0002_operation_request_is_a_typed_osb_request"))
    back = migrate(("instances", "0001_initial"))

    rows = back.get_model("instances", "Operation").objects
    assert rows.get(pk=update.pk).request == before
    assert rows.get(pk=cleanup.pk).request == cleanup_before



def test_secret_parameters_stored_in_clear_are_sealed_and_still_sent(back_to_latest: None, osb_broker: Any) -> None:
    from django.utils import timezone

    from instances.models import Operation, ServiceInstance
    from instances.sealed import unseal
    from tests.instances.helpers import mirrored_broker, plan, run_operations

    osb_broker.async_seconds = 0.0
    broker = mirrored_broker(osb_broker.url)
    p = plan(broker, "status-page", "basic")
    ids = {"service_id": p.offering.catalog_id, "plan_id": p.catalog_id}
    context = {"platform": "kubernetes", "namespace": "team-a", "clusterid": "c", "instance_name": "db"}
    old = migrate(("instances", "0008_parameters_decode_any_nesting"))
    params = {"admin_password": "in-clear", "size": 1}
    instance = old.get_model("instances", "ServiceInstance").objects.create(
        name="db", namespace="team-a", broker_id=broker.pk, plan_id=p.pk, context=context, state="provisioning",
        parameters=params)
    op = old.get_model("instances", "Operation").objects.create(
        type="provision", state="pending", instance=instance, next_poll_at=timezone.now(), request={
            "format": 1, "kind": "provision", "instance_id": str(instance.pk), **ids, "context": context,
            "organization_guid": "org", "space_guid": "space", "parameters": params, "maintenance_version": None,
            "accepts_incomplete": True})

    migrate()

    stored = ServiceInstance.objects.get(pk=instance.pk).parameters
    request = Operation.objects.get(pk=op.pk).request
    assert "in-clear" not in str(stored) and "in-clear" not in str(request)
    assert unseal(stored) == params and unseal(request["parameters"]) == params
    osb_broker.clear_requests()
    run_operations()
    [put] = osb_broker.requests_for("PUT", rf"/v2/service_instances/{instance.pk}")
    assert put.json["parameters"] == params
