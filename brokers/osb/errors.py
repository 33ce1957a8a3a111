"""Exceptions raised by the OSB client.

Each exception carries the retry decision: ``permanent=False`` means "the same request may succeed
later" (network trouble, timeouts, 5xx, ``ConcurrencyError``); ``permanent=True`` means the broker
rejected the request and repeating it unchanged is pointless. The client itself never retries.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime


class OSBError(Exception):
    """Base class. ``str(error)`` is a sentence fit to show to an operator."""

    default_permanent: bool = True

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        description: str | None = None,
        retry_after: float | None = None,
        permanent: bool | None = None,
        instance_usable: bool | None = None,
        update_repeatable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after
        self.permanent = self.default_permanent if permanent is None else permanent
        self.instance_usable = instance_usable
        self.update_repeatable = update_repeatable

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, error={self.error!r}, "
            f"permanent={self.permanent!r})"
        )


class OSBConnectionError(OSBError):
    """The broker could not be reached (DNS, refused, TLS, reset...).

    ``maybe_delivered`` is True when the connection broke after the request was sent, so the broker
    may have acted on it (treat like a timeout for orphan mitigation).
    """

    default_permanent = False

    def __init__(self, message: str, *, maybe_delivered: bool = False, permanent: bool | None = None) -> None:
        super().__init__(message, permanent=permanent)
        self.maybe_delivered = maybe_delivered


class OSBTimeout(OSBError):
    """The request was sent but no answer came within the read timeout."""

    default_permanent = False


class OSBMalformedResponse(OSBError):
    """A 2xx answer whose body or status is not what the spec allows for this call."""

    default_permanent = False


class OSBBadRequest(OSBError):
    """400."""


class OSBUnauthorized(OSBError):
    """401 / 403: the broker rejected our credentials."""


class OSBNotFound(OSBError):
    """404."""


class OSBConflict(OSBError):
    """409."""


class OSBGone(OSBError):
    """410: success when deleting or polling a delete."""


class OSBUnprocessable(OSBError):
    """422 with an error code we do not know."""


class OSBAsyncRequired(OSBUnprocessable):
    """422 ``AsyncRequired``."""


class OSBConcurrencyError(OSBUnprocessable):
    """422 ``ConcurrencyError``: another operation is running; try again later, no orphan mitigation."""

    default_permanent = False


class OSBRequiresApp(OSBUnprocessable):
    """422 ``RequiresApp``."""


class OSBMaintenanceInfoConflict(OSBUnprocessable):
    """422 ``MaintenanceInfoConflict``: refetch the catalog."""


class OSBServerError(OSBError):
    """5xx."""

    default_permanent = False


UNPROCESSABLE_BY_CODE: dict[str, type[OSBUnprocessable]] = {
    "AsyncRequired": OSBAsyncRequired,
    "ConcurrencyError": OSBConcurrencyError,
    "RequiresApp": OSBRequiresApp,
    "MaintenanceInfoConflict": OSBMaintenanceInfoConflict,
}

STATUS_CLASSES: dict[int, type[OSBError]] = {
    400: OSBBadRequest,
    401: OSBUnauthorized,
    403: OSBUnauthorized,
    404: OSBNotFound,
    409: OSBConflict,
    410: OSBGone,
    422: OSBUnprocessable,
}

# 4xx statuses that mean "try again later" rather than "rejected".
TRANSIENT_4XX = frozenset({408, 425, 429})


def error_class_for(status: int, error_code: str | None) -> type[OSBError]:
    """The exception type for a non-2xx answer."""
    if status == 422 and error_code in UNPROCESSABLE_BY_CODE:
        return UNPROCESSABLE_BY_CODE[error_code]
    if status >= 500:
        return OSBServerError
    return STATUS_CLASSES.get(status, OSBError)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now (>= 0): accepts delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
