"""Writing audit records (shared by every app)."""

from __future__ import annotations

from typing import Any

from catalog_portal.models import AuditRecord


def audit(*, action: str, target: Any, actor: Any = None, summary: str = "", request: Any = None) -> AuditRecord:
    """Record that `actor` did `action` to `target`. The summary must never contain a secret."""
    ip = request_id = None
    if request is not None:
        ip = request.META.get("REMOTE_ADDR")
        request_id = request.META.get("HTTP_X_REQUEST_ID")
    user = actor if getattr(actor, "is_authenticated", False) else None
    return AuditRecord.objects.create(
        actor=user, actor_name=user.get_username() if user else "", action=action,
        target_type=target._meta.model_name if hasattr(target, "_meta") else type(target).__name__.lower(),
        target_id=str(getattr(target, "pk", target)), summary=summary, ip=ip, request_id=request_id,
    )
