"""Behaviour conformance checks from the calls the engine recorded: each passes when the HTTP test broker behaves
and fails when it is scripted to break it. Operations are stepped in-process against the broker over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokers import selectors
from brokers import services as broker_services
from brokers.conformance import CheckResult, behaviour
from brokers.conformance.behaviour import BEHAVIOUR_CHECKS, ObservedCall, check_behaviour
from brokers.models import Broker
from devtools.sample_broker import SampleBroker
from devtools.sample_broker.server import PASS_THROUGH
from instances.models import ServiceInstance
from instances.services.bindings import binding_create, binding_delete
from instances.services.instances import instance_deprovision, instance_provision
from tests.conftest import free_port
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

INSTANCE = r"/v2/service_instances/[^/]+"
LAST_OPERATION = INSTANCE + "/last_operation"
SLOW_MS = 2000  # the thresholds the slow scenarios cross (the defaults would make the tests slow)


def provision(broker: Broker, service: str, plan_name: str, name: str) -> ServiceInstance:
    instance = instance_provision(plan=plan(broker, service, plan_name), name=name, namespace="team-a")
    run_operations()
    instance.refresh_from_db()
    return instance


def synchronous(broker: Broker, name: str = "cache") -> ServiceInstance:
    return provision(broker, "redis-cache", "cache-free", name)


def asynchronous(broker: Broker, name: str = "cache-ha") -> ServiceInstance:
    return provision(broker, "redis-cache", "cache-8gb-ha", name)


def deprovision(instance: ServiceInstance) -> None:
    instance_deprovision(instance=instance)
    run_operations()


def normal_life(osb: SampleBroker, broker: Broker) -> None:
    """Provision (synchronously and asynchronously, polled a few times), bind, unbind, deprovision."""
    osb.async_seconds = 0.3
    cache, ha = synchronous(broker), asynchronous(broker)
    assert (cache.state, ha.state) == ("ready", "ready")
    binding = binding_create(instance=cache, name="app", namespace="team-a")
    run_operations()
    binding_delete(binding=binding)
    run_operations()
    deprovision(cache)
    deprovision(ha)


def script(method: str, path: str, status: int, body: Any = None, **options: Any) -> Callable[[SampleBroker, Broker],
                                                                                               None]:
    """A scenario: the broker answers `method path` so (once unless `times`) during an asynchronous provision that
    takes `async_seconds` (0.3 unless given)."""
    def run(osb: SampleBroker, broker: Broker) -> None:
        knobs = {"times": 1, **options}
        osb.async_seconds = knobs.pop("async_seconds", 0.3)
        osb.set_response(method, path, status, body, **knobs)
        asynchronous(broker)
    return run


def slow_catalog(osb: SampleBroker, broker: Broker) -> None:
    osb.set_response("GET", "/v2/catalog", PASS_THROUGH, delay=SLOW_MS / 1000 + 0.5)
    Broker.objects.filter(pk=broker.pk).update(catalog_digest="")
    broker_services.catalog_sync(broker_id=broker.pk, force=True)


def slow_provision(osb: SampleBroker, broker: Broker) -> None:
    osb.set_response("PUT", INSTANCE, PASS_THROUGH, delay=SLOW_MS / 1000 + 0.5, times=1)
    synchronous(broker)


def gone_while_deleting(osb: SampleBroker, broker: Broker) -> None:
    ha = asynchronous(broker)
    osb.set_response("GET", LAST_OPERATION, 410, {}, times=1)
    deprovision(ha)


def unreachable(osb: SampleBroker, broker: Broker) -> None:
    """The catalog URL moves to a port where nothing listens: the relists go unanswered."""
    Broker.objects.filter(pk=broker.pk).update(url=f"http://127.0.0.1:{free_port()}")
    for _ in range(2):
        broker_services.catalog_sync(broker_id=broker.pk, force=True)


GOOD_ERROR = {"description": "Another operation is in progress.", "error": "ConcurrencyError"}

# check id -> (a scenario the check passes on, one it fails on, what its detail says then)
CASES: dict[str, tuple[Callable[..., None], Callable[..., None], str]] = {
    "behaviour.answer-shapes": (normal_life, script("PUT", INSTANCE, 201, {"dashboard_url": 5}),
                                "'dashboard_url' should be a string"),
    "behaviour.last-operation-states": (normal_life, script("GET", LAST_OPERATION, 200, {"state": "done"}),
                                        "has no valid state"),
    "behaviour.error-codes": (script("PUT", INSTANCE, 422, GOOD_ERROR),
                              script("PUT", INSTANCE, 422, {"description": "Not now."}), "with error None"),
    "behaviour.error-bodies": (script("PUT", INSTANCE, 400, {"description": "The size is too big."}),
                               script("PUT", INSTANCE, 400, "bad size"), "answered 400 without a JSON description"),
    "behaviour.retry-after-throttling": (
        script("GET", LAST_OPERATION, 429, {"description": "Slow down."}, headers={"Retry-After": "1"}),
        script("GET", LAST_OPERATION, 429, {"description": "Slow down."}), "answered 429 without Retry-After"),
    "behaviour.retry-after-polling": (normal_life, script("GET", LAST_OPERATION, 200, {"state": "in progress"},
                                                          times=3, async_seconds=0), "never sent Retry-After"),
    "behaviour.async-when-slow": (normal_life, slow_provision, "answered 201 after"),
    "behaviour.server-errors": (normal_life, script("GET", LAST_OPERATION, 503, {"description": "Down."}, times=3),
                                "answered 5xx"),
    "behaviour.reachable": (normal_life, unreachable, "got no answer"),
    "behaviour.latency": (normal_life, slow_catalog, "catalog: 95 % of answers within"),
    "behaviour.orphan-mitigation": (normal_life, script("PUT", INSTANCE, 500, {"description": "Oops."}),
                                    "1 orphan mitigation(s)"),
    "behaviour.gone-only-for-deletes": (gone_while_deleting, script("GET", LAST_OPERATION, 410, {}),
                                        "answered 410 while provision"),
}


@pytest.fixture
def thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lower the slowness thresholds for the scenarios that cross them (the defaults would make the tests slow);
    the scenarios that behave are judged by the defaults."""
    monkeypatch.setattr(behaviour, "SLOW_SYNC_MS", SLOW_MS)
    monkeypatch.setattr(behaviour, "SLOW_P95_MS", SLOW_MS)


def result(broker: Broker, check_id: str) -> CheckResult:
    return next(c for c in selectors.broker_conformance(broker=broker).checks if c.id == check_id)


def test_every_behaviour_check_has_a_scenario() -> None:
    assert {c.id for c in BEHAVIOUR_CHECKS} == set(CASES)


@pytest.mark.parametrize("check_id", list(CASES))
def test_a_behaviour_check_passes_on_a_broker_that_behaves(check_id: str, osb_broker: SampleBroker,
                                                           direct: Broker) -> None:
    good, _, _ = CASES[check_id]
    good(osb_broker, direct)

    checked = result(direct, check_id)

    assert checked.passed is True, checked.detail


@pytest.mark.parametrize("check_id", list(CASES))
@pytest.mark.usefixtures("thresholds")
def test_a_behaviour_check_fails_on_a_broker_scripted_to_break_it(check_id: str, osb_broker: SampleBroker,
                                                                  direct: Broker) -> None:
    _, bad, problem = CASES[check_id]
    bad(osb_broker, direct)

    checked = result(direct, check_id)

    assert checked.passed is False, checked.detail
    assert problem in checked.detail
    definition = next(c for c in BEHAVIOUR_CHECKS if c.id == check_id)
    assert definition.fix in checked.detail and f"The spec: “{definition.quote}”" in checked.detail


def test_without_calls_the_behaviour_checks_are_not_observed_yet() -> None:
    results = check_behaviour([])
    assert [r.passed for r in results] == [None] * len(BEHAVIOUR_CHECKS)
    assert all(r.detail.startswith("Not observed yet: no ") for r in results)


def test_only_the_calls_of_the_last_days_count(osb_broker: SampleBroker, direct: Broker) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from brokers.models import CatalogSync
    from instances.models import OperationCall

    script("PUT", INSTANCE, 500, {"description": "Oops."})(osb_broker, direct)
    assert result(direct, "behaviour.orphan-mitigation").passed is False
    old = timezone.now() - timedelta(days=behaviour.WINDOW_DAYS, minutes=1)
    OperationCall.objects.update(at=old)
    CatalogSync.objects.update(started_at=old)

    assert result(direct, "behaviour.orphan-mitigation").passed is None


def test_the_call_kind_comes_from_method_and_path() -> None:
    base = "/broker/v2/service_instances/i-1"
    kinds = {(m, p): ObservedCall(m, p, 200, 1).kind for m, p in [
        ("GET", "/broker/v2/catalog"), ("PUT", base + "?accepts_incomplete=true"), ("PATCH", base),
        ("DELETE", base + "?service_id=s&plan_id=p"), ("GET", base), ("GET", base + "/last_operation?operation=x"),
        ("PUT", base + "/service_bindings/b-1"), ("DELETE", base + "/service_bindings/b-1"),
        ("GET", base + "/service_bindings/b-1"), ("GET", base + "/service_bindings/b-1/last_operation"),
        ("POST", base)]}
    assert list(kinds.values()) == ["catalog", "provision", "update", "deprovision", "fetch_instance",
                                    "last_operation", "bind", "unbind", "fetch_binding", "binding_last_operation", ""]
