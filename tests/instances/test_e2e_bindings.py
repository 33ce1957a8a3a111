"""End to end with a real worker (and its beat), the HTTP test broker and the Kubernetes API stand-in.

Bind and unbind through the REST API, sync and async; the worker binds at the broker, publishes the Secret,
deletes it on unbind, and its beat reconcile repairs drift. The `kube` fixture sets KUBECONFIG before the
worker starts, so the worker process reaches the stand-in like a real cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devtools.kube_standin import KubeStandIn
from devtools.sample_broker import SampleBroker
from instances.services.kubernetes import BINDING_LABEL, MANAGED_BY, MANAGER
from tests.conftest import Workers, wait_for
from tests.instances.helpers import mirrored_broker, plan

pytestmark = [pytest.mark.e2e]

TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def broker_knobs(osb_broker: SampleBroker) -> Iterator[SampleBroker]:
    saved = (osb_broker.async_seconds, osb_broker.async_mode)
    yield osb_broker
    osb_broker.async_seconds, osb_broker.async_mode = saved


@pytest.fixture
def worker(kube: KubeStandIn, workers: Workers) -> Any:
    """One real worker with beat; the reconcile re-checks published Secrets every 2 s."""
    return workers.start(beat=True, K8S_RECONCILE_SECONDS="2", K8S_RETRY_CAP_SECONDS="2")


def _get(api: Any, path: str) -> dict[str, Any] | None:
    response = api.get(path)
    return response.json() if response.status_code == 200 else None


def provision(api: Any, osb_url: str, name: str = "cache") -> dict[str, Any]:
    broker = mirrored_broker(osb_url)
    cache_free = plan(broker, "redis-cache", "cache-free")
    response = api.post("/api/v1/instances/", {"name": name, "namespace": "team-a", "plan": str(cache_free.pk)},
                        format="json")
    assert response.status_code == 202, response.content
    instance_id = response.json()["id"]

    def ready() -> Any:
        body = _get(api, f"/api/v1/instances/{instance_id}/")
        # Wait for the operation and the instance both: on SQLite the two are read by separate queries.
        settled = body and body["last_operation"]["state"] in ("succeeded", "failed")
        return settled and body["state"] not in ("provisioning", "updating", "deprovisioning") and body

    body = wait_for(ready, timeout=TIMEOUT, interval=0.2, what="the provision to finish")
    assert body["state"] == "ready", body
    return body


def bind(api: Any, instance_id: str, name: str, **fields: Any) -> dict[str, Any]:
    response = api.post("/api/v1/bindings/", {"instance": instance_id, "name": name, **fields}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "binding"
    return response.json()


def wait_published(api: Any, binding_id: str) -> dict[str, Any]:
    def published() -> Any:
        body = _get(api, f"/api/v1/bindings/{binding_id}/")
        if body and body["last_operation"]["state"] == "failed":
            pytest.fail(f"the bind failed: {body}")
        return body and body["publication"]["state"] == "published" and body

    body = wait_for(published, timeout=TIMEOUT, interval=0.1, what="the binding's Secret to be published")
    assert body["state"] == "ready"
    return body


def expected_secret(api: Any, binding_id: str) -> dict[str, str]:
    response = api.get(f"/api/v1/bindings/{binding_id}/credentials/")
    assert response.status_code == 200, response.content
    credentials = response.json()["credentials"]
    data = {k: v if isinstance(v, str) else str(v) for k, v in credentials.items()}
    return {**data, "type": "redis", "provider": "Catalog Portal Sample Broker"}


def assert_secret(kube: KubeStandIn, api: Any, body: dict[str, Any]) -> None:
    namespace, name = body["namespace"], body["secret_name"]
    assert kube.secret_data(namespace, name) == expected_secret(api, body["id"])
    secret = kube.get_secret(namespace, name)
    assert secret is not None and secret["type"] == "servicebinding.io/redis"
    assert secret["metadata"]["labels"][MANAGED_BY] == MANAGER
    assert secret["metadata"]["labels"][BINDING_LABEL] == body["id"]


def unbind_and_wait(api: Any, kube: KubeStandIn, body: dict[str, Any]) -> None:
    response = api.delete(f"/api/v1/bindings/{body['id']}/")
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "unbinding"
    wait_for(lambda: api.get(f"/api/v1/bindings/{body['id']}/").status_code == 404, timeout=TIMEOUT,
             interval=0.1, what="the unbind to finish")
    wait_for(lambda: kube.get_secret(body["namespace"], body["secret_name"]) is None, timeout=TIMEOUT,
             interval=0.1, what="the Secret to be deleted")


# --- tests ----------------------------------------------------------------------------------------


def test_sync_bind_publishes_the_secret_and_unbind_deletes_it(
    worker: Any, kube: KubeStandIn, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "never"
    instance = provision(admin_api, osb_url)
    created = bind(admin_api, instance["id"], "app-cache")
    assert created["publication"]["state"] == "pending"

    body = wait_published(admin_api, created["id"])
    assert body["publication"]["message"] == "Secret team-a/app-cache" and body["publication"]["published_at"]
    assert_secret(kube, admin_api, body)
    binds = osb_broker.requests_for("PUT", r"/v2/service_instances/[^/]+/service_bindings/[^/]+")
    assert len(binds) == 1
    assert not osb_broker.requests_for("GET", r"/v2/service_instances/[^/]+/service_bindings/[^/]+/last_operation")

    unbind_and_wait(admin_api, kube, body)
    assert body["id"] not in osb_broker.bindings


def test_async_bind_and_unbind_with_a_chosen_namespace_and_secret_name(
    worker: Any, kube: KubeStandIn, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "always"
    osb_broker.async_seconds = 1.0
    instance = provision(admin_api, osb_url)
    created = bind(admin_api, instance["id"], "web-cache", namespace="team-b", secret_name="redis-creds")

    body = wait_published(admin_api, created["id"])
    assert (body["namespace"], body["secret_name"]) == ("team-b", "redis-creds")
    assert_secret(kube, admin_api, body)
    polls = osb_broker.requests_for("GET", r"/v2/service_instances/[^/]+/service_bindings/[^/]+/last_operation")
    assert polls, "the bind should have been asynchronous"
    fetches = osb_broker.requests_for("GET", r"/v2/service_instances/[^/]+/service_bindings/[^/]+")
    assert fetches, "credentials of an async bind are fetched after it finished"

    unbind_and_wait(admin_api, kube, body)
    unbind_polls = [p for p in osb_broker.requests_for(
        "GET", r"/v2/service_instances/[^/]+/service_bindings/[^/]+/last_operation") if p not in polls]
    assert unbind_polls, "the unbind should have been asynchronous"
    assert kube.get_secret("team-b", "redis-creds") is None


def test_cascade_deprovision_deletes_both_secrets_and_the_instance(
    worker: Any, kube: KubeStandIn, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "never"
    instance = provision(admin_api, osb_url)
    first = wait_published(admin_api, bind(admin_api, instance["id"], "first")["id"])
    second = wait_published(admin_api, bind(admin_api, instance["id"], "second", namespace="team-b")["id"])
    assert kube.get_secret("team-a", "first") is not None and kube.get_secret("team-b", "second") is not None

    refused = admin_api.delete(f"/api/v1/instances/{instance['id']}/")
    assert refused.status_code >= 400  # bindings exist and no cascade asked
    response = admin_api.delete(f"/api/v1/instances/{instance['id']}/?cascade=true")
    assert response.status_code == 202, response.content

    wait_for(lambda: admin_api.get(f"/api/v1/instances/{instance['id']}/").status_code == 404, timeout=TIMEOUT,
             interval=0.2, what="the cascade deprovision to finish",
             explain=lambda: admin_api.get(f"/api/v1/operations/?instance={instance['id']}").json())
    for body in (first, second):
        assert admin_api.get(f"/api/v1/bindings/{body['id']}/").status_code == 404
    wait_for(lambda: kube.get_secret("team-a", "first") is None and kube.get_secret("team-b", "second") is None,
             timeout=TIMEOUT, interval=0.1, what="both Secrets to be deleted")
    assert instance["id"] not in osb_broker.instances and not osb_broker.bindings


def test_the_beat_reconcile_repairs_deleted_and_edited_secrets(
    worker: Any, kube: KubeStandIn, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "never"
    instance = provision(admin_api, osb_url)
    body = wait_published(admin_api, bind(admin_api, instance["id"], "app-cache")["id"])
    original = kube.secret_data("team-a", "app-cache")
    uid = kube.get_secret("team-a", "app-cache")["metadata"]["uid"]

    kube.delete_secret("team-a", "app-cache")
    recreated = wait_for(lambda: kube.get_secret("team-a", "app-cache"), timeout=TIMEOUT, interval=0.1,
                         what="the reconcile to recreate the deleted Secret")
    assert recreated["metadata"]["uid"] != uid
    assert kube.secret_data("team-a", "app-cache") == original

    edited = kube.get_secret("team-a", "app-cache")
    edited["data"]["password"] = "dGFtcGVyZWQ="  # "tampered"
    kube.put_secret("team-a", edited)
    wait_for(lambda: kube.secret_data("team-a", "app-cache") == original, timeout=TIMEOUT, interval=0.1,
             what="the reconcile to repair the edited Secret")
    assert admin_api.get(f"/api/v1/bindings/{body['id']}/").json()["publication"]["state"] == "published"


def test_the_api_down_at_bind_time_is_retried_until_it_is_back(
    worker: Any, kube: KubeStandIn, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    osb_broker.async_mode = "never"
    instance = provision(admin_api, osb_url)
    kube.down = True
    created = bind(admin_api, instance["id"], "app-cache")

    def failed() -> Any:
        body = _get(admin_api, f"/api/v1/bindings/{created['id']}/")
        return body and body["publication"]["state"] == "failed" and body

    body = wait_for(failed, timeout=TIMEOUT, interval=0.1, what="the publication to fail")
    assert body["state"] == "ready"
    assert "The Kubernetes API answered 503" in body["publication"]["message"]
    assert admin_api.get(f"/api/v1/bindings/{created['id']}/credentials/").status_code == 200
    assert kube.get_secret("team-a", "app-cache") is None

    kube.down = False
    body = wait_published(admin_api, created["id"])
    assert_secret(kube, admin_api, body)


def test_rotation_with_a_real_worker_rewrites_the_secret_once_and_its_beat_unbinds_the_predecessor(
    kube: KubeStandIn, workers: Workers, admin_api: Any, osb_url: str, osb_broker: SampleBroker
) -> None:
    """Asynchronous binds; the grace period is 1 s, so the worker's beat (the rotation sweeper, reading only the
    database) unbinds the predecessor soon after the successor's credentials are in the Secret."""
    osb_broker.async_mode, osb_broker.async_seconds = "always", 0.5
    workers.start(beat=True, K8S_RECONCILE_SECONDS="2", BINDING_ROTATION_GRACE_SECONDS="1")
    instance = provision(admin_api, osb_url)
    old = wait_published(admin_api, bind(admin_api, instance["id"], "app-cache")["id"])
    old_password = kube.secret_data("team-a", "app-cache")["password"]
    kube.requests.clear()

    response = admin_api.post(f"/api/v1/bindings/{old['id']}/rotate/")
    assert response.status_code == 202, response.content
    successor = response.json()
    assert successor["predecessor"] == old["id"] and successor["secret_name"] == "app-cache"

    wait_for(lambda: api_gone(admin_api, old["id"]), timeout=TIMEOUT, interval=0.2,
             what="the predecessor to be unbound after the grace period")
    body = _get(admin_api, f"/api/v1/bindings/{successor['id']}/")
    assert body["state"] == "ready" and body["rotation"]["state"] == "done" and body["rotation"]["linked"] is False
    assert_secret(kube, admin_api, body)
    assert kube.secret_data("team-a", "app-cache")["password"] != old_password
    secret_writes = [r["method"] for r in kube.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE")]
    assert secret_writes == ["PUT"]  # the successor's credentials in one write; the predecessor's unbind wrote none
    assert old["id"] not in osb_broker.bindings and successor["id"] in osb_broker.bindings
    [put] = [r for r in osb_broker.requests_for("PUT", r"/v2/service_instances/[^/]+/service_bindings/[^/]+")
             if r.path.endswith(successor["id"])]
    assert "predecessor_binding_id" not in put.json  # cache-free is not binding_rotatable


def api_gone(api: Any, binding_id: str) -> bool:
    return api.get(f"/api/v1/bindings/{binding_id}/").status_code == 404
