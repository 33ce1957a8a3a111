"""Shared fixtures: personas, API clients, the HTTP test broker, the OSB contract proxy and a real worker."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from devtools.sample_broker import SampleBroker

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OPENAPI = SHARED / "osb-spec" / "openapi.yaml"
BROKER_USER, BROKER_PASSWORD = "portal", "s3cret-broker-pass"


def wait_for(condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05, what: str = "",
             explain: Callable[[], Any] | None = None) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds, with what `explain()`
    says of the state at that moment (for a failure that shows up only on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            state = f"\n{explain()}" if explain is not None else ""
            pytest.fail(f"Timed out after {timeout} s waiting for {what or condition}{state}")
        time.sleep(interval)


def alias_url(url: str) -> str:
    """The same server under another name (localhost for 127.0.0.1): to the portal a second registration of the
    test broker, which it refuses under the same URL (catalog ids must be unique across brokers)."""
    return url.replace("://127.0.0.1:", "://localhost:", 1)


def with_catalog_ids_prefixed(catalog: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A copy of `catalog` whose service and plan ids start with `prefix` (names unchanged): the same services
    offered by another broker, as the spec's globally unique ids allow."""
    import copy

    renamed = copy.deepcopy(catalog)
    for service in renamed["services"]:
        service["id"] = prefix + service["id"]
        for plan in service["plans"]:
            plan["id"] = prefix + plan["id"]
    return renamed


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop process groups started with start_new_session: SIGTERM, then SIGKILL after 20 s."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _static_files_collected() -> None:
    """Pages name assets through collectstatic's manifest (hashed names), as in production: collect them once
    (skipped when the sources did not change since the last run)."""
    from catalog_portal.staticfiles import collect_static

    collect_static()


@pytest.fixture(scope="session")
def live_server() -> Iterator[Any]:
    """pytest-django's live server, with static files served as in production: by the portal's own WhiteNoise
    middleware, under their hashed names, compressed (pytest-django would put Django's development handler in
    front, which knows only the unhashed names)."""
    from pytest_django.live_server_helper import LiveServer

    server = LiveServer("localhost", start=False)
    server.thread.static_handler = lambda application: application
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_store_cache() -> Iterator[None]:
    """Each test starts with an empty page cache and no sign-in lock-out counters (process-wide, files under the
    test data dir, or this run's Redis db, so a counter left by an earlier test or run never leaks in)."""
    from django.core.cache import caches

    caches["store"].clear()
    caches["default"].clear()
    yield


def signed_in(user: Any, **client_options: Any) -> Any:
    """A Django test client with `user` signed in (a session, as a browser has)."""
    from django.test import Client

    client = Client(**client_options)
    client.force_login(user)
    return client


# --- personas ------------------------------------------------------------------------------------


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("admin", "admin@example.com", "admin-pass-123")


def make_team(name: str, *namespaces: str) -> Any:
    from teams.models import Team, TeamNamespace

    team = Team.objects.create(name=name)
    for namespace in namespaces:
        TeamNamespace.objects.create(team=team, namespace=namespace)
    return team


def join(user: Any, team: Any, role: str) -> Any:
    from teams.models import Membership

    Membership.objects.update_or_create(team=team, user=user, defaults={"role": role})
    return user


@pytest.fixture
def team_a(db: Any) -> Any:
    """Team A owns the namespace team-a."""
    return make_team("team-a", "team-a")


@pytest.fixture
def team_b(db: Any) -> Any:
    """Team B owns the namespace team-b."""
    return make_team("team-b", "team-b")


@pytest.fixture
def alice(django_user_model: Any, team_a: Any) -> Any:
    """A developer in team A (namespace team-a)."""
    user = django_user_model.objects.create_user("alice", "alice@example.com", "alice-pass-123")
    return join(user, team_a, "developer")


@pytest.fixture
def bob(django_user_model: Any, team_a: Any) -> Any:
    """A viewer in team A: may look, not change."""
    user = django_user_model.objects.create_user("bob", "bob@example.com", "bob-pass-123")
    return join(user, team_a, "viewer")


@pytest.fixture
def carol(django_user_model: Any, team_b: Any) -> Any:
    """A developer in team B (namespace team-b): sees nothing of team A."""
    user = django_user_model.objects.create_user("carol", "carol@example.com", "carol-pass-123")
    return join(user, team_b, "developer")


def _token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def admin_api(admin_user: Any) -> APIClient:
    return _token_client(admin_user)


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    return _token_client(alice)


# --- the HTTP test broker ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _broker_process() -> Iterator[SampleBroker]:
    broker = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD).start()
    yield broker
    broker.stop()


@pytest.fixture
def osb_broker(_broker_process: SampleBroker) -> Iterator[SampleBroker]:
    """The test broker, reset: sample catalog, no scripted answers, no recorded requests."""
    _broker_process.reset()
    yield _broker_process
    _broker_process.reset()


def _prism_bin() -> str | None:
    candidate = os.environ.get("PRISM_BIN") or str(ROOT / ".ci" / "prism" / "node_modules" / ".bin" / "prism")
    return candidate if Path(candidate).exists() and shutil.which("node") else None


@pytest.fixture(scope="session")
def _prism(_broker_process: SampleBroker) -> Iterator[str | None]:
    """`prism proxy` in front of the test broker: a request violating the OSB OpenAPI document gets 422."""
    prism = _prism_bin()
    if prism is None:
        if os.environ.get("REQUIRE_OSB_PROXY") == "1":
            pytest.fail("REQUIRE_OSB_PROXY=1 but prism is not installed (npm ci --prefix .ci/prism)")
        yield None
        return
    port = free_port()
    process = subprocess.Popen(
        [prism, "proxy", str(OPENAPI), _broker_process.url, "--errors", "-p", str(port), "-h", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            httpx.get(url + "/v2/catalog", timeout=1)
        except httpx.TransportError:
            return process.poll() is not None
        return True

    wait_for(up, timeout=60, what="prism to start")
    if process.poll() is not None:
        pytest.fail("prism exited at start")
    yield url
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture
def osb_url(osb_broker: SampleBroker, _prism: str | None) -> str:
    """Where the portal should reach the test broker: through the contract proxy when it is installed."""
    return _prism or osb_broker.url


# --- a real Celery worker ---------------------------------------------------------------------------


def _worker_database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Workers:
    """Starts real `celery -A catalog_portal worker` processes on the test database; stops them at teardown."""

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *, beat: bool = False, quiet: bool = False, **env_overrides: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="catalog_portal.settings",
            DATABASE_URL=_worker_database_url(),
            PYTHONUNBUFFERED="1",
            SWEEP_INTERVAL_SECONDS="1",
            SWEEP_GRACE_SECONDS="1",
        )
        env.update(env_overrides)
        index = len(self.processes)
        log_path = self.tmp_dir / f"worker-{index}.log"
        command = [sys.executable, "-m", "celery", "-A", "catalog_portal", *(["--quiet"] if quiet else []),
                   "worker", "--pool=threads",
                   "--concurrency=4", "--loglevel=INFO", "--without-mingle", "--without-gossip",
                   f"--hostname=test-worker-{index}@%h"]
        if beat:
            command += ["--beat", f"--schedule={self.tmp_dir / f'beat-{index}'}"]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        self.processes.append(process)
        wait_for(lambda: b"ready." in log_path.read_bytes() or process.poll() is not None, timeout=60,
                 what="the Celery worker to start")
        if process.poll() is not None:
            pytest.fail(f"The Celery worker exited at start:\n{log_path.read_text()[-3000:]}")
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process, signal.SIGTERM)


@pytest.fixture
def workers(transactional_db: Any, tmp_path: Path) -> Iterator[Workers]:
    """Real worker processes; tests using them see committed data (transactional_db)."""
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def celery_worker_process(workers: Workers) -> subprocess.Popen[bytes]:
    """One real worker with an embedded beat (sweeper every second)."""
    return workers.start(beat=True)


# --- a Kubernetes API stand-in ----------------------------------------------------------------------


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A Kubernetes API stand-in on loopback, configured for the portal through KUBECONFIG like a real cluster.

    Worker processes started afterwards inherit KUBECONFIG from the environment.
    """
    from devtools.kube_standin import KubeStandIn

    server = KubeStandIn(namespaces=("default", "team-a", "team-b")).start()
    path = tmp_path / "kubeconfig"
    server.write_kubeconfig(path)
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield server
    server.stop()
