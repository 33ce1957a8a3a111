"""Publishing binding credentials as Kubernetes Secrets, and keeping them as the portal wrote them.

One Secret per binding, in the binding's namespace: each top-level credential key (strings as they are,
other values as JSON) plus the servicebinding.io keys `type` and `provider`, labelled as managed by the
portal. Created or replaced idempotently; a Secret the portal does not own is never overwritten; deleted
when the binding is; a periodic reconcile repairs Secrets that were deleted or edited. Failures are
retried with backoff and shown on the binding, which is never lost because of them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from instances import k8s, metrics
from instances.models import ServiceBinding
from instances.states import BindingState, PublicationState, retry_delay

logger = logging.getLogger(__name__)

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "catalog-portal"
BINDING_LABEL = "catalog-portal.io/binding-id"
INSTANCE_LABEL = "catalog-portal.io/instance-id"


def publication_requested() -> dict[str, Any]:
    """Fields that make the publishing task (and the reconcile, if its message is lost) act on a binding."""
    return {"publication_next_at": timezone.now(), "publication_attempts": 0}


def desired_secret(binding: ServiceBinding) -> dict[str, Any]:
    """The Secret the binding should have in the cluster (data base64-encoded, as the API stores it)."""
    instance = binding.instance
    offering = instance.plan.offering
    values: dict[str, str] = {}
    for key, value in (binding.secrets.get("credentials") or {}).items():
        values[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    values.setdefault("type", (offering.tags[0] if offering.tags else offering.name).lower())
    values.setdefault("provider", offering.provider or instance.broker.name)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": binding.secret_name,
            "namespace": binding.namespace,
            "labels": {
                MANAGED_BY: MANAGER,
                BINDING_LABEL: str(binding.pk),
                INSTANCE_LABEL: str(instance.pk),
            },
            "annotations": {
                "catalog-portal.io/binding": f"{binding.namespace}/{binding.name}",
                "catalog-portal.io/instance": f"{instance.namespace}/{instance.name}",
                "catalog-portal.io/service": offering.name,
                "catalog-portal.io/plan": instance.plan.name,
            },
        },
        "type": f"servicebinding.io/{values['type']}",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(values.items())},
    }


def _fingerprint(secret: dict[str, Any]) -> str:
    meta = secret["metadata"]
    material = {"data": secret["data"], "labels": meta["labels"], "type": secret["type"]}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _matches(existing: k8s.SecretState, desired: dict[str, Any]) -> bool:
    labels = desired["metadata"]["labels"]
    return (existing.data == desired["data"] and existing.type == desired["type"]
            and all(existing.labels.get(k) == v for k, v in labels.items()))


def binding_publish(*, binding_id: Any) -> str | None:
    """Make the cluster match the binding: publish, repair, or remove its Secret. Safe to repeat.

    Returns the publication state written, or None when there was nothing to do.
    """
    binding = ServiceBinding.objects.select_related("instance__plan__offering", "instance__broker").filter(
        pk=binding_id
    ).first()
    if binding is None:
        return None
    gateway = k8s.gateway()
    deleting = binding.state == BindingState.DELETED
    if gateway is None:
        message = "" if deleting else ("No Kubernetes cluster is configured (in-cluster or KUBECONFIG); the "
                                       "credentials are available in the portal and through the API.")
        state = PublicationState.REMOVED if deleting else PublicationState.NOT_CONFIGURED
        return _record(binding, state, message, next_at=None)
    if binding.state not in (BindingState.READY, BindingState.DELETED):
        return None
    if binding.state == BindingState.READY and not binding.current:
        # A rotated binding's predecessor: the Secret carries its successor's credentials; it is never written back.
        return _record(binding, PublicationState.HANDED_OVER, f"Secret {binding.namespace}/{binding.secret_name} "
                       "carries the successor's credentials.", next_at=None)
    try:
        if deleting:
            return _remove(binding, gateway)
        return _publish(binding, gateway)
    except k8s.KubeError as exc:
        attempts = binding.publication_attempts + 1
        delay = retry_delay(attempts=attempts, cap=float(settings.K8S_RETRY_CAP_SECONDS))
        what = "removing" if deleting else "publishing"
        message = f"{exc.message} The portal keeps {what} the Secret; next attempt in {int(delay)} s."
        return _record(binding, PublicationState.FAILED, message, attempts=attempts,
                       next_at=timezone.now() + timedelta(seconds=delay))


def _publish(binding: ServiceBinding, gateway: k8s.KubeGateway) -> str:
    desired = desired_secret(binding)
    for attempt in range(3):
        try:
            _write(binding, gateway, desired)
            break
        except k8s.KubeError as exc:
            # 409: another run (a duplicate message, the reconcile) wrote it meanwhile: read it again.
            if exc.status != 409 or attempt == 2:
                raise
    return _record(binding, PublicationState.PUBLISHED, f"Secret {binding.namespace}/{binding.secret_name}",
                   published=True, fingerprint=_fingerprint(desired), next_at=_next_check())


def _write(binding: ServiceBinding, gateway: k8s.KubeGateway, desired: dict[str, Any]) -> None:
    desired = {**desired, "metadata": dict(desired["metadata"])}
    existing = gateway.get_secret(binding.namespace, binding.secret_name)
    if existing is None:
        gateway.create_secret(binding.namespace, desired)
    elif (existing.labels.get(BINDING_LABEL) != str(binding.pk)
          and not (binding.predecessor_id and existing.labels.get(BINDING_LABEL) == str(binding.predecessor_id))):
        # (A rotation's successor takes over its predecessor's Secret: replaced below, in one write.)
        owner = "another binding" if existing.labels.get(MANAGED_BY) == MANAGER else "someone else"
        raise k8s.KubeError(
            f"A Secret named '{binding.secret_name}' already exists in namespace '{binding.namespace}' and belongs "
            f"to {owner}; the portal will not overwrite it. Delete it or choose another Secret name.",
            retryable=False,
        )
    elif existing.type != desired["type"]:
        # A Secret's type is immutable (a replace is refused with 422): recreate our own Secret.
        gateway.delete_secret(binding.namespace, binding.secret_name)
        gateway.create_secret(binding.namespace, desired)
    elif not _matches(existing, desired):
        desired["metadata"]["resourceVersion"] = existing.resource_version
        gateway.replace_secret(binding.namespace, binding.secret_name, desired)


def _remove(binding: ServiceBinding, gateway: k8s.KubeGateway) -> str:
    existing = gateway.get_secret(binding.namespace, binding.secret_name)
    if existing is not None and existing.labels.get(BINDING_LABEL) == str(binding.pk):
        gateway.delete_secret(binding.namespace, binding.secret_name)
    elif existing is not None and existing.labels.get(MANAGED_BY) == MANAGER and not binding.current:
        return _record(binding, PublicationState.REMOVED, "The Secret stays: it carries the successor's "
                       "credentials.", next_at=None)
    return _record(binding, PublicationState.REMOVED, "The Secret was deleted with the binding.", next_at=None)


def _next_check() -> Any:
    return timezone.now() + timedelta(seconds=settings.K8S_RECONCILE_SECONDS)


def _record(binding: ServiceBinding, state: str, message: str, *, next_at: Any, attempts: int = 0,
            published: bool = False, fingerprint: str = "") -> str:
    fields: dict[str, Any] = {"publication_state": state, "publication_message": message,
                              "publication_next_at": next_at, "publication_attempts": attempts}
    if published:
        if binding.publication_state != PublicationState.PUBLISHED or binding.publication_hash != fingerprint:
            fields["published_at"] = timezone.now()
        fields["publication_hash"] = fingerprint
    rows = ServiceBinding.objects.filter(pk=binding.pk)
    with transaction.atomic():
        # The first publication's lag is observed once, though the bind's own message and the reconcile may both
        # publish: only the write that finds published_at still empty counts it.
        first = published and binding.published_at is None and rows.filter(published_at__isnull=True).update(**fields)
        if first:
            metrics.secret_published(binding=binding)
        else:
            rows.update(**fields)
        if state in (PublicationState.PUBLISHED, PublicationState.NOT_CONFIGURED) and binding.predecessor_id:
            from instances.services.rotation import secret_handed_over

            secret_handed_over(successor=binding)  # the predecessor's grace period starts
    return state


def bindings_due(*, limit: int = 500) -> list[str]:
    """Bindings whose Secret should be (re)checked now: new, retrying, periodic drift checks, deletions."""
    # A publication requested less than SWEEP_GRACE_SECONDS ago still has its own message on the way.
    now = timezone.now() - timedelta(seconds=settings.SWEEP_GRACE_SECONDS)
    due = ServiceBinding.objects.filter(publication_next_at__lte=now).filter(
        Q(state=BindingState.READY) | Q(state=BindingState.DELETED)
    )
    if k8s.gateway() is not None:
        # A cluster appeared since these were marked "not configured".
        due = due | ServiceBinding.objects.filter(state=BindingState.READY,
                                                  publication_state=PublicationState.NOT_CONFIGURED)
    return [str(pk) for pk in due.order_by("publication_next_at").values_list("pk", flat=True)[:limit]]
