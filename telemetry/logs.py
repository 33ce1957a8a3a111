"""Structured logs: a context (request id, user, operation, instance, broker) attached to every line, and a JSON
formatter (`LOG_FORMAT=json`) that writes one object per line.

The context lives in a ContextVar: the web sets it per request, the worker per operation step, so any log line
written meanwhile, by any module, carries it. Nothing here imports Django models, so settings can use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("request_id", "user", "operation_id", "instance_id", "broker")

_context: ContextVar[dict[str, Any] | None] = ContextVar("portal_log_context", default=None)


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written inside the block (nested blocks add to the outer one)."""
    values = {key: value for key, value in fields.items() if value not in (None, "")}
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


def current(name: str) -> Any:
    """A field of the current log context, or None."""
    return (_context.get() or {}).get(name)


def current_request_id() -> str:
    """The request id of the web request (or of the operation a worker runs) in progress; '' outside one.

    The default of Operation.request_id: an operation started by a request carries that request's id, and a
    cleanup a worker starts for an operation carries the id of the request that started the first."""
    return str(current("request_id") or "")


class ContextFilter(logging.Filter):
    """Copies the log context onto each record (as attributes), for the formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get() or {}
        for name in CONTEXT_FIELDS:
            if name not in record.__dict__ and name in context:
                value = context[name]
                record.__dict__[name] = value() if callable(value) else value
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, the context fields that are known, and
    the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value not in (None, ""):
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """The LOGGING dict for Django, Celery (worker, beat) and gunicorn: plain lines by default, JSON with
    LOG_FORMAT=json; the context filter on the one handler, so every logger's lines carry the context."""
    formatter = {"()": JSONFormatter} if log_format == "json" else {
        "format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"portal": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "portal", "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # runserver's access lines: the request log (telemetry.http) says the same with the request id and
            # leaves out the probes; runserver still reports 4xx and 5xx answers.
            "django.server": {"level": "WARNING"},
        },
    }
