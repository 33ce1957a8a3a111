"""Which caches the portal uses (`CACHES`), from `CACHE_URL` or, when it is unset, from the Celery broker.

Two caches:
* "default": the sign-in lock-out counters (catalog_portal.forms). Every web process must see the same counter,
  or each replica (and each gunicorn worker) would allow its own LOGIN_FAILURE_LIMIT failures.
* "store": the marketplace's rendered pages (brokers.views). Never stale whatever the backend (the key holds the
  catalog's version); shared, one replica's miss is every replica's hit.

`CACHE_URL`:
* `redis://host:port/N` or `rediss://...`: both caches in that Redis database (Django's RedisCache);
* `file:///absolute/folder`: lock-out counters in files in that folder (shared by the processes of one host),
  the store in each process's memory;
* `locmem://`: both in each process's memory (one process only: the lock-out is per process).

Unset: with a Redis Celery broker, the Redis database after the broker's (`redis://host:6379/0` -> `/1`; the one
before when the broker uses 15, the last of Redis's default 16); otherwise (the embedded default, AMQP) the
lock-out counters go to files under PORTAL_DATA_DIR/cache, which every web process of the host shares, and the
store stays in each process's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

REDIS_SCHEMES = ("redis", "rediss")
LAST_DEFAULT_REDIS_DB = 15  # Redis has databases 0-15 unless configured otherwise
REDIS_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 2}  # a cache never hangs a request for long
LOCKOUT_MAX_ENTRIES = 10_000
STORE_MAX_ENTRIES = 2_000  # pages (~50 kB) and cards (~1 kB): a 1,000-service catalog's cards fit


def cache_url_from_broker(broker_url: str) -> str | None:
    """The Redis database after the Celery broker's (None when the broker is not Redis)."""
    parts = urlsplit(broker_url)
    if parts.scheme not in REDIS_SCHEMES:
        return None
    path = parts.path.strip("/")
    db = int(path) if path.isdigit() else 0
    cache_db = db + 1 if db < LAST_DEFAULT_REDIS_DB else db - 1
    return urlunsplit((parts.scheme, parts.netloc, f"/{cache_db}", parts.query, ""))


def cache_settings(*, cache_url: str | None, broker_url: str, data_dir: Path, store_seconds: int) -> dict[str, Any]:
    url = cache_url or cache_url_from_broker(broker_url)
    if url is None:
        url = (data_dir / "cache").resolve().as_uri()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    store: dict[str, Any] = {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "store",
        "OPTIONS": {"MAX_ENTRIES": STORE_MAX_ENTRIES},
    }
    if scheme in REDIS_SCHEMES:
        default = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                   "KEY_PREFIX": "portal", "OPTIONS": dict(REDIS_OPTIONS)}
        store = {**default, "KEY_PREFIX": "store", "OPTIONS": dict(REDIS_OPTIONS)}
    elif scheme == "file":
        parts = urlsplit(url)
        folder = parts.path
        if parts.netloc or not folder.startswith("/"):
            raise ImproperlyConfigured(f"CACHE_URL file:// needs an absolute folder (file:///path), not {url!r}")
        default = {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": folder,
                   "OPTIONS": {"MAX_ENTRIES": LOCKOUT_MAX_ENTRIES}}
    elif scheme == "locmem":
        default = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default",
                   "OPTIONS": {"MAX_ENTRIES": LOCKOUT_MAX_ENTRIES}}
    else:
        raise ImproperlyConfigured(f"CACHE_URL must be a redis://, rediss://, file:/// or locmem:// URL, not {url!r}")
    if store_seconds <= 0:
        store = {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}  # STORE_CACHE_SECONDS=0: off
    else:
        store["TIMEOUT"] = store_seconds
    return {"default": default, "store": store}
