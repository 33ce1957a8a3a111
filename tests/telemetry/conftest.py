"""A real web process (gunicorn with the portal's own configuration) for the operations endpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.conftest import ROOT, free_port, stop_processes, wait_for


class WebServer:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process, self.url, self.log_path = process, url, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Starts `gunicorn -c python:catalog_portal.gunicorn catalog_portal.wsgi` with the environment given (over
    a copy of this one, in a data folder of its own); waits until it answers /healthz."""
    started: list[subprocess.Popen[bytes]] = []

    def start(workers: int = 1, **env_overrides: str) -> WebServer:
        port = free_port()
        env = dict(os.environ)
        env.update(DJANGO_SETTINGS_MODULE="catalog_portal.settings", PORTAL_DATA_DIR=str(tmp_path / "data"),
                   STATIC_ROOT=str(settings.STATIC_ROOT), PYTHONUNBUFFERED="1", SECURE_COOKIES="false")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(env_overrides)
        log_path = tmp_path / f"web-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:catalog_portal.gunicorn", "catalog_portal.wsgi",
                 "-b", f"127.0.0.1:{port}", "-w", str(workers)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        server = WebServer(process, f"http://127.0.0.1:{port}", log_path)

        def alive() -> bool:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited at start:\n{server.log()[-3000:]}")
            try:
                return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(alive, timeout=60, interval=0.1, what="gunicorn to answer /healthz")
        return server

    yield start
    stop_processes(started)
