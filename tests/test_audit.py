"""The audit log: every audited action leaves exactly one record with the right actor, target, address and
request id; none holds a secret; platform admins browse and filter it (API, page, admin)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from brokers.services import catalog_sync, catalog_sync_due
from teams.models import AuditRecord
from tests.conftest import BROKER_PASSWORD, BROKER_USER, alias_url, signed_in
from tests.instances.helpers import run_operations

NEW_USER_PASSWORD = "correct-horse-battery-9"


class Log:
    """Asserts that a step adds exactly one audit record, and what it says."""

    def __init__(self) -> None:
        self.seen = set(AuditRecord.objects.values_list("pk", flat=True))

    def one(self, step: Callable[[], Any], *, action: str, actor: Any, target_id: Any = None,
            request_id: str | None = None) -> tuple[Any, AuditRecord]:
        result = step()
        new = list(AuditRecord.objects.exclude(pk__in=self.seen))
        self.seen.update(r.pk for r in new)
        assert [r.action for r in new] == [action], [(r.action, r.summary) for r in new]
        [record] = new
        assert record.actor == actor and record.actor_name == (actor.get_username() if actor else "")
        if target_id is not None:
            assert record.target_id == str(target_id)
        if actor is not None:  # a person acted through an HTTP request: where from, and which request
            assert record.ip == "127.0.0.1"
            assert record.request_id
        if request_id is not None:
            assert record.request_id == request_id
        assert record.summary
        return result, record


def _ok(response: Any, status: int) -> Any:
    assert response.status_code == status, response.content[:500]
    return response.json() if response.content else None


@pytest.fixture
def admin_api(admin_user: Any) -> APIClient:
    """A session-authenticated admin (the audit must work for the browser's session, not only tokens)."""
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_every_audited_action_leaves_exactly_one_record_and_no_secret(
    osb_url: str, osb_broker: Any, admin_user: Any, admin_api: APIClient, alice: Any, alice_api: APIClient,
    team_a: Any, team_b: Any, bob: Any,
) -> None:
    log = Log()
    body = {"name": "audited", "url": osb_url,
            "auth": {"type": "basic", "username": BROKER_USER, "password": BROKER_PASSWORD}}
    broker, _ = log.one(lambda: _ok(admin_api.post("/api/v1/brokers/", body, format="json",
                                                   HTTP_X_REQUEST_ID="register-1"), 201),
                        action="broker.register", actor=admin_user, request_id="register-1")
    log.one(lambda: _ok(admin_api.patch(f"/api/v1/brokers/{broker['id']}/", {"relist_interval_seconds": 600},
                                        format="json"), 200),
            action="broker.update", actor=admin_user, target_id=broker["id"])
    # The portal's own sync (the worker, after registration): actor null.
    log.one(lambda: catalog_sync(broker_id=broker["id"], force=True), action="broker.catalog.sync", actor=None,
            target_id=broker["id"])
    log.one(lambda: _ok(admin_api.post(f"/api/v1/brokers/{broker['id']}/sync/"), 202),
            action="broker.sync", actor=admin_user, target_id=broker["id"])
    assert catalog_sync_due() == [broker["id"]]
    catalog_sync(broker_id=broker["id"])  # identical catalog: nothing changed, nothing recorded
    assert not AuditRecord.objects.exclude(pk__in=log.seen).exists()

    plans = _ok(alice_api.get("/api/v1/plans/", {"page_size": 500}), 200)["results"]
    cache = next(p for p in plans if p["name"] == "cache-free")
    bigger = next(p for p in plans if p["name"] == "cache-1gb")
    instance, _ = log.one(lambda: _ok(alice_api.post("/api/v1/instances/", {
        "name": "db", "namespace": "team-a", "plan": cache["id"], "parameters": {}}, format="json"), 202),
        action="instance.create", actor=alice)
    run_operations()
    log.one(lambda: _ok(alice_api.patch(f"/api/v1/instances/{instance['id']}/", {"plan": bigger["id"]},
                                        format="json"), 202),
            action="instance.update", actor=alice, target_id=instance["id"])
    run_operations()
    binding, _ = log.one(lambda: _ok(alice_api.post("/api/v1/bindings/", {"instance": instance["id"], "name": "app"},
                                                    format="json"), 202),
                         action="binding.create", actor=alice)
    run_operations()
    revealed, record = log.one(lambda: _ok(alice_api.get(f"/api/v1/bindings/{binding['id']}/credentials/"), 200),
                               action="binding.credentials.reveal", actor=alice, target_id=binding["id"])
    assert record.target_type == "servicebinding"
    log.one(lambda: _ok(admin_api.get(f"/api/v1/bindings/{binding['id']}/credentials/"), 200),
            action="binding.credentials.reveal", actor=admin_user, target_id=binding["id"])
    log.one(lambda: _ok(alice_api.delete(f"/api/v1/bindings/{binding['id']}/"), 202),
            action="binding.delete", actor=alice, target_id=binding["id"])
    run_operations()
    log.one(lambda: _ok(alice_api.delete(f"/api/v1/instances/{instance['id']}/"), 202),
            action="instance.delete", actor=alice, target_id=instance["id"])
    run_operations()

    team, _ = log.one(lambda: _ok(admin_api.post("/api/v1/teams/", {"name": "team-c", "namespaces": ["team-c"]},
                                                 format="json"), 201),
                      action="team.create", actor=admin_user)
    log.one(lambda: _ok(admin_api.patch(f"/api/v1/teams/{team['id']}/", {"namespaces": ["team-c", "team-c2"]},
                                        format="json"), 200),
            action="team.update", actor=admin_user, target_id=team["id"])
    log.one(lambda: _ok(admin_api.post(f"/api/v1/teams/{team['id']}/members/", {"username": "bob", "role": "viewer"},
                                       format="json"), 201),
            action="team.member.add", actor=admin_user, target_id=team["id"])
    log.one(lambda: _ok(admin_api.post(f"/api/v1/teams/{team['id']}/members/", {"username": "bob", "role": "admin"},
                                       format="json"), 200),
            action="team.member.role", actor=admin_user, target_id=team["id"])
    bob_api = APIClient()
    bob_api.force_authenticate(bob)  # now a team admin of team-c: manages its members
    log.one(lambda: _ok(bob_api.post(f"/api/v1/teams/{team['id']}/members/", {"username": "alice", "role": "viewer"},
                                     format="json"), 201),
            action="team.member.add", actor=bob, target_id=team["id"])
    log.one(lambda: _ok(bob_api.delete(f"/api/v1/teams/{team['id']}/members/alice/"), 204),
            action="team.member.remove", actor=bob, target_id=team["id"])
    log.one(lambda: _ok(admin_api.patch(f"/api/v1/plans/{cache['id']}/", {"visibility": "teams",
                                                                         "teams": [str(team_b.pk)]},
                                        format="json"), 200),
            action="plan.visibility", actor=admin_user, target_id=cache["id"])
    log.one(lambda: _ok(admin_api.delete(f"/api/v1/teams/{team['id']}/"), 204),
            action="team.delete", actor=admin_user, target_id=team["id"])
    log.one(lambda: _ok(admin_api.post("/api/v1/users/", {"username": "dave", "password": NEW_USER_PASSWORD},
                                       format="json"), 201),
            action="user.create", actor=admin_user)
    spare, _ = log.one(lambda: _ok(admin_api.post("/api/v1/brokers/", {"name": "spare", "url": alias_url(osb_url)},
                                                  format="json"), 201),
                       action="broker.register", actor=admin_user)
    log.one(lambda: _ok(admin_api.delete(f"/api/v1/brokers/{spare['id']}/"), 204),
            action="broker.remove", actor=admin_user, target_id=spare["id"])

    # Refusals change nothing and record nothing.
    assert alice_api.post("/api/v1/teams/", {"name": "x"}, format="json").status_code == 403
    assert not AuditRecord.objects.exclude(pk__in=log.seen).exists()

    # No record holds a secret: the broker's password, the binding's credentials, a new user's password.
    secrets = [BROKER_PASSWORD, NEW_USER_PASSWORD]
    secrets += [str(v) for v in revealed["credentials"].values() if isinstance(v, str) and len(v) >= 6
                and v not in ("localhost", "127.0.0.1")]
    assert revealed["credentials"].get("password") in secrets
    text = "\n".join(f"{r.actor_name} {r.action} {r.target_type} {r.target_id} {r.summary} {r.request_id} {r}"
                     for r in AuditRecord.objects.all())
    for secret in secrets:
        assert secret not in text
    listed = _ok(admin_api.get("/api/v1/audit/", {"page_size": 500}), 200)
    assert listed["count"] == AuditRecord.objects.count() >= 20
    for secret in secrets:
        assert secret not in str(listed)


def test_the_request_id_is_echoed_and_recorded(osb_url: str, admin_user: Any, admin_api: APIClient) -> None:
    body = {"name": "b1", "url": osb_url}
    sent = admin_api.post("/api/v1/brokers/", body, format="json", HTTP_X_REQUEST_ID="ci-run-7")
    assert sent["X-Request-ID"] == "ci-run-7"
    assert AuditRecord.objects.get(action="broker.register").request_id == "ci-run-7"
    generated = admin_api.post("/api/v1/brokers/", {**body, "name": "b2", "url": alias_url(osb_url)}, format="json")
    assert generated["X-Request-ID"] and generated["X-Request-ID"] != "ci-run-7"
    record = AuditRecord.objects.get(action="broker.register", summary__contains="'b2'")
    assert record.request_id == generated["X-Request-ID"]
    # Nonsense (too long, spaces, control characters) is replaced, not echoed.
    odd = admin_api.get("/api/v1/brokers/", HTTP_X_REQUEST_ID="a b\tc" + "x" * 200)
    assert odd["X-Request-ID"] and " " not in odd["X-Request-ID"] and len(odd["X-Request-ID"]) <= 100


def _record(action: str, actor: Any, target: str, at: Any) -> AuditRecord:
    record = AuditRecord.objects.create(action=action, actor=actor, actor_name=actor.username if actor else "",
                                        target_type=target.split(":")[0], target_id=target.split(":")[1],
                                        summary=f"{action} {target}")
    AuditRecord.objects.filter(pk=record.pk).update(at=at)
    return record


@pytest.fixture
def records(admin_user: Any, alice: Any) -> dict[str, AuditRecord]:
    now = timezone.now()
    return {
        "old": _record("instance.create", alice, "serviceinstance:i1", now - timedelta(days=10)),
        "update": _record("instance.update", alice, "serviceinstance:i1", now - timedelta(days=2)),
        "reveal": _record("binding.credentials.reveal", admin_user, "servicebinding:b1", now - timedelta(hours=1)),
        "sync": _record("broker.catalog.sync", None, "broker:k1", now),
    }


@pytest.mark.parametrize(("query", "expected"), [
    ({}, {"old", "update", "reveal", "sync"}),
    ({"actor": "alice"}, {"old", "update"}),
    ({"actor": "admin"}, {"reveal"}),
    ({"actor": "-"}, {"sync"}),
    ({"action": "instance"}, {"old", "update"}),
    ({"action": "instance.update"}, {"update"}),
    ({"action": "binding.credentials.reveal"}, {"reveal"}),
    ({"action": "inst"}, set()),
    ({"target": "i1"}, {"old", "update"}),
    ({"target": "servicebinding:b1"}, {"reveal"}),
    ({"target": "serviceinstance:b1"}, set()),
    ({"since": "{days_ago_3}"}, {"update", "reveal", "sync"}),
    ({"until": "{days_ago_3}"}, {"old"}),
    ({"since": "{days_ago_3}", "until": "{hours_ago_2}", "actor": "alice"}, {"update"}),
])
def test_audit_api_filters(admin_api: APIClient, records: dict[str, AuditRecord], query: dict[str, str],
                           expected: set[str]) -> None:
    now = timezone.now()
    moments = {"days_ago_3": (now - timedelta(days=3)).isoformat(), "hours_ago_2": (now - timedelta(hours=2)).isoformat()}
    query = {key: value.format(**moments) for key, value in query.items()}
    body = _ok(admin_api.get("/api/v1/audit/", query), 200)
    by_id = {str(r.pk): name for name, r in records.items()}
    assert {by_id[row["id"]] for row in body["results"]} == expected
    if body["results"]:
        row = body["results"][0]
        assert set(row) == {"id", "at", "actor", "action", "target_type", "target_id", "summary", "ip", "request_id"}


def test_audit_api_is_for_platform_admins(admin_api: APIClient, alice_api: APIClient, records: Any) -> None:
    assert _ok(admin_api.get("/api/v1/audit/"), 200)["results"][0]["actor"] is None  # newest: the portal's sync
    refused = alice_api.get("/api/v1/audit/")
    assert refused.status_code == 403 and refused.json()["detail"]
    assert APIClient().get("/api/v1/audit/").status_code == 401
    bad = admin_api.get("/api/v1/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["since"]
    assert admin_api.get("/api/v1/audit/", {"since": "2020-01-01", "until": "2020-01-02"}).json()["count"] == 0


def test_audit_page_and_admin(admin_user: Any, alice: Any, records: dict[str, AuditRecord]) -> None:
    client = signed_in(admin_user)
    html = client.get("/audit/").content.decode()
    assert "binding.credentials.reveal" in html and "instance.update" in html and "broker.catalog.sync" in html
    html = client.get("/audit/", {"action": "instance"}).content.decode()
    assert "instance.update" in html and "binding.credentials.reveal" not in html
    assert client.get("/audit/", {"since": "nonsense"}).status_code == 422
    admin_page = client.get("/admin/teams/auditrecord/").content.decode()
    assert "binding.credentials.reveal" in admin_page
    record = records["reveal"]
    assert client.get(f"/admin/teams/auditrecord/{record.pk}/change/").status_code == 200
    assert client.post(f"/admin/teams/auditrecord/{record.pk}/delete/").status_code == 403
    other = signed_in(alice)
    assert other.get("/audit/").status_code == 404


def test_admin_bookmarks_from_before_the_teams_app_still_work(admin_user: Any) -> None:
    client = signed_in(admin_user)
    response = client.get("/admin/catalog_portal/auditrecord/?action=team.create")
    assert response.status_code == 301 and response["Location"] == "/admin/teams/auditrecord/?action=team.create"
    assert client.get(response["Location"]).status_code == 200


def test_changes_made_in_the_ui_and_the_admin_are_audited(admin_user: Any, alice: Any, bob: Any, team_a: Any) -> None:
    client = signed_in(admin_user)
    response = client.post(f"/teams/{team_a.pk}/", {"action": "set_role", "member-username": "bob",
                                                    "member-role": "developer"}, HTTP_X_REQUEST_ID="ui-1")
    assert response.status_code == 302
    record = AuditRecord.objects.get(action="team.member.role")
    assert record.actor == admin_user and record.request_id == "ui-1" and "bob" in record.summary
    response = client.post("/admin/teams/team/add/", {
        "name": "team-z",
        "namespaces-TOTAL_FORMS": "1", "namespaces-INITIAL_FORMS": "0", "namespaces-0-namespace": "team-z",
        "memberships-TOTAL_FORMS": "1", "memberships-INITIAL_FORMS": "0", "memberships-0-user": str(alice.pk),
        "memberships-0-role": "admin",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    actions = sorted(AuditRecord.objects.filter(actor=admin_user).exclude(action="team.member.role")
                     .values_list("action", flat=True))
    assert actions == ["team.create", "team.member.add", "team.update"]
    from teams.models import Team

    team = Team.objects.get(name="team-z")
    assert [ns.namespace for ns in team.namespaces.all()] == ["team-z"]
    assert team.memberships.get().user == alice
