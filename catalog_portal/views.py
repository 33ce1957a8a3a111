"""Project pages: the favicon and the error handlers (health and metrics are telemetry.http's; the 403 page, which
names who can grant a role, is the teams app's: teams.views.permission_denied)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
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
