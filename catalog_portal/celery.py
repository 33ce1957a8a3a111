"""The Celery app: `celery -A catalog_portal worker` and `celery -A catalog_portal beat`."""

import os

from celery import Celery

from telemetry.worker import install as install_telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_portal.settings")

app = Celery("catalog_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_telemetry(app)  # the portal's log format, and the liveness heartbeat file
