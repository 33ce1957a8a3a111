"""What an independent broker (cloudfoundry/overview-broker, each of its error and response modes) showed the portal
getting wrong, replayed with the scriptable test broker playing its part (issue 11)."""

from __future__ import annotations

from typing import Any

import pytest

from brokers.models import Broker, ServicePlan
from devtools.sample_broker import SampleBroker
from instances.models import Operation, OperationCall, ServiceInstance
from instances.services.instances import instance_provision
from instances.states import InstanceState, OpState, OpType
from tests.conftest import signed_in
from tests.instances.helpers import plan, run_operations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("broker_knobs")]

PUT = r"/v2/service_instances/[^/]+"
HTML_PAGE = ("<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head>"
             "<body><h1>Internal Server Error</h1><p>nginx</p></body></html>")


@pytest.fixture
def small(direct: Broker) -> ServicePlan:
    return plan(direct, "postgresql", "standard-small")


# --- raw HTML is not the broker's words -------------------------------------------------------------


def test_an_html_error_page_is_summarised_and_only_the_call_record_keeps_its_excerpt(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    osb_broker.set_response("PUT", PUT, 500, HTML_PAGE, headers={"Content-Type": "text/html"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    assert provision.state == OpState.FAILED
    assert provision.error == "Broker answered 500 Internal Server Error with an HTML page"
    assert provision.description == ""
    call = OperationCall.objects.get(operation=provision, method="PUT")
    assert call.status == 500 and "<!DOCTYPE html>" in call.response_excerpt  # the record keeps the excerpt

    page = signed_in(alice).get(instance.get_absolute_url()).content.decode()
    assert "DOCTYPE" not in page and "&lt;!DOCTYPE" not in page and "nginx" not in page
    assert "with an HTML page" in page
    body = signed_in(alice).get(f"/api/v1/instances/{instance.pk}/").json()
    assert "DOCTYPE" not in str(body)


def test_a_plain_text_error_and_a_non_json_answer_are_summarised_too(
    alice: Any, small: ServicePlan, osb_broker: SampleBroker
) -> None:
    osb_broker.set_response("PUT", PUT, 502, "upstream connect error or disconnect/reset before headers",
                            headers={"Content-Type": "text/plain"}, times=1)
    instance = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=instance, type=OpType.PROVISION)
    assert provision.error == "Broker answered 502 Bad Gateway with a body that is not JSON"
    assert "upstream" in OperationCall.objects.get(operation=provision, method="PUT").response_excerpt

    osb_broker.set_response("PUT", PUT, 201, HTML_PAGE, headers={"Content-Type": "text/html"}, times=1)
    second = instance_provision(plan=small, name="orders-db-2", namespace="team-a", requested_by=alice,
                                  parameters={"database_name": "orders"})
    run_operations()
    provision = Operation.objects.get(instance=second, type=OpType.PROVISION)
    assert provision.error.endswith("is not JSON: it is an HTML page") and "DOCTYPE" not in provision.error
    assert ServiceInstance.objects.get(pk=second.pk).state == InstanceState.FAILED
