"""A small, synchronous Open Service Broker API v2.17 client.

``send(request)`` takes one of the typed requests of ``requests.py`` and returns the typed answer
(``types.py``); ``prepare(request)`` shows what would be sent without sending it. Every failure is an
:class:`~brokers.osb.errors.OSBError` whose ``permanent`` flag carries the retry decision. The client never
retries and never follows redirects. Pure library: nothing here imports Django.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar, cast

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
from .memory import cyclic_gc_paused
from .requests import OSBRequest
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
    InstanceResponse,
    JSONObject,
    LastOperation,
    OperationState,
    OriginatingIdentity,
    PreparedRequest,
    ProvisionResponse,
    ReadTimeouts,
    UpdateResponse,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

API_VERSION = "2.17"
WRITE_TIMEOUT = 10.0
EXCERPT_LIMIT = 500
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

# Headers httpx adds for the connection; `prepare` leaves them out.
TRANSPORT_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding"})


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


def reason(response: httpx.Response) -> str:
    phrase = response.reason_phrase
    if not phrase:
        try:
            phrase = HTTPStatus(response.status_code).phrase
        except ValueError:
            phrase = ""
    return f"{response.status_code} {phrase}".strip()


def body_kind(response: httpx.Response) -> str:
    """What a body that is not JSON looks like, in words ("an HTML page", "a plain-text body"): shown instead of
    the body itself, whose excerpt only the call record keeps (a proxy's error page is not the broker's words)."""
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    start = response.content[:512].lstrip().lower()
    if "html" in content_type or start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if "xml" in content_type or start.startswith(b"<?xml"):
        return "an XML document"
    if not start:
        return "an empty body"
    return "a body that is not JSON"


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


def pooled_http_client(*, verify: bool | str | ssl.SSLContext = True, transport: httpx.BaseTransport | None = None,
                       max_connections: int = 100) -> httpx.Client:
    """The HTTP client an OSBClient sends with; one can serve many OSBClients (and threads) to reuse connections."""
    tls: bool | ssl.SSLContext = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
    return httpx.Client(
        transport=transport,
        verify=tls,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
    )


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
        http: httpx.Client | None = None,
    ) -> None:
        """`http`: a pooled ``httpx.Client`` to send with (its connections and TLS context are reused; `verify`
        and `transport` are then ignored, and `close` leaves it open for the next OSBClient)."""
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
        self._owns_http = http is None
        self._http = http if http is not None else pooled_http_client(verify=verify, transport=transport)

    def __repr__(self) -> str:
        return f"OSBClient({self._base!r})"

    # -- lifecycle

    def close(self) -> None:
        if self._owns_http:
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

    # -- sending

    def send(self, request: OSBRequest[R], *, identity: OriginatingIdentity | None = None,
             recorded: OSBRequest[Any] | None = None) -> R:
        """Send `request` (with `identity` as the originating identity) and return the broker's typed answer.
        `recorded`: the same request with its secrets masked, for the call record's excerpt (default: `request`,
        redacted by key name).

        Every failure is an OSBError whose `permanent` flag says whether the same request may succeed later.
        """
        built = self._build(request, identity)
        read_timeout = self._read_timeouts.for_kind(request.kind)
        at = datetime.now(UTC)
        started = time.monotonic()
        response: httpx.Response | None = None
        failure: OSBError | None = None
        parsed: Any = None
        try:
            try:
                response = self._http.send(built)
            except httpx.HTTPError as exc:
                failure = self._transport_error(exc, read_timeout)
                raise failure from exc
            try:
                self._check_status(response, request.kind)
                parsed = PARSERS[request.kind](self, response)
                return cast(R, parsed)
            except OSBError as exc:
                failure = exc
                raise
        finally:
            self._record(recorded or request, built, response, failure, at, started, parsed)

    def prepare(
        self, request: OSBRequest[Any], *, identity: OriginatingIdentity | None = None, mask: str = REDACTED
    ) -> PreparedRequest:
        """What `send` would put on the wire for `request`, without sending it: the method, the URL, the headers
        (the Authorization value masked with `mask`; transport headers such as Host left out) and the exact body."""
        built = self._build(request, identity)
        headers = {}
        for raw_name, raw_value in built.headers.raw:  # as written (httpx's items() are lower case)
            name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
            if name.lower() in TRANSPORT_HEADERS:
                continue
            if name.lower() == "authorization":
                value = f"{value.split(' ', 1)[0]} {mask}"
            headers[name] = value
        return PreparedRequest(method=built.method, url=str(built.url), headers=headers, body=request.content())

    # -- answers, by kind of request

    def _catalog(self, response: httpx.Response) -> CatalogResponse:
        """A 304 answer gives `not_modified=True` and no document."""
        got_etag = response.headers.get("ETag")
        last_modified = response.headers.get("Last-Modified")
        if response.status_code == 304:
            request = response.request
            return CatalogResponse(
                document=None,
                etag=got_etag or request.headers.get("If-None-Match"),
                last_modified=last_modified or request.headers.get("If-Modified-Since"),
                not_modified=True,
            )
        try:
            with cyclic_gc_paused():  # a big catalog is millions of objects and no cycles (see .memory)
                document = json.loads(response.content)
        except ValueError:
            raise OSBMalformedResponse(
                f"The broker's catalog is not valid JSON: the broker answered {reason(response)} with "
                f"{body_kind(response)}",
                status=response.status_code,
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
        return CatalogResponse(document=document, etag=got_etag, last_modified=last_modified, not_modified=False)

    def _instance_change(
        self, response: httpx.Response, kind: CallKind, answer: type[InstanceResponse]
    ) -> InstanceResponse:
        b = self._object(response, kind)
        return answer(
            status=response.status_code,
            async_=response.status_code == 202,
            operation=b.text("operation"),
            dashboard_url=b.text("dashboard_url"),
            metadata=b.object("metadata"),
        )

    def _delete(self, response: httpx.Response, kind: CallKind) -> AsyncResponse:
        b = self._object(response, kind)
        return AsyncResponse(
            status=response.status_code, async_=response.status_code == 202, operation=b.text("operation")
        )

    def _instance_info(self, response: httpx.Response) -> InstanceInfo:
        b = self._object(response, "fetch_instance")
        return InstanceInfo(
            service_id=b.text("service_id"),
            plan_id=b.text("plan_id"),
            dashboard_url=b.text("dashboard_url"),
            parameters=b.object("parameters"),
            maintenance_info=b.object("maintenance_info"),
            metadata=b.object("metadata"),
        )

    def _bind(self, response: httpx.Response) -> BindResponse:
        b = self._object(response, "bind")
        return BindResponse(
            status=response.status_code, async_=response.status_code == 202, operation=b.text("operation"),
            **self._binding_fields(b),
        )

    def _binding_info(self, response: httpx.Response) -> BindingInfo:
        b = self._object(response, "fetch_binding")
        return BindingInfo(parameters=b.object("parameters"), **self._binding_fields(b))

    @staticmethod
    def _binding_fields(b: _Body) -> dict[str, Any]:
        """What a bind answer and a fetched binding both carry."""
        return {
            "credentials": b.object("credentials"),
            "syslog_drain_url": b.text("syslog_drain_url"),
            "route_service_url": b.text("route_service_url"),
            "volume_mounts": b.array("volume_mounts"),
            "endpoints": b.array("endpoints"),
            "metadata": b.object("metadata"),
        }

    # -- internals

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
                f"The broker's answer to {label} ({reason(response)}) is not JSON: it is {body_kind(response)}",
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

    def _build(self, request: OSBRequest[Any], identity: OriginatingIdentity | None) -> httpx.Request:
        content = request.content()
        headers = {
            "X-Broker-API-Version": self._api_version,
            "X-Broker-API-Request-Identity": str(uuid.uuid4()),
            "Accept": "application/json",
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth.header()
        if identity is not None:
            headers["X-Broker-API-Originating-Identity"] = identity.header_value()
        if content is not None:
            headers["Content-Type"] = "application/json"
        headers.update(request.headers())
        timeout = httpx.Timeout(
            connect=self._connect_timeout,
            read=self._read_timeouts.for_kind(request.kind),
            write=WRITE_TIMEOUT,
            pool=self._connect_timeout,
        )
        return self._http.build_request(
            request.method,
            self._base + request.path(),
            params=request.query() or None,
            headers=headers,
            content=content,
            timeout=timeout,
        )


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
        # Only a JSON error object carries the broker's words (spec "Service Broker Errors"). Anything else (a
        # proxy's HTML error page, plain text) is summarised; its excerpt stays in the call record.
        not_json = ""
        try:
            data: Any = json.loads(text) if text.strip() else None
        except ValueError:
            data = None
            not_json = body_kind(response)
        if isinstance(data, dict):
            error_code = _typed(data.get("error"), str)
            description = _typed(data.get("description"), str)
            instance_usable = _typed(data.get("instance_usable"), bool)
            update_repeatable = _typed(data.get("update_repeatable"), bool)
        elif data is not None:
            not_json = "JSON that is not an error object"
        message = f"Broker answered {reason(response)}"
        if error_code:
            message += f" ({error_code})"
        if description:
            message += f": {description}"
        elif not_json:
            message += f" with {not_json}"
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
        osb_request: OSBRequest[Any],
        request: httpx.Request,
        response: httpx.Response | None,
        failure: OSBError | None,
        at: datetime,
        started: float,
        parsed: Any = None,
    ) -> None:
        if self._recorder is None:
            return
        kind, body = osb_request.kind, osb_request.body()
        duration_ms = round((time.monotonic() - started) * 1000)
        try:
            response_excerpt = ""
            if response is not None:
                if kind == "catalog" and failure is None:
                    # The document the parser decoded: decoding megabytes of catalog again cost ~0.5 s a sync.
                    document = getattr(parsed, "document", None)
                    response_excerpt = (
                        reason(response)
                        if response.status_code == 304
                        else catalog_summary(document if document is not None else json.loads(response.content))
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


# How each kind of answer is read (`send` returns what these return).
PARSERS: dict[CallKind, Callable[[OSBClient, httpx.Response], Any]] = {
    "catalog": OSBClient._catalog,
    "provision": lambda client, response: client._instance_change(response, "provision", ProvisionResponse),
    "update": lambda client, response: client._instance_change(response, "update", UpdateResponse),
    "deprovision": lambda client, response: client._delete(response, "deprovision"),
    "last_operation": lambda client, response: client._last_operation(response, "last_operation"),
    "fetch_instance": OSBClient._instance_info,
    "bind": OSBClient._bind,
    "unbind": lambda client, response: client._delete(response, "unbind"),
    "binding_last_operation": lambda client, response: client._last_operation(response, "binding_last_operation"),
    "fetch_binding": OSBClient._binding_info,
}
