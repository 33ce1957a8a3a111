"""Hostile input (issue 11): each answers a clean 4xx with a JSON body under /api/, and nothing reaches the broker.

Every test drives the portal through its API or pages with the HTTP test broker behind it, and asserts the status,
the body, and what the broker received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.sealed import SEALED, seal, unseal
from instances.states import InstanceState
from teams.models import AuditRecord, Team
from tests.conftest import signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]


@pytest.fixture
def schemaless(broker: Broker) -> ServicePlan:
    p = plan(broker, "status-page", "basic")
    assert not p.instance_create_schema
    return p


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def assert_nothing_sent(osb_broker: SampleBroker) -> None:
    assert osb_broker.requests == [], [(r.method, r.path) for r in osb_broker.requests]


# --- JSON nested deeply, parameters too deep or too large -----------------------------------------------------


@pytest.mark.parametrize("method,url", [("post", "/api/v1/instances/"), ("post", "/api/v1/bindings/"),
                                        ("post", "/api/v1/brokers/"), ("post", "/api/v1/teams/")])
def test_a_body_nested_ten_thousand_deep_is_a_400(admin_api: APIClient, osb_broker: SampleBroker, broker: Broker,
                                                  method: str, url: str) -> None:
    body = '{"parameters": ' + "[" * 10_000 + "]" * 10_000 + "}"
    response = getattr(admin_api, method)(url, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert "nested more than" in response.json()["detail"]
    assert_nothing_sent(osb_broker)


def test_patch_with_a_deep_body_is_a_400(alice_api: APIClient, osb_broker: SampleBroker,
                                         schemaless: ServicePlan) -> None:
    created = alice_api.post("/api/v1/instances/", {"name": "db", "namespace": "team-a", "plan": str(schemaless.pk)},
                             format="json").json()
    run_operations()
    osb_broker.clear_requests()
    body = '{"parameters": ' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}"
    response = alice_api.patch(f"/api/v1/instances/{created['id']}/", body, content_type="application/json")
    assert response.status_code == 400 and "nested more than" in response.json()["detail"]
    assert_nothing_sent(osb_broker)


def test_parameters_deeper_than_the_limit_are_refused_naming_it(alice_api: APIClient, osb_broker: SampleBroker,
                                                                schemaless: ServicePlan) -> None:
    response = alice_api.post("/api/v1/instances/", {
        "name": "deep", "namespace": "team-a", "plan": str(schemaless.pk),
        "parameters": nested(settings.PARAMETERS_MAX_DEPTH + 1)}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "PARAMETERS_MAX_DEPTH" in body["detail"] and str(settings.PARAMETERS_MAX_DEPTH) in body["detail"]
    assert body["parameters"]
    assert not ServiceInstance.objects.exists()
    ok = alice_api.post("/api/v1/instances/", {"name": "ok", "namespace": "team-a", "plan": str(schemaless.pk),
                                               "parameters": nested(settings.PARAMETERS_MAX_DEPTH)}, format="json")
    assert ok.status_code == 202, ok.json()
    osb_broker.clear_requests()  # (only the refused one must not reach the broker; nothing was sent yet anyway)
    assert_nothing_sent(osb_broker)


def test_parameters_larger_than_the_limit_are_refused_naming_it(alice_api: APIClient, osb_broker: SampleBroker,
                                                                schemaless: ServicePlan) -> None:
    response = alice_api.post("/api/v1/instances/", {
        "name": "big", "namespace": "team-a", "plan": str(schemaless.pk),
        "parameters": {"blob": "x" * (settings.PARAMETERS_MAX_BYTES + 1)}}, format="json")
    assert response.status_code == 400
    assert "PARAMETERS_MAX_BYTES" in response.json()["detail"]
    assert not ServiceInstance.objects.exists() and not Operation.objects.exists()
    assert_nothing_sent(osb_broker)


def test_parameters_stored_nested_900_deep_still_render(alice: Any, alice_api: APIClient, osb_broker: SampleBroker,
                                                        schemaless: ServicePlan) -> None:
    """Rows stored before the limit existed: the instance page, its status fragment and the API answer."""
    created = alice_api.post("/api/v1/instances/", {"name": "old", "namespace": "team-a", "plan": str(schemaless.pk)},
                             format="json").json()
    run_operations()
    deep = json.dumps(nested(900))
    with connection.cursor() as cursor:  # written as an old portal version would have
        cursor.execute(f"UPDATE {ServiceInstance._meta.db_table} SET parameters = %s WHERE id = %s",
                       [deep, ServiceInstance.objects.get().pk.hex if connection.vendor == "sqlite"
                        else str(ServiceInstance.objects.get().pk)])
    page = signed_in(alice)
    for url in (f"/instances/{created['id']}/", f"/instances/{created['id']}/status/"):
        response = page.get(url)
        assert response.status_code in (200, 286), url  # 286: the fragment tells htmx to stop polling
    api = alice_api.get(f"/api/v1/instances/{created['id']}/")
    assert api.status_code == 200


# --- bodies over the upload limit, bad Host, Django's own errors under /api/ ------------------------------------


def test_a_body_over_the_upload_limit_is_a_json_413(admin_api: APIClient, osb_broker: SampleBroker,
                                                    broker: Broker) -> None:
    big = json.dumps({"name": "x", "parameters": {"blob": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}})
    response = admin_api.post("/api/v1/instances/", big, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "request_too_large"
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]
    form = admin_api.post("/api/v1/brokers/", "a=" + "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10),
                          content_type="application/x-www-form-urlencoded")
    assert form.status_code == 413 and form.json()["code"] == "request_too_large"
    assert_nothing_sent(osb_broker)


def test_a_bad_host_header_on_the_api_is_a_json_400(admin_api: APIClient, osb_broker: SampleBroker,
                                                    broker: Broker) -> None:
    response = admin_api.get("/api/v1/instances/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "bad_host"
    assert_nothing_sent(osb_broker)


def test_api_404_and_csrf_failures_are_json(admin_user: Any, osb_broker: SampleBroker, broker: Broker) -> None:
    client = signed_in(admin_user, enforce_csrf_checks=True)
    missing = client.get("/api/v1/no-such-thing/")
    assert missing.status_code == 404 and missing.json()["detail"]
    csrf = client.post("/api/v1/brokers/", {"name": "x", "url": "http://127.0.0.1:9/"}, content_type="application/json")
    assert csrf.status_code == 403 and csrf["Content-Type"].startswith("application/json")
    assert csrf.json()["detail"]
    assert not Broker.objects.filter(name="x").exists()
    assert_nothing_sent(osb_broker)


# --- ca_bundle -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bundle", ["-----BEGIN CERTIFICATE-----\nrésumé\n-----END CERTIFICATE-----\n", "ünïcödé",
                                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_a_bad_ca_bundle_is_a_400_naming_the_field(admin_api: APIClient, osb_broker: SampleBroker,
                                                   bundle: str) -> None:
    create = admin_api.post("/api/v1/brokers/", {"name": "tls", "url": osb_broker.url, "ca_bundle": bundle},
                            format="json")
    assert create.status_code == 400, create.content[:300]
    assert create.json()["ca_bundle"] and "PEM" in create.json()["ca_bundle"][0]
    assert not Broker.objects.filter(name="tls").exists()
    good = admin_api.post("/api/v1/brokers/", {"name": "tls", "url": "http://127.0.0.1:9/"}, format="json")
    assert good.status_code == 201, good.json()
    osb_broker.clear_requests()
    update = admin_api.patch(f"/api/v1/brokers/{good.json()['id']}/", {"ca_bundle": bundle}, format="json")
    assert update.status_code == 400 and update.json()["ca_bundle"]
    assert_nothing_sent(osb_broker)


def test_a_bad_ca_bundle_in_the_admin_form_is_named(admin_user: Any, osb_broker: SampleBroker) -> None:
    client = signed_in(admin_user)
    response = client.post("/admin/brokers/broker/add/", {
        "name": "tls", "url": osb_broker.url, "auth_type": "none", "verify_tls": "on", "ca_bundle": "ünïcödé",
        "relist_interval_seconds": 900, "enabled": "on"})
    assert response.status_code == 200
    assert "Not a valid PEM CA bundle" in response.content.decode()
    assert not Broker.objects.filter(name="tls").exists()
    assert_nothing_sent(osb_broker)


# --- filters of ~50,000 characters -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/instances/?search=", "/api/v1/services/?search=", "/api/v1/services/?tag=",
                                 "/api/v1/audit/?action=", "/api/v1/bindings/?namespace=", "/api/v1/operations/?state="])
def test_a_filter_longer_than_the_limit_is_a_json_400(admin_api: APIClient, osb_broker: SampleBroker, broker: Broker,
                                                      url: str) -> None:
    response = admin_api.get(url + "x" * 50_000)
    assert response.status_code == 400
    assert response.json()["code"] == "filter_too_long"
    assert str(settings.FILTER_MAX_LENGTH) in response.json()["detail"]
    assert admin_api.get(url + "x" * settings.FILTER_MAX_LENGTH).status_code in (200, 400)  # the limit itself: no 500
    assert_nothing_sent(osb_broker)


@pytest.mark.parametrize("url", ["/?search=", "/instances/?search=", "/audit/?action=", "/admin/teams/team/?q="])
def test_a_filter_longer_than_the_limit_on_a_page_is_a_400(admin_user: Any, osb_broker: SampleBroker,
                                                           broker: Broker, url: str) -> None:
    response = signed_in(admin_user).get(url + "x" * 50_000)
    assert response.status_code == 400
    assert "FILTER_MAX_LENGTH" in response.content.decode()
    assert_nothing_sent(osb_broker)


# --- sign-in lockout on /admin/login/ ------------------------------------------------------------------------


def test_the_admin_sign_in_is_locked_after_repeated_failures(admin_user: Any) -> None:
    admin_user.set_password("right-pass-123")
    admin_user.save()
    client = Client()
    for _ in range(10):
        response = client.post("/admin/login/", {"username": admin_user.username, "password": "wrong"})
        assert response.status_code == 200
    refused = client.post("/admin/login/", {"username": admin_user.username, "password": "right-pass-123"})
    assert refused.status_code == 200
    assert "Too many failed sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # The portal's own sign-in shares the counter.
    assert Client().post("/login/", {"username": admin_user.username, "password": "right-pass-123"}).status_code == 200


# --- secret-like parameters -----------------------------------------------------------------------------------


def test_secret_parameters_are_encrypted_at_rest_masked_everywhere_and_sent_in_clear(
    alice: Any, bob: Any, alice_api: APIClient, osb_broker: SampleBroker, schemaless: ServicePlan
) -> None:
    created = alice_api.post("/api/v1/instances/", {
        "name": "db", "namespace": "team-a", "plan": str(schemaless.pk),
        "parameters": {"size": 1, "admin_password": "hunter2-secret", "nested": {"api_key": "k-123"}}}, format="json")
    assert created.status_code == 202, created.json()
    body = created.json()
    assert body["parameters"]["admin_password"] == "••••••••" and body["parameters"]["size"] == 1
    assert body["parameters"]["nested"]["api_key"] == "••••••••"
    # The database rows: the instance's parameters and the stored request hold no clear secret.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT parameters FROM {ServiceInstance._meta.db_table}")
        (stored,) = cursor.fetchone()
        cursor.execute(f"SELECT request FROM {Operation._meta.db_table}")
        (request,) = cursor.fetchone()
    for raw in (stored, request):
        text = raw if isinstance(raw, str) else json.dumps(raw)
        assert "hunter2-secret" not in text and "k-123" not in text
        assert SEALED in text
    run_operations()
    (put,) = osb_broker.requests_for("PUT")
    assert put.json["parameters"] == {"size": 1, "admin_password": "hunter2-secret", "nested": {"api_key": "k-123"}}
    # Masked for every role, in the API and on the page.
    bob_api = APIClient()
    bob_api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=bob).key}")
    for api in (alice_api, bob_api):
        shown = api.get(f"/api/v1/instances/{body['id']}/").json()["parameters"]
        assert shown["admin_password"] == "••••••••" and shown["nested"]["api_key"] == "••••••••"
    for user in (alice, bob):
        html = signed_in(user).get(f"/instances/{body['id']}/").content.decode()
        assert "hunter2-secret" not in html and "k-123" not in html
    # Revealed only on purpose, audited, to a developer; a viewer is refused.
    assert bob_api.post(f"/api/v1/instances/{body['id']}/parameters/reveal/").status_code == 403
    revealed = alice_api.post(f"/api/v1/instances/{body['id']}/parameters/reveal/")
    assert revealed.status_code == 200 and revealed["Cache-Control"].startswith("max-age=0")
    assert "no-store" in revealed["Cache-Control"]
    assert revealed.json()["parameters"]["admin_password"] == "hunter2-secret"
    assert AuditRecord.objects.filter(action="instance.parameters.reveal").count() == 1

    # An update that sends back the mask keeps the secret; a new value is sent in clear, stored sealed.
    osb_broker.clear_requests()
    patched = alice_api.patch(f"/api/v1/instances/{body['id']}/", {"parameters": {
        "admin_password": "••••••••", "size": 2}}, format="json")
    assert patched.status_code == 202, patched.json()
    run_operations()
    (patch,) = osb_broker.requests_for("PATCH")
    assert patch.json["parameters"] == {"admin_password": "hunter2-secret", "size": 2}
    instance = ServiceInstance.objects.get(pk=body["id"])
    assert instance.state == InstanceState.READY
    assert unseal(instance.parameters)["admin_password"] == "hunter2-secret"
    assert "hunter2-secret" not in json.dumps(instance.parameters)


def test_schema_marked_secrets_are_sealed_whatever_their_name() -> None:
    schema = {"type": "object", "properties": {"phrase": {"type": "string", "writeOnly": True},
                                               "pin": {"type": "string", "format": "password"},
                                               "plain": {"type": "string"}}}
    sealed = seal({"phrase": "a", "pin": "b", "plain": "c"}, schema)
    assert set(sealed["phrase"]) == {SEALED} and set(sealed["pin"]) == {SEALED} and sealed["plain"] == "c"
    assert unseal(sealed) == {"phrase": "a", "pin": "b", "plain": "c"}


# --- headers -------------------------------------------------------------------------------------------------


def test_binding_credentials_are_not_stored_by_caches(alice_api: APIClient, osb_broker: SampleBroker,
                                                      broker: Broker) -> None:
    p = plan(broker, "redis-cache", "cache-free")
    instance = alice_api.post("/api/v1/instances/", {"name": "db", "namespace": "team-a", "plan": str(p.pk)},
                              format="json")
    assert instance.status_code == 202, instance.json()
    run_operations()
    binding = alice_api.post("/api/v1/bindings/", {"instance": instance.json()["id"], "name": "app"}, format="json")
    assert binding.status_code == 202, binding.json()
    run_operations()
    response = alice_api.get(f"/api/v1/bindings/{binding.json()['id']}/credentials/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_hsts_follows_secure_cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    def hsts(**env: str) -> str:
        code = "from django.conf import settings; print(settings.SECURE_HSTS_SECONDS)"
        out = subprocess.run([sys.executable, "-c", f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']="
                              f"'catalog_portal.settings'; django.setup(); {code}"],
                             env={**__import__("os").environ, **env}, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert hsts(SECURE_COOKIES="true") == "31536000"
    assert hsts(SECURE_COOKIES="false") == "0"
    assert hsts(SECURE_COOKIES="true", HSTS_SECONDS="0") == "0"


# --- deleting a team whose namespaces hold live instances ------------------------------------------------------


def test_a_team_with_live_instances_is_not_deleted(admin_user: Any, admin_api: APIClient, alice_api: APIClient,
                                                   osb_broker: SampleBroker, schemaless: ServicePlan,
                                                   team_a: Team) -> None:
    alice_api.post("/api/v1/instances/", {"name": "db", "namespace": "team-a", "plan": str(schemaless.pk)},
                   format="json")
    run_operations()
    osb_broker.clear_requests()
    response = admin_api.delete(f"/api/v1/teams/{team_a.pk}/")
    assert response.status_code == 409
    assert "team-a/db" in response.json()["detail"]
    page = signed_in(admin_user).post(f"/teams/{team_a.pk}/", {"action": "delete"})
    assert page.status_code == 409 and "team-a/db" in page.content.decode()
    admin_page = signed_in(admin_user).post(f"/admin/teams/team/{team_a.pk}/delete/", {"post": "yes"}, follow=True)
    assert "team-a/db" in admin_page.content.decode()
    assert Team.objects.filter(pk=team_a.pk).exists()
    assert not AuditRecord.objects.filter(action="team.delete").exists()
    assert_nothing_sent(osb_broker)


def test_the_instance_page_reveals_secret_parameters_on_purpose(alice: Any, bob: Any, alice_api: APIClient,
                                                                osb_broker: SampleBroker,
                                                                schemaless: ServicePlan) -> None:
    body = alice_api.post("/api/v1/instances/", {"name": "db", "namespace": "team-a", "plan": str(schemaless.pk),
                                                 "parameters": {"admin_password": "hunter2-secret"}},
                          format="json").json()
    run_operations()
    url = f"/instances/{body['id']}/"
    page = signed_in(alice).get(url).content.decode()
    assert "hunter2-secret" not in page and "Reveal secret parameters" in page
    assert "Reveal secret parameters" not in signed_in(bob).get(url).content.decode()  # a viewer: no button
    refused = signed_in(bob).post(f"{url}parameters/reveal/")
    assert refused.status_code == 403 and "hunter2-secret" not in refused.content.decode()
    shown = signed_in(alice).post(f"{url}parameters/reveal/")
    assert shown.status_code == 200 and "hunter2-secret" in shown.content.decode()
    assert "no-store" in shown["Cache-Control"]
    assert AuditRecord.objects.filter(action="instance.parameters.reveal").count() == 1


def test_a_schema_marked_secret_is_sealed_masked_and_kept_out_of_call_records(
    alice_api: APIClient, osb_broker: SampleBroker, schemaless: ServicePlan
) -> None:
    """A `writeOnly` parameter with an innocent name: sealed in the row, masked by the API, sent to the broker in
    clear, and masked in the recorded OSB call."""
    from instances.models import OperationCall

    schemaless.schemas = {"service_instance": {"create": {"parameters": {
        "type": "object", "properties": {"phrase": {"type": "string", "writeOnly": True}, "size": {"type": "integer"}}}}}}
    schemaless.save(update_fields=["schemas"])
    body = alice_api.post("/api/v1/instances/", {"name": "db", "namespace": "team-a", "plan": str(schemaless.pk),
                                                 "parameters": {"phrase": "open-sesame", "size": 3}},
                          format="json").json()
    assert body["parameters"] == {"phrase": "••••••••", "size": 3}
    run_operations()
    (put,) = osb_broker.requests_for("PUT")
    assert put.json["parameters"] == {"phrase": "open-sesame", "size": 3}
    instance = ServiceInstance.objects.get(pk=body["id"])
    assert "open-sesame" not in json.dumps(instance.parameters)
    excerpts = " ".join(OperationCall.objects.values_list("request_excerpt", flat=True))
    assert '"size":3' in excerpts and "open-sesame" not in excerpts


@pytest.mark.parametrize("depth", [10_000, 40])
def test_the_provision_page_refuses_deep_json_parameters(alice: Any, osb_broker: SampleBroker,
                                                         schemaless: ServicePlan, depth: int) -> None:
    text = '{"a":' * depth + "1" + "}" * depth
    response = signed_in(alice).post(f"/instances/new/?plan={schemaless.pk}", {
        "plan": str(schemaless.pk), "name": "deep", "namespace": "team-a", "p.__mode": "json", "p.__json": text})
    assert response.status_code == 422
    assert "PARAMETERS_MAX_DEPTH" in response.content.decode()
    assert not ServiceInstance.objects.exists()
    run_operations()
    assert_nothing_sent(osb_broker)
