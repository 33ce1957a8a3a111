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
    SQLite transactions already read from one snapshot.
    """
    outermost = not connection.in_atomic_block  # the isolation level can only be set first thing
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield
