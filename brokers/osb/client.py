"""A small, synchronous Open Service Broker API v2.17 client.

One method per spec endpoint; keyword-only arguments; typed results (``types.py``); every failure is an
:class:`~brokers.osb.errors.OSBError` whose ``permanent`` flag carries the retry decision. The client
never retries and never follows redirects. Pure library: nothing here imports Django.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from .errors import (
    TRANSIENT_4XX,
    OSBConnectionError,
    OSBError,
    OSBMalformedResponse,
    OSBTimeout,
    error_class_for,
    parse_retry_after,
)
from .types import (
    OPERATION_STATES,
    AsyncResponse,
    BasicAuth,
    BearerAuth,
    BindingInfo,
    BindResponse,
    CallKind,
    CallRecord,
    CatalogResponse,
    InstanceInfo,
    JSONObject,
    LastOperation,
    OperationState,
    OriginatingIdentity,
    ProvisionResponse,
    ReadTimeouts,
    UpdateResponse,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

API_VERSION = "2.17"
WRITE_TIMEOUT = 10.0
EXCERPT_LIMIT = 500
ERROR_TEXT_LIMIT = 200
USER_AGENT = "catalog-portal-osb-client/1"

EXPECTED_STATUSES: dict[CallKind, frozenset[int]] = {
    "catalog": frozenset({200}),
    "provision": frozenset({200, 201, 202}),
    "update": frozenset({200, 202}),
    "deprovision": frozenset({200, 202}),
    "last_operation": frozenset({200}),
    "fetch_instance": frozenset({200}),
    "bind": frozenset({200, 201, 202}),
    "unbind": frozenset({200, 202}),
    "binding_last_operation": frozenset({200}),
    "fetch_binding": frozenset({200}),
}

CALL_LABELS: dict[CallKind, str] = {
    "catalog": "the catalog request",
    "provision": "a provision request",
    "update": "an update request",
    "deprovision": "a deprovision request",
    "last_operation": "a last_operation poll",
    "fetch_instance": "a fetch instance request",
    "bind": "a bind request",
    "unbind": "an unbind request",
    "binding_last_operation": "a binding last_operation poll",
    "fetch_binding": "a fetch binding request",
}

# Brokers commonly answer a DELETE with an empty body instead of ``{}``; accept that.
EMPTY_BODY_OK: frozenset[CallKind] = frozenset({"deprovision", "unbind"})


# --------------------------------------------------------------------------- redaction

SECRET_KEY_RE = re.compile(r"pass|secret|token|credential|private|authorization|key$", re.IGNORECASE)
URL_USERINFO_RE = re.compile(r"\b([a-z][a-z0-9+.\-]*://)[^/@\s?#\"']+@", re.IGNORECASE)
SECRET_PAIR_RE = re.compile(
    r"""(["']?[\w.\-]*(?:pass|secret|token|credential|private|authorization|key)[\w.\-]*["']?\s*[:=]\s*)"""
    r"""("[^"]*"?|'[^']*'?|[^\s,;&}\]]+)""",
    re.IGNORECASE,
)
REDACTED = "***"


def redact(obj: Any) -> Any:
    """A copy of a JSON value with secrets masked.

    Values under keys matching ``pass|secret|token|credential|private|authorization|key$`` become
    ``"***"``; user info is stripped from URLs in every string (``scheme://***@host``).
    """
    if isinstance(obj, dict):
        return {
            key: REDACTED if isinstance(key, str) and SECRET_KEY_RE.search(key) else redact(value)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [redact(item) for item in obj]
    if isinstance(obj, str):
        return URL_USERINFO_RE.sub(r"\1***@", obj)
    return obj


def redact_text(text: str) -> str:
    """Best-effort masking for text that is not (valid) JSON."""
    text = URL_USERINFO_RE.sub(r"\1***@", text)
    return SECRET_PAIR_RE.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)


def truncate(text: str, limit: int = EXCERPT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def excerpt_json(obj: Any) -> str:
    return truncate(json.dumps(redact(obj), ensure_ascii=False, separators=(",", ":")))


def excerpt_body(content: bytes) -> str:
    if not content:
        return ""
    text = content.decode("utf-8", errors="replace")
    try:
        return excerpt_json(json.loads(text))
    except ValueError:
        return truncate(redact_text(text.strip()))


def error_described(response: httpx.Response) -> bool | None:
    """For an error answer (4xx, 5xx): is its body a JSON object with a non-empty ``description``, as the
    spec's "Service Broker Errors" defines it? None for other answers."""
    if response.status_code < 400:
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return False
    description = data.get("description") if isinstance(data, dict) else None
    return isinstance(description, str) and bool(description.strip())


def catalog_summary(document: JSONObject) -> str:
    services = document.get("services")
    if not isinstance(services, list):
        return "no services list"
    plans = sum(
        len(service["plans"])
        for service in services
        if isinstance(service, dict) and isinstance(service.get("plans"), list)
    )
    return (
        f"{len(services)} service{'s' if len(services) != 1 else ''}, {plans} plan{'s' if plans != 1 else ''}"
    )


# --------------------------------------------------------------------------- helpers


def segment(value: str, name: str) -> str:
    """One percent-encoded path segment."""
    if not value:
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def compact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Drop keys whose value is None (the OpenAPI document rejects nulls)."""
    return {key: value for key, value in mapping.items() if value is not None}


def query(**values: str | bool | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in values.items():
        if value is None or value is False or value == "":
            continue
        params[key] = "true" if value is True else str(value)
    return params


def reason(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    if not phrase:
        try:
            phrase = HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = ""
    return f"{response.status_code} {phrase}".strip()


def _typed(value: Any, kind: type[T]) -> T | None:
    return value if isinstance(value, kind) else None


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


class _Body:
    """Typed access to a response object; wrong types raise OSBMalformedResponse."""

    def __init__(self, data: JSONObject, *, status: int, label: str) -> None:
        self.data = data
        self.status = status
        self.label = label

    def _bad(self, key: str, expected: str) -> OSBMalformedResponse:
        value = truncate(json.dumps(redact({key: self.data.get(key)})[key]), 80)
        return OSBMalformedResponse(
            f"The broker's answer to {self.label} is malformed: {key!r} should be {expected}, got {value}",
            status=self.status,
        )

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None or isinstance(value, str):
            return value or None
        raise self._bad(key, "a string")

    def object(self, key: str) -> JSONObject | None:
        value = self.data.get(key)
        if value is None or isinstance(value, dict):
            return value
        raise self._bad(key, "an object")

    def array(self, key: str) -> list[Any] | None:
        value = self.data.get(key)
        if value is None or isinstance(value, list):
            return value
        raise self._bad(key, "an array")

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self._bad(key, "a boolean")


# --------------------------------------------------------------------------- client


class OSBClient:
    """Talks to one broker. Thread-safe as far as ``httpx.Client`` is; use as a context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: BasicAuth | BearerAuth | None = None,
        verify: bool | str = True,
        connect_timeout: float = 5.0,
        read_timeouts: ReadTimeouts | None = None,
        transport: httpx.BaseTransport | None = None,
        api_version: str = API_VERSION,
        recorder: Callable[[CallRecord], None] | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"Broker URL must be an absolute http(s) URL, got {base_url!r}")
        if url.userinfo:
            raise ValueError("Broker URL must not contain credentials; pass auth= instead")
        if url.query or url.fragment:
            raise ValueError("Broker URL must not contain a query string or fragment")
        self._base = str(url.copy_with(path=url.path.rstrip("/") or "/")).rstrip("/")
        self._origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        self._auth = auth
        self._connect_timeout = connect_timeout
        self._read_timeouts = read_timeouts or ReadTimeouts()
        self._api_version = api_version
        self._recorder = recorder
        tls: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._http = httpx.Client(
            transport=transport,
            verify=tls,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"OSBClient({self._base!r})"

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OSBClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- endpoints

    def get_catalog(
        self, *, etag: str | None = None, if_modified_since: str | None = None
    ) -> CatalogResponse:
        """``GET /v2/catalog``; a 304 answer gives ``not_modified=True`` and no document."""
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if if_modified_since:
            headers["If-Modified-Since"] = if_modified_since

        def parse(response: httpx.Response) -> CatalogResponse:
            got_etag = response.headers.get("ETag")
            last_modified = response.headers.get("Last-Modified")
            if response.status_code == 304:
                return CatalogResponse(
                    document=None,
                    etag=got_etag or etag,
                    last_modified=last_modified or if_modified_since,
                    not_modified=True,
                )
            try:
                document = json.loads(response.content)
            except ValueError as exc:
                raise OSBMalformedResponse(
                    f"The broker's catalog is not valid JSON: {exc}",
                    status=response.status_code,
                    description=response.text.strip()[:ERROR_TEXT_LIMIT] or None,
                    permanent=True,
                ) from None
            if not isinstance(document, dict):
                raise OSBMalformedResponse(
                    f"The broker's catalog is not a JSON object (got {type(document).__name__})",
                    status=response.status_code,
                    permanent=True,
                )
            if not isinstance(document.get("services"), list):
                raise OSBMalformedResponse(
                    'The broker\'s catalog has no "services" list',
                    status=response.status_code,
                    permanent=True,
                )
            return CatalogResponse(
                document=document, etag=got_etag, last_modified=last_modified, not_modified=False
            )

        return self._call("catalog", "GET", "/v2/catalog", parse, headers=headers)

    def provision(
        self,
        *,
        instance_id: str,
        service_id: str,
        plan_id: str,
        context: JSONObject,
        organization_guid: str,
        space_guid: str,
        parameters: JSONObject | None = None,
        maintenance_info: JSONObject | None = None,
        accepts_incomplete: bool = True,
        identity: OriginatingIdentity | None = None,
    ) -> ProvisionResponse:
        """``PUT /v2/service_instances/:instance_id``."""
        body = compact(
            {
                "service_id": service_id,
                "plan_id": plan_id,
                "context": context,
                "organization_guid": organization_guid,
                "space_guid": space_guid,
                "parameters": parameters,
                "maintenance_info": maintenance_info,
            }
        )

        def parse(response: httpx.Response) -> ProvisionResponse:
            b = self._object(response, "provision")
            return ProvisionResponse(
                status=response.status_code,
                async_=response.status_code == 202,
                operation=b.text("operation"),
                dashboard_url=b.text("dashboard_url"),
                metadata=b.object("metadata"),
            )

        return self._call(
            "provision",
            "PUT",
            self._instance_path(instance_id),
            parse,
            params=query(accepts_incomplete=accepts_incomplete),
            body=body,
            identity=identity,
        )

    def update(
        self,
        *,
        instance_id: str,
        service_id: str,
        plan_id: str | None = None,
        context: JSONObject | None = None,
        parameters: JSONObject | None = None,
        previous_values: JSONObject | None = None,
        maintenance_info: JSONObject | None = None,
        accepts_incomplete: bool = True,
        identity: OriginatingIdentity | None = None,
    ) -> UpdateResponse:
        """``PATCH /v2/service_instances/:instance_id``."""
        body = compact(
            {
                "service_id": service_id,
                "plan_id": plan_id,
                "context": context,
                "parameters": parameters,
                "previous_values": compact(previous_values) if previous_values is not None else None,
                "maintenance_info": maintenance_info,
            }
        )

        def parse(response: httpx.Response) -> UpdateResponse:
            b = self._object(response, "update")
            return UpdateResponse(
                status=response.status_code,
                async_=response.status_code == 202,
                operation=b.text("operation"),
                dashboard_url=b.text("dashboard_url"),
                metadata=b.object("metadata"),
            )

        return self._call(
            "update",
            "PATCH",
            self._instance_path(instance_id),
            parse,
            params=query(accepts_incomplete=accepts_incomplete),
            body=body,
            identity=identity,
        )

    def deprovision(
        self,
        *,
        instance_id: str,
        service_id: str,
        plan_id: str,
        accepts_incomplete: bool = True,
        identity: OriginatingIdentity | None = None,
    ) -> AsyncResponse:
        """``DELETE /v2/service_instances/:instance_id``; 410 raises :class:`OSBGone`."""

        def parse(response: httpx.Response) -> AsyncResponse:
            b = self._object(response, "deprovision")
            return AsyncResponse(
                status=response.status_code,
                async_=response.status_code == 202,
                operation=b.text("operation"),
            )

        return self._call(
            "deprovision",
            "DELETE",
            self._instance_path(instance_id),
            parse,
            params=query(service_id=service_id, plan_id=plan_id, accepts_incomplete=accepts_incomplete),
            identity=identity,
        )

    def last_operation(
        self,
        *,
        instance_id: str,
        service_id: str | None = None,
        plan_id: str | None = None,
        operation: str | None = None,
    ) -> LastOperation:
        """``GET /v2/service_instances/:instance_id/last_operation``; 410 raises :class:`OSBGone`."""
        return self._call(
            "last_operation",
            "GET",
            self._instance_path(instance_id) + "/last_operation",
            lambda response: self._last_operation(response, "last_operation"),
            params=query(service_id=service_id, plan_id=plan_id, operation=operation),
        )

    def fetch_instance(
        self, *, instance_id: str, service_id: str | None = None, plan_id: str | None = None
    ) -> InstanceInfo:
        """``GET /v2/service_instances/:instance_id``."""

        def parse(response: httpx.Response) -> InstanceInfo:
            b = self._object(response, "fetch_instance")
            return InstanceInfo(
                service_id=b.text("service_id"),
                plan_id=b.text("plan_id"),
                dashboard_url=b.text("dashboard_url"),
                parameters=b.object("parameters"),
                maintenance_info=b.object("maintenance_info"),
                metadata=b.object("metadata"),
            )

        return self._call(
            "fetch_instance",
            "GET",
            self._instance_path(instance_id),
            parse,
            params=query(service_id=service_id, plan_id=plan_id),
        )

    def bind(
        self,
        *,
        instance_id: str,
        binding_id: str,
        service_id: str,
        plan_id: str,
        context: JSONObject | None = None,
        bind_resource: JSONObject | None = None,
        parameters: JSONObject | None = None,
        accepts_incomplete: bool = True,
        identity: OriginatingIdentity | None = None,
    ) -> BindResponse:
        """``PUT /v2/service_instances/:instance_id/service_bindings/:binding_id``."""
        body = compact(
            {
                "service_id": service_id,
                "plan_id": plan_id,
                "context": context,
                "bind_resource": compact(bind_resource) if bind_resource is not None else None,
                "parameters": parameters,
            }
        )

        def parse(response: httpx.Response) -> BindResponse:
            b = self._object(response, "bind")
            return BindResponse(
                status=response.status_code,
                async_=response.status_code == 202,
                operation=b.text("operation"),
                credentials=b.object("credentials"),
                syslog_drain_url=b.text("syslog_drain_url"),
                route_service_url=b.text("route_service_url"),
                volume_mounts=b.array("volume_mounts"),
                endpoints=b.array("endpoints"),
                metadata=b.object("metadata"),
            )

        return self._call(
            "bind",
            "PUT",
            self._binding_path(instance_id, binding_id),
            parse,
            params=query(accepts_incomplete=accepts_incomplete),
            body=body,
            identity=identity,
        )

    def unbind(
        self,
        *,
        instance_id: str,
        binding_id: str,
        service_id: str,
        plan_id: str,
        accepts_incomplete: bool = True,
        identity: OriginatingIdentity | None = None,
    ) -> AsyncResponse:
        """``DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id``; 410 raises OSBGone."""

        def parse(response: httpx.Response) -> AsyncResponse:
            b = self._object(response, "unbind")
            return AsyncResponse(
                status=response.status_code,
                async_=response.status_code == 202,
                operation=b.text("operation"),
            )

        return self._call(
            "unbind",
            "DELETE",
            self._binding_path(instance_id, binding_id),
            parse,
            params=query(service_id=service_id, plan_id=plan_id, accepts_incomplete=accepts_incomplete),
            identity=identity,
        )

    def binding_last_operation(
        self,
        *,
        instance_id: str,
        binding_id: str,
        service_id: str | None = None,
        plan_id: str | None = None,
        operation: str | None = None,
    ) -> LastOperation:
        """``GET .../service_bindings/:binding_id/last_operation``; 410 raises :class:`OSBGone`."""
        return self._call(
            "binding_last_operation",
            "GET",
            self._binding_path(instance_id, binding_id) + "/last_operation",
            lambda response: self._last_operation(response, "binding_last_operation"),
            params=query(service_id=service_id, plan_id=plan_id, operation=operation),
        )

    def fetch_binding(
        self,
        *,
        instance_id: str,
        binding_id: str,
        service_id: str | None = None,
        plan_id: str | None = None,
    ) -> BindingInfo:
        """``GET /v2/service_instances/:instance_id/service_bindings/:binding_id``."""

        def parse(response: httpx.Response) -> BindingInfo:
            b = self._object(response, "fetch_binding")
            return BindingInfo(
                credentials=b.object("credentials"),
                syslog_drain_url=b.text("syslog_drain_url"),
                route_service_url=b.text("route_service_url"),
                volume_mounts=b.array("volume_mounts"),
                endpoints=b.array("endpoints"),
                parameters=b.object("parameters"),
                metadata=b.object("metadata"),
            )

        return self._call(
            "fetch_binding",
            "GET",
            self._binding_path(instance_id, binding_id),
            parse,
            params=query(service_id=service_id, plan_id=plan_id),
        )

    # -- internals

    @staticmethod
    def _instance_path(instance_id: str) -> str:
        return "/v2/service_instances/" + segment(instance_id, "instance_id")

    @classmethod
    def _binding_path(cls, instance_id: str, binding_id: str) -> str:
        return cls._instance_path(instance_id) + "/service_bindings/" + segment(binding_id, "binding_id")

    @staticmethod
    def _object(response: httpx.Response, kind: CallKind) -> _Body:
        label = CALL_LABELS[kind]
        content = response.content
        if not content.strip() and kind in EMPTY_BODY_OK:
            return _Body({}, status=response.status_code, label=label)
        try:
            data = json.loads(content)
        except ValueError:
            raise OSBMalformedResponse(
                f"The broker's answer to {label} ({reason(response)}) is not JSON: "
                f"{truncate(redact_text(response.text.strip()), 80)!r}",
                status=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise OSBMalformedResponse(
                f"The broker's answer to {label} ({reason(response)}) is not a JSON object",
                status=response.status_code,
            )
        return _Body(data, status=response.status_code, label=label)

    def _last_operation(self, response: httpx.Response, kind: CallKind) -> LastOperation:
        b = self._object(response, kind)
        state = b.data.get("state")
        if state not in OPERATION_STATES:
            raise OSBMalformedResponse(
                f"The broker's answer to {CALL_LABELS[kind]} has no valid state "
                f"(got {truncate(json.dumps(state), 80)})",
                status=response.status_code,
            )
        valid_state: OperationState = state
        return LastOperation(
            state=valid_state,
            description=b.text("description"),
            instance_usable=b.flag("instance_usable"),
            update_repeatable=b.flag("update_repeatable"),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _headers(
        self, request_id: str, identity: OriginatingIdentity | None, has_body: bool
    ) -> dict[str, str]:
        headers = {
            "X-Broker-API-Version": self._api_version,
            "X-Broker-API-Request-Identity": request_id,
            "Accept": "application/json",
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth.header()
        if identity is not None:
            headers["X-Broker-API-Originating-Identity"] = identity.header_value()
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def _call(
        self,
        kind: CallKind,
        method: str,
        path: str,
        parse: Callable[[httpx.Response], T],
        *,
        params: Mapping[str, str] | None = None,
        body: JSONObject | None = None,
        identity: OriginatingIdentity | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> T:
        request_id = str(uuid.uuid4())
        all_headers = self._headers(request_id, identity, body is not None)
        all_headers.update(headers or {})
        read_timeout = self._read_timeouts.for_kind(kind)
        timeout = httpx.Timeout(
            connect=self._connect_timeout,
            read=read_timeout,
            write=WRITE_TIMEOUT,
            pool=self._connect_timeout,
        )
        content = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        request = self._http.build_request(
            method,
            self._base + path,
            params=params or None,
            headers=all_headers,
            content=content,
            timeout=timeout,
        )
        at = datetime.now(UTC)
        started = time.monotonic()
        response: httpx.Response | None = None
        failure: OSBError | None = None
        try:
            try:
                response = self._http.send(request)
            except httpx.HTTPError as exc:
                failure = self._transport_error(exc, read_timeout)
                raise failure from exc
            try:
                self._check_status(response, kind)
                return parse(response)
            except OSBError as exc:
                failure = exc
                raise
        finally:
            self._record(kind, request, response, body, failure, at, started)

    def _transport_error(self, exc: httpx.HTTPError, read_timeout: float) -> OSBError:
        where = self._origin
        if isinstance(exc, httpx.ConnectTimeout):
            return OSBConnectionError(
                f"Could not connect to the broker at {where}: no connection within "
                f"{format_seconds(self._connect_timeout)}"
            )
        if isinstance(exc, httpx.PoolTimeout):
            return OSBConnectionError(
                f"Could not connect to the broker at {where}: connection pool exhausted"
            )
        if isinstance(exc, httpx.ReadTimeout):
            return OSBTimeout(f"The broker did not answer within {format_seconds(read_timeout)}")
        if isinstance(exc, httpx.WriteTimeout):
            return OSBTimeout(
                f"Could not send the request to the broker at {where} within {format_seconds(WRITE_TIMEOUT)}"
            )
        if isinstance(exc, httpx.DecodingError):
            return OSBMalformedResponse(f"The broker's answer could not be decoded: {exc}")
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.UnsupportedProtocol | httpx.ProxyError):
            return OSBConnectionError(f"Could not connect to the broker at {where}: {detail}")
        # ReadError, WriteError, RemoteProtocolError...: the request may have reached the broker.
        return OSBConnectionError(
            f"The connection to the broker at {where} broke before an answer arrived: {detail}",
            maybe_delivered=True,
        )

    @staticmethod
    def _check_status(response: httpx.Response, kind: CallKind) -> None:
        status = response.status_code
        if 200 <= status < 300:
            if status not in EXPECTED_STATUSES[kind]:
                raise OSBMalformedResponse(
                    f"Broker answered {reason(response)}, which is not a valid answer to {CALL_LABELS[kind]}",
                    status=status,
                )
            return
        if status == 304 and kind == "catalog":
            return
        error_code: str | None = None
        description: str | None = None
        instance_usable: bool | None = None
        update_repeatable: bool | None = None
        text = response.text
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
            description = text.strip()[:ERROR_TEXT_LIMIT] or None
        if isinstance(data, dict):
            error_code = _typed(data.get("error"), str)
            description = _typed(data.get("description"), str)
            instance_usable = _typed(data.get("instance_usable"), bool)
            update_repeatable = _typed(data.get("update_repeatable"), bool)
        elif data is not None:
            description = text.strip()[:ERROR_TEXT_LIMIT] or None
        message = f"Broker answered {reason(response)}"
        if error_code:
            message += f" ({error_code})"
        if description:
            message += f": {description}"
        elif status < 400:
            location = response.headers.get("Location")
            message += "; redirects are not followed" + (f" (Location: {location})" if location else "")
        cls = error_class_for(status, error_code)
        permanent: bool | None = None
        if cls is OSBError:
            permanent = status not in TRANSIENT_4XX
        raise cls(
            message,
            status=status,
            error=error_code or None,
            description=description or None,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            permanent=permanent,
            instance_usable=instance_usable,
            update_repeatable=update_repeatable,
        )

    def _record(
        self,
        kind: CallKind,
        request: httpx.Request,
        response: httpx.Response | None,
        body: JSONObject | None,
        failure: OSBError | None,
        at: datetime,
        started: float,
    ) -> None:
        if self._recorder is None:
            return
        duration_ms = round((time.monotonic() - started) * 1000)
        try:
            response_excerpt = ""
            if response is not None:
                if kind == "catalog" and failure is None:
                    response_excerpt = (
                        reason(response)
                        if response.status_code == 304
                        else catalog_summary(json.loads(response.content))
                    )
                else:
                    response_excerpt = excerpt_body(response.content)
            record = CallRecord(
                method=request.method,
                path=request.url.raw_path.decode("ascii", errors="replace"),
                status=response.status_code if response is not None else None,
                duration_ms=duration_ms,
                request_id=request.headers.get("X-Broker-API-Request-Identity", ""),
                at=at,
                error=truncate(redact_text(str(failure))) if failure is not None else None,
                request_excerpt=excerpt_json(body) if body is not None else "",
                response_excerpt=response_excerpt,
                retry_after=response.headers.get("Retry-After") if response is not None else None,
                malformed=isinstance(failure, OSBMalformedResponse),
                error_code=failure.error if failure is not None else None,
                error_described=error_described(response) if response is not None else None,
            )
            self._recorder(record)
        except Exception:
            # Recording is best effort: a failing recorder must not turn a broker's answer into an error.
            logger.exception("OSB call recorder failed for %s %s", request.method, request.url.path)
