"""Reads of the catalog mirror, shared by the API, the store and the admin."""

from __future__ import annotations

import hashlib
import json
import operator
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from types import SimpleNamespace
from typing import Any, NamedTuple

from django.db.models import (
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Lower, NullIf
from django.utils import timezone

from brokers import conformance, hooks
from brokers.conformance import CheckResult, behaviour
from brokers.conformance import catalog as conformance_catalog
from brokers.models import Broker, CatalogDocument, CatalogSync, ServiceOffering, ServicePlan
from teams import access


def broker_list() -> QuerySet[Broker]:
    """Brokers with their active service and plan counts (one query: correlated subqueries, no join
    fan-out however big the catalogs)."""
    return Broker.objects.annotate(
        service_count=_active_count(ServiceOffering), plan_count=_active_count(ServicePlan)
    ).order_by("name")


def plan_visibility_q(user: Any) -> Q | None:
    """Plans `user` may see: public ones and those shown to one of their teams. None = no restriction
    (platform admins, and internal code that passes no user)."""
    if user is None or access.is_platform_admin(user):
        return None
    public = Q(visibility=ServicePlan.Visibility.PUBLIC)
    team_ids = getattr(user, TEAM_IDS_ATTRIBUTE, None)
    if team_ids is None:
        # A subquery, not a list fetched first: the visibility rule costs no query of its own.
        shown_to_team = Exists(
            ServicePlan.teams.through.objects.filter(
                serviceplan_id=OuterRef("pk"), team__memberships__user_id=getattr(user, "pk", None)
            )
        )
    elif not team_ids:
        return public  # in no team: the public plans, with no subquery at all
    else:
        shown_to_team = Exists(
            ServicePlan.teams.through.objects.filter(serviceplan_id=OuterRef("pk"), team_id__in=sorted(team_ids))
        )
    return public | (Q(visibility=ServicePlan.Visibility.TEAMS) & shown_to_team)


TEAM_IDS_ATTRIBUTE = "_store_team_ids"


def remember_team_ids(user: Any, team_ids: set[Any] | None) -> None:
    """Let `plan_visibility_q` use `user`'s teams as fetched once for this request (`StoreState.team_ids`)
    instead of a join through the memberships in every query. For `request.user` only: it lives for one request,
    so the list cannot outlive a change of membership."""
    if team_ids is not None and user is not None:
        setattr(user, TEAM_IDS_ATTRIBUTE, frozenset(team_ids))


def visible_plans(user: Any) -> QuerySet[ServicePlan]:
    query = ServicePlan.objects.all()
    rule = plan_visibility_q(user)
    return query if rule is None else query.filter(rule)


def _free_plan(free: bool, user: Any = None) -> Exists:
    return Exists(visible_plans(user).filter(offering=OuterRef("pk"), active=True, free=free))


def offering_list(
    *,
    search: str | None = None,
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
    active: bool | None = True,
    user: Any = None,
    plan_fields: tuple[str, ...] = (),
    any_tag: bool = False,
) -> QuerySet[ServiceOffering]:
    """Offerings filtered as the API and the store's facets describe; plans prefetched (active first).

    Tags: every one given (the API's filter), or with `any_tag` any of them (the store's facet: values of one
    facet combine with OR).
    With `user`, only what they may see: the plans visible to them, and the services that have one.
    `plan_fields`: load only these columns of the prefetched plans (all when empty).
    """
    query = _faceted(_searched(user=user, active=active, search=search), user=user, tags=tags, brokers=brokers,
                     providers=providers, free=free, any_tag=any_tag)
    plans = visible_plans(user).filter(active=True).order_by("position")
    if plan_fields:
        plans = plans.only(*plan_fields)
    # Ordered by the name people see: display_name, or name when the broker gave none.
    shown_name = Coalesce(NullIf("display_name", Value("")), "name")
    return query.prefetch_related(Prefetch("plans", queryset=plans, to_attr="active_plans")).order_by(
        shown_name, "name", "pk"
    )


def _searched(*, user: Any, active: bool | None, search: str | None) -> QuerySet[ServiceOffering]:
    """What `user` may see, active or not, matching every word of `search`: the part of the filters that the
    facets share (built once when the facets are counted)."""
    query = ServiceOffering.objects.select_related("broker")
    if plan_visibility_q(user) is not None:
        query = query.filter(Exists(visible_plans(user).filter(offering=OuterRef("pk"))))
    if active is not None:
        query = query.filter(active=active)
    for word in search_words(search):
        # Each word somewhere: name, display name, description or tags (search_text), provider, or broker name.
        query = query.filter(Q(search_text__contains=word) | Q(provider__icontains=word)
                             | Q(broker__name__icontains=word))
    return query


def _faceted(query: QuerySet[ServiceOffering], *, user: Any, tags: list[str] | None = None,
             brokers: list[str] | None = None, providers: list[str] | None = None, free: bool | None = None,
             any_tag: bool = False) -> QuerySet[ServiceOffering]:
    if tags and any_tag:
        query = query.filter(reduce(operator.or_, (Q(tag_index__contains=f"|{tag.lower()}|") for tag in tags)))
    for tag in tags if tags and not any_tag else []:
        query = query.filter(tag_index__contains=f"|{tag.lower()}|")
    if brokers:
        query = query.filter(Q(broker__pk__in=[b for b in brokers if _is_uuid(b)]) | Q(broker__name__in=brokers))
    if providers:
        query = query.filter(provider__in=providers)
    if free is True:
        query = query.filter(_free_plan(True, user))
    elif free is False:
        query = query.filter(~_free_plan(True, user))
    return query


def search_words(search: str | None) -> list[str]:
    return (search or "").lower().split()[:10]


def plan_list(*, service: str | None = None, active: bool | None = True, user: Any = None) -> QuerySet[ServicePlan]:
    """Plans (of one service); with `user`, only those visible to them."""
    query = visible_plans(user).select_related("offering", "broker").prefetch_related("teams")
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


def relevance(search: str) -> Any:
    """A score for ordering search results: the words in the name people see count most (the whole query as
    the name, then a name that starts with a word), then a tag, the provider, the broker, the description."""
    title = Lower(Coalesce(NullIf("display_name", Value("")), "name"))
    words = search_words(search)
    score: Any = Case(When(Q(**{"name__iexact": search.strip()}) | Q(display_name__iexact=search.strip()),
                           then=Value(100)), default=Value(0), output_field=IntegerField())
    for word in words:
        score = score + Case(
            When(Q(title_lower__startswith=word), then=Value(30)),
            When(Q(title_lower__contains=word), then=Value(20)),
            When(Q(tag_index__contains=f"|{word}|"), then=Value(15)),
            When(Q(provider__icontains=word), then=Value(12)),
            When(Q(broker__name__icontains=word), then=Value(5)),
            default=Value(1), output_field=IntegerField(),
        )
    return title, score


# What a card of the marketplace grid shows (the `service_card` tag, the price badge): the other columns,
# among them the broker's raw documents and the plans' schemas, are left in the database.
CARD_FIELDS = ("id", "broker__name", "name", "display_name", "description", "provider", "tags", "image_url")


class CardPlan(NamedTuple):
    """What a card reads of a plan (the price badge: `pricing.offering_badge`)."""

    free: bool
    costs: Any
    position: int


def with_card_plans(offerings: list[ServiceOffering], *, user: Any) -> list[ServiceOffering]:
    """`offerings` with `active_plans` set: the active plans `user` may see, by position, in one query of three
    columns (rows rather than model instances: a page of 24 cards has ~120 plans)."""
    by_offering: dict[Any, list[CardPlan]] = {}
    for offering in offerings:
        offering.active_plans = by_offering.setdefault(offering.pk, [])
    if by_offering:
        rows = (visible_plans(user).filter(active=True, offering_id__in=list(by_offering)).order_by("position", "pk")
                .annotate(costs_json=Cast("costs", TextField())))
        fetched = list(rows.values_list("offering_id", "free", "costs_json", "position"))
        # The costs as JSON text, decoded in one call rather than one per row by the field's converter.
        costs = json.loads("[" + ",".join(row[2] or "null" for row in fetched) + "]")
        for (offering_id, free, _, position), plan_costs in zip(fetched, costs, strict=True):
            by_offering[offering_id].append(CardPlan(free, plan_costs, position))
    return offerings


def store_offering_list(
    *,
    search: str = "",
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
    sort: str = "name",
    user: Any = None,
) -> QuerySet[ServiceOffering]:
    """Active offerings for the marketplace grid, filtered like `offering_list`, in the chosen order; only the
    columns a card shows are loaded, and no plans: `with_card_plans` adds them to the cards shown."""
    query = offering_list(search=search, tags=tags, brokers=brokers, providers=providers, free=free, user=user,
                          any_tag=True).prefetch_related(None).only(*CARD_FIELDS)
    return _store_ordered(query, search=search, sort=sort)


def _store_ordered(query: QuerySet[Any], *, search: str, sort: str) -> QuerySet[Any]:
    """`query` in the marketplace's `sort` order (best matches first: `relevance`)."""
    if sort == "relevance" and search_words(search):
        title, score = relevance(search)
        return query.annotate(title_lower=title).annotate(score=score).order_by("-score", *STORE_SORTS["name"])
    return query.order_by(*STORE_SORTS.get(sort, STORE_SORTS["name"]))


@dataclass
class StoreCard:
    """What a grid card shows of a service (`service_card`), read as plain rows: a page's 24 model instances with
    their brokers cost more to build than the query to run."""

    pk: uuid.UUID
    name: str
    display_name: str
    description: str
    provider: str
    tags: list[str]
    image_url: str | None
    broker: SimpleNamespace  # .name
    active_plans: list[CardPlan] = field(default_factory=list)

    @property
    def title(self) -> str:
        return self.display_name or self.name


def store_cards(ids: list[Any]) -> list[StoreCard]:
    """The services `ids` in that order (a page of `StoreFacets.ordered_ids`, read in this request with the
    viewer's visibility), with what a card shows; their plans: `with_card_plans`."""
    wanted = [uuid.UUID(str(pk)) for pk in ids]
    if not wanted:
        return []
    rows = ServiceOffering.objects.filter(pk__in=wanted).values_list(
        "pk", "name", "display_name", "description", "provider", "tags", "image_url", "broker__name")
    found = {row[0]: StoreCard(*row[:7], broker=SimpleNamespace(name=row[7])) for row in rows}
    return [found[pk] for pk in wanted if pk in found]


# What the service page shows: the catalog's raw documents, schemas and search columns stay in the database.
SERVICE_PAGE_DEFERRED = ("raw", "metadata", "requires", "dashboard_client", "search_text", "tag_index")
SERVICE_PAGE_PLAN_FIELDS = ("id", "offering_id", "name", "display_name", "description", "free", "bindable",
                            "plan_updateable", "bullets", "costs", "maintenance_info", "position",
                            "maximum_polling_duration", "schemas")


def store_offering(*, service_id: Any, user: Any) -> ServiceOffering | None:
    """One offering (active or not) for the service page, with the plans `user` may see; None if they see none."""
    query = offering_list(active=None, user=user, plan_fields=SERVICE_PAGE_PLAN_FIELDS)
    return query.defer(*SERVICE_PAGE_DEFERRED).filter(pk=service_id).first()


@dataclass(frozen=True)
class StoreFacets:
    """Counts per facet value. Values of one facet combine with OR, facets with AND; each facet is counted with
    every *other* facet applied, so its sibling values stay visible, with what ticking them would add."""

    tags: list[tuple[str, int]]
    providers: list[tuple[str, int]]
    brokers: list[tuple[str, int]]
    free: int
    paid: int
    total: int | None = None  # services matching every filter (the grid's count), when it was counted
    ordered_ids: list[str] = field(default_factory=list)  # with `sort`: those services' ids in the grid's order


def store_facets(
    *,
    search: str = "",
    tags: list[str] | None = None,
    brokers: list[str] | None = None,
    providers: list[str] | None = None,
    free: bool | None = None,
    user: Any = None,
    sort: str | None = None,
) -> StoreFacets:
    """Facet counts of the marketplace, whatever the catalog size: one query over the filtered services counts
    every facet, plus one query for each of the tag, provider, broker and price facets that is in use.
    With `sort`, that query also orders the services as the grid shows them (`ordered_ids`): the grid then reads
    only the cards of its page (`store_cards`), rather than filtering and sorting the catalog a second time."""
    facets: dict[str, Any] = {"tags": tags, "brokers": brokers, "providers": providers, "free": free}
    searched = _searched(user=user, active=True, search=search)

    def without(name: str | None) -> QuerySet[ServiceOffering]:
        kept = {key: value for key, value in facets.items() if key != name}
        return _faceted(searched, user=user, any_tag=True, **kept).order_by()

    # One pass over the filtered set (one query, a few columns, no JSON but the tags) counts the tags, and the
    # providers, brokers and prices too when that facet is not in use: then its "others applied" set is this one.
    # Tags live in a JSON list, so they are counted here rather than in SQL.
    tag_counts: Counter[str] = Counter()
    labels: dict[str, str] = {}
    rows = without(None)
    if free is None:
        rows = rows.annotate(has_free_plan=_free_plan(True, user))
    # The tags as JSON text, decoded below in one call rather than one per row by the field's converter; the ids
    # as text too (no UUID built per row: the grid shows 24 of them).
    rows = rows.annotate(tags_json=Cast("tags", TextField()), id_text=Cast("pk", TextField()))
    if sort is not None:
        rows = _store_ordered(rows, search=search, sort=sort)
    columns = ("tags_json", "id_text", "provider", "broker__name", *(("has_free_plan",) if free is None else ()))
    fetched = list(rows.values_list(*columns))
    decoded = json.loads("[" + ",".join(row[0] or "null" for row in fetched) + "]")
    ordered_ids = [row[1] for row in fetched] if sort is not None else []
    _tally_tags(decoded, tag_counts, labels)
    total = len(fetched)
    provider_counts = Counter(row[2] for row in fetched if row[2] != "")
    broker_counts = Counter(row[3] for row in fetched)
    free_count = sum(1 for row in fetched if row[4]) if free is None else 0
    if providers:
        provider_rows = without("providers").exclude(provider="").values("provider").annotate(n=Count("pk"))
        provider_counts = Counter({row["provider"]: row["n"] for row in provider_rows})
    if brokers:
        broker_rows = without("brokers").values("broker__name").annotate(n=Count("pk"))
        broker_counts = Counter({row["broker__name"]: row["n"] for row in broker_rows})
    price = {"total": total, "free": free_count}
    if free is not None:
        price = without("free").aggregate(total=Count("pk"), free=Count("pk", filter=_free_plan(True, user)))

    if tags:
        # Counted again without the tag filter (its siblings stay visible), from the lower-cased tag_index: no
        # JSON to decode. Labels keep the broker's spelling where the first pass saw the tag.
        tag_counts = Counter()
        for (index,) in without("tags").values_list("tag_index"):
            tag_counts.update(key for key in set((index or "").split("|")) if key.strip())
        labels = {key: labels.get(key, key) for key in tag_counts}

    def ranked(pairs: Any) -> list[tuple[str, int]]:
        return sorted(pairs, key=lambda pair: (-pair[1], pair[0].lower()))

    return StoreFacets(
        tags=ranked((labels[key], n) for key, n in tag_counts.items()),
        providers=ranked(provider_counts.items()),
        brokers=ranked(broker_counts.items()),
        free=price["free"],
        paid=price["total"] - price["free"],
        total=total,
        ordered_ids=ordered_ids,
    )


def _tally_tags(per_service: list[Any], counts: Counter[str], labels: dict[str, str]) -> None:
    """Count the services carrying each tag (case-insensitively, once per service; the mirror keeps only lists of
    strings); the first spelling seen is a tag's label. In bulk: a page of 1,000 services is ~5,000 tags."""
    lists = [tags for tags in per_service if tags]
    counts.update(key for tags in lists for key in {tag.lower() for tag in tags if tag.strip()})
    first = {tag.lower(): tag for tags in reversed(lists) for tag in reversed(tags) if tag.strip()}
    for key, label in first.items():
        labels.setdefault(key, label)


# --- The marketplace's landing view (nothing searched or ticked yet) --------------------------------------------

LANDING_SIZE = 4


@dataclass(frozen=True)
class StoreLanding:
    categories: list[tuple[str, int]]  # the most used tags, with how many services carry each
    recent: list[ServiceOffering]  # newest in the mirror first
    popular: list[tuple[ServiceOffering, int]]  # most provisioned in this portal, with how many times

    @property
    def offerings(self) -> list[ServiceOffering]:
        return [*self.recent, *(offering for offering, _ in self.popular)]


def _instance_model() -> Any:
    # Instances belong to the app above this one (imports flow instances -> brokers): reach them by relation.
    return ServicePlan._meta.get_field("instances").related_model


def provision_count() -> int:
    """How many instances were ever provisioned here (deleted ones stay as rows): changes exactly when "most
    provisioned" could, so the landing view's cache key holds it."""
    return _instance_model().objects.count()


def store_landing(*, user: Any, facets: StoreFacets, provisions: int | None = None) -> StoreLanding:
    """Categories (from the facet counts already made), the newest services and the most provisioned ones
    that `user` may see: one small query, and three more when anything was provisioned (`provisions`: the
    `provision_count()` already read, if it was). The cards' plans are not read: `with_card_plans`."""
    recent = list(store_offering_list(sort="newest", user=user)[:LANDING_SIZE])
    popular: list[tuple[ServiceOffering, int]] = []
    if provisions is None or provisions:
        # Counted per plan on the instances table alone (no join: the planner would walk every plan), then summed
        # per service.
        per_plan = dict(_instance_model().objects.order_by().values_list("plan_id").annotate(n=Count("pk")))
        ranked: Counter[Any] = Counter()
        for plan_id, offering_id in ServicePlan.objects.filter(pk__in=list(per_plan)).values_list("pk", "offering_id"):
            ranked[offering_id] += per_plan[plan_id]
        ranked = Counter(dict(sorted(ranked.items(), key=lambda item: (-item[1], str(item[0])))[: LANDING_SIZE * 4]))
        shown = {o.pk: o for o in store_offering_list(user=user).filter(pk__in=list(ranked))} if ranked else {}
        popular = [(shown[pk], n) for pk, n in ranked.items() if pk in shown][:LANDING_SIZE]
    return StoreLanding(categories=facets.tags[:12], recent=recent, popular=popular)


@dataclass(frozen=True)
class StoreState:
    """What the marketplace shows depends on, besides its query string, in one small query over the brokers.

    `version` changes whenever the page could: a mirror that wrote rows or a plan-visibility edit (each bumps its
    broker's `catalog_revision`), a broker added, removed, renamed, enabled or disabled, failing or recovering;
    and it differs between people who may see different plans (their teams; platform admins see all).
    """

    version: str
    failed_brokers: list[Broker]  # enabled brokers whose last sync failed (their previous mirror stays shown)
    team_ids: set[Any] | None = None  # the viewer's teams (None: all, a platform admin)


def store_state(user: Any) -> StoreState:
    rows = Broker.objects.order_by("pk").values_list(
        "pk", "catalog_revision", "name", "enabled", "status", "status_message"
    )
    parts: list[Any] = []
    failed: list[Broker] = []
    for pk, revision, name, enabled, status, message in rows:
        down = enabled and status == Broker.Status.FAILED
        parts.append((str(pk), revision, name, enabled, message if down else None))
        if down:
            failed.append(Broker(pk=pk, name=name, status=status, status_message=message, enabled=enabled))
    teams = access.team_ids_for(user)
    parts.append(("scope", "all" if teams is None else sorted(str(t) for t in teams), bool(user and user.is_staff)))
    version = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    return StoreState(version=version, failed_brokers=failed, team_ids=teams)


def _active_count(model: type[ServiceOffering] | type[ServicePlan]) -> Coalesce:
    rows = model.objects.filter(broker=OuterRef("pk"), active=True).order_by().values("broker")
    return Coalesce(Subquery(rows.annotate(n=Count("pk")).values("n")), 0)



# --- Broker insight (platform admins) -------------------------------------------------------------------------


def sync_list(*, broker: Broker) -> QuerySet[CatalogSync]:
    """A broker's catalog syncs, newest first (the calls each made are left out: the scorecard reads them)."""
    return CatalogSync.objects.filter(broker=broker).defer("calls", "summary").order_by("-started_at")


@dataclass(frozen=True)
class ConformanceReport:
    score: int
    checked_at: datetime
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if check.passed is False]


# Bounds of what one scorecard reads, whatever the broker's traffic: the newest calls of the window.
CONFORMANCE_MAX_CALLS = 5000
CONFORMANCE_MAX_SYNCS = 1000


def broker_conformance(*, broker: Broker) -> ConformanceReport:
    """The broker's scorecard now: the catalog checks of the last catalog fetched, the behaviour checks of the
    calls of the last days (catalog syncs, and the operations' calls through brokers.hooks). Three bounded reads."""
    now = timezone.now()
    since = now - timedelta(days=behaviour.WINDOW_DAYS)
    stored = CatalogDocument.objects.filter(broker=broker).values_list("checks", flat=True).first()
    catalog_results = _catalog_results(stored) if stored else conformance_catalog.not_fetched()
    sync_calls = (CatalogSync.objects.filter(broker=broker, started_at__gte=since).order_by("-started_at")
                  .values_list("calls", flat=True)[:CONFORMANCE_MAX_SYNCS])
    calls = [behaviour.observed_from_json(call) for calls in sync_calls for call in calls or []]
    calls += hooks.recorded_calls(broker.pk, since=since, limit=CONFORMANCE_MAX_CALLS)
    results = catalog_results + behaviour.check_behaviour(calls)
    return ConformanceReport(score=conformance.score(results), checked_at=now, checks=results)


def _catalog_results(stored: list[dict[str, Any]]) -> list[CheckResult]:
    """Stored catalog results with the checks' current titles, levels and sections (the code may have moved on)."""
    by_id = {item.get("id"): item for item in stored}
    results = []
    for check in conformance_catalog.CATALOG_CHECKS:
        item = by_id.get(check.id)
        if item is None:
            results.append(check.not_observed("not checked on the last catalog fetched; the next sync checks it."))
        else:
            results.append(CheckResult(check.id, check.title, check.level, item.get("passed"), item.get("detail", ""),
                                       check.spec))
    return results
