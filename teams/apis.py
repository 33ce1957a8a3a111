"""REST API for teams, users and the audit log (API.md). Thin: parse, call one service or selector, shape."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog_portal.api import Pagination, StrictCharField, StrictRegexField, errors, paginated, parse_query
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


@extend_schema_serializer(component_name="TeamWrite")
class TeamInputSerializer(serializers.Serializer):
    name = StrictCharField(max_length=100)
    namespaces = serializers.ListField(child=StrictCharField(max_length=63), required=False,
                                      help_text="Kubernetes namespaces (DNS labels), each of at most one team.")


def _team_body(team: Team) -> dict[str, Any]:
    return TeamSerializer(selectors.team_list_for_user(user=None).get(pk=team.pk)).data


class TeamListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=TeamSerializer(many=True))
    def get(self, request: Request) -> Response:
        """List teams (platform admins: all; others: their own)"""
        return paginated(selectors.team_list_for_user(user=request.user), request, self, TeamSerializer)

    @extend_schema(request=TeamInputSerializer, responses={201: TeamSerializer, **errors(409)})
    def post(self, request: Request) -> Response:
        """Create a team

        Platform admins. A namespace belongs to at most one team (400 otherwise); 409 when the name is taken."""
        if not access.is_platform_admin(request.user):  # before parsing: others learn nothing from validation
            raise Forbidden("Only platform admins create teams.")
        data = TeamInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_create(requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team), status=status.HTTP_201_CREATED)


class TeamDetailApi(APIView):
    @extend_schema(responses=TeamSerializer)
    def get(self, request: Request, team_id: Any) -> Response:
        """Read a team"""
        return Response(TeamSerializer(selectors.team_get_for_user(user=request.user, team_id=team_id)).data)

    @extend_schema(request=TeamInputSerializer(partial=True), responses={200: TeamSerializer, **errors(409)})
    def patch(self, request: Request, team_id: Any) -> Response:
        """Rename a team or change its namespaces

        Platform admins. Only the fields given change."""
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        data = TeamInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        team = services.team_update(team=team, requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team))

    @extend_schema(responses={204: None, **errors(409)})
    def delete(self, request: Request, team_id: Any) -> Response:
        """Delete a team

        Platform admins; refused (409) while instances live in its namespaces."""
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        services.team_delete(team=team, requested_by=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_serializer(component_name="TeamMemberCreate")
class TeamMemberCreateSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, help_text="An existing user.")
    role = serializers.ChoiceField(choices=Membership.Role.values)


class TeamMembersApi(APIView):
    @extend_schema(request=TeamMemberCreateSerializer, responses={201: TeamSerializer, 200: TeamSerializer})
    def post(self, request: Request, team_id: Any) -> Response:
        """Add a member to a team, or change a member's role

        Platform admins and the team's admins. 201 for a new member, 200 for a changed role."""
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        data = TeamMemberCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        existed = Membership.objects.filter(team=team, user__username=data.validated_data["username"]).exists()
        services.team_member_set(team=team, requested_by=request.user, request=request, **data.validated_data)
        return Response(_team_body(team), status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED)


class TeamMemberDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_id: Any, username: str) -> Response:
        """Remove a member from a team

        Platform admins and the team's admins."""
        team = selectors.team_get_for_user(user=request.user, team_id=team_id)
        services.team_member_remove(team=team, username=username, requested_by=request.user, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- users ---------------------------------------------------------------------------------------------


@extend_schema_serializer(component_name="UserCreate")
class UserCreateSerializer(serializers.Serializer):
    username = StrictRegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = StrictCharField(write_only=True, max_length=128, style={"input_type": "password"})


@extend_schema_serializer(component_name="User")
class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField()


class UserCreateApi(APIView):
    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer, **errors(403, 409)})
    def post(self, request: Request) -> Response:
        """Create a user

        Platform admins. 409 when the username is taken."""
        if not access.is_platform_admin(request.user):
            raise Forbidden("Only platform admins create users.")
        data = UserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.user_create(requested_by=request.user, request=request, **data.validated_data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


# --- audit ---------------------------------------------------------------------------------------------


class AuditRecordSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = AuditRecord
        fields = ["id", "at", "actor", "action", "target_type", "target_id", "summary", "ip", "request_id"]

    def get_actor(self, record: AuditRecord) -> str | None:
        return record.actor_name or None


@extend_schema_field({"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}]})
class MomentField(serializers.CharField):
    """An ISO 8601 date or timestamp (validated by teams.selectors.parse_moment)."""


class AuditQuerySerializer(serializers.Serializer):
    actor = serializers.CharField(required=False, max_length=150,
                                  help_text="Username of who acted ('-': the portal itself).")
    action = serializers.CharField(required=False, max_length=100,
                                   help_text="An action (instance.create) or a prefix of actions (instance).")
    target = serializers.CharField(required=False, max_length=300,
                                   help_text="A target id, or type:id (servicebinding:<uuid>).")
    since = MomentField(required=False, help_text="ISO 8601 date or timestamp: records at or after it.")
    until = MomentField(required=False, help_text="ISO 8601 date or timestamp: records at or before it.")


class AuditListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses={200: AuditRecordSerializer(many=True), **errors(403)}, parameters=[AuditQuerySerializer])
    def get(self, request: Request) -> Response:
        """List audit records, newest first

        Platform admins only (403 for others)."""
        params = parse_query(request, AuditQuerySerializer)
        query = selectors.audit_list_for_user(
            user=request.user, actor=params.get("actor"), action=params.get("action"), target=params.get("target"),
            since=selectors.parse_moment(params.get("since"), field="since"),
            until=selectors.parse_moment(params.get("until"), field="until", end_of_day=True),
        )
        return paginated(query, request, self, AuditRecordSerializer)
