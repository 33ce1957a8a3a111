"""Bind, unbind and reveal credentials: what people ask for. Each writes rows and enqueues."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers.osb import BindRequest, UnbindRequest
from catalog_portal.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.identity import identity_for
from instances.services.instances import start_operation
from instances.services.validation import check_dns_label, check_parameters
from instances.states import BindingState, InstanceState, OpType
from teams import access
from teams.audit import audit


def binding_create(
    *,
    instance: ServiceInstance,
    name: str,
    namespace: str | None = None,
    secret_name: str | None = None,
    parameters: dict[str, Any] | None = None,
    requested_by: Any = None,
    request: Any = None,
) -> ServiceBinding:
    """Create a binding and its bind operation; the credentials are published as a Secret once it succeeds.

    `requested_by` must be a developer in the instance's namespace and in the binding's; audited.
    """
    access.require(requested_by, "bind", instance.namespace, what=f"instance '{instance}'")
    check_dns_label(name, field="name")
    namespace = check_dns_label(namespace or instance.namespace, field="namespace")
    access.require_namespace(requested_by, "bind", namespace)
    secret_name = check_dns_label(secret_name or name, field="secret_name")
    plan = instance.plan
    if not plan.effective_bindable:
        raise ApplicationError(f"Instances of the plan '{plan.title}' cannot be bound.")
    if instance.state != InstanceState.READY:
        raise Conflict(f"'{instance}' is {instance.get_state_display().lower()}; it can be bound once it is ready.")
    parameters = check_parameters(plan.binding_create_schema, parameters or {})
    taken = ServiceBinding.objects.visible().filter(namespace=namespace, current=True)
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
        put = BindRequest(instance_id=str(instance.pk), binding_id=str(binding.pk), service_id=plan.offering.catalog_id,
                          plan_id=plan.catalog_id, context=context, bind_resource=bind_resource, parameters=parameters,
                          # An async binding's credentials can only be fetched (GET) when the broker supports it.
                          accepts_incomplete=plan.offering.bindings_retrievable)
        start_operation(Operation(type=OpType.BIND, instance=instance, binding=binding, request=put.to_json(),
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        audit(action="binding.create", target=binding, actor=requested_by, request=request,
              summary=f"Binding {binding} of instance {instance} requested (Secret {namespace}/{secret_name})")
    return binding


def _require_binding(user: Any, action: str, binding: ServiceBinding) -> None:
    """A binding belongs to its namespace and to its instance's: a role in either counts."""
    if user is None:
        return
    namespaces = (binding.namespace, binding.instance.namespace)
    if not any(access.can(user, "view", ns) for ns in namespaces):
        raise NotFound("No such binding.")
    if not any(access.can(user, action, ns) for ns in namespaces):
        raise Forbidden(f"You cannot {action} binding '{binding}': that needs the developer role in namespace "
                        f"'{binding.namespace}'.", namespace=binding.namespace, role=access.ACTION_ROLES[action])


def binding_delete(*, binding: ServiceBinding, requested_by: Any = None, request: Any = None) -> ServiceBinding:
    """Unbind at the broker; the Secret is deleted and the binding disappears once the broker confirms; audited."""
    _require_binding(requested_by, "unbind", binding)
    if binding.is_deleted:
        raise ApplicationError("This binding is already deleted.")
    plan = binding.instance.plan
    delete = UnbindRequest(instance_id=str(binding.instance_id), binding_id=str(binding.pk),
                           service_id=plan.offering.catalog_id, plan_id=plan.catalog_id)
    with transaction.atomic():
        start_operation(Operation(type=OpType.UNBIND, instance=binding.instance, binding=binding,
                                  request=delete.to_json(), requested_by=requested_by,
                                  identity=identity_for(requested_by)))
        ServiceBinding.objects.filter(pk=binding.pk).update(state=BindingState.UNBINDING, updated_at=timezone.now())
        audit(action="binding.delete", target=binding, actor=requested_by, request=request,
              summary=f"Unbinding of binding {binding} requested")
    binding.refresh_from_db()
    return binding


def binding_credentials(*, binding: ServiceBinding, user: Any, request: Any = None, key: str | None = None
                        ) -> dict[str, Any]:
    """The binding's credentials for someone allowed to see them; every reveal is audited.

    With `key`, only that value is revealed (and audited by its name): `{"credentials": {key: value}}` for a
    credential, or the one companion field (`syslog_drain_url`, ...). NotFound if the binding has no such key.
    """
    _require_binding(user, "view", binding)
    if not can_reveal_credentials(binding=binding, user=user):
        raise Forbidden("You are not allowed to see these credentials: that needs the developer role in the "
                        f"binding's namespace '{binding.namespace}'.", namespace=binding.namespace,
                        role=access.ACTION_ROLES["reveal"])
    if binding.state == BindingState.UNKNOWN:
        raise Conflict("The unbind's outcome is unknown: the broker may have deleted this binding, so its "
                       "credentials are not shown. Unbind it again to settle it.")
    if binding.state != BindingState.READY:
        raise Conflict("The binding has no credentials yet." if binding.state == BindingState.BINDING
                       else f"The binding is {binding.get_state_display().lower()}.")
    secrets = binding.secrets
    everything = {
        "credentials": secrets.get("credentials", {}),
        "syslog_drain_url": secrets.get("syslog_drain_url"),
        "route_service_url": secrets.get("route_service_url"),
        "volume_mounts": secrets.get("volume_mounts", []),
        "endpoints": secrets.get("endpoints", []),
    }
    if key is not None:
        if key in everything["credentials"]:
            everything = {"credentials": {key: everything["credentials"][key]}}
        elif key in everything and key != "credentials" and everything[key]:
            everything = {"credentials": {}, key: everything[key]}
        else:
            raise NotFound(f"The binding has no credential named '{key}'.")
    audit(action="binding.credentials.reveal", target=binding, actor=user, request=request,
          summary=(f"Credential '{key}' of binding {binding} revealed" if key is not None
                   else f"Credentials of binding {binding} revealed"))
    return everything


def can_reveal_credentials(*, binding: ServiceBinding, user: Any) -> bool:
    """Platform admins, and developers (or team admins) of the binding's namespace."""
    if not getattr(user, "is_authenticated", False):
        return False
    return access.can(user, "reveal", binding.namespace)

