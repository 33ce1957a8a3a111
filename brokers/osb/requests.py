"""The requests the portal sends to a broker, as typed values: the one place an OSB request is written.

Each request knows its HTTP method, path, query and JSON body (``content()`` gives the exact bytes). The client
sends it (``OSBClient.send``) or shows it without sending (``OSBClient.prepare``); an operation stores the
broker-changing ones (provision, update, deprovision, bind, unbind) and the drift checks' fetches with ``to_json()`` and the engine resends exactly
that value (``request_from_json``), so a retried request is byte for byte the first one. The polls and fetches that
follow a stored request are derived from it (``last_operation()``, ``fetch()``), and so is the orphan-mitigation
delete (``cleanup()``).

Pure library: nothing here imports Django.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Self, TypeVar
from urllib.parse import quote

from .types import (
    AsyncResponse,
    BindingInfo,
    BindResponse,
    CallKind,
    CatalogResponse,
    InstanceInfo,
    JSONObject,
    LastOperation,
    ProvisionResponse,
    UpdateResponse,
)

R = TypeVar("R")

# The version of the stored form (`to_json`); `request_from_json` refuses any other.
FORMAT = 1


# --------------------------------------------------------------------------- helpers


def segment(value: str, name: str) -> str:
    """One percent-encoded path segment."""
    if not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def compact(mapping: dict[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None (the OpenAPI document rejects nulls)."""
    return {key: value for key, value in mapping.items() if value is not None}


def query_params(**values: str | bool | None) -> dict[str, str]:
    """Query parameters: None, False and "" are left out; True is ``true``."""
    params: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value is False or value == "":
            continue
        params[key] = "true" if value is True else str(value)
    return params


def encode_body(body: JSONObject) -> bytes:
    """The bytes of a JSON body: keys sorted and indented, so the same value always gives the same bytes (whatever
    order a database kept the keys in) and the preview can show them as they are sent."""
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


def maintenance_info(version: str | None) -> JSONObject | None:
    """The ``maintenance_info`` object of a request: the version only (its description is for people)."""
    return {"version": version} if version else None


def instance_path(instance_id: str) -> str:
    return "/v2/service_instances/" + segment(instance_id, "instance_id")


def binding_path(instance_id: str, binding_id: str) -> str:
    return instance_path(instance_id) + "/service_bindings/" + segment(binding_id, "binding_id")


# --------------------------------------------------------------------------- the base


@dataclass(frozen=True, kw_only=True)
class OSBRequest(Generic[R]):
    """One OSB call: what to send. ``R`` is the typed answer ``OSBClient.send`` returns for it."""

    kind: ClassVar[CallKind]
    method: ClassVar[str]

    def path(self) -> str:
        raise NotImplementedError

    def query(self) -> dict[str, str]:
        return {}

    def headers(self) -> dict[str, str]:
        """Headers of this request only (the client adds the version, identities, auth)."""
        return {}

    def body(self) -> JSONObject | None:
        return None

    def content(self) -> bytes | None:
        """The exact bytes of the body, or None for a request without one."""
        body = self.body()
        return encode_body(body) if body is not None else None

    def to_json(self) -> JSONObject:
        """The request as JSON (kept on an operation); ``request_from_json`` gives it back."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format": FORMAT, "kind": self.kind, **fields}


# --------------------------------------------------------------------------- the catalog


@dataclass(frozen=True, kw_only=True)
class CatalogRequest(OSBRequest[CatalogResponse]):
    """``GET /v2/catalog``, conditional when the last answer's ETag / Last-Modified are given."""

    kind: ClassVar[CallKind] = "catalog"
    method: ClassVar[str] = "GET"
    etag: str | None = None
    if_modified_since: str | None = None

    def path(self) -> str:
        return "/v2/catalog"

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.if_modified_since:
            headers["If-Modified-Since"] = self.if_modified_since
        return headers


# --------------------------------------------------------------------------- instances


@dataclass(frozen=True, kw_only=True)
class InstanceRequest(OSBRequest[R]):
    """A request about one service instance, named by its id and (where the call takes them) its service's and
    plan's ids. A subclass that requires the ids declares them `= field()`: a bare annotation would keep the None
    default from here."""

    instance_id: str
    service_id: str | None = None
    plan_id: str | None = None

    def path(self) -> str:
        return instance_path(self.instance_id)

    def target(self) -> dict[str, Any]:
        """The fields that name what this request is about: follow-up requests name the same."""
        return {"instance_id": self.instance_id, "service_id": self.service_id, "plan_id": self.plan_id}

    def ids_query(self, **more: str | bool | None) -> dict[str, str]:
        return query_params(service_id=self.service_id, plan_id=self.plan_id, **more)

    def last_operation(self, operation: str | None) -> InstanceRequest[LastOperation]:
        """The poll for the broker's work on this request (`operation`: the token of its 202 answer)."""
        return LastOperationRequest(**self.target(), operation=operation)


@dataclass(frozen=True, kw_only=True)
class ProvisionRequest(InstanceRequest[ProvisionResponse]):
    """``PUT /v2/service_instances/:instance_id``."""

    kind: ClassVar[CallKind] = "provision"
    method: ClassVar[str] = "PUT"
    service_id: str = field()
    plan_id: str = field()
    context: JSONObject
    organization_guid: str
    space_guid: str
    parameters: JSONObject | None = None
    maintenance_version: str | None = None
    accepts_incomplete: bool = True

    def query(self) -> dict[str, str]:
        return query_params(accepts_incomplete=self.accepts_incomplete)

    def body(self) -> JSONObject:
        return compact({
            "service_id": self.service_id, "plan_id": self.plan_id, "context": self.context,
            "organization_guid": self.organization_guid, "space_guid": self.space_guid,
            "parameters": self.parameters, "maintenance_info": maintenance_info(self.maintenance_version),
        })

    def fetch(self) -> FetchInstanceRequest:
        return FetchInstanceRequest(**self.target())

    def cleanup(self) -> DeprovisionRequest:
        """The delete that removes what a failed provision may have left at the broker (orphan mitigation)."""
        return DeprovisionRequest(**self.target())


@dataclass(frozen=True, kw_only=True)
class UpdateRequest(InstanceRequest[UpdateResponse]):
    """``PATCH /v2/service_instances/:instance_id``: what changes (a plan, parameters, a maintenance version), and
    what the instance has now (``previous_values``)."""

    kind: ClassVar[CallKind] = "update"
    method: ClassVar[str] = "PATCH"
    service_id: str = field()
    context: JSONObject | None = None
    parameters: JSONObject | None = None
    maintenance_version: str | None = None
    previous_plan_id: str | None = None
    previous_maintenance_version: str | None = None
    accepts_incomplete: bool = True

    def query(self) -> dict[str, str]:
        return query_params(accepts_incomplete=self.accepts_incomplete)

    def body(self) -> JSONObject:
        previous = compact({"plan_id": self.previous_plan_id,
                            "maintenance_info": maintenance_info(self.previous_maintenance_version)})
        return compact({
            "service_id": self.service_id, "plan_id": self.plan_id, "context": self.context,
            "parameters": self.parameters,
            "previous_values": {"service_id": self.service_id, **previous} if previous else None,
            "maintenance_info": maintenance_info(self.maintenance_version),
        })

    def fetch(self) -> FetchInstanceRequest:
        """What the broker holds now (after a failed update: the plan and parameters it may have applied anyway).
        Which plan that is, is the question: only the service is named."""
        return FetchInstanceRequest(instance_id=self.instance_id, service_id=self.service_id)

    def last_operation(self, operation: str | None) -> LastOperationRequest:
        # While a plan change runs, the broker is asked about the plan before the update (spec: last_operation).
        return LastOperationRequest(**{**self.target(), "plan_id": self.previous_plan_id or self.plan_id},
                                    operation=operation)


# --------------------------------------------------------------------------- bindings


@dataclass(frozen=True, kw_only=True)
class BindingRequest(InstanceRequest[R]):
    """A request about one binding of an instance."""

    binding_id: str

    def path(self) -> str:
        return binding_path(self.instance_id, self.binding_id)

    def target(self) -> dict[str, Any]:
        return {**super().target(), "binding_id": self.binding_id}

    def last_operation(self, operation: str | None) -> BindingLastOperationRequest:
        return BindingLastOperationRequest(**self.target(), operation=operation)


@dataclass(frozen=True, kw_only=True)
class BindRequest(BindingRequest[BindResponse]):
    """``PUT /v2/service_instances/:instance_id/service_bindings/:binding_id``; with ``predecessor_binding_id``, the
    rotation of that binding (a successor the broker links to it; only for plans with ``binding_rotatable``)."""

    kind: ClassVar[CallKind] = "bind"
    method: ClassVar[str] = "PUT"
    service_id: str = field()
    plan_id: str = field()
    context: JSONObject | None = None
    bind_resource: JSONObject | None = None
    parameters: JSONObject | None = None
    predecessor_binding_id: str | None = None
    accepts_incomplete: bool = True

    def query(self) -> dict[str, str]:
        return query_params(accepts_incomplete=self.accepts_incomplete)

    def body(self) -> JSONObject:
        bind_resource = compact(self.bind_resource) if self.bind_resource is not None else None
        return compact({
            "service_id": self.service_id, "plan_id": self.plan_id, "context": self.context,
            "bind_resource": bind_resource, "parameters": self.parameters,
            "predecessor_binding_id": self.predecessor_binding_id,
        })

    def fetch(self) -> FetchBindingRequest:
        return FetchBindingRequest(**self.target())

    def cleanup(self) -> UnbindRequest:
        """The unbind that removes what a failed bind may have left at the broker (orphan mitigation)."""
        return UnbindRequest(**self.target())


# --------------------------------------------------------------------------- polls, fetches, deletes


@dataclass(frozen=True, kw_only=True)
class Poll(InstanceRequest[LastOperation]):
    """``GET <resource>/last_operation``; 410 raises OSBGone."""

    method: ClassVar[str] = "GET"
    operation: str | None = None

    def path(self) -> str:
        return super().path() + "/last_operation"

    def query(self) -> dict[str, str]:
        return self.ids_query(operation=self.operation)


@dataclass(frozen=True, kw_only=True)
class Fetch(InstanceRequest[R]):
    """``GET <resource>``."""

    method: ClassVar[str] = "GET"

    def query(self) -> dict[str, str]:
        return self.ids_query()


@dataclass(frozen=True, kw_only=True)
class Delete(InstanceRequest[AsyncResponse]):
    """``DELETE <resource>``; 410 raises OSBGone."""

    method: ClassVar[str] = "DELETE"
    service_id: str = field()
    plan_id: str = field()
    accepts_incomplete: bool = True

    def query(self) -> dict[str, str]:
        return self.ids_query(accepts_incomplete=self.accepts_incomplete)

    def cleanup(self) -> Self:
        """A failed delete is cleaned up by deleting again."""
        return self


@dataclass(frozen=True, kw_only=True)
class LastOperationRequest(Poll):
    """``GET /v2/service_instances/:instance_id/last_operation``."""

    kind: ClassVar[CallKind] = "last_operation"


@dataclass(frozen=True, kw_only=True)
class FetchInstanceRequest(Fetch[InstanceInfo]):
    """``GET /v2/service_instances/:instance_id``."""

    kind: ClassVar[CallKind] = "fetch_instance"


@dataclass(frozen=True, kw_only=True)
class DeprovisionRequest(Delete):
    """``DELETE /v2/service_instances/:instance_id``."""

    kind: ClassVar[CallKind] = "deprovision"


@dataclass(frozen=True, kw_only=True)
class BindingLastOperationRequest(Poll, BindingRequest[LastOperation]):
    """``GET /v2/service_instances/:instance_id/service_bindings/:binding_id/last_operation``."""

    kind: ClassVar[CallKind] = "binding_last_operation"


@dataclass(frozen=True, kw_only=True)
class FetchBindingRequest(Fetch[BindingInfo], BindingRequest[BindingInfo]):
    """``GET /v2/service_instances/:instance_id/service_bindings/:binding_id``."""

    kind: ClassVar[CallKind] = "fetch_binding"


@dataclass(frozen=True, kw_only=True)
class UnbindRequest(Delete, BindingRequest[AsyncResponse]):
    """``DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id``."""

    kind: ClassVar[CallKind] = "unbind"


# --------------------------------------------------------------------------- stored requests

# What an operation stores and resends (a fetch: the drift check of an instance or binding, issue 17).
StoredRequest = (ProvisionRequest | UpdateRequest | DeprovisionRequest | BindRequest | UnbindRequest
                 | FetchInstanceRequest | FetchBindingRequest)

STORED: dict[str, type[StoredRequest]] = {
    cls.kind: cls for cls in (ProvisionRequest, UpdateRequest, DeprovisionRequest, BindRequest, UnbindRequest,
                              FetchInstanceRequest, FetchBindingRequest)
}


def request_from_json(data: JSONObject) -> StoredRequest:
    """The request `to_json()` gave; ValueError for anything else (another format, kind or field)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"Not a stored OSB request of format {FORMAT}")
    cls = STORED.get(str(data.get("kind")))
    if cls is None:
        raise ValueError(f"Unknown kind of OSB request: {data.get('kind')!r}")
    values = {key: value for key, value in data.items() if key not in ("format", "kind")}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown fields for a {cls.kind} request: {', '.join(unknown)}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise ValueError(f"Incomplete {cls.kind} request: {exc}") from None
