"""Errors that services raise for people: a human message, and optionally field errors."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request that cannot be carried out, with a message fit to show a person."""

    status_code = 400
    code: str | None = None

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, code: str | None = None,
                 operation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code is not None:
            self.code = code
        # The id of the operation that holds (or deleted) the object, named in an API error body.
        self.operation = str(operation) if operation is not None else None


class Forbidden(ApplicationError):
    """Not allowed. `namespace` and `role` say what would allow it (the 403 page names who can grant it)."""

    status_code = 403

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, namespace: str | None = None,
                 role: str | None = None) -> None:
        super().__init__(message, fields=fields)
        self.namespace = namespace
        self.role = role


class NotFound(ApplicationError):
    """No such object; `code="gone"` with `operation` when it was deleted by that operation."""

    status_code = 404


class Conflict(ApplicationError):
    """Another operation is active on the target (`code="operation_in_progress"` with `operation`), its name is
    taken (`"name_taken"`), or it is still in use."""

    status_code = 409
