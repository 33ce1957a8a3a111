"""Binding rotation: a successor binding that takes over the predecessor's name and Secret, then the predecessor's
unbind after a grace period. Postgres holds every step, the sweeper (`binding_rotation_sweep`) acts on it.

1. `binding_rotate` creates the successor (same name, namespace, Secret, parameters, context) and its bind
   operation. When the plan is `binding_rotatable` (and the predecessor has not expired) the bind carries
   `predecessor_binding_id`: the broker links the two. Otherwise it is an ordinary new binding.
2. When the bind succeeds the engine hands the name and the Secret to the successor (`current`) in the transaction
   that records it, and the successor's publication replaces the Secret's content in one write (the Secret keeps
   its name; applications reading it see the new credentials).
3. Once the Secret carries the successor's credentials, the predecessor gets `retire_at` = now + the grace period
   (`BINDING_ROTATION_GRACE_SECONDS`); at that time the sweeper unbinds it (`binding_delete`, by the portal).
4. A binding whose broker sent `renew_before` or `expires_at` gets `rotate_at` (`rotate_at_for`): the sweeper
   rotates it then, automatically.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from brokers.osb import BindRequest
from catalog_portal.exceptions import ApplicationError, Conflict
from instances.models import Operation, ServiceBinding
from instances.services.bindings import _require_binding, binding_delete
from instances.services.identity import identity_for
from instances.services.instances import start_operation
from instances.states import BindingState, InstanceState, OpType
from teams.audit import audit

logger = logging.getLogger(__name__)

# Before renew_before / expires_at, how much of the lifetime passes before an automatic rotation (no renew_before).
LIFETIME_SHARE = 0.8
# The page warns when expiry is this close (or the rotation time has come) and the binding cannot be rotated.
EXPIRY_WARNING = timedelta(days=1)


# --- the broker's times ------------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An OSB timestamp (`2031-12-31T23:59:59.0Z`, ISO 8601) as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rotate_at_for(metadata: dict[str, Any] | None, *, now: datetime) -> datetime | None:
    """When a binding with this broker metadata is rotated: at `renew_before` when sent, else at 80 % of the lifetime
    from `now` (when the broker made it) to `expires_at`; None when the broker sent neither."""
    metadata = metadata or {}
    renew = parse_time(metadata.get("renew_before"))
    if renew is not None:
        return renew
    expires = parse_time(metadata.get("expires_at"))
    if expires is None:
        return None
    return now + max(expires - now, timedelta(0)) * LIFETIME_SHARE


def expires_at(binding: ServiceBinding) -> datetime | None:
    return parse_time((binding.metadata or {}).get("expires_at"))


# --- rotating ----------------------------------------------------------------------------------------------


def live_successor(binding: ServiceBinding) -> ServiceBinding | None:
    """The successor being made or made (at most one: a database constraint)."""
    # Through .all(): the binding list prefetches them.
    live = [b for b in binding.successors.all() if b.state in (BindingState.BINDING, BindingState.READY)]
    return live[0] if live else None


def rotation_refusal(binding: ServiceBinding) -> str | None:
    """Why `binding` cannot be rotated now, or None when it can."""
    if binding.state != BindingState.READY:
        return f"The binding is {binding.get_state_display().lower()}; only a ready binding can be rotated."
    if not binding.current:
        return "This binding is being replaced by its successor already."
    if live_successor(binding) is not None:
        return "A rotation of this binding is already in progress."
    instance = binding.instance
    if instance.state != InstanceState.READY:
        return f"The instance '{instance}' is {instance.get_state_display().lower()}; rotation needs it ready."
    if not instance.plan.effective_bindable:
        return f"Instances of the plan '{instance.plan.title}' can no longer be bound."
    return None


def rotation_linked(binding: ServiceBinding) -> bool:
    """Whether a rotation of `binding` now sends `predecessor_binding_id`: the plan allows it and the predecessor has
    not expired (the spec asks for a non-expired one)."""
    if not binding.instance.plan.binding_rotatable:
        return False
    expiry = expires_at(binding)
    return expiry is None or expiry > timezone.now()


def binding_rotate(*, binding: ServiceBinding, requested_by: Any = None, request: Any = None,
                   automatic: bool = False) -> ServiceBinding:
    """Start the rotation of `binding`: its successor and the successor's bind operation. Returns the successor.

    `requested_by` needs the developer role in the binding's namespace or its instance's (None: the portal itself,
    for automatic rotation). Audited.
    """
    _require_binding(requested_by, "bind", binding)
    binding = ServiceBinding.objects.select_related("instance__plan__offering").get(pk=binding.pk)
    refusal = rotation_refusal(binding)
    if refusal is not None:
        raise Conflict(refusal)
    instance = binding.instance
    plan = instance.plan
    linked = rotation_linked(binding)
    with transaction.atomic():
        successor = ServiceBinding(
            instance=instance, name=binding.name, namespace=binding.namespace, secret_name=binding.secret_name,
            parameters=binding.parameters, context=binding.context, bind_resource=binding.bind_resource,
            predecessor=binding, rotation_linked=linked, current=False,
            requested_by=requested_by or binding.requested_by,
        )
        try:
            with transaction.atomic():
                successor.save()
        except IntegrityError:
            raise Conflict("A rotation of this binding is already in progress.") from None
        put = BindRequest(instance_id=str(instance.pk), binding_id=str(successor.pk),
                          service_id=plan.offering.catalog_id, plan_id=plan.catalog_id, context=binding.context,
                          bind_resource=binding.bind_resource, parameters=binding.parameters,
                          predecessor_binding_id=str(binding.pk) if linked else None,
                          accepts_incomplete=plan.offering.bindings_retrievable)
        start_operation(Operation(type=OpType.BIND, instance=instance, binding=successor, request=put.to_json(),
                                  requested_by=requested_by, identity=identity_for(requested_by)))
        ServiceBinding.objects.filter(pk=binding.pk).update(rotate_at=None, rotation_message="",
                                                            updated_at=timezone.now())
        how = "linked by the broker" if linked else "a new binding the broker does not link to it"
        why = "Automatic rotation (the broker's renewal time)" if automatic else "Rotation"
        audit(action="binding.rotate", target=binding, actor=requested_by, request=request,
              summary=f"{why} of binding {binding} requested: successor {successor.pk} ({how}), "
                      f"Secret {binding.namespace}/{binding.secret_name}")
    return successor


def hand_over(*, successor_id: Any, predecessor_id: Any, now: datetime) -> None:
    """The successor's bind succeeded: it holds the name and the Secret from now on (inside the engine's transaction).
    The predecessor lets go first, so the one-current-binding constraints hold at every statement."""
    ServiceBinding.objects.filter(pk=predecessor_id).update(current=False, rotate_at=None, updated_at=now)
    ServiceBinding.objects.filter(pk=successor_id).update(current=True, updated_at=now)


def secret_handed_over(*, successor: ServiceBinding) -> None:
    """The Secret carries the successor's credentials (or there is no cluster to write to): the predecessor's grace
    period starts, unless it was started already."""
    if not successor.predecessor_id or not successor.current:
        return
    retire_at = timezone.now() + timedelta(seconds=settings.BINDING_ROTATION_GRACE_SECONDS)
    ServiceBinding.objects.filter(pk=successor.predecessor_id, state=BindingState.READY, current=False,
                                  retire_at__isnull=True).update(retire_at=retire_at, updated_at=timezone.now())


# --- the sweeper ----------------------------------------------------------------------------------------------


def binding_rotation_sweep(*, limit: int = 100) -> dict[str, int]:
    """Beat: unbind predecessors whose grace period is over; rotate bindings whose renewal time has come.

    Each binding is taken by compare-and-set on its time, so two sweepers never act on the same one twice.
    """
    now = timezone.now()
    retired = rotated = 0
    due = ServiceBinding.objects.filter(state=BindingState.READY, current=False, retire_at__lte=now)
    for binding in due.select_related("instance__plan__offering").order_by("retire_at")[:limit]:
        with transaction.atomic():
            if not ServiceBinding.objects.filter(pk=binding.pk, retire_at=binding.retire_at).update(retire_at=None):
                continue
            try:
                binding_delete(binding=binding)
            except ApplicationError as exc:
                logger.warning("Could not unbind the rotated binding %s: %s", binding.pk, exc.message)
                continue
        retired += 1
    due = ServiceBinding.objects.filter(state=BindingState.READY, current=True, rotate_at__lte=now)
    for binding in due.select_related("instance__plan__offering").order_by("rotate_at")[:limit]:
        try:
            binding_rotate(binding=binding, automatic=True)
        except ApplicationError as exc:
            # Not now (the instance is busy, ...): try again at the next sweep while expiry is not near; the page says why.
            ServiceBinding.objects.filter(pk=binding.pk).update(rotation_message=exc.message)
            continue
        rotated += 1
    return {"retired": retired, "rotated": rotated}


# --- what the page and the API show ----------------------------------------------------------------------


def rotation_status(binding: ServiceBinding) -> dict[str, Any]:
    """The binding's place in its rotation chain and the rotation's progress, for the page and the API.

    `step`: "" (not rotated), "creating_successor", "successor_failed", "publishing" (the successor's credentials are
    on their way into the Secret), "grace_period" (the predecessor is unbound at `retire_at`), "unbinding_predecessor",
    "done".
    """
    successors = sorted((b for b in binding.successors.all() if b.state != BindingState.DELETED),
                        key=lambda b: b.created_at, reverse=True)
    successor = successors[0] if successors else None
    predecessor = binding.predecessor
    # The rotation this binding is part of: as the predecessor of `successor`, else as the successor of `predecessor`.
    old, new = (binding, successor) if successor is not None else (predecessor, binding if predecessor else None)
    step, retire_at = "", None
    if new is not None and new.predecessor_id:
        old_state = old.state if old is not None else BindingState.DELETED
        retire_at = old.retire_at if old is not None else None
        if new.state == BindingState.BINDING:
            step = "creating_successor"
        elif new.state == BindingState.FAILED:
            step = "successor_failed"
        elif old_state == BindingState.DELETED:
            step = "done"
        elif old_state == BindingState.UNBINDING:
            step = "unbinding_predecessor"
        elif retire_at is not None:
            step = "grace_period"
        elif new.state == BindingState.READY:
            step = "publishing"
    expiry = expires_at(binding)
    refusal = rotation_refusal(binding) if binding.pk else None
    warning = ""
    now = timezone.now()
    if expiry is not None and binding.state == BindingState.READY and binding.current:
        near = expiry - now <= EXPIRY_WARNING or (binding.rotate_at is not None and binding.rotate_at <= now)
        failed = step == "successor_failed" and successor is not None
        if near and (refusal or failed or binding.rotation_message):
            why = (binding.rotation_message or refusal
                   or "the last rotation failed (see the successor binding)")
            warning = (f"These credentials expire {'at' if expiry > now else 'since'} {expiry:%Y-%m-%d %H:%M} UTC "
                       f"and cannot be rotated now: {why}")
    return {
        "predecessor": predecessor.pk if predecessor else None,
        "successor": successor.pk if successor else None,
        "linked": (new.rotation_linked if new is not None and new.predecessor_id else None),
        "step": step,
        "retire_at": retire_at,
        "rotate_at": binding.rotate_at,
        "expires_at": expiry,
        "can_rotate": refusal is None,
        "refusal": refusal or "",
        "warning": warning,
    }
