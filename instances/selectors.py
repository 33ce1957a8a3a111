"""Reads of instances and operations shared by the API, the store and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, Q, QuerySet

from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from instances.states import OpType
from teams import access

INSTANCE_OPERATION_TYPES = [OpType.PROVISION, OpType.UPDATE, OpType.DEPROVISION]


def _namespaces(user: Any) -> set[str] | None:
    """The namespaces `user` may see; None = all (platform admins, and internal code that passes no user)."""
    return None if user is None else access.namespaces_for(user)


def instances_for_user(user: Any, query: QuerySet[ServiceInstance] | None = None) -> QuerySet[ServiceInstance]:
    """`query` (default: every instance, deleted ones included) narrowed to the namespaces `user` may see."""
    query = ServiceInstance.objects.all() if query is None else query
    allowed = _namespaces(user)
    return query if allowed is None else query.filter(namespace__in=allowed)


def instance_list(*, user: Any = None, namespace: str | None = None, service: str | None = None,
                  plan: str | None = None, state: str | None = None) -> QuerySet[ServiceInstance]:
    """Existing instances; with `user`, only those in namespaces of their teams (platform admins: all)."""
    query = instances_for_user(user, ServiceInstance.objects.visible()).select_related("plan__offering", "broker")
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


def _newest_first(target: Any) -> list[Operation]:
    operations = getattr(target, "operations_newest_first", None)
    if operations is None:
        operations = list(target.operations.order_by("-started_at"))
    return operations


def last_operation(instance: ServiceInstance) -> Operation | None:
    """The newest provision/update/deprovision (cleanups are shown beside it, not instead of it)."""
    return next((op for op in _newest_first(instance) if op.type in INSTANCE_OPERATION_TYPES), None)


def active_cleanup(instance: ServiceInstance) -> Operation | None:
    own = [op for op in _newest_first(instance) if op.binding_id is None]
    return own[0] if own and own[0].type == OpType.ORPHAN_MITIGATION else None


def binding_last_operation(binding: ServiceBinding) -> Operation | None:
    return next((op for op in _newest_first(binding) if op.type in (OpType.BIND, OpType.UNBIND)), None)


def binding_active_cleanup(binding: ServiceBinding) -> Operation | None:
    operations = _newest_first(binding)
    return operations[0] if operations and operations[0].type == OpType.ORPHAN_MITIGATION else None


def binding_list(*, user: Any = None, instance: Any = None, namespace: str | None = None
                 ) -> QuerySet[ServiceBinding]:
    """Existing bindings; with `user`, those whose namespace or whose instance's namespace is one of theirs."""
    query = ServiceBinding.objects.visible().select_related("instance__plan__offering")
    query = query.filter(instance__in=ServiceInstance.objects.visible())
    allowed = _namespaces(user)
    if allowed is not None:
        query = query.filter(Q(namespace__in=allowed) | Q(instance__namespace__in=allowed))
    if instance:
        query = query.filter(instance_id=instance)
    if namespace:
        query = query.filter(namespace=namespace)
    operations = Operation.objects.order_by("-started_at")
    return query.prefetch_related(Prefetch("operations", queryset=operations, to_attr="operations_newest_first"))


def operation_list(*, user: Any = None, instance: Any = None, binding: Any = None, state: str | None = None
                   ) -> QuerySet[Operation]:
    """Operations; with `user`, those on instances or bindings in namespaces of their teams."""
    query = Operation.objects.select_related("instance")
    allowed = _namespaces(user)
    if allowed is not None:
        query = query.filter(Q(instance__namespace__in=allowed) | Q(binding__namespace__in=allowed))
    if instance:
        query = query.filter(instance_id=instance)
    if binding:
        query = query.filter(binding_id=binding)
    if state:
        query = query.filter(state=state)
    calls = OperationCall.objects.order_by("at", "id")
    return query.prefetch_related(Prefetch("calls", queryset=calls)).order_by("-started_at")
