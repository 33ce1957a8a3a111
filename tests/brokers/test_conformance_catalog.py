"""Catalog conformance checks against the HTTP test broker: each passes on a well-behaved catalog and fails on one
scripted to break it, naming what to fix and quoting the spec."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from brokers import selectors
from brokers.conformance import CheckResult, score
from brokers.conformance.catalog import CATALOG_CHECKS
from brokers.models import Broker, CatalogSync
from devtools.sample_broker import SampleBroker, build_catalog
from tests.brokers.test_catalog_sync import register, sync

pytestmark = pytest.mark.django_db

SCHEMA = "http://json-schema.org/draft-04/schema#"


def well_behaved(base_url: str) -> dict[str, Any]:
    """The sample catalog, with the profile metadata its minimal status-page service leaves out."""
    catalog = build_catalog(base_url)
    status = next(s for s in catalog["services"] if s["name"] == "status-page")
    status["metadata"].update(longDescription="Tell your users what is up.", documentationUrl="https://example.com/d",
                              supportUrl="https://example.com/s")
    status["plans"][0]["metadata"]["bullets"] = ["10 components"]
    return catalog


def _service(c: dict[str, Any], name: str = "postgresql") -> dict[str, Any]:
    return next(s for s in c["services"] if s["name"] == name)


def _plan(c: dict[str, Any], service: str = "postgresql", index: int = 0) -> dict[str, Any]:
    return _service(c, service)["plans"][index]


BREAKERS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "catalog.required-fields": (lambda c: _plan(c).pop("description"), "plan 'hobby' lacks description"),
    "catalog.unique-service-ids": (lambda c: _service(c, "redis-cache").update(id=_service(c)["id"]),
                                   "is used 2 times"),
    "catalog.unique-plan-ids": (lambda c: _plan(c, "redis-cache").update(id=_plan(c)["id"]), "is used 2 times"),
    "catalog.unique-service-names": (lambda c: _service(c, "redis-cache").update(name="postgresql"),
                                     "service name 'postgresql' is used 2 times"),
    "catalog.unique-plan-names": (lambda c: _plan(c, index=1).update(name="hobby"), "plan name 'hobby' is used 2"),
    "catalog.cli-friendly-names": (lambda c: _plan(c).update(name="Hobby Plan"), "'Hobby Plan' is not CLI-friendly"),
    "catalog.guid-ids": (lambda c: _service(c).update(id="postgres-1"), "id 'postgres-1' is not a GUID"),
    "catalog.string-length": (lambda c: _plan(c).update(description="x" * 300), "its description has 300 characters"),
    "catalog.field-types": (lambda c: _plan(c).update(free="yes"), "'free' is not true or false"),
    "catalog.requires": (lambda c: _service(c).update(requires=["network_access"]), "requires 'network_access'"),
    "catalog.tags": (lambda c: _service(c).update(tags=[]), "service 'postgresql' has no tags"),
    "catalog.service-metadata": (lambda c: _service(c)["metadata"].pop("supportUrl"), "lacks metadata.supportUrl"),
    "catalog.metadata-urls": (lambda c: _service(c)["metadata"].update(documentationUrl="docs.example.com"),
                              "metadata.documentationUrl 'docs.example.com' is not an http(s) URL"),
    "catalog.plan-metadata": (lambda c: _plan(c)["metadata"].pop("bullets"), "lacks metadata.bullets"),
    "catalog.cost-objects": (lambda c: _plan(c, index=1)["metadata"].update(costs=[{"amount": {"usd": "9"},
                                                                                     "unit": "MONTHLY"}]),
                             "a cost amount is not a number"),
    "catalog.paid-plans-priced": (lambda c: _plan(c, index=1)["metadata"].pop("costs"),
                                  "plan 'standard-small' is not free but lists no cost"),
    "catalog.schemas": (lambda c: _plan(c).update(schemas={"service_instance": {"create": {"parameters": {
        "type": "object"}}}}), "the schema must declare its JSON Schema version"),
    "catalog.maintenance-info": (lambda c: _plan(c, index=1).update(maintenance_info={"version": "latest"}),
                                 "maintenance_info.version 'latest' is not a semantic version"),
    "catalog.maintenance-description": (lambda c: _plan(c, index=1)["maintenance_info"].pop("description"),
                                        "maintenance_info has no description"),
    "catalog.bindable-consistency": (
        lambda c: _plan(c, "status-page").update(schemas={"service_binding": {"create": {"parameters": {
            "$schema": SCHEMA, "type": "object"}}}}), "plan 'basic' is not bindable but has a binding schema"),
    "catalog.updateable-consistency": (lambda c: _plan(c, "status-page").update(plan_updateable=True),
                                       "says plan_updateable but is the only plan of its service"),
    "catalog.polling-duration": (lambda c: _plan(c).update(maximum_polling_duration=-5),
                                 "maximum_polling_duration -5 is not a positive whole number"),
    "catalog.dashboard-client": (lambda c: _service(c).update(dashboard_client={"id": "client"}),
                                 "dashboard_client lacks secret"),
}


def check(broker: Broker, check_id: str) -> CheckResult:
    return next(c for c in selectors.broker_conformance(broker=broker).checks if c.id == check_id)


def test_every_catalog_check_has_a_scripted_failure() -> None:
    assert {c.id for c in CATALOG_CHECKS} == {"catalog.document", *BREAKERS}
    assert len(CATALOG_CHECKS) >= 15


def test_a_well_behaved_catalog_passes_every_catalog_check(osb_broker: SampleBroker) -> None:
    osb_broker.catalog = well_behaved(osb_broker.url)
    broker = register(osb_broker.url)
    sync(broker)

    catalog_checks = [c for c in selectors.broker_conformance(broker=broker).checks if c.id.startswith("catalog.")]

    assert [(c.id, c.passed, c.detail) for c in catalog_checks if not c.passed] == []
    assert len(catalog_checks) == len(CATALOG_CHECKS)


@pytest.mark.parametrize("check_id", list(BREAKERS))
def test_a_catalog_check_fails_on_a_catalog_that_breaks_it(check_id: str, osb_broker: SampleBroker) -> None:
    catalog = well_behaved(osb_broker.url)
    osb_broker.catalog = catalog
    broker = register(osb_broker.url)
    sync(broker)
    assert check(broker, check_id).passed is True
    broken = copy.deepcopy(catalog)
    breaker, problem = BREAKERS[check_id]
    breaker(broken)
    osb_broker.catalog = broken

    sync(broker)  # some of these the mirror refuses: the scorecard checks the rejected catalog all the same

    result = check(broker, check_id)
    assert result.passed is False
    assert problem in result.detail
    definition = next(c for c in CATALOG_CHECKS if c.id == check_id)
    assert definition.fix in result.detail and f"The spec: “{definition.quote}”" in result.detail
    assert result.spec.startswith("OSB v2.17 ")


def test_a_catalog_that_is_not_json_fails_the_document_check(osb_broker: SampleBroker) -> None:
    osb_broker.catalog = well_behaved(osb_broker.url)
    broker = register(osb_broker.url)
    sync(broker)
    assert check(broker, "catalog.document").passed is True
    osb_broker.catalog = b"<html>Maintenance</html>"

    record = sync(broker)

    assert record.outcome == CatalogSync.Outcome.FAILED
    report = selectors.broker_conformance(broker=broker)
    document = next(c for c in report.checks if c.id == "catalog.document")
    assert document.passed is False and "not valid JSON" in document.detail
    assert all(c.passed is None for c in report.checks if c.id.startswith("catalog.") and c is not document)


def test_before_any_catalog_the_checks_are_not_observed(osb_broker: SampleBroker) -> None:
    broker = register(osb_broker.url)

    report = selectors.broker_conformance(broker=broker)

    assert report.score == 0
    assert all(c.passed is None and c.detail.startswith("Not observed yet") for c in report.checks)


def test_the_score_weighs_errors_over_warnings_over_info() -> None:
    def result(level: str, passed: bool | None) -> CheckResult:
        return CheckResult("x", "x", level, passed, "", "")

    assert score([]) == 0
    assert score([result("error", True), result("warning", None)]) == 100
    assert score([result("error", True), result("warning", False), result("info", False)]) == 62  # 5 / 8
    assert score([result("error", False), result("warning", True), result("info", True)]) == 37  # 3 / 8


def test_the_docs_list_every_check() -> None:
    from pathlib import Path

    from brokers.conformance.behaviour import BEHAVIOUR_CHECKS

    docs = (Path(__file__).resolve().parents[2] / "docs" / "broker-insight.md").read_text()
    for definition in [*CATALOG_CHECKS, *BEHAVIOUR_CHECKS]:
        assert f"| `{definition.id}` | {definition.level} |" in docs, definition.id
