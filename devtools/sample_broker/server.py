"""A small but real Open Service Broker API v2.17 broker (stdlib only).

``SampleBroker`` serves the OSB endpoints with in-memory state on a
``ThreadingHTTPServer``.  It is both the demo broker shipped with the project
(``python -m devtools.sample_broker``) and the scriptable fake broker used by the
portal's test-suite.

OSB endpoints (basic auth when configured, ``X-Broker-API-Version`` >= 2.17)::

    GET    /v2/catalog
    PUT    /v2/service_instances/:iid                        provision
    PATCH  /v2/service_instances/:iid                        update
    DELETE /v2/service_instances/:iid                        deprovision
    GET    /v2/service_instances/:iid                        fetch
    GET    /v2/service_instances/:iid/last_operation
    PUT    /v2/service_instances/:iid/service_bindings/:bid  bind
    DELETE /v2/service_instances/:iid/service_bindings/:bid  unbind
    GET    /v2/service_instances/:iid/service_bindings/:bid  fetch binding
    GET    /v2/service_instances/:iid/service_bindings/:bid/last_operation

Non-OSB helper endpoints (never authenticated, no version header needed)::

    GET    /icons/<name>.svg          icons referenced by metadata.imageUrl
    GET    /dashboard/<iid>           a tiny HTML "dashboard" (dashboard_url)
    GET    /                          a JSON banner

Control endpoints -- **not part of OSB**, never authenticated, not recorded in
``requests`` and never affected by scripted responses.  They exist so a broker
running in a separate process can be driven by tests::

    POST   /__control__/catalog       body = new catalog (JSON object, or any
                                      non-JSON bytes to serve garbage)
    DELETE /__control__/catalog       back to the built-in sample catalog
    POST   /__control__/responses     body = set_response() kwargs as JSON:
                                      {"method", "path", "status", "body",
                                       "headers", "times", "delay"}
    DELETE /__control__/responses     clear scripted responses
    GET    /__control__/requests      recorded requests as JSON
    DELETE /__control__/requests      clear recorded requests
    POST   /__control__/settings      {"async_seconds", "etag_support",
                                       "async_outcome", "async_mode",
                                       "binding_expires_seconds",
                                       "binding_renew_seconds"}
    GET    /__control__/state         {"instances": ..., "bindings": ...}
    POST   /__control__/reset         clear state, requests, responses, catalog

A plan is asynchronous when it declares ``maximum_polling_duration`` (override
with ``async_mode``).  Asynchronous operations stay ``in progress`` for
``async_seconds`` and then finish with ``async_outcome``.

A bind with ``predecessor_binding_id`` (binding rotation) is accepted only for
plans with ``binding_rotatable`` and a predecessor of the same instance; the
new binding records it.  With ``binding_expires_seconds`` /
``binding_renew_seconds`` set, new bindings answer ``metadata.expires_at`` /
``metadata.renew_before`` that many seconds after their creation.
"""

from __future__ import annotations

import base64
import binascii
import copy
import email.utils
import hashlib
import hmac
import html
import json
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from .catalog import CREDENTIAL_PROFILES, build_catalog, find_plan

ICON_DIR = Path(__file__).resolve().parent / "icons"
API_VERSION_HEADER = "X-Broker-API-Version"
CONTROL_PREFIX = "/__control__/"

_ICON_RE = re.compile(r"^/icons/([A-Za-z0-9_-]+)\.svg$")
_DASHBOARD_RE = re.compile(r"^/dashboard/([^/]+)$")
_INSTANCE_RE = re.compile(r"^/v2/service_instances/([^/]+)$")
_INSTANCE_LASTOP_RE = re.compile(r"^/v2/service_instances/([^/]+)/last_operation$")
_BINDING_RE = re.compile(r"^/v2/service_instances/([^/]+)/service_bindings/([^/]+)$")
_BINDING_LASTOP_RE = re.compile(r"^/v2/service_instances/([^/]+)/service_bindings/([^/]+)/last_operation$")

_STATUS_ERRORS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Gone",
    412: "PreconditionFailed",
    422: "UnprocessableEntity",
    500: "InternalServerError",
}


# --------------------------------------------------------------------------- #
# Recording
# --------------------------------------------------------------------------- #


class Headers(dict[str, str]):
    """A plain ``dict`` of header name -> value whose lookups ignore case."""

    def _resolve(self, key: str) -> str:
        if not super().__contains__(key):
            lowered = key.lower()
            for existing in self:
                if existing.lower() == lowered:
                    return existing
        return key

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(self._resolve(key))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(self._resolve(key))

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(self._resolve(key), default)


@dataclass
class RecordedRequest:
    """One request received by the broker (control requests excluded)."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    json: Any
    body: bytes
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "json": self.json,
            "body": self.body.decode("utf-8", "replace"),
            "at": self.at,
        }


#: ``set_response(..., status=PASS_THROUGH, delay=s)``: wait, then answer as the broker normally would.
PASS_THROUGH = 0


@dataclass
class ScriptedResponse:
    method: str
    path_regex: re.Pattern[str]
    status: int
    body: bytes
    headers: dict[str, str]
    times: int | None
    delay: float


def _encode_body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


class BrokerError(Exception):
    def __init__(self, status: int, description: str, error: str | None = None, **extra: Any) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.error = error or _STATUS_ERRORS.get(status, "Error")
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "description": self.description, **self.extra}


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list -> JSON; bytes/str -> raw
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _timestamp(seconds: float) -> str:
    """An OSB timestamp (``yyyy-mm-ddThh:mm:ss.sZ``, UTC)."""
    moment = time.gmtime(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(seconds * 10) % 10}Z"


def _bool_param(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").strip().lower() == "true"


def _validate(schema_holder: Any, path: tuple[str, ...], parameters: Any, what: str) -> None:
    """Validate ``parameters`` against ``plan[path...]['parameters']`` if present."""
    node = schema_holder
    for key in path:
        if not isinstance(node, dict):
            return
        node = node.get(key)
    if not isinstance(node, dict) or not isinstance(node.get("parameters"), dict):
        return
    schema = node["parameters"]
    try:
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
        validator = cls(schema)
        errors = sorted(validator.iter_errors(parameters), key=lambda e: list(e.absolute_path))
    except jsonschema.SchemaError as exc:  # broken schema in a test catalog
        raise BrokerError(500, f"The plan's {what} schema is invalid: {exc.message}") from exc
    if errors:
        parts = []
        for err in errors[:5]:
            where = "/".join(str(p) for p in err.absolute_path)
            parts.append(f"{where}: {err.message}" if where else err.message)
        raise BrokerError(400, f"Invalid {what} parameters: " + "; ".join(parts), "ValidationFailed")


def _is_updateable(service: dict[str, Any], plan: dict[str, Any]) -> bool:
    if "plan_updateable" in plan:
        return bool(plan["plan_updateable"])
    return bool(service.get("plan_updateable", False))


def _is_bindable(service: dict[str, Any], plan: dict[str, Any]) -> bool:
    if "bindable" in plan:
        return bool(plan["bindable"])
    return bool(service.get("bindable", False))


# --------------------------------------------------------------------------- #
# HTTP plumbing
# --------------------------------------------------------------------------- #


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    broker: SampleBroker


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "SampleOSBBroker/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.broker.verbose:
            sys.stderr.write(f"[sample-broker] {self.address_string()} {format % args}\n")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline().strip()
                size = int(line.split(b";", 1)[0] or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        body = self._read_body()
        reply = self.server.broker._dispatch(self.command, self.path, self.headers, body)
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test, or a killed worker): nothing to answer to.
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        if reply.status == 304:
            payload = b""
        elif isinstance(reply.body, (bytes, str)) or reply.body is None:
            payload = _encode_body(reply.body)
        else:
            payload = json.dumps(reply.body, indent=None).encode("utf-8")
        self.send_response(reply.status)
        headers = {"Content-Type": reply.content_type, **reply.headers}
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        if reply.status != 304:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST = do_HEAD = do_OPTIONS = _handle


# --------------------------------------------------------------------------- #
# The broker
# --------------------------------------------------------------------------- #


class SampleBroker:
    """An in-memory OSB v2.17 broker on loopback.

    >>> with SampleBroker(username="u", password="p") as broker:
    ...     httpx.get(broker.url + "/v2/catalog", auth=("u", "p"),
    ...               headers={"X-Broker-API-Version": "2.17"})

    ``catalog=None`` serves the built-in sample catalog (icon URLs built from the
    request's ``Host`` header).  A dict is served verbatim; ``bytes``/``str`` are
    served raw (to simulate a broken broker).
    """

    def __init__(
        self,
        catalog: dict[str, Any] | bytes | str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self.username = username
        self.password = password
        self.host = host
        self.port = port
        #: seconds an asynchronous operation stays "in progress"
        self.async_seconds: float = 3.0
        #: final state of asynchronous operations: "succeeded" or "failed"
        self.async_outcome: str = "succeeded"
        #: "auto" (plans with maximum_polling_duration are async), "always", "never"
        self.async_mode: str = "auto"
        #: a failed asynchronous update still applies its plan and parameters (as some brokers do)
        self.failed_update_applies: bool = False
        #: serve ETag/Last-Modified on the catalog and honour conditional GETs
        self.etag_support: bool = False
        #: bindings expire / should be renewed this many seconds after creation (metadata); None: not sent
        self.binding_expires_seconds: float | None = None
        self.binding_renew_seconds: float | None = None
        #: minimum accepted X-Broker-API-Version (major must match exactly)
        self.min_api_version: tuple[int, int] = (2, 17)
        #: log every request to stderr
        self.verbose: bool = False
        #: instance id -> state dict
        self.instances: dict[str, dict[str, Any]] = {}
        #: binding id -> state dict (includes "instance_id")
        self.bindings: dict[str, dict[str, Any]] = {}
        #: operation token -> operation dict
        self.operations: dict[str, dict[str, Any]] = {}
        #: kind -> the most asynchronous operations of that kind in flight at once: accepted (202) and not yet
        #: reported finished by a last_operation answer (what a platform's parallelism looks like from here)
        self.peak_in_flight: dict[str, int] = {}
        self._catalog: dict[str, Any] | bytes | str | None = catalog
        self._catalog_mtime = time.time()
        self._requests: list[RecordedRequest] = []
        self._responses: list[ScriptedResponse] = []
        #: OSB requests being answered right now, and the most ever answered at once (``reset`` clears it)
        self.in_flight: int = 0
        self.max_in_flight: int = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def listen(self) -> _Server:
        """Bind the listening socket now (idempotent); ``self.port`` becomes the real port."""
        if self._server is None:
            server = _Server((self.host, self.port), _Handler)
            server.broker = self
            self._server = server
            self.port = server.server_address[1]
        return self._server

    def start(self) -> SampleBroker:
        """Start serving on a background daemon thread; returns ``self``."""
        if self._thread is not None:
            return self
        server = self.listen()
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sample-broker-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until interrupted (used by ``__main__``)."""
        server = self.listen()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            self._server = None

    def stop(self) -> None:
        """Stop the server (pending scripted delays are cut short)."""
        self._stopping.set()
        server, thread = self._server, self._thread
        if server is not None:
            if thread is not None:
                server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SampleBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------ knobs
    @property
    def catalog(self) -> dict[str, Any] | bytes | str:
        """The catalog in effect (the sample catalog rendered for ``self.url``)."""
        with self._lock:
            if self._catalog is None:
                return build_catalog(self.url)
            return self._catalog

    @catalog.setter
    def catalog(self, value: dict[str, Any] | bytes | str | None) -> None:
        with self._lock:
            self._catalog = value
            self._catalog_mtime = time.time()

    def _catalog_for(self, base_url: str) -> dict[str, Any] | bytes | str:
        with self._lock:
            if self._catalog is None:
                return build_catalog(base_url)
            return self._catalog

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot (copy) of every non-control request received so far."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def requests_for(self, method: str | None = None, path_regex: str | None = None) -> list[RecordedRequest]:
        """Recorded requests filtered by method and/or ``re.fullmatch`` on the path."""
        pattern = re.compile(path_regex) if path_regex else None
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (pattern is None or pattern.fullmatch(r.path))
        ]

    def set_response(
        self,
        method: str,
        path_regex: str,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Script a response, checked before normal handling (and before auth).

        ``method`` is an HTTP method or ``"*"``; ``path_regex`` must
        ``re.fullmatch`` the request path (without query string).  The most
        recently added matching script wins.  ``body``: dict/list -> JSON,
        ``str``/``bytes`` -> sent as-is.  ``times``: number of uses (``None`` =
        forever).  ``delay``: seconds to sleep before answering.
        """
        scripted = ScriptedResponse(
            method=method.upper(),
            path_regex=re.compile(path_regex),
            status=int(status),
            body=_encode_body(body),
            headers=dict(headers or {}),
            times=times,
            delay=float(delay),
        )
        with self._lock:
            self._responses.append(scripted)

    def clear_responses(self) -> None:
        with self._lock:
            self._responses.clear()

    def reset(self) -> None:
        """Forget instances, bindings, operations, requests, scripts; sample catalog."""
        with self._lock:
            self.instances.clear()
            self.bindings.clear()
            self.operations.clear()
            self.peak_in_flight.clear()
            self._requests.clear()
            self._responses.clear()
            self.max_in_flight = self.in_flight
            self.catalog = None
            self.async_seconds = 3.0
            self.async_outcome = "succeeded"
            self.async_mode = "auto"
            self.failed_update_applies = False
            self.etag_support = False
            self.binding_expires_seconds = None
            self.binding_renew_seconds = None

    # ------------------------------------------------------------ dispatch
    def _dispatch(self, method: str, raw_path: str, raw_headers: Any, body: bytes) -> Reply:
        split = urlsplit(raw_path)
        path = split.path or "/"
        query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = Headers((k, v) for k, v in raw_headers.items())
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        try:
            if path.startswith(CONTROL_PREFIX):
                return self._control(method, path, headers, body, parsed)
            with self._lock:
                self._requests.append(RecordedRequest(method, path, query, headers, parsed, body))
                scripted = self._match_script(method, path)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if scripted is not None:
                    if scripted.delay > 0:
                        self._stopping.wait(scripted.delay)
                    if scripted.status != PASS_THROUGH:
                        return Reply(scripted.status, scripted.body, dict(scripted.headers))
                base_url = f"http://{headers.get('Host')}" if headers.get("Host") else self.url
                return self._route(method, path, query, headers, body, parsed, base_url)
            finally:
                with self._lock:
                    self.in_flight -= 1
        except BrokerError as exc:
            return Reply(exc.status, exc.body(), exc.headers)
        except Exception as exc:  # pragma: no cover - defensive
            return Reply(500, {"error": "InternalServerError", "description": f"{type(exc).__name__}: {exc}"})

    def _match_script(self, method: str, path: str) -> ScriptedResponse | None:
        for scripted in reversed(self._responses):
            if scripted.method not in ("*", method.upper()):
                continue
            if not scripted.path_regex.fullmatch(path):
                continue
            if scripted.times is not None:
                scripted.times -= 1
                if scripted.times <= 0:
                    self._responses.remove(scripted)
            return scripted
        return None

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: Headers,
        body: bytes,
        parsed: Any,
        base_url: str,
    ) -> Reply:
        if method in ("GET", "HEAD"):
            if path == "/":
                return Reply(
                    200, {"name": "sample-broker", "osb_api_version": "2.17", "catalog": "/v2/catalog"}
                )
            m = _ICON_RE.match(path)
            if m:
                icon = ICON_DIR / f"{m.group(1)}.svg"
                if not icon.is_file():
                    raise BrokerError(404, f"No icon named {m.group(1)!r}")
                return Reply(
                    200,
                    icon.read_bytes(),
                    {"Cache-Control": "public, max-age=3600"},
                    content_type="image/svg+xml",
                )
            m = _DASHBOARD_RE.match(path)
            if m:
                return self._dashboard(m.group(1))
        if not path.startswith("/v2/"):
            raise BrokerError(404, f"No route for {method} {path}")

        self._check_auth(headers)
        self._check_version(headers)

        if path == "/v2/catalog":
            if method not in ("GET", "HEAD"):
                raise BrokerError(405, "Only GET is supported on /v2/catalog")
            return self._get_catalog(headers, base_url)

        if method in ("PUT", "PATCH") and body and not isinstance(parsed, dict):
            raise BrokerError(400, "The request body must be a JSON object")

        with self._lock:
            self._settle()
            m = _INSTANCE_LASTOP_RE.match(path)
            if m and method == "GET":
                return self._instance_last_operation(m.group(1), query)
            m = _BINDING_LASTOP_RE.match(path)
            if m and method == "GET":
                return self._binding_last_operation(m.group(1), m.group(2), query)
            m = _INSTANCE_RE.match(path)
            if m:
                iid = m.group(1)
                if method == "PUT":
                    return self._provision(iid, query, parsed or {}, base_url)
                if method == "PATCH":
                    return self._update(iid, query, parsed or {}, base_url)
                if method == "DELETE":
                    return self._deprovision(iid, query)
                if method == "GET":
                    return self._fetch_instance(iid)
            m = _BINDING_RE.match(path)
            if m:
                iid, bid = m.group(1), m.group(2)
                if method == "PUT":
                    return self._bind_(iid, bid, query, parsed or {}, base_url)
                if method == "DELETE":
                    return self._unbind(iid, bid, query)
                if method == "GET":
                    return self._fetch_binding(iid, bid)
        raise BrokerError(404, f"No route for {method} {path}")

    # ------------------------------------------------------------ checks
    def _check_auth(self, headers: Headers) -> None:
        if self.username is None and self.password is None:
            return
        auth = headers.get("Authorization") or ""
        ok = False
        if auth[:6].lower() == "basic ":
            try:
                user, _, pw = base64.b64decode(auth[6:].strip()).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, pw = "", ""
            ok = hmac.compare_digest(user, self.username or "") and hmac.compare_digest(
                pw, self.password or ""
            )
        if not ok:
            exc = BrokerError(401, "Missing or invalid broker credentials", "Unauthorized")
            exc.headers["WWW-Authenticate"] = 'Basic realm="sample-broker"'
            raise exc

    def _check_version(self, headers: Headers) -> None:
        raw = headers.get(API_VERSION_HEADER)
        want = f"{self.min_api_version[0]}.{self.min_api_version[1]}"
        if not raw:
            raise BrokerError(
                412, f"The {API_VERSION_HEADER} header is required (use {want})", "PreconditionFailed"
            )
        m = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.\d+)?\s*", raw)
        if not m:
            raise BrokerError(
                412, f"Malformed {API_VERSION_HEADER} {raw!r} (use {want})", "PreconditionFailed"
            )
        major, minor = int(m.group(1)), int(m.group(2))
        if major != self.min_api_version[0] or minor < self.min_api_version[1]:
            raise BrokerError(
                412,
                f"Unsupported {API_VERSION_HEADER} {raw!r}: this broker requires {want}",
                "PreconditionFailed",
            )

    # ------------------------------------------------------------ catalog
    def _get_catalog(self, headers: Headers, base_url: str) -> Reply:
        with self._lock:
            catalog = self._catalog_for(base_url)
            mtime = self._catalog_mtime
            etag_support = self.etag_support
        payload = _encode_body(catalog)
        if not etag_support:
            return Reply(200, payload)
        etag = '"' + hashlib.sha256(payload).hexdigest()[:32] + '"'
        last_modified = email.utils.formatdate(int(mtime), usegmt=True)
        extra = {"ETag": etag, "Last-Modified": last_modified, "Cache-Control": "no-cache"}
        inm = headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            if "*" in tags or etag in tags:
                return Reply(304, None, extra)
        else:
            ims = headers.get("If-Modified-Since")
            if ims:
                try:
                    since = email.utils.parsedate_to_datetime(ims).timestamp()
                except (TypeError, ValueError, IndexError):
                    since = None
                if since is not None and int(mtime) <= since:
                    return Reply(304, None, extra)
        return Reply(200, payload, extra)

    # ------------------------------------------------------------ helpers
    def _plan(self, service_id: Any, plan_id: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        if not isinstance(service_id, str) or not service_id:
            raise BrokerError(400, "service_id is required")
        if not isinstance(plan_id, str) or not plan_id:
            raise BrokerError(400, "plan_id is required")
        service, plan = find_plan(self._catalog_for(self.url), service_id, plan_id)
        if service is None:
            raise BrokerError(400, f"Unknown service_id {service_id!r}")
        if plan is None:
            raise BrokerError(400, f"Unknown plan_id {plan_id!r} for service {service_id!r}")
        return service, plan

    def _is_async(self, plan: dict[str, Any]) -> bool:
        if self.async_mode == "always":
            return True
        if self.async_mode == "never":
            return False
        return plan.get("maximum_polling_duration") is not None

    def _new_operation(self, kind: str, instance_id: str, binding_id: str | None = None, **data: Any) -> str:
        token = f"{kind}-{uuid.uuid4().hex[:12]}"
        self.operations[token] = {
            "token": token,
            "kind": kind,
            "instance_id": instance_id,
            "binding_id": binding_id,
            "state": "in progress",
            "started": time.monotonic(),
            "duration": float(self.async_seconds),
            "outcome": self.async_outcome,
            "description": f"{kind.capitalize()} in progress",
            "reported": False,
            **data,
        }
        in_flight = sum(1 for op in self.operations.values() if op["kind"] == kind and not op["reported"])
        self.peak_in_flight[kind] = max(self.peak_in_flight.get(kind, 0), in_flight)
        return token

    def _pending(self, token: str | None) -> dict[str, Any] | None:
        op = self.operations.get(token or "")
        if op is not None and op["state"] == "in progress":
            return op
        return None

    def _settle(self) -> None:
        """Complete every asynchronous operation whose time has come."""
        now = time.monotonic()
        for op in self.operations.values():
            if op["state"] != "in progress" or now - op["started"] < op["duration"]:
                continue
            ok = op["outcome"] != "failed"
            op["state"] = "succeeded" if ok else "failed"
            kind = op["kind"]
            op["description"] = f"{kind.capitalize()} {'succeeded' if ok else 'failed'}"
            inst = self.instances.get(op["instance_id"])
            binding = self.bindings.get(op["binding_id"] or "")
            if kind == "provision" and inst is not None:
                inst["state"] = op["state"]
            elif kind == "update" and inst is not None:
                inst["state"] = "succeeded"
                if ok or self.failed_update_applies:
                    inst.update(op["changes"])
            elif kind == "deprovision" and inst is not None:
                inst["state"] = "succeeded"
                if ok:
                    self._drop_instance(op["instance_id"])
            elif kind == "bind" and binding is not None:
                binding["state"] = op["state"]
            elif kind == "unbind" and binding is not None:
                binding["state"] = "succeeded"
                if ok:
                    self.bindings.pop(op["binding_id"], None)

    def _drop_instance(self, iid: str) -> None:
        self.instances.pop(iid, None)
        for bid in [b for b, v in self.bindings.items() if v["instance_id"] == iid]:
            del self.bindings[bid]

    def _check_maintenance(self, plan: dict[str, Any], body: dict[str, Any]) -> None:
        wanted = body.get("maintenance_info")
        if not isinstance(wanted, dict) or "version" not in wanted:
            return
        offered = plan.get("maintenance_info")
        if not isinstance(offered, dict) or offered.get("version") != wanted["version"]:
            raise BrokerError(
                422,
                "The maintenance information for the requested Service Plan has changed.",
                "MaintenanceInfoConflict",
            )

    def _async_required(self) -> BrokerError:
        return BrokerError(
            422,
            "This Service Plan requires client support for asynchronous service operations.",
            "AsyncRequired",
        )

    @staticmethod
    def _concurrency(what: str) -> BrokerError:
        return BrokerError(422, f"Another operation for this {what} is in progress.", "ConcurrencyError")

    def _instance_metadata(self, iid: str, service: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        return {
            "labels": {"service": str(service.get("name")), "plan": str(plan.get("name"))},
            "attributes": {"sample-broker/instance-id": iid},
        }

    # ------------------------------------------------------------ instances
    def _provision(self, iid: str, query: dict[str, str], body: dict[str, Any], base_url: str) -> Reply:
        service, plan = self._plan(body.get("service_id"), body.get("plan_id"))
        params = body.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BrokerError(400, "parameters must be a JSON object")
        context = body.get("context") or {}
        existing = self.instances.get(iid)
        if existing is not None:
            same = (
                existing["service_id"] == service["id"]
                and existing["plan_id"] == plan["id"]
                and existing["parameters"] == params
            )
            if not same:
                raise BrokerError(
                    409, f"Service instance {iid} already exists with different attributes", "Conflict"
                )
            op = self._pending(existing.get("operation"))
            if op is not None and op["kind"] == "provision":
                return Reply(202, {"dashboard_url": existing["dashboard_url"], "operation": op["token"]})
            return Reply(200, {"dashboard_url": existing["dashboard_url"]})
        _validate(plan, ("schemas", "service_instance", "create"), params, "service instance create")
        self._check_maintenance(plan, body)
        is_async = self._is_async(plan)
        accepts = _bool_param(query, "accepts_incomplete")
        if is_async and not accepts:
            raise self._async_required()
        dashboard_url = f"{base_url}/dashboard/{iid}"
        instance = {
            "instance_id": iid,
            "service_id": service["id"],
            "plan_id": plan["id"],
            "parameters": params,
            "context": context,
            "organization_guid": body.get("organization_guid"),
            "space_guid": body.get("space_guid"),
            "maintenance_info": copy.deepcopy(plan.get("maintenance_info")),
            "dashboard_url": dashboard_url,
            "metadata": self._instance_metadata(iid, service, plan),
            "created_at": time.time(),
            "state": "succeeded",
            "operation": None,
        }
        self.instances[iid] = instance
        if is_async:
            token = self._new_operation("provision", iid)
            instance["state"] = "in progress"
            instance["operation"] = token
            return Reply(202, {"dashboard_url": dashboard_url, "operation": token})
        return Reply(201, {"dashboard_url": dashboard_url, "metadata": instance["metadata"]})

    def _update(self, iid: str, query: dict[str, str], body: dict[str, Any], base_url: str) -> Reply:
        service_id = body.get("service_id")
        if not isinstance(service_id, str) or not service_id:
            raise BrokerError(400, "service_id is required")
        inst = self.instances.get(iid)
        if inst is None:
            raise BrokerError(404, f"Service instance {iid} does not exist")
        if service_id != inst["service_id"]:
            raise BrokerError(400, "service_id does not match the service instance")
        new_plan_id = body.get("plan_id") or inst["plan_id"]
        service, plan = self._plan(service_id, new_plan_id)
        pending = self._pending(inst.get("operation"))
        if pending is not None:
            if pending["kind"] == "update" and pending.get("request") == body:
                return Reply(202, {"operation": pending["token"]})
            raise self._concurrency("service instance")
        if (
            inst["state"] == "failed"
            and self.operations.get(inst.get("operation") or "", {}).get("kind") == "provision"
        ):
            raise BrokerError(
                422, "The service instance failed to provision and cannot be updated", "InstanceFailed"
            )
        if new_plan_id != inst["plan_id"]:
            _, old_plan = self._plan(service_id, inst["plan_id"])
            if not _is_updateable(service, old_plan):
                raise BrokerError(
                    422,
                    f"Plan changes are not supported for plan {old_plan.get('name')!r}",
                    "PlanChangeNotSupported",
                    update_repeatable=False,
                )
        changes: dict[str, Any] = {"plan_id": new_plan_id}
        if "parameters" in body and body["parameters"] is not None:
            params = body["parameters"]
            if not isinstance(params, dict):
                raise BrokerError(400, "parameters must be a JSON object")
            _validate(plan, ("schemas", "service_instance", "update"), params, "service instance update")
            changes["parameters"] = {**inst["parameters"], **params}
        if isinstance(body.get("context"), dict):
            changes["context"] = body["context"]
        self._check_maintenance(plan, body)
        if isinstance(body.get("maintenance_info"), dict) or new_plan_id != inst["plan_id"]:
            changes["maintenance_info"] = copy.deepcopy(plan.get("maintenance_info"))
        changes["metadata"] = self._instance_metadata(iid, service, plan)
        old_plan = find_plan(self._catalog_for(self.url), service_id, inst["plan_id"])[1] or {}
        is_async = self._is_async(plan) or self._is_async(old_plan)
        if is_async:
            if not _bool_param(query, "accepts_incomplete"):
                raise self._async_required()
            token = self._new_operation("update", iid, changes=changes, request=body)
            inst["state"] = "in progress"
            inst["operation"] = token
            return Reply(202, {"dashboard_url": inst["dashboard_url"], "operation": token})
        inst.update(changes)
        return Reply(200, {"dashboard_url": inst["dashboard_url"], "metadata": inst["metadata"]})

    def _deprovision(self, iid: str, query: dict[str, str]) -> Reply:
        service_id, plan_id = query.get("service_id"), query.get("plan_id")
        if not service_id or not plan_id:
            raise BrokerError(400, "service_id and plan_id query parameters are required")
        inst = self.instances.get(iid)
        if inst is None:
            raise BrokerError(410, f"Service instance {iid} does not exist", "Gone")
        pending = self._pending(inst.get("operation"))
        if pending is not None:
            if pending["kind"] == "deprovision":
                return Reply(202, {"operation": pending["token"]})
            raise self._concurrency("service instance")
        _, plan = find_plan(self._catalog_for(self.url), inst["service_id"], inst["plan_id"])
        if plan is not None and self._is_async(plan):
            if not _bool_param(query, "accepts_incomplete"):
                raise self._async_required()
            token = self._new_operation("deprovision", iid)
            inst["state"] = "in progress"
            inst["operation"] = token
            return Reply(202, {"operation": token})
        self._drop_instance(iid)
        return Reply(200, {})

    def _fetch_instance(self, iid: str) -> Reply:
        inst = self.instances.get(iid)
        if inst is None:
            raise BrokerError(404, f"Service instance {iid} does not exist")
        pending = self._pending(inst.get("operation"))
        if pending is not None and pending["kind"] == "provision":
            raise BrokerError(404, f"Service instance {iid} is still being provisioned")
        if pending is not None and pending["kind"] == "update":
            raise self._concurrency("service instance")
        out: dict[str, Any] = {
            "service_id": inst["service_id"],
            "plan_id": inst["plan_id"],
            "dashboard_url": inst["dashboard_url"],
            "parameters": inst["parameters"],
            "metadata": inst["metadata"],
        }
        if inst.get("maintenance_info"):
            out["maintenance_info"] = inst["maintenance_info"]
        return Reply(200, out)

    def _last_operation_reply(self, op: dict[str, Any]) -> Reply:
        out: dict[str, Any] = {"state": op["state"], "description": op["description"]}
        if op["state"] != "in progress":
            op["reported"] = True
        if op["state"] == "failed" and op["kind"] in ("update", "deprovision"):
            out["instance_usable"] = True
        if op["state"] == "failed" and op["kind"] == "update":
            out["update_repeatable"] = True
        headers = {"Retry-After": "1"} if op["state"] == "in progress" else {}
        return Reply(200, out, headers)

    def _instance_last_operation(self, iid: str, query: dict[str, str]) -> Reply:
        token = query.get("operation")
        op = self.operations.get(token) if token else None
        if token and (op is None or op["instance_id"] != iid or op["binding_id"] is not None):
            raise BrokerError(400, f"Unknown operation {token!r} for service instance {iid}")
        inst = self.instances.get(iid)
        if inst is None:
            if op is None:
                gone = any(
                    o["kind"] == "deprovision" and o["instance_id"] == iid and o["state"] == "succeeded"
                    for o in self.operations.values()
                )
                if not gone:
                    raise BrokerError(404, f"Service instance {iid} does not exist")
            raise BrokerError(410, f"Service instance {iid} has been deleted", "Gone")
        if op is None:
            op = self.operations.get(inst.get("operation") or "")
        if op is None:
            return Reply(200, {"state": inst["state"], "description": "No asynchronous operation"})
        return self._last_operation_reply(op)

    # ------------------------------------------------------------ bindings
    def _binding_credentials(self, iid: str, bid: str, service: dict[str, Any]) -> dict[str, Any]:
        name = str(service.get("name") or "service")
        scheme, port = CREDENTIAL_PROFILES.get(name, ("https", 443))
        host = f"{iid[:8]}.{name}.sample-broker.internal"
        username = f"u_{bid.replace('-', '')[:12]}"
        password = secrets.token_urlsafe(18)
        path = f"/db_{iid.replace('-', '')[:8]}" if scheme in ("postgres", "clickhouse") else ""
        return {
            "uri": f"{scheme}://{username}:{password}@{host}:{port}{path}",
            "username": username,
            "password": password,
            "host": host,
            "port": port,
        }

    def _bind_(self, iid: str, bid: str, query: dict[str, str], body: dict[str, Any], base_url: str) -> Reply:
        service, plan = self._plan(body.get("service_id"), body.get("plan_id"))
        inst = self.instances.get(iid)
        if inst is None:
            raise BrokerError(404, f"Service instance {iid} does not exist")
        params = body.get("parameters", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BrokerError(400, "parameters must be a JSON object")
        bind_resource = body.get("bind_resource") or (
            {"app_guid": body["app_guid"]} if body.get("app_guid") else {}
        )
        predecessor = body.get("predecessor_binding_id")
        existing = self.bindings.get(bid)
        if existing is not None:
            same = (
                existing["instance_id"] == iid
                and existing["service_id"] == service["id"]
                and existing["plan_id"] == plan["id"]
                and existing["parameters"] == params
                and existing["bind_resource"] == bind_resource
                and existing.get("predecessor_binding_id") == predecessor
            )
            if not same:
                raise BrokerError(
                    409, f"Service binding {bid} already exists with different attributes", "Conflict"
                )
            op = self._pending(existing.get("operation"))
            if op is not None and op["kind"] == "bind":
                return Reply(202, {"operation": op["token"]})
            return Reply(200, self._binding_response(existing))
        if self._pending(inst.get("operation")) is not None:
            raise self._concurrency("service instance")
        if inst["state"] == "failed":
            raise BrokerError(422, f"Service instance {iid} is not usable", "InstanceNotUsable")
        if not _is_bindable(service, plan):
            raise BrokerError(400, f"Plan {plan.get('name')!r} is not bindable", "NotBindable")
        _validate(plan, ("schemas", "service_binding", "create"), params, "service binding create")
        if predecessor is not None:
            if plan.get("binding_rotatable") is not True:
                raise BrokerError(400, f"Plan {plan.get('name')!r} does not allow binding rotation "
                                       "(binding_rotatable is not true)")
            old = self.bindings.get(str(predecessor))
            if old is None or old["instance_id"] != iid:
                raise BrokerError(400, f"predecessor_binding_id {predecessor} is not a binding of instance {iid}")
        now = time.time()
        binding: dict[str, Any] = {
            "binding_id": bid,
            "instance_id": iid,
            "service_id": service["id"],
            "plan_id": plan["id"],
            "parameters": params,
            "context": body.get("context") or {},
            "bind_resource": bind_resource,
            "credentials": self._binding_credentials(iid, bid, service),
            "created_at": now,
            "state": "succeeded",
            "operation": None,
            "predecessor_binding_id": predecessor,
        }
        metadata = {}
        if self.binding_expires_seconds is not None:
            metadata["expires_at"] = _timestamp(now + self.binding_expires_seconds)
        if self.binding_renew_seconds is not None:
            metadata["renew_before"] = _timestamp(now + self.binding_renew_seconds)
        if metadata:
            binding["metadata"] = metadata
        if "syslog_drain" in (service.get("requires") or []):
            binding["syslog_drain_url"] = f"syslog-tls://{iid[:8]}.logs.sample-broker.internal:6514"
        self.bindings[bid] = binding
        if self._is_async(plan) and _bool_param(query, "accepts_incomplete"):
            token = self._new_operation("bind", iid, bid)
            binding["state"] = "in progress"
            binding["operation"] = token
            return Reply(202, {"operation": token})
        return Reply(201, self._binding_response(binding))

    @staticmethod
    def _binding_response(binding: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"credentials": binding["credentials"]}
        if binding.get("metadata"):
            out["metadata"] = binding["metadata"]
        if binding.get("syslog_drain_url"):
            out["syslog_drain_url"] = binding["syslog_drain_url"]
        return out

    def _unbind(self, iid: str, bid: str, query: dict[str, str]) -> Reply:
        if not query.get("service_id") or not query.get("plan_id"):
            raise BrokerError(400, "service_id and plan_id query parameters are required")
        binding = self.bindings.get(bid)
        if binding is None or binding["instance_id"] != iid:
            raise BrokerError(410, f"Service binding {bid} does not exist", "Gone")
        pending = self._pending(binding.get("operation"))
        if pending is not None:
            if pending["kind"] == "unbind":
                return Reply(202, {"operation": pending["token"]})
            raise self._concurrency("service binding")
        _, plan = find_plan(self._catalog_for(self.url), binding["service_id"], binding["plan_id"])
        if plan is not None and self._is_async(plan) and _bool_param(query, "accepts_incomplete"):
            token = self._new_operation("unbind", iid, bid)
            binding["state"] = "in progress"
            binding["operation"] = token
            return Reply(202, {"operation": token})
        del self.bindings[bid]
        return Reply(200, {})

    def _fetch_binding(self, iid: str, bid: str) -> Reply:
        binding = self.bindings.get(bid)
        if binding is None or binding["instance_id"] != iid:
            raise BrokerError(404, f"Service binding {bid} does not exist")
        pending = self._pending(binding.get("operation"))
        if pending is not None and pending["kind"] == "bind":
            raise BrokerError(404, f"Service binding {bid} is still being created")
        out = self._binding_response(binding)
        out["parameters"] = binding["parameters"]
        return Reply(200, out)

    def _binding_last_operation(self, iid: str, bid: str, query: dict[str, str]) -> Reply:
        token = query.get("operation")
        op = self.operations.get(token) if token else None
        if token and (op is None or op["binding_id"] != bid):
            raise BrokerError(400, f"Unknown operation {token!r} for service binding {bid}")
        binding = self.bindings.get(bid)
        if binding is None or binding["instance_id"] != iid:
            if op is None:
                gone = any(
                    o["kind"] == "unbind" and o["binding_id"] == bid and o["state"] == "succeeded"
                    for o in self.operations.values()
                )
                if not gone:
                    raise BrokerError(404, f"Service binding {bid} does not exist")
            raise BrokerError(410, f"Service binding {bid} has been deleted", "Gone")
        if op is None:
            op = self.operations.get(binding.get("operation") or "")
        if op is None:
            return Reply(200, {"state": binding["state"], "description": "No asynchronous operation"})
        return self._last_operation_reply(op)

    # ------------------------------------------------------------ dashboard
    def _dashboard(self, iid: str) -> Reply:
        with self._lock:
            self._settle()
            inst = copy.deepcopy(self.instances.get(iid))
        if inst is None:
            raise BrokerError(404, f"Service instance {iid} does not exist")
        rows = "".join(
            f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(json.dumps(v))}</code></td></tr>"
            for k, v in inst.items()
            if k in ("service_id", "plan_id", "parameters", "state")
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Instance dashboard</title></head>"
            f"<body><h1>Service instance {html.escape(iid)}</h1><table>{rows}</table></body></html>"
        )
        return Reply(200, page, content_type="text/html; charset=utf-8")

    # ------------------------------------------------------------ control
    def _control(self, method: str, path: str, headers: Headers, body: bytes, parsed: Any) -> Reply:
        what = path[len(CONTROL_PREFIX) :].strip("/")
        if what == "catalog" and method in ("POST", "PUT"):
            ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            self.catalog = (
                parsed if (ctype in ("", "application/json") and isinstance(parsed, dict)) else body
            )
            return Reply(200, {"ok": True})
        if what == "catalog" and method == "DELETE":
            self.catalog = None
            return Reply(200, {"ok": True})
        if what == "catalog" and method == "GET":
            return Reply(200, _encode_body(self.catalog))
        if what == "responses" and method == "POST":
            if not isinstance(parsed, dict) or "path" not in parsed or "status" not in parsed:
                raise BrokerError(400, "Expected a JSON object with at least 'path' and 'status'")
            try:
                self.set_response(
                    parsed.get("method", "*"),
                    parsed["path"],
                    int(parsed["status"]),
                    body=parsed.get("body"),
                    headers=parsed.get("headers"),
                    times=parsed.get("times"),
                    delay=float(parsed.get("delay") or 0.0),
                )
            except (re.error, TypeError, ValueError) as exc:
                raise BrokerError(400, f"Invalid scripted response: {exc}") from exc
            return Reply(201, {"ok": True})
        if what == "responses" and method == "DELETE":
            self.clear_responses()
            return Reply(200, {"ok": True})
        if what == "requests" and method == "GET":
            return Reply(200, [r.to_dict() for r in self.requests])
        if what == "requests" and method == "DELETE":
            self.clear_requests()
            return Reply(200, {"ok": True})
        if what == "settings" and method == "POST":
            if not isinstance(parsed, dict):
                raise BrokerError(400, "Expected a JSON object")
            with self._lock:
                if "async_seconds" in parsed:
                    self.async_seconds = float(parsed["async_seconds"])
                if "etag_support" in parsed:
                    self.etag_support = bool(parsed["etag_support"])
                if "async_outcome" in parsed:
                    self.async_outcome = str(parsed["async_outcome"])
                if "async_mode" in parsed:
                    self.async_mode = str(parsed["async_mode"])
                for knob in ("binding_expires_seconds", "binding_renew_seconds"):
                    if knob in parsed:
                        setattr(self, knob, None if parsed[knob] is None else float(parsed[knob]))
            return Reply(200, self._settings())
        if what == "settings" and method == "GET":
            return Reply(200, self._settings())
        if what == "state" and method == "GET":
            with self._lock:
                self._settle()
                return Reply(200, {"instances": self.instances, "bindings": self.bindings,
                                   "peak_in_flight": self.peak_in_flight})
        if what == "reset" and method == "POST":
            self.reset()
            return Reply(200, {"ok": True})
        raise BrokerError(404, f"Unknown control endpoint {method} {path}")

    def _settings(self) -> dict[str, Any]:
        return {
            "async_seconds": self.async_seconds,
            "etag_support": self.etag_support,
            "async_outcome": self.async_outcome,
            "async_mode": self.async_mode,
            "binding_expires_seconds": self.binding_expires_seconds,
            "binding_renew_seconds": self.binding_renew_seconds,
        }
