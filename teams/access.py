"""Who may see and do what: platform admins everything; team members in their teams' namespaces by role.

Roles rank viewer < developer < admin: a developer may do what a viewer may, a team admin what a developer may.
`None` from `namespaces_for` / `team_ids_for` means "all" (platform admins, and internal code with no user).
"""

from __future__ import annotations

from typing import Any

from catalog_portal.exceptions import Forbidden, NotFound
from teams.models import Membership, TeamNamespace

RANK = {Membership.Role.VIEWER: 1, Membership.Role.DEVELOPER: 2, Membership.Role.ADMIN: 3}

# The role each action needs in the namespace it touches.
ACTION_ROLES = {
    "view": Membership.Role.VIEWER,
    "provision": Membership.Role.DEVELOPER,
    "update": Membership.Role.DEVELOPER,
    "deprovision": Membership.Role.DEVELOPER,
    "bind": Membership.Role.DEVELOPER,
    "unbind": Membership.Role.DEVELOPER,
    "reveal": Membership.Role.DEVELOPER,
    "manage": Membership.Role.ADMIN,
}


def is_platform_admin(user: Any) -> bool:
    return bool(getattr(user, "is_authenticated", False) and (user.is_staff or user.is_superuser))


def _roles_at_least(role: str) -> list[str]:
    return [r for r, rank in RANK.items() if rank >= RANK[Membership.Role(role)]]


def team_ids_for(user: Any, role: str = Membership.Role.VIEWER) -> set[Any] | None:
    """The teams in which `user` has at least `role`; None = all (platform admins)."""
    if is_platform_admin(user):
        return None
    if not getattr(user, "is_authenticated", False):
        return set()
    # No order (a set): the model's ordering would join the teams and users tables for nothing.
    rows = Membership.objects.filter(user=user, role__in=_roles_at_least(role)).order_by().values_list("team_id", flat=True)
    return set(rows)


def namespaces_for(user: Any, role: str = Membership.Role.VIEWER) -> set[str] | None:
    """The namespaces in which `user` has at least `role`; None = all (platform admins)."""
    if is_platform_admin(user):
        return None
    if not getattr(user, "is_authenticated", False):
        return set()
    rows = TeamNamespace.objects.filter(
        team__memberships__user=user, team__memberships__role__in=_roles_at_least(role)
    ).values_list("namespace", flat=True)
    return set(rows)


def can(user: Any, action: str, namespace: str) -> bool:
    """May `user` do `action` ("view", "provision", "bind", "reveal", ...) in `namespace`?"""
    allowed = namespaces_for(user, ACTION_ROLES[action])
    return allowed is None or namespace in allowed


def team_names_for(user: Any) -> list[str]:
    """Names of the teams `user` belongs to (any role), sorted: sent to brokers as identity groups."""
    if not getattr(user, "pk", None):
        return []
    return sorted(Membership.objects.filter(user=user).values_list("team__name", flat=True))


def require(user: Any, action: str, namespace: str, *, what: str) -> None:
    """Raise unless `user` may do `action` on `what` (e.g. "instance 'team-a/db'") in `namespace`.

    Someone who cannot even see it gets NotFound (other teams' objects are not acknowledged); a viewer gets
    Forbidden. `user` None is the portal itself (tasks, the sweeper), which may do anything.
    """
    if user is None:
        return
    if not can(user, "view", namespace):
        raise NotFound(f"No such {what.split(' ', 1)[0]}.")
    if not can(user, action, namespace):
        raise Forbidden(
            f"You cannot {action} {what}: that needs the developer role in namespace '{namespace}', and your role "
            "there lets you only look.", namespace=namespace, role=ACTION_ROLES[action],
        )


def require_namespace(user: Any, action: str, namespace: str, *, field: str = "namespace") -> None:
    """Raise Forbidden (with a field error) unless `user` may `action` ("provision", "bind") in `namespace`."""
    if user is None or can(user, action, namespace):
        return
    message = (f"You cannot {action} in namespace '{namespace}': it is not a namespace of a team in which you "
               "are a developer.")
    raise Forbidden(message, fields={field: [message]}, namespace=namespace, role=ACTION_ROLES[action])


def who_can_grant(namespace: str | None) -> tuple[str | None, list[str]]:
    """The team that owns `namespace` and the usernames of its team admins (who may give someone a role there);
    (None, []) when no team owns it (then only platform admins can)."""
    owner = TeamNamespace.objects.filter(namespace=namespace).select_related("team").first() if namespace else None
    if owner is None:
        return None, []
    admins = Membership.objects.filter(team=owner.team, role=Membership.Role.ADMIN).order_by("user__username")
    return owner.team.name, list(admins.values_list("user__username", flat=True))
