"""The admin console for brokers: registration through the services, status, sync history, read-only mirror."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.test import Client, RequestFactory
from django.utils import timezone

from brokers import services
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from devtools.sample_broker import SampleBroker
from tests.conftest import BROKER_PASSWORD, BROKER_USER, signed_in

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/brokers/broker/"
ADD = "/admin/brokers/broker/add/"
SECRET = "admin-form-secret-7d1e"


def change_url(broker: Broker) -> str:
    return f"/admin/brokers/broker/{broker.pk}/change/"


def register(url: str | None = None, name: str = "test-broker", secret: str = BROKER_PASSWORD) -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=secret)
    url = url or ("http://10.0.0.1:8080" if name == "test-broker" else f"http://10.0.0.1:8080/{name}")
    return services.broker_register(name=name, url=url, auth=auth)


def sync(broker: Broker) -> CatalogSync:
    record = services.catalog_sync(broker_id=broker.pk, force=True)
    assert record is not None
    broker.refresh_from_db()
    return record


@pytest.fixture
def admin_client(admin_user: Any) -> Client:
    return signed_in(admin_user)


@pytest.fixture
def synced(osb_broker: SampleBroker, osb_url: str) -> Broker:
    broker = register(url=osb_url)
    sync(broker)
    assert broker.status == Broker.Status.READY, broker.status_message
    return broker


def form_data(**overrides: Any) -> dict[str, Any]:
    """The broker add/change form as a browser posts it (inline management forms included)."""
    data: dict[str, Any] = {
        "name": "admin-broker",
        "url": "http://10.2.3.4:9100",
        "auth_type": "basic",
        "auth_username": "portal",
        "secret": SECRET,
        "verify_tls": "on",
        "ca_bundle": "",
        "relist_interval_seconds": "600",
        "enabled": "on",
    }
    for prefix in ("syncs", "offerings"):
        data.update({
            f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0",
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000",
        })
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def page_errors(response: Any) -> str:
    html = response.content.decode()
    return " | ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, flags=re.S)) or html[-2000:]


# --- changelist --------------------------------------------------------------------------------------


def test_changelist_shows_status_message_and_counts(admin_client: Client, synced: Broker, osb_broker: SampleBroker) -> None:
    failing = register(url="http://127.0.0.1:9", name="failing-broker")
    sync(failing)
    assert failing.status == Broker.Status.FAILED

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "test-broker" in html and "failing-broker" in html
    assert "Ready" in html and "Failed" in html
    assert failing.status_message[:40] in html
    services_count = ServiceOffering.objects.filter(broker=synced, active=True).count()
    plans_count = ServicePlan.objects.filter(broker=synced, active=True).count()
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*test-broker(?:(?!</tr>).)*</tr>", html, flags=re.S)
    assert row is not None
    cells = re.findall(r'<td class="field-(\w+)[^"]*">(.*?)</td>', row.group(0), flags=re.S)
    by_field = dict(cells)
    assert by_field["service_count"].strip() == str(services_count)
    assert by_field["plan_count"].strip() == str(plans_count)
    assert "Ready" in by_field["status_badge"]
    assert BROKER_PASSWORD not in html


def test_sync_now_action_queues_a_sync(admin_client: Client, django_capture_on_commit_callbacks: Any) -> None:
    one, two = register(name="one"), register(name="two")
    later = timezone.now() + timedelta(hours=2)
    Broker.objects.update(next_sync_at=later, sync_trigger="periodic")

    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            CHANGELIST, {"action": "sync_now", "_selected_action": [str(one.pk)]}, follow=True
        )

    assert response.status_code == 200
    assert "Catalog sync queued for 1 broker" in response.content.decode()
    one.refresh_from_db()
    two.refresh_from_db()
    assert before <= one.next_sync_at <= timezone.now()
    assert one.sync_trigger == "manual"
    assert two.next_sync_at == later
    assert len(callbacks) == 1


# --- add and change ----------------------------------------------------------------------------------


def test_add_form_registers_a_broker_with_an_encrypted_secret(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(ADD, form_data())

    assert response.status_code == 302, page_errors(response)
    broker = Broker.objects.get(name="admin-broker")
    assert response["Location"].startswith(CHANGELIST)
    assert broker.url == "http://10.2.3.4:9100"
    assert broker.auth_type == "basic" and broker.auth_username == "portal"
    assert broker.relist_interval_seconds == 600
    assert broker.auth_secret == SECRET
    assert SECRET not in broker.auth_secret_encrypted and broker.auth_secret_encrypted
    assert broker.status == Broker.Status.PENDING
    assert broker.next_sync_at is not None and broker.next_sync_at >= before
    assert broker.sync_trigger == "registration"
    assert len(callbacks) == 1


def test_add_form_accepts_a_kubernetes_service_name(admin_client: Client) -> None:
    response = admin_client.post(ADD, form_data(url="http://my-broker:8080"))
    assert response.status_code == 302, page_errors(response)
    assert Broker.objects.get(name="admin-broker").url == "http://my-broker:8080"


def test_add_form_without_auth(admin_client: Client) -> None:
    response = admin_client.post(ADD, form_data(auth_type="none", auth_username="", secret=""))
    assert response.status_code == 302, page_errors(response)
    broker = Broker.objects.get(name="admin-broker")
    assert broker.auth_type == "none" and broker.auth_secret_encrypted == ""


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"secret": ""}, "secret"),  # basic auth needs a password
        ({"auth_type": "bearer", "auth_username": "", "secret": ""}, "secret"),  # bearer needs a token
        ({"auth_username": ""}, "auth_username"),  # basic auth needs a username
        ({"url": "ftp://files.example.com"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://user:pass@broker.internal"}, "url"),
        ({"name": ""}, "name"),
        ({"ca_bundle": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"}, "ca_bundle"),
    ],
)
def test_add_form_errors_are_shown_on_the_form(
    admin_client: Client, overrides: dict[str, Any], field: str
) -> None:
    response = admin_client.post(ADD, form_data(**overrides))

    assert response.status_code == 200  # the form again, not a server error
    assert response.context["adminform"].form.errors.get(field), response.context["adminform"].form.errors
    assert not Broker.objects.filter(name="admin-broker").exists()


def test_add_form_rejects_a_duplicate_name(admin_client: Client) -> None:
    register(name="admin-broker")
    response = admin_client.post(ADD, form_data())
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get("name")
    assert Broker.objects.filter(name="admin-broker").count() == 1


def test_editing_without_a_secret_keeps_the_stored_one(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    broker = register(secret=SECRET)
    cipher = broker.auth_secret_encrypted
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=None)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            change_url(broker),
            form_data(name="renamed", url=broker.url, auth_username=BROKER_USER, secret="", relist_interval_seconds="120"),
        )

    assert response.status_code == 302, page_errors(response)
    broker.refresh_from_db()
    assert broker.name == "renamed" and broker.relist_interval_seconds == 120
    assert broker.auth_secret_encrypted == cipher
    assert broker.auth_secret == SECRET
    assert broker.ca_bundle is None  # an empty text area is "no bundle", not ""
    assert callbacks == []  # nothing about the connection changed


def test_editing_with_a_new_secret_replaces_it_and_resyncs(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    broker = register(secret=SECRET)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            change_url(broker), form_data(name=broker.name, url=broker.url, auth_username=BROKER_USER, secret="new-one")
        )
    assert response.status_code == 302, page_errors(response)
    broker.refresh_from_db()
    assert broker.auth_secret == "new-one"
    assert len(callbacks) == 1


def test_switching_to_bearer_without_a_token_is_a_form_error(admin_client: Client) -> None:
    broker = register(secret=SECRET)
    response = admin_client.post(
        change_url(broker), form_data(name=broker.name, url=broker.url, auth_type="bearer", auth_username="", secret="")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get("secret")
    broker.refresh_from_db()
    assert broker.auth_type == "basic" and broker.auth_secret == SECRET


def test_change_page_never_contains_the_secret(admin_client: Client) -> None:
    broker = register(secret=SECRET)
    response = admin_client.get(change_url(broker))

    assert response.status_code == 200
    html = response.content.decode()
    assert SECRET not in html
    assert broker.auth_secret_encrypted not in html
    assert re.search(r'<input type="password" name="secret"[^>]*>', html)
    assert not re.search(r'name="secret"[^>]*value="[^"]+"', html)
    assert 'value="http://10.0.0.1:8080"' in html  # the URL is shown for editing


def test_change_page_shows_sync_history_and_offerings(admin_client: Client, synced: Broker) -> None:
    failing_sync = CatalogSync.objects.create(
        broker=synced, trigger="manual", outcome="failed", error="Broker said no (HTTP 503)",
        started_at=timezone.now() - timedelta(hours=1),
    )

    response = admin_client.get(change_url(synced))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Catalog syncs" in html
    assert "Registration" in html and "Changed" in html  # the first sync
    assert failing_sync.error in html
    assert "Service offerings" in html
    assert "postgresql" in html and "status-page" in html
    # The history is read-only: no inline forms to add or edit syncs.
    assert 'name="syncs-0-outcome"' not in html
    assert 'name="syncs-MAX_NUM_FORMS" value="0"' in html


# --- read-only mirror ----------------------------------------------------------------------------------


def test_offerings_and_plans_are_read_only(admin_client: Client, admin_user: Any, synced: Broker) -> None:
    offering = ServiceOffering.objects.get(broker=synced, name="postgresql")
    plan = ServicePlan.objects.filter(offering=offering).first()
    request = RequestFactory().get("/")
    request.user = admin_user
    for model, obj in ((ServiceOffering, offering), (ServicePlan, plan)):
        model_admin = site._registry[model]
        if model is ServicePlan:
            # Only the plan's visibility (service access) can be changed; everything the broker said is read-only.
            assert model_admin.has_change_permission(request, obj) is True
            editable = set(model_admin.get_fields(request, obj)) - set(model_admin.get_readonly_fields(request, obj))
            assert editable == {"visibility", "teams"}
        else:
            assert model_admin.has_change_permission(request, obj) is False
        assert model_admin.has_add_permission(request) is False
        assert model_admin.has_delete_permission(request, obj) is False
        assert model_admin.has_view_permission(request, obj) is True

    url = f"/admin/brokers/serviceoffering/{offering.pk}/change/"
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    assert admin_client.post(url, {"name": "hacked"}).status_code == 403

    # A plan's page saves only its visibility: what the broker said stays as it was.
    url = f"/admin/brokers/serviceplan/{plan.pk}/change/"
    html = admin_client.get(url).content.decode()
    assert 'name="visibility"' in html and 'name="name"' not in html
    assert admin_client.post(url, {"name": "hacked", "visibility": "public"}).status_code == 302
    plan.refresh_from_db()
    assert plan.name != "hacked" and plan.visibility == "public"

    offering_page = admin_client.get(f"/admin/brokers/serviceoffering/{offering.pk}/change/").content.decode()
    assert "hobby" in offering_page and "ha-cluster" in offering_page  # plans inline
    assert admin_client.get("/admin/brokers/serviceoffering/add/").status_code == 403
    assert admin_client.get(f"/admin/brokers/serviceoffering/{offering.pk}/delete/").status_code == 403
    offering.refresh_from_db()
    assert offering.name == "postgresql"

    listing = admin_client.get("/admin/brokers/serviceoffering/")
    assert listing.status_code == 200 and "PostgreSQL" in listing.content.decode()


def test_sync_records_are_read_only(admin_client: Client, synced: Broker) -> None:
    record = CatalogSync.objects.filter(broker=synced).first()
    response = admin_client.get(f"/admin/brokers/catalogsync/{record.pk}/change/")
    assert response.status_code == 200
    assert 'name="_save"' not in response.content.decode()
    assert admin_client.get("/admin/brokers/catalogsync/add/").status_code == 403


# --- access ---------------------------------------------------------------------------------------------


def test_anonymous_and_non_staff_are_sent_to_the_admin_login(alice: Any) -> None:
    broker = register()
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=None)
    anonymous = Client()
    non_staff = signed_in(alice)
    for client, login in ((anonymous, ("/login/", "/admin/login/")), (non_staff, ("/admin/login/",))):
        for url in (CHANGELIST, change_url(broker), ADD):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith(login), response["Location"]
            assert "next=" in response["Location"]
        response = client.post(CHANGELIST, {"action": "sync_now", "_selected_action": [str(broker.pk)]})
        assert response.status_code == 302
    broker.refresh_from_db()
    assert broker.next_sync_at is None
