"""Gentle with brokers: a fleet-wide limit of calls in flight per broker, a per-process share of the worker's
threads, and a broker-wide pause when the broker asks for one (429 or 503 with Retry-After).

`call_slot(broker)` is what a worker wraps a broker call in. It yields None when the call must wait (the broker is
paused, or all its slots are taken here or fleet-wide) and the caller reschedules the work instead of blocking a
thread. A slot is a `BrokerCallSlot` row held with a lease that the process's heartbeat renews
(`catalog_portal.leases`): a worker killed mid-call frees its slot within `OPERATION_LEASE_SECONDS`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from brokers.models import Broker, BrokerCallSlot
from brokers.osb import parse_retry_after
from catalog_portal import leases

# A Retry-After of 0 or a fraction of a second is not a reason to call again right away.
MIN_PAUSE_SECONDS = 1.0
PAUSING_STATUSES = (429, 503)


@dataclass
class Wait:
    """Why a call may not be made now, and how long until it is worth trying again."""

    seconds: float
    reason: str
    paused: bool = False  # the broker asked for the pause (else: its limit or this process's share is reached)


_local_free = threading.Condition()
_local_in_flight: dict[Any, int] = {}
LOCAL_WAIT_SECONDS = 0.5


def _lease() -> timedelta:
    return timedelta(seconds=float(settings.OPERATION_LEASE_SECONDS))


@contextmanager
def call_slot(broker: Broker) -> Iterator[Wait | None]:
    """Hold one of `broker`'s call slots for the block; yields a `Wait` (and holds nothing) when there is none."""
    now = timezone.now()
    if broker.paused_until and broker.paused_until > now:
        yield Wait((broker.paused_until - now).total_seconds(),
                   f"The broker asked the portal to pause until {broker.paused_until:%H:%M:%S} UTC", paused=True)
        return
    share = process_share()
    with _local_free:
        # A short wait for this process's share (calls to a healthy broker take milliseconds); a broker whose calls
        # hang keeps at most `share` threads, and the others give their step back after LOCAL_WAIT_SECONDS.
        local_full = not _local_free.wait_for(lambda: _local_in_flight.get(broker.pk, 0) < share,
                                              timeout=LOCAL_WAIT_SECONDS)
        if not local_full:
            _local_in_flight[broker.pk] = _local_in_flight.get(broker.pk, 0) + 1
    if local_full:
        yield Wait(1.0, "This worker already has its share of calls waiting on the broker")
        return
    try:
        if not broker.max_in_flight:
            yield None
            return
        slot = _acquire(broker)
        if slot is None:
            yield Wait(1.0, f"The broker already has {broker.max_in_flight} calls in flight (its limit)")
            return
        pk, token = slot

        def renew() -> bool:
            return BrokerCallSlot.objects.filter(pk=pk, holder=token).update(
                held_until=timezone.now() + _lease()) == 1

        try:
            with leases.held(renew, interval=float(settings.OPERATION_HEARTBEAT_SECONDS)):
                yield None
        finally:
            BrokerCallSlot.objects.filter(pk=pk, holder=token).update(holder="", held_until=None)
    finally:
        with _local_free:
            _local_in_flight[broker.pk] -= 1
            _local_free.notify_all()


def process_share() -> int:
    """How many of this process's threads may wait on one broker: OSB_CALLS_PER_BROKER_PER_PROCESS, or (0, the
    default) half the worker's threads, at least 1 (outside a threads-pool worker: 2)."""
    configured = int(settings.OSB_CALLS_PER_BROKER_PER_PROCESS)
    if configured:
        return configured
    from catalog_portal import celery

    return max(1, celery.WORKER_THREADS // 2) if celery.WORKER_THREADS else 2


def _free(now: datetime) -> Q:
    return Q(held_until__isnull=True) | Q(held_until__lt=now)


_TAKE_SLOT = (
    "UPDATE brokers_brokercallslot SET holder = %s, held_until = %s WHERE id = (SELECT id FROM brokers_brokercallslot "
    "WHERE broker_id = %s AND number < %s AND (held_until IS NULL OR held_until < %s) ORDER BY random() LIMIT 1) "
    "AND (held_until IS NULL OR held_until < %s) RETURNING id"
)


def _acquire(broker: Broker, attempts: int = 4) -> tuple[int, str] | None:
    """Take a free slot by compare-and-set: one UPDATE picks a free slot at random and takes it if it is still free
    (on Postgres a slot another worker took in between fails the outer condition: that attempt takes nothing)."""
    token = uuid.uuid4().hex
    broker_id = BrokerCallSlot._meta.get_field("broker").get_db_prep_value(broker.pk, connection)
    for _ in range(attempts):
        now = timezone.now()
        moment = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SLOT, [token, connection.ops.adapt_datetimefield_value(now + _lease()), broker_id,
                                        broker.max_in_flight, moment, moment])
            row = cursor.fetchone()
        if row is not None:
            return row[0], token
        if BrokerCallSlot.objects.filter(broker=broker, number__lt=broker.max_in_flight).count() \
                < broker.max_in_flight:
            BrokerCallSlot.objects.bulk_create(
                [BrokerCallSlot(broker=broker, number=n) for n in range(broker.max_in_flight)], ignore_conflicts=True)
            continue
        if not BrokerCallSlot.objects.filter(broker=broker, number__lt=broker.max_in_flight).filter(
                _free(now)).exists():
            return None  # all taken (not just lost a race)
    return None


def pause_from_answers(broker: Broker, answers: Iterable[tuple[int | None, str | None]]) -> datetime | None:
    """A 429 or 503 with Retry-After pauses every new call to the broker until then (at least a second from now);
    returns the new pause end, if any. `answers`: (status, Retry-After header) of the calls just made."""
    now = timezone.now()
    until = None
    for status, retry_after in answers:
        if status not in PAUSING_STATUSES or not retry_after:
            continue
        seconds = parse_retry_after(retry_after, now=now)
        if seconds is None:
            continue
        candidate = now + timedelta(seconds=max(seconds, MIN_PAUSE_SECONDS))
        until = candidate if until is None else max(until, candidate)
    if until is None:
        return None
    Broker.objects.filter(pk=broker.pk).filter(Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(
        paused_until=until)
    broker.paused_until = until
    return until
