"""Bind, unbind and reveal credentials: what people ask for. Each writes rows and enqueues."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers.osb import BindRequest, UnbindRequest
from catalog_portal.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.sealed import seal
from instances.services.identity import identity_for
from instances.services.instances import busy, lock_instance, require_ready, start_operation
from instances.services.validation import check_dns_label, check_parameters
from instances.states import ACTIVE, BindingState, OpType
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
    parameters = seal(check_parameters(plan.binding_create_schema, parameters or {}), plan.binding_create_schema)
    with transaction.atomic():
        # Locked, read afresh: a bind never starts beside a deprovision (instances.py, "the rule").
        instance = lock_instance(instance)
        require_ready(instance, "bound")
        _name_free(name=name, namespace=namespace, secret_name=secret_name)
        context = {**instance.context, "namespace": namespace, "binding_name": name}
        bind_resource = {"app_guid": f"{namespace}/{name}"}
        binding = ServiceBinding(
            instance=instance, name=name, namespace=namespace, secret_name=secret_name, parameters=parameters,
            context=context, bind_resource=bind_resource, requested_by=requested_by,
        )
        try:
            with transaction.atomic():
                binding.save()
        except IntegrityError:
            _name_free(name=name, namespace=namespace, secret_name=secret_name)
            raise Conflict("That binding name or Secret name was just taken; choose another.",
                           code="name_taken") from None
        put = BindRequest(instance_id=str(instance.pk), binding_id=str(binding.pk), service_id=plan.offering.catalog_id,
                          plan_id=plan.catalog_id, context=context, bind_resource=bind_resource, parameters=parameters,
                          # An async binding's credentials can only be fetched (GET) when the broker supports it.
                          accepts_incomplete=plan.offering.bindings_retrievable)
        start_operation(Operation(type=OpType.BIND, instance=instance, binding=binding, request=put.to_json(),
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        audit(action="binding.create", target=binding, actor=requested_by, request=request,
              summary=f"Binding {binding} of instance {instance} requested (Secret {namespace}/{secret_name})")
    return binding


def _name_free(*, name: str, namespace: str, secret_name: str) -> None:
    """409 when another (current) binding has the name, or publishes the Secret, in `namespace` (naming its bind);
    a rotation's predecessor shares both with its successor."""
    taken = ServiceBinding.objects.visible().filter(namespace=namespace, current=True)
    holder = taken.filter(name=name).first()
    if holder is not None:
        raise Conflict(f"A binding named '{name}' already exists in namespace '{namespace}'.",
                       fields={"name": [f"'{name}' is taken in namespace '{namespace}'."]},
                       code="name_taken", operation=_bind_of(holder))
    holder = taken.filter(secret_name=secret_name).first()
    if holder is not None:
        raise Conflict(f"Another binding already publishes the Secret '{secret_name}' in '{namespace}'.",
                       fields={"secret_name": [f"'{secret_name}' is used by another binding."]},
                       code="name_taken", operation=_bind_of(holder))


def _bind_of(binding: ServiceBinding) -> Any:
    bind = Operation.objects.filter(binding=binding, type=OpType.BIND).order_by("-started_at").first()
    return bind.pk if bind else None


def _lock_binding(binding: ServiceBinding) -> ServiceBinding:
    """The binding's row, read afresh and locked, after its instance's (the order every request takes)."""
    lock_instance(binding.instance_id)
    return (ServiceBinding.objects.select_for_update(no_key=True, of=("self",))
            .select_related("instance__plan__offering").get(pk=binding.pk))


def binding_gone(binding: ServiceBinding) -> NotFound:
    """404 for a binding deleted meanwhile, naming the operation that deleted it."""
    last = Operation.objects.filter(binding=binding).order_by("-started_at").first()
    return NotFound(f"Binding '{binding}' has been deleted.", code="gone", operation=last.pk if last else None)


def _running(binding: ServiceBinding) -> Operation | None:
    return Operation.objects.filter(binding=binding, state__in=ACTIVE).first()


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
    with transaction.atomic():
        binding = _lock_binding(binding)
        if binding.is_deleted:
            raise binding_gone(binding)
        running = _running(binding)
        if running is not None:
            raise busy(binding, running)
        _start_unbind(binding, requested_by=requested_by, request=request)
    binding.refresh_from_db()
    return binding


def binding_unbind_for_cascade(*, binding: ServiceBinding, requested_by: Any = None, request: Any = None) -> None:
    """The unbind a cascading deprovision starts, inside its transaction (the instance is locked already): none if
    the binding is being unbound already; 409 naming the operation if another one (a bind) runs on it."""
    binding = _lock_binding(binding)
    if binding.is_deleted:
        return
    running = _running(binding)
    if running is not None:
        if running.type == OpType.UNBIND or (running.type == OpType.ORPHAN_MITIGATION and running.delete_on_success):
            return  # it is being deleted already; the deprovision waits for it
        raise busy(binding, running)
    _start_unbind(binding, requested_by=requested_by, request=request)


def _start_unbind(binding: ServiceBinding, *, requested_by: Any, request: Any) -> None:
    """The unbind operation, the binding marked unbinding, the audit record (the caller holds the locks)."""
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

