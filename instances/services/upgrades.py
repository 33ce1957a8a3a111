"""Upgrades in bulk: instances behind their plan's maintenance version, upgraded a few at a time (issue 17).

`upgrade_batch_start` writes a batch and one item per instance; `upgrade_batch_advance` is the batch's only mover:
it notes which upgrades finished (each is an ordinary update operation with `maintenance_info` and
`previous_values`, run by the engine), pauses the batch after UPGRADE_BATCH_MAX_FAILURES failures and starts
pending ones while fewer than `max_parallel` run. It is run by the sweeper (`upgrade_batches_due`) and nudged when
one of the batch's updates finishes; the batch row is locked while it moves, so two runs never start too many.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from brokers.models import ServicePlan
from catalog_portal.exceptions import ApplicationError, Conflict, Forbidden, NotFound
from catalog_portal.tasks import enqueue_on_commit
from instances.models import ServiceInstance, UpgradeBatch, UpgradeItem
from instances.states import InstanceState, OpState
from teams import access
from teams.audit import audit
from teams.models import Membership

Item, Batch = UpgradeItem.State, UpgradeBatch.State


def _version_key(version: str) -> tuple[Any, ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[.\-+]", version))


def is_newer(offered: str | None, current: str | None) -> bool:
    """Is the plan's version `offered` newer than the instance's `current`? Dotted numbers compare as numbers; an
    instance without a version is behind any offered one."""
    if not offered or offered == current:
        return False
    if not current:
        return True
    try:
        return _version_key(offered) > _version_key(current)
    except TypeError:  # parts of different kinds at the same place: any other version counts as newer
        return True


def _version(value: Any) -> str | None:
    return value.get("version") if isinstance(value, dict) else None


def upgrade_namespaces(user: Any) -> set[str] | None:
    """The namespaces whose upgrades `user` manages (None: all, platform admins). Forbidden for anyone else."""
    allowed = access.namespaces_for(user, Membership.Role.ADMIN)
    if allowed is not None and not allowed:
        raise Forbidden("Upgrades in bulk are for platform admins and team admins.")
    return allowed


@dataclass
class PlanUpgrades:
    """The instances of one plan behind its maintenance version."""

    plan: ServicePlan
    version: str
    description: str
    instances: list[ServiceInstance] = field(default_factory=list)


def instances_behind(user: Any, *, plan: Any = None) -> list[ServiceInstance]:
    """Existing instances in `user`'s upgrade namespaces whose plan offers a newer maintenance version."""
    allowed = upgrade_namespaces(user)
    query = (ServiceInstance.objects.visible().filter(plan__maintenance_info__isnull=False)
             .select_related("plan__offering", "broker").order_by("namespace", "name"))
    if allowed is not None:
        query = query.filter(namespace__in=allowed)
    if plan is not None:
        query = query.filter(plan=plan)
    return [i for i in query if is_newer(_version(i.plan.maintenance_info), _version(i.maintenance_info))]


def upgrades_available(user: Any) -> list[PlanUpgrades]:
    """What is behind, grouped by plan (service, then plan order)."""
    groups: dict[Any, PlanUpgrades] = {}
    for instance in instances_behind(user):
        plan = instance.plan
        group = groups.get(plan.pk)
        if group is None:
            info = plan.maintenance_info or {}
            group = groups[plan.pk] = PlanUpgrades(plan=plan, version=str(info.get("version")),
                                                   description=str(info.get("description") or ""))
        group.instances.append(instance)
    return sorted(groups.values(), key=lambda g: (g.plan.offering.title, g.plan.position, g.plan.name))


def batch_list(user: Any) -> Any:
    """The batches `user` may follow: all for platform admins, their own for team admins."""
    query = UpgradeBatch.objects.select_related("plan__offering", "requested_by")
    return query if access.is_platform_admin(user) else query.filter(requested_by=user)


def upgrade_batch_start(*, plan: ServicePlan | None = None, instances: Iterable[Any] | None = None,
                        max_parallel: int = 5, requested_by: Any = None, request: Any = None) -> UpgradeBatch:
    """Start upgrading every instance of `plan` that is behind, or the given `instances` (ids), at most
    `max_parallel` at a time; audited."""
    if (plan is None) == (instances is None):
        raise ApplicationError("Give a plan or a list of instances.")
    if max_parallel < 1:
        raise ApplicationError("max_parallel must be at least 1.", fields={"max_parallel": ["At least 1."]})
    if plan is not None:
        chosen = instances_behind(requested_by, plan=plan)
        if not chosen:
            raise ApplicationError(f"No instance of the plan '{plan}' is behind its maintenance version.",
                                   fields={"plan": ["Nothing to upgrade."]})
    else:
        wanted = [str(pk) for pk in instances or []]
        if not wanted:
            raise ApplicationError("Name at least one instance.", fields={"instances": ["Empty."]})
        behind = {str(i.pk): i for i in instances_behind(requested_by)}
        missing = [pk for pk in wanted if pk not in behind]
        if missing:
            raise ApplicationError(
                f"Not behind its plan's maintenance version, or not yours to upgrade: {', '.join(missing)}.",
                fields={"instances": [f"{pk}: nothing to upgrade." for pk in missing]})
        chosen = [behind[pk] for pk in dict.fromkeys(wanted)]
    from instances.tasks import upgrade_batch_advance as advance_task

    with transaction.atomic():
        batch = UpgradeBatch.objects.create(plan=plan, max_parallel=max_parallel, requested_by=requested_by,
                                            max_failures=settings.UPGRADE_BATCH_MAX_FAILURES)
        UpgradeItem.objects.bulk_create([
            UpgradeItem(batch=batch, instance=instance, position=position,
                        from_version=_version(instance.maintenance_info) or "",
                        to_version=_version(instance.plan.maintenance_info) or "")
            for position, instance in enumerate(chosen)
        ])
        audit(action="upgrade.start", target=batch, actor=requested_by, request=request,
              summary=f"Upgrade of {len(chosen)} instance(s) started, at most {max_parallel} at a time")
        enqueue_on_commit(advance_task, str(batch.pk))
    return batch


def _finish_item(item: UpgradeItem, now: Any) -> bool:
    """Note the outcome of a running item's update; True if it finished."""
    operation = item.operation
    if operation is None:
        item.state, item.error = Item.FAILED, "Its update operation is gone."
    elif operation.state == OpState.SUCCEEDED:
        item.state = Item.SUCCEEDED
    elif operation.state == OpState.FAILED:
        item.state, item.error = Item.FAILED, operation.error or operation.description or "The update failed."
    else:
        return False
    item.finished_at = now
    item.save(update_fields=["state", "error", "finished_at"])
    return True


def _start_item(batch: UpgradeBatch, item: UpgradeItem, now: Any) -> bool:
    """Start one upgrade; False when the instance is busy (it stays pending and is tried on a later step)."""
    from instances.services.instances import instance_update

    instance = item.instance
    if instance.is_deleted:
        item.state, item.error, item.finished_at = Item.FAILED, "The instance was deleted.", now
    elif not is_newer(_version(instance.plan.maintenance_info), _version(instance.maintenance_info)):
        item.state, item.error, item.finished_at = Item.SUCCEEDED, "Already at the plan's version.", now
    else:
        try:
            with transaction.atomic():
                instance_update(instance=instance, upgrade=True, requested_by=batch.requested_by)
        except Conflict:
            if instance.state in (InstanceState.READY, InstanceState.UPDATING, InstanceState.PROVISIONING):
                return False  # another operation runs on it: later
            item.state, item.error, item.finished_at = Item.FAILED, f"The instance is {instance.state}.", now
        except ApplicationError as exc:
            item.state, item.error, item.finished_at = Item.FAILED, exc.message, now
        else:
            item.state, item.started_at = Item.RUNNING, now
            item.operation = instance.operations.filter(type="update").order_by("-started_at").first()
    item.save(update_fields=["state", "error", "started_at", "finished_at", "operation"])
    return True


def upgrade_batch_advance(*, batch_id: Any) -> UpgradeBatch | None:
    """One step of a batch: note finished upgrades, pause after too many failures, start pending ones up to
    `max_parallel`, finish when none is left. Safe to run any number of times, also concurrently."""
    now = timezone.now()
    with transaction.atomic():
        batch = UpgradeBatch.objects.select_for_update().filter(pk=batch_id).first()
        if batch is None:
            return None
        items = list(batch.items.select_related("operation", "instance__plan__offering", "instance__broker")
                     .filter(state__in=[Item.PENDING, Item.RUNNING]))
        running = [i for i in items if i.state == Item.RUNNING and not _finish_item(i, now)]
        failed = batch.items.filter(state=Item.FAILED).count()
        if batch.state == Batch.RUNNING and failed - batch.failures_before_resume >= batch.max_failures:
            batch.state = Batch.PAUSED
            batch.pause_reason = (f"Paused after {failed - batch.failures_before_resume} failed upgrade(s); "
                                  "resume to go on, or cancel.")
        if batch.state == Batch.RUNNING:
            slots = batch.max_parallel - len(running)
            for item in (i for i in items if i.state == Item.PENDING):
                if slots <= 0:
                    break
                if _start_item(batch, item, now) and item.state == Item.RUNNING:
                    slots -= 1
            left = batch.items.filter(state__in=[Item.PENDING, Item.RUNNING]).exists()
            if not left:
                batch.state, batch.finished_at = Batch.FINISHED, now
        batch.save()
    return batch


def upgrade_batches_due() -> list[str]:
    """Batches the sweeper advances: running ones, and any with an upgrade still running (paused or cancelled
    batches still note how those end)."""
    query = UpgradeBatch.objects.filter(Q(state=Batch.RUNNING) | Q(items__state=Item.RUNNING)).distinct()
    return [str(pk) for pk in query.values_list("pk", flat=True)[:1000]]


def _batch_for(user: Any, batch: UpgradeBatch) -> None:
    if user is not None and not batch_list(user).filter(pk=batch.pk).exists():
        raise NotFound("No such upgrade batch.")


def upgrade_batch_resume(*, batch: UpgradeBatch, retry_failed: bool = False, requested_by: Any = None,
                         request: Any = None) -> UpgradeBatch:
    """Go on with a paused batch (with `retry_failed`, its failed upgrades are tried again); audited."""
    from instances.tasks import upgrade_batch_advance as advance_task

    _batch_for(requested_by, batch)
    with transaction.atomic():
        batch = UpgradeBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.state != Batch.PAUSED:
            raise Conflict(f"The batch is {batch.get_state_display().lower()}; only a paused batch can be resumed.")
        if retry_failed:
            batch.items.filter(state=Item.FAILED).update(state=Item.PENDING, error="", finished_at=None,
                                                         operation=None, started_at=None)
        batch.failures_before_resume = batch.items.filter(state=Item.FAILED).count()
        batch.state, batch.pause_reason = Batch.RUNNING, ""
        batch.save()
        audit(action="upgrade.resume", target=batch, actor=requested_by, request=request,
              summary="Upgrade batch resumed" + (", failed upgrades retried" if retry_failed else ""))
        enqueue_on_commit(advance_task, str(batch.pk))
    return batch


def upgrade_batch_cancel(*, batch: UpgradeBatch, requested_by: Any = None, request: Any = None) -> UpgradeBatch:
    """Start no more upgrades (those already sent to the broker run to their end); audited."""
    _batch_for(requested_by, batch)
    with transaction.atomic():
        batch = UpgradeBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.state not in (Batch.RUNNING, Batch.PAUSED):
            raise Conflict(f"The batch is {batch.get_state_display().lower()} already.")
        now = timezone.now()
        batch.items.filter(state=Item.PENDING).update(state=Item.CANCELLED, finished_at=now)
        batch.state, batch.finished_at = Batch.CANCELLED, now
        batch.save()
        audit(action="upgrade.cancel", target=batch, actor=requested_by, request=request,
              summary="Upgrade batch cancelled")
    return batch


def batch_counts(batch: UpgradeBatch) -> dict[str, int]:
    counts = dict.fromkeys(Item.values, 0)
    for item in batch.items.all():
        counts[item.state] += 1
    return counts
