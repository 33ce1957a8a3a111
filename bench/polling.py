#!/usr/bin/env python
"""Benchmark of operation polling: the polling schedule, and the throughput of one worker.

    python bench/polling.py [--instances 1000] [--async-seconds 5] [--concurrency 8] [--profile]
                            [--what-if ssl-cache,fs-poll] [--skip-schedule] [--skip-throughput] [--check]

Runs against whatever database DATABASE_URL names, but never touches the data in it:

* DATABASE_URL unset  -> a fresh SQLite file in a temporary PORTAL_DATA_DIR (removed at the end), and the
  embedded ``filesystem://`` Celery transport in that directory (unless CELERY_BROKER_URL is set);
* DATABASE_URL=postgres://... -> a temporary database ``bench_poll_<pid>`` is created on that server,
  migrated, and dropped at the end. Use CELERY_BROKER_URL=redis://.../<db> with a dedicated, empty Redis
  database: the bench refuses a non-empty one (unless --flush-redis) and flushes it at the end.

Part A (schedule) drives the real engine, ``instances.services.operations.operation_step``, against a real
``SampleBroker`` over HTTP on a virtual clock: ``django.utils.timezone.now`` is patched to return a clock
that only moves when the bench advances it, by exactly the delay ``operation_step`` returned (as a Celery
countdown would, with zero queueing and processing latency). The provision PUT gets the broker's real
202; every ``last_operation`` is answered with a scripted 200 ``in progress`` (no Retry-After, so the
engine's own ``poll_delay`` schedule applies) until the virtual time reaches the operation's end time E,
then ``succeeded``. Detection delay = virtual time of the poll that sees ``succeeded`` minus E. For each
duration T it reports the delay when E = T exactly, the worst delay when E is swept across the polling
interval containing T (the goal's measure), and the worst delay for any E within T +/- 10 %.

Part B (throughput) creates N instances with ``instance_provision`` (status-page/basic, no schema) against a
``SampleBroker`` with async_mode="always" and async_seconds=5 (which answers ``in progress`` with
``Retry-After: 1``), then starts ONE real ``celery -A catalog_portal worker --pool=threads`` subprocess with
the sweeper (embedded beat), and waits until every operation is terminal. Polls are counted at the broker.
``--profile`` runs the worker with per-phase timers (claim, client construction, OSB call, write) and
profiles operation steps in-process with cProfile. ``--what-if`` runs the worker with experiments applied in its
own process only (a per-process SSL context; a 0.1 s filesystem-transport polling interval) to measure a proposed
fix without changing project files. ``--check`` exits 1 if a goal is not met.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from common import prepare_process, setup_django, start_process, stop_process_group  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BROKER_USER, BROKER_PASSWORD = "bench", "bench-broker-pass"
LAST_OPERATION = r"/v2/service_instances/[^/]+/last_operation"
EPSILON = 0.001  # an operation ending this long after a poll is seen one full interval later
# Issue goals: duration -> (max polls, max worst detection delay in seconds)
GOALS = {300.0: (15, 30.0), 3600.0: (80, 60.0)}
DURATIONS = (10.0, 30.0, 300.0, 1200.0, 3600.0)
WINDOW = 0.10  # the "about T" window: T +/- 10 %
SWEEP_POINTS = 4  # end times per polling interval in the interval sweep


def mirror_broker(name: str, url: str) -> Any:
    from brokers import services
    from brokers.models import ServicePlan

    broker = services.broker_register(
        name=name, url=url, auth=services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    )
    sync = services.catalog_sync(broker_id=broker.pk, force=True)
    if sync is None or sync.error:
        raise SystemExit(f"bench: catalog sync of {name} failed: {getattr(sync, 'error', 'not run')}")
    return ServicePlan.objects.select_related("offering", "broker").get(
        broker=broker, offering__name="status-page", name="basic"
    )


# --- Part A: the polling schedule on a virtual clock -------------------------------------------------


class VirtualClock:
    """`timezone.now` replacement: starts at the real time and only moves when `advance` is called."""

    def __init__(self) -> None:
        self.base = datetime.now(UTC)
        self.elapsed = 0.0

    def now(self) -> datetime:
        return self.base + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@dataclass
class Trace:
    end: float  # when the broker finishes, seconds after it accepted the request
    poll_times: list[float]  # virtual seconds after acceptance of every last_operation call
    detected: float | None  # when the portal saw the outcome
    polls: int  # Operation.polls as the engine counted them
    state: str

    @property
    def delay(self) -> float:
        return (self.detected if self.detected is not None else float("nan")) - self.end


class ScheduleRunner:
    """Runs one provision through the real engine against the scripted broker, on a virtual clock."""

    # Every operation has its own jitter constant (instances.states.operation_jitter); the bench fixes it so that every
    # run sees one schedule: 0.999 (the most a delay is stretched while backing off, and shortened at the cap).
    JITTER = 0.999

    def __init__(self, server: Any, plan: Any, prefix: str = "sched") -> None:
        self.server = server
        self.plan = plan
        self.prefix = prefix
        self.runs = 0
        self.steps = 0

    def _script(self, done: bool) -> None:
        self.server.clear_responses()
        body = {"state": "succeeded", "description": "Done"} if done else {"state": "in progress",
                                                                          "description": "Working"}
        self.server.set_response("GET", LAST_OPERATION, 200, body=body)  # no Retry-After header

    def run(self, end: float) -> Trace:
        from instances.models import Operation
        from instances.services.instances import instance_provision
        from instances.services.operations import operation_step
        from instances.states import Phase

        self.runs += 1
        clock = VirtualClock()
        nudges = mock.patch("instances.services.instances.enqueue_on_commit")  # no Celery message: we step
        cleanups = mock.patch("instances.services.operations.enqueue_on_commit")
        jitter = mock.patch("instances.services.operations.operation_jitter", lambda key: self.JITTER)
        with mock.patch("django.utils.timezone.now", clock.now), nudges, cleanups, jitter:
            instance = instance_provision(plan=self.plan, name=f"{self.prefix}-{self.runs}", namespace="bench-schedule")
            op_id = Operation.objects.get(instance=instance).pk
            self.server.clear_requests()
            self._script(False)
            delay = operation_step(operation_id=op_id)  # the PUT: the broker's real 202
            self.steps += 1
            op = Operation.objects.get(pk=op_id)
            if op.phase != Phase.POLL or op.accepted_at != clock.now():
                raise SystemExit(f"bench: the provision was not accepted asynchronously ({op.state}: {op.error})")
            poll_times: list[float] = []
            detected = None
            while delay is not None:
                clock.advance(delay)
                self._script(clock.elapsed >= end)
                delay = operation_step(operation_id=op_id)
                self.steps += 1
                polls = len(self.server.requests_for("GET", LAST_OPERATION))
                if polls > len(poll_times):
                    poll_times.append(clock.elapsed)
                if clock.elapsed >= end and detected is None:
                    detected = clock.elapsed
                if clock.elapsed > end + 3600:
                    raise SystemExit("bench: the engine kept polling an hour after the broker finished")
        self.server.clear_responses()
        op = Operation.objects.get(pk=op_id)
        # The bench's own runs are not history the learned schedule may use (each run must see the same schedule).
        Operation.objects.filter(pk=op_id).update(accepted_at=None)
        return Trace(end=end, poll_times=poll_times, detected=detected, polls=op.polls, state=op.state)


HISTORY_GOAL = (12, 10.0)  # 5 min +/- 10 % with a history: <= 12 polls, <= 10 s detection delay


def catalog_with_own_ids(url: str, namespace: str) -> dict[str, Any]:
    """The sample catalog for `url` with service and plan ids derived from `namespace`."""
    import uuid

    from devtools.sample_broker import build_catalog

    catalog = build_catalog(url)
    for service in catalog["services"]:
        service["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{service['id']}"))
        for plan in service["plans"]:
            plan["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{plan['id']}"))
    return catalog


def history_part(server: Any, duration: float = 300.0, earlier: int = 20, points: int = 25) -> tuple[list[Trace],
                                                                                                   list[float]]:
    """Part A with a history: a plan whose `earlier` past provisions took `duration` +/- 10 % (seeded random),
    then provisions ending anywhere in duration +/- 10 % (evenly spread end times and just after each poll)."""
    import random

    from instances.models import Operation
    from instances.services import operations
    from instances.services.instances import instance_provision
    from instances.states import InstanceState, OpState

    plan = mirror_broker("bench-schedule-history", server.url)
    rng = random.Random(13)
    durations = [duration * rng.uniform(1 - WINDOW, 1 + WINDOW) for _ in range(earlier)]
    with mock.patch("instances.services.instances.enqueue_on_commit"):
        for index, took in enumerate(durations):
            instance = instance_provision(plan=plan, name=f"hist-{index}", namespace="bench-history")
            accepted = datetime.now(UTC) - timedelta(hours=index + 1)
            Operation.objects.filter(instance=instance).update(
                state=OpState.SUCCEEDED, phase="poll", accepted_at=accepted, finished_at=accepted + timedelta(
                    seconds=took), next_poll_at=None, claimed_until=None)
            instance.state = InstanceState.READY
            instance.save(update_fields=["state"])
    operations._history_cache.clear()
    runner = ScheduleRunner(server, plan, prefix="learned")
    probe = runner.run(duration * 2)
    low, high = duration * (1 - WINDOW), duration * (1 + WINDOW)
    ends = {low + (high - low) * k / (points - 1) for k in range(points)}
    ends |= {p + EPSILON for p in probe.poll_times if low <= p + EPSILON <= high}
    return [runner.run(end) for end in sorted(ends)], durations


def print_history(traces: list[Trace], durations: list[float]) -> list[str]:
    worst_delay = max(t.delay for t in traces)
    worst_polls = max(t.polls for t in traces)
    ok = worst_polls <= HISTORY_GOAL[0] and worst_delay <= HISTORY_GOAL[1]
    print(f"Part A with history - a plan whose {len(durations)} earlier provisions took "
          f"{min(durations):.0f}-{max(durations):.0f} s (5 min ± 10 %, seeded random)")
    print(f"  {len(traces)} runs ending anywhere in 270-330 s: polls {min(t.polls for t in traces)}-{worst_polls}, "
          f"worst detection delay {worst_delay:.1f} s (goal ≤ {HISTORY_GOAL[0]} polls, ≤ {HISTORY_GOAL[1]:g} s: "
          f"{'MET' if ok else 'NOT MET'})")
    example = max(traces, key=lambda t: t.polls)
    print("  Poll times of the run ending at " + f"{example.end:.1f} s: "
          + ", ".join(f"{p:.1f}" for p in example.poll_times))
    print()
    return [] if ok else ["schedule with history"]


@dataclass
class ScheduleResult:
    duration: float
    exact: Trace
    interval: tuple[float, float]  # the polling interval (previous poll, detecting poll] containing T
    interval_worst: Trace
    window_worst: Trace
    window_polls: tuple[int, int]
    runs: int
    consistent: bool


def schedule_part(runner: ScheduleRunner, durations: tuple[float, ...]) -> tuple[list[ScheduleResult], list[float]]:
    # One probe that never finishes within the longest window gives the fixed poll times (the schedule does
    # not depend on E until the outcome is seen); every figure below still comes from its own engine run.
    longest = max(durations) * (1 + WINDOW) + 120
    probe = runner.run(longest)
    schedule = probe.poll_times
    results = []
    for duration in durations:
        runs_before = runner.runs
        exact = runner.run(duration)
        detecting = exact.detected or 0.0
        previous = max([p for p in exact.poll_times if p < duration], default=0.0)
        sweep = [previous + EPSILON + j * (detecting - previous - EPSILON) / (SWEEP_POINTS - 1)
                 for j in range(SWEEP_POINTS)]
        interval_traces = [runner.run(end) for end in sweep]
        low, high = duration * (1 - WINDOW), duration * (1 + WINDOW)
        candidates = sorted({low, *[p + EPSILON for p in schedule if low <= p + EPSILON < high]})
        window_traces = [runner.run(end) for end in candidates]
        traces = [exact, *interval_traces, *window_traces]
        consistent = all(t.detected == min((p for p in schedule if p >= t.end), default=None)
                         and t.polls == len(t.poll_times) and t.state == "succeeded" for t in traces)
        results.append(ScheduleResult(
            duration=duration, exact=exact, interval=(previous, detecting),
            interval_worst=max(interval_traces, key=lambda t: t.delay),
            window_worst=max(window_traces, key=lambda t: t.delay),
            window_polls=(min(t.polls for t in window_traces), max(t.polls for t in window_traces)),
            runs=runner.runs - runs_before, consistent=consistent,
        ))
    return results, schedule


def human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def print_schedule(results: list[ScheduleResult], schedule: list[float], runner: ScheduleRunner) -> list[str]:
    print("Part A - polling schedule (real operation_step + real SampleBroker over HTTP, virtual clock)")
    print("  Method: django.utils.timezone.now patched to a virtual clock advanced by exactly the delay each")
    print("  operation_step returned; PUT answered 202 by the broker; last_operation scripted 'in progress'")
    print("  (no Retry-After -> instances.states.poll_delay) until virtual time >= end E, then 'succeeded'.")
    print("  Delay = time of the poll that sees 'succeeded' - E. Queueing/processing latency excluded (Part B).")
    print(f"  Each operation's jitter constant fixed at {ScheduleRunner.JITTER} (the worst case) so all runs share"
          " one schedule.")
    print(f"  {runner.runs} engine runs, {runner.steps} operation_step calls.")
    print()
    header = (f"{'broker op':>9} {'polls':>5} {'delay@T':>8} {'polling interval containing T':>30} "
              f"{'worst delay':>11} {'T±10%: worst delay':>19} {'polls':>7}  goal")
    print(header)
    print("-" * len(header))
    missed = []
    for r in results:
        interval = f"({r.interval[0]:.1f} s, {r.interval[1]:.1f} s]"
        verdict = ""
        if r.duration in GOALS:
            max_polls, max_delay = GOALS[r.duration]
            ok = r.exact.polls <= max_polls and r.interval_worst.delay <= max_delay
            verdict = f"≤ {max_polls} polls, ≤ {max_delay:g} s: {'MET' if ok else 'NOT MET'}"
            if not ok:
                missed.append(f"schedule {human(r.duration)}")
            strict = r.window_polls[1] <= max_polls and r.window_worst.delay <= max_delay
            verdict += f" (T±10%: {'met' if strict else 'not met'})"
        polls = f"{r.window_polls[0]}-{r.window_polls[1]}"
        print(f"{human(r.duration):>9} {r.exact.polls:>5} {r.exact.delay:>7.1f}s {interval:>30} "
              f"{r.interval_worst.delay:>10.1f}s {r.window_worst.delay:>18.1f}s {polls:>7}  {verdict}")
    print()
    for r in results:
        print(f"  {human(r.duration)}: worst in window when the broker ends at {r.window_worst.end:.1f} s "
              f"(detected at {r.window_worst.detected:.1f} s); {r.runs} runs; "
              f"{'consistent with the probe schedule' if r.consistent else 'INCONSISTENT with the probe schedule'}")
    gaps = [b - a for a, b in zip([0.0, *schedule], schedule, strict=False)]
    print("  Poll times (s after acceptance): " + ", ".join(f"{p:.1f}" for p in schedule[:17]) + ", ... then every "
          f"{statistics.mode(gaps[-10:]):g} s")
    print()
    return missed


# --- Part B: throughput of one worker ------------------------------------------------------------------


WORKER_STATS = ("task", "claim", "renew", "client", "osb_call", "apply", "gc")


WHAT_IFS = {
    "ssl-cache": "one default SSLContext per worker process instead of one per OSB client (httpx.Client)",
    "fs-poll": "filesystem transport polling_interval 0.1 s instead of kombu's 1 s",
}


def apply_what_ifs(names: list[str]) -> None:
    """Experiments for the report, applied inside the worker process only; no project file is changed."""
    if "ssl-cache" in names:
        import httpx._transports.default as transport

        original = transport.create_ssl_context
        cache: dict[bool, Any] = {}

        def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
            if verify is True and cert is None:
                if trust_env not in cache:
                    cache[trust_env] = original(verify=verify, cert=cert, trust_env=trust_env)
                return cache[trust_env]
            return original(verify=verify, cert=cert, trust_env=trust_env)

        transport.create_ssl_context = create_ssl_context
    if "fs-poll" in names:
        from django.conf import settings

        if settings.CELERY_BROKER_URL == "filesystem://":
            settings.CELERY_BROKER_TRANSPORT_OPTIONS["polling_interval"] = 0.1


def worker_shim(stats_path: str, celery_args: list[str]) -> int:
    """`python bench/polling.py --worker-shim STATS -- <celery args>`: the real worker, with phase timers."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_portal.settings")
    django.setup()
    apply_what_ifs([n for n in os.environ.get("BENCH_WHAT_IF", "").split(",") if n])
    from brokers.osb import OSBClient
    from instances.services import operations

    lock = threading.Lock()
    totals: dict[str, list[float]] = {name: [0, 0.0, 0.0] for name in WORKER_STATS}  # count, wall, thread cpu

    def timed(name: str, func: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return func(*args, **kwargs)
            finally:
                with lock:
                    entry = totals[name]
                    entry[0] += 1
                    entry[1] += time.perf_counter() - wall
                    entry[2] += time.thread_time() - cpu

        return wrapper

    import gc

    gc_started: dict[int, float] = {}

    def gc_timer(phase: str, info: dict[str, Any]) -> None:  # every collection of the cyclic GC, in any thread
        if phase == "start":
            gc_started[info["generation"]] = time.perf_counter()
        elif info["generation"] in gc_started:
            with lock:
                entry = totals["gc"]
                entry[0] += 1
                entry[1] += time.perf_counter() - gc_started.pop(info["generation"])

    gc.callbacks.append(gc_timer)
    operations.operation_step = timed("task", operations.operation_step)
    operations._claim = timed("claim", operations._claim)
    operations._renew_lease = timed("renew", operations._renew_lease)
    operations.broker_client = timed("client", operations.broker_client)
    operations._apply = timed("apply", operations._apply)
    OSBClient.send = timed("osb_call", OSBClient.send)  # type: ignore[method-assign]

    def dump() -> None:
        with lock:
            data = {name: list(values) for name, values in totals.items()}
        Path(stats_path).write_text(json.dumps(data))

    def dumper() -> None:
        while True:
            time.sleep(1.0)
            dump()

    threading.Thread(target=dumper, daemon=True).start()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *celery_args]
    try:
        celery_main()
    finally:
        dump()
    return 0


@dataclass
class Throughput:
    instances: int
    create_s: float
    worker_start_s: float
    wall_s: float
    succeeded: int
    failed: int
    unfinished: int
    puts: int
    polls: int
    polls_per_op: Counter = field(default_factory=Counter)
    first_put_s: float = 0.0
    last_put_s: float = 0.0
    detection: list[float] = field(default_factory=list)
    tasks_received: int = 0
    tasks_done: int = 0
    osb_calls: int = 0
    warnings: int = 0
    errors_only: int = 0
    errors: Counter = field(default_factory=Counter)
    worker_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0
    phase_stats: dict[str, list[float]] = field(default_factory=dict)
    timed_out: bool = False
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def throughput_part(args: argparse.Namespace, tmp: Path) -> Throughput:
    from django.conf import settings
    from django.db import connection

    from devtools.sample_broker import SampleBroker
    from instances.models import Operation, OperationCall
    from instances.services.instances import instance_provision
    from instances.states import TERMINAL

    server = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD)
    server.async_mode = "always"
    server.async_seconds = args.async_seconds
    server.start()
    process: subprocess.Popen[bytes] | None = None
    try:
        plan = mirror_broker("bench-throughput", server.url)
        server.clear_requests()
        start = time.perf_counter()
        for index in range(args.instances):
            instance_provision(plan=plan, name=f"load-{index}", namespace="bench-load")
        create_s = time.perf_counter() - start
        connection.close()  # nothing of ours holds the SQLite file while the worker runs

        log_path = tmp / "worker.log"
        stats_path = tmp / "worker-stats.json"
        celery_args = ["-A", "catalog_portal", "worker", "--pool=threads", f"--concurrency={args.concurrency}",
                       "--loglevel=INFO", "--without-mingle", "--without-gossip", f"--hostname=bench-poll-{os.getpid()}@%h",
                       "--beat", f"--schedule={tmp / 'beat-schedule'}"]
        shim = args.profile or bool(args.what_if)
        command = ([sys.executable, str(Path(__file__).resolve()), "--worker-shim", str(stats_path), "--", *celery_args]
                   if shim else [sys.executable, "-m", "celery", *celery_args])
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="catalog_portal.settings", PYTHONUNBUFFERED="1",
                   BENCH_WHAT_IF=",".join(args.what_if),
                   LOG_LEVEL="INFO", SWEEP_INTERVAL_SECONDS=str(settings.SWEEP_INTERVAL_SECONDS),
                   SWEEP_GRACE_SECONDS=str(settings.SWEEP_GRACE_SECONDS))
        bench_cpu = time.process_time()
        spawned = time.time()
        process = start_process(command, log_path, env)
        ready = time.time()

        ops = Operation.objects.filter(instance__namespace="bench-load")
        deadline = time.monotonic() + args.timeout
        timed_out = False
        while True:
            done = ops.filter(state__in=TERMINAL).count()
            connection.close()
            if done >= args.instances:
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.5)
        worker_cpu = _proc_cpu_seconds(process.pid)
        load = os.getloadavg()
        bench_cpu = time.process_time() - bench_cpu
        time.sleep(1.5 if shim else 0)  # one more stats dump
        stop_process_group(process)

        rows = list(ops.values("instance_id", "state", "finished_at"))
        finished = [r["finished_at"].timestamp() for r in rows if r["finished_at"]]
        last = max(finished) if finished else time.time()
        requests = server.requests
        puts = [r for r in requests if r.method == "PUT"]
        polls = [r for r in requests if r.method == "GET" and re.fullmatch(LAST_OPERATION, r.path)]
        # The broker's operation end times (its clock is time.monotonic in this process).
        offset = time.time() - time.monotonic()
        ends = {op["instance_id"]: op["started"] + op["duration"] + offset for op in server.operations.values()
                if op["kind"] == "provision"}
        detection = [r["finished_at"].timestamp() - ends[str(r["instance_id"])] for r in rows
                     if r["finished_at"] and str(r["instance_id"]) in ends and r["state"] == "succeeded"]
        per_op = Counter(r.path.split("/")[3] for r in polls)
        log_text = log_path.read_text(errors="replace")
        errors = Counter(m.group(1) for m in re.finditer(r"(?:WARNING|ERROR|CRITICAL)/\S+\] (.{0,90})", log_text))
        phase_stats = json.loads(stats_path.read_text()) if stats_path.exists() else {}
        states = Counter(r["state"] for r in rows)
        result = Throughput(
            instances=args.instances, create_s=create_s, worker_start_s=ready - spawned, wall_s=last - ready,
            succeeded=states["succeeded"], failed=states["failed"],
            unfinished=args.instances - states["succeeded"] - states["failed"],
            puts=len(puts), polls=len(polls), polls_per_op=Counter(per_op.values()),
            first_put_s=(min(r.at for r in puts) - ready) if puts else 0.0,
            last_put_s=(max(r.at for r in puts) - ready) if puts else 0.0,
            detection=detection,
            tasks_received=log_text.count("] received"),
            tasks_done=log_text.count("] succeeded in"),
            osb_calls=OperationCall.objects.filter(operation__instance__namespace="bench-load").count(),
            warnings=len(re.findall(r"\bWARNING/", log_text)), errors=errors,
            errors_only=len(re.findall(r"\b(?:ERROR|CRITICAL)/", log_text)),
            worker_cpu_s=worker_cpu, bench_cpu_s=bench_cpu, load=load, phase_stats=phase_stats, timed_out=timed_out,
        )
        if args.profile:
            profile_steps(plan, server)
        return result
    finally:
        if process is not None:
            stop_process_group(process)
        server.stop()


def profile_steps(plan: Any, server: Any, count: int = 40, polls: int = 4) -> None:
    """cProfile of operation_step in this process: `count` PUTs and `count * polls` in-progress polls."""
    from django.utils import timezone

    from instances.models import Operation
    from instances.services.instances import instance_provision
    from instances.services.operations import operation_step

    server.async_seconds = 3600.0
    with mock.patch("instances.services.instances.enqueue_on_commit"):
        ids = [Operation.objects.get(instance=instance_provision(plan=plan, name=f"prof-{i}", namespace="bench-prof")).pk
               for i in range(count)]
    profiler = cProfile.Profile()
    steps = 0
    start = time.perf_counter()
    for _ in range(polls + 1):
        for op_id in ids:
            Operation.objects.filter(pk=op_id).update(next_poll_at=timezone.now())
            profiler.enable()
            operation_step(operation_id=op_id)
            profiler.disable()
            steps += 1
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler, stream=io.StringIO())
    entries = stats.stats  # type: ignore[attr-defined]  # (file, line, function) -> (cc, ncalls, tottime, cumtime, _)
    step_time = sum(v[3] for k, v in entries.items() if k[2] == "operation_step")
    print(f"  In-process cProfile: {steps} operation_step calls (one thread), {step_time / steps * 1000:.1f} ms "
          f"per step under the profiler ({total / steps * 1000:.1f} ms incl. the bench's row updates).")
    wanted = re.compile(r"instances/services/operations\.py|brokers/osb/client\.py|brokers/services\.py|"
                        r"httpx/_client\.py|httpx/_config\.py|httpx/_transports/default\.py|ssl\.py|"
                        r"django/db/backends/utils\.py|django/db/models/sql/compiler\.py|django/db/transaction\.py")
    rows = sorted(((v[3], v[2], v[1], k) for k, v in entries.items() if wanted.search(k[0]) or k[0] == "~"),
                  reverse=True)
    print(f"    {'calls':>6} {'cum ms/step':>11} {'own ms/step':>11}  function")
    for cumtime, tottime, ncalls, (path, line, name) in rows[:22]:
        where = f"{'/'.join(Path(path).parts[-2:])}:{line}" if path != "~" else "builtin"
        print(f"    {ncalls:>6} {cumtime / steps * 1000:>11.2f} {tottime / steps * 1000:>11.2f}  {name} ({where})")
    print()


def print_throughput(r: Throughput, args: argparse.Namespace, transport: str) -> list[str]:
    print(f"Part B - throughput: {r.instances} async provisions, ONE worker (--pool=threads "
          f"--concurrency={args.concurrency}) + embedded beat sweeper, transport {transport}")
    print(f"  SampleBroker async_mode=always, async_seconds={args.async_seconds:g} (answers 'in progress' with "
          "Retry-After: 1, which the engine obeys)")
    print(f"  {r.instances} instance_provision calls (one transaction each, message sent on commit): "
          f"{r.create_s:.1f} s; worker ready {r.worker_start_s:.1f} s after spawn"
          + ("; worker has phase timers (--profile)" if args.profile else ""))
    for name in args.what_if:
        print(f"  WHAT-IF (not the project's behaviour): {name}: {WHAT_IFS[name]}")
    print()
    ops_s = r.succeeded / r.wall_s if r.wall_s > 0 else 0.0
    polls_s = r.polls / r.wall_s if r.wall_s > 0 else 0.0
    rows = [
        ("wall time (worker ready -> last op terminal)", f"{r.wall_s:.1f} s" + (" (TIMED OUT)" if r.timed_out else "")),
        ("operations/s", f"{ops_s:.1f}"),
        ("succeeded / failed / unfinished", f"{r.succeeded} / {r.failed} / {r.unfinished}"),
        ("provision PUTs at the broker", f"{r.puts} (first {r.first_put_s:.1f} s, last {r.last_put_s:.1f} s after ready)"),
        ("last_operation polls at the broker", f"{r.polls} ({r.polls / max(r.instances, 1):.2f} per op)"),
        ("polls/s", f"{polls_s:.1f}"),
        ("polls per op: distribution", ", ".join(f"{k}: {v}" for k, v in sorted(r.polls_per_op.items()))),
        ("OSB calls recorded (OperationCall rows)", f"{r.osb_calls} ({r.osb_calls / r.wall_s:.1f}/s)" if r.wall_s else "-"),
        ("operation_step tasks run (worker log)", f"{r.tasks_done} ({r.tasks_done / max(r.osb_calls, 1):.2f} per OSB call)"),
        ("worker CPU (user+sys) / wall", f"{r.worker_cpu_s:.1f} s / {r.wall_s + r.worker_start_s:.1f} s "
                                          f"= {r.worker_cpu_s / max(r.wall_s + r.worker_start_s, 1e-9):.2f} cores"),
        ("bench process CPU (SampleBroker + DB watch)", f"{r.bench_cpu_s:.1f} s"),
        ("machine load average at the end (1/5/15 min)", "/".join(f"{v:.1f}" for v in r.load)),
        ("worker warnings / errors in log", f"{r.warnings} / {r.errors_only}"),
    ]
    if r.detection:
        d = sorted(r.detection)
        rows.append(("detection delay (broker done -> row terminal)",
                     f"median {statistics.median(d):.1f} s, p95 {d[int(len(d) * 0.95) - 1]:.1f} s, max {d[-1]:.1f} s"))
    for label, value in rows:
        print(f"  {label:<46} {value}")
    for message, n in r.errors.most_common(5):
        print(f"    {n} x {message}")
    if r.phase_stats:
        print()
        print("  Worker phase timers (sum over all threads; thread CPU = time.thread_time, GIL waits excluded):")
        print(f"    {'phase':<10} {'calls':>7} {'wall s':>9} {'ms/call':>8} {'CPU s':>8} {'CPU ms/call':>11}")
        labels = {"task": "step", "claim": "claim", "renew": "renew", "client": "client()",
                  "osb_call": "OSB call", "apply": "write",
                  "gc": "cyclic GC"}
        for name in WORKER_STATS:
            n, wall, cpu = r.phase_stats.get(name, [0, 0.0, 0.0])
            if n:
                print(f"    {labels[name]:<10} {int(n):>7} {wall:>9.1f} {wall / n * 1000:>8.1f} {cpu:>8.1f} "
                      f"{cpu / n * 1000:>11.1f}")
    print()
    missed = []
    if r.timed_out or r.unfinished or r.failed:
        missed.append("throughput run incomplete or with failures")
    return missed


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker-shim"]:
        return worker_shim(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000, help="async provisions in Part B (default 1000)")
    parser.add_argument("--async-seconds", type=float, default=5.0, help="broker operation time in Part B (5)")
    parser.add_argument("--concurrency", type=int, default=8, help="worker threads in Part B (default 8)")
    parser.add_argument("--timeout", type=float, default=1800, help="Part B gives up after this many s (1800)")
    parser.add_argument("--skip-schedule", action="store_true", help="skip Part A")
    parser.add_argument("--skip-throughput", action="store_true", help="skip Part B")
    parser.add_argument("--profile", action="store_true", help="phase timers in the worker + in-process cProfile")
    parser.add_argument("--what-if", type=lambda v: [n for n in v.split(",") if n], default=[],
                        help="comma-separated worker experiments: " + ", ".join(WHAT_IFS))
    parser.add_argument("--flush-redis", action="store_true", help="empty a non-empty Redis CELERY_BROKER_URL db")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is not met")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.what_if) - set(WHAT_IFS))
    if unknown:
        parser.error(f"unknown --what-if {', '.join(unknown)}; choose from {', '.join(WHAT_IFS)}")

    prepare_process()

    database = ThrowawayDatabase(prefix="bench_poll")
    schedule_server = None
    redis_client = None
    missed: list[str] = []
    try:
        database.create()
        transport, redis_client = setup_django(flush_redis=args.flush_redis)
        print(f"Polling benchmark, {datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        print("Load average at start (1/5/15 min): " + "/".join(f"{v:.1f}" for v in os.getloadavg())
              + " (other processes on this machine share the CPUs)")
        print(f"Database: {database.label}")
        print(f"Celery transport: {transport}")
        from instances import states

        print(f"Schedule (instances/states.py): first {states.FIRST_POLL_SECONDS:g} s, x{states.BACKOFF_FACTOR:g}, "
              f"cap {states.EARLY_CAP_SECONDS:g} s, {states.LATE_CAP_SECONDS:g} s after "
              f"{states.LATE_AFTER_SECONDS:g} s elapsed")
        print()

        if not args.skip_schedule:
            from devtools.sample_broker import SampleBroker

            schedule_server = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD)
            schedule_server.async_mode = "always"
            schedule_server.start()
            runner = ScheduleRunner(schedule_server, mirror_broker("bench-schedule", schedule_server.url))
            results, schedule = schedule_part(runner, DURATIONS)
            missed += print_schedule(results, schedule, runner)
            schedule_server.stop()
            schedule_server = None
            # A broker of its own for the plan with a history (a second registration of one URL is refused, and
            # catalog ids are unique across brokers: its catalog gets ids of its own).
            schedule_server = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD)
            schedule_server.catalog = catalog_with_own_ids(schedule_server.url, "history")
            schedule_server.async_mode = "always"
            schedule_server.start()
            missed += print_history(*history_part(schedule_server))
            schedule_server.stop()
            schedule_server = None
        if not args.skip_throughput:
            result = throughput_part(args, Path(database.data_dir))
            missed += print_throughput(result, args, transport)
        print("Goals (5 min: ≤ 15 polls, ≤ 30 s; 1 h: ≤ 80 polls, ≤ 60 s): "
              + ("met" if not missed else "NOT MET: " + ", ".join(missed))
              + ("; throughput has no numeric goal (reported above)" if not args.skip_throughput else ""))
        return 1 if (args.check and missed) else 0
    finally:
        if schedule_server is not None:
            schedule_server.stop()
        if redis_client is not None:
            redis_client.flushdb()
        database.drop()


if __name__ == "__main__":
    sys.exit(main())
