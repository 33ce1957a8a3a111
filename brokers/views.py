"""Store pages for the catalog: the marketplace and the service page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from brokers import selectors
from brokers.models import Broker


def marketplace(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    offerings = selectors.offering_list(search=query, tags=request.GET.getlist("tag"))
    page = Paginator(offerings, 24).get_page(request.GET.get("page"))
    failed = Broker.objects.filter(status=Broker.Status.FAILED) if request.user.is_staff else Broker.objects.none()
    return render(
        request,
        "brokers/marketplace.html",
        {"page": page, "q": query, "failed_brokers": list(failed.only("name", "status_message"))},
    )


def service_detail(request: HttpRequest, service_id: str) -> HttpResponse:
    offering = get_object_or_404(selectors.offering_list(active=None), pk=service_id)
    return render(request, "brokers/service_detail.html", {"offering": offering, "plans": offering.active_plans})
