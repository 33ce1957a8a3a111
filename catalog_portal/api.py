"""REST API plumbing shared by every app: pagination, query parameters, error bodies and how the OpenAPI
document describes them.

Every error on /api/ has one shape (shared/API.md "Errors"):

    {"detail": "A message for a person.", "code": "machine_readable_reason"}

and invalid input adds the per-field messages beside them:

    {"name": ["Ensure this field has no more than 63 characters."], "detail": "name: Ensure ...", "code": "invalid"}

The document states both (`Error`, `ValidationError`, `ConflictError` components), and `PortalAutoSchema` adds
the statuses every view can answer by its nature (401, 403, 404, 400, 406, 413, 415: see `default_error_statuses`)
to each operation (catalog_portal/openapi.py), so a view declares only its success answer and its own extra errors (usually 409):

    @extend_schema(summary="Deprovision an instance", responses={202: InstanceSerializer, **errors(409)})

docs/architecture.md ("Documenting an endpoint") says how to add an endpoint so that the schemathesis test
(tests/test_openapi.py) stays green.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import exception_handler as drf_exception_handler

from catalog_portal.exceptions import ApplicationError

# --- error bodies -------------------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    """Every error body: a message for a person and a machine-readable code."""

    detail = serializers.CharField(help_text="What went wrong, for a person.")
    code = serializers.CharField(
        help_text="Why, for a program: e.g. invalid, not_authenticated, authentication_failed, permission_denied, "
                  "not_found, conflict, operation_in_progress, name_taken, not_acceptable, unsupported_media_type, "
                  "request_too_large.")


@extend_schema_serializer(component_name="ValidationError")
class ValidationErrorSerializer(ErrorSerializer):
    """Invalid input (400): `detail` and `code`, and beside them each invalid field's messages,
    `{"field": ["message", ...]}` (a nested object's fields nest the same way; `non_field_errors` holds what
    concerns no single field)."""


class ConflictErrorSerializer(ErrorSerializer):
    """409: another operation is active on the target (`operation` names it), the target is in use, or a unique
    name is taken (the field's messages beside, as for 400)."""

    operation = serializers.UUIDField(required=False, allow_null=True,
                                      help_text="The operation that holds the target, when one does.")


ApiErrorSerializer = ErrorSerializer  # the name before issue 12, for branches written against it


# Field-error bodies are objects whose other keys are the fields: the document says so (any key, a list of
# messages or a nested object of them).
_FIELD_MESSAGES = {"oneOf": [
    {"type": "array", "items": {}},
    {"type": "object", "additionalProperties": True},
]}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Invalid input: query parameters or body. Field errors beside `detail` and `code`.",
    401: "No credentials, or invalid ones (`Authorization: Token <key>`, or a signed-in session).",
    403: "Not allowed: your role does not allow this, or a session's write lacks its CSRF token.",
    404: "No such object, or one you may not see; for lists, a page past the last.",
    406: "The `Accept` header asks for something other than JSON.",
    409: "Another operation is active on the target, the target is still in use, or a name is taken.",
    413: "The request body is too large.",
    415: "The body is not JSON (`Content-Type: application/json`).",
    422: "The request is well-formed but cannot be carried out.",
}

_ERROR_BODIES: dict[int, type[serializers.Serializer]] = {400: ValidationErrorSerializer,
                                                         409: ConflictErrorSerializer}


def error_response(code: int, description: str | None = None) -> OpenApiResponse:
    """The documented answer for error status `code` (the shared body shape and a description)."""
    return OpenApiResponse(response=_ERROR_BODIES.get(code, ErrorSerializer),
                           description=description or ERROR_DESCRIPTIONS[code])


def errors(*codes: int, **described: str) -> dict[int, OpenApiResponse]:
    """Error answers for `extend_schema(responses={200: X, **errors(409)})`; `errors(s409="why")` to say why."""
    answers = {code: error_response(code) for code in codes}
    for key, description in described.items():
        answers[int(key.lstrip("s"))] = error_response(int(key.lstrip("s")), description)
    return answers


def _field_summary(fields: Any, prefix: str = "") -> str:
    """The first message of a field-error structure, named by its field: "name: This field is required."."""
    if isinstance(fields, dict):
        for key, value in fields.items():
            label = prefix if key in ("non_field_errors", "detail") else f"{prefix}{key}" if not prefix \
                else f"{prefix}.{key}"
            found = _field_summary(value, label)
            if found:
                return found
        return ""
    if isinstance(fields, list):
        for index, value in enumerate(fields):
            label = prefix if isinstance(value, str) else f"{prefix}[{index}]"
            found = _field_summary(value, label)
            if found:
                return found
        return ""
    text = str(fields)
    return f"{prefix}: {text}" if prefix else text


def _field_body(fields: dict[str, Any], code: str, message: str | None = None) -> dict[str, Any]:
    body = {key: value for key, value in fields.items() if key not in ("detail", "code")}
    body["detail"] = message or _field_summary(fields) or "Invalid input."
    body["code"] = code
    return body


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every error as `{"detail", "code"}` (plus field errors): service errors, DRF's and Django's."""
    if isinstance(exc, ApplicationError):
        body = (_field_body(exc.fields, exc.code, exc.message) if exc.fields
                else {"detail": exc.message, "code": exc.code})
        if exc.operation:  # the operation that holds the object (409) or deleted it (404 "gone")
            body["operation"] = exc.operation
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "message_dict"):
            return Response(_field_body(exc.message_dict, "invalid"), status=status.HTTP_400_BAD_REQUEST)
        return Response({"detail": " ".join(exc.messages), "code": "invalid"}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            body = _field_body(detail, "invalid")
        else:
            body = {"detail": " ".join(str(m) for m in detail) if isinstance(detail, list) else str(detail),
                    "code": "invalid"}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes()
        response.data = {"detail": str(exc.detail) if not isinstance(exc.detail, dict | list) else
                         _field_summary(exc.detail),
                         "code": code if isinstance(code, str) else exc.default_code}
    return response


# --- pagination and query parameters ------------------------------------------------------------------------

_DIGITS = re.compile(r"^[0-9]{1,9}$")


def _positive_int(request: Request, name: str, maximum: int | None = None) -> int | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise serializers.ValidationError({name: ["Give this parameter once."]})
    value = values[0]
    if not _DIGITS.match(value) or int(value) < 1 or (maximum is not None and int(value) > maximum):
        limit = f" from 1 to {maximum}" if maximum else " of 1 or more"
        raise serializers.ValidationError({name: [f"Use a whole number{limit}, not '{value[:50]}'."]})
    return int(value)


class Pagination(PageNumberPagination):
    """`?page=` (from 1) and `?page_size=` (1-500, 50 by default); anything else answers 400. A page past the
    last answers 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request: Request) -> int:
        return _positive_int(request, self.page_size_query_param, self.max_page_size) or self.page_size

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> Any:
        _positive_int(request, self.page_query_param)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {"name": self.page_query_param, "required": False, "in": "query",
             "description": "Page number, from 1 (a page past the last answers 404).",
             "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Results per page ({self.page_size} by default).",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size}},
        ]


def paginated(query: Any, request: Any, view: Any, serializer: type[BaseSerializer]) -> Response:
    """One page of `query` (?page, ?page_size) through `serializer`, with count, next and previous."""
    paginator = Pagination()
    page = paginator.paginate_queryset(query, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


class QueryBooleanField(serializers.BooleanField):
    """`true` or `false`, nothing else (DRF's BooleanField also takes 1, yes, on...: the document says boolean)."""

    def to_internal_value(self, data: Any) -> bool:
        if data in ("true", True):
            return True
        if data in ("false", False):
            return False
        self.fail("invalid", input=data)
        raise AssertionError  # unreachable: fail raises


class StrictCharField(serializers.CharField):
    """A string and nothing else in a JSON body (DRF's CharField turns 0 into "0"; the document says string)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    """A string matching `regex`, and nothing else (see StrictCharField)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false in a JSON body, nothing else (DRF's BooleanField also takes "yes", 1, "on"...)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, nothing else (DRF's IntegerField also takes "10" and 10.0)."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def parse_query(request: Request, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
    """The query parameters `serializer_class` declares, validated by it (400 with field errors otherwise).

    The same serializer documents them: `extend_schema(parameters=[serializer_class])`. A parameter given twice
    is an error unless its field is a ListField (repeatable); parameters it does not declare are ignored."""
    serializer = serializer_class()
    data: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for name, field in serializer.fields.items():
        values = request.query_params.getlist(name)
        if not values:
            continue
        if isinstance(field, serializers.ListField):
            data[name] = values
        elif len(values) > 1:
            problems[name] = ["Give this parameter once."]
        else:
            data[name] = values[0]
    if problems:
        raise serializers.ValidationError(problems)
    bound = serializer_class(data=data)
    bound.is_valid(raise_exception=True)
    return dict(bound.validated_data)


def query_param(name: str, description: str, kind: Any = OpenApiTypes.STR, many: bool = False) -> OpenApiParameter:
    """A query parameter of a list endpoint, for the OpenAPI document (`many`: repeatable).
    Prefer a serializer read by `parse_query`: it documents and validates in one place."""
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, many=many or None)


# --- the OpenAPI document -----------------------------------------------------------------------------------


def default_error_statuses(*, method: str, has_body: bool, has_query: bool, has_path_params: bool,
                           paginated: bool, anonymous: bool, restricted: bool) -> list[int]:
    """The errors any view can answer, by its nature:

    - 400: it reads a body or query parameters; 413 and 415: it reads a body;
    - 401: it needs credentials; 403: it writes (a session's write needs its CSRF token) or a permission class
      beyond "signed in" may refuse;
    - 404: its path names an object, or it is a list (a page past the last);
    - 406: every view (an `Accept` header that excludes JSON).
    """
    codes = [406]
    if has_body or has_query or paginated:
        codes.append(400)
    if has_body:
        codes += [413, 415]
    if not anonymous:
        codes.append(401)
        if method not in SAFE_METHODS or restricted:
            codes.append(403)
    if has_path_params or paginated:
        codes.append(404)
    return sorted(codes)


__all__ = [
    "ConflictErrorSerializer", "ErrorSerializer", "Pagination", "QueryBooleanField", "StrictBooleanField",
    "StrictCharField", "StrictIntegerField", "StrictRegexField",
    "ValidationErrorSerializer", "error_response", "errors", "exception_handler", "paginated",
    "parse_query", "query_param",
]
