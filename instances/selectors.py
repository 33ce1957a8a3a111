"""Reads of instances and operations shared by the API, the store and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from instances.models import Operation, OperationCall, ServiceInstance
from instances.states import OpType

INSTANCE_OPERATION_TYPES = [OpType.PROVISION, OpType.UPDATE, OpType.DEPROVISION]


def instance_list(*, user: Any = None, namespace: str | None = None, service: str | None = None,
                  plan: str | None = None, state: str | None = None) -> QuerySet[ServiceInstance]:
    query = ServiceInstance.objects.visible().select_related("plan__offering", "broker")
    if namespace:
        query = query.filter(namespace=namespace)
    if service:
        query = query.filter(plan__offering_id=service)
    if plan:
        query = query.filter(plan_id=plan)
    if state:
        query = query.filter(state=state)
    operations = Operation.objects.order_by("-started_at")
    return query.prefetch_related(Prefetch("operations", queryset=operations, to_attr="operations_newest_first"))


def last_operation(instance: ServiceInstance) -> Operation | None:
    """The newest provision/update/deprovision (cleanups are shown beside it, not instead of it)."""
    operations = getattr(instance, "operations_newest_first", None)
    if operations is None:
        operations = list(instance.operations.order_by("-started_at"))
    return next((op for op in operations if op.type in INSTANCE_OPERATION_TYPES), None)


def active_cleanup(instance: ServiceInstance) -> Operation | None:
    operations = getattr(instance, "operations_newest_first", None)
    if operations is None:
        operations = list(instance.operations.order_by("-started_at"))
    newest = operations[0] if operations else None
    return newest if newest is not None and newest.type == OpType.ORPHAN_MITIGATION else None


def operation_list(*, instance: str | None = None, state: str | None = None) -> QuerySet[Operation]:
    query = Operation.objects.select_related("instance")
    if instance:
        query = query.filter(instance_id=instance)
    if state:
        query = query.filter(state=state)
    calls = OperationCall.objects.order_by("at", "id")
    return query.prefetch_related(Prefetch("calls", queryset=calls)).order_by("-started_at")
