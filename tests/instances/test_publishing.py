"""Publishing binding credentials as Kubernetes Secrets, in-process against the Kubernetes API stand-in.

Bindings are created through the services and bound at the real HTTP test broker (run_operations); the
publishing step (`binding_publish`) and the reconcile's choice (`bindings_due`) are then called directly,
so each test decides exactly when the portal looks at the cluster.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from brokers.models import Broker
from devtools.kube_standin import KubeStandIn
from instances import k8s
from instances.models import ServiceBinding, ServiceInstance
from instances.services.bindings import binding_create, binding_delete
from instances.services.instances import instance_provision
from instances.services.kubernetes import (
    BINDING_LABEL,
    INSTANCE_LABEL,
    MANAGED_BY,
    MANAGER,
    binding_publish,
    bindings_due,
)
from instances.states import BindingState, PublicationState
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs", "no_cluster")]

SECRET_PATH = r"/api/v1/namespaces/[^/]+/secrets"


# --- fixtures and helpers --------------------------------------------------------------------------




@pytest.fixture
def instance(broker: Broker) -> ServiceInstance:
    created = instance_provision(plan=plan(broker, "redis-cache", "cache-free"), name="cache", namespace="team-a")
    run_operations()
    created.refresh_from_db()
    assert created.state == "ready"
    return created


def bind(instance: ServiceInstance, name: str = "app-cache", **kwargs: Any) -> ServiceBinding:
    binding = binding_create(instance=instance, name=name, **kwargs)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY, binding.state
    assert binding.publication_next_at is not None and binding.publication_next_at <= timezone.now()
    return binding


def unbind(binding: ServiceBinding) -> ServiceBinding:
    binding_delete(binding=binding)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.DELETED
    return binding


def publish(binding: ServiceBinding) -> ServiceBinding:
    binding_publish(binding_id=binding.pk)
    binding.refresh_from_db()
    return binding


def make_due(binding: ServiceBinding) -> None:
    """What K8S_RECONCILE_SECONDS (or a retry's backoff) elapsing looks like to the reconcile."""
    overdue = timezone.now() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS + 1)
    ServiceBinding.objects.filter(pk=binding.pk).update(publication_next_at=overdue)


def writes(kube: KubeStandIn) -> list[dict[str, Any]]:
    """Secret writes the portal sent to the stand-in (create, replace, patch, delete)."""
    return [r for r in kube.requests if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
            and re.match(SECRET_PATH, r["path"])]


def next_attempt_in(binding: ServiceBinding) -> int:
    match = re.search(r"next attempt in (\d+) s", binding.publication_message)
    assert match, binding.publication_message
    return int(match[1])


def expected_data(binding: ServiceBinding) -> dict[str, str]:
    credentials = binding.secrets["credentials"]
    data = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in credentials.items()}
    return {**data, "type": "redis", "provider": "Catalog Portal Sample Broker"}


# --- no cluster -----------------------------------------------------------------------------------


def test_without_a_cluster_publication_is_not_configured_and_credentials_stay_reachable(
    instance: ServiceInstance, admin_api: Any
) -> None:
    binding = bind(instance)
    assert publish(binding).publication_state == PublicationState.NOT_CONFIGURED
    assert "No Kubernetes cluster is configured" in binding.publication_message
    assert "available in the portal and through the API" in binding.publication_message
    assert binding.publication_next_at is None and binding.published_at is None
    assert binding.state == BindingState.READY

    body = admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()
    assert body["publication"]["state"] == "not_configured"
    assert body["publication"]["message"] == binding.publication_message
    credentials = admin_api.get(f"/api/v1/bindings/{binding.pk}/credentials/")
    assert credentials.status_code == 200
    assert credentials.json()["credentials"] == binding.secrets["credentials"]
    assert bindings_due() == []  # nothing to retry while there is no cluster


def test_a_cluster_configured_later_picks_up_not_configured_bindings(
    instance: ServiceInstance, kube: KubeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = os.environ["KUBECONFIG"]
    monkeypatch.delenv("KUBECONFIG")
    binding = bind(instance)
    assert publish(binding).publication_state == PublicationState.NOT_CONFIGURED
    assert bindings_due() == []

    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    assert bindings_due() == [str(binding.pk)]
    assert publish(binding).publication_state == PublicationState.PUBLISHED
    assert kube.get_secret("team-a", "app-cache") is not None


# --- publication ----------------------------------------------------------------------------------


def test_publication_writes_one_secret_with_each_credential_key_and_the_servicebinding_keys(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    binding = bind(instance)
    before = timezone.now()
    assert publish(binding).publication_state == PublicationState.PUBLISHED
    assert binding.publication_message == "Secret team-a/app-cache"
    assert binding.published_at is not None and binding.published_at >= before
    assert binding.publication_attempts == 0
    assert binding.publication_next_at is not None and binding.publication_next_at > timezone.now()

    credentials = binding.secrets["credentials"]
    assert isinstance(credentials["port"], int) and isinstance(credentials["password"], str)
    data = kube.secret_data("team-a", "app-cache")
    assert data == expected_data(binding)
    assert data["port"] == json.dumps(credentials["port"])  # non-strings as JSON
    assert data["password"] == credentials["password"]  # strings as they are
    assert data["uri"] == credentials["uri"]
    assert data["type"] == "redis" and data["provider"] == "Catalog Portal Sample Broker"

    secret = kube.get_secret("team-a", "app-cache")
    assert secret is not None
    assert secret["type"] == "servicebinding.io/redis"
    assert secret["metadata"]["labels"] == {
        MANAGED_BY: MANAGER, BINDING_LABEL: str(binding.pk), INSTANCE_LABEL: str(instance.pk),
    }
    assert MANAGED_BY == "app.kubernetes.io/managed-by" and MANAGER == "catalog-portal"
    assert secret["metadata"]["annotations"] == {
        "catalog-portal.io/binding": "team-a/app-cache",
        "catalog-portal.io/instance": "team-a/cache",
        "catalog-portal.io/service": "redis-cache",
        "catalog-portal.io/plan": "cache-free",
    }
    posts = [r for r in writes(kube) if r["method"] == "POST"]
    assert len(posts) == 1 and posts[0]["path"] == "/api/v1/namespaces/team-a/secrets"


def test_nested_and_non_string_credentials_are_json_and_a_credential_named_type_wins(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    binding = bind(instance)
    binding.set_secrets({"credentials": {"hosts": ["a", "b"], "tls": {"ca": "x", "verify": True}, "ttl": 3.5,
                                         "enabled": False, "nothing": None, "type": "valkey"}})
    binding.save(update_fields=["secrets_encrypted"])
    publish(binding)
    data = kube.secret_data("team-a", "app-cache")
    assert data == {"hosts": '["a", "b"]', "tls": '{"ca": "x", "verify": true}', "ttl": "3.5",
                    "enabled": "false", "nothing": "null", "type": "valkey",
                    "provider": "Catalog Portal Sample Broker"}
    assert kube.get_secret("team-a", "app-cache")["type"] == "servicebinding.io/valkey"


def test_secret_name_defaults_to_the_binding_name_and_can_be_chosen(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    default = publish(bind(instance, "worker-cache"))
    assert default.secret_name == "worker-cache"
    assert kube.get_secret("team-a", "worker-cache") is not None

    chosen = publish(bind(instance, "web-cache", namespace="team-b", secret_name="redis-credentials"))
    assert chosen.publication_state == PublicationState.PUBLISHED
    assert chosen.publication_message == "Secret team-b/redis-credentials"
    assert kube.get_secret("team-b", "redis-credentials") is not None
    assert kube.get_secret("team-b", "web-cache") is None
    assert kube.get_secret("team-a", "redis-credentials") is None


def test_republishing_an_unchanged_secret_writes_nothing(instance: ServiceInstance, kube: KubeStandIn) -> None:
    binding = publish(bind(instance))
    published_at, rv = binding.published_at, kube.get_secret("team-a", "app-cache")["metadata"]["resourceVersion"]
    kube.requests.clear()

    for _ in range(3):
        make_due(binding)
        assert str(binding.pk) in bindings_due()
        assert publish(binding).publication_state == PublicationState.PUBLISHED
    assert writes(kube) == []
    assert [r["method"] for r in kube.requests] == ["GET"] * 3
    assert kube.get_secret("team-a", "app-cache")["metadata"]["resourceVersion"] == rv
    assert binding.published_at == published_at  # nothing was published again
    assert binding.publication_next_at > timezone.now()
    assert str(binding.pk) not in bindings_due()  # next check after K8S_RECONCILE_SECONDS


def test_changed_credentials_replace_the_secret(instance: ServiceInstance, kube: KubeStandIn) -> None:
    binding = publish(bind(instance))
    first_published = binding.published_at
    secrets = binding.secrets
    secrets["credentials"]["password"] = "rotated-password"
    secrets["credentials"]["port"] = 6390
    binding.set_secrets(secrets)
    binding.save(update_fields=["secrets_encrypted"])
    kube.requests.clear()

    assert publish(binding).publication_state == PublicationState.PUBLISHED
    data = kube.secret_data("team-a", "app-cache")
    assert data["password"] == "rotated-password" and data["port"] == "6390"
    assert data == expected_data(binding)
    assert [r["method"] for r in writes(kube)] == ["PUT"]
    assert binding.published_at > first_published


def test_unbind_deletes_the_secret(instance: ServiceInstance, kube: KubeStandIn, admin_api: Any) -> None:
    binding = publish(bind(instance))
    assert kube.get_secret("team-a", "app-cache") is not None

    binding = unbind(binding)
    assert binding.publication_next_at <= timezone.now()  # the unbind marked the removal as due
    assert publish(binding).publication_state == PublicationState.REMOVED
    assert kube.get_secret("team-a", "app-cache") is None
    assert [r["method"] for r in writes(kube)] == ["POST", "DELETE"]
    assert binding.publication_next_at is None
    assert str(binding.pk) not in bindings_due()
    assert admin_api.get(f"/api/v1/bindings/{binding.pk}/").status_code == 404

    kube.requests.clear()
    assert publish(binding).publication_state == PublicationState.REMOVED  # repeating is harmless
    assert writes(kube) == []


def test_unbind_leaves_a_foreign_secret_with_the_same_name_alone(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    binding = publish(bind(instance))
    kube.delete_secret("team-a", "app-cache")
    kube.put_secret("team-a", {"metadata": {"name": "app-cache"}, "stringData": {"token": "theirs"}})
    binding = unbind(binding)
    assert publish(binding).publication_state == PublicationState.REMOVED
    assert kube.secret_data("team-a", "app-cache") == {"token": "theirs"}


# --- drift ------------------------------------------------------------------------------------------


def test_reconcile_recreates_a_secret_deleted_behind_the_portals_back(
    instance: ServiceInstance, kube: KubeStandIn, settings: Any
) -> None:
    settings.K8S_RECONCILE_SECONDS = 1
    settings.SWEEP_GRACE_SECONDS = 0
    binding = publish(bind(instance))
    original = kube.secret_data("team-a", "app-cache")
    kube.delete_secret("team-a", "app-cache")

    assert str(binding.pk) not in bindings_due()  # not yet: the drift check runs every K8S_RECONCILE_SECONDS
    time.sleep(1.1)
    due = bindings_due()
    assert due == [str(binding.pk)]
    for binding_id in due:
        binding_publish(binding_id=binding_id)
    assert kube.secret_data("team-a", "app-cache") == original
    binding.refresh_from_db()
    assert binding.publication_state == PublicationState.PUBLISHED
    next_at = binding.publication_next_at
    assert next_at is not None
    assert timedelta(0) < next_at - timezone.now() <= timedelta(seconds=settings.K8S_RECONCILE_SECONDS)


def test_a_just_requested_publication_is_left_to_its_own_message_for_the_grace_period(
    instance: ServiceInstance, kube: KubeStandIn, settings: Any
) -> None:
    settings.SWEEP_GRACE_SECONDS = 1
    binding = bind(instance)  # its binding_publish message is on the way (sent on commit)
    assert bindings_due() == []
    time.sleep(1.1)
    assert bindings_due() == [str(binding.pk)]  # the message was lost, or the worker died: reconcile


def test_reconcile_repairs_an_edited_secret(instance: ServiceInstance, kube: KubeStandIn) -> None:
    binding = publish(bind(instance))
    original = kube.get_secret("team-a", "app-cache")
    edited = json.loads(json.dumps(original))
    edited["data"]["password"] = base64.b64encode(b"tampered").decode()
    edited["data"]["extra"] = base64.b64encode(b"added").decode()
    edited["metadata"]["labels"].pop(INSTANCE_LABEL)
    kube.put_secret("team-a", edited)
    assert kube.secret_data("team-a", "app-cache")["password"] == "tampered"

    make_due(binding)
    assert bindings_due() == [str(binding.pk)]
    assert publish(binding).publication_state == PublicationState.PUBLISHED
    repaired = kube.get_secret("team-a", "app-cache")
    assert kube.secret_data("team-a", "app-cache") == expected_data(binding)
    assert repaired["metadata"]["labels"] == original["metadata"]["labels"]
    assert repaired["metadata"]["uid"] == original["metadata"]["uid"]  # replaced in place, not recreated
    assert [r["method"] for r in writes(kube)] == ["POST", "PUT"]


def test_reconcile_repairs_a_secret_whose_type_was_removed_by_recreating_it_with_ours(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    binding = publish(bind(instance))
    secret = kube.get_secret("team-a", "app-cache")
    kube.delete_secret("team-a", "app-cache")  # someone recreated it as Opaque (type is immutable)
    secret["type"] = "Opaque"
    kube.put_secret("team-a", secret)

    make_due(binding)
    state = publish(binding).publication_state
    assert state == PublicationState.PUBLISHED, binding.publication_message
    assert kube.get_secret("team-a", "app-cache")["type"] == "servicebinding.io/redis"
    assert kube.secret_data("team-a", "app-cache") == expected_data(binding)


def test_a_concurrent_run_that_created_the_secret_first_is_not_a_failure(
    instance: ServiceInstance, kube: KubeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs for one binding (its message and the reconcile's): the second one's create answers 409."""
    binding = publish(bind(instance))
    secret = kube.get_secret("team-a", "app-cache")
    kube.delete_secret("team-a", "app-cache")
    original = k8s.KubeGateway.get_secret
    calls = []

    def racing_get(self: Any, namespace: str, name: str) -> Any:
        found = original(self, namespace, name)
        if not calls:  # the other run writes the Secret right after our read
            kube.put_secret(namespace, secret)
        calls.append(found)
        return found

    monkeypatch.setattr(k8s.KubeGateway, "get_secret", racing_get)
    make_due(binding)
    binding = publish(binding)
    assert binding.publication_state == PublicationState.PUBLISHED, binding.publication_message
    assert calls[0] is None and calls[1] is not None  # read again after the 409
    assert [r["method"] for r in writes(kube)][-1] == "POST"
    assert kube.secret_data("team-a", "app-cache") == expected_data(binding)


# --- a Secret the portal does not own ---------------------------------------------------------------


def test_an_unmanaged_secret_with_the_same_name_is_refused_and_left_untouched(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    kube.put_secret("team-a", {"metadata": {"name": "app-cache", "labels": {"team": "a"}},
                               "stringData": {"password": "theirs"}})
    before = kube.get_secret("team-a", "app-cache")
    binding = publish(bind(instance))

    assert binding.publication_state == PublicationState.FAILED
    assert "A Secret named 'app-cache' already exists in namespace 'team-a'" in binding.publication_message
    assert "belongs to someone else" in binding.publication_message
    assert "will not overwrite it" in binding.publication_message
    assert kube.get_secret("team-a", "app-cache") == before
    assert [r["method"] for r in writes(kube)] == []
    assert binding.state == BindingState.READY and binding.secrets["credentials"]

    kube.delete_secret("team-a", "app-cache")  # the owner removes theirs: the retry publishes ours
    make_due(binding)
    assert publish(binding).publication_state == PublicationState.PUBLISHED
    assert kube.secret_data("team-a", "app-cache") == expected_data(binding)


def test_a_secret_owned_by_another_binding_is_refused_and_left_untouched(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    # The first binding is unbound while the API is down, so its Secret is still there when a second
    # binding asks for the same Secret name.
    first = publish(bind(instance, "first", secret_name="shared-name"))
    owned = kube.get_secret("team-a", "shared-name")
    kube.down = True
    publish(unbind(first))
    kube.down = False
    second = publish(bind(instance, "second", secret_name="shared-name"))

    assert second.publication_state == PublicationState.FAILED
    assert "A Secret named 'shared-name' already exists in namespace 'team-a'" in second.publication_message
    assert "belongs to another binding" in second.publication_message
    assert "will not overwrite it" in second.publication_message
    assert kube.get_secret("team-a", "shared-name") == owned
    assert second.state == BindingState.READY

    # Another portal (or a binding the portal no longer knows) owns it: refused the same way.
    kube.put_secret("team-b", {"metadata": {"name": "other", "labels": {
        MANAGED_BY: MANAGER, BINDING_LABEL: "5d0c8a3e-0000-4000-8000-000000000000"}}, "stringData": {"k": "v"}})
    foreign = publish(bind(instance, "other", namespace="team-b"))
    assert foreign.publication_state == PublicationState.FAILED
    assert "belongs to another binding" in foreign.publication_message
    assert kube.secret_data("team-b", "other") == {"k": "v"}

    # The first binding's Secret is removed on its retry; then the second one's retry publishes.
    make_due(first)
    make_due(second)
    assert {str(first.pk), str(second.pk)} <= set(bindings_due())
    assert publish(first).publication_state == PublicationState.REMOVED
    assert kube.get_secret("team-a", "shared-name") is None
    assert publish(second).publication_state == PublicationState.PUBLISHED
    assert kube.get_secret("team-a", "shared-name")["metadata"]["labels"][BINDING_LABEL] == str(second.pk)


# --- failures: retried, shown, the binding kept -----------------------------------------------------


def test_a_missing_namespace_fails_with_a_message_and_is_retried_with_backoff_until_it_exists(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    binding = publish(bind(instance, namespace="team-new"))
    assert binding.publication_state == PublicationState.FAILED
    assert "Namespace 'team-new' does not exist" in binding.publication_message
    assert "next attempt in" in binding.publication_message
    assert binding.publication_attempts == 1
    first_wait = next_attempt_in(binding)
    assert first_wait >= 1
    assert binding.publication_next_at > timezone.now()
    assert str(binding.pk) not in bindings_due()

    make_due(binding)
    assert str(binding.pk) in bindings_due()
    binding = publish(binding)
    assert binding.publication_state == PublicationState.FAILED and binding.publication_attempts == 2
    assert next_attempt_in(binding) > first_wait  # backoff grows
    assert binding.publication_next_at > timezone.now() + timedelta(seconds=first_wait)
    assert binding.state == BindingState.READY and binding.secrets["credentials"]

    kube.create_namespace("team-new")
    make_due(binding)
    binding = publish(binding)
    assert binding.publication_state == PublicationState.PUBLISHED
    assert binding.publication_attempts == 0
    assert kube.secret_data("team-new", "app-cache") == expected_data(binding)


def test_the_api_down_then_back(instance: ServiceInstance, kube: KubeStandIn, admin_api: Any) -> None:
    binding = bind(instance)
    kube.down = True
    binding = publish(binding)
    assert binding.publication_state == PublicationState.FAILED
    assert "The Kubernetes API answered 503" in binding.publication_message
    assert binding.publication_attempts == 1 and binding.publication_next_at > timezone.now()
    assert binding.state == BindingState.READY
    body = admin_api.get(f"/api/v1/bindings/{binding.pk}/").json()
    assert body["state"] == "ready" and body["publication"]["state"] == "failed"
    assert admin_api.get(f"/api/v1/bindings/{binding.pk}/credentials/").status_code == 200

    kube.down = "reset"  # connection dropped without an answer
    make_due(binding)
    binding = publish(binding)
    assert binding.publication_state == PublicationState.FAILED
    assert "could not be reached" in binding.publication_message
    assert binding.publication_attempts == 2

    kube.down = False
    make_due(binding)
    assert bindings_due() == [str(binding.pk)]
    binding = publish(binding)
    assert binding.publication_state == PublicationState.PUBLISHED and binding.publication_attempts == 0
    assert kube.secret_data("team-a", "app-cache") == expected_data(binding)


def test_removal_while_the_api_is_down_is_retried(instance: ServiceInstance, kube: KubeStandIn) -> None:
    binding = unbind(publish(bind(instance)))
    kube.down = True
    binding = publish(binding)
    assert binding.publication_state == PublicationState.FAILED
    assert "removing" in binding.publication_message
    assert kube.get_secret("team-a", "app-cache") is not None

    kube.down = False
    make_due(binding)
    assert str(binding.pk) in bindings_due()
    assert publish(binding).publication_state == PublicationState.REMOVED
    assert kube.get_secret("team-a", "app-cache") is None


def test_a_forbidden_namespace_fails_with_a_message(instance: ServiceInstance, kube: KubeStandIn) -> None:
    kube.forbidden_namespaces.add("team-b")
    binding = publish(bind(instance, namespace="team-b"))
    assert binding.publication_state == PublicationState.FAILED
    assert "not allowed to manage Secrets in namespace 'team-b'" in binding.publication_message
    assert binding.publication_attempts == 1
    assert binding.state == BindingState.READY

    kube.forbidden_namespaces.clear()  # RBAC fixed
    make_due(binding)
    assert publish(binding).publication_state == PublicationState.PUBLISHED


# --- what the reconcile picks -----------------------------------------------------------------------


def test_bindings_due_skips_bindings_in_progress_and_deleted_ones_already_removed(
    instance: ServiceInstance, kube: KubeStandIn
) -> None:
    ready = publish(bind(instance, "ready"))
    removed = publish(unbind(publish(bind(instance, "removed"))))
    assert removed.publication_next_at is None
    pending = binding_create(instance=instance, name="pending")  # the bind is not sent yet
    for binding in (ready, pending):
        make_due(binding)
    assert bindings_due() == [str(ready.pk)]
    assert binding_publish(binding_id=pending.pk) is None  # nothing to publish before the bind succeeded
    assert kube.get_secret("team-a", "pending") is None
    assert binding_publish(binding_id="00000000-0000-0000-0000-000000000000") is None


# --- secrets never in logs -------------------------------------------------------------------------


def test_credentials_never_reach_the_logs(
    instance: ServiceInstance, kube: KubeStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    binding = publish(bind(instance))
    credentials = binding.secrets["credentials"]
    make_due(binding)
    kube.down = True
    publish(binding)
    kube.down = False
    kube.delete_secret("team-a", "app-cache")
    make_due(binding)
    publish(binding)
    unbind(binding)
    publish(binding)
    text = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    encoded = base64.b64encode(credentials["password"].encode()).decode()
    assert credentials["password"] not in text
    assert encoded not in text
    assert credentials["uri"] not in text
