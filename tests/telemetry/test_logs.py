"""LOG_FORMAT=json: one JSON object per line in web and worker, with the request id carried from the web request
into the operation it starts and into the worker's lines for that operation."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from devtools.sample_broker import SampleBroker
from instances.models import Operation
from telemetry.logs import ContextFilter, JSONFormatter, log_context
from tests.conftest import ROOT, Workers, _worker_database_url, signed_in, wait_for
from tests.instances.helpers import mirrored_broker, plan
from tests.telemetry.conftest import WebServer


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the root logger writes meanwhile, through the portal's JSON formatter and context filter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_json_line_has_the_fields_and_the_context(json_log: io.StringIO) -> None:
    logger = logging.getLogger("portal.test")
    with log_context(request_id="req-1", operation_id="op-1"), log_context(broker="b1"):
        logger.warning("hello %s", "world")
    logger.info("outside")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    first, second, third = lines(json_log.getvalue())
    assert first["message"] == "hello world" and first["level"] == "WARNING" and first["logger"] == "portal.test"
    assert (first["request_id"], first["operation_id"], first["broker"]) == ("req-1", "op-1", "b1")
    assert first["timestamp"].endswith("+00:00")
    assert "request_id" not in second
    assert "ValueError: boom" in third["exception"]


@pytest.mark.django_db
def test_the_web_logs_each_request_once_with_its_id_and_user(json_log: io.StringIO, alice: Any) -> None:
    client = signed_in(alice)
    assert client.get("/account/", HTTP_X_REQUEST_ID="abc-123").status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    requests = [line for line in lines(json_log.getvalue()) if line["logger"] == "telemetry.request"]
    assert len(requests) == 1, requests  # the probes are not logged
    assert requests[0]["message"].startswith("GET /account/ 200")
    assert requests[0]["request_id"] == "abc-123" and requests[0]["user"] == "alice"


def test_gunicorn_writes_json_lines_only(transactional_db: Any, web_server: Callable[..., WebServer]) -> None:
    server = web_server(DATABASE_URL=_worker_database_url(), LOG_FORMAT="json")
    response = httpx.get(server.url + "/login/", headers={"Host": "localhost", "X-Request-ID": "gun-42"}, timeout=10)
    assert response.status_code == 200
    server.process.terminate()
    server.process.wait(timeout=20)
    logged = lines(server.log())
    assert any(line["logger"].startswith("gunicorn") for line in logged)  # gunicorn's own lines too
    request = next(line for line in logged if line["logger"] == "telemetry.request")
    assert request["request_id"] == "gun-42" and request["message"].startswith("GET /login/ 200")


@pytest.mark.e2e
def test_the_request_id_reaches_the_worker_log_lines_of_the_operation(
    live_server: Any, workers: Workers, admin_user: Any, osb_url: str, osb_broker: SampleBroker, tmp_path: Path
) -> None:
    heartbeat = tmp_path / "worker.alive"
    worker = workers.start(quiet=True, LOG_FORMAT="json", PORTAL_HEARTBEAT_FILE=str(heartbeat))
    broker = mirrored_broker(osb_url)
    token = Token.objects.create(user=admin_user).key
    response = httpx.post(
        live_server.url + "/api/v1/instances/", timeout=30,
        json={"name": "logged", "namespace": "team-a", "plan": str(plan(broker, "redis-cache", "cache-free").pk)},
        headers={"Authorization": f"Token {token}", "X-Request-ID": "req-from-the-web-7"},
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == "req-from-the-web-7"
    operation = Operation.objects.get(instance_id=response.json()["id"])
    assert operation.request_id == "req-from-the-web-7"

    log_path: Path = worker.log_path  # type: ignore[attr-defined]

    def step_logged() -> list[dict[str, Any]]:
        return [line for line in lines(log_path.read_text()) if line.get("operation_id") == str(operation.pk)]

    found = wait_for(step_logged, timeout=60, what="the worker's log line for the operation",
                     explain=lambda: log_path.read_text()[-3000:])
    assert all(line["request_id"] == "req-from-the-web-7" for line in found), found
    assert found[0]["instance_id"] == str(operation.instance_id) and found[0]["broker"] == broker.name
    assert found[0]["user"] == admin_user.username
    # Every line the worker wrote is one JSON object (lines() raises on anything else), Celery's own included.
    assert any(line["logger"].startswith("celery") for line in lines(log_path.read_text()))
    # The worker's liveness file is fresh, and the probe says so; a stale one fails it.
    probe = [sys.executable, "-m", "telemetry.liveness", str(heartbeat)]
    assert subprocess.run([*probe, "60"], cwd=ROOT, capture_output=True).returncode == 0
    assert subprocess.run([sys.executable, "-m", "telemetry.liveness", str(tmp_path / "none"), "60"], cwd=ROOT,
                          capture_output=True).returncode == 1


def test_beat_writes_json_lines_and_touches_its_heartbeat(tmp_path: Path) -> None:
    """Beat alone (its own data folder and file transport: its nudges reach no other test's worker)."""
    heartbeat, log_path = tmp_path / "beat.alive", tmp_path / "beat.log"
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DJANGO_SETTINGS_MODULE="catalog_portal.settings", PORTAL_DATA_DIR=str(tmp_path / "data"),
               LOG_FORMAT="json", PORTAL_HEARTBEAT_FILE=str(heartbeat), PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "catalog_portal", "--quiet", "beat",
                                    "--loglevel=INFO", f"--schedule={tmp_path / 'schedule'}"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "Sending due task" in log_path.read_text() and heartbeat.exists(), timeout=60,
                 what="beat to send a task", explain=lambda: log_path.read_text()[-3000:])
        probe = [sys.executable, "-m", "telemetry.liveness", str(heartbeat), "30"]
        assert subprocess.run(probe, cwd=ROOT, capture_output=True).returncode == 0
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    logged = lines(log_path.read_text())  # every line is JSON
    assert any(line["logger"].startswith("celery.beat") for line in logged)


@pytest.mark.parametrize(("name", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_a_bad_log_setting_stops_the_start_naming_it(name: str, value: str, tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "catalog_portal.settings", "PORTAL_DATA_DIR": str(tmp_path),
           name: value}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert name in result.stderr and repr(value) in result.stderr
