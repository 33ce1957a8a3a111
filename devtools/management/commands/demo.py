"""`python manage.py demo`: the whole portal on one machine, with nothing installed but Python.

Migrates, makes an admin account, starts the sample broker, registers it, starts a Celery worker with
an embedded beat, and serves the portal until Ctrl+C. Works on the embedded default (SQLite and a
file-based Celery transport) and on Postgres + Redis alike.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from brokers import services
from brokers.models import Broker
from catalog_portal.env import secret_from_file
from catalog_portal.staticfiles import collect_static


class Command(BaseCommand):
    help = "Run the portal with a sample broker, a worker and beat (the README's run command)."
    requires_system_checks: list[str] = []  # run below, once the static files are collected (a first run has none)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--addr", default=os.environ.get("PORTAL_ADDR", "127.0.0.1:8000"))
        parser.add_argument("--broker-port", type=int, default=int(os.environ.get("SAMPLE_BROKER_PORT", "9100")))
        parser.add_argument("--setup-only", action="store_true", help="Prepare everything, start nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        # `kill` (SIGTERM) must stop the children too, as Ctrl+C does; and Ctrl+C (SIGINT) must work even when
        # the demo was started from a background job, which starts with SIGINT ignored.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.stdout.write("Collecting static files...")
        collect_static()
        self.check()
        self.stdout.write("Applying database migrations...")
        call_command("migrate", interactive=False, verbosity=0)
        username, password = self._admin_account()
        children: list[subprocess.Popen[bytes]] = []
        try:
            broker_url = f"http://127.0.0.1:{options['broker_port']}"
            broker_password = secret_from_file(Path(settings.DATA_DIR) / "sample-broker.password",
                                               lambda: secrets.token_urlsafe(16))
            if not options["setup_only"]:
                self.stdout.write(f"Starting the sample broker on {broker_url}...")
                # The password goes by environment, never on the command line (`ps` shows that to everyone).
                children.append(self._spawn(
                    [sys.executable, "-m", "devtools.sample_broker", "--port", str(options["broker_port"]),
                     "--username=portal", "--quiet"], SAMPLE_BROKER_PASSWORD=broker_password))
                self._wait_for_broker(broker_url)
            self._register_sample_broker(broker_url, broker_password)
            if options["setup_only"]:
                return
            self.stdout.write("Starting a Celery worker with beat...")
            children.append(self._spawn(
                [sys.executable, "-m", "celery", "-A", "catalog_portal", "worker", "--beat", "--pool=threads",
                 "--concurrency=4", "--loglevel=WARNING", "--without-mingle", "--without-gossip",
                 f"--schedule={Path(settings.DATA_DIR) / 'celerybeat-schedule'}"]))
            self._banner(options["addr"], username, password)
            call_command("runserver", options["addr"], use_reloader=False)
        finally:
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)

    def _admin_account(self) -> tuple[str, str]:
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secret_from_file(
            Path(settings.DATA_DIR) / "admin.password", lambda: secrets.token_urlsafe(12)
        )
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            user = user_model.objects.create_superuser(
                username, os.environ.get("DJANGO_SUPERUSER_EMAIL", "admin@example.com"), password
            )
        elif not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        return username, password

    def _register_sample_broker(self, url: str, password: str) -> None:
        auth = services.BrokerAuth(type="basic", username="portal", secret=password)
        broker = Broker.objects.filter(name="sample-broker").first()
        if broker is None:
            services.broker_register(name="sample-broker", url=url, auth=auth, relist_interval_seconds=300)
        else:
            services.broker_update(broker=broker, auth=auth, url=url)

    def _spawn(self, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, cwd=settings.BASE_DIR, env={**os.environ, **env}, start_new_session=True)

    def _wait_for_broker(self, url: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/v2/catalog", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stderr.write(f"The sample broker did not start on {url}; the marketplace will stay empty.")

    def _banner(self, addr: str, username: str, password: str) -> None:
        line = "=" * 64
        self.stdout.write(
            f"\n{line}\n Catalog Portal is starting on http://{addr}/\n"
            f" Sign in as {username} / {password}\n"
            f" Admin console: http://{addr}/admin/   API: http://{addr}/api/v1/docs/\n"
            f" Data: {settings.DATA_DIR}   Stop with Ctrl+C\n{line}\n"
        )
