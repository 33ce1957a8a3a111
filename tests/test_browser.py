"""The store as people use it, in headless Chromium (Debian's package, driven by Playwright).

Two tests share one browser:

* the whole flow with a real Celery worker: log in, browse, search and filter, compare plans, provision with the
  generated form, watch the instance become ready, bind, reveal a credential, unbind, deprovision;
* every other page state, with a seeded portal (the sample catalog plus a 1,000-service broker, instances that
  are ready, failed, or polled 90 times) as a developer of one team, a viewer and a platform admin.

At every state `Checker` (tests/browser.py) asserts that the page is exactly as wide as the screen at 1280 and at
390 px, runs axe-core (0 serious, 0 critical), and saves a screenshot of each width to test-artifacts/browser/.
Skipped when Chromium, Playwright or axe-core is missing, unless REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone

from brokers.models import Broker
from devtools.kube_standin import KubeStandIn
from devtools.sample_broker import SampleBroker, generate_catalog
from instances.models import Operation, ServiceBinding, ServiceInstance, UpgradeBatch, UpgradeItem
from instances.services.bindings import binding_create
from instances.services.instances import instance_provision
from instances.states import OpType
from tests.browser import ARTIFACTS, LAUNCH_ARGS, PHONE, WIDE, Checker, require_browser, watch_problems
from tests.conftest import BROKER_PASSWORD, BROKER_USER, Workers, join, make_team, wait_for
from tests.instances.helpers import mirrored_broker, plan, record_polls, run_operations

pytestmark = [pytest.mark.e2e]

STEP_MS = 15_000  # one page action or check
WORK_MS = 90_000  # something a worker does (provision, bind, unbind, deprovision)
PASSWORD = "admin-pass-123"  # conftest's admin_user
RED = "rgb(180, 35, 24)"  # --danger


@pytest.fixture(scope="module")
def sync_api() -> Any:
    """Playwright's sync API; asked for first, so a missing browser skips before any server or worker starts."""
    return require_browser()


@pytest.fixture(scope="module")
def browser(sync_api: Any) -> Iterator[Any]:
    """One Chromium for the module. Playwright's sync API keeps an event loop running in this thread; the ORM
    calls the tests make between browser steps are plain synchronous code all the same."""
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    Checker.reset_artifacts()
    sync_api.expect.set_options(timeout=STEP_MS)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
        yield chromium
        chromium.close()
    if saved is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


class Session:
    """A signed-in person: a browser context of their own, with the problems it met."""

    def __init__(self, browser: Any, base: str, username: str, password: str, prefix: str, *,
                 javascript: bool = True) -> None:
        self.context = browser.new_context(viewport=WIDE, locale="en-US", java_script_enabled=javascript)
        self.page = self.context.new_page()
        self.page.set_default_timeout(STEP_MS)
        self.problems = watch_problems(self.page)
        self.check = Checker(self.page, prefix)
        self.base = base
        self.username, self.password = username, password

    def login(self, *, check: bool = False) -> Any:
        page = self.page
        page.goto(self.base + "/login/")
        page.get_by_label("Username").fill(self.username)
        page.get_by_label("Password").fill(self.password)
        if check:
            self.check("login")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"^(?!.*/login/).*$"))
        return page

    def close(self) -> None:
        self.context.close()


def _failure_shot(page: Any) -> None:
    try:
        page.set_viewport_size(WIDE)
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
    except Exception:
        pass


# --- the whole flow, with a real worker ------------------------------------------------------------------------


@pytest.fixture
def broker(osb_broker: SampleBroker) -> Iterator[SampleBroker]:
    """Asynchronous operations that take a moment, so the instance page has something to follow."""
    saved = (osb_broker.async_seconds, osb_broker.async_mode)
    osb_broker.async_mode, osb_broker.async_seconds = "always", 1.0
    yield osb_broker
    osb_broker.async_seconds, osb_broker.async_mode = saved


@pytest.fixture
def catalog(broker: SampleBroker, osb_url: str) -> Broker:
    return mirrored_broker(osb_url)


@pytest.fixture
def worker(kube: KubeStandIn, workers: Workers) -> Any:
    """A real worker with beat; it reaches the Kubernetes stand-in through KUBECONFIG like a cluster. A rotated
    binding's predecessor is unbound 2 s after its successor's credentials are in the Secret."""
    return workers.start(beat=True, K8S_RECONCILE_SECONDS="2", K8S_RETRY_CAP_SECONDS="2",
                         BINDING_ROTATION_GRACE_SECONDS="2")


def test_a_person_provisions_binds_and_deprovisions_in_the_browser(
    sync_api: Any, browser: Any, live_server: Any, admin_user: Any, catalog: Broker, worker: Any,
    kube: KubeStandIn, broker: SampleBroker,
) -> None:
    """All database work (user, catalog mirror) is done before the browser starts; the test only drives it."""
    person = Session(browser, live_server.url, "admin", PASSWORD, "flow")
    try:
        _walk_through(person, sync_api.expect, kube, broker)
    except BaseException:
        _failure_shot(person.page)
        raise
    finally:
        person.close()
    assert not person.problems, person.problems


def _walk_through(person: Session, expect: Any, kube: KubeStandIn, broker: SampleBroker) -> None:
    page, base, check = person.page, person.base, person.check
    # --- log in ---------------------------------------------------------------------------------------------
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    person.login(check=True)

    # --- browse ---------------------------------------------------------------------------------------------
    expect(page.get_by_role("heading", name="Marketplace", level=1)).to_be_visible()
    expect(page).to_have_url(base + "/")
    results = page.locator("#store-results")
    count = page.locator("#results-count")
    expect(count).to_have_text(re.compile(r"^\d+ services$"))
    total = int(count.inner_text().split()[0])
    grid = results.locator("ul.cards:not(.compact) article.svc-card")
    expect(grid).to_have_count(total)
    for name in ("PostgreSQL", "Redis Cache"):
        expect(grid.get_by_role("link", name=name, exact=True)).to_be_visible()
    check("marketplace")

    # --- filter and search (both live, through htmx) --------------------------------------------------------
    chips = results.get_by_role("list", name="Active filters")
    price = results.get_by_role("group", name="Price")
    price.get_by_role("checkbox", name=re.compile(r"^Free\s*\d+$")).check()
    expect(page).to_have_url(re.compile(r"/\?price=free$"))
    expect(chips).to_contain_text("Free")
    expect(count).not_to_have_text(f"{total} services")
    free = int(count.inner_text().split()[0])
    assert 0 < free < total, (free, total)
    expect(grid).to_have_count(free)
    expect(results.get_by_role("link", name="Object Storage", exact=True)).to_have_count(0)  # paid only
    page.get_by_role("searchbox", name="Search services").fill("cache")
    expect(page).to_have_url(re.compile(r"/\?q=cache&price=free$"))
    expect(chips).to_contain_text("Search: “cache”")
    expect(count).to_have_text("1 service")
    expect(grid).to_have_count(1)
    expect(results.get_by_role("link", name="Redis Cache", exact=True)).to_be_visible()
    expect(price.get_by_role("checkbox", name=re.compile(r"^Free\s*\d+$"))).to_be_checked()
    check("filter-and-search")

    # --- open the service and compare its plans -------------------------------------------------------------
    results.get_by_role("link", name="Redis Cache", exact=True).click()
    expect(page.get_by_role("heading", name="Redis Cache", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Marketplace")
    comparison = page.get_by_role("region", name="Plan comparison")
    plans = comparison.get_by_role("article")
    expect(plans).to_have_count(3)
    expect(plans.get_by_role("heading", level=3)).to_have_text(["Free 25 MB", "1 GB", "8 GB HA"])  # cheapest first
    free_plan = comparison.get_by_role("article", name="Free 25 MB")
    expect(free_plan.locator(".price")).to_have_text("Free")
    expect(comparison.get_by_role("article", name="1 GB").locator(".price")).to_contain_text("9")
    expect(free_plan.get_by_role("list", name="Features")).to_contain_text("25 MB memory")
    check("service")

    # --- provision with the generated form ------------------------------------------------------------------
    free_plan.get_by_role("link", name="Provision").click()
    expect(page.get_by_role("heading", name="New Redis Cache instance")).to_be_visible()
    form = page.locator("#provision-form")
    form.get_by_label("Name", exact=True).fill("cache-e2e")
    form.get_by_label("Namespace", exact=True).fill("team-a")
    form.get_by_label("Eviction policy").select_option("volatile-lru")
    form.get_by_label("Persist to disk (AOF)").check()
    form.get_by_label("Number of logical databases").fill("4")
    form.get_by_role("button", name="Preview request").click()
    preview = page.locator("#request-preview")
    expect(preview).to_contain_text('"maxmemory_policy": "volatile-lru"')
    expect(preview).to_contain_text('"databases": 4')
    check("provision-preview")  # the preview stays inside the screen at both widths
    page.get_by_role("button", name="Provision Free 25 MB").click()

    # --- watch the instance become ready --------------------------------------------------------------------
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}/$"))
    instance_id = page.url.rstrip("/").rsplit("/", 1)[1]
    header = page.locator("#instance-status .inst-head")
    expect(header.get_by_role("heading", level=1)).to_contain_text("cache-e2e")
    happening = page.get_by_role("region", name="What is happening")
    expect(happening).to_contain_text(re.compile(r"Provisioning (in progress|succeeded)"))
    expect(header.get_by_role("link", name=re.compile("Open dashboard"))).to_have_count(0)  # not ready yet
    expect(header.locator(".status-pill")).to_have_text("Ready", timeout=WORK_MS)
    expect(happening).to_contain_text("Provisioning succeeded")
    expect(header.get_by_role("link", name=re.compile("Open dashboard"))).to_be_visible()
    # The forms below were reloaded when the status poll stopped: bindings can be created now.
    bindings = page.get_by_role("region", name=re.compile(r"^Bindings"))
    expect(bindings.get_by_text("New binding")).to_be_visible()
    check("instance-ready")
    put = broker.requests_for("PUT", rf"/v2/service_instances/{instance_id}")
    assert put and put[-1].json["parameters"]["maxmemory_policy"] == "volatile-lru", put
    assert put[-1].json["parameters"]["databases"] == 4 and put[-1].json["parameters"]["persistence"] is True

    # --- bind; see the publication and reveal one credential ------------------------------------------------
    bindings.get_by_text("New binding").click()
    binding_form = page.locator("#binding-form")
    binding_form.get_by_label("Name", exact=True).fill("app-cache")
    expect(binding_form.get_by_label("Namespace", exact=True)).to_have_value("team-a")
    binding_form.get_by_role("button", name="Create binding").click()
    row = bindings.locator("tr.binding-row", has_text="app-cache")
    expect(row).to_be_visible()
    expect(row.locator("td[data-label=State]")).to_have_text("Ready", timeout=WORK_MS)
    expect(row.locator("td[data-label=Publication]")).to_contain_text("Published", timeout=WORK_MS)
    expect(row.locator("td[data-label=Publication]")).to_contain_text("Secret team-a/app-cache")
    secret = kube.secret_data("team-a", "app-cache")
    assert secret and secret.get("password"), secret

    creds = row.locator("xpath=following-sibling::tr[1]").locator(".creds-list")
    creds.get_by_role("button", name="Reveal password of app-cache").click()
    value = creds.locator("div.cred", has_text="password").locator("code")
    expect(value).to_have_text(secret["password"])
    expect(creds.locator("div.cred", has_text="host").locator("code")).to_have_count(0)  # one value at a time
    check("credential-revealed")

    # --- rotate: the successor's credentials in the same Secret, the old binding unbound after the grace period --
    first = ServiceBinding.objects.get(name="app-cache", state="ready")
    row.get_by_text("Rotate app-cache").first.click()  # opens the inline confirmation
    expect(row).to_contain_text("does not link the two bindings")  # cache-free is not binding_rotatable
    row.get_by_role("button", name="Rotate app-cache").click()
    expect(bindings.locator("tr.rotation-row").first).to_be_visible()
    wait_for(lambda: ServiceBinding.objects.filter(pk=first.pk, state="deleted").exists(), timeout=WORK_MS / 1000,
             interval=0.2, what="the rotated binding's predecessor to be unbound")
    page.reload()
    expect(bindings.locator("tr.binding-row")).to_have_count(1)
    done = bindings.locator("tr.rotation-row[data-rotation-step=done]")
    expect(done).to_contain_text("complete")
    expect(done).to_contain_text("does not link to the previous one")
    rotated = kube.secret_data("team-a", "app-cache")
    assert rotated and rotated["password"] != secret["password"]
    check("binding-rotated")

    # --- unbind ---------------------------------------------------------------------------------------------
    row.get_by_text("Unbind app-cache").first.click()  # opens the inline confirmation
    row.get_by_role("button", name="Unbind app-cache").click()
    expect(bindings.locator("tr.binding-row")).to_have_count(0, timeout=WORK_MS)
    expect(bindings).to_contain_text("No bindings yet")
    assert kube.get_secret("team-a", "app-cache") is None

    # --- deprovision, with the typed-name confirmation ------------------------------------------------------
    danger = page.get_by_role("region", name="Danger zone")
    confirm = danger.get_by_label("Type cache-e2e to confirm")
    button = danger.get_by_role("button", name="Deprovision cache-e2e")
    expect(button).to_be_disabled()
    confirm.fill("cache-e2")
    expect(button).to_be_disabled()
    confirm.fill("cache-e2e")
    expect(button).to_be_enabled()
    check("deprovision-confirm")
    button.click()
    expect(happening).to_contain_text(re.compile(r"Deprovisioning (in progress|succeeded)"))
    expect(header.locator(".status-pill")).to_have_text("Deleted", timeout=WORK_MS)
    expect(page.get_by_text("This instance was deleted just now.", exact=False)).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Open dashboard"))).to_have_count(0)
    expect(page.get_by_role("region", name="Danger zone")).to_have_count(0)
    assert instance_id not in broker.instances
    assert broker.requests_for("DELETE", rf"/v2/service_instances/{instance_id}")
    check("deprovisioned")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="My instances").click()
    expect(page.get_by_role("heading", name="Instances", level=1)).to_be_visible()
    check("instances")


# --- every other page state, with a seeded portal ----------------------------------------------------------------


@pytest.fixture
def big_broker() -> Iterator[SampleBroker]:
    """A second broker with 1,000 generated services, so the marketplace has to be findable at scale."""
    generated = SampleBroker(username=BROKER_USER, password=BROKER_PASSWORD).start()
    generated.catalog = generate_catalog(services=1000, plans_per_service=1, seed=5, with_schemas=False)
    yield generated
    generated.stop()


@pytest.fixture
def portal(transactional_db: Any, osb_broker: SampleBroker, osb_url: str, big_broker: SampleBroker,
           admin_user: Any, django_user_model: Any) -> dict[str, Any]:
    """People, two catalogs, and instances in every state the pages show. Operations run in this process."""
    osb_broker.async_seconds = 0.0
    team = make_team("team-a", "team-a")
    people = {}
    for username, role in (("dev", "developer"), ("vic", "viewer"), ("tara", "admin")):
        user = django_user_model.objects.create_user(username, f"{username}@example.com", f"{username}-pass-123")
        people[username] = join(user, team, role)
    sample = mirrored_broker(osb_url, name="sample")
    mirrored_broker(big_broker.url, name="thousand")
    dev = people["dev"]
    small, cache = plan(sample, "postgresql", "standard-small"), plan(sample, "redis-cache", "cache-free")
    ready = instance_provision(plan=small, name="orders-db", namespace="team-a", requested_by=dev,
                               parameters={"database_name": "orders"})
    slow = instance_provision(plan=cache, name="slow-cache", namespace="team-a", requested_by=dev, parameters={})
    run_operations()
    ready.refresh_from_db()
    binding_create(instance=ready, name="app", requested_by=dev)
    osb_broker.set_response("PUT", r"/v2/service_instances/[^/]+", 400,
                            {"error": "BadRequest", "description": "Quota of databases exceeded for team-a"}, times=1)
    broken = instance_provision(plan=small, name="broken-db", namespace="team-a", requested_by=dev,
                                parameters={"database_name": "broken"})
    run_operations()
    # A provision the broker took 90 polls to finish (recorded calls, as the engine writes them)
    record_polls(Operation.objects.get(instance=slow, type=OpType.PROVISION), 90)
    # Issue 17: the last drift check found a difference, the instance is behind its plan's maintenance version, and
    # an upgrade batch paused after a failure.
    ServiceInstance.objects.filter(pk=ready.pk).update(
        drift=[{"field": "parameters", "portal": {"database_name": "orders"},
                "broker": {"database_name": "orders", "storage_gb": 20}}],
        drift_checked_at=timezone.now(), maintenance_info={"version": "1.1.0"})
    batch = UpgradeBatch.objects.create(state="paused", max_parallel=2, requested_by=admin_user,
                                        pause_reason="Paused after 1 failed upgrade(s); resume to go on, or cancel.")
    UpgradeItem.objects.create(batch=batch, instance=ready, state="failed", from_version="1.1.0",
                               to_version="1.2.0", error="The broker said no.")
    return {"people": people, "ready": ready, "slow": slow, "broken": broken}


def test_every_page_state_fits_the_screen_and_passes_axe(
    sync_api: Any, browser: Any, live_server: Any, portal: dict[str, Any], osb_broker: SampleBroker,
) -> None:
    expect, base = sync_api.expect, live_server.url
    sessions: list[Session] = []

    def person(username: str, password: str, prefix: str, **options: Any) -> Session:
        sessions.append(Session(browser, base, username, password, prefix, **options))
        return sessions[-1]

    try:
        _developer_states(person("dev", "dev-pass-123", "dev"), expect, portal)
        _no_javascript_states(person("dev", "dev-pass-123", "nojs", javascript=False), portal)
        _viewer_states(person("vic", "vic-pass-123", "viewer"), expect, portal)
        _admin_states(person("admin", PASSWORD, "admin"), expect)
    except BaseException:
        _failure_shot(sessions[-1].page)
        raise
    finally:
        for session in sessions:
            session.close()
    problems = [p for s in sessions for p in s.problems]
    assert not problems, problems


def _developer_states(dev: Session, expect: Any, portal: dict[str, Any]) -> None:
    page, check = dev.login(), dev.check
    results, count = page.locator("#store-results"), page.locator("#results-count")
    # --- the landing view: categories, most provisioned, recently added; the grid below -----------------------
    expect(page.get_by_role("heading", name="Browse by category")).to_be_visible()
    expect(page.get_by_role("region", name="Most provisioned here")).to_contain_text("PostgreSQL")
    expect(page.get_by_role("region", name="Recently added").locator("article")).to_have_count(4)
    expect(count).to_contain_text(re.compile(r"^1,?00\d services · page 1 of \d+"))
    check("marketplace-landing")

    # --- search by a provider's name finds its services, best match first -------------------------------------
    page.get_by_role("searchbox", name="Search services").fill("Slow Data")
    expect(page).to_have_url(re.compile(r"/\?q=Slow\+Data$"))
    expect(count).to_have_text("1 service")
    expect(results.get_by_role("link", name="Slow Analytics Warehouse", exact=True)).to_be_visible()
    check("search-provider")

    # --- facets: OR within a group, AND across groups, sibling counts kept ------------------------------------
    page.goto(dev.base + "/?broker=sample")
    tags = results.get_by_role("group", name="Category")
    tags.get_by_role("checkbox", name=re.compile(r"^sql\s*\d+$")).check()
    expect(page).to_have_url(re.compile(r"/\?tag=sql&broker=sample$"))
    expect(count).to_have_text("2 services")
    caching = tags.get_by_role("checkbox", name=re.compile(r"^caching\s*1$"))  # a sibling, still listed, counted
    caching.check()
    expect(page).to_have_url(re.compile(r"/\?tag=sql&tag=caching&broker=sample$"))
    expect(count).to_have_text("3 services")  # sql OR caching, AND broker sample
    grid = results.locator("article.svc-card")
    expect(grid.get_by_role("link")).to_have_text(["PostgreSQL", "Redis Cache", "Slow Analytics Warehouse"])
    check("facets-or")

    # --- the service page: plan facts, parameter previews ------------------------------------------------------
    results.get_by_role("link", name="PostgreSQL", exact=True).click()
    comparison = page.get_by_role("region", name="Plan comparison")
    expect(comparison).to_contain_text("In the background, up to 30 min")
    ha = comparison.get_by_role("article", name="HA Cluster")
    ha.get_by_text(re.compile(r"\d+ parameters? to choose")).click()
    expect(ha).to_contain_text("Database name")
    check("service-plans")

    # --- provision form: a bad submit puts the focus on the summary and marks every invalid field -------------
    comparison.get_by_role("article", name="Standard Small").get_by_role("link", name="Provision").click()
    form = page.locator("#provision-form")
    check("provision-form")
    form.get_by_label("Name", exact=True).fill("Orders DB")
    form.get_by_label("Database name").fill("Bad-Name")
    form.get_by_label("Storage (GB)").fill("500")
    form.get_by_role("button", name=re.compile(r"^Provision ")).click()
    summary = page.locator("#provision-errors")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Start with a lowercase letter")
    links = summary.get_by_role("link")
    expect(links).to_have_count(3)
    for field in ("#id_name", "#id_p-database_name", "#id_p-storage_gb"):
        expect(form.locator(field)).to_have_attribute("aria-invalid", "true")
        expect(form.locator(field)).to_have_css("border-top-color", RED)
    check("provision-errors")
    links.filter(has_text="Database name").click()
    expect(form.locator("#id_p-database_name")).to_be_focused()

    # --- instance pages: a long poll stays short; a failure says so plainly and offers Retry ------------------
    page.goto(dev.base + portal["slow"].get_absolute_url())
    expect(page.locator(".repeat-count").first).to_have_text("90 ×")
    page.set_viewport_size(WIDE)
    height = dev.check.page_height()
    assert height < 2000, f"a 90-poll operation's instance page is {height} px tall at 1280"
    check("instance-long-poll")

    page.goto(dev.base + portal["broken"].get_absolute_url())
    happening = page.get_by_role("region", name="What is happening")
    expect(happening).to_contain_text("Provisioning failed")
    expect(happening.get_by_text("Quota of databases exceeded for team-a")).to_have_count(1)
    expect(page.get_by_role("link", name=re.compile("Open dashboard"))).to_have_count(0)
    expect(happening.get_by_role("link", name="Delete this instance…")).to_be_visible()
    check("instance-failed")
    happening.get_by_role("button", name="Retry provisioning").click()
    expect(page).not_to_have_url(re.compile(str(portal["broken"].pk)))
    expect(page.get_by_role("region", name="What is happening")).to_contain_text("Provisioning in progress")
    assert ServiceInstance.objects.visible().filter(name="broken-db").exclude(pk=portal["broken"].pk).exists()
    check("instance-retried")

    # --- credentials: one value at a time; "Use in your app" ----------------------------------------------------
    page.goto(dev.base + portal["ready"].get_absolute_url())
    drift = page.get_by_role("region", name="At the broker")
    expect(drift).to_contain_text("storage_gb")
    expect(drift.get_by_role("button", name="Adopt the broker’s values")).to_be_visible()
    check("instance-drift")
    creds = page.locator(".creds-list")
    creds.get_by_role("button", name="Reveal password of app").click()
    expect(creds.locator("div.cred", has_text="password").locator("code")).to_be_visible()
    expect(creds.locator("code")).to_have_count(1)
    check("credentials-one-value")
    page.get_by_role("tab", name="Use in your app").click()
    use = page.get_by_role("tabpanel", name="Use in your app")
    expect(use).to_contain_text("secretKeyRef")
    expect(use).to_contain_text("Connection string")
    check("credentials-use-in-your-app")

    # --- lists, teams, account ----------------------------------------------------------------------------------
    page.goto(dev.base + "/instances/")
    check("instances")
    page.goto(dev.base + "/teams/")
    check("teams")
    page.get_by_role("link", name="team-a", exact=True).click()
    expect(page.get_by_role("heading", name="team-a", level=1)).to_be_visible()
    check("team")
    page.goto(dev.base + "/account/")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#token")).to_be_visible()
    check("account-new-token")
    page.get_by_text("Replace token…").click()
    expect(page.get_by_role("button", name="Replace my token")).to_be_visible()
    check("account-replace-token")
    page.goto(dev.base + "/no-such-page/")
    check("not-found")


def _no_javascript_states(nojs: Session, portal: dict[str, Any]) -> None:
    """Without JavaScript the same bad submit lands on the summary too (autofocus)."""
    page = nojs.login()
    small = plan(Broker.objects.get(name="sample"), "postgresql", "standard-small")
    page.goto(nojs.base + f"/instances/new/?plan={small.pk}")
    page.locator("#id_name").fill("Bad Name")
    page.locator("#provision-form button.primary").click()
    page.wait_for_load_state()
    assert page.evaluate("document.activeElement && document.activeElement.id") == "provision-errors"
    assert page.locator("#id_name").get_attribute("aria-invalid") == "true"
    # axe-core needs scripts to run (its timers do not fire here); the same markup was checked with JavaScript.
    nojs.check("provision-errors-no-js", axe=False)


def _viewer_states(viewer: Session, expect: Any, portal: dict[str, Any]) -> None:
    page = viewer.login()
    page.goto(viewer.base + portal["ready"].get_absolute_url())
    expect(page.locator("#read-only-note")).to_be_visible()
    viewer.check("instance-read-only")
    binding = portal["ready"].bindings.get()
    # A refused action (as a crafted form would send it): the 403 page in the frame names the role and who grants it
    _post_form(page, f"/bindings/{binding.pk}/unbind/")
    expect(page.get_by_role("heading", name="You can’t do that here")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.locator("main")).to_contain_text("developer")
    expect(page.locator("main")).to_contain_text("tara")
    viewer.check("forbidden")
    _post_form(page, "/account/", token="not-the-token")
    expect(page.get_by_role("heading", name="This form has expired")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    viewer.check("csrf-expired")


def _post_form(page: Any, path: str, *, token: str | None = None) -> None:
    page.evaluate("""([path, token]) => {
        const form = document.createElement('form');
        form.method = 'post'; form.action = path;
        const input = document.createElement('input');
        input.type = 'hidden'; input.name = 'csrfmiddlewaretoken';
        input.value = token || document.querySelector('[name=csrfmiddlewaretoken]').value;
        form.appendChild(input); document.body.appendChild(form); form.submit();
    }""", [path, token])
    page.wait_for_load_state()


def _admin_states(admin: Session, expect: Any) -> None:
    page = admin.login()
    page.goto(admin.base + "/brokers/")
    expect(page.get_by_role("heading", name="Brokers", level=1)).to_be_visible()
    admin.check("brokers")
    page.goto(admin.base + "/teams/")
    expect(page.get_by_role("heading", name="New team")).to_be_visible()
    page.get_by_role("link", name="team-a", exact=True).click()
    expect(page.get_by_role("button", name="Add member")).to_be_visible()  # a team's managers see its forms
    admin.check("team-managed")
    page.goto(admin.base + "/audit/")
    expect(page.locator("input[type=date][name=since]")).to_be_visible()
    admin.check("audit")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Upgrades").click()
    expect(page.get_by_role("heading", name="Upgrades", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="orders-db")).to_be_visible()
    admin.check("upgrades")
    page.get_by_role("link", name=re.compile("Batch started")).click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    admin.check("upgrade-batch")
    page.goto(admin.base + "/admin/brokers/broker/add/")
    expect(page.get_by_label("Verify TLS")).to_be_visible()
    # Django's own admin: checked for width and screenshot; its markup is Django's, so axe is not asked.
    admin.check("admin-broker-add", axe=False)
    page.set_viewport_size(PHONE)


# --- broker insight: a platform admin reads what changed and how well the broker follows the spec -----------------

@pytest.fixture
def changed_catalog(osb_broker: SampleBroker, osb_url: str) -> tuple[Broker, Any]:
    """A mirrored broker whose second sync removed a plan that has an instance, and changed another's schema."""
    import copy

    from brokers import services
    from brokers.models import ServicePlan
    from devtools.sample_broker import build_catalog
    from devtools.sample_broker.catalog import plan_id
    from instances.models import ServiceInstance

    catalog = build_catalog(osb_broker.url)
    osb_broker.catalog = catalog
    broker = mirrored_broker(osb_url)
    large = ServicePlan.objects.get(broker=broker, catalog_id=plan_id("postgresql", "standard-large"))
    instance = ServiceInstance.objects.create(name="orders-db", namespace="team-a", broker=broker, plan=large,
                                              state="ready")
    new = copy.deepcopy(catalog)
    postgres = new["services"][0]
    postgres["plans"] = [p for p in postgres["plans"] if p["name"] != "standard-large"]
    create = copy.deepcopy(postgres["plans"][0]["schemas"]["service_instance"]["create"]["parameters"])
    create["properties"]["pool_size"] = {"type": "integer", "minimum": 1}
    postgres["plans"][0]["schemas"]["service_instance"]["create"]["parameters"] = create
    osb_broker.catalog = new
    services.catalog_sync(broker_id=broker.pk, force=True)
    return broker, instance


def test_a_platform_admin_reads_a_brokers_insight_in_the_browser(
    sync_api: Any, browser: Any, live_server: Any, admin_user: Any, changed_catalog: tuple[Broker, Any],
) -> None:
    """The broker list's score badge, the broker page (scorecard, sync history with the diff), the note on an
    instance whose plan was removed, and catalog restrictions changed in the admin, re-mirrored at once."""
    person = Session(browser, live_server.url, "admin", PASSWORD, "insight")
    try:
        _read_insight(person, sync_api.expect, *changed_catalog)
    except BaseException:
        _failure_shot(person.page)
        raise
    finally:
        person.close()
    assert not person.problems, person.problems


def _read_insight(person: Session, expect: Any, broker: Broker, instance: Any) -> None:
    page, base, shot = person.login(), person.base, person.check
    page.goto(base + "/brokers/")

    # --- the list: a score badge per broker ---------------------------------------------------------------------
    expect(page.get_by_role("heading", name="Brokers", level=1)).to_be_visible()
    badge = page.get_by_role("link", name=re.compile(r"^\d+ out of 100, spec conformance of test-broker$"))
    expect(badge).to_be_visible()
    shot("broker-list")

    # --- the broker page: scorecard and sync history ------------------------------------------------------------
    page.get_by_role("link", name="test-broker", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^test-broker"), level=1)).to_be_visible()
    scorecard = page.get_by_role("region", name="Spec conformance")
    expect(scorecard.get_by_role("img", name=re.compile(r"^Conformance score \d+ out of 100$"))).to_be_visible()
    failing = scorecard.get_by_role("list", name="Failing checks")
    expect(failing).to_contain_text("Services carry the profile's display metadata")
    expect(failing).to_contain_text("service 'status-page' lacks metadata.longDescription")
    scorecard.get_by_text(re.compile(r"^\d+ passing checks?$")).click()
    expect(scorecard.get_by_role("list", name="Passing checks")).to_contain_text("Service ids are unique")
    history = page.get_by_role("region", name="Sync history")
    latest = history.locator("li.sync").first
    expect(latest).to_contain_text("1 plan removed (1 instance affected); 1 plan changed")
    removed = latest.get_by_role("list", name="Removed plans")
    expect(removed).to_contain_text("postgresql / standard-large")
    expect(removed).to_contain_text("1 instance affected")
    expect(latest.get_by_role("list", name="Changed plans")).to_contain_text(
        "Parameters for creating an instance: added pool_size")
    shot("broker-page")

    # --- the instance on the removed plan says so ---------------------------------------------------------------
    page.goto(f"{base}/instances/{instance.pk}/")
    notes = page.get_by_role("region", name="Catalog changes")
    expect(notes).to_contain_text("This plan was removed from the broker's catalog")
    shot("instance-plan-removed")

    # --- restrict the catalog in the admin: re-mirrored at once ---------------------------------------------------
    page.goto(f"{base}/brokers/{broker.pk}/")
    page.get_by_role("link", name="Change the catalog restrictions").click()
    page.get_by_label("Plan rules").fill("free==true")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    page.goto(f"{base}/brokers/{broker.pk}/")
    offered = page.get_by_role("region", name="What is offered")
    expect(offered).to_contain_text("free==true")
    latest = page.get_by_role("region", name="Sync history").locator("li.sync").first
    expect(latest).to_contain_text("Catalog restrictions changed")
    expect(latest).to_contain_text("plans removed")
    expect(latest.locator("details")).to_have_attribute("open", "")  # the newest change is shown unfolded
    expect(latest.get_by_role("list", name="Removed plans")).to_contain_text("excluded by the catalog restrictions")
    shot("restrictions-applied")
