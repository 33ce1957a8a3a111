"""The broker registry and the mirror of each broker's catalog."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.urls import reverse
from django.utils import timezone

from catalog_portal import crypto


class Broker(models.Model):
    class AuthType(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "Basic (username and password)"
        BEARER = "bearer", "Bearer token"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SYNCING = "syncing", "Syncing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="Base URL of the broker, without /v2.")
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NONE)
    auth_username = models.CharField(max_length=200, blank=True)
    # Password or bearer token, encrypted with CREDENTIALS_KEY; never shown back.
    auth_secret_encrypted = models.TextField(blank=True, editable=False)
    verify_tls = models.BooleanField(default=True)
    ca_bundle = models.TextField(null=True, blank=True, help_text="PEM CA certificates to trust for this broker.")
    relist_interval_seconds = models.PositiveIntegerField(default=900)
    enabled = models.BooleanField(default=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_message = models.TextField(blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # Scheduling of catalog syncs: the row, not a Celery message, says a sync is due.
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    sync_lease_until = models.DateTimeField(null=True, blank=True)
    sync_trigger = models.CharField(max_length=20, default="periodic", editable=False)
    # Failed syncs in a row (0 after a successful one): the next attempt comes after a backoff that grows with it.
    sync_failures = models.PositiveIntegerField(default=0, editable=False)
    catalog_etag = models.CharField(max_length=500, blank=True)
    catalog_last_modified = models.CharField(max_length=100, blank=True)
    # Digest of the last catalog mirrored: an identical document is neither validated nor diffed again.
    catalog_digest = models.CharField(max_length=80, blank=True, editable=False)
    # Bumped whenever what the store shows of this broker's catalog changes (a mirror that wrote rows, a plan's
    # visibility): the marketplace's page cache is keyed by it (brokers.selectors.store_state).
    catalog_revision = models.PositiveBigIntegerField(default=0, editable=False)
    # What the platform offers of the catalog (brokers.restrictions): {"services": [rule, ...], "plans": [...]}.
    catalog_restrictions = models.JSONField(default=dict, blank=True)
    # The conformance score as of the last check (each sync refreshes it), for the broker list's badge; the
    # broker page and the API compute the scorecard afresh.
    conformance_score = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)
    conformance_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Gentle with the broker: at most this many calls in flight at once across all workers (0: no limit), and
    # none at all before paused_until (set from a 429 or 503 with Retry-After: brokers/throttle.py).
    max_in_flight = models.PositiveIntegerField(
        default=10, help_text="Most calls the portal's workers make to this broker at once (0: no limit).")
    paused_until = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("admin:brokers_broker_change", args=[self.pk])

    @property
    def paused(self) -> bool:
        """Calls to the broker are paused now (it answered 429 or 503 with Retry-After)."""
        return self.paused_until is not None and self.paused_until > timezone.now()

    @property
    def auth_secret(self) -> str:
        return crypto.decrypt(self.auth_secret_encrypted) if self.auth_secret_encrypted else ""

    def set_auth_secret(self, value: str) -> None:
        self.auth_secret_encrypted = crypto.encrypt(value) if value else ""


class CatalogQuerySet(models.QuerySet):
    def active(self) -> CatalogQuerySet:
        return self.filter(active=True)


class ServiceOffering(models.Model):
    """A service offering exactly as the broker's catalog last described it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="offerings")
    catalog_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField()
    tags = models.JSONField(default=list)
    requires = models.JSONField(default=list)
    bindable = models.BooleanField(default=False)
    instances_retrievable = models.BooleanField(default=False)
    bindings_retrievable = models.BooleanField(default=False)
    allow_context_updates = models.BooleanField(default=False)
    plan_updateable = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict)
    dashboard_client = models.JSONField(null=True, blank=True)
    # Display fields from profile.md's metadata conventions, copied out for search and facets.
    display_name = models.CharField(max_length=255, blank=True)
    long_description = models.TextField(blank=True)
    provider = models.CharField(max_length=255, blank=True, db_index=True)
    image_url = models.TextField(null=True, blank=True)
    documentation_url = models.TextField(null=True, blank=True)
    support_url = models.TextField(null=True, blank=True)
    raw = models.JSONField(default=dict, help_text="The offering object as the broker sent it, plans excluded.")
    search_text = models.TextField(blank=True, editable=False)
    tag_index = models.TextField(blank=True, editable=False)
    content_hash = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True, db_index=True)
    # Inactive because the broker's catalog restrictions exclude it (still in the broker's catalog).
    restricted = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["broker__name", "position"]
        constraints = [
            models.UniqueConstraint(fields=["broker", "catalog_id"], name="offering_unique_catalog_id"),
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def title(self) -> str:
        return self.display_name or self.name


class ServicePlan(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Everyone"
        TEAMS = "teams", "Only the listed teams"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="plans")
    offering = models.ForeignKey(ServiceOffering, on_delete=models.CASCADE, related_name="plans")
    catalog_id = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    description = models.TextField()
    free = models.BooleanField(default=True)
    # None = inherit from the offering, as the spec says.
    bindable = models.BooleanField(null=True, blank=True)
    plan_updateable = models.BooleanField(null=True, blank=True)
    binding_rotatable = models.BooleanField(default=False)
    metadata = models.JSONField(default=dict)
    display_name = models.CharField(max_length=255, blank=True)
    bullets = models.JSONField(default=list)
    costs = models.JSONField(default=list)
    schemas = models.JSONField(default=dict)
    maximum_polling_duration = models.PositiveIntegerField(null=True, blank=True)
    maintenance_info = models.JSONField(null=True, blank=True)
    raw = models.JSONField(default=dict)
    content_hash = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=True, db_index=True)
    # Inactive because the broker's catalog restrictions exclude it (still in the broker's catalog).
    restricted = models.BooleanField(default=False)
    # The last change of the plan's parameter schemas the mirror saw: {"at": iso time, "sync": id,
    # "schemas": {"service_instance.create": {"added": [...], ...}}} (brokers.catalog_diff.schema_change).
    schemas_changed = models.JSONField(null=True, blank=True)
    # Service access (Cloud Foundry's): who sees and may provision this plan. Set by platform admins, never by
    # the catalog mirror.
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PUBLIC)
    teams = models.ManyToManyField("teams.Team", blank=True, related_name="visible_plans",
                                   help_text="With visibility 'teams': the teams that see this plan.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = CatalogQuerySet.as_manager()

    class Meta:
        ordering = ["offering_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["broker", "catalog_id"], name="plan_unique_catalog_id"),
        ]
        indexes = [
            # The store's per-service plan probes (a visible plan? a free one?) read this index instead of the
            # wide rows, which carry the schemas.
            models.Index(fields=["offering", "active", "free", "visibility"], name="plan_store_probe"),
        ]

    def __str__(self) -> str:
        return f"{self.offering} / {self.title}"

    @property
    def title(self) -> str:
        return self.display_name or self.name

    @property
    def effective_bindable(self) -> bool:
        return self.offering.bindable if self.bindable is None else self.bindable

    @property
    def effective_plan_updateable(self) -> bool:
        return self.offering.plan_updateable if self.plan_updateable is None else self.plan_updateable

    def _schema(self, *path: str) -> dict[str, Any] | None:
        node: Any = self.schemas
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node if isinstance(node, dict) else None

    @property
    def instance_create_schema(self) -> dict[str, Any] | None:
        return self._schema("service_instance", "create", "parameters")

    @property
    def instance_update_schema(self) -> dict[str, Any] | None:
        return self._schema("service_instance", "update", "parameters")

    @property
    def binding_create_schema(self) -> dict[str, Any] | None:
        return self._schema("service_binding", "create", "parameters")


class CatalogSync(models.Model):
    """One fetch of a broker's catalog and what it changed in the mirror."""

    class Trigger(models.TextChoices):
        REGISTRATION = "registration", "Registration"
        MANUAL = "manual", "On demand"
        PERIODIC = "periodic", "Periodic relist"
        RESTRICTIONS = "restrictions", "Catalog restrictions changed"
        RETRY = "retry", "Retry after a failed sync"

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        CHANGED = "changed", "Changed"
        UNCHANGED = "unchanged", "Unchanged"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="syncs")
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.PERIODIC)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    added = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    deactivated = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)
    # What changed in what the platform offers (brokers.mirror): {"services": {"added": [entry], "removed": [...],
    # "changed": [...]}, "plans": {...}}; entry = {"catalog_id", "name", "affected_instances", ...}.
    diff = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    calls = models.JSONField(default=list, blank=True, help_text="The OSB calls of this sync (redacted).")

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["broker", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.broker} sync {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"


class CatalogDocument(models.Model):
    """The broker's catalog as the portal last saw it.

    `document` is the last document the mirror accepted: a change of the catalog restrictions re-mirrors it at
    once, without asking the broker. `checks` are the conformance results (brokers.conformance.catalog) of the
    last document fetched, accepted or not: a rejected catalog is the one its author most needs checked.
    """

    broker = models.OneToOneField(Broker, primary_key=True, on_delete=models.CASCADE, related_name="catalog_document")
    document = models.JSONField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    checks = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Catalog document of {self.broker_id}"


class BrokerCallSlot(models.Model):
    """One of a broker's `max_in_flight` call slots; a worker holds one (with a lease its heartbeat renews) for the
    length of a call, so the limit holds across workers and a dead worker's slot frees itself."""

    broker = models.ForeignKey(Broker, on_delete=models.CASCADE, related_name="call_slots")
    number = models.PositiveIntegerField()
    holder = models.CharField(max_length=32, blank=True)
    held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["broker", "number"], name="one_call_slot_per_number")]

    def __str__(self) -> str:
        return f"{self.broker} slot {self.number}"
