"""Project pages: the favicon and the error handlers (health and metrics are telemetry.http's; the 403 page, which
names who can grant a role, is the teams app's: teams.views.permission_denied)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.defaults import bad_request as default_bad_request
from django.views.defaults import page_not_found


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every site, whatever the pages link: the portal's logo. A temporary redirect:
    the logo's URL carries its content's hash, so a new logo gets a new URL."""
    return redirect(static("img/logo.svg"))


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404: JSON under /api/ (every API error body is JSON), the normal page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def too_large_body() -> dict[str, str]:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return {"detail": f"The request body is larger than the portal accepts ({limit} bytes, "
                      "DATA_UPLOAD_MAX_MEMORY_SIZE).", "code": "request_too_large"}


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 (Django's own: a suspicious request, a bad Host header, a body over DATA_UPLOAD_MAX_MEMORY_SIZE): JSON
    under /api/; a too-large body is a 413 everywhere."""
    if isinstance(exception, RequestDataTooBig):
        if is_api(request):
            return JsonResponse(too_large_body(), status=413)
        return HttpResponse("Request body too large.", status=413, content_type="text/plain; charset=utf-8")
    if is_api(request):
        if isinstance(exception, DisallowedHost):
            body = {"detail": "The Host header names a host this portal does not serve (ALLOWED_HOSTS).",
                    "code": "bad_host"}
        else:
            body = {"detail": "Bad request.", "code": "bad_request"}
        return JsonResponse(body, status=400)
    return default_bad_request(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A form sent without a valid CSRF token (an old tab, cookies blocked, signed out meanwhile): in the frame,
    with what to do next."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "CSRF check failed; send the X-CSRFToken header or use a token.",
                             "code": "csrf_failed"}, status=403)
    return render(request, "403_csrf.html", {"reason": reason}, status=403)


def server_error(request: HttpRequest) -> HttpResponse:
    """500: JSON under /api/, a plain page elsewhere; never the error itself (it may hold a secret)."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return render(request, "500.html", status=500)
