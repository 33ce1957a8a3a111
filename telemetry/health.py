"""Readiness checks: the database answers, its migrations are applied, the Celery transport is reachable.

Each check is cheap (a `SELECT 1`, a Redis PING with a short timeout, a folder check); the migration check reads
the migration graph once, then remembers the answer for the process (code and migrations don't change under a
running process, and a new release's pods start fresh).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0
_migrated = False


class CheckFailed(Exception):
    """`message` is shown in the /readyz body (no addresses: the endpoint is public); `detail` is only logged."""

    def __init__(self, message: str, detail: BaseException | str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = _first_line(detail) if isinstance(detail, BaseException) else detail


def check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        connection.close()  # the next check starts with a fresh connection
        raise CheckFailed(f"the database does not answer ({type(exc).__name__})", exc) from exc


def check_migrations() -> None:
    global _migrated
    if _migrated:
        return
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        connection.close()
        raise CheckFailed(f"cannot read the applied migrations ({type(exc).__name__})", exc) from exc
    if plan:
        names = ", ".join(f"{migration.app_label}.{migration.name}" for migration, _ in plan[:3])
        more = f" and {len(plan) - 3} more" if len(plan) > 3 else ""
        raise CheckFailed(f"{len(plan)} migration(s) not applied: {names}{more}; run `manage.py migrate`")
    _migrated = True


def check_transport() -> None:
    url = settings.CELERY_BROKER_URL
    scheme = url.split("://", 1)[0]
    if scheme == "filesystem":
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        for key in ("data_folder_in", "data_folder_out"):
            folder = Path(options[key])
            if not (folder.is_dir() and os.access(folder, os.R_OK | os.W_OK | os.X_OK)):
                raise CheckFailed("the message folder is missing or not writable", str(folder))
    elif scheme in ("redis", "rediss"):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise CheckFailed(f"Redis does not answer ({type(exc).__name__})", f"{_where(url)}: {_first_line(exc)}") from exc
        finally:
            client.close()
    elif scheme != "memory":
        from kombu import Connection

        try:
            with Connection(url, connect_timeout=TIMEOUT_SECONDS) as conn:
                conn.ensure_connection(max_retries=1, timeout=TIMEOUT_SECONDS)
        except Exception as exc:  # kombu raises many types for an unreachable transport
            raise CheckFailed(f"the message broker does not answer ({type(exc).__name__})",
                              f"{_where(url)}: {_first_line(exc)}") from exc


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "migrations": check_migrations,
    "transport": check_transport,
}


def readiness() -> tuple[bool, dict[str, str]]:
    """Run the checks in order; a check after a failed one that it depends on is reported as skipped. A failure
    is logged at WARNING with its detail (the address and the error), which the answer leaves out."""
    results: dict[str, str] = {}
    ready = True
    for name, check in CHECKS.items():
        if name == "migrations" and results.get("database") != "ok":
            results[name] = "skipped: the database does not answer"
            continue
        try:
            check()
        except CheckFailed as exc:
            results[name] = f"failed: {exc.message}"
            logger.warning("Not ready: %s: %s (%s)", name, exc.message, exc.detail)
            ready = False
        else:
            results[name] = "ok"
    return ready, results


def _where(url: str) -> str:
    """host:port of a URL, never its password."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _first_line(exc: BaseException | str) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
