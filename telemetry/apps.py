from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core import checks


class TelemetryConfig(AppConfig):
    name = "telemetry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(static_files_collected)  # not tagged staticfiles: collectstatic itself skips it


def static_files_collected(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Pages name assets by their hashed names from collectstatic's manifest: without it every page fails."""
    from django.conf import settings
    from django.contrib.staticfiles.storage import staticfiles_storage

    manifest = getattr(staticfiles_storage, "manifest_name", None)
    if manifest is None or (settings.STATIC_ROOT and (settings.STATIC_ROOT / manifest).exists()):
        return []
    return [checks.Warning(
        f"Static files are not collected in {settings.STATIC_ROOT}: pages will fail until they are.",
        hint="Run `python manage.py collectstatic --noinput` (the container image and scripts/run.sh do).",
        id="telemetry.W001",
    )]
