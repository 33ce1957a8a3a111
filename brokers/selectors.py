"""Reads of the catalog mirror, shared by the API, the store and the admin."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Lower, NullIf

from brokers.models import Broker, ServiceOffering, ServicePlan


def broker_list() -> QuerySet[Broker]:
    """Brokers with their active service and plan counts (one query: correlated subqueries, no join
    fan-out however big the catalogs)."""
    return Broker.objects.annotate(
        service_count=_active_count(ServiceOffering), plan_count=_active_count(ServicePlan)
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


# --- The store (marketplace facets, sorting, broker health) ---------------------------------------

STORE_SORTS: dict[str, tuple[Any, ...]] = {
    "name": (Lower(Coalesce(NullIf("display_name", Value("")), "name")), "name", "pk"),
    "provider": (
        Lower(Coalesce(NullIf("provider", Value("")), "broker__name")),
        Lower(Coalesce(NullIf("display_name", Value("")), "name")),
        "pk",
    ),
    "newest": ("-created_at", "name", "pk"),
}


def store_offering_list(
    *,
    search: str = "",
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
    sort: str = "name",
) -> QuerySet[ServiceOffering]:
    """Active offerings for the marketplace grid, filtered like `offering_list`, in the chosen order."""
    query = offering_list(search=search, tags=tags, brokers=brokers, providers=providers, free=free)
    return query.order_by(*STORE_SORTS.get(sort, STORE_SORTS["name"]))


@dataclass(frozen=True)
class StoreFacets:
    """Counts per facet value. Each facet is counted with every *other* facet applied (so the values
    of one facet stay visible while it is in use); tags combine with AND, so they count the results."""

    tags: list[tuple[str, int]]
    providers: list[tuple[str, int]]
    brokers: list[tuple[str, int]]
    free: int
    paid: int


def store_facets(
    *,
    search: str = "",
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
) -> StoreFacets:
    """Facet counts of the marketplace in four queries, whatever the catalog size."""
    filters: dict[str, Any] = {
        "search": search,
        "tags": tags,
        "brokers": brokers,
        "providers": providers,
        "free": free,
    }

    def without(name: str | None) -> QuerySet[ServiceOffering]:
        kept = {key: value for key, value in filters.items() if key != name}
        return offering_list(**kept).prefetch_related(None).order_by()

    # Tags live in a JSON list: counted here over one column of the filtered set (one query).
    tag_counts: Counter[str] = Counter()
    labels: dict[str, str] = {}
    for offering_tags in without(None).values_list("tags", flat=True):
        for key, label in {str(t).lower(): str(t) for t in offering_tags or [] if str(t).strip()}.items():
            tag_counts[key] += 1
            labels.setdefault(key, label)
    provider_rows = without("providers").exclude(provider="").values("provider").annotate(n=Count("pk"))
    broker_rows = without("brokers").values("broker__name").annotate(n=Count("pk"))
    price = without("free").aggregate(total=Count("pk"), free=Count("pk", filter=_free_plan(True)))

    def ranked(pairs: Any) -> list[tuple[str, int]]:
        return sorted(pairs, key=lambda pair: (-pair[1], pair[0].lower()))

    return StoreFacets(
        tags=ranked((labels[key], n) for key, n in tag_counts.items()),
        providers=ranked((row["provider"], row["n"]) for row in provider_rows),
        brokers=ranked((row["broker__name"], row["n"]) for row in broker_rows),
        free=price["free"],
        paid=price["total"] - price["free"],
    )


def failed_broker_list() -> list[Broker]:
    """Enabled brokers whose last catalog sync failed (their previous mirror stays in the store)."""
    return list(
        Broker.objects.filter(status=Broker.Status.FAILED, enabled=True).only("id", "name", "status_message")
    )


def _active_count(model: type[ServiceOffering] | type[ServicePlan]) -> Coalesce:
    rows = model.objects.filter(broker=OuterRef("pk"), active=True).order_by().values("broker")
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), 0)

