"""The typed OSB requests (brokers.osb.requests): what each sends, how it is stored and read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from brokers.osb import (
    BindingLastOperationRequest,
    BindRequest,
    DeprovisionRequest,
    FetchBindingRequest,
    FetchInstanceRequest,
    LastOperationRequest,
    ProvisionRequest,
    UnbindRequest,
    UpdateRequest,
    request_from_json,
)

CONTEXT = {"platform": "kubernetes", "namespace": "team-a", "instance_name": "db"}
IDS = {"service_id": "svc", "plan_id": "small"}

STORED = [
    ProvisionRequest(instance_id="i1", **IDS, context=CONTEXT, organization_guid="o", space_guid="s",
                     parameters={"backup": {"enabled": True}}, maintenance_version="1.2"),
    UpdateRequest(instance_id="i1", service_id="svc", plan_id="large", context=CONTEXT, parameters={"a": 1},
                  maintenance_version="2.0", previous_plan_id="small", previous_maintenance_version="1.2"),
    DeprovisionRequest(instance_id="i1", **IDS),
    BindRequest(instance_id="i1", binding_id="b1", **IDS, context=CONTEXT, bind_resource={"app_guid": "a"},
                parameters={}, accepts_incomplete=False),
    UnbindRequest(instance_id="i1", binding_id="b1", **IDS),
    FetchInstanceRequest(instance_id="i1", **IDS),
    FetchBindingRequest(instance_id="i1", binding_id="b1", **IDS),
]


@pytest.mark.parametrize("request_", STORED, ids=lambda r: r.kind)
def test_a_stored_request_reads_back_as_itself(request_: Any) -> None:
    stored = json.loads(json.dumps(request_.to_json()))  # as a JSON column keeps it
    assert stored["format"] == 1 and stored["kind"] == request_.kind
    again = request_from_json(stored)
    assert again == request_
    assert again.content() == request_.content()


@pytest.mark.parametrize("change", [
    {"format": 2}, {"kind": "catalog"}, {"kind": "nonsense"}, {"surprise": 1},
], ids=["format", "not stored", "unknown kind", "unknown field"])
def test_anything_else_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        request_from_json({**STORED[0].to_json(), **change})
    with pytest.raises(ValueError):
        request_from_json({key: value for key, value in STORED[2].to_json().items() if key != "plan_id"})


def test_the_body_bytes_do_not_depend_on_key_order() -> None:
    a = ProvisionRequest(instance_id="i", **IDS, context={"b": 1, "a": 2}, organization_guid="o", space_guid="s",
                         parameters={"z": {"y": 1, "x": 2}, "k": "ü"})
    b = ProvisionRequest(instance_id="i", **IDS, context={"a": 2, "b": 1}, organization_guid="o", space_guid="s",
                         parameters={"k": "ü", "z": {"x": 2, "y": 1}})
    assert a.content() == b.content()
    assert json.loads(a.content() or b"") == a.body()
    assert "ü".encode() in (a.content() or b"")  # UTF-8, as JSON is


def test_what_each_request_sends() -> None:
    provision, update, deprovision, bind, unbind = STORED[:5]
    assert (provision.method, provision.path(), provision.query()) == (
        "PUT", "/v2/service_instances/i1", {"accepts_incomplete": "true"})
    assert provision.body() == {**IDS, "context": CONTEXT, "organization_guid": "o", "space_guid": "s",
                                "parameters": {"backup": {"enabled": True}}, "maintenance_info": {"version": "1.2"}}
    assert update.method == "PATCH" and update.body() == {
        "service_id": "svc", "plan_id": "large", "context": CONTEXT, "parameters": {"a": 1},
        "maintenance_info": {"version": "2.0"},
        "previous_values": {"service_id": "svc", "plan_id": "small", "maintenance_info": {"version": "1.2"}}}
    assert UpdateRequest(instance_id="i1", service_id="svc", parameters={}).body() == {
        "service_id": "svc", "parameters": {}}
    assert (deprovision.method, deprovision.body(), deprovision.query()) == (
        "DELETE", None, {**IDS, "accepts_incomplete": "true"})
    assert bind.path() == "/v2/service_instances/i1/service_bindings/b1" and bind.query() == {}
    assert bind.body() == {**IDS, "context": CONTEXT, "bind_resource": {"app_guid": "a"}, "parameters": {}}
    assert (unbind.method, unbind.content()) == ("DELETE", None)
    assert DeprovisionRequest(instance_id="a/b c", **IDS).path() == "/v2/service_instances/a%2Fb%20c"
    with pytest.raises(ValueError):
        DeprovisionRequest(instance_id="", **IDS).path()


def test_polls_fetches_and_cleanups_follow_from_the_stored_request() -> None:
    provision, update, deprovision, bind, unbind = STORED[:5]
    assert provision.last_operation("op") == LastOperationRequest(instance_id="i1", **IDS, operation="op")
    assert provision.fetch() == FetchInstanceRequest(instance_id="i1", **IDS)
    assert provision.cleanup() == DeprovisionRequest(instance_id="i1", **IDS)
    # While a plan change runs the broker is asked about the plan before it (spec: last_operation).
    assert update.last_operation(None) == LastOperationRequest(instance_id="i1", service_id="svc", plan_id="small")
    assert deprovision.cleanup() == deprovision
    assert bind.last_operation("x") == BindingLastOperationRequest(instance_id="i1", binding_id="b1", **IDS,
                                                                   operation="x")
    assert bind.fetch() == FetchBindingRequest(instance_id="i1", binding_id="b1", **IDS)
    assert bind.cleanup() == UnbindRequest(instance_id="i1", binding_id="b1", **IDS)  # accepts_incomplete again
    assert unbind.cleanup() == unbind
