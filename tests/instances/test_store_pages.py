"""Store pages for instances and bindings: the provision form, the instance page, bindings, the list.

The engine runs in-process (run_operations) against the HTTP test broker, so what the pages show is what a
real worker would have produced.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, OperationCall, ServiceBinding, ServiceInstance
from instances.schema_form import MASK
from instances.services.bindings import binding_create
from instances.services.instances import instance_provision, instance_update
from instances.states import BindingState, InstanceState, OpType
from teams.models import AuditRecord
from tests.conftest import join, signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

HX = {"HTTP_HX_REQUEST": "true"}




@pytest.fixture
def alice_client(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def bob_client(bob: Any) -> Client:
    return signed_in(bob)


@pytest.fixture
def small(broker: Broker) -> ServicePlan:
    return plan(broker, "postgresql", "standard-small")


def provision_url(p: ServicePlan) -> str:
    return f"{reverse('instances:provision')}?plan={p.pk}"


def pg_form(p: ServicePlan, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "plan": str(p.pk), "name": "orders-db", "namespace": "team-a", "p.__mode": "form",
        "p.database_name": "orders", "p.version": "15", "p.storage_gb": "20",
        "p.extensions": ["pg_trgm", "postgis"], "p.backup.enabled": "on", "p.backup.retention_days": "14",
        "p.backup.window": "04:30",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def ready_instance(p: ServicePlan, user: Any, name: str = "orders-db", namespace: str = "team-a",
                   parameters: dict[str, Any] | None = None) -> ServiceInstance:
    instance = instance_provision(plan=p, name=name, namespace=namespace, requested_by=user,
                                  parameters=parameters if parameters is not None else {"database_name": "orders"})
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.READY
    return instance


def ready_binding(instance: ServiceInstance, user: Any, name: str = "app") -> ServiceBinding:
    binding = binding_create(instance=instance, name=name, requested_by=user)
    run_operations()
    binding.refresh_from_db()
    assert binding.state == BindingState.READY
    return binding


def error_list(html: str, field_id: str) -> str:
    """The text of the error list rendered beside the input with this id."""
    match = re.search(rf'<ul class="sf-errors" id="{re.escape(field_id)}-error">(.*?)</ul>', html, re.S)
    assert match, f"no errors beside {field_id}"
    return re.sub(r"<[^>]+>", " ", match.group(1))


# --- login ------------------------------------------------------------------------------------------------


def test_every_page_requires_login(client: Client, small: ServicePlan) -> None:
    for url in (reverse("instances:list"), provision_url(small)):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    response = client.post(provision_url(small), pg_form(small))
    assert response.status_code == 302 and ServiceInstance.objects.count() == 0


# --- the provision form -------------------------------------------------------------------------------------


def test_provision_form_is_generated_from_the_plan_schema(alice_client: Client, small: ServicePlan) -> None:
    html = alice_client.get(provision_url(small)).content.decode()
    assert "Standard Small" in html and "$15/month" in html
    assert '<label for="id_p-database_name">Database name' in html and "Name of the initial database." in html
    assert re.search(r'<input type="text" id="id_p-database_name" name="p.database_name" value=""[^>]* required', html)
    assert '<option value="16" selected>16</option>' in html  # enum with its default
    assert re.search(r'name="p.storage_gb" value="10"[^>]*step="1" min="1" max="100"', html)
    assert "Between 1 and 100." in html
    assert html.count('name="p.extensions"') == 5 and "<legend>Extensions" in html  # checkboxes per choice
    assert "<legend>Backups" in html and 'name="p.backup.retention_days" value="7"' in html  # nested fieldset
    assert re.search(r'id="id_p-backup-enabled" name="p.backup.enabled" value="on" checked', html)
    assert re.search(r'id="id_p-public_access" name="p.public_access" value="on"(?! checked)', html)
    assert 'value="preview"' in html and 'value="json"' in html
    # Only alice's namespaces are offered, as a select; hers (team-a) is chosen.
    assert re.search(r'<select name="namespace"[^>]*>\s*<option value="team-a" selected>team-a</option>\s*</select>',
                     html)


def test_provision_through_the_form_sends_typed_parameters(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    response = alice_client.post(provision_url(small), pg_form(small))
    instance = ServiceInstance.objects.get(name="orders-db")
    assert response.status_code == 302 and response["Location"] == instance.get_absolute_url()
    expected = {
        "database_name": "orders", "version": "15", "storage_gb": 20, "extensions": ["postgis", "pg_trgm"],
        "backup": {"enabled": True, "retention_days": 14, "window": "04:30"}, "public_access": False,
    }
    assert instance.parameters == expected and instance.requested_by == alice and instance.namespace == "team-a"
    run_operations()
    [put] = osb_broker.requests_for("PUT", r"/v2/service_instances/[^/]+")
    assert put.json["parameters"] == expected
    page = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "Provisioning orders-db has started" in page


def test_htmx_provision_answers_with_a_client_redirect(alice_client: Client, small: ServicePlan) -> None:
    response = alice_client.post(provision_url(small), pg_form(small), **HX)
    instance = ServiceInstance.objects.get()
    assert response.status_code == 200 and response["HX-Redirect"] == instance.get_absolute_url()


def test_validation_errors_are_shown_beside_the_fields_and_nothing_is_sent(
    alice_client: Client, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    data = pg_form(small, name="Orders DB", **{"p.database_name": "Bad-Name", "p.storage_gb": "500",
                                              "p.backup.retention_days": "two weeks", "p.backup.window": "25:00"})
    response = alice_client.post(provision_url(small), data)
    html = response.content.decode()
    assert response.status_code == 422
    # A pattern is said in words (never the raw regex)
    assert ("Not in the expected format. Start with a lowercase letter or “_”, then use only lowercase letters, "
            "digits or “_”.") in error_list(html, "id_p-database_name")
    assert "Must be at most 100." in error_list(html, "id_p-storage_gb")
    assert "Enter a whole number." in error_list(html, "id_p-backup-retention_days")
    assert "Not in the expected format: Backup window start (UTC, HH:MM)." in error_list(html, "id_p-backup-window")
    assert "^[" not in html.split("<form", 1)[1].split("</form>")[0].split("The plan's schema")[0]
    # The summary at the top links every problem to its field, and takes the focus (autofocus without JS)
    summary = re.search(r'<div class="error-summary" id="provision-errors"[^>]*>(.*?)</div>', html, re.S)
    assert summary and "autofocus" in summary.group(0) and "5 things to fix" in summary.group(1)
    for target in ("id_name", "id_p-database_name", "id_p-storage_gb", "id_p-backup-retention_days",
                   "id_p-backup-window"):
        assert f'href="#{target}"' in summary.group(1), target
    assert re.search(r'id="id_name_error">.*lowercase letters', html, re.S)
    assert 'value="two weeks"' in html and 'value="Bad-Name"' in html  # what was typed comes back
    assert ServiceInstance.objects.count() == 0 and Operation.objects.count() == 0
    run_operations()
    assert osb_broker.requests_for("PUT") == []


def test_a_missing_required_parameter_is_flagged_on_its_field(alice_client: Client, small: ServicePlan) -> None:
    response = alice_client.post(provision_url(small), pg_form(small, **{"p.database_name": ""}), **HX)
    html = response.content.decode()
    assert response.status_code == 422 and "<html" not in html  # the form fragment, swapped by htmx
    assert "This field is required." in error_list(html, "id_p-database_name")


def test_raw_json_mode_sends_the_object_as_written(alice_client: Client, small: ServicePlan) -> None:
    data = {"plan": str(small.pk), "name": "raw-db", "namespace": "team-a", "p.__mode": "json",
            "p.__json": '{"database_name": "raw", "storage_gb": 5, "backup": {"enabled": false}}'}
    response = alice_client.post(provision_url(small), data)
    assert response.status_code == 302
    assert ServiceInstance.objects.get().parameters == {"database_name": "raw", "storage_gb": 5,
                                                        "backup": {"enabled": False}}


def test_raw_json_errors_are_shown_under_the_editor(alice_client: Client, small: ServicePlan) -> None:
    base = {"plan": str(small.pk), "name": "raw-db", "namespace": "team-a", "p.__mode": "json"}
    html = alice_client.post(provision_url(small), {**base, "p.__json": '{"database_name": '}).content.decode()
    assert "This is not valid JSON" in error_list(html, "id_p-__json")
    response = alice_client.post(provision_url(small), {**base, "p.__json": '{"database_name": "x", "storage_gb": 0}'})
    assert response.status_code == 422
    assert "storage_gb: 0 is less than the minimum of 1" in error_list(response.content.decode(), "id_p-__json")
    assert ServiceInstance.objects.count() == 0


def test_switching_to_json_and_back_keeps_the_values(alice_client: Client, small: ServicePlan) -> None:
    html = alice_client.post(provision_url(small), pg_form(small, action="json")).content.decode()
    assert 'name="p.__mode" value="json"' in html
    assert "&quot;storage_gb&quot;: 20" in html and "&quot;retention_days&quot;: 14" in html
    data = {"plan": str(small.pk), "name": "x", "namespace": "team-a", "p.__mode": "json", "action": "form",
            "p.__json": '{"database_name": "back", "storage_gb": 42}'}
    html = alice_client.post(provision_url(small), data).content.decode()
    assert 'name="p.__mode" value="form"' in html and 'name="p.storage_gb" value="42"' in html
    data["p.__json"] = '{"database_name": "back", "surprise": 1}'
    html = alice_client.post(provision_url(small), data).content.decode()
    assert 'name="p.__mode" value="json"' in html and "The form cannot show surprise" in html
    assert ServiceInstance.objects.count() == 0


def test_a_schema_the_form_cannot_render_falls_back_to_the_json_editor(
    alice_client: Client, small: ServicePlan
) -> None:
    schema = {"type": "object", "properties": {"size": {"oneOf": [{"type": "integer"}, {"type": "string"}]}}}
    small.schemas = {"service_instance": {"create": {"parameters": schema}}}
    small.save(update_fields=["schemas"])
    html = alice_client.get(provision_url(small)).content.decode()
    assert "the schema uses &#x27;oneOf&#x27;" in html and 'name="p.__json"' in html and "The plan's schema" in html
    response = alice_client.post(provision_url(small), {"plan": str(small.pk), "name": "one", "namespace": "team-a",
                                                        "p.__json": '{"size": "large"}'})
    assert response.status_code == 302 and ServiceInstance.objects.get().parameters == {"size": "large"}


def test_preview_shows_the_exact_body_with_secrets_masked(alice_client: Client, small: ServicePlan) -> None:
    schema = small.instance_create_schema
    schema["properties"]["admin_password"] = {"type": "string", "format": "password"}
    schema["properties"]["api_token"] = {"type": "string"}
    small.schemas["service_instance"]["create"]["parameters"] = schema
    small.save(update_fields=["schemas"])
    data = pg_form(small, action="preview", **{"p.admin_password": "hunter2-secret", "p.api_token": "tok-123456"})
    response = alice_client.post(provision_url(small), data, **HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert "PUT</span> " in html and "/v2/service_instances/{instance_id}?accepts_incomplete=true" in html
    assert f"&quot;service_id&quot;: &quot;{small.offering.catalog_id}&quot;" in html
    assert f"&quot;plan_id&quot;: &quot;{small.catalog_id}&quot;" in html
    assert "&quot;database_name&quot;: &quot;orders&quot;" in html and "&quot;storage_gb&quot;: 20" in html
    assert "&quot;instance_name&quot;: &quot;orders-db&quot;" in html and "X-Broker-API-Version:</span> 2.17" in html
    assert html.count(MASK) >= 3  # the two secrets and the broker's credentials
    assert "hunter2-secret" not in html.split("request-preview")[1] and "tok-123456" not in html.split("request-preview")[1]
    assert 'type="password" id="id_p-admin_password"' in html
    assert ServiceInstance.objects.count() == 0


def test_arrays_of_objects_are_repeatable_rows(alice_client: Client, broker: Broker) -> None:
    standard = plan(broker, "object-storage", "standard")
    base = {"plan": str(standard.pk), "name": "assets", "namespace": "team-a", "p.__mode": "form",
            "p.bucket_name": "assets-bucket", "p.region": "eu-west"}
    html = alice_client.post(provision_url(standard), {**base, "action": "add:lifecycle_rules"}).content.decode()
    assert 'name="p.lifecycle_rules.__rows" value="0"' in html and 'name="p.lifecycle_rules.0.prefix"' in html
    rows = {"p.lifecycle_rules.__rows": ["0", "1"], "p.lifecycle_rules.0.prefix": "tmp/",
            "p.lifecycle_rules.0.expire_after_days": "1", "p.lifecycle_rules.1.prefix": "logs/",
            "p.lifecycle_rules.1.expire_after_days": "30"}
    html = alice_client.post(provision_url(standard), {**base, **rows, "action": "remove:lifecycle_rules:0"}).content.decode()
    assert 'name="p.lifecycle_rules.0.prefix" value="logs/"' in html and "p.lifecycle_rules.1.prefix" not in html
    bad = {**rows, "p.lifecycle_rules.1.expire_after_days": "0"}
    html = alice_client.post(provision_url(standard), {**base, **bad}).content.decode()
    assert "Must be at least 1." in error_list(html, "id_p-lifecycle_rules-1-expire_after_days")
    response = alice_client.post(provision_url(standard), {**base, **rows})
    assert response.status_code == 302
    assert ServiceInstance.objects.get().parameters["lifecycle_rules"] == [
        {"prefix": "tmp/", "expire_after_days": 1}, {"prefix": "logs/", "expire_after_days": 30}]


def test_a_taken_name_comes_back_from_the_service_beside_the_name(
    alice_client: Client, alice: Any, small: ServicePlan
) -> None:
    ready_instance(small, alice)
    html = alice_client.post(provision_url(small), pg_form(small)).content.decode()
    assert re.search(r'id="id_name_error">.*is taken in namespace', html, re.S)


def test_provision_without_a_plan_goes_back_to_the_marketplace(alice_client: Client, broker: Broker) -> None:
    response = alice_client.get(reverse("instances:provision"))
    assert response.status_code == 302 and response["Location"] == reverse("brokers:marketplace")
    assert alice_client.get(reverse("instances:provision") + "?plan=nope").status_code == 302


# --- the instance page --------------------------------------------------------------------------------------


def test_instance_page_follows_the_operation_live(
    alice_client: Client, alice: Any, broker: Broker, osb_broker: SampleBroker
) -> None:
    ha = plan(broker, "postgresql", "ha-cluster")  # asynchronous: the broker answers 202 and is polled
    instance = instance_provision(plan=ha, name="ha-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "app"})
    status_url = reverse("instances:status", args=[instance.pk])

    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "status-pill is-provisioning" in html and "Provisioning" in html
    assert "Waiting for a worker to send the request to the broker." in html  # the portal's next step
    assert f'hx-get="{status_url}" hx-trigger="every 3s"' in html

    response = alice_client.get(status_url, **HX)
    assert response.status_code == 200 and 'hx-trigger="every 3s"' in response.content.decode()

    run_operations()
    op = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    response = alice_client.get(status_url, **HX)
    html = response.content.decode()
    assert response.status_code == 286 and "hx-trigger" not in html
    assert "instance-settled" in response["HX-Trigger"]
    assert "status-pill is-ready" in html and "Provisioning succeeded" in html
    assert op.description and op.description in html  # the broker's own words
    for call in op.calls.all():
        assert escape(call.path) in html
    assert re.search(r"<span class=\"http-method\">PUT</span> <code class=\"path\">/v2/service_instances/", html)
    assert re.search(r"<span class=\"http-method\">GET</span> <code class=\"path\">/v2/service_instances/[^<]*/last_operation", html)
    assert "ms</td>" in html

    page = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "hx-trigger=\"every 3s\"" not in page and "Open dashboard" in page
    # the forms are reloaded when the operation settles, by an element whose hx-select they don't inherit
    assert re.search(r'<div class="hx-refresher" hidden [^>]*hx-trigger="instance-settled from:body"[^>]*></div>', page)
    assert page.count("hx-select") == 1


def test_a_failed_call_is_shown_in_red_with_the_broker_message(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    osb_broker.set_response("PUT", r"/v2/service_instances/[^/]+", 400,
                            {"error": "BadRequest", "description": "Quota of databases exceeded for team-a"})
    instance = instance_provision(plan=small, name="quota", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "x"})
    run_operations()
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "status-pill is-failed" in html and "Provisioning failed" in html
    assert "Quota of databases exceeded for team-a" in html
    assert '<tr class="failed">' in html and '<span class="http-status">400</span>' in html


def test_a_deleted_instance_keeps_its_page_without_actions(
    alice_client: Client, alice: Any, small: ServicePlan
) -> None:
    instance = ready_instance(small, alice)
    alice_client.post(reverse("instances:deprovision", args=[instance.pk]), {"confirm": "orders-db"})
    run_operations()
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "This instance was deleted" in html and "deprovision-form" not in html
    assert alice_client.get(reverse("instances:list")).content.decode().count("orders-db") == 0


def test_gone_while_polling_a_deprovision_is_shown_as_done_not_failed(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready_instance(small, alice)
    osb_broker.set_response("DELETE", r"/v2/service_instances/[^/]+", 202, times=1, body={"operation": "bye"})
    osb_broker.set_response("GET", r"/v2/service_instances/[^/]+/last_operation", 410, body={"error": "Gone"})
    alice_client.post(reverse("instances:deprovision", args=[instance.pk]), {"confirm": "orders-db"})
    run_operations()

    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert "This instance was deleted" in html
    gone = re.search(r'<tr class="([^"]*)">\s*<td><span class="http-method">GET</span> <code class="path">'
                     r'[^<]*/last_operation[^<]*</code>.*?</tr>', html, re.S)
    assert gone, html
    assert gone.group(1) == "", gone.group(0)
    assert '<span class="http-status">410</span>' in gone.group(0)
    assert "already gone" in gone.group(0)
    assert '<tr class="failed">' not in html


@pytest.mark.parametrize(("op_type", "method", "path", "gone"), [
    (OpType.DEPROVISION, "DELETE", "/v2/service_instances/i", True),
    (OpType.DEPROVISION, "GET", "/v2/service_instances/i/last_operation?operation=x", True),
    (OpType.UNBIND, "GET", "/v2/service_instances/i/service_bindings/b/last_operation", True),
    (OpType.ORPHAN_MITIGATION, "DELETE", "/v2/service_instances/i/service_bindings/b", True),
    (OpType.PROVISION, "GET", "/v2/service_instances/i/last_operation", False),  # the engine keeps polling
    (OpType.BIND, "GET", "/v2/service_instances/i/service_bindings/b/last_operation", False),
    (OpType.PROVISION, "PUT", "/v2/service_instances/i", False),  # a failed create
])
def test_only_a_410_that_finishes_a_removal_is_drawn_as_gone(op_type: str, method: str, path: str,
                                                           gone: bool) -> None:
    call = OperationCall(operation=Operation(type=op_type), method=method, path=path, status=410,
                         error="Broker answered 410 Gone (Gone)")
    assert (call.is_gone, call.is_failure) == (gone, not gone)


# --- update and deprovision ---------------------------------------------------------------------------------


def test_update_changes_plan_and_only_the_changed_parameters(
    alice_client: Client, alice: Any, broker: Broker, small: ServicePlan
) -> None:
    params = {"database_name": "orders", "storage_gb": 10,
              "backup": {"enabled": True, "retention_days": 7, "window": "03:00"}}
    instance = ready_instance(small, alice, parameters=params)
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert 'name="u.storage_gb" value="10"' in html and 'name="u.backup.retention_days" value="7"' in html
    options = re.findall(r'<option value="([^"]+)"[^>]*>([^<]+)</option>', html.split('id="id_plan"')[1].split("</select>")[0])
    assert {label.replace(" (current)", "") for _, label in options} == {"Hobby", "Standard Small", "Standard Large",
                                                                         "HA Cluster"}
    large = plan(broker, "postgresql", "standard-large")
    data = {"plan": str(large.pk), "u.__mode": "form", "u.storage_gb": "50", "u.backup.enabled": "on",
            "u.backup.retention_days": "7", "u.backup.window": "03:00", "u.public_access": ""}
    response = alice_client.post(reverse("instances:update", args=[instance.pk]), data)
    assert response.status_code == 302
    op = Operation.objects.get(instance=instance, type=OpType.UPDATE)
    assert op.request["parameters"] == {"storage_gb": 50} and op.request["plan_id"] == large.catalog_id
    instance.refresh_from_db()
    assert instance.state == InstanceState.UPDATING


def test_update_refuses_a_plan_of_another_service_and_bad_values(
    alice_client: Client, alice: Any, broker: Broker, small: ServicePlan
) -> None:
    instance = ready_instance(small, alice)
    redis = plan(broker, "redis-cache", "cache-1gb")
    url = reverse("instances:update", args=[instance.pk])
    response = alice_client.post(url, {"plan": str(redis.pk), "u.__mode": "form"})
    assert response.status_code == 422 and "Select a valid choice" in response.content.decode()
    response = alice_client.post(url, {"plan": str(small.pk), "u.__mode": "form", "u.storage_gb": "1000"}, **HX)
    assert response.status_code == 422 and "Must be at most 100." in error_list(response.content.decode(), "id_u-storage_gb")
    response = alice_client.post(url, {"plan": str(small.pk), "u.__mode": "form"})
    assert response.status_code == 422 and "Nothing to change" in response.content.decode()
    assert not Operation.objects.filter(type=OpType.UPDATE).exists()


def test_a_plan_that_is_not_updatable_offers_no_plan_change(
    alice_client: Client, alice: Any, broker: Broker
) -> None:
    standard = plan(broker, "object-storage", "standard")
    instance = ready_instance(standard, alice, parameters={"bucket_name": "my-bucket"})
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert 'id="id_plan"' not in html and "cannot be changed to another plan" in html
    assert 'name="u.versioning"' in html  # parameters can still change (tri-state: keep, yes, no)
    response = alice_client.post(reverse("instances:update", args=[instance.pk]),
                                 {"u.__mode": "form", "u.versioning": "true"})
    assert response.status_code == 302
    assert Operation.objects.get(type=OpType.UPDATE).request["parameters"] == {"versioning": True}


def test_changing_the_plan_in_the_update_form_shows_its_schema(
    alice_client: Client, alice: Any, broker: Broker, small: ServicePlan
) -> None:
    instance = ready_instance(small, alice)
    large = plan(broker, "postgresql", "standard-large")
    response = alice_client.post(reverse("instances:update", args=[instance.pk]),
                                 {"plan": str(large.pk), "action": "plan"}, **HX)
    html = response.content.decode()
    assert response.status_code == 200 and 'max="1024"' in html and "<html" not in html


def test_deprovision_needs_the_typed_name(alice_client: Client, alice: Any, small: ServicePlan) -> None:
    instance = ready_instance(small, alice)
    url = reverse("instances:deprovision", args=[instance.pk])
    response = alice_client.post(url, {"confirm": "orders"})
    assert response.status_code == 422 and "Type the name exactly as shown: orders-db" in response.content.decode()
    assert not Operation.objects.filter(type=OpType.DEPROVISION).exists()
    response = alice_client.post(url, {"confirm": "orders-db"}, **HX)
    assert response.status_code == 200 and response["HX-Redirect"] == instance.get_absolute_url()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DEPROVISIONING


def test_deprovision_with_bindings_offers_cascade(alice_client: Client, alice: Any, small: ServicePlan) -> None:
    instance = ready_instance(small, alice)
    ready_binding(instance, alice)
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert 'name="cascade"' in html and "Also unbind its 1 binding" in html
    url = reverse("instances:deprovision", args=[instance.pk])
    response = alice_client.post(url, {"confirm": "orders-db"})
    assert response.status_code == 409 and "still has 1 binding(s)" in response.content.decode()
    response = alice_client.post(url, {"confirm": "orders-db", "cascade": "on"})
    assert response.status_code == 302
    run_operations()
    instance.refresh_from_db()
    assert instance.state == InstanceState.DELETED and not ServiceBinding.objects.visible().exists()


# --- bindings -----------------------------------------------------------------------------------------------


def test_create_a_binding_with_typed_parameters_then_unbind(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    instance = ready_instance(small, alice)
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert re.search(r'<select name="bind-namespace"[^>]*>.*<option value="team-a" selected>team-a</option>\s*</select>',
                     html, re.S) and 'name="b.role"' in html
    data = {"bind-name": "web", "bind-namespace": "", "bind-secret_name": "", "b.__mode": "form",
            "b.role": "readonly", "b.connection_limit": "5"}
    response = alice_client.post(reverse("instances:binding-create", args=[instance.pk]), data)
    assert response.status_code == 302 and response["Location"].endswith("#bindings")
    binding = ServiceBinding.objects.get()
    assert binding.parameters == {"role": "readonly", "connection_limit": 5}
    assert (binding.namespace, binding.secret_name) == ("team-a", "web")
    run_operations()
    [bind] = osb_broker.requests_for("PUT", r"/v2/service_instances/[^/]+/service_bindings/[^/]+")
    assert bind.json["parameters"] == {"role": "readonly", "connection_limit": 5}
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert f'id="binding-{binding.pk}"' in html and "status-pill is-ready" in html and "is-pub-" in html
    assert "Bind" in html and "· team-a/web" in html  # in the activity timeline

    response = alice_client.post(reverse("instances:binding-delete", args=[binding.pk]))
    assert response.status_code == 302
    binding.refresh_from_db()
    assert binding.state == BindingState.UNBINDING
    run_operations()
    assert not ServiceBinding.objects.visible().exists()


def test_binding_errors_are_shown_beside_the_fields(alice_client: Client, alice: Any, small: ServicePlan) -> None:
    instance = ready_instance(small, alice)
    data = {"bind-name": "Web App", "b.__mode": "form", "b.role": "readonly", "b.connection_limit": "1000"}
    response = alice_client.post(reverse("instances:binding-create", args=[instance.pk]), data, **HX)
    html = response.content.decode()
    assert response.status_code == 422 and "<html" not in html
    assert "Must be at most 500." in error_list(html, "id_b-connection_limit")
    assert re.search(r'id="id_bind-name_error">.*lowercase letters', html, re.S)
    assert not ServiceBinding.objects.exists()


def test_credentials_are_masked_and_revealed_one_value_at_a_time_with_an_audit_record(
    alice_client: Client, alice: Any, small: ServicePlan
) -> None:
    instance = ready_instance(small, alice)
    binding = ready_binding(instance, alice)
    password, host = binding.secrets["credentials"]["password"], binding.secrets["credentials"]["host"]
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    assert password not in html and host not in html.split('id="creds-')[1] and "••••" in html
    assert html.count("Reveal<span") >= 3 and '<input type="hidden" name="key" value="password">' in html
    assert not AuditRecord.objects.filter(action="binding.credentials.reveal").exists()

    url = reverse("instances:binding-credentials", args=[binding.pk])
    response = alice_client.post(url, {"key": "password"}, **HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and html.strip().startswith('<div class="cred"')
    assert password in html and host not in html  # only the value asked for
    assert 'data-copy="credv-' in html and "no-store" in response["Cache-Control"]
    record = AuditRecord.objects.get(action="binding.credentials.reveal")
    assert record.actor == alice and record.target_id == str(binding.pk) and password not in record.summary
    assert "'password'" in record.summary

    page = alice_client.post(url, {"key": "host"})  # without JavaScript: the whole page, that value shown in place
    body = page.content.decode()
    assert page.status_code == 200 and host in body and password not in body
    assert AuditRecord.objects.filter(action="binding.credentials.reveal").count() == 2
    assert alice_client.post(url, {"key": "nope"}, **HX).status_code == 404


def test_use_in_your_app_shows_the_secret_key_refs_and_a_masked_connection_string(
    alice_client: Client, alice: Any, small: ServicePlan
) -> None:
    instance = ready_instance(small, alice)
    binding = ready_binding(instance, alice)
    creds = binding.secrets["credentials"]
    html = alice_client.get(instance.get_absolute_url()).content.decode()
    use = html.split(f'id="creds-{binding.pk}-use"')[1].split("</section>")[0]
    for key in creds:
        assert f"key: {key}" in use
    assert "secretKeyRef:\n        name: app\n        key: password" in use and "- name: PASSWORD" in use
    assert "envFrom:\n  - secretRef:\n      name: app" in use
    if "uri" in creds:
        assert creds["password"] not in use and "Connection string" in use and MASK in use
    assert AuditRecord.objects.filter(action="binding.credentials.reveal").count() == 0


def test_credentials_are_refused_to_another_user(
    bob_client: Client, alice: Any, small: ServicePlan
) -> None:
    """bob is a viewer in alice's team: he sees the binding, not its credentials."""
    instance = ready_instance(small, alice)
    binding = ready_binding(instance, alice)
    html = bob_client.get(instance.get_absolute_url()).content.decode()
    assert "Reveal<span" not in html and "Only admins and developers of namespace team-a" in html
    response = bob_client.post(reverse("instances:binding-credentials", args=[binding.pk]), {"key": "password"}, **HX)
    assert response.status_code == 403
    assert binding.secrets["credentials"]["password"] not in response.content.decode()
    assert "not allowed" in response.content.decode()
    assert not AuditRecord.objects.filter(action="binding.credentials.reveal").exists()


def test_admins_may_reveal_any_credentials(client: Client, admin_user: Any, alice: Any, small: ServicePlan) -> None:
    instance = ready_instance(small, alice)
    binding = ready_binding(instance, alice)
    client.force_login(admin_user)
    response = client.post(reverse("instances:binding-credentials", args=[binding.pk]), **HX)
    assert response.status_code == 200 and binding.secrets["credentials"]["password"] in response.content.decode()


# --- the list -----------------------------------------------------------------------------------------------


def test_the_list_filters_by_namespace_service_and_state(
    alice_client: Client, alice: Any, broker: Broker, small: ServicePlan, osb_broker: SampleBroker, team_b: Any
) -> None:
    join(alice, team_b, "developer")
    ready_instance(small, alice, name="db-a", namespace="team-a")
    ready_instance(small, alice, name="db-b", namespace="team-b")
    redis = plan(broker, "redis-cache", "cache-free")
    ready_instance(redis, alice, name="cache-a", namespace="team-a", parameters={})
    osb_broker.set_response("PUT", r"/v2/service_instances/[^/]+", 500, {"description": "boom"})
    instance_provision(plan=small, name="broken", namespace="team-b", requested_by=alice,
                       parameters={"database_name": "x"})
    run_operations()

    def names(query: str, **headers: str) -> set[str]:
        html = alice_client.get(reverse("instances:list") + query, **headers).content.decode()
        return set(re.findall(r'class="inst-link" href="[^"]+">([^<]+)</a>', html))

    assert names("") == {"db-a", "db-b", "cache-a", "broken"}
    assert names("?namespace=team-a") == {"db-a", "cache-a"}
    assert names(f"?service={small.offering_id}") == {"db-a", "db-b", "broken"}
    assert names("?state=failed") == {"broken"}
    assert names(f"?namespace=team-b&service={small.offering_id}&state=ready", **HX) == {"db-b"}
    assert names("?namespace=nowhere") == set()
    html = alice_client.get(reverse("instances:list") + "?state=ready", **HX).content.decode()
    assert "<html" not in html and 'id="instance-table"' in html
    html = alice_client.get(reverse("instances:list")).content.decode()
    assert "status-pill is-failed" in html and "Provisioning failed" in html


# --- constant queries ---------------------------------------------------------------------------------------


def count_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_list_and_the_instance_page_take_a_constant_number_of_queries(
    alice_client: Client, alice: Any, broker: Broker, small: ServicePlan
) -> None:
    first = ready_instance(small, alice, name="db-0")
    ready_binding(first, alice, name="app-0")
    list_url, page_url = reverse("instances:list"), first.get_absolute_url()
    alice_client.get(list_url)  # warm the session and the caches
    list_few, page_few = count_queries(alice_client, list_url), count_queries(alice_client, page_url)

    for i in range(1, 4):
        other = ready_instance(plan(broker, "redis-cache", "cache-free"), alice, name=f"cache-{i}", parameters={})
        ready_binding(other, alice, name=f"app-{i}")
        ready_binding(first, alice, name=f"extra-{i}")
    for storage in (20, 30):
        instance_update(instance=first, parameters={"storage_gb": storage}, requested_by=alice)
        run_operations()
        first.refresh_from_db()
    assert Operation.objects.filter(instance=first).count() >= 6

    assert count_queries(alice_client, list_url) == list_few
    assert count_queries(alice_client, page_url) == page_few
