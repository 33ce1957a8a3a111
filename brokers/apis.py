"""REST API for brokers, services and plans (API.md). Thin: parse, call a service or selector, shape."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers import conformance, selectors, services
from brokers.mirror import empty_diff
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from catalog_portal.api import (
    Pagination,
    QueryBooleanField,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
    errors,
    paginated,
    parse_query,
)
from teams import access
from teams.models import Team


class IsAdminOrReadOnly(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return request.method in ("GET", "HEAD", "OPTIONS") or bool(user.is_staff)


# --- Brokers -------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="BrokerAuthWrite")
class AuthSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["none", "basic", "bearer"])
    username = StrictCharField(required=False, allow_blank=True, max_length=200)
    password = StrictCharField(required=False, allow_blank=True, write_only=True, max_length=1000)
    token = StrictCharField(required=False, allow_blank=True, write_only=True, max_length=5000)

    def to_internal_value(self, data: Any) -> services.BrokerAuth:
        values = super().to_internal_value(data)
        kind = values.get("type")
        if kind is None:  # a PATCH makes nested fields optional; a new auth still needs its type
            raise serializers.ValidationError({"type": ["This field is required."]})
        secret = values.get("password") if kind == "basic" else values.get("token") if kind == "bearer" else None
        return services.BrokerAuth(type=kind, username=values.get("username", ""), secret=secret or None)


@extend_schema_serializer(component_name="BrokerAuth")
class AuthOutputSerializer(serializers.Serializer):
    """Documents `auth` as returned: the secret is never echoed."""

    type = serializers.ChoiceField(choices=["basic", "bearer"])
    username = serializers.CharField(required=False, help_text="Only for basic auth.")


class CatalogRestrictionsSerializer(serializers.Serializer):
    """Documents `catalog_restrictions`. Each rule is `PROPERTY OP VALUE`: PROPERTY `name` or `catalog_id`
    (services and plans) or `free` (plans); OP `==`, `!=`, `in (a, b)` or `notin (a, b)`; every rule must hold."""

    services = serializers.ListField(child=serializers.CharField(), required=False,
                                     help_text='Rules a service must satisfy to be offered, e.g. "name in (postgresql, redis)".')
    plans = serializers.ListField(child=serializers.CharField(), required=False,
                                  help_text='Rules a plan must satisfy to be offered, e.g. "free==true".')


@extend_schema_field(CatalogRestrictionsSerializer)
class CatalogRestrictionsField(serializers.JSONField):
    """Passed to the broker service, whose one parser (brokers.restrictions) says what is wrong with the rules;
    the shape (an object of lists of strings) is checked here, as the document states it."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict) or any(
            key in data and (not isinstance(data[key], list) or not all(isinstance(r, str) for r in data[key]))
            for key in ("services", "plans")
        ):
            raise serializers.ValidationError(
                'Use {"services": ["rule", ...], "plans": ["rule", ...]} (both optional).')
        return super().to_internal_value(data)


@extend_schema_serializer(component_name="Broker")
class BrokerOutputSerializer(serializers.ModelSerializer):
    auth = serializers.SerializerMethodField()
    service_count = serializers.IntegerField(read_only=True)
    plan_count = serializers.IntegerField(read_only=True)
    catalog_restrictions = serializers.SerializerMethodField()

    class Meta:
        model = Broker
        fields = [
            "id", "name", "url", "auth", "verify_tls", "ca_bundle", "relist_interval_seconds", "enabled",
            "status", "status_message", "last_synced_at", "service_count", "plan_count", "catalog_restrictions",
            "conformance_score", "max_in_flight", "paused_until", "created_at", "updated_at",
        ]
        extra_kwargs = {"conformance_score": {
            "help_text": "0-100 as of the last check (each sync refreshes it); null before the first sync. "
                         "GET .../conformance/ computes the scorecard afresh."},
            "max_in_flight": {"help_text": "Most calls the portal's workers make to this broker at once (0: no "
                                           "limit); set in the admin console."},
            "paused_until": {"help_text": "No calls to this broker before this time: it answered 429 or 503 with "
                                          "Retry-After; null when not paused."}}

    @extend_schema_field(CatalogRestrictionsSerializer)
    def get_catalog_restrictions(self, broker: Broker) -> dict[str, list[str]]:
        return services.restrictions_json(broker.catalog_restrictions)

    @extend_schema_field(AuthOutputSerializer(allow_null=True))
    def get_auth(self, broker: Broker) -> dict[str, str] | None:
        if broker.auth_type == Broker.AuthType.BASIC:
            return {"type": "basic", "username": broker.auth_username}
        if broker.auth_type == Broker.AuthType.BEARER:
            return {"type": "bearer"}
        return None


@extend_schema_field(OpenApiTypes.URI)
class BrokerURLField(StrictCharField):
    """A URL without Django's URLValidator, which refuses single-label hosts; the service checks it
    (services.broker_problems)."""


@extend_schema_serializer(component_name="BrokerWrite")
class BrokerInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    url = BrokerURLField(max_length=500)
    auth = AuthSerializer(required=False, allow_null=True)
    verify_tls = StrictBooleanField(required=False, default=True)
    ca_bundle = StrictCharField(required=False, allow_null=True, allow_blank=True)
    relist_interval_seconds = StrictIntegerField(required=False, min_value=10, max_value=7 * 24 * 3600)
    enabled = StrictBooleanField(required=False, default=True)
    catalog_restrictions = CatalogRestrictionsField(
        required=False, help_text="What the platform offers of the catalog; changing it re-mirrors the catalog at once.")


def _broker_body(broker: Broker) -> dict[str, Any]:
    return BrokerOutputSerializer(selectors.broker_list().get(pk=broker.pk)).data


class BrokerListApi(APIView):
    permission_classes = [IsAdminOrReadOnly]
    pagination_class = Pagination  # for the OpenAPI document: lists are paginated envelopes

    @extend_schema(responses=BrokerOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List brokers"""
        return paginated(selectors.broker_list(), request, self, BrokerOutputSerializer)

    @extend_schema(request=BrokerInputSerializer,
                   responses={201: BrokerOutputSerializer, **errors(s409="A broker with this name exists.")})
    def post(self, request: Request) -> Response:
        """Register a broker

        Platform admins. Queues a catalog sync at once. Field errors (400) name an unusable URL, CA bundle,
        authentication or catalog restriction."""
        serializer = BrokerInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        auth = data.pop("auth", None)
        broker = services.broker_register(auth=auth, requested_by=request.user, request=request, **data)
        return Response(_broker_body(broker), status=status.HTTP_201_CREATED)


class BrokerDetailApi(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses=BrokerOutputSerializer)
    def get(self, request: Request, broker_id: str) -> Response:
        """Read a broker"""
        return Response(BrokerOutputSerializer(get_object_or_404(selectors.broker_list(), pk=broker_id)).data)

    @extend_schema(request=BrokerInputSerializer(partial=True),
                   responses={200: BrokerOutputSerializer, **errors(s409="Another broker has this name.")})
    def patch(self, request: Request, broker_id: str) -> Response:
        """Change a broker

        Platform admins. Only the fields given change; `"auth": null` removes authentication."""
        broker = get_object_or_404(Broker, pk=broker_id)
        serializer = BrokerInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        auth = data.pop("auth", None)
        if auth is None and "auth" in serializer.validated_data:
            auth = services.BrokerAuth(type="none")  # "auth": null removes authentication
        broker = services.broker_update(broker=broker, auth=auth, requested_by=request.user, request=request, **data)
        return Response(_broker_body(broker))

    @extend_schema(responses={204: None, **errors(s409="The broker still has instances.")})
    def delete(self, request: Request, broker_id: str) -> Response:
        """Remove a broker

        Platform admins; refused (409) while it has instances."""
        services.broker_remove(broker=get_object_or_404(Broker, pk=broker_id), requested_by=request.user,
                               request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class BrokerSyncApi(APIView):
    permission_classes = [IsAuthenticated, IsAdminOrReadOnly]

    @extend_schema(
        request=None,
        responses={202: inline_serializer("SyncQueued", {"detail": serializers.CharField()})},
    )
    def post(self, request: Request, broker_id: str) -> Response:
        """Queue a catalog sync of the broker

        Platform admins."""
        broker = get_object_or_404(Broker, pk=broker_id)
        services.broker_request_sync(broker=broker, requested_by=request.user, request=request)
        return Response({"detail": f"A catalog sync of '{broker.name}' is queued."}, status=status.HTTP_202_ACCEPTED)


# --- Broker insight (platform admins) ------------------------------------------------------------


class IsPlatformAdmin(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return access.is_platform_admin(request.user)


class SchemaChangeSerializer(serializers.Serializer):
    """How one parameter schema changed: its properties (dotted paths for nested objects' properties)."""

    added = serializers.ListField(child=serializers.CharField(), required=False)
    removed = serializers.ListField(child=serializers.CharField(), required=False)
    required = serializers.ListField(child=serializers.CharField(), required=False, help_text="Made required.")
    optional = serializers.ListField(child=serializers.CharField(), required=False, help_text="No longer required.")
    changed = serializers.ListField(child=serializers.CharField(), required=False,
                                    help_text="Defined differently (type, bounds, enum, default...).")


class CatalogDiffEntrySerializer(serializers.Serializer):
    catalog_id = serializers.CharField(help_text="The broker's id of the service or plan.")
    name = serializers.CharField()
    service = serializers.CharField(required=False, help_text="Plans: the name of their service.")
    fields = serializers.ListField(
        child=serializers.CharField(), required=False,
        help_text="Changed entries: what changed, e.g. description, free, metadata.displayName, metadata.costs, "
                  "maintenance_info, schemas.service_instance.create, service (moved), position (reordered).")
    schemas = serializers.DictField(
        child=SchemaChangeSerializer(), required=False,
        help_text='Changed plans whose parameter schemas changed, by schema ("service_instance.create", '
                  '"service_instance.update", "service_binding.create").')
    reason = serializers.ChoiceField(
        choices=["removed", "restricted"], required=False,
        help_text="Removed entries: gone from the broker's catalog, or excluded by the catalog restrictions.")
    affected_instances = serializers.IntegerField(help_text="Existing instances of this plan (of this service's plans).")


class CatalogDiffChangesSerializer(serializers.Serializer):
    added = CatalogDiffEntrySerializer(many=True)
    removed = CatalogDiffEntrySerializer(many=True)
    changed = CatalogDiffEntrySerializer(many=True)


class CatalogDiffSerializer(serializers.Serializer):
    services = CatalogDiffChangesSerializer()
    plans = CatalogDiffChangesSerializer()


class CatalogSyncSerializer(serializers.ModelSerializer):
    diff = serializers.SerializerMethodField()

    class Meta:
        model = CatalogSync
        fields = ["id", "trigger", "outcome", "started_at", "finished_at", "duration_ms", "error", "diff"]

    @extend_schema_field(CatalogDiffSerializer)
    def get_diff(self, sync: CatalogSync) -> dict[str, Any]:
        return sync.diff or empty_diff()


class ConformanceCheckSerializer(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    level = serializers.ChoiceField(choices=list(conformance.LEVELS))
    passed = serializers.BooleanField(allow_null=True, help_text="null: not observed yet.")
    detail = serializers.CharField(help_text="What was found; for a failure, what to fix, quoting the spec.")
    spec = serializers.CharField(help_text="The section of the OSB v2.17 spec or profile the check comes from.")


class ConformanceReportSerializer(serializers.Serializer):
    score = serializers.IntegerField(min_value=0, max_value=100)
    checked_at = serializers.DateTimeField()
    checks = ConformanceCheckSerializer(many=True)


def _broker_for_admin(broker_id: str) -> Broker:
    return get_object_or_404(Broker, pk=broker_id)


class BrokerSyncListApi(APIView):
    permission_classes = [IsPlatformAdmin]
    pagination_class = Pagination

    @extend_schema(responses={200: CatalogSyncSerializer(many=True)})
    def get(self, request: Request, broker_id: str) -> Response:
        """List the broker's catalog syncs

        Platform admins. Newest first, each with what it changed."""
        return paginated(selectors.sync_list(broker=_broker_for_admin(broker_id)), request, self,
                         CatalogSyncSerializer)


class BrokerSyncDetailApi(APIView):
    permission_classes = [IsPlatformAdmin]

    @extend_schema(responses={200: CatalogSyncSerializer})
    def get(self, request: Request, broker_id: str, sync_id: str) -> Response:
        """Read one catalog sync of the broker

        Platform admins."""
        sync = get_object_or_404(selectors.sync_list(broker=_broker_for_admin(broker_id)), pk=sync_id)
        return Response(CatalogSyncSerializer(sync).data)


class BrokerConformanceApi(APIView):
    permission_classes = [IsPlatformAdmin]

    @extend_schema(responses={200: ConformanceReportSerializer})
    def get(self, request: Request, broker_id: str) -> Response:
        """Read the broker's conformance scorecard

        Platform admins. Computed now: catalog checks of the last catalog fetched, behaviour checks of the calls
        of the last 7 days."""
        report = selectors.broker_conformance(broker=_broker_for_admin(broker_id))
        body = {"score": report.score, "checked_at": report.checked_at,
                "checks": [check.as_json() for check in report.checks]}
        return Response(ConformanceReportSerializer(body).data)


# --- Services and plans --------------------------------------------------------------------------


class PlanSummarySerializer(serializers.ModelSerializer):
    display_name = serializers.CharField(source="title")

    class Meta:
        model = ServicePlan
        fields = ["id", "name", "display_name", "free"]


class ServiceSerializer(serializers.ModelSerializer):
    broker_name = serializers.CharField(source="broker.name")
    display_name = serializers.CharField(source="title")
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    requires = serializers.ListField(child=serializers.CharField(), read_only=True)
    plans = serializers.SerializerMethodField()

    class Meta:
        model = ServiceOffering
        fields = [
            "id", "broker", "broker_name", "catalog_id", "name", "display_name", "description",
            "long_description", "provider", "image_url", "documentation_url", "support_url", "tags", "requires",
            "bindable", "instances_retrievable", "bindings_retrievable", "plan_updateable", "active", "plans",
        ]

    @extend_schema_field(PlanSummarySerializer(many=True))
    def get_plans(self, offering: ServiceOffering) -> list[dict[str, Any]]:
        plans = getattr(offering, "active_plans", None)
        if plans is None:
            plans = offering.plans.filter(active=True).order_by("position")
        return PlanSummarySerializer(plans, many=True).data  # type: ignore[return-value]


class PlanSerializer(serializers.ModelSerializer):
    service = serializers.UUIDField(source="offering_id")
    display_name = serializers.CharField(source="title")
    bindable = serializers.BooleanField(source="effective_bindable")
    plan_updateable = serializers.BooleanField(source="effective_plan_updateable")
    bullets = serializers.ListField(child=serializers.CharField(), read_only=True)
    costs = serializers.ListField(child=serializers.DictField(), read_only=True)
    schemas = serializers.SerializerMethodField()
    teams = serializers.SerializerMethodField()

    class Meta:
        model = ServicePlan
        fields = [
            "id", "service", "catalog_id", "name", "display_name", "description", "free", "costs", "bullets",
            "bindable", "plan_updateable", "maximum_polling_duration", "maintenance_info", "schemas", "active",
            "visibility", "teams",
        ]

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_teams(self, plan: ServicePlan) -> list[str]:
        return sorted(str(team.pk) for team in plan.teams.all())

    @extend_schema_field(
        inline_serializer(
            "PlanSchemas",
            {
                key: serializers.DictField(allow_null=True, help_text="A JSON Schema, or null.")
                for key in ("instance_create", "instance_update", "binding_create")
            },
        )
    )
    def get_schemas(self, plan: ServicePlan) -> dict[str, Any]:
        return {
            "instance_create": plan.instance_create_schema,
            "instance_update": plan.instance_update_schema,
            "binding_create": plan.binding_create_schema,
        }


class ServiceQuerySerializer(serializers.Serializer):
    search = serializers.CharField(
        required=False, allow_blank=True, max_length=200,
        help_text="Words matched in name, display name, description, tags, provider and broker name (every word "
                  "must match somewhere).")
    tag = serializers.ListField(child=serializers.CharField(max_length=100), required=False,
                                help_text="Only services with this tag (repeatable: all must match).")
    broker = serializers.ListField(child=serializers.UUIDField(), required=False,
                                   help_text="Only services of this broker id (repeatable).")
    provider = serializers.ListField(child=serializers.CharField(max_length=200), required=False,
                                     help_text="Only services of this provider (repeatable).")
    free = QueryBooleanField(required=False,
                             help_text="true: services with a free plan; false: services without one.")
    active = QueryBooleanField(required=False, help_text="true (default) or false: services removed from the catalog.")


class ServiceListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=ServiceSerializer(many=True), parameters=[ServiceQuerySerializer])
    def get(self, request: Request) -> Response:
        """List services (the catalog's offerings)"""
        params = parse_query(request, ServiceQuerySerializer)
        query = selectors.offering_list(
            search=params.get("search") or None,
            tags=params.get("tag", []),
            brokers=[str(pk) for pk in params.get("broker", [])],
            providers=params.get("provider", []),
            free=params.get("free"),
            active=params.get("active", True),
            user=request.user,
        )
        return paginated(query, request, self, ServiceSerializer)


class ServiceDetailApi(APIView):
    @extend_schema(responses=ServiceSerializer)
    def get(self, request: Request, service_id: str) -> Response:
        """Read a service"""
        offering = get_object_or_404(selectors.offering_list(active=None, user=request.user), pk=service_id)
        return Response(ServiceSerializer(offering).data)


class PlanQuerySerializer(serializers.Serializer):
    service = serializers.UUIDField(required=False, help_text="Only plans of this service id.")
    active = QueryBooleanField(required=False, help_text="true (default) or false: plans removed from the catalog.")


class PlanListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=PlanSerializer(many=True), parameters=[PlanQuerySerializer])
    def get(self, request: Request) -> Response:
        """List plans"""
        params = parse_query(request, PlanQuerySerializer)
        service = str(params["service"]) if "service" in params else None
        query = selectors.plan_list(service=service, active=params.get("active", True), user=request.user)
        return paginated(query, request, self, PlanSerializer)


@extend_schema_serializer(component_name="PlanVisibility")
class PlanVisibilitySerializer(serializers.Serializer):
    """Who sees a plan. Missing fields keep their current value (a plan made public lists no teams)."""

    visibility = serializers.ChoiceField(choices=ServicePlan.Visibility.values, required=False)
    teams = serializers.ListField(child=serializers.UUIDField(), required=False,
                                  help_text="With visibility teams: the teams that see the plan (existing team ids).")

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if "teams" in data:
            found = {t.pk: t for t in Team.objects.filter(pk__in=data["teams"])}
            missing = [str(pk) for pk in data["teams"] if pk not in found]
            if missing:
                raise serializers.ValidationError({"teams": [f"No such team: {', '.join(missing)}."]})
            data["teams"] = list(found.values())
        return data


class PlanDetailApi(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses=PlanSerializer)
    def get(self, request: Request, plan_id: str) -> Response:
        """Read a plan"""
        plans = selectors.plan_list(active=None, user=request.user)
        return Response(PlanSerializer(get_object_or_404(plans, pk=plan_id)).data)

    @extend_schema(request=PlanVisibilitySerializer, responses=PlanSerializer)
    def patch(self, request: Request, plan_id: str) -> Response:
        """Set who sees a plan

        Platform admins. `{"visibility": "teams", "teams": [team ids]}`, or `{"visibility": "public"}`. A plan
        visible only to some teams is absent (404, not in lists) for everyone else."""
        plan = get_object_or_404(selectors.plan_list(active=None), pk=plan_id)
        data = PlanVisibilitySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        visibility = values.get("visibility", plan.visibility)
        if "teams" in values:
            teams = values["teams"]
        else:
            teams = [] if visibility == ServicePlan.Visibility.PUBLIC else list(plan.teams.all())
        services.plan_set_visibility(plan=plan, visibility=visibility, teams=teams, requested_by=request.user,
                                     request=request)
        return Response(PlanSerializer(selectors.plan_list(active=None).get(pk=plan.pk)).data)
