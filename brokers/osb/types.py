"""Typed values that go into and come out of :class:`brokers.osb.client.OSBClient`.

Everything here is a plain frozen dataclass; nothing depends on Django.
Secrets (passwords, tokens, binding credentials) are excluded from ``repr``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

JSONObject = dict[str, Any]

OperationState = Literal["in progress", "succeeded", "failed"]
OPERATION_STATES: tuple[OperationState, ...] = ("in progress", "succeeded", "failed")

CallKind = Literal[
    "catalog",
    "provision",
    "update",
    "deprovision",
    "last_operation",
    "fetch_instance",
    "bind",
    "unbind",
    "binding_last_operation",
    "fetch_binding",
]


# --------------------------------------------------------------------------- auth


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic authentication (the spec's default)."""

    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password='***')"

    def header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class BearerAuth:
    """A bearer token agreed out of band with the broker."""

    token: str = field(repr=False)

    def __repr__(self) -> str:
        return "BearerAuth(token='***')"

    def header(self) -> str:
        return f"Bearer {self.token}"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class ReadTimeouts:
    """Read timeouts in seconds, per kind of call."""

    catalog: float = 30.0
    provision: float = 60.0
    update: float = 60.0
    deprovision: float = 60.0
    bind: float = 60.0
    unbind: float = 60.0
    last_operation: float = 15.0
    fetch: float = 15.0

    def for_kind(self, kind: CallKind) -> float:
        if kind in ("last_operation", "binding_last_operation"):
            return self.last_operation
        if kind in ("fetch_instance", "fetch_binding"):
            return self.fetch
        value: float = getattr(self, kind)
        return value


@dataclass(frozen=True)
class OriginatingIdentity:
    """The platform user behind a request (Kubernetes ``user.info`` shape, see profile.md)."""

    username: str
    uid: str
    groups: Sequence[str] = ()
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)

    platform: ClassVar[str] = "kubernetes"

    def as_dict(self) -> JSONObject:
        return {
            "username": self.username,
            "uid": self.uid,
            "groups": list(self.groups),
            "extra": {key: list(values) for key, values in self.extra.items()},
        }

    def header_value(self) -> str:
        """``kubernetes <base64(json)>``, the value of ``X-Broker-API-Originating-Identity``."""
        raw = json.dumps(self.as_dict(), separators=(",", ":"), sort_keys=True).encode()
        return f"{self.platform} {base64.b64encode(raw).decode('ascii')}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CatalogResponse:
    document: JSONObject | None = field(repr=False)
    etag: str | None
    last_modified: str | None
    not_modified: bool


@dataclass(frozen=True)
class AsyncResponse:
    """An answer that may say "accepted, still working" (202 with an operation): deprovision, unbind, and the
    base of the provision and update answers."""

    status: int
    async_: bool
    operation: str | None = None


@dataclass(frozen=True)
class InstanceResponse(AsyncResponse):
    dashboard_url: str | None = None
    metadata: JSONObject | None = None


@dataclass(frozen=True)
class ProvisionResponse(InstanceResponse):
    """The answer to a provision."""


@dataclass(frozen=True)
class UpdateResponse(InstanceResponse):
    """The answer to an update."""


@dataclass(frozen=True)
class LastOperation:
    state: OperationState
    description: str | None = None
    instance_usable: bool | None = None
    update_repeatable: bool | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class InstanceInfo:
    service_id: str | None = None
    plan_id: str | None = None
    dashboard_url: str | None = None
    parameters: JSONObject | None = field(default=None, repr=False)
    maintenance_info: JSONObject | None = None
    metadata: JSONObject | None = None


@dataclass(frozen=True)
class BindResponse:
    status: int
    async_: bool
    operation: str | None = None
    credentials: JSONObject | None = field(default=None, repr=False)
    syslog_drain_url: str | None = field(default=None, repr=False)
    route_service_url: str | None = field(default=None, repr=False)
    volume_mounts: list[Any] | None = None
    endpoints: list[Any] | None = None
    metadata: JSONObject | None = None


@dataclass(frozen=True)
class BindingInfo:
    credentials: JSONObject | None = field(default=None, repr=False)
    syslog_drain_url: str | None = field(default=None, repr=False)
    route_service_url: str | None = field(default=None, repr=False)
    volume_mounts: list[Any] | None = None
    endpoints: list[Any] | None = None
    parameters: JSONObject | None = field(default=None, repr=False)
    metadata: JSONObject | None = None


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange with a broker, already redacted; handed to the ``recorder`` callback."""

    method: str
    path: str
    status: int | None
    duration_ms: int
    request_id: str
    at: datetime
    error: str | None
    request_excerpt: str
    response_excerpt: str
    # What the platform can learn about the broker from this exchange (the conformance scorecard reads it).
    retry_after: str | None = None  # the answer's Retry-After header, as sent
    malformed: bool = False  # the answer lacks the shape the spec requires for its endpoint and status
    error_code: str | None = None  # the ``error`` field of an error answer
    error_described: bool | None = None  # an error answer: a JSON object with a non-empty ``description``?


@dataclass(frozen=True)
class PreparedRequest:
    """What the client would send for a request (``OSBClient.prepare``): secrets in headers masked, the body exact."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
