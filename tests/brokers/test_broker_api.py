"""The brokers REST API (API.md "Brokers"): auth, pagination, the contract shape, admin-only writes, syncs."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from brokers import services
from brokers.models import Broker, ServiceOffering, ServicePlan
from catalog_portal.exceptions import ApplicationError
from devtools.sample_broker import SampleBroker, build_catalog
from tests.conftest import BROKER_PASSWORD, BROKER_USER

pytestmark = pytest.mark.django_db

LIST = "/api/v1/brokers/"
CONTRACT_FIELDS = {
    "id", "name", "url", "auth", "verify_tls", "ca_bundle", "relist_interval_seconds", "status",
    "status_message", "last_synced_at", "service_count", "plan_count", "created_at", "updated_at",
}
SECRET = "very-secret-pass-9f3b"
TOKEN_SECRET = "bearer-token-c0ffee-1234"


def detail(broker: Broker | str) -> str:
    return f"{LIST}{getattr(broker, 'pk', broker)}/"


def basic_auth(username: str = BROKER_USER, password: str = BROKER_PASSWORD) -> dict[str, str]:
    return {"type": "basic", "username": username, "password": password}


def register(url: str | None = None, name: str = "test-broker", **kwargs: Any) -> Broker:
    url = url or ("http://127.0.0.1:9/" if name == "test-broker" else f"http://127.0.0.1:9/{name}")
    kwargs.setdefault("auth", services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD))
    return services.broker_register(name=name, url=url, **kwargs)


def sync(broker: Broker) -> None:
    assert services.catalog_sync(broker_id=broker.pk, force=True) is not None
    broker.refresh_from_db()


def assert_no_secret(response: Any, *secrets: str) -> None:
    body = response.content.decode()
    for secret in secrets:
        assert secret not in body
    for key in ("password", "token", "secret", "auth_secret_encrypted"):
        assert f'"{key}"' not in body, f"{key} echoed in {body}"


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_requests_get_401_with_a_json_body(method: str) -> None:
    response = getattr(APIClient(), method)(LIST, {}, format="json")

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


def test_anonymous_detail_and_sync_get_401() -> None:
    broker = register()
    client = APIClient()
    assert client.get(detail(broker)).status_code == 401
    assert client.post(detail(broker) + "sync/").status_code == 401
    assert client.delete(detail(broker)).status_code == 401
    assert Broker.objects.filter(pk=broker.pk).exists()


def test_a_bad_token_gets_401() -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(LIST)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_token_auth_works(alice_api: APIClient) -> None:
    register()
    response = alice_api.get(LIST)
    assert response.status_code == 200
    assert [b["name"] for b in response.json()["results"]] == ["test-broker"]


def test_session_auth_works(alice: Any) -> None:
    register()
    client = APIClient()
    assert client.login(username="alice", password="alice-pass-123")

    response = client.get(LIST)

    assert response.status_code == 200
    assert response.json()["count"] == 1


def test_session_auth_admin_can_write(admin_user: Any) -> None:
    client = APIClient()
    client.force_login(admin_user)
    response = client.post(LIST, {"name": "via-session", "url": "http://10.0.0.5:8080"}, format="json")
    assert response.status_code == 201, response.content
    assert Broker.objects.filter(name="via-session").exists()


# --- list and pagination --------------------------------------------------------------------------


def test_list_is_paginated_with_page_and_page_size(alice_api: APIClient) -> None:
    for i in range(5):
        register(name=f"broker-{i}")

    first = alice_api.get(LIST, {"page_size": 2}).json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert first["count"] == 5
    assert [b["name"] for b in first["results"]] == ["broker-0", "broker-1"]
    assert first["previous"] is None
    assert "page=2" in first["next"] and "page_size=2" in first["next"]

    last = alice_api.get(LIST, {"page_size": 2, "page": 3}).json()
    assert [b["name"] for b in last["results"]] == ["broker-4"]
    assert last["next"] is None
    assert last["previous"] is not None


def test_list_default_shape_and_unknown_page(alice_api: APIClient) -> None:
    register()
    body = alice_api.get(LIST).json()
    assert body["count"] == 1 and body["next"] is None and body["previous"] is None
    assert set(body["results"][0]) >= CONTRACT_FIELDS

    response = alice_api.get(LIST, {"page": 99})
    assert response.status_code == 404
    assert response.json()["detail"]


def test_page_size_is_at_most_500(alice_api: APIClient) -> None:
    Broker.objects.bulk_create(
        [Broker(name=f"bulk-{i:04d}", url=f"http://10.0.0.1:{1000 + i}") for i in range(501)]
    )
    body = alice_api.get(LIST, {"page_size": 500}).json()
    assert body["count"] == 501
    assert len(body["results"]) == 500
    assert body["next"] is not None
    # The document says 1-500: more is an error, not a silent cap.
    too_many = alice_api.get(LIST, {"page_size": 1000})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "invalid" and too_many.json()["page_size"]


# --- create ----------------------------------------------------------------------------------------


def test_admin_registers_a_broker_with_basic_auth(
    admin_api: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.post(
            LIST,
            {
                "name": "pg-broker",
                "url": "http://10.1.2.3:8080/",
                "auth": {"type": "basic", "username": "portal", "password": SECRET},
                "relist_interval_seconds": 120,
            },
            format="json",
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= CONTRACT_FIELDS
    uuid.UUID(body["id"])
    assert body["name"] == "pg-broker"
    assert body["url"] == "http://10.1.2.3:8080"
    assert body["auth"] == {"type": "basic", "username": "portal"}
    assert body["verify_tls"] is True
    assert body["ca_bundle"] is None
    assert body["relist_interval_seconds"] == 120
    assert body["status"] == "pending"
    assert body["status_message"] == ""
    assert body["last_synced_at"] is None
    assert body["service_count"] == 0 and body["plan_count"] == 0
    assert body["created_at"] and body["updated_at"]
    assert_no_secret(response, SECRET)

    broker = Broker.objects.get(pk=body["id"])
    assert broker.auth_secret == SECRET
    assert SECRET not in broker.auth_secret_encrypted
    # A sync is queued at once: the row says it is due, and a task is sent after commit.
    assert broker.next_sync_at is not None and before <= broker.next_sync_at <= timezone.now()
    assert broker.sync_trigger == "registration"
    assert len(callbacks) == 1


def test_register_with_bearer_auth_never_echoes_the_token(admin_api: APIClient) -> None:
    response = admin_api.post(
        LIST,
        {"name": "bearer", "url": "https://broker.internal", "auth": {"type": "bearer", "token": TOKEN_SECRET}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["auth"] == {"type": "bearer"}
    assert_no_secret(response, TOKEN_SECRET)
    assert Broker.objects.get(name="bearer").auth_secret == TOKEN_SECRET

    for other in (admin_api.get(detail(response.json()["id"])), admin_api.get(LIST)):
        assert other.json() and TOKEN_SECRET not in other.content.decode()


@pytest.mark.parametrize("auth", [None, {"type": "none"}])
def test_register_without_auth_shows_null(admin_api: APIClient, auth: Any) -> None:
    data: dict[str, Any] = {"name": "open", "url": "http://127.0.0.1:9100"}
    if auth is not None:
        data["auth"] = auth
    response = admin_api.post(LIST, data, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["auth"] is None
    assert Broker.objects.get(name="open").auth_type == Broker.AuthType.NONE


def test_secrets_are_not_echoed_by_get_or_list(admin_api: APIClient) -> None:
    broker = register(auth=services.BrokerAuth(type="basic", username="u", secret=SECRET))
    for response in (admin_api.get(LIST), admin_api.get(detail(broker))):
        assert response.status_code == 200
        assert_no_secret(response, SECRET, broker.auth_secret_encrypted)
    assert admin_api.get(detail(broker)).json()["auth"] == {"type": "basic", "username": "u"}


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "url": "not a url"}, "url"),
        ({"name": "x", "url": "ftp://files.example.com"}, "url"),
        ({"name": "x", "url": "http://"}, "url"),
        ({"name": "x", "url": "http://host:port"}, "url"),
        ({"name": "x", "url": "http://exa mple.com"}, "url"),
        ({"name": "x", "url": "javascript:alert(1)"}, "url"),
        ({"name": "x", "url": "https://portal:hunter2@broker.internal"}, "url"),  # would be echoed to everyone
        ({"url": "http://10.0.0.1"}, "name"),
        ({"name": "", "url": "http://10.0.0.1"}, "name"),
        ({"name": "x"}, "url"),
        ({"name": "x", "url": "http://10.0.0.1", "auth": {"type": "basic", "username": "u"}}, "auth"),
        ({"name": "x", "url": "http://10.0.0.1", "auth": {"type": "basic", "username": "u", "password": ""}}, "auth"),
        ({"name": "x", "url": "http://10.0.0.1", "auth": {"type": "basic", "password": "p"}}, "auth"),
        ({"name": "x", "url": "http://10.0.0.1", "auth": {"type": "bearer"}}, "auth"),
        ({"name": "x", "url": "http://10.0.0.1", "auth": {"type": "digest", "username": "u"}}, "auth"),
        ({"name": "x", "url": "http://10.0.0.1", "relist_interval_seconds": 1}, "relist_interval_seconds"),
        ({"name": "x", "url": "http://10.0.0.1", "verify_tls": "perhaps"}, "verify_tls"),
    ],
)
def test_invalid_registrations_get_400_with_field_errors(
    admin_api: APIClient, data: dict[str, Any], field: str
) -> None:
    response = admin_api.post(LIST, data, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert body[field]
    assert not Broker.objects.exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"url": "ftp://files.example.com"}, "url"),
        ({"url": "https://portal:hunter2@broker.internal"}, "url"),
        ({"ca_bundle": "not a certificate"}, "ca_bundle"),
        ({"auth": services.BrokerAuth(type="basic", username="", secret="p")}, "auth"),
        ({"auth": services.BrokerAuth(type="bearer")}, "auth"),
        ({"auth": services.BrokerAuth(type="digest")}, "auth"),
    ],
)
def test_the_registering_service_owns_the_rules_the_admin_and_the_api_show(changes: dict[str, Any], field: str) -> None:
    """Registration and change refuse an unusable URL, CA bundle or auth whoever calls (admin, API, demo)."""
    with pytest.raises(ApplicationError) as refused:
        services.broker_register(**{"name": "x", "url": "http://10.0.0.1", **changes})
    assert list(refused.value.fields) == [field] and not Broker.objects.exists()
    broker = services.broker_register(name="ok", url="http://10.0.0.1")
    with pytest.raises(ApplicationError) as refused:
        services.broker_update(broker=broker, **changes)
    assert list(refused.value.fields) == [field]
    broker.refresh_from_db()
    assert (broker.url, broker.ca_bundle, broker.auth_type) == ("http://10.0.0.1", None, "none")


def test_duplicate_name_gets_409(admin_api: APIClient) -> None:
    register(name="taken")
    response = admin_api.post(LIST, {"name": "taken", "url": "http://10.0.0.2"}, format="json")
    assert response.status_code == 409
    assert response.json()["name"] and response.json()["code"] == "name_taken" and response.json()["detail"]
    assert Broker.objects.count() == 1


def test_private_and_loopback_urls_are_accepted(admin_api: APIClient) -> None:
    urls = [
        "http://localhost:8080", "http://192.168.1.10", "http://[::1]:9000", "https://10.0.0.7/osb",
        # Kubernetes service and docker-compose names have no dot.
        "http://my-broker:8080", "http://pg-broker.brokers.svc.cluster.local",
    ]
    for i, url in enumerate(urls):
        response = admin_api.post(LIST, {"name": f"b{i}", "url": url}, format="json")
        assert response.status_code == 201, (url, response.content)
        assert response.json()["url"] == url


def test_ca_bundle_must_be_pem_and_blank_means_none(admin_api: APIClient) -> None:
    import certifi

    bad = admin_api.post(
        LIST, {"name": "tls", "url": "https://10.0.0.3", "ca_bundle": "not a certificate"}, format="json"
    )
    assert bad.status_code == 400
    assert bad.json()["ca_bundle"]
    assert not Broker.objects.exists()

    pem = Path(certifi.where()).read_text()
    good = admin_api.post(LIST, {"name": "tls", "url": "https://10.0.0.3", "ca_bundle": pem}, format="json")
    assert good.status_code == 201, good.content
    assert good.json()["ca_bundle"].strip() == pem.strip()

    cleared = admin_api.patch(detail(good.json()["id"]), {"ca_bundle": ""}, format="json")
    assert cleared.status_code == 200
    assert cleared.json()["ca_bundle"] is None
    assert Broker.objects.get(name="tls").ca_bundle is None


def test_a_non_json_body_gets_a_json_400(admin_api: APIClient) -> None:
    response = admin_api.generic("POST", LIST, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"]


# --- permissions -----------------------------------------------------------------------------------


def test_non_admin_can_read_but_not_write(alice_api: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    broker = register()
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=None)

    assert alice_api.get(LIST).status_code == 200
    assert alice_api.get(detail(broker)).status_code == 200
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        responses = [
            alice_api.post(LIST, {"name": "mine", "url": "http://10.0.0.9"}, format="json"),
            alice_api.patch(detail(broker), {"name": "renamed"}, format="json"),
            alice_api.delete(detail(broker)),
            alice_api.post(detail(broker) + "sync/"),
        ]

    for response in responses:
        assert response.status_code == 403
        assert response.json()["detail"]
    assert callbacks == []
    broker.refresh_from_db()
    assert broker.name == "test-broker"
    assert broker.next_sync_at is None
    assert list(Broker.objects.values_list("name", flat=True)) == ["test-broker"]


# --- update ----------------------------------------------------------------------------------------


def test_patch_name_and_relist_interval(admin_api: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    broker = register()
    secret_before = broker.auth_secret_encrypted
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.patch(
            detail(broker), {"name": "renamed", "relist_interval_seconds": 3600}, format="json"
        )

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["name"] == "renamed" and body["relist_interval_seconds"] == 3600
    assert body["url"] == broker.url and body["auth"] == {"type": "basic", "username": BROKER_USER}
    broker.refresh_from_db()
    assert (broker.name, broker.relist_interval_seconds) == ("renamed", 3600)
    assert broker.auth_secret_encrypted == secret_before
    assert callbacks == []  # nothing about the connection changed: no resync


def test_patch_to_a_taken_name_gets_409(admin_api: APIClient) -> None:
    register(name="one")
    two = register(name="two")
    response = admin_api.patch(detail(two), {"name": "one"}, format="json")
    assert response.status_code == 409
    assert response.json()["name"]
    two.refresh_from_db()
    assert two.name == "two"


def test_patch_with_invalid_values_gets_400(admin_api: APIClient) -> None:
    broker = register()
    for data, field in (
        ({"url": "nope"}, "url"),
        ({"relist_interval_seconds": 0}, "relist_interval_seconds"),
        ({"name": ""}, "name"),
        ({"auth": {"type": "bearer"}}, "auth"),
    ):
        response = admin_api.patch(detail(broker), data, format="json")
        assert response.status_code == 400, (data, response.content)
        assert field in response.json()
    broker.refresh_from_db()
    assert broker.name == "test-broker" and broker.auth_type == Broker.AuthType.BASIC


def test_patch_with_a_new_password_replaces_the_encrypted_secret(
    admin_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    broker = register(url=osb_url, auth=services.BrokerAuth(type="basic", username=BROKER_USER, secret="wrong"))
    sync(broker)
    assert broker.status == Broker.Status.FAILED
    old_cipher = broker.auth_secret_encrypted

    response = admin_api.patch(detail(broker), {"auth": basic_auth()}, format="json")

    assert response.status_code == 200, response.content
    assert_no_secret(response, BROKER_PASSWORD)
    broker.refresh_from_db()
    assert broker.auth_secret_encrypted != old_cipher
    assert BROKER_PASSWORD not in broker.auth_secret_encrypted
    assert broker.auth_secret == BROKER_PASSWORD
    # The new secret is the one sent to the broker.
    osb_broker.clear_requests()
    sync(broker)
    assert broker.status == Broker.Status.READY, broker.status_message
    header = osb_broker.requests_for("GET", r".*/v2/catalog")[-1].headers["Authorization"]
    assert header == "Basic " + base64.b64encode(f"{BROKER_USER}:{BROKER_PASSWORD}".encode()).decode()


def test_patch_auth_without_password_keeps_the_stored_secret(admin_api: APIClient) -> None:
    broker = register(auth=services.BrokerAuth(type="basic", username="old", secret=SECRET))
    response = admin_api.patch(detail(broker), {"auth": {"type": "basic", "username": "new"}}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["auth"] == {"type": "basic", "username": "new"}
    broker.refresh_from_db()
    assert broker.auth_username == "new" and broker.auth_secret == SECRET


def test_patch_switching_to_bearer_requires_a_token(admin_api: APIClient) -> None:
    broker = register(auth=services.BrokerAuth(type="basic", username="u", secret=SECRET))
    response = admin_api.patch(detail(broker), {"auth": {"type": "bearer"}}, format="json")
    assert response.status_code == 400
    response = admin_api.patch(detail(broker), {"auth": {"type": "bearer", "token": TOKEN_SECRET}}, format="json")
    assert response.status_code == 200
    assert response.json()["auth"] == {"type": "bearer"}
    broker.refresh_from_db()
    assert broker.auth_type == "bearer" and broker.auth_username == "" and broker.auth_secret == TOKEN_SECRET


def test_patch_auth_null_removes_authentication(admin_api: APIClient) -> None:
    broker = register(auth=services.BrokerAuth(type="basic", username="u", secret=SECRET))
    response = admin_api.patch(detail(broker), {"auth": None}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["auth"] is None
    broker.refresh_from_db()
    assert broker.auth_type == Broker.AuthType.NONE
    assert broker.auth_secret_encrypted == ""


def test_patch_of_url_queues_a_resync(admin_api: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    broker = register()
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=None)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.patch(detail(broker), {"url": "http://10.9.9.9:1234/"}, format="json")
    assert response.status_code == 200
    assert response.json()["url"] == "http://10.9.9.9:1234"
    broker.refresh_from_db()
    assert broker.next_sync_at is not None
    assert len(callbacks) == 1


# --- delete ----------------------------------------------------------------------------------------


def test_delete_removes_the_broker_and_its_mirror(
    admin_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    broker = register(url=osb_url)
    sync(broker)
    assert ServiceOffering.objects.filter(broker=broker).exists()

    response = admin_api.delete(detail(broker))

    assert response.status_code == 204
    assert not response.content
    assert not Broker.objects.filter(pk=broker.pk).exists()
    assert not ServiceOffering.objects.filter(broker_id=broker.pk).exists()
    assert not ServicePlan.objects.filter(broker_id=broker.pk).exists()
    assert admin_api.get(detail(broker)).status_code == 404


def test_a_broker_with_instances_cannot_be_deleted(
    admin_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    from instances.models import ServiceInstance

    broker = register(url=osb_url)
    sync(broker)
    plan = ServicePlan.objects.filter(broker=broker).first()
    ServiceInstance.objects.create(name="db", namespace="team-a", broker=broker, plan=plan)

    response = admin_api.delete(detail(broker))

    assert response.status_code == 409
    assert "instances" in response.json()["detail"]
    assert Broker.objects.filter(pk=broker.pk).exists()
    assert ServicePlan.objects.filter(pk=plan.pk).exists()


# --- sync ------------------------------------------------------------------------------------------


def test_sync_endpoint_queues_a_sync_now(admin_api: APIClient, django_capture_on_commit_callbacks: Any) -> None:
    broker = register()
    later = timezone.now() + timedelta(hours=1)
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=later, sync_trigger="periodic")

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_api.post(detail(broker) + "sync/")

    assert response.status_code == 202
    assert response.json()["detail"]
    broker.refresh_from_db()
    assert before <= broker.next_sync_at <= timezone.now()
    assert broker.sync_trigger == "manual"
    assert len(callbacks) == 1


def test_sync_endpoint_of_unknown_broker_is_404(admin_api: APIClient) -> None:
    response = admin_api.post(detail(uuid.uuid4()) + "sync/")
    assert response.status_code == 404
    assert response.json()["detail"]


@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_unknown_broker_is_a_json_404(admin_api: APIClient, method: str) -> None:
    response = getattr(admin_api, method)(detail(uuid.uuid4()), {}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


def test_counts_and_last_synced_at_after_a_real_sync(
    alice_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    catalog = build_catalog(osb_broker.url)
    catalog["services"][0]["plans"].pop()  # make the counts specific to this catalog
    osb_broker.catalog = catalog
    broker = register(url=osb_url)
    assert alice_api.get(detail(broker)).json()["last_synced_at"] is None

    sync(broker)

    body = alice_api.get(detail(broker)).json()
    assert body["status"] == "ready", body["status_message"]
    assert body["status_message"] == ""
    assert body["service_count"] == len(catalog["services"])
    assert body["plan_count"] == sum(len(s["plans"]) for s in catalog["services"])
    assert body["last_synced_at"] is not None
    first_synced = body["last_synced_at"]
    listed = alice_api.get(LIST).json()["results"][0]
    assert (listed["service_count"], listed["plan_count"]) == (body["service_count"], body["plan_count"])

    # Removed offerings stop counting; last_synced_at moves on every completed sync.
    catalog["services"].pop()
    osb_broker.catalog = catalog
    sync(broker)
    body = alice_api.get(detail(broker)).json()
    assert body["service_count"] == len(catalog["services"])
    assert body["plan_count"] == sum(len(s["plans"]) for s in catalog["services"])
    assert body["last_synced_at"] > first_synced


def test_failed_sync_shows_failed_status_and_message(
    alice_api: APIClient, osb_broker: SampleBroker, osb_url: str
) -> None:
    osb_broker.set_response("GET", r".*/v2/catalog", 500, {"description": "catalog is on fire"})
    broker = register(url=osb_url)
    sync(broker)

    body = alice_api.get(detail(broker)).json()
    assert body["status"] == "failed"
    assert body["status_message"]
    assert body["last_synced_at"] is None
    assert json.dumps(body).count(BROKER_PASSWORD) == 0



# --- OpenAPI ---------------------------------------------------------------------------------------


@pytest.fixture
def openapi(alice_api: APIClient) -> dict[str, Any]:
    response = alice_api.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema or "allOf" in schema:
        if "allOf" in schema:
            schema = schema["allOf"][0]
            continue
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _response_schema(document: dict[str, Any], path: str, method: str, code: str) -> dict[str, Any]:
    operation = document["paths"][path][method]
    return _resolve(document, operation["responses"][code]["content"]["application/json"]["schema"])


def test_openapi_document_describes_the_api(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.")
    paths = openapi["paths"]
    assert set(paths["/api/v1/brokers/"]) >= {"get", "post"}
    detail_path = next(p for p in paths if p.startswith("/api/v1/brokers/{") and p.endswith("}/"))
    assert set(paths[detail_path]) >= {"get", "patch", "delete"}
    assert "post" in paths[detail_path + "sync/"]
    assert "202" in paths[detail_path + "sync/"]["post"]["responses"]
    assert "201" in paths["/api/v1/brokers/"]["post"]["responses"]
    assert "204" in paths[detail_path]["delete"]["responses"]
    assert "get" in paths["/api/v1/services/"] and "get" in paths["/api/v1/plans/"]
    assert any(p.startswith("/api/v1/services/{") for p in paths)
    assert any(p.startswith("/api/v1/plans/{") for p in paths)
    schemes = openapi["components"]["securitySchemes"]
    assert any(s.get("in") == "header" and s.get("name") == "Authorization" for s in schemes.values())


def test_openapi_broker_schema_matches_the_contract(openapi: dict[str, Any]) -> None:
    output = _response_schema(openapi, "/api/v1/brokers/", "post", "201")
    assert set(output["properties"]) >= CONTRACT_FIELDS
    assert set(output["properties"]["status"].get("enum") or _resolve(openapi, output["properties"]["status"])["enum"]) == {
        "pending", "syncing", "ready", "failed",
    }
    auth_out = output["properties"]["auth"]
    assert auth_out.get("nullable") is True
    assert set(_resolve(openapi, auth_out)["properties"]) == {"type", "username"}  # no secrets

    body = openapi["paths"]["/api/v1/brokers/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    request = _resolve(openapi, body)
    assert set(request["required"]) == {"name", "url"}
    auth_in = _resolve(openapi, request["properties"]["auth"])
    assert auth_in["properties"]["password"]["writeOnly"] is True
    assert auth_in["properties"]["token"]["writeOnly"] is True


@pytest.mark.parametrize("path", ["/api/v1/brokers/", "/api/v1/services/", "/api/v1/plans/"])
def test_openapi_lists_are_paginated(openapi: dict[str, Any], path: str) -> None:
    listed = _response_schema(openapi, path, "get", "200")
    assert set(listed["properties"]) == {"count", "next", "previous", "results"}
    assert listed["properties"]["results"]["type"] == "array"
    params = {p["name"] for p in openapi["paths"][path]["get"].get("parameters", [])}
    assert {"page", "page_size"} <= params


def test_openapi_services_and_plans_match_the_contract(openapi: dict[str, Any]) -> None:
    service = _resolve(openapi, _response_schema(openapi, "/api/v1/services/", "get", "200")["properties"]["results"]["items"])
    assert set(service["properties"]) >= {
        "id", "broker", "broker_name", "catalog_id", "name", "display_name", "description", "long_description",
        "provider", "image_url", "documentation_url", "support_url", "tags", "requires", "bindable",
        "instances_retrievable", "bindings_retrievable", "plan_updateable", "active", "plans",
    }
    assert service["properties"]["tags"]["items"]["type"] == "string"
    summary = _resolve(openapi, service["properties"]["plans"]["items"])
    assert set(summary["properties"]) == {"id", "name", "display_name", "free"}
    params = {p["name"] for p in openapi["paths"]["/api/v1/services/"]["get"]["parameters"]}
    assert params >= {"search", "tag", "broker", "provider", "free", "active"}

    plan = _resolve(openapi, _response_schema(openapi, "/api/v1/plans/", "get", "200")["properties"]["results"]["items"])
    assert set(plan["properties"]) >= {
        "id", "service", "catalog_id", "name", "display_name", "description", "free", "costs", "bullets",
        "bindable", "plan_updateable", "maximum_polling_duration", "maintenance_info", "schemas", "active",
    }
    schemas = _resolve(openapi, plan["properties"]["schemas"])
    assert set(schemas["properties"]) == {"instance_create", "instance_update", "binding_create"}
    assert all(s.get("nullable") for s in schemas["properties"].values())
    assert "service" in {p["name"] for p in openapi["paths"]["/api/v1/plans/"]["get"]["parameters"]}


def test_openapi_yaml_is_the_default(alice_api: APIClient) -> None:
    import yaml

    response = alice_api.get("/api/v1/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.") and "/api/v1/brokers/" in document["paths"]


def test_docs_page_renders_with_local_assets_only(alice: Any) -> None:
    import re

    client = APIClient()
    client.force_login(alice)
    response = client.get("/api/v1/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger" in html.lower()
    assets = re.findall(r"<(?:script|link)\b[^>]*?(?:src|href)=[\"']([^\"']+)[\"']", html, flags=re.I)
    assert assets, html
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"CDN asset {asset}"
    assert not re.search(r"https?://(cdn|unpkg|cdnjs|fonts)\.", html)
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "/api/v1/schema/" in html


def test_docs_page_disables_the_external_swagger_validator(alice_api: APIClient) -> None:
    import re

    html = alice_api.get("/api/v1/docs/").content.decode()
    settings_js = re.search(r"const swaggerSettings = (\{.*?\});", html, flags=re.S)
    assert settings_js is not None
    assert json.loads(settings_js.group(1)).get("validatorUrl", "default") is None


def test_unknown_api_paths_answer_json_404(alice_api: APIClient) -> None:
    for path in ("/api/v1/brokers/not-a-uuid/", "/api/v1/nothing-here/"):
        response = alice_api.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_api_schema_and_docs_need_a_login(client: Any) -> None:
    assert client.get("/api/v1/schema/").status_code == 401
    assert client.get("/api/v1/docs/").status_code == 401


def test_patch_with_an_auth_without_its_type_gets_400(admin_api: APIClient) -> None:
    broker = register(name="typeless")
    response = admin_api.patch(detail(broker), {"auth": {}}, format="json")
    assert response.status_code == 400
    assert response.json()["auth"]["type"] and response.json()["code"] == "invalid"
