"""REST API for instances and operations (API.md). Thin: parse, call one service, shape the answer."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from brokers.models import ServicePlan
from brokers.selectors import visible_plans
from catalog_portal.api import (
    Pagination,
    QueryBooleanField,
    StrictBooleanField,
    StrictCharField,
    StrictRegexField,
    errors,
    paginated,
    parse_query,
)
from catalog_portal.db import read_snapshot
from instances import selectors
from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from instances.schema_form import mask_secrets
from instances.sealed import mask_sealed
from instances.services.bindings import binding_create, binding_credentials, binding_delete, binding_gone
from instances.services.drift import cannot_ask, drift_adopt, drift_check, drift_reapply
from instances.services.instances import (
    instance_deprovision,
    instance_gone,
    instance_parameters_reveal,
    instance_provision,
    instance_retry,
    instance_update,
)
from instances.services.operations import operation_cancel
from instances.services.rotation import binding_rotate, rotation_status
from instances.services.validation import DNS_LABEL
from instances.states import BindingState, InstanceState, OpState

DNS_LABEL_PATTERN = DNS_LABEL.pattern.replace("^", r"\A", 1).removesuffix("$") + r"\Z"


def dns_label_field(**kwargs: Any) -> serializers.RegexField:
    """A Kubernetes DNS label (lowercase letters, digits and '-', at most 63 characters)."""
    return StrictRegexField(DNS_LABEL_PATTERN, max_length=63, **kwargs)


class DriftDifferenceSerializer(serializers.Serializer):
    field = serializers.ChoiceField(choices=["plan", "parameters", "maintenance_info", "dashboard_url"])
    portal = serializers.JSONField(allow_null=True, help_text="What the portal holds.")
    broker = serializers.JSONField(allow_null=True, help_text="What the broker said at the last check.")


class InstanceDriftSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField(allow_null=True, help_text="The last check that got an answer.")
    differences = DriftDifferenceSerializer(many=True, help_text="Empty when the broker holds what the portal holds.")
    error = serializers.CharField(allow_null=True, help_text="Why the last check got no answer, if it did not.")


def drift_body(instance: ServiceInstance) -> dict[str, Any] | None:
    if cannot_ask(instance) or (instance.drift is None and not instance.drift_error):
        return None
    return {"checked_at": instance.drift_checked_at, "differences": mask_sealed(instance.drift or []),
            "error": instance.drift_error or None}


def drift_reason(instance: ServiceInstance) -> str | None:
    reason = cannot_ask(instance)
    if reason:
        return reason
    if instance.drift is None and not instance.drift_error:
        return "Not checked at the broker yet."
    return None


class LastOperationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Operation
        fields = ["id", "type", "state", "description", "next_step", "error", "started_at", "updated_at"]


class InstanceSerializer(serializers.ModelSerializer):
    service = serializers.UUIDField(source="plan.offering_id")
    parameters = serializers.SerializerMethodField(
        help_text="Secret-like parameters (named like a password, token or key, or marked writeOnly / format "
                  "password in the plan's schema) are masked for everyone; see POST .../parameters/reveal/.")
    plan = serializers.UUIDField(source="plan_id")
    dashboard_url = serializers.SerializerMethodField()
    last_operation = serializers.SerializerMethodField()
    cleanup = serializers.SerializerMethodField()
    drift = serializers.SerializerMethodField()
    drift_reason = serializers.SerializerMethodField()

    class Meta:
        model = ServiceInstance
        fields = ["id", "name", "namespace", "service", "plan", "parameters", "dashboard_url", "state",
                  "last_operation", "cleanup", "drift", "drift_reason", "created_at", "updated_at"]

    @extend_schema_field(InstanceDriftSerializer(allow_null=True))
    def get_drift(self, instance: ServiceInstance) -> dict[str, Any] | None:
        body = drift_body(instance)
        return InstanceDriftSerializer(body).data if body is not None else None

    @extend_schema_field(serializers.CharField(allow_null=True, help_text=(
        "Why `drift` is null: the broker cannot be asked (the service is not instances_retrievable), or no check "
        "has answered yet.")))
    def get_drift_reason(self, instance: ServiceInstance) -> str | None:
        return drift_reason(instance)

    def get_dashboard_url(self, instance: ServiceInstance) -> str | None:
        return instance.dashboard_url or None

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_parameters(self, instance: ServiceInstance) -> dict[str, Any]:
        return mask_secrets(instance.plan.instance_create_schema, instance.parameters) or {}

    @extend_schema_field(LastOperationSerializer(allow_null=True))
    def get_last_operation(self, instance: ServiceInstance) -> dict[str, Any] | None:
        op = selectors.last_operation(instance)
        return LastOperationSerializer(op).data if op else None

    @extend_schema_field(LastOperationSerializer(allow_null=True))
    def get_cleanup(self, instance: ServiceInstance) -> dict[str, Any] | None:
        op = selectors.active_cleanup(instance)
        return LastOperationSerializer(op).data if op else None


class CallSerializer(serializers.ModelSerializer):
    class Meta:
        model = OperationCall
        fields = ["method", "path", "status", "duration_ms", "request_id", "at", "error"]


class OperationSerializer(serializers.ModelSerializer):
    calls = CallSerializer(many=True)

    class Meta:
        model = Operation
        fields = ["id", "type", "state", "instance", "binding", "description", "next_step", "error", "attempts",
                  "polls", "next_poll_at", "accepted_at", "started_at", "updated_at", "finished_at", "calls"]


def _instance_body(instance: ServiceInstance) -> dict[str, Any]:
    """The instance and its operations read from one snapshot (a worker may commit meanwhile)."""
    with read_snapshot():
        fresh = selectors.instance_list().filter(pk=instance.pk).first()
        if fresh is None:  # deleted already (a sync deprovision can finish before we answer)
            fresh = ServiceInstance.objects.prefetch_related("operations").get(pk=instance.pk)
        return InstanceSerializer(fresh).data


def _instance_to_change(request: Request, instance_id: Any) -> ServiceInstance:
    """The instance a PATCH or DELETE names; one deleted meanwhile is a 404 naming the operation that deleted it."""
    instance = selectors.instance_list(user=request.user).filter(pk=instance_id).first()
    if instance is not None:
        return instance
    deleted = selectors.instances_for_user(request.user).filter(pk=instance_id, state=InstanceState.DELETED).first()
    if deleted is not None:
        raise instance_gone(deleted)
    raise Http404


def _plan(plan_id: Any, user: Any, field: str = "plan") -> ServicePlan:
    """A plan `user` may see (a hidden one is "no such plan")."""
    plan = visible_plans(user).select_related("offering", "broker").filter(pk=plan_id).first()
    if plan is None:
        raise serializers.ValidationError({field: ["No such plan."]})
    return plan


@extend_schema_serializer(component_name="InstanceCreate")
class InstanceCreateSerializer(serializers.Serializer):
    name = dns_label_field(help_text="A DNS label, unique in its namespace.")
    namespace = dns_label_field(help_text="A namespace of one of your teams (a DNS label).")
    plan = serializers.UUIDField(help_text="A plan you may see.")
    parameters = serializers.DictField(required=False, default=dict,
                                       help_text="Checked against the plan's instance_create schema.")


class InstanceQuerySerializer(serializers.Serializer):
    namespace = dns_label_field(required=False, help_text="Only instances in this namespace.")
    service = serializers.UUIDField(required=False, help_text="Only instances of this service.")
    plan = serializers.UUIDField(required=False, help_text="Only instances of this plan.")
    state = serializers.ChoiceField(choices=[s for s in InstanceState.values if s != "deleted"], required=False,
                                    help_text="Only instances in this state.")


class InstanceListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=InstanceSerializer(many=True), parameters=[InstanceQuerySerializer])
    def get(self, request: Request) -> Response:
        """List the instances you may see"""
        filters = parse_query(request, InstanceQuerySerializer)
        with read_snapshot():
            query = selectors.instance_list(user=request.user, **filters)
            return paginated(query, request, self, InstanceSerializer)

    @extend_schema(request=InstanceCreateSerializer, responses={202: InstanceSerializer, **errors(409)})
    def post(self, request: Request) -> Response:
        """Provision an instance

        Answers 202 at once; poll the instance until `last_operation.state` is `succeeded` or `failed`. The
        parameters are checked against the plan's schema first (400 with the schema's errors); 403 when you may
        not provision in the namespace; 409 when the name is taken in the namespace."""
        data = InstanceCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        instance = instance_provision(plan=_plan(values["plan"], request.user), name=values["name"],
                                      namespace=values["namespace"], parameters=values["parameters"],
                                      requested_by=request.user, request=request)
        return Response(_instance_body(instance), status=status.HTTP_202_ACCEPTED)


@extend_schema_serializer(component_name="InstanceUpdate")
class InstanceUpdateSerializer(serializers.Serializer):
    plan = serializers.UUIDField(required=False, help_text="Move to this plan (one you may see).")
    parameters = serializers.DictField(required=False,
                                       help_text="Changed parameters (checked against the plan's update schema).")
    upgrade = StrictBooleanField(required=False, default=False,
                                       help_text="Move to the plan's newer maintenance version.")


class DeprovisionQuerySerializer(serializers.Serializer):
    cascade = QueryBooleanField(required=False, default=False,
                                       help_text="true: unbind the instance's bindings first (409 otherwise).")


class InstanceDetailApi(APIView):

    @extend_schema(responses=InstanceSerializer)
    def get(self, request: Request, instance_id: Any) -> Response:
        """Read an instance"""
        with read_snapshot():
            instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
            return Response(InstanceSerializer(instance).data)

    @extend_schema(request=InstanceUpdateSerializer, responses={202: InstanceSerializer, **errors(409)})
    def patch(self, request: Request, instance_id: Any) -> Response:
        """Update an instance (plan, parameters, maintenance version)

        Answers 202; poll the instance. 409 while another operation is active on it or it is not ready; 404 (code
        `gone`, naming the operation) when it was deleted meanwhile."""
        instance = _instance_to_change(request, instance_id)
        data = InstanceUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        plan = _plan(values["plan"], request.user) if "plan" in values else None
        instance = instance_update(instance=instance, plan=plan, parameters=values.get("parameters"),
                                   upgrade=values["upgrade"], requested_by=request.user, request=request)
        return Response(_instance_body(instance), status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={202: InstanceSerializer, **errors(409)}, parameters=[DeprovisionQuerySerializer])
    def delete(self, request: Request, instance_id: Any) -> Response:
        """Deprovision an instance

        Answers 202; once the broker confirms, the instance answers 404. 409 while bindings exist (unless
        `?cascade=true`) or another operation is active on it; 404 (code `gone`, naming the operation) when it was
        deleted meanwhile."""
        cascade = parse_query(request, DeprovisionQuerySerializer)["cascade"]
        instance = instance_deprovision(instance=_instance_to_change(request, instance_id),
                                        requested_by=request.user, cascade=cascade, request=request)
        return Response(_instance_body(instance), status=status.HTTP_202_ACCEPTED)


class InstanceRetryApi(APIView):
    @extend_schema(
        operation_id="instances_retry",
        summary="Retry the instance's failed operation",
        description=(
            "Tries the instance's last provision, update or deprovision again when it failed, as the OSB spec "
            "allows:\n\n"
            "* **failed provision**: provisioned anew with the same name, namespace, plan and parameters under a "
            "**new instance id** (platforms should not reuse instance ids). Allowed once the broker holds nothing "
            "of the failed one: it refused the request, or the clean-up after it (orphan mitigation) succeeded. "
            "The failed instance becomes `deleted` (its operations stay readable); the answer is the **new** "
            "instance: follow its `id`.\n"
            "* **failed update**: the same update is sent again, unless the broker answered "
            "`update_repeatable: false` or the instance is no longer usable.\n"
            "* **failed deprovision**: the deprovision is requested again (409 while bindings exist).\n\n"
            "No body. Audited."
        ),
        request=None,
        responses={202: InstanceSerializer, **errors(400, 403, 409)},
    )
    def post(self, request: Request, instance_id: Any) -> Response:
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        retried = instance_retry(instance=instance, requested_by=request.user, request=request)
        return Response(_instance_body(retried), status=status.HTTP_202_ACCEPTED)


class InstanceParametersRevealSerializer(serializers.Serializer):
    parameters = serializers.DictField()


class InstanceParametersRevealApi(APIView):
    @extend_schema(
        summary="Reveal an instance's secret parameters",
        description="The instance's parameters with the secret-like ones (masked everywhere else) in clear. Needs "
                    "the developer role in the instance's namespace (or platform admin). No body. Audited "
                    "(`instance.parameters.reveal`); answered with `Cache-Control: no-store`.",
        request=None, responses={200: InstanceParametersRevealSerializer},
    )
    def post(self, request: Request, instance_id: Any) -> Response:
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        parameters = instance_parameters_reveal(instance=instance, user=request.user, request=request)
        response = Response({"parameters": parameters})
        add_never_cache_headers(response)
        return response
class InstanceRefreshApi(APIView):
    @extend_schema(
        operation_id="instances_refresh",
        summary="Check the instance at its broker (drift)",
        description=("Starts a check: a worker fetches the instance from its broker (`GET /v2/service_instances/:id`, "
                     "recorded like every OSB call, as an operation of type `refresh`) and compares plan, parameters, "
                     "maintenance_info and dashboard_url with what the portal holds; `drift` shows the result once "
                     "the operation finished. 400 when the broker cannot be asked (not instances_retrievable), 409 "
                     "while another operation runs. No body."),
        request=None, responses={202: InstanceSerializer, **errors(400, 409)},
    )
    def post(self, request: Request, instance_id: Any) -> Response:
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        drift_check(instance=instance, requested_by=request.user)
        return Response(_instance_body(instance), status=status.HTTP_202_ACCEPTED)


class InstanceDriftAdoptApi(APIView):
    @extend_schema(
        operation_id="instances_drift_adopt",
        summary="Adopt the broker's values",
        description=("The portal's record takes the values the broker said at the last check (plan, parameters, "
                     "maintenance version, dashboard URL). Nothing is sent to the broker. Audited. No body."),
        request=None, responses={200: InstanceSerializer, **errors(400, 409)},
    )
    def post(self, request: Request, instance_id: Any) -> Response:
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        instance = drift_adopt(instance=instance, requested_by=request.user, request=request)
        return Response(_instance_body(instance))


class InstanceDriftReapplyApi(APIView):
    @extend_schema(
        operation_id="instances_drift_reapply",
        summary="Re-apply the portal's values at the broker",
        description=("An ordinary update operation sends the portal's plan, parameters and maintenance version where "
                     "they differ from the broker's (with the broker's as `previous_values`). A differing dashboard "
                     "URL can only be adopted. Audited. No body."),
        request=None, responses={202: InstanceSerializer, **errors(400, 409)},
    )
    def post(self, request: Request, instance_id: Any) -> Response:
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        instance = drift_reapply(instance=instance, requested_by=request.user, request=request)
        return Response(_instance_body(instance), status=status.HTTP_202_ACCEPTED)


class InstanceOperationsApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=OperationSerializer(many=True))
    def get(self, request: Request, instance_id: Any) -> Response:
        """List an instance's operations (and its bindings'), newest first"""
        instance = get_object_or_404(selectors.instance_list(user=request.user), pk=instance_id)
        return paginated(selectors.operation_list(instance=str(instance.pk)), request, self, OperationSerializer)


class OperationQuerySerializer(serializers.Serializer):
    instance = serializers.UUIDField(required=False, help_text="Only operations on this instance.")
    binding = serializers.UUIDField(required=False, help_text="Only operations on this binding.")
    state = serializers.ChoiceField(choices=OpState.values, required=False, help_text="Only operations in this state.")


class OperationListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=OperationSerializer(many=True), parameters=[OperationQuerySerializer])
    def get(self, request: Request) -> Response:
        """List the operations you may see, newest first"""
        values = parse_query(request, OperationQuerySerializer)
        query = selectors.operation_list(user=request.user, instance=values.get("instance"),
                                         binding=values.get("binding"), state=values.get("state"))
        return paginated(query, request, self, OperationSerializer)


class OperationDetailApi(APIView):
    @extend_schema(responses=OperationSerializer)
    def get(self, request: Request, operation_id: Any) -> Response:
        """Read an operation, with every OSB call it made"""
        operations = selectors.operation_list(user=request.user)
        return Response(OperationSerializer(get_object_or_404(operations, pk=operation_id)).data)


# --- bindings ------------------------------------------------------------------------------------------


class PublicationSerializer(serializers.Serializer):
    state = serializers.CharField()
    message = serializers.CharField()
    published_at = serializers.DateTimeField(allow_null=True)


class BindingRotationSerializer(serializers.Serializer):
    """How far the rotation this binding is part of (as predecessor or successor) has got."""

    state = serializers.ChoiceField(
        choices=["", "creating_successor", "successor_failed", "publishing", "grace_period",
                 "unbinding_predecessor", "done"],
        help_text="Empty when the binding was never rotated. Otherwise: the successor is being created, failed, its "
        "credentials are being written into the Secret, the predecessor stays bound until unbind_predecessor_at, "
        "is being unbound, or all is done.")
    unbind_predecessor_at = serializers.DateTimeField(
        allow_null=True, help_text="When the predecessor is unbound (the end of the grace period).")
    linked = serializers.BooleanField(
        allow_null=True, help_text="Whether the broker links the pair (the plan is binding_rotatable and the "
        "successor was created with predecessor_binding_id); null when there is no rotation.")
    rotate_at = serializers.DateTimeField(
        allow_null=True, help_text="When the portal rotates this binding on its own (the broker's renew_before, "
        "else 80 % of the lifetime to expires_at).")
    can_rotate = serializers.BooleanField()
    refusal = serializers.CharField(help_text="Why the binding cannot be rotated now (empty when it can).")
    warning = serializers.CharField(help_text="Set when expiry is near and the binding cannot be rotated.")


class BindingSerializer(serializers.ModelSerializer):
    instance = serializers.UUIDField(source="instance_id")
    last_operation = serializers.SerializerMethodField()
    cleanup = serializers.SerializerMethodField()
    publication = serializers.SerializerMethodField()
    parameters = serializers.SerializerMethodField(help_text="Secret-like parameters are masked for everyone.")
    predecessor = serializers.UUIDField(source="predecessor_id", allow_null=True, read_only=True,
                                        help_text="The binding this one replaces (rotation).")
    successor = serializers.SerializerMethodField()
    expires_at = serializers.SerializerMethodField()
    rotation = serializers.SerializerMethodField()
    drift = serializers.SerializerMethodField()

    class Meta:
        model = ServiceBinding
        fields = ["id", "instance", "name", "namespace", "secret_name", "parameters", "state", "last_operation",
                  "cleanup", "publication", "predecessor", "successor", "expires_at", "rotation", "metadata",
                  "drift", "created_at", "updated_at"]

    def _rotation(self, binding: ServiceBinding) -> dict[str, Any]:
        cached = getattr(binding, "_rotation_status", None)
        if cached is None:
            cached = binding._rotation_status = rotation_status(binding)
        return cached

    @extend_schema_field(serializers.UUIDField(allow_null=True, help_text="The binding that replaces this one."))
    def get_successor(self, binding: ServiceBinding) -> Any:
        return self._rotation(binding)["successor"]

    @extend_schema_field(serializers.DateTimeField(allow_null=True, help_text="The broker's expires_at."))
    def get_expires_at(self, binding: ServiceBinding) -> Any:
        expires = self._rotation(binding)["expires_at"]
        return serializers.DateTimeField().to_representation(expires) if expires else None

    @extend_schema_field(BindingRotationSerializer)
    def get_rotation(self, binding: ServiceBinding) -> dict[str, Any]:
        status = self._rotation(binding)
        return BindingRotationSerializer({**status, "state": status["step"],
                                          "unbind_predecessor_at": status["retire_at"]}).data

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_parameters(self, binding: ServiceBinding) -> dict[str, Any]:
        return mask_secrets(binding.instance.plan.binding_create_schema, binding.parameters) or {}
    @extend_schema_field(InstanceDriftSerializer(allow_null=True, help_text=(
        "What the last check at the broker found (its parameters); null when the service is not "
        "bindings_retrievable or no check has answered yet.")))
    def get_drift(self, binding: ServiceBinding) -> dict[str, Any] | None:
        if binding.drift is None and not binding.drift_error:
            return None
        return InstanceDriftSerializer({"checked_at": binding.drift_checked_at, "differences": binding.drift or [],
                                        "error": binding.drift_error or None}).data

    @extend_schema_field(LastOperationSerializer(allow_null=True))
    def get_last_operation(self, binding: ServiceBinding) -> dict[str, Any] | None:
        op = selectors.binding_last_operation(binding)
        return LastOperationSerializer(op).data if op else None

    @extend_schema_field(LastOperationSerializer(allow_null=True))
    def get_cleanup(self, binding: ServiceBinding) -> dict[str, Any] | None:
        op = selectors.binding_active_cleanup(binding)
        return LastOperationSerializer(op).data if op else None

    @extend_schema_field(PublicationSerializer)
    def get_publication(self, binding: ServiceBinding) -> dict[str, Any]:
        state = binding.publication_state
        if state == "removed":
            state = "pending"
        return {"state": state, "message": binding.publication_message, "published_at": binding.published_at}


class CredentialsSerializer(serializers.Serializer):
    credentials = serializers.DictField()
    syslog_drain_url = serializers.CharField(allow_null=True)
    route_service_url = serializers.CharField(allow_null=True)
    volume_mounts = serializers.ListField(child=serializers.DictField())
    endpoints = serializers.ListField(child=serializers.DictField())


def _binding_body(binding: ServiceBinding) -> dict[str, Any]:
    with read_snapshot():
        fresh = selectors.binding_list().filter(pk=binding.pk).first()
        if fresh is None:
            fresh = ServiceBinding.objects.prefetch_related("operations").get(pk=binding.pk)
        return BindingSerializer(fresh).data


def _binding_to_delete(request: Request, binding_id: Any) -> ServiceBinding:
    """The binding a DELETE names; one deleted meanwhile is a 404 naming the operation that deleted it."""
    binding = selectors.binding_list(user=request.user).filter(pk=binding_id).first()
    if binding is not None:
        return binding
    deleted = ServiceBinding.objects.filter(pk=binding_id, state=BindingState.DELETED).select_related("instance").first()
    if deleted is not None and selectors.instances_for_user(request.user).filter(pk=deleted.instance_id).exists():
        raise binding_gone(deleted)
    raise Http404


@extend_schema_serializer(component_name="BindingCreate")
class BindingCreateSerializer(serializers.Serializer):
    instance = serializers.UUIDField(help_text="An instance you may see.")
    name = dns_label_field(help_text="A DNS label, unique in its namespace.")
    namespace = dns_label_field(required=False, allow_null=True, help_text="Default: the instance's namespace.")
    secret_name = StrictCharField(max_length=253, required=False, allow_null=True,
                                        help_text="The Kubernetes Secret's name. Default: the binding's name.")
    parameters = serializers.DictField(required=False, default=dict,
                                       help_text="Checked against the plan's binding_create schema.")


class BindingQuerySerializer(serializers.Serializer):
    instance = serializers.UUIDField(required=False, help_text="Only bindings of this instance.")
    namespace = dns_label_field(required=False, help_text="Only bindings in this namespace.")


class BindingListApi(APIView):
    pagination_class = Pagination

    @extend_schema(parameters=[BindingQuerySerializer], responses=BindingSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List the bindings you may see"""
        filters = parse_query(request, BindingQuerySerializer)
        with read_snapshot():
            query = selectors.binding_list(user=request.user, **filters)
            return paginated(query, request, self, BindingSerializer)

    @extend_schema(request=BindingCreateSerializer, responses={202: BindingSerializer, **errors(409)})
    def post(self, request: Request) -> Response:
        """Bind an instance

        Answers 202; poll the binding. Its credentials are read from `GET /api/v1/bindings/{id}/credentials/`
        and published as the binding's Secret. 409 while the instance is not ready or the name is taken."""
        data = BindingCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        instance = selectors.instance_list(user=request.user).filter(pk=values["instance"]).first()
        if instance is None:
            raise serializers.ValidationError({"instance": ["No such instance."]})
        binding = binding_create(instance=instance, name=values["name"], namespace=values.get("namespace"),
                                 secret_name=values.get("secret_name"), parameters=values["parameters"],
                                 requested_by=request.user, request=request)
        return Response(_binding_body(binding), status=status.HTTP_202_ACCEPTED)


class BindingDetailApi(APIView):
    @extend_schema(responses=BindingSerializer)
    def get(self, request: Request, binding_id: Any) -> Response:
        """Read a binding (never its credentials)"""
        with read_snapshot():
            bindings = selectors.binding_list(user=request.user)
            return Response(BindingSerializer(get_object_or_404(bindings, pk=binding_id)).data)

    @extend_schema(responses={202: BindingSerializer, **errors(409)})
    def delete(self, request: Request, binding_id: Any) -> Response:
        """Unbind

        Answers 202; once the broker confirms, the binding answers 404 and its Secret is gone. 409 while another
        operation is active on it; 404 (code `gone`, naming the operation) when it was deleted meanwhile."""
        binding = binding_delete(binding=_binding_to_delete(request, binding_id), requested_by=request.user,
                                 request=request)
        return Response(_binding_body(binding), status=status.HTTP_202_ACCEPTED)


class BindingRotateApi(APIView):
    @extend_schema(
        request=None, responses={202: BindingSerializer, **errors(409)}, operation_id="bindings_rotate",
        summary="Rotate a binding's credentials",
        description="Creates a successor binding (sent with predecessor_binding_id when the plan is "
        "binding_rotatable; otherwise an ordinary new binding the broker does not link), writes its credentials "
        "into the same Kubernetes Secret in one update, and unbinds this binding after "
        "BINDING_ROTATION_GRACE_SECONDS. Answers the successor. 409 when the binding cannot be rotated now.",
    )
    def post(self, request: Request, binding_id: Any) -> Response:
        binding = get_object_or_404(selectors.binding_list(user=request.user), pk=binding_id)
        successor = binding_rotate(binding=binding, requested_by=request.user, request=request)
        return Response(_binding_body(successor), status=status.HTTP_202_ACCEPTED)


class BindingCredentialsApi(APIView):
    @extend_schema(responses={200: CredentialsSerializer, **errors(403, 409)})
    def get(self, request: Request, binding_id: Any) -> Response:
        """Read a binding's credentials

        Audited. 403 for those who may see the binding but not its credentials; 409 while it has none yet."""
        binding = get_object_or_404(selectors.binding_list(user=request.user), pk=binding_id)
        response = Response(binding_credentials(binding=binding, user=request.user, request=request))
        add_never_cache_headers(response)  # Cache-Control: no-store: never keep credentials in a cache
        return response


class OperationCancelApi(APIView):
    @extend_schema(
        request=None, responses={200: OperationSerializer, **errors(409)}, summary="Cancel an operation",
        description=(
            "Stop an operation. One the broker has not accepted yet (it is still being sent: the broker was "
            "unreachable or answered 422 ConcurrencyError): developers of its namespace; it fails with nothing to "
            "clean up, and the instance or binding is free for the next request. A cleanup at the broker (orphan "
            "mitigation, which otherwise retries until the broker confirms): platform admins only. 409 once the "
            "broker accepted the operation, when it is over, or while a worker is sending it at this moment."
        ),
    )
    def post(self, request: Request, operation_id: Any) -> Response:
        operation = get_object_or_404(selectors.operation_list(user=request.user), pk=operation_id)
        cancelled = operation_cancel(operation=operation, requested_by=request.user, request=request)
        return Response(OperationSerializer(cancelled).data)
