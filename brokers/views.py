"""Store pages for the catalog: the marketplace, the service page, and broker health for admins."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import push_url

from brokers import pricing, selectors, services
from brokers.forms import MarketplaceForm
from brokers.models import Broker

PAGE_SIZE = 24


def _fragment(request: HttpRequest) -> bool:
    """An htmx swap of part of the page (not a boosted link, not a history restore)."""
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not htmx.boosted and not htmx.history_restore_request


@require_GET
def marketplace(request: HttpRequest) -> HttpResponse:
    form = MarketplaceForm(request.GET)
    offerings = selectors.store_offering_list(**form.filters(), sort=form.values["sort"], user=request.user)
    facets = selectors.store_facets(**form.filters(), user=request.user)
    paginator = Paginator(offerings, PAGE_SIZE)
    if facets.total is not None:
        paginator.count = facets.total  # the facets counted the same filtered set: no COUNT query of its own
    page = paginator.get_page(form.page_number)
    failed = selectors.failed_broker_list()
    context = {
        "form": form,
        "q": form.values["q"],
        "page": page,
        "facet_groups": form.facet_groups(facets),
        "failed_brokers": failed if request.user.is_staff else [],
        # Nothing to show and a broker is down: say so rather than "no services".
        "catalog_unavailable": bool(failed) and not page.paginator.count and not form.is_filtered,
    }
    if not _fragment(request):
        response = render(request, "brokers/marketplace.html", context)
    else:
        response = render(request, "brokers/_marketplace_results.html", context)
        push_url(response, request.path + form.querystring(page=page.number))
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_GET
def service_detail(request: HttpRequest, service_id: str) -> HttpResponse:
    offering = get_object_or_404(selectors.offering_list(active=None, user=request.user), pk=service_id)
    plans = pricing.plans_by_price(offering.active_plans)
    return render(request, "brokers/service_detail.html", {"offering": offering, "plans": plans})


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
    if _fragment(request):
        row = selectors.broker_list().get(pk=broker.pk)
        return render(request, "brokers/_broker_row.html", {"broker": row, "sync_requested": True})
    messages.success(request, f"Catalog sync of “{broker.name}” requested.")
    return redirect("brokers:health")
