"""Celery tasks for the catalog mirror: thin, id-based, safe to run twice."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="brokers.catalog_sync", ignore_result=True, acks_late=True)
def catalog_sync(broker_id: str) -> None:
    """Mirror the broker's catalog if a sync is due and unclaimed (the row decides, not the message)."""
    from brokers.services import catalog_sync as sync

    sync(broker_id=broker_id)


@shared_task(name="brokers.catalog_sync_due", ignore_result=True)
def catalog_sync_due() -> int:
    """Beat: dispatch every broker whose sync is due or whose worker died mid-sync."""
    from brokers.services import catalog_sync_due as due

    broker_ids = due()
    for broker_id in broker_ids:
        catalog_sync.delay(broker_id)
    return len(broker_ids)
