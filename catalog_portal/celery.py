"""The Celery app: `celery -A catalog_portal worker` and `celery -A catalog_portal beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog_portal.settings")

app = Celery("catalog_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
