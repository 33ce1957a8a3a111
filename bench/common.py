"""What the benchmarks share beside the throwaway database: Django on it, the Celery transport, subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def prepare_process() -> None:
    """Before Django is set up: the portal's settings, quiet logs, and SIGTERM/SIGHUP turned into SystemExit so
    that `finally` blocks drop the throwaway database and stop the subprocesses on the way out."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "catalog_portal.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))


def setup_django(*, flush_redis: bool) -> tuple[str, Any]:
    """django.setup(), migrate the (throwaway) database, and claim the Celery transport.

    A Redis transport must be an empty db (or `flush_redis`) and is emptied. Returns a label of the transport to
    print, and the Redis client to empty at the end (None for other transports).
    """
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from catalog_portal.staticfiles import collect_static

    collect_static()  # pages link assets by their hashed names (the manifest), as a deployment serves them
    transport = settings.CELERY_BROKER_URL
    redis_client = None
    if transport.startswith("redis"):
        import redis

        client = redis.Redis.from_url(transport)
        if client.dbsize() and not flush_redis:
            raise SystemExit(f"bench: {transport} is not empty; use a dedicated Redis db or --flush-redis")
        client.flushdb()
        redis_client = client
    elif transport == "filesystem://":
        transport = f"filesystem:// ({settings.CELERY_BROKER_TRANSPORT_OPTIONS['data_folder_in']})"
    return transport, redis_client


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's own group (started with start_new_session), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def start_process(command: list[str], log_path: Path, env: dict[str, str], *, ready: bytes | None = b"ready.",
                  what: str = "the worker") -> subprocess.Popen[bytes]:
    """Start `command` from the project root in a process group of its own, its output to `log_path`; wait (up to
    120 s) until that output shows `ready` (None: do not wait). Raises SystemExit with the log's end if it dies."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + 120
    while ready is not None and ready not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process_group(process)
            raise SystemExit(f"bench: {what} did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.05)
    return process
