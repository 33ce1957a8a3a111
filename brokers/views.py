"""Store pages for the catalog: the marketplace, the service page, and broker health for admins."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.core.cache import caches
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url
from redis.exceptions import RedisError

from brokers import pricing, selectors, services
from brokers.forms import MarketplaceForm
from brokers.models import Broker
from brokers.templatetags.store import service_card
from catalog_portal.htmx import htmx_partial

PAGE_SIZE = 24
logger = logging.getLogger(__name__)
CACHE_ERRORS = (RedisError, OSError)
T = TypeVar("T")


def _cached(request: HttpRequest, what: str, compute: Callable[[selectors.StoreState], T]) -> T:
    """`compute(state)`, or its value from the store cache. The key holds the catalog's version (read from the
    database on every request, so a cached value is never stale) and who may see what; `what` names the page.
    Rendered HTML stays a SafeString through the cache (pickled with its type)."""
    state = selectors.store_state(request.user)
    selectors.remember_team_ids(request.user, state.team_ids)  # fetched once: the queries then list them
    key = f"store:{state.version}:{what}"
    try:
        return caches["store"].get_or_set(key, lambda: compute(state))
    except CACHE_ERRORS as exc:  # a shared cache (Redis) that is down costs a computed page, not an error page
        logger.warning("store cache unavailable, page computed: %s", exc)
        return compute(state)


@require_GET
def marketplace(request: HttpRequest) -> HttpResponse:
    form = MarketplaceForm(request.GET)
    # The results (facets, grid, pager) are the same for everyone who sees the same catalog the same way.
    what = request.path + form.querystring(page=form.page_number)
    provisions = None
    if form.is_landing:  # "most provisioned" changes with each provision: part of the key, so never stale
        provisions = selectors.provision_count()
        what += f"#provisions={provisions}"
    results_html, page_number = _cached(
        request, what, lambda state: _marketplace_results(request, form, state, provisions))
    if htmx_partial(request):
        response = HttpResponse(results_html)
        push_url(response, request.path + form.querystring(page=page_number))
    else:
        response = render(request, "brokers/marketplace.html",
                          {"form": form, "q": form.values["q"], "results": results_html})
    patch_vary_headers(response, ["HX-Request"])
    return response


def _marketplace_results(request: HttpRequest, form: MarketplaceForm, state: selectors.StoreState,
                         provisions: int | None) -> tuple[str, int]:
    # One query filters, counts the facets and orders the grid; then the page's cards are read by id, and the
    # plans of every card shown (the grid's and the landing view's) in one more.
    facets = selectors.store_facets(**form.filters(), sort=form.values["sort"], user=request.user)
    page = Paginator(facets.ordered_ids, PAGE_SIZE).get_page(form.page_number)
    landing = None
    if form.is_landing:
        landing = selectors.store_landing(user=request.user, facets=facets, provisions=provisions)
    page.object_list = _cards(request, state, list(page.object_list), landing.offerings if landing else [])
    failed = state.failed_brokers
    context = {
        "form": form,
        "page": page,
        "landing": landing,
        "categories": [(tag, n, form.querystring(tag=[tag])) for tag, n in landing.categories] if landing else [],
        "facet_groups": form.facet_groups(facets),
        "failed_brokers": failed if request.user.is_staff else [],
        # Nothing to show and a broker is down: say so rather than "no services".
        "catalog_unavailable": bool(failed) and not page.paginator.count and not form.is_filtered,
    }
    return render_to_string("brokers/_marketplace_results.html", context, request), page.number


def _cards(request: HttpRequest, state: selectors.StoreState, ids: list[str], others: list[Any]) -> list[str]:
    """The grid's cards for the services `ids`, in that order. A card is the same on every page of one catalog
    version and visibility scope, so each is kept in the store cache under that version: a new search mostly shows
    cards that earlier pages rendered. The others are read (with their plans, and those of `others`, the landing
    view's services) and rendered now."""
    def key(pk: Any) -> str:
        return f"store:{state.version}:card:{uuid.UUID(str(pk)).hex}"

    keys = [key(pk) for pk in ids]
    try:
        cards = caches["store"].get_many(keys)
    except CACHE_ERRORS as exc:
        logger.warning("store cache unavailable, cards rendered: %s", exc)
        cards = {}
    missing = selectors.store_cards([pk for pk, k in zip(ids, keys, strict=True) if k not in cards])
    selectors.with_card_plans([*missing, *others], user=request.user)
    rendered = {key(offering.pk): service_card(offering) for offering in missing}
    if rendered:
        try:
            caches["store"].set_many(rendered)
        except CACHE_ERRORS as exc:
            logger.warning("store cache unavailable, cards not kept: %s", exc)
    cards.update(rendered)
    return [cards[k] for k in keys if k in cards]  # a service gone since the facets were read has no card


@require_GET
def service_detail(request: HttpRequest, service_id: str) -> HttpResponse:
    title, body = _cached(request, f"service:{service_id}", lambda state: _service_body(request, service_id))
    return render(request, "brokers/service_detail.html", {"title": title, "body": body})


def _service_body(request: HttpRequest, service_id: str) -> tuple[str, str]:
    offering = selectors.store_offering(service_id=service_id, user=request.user)
    if offering is None:
        raise Http404("No such service.")
    plans = pricing.plans_by_price(offering.active_plans)
    body = render_to_string("brokers/_service_detail.html", {"offering": offering, "plans": plans}, request)
    return offering.title, body


def _staff_only(request: HttpRequest) -> None:
    # 404 rather than 403: people who cannot manage brokers need not know the page exists.
    if not request.user.is_staff:
        raise Http404


@require_GET
def broker_health(request: HttpRequest) -> HttpResponse:
    _staff_only(request)
    return render(request, "brokers/broker_health.html", {"brokers": selectors.broker_list()})


@require_POST
def broker_sync(request: HttpRequest, broker_id: str) -> HttpResponse:
    _staff_only(request)
    broker = get_object_or_404(Broker, pk=broker_id)
    services.broker_request_sync(broker=broker, requested_by=request.user, request=request)
    if htmx_partial(request):
        row = selectors.broker_list().get(pk=broker.pk)
        return render(request, "brokers/_broker_row.html", {"broker": row, "sync_requested": True})
    messages.success(request, f"Catalog sync of “{broker.name}” requested.")
    back_to_broker = request.POST.get("next") == "detail"  # the broker's own page, else the list
    return redirect("brokers:detail", broker.pk) if back_to_broker else redirect("brokers:health")


# --- Broker insight: one broker's page (platform admins) ------------------------------------------------------

SYNCS_PER_PAGE = 20


@require_GET
def broker_detail(request: HttpRequest, broker_id: str) -> HttpResponse:
    """The broker's scorecard (computed now), what it offers, and its sync history with what each sync changed."""
    _staff_only(request)
    broker = get_object_or_404(selectors.broker_list(), pk=broker_id)
    syncs = Paginator(selectors.sync_list(broker=broker), SYNCS_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "brokers/broker_detail.html", {
        "broker": broker, "report": selectors.broker_conformance(broker=broker), "syncs": syncs,
        "restrictions": services.restrictions_json(broker.catalog_restrictions),
    })
