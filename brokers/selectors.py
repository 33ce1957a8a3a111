"""Reads of the catalog mirror, shared by the API, the store and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Coalesce, NullIf

from brokers.models import Broker, ServiceOffering, ServicePlan


def broker_list() -> QuerySet[Broker]:
    return Broker.objects.annotate(
        service_count=Count("offerings", filter=Q(offerings__active=True), distinct=True),
        plan_count=Count("plans", filter=Q(plans__active=True), distinct=True),
    ).order_by("name")


def _free_plan(free: bool) -> Exists:
    return Exists(ServicePlan.objects.filter(offering=OuterRef("pk"), active=True, free=free))


def offering_list(
    *,
    search: str | None = None,
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
    active: bool | None = True,
) -> QuerySet[ServiceOffering]:
    """Offerings filtered as the API and the store's facets describe; plans prefetched (active first)."""
    query = ServiceOffering.objects.select_related("broker")
    if active is not None:
        query = query.filter(active=active)
    for word in (search or "").lower().split():
        query = query.filter(search_text__contains=word)
    for tag in tags or []:
        query = query.filter(tag_index__contains=f"|{tag.lower()}|")
    if brokers:
        query = query.filter(Q(broker__pk__in=[b for b in brokers if _is_uuid(b)]) | Q(broker__name__in=brokers))
    if providers:
        query = query.filter(provider__in=providers)
    if free is True:
        query = query.filter(_free_plan(True))
    elif free is False:
        query = query.filter(~_free_plan(True))
    plans = ServicePlan.objects.filter(active=True).order_by("position")
    # Ordered by the name people see: display_name, or name when the broker gave none.
    shown_name = Coalesce(NullIf("display_name", Value("")), "name")
    return query.prefetch_related(Prefetch("plans", queryset=plans, to_attr="active_plans")).order_by(
        shown_name, "name", "pk"
    )


def plan_list(*, service: str | None = None, active: bool | None = True) -> QuerySet[ServicePlan]:
    query = ServicePlan.objects.select_related("offering", "broker")
    if active is not None:
        query = query.filter(active=active)
    if service:
        query = query.filter(offering_id=service if _is_uuid(service) else None)
    # offering_id and pk break ties (same offering name on two brokers) so pages are stable.
    return query.order_by("offering__name", "offering_id", "position", "pk")


def _is_uuid(value: Any) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True
