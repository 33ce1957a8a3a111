"""gunicorn settings for the web: `gunicorn -c python:catalog_portal.gunicorn catalog_portal.wsgi`.

Every value can still be overridden on the command line or with GUNICORN_CMD_ARGS. Logs go through the portal's
logging configuration (plain, or JSON with LOG_FORMAT=json). HTTP metrics are shared by the worker processes
through a fresh PROMETHEUS_MULTIPROC_DIR, so /metrics counts every request whichever process answers the scrape.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from telemetry.logs import logging_config

bind = "0.0.0.0:8000"  # the container's web port (-b overrides it)
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
timeout = 60
graceful_timeout = 30
logconfig_dict = logging_config(log_format=(os.environ.get("LOG_FORMAT") or "plain").lower(),
                                level=(os.environ.get("LOG_LEVEL") or "INFO").upper())
# gunicorn's own lines go through the portal's handler only (not also through gunicorn's default one). Its access
# log stays off: the portal logs each request itself (with the request id and user), and never the probes.
logconfig_dict["loggers"]["gunicorn.error"] = {"handlers": ["console"], "level": "INFO", "propagate": False}
logconfig_dict["loggers"]["gunicorn.access"] = {"handlers": ["console"], "level": "WARNING", "propagate": False}

# Set before the application (and prometheus_client) is imported in the workers, which inherit it.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")


def on_starting(server: Any) -> None:
    """Start from empty metric files: counts left by an earlier run would be added to this one's."""
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
