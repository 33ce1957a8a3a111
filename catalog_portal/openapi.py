"""How the OpenAPI document at /api/v1/schema/ is generated from the views: the portal's AutoSchema (summaries from
docstrings, the standard error answers of catalog_portal.api), the security schemes, and the post-processing hook.

Loaded by DRF as DEFAULT_SCHEMA_CLASS, never by the API views (drf-spectacular's AutoSchema imports DRF's generic
views, which import the API settings that name catalog_portal.api: importing it from there would be a cycle).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework.permissions import AllowAny, IsAuthenticated

from catalog_portal.api import _FIELD_MESSAGES, default_error_statuses, error_response


class PortalAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the portal's conventions: each operation's summary is the first line of
    its method's docstring (unless `extend_schema(summary=...)`), and its error answers are those of
    `default_error_statuses` plus the ones it declares."""

    def get_summary(self) -> str | None:
        method = getattr(self.view, self.method.lower(), None)
        doc = (getattr(method, "__doc__", None) or "").strip()
        return doc.split("\n\n")[0].replace("\n", " ").strip() or None

    def get_description(self) -> str:
        method = getattr(self.view, self.method.lower(), None)
        doc = (getattr(method, "__doc__", None) or "").strip()
        parts = doc.split("\n\n", 1)
        if len(parts) == 2:
            return inspect.cleandoc(parts[1])
        return ""

    def _error_statuses(self) -> list[int]:
        permissions = [type(p) for p in self.view.get_permissions()]
        paginator = self._get_paginator()
        listing = self.method == "GET" and paginator is not None and self._is_list_view()
        has_query = any(p.get("in") == "query" for p in self._get_parameters())
        return default_error_statuses(
            method=self.method,
            has_body=self.method in ("POST", "PUT", "PATCH") and self.get_request_serializer() is not None,
            has_query=has_query,
            has_path_params=bool(re.search(r"{\w+}", self.path)),
            paginated=listing,
            anonymous=AllowAny in permissions,
            restricted=any(p not in (IsAuthenticated, AllowAny) for p in permissions),
        )

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_statuses():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(error_response(code), str(code),
                                                                   direction=direction)
        return dict(sorted(responses.items()))


def validation_error_postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    """Field errors sit beside `detail` and `code`: the ValidationError component allows any other key."""
    schemas = result.get("components", {}).get("schemas", {})
    if "ValidationError" in schemas:
        schemas["ValidationError"]["additionalProperties"] = _FIELD_MESSAGES
    if "ConflictError" in schemas:
        schemas["ConflictError"]["additionalProperties"] = _FIELD_MESSAGES
    return result


def query_length_postprocess(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict:
    """Every string query parameter is at most FILTER_MAX_LENGTH characters: longer ones are refused (400) by
    `middleware.QueryLengthMiddleware` before any view runs, so the document says so."""
    limit = settings.FILTER_MAX_LENGTH
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") != "query":
                    continue
                schema = parameter.get("schema", {})
                for target in (schema, schema.get("items", {})):
                    if target.get("type") == "string":
                        target["maxLength"] = min(target.get("maxLength", limit), limit)
    return result


class TrackedTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>` (teams.authentication.TrackedTokenAuthentication)."""

    target_class = "teams.authentication.TrackedTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>`: make a key on your account page or with "
                               "`python manage.py drf_create_token <username>`."}


class SessionScheme(OpenApiAuthenticationExtension):
    """A signed-in browser session; writes also need the CSRF token."""

    target_class = "rest_framework.authentication.SessionAuthentication"
    name = "cookieAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "A signed-in browser session. Writes (POST, PATCH, DELETE) also need the "
                               "`X-CSRFToken` header with the value of the `csrftoken` cookie (403 otherwise)."}
