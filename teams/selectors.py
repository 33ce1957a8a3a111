"""Permission-aware reads: teams and their members, and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from catalog_portal.exceptions import ApplicationError, Forbidden, NotFound
from teams import access
from teams.models import AuditRecord, Membership, Team

# --- teams ----------------------------------------------------------------------------------------------


def team_list_for_user(*, user: Any) -> QuerySet[Team]:
    """The teams `user` may see: all for platform admins (and internal code: None), else the teams they are in."""
    members = Membership.objects.select_related("user").order_by("user__username")
    query = Team.objects.prefetch_related("namespaces", Prefetch("memberships", queryset=members))
    teams = None if user is None else access.team_ids_for(user)
    return query if teams is None else query.filter(pk__in=teams)


def team_get_for_user(*, user: Any, team_id: Any) -> Team:
    team = team_list_for_user(user=user).filter(pk=team_id).first()
    if team is None:
        raise NotFound("No such team.")
    return team


def role_in(team: Team, user: Any) -> str | None:
    """`user`'s role in `team`, or None."""
    return Membership.objects.filter(team=team, user_id=getattr(user, "pk", None)).values_list("role", flat=True).first()


def can_manage_members(team: Team, user: Any) -> bool:
    return access.is_platform_admin(user) or role_in(team, user) == Membership.Role.ADMIN


# --- the audit log --------------------------------------------------------------------------------------


def parse_moment(value: str | None, *, field: str, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 timestamp or date (a date means its start, or its end for `until`); naive means UTC."""
    if not value:
        return None
    try:
        moment = parse_datetime(value)
        day = parse_date(value) if moment is None else None
    except ValueError:  # well-formed but out of range, e.g. month 13
        moment = day = None
    if moment is None:
        if day is None:
            raise ApplicationError(f"Invalid {field}.", fields={field: [
                "Use an ISO 8601 date or timestamp, e.g. 2025-01-31 or 2025-01-31T12:00:00Z."]})
        moment = datetime.combine(day, time.max if end_of_day else time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def audit_list(
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditRecord]:
    """Audit records, newest first. `action` matches exactly or as a prefix ("instance" finds instance.*);
    `target` is an id or "type:id"; `actor` a username ("-" finds the portal's own actions)."""
    query = AuditRecord.objects.all()
    if actor == "-":
        query = query.filter(actor_name="")
    elif actor:
        query = query.filter(actor_name=actor)
    if action:
        query = query.filter(Q(action=action) | Q(action__startswith=action.rstrip(".") + "."))
    if target:
        kind, _, ident = target.partition(":")
        query = query.filter(target_type=kind, target_id=ident) if ident else query.filter(target_id=target)
    if since:
        query = query.filter(at__gte=since)
    if until:
        query = query.filter(at__lte=until)
    return query.order_by("-at", "-id")


def audit_list_for_user(*, user: Any, **filters: Any) -> QuerySet[AuditRecord]:
    """The audit log is for platform admins only."""
    if not access.is_platform_admin(user):
        raise Forbidden("Only platform admins may read the audit log.")
    return audit_list(**filters)
