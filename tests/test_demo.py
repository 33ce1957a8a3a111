"""The README's run command: a fresh data folder gives a working portal with a filled marketplace."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, wait_for

pytestmark = pytest.mark.e2e


def test_demo_starts_a_portal_with_the_sample_catalog(tmp_path: Path) -> None:
    port, broker_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(PORTAL_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="catalog_portal.settings",
               PYTHONUNBUFFERED="1", SWEEP_INTERVAL_SECONDS="2")
    # A generated password may start with "-": the broker's command line must still take it.
    (tmp_path / "sample-broker.password").write_text("-starts-with-a-dash\n")
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--addr", f"127.0.0.1:{port}", "--broker-port", str(broker_port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _check_portal(f"http://127.0.0.1:{port}", log_path)
            _check_first_run(f"http://127.0.0.1:{port}", log_path, process.pid)
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:  # a busy machine: slower than 20 s to stop
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
    # The demo's children (worker, broker) are gone with it.
    assert process.returncode is not None


def _check_portal(base: str, log_path: Path) -> None:
    def banner() -> Any:
        return re.search(r"Sign in as (\S+) / (\S+)", log_path.read_text(errors="replace"))

    match = wait_for(banner, timeout=120, interval=0.2, what="the demo banner")
    username, password = match.group(1), match.group(2)

    def healthy() -> bool:
        try:
            return httpx.get(base + "/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, timeout=60, interval=0.2, what="the portal to answer")
    with httpx.Client(base_url=base, timeout=10) as client:
        login_page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
        response = client.post("/login/", data={"username": username, "password": password,
                                                "csrfmiddlewaretoken": token}, headers={"Referer": base + "/login/"})
        assert response.status_code == 302, log_path.read_text()[-2000:]

        def services() -> Any:
            body = client.get("/api/v1/services/").json()
            return body["count"] > 0 and body

        body = wait_for(services, timeout=60, interval=0.5, what="the sample catalog to be mirrored")
        assert any(s["name"] == "postgresql" for s in body["results"])
        marketplace = client.get("/")
        assert marketplace.status_code == 200
        assert "PostgreSQL" in marketplace.text
        admin = client.get("/admin/brokers/broker/")
        assert "sample-broker" in admin.text and "Ready" in admin.text


def _check_first_run(base: str, log_path: Path, demo_pid: int) -> None:
    """What a newcomer sees: progress lines, no transport warning, no password on a command line, and assets
    served under hashed names, compressed, cached for a year."""
    log = log_path.read_text(errors="replace")
    assert "Applying database migrations..." in log and "Starting the sample broker" in log
    assert "No hostname was supplied" not in log
    assert "System check identified" not in log  # no warning about static files that the demo collects itself
    password = "-starts-with-a-dash"
    for pid in _descendants(demo_pid):
        try:
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        assert password not in command_line, command_line
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/login/").text
        css = re.search(r'href="(/static/css/portal\.[0-9a-f]{12}\.css)"', page)
        assert css, "the stylesheet is not linked by its hashed name"
        asset = client.get(css.group(1), headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200
        assert asset.headers["Content-Encoding"] == "gzip"
        assert "max-age=315360000" in asset.headers["Cache-Control"] and "immutable" in asset.headers["Cache-Control"]


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
