"""Broker insight over the REST API: sync history with diffs, the conformance scorecard, who may see them, and the
OpenAPI document describing them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from brokers import services
from brokers.conformance.behaviour import BEHAVIOUR_CHECKS
from brokers.conformance.catalog import CATALOG_CHECKS
from brokers.models import Broker, CatalogSync
from devtools.sample_broker import SampleBroker, build_catalog
from tests.conftest import BROKER_PASSWORD, BROKER_USER, alias_url, with_catalog_ids_prefixed

pytestmark = pytest.mark.django_db

EMPTY = {"added": [], "removed": [], "changed": []}


def registered(url: str, name: str = "test-broker") -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    broker = services.broker_register(name=name, url=url, auth=auth)
    assert services.catalog_sync(broker_id=broker.pk, force=True).outcome == CatalogSync.Outcome.CHANGED
    return broker


@pytest.fixture
def history(osb_broker: SampleBroker) -> tuple[Broker, list[CatalogSync]]:
    """Three syncs: the first mirror, an unchanged relist, then one plan's description changed."""
    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    broker = registered(osb_broker.url)
    services.catalog_sync(broker_id=broker.pk, force=True)
    changed = copy.deepcopy(catalog)
    changed["services"][0]["plans"][0]["description"] = "Now with more storage."
    osb_broker.catalog = changed
    services.catalog_sync(broker_id=broker.pk, force=True)
    return broker, list(CatalogSync.objects.filter(broker=broker).order_by("-started_at"))


def test_syncs_are_listed_newest_first_with_their_diff(admin_api: APIClient, history: Any) -> None:
    broker, syncs = history

    response = admin_api.get(f"/api/v1/brokers/{broker.pk}/syncs/")

    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (3, None, None)
    assert [s["id"] for s in body["results"]] == [str(s.pk) for s in syncs]
    latest, unchanged, first = body["results"]
    assert set(latest) == {"id", "trigger", "outcome", "started_at", "finished_at", "duration_ms", "error", "diff"}
    assert (latest["trigger"], latest["outcome"], latest["error"]) == ("periodic", "changed", "")
    plan = syncs[0].diff["plans"]["changed"][0]
    assert latest["diff"] == {"services": EMPTY, "plans": {**EMPTY, "changed": [{
        "catalog_id": plan["catalog_id"], "name": "hobby", "service": "postgresql", "affected_instances": 0,
        "fields": ["description"]}]}}
    assert unchanged["outcome"] == "unchanged" and unchanged["diff"] == {"services": EMPTY, "plans": EMPTY}
    assert first["trigger"] == "registration" and len(first["diff"]["services"]["added"]) == 7
    assert isinstance(first["duration_ms"], int) and first["finished_at"]


def test_the_sync_list_is_paginated(admin_api: APIClient, history: Any) -> None:
    broker, syncs = history

    page = admin_api.get(f"/api/v1/brokers/{broker.pk}/syncs/?page_size=2&page=2").json()

    assert page["count"] == 3 and page["next"] is None and page["previous"]
    assert [s["id"] for s in page["results"]] == [str(syncs[2].pk)]


def test_one_sync(admin_api: APIClient, history: Any, osb_broker: SampleBroker) -> None:
    broker, syncs = history
    osb_broker.catalog = with_catalog_ids_prefixed(build_catalog(osb_broker.url), "other-")
    other = registered(alias_url(osb_broker.url), name="other")
    other_sync = CatalogSync.objects.get(broker=other)

    response = admin_api.get(f"/api/v1/brokers/{broker.pk}/syncs/{syncs[0].pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == str(syncs[0].pk) and response.json()["diff"]["plans"]["changed"]
    missing = admin_api.get(f"/api/v1/brokers/{broker.pk}/syncs/{other_sync.pk}/")  # another broker's sync
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No CatalogSync matches the given query.", "code": "not_found"}


def test_the_scorecard(admin_api: APIClient, history: Any) -> None:
    broker, _ = history

    response = admin_api.get(f"/api/v1/brokers/{broker.pk}/conformance/")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"score", "checked_at", "checks"} and 0 <= body["score"] <= 100
    assert [c["id"] for c in body["checks"]] == [c.id for c in [*CATALOG_CHECKS, *BEHAVIOUR_CHECKS]]
    for check in body["checks"]:
        assert set(check) == {"id", "title", "level", "passed", "detail", "spec"}
        assert check["level"] in ("error", "warning", "info") and check["passed"] in (True, False, None)
    by_id = {c["id"]: c for c in body["checks"]}
    # The sample catalog's status-page service lacks some profile metadata; its author is told what to add.
    assert by_id["catalog.service-metadata"]["passed"] is False
    assert "service 'status-page' lacks metadata.longDescription" in by_id["catalog.service-metadata"]["detail"]
    assert by_id["behaviour.reachable"]["passed"] is True  # the catalog syncs were answered
    assert by_id["behaviour.error-codes"] == {**by_id["behaviour.error-codes"], "passed": None,
                                              "detail": "Not observed yet: no 422 answer in the last 7 days."}
    broker.refresh_from_db()
    assert broker.conformance_score == body["score"]  # the last sync's snapshot (the broker list's badge)


@pytest.mark.parametrize("path", ["syncs/", "conformance/"])
def test_only_platform_admins_see_broker_insight(path: str, alice_api: APIClient, admin_api: APIClient,
                                                 history: Any) -> None:
    broker, _ = history
    url = f"/api/v1/brokers/{broker.pk}/{path}"

    assert APIClient().get(url).status_code == 401
    denied = alice_api.get(url)
    assert denied.status_code == 403 and "detail" in denied.json()
    missing = admin_api.get("/api/v1/brokers/00000000-0000-0000-0000-000000000000/" + path)
    assert missing.status_code == 404


def test_the_broker_body_carries_its_restrictions_and_score(admin_api: APIClient, history: Any) -> None:
    broker, _ = history

    body = admin_api.get(f"/api/v1/brokers/{broker.pk}/").json()

    assert body["catalog_restrictions"] == {"services": [], "plans": []}
    assert isinstance(body["conformance_score"], int)


# --- the OpenAPI document -----------------------------------------------------------------------------------------


@pytest.fixture
def openapi(admin_api: APIClient) -> dict[str, Any]:
    response = admin_api.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def _component(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in ref or "allOf" in ref:
        ref = ref["allOf"][0] if "allOf" in ref else document["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
    return ref


def test_openapi_describes_broker_insight(openapi: dict[str, Any]) -> None:
    paths, schemas = openapi["paths"], openapi["components"]["schemas"]
    syncs = paths["/api/v1/brokers/{broker_id}/syncs/"]["get"]
    sync = paths["/api/v1/brokers/{broker_id}/syncs/{sync_id}/"]["get"]
    conformance = paths["/api/v1/brokers/{broker_id}/conformance/"]["get"]
    for operation in (syncs, sync, conformance):
        assert {"200", "401", "403", "404"} <= set(operation["responses"])
        error = operation["responses"]["403"]["content"]["application/json"]["schema"]
        assert set(_component(openapi, error)["properties"]) == {"detail", "code"}

    page = _component(openapi, syncs["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(page["properties"]) == {"count", "next", "previous", "results"}
    assert {"page", "page_size"} <= {p["name"] for p in syncs["parameters"]}
    item = _component(openapi, page["properties"]["results"]["items"])
    assert set(item["properties"]) == {"id", "trigger", "outcome", "started_at", "finished_at", "duration_ms",
                                       "error", "diff"}
    assert _component(openapi, item["properties"]["outcome"])["enum"] == ["running", "changed", "unchanged", "failed"]
    diff = _component(openapi, item["properties"]["diff"])
    changes = _component(openapi, diff["properties"]["plans"])
    entry = _component(openapi, changes["properties"]["added"]["items"])
    assert set(entry["required"]) == {"catalog_id", "name", "affected_instances"}
    assert {"fields", "service", "schemas", "reason"} <= set(entry["properties"])

    report = _component(openapi, conformance["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(report["properties"]) == {"score", "checked_at", "checks"}
    check = _component(openapi, report["properties"]["checks"]["items"])
    assert set(check["properties"]) == {"id", "title", "level", "passed", "detail", "spec"}
    assert check["properties"]["passed"]["nullable"] is True
    assert {"CatalogSync", "CatalogDiff", "CatalogDiffEntry", "ConformanceReport", "ConformanceCheck",
            "CatalogRestrictions", "Error"} <= set(schemas)

    broker_in = _component(openapi, paths["/api/v1/brokers/"]["post"]["requestBody"]["content"]["application/json"]
                           ["schema"])
    restrictions = _component(openapi, broker_in["properties"]["catalog_restrictions"])
    assert set(restrictions["properties"]) == {"services", "plans"}
    assert "400" in paths["/api/v1/brokers/"]["post"]["responses"]
