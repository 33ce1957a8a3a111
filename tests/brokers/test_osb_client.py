"""Tests for brokers.osb: a pure library, exercised against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from brokers.osb import (
    BasicAuth,
    BearerAuth,
    BindingLastOperationRequest,
    BindRequest,
    BindResponse,
    CallRecord,
    CatalogRequest,
    DeprovisionRequest,
    FetchBindingRequest,
    FetchInstanceRequest,
    LastOperationRequest,
    OriginatingIdentity,
    OSBAsyncRequired,
    OSBBadRequest,
    OSBClient,
    OSBConcurrencyError,
    OSBConflict,
    OSBConnectionError,
    OSBError,
    OSBGone,
    OSBMaintenanceInfoConflict,
    OSBMalformedResponse,
    OSBNotFound,
    OSBRequiresApp,
    OSBServerError,
    OSBTimeout,
    OSBUnauthorized,
    OSBUnprocessable,
    ProvisionRequest,
    ReadTimeouts,
    UnbindRequest,
    UpdateRequest,
    parse_retry_after,
    redact,
)
from brokers.osb.client import redact_text

# --------------------------------------------------------------------------- a scripted broker


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list -> JSON, str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang_up: bool = False  # close the connection without answering


@dataclass
class Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.raw_path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.raw_path).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


class Broker:
    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        broker = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                broker.received.append(
                    Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                reply = broker.replies.popleft() if broker.replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.hang_up:
                    self.close_connection = True
                    return
                if isinstance(reply.body, bytes):
                    payload = reply.body
                elif isinstance(reply.body, str):
                    payload = reply.body.encode()
                else:
                    payload = json.dumps(reply.body).encode()
                if reply.status == 304:
                    payload = b""
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # e.g. the client hung up on a sleeping handler

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reply(self, status: int = 200, body: Any = None, **kwargs: Any) -> None:
        self.replies.append(Reply(status, {} if body is None else body, **kwargs))

    @property
    def last(self) -> Received:
        return self.received[-1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def _server() -> Iterator[Broker]:
    broker = Broker()
    yield broker
    broker.stop()


@pytest.fixture
def broker(_server: Broker) -> Broker:
    _server.replies.clear()
    _server.received.clear()
    return _server


@pytest.fixture
def client(broker: Broker) -> Iterator[OSBClient]:
    with OSBClient(broker.url, auth=BasicAuth("platform", "s3cr3t-pw")) as c:
        yield c


CATALOG = {
    "services": [
        {"id": "svc-1", "name": "pg", "plans": [{"id": "p1"}, {"id": "p2"}]},
        {"id": "svc-2", "name": "redis", "plans": [{"id": "p3"}]},
    ]
}
CONTEXT = {"platform": "kubernetes", "namespace": "team-a"}
IDENTITY = OriginatingIdentity("duke", "c2dde242", ("admin", "dev"), {"mydata": ["data1", "data3"]})


def call_everything(c: OSBClient, broker: Broker) -> None:
    """One call per endpoint, each answered with a minimal valid body."""
    broker.reply(200, CATALOG)
    c.send(CatalogRequest())
    broker.reply(201, {})
    c.send(ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o", space_guid="sp"))
    broker.reply(200, {})
    c.send(UpdateRequest(instance_id="i1", service_id="s"))
    broker.reply(200, {"state": "succeeded"})
    c.send(LastOperationRequest(instance_id="i1"))
    broker.reply(200, {})
    c.send(FetchInstanceRequest(instance_id="i1"))
    broker.reply(201, {})
    c.send(BindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    broker.reply(200, {"state": "in progress"})
    c.send(BindingLastOperationRequest(instance_id="i1", binding_id="b1"))
    broker.reply(200, {})
    c.send(FetchBindingRequest(instance_id="i1", binding_id="b1"))
    broker.reply(200, {})
    c.send(UnbindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    broker.reply(200, {})
    c.send(DeprovisionRequest(instance_id="i1", service_id="s", plan_id="p"))


# --------------------------------------------------------------------------- headers


def test_headers_on_every_call(client: OSBClient, broker: Broker) -> None:
    call_everything(client, broker)
    assert len(broker.received) == 10
    expected_auth = "Basic " + base64.b64encode(b"platform:s3cr3t-pw").decode()
    ids = set()
    for req in broker.received:
        assert req.headers["x-broker-api-version"] == "2.17"
        assert req.headers["accept"] == "application/json"
        assert req.headers["authorization"] == expected_auth
        ids.add(str(uuid.UUID(req.headers["x-broker-api-request-identity"])))
        assert "x-broker-api-originating-identity" not in req.headers
        if req.method in ("PUT", "PATCH"):
            assert req.headers["content-type"] == "application/json"
        else:
            assert "content-type" not in req.headers
            assert req.body == b""
    assert len(ids) == 10  # fresh per request


def test_prepare_shows_what_send_puts_on_the_wire_with_secrets_masked(client: OSBClient, broker: Broker) -> None:
    request = ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o",
                               space_guid="sp", parameters={"size": 2, "name": "ünïcode"})
    prepared = client.prepare(request, identity=IDENTITY, mask="•••")
    assert broker.received == []  # nothing sent
    broker.reply(201, {})
    client.send(request, identity=IDENTITY)
    sent = broker.last
    assert prepared.method == sent.method == "PUT"
    assert prepared.url == broker.url + sent.raw_path
    assert prepared.body == sent.body == request.content()
    assert prepared.headers["Authorization"] == "Basic •••" and "s3cr3t" not in str(prepared)
    for name, value in prepared.headers.items():
        if name not in ("Authorization", "X-Broker-API-Request-Identity"):  # the identity is fresh per call
            assert sent.headers[name.lower()] == value, name
    assert {name.lower() for name in prepared.headers} | {"host", "content-length", "accept-encoding",
                                                          "connection"} == set(sent.headers)
    assert client.prepare(DeprovisionRequest(instance_id="i1", service_id="s", plan_id="p")).body is None


def test_bearer_auth_and_no_auth(broker: Broker) -> None:
    with OSBClient(broker.url, auth=BearerAuth("tok-123")) as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
    assert broker.last.headers["authorization"] == "Bearer tok-123"
    with OSBClient(broker.url) as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
    assert "authorization" not in broker.last.headers


def test_api_version_is_configurable(broker: Broker) -> None:
    with OSBClient(broker.url, api_version="2.16") as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
    assert broker.last.headers["x-broker-api-version"] == "2.16"


def test_originating_identity_round_trip(client: OSBClient, broker: Broker) -> None:
    broker.reply(202, {"operation": "op"})
    client.send(ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o", space_guid="sp"), identity=IDENTITY)
    platform, value = broker.last.headers["x-broker-api-originating-identity"].split(" ")
    assert platform == "kubernetes"
    assert json.loads(base64.b64decode(value)) == {
        "username": "duke",
        "uid": "c2dde242",
        "groups": ["admin", "dev"],
        "extra": {"mydata": ["data1", "data3"]},
    }
    for call in (
        lambda: client.send(UpdateRequest(instance_id="i1", service_id="s"), identity=IDENTITY),
        lambda: client.send(DeprovisionRequest(instance_id="i1", service_id="s", plan_id="p"), identity=IDENTITY),
        lambda: client.send(BindRequest(instance_id="i1", binding_id="b", service_id="s", plan_id="p"), identity=IDENTITY),
        lambda: client.send(UnbindRequest(instance_id="i1", binding_id="b", service_id="s", plan_id="p"), identity=IDENTITY),
    ):
        broker.reply(200, {})
        call()
        assert broker.last.headers["x-broker-api-originating-identity"].startswith("kubernetes ")


# --------------------------------------------------------------------------- URLs


def test_odd_ids_are_percent_encoded(client: OSBClient, broker: Broker) -> None:
    instance_id, binding_id = "a/b c?x=1#é%", "../b&d"
    broker.reply(200, {"state": "failed"})
    client.send(BindingLastOperationRequest(instance_id=instance_id, binding_id=binding_id, operation="op/1 &x=y"))
    req = broker.last
    parts = urlsplit(req.raw_path).path.split("/")
    assert parts[:3] == ["", "v2", "service_instances"]
    assert unquote(parts[3]) == instance_id
    assert parts[4] == "service_bindings"
    assert unquote(parts[5]) == binding_id
    assert parts[6] == "last_operation"
    assert req.query == {"operation": ["op/1 &x=y"]}


@pytest.mark.parametrize("suffix", ["/prefix", "/prefix/", "/a/b/"])
def test_base_url_path_prefix(broker: Broker, suffix: str) -> None:
    records: list[CallRecord] = []
    with OSBClient(broker.url + suffix, recorder=records.append) as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
        broker.reply(200, {"state": "succeeded"})
        c.send(LastOperationRequest(instance_id="i 1", service_id="s"))
    prefix = suffix.rstrip("/")
    assert broker.received[0].raw_path == f"{prefix}/v2/catalog"
    assert broker.received[1].path == f"{prefix}/v2/service_instances/i%201/last_operation"
    assert records[1].path == f"{prefix}/v2/service_instances/i%201/last_operation?service_id=s"


@pytest.mark.parametrize("url", ["ftp://h/x", "not a url", "http://user:pw@h/", "http://h/?x=1", "/relative"])
def test_bad_base_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        OSBClient(url)


def test_empty_ids_are_rejected(client: OSBClient) -> None:
    with pytest.raises(ValueError, match="instance_id"):
        client.send(FetchInstanceRequest(instance_id=""))


# --------------------------------------------------------------------------- request shapes


def test_provision_full_body_and_query(client: OSBClient, broker: Broker) -> None:
    broker.reply(201, {"dashboard_url": "https://dash/x", "metadata": {"labels": {"a": "b"}}})
    result = client.send(ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o", space_guid="sp", parameters={"size": 3}, maintenance_version="2.1.1"))
    req = broker.last
    assert req.method == "PUT"
    assert req.path == "/v2/service_instances/i1"
    assert req.query == {"accepts_incomplete": ["true"]}
    assert req.json() == {
        "service_id": "s",
        "plan_id": "p",
        "context": CONTEXT,
        "organization_guid": "o",
        "space_guid": "sp",
        "parameters": {"size": 3},
        "maintenance_info": {"version": "2.1.1"},
    }
    assert result.status == 201
    assert result.async_ is False
    assert result.operation is None
    assert result.dashboard_url == "https://dash/x"
    assert result.metadata == {"labels": {"a": "b"}}


def test_provision_minimal_body_has_no_nulls(client: OSBClient, broker: Broker) -> None:
    broker.reply(202, {"operation": "task 10"})
    result = client.send(ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o", space_guid="sp", accepts_incomplete=False))
    assert set(broker.last.json()) == {"service_id", "plan_id", "context", "organization_guid", "space_guid"}
    assert broker.last.query == {}
    assert (result.status, result.async_, result.operation) == (202, True, "task 10")


def test_update_body(client: OSBClient, broker: Broker) -> None:
    broker.reply(200, {})
    result = client.send(UpdateRequest(instance_id="i1", service_id="s"))
    assert broker.last.method == "PATCH"
    assert broker.last.json() == {"service_id": "s"}
    assert broker.last.query == {"accepts_incomplete": ["true"]}
    assert (result.status, result.async_, result.operation, result.dashboard_url) == (200, False, None, None)

    broker.reply(202, {"operation": "up-1", "dashboard_url": "https://d"})
    result = client.send(UpdateRequest(instance_id="i1", service_id="s", plan_id="p2", context=CONTEXT, parameters={"a": 1}, previous_plan_id="p1", maintenance_version="2"))
    assert broker.last.json() == {
        "service_id": "s",
        "plan_id": "p2",
        "context": CONTEXT,
        "parameters": {"a": 1},
        "previous_values": {"service_id": "s", "plan_id": "p1"},
        "maintenance_info": {"version": "2"},
    }
    assert (result.async_, result.operation, result.dashboard_url) == (True, "up-1", "https://d")


def test_deprovision_query_no_body(client: OSBClient, broker: Broker) -> None:
    broker.reply(202, {"operation": "del-1"})
    result = client.send(DeprovisionRequest(instance_id="i1", service_id="s 1", plan_id="p&1"))
    req = broker.last
    assert (req.method, req.path, req.body) == ("DELETE", "/v2/service_instances/i1", b"")
    assert req.query == {"service_id": ["s 1"], "plan_id": ["p&1"], "accepts_incomplete": ["true"]}
    assert (result.status, result.async_, result.operation) == (202, True, "del-1")


def test_deprovision_accepts_empty_body(client: OSBClient, broker: Broker) -> None:
    broker.reply(200, b"")
    result = client.send(DeprovisionRequest(instance_id="i1", service_id="s", plan_id="p", accepts_incomplete=False))
    assert (result.status, result.async_, result.operation) == (200, False, None)
    assert "accepts_incomplete" not in broker.last.query


def test_last_operation_query_and_result(client: OSBClient, broker: Broker) -> None:
    broker.reply(
        200,
        {"state": "failed", "description": "disk full", "instance_usable": False, "update_repeatable": True},
        headers={"Retry-After": "7"},
    )
    result = client.send(LastOperationRequest(instance_id="i1", service_id="s", plan_id="p", operation="op 1"))
    assert broker.last.path == "/v2/service_instances/i1/last_operation"
    assert broker.last.query == {"service_id": ["s"], "plan_id": ["p"], "operation": ["op 1"]}
    assert result.state == "failed"
    assert result.description == "disk full"
    assert result.instance_usable is False
    assert result.update_repeatable is True
    assert result.retry_after == 7.0

    broker.reply(200, {"state": "in progress"})
    result = client.send(LastOperationRequest(instance_id="i1"))
    assert broker.last.query == {}
    assert (result.state, result.retry_after, result.instance_usable) == ("in progress", None, None)


def test_fetch_instance(client: OSBClient, broker: Broker) -> None:
    broker.reply(
        200,
        {
            "service_id": "s",
            "plan_id": "p",
            "dashboard_url": "https://d",
            "parameters": {"x": 1},
            "maintenance_info": {"version": "1"},
            "metadata": {"labels": {}},
            "vendor_extension": 1,
        },
    )
    info = client.send(FetchInstanceRequest(instance_id="i1", service_id="s"))
    assert (broker.last.method, broker.last.path) == ("GET", "/v2/service_instances/i1")
    assert broker.last.query == {"service_id": ["s"]}
    assert (info.service_id, info.plan_id, info.dashboard_url) == ("s", "p", "https://d")
    assert (info.parameters, info.maintenance_info, info.metadata) == (
        {"x": 1},
        {"version": "1"},
        {"labels": {}},
    )


def test_bind_body_and_result(client: OSBClient, broker: Broker) -> None:
    broker.reply(
        201,
        {
            "credentials": {"username": "u", "password": "pw"},
            "syslog_drain_url": "syslog://d",
            "route_service_url": "https://r",
            "volume_mounts": [{"driver": "x"}],
            "endpoints": [{"host": "h", "ports": ["5432"]}],
            "metadata": {"expires_at": "2030-01-01T00:00:00.0Z"},
        },
    )
    result = client.send(BindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p", context=CONTEXT, bind_resource={"app_guid": "app", "route": None}, parameters={"role": "ro"}))
    req = broker.last
    assert (req.method, req.path) == ("PUT", "/v2/service_instances/i1/service_bindings/b1")
    assert req.query == {"accepts_incomplete": ["true"]}
    assert req.json() == {
        "service_id": "s",
        "plan_id": "p",
        "context": CONTEXT,
        "bind_resource": {"app_guid": "app"},
        "parameters": {"role": "ro"},
    }
    assert result.status == 201 and not result.async_
    assert result.credentials == {"username": "u", "password": "pw"}
    assert result.syslog_drain_url == "syslog://d"
    assert result.route_service_url == "https://r"
    assert result.volume_mounts == [{"driver": "x"}]
    assert result.endpoints == [{"host": "h", "ports": ["5432"]}]
    assert result.metadata == {"expires_at": "2030-01-01T00:00:00.0Z"}

    broker.reply(202, {"operation": "bind-op"})
    result = client.send(BindRequest(instance_id="i1", binding_id="b2", service_id="s", plan_id="p"))
    assert broker.last.json() == {"service_id": "s", "plan_id": "p"}
    assert (result.async_, result.operation, result.credentials) == (True, "bind-op", None)


def test_unbind_binding_last_operation_fetch_binding(client: OSBClient, broker: Broker) -> None:
    broker.reply(202, {"operation": "u1"})
    result = client.send(UnbindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    req = broker.last
    assert (req.method, req.path, req.body) == ("DELETE", "/v2/service_instances/i1/service_bindings/b1", b"")
    assert req.query == {"service_id": ["s"], "plan_id": ["p"], "accepts_incomplete": ["true"]}
    assert (result.async_, result.operation) == (True, "u1")

    broker.reply(200, {"state": "succeeded", "description": "done"})
    op = client.send(BindingLastOperationRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    assert broker.last.path == "/v2/service_instances/i1/service_bindings/b1/last_operation"
    assert broker.last.query == {"service_id": ["s"], "plan_id": ["p"]}
    assert (op.state, op.description) == ("succeeded", "done")

    broker.reply(200, {"credentials": {"token": "t"}, "parameters": {"a": 1}})
    info = client.send(FetchBindingRequest(instance_id="i1", binding_id="b1", plan_id="p"))
    assert (broker.last.method, broker.last.path) == ("GET", "/v2/service_instances/i1/service_bindings/b1")
    assert broker.last.query == {"plan_id": ["p"]}
    assert info.credentials == {"token": "t"}
    assert info.parameters == {"a": 1}


# --------------------------------------------------------------------------- catalog


def test_catalog_200_and_conditional_304(client: OSBClient, broker: Broker) -> None:
    broker.reply(200, CATALOG, headers={"ETag": '"v1"', "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    result = client.send(CatalogRequest())
    assert result.document == CATALOG
    assert (result.etag, result.last_modified, result.not_modified) == (
        '"v1"',
        "Wed, 21 Oct 2015 07:28:00 GMT",
        False,
    )
    assert "if-none-match" not in broker.last.headers

    broker.reply(304, b"", headers={"ETag": '"v1"'})
    result = client.send(CatalogRequest(etag='"v1"', if_modified_since="Wed, 21 Oct 2015 07:28:00 GMT"))
    assert broker.last.headers["if-none-match"] == '"v1"'
    assert broker.last.headers["if-modified-since"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert result.not_modified is True
    assert result.document is None
    assert result.etag == '"v1"'


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("<html>oops</html>", "The broker's catalog is not valid JSON"),
        ([1, 2], "not a JSON object"),
        ({"services": "nope"}, 'no "services" list'),
    ],
)
def test_catalog_garbage_is_permanent(client: OSBClient, broker: Broker, body: Any, match: str) -> None:
    broker.reply(200, body)
    with pytest.raises(OSBMalformedResponse, match=match) as info:
        client.send(CatalogRequest())
    assert info.value.permanent is True
    assert info.value.status == 200


# --------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "body", "cls", "permanent"),
    [
        (400, {"description": "bad"}, OSBBadRequest, True),
        (401, {}, OSBUnauthorized, True),
        (403, {}, OSBUnauthorized, True),
        (404, {}, OSBNotFound, True),
        (409, {}, OSBConflict, True),
        (410, {}, OSBGone, True),
        (412, {"description": "use 2.14"}, OSBError, True),
        (422, {"error": "AsyncRequired"}, OSBAsyncRequired, True),
        (422, {"error": "ConcurrencyError"}, OSBConcurrencyError, False),
        (422, {"error": "RequiresApp"}, OSBRequiresApp, True),
        (422, {"error": "MaintenanceInfoConflict"}, OSBMaintenanceInfoConflict, True),
        (422, {"error": "PlanChangeNotSupported"}, OSBUnprocessable, True),
        (429, {}, OSBError, False),
        (500, {"description": "boom"}, OSBServerError, False),
        (502, "<html>bad gateway</html>", OSBServerError, False),
        (503, b"", OSBServerError, False),
    ],
)
def test_status_to_exception(
    client: OSBClient, broker: Broker, status: int, body: Any, cls: type[OSBError], permanent: bool
) -> None:
    broker.reply(status, body)
    with pytest.raises(OSBError) as info:
        client.send(UpdateRequest(instance_id="i1", service_id="s"))
    exc = info.value
    assert type(exc) is cls
    assert exc.status == status
    assert exc.permanent is permanent
    if isinstance(body, dict):
        assert exc.error == body.get("error")
        assert exc.description == body.get("description")
    assert str(exc).startswith(f"Broker answered {status} ")


def test_error_fields_and_message(client: OSBClient, broker: Broker) -> None:
    broker.reply(
        500,
        {
            "error": "Boom",
            "description": "database on fire",
            "instance_usable": False,
            "update_repeatable": False,
        },
    )
    with pytest.raises(OSBServerError) as info:
        client.send(UpdateRequest(instance_id="i1", service_id="s"))
    exc = info.value
    assert str(exc) == "Broker answered 500 Internal Server Error (Boom): database on fire"
    assert (exc.error, exc.description) == ("Boom", "database on fire")
    assert (exc.instance_usable, exc.update_repeatable) == (False, False)
    assert exc.retry_after is None


def test_deprovision_410_raises_gone(client: OSBClient, broker: Broker) -> None:
    broker.reply(410, {})
    with pytest.raises(OSBGone):
        client.send(DeprovisionRequest(instance_id="i1", service_id="s", plan_id="p"))
    broker.reply(410, {})
    with pytest.raises(OSBGone):
        client.send(LastOperationRequest(instance_id="i1", operation="del"))


def test_a_non_json_error_body_is_summarised_not_quoted(client: OSBClient, broker: Broker) -> None:
    """Only a JSON error object carries the broker's words; a proxy's page or plain text is named, not shown
    (its excerpt stays in the call record)."""
    broker.reply(502, "x" * 1000)
    with pytest.raises(OSBServerError) as info:
        client.send(FetchInstanceRequest(instance_id="i1"))
    assert info.value.description is None and info.value.error is None
    assert str(info.value) == "Broker answered 502 Bad Gateway with a body that is not JSON"

    broker.reply(500, "<!DOCTYPE html><html><body><h1>Oops</h1></body></html>", headers={"Content-Type": "text/html"})
    with pytest.raises(OSBServerError) as info:
        client.send(FetchInstanceRequest(instance_id="i1"))
    assert info.value.description is None
    assert str(info.value) == "Broker answered 500 Internal Server Error with an HTML page"

    broker.reply(503, ["not", "an", "object"])
    with pytest.raises(OSBServerError) as info:
        client.send(FetchInstanceRequest(instance_id="i1"))
    assert str(info.value) == "Broker answered 503 Service Unavailable with JSON that is not an error object"


def test_retry_after_seconds_and_http_date(client: OSBClient, broker: Broker) -> None:
    broker.reply(503, {}, headers={"Retry-After": "120"})
    with pytest.raises(OSBServerError) as info:
        client.send(LastOperationRequest(instance_id="i1"))
    assert info.value.retry_after == 120.0

    when = datetime.now(UTC) + timedelta(seconds=90)
    broker.reply(429, {}, headers={"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(OSBError) as info2:
        client.send(LastOperationRequest(instance_id="i1"))
    assert info2.value.retry_after is not None
    assert 85 <= info2.value.retry_after <= 91
    assert info2.value.permanent is False


def test_parse_retry_after() -> None:
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(" 5 ") == 5.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Mon, 01 Jan 2024 11:00:00 GMT", now=now) == 0.0


def test_redirects_are_not_followed(client: OSBClient, broker: Broker) -> None:
    broker.reply(302, b"", headers={"Location": "http://elsewhere/"})
    with pytest.raises(OSBError) as info:
        client.send(FetchInstanceRequest(instance_id="i1"))
    assert info.value.status == 302
    assert info.value.permanent is True
    assert "redirects are not followed" in str(info.value)
    assert len(broker.received) == 1


# --------------------------------------------------------------------------- malformed 2xx


def provision(c: OSBClient) -> Any:
    return c.send(ProvisionRequest(instance_id="i1", service_id="s", plan_id="p", context=CONTEXT, organization_guid="o", space_guid="sp"))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (201, "not json"),
        (202, [1, 2]),
        (201, b""),
        (202, {"operation": 5}),
        (201, {"dashboard_url": ["x"]}),
        (201, {"metadata": "x"}),
        (204, b""),  # "all other 2xx" are failures
    ],
)
def test_malformed_provision_answers(client: OSBClient, broker: Broker, status: int, body: Any) -> None:
    broker.reply(status, body)
    with pytest.raises(OSBMalformedResponse) as info:
        provision(client)
    assert info.value.status == status
    assert info.value.permanent is False


def test_malformed_bind_answer(client: OSBClient, broker: Broker) -> None:
    broker.reply(201, {"credentials": "user:pw"})
    with pytest.raises(OSBMalformedResponse) as info:
        client.send(BindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    assert info.value.status == 201
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    "body", [{}, {"state": "done"}, {"state": None}, "garbage", {"state": "failed", "instance_usable": "no"}]
)
def test_malformed_last_operation(client: OSBClient, broker: Broker, body: Any) -> None:
    broker.reply(200, body)
    with pytest.raises(OSBMalformedResponse) as info:
        client.send(LastOperationRequest(instance_id="i1"))
    assert info.value.status == 200


# --------------------------------------------------------------------------- network


def test_read_timeout(broker: Broker) -> None:
    records: list[CallRecord] = []
    with OSBClient(broker.url, read_timeouts=ReadTimeouts(provision=0.1), recorder=records.append) as c:
        broker.reply(201, {}, delay=0.6)
        started = time.monotonic()
        with pytest.raises(OSBTimeout) as info:
            provision(c)
    assert time.monotonic() - started < 0.5
    assert str(info.value) == "The broker did not answer within 0.1 s"
    assert info.value.permanent is False
    assert info.value.status is None
    assert records[0].status is None
    assert records[0].error == "The broker did not answer within 0.1 s"


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    records: list[CallRecord] = []
    with (
        OSBClient(f"http://127.0.0.1:{port}/x", recorder=records.append) as c,
        pytest.raises(OSBConnectionError) as info,
    ):
        c.send(CatalogRequest())
    assert str(info.value).startswith(f"Could not connect to the broker at http://127.0.0.1:{port}: ")
    assert info.value.permanent is False
    assert info.value.maybe_delivered is False
    assert records[0].status is None
    assert records[0].path == "/x/v2/catalog"


def test_hang_up_after_request_may_have_been_delivered(client: OSBClient, broker: Broker) -> None:
    broker.reply(hang_up=True)
    with pytest.raises(OSBConnectionError) as info:
        client.send(BindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p"))
    assert info.value.maybe_delivered is True
    assert info.value.permanent is False


def test_explicit_timeouts_per_kind() -> None:
    """A real server cannot show the timeout configuration; MockTransport can."""
    seen: dict[str, dict[str, float]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.extensions["timeout"]
        if request.url.path.endswith("last_operation"):
            return httpx.Response(200, json={"state": "succeeded"})
        return httpx.Response(200, json=CATALOG if request.url.path.endswith("catalog") else {})

    with OSBClient("http://broker", connect_timeout=2.5, transport=httpx.MockTransport(handler)) as c:
        c.send(CatalogRequest())
        c.send(LastOperationRequest(instance_id="i"))
        c.send(FetchInstanceRequest(instance_id="i"))
        c.send(UpdateRequest(instance_id="i", service_id="s"))
    assert seen["/v2/catalog"]["read"] == 30.0
    assert seen["/v2/catalog"]["connect"] == 2.5
    assert seen["/v2/service_instances/i/last_operation"]["read"] == 15.0
    assert seen["/v2/service_instances/i"]["read"] == 60.0  # update came last on this path
    assert all(t["write"] is not None and t["pool"] is not None for t in seen.values())


# --------------------------------------------------------------------------- recording and redaction


def test_recorder_redacts_secrets(broker: Broker) -> None:
    records: list[CallRecord] = []
    secrets = ["brokerpw", "p4ssw0rd", "hunter2", "s3cret-cred", "pw123", "tok-xyz", "privkey-material"]
    with OSBClient(broker.url, auth=BasicAuth("platform", "brokerpw"), recorder=records.append) as c:
        broker.reply(
            201,
            {
                "credentials": {"password": "s3cret-cred", "uri": "mysql://user:pw123@host/db"},
                "syslog_drain_url": "syslog://u:tok-xyz@logs:514",
            },
        )
        bound = c.send(BindRequest(instance_id="i1", binding_id="b1", service_id="s", plan_id="p", parameters={
                "admin_password": "p4ssw0rd",
                "db_url": "postgres://u:hunter2@h/db",
                "ssh": {"private_key": "privkey-material"},
                "size": 3,
            }))
        assert bound.credentials == {"password": "s3cret-cred", "uri": "mysql://user:pw123@host/db"}
        broker.reply(500, '{"description": "bad password=hunter2 for postgres://u:hunter2@h"')
        with pytest.raises(OSBServerError):
            c.send(UpdateRequest(instance_id="i1", service_id="s", parameters={"token": "tok-xyz"}))

    assert len(records) == 2
    blob = repr(records)
    for secret in secrets:
        assert secret not in blob, secret
    assert "Authorization" not in blob and "authorization" not in blob

    bind_record = records[0]
    assert bind_record.method == "PUT"
    assert bind_record.path == "/v2/service_instances/i1/service_bindings/b1?accepts_incomplete=true"
    assert bind_record.status == 201
    assert bind_record.error is None
    assert bind_record.request_id == broker.received[0].headers["x-broker-api-request-identity"]
    assert bind_record.at.tzinfo is not None and bind_record.at.utcoffset() == timedelta(0)
    assert isinstance(bind_record.duration_ms, int) and bind_record.duration_ms >= 0
    request = json.loads(bind_record.request_excerpt)
    assert request["parameters"] == {
        "admin_password": "***",
        "db_url": "postgres://***@h/db",
        "ssh": {"private_key": "***"},
        "size": 3,
    }
    response = json.loads(bind_record.response_excerpt)
    assert response == {"credentials": "***", "syslog_drain_url": "syslog://***@logs:514"}

    error_record = records[1]
    assert error_record.status == 500
    assert error_record.error is not None and error_record.error.startswith("Broker answered 500")
    assert json.loads(error_record.request_excerpt)["parameters"] == {"token": "***"}


def test_recorder_catalog_summary_and_truncation(broker: Broker) -> None:
    records: list[CallRecord] = []
    with OSBClient(broker.url, recorder=records.append) as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
        broker.reply(304, b"")
        c.send(CatalogRequest(etag='"x"'))
        broker.reply(200, {})
        c.send(UpdateRequest(instance_id="i1", service_id="s", parameters={"blob": "y" * 5000}))
    assert records[0].response_excerpt == "2 services, 3 plans"
    assert records[0].request_excerpt == ""
    assert records[1].response_excerpt == "304 Not Modified"
    assert records[1].status == 304
    assert len(records[2].request_excerpt) <= 501
    assert records[2].response_excerpt == "{}"


def test_failing_recorder_does_not_break_the_call(broker: Broker) -> None:
    def recorder(record: CallRecord) -> None:
        raise RuntimeError("db down")

    with OSBClient(broker.url, recorder=recorder) as c:
        broker.reply(200, {"state": "succeeded"})
        assert c.send(LastOperationRequest(instance_id="i1")).state == "succeeded"


def test_redact_helper() -> None:
    data = {
        "password": "x",
        "Secret": "x",
        "api_key": "x",
        "accessToken": "x",
        "credentials": {"a": 1},
        "private": "x",
        "keyring": "kept",
        "uri": "amqp://guest:guest@rabbit:5672/vhost",
        "nested": [{"db_pass": "x", "host": "h"}],
        "n": 1,
    }
    assert redact(data) == {
        "password": "***",
        "Secret": "***",
        "api_key": "***",
        "accessToken": "***",
        "credentials": "***",
        "private": "***",
        "keyring": "kept",
        "uri": "amqp://***@rabbit:5672/vhost",
        "nested": [{"db_pass": "***", "host": "h"}],
        "n": 1,
    }
    assert data["password"] == "x"  # not mutated
    text = redact_text('oops {"password": "abc", token=def, url: https://a:b@h/}')
    assert "abc" not in text and "def" not in text and "a:b@" not in text


def test_reprs_hide_secrets() -> None:
    assert "pw-1" not in repr(BasicAuth("u", "pw-1"))
    assert "u" in repr(BasicAuth("u", "pw-1"))
    assert "tok-1" not in repr(BearerAuth("tok-1"))
    bound = BindResponse(201, False, credentials={"password": "pw-2"}, syslog_drain_url="syslog://a:pw-3@h")
    assert "pw-2" not in repr(bound) and "pw-3" not in repr(bound)


def test_context_manager_closes(broker: Broker) -> None:
    with OSBClient(broker.url) as c:
        broker.reply(200, CATALOG)
        c.send(CatalogRequest())
    with pytest.raises(RuntimeError):
        c.send(CatalogRequest())
