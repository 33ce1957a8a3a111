"""Provision, update and deprovision: what people (UI, API, admin) ask for. Each builds the OSB request
(brokers.osb.requests), stores it on a new Operation with the rows it changes, and enqueues the step on commit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers.models import ServicePlan
from brokers.osb import DeprovisionRequest, PreparedRequest, ProvisionRequest, UpdateRequest
from brokers.selectors import visible_plans
from brokers.services import broker_client
from catalog_portal.exceptions import ApplicationError, Conflict
from catalog_portal.tasks import enqueue_on_commit
from instances.models import Operation, ServiceInstance
from instances.services.identity import identity_for, instance_context, legacy_guids, originating_identity
from instances.services.validation import check_dns_label, check_parameters, parameters_for_update
from instances.states import ACTIVE, InstanceState, OpState, OpType
from teams import access
from teams.audit import audit


def _plan_is_visible(plan: ServicePlan, user: Any) -> None:
    """A plan hidden from `user` (service access) does not exist for them."""
    if user is not None and not visible_plans(user).filter(pk=plan.pk).exists():
        raise ApplicationError("No such plan.", fields={"plan": ["No such plan."]})


def _plan_is_offered(plan: ServicePlan) -> None:
    if not (plan.active and plan.offering.active):
        by = "on this platform" if plan.restricted or plan.offering.restricted else "by the broker"
        raise ApplicationError(
            f"The plan '{plan.title}' is no longer offered {by}; choose another plan.",
            fields={"plan": ["This plan is no longer offered."]},
        )


def start_operation(operation: Operation) -> Operation:
    """Save a new operation and enqueue it on commit; the partial unique index turns a concurrent second
    one on the same target into a 409."""
    from instances.tasks import operation_step

    now = timezone.now()
    operation.next_poll_at = now
    operation.next_step = "Waiting for a worker to send the request to the broker."
    # Until the broker accepts the request: its answer (202) starts the polling deadline.
    operation.deadline = now + timedelta(seconds=settings.OPERATION_SUBMIT_DEADLINE_SECONDS)
    try:
        with transaction.atomic():
            operation.save()
    except IntegrityError:
        raise Conflict(
            f"Another operation is still running on '{operation.binding or operation.instance}'. Wait for it to "
            "finish and try again."
        ) from None
    enqueue_on_commit(operation_step, str(operation.pk))
    return operation


def provision_request(
    *, plan: ServicePlan, instance_id: str, namespace: str, name: str, parameters: dict[str, Any]
) -> ProvisionRequest:
    """The PUT that creates an instance: stored on its provision operation, and shown by the form's preview."""
    org_guid, space_guid = legacy_guids(namespace=namespace)
    return ProvisionRequest(
        instance_id=instance_id, service_id=plan.offering.catalog_id, plan_id=plan.catalog_id,
        context=instance_context(namespace=namespace, name=name), organization_guid=org_guid,
        space_guid=space_guid, parameters=parameters,
        maintenance_version=(plan.maintenance_info or {}).get("version"),
    )


# The instance id is chosen when the instance is created; a preview shows this in its place.
PREVIEW_INSTANCE_ID = "{instance_id}"


def provision_preview(
    *, plan: ServicePlan, name: str, namespace: str, parameters: dict[str, Any], user: Any, mask: str
) -> PreparedRequest:
    """What a worker would send to provision this, without creating or sending anything: the request
    `instance_provision` would store, rendered by the broker's OSB client (the Authorization masked with `mask`;
    `parameters` should be masked by the caller). The instance id is PREVIEW_INSTANCE_ID."""
    request = provision_request(plan=plan, instance_id=PREVIEW_INSTANCE_ID, namespace=namespace, name=name,
                                parameters=parameters)
    with broker_client(broker=plan.broker) as client:
        return client.prepare(request, identity=originating_identity(identity_for(user)), mask=mask)


def instance_provision(
    *, plan: ServicePlan, name: str, namespace: str, parameters: dict[str, Any] | None = None, requested_by: Any = None,
    request: Any = None,
) -> ServiceInstance:
    """Create an instance and its provision operation; the worker sends the request after commit; audited.

    `requested_by` must be a developer in `namespace` and see the plan (None: the portal itself).
    """
    check_dns_label(name, field="name")
    check_dns_label(namespace, field="namespace")
    _plan_is_visible(plan, requested_by)
    access.require_namespace(requested_by, "provision", namespace)
    _plan_is_offered(plan)
    parameters = check_parameters(plan.instance_create_schema, parameters or {})
    if ServiceInstance.objects.visible().filter(namespace=namespace, name=name).exists():
        raise ApplicationError(
            f"An instance named '{name}' already exists in namespace '{namespace}'.",
            fields={"name": [f"'{name}' is taken in namespace '{namespace}'."]},
        )
    with transaction.atomic():
        instance = ServiceInstance(
            name=name, namespace=namespace, broker=plan.broker, plan=plan, parameters=parameters,
            maintenance_info=plan.maintenance_info, requested_by=requested_by, state=InstanceState.PROVISIONING,
        )
        put = provision_request(plan=plan, instance_id=str(instance.pk), namespace=namespace, name=name,
                                parameters=parameters)
        instance.context = put.context  # sent again, unchanged, with every later request for the instance
        try:
            with transaction.atomic():
                instance.save()
        except IntegrityError:
            raise ApplicationError(
                f"An instance named '{name}' already exists in namespace '{namespace}'.",
                fields={"name": [f"'{name}' is taken in namespace '{namespace}'."]},
            ) from None
        start_operation(Operation(type=OpType.PROVISION, instance=instance, request=put.to_json(),
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        audit(action="instance.create", target=instance, actor=requested_by, request=request,
              summary=f"Instance {instance} of plan '{plan}' requested")
    return instance


def instance_update(
    *,
    instance: ServiceInstance,
    plan: ServicePlan | None = None,
    parameters: dict[str, Any] | None = None,
    upgrade: bool = False,
    requested_by: Any = None,
    request: Any = None,
) -> ServiceInstance:
    """Change an instance's plan, parameters or maintenance version; only what changed is sent; audited."""
    access.require(requested_by, "update", instance.namespace, what=f"instance '{instance}'")
    if plan is not None:
        _plan_is_visible(plan, requested_by)
    if instance.state != InstanceState.READY:
        raise Conflict(f"'{instance}' is {instance.get_state_display().lower()}; it can be changed once it is ready.")
    current = instance.plan
    target = plan or current
    plan_id = params = maintenance = None
    if plan is not None and plan.pk != current.pk:
        if plan.offering_id != current.offering_id:
            raise ApplicationError("The new plan must belong to the same service.", fields={"plan": ["Another service's plan."]})
        if not current.effective_plan_updateable:
            raise ApplicationError(
                f"The plan '{current.title}' cannot be changed to another plan.",
                fields={"plan": ["This service's plans are not updatable."]},
            )
        _plan_is_offered(plan)
        plan_id = plan.catalog_id
    if parameters is not None:
        params = check_parameters(target.instance_update_schema,
                                  parameters_for_update(current=instance.parameters, changes=parameters))
    if upgrade:
        new_version = (target.maintenance_info or {}).get("version")
        old_version = (instance.maintenance_info or {}).get("version")
        if not new_version or new_version == old_version:
            raise ApplicationError("There is no newer maintenance version for this instance.")
        maintenance = new_version
    elif plan_id is not None and target.maintenance_info:
        maintenance = target.maintenance_info["version"]
    changed = [what for what, value in (("plan", plan_id), ("parameters", params), ("maintenance version", maintenance))
               if value is not None]
    if not changed:
        raise ApplicationError("Nothing to change: give a new plan, parameters, or ask for the upgrade.")
    patch = UpdateRequest(instance_id=str(instance.pk), service_id=current.offering.catalog_id, plan_id=plan_id,
                          context=instance.context, parameters=params, maintenance_version=maintenance,
                          previous_plan_id=current.catalog_id,
                          previous_maintenance_version=(instance.maintenance_info or {}).get("version"))
    return _start_update(instance, patch.to_json(), requested_by=requested_by, request=request,
                         summary=f"Update of instance {instance} requested: {', '.join(changed)}")


def _start_update(instance: ServiceInstance, stored_request: dict[str, Any], *, requested_by: Any, request: Any,
                  summary: str) -> ServiceInstance:
    """The update operation with this stored request, the instance marked updating, the audit record."""
    with transaction.atomic():
        start_operation(Operation(type=OpType.UPDATE, instance=instance, request=stored_request,
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        ServiceInstance.objects.filter(pk=instance.pk).update(state=InstanceState.UPDATING, updated_at=timezone.now())
        audit(action="instance.update", target=instance, actor=requested_by, request=request, summary=summary)
    instance.refresh_from_db()
    return instance


def instance_deprovision(*, instance: ServiceInstance, requested_by: Any = None, cascade: bool = False,
                         request: Any = None) -> ServiceInstance:
    """Ask the broker to delete the instance; it disappears from the portal once the broker confirms; audited.

    Refused while bindings exist, unless `cascade`: then every binding is unbound first and the delete is
    sent once they are all gone.
    """
    from instances.models import ServiceBinding
    from instances.services.bindings import binding_delete
    from instances.states import BindingState, Phase

    access.require(requested_by, "deprovision", instance.namespace, what=f"instance '{instance}'")
    if instance.is_deleted:
        raise ApplicationError("This instance is already deleted.")
    bindings = list(ServiceBinding.objects.visible().filter(instance=instance))
    if bindings and not cascade:
        names = ", ".join(sorted(b.name for b in bindings))
        raise Conflict(
            f"'{instance}' still has {len(bindings)} binding(s) ({names}). Unbind them first, or deprovision with "
            "cascade to unbind them automatically."
        )
    delete = DeprovisionRequest(instance_id=str(instance.pk), service_id=instance.plan.offering.catalog_id,
                                plan_id=instance.plan.catalog_id)
    with transaction.atomic():
        for binding in bindings:
            if binding.state != BindingState.UNBINDING:
                binding_delete(binding=binding, requested_by=requested_by, request=request)
        operation = Operation(type=OpType.DEPROVISION, instance=instance, request=delete.to_json(),
                              requested_by=requested_by, identity=identity_for(requested_by))
        if bindings:
            operation.phase = Phase.WAIT
        start_operation(operation)
        if bindings:
            Operation.objects.filter(pk=operation.pk).update(
                next_step=f"Unbinding {len(bindings)} binding(s) first; the instance is deleted after them."
            )
        ServiceInstance.objects.filter(pk=instance.pk).update(
            state=InstanceState.DEPROVISIONING, updated_at=timezone.now()
        )
        audit(action="instance.delete", target=instance, actor=requested_by, request=request,
              summary=f"Deprovisioning of instance {instance} requested" + (" (cascade)" if bindings else ""))
    instance.refresh_from_db()
    return instance


def retry_refusal(instance: ServiceInstance) -> str | None:
    """Why the instance's failed operation cannot be retried now, or None if it can (see `instance_retry`)."""
    try:
        _failed_operation_to_retry(instance)
    except ApplicationError as exc:
        return exc.message
    return None


def _failed_operation_to_retry(instance: ServiceInstance) -> Operation:
    if instance.is_deleted:
        raise ApplicationError("This instance is deleted.")
    own = Operation.objects.filter(instance=instance, binding__isnull=True)
    if own.filter(state__in=ACTIVE).exists():
        raise Conflict("Wait until the running operation (or the clean-up at the broker) has finished.")
    last = own.filter(type__in=[OpType.PROVISION, OpType.UPDATE, OpType.DEPROVISION]).order_by("-started_at").first()
    if last is None or last.state != OpState.FAILED:
        raise ApplicationError("The last operation did not fail: there is nothing to retry.")
    if last.type == OpType.PROVISION:
        cleanup = own.filter(type=OpType.ORPHAN_MITIGATION, parent=last).order_by("-started_at").first()
        if cleanup is not None and cleanup.state != OpState.SUCCEEDED:
            raise ApplicationError(
                "The broker may still hold what the failed provision created (cleaning it up did not finish). "
                "Delete this instance first, then provision again.")
    if last.type == OpType.UPDATE:
        if instance.state != InstanceState.READY:
            raise ApplicationError("The broker says the instance is no longer usable; delete it instead.")
        if last.update_repeatable is False:
            raise ApplicationError("The broker says this change would fail again, so it is not repeated.")
    return last


def instance_retry(*, instance: ServiceInstance, requested_by: Any = None, request: Any = None) -> ServiceInstance:
    """Try an instance's failed provision, update or deprovision again, as the OSB spec allows; audited.

    * A failed provision is provisioned anew under a **new instance id** with the same name, namespace, plan and
      parameters (platforms should not reuse instance ids, spec "Provisioning"). Only once the broker holds
      nothing of the failed one: it refused the request, or the clean-up after it (orphan mitigation) succeeded.
      The failed instance is kept, deleted, for the record. Returns the new instance.
    * A failed update is sent again exactly as before, unless the broker said it is not repeatable
      (`update_repeatable: false`) or the instance is no longer usable.
    * A failed deprovision is asked for again.

    Raises ApplicationError when there is nothing to retry, Conflict while an operation runs.
    """
    access.require(requested_by, "update", instance.namespace, what=f"instance '{instance}'")
    with transaction.atomic():
        locked = ServiceInstance.objects.select_for_update().get(pk=instance.pk)
        last = _failed_operation_to_retry(locked)
        if last.type == OpType.DEPROVISION:
            return instance_deprovision(instance=locked, requested_by=requested_by, request=request)
        if last.type == OpType.UPDATE:  # the same stored request: the broker gets the same body again
            return _start_update(locked, last.request, requested_by=requested_by, request=request,
                                 summary=f"Retry of the failed update of instance {locked}")
        now = timezone.now()
        ServiceInstance.objects.filter(pk=locked.pk).update(state=InstanceState.DELETED, deleted_at=now, updated_at=now)
        retried = instance_provision(plan=locked.plan, name=locked.name, namespace=locked.namespace,
                                     parameters=locked.parameters, requested_by=requested_by, request=request)
        audit(action="instance.retry", target=locked, actor=requested_by, request=request,
              summary=f"Failed instance {locked} provisioned again as {retried.pk}")
    return retried
