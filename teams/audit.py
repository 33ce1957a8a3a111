"""Writing audit records (shared by every app)."""

from __future__ import annotations

from typing import Any

from teams.models import AuditRecord


def request_origin(request: Any) -> tuple[str | None, str | None]:
    """The client address and the request id of an HTTP request (DRF or Django), or (None, None)."""
    if request is None:
        return None, None
    meta = getattr(request, "META", {}) or {}
    request_id = getattr(request, "request_id", None) or meta.get("HTTP_X_REQUEST_ID")
    return meta.get("REMOTE_ADDR") or None, (str(request_id)[:100] if request_id else None)


def audit(
    *,
    action: str,
    target: Any,
    actor: Any = None,
    summary: str = "",
    request: Any = None,
    ip: str | None = None,
    request_id: str | None = None,
) -> AuditRecord:
    """Record that `actor` (None: the portal itself) did `action` to `target`. The summary must never contain a
    secret. The address and request id come from `request` when given, else from `ip` / `request_id`."""
    if request is not None:
        ip, request_id = request_origin(request)
    user = actor if getattr(actor, "is_authenticated", False) else None
    if hasattr(target, "_meta"):
        target_type, target_id = target._meta.model_name, str(target.pk)
    elif isinstance(target, tuple):
        target_type, target_id = str(target[0]), str(target[1])
    else:
        target_type, target_id = type(target).__name__.lower(), str(target)
    return AuditRecord.objects.create(
        actor=user, actor_name=user.get_username() if user else "", action=action, target_type=target_type,
        target_id=target_id, summary=summary[:2000], ip=ip, request_id=request_id,
    )
