"""Drift: what the broker holds for an instance against what the portal holds (issue 17).

A check is an ordinary operation (type `refresh`) whose stored request is the instance's fetch
(`GET /v2/service_instances/:id`): the engine sends it, records the call like every other and hands the answer to
`differences`, whose result lands on the instance (`drift`, `drift_checked_at`). Checks are started on demand
(`drift_check`) and periodically (`drift_checks_due`, a bounded number per broker each minute). Two ways out of a
difference: `drift_adopt` stores the broker's values in the portal (audited), `drift_reapply` sends the portal's
values again as an update operation.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from brokers.models import ServicePlan
from brokers.osb import BindingInfo, FetchBindingRequest, FetchInstanceRequest, InstanceInfo, UpdateRequest
from catalog_portal.exceptions import ApplicationError, Conflict
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.identity import identity_for
from instances.states import ACTIVE, BindingState, InstanceState, OpType, Phase
from teams import access
from teams.audit import audit

FIELDS = ("plan", "parameters", "maintenance_info", "dashboard_url")


def cannot_ask(instance: ServiceInstance) -> str | None:
    """Why the broker cannot be asked about `instance`, or None when it can."""
    if not instance.plan.offering.instances_retrievable:
        return ("The broker cannot be asked: its catalog does not declare instances_retrievable for the service "
                f"'{instance.plan.offering.title}'.")
    return None


def _plan_value(plan: ServicePlan | None, catalog_id: str) -> dict[str, Any]:
    return {"id": str(plan.pk) if plan else None, "catalog_id": catalog_id, "name": plan.name if plan else None}


def _version(value: Any) -> str | None:
    return value.get("version") if isinstance(value, dict) else None


def differences(instance: ServiceInstance, info: InstanceInfo) -> list[dict[str, Any]]:
    """What differs between the portal's record and the broker's answer to the fetch. A field the broker left out
    is not a difference (it did not say)."""
    found: list[dict[str, Any]] = []
    plan = instance.plan
    if info.plan_id and info.plan_id != plan.catalog_id:
        theirs = ServicePlan.objects.filter(broker=instance.broker, catalog_id=info.plan_id).first()
        found.append({"field": "plan", "portal": _plan_value(plan, plan.catalog_id),
                      "broker": _plan_value(theirs, info.plan_id)})
    if info.parameters is not None and info.parameters != (instance.parameters or {}):
        found.append({"field": "parameters", "portal": instance.parameters or {}, "broker": info.parameters})
    ours, theirs_version = _version(instance.maintenance_info), _version(info.maintenance_info)
    if (info.maintenance_info is not None or ours) and ours != theirs_version:
        found.append({"field": "maintenance_info", "portal": {"version": ours} if ours else None,
                      "broker": {"version": theirs_version} if theirs_version else None})
    if info.dashboard_url is not None and info.dashboard_url != (instance.dashboard_url or ""):
        found.append({"field": "dashboard_url", "portal": instance.dashboard_url or None,
                      "broker": info.dashboard_url})
    return found


def binding_differences(binding: ServiceBinding, info: BindingInfo) -> list[dict[str, Any]]:
    """What differs between a binding's record and the broker's answer to its fetch: its parameters (a binding
    cannot be updated, so that is all the portal holds of it besides the credentials, which are not compared)."""
    if info.parameters is not None and info.parameters != (binding.parameters or {}):
        return [{"field": "parameters", "portal": binding.parameters or {}, "broker": info.parameters}]
    return []


def _check_bindings(instance: ServiceInstance, requested_by: Any) -> None:
    """With bindings_retrievable: a check of each ready binding too (each its own operation, in the binding's slot;
    a busy binding is left for the next check)."""
    from instances.services.instances import start_operation

    if not instance.plan.offering.bindings_retrievable:
        return
    for binding in ServiceBinding.objects.visible().filter(instance=instance, state=BindingState.READY):
        fetch = FetchBindingRequest(instance_id=str(instance.pk), binding_id=str(binding.pk),
                                    service_id=instance.plan.offering.catalog_id, plan_id=instance.plan.catalog_id)
        try:
            start_operation(Operation(type=OpType.REFRESH, phase=Phase.FETCH, instance=instance, binding=binding,
                                      request=fetch.to_json(), requested_by=requested_by,
                                      identity=identity_for(requested_by)))
        except Conflict:
            continue


def drift_check(*, instance: ServiceInstance, requested_by: Any = None) -> Operation:
    """Start a check of `instance` at its broker (a `refresh` operation; the engine sends the fetch).

    Refused (ApplicationError) when the broker cannot be asked or the instance is not ready, Conflict while another
    operation runs on it.
    """
    access.require(requested_by, "update", instance.namespace, what=f"instance '{instance}'")
    from instances.services.instances import start_operation

    reason = cannot_ask(instance)
    if reason:
        raise ApplicationError(reason)
    if instance.state != InstanceState.READY:
        raise Conflict(f"'{instance}' is {instance.get_state_display().lower()}; it can be checked once it is ready.")
    fetch = FetchInstanceRequest(instance_id=str(instance.pk), service_id=instance.plan.offering.catalog_id,
                                 plan_id=instance.plan.catalog_id)
    with transaction.atomic():
        operation = start_operation(Operation(type=OpType.REFRESH, phase=Phase.FETCH, instance=instance,
                                              request=fetch.to_json(), requested_by=requested_by,
                                              identity=identity_for(requested_by)))
        Operation.objects.filter(pk=operation.pk).update(
            next_step="Waiting for a worker to ask the broker what it holds for this instance.")
        ServiceInstance.objects.filter(pk=instance.pk).update(
            drift_due_at=timezone.now() + timedelta(seconds=settings.DRIFT_CHECK_INTERVAL_SECONDS))
        _check_bindings(instance, requested_by)
    return operation


def drift_checks_due(*, now: Any = None) -> int:
    """Beat: start the periodic checks that are due, at most DRIFT_CHECKS_PER_BROKER_PER_MINUTE per broker (the task
    runs once a minute). Ready instances of retrievable services without a running operation, longest unchecked
    first. Returns how many were started."""
    now = now or timezone.now()
    per_broker = settings.DRIFT_CHECKS_PER_BROKER_PER_MINUTE
    busy = Operation.objects.filter(instance=OuterRef("pk"), binding__isnull=True, state__in=ACTIVE)
    due = (ServiceInstance.objects.visible()
           .filter(state=InstanceState.READY, plan__offering__instances_retrievable=True)
           .exclude(drift_due_at__gt=now).filter(~Exists(busy))
           .select_related("plan__offering", "broker").order_by("drift_due_at", "created_at"))
    started: dict[Any, int] = {}
    for instance in due[:1000]:
        if started.get(instance.broker_id, 0) >= per_broker:
            continue
        try:
            drift_check(instance=instance)
        except ApplicationError:  # it became busy or changed meanwhile: the next run looks again
            continue
        started[instance.broker_id] = started.get(instance.broker_id, 0) + 1
    return sum(started.values())


def drifted_bindings(instance: ServiceInstance) -> list[ServiceBinding]:
    """The instance's bindings whose last check found a difference."""
    return [b for b in ServiceBinding.objects.visible().filter(instance=instance).order_by("name") if b.drift]


def _current_drift(instance: ServiceInstance, *, bindings: bool = False) -> list[dict[str, Any]]:
    if instance.is_deleted:
        raise ApplicationError("This instance is deleted.")
    if Operation.objects.filter(instance=instance, binding__isnull=True, state__in=ACTIVE).exists():
        raise Conflict(f"Another operation is still running on '{instance}'. Wait for it to finish and try again.")
    if not instance.drift and not (bindings and drifted_bindings(instance)):
        raise ApplicationError("The last check found no difference from the broker: there is nothing to settle.")
    return list(instance.drift or [])


def drift_adopt(*, instance: ServiceInstance, requested_by: Any = None, request: Any = None) -> ServiceInstance:
    """Make the portal's record say what the broker said at the last check (plan, parameters, maintenance
    version, dashboard URL); nothing is sent to the broker. Audited."""
    access.require(requested_by, "update", instance.namespace, what=f"instance '{instance}'")
    with transaction.atomic():
        instance = ServiceInstance.objects.select_for_update().select_related("plan", "broker").get(pk=instance.pk)
        found = _current_drift(instance, bindings=True)
        fields: dict[str, Any] = {}
        for difference in found:
            broker = difference["broker"]
            if difference["field"] == "plan":
                plan = ServicePlan.objects.filter(broker=instance.broker, catalog_id=broker["catalog_id"]).first()
                if plan is None:
                    raise ApplicationError(
                        f"The broker says the instance has the plan '{broker['catalog_id']}', which is not in the "
                        "portal's copy of its catalog. Refresh the catalog first.")
                fields["plan"] = plan
            elif difference["field"] == "parameters":
                fields["parameters"] = broker or {}
            elif difference["field"] == "maintenance_info":
                version = _version(broker)
                target = fields.get("plan") or instance.plan
                same = _version(target.maintenance_info) == version
                fields["maintenance_info"] = (target.maintenance_info if same else broker) if version else None
            elif difference["field"] == "dashboard_url":
                fields["dashboard_url"] = broker or ""
        now = timezone.now()
        ServiceInstance.objects.filter(pk=instance.pk).update(drift=[], drift_error="", updated_at=now, **fields)
        adopted = [d["field"] for d in found]
        for binding in drifted_bindings(instance):  # a binding cannot be updated: its broker's values are adopted
            theirs = {d["field"]: d["broker"] for d in binding.drift}
            ServiceBinding.objects.filter(pk=binding.pk).update(
                drift=[], updated_at=now, parameters=theirs.get("parameters", binding.parameters) or {})
            adopted.append(f"binding {binding.name} parameters")
        names = ", ".join(adopted)
        audit(action="instance.drift_adopt", target=instance, actor=requested_by, request=request,
              summary=f"The broker's values adopted for instance {instance}: {names}")
    instance.refresh_from_db()
    return instance


def drift_reapply(*, instance: ServiceInstance, requested_by: Any = None, request: Any = None) -> ServiceInstance:
    """Send the portal's values (plan, parameters, maintenance version) to the broker again: an ordinary update
    operation whose previous values are what the broker said it holds. A differing dashboard URL is the broker's
    to choose: it can only be adopted. Audited (as an update)."""
    from instances.services.instances import _start_update

    access.require(requested_by, "update", instance.namespace, what=f"instance '{instance}'")
    if instance.state != InstanceState.READY:
        raise Conflict(f"'{instance}' is {instance.get_state_display().lower()}; it can be changed once it is ready.")
    found = {d["field"]: d for d in _current_drift(instance)}
    plan = instance.plan
    plan_id = params = maintenance = None
    previous_plan_id, previous_version = plan.catalog_id, _version(instance.maintenance_info)
    if "plan" in found:
        plan_id, previous_plan_id = plan.catalog_id, found["plan"]["broker"]["catalog_id"]
    if "parameters" in found:
        # Each top-level key that differs, whole (as an ordinary update sends a change: parameters_for_update); a
        # key only the broker has cannot be taken away by an update.
        theirs = found["parameters"]["broker"] or {}
        params = {key: value for key, value in (instance.parameters or {}).items() if theirs.get(key) != value} or None
    if "maintenance_info" in found:
        maintenance = _version(instance.maintenance_info)
        previous_version = _version(found["maintenance_info"]["broker"])
    if plan_id is None and params is None and maintenance is None:
        raise ApplicationError("Nothing the portal can send differs (the dashboard URL is the broker's to choose, and "
                               "parameters only the broker has cannot be removed by an update): adopt the broker's "
                               "values instead.")
    patch = UpdateRequest(instance_id=str(instance.pk), service_id=plan.offering.catalog_id, plan_id=plan_id,
                          context=instance.context, parameters=params, maintenance_version=maintenance,
                          previous_plan_id=previous_plan_id, previous_maintenance_version=previous_version)
    changed = ", ".join(f for f in ("plan", "parameters", "maintenance_info") if f in found)
    return _start_update(instance, patch.to_json(), requested_by=requested_by, request=request,
                         summary=f"The portal's values re-applied to instance {instance} at the broker: {changed}")
