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


def _old_plan(apps: Apps, **fields: Any) -> Any:
    broker = apps.get_model("brokers", "Broker").objects.create(name="b", url="http://127.0.0.1:1")
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
