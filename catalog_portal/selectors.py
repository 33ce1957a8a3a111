"""Permission-aware reads of the portal's own records (the audit log)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from catalog_portal.exceptions import ApplicationError
from catalog_portal.models import AuditRecord


def parse_moment(value: str | None, *, field: str, end_of_day: bool = False) -> datetime | None:
    """An ISO 8601 timestamp or date (a date means its start, or its end for `until`); naive means UTC."""
    if not value:
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
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
    from catalog_portal.access import is_platform_admin
    from catalog_portal.exceptions import Forbidden

    if not is_platform_admin(user):
        raise Forbidden("Only platform admins may read the audit log.")
    return audit_list(**filters)
