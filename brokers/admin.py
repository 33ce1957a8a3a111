"""Admin console for brokers: registration (through the services), status, sync history, read-only mirror."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from brokers import selectors, services
from brokers.mirror import describe_diff
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from catalog_portal.exceptions import ApplicationError


class BrokerURLField(forms.URLField):
    # Django's URLValidator rejects single-label hosts (Kubernetes and docker-compose service names); the service
    # checks the URL (BrokerForm.clean).
    default_validators: list[Any] = []


class BrokerForm(forms.ModelForm):
    url = BrokerURLField(max_length=500, assume_scheme="https", label="URL",
                         help_text="Base URL of the broker, without /v2.")
    secret = forms.CharField(
        label="Password or token",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Write-only. Leave empty to keep the stored secret.",
    )

    service_rules = forms.CharField(
        label="Service rules", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Catalog restrictions, one rule per line; a service is offered when it satisfies every rule. "
                  "name or catalog_id with ==, !=, in (a, b) or notin (a, b), e.g. name in (postgresql, redis-cache).",
    )
    plan_rules = forms.CharField(
        label="Plan rules", required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One rule per line, as for services, also on free (true or false), e.g. free==true. Changing the "
                  "rules re-mirrors the catalog at once; existing instances keep working.",
    )

    class Meta:
        model = Broker
        fields = [
            "name", "url", "auth_type", "auth_username", "verify_tls", "ca_bundle", "relist_interval_seconds",
            "enabled", "max_in_flight",
        ]
        labels = {
            "url": "URL", "auth_type": "Authentication", "auth_username": "Username", "verify_tls": "Verify TLS",
            "ca_bundle": "CA bundle", "relist_interval_seconds": "Relist every (seconds)",
            "max_in_flight": "Calls in flight at most",
        }
        help_texts = {
            "verify_tls": "Check the broker's certificate. Turn off only for a test broker.",
            "ca_bundle": "PEM certificates to trust for this broker, when its certificate is not from a public CA.",
            "relist_interval_seconds": "How often the catalog is fetched again.",
            "enabled": "A disabled broker's services are hidden from the marketplace.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rules = services.restrictions_json(self.instance.catalog_restrictions)
        self.fields["service_rules"].initial = "\n".join(rules["services"])
        self.fields["plan_rules"].initial = "\n".join(rules["plans"])
        if "max_in_flight" in self.fields:  # left empty: the default (or the broker's current limit)
            self.fields["max_in_flight"].required = False

    def restrictions(self) -> dict[str, list[str]]:
        data = self.cleaned_data
        return {kind: [line for line in (data.get(f"{kind[:-1]}_rules") or "").splitlines() if line.strip()]
                for kind in ("services", "plans")}

    def _get_validation_exclusions(self) -> Any:
        exclude = super()._get_validation_exclusions()
        exclude.add("url")  # checked in clean() by the service; the model's URLValidator would refuse service names
        return exclude

    # Where the service's findings (services.broker_problems) go on this form.
    PROBLEM_FIELDS = {"url": "url", "ca_bundle": "ca_bundle", "auth.type": "auth_type", "auth.username": "auth_username",
                      "auth.secret": "secret"}

    def clean(self) -> dict[str, Any]:
        """The service's rules for a registration, as form errors (the service would refuse them after the form
        was valid)."""
        data = super().clean()
        auth = services.BrokerAuth(type=data.get("auth_type") or "", username=data.get("auth_username") or "",
                                   secret=data.get("secret") or None)
        problems = services.broker_problems(
            url=data.get("url") or None, ca_bundle=data.get("ca_bundle"), auth=auth,
            catalog_restrictions=self.restrictions(), broker=None if self.instance._state.adding else self.instance)
        for key, found in problems.items():
            for message in found:
                field = self.PROBLEM_FIELDS.get(key) or ("plan_rules" if message.startswith("Plan") else "service_rules")
                if field not in self.errors or key == "catalog_restrictions":
                    self.add_error(field, message)
        return data


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OfferingInline(ReadOnlyInline):
    model = ServiceOffering
    fields = ["name", "display_name", "provider", "catalog_id", "bindable", "active", "updated_at"]
    readonly_fields = fields


@admin.display(description="What changed")
def what_changed(sync: CatalogSync) -> str:
    return describe_diff(sync.diff) if sync.outcome == CatalogSync.Outcome.CHANGED else ""


class SyncInline(ReadOnlyInline):
    model = CatalogSync
    fields = ["started_at", "trigger", "outcome", "duration_ms", what_changed, "error"]
    readonly_fields = fields

    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[CatalogSync]:
        return super().get_queryset(request).order_by("-started_at")


@admin.register(Broker)
class BrokerAdmin(admin.ModelAdmin):
    form = BrokerForm
    list_display = [
        "name", "url", "status_badge", "short_message", "last_synced_at", "service_count", "plan_count",
        "conformance_score", "enabled",
    ]
    list_filter = ["status", "enabled"]
    search_fields = ["name", "url"]
    actions = ["sync_now"]
    readonly_fields = ["status", "status_message", "last_synced_at", "next_sync_at", "paused_until", "insight",
                       "created_at", "updated_at"]
    inlines = [SyncInline, OfferingInline]
    # The form in groups: what it is, how the portal signs in to it, TLS, the schedule; anything else after.
    FIELD_GROUPS = (
        (None, ("name", "url", "enabled")),
        ("Authentication", ("auth_type", "auth_username", "secret")),
        ("TLS", ("verify_tls", "ca_bundle")),
        ("Catalog", ("relist_interval_seconds",)),
        ("Load", ("max_in_flight",)),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else []  # nothing to show before it exists

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else []

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        names = list(self.get_form(request, obj, fields=None).base_fields) + list(self.get_readonly_fields(request, obj))
        groups = [(title, {"fields": [f for f in fields if f in names]}) for title, fields in self.FIELD_GROUPS]
        grouped = {f for _, fields in self.FIELD_GROUPS for f in fields}
        status = [f for f in self.readonly_fields if f in names]
        rest = [f for f in names if f not in grouped and f not in status]
        if rest:
            groups.append(("More", {"fields": rest}))
        if status:
            groups.append(("Status", {"fields": status}))
        return [group for group in groups if group[1]["fields"]]

    @admin.display(description="Insight")
    def insight(self, broker: Broker) -> str:
        if broker.pk is None:
            return "-"
        score = "not checked yet" if broker.conformance_score is None else f"{broker.conformance_score}/100"
        return format_html('Spec conformance {}: <a href="{}">scorecard and sync history with diffs</a>', score,
                           reverse("brokers:detail", args=[broker.pk]))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Broker]:
        return selectors.broker_list()

    @admin.display(description="Status", ordering="status")
    def status_badge(self, broker: Broker) -> str:
        colours = {"ready": "#17803d", "failed": "#b42318", "syncing": "#2557d6", "pending": "#59636e"}
        return format_html(
            '<strong style="color:{}">{}</strong>', colours.get(broker.status, "#000"), broker.get_status_display()
        )

    @admin.display(description="Message")
    def short_message(self, broker: Broker) -> str:
        return broker.status_message[:160]

    @admin.display(description="Services", ordering="service_count")
    def service_count(self, broker: Broker) -> int:
        return broker.service_count  # type: ignore[attr-defined]

    @admin.display(description="Plans", ordering="plan_count")
    def plan_count(self, broker: Broker) -> int:
        return broker.plan_count  # type: ignore[attr-defined]

    @admin.action(description="Sync catalog now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Broker]) -> None:
        for broker in queryset:
            services.broker_request_sync(broker=broker, requested_by=request.user, request=request)
        self.message_user(request, f"Catalog sync queued for {queryset.count()} broker(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Broker, form: Any, change: bool) -> None:
        data = form.cleaned_data
        auth = services.BrokerAuth(
            type=data["auth_type"], username=data.get("auth_username", ""), secret=data.get("secret") or None
        )
        fields = {k: data[k] for k in ("name", "url", "verify_tls", "ca_bundle", "relist_interval_seconds", "enabled")}
        if data.get("max_in_flight") is not None:
            fields["max_in_flight"] = data["max_in_flight"]
        fields["catalog_restrictions"] = form.restrictions()
        try:
            if change:
                original = Broker.objects.get(pk=obj.pk)
                auth_changed = auth.secret or auth.type != original.auth_type or auth.username != original.auth_username
                services.broker_update(broker=original, auth=auth if auth_changed else None,
                                       requested_by=request.user, request=request, **fields)
            else:
                broker = services.broker_register(auth=auth, requested_by=request.user, request=request, **fields)
                obj.pk = broker.pk
                obj._state.adding = False
        except ApplicationError as exc:
            # The form was valid but the service refused: show why instead of a server error.
            self.message_user(request, exc.message, messages.ERROR)
            raise

    def delete_model(self, request: HttpRequest, obj: Broker) -> None:
        services.broker_remove(broker=obj, requested_by=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Broker]) -> None:
        for broker in queryset:
            services.broker_remove(broker=broker, requested_by=request.user, request=request)


@admin.register(CatalogSync)
class CatalogSyncAdmin(admin.ModelAdmin):
    list_display = ["broker", "started_at", "trigger", "outcome", "duration_ms", what_changed]
    list_filter = ["outcome", "trigger", "broker"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PlanInline(ReadOnlyInline):
    model = ServicePlan
    fields = ["name", "display_name", "catalog_id", "free", "bindable", "plan_updateable", "active"]
    readonly_fields = fields


@admin.register(ServiceOffering)
class ServiceOfferingAdmin(admin.ModelAdmin):
    list_display = ["title", "broker", "provider", "catalog_id", "bindable", "active"]
    list_filter = ["active", "broker", "bindable"]
    search_fields = ["name", "display_name", "description", "catalog_id"]
    inlines = [PlanInline]
    list_select_related = ["broker"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class PlanVisibilityForm(forms.ModelForm):
    class Meta:
        model = ServicePlan
        fields = ["visibility", "teams"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("visibility") == ServicePlan.Visibility.PUBLIC and data.get("teams"):
            self.add_error("teams", "A public plan lists no teams; choose 'Only the listed teams' or clear them.")
        return data


@admin.register(ServicePlan)
class ServicePlanAdmin(ServiceOfferingAdmin):
    """The mirror is read-only; only a plan's visibility (service access) is the platform's to set."""

    form = PlanVisibilityForm
    list_display = ["title", "offering", "broker", "catalog_id", "free", "visibility", "active"]
    list_filter = ["active", "free", "visibility", "broker"]
    search_fields = ["name", "display_name", "catalog_id"]
    inlines = []
    list_select_related = ["offering", "broker"]
    fields = ["offering", "name", "display_name", "catalog_id", "free", "active", "visibility", "teams"]
    readonly_fields = ["offering", "name", "display_name", "catalog_id", "free", "active"]
    filter_horizontal = ["teams"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def save_model(self, request: HttpRequest, obj: ServicePlan, form: Any, change: bool) -> None:
        services.plan_set_visibility(plan=ServicePlan.objects.get(pk=obj.pk), visibility=form.cleaned_data["visibility"],
                                     teams=list(form.cleaned_data["teams"]), requested_by=request.user,
                                     request=request)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The teams were set by the service in save_model."""
