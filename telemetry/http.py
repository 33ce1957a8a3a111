"""The web's own telemetry: /healthz, /readyz and /metrics, answered before host checks, sessions and auth; and
per request a metric sample and one log line (with the request id and the user), except for those three."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.functional import empty
from prometheus_client import Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from telemetry import exposition, health
from telemetry.logs import log_context

logger = logging.getLogger("telemetry.request")

REQUESTS = Counter("portal_http_requests", "HTTP requests the web answered, by view and status.",
                   ["method", "view", "status"])
LATENCY = Histogram("portal_http_request_duration_seconds", "Time the web took to answer, by view.",
                    ["method", "view"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. No dependency is checked (a database outage must not restart the web)."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Ready for traffic: the database answers, its migrations are applied, the Celery transport is reachable."""
    ready, checks = health.readiness()
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text; with METRICS_TOKEN set, only for `Authorization: Bearer <METRICS_TOKEN>`."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = JsonResponse({"detail": "A bearer token (METRICS_TOKEN) is required."}, status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(exposition.render(), content_type=CONTENT_TYPE_PLAIN_0_0_4)  # what every Prometheus reads


ENDPOINTS: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz, "/readyz": readyz, "/metrics": metrics,
}


class TelemetryMiddleware:
    """Answers the operations endpoints itself: before the host check (kubelet and Prometheus call the pod's IP,
    which ALLOWED_HOSTS does not list), sessions and the login requirement. Every other request is timed,
    counted by view and status, and logged once at INFO with its request id and user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        endpoint = ENDPOINTS.get(request.path)
        if endpoint is not None and request.method in ("GET", "HEAD"):
            return endpoint(request)
        started = time.perf_counter()
        with log_context(request_id=getattr(request, "request_id", None), user=lambda: _username(request)):
            response = self.get_response(request)
            seconds = time.perf_counter() - started
            view = self._view(request)
            REQUESTS.labels(request.method, view, str(response.status_code)).inc()
            LATENCY.labels(request.method, view).observe(seconds)
            logger.info("%s %s %s %.0f ms", request.method, request.get_full_path(), response.status_code,
                        seconds * 1000)
        return response

    def _view(self, request: HttpRequest) -> str:
        match = getattr(request, "resolver_match", None)
        if match is not None:
            return match.view_name or match.route or "unnamed"
        if request.path.startswith(self.static_prefix):
            return "static"
        return "unresolved"  # a 404, or a redirect before routing: a fixed label, never the raw path


def _username(request: HttpRequest) -> str | None:
    """The signed-in user's name if authentication already ran (never triggers a query from a log call)."""
    user: Any = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.get_username() if getattr(user, "is_authenticated", False) else None
