"""REST API for upgrades in bulk (issue 17). Thin: parse, call one service, shape the answer."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.models import ServicePlan
from catalog_portal.api import ApiErrorSerializer
from instances.apis import LastOperationSerializer
from instances.models import UpgradeBatch, UpgradeItem
from instances.services import upgrades


class UpgradePlanSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    service = serializers.CharField(help_text="The service's name.")
    broker = serializers.CharField(help_text="The broker's name.")


class UpgradeInstanceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    namespace = serializers.CharField()
    state = serializers.CharField()
    version = serializers.CharField(allow_null=True, help_text="The instance's maintenance version.")


class UpgradeAvailableSerializer(serializers.Serializer):
    plan = UpgradePlanSerializer()
    version = serializers.CharField(help_text="The plan's maintenance version, newer than the instances'.")
    description = serializers.CharField(help_text="What the new version brings (the broker's words).")
    instances = UpgradeInstanceSerializer(many=True)


def _available_body(group: upgrades.PlanUpgrades) -> dict[str, Any]:
    plan = group.plan
    return {
        "plan": {"id": plan.pk, "name": plan.name, "service": plan.offering.name, "broker": plan.broker.name},
        "version": group.version, "description": group.description,
        "instances": [{"id": i.pk, "name": i.name, "namespace": i.namespace, "state": i.state,
                       "version": (i.maintenance_info or {}).get("version")} for i in group.instances],
    }


class UpgradeItemSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id")
    instance_name = serializers.SerializerMethodField()
    operation = LastOperationSerializer(allow_null=True, help_text="The update operation that upgrades it.")

    class Meta:
        model = UpgradeItem
        fields = ["instance", "instance_name", "state", "from_version", "to_version", "operation", "error",
                  "started_at", "finished_at"]

    def get_instance_name(self, item: UpgradeItem) -> str:
        return f"{item.instance.namespace}/{item.instance.name}"


class UpgradeCountsSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class UpgradeBatchSerializer(serializers.ModelSerializer):
    plan = serializers.UUIDField(source="plan_id", allow_null=True)
    counts = serializers.SerializerMethodField()
    items = serializers.SerializerMethodField()

    class Meta:
        model = UpgradeBatch
        fields = ["id", "state", "plan", "max_parallel", "max_failures", "pause_reason", "counts", "items",
                  "created_at", "updated_at", "finished_at"]

    @extend_schema_field(UpgradeCountsSerializer)
    def get_counts(self, batch: UpgradeBatch) -> dict[str, int]:
        return upgrades.batch_counts(batch)

    @extend_schema_field(UpgradeItemSerializer(many=True))
    def get_items(self, batch: UpgradeBatch) -> list[dict[str, Any]]:
        items = batch.items.select_related("instance", "operation").order_by("position")
        return UpgradeItemSerializer(items, many=True).data


class UpgradeBatchCreateSerializer(serializers.Serializer):
    plan = serializers.UUIDField(required=False, help_text="Upgrade every instance of this plan that is behind.")
    instances = serializers.ListField(child=serializers.UUIDField(), required=False, allow_empty=False,
                                      help_text="Or: upgrade these instances.")
    max_parallel = serializers.IntegerField(required=False, default=5, min_value=1, max_value=100,
                                            help_text="At most this many upgrades run at the same time.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("plan" in attrs) == ("instances" in attrs):
            raise serializers.ValidationError("Give either plan or instances.")
        return attrs


class UpgradeBatchResumeSerializer(serializers.Serializer):
    retry_failed = serializers.BooleanField(required=False, default=False,
                                            help_text="Try the failed upgrades again too.")


def _batch(request: Request, batch_id: Any) -> UpgradeBatch:
    upgrades.upgrade_namespaces(request.user)
    return get_object_or_404(upgrades.batch_list(request.user), pk=batch_id)


def batch_body(batch: UpgradeBatch) -> dict[str, Any]:
    return UpgradeBatchSerializer(batch).data


class UpgradeListApi(APIView):
    @extend_schema(
        operation_id="upgrades_list",
        summary="Instances behind their plan's maintenance version",
        description=("Grouped by plan, with the new version and its description. Platform admins see every "
                     "namespace, team admins their teams' namespaces; 403 for anyone else."),
        responses={200: UpgradeAvailableSerializer(many=True), 403: ApiErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response([_available_body(group) for group in upgrades.upgrades_available(request.user)])

    @extend_schema(
        operation_id="upgrades_start",
        summary="Start an upgrade batch",
        description=("Upgrades every instance of `plan` that is behind, or the listed `instances`, at most "
                     "`max_parallel` at a time. Each upgrade is an ordinary update operation with `maintenance_info` "
                     "and `previous_values`. The batch pauses after UPGRADE_BATCH_MAX_FAILURES failures. Audited."),
        request=UpgradeBatchCreateSerializer,
        responses={202: UpgradeBatchSerializer, 400: ApiErrorSerializer, 403: ApiErrorSerializer},
    )
    def post(self, request: Request) -> Response:
        data = UpgradeBatchCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        upgrades.upgrade_namespaces(request.user)
        plan = None
        if "plan" in values:
            plan = ServicePlan.objects.filter(pk=values["plan"]).select_related("offering").first()
            if plan is None:
                raise serializers.ValidationError({"plan": ["No such plan."]})
        batch = upgrades.upgrade_batch_start(plan=plan, instances=values.get("instances"),
                                             max_parallel=values["max_parallel"], requested_by=request.user,
                                             request=request)
        return Response(batch_body(batch), status=status.HTTP_202_ACCEPTED)


class UpgradeBatchApi(APIView):
    @extend_schema(operation_id="upgrades_retrieve", summary="An upgrade batch and the state of each upgrade",
                   responses={200: UpgradeBatchSerializer, 403: ApiErrorSerializer, 404: ApiErrorSerializer})
    def get(self, request: Request, batch_id: Any) -> Response:
        return Response(batch_body(_batch(request, batch_id)))


class UpgradeBatchResumeApi(APIView):
    @extend_schema(operation_id="upgrades_resume", summary="Resume a paused upgrade batch",
                   request=UpgradeBatchResumeSerializer,
                   responses={200: UpgradeBatchSerializer, 409: ApiErrorSerializer})
    def post(self, request: Request, batch_id: Any) -> Response:
        data = UpgradeBatchResumeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        batch = upgrades.upgrade_batch_resume(batch=_batch(request, batch_id),
                                              retry_failed=data.validated_data["retry_failed"],
                                              requested_by=request.user, request=request)
        return Response(batch_body(batch))


class UpgradeBatchCancelApi(APIView):
    @extend_schema(operation_id="upgrades_cancel",
                   summary="Cancel an upgrade batch (upgrades already sent run to their end)",
                   request=None, responses={200: UpgradeBatchSerializer, 409: ApiErrorSerializer})
    def post(self, request: Request, batch_id: Any) -> Response:
        batch = upgrades.upgrade_batch_cancel(batch=_batch(request, batch_id), requested_by=request.user,
                                              request=request)
        return Response(batch_body(batch))
