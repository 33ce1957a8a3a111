"""Admin console for teams (through the services, so every change is audited) and the audit log (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from catalog_portal.exceptions import ApplicationError
from teams import services
from teams.models import AuditRecord, Membership, Team, TeamNamespace


class TeamNamespaceInline(admin.TabularInline):
    model = TeamNamespace
    extra = 1


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields: list[str] = []
    raw_id_fields = ["user"]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "namespace_list", "member_count", "created_at"]
    search_fields = ["name", "namespaces__namespace", "memberships__user__username"]
    inlines = [TeamNamespaceInline, MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).prefetch_related("namespaces", "memberships")

    @admin.display(description="Namespaces")
    def namespace_list(self, team: Team) -> str:
        return ", ".join(ns.namespace for ns in team.namespaces.all())

    @admin.display(description="Members")
    def member_count(self, team: Team) -> int:
        return len(team.memberships.all())

    def save_model(self, request: HttpRequest, obj: Team, form: Any, change: bool) -> None:
        who = {"requested_by": request.user, "request": request}
        if change:
            services.team_update(team=Team.objects.get(pk=obj.pk), name=form.cleaned_data["name"], **who)
        else:
            created = services.team_create(name=form.cleaned_data["name"], **who)
            obj.pk, obj.created_at = created.pk, created.created_at
            obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        """The inlines' rows, applied through the services (one audit record per change)."""
        team, who = Team.objects.get(pk=form.instance.pk), {"requested_by": request.user, "request": request}
        for formset in formsets:
            # The admin's change message reads these; the rows are saved by the services below.
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            rows = [f.cleaned_data for f in formset.forms if f.cleaned_data]
            if formset.model is TeamNamespace:
                keep = sorted({r["namespace"] for r in rows if not r.get("DELETE") and r.get("namespace")})
                current = sorted(team.namespaces.values_list("namespace", flat=True))
                if keep != current:
                    services.team_update(team=team, namespaces=keep, **who)
            elif formset.model is Membership:
                for f in formset.forms:
                    row = f.cleaned_data
                    if not row or not row.get("user"):
                        continue
                    username = row["user"].get_username()
                    if row.get("DELETE"):
                        if f.instance.pk:
                            services.team_member_remove(team=team, username=f.instance.user.get_username(), **who)
                    elif f.has_changed():
                        if f.instance.pk and f.instance.user_id != row["user"].pk:
                            services.team_member_remove(team=team, username=f.instance.user.get_username(), **who)
                        services.team_member_set(team=team, username=username, role=row["role"], **who)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        """A team whose namespaces hold live instances is not deleted: back to its page, saying which."""
        team = self.get_object(request, object_id)
        refusal = services.team_delete_refusal(team) if team is not None else None
        if refusal:
            self.message_user(request, refusal, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:teams_team_change", args=[team.pk]))
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Team) -> None:
        services.team_delete(team=obj, requested_by=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            try:
                services.team_delete(team=team, requested_by=request.user, request=request)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_name", "action", "target_type", "target_id", "summary", "ip", "request_id"]
    list_filter = ["action", "target_type", ("at", admin.DateFieldListFilter)]
    search_fields = ["actor_name", "action", "target_id", "summary", "request_id", "ip"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
