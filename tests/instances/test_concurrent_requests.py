"""Concurrent requests on one instance or binding, for real: threads released together by a barrier against the
live server (its own thread per request, its own database connection each), a real worker sending to the test
broker. Whatever the interleaving, each operation the broker receives belongs to exactly one accepted (202)
request, nothing is sent for an object after its delete was accepted, the losers get 409 (naming the running
operation) or 404 (naming the operation that deleted it), and there is one audit row per accepted request.

Runs on SQLite (the embedded default) and on Postgres alike (DATABASE_URL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.states import ACTIVE
from teams.models import AuditRecord
from tests.conftest import wait_for
from tests.instances.helpers import mirrored_broker, plan

pytestmark = [pytest.mark.e2e]

N = 10
INSTANCE = r"/v2/service_instances/[^/]+"
BINDING = r"/v2/service_instances/[^/]+/service_bindings/[^/]+"


class Portal:
    """The live server, as one signed-in API client per thread."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def client(self, request_id: str = "") -> httpx.Client:
        headers = {"Authorization": f"Token {self.token}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def get(self, path: str) -> httpx.Response:
        with self.client() as client:
            return client.get(path)

    def race(self, calls: list[Callable[[httpx.Client], httpx.Response]]) -> list[httpx.Response]:
        """Send the calls at once: each thread connects, then all wait at the barrier and send together. Each
        call carries the X-Request-ID `race-<index>` (kept on the operation and the audit row it causes)."""
        barrier = threading.Barrier(len(calls))
        answers: list[Any] = [None] * len(calls)

        def run(index: int) -> None:
            with self.client(f"race-{index}") as client:
                client.get("/healthz")  # open the connection before the start
                barrier.wait(timeout=60)
                try:
                    answers[index] = calls[index](client)
                except Exception as exc:  # reported below: a thread's exception would be lost
                    answers[index] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        errors = [answer for answer in answers if not isinstance(answer, httpx.Response)]
        assert not errors, errors
        return answers


@pytest.fixture
def portal(live_server: Any, celery_worker_process: Any, admin_user: Any) -> Portal:
    return Portal(live_server.url, Token.objects.create(user=admin_user).key)


@pytest.fixture
def racing_broker(osb_broker: SampleBroker) -> SampleBroker:
    osb_broker.async_mode = "never"  # every answer at once: the worker finishes quickly, inside the race
    return osb_broker


def _settled(portal: Portal, path: str) -> dict[str, Any] | None:
    response = portal.get(path)
    if response.status_code != 200:
        return None
    body = response.json()
    active = body["last_operation"] and body["last_operation"]["state"] in ("pending", "in_progress")
    return None if active or body["state"] in ("provisioning", "updating", "deprovisioning", "binding",
                                                "unbinding") else body


def ready_instance(portal: Portal, osb_broker: SampleBroker, name: str = "racer") -> dict[str, Any]:
    broker = mirrored_broker(osb_broker.url)
    cache = plan(broker, "redis-cache", "cache-free")
    with portal.client() as client:
        response = client.post("/api/v1/instances/", json={"name": name, "namespace": "team-a",
                                                           "plan": str(cache.pk)})
    assert response.status_code == 202, response.text
    body = wait_for(lambda: _settled(portal, f"/api/v1/instances/{response.json()['id']}/"), timeout=60,
                    what="the instance to be ready")
    assert body["state"] == "ready", body
    return body


def ready_binding(portal: Portal, instance: dict[str, Any], name: str = "app") -> dict[str, Any]:
    with portal.client() as client:
        response = client.post("/api/v1/bindings/", json={"instance": instance["id"], "name": name})
    assert response.status_code == 202, response.text
    body = wait_for(lambda: _settled(portal, f"/api/v1/bindings/{response.json()['id']}/"), timeout=60,
                    what="the binding to be ready")
    assert body["state"] == "ready", body
    return body


def accepted(answers: list[httpx.Response]) -> list[tuple[int, httpx.Response]]:
    return [(i, answer) for i, answer in enumerate(answers) if answer.status_code == 202]


def assert_losers_name_the_winner(answers: list[httpx.Response], won: set[str], *, codes: dict[int, str]) -> None:
    """Every answer that is not a 202 is a JSON error with the expected code, naming an accepted operation."""
    for answer in answers:
        if answer.status_code == 202:
            continue
        assert answer.status_code in codes, (answer.status_code, answer.text)
        body = answer.json()
        assert body["code"] == codes[answer.status_code], body
        assert body["operation"] in won, (body, won)
        assert body["detail"]


def wait_idle(what: str) -> None:
    wait_for(lambda: not Operation.objects.filter(state__in=ACTIVE).exists(), timeout=60,
             what=f"every operation to finish ({what})")


def audit_request_ids(action: str, target_id: str) -> list[str]:
    return sorted(AuditRecord.objects.filter(action=action, target_id=target_id).values_list("request_id", flat=True))


def test_n_simultaneous_deletes_of_an_instance_send_one_deprovision(
    portal: Portal, racing_broker: SampleBroker
) -> None:
    instance = ready_instance(portal, racing_broker)
    path = f"/api/v1/instances/{instance['id']}/"
    racing_broker.clear_requests()

    answers = portal.race([lambda client: client.delete(path)] * N)

    winners = accepted(answers)
    assert len(winners) == 1, [(a.status_code, a.text) for a in answers]
    index, winner = winners[0]
    deprovision = winner.json()["last_operation"]
    assert deprovision["type"] == "deprovision"
    assert_losers_name_the_winner(answers, {deprovision["id"]}, codes={409: "operation_in_progress", 404: "gone"})
    wait_for(lambda: portal.get(path).status_code == 404, timeout=60, what="the deprovision to finish")
    # The broker received one DELETE, and nothing after it.
    received = [(r.method, r.path) for r in racing_broker.requests if r.path.startswith("/v2/service_instances/")]
    assert received == [("DELETE", f"/v2/service_instances/{instance['id']}")]
    assert list(Operation.objects.filter(instance_id=instance["id"], type="deprovision")
                .values_list("id", "request_id")) == [(Operation.objects.get(pk=deprovision["id"]).pk,
                                                       f"race-{index}")]
    assert audit_request_ids("instance.delete", instance["id"]) == [f"race-{index}"]
    # A late DELETE is 404, naming the deprovision that deleted it.
    with portal.client() as client:
        late = client.delete(path)
    assert late.status_code == 404 and late.json()["code"] == "gone"
    assert late.json()["operation"] == deprovision["id"]


def test_n_simultaneous_unbinds_send_one_unbind(portal: Portal, racing_broker: SampleBroker) -> None:
    instance = ready_instance(portal, racing_broker)
    binding = ready_binding(portal, instance)
    path = f"/api/v1/bindings/{binding['id']}/"
    racing_broker.clear_requests()

    answers = portal.race([lambda client: client.delete(path)] * N)

    winners = accepted(answers)
    assert len(winners) == 1, [(a.status_code, a.text) for a in answers]
    index, winner = winners[0]
    unbind = winner.json()["last_operation"]
    assert unbind["type"] == "unbind"
    assert_losers_name_the_winner(answers, {unbind["id"]}, codes={409: "operation_in_progress", 404: "gone"})
    wait_for(lambda: portal.get(path).status_code == 404, timeout=60, what="the unbind to finish")
    wait_idle("unbind")
    received = [(r.method, r.path) for r in racing_broker.requests if r.path.startswith("/v2/service_instances/")]
    assert received == [("DELETE", f"/v2/service_instances/{instance['id']}/service_bindings/{binding['id']}")]
    assert ServiceBinding.objects.get(pk=binding["id"]).state == "deleted"
    assert Operation.objects.filter(binding_id=binding["id"], type="unbind").count() == 1
    assert audit_request_ids("binding.delete", binding["id"]) == [f"race-{index}"]
    with portal.client() as client:
        late = client.delete(path)
    assert late.status_code == 404 and late.json() == {**late.json(), "code": "gone", "operation": unbind["id"]}


def test_patch_and_delete_at_once_never_send_anything_after_the_delete(
    portal: Portal, racing_broker: SampleBroker
) -> None:
    instance = ready_instance(portal, racing_broker)
    path = f"/api/v1/instances/{instance['id']}/"
    racing_broker.clear_requests()
    patch = {"parameters": {"maxmemory_policy": "noeviction"}}
    calls: list[Callable[[httpx.Client], httpx.Response]] = []
    for _ in range(N // 2):
        calls += [lambda client: client.patch(path, json=patch), lambda client: client.delete(path)]

    answers = portal.race(calls)

    winners = accepted(answers)
    assert winners, [(a.status_code, a.text) for a in answers]
    won = {answer.json()["last_operation"]["id"] for _, answer in winners}
    assert_losers_name_the_winner(answers, won, codes={409: "operation_in_progress", 404: "gone"})
    wait_idle("patch and delete")
    # One operation per accepted request, in the order they were accepted; the broker got exactly those, in order.
    operations = list(Operation.objects.filter(instance_id=instance["id"]).exclude(type="provision")
                      .order_by("started_at"))
    assert {str(op.pk) for op in operations} == won
    assert sorted(op.request_id for op in operations) == sorted(f"race-{i}" for i, _ in winners)
    deletes = [op for op in operations if op.type == "deprovision"]
    assert len(deletes) <= 1
    if deletes:
        assert operations[-1].type == "deprovision"  # nothing was accepted after the delete
    received = [r.method for r in racing_broker.requests
                if r.path.startswith("/v2/service_instances/") and r.method in ("PATCH", "DELETE")]
    assert received == [{"update": "PATCH", "deprovision": "DELETE"}[op.type] for op in operations]
    assert audit_request_ids("instance.update", instance["id"]) == sorted(
        op.request_id for op in operations if op.type == "update")
    assert audit_request_ids("instance.delete", instance["id"]) == [op.request_id for op in deletes]


def test_n_simultaneous_creates_with_one_name_make_one_instance(portal: Portal, racing_broker: SampleBroker) -> None:
    broker = mirrored_broker(racing_broker.url)
    cache = plan(broker, "redis-cache", "cache-free")
    racing_broker.clear_requests()
    body = {"name": "same", "namespace": "team-a", "plan": str(cache.pk)}

    answers = portal.race([lambda client: client.post("/api/v1/instances/", json=body)] * N)

    winners = accepted(answers)
    assert len(winners) == 1, [(a.status_code, a.text) for a in answers]
    index, winner = winners[0]
    provision = winner.json()["last_operation"]
    for answer in answers:
        if answer.status_code != 202:
            assert answer.status_code == 409, answer.text
            assert answer.json()["code"] == "name_taken" and answer.json()["operation"] == provision["id"]
            assert answer.json()["name"] == ["'same' is taken in namespace 'team-a'."]
    wait_idle("provision")
    instance = ServiceInstance.objects.get()
    assert str(instance.pk) == winner.json()["id"] and instance.state == "ready"
    puts = racing_broker.requests_for("PUT", INSTANCE)
    assert [r.path for r in puts] == [f"/v2/service_instances/{instance.pk}"]
    assert audit_request_ids("instance.create", str(instance.pk)) == [f"race-{index}"]
    assert AuditRecord.objects.filter(action="instance.create").count() == 1


def test_cascade_deprovision_while_unbinds_fail_then_when_the_broker_is_healthy(
    portal: Portal, racing_broker: SampleBroker
) -> None:
    """overview-broker, error mode: the broker answers 404 to unbinds. The cascade stops without deleting the
    instance, naming the bindings it could not unbind; asked again once the broker is healthy, it unbinds both
    and then deletes the instance: two unbinds, then one DELETE of the instance, nothing else."""
    instance = ready_instance(portal, racing_broker)
    first, second = ready_binding(portal, instance, "b-1"), ready_binding(portal, instance, "b-2")
    path = f"/api/v1/instances/{instance['id']}/?cascade=true"
    racing_broker.clear_requests()
    racing_broker.set_response("DELETE", BINDING, 404, body={"description": "not here"})

    with portal.client() as client:
        response = client.delete(path)
    assert response.status_code == 202, response.text
    body = wait_for(lambda: _settled(portal, f"/api/v1/instances/{instance['id']}/"), timeout=60,
                    what="the cascade to stop")
    assert body["state"] == "ready" and body["last_operation"]["state"] == "failed"
    assert "b-1" in body["last_operation"]["error"] and "b-2" in body["last_operation"]["error"]
    wait_idle("failed cascade")
    assert not racing_broker.requests_for("DELETE", INSTANCE)  # the instance was not deleted
    assert len(racing_broker.requests_for("DELETE", BINDING)) == 2

    racing_broker.clear_responses()
    racing_broker.clear_requests()
    with portal.client() as client:
        response = client.delete(path)
    assert response.status_code == 202, response.text
    wait_for(lambda: portal.get(f"/api/v1/instances/{instance['id']}/").status_code == 404, timeout=60,
             what="the cascade to delete the instance",
             explain=lambda: list(Operation.objects.values_list("type", "state", "error")))
    received = [(r.method, r.path) for r in racing_broker.requests]
    unbinds = {("DELETE", f"/v2/service_instances/{instance['id']}/service_bindings/{b['id']}")
               for b in (first, second)}
    assert set(received[:2]) == unbinds and len(received) == 3
    assert received[2] == ("DELETE", f"/v2/service_instances/{instance['id']}")
    assert instance["id"] not in racing_broker.instances
