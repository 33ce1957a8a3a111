"""Errors that services raise for people: a human message, and optionally field errors."""

from __future__ import annotations


class ApplicationError(Exception):
    """A request that cannot be carried out, with a message fit to show a person."""

    status_code = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class Forbidden(ApplicationError):
    """Not allowed. `namespace` and `role` say what would allow it (the 403 page names who can grant it)."""

    status_code = 403

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, namespace: str | None = None,
                 role: str | None = None) -> None:
        super().__init__(message, fields=fields)
        self.namespace = namespace
        self.role = role


class NotFound(ApplicationError):
    status_code = 404


class Conflict(ApplicationError):
    """Another operation is active on the target, or the target is still in use."""

    status_code = 409
