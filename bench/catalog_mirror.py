#!/usr/bin/env python
"""Benchmark of the catalog mirror: cold sync, unchanged relist, and a relist with 1% of plans changed.

    python bench/catalog_mirror.py [--services 1000 --plans 5] [--seed 0] [--no-schemas] [--etag] [--via-worker]
                                   [--check]

Runs against whatever database DATABASE_URL names, but never touches the data in it:

* DATABASE_URL unset  -> a fresh SQLite file in a temporary PORTAL_DATA_DIR (removed at the end);
* DATABASE_URL=postgres://... -> a temporary database ``bench_catalog_<pid>`` is created on that
  server, migrated, and dropped at the end.

PORTAL_DATA_DIR is always a temporary directory (keys, static root) and CELERY_BROKER_URL is forced to the
embedded ``filesystem://`` queue inside it, so the registration's Celery nudge never reaches a real worker.

A real ``SampleBroker`` serves a generated catalog over HTTP on 127.0.0.1 (basic auth, no ETag, so
every relist is a full fetch + validation + diff: the worst case). Each scenario calls
``brokers.services.catalog_sync(broker_id=..., force=True)`` exactly as the worker does, and counts
every SQL statement sent through Django and the rows each INSERT/UPDATE/DELETE affected
(``cursor.rowcount``; ``total_changes`` on SQLite), split into catalog rows (offerings, plans) and
bookkeeping rows (the CatalogSync record and the broker row). ``--etag`` adds two informative relists
with the broker's ETag support on (one 200 that stores the ETag, then a 304 that skips validation and the
mirror). ``--via-worker`` measures the cold mirror as a user gets it instead: a real Celery worker
(``--pool=threads``, on the embedded file queue) is started, the broker is registered with ``broker_register`` (what
the API and the admin call; its sync is queued on commit) and the time runs until the broker row says ``ready``
(polled every 10 ms); the worker is then stopped and the relists run in this process as above. ``--check`` exits 1
if a goal is missed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import prepare_process, start_process, stop_process_group  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_COLD_S = 3.0  # issue 13 (Postgres; was 10 s)
GOAL_RELIST_S = 2.0
GOAL_ETAG_RELIST_S = 0.2  # issue 13: an unchanged relist answered with a 304
CATALOG_TABLES = ("brokers_serviceoffering", "brokers_serviceplan")
BOOKKEEPING_TABLES = ("brokers_catalogsync", "brokers_broker", "brokers_catalogdocument", "teams_auditrecord")
BROKER_USER, BROKER_PASSWORD = "bench", "bench-broker-pass"
CURRENT: dict[str, Any] = {}  # the SqlCounter of the sync being measured
_WRITE = re.compile(r'^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?([A-Za-z0-9_]+)"?', re.IGNORECASE)


# --- SQL accounting -------------------------------------------------------------------------------


@dataclass
class SqlStats:
    statements: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)  # statement kind -> count
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)  # (verb, table) -> affected rows

    def catalog_rows(self, verb: str | None = None) -> int:
        return sum(
            n for (v, t), n in self.rows.items() if t in CATALOG_TABLES and (verb is None or v == verb)
        )

    def bookkeeping_rows(self) -> int:
        return sum(n for (_, t), n in self.rows.items() if t in BOOKKEEPING_TABLES)

    def other_rows(self) -> int:
        return sum(n for (_, t), n in self.rows.items() if t not in CATALOG_TABLES + BOOKKEEPING_TABLES)


class SqlCounter:
    """A `connection.execute_wrapper` that counts statements and the rows each write statement affected."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.sqlite = connection.vendor == "sqlite"
        self.stats = SqlStats()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        match = _WRITE.match(sql)
        before = self._total_changes() if (match and self.sqlite) else 0
        result = execute(sql, params, many, context)
        self.stats.statements += 1
        if match:
            verb = match.group(1).split()[0].upper()
            table = match.group(2).lower()
            self.stats.by_kind[verb] += 1
            # sqlite3's cursor.rowcount is not final for INSERT ... RETURNING until the rows are fetched;
            # the connection's total_changes is exact once the statement has stepped.
            affected = self._total_changes() - before if self.sqlite else max(context["cursor"].rowcount, 0)
            self.stats.rows[(verb, table)] += affected
        else:
            self.stats.by_kind[(sql.lstrip().split(None, 1) or ["?"])[0].upper()] += 1
        return result

    def _total_changes(self) -> int:
        return int(self.connection.connection.total_changes)


def encoded(catalog: dict[str, Any]) -> bytes:
    return json.dumps(catalog).encode("utf-8")


# --- timing hooks ---------------------------------------------------------------------------------


class Phases:
    """Times the catalog GET (HTTP + JSON decoding), check_catalog (the conformance scorecard's catalog checks,
    which also check the schemas first), parse_catalog (validation) and mirror_catalog (DB diff, the sync's diff,
    and writes) inside catalog_sync, by wrapping them in this process only (no file is changed)."""

    def __init__(self) -> None:
        self.fetch = 0.0
        self.checks = 0.0
        self.validate = 0.0
        self.mirror = 0.0

    def install(self) -> None:
        from brokers import services
        from brokers.osb import OSBClient

        original_parse, original_mirror = services.parse_catalog, services.mirror_catalog
        original_checks = services.check_catalog
        original_send = OSBClient.send

        def send(client: Any, request: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_send(client, request, **kwargs)
            finally:
                if request.kind == "catalog":
                    self.fetch += time.perf_counter() - start

        OSBClient.send = send  # type: ignore[method-assign,assignment]

        def check_catalog(document: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_checks(document, **kwargs)
            finally:
                self.checks += time.perf_counter() - start

        def parse_catalog(document: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_parse(document, **kwargs)
            finally:
                self.validate += time.perf_counter() - start

        def mirror_catalog(**kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original_mirror(**kwargs)
            finally:
                self.mirror += time.perf_counter() - start

        from brokers import mirror

        original_insert = getattr(mirror, "insert_rows", None)
        if original_insert is not None:  # COPY on Postgres bypasses execute wrappers: count its rows here

            def insert_rows(model: Any, objs: list[Any]) -> Any:
                result = original_insert(model, objs)
                counter = CURRENT.get("counter")
                from django.db import connection

                if counter is not None and objs and connection.vendor == "postgresql":
                    counter.stats.statements += 1
                    counter.stats.by_kind["COPY"] += 1
                    counter.stats.rows[("INSERT", model._meta.db_table)] += len(objs)
                return result

            mirror.insert_rows = insert_rows

        services.parse_catalog = parse_catalog  # type: ignore[attr-defined]
        services.check_catalog = check_catalog  # type: ignore[attr-defined]
        services.mirror_catalog = mirror_catalog

    def reset(self) -> None:
        self.fetch = self.checks = self.validate = self.mirror = 0.0


# --- scenarios ------------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: float
    cpu_s: float  # CPU time of this process (the portal's work and the in-process broker's), not the database's
    fetch_s: float
    checks_s: float
    validate_s: float
    mirror_s: float
    sql: SqlStats
    outcome: str
    added: int
    changed: int
    deactivated: int
    offerings_active: int
    plans_active: int


def run_sync(name: str, broker_id: Any, phases: Phases) -> Result:
    from django.db import connection

    from brokers.models import ServiceOffering, ServicePlan
    from brokers.services import catalog_sync

    phases.reset()
    counter = SqlCounter(connection)
    CURRENT["counter"] = counter
    connection.ensure_connection()
    with connection.execute_wrapper(counter):
        start, start_cpu = time.perf_counter(), time.process_time()
        sync = catalog_sync(broker_id=broker_id, force=True)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    if sync is None or sync.outcome == "failed":
        raise SystemExit(f"bench: {name}: sync failed: {getattr(sync, 'error', 'not run')}")
    return Result(
        name=name,
        seconds=seconds,
        cpu_s=cpu_s,
        fetch_s=phases.fetch,
        checks_s=phases.checks,
        validate_s=phases.validate,
        mirror_s=phases.mirror,
        sql=counter.stats,
        outcome=sync.outcome,
        added=sync.added,
        changed=sync.changed,
        deactivated=sync.deactivated,
        offerings_active=ServiceOffering.objects.filter(broker_id=broker_id, active=True).count(),
        plans_active=ServicePlan.objects.filter(broker_id=broker_id, active=True).count(),
    )


def change_plans(catalog: dict[str, Any], fraction: float, seed: int) -> tuple[dict[str, Any], int]:
    """A copy of `catalog` in which `fraction` of the plans have a new description."""
    changed = copy.deepcopy(catalog)
    plans = [plan for service in changed["services"] for plan in service["plans"]]
    picked = random.Random(seed).sample(plans, k=max(1, round(len(plans) * fraction)))
    for plan in picked:
        plan["description"] += " (revised)"
    return changed, len(picked)


def count_schemas(catalog: dict[str, Any]) -> int:
    total = 0
    for service in catalog["services"]:
        for plan in service["plans"]:
            for section in (plan.get("schemas") or {}).values():
                total += sum(1 for step in section.values() if "parameters" in step)
    return total


# --- report ---------------------------------------------------------------------------------------


def print_report(results: list[Result], expected_changed: int) -> list[str]:
    header = (
        f"{'scenario':<28} {'total s':>8} {'CPU s':>6} {'fetch s':>8} {'checks s':>8} {'valid. s':>8} {'mirror s':>8} {'SQL stmts':>9}  "
        f"{'catalog rows written':<24} {'bookkeeping rows':>16}  {'sync: added/changed/deact.':<26}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rows = (
            f"{r.sql.catalog_rows()} (ins {r.sql.catalog_rows('INSERT')} / upd {r.sql.catalog_rows('UPDATE')}"
            f" / del {r.sql.catalog_rows('DELETE')})"
        )
        summary = f"{r.outcome}: {r.added}/{r.changed}/{r.deactivated}"
        print(
            f"{r.name:<28} {r.seconds:>8.2f} {r.cpu_s:>6.2f} {r.fetch_s:>8.2f} {r.checks_s:>8.2f} {r.validate_s:>8.2f} {r.mirror_s:>8.2f} "
            f"{r.sql.statements:>9}  {rows:<24} {r.sql.bookkeeping_rows():>16}  {summary:<26}"
        )
    print()
    print("Statement kinds per scenario:")
    for r in results:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.sql.by_kind.items()))
        writes = ", ".join(f"{v} {t} {n}" for (v, t), n in sorted(r.sql.rows.items()))
        print(f"  {r.name}: {kinds}")
        print(f"  {'':<{len(r.name)}}  rows: {writes or 'none'}")
        if r.sql.other_rows():
            print(f"  {'':<{len(r.name)}}  (!) {r.sql.other_rows()} rows written to other tables")
    print()
    cold, relist, partial = results[:3]
    print(f"Goals: cold ≤ {GOAL_COLD_S:g} s, unchanged relist ≤ {GOAL_RELIST_S:g} s with 0 rows written")
    missed = []
    ok = cold.seconds <= GOAL_COLD_S
    print(f"  cold mirror:       {cold.seconds:6.2f} s  {'MET' if ok else 'NOT MET'}")
    if not ok:
        missed.append("cold")
    ok = relist.seconds <= GOAL_RELIST_S and relist.sql.catalog_rows() == 0
    print(
        f"  unchanged relist:  {relist.seconds:6.2f} s, {relist.sql.catalog_rows()} catalog rows written "
        f"({relist.sql.bookkeeping_rows()} bookkeeping rows)  {'MET' if ok else 'NOT MET'}"
    )
    if not ok:
        missed.append("relist")
    ok = partial.sql.catalog_rows() == expected_changed
    print(
        f"  1% plans changed:  {partial.seconds:6.2f} s, {partial.sql.catalog_rows()} catalog rows written "
        f"(expected {expected_changed})  {'as expected' if ok else 'UNEXPECTED'}"
    )
    if not ok:
        missed.append("partial")
    not_modified = [r for r in results if r.name == "ETag relist (304)"]
    if not_modified:
        ok = not_modified[0].seconds <= GOAL_ETAG_RELIST_S
        print(f"  ETag relist (304): {not_modified[0].seconds:6.2f} s (goal ≤ {GOAL_ETAG_RELIST_S:g} s)  "
              f"{'MET' if ok else 'NOT MET'}")
        if not ok:
            missed.append("etag relist")
    print(
        "Bookkeeping rows = the CatalogSync record (INSERT + final UPDATE) and the broker row (lease claim, status, "
        "conformance score, next relist), written by every sync; a sync that fetched a changed catalog also writes "
        "the ETag, the catalog document (its checks, then the document) and an audit record."
    )
    return missed


# --- registration to ready through a worker (--via-worker) --------------------------------------------


def start_worker(data_dir: str) -> subprocess.Popen[bytes]:
    log_path = Path(data_dir) / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "catalog_portal", "worker", "--pool=threads", "--concurrency=2",
               "--without-mingle", "--without-gossip", "--loglevel=INFO", f"--hostname=bench-mirror-{os.getpid()}@%h"]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="catalog_portal.settings", PYTHONUNBUFFERED="1")
    return start_process(command, log_path, env)


def wait_until_ready(broker_id: Any, registered_at: float, worker: subprocess.Popen[bytes]) -> Result:
    """Registration (already done at `registered_at`) -> the broker row `ready` after its first sync."""
    from django.db import connection

    from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan

    try:
        deadline = time.monotonic() + 300
        while True:
            status, synced = Broker.objects.filter(pk=broker_id).values_list("status", "last_synced_at").get()
            if status == Broker.Status.READY and synced is not None:
                seconds = time.perf_counter() - registered_at
                break
            if status == Broker.Status.FAILED or time.monotonic() > deadline:
                raise SystemExit(f"bench: the worker's first sync did not make the broker ready ({status})")
            connection.close()
            time.sleep(0.01)
    finally:
        stop_process_group(worker)
    sync = CatalogSync.objects.filter(broker_id=broker_id).order_by("started_at").first()
    assert sync is not None
    print(f"Registration -> ready through the worker: {seconds:.2f} s, of which the worker's sync (its CatalogSync "
          f"record) {sync.duration_ms / 1000:.2f} s; the rest is the commit, the queue, the worker taking the message "
          "and this 10 ms poll.")
    return Result(
        name="registration -> ready (worker)", seconds=seconds, cpu_s=0.0, fetch_s=0.0, checks_s=0.0,
        validate_s=0.0, mirror_s=0.0, sql=SqlCounter(connection).stats, outcome=sync.outcome, added=sync.added,
        changed=sync.changed, deactivated=sync.deactivated,
        offerings_active=ServiceOffering.objects.filter(broker_id=broker_id, active=True).count(),
        plans_active=ServicePlan.objects.filter(broker_id=broker_id, active=True).count(),
    )


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000, help="offerings in the catalog (default 1000)")
    parser.add_argument("--plans", type=int, default=5, help="plans per offering (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="generate_catalog seed (default 0)")
    parser.add_argument("--no-schemas", action="store_true", help="generate plans without parameter schemas")
    parser.add_argument(
        "--etag", action="store_true", help="also measure relists with ETag support on (200, then 304)"
    )
    parser.add_argument("--via-worker", action="store_true",
                        help="cold mirror = registration to ready through a real Celery worker")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = parser.parse_args(argv)

    prepare_process()
    # Registration queues a Celery nudge after commit: send it to the embedded file queue inside the
    # temporary PORTAL_DATA_DIR, so no real worker (e.g. one on a Redis CELERY_BROKER_URL) ever sees it.
    os.environ["CELERY_BROKER_URL"] = "filesystem://"

    database = ThrowawayDatabase(prefix="bench_catalog")
    broker_server = None
    try:
        database.create()
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)

        from brokers import services
        from devtools.sample_broker import SampleBroker, generate_catalog

        catalog = generate_catalog(
            args.services, args.plans, seed=args.seed, with_schemas=not args.no_schemas
        )
        plans_total = sum(len(s["plans"]) for s in catalog["services"])
        # Served as encoded bytes: a broker answers from its document, the stand-in's json.dumps of 9.5 MB (and, with
        # ETags, its hash) per request is not the portal's work (it ran in this process, inside the timed fetch).
        broker_server = SampleBroker(catalog=encoded(catalog), username=BROKER_USER, password=BROKER_PASSWORD)
        broker_server.etag_support = False  # every relist is a full GET + validation + diff
        broker_server.start()

        worker = start_worker(database.data_dir) if args.via_worker else None
        registered_at = time.perf_counter()
        broker = services.broker_register(
            name="bench-broker",
            url=broker_server.url,
            auth=services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD),
        )
        via_worker = wait_until_ready(broker.pk, registered_at, worker) if worker is not None else None
        phases = Phases()
        phases.install()

        print(
            f"Catalog mirror benchmark: {len(catalog['services'])} services / {plans_total} plans / "
            f"{count_schemas(catalog)} parameter schemas, broker {broker_server.url} "
            f"({'ETag on for the last two relists' if args.etag else 'no ETag'})"
        )
        print(f"Database: {database.label}")
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}")
        print()

        load_start = os.getloadavg()[0]
        results = [via_worker if via_worker is not None else run_sync("cold mirror", broker.pk, phases)]
        results.append(run_sync("unchanged relist", broker.pk, phases))
        changed_catalog, changed = change_plans(catalog, 0.01, args.seed)
        broker_server.catalog = encoded(changed_catalog)
        results.append(run_sync("relist, 1% plans changed", broker.pk, phases))
        if args.etag:
            broker_server.etag_support = True
            results.append(run_sync("ETag relist (200, stores it)", broker.pk, phases))
            results.append(run_sync("ETag relist (304)", broker.pk, phases))
        missed = print_report(results, changed)
        load_end = os.getloadavg()[0]
        print(
            f"Load average (1 min) at start / end: {load_start:.2f} / {load_end:.2f} on {os.cpu_count()} CPUs"
            " (other work on the machine skews the figures)."
        )
        return 1 if (args.check and missed) else 0
    finally:
        if broker_server is not None:
            broker_server.stop()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
