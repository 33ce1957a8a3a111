from django.urls import path

from teams import apis

urlpatterns = [
    path("teams/", apis.TeamListApi.as_view(), name="team-list-api"),
    path("teams/<uuid:team_id>/", apis.TeamDetailApi.as_view(), name="team-detail-api"),
    path("teams/<uuid:team_id>/members/", apis.TeamMembersApi.as_view(), name="team-members-api"),
    path("teams/<uuid:team_id>/members/<str:username>/", apis.TeamMemberDetailApi.as_view(),
         name="team-member-detail-api"),
    path("users/", apis.UserCreateApi.as_view(), name="user-create-api"),
    path("audit/", apis.AuditListApi.as_view(), name="audit-list-api"),
]
