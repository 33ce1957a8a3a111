"""The persona matrix: every page and API endpoint lets each persona do exactly what the rules say.

- admin: a platform admin (is_staff): sees and does everything;
- alice: developer in team A (namespace team-a); bob: viewer in team A; carol: developer in team B (team-b).
Objects of other teams are 404; a viewer's writes are 403; lists hold only what the persona may see; a plan
shown only to team B (the status page's only plan) is absent for team A, and so is its service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from brokers.models import Broker, ServicePlan
from brokers.services import plan_set_visibility
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create
from instances.services.instances import instance_provision
from tests.conftest import _token_client, signed_in
from tests.instances.helpers import mirrored_broker, plan, run_operations

PERSONAS = ("admin", "alice", "bob", "carol")


@dataclass
class World:
    broker: Broker
    cache: ServicePlan
    bigger: ServicePlan
    hidden: ServicePlan
    a: ServiceInstance
    b: ServiceInstance
    ba: ServiceBinding
    bb: ServiceBinding
    team_a: Any
    team_b: Any
    users: dict[str, Any]
    api: dict[str, APIClient] = field(default_factory=dict)
    web: dict[str, Client] = field(default_factory=dict)

    def ids(self) -> dict[str, str]:
        return {"a": str(self.a.pk), "b": str(self.b.pk), "ba": str(self.ba.pk), "bb": str(self.bb.pk),
                "hidden": str(self.hidden.pk), "hidden_service": str(self.hidden.offering_id),
                "cache": str(self.cache.pk), "bigger": str(self.bigger.pk), "team_a": str(self.team_a.pk),
                "team_b": str(self.team_b.pk), "broker": str(self.broker.pk),
                "op_a": str(Operation.objects.filter(instance=self.a).values_list("pk", flat=True).first()),
                "op_b": str(Operation.objects.filter(instance=self.b).values_list("pk", flat=True).first())}


def _ready(p: ServicePlan, user: Any, name: str, namespace: str) -> ServiceInstance:
    instance = instance_provision(plan=p, name=name, namespace=namespace, parameters={}, requested_by=user)
    run_operations()
    instance.refresh_from_db()
    assert instance.state == "ready"
    return instance


def _bound(instance: ServiceInstance, user: Any, name: str) -> ServiceBinding:
    binding = binding_create(instance=instance, name=name, requested_by=user)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == "ready"
    return binding


@pytest.fixture
def world(osb_url: str, admin_user: Any, alice: Any, bob: Any, carol: Any, team_a: Any, team_b: Any) -> World:
    broker = mirrored_broker(osb_url)
    cache, bigger = plan(broker, "redis-cache", "cache-free"), plan(broker, "redis-cache", "cache-1gb")
    hidden = plan(broker, "status-page", "basic")
    plan_set_visibility(plan=hidden, visibility="teams", teams=[team_b])
    a, b = _ready(cache, alice, "cache-a", "team-a"), _ready(cache, carol, "cache-b", "team-b")
    users = {"admin": admin_user, "alice": alice, "bob": bob, "carol": carol}
    w = World(broker=broker, cache=cache, bigger=bigger, hidden=hidden, a=a, b=b, ba=_bound(a, alice, "app-a"),
              bb=_bound(b, carol, "app-b"), team_a=team_a, team_b=team_b, users=users)
    for name, user in users.items():
        w.api[name] = _token_client(user)
        w.web[name] = signed_in(user)
    return w


def _fill(template: Any, ids: dict[str, str]) -> Any:
    if isinstance(template, str):
        return template.format(**ids)
    if isinstance(template, dict):
        return {key: _fill(value, ids) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, ids) for value in template]
    return template


def _ids_in(body: dict[str, Any], key: str = "id") -> set[str]:
    return {str(row[key]) for row in body["results"]}


# --- reads: status and what each persona sees ------------------------------------------------------------

# (url, {persona: status}); lists are checked separately, by content.
API_READS = [
    ("/api/v1/instances/{a}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/api/v1/instances/{b}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/instances/{a}/operations/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/api/v1/bindings/{ba}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/api/v1/bindings/{bb}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/bindings/{ba}/credentials/", {"admin": 200, "alice": 200, "bob": 403, "carol": 404}),
    ("/api/v1/bindings/{bb}/credentials/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/operations/{op_a}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/api/v1/operations/{op_b}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/plans/{hidden}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/plans/{cache}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 200}),
    ("/api/v1/services/{hidden_service}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/teams/{team_a}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/api/v1/teams/{team_b}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/api/v1/audit/", {"admin": 200, "alice": 403, "bob": 403, "carol": 403}),
    ("/api/v1/brokers/", {"admin": 200, "alice": 200, "bob": 200, "carol": 200}),
    ("/api/v1/brokers/{broker}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 200}),
]


@pytest.mark.parametrize(("url", "expected"), API_READS, ids=[case[0] for case in API_READS])
def test_api_reads(world: World, url: str, expected: dict[str, int]) -> None:
    ids = world.ids()
    for persona in PERSONAS:
        response = world.api[persona].get(_fill(url, ids))
        assert response.status_code == expected[persona], (persona, response.content[:300])
        assert response["Content-Type"].startswith("application/json")
        if response.status_code == 404:
            body = response.content.decode()
            assert ids["a"] not in body and ids["b"] not in body  # a 404 says nothing about the object


# (url, key of the id in each row, {persona: the ids (names in ids()) in the list})
API_LISTS = [
    ("/api/v1/instances/", "id", {"admin": {"a", "b"}, "alice": {"a"}, "bob": {"a"}, "carol": {"b"}}),
    ("/api/v1/bindings/", "id", {"admin": {"ba", "bb"}, "alice": {"ba"}, "bob": {"ba"}, "carol": {"bb"}}),
    ("/api/v1/operations/", "instance", {"admin": {"a", "b"}, "alice": {"a"}, "bob": {"a"}, "carol": {"b"}}),
    ("/api/v1/teams/", "id", {"admin": {"team_a", "team_b"}, "alice": {"team_a"}, "bob": {"team_a"},
                              "carol": {"team_b"}}),
]


@pytest.mark.parametrize(("url", "key", "expected"), API_LISTS, ids=[case[0] for case in API_LISTS])
def test_api_lists_hold_only_what_each_persona_may_see(world: World, url: str, key: str,
                                                       expected: dict[str, set[str]]) -> None:
    ids = world.ids()
    for persona in PERSONAS:
        response = world.api[persona].get(url, {"page_size": 500})
        assert response.status_code == 200
        assert _ids_in(response.json(), key) == {ids[name] for name in expected[persona]}, persona


def test_hidden_plans_and_their_service_are_absent_from_the_catalog_api(world: World) -> None:
    ids = world.ids()
    for persona in PERSONAS:
        sees = persona in ("admin", "carol")
        plans = _ids_in(world.api[persona].get("/api/v1/plans/", {"page_size": 500}).json())
        assert (ids["hidden"] in plans) is sees, persona
        assert ids["cache"] in plans
        services = world.api[persona].get("/api/v1/services/", {"page_size": 500}).json()
        assert (ids["hidden_service"] in _ids_in(services)) is sees, persona
        by_service = world.api[persona].get("/api/v1/plans/", {"service": ids["hidden_service"]}).json()
        assert by_service["count"] == (1 if sees else 0)
    body = world.api["admin"].get(f"/api/v1/plans/{ids['hidden']}/").json()
    assert body["visibility"] == "teams" and body["teams"] == [ids["team_b"]]
    assert world.api["alice"].get(f"/api/v1/plans/{ids['cache']}/").json()["visibility"] == "public"


# --- writes: each persona may do exactly what the rules say -----------------------------------------------

# (method, url, body, [(persona, expected status), ...]) in order: the refusals first, then one who may.
API_WRITES: list[tuple[str, str, Any, list[tuple[str, int]]]] = [
    ("post", "/api/v1/instances/", {"name": "new", "namespace": "team-a", "plan": "{cache}"},
     [("bob", 403), ("carol", 403), ("alice", 202)]),
    ("post", "/api/v1/instances/", {"name": "new", "namespace": "team-b", "plan": "{cache}"},
     [("alice", 403), ("bob", 403), ("carol", 202)]),
    ("post", "/api/v1/instances/", {"name": "new", "namespace": "nobodys", "plan": "{cache}"},
     [("alice", 403), ("carol", 403), ("admin", 202)]),
    ("post", "/api/v1/instances/", {"name": "new", "namespace": "team-a", "plan": "{hidden}"},
     [("alice", 400), ("bob", 400), ("admin", 202)]),
    ("post", "/api/v1/instances/", {"name": "new", "namespace": "team-b", "plan": "{hidden}"},
     [("alice", 400), ("carol", 202)]),
    ("patch", "/api/v1/instances/{a}/", {"plan": "{bigger}"}, [("carol", 404), ("bob", 403), ("alice", 202)]),
    ("patch", "/api/v1/instances/{b}/", {"plan": "{bigger}"}, [("alice", 404), ("bob", 404), ("admin", 202)]),
    ("delete", "/api/v1/instances/{a}/?cascade=true", None, [("carol", 404), ("bob", 403), ("alice", 202)]),
    ("delete", "/api/v1/instances/{b}/?cascade=true", None, [("alice", 404), ("bob", 404), ("admin", 202)]),
    ("post", "/api/v1/bindings/", {"instance": "{a}", "name": "more"},
     [("carol", 400), ("bob", 403), ("alice", 202)]),
    ("post", "/api/v1/bindings/", {"instance": "{a}", "name": "more", "namespace": "team-b"},
     [("carol", 400), ("bob", 403), ("alice", 403), ("admin", 202)]),
    ("delete", "/api/v1/bindings/{ba}/", None, [("carol", 404), ("bob", 403), ("alice", 202)]),
    ("delete", "/api/v1/bindings/{bb}/", None, [("alice", 404), ("bob", 404), ("admin", 202)]),
    ("post", "/api/v1/teams/", {"name": "team-c", "namespaces": ["team-c"]},
     [("alice", 403), ("bob", 403), ("carol", 403), ("admin", 201)]),
    ("patch", "/api/v1/teams/{team_a}/", {"namespaces": ["team-a", "team-a2"]},
     [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 200)]),
    # team A's namespace holds the live instance a: even a platform admin gets 409 naming it (issue 11).
    ("delete", "/api/v1/teams/{team_a}/", None, [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 409)]),
    ("post", "/api/v1/teams/{team_a}/members/", {"username": "carol", "role": "viewer"},
     [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 201)]),
    ("delete", "/api/v1/teams/{team_a}/members/bob/", None,
     [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 204)]),
    ("patch", "/api/v1/plans/{cache}/", {"visibility": "teams", "teams": ["{team_a}"]},
     [("alice", 403), ("bob", 403), ("carol", 403), ("admin", 200)]),
    ("post", "/api/v1/users/", {"username": "dave", "email": "d@example.com", "password": "a-long-pass-phrase-1"},
     [("alice", 403), ("bob", 403), ("carol", 403), ("admin", 201)]),
    ("post", "/api/v1/brokers/{broker}/sync/", None, [("alice", 403), ("bob", 403), ("carol", 403), ("admin", 202)]),
    ("patch", "/api/v1/brokers/{broker}/", {"relist_interval_seconds": 600},
     [("alice", 403), ("carol", 403), ("admin", 200)]),
]


@pytest.mark.parametrize(("method", "url", "body", "attempts"), API_WRITES,
                         ids=[f"{c[0]} {c[1]} {sorted(c[2]) if c[2] else ''}" for c in API_WRITES])
def test_api_writes(world: World, method: str, url: str, body: Any, attempts: list[tuple[str, int]]) -> None:
    ids = world.ids()
    for persona, expected in attempts:
        response = getattr(world.api[persona], method)(_fill(url, ids), _fill(body, ids), format="json")
        assert response.status_code == expected, (persona, response.content[:400])
        if expected in (400, 403):
            assert response.json(), "every refusal says why"


def test_a_team_admin_manages_members_of_their_own_team_only(world: World) -> None:
    from tests.conftest import join

    join(world.users["bob"], world.team_a, "admin")
    bob = world.api["bob"]
    ids = world.ids()
    response = bob.post(f"/api/v1/teams/{ids['team_a']}/members/", {"username": "carol", "role": "viewer"},
                        format="json")
    assert response.status_code == 201
    assert {"username": "carol", "role": "viewer"} in response.json()["members"]
    response = bob.post(f"/api/v1/teams/{ids['team_a']}/members/", {"username": "carol", "role": "developer"},
                        format="json")
    assert response.status_code == 200 and {"username": "carol", "role": "developer"} in response.json()["members"]
    assert world.api["carol"].get(f"/api/v1/instances/{ids['a']}/").status_code == 200  # now in team A
    assert bob.delete(f"/api/v1/teams/{ids['team_a']}/members/carol/").status_code == 204
    assert world.api["carol"].get(f"/api/v1/instances/{ids['a']}/").status_code == 404
    # Not their team's, and not the team itself: that is for platform admins.
    assert bob.post(f"/api/v1/teams/{ids['team_b']}/members/", {"username": "bob", "role": "admin"},
                    format="json").status_code == 404
    assert bob.patch(f"/api/v1/teams/{ids['team_a']}/", {"name": "mine"}, format="json").status_code == 403


def test_a_namespace_belongs_to_at_most_one_team(world: World) -> None:
    admin, ids = world.api["admin"], world.ids()
    response = admin.post("/api/v1/teams/", {"name": "team-c", "namespaces": ["team-a"]}, format="json")
    assert response.status_code == 400 and "team-a" in str(response.json()["namespaces"])
    response = admin.patch(f"/api/v1/teams/{ids['team_b']}/", {"namespaces": ["team-b", "team-a"]}, format="json")
    assert response.status_code == 400 and "namespaces" in response.json()
    team = admin.get(f"/api/v1/teams/{ids['team_a']}/").json()
    assert team == {"id": ids["team_a"], "name": "team-a", "namespaces": ["team-a"], "created_at": team["created_at"],
                    "members": [{"username": "alice", "role": "developer"}, {"username": "bob", "role": "viewer"}]}


def test_users_are_created_by_platform_admins_with_the_password_validators(world: World) -> None:
    admin = world.api["admin"]
    weak = admin.post("/api/v1/users/", {"username": "dave", "password": "123"}, format="json")
    assert weak.status_code == 400 and weak.json()["password"]
    created = admin.post("/api/v1/users/", {"username": "dave", "password": "a-long-pass-phrase-1"}, format="json")
    assert created.status_code == 201 and created.json()["username"] == "dave" and "password" not in created.json()
    again = admin.post("/api/v1/users/", {"username": "dave", "password": "a-long-pass-phrase-1"}, format="json")
    assert again.status_code == 409 and again.json()["username"] and again.json()["code"] == "name_taken"
    assert Client().login(username="dave", password="a-long-pass-phrase-1")


def test_visibility_patch_hides_a_plan_from_other_teams(world: World) -> None:
    ids = world.ids()
    response = world.api["admin"].patch(f"/api/v1/plans/{ids['bigger']}/",
                                         {"visibility": "teams", "teams": [ids["team_b"]]}, format="json")
    assert response.status_code == 200
    assert response.json()["visibility"] == "teams" and response.json()["teams"] == [ids["team_b"]]
    assert world.api["alice"].get(f"/api/v1/plans/{ids['bigger']}/").status_code == 404
    refused = world.api["alice"].patch(f"/api/v1/instances/{ids['a']}/", {"plan": ids["bigger"]}, format="json")
    assert refused.status_code == 400 and refused.json()["plan"] == ["No such plan."]
    assert world.api["carol"].get(f"/api/v1/plans/{ids['bigger']}/").status_code == 200
    bad = world.api["admin"].patch(f"/api/v1/plans/{ids['bigger']}/",
                                   {"visibility": "teams", "teams": ["00000000-0000-0000-0000-000000000000"]},
                                   format="json")
    assert bad.status_code == 400 and bad.json()["teams"]
    public = world.api["admin"].patch(f"/api/v1/plans/{ids['bigger']}/", {"visibility": "public"}, format="json")
    assert public.status_code == 200 and public.json()["teams"] == []
    assert world.api["alice"].get(f"/api/v1/plans/{ids['bigger']}/").status_code == 200


# --- pages --------------------------------------------------------------------------------------------------

PAGE_READS = [
    ("/instances/{a}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/instances/{b}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/instances/{a}/status/", {"admin": 286, "alice": 286, "bob": 286, "carol": 404}),
    ("/services/{hidden_service}/", {"admin": 200, "alice": 404, "bob": 404, "carol": 200}),
    ("/instances/new/?plan={hidden}", {"admin": 200, "alice": 302, "bob": 302, "carol": 200}),
    ("/teams/", {"admin": 200, "alice": 200, "bob": 200, "carol": 200}),
    ("/teams/{team_a}/", {"admin": 200, "alice": 200, "bob": 200, "carol": 404}),
    ("/audit/", {"admin": 200, "alice": 404, "bob": 404, "carol": 404}),
    ("/brokers/", {"admin": 200, "alice": 404, "bob": 404, "carol": 404}),
    ("/admin/", {"admin": 200, "alice": 302, "bob": 302, "carol": 302}),
    ("/admin/teams/auditrecord/", {"admin": 200, "alice": 302, "bob": 302, "carol": 302}),
    ("/admin/teams/team/", {"admin": 200, "alice": 302, "bob": 302, "carol": 302}),
]


@pytest.mark.parametrize(("url", "expected"), PAGE_READS, ids=[case[0] for case in PAGE_READS])
def test_page_reads(world: World, url: str, expected: dict[str, int]) -> None:
    ids = world.ids()
    for persona in PERSONAS:
        response = world.web[persona].get(_fill(url, ids))
        assert response.status_code == expected[persona], persona
        if response.status_code == 302 and url.startswith("/admin/"):
            assert "/admin/login/" in response["Location"]


def _names(html: str) -> set[str]:
    return set(re.findall(r'class="inst-link" href="[^"]+">([^<]+)</a>', html))


def test_pages_list_only_what_each_persona_may_see(world: World) -> None:
    hidden_title = world.hidden.offering.title
    for persona, instances, teams in (("admin", {"cache-a", "cache-b"}, {"team-a", "team-b"}),
                                      ("alice", {"cache-a"}, {"team-a"}), ("bob", {"cache-a"}, {"team-a"}),
                                      ("carol", {"cache-b"}, {"team-b"})):
        web = world.web[persona]
        assert _names(web.get("/instances/").content.decode()) == instances, persona
        marketplace = web.get("/").content.decode()
        assert (hidden_title in marketplace) is (persona in ("admin", "carol")), persona
        assert "Redis Cache" in marketplace
        page = web.get("/teams/").content.decode()
        assert {name for name in ("team-a", "team-b") if f">{name}</a>" in page} == teams, persona
        filters = web.get("/instances/").content.decode()
        options = set(re.findall(r'<option value="(team-[ab])"', filters))
        assert options == teams, persona


def test_the_namespace_fields_offer_only_the_personas_namespaces(world: World) -> None:
    ids = world.ids()
    for persona, offered in (("alice", ["team-a"]), ("carol", ["team-b"]), ("bob", [])):
        html = world.web[persona].get(f"/instances/new/?plan={ids['cache']}").content.decode()
        select = re.search(r'<select name="namespace"[^>]*>(.*?)</select>', html, re.S)
        assert select, persona
        assert re.findall(r'<option value="([^"]*)"', select.group(1)) == offered, persona
    # Platform admins may type any namespace (with suggestions).
    html = world.web["admin"].get(f"/instances/new/?plan={ids['cache']}").content.decode()
    assert re.search(r'<input type="text" name="namespace"', html)
    # The binding form of alice's instance: her namespaces only.
    html = world.web["alice"].get(f"/instances/{ids['a']}/").content.decode()
    select = re.search(r'<select name="bind-namespace"[^>]*>(.*?)</select>', html, re.S)
    assert select and re.findall(r'<option value="(team-[^"]*)"', select.group(1)) == ["team-a"]
    # A namespace that is not hers is refused by the form, nothing is created.
    response = world.web["alice"].post("/instances/new/", {"plan": ids["cache"], "name": "x", "namespace": "team-b",
                                                            "p.__mode": "json", "p.__json": "{}"})
    assert response.status_code == 422 and not ServiceInstance.objects.filter(name="x").exists()


def test_viewers_see_an_instance_without_its_forms(world: World) -> None:
    ids = world.ids()
    bob = world.web["bob"].get(f"/instances/{ids['a']}/").content.decode()
    alice = world.web["alice"].get(f"/instances/{ids['a']}/").content.decode()
    assert "Deprovision cache-a" in alice and "New binding" in alice and "Reveal<span" in alice
    assert "Deprovision cache-a" not in bob and "New binding" not in bob and "Reveal<span" not in bob
    assert "app-a" in bob  # the binding is listed


PAGE_WRITES: list[tuple[str, Any, list[tuple[str, int]]]] = [
    ("/bindings/{ba}/credentials/", {}, [("carol", 404), ("bob", 403), ("alice", 200), ("admin", 200)]),
    ("/instances/{a}/update/", {"plan": "{bigger}", "u.__mode": "json", "u.__json": "{{}}"},
     [("carol", 404), ("bob", 403), ("alice", 302)]),
    ("/instances/{a}/bindings/", {"bind-name": "more", "b.__mode": "json", "b.__json": "{{}}"},
     [("carol", 404), ("bob", 403), ("alice", 302)]),
    ("/bindings/{ba}/unbind/", {}, [("carol", 404), ("bob", 403), ("alice", 302)]),
    ("/instances/{a}/deprovision/", {"confirm": "cache-a", "cascade": "on"},
     [("carol", 404), ("bob", 403), ("alice", 302)]),
    ("/instances/{b}/deprovision/", {"confirm": "cache-b", "cascade": "on"},
     [("alice", 404), ("bob", 404), ("admin", 302)]),
    ("/teams/", {"name": "team-c", "namespaces": "team-c"}, [("alice", 404), ("carol", 404), ("admin", 302)]),
    ("/teams/{team_a}/", {"action": "add_member", "member-username": "carol", "member-role": "viewer"},
     [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 302)]),
    ("/teams/{team_a}/", {"action": "update", "team-name": "renamed", "team-namespaces": "team-a"},
     [("carol", 404), ("bob", 403), ("alice", 403), ("admin", 302)]),
    ("/brokers/{broker}/sync/", {}, [("alice", 404), ("carol", 404), ("admin", 302)]),
]


@pytest.mark.parametrize(("url", "data", "attempts"), PAGE_WRITES, ids=[f"{c[0]} {sorted(c[1])}" for c in PAGE_WRITES])
def test_page_writes(world: World, url: str, data: Any, attempts: list[tuple[str, int]]) -> None:
    ids = world.ids()
    for persona, expected in attempts:
        response = world.web[persona].post(_fill(url, ids), _fill(data, ids))
        assert response.status_code == expected, (persona, response.content[:300])
