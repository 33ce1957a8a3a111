"""REST API for bindings (API.md), with the engine stepped in-process against the HTTP broker."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation
from teams.models import AuditRecord
from tests.conftest import _token_client
from tests.instances.helpers import plan, run_operations, step_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

BINDING_KEYS = {"id", "instance", "name", "namespace", "secret_name", "parameters", "state", "last_operation",
                "publication", "created_at", "updated_at"}
LAST_OPERATION_KEYS = {"id", "type", "state", "description", "started_at", "updated_at"}
PUBLICATION_STATES = {"published", "pending", "not_configured", "failed"}
CREDENTIAL_KEYS = {"credentials", "syslog_drain_url", "route_service_url", "volume_mounts", "endpoints"}
BINDING_PATH = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"
REVEAL = "binding.credentials.reveal"




@pytest.fixture
def cache(broker: Broker) -> ServicePlan:
    return plan(broker, "redis-cache", "cache-free")


def is_timestamp(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def ready_instance(api: APIClient, p: ServicePlan, name: str = "db1", namespace: str = "team-a") -> dict[str, Any]:
    response = api.post("/api/v1/instances/", {"name": name, "namespace": namespace, "plan": str(p.pk),
                                               "parameters": {}}, format="json")
    assert response.status_code == 202, response.json()
    run_operations()
    body = api.get(f"/api/v1/instances/{response.json()['id']}/").json()
    assert body["state"] == "ready"
    return body


def post_binding(api: APIClient, instance_id: str, name: str = "app-cache", **extra: Any) -> Any:
    return api.post("/api/v1/bindings/", {"instance": instance_id, "name": name, **extra}, format="json")


def create_binding(api: APIClient, instance_id: str, name: str = "app-cache", **extra: Any) -> dict[str, Any]:
    response = post_binding(api, instance_id, name, **extra)
    assert response.status_code == 202, response.json()
    return response.json()


def ready_binding(api: APIClient, instance_id: str, name: str = "app-cache", **extra: Any) -> dict[str, Any]:
    created = create_binding(api, instance_id, name, **extra)
    run_operations()
    body = api.get(f"/api/v1/bindings/{created['id']}/").json()
    assert body["state"] == "ready", body
    return body


def broker_credentials(osb_broker: SampleBroker, binding_id: str) -> dict[str, Any]:
    return osb_broker.bindings[binding_id]["credentials"]


# --- create and read -------------------------------------------------------------------------------


def test_post_answers_202_with_the_documented_body_then_get_until_ready(
    cache: ServicePlan, osb_broker: SampleBroker, alice_api: APIClient
) -> None:
    instance = ready_instance(alice_api, cache)
    response = post_binding(alice_api, instance["id"], parameters={"acl_categories": ["@read"]})
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= BINDING_KEYS
    uuid.UUID(body["id"])
    assert body["instance"] == instance["id"]
    assert body["name"] == "app-cache"
    assert body["namespace"] == "team-a"  # the instance's
    assert body["secret_name"] == "app-cache"  # the name
    assert body["parameters"] == {"acl_categories": ["@read"]}
    assert body["state"] == "binding"
    assert set(body["last_operation"]) >= LAST_OPERATION_KEYS
    assert body["last_operation"]["type"] == "bind" and body["last_operation"]["state"] == "pending"
    assert set(body["publication"]) == {"state", "message", "published_at"}
    assert body["publication"]["state"] in PUBLICATION_STATES
    assert isinstance(body["publication"]["message"], str) and body["publication"]["published_at"] is None
    assert is_timestamp(body["created_at"]) and is_timestamp(body["updated_at"])
    assert "credentials" not in json.dumps(body)
    assert osb_broker.requests_for("PUT", BINDING_PATH) == []  # a worker sends it

    for _ in range(10):  # what a client does: GET until the last operation is finished
        body = alice_api.get(f"/api/v1/bindings/{body['id']}/").json()
        if body["last_operation"]["state"] in ("succeeded", "failed"):
            break
        for op in Operation.objects.filter(binding_id=body["id"], state__in=["pending", "in_progress"]):
            step_once(op)
    assert body["state"] == "ready" and body["last_operation"]["state"] == "succeeded"
    assert body["publication"]["state"] in PUBLICATION_STATES
    secret = broker_credentials(osb_broker, body["id"])
    served = json.dumps(alice_api.get(f"/api/v1/bindings/{body['id']}/").json())
    served += json.dumps(alice_api.get("/api/v1/bindings/").json())
    assert secret["password"] not in served and secret["uri"] not in served
    assert '"credentials"' not in served


def test_post_with_namespace_and_secret_name(cache: ServicePlan, osb_broker: SampleBroker,
                                             admin_api: APIClient) -> None:
    instance = ready_instance(admin_api, cache)
    body = create_binding(admin_api, instance["id"], namespace="team-b", secret_name="redis-creds")
    assert (body["namespace"], body["secret_name"]) == ("team-b", "redis-creds")
    body = create_binding(admin_api, instance["id"], name="other", namespace=None, secret_name=None)
    assert (body["namespace"], body["secret_name"]) == ("team-a", "other")


def test_post_is_refused_with_json_errors(broker: Broker, cache: ServicePlan, osb_broker: SampleBroker,
                                          admin_api: APIClient) -> None:
    instance = ready_instance(admin_api, cache)
    page = ready_instance(admin_api, plan(broker, "status-page", "basic"), name="page")

    unknown = post_binding(admin_api, str(uuid.uuid4()))
    assert unknown.status_code == 400 and "instance" in unknown.json()
    bad = post_binding(admin_api, instance["id"], parameters={"acl_categories": [], "extra": 1})
    assert bad.status_code == 400
    assert any(m.startswith("acl_categories:") for m in bad.json()["parameters"]), bad.json()
    assert bad.json()["detail"]
    not_bindable = post_binding(admin_api, page["id"])
    assert not_bindable.status_code == 400 and "cannot be bound" in not_bindable.json()["detail"]
    bad_name = post_binding(admin_api, instance["id"], "Not_A_Label")
    assert bad_name.status_code == 400 and "name" in bad_name.json()
    missing = admin_api.post("/api/v1/bindings/", {"instance": instance["id"]}, format="json")
    assert missing.status_code == 400 and "name" in missing.json()
    assert APIClient().post("/api/v1/bindings/", {"instance": instance["id"], "name": "x"},
                            format="json").status_code == 401
    assert osb_broker.requests_for("PUT", BINDING_PATH) == []
    assert admin_api.get("/api/v1/bindings/").json()["count"] == 0

    first = create_binding(admin_api, instance["id"])
    taken = post_binding(admin_api, instance["id"])  # a taken name is a conflict, naming the bind that took it
    assert taken.status_code == 409 and "name" in taken.json()
    assert taken.json()["code"] == "name_taken" and taken.json()["operation"] == first["last_operation"]["id"]
    secret_taken = post_binding(admin_api, instance["id"], "other", secret_name="app-cache")
    assert secret_taken.status_code == 409 and "secret_name" in secret_taken.json()


def test_post_on_an_instance_that_is_not_ready_is_a_conflict(cache: ServicePlan, admin_api: APIClient) -> None:
    created = admin_api.post("/api/v1/instances/", {"name": "db1", "namespace": "team-a", "plan": str(cache.pk)},
                             format="json").json()
    response = post_binding(admin_api, created["id"])
    assert response.status_code == 409
    assert "provisioning" in response.json()["detail"]


def test_list_filters_by_instance_and_namespace(cache: ServicePlan, osb_broker: SampleBroker,
                                                admin_api: APIClient) -> None:
    one = ready_instance(admin_api, cache, name="one")
    two = ready_instance(admin_api, cache, name="two", namespace="team-b")
    a = create_binding(admin_api, one["id"], "a")
    b = create_binding(admin_api, one["id"], "b", namespace="team-b")
    c = create_binding(admin_api, two["id"], "c")

    def ids(**filters: str) -> set[str]:
        response = admin_api.get("/api/v1/bindings/", filters)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"count", "next", "previous", "results"}
        assert body["count"] == len(body["results"])
        return {item["id"] for item in body["results"]}

    assert ids() == {a["id"], b["id"], c["id"]}
    assert ids(instance=one["id"]) == {a["id"], b["id"]}
    assert ids(namespace="team-b") == {b["id"], c["id"]}
    assert ids(instance=one["id"], namespace="team-b") == {b["id"]}
    assert ids(instance=str(uuid.uuid4())) == set()
    assert admin_api.get("/api/v1/bindings/", {"instance": "nope"}).status_code == 400
    assert admin_api.get(f"/api/v1/bindings/{uuid.uuid4()}/").status_code == 404
    assert admin_api.get(f"/api/v1/bindings/{a['id']}/").json()["name"] == "a"


def test_delete_answers_202_then_the_binding_is_gone(cache: ServicePlan, osb_broker: SampleBroker,
                                                     alice_api: APIClient) -> None:
    instance = ready_instance(alice_api, cache)
    binding = ready_binding(alice_api, instance["id"])
    response = alice_api.delete(f"/api/v1/bindings/{binding['id']}/")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "unbinding"
    assert body["last_operation"]["type"] == "unbind" and body["last_operation"]["state"] == "pending"
    again = alice_api.delete(f"/api/v1/bindings/{binding['id']}/")
    assert again.status_code == 409 and again.json()["detail"]
    run_operations()
    assert alice_api.get(f"/api/v1/bindings/{binding['id']}/").status_code == 404
    assert alice_api.get(f"/api/v1/bindings/{binding['id']}/credentials/").status_code == 404
    assert alice_api.delete(f"/api/v1/bindings/{binding['id']}/").status_code == 404
    assert alice_api.get("/api/v1/bindings/").json()["count"] == 0
    assert len(osb_broker.requests_for("DELETE", BINDING_PATH)) == 1
    assert binding["id"] not in osb_broker.bindings


# --- credentials ---------------------------------------------------------------------------------


def test_credentials_for_the_creator_and_admins_each_reveal_audited(
    cache: ServicePlan, osb_broker: SampleBroker, alice: Any, alice_api: APIClient, admin_user: Any,
    admin_api: APIClient
) -> None:
    instance = ready_instance(alice_api, cache)
    binding = create_binding(alice_api, instance["id"])
    url = f"/api/v1/bindings/{binding['id']}/credentials/"

    not_yet = alice_api.get(url)
    assert not_yet.status_code == 409 and not_yet.json()["detail"]
    assert not AuditRecord.objects.filter(action=REVEAL).exists()

    run_operations()
    issued = broker_credentials(osb_broker, binding["id"])
    response = alice_api.get(url, HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 200
    assert response.json() == {"credentials": issued, "syslog_drain_url": None, "route_service_url": None,
                               "volume_mounts": [], "endpoints": []}
    [record] = AuditRecord.objects.filter(action=REVEAL)
    assert record.action == REVEAL
    assert record.actor == alice and record.actor_name == "alice"
    assert record.target_id == binding["id"] and record.target_type == "servicebinding"
    assert record.request_id == "req-42"
    assert issued["password"] not in record.summary and issued["uri"] not in record.summary
    assert issued["password"] not in str(record)

    admin_response = admin_api.get(url)
    assert admin_response.status_code == 200 and admin_response.json() == response.json()
    assert AuditRecord.objects.filter(action=REVEAL).count() == 2
    assert AuditRecord.objects.filter(action=REVEAL, actor=admin_user, target_id=binding["id"]).count() == 1


def test_credentials_are_forbidden_for_other_users(cache: ServicePlan, osb_broker: SampleBroker, bob: Any,
                                                   admin_api: APIClient) -> None:
    """bob is a viewer in the binding's team; carol (another team) does not even see it."""
    bob_api = _token_client(bob)
    instance = ready_instance(admin_api, cache)
    binding = ready_binding(admin_api, instance["id"])
    assert bob_api.get(f"/api/v1/bindings/{binding['id']}/").status_code == 200  # he may see it exists
    response = bob_api.get(f"/api/v1/bindings/{binding['id']}/credentials/")
    assert response.status_code == 403
    assert response.json()["detail"]
    assert broker_credentials(osb_broker, binding["id"])["password"] not in response.content.decode()
    assert not AuditRecord.objects.filter(action=REVEAL).exists()
    assert APIClient().get(f"/api/v1/bindings/{binding['id']}/credentials/").status_code == 401


def test_credentials_include_what_the_broker_returned_with_them(direct: Any, osb_broker: SampleBroker,
                                                                admin_api: APIClient) -> None:
    p = plan(direct, "redis-cache", "cache-free")
    instance = ready_instance(admin_api, p)
    returned = {
        "credentials": {"uri": "redis://u:pw@cache:6379", "port": 6379},
        "syslog_drain_url": "syslog-tls://logs.example.com:6514",
        "route_service_url": "https://route.example.com",
        "volume_mounts": [{"driver": "cephdriver", "container_dir": "/data", "mode": "r", "device_type": "shared",
                           "device": {"volume_id": "vol-1"}}],
        "endpoints": [{"host": "cache", "ports": ["6379"]}],
    }
    osb_broker.set_response("PUT", BINDING_PATH, 201, times=1,
                            body={**returned, "metadata": {"expires_at": "2031-01-01T00:00:00.0Z"}})
    binding = ready_binding(admin_api, instance["id"])
    assert binding["metadata"] == {"expires_at": "2031-01-01T00:00:00.0Z"}
    assert not CREDENTIAL_KEYS & set(binding)
    response = admin_api.get(f"/api/v1/bindings/{binding['id']}/credentials/")
    assert response.status_code == 200 and response.json() == returned



# --- operations and instances --------------------------------------------------------------------


def test_operations_can_be_listed_by_binding(cache: ServicePlan, osb_broker: SampleBroker,
                                             admin_api: APIClient) -> None:
    instance = ready_instance(admin_api, cache)
    a = ready_binding(admin_api, instance["id"], "a")
    b = ready_binding(admin_api, instance["id"], "b")
    admin_api.delete(f"/api/v1/bindings/{a['id']}/")
    run_operations()
    listed = admin_api.get("/api/v1/operations/", {"binding": a["id"]}).json()
    assert listed["count"] == 2
    ops = listed["results"]
    assert [o["type"] for o in ops] == ["unbind", "bind"]  # newest first
    for op in ops:
        assert op["binding"] == a["id"] and op["instance"] == instance["id"] and op["state"] == "succeeded"
        [call] = op["calls"]
        assert call["path"].startswith(f"/v2/service_instances/{instance['id']}/service_bindings/{a['id']}")
    assert [c["method"] for o in ops for c in o["calls"]] == ["DELETE", "PUT"]
    only_b = admin_api.get("/api/v1/operations/", {"binding": b["id"]}).json()["results"]
    assert [o["type"] for o in only_b] == ["bind"]
    # The instance's own operations are not a binding's.
    instance_ops = admin_api.get("/api/v1/operations/", {"instance": instance["id"]}).json()["results"]
    assert {o["type"] for o in instance_ops} == {"provision", "bind", "unbind"}
    assert admin_api.get(f"/api/v1/instances/{instance['id']}/").json()["last_operation"]["type"] == "provision"


def test_instance_delete_with_bindings_is_a_conflict_unless_cascade(cache: ServicePlan, osb_broker: SampleBroker,
                                                                    admin_api: APIClient) -> None:
    instance = ready_instance(admin_api, cache)
    a = ready_binding(admin_api, instance["id"], "a")
    b = ready_binding(admin_api, instance["id"], "b")
    url = f"/api/v1/instances/{instance['id']}/"

    refused = admin_api.delete(url)
    assert refused.status_code == 409
    assert "a, b" in refused.json()["detail"]
    assert admin_api.get(url).json()["state"] == "ready"
    assert admin_api.delete(url + "?cascade=false").status_code == 409

    response = admin_api.delete(url + "?cascade=true")
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "deprovisioning"
    assert body["last_operation"]["type"] == "deprovision" and body["last_operation"]["state"] == "pending"
    for binding in (a, b):
        assert admin_api.get(f"/api/v1/bindings/{binding['id']}/").json()["state"] == "unbinding"
    run_operations()
    assert admin_api.get(url).status_code == 404
    for binding in (a, b):
        assert admin_api.get(f"/api/v1/bindings/{binding['id']}/").status_code == 404
    methods = [(r.method, "service_bindings" in r.path) for r in osb_broker.requests if r.method == "DELETE"]
    assert methods == [("DELETE", True), ("DELETE", True), ("DELETE", False)]
