"""Store pages for instances and bindings (thin: parse, call one service or selector, render).

Every form posts normally and works without JavaScript; with htmx the same views answer with the form's
fragment (`_*.html`) or an HX-Redirect. The instance page polls `_operation_status.html` while an operation
runs; the last poll answers 286 so htmx stops.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import (
    HttpResponseClientRedirect,
    HttpResponseClientRefresh,
    HttpResponseStopPolling,
    trigger_client_event,
)

from brokers.models import ServiceOffering, ServicePlan
from brokers.selectors import visible_plans
from catalog_portal.db import read_snapshot
from catalog_portal.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from catalog_portal.htmx import htmx_partial
from catalog_portal.jsonlimits import capped
from instances import schema_form, selectors, timeline
from instances.forms import (
    BindingForm,
    DeprovisionForm,
    InstanceFilterForm,
    ParametersForm,
    ProvisionForm,
    UpdateForm,
    apply_service_error,
    default_namespace,
    error_summary,
    is_uuid,
    known_namespaces,
    update_plans,
    writable_namespaces,
)
from instances.models import Operation, ServiceBinding, ServiceInstance
from instances.services.bindings import (
    binding_create,
    binding_credentials,
    binding_delete,
    can_reveal_credentials,
)
from instances.services.drift import cannot_ask, drift_adopt, drift_check, drift_reapply, drifted_bindings
from instances.services.instances import (
    PREVIEW_INSTANCE_ID,
    instance_deprovision,
    instance_parameters_reveal,
    instance_provision,
    instance_retry,
    instance_update,
    provision_preview,
    retry_refusal,
)
from instances.services.operations import cancel_refusal, operation_cancel
from instances.services.rotation import binding_rotate, rotation_status
from instances.states import ACTIVE, InstanceState, OpType
from teams import access

PROVISION_PREFIX, UPDATE_PREFIX, BIND_PREFIX = "p.", "u.", "b."
TIMELINE_LENGTH = 20


def _done(request: HttpRequest, url: str, message: str) -> HttpResponse:
    """After a successful POST: a message, and the page to look at next (HX-Redirect for htmx).

    When that page is the one the browser shows, htmx is asked to reload it: a redirect that only adds
    "#bindings" to the address would not load anything.
    """
    messages.success(request, message)
    if htmx_partial(request):
        current = urlsplit(request.htmx.current_url or "").path
        if current and current == urlsplit(url).path:
            return HttpResponseClientRefresh()
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _error_status(exc: ApplicationError) -> int:
    return exc.status_code if isinstance(exc, Conflict | Forbidden | NotFound) else 422


# --- the list ------------------------------------------------------------------------------------------------


@require_GET
def instance_list(request: HttpRequest) -> HttpResponse:
    mine = selectors.instance_list(user=request.user)
    services = ServiceOffering.objects.filter(pk__in=mine.values("plan__offering_id"))
    service_choices = [(str(o.pk), o.title) for o in services.distinct().order_by("display_name", "name")]
    filters = InstanceFilterForm(request.GET or None, namespaces=known_namespaces(request.user),
                                 services=service_choices)
    chosen = filters.filters()
    page = Paginator(selectors.instance_list(user=request.user, **chosen), 25).get_page(request.GET.get("page"))
    rows = [{"instance": i, "operation": selectors.last_operation(i)} for i in page]
    context = {
        "filters": filters, "filtered": bool(chosen), "page": page, "rows": rows,
        "live": any(r["operation"] is not None and not r["operation"].is_terminal for r in rows),
        "query": _query_without_page(request),
    }
    template = "instances/_instance_table.html" if htmx_partial(request) else "instances/instance_list.html"
    return render(request, template, context)


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- provisioning --------------------------------------------------------------------------------------------


def _plan_to_provision(request: HttpRequest) -> ServicePlan | None:
    plan_id = request.POST.get("plan") or request.GET.get("plan")
    if not is_uuid(plan_id):
        return None
    return visible_plans(request.user).select_related("offering", "broker").filter(pk=plan_id).first()


@require_http_methods(["GET", "POST"])
def instance_provision_view(request: HttpRequest) -> HttpResponse:
    plan = _plan_to_provision(request)
    if plan is None:
        messages.info(request, "Choose a service and one of its plans to provision.")
        return redirect("brokers:marketplace")
    namespaces = writable_namespaces(request.user)
    if request.method == "GET":
        form = ProvisionForm(initial={"namespace": default_namespace(request.user, namespaces)},
                             namespaces=namespaces)
        params = ParametersForm(plan.instance_create_schema, prefix=PROVISION_PREFIX)
        return _render_provision(request, plan, form, params)
    form = ProvisionForm(request.POST, namespaces=namespaces)
    params = ParametersForm(plan.instance_create_schema, prefix=PROVISION_PREFIX, data=request.POST)
    action = request.POST.get("action", "provision")
    if action == "preview":
        return _render_provision(request, plan, form, params, preview=_preview(request, plan, form, params))
    if params.handle(action):
        return _render_provision(request, plan, form, params)
    if form.is_valid() & params.is_valid():
        try:
            instance = instance_provision(plan=plan, parameters=params.parameters, requested_by=request.user,
                                          request=request, **form.cleaned_data)
        except ApplicationError as exc:
            apply_service_error(exc, form, params)
            return _render_provision(request, plan, form, params, status=_error_status(exc))
        return _done(request, instance.get_absolute_url(),
                     f"Provisioning {instance.name} has started; this page follows it.")
    return _render_provision(request, plan, form, params, status=422)


def _preview(request: HttpRequest, plan: ServicePlan, form: ProvisionForm, params: ParametersForm) -> dict[str, Any]:
    form.is_valid()
    valid = params.is_valid()
    typed = params.parameters if valid else params.typed_parameters()
    prepared = provision_preview(plan=plan, name=form.data.get("name", ""), namespace=form.data.get("namespace", ""),
                                 parameters=params.masked(typed) or {}, user=request.user, mask=schema_form.MASK)
    return {
        "method": prepared.method,
        # The placeholder is percent-encoded in the URL; shown as typed.
        "url": prepared.url.replace(quote(PREVIEW_INSTANCE_ID, safe=""), PREVIEW_INSTANCE_ID),
        "headers": prepared.headers,
        "body": (prepared.body or b"").decode(),
        "complete": typed is not None,
        "valid": valid and form.is_valid(),
    }


def _render_provision(request: HttpRequest, plan: ServicePlan, form: ProvisionForm, params: ParametersForm, *,
                      preview: dict[str, Any] | None = None, status: int = 200) -> HttpResponse:
    siblings = (visible_plans(request.user).filter(offering=plan.offering, active=True).order_by("position")
                if plan.offering.active else [])
    context = {"plan": plan, "offering": plan.offering, "form": form, "params": params, "preview": preview,
               "sibling_plans": siblings, "namespaces": known_namespaces(request.user),
               "offered": plan.active and plan.offering.active,
               "summary": error_summary(form, params) if status >= 400 else []}
    template = "instances/_provision_form.html" if htmx_partial(request) else "instances/instance_provision.html"
    return render(request, template, context, status=status)


# --- the instance page ---------------------------------------------------------------------------------------


def _instance_or_404(request: HttpRequest, instance_id: Any, *, visible: bool = True) -> ServiceInstance:
    """An existing instance the user may see; with visible=False a deleted one too (its page stays, for the
    record). Other teams' instances are 404."""
    instance = selectors.instance_list(user=request.user).filter(pk=instance_id).first()
    if instance is None and not visible:
        everything = selectors.instances_for_user(request.user)
        instance = everything.select_related("plan__offering", "broker").filter(pk=instance_id).first()
    if instance is None:
        raise Http404("No such instance.")
    return instance


def _shown_parameters(instance: ServiceInstance) -> dict[str, Any]:
    """The instance's parameters as pages show them: secrets masked (sealed or named like one), depth-capped. An
    update form starts from these; a value left masked keeps the stored secret (instances.sealed.keep_masked)."""
    return schema_form.mask_secrets(instance.plan.instance_create_schema, instance.parameters) or {}


def _has_mask(value: Any) -> bool:
    return schema_form.MASK in json.dumps(value, ensure_ascii=False) if value else False


@require_POST
def instance_parameters_reveal_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    """The instance page with its secret parameters shown: only through the service, which checks who may and
    audits it; never cached."""
    instance = _instance_or_404(request, instance_id)
    status, error = 200, None
    try:
        revealed = instance_parameters_reveal(instance=instance, user=request.user, request=request)
    except ApplicationError as exc:
        status, error, revealed = _error_status(exc), exc.message, None
    context = _detail_context(request, instance)
    if revealed is not None:
        shown = capped(revealed, settings.PARAMETERS_MAX_DEPTH)
        context.update(parameters_text=json.dumps(shown, indent=2, ensure_ascii=False), parameters_revealed=True,
                       can_reveal_parameters=False)
    context["parameters_error"] = error
    response = render(request, "instances/instance_detail.html", context, status=status)
    add_never_cache_headers(response)
    return response


def _status_context(request: HttpRequest, instance: ServiceInstance, *, all_operations: bool = False
                    ) -> dict[str, Any]:
    """The live part of the page: state, what is happening, the timeline of operations with their calls.

    Header and timeline come from one reading: if a worker changed the instance while its operations were
    read, both are read again (on Postgres the whole request is one snapshot anyway)."""
    for _ in range(3):
        operations = selectors.operation_list(instance=str(instance.pk))
        operations = list(operations if all_operations else operations[:TIMELINE_LENGTH + 1])
        fresh = ServiceInstance.objects.filter(pk=instance.pk).values_list("state", "updated_at").first()
        if fresh == (instance.state, instance.updated_at):
            break
        instance = _instance_or_404(request, instance.pk, visible=False)
    more = not all_operations and len(operations) > TIMELINE_LENGTH
    operations = operations[:TIMELINE_LENGTH] if more else operations
    _name_binding_operations(instance, operations)
    for op in operations:
        op.took = _duration(op.finished_at - op.started_at) if op.finished_at else ""
        op.call_groups = timeline.group_calls(list(op.calls.all()))
    own = [op for op in operations if op.binding_id is None]
    current = next((op for op in own if op.type in selectors.INSTANCE_OPERATION_TYPES), None)
    active = [op for op in operations if op.state in ACTIVE]
    parameters = _shown_parameters(instance)
    failed = current is not None and current.state == "failed" and not instance.is_deleted
    can_write = access.can(request.user, "update", instance.namespace)
    cleanup = own[0] if own and own[0].type == OpType.ORPHAN_MITIGATION else None
    for op in active:  # what may be stopped here: see operations.operation_cancel
        allowed = access.is_platform_admin(request.user) if op.type == OpType.ORPHAN_MITIGATION else can_write
        op.cancellable = allowed and cancel_refusal(op) is None
    return {
        "instance": instance, "current": current, "cleanup": cleanup,
        "operations": operations, "more_operations": more,
        "binding_operations": [op for op in active if op.binding_id is not None],
        "live": bool(active) and not instance.is_deleted,
        "dashboard_url": _safe_url(instance.dashboard_url) if instance.state == InstanceState.READY else "",
        "parameters_text": json.dumps(parameters, indent=2, ensure_ascii=False) if parameters else "",
        "can_reveal_parameters": (not instance.is_deleted and _has_mask(parameters)
                                  and access.can(request.user, "reveal", instance.namespace)),
        "failed": failed, "can_write": can_write,
        "retry_refusal": retry_refusal(instance) if failed and can_write else None,
        # The broker's words are shown once: not again inside the portal's error that quotes them.
        "same_error": bool(current and current.description.strip() and current.description.strip() in current.error),
        "drift": _drift_context(instance, operations),
    }


DRIFT_LABELS = {"plan": "Plan", "parameters": "Parameters", "maintenance_info": "Maintenance version",
                "dashboard_url": "Dashboard URL"}


def _drift_text(field: str, value: Any, instance: ServiceInstance) -> str:
    if value is None:
        return "(nothing)"
    if field == "plan":
        return value.get("name") or value.get("catalog_id") or ""
    if field == "maintenance_info":
        return value.get("version") or ""
    if field == "parameters":
        value = schema_form.mask_secrets(instance.plan.instance_create_schema, value)
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return str(value)


def _drift_context(instance: ServiceInstance, operations: list[Operation]) -> dict[str, Any]:
    """The drift card: why the broker cannot be asked, or the last check's differences (secrets masked)."""
    reason = cannot_ask(instance)
    if reason:
        return {"reason": reason}
    rows = [{"field": d["field"], "label": DRIFT_LABELS.get(d["field"], d["field"]),
             "portal": _drift_text(d["field"], d["portal"], instance),
             "broker": _drift_text(d["field"], d["broker"], instance)} for d in instance.drift or []]
    schema = instance.plan.binding_create_schema
    for binding in drifted_bindings(instance) if instance.plan.offering.bindings_retrievable else []:
        rows += [{"field": "binding", "label": f"Binding {binding.name}: parameters",
                  "portal": json.dumps(schema_form.mask_secrets(schema, d["portal"] or {}), indent=2, sort_keys=True),
                  "broker": json.dumps(schema_form.mask_secrets(schema, d["broker"] or {}), indent=2, sort_keys=True)}
                 for d in binding.drift]
    return {"rows": rows, "reapplicable": any(r["field"] not in ("dashboard_url", "binding") for r in rows),
            "checking": any(op.type == OpType.REFRESH and not op.is_terminal for op in operations)}


def _duration(delta: Any) -> str:
    seconds = max(delta.total_seconds(), 0)
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{round(seconds)} s"
    return f"{round(seconds / 60)} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _name_binding_operations(instance: ServiceInstance, operations: list[Operation]) -> None:
    """Label bind/unbind operations with their binding's name (one query, deleted bindings included)."""
    if not any(op.binding_id for op in operations):
        return
    names = {pk: f"{ns}/{name}" for pk, ns, name in
             ServiceBinding.objects.filter(instance=instance).values_list("pk", "namespace", "name")}
    for op in operations:
        op.target_name = names.get(op.binding_id, "") if op.binding_id else ""


def _safe_url(url: str) -> str:
    """Only http(s) links from a broker are shown (never javascript: or data:)."""
    return url if url and urlsplit(url).scheme in ("http", "https") else ""


def _detail_context(request: HttpRequest, instance: ServiceInstance, **forms: Any) -> dict[str, Any]:
    context = _status_context(request, instance, all_operations=request.GET.get("operations") == "all")
    instance = context["instance"]
    bindings = (list(selectors.binding_list(user=request.user, instance=str(instance.pk)))
                if not instance.is_deleted else [])
    revealed = forms.pop("revealed", None)
    # can_reveal_credentials's rule, with the user's namespaces read once for the whole table.
    revealable = access.namespaces_for(request.user, access.ACTION_ROLES["reveal"])
    for binding in bindings:
        binding.last_op = selectors.binding_last_operation(binding)
        binding.can_reveal = revealable is None or binding.namespace in revealable
        binding.rotation = rotation_status(binding)
        mine = revealed if revealed and revealed["binding"] == binding.pk else {}
        _prepare_credentials(binding, mine.get("values") or {}, mine.get("error"))
    ready = instance.state == InstanceState.READY
    plan = instance.plan
    plans = update_plans(instance)
    update_form = forms.get("update_form") or UpdateForm(instance=instance, plans=plans)
    context.update({
        "bindings": bindings, "ready": ready, "bindable": plan.effective_bindable,
        "update_form": update_form,
        "update_params": forms.get("update_params") or ParametersForm(
            update_form.target_plan().instance_update_schema, prefix=UPDATE_PREFIX, mode="update",
            current=_shown_parameters(instance)),
        "can_update": ready and (plans is not None or plan.instance_update_schema is not None
                                 or bool(update_form.new_version)),
        "deprovision_form": forms.get("deprovision_form") or DeprovisionForm(
            instance=instance, binding_count=len(bindings)),
        "binding_form": forms.get("binding_form") or BindingForm(
            instance=instance, namespaces=writable_namespaces(request.user)),
        "binding_params": forms.get("binding_params") or ParametersForm(plan.binding_create_schema,
                                                                        prefix=BIND_PREFIX),
        "can_deprovision": not instance.is_deleted and instance.state != InstanceState.DEPROVISIONING,
        "successor": (selectors.instance_list(user=request.user).filter(namespace=instance.namespace,
                                                                         name=instance.name).first()
                      if instance.is_deleted else None),
        "update_summary": forms.get("update_summary", []),
        "binding_summary": forms.get("binding_summary", []),
        "catalog_notes": selectors.instance_catalog_notes(instance),
    })
    return context


@require_GET
def instance_detail(request: HttpRequest, instance_id: Any) -> HttpResponse:
    with read_snapshot():  # the instance, its operations and bindings as of one moment, on every backend
        instance = _instance_or_404(request, instance_id, visible=False)
        return render(request, "instances/instance_detail.html", _detail_context(request, instance))


@require_GET
def instance_status(request: HttpRequest, instance_id: Any) -> HttpResponse:
    """The polled fragment; 286 (stop polling) once nothing runs, with an event so the page refreshes its forms."""
    with read_snapshot():
        instance = _instance_or_404(request, instance_id, visible=False)
        context = _status_context(request, instance, all_operations=request.GET.get("operations") == "all")
        content = render_to_string("instances/_operation_status.html", context, request=request)
    if context["live"]:
        return HttpResponse(content)
    response = HttpResponseStopPolling(content)
    return trigger_client_event(response, "instance-settled")


def _render_detail_part(request: HttpRequest, instance: ServiceInstance, partial: str, *, status: int,
                        **forms: Any) -> HttpResponse:
    context = _detail_context(request, instance, **forms)
    template = partial if htmx_partial(request) else "instances/instance_detail.html"
    return render(request, template, context, status=status)


@require_POST
def instance_update_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    form = UpdateForm(request.POST, instance=instance, plans=update_plans(instance))
    schema = form.target_plan().instance_update_schema
    action = request.POST.get("action", "update")
    if action == "plan":  # another plan was chosen: show its update schema
        params = ParametersForm(schema, prefix=UPDATE_PREFIX, mode="update", current=_shown_parameters(instance))
        return _render_update(request, instance, form, params, status=200)
    params = ParametersForm(schema, prefix=UPDATE_PREFIX, mode="update", data=request.POST,
                            current=_shown_parameters(instance))
    if params.handle(action):
        return _render_update(request, instance, form, params, status=200)
    if form.is_valid() & params.is_valid():
        try:
            instance_update(instance=instance, plan=form.cleaned_data.get("plan"),
                            parameters=params.parameters or None, upgrade=form.cleaned_data.get("upgrade", False),
                            requested_by=request.user, request=request)
        except ApplicationError as exc:
            apply_service_error(exc, form, params)
            return _render_update(request, instance, form, params, status=_error_status(exc))
        return _done(request, instance.get_absolute_url(), f"The update of {instance.name} has been requested.")
    return _render_update(request, instance, form, params, status=422)


def _render_update(request: HttpRequest, instance: ServiceInstance, form: UpdateForm, params: ParametersForm, *,
                   status: int) -> HttpResponse:
    return _render_detail_part(request, instance, "instances/_update_form.html", status=status,
                               update_form=form, update_params=params,
                               update_summary=error_summary(form, params) if status >= 400 else [])


@require_POST
def instance_deprovision_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    count = len(selectors.binding_list(instance=str(instance.pk)))
    form = DeprovisionForm(request.POST, instance=instance, binding_count=count)
    status = 422
    if form.is_valid():
        try:
            instance_deprovision(instance=instance, requested_by=request.user,
                                 cascade=form.cleaned_data.get("cascade", False), request=request)
        except ApplicationError as exc:
            apply_service_error(exc, form)
            status = _error_status(exc)
        else:
            return _done(request, instance.get_absolute_url(), f"Deprovisioning {instance.name} has started.")
    return _render_detail_part(request, instance, "instances/_deprovision_form.html", status=status,
                               deprovision_form=form)


@require_POST
def instance_retry_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    """Retry the failed operation (a failed provision becomes a new instance: go to its page)."""
    instance = _instance_or_404(request, instance_id)
    try:
        retried = instance_retry(instance=instance, requested_by=request.user, request=request)
    except (Forbidden, NotFound) as exc:
        raise PermissionDenied(exc) from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
        url = instance.get_absolute_url()
        return HttpResponseClientRedirect(url) if htmx_partial(request) else HttpResponseRedirect(url)
    what = "Provisioning it again" if retried.pk != instance.pk else "Trying again"
    return _done(request, retried.get_absolute_url(), f"{what}; this page follows it.")


@require_POST
def operation_cancel_view(request: HttpRequest, operation_id: Any) -> HttpResponse:
    """Stop an operation the broker has not accepted yet, or (platform admins) a cleanup at the broker."""
    operation = selectors.operation_list(user=request.user).filter(pk=operation_id).first()
    if operation is None:
        raise Http404("No such operation.")
    url = operation.instance.get_absolute_url()
    try:
        operation_cancel(operation=operation, requested_by=request.user, request=request)
    except (Forbidden, NotFound) as exc:
        raise PermissionDenied(exc) from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseClientRedirect(url) if htmx_partial(request) else HttpResponseRedirect(url)
    what = "The cleanup at the broker was stopped" if operation.type == OpType.ORPHAN_MITIGATION \
        else f"{operation.title} was cancelled before the broker accepted it"
    return _done(request, url, f"{what}.")


# --- drift -----------------------------------------------------------------------------------------------------


def _instance_action(request: HttpRequest, instance_id: Any, action: Any, message: str) -> HttpResponse:
    """Run one of the drift actions and come back to the instance page (refusals as a message there)."""
    instance = _instance_or_404(request, instance_id)
    url = instance.get_absolute_url() + "#drift"
    try:
        action(instance=instance, requested_by=request.user)
    except (Forbidden, NotFound) as exc:
        raise PermissionDenied(exc) from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseClientRedirect(url) if htmx_partial(request) else HttpResponseRedirect(url)
    return _done(request, url, message)


@require_POST
def instance_refresh_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    return _instance_action(request, instance_id, drift_check, "Asking the broker what it holds; this page follows.")


@require_POST
def instance_drift_adopt_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    def adopt(**kwargs: Any) -> Any:
        return drift_adopt(request=request, **kwargs)

    return _instance_action(request, instance_id, adopt, "The portal now holds the broker's values.")


@require_POST
def instance_drift_reapply_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    def reapply(**kwargs: Any) -> Any:
        return drift_reapply(request=request, **kwargs)

    return _instance_action(request, instance_id, reapply,
                            "The portal's values are being sent to the broker again; this page follows the update.")


# --- bindings ------------------------------------------------------------------------------------------------


@require_POST
def binding_create_view(request: HttpRequest, instance_id: Any) -> HttpResponse:
    instance = _instance_or_404(request, instance_id)
    form = BindingForm(request.POST, instance=instance, namespaces=writable_namespaces(request.user))
    params = ParametersForm(instance.plan.binding_create_schema, prefix=BIND_PREFIX, data=request.POST)
    action = request.POST.get("action", "bind")
    status = 200
    if not params.handle(action):
        status = 422
        if form.is_valid() & params.is_valid():
            try:
                binding = binding_create(instance=instance, parameters=params.parameters, requested_by=request.user,
                                         request=request, **form.cleaned_data)
            except ApplicationError as exc:
                apply_service_error(exc, form, params)
                status = _error_status(exc)
            else:
                return _done(request, instance.get_absolute_url() + "#bindings",
                             f"Binding {binding.name} has been requested; its credentials follow.")
    return _render_detail_part(request, instance, "instances/_binding_form.html", status=status,
                               binding_form=form, binding_params=params,
                               binding_summary=error_summary(form, params) if status >= 400 else [])


def _binding_or_404(request: HttpRequest, binding_id: Any) -> ServiceBinding:
    return get_object_or_404(selectors.binding_list(user=request.user), pk=binding_id)


@require_POST
def binding_credentials_view(request: HttpRequest, binding_id: Any) -> HttpResponse:
    """Reveal one value of a binding's credentials (`key`): only through the service, which checks who may and
    audits it. htmx swaps that value's row; without JavaScript the whole page comes back with it shown."""
    binding = _binding_or_404(request, binding_id)
    key = request.POST.get("key")
    status, revealed, error = 200, {}, None
    try:
        revealed = dict(_credential_items(binding_credentials(binding=binding, user=request.user, request=request,
                                                              key=key)))
    except ApplicationError as exc:
        status, error = _error_status(exc), exc.message
    if htmx_partial(request):
        if error or key is None:
            binding.can_reveal = can_reveal_credentials(binding=binding, user=request.user)
            _prepare_credentials(binding, revealed, error)
            response = render(request, "instances/_credentials.html", {"binding": binding}, status=status)
        else:
            row = next(r for r in _credential_rows(binding, revealed) if r["key"] == key)
            response = render(request, "instances/_credential_value.html", {"binding": binding, "row": row})
    else:
        instance = _instance_or_404(request, binding.instance_id)
        response = render(request, "instances/instance_detail.html",
                          _detail_context(request, instance, revealed={"binding": binding.pk, "values": revealed,
                                                                       "error": error}), status=status)
    add_never_cache_headers(response)  # never keep credentials in a cache or the back/forward history
    return response


def _credential_items(result: dict[str, Any]) -> list[tuple[str, str]]:
    """What the broker returned, as (name, text) pairs to show and copy."""
    items = [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in (result.get("credentials") or {}).items()]
    items += [(key, str(result[key])) for key in ("syslog_drain_url", "route_service_url") if result.get(key)]
    items += [(key, json.dumps(result[key])) for key in ("volume_mounts", "endpoints") if result.get(key)]
    return items


def _credential_rows(binding: ServiceBinding, revealed: dict[str, str]) -> list[dict[str, Any]]:
    """Each credential's name (not secret) and, if it was just revealed, its value."""
    names = [name for name, _ in _credential_items(binding.secrets)] if binding.state == "ready" else []
    return [{"key": name, "index": i, "value": revealed.get(name), "env": _env_name(name)}
            for i, name in enumerate(names, start=1)]


def _env_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_").upper() or "VALUE"


def _prepare_credentials(binding: ServiceBinding, revealed: dict[str, str], error: str | None) -> None:
    """What the credentials block shows: every name (values masked unless revealed), the error of a refused
    reveal, and the snippets of "Use in your app" (a connection string only with its password masked)."""
    binding.credential_rows = _credential_rows(binding, revealed)
    binding.reveal_error = error
    uri = (binding.secrets.get("credentials") or {}).get("uri") if binding.state == "ready" else None
    binding.connection_string = _masked_uri(uri) if isinstance(uri, str) else ""


def _masked_uri(uri: str) -> str:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ""
    if not parts.scheme or not parts.netloc:
        return ""
    if parts.password:
        user = parts.username or ""
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{user}:{schema_form.MASK}@{host}")
    return urlunsplit(parts)


def _binding_action(request: HttpRequest, binding_id: Any, service: Callable[..., Any],
                    done: Callable[[ServiceBinding], str]) -> HttpResponse:
    """Run a binding's service action and come back to its instance's bindings (refusals as a message there)."""
    binding = _binding_or_404(request, binding_id)
    url = reverse("instances:detail", args=[binding.instance_id]) + "#bindings"
    try:
        service(binding=binding, requested_by=request.user, request=request)
    except (Forbidden, NotFound) as exc:
        raise PermissionDenied(exc) from None
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return HttpResponseClientRedirect(url) if htmx_partial(request) else HttpResponseRedirect(url)
    return _done(request, url, done(binding))


@require_POST
def binding_rotate_view(request: HttpRequest, binding_id: Any) -> HttpResponse:
    return _binding_action(request, binding_id, binding_rotate, lambda b: (
        f"Rotating {b.name}: the Secret {b.secret_name} gets new credentials once the broker has made them."))


@require_POST
def binding_delete_view(request: HttpRequest, binding_id: Any) -> HttpResponse:
    return _binding_action(request, binding_id, binding_delete,
                           lambda b: f"Unbinding {b.name}; its Secret is removed once the broker confirms.")
