"""Shared caches across web processes (issue 13): two web processes enforce one sign-in lock-out.

Each test starts two real web processes (gunicorn, one worker each) on this run's test database, with the cache
configuration the portal derives by itself: with a Redis Celery broker (CI's Postgres + Redis set-up), the Redis
database after the broker's; on the embedded default, files under the shared PORTAL_DATA_DIR. Failures are sent
to both in turn, so neither alone reaches the limit: only a counter the two share locks the account.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from catalog_portal.caches import cache_settings, cache_url_from_broker
from tests.conftest import ROOT, free_port, stop_processes, wait_for

LOCKED = "Too many failed sign-in attempts"


def _database_url() -> str:
    """This run's test database, as a DATABASE_URL the web processes can use."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = quote(params.get("USER") or "", safe="")
    password = f":{quote(params['PASSWORD'], safe='')}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgresql://{user}{password}@{host}{port}/{params['NAME']}"


@pytest.fixture
def web_processes(tmp_path: Path, transactional_db: Any) -> Iterator[Callable[..., list[str]]]:
    """Starts `count` gunicorn processes (one worker each) sharing one data folder; returns their base URLs."""
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int = 2, **env_overrides: str) -> list[str]:
        urls = []
        for index in range(count):
            port = free_port()
            env = dict(os.environ)
            env.update(DJANGO_SETTINGS_MODULE="catalog_portal.settings", PORTAL_DATA_DIR=str(tmp_path / "data"),
                       DATABASE_URL=_database_url(), STATIC_ROOT=str(settings.STATIC_ROOT), PYTHONUNBUFFERED="1",
                       SECURE_COOKIES="false", LOGIN_FAILURE_LIMIT="5")
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            env.update(env_overrides)
            log_path = tmp_path / f"web-{index}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "gunicorn", "-c", "python:catalog_portal.gunicorn", "catalog_portal.wsgi",
                     "-b", f"127.0.0.1:{port}", "-w", "1"],
                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            started.append(process)
            url = f"http://127.0.0.1:{port}"

            def alive(process: subprocess.Popen[bytes] = process, url: str = url, log_path: Path = log_path) -> bool:
                if process.poll() is not None:
                    pytest.fail(f"gunicorn exited at start:\n{log_path.read_text(errors='replace')[-3000:]}")
                try:
                    return httpx.get(url + "/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(alive, timeout=60, interval=0.1, what="gunicorn to answer /healthz")
            urls.append(url)
        return urls

    yield start
    stop_processes(started)


def _fail_sign_in(url: str, username: str) -> str:
    """One sign-in with a wrong password at `url` (a fresh browser: CSRF cookie and token from the form)."""
    with httpx.Client(base_url=url, timeout=20) as browser:
        form = browser.get("/login/")
        assert form.status_code == 200, form.text[:500]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, form.text[:500]
        answer = browser.post("/login/", data={"username": username, "password": "wrong-password-1",
                                               "csrfmiddlewaretoken": token.group(1)},
                              headers={"Referer": url + "/login/"})
        assert answer.status_code == 200, answer.text[:500]
        return answer.text


def test_two_web_processes_enforce_one_sign_in_lockout(web_processes: Callable[..., list[str]]) -> None:
    first, second = web_processes()
    for attempt in range(5):  # 3 failures at the first process, 2 at the second: the limit only in total
        page = _fail_sign_in((first, second)[attempt % 2], "carol")
        assert LOCKED not in page, attempt
    assert LOCKED in _fail_sign_in(second, "carol")
    assert LOCKED in _fail_sign_in(first, "carol")
    assert LOCKED not in _fail_sign_in(first, "dave")  # the lock is per username (and address)


def test_with_a_cache_per_process_the_same_failures_lock_nothing(web_processes: Callable[..., list[str]]) -> None:
    """The control: what the test above catches (each process counting on its own)."""
    first, second = web_processes(CACHE_URL="locmem://")
    for attempt in range(6):
        assert LOCKED not in _fail_sign_in((first, second)[attempt % 2], "carol"), attempt


# --- Which cache the settings choose ---------------------------------------------------------------------------


def test_redis_cache_is_the_database_after_the_celery_brokers() -> None:
    assert cache_url_from_broker("redis://127.0.0.1:6379/6") == "redis://127.0.0.1:6379/7"
    assert cache_url_from_broker("redis://:pw@redis:6379") == "redis://:pw@redis:6379/1"
    assert cache_url_from_broker("rediss://redis:6380/0?ssl_cert_reqs=none") == "rediss://redis:6380/1?ssl_cert_reqs=none"
    assert cache_url_from_broker("redis://127.0.0.1:6379/15") == "redis://127.0.0.1:6379/14"  # 16 is not there
    assert cache_url_from_broker("filesystem://") is None
    assert cache_url_from_broker("amqp://guest@rabbit//") is None


def test_cache_settings(tmp_path: Path) -> None:
    derived = cache_settings(cache_url=None, broker_url="redis://r:6379/2", data_dir=tmp_path, store_seconds=600)
    assert derived["default"]["BACKEND"].endswith("RedisCache") and derived["default"]["LOCATION"] == "redis://r:6379/3"
    assert derived["store"]["LOCATION"] == "redis://r:6379/3" and derived["store"]["TIMEOUT"] == 600
    assert derived["store"]["KEY_PREFIX"] != derived["default"]["KEY_PREFIX"]

    embedded = cache_settings(cache_url=None, broker_url="filesystem://", data_dir=tmp_path, store_seconds=600)
    assert embedded["default"]["BACKEND"].endswith("FileBasedCache")
    assert embedded["default"]["LOCATION"] == str((tmp_path / "cache").resolve())
    assert embedded["store"]["BACKEND"].endswith("LocMemCache")

    explicit = cache_settings(cache_url="redis://cache:6379/0", broker_url="filesystem://", data_dir=tmp_path,
                              store_seconds=0)
    assert explicit["default"]["LOCATION"] == "redis://cache:6379/0"
    assert explicit["store"]["BACKEND"].endswith("DummyCache")  # STORE_CACHE_SECONDS=0: off

    for bad in ("memcached://x:11211", "file://relative/folder"):
        with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
            cache_settings(cache_url=bad, broker_url="filesystem://", data_dir=tmp_path, store_seconds=1)


def test_this_runs_caches_follow_its_celery_broker() -> None:
    """Under Postgres + Redis the tests use the Redis db after their own broker's, never another run's."""
    default = settings.CACHES["default"]
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert default["LOCATION"] == cache_url_from_broker(settings.CELERY_BROKER_URL)
    else:
        assert default["BACKEND"].endswith("FileBasedCache")
        assert Path(default["LOCATION"]).is_relative_to(settings.DATA_DIR.resolve())
