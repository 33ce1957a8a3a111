"""Middleware of the portal: request ids, security headers, consistent reads."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from catalog_portal.db import snapshot

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' data: https: http:",  # service icons come from the brokers' own hosts
    "style-src 'self' 'unsafe-inline'",
    "script-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "object-src 'none'",
])
# The API docs page (drf-spectacular's Swagger UI) starts itself with an inline script.
DOCS_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")


class RequestIDMiddleware:
    """Give every request an id (the caller's X-Request-ID when it is sane) and echo it on the response;
    audit records carry it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response


class ApiBodyLimitMiddleware:
    """Refuse an /api/ request whose declared body is over DATA_UPLOAD_MAX_MEMORY_SIZE with a JSON 413 before
    anything reads it (DRF's parsers read the stream directly, past Django's own check)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                from catalog_portal.views import too_large_body

                return JsonResponse(too_large_body(), status=413)
        return self.get_response(request)


class QueryLengthMiddleware:
    """Refuse a query parameter (a list filter: ?search=, ?tag=, ?action=, the admin's ?q=, ...) longer than
    FILTER_MAX_LENGTH with a 400 naming it (JSON under /api/), before a view builds a query from it: SQLite fails
    a LIKE pattern of ~50,000 characters, and no filter needs that."""

    EXEMPT = frozenset({"next"})  # where to go after signing in: an address, not a filter

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.FILTER_MAX_LENGTH
        for name, values in request.GET.lists():
            if name in self.EXEMPT:
                continue
            if len(name) > limit or any(len(value) > limit for value in values):
                message = f"The query parameter '{name[:50]}' is longer than {limit} characters (FILTER_MAX_LENGTH)."
                if request.path.startswith("/api/"):
                    return JsonResponse({"detail": message, "code": "filter_too_long", name[:50]: [message]},
                                        status=400)
                from django.shortcuts import render

                return render(request, "400.html", {"message": message}, status=400)
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            docs = request.path.startswith("/api/v1/docs")
            response["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY
        return response


class SnapshotReadsMiddleware:
    """Serve each GET from one database snapshot, so a page or API body never mixes rows from before and
    after a worker's commit (an instance still "provisioning" beside its "succeeded" operation)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        # API tokens are checked inside the view, so a request carrying one counts as signed in here.
        signed_in = bool(user and user.is_authenticated) or "HTTP_AUTHORIZATION" in request.META
        if request.method not in ("GET", "HEAD") or not signed_in:
            return self.get_response(request)  # writes manage their own transactions; anonymous: login page
        with snapshot():
            response = self.get_response(request)
            if callable(getattr(response, "render", None)) and not getattr(response, "is_rendered", True):
                response.render()  # templates read lazily: render inside the snapshot
            return response
