"""/healthz and /readyz: in-process, and from a real gunicorn whose database, migrations or transport is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from tests.conftest import ROOT, _worker_database_url, free_port
from tests.telemetry.conftest import WebServer


def test_healthz_answers_without_touching_anything() -> None:
    # No django_db mark: a query would raise here.
    response = Client().get("/healthz", HTTP_HOST="10.1.2.3:8000")  # a pod IP: not in ALLOWED_HOSTS
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_names_each_check() -> None:
    response = Client().get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok", "transport": "ok"}}


@pytest.mark.django_db
def test_probes_need_no_login_but_other_pages_still_do() -> None:
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/account/").status_code == 302


def _readyz(server: WebServer) -> tuple[int, dict[str, Any]]:
    response = httpx.get(server.url + "/readyz", timeout=20)
    return response.status_code, response.json()


def test_readyz_is_503_naming_the_database_when_it_is_unreachable(
    web_server: Callable[..., WebServer]
) -> None:
    closed = free_port()  # nothing listens there
    server = web_server(DATABASE_URL=f"postgres://portal:secret-pass@127.0.0.1:{closed}/portal")
    status, body = _readyz(server)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"].startswith("failed: the database does not answer")
    assert body["checks"]["migrations"].startswith("skipped")
    assert body["checks"]["transport"] == "ok"
    assert str(closed) not in json.dumps(body) and "secret-pass" not in json.dumps(body)  # public: no addresses
    # The detail is in the web's log, at WARNING, without the password.
    assert "Not ready: database" in server.log() and "secret-pass" not in server.log()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200  # alive all the same


def test_readyz_is_503_naming_migrations_not_applied(web_server: Callable[..., WebServer], tmp_path: Path) -> None:
    server = web_server(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")
    status, body = _readyz(server)
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"].startswith("failed: ")
    assert "not applied" in body["checks"]["migrations"]


def test_readyz_is_503_naming_the_transport_when_redis_is_down(
    transactional_db: Any, web_server: Callable[..., WebServer]
) -> None:
    server = web_server(DATABASE_URL=_worker_database_url(), CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    status, body = _readyz(server)
    assert status == 503
    assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
    assert body["checks"]["transport"].startswith("failed: Redis does not answer")


def test_a_ready_web_does_not_log_its_probes_at_info(
    transactional_db: Any, web_server: Callable[..., WebServer]
) -> None:
    server = web_server(DATABASE_URL=_worker_database_url())
    for _ in range(3):
        assert _readyz(server) == (200, {"status": "ok", "checks": {
            "database": "ok", "migrations": "ok", "transport": "ok"}})
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    assert httpx.get(server.url + "/login/", timeout=10, headers={"Host": "localhost"}).status_code == 200
    lines = server.log().splitlines()
    assert any("GET /login/ 200" in line for line in lines), lines
    assert not any("/healthz" in line or "/readyz" in line for line in lines), lines


def test_the_filesystem_transport_check_needs_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          settings: Any) -> None:
    from telemetry import health

    folder = tmp_path / "queue"
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    with pytest.raises(health.CheckFailed, match="message folder"):
        health.check_transport()
    folder.mkdir()
    health.check_transport()
    if os.geteuid() != 0:  # root may write anywhere
        folder.chmod(0o500)
        with pytest.raises(health.CheckFailed):
            health.check_transport()


def test_a_start_without_collected_static_files_says_what_to_run(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "catalog_portal.settings", "PORTAL_DATA_DIR": str(tmp_path)}
    env.pop("STATIC_ROOT", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert "telemetry.W001" in result.stderr and "collectstatic --noinput" in result.stderr
