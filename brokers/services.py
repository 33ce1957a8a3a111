"""Broker registration and the catalog mirror: the only code that writes brokers, offerings and plans."""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, ProtectedError
from django.utils import timezone

from brokers import metrics
from brokers.catalog import CatalogInvalid, OfferingEntry, parse_catalog
from brokers.models import Broker, CatalogSync, ServiceOffering, ServicePlan
from brokers.osb import BasicAuth, BearerAuth, CallRecord, CatalogRequest, OSBClient, OSBError, ReadTimeouts
from catalog_portal.exceptions import ApplicationError, Conflict
from catalog_portal.tasks import enqueue_on_commit
from teams.audit import audit
from teams.models import Team
from telemetry.logs import log_context

logger = logging.getLogger(__name__)

OFFERING_FIELDS = [
    "name", "description", "tags", "requires", "bindable", "instances_retrievable", "bindings_retrievable",
    "allow_context_updates", "plan_updateable", "metadata", "dashboard_client", "display_name",
    "long_description", "provider", "image_url", "documentation_url", "support_url", "raw", "position",
    "search_text", "tag_index",
]
PLAN_FIELDS = [
    "name", "description", "free", "bindable", "plan_updateable", "binding_rotatable", "metadata",
    "display_name", "bullets", "costs", "schemas", "maximum_polling_duration", "maintenance_info", "raw",
    "position",
]
BATCH = 250


# --- OSB client for a broker --------------------------------------------------------------------


def broker_client(*, broker: Broker, recorder: Any = None) -> OSBClient:
    """An OSB client configured with the broker's URL, auth, TLS settings and the platform's timeouts."""
    auth: BasicAuth | BearerAuth | None = None
    if broker.auth_type == Broker.AuthType.BASIC:
        auth = BasicAuth(username=broker.auth_username, password=broker.auth_secret)
    elif broker.auth_type == Broker.AuthType.BEARER:
        auth = BearerAuth(token=broker.auth_secret)
    verify = tls_context(verify=broker.verify_tls, ca_bundle=broker.ca_bundle or None)
    return OSBClient(
        broker.url,
        auth=auth,
        verify=verify,
        connect_timeout=settings.OSB_CONNECT_TIMEOUT,
        read_timeouts=ReadTimeouts(
            catalog=settings.OSB_CATALOG_TIMEOUT,
            provision=settings.OSB_REQUEST_TIMEOUT,
            update=settings.OSB_REQUEST_TIMEOUT,
            deprovision=settings.OSB_REQUEST_TIMEOUT,
            bind=settings.OSB_REQUEST_TIMEOUT,
            unbind=settings.OSB_REQUEST_TIMEOUT,
            last_operation=settings.OSB_POLL_TIMEOUT,
            fetch=settings.OSB_POLL_TIMEOUT,
        ),
        api_version=settings.OSB_API_VERSION,
        recorder=recorder,
    )


@lru_cache(maxsize=64)
def tls_context(*, verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
    """One TLS context per setting per process: building one loads the CA store, which costs ~30 ms —
    more than the broker call itself when done for every step."""
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_bundle:
        return ssl.create_default_context(cadata=ca_bundle)
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def call_record_json(record: CallRecord) -> dict[str, Any]:
    return {
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "duration_ms": record.duration_ms,
        "request_id": record.request_id,
        "at": record.at.isoformat(),
        "error": record.error,
        "request": record.request_excerpt,
        "response": record.response_excerpt,
    }


# --- Registration -------------------------------------------------------------------------------


@dataclass
class BrokerAuth:
    type: str  # "none" | "basic" | "bearer"
    username: str = ""
    secret: str | None = None  # None = keep the stored one


def broker_url_error(value: str) -> str | None:
    """Why `value` is not a usable broker URL, or None. Unlike URLValidator this accepts single-label hosts
    (`http://my-broker:8080`: Kubernetes service and docker-compose names), as brokers live on the platform network."""
    if not value.lower().startswith(("http://", "https://")):
        return "The broker URL must start with http:// or https://."
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Enter a valid URL."
    if not parts.hostname or any(ch.isspace() for ch in value):
        return "Enter a valid URL."
    if parts.username is not None or parts.password is not None:
        return "Put the broker's credentials in auth, not in the URL (the URL is shown to everyone)."
    return None


def ca_bundle_error(value: str) -> str | None:
    """Why `value` is not a usable PEM CA bundle, or None (a bad bundle would only fail later, in the worker)."""
    try:
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError) as exc:
        return f"Not a valid PEM CA bundle ({exc.args[-1] if exc.args else exc})."
    return None


def _auth_problems(auth: BrokerAuth, broker: Broker | None) -> dict[str, list[str]]:
    if auth.type not in Broker.AuthType.values:
        return {"auth.type": [f"Unknown type '{auth.type}'."]}
    if auth.type == Broker.AuthType.NONE:
        return {}
    problems: dict[str, list[str]] = {}
    if auth.type == Broker.AuthType.BASIC and not auth.username:
        problems["auth.username"] = ["Basic auth needs a username."]
    # Without a new secret the stored one is kept, if there is one for this kind of auth.
    stored = broker is not None and broker.auth_type == auth.type and bool(broker.auth_secret_encrypted)
    if not auth.secret and not stored:
        what = "password" if auth.type == Broker.AuthType.BASIC else "token"
        problems["auth.secret"] = [f"A {what} is required for {auth.type} auth."]
    return problems


def broker_problems(
    *, url: str | None = None, ca_bundle: str | None = None, auth: BrokerAuth | None = None,
    broker: Broker | None = None,
) -> dict[str, list[str]]:
    """What makes a registration unusable, by field: `url`, `ca_bundle`, `auth.type`, `auth.username`,
    `auth.secret` (empty when it is fine). `broker`: the registration being changed (None: a new one); None
    values are not checked. `broker_register` and `broker_update` refuse what this finds; the admin form shows it
    beside its fields."""
    problems: dict[str, list[str]] = {}
    error = broker_url_error(url) if url is not None else None
    if error:
        problems["url"] = [error]
    error = ca_bundle_error(ca_bundle) if ca_bundle else None
    if error:
        problems["ca_bundle"] = [error]
    if auth is not None:
        problems.update(_auth_problems(auth, broker))
    return problems


def _require_usable(**registration: Any) -> None:
    problems = broker_problems(**registration)
    if problems:
        fields: dict[str, list[str]] = {}
        for key, messages in problems.items():  # the API names the whole `auth` object
            fields.setdefault(key.split(".", 1)[0], []).extend(messages)
        raise ApplicationError(next(iter(problems.values()))[0], fields=fields)


def _ca_bundle(value: str | None) -> str | None:
    """A blank bundle means none."""
    return value if value and value.strip() else None


def _apply_auth(broker: Broker, auth: BrokerAuth | None) -> None:
    """Set a checked `auth` (broker_problems) on `broker`; without a new secret the stored one stays."""
    if auth is None:
        return
    broker.auth_type = auth.type
    if auth.type == Broker.AuthType.NONE:
        broker.auth_username = ""
        broker.set_auth_secret("")
        return
    broker.auth_username = auth.username if auth.type == Broker.AuthType.BASIC else ""
    if auth.secret:
        broker.set_auth_secret(auth.secret)


def _check_unique_name(name: str, exclude: Any = None) -> None:
    query = Broker.objects.filter(name=name)
    if exclude is not None:
        query = query.exclude(pk=exclude)
    if query.exists():
        raise ApplicationError(
            "A broker with this name exists.", fields={"name": ["A broker with this name already exists."]}
        )


def broker_register(
    *,
    name: str,
    url: str,
    auth: BrokerAuth | None = None,
    verify_tls: bool = True,
    ca_bundle: str | None = None,
    relist_interval_seconds: int | None = None,
    enabled: bool = True,
    requested_by: Any = None,
    request: Any = None,
) -> Broker:
    """Register a broker and queue its first catalog sync (after commit); audited.

    Refuses (ApplicationError, by field) a taken name, an unusable URL or CA bundle, incomplete auth.
    """
    _check_unique_name(name)
    _require_usable(url=url, ca_bundle=_ca_bundle(ca_bundle), auth=auth)
    broker = Broker(
        name=name,
        url=url.rstrip("/"),
        verify_tls=verify_tls,
        ca_bundle=_ca_bundle(ca_bundle),
        relist_interval_seconds=relist_interval_seconds or settings.CATALOG_DEFAULT_RELIST_SECONDS,
        enabled=enabled,
    )
    _apply_auth(broker, auth)
    with transaction.atomic():
        broker.save()
        _request_sync(broker, CatalogSync.Trigger.REGISTRATION)
        audit(action="broker.register", target=broker, actor=requested_by, request=request,
              summary=f"Broker '{broker.name}' registered at {broker.url}")
    return broker


def broker_update(
    *, broker: Broker, auth: BrokerAuth | None = None, requested_by: Any = None, request: Any = None, **changes: Any
) -> Broker:
    """Change a broker's registration; a changed URL, auth or TLS setting queues a fresh sync; audited."""
    allowed = {"name", "url", "verify_tls", "ca_bundle", "relist_interval_seconds", "enabled"}
    unknown = set(changes) - allowed
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "name" in changes and changes["name"] != broker.name:
        _check_unique_name(changes["name"], exclude=broker.pk)
    if "ca_bundle" in changes:
        changes["ca_bundle"] = _ca_bundle(changes["ca_bundle"])
    _require_usable(url=changes.get("url"), ca_bundle=changes.get("ca_bundle"), auth=auth, broker=broker)
    if "url" in changes:
        changes["url"] = changes["url"].rstrip("/")
    resync = auth is not None or any(
        key in changes and changes[key] != getattr(broker, key) for key in ("url", "verify_tls", "ca_bundle")
    ) or (changes.get("enabled") is True and not broker.enabled)
    changed = sorted(key for key, value in changes.items() if getattr(broker, key) != value)
    for key, value in changes.items():
        setattr(broker, key, value)
    _apply_auth(broker, auth)
    if auth is not None:
        changed.append("auth")  # which part of the auth is never said: it may be the secret
    with transaction.atomic():
        broker.save()
        if resync:
            _request_sync(broker, CatalogSync.Trigger.MANUAL)
        audit(action="broker.update", target=broker, actor=requested_by, request=request,
              summary=f"Broker '{broker.name}' changed: {', '.join(changed) or 'nothing'}")
    return broker


def broker_remove(*, broker: Broker, requested_by: Any = None, request: Any = None) -> None:
    """Delete a broker and its mirror; refused while any instance uses one of its plans; audited."""
    try:
        with transaction.atomic():
            pk = broker.pk
            broker.delete()
            audit(action="broker.remove", target=("broker", pk), actor=requested_by, request=request,
                  summary=f"Broker '{broker.name}' removed")
    except ProtectedError:
        raise Conflict(
            f"Broker '{broker.name}' still has service instances. Deprovision them before removing the broker."
        ) from None


def broker_request_sync(*, broker: Broker, requested_by: Any = None, request: Any = None) -> None:
    """Ask for a catalog sync now (admin action, API); the worker runs it, the sweeper guarantees it; audited."""
    with transaction.atomic():
        _request_sync(broker, CatalogSync.Trigger.MANUAL)
        audit(action="broker.sync", target=broker, actor=requested_by, request=request,
              summary=f"Catalog sync of broker '{broker.name}' requested")


def _request_sync(broker: Broker, trigger: str) -> None:
    from brokers.tasks import catalog_sync as catalog_sync_task

    now = timezone.now()
    Broker.objects.filter(pk=broker.pk).update(next_sync_at=now, sync_trigger=trigger)
    broker.next_sync_at = now
    broker.sync_trigger = trigger
    enqueue_on_commit(catalog_sync_task, str(broker.pk))


# --- Plan visibility (service access) ------------------------------------------------------------


def plan_set_visibility(
    *, plan: ServicePlan, visibility: str, teams: list[Team] | None = None, requested_by: Any = None,
    request: Any = None,
) -> ServicePlan:
    """Make a plan public, or visible only to `teams` (platform admins); audited."""
    if visibility not in ServicePlan.Visibility.values:
        raise ApplicationError("Unknown visibility.", fields={"visibility": ["Use 'public' or 'teams'."]})
    teams = list(teams or [])
    if visibility == ServicePlan.Visibility.PUBLIC and teams:
        raise ApplicationError("A public plan lists no teams.", fields={"teams": ["Leave empty for a public plan."]})
    with transaction.atomic():
        ServicePlan.objects.filter(pk=plan.pk).update(visibility=visibility)
        plan.visibility = visibility
        plan.teams.set(teams)
        Broker.objects.filter(pk=plan.broker_id).update(catalog_revision=F("catalog_revision") + 1)
        names = ", ".join(sorted(t.name for t in teams)) or "no team"
        audit(action="plan.visibility", target=plan, actor=requested_by, request=request,
              summary=f"Plan '{plan}' visible to " + ("everyone" if visibility == "public" else names))
    return plan


# --- Catalog sync -------------------------------------------------------------------------------


def catalog_sync(*, broker_id: Any, force: bool = False) -> CatalogSync | None:
    """Fetch the broker's catalog and mirror it, if a sync is due and no other worker holds it.

    Safe to run twice: the lease makes the second run a no-op. Returns the sync record, or None when
    there was nothing to do. A failing broker or an invalid catalog leaves the previous mirror intact.
    """
    now = timezone.now()
    broker = Broker.objects.filter(pk=broker_id).first()
    if broker is None:
        return None
    due = force or (broker.next_sync_at is not None and broker.next_sync_at <= now)
    free = broker.sync_lease_until is None or broker.sync_lease_until <= now
    if not (due and free):
        return None
    claimed = Broker.objects.filter(pk=broker.pk, sync_lease_until=broker.sync_lease_until).update(
        sync_lease_until=now + timedelta(seconds=settings.CATALOG_SYNC_LEASE_SECONDS), status=Broker.Status.SYNCING
    )
    if not claimed:
        return None  # another worker got there first
    claimed_next = broker.next_sync_at
    sync = CatalogSync.objects.create(broker=broker, trigger=broker.sync_trigger, started_at=now)
    started = time.monotonic()
    with log_context(broker=broker.name):
        try:
            _fetch_and_mirror(broker, sync)
        except (OSBError, CatalogInvalid) as exc:
            sync.outcome = CatalogSync.Outcome.FAILED
            sync.error = str(exc)
        except Exception as exc:
            logger.exception("Catalog sync of broker %s crashed", broker.pk)
            sync.outcome = CatalogSync.Outcome.FAILED
            sync.error = f"Internal error while syncing the catalog ({type(exc).__name__}); see the worker log."
        _finish_sync(broker, sync, started, claimed_next)
        logger.info("Catalog sync of broker %s: %s in %s ms", broker.name, sync.outcome, sync.duration_ms)
    return sync


def _fetch_and_mirror(broker: Broker, sync: CatalogSync) -> None:
    calls: list[dict[str, Any]] = []
    try:
        with broker_client(broker=broker, recorder=lambda record: calls.append(call_record_json(record))) as client:
            response = client.send(CatalogRequest(
                etag=broker.catalog_etag or None, if_modified_since=broker.catalog_last_modified or None
            ))
    finally:
        sync.calls = calls
    if response.not_modified:
        sync.outcome = CatalogSync.Outcome.UNCHANGED
        sync.summary = {"not_modified": True}
        return
    digest = catalog_digest(response.document)
    if digest == broker.catalog_digest:
        sync.outcome = CatalogSync.Outcome.UNCHANGED
        sync.summary = {"identical": True}
        return
    offerings = parse_catalog(response.document)
    with transaction.atomic():
        counts = _mirror(broker, offerings)
        Broker.objects.filter(pk=broker.pk).update(
            catalog_etag=response.etag or "", catalog_last_modified=response.last_modified or "",
            catalog_digest=digest, catalog_revision=F("catalog_revision") + 1,
        )
    written = sum(counts.values())
    if written >= ANALYZE_AFTER_ROWS:
        _analyze_catalog_tables()
    sync.summary = counts
    sync.added = counts["offerings_added"] + counts["plans_added"]
    sync.changed = counts["offerings_changed"] + counts["plans_changed"]
    sync.deactivated = counts["offerings_deactivated"] + counts["plans_deactivated"]
    changed = sync.added or sync.changed or sync.deactivated
    sync.outcome = CatalogSync.Outcome.CHANGED if changed else CatalogSync.Outcome.UNCHANGED


# A mirror that wrote at least this many rows refreshes the planner's statistics of the catalog tables at once:
# until autovacuum gets to them (a minute or more, never where it is off), Postgres plans the store's queries for
# the empty tables it last saw, as nested loops over offerings x plans (7 ms -> 200 ms per marketplace query).
ANALYZE_AFTER_ROWS = 500


def _analyze_catalog_tables() -> None:
    if connection.vendor != "postgresql":
        return  # SQLite's planner works without statistics here; ANALYZE would scan both tables for nothing
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {ServiceOffering._meta.db_table}, {ServicePlan._meta.db_table}")


# Bump when the mirror stores more or differently, so that an upgrade processes unchanged catalogs again.
MIRROR_FORMAT = 1


def catalog_digest(document: Any) -> str:
    body = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return f"{MIRROR_FORMAT}:" + hashlib.sha256(body.encode()).hexdigest()


def _finish_sync(broker: Broker, sync: CatalogSync, started: float, claimed_next: Any) -> None:
    now = timezone.now()
    sync.finished_at = now
    sync.duration_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        sync.save()
        metrics.catalog_sync_observed(broker=broker.name, sync=sync)
    failed = sync.outcome == CatalogSync.Outcome.FAILED
    fields: dict[str, Any] = {
        "sync_lease_until": None,
        "status": Broker.Status.FAILED if failed else Broker.Status.READY,
        "status_message": sync.error if failed else "",
        "updated_at": now,
    }
    if not failed:
        fields["last_synced_at"] = now
    Broker.objects.filter(pk=broker.pk).update(**fields)
    if sync.outcome in (CatalogSync.Outcome.CHANGED, CatalogSync.Outcome.FAILED):
        # The portal's own action (actor null); unchanged relists are not worth a record each.
        what = (f"failed: {sync.error[:300]}" if failed else
                f"{sync.added} added, {sync.changed} changed, {sync.deactivated} deactivated")
        audit(action="broker.catalog.sync", target=broker, summary=f"Catalog of broker '{broker.name}' synced: {what}")
    # Schedule the next relist, unless someone asked for a sync while this one ran.
    next_at = now + timedelta(seconds=broker.relist_interval_seconds) if broker.enabled else None
    same_request = {"next_sync_at": claimed_next} if claimed_next is not None else {"next_sync_at__isnull": True}
    Broker.objects.filter(pk=broker.pk, **same_request).update(
        next_sync_at=next_at, sync_trigger=CatalogSync.Trigger.PERIODIC
    )


def _mirror(broker: Broker, offerings: list[OfferingEntry]) -> dict[str, int]:
    """Upsert the validated catalog by the broker's ids; untouched rows are not written."""
    now = timezone.now()
    broker = Broker.objects.select_for_update().get(pk=broker.pk)
    # Only what the diff reads: a changed row gets every written field assigned before bulk_update, so
    # loading (and JSON-decoding) the big columns of thousands of unchanged rows is wasted work.
    diff_fields = ("id", "catalog_id", "content_hash", "active")
    existing_offerings = {
        o.catalog_id: o for o in ServiceOffering.objects.filter(broker=broker).only(*diff_fields)
    }
    existing_plans = {p.catalog_id: p for p in ServicePlan.objects.filter(broker=broker).only(*diff_fields)}
    counts = dict.fromkeys(
        ["offerings_added", "offerings_changed", "offerings_deactivated", "plans_added", "plans_changed",
         "plans_deactivated"], 0,
    )
    new_offerings: list[ServiceOffering] = []
    changed_offerings: list[ServiceOffering] = []
    new_plans: list[ServicePlan] = []
    changed_plans: list[ServicePlan] = []
    offering_by_catalog_id: dict[str, ServiceOffering] = {}
    for entry in offerings:
        offering = existing_offerings.get(entry.catalog_id)
        write = True
        if offering is None:
            offering = ServiceOffering(broker=broker, catalog_id=entry.catalog_id, created_at=now)
            new_offerings.append(offering)
        elif offering.content_hash != entry.content_hash or not offering.active:
            changed_offerings.append(offering)
        else:
            write = False
        if write:
            for key, value in entry.fields.items():
                setattr(offering, key, value)
            offering.content_hash, offering.active, offering.updated_at = entry.content_hash, True, now
        offering_by_catalog_id[entry.catalog_id] = offering
        for plan_entry in entry.plans:
            plan = existing_plans.get(plan_entry.catalog_id)
            if plan is None:
                plan = ServicePlan(broker=broker, catalog_id=plan_entry.catalog_id, created_at=now)
                new_plans.append(plan)
            elif plan.content_hash != plan_entry.content_hash or not plan.active:
                changed_plans.append(plan)
            else:
                continue
            for key, value in plan_entry.fields.items():
                if key != "offering_catalog_id":
                    setattr(plan, key, value)
            plan.offering = offering
            plan.content_hash, plan.active, plan.updated_at = plan_entry.content_hash, True, now
    ServiceOffering.objects.bulk_create(new_offerings, batch_size=BATCH)
    ServiceOffering.objects.bulk_update(
        changed_offerings, [*OFFERING_FIELDS, "content_hash", "active", "updated_at"], batch_size=BATCH
    )
    ServicePlan.objects.bulk_create(new_plans, batch_size=BATCH)
    ServicePlan.objects.bulk_update(
        changed_plans, [*PLAN_FIELDS, "offering", "content_hash", "active", "updated_at"], batch_size=BATCH
    )
    incoming_plan_ids = {plan.catalog_id for entry in offerings for plan in entry.plans}
    gone_offerings = [o.pk for cid, o in existing_offerings.items() if o.active and cid not in offering_by_catalog_id]
    gone_plans = [p.pk for cid, p in existing_plans.items() if p.active and cid not in incoming_plan_ids]
    for model, pks in ((ServiceOffering, gone_offerings), (ServicePlan, gone_plans)):
        for start in range(0, len(pks), BATCH):
            model.objects.filter(pk__in=pks[start : start + BATCH]).update(active=False, updated_at=now)
    counts.update(
        offerings_added=len(new_offerings), offerings_changed=len(changed_offerings),
        offerings_deactivated=len(gone_offerings), plans_added=len(new_plans), plans_changed=len(changed_plans),
        plans_deactivated=len(gone_plans),
    )
    return counts


def catalog_sync_due() -> list[str]:
    """Brokers whose sync is due (requested, periodic, or whose worker died): their ids, to dispatch."""
    now = timezone.now()
    from django.db.models import Q

    due = Broker.objects.filter(next_sync_at__lte=now).filter(
        Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lte=now)
    )
    return [str(pk) for pk in due.values_list("pk", flat=True)]
