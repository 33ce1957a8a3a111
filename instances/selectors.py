"""Reads of instances and operations shared by the API, the store and the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet

from brokers.catalog_diff import describe_schema_changes
from brokers.conformance.behaviour import ObservedCall
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
    query = ServiceBinding.objects.visible().select_related("instance__plan__offering", "predecessor")
    query = query.filter(instance__in=ServiceInstance.objects.visible())
    allowed = _namespaces(user)
    if allowed is not None:
        query = query.filter(Q(namespace__in=allowed) | Q(instance__namespace__in=allowed))
    if instance:
        query = query.filter(instance_id=instance)
    if namespace:
        query = query.filter(namespace=namespace)
    operations = Operation.objects.order_by("-started_at")
    return query.prefetch_related(Prefetch("operations", queryset=operations, to_attr="operations_newest_first"),
                                  "successors")


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


# --- answers for the brokers app (brokers.hooks; registered in instances/apps.py) -------------------------------


def instance_counts_by_plan(broker_id: Any) -> dict[Any, int]:
    """{plan pk: existing (not deleted) instances} for one broker's plans (one grouped query)."""
    rows = (ServiceInstance.objects.visible().filter(broker_id=broker_id).order_by().values("plan_id")
            .annotate(count=Count("pk")).values_list("plan_id", "count"))
    return dict(rows)


def broker_calls_since(broker_id: Any, since: Any, limit: int) -> list[ObservedCall]:
    """The OSB calls made for a broker's operations since `since`, newest first, at most `limit`."""
    rows = (OperationCall.objects.filter(at__gte=since, operation__instance__broker_id=broker_id)
            .order_by("-at").values_list(
                "method", "path", "status", "duration_ms", "at", "error", "retry_after", "malformed", "error_code",
                "error_described", "response_excerpt", "operation_id", "operation__type")[:limit])
    return [
        ObservedCall(method=method, path=path, status=status, duration_ms=duration, at=at, error=error,
                     retry_after=retry_after or None, malformed=malformed, error_code=error_code or None,
                     error_described=described, response_excerpt=excerpt, operation_id=str(operation_id),
                     operation_type=op_type)
        for (method, path, status, duration, at, error, retry_after, malformed, error_code, described, excerpt,
             operation_id, op_type) in rows
    ]


# --- what changed about an instance's plan in the catalog ------------------------------------------------------


@dataclass(frozen=True)
class CatalogNote:
    kind: str  # "removed", "restricted", "maintenance", "schema"
    title: str
    text: str
    lines: tuple[str, ...] = ()


def instance_catalog_notes(instance: ServiceInstance) -> list[CatalogNote]:
    """What the catalog changed under an existing instance: its plan removed or no longer offered, a newer
    maintenance version, or the plan's parameter schemas changed since the instance's parameters were last set."""
    if instance.is_deleted:
        return []
    plan = instance.plan
    notes = []
    if not plan.active:
        when = plan.updated_at.strftime("%Y-%m-%d")
        if plan.restricted:
            notes.append(CatalogNote("restricted", "This plan is no longer offered",
                                     f"The platform's catalog restrictions exclude the {plan.title} plan (since {when}). "
                                     "This instance keeps working; no new instance can use the plan."))
        else:
            notes.append(CatalogNote("removed", "This plan was removed from the broker's catalog",
                                     f"The broker no longer lists the {plan.title} plan (since {when}). This instance "
                                     "keeps working; no new instance can use the plan."))
    offered = (plan.maintenance_info or {}).get("version")
    current = (instance.maintenance_info or {}).get("version")
    if offered and offered != current:
        description = (plan.maintenance_info or {}).get("description") or ""
        notes.append(CatalogNote("maintenance", f"Maintenance version {offered} is available",
                                 f"The broker now offers version {offered} of this plan"
                                 f"{f' (this instance has {current})' if current else ''}. {description}".strip()))
    change = plan.schemas_changed or {}
    if change.get("at") and _schema_changed_since_set(instance, change["at"]):
        lines = tuple(describe_schema_changes(change.get("schemas")))
        notes.append(CatalogNote("schema", "The plan's parameters changed",
                                 f"The broker changed the parameters of the {plan.title} plan on "
                                 f"{change['at'][:10]}, after this instance's parameters were set.", lines))
    return notes


def _schema_changed_since_set(instance: ServiceInstance, at: str) -> bool:
    last_set = (Operation.objects.filter(instance=instance, binding__isnull=True, state="succeeded",
                                         type__in=[OpType.PROVISION, OpType.UPDATE])
                .order_by("-finished_at").values_list("finished_at", flat=True).first()) or instance.created_at
    return datetime.fromisoformat(at) > last_set
