#!/usr/bin/env python
"""Benchmark: the store's read pages under a steady 50 requests/s with a 1,000-service / 5,000-plan catalog.

    python bench/marketplace.py [--rate 50] [--duration 20] [--warmup 5] [--services 1000 --plans 5]
                                [--gunicorn-workers 2 --gunicorn-threads 4] [--staff] [--keep-alive] [--hey]
                                [--profile] [--no-cache] [--only SCENARIO] [--check]

Runs against whatever database DATABASE_URL names, but never touches the data in it:

* DATABASE_URL unset  -> a fresh SQLite file in a temporary PORTAL_DATA_DIR (removed at the end);
* DATABASE_URL=postgres://... -> a temporary database ``bench_mkt_<pid>`` is created on that server, migrated,
  and dropped at the end. The mirror itself runs ANALYZE on the catalog tables (catalog_sync does after a
  mirror that wrote 500 rows or more; without statistics the planner chose a nested loop over offerings x plans,
  about 200 ms per marketplace query).

Set-up: a real ``SampleBroker`` serves ``generate_catalog(1000, 5)`` over HTTP on 127.0.0.1; it is registered
and mirrored with ``catalog_sync`` (what the worker runs). A user is created (not staff unless --staff, so the
plan-visibility rules apply) and signs in through the login form, over HTTP, to gunicorn:

    gunicorn catalog_portal.wsgi -w 2 --threads 4 -b 127.0.0.1:<port>   (DEBUG=false, static files by whitenoise)

Scenarios, one after the other, each at a fixed arrival rate for --duration seconds after --warmup seconds
at the same rate (not counted):

* marketplace      GET /                                  (the grid, page 1, and every facet count)
* filtered search  GET /?q=<word>&tag=<tag>               (10 word/tag pairs that match, in turn)
* service page     GET /services/<uuid>/                  (100 services drawn with a fixed seed, in turn)

The marketplace's page cache is on, as in production: each gunicorn worker computes the results of `/` and of
each of the 10 searches once (in the warm-up), then serves them from memory after one small query that says
the catalog has not changed. --no-cache turns it off, so every request computes its page: what a search
nobody made before costs.

Load generator (method): open loop at a constant arrival rate. Request i is due at t0 + i/rate whatever
happened to earlier ones; a dispatcher hands it to a pool of 64 sender threads (http.client). Latency is
measured from the request's *due* time to the last byte of the answer, so time spent waiting for a free sender
(client-side queueing) counts against the server, and a slow answer cannot slow the arrivals down (no
coordinated omission). Each request uses its own connection, as behind a reverse proxy: gunicorn's workers
share one listening socket and a keep-alive connection stays with the worker that accepted it, so a client
holding a few dozen keep-alive connections can pin most of them to one worker, which (one process, one GIL)
then uses one core of two (--keep-alive shows it). Errors: any exception, non-200 status, a body without the
page's marker, or no answer 30 s after the last request was due. Reported per scenario: p50, p90, p99, max,
achieved requests/s (completed / span from the first due time to the last answer), errors; the CPU time the
portal's processes used per request, and the cores used by the portal, by this load generator and by every
other process on the machine while measuring (from /proc). Goals: p50 <= 30 ms and p99 <= 150 ms at 50
requests/s, no errors.

--hey also runs Debian's ``hey`` (apt-get install hey) on the first URL of each scenario as a cross-check:
``hey -z <duration>s -c 5 -q <rate/5> -disable-keepalive``. hey is closed loop per worker (5 workers, each at
most rate/5 per second, ticking together), so it sends small bursts rather than a smooth stream, and a slow
answer delays the next request of its worker (its latency leaves out that wait). Printed separately.

--profile: in this process, with Django's test client as the same user, the SQL statements (count, time) and
a cProfile of one request of each scenario.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import http.client
import io
import logging
import math
import os
import pstats
import queue
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import prepare_process, stop_process_group  # bench/common.py
from throwaway import ThrowawayDatabase  # bench/throwaway.py

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GOAL_RATE = 50.0
GOAL_P50_MS = 30.0
GOAL_P99_MS = 150.0
BROKER_USER, BROKER_PASSWORD = "bench", "bench-broker-pass"
USERNAME, PASSWORD = "shopper", "bench-shopper-pass-1"
SENDERS = 64


# --- set-up -----------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    urls: list[str]
    marker: bytes  # in every good answer
    results: dict[str, Any] = field(default_factory=dict)


def mirror_catalog(services: int, plans: int) -> tuple[Any, float, dict[str, Any]]:
    """Start a SampleBroker with the generated catalog, register it and mirror it; returns (broker, seconds, doc)."""
    from brokers import services as broker_services
    from devtools.sample_broker import SampleBroker, generate_catalog

    document = generate_catalog(services=services, plans_per_service=plans)
    broker = SampleBroker(document, username=BROKER_USER, password=BROKER_PASSWORD).start()
    registered = broker_services.broker_register(
        name="bench-broker", url=broker.url,
        auth=broker_services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD),
    )
    started = time.perf_counter()
    sync = broker_services.catalog_sync(broker_id=registered.pk, force=True)
    took = time.perf_counter() - started
    if sync is None or sync.error:
        raise SystemExit(f"bench: the catalog sync failed: {sync.error if sync else 'not run'}")
    return broker, took, document


def scenarios(document: dict[str, Any]) -> list[Scenario]:
    """The three scenarios, with URLs that match real data (searches that find services, real service pages)."""
    from brokers.models import ServiceOffering
    from devtools.sample_broker.generate import _WORDS

    pairs: list[tuple[str, str]] = []
    for word in _WORDS[:10]:
        tags: Counter[str] = Counter()
        for service in document["services"]:
            text = " ".join([service["name"], service["metadata"]["displayName"], service["description"],
                             *service["tags"]]).lower()
            if word in text:
                tags.update(t.lower() for t in service["tags"])
        pairs.append((word, tags.most_common(1)[0][0]))
    ids = sorted(str(pk) for pk in ServiceOffering.objects.filter(active=True).values_list("pk", flat=True))
    picked = random.Random(0).sample(ids, k=min(100, len(ids)))
    return [
        Scenario("marketplace", ["/"], b'class="svc-card"'),
        Scenario("filtered search", [f"/?{urlencode({'q': w, 'tag': t})}" for w, t in pairs], b'class="svc-card"'),
        Scenario("service page", [f"/services/{pk}/" for pk in picked], b'id="plans-h"'),
    ]


def create_user(staff: bool) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(USERNAME, "shopper@example.com", PASSWORD)
    if staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])


def start_gunicorn(tmp: Path, port: int, workers: int, threads: int, *, cache: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if not cache:
        env["STORE_CACHE_SECONDS"] = "0"
    env.update(DJANGO_SETTINGS_MODULE="catalog_portal.settings", DEBUG="false", LOG_LEVEL="WARNING",
               SECURE_COOKIES="false",  # plain HTTP on loopback: the session cookie must come back
               PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "gunicorn", "catalog_portal.wsgi", "-w", str(workers), "--threads",
               str(threads), "-b", f"127.0.0.1:{port}", "--log-level", "warning"]
    log_path = tmp / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    process.log_path = log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: gunicorn exited at start:\n{log_path.read_text()[-3000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("bench: gunicorn did not answer /healthz within 60 s")


def log_in(port: int) -> str:
    """Sign in through the login form like a browser; returns the session cookie's value."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/login/")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status_code != 200 or not match:
            raise SystemExit(f"bench: no login form at /login/ ({page.status_code})")
        response = client.post("/login/", data={"username": USERNAME, "password": PASSWORD,
                                                 "csrfmiddlewaretoken": match.group(1)},
                               headers={"Referer": base + "/login/"})
        session = client.cookies.get("sessionid")
        if response.status_code != 302 or not session:
            raise SystemExit(f"bench: sign-in failed ({response.status_code})")
        return session


# --- the open-loop load generator ---------------------------------------------------------------------


@dataclass
class Sample:
    due: float
    sent: float
    done: float
    ok: bool
    error: str = ""


class OpenLoop:
    """Requests at fixed due times (t0 + i/rate) from a pool of keep-alive sender threads."""

    def __init__(self, port: int, cookie: str, senders: int = SENDERS, keep_alive: bool = False) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.headers = {"Cookie": f"sessionid={cookie}", "Accept": "text/html", "User-Agent": "bench/marketplace"}
        if not keep_alive:
            self.headers["Connection"] = "close"
        self.jobs: queue.Queue[tuple[float, str, bytes] | None] = queue.Queue()
        self.samples: list[Sample] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._sender, daemon=True) for _ in range(senders)]
        for thread in self.threads:
            thread.start()

    def _sender(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while (job := self.jobs.get()) is not None:
            connection = self._send(job, connection)
            self.jobs.task_done()
        self.jobs.task_done()

    def _send(self, job: tuple[float, str, bytes],
              connection: http.client.HTTPConnection | None) -> http.client.HTTPConnection | None:
        """One request on the thread's keep-alive connection; returns the connection to use next."""
        due, url, marker = job
        sent = time.perf_counter()
        ok, error = False, ""
        try:
            try:
                reused = connection is not None
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("GET", url, headers=self.headers)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed the idle keep-alive connection as the request went out (gunicorn's
                # keep-alive is 2 s): send it again on a new connection, as browsers and HTTP clients do.
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("GET", url, headers=self.headers)
                response = connection.getresponse()
            body = response.read()
            ok = response.status == 200 and marker in body
            error = "" if ok else f"status {response.status}" + (", no marker" if response.status == 200 else "")
            if response.will_close or not self.keep_alive:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as exc:
            error = type(exc).__name__
            if connection is not None:
                connection.close()
            connection = None
        done = time.perf_counter()
        with self.lock:
            self.samples.append(Sample(due, sent, done, ok, error))
        return connection

    def run(self, scenario: Scenario, rate: float, seconds: float) -> list[Sample]:
        """Send rate*seconds requests due at a constant rate; return their samples. An answer still missing
        30 s after the last request was due counts as an error ("no answer"); requests not yet sent by then
        are dropped, and the senders are let finish before the next run."""
        with self.lock:
            self.samples = []
        count = max(1, round(rate * seconds))
        start = time.perf_counter() + 0.05
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.jobs.put((due, scenario.urls[i % len(scenario.urls)], scenario.marker))
        last_due = start + (count - 1) / rate
        while time.perf_counter() < last_due + 30:
            with self.lock:
                if len(self.samples) >= count:
                    return list(self.samples)
            time.sleep(0.01)
        while True:  # overloaded: drop what was never sent, wait for what is on the wire
            try:
                self.jobs.get_nowait()
            except queue.Empty:
                break
            self.jobs.task_done()
        deadline = time.perf_counter() + 40
        while time.perf_counter() < deadline and self.jobs.unfinished_tasks:
            time.sleep(0.05)
        with self.lock:
            samples = list(self.samples)
        now = time.perf_counter()
        samples += [Sample(last_due, now, now, False, "no answer") for _ in range(count - len(samples))]
        return samples

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarise(samples: list[Sample], rate: float, seconds: float) -> dict[str, Any]:
    good = [s for s in samples if s.ok]
    latencies = [(s.done - s.due) * 1000 for s in good]
    service = [(s.done - s.sent) * 1000 for s in good]
    span = (max(s.done for s in samples) - min(s.due for s in samples)) if samples else math.nan
    return {
        "sent": round(rate * seconds), "answered": len(samples), "errors": len(samples) - len(good),
        "error_kinds": dict(Counter(s.error for s in samples if not s.ok)),
        "p50": percentile(latencies, 50), "p90": percentile(latencies, 90), "p99": percentile(latencies, 99),
        "max": max(latencies, default=math.nan), "mean": statistics.fmean(latencies) if latencies else math.nan,
        "service_p99": percentile(service, 99), "rps": len(good) / span if span else math.nan,
    }


def meets(result: dict[str, Any], rate: float) -> bool:
    return bool(result["errors"] == 0 and result["p50"] <= GOAL_P50_MS and result["p99"] <= GOAL_P99_MS
            and result["rps"] >= 0.95 * rate)


# --- hey (Debian's package) as a cross-check ------------------------------------------------------------


def run_hey(port: int, cookie: str, scenario: Scenario, rate: float, seconds: float,
            keep_alive: bool) -> dict[str, Any] | None:
    hey = shutil.which("hey")
    if hey is None:
        print("  hey: not installed (apt-get install hey); skipped")
        return None
    workers = 5
    command = [hey, "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{rate / workers:g}", "-o", "csv",
               *([] if keep_alive else ["-disable-keepalive"]),
               "-H", f"Cookie: sessionid={cookie}", f"http://127.0.0.1:{port}{scenario.urls[0]}"]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, check=False).stdout
    rows = list(csv.DictReader(io.StringIO(output)))
    if not rows:
        print(f"  hey: no output ({output[-300:]!r})")
        return None
    latencies = [float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200"]
    offsets = [float(r["offset"]) + float(r["response-time"]) for r in rows]
    return {
        "answered": len(rows), "errors": len(rows) - len(latencies),
        "p50": percentile(latencies, 50), "p90": percentile(latencies, 90), "p99": percentile(latencies, 99),
        "max": max(latencies, default=math.nan), "rps": len(latencies) / max(offsets) if offsets else math.nan,
    }


# --- profile --------------------------------------------------------------------------------------------


def profile(all_scenarios: list[Scenario]) -> None:
    """SQL and cProfile of one request of each scenario, in this process, as the same user."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=USERNAME))
    for scenario in all_scenarios:
        url = scenario.urls[0]
        for _ in range(3):
            client.get(url)  # warm: templates compiled, connections open
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            took = (time.perf_counter() - started) * 1000
        sql_ms = sum(float(q["time"]) for q in queries.captured_queries) * 1000
        print(f"\n--- profile: {scenario.name} {url} -> {response.status_code}, {len(response.content):,} bytes, "
              f"{took:.1f} ms, {len(queries)} SQL statements ({sql_ms:.1f} ms in SQL)")
        for q in sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:5]:
            print(f"    {float(q['time']) * 1000:7.1f} ms  {q['sql'][:220]}")
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(5):
            client.get(url)
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(25)
        print("    cProfile of 5 requests, top 25 by cumulative time:")
        print("\n".join("    " + line for line in stream.getvalue().splitlines()[4:40] if line.strip()))


# --- main -----------------------------------------------------------------------------------------------


@dataclass
class CpuSnapshot:
    """CPU time (clock ticks) of the portal's processes and of the whole machine, from /proc."""

    at: float
    portal: int
    busy: int  # every process on the machine, the portal and this one included
    total: int
    own: float  # seconds: this process (the load generator)

    @classmethod
    def take(cls, master_pid: int) -> CpuSnapshot:
        portal = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            pid, ppid = int(stat.parent.name), int(fields[1])
            if pid == master_pid or ppid == master_pid:
                portal += int(fields[11]) + int(fields[12])  # utime + stime
        ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return cls(time.perf_counter(), portal, sum(ticks) - ticks[3] - ticks[4], sum(ticks), time.process_time())

    @staticmethod
    def usage(before: CpuSnapshot, after: CpuSnapshot, answered: int) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        wall = after.at - before.at
        portal = (after.portal - before.portal) / hz
        busy = (after.busy - before.busy) / hz
        own = after.own - before.own
        return {"portal_cores": portal / wall, "loader_cores": own / wall,
                "other_cores": max(busy - portal - own, 0) / wall,
                "cpu_ms_per_request": portal / answered * 1000 if answered else math.nan}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--plans", type=int, default=5)
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="requests per second (default 50)")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds at the same rate before measuring")
    parser.add_argument("--gunicorn-workers", type=int, default=2)
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--keep-alive", action="store_true",
                        help="senders keep their connections open (default: one connection per request)")
    parser.add_argument("--staff", action="store_true", help="sign in as a platform admin instead of a shopper")
    parser.add_argument("--hey", action="store_true", help="also run Debian's hey on each scenario")
    parser.add_argument("--profile", action="store_true", help="SQL and cProfile of one request per scenario")
    parser.add_argument("--no-cache", action="store_true",
                        help="turn the marketplace's page cache off (STORE_CACHE_SECONDS=0): every page computed")
    parser.add_argument("--only", choices=["marketplace", "filtered search", "service page"], action="append")
    parser.add_argument("--check", action="store_true", help="exit 1 if a goal is missed")
    args = parser.parse_args(argv)

    prepare_process()
    logging.basicConfig(level=logging.WARNING)
    database = ThrowawayDatabase(prefix="bench_mkt")
    database.create()
    if args.no_cache:
        os.environ["STORE_CACHE_SECONDS"] = "0"  # for --profile's requests in this process too
    broker = gunicorn = loader = None
    all_met = True
    try:
        import django

        django.setup()
        from django.core.management import call_command

        print(f"database: {database.label}")
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.perf_counter() - started:.1f} s")
        broker, took, document = mirror_catalog(args.services, args.plans)
        from brokers.models import ServiceOffering, ServicePlan

        print(f"catalog: {ServiceOffering.objects.filter(active=True).count():,} services, "
              f"{ServicePlan.objects.filter(active=True).count():,} plans mirrored in {took:.1f} s")
        if database.pg_name:
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute("SHOW autovacuum")
                autovacuum = cursor.fetchone()[0]
            print(f"planner statistics: gathered by catalog_sync; this server's autovacuum is {autovacuum}")
        create_user(args.staff)
        chosen = [s for s in scenarios(document) if not args.only or s.name in args.only]
        from django.db import connections

        connections.close_all()

        port = free_port()
        gunicorn = start_gunicorn(Path(database.data_dir), port, args.gunicorn_workers, args.gunicorn_threads,
                                  cache=not args.no_cache)
        cookie = log_in(port)
        print(f"portal: gunicorn -w {args.gunicorn_workers} --threads {args.gunicorn_threads} on 127.0.0.1:{port}, "
              f"DEBUG=false, page cache {'off' if args.no_cache else 'on'}; "
              f"signed in as {USERNAME!r} ({'staff' if args.staff else 'not staff'})")
        print(f"load: open loop, {args.rate:g} requests/s, {args.warmup:g} s warm-up + {args.duration:g} s "
              f"measured per scenario, {SENDERS} senders, "
              f"{'keep-alive connections' if args.keep_alive else 'one connection per request'}; "
              f"latency from each request's due time\n")
        loader = OpenLoop(port, cookie, keep_alive=args.keep_alive)
        header = f"{'scenario':<16} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7} {'req/s':>7} {'errors':>6}  goals"
        print(header + "\n" + "-" * len(header))
        for scenario in chosen:
            loader.run(scenario, args.rate, args.warmup)
            before = CpuSnapshot.take(gunicorn.pid)
            samples = loader.run(scenario, args.rate, args.duration)
            result = summarise(samples, args.rate, args.duration)
            result.update(CpuSnapshot.usage(before, CpuSnapshot.take(gunicorn.pid), len(samples)))
            scenario.results = result
            met = meets(result, args.rate)
            all_met &= met
            errors = f"{result['errors']}" + (f" {result['error_kinds']}" if result["errors"] else "")
            print(f"{scenario.name:<16} {fmt(result['p50']):>7} {fmt(result['p90']):>7} {fmt(result['p99']):>7} "
                  f"{fmt(result['max']):>7} {fmt(result['rps']):>7} {errors:>6}  {'met' if met else 'NOT MET'}")
        print(f"(ms; goals: p50 <= {GOAL_P50_MS:g} ms, p99 <= {GOAL_P99_MS:g} ms, no errors, "
              f">= 95 % of {args.rate:g} requests/s achieved)")
        print(f"\nCPU while measuring ({os.cpu_count()} CPUs on this machine; load average now "
              f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}):")
        for scenario in chosen:
            r = scenario.results
            print(f"{scenario.name:<16} portal {fmt(r['cpu_ms_per_request'])} ms CPU per request, "
                  f"{r['portal_cores']:.2f} cores; load generator {r['loader_cores']:.2f}; "
                  f"other processes {r['other_cores']:.2f}")
        if args.hey:
            print(f"\nhey cross-check: -c 5 -q {args.rate / 5:g} -z {args.duration:g}s, first URL of each scenario")
            for scenario in chosen:
                loader.run(scenario, args.rate, min(args.warmup, 2))
                hey = run_hey(port, cookie, scenario, args.rate, args.duration, args.keep_alive)
                if hey:
                    print(f"{scenario.name:<16} {fmt(hey['p50']):>7} {fmt(hey['p90']):>7} {fmt(hey['p99']):>7} "
                          f"{fmt(hey['max']):>7} {fmt(hey['rps']):>7} {hey['errors']:>6}")
        if args.profile:
            profile(chosen)
        print(f"\nall goals {'met' if all_met else 'NOT met'}")
    finally:
        if loader is not None:
            loader.close()
        if gunicorn is not None:
            stop_process_group(gunicorn)
        if broker is not None:
            broker.stop()
        database.drop()
    return 1 if args.check and not all_met else 0


if __name__ == "__main__":
    sys.exit(main())
