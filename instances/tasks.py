"""Celery tasks for operations: thin, id-based, safe to run twice (the row decides, not the message)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="instances.operation_step", ignore_result=True, acks_late=True)
def operation_step(operation_id: str) -> None:
    """Run the operation's next step if due; schedule the one after. A duplicate message is a no-op."""
    from instances.services.operations import operation_step as step

    delay = step(operation_id=operation_id)
    if delay is not None:
        operation_step.apply_async((operation_id,), countdown=delay)


@shared_task(name="instances.operations_sweep", ignore_result=True)
def operations_sweep() -> int:
    """Beat: re-dispatch every operation whose message was lost or whose worker died."""
    from instances.services.operations import operations_due

    due = operations_due()
    for operation_id in due:
        operation_step.delay(operation_id)
    return len(due)


@shared_task(name="instances.binding_publish", ignore_result=True, acks_late=True)
def binding_publish(binding_id: str) -> None:
    """Make the binding's Secret in the cluster match the binding (publish, repair or delete)."""
    from instances.services.kubernetes import binding_publish as publish

    publish(binding_id=binding_id)


@shared_task(name="instances.bindings_reconcile", ignore_result=True)
def bindings_reconcile() -> int:
    """Beat: publish what is due, retry failures, repair Secrets deleted or edited behind our back."""
    from instances.services.kubernetes import bindings_due

    due = bindings_due()
    for binding_id in due:
        binding_publish.delay(binding_id)
    return len(due)


@shared_task(name="instances.bindings_rotation_sweep", ignore_result=True)
def bindings_rotation_sweep() -> dict[str, int]:
    """Beat: unbind rotated bindings whose grace period is over; rotate bindings whose renewal time has come."""
    from instances.services.rotation import binding_rotation_sweep

    return binding_rotation_sweep()


@shared_task(name="instances.drift_checks_due", ignore_result=True)
def drift_checks_due() -> int:
    """Beat, once a minute: start the periodic drift checks that are due (bounded per broker)."""
    from instances.services.drift import drift_checks_due as due

    return due()


@shared_task(name="instances.upgrade_batch_advance", ignore_result=True, acks_late=True)
def upgrade_batch_advance(batch_id: str) -> None:
    """Take an upgrade batch's next step (note finished upgrades, start the next ones). Safe to run twice."""
    from instances.services.upgrades import upgrade_batch_advance as advance

    advance(batch_id=batch_id)


@shared_task(name="instances.upgrades_sweep", ignore_result=True)
def upgrades_sweep() -> int:
    """Beat: advance every upgrade batch with work left (the rows are the truth; messages only nudge)."""
    from instances.services.upgrades import upgrade_batches_due

    due = upgrade_batches_due()
    for batch_id in due:
        upgrade_batch_advance.delay(batch_id)
    return len(due)
