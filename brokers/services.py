"""Broker registration and the catalog mirror: the only code that writes brokers, offerings and plans."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, ProtectedError
from django.utils import timezone

from brokers import metrics
from brokers.catalog import CatalogInvalid, canonical_json, parse_catalog
from brokers.conformance import CheckResult
from brokers.conformance.catalog import check_catalog
from brokers.mirror import MirrorResult, describe_diff, json_value, mirror_catalog
from brokers.models import Broker, CatalogDocument, CatalogSync, ServiceOffering, ServicePlan
from brokers.osb import (
    BasicAuth,
    BearerAuth,
    CallRecord,
    CatalogRequest,
    OSBClient,
    OSBError,
    OSBMalformedResponse,
    ReadTimeouts,
    cyclic_gc_paused,
    pooled_http_client,
)
from brokers.restrictions import RestrictionError, parse_restrictions
from brokers.selectors import broker_conformance
from brokers.throttle import Wait, call_slot, pause_from_answers
from catalog_portal.exceptions import ApplicationError, Conflict
from catalog_portal.tasks import enqueue_on_commit
from teams.audit import audit
from teams.models import Team
from telemetry.logs import log_context

logger = logging.getLogger(__name__)


# --- OSB client for a broker --------------------------------------------------------------------


def broker_client(*, broker: Broker, recorder: Any = None) -> OSBClient:
    """An OSB client configured with the broker's URL, auth, TLS settings and the platform's timeouts."""
    auth: BasicAuth | BearerAuth | None = None
    if broker.auth_type == Broker.AuthType.BASIC:
        auth = BasicAuth(username=broker.auth_username, password=broker.auth_secret)
    elif broker.auth_type == Broker.AuthType.BEARER:
        auth = BearerAuth(token=broker.auth_secret)
    return OSBClient(
        broker.url,
        auth=auth,
        http=_pooled_http(broker),
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


# One pooled HTTP client per broker per process (a fork starts its own): connections are reused between steps and
# threads, and the TLS context is built once. A change of the broker's URL, TLS settings or credentials builds a new
# one (the old one is closed when the last request on it is done, by garbage collection).
_http_clients: dict[Any, tuple[Any, Any]] = {}
_http_clients_lock = threading.Lock()
_http_clients_pid = os.getpid()


def _pooled_http(broker: Broker) -> Any:
    global _http_clients_pid
    key = hashlib.sha256(json.dumps(
        [broker.url, broker.verify_tls, broker.ca_bundle or "", broker.auth_type, broker.auth_username,
         broker.auth_secret_encrypted]).encode()).hexdigest()
    with _http_clients_lock:
        if _http_clients_pid != os.getpid():  # forked: the parent's sockets are not ours
            _http_clients.clear()
            _http_clients_pid = os.getpid()
        cached = _http_clients.get(broker.pk)
        if cached is not None and cached[0] == key:
            return cached[1]
        verify = tls_context(verify=broker.verify_tls, ca_bundle=broker.ca_bundle or None)
        client = pooled_http_client(verify=verify, max_connections=settings.OSB_MAX_CONNECTIONS_PER_BROKER)
        _http_clients[broker.pk] = (key, client)
        return client


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
        "retry_after": record.retry_after,
        "malformed": record.malformed,
        "error_code": record.error_code,
        "error_described": record.error_described,
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
    """Why `value` is not a usable PEM CA bundle, or None (a bad bundle would only fail later, in the worker). The
    one check of a bundle: the API, the admin form and the services all use it (through `broker_problems`)."""
    if not value.isascii():
        return "Not a valid PEM CA bundle: PEM is ASCII text, and this has other characters."
    if "-----BEGIN CERTIFICATE-----" not in value:
        return "Not a valid PEM CA bundle: it holds no -----BEGIN CERTIFICATE----- block."
    try:
        x509.load_pem_x509_certificates(value.encode("ascii"))
        ssl.create_default_context(cadata=value)
    except (ssl.SSLError, ValueError, TypeError) as exc:
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
    catalog_restrictions: Any = None, broker: Broker | None = None,
) -> dict[str, list[str]]:
    """What makes a registration unusable, by field: `url`, `ca_bundle`, `auth.type`, `auth.username`,
    `auth.secret`, `catalog_restrictions` (each bad rule, named; empty when it is fine). `broker`: the registration
    being changed (None: a new one); None values are not checked. `broker_register` and `broker_update` refuse what
    this finds; the admin form shows it beside its fields."""
    problems: dict[str, list[str]] = {}
    if catalog_restrictions is not None:
        try:
            parse_restrictions(catalog_restrictions)
        except RestrictionError as exc:
            problems["catalog_restrictions"] = exc.messages
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
        raise Conflict(
            "A broker with this name exists.", fields={"name": ["A broker with this name already exists."]},
            code="name_taken",
        )


def _check_unique_url(url: str, exclude: Any = None) -> None:
    """The same broker registered twice would offer its catalog twice under the same ids (which the spec requires
    to be globally unique): a URL already registered is refused, naming the broker that has it. (A different URL
    serving colliding ids is refused by its first sync: the web never calls a broker.)"""
    query = Broker.objects.filter(url__iexact=url.rstrip("/"))
    if exclude is not None:
        query = query.exclude(pk=exclude)
    other = query.values_list("name", flat=True).first()
    if other is not None:
        raise ApplicationError(
            f"Broker '{other}' is already registered at this URL; its services would be listed twice.",
            fields={"url": [f"Already registered as broker '{other}': catalog ids must be unique across brokers."]},
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
    catalog_restrictions: Any = None,
    max_in_flight: int | None = None,
    requested_by: Any = None,
    request: Any = None,
) -> Broker:
    """Register a broker and queue its first catalog sync (after commit); audited.

    Refuses (ApplicationError, by field) a taken name, an unusable URL or CA bundle, incomplete auth.
    """
    _check_unique_name(name)
    _require_usable(url=url, ca_bundle=_ca_bundle(ca_bundle), auth=auth, catalog_restrictions=catalog_restrictions)
    _check_unique_url(url)
    broker = Broker(
        name=name,
        url=url.rstrip("/"),
        verify_tls=verify_tls,
        ca_bundle=_ca_bundle(ca_bundle),
        relist_interval_seconds=relist_interval_seconds or settings.CATALOG_DEFAULT_RELIST_SECONDS,
        enabled=enabled,
        catalog_restrictions=restrictions_json(catalog_restrictions),
    )
    if max_in_flight is not None:
        broker.max_in_flight = max_in_flight
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
    """Change a broker's registration; a changed URL, auth or TLS setting queues a fresh sync; changed catalog
    restrictions re-mirror the last catalog at once (existing instances keep their plans); audited."""
    allowed = {"name", "url", "verify_tls", "ca_bundle", "relist_interval_seconds", "enabled", "catalog_restrictions",
               "max_in_flight"}
    unknown = set(changes) - allowed
    if unknown:
        raise ApplicationError(f"Cannot change {', '.join(sorted(unknown))}.")
    if "name" in changes and changes["name"] != broker.name:
        _check_unique_name(changes["name"], exclude=broker.pk)
    if "ca_bundle" in changes:
        changes["ca_bundle"] = _ca_bundle(changes["ca_bundle"])
    _require_usable(url=changes.get("url"), ca_bundle=changes.get("ca_bundle"), auth=auth,
                    catalog_restrictions=changes.get("catalog_restrictions"), broker=broker)
    if "catalog_restrictions" in changes:
        changes["catalog_restrictions"] = restrictions_json(changes["catalog_restrictions"])
        if changes["catalog_restrictions"] == restrictions_json(broker.catalog_restrictions):
            del changes["catalog_restrictions"]  # the same rules, maybe written differently
    if "url" in changes:
        changes["url"] = changes["url"].rstrip("/")
        _check_unique_url(changes["url"], exclude=broker.pk)
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
        if "catalog_restrictions" in changes:
            _remirror(broker, actor=requested_by, request=request)
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
    if broker.paused_until is not None and broker.paused_until > now:
        # The broker asked for a pause (429/503 with Retry-After): its catalog waits for it too, then syncs.
        Broker.objects.filter(pk=broker.pk, next_sync_at=broker.next_sync_at).update(next_sync_at=broker.paused_until)
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
        except _NoCallSlot as exc:
            # Every call slot of the broker is taken (its max_in_flight) or this worker's share is: no call was
            # made, so no sync happened; the same sync again shortly.
            sync.delete()
            Broker.objects.filter(pk=broker.pk).update(
                sync_lease_until=None, status=broker.status,
                next_sync_at=timezone.now() + timedelta(seconds=exc.wait.seconds))
            logger.info("Catalog sync of broker %s deferred: %s", broker.name, exc.wait.reason)
            return None
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


class _NoCallSlot(Exception):
    def __init__(self, wait: Wait) -> None:
        self.wait = wait


def _fetch_and_mirror(broker: Broker, sync: CatalogSync) -> None:
    calls: list[CallRecord] = []
    try:
        # The catalog GET is a call like any other: it takes one of the broker's call slots (brokers/throttle.py).
        with call_slot(broker) as wait:
            if wait is not None:
                raise _NoCallSlot(wait)
            with broker_client(broker=broker, recorder=calls.append) as client:
                response = client.send(CatalogRequest(
                    etag=broker.catalog_etag or None, if_modified_since=broker.catalog_last_modified or None
                ))
    except OSBMalformedResponse as exc:
        _store_catalog_checks(broker, check_catalog(None, error=str(exc)))
        raise
    finally:
        sync.calls = [call_record_json(call) for call in calls]
        pause_from_answers(broker, [(call.status, call.retry_after) for call in calls])
    if response.not_modified:
        sync.outcome = CatalogSync.Outcome.UNCHANGED
        sync.summary = {"not_modified": True}
        return
    with cyclic_gc_paused():  # the catalog's objects have no cycles: collections would only cost time
        _mirror_document(broker, sync, response)


def _mirror_document(broker: Broker, sync: CatalogSync, response: Any) -> None:
    digest = catalog_digest(response.document)
    if digest == broker.catalog_digest:
        sync.outcome = CatalogSync.Outcome.UNCHANGED
        sync.summary = {"identical": True}
        # The broker began sending validators (or changed them) for a catalog the portal already holds: keep them,
        # so that the next relist is a conditional GET the broker can answer with a 304.
        validators = {"catalog_etag": response.etag or "", "catalog_last_modified": response.last_modified or ""}
        if validators != {"catalog_etag": broker.catalog_etag, "catalog_last_modified": broker.catalog_last_modified}:
            Broker.objects.filter(pk=broker.pk, catalog_digest=digest).update(**validators)
        return
    # Checked before validation: a rejected catalog is the one its author most needs the scorecard for.
    schema_memo: dict[int, str | None] = {}  # each schema checked once for both
    _store_catalog_checks(broker, check_catalog(response.document, schema_memo=schema_memo))
    offerings = parse_catalog(response.document, schema_memo=schema_memo)
    _check_ids_are_unique(broker, offerings)
    with transaction.atomic():
        result = mirror_catalog(broker_id=broker.pk, offerings=offerings, sync_id=sync.pk)
        Broker.objects.filter(pk=broker.pk).update(
            catalog_etag=response.etag or "", catalog_last_modified=response.last_modified or "",
            catalog_digest=digest, catalog_revision=F("catalog_revision") + 1,
        )
        _save_catalog_document(broker, document=json_value(response.document), accepted_at=timezone.now())
    if result.written >= ANALYZE_AFTER_ROWS:
        _analyze_catalog_tables()
    _record_result(sync, result)


def catalog_id_collisions(broker: Broker, offerings: list[Any]) -> list[str]:
    """Sentences naming each service or plan id of `offerings` that another broker's mirror already offers
    (the spec requires them to be globally unique; the marketplace would list both under one id)."""
    service_ids = {offering.catalog_id for offering in offerings}
    plan_ids = {plan.catalog_id for offering in offerings for plan in offering.plans}
    found: list[str] = []
    for model, ids, what in ((ServiceOffering, service_ids, "service"), (ServicePlan, plan_ids, "plan")):
        taken = (model.objects.exclude(broker=broker).filter(catalog_id__in=ids, active=True)
                 .values_list("catalog_id", "broker__name").order_by("catalog_id"))
        found += [f"{what} id '{catalog_id}' (already offered by broker '{other}')" for catalog_id, other in taken]
    return found


def _check_ids_are_unique(broker: Broker, offerings: list[Any]) -> None:
    collisions = catalog_id_collisions(broker, offerings)
    if collisions:
        shown = "; ".join(collisions[:5]) + (f"; and {len(collisions) - 5} more" if len(collisions) > 5 else "")
        raise CatalogInvalid([
            f"ids must be unique across every broker of the platform, and this catalog reuses {shown}. The "
            "previous mirror of this broker is kept. Is this broker registered twice?"
        ])


def _record_result(sync: CatalogSync, result: MirrorResult) -> None:
    sync.summary = result.counts
    sync.diff = result.diff
    counts = result.counts  # rows written; the diff says what that changed for the platform's users
    sync.added = counts["offerings_added"] + counts["plans_added"]
    sync.changed = counts["offerings_changed"] + counts["plans_changed"]
    sync.deactivated = counts["offerings_deactivated"] + counts["plans_deactivated"]
    sync.outcome = CatalogSync.Outcome.CHANGED if result.written else CatalogSync.Outcome.UNCHANGED


def _store_catalog_checks(broker: Broker, results: list[CheckResult]) -> None:
    stored = [{"id": r.id, "passed": r.passed, "detail": r.detail} for r in results]
    _save_catalog_document(broker, checks=stored, checked_at=timezone.now())


def _save_catalog_document(broker: Broker, **fields: Any) -> None:
    # An UPDATE, not update_or_create: that would first load (and decode) the stored document, megabytes of JSON.
    if not CatalogDocument.objects.filter(broker=broker).update(**fields):
        CatalogDocument.objects.create(broker=broker, **fields)


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
# 2: the document kept (CatalogDocument), conformance checks, catalog restrictions.
MIRROR_FORMAT = 2


def catalog_digest(document: Any) -> str:
    return f"{MIRROR_FORMAT}:" + hashlib.sha256(canonical_json(document)).hexdigest()


def _finish_sync(broker: Broker, sync: CatalogSync, started: float, claimed_next: Any) -> None:
    now = timezone.now()
    sync.finished_at = now
    sync.duration_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        sync.save()
        metrics.catalog_sync_observed(broker=broker.name, sync=sync)
    failed = sync.outcome == CatalogSync.Outcome.FAILED
    failures = broker.sync_failures + 1 if failed else 0
    fields: dict[str, Any] = {
        "sync_lease_until": None,
        "status": Broker.Status.FAILED if failed else Broker.Status.READY,
        "status_message": sync.error if failed else "",
        "sync_failures": failures,
        "updated_at": now,
    }
    if not failed:
        fields["last_synced_at"] = now
    Broker.objects.filter(pk=broker.pk).update(**fields)
    _audit_sync(broker, sync)
    _refresh_conformance_score(broker)
    # Schedule the next relist (sooner after a failure: a recovered broker is seen within the backoff), unless
    # someone asked for a sync while this one ran.
    wait = retry_after_failures(failures, relist=broker.relist_interval_seconds) if failed \
        else broker.relist_interval_seconds
    next_at = now + timedelta(seconds=wait) if broker.enabled else None
    same_request = {"next_sync_at": claimed_next} if claimed_next is not None else {"next_sync_at__isnull": True}
    Broker.objects.filter(pk=broker.pk, **same_request).update(
        next_sync_at=next_at, sync_trigger=CatalogSync.Trigger.RETRY if failed else CatalogSync.Trigger.PERIODIC
    )


def retry_after_failures(failures: int, *, relist: int) -> float:
    """Seconds until a broker whose last `failures` syncs failed is asked again: CATALOG_RETRY_FIRST_SECONDS,
    doubling per failure up to CATALOG_RETRY_MAX_SECONDS, and never later than its relist interval."""
    first, cap = float(settings.CATALOG_RETRY_FIRST_SECONDS), float(settings.CATALOG_RETRY_MAX_SECONDS)
    return min(first * 2 ** min(max(failures - 1, 0), 30), cap, float(relist))


def _audit_sync(broker: Broker, sync: CatalogSync, actor: Any = None, request: Any = None) -> None:
    """A sync that changed the mirror, or failed, is an audit event (the portal's own action unless someone
    changed the restrictions); unchanged relists are not worth a record each."""
    if sync.outcome not in (CatalogSync.Outcome.CHANGED, CatalogSync.Outcome.FAILED):
        return
    if sync.outcome == CatalogSync.Outcome.FAILED and broker.sync_failures > 0 and sync.trigger == CatalogSync.Trigger.RETRY:
        return  # the automatic retries of a failing broker: its first failure is on record
    what = f"failed: {sync.error[:300]}" if sync.outcome == CatalogSync.Outcome.FAILED else describe_diff(sync.diff)
    how = "re-mirrored for its new catalog restrictions" if sync.trigger == CatalogSync.Trigger.RESTRICTIONS else "synced"
    audit(action="broker.catalog.sync", target=broker, actor=actor, request=request,
          summary=f"Catalog of broker '{broker.name}' {how}: {what} (sync {sync.pk})")


def _refresh_conformance_score(broker: Broker) -> None:
    """The broker list's badge: the scorecard as of this sync (bounded reads; see brokers.selectors)."""
    try:
        report = broker_conformance(broker=broker)
    except Exception:  # the badge must never fail a sync
        logger.exception("Conformance check of broker %s failed", broker.pk)
        return
    Broker.objects.filter(pk=broker.pk).update(conformance_score=report.score, conformance_checked_at=report.checked_at)


# --- Catalog restrictions ------------------------------------------------------------------------


def restrictions_json(value: Any) -> dict[str, list[str]]:
    """Catalog restriction rules, normalised (`{"services": [...], "plans": [...]}`); ApplicationError (400)
    naming each bad rule."""
    _require_usable(catalog_restrictions=value if value is not None else {})
    return parse_restrictions(value).as_json()


def _remirror(broker: Broker, *, actor: Any = None, request: Any = None) -> CatalogSync | None:
    """Mirror the last accepted catalog again under the broker's current restrictions, now and without asking
    the broker (the caller holds the transaction). None when no catalog was accepted yet: the first sync applies
    the rules."""
    with cyclic_gc_paused():
        document = CatalogDocument.objects.filter(broker=broker).values_list("document", flat=True).first()
        if document is None:
            return None
        started = time.monotonic()
        sync = CatalogSync.objects.create(broker=broker, trigger=CatalogSync.Trigger.RESTRICTIONS)
        result = mirror_catalog(broker_id=broker.pk, offerings=parse_catalog(document), sync_id=sync.pk)
    if result.written:
        Broker.objects.filter(pk=broker.pk).update(catalog_revision=F("catalog_revision") + 1)
    _record_result(sync, result)
    sync.finished_at = timezone.now()
    sync.duration_ms = int((time.monotonic() - started) * 1000)
    sync.save()
    _audit_sync(broker, sync, actor=actor, request=request)
    return sync


def catalog_sync_due() -> list[str]:
    """Brokers whose sync is due (requested, periodic, or whose worker died): their ids, to dispatch."""
    now = timezone.now()
    from django.db.models import Q

    due = Broker.objects.filter(next_sync_at__lte=now).filter(
        Q(sync_lease_until__isnull=True) | Q(sync_lease_until__lte=now)
    )
    return [str(pk) for pk in due.values_list("pk", flat=True)]
