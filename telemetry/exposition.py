"""The text served at /metrics: the web process's own HTTP metrics and the portal-wide families.

HTTP metrics are counted in the process that served the request (prometheus_client); under gunicorn, with
several worker processes, they are shared through `PROMETHEUS_MULTIPROC_DIR` (catalog_portal.gunicorn sets it).
The portal-wide families (OSB calls, operations, brokers, catalog syncs, publication lag) come from the database,
so every web pod shows the same numbers, whichever worker pod did the work: aggregate them with `max` across
pods, not `sum` (deploy/prometheus and the Grafana dashboard do).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.registry import Collector

from telemetry.counters import Stored


class PortalCollector(Collector):
    """Runs every collector named in settings.METRICS_COLLECTORS over one read of the stored samples."""

    def __init__(self, collectors: Iterable[Callable[[Stored], Iterable[Any]]]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Any]:
        stored = Stored()
        for collector in self.collectors:
            yield from collector(stored)


def render() -> bytes:
    """The whole /metrics answer, in the Prometheus text format."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        local = CollectorRegistry()
        multiprocess.MultiProcessCollector(local)
    else:
        local = REGISTRY
    portal = CollectorRegistry(auto_describe=False)
    portal.register(PortalCollector(import_string(path) for path in settings.METRICS_COLLECTORS))
    return generate_latest(local) + generate_latest(portal)
