#!/usr/bin/env python
"""Benchmark of the database-backed metrics: what a /metrics scrape costs, and what counting adds to a step.

    python bench/metrics.py [--brokers 20] [--calls 100000] [--operations 20000] [--steps 2000]

Runs on a throwaway database (bench/throwaway.py: a temporary SQLite file, or a temporary Postgres database when
DATABASE_URL names a server; dropped at the end).

Part A (scrape): the counters of --brokers brokers, each with every OSB endpoint answered with four statuses,
written by 8 writers (all shards used), plus --operations operations (5 % active, some overdue). The scrape
(`telemetry.exposition.render`, what GET /metrics serves) is timed (median of 30) and its queries counted; then
--calls OSB call records are added and it is timed again: the scrape must not grow with them.

Part B (recording): --steps transactions each write what an engine step writes (an OperationCall row and an
Operation update), without and then with the counters the step adds (one OSB call: 3 counter rows and 3 histogram
rows in one upsert; a finished operation: one more). Reported as the median time per transaction.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from common import prepare_process  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENDPOINTS = [("GET", "/v2/catalog"), ("PUT", "/v2/service_instances/x"), ("PATCH", "/v2/service_instances/x"),
             ("DELETE", "/v2/service_instances/x"), ("GET", "/v2/service_instances/x/last_operation"),
             ("GET", "/v2/service_instances/x"), ("PUT", "/v2/service_instances/x/service_bindings/y"),
             ("DELETE", "/v2/service_instances/x/service_bindings/y"),
             ("GET", "/v2/service_instances/x/service_bindings/y/last_operation"),
             ("GET", "/v2/service_instances/x/service_bindings/y")]


def median_ms(action: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def fill(brokers: int, operations: int) -> Any:
    """Counters for every broker/endpoint/status in every shard; operations; returns one operation for calls."""
    from datetime import timedelta

    from django.utils import timezone

    from brokers.metrics import osb_call_rows
    from brokers.models import Broker, ServiceOffering, ServicePlan
    from instances.models import Operation, ServiceInstance
    from telemetry import counters

    for shard in range(counters.SHARDS):
        counters._shard = lambda shard=shard: shard  # type: ignore[assignment]  # as 8 writers would
        for b in range(brokers):
            calls = [{"method": m, "path": p, "status": status, "duration_ms": 37 * (i + 1)}
                     for i, (m, p) in enumerate(ENDPOINTS) for status in (200, 202, 500, None)]
            counters.record(osb_call_rows(broker=f"broker-{b:02d}", calls=calls))
    broker = Broker.objects.create(name="bench", url="http://127.0.0.1:9/")
    for b in range(brokers):
        Broker.objects.create(name=f"broker-{b:02d}", url="http://127.0.0.1:9/", status="ready")
    offering = ServiceOffering.objects.create(broker=broker, catalog_id="s", name="s", description="s",
                                              content_hash="x")
    plan = ServicePlan.objects.create(broker=broker, offering=offering, catalog_id="p", name="p", description="p",
                                      content_hash="x")
    now = timezone.now()
    instances = ServiceInstance.objects.bulk_create(
        [ServiceInstance(name=f"i{n}", namespace="bench", broker=broker, plan=plan, state="ready")
         for n in range(operations)], batch_size=2000)
    active = operations // 20
    Operation.objects.bulk_create(
        [Operation(type="provision", instance=instance, request_id="bench",
                   state="pending" if n < active else "succeeded",
                   next_poll_at=now - timedelta(minutes=5 if n % 3 == 0 else -5) if n < active else None)
         for n, instance in enumerate(instances)], batch_size=2000)
    return Operation.objects.filter(state="succeeded").first()


def add_calls(operation: Any, count: int) -> None:
    from django.utils import timezone

    from instances.models import OperationCall

    at = timezone.now()
    for start in range(0, count, 5000):
        OperationCall.objects.bulk_create(
            [OperationCall(operation=operation, method="GET", path="/v2/service_instances/x/last_operation",
                           status=200, duration_ms=12, request_id=str(uuid.uuid4()), at=at,
                           response_excerpt='{"state": "in progress"}') for _ in range(min(5000, count - start))])


def scrape(label: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from telemetry import exposition
    from telemetry.models import MetricSample

    size = len(exposition.render())
    took = median_ms(exposition.render, 30)
    database_ms = []
    for _ in range(30):
        with CaptureQueriesContext(connection) as queries:
            exposition.render()
        database_ms.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
    print(f"  {label:<28} {took:6.1f} ms, of which the database {statistics.median(database_ms):5.1f} ms "
          f"({len(queries.captured_queries)} queries); {MetricSample.objects.count()} counter rows, "
          f"{size / 1024:.0f} KiB of text")


def step_cost(steps: int, operation: Any) -> None:
    from django.db import transaction
    from django.utils import timezone

    from brokers.metrics import osb_call_rows
    from instances import metrics
    from instances.models import Operation, OperationCall
    from telemetry.counters import record

    call = {"method": "GET", "path": "/v2/service_instances/x/last_operation", "status": 200, "duration_ms": 12}

    def step(count: bool) -> None:
        with transaction.atomic():
            OperationCall.objects.create(operation=operation, method="GET", path=call["path"], status=200,
                                         duration_ms=12, request_id="r", at=timezone.now())
            Operation.objects.filter(pk=operation.pk).update(polls=1, updated_at=timezone.now())
            if count:
                record(osb_call_rows(broker="bench", calls=[call]))
                metrics.operation_finished(type="provision", state="succeeded")

    without = median_ms(lambda: step(False), steps)
    with_counters = median_ms(lambda: step(True), steps)
    print(f"  step transaction without counters               {without:8.2f} ms")
    print(f"  step transaction with counters (+7 sample rows)  {with_counters:8.2f} ms  "
          f"(+{with_counters - without:.2f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--operations", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)
    prepare_process()
    os.environ["CELERY_BROKER_URL"] = "filesystem://"
    database = ThrowawayDatabase(prefix="bench_metrics")
    try:
        database.create()
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        from django.db import connection

        print(f"Metrics benchmark: {args.brokers} brokers x {len(ENDPOINTS)} endpoints x 4 answers, "
              f"{args.operations} operations, {args.calls} call records")
        print(f"Database: {database.label}")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
              f"load average {os.getloadavg()[0]:.2f}")
        print("\nA. Scrape (GET /metrics), median of 30")
        operation = fill(args.brokers, args.operations)
        scrape("no call records")
        add_calls(operation, args.calls)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM ANALYZE")  # as autovacuum would soon: not the scrape's cost
        scrape(f"{args.calls} call records")
        print(f"\nB. What counting adds to an engine step, median of {args.steps}")
        step_cost(args.steps, operation)
        return 0
    finally:
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
