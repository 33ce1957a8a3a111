"""Database helpers shared by every app."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def snapshot() -> Iterator[None]:
    """Read several queries from one snapshot (a row and its prefetched operations agree).

    Under Postgres' default READ COMMITTED each query sees the latest commit, so an instance read before a
    worker commits and its operations read after it would disagree ("succeeded" but still "provisioning").
    """
    if connection.vendor != "postgresql":
        # SQLite (the embedded default) opens every transaction IMMEDIATE, i.e. with the write lock: wrapping
        # reads would stall the workers' writes, so there each query reads the latest commit.
        yield
        return
    outermost = not connection.in_atomic_block  # the isolation level can only be set first thing
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


@contextmanager
def read_snapshot() -> Iterator[None]:
    """Like `snapshot()`, on every backend, for a block that only reads (an API body: an instance and its
    operations). On SQLite a read transaction is opened DEFERRED (not the write-locking IMMEDIATE of the settings):
    in WAL mode it reads one snapshot from its first query to its end and never blocks the workers' writes. It
    must not write: a deferred transaction that tries could fail with "database is locked"."""
    if connection.vendor == "postgresql":
        with snapshot():
            yield
        return
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield  # already inside a transaction (its own snapshot or write lock)
        return
    connection.ensure_connection()  # opening it sets transaction_mode from the settings
    mode = connection.transaction_mode
    connection.transaction_mode = "DEFERRED"
    try:
        atomic = transaction.atomic()
        atomic.__enter__()  # BEGIN DEFERRED is sent here
    finally:
        connection.transaction_mode = mode
    try:
        yield
    except BaseException as exc:
        atomic.__exit__(type(exc), exc, exc.__traceback__)
        raise
    atomic.__exit__(None, None, None)
