"""Middleware of the portal: request ids, security headers, consistent reads."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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
