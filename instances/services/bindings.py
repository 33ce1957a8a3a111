"""Bind, unbind and reveal credentials: what people ask for. Each writes rows and enqueues."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog_portal.audit import audit
from catalog_portal.exceptions import ApplicationError, Conflict
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.identity import identity_for
from instances.services.instances import start_operation
from instances.services.validation import check_dns_label, check_parameters
from instances.states import BindingState, InstanceState, OpType, PublicationState


def binding_create(
    *,
    instance: ServiceInstance,
    name: str,
    namespace: str | None = None,
    secret_name: str | None = None,
    parameters: dict[str, Any] | None = None,
    requested_by: Any = None,
) -> ServiceBinding:
    """Create a binding and its bind operation; the credentials are published as a Secret once it succeeds."""
    check_dns_label(name, field="name")
    namespace = check_dns_label(namespace or instance.namespace, field="namespace")
    secret_name = check_dns_label(secret_name or name, field="secret_name")
    plan = instance.plan
    if not plan.effective_bindable:
        raise ApplicationError(f"Instances of the plan '{plan.title}' cannot be bound.")
    if instance.state != InstanceState.READY:
        raise Conflict(f"'{instance}' is {instance.get_state_display().lower()}; it can be bound once it is ready.")
    parameters = check_parameters(plan.binding_create_schema, parameters or {})
    taken = ServiceBinding.objects.visible().filter(namespace=namespace)
    if taken.filter(name=name).exists():
        raise ApplicationError(f"A binding named '{name}' already exists in namespace '{namespace}'.",
                               fields={"name": [f"'{name}' is taken in namespace '{namespace}'."]})
    if taken.filter(secret_name=secret_name).exists():
        raise ApplicationError(f"Another binding already publishes the Secret '{secret_name}' in '{namespace}'.",
                               fields={"secret_name": [f"'{secret_name}' is used by another binding."]})
    context = {**instance.context, "namespace": namespace, "binding_name": name}
    bind_resource = {"app_guid": f"{namespace}/{name}"}
    with transaction.atomic():
        binding = ServiceBinding(
            instance=instance, name=name, namespace=namespace, secret_name=secret_name, parameters=parameters,
            context=context, bind_resource=bind_resource, requested_by=requested_by,
        )
        try:
            with transaction.atomic():
                binding.save()
        except IntegrityError:
            raise ApplicationError("That binding name or Secret name was just taken; choose another.") from None
        body = {"service_id": plan.offering.catalog_id, "plan_id": plan.catalog_id, "context": context,
                "bind_resource": bind_resource, "parameters": parameters,
                # An async binding's credentials can only be fetched (GET) when the broker supports it.
                "accepts_incomplete": plan.offering.bindings_retrievable}
        start_operation(Operation(type=OpType.BIND, instance=instance, binding=binding, request=body,
                                  requested_by=requested_by, identity=identity_for(requested_by)))
    return binding


def binding_delete(*, binding: ServiceBinding, requested_by: Any = None) -> ServiceBinding:
    """Unbind at the broker; the Secret is deleted and the binding disappears once the broker confirms."""
    if binding.is_deleted:
        raise ApplicationError("This binding is already deleted.")
    plan = binding.instance.plan
    params = {"service_id": plan.offering.catalog_id, "plan_id": plan.catalog_id}
    with transaction.atomic():
        start_operation(Operation(type=OpType.UNBIND, instance=binding.instance, binding=binding, request=params,
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        ServiceBinding.objects.filter(pk=binding.pk).update(state=BindingState.UNBINDING, updated_at=timezone.now())
    binding.refresh_from_db()
    return binding


def binding_credentials(*, binding: ServiceBinding, user: Any, request: Any = None) -> dict[str, Any]:
    """The binding's credentials for someone allowed to see them; every reveal is audited."""
    if not can_reveal_credentials(binding=binding, user=user):
        from catalog_portal.exceptions import Forbidden

        raise Forbidden("You are not allowed to see these credentials.")
    if binding.state != BindingState.READY:
        raise Conflict("The binding has no credentials yet." if binding.state == BindingState.BINDING
                       else f"The binding is {binding.get_state_display().lower()}.")
    secrets = binding.secrets
    audit(action="binding.credentials.reveal", target=binding, actor=user, request=request,
          summary=f"Credentials of binding {binding} revealed")
    return {
        "credentials": secrets.get("credentials", {}),
        "syslog_drain_url": secrets.get("syslog_drain_url"),
        "route_service_url": secrets.get("route_service_url"),
        "volume_mounts": secrets.get("volume_mounts", []),
        "endpoints": secrets.get("endpoints", []),
    }


def can_reveal_credentials(*, binding: ServiceBinding, user: Any) -> bool:
    """Platform admins, and the people who created the binding or its instance."""
    if not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_staff) or user.pk in (binding.requested_by_id, binding.instance.requested_by_id)


def publication_pending(binding: ServiceBinding) -> dict[str, Any]:
    return {"publication_state": PublicationState.PENDING, "publication_next_at": timezone.now(),
            "publication_attempts": 0}
