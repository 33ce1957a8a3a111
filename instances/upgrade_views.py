"""The Upgrades pages (issue 17): what is behind its plan's maintenance version, starting batches, following them.

Thin: parse, call one service, render. A batch's page polls its status fragment every 2 s while upgrades run; the
last poll answers 286 so htmx stops (like the instance page).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseStopPolling

from brokers.models import ServicePlan
from catalog_portal.exceptions import ApplicationError, Forbidden
from instances.forms import is_uuid
from instances.models import UpgradeBatch
from instances.services import upgrades


def _allowed(request: HttpRequest) -> None:
    try:
        upgrades.upgrade_namespaces(request.user)
    except Forbidden as exc:
        raise PermissionDenied(exc.message) from None


def _max_parallel(value: str | None) -> int:
    try:
        return max(1, min(int(value or 5), 100))
    except ValueError:
        return 5


@require_http_methods(["GET", "POST"])
def upgrade_list(request: HttpRequest) -> HttpResponse:
    _allowed(request)
    status = 200
    if request.method == "POST":
        plan_id = request.POST.get("plan")
        chosen = [pk for pk in request.POST.getlist("instances") if is_uuid(pk)]
        plan = ServicePlan.objects.filter(pk=plan_id).first() if is_uuid(plan_id) and not chosen else None
        try:
            batch = upgrades.upgrade_batch_start(plan=plan, instances=chosen if plan is None else None,
                                                 max_parallel=_max_parallel(request.POST.get("max_parallel")),
                                                 requested_by=request.user, request=request)
        except ApplicationError as exc:
            messages.error(request, exc.message)
            status = 422
        else:
            messages.success(request, f"Upgrading {batch.items.count()} instance(s); this page follows them.")
            return redirect(batch.get_absolute_url())
    context = {"groups": upgrades.upgrades_available(request.user),
               "batches": list(upgrades.batch_list(request.user)[:20])}
    for batch in context["batches"]:
        batch.counts = upgrades.batch_counts(batch)
    return render(request, "instances/upgrades.html", context, status=status)


def _batch_or_404(request: HttpRequest, batch_id: Any) -> UpgradeBatch:
    _allowed(request)
    batch = upgrades.batch_list(request.user).filter(pk=batch_id).first()
    if batch is None:
        raise Http404("No such upgrade batch.")
    return batch


def _batch_context(batch: UpgradeBatch) -> dict[str, Any]:
    items = list(batch.items.select_related("instance", "operation").order_by("position"))
    counts = upgrades.batch_counts(batch)
    live = batch.state == UpgradeBatch.State.RUNNING or counts["running"] > 0
    return {"batch": batch, "items": items, "counts": counts, "live": live}


@require_GET
def upgrade_batch_detail(request: HttpRequest, batch_id: Any) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    return render(request, "instances/upgrade_batch.html", _batch_context(batch))


@require_GET
def upgrade_batch_status(request: HttpRequest, batch_id: Any) -> HttpResponse:
    """The polled fragment; 286 (stop polling) once nothing runs any more."""
    context = _batch_context(_batch_or_404(request, batch_id))
    content = render_to_string("instances/_upgrade_batch_status.html", context, request=request)
    return HttpResponse(content) if context["live"] else HttpResponseStopPolling(content)


def _batch_action(request: HttpRequest, batch_id: Any, action: Any, message: str) -> HttpResponse:
    batch = _batch_or_404(request, batch_id)
    try:
        action(batch=batch, requested_by=request.user, request=request)
    except ApplicationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, message)
    return redirect(batch.get_absolute_url())


@require_POST
def upgrade_batch_resume_view(request: HttpRequest, batch_id: Any) -> HttpResponse:
    retry = request.POST.get("retry_failed") == "on"

    def resume(**kwargs: Any) -> Any:
        return upgrades.upgrade_batch_resume(retry_failed=retry, **kwargs)

    return _batch_action(request, batch_id, resume, "The batch goes on.")


@require_POST
def upgrade_batch_cancel_view(request: HttpRequest, batch_id: Any) -> HttpResponse:
    return _batch_action(request, batch_id, upgrades.upgrade_batch_cancel,
                         "The batch is cancelled; upgrades already sent to the broker run to their end.")
