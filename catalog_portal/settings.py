"""Catalog Portal settings: one file, driven by the environment (see README "Environment")."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from catalog_portal.caches import cache_settings
from catalog_portal.env import env_bool, env_int, env_list, env_str, secret_from_file
from telemetry.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("PORTAL_DATA_DIR") or BASE_DIR / "var")

# --- Django core -------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or secret_from_file(
    DATA_DIR / "secret.key", lambda: secrets.token_urlsafe(50)
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
CSRF_FAILURE_VIEW = "catalog_portal.views.csrf_failure"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "telemetry",
    "catalog_portal",
    "teams",
    "brokers",
    "instances",
    "devtools",  # development tools: only the `demo` management command lives in an app
]

MIDDLEWARE = [
    "catalog_portal.middleware.RequestIDMiddleware",
    "catalog_portal.middleware.ApiBodyLimitMiddleware",  # a too-large /api/ body: JSON 413 before anything reads it
    "telemetry.http.TelemetryMiddleware",  # answers /healthz, /readyz, /metrics itself; times the rest
    "django.middleware.security.SecurityMiddleware",
    "catalog_portal.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "catalog_portal.middleware.QueryLengthMiddleware",  # list filters over FILTER_MAX_LENGTH: 400 naming them
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "catalog_portal.middleware.SnapshotReadsMiddleware",
]

ROOT_URLCONF = "catalog_portal.urls"
WSGI_APPLICATION = "catalog_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)}
        if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
            # An unreachable database fails a request (and /readyz) in seconds instead of hanging it.
            DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    except Exception as exc:  # dj_database_url raises plain ValueError/KeyError on nonsense
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
else:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "portal.sqlite3"}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL lets readers run beside one writer, and IMMEDIATE
    # transactions queue writers instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Caches ------------------------------------------------------------------------------------
# "store": rendered marketplace results and service pages. Never stale: the key holds the catalog's version
# (brokers.selectors.store_state), read from the database on every request; the timeout only frees memory.
# STORE_CACHE_SECONDS=0 turns it off. "default": the sign-in lock-out counters. Both are shared by every web process
# with Redis (CACHE_URL, or the Redis db after CELERY_BROKER_URL's): see catalog_portal/caches.py. CACHES is set
# below, after the Celery broker it derives from.
STORE_CACHE_SECONDS = env_int("STORE_CACHE_SECONDS", 600, minimum=0)

# --- Auth --------------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SECURE_COOKIES = env_bool("SECURE_COOKIES", not DEBUG and bool(_database_url))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# HTTP Strict Transport Security: on by default (one year) when cookies are secure, i.e. the portal is served over
# HTTPS; HSTS_SECONDS=0 turns it off.
HSTS_SECONDS = env_int("HSTS_SECONDS", 31536000 if SECURE_COOKIES else 0, minimum=0)
SECURE_HSTS_SECONDS = HSTS_SECONDS
X_FRAME_OPTIONS = "DENY"
# Sign-in throttling: this many failures per username and address lock that pair out for the window.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1)
if env_bool("BEHIND_HTTPS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- I18N / static -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` writes every asset here under a name with its content's hash, plus gzip copies; the
# portal serves them from here (whitenoise) with a one-year immutable cache lifetime. The container image
# collects them at build time into its own folder; the demo (scripts/run.sh) and the test suite before starting.
STATIC_ROOT = Path(env_str("STATIC_ROOT") or DATA_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# --- REST API ----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "teams.authentication.TrackedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "catalog_portal.api.Pagination",
    "DEFAULT_SCHEMA_CLASS": "catalog_portal.openapi.PortalAutoSchema",
    "EXCEPTION_HANDLER": "catalog_portal.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON in (API.md): a form-encoded or multipart body answers 415, as the document says. The parser answers 400
    # to a body nested too deeply (instead of a RecursionError).
    "DEFAULT_PARSER_CLASSES": ["catalog_portal.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": None,
}
# Hostile input: how deep a JSON request body may nest, and how deep and large instance/binding parameters may be
# (a 400 naming the limit). List filters (?search=, ?tag=, ...) longer than FILTER_MAX_LENGTH are refused (400).
REQUEST_JSON_MAX_DEPTH = env_int("REQUEST_JSON_MAX_DEPTH", 64, minimum=8)
PARAMETERS_MAX_DEPTH = env_int("PARAMETERS_MAX_DEPTH", 32, minimum=1)
PARAMETERS_MAX_BYTES = env_int("PARAMETERS_MAX_BYTES", 64 * 1024, minimum=1024)
FILTER_MAX_LENGTH = env_int("FILTER_MAX_LENGTH", 200, minimum=10)
# Request bodies over this many bytes are refused: 413 (JSON under /api/).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2621440, minimum=64 * 1024)  # 2.5 MB
SPECTACULAR_SETTINGS = {
    "TITLE": "Catalog Portal API",
    "DESCRIPTION": "Self-service marketplace for Open Service Broker services.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},  # no badge fetched from the internet
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Error bodies and their statuses: catalog_portal/api.py (errors()) and catalog_portal/openapi.py.
    # Request bodies get components of their own (InstanceCreateRequest...): only they can say that a string
    # must not be blank (minLength 1) or that a field is write-only.
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog_portal.openapi.validation_error_postprocess",
        "catalog_portal.openapi.query_length_postprocess",
    ],
    # Choice sets that share a field name get names of their own (drf-spectacular warns otherwise).
    "ENUM_NAME_OVERRIDES": {
        "InstanceStateEnum": "instances.states.InstanceState",
        "BindingStateEnum": "instances.states.BindingState",
        "OperationStateEnum": "instances.states.OpState",
        "OperationTypeEnum": "instances.states.OpType",
        "PlanVisibilityEnum": "brokers.models.ServicePlan.Visibility",
    },
}

# --- Celery ------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
if CELERY_BROKER_URL.split("://", 1)[0] not in ("redis", "rediss", "amqp", "amqps", "filesystem", "memory"):
    raise ImproperlyConfigured(
        f"CELERY_BROKER_URL must be a redis://, rediss://, amqp:// or filesystem:// URL, not {CELERY_BROKER_URL!r}"
    )
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT = "catalog_portal.file_transport:Transport"  # writes messages atomically
    # The embedded default: messages are files in a local folder, so worker and beat need no server.
    _queue_dir = DATA_DIR / "celery-queue"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir),
        "store_processed": False,
        "control_folder": str(DATA_DIR / "celery-control"),
        # kombu's default is 1 s; with late acks the worker would idle that long between messages.
        "polling_interval": 0.1,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CACHES = cache_settings(cache_url=env_str("CACHE_URL"), broker_url=CELERY_BROKER_URL, data_dir=DATA_DIR,
                        store_seconds=STORE_CACHE_SECONDS)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Beat's scheduler touches PORTAL_HEARTBEAT_FILE (its liveness probe) on every tick, at least this often.
CELERY_BEAT_SCHEDULER = "telemetry.worker:HeartbeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 15
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 10, minimum=1)
# Operations whose worker died are looked for more often: recovery takes the lease plus this.
OPERATIONS_SWEEP_SECONDS = env_int("OPERATIONS_SWEEP_SECONDS", min(5, SWEEP_INTERVAL_SECONDS), minimum=1)
CELERY_BEAT_SCHEDULE = {
    "catalog-relist-due": {"task": "brokers.catalog_sync_due", "schedule": float(SWEEP_INTERVAL_SECONDS)},
    "operations-sweep": {"task": "instances.operations_sweep", "schedule": float(OPERATIONS_SWEEP_SECONDS)},
    "bindings-reconcile": {"task": "instances.bindings_reconcile", "schedule": float(SWEEP_INTERVAL_SECONDS)},
    "bindings-rotation": {"task": "instances.bindings_rotation_sweep", "schedule": float(SWEEP_INTERVAL_SECONDS)},
    "upgrades-sweep": {"task": "instances.upgrades_sweep", "schedule": float(SWEEP_INTERVAL_SECONDS)},
    "drift-checks-due": {"task": "instances.drift_checks_due", "schedule": 60.0},
}
# An operation whose Celery message is this late is re-sent by the sweeper.
SWEEP_GRACE_SECONDS = env_int("SWEEP_GRACE_SECONDS", 5, minimum=0)
# Task publishing must not hang a web request when Redis is down: the row is committed and the
# sweeper sends the work later.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY = False

# --- Credentials encryption ---------------------------------------------------------------------
CREDENTIALS_KEY = env_str("CREDENTIALS_KEY") or secret_from_file(
    DATA_DIR / "credentials.key", lambda: Fernet.generate_key().decode()
)
try:
    _credential_keys = [Fernet(key.strip().encode()) for key in CREDENTIALS_KEY.split(",") if key.strip()]
except (ValueError, TypeError):
    _credential_keys = []
if not _credential_keys:
    raise ImproperlyConfigured(
        "CREDENTIALS_KEY must be a Fernet key (32 url-safe base64-encoded bytes) or a comma-separated list of them"
    )

# --- OSB ---------------------------------------------------------------------------------------
OSB_API_VERSION = "2.17"
OSB_CONNECT_TIMEOUT = float(env_int("OSB_CONNECT_TIMEOUT", 5, minimum=1))
OSB_CATALOG_TIMEOUT = float(env_int("OSB_CATALOG_TIMEOUT", 30, minimum=1))
OSB_REQUEST_TIMEOUT = float(env_int("OSB_REQUEST_TIMEOUT", 60, minimum=1))
OSB_POLL_TIMEOUT = float(env_int("OSB_POLL_TIMEOUT", 15, minimum=1))
OSB_DEFAULT_MAX_POLL_SECONDS = env_int("OSB_DEFAULT_MAX_POLL_SECONDS", 24 * 60 * 60, minimum=60)
CATALOG_DEFAULT_RELIST_SECONDS = env_int("CATALOG_DEFAULT_RELIST_SECONDS", 15 * 60, minimum=10)
# A failed catalog sync is retried after CATALOG_RETRY_FIRST_SECONDS, doubling per failure up to
# CATALOG_RETRY_MAX_SECONDS (never later than the broker's own relist interval), so a recovered broker becomes
# ready again without anyone pressing "Sync now".
CATALOG_RETRY_FIRST_SECONDS = env_int("CATALOG_RETRY_FIRST_SECONDS", 30, minimum=1)
CATALOG_RETRY_MAX_SECONDS = env_int("CATALOG_RETRY_MAX_SECONDS", 15 * 60, minimum=1)
CATALOG_SYNC_LEASE_SECONDS = env_int("CATALOG_SYNC_LEASE_SECONDS", 180, minimum=10)
CLUSTER_ID = env_str("CLUSTER_ID") or "catalog-portal"
# How long the portal keeps sending an operation's request while the broker has not accepted it (unreachable,
# 422 ConcurrencyError, 429): then the operation fails (the broker's own deadline starts at its 202).
OPERATION_SUBMIT_DEADLINE_SECONDS = env_int("OPERATION_SUBMIT_DEADLINE_SECONDS", 60 * 60, minimum=10)
# A cleanup at the broker (orphan mitigation) is retried until the broker confirms, after FIRST seconds doubling
# up to MAX; a platform admin may cancel it.
ORPHAN_MITIGATION_RETRY_FIRST_SECONDS = env_int("ORPHAN_MITIGATION_RETRY_FIRST_SECONDS", 30, minimum=1)
ORPHAN_MITIGATION_RETRY_MAX_SECONDS = env_int("ORPHAN_MITIGATION_RETRY_MAX_SECONDS", 60 * 60, minimum=1)
# How long a worker owns an operation step without renewing it. The worker's heartbeat thread renews the lease of
# every step it holds (also during a long OSB call) every OPERATION_HEARTBEAT_SECONDS, so an expired lease means a
# dead worker; the sweeper (every OPERATIONS_SWEEP_SECONDS) hands its operations to another worker.
OPERATION_LEASE_SECONDS = env_int("OPERATION_LEASE_SECONDS", 10, minimum=2)
OPERATION_HEARTBEAT_SECONDS = max(OPERATION_LEASE_SECONDS / 4, 0.5)
# Pooled connections per broker per worker process.
OSB_MAX_CONNECTIONS_PER_BROKER = env_int("OSB_MAX_CONNECTIONS_PER_BROKER", 20, minimum=1)
# How many of a worker process's threads may wait on one broker at once (the rest stay free for other brokers);
# the fleet-wide limit per broker is the broker's max_in_flight setting. 0: half the worker's threads.
OSB_CALLS_PER_BROKER_PER_PROCESS = env_int("OSB_CALLS_PER_BROKER_PER_PROCESS", 0, minimum=0)

# Drift (instances whose service is instances_retrievable): how often each is compared with what its broker holds,
# and at most how many checks a broker gets per minute.
DRIFT_CHECK_INTERVAL_SECONDS = env_int("DRIFT_CHECK_INTERVAL_SECONDS", 6 * 60 * 60, minimum=60)
DRIFT_CHECKS_PER_BROKER_PER_MINUTE = env_int("DRIFT_CHECKS_PER_BROKER_PER_MINUTE", 10, minimum=1)
# An upgrade batch pauses once this many of its upgrades failed (since it started or was last resumed).
UPGRADE_BATCH_MAX_FAILURES = env_int("UPGRADE_BATCH_MAX_FAILURES", 1, minimum=1)

# --- Kubernetes --------------------------------------------------------------------------------
K8S_ENABLED = env_bool("K8S_ENABLED", True)
# How often a published Secret is checked against what the portal wrote (drift repair).
K8S_RECONCILE_SECONDS = env_int("K8S_RECONCILE_SECONDS", 300, minimum=1)
K8S_RETRY_CAP_SECONDS = env_int("K8S_RETRY_CAP_SECONDS", 300, minimum=1)
# How long a rotated binding's predecessor stays bound after its successor's credentials are in the Secret (apps
# reading the Secret pick the new ones up meanwhile).
BINDING_ROTATION_GRACE_SECONDS = env_int("BINDING_ROTATION_GRACE_SECONDS", 3600, minimum=0)

# --- Logging and metrics ------------------------------------------------------------------------
LOG_FORMAT = (env_str("LOG_FORMAT") or "plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}")
LOGGING = logging_config(log_format=LOG_FORMAT, level=LOG_LEVEL)
# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` when this is set.
METRICS_TOKEN = env_str("METRICS_TOKEN") or ""
# The portal-wide families at /metrics: each reads the stored counters and the live rows it needs.
METRICS_COLLECTORS = ["brokers.metrics.collect", "instances.metrics.collect"]
