"""Teams own namespaces and have members with roles; the audit log records who did what, when, from where."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


class AuditRecord(models.Model):
    """One change or credential reveal. Never holds a secret."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=50)
    target_id = models.CharField(max_length=100, db_index=True)
    summary = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=100, null=True, blank=True)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'portal'} {self.action} {self.target_type}:{self.target_id}"


class Team(models.Model):
    """A group of people that owns namespaces: where its instances live and its Secrets are published."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("team-detail", args=[self.pk])


class TeamNamespace(models.Model):
    """A namespace belongs to at most one team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="namespaces")
    namespace = models.CharField(max_length=63, unique=True)

    class Meta:
        ordering = ["namespace"]

    def __str__(self) -> str:
        return self.namespace


class Membership(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer (read)"
        DEVELOPER = "developer", "Developer (provision, bind, reveal credentials)"
        ADMIN = "admin", "Team admin (also manages members)"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        ordering = ["team__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_user_in_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class TokenUse(models.Model):
    """When an API token was last used to sign in (written at most once a minute per token, so reading it is cheap
    and a busy script does not write on every request). Goes with its token: a replaced token starts unused."""

    token = models.OneToOneField("authtoken.Token", primary_key=True, on_delete=models.CASCADE,
                                 related_name="use")
    last_used_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"token of {self.token.user} last used {self.last_used_at:%Y-%m-%d %H:%M}"
