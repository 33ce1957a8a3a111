"""Broker insight in the browser's pages and the admin: the broker page (scorecard, restrictions, sync history with
readable diffs), the list's score badge, and catalog restrictions in the admin form."""

from __future__ import annotations

import copy
import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from brokers import services
from brokers.models import Broker, CatalogSync, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog
from devtools.sample_broker.catalog import plan_id
from instances.models import ServiceInstance
from tests.brokers.test_admin import change_url, form_data, page_errors
from tests.conftest import BROKER_PASSWORD, BROKER_USER, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def changed(osb_broker: SampleBroker) -> Broker:
    """A broker whose second sync removed a plan with an instance and changed another's create schema."""
    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    broker = services.broker_register(name="test-broker", url=osb_broker.url, auth=auth)
    services.catalog_sync(broker_id=broker.pk, force=True)
    large = ServicePlan.objects.get(broker=broker, catalog_id=plan_id("postgresql", "standard-large"))
    ServiceInstance.objects.create(name="big", namespace="team-a", broker=broker, plan=large, state="ready")
    new = copy.deepcopy(catalog)
    postgres = new["services"][0]
    postgres["plans"] = [p for p in postgres["plans"] if p["name"] != "standard-large"]
    create = copy.deepcopy(postgres["plans"][0]["schemas"]["service_instance"]["create"]["parameters"])
    create["properties"]["pool_size"] = {"type": "integer"}
    postgres["plans"][0]["schemas"]["service_instance"]["create"]["parameters"] = create
    osb_broker.catalog = new
    services.catalog_sync(broker_id=broker.pk, force=True)
    return broker


def text(response: Any) -> str:
    html = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", unescape(html))


def test_the_broker_page_shows_the_scorecard_restrictions_and_readable_diffs(admin_user: Any, changed: Broker) -> None:
    response = signed_in(admin_user).get(f"/brokers/{changed.pk}/")

    assert response.status_code == 200
    page = text(response)
    changed.refresh_from_db()
    assert "Spec conformance" in page and "What to fix" in page
    assert re.search(r"Conformance score \d+ out of 100", response.content.decode())
    assert "Services carry the profile's display metadata" in page  # failing: status-page's metadata
    assert "service 'status-page' lacks metadata.longDescription" in page
    assert "What is offered" in page and "Everything in the broker's catalog." in page
    assert "Sync history" in page and "3 syncs, newest first" not in page and "2 syncs, newest first" in page
    assert "1 plan removed (1 instance affected); 1 plan changed" in page
    assert "\N{MINUS SIGN} postgresql / standard-large" in page and "gone from the broker's catalog" in page
    assert "1 instance affected" in page
    assert "~ postgresql / hobby schemas.service_instance.create" in page
    assert "Parameters for creating an instance: added pool_size" in page
    assert "Added services (7)" in page  # the first sync, further down


def test_the_broker_page_pages_its_sync_history(admin_user: Any, changed: Broker) -> None:
    first = CatalogSync.objects.filter(broker=changed).order_by("started_at").first()
    for _ in range(25):
        CatalogSync.objects.create(broker=changed, outcome=CatalogSync.Outcome.UNCHANGED, started_at=first.started_at)
    client = signed_in(admin_user)

    page_one, page_two = text(client.get(f"/brokers/{changed.pk}/")), text(client.get(f"/brokers/{changed.pk}/?page=2"))

    assert "27 syncs, newest first" in page_one and "Page 1 of 2" in page_one and "Older" in page_one
    assert "Page 2 of 2" in page_two and "Newer" in page_two


def test_the_broker_list_links_each_broker_to_its_page_with_a_score_badge(admin_user: Any, changed: Broker) -> None:
    changed.refresh_from_db()

    html = signed_in(admin_user).get("/brokers/").content.decode()

    assert f'href="/brokers/{changed.pk}/"' in html
    badge = re.search(r'<a class="score-badge score-(\w+)" href="/brokers/[^"]+/#conformance"[^>]*>(\d+)', html)
    assert badge is not None and int(badge.group(2)) == changed.conformance_score


def test_people_who_cannot_manage_brokers_do_not_see_the_page(alice: Any, changed: Broker) -> None:
    assert signed_in(alice).get(f"/brokers/{changed.pk}/").status_code == 404


def test_sync_now_on_the_broker_page_comes_back_to_it(admin_user: Any, changed: Broker) -> None:
    response = signed_in(admin_user).post(f"/brokers/{changed.pk}/sync/", {"next": "detail"})

    assert response.status_code == 302 and response["Location"] == f"/brokers/{changed.pk}/"


# --- catalog restrictions in the admin ----------------------------------------------------------------------------


def test_the_admin_form_edits_the_restrictions_and_remirrors_at_once(admin_user: Any, changed: Broker) -> None:
    client = signed_in(admin_user)
    data = form_data(name=changed.name, url=changed.url, secret="", service_rules="name==redis-cache",
                     plan_rules="free==true\nname!=x")

    response = client.post(change_url(changed), data)

    assert response.status_code == 302, page_errors(response)
    changed.refresh_from_db()
    assert changed.catalog_restrictions == {"services": ["name==redis-cache"], "plans": ["free==true", "name!=x"]}
    offered = set(ServicePlan.objects.filter(broker=changed, active=True).values_list("name", flat=True))
    assert offered == {"cache-free"}
    assert CatalogSync.objects.filter(broker=changed).first().trigger == CatalogSync.Trigger.RESTRICTIONS
    form = client.get(change_url(changed)).content.decode()
    assert "name==redis-cache</textarea>" in form and "free==true\nname!=x</textarea>" in form


def test_the_admin_form_names_a_bad_rule(admin_user: Any, changed: Broker) -> None:
    data = form_data(name=changed.name, url=changed.url, secret="", plan_rules="free==true\nprice<10")

    response = signed_in(admin_user).post(change_url(changed), data)

    assert response.status_code == 200
    assert "Plan rule 2 “price&lt;10”: write PROPERTY OPERATOR VALUE" in page_errors(response)
    changed.refresh_from_db()
    assert changed.catalog_restrictions == {"services": [], "plans": []}  # left as it was


def test_admin_changelist_and_sync_history_say_what_changed(admin_user: Any, changed: Broker, client: Client) -> None:
    client = signed_in(admin_user)

    changelist = text(client.get("/admin/brokers/catalogsync/"))
    broker_form = text(client.get(change_url(changed)))

    assert "1 plan removed (1 instance affected); 1 plan changed" in changelist
    assert "1 plan removed (1 instance affected); 1 plan changed" in broker_form
    assert "scorecard and sync history with diffs" in broker_form


def test_a_big_diff_shows_its_first_entries_and_says_how_many_more(admin_user: Any, changed: Broker) -> None:
    entries = [{"catalog_id": f"p{i}", "name": f"plan-{i}", "service": "s", "affected_instances": 0} for i in range(60)]
    sync = CatalogSync.objects.create(broker=changed, outcome=CatalogSync.Outcome.CHANGED,
                                      diff={"services": {}, "plans": {"added": entries}})

    page = text(signed_in(admin_user).get(f"/brokers/{changed.pk}/"))

    assert "Added plans (60)" in page and "s / plan-49" in page and "s / plan-50" not in page
    assert f"And 10 more (/api/v1/brokers/{changed.pk}/syncs/{sync.pk}/ lists them all)." in page
