"""Leases this process holds, kept alive by one heartbeat thread.

A worker that takes a row for a while (an operation step, a broker call slot) writes a short lease on it and
registers a `renew` function here with `held`. The heartbeat thread calls `renew` for every registration every
`interval` seconds, while the work goes on in other threads (including during a long HTTP call), so a lease
runs out only when the process is dead or frozen, a few seconds after it stopped. `renew` returns False when the
lease was lost (another process took the row after it expired); the work then finds out at its compare-and-set.

Registration, renewal and release share one lock: once `held` has exited, no renewal of that lease runs or
will run, so the caller's idea of its lease (what it compares and sets on) is final.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class _Holding:
    renew: Callable[[], bool]
    interval: float
    renewed_at: float
    lost: bool = False


_lock = threading.Lock()
_holdings: dict[int, _Holding] = {}
_ids = itertools.count(1)
_thread: threading.Thread | None = None
_thread_pid: int | None = None
TICK_SECONDS = 0.25


@contextmanager
def held(renew: Callable[[], bool], *, interval: float) -> Iterator[_Holding]:
    """Keep a lease alive while the block runs: `renew()` is called every `interval` seconds from the heartbeat
    thread (with the registry's lock held: keep it to one short database write)."""
    holding = _Holding(renew=renew, interval=interval, renewed_at=time.monotonic())
    with _lock:
        key = next(_ids)
        _holdings[key] = holding
        _ensure_thread()
    try:
        yield holding
    finally:
        with _lock:
            _holdings.pop(key, None)


def renew_due(*, force: bool = False) -> int:
    """Renew every lease whose interval has passed (all of them with `force`); the heartbeat's one beat."""
    renewed = 0
    with _lock:
        now = time.monotonic()
        for holding in list(_holdings.values()):
            if holding.lost or (not force and now - holding.renewed_at < holding.interval):
                continue
            try:
                holding.lost = not holding.renew()
            except Exception:  # the database is away: try again next beat; the lease may run out meanwhile
                logger.warning("Renewing a lease failed; retrying", exc_info=True)
                _close_connection()
                continue
            holding.renewed_at = now
            renewed += 1
    return renewed


def held_count() -> int:
    with _lock:
        return len(_holdings)


def _ensure_thread() -> None:
    global _thread, _thread_pid
    if _thread is not None and _thread_pid == os.getpid() and _thread.is_alive():
        return
    _thread_pid = os.getpid()  # after a fork the parent's thread is not running here
    _thread = threading.Thread(target=_beat, name="lease-heartbeat", daemon=True)
    _thread.start()


def _beat() -> None:
    while True:
        time.sleep(TICK_SECONDS)
        try:
            renew_due()
            if not held_count():
                _close_connection()  # hold no database connection while idle
        except Exception:  # never let the heartbeat die
            logger.exception("Lease heartbeat failed")


def _close_connection() -> None:
    try:
        from django.db import connection

        if connection.connection is not None:
            connection.close()
    except Exception:
        logger.debug("Closing the heartbeat's database connection failed", exc_info=True)
