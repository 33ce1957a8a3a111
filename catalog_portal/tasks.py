"""Helpers for sending Celery messages: a message is only a nudge, so sending may fail harmlessly."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Send `task(*args)` after the current transaction commits.

    The database row is the truth and the sweeper re-sends due work, so a broker outage (Redis down or
    flushed) must never fail the person's request: it is logged and the sweeper catches up.
    """

    def send() -> None:
        try:
            task.apply_async(args=args, retry=False)
        except Exception:  # kombu raises many types for an unreachable transport
            logger.warning("Could not enqueue %s; the sweeper will dispatch it", task.name, exc_info=True)

    transaction.on_commit(send)
