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
