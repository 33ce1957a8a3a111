"""REST API plumbing shared by every app: pagination and error bodies."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import exception_handler as drf_exception_handler

from catalog_portal.exceptions import ApplicationError


class ApiErrorSerializer(serializers.Serializer):
    """Documents an error body: {"detail": message} (401, 403, 404, 409)."""

    detail = serializers.CharField()


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


def paginated(query: Any, request: Any, view: Any, serializer: type[BaseSerializer]) -> Response:
    """One page of `query` (?page, ?page_size) through `serializer`, with count, next and previous."""
    paginator = Pagination()
    page = paginator.paginate_queryset(query, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def query_param(name: str, description: str, kind: Any = OpenApiTypes.STR, many: bool = False) -> OpenApiParameter:
    """A query parameter of a list endpoint, for the OpenAPI document (`many`: repeatable)."""
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, many=many or None)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn service errors into the API's JSON error bodies ({"detail": ...} or field errors)."""
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = dict(exc.fields) if exc.fields else {}
        body.setdefault("detail", exc.message)
        if exc.code:
            body["code"] = exc.code
        if exc.operation:
            body["operation"] = exc.operation
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            return Response(exc.message_dict, status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": " ".join(exc.messages)}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = drf_exception_handler(exc, context)
        if response is not None:
            response.status_code = status.HTTP_401_UNAUTHORIZED
        return response
    return drf_exception_handler(exc, context)
