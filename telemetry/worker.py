"""Celery side of telemetry: the portal's log format in worker and beat, and liveness files for Kubernetes.

Liveness: with `PORTAL_HEARTBEAT_FILE` set, a worker touches that file from its event loop's timer and beat from
its scheduler's tick, every `HEARTBEAT_SECONDS`; `python -m telemetry.liveness FILE SECONDS` (the pods' liveness
probe) fails when the file is older than that. A hung worker or beat stops touching it and is restarted.
"""

from __future__ import annotations

import logging
import logging.config
import os
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from celery.beat import PersistentScheduler
from celery.signals import celeryd_init, setup_logging

HEARTBEAT_SECONDS = 15.0


def heartbeat_file() -> Path | None:
    value = os.environ.get("PORTAL_HEARTBEAT_FILE", "")
    return Path(value) if value else None


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


class Heartbeat(bootsteps.StartStopStep):
    """Worker step: touch the heartbeat file every HEARTBEAT_SECONDS from the worker's own timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.path = heartbeat_file()
        self.entry: Any = None

    def start(self, parent: Any) -> None:
        if self.path is None:
            return
        touch(self.path)
        self.entry = parent.timer.call_repeatedly(HEARTBEAT_SECONDS, touch, (self.path,))

    def stop(self, parent: Any) -> None:
        if self.entry is not None:
            self.entry.cancel()


class HeartbeatScheduler(PersistentScheduler):
    """Beat's scheduler (the default one) that also touches the heartbeat file on every tick; beat ticks at
    least every `beat_max_loop_interval` (set to HEARTBEAT_SECONDS in settings)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        path = heartbeat_file()
        if path is not None:
            touch(path)
        return super().tick(*args, **kwargs)


def _setup_logging(loglevel: int | None = None, **_: Any) -> None:
    """Worker and beat log like the web (settings.LOGGING: plain, or JSON with LOG_FORMAT=json, with the log
    context on every line); `--loglevel` still sets the level."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    logging.captureWarnings(True)  # a warning is a log line too (one JSON object, with LOG_FORMAT=json)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


def install(app: Celery) -> None:
    app.steps["worker"].add(Heartbeat)
    setup_logging.connect(_setup_logging, weak=False)
    # Already when the worker starts: its first lines (a warning about running as root) come before Celery
    # sets up logging.
    celeryd_init.connect(lambda **_: _setup_logging(), weak=False)
