"""The store as a person uses it, in headless Chromium (Debian's package, driven by Playwright).

Log in, browse, search and filter, open a service, compare plans, provision with the generated form, watch the
instance become ready, bind, see the credentials and the publication, unbind, deprovision. The portal runs in
pytest-django's live server; a real Celery worker (with beat) does the broker work against the HTTP test broker
(through the OSB contract proxy when it is installed) and publishes Secrets to the Kubernetes API stand-in.

A screenshot of each step is saved to test-artifacts/browser/<step>.png (and failure.png when a step fails).
Skipped when Chromium or Playwright is missing, unless REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brokers.models import Broker
from devtools.kube_standin import KubeStandIn
from devtools.sample_broker import SampleBroker
from tests.conftest import ROOT, Workers
from tests.instances.helpers import mirrored_broker

pytestmark = [pytest.mark.e2e]

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STEP_MS = 15_000  # one page action or check
WORK_MS = 90_000  # something a worker does (provision, bind, unbind, deprovision)
PASSWORD = "admin-pass-123"  # conftest's admin_user


def _require_browser() -> Any:
    """Playwright's sync API, or skip (fail with REQUIRE_BROWSER=1) when it or Chromium is missing."""
    sync_api: Any = None
    try:
        from playwright import sync_api
    except ImportError:
        reason = "the playwright Python package is not installed"
    else:
        executable = Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)
        reason = "" if executable else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return sync_api


class Shots:
    """Numbered full-page screenshots under test-artifacts/browser/."""

    def __init__(self, page: Any, folder: Path = ARTIFACTS) -> None:
        self.page = page
        self.count = 0
        self.folder = folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str, *, full_page: bool = True) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}.png"
        if full_page:  # from the top, or the sticky header is drawn where the page was scrolled to
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def broker(osb_broker: SampleBroker) -> Iterator[SampleBroker]:
    """Asynchronous operations that take a moment, so the instance page has something to follow."""
    saved = (osb_broker.async_seconds, osb_broker.async_mode)
    osb_broker.async_mode, osb_broker.async_seconds = "always", 1.0
    yield osb_broker
    osb_broker.async_seconds, osb_broker.async_mode = saved


@pytest.fixture
def sync_api() -> Any:
    """Playwright's sync API; asked for first, so a missing browser skips before any server or worker starts."""
    return _require_browser()


@pytest.fixture
def browser_page(sync_api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop running in this thread; the ORM calls the test makes between
    # browser steps are plain synchronous code all the same.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        page = context.new_page()
        page.set_default_timeout(STEP_MS)
        sync_api.expect.set_options(timeout=STEP_MS)
        # What a person would not see but should not happen: script errors, console errors (CSP violations
        # among them), server errors. Checked at the end of the test.
        problems: list[str] = []

        def on_console(message: Any) -> None:
            if message.type == "error":
                problems.append(f"console error: {message.text}")

        def on_response(response: Any) -> None:
            if response.status >= 500:
                problems.append(f"{response.status} from {response.url}")

        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("console", on_console)
        page.on("response", on_response)
        page.problems = problems
        try:
            yield page
        finally:
            context.close()
            browser.close()


@pytest.fixture
def catalog(broker: SampleBroker, osb_url: str) -> Broker:
    return mirrored_broker(osb_url)


@pytest.fixture
def worker(kube: KubeStandIn, workers: Workers) -> Any:
    """A real worker with beat; it reaches the Kubernetes stand-in through KUBECONFIG like a cluster."""
    return workers.start(beat=True, K8S_RECONCILE_SECONDS="2", K8S_RETRY_CAP_SECONDS="2")


def test_a_person_provisions_binds_and_deprovisions_in_the_browser(
    sync_api: Any, live_server: Any, admin_user: Any, catalog: Broker, worker: Any, kube: KubeStandIn,
    broker: SampleBroker, browser_page: Any,
) -> None:
    """All database work (user, catalog mirror) is done before the browser starts; the test only drives it."""
    page, base, expect = browser_page, live_server.url, sync_api.expect
    shot = Shots(page)
    try:
        _walk_through(page, base, shot, expect, kube, broker)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    assert not page.problems, page.problems


def _walk_through(page: Any, base: str, shot: Shots, expect: Any, kube: KubeStandIn, broker: SampleBroker) -> None:
    # --- log in ---------------------------------------------------------------------------------------------
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    shot("login")
    page.get_by_role("button", name="Sign in").click()

    # --- browse ---------------------------------------------------------------------------------------------
    expect(page.get_by_role("heading", name="Marketplace", level=1)).to_be_visible()
    expect(page).to_have_url(base + "/")
    results = page.locator("#store-results")
    count = page.locator("#results-count")
    expect(count).to_have_text(re.compile(r"^\d+ services$"))
    total = int(count.inner_text().split()[0])
    cards = results.locator("article.svc-card")
    expect(cards).to_have_count(total)
    for name in ("PostgreSQL", "Redis Cache"):
        expect(results.get_by_role("link", name=name, exact=True)).to_be_visible()
    shot("marketplace")

    # --- filter and search (both live, through htmx) --------------------------------------------------------
    chips = results.get_by_role("list", name="Active filters")
    price = results.get_by_role("group", name="Price")
    price.get_by_role("checkbox", name=re.compile(r"^Free\s*\d+$")).check()
    expect(page).to_have_url(re.compile(r"/\?price=free$"))
    expect(chips).to_contain_text("Free")
    expect(count).not_to_have_text(f"{total} services")
    free = int(count.inner_text().split()[0])
    assert 0 < free < total, (free, total)
    expect(cards).to_have_count(free)
    expect(results.get_by_role("link", name="Object Storage", exact=True)).to_have_count(0)  # paid only
    page.get_by_role("searchbox", name="Search services").fill("cache")
    expect(page).to_have_url(re.compile(r"/\?q=cache&price=free$"))
    expect(chips).to_contain_text("Search: “cache”")
    expect(count).to_have_text("1 service")
    expect(cards).to_have_count(1)
    expect(results.get_by_role("link", name="Redis Cache", exact=True)).to_be_visible()
    expect(price.get_by_role("checkbox", name=re.compile(r"^Free\s*\d+$"))).to_be_checked()
    shot("filter-and-search")

    # --- open the service and compare its plans -------------------------------------------------------------
    results.get_by_role("link", name="Redis Cache", exact=True).click()
    expect(page.get_by_role("heading", name="Redis Cache", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_contain_text("Marketplace")
    shot("service")
    comparison = page.get_by_role("region", name="Plan comparison")
    plans = comparison.get_by_role("article")
    expect(plans).to_have_count(3)
    expect(plans.get_by_role("heading", level=3)).to_have_text(["Free 25 MB", "1 GB", "8 GB HA"])  # cheapest first
    free_plan = comparison.get_by_role("article", name="Free 25 MB")
    expect(free_plan.locator(".price")).to_have_text("Free")
    expect(comparison.get_by_role("article", name="1 GB").locator(".price")).to_contain_text("9")
    expect(free_plan.get_by_role("list", name="Features")).to_contain_text("25 MB memory")
    comparison.scroll_into_view_if_needed()
    shot("compare-plans", full_page=False)

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
    shot("provision-form")
    page.get_by_role("button", name="Provision Free 25 MB").click()

    # --- watch the instance become ready --------------------------------------------------------------------
    expect(page).to_have_url(re.compile(r"/instances/[0-9a-f-]{36}/$"))
    instance_id = page.url.rstrip("/").rsplit("/", 1)[1]
    header = page.locator("#instance-status .inst-head")
    expect(header.get_by_role("heading", level=1)).to_contain_text("cache-e2e")
    happening = page.get_by_role("region", name="What is happening")
    expect(happening).to_contain_text(re.compile(r"Provision (in progress|succeeded)"))
    shot("instance-provisioning")
    expect(header.locator(".status-pill")).to_have_text("Ready", timeout=WORK_MS)
    expect(happening).to_contain_text("Provision succeeded")
    expect(header.get_by_role("link", name=re.compile("Open dashboard"))).to_be_visible()
    # The forms below were reloaded when the status poll stopped: bindings can be created now.
    bindings = page.get_by_role("region", name=re.compile(r"^Bindings"))
    expect(bindings.get_by_text("New binding")).to_be_visible()
    shot("instance-ready")
    put = broker.requests_for("PUT", rf"/v2/service_instances/{instance_id}")
    assert put and put[-1].json["parameters"]["maxmemory_policy"] == "volatile-lru", put
    assert put[-1].json["parameters"]["databases"] == 4 and put[-1].json["parameters"]["persistence"] is True

    # --- bind; see the publication and the credentials ------------------------------------------------------
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
    shot("binding-published")

    bindings.get_by_role("button", name="Show credentials of app-cache").click()
    revealed = bindings.get_by_label("Credentials of app-cache")
    expect(revealed).to_be_visible()
    shown = dict(zip(revealed.locator("dt").all_inner_texts(), revealed.locator("dd code").all_inner_texts(),
                     strict=True))
    assert shown["password"] == secret["password"] and shown["host"] == secret["host"], (shown, secret)
    shot("credentials")

    # --- unbind ---------------------------------------------------------------------------------------------
    row.get_by_text("Unbind app-cache").first.click()  # opens the inline confirmation
    row.get_by_role("button", name="Unbind app-cache").click()
    expect(bindings.locator("tr.binding-row")).to_have_count(0, timeout=WORK_MS)
    expect(bindings).to_contain_text("No bindings yet")
    assert kube.get_secret("team-a", "app-cache") is None
    shot("unbound")

    # --- deprovision, with the typed-name confirmation ------------------------------------------------------
    danger = page.get_by_role("region", name="Danger zone")
    confirm = danger.get_by_label("Type cache-e2e to confirm")
    button = danger.get_by_role("button", name="Deprovision cache-e2e")
    expect(button).to_be_disabled()
    confirm.fill("cache-e2")
    expect(button).to_be_disabled()
    confirm.fill("cache-e2e")
    expect(button).to_be_enabled()
    shot("deprovision-confirm")
    button.click()
    expect(happening).to_contain_text(re.compile(r"Deprovision (in progress|succeeded)"))
    expect(header.locator(".status-pill")).to_have_text("Deleted", timeout=WORK_MS)
    expect(page.get_by_text("This instance was deleted just now.", exact=False)).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("Open dashboard"))).to_have_count(0)
    expect(page.get_by_role("region", name="Danger zone")).to_have_count(0)
    assert instance_id not in broker.instances
    assert broker.requests_for("DELETE", rf"/v2/service_instances/{instance_id}")
    shot("deprovisioned")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="My instances").click()
    expect(page.get_by_role("heading", name="Instances", level=1)).to_be_visible()
    shot("instances")


# --- broker insight: a platform admin reads what changed and how well the broker follows the spec -----------------

INSIGHT_ARTIFACTS = ARTIFACTS / "insight"


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
    sync_api: Any, live_server: Any, admin_user: Any, changed_catalog: tuple[Broker, Any], browser_page: Any,
) -> None:
    """The broker list's score badge, the broker page (scorecard, sync history with the diff), the note on an
    instance whose plan was removed, and catalog restrictions changed in the admin, re-mirrored at once."""
    page, base, expect = browser_page, live_server.url, sync_api.expect
    shot = Shots(page, INSIGHT_ARTIFACTS)
    try:
        _read_insight(page, base, shot, expect, *changed_catalog)
    except BaseException:
        page.screenshot(path=str(INSIGHT_ARTIFACTS / "failure.png"), full_page=True)
        raise
    assert not page.problems, page.problems


def _read_insight(page: Any, base: str, shot: Shots, expect: Any, broker: Broker, instance: Any) -> None:
    page.goto(base + "/brokers/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

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
