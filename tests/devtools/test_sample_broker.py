"""Tests for the stdlib sample OSB broker (no Django needed)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from devtools.sample_broker import SampleBroker, build_catalog, generate_catalog, plan_id
from devtools.sample_broker.catalog import ANALYTICS_ID, POSTGRES_ID, SEARCH_ID
from devtools.sample_broker.server import Headers

SPEC_DIR = Path("/work/shared/osb-spec")
H = {"X-Broker-API-Version": "2.17"}

PG_HOBBY = plan_id("postgresql", "hobby")
PG_SMALL = plan_id("postgresql", "standard-small")
PG_HA = plan_id("postgresql", "ha-cluster")
DW_STARTER = plan_id("analytics-warehouse", "starter")


@pytest.fixture
def broker() -> Iterator[SampleBroker]:
    b = SampleBroker()
    b.async_seconds = 0.1
    with b:
        yield b


@pytest.fixture
def client(broker: SampleBroker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=broker.url, headers=H, timeout=5, verify=False) as c:
        yield c


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` without loading CA certificates (plain-HTTP loopback only; much faster)."""
    return httpx.get(url, verify=False, **kwargs)


def wait_for(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def provision_body(plan: str = PG_HOBBY, service: str = POSTGRES_ID, **params: Any) -> dict[str, Any]:
    return {
        "service_id": service,
        "plan_id": plan,
        "organization_guid": "org",
        "space_guid": "space",
        "context": {"platform": "catalog-portal"},
        "parameters": params or {"database_name": "app"},
    }


# --------------------------------------------------------------------------- catalog shape


def openapi_catalog_validator() -> jsonschema.protocols.Validator:
    spec = yaml.safe_load((SPEC_DIR / "openapi.yaml").read_text())
    # $refs are "#/components/schemas/X": resolve them against a root that has "components".
    schema = {"$ref": "#/components/schemas/Catalog", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


def assert_osb_catalog(catalog: dict[str, Any]) -> None:
    errors = list(openapi_catalog_validator().iter_errors(catalog))
    assert not errors, [e.message for e in errors[:5]]
    ids: set[str] = set()
    names: set[str] = set()
    for service in catalog["services"]:
        for key in ("id", "name", "description", "bindable", "plans"):
            assert key in service, (service.get("name"), key)
        assert service["plans"], service["name"]
        assert service["id"] not in ids and service["name"] not in names
        ids.add(service["id"])
        names.add(service["name"])
        plan_names: set[str] = set()
        for plan in service["plans"]:
            for key in ("id", "name", "description"):
                assert plan[key], (service["name"], key)
            assert plan["id"] not in ids and plan["name"] not in plan_names
            ids.add(plan["id"])
            plan_names.add(plan["name"])
            for path in (
                ("service_instance", "create"),
                ("service_instance", "update"),
                ("service_binding", "create"),
            ):
                node: Any = plan.get("schemas", {})
                for key in path:
                    node = node.get(key, {}) if isinstance(node, dict) else {}
                params = node.get("parameters")
                if params is not None:
                    assert params["$schema"].startswith("http://json-schema.org/")
                    jsonschema.validators.validator_for(params).check_schema(params)
                    assert len(json.dumps(params)) < 64 * 1024
            if "maintenance_info" in plan:
                assert plan["maintenance_info"]["version"]
            for cost in plan.get("metadata", {}).get("costs", []):
                assert cost["unit"] and all(isinstance(v, float) for v in cost["amount"].values())


def test_sample_catalog_is_valid_osb() -> None:
    catalog = build_catalog("http://broker.test")
    assert_osb_catalog(catalog)
    services = {s["name"]: s for s in catalog["services"]}
    assert len(services) >= 6
    pg = services["postgresql"]
    assert pg["metadata"]["imageUrl"] == "http://broker.test/icons/postgresql.svg"
    assert "\n\n" in pg["metadata"]["longDescription"]
    assert services["analytics-warehouse"]["metadata"]["displayName"] == "Slow Analytics Warehouse"
    assert all("maximum_polling_duration" in p for p in services["analytics-warehouse"]["plans"])
    assert services["elasticsearch"]["requires"] == ["syslog_drain"]
    assert any(p.get("maintenance_info", {}).get("version") == "1.2.0" for p in pg["plans"])
    assert {p["free"] for p in pg["plans"]} == {True, False}
    create = pg["plans"][1]["schemas"]["service_instance"]["create"]["parameters"]
    assert create["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert create["required"] == ["database_name"]


def test_generated_catalog_is_valid_and_deterministic() -> None:
    catalog = generate_catalog(60, 4, seed=3)
    assert_osb_catalog(catalog)
    assert len(catalog["services"]) == 60
    assert all(len(s["plans"]) == 4 for s in catalog["services"])
    assert catalog == generate_catalog(60, 4, seed=3)
    assert catalog != generate_catalog(60, 4, seed=4)
    plans = [p for s in catalog["services"] for p in s["plans"]]
    with_costs = sum(1 for p in plans if "costs" in p["metadata"])
    assert 0.3 * len(plans) < with_costs < 0.7 * len(plans)
    assert all(p["free"] is ("costs" not in p["metadata"]) for p in plans)
    assert len({t for s in catalog["services"] for t in s["tags"]}) <= 30
    bare = generate_catalog(5, 2, with_schemas=False)
    assert all("schemas" not in p for s in bare["services"] for p in s["plans"])


def test_generated_catalog_default_size() -> None:
    catalog = generate_catalog()
    assert len(catalog["services"]) == 1000
    assert len({p["id"] for s in catalog["services"] for p in s["plans"]}) == 5000
    assert len({s["name"] for s in catalog["services"]}) == 1000


def test_catalog_served_with_icons_from_host(broker: SampleBroker, client: httpx.Client) -> None:
    r = client.get("/v2/catalog")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    catalog = r.json()
    assert_osb_catalog(catalog)
    image = catalog["services"][0]["metadata"]["imageUrl"]
    assert image.startswith(broker.url + "/icons/")
    icon = get(image)  # icons need neither auth nor the version header
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.lstrip().startswith("<svg")
    # the Host header decides the absolute URL
    other = client.get("/v2/catalog", headers={"Host": "portal-broker.example:8080"}).json()
    assert other["services"][0]["metadata"]["imageUrl"].startswith("http://portal-broker.example:8080/icons/")
    assert get(broker.url + "/icons/nope.svg").status_code == 404


def test_custom_and_garbage_catalog(broker: SampleBroker, client: httpx.Client) -> None:
    broker.catalog = generate_catalog(3, 2)
    assert len(client.get("/v2/catalog").json()["services"]) == 3
    broker.catalog = b"{not json"
    r = client.get("/v2/catalog")
    assert r.status_code == 200 and r.content == b"{not json"
    broker.catalog = "<html>oops</html>"
    assert client.get("/v2/catalog").text == "<html>oops</html>"
    broker.catalog = None
    assert len(client.get("/v2/catalog").json()["services"]) >= 6


# --------------------------------------------------------------------------- headers / auth


def test_api_version_header(client: httpx.Client) -> None:
    r = client.get("/v2/catalog", headers={"X-Broker-API-Version": ""})
    assert r.status_code == 412
    assert r.json()["error"] == "PreconditionFailed" and r.json()["description"]
    assert client.get("/v2/catalog", headers={"X-Broker-API-Version": "2.16"}).status_code == 412
    assert client.get("/v2/catalog", headers={"X-Broker-API-Version": "3.17"}).status_code == 412
    assert client.get("/v2/catalog", headers={"X-Broker-API-Version": "abc"}).status_code == 412
    assert client.get("/v2/catalog", headers={"X-Broker-API-Version": "2.18"}).status_code == 200
    with httpx.Client(base_url=str(client.base_url), verify=False) as bare:
        assert bare.get("/v2/catalog").status_code == 412


def test_basic_auth() -> None:
    with SampleBroker(username="admin", password="s3cret") as b:
        url = b.url + "/v2/catalog"
        r = get(url, headers=H)
        assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
        assert r.headers["www-authenticate"].startswith("Basic ")
        assert get(url, headers=H, auth=("admin", "wrong")).status_code == 401
        assert get(url, headers=H, auth=("other", "s3cret")).status_code == 401
        assert get(url, headers={**H, "Authorization": "Basic !!!"}).status_code == 401
        assert get(url, headers=H, auth=("admin", "s3cret")).status_code == 200
        # auth is checked before the version header
        assert get(url).status_code == 401
        # control endpoints never need auth
        assert get(b.url + "/__control__/requests").status_code == 200


# --------------------------------------------------------------------------- lifecycle


def test_sync_lifecycle(broker: SampleBroker, client: httpx.Client) -> None:
    body = provision_body(PG_SMALL, database_name="orders", storage_gb=20, backup={"enabled": True})
    r = client.put("/v2/service_instances/inst-1", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["dashboard_url"].endswith("/dashboard/inst-1")
    assert broker.instances["inst-1"]["plan_id"] == PG_SMALL
    assert broker.instances["inst-1"]["parameters"]["database_name"] == "orders"
    assert broker.instances["inst-1"]["context"] == {"platform": "catalog-portal"}

    # identical re-PUT -> 200, conflicting re-PUT -> 409
    assert client.put("/v2/service_instances/inst-1", json=body).status_code == 200
    conflict = client.put("/v2/service_instances/inst-1", json=provision_body(PG_SMALL, database_name="x"))
    assert conflict.status_code == 409 and conflict.json()["error"] == "Conflict"

    fetched = client.get("/v2/service_instances/inst-1")
    assert fetched.status_code == 200
    assert fetched.json()["service_id"] == POSTGRES_ID
    assert fetched.json()["parameters"]["storage_gb"] == 20
    assert fetched.json()["maintenance_info"]["version"] == "1.2.0"
    assert get(fetched.json()["dashboard_url"]).status_code == 200

    # update parameters (sync plan)
    r = client.patch(
        "/v2/service_instances/inst-1", json={"service_id": POSTGRES_ID, "parameters": {"storage_gb": 50}}
    )
    assert r.status_code == 200, r.text
    assert broker.instances["inst-1"]["parameters"] == {
        "database_name": "orders",
        "storage_gb": 50,
        "backup": {"enabled": True},
    }
    bad = client.patch(
        "/v2/service_instances/inst-1", json={"service_id": POSTGRES_ID, "parameters": {"storage_gb": 0}}
    )
    assert bad.status_code == 400 and "storage_gb" in bad.json()["description"]
    assert broker.instances["inst-1"]["parameters"]["storage_gb"] == 50

    # bind / fetch binding / unbind
    bind_body = {"service_id": POSTGRES_ID, "plan_id": PG_SMALL, "parameters": {"role": "readonly"}}
    r = client.put("/v2/service_instances/inst-1/service_bindings/bind-1", json=bind_body)
    assert r.status_code == 201, r.text
    creds = r.json()["credentials"]
    assert set(creds) >= {"uri", "username", "password", "host", "port"}
    assert creds["uri"].startswith("postgres://") and creds["port"] == 5432
    assert (
        client.put("/v2/service_instances/inst-1/service_bindings/bind-1", json=bind_body).status_code == 200
    )
    conflict = client.put(
        "/v2/service_instances/inst-1/service_bindings/bind-1",
        json={**bind_body, "parameters": {"role": "owner"}},
    )
    assert conflict.status_code == 409
    got = client.get("/v2/service_instances/inst-1/service_bindings/bind-1")
    assert got.status_code == 200 and got.json()["credentials"] == creds
    assert broker.bindings["bind-1"]["instance_id"] == "inst-1"
    lo = client.get("/v2/service_instances/inst-1/service_bindings/bind-1/last_operation")
    assert lo.status_code == 200 and lo.json()["state"] == "succeeded"

    q = {"service_id": POSTGRES_ID, "plan_id": PG_SMALL}
    assert client.delete("/v2/service_instances/inst-1/service_bindings/bind-1", params=q).status_code == 200
    assert "bind-1" not in broker.bindings
    assert client.delete("/v2/service_instances/inst-1/service_bindings/bind-1", params=q).status_code == 410
    assert client.get("/v2/service_instances/inst-1/service_bindings/bind-1").status_code == 404

    # deprovision, then 410
    assert client.delete("/v2/service_instances/inst-1", params=q).status_code == 200
    assert "inst-1" not in broker.instances
    gone = client.delete("/v2/service_instances/inst-1", params=q)
    assert gone.status_code == 410 and gone.json()["error"] == "Gone"
    assert client.get("/v2/service_instances/inst-1").status_code == 404
    assert client.delete("/v2/service_instances/inst-1").status_code == 400  # missing service_id/plan_id


def test_provision_validation_errors(client: httpx.Client) -> None:
    r = client.put("/v2/service_instances/x", json=provision_body(PG_HOBBY, database_name="Bad Name!"))
    assert r.status_code == 400
    assert r.json()["error"] and "database_name" in r.json()["description"]
    r = client.put("/v2/service_instances/x", json=provision_body(PG_HOBBY, version="9"))
    assert r.status_code == 400  # missing required database_name + bad enum
    r = client.put("/v2/service_instances/x", json={"service_id": POSTGRES_ID, "plan_id": "nope"})
    assert r.status_code == 400 and "plan" in r.json()["description"]
    r = client.put(
        "/v2/service_instances/x", content=b"not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    r = client.put(
        "/v2/service_instances/x", json={**provision_body(PG_SMALL), "maintenance_info": {"version": "0.1.0"}}
    )
    assert r.status_code == 422 and r.json()["error"] == "MaintenanceInfoConflict"


def test_plan_change_rules(broker: SampleBroker, client: httpx.Client) -> None:
    assert client.put("/v2/service_instances/pc", json=provision_body(PG_HOBBY)).status_code == 201
    r = client.patch("/v2/service_instances/pc", json={"service_id": POSTGRES_ID, "plan_id": PG_SMALL})
    assert r.status_code == 200
    assert broker.instances["pc"]["plan_id"] == PG_SMALL
    assert broker.instances["pc"]["maintenance_info"]["version"] == "1.2.0"
    assert client.patch("/v2/service_instances/missing", json={"service_id": POSTGRES_ID}).status_code == 404
    assert client.patch("/v2/service_instances/pc", json={}).status_code == 400


def test_async_provision_and_last_operation(broker: SampleBroker, client: httpx.Client) -> None:
    body = provision_body(DW_STARTER, service=ANALYTICS_ID, warehouse_name="sales")
    r = client.put("/v2/service_instances/dw-1", json=body)
    assert r.status_code == 422 and r.json()["error"] == "AsyncRequired"
    assert "dw-1" not in broker.instances

    broker.async_seconds = 0.25
    r = client.put("/v2/service_instances/dw-1", params={"accepts_incomplete": "true"}, json=body)
    assert r.status_code == 202, r.text
    operation = r.json()["operation"]
    assert operation and r.json()["dashboard_url"]
    # re-sent PUT while in progress -> 202 with the same operation
    again = client.put("/v2/service_instances/dw-1", params={"accepts_incomplete": "true"}, json=body)
    assert again.status_code == 202 and again.json()["operation"] == operation
    # fetch while provisioning -> 404; binding -> 422 ConcurrencyError
    assert client.get("/v2/service_instances/dw-1").status_code == 404

    def poll() -> bool:
        lo = client.get("/v2/service_instances/dw-1/last_operation", params={"operation": operation})
        assert lo.status_code == 200
        states.append(lo.json()["state"])
        if lo.json()["state"] == "in progress":
            assert lo.headers["Retry-After"] == "1"
        return bool(lo.json()["state"] != "in progress")

    states: list[str] = []
    wait_for(poll)
    assert states[0] == "in progress" and states[-1] == "succeeded"
    assert broker.instances["dw-1"]["state"] == "succeeded"
    assert client.get("/v2/service_instances/dw-1").status_code == 200
    # last_operation without operation -> latest op; unknown op -> 400
    assert client.get("/v2/service_instances/dw-1/last_operation").json()["state"] == "succeeded"
    assert (
        client.get("/v2/service_instances/dw-1/last_operation", params={"operation": "zzz"}).status_code
        == 400
    )
    assert client.get("/v2/service_instances/nope/last_operation").status_code == 404

    # async update
    broker.async_seconds = 0.1
    upd = {"service_id": ANALYTICS_ID, "parameters": {"compute_units": 8}}
    assert client.patch("/v2/service_instances/dw-1", json=upd).status_code == 422
    r = client.patch("/v2/service_instances/dw-1", params={"accepts_incomplete": "true"}, json=upd)
    assert r.status_code == 202
    assert "compute_units" not in broker.instances["dw-1"]["parameters"]
    op = r.json()["operation"]
    wait_for(
        lambda: (
            client.get("/v2/service_instances/dw-1/last_operation", params={"operation": op}).json()["state"]
            == "succeeded"
        )
    )
    assert broker.instances["dw-1"]["parameters"]["compute_units"] == 8

    # async bind
    bind = {"service_id": ANALYTICS_ID, "plan_id": DW_STARTER}
    r = client.put(
        "/v2/service_instances/dw-1/service_bindings/dwb", params={"accepts_incomplete": "true"}, json=bind
    )
    assert r.status_code == 202
    bop = r.json()["operation"]
    assert client.get("/v2/service_instances/dw-1/service_bindings/dwb").status_code == 404
    wait_for(
        lambda: (
            client.get(
                "/v2/service_instances/dw-1/service_bindings/dwb/last_operation", params={"operation": bop}
            ).json()["state"]
            == "succeeded"
        )
    )
    assert client.get("/v2/service_instances/dw-1/service_bindings/dwb").json()["credentials"]["uri"]

    # async deprovision -> 410 on last_operation once gone
    q = {"service_id": ANALYTICS_ID, "plan_id": DW_STARTER}
    assert client.delete("/v2/service_instances/dw-1", params=q).status_code == 422
    r = client.delete("/v2/service_instances/dw-1", params={**q, "accepts_incomplete": "true"})
    assert r.status_code == 202
    dop = r.json()["operation"]
    assert client.delete("/v2/service_instances/dw-1", params={**q, "accepts_incomplete": "true"}).json() == {
        "operation": dop
    }
    wait_for(
        lambda: (
            client.get("/v2/service_instances/dw-1/last_operation", params={"operation": dop}).status_code
            == 410
        )
    )
    assert "dw-1" not in broker.instances and "dwb" not in broker.bindings


def test_async_failure_outcome(broker: SampleBroker, client: httpx.Client) -> None:
    broker.async_seconds = 0.05
    broker.async_outcome = "failed"
    body = provision_body(PG_HA, database_name="ha")
    r = client.put("/v2/service_instances/f1", params={"accepts_incomplete": "true"}, json=body)
    assert r.status_code == 202
    lo = wait_for(
        lambda: (
            (resp := client.get("/v2/service_instances/f1/last_operation")).json()["state"] != "in progress"
            and resp
        )
    )
    assert lo.json()["state"] == "failed"
    assert broker.instances["f1"]["state"] == "failed"


def test_async_mode_knob(broker: SampleBroker, client: httpx.Client) -> None:
    broker.async_mode = "always"
    assert client.put("/v2/service_instances/m1", json=provision_body()).status_code == 422
    broker.async_mode = "never"
    assert (
        client.put("/v2/service_instances/m2", json=provision_body(PG_HA, database_name="a")).status_code
        == 201
    )


def test_syslog_drain_binding_and_non_bindable(client: httpx.Client) -> None:
    dev = plan_id("elasticsearch", "dev")
    assert (
        client.put(
            "/v2/service_instances/es", json=provision_body(dev, service=SEARCH_ID, shards=2)
        ).status_code
        == 201
    )
    r = client.put(
        "/v2/service_instances/es/service_bindings/esb", json={"service_id": SEARCH_ID, "plan_id": dev}
    )
    assert r.status_code == 201
    assert r.json()["syslog_drain_url"].startswith("syslog-tls://")
    status = plan_id("status-page", "basic")
    sp_id = build_catalog()["services"][-1]["id"]
    assert (
        client.put("/v2/service_instances/sp", json=provision_body(status, service=sp_id)).status_code == 201
    )
    r = client.put(
        "/v2/service_instances/sp/service_bindings/spb", json={"service_id": sp_id, "plan_id": status}
    )
    assert r.status_code == 400


# --------------------------------------------------------------------------- scripting


def test_set_response_times_and_methods(broker: SampleBroker, client: httpx.Client) -> None:
    broker.set_response("GET", r"/v2/catalog", 500, body={"error": "Boom", "description": "down"}, times=2)
    assert client.get("/v2/catalog").status_code == 500
    assert client.get("/v2/catalog").json() == {"error": "Boom", "description": "down"}
    assert client.get("/v2/catalog").status_code == 200  # used up
    broker.set_response(
        "PUT", r"/v2/service_instances/[^/]+", 503, body="<html>", headers={"Retry-After": "7"}
    )
    r = client.put("/v2/service_instances/a", json=provision_body())
    assert r.status_code == 503 and r.text == "<html>" and r.headers["Retry-After"] == "7"
    assert client.put("/v2/service_instances/b", json=provision_body()).status_code == 503
    # path must fully match: bindings are unaffected; GET is unaffected
    assert client.get("/v2/catalog").status_code == 200
    # the most recently added script wins
    broker.set_response("*", r"/v2/service_instances/.*", 418, body=b"teapot", times=1)
    assert client.put("/v2/service_instances/c", json=provision_body()).status_code == 418
    broker.clear_responses()
    assert client.put("/v2/service_instances/d", json=provision_body()).status_code == 201
    # scripted responses bypass auth and version checks
    broker.set_response("GET", "/v2/catalog", 200, body={"services": []})
    with httpx.Client(base_url=broker.url, verify=False) as bare:
        assert bare.get("/v2/catalog").json() == {"services": []}


def test_set_response_delay(broker: SampleBroker) -> None:
    broker.set_response("GET", "/v2/catalog", 200, body={"services": []}, delay=2.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        get(broker.url + "/v2/catalog", headers=H, timeout=0.3)
    start = time.monotonic()
    broker.set_response("GET", "/v2/catalog", 200, body={"services": []}, delay=0.2, times=1)
    assert get(broker.url + "/v2/catalog", headers=H, timeout=5).json() == {"services": []}
    assert time.monotonic() - start >= 0.2


def test_stop_does_not_wait_for_delayed_responses() -> None:
    broker = SampleBroker().start()
    broker.set_response("GET", "/v2/catalog", 200, delay=30)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(get(broker.url + "/v2/catalog", headers=H, timeout=10).status_code)
        except httpx.HTTPError as exc:  # either answer early or drop the connection
            outcome.append(exc)

    t = threading.Thread(target=call)
    t.start()
    wait_for(lambda: broker.requests)
    start = time.monotonic()
    broker.stop()
    assert time.monotonic() - start < 3
    t.join(5)
    assert outcome and not t.is_alive()


# --------------------------------------------------------------------------- etag


def test_etag_and_last_modified(broker: SampleBroker, client: httpx.Client) -> None:
    r = client.get("/v2/catalog")
    assert "etag" not in r.headers
    assert client.get("/v2/catalog", headers={"If-None-Match": '"x"'}).status_code == 200

    broker.etag_support = True
    r = client.get("/v2/catalog")
    etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
    assert etag.startswith('"')
    not_modified = client.get("/v2/catalog", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    assert client.get("/v2/catalog", headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
    assert client.get("/v2/catalog", headers={"If-None-Match": '"stale"'}).status_code == 200
    assert client.get("/v2/catalog", headers={"If-Modified-Since": last_modified}).status_code == 304
    assert (
        client.get("/v2/catalog", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code
        == 200
    )
    # a new catalog changes the ETag
    broker.catalog = generate_catalog(2, 1)
    r = client.get("/v2/catalog", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.headers["ETag"] != etag


# --------------------------------------------------------------------------- recording


def test_request_recording(broker: SampleBroker, client: httpx.Client) -> None:
    client.put(
        "/v2/service_instances/rec",
        params={"accepts_incomplete": "true"},
        json=provision_body(),
        headers={"X-Broker-API-Originating-Identity": "cloudfoundry eyJ1c2VyX2lkIjoiYWJjIn0="},
    )
    client.get("/v2/catalog")
    reqs = broker.requests
    assert [(r.method, r.path) for r in reqs] == [
        ("PUT", "/v2/service_instances/rec"),
        ("GET", "/v2/catalog"),
    ]
    put = reqs[0]
    assert put.query == {"accepts_incomplete": "true"}
    assert put.json["service_id"] == POSTGRES_ID
    assert json.loads(put.body) == put.json
    assert put.headers.get("x-broker-api-version") == "2.17"
    assert put.headers["X-BROKER-API-ORIGINATING-IDENTITY"].startswith("cloudfoundry ")
    assert "Content-Type" in put.headers
    assert put.at <= time.time()
    assert reqs[1].json is None and reqs[1].body == b""
    assert broker.requests_for("GET", "/v2/catalog") == [reqs[1]]
    broker.clear_requests()
    assert broker.requests == []


def test_headers_case_insensitive() -> None:
    h = Headers({"Content-Type": "a"})
    assert h["content-type"] == "a" and h.get("CONTENT-TYPE") == "a" and "content-TYPE" in h
    assert h.get("missing") is None and "missing" not in h
    with pytest.raises(KeyError):
        h["missing"]


def test_concurrent_requests_are_recorded(broker: SampleBroker) -> None:
    def hit(i: int) -> None:
        get(broker.url + "/v2/catalog", headers=H)

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(broker.requests) == 12


# --------------------------------------------------------------------------- control endpoints


def test_control_endpoints(broker: SampleBroker, client: httpx.Client) -> None:
    ctl = httpx.Client(base_url=broker.url + "/__control__", timeout=5, verify=False)
    client.get("/v2/catalog")
    recorded = ctl.get("/requests").json()
    assert [(r["method"], r["path"]) for r in recorded] == [("GET", "/v2/catalog")]
    assert recorded[0]["headers"]["X-Broker-API-Version"] == "2.17"
    assert ctl.delete("/requests").status_code == 200
    assert ctl.get("/requests").json() == []

    assert ctl.post("/catalog", json=generate_catalog(4, 1)).status_code == 200
    assert len(client.get("/v2/catalog").json()["services"]) == 4
    ctl.post("/catalog", content=b"garbage", headers={"Content-Type": "text/plain"})
    assert client.get("/v2/catalog").content == b"garbage"
    assert ctl.delete("/catalog").status_code == 200
    assert len(client.get("/v2/catalog").json()["services"]) >= 6

    r = ctl.post("/responses", json={"method": "GET", "path": "/v2/catalog", "status": 502, "times": 1})
    assert r.status_code == 201
    assert client.get("/v2/catalog").status_code == 502
    assert client.get("/v2/catalog").status_code == 200
    ctl.post("/responses", json={"method": "GET", "path": "/v2/catalog", "status": 504, "body": {"x": 1}})
    assert client.get("/v2/catalog").json() == {"x": 1}
    assert ctl.delete("/responses").status_code == 200
    assert client.get("/v2/catalog").status_code == 200
    assert ctl.post("/responses", json={"path": "("}).status_code == 400

    assert (
        ctl.post("/settings", json={"etag_support": True, "async_seconds": 0.1}).json()["etag_support"]
        is True
    )
    assert broker.async_seconds == 0.1 and "ETag" in client.get("/v2/catalog").headers
    client.put("/v2/service_instances/ctl", json=provision_body())
    assert "ctl" in ctl.get("/state").json()["instances"]
    # control traffic is neither recorded nor subject to scripted responses
    broker.set_response("*", r"/__control__/.*", 500)
    assert ctl.get("/requests").status_code == 200
    assert all(not r.path.startswith("/__control__") for r in broker.requests)
    assert ctl.post("/reset").status_code == 200
    assert broker.instances == {} and broker.requests == []
    assert ctl.get("/nope").status_code == 404
    ctl.close()


def test_unknown_routes(client: httpx.Client) -> None:
    assert client.get("/v2/nope").status_code == 404
    assert client.get("/elsewhere").status_code == 404
    assert client.post("/v2/catalog").status_code == 405
    assert client.get("/").json()["osb_api_version"] == "2.17"


def test_context_manager_and_url() -> None:
    b = SampleBroker(port=0)
    with b as started:
        assert started is b
        assert b.url.startswith("http://127.0.0.1:") and b.port > 0
        assert get(b.url + "/v2/catalog", headers=H).status_code == 200
    with pytest.raises(httpx.ConnectError):
        get(b.url + "/v2/catalog", headers=H, timeout=1)
