"""Counters and histograms stored in the database (`MetricSample`), and their Prometheus families.

Workers make the OSB calls; every web pod's /metrics must show them, whatever the number of worker pods. So the
numbers are added up in the database, in the transaction that records what is counted (a rolled-back step counts
nothing), and a scrape reads a bounded number of rows: never the call records themselves.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from telemetry.models import MetricSample

SHARDS = 8
Row = tuple[str, str, float]  # sample name, labels key, amount


def _labels_key(labels: Mapping[str, Any]) -> str:
    return json.dumps({key: str(value) for key, value in labels.items()}, sort_keys=True, separators=(",", ":"))


def _shard() -> int:
    """This thread's shard: the same writer always writes the same rows, two writers rarely share one."""
    return hash((socket.gethostname(), os.getpid(), threading.get_ident())) % SHARDS


@dataclass(frozen=True)
class StoredCounter:
    name: str  # without the _total suffix Prometheus adds
    documentation: str
    labels: tuple[str, ...] = ()

    def rows(self, amount: float = 1.0, **labels: Any) -> list[Row]:
        _check(self.labels, labels)
        return [(self.name, _labels_key(labels), float(amount))]

    def family(self, stored: Stored) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=list(self.labels))
        for labels, value in stored.samples(self.name):
            family.add_metric([labels.get(name, "") for name in self.labels], value)
        return family


@dataclass(frozen=True)
class StoredHistogram:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

    def rows(self, value: float, **labels: Any) -> list[Row]:
        """One observation: the (non-cumulative) bucket it falls in, the sum and the count."""
        _check(self.labels, labels)
        bound = next((b for b in self.buckets if value <= b), float("inf"))
        key = _labels_key(labels)
        return [(f"{self.name}_bucket", _labels_key({**labels, "le": floatToGoString(bound)}), 1.0),
                (f"{self.name}_sum", key, float(value)), (f"{self.name}_count", key, 1.0)]

    def family(self, stored: Stored) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self.labels))
        buckets: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for labels, value in stored.samples(f"{self.name}_bucket"):
            buckets[tuple(labels.get(name, "") for name in self.labels)][labels["le"]] = value
        sums = {tuple(labels.get(name, "") for name in self.labels): value
                for labels, value in stored.samples(f"{self.name}_sum")}
        for label_values, counts in sorted(buckets.items()):
            running, cumulative = 0.0, []
            for bound in [*self.buckets, float("inf")]:
                running += counts.get(floatToGoString(bound), 0.0)
                cumulative.append((floatToGoString(bound), running))
            family.add_metric(list(label_values), cumulative, sums.get(label_values, 0.0))
        return family


def _check(expected: tuple[str, ...], given: Mapping[str, Any]) -> None:
    if set(given) != set(expected):
        raise ValueError(f"labels {sorted(given)} given, {sorted(expected)} expected")


def record(rows: Iterable[Row]) -> None:
    """Add the rows' amounts to their samples, in one statement inside the caller's transaction.

    The rows are summed first (one upsert may not touch a row twice) and sorted, so that two transactions
    lock shared rows in the same order and never deadlock each other."""
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for name, labels, amount in rows:
        totals[(name, labels)] += amount
    if not totals:
        return
    shard = _shard()
    table = MetricSample._meta.db_table
    values = sorted((name, labels, shard, amount) for (name, labels), amount in totals.items())
    placeholders = ", ".join(["(%s, %s, %s, %s)"] * len(values))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (name, labels, shard, value) VALUES {placeholders} "  # noqa: S608 (our names)
            f"ON CONFLICT (name, labels, shard) DO UPDATE SET value = {table}.value + excluded.value",
            [item for row in values for item in row],
        )


class Stored:
    """Every stored sample, read once per scrape (one query over a table of bounded size), shards added up."""

    def __init__(self) -> None:
        self._samples: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for name, labels, value in MetricSample.objects.values_list("name", "labels", "value").iterator():
            self._samples[name][labels] += value

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every label set of one sample name."""
        return [(json.loads(key), value) for key, value in sorted(self._samples.get(name, {}).items())]
