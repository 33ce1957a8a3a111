"""The Celery app: `celery -A catalog_portal worker` and `celery -A catalog_portal beat`."""

import os

from celery import Celery
from celery.signals import worker_init

from telemetry.worker import install as install_telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_portal.settings")

app = Celery("catalog_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_telemetry(app)  # the portal's log format, and the liveness heartbeat file

# How many tasks this worker process runs at once (its pool's threads), for a per-process share of them
# (brokers/throttle.py). None outside a worker, and in a prefork child (one task at a time there).
WORKER_THREADS: int | None = None


@worker_init.connect
def _remember_threads(sender=None, **kwargs):  # type: ignore[no-untyped-def]
    global WORKER_THREADS
    pool = getattr(sender, "pool_cls", None)  # "threads" at this point, or the pool class
    name = pool if isinstance(pool, str) else f"{getattr(pool, '__module__', '')}.{getattr(pool, '__name__', '')}"
    if "thread" in name.lower():
        WORKER_THREADS = int(getattr(sender, "concurrency", 0) or 0) or None
