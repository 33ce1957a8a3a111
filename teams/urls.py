from django.urls import path

from teams import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("teams/", views.team_list, name="team-list"),
    path("teams/<uuid:team_id>/", views.team_detail, name="team-detail"),
    path("audit/", views.audit_list, name="audit-list"),
]
