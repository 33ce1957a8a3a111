"""Test settings: the real settings with a fast hasher; DATABASE_URL/CELERY_BROKER_URL still choose the services."""

from catalog_portal.settings import *  # noqa: F403
from catalog_portal.settings import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECURE_COOKIES = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so that Celery worker processes started by the tests see the same data.
    DATABASES["default"]["TEST"] = {"NAME": str(DATABASES["default"]["NAME"]) + ".test"}
else:
    # A test database of this run's own: two runs on one server (a developer's and CI's) must not collide.
    import os

    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
