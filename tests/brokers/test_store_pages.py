"""The store pages: marketplace (search, facets, htmx, pagination), service page, and broker health."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import caches
from django.db import connection
from django.db.models import F
from django.test import Client
from django.test.utils import CaptureQueriesContext

from brokers import services
from brokers.models import Broker, ServiceOffering, ServicePlan
from devtools.sample_broker import SampleBroker, build_catalog, generate_catalog, plan_id
from devtools.sample_broker.catalog import (
    ANALYTICS_ID,
    OBJECT_STORAGE_ID,
    POSTGRES_ID,
    RABBITMQ_ID,
    REDIS_ID,
    SEARCH_ID,
    STATUS_PAGE_ID,
)
from tests.conftest import BROKER_PASSWORD, BROKER_USER, free_port, join, signed_in

pytestmark = pytest.mark.django_db

ALL = {POSTGRES_ID, REDIS_ID, OBJECT_STORAGE_ID, RABBITMQ_ID, SEARCH_ID, ANALYTICS_ID, STATUS_PAGE_ID}
HOSTILE = (
    "Fast <b>and</b> safe.<script>alert('x')</script>\n\n"
    'Docs at https://docs.example.com/pg?a=1&b=2. Or <a href="javascript:alert(1)">click</a>.'
)


def register(url: str, name: str = "sample") -> Broker:
    auth = services.BrokerAuth(type="basic", username=BROKER_USER, secret=BROKER_PASSWORD)
    return services.broker_register(name=name, url=url, auth=auth)


def sync(broker: Broker) -> None:
    services.catalog_sync(broker_id=broker.pk, force=True)
    broker.refresh_from_db()


def service_doc(catalog: dict[str, Any], catalog_id: str) -> dict[str, Any]:
    return next(s for s in catalog["services"] if s["id"] == catalog_id)


@pytest.fixture
def catalog(osb_broker: SampleBroker) -> dict[str, Any]:
    document = build_catalog(osb_broker.url)
    postgres = service_doc(document, POSTGRES_ID)
    postgres["description"] += " Ships quokka extensions."
    postgres["metadata"]["longDescription"] = HOSTILE
    postgres["metadata"]["supportUrl"] = "javascript:alert(1)"
    del service_doc(document, STATUS_PAGE_ID)["metadata"]["imageUrl"]
    osb_broker.catalog = document
    return document


@pytest.fixture
def broker(catalog: dict[str, Any], osb_url: str) -> Broker:
    broker = register(osb_url)
    sync(broker)
    assert broker.status == Broker.Status.READY, broker.status_message
    return broker


@pytest.fixture
def client_alice(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def client_admin(admin_user: Any) -> Client:
    return signed_in(admin_user)


def page(client: Client, path: str = "/", headers: dict[str, str] | None = None, **params: Any) -> str:
    response = client.get(path, params, headers=headers)
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def catalog_ids(html: str) -> list[str]:
    """The catalog ids of the grid's cards, in page order (the landing view's cards above the grid left out)."""
    html = html.split('<h2 class="all-services">', 1)[-1]
    pks = re.findall(r'class="stretched" href="/services/([0-9a-f-]{36})/"', html)
    by_pk = {str(pk): cid for pk, cid in ServiceOffering.objects.values_list("pk", "catalog_id")}
    return [by_pk[pk] for pk in pks]


def card(html: str, title: str) -> str:
    """The HTML of the card whose link text is `title`."""
    for chunk in html.split('<article class="svc-card">')[1:]:
        if f">{title}</a>" in chunk:
            return chunk.split("</article>")[0]
    raise AssertionError(f"no card {title!r}")


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/services/{POSTGRES_ID}/", "/brokers/"])
def test_store_pages_require_login(path: str) -> None:
    response = Client().get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


# --- marketplace ------------------------------------------------------------------------------------


def test_marketplace_cards_show_icon_name_provider_description_tags_and_price(
    client_alice: Client, broker: Broker, catalog: dict[str, Any]
) -> None:
    html = page(client_alice)

    assert set(catalog_ids(html)) == ALL
    assert "7 services" in html
    postgres = card(html, "PostgreSQL")
    assert f'src="{osb_broker_icon(catalog, POSTGRES_ID)}"' in postgres
    assert "Catalog Portal Sample Broker" in postgres
    assert "Managed PostgreSQL relational databases." in postgres
    assert re.findall(r'<li class="tag">([^<]+)</li>', postgres) == [
        "postgresql",
        "sql",
        "relational",
    ]  # 3 max
    assert '<span class="badge free">Free</span>' in postgres
    # Paid only: the cheapest plan's price, recurring costs before usage costs.
    assert '<span class="badge paid">from $199/month</span>' in card(html, "Slow Analytics Warehouse")
    assert '<span class="badge paid">from $0.004/GB-month</span>' in card(html, "Object Storage")
    # No imageUrl: a letter tile instead of an image.
    status = card(html, "Status Page")
    assert "<img" not in status and re.search(r'class="icon tile"[^>]*>S</span>', status)


def osb_broker_icon(catalog: dict[str, Any], catalog_id: str) -> str:
    return service_doc(catalog, catalog_id)["metadata"]["imageUrl"]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("quokka", {POSTGRES_ID}),  # description
        ("redis", {REDIS_ID}),  # name and display name
        ("Object", {OBJECT_STORAGE_ID}),  # display name, any case
        ("amqp", {RABBITMQ_ID}),  # tag
        ("sql warehouse", {ANALYTICS_ID}),  # every word must match
        ("no-such-thing", set()),
    ],
)
def test_search_over_name_description_and_tags(
    client_alice: Client, broker: Broker, q: str, expected: set[str]
) -> None:
    html = page(client_alice, q=q)
    assert set(catalog_ids(html)) == expected
    assert f'value="{q}"' in html  # the search box keeps the query


def test_facets_filter_combine_and_live_in_the_url(client_alice: Client, broker: Broker) -> None:
    assert set(catalog_ids(page(client_alice, tag="sql"))) == {POSTGRES_ID, ANALYTICS_ID}
    # Values of one facet combine with OR, facets with AND
    assert set(catalog_ids(page(client_alice, tag=["sql", "caching"]))) == {POSTGRES_ID, ANALYTICS_ID, REDIS_ID}
    assert set(catalog_ids(page(client_alice, tag=["sql", "caching"], price="paid"))) == {ANALYTICS_ID}
    assert set(catalog_ids(page(client_alice, provider="Slow Data Inc."))) == {ANALYTICS_ID}
    assert set(catalog_ids(page(client_alice, broker="sample"))) == ALL
    assert set(catalog_ids(page(client_alice, broker="other"))) == set()
    assert set(catalog_ids(page(client_alice, price="free"))) == ALL - {ANALYTICS_ID, OBJECT_STORAGE_ID}
    assert set(catalog_ids(page(client_alice, price="paid"))) == {ANALYTICS_ID, OBJECT_STORAGE_ID}
    assert set(catalog_ids(page(client_alice, price=["free", "paid"]))) == ALL
    combined = page(client_alice, q="sql", tag="sql", price="free", provider="Catalog Portal Sample Broker")
    assert catalog_ids(combined) == [POSTGRES_ID]

    # The state of the form comes back from the URL: a shared link shows the same page.
    assert re.search(r'name="tag" value="sql" checked', combined)
    assert re.search(r'name="price" value="free" checked', combined)
    assert not re.search(r'name="price" value="paid" checked', combined)
    assert re.search(r'name="provider" value="Catalog Portal Sample Broker" checked', combined)


def facet_counts(html: str, param: str) -> dict[str, int]:
    pattern = rf'name="{param}" value="([^"]+)"[^>]*>.*?class="count"[^>]*>(\d+)<'
    return {value: int(n) for value, n in re.findall(pattern, html)}


def test_facet_counts(client_alice: Client, broker: Broker) -> None:
    html = page(client_alice)
    assert facet_counts(html, "tag")["sql"] == 2
    assert facet_counts(html, "tag")["caching"] == 1
    assert facet_counts(html, "provider") == {"Catalog Portal Sample Broker": 6, "Slow Data Inc.": 1}
    assert facet_counts(html, "broker") == {"sample": 7}
    assert facet_counts(html, "price") == {"free": 5, "paid": 2}

    # Each facet is counted with the *other* facets applied: its sibling values stay visible with the count
    # that ticking them adds (values of one facet combine with OR).
    html = page(client_alice, tag="sql", provider="Slow Data Inc.")
    assert facet_counts(html, "tag") == {"sql": 1, "analytics": 1, "olap": 1, "warehouse": 1}
    assert facet_counts(html, "provider") == {"Catalog Portal Sample Broker": 1, "Slow Data Inc.": 1}
    assert facet_counts(html, "price") == {"free": 0, "paid": 1}
    html = page(client_alice, tag="sql")
    tags = facet_counts(html, "tag")
    assert tags["sql"] == 2 and tags["caching"] == 1  # siblings of a ticked tag keep their counts
    assert set(catalog_ids(html)) == {POSTGRES_ID, ANALYTICS_ID}


def test_search_finds_services_by_provider_and_broker_name_best_matches_first(
    client_alice: Client, broker: Broker
) -> None:
    assert set(catalog_ids(page(client_alice, q="slow data"))) == {ANALYTICS_ID}  # the provider's name
    assert set(catalog_ids(page(client_alice, q="sample"))) == ALL  # the broker's name
    # Best match first: the service named "Redis Cache" before services that only mention caching
    html = page(client_alice, q="redis")
    assert catalog_ids(html)[0] == REDIS_ID and '<option value="" selected>Best match</option>' in html
    assert "sort=" not in html.split('class="chip"')[0].split("results-count")[0]
    by_name = page(client_alice, q="redis", sort="name")
    assert 'value="name" selected' in by_name


def test_the_landing_view_leads_with_categories_new_and_most_provisioned_services(
    client_alice: Client, broker: Broker, alice: Any
) -> None:
    from instances.services.instances import instance_provision

    html = page(client_alice)
    assert "Browse by category" in html and "Recently added" in html and "All services" in html
    assert re.search(r'<a class="category" href="/\?tag=sql"[^>]*>sql <span class="count">2</span>', html)
    assert "Most provisioned here" not in html  # nothing provisioned yet
    # Provisions change "most provisioned": the cached landing follows on the next request
    redis = ServicePlan.objects.filter(offering__catalog_id=REDIS_ID).order_by("position").first()
    for name in ("c1", "c2"):
        instance_provision(plan=redis, name=name, namespace="team-a", requested_by=alice, parameters={})
    html = page(client_alice)
    popular = html.split("Most provisioned here")[1].split("</section>")[0]
    assert catalog_ids(popular) == [REDIS_ID] and "Provisioned 2 times here" in popular
    # Not on a search or a filtered page
    assert "Browse by category" not in page(client_alice, q="sql")
    assert "Browse by category" not in page(client_alice, tag="sql")


def test_active_filters_show_as_removable_chips(client_alice: Client, broker: Broker) -> None:
    html = page(client_alice, q="sql", tag=["sql", "olap"], price="paid")
    chips = {label: url for url, label in re.findall(r'<a class="chip" href="([^"]+)"[^>]*>([^<]+)<', html)}
    assert set(chips) == {"Search: “sql”", "Tag: sql", "Tag: olap", "Paid"}
    removed = parse_qs(urlsplit(chips["Tag: olap"].replace("&amp;", "&")).query)
    assert removed == {"q": ["sql"], "tag": ["sql"], "price": ["paid"]}
    assert re.search(r'<a class="clear" href="/"', html)


def test_htmx_request_gets_only_the_results_fragment_and_a_canonical_url(
    client_alice: Client, broker: Broker
) -> None:
    response = client_alice.get("/", {"q": "", "tag": "sql", "sort": "name"}, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "<header" not in html
    assert html.lstrip().startswith('<div id="store-results"')
    assert set(catalog_ids(html)) == {POSTGRES_ID, ANALYTICS_ID}
    assert response["HX-Push-Url"] == "/?tag=sql"  # defaults left out
    assert "HX-Request" in response["Vary"]

    # A full page for a history restore or a boosted link.
    restore = client_alice.get("/", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.content.decode()
    plain = client_alice.get("/")
    assert "<html" in plain.content.decode() and 'hx-get="/"' in plain.content.decode()


def test_empty_state_names_the_filters_and_offers_to_clear_them(client_alice: Client, broker: Broker) -> None:
    html = page(client_alice, q="zebra", tag="sql")
    assert "No services match" in html
    assert "<strong>“zebra”</strong> and <strong>Tag: sql</strong>" in html
    assert re.search(r'href="/"[^>]*>Clear all filters</a>', html)


def test_empty_catalog_and_unavailable_catalog(client_alice: Client, db: Any) -> None:
    assert "No services yet" in page(client_alice)

    broker = register(f"http://127.0.0.1:{free_port()}", name="down")
    sync(broker)
    assert broker.status == Broker.Status.FAILED
    html = page(client_alice)
    assert "The catalog is unavailable right now" in html
    assert "failed to sync" not in html  # the banner is for admins


def test_failed_broker_banner_is_for_admins_only(
    client_alice: Client, client_admin: Client, broker: Broker
) -> None:
    down = register(f"http://127.0.0.1:{free_port()}", name="flaky")
    sync(down)
    assert down.status == Broker.Status.FAILED

    admin_html = page(client_admin)
    assert "1 broker failed to sync" in admin_html and "<strong>flaky</strong>" in admin_html
    assert len(catalog_ids(admin_html)) == 7  # the rest of the store is intact
    assert "failed to sync" not in page(client_alice)


def test_bad_parameters_are_ignored(client_alice: Client, broker: Broker) -> None:
    html = page(client_alice, price="gratis", sort="random", page="abc")
    assert set(catalog_ids(html)) == ALL
    assert page(client_alice, page="999").count('class="svc-card"') == 7  # last page


@pytest.fixture
def generated(osb_broker: SampleBroker, osb_url: str) -> Broker:
    osb_broker.catalog = generate_catalog(services=30, plans_per_service=3, seed=3)
    broker = register(osb_url, name="generated")
    sync(broker)
    assert broker.status == Broker.Status.READY, broker.status_message
    return broker


def test_pagination_keeps_the_filters(client_alice: Client, generated: Broker) -> None:
    first = page(client_alice, q="gen")
    assert "30 services" in first and len(catalog_ids(first)) == 24
    assert 'href="/?q=gen&amp;page=2"' in first and "page 1 of 2" in first
    second = page(client_alice, q="gen", page=2)
    assert len(catalog_ids(second)) == 6
    assert not set(catalog_ids(first)) & set(catalog_ids(second))
    assert 'href="/?q=gen"' in second  # back to page 1: no page parameter


def test_sort_by_name_provider_and_newest(client_alice: Client, generated: Broker) -> None:
    offerings = list(ServiceOffering.objects.all())
    by_name = sorted(offerings, key=lambda o: (o.title.lower(), o.name))
    assert catalog_ids(page(client_alice))[:24] == [o.catalog_id for o in by_name][:24]

    by_provider = page(client_alice, sort="provider")
    providers = [ServiceOffering.objects.get(catalog_id=c).provider.lower() for c in catalog_ids(by_provider)]
    assert providers == sorted(providers)
    assert re.search(r'<option value="provider" selected>', by_provider)

    newest = offerings[-1]
    ServiceOffering.objects.filter(pk=newest.pk).update(created_at=newest.created_at.replace(year=2999))
    assert catalog_ids(page(client_alice, sort="newest"))[0] == newest.catalog_id


def queries(client: Client, path: str, headers: dict[str, str] | None = None, **params: Any) -> int:
    """Statements of the page computed from scratch (the store cache emptied: no page, no card kept)."""
    caches["store"].clear()
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, params, headers=headers)
    assert response.status_code == 200
    assert 'class="stretched"' in response.content.decode() or path != "/"  # a page with cards
    return len(captured.captured_queries)


def test_query_counts_do_not_grow_with_the_catalog(
    client_admin: Client, osb_broker: SampleBroker, osb_url: str
) -> None:
    broker = register(osb_url, name="generated")
    counts = []
    for size in (10, 30):
        osb_broker.catalog = generate_catalog(services=size, plans_per_service=3)
        sync(broker)
        assert ServiceOffering.objects.filter(active=True).count() == size
        offering = ServiceOffering.objects.filter(active=True).order_by("name").first()
        counts.append(
            (
                queries(client_admin, "/"),
                queries(client_admin, "/", q="gen", price="free", sort="provider", broker="generated"),
                queries(client_admin, "/", q="gen", headers={"HX-Request": "true"}),
                queries(client_admin, f"/services/{offering.pk}/"),
            )
        )
    assert counts[0] == counts[1], counts


# --- the page cache: repeated pages skip the catalog queries, and a change shows at once -----------------


def results(html: str) -> str:
    """The marketplace's results part (what is cached): the page around it carries a fresh CSRF token."""
    return html.split('<div id="store-results"')[1].split('<div id="store-announcer"')[0]


def catalog_queries(client: Client, path: str = "/", headers: dict[str, str] | None = None,
                    **params: Any) -> tuple[str, list[str]]:
    """The page, and those of its SQL statements that read the mirrored catalog."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path, params, headers=headers)
    assert response.status_code == 200
    sql = [q["sql"] for q in captured.captured_queries]
    return response.content.decode(), [q for q in sql if "brokers_serviceoffering" in q or "brokers_serviceplan" in q]


@pytest.fixture
def client_carol(carol: Any) -> Client:
    return signed_in(carol)


@pytest.mark.parametrize("headers", [None, {"HX-Request": "true"}], ids=["page", "htmx"])
def test_a_repeated_page_does_not_query_the_catalog(
    client_alice: Client, broker: Broker, headers: dict[str, str] | None
) -> None:
    first, first_sql = catalog_queries(client_alice, headers=headers, q="sql", sort="provider")
    again, again_sql = catalog_queries(client_alice, headers=headers, q="sql", sort="provider")

    assert first_sql and not again_sql
    assert again == first if headers else results(again) == results(first)
    assert "PostgreSQL" in again


def test_a_new_search_reuses_the_cards_earlier_pages_rendered(client_alice: Client, broker: Broker) -> None:
    page(client_alice)  # the landing view's grid: every card of this small catalog rendered, and kept

    html, sql = catalog_queries(client_alice, q="sql")  # a search nobody made: its page is computed...
    assert sql
    card_reads = [q for q in sql if '"image_url"' in q or '"costs"' in q]
    assert not card_reads  # ...but its cards come from the cache (no card columns, no plan prices read)

    caches["store"].clear()
    cold, cold_sql = catalog_queries(client_alice, q="sql")
    assert [q for q in cold_sql if '"image_url"' in q or '"costs"' in q]
    assert results(html) == results(cold)  # the same cards as when rendered from scratch


def test_a_card_follows_plan_visibility_like_its_page(
    client_alice: Client, client_carol: Client, team_a: Any, broker: Broker
) -> None:
    # Cards are kept per visibility scope: a team that may see only the paid plans of a service gets a card with
    # a price, another team's card keeps "Free".
    assert '<span class="badge free">Free</span>' in card(page(client_alice), "PostgreSQL")
    assert '<span class="badge free">Free</span>' in card(page(client_carol), "PostgreSQL")
    for plan in ServicePlan.objects.filter(offering__catalog_id=POSTGRES_ID, free=True):
        services.plan_set_visibility(plan=plan, visibility="teams", teams=[team_a])
    assert '<span class="badge free">Free</span>' in card(page(client_alice, q="sql"), "PostgreSQL")
    assert '<span class="badge paid">' in card(page(client_carol, q="sql"), "PostgreSQL")


def test_a_repeated_service_page_does_not_query_the_catalog_and_follows_changes(
    client_alice: Client, client_carol: Client, team_a: Any, broker: Broker
) -> None:
    postgres = ServiceOffering.objects.get(catalog_id=POSTGRES_ID)
    path = f"/services/{postgres.pk}/"
    _, first_sql = catalog_queries(client_alice, path)
    again, again_sql = catalog_queries(client_alice, path)
    assert first_sql and not again_sql
    assert "<h1>PostgreSQL</h1>" in again and "<title>PostgreSQL · Catalog Portal</title>" in again
    assert again.count(">Provision</a>") == 4
    assert client_carol.get(path).status_code == 200

    hobby = ServicePlan.objects.get(catalog_id=plan_id("postgresql", "hobby"))
    services.plan_set_visibility(plan=hobby, visibility="teams", teams=[team_a])
    assert page(client_alice, path).count(">Provision</a>") == 4
    assert page(client_carol, path).count(">Provision</a>") == 3
    for plan in ServicePlan.objects.filter(offering=postgres):
        services.plan_set_visibility(plan=plan, visibility="teams", teams=[team_a])
    assert client_carol.get(path).status_code == 404


def test_people_who_see_the_same_plans_share_pages_and_others_do_not(
    client_alice: Client, client_carol: Client, django_user_model: Any, team_a: Any, broker: Broker
) -> None:
    catalog_queries(client_alice)
    dave = join(django_user_model.objects.create_user("dave", "dave@example.com", "dave-pass-123"), team_a, "viewer")
    client_dave = signed_in(dave)
    assert not catalog_queries(client_dave)[1]  # same team as alice: her page
    assert catalog_queries(client_carol)[1]  # team B may see other plans: its own page


def test_a_catalog_change_shows_at_once(
    client_alice: Client, broker: Broker, catalog: dict[str, Any], osb_broker: SampleBroker
) -> None:
    for headers in (None, {"HX-Request": "true"}):
        assert REDIS_ID in catalog_ids(page(client_alice, headers=headers))
    catalog["services"] = [s for s in catalog["services"] if s["id"] != REDIS_ID]
    service_doc(catalog, POSTGRES_ID)["description"] = "Now with more quokkas."
    osb_broker.catalog = catalog
    sync(broker)

    for headers in (None, {"HX-Request": "true"}):
        html = page(client_alice, headers=headers)
        assert set(catalog_ids(html)) == ALL - {REDIS_ID}
        assert "Now with more quokkas." in card(html, "PostgreSQL") and "6 services" in html


def test_plan_visibility_and_team_membership_changes_show_at_once(
    client_alice: Client, client_carol: Client, admin_user: Any, team_a: Any, broker: Broker
) -> None:
    from teams.services import team_member_set

    assert POSTGRES_ID in catalog_ids(page(client_carol)) and POSTGRES_ID in catalog_ids(page(client_alice))
    for plan in ServicePlan.objects.filter(offering__catalog_id=POSTGRES_ID):
        services.plan_set_visibility(plan=plan, visibility="teams", teams=[team_a])

    assert POSTGRES_ID not in catalog_ids(page(client_carol))  # team B: no plan of it left to see
    assert POSTGRES_ID in catalog_ids(page(client_alice))

    team_member_set(team=team_a, username="carol", role="viewer", requested_by=admin_user)
    assert POSTGRES_ID in catalog_ids(page(client_carol))


def test_broker_rename_and_failure_show_at_once(
    client_admin: Client, broker: Broker
) -> None:
    assert ">sample<" in page(client_admin) and "failed to sync" not in page(client_admin)
    services.broker_update(broker=broker, name="renamed", url=f"http://127.0.0.1:{free_port()}")
    html = page(client_admin)
    assert ">renamed<" in html and ">sample<" not in html

    sync(broker)
    assert broker.status == Broker.Status.FAILED
    html = page(client_admin)
    assert "1 broker failed to sync" in html and "<strong>renamed</strong>" in html
    assert len(catalog_ids(html)) == 7


# --- service page -------------------------------------------------------------------------------------


def test_service_page_header_description_and_plans(client_alice: Client, broker: Broker) -> None:
    postgres = ServiceOffering.objects.get(catalog_id=POSTGRES_ID)
    html = page(client_alice, f"/services/{postgres.pk}/")

    assert "<h1>PostgreSQL</h1>" in html
    assert "by Catalog Portal Sample Broker" in html
    assert all(
        f'<li class="tag">{tag}</li>' in html for tag in ("postgresql", "sql", "relational", "database")
    )
    assert ">Bindable</li>" in html and ">Plan updatable</li>" in html
    assert 'href="https://docs.example.com/services/postgresql"' in html
    assert "javascript:" not in html.split('id="about-h"')[0]  # the bad support URL is not linked
    assert ">Support" not in html

    titles = re.findall(r'<h3 id="plan-[^"]+">([^<]+)</h3>', html)
    assert titles == ["Hobby", "Standard Small", "Standard Large", "HA Cluster"]  # free, then cheapest
    assert '$15</span><span class="per">/month' in html
    hobby = ServicePlan.objects.get(catalog_id=plan_id("postgresql", "hobby"))
    assert f'href="/instances/new/?plan={hobby.pk}"' in html
    assert html.count(">Provision</a>") == 4
    assert "<li>Shared CPU</li>" in html  # bullets as a checklist
    assert re.search(r"<dt>Version</dt><dd>1\.2\.0</dd>", html)


def test_plans_say_when_they_are_asynchronous_and_preview_their_parameters(
    client_alice: Client, broker: Broker
) -> None:
    postgres = ServiceOffering.objects.get(catalog_id=POSTGRES_ID)
    html = page(client_alice, f"/services/{postgres.pk}/")
    plans = dict(re.findall(r'<h3 id="plan-[^"]+">([^<]+)</h3>(.*?)</article>', html, re.S))
    slow = [name for name, body in plans.items() if "In the background, up to" in body]
    for plan in ServicePlan.objects.filter(offering=postgres, active=True):
        body = plans[plan.title]
        if plan.maximum_polling_duration:
            assert f"up to {plan.maximum_polling_duration // 60} min" in body, plan.title
        else:
            assert "Time not stated" in body
    assert slow  # the sample catalog has asynchronous PostgreSQL plans
    first = next(iter(plans.values()))
    assert "Database name" in first and "required" in first and "parameter" in first
    assert "featured" not in html  # no plan looks chosen before anyone chose


def test_broker_text_is_escaped_and_only_http_links_are_made(client_alice: Client, broker: Broker) -> None:
    postgres = ServiceOffering.objects.get(catalog_id=POSTGRES_ID)
    html = page(client_alice, f"/services/{postgres.pk}/")
    about = html.split('<div class="prose">')[1].split("</div>")[0]

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in about
    assert "Fast &lt;b&gt;and&lt;/b&gt; safe." in about
    assert about.count("<p>") == 2
    assert (
        '<a href="https://docs.example.com/pg?a=1&amp;b=2" rel="nofollow noopener noreferrer">'
        "https://docs.example.com/pg?a=1&amp;b=2</a>." in about
    )
    assert 'href="javascript' not in about and "&lt;a href=&quot;javascript:alert(1)&quot;&gt;" in about


def test_marketplace_cards_and_facets_escape_broker_text(client_alice: Client, broker: Broker) -> None:
    # Cards and facet options are built in Python (brokers/templatetags/store.py), not by the template engine:
    # every value from a broker must still come out escaped.
    hostile = "<script>alert('x')</script>"
    ServiceOffering.objects.filter(catalog_id=POSTGRES_ID).update(
        display_name=f"PG {hostile}", provider=f"Prov {hostile}", description=f'Desc {hostile} & "q"',
        tags=[f"tag{hostile}", "sql"], tag_index=f"|tag{hostile.lower()}|sql|",
        image_url='https://icons.example.com/pg.png?a=1&b="><script>alert(1)</script>',
    )
    Broker.objects.filter(pk=broker.pk).update(catalog_revision=F("catalog_revision") + 1)
    html = page(client_alice)

    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert "<script>alert" not in html
    postgres = card(html, f"PG {escaped}")
    assert f'<p class="svc-provider">Prov {escaped}</p>' in postgres
    assert f'<p class="desc">Desc {escaped} &amp; &quot;q&quot;</p>' in postgres
    assert f'<li class="tag">tag{escaped}</li>' in postgres
    assert 'src="https://icons.example.com/pg.png?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in postgres
    assert f'name="provider" value="Prov {escaped}"><span class="check-label">Prov {escaped}</span>' in html
    assert f'name="tag" value="tag{escaped}"><span class="check-label">tag{escaped}</span>' in html


def test_service_page_of_unknown_service_is_404(client_alice: Client, broker: Broker) -> None:
    assert client_alice.get("/services/00000000-0000-0000-0000-000000000000/").status_code == 404


# --- broker health ------------------------------------------------------------------------------------


def test_broker_health_is_for_staff_only(client_alice: Client, broker: Broker) -> None:
    assert client_alice.get("/brokers/").status_code == 404
    assert client_alice.post(f"/brokers/{broker.pk}/sync/").status_code == 404
    assert ">Brokers</a>" not in page(client_alice)


def test_broker_health_lists_status_counts_and_errors(client_admin: Client, broker: Broker) -> None:
    down = register(f"http://127.0.0.1:{free_port()}", name="flaky")
    sync(down)
    html = page(client_admin, "/brokers/")

    sample_row = html.split(f'id="broker-{broker.pk}"')[1].split("</tr>")[0]
    assert '<span class="status ready">Ready</span>' in sample_row
    assert re.findall(r'<td class="num"[^>]*>(\d+)</td>', sample_row) == [
        "7",
        str(ServicePlan.objects.count()),
    ]
    assert "just now</time>" in sample_row
    flaky_row = html.split(f'id="broker-{down.pk}"')[1].split("</tr>")[0]
    assert '<span class="status failed">Failed</span>' in flaky_row and "Never" in flaky_row
    assert down.status_message[:40] in flaky_row
    assert 'href="/brokers/" aria-current="page"' in html


def test_sync_now_requests_a_sync_with_csrf(
    admin_user: Any, broker: Broker, django_capture_on_commit_callbacks: Any
) -> None:
    client = signed_in(admin_user, enforce_csrf_checks=True)
    assert client.post(f"/brokers/{broker.pk}/sync/").status_code == 403  # no token

    html = page(client, "/brokers/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/brokers/{broker.pk}/sync/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/brokers/"
    assert len(callbacks) == 1  # the sync task is enqueued
    broker.refresh_from_db()
    assert broker.sync_trigger == "manual" and broker.next_sync_at is not None

    fragment = client.post(
        f"/brokers/{broker.pk}/sync/", {"csrfmiddlewaretoken": token}, headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 200
    text = fragment.content.decode()
    assert text.lstrip().startswith(f'<tr id="broker-{broker.pk}"') and "Sync requested" in text
