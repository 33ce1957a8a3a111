"""Admin console for instances and operations: what happened, what happens next, every OSB call."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from catalog_portal.exceptions import ApplicationError
from instances.models import (
    Operation,
    OperationCall,
    ServiceBinding,
    ServiceInstance,
    UpgradeBatch,
    UpgradeItem,
)
from instances.services.instances import instance_deprovision
from instances.services.rotation import binding_rotate


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OperationInline(ReadOnlyMixin, admin.TabularInline):
    model = Operation
    fk_name = "instance"
    extra = 0
    show_change_link = True
    fields = ["type", "state", "phase", "attempts", "polls", "description", "next_step", "started_at", "finished_at"]
    readonly_fields = fields
    ordering = ["-started_at"]


@admin.register(ServiceInstance)
class ServiceInstanceAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "namespace", "plan", "broker", "state", "created_at"]
    list_filter = ["state", "broker", "namespace"]
    search_fields = ["name", "namespace", "id"]
    list_select_related = ["plan__offering", "broker"]
    inlines = [OperationInline]
    actions = ["deprovision"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceInstance]:
        return super().get_queryset(request).exclude(state="deleted")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Deprovision selected instances")
    def deprovision(self, request: HttpRequest, queryset: QuerySet[ServiceInstance]) -> None:
        for instance in queryset:
            try:
                instance_deprovision(instance=instance, requested_by=request.user, request=request)
            except ApplicationError as exc:
                self.message_user(request, f"{instance}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{instance}: deprovisioning queued.", messages.SUCCESS)


@admin.register(ServiceBinding)
class ServiceBindingAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "namespace", "secret_name", "instance", "state", "current", "predecessor", "rotate_at",
                    "retire_at", "created_at"]
    list_filter = ["state", "current", "namespace"]
    search_fields = ["name", "namespace", "secret_name", "id"]
    list_select_related = ["instance", "predecessor"]
    exclude = ["secrets_encrypted", "context"]
    actions = ["rotate"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ServiceBinding]:
        return super().get_queryset(request).exclude(state="deleted")

    @admin.action(description="Rotate selected bindings")
    def rotate(self, request: HttpRequest, queryset: QuerySet[ServiceBinding]) -> None:
        for binding in queryset:
            try:
                successor = binding_rotate(binding=binding, requested_by=request.user, request=request)
            except ApplicationError as exc:
                self.message_user(request, f"{binding}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{binding}: rotation started (successor {successor.pk}).",
                                  messages.SUCCESS)


class CallInline(ReadOnlyMixin, admin.TabularInline):
    model = OperationCall
    extra = 0
    fields = ["at", "method", "path", "status", "duration_ms", "request_id", "error", "request_excerpt",
              "response_excerpt"]
    readonly_fields = fields


@admin.register(Operation)
class OperationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["type", "instance", "state", "phase", "attempts", "polls", "next_poll_at", "started_at"]
    list_filter = ["state", "type"]
    search_fields = ["instance__name", "id", "broker_operation", "request_id"]  # request_id: X-Request-ID
    list_select_related = ["instance"]
    inlines = [CallInline]
    exclude = ["identity"]


class UpgradeItemInline(ReadOnlyMixin, admin.TabularInline):
    model = UpgradeItem
    extra = 0
    fields = ["instance", "state", "from_version", "to_version", "operation", "error", "started_at", "finished_at"]
    readonly_fields = fields


@admin.register(UpgradeBatch)
class UpgradeBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Upgrade batches, read-only: they are started, resumed and cancelled on the Upgrades page or the API."""

    list_display = ["id", "state", "plan", "max_parallel", "requested_by", "created_at", "finished_at"]
    list_filter = ["state"]
    inlines = [UpgradeItemInline]
