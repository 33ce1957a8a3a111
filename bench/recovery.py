#!/usr/bin/env python
"""Benchmark of recovery after a worker dies: SIGKILL a worker mid-operation, time until its work moves again.

    python bench/recovery.py [--instances 40] [--call-seconds 2] [--async-seconds 3] [--rounds 3]

Runs on a throwaway database like bench/polling.py (SQLite temp file + filesystem:// transport when DATABASE_URL is
unset; a temporary Postgres database and an EMPTY Redis db from CELERY_BROKER_URL otherwise).

A ``SampleBroker`` answers every provision PUT only after --call-seconds (a long OSB call) and then works
--async-seconds asynchronously. The bench provisions --instances instances, starts a standalone ``celery beat`` (the
sweeper) and two workers, waits until a call is in flight at the broker, and SIGKILLs the older worker's process
group (a replacement starts for the next round). For every operation held at the kill (by either worker: the
survivor's move on at once, so the worst is the dead worker's), recovery = the time from the SIGKILL to the broker's
next request for that instance (the step re-sent by the survivor). Repeated --rounds times. Prints each round's
worst and median recovery,
the lease and sweep settings, and checks that every operation finished with each PUT sent at most twice (once by
the dead worker, once again: the spec allows re-sending a provision).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from common import prepare_process, setup_django, start_process, stop_process_group  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BROKER_USER, BROKER_PASSWORD = "bench", "bench-broker-pass"
INSTANCE_PATH = r"/v2/service_instances/[^/]+"
GOAL_SECONDS = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--call-seconds", type=float, default=2.0, help="how long the broker takes to answer a PUT")
    parser.add_argument("--async-seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="workers killed, one after another")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--flush-redis", action="store_true")
    args = parser.parse_args(argv)
    prepare_process()
    database = ThrowawayDatabase(prefix="bench_recovery")
    processes: list[subprocess.Popen[bytes]] = []
    redis_client = None
    server = None
    try:
        database.create()
        transport, redis_client = setup_django(flush_redis=args.flush_redis)
        from django.conf import settings
        from django.db import connection
        from django.utils import timezone
        from polling import mirror_broker  # bench/polling.py

        from devtools.sample_broker import SampleBroker
        from devtools.sample_broker.server import PASS_THROUGH
        from instances.models import Operation
        from instances.services.instances import instance_provision
        from instances.states import TERMINAL

        print(f"Recovery benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs, "
              f"load {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
        print(f"Database: {database.label}\nCelery transport: {transport}")
        print(f"Lease {settings.OPERATION_LEASE_SECONDS} s renewed every {settings.OPERATION_HEARTBEAT_SECONDS:g} s; "
              f"operations sweep every {settings.OPERATIONS_SWEEP_SECONDS} s; {args.instances} provisions, PUT answered "
              f"after {args.call_seconds:g} s, then {args.async_seconds:g} s async; 2 workers × {args.concurrency} "
              "threads")
        server = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD)
        server.async_mode = "always"
        server.async_seconds = args.async_seconds
        server.start()
        plan = mirror_broker("bench-recovery", server.url)
        server.set_response("PUT", INSTANCE_PATH, PASS_THROUGH, delay=args.call_seconds)
        server.clear_requests()
        for index in range(args.instances):
            instance_provision(plan=plan, name=f"rec-{index}", namespace="bench-recovery")
        connection.close()

        tmp = Path(database.data_dir)
        # One broker only: each worker may use all its threads on it (the per-process share exists for fleets of
        # brokers), so that what is measured is recovery rather than queueing behind the share.
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="catalog_portal.settings", PYTHONUNBUFFERED="1",
                   LOG_LEVEL="INFO", OSB_CALLS_PER_BROKER_PER_PROCESS=str(args.concurrency))
        celery = [sys.executable, "-m", "celery", "-A", "catalog_portal"]
        processes.append(start_process([*celery, "beat", f"--schedule={tmp / 'beat-schedule'}", "--loglevel=INFO"],
                                       tmp / "beat.log", env, ready=None, what="beat"))

        def worker(n: int) -> subprocess.Popen[bytes]:
            process = start_process([*celery, "worker", "--pool=threads", f"--concurrency={args.concurrency}",
                                     "--loglevel=INFO", "--without-mingle", "--without-gossip",
                                     f"--hostname=bench-recovery-{n}-{os.getpid()}@%h"], tmp / f"worker-{n}.log", env)
            processes.append(process)
            return process

        fleet = [worker(0), worker(1)]  # two workers: when one dies, the other is already running
        ops = Operation.objects.filter(instance__namespace="bench-recovery")
        rounds: list[list[float]] = []
        for round_number in range(1, args.rounds + 1):
            deadline = time.monotonic() + 120
            while server.in_flight < 1:  # a worker is in the middle of a call
                if time.monotonic() > deadline or not ops.exclude(state__in=TERMINAL).exists():
                    raise SystemExit("bench: no call in flight (all done?); use more --instances")
                connection.close()
                time.sleep(0.05)
            now = timezone.now()
            # Held by either worker: the survivor's go on at once, the victim's wait for their leases to expire.
            held = {str(i) for i in ops.filter(claimed_until__gt=now).values_list("instance_id", flat=True)}
            connection.close()
            killed_at = time.time()
            victim = fleet.pop(0)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            fleet.append(worker(len(processes)))  # a replacement, for the next round
            # Recovery of each held operation: the broker's next request for its instance after the kill.
            recovered: dict[str, float] = {}
            deadline = time.monotonic() + args.timeout
            while len(recovered) < len(held) and time.monotonic() < deadline:
                for request in server.requests:
                    instance = request.path.split("/")[3] if request.path.count("/") >= 3 else ""
                    if instance in held and instance not in recovered and request.at > killed_at:
                        recovered[instance] = request.at - killed_at
                # An operation the survivor finished without another call (its last step was under way) moved on too.
                for instance, finished in ops.filter(instance_id__in=list(held - set(recovered)),
                                                     finished_at__isnull=False).values_list("instance_id",
                                                                                            "finished_at"):
                    recovered[str(instance)] = max(finished.timestamp() - killed_at, 0.0)
                connection.close()
                time.sleep(0.05)
            values = sorted(recovered.values())
            rounds.append(values)
            missing = len(held) - len(values)
            print(f"Round {round_number}: killed a worker holding {len(held)} operation(s); "
                  f"recovered {len(values)} — worst {max(values, default=float('nan')):.1f} s, "
                  f"median {statistics.median(values) if values else float('nan'):.1f} s"
                  + (f"; {missing} NOT recovered within {args.timeout:g} s" if missing else ""))
        deadline = time.monotonic() + args.timeout
        while ops.exclude(state__in=TERMINAL).exists() and time.monotonic() < deadline:
            connection.close()
            time.sleep(0.5)
        states = Counter(ops.values_list("state", flat=True))
        puts = Counter(r.path for r in server.requests if r.method == "PUT")
        worst = max((v for r in rounds for v in r), default=float("nan"))
        print(f"All operations: {dict(states)}; PUTs per instance: {dict(Counter(puts.values()))} "
              f"(2 = re-sent once after a kill)")
        print(f"Worst recovery {worst:.1f} s (goal ≤ {GOAL_SECONDS:g} s): "
              + ("met" if worst <= GOAL_SECONDS and states.get("succeeded") == args.instances else "NOT MET"))
        return 0
    finally:
        for process in processes:
            stop_process_group(process)
        if server is not None:
            server.stop()
        if redis_client is not None:
            redis_client.flushdb()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
