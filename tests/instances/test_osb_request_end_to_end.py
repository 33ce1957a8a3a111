"""One OSB request, from the form to the broker: the preview shows the bytes the engine sends, and an update of a
nested parameter reaches the broker, the instance and the next form whole. Real HTTP to the test broker, directly
(a proxy in between could re-encode the body)."""

from __future__ import annotations

import html as html_lib
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, ServiceInstance
from instances.states import InstanceState, OpType
from tests.conftest import signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]


class FormFields(HTMLParser):
    """What a browser submits for one form of a page: its inputs, checked boxes, chosen options, text areas."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.select, self.textarea = form_id, False, None, None
        self.fields: list[tuple[str, str]] = []
        self.options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside or ("name" not in a and tag != "option"):
            return
        if tag == "input" and a.get("type") not in ("submit", "button"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((a["name"], a.get("value", "")))
        elif tag == "select":
            self.select, self.options = a["name"], []
        elif tag == "option" and self.select is not None:
            self.options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self.textarea = a["name"]
            self.fields.append((a["name"], ""))

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            name, text = self.fields.pop()
            self.fields.append((name, text + data))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self.select is not None:
            chosen = [value for value, selected in self.options if selected] or [self.options[0][0]]
            self.fields.append((self.select, chosen[0]))
            self.select = None
        elif tag == "textarea":
            self.textarea = None


def form_data(page: str, form_id: str, **changes: str) -> dict[str, Any]:
    parser = FormFields(form_id)
    parser.feed(page)
    data: dict[str, Any] = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    data.update({name: [value] for name, value in changes.items()})
    return data


def preview_of(page: str) -> dict[str, Any]:
    """The request preview as shown: method, URL, headers and the body's text."""
    block = re.search(r'<pre class="code request"[^>]*>(.*?)</pre>', page, re.S)
    assert block, "no request preview on the page"
    shown = html_lib.unescape(re.sub(r"<[^>]+>", "", block.group(1)))
    head, body = shown.split("\n\n", 1)
    request_line, *header_lines = head.split("\n")
    method, url = request_line.split(" ", 1)
    headers = dict(line.split(": ", 1) for line in header_lines)
    return {"method": method, "url": url, "headers": headers, "body": body}


@pytest.fixture
def alice_client(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def small(direct: Broker) -> ServicePlan:
    return plan(direct, "postgresql", "standard-small")


def test_the_preview_shows_the_bytes_the_broker_receives(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    url = f"{reverse('instances:provision')}?plan={small.pk}"
    page = alice_client.get(url).content.decode()
    data = form_data(page, "provision-form", name="orders-db", namespace="team-a", **{
        "p.database_name": "orders", "p.storage_gb": "20", "p.backup.retention_days": "14",
        "p.backup.window": "04:30"})
    preview = preview_of(alice_client.post(url, {**data, "action": ["preview"]}).content.decode())

    response = alice_client.post(url, {**data, "action": ["provision"]})
    assert response.status_code == 302
    run_operations()
    instance = ServiceInstance.objects.get(name="orders-db")
    [received] = osb_broker.requests_for("PUT", rf"/v2/service_instances/{instance.pk}")

    assert received.body == preview["body"].encode("utf-8")
    assert received.json["parameters"]["backup"] == {"enabled": True, "retention_days": 14, "window": "04:30"}
    assert preview["method"] == "PUT"
    assert preview["url"] == f"{small.broker.url}/v2/service_instances/{{instance_id}}?accepts_incomplete=true"
    sent = {name.lower(): value for name, value in received.headers.items()}
    for name in ("X-Broker-API-Version", "X-Broker-API-Originating-Identity", "Content-Type", "Accept",
                 "User-Agent"):
        assert preview["headers"][name] == sent[name.lower()], name
    assert preview["headers"]["Authorization"].startswith("Basic ") and "portal" not in preview["headers"]["Authorization"]
    assert sent["authorization"].startswith("Basic ") and sent["authorization"] != preview["headers"]["Authorization"]


def test_a_nested_parameter_update_reaches_the_broker_the_instance_and_the_next_form_whole(
    alice_client: Client, alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    url = f"{reverse('instances:provision')}?plan={small.pk}"
    data = form_data(alice_client.get(url).content.decode(), "provision-form", name="orders-db",
                     namespace="team-a", **{"p.database_name": "orders", "p.backup.window": "02:30"})
    assert alice_client.post(url, {**data, "action": ["provision"]}).status_code == 302
    run_operations()
    instance = ServiceInstance.objects.get(name="orders-db")
    assert instance.state == InstanceState.READY
    backup = {"enabled": True, "retention_days": 7, "window": "02:30"}
    assert instance.parameters["backup"] == backup

    # The update form starts from the instance's parameters; only the retention changes.
    page = alice_client.get(instance.get_absolute_url()).content.decode()
    update = form_data(page, "update-form", **{"u.backup.retention_days": "21"})
    assert alice_client.post(reverse("instances:update", args=[instance.pk]), update).status_code == 302
    run_operations()

    [patch] = osb_broker.requests_for("PATCH", rf"/v2/service_instances/{instance.pk}")
    whole = {**backup, "retention_days": 21}
    assert patch.json["parameters"] == {"backup": whole}  # the changed top-level key, whole; nothing else
    assert Operation.objects.get(instance=instance, type=OpType.UPDATE).request["parameters"] == {"backup": whole}
    instance.refresh_from_db()
    assert instance.parameters["backup"] == whole
    assert instance.parameters == osb_broker.instances[str(instance.pk)]["parameters"]  # what the broker holds

    page = alice_client.get(instance.get_absolute_url()).content.decode()
    shown = form_data(page, "update-form")
    assert (shown["u.backup.enabled"], shown["u.backup.retention_days"], shown["u.backup.window"]) == (
        ["true"], ["21"], ["02:30"])


def test_an_api_update_of_one_nested_key_sends_the_whole_object(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(alice)
    created = api.post("/api/v1/instances/", {"plan": str(small.pk), "name": "orders-db", "namespace": "team-a",
                                              "parameters": {"database_name": "orders", "backup": {
                                                  "enabled": True, "retention_days": 7, "window": "03:00"}}},
                       format="json")
    assert created.status_code == 202, created.content
    run_operations()
    instance_id = created.json()["id"]
    response = api.patch(f"/api/v1/instances/{instance_id}/", {"parameters": {"backup": {"window": "05:00"}}},
                         format="json")
    assert response.status_code == 202, response.content
    run_operations()

    [patch] = osb_broker.requests_for("PATCH", rf"/v2/service_instances/{instance_id}")
    whole = {"enabled": True, "retention_days": 7, "window": "05:00"}
    assert patch.json["parameters"] == {"backup": whole}
    instance = ServiceInstance.objects.get(pk=instance_id)
    assert instance.parameters == osb_broker.instances[instance_id]["parameters"]
    assert instance.parameters["backup"] == whole
