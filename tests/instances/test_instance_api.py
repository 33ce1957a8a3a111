"""REST API for instances and operations (API.md), with the engine stepped in-process against the HTTP broker."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.states import OpType
from tests.instances.helpers import plan, run_operations, step_once

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

INSTANCE_KEYS = {"id", "name", "namespace", "service", "plan", "parameters", "dashboard_url", "state",
                 "last_operation", "created_at", "updated_at"}
LAST_OPERATION_KEYS = {"id", "type", "state", "description", "started_at", "updated_at"}
OPERATION_KEYS = {"id", "type", "state", "instance", "binding", "description", "next_step", "attempts", "polls",
                  "started_at", "updated_at", "finished_at", "calls"}
CALL_KEYS = {"method", "path", "status", "duration_ms", "request_id", "at", "error"}




@pytest.fixture
def basic(broker: Broker) -> ServicePlan:
    return plan(broker, "status-page", "basic")


def is_timestamp(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def create(api: APIClient, p: ServicePlan, name: str = "db1", namespace: str = "team-a",
           parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    response = api.post("/api/v1/instances/", {"name": name, "namespace": namespace, "plan": str(p.pk),
                                               "parameters": parameters or {}}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()


def get_until_finished(api: APIClient, instance_id: str, *, max_rounds: int = 20) -> dict[str, Any]:
    """What a client does: GET the resource until its last operation is finished (a worker steps meanwhile)."""
    for _ in range(max_rounds):
        body = api.get(f"/api/v1/instances/{instance_id}/").json()
        if body["last_operation"]["state"] in ("succeeded", "failed"):
            return body
        for op in Operation.objects.filter(instance_id=instance_id, state__in=["pending", "in_progress"]):
            step_once(op)
    raise AssertionError("the operation did not finish")


# --- create and read -------------------------------------------------------------------------------


def test_post_answers_202_with_a_pending_operation_then_get_until_succeeded(
    broker: Broker, osb_broker: SampleBroker, alice_api: APIClient
) -> None:
    ha = plan(broker, "postgresql", "ha-cluster")
    body = create(alice_api, ha, parameters={"database_name": "app"})
    assert set(body) >= INSTANCE_KEYS
    uuid.UUID(body["id"])
    assert body["name"] == "db1" and body["namespace"] == "team-a"
    assert body["service"] == str(ha.offering_id) and body["plan"] == str(ha.pk)
    assert body["parameters"] == {"database_name": "app"}
    assert body["dashboard_url"] is None
    assert body["state"] == "provisioning"
    last = body["last_operation"]
    assert set(last) >= LAST_OPERATION_KEYS
    assert last["type"] == "provision" and last["state"] == "pending"
    assert isinstance(last["description"], str)
    assert all(is_timestamp(body[k]) for k in ("created_at", "updated_at"))
    assert all(is_timestamp(last[k]) for k in ("started_at", "updated_at"))
    assert osb_broker.requests_for("PUT") == []  # the worker sends it, not the API request

    done = get_until_finished(alice_api, body["id"])
    assert done["state"] == "ready"
    assert done["last_operation"]["id"] == last["id"]
    assert done["last_operation"]["state"] == "succeeded"
    assert done["dashboard_url"] == f"{osb_broker.url}/dashboard/{body['id']}"
    [put] = osb_broker.requests_for("PUT")
    assert put.path == f"/v2/service_instances/{body['id']}"  # the portal's id is the OSB id
    assert osb_broker.requests_for("GET", r".*/last_operation")  # it was asynchronous


def test_sync_plan_also_answers_202(basic: ServicePlan, alice_api: APIClient) -> None:
    body = create(alice_api, basic)
    assert body["last_operation"]["state"] == "pending"
    assert get_until_finished(alice_api, body["id"])["state"] == "ready"


def test_list_and_filters(broker: Broker, basic: ServicePlan, admin_api: APIClient, osb_broker: SampleBroker) -> None:
    hobby = plan(broker, "postgresql", "hobby")
    a = create(admin_api, basic, name="a", namespace="team-a")
    b = create(admin_api, basic, name="b", namespace="team-b")
    c = create(admin_api, hobby, name="c", namespace="team-a", parameters={"database_name": "x"})
    osb_broker.set_response("PUT", rf"/v2/service_instances/{c['id']}", 400, body={"description": "no"})
    d = create(admin_api, basic, name="d", namespace="team-c")
    run_operations()
    admin_api.delete(f"/api/v1/instances/{d['id']}/")
    run_operations()

    def names(**query: str) -> list[str]:
        response = admin_api.get("/api/v1/instances/", query)
        assert response.status_code == 200, response.json()
        page = response.json()
        assert set(page) == {"count", "next", "previous", "results"}
        assert page["count"] == len(page["results"])
        return [i["name"] for i in page["results"]]

    assert names() == ["a", "c", "b"]  # ordered by namespace, name; the deleted one is gone
    assert names(namespace="team-a") == ["a", "c"]
    assert names(namespace="team-c") == []
    assert names(service=str(hobby.offering_id)) == ["c"]
    assert names(plan=str(basic.pk)) == ["a", "b"]
    assert names(state="failed") == ["c"]
    assert names(state="ready") == ["a", "b"]
    assert names(state="ready", namespace="team-b") == ["b"]
    assert admin_api.get("/api/v1/instances/", {"state": "deleted"}).status_code == 400
    assert admin_api.get("/api/v1/instances/", {"plan": "not-a-uuid"}).status_code == 400
    page = admin_api.get("/api/v1/instances/", {"page_size": 1}).json()
    assert page["count"] == 3 and len(page["results"]) == 1 and page["next"]
    assert a["id"] != b["id"]


# --- change and delete -----------------------------------------------------------------------------


def test_patch_changes_parameters(broker: Broker, admin_api: APIClient, osb_broker: SampleBroker) -> None:
    small = plan(broker, "postgresql", "standard-small")
    body = create(admin_api, small, parameters={"database_name": "app"})
    get_until_finished(admin_api, body["id"])
    response = admin_api.patch(f"/api/v1/instances/{body['id']}/", {"parameters": {"storage_gb": 50}},
                               format="json")
    assert response.status_code == 202, response.json()
    patched = response.json()
    assert patched["state"] == "updating"
    assert patched["last_operation"]["type"] == "update" and patched["last_operation"]["state"] == "pending"
    done = get_until_finished(admin_api, body["id"])
    assert done["state"] == "ready" and done["last_operation"]["state"] == "succeeded"
    assert done["parameters"]["storage_gb"] == 50
    [patch] = osb_broker.requests_for("PATCH")
    assert patch.json["parameters"] == {"storage_gb": 50}


def test_patch_changes_the_plan(broker: Broker, admin_api: APIClient) -> None:
    small = plan(broker, "postgresql", "standard-small")
    large = plan(broker, "postgresql", "standard-large")
    body = create(admin_api, small, parameters={"database_name": "app"})
    get_until_finished(admin_api, body["id"])
    response = admin_api.patch(f"/api/v1/instances/{body['id']}/", {"plan": str(large.pk)}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["plan"] == str(small.pk)  # switched once the broker has done it
    assert get_until_finished(admin_api, body["id"])["plan"] == str(large.pk)


def test_patch_errors(broker: Broker, admin_api: APIClient, osb_broker: SampleBroker) -> None:
    small = plan(broker, "postgresql", "standard-small")
    body = create(admin_api, small, parameters={"database_name": "app"})
    get_until_finished(admin_api, body["id"])
    url = f"/api/v1/instances/{body['id']}/"

    bad = admin_api.patch(url, {"parameters": {"storage_gb": 100000}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["parameters"] == ["storage_gb: 100000 is greater than the maximum of 100"]
    assert "detail" in bad.json()
    other_service = admin_api.patch(url, {"plan": str(plan(broker, "status-page", "basic").pk)}, format="json")
    assert other_service.status_code == 400 and "plan" in other_service.json()
    unknown = admin_api.patch(url, {"plan": str(uuid.uuid4())}, format="json")
    assert unknown.status_code == 400 and unknown.json()["plan"] == ["No such plan."]
    nothing = admin_api.patch(url, {}, format="json")
    assert nothing.status_code == 400 and nothing.json()["detail"]
    assert osb_broker.requests_for("PATCH") == []
    assert not Operation.objects.filter(type=OpType.UPDATE).exists()
    assert admin_api.patch(f"/api/v1/instances/{uuid.uuid4()}/", {"parameters": {}}, format="json").status_code == 404


def test_delete_answers_202_then_404(basic: ServicePlan, admin_api: APIClient, osb_broker: SampleBroker) -> None:
    body = create(admin_api, basic)
    get_until_finished(admin_api, body["id"])
    response = admin_api.delete(f"/api/v1/instances/{body['id']}/")
    assert response.status_code == 202
    deleting = response.json()
    assert deleting["state"] == "deprovisioning"
    assert deleting["last_operation"]["type"] == "deprovision" and deleting["last_operation"]["state"] == "pending"
    run_operations()
    assert admin_api.get(f"/api/v1/instances/{body['id']}/").status_code == 404
    assert admin_api.delete(f"/api/v1/instances/{body['id']}/").status_code == 404
    assert admin_api.get("/api/v1/instances/").json()["count"] == 0
    assert len(osb_broker.requests_for("DELETE")) == 1
    assert ServiceInstance.objects.filter(pk=body["id"]).exists()  # kept for history
    # Its operations remain readable.
    ops = admin_api.get("/api/v1/operations/", {"instance": body["id"]}).json()["results"]
    assert [o["type"] for o in ops] == ["deprovision", "provision"]


# --- errors --------------------------------------------------------------------------------------


def test_bad_parameters_are_400_with_the_schema_messages(broker: Broker, admin_api: APIClient,
                                                         osb_broker: SampleBroker) -> None:
    ha = plan(broker, "postgresql", "ha-cluster")
    response = admin_api.post("/api/v1/instances/", {"name": "db1", "namespace": "team-a", "plan": str(ha.pk),
                                                     "parameters": {"storage_gb": "big", "extensions": ["oracle"]}},
                              format="json")
    assert response.status_code == 400
    errors = response.json()["parameters"]
    assert "'database_name' is a required property" in errors
    assert "storage_gb: 'big' is not of type 'integer'" in errors
    assert any(e.startswith("extensions.0: 'oracle' is not one of") for e in errors)
    assert not ServiceInstance.objects.exists()
    assert osb_broker.requests_for("PUT") == []


@pytest.mark.parametrize(("payload", "field"), [
    ({"name": "Bad_Name"}, "name"),
    ({"name": "-x"}, "name"),
    ({"namespace": "UPPER"}, "namespace"),
    ({"name": "x" * 64}, "name"),
    ({"name": None}, "name"),
    ({"plan": "not-a-uuid"}, "plan"),
    ({"plan": str(uuid.uuid4())}, "plan"),
    ({"parameters": ["a"]}, "parameters"),
])
def test_bad_input_is_400_with_field_errors(basic: ServicePlan, admin_api: APIClient, payload: dict[str, Any],
                                            field: str) -> None:
    data = {"name": "db1", "namespace": "team-a", "plan": str(basic.pk), "parameters": {}, **payload}
    response = admin_api.post("/api/v1/instances/", data, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert isinstance(errors[field], list) and errors[field] and all(isinstance(m, str) for m in errors[field])
    assert not ServiceInstance.objects.exists()


def test_missing_fields_are_400(admin_api: APIClient) -> None:
    response = admin_api.post("/api/v1/instances/", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"name", "namespace", "plan"}


def test_duplicate_name_is_409_naming_the_provision_that_took_it(basic: ServicePlan, admin_api: APIClient) -> None:
    first = create(admin_api, basic)
    response = admin_api.post("/api/v1/instances/", {"name": "db1", "namespace": "team-a", "plan": str(basic.pk)},
                              format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "name_taken" and body["operation"] == first["last_operation"]["id"]
    assert body["name"] == ["'db1' is taken in namespace 'team-a'."] and "already exists" in body["detail"]


def test_409_while_an_operation_is_active(basic: ServicePlan, admin_api: APIClient) -> None:
    body = create(admin_api, basic)
    url = f"/api/v1/instances/{body['id']}/"
    patch = admin_api.patch(url, {"parameters": {"a": 1}}, format="json")
    provision = body["last_operation"]["id"]
    assert patch.status_code == 409 and patch.json()["detail"]
    assert patch.json()["code"] == "operation_in_progress" and patch.json()["operation"] == provision
    delete = admin_api.delete(url)
    assert delete.status_code == 409 and "Another operation" in delete.json()["detail"]
    assert delete.json()["code"] == "operation_in_progress" and delete.json()["operation"] == provision
    assert Operation.objects.filter(instance_id=body["id"]).count() == 1
    get_until_finished(admin_api, body["id"])
    assert admin_api.patch(url, {"parameters": {"a": 1}}, format="json").status_code == 202
    assert admin_api.delete(url).status_code == 409
    assert admin_api.patch(url, {"parameters": {"a": 2}}, format="json").status_code == 409


def test_401_without_credentials(basic: ServicePlan, admin_api: APIClient) -> None:
    body = create(admin_api, basic)
    anonymous = APIClient()
    for method, url in [("get", "/api/v1/instances/"), ("post", "/api/v1/instances/"),
                        ("get", f"/api/v1/instances/{body['id']}/"), ("patch", f"/api/v1/instances/{body['id']}/"),
                        ("delete", f"/api/v1/instances/{body['id']}/"),
                        ("get", f"/api/v1/instances/{body['id']}/operations/"), ("get", "/api/v1/operations/")]:
        response = getattr(anonymous, method)(url)
        assert response.status_code == 401, (method, url)
        assert response.json()["detail"]
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad_token.get("/api/v1/instances/").status_code == 401
    assert Operation.objects.count() == 1


def test_unknown_ids_are_404(admin_api: APIClient) -> None:
    missing = uuid.uuid4()
    assert admin_api.get(f"/api/v1/instances/{missing}/").status_code == 404
    assert admin_api.delete(f"/api/v1/instances/{missing}/").status_code == 404
    assert admin_api.get(f"/api/v1/instances/{missing}/operations/").status_code == 404
    assert admin_api.get(f"/api/v1/operations/{missing}/").status_code == 404


# --- operations ------------------------------------------------------------------------------------


def test_operations_list_and_filters(basic: ServicePlan, admin_api: APIClient, osb_broker: SampleBroker) -> None:
    first = create(admin_api, basic, name="a")
    second = create(admin_api, basic, name="b")
    osb_broker.set_response("PUT", rf"/v2/service_instances/{second['id']}", 400, body={"description": "nope"})
    run_operations()
    admin_api.patch(f"/api/v1/instances/{first['id']}/", {"parameters": {"x": 1}}, format="json")

    listed = admin_api.get("/api/v1/operations/").json()
    assert listed["count"] == 3
    for op in listed["results"]:
        assert set(op) >= OPERATION_KEYS
        assert op["binding"] is None
        assert all(set(call) >= CALL_KEYS for call in op["calls"])

    by_instance = admin_api.get("/api/v1/operations/", {"instance": first["id"]}).json()["results"]
    assert [(o["type"], o["state"]) for o in by_instance] == [("update", "pending"), ("provision", "succeeded")]
    assert all(o["instance"] == first["id"] for o in by_instance)
    failed = admin_api.get("/api/v1/operations/", {"state": "failed"}).json()["results"]
    assert [(o["instance"], o["description"]) for o in failed] == [(second["id"], "nope")]
    assert failed[0]["finished_at"] and failed[0]["attempts"] == 1
    [call] = failed[0]["calls"]
    assert call["method"] == "PUT" and call["status"] == 400 and call["error"]
    assert call["path"].startswith(f"/v2/service_instances/{second['id']}")
    assert admin_api.get("/api/v1/operations/", {"instance": first["id"], "state": "failed"}).json()["count"] == 0
    pending = admin_api.get("/api/v1/operations/", {"instance": first["id"], "state": "pending"}).json()
    assert pending["count"] == 1 and pending["results"][0]["finished_at"] is None
    assert admin_api.get("/api/v1/operations/", {"state": "bogus"}).status_code == 400
    assert admin_api.get("/api/v1/operations/", {"instance": "nope"}).status_code == 400

    one = admin_api.get(f"/api/v1/operations/{failed[0]['id']}/")
    assert one.status_code == 200 and one.json()["id"] == failed[0]["id"]
    per_instance = admin_api.get(f"/api/v1/instances/{first['id']}/operations/").json()
    assert [o["id"] for o in per_instance["results"]] == [o["id"] for o in by_instance]
