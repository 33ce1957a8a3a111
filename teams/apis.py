"""REST API for teams, users and the audit log (API.md). Thin: parse, call one service or selector, shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog_portal.api import Pagination, paginated, query_param
from catalog_portal.exceptions import Forbidden
from teams import access, selectors, services
from teams.models import AuditRecord, Membership, Team

# --- teams ---------------------------------------------------------------------------------------------


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    role = serializers.CharField()


class TeamSerializer(serializers.ModelSerializer):
    namespaces = serializers.SerializerMethodField()
    members = MemberSerializer(source="memberships", many=True)

    class Meta:
        model = Team
        fields = ["id", "name", "namespaces", "members", "created_at"]

    def get_namespaces(self, team: Team) -> list[str]:
        return sorted(row.namespace for row in team.namespaces.all())


class TeamInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    namespaces = serializers.ListField(child=serializers.CharField(max_length=63), required=False)


def _team_body(team: Team) -> dict[str, Any]:
    return TeamSerializer(selectors.team_list_for_user(user=None).get(pk=team.pk)).data


class TeamListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=TeamSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated(selectors.team_list_for_user(user=request.user), request, self, TeamSerializer)

    @extend_schema(request=TeamInputSerializer, responses={201: TeamSerializer})
    def post(self, request: Request) -> Response:
        if not access.is_platform_admin(request.user):  # before parsing: others learn nothing from validation
            raise Forbidden("Only platform admins create teams.")
        data = TeamInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_create(requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team), status=status.HTTP_201_CREATED)


class TeamDetailApi(APIView):
    @extend_schema(responses=TeamSerializer)
    def get(self, request: Request, team_id: Any) -> Response:
        return Response(TeamSerializer(selectors.team_get_for_user(user=request.user, team_id=team_id)).data)

    @extend_schema(request=TeamInputSerializer(partial=True), responses=TeamSerializer)
    def patch(self, request: Request, team_id: Any) -> Response:
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        data = TeamInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        team = services.team_update(team=team, requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_id: Any) -> Response:
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        services.team_delete(team=team, requested_by=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMembersApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Membership.Role.values)

    @extend_schema(request=InputSerializer, responses={201: TeamSerializer, 200: TeamSerializer})
    def post(self, request: Request, team_id: Any) -> Response:
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        existed = Membership.objects.filter(team=team, user__username=data.validated_data["username"]).exists()
        services.team_member_set(team=team, requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team), status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


class TeamMemberDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_id: Any, username: str) -> Response:
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        services.team_member_remove(team=team, username=username, requested_by=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- users ---------------------------------------------------------------------------------------------


class UserCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
        email = serializers.EmailField(required=False, allow_blank=True, default="")
        password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        username = serializers.CharField()
        email = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        if not access.is_platform_admin(request.user):
            raise Forbidden("Only platform admins create users.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(requested_by=request.user, request=request, **data.validated_data)
        return Response(self.OutputSerializer(user).data, status=status.HTTP_201_CREATED)


# --- audit ---------------------------------------------------------------------------------------------


class AuditRecordSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = AuditRecord
        fields = ["id", "at", "actor", "action", "target_type", "target_id", "summary", "ip", "request_id"]

    def get_actor(self, record: AuditRecord) -> str | None:
        return record.actor_name or None


class AuditListApi(APIView):
    pagination_class = Pagination

    @extend_schema(
        responses=AuditRecordSerializer(many=True),
        parameters=[
            query_param("actor", "Username of who acted ('-': the portal itself)."),
            query_param("action", "An action (instance.create) or a prefix of actions (instance)."),
            query_param("target", "A target id, or type:id (servicebinding:<uuid>)."),
            query_param("since", "ISO 8601 date or timestamp: records at or after it."),
            query_param("until", "ISO 8601 date or timestamp: records at or before it."),
        ],
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        query = selectors.audit_list_for_user(
            user=request.user, actor=params.get("actor"), action=params.get("action"), target=params.get("target"),
            since=selectors.parse_moment(params.get("since"), field="since"),
            until=selectors.parse_moment(params.get("until"), field="until", end_of_day=True),
        )
        return paginated(query, request, self, AuditRecordSerializer)
