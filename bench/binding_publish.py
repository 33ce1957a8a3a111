#!/usr/bin/env python
"""Benchmark: time from a binding's success to its Secret being present in the cluster.

    python bench/binding_publish.py [--bindings 200] [--threads 8] [--concurrency 8] [--check]

Runs against whatever database DATABASE_URL names, but never touches the data in it:

* DATABASE_URL unset  -> a fresh SQLite file in a temporary PORTAL_DATA_DIR (removed at the end), and the
  embedded ``filesystem://`` Celery transport in that directory (unless CELERY_BROKER_URL is set);
* DATABASE_URL=postgres://... -> a temporary database ``bench_bind_<pid>`` is created on that server,
  migrated, and dropped at the end. With CELERY_BROKER_URL=redis://.../<db> use a dedicated, empty Redis
  database: the bench refuses a non-empty one (unless --flush-redis) and flushes it at the end.

Set-up: a real ``SampleBroker`` over HTTP and the Kubernetes API stand-in (``devtools.kube_standin``) on
127.0.0.1, reached through a KUBECONFIG like a real cluster; the catalog is mirrored and one
redis-cache/cache-free instance (a sync, bindable plan) is provisioned by ONE real
``celery -A catalog_portal worker --pool=threads --beat`` subprocess. Then N bindings are created through the
service (``binding_create``, what the API calls) from --threads threads at once. The worker binds each at the
broker, marks its publication due and enqueues ``binding_publish`` on commit, which writes the Secret.

Measure: a thread in this process lists the stand-in's Secrets every 20 ms and records when each binding's
Secret is first present; latency = that time - the bind operation's ``finished_at`` (written by the worker
when the broker's success was recorded; same host clock). Reported: p50, p95, max; goal p95 <= 5 s.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from common import prepare_process, setup_django, start_process, stop_process_group  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BROKER_USER, BROKER_PASSWORD = "bench", "bench-broker-pass"
NAMESPACE = "bench"
GOAL_P95_S = 5.0
POLL_S = 0.02


class SecretWatcher(threading.Thread):
    """Records when each Secret in the namespace is first present, polling the stand-in every POLL_S."""

    def __init__(self, kube: Any) -> None:
        super().__init__(name="secret-watcher", daemon=True)
        self.kube = kube
        self.seen: dict[str, float] = {}
        self.polls = 0
        self.poll_cost = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.perf_counter()
            now = time.time()
            for secret in self.kube.list_secrets(NAMESPACE):
                self.seen.setdefault(secret["metadata"]["name"], now)
            self.polls += 1
            self.poll_cost += time.perf_counter() - started
            self.stopping.wait(POLL_S)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def start_worker(tmp: Path, concurrency: int) -> tuple[subprocess.Popen[bytes], Path, float]:
    log_path = tmp / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "catalog_portal", "worker", "--pool=threads",
               f"--concurrency={concurrency}", "--loglevel=INFO", "--without-mingle", "--without-gossip",
               f"--hostname=bench-bind-{os.getpid()}@%h", "--beat", f"--schedule={tmp / 'beat-schedule'}"]
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="catalog_portal.settings", PYTHONUNBUFFERED="1", LOG_LEVEL="INFO")
    spawned = time.monotonic()
    process = start_process(command, log_path, env)
    return process, log_path, time.monotonic() - spawned


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def run(args: argparse.Namespace, tmp: Path, transport: str) -> list[str]:
    from django.conf import settings
    from django.db import connection

    from brokers import services as broker_services
    from brokers.models import ServicePlan
    from devtools.kube_standin import KubeStandIn
    from devtools.sample_broker import SampleBroker
    from instances.models import Operation, ServiceBinding, ServiceInstance
    from instances.services.bindings import binding_create
    from instances.services.instances import instance_provision
    from instances.states import OpType

    server = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD).start()
    kube = KubeStandIn(namespaces=("default", NAMESPACE)).start()
    os.environ["KUBECONFIG"] = str(kube.write_kubeconfig(tmp / "kubeconfig"))
    os.environ.pop("KUBERNETES_SERVICE_HOST", None)
    watcher = SecretWatcher(kube)
    process: subprocess.Popen[bytes] | None = None
    try:
        broker = broker_services.broker_register(
            name="bench-bind", url=server.url,
            auth=broker_services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD),
        )
        sync = broker_services.catalog_sync(broker_id=broker.pk, force=True)
        if sync is None or sync.error:
            raise SystemExit(f"bench: catalog sync failed: {getattr(sync, 'error', 'not run')}")
        plan = ServicePlan.objects.select_related("offering").get(broker=broker, offering__name="redis-cache",
                                                                  name="cache-free")
        process, log_path, worker_start_s = start_worker(tmp, args.concurrency)
        instance = instance_provision(plan=plan, name="bench-cache", namespace=NAMESPACE)

        def instance_ready() -> bool:
            state = ServiceInstance.objects.filter(pk=instance.pk).values_list("state", flat=True).first()
            connection.close()
            if state == "failed":
                raise SystemExit("bench: the provision failed")
            return state == "ready"

        wait_until(instance_ready, 60, "the instance to be provisioned")
        instance.refresh_from_db()
        connection.close()
        kube.requests.clear()
        watcher.start()

        def create(index: int) -> float:
            try:
                started = time.perf_counter()
                binding_create(instance=instance, name=f"b-{index:04d}")
                return time.perf_counter() - started
            finally:
                connection.close()

        wall_start = time.time()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            create_times = list(pool.map(create, range(args.bindings)))
        created_s = time.time() - wall_start
        names = {f"b-{index:04d}" for index in range(args.bindings)}
        timed_out = False
        try:
            wait_until(lambda: names <= watcher.seen.keys(), args.timeout, "every Secret")
        except SystemExit:
            timed_out = True
        wall_s = max(watcher.seen.values(), default=time.time()) - wall_start
        time.sleep(1.0)  # let the last publication rows be written
        watcher.stopping.set()
        watcher.join()
        stop_process_group(process)

        bindings = {b.pk: b for b in ServiceBinding.objects.filter(instance=instance)}
        finished = dict(Operation.objects.filter(type=OpType.BIND, binding__instance=instance, state="succeeded")
                        .values_list("binding_id", "finished_at"))
        latencies = [watcher.seen[b.secret_name] - finished[pk].timestamp() for pk, b in bindings.items()
                     if pk in finished and b.secret_name in watcher.seen]
        bind_times = [finished[pk].timestamp() - b.created_at.timestamp() for pk, b in bindings.items() if pk in finished]
        publication = Counter(b.publication_state for b in bindings.values())
        methods = Counter(r["method"] for r in kube.requests if "/secrets" in r["path"])
        log_text = log_path.read_text(errors="replace")
        publish_tasks = len(re.findall(r"Task instances\.binding_publish\[[^\]]+\] received", log_text))
        reconciles = len(re.findall(r"Task instances\.bindings_reconcile\[[^\]]+\] succeeded", log_text))
        problems = Counter(m[1] for m in re.finditer(r"(?:WARNING|ERROR|CRITICAL)/\S+\] (.{0,100})", log_text))

        print(f"{args.bindings} bindings (redis-cache/cache-free, sync bind), created from {args.threads} threads "
              f"via binding_create; ONE worker --pool=threads --concurrency={args.concurrency} + embedded beat "
              f"(sweep every {settings.SWEEP_INTERVAL_SECONDS} s, reconcile every {settings.K8S_RECONCILE_SECONDS} s)")
        print(f"  worker ready {worker_start_s:.1f} s after spawn; {args.bindings} binding_create calls took "
              f"{created_s:.2f} s (median {statistics.median(create_times) * 1000:.0f} ms each)")
        print()
        rows = [
            ("binding success -> Secret present: p50", f"{percentile(latencies, 50):.3f} s" if latencies else "-"),
            ("binding success -> Secret present: p95", f"{percentile(latencies, 95):.3f} s" if latencies else "-"),
            ("binding success -> Secret present: max", f"{max(latencies):.3f} s" if latencies else "-"),
            ("binding success -> Secret present: min", f"{min(latencies):.3f} s" if latencies else "-"),
            ("binding created -> bind succeeded: p50 / p95", f"{percentile(bind_times, 50):.2f} s / "
                                                             f"{percentile(bind_times, 95):.2f} s" if bind_times else "-"),
            ("total wall time (first create -> last Secret)", f"{wall_s:.2f} s" + (" (TIMED OUT)" if timed_out else "")),
            ("Secrets present / bindings / binds succeeded", f"{len(names & watcher.seen.keys())} / {len(bindings)} / "
                                                             f"{len(finished)}"),
            ("publication states at the end", ", ".join(f"{k}: {v}" for k, v in sorted(publication.items()))),
            ("Secret API calls at the stand-in", ", ".join(f"{k} {v}" for k, v in sorted(methods.items()))),
            ("binding_publish tasks received (worker log)", str(publish_tasks)),
            ("bindings_reconcile runs (worker log)", str(reconciles)),
            ("worker warnings/errors in log", str(sum(problems.values()))),
            ("watcher polls (mean cost)", f"{watcher.polls} ({watcher.poll_cost / max(watcher.polls, 1) * 1000:.1f} ms)"),
        ]
        for label, value in rows:
            print(f"  {label:<48} {value}")
        for message, count in problems.most_common(5):
            print(f"    {count} x {message}")
        print()
        missed = []
        p95 = percentile(latencies, 95) if latencies else float("inf")
        if timed_out or len(latencies) < args.bindings:
            missed.append("not every binding's Secret was published")
        if p95 > GOAL_P95_S:
            missed.append(f"p95 {p95:.2f} s > {GOAL_P95_S:g} s")
        print(f"Goal p95 <= {GOAL_P95_S:g} s: " + ("MET" if not missed else "NOT MET: " + ", ".join(missed)))
        return missed
    finally:
        watcher.stopping.set()
        if process is not None:
            stop_process_group(process)
        kube.stop()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindings", type=int, default=200, help="bindings to create (default 200)")
    parser.add_argument("--threads", type=int, default=8, help="threads calling binding_create (default 8)")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads (default 8)")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many s (default 300)")
    parser.add_argument("--flush-redis", action="store_true", help="empty a non-empty Redis CELERY_BROKER_URL db")
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is not met")
    args = parser.parse_args(argv)

    prepare_process()

    database = ThrowawayDatabase(prefix="bench_bind")
    redis_client = None
    try:
        database.create()
        transport, redis_client = setup_django(flush_redis=args.flush_redis)
        print(f"Binding publication benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
              + "/".join(f"{v:.1f}" for v in os.getloadavg()))
        print(f"Database: {database.label}")
        print(f"Celery transport: {transport}")
        print("Cluster: Kubernetes API stand-in over HTTP on 127.0.0.1 (KUBECONFIG); broker: SampleBroker over HTTP")
        print()
        missed = run(args, Path(database.data_dir), transport)
        return 1 if (args.check and missed) else 0
    finally:
        if redis_client is not None:
            redis_client.flushdb()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
