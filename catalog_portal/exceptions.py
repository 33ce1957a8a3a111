"""Errors that services raise for people: a human message, a machine-readable code, and optionally field errors."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request that cannot be carried out, with a message fit to show a person.

    `code` is the stable machine-readable reason the API puts beside the message (`{"detail", "code"}`);
    `fields` the per-field messages of invalid input."""

    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, code: str | None = None,
                 operation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        self.code = code or self.default_code
        # The id of the operation that holds (or deleted) the object, named in an API error body.
        self.operation = str(operation) if operation is not None else None


class Forbidden(ApplicationError):
    """Not allowed. `namespace` and `role` say what would allow it (the 403 page names who can grant it)."""

    status_code = 403
    default_code = "permission_denied"

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, namespace: str | None = None,
                 role: str | None = None, code: str | None = None) -> None:
        super().__init__(message, fields=fields, code=code)
        self.namespace = namespace
        self.role = role


class NotFound(ApplicationError):
    """No such object; `code="gone"` with `operation` when it was deleted by that operation."""

    status_code = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    """Another operation is active on the target (`code="operation_in_progress"` with `operation`), its name is
    taken (`"name_taken"`), or it is still in use."""

    status_code = 409
    default_code = "conflict"
